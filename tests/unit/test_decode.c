/*
 * test_decode.c — decode.c against JPEGs made at run time (jpeg_fixtures).
 *
 * Properties: a full decode is close to the pixels that were compressed; a
 * region decode (any region, any scale, any subsampling, progressive,
 * restart markers, arithmetic coding, gray, CMYK, YCCK) is byte-identical
 * to the same region of a full decode; limits are checked before any pixel
 * buffer exists; bad input of any kind gives an error with a message and
 * never a crash, and a truncated file never decodes to wrong pixels.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "decode.h"
#include "jpeg_fixtures.h"
#include "test_util.h"

static const struct decode_limits test_limits = {
	.max_pixels = 100u * 1000 * 1000,
	.max_file_bytes = 64u << 20,
};

struct variant {
	const char *name;
	struct jpeg_fixture_spec spec;
};

#define V(n, ...) { n, { .width = 203, .height = 157, .quality = 95, __VA_ARGS__ } }
static const struct variant variants[] = {
	V("gray", .components = 1),
	V("gray progressive", .components = 1, .progressive = true),
	V("444", .components = 3, .subsamp = JPEG_FIXTURE_444),
	V("422", .components = 3, .subsamp = JPEG_FIXTURE_422),
	V("420", .components = 3, .subsamp = JPEG_FIXTURE_420),
	V("440", .components = 3, .subsamp = JPEG_FIXTURE_440),
	V("411", .components = 3, .subsamp = JPEG_FIXTURE_411),
	V("420 progressive", .components = 3, .subsamp = JPEG_FIXTURE_420, .progressive = true),
	V("422 progressive", .components = 3, .subsamp = JPEG_FIXTURE_422, .progressive = true),
	V("420 restart 3", .components = 3, .subsamp = JPEG_FIXTURE_420, .restart_interval = 3),
	V("444 restart 1", .components = 3, .subsamp = JPEG_FIXTURE_444, .restart_interval = 1),
	V("420 arithmetic", .components = 3, .subsamp = JPEG_FIXTURE_420, .arithmetic = true),
	V("422 arithmetic progressive", .components = 3, .subsamp = JPEG_FIXTURE_422,
	  .arithmetic = true, .progressive = true),
	V("cmyk 444", .components = 4, .subsamp = JPEG_FIXTURE_444),
	V("cmyk 420 restart", .components = 4, .subsamp = JPEG_FIXTURE_420, .restart_interval = 2),
	V("cmyk plain 422", .components = 4, .subsamp = JPEG_FIXTURE_422, .plain_cmyk = true),
	V("ycck 420", .components = 4, .subsamp = JPEG_FIXTURE_420, .ycck = true),
	V("ycck 422 progressive", .components = 4, .subsamp = JPEG_FIXTURE_422, .ycck = true,
	  .progressive = true),
};
#undef V
#define NVARIANTS (sizeof(variants) / sizeof(variants[0]))

/* splitmix64 */
static void make_fixture(const struct jpeg_fixture_spec *s, uint8_t **jpg, size_t *len)
{
	int rc = jpeg_fixture_make(s, jpg, len);

	assert_int_equal(rc, 0);
	assert_non_null(*jpg);
}

/* Decode the whole image at 1/denom into a malloc'd packed RGB copy. */
static uint8_t *decode_full(decoder_t *d, const uint8_t *jpg, size_t len, int denom,
			    int *w, int *h)
{
	struct decoded out;
	uint8_t *copy;
	int iw, ih, rc;

	rc = decoder_open(d, jpg, len, &test_limits, &iw, &ih);
	if (rc != 0)
		print_error("open: %s\n", decoder_error(d));
	assert_int_equal(rc, 0);
	decoder_scaled_size(d, denom, w, h);
	assert_int_equal(*w, (iw + denom - 1) / denom);
	assert_int_equal(*h, (ih + denom - 1) / denom);
	rc = decoder_read(d, denom, 0, 0, *w, *h, &out);
	if (rc != 0)
		print_error("read: %s\n", decoder_error(d));
	assert_int_equal(rc, 0);
	assert_int_equal(out.width, *w);
	assert_int_equal(out.height, *h);
	assert_true(out.stride >= (size_t)*w * 3);
	copy = malloc((size_t)*w * (size_t)*h * 3);
	assert_non_null(copy);
	for (int y = 0; y < *h; y++)
		memcpy(copy + (size_t)y * (size_t)*w * 3, out.rgb + (size_t)y * out.stride,
		       (size_t)*w * 3);
	return copy;
}

