/*
 * decode.c — JPEG bytes to RGB pixels with libjpeg-turbo's libjpeg API.
 *
 * DESIGN
 * A decoder_t belongs to one worker thread; nothing in here is shared, so
 * there are no locks. It owns:
 *   - one jpeg_decompress_struct, made afresh for every image: decoder_open()
 *     destroys the previous image's object and creates a new one
 *     (jpeg_create_decompress) before it reads the header, because libjpeg
 *     keeps DQT/DHT tables in the object and a file that lacks a table
 *     would otherwise decode with the tables of whatever image this worker
 *     saw last (bytes that depend on the worker; found by fuzzing). An
 *     image still ends with jpeg_finish_decompress() or
 *     jpeg_abort_decompress() (below); decoder_destroy() frees the last one;
 *   - the error manager and progress monitor, set up once in decoder_new()
 *     and pointed at by every new decompressor;
 *   - the input buffer of decode_read_fd() (decode_io.c, which reads files
 *     and trims the buffers; the struct is in decode_impl.h);
 *   - the RGB region buffer (decoder_read_stream: 16 rows of it, reused
 *     for each group handed to the sink), a CMYK scanline buffer and the
 *     row-pointer array handed to jpeg_read_scanlines().
 * The buffers grow to the largest image seen and are kept, so after
 * warm-up no buffer of ours is allocated per image (the decompressor and
 * libjpeg's own pools are the only allocations left, microseconds per
 * image) — except that a buffer grown past DECODE_KEEP_BYTES (16 MiB: a
 * region of about 5.6 Mpx) by one huge image is freed when the next file
 * is read, so one 49 Mpx image does not leave a worker holding hundreds
 * of MB.
 *
 * A region that reaches the bottom row is followed by
 * jpeg_finish_decompress(), which reads on to EOI: corrupt entropy data that
 * decoded without complaint usually leaves bytes before the next marker,
 * and that warning then fails the image. A region that stops higher up is
 * followed by jpeg_abort_decompress(), so rows below it are never
 * entropy-decoded, and damage below y1 (or damage libjpeg cannot notice)
 * goes unseen: the price of decoding only the crop.
 *
 * Errors: libjpeg reports through our error manager. error_exit, every
 * warning (emit_message with level < 0, as TurboJPEG's stop-on-warning:
 * libjpeg would otherwise carry on with gray or zeroed blocks) and the
 * progress monitor's scan limit format the message into d->errbuf and
 * longjmp back to the function that armed d->jerr.env (decoder_open,
 * decoder_read_guarded), which aborts the image. Nothing reaches stderr.
 *
 * Region decode and fancy upsampling. jpeg_crop_scanline() moves the left
 * edge down to an iMCU boundary and libjpeg then upsamples the chroma of the
 * cropped strip as if the strip were the whole image: the strip's first and
 * last columns are treated as image edges. With h2 "fancy" (triangle)
 * upsampling an edge pixel takes the chroma sample as is instead of
 * 3/4 * near + 1/4 * far, so without care the first column differs from a
 * full decode when x0 sits on an iMCU boundary inside the image, and the
 * last column differs when x1 is even and inside the image (measured with
 * libjpeg-turbo 2.1.5 on 4:2:2 and 4:2:0, baseline and progressive; never
 * any other pixel). So we ask libjpeg for one more column on each side of
 * the request where the image has one and return a pointer past it. That
 * costs at most one extra iMCU column per side, and only when x0 or x1 is
 * on an iMCU boundary. A strip narrower than two chroma samples is worse:
 * jpeg_crop_scanline() then re-initialises the upsampler, which falls back
 * to plain replication in both directions (a 1-pixel-wide region of a
 * 4:2:0 image came out different in every row), so the strip is widened to
 * at least 2 * max_h_samp_factor columns. Vertically nothing is needed:
 * jpeg_skip_scanlines() from row 0 rebuilds the upsampler's context rows
 * (it decodes the iMCU row above the first row it returns) and the context
 * controller decodes the iMCU row below the last row it returns, so rows
 * [y0,y1) equal a full decode's (checked for every y0, and for 1-row
 * regions, by the tests).
 */
