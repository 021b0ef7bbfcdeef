/*
 * test_imgops.c — imgops.c properties that need no reference library:
 * argument checking, identities, scratch sufficiency on odd sizes (run it
 * under ASan to make that last one bite). Pixel equality with torchvision
 * is tests/integration/test_imgops.py.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "imgops.h"

static void fill_random(uint8_t *p, size_t n, uint32_t seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1664525u + 1013904223u;
		p[i] = (uint8_t)(seed >> 24);
	}
}

static int apply(uint8_t *img, int w, int h, unsigned op, double mag, unsigned interp)
{
	struct imgop_args a = { .op = (uint8_t)op, .interp = (uint8_t)interp,
				.magnitude = mag, .fill = { 1, 2, 3 } };
	uint8_t *scratch = malloc(imgop_scratch_bytes(w, h));
	int rc;

	assert_non_null(scratch);
	rc = imgop_apply(img, w, h, (size_t)w * 3, &a, scratch);
	free(scratch);
	return rc;
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(imgop_name(IMGOP_IDENTITY), "Identity");
	assert_string_equal(imgop_name(IMGOP_SHEAR_X), "ShearX");
	assert_string_equal(imgop_name(IMGOP_COLOR), "Color");
	assert_string_equal(imgop_name(IMGOP_GAUSSIAN_BLUR), "GaussianBlur");
	for (unsigned i = 0; i < IMGOP_COUNT; i++)
		assert_non_null(imgop_name(i));
	assert_null(imgop_name(IMGOP_COUNT));
	assert_null(imgop_name(255));
}

static void test_bad_arguments(void **state)
{
	uint8_t img[8 * 8 * 3] = { 0 };
	uint8_t *scratch = malloc(imgop_scratch_bytes(8, 8));
	struct imgop_args a = { .op = IMGOP_INVERT };

	(void)state;
	assert_non_null(scratch);
	/* unknown op, bad interpolation */
	a.op = IMGOP_COUNT;
	assert_int_equal(imgop_apply(img, 8, 8, 24, &a, scratch), -EINVAL);
	a.op = 200;
	assert_int_equal(imgop_apply(img, 8, 8, 24, &a, scratch), -EINVAL);
	a.op = IMGOP_ROTATE;
	a.interp = 2;
	assert_int_equal(imgop_apply(img, 8, 8, 24, &a, scratch), -EINVAL);
	a.interp = IMGOP_NEAREST;
	/* bad geometry and pointers */
	a.op = IMGOP_INVERT;
	assert_int_equal(imgop_apply(img, 0, 8, 24, &a, scratch), -EINVAL);
	assert_int_equal(imgop_apply(img, 8, -1, 24, &a, scratch), -EINVAL);
	assert_int_equal(imgop_apply(img, 8, 8, 23, &a, scratch), -EINVAL);
	assert_int_equal(imgop_apply(NULL, 8, 8, 24, &a, scratch), -EINVAL);
	assert_int_equal(imgop_apply(img, 8, 8, 24, NULL, scratch), -EINVAL);
	assert_int_equal(imgop_apply(img, 8, 8, 24, &a, NULL), -EINVAL);
	/* magnitudes outside each op's domain (torchvision raises for these) */
	struct { unsigned op; double mag; } bad[] = {
		{ IMGOP_BRIGHTNESS, -1.0001 }, { IMGOP_COLOR, -2 }, { IMGOP_CONTRAST, NAN },
		{ IMGOP_SHARPNESS, INFINITY }, { IMGOP_POSTERIZE, 9 }, { IMGOP_POSTERIZE, -1 },
		{ IMGOP_SOLARIZE, 255.01 }, { IMGOP_SOLARIZE, NAN }, { IMGOP_HUE, 0.5001 },
		{ IMGOP_HUE, -0.51 }, { IMGOP_HUE, NAN }, { IMGOP_GAUSSIAN_BLUR, 0 },
		{ IMGOP_GAUSSIAN_BLUR, -1 }, { IMGOP_GAUSSIAN_BLUR, 65 },
		{ IMGOP_ROTATE, NAN }, { IMGOP_SHEAR_X, INFINITY }, { IMGOP_SHEAR_Y, -INFINITY },
		{ IMGOP_TRANSLATE_X, NAN }, { IMGOP_TRANSLATE_Y, 1e300 },
		{ IMGOP_SOLARIZE_ADD, NAN },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t before[sizeof(img)];

		fill_random(img, sizeof(img), (uint32_t)i);
		memcpy(before, img, sizeof(img));
		a.op = (uint8_t)bad[i].op;
		a.magnitude = bad[i].mag;
		assert_int_equal(imgop_apply(img, 8, 8, 24, &a, scratch), -EINVAL);
		/* a refused op leaves the image alone */
		assert_memory_equal(img, before, sizeof(img));
	}
	/* the edges of the domains are accepted */
	struct { unsigned op; double mag; } good[] = {
		{ IMGOP_BRIGHTNESS, -1 }, { IMGOP_POSTERIZE, 0 }, { IMGOP_POSTERIZE, 8.99 },
		{ IMGOP_SOLARIZE, 255 }, { IMGOP_SOLARIZE, -1e9 }, { IMGOP_HUE, 0.5 },
		{ IMGOP_HUE, -0.5 }, { IMGOP_GAUSSIAN_BLUR, 64 }, { IMGOP_GAUSSIAN_BLUR, 1e-6 },
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		a.op = (uint8_t)good[i].op;
		a.magnitude = good[i].mag;
		assert_int_equal(imgop_apply(img, 8, 8, 24, &a, scratch), 0);
	}
	free(scratch);
}

