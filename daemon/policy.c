/*
 * policy.c — auto_augment, ColorJitter and RandomErasing choices (see
 * policy.h and docs/AUGMENTATIONS.md). The magnitude mappings are timm's
 * (RandAugment) or torchvision's (TrivialAugmentWide, AutoAugment), each
 * converted to the argument torchvision's _apply_op takes, so that the
 * recorded op replays with torchvision.
 */
#include "policy.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- parsing ------------------------------------------------------------ */

static int why_fail(char *why, size_t n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int why_fail(char *why, size_t n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, n, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static bool parse_num(const char *s, double *out)
{
	char *end;

	if (!*s)
		return false;
	*out = strtod(s, &end);
	return *end == '\0' && isfinite(*out);
}

/* One "-KEYvalue" section of a rand- string. */
static int parse_rand_section(const char *sec, struct aa_spec *a, bool *have_m,
			      char *why, size_t n)
{
	static const char *const keys[] = { "mstd", "mmax", "inc", "m", "n", "p" };
	double v;

	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
		size_t len = strlen(keys[k]);

		if (strncmp(sec, keys[k], len))
			continue;
		if (!parse_num(sec + len, &v))
			return why_fail(why, n, "section '%s' needs a number", sec);
		switch (k) {
		case 0: /* mstd */
			if (v < 0)
				return why_fail(why, n, "'%s': mstd must be >= 0", sec);
			a->mstd = v;
			return 0;
		case 1: /* mmax */
			if (v <= 0)
				return why_fail(why, n, "'%s': mmax must be > 0", sec);
			a->mmax = v;
			return 0;
		case 2: /* inc */
			if (v != 0 && v != 1)
				return why_fail(why, n, "'%s': inc must be 0 or 1", sec);
			a->inc = v == 1;
			return 0;
		case 4: /* n */
			if (v != floor(v) || v < 1 || v > POLICY_MAX_OPS)
				return why_fail(why, n, "'%s': n must be 1..8", sec);
			a->n = (uint32_t)v;
			return 0;
		case 5: /* p */
			if (v < 0 || v > 1)
				return why_fail(why, n, "'%s': p must be 0..1", sec);
			a->p = v;
			return 0;
		default: /* m */
			if (v < 0)
				return why_fail(why, n, "'%s': m must be >= 0", sec);
			a->m = v;
			*have_m = true;
			return 0;
		}
	}
	return why_fail(why, n, "unknown section '%s' (rand- takes m, n, mstd, "
			"mmax, inc, p)", sec);
}

int policy_parse_aa(const char *text, struct aa_spec *out, char *why, size_t n)
{
	struct aa_spec a = { .kind = AA_RAND, .n = 2, .mmax = 10, .p = 0.5 };
	char buf[CONFIG_TEXT_MAX], *save = NULL, *tok;
	bool have_m = false;

	memset(out, 0, sizeof(*out));
	if (!strcmp(text, "none") || !strcmp(text, "") || !strcmp(text, "0"))
		return 0;
	if (!strcmp(text, "ta_wide")) {
		out->kind = AA_TA_WIDE;
		return 0;
	}
	if (!strcmp(text, "original")) {
		out->kind = AA_ORIGINAL;
		return 0;
	}
	if (!strcmp(text, "v0")) {
		out->kind = AA_V0;
		return 0;
	}
	if (!strcmp(text, "3a")) {
		out->kind = AA_3A;
		return 0;
	}
	if (strncmp(text, "rand-", 5) || strlen(text) >= sizeof(buf))
		return why_fail(why, n, "must be rand-m{M}[-n{N}][-mstd{S}][-mmax{X}]"
				"[-inc{0|1}][-p{P}], ta_wide, original, v0, 3a or none");
	strcpy(buf, text + 5);
	for (tok = strtok_r(buf, "-", &save); tok; tok = strtok_r(NULL, "-", &save)) {
		int rc = parse_rand_section(tok, &a, &have_m, why, n);
		if (rc)
			return rc;
	}
	if (!have_m)
		return why_fail(why, n, "rand- needs a magnitude section m{M}");
	*out = a;
	return 0;
}

int policy_parse_jitter(const char *text, double out[4], char *why, size_t n)
{
	char buf[CONFIG_TEXT_MAX], *save = NULL, *tok;
	double v[4] = { 0 };
	int k = 0;

	memset(out, 0, 4 * sizeof(double));
	if (strlen(text) >= sizeof(buf))
		return why_fail(why, n, "too long");
	strcpy(buf, text);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (k == 4 || !parse_num(tok, &v[k]) || v[k] < 0)
			return why_fail(why, n, "must be F or B,C,S[,H] with numbers >= 0");
		k++;
	}
	if (k == 1) {
		v[1] = v[2] = v[0];
	} else if (k != 3 && k != 4) {
		return why_fail(why, n, "must be F or B,C,S[,H] with numbers >= 0");
	}
	if (v[3] > 0.5)
		return why_fail(why, n, "hue must be 0..0.5");
	memcpy(out, v, sizeof(v));
	return 0;
}

