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
 * The SIMD passes live in resize_simd.c; this file has the coefficients,
 * the portable loops and the dispatch (resize_internal.h between them).
 * Streaming (resize_stream_*): the coefficients first, then the source
 * rows as the decoder makes them (16 at a time, decode.c), each group run
 * through the horizontal pass into its rows of tmp, then the vertical
 * pass; the same calls on the same rows as resize_window(), so the same
 * bytes, without a buffer holding the whole decoded region.
 *
 * Speed (docs/PERFORMANCE.md "Resize and page faults"): train crops of the
 * ImageNet sample, 224x224 bilinear, 2.39 M instructions per image with
 * AVX2 (6.11 M before the 4-row/AVX2-vertical work), about 0.1 ms.
 */
#include "resize.h"
#include "resize_internal.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "scratch.h"

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

/* One resample: the box of an image of full_w x full_h resized to out_w x
 * out_h, of which the outputs [x_off, x_off + dst_w) x [y_off, y_off +
 * dst_h) are written; the source buffer holds the image's pixels [buf_x0,
 * buf_x0 + buf_w) x [buf_y0, buf_y0 + buf_h). */
struct resize_geom {
	enum resize_filter f;
	bool flip;
	int buf_x0, buf_y0, buf_w, buf_h;
	int full_w, full_h;
	float box[4];
	int out_w, out_h, x_off, y_off, dst_w, dst_h;
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
	/* A streamed resample between resize_stream_begin_*() and
	 * resize_stream_end(): its geometry, the source rows [first, last)
	 * the vertical pass reads (rows of tmp), and how many came. */
	bool streaming;
	struct resize_geom sg;
	int s_first, s_last, s_fed, s_next;
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

/* Whether coefficients computed for `have` serve a request for `want`
 * (packed pairs made for one are good for a request without them too). */
static bool coeffs_key_serves(const struct resize_key *have, const struct resize_key *want)
{
	return have->in == want->in && have->total == want->total &&
	       have->off == want->off && have->out == want->out &&
	       have->src_off == want->src_off && have->buf == want->buf &&
	       have->in0 == want->in0 && have->in1 == want->in1 &&
	       have->kern == want->kern && have->flip == want->flip &&
	       (have->pairs || !want->pairs);
}

/* Room for out_size output pixels of ksize taps (and their pairs). */
static int coeffs_grow(resizer_t *r, struct resize_pass *p, int out_size, int ksize,
		       bool pairs)
{
	int rc;

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
	return rc;
}

/*
 * One output pixel, Pillow's way: the taps [xmin, xmin + n) around center
 * clamped to the extent, their filter weights divided by their sum (into
 * the double scratch k), rounded half away from zero to 22 bits into kk
 * (zero beyond n). Returns xmin; *n_out gets n.
 */
static int coeffs_pixel(double *k, int32_t *kk, const struct resize_kernel *kern,
			double center, double support, double ss, int in_size, int ksize,
			int *n_out)
{
	double ww = 0.0;
	int x, xmin, xmax;

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
	*n_out = xmax;
	return xmin;
}

/* The packed form of one pixel's kk for the SIMD passes: per pair of taps
 * the low 15 bits of both as two int16, then the high parts (an odd last
 * tap pairs with 0). */
static void coeffs_pack_pairs(int32_t *kp, const int32_t *kk, int ksize, int npairs)
{
	for (int x = 0; x < npairs; x++) {
		int32_t ka = kk[2 * x];
		int32_t kb = 2 * x + 1 < ksize ? kk[2 * x + 1] : 0;

		kp[2 * x] = pack16(ka & 0x7FFF, kb & 0x7FFF);
		kp[2 * x + 1] = pack16(ka >> 15, kb >> 15);
	}
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
	const struct resize_key key = {
		.in = in_size, .total = out_total, .off = out_off, .out = out_size,
		.src_off = src_off, .buf = buf_size, .in0 = in0, .in1 = in1,
		.kern = kern, .flip = flip, .pairs = pairs,
	};
	double support, scale, filterscale, ss;
	int ksize, rc;

	if (p->valid && coeffs_key_serves(&p->key, &key))
		return 0;
	p->valid = false;

	filterscale = scale = (double)(in1 - in0) / out_total;
	if (filterscale < 1.0)
		filterscale = 1.0;
	support = kern->support * filterscale;
	/* support <= 2 * in_size <= 2^25: no overflow below. */
	ksize = (int)ceil(support) * 2 + 1;
	rc = coeffs_grow(r, p, out_size, ksize, pairs);
	if (rc < 0)
		return rc;

	ss = 1.0 / filterscale;
	for (int xx = 0; xx < out_size; xx++) {
		const int slot = flip ? out_size - 1 - xx : xx;
		int32_t *kk = p->kk + (size_t)slot * (size_t)ksize;
		const double center = in0 + (xx + out_off + 0.5) * scale;
		int n;
		const int xmin = coeffs_pixel(r->pre, kk, kern, center, support, ss, in_size,
					      ksize, &n);

		if (xmin - src_off < 0 || xmin - src_off + n > buf_size)
			return -ERANGE; /* the caller's window lacks taps */
		p->bounds[slot * 2 + 0] = xmin - src_off;
		p->bounds[slot * 2 + 1] = n;
		if (pairs)
			coeffs_pack_pairs(p->pairs + (size_t)slot * (size_t)p->npairs * 2, kk,
					  ksize, p->npairs);
	}
	p->key = key;
	p->valid = true;
	return 0;
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

/* Pillow's short cut (_imaging.c _resize): an integer box of the output's
 * size is a crop. */
static bool geom_is_crop(const struct resize_geom *g)
{
	const float *box = g->box;

	return box[0] == (float)(int)box[0] && box[2] - box[0] == (float)g->out_w &&
	       box[1] == (float)(int)box[1] && box[3] - box[1] == (float)g->out_h;
}

/* The coefficients of both passes for g, and whether each pass runs
 * (need_horizontal / need_vertical as Pillow decides them, on the whole
 * image). 0 or -errno. */
static int resize_plan(resizer_t *r, const struct resize_geom *g, bool *need_h,
		       bool *need_v)
{
	const struct resize_kernel *kern = &resize_kernels[g->f];
	const float *box = g->box;
	int rc;

	*need_h = g->out_w != g->full_w || box[0] != 0.0f || box[2] != (float)g->out_w;
	*need_v = g->out_h != g->full_h || box[1] != 0.0f || box[3] != (float)g->out_h;
	rc = resize_coeffs(r, &r->horiz, g->full_w, box[0], box[2], g->out_w, g->x_off,
			   g->dst_w, g->buf_x0, g->buf_w, kern, *need_h && r->simd,
			   g->flip && *need_h);
	if (rc == 0)
		rc = resize_coeffs(r, &r->vert, g->full_h, box[1], box[3], g->out_h,
				   g->y_off, g->dst_h, g->buf_y0, g->buf_h, kern, r->simd,
				   false);
	return rc;
}

/* First and one past the last source row (of the buffer) the vertical pass
 * reads; valid after resize_plan(). */
static void vert_rows(const resizer_t *r, int dst_h, int *first, int *last)
{
	*first = r->vert.bounds[0];
	*last = r->vert.bounds[dst_h * 2 - 2] + r->vert.bounds[dst_h * 2 - 1];
}

/* Only one pass runs, or none: Pillow's temp image is the result, or the
 * window's pixels are copied (mirrored for a flip). */
static int resize_one_pass(resizer_t *r, const struct resize_geom *g, bool need_h,
			   bool need_v, const uint8_t *src, size_t src_stride,
			   uint8_t *dst, size_t dst_stride)
{
	const uint8_t *win;
	int rc = 0;

	if (need_h) {
		/* same height, whole height: the window's rows of the temp */
		if (g->y_off - g->buf_y0 < 0 || g->y_off - g->buf_y0 + g->dst_h > g->buf_h)
			return -ERANGE;
		resize_horizontal(r, &r->horiz, g->buf_w, src, src_stride,
				  g->y_off - g->buf_y0, g->dst_h, dst, dst_stride, g->dst_w);
		return 0;
	}
	/* no horizontal pass: the window's columns as they are */
	if (g->x_off - g->buf_x0 < 0 || g->x_off - g->buf_x0 + g->dst_w > g->buf_w)
		return -ERANGE;
	win = src + (size_t)(g->x_off - g->buf_x0) * 3;
	if (need_v) {
		rc = resize_vertical(r, &r->vert, win, src_stride, 0, dst, dst_stride,
				     g->dst_w, g->dst_h);
	} else {
		if (g->y_off - g->buf_y0 < 0 || g->y_off - g->buf_y0 + g->dst_h > g->buf_h)
			return -ERANGE;
		copy_rows(win + (size_t)(g->y_off - g->buf_y0) * src_stride, src_stride,
			  dst, dst_stride, g->dst_w, g->dst_h);
	}
	if (rc == 0 && g->flip)
		mirror_rows(dst, dst_stride, g->dst_w, g->dst_h);
	return rc;
}

/*
 * The one resample behind resize_rgb() and resize_rgb_crop() (struct
 * resize_geom says what it is); src holds the image's pixels [buf_x0,
 * buf_x0 + buf_w) x [buf_y0, buf_y0 + buf_h). With `flip` the written
 * window comes out mirrored left-right: folded into the horizontal
 * coefficients' order when there is a horizontal pass, else a mirror of
 * the rows written.
 */
static int resize_window(resizer_t *r, const struct resize_geom *g, const uint8_t *src,
			 size_t src_stride, uint8_t *dst, size_t dst_stride)
{
	bool need_h, need_v;
	int first, last, rc;

	if (geom_is_crop(g)) {
		int cx = (int)g->box[0] + g->x_off - g->buf_x0;
		int cy = (int)g->box[1] + g->y_off - g->buf_y0;

		if (cx < 0 || cy < 0 || cx + g->dst_w > g->buf_w || cy + g->dst_h > g->buf_h)
			return -ERANGE;
		copy_rows(src + (size_t)cy * src_stride + (size_t)cx * 3,
			  src_stride, dst, dst_stride, g->dst_w, g->dst_h);
		if (g->flip)
			mirror_rows(dst, dst_stride, g->dst_w, g->dst_h);
		return 0;
	}
	rc = resize_plan(r, g, &need_h, &need_v);
	if (rc < 0)
		return rc;
	if (!(need_h && need_v))
		return resize_one_pass(r, g, need_h, need_v, src, src_stride, dst,
				       dst_stride);
	vert_rows(r, g->dst_h, &first, &last);
	size_t tmp_stride = (size_t)g->dst_w * 3;
	rc = scratch_grow((void **)&r->tmp, &r->tmp_cap, tmp_stride * (size_t)(last - first));
	if (rc < 0)
		return rc;
	resize_horizontal(r, &r->horiz, g->buf_w, src, src_stride, first, last - first,
			  r->tmp, tmp_stride, g->dst_w);
	return resize_vertical(r, &r->vert, r->tmp, tmp_stride, first, dst, dst_stride,
			       g->dst_w, g->dst_h);
}

int resize_rgb(resizer_t *r, enum resize_filter f,
	       const uint8_t *src, int src_w, int src_h, size_t src_stride,
	       double bx0, double by0, double bx1, double by1,
	       uint8_t *dst, int dst_w, int dst_h, size_t dst_stride)
{
	return resize_rgb_ex(r, f, 0, src, src_w, src_h, src_stride, bx0, by0, bx1, by1,
			     dst, dst_w, dst_h, dst_stride);
}

/* The geometry of resize_rgb_ex() from its arguments (strides and
 * pointers aside); -EINVAL when they are not a valid request. */
static int geom_ex(enum resize_filter f, unsigned flags, int src_w, int src_h,
		   double bx0, double by0, double bx1, double by1, int dst_w,
		   int dst_h, struct resize_geom *g)
{
	if ((f != RESIZE_BILINEAR && f != RESIZE_BICUBIC) || (flags & ~(unsigned)RESIZE_FLIP))
		return -EINVAL;
	if (src_w < 1 || src_h < 1 || dst_w < 1 || dst_h < 1 ||
	    src_w > RESIZE_MAX_DIM || src_h > RESIZE_MAX_DIM ||
	    dst_w > RESIZE_MAX_DIM || dst_h > RESIZE_MAX_DIM)
		return -EINVAL;
	/* Written so that NaN fails every test. */
	if (!(bx0 >= 0 && bx0 < bx1 && bx1 <= src_w && by0 >= 0 && by0 < by1 &&
	      by1 <= src_h))
		return -EINVAL;
	*g = (struct resize_geom){
		.f = f, .flip = flags & RESIZE_FLIP,
		.buf_w = src_w, .buf_h = src_h, .full_w = src_w, .full_h = src_h,
		.box = { (float)bx0, (float)by0, (float)bx1, (float)by1 },
		.out_w = dst_w, .out_h = dst_h, .dst_w = dst_w, .dst_h = dst_h,
	};
	return 0;
}

/* The same for resize_rgb_crop(). */
static int geom_crop(enum resize_filter f, int buf_x0, int buf_y0, int buf_w,
		     int buf_h, int full_w, int full_h, int out_w, int out_h,
		     int x_off, int y_off, int dst_w, int dst_h, struct resize_geom *g)
{
	if (f != RESIZE_BILINEAR && f != RESIZE_BICUBIC)
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
	*g = (struct resize_geom){
		.f = f, .buf_x0 = buf_x0, .buf_y0 = buf_y0, .buf_w = buf_w,
		.buf_h = buf_h, .full_w = full_w, .full_h = full_h,
		.box = { 0.0f, 0.0f, (float)full_w, (float)full_h },
		.out_w = out_w, .out_h = out_h, .x_off = x_off, .y_off = y_off,
		.dst_w = dst_w, .dst_h = dst_h,
	};
	return 0;
}

int resize_rgb_ex(resizer_t *r, enum resize_filter f, unsigned flags,
		  const uint8_t *src, int src_w, int src_h, size_t src_stride,
		  double bx0, double by0, double bx1, double by1,
		  uint8_t *dst, int dst_w, int dst_h, size_t dst_stride)
{
	struct resize_geom g;

	if (!r || !src || !dst || geom_ex(f, flags, src_w, src_h, bx0, by0, bx1, by1,
					 dst_w, dst_h, &g))
		return -EINVAL;
	if (src_stride < (size_t)src_w * 3 || dst_stride < (size_t)dst_w * 3)
		return -EINVAL;
	return resize_window(r, &g, src, src_stride, dst, dst_stride);
}

int resize_rgb_crop(resizer_t *r, enum resize_filter f, const uint8_t *src,
		    int buf_x0, int buf_y0, int buf_w, int buf_h, size_t src_stride,
		    int full_w, int full_h, int out_w, int out_h, int x_off, int y_off,
		    uint8_t *dst, int dst_w, int dst_h, size_t dst_stride)
{
	struct resize_geom g;

	if (!r || !src || !dst || geom_crop(f, buf_x0, buf_y0, buf_w, buf_h, full_w,
					   full_h, out_w, out_h, x_off, y_off, dst_w,
					   dst_h, &g))
		return -EINVAL;
	if (src_stride < (size_t)buf_w * 3 || dst_stride < (size_t)dst_w * 3)
		return -EINVAL;
	return resize_window(r, &g, src, src_stride, dst, dst_stride);
}

/* A streamed resample of g: the coefficients now, the rows as they come.
 * -EAGAIN where the resample has not both passes (see resize.h). */
static int stream_begin(resizer_t *r, const struct resize_geom *g)
{
	bool need_h, need_v;
	int rc;

	r->streaming = false;
	if (geom_is_crop(g))
		return -EAGAIN;
	rc = resize_plan(r, g, &need_h, &need_v);
	if (rc < 0)
		return rc;
	if (!(need_h && need_v))
		return -EAGAIN;
	vert_rows(r, g->dst_h, &r->s_first, &r->s_last);
	rc = scratch_grow((void **)&r->tmp, &r->tmp_cap,
			  (size_t)g->dst_w * 3 * (size_t)(r->s_last - r->s_first));
	if (rc < 0)
		return rc;
	r->sg = *g;
	r->s_fed = 0;
	r->s_next = 0;
	r->streaming = true;
	return 0;
}

int resize_stream_begin_ex(resizer_t *r, enum resize_filter f, unsigned flags,
			   int src_w, int src_h, double bx0, double by0, double bx1,
			   double by1, int dst_w, int dst_h)
{
	struct resize_geom g;

	if (!r)
		return -EINVAL;
	r->streaming = false;
	if (geom_ex(f, flags, src_w, src_h, bx0, by0, bx1, by1, dst_w, dst_h, &g))
		return -EINVAL;
	return stream_begin(r, &g);
}

int resize_stream_begin_crop(resizer_t *r, enum resize_filter f, int buf_x0,
			     int buf_y0, int buf_w, int buf_h, int full_w, int full_h,
			     int out_w, int out_h, int x_off, int y_off, int dst_w,
			     int dst_h)
{
	struct resize_geom g;

	if (!r)
		return -EINVAL;
	r->streaming = false;
	if (geom_crop(f, buf_x0, buf_y0, buf_w, buf_h, full_w, full_h, out_w, out_h,
		      x_off, y_off, dst_w, dst_h, &g))
		return -EINVAL;
	return stream_begin(r, &g);
}

void resize_stream_rows(resizer_t *r, const uint8_t *rows, size_t stride, int row0,
			int nrows)
{
	/* Out of order, overlapping or too narrow: ends the stream, and
	 * resize_stream_end() fails it. */
	if (!r->streaming || row0 != r->s_next || nrows < 0 ||
	    stride < (size_t)r->sg.buf_w * 3) {
		r->streaming = false;
		return;
	}
	r->s_next = row0 + nrows;
	/* only the rows the vertical pass reads */
	int a = row0 > r->s_first ? row0 : r->s_first;
	int b = row0 + nrows < r->s_last ? row0 + nrows : r->s_last;
	if (a >= b)
		return;
	size_t tmp_stride = (size_t)r->sg.dst_w * 3;
	resize_horizontal(r, &r->horiz, r->sg.buf_w, rows, stride, a - row0, b - a,
			  r->tmp + (size_t)(a - r->s_first) * tmp_stride, tmp_stride,
			  r->sg.dst_w);
	r->s_fed += b - a;
}

int resize_stream_end(resizer_t *r, uint8_t *dst, size_t dst_stride)
{
	if (!r || !r->streaming)
		return -EINVAL;
	r->streaming = false;
	if (!dst || dst_stride < (size_t)r->sg.dst_w * 3 || r->s_fed != r->s_last - r->s_first)
		return -EINVAL;
	return resize_vertical(r, &r->vert, r->tmp, (size_t)r->sg.dst_w * 3, r->s_first,
			       dst, dst_stride, r->sg.dst_w, r->sg.dst_h);
}
