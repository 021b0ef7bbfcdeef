/*
 * imgops_int.h — what imgops.c (dispatch, point ops, colour) and
 * imgops_geom.c (affine warps, Gaussian blur) share. Not a public header.
 */
#ifndef CUTMIXD_IMGOPS_INT_H
#define CUTMIXD_IMGOPS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imgops.h"

/*
 * Hot loops get an AVX2+FMA clone next to the baseline one, chosen at load
 * time (GCC's target_clones, an ifunc). The float arithmetic is the same
 * in both: the file is ISO C (-std=c11, so no FP contraction) and every
 * fused multiply-add is an explicit fmaf(), which the "fma" clone inlines
 * and the baseline calls from libm -- bit-identical either way. Not under
 * the sanitizers: an ifunc resolver runs before their runtime is up (an
 * instrumented resolver crashes the TSan build at load).
 */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__) && \
	!defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__) && \
	!defined(IMGOP_NO_CLONES)
#define IMGOP_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define IMGOP_CLONES
#endif

/* Scratch alignment of every sub-buffer handed out of `scratch`. */
#define IMGOP_ALIGN 64

static inline uint8_t *imgop_align(uint8_t *p)
{
	return (uint8_t *)(((uintptr_t)p + (IMGOP_ALIGN - 1)) & ~(uintptr_t)(IMGOP_ALIGN - 1));
}

/* The affine ops (ShearX/Y, TranslateX/Y, Rotate); arguments already
 * checked. */
int imgop_affine(uint8_t *img, int W, int H, size_t stride,
		 const struct imgop_args *a, uint8_t *scratch);

/* F.gaussian_blur with sigma = a->magnitude (checked > 0). */
int imgop_gaussian_blur(uint8_t *img, int W, int H, size_t stride,
			double sigma, uint8_t *scratch);

/* Kernel size imgop_gaussian_blur uses for sigma on a W x H image. */
int imgop_blur_ksize(double sigma, int W, int H);

/* The AVX2 bilinear warp (imgops_avx2.c): x86-64 with GCC or clang. */
#if defined(__x86_64__) && defined(__GNUC__)
#define IMGOP_HAVE_AVX2 1
#else
#define IMGOP_HAVE_AVX2 0
#endif

/* Whether the AVX2+FMA paths run (the CPU has them and they are not
 * switched off). */
bool imgop_simd(void);

/* Test knob (optool --no-simd): 0 forces the scalar paths. Set it before
 * any thread calls imgop_apply. */
void imgop_set_simd(int on);

/* The source of the vector warp: three float planes. */
struct imgop_planes {
	const float *p[3]; /* W*H each */
	int W, H;
	float fill[3];
};

/* One output row of the bilinear warp into `out` (packed RGB); xg0/xg1
 * the per-column x terms of the grid, yx/yy the row's y terms, r2/r5 the
 * constant terms. Only when imgop_simd(). */
void imgop_warp_row_bilinear_avx2(const struct imgop_planes *pl, uint8_t *out,
				  const float *xg0, const float *xg1, float yx,
				  float yy, float r2, float r5);

#endif
