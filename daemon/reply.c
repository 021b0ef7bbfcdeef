/*
 * reply.c — clients, replies and their flow control: the client table,
 * sending a reply (or queueing it in `unsent`), the ticket that keeps a
 * reply counted until ZeroMQ has written it, and batch replies with the
 * batch cache (cache.h) in front of them.
 *
 * DESIGN
 * - Everything here runs on the serving thread, except ticket_free_cb
 *   (and bufpool_free_cb, free_cb), which ZeroMQ calls on its I/O thread
 *   when it lets go of a frame; they touch only the frame's buffer and the
 *   ticket's atomics.
 * - A ticket (reply.h) is reference counted: the client holds one
 *   reference, every counted reply in ZeroMQ holds one, so a callback that
 *   runs after its client was forgotten, or after server_destroy, still
 *   finds it.
 * - Shared memory (shm.h): SHM_OPEN replies and releases are handled at
 *   the end of this file; a BATCH with WIRE_FLAG_SHM is copied into a
 *   free slot of its session at reply time (reply_shm), else sent as
 *   usual. The serving thread owns the sessions like everything else.
 * - Order per client: a client's replies leave in the order they were
 *   made; one whose reply waits makes its later ones wait too (`unsent`),
 *   the other clients never wait.
 */
#include "reply.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "budget.h"
#include "bufpool.h"
#include "log.h"

/* ---- clients ---------------------------------------------------------- */

static void ticket_unref(struct ticket *tk)
{
	if (tk && atomic_fetch_sub_explicit(&tk->refs, 1, memory_order_acq_rel) == 1)
		free(tk);
}

static void ticket_hold(struct ticket *tk)
{
	atomic_fetch_add_explicit(&tk->refs, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&tk->held, 1, memory_order_relaxed);
}

static void ticket_release(struct ticket *tk)
{
	atomic_fetch_sub_explicit(&tk->held, 1, memory_order_release);
	ticket_unref(tk);
}

unsigned client_held(const struct client *c)
{
	return atomic_load_explicit(&c->tk->held, memory_order_acquire);
}

void client_free(struct client *c)
{
	ticket_unref(c->tk);
	free(c);
}

static uint32_t id_hash(const uint8_t *id, size_t len)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < len; i++)
		h = (h ^ id[i]) * 16777619u;
	return h % CLIENT_BUCKETS;
}

struct client *client_get(server_t *s, const uint8_t *id, size_t len,
				 bool create)
{
	uint32_t h = id_hash(id, len);

	for (struct client *c = s->clients[h]; c; c = c->next)
		if (c->id_len == len && memcmp(c->id, id, len) == 0)
			return c;
	if (!create || s->n_clients >= engine_config(s->eng)->server.max_clients)
		return NULL;
	struct client *c = calloc(1, sizeof(*c));
	struct ticket *tk = c ? calloc(1, sizeof(*tk)) : NULL;
	if (!tk) {
		free(c);
		return NULL;
	}
	atomic_init(&tk->refs, 1);
	atomic_init(&tk->held, 0);
	c->tk = tk;
	memcpy(c->id, id, len);
	c->id_len = (uint8_t)len;
	c->next = s->clients[h];
	s->clients[h] = c;
	s->n_clients++;
	return c;
}

/* Forget clients with nothing outstanding that have been quiet too long
 * (or all idle ones when `all`). */
void clients_expire(server_t *s, double now, bool all)
{
	double limit = engine_config(s->eng)->server.idle_timeout_s;

	for (int h = 0; h < CLIENT_BUCKETS; h++) {
		struct client **pp = &s->clients[h];
		while (*pp) {
			struct client *c = *pp;
			if (c->outstanding == 0 && c->unsent == 0 && client_held(c) == 0 &&
			    (all || now - c->last_seen > limit)) {
				*pp = c->next;
				client_free(c);
				s->n_clients--;
			} else {
				pp = &c->next;
			}
		}
	}
}

/* ---- replies ---------------------------------------------------------- */

static void free_cb(void *data, void *hint)
{
	(void)hint;
	free(data);
}

void reply_free(struct reply *r)
{
	if (r->ce) { /* the frames are the cache entry's */
		cache_unref(&r->ce);
		free(r);
		return;
	}
	if (r->pooled0) {
		bufpool_put(r->body[0]);
		r->body[0] = NULL;
	}
	for (int i = 0; i < r->n_body; i++)
		free(r->body[i]);
	free(r);
}

