/*
 * test_policy.c — policy.c: auto_augment / color_jitter parsing, the
 * magnitudes of every policy exactly as torchvision's float32 linspace
 * bins and timm's level mappings give them, and RandomErasing boxes.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "policy.h"

static struct pipeline_cfg cfg(void)
{
	struct pipeline_cfg p;

	memset(&p, 0, sizeof(p));
	p.mean[0] = 0.485;
	p.mean[1] = 0.456;
	p.mean[2] = 0.406;
	p.aa_fill = FILL_MEAN;
	return p;
}

static void test_parse_rand(void **state)
{
	struct aa_spec a;
	char why[200];

	(void)state;
	assert_int_equal(policy_parse_aa("rand-m9-mstd0.5-inc1", &a, why, sizeof(why)), 0);
	assert_int_equal(a.kind, AA_RAND);
	assert_int_equal(a.n, 2);
	assert_true(a.m == 9 && a.mstd == 0.5 && a.mmax == 10 && a.p == 0.5 && a.inc);
	assert_int_equal(policy_parse_aa("rand-n3-m7-mmax20-p1-inc0", &a, why, sizeof(why)), 0);
	assert_true(a.n == 3 && a.m == 7 && a.mmax == 20 && a.p == 1 && !a.inc && a.mstd == 0);
	assert_int_equal(policy_parse_aa("ta_wide", &a, why, sizeof(why)), 0);
	assert_int_equal(a.kind, AA_TA_WIDE);
	assert_int_equal(policy_parse_aa("original", &a, why, sizeof(why)), 0);
	assert_int_equal(a.kind, AA_ORIGINAL);
	assert_int_equal(policy_parse_aa("3a", &a, why, sizeof(why)), 0);
	assert_int_equal(a.kind, AA_3A);
	assert_int_equal(policy_parse_aa("none", &a, why, sizeof(why)), 0);
	assert_int_equal(a.kind, AA_NONE);

	static const struct { const char *text, *why; } bad[] = {
		{ "rand-n2", "needs a magnitude" }, { "rand-m9-x1", "unknown section 'x1'" },
		{ "rand-m", "section 'm' needs a number" }, { "rand-m9-n0", "n must be 1..8" },
		{ "rand-m9-mstd-1", "section 'mstd' needs a number" },
		{ "rand-m9-inc3", "inc must be 0 or 1" }, { "rand-m9-p2", "p must be 0..1" },
		{ "rand-m-1", "section 'm' needs" }, { "v1", "must be rand-m{M}" },
		{ "augmix-m5-w3", "must be rand-m{M}" }, { "rand-m9-mmax0", "mmax must be > 0" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why[0] = '\0';
		assert_int_equal(policy_parse_aa(bad[i].text, &a, why, sizeof(why)), -EINVAL);
		if (!strstr(why, bad[i].why))
			fail_msg("'%s': message '%s' lacks '%s'", bad[i].text, why, bad[i].why);
	}
}

static void test_parse_jitter(void **state)
{
	double j[4];
	char why[200];

	(void)state;
	assert_int_equal(policy_parse_jitter("0.4", j, why, sizeof(why)), 0);
	assert_true(j[0] == 0.4 && j[1] == 0.4 && j[2] == 0.4 && j[3] == 0);
	assert_int_equal(policy_parse_jitter("0.1,0.2,0.3,0.5", j, why, sizeof(why)), 0);
	assert_true(j[0] == 0.1 && j[1] == 0.2 && j[2] == 0.3 && j[3] == 0.5);
	assert_int_equal(policy_parse_jitter("0.1,0.2,0.3", j, why, sizeof(why)), 0);
	assert_true(j[3] == 0);
	assert_int_equal(policy_parse_jitter("0.1,0.2", j, why, sizeof(why)), -EINVAL);
	assert_int_equal(policy_parse_jitter("0.1,0.2,0.3,0.6", j, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "hue must be 0..0.5"));
	assert_int_equal(policy_parse_jitter("a", j, why, sizeof(why)), -EINVAL);
	assert_int_equal(policy_parse_jitter("-0.1", j, why, sizeof(why)), -EINVAL);
	assert_int_equal(policy_parse_jitter("1,2,3,0.1,5", j, why, sizeof(why)), -EINVAL);
}

/* torch.linspace(...) in float32, printed by torch 1.13 */
static const double lin_099_31[31] = {
	0.0, 0.032999999821186066, 0.06599999964237213, 0.0989999994635582,
	0.13199999928474426, 0.16499999165534973, 0.1979999989271164, 0.23100000619888306,
	0.2639999985694885, 0.296999990940094, 0.32999998331069946, 0.3630000054836273,
	0.3959999978542328, 0.42899999022483826, 0.4620000123977661, 0.4950000047683716,
	0.527999997138977, 0.5609999895095825, 0.593999981880188, 0.6270000338554382,
	0.6600000262260437, 0.6930000185966492, 0.7260000109672546, 0.7590000033378601,
	0.7919999957084656, 0.824999988079071, 0.8580000400543213, 0.8910000324249268,
	0.9240000247955322, 0.9570000171661377, 0.9900000095367432,
};
static const double lin_32_31[31] = {
	0.0, 1.0666667222976685, 2.133333444595337, 3.200000286102295, 4.266666889190674,
	5.333333492279053, 6.40000057220459, 7.466667175292969, 8.533333778381348,
	9.600000381469727, 10.666666984558105, 11.733333587646484, 12.80000114440918,
	13.866666793823242, 14.933334350585938, 16.0, 17.066665649414062, 18.133333206176758,
	19.19999885559082, 20.266666412353516, 21.333332061767578, 22.399999618530273,
	23.46666717529297, 24.53333282470703, 25.600000381469727, 26.66666603088379,
	27.733333587646484, 28.799999237060547, 29.866666793823242, 30.933332443237305, 32.0,
};
static const double lin_30_10[10] = {
	0.0, 3.3333332538604736, 6.666666507720947, 10.0, 13.333333015441895,
	16.666667938232422, 20.0, 23.33333396911621, 26.66666603088379, 30.0,
};
static const double lin_09_10[10] = {
	0.0, 0.09999999403953552, 0.19999998807907104, 0.29999998211860657,
	0.3999999761581421, 0.5, 0.6000000238418579, 0.699999988079071,
	0.7999999523162842, 0.8999999761581421,
};
static const double lin_255_10[10] = {
	255.0, 226.6666717529297, 198.3333282470703, 170.0, 141.66665649414062,
	113.33333587646484, 85.0, 56.66666793823242, 28.33333396911621, 0.0,
};

