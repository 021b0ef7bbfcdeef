/*
 * sample.c — the per-image work of a batch, in data-flow order: read the
 * file, decode only the crop region, resize into the batch slot, flip,
 * the recipe ops (auto_augment, color_jitter), Cutout, RandomErasing; a
 * file that fails is replaced (or fails the batch).
 *
 * DESIGN
 * - sample_run(pos) writes only slot `pos` of the batch's pixels and
 *   meta[pos]; any worker may run any position, in any order.
 * - Every random draw comes from streams keyed on the batch coordinates
 *   and the position (rng.h), never from the worker or its context.
 * - struct worker_ctx is one worker's private scratch (decoder, resizer,
 *   mix buffers); only that worker touches it.
 */
#include "sample.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "augment.h"
#include "decode.h"
#include "log.h"
#include "resize.h"
#include "policy.h"
#include "rng.h"
#include "scratch.h"
#include "source.h"

/* How many different files a sample tries before its batch fails. */
#define MAX_REPLACE_TRIES 16

/* Filter support in source pixels at scale 1 (resize.c's filters). */
static double filter_support(int interpolation)
{
	return interpolation == RESIZE_BICUBIC ? 2.0 : 1.0;
}

/* The crop of a W x H image, from `r` (random-resized) or the center;
 * recorded in m. */
static void choose_crop(const struct pipeline_cfg *p, rng_t *r, int W, int H,
			struct crop_box *box, struct wire_meta *m)
{
	if (p->crop == CROP_RANDOM_RESIZED)
		augment_rrc(r, W, H, p->scale, p->ratio, box);
	else
		augment_center(W, H, p->resize, p->size, box);
	m->crop[0] = (float)box->x0;
	m->crop[1] = (float)box->y0;
	m->crop[2] = (float)box->x1;
	m->crop[3] = (float)box->y1;
	m->src_w = W;
	m->src_h = H;
}

/* What to decode for a crop: the DCT scale, the crop in scaled pixels
 * (s*) and the decoded region (r*), which may be larger than the crop. */
struct region {
	int denom;
	double sx0, sy0, sx1, sy1;
	int rx0, ry0, rx1, ry1;
};

/* Returns 0, or -EINVAL when the region is empty (w->why set). */
static int plan_region(struct worker_ctx *w, const struct pipeline_cfg *p,
		       const struct crop_box *box, int interp, struct region *g)
{
	const int out = (int)p->size;
	int sw, sh;

	/* DCT-domain downscaling by 1/2, 1/4 or 1/8 (the SIMD factors) when
	 * the crop stays at least the output size after it: the final
	 * resample then still only shrinks. */
	int denom = 1;
	if (p->dct_scale) {
		for (int dd = 8; dd >= 2; dd /= 2) {
			if ((box->x1 - box->x0) / dd >= out && (box->y1 - box->y0) / dd >= out) {
				denom = dd;
				break;
			}
		}
	}
	decoder_scaled_size(w->dec, denom, &sw, &sh);
	g->denom = denom;
	g->sx0 = box->x0 / denom;
	g->sy0 = box->y0 / denom;
	g->sx1 = fmin(box->x1 / denom, sw);
	g->sy1 = fmin(box->y1 / denom, sh);

	/* Decode only the region the resample reads. A center crop is a
	 * resize of the whole image followed by a crop, so its filter taps
	 * may reach past the box: keep a margin. A random-resized crop is a
	 * crop followed by a resize: taps stop at the box, as in torchvision. */
	double margin = 0;
	if (p->crop == CROP_CENTER) {
		double scale = fmax((g->sx1 - g->sx0) / out, (g->sy1 - g->sy0) / out);
		margin = ceil(filter_support(interp) * fmax(scale, 1.0)) + 1;
	}
	g->rx0 = (int)fmax(floor(g->sx0 - margin), 0);
	g->ry0 = (int)fmax(floor(g->sy0 - margin), 0);
	g->rx1 = (int)fmin(ceil(g->sx1 + margin), sw);
	g->ry1 = (int)fmin(ceil(g->sy1 + margin), sh);
	if (g->rx1 <= g->rx0 || g->ry1 <= g->ry0) {
		snprintf(w->why, sizeof(w->why), "empty crop region");
		return -EINVAL;
	}
	return 0;
}

/* Resample decoded region d (of a W x H image) into the out x out slot,
 * mirrored when `flip`. Returns 0, or -errno with w->why set. */
