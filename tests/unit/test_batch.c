/*
 * test_batch.c — one batch from sampler indices to finished frames, on a
 * real engine (a dataset of JPEGs written at test time) and a real worker
 * pool: batch_new's argument checks (NULL, the WIRE_E_* status and a
 * message), batch_submit (the completion runs exactly once; the images,
 * labels and metadata frames have the sizes the pipeline implies; soft
 * labels sum to 1 and follow label smoothing and the recorded mix), the
 * same coordinates give the same bytes with 1 and 3 workers, bad files
 * (replaced, or the batch failed with WIRE_E_DECODE), the stop flag, and
 * batch_take_* / batch_destroy ownership.
 *
 * Each test runs in its own temporary folder (tu_enter_tmpdir). The
 * completion callback runs on a worker and only records; every assert is
 * on the main thread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <cmocka.h>

#include "batch.h"
#include "bufpool.h"
#include "config.h"
#include "engine_int.h" /* reads the engine's fields (refs, samplers, bad list) */
#include "jpeg_fixtures.h"
#include "log.h"
#include "pool.h"
#include "stats.h"
#include "test_util.h"
#include "wire.h"

/* ---- fixtures ------------------------------------------------------------ */

static int setup(void **state)
{
	(void)state;
	log_set_level(LOGL_ERR); /* bad-file warnings are expected here */
	return tu_enter_tmpdir("cutmixd-batch");
}

static int teardown(void **state)
{
	(void)state;
	log_set_level(LOGL_INFO);
	return tu_leave_tmpdir();
}

/* data/cC/imgNNN.jpg: `per_class` JPEGs (each a different pattern and
 * size) in each of `classes` folders. */
/* data/cC/imgNNN.jpg, every file a different pattern and size. */
static void make_dataset(int classes, int per_class)
{
	tu_jpeg_folders(classes, per_class, 40, 30, 100);
}

/* 3 classes x 4 files = 12 samples; train: 3 batches of 4 per epoch
 * (world 1), mixed per element with label smoothing; f32: float NCHW. */
#define PIPELINES \
	"[dataset]\nroot = data\n" \
	"[pipeline.train]\nsize = 16\nbatch_size = 4\nshuffle = true\n" \
	"flip = 0.5\nmixup_alpha = 0.4\ncutmix_alpha = 1.0\nmode = elem\n" \
	"prob = 1.0\nlabel_smoothing = 0.1\n" \
	"[pipeline.f32]\nsize = 8\nbatch_size = 5\ndtype = float32\nlayout = nchw\n" \
	"[pipeline.chw]\nsize = 8\nbatch_size = 5\nlayout = nchw\n"
#define CONFIG_TEXT "[server]\nworkers = 2\nseed = 7\n" PIPELINES

static engine_t *engine_ok(const char *text, struct stats *st)
{
	config_t *cfg = NULL;
	engine_t *e = NULL;
	char err[512] = "";

	tu_write_file("test.ini", text);
	int rc = config_load("test.ini", NULL, 0, &cfg, err, sizeof(err));
	if (rc)
		fprintf(stderr, "config_load: %s\n", err);
	assert_int_equal(rc, 0);
	rc = engine_new(&cfg, st, &e, err, sizeof(err));
	if (rc)
		fprintf(stderr, "engine_new: %s\n", err);
	assert_int_equal(rc, 0);
	assert_non_null(e);
	return e;
}

/* What the completion callback saw (written on a worker, read here). */
struct done_rec {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int calls;
	batch_t *last;
};

static void done_init(struct done_rec *d)
{
	pthread_mutex_init(&d->lock, NULL);
	pthread_cond_init(&d->cond, NULL);
	d->calls = 0;
	d->last = NULL;
}

static void done_fini(struct done_rec *d)
{
	pthread_cond_destroy(&d->cond);
	pthread_mutex_destroy(&d->lock);
}

static void on_complete(batch_t *b, void *arg)
{
	struct done_rec *d = arg;

	pthread_mutex_lock(&d->lock);
	d->calls++;
	d->last = b;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
}

/* Wait (at most 20 s) until `calls` completions were seen; returns the
 * count then. */
