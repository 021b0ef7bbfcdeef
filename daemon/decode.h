/*
 * decode.h — JPEG bytes to RGB pixels with libjpeg-turbo, decoding only the
 * region a crop keeps.
 *
 * A decoder_t belongs to one worker thread and is reused for every image:
 * its input and row buffers live as long as the worker; the libjpeg
 * decompressor inside it is made afresh for each image (decode.c).
 *
 *   decoder_open()        reads the headers, refuses absurd sizes before any
 *                         pixel buffer is allocated, reports width/height;
 *   decoder_scaled_size() the size after DCT-domain scaling by 1/denom;
 *   decoder_read()        decodes rows [y0,y1) x cols [x0,x1) of the scaled
 *                         image into an RGB buffer owned by the decoder and
 *                         stops early: rows below y1 are never entropy-decoded.
 *   decoder_read_stream() the same rows handed to a callback 16 at a time
 *                         as they are decoded (the daemon's path: straight
 *                         into the resizer, resize.h), no region buffer.
 *
 * Grayscale and CMYK/YCCK come out as RGB (Adobe inverted CMYK handled).
 * Errors are returned as negative errno values with a message from
 * decoder_error(); libjpeg's own messages never reach stderr:
 *   -EBADMSG  the bytes are not a JPEG libjpeg can decode cleanly: every
 *             libjpeg warning (truncation, corrupt entropy data, ...) is an
 *             error, so what libjpeg notices never yields wrong pixels. A
 *             region reaching the bottom row also reads on to EOI (left
 *             over entropy data fails it); one that stops higher up never
 *             looks at the data below it;
 *   -ENOTSUP  valid but unsupported (12-bit, lossless, odd color space);
 *   -E2BIG    declared size above decode_limits.max_pixels, or more than
 *             max_scan_blocks 8x8 blocks summed over the scans (a
 *             progressive file of many scans: the decode budget);
 *   -EFBIG    file above decode_limits.max_file_bytes;
 *   -EINVAL   bad arguments (region, scale, no image open);
 *   -ENOMEM, or -errno of open/fstat/read.
 * A full decode is byte-identical to libjpeg-turbo's (islow IDCT, fancy
 * upsampling), i.e. to PIL's Image.open(f).convert('RGB'); a region is
 * byte-identical to the same region of the full decode.
 */
#ifndef CUTMIXD_DECODE_H
#define CUTMIXD_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct decoder decoder_t;

/* A zero field, or a NULL pointer to the struct, means no limit. */
struct decode_limits {
	uint64_t max_pixels;     /* declared width*height above this: -E2BIG */
	uint64_t max_file_bytes; /* larger file: -EFBIG (decode_read_file) */
	/* The decode budget: 8x8 blocks entropy-decoded, summed over every
	 * scan (a baseline 4:2:0 image has about pixels/43 blocks in its one
	 * scan; each progressive scan decodes its components' blocks again).
	 * Above it: -E2BIG before the scan that crosses it is decoded. */
	uint64_t max_scan_blocks;
};

/* A decoded region: pixel (x0,y0) of the request is at rgb[0]. */
struct decoded {
	const uint8_t *rgb;
	size_t stride;           /* bytes between rows */
	int width, height;       /* == x1-x0, y1-y0 of the request */
};

decoder_t *decoder_new(void);
void decoder_destroy(decoder_t **d);

/*
 * Read a whole file into the decoder's reusable input buffer (valid until
 * the next decode_read_file; any open image is closed first).
 * Returns 0, or -errno (-EFBIG above max_file_bytes, -ENODATA when empty,
 * -EINVAL when not a regular file); the message says which file and why.
 */
int decode_read_file(decoder_t *d, const char *path,
		     const struct decode_limits *lim,
		     const uint8_t **data, size_t *len);

/*
 * The same for a file already open on fd, which is always closed; `name`
 * is what messages call it ("decode: 'name': empty file"), or NULL when
 * the caller names the file itself ("decode: empty file": the daemon adds
 * the dataset-relative path, so no absolute path reaches a client). fd
 * may be the -errno of a failed open, reported as "decode: open: why".
 */
int decode_read_fd(decoder_t *d, int fd, const char *name,
		   const struct decode_limits *lim,
		   const uint8_t **data, size_t *len);

/*
 * True for errors that say nothing about the file: out of memory or file
 * descriptors (ENOMEM, ENOBUFS, EMFILE, ENFILE), I/O or network file
 * system trouble (EIO, ETIMEDOUT, ESTALE, ENOLCK), EAGAIN, EINTR. Such a
 * sample is not a bad file: its request fails (INTERNAL, retryable) and
 * the bad-file list stays clean.
 */
bool decode_error_transient(int rc);

/* Bytes of scratch the decoder holds now (tests, and the RSS notes). */
size_t decoder_retained(const decoder_t *d);

/*
 * The decoder's input buffer grown to `need` bytes, for a caller that reads
 * the bytes itself (a tar member, shards.c); valid until the next read into
 * it. Any open image is closed first. NULL when out of memory.
 */
uint8_t *decoder_input_buffer(decoder_t *d, size_t need);

/*
 * Restart-segment offsets of the next image opened (a packed JPEG, pack.h):
 * decoder_read() then decodes only the MCU rows a region needs (splice.h),
 * with the same pixels. The array must stay valid while the image is open;
 * cleared by decode_read_file() and decoder_input_buffer().
 */
void decoder_set_segments(decoder_t *d, const uint32_t *segs, uint32_t n);

/*
 * Parse headers of `data` (must stay valid until the next open). Checks
 * the declared size against lim before anything is allocated for pixels.
 * Any image still open is closed first.
 */
int decoder_open(decoder_t *d, const uint8_t *data, size_t len,
		 const struct decode_limits *lim, int *width, int *height);

/* denom in {1,2,4,8}: libjpeg's ceil(width/denom), ceil(height/denom). */
void decoder_scaled_size(const decoder_t *d, int denom, int *w, int *h);

/*
 * Decode the region [x0,x1) x [y0,y1) of the image scaled by 1/denom
 * (coordinates in the scaled image). Valid until the next call on d.
 * After it (success or failure) the decoder is ready for decoder_open():
 * the image is closed, a second region needs a second open.
 */
int decoder_read(decoder_t *d, int denom, int x0, int y0, int x1, int y1,
		 struct decoded *out);

/*
 * A group of decoded rows for decoder_read_stream(): rows [row0, row0 +
 * nrows) of the region (row 0 = y0), x1 - x0 pixels each, pixel x0 at
 * rows[0], `stride` bytes between rows; valid only during the call. It
 * must return (no longjmp out of it) and cannot fail the decode.
 */
typedef void (*decoder_sink_fn)(void *ctx, const uint8_t *rows, size_t stride,
				int row0, int nrows);

/*
 * decoder_read() without the region buffer: the same rows, the same bytes,
 * the same errors, but handed to `fn` in order as they are decoded, a few
 * rows at a time (a JPEG: 16 rows, the last group shorter; PNG and WebP,
 * decoded whole: one group), so the decoder holds a few rows instead of the
 * region. On an error the rows already handed over are not taken back:
 * the caller drops what it made of them. The image is closed after it.
 */
int decoder_read_stream(decoder_t *d, int denom, int x0, int y0, int x1, int y1,
			decoder_sink_fn fn, void *ctx);

/* Last error message ("" if none). */
const char *decoder_error(const decoder_t *d);

#endif
