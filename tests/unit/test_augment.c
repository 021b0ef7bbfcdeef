/*
 * test_augment.c — the rules of ../shared/specs/augmentations.md, checked
 * one by one: crop boxes, Cutout, CutMix box and lambda, MixUp rounding,
 * partner rules, label smoothing, no aliasing when mixing.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "augment.h"
#include "wire.h"

static struct pipeline_cfg base_cfg(void)
{
	struct pipeline_cfg p;

	memset(&p, 0, sizeof(p));
	p.size = 32;
	p.scale[0] = 0.08;
	p.scale[1] = 1.0;
	p.ratio[0] = 0.75;
	p.ratio[1] = 4.0 / 3.0;
	p.prob = 1.0;
	p.switch_prob = 0.5;
	p.correct_lam = true;
	p.cutout_prob = 1.0;
	p.cutout_holes = 1;
	p.mean[0] = 0.485;
	p.mean[1] = 0.456;
	p.mean[2] = 0.406;
	return p;
}

static void test_rrc_bounds_and_integers(void **state)
{
	struct pipeline_cfg p = base_cfg();
	(void)state;

	for (uint32_t i = 0; i < 2000; i++) {
		rng_t r;
		struct crop_box b;
		int W = 1 + (int)(i * 37 % 900), H = 1 + (int)(i * 53 % 700);
		rng_init(&r, 42, 0, 0, i, RNG_SAMPLE, 0);
		augment_rrc(&r, W, H, p.scale, p.ratio, &b);
		assert_true(b.x0 >= 0 && b.y0 >= 0 && b.x1 <= W && b.y1 <= H);
		assert_true(b.x1 > b.x0 && b.y1 > b.y0);
		assert_true(b.x0 == floor(b.x0) && b.x1 == floor(b.x1));
		assert_true(b.y0 == floor(b.y0) && b.y1 == floor(b.y1));
	}
}

/* An accepted try: the area and aspect land in range (up to rounding). */
static void test_rrc_area_and_aspect(void **state)
{
	double scale[2] = { 0.25, 0.5 }, ratio[2] = { 0.75, 4.0 / 3.0 };
	(void)state;

	for (uint32_t i = 0; i < 500; i++) {
		rng_t r;
		struct crop_box b;
		rng_init(&r, 7, 1, 2, i, RNG_SAMPLE, 0);
		augment_rrc(&r, 400, 400, scale, ratio, &b);
		double w = b.x1 - b.x0, h = b.y1 - b.y0;
		double area = w * h / (400.0 * 400.0);
		assert_true(area > 0.24 && area < 0.51);
		assert_true(w / h > 0.74 && w / h < 1.34);
	}
}

/* Impossible tries fall back to a central crop with the aspect clamped. */
static void test_rrc_fallback(void **state)
{
	double scale[2] = { 1.0, 1.0 }, ratio[2] = { 2.0, 2.0 };
	struct crop_box b;
	rng_t r;
	(void)state;

	rng_init(&r, 1, 0, 0, 0, RNG_SAMPLE, 0);
	augment_rrc(&r, 100, 100, scale, ratio, &b);
	/* in_ratio 1 < 2: w = W, h = round(100 / 2) = 50, centred. */
	assert_true(b.x0 == 0 && b.x1 == 100);
	assert_true(b.y0 == 25 && b.y1 == 75);
}

static void test_center_box(void **state)
{
	struct crop_box b;
	(void)state;

	/* Already the output size: the whole image, nothing to resample. */
	augment_center(64, 64, 64, 64, &b);
	assert_true(b.x0 == 0 && b.y0 == 0 && b.x1 == 64 && b.y1 == 64);

	/* 500x375, Resize(256) -> 341x256, CenterCrop(224): left =
	 * round(58.5) = 58 (half to even), top = 16. */
	augment_center(500, 375, 256, 224, &b);
	assert_true(fabs(b.x0 - 58 * 500.0 / 341) < 1e-9);
	assert_true(fabs(b.x1 - 282 * 500.0 / 341) < 1e-9);
	assert_true(fabs(b.y0 - 16 * 375.0 / 256) < 1e-9);
	assert_true(fabs(b.y1 - 240 * 375.0 / 256) < 1e-9);
}

