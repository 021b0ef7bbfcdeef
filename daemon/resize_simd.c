/*
 * resize_simd.c — the SSE2 and AVX2 passes of resize.c, exact (the same
 * integers as the portable loops, hence Pillow's bytes). The AVX2 code is
 * compiled with target attributes and called only where the CPU has AVX2
 * (resize.c dispatches). The coefficient split and why it is exact:
 * resize_vertical_sse2 below and the DESIGN comment of resize.c.
 */
#include "resize_internal.h"

#include <string.h>

#ifdef RESIZE_SSE2
#include <emmintrin.h>
#endif
#ifdef RESIZE_AVX2
#include <immintrin.h>
#endif


#ifdef RESIZE_SSE2
/*
 * Horizontal pass with SSE2, exact (the coefficient split is the one of
 * resize_vertical_sse2 below). Two taps at once: 8 bytes at pixel x are
 * r0 g0 b0 r1 g1 b1 r2 g2; widened to int16 and interleaved with themselves
 * shifted by one pixel they become r0 r1 g0 g1 b0 b1 . ., so one pmaddwd
 * gives r0*k0 + r1*k1, g.., b.. in lanes 0..2. The 8-byte load must stay
 * inside the row: pairs too close to the right edge, and an odd last tap,
 * are done in scalar code.
 */
void resize_horizontal_sse2(const struct resize_pass *p, int in_w,
				   const uint8_t *src, size_t src_stride, int row0,
				   int nrows, uint8_t *dst, size_t dst_stride, int out_w)
{
	const __m128i zero = _mm_setzero_si128();
	const int32_t half = 1 << (PRECISION_BITS - 1);
	const int ksize = p->ksize, npairs = p->npairs;

	for (int y = 0; y < nrows; y++) {
		const uint8_t *in = src + (size_t)(row0 + y) * src_stride;
		uint8_t *out = dst + (size_t)y * dst_stride;

		for (int xx = 0; xx < out_w; xx++) {
			const int32_t *k = p->kk + (size_t)xx * (size_t)ksize;
			const int32_t *kp = p->pairs + (size_t)xx * (size_t)npairs * 2;
			const int xmin = p->bounds[xx * 2], n = p->bounds[xx * 2 + 1];
			const uint8_t *s = in + (size_t)xmin * 3;
			/* The pair at tap x loads pixels xmin+x .. xmin+x+2 (8 of
			 * their 9 bytes): only while that stays inside the row. */
			const int lim = in_w - 2 - xmin;
			__m128i lo = zero, hi = zero, sum;
			int32_t ss0, ss1, ss2;
			int x = 0;

			for (; x + 1 < n && x < lim; x += 2) {
				const __m128i v =
					_mm_loadl_epi64((const __m128i *)(const void *)(s + x * 3));
				const __m128i a = _mm_unpacklo_epi8(v, zero);
				const __m128i ab = _mm_unpacklo_epi16(a, _mm_srli_si128(a, 6));

				/* pair x/2 sits at kp[x], kp[x + 1] */
				lo = _mm_add_epi32(lo, _mm_madd_epi16(ab, _mm_set1_epi32(kp[x])));
				hi = _mm_add_epi32(hi, _mm_madd_epi16(ab, _mm_set1_epi32(kp[x + 1])));
			}
			sum = _mm_add_epi32(_mm_slli_epi32(hi, 15), lo);
			ss0 = _mm_cvtsi128_si32(sum) + half;
			ss1 = _mm_cvtsi128_si32(_mm_srli_si128(sum, 4)) + half;
			ss2 = _mm_cvtsi128_si32(_mm_srli_si128(sum, 8)) + half;
			for (; x < n; x++) {
				ss0 += s[x * 3 + 0] * k[x];
				ss1 += s[x * 3 + 1] * k[x];
				ss2 += s[x * 3 + 2] * k[x];
			}
			out[xx * 3 + 0] = clip8(ss0);
			out[xx * 3 + 1] = clip8(ss1);
			out[xx * 3 + 2] = clip8(ss2);
		}
	}
}
#endif