static int done_wait(struct done_rec *d, int calls)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 20;
	pthread_mutex_lock(&d->lock);
	while (d->calls < calls)
		if (pthread_cond_timedwait(&d->cond, &d->lock, &until) == ETIMEDOUT)
			break;
	int n = d->calls;
	pthread_mutex_unlock(&d->lock);
	return n;
}

static int done_wait_calls(struct done_rec *d)
{
	pthread_mutex_lock(&d->lock);
	int n = d->calls;
	pthread_mutex_unlock(&d->lock);
	return n;
}

static batch_t *new_ok(engine_t *e, const char *pipeline, uint32_t epoch,
		       uint32_t rank, uint32_t world, uint32_t index)
{
	uint32_t status = 12345;
	char msg[256] = "";
	int pi = engine_find_pipeline(e, pipeline);

	assert_true(pi >= 0);
	batch_t *b = batch_new(e, pi, epoch, rank, world, index, &status, msg, sizeof(msg));
	if (!b)
		fprintf(stderr, "batch_new: %s\n", msg);
	assert_non_null(b);
	assert_int_equal(status, WIRE_OK);
	return b;
}

/* Submit one batch and wait for it: its completion ran once, with it. */
static void run_one(batch_t *b, pool_t *pool)
{
	struct done_rec d;

	done_init(&d);
	batch_submit(b, pool, on_complete, &d);
	assert_int_equal(done_wait(&d, 1), 1);
	assert_ptr_equal(d.last, b);
	/* No second call comes a little later. */
	struct timespec ts = { 0, 20 * 1000 * 1000 };
	nanosleep(&ts, NULL);
	assert_int_equal(pool_depth(pool), 0);
	assert_int_equal(done_wait_calls(&d), 1);
	done_fini(&d);
}

static pool_t *pool_ok(uint32_t workers)
{
	pool_t *p = pool_new(workers, batch_worker_new, batch_worker_free);
	assert_non_null(p);
	assert_int_equal(pool_workers(p), workers);
	return p;
}

/* ---- batch_new ----------------------------------------------------------- */

static void test_new_bad_arguments(void **state)
{
	(void)state;
	struct stats st = { 0 };
	make_dataset(3, 4);
	engine_t *e = engine_ok(CONFIG_TEXT, &st);
	int pi = engine_find_pipeline(e, "train");
	uint32_t status;
	char msg[256];
	batch_t *b;

	/* rank >= world, world == 0 */
	status = 0;
	msg[0] = '\0';
	b = batch_new(e, pi, 0, 2, 2, 0, &status, msg, sizeof(msg));
	assert_null(b);
	assert_int_equal(status, WIRE_E_BAD_SHARD);
	assert_non_null(strstr(msg, "rank 2 is not below world 2"));
	status = 0;
	msg[0] = '\0';
	b = batch_new(e, pi, 0, 0, 0, 0, &status, msg, sizeof(msg));
	assert_null(b);
	assert_int_equal(status, WIRE_E_BAD_SHARD);
	assert_non_null(strstr(msg, "world 0"));

	/* 12 samples / 4 = 3 batches for world 1: index 3 is out of range;
	 * world 2 has 2 batches (6 samples per rank). */
	status = 0;
	msg[0] = '\0';
	b = batch_new(e, pi, 0, 0, 1, 3, &status, msg, sizeof(msg));
	assert_null(b);
	assert_int_equal(status, WIRE_E_BATCH_RANGE);
	assert_non_null(strstr(msg, "batch 3 out of range"));
	assert_non_null(strstr(msg, "'train'"));
	assert_non_null(strstr(msg, "3 batches per epoch"));
	status = 0;
	b = batch_new(e, pi, 0, 1, 2, 2, &status, msg, sizeof(msg));
	assert_null(b);
	assert_int_equal(status, WIRE_E_BATCH_RANGE);
	status = 0;
	b = batch_new(e, pi, 0, 0, 1, UINT32_MAX, &status, msg, sizeof(msg));
	assert_null(b);
	assert_int_equal(status, WIRE_E_BATCH_RANGE);

	/* A pipeline name the engine does not have is refused before
	 * batch_new (which takes an index): engine_find_pipeline < 0, and
	 * the server answers WIRE_E_NO_PIPELINE (test_server.c). */
	assert_true(engine_find_pipeline(e, "nope") < 0);

	/* The last valid index works, and a failed call left nothing
	 * behind (ASan's leak check). */
	b = batch_new(e, pi, 0, 0, 1, 2, &status, msg, sizeof(msg));
	assert_non_null(b);
	assert_int_equal(status, WIRE_OK);
	assert_int_equal(b->n, 4);
	assert_int_equal(b->batches_per_epoch, 3);
	assert_int_equal(atomic_load(&e->refs), 2); /* the batch's reference */
	batch_destroy(&b);
	assert_null(b);
	assert_int_equal(atomic_load(&e->refs), 1);
	engine_unref(&e);
}

