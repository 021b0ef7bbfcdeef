/*
 * jpeg_fixtures.c — see jpeg_fixtures.h. libjpeg and libc only.
 */
#include "jpeg_fixtures.h"

#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

struct fixture_jerr {
	struct jpeg_error_mgr pub; /* first: libjpeg casts to it */
	jmp_buf env;
	char msg[JMSG_LENGTH_MAX];
};

static void fixture_error_exit(j_common_ptr cinfo)
{
	struct fixture_jerr *e = (struct fixture_jerr *)cinfo->err;

	(*cinfo->err->format_message)(cinfo, e->msg);
	longjmp(e->env, 1);
}

static void fixture_output_message(j_common_ptr cinfo)
{
	struct fixture_jerr *e = (struct fixture_jerr *)cinfo->err;

	(*cinfo->err->format_message)(cinfo, e->msg);
}

static uint32_t fixture_hash(uint32_t x)
{
	x ^= x >> 16;
	x *= 0x7feb352dU;
	x ^= x >> 15;
	x *= 0x846ca68bU;
	x ^= x >> 16;
	return x;
}

uint8_t jpeg_fixture_pattern(const struct jpeg_fixture_spec *s, int x, int y, int c)
{
	int w = s->width > 1 ? s->width - 1 : 1;
	int h = s->height > 1 ? s->height - 1 : 1;
	int v;
	uint32_t n;

	switch (c) {
	case 0:
		v = x * 255 / w;
		break;
	case 1:
		v = y * 255 / h;
		break;
	case 2:
		v = (x + y) * 255 / (w + h);
		break;
	default:
		v = 40 + ((x * 3 + y * 2) % 97);
		break;
	}
	/* Hard edges: a diagonal band of blocks with the value inverted. */
	if ((x / 24 + y / 40) % 5 == 0)
		v = 255 - v;
	/* Texture: +-8 of seeded noise. */
	n = fixture_hash((uint32_t)x * 0x9e3779b1U ^ (uint32_t)y * 0x85ebca77U ^
			 (uint32_t)c * 0xc2b2ae3dU ^ s->seed);
	v += (int)(n & 15) - 8;
	if (v < 0)
		v = 0;
	if (v > 255)
		v = 255;
	return (uint8_t)v;
}

void jpeg_fixture_fill(const struct jpeg_fixture_spec *s, uint8_t *px, size_t stride)
{
	for (int y = 0; y < s->height; y++)
		for (int x = 0; x < s->width; x++)
			for (int c = 0; c < s->components; c++)
				px[(size_t)y * stride + (size_t)x * (size_t)s->components + (size_t)c] =
					jpeg_fixture_pattern(s, x, y, c);
}

/* Compressor state that must survive a longjmp: kept out of registers. */
struct fixture_enc {
	struct jpeg_compress_struct cinfo;
	struct fixture_jerr jerr;
	unsigned char *buf;
	unsigned long size;
	uint8_t *row;
};

static void fixture_set_sampling(struct jpeg_compress_struct *ci, const struct jpeg_fixture_spec *s)
{
	int h = 1, v = 1;

	if (s->components == 1)
		return;
	if (s->subsamp == JPEG_FIXTURE_422)
		h = 2;
	else if (s->subsamp == JPEG_FIXTURE_420)
		h = v = 2;
	else if (s->subsamp == JPEG_FIXTURE_440)
		v = 2;
	else if (s->subsamp == JPEG_FIXTURE_411)
		h = 4;
	for (int i = 0; i < ci->num_components; i++) {
		bool full = i == 0 || i == 3;

		ci->comp_info[i].h_samp_factor = full ? h : 1;
		ci->comp_info[i].v_samp_factor = full ? v : 1;
	}
}