#ifdef RESIZE_AVX2
/* Three bytes of a uint32 (little endian) to dst; four when `room`, which
 * is one plain store (the fourth byte is rewritten by the next pixel). */
static inline void store_rgb(uint8_t *dst, uint32_t v, bool room)
{
	if (room)
		memcpy(dst, &v, 4);
	else
		memcpy(dst, &v, 3);
}

/*
 * Horizontal pass with AVX2: two rows at once, row y in the low 128-bit
 * lane and row y+1 in the high one, the same exact coefficient split as
 * the SSE2 pass. Per pair of taps: one 8-byte load per row
 * (r0 g0 b0 r1 g1 b1 r2 g2), one pshufb to the int16 lanes
 * r0 r1 g0 g1 b0 b1 0 0, two pmaddwd with the (lo, hi) coefficient pairs.
 * An odd tap count runs its last pair with the zero coefficient the
 * padding holds (pixel values times 0 add nothing), so no scalar tail is
 * needed unless the load would leave the row. The sums start at the
 * rounding half and are joined, shifted, clamped (packs/packus clamp as
 * clip8) and stored in vector registers.
 */
/* Load the 8 bytes at a (low lane) and b (high lane). */
__attribute__((target("avx2")))
static inline __m256i load2x8(const uint8_t *a, const uint8_t *b)
{
	return _mm256_inserti128_si256(
		_mm256_castsi128_si256(_mm_loadl_epi64((const __m128i *)(const void *)a)),
		_mm_loadl_epi64((const __m128i *)(const void *)b), 1);
}

/* Finish a sum of two rows (low lane: row a, high lane: row b): the taps
 * at x..n-1 one by one (right edge), then clip8 and store. */
__attribute__((target("avx2")))
static void horiz_edge(__m256i sum, const int32_t *k, int x, int n, const uint8_t *sa,
		       const uint8_t *sb, uint8_t *oa, uint8_t *ob)
{
	int32_t acc[8];

	_mm256_storeu_si256((__m256i *)(void *)acc, sum);
	for (; x < n; x++) {
		for (int c = 0; c < 3; c++) {
			acc[c] += sa[x * 3 + c] * k[x];
			acc[4 + c] += sb[x * 3 + c] * k[x];
		}
	}
	for (int c = 0; c < 3; c++) {
		oa[c] = clip8(acc[c]);
		if (ob)
			ob[c] = clip8(acc[4 + c]);
	}
}

/* Shift, clamp (packs/packus clamp as clip8) and store two rows' pixel. */
__attribute__((target("avx2")))
static inline void horiz_store(__m256i sum, uint8_t *oa, uint8_t *ob, bool room)
{
	sum = _mm256_srai_epi32(sum, PRECISION_BITS);
	sum = _mm256_packs_epi32(sum, sum);
	sum = _mm256_packus_epi16(sum, sum);
	store_rgb(oa, (uint32_t)_mm256_cvtsi256_si32(sum), room);
	if (ob)
		store_rgb(ob, (uint32_t)_mm256_extract_epi32(sum, 4), room);
}

/*
 * Horizontal pass with AVX2: four rows at once, rows y and y+1 in the two
 * 128-bit lanes of one register, y+2 and y+3 in another, the same exact
 * coefficient split as the SSE2 pass; the coefficient broadcasts, bounds
 * and loop control are shared by the four rows. Per pair of taps and row:
 * one 8-byte load (r0 g0 b0 r1 g1 b1 r2 g2), one pshufb to the int16 lanes
 * r0 r1 g0 g1 b0 b1 0 0, two pmaddwd with the (lo, hi) coefficient pairs.
 * An odd tap count runs its last pair with the zero coefficient the
 * padding holds (pixel values times 0 add nothing), so no scalar tail is
 * needed unless the load would leave the row. The sums start at the
 * rounding half and are joined, shifted, clamped and stored in vector
 * registers. Missing rows (nrows % 4) read row y and are not stored.
 */
