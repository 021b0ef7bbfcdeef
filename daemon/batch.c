/*
 * batch.c — the work of one batch: per sample (on any worker) sample.c's
 * sample_run; per batch (on the worker that finishes last) mix, label,
 * convert, encode.
 *
 * DESIGN
 * - Sample i writes only slot i of `pixels` and meta[i]; no two workers
 *   touch the same bytes, and slots are whole images (>= 64 bytes apart
 *   in practice) so there is no false sharing worth the name.
 * - The pool's acq_rel countdown orders every sample's writes before
 *   batch_finish reads them.
 * - `failed` is the only field written by several workers: the first
 *   compare-exchange from 0 to 1 owns `status` and `error`.
 * - The indices are filled by the first item that runs (fill_indices), under
 *   the batch's idx_lock: the sampler may have to shuffle a whole epoch, and
 *   that must not happen on the server thread. The other items of the batch
 *   wait on idx_lock, then read idx_ready (acquire) to see the indices; a
 *   sampler failure marks the batch failed and the items skip their work.
 * - Every random draw comes from a stream keyed on the batch coordinates
 *   (rng.h), so the bytes do not depend on which worker ran what.
 */
#include "batch.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "augment.h"
#include "bufpool.h"
#include "decode.h"
#include "log.h"
#include "resize.h"
#include "rng.h"
#include "sample.h"
#include "scratch.h"

void *batch_worker_new(void)
{
	struct worker_ctx *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	w->dec = decoder_new();
	w->rz = resizer_new();
	if (!w->dec || !w->rz) {
		batch_worker_free(w);
		return NULL;
	}
	return w;
}

void batch_worker_free(void *ctx)
{
	struct worker_ctx *w = ctx;

	if (!w)
		return;
	decoder_destroy(&w->dec);
	resizer_destroy(&w->rz);
	free(w->scratch);
	free(w->op_scratch);
	free(w->items);
	free(w->perm);
	free(w);
}

void batch_fail(batch_t *b, uint32_t status, const char *fmt, ...)
{
	int expected = 0;
	va_list ap;

	if (!atomic_compare_exchange_strong(&b->failed, &expected, 1))
		return;
	b->status = status;
	va_start(ap, fmt);
	vsnprintf(b->error, sizeof(b->error), fmt, ap);
	va_end(ap);
}

batch_t *batch_new(engine_t *eng, int pipeline, uint32_t epoch, uint32_t rank,
		   uint32_t world, uint32_t index, uint32_t *status,
		   char *msg, size_t msglen)
{
	const struct pipeline_rt *pl = engine_pipeline(eng, pipeline);
	const struct pipeline_cfg *p = pl->cfg;
	uint32_t K = dataset_num_classes(pl->ds);
	batch_t *b;
	int n;

	*status = WIRE_OK;
	/* the server checked the request; a reload may have changed it since */
	struct wire_request rq = { .type = WIRE_BATCH, .rank = rank, .world = world, .batch = index };
	*status = engine_check_request(eng, pipeline, &rq, msg, msglen);
	if (*status != WIRE_OK)
		return NULL;
	uint32_t nb = sampler_batches(pl->sampler, world);

	b = calloc(1, sizeof(*b));
	if (!b)
		goto out_nomem;
	if (pthread_mutex_init(&b->idx_lock, NULL) != 0) {
		free(b);
		b = NULL;
		goto out_nomem;
	}
	atomic_init(&b->idx_ready, 0);
	b->idx = calloc(p->batch_size, sizeof(*b->idx));
	b->pad = calloc(p->batch_size, 1);
	if (!b->idx || !b->pad)
		goto out_nomem;
	/* Only the count here: the indices are filled on a worker. */
	n = (int)sampler_batch_count(pl->sampler, world, rank, index);
	if (n <= 0) {
		batch_destroy(&b);
		*status = WIRE_E_BATCH_RANGE;
		snprintf(msg, msglen, "sampler: cannot make batch %u: no samples", index);
		return NULL;
	}

	b->n = (uint32_t)n;
	b->pl = pl;
	b->epoch = epoch;
	b->rank = rank;
	b->world = world;
	b->index = index;
	b->batches_per_epoch = nb;
	b->key = rng_key(engine_config(eng)->server.seed, p->name, rank, world);
	b->pixels = bufpool_get(b->n * pl->pixel_bytes);
	b->labels_bytes = (size_t)b->n * K * sizeof(float);
	b->labels = malloc(b->labels_bytes);
	b->meta = calloc(b->n, sizeof(*b->meta));
	b->meta_bytes = (size_t)b->n * WIRE_META_SIZE;
	b->meta_wire = malloc(b->meta_bytes);
	if (!b->pixels || !b->labels || !b->meta || !b->meta_wire)
		goto out_nomem;
	b->images = b->pixels;
	b->images_bytes = b->n * pl->pixel_bytes;
	if (p->dtype != DTYPE_UINT8 || p->layout != LAYOUT_NHWC) {
		b->images_bytes = b->n * pl->out_bytes;
		b->images = bufpool_get(b->images_bytes);
		if (!b->images)
			goto out_nomem;
	}
	atomic_init(&b->failed, 0);
	b->eng = engine_ref(eng);
	return b;

out_nomem:
	batch_destroy(&b);
	*status = WIRE_E_INTERNAL;
	snprintf(msg, msglen, "out of memory for a batch of %u", p->batch_size);
	return NULL;
}

