/*
 * test_client.c — the C client against a fake daemon: a thread with a
 * ROUTER socket on ipc:// (in a temporary directory) or tcp://127.0.0.1,
 * speaking the wire format through proto/wire.c. The fake answers INFO,
 * STATS and BATCH, and can be told to reorder replies, stay silent, answer
 * BUSY or an error, corrupt a reply, change its config digest or send
 * stale replies. Batch contents are a function of (epoch, batch, position)
 * that the tests recompute.
 *
 * Only the main thread asserts; the server thread records what it saw in
 * struct fake, which the main thread reads after joining it.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <zmq.h>

#include "cutmixd.h"
#include "wire.h"
#include "test_util.h"

#define MAX_HELD   64
#define MAX_K      64

/* ---- the fake daemon ---------------------------------------------------- */

enum corrupt {
	CORRUPT_NONE,
	CORRUPT_SHAPE,      /* images one byte short, body_bytes agreeing */
	CORRUPT_BODY_BYTES, /* body_bytes disagree with the frame */
	CORRUPT_ECHO,       /* wrong batch index echoed */
	CORRUPT_VERSION,    /* reply header version 3 (not spoken) */
	CORRUPT_FRAMES,     /* metadata frame missing */
};

struct fake_cfg {
	uint32_t bpe, batch_size, last_size;
	uint32_t h, w, c, k;
	uint8_t layout, dtype;
	uint32_t max_window;
	int reorder;          /* hold this many batch requests, answer reversed */
	bool silent;          /* never answer */
	bool silent_batches;  /* never answer batch requests */
	int64_t busy_batch;   /* first request for it gets BUSY (-1 none) */
	int64_t error_batch;  /* DECODE error for it (-1 none) */
	bool error_once;      /* ... only the first time */
	int digest_change_after; /* digest seed + 1 after this many replies (0 never) */
	uint8_t digest_seed;
	bool stale_first;     /* an unknown-id reply and a garbage one before each reply */
	bool delimiter;       /* REQ-style empty frame before the header */
	enum corrupt corrupt;
	const char *info_json; /* overrides the generated INFO */
	const char *curve_secret; /* Z85: a CURVE server with this secret key */
};

struct fake {
	struct fake_cfg cfg;
	pthread_t thread;
	void *ctx, *router;
	char dir[64];
	char endpoint[256];
	atomic_bool stop;
	atomic_bool mute;     /* set by the main thread: drop every request */

	/* Written by the server thread, read after the join. */
	int requests, info_requests, stats_requests, batch_requests;
	int per_batch[MAX_K];
	int outstanding, max_outstanding;
	int replies, reversed;
	uint32_t last_flags;
	uint32_t last_world, last_rank;
	char last_pipeline[WIRE_PIPELINE_MAX];
	int bad_requests;
};

struct held {
	zmq_msg_t id;
	struct wire_request rq;
};

static struct fake_cfg default_cfg(void)
{
	struct fake_cfg cfg = {
		.bpe = 10, .batch_size = 4, .last_size = 2,
		.h = 2, .w = 3, .c = 3, .k = 5,
		.layout = WIRE_NHWC, .dtype = WIRE_UINT8,
		.max_window = 16, .busy_batch = -1, .error_batch = -1,
		.digest_seed = 0x40,
	};
	return cfg;
}

static uint32_t cfg_size(const struct fake_cfg *cfg, uint32_t k)
{
	return k + 1 == cfg->bpe && cfg->last_size ? cfg->last_size : cfg->batch_size;
}

/* The test pattern: pixel j of sample i of batch k. */
static uint8_t pixel(uint32_t epoch, uint32_t k, uint32_t i, size_t j)
{
	return (uint8_t)(epoch * 7 + k * 13 + i * 5 + j);
}

static int64_t sample_index(const struct fake_cfg *cfg, uint32_t k, uint32_t i)
{
	return (int64_t)k * cfg->batch_size + i;
}

static uint32_t sample_label(const struct fake_cfg *cfg, uint32_t k, uint32_t i)
{
	return (uint32_t)(sample_index(cfg, k, i) % cfg->k);
}

static void send_frames(void *sock, zmq_msg_t *id, bool delimiter, const void *const *parts,
			const size_t *sizes, int n)
{
	zmq_msg_t copy;

	zmq_msg_init(&copy);
	zmq_msg_copy(&copy, id);
	zmq_msg_send(&copy, sock, ZMQ_SNDMORE);
	if (delimiter)
		zmq_send(sock, "", 0, ZMQ_SNDMORE);
	for (int i = 0; i < n; i++)
		zmq_send(sock, parts[i], sizes[i], i + 1 < n ? ZMQ_SNDMORE : 0);
}

static void fill_header(struct fake *f, struct wire_reply *rp, const struct wire_request *rq,
			uint16_t type)
{
	uint8_t seed = f->cfg.digest_seed;

	if (f->cfg.digest_change_after && f->replies >= f->cfg.digest_change_after)
		seed++;
	memset(rp, 0, sizeof(*rp));
	rp->type = type;
	rp->request_id = rq->request_id;
	rp->epoch = rq->epoch;
	rp->rank = rq->rank;
	rp->world = rq->world;
	rp->batch = rq->batch;
	for (int i = 0; i < WIRE_DIGEST_SIZE; i++)
		rp->digest[i] = (uint8_t)(seed + i);
}

static void send_stale(struct fake *f, zmq_msg_t *id, const struct wire_request *rq)
{
	struct wire_request other = *rq;
	struct wire_reply rp;
	uint8_t hdr[WIRE_REPLY_SIZE];
	const void *parts[1] = { hdr };
	size_t sizes[1] = { sizeof(hdr) };

	/* A well-formed reply nobody asked for ... */
	other.request_id = rq->request_id + 1000000;
	fill_header(f, &rp, &other, WIRE_ERROR);
	rp.status = WIRE_E_INTERNAL;
	wire_encode_reply(&rp, hdr);
	send_frames(f->router, id, f->cfg.delimiter, parts, sizes, 1);
	/* ... and a garbage one. */
	memset(hdr, 0xab, sizeof(hdr));
	sizes[0] = 7;
	send_frames(f->router, id, false, parts, sizes, 1);
}

static void send_error(struct fake *f, zmq_msg_t *id, const struct wire_request *rq,
		       uint32_t status, const char *msg)
{
	struct wire_reply rp;
	uint8_t hdr[WIRE_REPLY_SIZE];
	const void *parts[2] = { hdr, msg };
	size_t sizes[2] = { sizeof(hdr), strlen(msg) };

	fill_header(f, &rp, rq, WIRE_ERROR);
	rp.status = status;
	rp.body_bytes[0] = sizes[1];
	wire_encode_reply(&rp, hdr);
	send_frames(f->router, id, f->cfg.delimiter, parts, sizes, 2);
	f->replies++;
}

static void send_json(struct fake *f, zmq_msg_t *id, const struct wire_request *rq,
		      uint16_t type, const char *json)
{
	struct wire_reply rp;
	uint8_t hdr[WIRE_REPLY_SIZE];
	const void *parts[2] = { hdr, json };
	size_t sizes[2] = { sizeof(hdr), strlen(json) };

	fill_header(f, &rp, rq, type);
	rp.body_bytes[0] = sizes[1];
	wire_encode_reply(&rp, hdr);
	send_frames(f->router, id, f->cfg.delimiter, parts, sizes, 2);
	f->replies++;
}

static void send_batch(struct fake *f, zmq_msg_t *id, const struct wire_request *rq)
{
	const struct fake_cfg *cfg = &f->cfg;
	uint32_t B = cfg_size(cfg, rq->batch);
	size_t per = (size_t)cfg->h * cfg->w * cfg->c;
	size_t elt = cfg->dtype == WIRE_FLOAT32 ? 4 : 1;
	size_t img_bytes = B * per * elt, lab_bytes = (size_t)B * cfg->k * 4;
	size_t meta_bytes = (size_t)B * WIRE_META_SIZE;
	uint8_t *img = calloc(1, img_bytes + 1), *meta = calloc(1, meta_bytes);
	float *lab = calloc(1, lab_bytes);
	struct wire_reply rp;
	uint8_t hdr[WIRE_REPLY_SIZE];
	const void *parts[4] = { hdr, img, lab, meta };
	size_t sizes[4] = { sizeof(hdr), img_bytes, lab_bytes, meta_bytes };

	for (uint32_t i = 0; i < B; i++) {
		struct wire_meta m;

		for (size_t j = 0; j < per; j++) {
			uint8_t v = pixel(rq->epoch, rq->batch, i, j);

			if (cfg->dtype == WIRE_FLOAT32) {
				float fv = v / 255.0f;

				memcpy(img + (i * per + j) * 4, &fv, 4);
			} else {
				img[i * per + j] = v;
			}
		}
		lab[i * cfg->k + sample_label(cfg, rq->batch, i)] = 1.0f;
		memset(&m, 0, sizeof(m));
		m.index = sample_index(cfg, rq->batch, i);
		m.source = i == 1 ? m.index + 1000 : m.index;
		m.status = i == 1 ? WIRE_SAMPLE_REPLACED : WIRE_SAMPLE_OK;
		m.label = (int32_t)sample_label(cfg, rq->batch, i);
		m.partner = -1;
		m.partner_label = -1;
		m.partner_pos = -1;
		m.op = (uint8_t)(i % 3);
		m.lam = 1.0 - 0.125 * i;
		m.box[2] = (int32_t)i;
		m.crop[2] = 0.5f * (float)i;
		m.src_w = 640;
		m.src_h = 480;
		m.n_holes = 1;
		m.holes[0][3] = (int32_t)rq->batch;
		m.pad = i == 3;
		/* protocol 2 fields */
		m.n_ops = (uint8_t)(1 + i % 2);
		m.ops[0].op = 5;
		m.ops[0].interp = 1;
		m.ops[0].fill[2] = 104;
		m.ops[0].magnitude = -12.5 - i;
		m.ops[1].op = 15;
		m.ops[1].magnitude = 0.25;
		m.n_erase = 1;
		m.erase_mode = WIRE_ERASE_PIXEL;
		m.erase[0][2] = (int32_t)i + 3;
		m.resize_interp = (uint8_t)(i % 2);
		wire_encode_meta(&m, meta + (size_t)i * WIRE_META_SIZE);
	}
	fill_header(f, &rp, rq, WIRE_BATCH);
	rp.batch_size = B;
	rp.height = cfg->h;
	rp.width = cfg->w;
	rp.channels = cfg->c;
	rp.layout = cfg->layout;
	rp.dtype = cfg->dtype;
	rp.meta_size = WIRE_META_SIZE;
	rp.num_classes = cfg->k;
	rp.batches_per_epoch = cfg->bpe;
	rp.flags = rq->batch + 1 == cfg->bpe ? WIRE_RFLAG_LAST : 0;
	switch (cfg->corrupt) {
	case CORRUPT_SHAPE: sizes[1]--; break;
	case CORRUPT_ECHO: rp.batch++; break;
	case CORRUPT_VERSION: rp.version = 3; break;
	default: break;
	}
	rp.body_bytes[0] = sizes[1];
	rp.body_bytes[1] = sizes[2];
	rp.body_bytes[2] = sizes[3];
	if (cfg->corrupt == CORRUPT_BODY_BYTES)
		rp.body_bytes[1]++;
	wire_encode_reply(&rp, hdr);
	send_frames(f->router, id, cfg->delimiter, parts, sizes,
		    cfg->corrupt == CORRUPT_FRAMES ? 3 : 4);
	f->replies++;
	free(img);
	free(lab);
	free(meta);
}

