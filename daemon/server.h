/*
 * server.h — the ROUTER socket and the serving loop.
 *
 * Requests come in on one ZeroMQ ROUTER socket (one thread owns it);
 * batches are computed on the worker pool and come back through a queue
 * and an eventfd; replies leave with the image, label and metadata buffers
 * handed to ZeroMQ without a copy. See proto/PROTOCOL.md for the wire.
 */
#ifndef CUTMIXD_SERVER_H
#define CUTMIXD_SERVER_H

#include "engine.h"
#include "keys.h"
#include "pool.h"

typedef struct server server_t;

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

struct server_opts {
	const char *config_path;   /* for SIGHUP reloads */
	char *const *sets;         /* --set overrides, reapplied on reload */
	int n_sets;
	/* CURVE when keys->curve: server_new copies the secret and takes
	 * keys->authorized (cleared). NULL: no CURVE. */
	struct server_keys *keys;
};

/*
 * Bind every endpoint of the engine's config. Takes a reference to *eng
 * (the caller keeps its own). With CURVE, a ZAP handler (RFC 27) on this
 * server's ZeroMQ context lets in the clients whose public key is
 * authorized; the others get no reply of any kind: their handshake fails.
 * Returns NULL with a message in err.
 */
server_t *server_new(engine_t *eng, pool_t *pool, struct stats *stats,
		     const struct server_opts *opts, char *err, size_t errlen);

/* Serve until SIGTERM/SIGINT (blocked by the caller in every thread and
 * read here through a signalfd). SIGHUP reloads the config and re-reads
 * the authorized keys (a bad new config or key file keeps the old one).
 * Returns 0. */
int server_run(server_t *s);

void server_destroy(server_t **s);

#endif
