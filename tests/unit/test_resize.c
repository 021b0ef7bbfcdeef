/*
 * test_resize.c — resize.c properties that need no reference library.
 * Byte equality with PIL for random boxes is tests/integration/test_pixels.py.
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

#include "resize.h"
#include "test_util.h"

static double rng_unit(uint64_t *s)
{
	return (double)(tu_rng_next(s) >> 11) * 0x1p-53;
}

/* A random box inside w x h: sometimes integral, sometimes the whole. */
static void random_box(uint64_t *s, int w, int h, double b[4])
{
	switch (tu_rng_below(s, 4)) {
	case 0:
		b[0] = b[1] = 0;
		b[2] = w;
		b[3] = h;
		break;
	case 1:
		b[0] = tu_rng_below(s, w);
		b[1] = tu_rng_below(s, h);
		b[2] = b[0] + 1 + tu_rng_below(s, w - (int)b[0]);
		b[3] = b[1] + 1 + tu_rng_below(s, h - (int)b[1]);
		break;
	default:
		b[0] = rng_unit(s) * (w - 0.01);
		b[1] = rng_unit(s) * (h - 0.01);
		b[2] = b[0] + (w - b[0]) * (0.001 + 0.999 * rng_unit(s));
		b[3] = b[1] + (h - b[1]) * (0.001 + 0.999 * rng_unit(s));
		break;
	}
}

static void test_constant_stays_constant(void **state)
{
	resizer_t *r = resizer_new();
	uint64_t seed = 1;
	uint8_t *src = malloc(300 * 200 * 3), *dst = malloc(400 * 400 * 3);

	(void)state;
	assert_non_null(r);
	assert_non_null(src);
	assert_non_null(dst);
	for (int iter = 0; iter < 400; iter++) {
		int sw = 1 + tu_rng_below(&seed, 300), sh = 1 + tu_rng_below(&seed, 200);
		int dw = 1 + tu_rng_below(&seed, 400), dh = 1 + tu_rng_below(&seed, 400);
		enum resize_filter f = (enum resize_filter)(iter & 1);
		uint8_t rgb[3] = { (uint8_t)tu_rng_next(&seed), (uint8_t)tu_rng_next(&seed),
				   (uint8_t)(iter % 2 ? 255 : 0) };
		double b[4];

		for (int i = 0; i < sw * sh; i++)
			memcpy(src + i * 3, rgb, 3);
		random_box(&seed, sw, sh, b);
		assert_int_equal(resize_rgb(r, f, src, sw, sh, (size_t)sw * 3, b[0], b[1], b[2],
					    b[3], dst, dw, dh, (size_t)dw * 3), 0);
		for (int i = 0; i < dw * dh; i++)
			if (memcmp(dst + i * 3, rgb, 3) != 0) {
				print_error("%dx%d box (%g,%g,%g,%g) -> %dx%d %s: pixel %d is "
					    "%d,%d,%d not %d,%d,%d\n", sw, sh, b[0], b[1], b[2],
					    b[3], dw, dh, f ? "bicubic" : "bilinear", i,
					    dst[i * 3], dst[i * 3 + 1], dst[i * 3 + 2], rgb[0],
					    rgb[1], rgb[2]);
				fail();
			}
	}
	free(src);
	free(dst);
	resizer_destroy(&r);
	resizer_destroy(&r);
	assert_null(r);
}

static void test_identity_is_copy(void **state)
{
	resizer_t *r = resizer_new();
	uint64_t seed = 2;
	const int w = 37, h = 23;
	const size_t sstride = w * 3 + 5, dstride = w * 3 + 11;
	uint8_t *src = malloc(sstride * h), *dst = malloc(dstride * h);

	(void)state;
	assert_non_null(r);
	assert_non_null(src);
	assert_non_null(dst);
	for (size_t i = 0; i < sstride * h; i++)
		src[i] = (uint8_t)tu_rng_next(&seed);
	for (int f = 0; f < 2; f++) {
		memset(dst, 0xAB, dstride * h);
		assert_int_equal(resize_rgb(r, (enum resize_filter)f, src, w, h, sstride, 0, 0, w,
					    h, dst, w, h, dstride), 0);
		for (int y = 0; y < h; y++) {
			assert_memory_equal(dst + y * dstride, src + y * sstride, w * 3);
			/* The stride padding is not written. */
			assert_int_equal(dst[y * dstride + w * 3], 0xAB);
		}
		/* An integral box of the output's size is a crop. */
		assert_int_equal(resize_rgb(r, (enum resize_filter)f, src, w, h, sstride, 5, 3,
					    25, 13, dst, 20, 10, dstride), 0);
		for (int y = 0; y < 10; y++)
			assert_memory_equal(dst + y * dstride, src + (y + 3) * sstride + 5 * 3,
					    20 * 3);
	}
	free(src);
	free(dst);
	resizer_destroy(&r);
}