/* The free callback of a counted reply's last frame: what the frame
 * would have done without a ticket, then the ticket's release. */
struct ticket_hint {
	void (*ffn)(void *data, void *hint);
	void *hint;
	struct ticket *tk;
};

static void ticket_free_cb(void *data, void *hint)
{
	struct ticket_hint *th = hint;

	th->ffn(data, th->hint);
	ticket_release(th->tk);
	free(th);
}

/* The message for body frame i: an owned buffer goes to ZeroMQ, a cached
 * one is lent with a reference that ZeroMQ's free callback drops. With
 * `tk`, the callback also releases that ticket (held here). */
static int frame_init(struct reply *r, int i, zmq_msg_t *m, struct ticket *tk)
{
	void (*ffn)(void *, void *) = i == 0 && r->pooled0 ? bufpool_free_cb : free_cb;
	void *hint = NULL;
	struct ticket_hint *th = NULL;
	int rc;

	if (r->ce) {
		ffn = cache_frame_free;
		hint = cache_ref(r->ce);
	}
	if (tk && (th = malloc(sizeof(*th)))) {
		*th = (struct ticket_hint){ ffn, hint, tk };
		ticket_hold(tk);
		rc = zmq_msg_init_data(m, r->body[i], r->body_len[i], ticket_free_cb, th);
	} else {
		rc = zmq_msg_init_data(m, r->body[i], r->body_len[i], ffn, hint);
	}
	if (rc) {
		if (th) {
			ticket_release(tk);
			free(th);
		}
		if (r->ce) {
			cache_entry_t *ref = hint;
			cache_unref(&ref);
		}
	}
	return rc;
}

/* 1 = sent (or dropped: peer gone), 0 = ZeroMQ queue full or the client's
 * window of replies already in ZeroMQ: try later. */
static int reply_try_send(server_t *s, struct reply *r)
{
	int more = ZMQ_SNDMORE | ZMQ_DONTWAIT;

	/* A counted reply stays counted until ZeroMQ has written it to the
	 * kernel: at most a window of them in ZeroMQ per client, whatever
	 * its per-peer high-water mark would let queue. */
	if (r->counts && client_held(r->cl) >= engine_config(s->eng)->server.max_client_window)
		return 0;
	if (zmq_send(s->router, r->cl->id, r->cl->id_len, more) < 0) {
		if (errno == EAGAIN)
			return 0;
		/* EHOSTUNREACH: the peer has gone; its reply goes nowhere. */
		log_debug("server: dropping reply to a departed client: %s", zmq_strerror(errno));
		goto out_done;
	}
	if (r->delim)
		zmq_send(s->router, "", 0, more);
	zmq_send(s->router, r->header, WIRE_REPLY_SIZE, r->n_body ? more : ZMQ_DONTWAIT);
	for (int i = 0; i < r->n_body; i++) {
		zmq_msg_t m;
		int flags = i + 1 < r->n_body ? more : ZMQ_DONTWAIT;
		if (r->body_len[i] == 0 || !r->body[i]) {
			zmq_send(s->router, "", 0, flags);
			continue;
		}
		/* The buffer now belongs to ZeroMQ, which frees it after the
		 * bytes have left (possibly on its I/O thread). The last frame
		 * of a counted reply releases its client's ticket. */
		bool ticket = r->counts && i + 1 == r->n_body;
		if (frame_init(r, i, &m, ticket ? r->cl->tk : NULL)) {
			zmq_send(s->router, "", 0, flags); /* keep the frame count */
			continue;
		}
		r->body[i] = NULL;
		if (zmq_msg_send(&m, s->router, flags) < 0)
			zmq_msg_close(&m);
	}
out_done:
	if (r->counts && r->cl->outstanding > 0)
		r->cl->outstanding--;
	reply_free(r);
	return 1;
}

void reply_queue(server_t *s, struct reply *r)
{
	/* Keep each client's replies in order; other clients never wait. */
	if (r->cl->unsent == 0 && reply_try_send(s, r))
		return;
	r->next = NULL;
	r->cl->unsent++;
	if (s->unsent_tail)
		s->unsent_tail->next = r;
	else
		s->unsent_head = r;
	s->unsent_tail = r;
	s->n_unsent++;
}