/* ---- batch_submit: frames ------------------------------------------------ */

static void check_labels(const batch_t *b, uint32_t K, double smoothing,
			 const uint8_t *meta_wire, size_t rec)
{
	const float *L = b->labels;
	double off = smoothing / K, on = 1.0 - smoothing + off;
	int mixed = 0;

	for (uint32_t i = 0; i < b->n; i++) {
		const float *row = L + (size_t)i * K;
		struct wire_meta m;
		double sum = 0;

		assert_int_equal(wire_decode_meta_n(meta_wire + i * rec, rec, &m), 0);
		for (uint32_t k = 0; k < K; k++) {
			sum += row[k];
			assert_true(row[k] >= off - 1e-6);
		}
		assert_true(fabs(sum - 1.0) < 1e-6);
		assert_in_range(m.label, 0, (int32_t)K - 1);
		if (m.op == WIRE_OP_NONE || m.partner_label == m.label) {
			assert_true(fabs(row[m.label] - on) < 1e-6);
			for (uint32_t k = 0; k < K; k++)
				if ((int32_t)k != m.label)
					assert_true(fabs(row[k] - off) < 1e-6);
			continue;
		}
		mixed++;
		assert_true(m.lam >= 0.0 && m.lam <= 1.0);
		assert_in_range(m.partner_pos, 0, (int32_t)b->n - 1);
		assert_in_range(m.partner_label, 0, (int32_t)K - 1);
		assert_true(fabs(row[m.label] - (m.lam * on + (1 - m.lam) * off)) < 1e-6);
		assert_true(fabs(row[m.partner_label] - ((1 - m.lam) * on + m.lam * off)) < 1e-6);
	}
	(void)mixed;
}

