/*
 * imgops_geom.c — the affine ops (ShearX/Y, TranslateX/Y, Rotate) and the
 * Gaussian blur of imgops.h, with torchvision 0.14's tensor arithmetic.
 *
 * Affine ops: torchvision builds the inverse matrix in double
 * (F._get_inverse_affine_matrix), rounds it to float32, divides it by
 * (W/2, H/2) and multiplies the grid of output pixel centres
 * (x - W/2 + 0.5, y - H/2 + 0.5, 1) by it (float32 bmm) to get
 * normalised source coordinates; grid_sample (align_corners = False,
 * zero padding) maps them back with (g + 1) * (size / 2) - 0.5 and
 * samples the image and a plane of ones (the mask) -- torch's AVX2
 * kernel, which the compiler contracts into fused multiply-adds, so the
 * unnormalisation and the 4-corner sum are FMAs here too (fmaf: exact on
 * any CPU, hardware where the CPU has it) -- ; the fill is blended
 * in as img * mask + (1 - mask) * fill (bilinear) or wherever mask < 0.5
 * (nearest); the float result is rounded half to even. Every float32 step
 * below is the one torch takes, in the same order.
 */
#include "imgops.h"
#include "imgops_int.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Python's math.radians / math.degrees. */
static double radians(double d) { return d * (M_PI / 180.0); }
static double degrees(double r) { return r * (180.0 / M_PI); }

/* F._get_inverse_affine_matrix(center, angle, translate, 1.0, shear). */
static void inverse_affine(const double center[2], double angle,
			   const double translate[2], const double shear[2],
			   double m[6])
{
	double rot = radians(angle), sx = radians(shear[0]), sy = radians(shear[1]);
	double cx = center[0], cy = center[1], tx = translate[0], ty = translate[1];
	double a = cos(rot - sy) / cos(sy);
	double b = -cos(rot - sy) * tan(sx) / cos(sy) - sin(rot);
	double c = sin(rot - sy) / cos(sy);
	double d = -sin(rot - sy) * tan(sx) / cos(sy) + cos(rot);

	m[0] = d;
	m[1] = -b;
	m[2] = 0.0;
	m[3] = -c;
	m[4] = a;
	m[5] = 0.0;
	m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty);
	m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty);
	m[2] += cx;
	m[5] += cy;
}

/* The matrix _apply_op hands to F.affine / F.rotate for this op. */
static void op_matrix(const struct imgop_args *a, int W, int H, double m[6])
{
	double zero2[2] = { 0.0, 0.0 }, shear[2] = { 0.0, 0.0 };
	double center[2] = { 0.0, 0.0 }, tr[2] = { 0.0, 0.0 };
	double mag = a->magnitude;

	switch (a->op) {
	case IMGOP_SHEAR_X:
	case IMGOP_SHEAR_Y:
		/* center = [0, 0] in pixels: relative to the image centre */
		center[0] = 1.0 * (0.0 - W * 0.5);
		center[1] = 1.0 * (0.0 - H * 0.5);
		shear[a->op == IMGOP_SHEAR_Y] = degrees(atan(mag));
		inverse_affine(center, 0.0, zero2, shear, m);
		break;
	case IMGOP_TRANSLATE_X:
	case IMGOP_TRANSLATE_Y:
		tr[a->op == IMGOP_TRANSLATE_Y] = (double)(long)mag; /* int() */
		inverse_affine(zero2, 0.0, tr, zero2, m);
		break;
	default: /* Rotate: F.rotate negates the angle */
		inverse_affine(zero2, -mag, zero2, zero2, m);
		break;
	}
}

struct warp {
	const uint8_t *src; /* packed W*3 rows */
	int W, H;
	float fill[3];
	uint8_t fill8[3];
};