static void test_identities(void **state)
{
	enum { W = 37, H = 23 };
	uint8_t img[W * H * 3], orig[W * H * 3];

	(void)state;
	fill_random(orig, sizeof(orig), 7);
	/* ops that must leave the image unchanged */
	struct { unsigned op; double mag; } same[] = {
		{ IMGOP_IDENTITY, 0 }, { IMGOP_IDENTITY, 123 }, { IMGOP_BRIGHTNESS, 0 },
		{ IMGOP_COLOR, 0 }, { IMGOP_CONTRAST, 0 }, { IMGOP_SHARPNESS, 0 },
		{ IMGOP_POSTERIZE, 8 }, { IMGOP_POSTERIZE, 8.7 },
		/* not Hue 0: torchvision's float round trip truncates (x - 1) */
		{ IMGOP_SOLARIZE_ADD, 0 }, { IMGOP_ROTATE, 0 },
		{ IMGOP_SHEAR_X, 0 }, { IMGOP_SHEAR_Y, 0 }, { IMGOP_TRANSLATE_X, 0.9 },
		{ IMGOP_TRANSLATE_Y, -0.9 },
	};
	for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++)
		for (unsigned interp = 0; interp < 2; interp++) {
			memcpy(img, orig, sizeof(img));
			assert_int_equal(apply(img, W, H, same[i].op, same[i].mag, interp), 0);
			assert_memory_equal(img, orig, sizeof(img));
		}
	/* Invert twice, Rotate 180 twice, Translate there and back inside */
	memcpy(img, orig, sizeof(img));
	assert_int_equal(apply(img, W, H, IMGOP_INVERT, 0, 0), 0);
	assert_int_not_equal(memcmp(img, orig, sizeof(img)), 0);
	assert_int_equal(apply(img, W, H, IMGOP_INVERT, 0, 0), 0);
	assert_memory_equal(img, orig, sizeof(img));
	assert_int_equal(apply(img, W, H, IMGOP_ROTATE, 180, 0), 0);
	assert_int_equal(apply(img, W, H, IMGOP_ROTATE, -180, 1), 0);
	assert_memory_equal(img, orig, sizeof(img));
	/* Grayscale: three equal channels; Posterize 0: black; Solarize 0:
	 * inverted */
	memcpy(img, orig, sizeof(img));
	assert_int_equal(apply(img, W, H, IMGOP_GRAYSCALE, 0, 0), 0);
	for (size_t k = 0; k < sizeof(img); k += 3) {
		assert_int_equal(img[k], img[k + 1]);
		assert_int_equal(img[k], img[k + 2]);
	}
	memcpy(img, orig, sizeof(img));
	assert_int_equal(apply(img, W, H, IMGOP_POSTERIZE, 0, 0), 0);
	for (size_t k = 0; k < sizeof(img); k++)
		assert_int_equal(img[k], 0);
	memcpy(img, orig, sizeof(img));
	assert_int_equal(apply(img, W, H, IMGOP_SOLARIZE, 0, 0), 0);
	for (size_t k = 0; k < sizeof(img); k++)
		assert_int_equal(img[k], 255 - orig[k]);
	/* Solarize 255 inverts only 255 */
	memcpy(img, orig, sizeof(img));
	assert_int_equal(apply(img, W, H, IMGOP_SOLARIZE, 255, 0), 0);
	for (size_t k = 0; k < sizeof(img); k++)
		assert_int_equal(img[k], orig[k] == 255 ? 0 : orig[k]);
	/* Translate out of the image: all fill */
	memcpy(img, orig, sizeof(img));
	assert_int_equal(apply(img, W, H, IMGOP_TRANSLATE_X, 1e6, 1), 0);
	for (size_t k = 0; k < sizeof(img); k += 3) {
		assert_int_equal(img[k], 1);
		assert_int_equal(img[k + 1], 2);
		assert_int_equal(img[k + 2], 3);
	}
}

