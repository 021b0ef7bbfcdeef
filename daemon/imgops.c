/*
 * imgops.c — the point and colour ops of imgops.h, with torchvision
 * 0.14's tensor arithmetic reproduced step by step in float32 (see
 * docs/AUGMENTATIONS.md, "Image operations"). The geometric ops and the
 * Gaussian blur are in imgops_geom.c.
 *
 * Exactness: torchvision computes e.g. _blend as
 *   (f32(ratio) * img1 + f32(1 - ratio) * img2).clamp(0, 255).to(uint8)
 * i.e. two float32 products, one float32 sum, clamp, truncation. The
 * blends here do those very operations (vectorised rows); the ops that
 * depend on the value only (Solarize, AutoContrast, Equalize, ...) build
 * a 256-entry table with torch's arithmetic. Either way the result is
 * bit-identical, not merely close. Only the Contrast mean of a huge image (more than 2^24 /
 * 255 pixels, where torch's float32 sum is no longer exact) can differ, by
 * one unit of the sum's last place.
 *
 * Threads: no state outside the call (tables on the stack, working
 * buffers in the caller's scratch), so any number of workers may call
 * imgop_apply at once, each with its own scratch.
 */
#include "imgops.h"
#include "imgops_int.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

static const char *const op_names[IMGOP_COUNT] = {
	[IMGOP_IDENTITY] = "Identity",
	[IMGOP_SHEAR_X] = "ShearX",
	[IMGOP_SHEAR_Y] = "ShearY",
	[IMGOP_TRANSLATE_X] = "TranslateX",
	[IMGOP_TRANSLATE_Y] = "TranslateY",
	[IMGOP_ROTATE] = "Rotate",
	[IMGOP_BRIGHTNESS] = "Brightness",
	[IMGOP_COLOR] = "Color",
	[IMGOP_CONTRAST] = "Contrast",
	[IMGOP_SHARPNESS] = "Sharpness",
	[IMGOP_POSTERIZE] = "Posterize",
	[IMGOP_SOLARIZE] = "Solarize",
	[IMGOP_AUTOCONTRAST] = "AutoContrast",
	[IMGOP_EQUALIZE] = "Equalize",
	[IMGOP_INVERT] = "Invert",
	[IMGOP_HUE] = "Hue",
	[IMGOP_SOLARIZE_ADD] = "SolarizeAdd",
	[IMGOP_GRAYSCALE] = "Grayscale",
	[IMGOP_GAUSSIAN_BLUR] = "GaussianBlur",
};

const char *imgop_name(unsigned op)
{
	return op < IMGOP_COUNT ? op_names[op] : NULL;
}

/*
 * Scratch: the largest user is the Gaussian blur (one float per sample,
 * its two kernels and a float row); the affine warp needs a copy of the
 * image and two float tables of W, Sharpness a copy of the image.
 */
size_t imgop_scratch_bytes(int W, int H)
{
	size_t w = W > 0 ? (size_t)W : 1, h = H > 0 ? (size_t)H : 1;

	/* blur: float image + two kernels (< 2w, < 2h) + a padded float row
	 * (< 3w pixels) */
	return (w * h * 3 + 11 * w + 2 * h + 16) * sizeof(float) + 8 * IMGOP_ALIGN;
}

/* ---- helpers -------------------------------------------------------- */

/* torch's .clamp(0, 255).to(uint8) of a float32. */
static inline uint8_t clamp_trunc(float v)
{
	/* selects, not branches (maxss/minss) */
	v = v > 0.0f ? v : 0.0f;
	v = v < 255.0f ? v : 255.0f;
	return (uint8_t)(int)v;
}

/* Apply one 256-entry table to every byte of the image. */
static void apply_lut(uint8_t *img, int W, int H, size_t stride,
		      const uint8_t lut[256])
{
	for (int y = 0; y < H; y++) {
		uint8_t *p = img + (size_t)y * stride;

		for (int i = 0; i < 3 * W; i++)
			p[i] = lut[p[i]];
	}
}