/* One output pixel, nearest: torch rounds half to even (nearbyint). */
static inline __attribute__((always_inline)) void warp_nearest(const struct warp *w, float ix, float iy, uint8_t *out)
{
	float xr = nearbyintf(ix), yr = nearbyintf(iy);

	if (xr >= 0.0f && xr < (float)w->W && yr >= 0.0f && yr < (float)w->H) {
		const uint8_t *s = w->src + ((size_t)(int)yr * (size_t)w->W + (size_t)(int)xr) * 3;

		out[0] = s[0];
		out[1] = s[1];
		out[2] = s[2];
	} else {
		out[0] = w->fill8[0];
		out[1] = w->fill8[1];
		out[2] = w->fill8[2];
	}
}

static inline __attribute__((always_inline)) uint8_t round_u8(float v)
{
	v = nearbyintf(v);
	return v <= 0.0f ? 0 : v >= 255.0f ? 255 : (uint8_t)v;
}

/* One output pixel, bilinear, with the mask plane and the fill blend. */
static inline __attribute__((always_inline)) void warp_bilinear(const struct warp *w, float ix, float iy, uint8_t *out)
{
	static const uint8_t zero[3] = { 0, 0, 0 };
	float fx, fy, we, ww, wn, ws, nw, ne, sw, se, mask, inv;
	const uint8_t *pnw, *pne, *psw, *pse;
	float mnw, mne, msw, mse;
	int x0, y0;
	int in_w, in_e, in_n, in_s;

	if (!(ix > -2.0f && ix < (float)w->W + 1.0f && iy > -2.0f && iy < (float)w->H + 1.0f)) {
		/* no corner inside: value 0, mask 0 -> the fill */
		for (int c = 0; c < 3; c++)
			out[c] = round_u8(0.0f * 0.0f + (1.0f - 0.0f) * w->fill[c]);
		return;
	}
	fx = floorf(ix);
	fy = floorf(iy);
	x0 = (int)fx;
	y0 = (int)fy;
	ww = ix - fx;   /* "w" in torch: distance to the west side */
	we = 1.0f - ww; /* "e" */
	wn = iy - fy;   /* "n" */
	ws = 1.0f - wn; /* "s" */
	nw = ws * we;
	ne = ws * ww;
	sw = wn * we;
	se = wn * ww;
	in_w = x0 > -1 && x0 < w->W;
	in_e = x0 + 1 > -1 && x0 + 1 < w->W;
	in_n = y0 > -1 && y0 < w->H;
	in_s = y0 + 1 > -1 && y0 + 1 < w->H;
	pnw = in_n && in_w ? w->src + ((size_t)y0 * w->W + x0) * 3 : zero;
	pne = in_n && in_e ? w->src + ((size_t)y0 * w->W + x0 + 1) * 3 : zero;
	psw = in_s && in_w ? w->src + ((size_t)(y0 + 1) * w->W + x0) * 3 : zero;
	pse = in_s && in_e ? w->src + ((size_t)(y0 + 1) * w->W + x0 + 1) * 3 : zero;
	mnw = in_n && in_w ? 1.0f : 0.0f;
	mne = in_n && in_e ? 1.0f : 0.0f;
	msw = in_s && in_w ? 1.0f : 0.0f;
	mse = in_s && in_e ? 1.0f : 0.0f;
	/* torch's AVX2 kernel: the sum is contracted into FMAs */
	mask = fmaf(mse, se, fmaf(msw, sw, fmaf(mne, ne, mnw * nw)));
	inv = 1.0f - mask;
	for (int c = 0; c < 3; c++) {
		float v = fmaf((float)pse[c], se, fmaf((float)psw[c], sw,
			  fmaf((float)pne[c], ne, (float)pnw[c] * nw)));

		out[c] = round_u8(v * mask + inv * w->fill[c]);
	}
}

/* One output row; yx, yy: the row's y terms of gx, gy. A clone with
 * hardware FMA and rounding inlined, the same arithmetic either way. */
IMGOP_CLONES
static void warp_row(const struct warp *w, uint8_t *out, const float *xg0,
		     const float *xg1, float yx, float yy, const float r[6],
		     unsigned interp)
{
	float sw = (float)w->W / 2.0f, sh = (float)w->H / 2.0f;

	for (int x = 0; x < w->W; x++, out += 3) {
		float gx = (xg0[x] + yx) + r[2];
		float gy = (xg1[x] + yy) + r[5];
		float ix = fmaf(gx + 1.0f, sw, -0.5f);
		float iy = fmaf(gy + 1.0f, sh, -0.5f);

		if (interp == IMGOP_NEAREST)
			warp_nearest(w, ix, iy, out);
		else
			warp_bilinear(w, ix, iy, out);
	}
}

