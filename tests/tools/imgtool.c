/*
 * imgtool.c — drive decode.c and resize.c from the command line so the
 * integration tests can compare their pixels with PIL's.
 *
 *   imgtool decode IN.jpg OUT.ppm [x0 y0 x1 y1 [denom]]
 *   imgtool resize IN.ppm OUT.ppm W H bx0 by0 bx1 by1 [bilinear|bicubic]
 *   imgtool bench-decode [-n SEED] FILE...
 *       times a full decode of every file against a decode of a random
 *       torchvision-style crop (area 0.08..1, ratio 3/4..4/3) of it.
 *
 * PPM files are binary P6 with maxval 255. Exit status 0 on success, 1 on
 * a decode/resize error (message on stderr), 2 on a usage error.
 */
#include "decode.h"
#include "resize.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const struct decode_limits tool_limits = {
	.max_pixels = 20000ull * 20000ull,
	.max_file_bytes = 512ull << 20,
};

static int usage(void)
{
	fprintf(stderr,
		"usage: imgtool decode IN.jpg OUT.ppm [x0 y0 x1 y1 [denom]]\n"
		"       imgtool resize IN.ppm OUT.ppm W H bx0 by0 bx1 by1 [bilinear|bicubic]\n"
		"       imgtool bench-decode [-n SEED] FILE...\n");
	return 2;
}

static int parse_int(const char *s, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < INT32_MIN || v > INT32_MAX) {
		fprintf(stderr, "imgtool: '%s': not an integer\n", s);
		return -EINVAL;
	}
	*out = (int)v;
	return 0;
}

static int parse_double(const char *s, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(s, &end);
	if (errno || end == s || *end) {
		fprintf(stderr, "imgtool: '%s': not a number\n", s);
		return -EINVAL;
	}
	return 0;
}

static int write_ppm(const char *path, const uint8_t *rgb, int w, int h, size_t stride)
{
	FILE *f = fopen(path, "wb");
	int rc = 0;

	if (!f) {
		fprintf(stderr, "imgtool: open '%s': %s\n", path, strerror(errno));
		return -errno;
	}
	fprintf(f, "P6\n%d %d\n255\n", w, h);
	for (int y = 0; y < h; y++)
		if (fwrite(rgb + (size_t)y * stride, 3, (size_t)w, f) != (size_t)w)
			rc = -EIO;
	if (fclose(f) != 0)
		rc = -EIO;
	if (rc < 0)
		fprintf(stderr, "imgtool: write '%s': %s\n", path, strerror(-rc));
	return rc;
}

/* Next header token of a PPM: skips whitespace and # comments. */
static int ppm_token(FILE *f, int *out)
{
	int c, v = 0, digits = 0;

	for (;;) {
		c = fgetc(f);
		if (c == '#') {
			while (c != '\n' && c != EOF)
				c = fgetc(f);
		} else if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
			break;
		}
	}
	while (c >= '0' && c <= '9') {
		if (v > 100000000)
			return -EINVAL;
		v = v * 10 + (c - '0');
		digits++;
		c = fgetc(f);
	}
	if (!digits)
		return -EINVAL;
	/* c is the single whitespace after the token (or EOF). */
	*out = v;
	return 0;
}

static int read_ppm(const char *path, uint8_t **rgb, int *w, int *h)
{
	FILE *f = fopen(path, "rb");
	size_t n;
	int maxval, rc = -EINVAL;

	*rgb = NULL;
	if (!f) {
		fprintf(stderr, "imgtool: open '%s': %s\n", path, strerror(errno));
		return -errno;
	}
	if (fgetc(f) != 'P' || fgetc(f) != '6' || ppm_token(f, w) < 0 ||
	    ppm_token(f, h) < 0 || ppm_token(f, &maxval) < 0 || maxval != 255 ||
	    *w <= 0 || *h <= 0) {
		fprintf(stderr, "imgtool: '%s': not a binary 8-bit PPM (P6)\n", path);
		goto out_close;
	}
	n = (size_t)*w * (size_t)*h * 3;
	*rgb = malloc(n);
	if (!*rgb) {
		rc = -ENOMEM;
		goto out_close;
	}
	if (fread(*rgb, 1, n, f) != n) {
		fprintf(stderr, "imgtool: '%s': truncated pixel data\n", path);
		free(*rgb);
		*rgb = NULL;
		goto out_close;
	}
	rc = 0;
out_close:
	fclose(f);
	return rc;
}