void batch_destroy(batch_t **bp)
{
	batch_t *b = bp ? *bp : NULL;

	if (!b)
		return;
	if (b->images != b->pixels)
		bufpool_put(b->images);
	bufpool_put(b->pixels);
	free(b->labels);
	free(b->meta);
	free(b->meta_wire);
	free(b->idx);
	free(b->pad);
	pthread_mutex_destroy(&b->idx_lock);
	engine_unref(&b->eng);
	free(b);
	*bp = NULL;
}

void *batch_take_images(batch_t *b)
{
	void *p = b->images;

	if (b->images == b->pixels)
		b->pixels = NULL;
	b->images = NULL;
	return p;
}

void *batch_take_labels(batch_t *b)
{
	void *p = b->labels;

	b->labels = NULL;
	return p;
}

void *batch_take_meta(batch_t *b)
{
	void *p = b->meta_wire;

	b->meta_wire = NULL;
	return p;
}

/* uint8 NHWC pixels -> the pipeline's layout and dtype. */
static void convert_output(batch_t *b)
{
	const struct pipeline_cfg *p = b->pl->cfg;
	const size_t hw = (size_t)p->size * p->size;
	float lut[3][256];

	if (p->dtype == DTYPE_FLOAT32)
		for (int c = 0; c < 3; c++)
			for (int v = 0; v < 256; v++)
				lut[c][v] = (float)((v / 255.0 - p->mean[c]) / p->std[c]);

	for (uint32_t i = 0; i < b->n; i++) {
		const uint8_t *src = b->pixels + i * b->pl->pixel_bytes;
		if (p->dtype == DTYPE_FLOAT32) {
			float *dst = (float *)b->images + i * hw * 3;
			for (size_t k = 0; k < hw; k++)
				for (int c = 0; c < 3; c++) {
					float v = lut[c][src[k * 3 + c]];
					if (p->layout == LAYOUT_NCHW)
						dst[c * hw + k] = v;
					else
						dst[k * 3 + c] = v;
				}
		} else {
			uint8_t *dst = (uint8_t *)b->images + i * hw * 3;
			for (size_t k = 0; k < hw; k++)
				for (int c = 0; c < 3; c++)
					dst[c * hw + k] = src[k * 3 + c];
		}
	}
}

