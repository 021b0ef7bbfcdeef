/*
 * test_stream.c — decoding straight into the resizer (decoder_read_stream
 * + resize_stream_*) against the two-step path it replaces in the daemon
 * (decoder_read into the region buffer, then resize_rgb_ex or
 * resize_rgb_crop), on images made at run time.
 *
 * Properties: for every JPEG kind the decoder handles (gray, 4:4:4 to
 * 4:1:1, progressive, restart markers, arithmetic, CMYK, YCCK), a PNG, and
 * a packed (spliced) JPEG, at every DCT scale, bilinear and bicubic,
 * flipped or not, random-resized and center-crop geometry, the streamed
 * output is byte-identical to the two-step one; the rows reach the sink
 * in order, in groups, each once; a JPEG that fails mid-stream gives the
 * same error as decoder_read and leaves decoder and resizer usable; the
 * resize cases that cannot stream say so (-EAGAIN) and a stream missing
 * rows or fed out of order fails instead of writing a wrong image.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <spng.h>

#include "decode.h"
#include "jpeg_fixtures.h"
#include "resize.h"
#include "splice.h"
#include "test_util.h"

#define OUT 24 /* small output: the source spans many row groups */

/* One resample of a region [rx0,rx1) x [ry0,ry1) of the image at 1/denom:
 * center (resize_rgb_crop of a Resize to full) or a box (resize_rgb_ex). */
struct job {
	int denom, rx0, ry0, rx1, ry1;
	bool center, flip;
	enum resize_filter f;
	double box[4];             /* in region pixels */
	int full_w, full_h, new_w, new_h, left, top;
};

/* A random job inside a W x H image (scaled size sw x sh at j->denom). */
static void random_job(uint64_t *s, int sw, int sh, struct job *j)
{
	j->f = tu_rng_below(s, 2) ? RESIZE_BICUBIC : RESIZE_BILINEAR;
	j->flip = tu_rng_below(s, 2);
	j->center = j->denom == 1 && tu_rng_below(s, 3) == 0;
	if (j->center) {
		/* Resize to about 1.5 OUT (either side), a window of it */
		j->full_w = sw;
		j->full_h = sh;
		j->new_w = OUT + tu_rng_below(s, OUT);
		j->new_h = OUT + tu_rng_below(s, OUT);
		j->left = tu_rng_below(s, j->new_w - OUT + 1);
		j->top = tu_rng_below(s, j->new_h - OUT + 1);
		j->flip = false;   /* sample.c mirrors the slot afterwards */
		j->rx0 = 0;
		j->ry0 = tu_rng_below(s, 2) ? 0 : sh / 8; /* -ERANGE unless wide enough */
		j->rx1 = sw;
		j->ry1 = sh;
		return;
	}
	j->rx0 = tu_rng_below(s, sw - 1);
	j->ry0 = tu_rng_below(s, sh - 1);
	j->rx1 = j->rx0 + 1 + tu_rng_below(s, sw - j->rx0);
	j->ry1 = j->ry0 + 1 + tu_rng_below(s, sh - j->ry0);
	int rw = j->rx1 - j->rx0, rh = j->ry1 - j->ry0;
	j->box[0] = tu_rng_below(s, rw) * 0.37;
	j->box[1] = tu_rng_below(s, rh) * 0.41;
	if (j->box[0] >= rw)
		j->box[0] = 0;
	if (j->box[1] >= rh)
		j->box[1] = 0;
	j->box[2] = rw - tu_rng_below(s, 2) * 0.3;
	j->box[3] = rh - tu_rng_below(s, 2) * 0.7;
	if (j->box[2] <= j->box[0])
		j->box[2] = rw;
	if (j->box[3] <= j->box[1])
		j->box[3] = rh;
}

/* The daemon's path before streaming. Returns 0 or -errno; *out OUT^2x3. */
static int two_step(decoder_t *d, resizer_t *r, const struct job *j, uint8_t *out)
{
	struct decoded dd;
	int rc = decoder_read(d, j->denom, j->rx0, j->ry0, j->rx1, j->ry1, &dd);

	if (rc)
		return rc;
	if (j->center)
		return resize_rgb_crop(r, j->f, dd.rgb, j->rx0, j->ry0, dd.width, dd.height,
				       dd.stride, j->full_w, j->full_h, j->new_w, j->new_h,
				       j->left, j->top, out, OUT, OUT, OUT * 3);
	return resize_rgb_ex(r, j->f, j->flip ? RESIZE_FLIP : 0, dd.rgb, dd.width,
			     dd.height, dd.stride, j->box[0], j->box[1], j->box[2],
			     j->box[3], out, OUT, OUT, OUT * 3);
}

