/*
 * splicetool.c — check the spliced region decode (splice.h) against the
 * plain region decode of the same file, for the integration tests.
 *
 *   splicetool check IN.jpg
 *       transcodes IN as `cutmixd pack` does, then for scale 1/1, 1/2, 1/4,
 *       1/8 decodes every region whose top and bottom rows are on, next to
 *       or between MCU-row boundaries (several column ranges each) twice:
 *       plainly and spliced. Prints "regions N spliced S differ D"; exit 0
 *       when D is 0, 1 otherwise (the first difference on stderr), 2 on a
 *       usage or setup error.
 *   splicetool bench FILE...
 *       for every JPEG: K=4 torchvision-style random crops (area 0.08..1,
 *       ratio 3/4..4/3, fixed seed), each decoded three ways, CPU time per
 *       crop: the original file (today's region decode), the transcoded
 *       file plainly, the transcoded file spliced; plus the size change.
 */
#include "decode.h"
#include "splice.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <time.h>

/* SPLICE_TARGET=N overrides the interval width (0: one per MCU row). */
static int target_px(void)
{
	const char *e = getenv("SPLICE_TARGET");

	return e ? atoi(e) : SPLICE_TARGET_PX;
}

static int read_all(const char *path, uint8_t **buf, size_t *len)
{
	FILE *f = fopen(path, "rb");
	long n;

	if (!f)
		return -errno;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	*buf = malloc(n > 0 ? (size_t)n : 1);
	*len = *buf ? fread(*buf, 1, (size_t)n, f) : 0;
	fclose(f);
	return *buf && *len == (size_t)n ? 0 : -EIO;
}

/* One region both ways; 0 equal, 1 differ, -1 error. */
static int one(decoder_t *a, decoder_t *b, const uint8_t *tc, size_t tlen,
	       const uint32_t *segs, uint32_t ns, int denom, int x0, int y0, int x1, int y1)
{
	struct decoded pa, pb;
	int w, h;

	if (decoder_open(a, tc, tlen, NULL, &w, &h) ||
	    decoder_read(a, denom, x0, y0, x1, y1, &pa)) {
		fprintf(stderr, "plain decode failed: %s\n", decoder_error(a));
		return -1;
	}
	decoder_set_segments(b, segs, ns);
	if (decoder_open(b, tc, tlen, NULL, &w, &h) ||
	    decoder_read(b, denom, x0, y0, x1, y1, &pb)) {
		fprintf(stderr, "spliced decode failed: %s\n", decoder_error(b));
		return -1;
	}
	for (int y = 0; y < y1 - y0; y++) {
		const uint8_t *ra = pa.rgb + (size_t)y * pa.stride, *rb = pb.rgb + (size_t)y * pb.stride;
		for (int x = 0; x < (x1 - x0) * 3; x++) {
			if (ra[x] != rb[x]) {
				fprintf(stderr, "differ: scale 1/%d region x %d..%d y %d..%d: "
					"row %d byte %d: %d vs %d\n", denom, x0, x1, y0, y1,
					y0 + y, x, ra[x], rb[x]);
				return 1;
			}
		}
	}
	return 0;
}

static double cpu_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static uint64_t rs = 88172645463325252ull;

static double urand(void)
{
	rs ^= rs << 13;
	rs ^= rs >> 7;
	rs ^= rs << 17;
	return (double)(rs >> 11) / 9007199254740992.0;
}

/* torchvision RandomResizedCrop's box (10 tries, then the whole image). */
static void rrc(int W, int H, int box[4])
{
	for (int t = 0; t < 10; t++) {
		double area = W * (double)H * (0.08 + 0.92 * urand());
		double r = exp(log(3.0 / 4) + (log(4.0 / 3) - log(3.0 / 4)) * urand());
		int w = (int)lround(sqrt(area * r)), h = (int)lround(sqrt(area / r));
		if (w > 0 && h > 0 && w <= W && h <= H) {
			box[0] = (int)(urand() * (W - w + 1));
			box[1] = (int)(urand() * (H - h + 1));
			box[2] = box[0] + w;
			box[3] = box[1] + h;
			return;
		}
	}
	box[0] = box[1] = 0;
	box[2] = W;
	box[3] = H;
}

