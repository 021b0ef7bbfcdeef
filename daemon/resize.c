/*
 * resize.c — Pillow 9.4's ImagingResample for RGB, bit for bit.
 *
 * DESIGN
 * A resizer_t belongs to one worker thread (no locks). It keeps, growing
 * only: the fixed-point coefficients and tap bounds of both passes (plus
 * their packed (lo, hi) int16 pairs for the SIMD passes), a double scratch
 * row for one output pixel's weights, the uint8 buffer between the passes
 * and an int32 accumulator row for the portable vertical pass. After
 * warm-up resize_rgb() allocates nothing. Each pass remembers the key its
 * coefficients were computed for (sizes, box, window, filter, flip) and
 * reuses them for an equal request (repeated sizes, val crops of equal
 * images). RESIZE_FLIP stores the horizontal coefficients in reverse
 * output order: the pass writes the mirrored row at no extra cost.
 *
 * What has to match Pillow exactly (libImaging/Resample.c, _imaging.c):
 *   - the box arrives as float32 (Python floats parsed with "(ffff)"), and
 *     in1 - in0 is a float subtraction before the division by out_size;
 *   - per output pixel: center = in0 + (xx + 0.5) * scale, taps
 *     [(int)(center - support + 0.5), (int)(center + support + 0.5)) clamped
 *     to the source, weights filter((x + xmin - center + 0.5) / filterscale)
 *     divided by their sum, then rounded half away from zero to 22 bits;
 *   - sums start at 1 << 21 and are clipped to 0..255 after >> 22;
 *   - the horizontal pass runs first, over the source rows the vertical
 *     pass will read, into a uint8 image; then the vertical pass;
 *   - need_horizontal/need_vertical as Pillow decides them, and _resize's
 *     short cut: an integer box of exactly the output size is a crop.
 * Integer sums are exact, so the order of the additions is free: the
 * portable vertical pass accumulates a whole row one tap at a time, and the
 * SIMD passes add pairs of taps with pmaddwd on the exact 15-bit split of
 * the 22-bit coefficients: SSE2 (x86-64 baseline) and, dispatched on the
 * CPU, AVX2 (horizontal: four rows per pair of registers; vertical: 32
 * output bytes per iteration); all give Pillow's bytes (tests compare
 * them). Plain 16-bit coefficients (Pillow-SIMD's) would be faster but not
 * exact, so they are not used.
 *
 * Speed (docs/PERFORMANCE.md "Resize and page faults"): train crops of the
 * ImageNet sample, 224x224 bilinear, 2.39 M instructions per image with
 * AVX2 (6.11 M before the 4-row/AVX2-vertical work), about 0.1 ms.
 */
#include "resize.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "scratch.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#define RESIZE_SSE2 1
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define RESIZE_AVX2 1 /* compiled with a target attribute, used if the CPU has it */
#endif

#define PRECISION_BITS (32 - 8 - 2)
#define RESIZE_MAX_DIM (1 << 24)

struct resize_kernel {
	double (*filter)(double x);
	double support;
};

static double bilinear_filter(double x)
{
	if (x < 0.0)
		x = -x;
	if (x < 1.0)
		return 1.0 - x;
	return 0.0;
}

static double bicubic_filter(double x)
{
	/* Keys' cubic convolution with a = -0.5, in Pillow's operation order. */
	const double a = -0.5;

	if (x < 0.0)
		x = -x;
	if (x < 1.0)
		return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
	if (x < 2.0)
		return (((x - 5) * x + 8) * x - 4) * a;
	return 0.0;
}

static const struct resize_kernel resize_kernels[] = {
	[RESIZE_BILINEAR] = { bilinear_filter, 1.0 },
	[RESIZE_BICUBIC] = { bicubic_filter, 2.0 },
};

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
	bool valid, key_pairs, key_flip;
	int key_in, key_total, key_off, key_out, key_src_off, key_buf;
	float key_in0, key_in1;
	const struct resize_kernel *key_kern;
};

