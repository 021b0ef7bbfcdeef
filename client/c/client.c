/*
 * client.c — the cutmixd C client: one DEALER socket per daemon,
 * synchronous requests (INFO, STATS, one batch) and in-order epoch
 * iteration over a window of requests spread over the daemons.
 *
 * DESIGN
 * One thread uses a client at a time (cutmixd.h), so nothing here locks.
 *
 * Peers. Every endpoint of the list has its own DEALER (struct peer), so
 * the client knows which daemon each request went to. Sockets use
 * ZMQ_IMMEDIATE: a DEALER without a live connection cannot send, which is
 * how "reachable" is known (ZMQ_EVENTS & ZMQ_POLLOUT), and a connection
 * that drops takes its unanswered requests with it.
 *
 * Jobs and requests. A job is one thing asked for: the synchronous call's
 * (c->sync) or one batch of the epoch iteration (c->ep.slots, batch k in
 * slots[k % window]). A job is sent as one request, and again if that
 * request goes unanswered; every request sent is a struct req in c->reqs
 * (request_id, peer, job and the job's generation, send time, live). A
 * reply is matched by request_id: the first reply for a job wins; a reply
 * for a job that is done, abandoned (generation changed) or unknown is
 * counted as stale and dropped.
 *
 * Dispatch. A job goes to the usable daemon (not down, not refused,
 * connected, fewer than its cap outstanding) with the fewest outstanding
 * requests, preferring one that has not had this job yet; ties rotate.
 * Epoch jobs count against the window (all live requests together < window,
 * per daemon <= max_window); a synchronous request only against max_window.
 *
 * Failures (maintain(), on every service() round):
 *   - a daemon that has live requests and no connection (killed, restarted,
 *     heartbeat timeout): its requests are expired at once;
 *   - a request older than the resend timeout R (default 3 s; 3 x the
 *     daemon's usual latency when that is longer, at most 4 x R): expired;
 *     if the daemon also sent nothing at all for R, it is marked down;
 *   - expired requests stop counting as outstanding; their jobs are sent
 *     again (elsewhere when possible); a late reply is still taken;
 *   - a daemon marked down gets no work; an INFO probe is sent to it after
 *     a back-off (100 ms doubling to 2 s); any reply makes it usable again.
 * BUSY is retried after 10 ms doubling to 1 s; SHUTTING_DOWN marks the
 * daemon down and sends the job elsewhere. Every call is bounded by the
 * timeout.
 *
 * Digest. Every reply's config digest is compared with the first reply's;
 * a daemon with another digest is refused from then on, and the call that
 * saw it fails with -ESTALE naming the endpoint.
 *
 * Ownership. The frames of a reply are zmq_msg_t's received into a
 * struct reply and moved (zmq_msg_move, no copy) into a cutmixd_batch,
 * which then owns them until cutmixd_batch_free(). A batch needs nothing
 * from the client, so it can outlive it and be freed on any thread.
 */
#include "cutmixd.h"
#include "wire.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

#define ERR_MAX          512
#define BODY_MAX         3   /* body frames after the header */
#define BACKOFF_MIN_MS   10  /* BUSY */
#define BACKOFF_MAX_MS   1000
#define PROBE_MIN_MS     100 /* a daemon marked down */
#define PROBE_MAX_MS     2000
#define CHECK_MS         100 /* look for dropped connections this often */
#define RECONNECT_IVL_MS 100
#define CONNECT_TIMEOUT_MS 2000
#define HEARTBEAT_IVL_MS 1000
#define LATENCY_FACTOR   3
#define RESEND_CAP_FACTOR 4
#define TRIED_BITS       64  /* peers remembered per job for "elsewhere" */

/* ---- types -------------------------------------------------------------- */

struct reply {
	zmq_msg_t f[1 + BODY_MAX]; /* header, bodies */
	int n;                     /* frames held in f[] */
	int extra;                 /* frames beyond f[] (dropped) */
	int hrc;                   /* wire_decode_reply() result */
	struct wire_reply h;
};

struct cutmixd_batch {
	struct wire_reply h;
	zmq_msg_t f[1 + BODY_MAX];
	const void *images;
	const float *labels;
	void *images_copy; /* only when a float frame had to be realigned */
	float *labels_copy;
	int peer;          /* index of the endpoint that served it */
};

/* A failure to be reported later: message and codes. */
struct failure {
	int err;
	uint32_t status;
	char msg[ERR_MAX];
};

struct peer {
	char *endpoint;
	void *sock;
	bool down;           /* silent: no work until a probe is answered */
	bool scratch;        /* dispatch(): already considered */
	bool refused;        /* another config digest: never used again */
	uint32_t live;       /* requests outstanding (counted) */
	int64_t last_rx;     /* ms of its last reply, -1 never */
	int64_t probe_at;
	uint64_t probe_id;   /* outstanding probe, 0 none */
	int64_t probe_sent;
	int backoff;         /* probe back-off, ms */
	double latency;      /* EWMA request -> reply, ms; < 0 unknown */
	uint64_t requests, replies, batches, resent, downs, disconnects;
};

enum job_state { JOB_FREE, JOB_WAIT, JOB_DONE, JOB_FAILED };

struct job {
	enum job_state state;
	uint16_t type;
	uint32_t epoch, batch;
	uint64_t gen;        /* bumped whenever the job is reused or abandoned */
	bool sync;           /* the synchronous call's job */
	int only;            /* the one peer to ask, -1 any */
	uint32_t nlive;      /* live requests for it */
	uint32_t sends;
	uint64_t tried;      /* bit i: peer i has had it */
	int64_t retry_at;    /* BUSY: not before */
	int backoff;
	cutmixd_batch_t *b;  /* DONE, epoch job */
	struct reply *r;     /* DONE, sync job: the whole reply */
	int from;            /* DONE: peer that answered */
	struct failure *fail; /* FAILED */
};

struct req {
	uint64_t id;
	int peer;
	struct job *job;     /* NULL: a probe, or the job was let go */
	uint64_t gen;
	int64_t sent;
	bool live;
};

struct epoch_iter {
	bool active;
	uint32_t epoch;
	uint32_t next;   /* next batch to deliver */
	uint32_t sent;   /* next batch to ask for */
	uint32_t end;    /* batches per epoch */
	uint32_t window;
	struct job *slots;
	int failed;      /* sticky error, 0 if none */
	struct failure fail;
};

struct cutmixd_client {
	void *ctx;
	struct peer *peers;
	int npeers;
	zmq_pollitem_t *items;
	char *endpoints;     /* the list as given */
	bool connected;
	struct failure *connect_fail; /* a failed connect is final */
	char pipeline[WIRE_PIPELINE_MAX];
	uint32_t rank, world, window, flags;
	int timeout_ms;
	int resend_ms;
	uint64_t next_id;
	int rr;              /* round-robin start among equal peers */

	bool curve;
	char curve_server[41], curve_public[41], curve_secret[41];

	bool have_digest;
	uint8_t digest[WIRE_DIGEST_SIZE];
	int digest_from;     /* peer that pinned it */
	int64_t bpe;         /* batches per epoch, -1 until INFO */
	int64_t max_window;  /* 0 if unknown */

	struct job sync;
	struct epoch_iter ep;
	struct req *reqs;
	size_t nreqs, capreqs;
	uint64_t stale;
	uint64_t replies;    /* replies routed, all peers */

	char err[ERR_MAX];
	uint32_t err_status;
};

/* ---- small helpers ------------------------------------------------------ */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool host_is_le(void)
{
	const uint16_t one = 1;

	return *(const uint8_t *)&one == 1;
}

