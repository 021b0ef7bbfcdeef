/*
 * splice.c — lossless transcode to one restart interval per MCU row, the
 * segment table, and splicing MCU rows into a small JPEG (splice.h).
 * No state, no threads: pure functions of their arguments.
 */
#include "splice.h"

#include <errno.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#include "errbuf.h"
#include "scratch.h"

/* ---- transcoding ------------------------------------------------------- */

struct tc_state {
	struct jpeg_error_mgr pub; /* first: libjpeg casts to it */
	jmp_buf env;
	char msg[JMSG_LENGTH_MAX];
	struct jpeg_decompress_struct src;
	struct jpeg_compress_struct dst;
	bool have_src, have_dst;
	unsigned char *buf;
	unsigned long blen;
	int target_px;
};

static void tc_exit(j_common_ptr c) __attribute__((noreturn));

static void tc_exit(j_common_ptr c)
{
	struct tc_state *t = (struct tc_state *)c->err;

	c->err->format_message(c, t->msg);
	longjmp(t->env, 1);
}

static void tc_emit(j_common_ptr c, int level)
{
	if (level < 0)
		tc_exit(c);  /* a warning is an error, as in decode.c */
}

static void tc_output(j_common_ptr c)
{
	(void)c;
}

/*
 * MCUs per restart interval: the divisor k of the MCUs per row whose width
 * k * mcu_w is nearest target_px within 48..128 px (intervals may not
 * straddle rows, or columns could not be cut), else one interval per row.
 */
static unsigned splice_interval(const struct jpeg_decompress_struct *s, int target_px)
{
	int mcu_w = s->num_components == 1 ? 8 : 8 * s->max_h_samp_factor;
	unsigned per_row = (s->image_width + (unsigned)mcu_w - 1) / (unsigned)mcu_w, best = per_row;
	int best_d = INT32_MAX;

	for (unsigned k = 1; target_px > 0 && k <= per_row; k++) {
		int w = (int)k * mcu_w, dist = w > target_px ? w - target_px : target_px - w;
		if (per_row % k || w < 48 || w > 128 || k == per_row)
			continue;
		if (dist < best_d) {
			best_d = dist;
			best = k;
		}
	}
	return best;
}

/* The libjpeg calls, under t->env. */
static int tc_run(struct tc_state *t, const uint8_t *in, size_t len)
{
	if (setjmp(t->env))
		return -EBADMSG;
	jpeg_create_decompress(&t->src);
	t->have_src = true;
	jpeg_create_compress(&t->dst);
	t->have_dst = true;
	jpeg_mem_src(&t->src, in, (unsigned long)len);
	jpeg_read_header(&t->src, TRUE);
	if (t->src.jpeg_color_space == JCS_CMYK || t->src.jpeg_color_space == JCS_YCCK) {
		snprintf(t->msg, sizeof(t->msg), "CMYK/YCCK JPEG is stored as is");
		return -ENOTSUP;
	}
	jvirt_barray_ptr *coefs = jpeg_read_coefficients(&t->src);
	jpeg_copy_critical_parameters(&t->src, &t->dst);
	t->dst.optimize_coding = TRUE;
	t->dst.restart_interval = splice_interval(&t->src, t->target_px);
	jpeg_mem_dest(&t->dst, &t->buf, &t->blen);
	jpeg_write_coefficients(&t->dst, coefs);
	jpeg_finish_compress(&t->dst);
	jpeg_finish_decompress(&t->src);
	return 0;
}

int splice_transcode(const uint8_t *in, size_t len, int target_px, uint8_t **out,
		     size_t *outlen, char *err, size_t errlen)
{
	struct tc_state *t = calloc(1, sizeof(*t));
	int rc;

	*out = NULL;
	*outlen = 0;
	if (!t) {
		errbuf_fail(err, errlen, "transcode: out of memory");
		return -ENOMEM;
	}
	t->src.err = jpeg_std_error(&t->pub);
	t->dst.err = &t->pub;
	t->pub.error_exit = tc_exit;
	t->pub.emit_message = tc_emit;
	t->pub.output_message = tc_output;
	t->target_px = target_px;
	rc = tc_run(t, in, len);
	if (t->have_dst)
		jpeg_destroy_compress(&t->dst);
	if (t->have_src)
		jpeg_destroy_decompress(&t->src);
	if (rc == 0) {
		*out = t->buf;
		*outlen = t->blen;
	} else {
		free(t->buf);
		errbuf_fail(err, errlen, "jpeg: %s", t->msg);
	}
	free(t);
	return rc;
}