#include "decode.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#include "decode_impl.h"
#include "imgfmt.h"
#include "splice.h"
#include "scratch.h"

/* TurboJPEG's TJFLAG_LIMITSCANS limit: a progressive file with more scans
 * is a decompression bomb, not a photo. */
#define DECODE_MAX_SCANS 500

/* decoder_read_stream(): rows decoded per call of the sink. A multiple of
 * the resizer's 4-row horizontal step; 16 rows of a 4000-pixel strip are
 * 192 KB, so the group stays in the L2 cache where the whole region (MBs)
 * did not. */
#define DECODE_GROUP_ROWS 16

/* Where decoder_read_stream() hands the rows: pixel x0 (in the scaled
 * image) of each row at rows[0]. */
struct decode_sink {
	decoder_sink_fn fn;
	void *ctx;
	int x0;
};

void decoder_set_error(decoder_t *d, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(d->errbuf, sizeof(d->errbuf), fmt, ap);
	va_end(ap);
}

static int jpeg_code_to_errno(int code)
{
	switch (code) {
	case JERR_OUT_OF_MEMORY:
		return -ENOMEM;
	case JERR_BAD_PRECISION:
	case JERR_NOTIMPL:
	case JERR_CONVERSION_NOTIMPL:
	case JERR_ARITH_NOTIMPL:
	case JERR_CCIR601_NOTIMPL:
	case JERR_FRACT_SAMPLE_NOTIMPL:
	case JERR_SOF_UNSUPPORTED:
		return -ENOTSUP;
	default:
		return -EBADMSG;
	}
}

/* Format libjpeg's current message as "jpeg: <message>", its first letter
 * lower-cased unless it starts an acronym ("JPEG ..."). */
static void decode_format_jpeg_message(j_common_ptr cinfo, decoder_t *d)
{
	char msg[JMSG_LENGTH_MAX];

	msg[0] = '\0';
	(*cinfo->err->format_message)(cinfo, msg);
	if (msg[0] >= 'A' && msg[0] <= 'Z' && !(msg[1] >= 'A' && msg[1] <= 'Z'))
		msg[0] = (char)(msg[0] - 'A' + 'a');
	decoder_set_error(d, "jpeg: %s", msg);
}

static void decode_error_exit(j_common_ptr cinfo) __attribute__((noreturn));

static void decode_error_exit(j_common_ptr cinfo)
{
	struct decode_jerr *e = (struct decode_jerr *)cinfo->err;

	decode_format_jpeg_message(cinfo, e->owner);
	e->rc = jpeg_code_to_errno(e->pub.msg_code);
	longjmp(e->env, 1);
}

/* Warnings (level < 0) stop the decode: libjpeg would otherwise carry on
 * with gray or zero-filled blocks and we would hand out wrong pixels.
 * Trace messages (level >= 0) are dropped. */
static void decode_emit_message(j_common_ptr cinfo, int msg_level)
{
	struct decode_jerr *e = (struct decode_jerr *)cinfo->err;

	if (msg_level >= 0)
		return;
	decode_format_jpeg_message(cinfo, e->owner);
	e->rc = -EBADMSG;
	longjmp(e->env, 1);
}

static void decode_output_message(j_common_ptr cinfo)
{
	struct decode_jerr *e = (struct decode_jerr *)cinfo->err;

	decode_format_jpeg_message(cinfo, e->owner);
}

/*
 * Called by libjpeg between iMCU rows of input. A scan's header is read
 * before any of its rows, so the first call that sees a new
 * input_scan_number adds that scan's blocks (its components' block
 * counts) to the image's total before the scan is decoded: a file over
 * max_scan_blocks stops there, whatever the crop. Depends on the bytes
 * only, never on time, so the verdict is the same on every worker.
 */