/* ---- op choices --------------------------------------------------------- */

/* timm's RandAugment op names (auto_augment.py _RAND_TRANSFORMS and
 * _RAND_INCREASING_TRANSFORMS, same order). */
enum timm_op {
	T_AUTOCONTRAST, T_EQUALIZE, T_INVERT, T_ROTATE, T_POSTERIZE,
	T_POSTERIZE_INC, T_SOLARIZE, T_SOLARIZE_INC, T_SOLARIZE_ADD, T_COLOR,
	T_COLOR_INC, T_CONTRAST, T_CONTRAST_INC, T_BRIGHTNESS, T_BRIGHTNESS_INC,
	T_SHARPNESS, T_SHARPNESS_INC, T_SHEAR_X, T_SHEAR_Y, T_TRANSLATE_X_REL,
	T_TRANSLATE_Y_REL,
};

static const uint8_t rand_ops[15] = {
	T_AUTOCONTRAST, T_EQUALIZE, T_INVERT, T_ROTATE, T_POSTERIZE, T_SOLARIZE,
	T_SOLARIZE_ADD, T_COLOR, T_CONTRAST, T_BRIGHTNESS, T_SHARPNESS,
	T_SHEAR_X, T_SHEAR_Y, T_TRANSLATE_X_REL, T_TRANSLATE_Y_REL,
};
static const uint8_t rand_inc_ops[15] = {
	T_AUTOCONTRAST, T_EQUALIZE, T_INVERT, T_ROTATE, T_POSTERIZE_INC,
	T_SOLARIZE_INC, T_SOLARIZE_ADD, T_COLOR_INC, T_CONTRAST_INC,
	T_BRIGHTNESS_INC, T_SHARPNESS_INC, T_SHEAR_X, T_SHEAR_Y,
	T_TRANSLATE_X_REL, T_TRANSLATE_Y_REL,
};

void policy_fill(const struct pipeline_cfg *p, uint8_t fill[3])
{
	for (int c = 0; c < 3; c++)
		fill[c] = p->aa_fill == FILL_MEAN ? (uint8_t)fmin(255, nearbyint(p->mean[c] * 255))
						  : p->aa_fill_value;
}

static double negate_maybe(rng_t *r, double v)
{
	/* timm _randomly_negate: -v if random() > 0.5 */
	return rng_uniform(r) > 0.5 ? -v : v;
}

/*
 * timm's level-to-argument mapping for `level` (0..10), converted to the
 * torchvision _apply_op op and argument: enhance factors f become f - 1,
 * relative translations become pixels of this image.
 */
static void timm_arg(enum timm_op t, double level, rng_t *r, int W, int H,
		     struct imgop_args *o)
{
	const double x = level / 10.0;