/* Per-channel tables (R, G, B). */
static void apply_lut3(uint8_t *img, int W, int H, size_t stride,
		       uint8_t lut[3][256])
{
	for (int y = 0; y < H; y++) {
		uint8_t *p = img + (size_t)y * stride;

		for (int x = 0; x < W; x++, p += 3) {
			p[0] = lut[0][p[0]];
			p[1] = lut[1][p[1]];
			p[2] = lut[2][p[2]];
		}
	}
}

/*
 * The blends as straight float32 arithmetic over a row of bytes
 * (vectorised): f32(fa) * x is exactly the product torch forms, then the
 * same sum, clamp and truncation. blend_row: fa * x[i] + fb * y[i]
 * (blend_inplace with x = out); blend_const_row: fa * x[i] + off.
 */
IMGOP_CLONES
static void blend_row(uint8_t *restrict out, const uint8_t *restrict x,
		      const uint8_t *restrict y, size_t n, float fa, float fb)
{
	for (size_t i = 0; i < n; i++)
		out[i] = clamp_trunc(fa * (float)x[i] + fb * (float)y[i]);
}

IMGOP_CLONES
static void blend_inplace(uint8_t *p, const uint8_t *restrict y, size_t n,
			  float fa, float fb)
{
	for (size_t i = 0; i < n; i++)
		p[i] = clamp_trunc(fa * (float)p[i] + fb * (float)y[i]);
}

IMGOP_CLONES
static void blend_const_row(uint8_t *p, size_t n, float fa, float off)
{
	for (size_t i = 0; i < n; i++)
		p[i] = clamp_trunc(fa * (float)p[i] + off);
}

/* rgb_to_grayscale of a row, spread to the three channels of g3. */
IMGOP_CLONES
static void gray_row(const uint8_t *restrict p, uint8_t *restrict g3, int W)
{
	const float cr = 0.2989f, cg = 0.587f, cb = 0.114f;

	for (int x = 0; x < W; x++) {
		uint8_t g = (uint8_t)(int)((cr * (float)p[3 * x] + cg * (float)p[3 * x + 1]) +
					   cb * (float)p[3 * x + 2]);

		g3[3 * x] = g3[3 * x + 1] = g3[3 * x + 2] = g;
	}
}

/* f32(c) * v for v = 0..255: torch's `c * uint8_tensor`. */
static void product_table(float t[256], double c)
{
	float cf = (float)c;

	for (int v = 0; v < 256; v++)
		t[v] = cf * (float)v;
}

/* The three weighted channels of rgb_to_grayscale (built per call, on the
 * stack: 768 products, and no shared state between worker threads). */
struct gray {
	float r[256], g[256], b[256];
};

static void gray_tables(struct gray *t)
{
	product_table(t->r, 0.2989);
	product_table(t->g, 0.587);
	product_table(t->b, 0.114);
}

/* (0.2989 * r + 0.587 * g + 0.114 * b).to(uint8), summed left to right. */
static inline uint8_t gray_of(const struct gray *t, const uint8_t *p)
{
	return (uint8_t)((t->r[p[0]] + t->g[p[1]]) + t->b[p[2]]);
}

static int check_factor(double magnitude)
{
	/* torchvision raises for a factor (1 + magnitude) below 0. */
	if (!isfinite(magnitude) || 1.0 + magnitude < 0.0)
		return -EINVAL;
	return 0;
}

/* ---- point ops ------------------------------------------------------ */

static void op_invert(uint8_t *img, int W, int H, size_t stride)
{
	for (int y = 0; y < H; y++) {
		uint8_t *p = img + (size_t)y * stride;

		for (int i = 0; i < 3 * W; i++)
			p[i] = (uint8_t)(255 - p[i]);
	}
}