static void decode_progress(j_common_ptr cinfo)
{
	struct decode_jerr *e = (struct decode_jerr *)cinfo->err;
	j_decompress_ptr ci = (j_decompress_ptr)cinfo;
	decoder_t *d = e->owner;

	if (!cinfo->is_decompressor)
		return;
	while (d->counted_scans < ci->input_scan_number) {
		d->counted_scans++;
		if (d->counted_scans != ci->input_scan_number)
			continue; /* not seen: cannot happen, a call per scan */
		for (int c = 0; c < ci->comps_in_scan; c++) {
			const jpeg_component_info *k = ci->cur_comp_info[c];
			d->scan_blocks += (uint64_t)k->width_in_blocks * k->height_in_blocks;
		}
		if (d->max_scan_blocks && d->scan_blocks > d->max_scan_blocks) {
			decoder_set_error(d, "jpeg: decoding needs more than %" PRIu64
					  " blocks over its scans (scan %d reaches %"
					  PRIu64 ", limit max_scan_blocks)",
					  d->max_scan_blocks, ci->input_scan_number,
					  d->scan_blocks);
			e->rc = -E2BIG;
			longjmp(e->env, 1);
		}
	}
	if (ci->input_scan_number > DECODE_MAX_SCANS) {
		decoder_set_error(e->owner,
				  "jpeg: progressive JPEG has more than %d scans",
				  DECODE_MAX_SCANS);
		e->rc = -EBADMSG;
		longjmp(e->env, 1);
	}
}

/* jpeg_create_decompress() under the error manager: only running out of
 * memory can fail there. */
static int decoder_create(decoder_t *d)
{
	if (setjmp(d->jerr.env))
		return -ENOMEM;
	jpeg_create_decompress(&d->cinfo);
	return 0;
}

decoder_t *decoder_new(void)
{
	decoder_t *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->cinfo.err = jpeg_std_error(&d->jerr.pub);
	d->jerr.pub.error_exit = decode_error_exit;
	d->jerr.pub.emit_message = decode_emit_message;
	d->jerr.pub.output_message = decode_output_message;
	d->jerr.owner = d;
	if (decoder_create(d) < 0) {
		jpeg_destroy_decompress(&d->cinfo);
		free(d);
		return NULL;
	}
	d->progress.progress_monitor = decode_progress;
	d->cinfo.progress = &d->progress;
	return d;
}

void decoder_destroy(decoder_t **dp)
{
	decoder_t *d;

	if (!dp || !*dp)
		return;
	d = *dp;
	jpeg_destroy_decompress(&d->cinfo);
	free(d->in);
	free(d->rgb);
	free(d->scan);
	free(d->rows);
	imgfmt_destroy(&d->other);
	free(d->spl);
	free(d);
	*dp = NULL;
}

const char *decoder_error(const decoder_t *d)
{
	return d ? d->errbuf : "";
}

void decoder_end_image(decoder_t *d)
{
	if (d->state == DECODER_HEADER)
		jpeg_abort_decompress(&d->cinfo);
	d->state = DECODER_IDLE;
}

/* PNG or WebP: the header through imgfmt.c, the same limits. */
static int decoder_open_other(decoder_t *d, enum imgfmt_kind f, const uint8_t *data,
			      size_t len, const struct decode_limits *lim,
			      int *width, int *height)
{
	int w, h, rc;

	if (!d->other && !(d->other = imgfmt_new())) {
		decoder_set_error(d, "%s: out of memory", imgfmt_name(f));
		return -ENOMEM;
	}
	rc = imgfmt_open(d->other, f, data, len, lim ? lim->max_pixels : 0, &w, &h,
			 d->errbuf, sizeof(d->errbuf));
	if (rc)
		return rc;
	d->state = DECODER_OTHER;
	d->width = w;
	d->height = h;
	if (width)
		*width = w;
	if (height)
		*height = h;
	return 0;
}

/* A fresh decompressor per image: libjpeg keeps DQT/DHT tables from the
 * previous image in the object, so a file that lacks a table would
 * otherwise decode with whatever this worker saw last (found by fuzzing:
 * the bytes then depend on the worker). Creating one costs microseconds. */