static void test_flip(void **state)
{
	uint8_t img[2 * 3 * 3], want[2 * 3 * 3];
	(void)state;

	for (int i = 0; i < (int)sizeof(img); i++)
		img[i] = (uint8_t)i;
	for (int y = 0; y < 2; y++)
		for (int x = 0; x < 3; x++)
			for (int c = 0; c < 3; c++)
				want[(y * 3 + x) * 3 + c] = img[(y * 3 + (2 - x)) * 3 + c];
	augment_flip(img, 3, 2, 9);
	assert_memory_equal(img, want, sizeof(img));
}

/* Box rule: y0 = max(cy - L//2, 0), y1 = min(cy + L//2, H), centres drawn
 * after the side, y before x. Recomputed here from a twin stream. */
static void test_cutout_boxes_follow_rule(void **state)
{
	struct pipeline_cfg p = base_cfg();
	(void)state;

	p.cutout_holes = 3;
	p.cutout_size[0] = 5;
	p.cutout_size[1] = 11;
	for (uint32_t i = 0; i < 300; i++) {
		rng_t r, twin;
		int32_t holes[CONFIG_MAX_HOLES][4];
		rng_init(&r, 9, 0, 0, i, RNG_SAMPLE, 0);
		twin = r;
		int n = augment_cutout_boxes(&r, &p, 32, 24, holes);
		assert_int_equal(n, 3);
		assert_true(rng_uniform(&twin) < 1.0);
		for (int k = 0; k < n; k++) {
			int len = rng_range(&twin, 5, 11);
			int cy = (int)rng_below(&twin, 24), cx = (int)rng_below(&twin, 32);
			assert_int_equal(holes[k][0], cx - len / 2 < 0 ? 0 : cx - len / 2);
			assert_int_equal(holes[k][1], cy - len / 2 < 0 ? 0 : cy - len / 2);
			assert_int_equal(holes[k][2], cx + len / 2 > 32 ? 32 : cx + len / 2);
			assert_int_equal(holes[k][3], cy + len / 2 > 24 ? 24 : cy + len / 2);
		}
	}
}

static void test_cutout_prob_and_off(void **state)
{
	struct pipeline_cfg p = base_cfg();
	int32_t holes[CONFIG_MAX_HOLES][4];
	int applied = 0;
	(void)state;

	p.cutout_size[0] = p.cutout_size[1] = 0; /* off */
	rng_t r;
	rng_init(&r, 1, 0, 0, 0, RNG_SAMPLE, 0);
	assert_int_equal(augment_cutout_boxes(&r, &p, 32, 32, holes), 0);

	p.cutout_size[0] = p.cutout_size[1] = 8;
	p.cutout_prob = 0.3;
	for (uint32_t i = 0; i < 4000; i++) {
		rng_init(&r, 1, 0, 0, i, RNG_SAMPLE, 0);
		applied += augment_cutout_boxes(&r, &p, 32, 32, holes) > 0;
	}
	assert_true(applied > 1000 && applied < 1400); /* ~1200 */
}

