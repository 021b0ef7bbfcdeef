/*
 * client.c — the cutmixd C client: one DEALER socket, synchronous requests
 * (INFO, STATS, one batch) and in-order epoch iteration over a window of
 * requests in flight.
 *
 * DESIGN
 * One thread uses a client at a time (cutmixd.h), so nothing here locks.
 * Everything that arrives on the socket goes through pump(), which reads
 * one reply and routes it by request_id:
 *   - to the synchronous call that is waiting (c->sync_id), which takes the
 *     whole reply (struct reply, heap) and checks it itself;
 *   - to a slot of the epoch iteration (c->ep.slots), which turns it into a
 *     batch or a failure at once; slot for batch k is slots[k % window];
 *   - or nowhere: a stale reply (abandoned iteration, request that timed
 *     out, request re-sent after BUSY), counted and dropped.
 * So a get_batch() during an iteration keeps the iteration's replies, and
 * replies may come in any order from any daemon.
 *
 * Ownership. The frames of a reply are zmq_msg_t's received into a
 * struct reply and moved (zmq_msg_move, no copy) into a cutmixd_batch,
 * which then owns them until cutmixd_batch_free(). A batch needs nothing
 * from the client, so it can outlive it and be freed on any thread.
 *
 * Flow control. The epoch window is lowered to the daemon's max_window.
 * A BUSY reply (daemon cap reached, e.g. by requests of an abandoned
 * iteration still being served) is retried with a new request_id after a
 * backoff of 10 ms doubling to 1 s, within the call's timeout.
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
#define BACKOFF_MIN_MS   10
#define BACKOFF_MAX_MS   1000

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
};

/* A failure to be reported later: message and codes. */
struct failure {
	int err;
	uint32_t status;
	char msg[ERR_MAX];
};

enum slot_state { SLOT_FREE, SLOT_SENT, SLOT_BUSY, SLOT_DONE, SLOT_FAILED };

struct slot {
	enum slot_state state;
	uint32_t batch;
	uint64_t id;       /* request_id of the latest send */
	int64_t retry_at;  /* SLOT_BUSY: when to send again */
	int backoff;
	cutmixd_batch_t *b;  /* SLOT_DONE */
	struct failure *fail; /* SLOT_FAILED */
};

struct epoch_iter {
	bool active;
	uint32_t epoch;
	uint32_t next;   /* next batch to deliver */
	uint32_t sent;   /* next batch to request */
	uint32_t end;    /* batches per epoch */
	uint32_t window;
	struct slot *slots;
	int failed;      /* sticky error, 0 if none */
	struct failure fail;
};

struct cutmixd_client {
	void *ctx;
	void *sock;
	char *endpoints;     /* the list as given */
	bool connected;
	struct failure *connect_fail; /* a failed connect is final */
	char pipeline[WIRE_PIPELINE_MAX];
	uint32_t rank, world, window, flags;
	int timeout_ms;
	uint64_t next_id;

	bool have_digest;
	uint8_t digest[WIRE_DIGEST_SIZE];
	int64_t bpe;         /* batches per epoch, -1 until INFO */
	int64_t max_window;  /* 0 if unknown */

	uint64_t sync_id;    /* request a synchronous call waits for, 0 none */
	struct reply *sync_reply;