/* Decode a region and compare it byte for byte with the full decode. */
static void check_region(decoder_t *d, const char *name, const uint8_t *jpg, size_t len,
			 const uint8_t *full, int fw, int denom,
			 int x0, int y0, int x1, int y1)
{
	struct decoded out;
	int rc;

	rc = decoder_open(d, jpg, len, &test_limits, NULL, NULL);
	assert_int_equal(rc, 0);
	rc = decoder_read(d, denom, x0, y0, x1, y1, &out);
	if (rc != 0)
		print_error("%s 1/%d [%d,%d)x[%d,%d): %s\n", name, denom, x0, x1, y0, y1,
			    decoder_error(d));
	assert_int_equal(rc, 0);
	assert_int_equal(out.width, x1 - x0);
	assert_int_equal(out.height, y1 - y0);
	for (int y = y0; y < y1; y++) {
		const uint8_t *want = full + ((size_t)y * (size_t)fw + (size_t)x0) * 3;
		const uint8_t *got = out.rgb + (size_t)(y - y0) * out.stride;

		if (memcmp(want, got, (size_t)(x1 - x0) * 3) != 0) {
			for (int x = 0; x < x1 - x0; x++)
				if (memcmp(want + x * 3, got + x * 3, 3) != 0) {
					print_error("%s 1/%d region [%d,%d)x[%d,%d): pixel "
						    "(%d,%d) is %d,%d,%d, full decode has "
						    "%d,%d,%d\n", name, denom, x0, x1, y0, y1,
						    x0 + x, y, got[x * 3], got[x * 3 + 1],
						    got[x * 3 + 2], want[x * 3], want[x * 3 + 1],
						    want[x * 3 + 2]);
					break;
				}
			fail();
		}
	}
}

/* The RGB the pattern should come out as. */
static void expected_rgb(const struct jpeg_fixture_spec *s, int x, int y, int rgb[3])
{
	if (s->components == 1) {
		rgb[0] = rgb[1] = rgb[2] = jpeg_fixture_pattern(s, x, y, 0);
	} else if (s->components == 3) {
		for (int c = 0; c < 3; c++)
			rgb[c] = jpeg_fixture_pattern(s, x, y, c);
	} else {
		int k = jpeg_fixture_pattern(s, x, y, 3);

		for (int c = 0; c < 3; c++)
			rgb[c] = ((255 - jpeg_fixture_pattern(s, x, y, c)) * (255 - k) + 127) / 255;
	}
}

static void test_full_decode_matches_pattern(void **state)
{
	decoder_t *d = decoder_new();

	(void)state;
	assert_non_null(d);
	for (size_t v = 0; v < NVARIANTS; v++) {
		const struct jpeg_fixture_spec *s = &variants[v].spec;
		uint8_t *jpg, *full;
		size_t len;
		double sum = 0;
		int w, h;

		make_fixture(s, &jpg, &len);
		full = decode_full(d, jpg, len, 1, &w, &h);
		assert_int_equal(w, s->width);
		assert_int_equal(h, s->height);
		for (int y = 0; y < h; y++)
			for (int x = 0; x < w; x++) {
				int want[3];

				expected_rgb(s, x, y, want);
				for (int c = 0; c < 3; c++)
					sum += abs(full[((size_t)y * (size_t)w + (size_t)x) * 3 + (size_t)c] -
						   want[c]);
			}
		sum /= (double)w * h * 3;
		if (sum > 6.0)
			print_error("%s: mean abs error %.2f\n", variants[v].name, sum);
		assert_true(sum <= 6.0);
		free(full);
		free(jpg);
	}
	decoder_destroy(&d);
	decoder_destroy(&d); /* idempotent */
	assert_null(d);
}

static void test_region_equals_full_decode(void **state)
{
	static const int denoms[] = { 1, 2, 4, 8 };
	decoder_t *d = decoder_new();
	uint64_t seed = 42;

	(void)state;
	assert_non_null(d);
	for (size_t v = 0; v < NVARIANTS; v++) {
		uint8_t *jpg;
		size_t len;

		make_fixture(&variants[v].spec, &jpg, &len);
		for (size_t di = 0; di < 4; di++) {
			int denom = denoms[di], w, h;
			uint8_t *full = decode_full(d, jpg, len, denom, &w, &h);

			/* Random regions, then ones on iMCU and row-group edges. */
			for (int i = 0; i < 60; i++) {
				int x0 = tu_rng_below(&seed, w), y0 = tu_rng_below(&seed, h);
				int x1 = x0 + 1 + tu_rng_below(&seed, w - x0);
				int y1 = y0 + 1 + tu_rng_below(&seed, h - y0);

				check_region(d, variants[v].name, jpg, len, full, w, denom,
					     x0, y0, x1, y1);
			}
			for (int a = 0; a + 1 < w && a < 70; a += 8) {
				int b = a + 16 < w ? a + 16 : w;

				check_region(d, variants[v].name, jpg, len, full, w, denom,
					     a, a % h, b, h);
				check_region(d, variants[v].name, jpg, len, full, w, denom,
					     a + 1, 0, b, (a + 3) % h + 1);
				check_region(d, variants[v].name, jpg, len, full, w, denom,
					     0, (a / 2) % h, a + 1, h);
			}
			check_region(d, variants[v].name, jpg, len, full, w, denom, 0, 0, w, h);
			check_region(d, variants[v].name, jpg, len, full, w, denom,
				     w - 1, h - 1, w, h);
			free(full);
		}
		free(jpg);
	}
	decoder_destroy(&d);
}