static int resample(struct worker_ctx *w, const struct pipeline_cfg *p,
		    const struct decoded *d, const struct region *g, int W, int H,
		    int interp, bool flip, uint8_t *slot)
{
	const int out = (int)p->size;
	int rc;

	if (p->crop == CROP_CENTER && g->denom == 1) {
		/* the coefficients of torchvision's whole Resize, then the
		 * crop: byte-identical to its PIL path (resize.h) */
		struct center_geom cg;
		augment_center_geom(W, H, p->resize, p->size, &cg);
		rc = resize_rgb_crop(w->rz, (enum resize_filter)interp,
				     d->rgb, g->rx0, g->ry0, d->width, d->height, d->stride, W, H,
				     cg.new_w, cg.new_h, cg.left, cg.top, slot, out, out,
				     (size_t)out * 3);
		if (rc == 0 && flip)
			augment_flip(slot, out, out, (size_t)out * 3);
	} else {
		/* RESIZE_FLIP: the mirror folded into the horizontal pass */
		rc = resize_rgb_ex(w->rz, (enum resize_filter)interp,
				   flip ? RESIZE_FLIP : 0, d->rgb, d->width, d->height,
				   d->stride, g->sx0 - g->rx0, g->sy0 - g->ry0,
				   g->sx1 - g->rx0, g->sy1 - g->ry0, slot, out, out,
				   (size_t)out * 3);
	}
	if (rc) {
		snprintf(w->why, sizeof(w->why), "resize failed: %s", strerror(-rc));
		return rc;
	}
	return 0;
}

/* The same resample set up to take its source rows as they are decoded
 * (resize.h): 0, -EAGAIN when it cannot stream, or -errno. */
static int resample_begin(struct worker_ctx *w, const struct pipeline_cfg *p,
			  const struct region *g, int W, int H, int interp, bool flip)
{
	const int out = (int)p->size;
	const int rw = g->rx1 - g->rx0, rh = g->ry1 - g->ry0;

	if (p->crop == CROP_CENTER && g->denom == 1) {
		struct center_geom cg;
		augment_center_geom(W, H, p->resize, p->size, &cg);
		return resize_stream_begin_crop(w->rz, (enum resize_filter)interp,
						g->rx0, g->ry0, rw, rh, W, H, cg.new_w,
						cg.new_h, cg.left, cg.top, out, out);
	}
	return resize_stream_begin_ex(w->rz, (enum resize_filter)interp,
				      flip ? RESIZE_FLIP : 0, rw, rh, g->sx0 - g->rx0,
				      g->sy0 - g->ry0, g->sx1 - g->rx0, g->sy1 - g->ry0,
				      out, out);
}

/* decode.h's sink: each group of decoded rows into the horizontal pass. */
static void feed_resizer(void *ctx, const uint8_t *rows, size_t stride, int row0,
			 int nrows)
{
	resize_stream_rows(ctx, rows, stride, row0, nrows);
}

/*
 * Decode region g and resample it into the slot. Where the resample has
 * both passes the decoder hands its rows straight to the horizontal pass
 * (no buffer of the whole region: it was MBs, now 16 rows); otherwise
 * (a crop, one pass) the region is decoded whole as before. The bytes are
 * the same either way. 0, or -errno with w->why set.
 */
static int decode_resample(struct worker_ctx *w, const struct pipeline_cfg *p,
			   const struct region *g, int W, int H, int interp,
			   bool flip, uint8_t *slot)
{
	const int out = (int)p->size;
	struct decoded d;
	int rc;

	rc = resample_begin(w, p, g, W, H, interp, flip);
	if (rc == 0) {
		rc = decoder_read_stream(w->dec, g->denom, g->rx0, g->ry0, g->rx1,
					 g->ry1, feed_resizer, w->rz);
		if (rc) {
			snprintf(w->why, sizeof(w->why), "%s", decoder_error(w->dec));
			return rc;
		}
		rc = resize_stream_end(w->rz, slot, (size_t)out * 3);
		if (rc == 0 && flip && p->crop == CROP_CENTER && g->denom == 1)
			augment_flip(slot, out, out, (size_t)out * 3);
		if (rc)
			snprintf(w->why, sizeof(w->why), "resize failed: %s", strerror(-rc));
		return rc;
	}
	if (rc != -EAGAIN) {
		snprintf(w->why, sizeof(w->why), "resize failed: %s", strerror(-rc));
		return rc;
	}
	rc = decoder_read(w->dec, g->denom, g->rx0, g->ry0, g->rx1, g->ry1, &d);
	if (rc) {
		snprintf(w->why, sizeof(w->why), "%s", decoder_error(w->dec));
		return rc;
	}
	return resample(w, p, &d, g, W, H, interp, flip, slot);
}

/*
 * Read, decode and resample dataset file `source` into `slot`, choosing the
 * crop from `r`. Returns 0, or -errno with w->why set.
 */
