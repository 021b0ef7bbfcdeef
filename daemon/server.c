/*
 * server.c — the serving loop: ROUTER socket in, worker pool, replies out;
 * signals, reloads and the stop.
 *
 * One request, in file order:
 *
 *   ROUTER ──recv_one──> handle_request ──> request_valid (engine_check_request)
 *      │                     │ INFO/STATS: reply_info, reply_stats ───┐
 *      │                     └ BATCH: queue_batch -> `pending`        │
 *      │                                  │ schedule (max_inflight)   │
 *      │                  cache_serve (reply.c) or batch_new, submit  │
 *      │                                  │ workers: samples, finish  │
 *      │                     batch_complete -> `done` + eventfd       │
 *      │                                  │ done_drain                │
 *      │                           batch_reply (reply.c)              │
 *      │                                  v                           v
 *      └<── reply_queue / unsent_flush (reply.c: window, tickets) <───┘
 *
 *   SIGHUP: reload_request -> rebuild thread (reload.c) -> reload_finish
 *   SIGTERM: begin_stop -> stop_done (grace, cancel, deadline)
 *
 * DESIGN
 * - One thread (the caller of server_run) owns the ROUTER socket, the
 *   client table, the pending FIFO, the unsent FIFO and `inflight` (the
 *   state in reply.h). No lock guards them because no other thread
 *   touches them.
 * - Workers hand finished batches back through `done` (guarded by
 *   `done_lock`, the only lock here) and an eventfd that the loop polls
 *   next to the socket and a signalfd.
 * - Flow control: every client may have at most max_client_window requests
 *   outstanding (pending + computing + reply not yet accepted by ZeroMQ);
 *   more get a BUSY error. At most max_inflight batches are computed at
 *   once; the rest wait in `pending` without holding pixel memory. A
 *   counted reply that ZeroMQ has accepted stays on its client's ticket
 *   (struct ticket) until ZeroMQ has written its last byte to the kernel;
 *   while a window of them is on the ticket, further replies wait in
 *   `unsent` (still outstanding), and once a window waits there the
 *   client's new requests are dropped (counted in `dropped`). So a client
 *   that never reads holds at most 2 x window replies in memory (a window
 *   in ZeroMQ, a window in `unsent`), in bytes, whatever ZeroMQ's per-peer
 *   high-water mark would let queue.
 * - Ownership: a reply's frame buffers go to ZeroMQ (zmq_msg_init_data,
 *   released with free() from ZeroMQ's I/O thread); everything else is
 *   freed here.
 * - Batch cache ([server] batch_cache_mb, cache.h): a request is looked
 *   up before its batch is built; a hit replies with frames lent from the
 *   cache entry (one reference per ZeroMQ message), a request for a batch
 *   being built waits on that build. Only this thread touches the cache.
 * - Metrics ([server] metrics, metrics.h): this thread publishes gauges
 *   (tick) and histogram observations; the HTTP thread only reads them.
 * - CURVE ([security]): the ROUTER is a CURVE server, and the same thread
 *   polls the ZAP handler (zap.c) with the rest.
 * - Shared memory ([server] shm, shm.h): the side socket's epoll fd is
 *   polled here too; SHM_OPEN, SHM_RELEASE and shm batch replies: reply.c.
 */
#include "server.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <zmq.h>
#include <systemd/sd-daemon.h>

#include "batch.h"
#include "bufpool.h"
#include "cache.h"
#include "info.h"
#include "log.h"
#include "metrics.h"
#include "preflight.h"
#include "reload.h"
#include "reply.h"
#include "wire.h"

/* SIGTERM: batches being computed may finish for STOP_GRACE_S; then the
 * workers are told to stop (they check between samples) and the batches
 * still running fail with SHUTTING_DOWN. The loop ends when every request
 * is answered and ZeroMQ has written every reply, or at STOP_DEADLINE_S
 * (docs/OPERATIONS.md; the unit's TimeoutStopSec=10 exceeds it). */
#define STOP_GRACE_S 1.0
#define STOP_DEADLINE_S 3.0

/* ---- batches ---------------------------------------------------------- */

/* Runs on a worker thread. */
static void batch_complete(batch_t *b, void *arg)
{
	server_t *s = arg;
	uint64_t one = 1;

	pthread_mutex_lock(&s->done_lock);
	b->next = s->done;
	s->done = b;
	pthread_mutex_unlock(&s->done_lock);
	if (write(s->efd, &one, sizeof(one)) < 0)
		log_err("server: eventfd write: %s", strerror(errno));
}

