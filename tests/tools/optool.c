/*
 * optool.c — drive daemon/imgops.c from the command line so the
 * integration tests can compare its pixels with torchvision's, and time it.
 *
 *   optool apply IN.ppm OUT.ppm OP MAGNITUDE [nearest|bilinear] [R,G,B] [--pad N] [--no-simd]
 *       applies one op (name as imgop_name, e.g. "Rotate", or its code)
 *       with that magnitude, interpolation (default nearest) and fill
 *       (default 0,0,0); --pad N adds N bytes to every row's stride;
 *       --no-simd takes the scalar paths even on an AVX2 CPU.
 *   optool bench OP [MAGNITUDE] [--size WxH] [--iters N] [--interp bilinear] [--no-simd]
 *       prints the mean CPU nanoseconds per image (default 224x224, on a
 *       synthetic photo-like image; the op is re-applied to a fresh copy
 *       each iteration and the copy is not timed).
 *   optool list
 *       prints "code name" per op.
 *
 * PPM files are binary P6 with maxval 255. Exit status 0 on success, 1 on
 * an op error (message on stderr), 2 on a usage error.
 */
#include "imgops.h"
#include "imgops_int.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static int usage(void)
{
	fprintf(stderr,
		"usage: optool apply IN.ppm OUT.ppm OP MAGNITUDE [nearest|bilinear] [R,G,B] [--pad N] [--no-simd]\n"
		"       optool bench OP [MAGNITUDE] [--size WxH] [--iters N] [--interp bilinear] [--no-simd]\n"
		"       optool list\n");
	return 2;
}

static int parse_op(const char *s, int *op)
{
	char *end;
	long v;

	for (unsigned i = 0; i < IMGOP_COUNT; i++)
		if (strcasecmp(s, imgop_name(i)) == 0) {
			*op = (int)i;
			return 0;
		}
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 0 || v > 255) {
		fprintf(stderr, "optool: '%s': not an op name or code\n", s);
		return -EINVAL;
	}
	*op = (int)v; /* out-of-range codes reach imgop_apply on purpose */
	return 0;
}

static int parse_double(const char *s, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(s, &end);
	if (errno == ERANGE || end == s || *end) {
		fprintf(stderr, "optool: '%s': not a number\n", s);
		return -EINVAL;
	}
	return 0;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;

	errno = 0;
	*out = strtol(s, &end, 10);
	if (errno || end == s || *end || *out < lo || *out > hi) {
		fprintf(stderr, "optool: '%s': not an integer in %ld..%ld\n", s, lo, hi);
		return -EINVAL;
	}
	return 0;
}

static int parse_interp(const char *s, uint8_t *interp)
{
	if (strcmp(s, "nearest") == 0)
		*interp = IMGOP_NEAREST;
	else if (strcmp(s, "bilinear") == 0)
		*interp = IMGOP_BILINEAR;
	else
		return -EINVAL;
	return 0;
}

static int parse_fill(const char *s, uint8_t fill[3])
{
	unsigned v[3];
	char tail;

	if (sscanf(s, "%u,%u,%u%c", &v[0], &v[1], &v[2], &tail) != 3 ||
	    v[0] > 255 || v[1] > 255 || v[2] > 255) {
		fprintf(stderr, "optool: '%s': fill must be R,G,B in 0..255\n", s);
		return -EINVAL;
	}
	for (int c = 0; c < 3; c++)
		fill[c] = (uint8_t)v[c];
	return 0;
}

/* Next PPM header number: skips whitespace and # comments. */
static int ppm_token(FILE *f, int *out)
{
	int c, v = 0, digits = 0;

	do {
		c = fgetc(f);
		if (c == '#')
			while (c != '\n' && c != EOF)
				c = fgetc(f);
	} while (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '#');
	while (c >= '0' && c <= '9' && v < 100000000) {
		v = v * 10 + (c - '0');
		digits++;
		c = fgetc(f);
	}
	if (!digits)
		return -EINVAL;
	*out = v;
	return 0;
}

