/*
 * dispatch.c — requests on the daemons' sockets: connecting, sending a
 * job to the least loaded daemon, failure handling (maintain), receiving
 * and routing replies, one service round, and the synchronous
 * transaction. See internal.h for the DESIGN.
 */
#include "internal.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

/* A live connection: with ZMQ_IMMEDIATE a DEALER can send only then. */
bool cmx_peer_writable(const struct peer *p)
{
	int ev = 0;
	size_t len = sizeof(ev);

	if (!p->sock || zmq_getsockopt(p->sock, ZMQ_EVENTS, &ev, &len) != 0)
		return false;
	return (ev & ZMQ_POLLOUT) != 0;
}

/* Set the options and connect every listed socket, once, then resolve
 * the dns+tcp:// groups. A failure (bad address, unsupported transport) is
 * permanent: retrying would connect the good endpoints twice, so it is
 * remembered and repeated. */
int cmx_ensure_connected(cutmixd_client_t *c)
{
	if (c->connected)
		return 0;
	if (c->connect_fail)
		return cmx_set_failure(c, c->connect_fail);
	for (int i = 0; i < c->npeers; i++) {
		int rc = cmx_peer_connect(c, i);

		if (rc != 0) {
			c->connect_fail = malloc(sizeof(*c->connect_fail));
			if (c->connect_fail)
				cmx_fail_set(c->connect_fail, rc, 0, "%s", c->err);
			return rc;
		}
	}
	c->connected = true;
	return cmx_discover(c, cmx_now_ms(), true);
}

struct wire_request cmx_make_request(const cutmixd_client_t *c, uint16_t type,
					uint32_t epoch, uint32_t batch)
{
	struct wire_request rq;

	memset(&rq, 0, sizeof(rq));
	rq.version = WIRE_VERSION;
	rq.type = type;
	rq.flags = c->flags;
	rq.epoch = epoch;
	rq.batch = batch;
	rq.rank = c->rank;
	rq.world = c->world;
	memcpy(rq.pipeline, c->pipeline, sizeof(rq.pipeline));
	if (type == WIRE_STATS)
		memset(rq.pipeline, 0, sizeof(rq.pipeline));
	return rq;
}

/* ---- requests and jobs -------------------------------------------------- */

static struct req *req_find(cutmixd_client_t *c, uint64_t id, size_t *at)
{
	for (size_t i = 0; i < c->nreqs; i++)
		if (c->reqs[i].id == id) {
			*at = i;
			return &c->reqs[i];
		}
	return NULL;
}

static void req_remove(cutmixd_client_t *c, size_t i)
{
	c->reqs[i] = c->reqs[--c->nreqs];
}

static bool req_current(const struct req *q)
{
	return q->job && q->job->gen == q->gen && q->job->state == JOB_WAIT;
}

/* Requests of jobs in [jobs, jobs + n) forget their job (it is freed). */
void cmx_reqs_detach(cutmixd_client_t *c, const struct job *jobs, size_t n)
{
	for (size_t i = 0; i < c->nreqs; i++)
		if (c->reqs[i].job >= jobs && c->reqs[i].job < jobs + n)
			c->reqs[i].job = NULL;
}

/* Back to JOB_FREE; requests still out for it become stale. */
void cmx_job_release(struct job *j)
{
	uint64_t gen = j->gen + 1;
	bool sync = j->sync;

	cutmixd_batch_free(&j->b);
	cmx_reply_free(&j->r);
	free(j->fail);
	memset(j, 0, sizeof(*j));
	j->gen = gen;
	j->sync = sync;
	j->only = -1;
}

void cmx_job_start(struct job *j, uint16_t type, uint32_t epoch, uint32_t batch)
{
	cmx_job_release(j);
	j->state = JOB_WAIT;
	j->type = type;
	j->epoch = epoch;
	j->batch = batch;
}

static void job_fail(struct job *j, const struct failure *f)
{
	j->fail = malloc(sizeof(*j->fail));
	if (j->fail)
		*j->fail = *f;
	j->state = JOB_FAILED;
}

static uint32_t live_total(const cutmixd_client_t *c)
{
	uint32_t n = 0;

	for (int i = 0; i < c->npeers; i++)
		n += c->peers[i].live;
	return n;
}