struct feed {
	resizer_t *r;
	int next, groups, width;
};

static void feed_rows(void *ctx, const uint8_t *rows, size_t stride, int row0, int n)
{
	struct feed *f = ctx;

	assert_int_equal(row0, f->next);       /* in order, each row once */
	assert_true(n >= 1);
	assert_true(stride >= (size_t)f->width * 3);
	f->next = row0 + n;
	f->groups++;
	resize_stream_rows(f->r, rows, stride, row0, n);
}

/* The streamed path; -EAGAIN where the resample cannot stream. */
static int streamed(decoder_t *d, resizer_t *r, const struct job *j, uint8_t *out,
		    struct feed *f)
{
	int rw = j->rx1 - j->rx0, rh = j->ry1 - j->ry0, rc;

	if (j->center)
		rc = resize_stream_begin_crop(r, j->f, j->rx0, j->ry0, rw, rh, j->full_w,
					      j->full_h, j->new_w, j->new_h, j->left,
					      j->top, OUT, OUT);
	else
		rc = resize_stream_begin_ex(r, j->f, j->flip ? RESIZE_FLIP : 0, rw, rh,
					    j->box[0], j->box[1], j->box[2], j->box[3],
					    OUT, OUT);
	if (rc)
		return rc;
	*f = (struct feed){ .r = r, .width = rw };
	rc = decoder_read_stream(d, j->denom, j->rx0, j->ry0, j->rx1, j->ry1, feed_rows, f);
	if (rc)
		return rc;
	assert_int_equal(f->next, rh);
	return resize_stream_end(r, out, OUT * 3);
}

/* `rounds` random jobs on image `img`: streamed == two-step, byte for
 * byte. Returns how many streamed (the rest were -EAGAIN or -ERANGE). */
static int compare_jobs(const uint8_t *img, size_t len, uint64_t *s, int rounds,
			const uint32_t *segs, uint32_t nsegs)
{
	decoder_t *d = decoder_new();
	resizer_t *r = resizer_new();
	uint8_t a[OUT * OUT * 3], b[OUT * OUT * 3];
	int n_streamed = 0;

	assert_non_null(d);
	assert_non_null(r);
	for (int i = 0; i < rounds; i++) {
		struct job j = { .denom = 1 << tu_rng_below(s, 4) };
		struct feed f;
		int w, h, sw, sh;

		decoder_set_segments(d, segs, nsegs);
		assert_int_equal(decoder_open(d, img, len, NULL, &w, &h), 0);
		decoder_scaled_size(d, j.denom, &sw, &sh);
		if (sw < 2 || sh < 2)
			j.denom = 1, sw = w, sh = h;
		random_job(s, sw, sh, &j);
		int rs = streamed(d, r, &j, b, &f);
		decoder_set_segments(d, segs, nsegs);
		assert_int_equal(decoder_open(d, img, len, NULL, &w, &h), 0);
		int rt = two_step(d, r, &j, a);
		if (rs == -EAGAIN) {
			assert_int_equal(rt, 0);   /* the one-call form does it */
			continue;
		}
		assert_int_equal(rs, rt);
		if (rs)
			continue;
		if (memcmp(a, b, sizeof(a)))
			fail_msg("round %d: denom %d region [%d,%d)x[%d,%d) center %d "
				 "flip %d filter %d: streamed bytes differ", i, j.denom,
				 j.rx0, j.rx1, j.ry0, j.ry1, j.center, j.flip, j.f);
		n_streamed++;
	}
	decoder_destroy(&d);
	resizer_destroy(&r);
	return n_streamed;
}

struct variant {
	const char *name;
	struct jpeg_fixture_spec spec;
};

