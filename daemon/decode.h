/*
 * decode.h — JPEG bytes to RGB pixels with libjpeg-turbo, decoding only the
 * region a crop keeps.
 *
 * A decoder_t belongs to one worker thread and is reused for every image:
 * the decompressor object and the row buffers live as long as the worker.
 *
 *   decoder_open()        reads the headers, refuses absurd sizes before any
 *                         pixel buffer is allocated, reports width/height;
 *   decoder_scaled_size() the size after DCT-domain scaling by 1/denom;
 *   decoder_read()        decodes rows [y0,y1) x cols [x0,x1) of the scaled
 *                         image into an RGB buffer owned by the decoder and
 *                         stops early: rows below y1 are never entropy-decoded.
 *
 * Grayscale and CMYK/YCCK come out as RGB (Adobe inverted CMYK handled).
 * Errors are returned as negative errno values with a message from
 * decoder_error(); libjpeg's own messages never reach stderr.
 */
#ifndef CUTMIXD_DECODE_H
#define CUTMIXD_DECODE_H

#include <stddef.h>
#include <stdint.h>

typedef struct decoder decoder_t;

struct decode_limits {
	uint64_t max_pixels;     /* declared width*height above this: -E2BIG */
	uint64_t max_file_bytes; /* larger file: -EFBIG (decode_read_file) */
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
 * Read a whole file into the decoder's reusable input buffer.
 * Returns 0, or -errno (-EFBIG above max_file_bytes); the message says
 * which file and why.
 */
int decode_read_file(decoder_t *d, const char *path,
		     const struct decode_limits *lim,
		     const uint8_t **data, size_t *len);

/* Parse headers of `data` (must stay valid until the next open). */
int decoder_open(decoder_t *d, const uint8_t *data, size_t len,
		 const struct decode_limits *lim, int *width, int *height);

/* denom in {1,2,4,8}: libjpeg's ceil(width/denom), ceil(height/denom). */
void decoder_scaled_size(const decoder_t *d, int denom, int *w, int *h);

/*
 * Decode the region [x0,x1) x [y0,y1) of the image scaled by 1/denom
 * (coordinates in the scaled image). Valid until the next call on d.
 * After it (success or failure) the decoder is ready for decoder_open().
 */
int decoder_read(decoder_t *d, int denom, int x0, int y0, int x1, int y1,
		 struct decoded *out);

/* Last error message ("" if none). */
const char *decoder_error(const decoder_t *d);

#endif