static int decoder_fresh(decoder_t *d)
{
	jpeg_destroy_decompress(&d->cinfo);
	if (decoder_create(d) < 0) {
		decoder_set_error(d, "jpeg: out of memory");
		return -ENOMEM;
	}
	d->cinfo.progress = &d->progress;
	return 0;
}

/* What decoder_open() refuses once the header is read: a zero size, more
 * than lim->max_pixels, a precision other than 8, a colour space we do
 * not convert. Sets d->cmyk. 0 or -errno with the message. */
static int decoder_check_header(decoder_t *d, const struct decode_limits *lim)
{
	struct jpeg_decompress_struct *ci = &d->cinfo;
	uint64_t pixels;

	if (ci->image_width == 0 || ci->image_height == 0) {
		decoder_set_error(d, "jpeg: image has zero size (%ux%u)",
				  ci->image_width, ci->image_height);
		return -EBADMSG;
	}
	pixels = (uint64_t)ci->image_width * ci->image_height;
	if (lim && lim->max_pixels && pixels > lim->max_pixels) {
		decoder_set_error(d, "jpeg: image is %ux%u (%" PRIu64
				  " pixels), limit is %" PRIu64 " pixels",
				  ci->image_width, ci->image_height, pixels,
				  lim->max_pixels);
		return -E2BIG;
	}
	if (ci->data_precision != 8) {
		/* libjpeg already refuses this in an 8-bit build. */
		decoder_set_error(d, "jpeg: unsupported JPEG data precision %d",
				  ci->data_precision);
		return -ENOTSUP;
	}

	switch (ci->jpeg_color_space) {
	case JCS_GRAYSCALE:
	case JCS_YCbCr:
	case JCS_RGB:
		d->cmyk = false;
		return 0;
	case JCS_CMYK:
	case JCS_YCCK:
		d->cmyk = true;
		return 0;
	default:
		decoder_set_error(d, "jpeg: unsupported color space with %d components",
				  ci->num_components);
		return -ENOTSUP;
	}
}

int decoder_open(decoder_t *d, const uint8_t *data, size_t len,
		 const struct decode_limits *lim, int *width, int *height)
{
	struct jpeg_decompress_struct *ci = &d->cinfo;
	int rc;

	if (width)
		*width = 0;
	if (height)
		*height = 0;
	decoder_end_image(d);
	d->errbuf[0] = '\0';
	d->width = d->height = 0;
	d->max_scan_blocks = lim ? lim->max_scan_blocks : 0;
	d->scan_blocks = 0;
	d->counted_scans = 0;
	if (!data || len == 0) {
		decoder_set_error(d, "jpeg: empty input");
		return -EBADMSG;
	}
	enum imgfmt_kind fmt = imgfmt_detect(data, len);
	if (fmt == IMGFMT_PNG || fmt == IMGFMT_WEBP)
		return decoder_open_other(d, fmt, data, len, lim, width, height);
	if (len > ULONG_MAX) {
		decoder_set_error(d, "jpeg: input of %zu bytes is too large", len);
		return -EFBIG;
	}
	rc = decoder_fresh(d);
	if (rc)
		return rc;

	if (setjmp(d->jerr.env)) {
		rc = d->jerr.rc;
		goto out_abort;
	}
	d->state = DECODER_HEADER;
	d->data = data;
	d->len = len;
	jpeg_mem_src(ci, data, (unsigned long)len);
	jpeg_read_header(ci, TRUE);
	rc = decoder_check_header(d, lim);
	if (rc)
		goto out_abort;
	d->inverted = d->cmyk && ci->saw_Adobe_marker;
	d->width = (int)ci->image_width;
	d->height = (int)ci->image_height;
	if (width)
		*width = d->width;
	if (height)
		*height = d->height;
	return 0;

out_abort:
	decoder_end_image(d);
	d->width = d->height = 0;
	return rc;
}

static int scaled(int size, int denom)
{
	return (int)(((int64_t)size + denom - 1) / denom);
}

static bool valid_denom(int denom)
{
	return denom == 1 || denom == 2 || denom == 4 || denom == 8;
}