static bool in(const double *v, int n, double x)
{
	for (int i = 0; i < n; i++)
		if (v[i] == x)
			return true;
	return false;
}

static void test_ta_wide_bins(void **state)
{
	struct pipeline_cfg p = cfg();
	struct imgop_args ops[POLICY_MAX_OPS];
	int seen[IMGOP_COUNT] = { 0 };
	rng_t r;

	(void)state;
	p.aa.kind = AA_TA_WIDE;
	for (uint32_t s = 0; s < 3000; s++) {
		rng_init(&r, 42, 0, 0, s, RNG_POLICY, 0);
		assert_int_equal(policy_sample(&p, &r, 64, 64, ops), 1);
		double m = fabs(ops[0].magnitude);
		seen[ops[0].op]++;
		assert_int_equal(ops[0].interp, IMGOP_NEAREST);
		assert_int_equal(ops[0].fill[0], 124); /* round(0.485 * 255) */
		assert_int_equal(ops[0].fill[2], 104);
		switch (ops[0].op) {
		case IMGOP_SHEAR_X: case IMGOP_SHEAR_Y: case IMGOP_BRIGHTNESS:
		case IMGOP_COLOR: case IMGOP_CONTRAST: case IMGOP_SHARPNESS:
			assert_true(in(lin_099_31, 31, m));
			break;
		case IMGOP_TRANSLATE_X: case IMGOP_TRANSLATE_Y:
			assert_true(in(lin_32_31, 31, m));
			break;
		case IMGOP_ROTATE:
			assert_true(fmod(m, 4.5) == 0 && m <= 135);
			break;
		case IMGOP_POSTERIZE:
			assert_true(m >= 2 && m <= 8 && m == floor(m));
			break;
		case IMGOP_SOLARIZE:
			assert_true(fmod(m, 8.5) == 0 && m <= 255);
			break;
		default:
			assert_true(m == 0);
		}
	}
	/* the 14 ops of TrivialAugmentWide, uniformly (~214 each) */
	int kinds = 0;
	for (int op = 0; op < IMGOP_COUNT; op++)
		if (seen[op]) {
			kinds++;
			assert_in_range(seen[op], 150, 280);
		}
	assert_int_equal(kinds, 14);
	assert_int_equal(seen[IMGOP_INVERT], 0);
}

