/*
 * policy.h — the per-sample recipe steps after the flip, as pure functions
 * of their random stream: auto_augment (timm RandAugment, TrivialAugment
 * Wide, AutoAugment ImageNet, DeiT III 3-Augment) and ColorJitter choose a
 * list of imgops (imgops.h) with their exact _apply_op arguments; Random
 * Erasing chooses boxes and fills them. docs/AUGMENTATIONS.md is the
 * contract; the metadata records exactly what is chosen here.
 *
 * Nothing here allocates or keeps state.
 */
#ifndef CUTMIXD_POLICY_H
#define CUTMIXD_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "imgops.h"
#include "rng.h"

#define POLICY_MAX_OPS 8 /* == WIRE_MAX_OPS */

/*
 * Parse an auto_augment value: "rand-m{M}[-n{N}][-mstd{S}][-mmax{X}]
 * [-inc{0|1}][-p{P}]" (sections in any order after "rand", m required),
 * "ta_wide", "original", "v0" or "3a". Returns 0, or -EINVAL with a message
 * ("unknown section 'q3'") in why.
 */
int policy_parse_aa(const char *text, struct aa_spec *out, char *why, size_t n);

/*
 * Parse color_jitter: "F" (brightness, contrast, saturation = F, no hue)
 * or "B,C,S[,H]"; B, C, S >= 0, 0 <= H <= 0.5. out[4] = B, C, S, H.
 */
int policy_parse_jitter(const char *text, double out[4], char *why, size_t n);

/*
 * Choose this sample's ops for a W x H image: the auto_augment policy's
 * (only those that pass their probability), then ColorJitter's (when on),
 * at most POLICY_MAX_OPS. Draws from `r` only. Returns the count.
 */
int policy_sample(const struct pipeline_cfg *p, rng_t *r, int W, int H,
		  struct imgop_args ops[POLICY_MAX_OPS]);

/* The geometric ops' fill: round(mean*255) per channel, or the value. */
void policy_fill(const struct pipeline_cfg *p, uint8_t fill[3]);

/*
 * RandomErasing (timm): when U < reprob, count = U{1..recount} boxes; per
 * box up to 10 tries of area = W*H*U(remin, remax)/count, aspect =
 * exp(U(log 0.3, log 1/0.3)), h = round(sqrt(area*aspect)),
 * w = round(sqrt(area/aspect)) (half to even); accepted when w < W and
 * h < H, then top ~ U{0..H-h}, left ~ U{0..W-w}. Writes the accepted boxes
 * (x0,y0,x1,y1) and returns how many (a box whose 10 tries fail is left
 * out).
 */
int policy_erase_boxes(const struct pipeline_cfg *p, rng_t *r, int W, int H,
		       int32_t boxes[CONFIG_MAX_ERASE][4]);

/*
 * Fill the boxes in order: const = round(mean*255) per channel; rand = one
 * colour per box, pixel = every byte, from `noise` (rng_u32 words, low
 * byte first, R,G,B row-major within each box).
 */
void policy_erase_fill(const struct pipeline_cfg *p, uint8_t *img, int W, int H,
		       size_t stride, const int32_t boxes[][4], int n, rng_t *noise);

#endif