	o->magnitude = 0;
	switch (t) {
	case T_AUTOCONTRAST: o->op = IMGOP_AUTOCONTRAST; break;
	case T_EQUALIZE: o->op = IMGOP_EQUALIZE; break;
	case T_INVERT: o->op = IMGOP_INVERT; break;
	case T_ROTATE:
		o->op = IMGOP_ROTATE;
		o->magnitude = negate_maybe(r, x * 30.0);
		break;
	case T_POSTERIZE:
		o->op = IMGOP_POSTERIZE;
		o->magnitude = (int)(x * 4);
		break;
	case T_POSTERIZE_INC:
		o->op = IMGOP_POSTERIZE;
		o->magnitude = 4 - (int)(x * 4);
		break;
	case T_SOLARIZE:
		o->op = IMGOP_SOLARIZE;
		o->magnitude = (int)(x * 256);
		break;
	case T_SOLARIZE_INC:
		o->op = IMGOP_SOLARIZE;
		o->magnitude = 256 - (int)(x * 256);
		break;
	case T_SOLARIZE_ADD:
		o->op = IMGOP_SOLARIZE_ADD;
		o->magnitude = (int)(x * 110);
		break;
	case T_COLOR: case T_CONTRAST: case T_BRIGHTNESS: case T_SHARPNESS:
		o->op = t == T_COLOR ? IMGOP_COLOR : t == T_CONTRAST ? IMGOP_CONTRAST :
			t == T_BRIGHTNESS ? IMGOP_BRIGHTNESS : IMGOP_SHARPNESS;
		o->magnitude = (x * 1.8 + 0.1) - 1.0; /* factor in [0.1, 1.9] */
		break;
	case T_COLOR_INC: case T_CONTRAST_INC: case T_BRIGHTNESS_INC:
	case T_SHARPNESS_INC:
		o->op = t == T_COLOR_INC ? IMGOP_COLOR : t == T_CONTRAST_INC ? IMGOP_CONTRAST :
			t == T_BRIGHTNESS_INC ? IMGOP_BRIGHTNESS : IMGOP_SHARPNESS;
		/* factor max(0.1, 1 +- 0.9x) (timm keeps it >= 0.1 for mmax > 10) */
		o->magnitude = fmax(0.1, 1.0 + negate_maybe(r, x * 0.9)) - 1.0;
		break;
	case T_SHEAR_X: case T_SHEAR_Y:
		o->op = t == T_SHEAR_X ? IMGOP_SHEAR_X : IMGOP_SHEAR_Y;
		o->magnitude = negate_maybe(r, x * 0.3);
		break;
	case T_TRANSLATE_X_REL:
		o->op = IMGOP_TRANSLATE_X;
		o->magnitude = negate_maybe(r, x * 0.45) * W;
		break;
	case T_TRANSLATE_Y_REL:
		o->op = IMGOP_TRANSLATE_Y;
		o->magnitude = negate_maybe(r, x * 0.45) * H;
		break;
	}
}

/* timm RandAugment: N ops uniform with replacement, then per op: skip
 * unless U <= p (timm: skip when random() > p), magnitude ~ N(m, mstd)
 * (uniform(0, m) when mstd > 100, timm's "inf"), clipped to [0, mmax],
 * then the op's own sign draw. */
static int sample_rand(const struct aa_spec *a, rng_t *r, int W, int H,
		       struct imgop_args *ops)
{
	const uint8_t *list = a->inc ? rand_inc_ops : rand_ops;
	uint32_t pick[POLICY_MAX_OPS];
	int k = 0;

	for (uint32_t i = 0; i < a->n; i++)
		pick[i] = rng_below(r, 15);
	for (uint32_t i = 0; i < a->n; i++) {
		if (a->p < 1.0 && rng_uniform(r) > a->p)
			continue;
		double mag = a->m;
		if (a->mstd > 100) {
			mag = rng_uniform(r) * a->m;
		} else if (a->mstd > 0) {
			/* Box–Muller, one normal per op */
			double u1 = 1.0 - rng_uniform(r), u2 = rng_uniform(r);
			mag = a->m + a->mstd * sqrt(-2.0 * log(u1)) * cos(2 * M_PI * u2);
		}
		mag = fmax(0.0, fmin(mag, a->mmax));
		ops[k].interp = IMGOP_BILINEAR;
		timm_arg((enum timm_op)list[pick[i]], mag, r, W, H, &ops[k]);
		k++;
	}
	return k;
}

