/*
 * metrics.h — Prometheus / OpenMetrics text exposition at
 * http://HOST:PORT/metrics ([server] metrics), served by libmicrohttpd on
 * its own thread.
 *
 * The HTTP thread only READS shared state: the process counters (relaxed
 * atomics in struct stats) and a snapshot that the server thread publishes
 * under this module's lock (gauges once a second, histogram observations
 * as they happen). It never touches the ZeroMQ socket or the engine.
 * Every function is NULL-safe on `m` (metrics off: nothing to do), so the
 * server's hooks need no test of their own.
 */
#ifndef CUTMIXD_METRICS_H
#define CUTMIXD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "stats.h"

typedef struct metrics metrics_t;

/* What the server thread knows and the counters do not. */
struct metrics_gauges {
	uint32_t clients, pending, inflight, unsent, queue_depth, workers;
	uint64_t cache_limit_bytes;   /* 0: cache off */
	char digest_hex[65];          /* config digest of the serving engine */
};

/*
 * Listen on `hostport` ("127.0.0.1:9464", "[::1]:9464", "localhost:9464",
 * "0.0.0.0:9464"; checked by config). Returns NULL with "cannot listen on
 * 'HOSTPORT': why" in err.
 */
metrics_t *metrics_new(const char *hostport, struct stats *st, char *err,
		       size_t errlen);
/*
 * For --check: bind `hostport` the way metrics_new() will (SO_REUSEADDR,
 * as libmicrohttpd sets it), listen, and release it at once. 0, or -errno
 * with "[server] metrics 'HOSTPORT': cannot bind: why" in err.
 */
int metrics_bindcheck(const char *hostport, char *err, size_t errlen);
/* Stop the HTTP thread (joined) and free. NULL-safe, clears *m. */
void metrics_destroy(metrics_t **m);

/* Server thread: publish the gauges (copied). */
void metrics_gauges(metrics_t *m, const struct metrics_gauges *g);
/* Server thread: one request of `pipeline` waited `seconds` in the queue
 * before a worker (or the cache) took it. */
void metrics_observe_wait(metrics_t *m, const char *pipeline, double seconds);
/* Server thread: one batch of `pipeline` took `seconds` to build. */
void metrics_observe_build(metrics_t *m, const char *pipeline, double seconds);

#endif