/*
 * 4x4 -> 2x2, R = 70x, G = 70y, B = 100.
 * Bilinear: scale 2 widens the triangle to support 2; output 0 has centre
 * 1.0, taps x = 0,1,2 at distances 0.5,0.5,1.5 -> weights 3/4,3/4,1/4 ->
 * 3/7,3/7,1/7: (0*3 + 70*3 + 140) / 7 = 50. Output 1: centre 3.0, taps
 * 1,2,3 -> 1/7,3/7,3/7: (70 + 420 + 630) / 7 = 160.
 * Bicubic (a = -0.5): output 0 taps 0..3 at distances .5,.5,1.5,2.5 of the
 * widened kernel, i.e. K(.25)=.8671875, K(.25), K(.75)=.2265625,
 * K(1.25)=-.0703125, sum 1.890625: 70 * (.8671875 + 2*.2265625 -
 * 3*.0703125) / 1.890625 = 41.07 -> 41; by symmetry output 1 is 210 - 41.
 * The temp row after the horizontal pass is exact for G (constant rows).
 */
static void test_downscale_by_two_by_hand(void **state)
{
	resizer_t *r = resizer_new();
	uint8_t src[4 * 4 * 3], dst[2 * 2 * 3];
	static const uint8_t want_bilinear[] = {
		50, 50, 100, 160, 50, 100,
		50, 160, 100, 160, 160, 100,
	};
	static const uint8_t want_bicubic[] = {
		41, 41, 100, 169, 41, 100,
		41, 169, 100, 169, 169, 100,
	};

	(void)state;
	assert_non_null(r);
	for (int y = 0; y < 4; y++)
		for (int x = 0; x < 4; x++) {
			src[(y * 4 + x) * 3 + 0] = (uint8_t)(70 * x);
			src[(y * 4 + x) * 3 + 1] = (uint8_t)(70 * y);
			src[(y * 4 + x) * 3 + 2] = 100;
		}
	assert_int_equal(resize_rgb(r, RESIZE_BILINEAR, src, 4, 4, 12, 0, 0, 4, 4, dst, 2, 2, 6),
			 0);
	assert_memory_equal(dst, want_bilinear, sizeof(dst));
	assert_int_equal(resize_rgb(r, RESIZE_BICUBIC, src, 4, 4, 12, 0, 0, 4, 4, dst, 2, 2, 6),
			 0);
	assert_memory_equal(dst, want_bicubic, sizeof(dst));
	resizer_destroy(&r);
}

/* Upscale 2x of a 2-pixel ramp, bilinear: centres at 0.25, 0.75, ... of
 * the source; pixel 1 (centre 0.75) = 0.75*a + 0.25*b etc., edges clamp. */
static void test_upscale_by_hand(void **state)
{
	resizer_t *r = resizer_new();
	uint8_t src[2 * 3] = { 0, 0, 0, 200, 100, 40 }, dst[4 * 3];
	static const uint8_t want[] = { 0, 0, 0, 50, 25, 10, 150, 75, 30, 200, 100, 40 };

	(void)state;
	assert_non_null(r);
	assert_int_equal(resize_rgb(r, RESIZE_BILINEAR, src, 2, 1, 6, 0, 0, 2, 1, dst, 4, 1, 12),
			 0);
	assert_memory_equal(dst, want, sizeof(want));
	resizer_destroy(&r);
}