/*
 * torch.linspace(a, b, steps)[i] in float32, as torch 1.13's CPU kernel
 * computes it on an AVX2 machine (the values it prints; test_policy.c pins
 * them): step = (b - a) / (steps - 1) in float; whole blocks of 16 go
 * through two 8-lane vectors, lane k = base + k * step with one base per
 * vector (computed like the scalar rule, for the vector's first index);
 * the rest uses the scalar rule a + step * i below the half-way index and
 * b - step * (steps - 1 - i) from it, as fused multiply-adds.
 */
static double linspace_f(double a, double b, int steps, int i)
{
	float fa = (float)a, fb = (float)b;
	float step = (fb - fa) / (float)(steps - 1);
	int half = steps / 2;
	int vec_end = steps >= 16 ? ((steps - 16) / 16 + 1) * 16 : 0;

	if (i < vec_end) {
		int i0 = i / 8 * 8;
		float base = i0 < half ? fmaf(step, (float)i0, fa)
				       : fmaf(-step, (float)(steps - i0 - 1), fb);
		volatile float kstep = (float)(i - i0) * step; /* not fused */
		return (float)(base + kstep);
	}
	if (i < half)
		return fmaf(step, (float)i, fa);
	return fmaf(-step, (float)(steps - 1 - i), fb);
}

/* torchvision TrivialAugmentWide (31 bins): op uniform of 14, bin uniform
 * of 31, sign from one more draw for signed ops; interpolation nearest. */
static int sample_ta_wide(rng_t *r, struct imgop_args *o)
{
	static const uint8_t ops[14] = {
		IMGOP_IDENTITY, IMGOP_SHEAR_X, IMGOP_SHEAR_Y, IMGOP_TRANSLATE_X,
		IMGOP_TRANSLATE_Y, IMGOP_ROTATE, IMGOP_BRIGHTNESS, IMGOP_COLOR,
		IMGOP_CONTRAST, IMGOP_SHARPNESS, IMGOP_POSTERIZE, IMGOP_SOLARIZE,
		IMGOP_AUTOCONTRAST, IMGOP_EQUALIZE,
	};
	uint8_t op = ops[rng_below(r, 14)];
	double mag = 0;
	bool signed_op = false;

	if (op != IMGOP_IDENTITY && op != IMGOP_AUTOCONTRAST && op != IMGOP_EQUALIZE) {
		int bin = (int)rng_below(r, 31);
		switch (op) {
		case IMGOP_SHEAR_X: case IMGOP_SHEAR_Y:
		case IMGOP_BRIGHTNESS: case IMGOP_COLOR: case IMGOP_CONTRAST:
		case IMGOP_SHARPNESS:
			mag = linspace_f(0.0, 0.99, 31, bin);
			signed_op = true;
			break;
		case IMGOP_TRANSLATE_X: case IMGOP_TRANSLATE_Y:
			mag = linspace_f(0.0, 32.0, 31, bin);
			signed_op = true;
			break;
		case IMGOP_ROTATE:
			mag = linspace_f(0.0, 135.0, 31, bin);
			signed_op = true;
			break;
		case IMGOP_POSTERIZE: /* 8 - round(bin / 5), half to even */
			mag = 8 - nearbyint(bin / 5.0);
			break;
		default: /* Solarize */
			mag = linspace_f(255.0, 0.0, 31, bin);
			break;
		}
	}
	if (signed_op && rng_below(r, 2))
		mag = -mag;
	o->op = op;
	o->interp = IMGOP_NEAREST;
	o->magnitude = mag;
	return 1;
}