struct resizer {
	struct resize_pass horiz, vert;
	double *pre;       /* one output pixel's double weights */
	size_t pre_cap;
	uint8_t *tmp;      /* horizontal pass output */
	size_t tmp_cap;
	int32_t *acc;      /* scalar vertical pass accumulators, one row */
	size_t acc_cap;
	bool simd;         /* use the SSE2 paths where built */
};

resizer_t *resizer_new(void)
{
	resizer_t *r = calloc(1, sizeof(*r));

	if (r)
		resizer_set_simd(r, true);
	return r;
}

bool resizer_set_simd(resizer_t *r, bool on)
{
#ifdef RESIZE_SSE2
	r->simd = on;
	return on;
#else
	(void)on;
	r->simd = false;
	return false;
#endif
}

void resizer_destroy(resizer_t **rp)
{
	resizer_t *r;

	if (!rp || !*rp)
		return;
	r = *rp;
	free(r->horiz.bounds);
	free(r->horiz.kk);
	free(r->horiz.pairs);
	free(r->vert.bounds);
	free(r->vert.kk);
	free(r->vert.pairs);
	free(r->pre);
	free(r->tmp);
	free(r->acc);
	free(r);
	*rp = NULL;
}

/* Two int16 halves in one int32: a in the low, b in the high half. */
static inline int32_t pack16(int32_t a, int32_t b)
{
	return (int32_t)(((uint32_t)a & 0xFFFF) | ((uint32_t)b << 16));
}

/*
 * Pillow's precompute_coeffs + normalize_coeffs_8bpc for outputs
 * [out_off, out_off + out_size) of a resize of [in0, in1) of an extent of
 * in_size pixels to out_total pixels; with `pairs`, also the packed form
 * the SSE2 horizontal pass reads. Tap bounds are made relative to a buffer
 * that holds pixels [src_off, src_off + buf_size) of the extent, and must
 * lie inside it (-ERANGE if not). With out_off = src_off = 0, out_total =
 * out_size and buf_size = in_size this is exactly Pillow's loop.
 */
static int resize_coeffs(resizer_t *r, struct resize_pass *p, int in_size,
			 float in0, float in1, int out_total, int out_off,
			 int out_size, int src_off, int buf_size,
			 const struct resize_kernel *kern, bool pairs, bool flip)
{
	double support, scale, filterscale, center, ww, ss;
	int xx, x, ksize, xmin, xmax, rc;

	if (p->valid && p->key_in == in_size && p->key_total == out_total &&
	    p->key_off == out_off && p->key_out == out_size && p->key_src_off == src_off &&
	    p->key_buf == buf_size && p->key_in0 == in0 && p->key_in1 == in1 &&
	    p->key_kern == kern && p->key_flip == flip && (p->key_pairs || !pairs))
		return 0;
	p->valid = false;

	filterscale = scale = (double)(in1 - in0) / out_total;
	if (filterscale < 1.0)
		filterscale = 1.0;
	support = kern->support * filterscale;
	/* support <= 2 * in_size <= 2^25: no overflow below. */
	ksize = (int)ceil(support) * 2 + 1;

	rc = scratch_grow((void **)&p->bounds, &p->bounds_cap, (size_t)out_size * 2 * sizeof(int));
	if (rc == 0)
		rc = scratch_grow((void **)&p->kk, &p->kk_cap,
			  (size_t)out_size * (size_t)ksize * sizeof(int32_t));
	if (rc == 0)
		rc = scratch_grow((void **)&r->pre, &r->pre_cap, (size_t)ksize * sizeof(double));
	p->ksize = ksize;
	p->npairs = (ksize + 1) / 2;
	if (rc == 0 && pairs)
		rc = scratch_grow((void **)&p->pairs, &p->pairs_cap,
			  (size_t)out_size * (size_t)p->npairs * 2 * sizeof(int32_t));
	if (rc < 0)
		return rc;

	ss = 1.0 / filterscale;
	for (xx = 0; xx < out_size; xx++) {
		double *k = r->pre;
		const int slot = flip ? out_size - 1 - xx : xx;
		int32_t *kk = p->kk + (size_t)slot * (size_t)ksize;

		center = in0 + (xx + out_off + 0.5) * scale;
		ww = 0.0;
		xmin = (int)(center - support + 0.5);
		if (xmin < 0)
			xmin = 0;
		xmax = (int)(center + support + 0.5);
		if (xmax > in_size)
			xmax = in_size;
		xmax -= xmin;
		if (xmax > ksize)
			xmax = ksize; /* cannot happen; keeps the loops bounded */
		if (xmax < 0)
			xmax = 0;
		for (x = 0; x < xmax; x++) {
			double w = kern->filter((x + xmin - center + 0.5) * ss);

			k[x] = w;
			ww += w;
		}
		for (x = 0; x < xmax; x++)
			if (ww != 0.0)
				k[x] /= ww;
		for (; x < ksize; x++)
			k[x] = 0;
		for (x = 0; x < ksize; x++)
			kk[x] = k[x] < 0 ? (int32_t)(-0.5 + k[x] * (1 << PRECISION_BITS))
					 : (int32_t)(0.5 + k[x] * (1 << PRECISION_BITS));
		if (xmin - src_off < 0 || xmin - src_off + xmax > buf_size)
			return -ERANGE; /* the caller's window lacks taps */
		p->bounds[slot * 2 + 0] = xmin - src_off;
		p->bounds[slot * 2 + 1] = xmax;
		if (pairs) {
			int32_t *kp = p->pairs + (size_t)slot * (size_t)p->npairs * 2;

			for (x = 0; x < p->npairs; x++) {
				int32_t ka = kk[2 * x];
				int32_t kb = 2 * x + 1 < ksize ? kk[2 * x + 1] : 0;

				kp[2 * x] = pack16(ka & 0x7FFF, kb & 0x7FFF);
				kp[2 * x + 1] = pack16(ka >> 15, kb >> 15);
			}
		}
	}
	p->valid = true;
	p->key_in = in_size;
	p->key_total = out_total;
	p->key_off = out_off;
	p->key_out = out_size;
	p->key_src_off = src_off;
	p->key_buf = buf_size;
	p->key_in0 = in0;
	p->key_in1 = in1;
	p->key_kern = kern;
	p->key_flip = flip;
	p->key_pairs = pairs;
	return 0;
}