static void batch_finish(struct pool_task *t, void *ctx)
{
	batch_t *b = (batch_t *)t;
	struct worker_ctx *w = ctx;
	const struct pipeline_cfg *p = b->pl->cfg;
	const int out = (int)p->size;
	uint32_t K = dataset_num_classes(b->pl->ds);
	/* a version 1 record is the first 224 bytes of the current one */
	size_t rec_size = wire_meta_size(b->version ? b->version : WIRE_VERSION);
	uint8_t rec[WIRE_META_SIZE];

	if (atomic_load(&b->failed))
		goto out_complete;
	if (rec_size == 0) {
		batch_fail(b, WIRE_E_VERSION, "no metadata layout for protocol version %u",
			   b->version);
		goto out_complete;
	}

	if (w->items_cap < b->n) {
		struct mix_item *it = realloc(w->items, b->n * sizeof(*it));
		uint32_t *pm = it ? realloc(w->perm, b->n * sizeof(*pm)) : NULL;
		if (it)
			w->items = it;
		if (pm)
			w->perm = pm;
		if (!it || !pm) {
			batch_fail(b, WIRE_E_INTERNAL, "out of memory mixing a batch");
			goto out_complete;
		}
		w->items_cap = b->n;
	}
	augment_mix_plan(p, b->key, b->epoch, b->index, b->n, out, out, w->items, w->perm);

	size_t need = augment_mix_scratch_bytes(w->items, b->n, out, out);
	if (need > 0) {
		if (scratch_grow((void **)&w->scratch, &w->scratch_cap, need)) {
			batch_fail(b, WIRE_E_INTERNAL, "out of memory mixing a batch");
			goto out_complete;
		}
		augment_apply_mix(b->pixels, b->n, out, out, w->items, w->scratch);
	}

	/* Labels, using the class of whatever file filled each slot. */
	int32_t *y = (int32_t *)w->perm; /* perm is free again: reuse */
	for (uint32_t i = 0; i < b->n; i++)
		y[i] = b->meta[i].label;
	augment_labels(b->labels, b->n, K, p->label_smoothing, y, w->items);

	for (uint32_t i = 0; i < b->n; i++) {
		struct wire_meta *m = &b->meta[i];
		const struct mix_item *it = &w->items[i];
		if (it->op != WIRE_OP_NONE) {
			m->op = it->op;
			m->lam = it->lam;
			m->partner_pos = it->partner;
			m->partner = b->meta[it->partner].source;
			m->partner_label = b->meta[it->partner].label;
			memcpy(m->box, it->box, sizeof(m->box));
		}
		wire_encode_meta(m, rec);
		memcpy(b->meta_wire + (size_t)i * rec_size, rec, rec_size);
	}
	b->meta_bytes = (size_t)b->n * rec_size;

	if (b->images != b->pixels)
		convert_output(b);

out_complete:
	b->complete(b, b->complete_arg);
}

/* The batch's indices, once, by whichever item runs first (see DESIGN). */
static void fill_indices(batch_t *b)
{
	if (atomic_load_explicit(&b->idx_ready, memory_order_acquire))
		return;
	pthread_mutex_lock(&b->idx_lock);
	if (!atomic_load_explicit(&b->idx_ready, memory_order_relaxed)) {
		int n = sampler_batch(b->pl->sampler, b->epoch, b->rank, b->world,
				      b->index, b->idx, b->pad);
		if (n < 0)
			batch_fail(b, n == -ENOMEM ? WIRE_E_INTERNAL : WIRE_E_BATCH_RANGE,
				   "sampler: cannot make batch %u of epoch %u: %s",
				   b->index, b->epoch, strerror(-n));
		else if ((uint32_t)n != b->n)
			batch_fail(b, WIRE_E_INTERNAL,
				   "sampler: batch %u has %d samples, %u expected",
				   b->index, n, b->n);
		atomic_store_explicit(&b->idx_ready, 1, memory_order_release);
	}
	pthread_mutex_unlock(&b->idx_lock);
}

static void batch_item(struct pool_task *t, uint32_t pos, void *ctx)
{
	batch_t *b = (batch_t *)t;

	fill_indices(b);
	if (atomic_load_explicit(&b->failed, memory_order_relaxed))
		return;
	sample_run(t, pos, ctx);
}

void batch_submit(batch_t *b, pool_t *pool,
		  void (*complete)(batch_t *b, void *arg), void *arg)
{
	b->complete = complete;
	b->complete_arg = arg;
	b->task.run = batch_item;
	b->task.done = batch_finish;
	b->task.n = b->n;
	pool_submit(pool, &b->task);
}