static void op_posterize(uint8_t *img, int W, int H, size_t stride, int bits)
{
	/* img & -int(2 ** (8 - bits)) */
	uint8_t mask = (uint8_t)(0xFF00u >> bits);

	for (int y = 0; y < H; y++) {
		uint8_t *p = img + (size_t)y * stride;

		for (int i = 0; i < 3 * W; i++)
			p[i] &= mask;
	}
}

static void op_solarize(uint8_t *img, int W, int H, size_t stride, double thr)
{
	uint8_t lut[256];
	float t = (float)thr;

	/* torch.where(img >= threshold, 255 - img, img), compared in float. */
	for (int v = 0; v < 256; v++)
		lut[v] = (float)v >= t ? (uint8_t)(255 - v) : (uint8_t)v;
	apply_lut(img, W, H, stride, lut);
}

static void op_solarize_add(uint8_t *img, int W, int H, size_t stride, double add)
{
	uint8_t lut[256];

	/* timm: i + add below 128, clipped (timm's add is an integer; a
	 * fraction is truncated after clipping, as a tensor's .to(uint8)). */
	for (int v = 0; v < 256; v++) {
		double r = v < 128 ? v + add : v;

		lut[v] = r <= 0.0 ? 0 : r >= 255.0 ? 255 : (uint8_t)r;
	}
	apply_lut(img, W, H, stride, lut);
}

/* _blend(img, zeros, f): f * x + (1 - f) * 0, and adding a zero changes
 * no sum that survives the clamp. */
static void op_brightness(uint8_t *img, int W, int H, size_t stride, double f)
{
	for (int y = 0; y < H; y++)
		blend_const_row(img + (size_t)y * stride, (size_t)W * 3, (float)f, 0.0f);
}

static void op_grayscale(uint8_t *img, int W, int H, size_t stride)
{
	struct gray t;

	gray_tables(&t);
	for (int y = 0; y < H; y++) {
		uint8_t *p = img + (size_t)y * stride;

		for (int x = 0; x < W; x++, p += 3)
			p[0] = p[1] = p[2] = gray_of(&t, p);
	}
}

/* _blend(img, rgb_to_grayscale(img), f) */
static void op_color(uint8_t *img, int W, int H, size_t stride, double f,
		     uint8_t *scratch)
{
	uint8_t *g3 = imgop_align(scratch);

	for (int y = 0; y < H; y++) {
		uint8_t *p = img + (size_t)y * stride;

		gray_row(p, g3, W);
		blend_inplace(p, g3, (size_t)W * 3, (float)f, (float)(1.0 - f));
	}
}

/* _blend(img, mean(rgb_to_grayscale(img).float()), f) */
static void op_contrast(uint8_t *img, int W, int H, size_t stride, double f)
{
	uint64_t sum = 0;
	float mean, off;
	struct gray t;

	gray_tables(&t);
	for (int y = 0; y < H; y++) {
		const uint8_t *p = img + (size_t)y * stride;

		for (int x = 0; x < W; x++, p += 3)
			sum += gray_of(&t, p);
	}
	/* torch: float32 sum (exact below 2^24) divided by the count. */
	mean = (float)sum / (float)((uint64_t)W * (uint64_t)H);
	off = (float)(1.0 - f) * mean;
	for (int y = 0; y < H; y++)
		blend_const_row(img + (size_t)y * stride, (size_t)W * 3, (float)f, off);
}

/*
 * _blend(img, blurred, f), blurred = the 3x3 kernel [1 1 1; 1 5 1; 1 1 1]
 * / 13 in float32, rounded, on the interior; the border rows and columns
 * keep the original (and still go through the blend). The float sum
 * (S + 5c) / 13 is k / 13 for an integer k, at least 1/26 away from a
 * rounding tie, so integer rounding gives torch's round() exactly.
 */