static void test_submit_frames(void **state)
{
	(void)state;
	struct stats st = { 0 };
	make_dataset(3, 4);
	engine_t *e = engine_ok(CONFIG_TEXT, &st);
	pool_t *pool = pool_ok(2);
	const uint32_t K = 3;

	/* train: uint8 NHWC, 4 x 16 x 16 x 3; v2 metadata by default. */
	batch_t *b = new_ok(e, "train", 0, 0, 1, 1);
	assert_int_equal(b->n, 4);
	run_one(b, pool);
	assert_int_equal(atomic_load(&b->failed), 0);
	assert_int_equal(b->status, WIRE_OK);
	assert_int_equal(b->images_bytes, 4 * 16 * 16 * 3);
	assert_ptr_equal(b->images, b->pixels);
	assert_int_equal(b->labels_bytes, 4 * K * sizeof(float));
	assert_int_equal(b->meta_bytes, 4 * WIRE_META_SIZE_V2);
	check_labels(b, K, 0.1, b->meta_wire, WIRE_META_SIZE_V2);
	/* The batch holds the sampler's indices for its coordinates. */
	uint32_t want_idx[4];
	uint8_t want_pad[4];
	assert_int_equal(sampler_batch(e->pipelines[0].sampler, 0, 0, 1, 1, want_idx, want_pad), 4);
	assert_memory_equal(b->idx, want_idx, sizeof(want_idx));
	/* Every record names the sampler's index and a real source file. */
	int mixed = 0;
	for (uint32_t i = 0; i < b->n; i++) {
		struct wire_meta m;
		wire_decode_meta(b->meta_wire + i * WIRE_META_SIZE_V2, &m);
		assert_int_equal(m.index, b->idx[i]);
		assert_int_equal(m.source, m.index);
		assert_int_equal(m.status, WIRE_SAMPLE_OK);
		assert_int_equal(m.label, (int32_t)dataset_label(e->pipelines[0].ds, b->idx[i]));
		assert_int_equal(m.src_w, 40 + 4 * (int)(b->idx[i] % 4));
		if (m.op != WIRE_OP_NONE)
			mixed++;
	}
	assert_true(mixed > 0); /* prob = 1: every element mixes */
	batch_destroy(&b);

	/* Protocol v1 records are 224 bytes. */
	b = new_ok(e, "train", 0, 0, 1, 0);
	b->version = 1;
	run_one(b, pool);
	assert_int_equal(b->status, WIRE_OK);
	assert_int_equal(b->meta_bytes, 4 * WIRE_META_SIZE_V1);
	batch_destroy(&b);

	/* float32 NCHW, 5 x 3 x 8 x 8 x 4 bytes; no smoothing, no mixing:
	 * one-hot labels. 12 samples / 5 = 3 batches, the last one short
	 * (drop_last off) or padded: its size is what the sampler gave. */
	b = new_ok(e, "f32", 0, 0, 1, 0);
	run_one(b, pool);
	assert_int_equal(b->status, WIRE_OK);
	assert_int_equal(b->n, 5);
	assert_int_equal(b->images_bytes, 5 * 3 * 8 * 8 * sizeof(float));
	assert_ptr_not_equal(b->images, b->pixels);
	assert_int_equal(b->labels_bytes, 5 * K * sizeof(float));
	check_labels(b, K, 0.0, b->meta_wire, WIRE_META_SIZE_V2);
	/* NCHW float = (u8/255 - mean) / std of the uint8 pixels. */
	const struct pipeline_cfg *pc = b->pl->cfg;
	const float *f = b->images;
	for (uint32_t i = 0; i < b->n; i++)
		for (int c = 0; c < 3; c++)
			for (int k = 0; k < 64; k += 7) {
				uint8_t u = b->pixels[i * 192 + k * 3 + c];
				double want = (u / 255.0 - pc->mean[c]) / pc->std[c];
				assert_true(fabs(f[(i * 3 + c) * 64 + k] - want) < 1e-5);
			}
	batch_destroy(&b);

	/* uint8 NCHW: a separate buffer of the same size, planes. */
	b = new_ok(e, "chw", 0, 0, 1, 2);
	run_one(b, pool);
	assert_int_equal(b->status, WIRE_OK);
	assert_int_equal(b->images_bytes, (size_t)b->n * 3 * 8 * 8);
	assert_ptr_not_equal(b->images, b->pixels);
	const uint8_t *u8 = b->images;
	for (uint32_t i = 0; i < b->n; i++)
		for (int c = 0; c < 3; c++)
			for (int k = 0; k < 64; k++)
				assert_int_equal(u8[(i * 3 + c) * 64 + k], b->pixels[i * 192 + k * 3 + c]);
	batch_destroy(&b);

	pool_destroy(&pool);
	engine_unref(&e);
}

/* ---- determinism --------------------------------------------------------- */

struct frames {
	uint8_t *img, *lab, *meta;
	size_t ni, nl, nm;
};

static void copy_frames(const batch_t *b, struct frames *f)
{
	f->ni = b->images_bytes;
	f->nl = b->labels_bytes;
	f->nm = b->meta_bytes;
	f->img = malloc(f->ni);
	f->lab = malloc(f->nl);
	f->meta = malloc(f->nm);
	assert_non_null(f->img);
	assert_non_null(f->lab);
	assert_non_null(f->meta);
	memcpy(f->img, b->images, f->ni);
	memcpy(f->lab, b->labels, f->nl);
	memcpy(f->meta, b->meta_wire, f->nm);
}

static void free_frames(struct frames *f)
{
	free(f->img);
	free(f->lab);
	free(f->meta);
}

static bool frames_equal(const struct frames *a, const struct frames *b)
{
	return a->ni == b->ni && a->nl == b->nl && a->nm == b->nm &&
	       memcmp(a->img, b->img, a->ni) == 0 && memcmp(a->lab, b->lab, a->nl) == 0 &&
	       memcmp(a->meta, b->meta, a->nm) == 0;
}