static void test_original_policy_bins(void **state)
{
	struct pipeline_cfg p = cfg();
	struct imgop_args ops[POLICY_MAX_OPS];
	int neg = 0, n_rot = 0;
	rng_t r;

	(void)state;
	p.aa.kind = AA_ORIGINAL;
	for (uint32_t s = 0; s < 2000; s++) {
		rng_init(&r, 7, 1, 2, s, RNG_POLICY, 0);
		int k = policy_sample(&p, &r, 64, 64, ops);
		assert_in_range(k, 0, 2);
		for (int i = 0; i < k; i++) {
			double m = fabs(ops[i].magnitude);
			switch (ops[i].op) {
			case IMGOP_ROTATE:
				assert_true(in(lin_30_10, 10, m));
				n_rot++;
				neg += ops[i].magnitude < 0;
				break;
			case IMGOP_COLOR: case IMGOP_CONTRAST: case IMGOP_SHARPNESS:
				assert_true(in(lin_09_10, 10, m));
				break;
			case IMGOP_SOLARIZE:
				assert_true(in(lin_255_10, 10, m));
				break;
			case IMGOP_POSTERIZE:
				assert_true(m >= 4 && m <= 8);
				break;
			case IMGOP_SHEAR_X:
				assert_true(fabs(m - 5 * 0.3 / 9) < 1e-6);
				break;
			case IMGOP_EQUALIZE: case IMGOP_AUTOCONTRAST: case IMGOP_INVERT:
				assert_true(m == 0);
				break;
			default:
				fail_msg("op %d is not in the ImageNet policy", ops[i].op);
			}
		}
	}
	assert_true(n_rot > 100 && neg > n_rot / 4 && neg < 3 * n_rot / 4);
}

static void test_v0_policy(void **state)
{
	struct pipeline_cfg p = cfg();
	struct imgop_args ops[POLICY_MAX_OPS];
	int n = 0;
	rng_t r;

	(void)state;
	p.aa.kind = AA_V0;
	for (uint32_t s = 0; s < 2000; s++) {
		rng_init(&r, 11, 0, 0, s, RNG_POLICY, 0);
		int k = policy_sample(&p, &r, 60, 40, ops);
		assert_in_range(k, 0, 2);
		n += k;
		for (int i = 0; i < k; i++) {
			double m = ops[i].magnitude, a = fabs(m);
			assert_int_equal(ops[i].interp, IMGOP_BILINEAR);
			switch (ops[i].op) {
			case IMGOP_ROTATE: /* levels 0, 2, 5, 7, 8, 9: 3 degrees per level */
				assert_true(a == 0 || a == 6 || a == 15 || fabs(a - 21) < 1e-9 ||
					    fabs(a - 24) < 1e-9 || fabs(a - 27) < 1e-9);
				break;
			case IMGOP_SOLARIZE: /* int(level * 25.6) for 2, 3, 4, 8, 10 */
				assert_true(m == 51 || m == 76 || m == 102 || m == 204 || m == 256);
				break;
			case IMGOP_POSTERIZE: /* int(level * 0.4) for 6, 2 */
				assert_true(m == 2 || m == 0);
				break;
			case IMGOP_SOLARIZE_ADD: /* int(level * 11) for 3, 7 */
				assert_true(m == 33 || m == 77);
				break;
			case IMGOP_TRANSLATE_Y: /* level 9: 0.405 * height */
				assert_true(fabs(a - 0.405 * 40) < 1e-9);
				break;
			case IMGOP_SHEAR_X: case IMGOP_SHEAR_Y: case IMGOP_COLOR:
			case IMGOP_EQUALIZE: case IMGOP_AUTOCONTRAST: case IMGOP_INVERT:
				break;
			default:
				fail_msg("op %d is not in timm's v0 policy", ops[i].op);
			}
		}
	}
	assert_true(n > 1500); /* mean probability about 0.6 per op */
}

