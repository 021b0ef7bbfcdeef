/*
 * resize.h — antialiased separable resampling of RGB images, fixed point.
 *
 * The arithmetic is Pillow's (ImagingResample: the same filter windows,
 * double coefficients rounded to 22-bit fixed point, horizontal pass into
 * a uint8 row buffer, then vertical pass), so for the same source box the
 * output is byte-identical to PIL's Image.resize(size, filter, box=...).
 * torchvision's Resize/RandomResizedCrop on PIL images therefore give the
 * same pixels as cutmixd for the same crop.
 */
#ifndef CUTMIXD_RESIZE_H
#define CUTMIXD_RESIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum resize_filter { RESIZE_BILINEAR = 0, RESIZE_BICUBIC = 1 };

typedef struct resizer resizer_t; /* per-thread coefficient/row scratch */

resizer_t *resizer_new(void);
void resizer_destroy(resizer_t **r);

/*
 * Use the SIMD (SSE2) loops where this build has them (the default) or the
 * portable ones; both give the same bytes. Returns whether SIMD is now on.
 * For tests and benchmarks.
 */
bool resizer_set_simd(resizer_t *r, bool on);

/*
 * Resample the box [bx0,bx1) x [by0,by1) (floats, source pixel units,
 * 0 <= bx0 < bx1 <= src_w, same for y) of an RGB source into dst_w x dst_h.
 * Filter taps are clamped to the source extent [0,src_w) x [0,src_h), as
 * Pillow does. When the box is the whole source and the sizes are equal
 * the pixels are copied unchanged. Returns 0 or -ENOMEM / -EINVAL.
 */
int resize_rgb(resizer_t *r, enum resize_filter f,
	       const uint8_t *src, int src_w, int src_h, size_t src_stride,
	       double bx0, double by0, double bx1, double by1,
	       uint8_t *dst, int dst_w, int dst_h, size_t dst_stride);

/*
 * Pillow's im.resize((out_w, out_h)).crop((x_off, y_off, x_off + dst_w,
 * y_off + dst_h)) of an image of full_w x full_h, byte for byte: the
 * coefficients are those of the whole resize (so torchvision's Resize +
 * CenterCrop on PIL images is matched exactly), only the window's outputs
 * are computed, and src need hold only the image's pixels [buf_x0, buf_x0 +
 * buf_w) x [buf_y0, buf_y0 + buf_h) (a decoded region) as long as every
 * tap of the window falls inside them (-ERANGE if not). 0 or -errno.
 */
int resize_rgb_crop(resizer_t *r, enum resize_filter f, const uint8_t *src,
		    int buf_x0, int buf_y0, int buf_w, int buf_h, size_t src_stride,
		    int full_w, int full_h, int out_w, int out_h, int x_off, int y_off,
		    uint8_t *dst, int dst_w, int dst_h, size_t dst_stride);

/* resize_rgb_ex flags. RESIZE_FLIP: the result mirrored left-right
 * (torchvision's RandomResizedCrop followed by hflip), folded into the
 * horizontal pass (its coefficients in reverse order): the same bytes as
 * resize_rgb then a mirror, without a second pass over the output. */
#define RESIZE_FLIP 1u

/* resize_rgb with flags (RESIZE_FLIP or 0); -EINVAL for unknown flags. */
int resize_rgb_ex(resizer_t *r, enum resize_filter f, unsigned flags,
		  const uint8_t *src, int src_w, int src_h, size_t src_stride,
		  double bx0, double by0, double bx1, double by1,
		  uint8_t *dst, int dst_w, int dst_h, size_t dst_stride);

#endif