static void test_invalid_arguments(void **state)
{
	resizer_t *r = resizer_new();
	uint8_t src[8 * 8 * 3] = { 0 }, dst[8 * 8 * 3];

	(void)state;
	assert_non_null(r);
#define BAD(...) assert_int_equal(resize_rgb(__VA_ARGS__), -EINVAL)
	BAD(NULL, RESIZE_BILINEAR, src, 8, 8, 24, 0, 0, 8, 8, dst, 4, 4, 12);
	BAD(r, (enum resize_filter)7, src, 8, 8, 24, 0, 0, 8, 8, dst, 4, 4, 12);
	BAD(r, RESIZE_BILINEAR, NULL, 8, 8, 24, 0, 0, 8, 8, dst, 4, 4, 12);
	BAD(r, RESIZE_BILINEAR, src, 8, 8, 24, 0, 0, 8, 8, NULL, 4, 4, 12);
	BAD(r, RESIZE_BILINEAR, src, 0, 8, 24, 0, 0, 8, 8, dst, 4, 4, 12);
	BAD(r, RESIZE_BILINEAR, src, 8, -1, 24, 0, 0, 8, 8, dst, 4, 4, 12);
	BAD(r, RESIZE_BILINEAR, src, 8, 8, 24, 0, 0, 8, 8, dst, 0, 4, 12);
	BAD(r, RESIZE_BILINEAR, src, 8, 8, 24, 0, 0, 8, 8, dst, 4, 0, 12);
	BAD(r, RESIZE_BILINEAR, src, 8, 8, 23, 0, 0, 8, 8, dst, 4, 4, 12);
	BAD(r, RESIZE_BILINEAR, src, 8, 8, 24, 0, 0, 8, 8, dst, 4, 4, 11);
	BAD(r, RESIZE_BILINEAR, src, 8, 8, 24, -0.5, 0, 8, 8, dst, 4, 4, 12);
	BAD(r, RESIZE_BILINEAR, src, 8, 8, 24, 0, -1, 8, 8, dst, 4, 4, 12);
	BAD(r, RESIZE_BILINEAR, src, 8, 8, 24, 0, 0, 8.5, 8, dst, 4, 4, 12);
	BAD(r, RESIZE_BILINEAR, src, 8, 8, 24, 0, 0, 8, 9, dst, 4, 4, 12);
	BAD(r, RESIZE_BILINEAR, src, 8, 8, 24, 3, 0, 3, 8, dst, 4, 4, 12);
	BAD(r, RESIZE_BILINEAR, src, 8, 8, 24, 4, 0, 3, 8, dst, 4, 4, 12);
	BAD(r, RESIZE_BILINEAR, src, 8, 8, 24, 0, 5, 8, 5, dst, 4, 4, 12);
	BAD(r, RESIZE_BILINEAR, src, 8, 8, 24, NAN, 0, 8, 8, dst, 4, 4, 12);
	BAD(r, RESIZE_BICUBIC, src, 8, 8, 24, 0, 0, 8, NAN, dst, 4, 4, 12);
	BAD(r, RESIZE_BICUBIC, src, 8, 8, 24, 0, 0, INFINITY, 8, dst, 4, 4, 12);
#undef BAD
	/* The boundary cases are valid. */
	assert_int_equal(resize_rgb(r, RESIZE_BICUBIC, src, 8, 8, 24, 0, 0, 8, 8, dst, 1, 1, 3), 0);
	assert_int_equal(resize_rgb(r, RESIZE_BICUBIC, src, 1, 1, 3, 0, 0, 1, 1, dst, 8, 8, 24), 0);
	assert_int_equal(resize_rgb(r, RESIZE_BICUBIC, src, 8, 8, 24, 7.9, 7.9, 8, 8, dst, 3, 3, 9),
			 0);
	resizer_destroy(&r);
}

/* Reusing one resizer across shrinking and growing sizes gives the same
 * bytes as a fresh one (no state leaks between calls). */