int splice_segments(const uint8_t *p, size_t len, uint32_t **segs, uint32_t *n)
{
	size_t i = 2, cap = 0;
	uint32_t *v = NULL, k = 0;

	*segs = NULL;
	*n = 0;
	if (len < 4 || p[0] != 0xFF || p[1] != 0xD8 || len > UINT32_MAX)
		return -EBADMSG;
	/* markers up to SOS */
	for (;;) {
		if (i + 4 > len || p[i] != 0xFF)
			return -EBADMSG;
		uint8_t m = p[i + 1];
		size_t l = (size_t)p[i + 2] << 8 | p[i + 3];
		if (l < 2 || i + 2 + l > len)
			return -EBADMSG;
		i += 2 + l;
		if (m == 0xDA)
			break;
	}
	for (size_t seg = i;;) {
		if (k == cap) {
			cap = cap ? 2 * cap : 64;
			void *nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				free(v);
				return -ENOMEM;
			}
			v = nv;
		}
		v[k++] = (uint32_t)seg;
		/* to the next marker that is not a stuffed 0xFF00 */
		while (i + 1 < len && !(p[i] == 0xFF && p[i + 1] != 0x00))
			i++;
		if (i + 1 >= len)
			goto out_bad;
		uint8_t m = p[i + 1];
		if (m >= 0xD0 && m <= 0xD7) {
			i += 2;
			seg = i;
			continue;
		}
		if (m == 0xD9)
			break;
		goto out_bad;  /* a second scan: not what pack_transcode writes */
	}
	*segs = v;
	*n = k;
	return 0;
out_bad:
	free(v);
	return -EBADMSG;
}

/* Offset of the SOF0/SOF1 marker's height field in jpg[0..hdr), or 0. */
static size_t sof_height_at(const uint8_t *p, size_t hdr)
{
	size_t i = 2;

	while (i + 4 <= hdr && p[i] == 0xFF) {
		uint8_t m = p[i + 1];
		size_t l = (size_t)p[i + 2] << 8 | p[i + 3];
		if (m == 0xC0 || m == 0xC1)
			return i + 7 <= hdr ? i + 5 : 0;
		i += 2 + l;
	}
	return 0;
}

int splice_rect(const uint8_t *p, size_t len, const uint32_t *segs, uint32_t nsegs,
		uint32_t per_row, uint32_t r0, uint32_t r1, uint32_t c0, uint32_t c1,
		uint32_t width, uint32_t height, uint8_t **buf, size_t *cap, size_t *outlen)
{
	size_t hdr, at, h_at, need;
	uint32_t rows = per_row ? nsegs / per_row : 0, k = 0;

	if (!nsegs || !per_row || rows * per_row != nsegs || r0 >= r1 || r1 > rows ||
	    c0 >= c1 || c1 > per_row || len < 4 || !width || width > 65535 || !height ||
	    height > 65535 || p[len - 2] != 0xFF || p[len - 1] != 0xD9)
		return -EBADMSG;
	hdr = segs[0];
	h_at = sof_height_at(p, hdr);
	if (!h_at || hdr > len)
		return -EBADMSG;
	need = hdr + 2;
	for (uint32_t r = r0; r < r1; r++) {
		for (uint32_t c = c0; c < c1; c++) {
			uint32_t j = r * per_row + c;
			size_t s0 = segs[j], s1 = j + 1 == nsegs ? len - 2 : (size_t)segs[j + 1] - 2;
			if (s1 < s0 || s1 > len || s0 < hdr)
				return -EBADMSG;
			need += s1 - s0 + 2;
		}
	}
	if (scratch_grow((void **)buf, cap, need) < 0)
		return -ENOMEM;
	memcpy(*buf, p, hdr);
	(*buf)[h_at] = (uint8_t)(height >> 8);
	(*buf)[h_at + 1] = (uint8_t)height;
	(*buf)[h_at + 2] = (uint8_t)(width >> 8);
	(*buf)[h_at + 3] = (uint8_t)width;
	at = hdr;
	for (uint32_t r = r0; r < r1; r++) {
		for (uint32_t c = c0; c < c1; c++) {
			uint32_t j = r * per_row + c;
			size_t s0 = segs[j], s1 = j + 1 == nsegs ? len - 2 : (size_t)segs[j + 1] - 2;
			if (k++) {  /* renumbered: RST0, RST1, ... */
				(*buf)[at++] = 0xFF;
				(*buf)[at++] = (uint8_t)(0xD0 + (k - 2) % 8);
			}
			memcpy(*buf + at, p + s0, s1 - s0);
			at += s1 - s0;
		}
	}
	(*buf)[at++] = 0xFF;
	(*buf)[at++] = 0xD9;
	*outlen = at;
	return 0;
}
