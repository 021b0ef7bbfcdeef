/*
 * client.c — the cutmixd C client: construction, settings, CURVE and key
 * files, INFO/STATS, peer statistics and errors. The request machinery is
 * in dispatch.c, replies and batches in batch.c, epoch iteration in
 * epoch.c, the INFO JSON reader in json.c; internal.h has the DESIGN.
 */
#include "internal.h"
#include "keyfile.h"
#include "status.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

/* ---- small helpers ------------------------------------------------------ */

int64_t cmx_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void cmx_fail_set(struct failure *f, int err, uint32_t status, const char *fmt, ...)
{
	va_list ap;

	f->err = err;
	f->status = status;
	va_start(ap, fmt);
	vsnprintf(f->msg, sizeof(f->msg), fmt, ap);
	va_end(ap);
}

int cmx_set_error(cutmixd_client_t *c, int err, uint32_t status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
	c->err_status = status;
	return err;
}

int cmx_set_failure(cutmixd_client_t *c, const struct failure *f)
{
	return cmx_set_error(c, f->err, f->status, "%s", f->msg);
}

/* cutmixd.h's codes are the wire's (status.h is the one table). */
#define STATUS_SAME(name, code, err, text) \
	_Static_assert(CUTMIXD_##name == code, "enum cutmixd_status (cutmixd.h) differs from status.h: " #name);
WIRE_STATUS_TABLE(STATUS_SAME)
#undef STATUS_SAME

int cmx_status_errno(uint32_t status)
{
	switch (status) {
#define STATUS_ERRNO(name, code, err, text) case code: return err ? -err : -WIRE_STATUS_UNKNOWN_ERRNO;
	WIRE_STATUS_TABLE(STATUS_ERRNO)
#undef STATUS_ERRNO
	default: return -WIRE_STATUS_UNKNOWN_ERRNO;
	}
}

void cmx_hex(char *out, const uint8_t *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = 0;
}

const char *cmx_type_name(uint16_t type)
{
	switch (type) {
	case WIRE_INFO:  return "info";
	case WIRE_BATCH: return "batch";
	case WIRE_STATS: return "stats";
	case WIRE_ERROR: return "error";
	default:         return "unknown";
	}
}

/* ---- socket ------------------------------------------------------------- */

int cmx_zmq_fail(cutmixd_client_t *c, const char *what)
{
	int e = zmq_errno();

	return cmx_set_error(c, -e, 0, "%s: %s", what, zmq_strerror(e));
}

int cmx_remaining_ms(int64_t deadline)
{
	int64_t left = deadline - cmx_now_ms();

	return left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
}

/* INFO or STATS: the JSON body as a NUL-terminated string. */
static int json_request(cutmixd_client_t *c, uint16_t type, char **json)
{
	struct wire_request rq = cmx_make_request(c, type, 0, 0);
	struct reply *r = NULL;
	struct failure f;
	int from = -1;
	char *s;
	size_t n;
	int rc;

	rc = cmx_transact(c, type, 0, 0, &r, &from);
	if (rc < 0)
		return rc;
	if (cmx_check_reply(c, r, &rq, type, 1, &f) < 0) {
		rc = cmx_set_failure(c, &f);
		goto out;
	}
	n = zmq_msg_size(&r->f[1]);
	s = malloc(n + 1);
	if (!s) {
		rc = cmx_set_error(c, -ENOMEM, 0, "%s: out of memory", cmx_type_name(type));
		goto out;
	}
	memcpy(s, zmq_msg_data(&r->f[1]), n);
	s[n] = 0;
	*json = s;
	if (type == WIRE_INFO && c->pipeline[0]) {
		int64_t v;

		if (cmx_json_top_int(s, "batches_per_epoch", &v) == 0 && v >= 0 && v <= UINT32_MAX)
			c->bpe = v;
		else if (r->h.batches_per_epoch)
			c->bpe = r->h.batches_per_epoch;
		if (cmx_json_top_int(s, "max_window", &v) == 0 && v > 0)
			c->max_window = v;
	}
out:
	cmx_reply_free(&r);
	return rc;
}

/* ---- public: client ----------------------------------------------------- */

static bool endpoints_valid(const char *list)
{
	const char *p = list;

	for (;;) {
		const char *end = strchr(p, ',');
		const char *sep;
		size_t n = end ? (size_t)(end - p) : strlen(p);

		while (n && (*p == ' ' || *p == '\t'))
			p++, n--;
		sep = memmem(p, n, "://", 3);
		if (!sep || sep == p || sep + 3 >= p + n)
			return false;
		if (!end)
			return true;
		p = end + 1;
	}
}

/* Split the list into peers, each with its own DEALER, and dns+tcp://
 * groups (discovery.c). 0 or -errno. */
static int make_peers(cutmixd_client_t *c)
{
	char *list = strdup(c->endpoints), *save = NULL;
	int rc = 0;

	if (!list)
		return -ENOMEM;
	for (char *ep = strtok_r(list, ",", &save); ep && rc == 0;
	     ep = strtok_r(NULL, ",", &save)) {
		char *end = ep + strlen(ep);

		while (*ep == ' ' || *ep == '\t')
			ep++;
		while (end > ep && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = 0;
		for (int i = 0; i < c->npeers; i++)
			if (strcmp(c->peers[i].endpoint, ep) == 0)
				rc = -EINVAL; /* listed twice */
		for (int i = 0; i < c->ngroups; i++)
			if (strcmp(c->groups[i].spec, ep) == 0)
				rc = -EINVAL;
		if (rc == 0 && strncmp(ep, DNS_SCHEME, strlen(DNS_SCHEME)) == 0)
			rc = cmx_group_add(c, ep);
		else if (rc == 0)
			rc = cmx_peer_add(c, ep, -1) < 0 ? -ENOMEM : 0;
	}
	free(list);
	return rc;
}

cutmixd_client_t *cutmixd_client_new(const char *endpoint, const char *pipeline,
				     uint32_t rank, uint32_t world, uint32_t window)
{
	cutmixd_client_t *c;
	int e;

	if (!pipeline)
		pipeline = "";
	if (!endpoint || !endpoints_valid(endpoint) || world == 0 || rank >= world) {
		errno = EINVAL;
		return NULL;
	}
	if (strlen(pipeline) > CUTMIXD_PIPELINE_MAX) {
		errno = ENAMETOOLONG;
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	strcpy(c->pipeline, pipeline);
	c->rank = rank;
	c->world = world;
	c->timeout_ms = CUTMIXD_DEFAULT_TIMEOUT_MS;
	c->resend_ms = CUTMIXD_DEFAULT_RESEND_TIMEOUT_MS;
	c->next_id = 1;
	c->bpe = -1;
	c->sync.sync = true;
	c->sync.only = -1;
	c->endpoints = strdup(endpoint);
	if (!c->endpoints) {
		e = ENOMEM;
		goto out_fail;
	}
	c->ctx = zmq_ctx_new();
	if (!c->ctx) {
		e = zmq_errno();
		goto out_fail;
	}
	e = -make_peers(c);
	if (e)
		goto out_fail;
	c->discovery_ms = DISCOVERY_DEFAULT_MS;
	c->window_auto = window == 0;
	c->window = window ? window
			   : CUTMIXD_DEFAULT_WINDOW * (uint32_t)(c->npeers + c->ngroups);
	return c;

out_fail:
	cutmixd_client_destroy(&c);
	errno = e;
	return NULL;
}

void cutmixd_client_destroy(cutmixd_client_t **cp)
{
	cutmixd_client_t *c = cp ? *cp : NULL;

	if (!c)
		return;
	for (uint32_t i = 0; c->ep.slots && i < c->ep.window; i++)
		cmx_job_release(&c->ep.slots[i]);
	free(c->ep.slots);
	cmx_job_release(&c->sync);
	for (int i = 0; c->peers && i < c->npeers; i++) {
		if (c->peers[i].sock)
			zmq_close(c->peers[i].sock);
		free(c->peers[i].endpoint);
	}
	if (c->ctx)
		while (zmq_ctx_term(c->ctx) != 0 && zmq_errno() == EINTR)
			;
	for (int i = 0; c->groups && i < c->ngroups; i++) {
		free(c->groups[i].spec);
		free(c->groups[i].host);
		free(c->groups[i].port);
	}
	free(c->groups);
	free(c->peers);
	free(c->items);
	free(c->reqs);
	free(c->connect_fail);
	free(c->endpoints);
	memset(c->curve_secret, 0, sizeof(c->curve_secret));
	free(c);
	*cp = NULL;
}

/* The setters of a time in ms: c given and ms > 0, else -EINVAL (with
 * "WHAT: must be > 0 ms, got N" as the client's error). */
static int check_ms(cutmixd_client_t *c, const char *what, int ms)
{
	if (!c)
		return -EINVAL;
	if (ms <= 0)
		return cmx_set_error(c, -EINVAL, 0, "%s: must be > 0 ms, got %d", what, ms);
	return 0;
}

int cutmixd_client_set_timeout(cutmixd_client_t *c, int ms)
{
	int rc = check_ms(c, "set_timeout", ms);

	if (rc)
		return rc;
	c->timeout_ms = ms;
	return 0;
}

int cutmixd_client_set_resend_timeout(cutmixd_client_t *c, int ms)
{
	int rc = check_ms(c, "set_resend_timeout", ms);

	if (rc)
		return rc;
	c->resend_ms = ms;
	return 0;
}

int cutmixd_client_set_discovery_interval(cutmixd_client_t *c, int ms)
{
	int rc = check_ms(c, "set_discovery_interval", ms);

	if (rc)
		return rc;
	c->discovery_ms = ms;
	for (int i = 0; i < c->ngroups; i++)
		if (c->connected && c->groups[i].next_at > cmx_now_ms() + ms)
			c->groups[i].next_at = cmx_now_ms() + ms;
	return 0;
}

int cutmixd_client_set_flags(cutmixd_client_t *c, uint32_t flags)
{
	if (!c)
		return -EINVAL;
	if (flags & ~CUTMIXD_EXPECT_EVAL)
		return cmx_set_error(c, -EINVAL, 0, "set_flags: unknown flags 0x%x", flags);
	c->flags = flags;
	return 0;
}

/* 40 Z85 characters that decode to 32 bytes and encode back (a group of
 * five characters can exceed 2^32). */
static bool z85_key_ok(const char *s)
{
	return s && keyfile_z85_ok(s, strlen(s), NULL);
}

int cutmixd_client_set_curve(cutmixd_client_t *c, const char *server_public,
			     const char *client_public, const char *client_secret)
{
	char pub[41], sec[41], derived[41];

	if (!c)
		return -EINVAL;
	if (c->connected || c->connect_fail)
		return cmx_set_error(c, -EINVAL, 0, "set_curve: must come before the first request");
	if (!zmq_has("curve"))
		return cmx_set_error(c, -ENOTSUP, 0, "set_curve: this libzmq was built without CURVE");
	if (!z85_key_ok(server_public))
		return cmx_set_error(c, -EINVAL, 0,
				 "set_curve: server key is not a Z85 CURVE key (40 characters)");
	if (!client_public != !client_secret)
		return cmx_set_error(c, -EINVAL, 0,
				 "set_curve: give both the client public and secret key, or neither");
	if (client_public) {
		if (!z85_key_ok(client_public) || !z85_key_ok(client_secret))
			return cmx_set_error(c, -EINVAL, 0,
					 "set_curve: client key is not a Z85 CURVE key (40 characters)");
		if (zmq_curve_public(derived, client_secret) != 0 ||
		    strcmp(derived, client_public) != 0)
			return cmx_set_error(c, -EINVAL, 0,
					 "set_curve: the client secret key does not belong to its public key");
		strcpy(pub, client_public);
		strcpy(sec, client_secret);
	} else if (zmq_curve_keypair(pub, sec) != 0) {
		return cmx_zmq_fail(c, "set_curve: zmq_curve_keypair");
	}
	strcpy(c->curve_server, server_public);
	strcpy(c->curve_public, pub);
	strcpy(c->curve_secret, sec);
	memset(sec, 0, sizeof(sec));
	c->curve = true;
	return 0;
}

static int key_err(char *err, size_t n, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int key_err(char *err, size_t n, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err && n) {
		va_start(ap, fmt);
		vsnprintf(err, n, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* The keys of one file (proto/keyfile.c parses it). */
struct pair_keys {
	char pub[41], sec[41];
	int pub_line, sec_line;
};

static int on_key(void *ctx, const char *path, const struct keyfile_key *k,
		  char *err, size_t n)
{
	struct pair_keys *pk = ctx;
	bool pub = k->kind == KEYFILE_PUBLIC;
	int *line = pub ? &pk->pub_line : &pk->sec_line;

	if (*line)
		return key_err(err, n, -EINVAL, "%s:%d: %s: given twice (first on line %d)", path,
			       k->line, pub ? "public-key" : "secret-key", *line);
	*line = k->line;
	zmq_z85_encode(pub ? pk->pub : pk->sec, k->bin, KEYFILE_BIN_LEN);
	return 0;
}

int cutmixd_load_keypair(const char *path, char public_key[41], char secret_key[41],
			 char *err, size_t err_size)
{
	struct pair_keys pk;
	char derived[41], *text = NULL;
	size_t len = 0;
	int rc;

	if (err && err_size)
		err[0] = 0;
	if (!path || !public_key)
		return key_err(err, err_size, -EINVAL, "load_keypair: no path or output");
	memset(&pk, 0, sizeof(pk));
	rc = keyfile_read(path, &text, &len, NULL, err, err_size);
	if (rc < 0)
		return rc;
	rc = keyfile_parse(path, text, len, on_key, &pk, err, err_size);
	if (rc < 0)
		goto out;
	if (!pk.pub_line) {
		rc = key_err(err, err_size, -ENODATA, "%s: no 'public-key = ...' line", path);
		goto out;
	}
	if (secret_key) {
		if (!pk.sec_line) {
			rc = key_err(err, err_size, -ENODATA,
				     "%s: no 'secret-key = ...' line (a keypair file, NAME.key, has both)",
				     path);
			goto out;
		}
		if (zmq_curve_public(derived, pk.sec) != 0 || strcmp(derived, pk.pub) != 0) {
			rc = key_err(err, err_size, -EINVAL,
				     "%s: the secret key does not belong to the public key", path);
			goto out;
		}
		strcpy(secret_key, pk.sec);
	}
	strcpy(public_key, pk.pub);
out:
	explicit_bzero(&pk, sizeof(pk));
	keyfile_free_text(text, len);
	return rc;
}

/* A JSON request (INFO, STATS): *json the reply text, freed by the
 * caller, or NULL on error. */
static int json_call(cutmixd_client_t *c, uint16_t type, char **json)
{
	char *s = NULL;
	int rc;

	if (json)
		*json = NULL;
	if (!c)
		return -EINVAL;
	rc = json_request(c, type, &s);
	if (rc == 0 && json)
		*json = s;
	else
		free(s);
	return rc;
}

int cutmixd_client_info(cutmixd_client_t *c, char **json)
{
	return json_call(c, WIRE_INFO, json);
}

int cutmixd_client_stats(cutmixd_client_t *c, char **json)
{
	return json_call(c, WIRE_STATS, json);
}

int64_t cutmixd_client_batches_per_epoch(cutmixd_client_t *c)
{
	int rc;

	if (!c)
		return -EINVAL;
	if (c->bpe >= 0)
		return c->bpe;
	if (!c->pipeline[0])
		return cmx_set_error(c, -EINVAL, 0, "batches_per_epoch: client has no pipeline");
	rc = cutmixd_client_info(c, NULL);
	if (rc < 0)
		return rc;
	if (c->bpe < 0)
		return cmx_set_error(c, -EPROTO, 0,
				 "info: daemon sent no batches_per_epoch for pipeline '%s'",
				 c->pipeline);
	return c->bpe;
}

int cutmixd_client_digest(const cutmixd_client_t *c, uint8_t out[CUTMIXD_DIGEST_SIZE])
{
	if (!c)
		return -EINVAL;
	if (!c->have_digest)
		return -ENODATA;
	memcpy(out, c->digest, CUTMIXD_DIGEST_SIZE);
	return 0;
}

int cutmixd_client_peer_count(const cutmixd_client_t *c)
{
	return c ? c->npeers : -EINVAL;
}

int cutmixd_client_peer_stats(const cutmixd_client_t *c, unsigned i,
			      struct cutmixd_peer_stats *out)
{
	const struct peer *p;

	if (!c || !out)
		return -EINVAL;
	if (i >= (unsigned)c->npeers)
		return -ERANGE;
	p = &c->peers[i];
	memset(out, 0, sizeof(*out));
	out->endpoint = p->endpoint;
	out->state = cmx_peer_state(p);
	out->outstanding = p->live;
	out->requests = p->requests;
	out->replies = p->replies;
	out->batches = p->batches;
	out->resent = p->resent;
	out->downs = p->downs;
	out->disconnects = p->disconnects;
	out->latency_ms = p->latency;
	return 0;
}

const char *cutmixd_client_error(const cutmixd_client_t *c)
{
	return c ? c->err : "no client";
}

uint32_t cutmixd_client_error_status(const cutmixd_client_t *c)
{
	return c ? c->err_status : 0;
}

const char *cutmixd_status_name(uint32_t status)
{
	return wire_status_name(status);
}

#ifndef CUTMIXD_VERSION /* -DCUTMIXD_VERSION=\"$(cat VERSION)\" from the Makefile */
#error "CUTMIXD_VERSION is not defined: build with the Makefile (it comes from the file VERSION)"
#endif

const char *cutmixd_version(void)
{
	return CUTMIXD_VERSION;
}