__attribute__((target("avx2")))
void resize_horizontal_avx2(const struct resize_pass *p, int in_w,
				   const uint8_t *src, size_t src_stride, int row0,
				   int nrows, uint8_t *dst, size_t dst_stride, int out_w)
{
	const __m256i shuf = _mm256_setr_epi8(0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1,
					      -1, -1, -1, -1, 0, -1, 3, -1, 1, -1, 4, -1,
					      2, -1, 5, -1, -1, -1, -1, -1);
	const int32_t h = 1 << (PRECISION_BITS - 1);
	const __m256i init = _mm256_setr_epi32(h, h, h, 0, h, h, h, 0);
	const int ksize = p->ksize, npairs = p->npairs;

	for (int y = 0; y < nrows; y += 4) {
		const uint8_t *in[4];
		uint8_t *out[4];

		for (int j = 0; j < 4; j++) {
			const bool ok = y + j < nrows;

			in[j] = src + (size_t)(row0 + (ok ? y + j : y)) * src_stride;
			out[j] = ok ? dst + (size_t)(y + j) * dst_stride : NULL;
		}
		for (int xx = 0; xx < out_w; xx++) {
			const int32_t *kp = p->pairs + (size_t)xx * (size_t)npairs * 2;
			const int xmin = p->bounds[xx * 2], n = p->bounds[xx * 2 + 1];
			const size_t off = (size_t)xmin * 3;
			const uint8_t *s0 = in[0] + off, *s1 = in[1] + off;
			const uint8_t *s2 = in[2] + off, *s3 = in[3] + off;
			/* The pair at tap x loads 8 bytes from pixel xmin+x:
			 * only while that stays inside the row. */
			const int lim = in_w - 2 - xmin;
			__m256i lo01 = init, hi01 = _mm256_setzero_si256();
			__m256i lo23 = init, hi23 = _mm256_setzero_si256();
			int x = 0;

			for (; x < n && x < lim; x += 2) {
				/* pair x/2 sits at kp[x], kp[x + 1] */
				const __m256i kl = _mm256_set1_epi32(kp[x]);
				const __m256i kh = _mm256_set1_epi32(kp[x + 1]);
				const __m256i v01 = _mm256_shuffle_epi8(
					load2x8(s0 + x * 3, s1 + x * 3), shuf);
				const __m256i v23 = _mm256_shuffle_epi8(
					load2x8(s2 + x * 3, s3 + x * 3), shuf);

				lo01 = _mm256_add_epi32(lo01, _mm256_madd_epi16(v01, kl));
				hi01 = _mm256_add_epi32(hi01, _mm256_madd_epi16(v01, kh));
				lo23 = _mm256_add_epi32(lo23, _mm256_madd_epi16(v23, kl));
				hi23 = _mm256_add_epi32(hi23, _mm256_madd_epi16(v23, kh));
			}
			const __m256i sum01 = _mm256_add_epi32(_mm256_slli_epi32(hi01, 15), lo01);
			const __m256i sum23 = _mm256_add_epi32(_mm256_slli_epi32(hi23, 15), lo23);
			const size_t o = (size_t)xx * 3;

			if (x < n) {
				const int32_t *k = p->kk + (size_t)xx * (size_t)ksize;

				horiz_edge(sum01, k, x, n, s0, s1, out[0] + o, out[1] ? out[1] + o : NULL);
				if (out[2])
					horiz_edge(sum23, k, x, n, s2, s3, out[2] + o,
						   out[3] ? out[3] + o : NULL);
				continue;
			}
			horiz_store(sum01, out[0] + o, out[1] ? out[1] + o : NULL, xx + 1 < out_w);
			if (out[2])
				horiz_store(sum23, out[2] + o, out[3] ? out[3] + o : NULL,
					    xx + 1 < out_w);
		}
	}
}

#endif

#ifdef RESIZE_SSE2
/* The last n % 16 (SSE2) or n % 32 (AVX2) bytes of a vertical row. */
static void vertical_tail(const int32_t *k, int ny, const uint8_t *base, size_t src_stride,
			  uint8_t *out, size_t x, size_t n)
{
	for (; x < n; x++) {
		int64_t acc = 1 << (PRECISION_BITS - 1);

		for (int y = 0; y < ny; y++)
			acc += base[(size_t)y * src_stride + x] * k[y];
		out[x] = clip8((int32_t)acc);
	}
}