int jpeg_fixture_encode(const struct jpeg_fixture_spec *s, const uint8_t *px,
			size_t stride, uint8_t **out, size_t *len,
			char *errbuf, size_t errlen)
{
	struct fixture_enc *e;
	struct jpeg_compress_struct *ci;
	size_t rowlen;
	int rc;

	*out = NULL;
	*len = 0;
	if (errbuf && errlen)
		errbuf[0] = '\0';
	if (s->width <= 0 || s->height <= 0 ||
	    (s->components != 1 && s->components != 3 && s->components != 4))
		return -EINVAL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	rowlen = (size_t)s->width * (size_t)s->components;
	e->row = malloc(rowlen);
	if (!e->row) {
		free(e);
		return -ENOMEM;
	}
	ci = &e->cinfo;
	ci->err = jpeg_std_error(&e->jerr.pub);
	e->jerr.pub.error_exit = fixture_error_exit;
	e->jerr.pub.output_message = fixture_output_message;
	if (setjmp(e->jerr.env)) {
		if (errbuf && errlen)
			snprintf(errbuf, errlen, "jpeg_fixture: %s", e->jerr.msg);
		rc = -EIO;
		goto out_destroy;
	}
	jpeg_create_compress(ci);
	jpeg_mem_dest(ci, &e->buf, &e->size);
	ci->image_width = (JDIMENSION)s->width;
	ci->image_height = (JDIMENSION)s->height;
	ci->input_components = s->components;
	ci->in_color_space = s->components == 1 ? JCS_GRAYSCALE :
			     s->components == 3 ? JCS_RGB : JCS_CMYK;
	jpeg_set_defaults(ci);
	if (s->components == 4) {
		jpeg_set_colorspace(ci, s->ycck ? JCS_YCCK : JCS_CMYK);
		if (s->plain_cmyk && !s->ycck)
			ci->write_Adobe_marker = FALSE;
	}
	jpeg_set_quality(ci, s->quality > 0 ? s->quality : 90, TRUE);
	fixture_set_sampling(ci, s);
	if (s->progressive)
		jpeg_simple_progression(ci);
	ci->restart_interval = (unsigned)s->restart_interval;
	ci->arith_code = s->arithmetic ? TRUE : FALSE;
	/* set_colorspace asks for an Adobe marker for CMYK/YCCK already. */
	jpeg_start_compress(ci, TRUE);
	while (ci->next_scanline < ci->image_height) {
		const uint8_t *src = px + (size_t)ci->next_scanline * stride;
		JSAMPROW row = e->row;

		if (s->components == 4 && !(s->plain_cmyk && !s->ycck)) {
			/* Photoshop writes 255 - ink. */
			for (size_t i = 0; i < rowlen; i++)
				e->row[i] = (uint8_t)(255 - src[i]);
		} else {
			memcpy(e->row, src, rowlen);
		}
		jpeg_write_scanlines(ci, &row, 1);
	}
	jpeg_finish_compress(ci);
	*out = e->buf;
	*len = e->size;
	e->buf = NULL;
	rc = 0;
out_destroy:
	jpeg_destroy_compress(ci);
	free(e->buf);
	free(e->row);
	free(e);
	return rc;
}

int jpeg_fixture_make(const struct jpeg_fixture_spec *s, uint8_t **out, size_t *len)
{
	size_t stride;
	uint8_t *px;
	int rc;

	*out = NULL;
	*len = 0;
	if (s->width <= 0 || s->height <= 0 || s->components <= 0)
		return -EINVAL;
	stride = (size_t)s->width * (size_t)s->components;
	px = malloc(stride * (size_t)s->height);
	if (!px)
		return -ENOMEM;
	jpeg_fixture_fill(s, px, stride);
	rc = jpeg_fixture_encode(s, px, stride, out, len, NULL, 0);
	free(px);
	return rc;
}

long jpeg_fixture_find_sof(const uint8_t *jpg, size_t len)
{
	size_t i = 2;

	if (len < 4 || jpg[0] != 0xFF || jpg[1] != 0xD8)
		return -1;
	while (i + 4 < len) {
		unsigned m, seglen;

		if (jpg[i] != 0xFF)
			return -1;
		m = jpg[i + 1];
		seglen = (unsigned)jpg[i + 2] << 8 | jpg[i + 3];
		if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC)
			return i + 9 < len ? (long)i : -1;
		if (m == 0xDA || m == 0xD9)
			break;
		i += 2 + seglen;
	}
	return -1;
}