/* Every column range of a small image, a few row ranges: the crop edges
 * at every position relative to the iMCU grid. */
static void test_region_every_column_range(void **state)
{
	static const enum jpeg_fixture_subsamp subs[] = {
		JPEG_FIXTURE_420, JPEG_FIXTURE_422, JPEG_FIXTURE_440, JPEG_FIXTURE_411,
	};
	decoder_t *d = decoder_new();

	(void)state;
	assert_non_null(d);
	for (size_t si = 0; si < 4; si++) {
		struct jpeg_fixture_spec s = {
			.width = 37, .height = 35, .components = 3, .subsamp = subs[si],
			.quality = 90, .seed = 7,
		};
		int w, h;
		uint8_t *jpg, *full;
		size_t len;

		make_fixture(&s, &jpg, &len);
		full = decode_full(d, jpg, len, 1, &w, &h);
		for (int x0 = 0; x0 < w; x0++)
			for (int x1 = x0 + 1; x1 <= w; x1++) {
				check_region(d, "small", jpg, len, full, w, 1, x0, 0, x1, h);
				check_region(d, "small", jpg, len, full, w, 1, x0,
					     (x0 + x1) % h, x1, (x0 + x1) % h + 1);
			}
		/* Every first row, one row and to the bottom. */
		for (int y0 = 0; y0 < h; y0++) {
			check_region(d, "small", jpg, len, full, w, 1, 3, y0, 20, y0 + 1);
			check_region(d, "small", jpg, len, full, w, 1, 16, y0, 32, h);
		}
		free(full);
		free(jpg);
	}
	decoder_destroy(&d);
}

static void test_reuse_across_sizes(void **state)
{
	static const int sizes[][2] = { { 300, 200 }, { 17, 9 }, { 640, 480 }, { 1, 1 }, { 64, 64 } };
	decoder_t *d = decoder_new();

	(void)state;
	assert_non_null(d);
	for (int round = 0; round < 2; round++)
		for (size_t i = 0; i < 5; i++) {
			struct jpeg_fixture_spec s = {
				.width = sizes[i][0], .height = sizes[i][1], .components = 3,
				.subsamp = (enum jpeg_fixture_subsamp)(i % 3), .seed = (unsigned)i,
			};
			decoder_t *fresh = decoder_new();
			uint8_t *jpg, *a, *b;
			size_t len;
			int w, h, w2, h2;

			assert_non_null(fresh);
			make_fixture(&s, &jpg, &len);
			a = decode_full(d, jpg, len, 1, &w, &h);
			b = decode_full(fresh, jpg, len, 1, &w2, &h2);
			assert_memory_equal(a, b, (size_t)w * (size_t)h * 3);
			free(a);
			free(b);
			free(jpg);
			decoder_destroy(&fresh);
		}
	decoder_destroy(&d);
}

static void test_cmyk_conversion_exact(void **state)
{
	/* Flat colour at quality 100 survives JPEG unchanged, so the RGB is
	 * the conversion alone: R = (255 - C) * (255 - K) / 255, rounded. */
	decoder_t *d = decoder_new();
	uint8_t px[16 * 16 * 4];

	(void)state;
	assert_non_null(d);
	for (int plain = 0; plain < 2; plain++) {
		struct jpeg_fixture_spec s = {
			.width = 16, .height = 16, .components = 4, .quality = 100,
			.plain_cmyk = plain,
		};
		uint8_t *jpg, *full;
		size_t len;
		int w, h;

		for (size_t i = 0; i < sizeof(px); i += 4) {
			px[i + 0] = 200;
			px[i + 1] = 100;
			px[i + 2] = 50;
			px[i + 3] = 30;
		}
		assert_int_equal(jpeg_fixture_encode(&s, px, 16 * 4, &jpg, &len, NULL, 0), 0);
		full = decode_full(d, jpg, len, 1, &w, &h);
		/* 55*225/255 = 48.53, 155*225/255 = 136.76, 205*225/255 = 180.88 */
		assert_int_equal(full[0], 49);
		assert_int_equal(full[1], 137);
		assert_int_equal(full[2], 181);
		assert_int_equal(full[(16 * 16 - 1) * 3], 49);
		free(full);
		free(jpg);
	}
	decoder_destroy(&d);
}

