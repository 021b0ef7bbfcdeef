/*
 * reply.h — the serving loop's state, shared by server.c (the loop, the
 * requests, signals, life cycle) and reply.c (clients, replies and their
 * flow control). Private to those two files: nothing else includes it.
 * Every field is owned by the serving thread except where a comment says
 * otherwise (done/done_lock, cancel, the tickets' atomics).
 */
#ifndef CUTMIXD_REPLY_H
#define CUTMIXD_REPLY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <zmq.h>

#include "batch.h"
#include "cache.h"
#include "metrics.h"
#include "reload.h"
#include "server.h"
#include "shm.h"
#include "wire.h"

#define CLIENT_BUCKETS 1024
#define MAX_ID 255
#define RATE_WINDOW 10 /* seconds of history for img/s */

/*
 * Replies of one client that ZeroMQ has accepted but not yet handed to the
 * kernel. `held` goes up on the serving thread when a counted reply is
 * sent, and down in the free callback of its last frame, which ZeroMQ runs
 * (on its I/O thread) once every byte of the reply is written to the
 * socket, or dropped with its peer. `refs`: one for the client, one per
 * held reply, so a ticket outlives a client forgotten (or a server
 * destroyed) while ZeroMQ still holds its replies.
 */
struct ticket {
	atomic_uint held;
	atomic_uint refs;
};

struct client {
	uint8_t id[MAX_ID];
	uint8_t id_len;
	uint32_t outstanding;
	struct ticket *tk;
	uint32_t unsent;      /* replies ZeroMQ would not take yet */
	uint64_t blocked_pass; /* unsent_flush pass that found its queue full */
	bool warned;          /* logged that its requests are being dropped */
	double last_seen;
	struct client *next;
};

/* A request waiting for a pool slot. */
struct pending {
	struct client *cl;
	bool delim;
	struct wire_request rq;
	double t_arrival, t_start; /* metrics: queued, handed to the pool */
	cache_entry_t *ce;    /* the cache entry this request builds, or NULL */
	struct pending *next;
};

/* A reply ZeroMQ has not accepted yet. */
struct reply {
	struct client *cl;
	bool delim;
	uint8_t header[WIRE_REPLY_SIZE];
	void *body[3];
	size_t body_len[3];
	int n_body;
	bool counts;          /* decrements cl->outstanding once sent */
	bool pooled0;         /* body[0] belongs to the bufpool */
	cache_entry_t *ce;    /* body[] lent by this cache entry (a reference) */
	struct reply *next;
};

struct server {
	void *zctx;
	void *router;
	zap_t *zap;           /* ZAP handler; NULL without CURVE */
	int efd, sfd;
	engine_t *eng;
	pool_t *pool;
	struct stats *stats;
	metrics_t *metrics;   /* NULL: [server] metrics off */
	cache_t *cache;       /* NULL: batch_cache_mb = 0 */
	shm_t *shm;           /* NULL: [server] shm = off (or unavailable) */
	struct server_opts opts;
	uint32_t max_inflight;

	struct client *clients[CLIENT_BUCKETS];
	uint32_t n_clients;
	struct pending *pend_head, *pend_tail;
	uint32_t n_pending;
	struct reply *unsent_head, *unsent_tail;
	uint32_t n_unsent;
	uint32_t inflight;

	pthread_mutex_t done_lock;
	batch_t *done;        /* LIFO under done_lock; order restored below */

	bool stopping;
	double stop_grace, stop_deadline;
	atomic_bool cancel;   /* read by workers between samples (batch.stop) */
	bool watchdog;
	double rate_t[RATE_WINDOW];
	uint64_t rate_n[RATE_WINDOW];
	unsigned rate_i;
	double last_tick;
	double last_full_log;
	uint64_t flush_pass;  /* counts unsent_flush passes (from 1) */
	rebuild_t *rebuild;   /* SIGHUP build running (reload.c), or NULL */
	bool reload_again;    /* another SIGHUP came during it */
	struct restart_keys fixed; /* as started: a reload cannot change them */
	int lock_fds[CONFIG_MAX_ENDPOINTS]; /* ipc:// PATH.lock files held */
	int n_locks;
};

/* ---- clients (reply.c) ---- */
/* Counted replies of c that ZeroMQ holds (not yet written to the kernel). */
unsigned client_held(const struct client *c);
void client_free(struct client *c);
/* The client of a peer identity; created when `create` and there is room
 * (max_clients). NULL otherwise. */
struct client *client_get(server_t *s, const uint8_t *id, size_t len, bool create);
/* Forget clients with nothing outstanding or held that have been quiet
 * for idle_timeout (or all such clients when `all`). */
void clients_expire(server_t *s, double now, bool all);

/* ---- replies (reply.c) ---- */
void reply_free(struct reply *r);
/* Send r now, or queue it in `unsent` behind the client's earlier ones. */
void reply_queue(server_t *s, struct reply *r);
/* One pass over `unsent`: send what ZeroMQ and the windows let out. */
void unsent_flush(server_t *s);
void header_init(server_t *s, struct wire_reply *h, uint16_t type,
		 const struct wire_request *rq);
/* The shape fields of a BATCH header, and of an INFO header for a pipeline. */
void header_shape(struct wire_reply *h, const struct pipeline_rt *rt,
		  uint32_t batches_per_epoch);
/* A reply with one text body (malloc'd `text`, taken over; NULL = out of
 * memory). `counts`: the client's outstanding count drops once it is sent. */
void reply_text(server_t *s, struct client *cl, bool delim, bool counts,
		struct wire_reply *h, char *text);
/* The same with a binary body of `len` bytes (malloc'd, taken over). */
void reply_bytes(server_t *s, struct client *cl, bool delim, bool counts,
		 struct wire_reply *h, char *body, size_t len);
void reply_error(server_t *s, struct client *cl, bool delim, bool counts,
		 const struct wire_request *rq, uint32_t status,
		 const char *fmt, ...) __attribute__((format(printf, 7, 8)));
/* BUSY to a peer the client table has no room for (not tracked: nothing
 * is queued for it; `body` may be NULL). */
void reply_untracked_busy(server_t *s, zmq_msg_t *id, zmq_msg_t *body, bool delim);
/* A pipeline name from the wire, printable: other bytes become \xNN. */
const char *printable(const char *in, char out[4 * WIRE_PIPELINE_MAX + 1]);
/* The reply of a finished batch (its result, or its error), through the
 * batch cache when it is on. */
void batch_reply(server_t *s, batch_t *b);
/* pq's batch failed (pq itself was answered): the same error to every
 * request that waited on it; the entry leaves the cache. */
void cache_fail(server_t *s, struct pending *pq, uint32_t status, const char *msg);
/* Before a batch is built: answer pq from the cache, or park it on the
 * build of the same batch (true: pq is taken). False: build it. */
bool cache_serve(server_t *s, struct pending *pq);

/* ---- shared memory (reply.c) ---- */
/* [server] shm: the side socket (s->shm), or a warning and copies. */
void shm_start(server_t *s);
/* Once a second (tick): deadlines, expiry, gauges. */
void shm_tick(server_t *s, double now);
/* The shm gauges of STATS and /metrics, now. */
void shm_publish(server_t *s);
/* SHM_OPEN: a session for cl, or an error reply (the client copies). */
void reply_shm_open(server_t *s, struct client *cl, bool delim,
		    const struct wire_request *rq, int pi);
/* SHM_RELEASE: no reply; a bad one is counted. */
void shm_handle_release(server_t *s, struct client *cl, const struct wire_request *rq);

#endif