static void test_cutout_fill_modes(void **state)
{
	struct pipeline_cfg p = base_cfg();
	const int32_t holes[1][4] = { { 1, 2, 3, 4 } };
	uint8_t img[6 * 5 * 3];
	(void)state;

	memset(img, 200, sizeof(img));
	p.cutout_fill = FILL_VALUE;
	p.cutout_value = 7;
	augment_cutout_fill(img, 6, 5, 18, &p, holes, 1, NULL);
	for (int y = 0; y < 5; y++)
		for (int x = 0; x < 6; x++) {
			int in = x >= 1 && x < 3 && y >= 2 && y < 4;
			for (int c = 0; c < 3; c++)
				assert_int_equal(img[(y * 6 + x) * 3 + c], in ? 7 : 200);
		}

	memset(img, 200, sizeof(img));
	p.cutout_fill = FILL_MEAN; /* round(0.485*255)=124, 116, 104 */
	augment_cutout_fill(img, 6, 5, 18, &p, holes, 1, NULL);
	assert_int_equal(img[(2 * 6 + 1) * 3 + 0], 124);
	assert_int_equal(img[(2 * 6 + 1) * 3 + 1], 116);
	assert_int_equal(img[(2 * 6 + 1) * 3 + 2], 104);

	/* Noise is a function of the stream: same stream, same bytes. */
	uint8_t a[sizeof(img)], b[sizeof(img)];
	rng_t n1, n2;
	p.cutout_fill = FILL_NOISE;
	memset(a, 0, sizeof(a));
	memset(b, 0, sizeof(b));
	rng_init(&n1, 5, 0, 0, 0, RNG_NOISE, 0);
	n2 = n1;
	augment_cutout_fill(a, 6, 5, 18, &p, holes, 1, &n1);
	augment_cutout_fill(b, 6, 5, 18, &p, holes, 1, &n2);
	assert_memory_equal(a, b, sizeof(a));
	assert_int_equal(a[0], 0); /* outside the hole untouched */
}

/* Centre-clip rule and lambda from the clipped box, recomputed. */
static void test_cutmix_box_rule(void **state)
{
	struct pipeline_cfg p = base_cfg();
	(void)state;

	for (uint32_t i = 0; i < 1000; i++) {
		rng_t r, twin;
		int32_t box[4];
		double lam_raw = (i % 100) / 100.0;
		int W = 40, H = 30;
		rng_init(&r, 3, 0, i, 0, RNG_MIX, 0);
		twin = r;
		double lam = augment_cutmix_box(&r, &p, lam_raw, W, H, box);

		int ch = (int)floor(H * sqrt(1 - lam_raw)), cw = (int)floor(W * sqrt(1 - lam_raw));
		int cy = (int)rng_below(&twin, H), cx = (int)rng_below(&twin, W);
		int y0 = cy - ch / 2, y1 = cy + ch / 2, x0 = cx - cw / 2, x1 = cx + cw / 2;
		y0 = y0 < 0 ? 0 : y0 > H ? H : y0;
		y1 = y1 < 0 ? 0 : y1 > H ? H : y1;
		x0 = x0 < 0 ? 0 : x0 > W ? W : x0;
		x1 = x1 < 0 ? 0 : x1 > W ? W : x1;
		assert_int_equal(box[0], x0);
		assert_int_equal(box[1], y0);
		assert_int_equal(box[2], x1);
		assert_int_equal(box[3], y1);
		assert_true(lam == 1.0 - (double)(y1 - y0) * (x1 - x0) / (W * H));
	}
}

static void test_cutmix_empty_box_keeps_lambda_one(void **state)
{
	struct pipeline_cfg p = base_cfg();
	int32_t box[4];
	rng_t r;
	(void)state;

	rng_init(&r, 3, 0, 0, 0, RNG_MIX, 0);
	/* lam_raw = 1: cut size 0, an empty box, label unchanged. */
	assert_true(augment_cutmix_box(&r, &p, 1.0, 32, 32, box) == 1.0);
	assert_int_equal((box[2] - box[0]) * (box[3] - box[1]), 0);
}

static void test_cutmix_minmax(void **state)
{
	struct pipeline_cfg p = base_cfg();
	(void)state;

	p.has_cutmix_minmax = true;
	p.cutmix_minmax[0] = 0.25;
	p.cutmix_minmax[1] = 0.5;
	for (uint32_t i = 0; i < 1000; i++) {
		rng_t r;
		int32_t box[4];
		rng_init(&r, 11, 0, i, 0, RNG_MIX, 0);
		double lam = augment_cutmix_box(&r, &p, 0.5, 40, 20, box);
		int w = box[2] - box[0], h = box[3] - box[1];
		assert_true(w >= 10 && w <= 20);
		assert_true(h >= 5 && h <= 10);
		assert_true(box[0] >= 0 && box[2] <= 40 && box[1] >= 0 && box[3] <= 20);
		assert_true(lam == 1.0 - (double)w * h / 800.0);
	}
}