static void op_sharpness(uint8_t *img, int W, int H, size_t stride, double f,
			 uint8_t *scratch)
{
	size_t row = (size_t)W * 3, n = row - 3;
	uint8_t *src = imgop_align(scratch);
	uint8_t *blur = imgop_align(src + row * (size_t)H);

	if (W <= 2 || H <= 2)
		return; /* torchvision returns such images unchanged */
	for (int y = 0; y < H; y++)
		memcpy(src + (size_t)y * row, img + (size_t)y * stride, row);
	for (int y = 0; y < H; y++) {
		const uint8_t *s = src + (size_t)y * row;
		uint8_t *p = img + (size_t)y * stride;

		memcpy(blur, s, row);
		if (y > 0 && y < H - 1) {
			const uint8_t *u = s - row, *d = s + row;

			for (size_t i = 3; i < n; i++) {
				int k = u[i - 3] + u[i] + u[i + 3] + s[i - 3] + 5 * s[i] +
					s[i + 3] + d[i - 3] + d[i] + d[i + 3];

				blur[i] = (uint8_t)((2 * k + 13) / 26);
			}
		}
		blend_row(p, s, blur, row, (float)f, (float)(1.0 - f));
	}
}

static void op_autocontrast(uint8_t *img, int W, int H, size_t stride)
{
	uint8_t lo[3] = { 255, 255, 255 }, hi[3] = { 0, 0, 0 };
	uint8_t lut[3][256];

	for (int y = 0; y < H; y++) {
		const uint8_t *p = img + (size_t)y * stride;

		for (int x = 0; x < W; x++, p += 3)
			for (int c = 0; c < 3; c++) {
				lo[c] = p[c] < lo[c] ? p[c] : lo[c];
				hi[c] = p[c] > hi[c] ? p[c] : hi[c];
			}
	}
	for (int c = 0; c < 3; c++) {
		/* scale = 255 / (max - min); a flat channel (inf scale) uses
		 * min 0, scale 1: unchanged. */
		float mn = lo[c], scale = 1.0f;

		if (hi[c] != lo[c])
			scale = 255.0f / ((float)hi[c] - (float)lo[c]);
		else
			mn = 0.0f;
		for (int v = 0; v < 256; v++)
			lut[c][v] = clamp_trunc(((float)v - mn) * scale);
	}
	apply_lut3(img, W, H, stride, lut);
}

/* torchvision's _scale_channel: histogram, step = (sum of the non-zero
 * bins but the last) // 255, lut = (cumsum + step // 2) // step shifted
 * right by one; step 0 leaves the channel unchanged. */
static void equalize_lut(const uint64_t hist[256], uint8_t lut[256])
{
	uint64_t total = 0, last = 0, step, cum = 0;

	for (int v = 0; v < 256; v++) {
		total += hist[v];
		if (hist[v])
			last = hist[v];
	}
	step = (total - last) / 255;
	for (int v = 0; v < 256; v++)
		lut[v] = (uint8_t)v;
	if (step == 0)
		return;
	lut[0] = 0;
	for (int v = 0; v < 255; v++) {
		uint64_t l;

		cum += hist[v];
		l = (cum + step / 2) / step;
		lut[v + 1] = l > 255 ? 255 : (uint8_t)l;
	}
}

static void op_equalize(uint8_t *img, int W, int H, size_t stride)
{
	uint64_t hist[3][256];
	uint8_t lut[3][256];

	memset(hist, 0, sizeof(hist));
	for (int y = 0; y < H; y++) {
		const uint8_t *p = img + (size_t)y * stride;

		for (int x = 0; x < W; x++, p += 3) {
			hist[0][p[0]]++;
			hist[1][p[1]]++;
			hist[2][p[2]]++;
		}
	}
	for (int c = 0; c < 3; c++)
		equalize_lut(hist[c], lut[c]);
	apply_lut3(img, W, H, stride, lut);
}

/* ---- hue ------------------------------------------------------------ */

static inline float maxf(float a, float b) { return a > b ? a : b; }
static inline float minf(float a, float b) { return a < b ? a : b; }
static inline float clamp01(float a) { return minf(maxf(a, 0.0f), 1.0f); }