static void test_scaled_size(void **state)
{
	decoder_t *d = decoder_new();
	struct jpeg_fixture_spec s = { .width = 203, .height = 157, .components = 3 };
	uint8_t *jpg;
	size_t len;
	int w, h;

	(void)state;
	assert_non_null(d);
	decoder_scaled_size(d, 1, &w, &h); /* nothing open */
	assert_int_equal(w, 0);
	make_fixture(&s, &jpg, &len);
	assert_int_equal(decoder_open(d, jpg, len, &test_limits, &w, &h), 0);
	assert_int_equal(w, 203);
	assert_int_equal(h, 157);
	decoder_scaled_size(d, 2, &w, &h);
	assert_int_equal(w, 102);
	assert_int_equal(h, 79);
	decoder_scaled_size(d, 4, &w, &h);
	assert_int_equal(w, 51);
	assert_int_equal(h, 40);
	decoder_scaled_size(d, 8, &w, &h);
	assert_int_equal(w, 26);
	assert_int_equal(h, 20);
	decoder_scaled_size(d, 3, &w, &h);
	assert_int_equal(w, 0);
	free(jpg);
	decoder_destroy(&d);
}

static void test_limits_before_allocation(void **state)
{
	decoder_t *d = decoder_new();
	struct jpeg_fixture_spec s = { .width = 64, .height = 48, .components = 3 };
	struct decode_limits lim = { .max_pixels = 64 * 48 - 1 };
	uint8_t *jpg;
	size_t len;
	long sof;
	int w = -1, h = -1;

	(void)state;
	assert_non_null(d);
	make_fixture(&s, &jpg, &len);
	assert_int_equal(decoder_open(d, jpg, len, &lim, &w, &h), -E2BIG);
	assert_int_equal(w, 0);
	assert_non_null(strstr(decoder_error(d), "64x48"));
	lim.max_pixels = 64 * 48;
	assert_int_equal(decoder_open(d, jpg, len, &lim, &w, &h), 0);
	assert_int_equal(w, 64);

	/* A header claiming 60000x60000 in a 1 kB file: refused from the
	 * header alone (a read would need 10 GB). */
	sof = jpeg_fixture_find_sof(jpg, len);
	assert_true(sof > 0);
	jpg[sof + 5] = 60000 >> 8;
	jpg[sof + 6] = 60000 & 255;
	jpg[sof + 7] = 60000 >> 8;
	jpg[sof + 8] = 60000 & 255;
	assert_int_equal(decoder_open(d, jpg, len, &test_limits, &w, &h), -E2BIG);
	assert_string_equal(decoder_error(d), "jpeg: image is 60000x60000 (3600000000 pixels), "
			    "limit is 100000000 pixels");

	/* Zero height. */
	jpg[sof + 5] = 0;
	jpg[sof + 6] = 0;
	assert_true(decoder_open(d, jpg, len, &test_limits, &w, &h) < 0);
	assert_true(strncmp(decoder_error(d), "jpeg: ", 6) == 0);
	free(jpg);
	decoder_destroy(&d);
}

static void test_12bit_refused(void **state)
{
	decoder_t *d = decoder_new();
	struct jpeg_fixture_spec s = { .width = 32, .height = 32, .components = 3 };
	uint8_t *jpg;
	size_t len;
	long sof;

	(void)state;
	assert_non_null(d);
	make_fixture(&s, &jpg, &len);
	sof = jpeg_fixture_find_sof(jpg, len);
	assert_true(sof > 0);
	jpg[sof + 4] = 12;
	assert_int_equal(decoder_open(d, jpg, len, &test_limits, NULL, NULL), -ENOTSUP);
	assert_string_equal(decoder_error(d), "jpeg: unsupported JPEG data precision 12");
	free(jpg);
	decoder_destroy(&d);
}

