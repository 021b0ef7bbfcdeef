/*
 * imgfmt.h — PNG and WebP bytes to RGB pixels (libspng, libwebp), with the
 * same region interface as the JPEG decoder (decode.h dispatches here by
 * the file's magic bytes, so batch.c does not know the format).
 *
 * An imgfmt_t belongs to one decoder (one worker thread) and keeps its
 * buffers between images. Unlike JPEG there is no region decode: the whole
 * image is decoded once per decoder_read() and the region is a pointer
 * into it.
 *
 * Pixels equal Pillow's Image.open(f).convert('RGB') (the torchvision
 * ImageFolder loader):
 *   - alpha is dropped, not composited (Pillow's RGBA->RGB, LA->RGB and
 *     P->RGB conversions ignore alpha and tRNS);
 *   - palette images are mapped through the palette, gray becomes R=G=B;
 *   - 1/2/4-bit gray is scaled to 0..255 (bit replication);
 *   - 16-bit RGB, RGBA and gray+alpha keep the high byte of each sample;
 *   - 16-bit gray (no alpha) is clipped to 0..255, as Pillow opens it in
 *     mode "I" and its I->RGB conversion clips (so most such images come
 *     out white: a Pillow quirk, kept so that the two loaders agree);
 *   - gamma (gAMA), sBIT and colour profiles are ignored, as Pillow does;
 *   - an animated WebP is refused (-ENOTSUP); Pillow would give frame 1.
 * Scale 1/2, 1/4, 1/8 (dct_scale): there is no DCT to scale in, so the
 * full image is reduced by box averages of denom x denom pixels, rounded
 * to nearest (half up); boxes cut by the right or bottom edge average the
 * pixels they have. The size is ceil(w/denom) x ceil(h/denom), as for JPEG.
 */
#ifndef CUTMIXD_IMGFMT_H
#define CUTMIXD_IMGFMT_H

#include <stddef.h>
#include <stdint.h>

enum imgfmt_kind { IMGFMT_UNKNOWN = 0, IMGFMT_JPEG, IMGFMT_PNG, IMGFMT_WEBP };

typedef struct imgfmt imgfmt_t;

/* By magic bytes: FF D8 FF, \x89PNG\r\n\x1a\n, RIFF....WEBP. */
enum imgfmt_kind imgfmt_detect(const uint8_t *data, size_t len);
const char *imgfmt_name(enum imgfmt_kind f);

imgfmt_t *imgfmt_new(void);
void imgfmt_destroy(imgfmt_t **p);

/*
 * Read the header of a PNG or WebP image (`data` stays valid until the
 * next open). -E2BIG above max_pixels (0: no limit) before any pixel
 * buffer is allocated, -EBADMSG for bytes the library refuses, -ENOTSUP
 * for animation. The message goes to err.
 */
int imgfmt_open(imgfmt_t *p, enum imgfmt_kind f, const uint8_t *data, size_t len,
		uint64_t max_pixels, int *width, int *height,
		char *err, size_t errlen);

/*
 * Decode the open image and return the region [x0,x1) x [y0,y1) of the
 * image scaled by 1/denom (denom in 1, 2, 4, 8; checked by the caller):
 * *rgb points at pixel (x0,y0), rows *stride bytes apart, valid until the
 * next call. The image is closed afterwards either way.
 */
int imgfmt_read(imgfmt_t *p, int denom, int x0, int y0, int x1, int y1,
		const uint8_t **rgb, size_t *stride, char *err, size_t errlen);

/* Box reduction of an RGB image (see above); dst holds
 * ceil(w/denom) * ceil(h/denom) * 3 bytes. Exposed for the tests. */
void imgfmt_reduce(const uint8_t *src, int w, int h, int denom, uint8_t *dst);

#endif