static void done_drain(server_t *s)
{
	uint64_t v;
	batch_t *list, *rev = NULL;

	if (read(s->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_err("server: eventfd read: %s", strerror(errno));
	pthread_mutex_lock(&s->done_lock);
	list = s->done;
	s->done = NULL;
	pthread_mutex_unlock(&s->done_lock);
	while (list) { /* restore completion order */
		batch_t *n = list->next;
		list->next = rev;
		rev = list;
		list = n;
	}
	while (rev) {
		batch_t *b = rev;
		rev = b->next;
		s->inflight--;
		batch_reply(s, b);
		free(b->user);
		batch_destroy(&b);
	}
}

/* Start pending requests while there is room in the pool. */
static void schedule(server_t *s)
{
	while (s->pend_head && s->inflight < s->max_inflight) {
		struct pending *pq = s->pend_head;
		s->pend_head = pq->next;
		if (!s->pend_head)
			s->pend_tail = NULL;
		s->n_pending--;

		char msg[300];
		uint32_t status;
		int pi = engine_find_pipeline(s->eng, pq->rq.pipeline);
		batch_t *b = NULL;
		if (pi < 0) { /* the pipeline went away in a reload */
			char name[4 * WIRE_PIPELINE_MAX + 1];
			reply_error(s, pq->cl, pq->delim, true, &pq->rq, WIRE_E_NO_PIPELINE,
				    "unknown pipeline '%s'", printable(pq->rq.pipeline, name));
			free(pq);
			continue;
		}
		metrics_observe_wait(s->metrics, pq->rq.pipeline, stats_now() - pq->t_arrival);
		if (cache_serve(s, pq))
			continue;
		b = batch_new(s->eng, pi, pq->rq.epoch, pq->rq.rank, pq->rq.world,
			      pq->rq.batch, &status, msg, sizeof(msg));
		if (!b) {
			reply_error(s, pq->cl, pq->delim, true, &pq->rq, status, "%s", msg);
			cache_fail(s, pq, status, msg);
			free(pq);
			continue;
		}
		pq->t_start = stats_now();
		b->user = pq;
		b->version = pq->rq.version;
		b->stop = &s->cancel;
		s->inflight++;
		batch_submit(b, s->pool, batch_complete, s);
	}
}

/* Images per second over the last RATE_WINDOW seconds (or since start, while
 * the history is shorter than that). */
static double current_rate(server_t *s, double now)
{
	double t0 = s->stats->started;
	uint64_t n0 = 0;

	for (unsigned k = 1; k <= RATE_WINDOW; k++) {
		unsigned i = (s->rate_i + k) % RATE_WINDOW; /* oldest first */
		if (s->rate_t[i] > 0) {
			t0 = s->rate_t[i];
			n0 = s->rate_n[i];
			break;
		}
	}
	uint64_t n = stats_get(s->stats, images);
	return now > t0 + 0.05 ? (double)(n - n0) / (now - t0) : 0.0;
}

/* ---- requests --------------------------------------------------------- */

/* Check a batch or info request against the current config (the pipeline
 * here, the rest in engine_check_request). */
static bool request_valid(server_t *s, struct client *cl, bool delim,
			  const struct wire_request *rq, bool counts, int *pipeline)
{
	int pi = engine_find_pipeline(s->eng, rq->pipeline);

	*pipeline = pi;
	if (rq->type == WIRE_INFO && rq->pipeline[0] == '\0')
		return true;
	if (pi < 0) {
		char name[4 * WIRE_PIPELINE_MAX + 1];
		reply_error(s, cl, delim, counts, rq, WIRE_E_NO_PIPELINE,
			    "unknown pipeline '%s'", printable(rq->pipeline, name));
		return false;
	}
	char msg[300];
	uint32_t status = engine_check_request(s->eng, pi, rq, msg, sizeof(msg));
	if (status != WIRE_OK) {
		reply_error(s, cl, delim, counts, rq, status, "%s", msg);
		return false;
	}
	return true;
}

static void reply_info(server_t *s, struct client *cl, bool delim,
		       const struct wire_request *rq, int pi)
{
	struct wire_reply h;

	header_init(s, &h, WIRE_INFO, rq);
	if (pi >= 0)
		header_shape(&h, engine_pipeline(s->eng, pi),
			     sampler_batches(engine_pipeline(s->eng, pi)->sampler, rq->world));
	cl->outstanding++;
	reply_text(s, cl, delim, true, &h,
		   info_json(s->eng, pi, rq->rank, rq->world, rq->version,
			     engine_config(s->eng)->server.max_client_window));
}

static void reply_stats(server_t *s, struct client *cl, bool delim,
			const struct wire_request *rq)
{
	struct wire_reply h;
	struct server_gauges g = {
		.clients = s->n_clients, .pending = s->n_pending,
		.inflight = s->inflight, .unsent = s->n_unsent,
		.queue_depth = pool_depth(s->pool),
	};

	g.img_per_s = current_rate(s, stats_now());
	shm_publish(s);
	header_init(s, &h, WIRE_STATS, rq);
	cl->outstanding++;
	reply_text(s, cl, delim, true, &h, stats_json(s->stats, &g, s->eng));
}

static void queue_batch(server_t *s, struct client *cl, bool delim,
			const struct wire_request *rq);

static void handle_request(server_t *s, struct client *cl, bool delim,
			   const void *buf, size_t len)
{
	struct wire_request rq;
	int pi = -1, rc;

	rc = wire_decode_request(buf, len, &rq);
	if (rc == 0 && rq.type == WIRE_SHM_RELEASE) { /* no reply, not a request */
		shm_handle_release(s, cl, &rq);
		return;
	}
	stats_add(s->stats, requests, 1);
	if (rc == -WIRE_E_VERSION) {
		reply_error(s, cl, delim, false, &rq, WIRE_E_VERSION,
			    "this daemon speaks protocol versions %d..%d, got %u",
			    WIRE_VERSION_MIN, WIRE_VERSION, rq.version);
		return;
	}
	if (rc) {
		reply_error(s, cl, delim, false, &rq, WIRE_E_MALFORMED,
			    "request must be one %d-byte frame with magic 'CMXQ' (got %zu bytes)",
			    WIRE_REQUEST_SIZE, len);
		return;
	}
	if (s->stopping) {
		reply_error(s, cl, delim, false, &rq, WIRE_E_SHUTTING_DOWN, "daemon is stopping");
		return;
	}

	if (rq.type < WIRE_INFO || rq.type > WIRE_SHM_OPEN) { /* INFO STATS BATCH SHM_OPEN */
		reply_error(s, cl, delim, false, &rq, WIRE_E_UNKNOWN_TYPE,
			    "unknown request type %u", rq.type);
		return;
	}
	/* INFO and STATS count against the window too: their replies can be
	 * megabytes (class names) and cost the serving thread. */
	uint32_t cap = engine_config(s->eng)->server.max_client_window;
	if (cl->outstanding >= cap) {
		reply_error(s, cl, delim, false, &rq, WIRE_E_BUSY,
			    "at most %u requests may be outstanding per client; wait for a reply before asking again",
			    cap);
		return;
	}
	if (rq.type != WIRE_STATS && !request_valid(s, cl, delim, &rq, false, &pi))
		return;
	if (rq.type == WIRE_INFO)
		reply_info(s, cl, delim, &rq, pi);
	else if (rq.type == WIRE_SHM_OPEN)
		reply_shm_open(s, cl, delim, &rq, pi);
	else if (rq.type == WIRE_STATS)
		reply_stats(s, cl, delim, &rq);
	else
		queue_batch(s, cl, delim, &rq);
}

/* A valid BATCH request waits in `pending` for a pool slot. */
static void queue_batch(server_t *s, struct client *cl, bool delim,
			const struct wire_request *rq)
{
	struct pending *pq = calloc(1, sizeof(*pq));
	if (!pq) {
		reply_error(s, cl, delim, false, rq, WIRE_E_INTERNAL, "out of memory");
		return;
	}
	pq->rq = *rq;
	pq->cl = cl;
	pq->delim = delim;
	pq->t_arrival = stats_now();
	cl->outstanding++;
	if (s->pend_tail)
		s->pend_tail->next = pq;
	else
		s->pend_head = pq;
	s->pend_tail = pq;
	s->n_pending++;
}

/* Read one whole multipart message from the ROUTER: its first three
 * parts into parts[], *n of them, *extra beyond. 0 = none waiting. */
static int recv_parts(server_t *s, zmq_msg_t parts[3], int *n, int *extra)
{
	int more = 1;

	*n = *extra = 0;
	while (more) {
		zmq_msg_t m;
		zmq_msg_init(&m);
		if (zmq_msg_recv(&m, s->router, *n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
			zmq_msg_close(&m);
			if (*n == 0)
				return 0;
			break;
		}
		more = zmq_msg_more(&m);
		if (*n < 3)
			parts[(*n)++] = m;
		else {
			(*extra)++;
			zmq_msg_close(&m);
		}
	}
	return 1;
}

/* The client a message comes from (tracked from now on), or NULL when the
 * table has no room even after expiring idle clients: then it is answered
 * BUSY here. */
static struct client *recv_client(server_t *s, zmq_msg_t parts[3], int n, double now)
{
	size_t idlen = zmq_msg_size(&parts[0]);
	struct client *cl = NULL;
	if (idlen > 0 && idlen <= MAX_ID) {
		cl = client_get(s, zmq_msg_data(&parts[0]), idlen, true);
		if (!cl) { /* table full: make room from idle clients once */
			clients_expire(s, now, true);
			cl = client_get(s, zmq_msg_data(&parts[0]), idlen, true);
		}
	}
	if (!cl) {
		/* Every tracked client has work outstanding: answer BUSY without
		 * tracking this one (nothing is queued for it if it cannot take
		 * the reply at once), and log at most every 10 s. */
		stats_add(s->stats, requests, 1);
		if (idlen > 0)
			{
			bool d = n == 3 && zmq_msg_size(&parts[1]) == 0;
			reply_untracked_busy(s, &parts[0], n >= 2 ? &parts[d ? 2 : 1] : NULL, d);
		}
		if (now - s->last_full_log > 10.0) {
			log_warning("server: refusing requests: %s",
				    idlen ? "too many clients (max_clients)" : "no peer identity");
			s->last_full_log = now;
		}
	}
	return cl;
}

/* Read one request from the ROUTER and handle it. 0 = none waiting. */
static int recv_one(server_t *s)
{
	zmq_msg_t parts[3];
	int n, extra;

	if (!recv_parts(s, parts, &n, &extra))
		return 0;
	double now = stats_now();
	struct client *cl = recv_client(s, parts, n, now);
	if (!cl)
		goto out_close;
	cl->last_seen = now;
	/* A client that does not read its replies gets no more of them: once
	 * a window's worth is stuck in `unsent`, its requests are dropped
	 * (counted, logged once) so memory stays bounded. */
	if (cl->unsent >= engine_config(s->eng)->server.max_client_window) {
		stats_add(s->stats, requests, 1);
		stats_add(s->stats, dropped, 1);
		if (!cl->warned)
			log_warning("server: a client does not read its replies; dropping its requests until it does");
		cl->warned = true;
		goto out_close;
	}
	cl->warned = false;

	/* [identity][request] from a DEALER, [identity][""][request] from a
	 * REQ socket; anything else is malformed. */
	bool delim = n == 3 && zmq_msg_size(&parts[1]) == 0;
	zmq_msg_t *body = delim ? &parts[2] : &parts[1];
	if (n < 2 || extra || (n == 3 && !delim)) {
		struct wire_request none;
		memset(&none, 0, sizeof(none));
		stats_add(s->stats, requests, 1);
		reply_error(s, cl, delim, false, &none, WIRE_E_MALFORMED,
			    "a request is exactly one %d-byte frame (after an optional empty delimiter)",
			    WIRE_REQUEST_SIZE);
		goto out_close;
	}
	handle_request(s, cl, delim, zmq_msg_data(body), zmq_msg_size(body));

out_close:
	for (int i = 0; i < n; i++)
		zmq_msg_close(&parts[i]);
	return 1;
}

/* ---- signals, reload, housekeeping ------------------------------------ */

/* SIGHUP: start a build of the next generation (reload.c), or, while one
 * runs, ask for another once it is done (SIGHUPs coalesce: at most one
 * build at a time, and the last one reads the newest config). */
static void reload_request(server_t *s)
{
	char err[256];

	if (s->rebuild) {
		s->reload_again = true;
		return;
	}
	sd_notify(0, "RELOADING=1");
	s->rebuild = rebuild_start(s->opts.config_path, s->opts.sets, s->opts.n_sets,
				   s->stats, s->efd, err, sizeof(err));
	if (!s->rebuild) {
		log_err("reload: keeping the running config: %s", err);
		sd_notify(0, "READY=1");
	}
}

/* A build has ended: swap its generation in (batches being computed keep
 * the one they started with), or log why not. */
static void reload_finish(server_t *s)
{
	char err[1024], unapplied[1024];
	engine_t *eng = NULL;
	struct server_keys keys;

	memset(&keys, 0, sizeof(keys));
	if (rebuild_take(&s->rebuild, &eng, &keys, err, sizeof(err))) {
		log_err("reload: keeping the running config: %s", err);
	} else {
		zap_reload(s->zap, &keys);
		if (reload_unapplied(&s->fixed, engine_config(eng), unapplied, sizeof(unapplied)))
			log_warning("reload: not applied until a restart: %s", unapplied);
		log_notice("reload: config digest %.16s -> %.16s", engine_digest_hex(s->eng), engine_digest_hex(eng));
		engine_unref(&s->eng);
		s->eng = eng;
		cache_keep_digest(s->cache, engine_digest(s->eng));
	}
	server_keys_clear(&keys);
	sd_notify(0, "READY=1");
	if (s->reload_again && !s->stopping) {
		s->reload_again = false;
		reload_request(s);
	}
}

static void begin_stop(server_t *s)
{
	if (s->stopping)
		return;
	s->stopping = true;
	s->reload_again = false;
	rebuild_abandon(&s->rebuild); /* a stop does not wait for a scan */
	s->stop_grace = stats_now() + STOP_GRACE_S;
	s->stop_deadline = stats_now() + STOP_DEADLINE_S;
	sd_notify(0, "STOPPING=1");
	log_notice("stopping: %u batches in flight, %u pending requests refused",
		   s->inflight, s->n_pending);
	while (s->pend_head) {
		struct pending *pq = s->pend_head;
		s->pend_head = pq->next;
		reply_error(s, pq->cl, pq->delim, true, &pq->rq, WIRE_E_SHUTTING_DOWN,
			    "daemon is stopping");
		free(pq);
	}
	s->pend_tail = NULL;
	s->n_pending = 0;
}

/* Counted replies that ZeroMQ holds, over every client. */
static unsigned replies_held(server_t *s)
{
	unsigned n = 0;

	for (int h = 0; h < CLIENT_BUCKETS; h++)
		for (struct client *c = s->clients[h]; c; c = c->next)
			n += client_held(c);
	return n;
}

/* While stopping: tell the workers to stop after the grace period; true
 * once everything is answered and written, or at the deadline. */
static bool stop_done(server_t *s, double now)
{
	if (now > s->stop_grace && s->inflight &&
	    !atomic_load_explicit(&s->cancel, memory_order_relaxed)) {
		log_notice("stopping: %u batches still computing: cancelled", s->inflight);
		atomic_store_explicit(&s->cancel, true, memory_order_relaxed);
	}
	if (now > s->stop_deadline)
		return true;
	return s->inflight == 0 && !s->unsent_head && replies_held(s) == 0;
}

static void handle_signals(server_t *s)
{
	struct signalfd_siginfo si;

	bool stop = false, hup = false;

	/* Read them all first: a SIGTERM wins over a SIGHUP read before it. */
	while (read(s->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
			stop = true;
		else if (si.ssi_signo == SIGHUP)
			hup = true;
	}
	if (stop)
		begin_stop(s);
	else if (hup && !s->stopping)
		reload_request(s);
}

/* The gauges the HTTP thread shows (metrics.h), from this thread. */
static void metrics_publish(server_t *s)
{
	struct metrics_gauges g = {
		.clients = s->n_clients, .pending = s->n_pending, .inflight = s->inflight,
		.unsent = s->n_unsent, .queue_depth = pool_depth(s->pool),
		.workers = pool_workers(s->pool),
		.cache_limit_bytes = engine_config(s->eng)->server.batch_cache_mb << 20,
	};

	if (!s->metrics)
		return;
	memcpy(g.digest_hex, engine_digest_hex(s->eng), sizeof(g.digest_hex));
	metrics_gauges(s->metrics, &g);
}

static void tick(server_t *s, double now)
{
	if (now - s->last_tick < 1.0)
		return;
	s->last_tick = now;
	s->rate_i = (s->rate_i + 1) % RATE_WINDOW;
	s->rate_t[s->rate_i] = now;
	s->rate_n[s->rate_i] = stats_get(s->stats, images);
	clients_expire(s, now, false);
	shm_tick(s, now);

	metrics_publish(s);
	double rate = current_rate(s, now);
	sd_notifyf(0, "STATUS=%.0f img/s, %u clients, %u in flight, %" PRIu64 " batches served",
		   rate, s->n_clients, s->inflight, stats_get(s->stats, batches));
}

/* ---- life cycle ------------------------------------------------------- */

/* The ZeroMQ context and the ROUTER with its options (not bound yet). */
static int router_open(server_t *s, char *err, size_t errlen)
{
	int v;

	s->zctx = zmq_ctx_new();
	s->router = s->zctx ? zmq_socket(s->zctx, ZMQ_ROUTER) : NULL;
	if (!s->router) {
		snprintf(err, errlen, "zmq socket: %s", zmq_strerror(errno));
		return -1;
	}
	v = 1;
	zmq_setsockopt(s->router, ZMQ_ROUTER_MANDATORY, &v, sizeof(v));
	int64_t maxmsg = 4096; /* a request is 80 bytes: bigger peers are cut off */
	zmq_setsockopt(s->router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg));
	/* Room for bursts of small replies (errors, info) per peer; what a
	 * peer leaves unread beyond it waits in `unsent`, bounded above. */
	v = 1000;
	zmq_setsockopt(s->router, ZMQ_SNDHWM, &v, sizeof(v));
	v = 500; /* at exit, half a second to deliver what is queued */
	zmq_setsockopt(s->router, ZMQ_LINGER, &v, sizeof(v));
	if (preflight_sndbuf(s->router, engine_config(s->eng)->server.tcp_sndbuf_kb,
			     err, errlen))
		return -1;

	return 0;
}

server_t *server_new(engine_t *eng, pool_t *pool, struct stats *stats,
		     const struct server_opts *opts, char *err, size_t errlen)
{
	const struct server_cfg *sv = &engine_config(eng)->server;
	server_t *s = calloc(1, sizeof(*s));
	sigset_t mask;

	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->efd = s->sfd = -1;
	s->eng = engine_ref(eng);
	s->pool = pool;
	s->stats = stats;
	s->opts = *opts;
	s->opts.keys = NULL; /* taken below; not kept */
	restart_keys_of(engine_config(eng), &s->fixed);
	pthread_mutex_init(&s->done_lock, NULL);
	atomic_init(&s->cancel, false);
	s->max_inflight = sv->max_inflight ? sv->max_inflight : 2 + pool_workers(pool) / 2;
	/* Idle batch buffers kept for reuse. Bound by the peak, the pool
	 * never holds more buffers (in use + idle) than were ever in use at
	 * once, so this cap costs no peak RSS; one idle slot was too few (two releases before
	 * the next get unmapped one: half the batches faulted in fresh pages,
	 * see bufpool.c). */
	bufpool_set_limit(16);
	bufpool_bound_by_peak(true);

	s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	preflight_signal_set(&mask);
	s->sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (s->efd < 0 || s->sfd < 0) {
		snprintf(err, errlen, "eventfd/signalfd: %s", strerror(errno));
		goto out_fail;
	}

	if (preflight_threads(err, errlen))
		goto out_fail;
	if (router_open(s, err, errlen))
		goto out_fail;
	if (opts->keys && opts->keys->curve) {
		s->zap = zap_new(s->zctx, s->router, opts->keys, err, errlen);
		if (!s->zap)
			goto out_fail;
	}

	for (int i = 0; i < sv->n_endpoints; i++) {
		int lock_fd = -1;
		int rc = preflight_bind(s->router, sv->endpoints[i], s->zap != NULL, &lock_fd,
					err, errlen);
		if (lock_fd >= 0)
			s->lock_fds[s->n_locks++] = lock_fd; /* one per endpoint at most */
		if (rc)
			goto out_fail;
	}
	if (sv->metrics && !(s->metrics = metrics_new(sv->metrics, stats, err, errlen)))
		goto out_fail;
	if (sv->batch_cache_mb && !(s->cache = cache_new(sv->batch_cache_mb << 20, stats))) {
		snprintf(err, errlen, "out of memory for the batch cache");
		goto out_fail;
	}
	shm_start(s);
	metrics_publish(s);
	s->watchdog = sd_watchdog_enabled(0, NULL) > 0;
	return s;

out_fail:
	server_destroy(&s);
	return NULL;
}

int server_run(server_t *s)
{
	const struct server_cfg *sv = &engine_config(s->eng)->server;

	for (int i = 0; i < sv->n_endpoints; i++)
		log_notice("ready: serving %d pipeline(s) on %s, %u workers, config digest %.16s",
			   engine_config(s->eng)->n_pipelines, sv->endpoints[i],
			   pool_workers(s->pool), engine_digest_hex(s->eng));
	sd_notify(0, "READY=1");

	for (;;) {
		zmq_pollitem_t items[5] = {
			{ s->router, 0, ZMQ_POLLIN, 0 },
			{ NULL, s->efd, ZMQ_POLLIN, 0 },
			{ NULL, s->sfd, ZMQ_POLLIN, 0 },
		};
		int n_items = 3, i_zap = -1, i_shm = -1;
		long timeout = s->unsent_head || s->stopping ? 10 : 1000;

		if (s->zap)
			items[i_zap = n_items++] = (zmq_pollitem_t){ zap_socket(s->zap), 0, ZMQ_POLLIN, 0 };
		if (s->shm)
			items[i_shm = n_items++] = (zmq_pollitem_t){ NULL, shm_fd(s->shm), ZMQ_POLLIN, 0 };
		if (zmq_poll(items, n_items, timeout) < 0 && errno != EINTR) {
			log_err("server: zmq_poll: %s", zmq_strerror(errno));
			break;
		}
		if (items[2].revents)
			handle_signals(s);
		if (i_shm >= 0 && items[i_shm].revents)
			shm_handle(s->shm, stats_now());
		if (i_zap >= 0 && items[i_zap].revents)
			for (int k = 0; k < 256 && zap_handle(s->zap); k++)
				;
		if (items[1].revents)
			done_drain(s);
		if (s->rebuild && rebuild_done(s->rebuild))
			reload_finish(s);
		unsent_flush(s);
		/* Bounded so replies and signals are never starved. */
		for (int k = 0; k < 256 && recv_one(s); k++)
			;
		if (!s->stopping)
			schedule(s);

		double now = stats_now();
		tick(s, now);
		if (s->watchdog)
			sd_notify(0, "WATCHDOG=1");
		if (s->stopping && stop_done(s, now))
			break;
	}
	if (s->inflight || s->unsent_head || replies_held(s))
		log_warning("stopped with %u batches unfinished, %u replies unsent and %u "
			    "not yet written by ZeroMQ", s->inflight, s->n_unsent, replies_held(s));
	return 0;
}

void server_destroy(server_t **sp)
{
	server_t *s = sp ? *sp : NULL;

	if (!s)
		return;
	rebuild_abandon(&s->rebuild); /* before efd closes: it may write it */
	/* The pool must be stopped first (the caller's job) so no worker
	 * can still complete a batch into `done`. */
	metrics_destroy(&s->metrics); /* joins the HTTP thread */
	while (s->done) {
		batch_t *b = s->done;
		s->done = b->next;
		cache_abort(s->cache, &((struct pending *)b->user)->ce);
		free(b->user);
		batch_destroy(&b);
	}
	while (s->unsent_head) {
		struct reply *r = s->unsent_head;
		s->unsent_head = r->next;
		reply_free(r);
	}
	while (s->pend_head) {
		struct pending *pq = s->pend_head;
		s->pend_head = pq->next;
		free(pq);
	}
	for (int h = 0; h < CLIENT_BUCKETS; h++)
		while (s->clients[h]) {
			struct client *c = s->clients[h];
			s->clients[h] = c->next;
			client_free(c);
		}
	cache_destroy(&s->cache);
	shm_destroy(&s->shm);
	if (s->router)
		zmq_close(s->router);
	zap_destroy(&s->zap);
	if (s->zctx)
		zmq_ctx_term(s->zctx);
	if (s->efd >= 0)
		close(s->efd);
	if (s->sfd >= 0)
		close(s->sfd);
	for (int i = 0; i < s->n_locks; i++)
		close(s->lock_fds[i]);
	engine_unref(&s->eng);
	pthread_mutex_destroy(&s->done_lock);
	free(s);
	*sp = NULL;
}