static int bench(int n, char **files)
{
	decoder_t *d = decoder_new();
	double t[3] = { 0, 0, 0 };
	uint64_t in_bytes = 0, out_bytes = 0;
	long crops = 0, files_used = 0;

	for (int f = 0; f < n; f++) {
		uint8_t *in = NULL, *tc = NULL;
		size_t len = 0, tlen;
		uint32_t *segs = NULL, ns;
		char err[256];
		struct decoded o;
		int W, H;

		if (read_all(files[f], &in, &len) ||
		    splice_transcode(in, len, target_px(), &tc, &tlen, err, sizeof(err)) ||
		    splice_segments(tc, tlen, &segs, &ns) ||
		    decoder_open(d, in, len, NULL, &W, &H)) {
			free(in);
			free(tc);
			free(segs);
			continue;
		}
		files_used++;
		in_bytes += len;
		out_bytes += tlen;
		for (int k = 0; k < 4; k++) {
			int b[4];
			rrc(W, H, b);
			const uint8_t *src[3] = { in, tc, tc };
			size_t sl[3] = { len, tlen, tlen };
			for (int way = 0; way < 3; way++) {
				double t0 = cpu_now();
				decoder_set_segments(d, way == 2 ? segs : NULL, way == 2 ? ns : 0);
				if (decoder_open(d, src[way], sl[way], NULL, &W, &H) == 0)
					(void)decoder_read(d, 1, b[0], b[1], b[2], b[3], &o);
				t[way] += cpu_now() - t0;
			}
			crops++;
		}
		free(in);
		free(tc);
		free(segs);
	}
	decoder_destroy(&d);
	if (!crops)
		return 1;
	printf("files %ld crops %ld: CPU per crop: original %.3f ms, transcoded plain %.3f ms, "
	       "spliced %.3f ms (%.2fx faster than the original); size %+.1f%%\n",
	       files_used, crops, 1e3 * t[0] / crops, 1e3 * t[1] / crops, 1e3 * t[2] / crops,
	       t[0] / t[2], 100.0 * ((double)out_bytes / (double)in_bytes - 1));
	return 0;
}

int main(int argc, char **argv)
{
	uint8_t *in = NULL, *tc = NULL;
	size_t len = 0, tlen;
	uint32_t *segs = NULL, ns = 0;
	char err[256];
	long regions = 0, spliced = 0, differ = 0;
	int status = 2;

	if (argc >= 3 && !strcmp(argv[1], "bench"))
		return bench(argc - 2, argv + 2);
	if (argc != 3 || strcmp(argv[1], "check")) {
		fprintf(stderr, "usage: splicetool check IN.jpg | bench FILE...\n");
		return 2;
	}
	decoder_t *a = decoder_new(), *b = decoder_new();
	if (!a || !b || read_all(argv[2], &in, &len) ||
	    splice_transcode(in, len, target_px(), &tc, &tlen, err, sizeof(err)) ||
	    splice_segments(tc, tlen, &segs, &ns)) {
		fprintf(stderr, "splicetool: cannot set up '%s'\n", argv[2]);
		goto out;
	}
	int W, H;
	if (decoder_open(a, tc, tlen, NULL, &W, &H))
		goto out;
	int mcu_h = (int)((H + ns - 1) / ns);  /* 8 or 16 */
	mcu_h = mcu_h <= 8 ? 8 : 16;
	status = 0;
	for (int denom = 1; denom <= 8 && status == 0; denom *= 2) {
		int sw = (W + denom - 1) / denom, sh = (H + denom - 1) / denom;
		int mh = mcu_h / denom, nys = 0, ys[4096];
		for (int k = 0; k * mh <= sh && nys < 4090; k++)
			for (int dy = -1; dy <= 1; dy++)
				if (k * mh + dy >= 0 && k * mh + dy <= sh)
					ys[nys++] = k * mh + dy;
		/* column ranges: whole, ends, and edges on, next to and between
		 * interval boundaries (every multiple of 16 output px covers
		 * every interval width the transcode picks) */
		int xs[64][2] = { { 0, sw }, { 0, 1 }, { sw / 3, sw - sw / 4 }, { sw - 1, sw } };
		int nx = 4;
		for (int c = 8 / denom ? 8 / denom : 1; c < sw && nx < 60; c += 8 / denom ? 8 / denom : 1) {
			int x0 = c, x1 = c + 1 + (nx * 7) % (sw - c);
			xs[nx][0] = x0 - (nx % 3 == 1);
			xs[nx][1] = x1 > sw ? sw : x1;
			nx++;
			xs[nx][0] = nx % 2 ? 0 : c / 2;
			xs[nx][1] = c + (nx % 3) - 1 > xs[nx][0] ? c + (nx % 3) - 1 : c;
			nx++;
		}
		for (int i = 0; i < nys && status == 0; i++) {
			for (int j = 0; j < nys && status == 0; j++) {
				int y0 = ys[i], y1 = ys[j];
				if (y0 >= y1 || y1 > sh)
					continue;
				for (int q = (i + j) % 3; q < nx && status == 0; q += 3) {
					int x0 = xs[q][0], x1 = xs[q][1];
					if (x0 >= x1)
						continue;
					int r = one(a, b, tc, tlen, segs, ns, denom, x0, y0, x1, y1);
					regions++;
					spliced += !(y0 < mh && y1 > sh - mh);
					if (r < 0)
						status = 2;
					else if (r > 0)
						differ++, status = 1;
				}
			}
		}
	}
	printf("regions %ld spliced %ld differ %ld\n", regions, spliced, differ);
out:
	decoder_destroy(&a);
	decoder_destroy(&b);
	free(in);
	free(tc);
	free(segs);
	return status;
}