/* The bilinear warp on AVX2 + FMA CPUs: float planes of the source in
 * `buf` (3 W H floats), rows by imgops_avx2.c. */
static int affine_bilinear_simd(uint8_t *img, int W, int H, size_t stride,
				const struct imgop_args *a, const float *xg0,
				const float *xg1, const float r[6], uint8_t *buf)
{
	size_t n = (size_t)W * H;
	float *P = (float *)buf;
	struct imgop_planes pl = { { P, P + n, P + 2 * n }, W, H, { 0 } };

	for (int y = 0; y < H; y++) {
		const uint8_t *p = img + (size_t)y * stride;
		float *q0 = P + (size_t)y * W, *q1 = q0 + n, *q2 = q1 + n;

		for (int x = 0; x < W; x++) {
			q0[x] = p[3 * x];
			q1[x] = p[3 * x + 1];
			q2[x] = p[3 * x + 2];
		}
	}
	for (int c = 0; c < 3; c++)
		pl.fill[c] = (float)a->fill[c];
	for (int y = 0; y < H; y++) {
		float by = (float)(-H * 0.5 + 0.5) + (float)y;

		imgop_warp_row_bilinear_avx2(&pl, img + (size_t)y * stride, xg0, xg1,
					     by * r[1], by * r[4], r[2], r[5]);
	}
	return 0;
}

/*
 * The grid: gx = x * r00 + y * r10 + r20 (float32, the bmm of the base
 * grid with the rescaled theta; torch's CPU gemm for this shape
 * accumulates in that order without FMA), then grid_sample's
 * unnormalisation. Per output row the y terms are constants, per column
 * the x terms come from a table.
 */
int imgop_affine(uint8_t *img, int W, int H, size_t stride,
		 const struct imgop_args *a, uint8_t *scratch)
{
	double m[6];
	float t[6], r[6];
	size_t row = (size_t)W * 3;
	struct warp w;
	float *xg0 = (float *)imgop_align(scratch);
	float *xg1 = (float *)imgop_align((uint8_t *)(xg0 + W));
	uint8_t *src = imgop_align((uint8_t *)(xg1 + W));

	op_matrix(a, W, H, m);
	for (int k = 0; k < 6; k++)
		t[k] = (float)m[k];
	/* rescaled_theta = theta.T / [0.5 w, 0.5 h] */
	r[0] = t[0] / (float)(0.5 * W);
	r[1] = t[1] / (float)(0.5 * W);
	r[2] = t[2] / (float)(0.5 * W);
	r[3] = t[3] / (float)(0.5 * H);
	r[4] = t[4] / (float)(0.5 * H);
	r[5] = t[5] / (float)(0.5 * H);
	for (int x = 0; x < W; x++) {
		float bx = (float)(-W * 0.5 + 0.5) + (float)x;

		xg0[x] = bx * r[0];
		xg1[x] = bx * r[3];
	}
	if (a->interp == IMGOP_BILINEAR && imgop_simd())
		return affine_bilinear_simd(img, W, H, stride, a, xg0, xg1, r,
					    imgop_align((uint8_t *)(xg1 + W)));
	for (int y = 0; y < H; y++)
		memcpy(src + (size_t)y * row, img + (size_t)y * stride, row);
	w.src = src;
	w.W = W;
	w.H = H;
	for (int c = 0; c < 3; c++) {
		w.fill8[c] = a->fill[c];
		w.fill[c] = (float)a->fill[c];
	}
	for (int y = 0; y < H; y++) {
		float by = (float)(-H * 0.5 + 0.5) + (float)y;

		warp_row(&w, img + (size_t)y * stride, xg0, xg1, by * r[1],
			 by * r[4], r, a->interp);
	}
	return 0;
}

