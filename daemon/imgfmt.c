/*
 * imgfmt.c — PNG (libspng) and WebP (libwebp) to RGB; the rules are in
 * imgfmt.h.
 *
 * No threads: an imgfmt_t belongs to one decoder, i.e. one worker. It owns
 * the full-image RGB buffer, a 16-bit gray buffer and the reduced image,
 * which grow and never shrink (scratch_grow).
 */
#include "imgfmt.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <spng.h>
#include <webp/decode.h>

#include "errbuf.h"
#include "scratch.h"

/* libspng's own caps on chunk size and on the sum of cached chunks: a
 * 100 MB text chunk is an attack, not a photo. */
#define PNG_CHUNK_LIMIT  (64u << 20)
#define PNG_CACHE_LIMIT  (64u << 20)

struct imgfmt {
	enum imgfmt_kind fmt;           /* IMGFMT_UNKNOWN: nothing open */
	const uint8_t *data;
	size_t len;
	int width, height;
	struct spng_ihdr ihdr;

	uint8_t *rgb;              /* full image, width * 3 per row */
	size_t rgb_cap;
	uint8_t *raw;              /* 16-bit gray, big-endian */
	size_t raw_cap;
	uint8_t *red;              /* reduced image (denom > 1) */
	size_t red_cap;
};

enum imgfmt_kind imgfmt_detect(const uint8_t *data, size_t len)
{
	static const uint8_t png[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };

