/*
 * augment.h — the augmentations of ../shared/specs/augmentations.md as pure
 * functions of their random stream and inputs: crop boxes, flip, Cutout,
 * and the batch-level CutMix / MixUp plan, pixels and soft labels.
 *
 * Nothing here allocates or keeps state; every random draw comes from the
 * rng_t the caller passes, so the caller decides the stream coordinates.
 */
#ifndef CUTMIXD_AUGMENT_H
#define CUTMIXD_AUGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "rng.h"

/* A source region in source pixels; [x0,x1) x [y0,y1). */
struct crop_box {
	double x0, y0, x1, y1;
};

/*
 * torchvision RandomResizedCrop.get_params: up to 10 tries of
 * area = W*H*U(scale), aspect = exp(U(log r0, log r1)), w/h rounded half to
 * even; accepted when 0 < w <= W and 0 < h <= H, origin uniform over the
 * valid positions (y first, then x); else a central crop with the aspect
 * clamped into `ratio`. The box has integer corners.
 */
void augment_rrc(rng_t *r, int W, int H, const double scale[2],
		 const double ratio[2], struct crop_box *out);

/*
 * torchvision Resize(resize) (shorter side, long side truncated) followed
 * by CenterCrop(size) (offset rounded half to even), expressed as one
 * fractional box in source pixels so a single resample does both.
 */
void augment_center(int W, int H, uint32_t resize, uint32_t size,
		    struct crop_box *out);

/* The same as the resized image's size and the crop's offset in it
 * (for resize_rgb_crop(), which then matches torchvision exactly). */
struct center_geom {
	int new_w, new_h;   /* Resize(resize) of the W x H image */
	int left, top;      /* CenterCrop(size) offset in it */
};
void augment_center_geom(int W, int H, uint32_t resize, uint32_t size,
			 struct center_geom *g);

/* Mirror an RGB image left-right in place. */
void augment_flip(uint8_t *img, int W, int H, size_t stride);

/*
 * Cutout (DeVries & Taylor): when U < cutout_prob, cutout_holes holes of
 * side L ~ U{min..max}; centre cy ~ U{0..H-1}, cx ~ U{0..W-1} (drawn in
 * that order: L, cy, cx); y0 = max(cy - L/2, 0), y1 = min(cy + L/2, H),
 * likewise x. Writes the boxes (x0,y0,x1,y1) and returns how many; 0 when
 * Cutout is off or not drawn. Empty boxes are kept (they change nothing).
 */
int augment_cutout_boxes(rng_t *r, const struct pipeline_cfg *p, int W, int H,
			 int32_t holes[CONFIG_MAX_HOLES][4]);

/* Fill the boxes: a value, the per-channel mean (round(mean*255)), or
 * per-pixel uniform noise drawn from `noise` in row-major order. */
void augment_cutout_fill(uint8_t *img, int W, int H, size_t stride,
			 const struct pipeline_cfg *p,
			 const int32_t holes[][4], int n, rng_t *noise);

/* What the batch step does to one sample. */
struct mix_item {
	int32_t partner;   /* position in the batch, -1 = not mixed */
	uint8_t op;        /* WIRE_OP_NONE / CUTMIX / MIXUP */
	double lam;        /* weight of the sample's own label */
	int32_t box[4];    /* CutMix x0,y0,x1,y1 */
};

/*
 * Decide mixing for a batch of B samples of W x H (timm's Mixup switch):
 *   mode batch: one draw for the batch; pair: one per pair; elem: one per
 *   sample. Per unit: if U < prob: with both alphas > 0, CutMix when
 *   U < switch_prob, lambda ~ Beta(alpha of the chosen op); with one alpha,
 *   that op. CutMix boxes by the centre-clip rule or cutmix_minmax, lambda
 *   from the clipped box when correct_lam (always with minmax).
 * Partners: permute (seeded permutation), flip (B-1-i), roll (i-1 mod B);
 * in pair mode pairs are (perm[2k], perm[2k+1]) or (i, B-1-i), both members
 * share the unit's box/lambda, and an odd one out is not mixed. A sample
 * whose partner would be itself is not mixed (op none, partner -1, lam 1):
 * that covers B = 1 and the middle sample of an odd batch with `flip`.
 * Streams: rng_init(key, epoch, batch, unit, RNG_MIX, 0) per unit (unit 0
 * in batch mode, the pair number or the position otherwise) and
 * rng_init(key, epoch, batch, 0, RNG_PARTNER, 0) for the permutation.
 * off_epoch > 0 and epoch >= off_epoch: nothing is mixed.
 * perm is scratch for B entries.
 */
void augment_mix_plan(const struct pipeline_cfg *p, uint64_t key,
		      uint32_t epoch, uint32_t batch, uint32_t B, int W, int H,
		      struct mix_item *items, uint32_t *perm);

/* CutMix box for one lambda (exposed for tests); returns the corrected
 * lambda 1 - area/(W*H) computed in double. */
double augment_cutmix_box(rng_t *r, const struct pipeline_cfg *p,
			  double lam_raw, int W, int H, int32_t box[4]);

/* Scratch bytes augment_apply_mix needs for this plan: B flags and the
 * largest partner region (a CutMix box or a MixUp image); 0 = no mixing. */
size_t augment_mix_scratch_bytes(const struct mix_item *items, uint32_t B,
				 int W, int H);

/*
 * Apply the plan to B packed RGB images (H*W*3 bytes each). Every read of
 * a partner sees its pixels from before this call (the partners must be
 * one-to-one, as augment_mix_plan makes them): the samples are mixed
 * along their partner chains, with one region saved per cycle in
 * `scratch` (augment_mix_scratch_bytes()).
 */
void augment_apply_mix(uint8_t *images, uint32_t B, int W, int H,
		       const struct mix_item *items, uint8_t *scratch);

/* MixUp of n bytes: rint((float)a*lam + (float)b*(1-lam)), float32,
 * round half to even. dst may alias a. */
void augment_mixup_pixels(uint8_t *dst, const uint8_t *a, const uint8_t *b,
			  size_t n, float lam);

/*
 * Soft labels: row i = lam*smooth(y_i) + (1-lam)*smooth(y_partner), with
 * smooth(y) = s/K everywhere and 1-s+s/K at y. Classes other than y_i and
 * y_partner hold exactly s/K. labels is B*K floats.
 */
void augment_labels(float *labels, uint32_t B, uint32_t K, double smoothing,
		    const int32_t *y, const struct mix_item *items);

#endif