/*
 * Vertical pass with SSE2, exact: a 22-bit coefficient k is split into
 * k = kh * 2^15 + kl (kl in 0..32767, kh = k >> 15 small and signed), so
 * each half fits pmaddwd's signed 16-bit operands; pmaddwd multiplies the
 * pixels of two rows by their two coefficients and adds the pairs. The
 * int32 lanes wrap, but (hi << 15) + lo is then the exact sum modulo 2^32,
 * and the exact sum fits in an int32 (Pillow's PRECISION_BITS guarantee),
 * so the result is the same integer as the scalar sum. Sixteen output
 * bytes stay in registers over all taps; the last n % 16 bytes are scalar.
 * The (lo, hi) coefficient pairs come precomputed from resize_coeffs.
 */

/*
 * One register's width of output bytes at out (16 with V = _mm, B = 128;
 * 32 with V = _mm256, B = 256), source rows from s, ny taps, pairs kp,
 * JOIN the width's (hi << 15) + lo >> 22. A macro so that one body serves
 * SSE2 and AVX2 (intrinsic names differ by prefix and width only); it
 * expands in vertical16_sse2 and vertical32_avx2 alone. The unpacks and
 * packs work within each 128-bit lane, so the bytes leave in the order
 * they came; the saturating packs clamp to 0..255 exactly as clip8.
 */
#define VERTICAL_TAPS(V, B, JOIN, kp, ny, s, src_stride, out)                                   \
	do {                                                                                    \
		const __m##B##i zero = V##_setzero_si##B();                                     \
		const __m##B##i init = V##_set1_epi32(1 << (PRECISION_BITS - 1));              \
		__m##B##i lo0 = init, lo1 = init, lo2 = init, lo3 = init;                       \
		__m##B##i hi0 = zero, hi1 = zero, hi2 = zero, hi3 = zero;                       \
                                                                                                \
		for (int y = 0; y < (ny); y += 2) {                                             \
			const __m##B##i kl = V##_set1_epi32((kp)[y]);                            \
			const __m##B##i kh = V##_set1_epi32((kp)[y + 1]);                        \
			const __m##B##i a = V##_loadu_si##B(                                    \
				(const __m##B##i *)(const void *)((s) + (size_t)y * (src_stride))); \
			/* an odd last tap pairs with a zero row (its coefficient is 0 too) */  \
			const __m##B##i b = y + 1 < (ny) ? V##_loadu_si##B(                     \
				(const __m##B##i *)(const void *)((s) + (size_t)(y + 1) *        \
								  (src_stride)))         \
							  : zero;                                \
			const __m##B##i al = V##_unpacklo_epi8(a, zero);                         \
			const __m##B##i ah = V##_unpackhi_epi8(a, zero);                         \
			const __m##B##i bl = V##_unpacklo_epi8(b, zero);                         \
			const __m##B##i bh = V##_unpackhi_epi8(b, zero);                         \
			const __m##B##i p0 = V##_unpacklo_epi16(al, bl);                         \
			const __m##B##i p1 = V##_unpackhi_epi16(al, bl);                         \
			const __m##B##i p2 = V##_unpacklo_epi16(ah, bh);                         \
			const __m##B##i p3 = V##_unpackhi_epi16(ah, bh);                         \
                                                                                                \
			lo0 = V##_add_epi32(lo0, V##_madd_epi16(p0, kl));                        \
			lo1 = V##_add_epi32(lo1, V##_madd_epi16(p1, kl));                        \
			lo2 = V##_add_epi32(lo2, V##_madd_epi16(p2, kl));                        \
			lo3 = V##_add_epi32(lo3, V##_madd_epi16(p3, kl));                        \
			hi0 = V##_add_epi32(hi0, V##_madd_epi16(p0, kh));                        \
			hi1 = V##_add_epi32(hi1, V##_madd_epi16(p1, kh));                        \
			hi2 = V##_add_epi32(hi2, V##_madd_epi16(p2, kh));                        \
			hi3 = V##_add_epi32(hi3, V##_madd_epi16(p3, kh));                        \
		}                                                                               \
		V##_storeu_si##B((__m##B##i *)(void *)(out),                                    \
				 V##_packus_epi16(V##_packs_epi32(JOIN(hi0, lo0), JOIN(hi1, lo1)),  \
						  V##_packs_epi32(JOIN(hi2, lo2), JOIN(hi3, lo3)))); \
	} while (0)