void decoder_scaled_size(const decoder_t *d, int denom, int *w, int *h)
{
	int sw = 0, sh = 0;

	if (d && d->state != DECODER_IDLE && valid_denom(denom)) {
		sw = scaled(d->width, denom);
		sh = scaled(d->height, denom);
	}
	if (w)
		*w = sw;
	if (h)
		*h = sh;
}

/* (a * b + 127) / 255 rounded to nearest, exact for a, b in 0..255 (the
 * same MULDIV255 Pillow uses for CMYK to RGB). */
static inline uint8_t mul255(unsigned a, unsigned b)
{
	unsigned t = a * b + 128;

	return (uint8_t)((t + (t >> 8)) >> 8);
}

static void cmyk_to_rgb(uint8_t *restrict out, const uint8_t *restrict in,
			size_t n, bool inverted)
{
	size_t i;

	if (inverted) {
		/* Adobe (Photoshop) files store 255 - ink: R = c * k / 255. */
		for (i = 0; i < n; i++, in += 4, out += 3) {
			out[0] = mul255(in[0], in[3]);
			out[1] = mul255(in[1], in[3]);
			out[2] = mul255(in[2], in[3]);
		}
	} else {
		for (i = 0; i < n; i++, in += 4, out += 3) {
			unsigned nk = 255u - in[3];

			out[0] = mul255(255u - in[0], nk);
			out[1] = mul255(255u - in[1], nk);
			out[2] = mul255(255u - in[2], nk);
		}
	}
}

/* Under the armed longjmp: start the decompressor at 1/denom and crop it
 * to a strip holding columns [cx0,cx1); *xoff, *cw: the strip. */
static int decoder_start_strip(decoder_t *d, int denom, int cx0, int cx1,
			       int sw, int sh, JDIMENSION *xoff, JDIMENSION *cw)
{
	struct jpeg_decompress_struct *ci = &d->cinfo;

	ci->scale_num = 1;
	ci->scale_denom = (unsigned)denom;
	ci->out_color_space = d->cmyk ? JCS_CMYK : JCS_RGB;
	ci->dct_method = JDCT_ISLOW;
	ci->do_fancy_upsampling = TRUE;
	ci->do_block_smoothing = TRUE;
	ci->quantize_colors = FALSE;
	ci->buffered_image = FALSE;
	ci->raw_data_out = FALSE;

	jpeg_start_decompress(ci);
	if ((int)ci->output_width != sw || (int)ci->output_height != sh) {
		decoder_set_error(d, "jpeg: scaled size is %ux%u, expected %dx%d",
				  ci->output_width, ci->output_height, sw, sh);
		return -EBADMSG;
	}
	/* libjpeg-turbo before 3.0 computes wrong component widths in
	 * jpeg_crop_scanline() when DCT scaling gives the components
	 * different scaled block sizes (unusual sampling factors), and then
	 * returns uninitialised memory (found by fuzzing; fixed upstream in
	 * 3.0.0). Decode the whole width in that case. */
	bool croppable = true;
	for (int c = 0; c < ci->num_components; c++)
		if (ci->comp_info[c].DCT_scaled_size != ci->min_DCT_scaled_size)
			croppable = false;
	if (!croppable) {
		*xoff = 0;
		*cw = ci->output_width;
	} else if (*cw != ci->output_width) {
		jpeg_crop_scanline(ci, xoff, cw);
	}
	/* jpeg_crop_scanline only ever widens to the left. */
	if ((int)*xoff > cx0 || (int)(*xoff + *cw) < cx1) {
		decoder_set_error(d, "jpeg: crop to columns %d..%d gave %u..%u",
				  cx0, cx1, *xoff, *xoff + *cw);
		return -EBADMSG;
	}
	return 0;
}

/* Under the armed longjmp: skip to row y0 and read rows [y0,y1) of a
 * strip cw columns wide into d->rgb (stride bytes a row), CMYK through
 * d->scan. Without a sink the rows fill d->rgb (group = y1 - y0); with
 * one, d->rgb holds `group` rows, handed to the sink each time it is full
 * (pixel x0 is skip bytes into a row) and then refilled. */