static int64_t resend_after(const cutmixd_client_t *c, const struct peer *p)
{
	int64_t r = c->resend_ms;

	if (p->latency >= 0) {
		int64_t l = (int64_t)(LATENCY_FACTOR * p->latency);

		if (l > r)
			r = l;
		if (r > (int64_t)RESEND_CAP_FACTOR * c->resend_ms)
			r = (int64_t)RESEND_CAP_FACTOR * c->resend_ms;
	}
	return r;
}

/* A request whose reply will probably never come stops counting as
 * outstanding; its job is sent again (a late reply is still taken). */
static void req_expire(cutmixd_client_t *c, struct req *q)
{
	if (!q->live)
		return;
	q->live = false;
	c->peers[q->peer].live--;
	if (req_current(q)) {
		q->job->nlive--;
		c->peers[q->peer].resent++;
	}
}

void cmx_peer_expire_all(cutmixd_client_t *c, int i)
{
	for (size_t k = 0; k < c->nreqs; k++)
		if (c->reqs[k].peer == i)
			req_expire(c, &c->reqs[k]);
}

static void mark_down(cutmixd_client_t *c, int i, int64_t now)
{
	struct peer *p = &c->peers[i];

	cmx_peer_expire_all(c, i);
	if (!p->down) {
		p->down = true;
		p->downs++;
		p->probe_at = now + p->backoff;
		p->probe_id = 0;
		p->backoff = p->backoff * 2 > PROBE_MAX_MS ? PROBE_MAX_MS : p->backoff * 2;
	}
}

enum cutmixd_peer_state cmx_peer_state(const struct peer *p)
{
	if (p->refused)
		return CUTMIXD_PEER_REFUSED;
	if (p->gone)
		return CUTMIXD_PEER_GONE;
	if (p->down)
		return CUTMIXD_PEER_DOWN;
	return cmx_peer_writable(p) ? CUTMIXD_PEER_UP : CUTMIXD_PEER_NOT_CONNECTED;
}

static const char *state_name(enum cutmixd_peer_state s)
{
	switch (s) {
	case CUTMIXD_PEER_UP:            return "up";
	case CUTMIXD_PEER_NOT_CONNECTED: return "not connected";
	case CUTMIXD_PEER_DOWN:          return "down";
	case CUTMIXD_PEER_REFUSED:       return "refused";
	case CUTMIXD_PEER_GONE:          return "gone from DNS";
	}
	return "?";
}

/* "ep: state, ...; ep: state" for error messages. */
void cmx_describe_peers(const cutmixd_client_t *c, char *out, size_t n)
{
	int64_t now = cmx_now_ms();
	size_t len = 0;

	out[0] = 0;
	for (int i = 0; i < c->npeers && len + 1 < n; i++) {
		const struct peer *p = &c->peers[i];
		int w;

		if (p->last_rx < 0)
			w = snprintf(out + len, n - len, "%s%s: %s, never answered", i ? "; " : "",
				     p->endpoint, state_name(cmx_peer_state(p)));
		else
			w = snprintf(out + len, n - len, "%s%s: %s, last reply %.1f s ago",
				     i ? "; " : "", p->endpoint, state_name(cmx_peer_state(p)),
				     (now - p->last_rx) / 1000.0);
		if (w < 0)
			break;
		len += (size_t)w;
	}
	if (len < n)
		cmx_describe_groups(c, out, n);
}

/* Send one request on peer i. 1 sent (*id set), 0 the socket cannot take
 * it now (no connection), or a negative errno. */
static int send_on(cutmixd_client_t *c, int i, struct job *j, uint16_t type, uint32_t epoch,
		   uint32_t batch, int64_t now, uint64_t *id)
{
	struct wire_request rq = cmx_make_request(c, type, epoch, batch);
	struct peer *p = &c->peers[i];
	uint8_t buf[WIRE_REQUEST_SIZE];
	struct req *q;

	rq.request_id = c->next_id;
	if (wire_encode_request(&rq, buf) < 0)
		return cmx_set_error(c, -EINVAL, 0, "request: pipeline name too long");
	if (c->nreqs == c->capreqs) {
		size_t cap = c->capreqs ? 2 * c->capreqs : 32;
		struct req *n = realloc(c->reqs, cap * sizeof(*n));

		if (!n)
			return cmx_set_error(c, -ENOMEM, 0, "request: out of memory");
		c->reqs = n;
		c->capreqs = cap;
	}
	if (zmq_send(p->sock, buf, sizeof(buf), ZMQ_DONTWAIT) != (int)sizeof(buf)) {
		int e = zmq_errno();

		if (e == EAGAIN || e == EINTR || e == EHOSTUNREACH)
			return 0;
		return cmx_zmq_fail(c, "send");
	}
	c->next_id++;
	q = &c->reqs[c->nreqs++];
	q->id = rq.request_id;
	q->peer = i;
	q->job = j;
	q->gen = j ? j->gen : 0;
	q->sent = now;
	q->live = j != NULL;
	p->requests++;
	if (j) {
		p->live++;
		j->nlive++;
		j->sends++;
		if (i < TRIED_BITS)
			j->tried |= 1ull << i;
	}
	*id = q->id;
	return 1;
}