/* torchvision AutoAugmentPolicy.IMAGENET: 25 sub-policies of two
 * (op, probability, magnitude bin); bin -1 = no magnitude. */
static const struct { uint8_t op; float p; int8_t bin; } imagenet[25][2] = {
	{ { IMGOP_POSTERIZE, 0.4f, 8 }, { IMGOP_ROTATE, 0.6f, 9 } },
	{ { IMGOP_SOLARIZE, 0.6f, 5 }, { IMGOP_AUTOCONTRAST, 0.6f, -1 } },
	{ { IMGOP_EQUALIZE, 0.8f, -1 }, { IMGOP_EQUALIZE, 0.6f, -1 } },
	{ { IMGOP_POSTERIZE, 0.6f, 7 }, { IMGOP_POSTERIZE, 0.6f, 6 } },
	{ { IMGOP_EQUALIZE, 0.4f, -1 }, { IMGOP_SOLARIZE, 0.2f, 4 } },
	{ { IMGOP_EQUALIZE, 0.4f, -1 }, { IMGOP_ROTATE, 0.8f, 8 } },
	{ { IMGOP_SOLARIZE, 0.6f, 3 }, { IMGOP_EQUALIZE, 0.6f, -1 } },
	{ { IMGOP_POSTERIZE, 0.8f, 5 }, { IMGOP_EQUALIZE, 1.0f, -1 } },
	{ { IMGOP_ROTATE, 0.2f, 3 }, { IMGOP_SOLARIZE, 0.6f, 8 } },
	{ { IMGOP_EQUALIZE, 0.6f, -1 }, { IMGOP_POSTERIZE, 0.4f, 6 } },
	{ { IMGOP_ROTATE, 0.8f, 8 }, { IMGOP_COLOR, 0.4f, 0 } },
	{ { IMGOP_ROTATE, 0.4f, 9 }, { IMGOP_EQUALIZE, 0.6f, -1 } },
	{ { IMGOP_EQUALIZE, 0.0f, -1 }, { IMGOP_EQUALIZE, 0.8f, -1 } },
	{ { IMGOP_INVERT, 0.6f, -1 }, { IMGOP_EQUALIZE, 1.0f, -1 } },
	{ { IMGOP_COLOR, 0.6f, 4 }, { IMGOP_CONTRAST, 1.0f, 8 } },
	{ { IMGOP_ROTATE, 0.8f, 8 }, { IMGOP_COLOR, 1.0f, 2 } },
	{ { IMGOP_COLOR, 0.8f, 8 }, { IMGOP_SOLARIZE, 0.8f, 7 } },
	{ { IMGOP_SHARPNESS, 0.4f, 7 }, { IMGOP_INVERT, 0.6f, -1 } },
	{ { IMGOP_SHEAR_X, 0.6f, 5 }, { IMGOP_EQUALIZE, 1.0f, -1 } },
	{ { IMGOP_COLOR, 0.4f, 0 }, { IMGOP_EQUALIZE, 0.6f, -1 } },
	{ { IMGOP_EQUALIZE, 0.4f, -1 }, { IMGOP_SOLARIZE, 0.2f, 4 } },
	{ { IMGOP_SOLARIZE, 0.6f, 5 }, { IMGOP_AUTOCONTRAST, 0.6f, -1 } },
	{ { IMGOP_INVERT, 0.6f, -1 }, { IMGOP_EQUALIZE, 1.0f, -1 } },
	{ { IMGOP_COLOR, 0.6f, 4 }, { IMGOP_CONTRAST, 1.0f, 8 } },
	{ { IMGOP_EQUALIZE, 0.8f, -1 }, { IMGOP_EQUALIZE, 0.6f, -1 } },
};

/* The 10-bin magnitude of torchvision AutoAugment's augmentation space;
 * *signed_op for the ops that take a sign. */
