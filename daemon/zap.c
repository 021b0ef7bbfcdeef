/*
 * zap.c — CURVE key files and the ZAP handler (RFC 27) of the ROUTER.
 *
 * DESIGN
 * - Only the serving thread touches a zap_t (it polls zap_socket() next to
 *   the ROUTER), so nothing here takes a lock.
 * - The handler is bound before the ROUTER binds any endpoint: a CURVE
 *   handshake that finds no ZAP handler is let in unauthenticated
 *   (libzmq 4.3).
 * - SIGHUP swaps in the new config's authorized set; the secret key only
 *   changes at a restart (the socket's handshake settings are fixed once it
 *   is bound).
 */
#include "zap.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "log.h"
#include "stats.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01" /* RFC 27: fixed */
#define ZAP_DOMAIN "cutmixd"
#define ZAP_WARNED_MAX 256 /* refused keys logged one by one */
#define ZAP_ADDR_MAX 64    /* peer address shown in a log line */

struct zap {
	void *sock;           /* REP at ZAP_ENDPOINT */
	keyset_t *authorized;
	char curve_public[KEYS_Z85_LEN + 1];
	uint8_t warned[ZAP_WARNED_MAX][KEYS_BIN_LEN]; /* refused keys logged */
	int n_warned;
	double last_zap_log;  /* for refused keys beyond ZAP_WARNED_MAX */
};

int server_keys_load(const config_t *cfg, struct server_keys *k, char *err,
		     size_t errlen)
{
	int rc;

	memset(k, 0, sizeof(*k));
	if (!config_has_curve(cfg))
		return 0;
	rc = keys_load_secret(cfg->security.curve_secret_key_file, k->secret,
			      k->public_key, err, errlen);
	if (!rc)
		rc = keys_load_authorized(cfg->security.authorized_keys,
					  &k->authorized, err, errlen);
	if (rc) {
		server_keys_clear(k);
		return rc;
	}
	k->curve = true;
	return 0;
}

void server_keys_clear(struct server_keys *k)
{
	if (!k)
		return;
	keys_destroy(&k->authorized);
	explicit_bzero(k, sizeof(*k));
}

/* A frame's bytes for a log line: printable ASCII, the rest as '?'. */
static const char *frame_text(zmq_msg_t *m, char *out, size_t n)
{
	const unsigned char *p = zmq_msg_data(m);
	size_t len = zmq_msg_size(m), o = 0;

	for (size_t i = 0; i < len && o + 1 < n; i++)
		out[o++] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
	out[o] = '\0';
	return out;
}

static bool frame_is(zmq_msg_t *m, const char *text)
{
	size_t n = strlen(text);

	return zmq_msg_size(m) == n && memcmp(zmq_msg_data(m), text, n) == 0;
}

/* Log a refused key once (the client retries its handshake every few
 * hundred ms); beyond ZAP_WARNED_MAX keys, at most one line a minute. */
static void zap_warn(zap_t *s, const uint8_t key[KEYS_BIN_LEN],
		     const char *addr)
{
	char z85[KEYS_Z85_LEN + 1];
	double now = stats_now();

	for (int i = 0; i < s->n_warned; i++)
		if (memcmp(s->warned[i], key, KEYS_BIN_LEN) == 0)
			return;
	if (s->n_warned == ZAP_WARNED_MAX) {
		if (now - s->last_zap_log < 60.0)
			return;
		s->last_zap_log = now;
		zmq_z85_encode(z85, key, KEYS_BIN_LEN);
		log_warning("security: refused client key %s from '%s': not in "
			    "authorized_keys (too many refused keys to log each "
			    "one: at most one such line a minute)", z85, addr);
		return;
	}
	memcpy(s->warned[s->n_warned++], key, KEYS_BIN_LEN);
	zmq_z85_encode(z85, key, KEYS_BIN_LEN);
	log_warning("security: refused client key %s from '%s': not in "
		    "authorized_keys", z85, addr);
}

/*
 * Answer one ZAP request (RFC 27). 0 = none waiting. Request frames after
 * the REP envelope: version, request id, domain, address, routing id,
 * mechanism, credentials (CURVE: the client's 32-byte public key). Reply:
 * version, request id, status code, status text, user id, metadata.
 */