/*
 * Every op on odd and degenerate sizes, with exactly imgop_scratch_bytes
 * of heap scratch and an image with no slack either side, and a padded
 * stride whose padding bytes must not change: under ASan an overrun
 * anywhere is a crash.
 */
static void test_scratch_and_bounds(void **state)
{
	static const int sizes[][2] = { { 1, 1 }, { 1, 7 }, { 7, 1 }, { 2, 2 }, { 3, 3 },
					{ 5, 131 }, { 97, 131 }, { 224, 224 }, { 301, 17 } };
	static const double mags[IMGOP_COUNT] = {
		[IMGOP_SHEAR_X] = 0.3, [IMGOP_SHEAR_Y] = -0.3, [IMGOP_TRANSLATE_X] = 3,
		[IMGOP_TRANSLATE_Y] = -3, [IMGOP_ROTATE] = 33, [IMGOP_BRIGHTNESS] = 0.5,
		[IMGOP_COLOR] = 0.5, [IMGOP_CONTRAST] = 0.5, [IMGOP_SHARPNESS] = 0.9,
		[IMGOP_POSTERIZE] = 3, [IMGOP_SOLARIZE] = 100, [IMGOP_HUE] = 0.3,
		[IMGOP_SOLARIZE_ADD] = 50, [IMGOP_GAUSSIAN_BLUR] = 64,
	};

	(void)state;
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		int w = sizes[s][0], h = sizes[s][1];
		size_t stride = (size_t)w * 3 + 5, n = stride * (size_t)(h - 1) + (size_t)w * 3;
		size_t sb = imgop_scratch_bytes(w, h);

		for (unsigned op = 0; op < IMGOP_COUNT; op++)
			for (unsigned interp = 0; interp < 2; interp++) {
				struct imgop_args a = { .op = (uint8_t)op, .interp = (uint8_t)interp,
							.magnitude = mags[op], .fill = { 9, 8, 7 } };
				uint8_t *img = malloc(n), *scratch = malloc(sb), *ref = malloc(n);

				assert_non_null(img);
				assert_non_null(scratch);
				assert_non_null(ref);
				fill_random(img, n, (uint32_t)(s * 100 + op));
				memcpy(ref, img, n);
				assert_int_equal(imgop_apply(img, w, h, stride, &a, scratch), 0);
				for (int y = 0; y + 1 < h; y++)
					assert_memory_equal(img + (size_t)y * stride + (size_t)w * 3,
							    ref + (size_t)y * stride + (size_t)w * 3, 5);
				free(img);
				free(scratch);
				free(ref);
			}
	}
}

/* A saturation/hue/contrast op keeps a grey image grey, a flat image flat. */
static void test_grey_stays_grey(void **state)
{
	enum { W = 16, H = 9 };
	uint8_t img[W * H * 3];

	(void)state;
	for (unsigned op = IMGOP_COLOR; op <= IMGOP_HUE; op++) {
		double mag = op == IMGOP_POSTERIZE ? 4 : op == IMGOP_SOLARIZE ? 100 :
			     op == IMGOP_HUE ? 0.37 : 0.8;

		if (op == IMGOP_INVERT)
			continue;
		for (size_t k = 0; k < sizeof(img); k += 3)
			img[k] = img[k + 1] = img[k + 2] = (uint8_t)(k * 7 / 3);
		assert_int_equal(apply(img, W, H, op, mag, 0), 0);
		for (size_t k = 0; k < sizeof(img); k += 3) {
			assert_int_equal(img[k], img[k + 1]);
			assert_int_equal(img[k], img[k + 2]);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_identities),
		cmocka_unit_test(test_scratch_and_bounds),
		cmocka_unit_test(test_grey_stays_grey),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