static void test_reuse_matches_fresh(void **state)
{
	resizer_t *r = resizer_new();
	uint64_t seed = 3;
	uint8_t *src = malloc(120 * 90 * 3), *a = malloc(200 * 200 * 3), *b = malloc(200 * 200 * 3);

	(void)state;
	assert_non_null(r);
	assert_non_null(src);
	assert_non_null(a);
	assert_non_null(b);
	for (int i = 0; i < 120 * 90 * 3; i++)
		src[i] = (uint8_t)tu_rng_next(&seed);
	for (int iter = 0; iter < 100; iter++) {
		int sw = 1 + tu_rng_below(&seed, 120), sh = 1 + tu_rng_below(&seed, 90);
		int dw = 1 + tu_rng_below(&seed, 200), dh = 1 + tu_rng_below(&seed, 200);
		enum resize_filter f = (enum resize_filter)tu_rng_below(&seed, 2);
		resizer_t *fresh = resizer_new();
		double bx[4];

		assert_non_null(fresh);
		random_box(&seed, sw, sh, bx);
		assert_int_equal(resize_rgb(r, f, src, sw, sh, 120 * 3, bx[0], bx[1], bx[2], bx[3],
					    a, dw, dh, (size_t)dw * 3), 0);
		assert_int_equal(resize_rgb(fresh, f, src, sw, sh, 120 * 3, bx[0], bx[1], bx[2],
					    bx[3], b, dw, dh, (size_t)dw * 3), 0);
		assert_memory_equal(a, b, (size_t)dw * dh * 3);
		resizer_destroy(&fresh);
	}
	free(src);
	free(a);
	free(b);
	resizer_destroy(&r);
}

/* The SSE2 loops against the portable ones: random sizes and boxes, taps
 * touching the right edge (where the 8-byte loads stop), odd and even tap
 * counts, and kernels of thousands of taps (where the split int32 lanes
 * wrap before they are recombined). */
static void test_simd_matches_scalar(void **state)
{
	resizer_t *vec = resizer_new(), *ref = resizer_new();
	uint64_t seed = 4;
	const int maxw = 2100, maxh = 90;
	uint8_t *src = malloc((size_t)maxw * maxh * 3);
	uint8_t *a = malloc(300 * 300 * 3), *b = malloc(300 * 300 * 3);

	(void)state;
	assert_non_null(vec);
	assert_non_null(ref);
	assert_non_null(src);
	assert_non_null(a);
	assert_non_null(b);
	assert_false(resizer_set_simd(ref, false));
	if (!resizer_set_simd(vec, true)) {
		print_message("no SIMD in this build: nothing to compare\n");
		goto out;
	}
	for (size_t i = 0; i < (size_t)maxw * maxh * 3; i++)
		src[i] = (uint8_t)(tu_rng_next(&seed) >> 56);
	for (int iter = 0; iter < 600; iter++) {
		int big = iter % 10 == 0;
		int sw = big ? 1000 + tu_rng_below(&seed, maxw - 1000) : 1 + tu_rng_below(&seed, 150);
		int sh = 1 + tu_rng_below(&seed, maxh);
		int dw = 1 + tu_rng_below(&seed, big ? 5 : 300), dh = 1 + tu_rng_below(&seed, 300);
		enum resize_filter f = (enum resize_filter)tu_rng_below(&seed, 2);
		double bx[4];

		random_box(&seed, sw, sh, bx);
		if (iter % 7 == 0)
			dh = sh; /* horizontal only, when the box allows */
		assert_int_equal(resize_rgb(vec, f, src, sw, sh, (size_t)maxw * 3, bx[0], bx[1],
					    bx[2], bx[3], a, dw, dh, (size_t)dw * 3), 0);
		assert_int_equal(resize_rgb(ref, f, src, sw, sh, (size_t)maxw * 3, bx[0], bx[1],
					    bx[2], bx[3], b, dw, dh, (size_t)dw * 3), 0);
		if (memcmp(a, b, (size_t)dw * dh * 3) != 0) {
			print_error("%dx%d box (%.17g,%.17g,%.17g,%.17g) -> %dx%d %s differs\n",
				    sw, sh, bx[0], bx[1], bx[2], bx[3], dw, dh,
				    f ? "bicubic" : "bilinear");
			fail();
		}
	}
out:
	free(src);
	free(a);
	free(b);
	resizer_destroy(&vec);
	resizer_destroy(&ref);
}