int zap_handle(zap_t *s)
{
	enum { F_VERSION, F_ID, F_DOMAIN, F_ADDRESS, F_ROUTING, F_MECH, F_CRED, F_N };
	zmq_msg_t f[F_N];
	int n = 0, more = 1, extra = 0;
	char addr[ZAP_ADDR_MAX + 1] = "", user[KEYS_Z85_LEN + 1] = "";
	const char *code = "400", *text = "malformed ZAP request";

	while (more) {
		zmq_msg_t m;
		zmq_msg_init(&m);
		if (zmq_msg_recv(&m, s->sock, n == 0 && !extra ? ZMQ_DONTWAIT : 0) < 0) {
			zmq_msg_close(&m);
			if (n == 0 && !extra)
				return 0;
			break;
		}
		more = zmq_msg_more(&m);
		if (n < F_N)
			f[n++] = m;
		else {
			extra++;
			zmq_msg_close(&m);
		}
	}

	if (n == F_N && !extra && frame_is(&f[F_VERSION], "1.0") &&
	    frame_is(&f[F_DOMAIN], ZAP_DOMAIN) && frame_is(&f[F_MECH], "CURVE") &&
	    zmq_msg_size(&f[F_CRED]) == KEYS_BIN_LEN) {
		const uint8_t *key = zmq_msg_data(&f[F_CRED]);

		frame_text(&f[F_ADDRESS], addr, sizeof(addr));
		if (!addr[0])
			strcpy(addr, "local");
		if (keys_contains(s->authorized, key)) {
			code = "200";
			text = "OK";
			zmq_z85_encode(user, key, KEYS_BIN_LEN);
			log_debug("security: client key %s from '%s' let in", user, addr);
		} else {
			text = "client key not authorized";
			zap_warn(s, key, addr);
		}
	} else if (n >= 1) {
		char v[16];
		log_warning("security: refused a malformed ZAP request (%d frames, version '%s')",
			    n + extra, frame_text(&f[F_VERSION], v, sizeof(v)));
	}

	/* REP puts the envelope back; a lost reply fails the handshake. */
	int flags = ZMQ_SNDMORE | ZMQ_DONTWAIT;
	zmq_send(s->sock, "1.0", 3, flags);
	if (n > F_ID)
		zmq_send(s->sock, zmq_msg_data(&f[F_ID]), zmq_msg_size(&f[F_ID]), flags);
	else
		zmq_send(s->sock, "", 0, flags);
	zmq_send(s->sock, code, 3, flags);
	zmq_send(s->sock, text, strlen(text), flags);
	zmq_send(s->sock, user, strlen(user), flags);
	zmq_send(s->sock, "", 0, ZMQ_DONTWAIT);

	for (int i = 0; i < n; i++)
		zmq_msg_close(&f[i]);
	return 1;
}

/* Take the reloaded config's keys: the authorized set swaps in; turning
 * CURVE on or off, or a new secret key, needs a restart (the socket's
 * handshake settings are fixed once it is bound). */
void zap_reload(zap_t *s, struct server_keys *k)
{
	if (!s) {
		if (k->curve)
			log_warning("reload: [security] takes effect at a restart: "
				    "still serving without CURVE");
		return;
	}
	if (!k->curve) {
		log_warning("reload: [security] is gone from the config, but CURVE "
			    "stays on until a restart; keeping the %zu authorized "
			    "keys", keys_count(s->authorized));
		return;
	}
	if (strcmp(k->public_key, s->curve_public) != 0)
		log_warning("reload: the new curve_secret_key_file (public key %s) "
			    "takes effect at a restart; still serving as %s",
			    k->public_key, s->curve_public);
	keys_destroy(&s->authorized);
	s->authorized = k->authorized;
	k->authorized = NULL;
	s->n_warned = 0; /* a key dropped now is logged when it is refused */
	log_notice("reload: %zu authorized client keys", keys_count(s->authorized));
}

zap_t *zap_new(void *zctx, void *router, struct server_keys *k, char *err,
	       size_t errlen)
{
	zap_t *s = calloc(1, sizeof(*s));
	int v = 0;

	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	/* The handler first: a CURVE handshake that finds no ZAP handler is
	 * let in unauthenticated (libzmq 4.3). */
	s->sock = zmq_socket(zctx, ZMQ_REP);
	if (!s->sock || zmq_setsockopt(s->sock, ZMQ_LINGER, &v, sizeof(v)) ||
	    zmq_bind(s->sock, ZAP_ENDPOINT) < 0) {
		snprintf(err, errlen, "cannot start the ZAP handler at '%s': %s",
			 ZAP_ENDPOINT, zmq_strerror(errno));
		goto out_fail;
	}
	s->authorized = k->authorized;
	k->authorized = NULL;
	memcpy(s->curve_public, k->public_key, sizeof(s->curve_public));
	v = 1;
	if (zmq_setsockopt(router, ZMQ_CURVE_SERVER, &v, sizeof(v)) ||
	    zmq_setsockopt(router, ZMQ_CURVE_SECRETKEY, k->secret, KEYS_Z85_LEN + 1) ||
	    zmq_setsockopt(router, ZMQ_ZAP_DOMAIN, ZAP_DOMAIN, strlen(ZAP_DOMAIN))) {
		snprintf(err, errlen, "cannot turn CURVE on: %s", zmq_strerror(errno));
		goto out_fail;
	}
	log_notice("security: CURVE on, server public key %s, %zu authorized client keys",
		   s->curve_public, keys_count(s->authorized));
	return s;

out_fail:
	zap_destroy(&s);
	return NULL;
}

void *zap_socket(zap_t *z)
{
	return z->sock;
}

void zap_destroy(zap_t **zp)
{
	zap_t *z = zp ? *zp : NULL;

	if (!z)
		return;
	if (z->sock)
		zmq_close(z->sock);
	keys_destroy(&z->authorized);
	free(z);
	*zp = NULL;
}