static int cmd_decode(int argc, char **argv)
{
	decoder_t *d = NULL;
	struct decoded out;
	const uint8_t *data;
	size_t len;
	int w, h, x0 = 0, y0 = 0, x1 = -1, y1 = -1, denom = 1, rc;

	if (argc != 2 && argc != 6 && argc != 7)
		return usage();
	if (argc >= 6 && (parse_int(argv[2], &x0) < 0 || parse_int(argv[3], &y0) < 0 ||
			  parse_int(argv[4], &x1) < 0 || parse_int(argv[5], &y1) < 0))
		return 2;
	if (argc == 7 && parse_int(argv[6], &denom) < 0)
		return 2;
	d = decoder_new();
	if (!d) {
		fprintf(stderr, "imgtool: out of memory\n");
		return 1;
	}
	rc = decode_read_file(d, argv[0], &tool_limits, &data, &len);
	if (rc == 0)
		rc = decoder_open(d, data, len, &tool_limits, &w, &h);
	if (rc == 0) {
		if (argc == 2)
			decoder_scaled_size(d, denom, &x1, &y1);
		rc = decoder_read(d, denom, x0, y0, x1, y1, &out);
	}
	if (rc < 0) {
		fprintf(stderr, "imgtool: '%s': %s\n", argv[0], decoder_error(d));
		decoder_destroy(&d);
		return 1;
	}
	rc = write_ppm(argv[1], out.rgb, out.width, out.height, out.stride);
	decoder_destroy(&d);
	return rc < 0 ? 1 : 0;
}