/* resize_rgb_crop(): a window of the whole resize, from the whole image
 * or from a region of it holding the window's taps, equals cropping
 * resize_rgb()'s full output; a region lacking taps is -ERANGE. */
static void test_crop_window_of_whole_resize(void **state)
{
	static const int dims[][4] = {
		/* W, H, out_w, out_h */
		{ 300, 200, 110, 73 }, { 200, 300, 73, 109 }, { 50, 40, 91, 73 },
		{ 73, 120, 73, 120 }, { 73, 90, 73, 100 }, { 80, 73, 90, 73 },
	};
	uint64_t seed = 99;
	(void)state;

	for (size_t t = 0; t < sizeof(dims) / sizeof(dims[0]); t++) {
		int W = dims[t][0], H = dims[t][1], ow = dims[t][2], oh = dims[t][3];
		int size = 64 < ow && 64 < oh ? 64 : (ow < oh ? ow : oh) - 1;
		int left = (ow - size) / 2, top = (oh - size) / 2;
		uint8_t *src = malloc((size_t)W * H * 3);
		uint8_t *full = malloc((size_t)ow * oh * 3);
		uint8_t *win = malloc((size_t)size * size * 3);
		resizer_t *r = resizer_new();

		assert_non_null(src);
		assert_non_null(full);
		assert_non_null(win);
		for (size_t i = 0; i < (size_t)W * H * 3; i++)
			src[i] = (uint8_t)tu_rng_below(&seed, 256);
		for (int f = RESIZE_BILINEAR; f <= RESIZE_BICUBIC; f++) {
			assert_int_equal(resize_rgb(r, (enum resize_filter)f, src, W, H,
						    (size_t)W * 3, 0, 0, W, H, full, ow, oh,
						    (size_t)ow * 3), 0);
			/* whole image as the buffer */
			assert_int_equal(resize_rgb_crop(r, (enum resize_filter)f, src, 0, 0,
							 W, H, (size_t)W * 3, W, H, ow, oh,
							 left, top, win, size, size,
							 (size_t)size * 3), 0);
			for (int y = 0; y < size; y++)
				assert_memory_equal(win + (size_t)y * size * 3,
						    full + ((size_t)(top + y) * ow + left) * 3,
						    (size_t)size * 3);
			/* a region with a margin of 6 source pixels */
			double sx = (double)W / ow, sy = (double)H / oh;
			int x0 = (int)(left * sx) - 6, y0 = (int)(top * sy) - 6;
			int x1 = (int)((left + size) * sx) + 7, y1 = (int)((top + size) * sy) + 7;
			x0 = x0 < 0 ? 0 : x0;
			y0 = y0 < 0 ? 0 : y0;
			x1 = x1 > W ? W : x1;
			y1 = y1 > H ? H : y1;
			memset(win, 0, (size_t)size * size * 3);
			assert_int_equal(resize_rgb_crop(r, (enum resize_filter)f,
							 src + ((size_t)y0 * W + x0) * 3, x0, y0,
							 x1 - x0, y1 - y0, (size_t)W * 3, W, H,
							 ow, oh, left, top, win, size, size,
							 (size_t)size * 3), 0);
			for (int y = 0; y < size; y++)
				assert_memory_equal(win + (size_t)y * size * 3,
						    full + ((size_t)(top + y) * ow + left) * 3,
						    (size_t)size * 3);
		}
		/* a region missing the window's first column of taps */
		if (W != ow) {
			int x0 = (int)(left * (double)W / ow) + 3;
			assert_int_equal(resize_rgb_crop(r, RESIZE_BILINEAR, src + (size_t)x0 * 3,
							 x0, 0, W - x0, H, (size_t)W * 3, W, H,
							 ow, oh, left, top, win, size, size,
							 (size_t)size * 3), -ERANGE);
		}
		resizer_destroy(&r);
		free(src);
		free(full);
		free(win);
	}
}

static void mirror(uint8_t *img, int w, int h)
{
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w / 2; x++)
			for (int c = 0; c < 3; c++) {
				uint8_t *a = img + ((size_t)y * w + x) * 3 + c;
				uint8_t *b = img + ((size_t)y * w + (w - 1 - x)) * 3 + c;
				uint8_t t = *a;

				*a = *b;
				*b = t;
			}
}