static uint32_t peer_cap(const cutmixd_client_t *c, const struct job *j)
{
	uint32_t cap = UINT32_MAX;

	if (!j->sync)
		cap = c->ep.window ? c->ep.window : c->window;
	if (c->max_window > 0 && (uint64_t)c->max_window < cap)
		cap = (uint32_t)c->max_window;
	return cap;
}

static bool peer_tried(const struct job *j, int i)
{
	return i < TRIED_BITS && (j->tried >> i & 1);
}

/* Send a waiting job to the usable daemon with the fewest requests out,
 * preferring one that has not had it yet. 1 sent, 0 not now, or < 0. */
int cmx_dispatch(cutmixd_client_t *c, struct job *j, int64_t now)
{
	uint32_t cap;

	if (j->state != JOB_WAIT || j->retry_at > now)
		return 0;
	if (!j->sync && live_total(c) >= c->ep.window)
		return 0;
	cap = peer_cap(c, j);
	for (int i = 0; i < c->npeers; i++)
		c->peers[i].scratch = false;
	for (;;) {
		int best = -1;
		uint64_t id;
		int rc;

		for (int i = 0; i < c->npeers; i++) {
			const struct peer *p = &c->peers[i];
			int rot = (i - c->rr + c->npeers) % c->npeers;

			if (p->scratch || p->down || p->refused || p->gone || p->live >= cap ||
			    (j->only >= 0 && i != j->only))
				continue;
			if (best >= 0) {
				const struct peer *b = &c->peers[best];
				int brot = (best - c->rr + c->npeers) % c->npeers;

				if (peer_tried(j, i) != peer_tried(j, best)) {
					if (peer_tried(j, i))
						continue;
				} else if (p->live != b->live) {
					if (p->live > b->live)
						continue;
				} else if (rot > brot) {
					continue;
				}
			}
			best = i;
		}
		if (best < 0)
			return 0;
		c->peers[best].scratch = true;
		if (!cmx_peer_writable(&c->peers[best]))
			continue;
		rc = send_on(c, best, j, j->type, j->epoch, j->batch, now, &id);
		if (rc != 0) {
			if (rc > 0)
				c->rr = (best + 1) % c->npeers;
			return rc;
		}
	}
}

struct job *cmx_ep_slot(struct epoch_iter *ep, uint32_t k)
{
	return &ep->slots[k % ep->window];
}

static int dispatch_pending(cutmixd_client_t *c, int64_t now)
{
	struct epoch_iter *ep = &c->ep;
	int rc;

	if (c->sync.state == JOB_WAIT && c->sync.nlive == 0) {
		rc = cmx_dispatch(c, &c->sync, now);
		if (rc < 0)
			return rc;
	}
	if (!ep->active || ep->failed)
		return 0;
	for (uint32_t k = ep->next; k < ep->sent; k++) {
		struct job *s = cmx_ep_slot(ep, k);

		if (live_total(c) >= ep->window)
			break;
		if (s->state == JOB_WAIT && s->nlive == 0) {
			rc = cmx_dispatch(c, s, now);
			if (rc < 0)
				return rc;
		}
	}
	return 0;
}

/* Look after failures: dropped connections, requests without reply for
 * too long, silent daemons, probes of daemons that are down. */