static void test_rand_levels(void **state)
{
	struct pipeline_cfg p = cfg();
	struct imgop_args ops[POLICY_MAX_OPS];
	char why[100];
	rng_t r;

	(void)state;
	/* mstd 0: every level is exactly m; timm's mapping of level 5 */
	assert_int_equal(policy_parse_aa("rand-m5-n8-p1", &p.aa, why, sizeof(why)), 0);
	for (uint32_t s = 0; s < 500; s++) {
		rng_init(&r, 3, 0, 0, s, RNG_POLICY, 0);
		assert_int_equal(policy_sample(&p, &r, 100, 50, ops), 8);
		for (int i = 0; i < 8; i++) {
			double m = ops[i].magnitude, a = fabs(m);
			assert_int_equal(ops[i].interp, IMGOP_BILINEAR);
			switch (ops[i].op) {
			case IMGOP_ROTATE: assert_true(fabs(a - 15) < 1e-12); break;
			case IMGOP_SHEAR_X: case IMGOP_SHEAR_Y: assert_true(fabs(a - 0.15) < 1e-12); break;
			case IMGOP_TRANSLATE_X: assert_true(fabs(a - 0.225 * 100) < 1e-9); break;
			case IMGOP_TRANSLATE_Y: assert_true(fabs(a - 0.225 * 50) < 1e-9); break;
			case IMGOP_POSTERIZE: assert_true(m == 2); break;
			case IMGOP_SOLARIZE: assert_true(m == 128); break;
			case IMGOP_SOLARIZE_ADD: assert_true(m == 55); break;
			case IMGOP_COLOR: case IMGOP_CONTRAST: case IMGOP_BRIGHTNESS:
			case IMGOP_SHARPNESS: /* factor 0.5 * 1.8 + 0.1 = 1.0 */
				assert_true(fabs(m) < 1e-12);
				break;
			default: assert_true(m == 0);
			}
		}
	}
	/* inc1: posterize 4 - int(2) = 2, solarize 256 - 128, enhance 1 +- 0.45 */
	assert_int_equal(policy_parse_aa("rand-m5-n8-p1-inc1", &p.aa, why, sizeof(why)), 0);
	for (uint32_t s = 0; s < 200; s++) {
		rng_init(&r, 3, 0, 0, s, RNG_POLICY, 0);
		policy_sample(&p, &r, 64, 64, ops);
		for (int i = 0; i < 8; i++)
			if (ops[i].op == IMGOP_COLOR || ops[i].op == IMGOP_BRIGHTNESS)
				assert_true(fabs(fabs(ops[i].magnitude) - 0.45) < 1e-12);
	}
	/* mmax clips: m 30 with mmax 10 = level 10 */
	assert_int_equal(policy_parse_aa("rand-m30-n8-p1", &p.aa, why, sizeof(why)), 0);
	rng_init(&r, 3, 0, 0, 0, RNG_POLICY, 0);
	policy_sample(&p, &r, 64, 64, ops);
	for (int i = 0; i < 8; i++)
		if (ops[i].op == IMGOP_ROTATE)
			assert_true(fabs(fabs(ops[i].magnitude) - 30) < 1e-12);
	/* p 0: nothing applied */
	assert_int_equal(policy_parse_aa("rand-m9-p0", &p.aa, why, sizeof(why)), 0);
	rng_init(&r, 3, 0, 0, 0, RNG_POLICY, 0);
	assert_int_equal(policy_sample(&p, &r, 64, 64, ops), 0);
}

static void test_erase_boxes(void **state)
{
	struct pipeline_cfg p = cfg();
	int32_t box[CONFIG_MAX_ERASE][4];
	int hist[4] = { 0 };
	rng_t r;

	(void)state;
	p.reprob = 1;
	p.recount = 3;
	p.remin = 0.02;
	p.remax = 1.0 / 3;
	for (uint32_t s = 0; s < 3000; s++) {
		rng_init(&r, 9, 0, 0, s, RNG_ERASE, 0);
		int n = policy_erase_boxes(&p, &r, 40, 30, box);
		assert_in_range(n, 0, 3);
		hist[n]++;
		for (int i = 0; i < n; i++) {
			int w = box[i][2] - box[i][0], h = box[i][3] - box[i][1];
			assert_true(box[i][0] >= 0 && box[i][1] >= 0);
			assert_true(box[i][2] <= 40 && box[i][3] <= 30);
			assert_true(w < 40 && h < 30 && w >= 0 && h >= 0);
		}
	}
	assert_true(hist[1] > 700 && hist[2] > 700 && hist[3] > 700);
	p.reprob = 0;
	rng_init(&r, 9, 0, 0, 0, RNG_ERASE, 0);
	assert_int_equal(policy_erase_boxes(&p, &r, 40, 30, box), 0);
}

