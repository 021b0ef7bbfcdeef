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

/*
 * Streamed resample: resize_rgb_ex() or resize_rgb_crop() fed with the
 * source rows as they are decoded, so no buffer holds the whole source
 * (decode.h decoder_read_stream). begin takes the arguments of the
 * one-call form less the source pointer, stride and destination, and
 * computes the coefficients; resize_stream_rows() runs the horizontal pass
 * over rows [row0, row0 + nrows) of the source (row 0 = the buffer's first
 * row; rows in order, each once, pixel 0 at rows[0]; rows the vertical
 * pass does not read are skipped) into the resizer's intermediate rows;
 * resize_stream_end() runs the vertical pass into dst. The bytes are those
 * of the one-call form (the horizontal pass is per row).
 * begin returns 0, -EINVAL, -ENOMEM, -ERANGE as the one-call form, or
 * -EAGAIN where the resample is not both passes (a crop, or only one
 * pass reads the source directly): call the one-call form then.
 * resize_stream_rows() cannot fail; rows out of order end the stream and
 * resize_stream_end() then returns -EINVAL, as it does when rows the
 * vertical pass reads never came or no stream was begun.
 */
int resize_stream_begin_ex(resizer_t *r, enum resize_filter f, unsigned flags,
			   int src_w, int src_h, double bx0, double by0, double bx1,
			   double by1, int dst_w, int dst_h);
int resize_stream_begin_crop(resizer_t *r, enum resize_filter f, int buf_x0,
			     int buf_y0, int buf_w, int buf_h, int full_w, int full_h,
			     int out_w, int out_h, int x_off, int y_off, int dst_w,
			     int dst_h);
void resize_stream_rows(resizer_t *r, const uint8_t *rows, size_t stride, int row0,
			int nrows);
int resize_stream_end(resizer_t *r, uint8_t *dst, size_t dst_stride);

#endif