static int maintain(cutmixd_client_t *c, int64_t now)
{
	for (int i = 0; i < c->npeers; i++) {
		struct peer *p = &c->peers[i];

		if (p->refused || p->gone)
			continue;
		if (p->live) {
			if (!cmx_peer_writable(p)) {
				/* The connection dropped: what was sent on it is lost. */
				p->disconnects++;
				cmx_peer_expire_all(c, i);
			} else {
				int64_t r = resend_after(c, p);
				bool old = false;

				for (size_t k = 0; k < c->nreqs && !old; k++)
					old = c->reqs[k].peer == i && c->reqs[k].live &&
					      now - c->reqs[k].sent > r;
				if (old && (p->last_rx < 0 || now - p->last_rx > r)) {
					mark_down(c, i, now);
				} else if (old) {
					for (size_t k = 0; k < c->nreqs; k++)
						if (c->reqs[k].peer == i && c->reqs[k].live &&
						    now - c->reqs[k].sent > r)
							req_expire(c, &c->reqs[k]);
				}
			}
		}
		if (!p->down)
			continue;
		if (p->probe_id) {
			size_t at;
			struct req *q = req_find(c, p->probe_id, &at);

			if (!q || now - q->sent > resend_after(c, p)) {
				if (q)
					req_remove(c, at);
				p->probe_id = 0;
				p->probe_at = now + p->backoff;
				p->backoff = p->backoff * 2 > PROBE_MAX_MS ? PROBE_MAX_MS : p->backoff * 2;
			}
		} else if (now >= p->probe_at) {
			uint64_t id = 0;
			int rc = 0;

			if (cmx_peer_writable(p))
				rc = send_on(c, i, NULL, WIRE_INFO, 0, 0, now, &id);
			if (rc < 0)
				return rc;
			if (rc > 0) {
				p->probe_id = id;
				p->probe_sent = now;
			} else {
				p->probe_at = now + p->backoff;
				p->backoff = p->backoff * 2 > PROBE_MAX_MS ? PROBE_MAX_MS : p->backoff * 2;
			}
		}
	}
	/* Forget requests so old that nobody takes their replies any more. */
	if (c->nreqs > 4 * (size_t)c->window + 64) {
		int64_t limit = 2 * (c->timeout_ms > RESEND_CAP_FACTOR * c->resend_ms ?
				     c->timeout_ms : RESEND_CAP_FACTOR * c->resend_ms);

		for (size_t k = c->nreqs; k-- > 0;)
			if (!c->reqs[k].live && now - c->reqs[k].sent > limit)
				req_remove(c, k);
	}
	return 0;
}

static int64_t next_wake(cutmixd_client_t *c, int64_t now, int64_t until)
{
	struct epoch_iter *ep = &c->ep;
	int64_t t = until < cmx_discovery_due(c) ? until : cmx_discovery_due(c);
	bool any_live = false, room;

	for (size_t k = 0; k < c->nreqs; k++) {
		const struct req *q = &c->reqs[k];

		if (q->live) {
			int64_t due = q->sent + resend_after(c, &c->peers[q->peer]) + 1;

			any_live = true;
			if (due < t)
				t = due;
		}
	}
	if (any_live && now + CHECK_MS < t)
		t = now + CHECK_MS;
	for (int i = 0; i < c->npeers; i++) {
		const struct peer *p = &c->peers[i];
		int64_t due;

		if (!p->down || p->refused || p->gone)
			continue;
		due = p->probe_id ? p->probe_sent + resend_after(c, p) + 1 : p->probe_at;
		if (due < t)
			t = due;
	}
	/* Jobs waiting: for a retry time, or for a connection. */
	room = live_total(c) < (ep->window ? ep->window : c->window);
	for (int64_t k = -1; k < (int64_t)(ep->active && !ep->failed ? ep->sent : 0); k++) {
		const struct job *j;

		if (k < 0)
			j = &c->sync;
		else if (k < (int64_t)ep->next)
			continue;
		else
			j = cmx_ep_slot(ep, (uint32_t)k);
		if (j->state != JOB_WAIT || j->nlive)
			continue;
		if (j->retry_at > now) {
			if (j->retry_at < t)
				t = j->retry_at;
		} else if ((room || j->sync) && now + 20 < t) {
			t = now + 20;
		}
	}
	return t < now ? now : t;
}

/* The first reply pins the config digest; a daemon with another one is
 * refused from then on. 0 or -ESTALE. */