static void test_mixup_rounding(void **state)
{
	uint8_t a[6] = { 1, 2, 0, 255, 10, 200 };
	uint8_t b[6] = { 2, 3, 1, 255, 20, 100 };
	uint8_t out[6];
	(void)state;

	/* 0.5 weights make exact .5 values: round half to even. */
	augment_mixup_pixels(out, a, b, 6, 0.5f);
	assert_int_equal(out[0], 2);   /* 1.5 -> 2 */
	assert_int_equal(out[1], 2);   /* 2.5 -> 2 */
	assert_int_equal(out[2], 0);   /* 0.5 -> 0 */
	assert_int_equal(out[3], 255);
	assert_int_equal(out[4], 15);
	assert_int_equal(out[5], 150);

	/* Matches the float32 formula for arbitrary lambdas. */
	for (int k = 0; k < 200; k++) {
		float lam = (float)k / 199.0f;
		uint8_t x = (uint8_t)(k * 7), y = (uint8_t)(255 - k);
		uint8_t o;
		augment_mixup_pixels(&o, &x, &y, 1, lam);
		assert_int_equal(o, (uint8_t)rintf((float)x * lam + (float)y * (1.0f - lam)));
	}
}

/* The vector path (16 bytes a step, AVX2 where the CPU has it) and the
 * scalar tail give the float32 formula's bytes, in place too (dst == a),
 * for every byte pair at .5-making and arbitrary lambdas. */
static void test_mixup_vector_path(void **state)
{
	enum { N = 65536 + 13 };
	static uint8_t a[N], b[N], out[N];
	const float lams[] = { 0.5f, 0.25f, 0.0f, 1.0f, 0.3719f, 0.999f };
	(void)state;

	for (size_t k = 0; k < N; k++) {
		a[k] = (uint8_t)k; /* every (a, b) pair */
		b[k] = (uint8_t)(k >> 8);
	}
	for (size_t l = 0; l < sizeof(lams) / sizeof(lams[0]); l++) {
		float lam = lams[l];
		augment_mixup_pixels(out, a, b, N, lam);
		for (size_t k = 0; k < N; k++)
			assert_int_equal(out[k], (uint8_t)rintf((float)a[k] * lam +
								(float)b[k] * (1.0f - lam)));
		memcpy(out, a, N);
		augment_mixup_pixels(out, out, b, N, lam);
		for (size_t k = 0; k < N; k++)
			assert_int_equal(out[k], (uint8_t)rintf((float)a[k] * lam +
								(float)b[k] * (1.0f - lam)));
	}
}

static void test_labels_smoothing(void **state)
{
	const uint32_t K = 10;
	const double s = 0.1;
	float labels[3 * 10];
	int32_t y[3] = { 2, 5, 5 };
	struct mix_item it[3] = {
		{ .partner = 1, .op = WIRE_OP_CUTMIX, .lam = 0.7 },
		{ .partner = -1, .op = WIRE_OP_NONE, .lam = 1.0 },
		{ .partner = 1, .op = WIRE_OP_MIXUP, .lam = 0.4 }, /* same class */
	};
	(void)state;

	augment_labels(labels, 3, K, s, y, it);
	for (int i = 0; i < 3; i++) {
		double sum = 0;
		for (uint32_t k = 0; k < K; k++)
			sum += labels[i * K + k];
		assert_true(fabs(sum - 1.0) < 1e-6);
	}
	/* Row 0: 0.7*smooth(2) + 0.3*smooth(5); every other class s/K. */
	assert_true(fabsf(labels[2] - (float)(0.7 * 0.91 + 0.3 * 0.01)) < 1e-7f);
	assert_true(fabsf(labels[5] - (float)(0.3 * 0.91 + 0.7 * 0.01)) < 1e-7f);
	for (uint32_t k = 0; k < K; k++)
		if (k != 2 && k != 5)
			assert_true(labels[k] == (float)(s / K));
	/* Row 1: smoothed one-hot. Row 2: same class on both sides. */
	assert_true(labels[K + 5] == (float)(1 - s + s / K));
	assert_true(labels[2 * K + 5] == (float)(1 - s + s / K));

	/* No smoothing: exact one-hot. */
	augment_labels(labels, 3, K, 0.0, y, it);
	assert_true(labels[K + 5] == 1.0f && labels[K + 4] == 0.0f);
}