void unsent_flush(server_t *s)
{
	struct reply **pp = &s->unsent_head, *prev = NULL;

	s->flush_pass++;

	/* A peer whose queue is full (EAGAIN) keeps its replies, in order;
	 * the replies of every other peer still go out. */
	while (*pp) {
		struct reply *r = *pp, *next = r->next;
		struct client *cl = r->cl;
		bool was_tail = s->unsent_tail == r;
		/* Once one of a peer's replies is refused in this pass, its
		 * later ones wait too (order per peer); O(replies) per pass. */
		bool blocked = cl->blocked_pass == s->flush_pass;
		if (blocked || !reply_try_send(s, r)) {
			cl->blocked_pass = s->flush_pass;
			prev = r;
			pp = &r->next;
			continue;
		}
		/* sent: reply_try_send has freed r */
		cl->unsent--;
		*pp = next;
		s->n_unsent--;
		if (was_tail)
			s->unsent_tail = prev;
	}
}

void header_init(server_t *s, struct wire_reply *h, uint16_t type,
			const struct wire_request *rq)
{
	memset(h, 0, sizeof(*h));
	/* answer in the request's version when it is one spoken here */
	h->version = rq && wire_version_ok(rq->version) ? rq->version : WIRE_VERSION;
	h->type = type;
	if (rq) {
		h->request_id = rq->request_id;
		h->epoch = rq->epoch;
		h->rank = rq->rank;
		h->world = rq->world;
		h->batch = rq->batch;
	}
	memcpy(h->digest, engine_digest(s->eng), WIRE_DIGEST_SIZE);
}

/* The shape fields of a BATCH header, and of an INFO header for a
 * pipeline (batch_size: the configured one; a batch sets its own). */
void header_shape(struct wire_reply *h, const struct pipeline_rt *rt,
			 uint32_t batches_per_epoch)
{
	const struct pipeline_cfg *p = rt->cfg;

	h->batch_size = p->batch_size;
	h->height = h->width = p->size;
	h->channels = 3;
	h->layout = (uint8_t)p->layout;
	h->dtype = (uint8_t)p->dtype;
	h->meta_size = (uint16_t)wire_meta_size(h->version); /* set by header_init */
	h->num_classes = dataset_num_classes(rt->ds);
	h->batches_per_epoch = batches_per_epoch;
}

/* A reply with one text body (info/stats JSON or an error message).
 * `text` is taken over (malloc'd) or copied when `copy`. */
void reply_text(server_t *s, struct client *cl, bool delim, bool counts,
		       struct wire_reply *h, char *text)
{
	reply_bytes(s, cl, delim, counts, h, text, text ? strlen(text) : 0);
}

void reply_bytes(server_t *s, struct client *cl, bool delim, bool counts,
		 struct wire_reply *h, char *text, size_t len)
{
	struct reply *r = calloc(1, sizeof(*r));

	if (!r || !text) {
		log_err("server: out of memory for a reply");
		free(r);
		free(text);
		if (counts && cl->outstanding > 0)
			cl->outstanding--;
		return;
	}
	r->cl = cl;
	r->delim = delim;
	r->counts = counts;
	r->body[0] = text;
	r->body_len[0] = len;
	r->n_body = 1;
	h->body_bytes[0] = r->body_len[0];
	wire_encode_reply(h, r->header);
	reply_queue(s, r);
}

void reply_error(server_t *s, struct client *cl, bool delim, bool counts,
			const struct wire_request *rq, uint32_t status,
			const char *fmt, ...)
{
	struct wire_reply h;
	char *text = malloc(600);
	va_list ap;

	/* The text says what happened; the code (header.status) names the
	 * kind, so the text does not repeat it. */
	if (text) {
		va_start(ap, fmt);
		vsnprintf(text, 600, fmt, ap);
		va_end(ap);
	}
	header_init(s, &h, WIRE_ERROR, rq);
	h.status = status;
	stats_add(s->stats, bad_requests, 1);
	reply_text(s, cl, delim, counts, &h, text);
}

/* A pipeline name from the wire, printable: other bytes become \xNN. */
const char *printable(const char *in, char out[4 * WIRE_PIPELINE_MAX + 1])
{
	char *o = out;

	for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
		if (*p >= 0x20 && *p < 0x7f && *p != '\\')
			*o++ = (char)*p;
		else
			o += sprintf(o, "\\x%02x", *p);
	}
	*o = '\0';
	return out;
}

/* ---- batch replies and the batch cache ---------------------------------- */