static void test_not_a_jpeg(void **state)
{
	static const uint8_t gif[] = { 'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0, 0 };
	/* a PNG signature goes to the PNG decoder (imgfmt.c): cut short here */
	static const uint8_t png[] = { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13 };
	decoder_t *d = decoder_new();

	(void)state;
	assert_non_null(d);
	assert_int_equal(decoder_open(d, gif, sizeof(gif), &test_limits, NULL, NULL), -EBADMSG);
	assert_string_equal(decoder_error(d), "jpeg: not a JPEG file: starts with 0x47 0x49");
	assert_int_equal(decoder_open(d, png, sizeof(png), &test_limits, NULL, NULL), -EBADMSG);
	assert_non_null(strstr(decoder_error(d), "png: "));
	assert_true(decoder_open(d, png, 0, &test_limits, NULL, NULL) < 0);
	assert_true(decoder_open(d, NULL, 10, &test_limits, NULL, NULL) < 0);
	assert_true(decoder_error(d)[0] != '\0');
	decoder_destroy(&d);
}

static void test_invalid_region(void **state)
{
	static const int bad[][5] = {
		{ 1, -1, 0, 10, 10 }, { 1, 0, -1, 10, 10 }, { 1, 5, 0, 5, 10 },
		{ 1, 0, 5, 10, 5 }, { 1, 0, 0, 65, 10 }, { 1, 0, 0, 10, 49 },
		{ 1, 6, 0, 5, 10 }, { 3, 0, 0, 10, 10 }, { 0, 0, 0, 10, 10 },
		{ 2, 0, 0, 33, 10 }, { 8, 0, 0, 9, 6 }, { 16, 0, 0, 1, 1 },
	};
	decoder_t *d = decoder_new();
	struct jpeg_fixture_spec s = { .width = 64, .height = 48, .components = 3 };
	struct decoded out;
	uint8_t *jpg;
	size_t len;

	(void)state;
	assert_non_null(d);
	make_fixture(&s, &jpg, &len);
	/* Nothing open. */
	assert_int_equal(decoder_read(d, 1, 0, 0, 1, 1, &out), -EINVAL);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(decoder_open(d, jpg, len, &test_limits, NULL, NULL), 0);
		assert_int_equal(decoder_read(d, bad[i][0], bad[i][1], bad[i][2], bad[i][3],
					      bad[i][4], &out), -EINVAL);
		assert_null(out.rgb);
		assert_true(strncmp(decoder_error(d), "jpeg: read: ", 12) == 0);
		/* The image is closed: reading again needs a new open. */
		assert_int_equal(decoder_read(d, 1, 0, 0, 1, 1, &out), -EINVAL);
	}
	/* Still fine afterwards; the largest valid regions at each scale. */
	assert_int_equal(decoder_open(d, jpg, len, &test_limits, NULL, NULL), 0);
	assert_int_equal(decoder_read(d, 8, 0, 0, 8, 6, &out), 0);
	assert_int_equal(decoder_open(d, jpg, len, &test_limits, NULL, NULL), 0);
	assert_int_equal(decoder_read(d, 1, 63, 47, 64, 48, &out), 0);
	free(jpg);
	decoder_destroy(&d);
}

/* Truncated copies at every offset: no crash, an error with a message,
 * never pixels (a full decode reads on to EOI). */
static void check_truncations(const struct jpeg_fixture_spec *s, int step)
{
	decoder_t *d = decoder_new();
	uint8_t *jpg, *full, *cut;
	size_t len;
	int w, h, ok = 0, failed = 0;

	assert_non_null(d);
	make_fixture(s, &jpg, &len);
	full = decode_full(d, jpg, len, 1, &w, &h);
	for (size_t n = 0; n < len; n += (size_t)step) {
		struct decoded out;
		int rc;

		/* A copy of exactly n bytes so valgrind sees any over-read. */
		cut = malloc(n ? n : 1);
		assert_non_null(cut);
		memcpy(cut, jpg, n);
		rc = decoder_open(d, cut, n, &test_limits, NULL, NULL);
		if (rc == 0)
			rc = decoder_read(d, 1, 0, 0, w, h, &out);
		if (rc == 0) {
			for (int y = 0; y < h; y++)
				assert_memory_equal(out.rgb + (size_t)y * out.stride,
						    full + (size_t)y * (size_t)w * 3,
						    (size_t)w * 3);
			ok++;
		} else {
			assert_true(strncmp(decoder_error(d), "jpeg: ", 6) == 0);
			assert_true(strlen(decoder_error(d)) > 6);
			failed++;
		}
		free(cut);
	}
	/* A full decode reads on to EOI: every cut is noticed. */
	assert_int_equal(ok, 0);
	assert_true(failed > 0);
	free(full);
	free(jpg);
	decoder_destroy(&d);
}

static void test_truncated_everywhere(void **state)
{
	static const struct jpeg_fixture_spec specs[] = {
		{ .width = 48, .height = 40, .components = 3, .subsamp = JPEG_FIXTURE_420 },
		{ .width = 48, .height = 40, .components = 3, .subsamp = JPEG_FIXTURE_422,
		  .progressive = true },
		{ .width = 40, .height = 24, .components = 3, .restart_interval = 1 },
		{ .width = 40, .height = 24, .components = 3, .arithmetic = true },
		{ .width = 40, .height = 24, .components = 1 },
		{ .width = 40, .height = 24, .components = 4, .ycck = true },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++)
		check_truncations(&specs[i], 1);
}