/* RESIZE_FLIP (folded into the horizontal pass) gives exactly the mirror
 * of the unflipped result, SIMD and portable, every filter, also where no
 * horizontal pass runs (vertical only, plain crop, identity); the same
 * resizer alternating flip and no flip on one box (the coefficient cache
 * must not hand one the other's order). */
static void test_flip_is_mirror(void **state)
{
	resizer_t *r = resizer_new();
	uint64_t seed = 5;
	const int maxw = 700, maxh = 80;
	uint8_t *src = malloc((size_t)maxw * maxh * 3);
	uint8_t *a = malloc(260 * 260 * 3), *b = malloc(260 * 260 * 3);

	(void)state;
	assert_non_null(r);
	assert_non_null(src);
	assert_non_null(a);
	assert_non_null(b);
	for (size_t i = 0; i < (size_t)maxw * maxh * 3; i++)
		src[i] = (uint8_t)(tu_rng_next(&seed) >> 56);
	for (int iter = 0; iter < 800; iter++) {
		int sw = 1 + tu_rng_below(&seed, iter % 9 == 0 ? maxw : 120);
		int sh = 1 + tu_rng_below(&seed, maxh);
		int dw = 1 + tu_rng_below(&seed, 260), dh = 1 + tu_rng_below(&seed, 260);
		enum resize_filter f = (enum resize_filter)tu_rng_below(&seed, 2);
		double bx[4];

		resizer_set_simd(r, iter % 3 != 0);
		random_box(&seed, sw, sh, bx);
		if (iter % 5 == 0)
			dw = sw; /* vertical only when the box is the whole width */
		if (iter % 11 == 0) { /* plain crop */
			dw = (int)(bx[2] - bx[0]) > 0 ? (int)(bx[2] - bx[0]) : 1;
			dh = (int)(bx[3] - bx[1]) > 0 ? (int)(bx[3] - bx[1]) : 1;
			bx[0] = floor(bx[0]);
			bx[1] = floor(bx[1]);
			bx[2] = bx[0] + dw;
			bx[3] = bx[1] + dh;
		}
		if (dw > 260 || dh > 260 || bx[2] > sw || bx[3] > sh)
			continue;
		for (int rep = 0; rep < 2; rep++) {
			assert_int_equal(resize_rgb(r, f, src, sw, sh, (size_t)maxw * 3, bx[0], bx[1],
						    bx[2], bx[3], a, dw, dh, (size_t)dw * 3), 0);
			assert_int_equal(resize_rgb_ex(r, f, RESIZE_FLIP, src, sw, sh,
						       (size_t)maxw * 3, bx[0], bx[1], bx[2], bx[3],
						       b, dw, dh, (size_t)dw * 3), 0);
			mirror(a, dw, dh);
			if (memcmp(a, b, (size_t)dw * dh * 3) != 0) {
				print_error("%dx%d box (%.17g,%.17g,%.17g,%.17g) -> %dx%d %s simd %d "
					    "rep %d: flip differs\n", sw, sh, bx[0], bx[1], bx[2],
					    bx[3], dw, dh, f ? "bicubic" : "bilinear", iter % 3 != 0, rep);
				fail();
			}
		}
	}
	assert_int_equal(resize_rgb_ex(r, RESIZE_BILINEAR, 2u, src, 10, 10, 30, 0, 0, 10, 10,
				       a, 5, 5, 15), -EINVAL);
	free(src);
	free(a);
	free(b);
	resizer_destroy(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_constant_stays_constant),
		cmocka_unit_test(test_identity_is_copy),
		cmocka_unit_test(test_downscale_by_two_by_hand),
		cmocka_unit_test(test_upscale_by_hand),
		cmocka_unit_test(test_invalid_arguments),
		cmocka_unit_test(test_reuse_matches_fresh),
		cmocka_unit_test(test_simd_matches_scalar),
		cmocka_unit_test(test_flip_is_mirror),
		cmocka_unit_test(test_crop_window_of_whole_resize),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