static int load_sample(struct worker_ctx *w, batch_t *b, uint32_t source,
		       rng_t *r, uint8_t *slot, struct wire_meta *m)
{
	const struct pipeline_cfg *p = b->pl->cfg;
	const struct server_cfg *sv = &engine_config(b->eng)->server;
	struct decode_limits lim = { sv->max_pixels, sv->max_file_bytes,
				     sv->max_scan_blocks };
	const uint8_t *data;
	struct crop_box box;
	struct region g;
	size_t len;
	int W, H, rc;

	/* a file (opened beneath the root: source.c), a tar member or a
	 * pack entry, into the decoder's input buffer */
	rc = source_read(b->pl->ds, source, w->dec, &lim, &data, &len, w->why,
			 sizeof(w->why));
	if (rc)
		return rc;
	rc = decoder_open(w->dec, data, len, &lim, &W, &H);
	if (rc) {
		snprintf(w->why, sizeof(w->why), "%s", decoder_error(w->dec));
		return rc;
	}
	choose_crop(p, r, W, H, &box, m);
	/* The flip draw follows the crop's draws (the stream order is
	 * unchanged); drawn here so the resize can fold it in. */
	m->flip = rng_uniform(r) < p->flip;
	rc = plan_region(w, p, &box, m->resize_interp, &g);
	if (rc)
		return rc;
	return decode_resample(w, p, &g, W, H, m->resize_interp, m->flip, slot);
}

/*
 * auto_augment and color_jitter: choose the ops from the sample's policy
 * stream, apply them in order, record them. A Solarize threshold above
 * 255 (timm's level 0 of SolarizeIncreasing) changes no pixel and is
 * recorded but not applied (torchvision refuses it). Returns 0, or -1
 * when the batch failed.
 */
static int apply_recipe_ops(struct worker_ctx *w, batch_t *b, uint32_t pos,
			    unsigned attempt, uint8_t *slot, struct wire_meta *m)
{
	const struct pipeline_cfg *p = b->pl->cfg;
	const int out = (int)p->size;
	struct imgop_args ops[POLICY_MAX_OPS];
	rng_t pr;

	if (p->aa.kind == AA_NONE && !p->jitter_on)
		return 0;
	if (scratch_grow((void **)&w->op_scratch, &w->op_scratch_cap,
			 imgop_scratch_bytes(out, out))) {
		batch_fail(b, WIRE_E_INTERNAL, "out of memory for augmentation scratch");
		return -1;
	}
	rng_init(&pr, b->key, b->epoch, b->index, pos, RNG_POLICY, attempt);
	int k = policy_sample(p, &pr, out, out, ops);
	for (int i = 0; i < k; i++) {
		if (!(ops[i].op == IMGOP_SOLARIZE && ops[i].magnitude > 255)) {
			int rc = imgop_apply(slot, out, out, (size_t)out * 3, &ops[i],
					     w->op_scratch);
			if (rc) {
				batch_fail(b, WIRE_E_INTERNAL, "augmentation %s(%g): %s",
					   imgop_name(ops[i].op), ops[i].magnitude,
					   strerror(-rc));
				return -1;
			}
		}
		m->ops[i].op = ops[i].op;
		m->ops[i].interp = ops[i].interp;
		memcpy(m->ops[i].fill, ops[i].fill, 3);
		m->ops[i].magnitude = ops[i].magnitude;
	}
	m->n_ops = (uint8_t)k;
	return 0;
}

/* meta[pos] before the sample is loaded: no partner, lam 1. */
static void meta_init(const batch_t *b, uint32_t pos, struct wire_meta *m)
{
	memset(m, 0, sizeof(*m));
	m->index = b->idx[pos];
	m->partner = -1;
	m->partner_label = -1;
	m->partner_pos = -1;
	m->lam = 1.0;
	m->pad = b->pad[pos];
}

/*
 * Load the sample of position pos into slot, replacing a bad file by a
 * deterministic other one (or failing the batch, as configured). On
 * success *r is the sample stream of the attempt that loaded, *attempt
 * that attempt and m->source the file. Returns 0, or -1 when the batch
 * failed.
 */