static int decoder_scan_rows(decoder_t *d, int y0, int y1, JDIMENSION cw,
			     size_t stride, size_t group, size_t skip,
			     const struct decode_sink *sink)
{
	struct jpeg_decompress_struct *ci = &d->cinfo;
	size_t fill = 0;
	int base = 0;

	if (y0 > 0 && jpeg_skip_scanlines(ci, (JDIMENSION)y0) != (JDIMENSION)y0) {
		decoder_set_error(d, "jpeg: could not skip to row %d", y0);
		return -EBADMSG;
	}

	for (size_t i = 0; i < group; i++)
		d->rows[i] = d->rgb + i * stride;
	while (ci->output_scanline < (JDIMENSION)y1) {
		size_t want = (size_t)((JDIMENSION)y1 - ci->output_scanline);
		JDIMENSION n;

		if (want > group - fill)
			want = group - fill;
		if (d->cmyk) {
			JSAMPROW row = d->scan;

			n = jpeg_read_scanlines(ci, &row, 1);
			if (n == 1)
				cmyk_to_rgb(d->rgb + fill * stride, d->scan, cw,
					    d->inverted);
		} else {
			n = jpeg_read_scanlines(ci, d->rows + fill, (JDIMENSION)want);
		}
		if (n == 0) {
			decoder_set_error(d, "jpeg: no progress at row %u",
					  ci->output_scanline);
			return -EBADMSG;
		}
		fill += n;
		if (sink && (fill == group || ci->output_scanline == (JDIMENSION)y1)) {
			sink->fn(sink->ctx, d->rgb + skip, stride, base, (int)fill);
			base += (int)fill;
			fill = 0;
		}
	}
	return 0;
}

/* The part of decoder_read() that runs under the armed longjmp. Writes the
 * decoded strip into d->rgb; *xoff_out is the strip's first column. */
static int decoder_read_rows(decoder_t *d, int denom, int cx0, int y0,
			     int cx1, int y1, int sw, int sh,
			     const struct decode_sink *sink,
			     int *xoff_out, size_t *stride_out)
{
	JDIMENSION xoff = (JDIMENSION)cx0, cw = (JDIMENSION)(cx1 - cx0);
	size_t stride, nrows = (size_t)(y1 - y0);
	int rc;

	if (sink && nrows > DECODE_GROUP_ROWS)
		nrows = DECODE_GROUP_ROWS;

	rc = decoder_start_strip(d, denom, cx0, cx1, sw, sh, &xoff, &cw);
	if (rc)
		return rc;
	stride = (size_t)cw * 3;
	rc = scratch_grow((void **)&d->rgb, &d->rgb_cap, stride * nrows);
	if (rc == 0 && d->cmyk)
		rc = scratch_grow((void **)&d->scan, &d->scan_cap, (size_t)cw * 4);
	if (rc == 0)
		rc = scratch_grow((void **)&d->rows, &d->rows_cap, nrows * sizeof(JSAMPROW));
	if (rc < 0) {
		decoder_set_error(d, "jpeg: out of memory for %ux%zu region",
				  cw, nrows);
		return rc;
	}
	rc = decoder_scan_rows(d, y0, y1, cw, stride, nrows,
			       sink ? (size_t)(sink->x0 - (int)xoff) * 3 : 0, sink);
	if (rc)
		return rc;
	/* Down to the last row: read on to EOI, so that entropy data left
	 * over at the end of the scan ("extraneous bytes before marker", the
	 * usual sign of scrambled data that decoded without complaint) is a
	 * warning, hence an error, as with TurboJPEG's full decode. */
	if (y1 == sh)
		jpeg_finish_decompress(&d->cinfo);
	*xoff_out = (int)xoff;
	*stride_out = stride;
	return 0;
}

/* decoder_read_rows() with the error manager's longjmp target armed; the
 * caller's locals stay out of setjmp's way. */