static void test_erase_fill_modes(void **state)
{
	struct pipeline_cfg p = cfg();
	const int32_t box[1][4] = { { 2, 1, 6, 4 } };
	uint8_t img[8 * 6 * 3];
	rng_t r;

	(void)state;
	memset(img, 9, sizeof(img));
	p.remode = ERASE_CONST;
	policy_erase_fill(&p, img, 8, 6, 24, box, 1, NULL);
	assert_int_equal(img[(1 * 8 + 2) * 3 + 0], 124);
	assert_int_equal(img[(3 * 8 + 5) * 3 + 1], 116);
	assert_int_equal(img[(3 * 8 + 5) * 3 + 2], 104);
	assert_int_equal(img[(4 * 8 + 5) * 3], 9);  /* y1 exclusive */
	assert_int_equal(img[(3 * 8 + 6) * 3], 9);  /* x1 exclusive */

	memset(img, 9, sizeof(img));
	p.remode = ERASE_RAND;
	rng_init(&r, 1, 0, 0, 0, RNG_ERASE_FILL, 0);
	policy_erase_fill(&p, img, 8, 6, 24, box, 1, &r);
	for (int y = 1; y < 4; y++)
		for (int x = 2; x < 6; x++)
			assert_memory_equal(img + (y * 8 + x) * 3, img + (1 * 8 + 2) * 3, 3);

	/* pixel: bytes of rng_u32 words, low byte first */
	memset(img, 9, sizeof(img));
	p.remode = ERASE_PIXEL;
	rng_init(&r, 1, 0, 0, 0, RNG_ERASE_FILL, 0);
	policy_erase_fill(&p, img, 8, 6, 24, box, 1, &r);
	rng_init(&r, 1, 0, 0, 0, RNG_ERASE_FILL, 0);
	uint32_t w0 = rng_u32(&r);
	assert_int_equal(img[(1 * 8 + 2) * 3 + 0], w0 & 0xff);
	assert_int_equal(img[(1 * 8 + 2) * 3 + 1], (w0 >> 8) & 0xff);
	assert_int_equal(img[(1 * 8 + 3) * 3 + 0], (w0 >> 24) & 0xff);
}

static void test_jitter_sampling(void **state)
{
	struct pipeline_cfg p = cfg();
	struct imgop_args ops[POLICY_MAX_OPS];
	rng_t r;

	(void)state;
	p.jitter[0] = 0.4;
	p.jitter[2] = 1.5; /* saturation factor in [max(0, -0.5), 2.5] */
	p.jitter[3] = 0.1;
	p.jitter_on = true;
	for (uint32_t s = 0; s < 1000; s++) {
		rng_init(&r, 5, 0, 0, s, RNG_POLICY, 0);
		assert_int_equal(policy_sample(&p, &r, 16, 16, ops), 3);
		for (int i = 0; i < 3; i++) {
			double m = ops[i].magnitude;
			switch (ops[i].op) {
			case IMGOP_BRIGHTNESS: assert_true(m >= -0.4 && m <= 0.4); break;
			case IMGOP_COLOR: assert_true(m >= -1.0 && m <= 1.5); break;
			case IMGOP_HUE: assert_true(m >= -0.1 && m <= 0.1); break;
			default: fail_msg("op %d: contrast is off", ops[i].op);
			}
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_rand),
		cmocka_unit_test(test_parse_jitter),
		cmocka_unit_test(test_ta_wide_bins),
		cmocka_unit_test(test_original_policy_bins),
		cmocka_unit_test(test_v0_policy),
		cmocka_unit_test(test_rand_levels),
		cmocka_unit_test(test_erase_boxes),
		cmocka_unit_test(test_erase_fill_modes),
		cmocka_unit_test(test_jitter_sampling),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
