/*
 * decode_impl.h — the inside of a decoder_t, shared by the two files that
 * make up the decoder (private to them: nothing else includes it):
 *   decode.c     the JPEG decoder (libjpeg error manager, header, region
 *                decode, splice) and the dispatch to PNG/WebP;
 *   decode_io.c  reading a file into the input buffer (the size budget of
 *                decode_limits.max_file_bytes) and giving back buffers one
 *                huge image grew.
 */
#ifndef CUTMIXD_DECODE_IMPL_H
#define CUTMIXD_DECODE_IMPL_H

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jpeglib.h>

#include "decode.h"
#include "imgfmt.h"

/* A buffer grown past this by one image is freed before the next. */
#define DECODE_KEEP_BYTES (16u << 20)

struct decode_jerr {
	struct jpeg_error_mgr pub; /* must be first: libjpeg casts to it */
	jmp_buf env;
	decoder_t *owner;
	int rc;                    /* negative errno for the longjmp */
};

/* DECODER_OTHER: a PNG or WebP image is open in d->other (imgfmt.h). */
enum decoder_state { DECODER_IDLE = 0, DECODER_HEADER, DECODER_OTHER };

struct decoder {
	struct jpeg_decompress_struct cinfo;
	struct decode_jerr jerr;
	struct jpeg_progress_mgr progress;
	enum decoder_state state;

	int width, height;         /* declared size of the open image */
	uint64_t max_scan_blocks;  /* of the open image's limits; 0 = none */
	uint64_t scan_blocks;      /* blocks of the scans started so far */
	int counted_scans;         /* scans added to scan_blocks */
	bool cmyk;                 /* CMYK or YCCK: decoded as JCS_CMYK */
	bool inverted;             /* Adobe marker: CMYK stored inverted */

	uint8_t *in;               /* decode_read_fd() (and _file) */
	size_t in_cap;
	uint8_t *rgb;              /* region rows (plus margins) */
	size_t rgb_cap;
	uint8_t *scan;             /* one CMYK scanline */
	size_t scan_cap;
	JSAMPROW *rows;            /* row pointers into rgb */
	size_t rows_cap;           /* in bytes */

	imgfmt_t *other;           /* PNG and WebP, created on first use */

	/* decoder_set_segments(): a packed JPEG's restart segments, used by
	 * decoder_read() to decode only the MCU rows it needs (splice.h) */
	const uint32_t *segs;
	uint32_t nsegs;
	bool in_splice;            /* decoding the spliced copy */
	const uint8_t *data;       /* the open image's bytes */
	size_t len;
	uint8_t *spl;              /* the spliced copy */
	size_t spl_cap;

	char errbuf[256];
};

/* Format the message decoder_error() returns (decode.c). */
void decoder_set_error(decoder_t *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* End the open image, if any (jpeg_abort_decompress for a JPEG whose
 * header was read); the decoder is then idle (decode.c). */
void decoder_end_image(decoder_t *d);

#endif