static void test_truncated_message(void **state)
{
	decoder_t *d = decoder_new();
	struct jpeg_fixture_spec s = { .width = 64, .height = 64, .components = 3 };
	struct decoded out;
	uint8_t *jpg;
	size_t len;
	int rc;

	(void)state;
	assert_non_null(d);
	make_fixture(&s, &jpg, &len);
	rc = decoder_open(d, jpg, len * 2 / 3, &test_limits, NULL, NULL);
	assert_int_equal(rc, 0);
	rc = decoder_read(d, 1, 0, 0, 64, 64, &out);
	assert_int_equal(rc, -EBADMSG);
	/* libjpeg's warning, turned into an error. */
	assert_string_equal(decoder_error(d), "jpeg: premature end of JPEG file");
	/* A region above the cut still decodes. */
	assert_int_equal(decoder_open(d, jpg, len * 2 / 3, &test_limits, NULL, NULL), 0);
	assert_int_equal(decoder_read(d, 1, 0, 0, 64, 8, &out), 0);
	free(jpg);
	decoder_destroy(&d);
}

/* Bytes left over at the end of the scan, as scrambled entropy data
 * leaves them: a decode down to the last row reads on to EOI and fails;
 * a region above it never looks there. */
static void test_leftover_scan_bytes(void **state)
{
	enum { EXTRA = 40 };
	static const enum jpeg_fixture_subsamp subs[] = { JPEG_FIXTURE_444, JPEG_FIXTURE_420 };
	decoder_t *d = decoder_new();

	(void)state;
	assert_non_null(d);
	for (size_t i = 0; i < 2; i++) {
		struct jpeg_fixture_spec s = { .width = 64, .height = 64, .components = 3,
					       .subsamp = subs[i] };
		struct decoded out;
		uint8_t *jpg, *bad;
		size_t len;

		make_fixture(&s, &jpg, &len);
		bad = malloc(len + EXTRA);
		assert_non_null(bad);
		/* ... entropy data, EXTRA bytes of junk, FF D9. The Huffman
		 * decoder's bit buffer swallows the first few of them. */
		memcpy(bad, jpg, len - 2);
		for (size_t k = 0; k < EXTRA; k++)
			bad[len - 2 + k] = (uint8_t)(0x11 * (k % 15));
		memcpy(bad + len - 2 + EXTRA, jpg + len - 2, 2);
		assert_int_equal(decoder_open(d, bad, len + EXTRA, &test_limits, NULL, NULL), 0);
		assert_int_equal(decoder_read(d, 1, 0, 0, 64, 64, &out), -EBADMSG);
		assert_true(strncmp(decoder_error(d), "jpeg: corrupt JPEG data: ", 25) == 0);
		assert_non_null(strstr(decoder_error(d), "extraneous bytes before marker 0xd9"));
		/* Down to the last row, any columns: the same. */
		assert_int_equal(decoder_open(d, bad, len + EXTRA, &test_limits, NULL, NULL), 0);
		assert_int_equal(decoder_read(d, 1, 20, 50, 30, 64, &out), -EBADMSG);
		/* Above the bottom iMCU row: fine. */
		assert_int_equal(decoder_open(d, bad, len + EXTRA, &test_limits, NULL, NULL), 0);
		assert_int_equal(decoder_read(d, 1, 0, 0, 64, 32, &out), 0);
		free(bad);
		free(jpg);
	}
	decoder_destroy(&d);
}