static void fail_set(struct failure *f, int err, uint32_t status, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void fail_set(struct failure *f, int err, uint32_t status, const char *fmt, ...)
{
	va_list ap;

	f->err = err;
	f->status = status;
	va_start(ap, fmt);
	vsnprintf(f->msg, sizeof(f->msg), fmt, ap);
	va_end(ap);
}

static int set_error(cutmixd_client_t *c, int err, uint32_t status, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int set_error(cutmixd_client_t *c, int err, uint32_t status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
	c->err_status = status;
	return err;
}

static int set_failure(cutmixd_client_t *c, const struct failure *f)
{
	return set_error(c, f->err, f->status, "%s", f->msg);
}

static int status_errno(uint32_t status)
{
	switch (status) {
	case WIRE_E_MALFORMED:     return -EPROTO;
	case WIRE_E_VERSION:       return -EPROTONOSUPPORT;
	case WIRE_E_UNKNOWN_TYPE:  return -EOPNOTSUPP;
	case WIRE_E_NO_PIPELINE:   return -ENOENT;
	case WIRE_E_BAD_SHARD:     return -EINVAL;
	case WIRE_E_BATCH_RANGE:   return -ERANGE;
	case WIRE_E_BUSY:          return -EBUSY;
	case WIRE_E_NOT_EVAL:      return -EPERM;
	case WIRE_E_DECODE:        return -EIO;
	case WIRE_E_SHUTTING_DOWN: return -ESHUTDOWN;
	case WIRE_E_EPOCH_RANGE:   return -EDOM;
	default:                   return -EREMOTEIO;
	}
}

static void hex(char *out, const uint8_t *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = 0;
}

static const char *type_name(uint16_t type)
{
	switch (type) {
	case WIRE_INFO:  return "info";
	case WIRE_BATCH: return "batch";
	case WIRE_STATS: return "stats";
	case WIRE_ERROR: return "error";
	default:         return "unknown";
	}
}

/* ---- replies ------------------------------------------------------------ */

static void reply_free(struct reply **rp)
{
	struct reply *r = rp ? *rp : NULL;

	if (!r)
		return;
	for (int i = 0; i < r->n; i++)
		zmq_msg_close(&r->f[i]);
	free(r);
	*rp = NULL;
}

static size_t frame_size(struct reply *r, int i)
{
	return i < r->n ? zmq_msg_size(&r->f[i]) : 0;
}

/* The daemon's error reply as a failure: "daemon: <its message>". */
static void fail_from_error_reply(struct failure *f, struct reply *r)
{
	char text[ERR_MAX - 16];
	size_t n = 0;

	if (r->n >= 2) {
		const unsigned char *s = zmq_msg_data(&r->f[1]);
		size_t len = zmq_msg_size(&r->f[1]);

		/* Untrusted text on one line: control bytes become '?'. */
		for (size_t i = 0; i < len && n + 1 < sizeof(text); i++)
			text[n++] = (s[i] < 0x20 || s[i] == 0x7f) ? '?' : (char)s[i];
	}
	text[n] = 0;
	fail_set(f, status_errno(r->h.status), r->h.status, "daemon: %s",
		 n ? text : wire_status_name(r->h.status));
}

/*
 * Checks shared by every reply to request `rq`: header, error replies,
 * type, echoed fields, frame count and sizes against body_bytes, config
 * digest (pinned from the first good reply). 0 or a failure in *f.
 */

/*
 * Checks shared by every reply to request `rq`: header, error replies,
 * type, echoed fields, frame count and sizes against body_bytes. (The
 * config digest was checked when the reply arrived.) 0 or a failure in *f.
 */
static int check_reply(cutmixd_client_t *c, struct reply *r, const struct wire_request *rq,
		       uint16_t want_type, int bodies, struct failure *f)
{
	const char *what = type_name(rq->type);

	(void)c;
	if (r->hrc == -WIRE_E_VERSION) {
		fail_set(f, -EPROTONOSUPPORT, 0,
			 "%s: daemon replied with protocol version %u, this client speaks %u",
			 what, r->h.version, WIRE_VERSION);
		return f->err;
	}
	if (r->hrc < 0) {
		fail_set(f, -EPROTO, 0, "%s: bad reply header (%zu bytes)", what, frame_size(r, 0));
		return f->err;
	}
	if (r->h.type == WIRE_ERROR) {
		fail_from_error_reply(f, r);
		return f->err;
	}
	if (r->h.type != want_type) {
		fail_set(f, -EPROTO, 0, "%s: daemon replied with type %u ('%s')", what,
			 r->h.type, type_name(r->h.type));
		return f->err;
	}
	if (want_type == WIRE_BATCH &&
	    (r->h.epoch != rq->epoch || r->h.batch != rq->batch ||
	     r->h.rank != rq->rank || r->h.world != rq->world)) {
		fail_set(f, -EPROTO, 0,
			 "batch: asked for epoch %u batch %u rank %u/%u, got epoch %u batch %u rank %u/%u",
			 rq->epoch, rq->batch, rq->rank, rq->world,
			 r->h.epoch, r->h.batch, r->h.rank, r->h.world);
		return f->err;
	}
	if (r->extra || r->n != 1 + bodies) {
		fail_set(f, -EPROTO, 0, "%s: reply has %d frames, expected %d", what,
			 r->n + r->extra, 1 + bodies);
		return f->err;
	}
	for (int i = 0; i < BODY_MAX; i++) {
		uint64_t want = i < bodies ? frame_size(r, 1 + i) : 0;

		if (r->h.body_bytes[i] != want) {
			fail_set(f, -EPROTO, 0,
				 "%s: body frame %d has %" PRIu64 " bytes, header says %" PRIu64,
				 what, i, want, r->h.body_bytes[i]);
			return f->err;
		}
	}
	return 0;
}

static bool mul_ok(uint64_t *acc, uint64_t x)
{
	return !__builtin_mul_overflow(*acc, x, acc);
}

/* A float frame, little-endian on the wire, as an aligned host-order array:
 * the frame itself when possible, else a copy in *copy. */
static const float *float_view(const void *data, size_t bytes, float **copy)
{
	const uint8_t *p = data;
	float *out;

	*copy = NULL;
	if (host_is_le() && (uintptr_t)data % _Alignof(float) == 0)
		return data;
	out = malloc(bytes ? bytes : 1);
	if (!out)
		return NULL;
	if (host_is_le()) {
		memcpy(out, data, bytes);
	} else {
		for (size_t i = 0; i < bytes / 4; i++) {
			uint32_t v = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
				     (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;

			memcpy(&out[i], &v, 4);
		}
	}
	*copy = out;
	return out;
}

/* Turn a reply to batch request `rq` into a batch; the reply's frames move
 * into it. 0, or a failure in *f (the reply is left to the caller). */
static int make_batch(cutmixd_client_t *c, struct reply *r, const struct wire_request *rq,
		      cutmixd_batch_t **out, struct failure *f)
{
	const struct wire_reply *h = &r->h;
	uint64_t img = 1, lab = 1, meta = 1;
	cutmixd_batch_t *b;

	*out = NULL;
	if (check_reply(c, r, rq, WIRE_BATCH, BODY_MAX, f) < 0)
		return f->err;
	if (h->batch_size == 0 || h->height == 0 || h->width == 0 || h->channels == 0 ||
	    h->num_classes == 0 || h->layout > WIRE_NCHW || h->dtype > WIRE_FLOAT32 ||
	    h->meta_size < WIRE_META_SIZE) {
		fail_set(f, -EPROTO, 0,
			 "batch: bad shape in reply to batch %u: B=%u H=%u W=%u C=%u K=%u layout=%u dtype=%u meta_size=%u",
			 rq->batch, h->batch_size, h->height, h->width, h->channels,
			 h->num_classes, h->layout, h->dtype, h->meta_size);
		return f->err;
	}
	if (!mul_ok(&img, h->batch_size) || !mul_ok(&img, h->height) ||
	    !mul_ok(&img, h->width) || !mul_ok(&img, h->channels) ||
	    !mul_ok(&img, h->dtype == WIRE_FLOAT32 ? 4 : 1) ||
	    !mul_ok(&lab, h->batch_size) || !mul_ok(&lab, h->num_classes) || !mul_ok(&lab, 4) ||
	    !mul_ok(&meta, h->batch_size) || !mul_ok(&meta, h->meta_size) ||
	    h->body_bytes[0] != img || h->body_bytes[1] != lab || h->body_bytes[2] != meta) {
		fail_set(f, -EPROTO, 0,
			 "batch: frame sizes %" PRIu64 "/%" PRIu64 "/%" PRIu64
			 " do not match shape B=%u H=%u W=%u C=%u K=%u",
			 h->body_bytes[0], h->body_bytes[1], h->body_bytes[2],
			 h->batch_size, h->height, h->width, h->channels, h->num_classes);
		return f->err;
	}

	b = calloc(1, sizeof(*b));
	if (!b)
		goto out_nomem;
	b->h = *h;
	b->peer = -1;
	for (int i = 0; i < 1 + BODY_MAX; i++) {
		zmq_msg_init(&b->f[i]);
		zmq_msg_move(&b->f[i], &r->f[i]);
	}
	b->images = zmq_msg_data(&b->f[1]);
	if (h->dtype == WIRE_FLOAT32) {
		float *copy;

		b->images = float_view(zmq_msg_data(&b->f[1]), img, &copy);
		b->images_copy = copy;
		if (!b->images)
			goto out_free;
	}
	b->labels = float_view(zmq_msg_data(&b->f[2]), lab, &b->labels_copy);
	if (!b->labels)
		goto out_free;
	*out = b;
	return 0;

out_free:
	cutmixd_batch_free(&b);
out_nomem:
	fail_set(f, -ENOMEM, 0, "batch: out of memory");
	return f->err;
}

/* ---- JSON: top-level integer members of an object ----------------------- */

static const char *json_ws(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	return p;
}

/* p at '"': returns the byte after the closing quote, NULL if unterminated. */
static const char *json_skip_string(const char *p)
{
	for (p++; *p; p++) {
		if (*p == '\\') {
			if (!*++p)
				return NULL;
		} else if (*p == '"') {
			return p + 1;
		}
	}
	return NULL;
}

static const char *json_skip_value(const char *p)
{
	int depth = 0;

	p = json_ws(p);
	do {
		switch (*p) {
		case 0:
			return NULL;
		case '"':
			p = json_skip_string(p);
			if (!p)
				return NULL;
			continue;
		case '{': case '[':
			depth++;
			break;
		case '}': case ']':
			if (--depth < 0)
				return NULL;
			break;
		case ',':
			if (depth == 0)
				return NULL; /* empty value */
			break;
		default:
			if (depth == 0) { /* number or literal */
				while (*p && *p != ',' && *p != '}' && *p != ']' &&
				       *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
					p++;
				return p;
			}
		}
		p++;
	} while (depth > 0);
	return p;
}

/* 0 and *out, -ENOENT if the object has no such member, -EINVAL if the
 * text is not an object or the member is not an integer. */
static int json_top_int(const char *js, const char *key, int64_t *out)
{
	size_t klen = strlen(key);
	const char *p = json_ws(js);

	if (*p++ != '{')
		return -EINVAL;
	p = json_ws(p);
	if (*p == '}')
		return -ENOENT;
	for (;;) {
		const char *name, *end;
		bool match;

		if (*p != '"')
			return -EINVAL;
		name = p + 1;
		end = json_skip_string(p);
		if (!end)
			return -EINVAL;
		match = (size_t)(end - 1 - name) == klen && memcmp(name, key, klen) == 0;
		p = json_ws(end);
		if (*p++ != ':')
			return -EINVAL;
		p = json_ws(p);
		if (match) {
			char *e;
			long long v;

			errno = 0;
			v = strtoll(p, &e, 10);
			if (e == p || errno || *e == '.' || *e == 'e' || *e == 'E')
				return -EINVAL;
			*out = v;
			return 0;
		}
		p = json_skip_value(p);
		if (!p)
			return -EINVAL;
		p = json_ws(p);
		if (*p == '}')
			return -ENOENT;
		if (*p++ != ',')
			return -EINVAL;
		p = json_ws(p);
	}
}


/* ---- socket ------------------------------------------------------------- */

static int zmq_fail(cutmixd_client_t *c, const char *what)
{
	int e = zmq_errno();

	return set_error(c, -e, 0, "%s: %s", what, zmq_strerror(e));
}

static int remaining_ms(int64_t deadline)
{
	int64_t left = deadline - now_ms();

	return left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
}

/* A live connection: with ZMQ_IMMEDIATE a DEALER can send only then. */
static bool peer_writable(const struct peer *p)
{
	int ev = 0;
	size_t len = sizeof(ev);

	if (!p->sock || zmq_getsockopt(p->sock, ZMQ_EVENTS, &ev, &len) != 0)
		return false;
	return (ev & ZMQ_POLLOUT) != 0;
}

static int set_int(void *sock, int opt, int v)
{
	return zmq_setsockopt(sock, opt, &v, sizeof(v));
}

/* Set the options and connect every socket, once. A failure (bad address,
 * unsupported transport) is permanent: retrying would connect the good
 * endpoints twice, so it is remembered and repeated. */
static int ensure_connected(cutmixd_client_t *c)
{
	int hb_timeout = c->resend_ms > 3000 ? c->resend_ms : 3000;

	if (c->connected)
		return 0;
	if (c->connect_fail)
		return set_failure(c, c->connect_fail);
	for (int i = 0; i < c->npeers; i++) {
		struct peer *p = &c->peers[i];
		int rc;

		/* Closing never waits; requests go only to a live connection,
		 * and a dropped one takes its requests with it (they are
		 * re-sent) instead of delivering them late after a restart. */
		if (set_int(p->sock, ZMQ_LINGER, 0) != 0 ||
		    set_int(p->sock, ZMQ_IMMEDIATE, 1) != 0 ||
		    set_int(p->sock, ZMQ_RECONNECT_IVL, RECONNECT_IVL_MS) != 0)
			return zmq_fail(c, "socket options");
#ifdef ZMQ_CONNECT_TIMEOUT
		set_int(p->sock, ZMQ_CONNECT_TIMEOUT, CONNECT_TIMEOUT_MS);
#endif
#ifdef ZMQ_HEARTBEAT_IVL
		/* A connection that carries nothing for this long is dropped
		 * (dead link) and made again. */
		set_int(p->sock, ZMQ_HEARTBEAT_IVL, HEARTBEAT_IVL_MS);
		set_int(p->sock, ZMQ_HEARTBEAT_TIMEOUT, hb_timeout);
#endif
		if (c->curve &&
		    (zmq_setsockopt(p->sock, ZMQ_CURVE_SERVERKEY, c->curve_server, 40) != 0 ||
		     zmq_setsockopt(p->sock, ZMQ_CURVE_PUBLICKEY, c->curve_public, 40) != 0 ||
		     zmq_setsockopt(p->sock, ZMQ_CURVE_SECRETKEY, c->curve_secret, 40) != 0))
			return zmq_fail(c, "CURVE socket options");
		rc = zmq_connect(p->sock, p->endpoint);
		if (rc != 0) {
			int e = zmq_errno();

			rc = set_error(c, -e, 0, "connect '%s': %s", p->endpoint, zmq_strerror(e));
			c->connect_fail = malloc(sizeof(*c->connect_fail));
			if (c->connect_fail)
				fail_set(c->connect_fail, rc, 0, "%s", c->err);
			return rc;
		}
	}
	c->connected = true;
	return 0;
}

static struct wire_request make_request(const cutmixd_client_t *c, uint16_t type,
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
static void reqs_detach(cutmixd_client_t *c, const struct job *jobs, size_t n)
{
	for (size_t i = 0; i < c->nreqs; i++)
		if (c->reqs[i].job >= jobs && c->reqs[i].job < jobs + n)
			c->reqs[i].job = NULL;
}

/* Back to JOB_FREE; requests still out for it become stale. */
static void job_release(struct job *j)
{
	uint64_t gen = j->gen + 1;
	bool sync = j->sync;

	cutmixd_batch_free(&j->b);
	reply_free(&j->r);
	free(j->fail);
	memset(j, 0, sizeof(*j));
	j->gen = gen;
	j->sync = sync;
	j->only = -1;
}

static void job_start(struct job *j, uint16_t type, uint32_t epoch, uint32_t batch)
{
	job_release(j);
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

static void peer_expire_all(cutmixd_client_t *c, int i)
{
	for (size_t k = 0; k < c->nreqs; k++)
		if (c->reqs[k].peer == i)
			req_expire(c, &c->reqs[k]);
}

static void mark_down(cutmixd_client_t *c, int i, int64_t now)
{
	struct peer *p = &c->peers[i];

	peer_expire_all(c, i);
	if (!p->down) {
		p->down = true;
		p->downs++;
		p->probe_at = now + p->backoff;
		p->probe_id = 0;
		p->backoff = p->backoff * 2 > PROBE_MAX_MS ? PROBE_MAX_MS : p->backoff * 2;
	}
}

static enum cutmixd_peer_state peer_state(const struct peer *p)
{
	if (p->refused)
		return CUTMIXD_PEER_REFUSED;
	if (p->down)
		return CUTMIXD_PEER_DOWN;
	return peer_writable(p) ? CUTMIXD_PEER_UP : CUTMIXD_PEER_NOT_CONNECTED;
}

static const char *state_name(enum cutmixd_peer_state s)
{
	switch (s) {
	case CUTMIXD_PEER_UP:            return "up";
	case CUTMIXD_PEER_NOT_CONNECTED: return "not connected";
	case CUTMIXD_PEER_DOWN:          return "down";
	case CUTMIXD_PEER_REFUSED:       return "refused";
	}
	return "?";
}

/* "ep: state, ...; ep: state" for error messages. */
static void describe_peers(const cutmixd_client_t *c, char *out, size_t n)
{
	int64_t now = now_ms();
	size_t len = 0;

	out[0] = 0;
	for (int i = 0; i < c->npeers && len + 1 < n; i++) {
		const struct peer *p = &c->peers[i];
		int w;

		if (p->last_rx < 0)
			w = snprintf(out + len, n - len, "%s%s: %s, never answered", i ? "; " : "",
				     p->endpoint, state_name(peer_state(p)));
		else
			w = snprintf(out + len, n - len, "%s%s: %s, last reply %.1f s ago",
				     i ? "; " : "", p->endpoint, state_name(peer_state(p)),
				     (now - p->last_rx) / 1000.0);
		if (w < 0)
			break;
		len += (size_t)w;
	}
}

/* Send one request on peer i. 1 sent (*id set), 0 the socket cannot take
 * it now (no connection), or a negative errno. */
static int send_on(cutmixd_client_t *c, int i, struct job *j, uint16_t type, uint32_t epoch,
		   uint32_t batch, int64_t now, uint64_t *id)
{
	struct wire_request rq = make_request(c, type, epoch, batch);
	struct peer *p = &c->peers[i];
	uint8_t buf[WIRE_REQUEST_SIZE];
	struct req *q;

	rq.request_id = c->next_id;
	if (wire_encode_request(&rq, buf) < 0)
		return set_error(c, -EINVAL, 0, "request: pipeline name too long");
	if (c->nreqs == c->capreqs) {
		size_t cap = c->capreqs ? 2 * c->capreqs : 32;
		struct req *n = realloc(c->reqs, cap * sizeof(*n));

		if (!n)
			return set_error(c, -ENOMEM, 0, "request: out of memory");
		c->reqs = n;
		c->capreqs = cap;
	}
	if (zmq_send(p->sock, buf, sizeof(buf), ZMQ_DONTWAIT) != (int)sizeof(buf)) {
		int e = zmq_errno();

		if (e == EAGAIN || e == EINTR || e == EHOSTUNREACH)
			return 0;
		return zmq_fail(c, "send");
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
static int dispatch(cutmixd_client_t *c, struct job *j, int64_t now)
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

			if (p->scratch || p->down || p->refused || p->live >= cap ||
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
		if (!peer_writable(&c->peers[best]))
			continue;
		rc = send_on(c, best, j, j->type, j->epoch, j->batch, now, &id);
		if (rc != 0) {
			if (rc > 0)
				c->rr = (best + 1) % c->npeers;
			return rc;
		}
	}
}

static struct job *ep_slot(struct epoch_iter *ep, uint32_t k)
{
	return &ep->slots[k % ep->window];
}

static int dispatch_pending(cutmixd_client_t *c, int64_t now)
{
	struct epoch_iter *ep = &c->ep;
	int rc;

	if (c->sync.state == JOB_WAIT && c->sync.nlive == 0) {
		rc = dispatch(c, &c->sync, now);
		if (rc < 0)
			return rc;
	}
	if (!ep->active || ep->failed)
		return 0;
	for (uint32_t k = ep->next; k < ep->sent; k++) {
		struct job *s = ep_slot(ep, k);

		if (live_total(c) >= ep->window)
			break;
		if (s->state == JOB_WAIT && s->nlive == 0) {
			rc = dispatch(c, s, now);
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

		if (p->refused)
			continue;
		if (p->live) {
			if (!peer_writable(p)) {
				/* The connection dropped: what was sent on it is lost. */
				p->disconnects++;
				peer_expire_all(c, i);
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

			if (peer_writable(p))
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
	int64_t t = until;
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

		if (!p->down || p->refused)
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
			j = ep_slot(ep, (uint32_t)k);
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

/* ---- receiving ---------------------------------------------------------- */

/* Read one whole reply (all its frames; ZeroMQ delivers them together).
 * 0 with *out NULL when nothing is there. */
static int recv_reply(cutmixd_client_t *c, void *sock, struct reply **out)
{
	struct reply *r = calloc(1, sizeof(*r));
	bool first = true;
	int more;

	*out = NULL;
	if (!r)
		return set_error(c, -ENOMEM, 0, "receive: out of memory");
	do {
		zmq_msg_t m;

		zmq_msg_init(&m);
		if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
			int e = zmq_errno();

			zmq_msg_close(&m);
			if (first && (e == EAGAIN || e == EINTR)) {
				free(r);
				return 0;
			}
			reply_free(&r);
			return set_error(c, -e, 0, "receive: %s", zmq_strerror(e));
		}
		more = zmq_msg_more(&m);
		if (first && more && zmq_msg_size(&m) == 0) {
			/* An empty delimiter (REQ-style envelope): skip it. */
			zmq_msg_close(&m);
		} else if (r->n < 1 + BODY_MAX) {
			zmq_msg_init(&r->f[r->n]);
			zmq_msg_move(&r->f[r->n++], &m);
			zmq_msg_close(&m);
		} else {
			r->extra++;
			zmq_msg_close(&m);
		}
		first = false;
	} while (more);
	r->hrc = wire_decode_reply(zmq_msg_data(&r->f[0]), zmq_msg_size(&r->f[0]), &r->h);
	*out = r;
	return 0;
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
	peer_expire_all(c, i);
	hex(got, r->h.digest, WIRE_DIGEST_SIZE);
	hex(want, c->digest, WIRE_DIGEST_SIZE);
	return set_error(c, -ESTALE, 0,
			 "config digest mismatch: daemon '%s' has %.16s..., the first reply "
			 "(from '%s') had %.16s...; refusing that daemon: every daemon of a "
			 "client must run the same config and data",
			 p->endpoint, got, c->peers[c->digest_from].endpoint, want);
}

/* A reply from peer i: match it to its request, then to its job. 0, or a
 * negative errno (-ESTALE) for the call that is running. */
static int route(cutmixd_client_t *c, int i, struct reply **rp)
{
	struct reply *r = *rp;
	struct peer *p = &c->peers[i];
	int64_t now = now_ms();
	struct req q = { 0 };
	struct job *j;
	struct failure f;
	bool known = false, stopping;
	size_t at;
	int rc;

	p->last_rx = now;
	p->replies++;
	c->replies++;
	if (r->h.request_id) {
		struct req *found = req_find(c, r->h.request_id, &at);

		if (found && found->peer == i) {
			q = *found;
			known = true;
			req_remove(c, at);
		}
	}
	if (known && q.live) {
		double lat = (double)(now - q.sent);

		q.live = false;
		p->live--;
		p->latency = p->latency < 0 ? lat : 0.8 * p->latency + 0.2 * lat;
		if (q.job && q.job->gen == q.gen && q.job->state == JOB_WAIT)
			q.job->nlive--;
	}
	if (r->hrc == 0 && r->h.type != WIRE_ERROR && !p->refused) {
		rc = check_digest(c, i, r);
		if (rc < 0) {
			reply_free(rp);
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
		reply_free(rp);
		return 0;
	}
	j = q.job;
	if (r->hrc == 0 && r->h.type == WIRE_ERROR && r->h.status == WIRE_E_BUSY) {
		j->backoff = j->backoff ? j->backoff * 2 : BACKOFF_MIN_MS;
		if (j->backoff > BACKOFF_MAX_MS)
			j->backoff = BACKOFF_MAX_MS;
		j->retry_at = now + j->backoff;
		reply_free(rp);
		return 0;
	}
	if (stopping) {
		/* This daemon is stopping (a restart?): ask another one, and
		 * this one again once it answers a probe. */
		mark_down(c, i, now);
		reply_free(rp);
		return 0;
	}
	j->from = i;
	if (j->sync) {
		j->r = r;
		*rp = NULL;
		j->state = JOB_DONE;
		return 0;
	}
	{
		struct wire_request rq = make_request(c, WIRE_BATCH, j->epoch, j->batch);

		rq.request_id = q.id;
		if (make_batch(c, r, &rq, &j->b, &f) < 0) {
			job_fail(j, &f);
		} else {
			j->b->peer = i;
			p->batches++;
			j->state = JOB_DONE;
		}
	}
	reply_free(rp);
	return 0;
}

static int drain(cutmixd_client_t *c, int i)
{
	for (;;) {
		struct reply *r = NULL;
		int rc = recv_reply(c, c->peers[i].sock, &r);

		if (rc < 0 || !r)
			return rc;
		rc = route(c, i, &r);
		reply_free(&r);
		if (rc < 0)
			return rc;
	}
}

/* One round: take what arrived, look after failures, send what can be
 * sent, then wait for a reply until `until` at most. 0 or negative errno. */
static int service(cutmixd_client_t *c, int64_t until)
{
	uint64_t seen = c->replies;
	int64_t now = now_ms();
	int rc;

	for (int i = 0; i < c->npeers; i++) {
		rc = drain(c, i);
		if (rc < 0)
			return rc;
	}
	rc = maintain(c, now);
	if (rc == 0)
		rc = dispatch_pending(c, now);
	if (rc < 0 || c->replies != seen)
		return rc; /* let the caller look at what arrived first */
	rc = zmq_poll(c->items, c->npeers, remaining_ms(next_wake(c, now, until)));
	if (rc < 0)
		return zmq_errno() == EINTR ? 0 : zmq_fail(c, "poll");
	for (int i = 0; rc > 0 && i < c->npeers; i++) {
		if (c->items[i].revents & ZMQ_POLLIN) {
			int e = drain(c, i);

			if (e < 0)
				return e;
		}
	}
	return 0;
}

static bool all_refused(const cutmixd_client_t *c)
{
	for (int i = 0; i < c->npeers; i++)
		if (!c->peers[i].refused)
			return false;
	return true;
}

static int refused_error(cutmixd_client_t *c)
{
	char want[2 * WIRE_DIGEST_SIZE + 1];

	hex(want, c->digest, WIRE_DIGEST_SIZE);
	return set_error(c, -ESTALE, 0,
			 "config digest mismatch: every daemon of '%s' was refused (config digest "
			 "differs from %.16s..., pinned by the first reply)", c->endpoints, want);
}

/* Ask for one thing and wait for its reply (re-sent after BUSY, a silent
 * or lost daemon), all within the timeout. 0 and *out (and the peer that
 * answered in *from), or a negative errno with the message set. */
static int transact(cutmixd_client_t *c, uint16_t type, uint32_t epoch, uint32_t batch,
		    struct reply **out, int *from)
{
	struct job *j = &c->sync;
	int64_t deadline = now_ms() + c->timeout_ms;
	int rc;

	*out = NULL;
	rc = ensure_connected(c);
	if (rc < 0)
		return rc;
	job_start(j, type, epoch, batch);
	rc = dispatch(c, j, now_ms());
	while (rc >= 0 && j->state == JOB_WAIT) {
		if (all_refused(c)) {
			rc = refused_error(c);
			break;
		}
		if (now_ms() >= deadline) {
			char peers[ERR_MAX];

			describe_peers(c, peers, sizeof(peers));
			if (j->sends == 0)
				rc = set_error(c, -ETIMEDOUT, 0,
					       "timeout: no daemon reachable at '%s' within %d ms [%s]",
					       c->endpoints, c->timeout_ms, peers);
			else if (j->backoff && j->nlive == 0)
				rc = set_error(c, -ETIMEDOUT, 0,
					       "timeout: daemon still busy after %d ms (%s request)",
					       c->timeout_ms, type_name(type));
			else
				rc = set_error(c, -ETIMEDOUT, 0,
					       "timeout: no reply to %s request from '%s' within %d ms [%s]",
					       type_name(type), c->endpoints, c->timeout_ms, peers);
			break;
		}
		rc = service(c, deadline);
	}
	if (rc >= 0 && j->state == JOB_DONE) {
		*out = j->r;
		*from = j->from;
		j->r = NULL;
		rc = 0;
	}
	job_release(j);
	return rc < 0 ? rc : 0;
}

/* INFO or STATS: the JSON body as a NUL-terminated string. */
static int json_request(cutmixd_client_t *c, uint16_t type, char **json)
{
	struct wire_request rq = make_request(c, type, 0, 0);
	struct reply *r = NULL;
	struct failure f;
	int from = -1;
	char *s;
	size_t n;
	int rc;

	rc = transact(c, type, 0, 0, &r, &from);
	if (rc < 0)
		return rc;
	if (check_reply(c, r, &rq, type, 1, &f) < 0) {
		rc = set_failure(c, &f);
		goto out;
	}
	n = zmq_msg_size(&r->f[1]);
	s = malloc(n + 1);
	if (!s) {
		rc = set_error(c, -ENOMEM, 0, "%s: out of memory", type_name(type));
		goto out;
	}
	memcpy(s, zmq_msg_data(&r->f[1]), n);
	s[n] = 0;
	*json = s;
	if (type == WIRE_INFO && c->pipeline[0]) {
		int64_t v;

		if (json_top_int(s, "batches_per_epoch", &v) == 0 && v >= 0 && v <= UINT32_MAX)
			c->bpe = v;
		else if (r->h.batches_per_epoch)
			c->bpe = r->h.batches_per_epoch;
		if (json_top_int(s, "max_window", &v) == 0 && v > 0)
			c->max_window = v;
	}
out:
	reply_free(&r);
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

/* Split the list into peers, each with its own DEALER. 0 or -errno. */
static int make_peers(cutmixd_client_t *c)
{
	char *list = strdup(c->endpoints), *save = NULL;
	int n = 1;

	if (!list)
		return -ENOMEM;
	for (const char *s = c->endpoints; *s; s++)
		n += *s == ',';
	c->peers = calloc((size_t)n, sizeof(*c->peers));
	c->items = calloc((size_t)n, sizeof(*c->items));
	if (!c->peers || !c->items) {
		free(list);
		return -ENOMEM;
	}
	for (char *ep = strtok_r(list, ",", &save); ep; ep = strtok_r(NULL, ",", &save)) {
		char *end = ep + strlen(ep);
		struct peer *p = &c->peers[c->npeers];

		while (*ep == ' ' || *ep == '\t')
			ep++;
		while (end > ep && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = 0;
		for (int i = 0; i < c->npeers; i++)
			if (strcmp(c->peers[i].endpoint, ep) == 0) {
				free(list);
				return -EINVAL; /* listed twice */
			}
		p->endpoint = strdup(ep);
		if (!p->endpoint) {
			free(list);
			return -ENOMEM;
		}
		p->last_rx = -1;
		p->latency = -1;
		p->backoff = PROBE_MIN_MS;
		c->npeers++;
		p->sock = zmq_socket(c->ctx, ZMQ_DEALER);
		if (!p->sock) {
			free(list);
			return -zmq_errno();
		}
		c->items[c->npeers - 1].socket = p->sock;
		c->items[c->npeers - 1].events = ZMQ_POLLIN;
	}
	free(list);
	return 0;
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
	c->window = window ? window : CUTMIXD_DEFAULT_WINDOW * (uint32_t)c->npeers;
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
		job_release(&c->ep.slots[i]);
	free(c->ep.slots);
	job_release(&c->sync);
	for (int i = 0; c->peers && i < c->npeers; i++) {
		if (c->peers[i].sock)
			zmq_close(c->peers[i].sock);
		free(c->peers[i].endpoint);
	}
	if (c->ctx)
		while (zmq_ctx_term(c->ctx) != 0 && zmq_errno() == EINTR)
			;
	free(c->peers);
	free(c->items);
	free(c->reqs);
	free(c->connect_fail);
	free(c->endpoints);
	memset(c->curve_secret, 0, sizeof(c->curve_secret));
	free(c);
	*cp = NULL;
}

int cutmixd_client_set_timeout(cutmixd_client_t *c, int ms)
{
	if (!c)
		return -EINVAL;
	if (ms <= 0)
		return set_error(c, -EINVAL, 0, "set_timeout: must be > 0 ms, got %d", ms);
	c->timeout_ms = ms;
	return 0;
}

int cutmixd_client_set_resend_timeout(cutmixd_client_t *c, int ms)
{
	if (!c)
		return -EINVAL;
	if (ms <= 0)
		return set_error(c, -EINVAL, 0, "set_resend_timeout: must be > 0 ms, got %d", ms);
	c->resend_ms = ms;
	return 0;
}

int cutmixd_client_set_flags(cutmixd_client_t *c, uint32_t flags)
{
	if (!c)
		return -EINVAL;
	if (flags & ~CUTMIXD_EXPECT_EVAL)
		return set_error(c, -EINVAL, 0, "set_flags: unknown flags 0x%x", flags);
	c->flags = flags;
	return 0;
}

/* 40 Z85 characters that decode to 32 bytes and encode back (a group of
 * five characters can exceed 2^32). */
static bool z85_key_ok(const char *s)
{
	static const char alphabet[] =
		"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		".-:+=^!/*?&<>()[]{}@%$#";
	uint8_t bin[32];
	char back[41];

	if (!s || strlen(s) != 40 || strspn(s, alphabet) != 40)
		return false;
	return zmq_z85_decode(bin, s) && zmq_z85_encode(back, bin, sizeof(bin)) &&
	       memcmp(back, s, 40) == 0;
}

int cutmixd_client_set_curve(cutmixd_client_t *c, const char *server_public,
			     const char *client_public, const char *client_secret)
{
	char pub[41], sec[41], derived[41];

	if (!c)
		return -EINVAL;
	if (c->connected || c->connect_fail)
		return set_error(c, -EINVAL, 0, "set_curve: must come before the first request");
	if (!zmq_has("curve"))
		return set_error(c, -ENOTSUP, 0, "set_curve: this libzmq was built without CURVE");
	if (!z85_key_ok(server_public))
		return set_error(c, -EINVAL, 0,
				 "set_curve: server key is not a Z85 CURVE key (40 characters)");
	if (!client_public != !client_secret)
		return set_error(c, -EINVAL, 0,
				 "set_curve: give both the client public and secret key, or neither");
	if (client_public) {
		if (!z85_key_ok(client_public) || !z85_key_ok(client_secret))
			return set_error(c, -EINVAL, 0,
					 "set_curve: client key is not a Z85 CURVE key (40 characters)");
		if (zmq_curve_public(derived, client_secret) != 0 ||
		    strcmp(derived, client_public) != 0)
			return set_error(c, -EINVAL, 0,
					 "set_curve: the client secret key does not belong to its public key");
		strcpy(pub, client_public);
		strcpy(sec, client_secret);
	} else if (zmq_curve_keypair(pub, sec) != 0) {
		return zmq_fail(c, "set_curve: zmq_curve_keypair");
	}
	strcpy(c->curve_server, server_public);
	strcpy(c->curve_public, pub);
	strcpy(c->curve_secret, sec);
	memset(sec, 0, sizeof(sec));
	c->curve = true;
	return 0;
}

/* One line of a key file: 1 with *name and the trimmed value (quotes
 * removed) for "public-key = KEY" / "secret-key = KEY" or a bare KEY (a
 * public key), 0 for a line to skip (blank, '#' comment, another name, a
 * section word of a ZeroMQ zcert file), -1 for anything else. */
static int key_line(char *line, const char **name, char **value)
{
	char *key = line, *eq, *end, *v;

	while (*key == ' ' || *key == '\t')
		key++;
	end = key + strlen(key);
	while (end > key && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' ' ||
			     end[-1] == '\t'))
		*--end = 0;
	if (z85_key_ok(key)) { /* a bare key (may begin with '#': Z85 has it) */
		*name = "public-key";
		*value = key;
		return 1;
	}
	if (!*key || *key == '#')
		return 0;
	eq = strchr(key, '=');
	if (!eq) {
		for (char *q = key; *q; q++)
			if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') ||
			      (*q >= '0' && *q <= '9') || *q == '-' || *q == '_'))
				return -1;
		return 0;
	}
	v = eq + 1; /* the value may itself contain '=' (Z85 does) */
	end = eq;
	while (end > key && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	*end = 0;
	for (char *q = key; *q; q++)
		*q = *q == '_' ? '-' : (*q >= 'A' && *q <= 'Z') ? (char)(*q + 32) : *q;
	while (*v == ' ' || *v == '\t')
		v++;
	end = v + strlen(v);
	if (end - v >= 2 && *v == '"' && end[-1] == '"') {
		v++;
		*--end = 0;
	}
	if (strcmp(key, "public-key") == 0)
		*name = "public-key";
	else if (strcmp(key, "secret-key") == 0)
		*name = "secret-key";
	else
		return 0;
	*value = v;
	return 1;
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

int cutmixd_load_keypair(const char *path, char public_key[41], char secret_key[41],
			 char *err, size_t err_size)
{
	char line[1024], pub[41] = "", sec[41] = "", derived[41];
	int n = 0, rc = 0;
	FILE *f;

	if (err && err_size)
		err[0] = 0;
	if (!path || !public_key)
		return key_err(err, err_size, -EINVAL, "load_keypair: no path or output");
	f = fopen(path, "r");
	if (!f)
		return key_err(err, err_size, -errno, "%s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		const char *name = NULL;
		char *value = NULL;
		int k;

		n++;
		if (!strchr(line, '\n') && !feof(f)) {
			rc = key_err(err, err_size, -EINVAL, "%s:%d: line too long", path, n);
			goto out;
		}
		k = key_line(line, &name, &value);
		if (k < 0) {
			rc = key_err(err, err_size, -EINVAL,
				     "%s:%d: expected 'public-key = <Z85>' or 'secret-key = <Z85>'",
				     path, n);
			goto out;
		}
		if (k == 0)
			continue;
		if (!z85_key_ok(value)) {
			rc = key_err(err, err_size, -EINVAL,
				     "%s:%d: %s is not a Z85 CURVE key (40 characters)", path, n, name);
			goto out;
		}
		if (*(name[0] == 'p' ? pub : sec)) {
			rc = key_err(err, err_size, -EINVAL, "%s:%d: %s given twice", path, n, name);
			goto out;
		}
		strcpy(name[0] == 'p' ? pub : sec, value);
	}
	if (ferror(f)) {
		rc = key_err(err, err_size, -EIO, "%s: read error", path);
		goto out;
	}
	if (!pub[0]) {
		rc = key_err(err, err_size, -ENODATA, "%s: no 'public-key = ...' line", path);
		goto out;
	}
	if (secret_key) {
		if (!sec[0]) {
			rc = key_err(err, err_size, -ENODATA,
				     "%s: no 'secret-key = ...' line (a keypair file, NAME.key, has both)",
				     path);
			goto out;
		}
		if (zmq_curve_public(derived, sec) != 0 || strcmp(derived, pub) != 0) {
			rc = key_err(err, err_size, -EINVAL,
				     "%s: the secret key does not belong to the public key", path);
			goto out;
		}
		strcpy(secret_key, sec);
	}
	strcpy(public_key, pub);
out:
	memset(sec, 0, sizeof(sec));
	memset(line, 0, sizeof(line));
	fclose(f);
	return rc;
}

int cutmixd_client_info(cutmixd_client_t *c, char **json)
{
	char *s = NULL;
	int rc;

	if (json)
		*json = NULL;
	if (!c)
		return -EINVAL;
	rc = json_request(c, WIRE_INFO, &s);
	if (rc == 0 && json)
		*json = s;
	else
		free(s);
	return rc;
}

int cutmixd_client_stats(cutmixd_client_t *c, char **json)
{
	char *s = NULL;
	int rc;

	if (json)
		*json = NULL;
	if (!c)
		return -EINVAL;
	rc = json_request(c, WIRE_STATS, &s);
	if (rc == 0 && json)
		*json = s;
	else
		free(s);
	return rc;
}

int64_t cutmixd_client_batches_per_epoch(cutmixd_client_t *c)
{
	int rc;

	if (!c)
		return -EINVAL;
	if (c->bpe >= 0)
		return c->bpe;
	if (!c->pipeline[0])
		return set_error(c, -EINVAL, 0, "batches_per_epoch: client has no pipeline");
	rc = cutmixd_client_info(c, NULL);
	if (rc < 0)
		return rc;
	if (c->bpe < 0)
		return set_error(c, -EPROTO, 0,
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
	out->state = peer_state(p);
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

int cutmixd_client_get_batch(cutmixd_client_t *c, uint32_t epoch, uint32_t k,
			     cutmixd_batch_t **out)
{
	struct wire_request rq;
	struct reply *r = NULL;
	struct failure f;
	int from = -1;
	int rc;

	if (out)
		*out = NULL;
	if (!c)
		return -EINVAL;
	if (!out)
		return set_error(c, -EINVAL, 0, "get_batch: out is NULL");
	if (!c->pipeline[0])
		return set_error(c, -EINVAL, 0, "get_batch: client has no pipeline");
	rq = make_request(c, WIRE_BATCH, epoch, k);
	rc = transact(c, WIRE_BATCH, epoch, k, &r, &from);
	if (rc < 0)
		return rc;
	rq.request_id = r->h.request_id;
	if (make_batch(c, r, &rq, out, &f) < 0) {
		rc = set_failure(c, &f);
	} else {
		(*out)->peer = from;
		c->peers[from].batches++;
	}
	reply_free(&r);
	return rc;
}

static void epoch_clear_slots(struct epoch_iter *ep)
{
	for (uint32_t i = 0; ep->slots && i < ep->window; i++)
		job_release(&ep->slots[i]);
}

/* End the iteration with an error that later calls repeat. */
static int epoch_fail(cutmixd_client_t *c, int err)
{
	struct epoch_iter *ep = &c->ep;

	ep->failed = err;
	fail_set(&ep->fail, err, c->err_status, "%s", c->err);
	epoch_clear_slots(ep);
	return err;
}

/* Ask for batches up to the window's edge (sent when there is room). */
static int fill_window(cutmixd_client_t *c)
{
	struct epoch_iter *ep = &c->ep;

	while (ep->sent < ep->end && ep->sent - ep->next < ep->window) {
		struct job *s = ep_slot(ep, ep->sent);
		int rc;

		job_start(s, WIRE_BATCH, ep->epoch, ep->sent);
		ep->sent++;
		rc = dispatch(c, s, now_ms());
		if (rc < 0)
			return rc;
	}
	return 0;
}

int cutmixd_client_epoch_begin(cutmixd_client_t *c, uint32_t epoch, uint32_t start)
{
	struct epoch_iter *ep;
	uint64_t window;
	int64_t bpe;
	int rc;

	if (!c)
		return -EINVAL;
	ep = &c->ep;
	/* Abandon the previous iteration: its late replies become stale. */
	epoch_clear_slots(ep);
	ep->active = false;
	ep->failed = 0;
	bpe = cutmixd_client_batches_per_epoch(c);
	if (bpe < 0)
		return (int)bpe;
	if (start > bpe)
		return set_error(c, -ERANGE, 0,
				 "epoch_begin: start %u beyond the %" PRId64 " batches per epoch",
				 start, bpe);
	window = c->window;
	if (c->max_window > 0 && window > (uint64_t)c->max_window * (uint64_t)c->npeers)
		window = (uint64_t)c->max_window * (uint64_t)c->npeers;
	if (window != ep->window || !ep->slots) {
		struct job *s = calloc(window, sizeof(*s));

		if (!s)
			return set_error(c, -ENOMEM, 0, "epoch_begin: out of memory");
		for (uint64_t i = 0; i < window; i++)
			s[i].only = -1;
		if (ep->slots)
			reqs_detach(c, ep->slots, ep->window);
		free(ep->slots);
		ep->slots = s;
		ep->window = (uint32_t)window;
	}
	ep->epoch = epoch;
	ep->next = ep->sent = start;
	ep->end = (uint32_t)bpe;
	ep->active = true;
	rc = ensure_connected(c);
	if (rc == 0)
		rc = fill_window(c);
	if (rc < 0)
		return epoch_fail(c, rc);
	return 0;
}

int cutmixd_client_epoch_next(cutmixd_client_t *c, cutmixd_batch_t **out)
{
	struct epoch_iter *ep;
	int64_t deadline;
	int rc;

	if (out)
		*out = NULL;
	if (!c)
		return -EINVAL;
	ep = &c->ep;
	if (!out)
		return set_error(c, -EINVAL, 0, "epoch_next: out is NULL");
	if (!ep->active)
		return set_error(c, -EINVAL, 0, "epoch_next: no epoch begun");
	if (ep->failed)
		return set_failure(c, &ep->fail);
	if (ep->next >= ep->end)
		return 0;
	deadline = now_ms() + c->timeout_ms;
	rc = fill_window(c);
	if (rc < 0)
		return epoch_fail(c, rc);
	for (;;) {
		struct job *s = ep_slot(ep, ep->next);

		if (s->state == JOB_DONE) {
			*out = s->b;
			s->b = NULL;
			job_release(s);
			ep->next++;
			/* Keep the window full; a failure to send shows at the
			 * next call, this batch is good. */
			rc = fill_window(c);
			if (rc < 0)
				epoch_fail(c, rc);
			return 1;
		}
		if (s->state == JOB_FAILED) {
			if (s->fail)
				set_failure(c, s->fail);
			else
				set_error(c, -ENOMEM, 0, "epoch_next: out of memory");
			return epoch_fail(c, s->fail ? s->fail->err : -ENOMEM);
		}
		if (all_refused(c))
			return epoch_fail(c, refused_error(c));
		if (now_ms() >= deadline) {
			char peers[ERR_MAX];

			describe_peers(c, peers, sizeof(peers));
			set_error(c, -ETIMEDOUT, 0,
				  "timeout: no reply for batch %u of epoch %u from '%s' within %d ms [%s]",
				  s->batch, ep->epoch, c->endpoints, c->timeout_ms, peers);
			return epoch_fail(c, -ETIMEDOUT);
		}
		rc = service(c, deadline);
		if (rc < 0)
			return epoch_fail(c, rc);
	}
}

int64_t cutmixd_client_epoch_position(const cutmixd_client_t *c)
{
	if (!c || !c->ep.active)
		return -EINVAL;
	return c->ep.next;
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

/* ---- public: batch ------------------------------------------------------ */

uint32_t cutmixd_batch_epoch(const cutmixd_batch_t *b) { return b ? b->h.epoch : 0; }
uint32_t cutmixd_batch_index(const cutmixd_batch_t *b) { return b ? b->h.batch : 0; }
uint32_t cutmixd_batch_size(const cutmixd_batch_t *b) { return b ? b->h.batch_size : 0; }
uint32_t cutmixd_batch_height(const cutmixd_batch_t *b) { return b ? b->h.height : 0; }
uint32_t cutmixd_batch_width(const cutmixd_batch_t *b) { return b ? b->h.width : 0; }
uint32_t cutmixd_batch_channels(const cutmixd_batch_t *b) { return b ? b->h.channels : 0; }
uint32_t cutmixd_batch_num_classes(const cutmixd_batch_t *b) { return b ? b->h.num_classes : 0; }
uint32_t cutmixd_batch_meta_size(const cutmixd_batch_t *b) { return b ? b->h.meta_size : 0; }

uint32_t cutmixd_batch_batches_per_epoch(const cutmixd_batch_t *b)
{
	return b ? b->h.batches_per_epoch : 0;
}

enum cutmixd_layout cutmixd_batch_layout(const cutmixd_batch_t *b)
{
	return b && b->h.layout == WIRE_NCHW ? CUTMIXD_NCHW : CUTMIXD_NHWC;
}

enum cutmixd_dtype cutmixd_batch_dtype(const cutmixd_batch_t *b)
{
	return b && b->h.dtype == WIRE_FLOAT32 ? CUTMIXD_FLOAT32 : CUTMIXD_UINT8;
}

bool cutmixd_batch_is_last(const cutmixd_batch_t *b)
{
	return b && (b->h.flags & WIRE_RFLAG_LAST);
}

void cutmixd_batch_shape(const cutmixd_batch_t *b, uint32_t shape[4])
{
	if (!b) {
		memset(shape, 0, 4 * sizeof(*shape));
		return;
	}
	shape[0] = b->h.batch_size;
	if (b->h.layout == WIRE_NCHW) {
		shape[1] = b->h.channels;
		shape[2] = b->h.height;
		shape[3] = b->h.width;
	} else {
		shape[1] = b->h.height;
		shape[2] = b->h.width;
		shape[3] = b->h.channels;
	}
}

const void *cutmixd_batch_images(const cutmixd_batch_t *b, size_t *bytes)
{
	if (bytes)
		*bytes = b ? (size_t)b->h.body_bytes[0] : 0;
	return b ? b->images : NULL;
}

const float *cutmixd_batch_labels(const cutmixd_batch_t *b, size_t *bytes)
{
	if (bytes)
		*bytes = b ? (size_t)b->h.body_bytes[1] : 0;
	return b ? b->labels : NULL;
}

const uint8_t *cutmixd_batch_meta_raw(const cutmixd_batch_t *b, size_t *bytes)
{
	if (bytes)
		*bytes = b ? (size_t)b->h.body_bytes[2] : 0;
	return b ? zmq_msg_data((zmq_msg_t *)&b->f[3]) : NULL;
}

int cutmixd_batch_meta(const cutmixd_batch_t *b, uint32_t i, struct cutmixd_meta *out)
{
	const uint8_t *raw;
	struct wire_meta m;

	if (!b || !out)
		return -EINVAL;
	if (i >= b->h.batch_size)
		return -ERANGE;
	raw = zmq_msg_data((zmq_msg_t *)&b->f[3]);
	wire_decode_meta(raw + (size_t)i * b->h.meta_size, &m);
	memset(out, 0, sizeof(*out));
	out->index = m.index;
	out->source = m.source;
	out->partner = m.partner;
	out->lam = m.lam;
	out->label = m.label;
	out->partner_label = m.partner_label;
	out->partner_pos = m.partner_pos;
	memcpy(out->box, m.box, sizeof(out->box));
	memcpy(out->crop, m.crop, sizeof(out->crop));
	out->src_w = m.src_w;
	out->src_h = m.src_h;
	out->op = m.op;
	out->flip = m.flip;
	out->status = m.status;
	out->n_holes = m.n_holes > CUTMIXD_MAX_HOLES ? CUTMIXD_MAX_HOLES : m.n_holes;
	out->pad = m.pad;
	memcpy(out->holes, m.holes, sizeof(out->holes));
	return 0;
}

int cutmixd_batch_peer(const cutmixd_batch_t *b)
{
	return b ? b->peer : -1;
}

const uint8_t *cutmixd_batch_digest(const cutmixd_batch_t *b)
{
	return b ? b->h.digest : NULL;
}

const void *cutmixd_batch_frame(const cutmixd_batch_t *b, unsigned i, size_t *bytes)
{
	if (bytes)
		*bytes = 0;
	if (!b || i > BODY_MAX)
		return NULL;
	if (bytes)
		*bytes = zmq_msg_size((zmq_msg_t *)&b->f[i]);
	return zmq_msg_data((zmq_msg_t *)&b->f[i]);
}

void cutmixd_batch_free(cutmixd_batch_t **bp)
{
	cutmixd_batch_t *b = bp ? *bp : NULL;

	if (!b)
		return;
	for (int i = 0; i < 1 + BODY_MAX; i++)
		zmq_msg_close(&b->f[i]);
	free(b->images_copy);
	free(b->labels_copy);
	free(b);
	*bp = NULL;
}