/*
 * F.adjust_hue on n pixels held as float planes r, g, b (x / 255), in
 * place: torchvision's _rgb2hsv, h = (h + factor) mod 1
 * (torch.remainder), _hsv2rgb. Each float32 operation is the one torch
 * does, in the same order; the branches are selects so the loop
 * vectorises. Two of torch's steps are rewritten with the same result:
 * fmod(h / 6 + 1, 1) on [5/6, 11/6) is "x >= 1 ? x - 1 : x" (exact by
 * Sterbenz), and the remainder of h + factor in [-0.5, 1.5) is the same
 * subtraction or torch's "+ 1" for a negative fmod; floor(h * 6) of a
 * non-negative value is a truncation.
 */
IMGOP_CLONES
static void hue_planes(float *restrict r, float *restrict g, float *restrict b,
		       int n, float hf)
{
	for (int k = 0; k < n; k++) {
		float R = r[k], G = g[k], B = b[k];
		float maxc = maxf(R, maxf(G, B)), minc = minf(R, minf(G, B));
		int eqc = maxc == minc;
		float cr = maxc - minc;
		float s = cr / (eqc ? 1.0f : maxc);
		float crd = eqc ? 1.0f : cr;
		float rc = (maxc - R) / crd, gc = (maxc - G) / crd, bc = (maxc - B) / crd;
		/* every candidate computed, then selected: float ops inside a
		 * branch could trap, which stops if-conversion */
		float hr = bc - gc, hg = (2.0f + rc) - bc, hb = (4.0f + gc) - rc;
		float h = maxc == R ? hr : maxc == G ? hg : hb;
		float f, v = maxc, p, q, t, hm, hp;
		int i;

		h = h / 6.0f + 1.0f;
		hm = h - 1.0f;
		h = h >= 1.0f ? hm : h;
		h = h + hf;
		hm = h - 1.0f;
		hp = h + 1.0f;
		h = h >= 1.0f ? hm : h < 0.0f ? hp : h;
		f = h * 6.0f;
		i = (int)f;
		f = f - (float)i;
		i = i >= 6 ? i - 6 : i;
		p = clamp01(v * (1.0f - s));
		q = clamp01(v * (1.0f - s * f));
		t = clamp01(v * (1.0f - s * (1.0f - f)));
		r[k] = i == 0 || i == 5 ? v : i == 1 ? q : i == 4 ? t : p;
		g[k] = i == 0 ? t : i == 1 || i == 2 ? v : i == 3 ? q : p;
		b[k] = i <= 1 ? p : i == 2 ? t : i == 5 ? q : v;
	}
}

static void op_hue(uint8_t *img, int W, int H, size_t stride, double factor,
		   uint8_t *scratch)
{
	float hf = (float)factor, unit[256];
	float *r = (float *)imgop_align(scratch);
	float *g = (float *)imgop_align((uint8_t *)(r + W));
	float *b = (float *)imgop_align((uint8_t *)(g + W));

	for (int v = 0; v < 256; v++)
		unit[v] = (float)v / 255.0f;
	for (int y = 0; y < H; y++) {
		uint8_t *p = img + (size_t)y * stride;

		for (int x = 0; x < W; x++) {
			r[x] = unit[p[3 * x]];
			g[x] = unit[p[3 * x + 1]];
			b[x] = unit[p[3 * x + 2]];
		}
		hue_planes(r, g, b, W, hf);
		/* (img * 255).to(uint8): in [0, 255], truncated */
		for (int x = 0; x < W; x++) {
			p[3 * x] = (uint8_t)(int)(r[x] * 255.0f);
			p[3 * x + 1] = (uint8_t)(int)(g[x] * 255.0f);
			p[3 * x + 2] = (uint8_t)(int)(b[x] * 255.0f);
		}
	}
}

/* ---- dispatch ------------------------------------------------------- */