static int count_mixed(const struct mix_item *it, uint32_t B)
{
	int n = 0;
	for (uint32_t i = 0; i < B; i++)
		n += it[i].op != WIRE_OP_NONE;
	return n;
}

static void test_plan_partner_rules(void **state)
{
	struct pipeline_cfg p = base_cfg();
	struct mix_item it[9];
	uint32_t perm[9];
	(void)state;

	p.cutmix_alpha = 1.0;

	/* B = 1: the partner would be itself, nothing is mixed. */
	augment_mix_plan(&p, 1, 0, 0, 1, 32, 32, it, perm);
	assert_int_equal(it[0].op, WIRE_OP_NONE);
	assert_int_equal(it[0].partner, -1);
	assert_true(it[0].lam == 1.0);

	/* flip, odd B: the middle sample is left alone. */
	p.partner = PARTNER_FLIP;
	augment_mix_plan(&p, 1, 0, 0, 9, 32, 32, it, perm);
	for (uint32_t i = 0; i < 9; i++) {
		if (i == 4) {
			assert_int_equal(it[i].op, WIRE_OP_NONE);
			continue;
		}
		assert_int_equal(it[i].partner, 8 - (int)i);
		assert_int_equal(it[i].op, WIRE_OP_CUTMIX);
		/* batch mode: one box and lambda for all */
		assert_memory_equal(it[i].box, it[0].box, sizeof(it[0].box));
		assert_true(it[i].lam == it[0].lam);
	}

	/* roll: j = i - 1 mod B. */
	p.partner = PARTNER_ROLL;
	augment_mix_plan(&p, 1, 0, 0, 9, 32, 32, it, perm);
	for (uint32_t i = 0; i < 9; i++)
		assert_int_equal(it[i].partner, (int)((i + 8) % 9));

	/* permute: a permutation, deterministic, varies with the batch. */
	struct mix_item it2[9];
	p.partner = PARTNER_PERMUTE;
	augment_mix_plan(&p, 1, 0, 5, 9, 32, 32, it, perm);
	augment_mix_plan(&p, 1, 0, 5, 9, 32, 32, it2, perm);
	assert_memory_equal(it, it2, sizeof(it));
	int seen[9] = { 0 };
	for (uint32_t i = 0; i < 9; i++) {
		if (it[i].partner >= 0)
			seen[it[i].partner]++;
		assert_true(it[i].partner != (int)i);
	}
	for (int i = 0; i < 9; i++)
		assert_true(seen[i] <= 1);
}

static void test_plan_pair_and_elem(void **state)
{
	struct pipeline_cfg p = base_cfg();
	struct mix_item it[7];
	uint32_t perm[7];
	(void)state;

	p.cutmix_alpha = 1.0;
	p.mode = MIX_PAIR;
	p.partner = PARTNER_PERMUTE;
	augment_mix_plan(&p, 2, 1, 3, 7, 32, 32, it, perm);
	int unmixed = 0;
	for (uint32_t i = 0; i < 7; i++) {
		if (it[i].op == WIRE_OP_NONE) {
			unmixed++;
			continue;
		}
		int j = it[i].partner;
		assert_int_equal(it[j].partner, (int)i); /* symmetric */
		assert_memory_equal(it[j].box, it[i].box, sizeof(it[i].box));
		assert_true(it[j].lam == it[i].lam);
	}
	assert_int_equal(unmixed, 1); /* odd one out */

	/* elem: each sample draws its own lambda. */
	p.mode = MIX_ELEM;
	p.partner = PARTNER_ROLL;
	augment_mix_plan(&p, 2, 1, 3, 7, 32, 32, it, perm);
	int distinct = 0;
	for (uint32_t i = 1; i < 7; i++)
		distinct += it[i].lam != it[0].lam;
	assert_true(distinct >= 5);
}