static void test_bit_flips_and_noise(void **state)
{
	static const struct jpeg_fixture_spec specs[] = {
		{ .width = 48, .height = 40, .components = 3, .subsamp = JPEG_FIXTURE_420 },
		{ .width = 48, .height = 40, .components = 3, .subsamp = JPEG_FIXTURE_420,
		  .progressive = true },
		{ .width = 40, .height = 24, .components = 3, .arithmetic = true,
		  .restart_interval = 2 },
		{ .width = 40, .height = 24, .components = 4 },
	};
	decoder_t *d = decoder_new();
	uint64_t seed = 7;
	int ok = 0, failed = 0;

	(void)state;
	assert_non_null(d);
	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		uint8_t *jpg, *bad;
		size_t len;

		make_fixture(&specs[i], &jpg, &len);
		bad = malloc(len);
		assert_non_null(bad);
		for (int iter = 0; iter < 400; iter++) {
			struct decoded out;
			int flips = 1 + tu_rng_below(&seed, 4), rc, w, h;

			memcpy(bad, jpg, len);
			for (int f = 0; f < flips; f++) {
				size_t pos = (size_t)tu_rng_below(&seed, (int)len);

				if (iter % 4 == 0)
					bad[pos] = (uint8_t)tu_rng_next(&seed); /* byte */
				else
					bad[pos] ^= (uint8_t)(1u << tu_rng_below(&seed, 8));
			}
			rc = decoder_open(d, bad, len, &test_limits, &w, &h);
			if (rc == 0) {
				int x0 = tu_rng_below(&seed, w), y0 = tu_rng_below(&seed, h);

				rc = decoder_read(d, 1 << tu_rng_below(&seed, 4), 0, 0, 1, 1, &out);
				if (rc == 0 && decoder_open(d, bad, len, &test_limits, &w, &h) == 0)
					rc = decoder_read(d, 1, x0, y0, w, h, &out);
			}
			if (rc == 0) {
				ok++;
			} else {
				assert_true(strlen(decoder_error(d)) > 6);
				failed++;
			}
		}
		free(bad);
		free(jpg);
	}
	/* Random bytes, and random bytes behind a valid SOI. */
	for (int iter = 0; iter < 300; iter++) {
		uint8_t buf[512];
		size_t n = 1 + (size_t)tu_rng_below(&seed, (int)sizeof(buf));

		for (size_t i = 0; i < n; i++)
			buf[i] = (uint8_t)tu_rng_next(&seed);
		if (iter % 2) {
			buf[0] = 0xFF;
			buf[1 % n] = 0xD8;
		}
		if (decoder_open(d, buf, n, &test_limits, NULL, NULL) == 0) {
			struct decoded out;

			(void)decoder_read(d, 1, 0, 0, 1, 1, &out);
		} else {
			assert_true(strlen(decoder_error(d)) > 6);
		}
	}
	print_message("bit flips: %d decoded, %d refused\n", ok, failed);
	assert_true(failed > 0);
	decoder_destroy(&d);
}

static char tmpdir[PATH_MAX];

static int make_tmpdir(void **state)
{
	(void)state;
	tu_mkdtemp(tmpdir, "test_decode");
	return 0;
}

static int remove_tmpdir(void **state)
{
	(void)state;
	return tu_rmtree(tmpdir);
}

static void test_read_file(void **state)
{
	decoder_t *d = decoder_new();
	struct jpeg_fixture_spec s = { .width = 64, .height = 48, .components = 3 };
	struct decode_limits lim = test_limits;
	char path[PATH_MAX + 32], want[PATH_MAX + 128];
	const uint8_t *data;
	uint8_t *jpg;
	size_t len, got;
	FILE *f;

	(void)state;
	assert_non_null(d);
	make_fixture(&s, &jpg, &len);
	snprintf(path, sizeof(path), "%s/a.jpg", tmpdir);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(jpg, 1, len, f), len);
	assert_int_equal(fclose(f), 0);

	assert_int_equal(decode_read_file(d, path, &lim, &data, &got), 0);
	assert_int_equal(got, len);
	assert_memory_equal(data, jpg, len);
	assert_int_equal(decoder_open(d, data, got, &lim, NULL, NULL), 0);

	lim.max_file_bytes = len - 1;
	assert_int_equal(decode_read_file(d, path, &lim, &data, &got), -EFBIG);
	assert_null(data);
	snprintf(want, sizeof(want), "decode: '%s': file is %zu bytes, limit is %zu", path, len,
		 len - 1);
	assert_string_equal(decoder_error(d), want);

	snprintf(path, sizeof(path), "%s/missing.jpg", tmpdir);
	assert_int_equal(decode_read_file(d, path, &lim, &data, &got), -ENOENT);
	assert_non_null(strstr(decoder_error(d), path));

	snprintf(path, sizeof(path), "%s/empty.jpg", tmpdir);
	f = fopen(path, "wb");
	assert_non_null(f);
	fclose(f);
	assert_true(decode_read_file(d, path, &test_limits, &data, &got) < 0);
	assert_non_null(strstr(decoder_error(d), "empty"));

	assert_true(decode_read_file(d, tmpdir, &test_limits, &data, &got) < 0);
	assert_non_null(strstr(decoder_error(d), tmpdir));

	/* A named pipe nobody writes to: refused at once, not a hang. */
	snprintf(path, sizeof(path), "%s/pipe.jpg", tmpdir);
	assert_int_equal(mkfifo(path, 0600), 0);
	assert_int_equal(decode_read_file(d, path, &test_limits, &data, &got), -EINVAL);
	snprintf(want, sizeof(want), "decode: '%s': not a regular file", path);
	assert_string_equal(decoder_error(d), want);
	free(jpg);
	decoder_destroy(&d);
}

/*
 * The decode budget counts each scan's blocks before the scan is decoded:
 * a 512x512 4:2:0 image has 4096 + 2 x 1024 = 6144 blocks; libjpeg's
 * standard progression (10 scans) decodes 32768. A budget one below what a
 * file needs fails it (-E2BIG, naming max_scan_blocks), the exact figure
 * passes.
 */