static int check_digest(cutmixd_client_t *c, int i, const struct reply *r)
{
	char got[2 * WIRE_DIGEST_SIZE + 1], want[2 * WIRE_DIGEST_SIZE + 1];
	struct peer *p = &c->peers[i];

	if (!c->have_digest) {
		memcpy(c->digest, r->h.digest, WIRE_DIGEST_SIZE);
		c->have_digest = true;
		c->digest_from = i;
		return 0;
	}
	if (memcmp(c->digest, r->h.digest, WIRE_DIGEST_SIZE) == 0)
		return 0;
	p->refused = true;
	cmx_peer_expire_all(c, i);
	cmx_hex(got, r->h.digest, WIRE_DIGEST_SIZE);
	cmx_hex(want, c->digest, WIRE_DIGEST_SIZE);
	return cmx_set_error(c, -ESTALE, 0,
			 "config digest mismatch: daemon '%s' has %.16s..., the first reply "
			 "(from '%s') had %.16s...; refusing that daemon: every daemon of a "
			 "client must run the same config and data",
			 p->endpoint, got, c->peers[c->digest_from].endpoint, want);
}

/* The request a reply from peer i answers, taken out of c->reqs (and its
 * latency counted): true with *q, false for a reply nobody here asked for. */
static bool take_request(cutmixd_client_t *c, int i, const struct reply *r, int64_t now,
			 struct req *q)
{
	struct peer *p = &c->peers[i];
	struct req *found;
	size_t at;

	if (!r->h.request_id)
		return false;
	found = req_find(c, r->h.request_id, &at);
	if (!found || found->peer != i)
		return false;
	*q = *found;
	req_remove(c, at);
	if (q->live) {
		double lat = (double)(now - q->sent);

		q->live = false;
		p->live--;
		p->latency = p->latency < 0 ? lat : 0.8 * p->latency + 0.2 * lat;
		if (q->job && q->job->gen == q->gen && q->job->state == JOB_WAIT)
			q->job->nlive--;
	}
	return true;
}

/* A current reply for job j (request q) from peer i: BUSY sets the job's
 * retry time, a batch is decoded into the job, a sync job keeps the
 * whole reply (*rp is then cleared). */
static void deliver(cutmixd_client_t *c, int i, struct job *j, const struct req *q,
		    struct reply **rp, int64_t now)
{
	struct reply *r = *rp;
	struct failure f;

	if (r->hrc == 0 && r->h.type == WIRE_ERROR && r->h.status == WIRE_E_BUSY) {
		j->backoff = j->backoff ? j->backoff * 2 : BACKOFF_MIN_MS;
		if (j->backoff > BACKOFF_MAX_MS)
			j->backoff = BACKOFF_MAX_MS;
		j->retry_at = now + j->backoff;
		return;
	}
	j->from = i;
	if (j->sync) {
		j->r = r;
		*rp = NULL;
		j->state = JOB_DONE;
		return;
	}
	{
		struct wire_request rq = cmx_make_request(c, WIRE_BATCH, j->epoch, j->batch);

		rq.request_id = q->id;
		if (cmx_make_batch(c, r, &rq, &j->b, &f) < 0) {
			job_fail(j, &f);
		} else {
			j->b->peer = i;
			c->peers[i].batches++;
			j->state = JOB_DONE;
		}
	}
}

/* A reply from peer i: match it to its request, then to its job. 0, or a
 * negative errno (-ESTALE) for the call that is running. */
static int route(cutmixd_client_t *c, int i, struct reply **rp)
{
	struct reply *r = *rp;
	struct peer *p = &c->peers[i];
	int64_t now = cmx_now_ms();
	struct req q = { 0 };
	bool known, stopping;
	int rc;

	p->last_rx = now;
	p->replies++;
	c->replies++;
	known = take_request(c, i, r, now, &q);
	if (r->hrc == 0 && r->h.type != WIRE_ERROR && !p->refused) {
		rc = check_digest(c, i, r);
		if (rc < 0) {
			cmx_reply_free(rp);
			return rc;
		}
	}
	stopping = r->hrc == 0 && r->h.type == WIRE_ERROR && r->h.status == WIRE_E_SHUTTING_DOWN;
	if (p->down && !stopping) {
		/* Any other reply, a probe's or a late one: it is back. (The
		 * probe back-off only starts again from its minimum once it
		 * has served something: a daemon that answers probes but not
		 * batches is tried less and less often.) */
		p->down = false;
		p->probe_id = 0;
	}
	if (known && q.job && !stopping && r->hrc == 0 && r->h.type != WIRE_ERROR)
		p->backoff = PROBE_MIN_MS;
	if (!known || !req_current(&q)) {
		c->stale++;
	} else if (stopping) {
		/* This daemon is stopping (a restart?): ask another one, and
		 * this one again once it answers a probe. */
		mark_down(c, i, now);
	} else {
		deliver(c, i, q.job, &q, rp, now);
	}
	cmx_reply_free(rp);
	return 0;
}