static void frames_of(engine_t *e, pool_t *pool, const char *pl, uint32_t epoch,
		      uint32_t rank, uint32_t world, uint32_t index, struct frames *f)
{
	batch_t *b = new_ok(e, pl, epoch, rank, world, index);
	run_one(b, pool);
	assert_int_equal(b->status, WIRE_OK);
	copy_frames(b, f);
	batch_destroy(&b);
}

static void test_same_bytes_any_workers(void **state)
{
	(void)state;
	struct stats st = { 0 };
	make_dataset(3, 4);
	engine_t *e = engine_ok(CONFIG_TEXT, &st);
	pool_t *p1 = pool_ok(1), *p3 = pool_ok(3);
	static const uint32_t coords[][4] = { /* epoch, rank, world, index */
		{ 0, 0, 1, 0 }, { 0, 0, 1, 2 }, { 5, 1, 2, 1 }, { 1, 0, 3, 0 },
	};

	for (size_t c = 0; c < sizeof(coords) / sizeof(coords[0]); c++) {
		struct frames a, b, again;
		frames_of(e, p1, "train", coords[c][0], coords[c][1], coords[c][2], coords[c][3], &a);
		frames_of(e, p3, "train", coords[c][0], coords[c][1], coords[c][2], coords[c][3], &b);
		frames_of(e, p3, "train", coords[c][0], coords[c][1], coords[c][2], coords[c][3], &again);
		assert_true(frames_equal(&a, &b));
		assert_true(frames_equal(&a, &again));
		free_frames(&a);
		free_frames(&b);
		free_frames(&again);
	}

	/* The coordinates matter: another epoch gives other bytes (the
	 * comparison above can fail). */
	struct frames x, y;
	frames_of(e, p3, "train", 0, 0, 1, 0, &x);
	frames_of(e, p3, "train", 1, 0, 1, 0, &y);
	assert_false(frames_equal(&x, &y));
	free_frames(&x);
	free_frames(&y);

	/* Several batches in the pool at once (interleaved samples) give the
	 * same bytes as one at a time. */
	struct frames want[3];
	for (uint32_t i = 0; i < 3; i++)
		frames_of(e, p1, "train", 2, 0, 1, i, &want[i]);
	struct done_rec d;
	done_init(&d);
	batch_t *bs[3];
	for (uint32_t i = 0; i < 3; i++)
		bs[i] = new_ok(e, "train", 2, 0, 1, i);
	for (uint32_t i = 0; i < 3; i++)
		batch_submit(bs[i], p3, on_complete, &d);
	assert_int_equal(done_wait(&d, 3), 3);
	pool_destroy(&p3); /* every task done, workers joined */
	assert_int_equal(d.calls, 3);
	for (uint32_t i = 0; i < 3; i++) {
		struct frames got;
		assert_int_equal(bs[i]->status, WIRE_OK);
		copy_frames(bs[i], &got);
		assert_true(frames_equal(&want[i], &got));
		free_frames(&got);
		free_frames(&want[i]);
		batch_destroy(&bs[i]);
	}
	done_fini(&d);

	pool_destroy(&p1);
	engine_unref(&e);
}

/* ---- bad files ----------------------------------------------------------- */

/* The batch (epoch 0, world 1) of `pl` that holds dataset index `want`,
 * already run on `pool`, and its position in it. (The indices are filled
 * on a worker, so each batch is run to see them.) */
static batch_t *batch_holding(engine_t *e, pool_t *pool, const char *pl, uint32_t want,
			      uint32_t *pos)
{
	int pi = engine_find_pipeline(e, pl);
	uint32_t nb = sampler_batches(e->pipelines[pi].sampler, 1);

	for (uint32_t i = 0; i < nb; i++) {
		batch_t *b = new_ok(e, pl, 0, 0, 1, i);
		run_one(b, pool);
		for (uint32_t k = 0; k < b->n; k++)
			if (b->idx[k] == want) {
				*pos = k;
				return b;
			}
		batch_destroy(&b);
	}
	fail_msg("index %u is in no batch of epoch 0", want);
	return NULL;
}

static uint32_t index_of(engine_t *e, const char *path)
{
	dataset_t *ds = e->datasets[0];

	for (uint32_t i = 0; i < dataset_size(ds); i++)
		if (strcmp(dataset_path(ds, i), path) == 0)
			return i;
	fail_msg("'%s' is not in the dataset", path);
	return 0;
}