static int decoder_read_guarded(decoder_t *d, int denom, int cx0, int y0,
				int cx1, int y1, int sw, int sh,
				const struct decode_sink *sink,
				int *xoff_out, size_t *stride_out)
{
	if (setjmp(d->jerr.env))
		return d->jerr.rc;
	return decoder_read_rows(d, denom, cx0, y0, cx1, y1, sw, sh, sink, xoff_out,
				 stride_out);
}

/*
 * The rows [y0,y1) from a copy holding only the MCU rows they need (plus
 * the upsampling margin of splice.h). -EAGAIN: the file is not laid out
 * as `cutmixd pack` writes it; the caller decodes it whole.
 */
static int decoder_read_region(decoder_t *d, int denom, int x0, int y0, int x1,
			       int y1, struct decoded *out, struct decode_sink *sink);

static int decoder_read_spliced(decoder_t *d, int denom, int x0, int y0, int x1,
				int y1, struct decoded *out, struct decode_sink *sink)
{
	struct jpeg_decompress_struct *ci = &d->cinfo;
	int vmax = ci->max_v_samp_factor, hmax = ci->max_h_samp_factor, rc;
	bool vsub = false, hsub = false;

	if (ci->progressive_mode || ci->num_components < 1 || d->cmyk)
		return -EAGAIN;
	for (int c = 0; c < ci->num_components; c++) {
		vsub |= ci->comp_info[c].v_samp_factor < vmax;
		hsub |= ci->comp_info[c].h_samp_factor < hmax;
	}
	/* one component: the scan is not interleaved, an MCU is one block */
	int mcu_h = ci->num_components == 1 ? 8 : 8 * vmax;
	int mcu_w = ci->num_components == 1 ? 8 : 8 * hmax;
	uint32_t rows = (uint32_t)((d->height + mcu_h - 1) / mcu_h);
	uint32_t per_row = (uint32_t)((d->width + mcu_w - 1) / mcu_w);
	uint32_t k = ci->restart_interval, ipr = k ? per_row / k : 0;
	if (!k || ipr * k != per_row || (uint64_t)rows * ipr != d->nsegs)
		return -EAGAIN;
	int mh = mcu_h / denom, iw = (int)k * mcu_w / denom;  /* in output pixels */
	uint32_t r0 = (uint32_t)(y0 / mh), r1 = (uint32_t)((y1 + mh - 1) / mh);
	uint32_t c0 = (uint32_t)(x0 / iw), c1 = (uint32_t)((x1 + iw - 1) / iw);
	/* the chroma margin of splice.h, in each subsampled direction */
	if (vsub && r0 > 0 && y0 == (int)r0 * mh)
		r0--;
	if (vsub && r1 < rows && y1 == (int)r1 * mh)
		r1++;
	if (hsub && c0 > 0 && x0 == (int)c0 * iw)
		c0--;
	if (hsub && c1 < ipr && x1 == (int)c1 * iw)
		c1++;
	if (r0 == 0 && r1 == rows && c0 == 0 && c1 == ipr)
		return -EAGAIN;  /* everything: nothing to cut */
	int top = (int)r0 * mcu_h, left = (int)c0 * (int)k * mcu_w;
	int h = (int)r1 * mcu_h < d->height ? (int)r1 * mcu_h - top : d->height - top;
	int wd = (int)(c1 * k) * mcu_w < d->width ? (int)(c1 * k) * mcu_w - left :
		 d->width - left;
	size_t n = 0;
	rc = splice_rect(d->data, d->len, d->segs, d->nsegs, ipr, r0, r1, c0, c1,
			 (uint32_t)wd, (uint32_t)h, &d->spl, &d->spl_cap, &n);
	if (rc)
		return -EAGAIN;
	int w, hh;
	rc = decoder_open(d, d->spl, n, NULL, &w, &hh);
	if (rc == 0) {
		int ox = (int)c0 * iw, oy = (int)r0 * mh;
		d->in_splice = true;
		rc = decoder_read_region(d, denom, x0 - ox, y0 - oy, x1 - ox, y1 - oy,
					 out, sink);
		d->in_splice = false;
	}
	return rc;
}

/* decoder_read(), or with a sink decoder_read_stream() (out then says
 * only the size). */