static int drain(cutmixd_client_t *c, int i)
{
	for (;;) {
		struct reply *r = NULL;
		int rc = cmx_recv_reply(c, c->peers[i].sock, &r);

		if (rc < 0 || !r)
			return rc;
		rc = route(c, i, &r);
		cmx_reply_free(&r);
		if (rc < 0)
			return rc;
	}
}

/* One round: take what arrived, look after failures, send what can be
 * sent, then wait for a reply until `until` at most. 0 or negative errno. */
int cmx_service(cutmixd_client_t *c, int64_t until)
{
	uint64_t seen = c->replies;
	int64_t now = cmx_now_ms();
	int rc;

	for (int i = 0; i < c->npeers; i++) {
		rc = drain(c, i);
		if (rc < 0)
			return rc;
	}
	rc = cmx_discover(c, now, false);
	if (rc == 0)
		rc = maintain(c, now);
	if (rc == 0)
		rc = dispatch_pending(c, now);
	if (rc < 0 || c->replies != seen)
		return rc; /* let the caller look at what arrived first */
	rc = zmq_poll(c->items, c->npeers, cmx_remaining_ms(next_wake(c, now, until)));
	if (rc < 0)
		return zmq_errno() == EINTR ? 0 : cmx_zmq_fail(c, "poll");
	for (int i = 0; rc > 0 && i < c->npeers; i++) {
		if (c->items[i].revents & ZMQ_POLLIN) {
			int e = drain(c, i);

			if (e < 0)
				return e;
		}
	}
	return 0;
}

/* Every daemon known was refused (none known yet, as for a dns+tcp://
 * name that never resolved, is not that: it ends in a timeout). */
bool cmx_all_refused(const cutmixd_client_t *c)
{
	for (int i = 0; i < c->npeers; i++)
		if (!c->peers[i].refused)
			return false;
	return c->npeers > 0;
}

int cmx_refused_error(cutmixd_client_t *c)
{
	char want[2 * WIRE_DIGEST_SIZE + 1];

	cmx_hex(want, c->digest, WIRE_DIGEST_SIZE);
	return cmx_set_error(c, -ESTALE, 0,
			 "config digest mismatch: every daemon of '%s' was refused (config digest "
			 "differs from %.16s..., pinned by the first reply)", c->endpoints, want);
}

/* Ask for one thing and wait for its reply (re-sent after BUSY, a silent
 * or lost daemon), all within the timeout. 0 and *out (and the peer that
 * answered in *from), or a negative errno with the message set. */
int cmx_transact(cutmixd_client_t *c, uint16_t type, uint32_t epoch, uint32_t batch,
		    struct reply **out, int *from)
{
	struct job *j = &c->sync;
	int64_t deadline = cmx_now_ms() + c->timeout_ms;
	int rc;

	*out = NULL;
	rc = cmx_ensure_connected(c);
	if (rc < 0)
		return rc;
	cmx_job_start(j, type, epoch, batch);
	rc = cmx_dispatch(c, j, cmx_now_ms());
	while (rc >= 0 && j->state == JOB_WAIT) {
		if (cmx_all_refused(c)) {
			rc = cmx_refused_error(c);
			break;
		}
		if (cmx_now_ms() >= deadline) {
			char peers[ERR_MAX];

			cmx_describe_peers(c, peers, sizeof(peers));
			if (j->sends == 0)
				rc = cmx_set_error(c, -ETIMEDOUT, 0,
					       "timeout: no daemon reachable at '%s' within %d ms [%s]",
					       c->endpoints, c->timeout_ms, peers);
			else if (j->backoff && j->nlive == 0)
				rc = cmx_set_error(c, -ETIMEDOUT, 0,
					       "timeout: daemon still busy after %d ms (%s request)",
					       c->timeout_ms, cmx_type_name(type));
			else
				rc = cmx_set_error(c, -ETIMEDOUT, 0,
					       "timeout: no reply to %s request from '%s' within %d ms [%s]",
					       cmx_type_name(type), c->endpoints, c->timeout_ms, peers);
			break;
		}
		rc = cmx_service(c, deadline);
	}
	if (rc >= 0 && j->state == JOB_DONE) {
		*out = j->r;
		*from = j->from;
		j->r = NULL;
		rc = 0;
	}
	cmx_job_release(j);
	return rc < 0 ? rc : 0;
}