/* Reads IN into rows of `stride` bytes (>= 3 W, zero padded). */
static int read_ppm(const char *path, uint8_t **rgb, int *w, int *h, size_t pad)
{
	FILE *f = fopen(path, "rb");
	int maxval, rc = -EINVAL;
	size_t stride;

	*rgb = NULL;
	if (!f) {
		fprintf(stderr, "optool: open '%s': %s\n", path, strerror(errno));
		return -errno;
	}
	if (fgetc(f) != 'P' || fgetc(f) != '6' || ppm_token(f, w) < 0 ||
	    ppm_token(f, h) < 0 || ppm_token(f, &maxval) < 0 || maxval != 255 ||
	    *w <= 0 || *h <= 0 || *w > 65536 || *h > 65536) {
		fprintf(stderr, "optool: '%s': not a binary 8-bit PPM (P6)\n", path);
		goto out_close;
	}
	stride = (size_t)*w * 3 + pad;
	*rgb = calloc((size_t)*h, stride);
	if (!*rgb) {
		rc = -ENOMEM;
		goto out_close;
	}
	for (int y = 0; y < *h; y++)
		if (fread(*rgb + (size_t)y * stride, 3, (size_t)*w, f) != (size_t)*w) {
			fprintf(stderr, "optool: '%s': truncated pixel data\n", path);
			free(*rgb);
			*rgb = NULL;
			goto out_close;
		}
	rc = 0;
out_close:
	fclose(f);
	return rc;
}

static int write_ppm(const char *path, const uint8_t *rgb, int w, int h, size_t stride)
{
	FILE *f = fopen(path, "wb");
	int rc = 0;

	if (!f) {
		fprintf(stderr, "optool: open '%s': %s\n", path, strerror(errno));
		return -errno;
	}
	fprintf(f, "P6\n%d %d\n255\n", w, h);
	for (int y = 0; y < h; y++)
		if (fwrite(rgb + (size_t)y * stride, 3, (size_t)w, f) != (size_t)w)
			rc = -EIO;
	if (fclose(f) != 0)
		rc = -EIO;
	if (rc < 0)
		fprintf(stderr, "optool: write '%s': %s\n", path, strerror(-rc));
	return rc;
}

static int cmd_apply(int argc, char **argv)
{
	struct imgop_args a = { 0 };
	uint8_t *img = NULL, *scratch = NULL;
	int op, w, h, rc = 2, err;
	long pad = 0;
	size_t stride;

	if (argc < 6)
		return usage();
	if (parse_op(argv[4], &op) < 0 || parse_double(argv[5], &a.magnitude) < 0)
		return 2;
	a.op = (uint8_t)op;
	for (int i = 6; i < argc; i++) {
		if (strcmp(argv[i], "--no-simd") == 0) {
			imgop_set_simd(0);
		} else if (strcmp(argv[i], "--pad") == 0 && i + 1 < argc) {
			if (parse_long(argv[++i], 0, 4096, &pad) < 0)
				return 2;
		} else if (parse_interp(argv[i], &a.interp) < 0 &&
			   parse_fill(argv[i], a.fill) < 0) {
			return usage();
		}
	}
	if (read_ppm(argv[2], &img, &w, &h, (size_t)pad) < 0)
		return 1;
	stride = (size_t)w * 3 + (size_t)pad;
	scratch = malloc(imgop_scratch_bytes(w, h));
	if (!scratch) {
		fprintf(stderr, "optool: out of memory\n");
		rc = 1;
		goto out;
	}
	err = imgop_apply(img, w, h, stride, &a, scratch);
	if (err < 0) {
		fprintf(stderr, "optool: %s(%g): %s\n",
			imgop_name(a.op) ? imgop_name(a.op) : "?", a.magnitude, strerror(-err));
		rc = 1;
		goto out;
	}
	rc = write_ppm(argv[3], img, w, h, stride) < 0 ? 1 : 0;
out:
	free(scratch);
	free(img);
	return rc;
}