/* ---- Gaussian blur -------------------------------------------------- */

/*
 * Kernel size: 2 * ceil(3 sigma) + 1 (covers +-3 sigma, the usual rule,
 * e.g. OpenCV's and scikit-image's truncate = 3 for uint8), per axis
 * capped so that the half width stays below the image side, which is
 * what torch's reflect padding requires.
 */
static int blur_half(double sigma, int side)
{
	double h = ceil(3.0 * sigma);
	int half = h > 4096.0 ? 4096 : (int)h;

	return half > side - 1 ? side - 1 : half;
}

int imgop_blur_ksize(double sigma, int W, int H)
{
	(void)H;
	return 2 * blur_half(sigma, W) + 1;
}

/* torchvision's _get_gaussian_kernel1d in float32. */
static void gauss_kernel(float *k, int half, double sigma)
{
	float s = (float)sigma, sum = 0.0f;
	int n = 2 * half + 1;

	for (int i = 0; i < n; i++) {
		float x = (float)(i - half) / s;

		k[i] = expf(-0.5f * (x * x));
		sum += k[i];
	}
	for (int i = 0; i < n; i++)
		k[i] /= sum;
}

/* torch's "reflect" padding index (edge not repeated). */
static inline int reflect(int i, int n)
{
	if (n == 1)
		return 0;
	while (i < 0 || i >= n)
		i = i < 0 ? -i : 2 * (n - 1) - i;
	return i;
}

/* o[i] += k * s[i]: the one loop both passes spend their time in (the
 * AVX2 clone vectorises it 8 wide; same sums in the same order). */
IMGOP_CLONES
static void axpy(float *restrict o, const float *restrict s, float k, size_t n)
{
	for (size_t i = 0; i < n; i++)
		o[i] += k * s[i];
}

/*
 * Separable: a horizontal pass into float rows, then a vertical pass,
 * rounded half to even. torch convolves with the 2-D outer product in
 * one sum; the two orders differ by a few float32 ulps, which changes a
 * rounded value only when it sits within ~1e-4 of a .5 (then by one).
 * Each pass accumulates tap by tap over a whole row (a reflect-padded
 * float copy for the horizontal one), so the inner loop is contiguous.
 */
int imgop_gaussian_blur(uint8_t *img, int W, int H, size_t stride,
			double sigma, uint8_t *scratch)
{
	int hx = blur_half(sigma, W), hy = blur_half(sigma, H);
	size_t row = (size_t)W * 3;
	float *tmp = (float *)imgop_align(scratch);
	float *kx = (float *)imgop_align((uint8_t *)(tmp + row * (size_t)H));
	float *ky = (float *)imgop_align((uint8_t *)(kx + 2 * hx + 1));
	/* the padded row (W + 2 hx <= 3 W pixels), later the vertical sums */
	float *buf = (float *)imgop_align((uint8_t *)(ky + 2 * hy + 1));

	gauss_kernel(kx, hx, sigma);
	gauss_kernel(ky, hy, sigma);
	for (int y = 0; y < H; y++) {
		const uint8_t *p = img + (size_t)y * stride;
		float *o = tmp + (size_t)y * row;

		for (int x = -hx; x < W + hx; x++) {
			const uint8_t *q = p + (size_t)reflect(x, W) * 3;
			float *d = buf + (size_t)(x + hx) * 3;

			d[0] = q[0];
			d[1] = q[1];
			d[2] = q[2];
		}
		memset(o, 0, row * sizeof(float));
		for (int j = 0; j <= 2 * hx; j++)
			axpy(o, buf + (size_t)j * 3, kx[j], row);
	}
	for (int y = 0; y < H; y++) {
		uint8_t *o = img + (size_t)y * stride;

		memset(buf, 0, row * sizeof(float));
		for (int j = -hy; j <= hy; j++)
			axpy(buf, tmp + (size_t)reflect(y + j, H) * row, ky[j + hy], row);
		for (size_t i = 0; i < row; i++)
			o[i] = round_u8(buf[i]);
	}
	return 0;
}