/* A request with WIRE_FLAG_SHM: the three parts copied into a free slot
 * of its session and a reply whose one body is the slot's descriptor.
 * False (counted as a fallback): no such session for this peer, no free
 * slot, no memory; the caller then sends the normal reply. */
static bool reply_shm(server_t *s, struct pending *pq, struct wire_reply h,
		      void *const body[3], const size_t len[3])
{
	struct wire_shm_desc d = { .session = pq->rq.session };
	uint64_t total = 0;
	uint8_t *slot;

	if (!(pq->rq.flags & WIRE_FLAG_SHM))
		return false;
	for (int i = 0; i < 3; i++) {
		d.off[i] = total;
		d.len[i] = len[i];
		total += SHM_ALIGN(len[i]);
	}
	struct reply *r = s->shm ? calloc(1, sizeof(*r)) : NULL;
	slot = r ? shm_slot_take(s->shm, d.session, pq->cl->id, pq->cl->id_len, total,
				 &d.slot, &d.generation, stats_now()) : NULL;
	if (slot)
		r->body[0] = malloc(WIRE_SHM_DESC_SIZE);
	if (!slot || !r->body[0]) {
		if (slot)
			shm_slot_undo(s->shm, d.session, d.slot);
		free(r);
		stats_add(s->stats, shm_fallbacks, 1);
		return false;
	}
	for (int i = 0; i < 3; i++)
		if (len[i])
			memcpy(slot + d.off[i], body[i], len[i]);
	wire_encode_shm_desc(&d, r->body[0]);
	r->body_len[0] = WIRE_SHM_DESC_SIZE;
	r->n_body = 1;
	h.request_id = pq->rq.request_id;
	h.flags |= WIRE_RFLAG_SHM;
	wire_encode_reply(&h, r->header);
	r->cl = pq->cl;
	r->delim = pq->delim;
	r->counts = true;
	stats_add(s->stats, batches, 1);
	stats_add(s->stats, shm_batches, 1);
	stats_add(s->stats, images, h.batch_size);
	stats_add(s->stats, bytes_sent, len[0] + len[1] + len[2]);
	reply_queue(s, r);
	return true;
}

/* A batch reply for pq with the frames lent by cache entry ce. */
static void reply_cached(server_t *s, struct pending *pq, cache_entry_t *ce)
{
	const struct cache_frames *f = cache_frames(ce);
	struct wire_reply h = f->header;
	struct reply *r = calloc(1, sizeof(*r));

	if (!r) {
		reply_error(s, pq->cl, pq->delim, true, &pq->rq, WIRE_E_INTERNAL, "out of memory");
		return;
	}
	if (reply_shm(s, pq, h, f->body, f->len)) {
		free(r);
		return;
	}
	h.request_id = pq->rq.request_id;
	wire_encode_reply(&h, r->header);
	r->cl = pq->cl;
	r->delim = pq->delim;
	r->counts = true;
	r->n_body = 3;
	for (int i = 0; i < 3; i++) {
		r->body[i] = f->body[i];
		r->body_len[i] = f->len[i];
	}
	r->ce = cache_ref(ce);
	stats_add(s->stats, batches, 1);
	stats_add(s->stats, images, h.batch_size);
	stats_add(s->stats, bytes_sent, f->len[0] + f->len[1] + f->len[2]);
	reply_queue(s, r);
}

/* pq's batch b is built: into the cache, then to pq and every request
 * that waited on it. */
static void cache_answer(server_t *s, struct pending *pq, batch_t *b,
			 const struct wire_reply *h)
{
	struct pending *w;

	cache_fill(s->cache, pq->ce, b, h);
	reply_cached(s, pq, pq->ce);
	while ((w = cache_take_waiter(pq->ce))) {
		reply_cached(s, w, pq->ce);
		free(w);
	}
	cache_unref(&pq->ce);
}

/* pq's batch failed (pq itself was answered): the same error to every
 * request that waited on it; the entry leaves the cache. */
void cache_fail(server_t *s, struct pending *pq, uint32_t status, const char *msg)
{
	struct pending *w;

	if (!pq->ce)
		return;
	while ((w = cache_take_waiter(pq->ce))) {
		reply_error(s, w->cl, w->delim, true, &w->rq, status, "%s", msg);
		free(w);
	}
	cache_abort(s->cache, &pq->ce);
}

/* Before a batch is built: answer pq from the cache, or park it on the
 * build of the same batch (true: pq is taken). False: build it, with
 * pq->ce set when the cache is on. */