static int load_or_replace(struct worker_ctx *w, batch_t *b, uint32_t pos,
			   uint8_t *slot, struct wire_meta *m, rng_t *r,
			   unsigned *attempt_out)
{
	const struct pipeline_rt *pl = b->pl;
	const struct pipeline_cfg *p = pl->cfg;
	uint32_t source = b->idx[pos];
	uint32_t n = dataset_size(pl->ds);
	unsigned attempt;

	for (attempt = 0;; attempt++) {
		rng_init(r, b->key, b->epoch, b->index, pos, RNG_SAMPLE, attempt);
		m->resize_interp = (uint8_t)p->interpolation;
		if (p->train_interpolation == TI_RANDOM) { /* timm: bilinear or bicubic */
			rng_t ir;
			rng_init(&ir, b->key, b->epoch, b->index, pos, RNG_INTERP, attempt);
			m->resize_interp = (uint8_t)rng_below(&ir, 2);
		}
		int rc = load_sample(w, b, source, r, slot, m);
		if (rc == 0)
			break;
		if (decode_error_transient(rc)) {
			/* the daemon's trouble (memory, descriptors, I/O), not
			 * the file's: fail retryably, keep it off the bad list */
			batch_fail(b, WIRE_E_INTERNAL, "cannot read '%s' now: %s "
				   "(not a bad file; retry)", dataset_path(pl->ds, source),
				   w->why[0] ? w->why : strerror(-rc));
			return -1;
		}
		engine_note_bad(b->eng, pl->ds_index, source, w->why);
		if (engine_config(b->eng)->server.on_decode_error == ON_ERROR_FAIL) {
			batch_fail(b, WIRE_E_DECODE, "decode failed: '%s': %s",
				   dataset_path(pl->ds, source), w->why);
			return -1;
		}
		if (attempt + 1 >= MAX_REPLACE_TRIES) {
			batch_fail(b, WIRE_E_DECODE,
				   "no readable replacement for '%s' after %d tries; last: '%s': %s",
				   dataset_path(pl->ds, b->idx[pos]), MAX_REPLACE_TRIES,
				   dataset_path(pl->ds, source), w->why);
			return -1;
		}
		/* Deterministic replacement: any sample, from a stream of
		 * this position and attempt. */
		rng_t rr;
		rng_init(&rr, b->key, b->epoch, b->index, pos, RNG_REPLACE, attempt);
		source = rng_below(&rr, n);
		m->status = WIRE_SAMPLE_REPLACED;
	}
	if (m->status == WIRE_SAMPLE_REPLACED)
		stats_add(engine_stats(b->eng), replaced, 1);
	m->source = source;
	*attempt_out = attempt;
	return 0;
}

/* Cutout (holes from the sample stream r) and RandomErasing, after the
 * flip and the recipe ops. */
static void apply_erasers(batch_t *b, uint32_t pos, unsigned attempt,
			  rng_t *r, uint8_t *slot, struct wire_meta *m)
{
	const struct pipeline_cfg *p = b->pl->cfg;
	const int out = (int)p->size;

	int nh = augment_cutout_boxes(r, p, out, out, m->holes);
	if (nh > 0) {
		rng_t noise;
		rng_init(&noise, b->key, b->epoch, b->index, pos, RNG_NOISE, attempt);
		augment_cutout_fill(slot, out, out, (size_t)out * 3, p,
				    (const int32_t(*)[4])m->holes, nh, &noise);
	}
	m->n_holes = (uint8_t)nh;
	if (p->reprob > 0) {
		rng_t er, en;
		rng_init(&er, b->key, b->epoch, b->index, pos, RNG_ERASE, attempt);
		rng_init(&en, b->key, b->epoch, b->index, pos, RNG_ERASE_FILL, attempt);
		int ne = policy_erase_boxes(p, &er, out, out, m->erase);
		policy_erase_fill(p, slot, out, out, (size_t)out * 3,
				  (const int32_t(*)[4])m->erase, ne, &en);
		m->n_erase = (uint8_t)ne;
		m->erase_mode = (uint8_t)p->remode;
	}
}

void sample_run(struct pool_task *t, uint32_t pos, void *ctx)
{
	batch_t *b = (batch_t *)t;
	struct worker_ctx *w = ctx;
	const struct pipeline_rt *pl = b->pl;
	uint8_t *slot = b->pixels + (size_t)pos * pl->pixel_bytes;
	struct wire_meta *m = &b->meta[pos];
	unsigned attempt;
	rng_t r;

	if (atomic_load_explicit(&b->failed, memory_order_relaxed))
		return;
	if (b->stop && atomic_load_explicit(b->stop, memory_order_relaxed)) {
		batch_fail(b, WIRE_E_SHUTTING_DOWN, "daemon is stopping");
		return;
	}

	meta_init(b, pos, m);
	if (load_or_replace(w, b, pos, slot, m, &r, &attempt))
		return;
	m->label = dataset_label(pl->ds, (uint32_t)m->source);

	/* m->flip was drawn, and applied, by load_sample. */
	if (apply_recipe_ops(w, b, pos, attempt, slot, m))
		return;
	apply_erasers(b, pos, attempt, &r, slot, m);
}