static double aa_bin(uint8_t op, int bin, int W, bool *signed_op)
{
	*signed_op = true;
	switch (op) {
	case IMGOP_SHEAR_X: case IMGOP_SHEAR_Y:
		return linspace_f(0.0, 0.3, 10, bin);
	case IMGOP_TRANSLATE_X: case IMGOP_TRANSLATE_Y:
		return linspace_f(0.0, 150.0 / 331.0 * W, 10, bin);
	case IMGOP_ROTATE:
		return linspace_f(0.0, 30.0, 10, bin);
	case IMGOP_BRIGHTNESS: case IMGOP_COLOR: case IMGOP_CONTRAST:
	case IMGOP_SHARPNESS:
		return linspace_f(0.0, 0.9, 10, bin);
	case IMGOP_POSTERIZE: /* 8 - round(bin / (9 / 4)) */
		*signed_op = false;
		return 8 - nearbyint((float)bin / (9.0f / 4.0f));
	case IMGOP_SOLARIZE:
		*signed_op = false;
		return linspace_f(255.0, 0.0, 10, bin);
	default:
		*signed_op = false;
		return 0;
	}
}

/* torchvision AutoAugment.forward: sub-policy uniform of 25, two uniforms
 * for the probabilities (applied when U <= p), two sign bits (negative
 * when the bit is 0); interpolation nearest. */
static int sample_original(rng_t *r, int W, struct imgop_args *ops)
{
	int id = (int)rng_below(r, 25), k = 0;
	double u[2];
	uint32_t sign[2];

	u[0] = rng_uniform(r);
	u[1] = rng_uniform(r);
	sign[0] = rng_below(r, 2);
	sign[1] = rng_below(r, 2);
	for (int i = 0; i < 2; i++) {
		bool signed_op;

		if (!(u[i] <= imagenet[id][i].p))
			continue;
		ops[k].op = imagenet[id][i].op;
		ops[k].interp = IMGOP_NEAREST;
		ops[k].magnitude = 0;
		if (imagenet[id][i].bin >= 0) {
			ops[k].magnitude = aa_bin(ops[k].op, imagenet[id][i].bin, W, &signed_op);
			if (signed_op && sign[i] == 0)
				ops[k].magnitude = -ops[k].magnitude;
		}
		k++;
	}
	return k;
}

/* timm auto_augment_policy_v0 (the TPU EfficientNet ImageNet policy): 25
 * sub-policies of two (timm op, probability, level). */
static const struct { uint8_t op; float p; uint8_t level; } v0[25][2] = {
	{ { T_EQUALIZE, 0.8f, 1 }, { T_SHEAR_Y, 0.8f, 4 } },
	{ { T_COLOR, 0.4f, 9 }, { T_EQUALIZE, 0.6f, 3 } },
	{ { T_COLOR, 0.4f, 1 }, { T_ROTATE, 0.6f, 8 } },
	{ { T_SOLARIZE, 0.8f, 3 }, { T_EQUALIZE, 0.4f, 7 } },
	{ { T_SOLARIZE, 0.4f, 2 }, { T_SOLARIZE, 0.6f, 2 } },
	{ { T_COLOR, 0.2f, 0 }, { T_EQUALIZE, 0.8f, 8 } },
	{ { T_EQUALIZE, 0.4f, 8 }, { T_SOLARIZE_ADD, 0.8f, 3 } },
	{ { T_SHEAR_X, 0.2f, 9 }, { T_ROTATE, 0.6f, 8 } },
	{ { T_COLOR, 0.6f, 1 }, { T_EQUALIZE, 1.0f, 2 } },
	{ { T_INVERT, 0.4f, 9 }, { T_ROTATE, 0.6f, 0 } },
	{ { T_EQUALIZE, 1.0f, 9 }, { T_SHEAR_Y, 0.6f, 3 } },
	{ { T_COLOR, 0.4f, 7 }, { T_EQUALIZE, 0.6f, 0 } },
	{ { T_POSTERIZE, 0.4f, 6 }, { T_AUTOCONTRAST, 0.4f, 7 } },
	{ { T_SOLARIZE, 0.6f, 8 }, { T_COLOR, 0.6f, 9 } },
	{ { T_SOLARIZE, 0.2f, 4 }, { T_ROTATE, 0.8f, 9 } },
	{ { T_ROTATE, 1.0f, 7 }, { T_TRANSLATE_Y_REL, 0.8f, 9 } },
	{ { T_SHEAR_X, 0.0f, 0 }, { T_SOLARIZE, 0.8f, 4 } },
	{ { T_SHEAR_Y, 0.8f, 0 }, { T_COLOR, 0.6f, 4 } },
	{ { T_COLOR, 1.0f, 0 }, { T_ROTATE, 0.6f, 2 } },
	{ { T_EQUALIZE, 0.8f, 4 }, { T_EQUALIZE, 0.0f, 8 } },
	{ { T_EQUALIZE, 1.0f, 4 }, { T_AUTOCONTRAST, 0.6f, 2 } },
	{ { T_SHEAR_Y, 0.4f, 7 }, { T_SOLARIZE_ADD, 0.6f, 7 } },
	{ { T_POSTERIZE, 0.8f, 2 }, { T_SOLARIZE, 0.6f, 10 } },
	{ { T_SOLARIZE, 0.6f, 8 }, { T_EQUALIZE, 0.6f, 1 } },
	{ { T_COLOR, 0.8f, 6 }, { T_ROTATE, 0.4f, 5 } },
};