bool cache_serve(server_t *s, struct pending *pq)
{
	struct cache_key k;
	bool ready = false;
	cache_entry_t *ce;

	if (!s->cache)
		return false;
	cache_key_make(&k, engine_digest(s->eng), pq->rq.pipeline, pq->rq.epoch, pq->rq.rank,
		       pq->rq.world, pq->rq.batch);
	ce = cache_find(s->cache, &k, &ready);
	if (ce && ready) {
		reply_cached(s, pq, ce);
		free(pq);
		return true;
	}
	if (ce)
		return cache_wait(ce, pq) == 0; /* no memory to wait: build it */
	pq->ce = cache_begin(s->cache, &k);
	return false;
}

void batch_reply(server_t *s, batch_t *b)
{
	struct pending *rq = b->user;
	struct wire_reply h;
	struct reply *r;

	metrics_observe_build(s->metrics, rq->rq.pipeline, stats_now() - rq->t_start);
	if (atomic_load(&b->failed)) {
		reply_error(s, rq->cl, rq->delim, true, &rq->rq, b->status, "%s", b->error);
		cache_fail(s, rq, b->status, b->error);
		return;
	}
	header_init(s, &h, WIRE_BATCH, &rq->rq);
	memcpy(h.digest, engine_digest(b->eng), WIRE_DIGEST_SIZE);
	header_shape(&h, b->pl, b->batches_per_epoch);
	h.batch_size = b->n;
	h.flags = b->index + 1 == b->batches_per_epoch ? WIRE_RFLAG_LAST : 0;
	h.body_bytes[0] = b->images_bytes;
	h.body_bytes[1] = b->labels_bytes;
	h.body_bytes[2] = b->meta_bytes;
	if (rq->ce) {
		cache_answer(s, rq, b, &h);
		return;
	}
	void *body[3] = { b->images, b->labels, b->meta_wire };
	size_t len[3] = { b->images_bytes, b->labels_bytes, b->meta_bytes };
	if (reply_shm(s, rq, h, body, len))
		return; /* batch_destroy returns the buffers */
	r = calloc(1, sizeof(*r));
	if (!r) {
		reply_error(s, rq->cl, rq->delim, true, &rq->rq, WIRE_E_INTERNAL, "out of memory");
		return;
	}
	wire_encode_reply(&h, r->header);
	r->cl = rq->cl;
	r->delim = rq->delim;
	r->counts = true;
	r->n_body = 3;
	r->body_len[0] = b->images_bytes;
	r->body_len[1] = b->labels_bytes;
	r->body_len[2] = b->meta_bytes;
	r->body[0] = batch_take_images(b);
	r->pooled0 = true;
	r->body[1] = batch_take_labels(b);
	r->body[2] = batch_take_meta(b);
	stats_add(s->stats, batches, 1);
	stats_add(s->stats, images, b->n);
	stats_add(s->stats, bytes_sent, b->images_bytes + b->labels_bytes + b->meta_bytes);
	reply_queue(s, r);
}

/* BUSY to a peer the client table has no room for. */
void reply_untracked_busy(server_t *s, zmq_msg_t *id, zmq_msg_t *body, bool delim)
{
	struct wire_request rq;
	static const char text[] = "too many clients connected (max_clients); retry later";
	struct wire_reply h;
	uint8_t hdr[WIRE_REPLY_SIZE];
	int more = ZMQ_SNDMORE | ZMQ_DONTWAIT;

	memset(&rq, 0, sizeof(rq));
	if (body)
		wire_decode_request(zmq_msg_data(body), zmq_msg_size(body), &rq);
	header_init(s, &h, WIRE_ERROR, &rq); /* echoes request_id when readable */
	h.status = WIRE_E_BUSY;
	h.body_bytes[0] = sizeof(text) - 1;
	wire_encode_reply(&h, hdr);
	stats_add(s->stats, bad_requests, 1);
	if (zmq_send(s->router, zmq_msg_data(id), zmq_msg_size(id), more) < 0)
		return; /* gone or full: the reply is dropped, the peer retries */
	if (delim)
		zmq_send(s->router, "", 0, more);
	zmq_send(s->router, hdr, sizeof(hdr), more);
	zmq_send(s->router, text, sizeof(text) - 1, ZMQ_DONTWAIT);
}

/* ---- shared-memory sessions (shm.h) ------------------------------------ */