static void test_bad_file_replaced(void **state)
{
	(void)state;
	struct stats st = { 0 };
	make_dataset(3, 4);
	tu_write_file("data/c1/broken.jpg", "this is not a JPEG file at all");
	engine_t *e = engine_ok(CONFIG_TEXT, &st);
	pool_t *pool = pool_ok(2);
	uint32_t bad = index_of(e, "c1/broken.jpg"), pos;

	batch_t *b = batch_holding(e, pool, "train", bad, &pos);
	assert_int_equal(b->status, WIRE_OK);
	assert_int_equal(atomic_load(&b->failed), 0);
	for (uint32_t i = 0; i < b->n; i++) {
		struct wire_meta m;
		wire_decode_meta(b->meta_wire + i * WIRE_META_SIZE, &m);
		if (i == pos) {
			assert_int_equal(m.status, WIRE_SAMPLE_REPLACED);
			assert_int_equal(m.index, bad);
			assert_int_not_equal(m.source, bad);
			assert_int_equal(m.label, (int32_t)dataset_label(e->datasets[0], (uint32_t)m.source));
		} else {
			assert_int_equal(m.status, WIRE_SAMPLE_OK);
		}
	}
	check_labels(b, 3, 0.1, b->meta_wire, WIRE_META_SIZE);
	assert_true(stats_get(&st, decode_errors) >= 1);
	assert_true(stats_get(&st, replaced) >= 1);
	assert_int_equal(atomic_load(&e->bad[0][bad]), 1);
	assert_int_equal(e->n_bad_list, 1);
	assert_int_equal(e->bad_list[0].index, bad);

	/* The replacement is deterministic: same bytes again. */
	struct frames a, c;
	copy_frames(b, &a);
	batch_destroy(&b);
	b = batch_holding(e, pool, "train", bad, &pos);
	assert_int_equal(b->status, WIRE_OK);
	copy_frames(b, &c);
	assert_true(frames_equal(&a, &c));
	free_frames(&a);
	free_frames(&c);
	batch_destroy(&b);

	pool_destroy(&pool);
	engine_unref(&e);
}

static void test_bad_file_fails(void **state)
{
	(void)state;
	struct stats st = { 0 };
	make_dataset(3, 4);
	tu_write_file("data/c2/broken.jpg", "this is not a JPEG file at all");
	engine_t *e = engine_ok("[server]\nworkers = 2\non_decode_error = fail\n" PIPELINES, &st);
	pool_t *pool = pool_ok(3);
	uint32_t bad = index_of(e, "c2/broken.jpg"), pos;

	batch_t *b = batch_holding(e, pool, "train", bad, &pos);
	assert_int_equal(atomic_load(&b->failed), 1);
	assert_int_equal(b->status, WIRE_E_DECODE);
	assert_non_null(strstr(b->error, "decode failed"));
	assert_non_null(strstr(b->error, "'c2/broken.jpg'"));
	assert_true(stats_get(&st, decode_errors) >= 1);
	assert_int_equal(stats_get(&st, replaced), 0);
	batch_destroy(&b);

	/* The other batches of the epoch still work. */
	for (uint32_t i = 0; i < 3; i++) {
		b = new_ok(e, "train", 0, 0, 1, i);
		run_one(b, pool);
		bool has = false; /* the indices are there once it ran */
		for (uint32_t k = 0; k < b->n; k++)
			has |= b->idx[k] == bad;
		assert_int_equal(b->status, has ? WIRE_E_DECODE : WIRE_OK);
		batch_destroy(&b);
	}
	pool_destroy(&pool);
	engine_unref(&e);
}

/* Several samples of one batch fail at once on several workers: the
 * first failure's status and message win, the completion runs once. */