/* A photo-like test image: smooth gradients, an edge, a little noise. */
static void synth(uint8_t *img, int w, int h)
{
	uint32_t s = 12345;

	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			uint8_t *p = img + ((size_t)y * w + x) * 3;
			double base = 128 + 90 * sin(x * 0.05) * cos(y * 0.031);

			for (int c = 0; c < 3; c++) {
				s = s * 1664525u + 1013904223u;
				double v = base + 40 * c - 40 + (int)(s >> 28) - 8 +
					   ((x > w / 2) ^ (y > h / 3) ? 30 : -30);
				p[c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
			}
		}
}

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); /* CPU time: robust on a busy machine */
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmd_bench(int argc, char **argv)
{
	struct imgop_args a = { 0 };
	int op, w = 224, h = 224, i = 3, rc = 1;
	long iters = 200;
	uint8_t *orig = NULL, *img = NULL, *scratch = NULL;
	double total = 0;
	size_t n;

	if (argc < 3 || parse_op(argv[2], &op) < 0)
		return usage();
	a.op = (uint8_t)op;
	a.magnitude = op == IMGOP_GAUSSIAN_BLUR ? 1.0 : op == IMGOP_POSTERIZE ? 4.0 :
		      op == IMGOP_SOLARIZE ? 128.0 : op == IMGOP_HUE ? 0.2 :
		      op == IMGOP_ROTATE ? 20.0 : op == IMGOP_TRANSLATE_X ||
		      op == IMGOP_TRANSLATE_Y ? 30.0 : 0.3;
	if (i < argc && argv[i][0] != '-' && parse_double(argv[i++], &a.magnitude) < 0)
		return 2;
	for (; i < argc; i++) {
		if (strcmp(argv[i], "--size") == 0 && i + 1 < argc) {
			if (sscanf(argv[++i], "%dx%d", &w, &h) != 2 || w <= 0 || h <= 0 ||
			    w > 16384 || h > 16384)
				return usage();
		} else if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc) {
			if (parse_long(argv[++i], 1, 1000000, &iters) < 0)
				return 2;
		} else if (strcmp(argv[i], "--no-simd") == 0) {
			imgop_set_simd(0);
		} else if (strcmp(argv[i], "--interp") == 0 && i + 1 < argc) {
			if (parse_interp(argv[++i], &a.interp) < 0)
				return usage();
		} else {
			return usage();
		}
	}
	n = (size_t)w * h * 3;
	orig = malloc(n);
	img = malloc(n);
	scratch = malloc(imgop_scratch_bytes(w, h));
	if (!orig || !img || !scratch) {
		fprintf(stderr, "optool: out of memory\n");
		goto out;
	}
	synth(orig, w, h);
	for (long k = 0; k < iters; k++) {
		double t0;
		int err;

		memcpy(img, orig, n);
		t0 = now_ns();
		err = imgop_apply(img, w, h, (size_t)w * 3, &a, scratch);
		total += now_ns() - t0;
		if (err < 0) {
			fprintf(stderr, "optool: %s(%g): %s\n", imgop_name(a.op),
				a.magnitude, strerror(-err));
			goto out;
		}
	}
	printf("%s %g %s %dx%d: %.0f CPU ns/image (%ld iterations)\n", imgop_name(a.op),
	       a.magnitude, a.interp == IMGOP_BILINEAR ? "bilinear" : "nearest", w, h,
	       total / (double)iters, iters);
	rc = 0;
out:
	free(orig);
	free(img);
	free(scratch);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "apply") == 0)
		return cmd_apply(argc, argv);
	if (argc >= 2 && (strcmp(argv[1], "bench") == 0 || strcmp(argv[1], "--bench") == 0))
		return cmd_bench(argc, argv);
	if (argc == 2 && strcmp(argv[1], "list") == 0) {
		for (unsigned i = 0; i < IMGOP_COUNT; i++)
			printf("%u %s\n", i, imgop_name(i));
		return 0;
	}
	return usage();
}