static void answer_batch(struct fake *f, zmq_msg_t *id, const struct wire_request *rq)
{
	char msg[128];

	if (f->cfg.stale_first)
		send_stale(f, id, rq);
	if (rq->batch >= f->cfg.bpe) {
		snprintf(msg, sizeof(msg), "batch %u out of range: epoch has %u batches",
			 rq->batch, f->cfg.bpe);
		send_error(f, id, rq, WIRE_E_BATCH_RANGE, msg);
	} else if (rq->batch == f->cfg.error_batch &&
		   !(f->cfg.error_once && f->per_batch[rq->batch] > 1)) {
		snprintf(msg, sizeof(msg), "decode failed: 'img%u.jpg'\n(corrupt)", rq->batch);
		send_error(f, id, rq, WIRE_E_DECODE, msg);
	} else {
		send_batch(f, id, rq);
	}
	f->outstanding--;
}

static void flush_held(struct fake *f, struct held *held, int *n)
{
	for (int i = *n - 1; i >= 0; i--) {
		answer_batch(f, &held[i].id, &held[i].rq);
		zmq_msg_close(&held[i].id);
		if (i > 0 && held[i].rq.batch > held[i - 1].rq.batch)
			f->reversed++;
	}
	*n = 0;
}

static void handle(struct fake *f, zmq_msg_t *id, const struct wire_request *rq,
		   struct held *held, int *nheld)
{
	char json[1024];

	f->requests++;
	if (atomic_load(&f->mute)) {
		if (rq->type == WIRE_BATCH)
			f->batch_requests++;
		return;
	}
	f->last_flags = rq->flags;
	f->last_rank = rq->rank;
	f->last_world = rq->world;
	memcpy(f->last_pipeline, rq->pipeline, sizeof(f->last_pipeline));
	if (f->cfg.silent || (f->cfg.silent_batches && rq->type == WIRE_BATCH)) {
		if (rq->type == WIRE_BATCH)
			f->batch_requests++;
		return;
	}
	if (strcmp(rq->pipeline, "nope") == 0 && rq->type != WIRE_STATS) {
		snprintf(json, sizeof(json), "unknown pipeline: '%s'", rq->pipeline);
		send_error(f, id, rq, WIRE_E_NO_PIPELINE, json);
		return;
	}
	if ((rq->flags & WIRE_FLAG_EXPECT_EVAL) && rq->type != WIRE_STATS) {
		snprintf(json, sizeof(json), "pipeline '%s' augments: not an eval pipeline",
			 rq->pipeline);
		send_error(f, id, rq, WIRE_E_NOT_EVAL, json);
		return;
	}
	switch (rq->type) {
	case WIRE_INFO:
		f->info_requests++;
		if (f->cfg.info_json) {
			send_json(f, id, rq, WIRE_INFO, f->cfg.info_json);
			break;
		}
		snprintf(json, sizeof(json),
			 "{\"protocol\": 1, \"version\": \"fake\", \"pipelines\": [\"train\"],"
			 " \"pipeline\": \"%s\", \"batch_size\": %u, \"batches_per_epoch\": %u,"
			 " \"num_classes\": %u, \"rank\": %u, \"world\": %u, \"max_window\": %u}",
			 rq->pipeline, f->cfg.batch_size, f->cfg.bpe, f->cfg.k, rq->rank,
			 rq->world, f->cfg.max_window);
		send_json(f, id, rq, WIRE_INFO, json);
		break;
	case WIRE_STATS:
		f->stats_requests++;
		snprintf(json, sizeof(json), "{\"requests\": %d, \"batches\": %d}",
			 f->requests, f->batch_requests);
		send_json(f, id, rq, WIRE_STATS, json);
		break;
	case WIRE_BATCH:
		f->batch_requests++;
		if (rq->batch < MAX_K)
			f->per_batch[rq->batch]++;
		f->outstanding++;
		if (f->outstanding > f->max_outstanding)
			f->max_outstanding = f->outstanding;
		if (rq->batch == f->cfg.busy_batch && f->per_batch[rq->batch] == 1) {
			send_error(f, id, rq, WIRE_E_BUSY, "too many outstanding requests");
			f->outstanding--;
		} else if (f->cfg.reorder > 0 && *nheld < MAX_HELD) {
			zmq_msg_init(&held[*nheld].id);
			zmq_msg_copy(&held[*nheld].id, id);
			held[*nheld].rq = *rq;
			if (++*nheld >= f->cfg.reorder)
				flush_held(f, held, nheld);
		} else {
			answer_batch(f, id, rq);
		}
		break;
	default:
		send_error(f, id, rq, WIRE_E_UNKNOWN_TYPE, "unknown request type");
	}
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	struct held held[MAX_HELD];
	int nheld = 0;

	while (!atomic_load(&f->stop)) {
		zmq_pollitem_t it = { .socket = f->router, .events = ZMQ_POLLIN };
		zmq_msg_t id, part;
		struct wire_request rq;
		int rc, more;

		rc = zmq_poll(&it, 1, 20);
		if (rc <= 0) {
			/* Idle: answer whatever is held, so a short tail also
			 * gets its replies. */
			if (rc == 0 && nheld)
				flush_held(f, held, &nheld);
			continue;
		}
		zmq_msg_init(&id);
		zmq_msg_init(&part);
		zmq_msg_recv(&id, f->router, 0);
		zmq_msg_recv(&part, f->router, 0);
		more = zmq_msg_more(&part);
		if (more) {
			f->bad_requests++; /* the client never sends more than one frame */
			while (zmq_msg_more(&part))
				zmq_msg_recv(&part, f->router, 0);
		} else if (wire_decode_request(zmq_msg_data(&part), zmq_msg_size(&part), &rq) != 0) {
			f->bad_requests++;
		} else {
			handle(f, &id, &rq, held, &nheld);
		}
		zmq_msg_close(&part);
		zmq_msg_close(&id);
	}
	for (int i = 0; i < nheld; i++)
		zmq_msg_close(&held[i].id);
	return NULL;
}

/* Start a fake on ipc:// (tcp == false) or tcp://127.0.0.1:<any>, or at
 * `at` (an ipc:// endpoint in the existing folder `dir`) when given. */