#define V(n, ...) { n, { .width = 157, .height = 203, .quality = 92, __VA_ARGS__ } }
static const struct variant variants[] = {
	V("gray", .components = 1),
	V("444", .components = 3, .subsamp = JPEG_FIXTURE_444),
	V("422", .components = 3, .subsamp = JPEG_FIXTURE_422),
	V("420", .components = 3, .subsamp = JPEG_FIXTURE_420),
	V("440", .components = 3, .subsamp = JPEG_FIXTURE_440),
	V("411", .components = 3, .subsamp = JPEG_FIXTURE_411),
	V("420 progressive", .components = 3, .subsamp = JPEG_FIXTURE_420, .progressive = true),
	V("420 restart 3", .components = 3, .subsamp = JPEG_FIXTURE_420, .restart_interval = 3),
	V("422 arithmetic", .components = 3, .subsamp = JPEG_FIXTURE_422, .arithmetic = true),
	V("cmyk 420", .components = 4, .subsamp = JPEG_FIXTURE_420),
	V("cmyk plain 444", .components = 4, .subsamp = JPEG_FIXTURE_444, .plain_cmyk = true),
	V("ycck 422 progressive", .components = 4, .subsamp = JPEG_FIXTURE_422, .ycck = true,
	  .progressive = true),
};
#undef V

static void test_jpeg_streamed_equals_two_step(void **state)
{
	(void)state;
	uint64_t s = 13;

	for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]); v++) {
		uint8_t *jpg;
		size_t len;

		assert_int_equal(jpeg_fixture_make(&variants[v].spec, &jpg, &len), 0);
		int n = compare_jobs(jpg, len, &s, 60, NULL, 0);
		if (n < 30)
			fail_msg("%s: only %d of 60 jobs streamed", variants[v].name, n);
		free(jpg);
	}
}

/* A packed JPEG (splice_transcode + segments): the spliced decode streams. */
static void test_spliced_streamed_equals_two_step(void **state)
{
	(void)state;
	const struct jpeg_fixture_spec sp[] = {
		{ .width = 301, .height = 233, .components = 3, .subsamp = JPEG_FIXTURE_420 },
		{ .width = 250, .height = 190, .components = 3, .subsamp = JPEG_FIXTURE_422 },
		{ .width = 180, .height = 170, .components = 1 },
	};
	uint64_t s = 77;
	char err[256];

	for (size_t v = 0; v < sizeof(sp) / sizeof(sp[0]); v++) {
		uint8_t *jpg, *tc;
		size_t len, tlen;
		uint32_t *segs, ns;

		assert_int_equal(jpeg_fixture_make(&sp[v], &jpg, &len), 0);
		assert_int_equal(splice_transcode(jpg, len, SPLICE_TARGET_PX, &tc, &tlen, err,
						  sizeof(err)), 0);
		assert_int_equal(splice_segments(tc, tlen, &segs, &ns), 0);
		assert_true(compare_jobs(tc, tlen, &s, 60, segs, ns) >= 30);
		free(segs);
		free(tc);
		free(jpg);
	}
}

static void png_write(const uint8_t *px, int w, int h, uint8_t **out, size_t *len)
{
	spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
	struct spng_ihdr ih = { .width = (uint32_t)w, .height = (uint32_t)h,
				.bit_depth = 8, .color_type = SPNG_COLOR_TYPE_TRUECOLOR };
	int err;

	assert_non_null(ctx);
	spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
	assert_int_equal(spng_set_ihdr(ctx, &ih), 0);
	assert_int_equal(spng_encode_image(ctx, px, (size_t)w * h * 3, SPNG_FMT_PNG,
					   SPNG_ENCODE_FINALIZE), 0);
	*out = spng_get_png_buffer(ctx, len, &err);
	assert_non_null(*out);
	spng_ctx_free(ctx);
}

/* PNG is decoded whole (imgfmt.c) and handed over as one group. */
static void test_png_streamed_equals_two_step(void **state)
{
	(void)state;
	const struct jpeg_fixture_spec spec = { .width = 131, .height = 97, .components = 3 };
	uint8_t *px = malloc(131 * 97 * 3), *png;
	uint64_t s = 5;
	size_t len;

	assert_non_null(px);
	jpeg_fixture_fill(&spec, px, 131 * 3);
	png_write(px, 131, 97, &png, &len);
	assert_true(compare_jobs(png, len, &s, 40, NULL, 0) >= 20);
	free(png);
	free(px);
}

/* A 4:2:0 JPEG cut short: the stream fails as decoder_read does, after
 * rows were handed over; decoder and resizer then serve the next image. */