static void test_plan_switch_prob_off_epoch(void **state)
{
	struct pipeline_cfg p = base_cfg();
	struct mix_item it[16];
	uint32_t perm[16];
	int cut = 0, mix = 0;
	(void)state;

	p.cutmix_alpha = 1.0;
	p.mixup_alpha = 0.4;
	p.mode = MIX_ELEM;
	p.partner = PARTNER_ROLL; /* nobody is their own partner */
	p.switch_prob = 1.0;
	augment_mix_plan(&p, 4, 0, 0, 16, 32, 32, it, perm);
	for (int i = 0; i < 16; i++)
		cut += it[i].op == WIRE_OP_CUTMIX;
	assert_int_equal(cut, 16);

	p.switch_prob = 0.0;
	augment_mix_plan(&p, 4, 0, 0, 16, 32, 32, it, perm);
	for (int i = 0; i < 16; i++)
		mix += it[i].op == WIRE_OP_MIXUP;
	assert_int_equal(mix, 16);

	p.prob = 0.0;
	augment_mix_plan(&p, 4, 0, 0, 16, 32, 32, it, perm);
	assert_int_equal(count_mixed(it, 16), 0);

	p.prob = 1.0;
	p.off_epoch = 3;
	augment_mix_plan(&p, 4, 2, 0, 16, 32, 32, it, perm);
	assert_true(count_mixed(it, 16) > 0);
	augment_mix_plan(&p, 4, 3, 0, 16, 32, 32, it, perm);
	assert_int_equal(count_mixed(it, 16), 0);
}

/* Two samples that are each other's partner swap their boxes: each must
 * receive the other's ORIGINAL pixels. */
static void test_apply_mix_no_aliasing(void **state)
{
	enum { W = 4, H = 4, IMG = W * H * 3 };
	uint8_t images[2 * IMG], scratch[2 * IMG];
	struct mix_item it[2] = {
		{ .partner = 1, .op = WIRE_OP_CUTMIX, .lam = 0.75, .box = { 0, 0, 2, 2 } },
		{ .partner = 0, .op = WIRE_OP_CUTMIX, .lam = 0.75, .box = { 0, 0, 2, 2 } },
	};
	(void)state;

	memset(images, 10, IMG);
	memset(images + IMG, 20, IMG);
	augment_apply_mix(images, 2, W, H, it, scratch);
	for (int y = 0; y < H; y++)
		for (int x = 0; x < W; x++) {
			int in = x < 2 && y < 2;
			assert_int_equal(images[(y * W + x) * 3], in ? 20 : 10);
			assert_int_equal(images[IMG + (y * W + x) * 3], in ? 10 : 20);
		}

	/* MixUp both ways: both see the other's original. */
	struct mix_item mx[2] = {
		{ .partner = 1, .op = WIRE_OP_MIXUP, .lam = 0.25 },
		{ .partner = 0, .op = WIRE_OP_MIXUP, .lam = 0.25 },
	};
	memset(images, 0, IMG);
	memset(images + IMG, 100, IMG);
	augment_apply_mix(images, 2, W, H, mx, scratch);
	assert_int_equal(images[0], 75);       /* 0*.25 + 100*.75 */
	assert_int_equal(images[IMG], 25);     /* 100*.25 + 0*.75 */
}

/* The old two-phase mix (every partner region copied first, then
 * written): the reference augment_apply_mix must equal byte for byte. */