static void fake_start_at(struct fake *f, const struct fake_cfg *cfg, bool tcp,
			  const char *dir, const char *at)
{
	int linger = 0, one = 1;
	size_t len;

	memset(f, 0, sizeof(*f));
	f->cfg = *cfg;
	f->ctx = zmq_ctx_new();
	assert_non_null(f->ctx);
	f->router = zmq_socket(f->ctx, ZMQ_ROUTER);
	assert_non_null(f->router);
	zmq_setsockopt(f->router, ZMQ_LINGER, &linger, sizeof(linger));
	if (cfg->curve_secret) {
		assert_int_equal(zmq_setsockopt(f->router, ZMQ_CURVE_SERVER, &one, sizeof(one)), 0);
		assert_int_equal(zmq_setsockopt(f->router, ZMQ_CURVE_SECRETKEY, cfg->curve_secret,
						40), 0);
	}
	if (at) {
		snprintf(f->dir, sizeof(f->dir), "%s", dir);
		snprintf(f->endpoint, sizeof(f->endpoint), "%s", at);
		assert_int_equal(zmq_bind(f->router, f->endpoint), 0);
	} else if (tcp) {
		assert_int_equal(zmq_bind(f->router, "tcp://127.0.0.1:*"), 0);
		len = sizeof(f->endpoint);
		assert_int_equal(zmq_getsockopt(f->router, ZMQ_LAST_ENDPOINT, f->endpoint, &len), 0);
	} else {
		strcpy(f->dir, "/tmp/cutmixd-test-XXXXXX");
		assert_non_null(mkdtemp(f->dir));
		snprintf(f->endpoint, sizeof(f->endpoint), "ipc://%s/d.sock", f->dir);
		assert_int_equal(zmq_bind(f->router, f->endpoint), 0);
	}
	atomic_store(&f->stop, false);
	atomic_store(&f->mute, false);
	/* The socket moves to the server thread; pthread_create is the
	 * memory barrier zmq(7) asks for. */
	assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void fake_start(struct fake *f, const struct fake_cfg *cfg, bool tcp)
{
	fake_start_at(f, cfg, tcp, NULL, NULL);
}

static void fake_stop(struct fake *f)
{
	char path[128];

	atomic_store(&f->stop, true);
	assert_int_equal(pthread_join(f->thread, NULL), 0);
	zmq_close(f->router);
	zmq_ctx_term(f->ctx);
	if (f->dir[0]) {
		snprintf(path, sizeof(path), "%s/d.sock", f->dir);
		unlink(path);
		rmdir(f->dir);
	}
	assert_int_equal(f->bad_requests, 0);
}

/* Stop an ipc:// fake (its connections drop) and start a new one at the
 * same endpoint: a daemon restart. The counters start from zero. */
static void fake_restart(struct fake *f)
{
	char dir[64], ep[256];
	struct fake_cfg cfg = f->cfg;

	snprintf(dir, sizeof(dir), "%s", f->dir);
	snprintf(ep, sizeof(ep), "%s", f->endpoint);
	assert_true(dir[0] != 0);
	fake_stop(f);
	assert_int_equal(mkdir(dir, 0700), 0);
	fake_start_at(f, &cfg, false, dir, ep);
}

/* ---- helpers ------------------------------------------------------------ */

static int64_t ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static cutmixd_client_t *client_for(const struct fake *f, const char *pipeline, uint32_t window)
{
	cutmixd_client_t *c = cutmixd_client_new(f->endpoint, pipeline, 1, 2, window);

	assert_non_null(c);
	assert_int_equal(cutmixd_client_set_timeout(c, 5000), 0);
	return c;
}

/* Every byte of a batch as the fake made it. */
static void check_batch(const cutmixd_batch_t *b, const struct fake_cfg *cfg,
			uint32_t epoch, uint32_t k)
{
	uint32_t B = cfg_size(cfg, k), shape[4];
	size_t per = (size_t)cfg->h * cfg->w * cfg->c, bytes;
	const void *img;
	const float *lab;

	assert_non_null(b);
	assert_int_equal(cutmixd_batch_epoch(b), epoch);
	assert_int_equal(cutmixd_batch_index(b), k);
	assert_int_equal(cutmixd_batch_size(b), B);
	assert_int_equal(cutmixd_batch_height(b), cfg->h);
	assert_int_equal(cutmixd_batch_width(b), cfg->w);
	assert_int_equal(cutmixd_batch_channels(b), cfg->c);
	assert_int_equal(cutmixd_batch_num_classes(b), cfg->k);
	assert_int_equal(cutmixd_batch_layout(b), cfg->layout);
	assert_int_equal(cutmixd_batch_dtype(b), cfg->dtype);
	assert_int_equal(cutmixd_batch_batches_per_epoch(b), cfg->bpe);
	assert_int_equal(cutmixd_batch_meta_size(b), WIRE_META_SIZE);
	assert_int_equal(cutmixd_batch_is_last(b), k + 1 == cfg->bpe);
	cutmixd_batch_shape(b, shape);
	assert_int_equal(shape[0], B);
	if (cfg->layout == WIRE_NCHW) {
		assert_int_equal(shape[1], cfg->c);
		assert_int_equal(shape[2], cfg->h);
		assert_int_equal(shape[3], cfg->w);
	} else {
		assert_int_equal(shape[1], cfg->h);
		assert_int_equal(shape[2], cfg->w);
		assert_int_equal(shape[3], cfg->c);
	}
	for (int i = 0; i < WIRE_DIGEST_SIZE; i++)
		assert_int_equal(cutmixd_batch_digest(b)[i], (uint8_t)(cfg->digest_seed + i));

	img = cutmixd_batch_images(b, &bytes);
	assert_int_equal(bytes, B * per * (cfg->dtype == WIRE_FLOAT32 ? 4 : 1));
	for (uint32_t i = 0; i < B; i++)
		for (size_t j = 0; j < per; j++) {
			uint8_t want = pixel(epoch, k, i, j);

			if (cfg->dtype == WIRE_FLOAT32) {
				const float *fp = img;

				assert_true((uintptr_t)fp % _Alignof(float) == 0);
				assert_true(fp[i * per + j] == want / 255.0f);
			} else {
				assert_int_equal(((const uint8_t *)img)[i * per + j], want);
			}
		}

	lab = cutmixd_batch_labels(b, &bytes);
	assert_int_equal(bytes, (size_t)B * cfg->k * 4);
	assert_true((uintptr_t)lab % _Alignof(float) == 0);
	for (uint32_t i = 0; i < B; i++)
		for (uint32_t j = 0; j < cfg->k; j++)
			assert_true(lab[i * cfg->k + j] == (j == sample_label(cfg, k, i) ? 1.0f : 0.0f));

	assert_non_null(cutmixd_batch_meta_raw(b, &bytes));
	assert_int_equal(bytes, (size_t)B * WIRE_META_SIZE);
	for (uint32_t i = 0; i < B; i++) {
		struct cutmixd_meta m;

		assert_int_equal(cutmixd_batch_meta(b, i, &m), 0);
		assert_true(m.index == sample_index(cfg, k, i));
		assert_true(m.source == (i == 1 ? m.index + 1000 : m.index));
		assert_int_equal(m.status, i == 1);
		assert_int_equal(m.label, sample_label(cfg, k, i));
		assert_true(m.partner == -1);
		assert_int_equal(m.partner_pos, -1);
		assert_int_equal(m.op, i % 3);
		assert_true(m.lam == 1.0 - 0.125 * i);
		assert_int_equal(m.box[2], i);
		assert_true(m.crop[2] == 0.5f * (float)i);
		assert_int_equal(m.src_w, 640);
		assert_int_equal(m.n_holes, 1);
		assert_int_equal(m.holes[0][3], k);
		assert_int_equal(m.pad, i == 3);
		assert_int_equal(m.n_ops, 1 + i % 2);
		assert_int_equal(m.ops[0].op, CUTMIXD_IMGOP_ROTATE);
		assert_string_equal(cutmixd_op_name(m.ops[0].op), "Rotate");
		assert_int_equal(m.ops[0].interp, 1);
		assert_int_equal(m.ops[0].fill[2], 104);
		assert_true(m.ops[0].magnitude == -12.5 - i);
		assert_true(m.ops[1].magnitude == 0.25);
		assert_string_equal(cutmixd_op_name(m.ops[1].op), "Hue");
		assert_int_equal(m.n_erase, 1);
		assert_int_equal(m.erase_mode, CUTMIXD_ERASE_PIXEL);
		assert_int_equal(m.erase[0][2], i + 3);
		assert_int_equal(m.resize_interp, i % 2);
	}
	assert_null(cutmixd_op_name(19));
	{
		struct cutmixd_meta m;

		assert_int_equal(cutmixd_batch_meta(b, B, &m), -ERANGE);
	}
}

/* Run the iteration to its end; the batch indices must come in order. */
static int drain_epoch(cutmixd_client_t *c, const struct fake_cfg *cfg, uint32_t epoch,
		       uint32_t start, uint32_t *delivered)
{
	cutmixd_batch_t *b = NULL;
	uint32_t k = start;
	int rc;

	while ((rc = cutmixd_client_epoch_next(c, &b)) == 1) {
		check_batch(b, cfg, epoch, k);
		assert_int_equal(cutmixd_client_epoch_position(c), k + 1);
		cutmixd_batch_free(&b);
		assert_null(b);
		k++;
	}
	assert_null(b);
	if (delivered)
		*delivered = k - start;
	return rc;
}

/* ---- tests -------------------------------------------------------------- */

static void test_new_rejects_bad_arguments(void **state)
{
	cutmixd_client_t *c;

	errno = 0;
	assert_null(cutmixd_client_new(NULL, "train", 0, 1, 1));
	assert_int_equal(errno, EINVAL);
	assert_null(cutmixd_client_new("", "train", 0, 1, 1));
	assert_null(cutmixd_client_new("localhost:5555", "train", 0, 1, 1));
	assert_null(cutmixd_client_new("tcp://", "train", 0, 1, 1));
	assert_null(cutmixd_client_new("tcp://a:1,,tcp://b:2", "train", 0, 1, 1));
	assert_null(cutmixd_client_new("tcp://a:1,", "train", 0, 1, 1));
	assert_null(cutmixd_client_new("tcp://a:1", "train", 0, 0, 1));
	assert_int_equal(errno, EINVAL);
	assert_null(cutmixd_client_new("tcp://a:1", "train", 2, 2, 1));
	assert_int_equal(errno, EINVAL);
	assert_null(cutmixd_client_new("tcp://a:1", "0123456789012345678901234567890123", 0, 1, 1));
	assert_int_equal(errno, ENAMETOOLONG);

	/* Longest name, a list, no pipeline: fine, and nothing is sent yet. */
	c = cutmixd_client_new("tcp://a:1, tcp://b:2", "0123456789012345678901234567890", 0, 1, 0);
	assert_non_null(c);
	assert_string_equal(cutmixd_client_error(c), "");
	assert_int_equal(cutmixd_client_set_timeout(c, 0), -EINVAL);
	assert_int_equal(cutmixd_client_set_timeout(c, -5), -EINVAL);
	assert_int_equal(cutmixd_client_set_flags(c, 0x80), -EINVAL);
	assert_int_equal(cutmixd_client_epoch_position(c), -EINVAL);
	{
		cutmixd_batch_t *b = (cutmixd_batch_t *)1;
		uint8_t d[CUTMIXD_DIGEST_SIZE];

		assert_int_equal(cutmixd_client_epoch_next(c, &b), -EINVAL);
		assert_null(b);
		assert_string_equal(cutmixd_client_error(c), "epoch_next: no epoch begun");
		assert_int_equal(cutmixd_client_digest(c, d), -ENODATA);
	}
	cutmixd_client_destroy(&c);
	assert_null(c);
	cutmixd_client_destroy(&c); /* idempotent */
	cutmixd_client_destroy(NULL);

	c = cutmixd_client_new("ipc:///nonexistent/x", NULL, 0, 1, 1);
	assert_non_null(c);
	assert_int_equal(cutmixd_client_batches_per_epoch(c), -EINVAL);
	{
		cutmixd_batch_t *b;

		assert_int_equal(cutmixd_client_get_batch(c, 0, 0, &b), -EINVAL);
		assert_null(b);
	}
	cutmixd_client_destroy(&c);

	/* A transport ZeroMQ does not know fails at the first request, and
	 * keeps failing the same way without connecting anything twice. */
	c = cutmixd_client_new("ipc:///nonexistent/x,bogus://x", "train", 0, 1, 1);
	assert_non_null(c);
	{
		cutmixd_batch_t *b;

		assert_int_equal(cutmixd_client_get_batch(c, 0, 0, &b), -EPROTONOSUPPORT);
		assert_string_equal(cutmixd_client_error(c),
				    "connect 'bogus://x': Protocol not supported");
		assert_int_equal(cutmixd_client_info(c, NULL), -EPROTONOSUPPORT);
		assert_string_equal(cutmixd_client_error(c),
				    "connect 'bogus://x': Protocol not supported");
	}
	cutmixd_client_destroy(&c);

	cutmixd_batch_free(NULL);
	{
		cutmixd_batch_t *b = NULL;

		cutmixd_batch_free(&b);
	}
	assert_int_equal(cutmixd_client_info(NULL, NULL), -EINVAL);
	assert_string_equal(cutmixd_status_name(CUTMIXD_E_NO_PIPELINE), "unknown pipeline");
}

static void test_info_and_stats(void **state)
{
	struct fake_cfg cfg = default_cfg();
	struct fake f;
	cutmixd_client_t *c;
	uint8_t digest[CUTMIXD_DIGEST_SIZE];
	char *json = NULL;

	fake_start(&f, &cfg, false);
	c = client_for(&f, "train", 4);
	assert_int_equal(cutmixd_client_info(c, &json), 0);
	assert_non_null(json);
	assert_non_null(strstr(json, "\"pipeline\": \"train\""));
	free(json);
	assert_int_equal(cutmixd_client_batches_per_epoch(c), 10);
	assert_int_equal(cutmixd_client_digest(c, digest), 0);
	assert_int_equal(digest[0], cfg.digest_seed);
	assert_int_equal(digest[31], cfg.digest_seed + 31);
	assert_int_equal(cutmixd_client_stats(c, &json), 0);
	assert_non_null(strstr(json, "\"requests\": "));
	free(json);
	assert_int_equal(cutmixd_client_info(c, NULL), 0);
	cutmixd_client_destroy(&c);
	fake_stop(&f);
	assert_int_equal(f.info_requests, 2); /* batches_per_epoch was cached */
	assert_int_equal(f.stats_requests, 1);
	assert_int_equal(f.last_rank, 1);
	assert_int_equal(f.last_world, 2);
	assert_string_equal(f.last_pipeline, "train");
}

static void test_info_json_parsing(void **state)
{
	struct fake_cfg cfg = default_cfg();
	struct fake f;
	cutmixd_client_t *c;

	/* The keys also appear nested and inside strings: only the top-level
	 * members count. */
	cfg.info_json =
		"{ \"nested\": {\"batches_per_epoch\": 99, \"x\": [1, {\"max_window\": 1}]},\n"
		"  \"class_names\": [\"batches_per_epoch\", \"a\\\"b\", \"}\"],\n"
		"  \"eval\": false, \"ratio\": -1.5e3, \"none\": null,\n"
		"  \"batches_per_epoch\" : 10 , \"max_window\":3 }";
	fake_start(&f, &cfg, false);
	c = client_for(&f, "train", 8);
	assert_int_equal(cutmixd_client_batches_per_epoch(c), 10);
	/* The window (8) is lowered to max_window (3). */
	assert_int_equal(cutmixd_client_epoch_begin(c, 0, 0), 0);
	assert_int_equal(drain_epoch(c, &cfg, 0, 0, NULL), 0);
	cutmixd_client_destroy(&c);
	fake_stop(&f);
	assert_true(f.max_outstanding <= 3);

	cfg.info_json = "{\"batches_per_epoch\": \"ten\"}";
	fake_start(&f, &cfg, false);
	c = client_for(&f, "train", 8);
	assert_int_equal(cutmixd_client_batches_per_epoch(c), -EPROTO);
	assert_non_null(strstr(cutmixd_client_error(c), "no batches_per_epoch"));
	cutmixd_client_destroy(&c);
	fake_stop(&f);
}

static void test_get_batch(void **state)
{
	struct fake_cfg cfg = default_cfg();
	struct fake f;
	cutmixd_client_t *c;
	cutmixd_batch_t *b = NULL;

	fake_start(&f, &cfg, false);
	c = client_for(&f, "train", 4);
	assert_int_equal(cutmixd_client_get_batch(c, 3, 0, &b), 0);
	check_batch(b, &cfg, 3, 0);
	cutmixd_batch_free(&b);
	assert_null(b);
	assert_int_equal(cutmixd_client_get_batch(c, 3, 9, &b), 0);
	check_batch(b, &cfg, 3, 9); /* the short last batch */
	cutmixd_batch_free(&b);

	/* Out of range: the daemon's error, its code and message. */
	assert_int_equal(cutmixd_client_get_batch(c, 3, 10, &b), -ERANGE);
	assert_null(b);
	assert_int_equal(cutmixd_client_error_status(c), CUTMIXD_E_BATCH_RANGE);
	assert_string_equal(cutmixd_client_error(c),
			    "daemon: batch 10 out of range: epoch has 10 batches");
	cutmixd_client_destroy(&c);
	fake_stop(&f);
	assert_int_equal(f.batch_requests, 3);
	assert_int_equal(f.info_requests, 0); /* get_batch needs no INFO */
}

static void test_frames_as_received(void **state)
{
	struct fake_cfg cfg = default_cfg();
	struct fake f;
	cutmixd_client_t *c;
	cutmixd_batch_t *b = NULL;
	struct wire_reply rp;
	const void *p;
	size_t n;

	fake_start(&f, &cfg, false);
	c = client_for(&f, "train", 4);
	assert_int_equal(cutmixd_client_get_batch(c, 1, 2, &b), 0);
	p = cutmixd_batch_frame(b, 0, &n);
	assert_int_equal(n, WIRE_REPLY_SIZE);
	assert_int_equal(wire_decode_reply(p, n, &rp), 0);
	assert_int_equal(rp.batch, 2);
	assert_true(rp.request_id != 0);
	p = cutmixd_batch_frame(b, 1, &n);
	assert_ptr_equal(p, cutmixd_batch_images(b, NULL)); /* uint8: no copy */
	assert_int_equal(n, 4 * 18);
	p = cutmixd_batch_frame(b, 3, &n);
	assert_ptr_equal(p, cutmixd_batch_meta_raw(b, NULL));
	assert_int_equal(n, 4 * WIRE_META_SIZE);
	p = cutmixd_batch_frame(b, 2, &n);
	assert_int_equal(n, 4 * 5 * 4);
	assert_memory_equal(p, cutmixd_batch_labels(b, NULL), n);
	if (p != (const void *)cutmixd_batch_labels(b, NULL))
		print_message("labels frame at %p was realigned\n", p);
	assert_null(cutmixd_batch_frame(b, 4, &n));
	assert_int_equal(n, 0);
	cutmixd_batch_free(&b);
	cutmixd_client_destroy(&c);
	fake_stop(&f);
}

static void test_epoch_in_order(void **state)
{
	struct fake_cfg cfg = default_cfg();
	struct fake f;
	cutmixd_client_t *c;
	cutmixd_batch_t *b = (cutmixd_batch_t *)1;
	uint32_t n;

	fake_start(&f, &cfg, false);
	c = client_for(&f, "train", 3);
	assert_int_equal(cutmixd_client_epoch_begin(c, 2, 0), 0);
	assert_int_equal(cutmixd_client_epoch_position(c), 0);
	assert_int_equal(drain_epoch(c, &cfg, 2, 0, &n), 0);
	assert_int_equal(n, 10);
	/* Finished stays finished. */
	assert_int_equal(cutmixd_client_epoch_next(c, &b), 0);
	assert_null(b);
	assert_int_equal(cutmixd_client_epoch_position(c), 10);

	/* Start in the middle; start == batches per epoch is an empty epoch. */
	assert_int_equal(cutmixd_client_epoch_begin(c, 3, 7), 0);
	assert_int_equal(drain_epoch(c, &cfg, 3, 7, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(cutmixd_client_epoch_begin(c, 3, 10), 0);
	assert_int_equal(cutmixd_client_epoch_next(c, &b), 0);
	assert_int_equal(cutmixd_client_epoch_begin(c, 3, 11), -ERANGE);
	cutmixd_client_destroy(&c);
	fake_stop(&f);
	assert_int_equal(f.batch_requests, 13);
	assert_int_equal(f.info_requests, 1);
	assert_true(f.max_outstanding <= 3);
}

static void test_epoch_reorder_buffer(void **state)
{
	struct fake_cfg cfg = default_cfg();
	struct fake f;
	cutmixd_client_t *c;
	uint32_t n;

	cfg.reorder = 4; /* collect four requests, answer them last first */
	fake_start(&f, &cfg, false);
	c = client_for(&f, "train", 4);
	assert_int_equal(cutmixd_client_epoch_begin(c, 0, 0), 0);
	assert_int_equal(drain_epoch(c, &cfg, 0, 0, &n), 0);
	assert_int_equal(n, 10);
	cutmixd_client_destroy(&c);
	fake_stop(&f);
	assert_true(f.reversed >= 3); /* replies really came out of order */
	assert_int_equal(f.max_outstanding, 4);
	assert_int_equal(f.batch_requests, 10);
}

static void test_epoch_float_nchw(void **state)
{
	struct fake_cfg cfg = default_cfg();
	struct fake f;
	cutmixd_client_t *c;

	cfg.dtype = WIRE_FLOAT32;
	cfg.layout = WIRE_NCHW;
	cfg.h = 3;
	cfg.w = 5;
	cfg.c = 1;
	cfg.k = 3;
	cfg.reorder = 2;
	fake_start(&f, &cfg, false);
	c = client_for(&f, "train", 2);
	assert_int_equal(cutmixd_client_epoch_begin(c, 1, 0), 0);
	assert_int_equal(drain_epoch(c, &cfg, 1, 0, NULL), 0);
	cutmixd_client_destroy(&c);
	fake_stop(&f);
}

static void test_get_batch_during_epoch(void **state)
{
	struct fake_cfg cfg = default_cfg();
	struct fake f;
	cutmixd_client_t *c;
	cutmixd_batch_t *b = NULL, *other = NULL;
	uint32_t n;

	cfg.reorder = 3;
	fake_start(&f, &cfg, false);
	c = client_for(&f, "train", 3);
	assert_int_equal(cutmixd_client_epoch_begin(c, 5, 0), 0);
	assert_int_equal(cutmixd_client_epoch_next(c, &b), 1);
	check_batch(b, &cfg, 5, 0);
	/* A synchronous request while the window is in flight: the window's
	 * replies that arrive meanwhile are kept for the iteration. */
	assert_int_equal(cutmixd_client_get_batch(c, 6, 4, &other), 0);
	check_batch(other, &cfg, 6, 4);
	assert_int_equal(drain_epoch(c, &cfg, 5, 1, &n), 0);
	assert_int_equal(n, 9);
	cutmixd_client_destroy(&c);
	/* Batches outlive their client. */
	check_batch(b, &cfg, 5, 0);
	check_batch(other, &cfg, 6, 4);
	cutmixd_batch_free(&b);
	cutmixd_batch_free(&other);
	fake_stop(&f);
	assert_int_equal(f.batch_requests, 11);
}

static void test_error_reply(void **state)
{
	struct fake_cfg cfg = default_cfg();
	struct fake f;
	cutmixd_client_t *c;
	char *json = (char *)1;
	cutmixd_batch_t *b;

	fake_start(&f, &cfg, false);
	c = client_for(&f, "nope", 4);
	assert_int_equal(cutmixd_client_info(c, &json), -ENOENT);
	assert_null(json);
	assert_string_equal(cutmixd_client_error(c), "daemon: unknown pipeline: 'nope'");
	assert_int_equal(cutmixd_client_error_status(c), CUTMIXD_E_NO_PIPELINE);
	assert_int_equal(cutmixd_client_epoch_begin(c, 0, 0), -ENOENT);
	assert_int_equal(cutmixd_client_epoch_next(c, &b), -EINVAL);
	assert_int_equal(cutmixd_client_error_status(c), 0);
	assert_int_equal(cutmixd_client_get_batch(c, 0, 0, &b), -ENOENT);
	assert_null(b);
	cutmixd_client_destroy(&c);

	/* EXPECT_EVAL refused by an augmenting pipeline. */
	c = client_for(&f, "train", 4);
	assert_int_equal(cutmixd_client_set_flags(c, CUTMIXD_EXPECT_EVAL), 0);
	assert_int_equal(cutmixd_client_get_batch(c, 0, 0, &b), -EPERM);
	assert_int_equal(cutmixd_client_error_status(c), CUTMIXD_E_NOT_EVAL);
	assert_string_equal(cutmixd_client_error(c),
			    "daemon: pipeline 'train' augments: not an eval pipeline");
	cutmixd_client_destroy(&c);
	fake_stop(&f);
	assert_int_equal(f.last_flags, WIRE_FLAG_EXPECT_EVAL);
}

static void test_epoch_error_and_resume(void **state)
{
	struct fake_cfg cfg = default_cfg();
	struct fake f;
	cutmixd_client_t *c;
	cutmixd_batch_t *b;
	uint32_t n;

	cfg.error_batch = 5;
	cfg.error_once = true;
	cfg.reorder = 4;
	fake_start(&f, &cfg, false);
	c = client_for(&f, "train", 4);
	assert_int_equal(cutmixd_client_epoch_begin(c, 0, 0), 0);
	assert_int_equal(drain_epoch(c, &cfg, 0, 0, &n), -EIO);
	assert_int_equal(n, 5);
	/* The message's newline is not passed on. */
	assert_string_equal(cutmixd_client_error(c), "daemon: decode failed: 'img5.jpg'?(corrupt)");
	assert_int_equal(cutmixd_client_error_status(c), CUTMIXD_E_DECODE);
	assert_int_equal(cutmixd_client_epoch_position(c), 5);
	/* Sticky until begun again. */
	assert_int_equal(cutmixd_client_epoch_next(c, &b), -EIO);
	assert_null(b);
	assert_int_equal(cutmixd_client_error_status(c), CUTMIXD_E_DECODE);
	/* Resume where it failed (the fake fails batch 5 only once). */
	assert_int_equal(cutmixd_client_epoch_begin(c, 0, 5), 0);
	assert_int_equal(drain_epoch(c, &cfg, 0, 5, &n), 0);
	assert_int_equal(n, 5);
	cutmixd_client_destroy(&c);
	fake_stop(&f);
	assert_int_equal(f.per_batch[5], 2);
}

static void test_timeout(void **state)
{
	struct fake_cfg cfg = default_cfg();
	struct fake f;
	cutmixd_client_t *c;
	cutmixd_batch_t *b;
	int64_t t0, dt;

	cfg.silent = true;
	fake_start(&f, &cfg, false);
	c = client_for(&f, "train", 4);
	assert_int_equal(cutmixd_client_set_timeout(c, 200), 0);

	t0 = ms_now();
	assert_int_equal(cutmixd_client_get_batch(c, 0, 0, &b), -ETIMEDOUT);
	dt = ms_now() - t0;
	assert_null(b);
	assert_true(dt >= 190 && dt < 3000);
	assert_non_null(strstr(cutmixd_client_error(c), "timeout: no reply to batch request"));
	assert_int_equal(cutmixd_client_error_status(c), 0);

	t0 = ms_now();
	assert_int_equal(cutmixd_client_info(c, NULL), -ETIMEDOUT);
	assert_int_equal(cutmixd_client_epoch_begin(c, 0, 0), -ETIMEDOUT);
	assert_true(ms_now() - t0 < 3000);
	cutmixd_client_destroy(&c);
	fake_stop(&f);

	/* Nothing listening at all. */
	c = cutmixd_client_new("ipc:///nonexistent-cutmixd-dir/x.sock", "train", 0, 1, 1);
	assert_non_null(c);
	assert_int_equal(cutmixd_client_set_timeout(c, 100), 0);
	assert_int_equal(cutmixd_client_get_batch(c, 0, 0, &b), -ETIMEDOUT);
	assert_non_null(strstr(cutmixd_client_error(c), "no daemon reachable"));
	cutmixd_client_destroy(&c);
}

static void test_epoch_timeout(void **state)
{
	struct fake_cfg cfg = default_cfg();
	struct fake f;
	cutmixd_client_t *c;
	cutmixd_batch_t *b = (cutmixd_batch_t *)1;
	int64_t t0, dt;

	/* INFO is answered, batches never are. */
	cfg.silent_batches = true;
	fake_start(&f, &cfg, false);
	c = client_for(&f, "train", 2);
	assert_int_equal(cutmixd_client_set_timeout(c, 300), 0);
	assert_int_equal(cutmixd_client_epoch_begin(c, 0, 0), 0);
	t0 = ms_now();
	assert_int_equal(cutmixd_client_epoch_next(c, &b), -ETIMEDOUT);
	dt = ms_now() - t0;
	assert_null(b);
	assert_true(dt >= 290 && dt < 3000);
	assert_non_null(strstr(cutmixd_client_error(c), "no reply for batch 0 of epoch 0"));
	assert_int_equal(cutmixd_client_error_status(c), 0);
	/* Sticky, and the position says where to resume. */
	assert_int_equal(cutmixd_client_epoch_next(c, &b), -ETIMEDOUT);
	assert_int_equal(cutmixd_client_epoch_position(c), 0);
	cutmixd_client_destroy(&c);
	fake_stop(&f);
	assert_int_equal(f.batch_requests, 2); /* the window, nothing more */
}

static void test_stale_error_replies_ignored(void **state)
{
	struct fake_cfg cfg = default_cfg();
	struct fake f;
	cutmixd_client_t *c;
	cutmixd_batch_t *b;

	/* Before each reply the fake sends an error reply with an unknown
	 * request_id and a garbage frame: neither may fail anything. Batch 2
	 * then fails for real. */
	cfg.error_batch = 2;
	cfg.stale_first = true;
	fake_start(&f, &cfg, false);
	c = client_for(&f, "train", 4);
	assert_int_equal(cutmixd_client_epoch_begin(c, 0, 0), 0);
	assert_int_equal(cutmixd_client_epoch_next(c, &b), 1);
	check_batch(b, &cfg, 0, 0);
	cutmixd_batch_free(&b);
	assert_int_equal(cutmixd_client_epoch_next(c, &b), 1);
	check_batch(b, &cfg, 0, 1);
	cutmixd_batch_free(&b);
	assert_int_equal(cutmixd_client_epoch_next(c, &b), -EIO);
	assert_int_equal(cutmixd_client_epoch_position(c), 2);
	cutmixd_client_destroy(&c);
	fake_stop(&f);
}

static void test_busy_is_retried(void **state)
{
	struct fake_cfg cfg = default_cfg();
	struct fake f;
	cutmixd_client_t *c;
	cutmixd_batch_t *b;

	cfg.busy_batch = 2;
	fake_start(&f, &cfg, false);
	c = client_for(&f, "train", 4);
	assert_int_equal(cutmixd_client_epoch_begin(c, 0, 0), 0);
	assert_int_equal(drain_epoch(c, &cfg, 0, 0, NULL), 0);
	assert_int_equal(cutmixd_client_get_batch(c, 0, 2, &b), 0); /* not busy now */
	check_batch(b, &cfg, 0, 2);
	cutmixd_batch_free(&b);
	cutmixd_client_destroy(&c);
	fake_stop(&f);
	assert_int_equal(f.per_batch[2], 3);

	/* The synchronous path retries too. */
	cfg.busy_batch = 7;
	fake_start(&f, &cfg, false);
	c = client_for(&f, "train", 4);
	assert_int_equal(cutmixd_client_get_batch(c, 0, 7, &b), 0);
	check_batch(b, &cfg, 0, 7);
	cutmixd_batch_free(&b);
	cutmixd_client_destroy(&c);
	fake_stop(&f);
	assert_int_equal(f.per_batch[7], 2);
}

static void test_protocol_violations(void **state)
{
	static const struct { enum corrupt how; int err; const char *text; } cases[] = {
		{ CORRUPT_SHAPE, -EPROTO, "do not match shape" },
		{ CORRUPT_BODY_BYTES, -EPROTO, "header says" },
		{ CORRUPT_ECHO, -EPROTO, "asked for epoch 0 batch 1" },
		{ CORRUPT_VERSION, -EPROTONOSUPPORT, "protocol version 3" },
		{ CORRUPT_FRAMES, -EPROTO, "3 frames, expected 4" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fake_cfg cfg = default_cfg();
		struct fake f;
		cutmixd_client_t *c;
		cutmixd_batch_t *b;

		cfg.corrupt = cases[i].how;
		fake_start(&f, &cfg, false);
		c = client_for(&f, "train", 4);
		assert_int_equal(cutmixd_client_get_batch(c, 0, 1, &b), cases[i].err);
		assert_null(b);
		if (!strstr(cutmixd_client_error(c), cases[i].text))
			fail_msg("case %zu: '%s' lacks '%s'", i, cutmixd_client_error(c),
				 cases[i].text);
		assert_int_equal(cutmixd_client_error_status(c), 0);
		/* In an iteration the same failure ends it. */
		assert_int_equal(cutmixd_client_epoch_begin(c, 0, 0), 0);
		assert_int_equal(cutmixd_client_epoch_next(c, &b), cases[i].err);
		cutmixd_client_destroy(&c);
		fake_stop(&f);
	}
}

static void test_stale_replies_and_delimiter(void **state)
{
	struct fake_cfg cfg = default_cfg();
	struct fake f;
	cutmixd_client_t *c;
	cutmixd_batch_t *b;
	char *json;

	cfg.stale_first = true;
	cfg.delimiter = true;
	cfg.reorder = 3;
	fake_start(&f, &cfg, false);
	c = client_for(&f, "train", 3);
	assert_int_equal(cutmixd_client_info(c, &json), 0);
	free(json);
	assert_int_equal(cutmixd_client_epoch_begin(c, 4, 0), 0);
	assert_int_equal(drain_epoch(c, &cfg, 4, 0, NULL), 0);
	assert_int_equal(cutmixd_client_get_batch(c, 4, 3, &b), 0);
	check_batch(b, &cfg, 4, 3);
	cutmixd_batch_free(&b);
	cutmixd_client_destroy(&c);
	fake_stop(&f);
}

static void test_abandoned_iteration(void **state)
{
	struct fake_cfg cfg = default_cfg();
	struct fake f;
	cutmixd_client_t *c;
	cutmixd_batch_t *b;

	cfg.reorder = 4;
	fake_start(&f, &cfg, false);
	c = client_for(&f, "train", 4);
	assert_int_equal(cutmixd_client_epoch_begin(c, 0, 0), 0);
	assert_int_equal(cutmixd_client_epoch_next(c, &b), 1);
	cutmixd_batch_free(&b);
	/* Begin another epoch with requests of the first still in flight:
	 * their replies must not turn up in the new one. */
	assert_int_equal(cutmixd_client_epoch_begin(c, 1, 0), 0);
	assert_int_equal(drain_epoch(c, &cfg, 1, 0, NULL), 0);
	cutmixd_client_destroy(&c);
	fake_stop(&f);
}

static void test_digest_change_refused(void **state)
{
	struct fake_cfg cfg = default_cfg();
	struct fake f;
	cutmixd_client_t *c;
	cutmixd_batch_t *b;
	uint32_t n;

	cfg.digest_change_after = 4; /* INFO + 3 batches, then another config */
	fake_start(&f, &cfg, false);
	c = client_for(&f, "train", 1);
	assert_int_equal(cutmixd_client_epoch_begin(c, 0, 0), 0);
	assert_int_equal(drain_epoch(c, &cfg, 0, 0, &n), -ESTALE);
	assert_int_equal(n, 3);
	assert_non_null(strstr(cutmixd_client_error(c), "config digest mismatch"));
	assert_int_equal(cutmixd_client_get_batch(c, 0, 0, &b), -ESTALE);
	cutmixd_client_destroy(&c);
	fake_stop(&f);
}

static void test_two_daemons(void **state)
{
	struct fake_cfg cfg = default_cfg();
	struct fake f, g;
	cutmixd_client_t *c;
	char ep[600];
	uint32_t n;

	fake_start(&f, &cfg, false);
	fake_start(&g, &cfg, true);
	snprintf(ep, sizeof(ep), "%s, %s", f.endpoint, g.endpoint);
	c = cutmixd_client_new(ep, "train", 0, 1, 4);
	assert_non_null(c);
	assert_int_equal(cutmixd_client_set_timeout(c, 5000), 0);
	assert_int_equal(cutmixd_client_batches_per_epoch(c), 10);
	usleep(100 * 1000); /* let both connections complete */
	assert_int_equal(cutmixd_client_epoch_begin(c, 0, 0), 0);
	assert_int_equal(drain_epoch(c, &cfg, 0, 0, &n), 0);
	assert_int_equal(n, 10);
	cutmixd_client_destroy(&c);
	fake_stop(&f);
	fake_stop(&g);
	assert_int_equal(f.batch_requests + g.batch_requests, 10);
	assert_true(f.batch_requests > 0 && g.batch_requests > 0);

	/* Two daemons with different configs: refused. */
	fake_start(&f, &cfg, false);
	cfg.digest_seed = 0x99;
	fake_start(&g, &cfg, false);
	snprintf(ep, sizeof(ep), "%s,%s", f.endpoint, g.endpoint);
	c = cutmixd_client_new(ep, "train", 0, 1, 4);
	assert_non_null(c);
	assert_int_equal(cutmixd_client_set_timeout(c, 5000), 0);
	usleep(100 * 1000);
	{
		cutmixd_batch_t *b = NULL;
		int rc = 0;

		assert_int_equal(cutmixd_client_epoch_begin(c, 0, 0), 0);
		while ((rc = cutmixd_client_epoch_next(c, &b)) == 1)
			cutmixd_batch_free(&b);
		assert_int_equal(rc, -ESTALE);
		/* The message names the daemon that differs from the first. */
		assert_non_null(strstr(cutmixd_client_error(c), "config digest mismatch"));
		assert_true(strstr(cutmixd_client_error(c), f.endpoint) ||
			    strstr(cutmixd_client_error(c), g.endpoint));
	}
	cutmixd_client_destroy(&c);
	fake_stop(&f);
	fake_stop(&g);
}

static void test_tcp(void **state)
{
	struct fake_cfg cfg = default_cfg();
	struct fake f;
	cutmixd_client_t *c;
	uint32_t n;

	/* Sizes that put the float frames at odd offsets in the receive
	 * buffer; whatever ZeroMQ does, the client must hand out aligned
	 * floats with the right values. */
	cfg.dtype = WIRE_FLOAT32;
	cfg.h = 3;
	cfg.w = 3;
	cfg.c = 3;
	cfg.k = 7;
	cfg.reorder = 2;
	fake_start(&f, &cfg, true);
	c = client_for(&f, "train", 5);
	assert_int_equal(cutmixd_client_epoch_begin(c, 9, 0), 0);
	assert_int_equal(drain_epoch(c, &cfg, 9, 0, &n), 0);
	assert_int_equal(n, 10);
	cutmixd_client_destroy(&c);
	fake_stop(&f);
}

static struct cutmixd_peer_stats peer_of(cutmixd_client_t *c, unsigned i)
{
	struct cutmixd_peer_stats st;

	assert_int_equal(cutmixd_client_peer_stats(c, i, &st), 0);
	return st;
}

/* A client of the fakes f and g ("f, g"), both connected. */
static cutmixd_client_t *client_of_two(const struct fake *f, const struct fake *g,
				       uint32_t window, int resend_ms)
{
	char ep[600];
	cutmixd_client_t *c;
	int64_t deadline = ms_now() + 3000;

	snprintf(ep, sizeof(ep), "%s, %s", f->endpoint, g->endpoint);
	c = cutmixd_client_new(ep, "train", 1, 2, window);
	assert_non_null(c);
	assert_int_equal(cutmixd_client_set_timeout(c, 5000), 0);
	assert_int_equal(cutmixd_client_set_resend_timeout(c, resend_ms), 0);
	assert_int_equal(cutmixd_client_peer_count(c), 2);
	assert_int_equal(cutmixd_client_batches_per_epoch(c), 10);
	while (peer_of(c, 0).state != CUTMIXD_PEER_UP || peer_of(c, 1).state != CUTMIXD_PEER_UP) {
		assert_true(ms_now() < deadline);
		usleep(10 * 1000);
	}
	return c;
}

static void test_peer_api_and_setters(void **state)
{
	cutmixd_client_t *c = cutmixd_client_new("ipc:///nonexistent/a, tcp://127.0.0.1:1",
						 "train", 0, 1, 0);
	struct cutmixd_peer_stats st;

	assert_non_null(c);
	assert_int_equal(cutmixd_client_peer_count(c), 2);
	assert_int_equal(cutmixd_client_peer_stats(c, 0, &st), 0);
	assert_string_equal(st.endpoint, "ipc:///nonexistent/a");
	assert_int_equal(st.state, CUTMIXD_PEER_NOT_CONNECTED);
	assert_true(st.latency_ms < 0);
	assert_int_equal(cutmixd_client_peer_stats(c, 1, &st), 0);
	assert_string_equal(st.endpoint, "tcp://127.0.0.1:1");
	assert_int_equal(cutmixd_client_peer_stats(c, 2, &st), -ERANGE);
	assert_int_equal(cutmixd_client_set_resend_timeout(c, 0), -EINVAL);
	assert_int_equal(cutmixd_client_set_resend_timeout(c, 250), 0);
	assert_int_equal(cutmixd_client_peer_count(NULL), -EINVAL);
	cutmixd_client_destroy(&c);
	/* The same endpoint twice is a mistake. */
	errno = 0;
	assert_null(cutmixd_client_new("ipc:///x/a,ipc:///x/a", "train", 0, 1, 0));
	assert_int_equal(errno, EINVAL);
	assert_int_equal(cutmixd_batch_peer(NULL), -1);
}

static void test_resend_to_other_daemon(void **state)
{
	struct fake_cfg cfg = default_cfg(), silent = default_cfg();
	struct fake f, g;
	cutmixd_client_t *c;
	cutmixd_batch_t *b = NULL;
	int64_t t0;
	uint32_t n = 0;
	int rc;

	/* g answers INFO (and its probes) but never a batch. */
	silent.silent_batches = true;
	fake_start(&f, &cfg, false);
	fake_start(&g, &silent, false);
	c = client_of_two(&f, &g, 4, 200);
	t0 = ms_now();
	assert_int_equal(cutmixd_client_epoch_begin(c, 0, 0), 0);
	while ((rc = cutmixd_client_epoch_next(c, &b)) == 1) {
		check_batch(b, &cfg, 0, n);
		assert_int_equal(cutmixd_batch_peer(b), 0);
		cutmixd_batch_free(&b);
		n++;
	}
	assert_int_equal(rc, 0);
	assert_int_equal(n, 10);
	assert_true(ms_now() - t0 < 4000);
	assert_true(peer_of(c, 1).resent >= 1);
	assert_true(peer_of(c, 1).downs >= 1);
	assert_int_equal(peer_of(c, 1).batches, 0);
	assert_int_equal(peer_of(c, 0).batches, 10);
	cutmixd_client_destroy(&c);
	fake_stop(&f);
	fake_stop(&g);
	assert_true(g.batch_requests >= 1);
	/* Every batch was computed once, by f: nothing re-sent needlessly. */
	for (int k = 0; k < 10; k++)
		assert_int_equal(f.per_batch[k], 1);
}

static void test_silent_daemon_used_again(void **state)
{
	struct fake_cfg cfg = default_cfg();
	struct fake f, g;
	cutmixd_client_t *c;
	int64_t deadline;
	uint64_t before;
	uint32_t e = 1;

	fake_start(&f, &cfg, false);
	fake_start(&g, &cfg, false);
	c = client_of_two(&f, &g, 4, 200);
	atomic_store(&g.mute, true);    /* a hung daemon, or a dead link */
	assert_int_equal(cutmixd_client_epoch_begin(c, 0, 0), 0);
	assert_int_equal(drain_epoch(c, &cfg, 0, 0, NULL), 0);
	assert_true(peer_of(c, 1).downs >= 1);
	assert_int_equal(peer_of(c, 1).state, CUTMIXD_PEER_DOWN);
	before = peer_of(c, 1).batches;
	atomic_store(&g.mute, false);   /* back: a probe finds it */
	deadline = ms_now() + 6000;
	while (peer_of(c, 1).batches == before) {
		assert_true(ms_now() < deadline);
		assert_int_equal(cutmixd_client_epoch_begin(c, e, 0), 0);
		assert_int_equal(drain_epoch(c, &cfg, e, 0, NULL), 0);
		e++;
		usleep(20 * 1000);
	}
	assert_int_equal(peer_of(c, 1).state, CUTMIXD_PEER_UP);
	cutmixd_client_destroy(&c);
	fake_stop(&f);
	fake_stop(&g);
}

static void test_restarted_daemon(void **state)
{
	struct fake_cfg cfg = default_cfg();
	struct fake f, g;
	cutmixd_client_t *c;
	cutmixd_batch_t *b = NULL;
	uint32_t k = 0, e = 1;
	int64_t t0 = ms_now(), deadline;
	uint64_t before;
	int rc;

	cfg.reorder = 2; /* g holds requests: some are out when it stops */
	fake_start(&f, &cfg, false);
	fake_start(&g, &cfg, false);
	c = client_of_two(&f, &g, 4, 5000);
	assert_int_equal(cutmixd_client_epoch_begin(c, 0, 0), 0);
	while ((rc = cutmixd_client_epoch_next(c, &b)) == 1) {
		check_batch(b, &cfg, 0, k);
		cutmixd_batch_free(&b);
		if (++k == 3)
			fake_restart(&g);  /* its requests are lost with the connection */
	}
	assert_int_equal(rc, 0);
	assert_int_equal(k, 10);
	/* Lost requests were re-sent at once, not after the 5 s resend
	 * timeout (the whole epoch took far less). */
	assert_true(ms_now() - t0 < 4000);
	/* Once reconnected, the new g is used again. */
	before = peer_of(c, 1).batches;
	deadline = ms_now() + 3000;
	while (peer_of(c, 1).batches == before) {
		assert_true(ms_now() < deadline);
		usleep(20 * 1000);
		assert_int_equal(cutmixd_client_epoch_begin(c, e, 0), 0);
		assert_int_equal(drain_epoch(c, &cfg, e, 0, NULL), 0);
		e++;
	}
	cutmixd_client_destroy(&c);
	fake_stop(&f);
	fake_stop(&g);
	assert_true(g.batch_requests > 0); /* the new g served */
}

static void test_no_daemon_answers(void **state)
{
	struct fake_cfg cfg = default_cfg();
	struct fake f, g;
	char ep[600];
	cutmixd_client_t *c;
	cutmixd_batch_t *b;
	int64_t t0, dt;

	cfg.silent = true;
	fake_start(&f, &cfg, false);
	fake_start(&g, &cfg, true);
	snprintf(ep, sizeof(ep), "%s,%s", f.endpoint, g.endpoint);
	c = cutmixd_client_new(ep, "train", 0, 1, 0);
	assert_non_null(c);
	assert_int_equal(cutmixd_client_set_timeout(c, 600), 0);
	assert_int_equal(cutmixd_client_set_resend_timeout(c, 100), 0);
	t0 = ms_now();
	assert_int_equal(cutmixd_client_get_batch(c, 0, 0, &b), -ETIMEDOUT);
	dt = ms_now() - t0;
	assert_true(dt >= 590 && dt < 2500);
	assert_non_null(strstr(cutmixd_client_error(c), f.endpoint));
	assert_non_null(strstr(cutmixd_client_error(c), g.endpoint));
	assert_non_null(strstr(cutmixd_client_error(c), "down"));
	cutmixd_client_destroy(&c);
	fake_stop(&f);
	fake_stop(&g);
	/* Bounded: a few re-sends and probes, not a flood. */
	assert_true(f.requests + g.requests <= 12);
}

static void test_curve(void **state)
{
	struct fake_cfg cfg = default_cfg();
	char spub[41], ssec[41], cpub[41], csec[41], other[41], junk[41];
	struct fake f;
	cutmixd_client_t *c;
	cutmixd_batch_t *b = NULL;

	if (!zmq_has("curve")) {
		skip();
		return;
	}
	assert_int_equal(zmq_curve_keypair(spub, ssec), 0);
	assert_int_equal(zmq_curve_keypair(cpub, csec), 0);
	assert_int_equal(zmq_curve_keypair(other, junk), 0);
	cfg.curve_secret = ssec;
	fake_start(&f, &cfg, true);

	/* Bad arguments. */
	c = client_for(&f, "train", 4);
	assert_int_equal(cutmixd_client_set_curve(c, "short", NULL, NULL), -EINVAL);
	assert_int_equal(cutmixd_client_set_curve(c, spub, cpub, NULL), -EINVAL);
	assert_int_equal(cutmixd_client_set_curve(c, spub, cpub, junk), -EINVAL);
	assert_non_null(strstr(cutmixd_client_error(c), "does not belong"));
	/* The right keys. */
	assert_int_equal(cutmixd_client_set_curve(c, spub, cpub, csec), 0);
	assert_int_equal(cutmixd_client_get_batch(c, 0, 3, &b), 0);
	check_batch(b, &cfg, 0, 3);
	cutmixd_batch_free(&b);
	assert_int_equal(cutmixd_client_set_curve(c, spub, cpub, csec), -EINVAL); /* too late */
	cutmixd_client_destroy(&c);

	/* A new client keypair made on the spot. */
	c = client_for(&f, "train", 4);
	assert_int_equal(cutmixd_client_set_curve(c, spub, NULL, NULL), 0);
	assert_int_equal(cutmixd_client_epoch_begin(c, 1, 0), 0);
	assert_int_equal(drain_epoch(c, &cfg, 1, 0, NULL), 0);
	cutmixd_client_destroy(&c);

	/* A wrong server key, or none: no handshake, a bounded timeout. */
	c = client_for(&f, "train", 4);
	assert_int_equal(cutmixd_client_set_timeout(c, 400), 0);
	assert_int_equal(cutmixd_client_set_curve(c, other, cpub, csec), 0);
	assert_int_equal(cutmixd_client_get_batch(c, 0, 0, &b), -ETIMEDOUT);
	cutmixd_client_destroy(&c);
	c = client_for(&f, "train", 4);
	assert_int_equal(cutmixd_client_set_timeout(c, 400), 0);
	assert_int_equal(cutmixd_client_get_batch(c, 0, 0, &b), -ETIMEDOUT);
	cutmixd_client_destroy(&c);
	fake_stop(&f);
}

static void test_load_keypair(void **state)
{
	char dir[] = "/tmp/cutmixd-keys-XXXXXX", path[128], text[512], err[256];
	char pub[41], sec[41], gpub[41], gsec[41], opub[41], osec[41];
	int tries = 0;

	assert_non_null(mkdtemp(dir));
	/* A key with '=' and '#' in it: both are Z85 characters. */
	do {
		assert_int_equal(zmq_curve_keypair(gpub, gsec), 0);
		assert_true(++tries < 100000);
	} while (!strchr(gpub, '=') || !strchr(gpub, '#'));
	assert_int_equal(zmq_curve_keypair(opub, osec), 0);

	snprintf(path, sizeof(path), "%s/a.key", dir);
	snprintf(text, sizeof(text),
		 "# cutmixd CURVE keypair: keep secret\n\npublic-key = %s\nsecret-key = %s\n",
		 gpub, gsec);
	tu_write_file(path, text);
	assert_int_equal(cutmixd_load_keypair(path, pub, sec, err, sizeof(err)), 0);
	assert_string_equal(pub, gpub);
	assert_string_equal(sec, gsec);
	assert_string_equal(err, "");
	assert_int_equal(cutmixd_load_keypair(path, pub, NULL, NULL, 0), 0);

	/* ZeroMQ's zcert layout: section words, indentation, quotes. */
	snprintf(path, sizeof(path), "%s/z.key", dir);
	snprintf(text, sizeof(text),
		 "#   ZeroMQ CURVE **Secret** Certificate\nmetadata\ncurve\n"
		 "    public-key = \"%s\"\n    secret-key = \"%s\"\n", gpub, gsec);
	tu_write_file(path, text);
	assert_int_equal(cutmixd_load_keypair(path, pub, sec, err, sizeof(err)), 0);
	assert_string_equal(pub, gpub);
	assert_string_equal(sec, gsec);

	/* A .pub file: the public key only. */
	snprintf(path, sizeof(path), "%s/a.pub", dir);
	snprintf(text, sizeof(text), "public-key = %s\n", gpub);
	tu_write_file(path, text);
	assert_int_equal(cutmixd_load_keypair(path, pub, NULL, err, sizeof(err)), 0);
	assert_string_equal(pub, gpub);
	assert_int_equal(cutmixd_load_keypair(path, pub, sec, err, sizeof(err)), -ENODATA);
	assert_non_null(strstr(err, "no 'secret-key"));

	/* Mismatched pair, bad key, garbage, missing file. */
	snprintf(path, sizeof(path), "%s/bad.key", dir);
	snprintf(text, sizeof(text), "public-key = %s\nsecret-key = %s\n", gpub, osec);
	tu_write_file(path, text);
	assert_int_equal(cutmixd_load_keypair(path, pub, sec, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "does not belong"));
	snprintf(text, sizeof(text), "# x\npublic-key = %.39s\n", gpub);
	tu_write_file(path, text);
	assert_int_equal(cutmixd_load_keypair(path, pub, NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "bad.key:2: public-key: must be 40 Z85 characters"));
	tu_write_file(path, "hello world\n");
	assert_int_equal(cutmixd_load_keypair(path, pub, NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "bad.key:1:"));
	snprintf(text, sizeof(text), "public-key = %s\npublic-key = %s\n", gpub, opub);
	tu_write_file(path, text);
	assert_int_equal(cutmixd_load_keypair(path, pub, NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "given twice"));
	unlink(path);
	assert_int_equal(cutmixd_load_keypair(path, pub, NULL, err, sizeof(err)), -ENOENT);

	snprintf(path, sizeof(path), "%s/a.key", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/z.key", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/a.pub", dir);
	unlink(path);
	assert_int_equal(rmdir(dir), 0);
}

/* dns+tcp://localhost:PORT: every address of "localhost" (from
 * /etc/hosts: 127.0.0.1, perhaps ::1) is a peer; the fake on 127.0.0.1
 * serves the epoch. Bad dns+tcp:// endpoints are refused by new(). */
static void test_dns_endpoint(void **state)
{
	struct fake_cfg cfg = default_cfg();
	struct cutmixd_peer_stats st;
	char ep[300], want[300];
	const char *port;
	struct fake f;
	cutmixd_client_t *c;
	bool found = false;
	uint32_t n;

	(void)state;
	fake_start(&f, &cfg, true);
	port = strrchr(f.endpoint, ':') + 1;
	snprintf(ep, sizeof(ep), "dns+tcp://localhost:%s", port);
	snprintf(want, sizeof(want), "tcp://127.0.0.1:%s", port);
	c = cutmixd_client_new(ep, "train", 1, 2, 0);
	assert_non_null(c);
	assert_int_equal(cutmixd_client_peer_count(c), 0); /* resolved on connect */
	assert_int_equal(cutmixd_client_set_timeout(c, 5000), 0);
	assert_int_equal(cutmixd_client_set_discovery_interval(c, 50), 0);
	assert_int_equal(cutmixd_client_set_discovery_interval(c, 0), -EINVAL);
	assert_int_equal(cutmixd_client_epoch_begin(c, 3, 0), 0);
	assert_int_equal(drain_epoch(c, &cfg, 3, 0, &n), 0);
	assert_int_equal(n, 10);
	assert_true(cutmixd_client_peer_count(c) >= 1);
	for (int i = 0; i < cutmixd_client_peer_count(c); i++) {
		assert_int_equal(cutmixd_client_peer_stats(c, (unsigned)i, &st), 0);
		if (strcmp(st.endpoint, want) == 0) {
			found = true;
			assert_true(st.batches >= 1);
			assert_int_equal(st.state, CUTMIXD_PEER_UP);
		}
	}
	assert_true(found);
	cutmixd_client_destroy(&c);
	fake_stop(&f);

	for (const char *bad = "dns+tcp://host dns+tcp://host: dns+tcp://:5555 "
			       "dns+tcp://host:0 dns+tcp://host:65536 dns+tcp://host:5x "
			       "dns+tcp://[::1]:5555";
	     *bad;) {
		const char *sp = strchr(bad, ' ');
		size_t len = sp ? (size_t)(sp - bad) : strlen(bad);

		snprintf(ep, sizeof(ep), "%.*s", (int)len, bad);
		errno = 0;
		assert_null(cutmixd_client_new(ep, "train", 0, 1, 0));
		assert_int_equal(errno, EINVAL);
		bad += len + (sp ? 1 : 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_rejects_bad_arguments),
		cmocka_unit_test(test_info_and_stats),
		cmocka_unit_test(test_info_json_parsing),
		cmocka_unit_test(test_get_batch),
		cmocka_unit_test(test_frames_as_received),
		cmocka_unit_test(test_epoch_in_order),
		cmocka_unit_test(test_epoch_reorder_buffer),
		cmocka_unit_test(test_epoch_float_nchw),
		cmocka_unit_test(test_get_batch_during_epoch),
		cmocka_unit_test(test_error_reply),
		cmocka_unit_test(test_epoch_error_and_resume),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_epoch_timeout),
		cmocka_unit_test(test_stale_error_replies_ignored),
		cmocka_unit_test(test_busy_is_retried),
		cmocka_unit_test(test_protocol_violations),
		cmocka_unit_test(test_stale_replies_and_delimiter),
		cmocka_unit_test(test_abandoned_iteration),
		cmocka_unit_test(test_digest_change_refused),
		cmocka_unit_test(test_two_daemons),
		cmocka_unit_test(test_tcp),
		cmocka_unit_test(test_peer_api_and_setters),
		cmocka_unit_test(test_resend_to_other_daemon),
		cmocka_unit_test(test_silent_daemon_used_again),
		cmocka_unit_test(test_restarted_daemon),
		cmocka_unit_test(test_no_daemon_answers),
		cmocka_unit_test(test_curve),
		cmocka_unit_test(test_load_keypair),
		cmocka_unit_test(test_dns_endpoint),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