static void test_error_mid_stream(void **state)
{
	(void)state;
	const struct jpeg_fixture_spec spec = { .width = 160, .height = 240, .components = 3,
						.subsamp = JPEG_FIXTURE_420, .quality = 90 };
	decoder_t *d = decoder_new();
	resizer_t *r = resizer_new();
	uint8_t a[OUT * OUT * 3], b[OUT * OUT * 3], *jpg;
	struct job j = { .denom = 1, .rx0 = 3, .ry0 = 5, .rx1 = 150, .ry1 = 240,
			 .f = RESIZE_BILINEAR, .box = { 0.5, 0.5, 140, 230 } };
	struct feed f;
	size_t len;
	int w, h;

	assert_int_equal(jpeg_fixture_make(&spec, &jpg, &len), 0);
	char msg_two[256];
	assert_int_equal(decoder_open(d, jpg, len * 2 / 3, NULL, &w, &h), 0);
	int rt = two_step(d, r, &j, a);
	snprintf(msg_two, sizeof(msg_two), "%s", decoder_error(d));
	assert_int_equal(decoder_open(d, jpg, len * 2 / 3, NULL, &w, &h), 0);
	int rs = streamed(d, r, &j, b, &f);
	assert_int_equal(rt, -EBADMSG);
	assert_int_equal(rs, rt);
	assert_string_equal(decoder_error(d), msg_two);
	assert_true(f.groups >= 2);                   /* it failed mid-stream */
	assert_int_equal(resize_stream_end(r, b, OUT * 3), -EINVAL); /* ended */

	/* the whole file next, on the same decoder and resizer */
	assert_int_equal(decoder_open(d, jpg, len, NULL, &w, &h), 0);
	assert_int_equal(streamed(d, r, &j, b, &f), 0);
	assert_int_equal(decoder_open(d, jpg, len, NULL, &w, &h), 0);
	assert_int_equal(two_step(d, r, &j, a), 0);
	assert_memory_equal(a, b, sizeof(a));
	free(jpg);
	decoder_destroy(&d);
	resizer_destroy(&r);
}

/* What the resizer refuses to stream, and streams fed wrongly. */
static void test_stream_contract(void **state)
{
	(void)state;
	resizer_t *r = resizer_new();
	uint8_t src[64 * 3 * 8] = { 0 }, dst[OUT * OUT * 3];

	/* an integer box of the output's size is a crop; one pass only */
	assert_int_equal(resize_stream_begin_ex(r, RESIZE_BILINEAR, 0, 40, 40, 2, 3, 2 + OUT,
						3 + OUT, OUT, OUT), -EAGAIN);
	assert_int_equal(resize_stream_begin_ex(r, RESIZE_BILINEAR, 0, 64, OUT, 0, 0, 64,
						OUT, OUT, OUT), -EAGAIN);
	assert_int_equal(resize_stream_begin_ex(r, RESIZE_BILINEAR, 0, 0, 40, 0, 0, 1, 1,
						OUT, OUT), -EINVAL);
	assert_int_equal(resize_stream_begin_ex(r, RESIZE_BILINEAR, 2, 64, 40, 0, 0, 64, 40,
						OUT, OUT), -EINVAL);
	assert_int_equal(resize_stream_end(r, dst, OUT * 3), -EINVAL);

	/* rows missing: no image */
	assert_int_equal(resize_stream_begin_ex(r, RESIZE_BILINEAR, 0, 64, 40, 0, 0, 64, 40,
						OUT, OUT), 0);
	resize_stream_rows(r, src, 64 * 3, 0, 8);
	assert_int_equal(resize_stream_end(r, dst, OUT * 3), -EINVAL);
	/* out of order */
	assert_int_equal(resize_stream_begin_ex(r, RESIZE_BILINEAR, 0, 64, 40, 0, 0, 64, 40,
						OUT, OUT), 0);
	for (int y = 0; y < 40; y += 8)
		resize_stream_rows(r, src, 64 * 3, y == 16 ? 24 : y, 8);
	assert_int_equal(resize_stream_end(r, dst, OUT * 3), -EINVAL);
	/* in order: fine, also fed one row at a time */
	assert_int_equal(resize_stream_begin_ex(r, RESIZE_BICUBIC, RESIZE_FLIP, 64, 40, 0.5,
						0, 63, 40, OUT, OUT), 0);
	for (int y = 0; y < 40; y++)
		resize_stream_rows(r, src, 64 * 3, y, 1);
	assert_int_equal(resize_stream_end(r, dst, OUT * 3), 0);
	resizer_destroy(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_jpeg_streamed_equals_two_step),
		cmocka_unit_test(test_spliced_streamed_equals_two_step),
		cmocka_unit_test(test_png_streamed_equals_two_step),
		cmocka_unit_test(test_error_mid_stream),
		cmocka_unit_test(test_stream_contract),
	};

	tu_avoid_jpeg_simd_under_valgrind();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
