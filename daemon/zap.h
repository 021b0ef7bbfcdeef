/*
 * zap.h — CURVE for the ROUTER socket: the [security] key files, and the
 * ZAP handler (RFC 27) that lets in only the authorized client keys.
 *
 * The handler is a REP socket on the ROUTER's ZeroMQ context, bound at
 * inproc://zeromq.zap.01 before any endpoint is bound, and polled by the
 * serving thread with the rest (the only thread that touches it). libzmq's
 * I/O threads hold each CURVE handshake until the handler answers; "400"
 * fails it, so a client whose public key is not authorized never gets a
 * message through.
 */
#ifndef CUTMIXD_ZAP_H
#define CUTMIXD_ZAP_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "keys.h"

typedef struct zap zap_t;

/* The keys of a config's [security] section, read and checked. */
struct server_keys {
	bool curve;                          /* [security] is set */
	char secret[KEYS_Z85_LEN + 1];       /* the daemon's secret key */
	char public_key[KEYS_Z85_LEN + 1];   /* ... and its public key */
	keyset_t *authorized;                /* client keys let in */
};

/*
 * Read the key files that cfg's [security] names (nothing when it has
 * none: k->curve false). Used at start (a bad file exits 78 before
 * anything is bound), by --check, and on SIGHUP. Returns 0, or -errno with
 * a message naming the key file and line. Clear *k with server_keys_clear.
 */
int server_keys_load(const config_t *cfg, struct server_keys *k, char *err,
		     size_t errlen);
/* Wipe the secret, free the set. */
void server_keys_clear(struct server_keys *k);

/*
 * Start the ZAP handler on `zctx` and make `router` (not bound yet) a
 * CURVE server with k's secret key. Takes k->authorized (cleared).
 * Returns NULL with a message in err.
 */
zap_t *zap_new(void *zctx, void *router, struct server_keys *k, char *err,
	       size_t errlen);
/* The REP socket, for zmq_poll. */
void *zap_socket(zap_t *z);
/* Answer one waiting ZAP request; 0 when none was waiting. */
int zap_handle(zap_t *z);
/*
 * A reloaded config's keys: the authorized set swaps in (taken from k);
 * turning CURVE on or off, or a new secret key, needs a restart and is
 * logged. z is NULL when the daemon runs without CURVE.
 */
void zap_reload(zap_t *z, struct server_keys *k);
void zap_destroy(zap_t **z);

#endif