static inline uint8_t clip8(int32_t v)
{
	if (v <= 0)
		return 0;
	v >>= PRECISION_BITS;
	return v > 255 ? 255 : (uint8_t)v;
}

/* Rows [row0, row0 + nrows) of src, resampled horizontally to out_w. */
static void resize_horizontal_scalar(const struct resize_pass *p,
				     const uint8_t *src, size_t src_stride, int row0,
				     int nrows, uint8_t *dst, size_t dst_stride, int out_w)
{
	const int ksize = p->ksize;

	for (int y = 0; y < nrows; y++) {
		const uint8_t *in = src + (size_t)(row0 + y) * src_stride;
		uint8_t *out = dst + (size_t)y * dst_stride;

		for (int xx = 0; xx < out_w; xx++) {
			const int32_t *k = p->kk + (size_t)xx * (size_t)ksize;
			const uint8_t *s = in + (size_t)p->bounds[xx * 2] * 3;
			const int n = p->bounds[xx * 2 + 1];
			int32_t ss0 = 1 << (PRECISION_BITS - 1);
			int32_t ss1 = ss0, ss2 = ss0;

			for (int x = 0; x < n; x++, s += 3) {
				ss0 += s[0] * k[x];
				ss1 += s[1] * k[x];
				ss2 += s[2] * k[x];
			}
			out[xx * 3 + 0] = clip8(ss0);
			out[xx * 3 + 1] = clip8(ss1);
			out[xx * 3 + 2] = clip8(ss2);
		}
	}
}

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
static void resize_horizontal_sse2(const struct resize_pass *p, int in_w,
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
static void resize_horizontal_avx2(const struct resize_pass *p, int in_w,
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

/* libgcc's constructor has filled the CPU model before main(). */
static bool cpu_has_avx2(void)
{
	return __builtin_cpu_supports("avx2");
}
#endif

static void resize_horizontal(const resizer_t *r, const struct resize_pass *p, int in_w,
			      const uint8_t *src, size_t src_stride, int row0,
			      int nrows, uint8_t *dst, size_t dst_stride, int out_w)
{
#ifdef RESIZE_AVX2
	if (r->simd && cpu_has_avx2()) {
		resize_horizontal_avx2(p, in_w, src, src_stride, row0, nrows, dst,
				       dst_stride, out_w);
		return;
	}
#endif
#ifdef RESIZE_SSE2
	if (r->simd) {
		resize_horizontal_sse2(p, in_w, src, src_stride, row0, nrows, dst,
				       dst_stride, out_w);
		return;
	}
#else
	(void)in_w;
#endif
	resize_horizontal_scalar(p, src, src_stride, row0, nrows, dst, dst_stride, out_w);
}

/* Vertical pass, portable: one tap at a time over a whole row. Source row
 * y of the pass's bounds is at src + (y - yoff) * src_stride. */
static void resize_vertical_tap(int32_t *restrict acc, const uint8_t *restrict row,
				int32_t k, size_t n)
{
	for (size_t i = 0; i < n; i++)
		acc[i] += row[i] * k;
}

static void resize_vertical_scalar(const struct resize_pass *p, int32_t *acc,
				   const uint8_t *src, size_t src_stride, int yoff,
				   uint8_t *dst, size_t dst_stride, int out_w, int out_h)
{
	const size_t n = (size_t)out_w * 3;
	const int ksize = p->ksize;

	for (int yy = 0; yy < out_h; yy++) {
		const int32_t *k = p->kk + (size_t)yy * (size_t)ksize;
		const int ymin = p->bounds[yy * 2] - yoff, ny = p->bounds[yy * 2 + 1];
		uint8_t *out = dst + (size_t)yy * dst_stride;

		for (size_t i = 0; i < n; i++)
			acc[i] = 1 << (PRECISION_BITS - 1);
		for (int y = 0; y < ny; y++)
			resize_vertical_tap(acc, src + (size_t)(ymin + y) * src_stride, k[y], n);
		for (size_t i = 0; i < n; i++)
			out[i] = clip8(acc[i]);
	}
}

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

#ifdef RESIZE_SSE2
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
static inline __m128i sse2_load16(const uint8_t *p)
{
	return _mm_loadu_si128((const __m128i *)(const void *)p);
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
	const __m128i zero = _mm_setzero_si128();
	const __m128i init = _mm_set1_epi32(1 << (PRECISION_BITS - 1));
	__m128i lo0 = init, lo1 = init, lo2 = init, lo3 = init;
	__m128i hi0 = zero, hi1 = zero, hi2 = zero, hi3 = zero;

	for (int y = 0; y < ny; y += 2) {
		const __m128i kl = _mm_set1_epi32(kp[y]);
		const __m128i kh = _mm_set1_epi32(kp[y + 1]);
		const __m128i a = sse2_load16(s + (size_t)y * src_stride);
		/* an odd last tap pairs with a zero row (its coefficient is 0 too) */
		const __m128i b = y + 1 < ny ? sse2_load16(s + (size_t)(y + 1) * src_stride) : zero;
		const __m128i al = _mm_unpacklo_epi8(a, zero);
		const __m128i ah = _mm_unpackhi_epi8(a, zero);
		const __m128i bl = _mm_unpacklo_epi8(b, zero);
		const __m128i bh = _mm_unpackhi_epi8(b, zero);
		const __m128i p0 = _mm_unpacklo_epi16(al, bl);
		const __m128i p1 = _mm_unpackhi_epi16(al, bl);
		const __m128i p2 = _mm_unpacklo_epi16(ah, bh);
		const __m128i p3 = _mm_unpackhi_epi16(ah, bh);

		lo0 = _mm_add_epi32(lo0, _mm_madd_epi16(p0, kl));
		lo1 = _mm_add_epi32(lo1, _mm_madd_epi16(p1, kl));
		lo2 = _mm_add_epi32(lo2, _mm_madd_epi16(p2, kl));
		lo3 = _mm_add_epi32(lo3, _mm_madd_epi16(p3, kl));
		hi0 = _mm_add_epi32(hi0, _mm_madd_epi16(p0, kh));
		hi1 = _mm_add_epi32(hi1, _mm_madd_epi16(p1, kh));
		hi2 = _mm_add_epi32(hi2, _mm_madd_epi16(p2, kh));
		hi3 = _mm_add_epi32(hi3, _mm_madd_epi16(p3, kh));
	}
	/* Saturating packs clamp to 0..255 exactly as clip8. */
	_mm_storeu_si128((__m128i *)(void *)out,
			 _mm_packus_epi16(_mm_packs_epi32(sse2_join(hi0, lo0), sse2_join(hi1, lo1)),
					  _mm_packs_epi32(sse2_join(hi2, lo2), sse2_join(hi3, lo3))));
}

static void resize_vertical_sse2(const struct resize_pass *p,
				 const uint8_t *src, size_t src_stride, int yoff,
				 uint8_t *dst, size_t dst_stride, int out_w, int out_h)
{
	const size_t n = (size_t)out_w * 3;

	for (int yy = 0; yy < out_h; yy++) {
		const int32_t *k = p->kk + (size_t)yy * (size_t)p->ksize;
		const int32_t *kp = p->pairs + (size_t)yy * (size_t)p->npairs * 2;
		const int ymin = p->bounds[yy * 2] - yoff, ny = p->bounds[yy * 2 + 1];
		const uint8_t *base = src + (size_t)ymin * src_stride;
		uint8_t *out = dst + (size_t)yy * dst_stride;
		size_t x = 0;

		for (; x + 16 <= n; x += 16)
			vertical16_sse2(kp, ny, base + x, src_stride, out + x);
		vertical_tail(k, ny, base, src_stride, out, x, n);
	}
}
#endif

#ifdef RESIZE_AVX2
/* (hi << 15) + lo, >> 22, as sse2_join. */
__attribute__((target("avx2")))
static inline __m256i avx2_join(__m256i hi, __m256i lo)
{
	return _mm256_srai_epi32(_mm256_add_epi32(_mm256_slli_epi32(hi, 15), lo), PRECISION_BITS);
}

/*
 * Vertical pass with AVX2: resize_vertical_sse2 on 32 output bytes per
 * iteration. The unpacks and packs work within each 128-bit lane, so the
 * bytes leave in the order they came (lane 0: bytes 0-15, lane 1: 16-31).
 */
__attribute__((target("avx2")))
static void resize_vertical_avx2(const struct resize_pass *p,
				 const uint8_t *src, size_t src_stride, int yoff,
				 uint8_t *dst, size_t dst_stride, int out_w, int out_h)
{
	const size_t n = (size_t)out_w * 3;
	const __m256i zero = _mm256_setzero_si256();
	const __m256i init = _mm256_set1_epi32(1 << (PRECISION_BITS - 1));

	for (int yy = 0; yy < out_h; yy++) {
		const int32_t *k = p->kk + (size_t)yy * (size_t)p->ksize;
		const int32_t *kp = p->pairs + (size_t)yy * (size_t)p->npairs * 2;
		const int ymin = p->bounds[yy * 2] - yoff, ny = p->bounds[yy * 2 + 1];
		const uint8_t *base = src + (size_t)ymin * src_stride;
		uint8_t *out = dst + (size_t)yy * dst_stride;
		size_t x = 0;

		for (; x + 32 <= n; x += 32) {
			__m256i lo0 = init, lo1 = init, lo2 = init, lo3 = init;
			__m256i hi0 = zero, hi1 = zero, hi2 = zero, hi3 = zero;
			const uint8_t *s = base + x;

			for (int y = 0; y < ny; y += 2) {
				const __m256i kl = _mm256_set1_epi32(kp[y]);
				const __m256i kh = _mm256_set1_epi32(kp[y + 1]);
				const __m256i a = _mm256_loadu_si256(
					(const __m256i *)(const void *)(s + (size_t)y * src_stride));
				const __m256i b = y + 1 < ny ? _mm256_loadu_si256(
					(const __m256i *)(const void *)(s + (size_t)(y + 1) * src_stride))
							     : zero;
				const __m256i al = _mm256_unpacklo_epi8(a, zero);
				const __m256i ah = _mm256_unpackhi_epi8(a, zero);
				const __m256i bl = _mm256_unpacklo_epi8(b, zero);
				const __m256i bh = _mm256_unpackhi_epi8(b, zero);
				const __m256i p0 = _mm256_unpacklo_epi16(al, bl);
				const __m256i p1 = _mm256_unpackhi_epi16(al, bl);
				const __m256i p2 = _mm256_unpacklo_epi16(ah, bh);
				const __m256i p3 = _mm256_unpackhi_epi16(ah, bh);

				lo0 = _mm256_add_epi32(lo0, _mm256_madd_epi16(p0, kl));
				lo1 = _mm256_add_epi32(lo1, _mm256_madd_epi16(p1, kl));
				lo2 = _mm256_add_epi32(lo2, _mm256_madd_epi16(p2, kl));
				lo3 = _mm256_add_epi32(lo3, _mm256_madd_epi16(p3, kl));
				hi0 = _mm256_add_epi32(hi0, _mm256_madd_epi16(p0, kh));
				hi1 = _mm256_add_epi32(hi1, _mm256_madd_epi16(p1, kh));
				hi2 = _mm256_add_epi32(hi2, _mm256_madd_epi16(p2, kh));
				hi3 = _mm256_add_epi32(hi3, _mm256_madd_epi16(p3, kh));
			}
			_mm256_storeu_si256((__m256i *)(void *)(out + x),
					    _mm256_packus_epi16(
						    _mm256_packs_epi32(avx2_join(hi0, lo0), avx2_join(hi1, lo1)),
						    _mm256_packs_epi32(avx2_join(hi2, lo2), avx2_join(hi3, lo3))));
		}
		for (; x + 16 <= n; x += 16)
			vertical16_sse2(kp, ny, base + x, src_stride, out + x);
		vertical_tail(k, ny, base, src_stride, out, x, n);
	}
}
#endif

static int resize_vertical(resizer_t *r, const struct resize_pass *p,
			   const uint8_t *src, size_t src_stride, int yoff,
			   uint8_t *dst, size_t dst_stride, int out_w, int out_h)
{
	int rc;

#ifdef RESIZE_AVX2
	if (r->simd && cpu_has_avx2()) {
		resize_vertical_avx2(p, src, src_stride, yoff, dst, dst_stride, out_w, out_h);
		return 0;
	}
#endif
#ifdef RESIZE_SSE2
	if (r->simd) {
		resize_vertical_sse2(p, src, src_stride, yoff, dst, dst_stride, out_w, out_h);
		return 0;
	}
#endif
	rc = scratch_grow((void **)&r->acc, &r->acc_cap, (size_t)out_w * 3 * sizeof(int32_t));
	if (rc < 0)
		return rc;
	resize_vertical_scalar(p, r->acc, src, src_stride, yoff, dst, dst_stride, out_w, out_h);
	return 0;
}

/* Mirror rows left-right in place (the flip where no horizontal pass runs). */
static void mirror_rows(uint8_t *img, size_t stride, int w, int h)
{
	for (int y = 0; y < h; y++) {
		uint8_t *a = img + (size_t)y * stride, *b = a + (size_t)(w - 1) * 3;

		for (; a < b; a += 3, b -= 3) {
			uint8_t t[3];

			memcpy(t, a, 3);
			memcpy(a, b, 3);
			memcpy(b, t, 3);
		}
	}
}

static void copy_rows(const uint8_t *src, size_t src_stride, uint8_t *dst,
		      size_t dst_stride, int w, int h)
{
	for (int y = 0; y < h; y++)
		memmove(dst + (size_t)y * dst_stride, src + (size_t)y * src_stride,
			(size_t)w * 3);
}

/*
 * The one resample behind resize_rgb() and resize_rgb_crop(): the box of an
 * image of full_w x full_h, resized to out_w x out_h, of which the output
 * pixels [x_off, x_off + dst_w) x [y_off, y_off + dst_h) are written to
 * dst; src holds the image's pixels [buf_x0, buf_x0 + buf_w) x [buf_y0,
 * buf_y0 + buf_h). Pillow's decisions (the crop short cut, need_horizontal,
 * need_vertical) are taken on the whole image, as Pillow takes them.
 * With `flip` the written window comes out mirrored left-right: folded
 * into the horizontal coefficients' order when there is a horizontal pass,
 * else a mirror of the rows written.
 */
static int resize_window(resizer_t *r, enum resize_filter f, bool flip, const uint8_t *src,
			 int buf_x0, int buf_y0, int buf_w, int buf_h, size_t src_stride,
			 int full_w, int full_h, const float box[4], int out_w, int out_h,
			 int x_off, int y_off, uint8_t *dst, int dst_w, int dst_h,
			 size_t dst_stride)
{
	const struct resize_kernel *kern = &resize_kernels[f];
	const uint8_t *win;
	bool need_h, need_v;
	int ybox_first, ybox_last, rc;

	/* _imaging.c _resize: an integer box of the output's size is a crop. */
	if (box[0] == (float)(int)box[0] && box[2] - box[0] == (float)out_w &&
	    box[1] == (float)(int)box[1] && box[3] - box[1] == (float)out_h) {
		int cx = (int)box[0] + x_off - buf_x0, cy = (int)box[1] + y_off - buf_y0;

		if (cx < 0 || cy < 0 || cx + dst_w > buf_w || cy + dst_h > buf_h)
			return -ERANGE;
		copy_rows(src + (size_t)cy * src_stride + (size_t)cx * 3,
			  src_stride, dst, dst_stride, dst_w, dst_h);
		if (flip)
			mirror_rows(dst, dst_stride, dst_w, dst_h);
		return 0;
	}

	need_h = out_w != full_w || box[0] != 0.0f || box[2] != (float)out_w;
	need_v = out_h != full_h || box[1] != 0.0f || box[3] != (float)out_h;

	rc = resize_coeffs(r, &r->horiz, full_w, box[0], box[2], out_w, x_off, dst_w,
			   buf_x0, buf_w, kern, need_h && r->simd, flip && need_h);
	if (rc == 0)
		rc = resize_coeffs(r, &r->vert, full_h, box[1], box[3], out_h, y_off,
				   dst_h, buf_y0, buf_h, kern, r->simd, false);
	if (rc < 0)
		return rc;
	/* First and one past the last source row the vertical pass reads. */
	ybox_first = r->vert.bounds[0];
	ybox_last = r->vert.bounds[dst_h * 2 - 2] + r->vert.bounds[dst_h * 2 - 1];

	if (need_h && need_v) {
		size_t tmp_stride = (size_t)dst_w * 3;

		rc = scratch_grow((void **)&r->tmp, &r->tmp_cap,
			  tmp_stride * (size_t)(ybox_last - ybox_first));
		if (rc < 0)
			return rc;
		resize_horizontal(r, &r->horiz, buf_w, src, src_stride, ybox_first,
				  ybox_last - ybox_first, r->tmp, tmp_stride, dst_w);
		return resize_vertical(r, &r->vert, r->tmp, tmp_stride, ybox_first, dst,
				       dst_stride, dst_w, dst_h);
	}
	if (need_h) {
		/* Same height, whole height: Pillow's temp image is the result;
		 * the window's rows of it. */
		if (y_off - buf_y0 < 0 || y_off - buf_y0 + dst_h > buf_h)
			return -ERANGE;
		resize_horizontal(r, &r->horiz, buf_w, src, src_stride, y_off - buf_y0,
				  dst_h, dst, dst_stride, dst_w);
		return 0;
	}
	/* no horizontal pass: the window's columns as they are */
	if (x_off - buf_x0 < 0 || x_off - buf_x0 + dst_w > buf_w)
		return -ERANGE;
	win = src + (size_t)(x_off - buf_x0) * 3;
	if (need_v) {
		rc = resize_vertical(r, &r->vert, win, src_stride, 0, dst, dst_stride,
				     dst_w, dst_h);
	} else {
		if (y_off - buf_y0 < 0 || y_off - buf_y0 + dst_h > buf_h)
			return -ERANGE;
		copy_rows(win + (size_t)(y_off - buf_y0) * src_stride, src_stride, dst,
			  dst_stride, dst_w, dst_h);
	}
	if (rc == 0 && flip)
		mirror_rows(dst, dst_stride, dst_w, dst_h);
	return rc;
}

int resize_rgb(resizer_t *r, enum resize_filter f,
	       const uint8_t *src, int src_w, int src_h, size_t src_stride,
	       double bx0, double by0, double bx1, double by1,
	       uint8_t *dst, int dst_w, int dst_h, size_t dst_stride)
{
	return resize_rgb_ex(r, f, 0, src, src_w, src_h, src_stride, bx0, by0, bx1, by1,
			     dst, dst_w, dst_h, dst_stride);
}

int resize_rgb_ex(resizer_t *r, enum resize_filter f, unsigned flags,
		  const uint8_t *src, int src_w, int src_h, size_t src_stride,
		  double bx0, double by0, double bx1, double by1,
		  uint8_t *dst, int dst_w, int dst_h, size_t dst_stride)
{
	float box[4];

	if (!r || !src || !dst || (f != RESIZE_BILINEAR && f != RESIZE_BICUBIC) ||
	    (flags & ~(unsigned)RESIZE_FLIP))
		return -EINVAL;
	if (src_w < 1 || src_h < 1 || dst_w < 1 || dst_h < 1 ||
	    src_w > RESIZE_MAX_DIM || src_h > RESIZE_MAX_DIM ||
	    dst_w > RESIZE_MAX_DIM || dst_h > RESIZE_MAX_DIM)
		return -EINVAL;
	if (src_stride < (size_t)src_w * 3 || dst_stride < (size_t)dst_w * 3)
		return -EINVAL;
	/* Written so that NaN fails every test. */
	if (!(bx0 >= 0 && bx0 < bx1 && bx1 <= src_w && by0 >= 0 && by0 < by1 &&
	      by1 <= src_h))
		return -EINVAL;
	box[0] = (float)bx0;
	box[1] = (float)by0;
	box[2] = (float)bx1;
	box[3] = (float)by1;
	return resize_window(r, f, flags & RESIZE_FLIP, src, 0, 0, src_w, src_h, src_stride,
			     src_w, src_h, box, dst_w, dst_h, 0, 0, dst, dst_w, dst_h, dst_stride);
}

int resize_rgb_crop(resizer_t *r, enum resize_filter f, const uint8_t *src,
		    int buf_x0, int buf_y0, int buf_w, int buf_h, size_t src_stride,
		    int full_w, int full_h, int out_w, int out_h, int x_off, int y_off,
		    uint8_t *dst, int dst_w, int dst_h, size_t dst_stride)
{
	float box[4] = { 0.0f, 0.0f, (float)full_w, (float)full_h };

	if (!r || !src || !dst || (f != RESIZE_BILINEAR && f != RESIZE_BICUBIC))
		return -EINVAL;
	if (full_w < 1 || full_h < 1 || full_w > RESIZE_MAX_DIM ||
	    full_h > RESIZE_MAX_DIM || out_w < 1 || out_h < 1 ||
	    out_w > RESIZE_MAX_DIM || out_h > RESIZE_MAX_DIM || dst_w < 1 ||
	    dst_h < 1 || buf_w < 1 || buf_h < 1)
		return -EINVAL;
	if (x_off < 0 || y_off < 0 || x_off + dst_w > out_w || y_off + dst_h > out_h ||
	    buf_x0 < 0 || buf_y0 < 0 || buf_x0 + buf_w > full_w ||
	    buf_y0 + buf_h > full_h)
		return -EINVAL;
	if (src_stride < (size_t)buf_w * 3 || dst_stride < (size_t)dst_w * 3)
		return -EINVAL;
	return resize_window(r, f, false, src, buf_x0, buf_y0, buf_w, buf_h, src_stride,
			     full_w, full_h, box, out_w, out_h, x_off, y_off, dst,
			     dst_w, dst_h, dst_stride);
}