static void ref_apply_mix(uint8_t *images, uint32_t B, int W, int H,
			  const struct mix_item *items, uint8_t *copy)
{
	size_t row = (size_t)W * 3, img = row * (size_t)H;

	memcpy(copy, images, B * img);
	for (uint32_t i = 0; i < B; i++) {
		const struct mix_item *it = &items[i];
		uint8_t *own = images + (size_t)i * img;
		const uint8_t *src = copy + (size_t)it->partner * img;

		if (it->partner < 0)
			continue;
		if (it->op == WIRE_OP_MIXUP)
			augment_mixup_pixels(own, own, src, img, (float)it->lam);
		else if (it->op == WIRE_OP_CUTMIX)
			for (int y = it->box[1]; y < it->box[3]; y++) {
				size_t at = y * row + it->box[0] * 3;
				memcpy(own + at, src + at, (size_t)(it->box[2] - it->box[0]) * 3);
			}
	}
}

/* Random one-to-one partner maps (cycles of every length incl. a sample
 * its own partner, chains ending in an unmixed sample, unmixed samples),
 * random boxes and lambdas: the chain-and-cycle mix gives the reference's
 * bytes within the scratch size it asks for. */
static void test_apply_mix_matches_two_phase(void **state)
{
	enum { W = 7, H = 5, IMG = W * H * 3, B = 12 };
	uint8_t a[B * IMG], b[B * IMG], copy[B * IMG];
	struct mix_item it[B];
	uint32_t perm[B];
	rng_t r;
	(void)state;

	rng_init(&r, 99, 0, 0, 0, RNG_SAMPLE, 0);
	for (int round = 0; round < 300; round++) {
		for (uint32_t i = 0; i < B; i++)
			perm[i] = i;
		rng_shuffle_u32(&r, perm, B);
		for (uint32_t i = 0; i < B; i++) {
			uint32_t u = rng_u32(&r);
			int x0 = (int)(u % W), y0 = (int)((u >> 8) % H);
			memset(&it[i], 0, sizeof(it[i]));
			it[i].partner = (u >> 16) % 5 == 0 ? -1 : (int32_t)perm[i];
			it[i].op = it[i].partner < 0 ? WIRE_OP_NONE :
				   (u >> 20) % 2 ? WIRE_OP_MIXUP : WIRE_OP_CUTMIX;
			it[i].lam = (double)((u >> 24) % 101) / 100.0;
			it[i].box[0] = x0;
			it[i].box[1] = y0;
			it[i].box[2] = x0 + (int)((u >> 4) % (W - x0 + 1));
			it[i].box[3] = y0 + (int)((u >> 12) % (H - y0 + 1));
		}
		for (size_t k = 0; k < sizeof(a); k++)
			a[k] = b[k] = (uint8_t)rng_u32(&r);
		size_t need = augment_mix_scratch_bytes(it, B, W, H);
		uint8_t *scratch = malloc(need ? need : 1);
		assert_non_null(scratch);
		assert_true(need <= IMG + B);
		if (need)
			augment_apply_mix(a, B, W, H, it, scratch);
		free(scratch);
		ref_apply_mix(b, B, W, H, it, copy);
		assert_memory_equal(a, b, sizeof(a));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rrc_bounds_and_integers),
		cmocka_unit_test(test_rrc_area_and_aspect),
		cmocka_unit_test(test_rrc_fallback),
		cmocka_unit_test(test_center_box),
		cmocka_unit_test(test_flip),
		cmocka_unit_test(test_cutout_boxes_follow_rule),
		cmocka_unit_test(test_cutout_prob_and_off),
		cmocka_unit_test(test_cutout_fill_modes),
		cmocka_unit_test(test_cutmix_box_rule),
		cmocka_unit_test(test_cutmix_empty_box_keeps_lambda_one),
		cmocka_unit_test(test_cutmix_minmax),
		cmocka_unit_test(test_mixup_rounding),
		cmocka_unit_test(test_mixup_vector_path),
		cmocka_unit_test(test_labels_smoothing),
		cmocka_unit_test(test_plan_partner_rules),
		cmocka_unit_test(test_plan_pair_and_elem),
		cmocka_unit_test(test_plan_switch_prob_off_epoch),
		cmocka_unit_test(test_apply_mix_no_aliasing),
		cmocka_unit_test(test_apply_mix_matches_two_phase),
	};
	return cmocka_run_group_tests_name("augment", tests, NULL, NULL);
}