static int decoder_read_region(decoder_t *d, int denom, int x0, int y0, int x1,
			       int y1, struct decoded *out, struct decode_sink *sink)
{
	int sw, sh, cx0, cx1, min_w, xoff = 0, rc;
	size_t stride = 0;

	memset(out, 0, sizeof(*out));
	if (d->state == DECODER_IDLE) {
		decoder_set_error(d, "jpeg: read: no image open");
		return -EINVAL;
	}
	d->errbuf[0] = '\0';
	if (!valid_denom(denom)) {
		decoder_set_error(d, "jpeg: read: scale 1/%d: must be 1/1, 1/2, 1/4 or 1/8",
				  denom);
		rc = -EINVAL;
		goto out_abort;
	}
	sw = scaled(d->width, denom);
	sh = scaled(d->height, denom);
	if (x0 < 0 || y0 < 0 || x0 >= x1 || y0 >= y1 || x1 > sw || y1 > sh) {
		decoder_set_error(d, "jpeg: read: region [%d,%d)x[%d,%d) is not "
				  "inside the %dx%d image", x0, x1, y0, y1, sw, sh);
		rc = -EINVAL;
		goto out_abort;
	}
	if (d->segs && !d->in_splice && d->state == DECODER_HEADER) {
		rc = decoder_read_spliced(d, denom, x0, y0, x1, y1, out, sink);
		if (rc != -EAGAIN)
			return rc;
	}
	if (d->state == DECODER_OTHER) {
		rc = imgfmt_read(d->other, denom, x0, y0, x1, y1, &out->rgb,
				 &out->stride, d->errbuf, sizeof(d->errbuf));
		if (rc == 0) {
			out->width = x1 - x0;
			out->height = y1 - y0;
			/* PNG and WebP decode whole images (imgfmt.c): one group */
			if (sink)
				sink->fn(sink->ctx, out->rgb, out->stride, 0, out->height);
		}
		goto out_abort;
	}
	/* One column of margin on each side where the image has one, and a
	 * strip wide enough for two chroma samples; rows need no margin (see
	 * DESIGN). */
	cx0 = x0 > 0 ? x0 - 1 : 0;
	if (d->cinfo.progressive_mode) {
		/* Block smoothing of progressive files with incomplete AC data
		 * reads neighbouring blocks, and takes the strip's first block
		 * for the image's left edge: keep two blocks of margin. */
		int m = 1 + 2 * d->cinfo.max_h_samp_factor * (8 / denom);
		cx0 = x0 > m ? x0 - m : 0;
	}
	cx1 = x1 < sw ? x1 + 1 : sw;
	min_w = 2 * d->cinfo.max_h_samp_factor;
	if (cx1 - cx0 < min_w) {
		cx1 = cx0 + min_w < sw ? cx0 + min_w : sw;
		cx0 = cx1 - min_w > 0 ? cx1 - min_w : 0;
	}

	if (sink)
		sink->x0 = x0;
	rc = decoder_read_guarded(d, denom, cx0, y0, cx1, y1, sw, sh, sink, &xoff,
				  &stride);
	if (rc < 0)
		goto out_abort;
	out->stride = stride;
	out->rgb = sink ? NULL : d->rgb + (size_t)(x0 - xoff) * 3;
	out->width = x1 - x0;
	out->height = y1 - y0;
	rc = 0;
out_abort:
	/* Rows below y1 are never entropy-decoded. */
	decoder_end_image(d);
	return rc;
}

int decoder_read(decoder_t *d, int denom, int x0, int y0, int x1, int y1,
		 struct decoded *out)
{
	return decoder_read_region(d, denom, x0, y0, x1, y1, out, NULL);
}

int decoder_read_stream(decoder_t *d, int denom, int x0, int y0, int x1, int y1,
			decoder_sink_fn fn, void *ctx)
{
	struct decode_sink sink = { fn, ctx, x0 };
	struct decoded out;

	if (!fn) {
		decoder_end_image(d);
		return -EINVAL;
	}
	return decoder_read_region(d, denom, x0, y0, x1, y1, &out, &sink);
}