/* timm AutoAugment(v0): a sub-policy uniformly, then per op: skipped when
 * U > p, else timm's level mapping (with its sign draw); bilinear. */
static int sample_v0(rng_t *r, int W, int H, struct imgop_args *ops)
{
	int id = (int)rng_below(r, 25), k = 0;

	for (int i = 0; i < 2; i++) {
		if (v0[id][i].p < 1.0f && rng_uniform(r) > v0[id][i].p)
			continue;
		ops[k].interp = IMGOP_BILINEAR;
		timm_arg((enum timm_op)v0[id][i].op, v0[id][i].level, r, W, H, &ops[k]);
		k++;
	}
	return k;
}

/* DeiT III 3-Augment: one of grayscale, solarize (threshold 128, as PIL's
 * ImageOps.solarize default) or Gaussian blur (sigma ~ U(0.1, 2.0)),
 * chosen uniformly, always applied. */
static int sample_3a(rng_t *r, struct imgop_args *o)
{
	uint32_t c = rng_below(r, 3);

	o->interp = IMGOP_NEAREST;
	if (c == 0) {
		o->op = IMGOP_GRAYSCALE;
		o->magnitude = 0;
	} else if (c == 1) {
		o->op = IMGOP_SOLARIZE;
		o->magnitude = 128;
	} else {
		o->op = IMGOP_GAUSSIAN_BLUR;
		o->magnitude = 0.1 + 1.9 * rng_uniform(r);
	}
	return 1;
}

/* torchvision ColorJitter.get_params: a random order of the four (a
 * Fisher–Yates shuffle of 0..3), then the factors in the fixed order
 * brightness, contrast, saturation, hue, each only when switched on. */
static int sample_jitter(const double j[4], rng_t *r, struct imgop_args *ops, int room)
{
	static const uint8_t code[4] = { IMGOP_BRIGHTNESS, IMGOP_CONTRAST, IMGOP_COLOR, IMGOP_HUE };
	uint32_t order[4] = { 0, 1, 2, 3 };
	double v[4] = { 0 };
	int k = 0;

	rng_shuffle_u32(r, order, 4);
	for (int i = 0; i < 3; i++)
		if (j[i] > 0) {
			double lo = fmax(0.0, 1.0 - j[i]), hi = 1.0 + j[i];
			v[i] = lo + (hi - lo) * rng_uniform(r) - 1.0; /* factor - 1 */
		}
	if (j[3] > 0)
		v[3] = -j[3] + 2 * j[3] * rng_uniform(r);
	for (int i = 0; i < 4 && k < room; i++) {
		uint32_t f = order[i];

		if (j[f] <= 0)
			continue;
		ops[k].op = code[f];
		ops[k].interp = IMGOP_NEAREST;
		ops[k].magnitude = v[f];
		k++;
	}
	return k;
}