static int cmd_resize(int argc, char **argv)
{
	enum resize_filter filter = RESIZE_BILINEAR;
	resizer_t *r = NULL;
	uint8_t *src = NULL, *dst = NULL;
	double b[4];
	int sw, sh, w, h, rc, status = 1;

	if (argc != 8 && argc != 9)
		return usage();
	if (parse_int(argv[2], &w) < 0 || parse_int(argv[3], &h) < 0)
		return 2;
	for (int i = 0; i < 4; i++)
		if (parse_double(argv[4 + i], &b[i]) < 0)
			return 2;
	if (argc == 9) {
		if (!strcmp(argv[8], "bilinear"))
			filter = RESIZE_BILINEAR;
		else if (!strcmp(argv[8], "bicubic"))
			filter = RESIZE_BICUBIC;
		else
			return usage();
	}
	if (w <= 0 || h <= 0 || w > 100000 || h > 100000) {
		fprintf(stderr, "imgtool: size %dx%d: must be 1..100000\n", w, h);
		return 2;
	}
	if (read_ppm(argv[0], &src, &sw, &sh) < 0)
		return 1;
	r = resizer_new();
	dst = malloc((size_t)w * (size_t)h * 3);
	if (!r || !dst) {
		fprintf(stderr, "imgtool: out of memory\n");
		goto out_free;
	}
	rc = resize_rgb(r, filter, src, sw, sh, (size_t)sw * 3, b[0], b[1], b[2], b[3],
			dst, w, h, (size_t)w * 3);
	if (rc < 0) {
		fprintf(stderr, "imgtool: resize %dx%d box (%g,%g,%g,%g) to %dx%d: %s\n",
			sw, sh, b[0], b[1], b[2], b[3], w, h, strerror(-rc));
		goto out_free;
	}
	if (write_ppm(argv[1], dst, w, h, (size_t)w * 3) == 0)
		status = 0;
out_free:
	resizer_destroy(&r);
	free(src);
	free(dst);
	return status;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* xorshift64*, uniform in [0,1). */
static double bench_uniform(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return (double)((*s * 0x2545F4914F6CDD1DULL) >> 11) * 0x1p-53;
}

/* torchvision RandomResizedCrop's box, central fallback left out. */
static void bench_crop(uint64_t *s, int W, int H, int *x0, int *y0, int *x1, int *y1)
{
	for (int i = 0; i < 10; i++) {
		double area = W * (double)H * (0.08 + 0.92 * bench_uniform(s));
		double ar = exp(log(3.0 / 4) + (log(4.0 / 3) - log(3.0 / 4)) * bench_uniform(s));
		int w = (int)lround(sqrt(area * ar)), h = (int)lround(sqrt(area / ar));

		if (w > 0 && h > 0 && w <= W && h <= H) {
			*x0 = (int)(bench_uniform(s) * (W - w + 1));
			*y0 = (int)(bench_uniform(s) * (H - h + 1));
			*x1 = *x0 + w;
			*y1 = *y0 + h;
			return;
		}
	}
	*x0 = *y0 = 0;
	*x1 = W;
	*y1 = H;
}

static int cmd_bench_decode(int argc, char **argv)
{
	decoder_t *d = decoder_new();
	uint64_t seed = 88172645463325252ULL;
	double t_full = 0, t_crop = 0, px_full = 0, px_crop = 0;
	int nfiles = 0, nbad = 0, first = 0;

	if (!d)
		return 1;
	if (argc >= 2 && !strcmp(argv[0], "-n")) {
		seed ^= strtoull(argv[1], NULL, 10);
		first = 2;
	}
	for (int i = first; i < argc; i++) {
		const uint8_t *data;
		struct decoded out;
		size_t len;
		int w, h, x0, y0, x1, y1;
		double t0, t1, t2;

		if (decode_read_file(d, argv[i], &tool_limits, &data, &len) < 0) {
			fprintf(stderr, "%s\n", decoder_error(d));
			nbad++;
			continue;
		}
		t0 = now_s();
		if (decoder_open(d, data, len, &tool_limits, &w, &h) < 0 ||
		    decoder_read(d, 1, 0, 0, w, h, &out) < 0) {
			fprintf(stderr, "%s: %s\n", argv[i], decoder_error(d));
			nbad++;
			continue;
		}
		t1 = now_s();
		bench_crop(&seed, w, h, &x0, &y0, &x1, &y1);
		if (decoder_open(d, data, len, &tool_limits, &w, &h) < 0 ||
		    decoder_read(d, 1, x0, y0, x1, y1, &out) < 0) {
			fprintf(stderr, "%s: %s\n", argv[i], decoder_error(d));
			nbad++;
			continue;
		}
		t2 = now_s();
		t_full += t1 - t0;
		t_crop += t2 - t1;
		px_full += (double)w * h;
		px_crop += (double)(x1 - x0) * (y1 - y0);
		nfiles++;
	}
	printf("files %d (failed %d)\n", nfiles, nbad);
	if (nfiles) {
		printf("full decode: %.3f s total, %.3f ms/image, %.1f Mpx/s\n",
		       t_full, 1e3 * t_full / nfiles, px_full / t_full / 1e6);
		printf("crop decode: %.3f s total, %.3f ms/image (crops keep %.1f%% of pixels)\n",
		       t_crop, 1e3 * t_crop / nfiles, 100 * px_crop / px_full);
	}
	decoder_destroy(&d);
	return nbad ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage();
	if (!strcmp(argv[1], "decode") && argc >= 4)
		return cmd_decode(argc - 2, argv + 2);
	if (!strcmp(argv[1], "resize") && argc >= 4)
		return cmd_resize(argc - 2, argv + 2);
	if (!strcmp(argv[1], "bench-decode"))
		return cmd_bench_decode(argc - 2, argv + 2);
	return usage();
}