static void test_scan_budget(void **state)
{
	struct jpeg_fixture_spec base = { .width = 512, .height = 512, .components = 3,
					  .subsamp = JPEG_FIXTURE_420, .quality = 80 };
	struct jpeg_fixture_spec prog = base;
	struct decode_limits lim = test_limits;
	decoder_t *d = decoder_new();
	struct decoded out;
	uint8_t *jb, *jp;
	size_t lb, lp;
	(void)state;

	prog.progressive = true;
	make_fixture(&base, &jb, &lb);
	make_fixture(&prog, &jp, &lp);
	struct { const uint8_t *jpg; size_t len; uint64_t need; } cases[] = {
		{ jb, lb, 6144 }, { jp, lp, 32768 },
	};
	for (size_t i = 0; i < 2; i++) {
		for (int k = 0; k < 3; k++) {
			lim.max_scan_blocks = k == 0 ? 0 : k == 1 ? cases[i].need :
					      cases[i].need - 1;
			assert_int_equal(decoder_open(d, cases[i].jpg, cases[i].len, &lim,
						      NULL, NULL), 0);
			int rc = decoder_read(d, 1, 100, 200, 164, 264, &out);
			if (k < 2) {
				assert_int_equal(rc, 0);
				continue;
			}
			assert_int_equal(rc, -E2BIG);
			assert_non_null(strstr(decoder_error(d), "max_scan_blocks"));
		}
	}
	assert_true(decode_error_transient(-EMFILE));
	assert_true(decode_error_transient(-ENFILE));
	assert_true(decode_error_transient(-ENOMEM));
	assert_true(decode_error_transient(-EIO));
	assert_false(decode_error_transient(-E2BIG));
	assert_false(decode_error_transient(-ENOENT));
	assert_false(decode_error_transient(-EACCES));
	assert_false(decode_error_transient(-EXDEV));
	assert_false(decode_error_transient(-EBADMSG));
	free(jb);
	free(jp);
	decoder_destroy(&d);
}

/* A buffer one huge image grew past 16 MiB is given back when the next
 * file is read. */
static void test_scratch_trimmed(void **state)
{
	struct jpeg_fixture_spec big = { .width = 3200, .height = 2400, .components = 3,
					 .subsamp = JPEG_FIXTURE_420, .quality = 30 };
	struct jpeg_fixture_spec small = { .width = 64, .height = 48, .components = 3 };
	decoder_t *d = decoder_new();
	struct decoded out;
	const uint8_t *data;
	uint8_t *jpg;
	size_t len, got;
	char path[PATH_MAX + 16];
	FILE *f;
	(void)state;

	make_fixture(&big, &jpg, &len);
	assert_int_equal(decoder_open(d, jpg, len, &test_limits, NULL, NULL), 0);
	assert_int_equal(decoder_read(d, 1, 0, 0, 3200, 2400, &out), 0);
	assert_true(decoder_retained(d) > (16u << 20));
	free(jpg);
	make_fixture(&small, &jpg, &len);
	snprintf(path, sizeof(path), "%s/a.jpg", tmpdir);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(jpg, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(decode_read_file(d, path, &test_limits, &data, &got), 0);
	assert_int_equal(decoder_open(d, data, got, &test_limits, NULL, NULL), 0);
	assert_int_equal(decoder_read(d, 1, 0, 0, 64, 48, &out), 0);
	assert_true(decoder_retained(d) < (1u << 20));
	free(jpg);
	decoder_destroy(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_decode_matches_pattern),
		cmocka_unit_test(test_region_equals_full_decode),
		cmocka_unit_test(test_region_every_column_range),
		cmocka_unit_test(test_reuse_across_sizes),
		cmocka_unit_test(test_cmyk_conversion_exact),
		cmocka_unit_test(test_scaled_size),
		cmocka_unit_test(test_limits_before_allocation),
		cmocka_unit_test(test_12bit_refused),
		cmocka_unit_test(test_not_a_jpeg),
		cmocka_unit_test(test_invalid_region),
		cmocka_unit_test(test_truncated_everywhere),
		cmocka_unit_test(test_truncated_message),
		cmocka_unit_test(test_leftover_scan_bytes),
		cmocka_unit_test(test_bit_flips_and_noise),
		cmocka_unit_test_setup_teardown(test_read_file, make_tmpdir, remove_tmpdir),
		cmocka_unit_test(test_scan_budget),
		cmocka_unit_test_setup_teardown(test_scratch_trimmed, make_tmpdir, remove_tmpdir),
	};

	tu_avoid_jpeg_simd_under_valgrind();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
