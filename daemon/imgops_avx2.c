/*
 * imgops_avx2.c — the bilinear affine warp of imgops_geom.c, 8 output
 * pixels at a time with AVX2 + FMA (used when the CPU has both; the
 * scalar path in imgops_geom.c otherwise). Each lane does exactly the
 * float32 operations of the scalar code -- which are torch's AVX2
 * grid_sample kernel's -- so both paths give the same bytes.
 *
 * The source is three float planes (R, G, B; W*H each); corners outside
 * the image read a clamped in-bounds index and are multiplied by a 0/1
 * in-bounds factor, which is exact (0 * v = 0, 1 * v = v).
 */
#include "imgops.h"
#include "imgops_int.h"

#include <math.h>
#include <stdint.h>

#if IMGOP_HAVE_AVX2

#include <immintrin.h>

static int simd_enabled = 1;

void imgop_set_simd(int on)
{
	simd_enabled = on;
}

bool imgop_simd(void)
{
	return simd_enabled && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static inline int clampi(int v, int lo, int hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* One pixel, the scalar twin of the vector loop (row tails). */
__attribute__((target("avx2,fma")))
static void px(const struct imgop_planes *pl, float gx, float gy, float *o)
{
	int W = pl->W, H = pl->H;
	float ix = fmaf(gx + 1.0f, (float)W / 2.0f, -0.5f);
	float iy = fmaf(gy + 1.0f, (float)H / 2.0f, -0.5f);
	float fx, fy, ww, we, wn, ws, nw, ne, sw, se, m[4], mask, inv;
	int x0, y0, xa, xb, ya, yb;

	ix = ix < -2.0f ? -2.0f : ix > (float)W + 1.0f ? (float)W + 1.0f : ix;
	iy = iy < -2.0f ? -2.0f : iy > (float)H + 1.0f ? (float)H + 1.0f : iy;
	fx = floorf(ix);
	fy = floorf(iy);
	x0 = (int)fx;
	y0 = (int)fy;
	ww = ix - fx;
	we = 1.0f - ww;
	wn = iy - fy;
	ws = 1.0f - wn;
	nw = ws * we;
	ne = ws * ww;
	sw = wn * we;
	se = wn * ww;
	m[0] = (x0 > -1 && x0 < W && y0 > -1 && y0 < H) ? 1.0f : 0.0f;
	m[1] = (x0 + 1 > -1 && x0 + 1 < W && y0 > -1 && y0 < H) ? 1.0f : 0.0f;
	m[2] = (x0 > -1 && x0 < W && y0 + 1 > -1 && y0 + 1 < H) ? 1.0f : 0.0f;
	m[3] = (x0 + 1 > -1 && x0 + 1 < W && y0 + 1 > -1 && y0 + 1 < H) ? 1.0f : 0.0f;
	xa = clampi(x0, 0, W - 1);
	xb = clampi(x0 + 1, 0, W - 1);
	ya = clampi(y0, 0, H - 1) * W;
	yb = clampi(y0 + 1, 0, H - 1) * W;
	mask = fmaf(m[3], se, fmaf(m[2], sw, fmaf(m[1], ne, m[0] * nw)));
	inv = 1.0f - mask;
	for (int c = 0; c < 3; c++) {
		const float *P = pl->p[c];
		float v = fmaf(m[3] * P[yb + xb], se, fmaf(m[2] * P[yb + xa], sw,
			  fmaf(m[1] * P[ya + xb], ne, (m[0] * P[ya + xa]) * nw)));

		o[c] = v * mask + inv * pl->fill[c];
	}
}

/* Eight pixels' rounded, clamped channel planes o to interleaved RGB. */
static inline void store8_rgb(uint8_t *out, float o[3][8])
{
	for (int k = 0; k < 8; k++) {
		out[3 * k] = (uint8_t)(int)o[0][k];
		out[3 * k + 1] = (uint8_t)(int)o[1][k];
		out[3 * k + 2] = (uint8_t)(int)o[2][k];
	}
}

/* Pixels [x, W) of the row (fewer than 8), one at a time with px. */
__attribute__((target("avx2,fma")))
static void warp_tail(const struct imgop_planes *pl, uint8_t *out, const float *xg0,
		      const float *xg1, float yx, float yy, float r2, float r5, int x)
{
	for (; x < pl->W; x++) {
		float v[3];

		px(pl, (xg0[x] + yx) + r2, (xg1[x] + yy) + r5, v);
		for (int c = 0; c < 3; c++) {
			float t = nearbyintf(v[c]);

			out[3 * x + c] = t <= 0.0f ? 0 : t >= 255.0f ? 255 : (uint8_t)(int)t;
		}
	}
}

/* 0/1 floats from an all-ones/zero int mask. */
#define ONES(mi) _mm256_and_ps(_mm256_castsi256_ps(mi), one)

__attribute__((target("avx2,fma")))
void imgop_warp_row_bilinear_avx2(const struct imgop_planes *pl, uint8_t *out,
				  const float *xg0, const float *xg1, float yx,
				  float yy, float r2, float r5)
{
	int W = pl->W, H = pl->H, x = 0;
	const __m256 one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(-0.5f);
	const __m256 swv = _mm256_set1_ps((float)W / 2.0f), shv = _mm256_set1_ps((float)H / 2.0f);
	const __m256 lo = _mm256_set1_ps(-2.0f);
	const __m256 hix = _mm256_set1_ps((float)W + 1.0f), hiy = _mm256_set1_ps((float)H + 1.0f);
	const __m256i m1 = _mm256_set1_epi32(-1), iW = _mm256_set1_epi32(W);
	const __m256i iH = _mm256_set1_epi32(H), i1 = _mm256_set1_epi32(1);
	const __m256i zero = _mm256_setzero_si256();
	const __m256i wmax = _mm256_set1_epi32(W - 1), hmax = _mm256_set1_epi32(H - 1);
	const __m256 yxv = _mm256_set1_ps(yx), yyv = _mm256_set1_ps(yy);
	const __m256 r2v = _mm256_set1_ps(r2), r5v = _mm256_set1_ps(r5);
	const __m256 f255 = _mm256_set1_ps(255.0f), fz = _mm256_setzero_ps();
	float o[3][8];

	for (; x + 8 <= W; x += 8) {
		__m256 gx = _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(xg0 + x), yxv), r2v);
		__m256 gy = _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(xg1 + x), yyv), r5v);
		__m256 ix = _mm256_fmadd_ps(_mm256_add_ps(gx, one), swv, half);
		__m256 iy = _mm256_fmadd_ps(_mm256_add_ps(gy, one), shv, half);
		ix = _mm256_min_ps(_mm256_max_ps(ix, lo), hix);
		iy = _mm256_min_ps(_mm256_max_ps(iy, lo), hiy);
		__m256 fx = _mm256_floor_ps(ix), fy = _mm256_floor_ps(iy);
		__m256i x0 = _mm256_cvttps_epi32(fx), y0 = _mm256_cvttps_epi32(fy);
		__m256i x1 = _mm256_add_epi32(x0, i1), y1 = _mm256_add_epi32(y0, i1);
		__m256 ww = _mm256_sub_ps(ix, fx), we = _mm256_sub_ps(one, ww);
		__m256 wn = _mm256_sub_ps(iy, fy), ws = _mm256_sub_ps(one, wn);
		__m256 nw = _mm256_mul_ps(ws, we), ne = _mm256_mul_ps(ws, ww);
		__m256 sw = _mm256_mul_ps(wn, we), se = _mm256_mul_ps(wn, ww);
		__m256i iw = _mm256_and_si256(_mm256_cmpgt_epi32(x0, m1), _mm256_cmpgt_epi32(iW, x0));
		__m256i ie = _mm256_and_si256(_mm256_cmpgt_epi32(x1, m1), _mm256_cmpgt_epi32(iW, x1));
		__m256i in = _mm256_and_si256(_mm256_cmpgt_epi32(y0, m1), _mm256_cmpgt_epi32(iH, y0));
		__m256i is = _mm256_and_si256(_mm256_cmpgt_epi32(y1, m1), _mm256_cmpgt_epi32(iH, y1));
		__m256 mnw = ONES(_mm256_and_si256(iw, in)), mne = ONES(_mm256_and_si256(ie, in));
		__m256 msw = ONES(_mm256_and_si256(iw, is)), mse = ONES(_mm256_and_si256(ie, is));
		__m256i xa = _mm256_min_epi32(_mm256_max_epi32(x0, zero), wmax);
		__m256i xb = _mm256_min_epi32(_mm256_max_epi32(x1, zero), wmax);
		__m256i ya = _mm256_mullo_epi32(_mm256_min_epi32(_mm256_max_epi32(y0, zero), hmax), iW);
		__m256i yb = _mm256_mullo_epi32(_mm256_min_epi32(_mm256_max_epi32(y1, zero), hmax), iW);
		__m256i inw = _mm256_add_epi32(ya, xa), ine = _mm256_add_epi32(ya, xb);
		__m256i isw = _mm256_add_epi32(yb, xa), ise = _mm256_add_epi32(yb, xb);
		__m256 mask = _mm256_fmadd_ps(mse, se, _mm256_fmadd_ps(msw, sw,
			      _mm256_fmadd_ps(mne, ne, _mm256_mul_ps(mnw, nw))));
		__m256 inv = _mm256_sub_ps(one, mask);

		for (int c = 0; c < 3; c++) {
			const float *P = pl->p[c];
			__m256 vnw = _mm256_mul_ps(mnw, _mm256_i32gather_ps(P, inw, 4));
			__m256 vne = _mm256_mul_ps(mne, _mm256_i32gather_ps(P, ine, 4));
			__m256 vsw = _mm256_mul_ps(msw, _mm256_i32gather_ps(P, isw, 4));
			__m256 vse = _mm256_mul_ps(mse, _mm256_i32gather_ps(P, ise, 4));
			__m256 v = _mm256_fmadd_ps(vse, se, _mm256_fmadd_ps(vsw, sw,
				   _mm256_fmadd_ps(vne, ne, _mm256_mul_ps(vnw, nw))));

			v = _mm256_add_ps(_mm256_mul_ps(v, mask),
					  _mm256_mul_ps(inv, _mm256_set1_ps(pl->fill[c])));
			v = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
			v = _mm256_min_ps(_mm256_max_ps(v, fz), f255);
			_mm256_storeu_ps(o[c], v);
		}
		store8_rgb(out + 3 * x, o);
	}
	warp_tail(pl, out, xg0, xg1, yx, yy, r2, r5, x);
}

#else /* !IMGOP_HAVE_AVX2 */

void imgop_set_simd(int on)
{
	(void)on;
}

bool imgop_simd(void)
{
	return false;
}

#endif
