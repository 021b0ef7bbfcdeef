/*
 * resize_internal.h — what resize.c (coefficients, dispatch, portable
 * loops) and resize_simd.c (the SSE2 and AVX2 passes) share; private to
 * those two files. See resize.c for the design and the exactness argument.
 */
#ifndef CUTMIXD_RESIZE_INTERNAL_H
#define CUTMIXD_RESIZE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__SSE2__)
#define RESIZE_SSE2 1
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#define RESIZE_AVX2 1 /* compiled with a target attribute, used if the CPU has it */
#endif

#define PRECISION_BITS (32 - 8 - 2)

struct resize_kernel;


/* Coefficients of one pass: output pixel i reads source pixels
 * [bounds[2i], bounds[2i] + bounds[2i+1]) with weights kk[i * ksize ...]. */
struct resize_pass {
	int *bounds;
	size_t bounds_cap;
	int32_t *kk;
	size_t kk_cap;
	int ksize;
	/* SSE2 horizontal pass: for each output pixel, for taps 2j and 2j+1,
	 * the low 15 bits of both coefficients as two int16 in one int32,
	 * then the high parts the same way (see resize_horizontal_sse2). */
	int32_t *pairs;
	size_t pairs_cap;
	int npairs;
	/* What the coefficients above were computed for: a resample with the
	 * same key reuses them (val crops of same-sized images, repeated
	 * sizes); the key is everything resize_coeffs reads. */
	bool valid;
	struct resize_key {
		int in, total, off, out, src_off, buf;
		float in0, in1;
		const struct resize_kernel *kern;
		bool flip, pairs;
	} key;
};

static inline uint8_t clip8(int32_t v)
{
	if (v <= 0)
		return 0;
	v >>= PRECISION_BITS;
	return v > 255 ? 255 : (uint8_t)v;
}

#ifdef RESIZE_SSE2
/* Rows [row0, row0 + nrows) of src, resampled horizontally to out_w. */
void resize_horizontal_sse2(const struct resize_pass *p, int in_w,
			    const uint8_t *src, size_t src_stride, int row0,
			    int nrows, uint8_t *dst, size_t dst_stride, int out_w);
/* Source row y of the pass's bounds is at src + (y - yoff) * src_stride. */
void resize_vertical_sse2(const struct resize_pass *p,
			  const uint8_t *src, size_t src_stride, int yoff,
			  uint8_t *dst, size_t dst_stride, int out_w, int out_h);
#endif

#ifdef RESIZE_AVX2
/* As the SSE2 passes; call only where cpu_has_avx2(). */
__attribute__((target("avx2")))
void resize_horizontal_avx2(const struct resize_pass *p, int in_w,
			    const uint8_t *src, size_t src_stride, int row0,
			    int nrows, uint8_t *dst, size_t dst_stride, int out_w);
__attribute__((target("avx2")))
void resize_vertical_avx2(const struct resize_pass *p,
			  const uint8_t *src, size_t src_stride, int yoff,
			  uint8_t *dst, size_t dst_stride, int out_w, int out_h);


/* libgcc's constructor has filled the CPU model before main(). */
static inline bool cpu_has_avx2(void)
{
	return __builtin_cpu_supports("avx2");
}
#endif

#endif