int policy_sample(const struct pipeline_cfg *p, rng_t *r, int W, int H,
		  struct imgop_args ops[POLICY_MAX_OPS])
{
	uint8_t fill[3];
	int k = 0;

	switch (p->aa.kind) {
	case AA_RAND: k = sample_rand(&p->aa, r, W, H, ops); break;
	case AA_TA_WIDE: k = sample_ta_wide(r, ops); break;
	case AA_ORIGINAL: k = sample_original(r, W, ops); break;
	case AA_3A: k = sample_3a(r, ops); break;
	case AA_V0: k = sample_v0(r, W, H, ops); break;
	case AA_NONE: break;
	}
	if (p->jitter_on)
		k += sample_jitter(p->jitter, r, ops + k, POLICY_MAX_OPS - k);
	policy_fill(p, fill);
	for (int i = 0; i < k; i++)
		memcpy(ops[i].fill, fill, 3);
	return k;
}

/* ---- RandomErasing ------------------------------------------------------ */

int policy_erase_boxes(const struct pipeline_cfg *p, rng_t *r, int W, int H,
		       int32_t boxes[CONFIG_MAX_ERASE][4])
{
	const double area = (double)W * H;
	const double la = log(0.3), lb = log(1 / 0.3);
	int n = 0;

	if (p->reprob <= 0 || !(rng_uniform(r) < p->reprob))
		return 0;
	uint32_t count = p->recount > 1 ? (uint32_t)rng_range(r, 1, (int32_t)p->recount) : 1;
	for (uint32_t c = 0; c < count; c++) {
		for (int attempt = 0; attempt < 10; attempt++) {
			double target = (p->remin + (p->remax - p->remin) * rng_uniform(r)) *
					area / count;
			double aspect = exp(la + (lb - la) * rng_uniform(r));
			int h = (int)nearbyint(sqrt(target * aspect));
			int w = (int)nearbyint(sqrt(target / aspect));

			if (w < W && h < H) {
				int top = rng_range(r, 0, H - h);
				int left = rng_range(r, 0, W - w);

				boxes[n][0] = left;
				boxes[n][1] = top;
				boxes[n][2] = left + w;
				boxes[n][3] = top + h;
				n++;
				break;
			}
		}
	}
	return n;
}

/* Bytes from a stream: the four bytes of each rng_u32 word, low first. */
struct byte_src {
	rng_t *r;
	uint32_t word;
	int left;
};

static uint8_t next_byte(struct byte_src *b)
{
	if (b->left == 0) {
		b->word = rng_u32(b->r);
		b->left = 4;
	}
	uint8_t v = (uint8_t)b->word;
	b->word >>= 8;
	b->left--;
	return v;
}

void policy_erase_fill(const struct pipeline_cfg *p, uint8_t *img, int W, int H,
		       size_t stride, const int32_t boxes[][4], int n, rng_t *noise)
{
	struct byte_src src = { noise, 0, 0 };
	uint8_t colour[3];

	(void)W;
	(void)H;
	for (int i = 0; i < n; i++) {
		if (p->remode == ERASE_CONST)
			for (int c = 0; c < 3; c++)
				colour[c] = (uint8_t)fmin(255, nearbyint(p->mean[c] * 255));
		else if (p->remode == ERASE_RAND)
			for (int c = 0; c < 3; c++)
				colour[c] = next_byte(&src);
		for (int y = boxes[i][1]; y < boxes[i][3]; y++) {
			uint8_t *row = img + (size_t)y * stride;
			for (int x = boxes[i][0]; x < boxes[i][2]; x++)
				for (int c = 0; c < 3; c++)
					row[x * 3 + c] = p->remode == ERASE_PIXEL ? next_byte(&src)
										  : colour[c];
		}
	}
}
