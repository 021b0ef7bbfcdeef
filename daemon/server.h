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
#include "zap.h"
#include "pool.h"

typedef struct server server_t;

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