static void test_many_failures_complete_once(void **state)
{
	(void)state;
	struct stats st = { 0 };
	make_dataset(3, 4);
	for (int c = 0; c < 3; c++) {
		char p[64];
		snprintf(p, sizeof(p), "data/c%d/broken%d.jpg", c, c);
		tu_write_file(p, "not a JPEG");
	}
	engine_t *e = engine_ok("[server]\non_decode_error = fail\n"
				"[dataset]\nroot = data\n"
				"[pipeline.all]\nsize = 8\nbatch_size = 15\n", &st);
	pool_t *pool = pool_ok(3);
	struct done_rec d;

	done_init(&d);
	batch_t *b = new_ok(e, "all", 0, 0, 1, 0);
	assert_int_equal(b->n, 15);
	batch_submit(b, pool, on_complete, &d);
	assert_int_equal(done_wait(&d, 1), 1);
	pool_destroy(&pool); /* every worker joined: no late second call */
	assert_int_equal(d.calls, 1);
	assert_int_equal(b->status, WIRE_E_DECODE);
	assert_non_null(strstr(b->error, "decode failed: 'c"));
	assert_non_null(strstr(b->error, "/broken"));
	done_fini(&d);
	batch_destroy(&b);
	engine_unref(&e);
}

/* The server's stop flag: set before the batch runs, it fails with
 * SHUTTING_DOWN and the completion still runs once. */
static void test_stop_flag(void **state)
{
	(void)state;
	struct stats st = { 0 };
	make_dataset(3, 4);
	engine_t *e = engine_ok(CONFIG_TEXT, &st);
	pool_t *pool = pool_ok(2);
	atomic_bool stop;

	atomic_init(&stop, true);
	batch_t *b = new_ok(e, "train", 0, 0, 1, 0);
	b->stop = &stop;
	run_one(b, pool);
	assert_int_equal(b->status, WIRE_E_SHUTTING_DOWN);
	assert_non_null(strstr(b->error, "stopping"));
	batch_destroy(&b);

	atomic_store(&stop, false);
	b = new_ok(e, "train", 0, 0, 1, 0);
	b->stop = &stop;
	run_one(b, pool);
	assert_int_equal(b->status, WIRE_OK);
	batch_destroy(&b);
	pool_destroy(&pool);
	engine_unref(&e);
}

/* ---- ownership ----------------------------------------------------------- */

static void test_take_and_destroy(void **state)
{
	(void)state;
	struct stats st = { 0 };
	make_dataset(3, 4);
	engine_t *e = engine_ok(CONFIG_TEXT, &st);
	pool_t *pool = pool_ok(2);

	batch_destroy(NULL);
	batch_t *none = NULL;
	batch_destroy(&none);
	assert_null(none);

	/* uint8 NHWC: the images frame is the pixel buffer. */
	batch_t *b = new_ok(e, "train", 0, 0, 1, 0);
	run_one(b, pool);
	void *img = b->images, *lab = b->labels, *meta = b->meta_wire;
	size_t ni = b->images_bytes;
	assert_ptr_equal(batch_take_images(b), img);
	assert_null(b->images);
	assert_null(b->pixels);
	assert_ptr_equal(batch_take_labels(b), lab);
	assert_null(b->labels);
	assert_ptr_equal(batch_take_meta(b), meta);
	assert_null(b->meta_wire);
	batch_destroy(&b); /* frees only what it still owns */
	assert_null(b);
	/* The taken buffers are intact and ours (ASan: no use after free). */
	memset(img, 0xab, ni);
	bufpool_put(img);
	free(lab);
	free(meta);

	/* float: the output buffer goes, the uint8 pixels stay the batch's. */
	b = new_ok(e, "f32", 0, 0, 1, 1);
	run_one(b, pool);
	img = b->images;
	uint8_t *px = b->pixels;
	assert_ptr_equal(batch_take_images(b), img);
	assert_null(b->images);
	assert_ptr_equal(b->pixels, px);
	batch_destroy(&b);
	bufpool_put(img);

	/* Destroyed without running (a request cancelled before submit). */
	b = new_ok(e, "train", 0, 0, 1, 1);
	batch_destroy(&b);
	assert_null(b);
	assert_int_equal(atomic_load(&e->refs), 1);

	pool_destroy(&pool);
	engine_unref(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_new_bad_arguments, setup, teardown),
		cmocka_unit_test_setup_teardown(test_submit_frames, setup, teardown),
		cmocka_unit_test_setup_teardown(test_same_bytes_any_workers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_file_replaced, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_file_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_failures_complete_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_flag, setup, teardown),
		cmocka_unit_test_setup_teardown(test_take_and_destroy, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