static int check_args(const uint8_t *img, int W, int H, size_t stride,
		      const struct imgop_args *a, const uint8_t *scratch)
{
	double m;

	if (!img || !a || !scratch || W <= 0 || H <= 0 ||
	    W > (1 << 24) || H > (1 << 24) || stride < (size_t)W * 3 ||
	    a->op >= IMGOP_COUNT || a->interp > IMGOP_BILINEAR)
		return -EINVAL;
	m = a->magnitude;
	switch (a->op) {
	case IMGOP_BRIGHTNESS:
	case IMGOP_COLOR:
	case IMGOP_CONTRAST:
	case IMGOP_SHARPNESS:
		return check_factor(m);
	case IMGOP_POSTERIZE:
		/* int(magnitude) must be 0..8 bits */
		return isfinite(m) && m > -1.0 && m < 9.0 ? 0 : -EINVAL;
	case IMGOP_SOLARIZE:
		/* torchvision: "Threshold should be less than bound of img" */
		return !isnan(m) && m <= 255.0 ? 0 : -EINVAL;
	case IMGOP_HUE:
		return m >= -0.5 && m <= 0.5 ? 0 : -EINVAL;
	case IMGOP_SOLARIZE_ADD:
		return isfinite(m) ? 0 : -EINVAL;
	case IMGOP_GAUSSIAN_BLUR:
		return isfinite(m) && m > 0.0 && m <= 64.0 ? 0 : -EINVAL;
	case IMGOP_SHEAR_X:
	case IMGOP_SHEAR_Y:
	case IMGOP_ROTATE:
		return isfinite(m) && fabs(m) <= 1e6 ? 0 : -EINVAL;
	case IMGOP_TRANSLATE_X:
	case IMGOP_TRANSLATE_Y:
		return isfinite(m) && fabs(m) <= 1e7 ? 0 : -EINVAL;
	default:
		return 0;
	}
}

int imgop_apply(uint8_t *img, int W, int H, size_t stride,
		const struct imgop_args *a, uint8_t *scratch)
{
	int rc = check_args(img, W, H, stride, a, scratch);
	double m;

	if (rc < 0)
		return rc;
	m = a->magnitude;
	switch (a->op) {
	case IMGOP_IDENTITY:
		return 0;
	case IMGOP_SHEAR_X:
	case IMGOP_SHEAR_Y:
	case IMGOP_TRANSLATE_X:
	case IMGOP_TRANSLATE_Y:
	case IMGOP_ROTATE:
		return imgop_affine(img, W, H, stride, a, scratch);
	case IMGOP_BRIGHTNESS:
		op_brightness(img, W, H, stride, 1.0 + m);
		return 0;
	case IMGOP_COLOR:
		op_color(img, W, H, stride, 1.0 + m, scratch);
		return 0;
	case IMGOP_CONTRAST:
		op_contrast(img, W, H, stride, 1.0 + m);
		return 0;
	case IMGOP_SHARPNESS:
		op_sharpness(img, W, H, stride, 1.0 + m, scratch);
		return 0;
	case IMGOP_POSTERIZE:
		op_posterize(img, W, H, stride, (int)m);
		return 0;
	case IMGOP_SOLARIZE:
		op_solarize(img, W, H, stride, m);
		return 0;
	case IMGOP_AUTOCONTRAST:
		op_autocontrast(img, W, H, stride);
		return 0;
	case IMGOP_EQUALIZE:
		op_equalize(img, W, H, stride);
		return 0;
	case IMGOP_INVERT:
		op_invert(img, W, H, stride);
		return 0;
	case IMGOP_HUE:
		op_hue(img, W, H, stride, m, scratch);
		return 0;
	case IMGOP_SOLARIZE_ADD:
		op_solarize_add(img, W, H, stride, m);
		return 0;
	case IMGOP_GRAYSCALE:
		op_grayscale(img, W, H, stride);
		return 0;
	case IMGOP_GAUSSIAN_BLUR:
		return imgop_gaussian_blur(img, W, H, stride, m, scratch);
	default:
		return -EINVAL;
	}
}