/* Output row yy of a vertical pass: its coefficients, pairs, tap count
 * and first source row. */
struct vertical_row {
	const int32_t *k, *kp;
	int ny;
	const uint8_t *base;
};

static inline struct vertical_row vertical_row(const struct resize_pass *p, int yy,
					       const uint8_t *src, size_t src_stride, int yoff)
{
	struct vertical_row v;

	v.k = p->kk + (size_t)yy * (size_t)p->ksize;
	v.kp = p->pairs + (size_t)yy * (size_t)p->npairs * 2;
	v.ny = p->bounds[yy * 2 + 1];
	v.base = src + (size_t)(p->bounds[yy * 2] - yoff) * src_stride;
	return v;
}

/* (hi << 15) + lo, >> 22: the exact sum of the split products, shifted. */
static inline __m128i sse2_join(__m128i hi, __m128i lo)
{
	return _mm_srai_epi32(_mm_add_epi32(_mm_slli_epi32(hi, 15), lo), PRECISION_BITS);
}

/* Sixteen output bytes at s (first source row), ny taps, pairs kp. */
static inline void vertical16_sse2(const int32_t *kp, int ny, const uint8_t *s,
				   size_t src_stride, uint8_t *out)
{
	VERTICAL_TAPS(_mm, 128, sse2_join, kp, ny, s, src_stride, out);
}

/* Bytes [x, n) of an output row: sixteen at a time, then the scalar tail. */
static inline void vertical_rest_sse2(struct vertical_row v, size_t src_stride, uint8_t *out,
				      size_t x, size_t n)
{
	for (; x + 16 <= n; x += 16)
		vertical16_sse2(v.kp, v.ny, v.base + x, src_stride, out + x);
	vertical_tail(v.k, v.ny, v.base, src_stride, out, x, n);
}

void resize_vertical_sse2(const struct resize_pass *p,
				 const uint8_t *src, size_t src_stride, int yoff,
				 uint8_t *dst, size_t dst_stride, int out_w, int out_h)
{
	for (int yy = 0; yy < out_h; yy++)
		vertical_rest_sse2(vertical_row(p, yy, src, src_stride, yoff), src_stride,
				   dst + (size_t)yy * dst_stride, 0, (size_t)out_w * 3);
}
#endif

#ifdef RESIZE_AVX2
/* (hi << 15) + lo, >> 22, as sse2_join. */
__attribute__((target("avx2")))
static inline __m256i avx2_join(__m256i hi, __m256i lo)
{
	return _mm256_srai_epi32(_mm256_add_epi32(_mm256_slli_epi32(hi, 15), lo), PRECISION_BITS);
}

/* vertical16_sse2 on 32 output bytes (lane 0: bytes 0-15, lane 1: 16-31). */
__attribute__((target("avx2")))
static inline void vertical32_avx2(const int32_t *kp, int ny, const uint8_t *s,
				   size_t src_stride, uint8_t *out)
{
	VERTICAL_TAPS(_mm256, 256, avx2_join, kp, ny, s, src_stride, out);
}

/* Vertical pass with AVX2: resize_vertical_sse2 on 32 output bytes per
 * iteration, then 16, then the scalar tail. */
__attribute__((target("avx2")))
void resize_vertical_avx2(const struct resize_pass *p,
				 const uint8_t *src, size_t src_stride, int yoff,
				 uint8_t *dst, size_t dst_stride, int out_w, int out_h)
{
	const size_t n = (size_t)out_w * 3;

	for (int yy = 0; yy < out_h; yy++) {
		const struct vertical_row v = vertical_row(p, yy, src, src_stride, yoff);
		uint8_t *out = dst + (size_t)yy * dst_stride;
		size_t x = 0;

		for (; x + 32 <= n; x += 32)
			vertical32_avx2(v.kp, v.ny, v.base + x, src_stride, out + x);
		vertical_rest_sse2(v, src_stride, out, x, n);
	}
}
#endif