	if (!data)
		return IMGFMT_UNKNOWN;
	if (len >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
		return IMGFMT_JPEG;
	if (len >= 8 && memcmp(data, png, 8) == 0)
		return IMGFMT_PNG;
	if (len >= 12 && memcmp(data, "RIFF", 4) == 0 && memcmp(data + 8, "WEBP", 4) == 0)
		return IMGFMT_WEBP;
	return IMGFMT_UNKNOWN;
}

const char *imgfmt_name(enum imgfmt_kind f)
{
	switch (f) {
	case IMGFMT_JPEG: return "jpeg";
	case IMGFMT_PNG:  return "png";
	case IMGFMT_WEBP: return "webp";
	default:          return "unknown";
	}
}

imgfmt_t *imgfmt_new(void)
{
	return calloc(1, sizeof(imgfmt_t));
}

void imgfmt_destroy(imgfmt_t **pp)
{
	if (!pp || !*pp)
		return;
	free((*pp)->rgb);
	free((*pp)->raw);
	free((*pp)->red);
	free(*pp);
	*pp = NULL;
}

static spng_ctx *png_ctx(const uint8_t *data, size_t len, char *err, size_t errlen)
{
	spng_ctx *ctx = spng_ctx_new(0);
	int rc;

	if (!ctx) {
		errbuf_fail(err, errlen, "png: out of memory");
		return NULL;
	}
	rc = spng_set_png_buffer(ctx, data, len);
	if (rc == 0)
		rc = spng_set_chunk_limits(ctx, PNG_CHUNK_LIMIT, PNG_CACHE_LIMIT);
	if (rc == 0)
		rc = spng_set_image_limits(ctx, INT32_MAX, INT32_MAX);
	/* Corrupt data is an error, critical or ancillary (Pillow checks
	 * every CRC it reads too). */
	if (rc == 0)
		rc = spng_set_crc_action(ctx, SPNG_CRC_ERROR, SPNG_CRC_ERROR);
	if (rc) {
		errbuf_fail(err, errlen, "png: %s", spng_strerror(rc));
		spng_ctx_free(ctx);
		return NULL;
	}
	return ctx;
}

static int check_pixels(const char *what, uint64_t w, uint64_t h, uint64_t max_pixels,
			char *err, size_t errlen)
{
	if (w == 0 || h == 0 || w > INT32_MAX || h > INT32_MAX) {
		errbuf_fail(err, errlen, "%s: image has an invalid size (%" PRIu64 "x%" PRIu64 ")",
			    what, w, h);
		return -EBADMSG;
	}
	if (max_pixels && w * h > max_pixels) {
		errbuf_fail(err, errlen, "%s: image is %" PRIu64 "x%" PRIu64 " (%" PRIu64
			    " pixels), limit is %" PRIu64 " pixels", what, w, h, w * h,
			    max_pixels);
		return -E2BIG;
	}
	if (w * h > SIZE_MAX / 8) {
		errbuf_fail(err, errlen, "%s: image of %" PRIu64 "x%" PRIu64 " is too large",
			    what, w, h);
		return -E2BIG;
	}
	return 0;
}

int imgfmt_open(imgfmt_t *p, enum imgfmt_kind f, const uint8_t *data, size_t len,
		uint64_t max_pixels, int *width, int *height,
		char *err, size_t errlen)
{
	uint64_t w = 0, h = 0;
	int rc;

	p->fmt = IMGFMT_UNKNOWN;
	*width = *height = 0;
	if (f == IMGFMT_PNG) {
		spng_ctx *ctx = png_ctx(data, len, err, errlen);

		if (!ctx)
			return -ENOMEM;
		rc = spng_get_ihdr(ctx, &p->ihdr);
		spng_ctx_free(ctx);
		if (rc) {
			errbuf_fail(err, errlen, "png: %s", spng_strerror(rc));
			return -EBADMSG;
		}
		w = p->ihdr.width;
		h = p->ihdr.height;
	} else if (f == IMGFMT_WEBP) {
		WebPBitstreamFeatures ft;
		VP8StatusCode st = WebPGetFeatures(data, len, &ft);

		if (st != VP8_STATUS_OK) {
			errbuf_fail(err, errlen, "webp: cannot read the header (libwebp status %d)",
				    (int)st);
			return st == VP8_STATUS_UNSUPPORTED_FEATURE ? -ENOTSUP : -EBADMSG;
		}
		if (ft.has_animation) {
			errbuf_fail(err, errlen, "webp: animated WebP is not supported");
			return -ENOTSUP;
		}
		w = (uint64_t)ft.width;
		h = (uint64_t)ft.height;
	} else {
		errbuf_fail(err, errlen, "imgfmt: not a PNG or WebP image");
		return -EBADMSG;
	}
	rc = check_pixels(imgfmt_name(f), w, h, max_pixels, err, errlen);
	if (rc)
		return rc;
	p->fmt = f;
	p->data = data;
	p->len = len;
	p->width = (int)w;
	p->height = (int)h;
	*width = p->width;
	*height = p->height;
	return 0;
}

/* 16-bit gray without alpha: Pillow mode "I", clipped to 255 on ->RGB. */
static int png_gray16(imgfmt_t *p, spng_ctx *ctx, char *err, size_t errlen)
{
	size_t n = (size_t)p->width * (size_t)p->height, need;
	int rc = spng_decoded_image_size(ctx, SPNG_FMT_RAW, &need);

	if (rc == 0 && need != n * 2)
		rc = SPNG_EINTERNAL;
	if (rc) {
		errbuf_fail(err, errlen, "png: %s", spng_strerror(rc));
		return -EBADMSG;
	}
	if (scratch_grow((void **)&p->raw, &p->raw_cap, need) < 0) {
		errbuf_fail(err, errlen, "png: out of memory for %zu bytes", need);
		return -ENOMEM;
	}
	rc = spng_decode_image(ctx, p->raw, need, SPNG_FMT_RAW, 0);
	if (rc) {
		errbuf_fail(err, errlen, "png: %s", spng_strerror(rc));
		return -EBADMSG;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned v = (unsigned)p->raw[2 * i] << 8 | p->raw[2 * i + 1];
		uint8_t c = v > 255 ? 255 : (uint8_t)v;

		p->rgb[3 * i] = p->rgb[3 * i + 1] = p->rgb[3 * i + 2] = c;
	}
	return 0;
}

static int png_decode(imgfmt_t *p, size_t need, char *err, size_t errlen)
{
	spng_ctx *ctx = png_ctx(p->data, p->len, err, errlen);
	size_t got = 0;
	int rc;

	if (!ctx)
		return -ENOMEM;
	if (p->ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE && p->ihdr.bit_depth == 16) {
		rc = png_gray16(p, ctx, err, errlen);
		goto out_free;
	}
	rc = spng_decoded_image_size(ctx, SPNG_FMT_RGB8, &got);
	if (rc == 0 && got != need)
		rc = SPNG_EINTERNAL;
	if (rc == 0)
		rc = spng_decode_image(ctx, p->rgb, need, SPNG_FMT_RGB8, 0);
	if (rc) {
		errbuf_fail(err, errlen, "png: %s", spng_strerror(rc));
		rc = -EBADMSG;
	}
out_free:
	spng_ctx_free(ctx);
	return rc;
}

static int webp_decode(imgfmt_t *p, size_t need, char *err, size_t errlen)
{
	int stride = p->width * 3;

	if (!WebPDecodeRGBInto(p->data, p->len, p->rgb, need, stride)) {
		errbuf_fail(err, errlen, "webp: the image data is corrupt or truncated");
		return -EBADMSG;
	}
	return 0;
}

static int scaled(int size, int denom)
{
	return (int)(((int64_t)size + denom - 1) / denom);
}

void imgfmt_reduce(const uint8_t *src, int w, int h, int denom, uint8_t *dst)
{
	int ow = scaled(w, denom), oh = scaled(h, denom);
	size_t sstride = (size_t)w * 3;

	for (int oy = 0; oy < oh; oy++) {
		int y0 = oy * denom, y1 = y0 + denom < h ? y0 + denom : h;

		for (int ox = 0; ox < ow; ox++) {
			int x0 = ox * denom, x1 = x0 + denom < w ? x0 + denom : w;
			uint32_t n = (uint32_t)((x1 - x0) * (y1 - y0));
			uint32_t s[3] = { 0, 0, 0 };

			for (int y = y0; y < y1; y++) {
				const uint8_t *q = src + (size_t)y * sstride + (size_t)x0 * 3;
				for (int x = x0; x < x1; x++, q += 3) {
					s[0] += q[0];
					s[1] += q[1];
					s[2] += q[2];
				}
			}
			uint8_t *o = dst + ((size_t)oy * (size_t)ow + (size_t)ox) * 3;
			for (int c = 0; c < 3; c++)
				o[c] = (uint8_t)((2 * s[c] + n) / (2 * n));
		}
	}
}

int imgfmt_read(imgfmt_t *p, int denom, int x0, int y0, int x1, int y1,
		const uint8_t **rgb, size_t *stride, char *err, size_t errlen)
{
	enum imgfmt_kind f = p->fmt;
	size_t need;
	int rc;

	*rgb = NULL;
	*stride = 0;
	p->fmt = IMGFMT_UNKNOWN; /* closed whatever happens */
	if (f != IMGFMT_PNG && f != IMGFMT_WEBP) {
		errbuf_fail(err, errlen, "imgfmt: read: no image open");
		return -EINVAL;
	}
	need = (size_t)p->width * (size_t)p->height * 3;
	if (scratch_grow((void **)&p->rgb, &p->rgb_cap, need) < 0) {
		errbuf_fail(err, errlen, "%s: out of memory for a %dx%d image",
			    imgfmt_name(f), p->width, p->height);
		return -ENOMEM;
	}
	rc = f == IMGFMT_PNG ? png_decode(p, need, err, errlen) :
			       webp_decode(p, need, err, errlen);
	if (rc)
		return rc;

	const uint8_t *img = p->rgb;
	int w = p->width;
	if (denom > 1) {
		int ow = scaled(p->width, denom), oh = scaled(p->height, denom);
		if (scratch_grow((void **)&p->red, &p->red_cap,
				 (size_t)ow * (size_t)oh * 3) < 0) {
			errbuf_fail(err, errlen, "%s: out of memory", imgfmt_name(f));
			return -ENOMEM;
		}
		imgfmt_reduce(p->rgb, p->width, p->height, denom, p->red);
		img = p->red;
		w = ow;
	}
	(void)x1;
	(void)y1;
	*stride = (size_t)w * 3;
	*rgb = img + (size_t)y0 * *stride + (size_t)x0 * 3;
	return 0;
}