	struct epoch_iter ep;
	uint64_t stale;

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
static int check_reply(cutmixd_client_t *c, struct reply *r, const struct wire_request *rq,
		       uint16_t want_type, int bodies, struct failure *f)
{
	const char *what = type_name(rq->type);

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
	if (c->have_digest && memcmp(c->digest, r->h.digest, WIRE_DIGEST_SIZE) != 0) {
		char got[2 * WIRE_DIGEST_SIZE + 1], want[2 * WIRE_DIGEST_SIZE + 1];

		hex(got, r->h.digest, WIRE_DIGEST_SIZE);
		hex(want, c->digest, WIRE_DIGEST_SIZE);
		fail_set(f, -ESTALE, 0,
			 "%s: config digest mismatch: daemon has %.16s..., first daemon had %.16s...; "
			 "refusing to mix daemons with different configs", what, got, want);
		return f->err;
	}
	if (!c->have_digest) {
		memcpy(c->digest, r->h.digest, WIRE_DIGEST_SIZE);
		c->have_digest = true;
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

/* Connect to every endpoint of the list, once. A failure (bad address,
 * unsupported transport) is permanent: retrying would connect the good
 * endpoints twice, so it is remembered and repeated. */
static int ensure_connected(cutmixd_client_t *c)
{
	char *list, *save = NULL;
	int rc = 0;

	if (c->connected)
		return 0;
	if (c->connect_fail)
		return set_failure(c, c->connect_fail);
	list = strdup(c->endpoints);
	if (!list)
		return set_error(c, -ENOMEM, 0, "connect: out of memory");
	for (char *ep = strtok_r(list, ",", &save); ep; ep = strtok_r(NULL, ",", &save)) {
		char *end = ep + strlen(ep);

		while (*ep == ' ' || *ep == '\t')
			ep++;
		while (end > ep && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = 0;
		if (zmq_connect(c->sock, ep) != 0) {
			int e = zmq_errno();

			rc = set_error(c, -e, 0, "connect '%s': %s", ep, zmq_strerror(e));
			c->connect_fail = malloc(sizeof(*c->connect_fail));
			if (c->connect_fail)
				fail_set(c->connect_fail, rc, 0, "%s", c->err);
			goto out;
		}
	}
	c->connected = true;
out:
	free(list);
	return rc;
}

static int remaining_ms(int64_t deadline)
{
	int64_t left = deadline - now_ms();

	return left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
}

/* Encode and send `rq` with a fresh request_id, waiting at most until
 * `deadline` for the socket to take it (no daemon connected yet). */
static int send_request(cutmixd_client_t *c, struct wire_request *rq, int64_t deadline)
{
	uint8_t buf[WIRE_REQUEST_SIZE];
	int rc = ensure_connected(c);

	if (rc < 0)
		return rc;
	rq->request_id = c->next_id++;
	if (wire_encode_request(rq, buf) < 0)
		return set_error(c, -EINVAL, 0, "request: pipeline name too long");
	for (;;) {
		zmq_pollitem_t it = { .socket = c->sock, .events = ZMQ_POLLOUT };
		int left;

		if (zmq_send(c->sock, buf, sizeof(buf), ZMQ_DONTWAIT) == (int)sizeof(buf))
			return 0;
		if (zmq_errno() != EAGAIN && zmq_errno() != EINTR)
			return zmq_fail(c, "send");
		left = remaining_ms(deadline);
		if (left == 0)
			return set_error(c, -ETIMEDOUT, 0,
					 "timeout: no daemon reachable at '%s' within %d ms",
					 c->endpoints, c->timeout_ms);
		if (zmq_poll(&it, 1, left) < 0 && zmq_errno() != EINTR)
			return zmq_fail(c, "poll");
	}
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
	return rq;
}

/* ---- epoch slots -------------------------------------------------------- */

static void slot_clear(struct slot *s)
{
	cutmixd_batch_free(&s->b);
	free(s->fail);
	memset(s, 0, sizeof(*s));
}

static void epoch_clear_slots(struct epoch_iter *ep)
{
	for (uint32_t i = 0; ep->slots && i < ep->window; i++)
		slot_clear(&ep->slots[i]);
}

static struct slot *slot_for_id(cutmixd_client_t *c, uint64_t id)
{
	struct epoch_iter *ep = &c->ep;

	if (!ep->active || ep->failed)
		return NULL;
	for (uint32_t i = 0; i < ep->window; i++)
		if (ep->slots[i].state == SLOT_SENT && ep->slots[i].id == id)
			return &ep->slots[i];
	return NULL;
}

static void slot_fail(struct slot *s, const struct failure *f)
{
	s->fail = malloc(sizeof(*s->fail));
	if (s->fail)
		*s->fail = *f;
	s->state = SLOT_FAILED;
}

static int slot_send(cutmixd_client_t *c, struct slot *s, int64_t deadline)
{
	struct wire_request rq = make_request(c, WIRE_BATCH, c->ep.epoch, s->batch);
	int rc = send_request(c, &rq, deadline);

	if (rc < 0)
		return rc;
	s->id = rq.request_id;
	s->state = SLOT_SENT;
	return 0;
}

/* A reply for an epoch slot: batch, BUSY (retry later) or failure. */
static void slot_take_reply(cutmixd_client_t *c, struct slot *s, struct reply *r)
{
	struct wire_request rq = make_request(c, WIRE_BATCH, c->ep.epoch, s->batch);
	struct failure f;

	if (r->hrc == 0 && r->h.type == WIRE_ERROR && r->h.status == WIRE_E_BUSY) {
		s->backoff = s->backoff ? s->backoff * 2 : BACKOFF_MIN_MS;
		if (s->backoff > BACKOFF_MAX_MS)
			s->backoff = BACKOFF_MAX_MS;
		s->retry_at = now_ms() + s->backoff;
		s->state = SLOT_BUSY;
		return;
	}
	rq.request_id = s->id;
	if (make_batch(c, r, &rq, &s->b, &f) < 0)
		slot_fail(s, &f);
	else
		s->state = SLOT_DONE;
}

/* Re-send BUSY slots whose backoff has passed; the earliest pending retry
 * time (INT64_MAX if none) in *next. */
static int resend_due(cutmixd_client_t *c, int64_t deadline, int64_t *next)
{
	struct epoch_iter *ep = &c->ep;
	int64_t now = now_ms();

	*next = INT64_MAX;
	if (!ep->active || ep->failed)
		return 0;
	for (uint32_t i = 0; i < ep->window; i++) {
		struct slot *s = &ep->slots[i];

		if (s->state != SLOT_BUSY)
			continue;
		if (s->retry_at <= now) {
			int rc = slot_send(c, s, deadline);

			if (rc < 0)
				return rc;
		} else if (s->retry_at < *next) {
			*next = s->retry_at;
		}
	}
	return 0;
}

/* ---- receiving ---------------------------------------------------------- */

/* Read one whole reply (all its frames; ZeroMQ delivers them together). */
static int recv_reply(cutmixd_client_t *c, struct reply **out)
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
		if (zmq_msg_recv(&m, c->sock, ZMQ_DONTWAIT) < 0) {
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

static void route(cutmixd_client_t *c, struct reply **rp)
{
	struct reply *r = *rp;
	struct slot *s;

	if (c->sync_id && r->h.request_id == c->sync_id && !c->sync_reply) {
		c->sync_reply = r;
		*rp = NULL;
		return;
	}
	s = r->h.request_id ? slot_for_id(c, r->h.request_id) : NULL;
	if (s)
		slot_take_reply(c, s, r);
	else
		c->stale++;
	reply_free(rp);
}

/* Wait until `until` at most for one reply, and route it. Re-sends BUSY
 * epoch slots that are due first. 0, or a negative errno. */
static int service(cutmixd_client_t *c, int64_t until)
{
	zmq_pollitem_t it = { .socket = c->sock, .events = ZMQ_POLLIN };
	struct reply *r = NULL;
	int64_t next;
	int rc = resend_due(c, until, &next);

	if (rc < 0)
		return rc;
	if (next < until)
		until = next;
	rc = zmq_poll(&it, 1, remaining_ms(until));
	if (rc < 0)
		return zmq_errno() == EINTR ? 0 : zmq_fail(c, "poll");
	if (rc == 0)
		return 0;
	rc = recv_reply(c, &r);
	if (rc < 0 || !r)
		return rc;
	route(c, &r);
	return 0;
}

/* Send `rq` and wait for its reply (re-sending after BUSY with backoff), all
 * within the timeout. 0 and *out, or a negative errno with the message set. */
static int transact(cutmixd_client_t *c, struct wire_request *rq, struct reply **out)
{
	int64_t deadline = now_ms() + c->timeout_ms;
	int backoff = BACKOFF_MIN_MS;
	bool busy = false;
	int rc;

	*out = NULL;
	for (;;) {
		rc = send_request(c, rq, deadline);
		if (rc < 0)
			return rc;
		c->sync_id = rq->request_id;
		while (!c->sync_reply) {
			if (now_ms() >= deadline) {
				c->sync_id = 0;
				if (busy)
					return set_error(c, -ETIMEDOUT, 0,
							 "timeout: daemon still busy after %d ms (%s request)",
							 c->timeout_ms, type_name(rq->type));
				return set_error(c, -ETIMEDOUT, 0,
						 "timeout: no reply to %s request from '%s' within %d ms",
						 type_name(rq->type), c->endpoints, c->timeout_ms);
			}
			rc = service(c, deadline);
			if (rc < 0) {
				c->sync_id = 0;
				return rc;
			}
		}
		c->sync_id = 0;
		if (c->sync_reply->hrc == 0 && c->sync_reply->h.type == WIRE_ERROR &&
		    c->sync_reply->h.status == WIRE_E_BUSY) {
			int64_t until = now_ms() + backoff;

			reply_free(&c->sync_reply);
			busy = true;
			if (until > deadline)
				until = deadline;
			while (now_ms() < until) {
				rc = service(c, until);
				if (rc < 0)
					return rc;
			}
			backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
			if (now_ms() >= deadline)
				return set_error(c, -ETIMEDOUT, 0,
						 "timeout: daemon still busy after %d ms (%s request)",
						 c->timeout_ms, type_name(rq->type));
			continue;
		}
		*out = c->sync_reply;
		c->sync_reply = NULL;
		return 0;
	}
}

/* INFO or STATS: the JSON body as a NUL-terminated string. */
static int json_request(cutmixd_client_t *c, uint16_t type, char **json)
{
	struct wire_request rq = make_request(c, type, 0, 0);
	struct reply *r = NULL;
	struct failure f;
	char *s;
	size_t n;
	int rc;

	if (type == WIRE_STATS)
		memset(rq.pipeline, 0, sizeof(rq.pipeline));
	rc = transact(c, &rq, &r);
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

cutmixd_client_t *cutmixd_client_new(const char *endpoint, const char *pipeline,
				     uint32_t rank, uint32_t world, uint32_t window)
{
	cutmixd_client_t *c;
	int linger = 0, immediate = 1, e;

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
	c->window = window ? window : CUTMIXD_DEFAULT_WINDOW;
	c->timeout_ms = CUTMIXD_DEFAULT_TIMEOUT_MS;
	c->next_id = 1;
	c->bpe = -1;
	c->endpoints = strdup(endpoint);
	if (!c->endpoints)
		goto out_errno;
	c->ctx = zmq_ctx_new();
	if (!c->ctx)
		goto out_zmq;
	c->sock = zmq_socket(c->ctx, ZMQ_DEALER);
	if (!c->sock)
		goto out_zmq;
	/* Closing never waits for unsent requests; with several daemons,
	 * requests go only to those with a live connection. */
	if (zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof(linger)) != 0 ||
	    zmq_setsockopt(c->sock, ZMQ_IMMEDIATE, &immediate, sizeof(immediate)) != 0)
		goto out_zmq;
	return c;

out_zmq:
	e = zmq_errno();
	cutmixd_client_destroy(&c);
	errno = e;
	return NULL;
out_errno:
	e = errno;
	cutmixd_client_destroy(&c);
	errno = e;
	return NULL;
}

void cutmixd_client_destroy(cutmixd_client_t **cp)
{
	cutmixd_client_t *c = cp ? *cp : NULL;

	if (!c)
		return;
	epoch_clear_slots(&c->ep);
	free(c->ep.slots);
	reply_free(&c->sync_reply);
	if (c->sock)
		zmq_close(c->sock);
	if (c->ctx)
		while (zmq_ctx_term(c->ctx) != 0 && zmq_errno() == EINTR)
			;
	free(c->connect_fail);
	free(c->endpoints);
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

int cutmixd_client_set_flags(cutmixd_client_t *c, uint32_t flags)
{
	if (!c)
		return -EINVAL;
	if (flags & ~CUTMIXD_EXPECT_EVAL)
		return set_error(c, -EINVAL, 0, "set_flags: unknown flags 0x%x", flags);
	c->flags = flags;
	return 0;
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

int cutmixd_client_get_batch(cutmixd_client_t *c, uint32_t epoch, uint32_t k,
			     cutmixd_batch_t **out)
{
	struct wire_request rq;
	struct reply *r = NULL;
	struct failure f;
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
	rc = transact(c, &rq, &r);
	if (rc < 0)
		return rc;
	if (make_batch(c, r, &rq, out, &f) < 0)
		rc = set_failure(c, &f);
	reply_free(&r);
	return rc;
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

/* Request batches up to the window's edge. */
static int fill_window(cutmixd_client_t *c, int64_t deadline)
{
	struct epoch_iter *ep = &c->ep;

	while (ep->sent < ep->end && ep->sent - ep->next < ep->window) {
		struct slot *s = &ep->slots[ep->sent % ep->window];
		int rc;

		slot_clear(s);
		s->batch = ep->sent;
		rc = slot_send(c, s, deadline);
		if (rc < 0)
			return rc;
		ep->sent++;
	}
	return 0;
}

int cutmixd_client_epoch_begin(cutmixd_client_t *c, uint32_t epoch, uint32_t start)
{
	struct epoch_iter *ep;
	uint32_t window;
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
	if (c->max_window > 0 && window > c->max_window)
		window = (uint32_t)c->max_window;
	if (window != ep->window || !ep->slots) {
		struct slot *s = calloc(window, sizeof(*s));

		if (!s)
			return set_error(c, -ENOMEM, 0, "epoch_begin: out of memory");
		free(ep->slots);
		ep->slots = s;
		ep->window = window;
	}
	ep->epoch = epoch;
	ep->next = ep->sent = start;
	ep->end = (uint32_t)bpe;
	ep->active = true;
	rc = fill_window(c, now_ms() + c->timeout_ms);
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
	rc = fill_window(c, deadline);
	if (rc < 0)
		return epoch_fail(c, rc);
	for (;;) {
		struct slot *s = &ep->slots[ep->next % ep->window];

		if (s->state == SLOT_DONE) {
			*out = s->b;
			s->b = NULL;
			slot_clear(s);
			ep->next++;
			/* Keep the window full; a failure to send shows at the
			 * next call, this batch is good. */
			rc = fill_window(c, deadline);
			if (rc < 0)
				epoch_fail(c, rc);
			return 1;
		}
		if (s->state == SLOT_FAILED) {
			if (s->fail)
				set_failure(c, s->fail);
			else
				set_error(c, -ENOMEM, 0, "epoch_next: out of memory");
			return epoch_fail(c, s->fail ? s->fail->err : -ENOMEM);
		}
		if (now_ms() >= deadline) {
			set_error(c, -ETIMEDOUT, 0,
				  "timeout: no reply for batch %u of epoch %u from '%s' within %d ms",
				  s->batch, ep->epoch, c->endpoints, c->timeout_ms);
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