/* The bytes of one slot: the largest batch of the pipeline, each part
 * 64-byte aligned (reply_shm lays them out the same way). */
static uint64_t shm_slot_bytes(server_t *s, int pi, unsigned version)
{
	const struct pipeline_rt *rt = engine_pipeline(s->eng, pi);
	const struct pipeline_cfg *p = rt->cfg;
	uint64_t n = p->batch_size, px = (uint64_t)p->size * p->size * 3;
	uint64_t img = n * px * (p->dtype == DTYPE_FLOAT32 ? sizeof(float) : 1);
	uint64_t lab = n * dataset_num_classes(rt->ds) * sizeof(float);
	uint64_t meta = n * wire_meta_size(version);
	uint64_t page = 4096;

	return ((SHM_ALIGN(img) + SHM_ALIGN(lab) + SHM_ALIGN(meta)) + page - 1) / page * page;
}

/* SHM_OPEN: a session for this peer (slots asked for in `batch`, 0 =
 * the daemon's default), or an error: the client stays on copies. */
void reply_shm_open(server_t *s, struct client *cl, bool delim,
			   const struct wire_request *rq, int pi)
{
	struct wire_shm_open o;
	struct wire_reply h;
	int rc;

	if (!s->shm) {
		reply_error(s, cl, delim, false, rq, WIRE_E_BUSY,
			    "shared memory is off in this daemon ([server] shm)");
		return;
	}
	rc = shm_session_open(s->shm, cl->id, cl->id_len, rq->batch,
			      shm_slot_bytes(s, pi, rq->version), stats_now(), &o);
	if (rc) {
		reply_error(s, cl, delim, false, rq, WIRE_E_BUSY,
			    "no shared-memory session: %s",
			    rc == -ENOSPC ? "[server] shm_max_mb reached" : strerror(-rc));
		return;
	}
	char *body = malloc(WIRE_SHM_OPEN_SIZE + 1);
	if (body) {
		wire_encode_shm_open(&o, (uint8_t *)body);
		body[WIRE_SHM_OPEN_SIZE] = '\0';
	}
	header_init(s, &h, WIRE_SHM_OPEN, rq);
	cl->outstanding++;
	reply_bytes(s, cl, delim, true, &h, body, WIRE_SHM_OPEN_SIZE);
}

void shm_handle_release(server_t *s, struct client *cl, const struct wire_request *rq)
{
	if (!s->shm || shm_release(s->shm, rq->session, cl->id, cl->id_len, rq->batch,
				   rq->epoch, stats_now()))
		stats_add(s->stats, shm_bad_releases, 1);
}

/* The shared-memory gauges of STATS and /metrics. */
void shm_publish(server_t *s)
{
	struct shm_usage u = { 0, 0 };

	if (s->shm)
		u = shm_usage(s->shm);
	atomic_store_explicit(&s->stats->shm_sessions, u.sessions, memory_order_relaxed);
	atomic_store_explicit(&s->stats->shm_bytes, u.bytes, memory_order_relaxed);
}

/* Once a second: side connections past their deadline, idle sessions. */
void shm_tick(server_t *s, double now)
{
	if (!s->shm)
		return;
	shm_handle(s->shm, now);
	shm_expire(s->shm, now, engine_config(s->eng)->server.idle_timeout_s);
	shm_publish(s);
}

/* [server] shm: the side socket. A failure (no abstract sockets here)
 * only costs the shared-memory path: clients get copies. */
void shm_start(server_t *s)
{
	const struct server_cfg *sv = &engine_config(s->eng)->server;
	uint64_t cap = sv->shm_max_mb << 20;
	uint32_t slots = sv->shm_slots ? sv->shm_slots : sv->max_client_window + 2;
	char err[256];

	if (!sv->shm)
		return;
	if (sv->max_batch_bytes) { /* the budget covers batches and sessions */
		uint64_t inflight = s->max_inflight, most = 0;
		for (int i = 0; i < engine_config(s->eng)->n_pipelines; i++) {
			uint64_t b = budget_batch_bytes(s->eng, i);
			most = b > most ? b : most;
		}
		uint64_t left = sv->max_batch_bytes > inflight * most ?
				sv->max_batch_bytes - inflight * most : 0;
		cap = cap < left ? cap : left;
	}
	s->shm = shm_new(cap, slots, err, sizeof(err));
	if (!s->shm)
		log_warning("%s: clients get copies", err);
}
