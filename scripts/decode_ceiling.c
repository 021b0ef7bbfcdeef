/*
 * decode_ceiling.c — how fast can this machine fully decode these JPEGs?
 *
 *   decode_ceiling [-t THREADS] [-r PASSES] [-w WARMUP] [--root DIR]
 *                  [-m MANIFEST] [--json] [FILE]...
 *
 * The reference point of `make bench`: every listed file is read into memory
 * first (so the disk is not measured), then THREADS threads decode every
 * file completely, PASSES times, with libjpeg-turbo's libjpeg API and the
 * same settings as the daemon's decoder (RGB out, JDCT_ISLOW, fancy
 * upsampling, scale 1/1), into a per-thread buffer reused for every image.
 * Nothing else: no crop, no resize, no copy out. The result is images per
 * second of wall time, plus CPU time (getrusage) and megapixels per second.
 *
 * --crops train: instead of a full decode, the region decode of the train
 * pipeline, i.e. the decode floor of cutmixd's train batches: per image a
 * RandomResizedCrop box (scale 0.08-1, ratio 3/4-4/3, drawn by the daemon's
 * own augment_rrc from its counter-based generator, rng_init(seed, pass,
 * file / 128, file % 128, RNG_SAMPLE, 0), so the same distribution as the
 * daemon's crops; the file each box lands on differs from the daemon's
 * shuffled order), the daemon's DCT-scale choice (--no-dct-scale turns it
 * off), then the daemon's decoder_read (jpeg_crop_scanline +
 * jpeg_skip_scanlines, stopping after the last row of the crop). With
 * --resize it also resamples the region to SIZExSIZE with the daemon's
 * resize_rgb (bilinear; --bicubic), so floor + resize can be told apart;
 * as the daemon does, the decoder hands its rows to the resizer's
 * horizontal pass 16 at a time (decoder_read_stream), --no-stream decodes
 * the whole region into a buffer first (the daemon before issue 13).
 * --crops center: the val pipeline's box (Resize(256) + CenterCrop(224)
 * with the daemon's filter margin).
 *
 * Files come from the command line and/or a manifest ("path<TAB>anything"
 * lines, or one path per line; paths relative to --root, default the
 * manifest's folder; blank lines and '#' lines skipped).
 *
 * DESIGN
 * - The files live in one array read-only after loading; the only shared
 *   mutable state is `next` (atomic work counter over PASSES * files items,
 *   so threads balance dynamically) and each thread's own struct.
 * - Threads wait on a barrier, the main thread reads the clock after the
 *   barrier and again after joining them all.
 * - WARMUP items (untimed, before the barrier) let every thread's libjpeg
 *   object and output buffer reach their working size.
 *
 * Exit status: 0 ok, 1 a file could not be read or decoded, 64 usage.
 */
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jpeglib.h>
#include <jerror.h>

#include "../daemon/augment.h"
#include "../daemon/decode.h"
#include "../daemon/resize.h"
#include "../daemon/rng.h"

enum crops { CROPS_FULL = 0, CROPS_TRAIN, CROPS_CENTER };
static enum crops crops_mode;
static bool do_resize, dct_scale = true, stream = true;
static enum resize_filter filter = RESIZE_BILINEAR;
static int out_size = 224;
static uint64_t crop_seed = 0x5eed;

struct file {
	char *path;
	uint8_t *data;
	size_t len;
};

struct jerr {
	struct jpeg_error_mgr pub; /* first: libjpeg casts to it */
	jmp_buf env;
	char msg[JMSG_LENGTH_MAX];
};

struct thread {
	pthread_t tid;
	int id;
	struct jpeg_decompress_struct cinfo;
	struct jerr jerr;
	uint8_t *buf;              /* whole decoded image, reused */
	size_t cap;
	JSAMPROW *rows;
	size_t rows_cap;
	decoder_t *dec;            /* --crops: the daemon's decoder and resizer */
	resizer_t *rz;
	uint8_t *out;              /* --resize output, out_size^2 x 3 */
	uint64_t images, pixels, checksum;
	int failed;                /* index of the file that failed + 1 */
	char why[JMSG_LENGTH_MAX];
};

static struct file *files;
static size_t n_files, cap_files;
static uint64_t total_items;    /* passes * n_files */
static uint64_t warmup_items;
static atomic_uint_fast64_t next_item;
static atomic_uint_fast64_t next_warm;
static atomic_int stop;
static pthread_barrier_t start_barrier;

static void jerr_exit(j_common_ptr ci)
{
	struct jerr *e = (struct jerr *)ci->err;

	ci->err->format_message(ci, e->msg);
	longjmp(e->env, 1);
}

static void jerr_output(j_common_ptr ci)
{
	(void)ci; /* warnings stay quiet: a corrupt-data warning still decodes */
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

static int grow(void **p, size_t *cap, size_t need)
{
	if (*cap >= need)
		return 0;
	void *q = realloc(*p, need);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = need;
	return 0;
}

/* Decode one whole file into t->buf. Returns 0 or -1 with t->why. */
static int decode_one(struct thread *t, const struct file *f)
{
	struct jpeg_decompress_struct *ci = &t->cinfo;

	if (setjmp(t->jerr.env)) {
		snprintf(t->why, sizeof(t->why), "%s", t->jerr.msg);
		jpeg_abort_decompress(ci);
		return -1;
	}
	jpeg_mem_src(ci, f->data, (unsigned long)f->len);
	jpeg_read_header(ci, TRUE);
	/* As the daemon: RGB out (grayscale expanded); CMYK stays CMYK. */
	if (ci->jpeg_color_space == JCS_CMYK || ci->jpeg_color_space == JCS_YCCK)
		ci->out_color_space = JCS_CMYK;
	else
		ci->out_color_space = JCS_RGB;
	ci->dct_method = JDCT_ISLOW;
	ci->do_fancy_upsampling = TRUE;
	ci->scale_num = 1;
	ci->scale_denom = 1;
	jpeg_start_decompress(ci);

	size_t stride = (size_t)ci->output_width * ci->output_components;
	size_t need = stride * ci->output_height;
	if (grow((void **)&t->buf, &t->cap, need) ||
	    grow((void **)&t->rows, &t->rows_cap, ci->output_height * sizeof(JSAMPROW))) {
		snprintf(t->why, sizeof(t->why), "out of memory");
		jpeg_abort_decompress(ci);
		return -1;
	}
	for (JDIMENSION y = 0; y < ci->output_height; y++)
		t->rows[y] = t->buf + y * stride;
	while (ci->output_scanline < ci->output_height) {
		JDIMENSION y = ci->output_scanline;
		jpeg_read_scanlines(ci, t->rows + y, ci->output_height - y);
	}
	/* A cheap checksum so the work is observable (one byte per row). */
	for (JDIMENSION y = 0; y < ci->output_height; y++)
		t->checksum += t->rows[y][(y * 7u) % stride];
	t->pixels += (uint64_t)ci->output_width * ci->output_height;
	jpeg_finish_decompress(ci);
	return 0;
}

static void feed(void *ctx, const uint8_t *rows, size_t stride, int row0, int n)
{
	resize_stream_rows(ctx, rows, stride, row0, n);
}

/* --resize as the daemon's sample.c does it: the decoder's rows straight
 * into the horizontal pass. 0, -1 with t->why, or -EAGAIN where the
 * resample does not stream (a crop or one pass: region_one's path). */
static int region_stream(struct thread *t, int W, int H, int denom, double sx0,
			 double sy0, double sx1, double sy1, int rx0, int ry0,
			 int rx1, int ry1)
{
	int rc;

	if (crops_mode == CROPS_CENTER && denom == 1) {
		struct center_geom g;

		augment_center_geom(W, H, 256, (unsigned)out_size, &g);
		rc = resize_stream_begin_crop(t->rz, filter, rx0, ry0, rx1 - rx0, ry1 - ry0,
					      W, H, g.new_w, g.new_h, g.left, g.top,
					      out_size, out_size);
	} else {
		rc = resize_stream_begin_ex(t->rz, filter, 0, rx1 - rx0, ry1 - ry0,
					    sx0 - rx0, sy0 - ry0, sx1 - rx0, sy1 - ry0,
					    out_size, out_size);
	}
	if (rc == -EAGAIN)
		return rc;
	if (rc == 0 && decoder_read_stream(t->dec, denom, rx0, ry0, rx1, ry1, feed, t->rz)) {
		snprintf(t->why, sizeof(t->why), "%s", decoder_error(t->dec));
		return -1;
	}
	if (rc == 0)
		rc = resize_stream_end(t->rz, t->out, (size_t)out_size * 3);
	if (rc) {
		snprintf(t->why, sizeof(t->why), "resize failed: %s", strerror(-rc));
		return -1;
	}
	t->pixels += (uint64_t)(rx1 - rx0) * (uint64_t)(ry1 - ry0);
	t->checksum += t->out[(size_t)out_size * out_size * 3 / 2];
	return 0;
}

/*
 * Item `item` of file f in --crops mode: batch.c's load_sample without the
 * file read (the file is in memory) and without the per-sample metadata.
 * Returns 0 or -1 with t->why.
 */
static int region_one(struct thread *t, const struct file *f, uint64_t item)
{
	const double scale[2] = { 0.08, 1.0 }, ratio[2] = { 3.0 / 4.0, 4.0 / 3.0 };
	uint64_t file = item % n_files;
	struct crop_box box;
	struct decoded d;
	rng_t r;
	int W, H, sw, sh, rc, denom = 1;

	rc = decoder_open(t->dec, f->data, f->len, NULL, &W, &H);
	if (rc)
		goto fail;
	if (crops_mode == CROPS_TRAIN) {
		rng_init(&r, crop_seed, (uint32_t)(item / n_files), (uint32_t)(file / 128),
			 (uint32_t)(file % 128), RNG_SAMPLE, 0);
		augment_rrc(&r, W, H, scale, ratio, &box);
	} else {
		augment_center(W, H, 256, (unsigned)out_size, &box);
	}
	for (int dd = 8; dct_scale && dd >= 2; dd /= 2) {
		if ((box.x1 - box.x0) / dd >= out_size && (box.y1 - box.y0) / dd >= out_size) {
			denom = dd;
			break;
		}
	}
	decoder_scaled_size(t->dec, denom, &sw, &sh);
	double sx0 = box.x0 / denom, sy0 = box.y0 / denom;
	double sx1 = fmin(box.x1 / denom, sw), sy1 = fmin(box.y1 / denom, sh);
	double margin = 0;
	if (crops_mode == CROPS_CENTER) {
		double sc = fmax((sx1 - sx0) / out_size, (sy1 - sy0) / out_size);
		margin = ceil((filter == RESIZE_BICUBIC ? 2.0 : 1.0) * fmax(sc, 1.0)) + 1;
	}
	int rx0 = (int)fmax(floor(sx0 - margin), 0);
	int ry0 = (int)fmax(floor(sy0 - margin), 0);
	int rx1 = (int)fmin(ceil(sx1 + margin), sw);
	int ry1 = (int)fmin(ceil(sy1 + margin), sh);
	if (do_resize && stream) {
		rc = region_stream(t, W, H, denom, sx0, sy0, sx1, sy1, rx0, ry0, rx1, ry1);
		if (rc != -EAGAIN)
			return rc;
	}
	rc = decoder_read(t->dec, denom, rx0, ry0, rx1, ry1, &d);
	if (rc)
		goto fail;
	t->pixels += (uint64_t)d.width * (uint64_t)d.height;
	if (!do_resize) {
		t->checksum += d.rgb[(size_t)(d.height / 2) * d.stride + (size_t)d.width / 2 * 3];
		return 0;
	}
	if (crops_mode == CROPS_CENTER && denom == 1) {
		/* as batch.c: the whole Resize's coefficients, then the crop */
		struct center_geom g;

		augment_center_geom(W, H, 256, (unsigned)out_size, &g);
		rc = resize_rgb_crop(t->rz, filter, d.rgb, rx0, ry0, d.width, d.height,
				     d.stride, W, H, g.new_w, g.new_h, g.left, g.top, t->out,
				     out_size, out_size, (size_t)out_size * 3);
	} else {
		rc = resize_rgb(t->rz, filter, d.rgb, d.width, d.height, d.stride, sx0 - rx0,
				sy0 - ry0, sx1 - rx0, sy1 - ry0, t->out, out_size, out_size,
				(size_t)out_size * 3);
	}
	if (rc) {
		snprintf(t->why, sizeof(t->why), "resize failed: %s", strerror(-rc));
		return -1;
	}
	t->checksum += t->out[(size_t)out_size * out_size * 3 / 2];
	return 0;
fail:
	snprintf(t->why, sizeof(t->why), "%s", decoder_error(t->dec));
	return -1;
}

static int run_items(struct thread *t, atomic_uint_fast64_t *counter, uint64_t limit)
{
	for (;;) {
		if (atomic_load_explicit(&stop, memory_order_relaxed))
			return -1;
		uint64_t i = atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
		if (i >= limit)
			return 0;
		const struct file *f = &files[i % n_files];
		if (crops_mode ? region_one(t, f, i) : decode_one(t, f)) {
			t->failed = (int)(i % n_files) + 1;
			atomic_store(&stop, 1);
			return -1;
		}
		t->images++;
	}
}

static void *thread_main(void *arg)
{
	struct thread *t = arg;

	t->cinfo.err = jpeg_std_error(&t->jerr.pub);
	t->jerr.pub.error_exit = jerr_exit;
	t->jerr.pub.output_message = jerr_output;
	jpeg_create_decompress(&t->cinfo);
	if (crops_mode) {
		t->dec = decoder_new();
		t->rz = resizer_new();
		t->out = malloc((size_t)out_size * (size_t)out_size * 3);
		if (!t->dec || !t->rz || !t->out) {
			snprintf(t->why, sizeof(t->why), "out of memory");
			t->failed = 1;
			atomic_store(&stop, 1);
		}
	}

	run_items(t, &next_warm, warmup_items);
	t->images = t->pixels = 0;
	pthread_barrier_wait(&start_barrier);
	run_items(t, &next_item, total_items);

	jpeg_destroy_decompress(&t->cinfo);
	decoder_destroy(&t->dec);
	resizer_destroy(&t->rz);
	free(t->out);
	return NULL;
}

static int add_file(const char *path)
{
	if (n_files == cap_files) {
		size_t nc = cap_files ? cap_files * 2 : 1024;
		struct file *nf = realloc(files, nc * sizeof(*nf));
		if (!nf)
			return -ENOMEM;
		files = nf;
		cap_files = nc;
	}
	char *dup = strdup(path);
	if (!dup)
		return -ENOMEM;
	files[n_files++] = (struct file){ .path = dup, .data = NULL, .len = 0 };
	return 0;
}

static int read_manifest(const char *manifest, const char *root)
{
	char dir[4096], line[8192], path[8192 + 4096];
	FILE *fp = fopen(manifest, "r");
	int lineno = 0;

	if (!fp) {
		fprintf(stderr, "decode_ceiling: cannot open manifest '%s': %s\n",
			manifest, strerror(errno));
		return -1;
	}
	if (!root) {
		snprintf(dir, sizeof(dir), "%s", manifest);
		char *slash = strrchr(dir, '/');
		if (slash)
			*slash = '\0';
		else
			snprintf(dir, sizeof(dir), ".");
		root = dir;
	}
	while (fgets(line, sizeof(line), fp)) {
		lineno++;
		line[strcspn(line, "\t\r\n")] = '\0';
		if (!line[0] || line[0] == '#')
			continue;
		if (line[0] == '/')
			snprintf(path, sizeof(path), "%s", line);
		else
			snprintf(path, sizeof(path), "%s/%s", root, line);
		if (add_file(path)) {
			fclose(fp);
			fprintf(stderr, "decode_ceiling: out of memory\n");
			return -1;
		}
	}
	fclose(fp);
	return 0;
}

static int load_file(struct file *f)
{
	struct stat st;
	int fd = open(f->path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st)) {
		fprintf(stderr, "decode_ceiling: cannot read '%s': %s\n", f->path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	f->len = (size_t)st.st_size;
	f->data = malloc(f->len ? f->len : 1);
	if (!f->data) {
		close(fd);
		fprintf(stderr, "decode_ceiling: out of memory for '%s'\n", f->path);
		return -1;
	}
	size_t got = 0;
	while (got < f->len) {
		ssize_t n = read(fd, f->data + got, f->len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(stderr, "decode_ceiling: cannot read '%s': %s\n", f->path,
				n < 0 ? strerror(errno) : "short read");
			close(fd);
			return -1;
		}
		got += (size_t)n;
	}
	close(fd);
	return 0;
}

static void usage(FILE *out)
{
	fputs("usage: decode_ceiling [-t THREADS] [-r PASSES] [-w WARMUP] [--root DIR]\n"
	      "                      [-m MANIFEST] [--json] [FILE]...\n"
	      "\n"
	      "Fully decode every file with libjpeg-turbo on THREADS threads (default: online\n"
	      "CPUs), PASSES times (default 3), from memory; print images per second.\n"
	      "  -t, --threads N    decoding threads\n"
	      "  -r, --passes N     passes over the file list (timed)\n"
	      "  -w, --warmup N     images decoded before the clock starts (default: THREADS*8)\n"
	      "  -m, --manifest F   file of 'path<TAB>class' (or 'path') lines\n"
	      "      --root DIR     folder manifest paths are relative to (default: its folder)\n"
	      "      --crops train|center  region-decode the train pipeline's random-resized\n"
	      "                     crops (or val's center crop) with the daemon's decoder\n"
	      "                     instead of decoding whole files\n"
	      "      --resize       with --crops: also resample each region to SIZE^2\n"
	      "      --size N       output side for --crops/--resize (default 224)\n"
	      "      --bicubic      with --resize: bicubic instead of bilinear\n"
	      "      --no-stream    with --resize: decode the whole region, then resize\n"
	      "      --no-dct-scale with --crops: never decode at 1/2, 1/4, 1/8\n"
	      "      --seed N       key of the crop generator (default 24301)\n"
	      "      --json         one JSON object on stdout instead of text\n",
	      out);
}

static int parse_uint(const char *s, const char *what, long max, long *out)
{
	char *end;

	errno = 0;
	long v = strtol(s ? s : "", &end, 10);
	if (!s || errno || *end || end == s || v < 0 || v > max) {
		fprintf(stderr, "decode_ceiling: %s: expected 0..%ld, got '%s'\n", what, max,
			s ? s : "");
		return -1;
	}
	*out = v;
	return 0;
}

static void free_files(void)
{
	for (size_t i = 0; i < n_files; i++) {
		free(files[i].path);
		free(files[i].data);
	}
	free(files);
	files = NULL;
	n_files = cap_files = 0;
}

static void print_result(bool json, long threads, long passes, uint64_t bytes,
			 uint64_t images, uint64_t pixels, uint64_t checksum,
			 double wall, double cpu, bool ok)
{
	double ips = wall > 0 ? (double)images / wall : 0;
	double mps = wall > 0 ? (double)pixels / wall / 1e6 : 0;
	double pct = wall > 0 ? 100.0 * cpu / wall : 0;

	if (json)
		printf("{\"threads\": %ld, \"passes\": %ld, \"files\": %zu, \"file_bytes\": %llu, "
		       "\"images\": %llu, \"seconds\": %.6f, \"img_per_s\": %.3f, "
		       "\"mpix_per_s\": %.3f, \"cpu_seconds\": %.6f, \"cpu_percent\": %.1f, "
		       "\"checksum\": %llu, \"crops\": \"%s\", \"resize\": %s, \"ok\": %s}\n",
		       threads, passes, n_files, (unsigned long long)bytes,
		       (unsigned long long)images, wall, ips, mps, cpu, pct,
		       (unsigned long long)checksum,
		       crops_mode == CROPS_TRAIN ? "train" : crops_mode == CROPS_CENTER ? "center" : "full",
		       do_resize ? "true" : "false", ok ? "true" : "false");
	else
		printf("decode_ceiling: %llu images (%zu files x %ld passes, %.1f MB) on %ld threads "
		       "in %.3f s: %.1f img/s, %.1f MP/s, CPU %.0f%%\n",
		       (unsigned long long)images, n_files, passes, (double)bytes / 1e6, threads,
		       wall, ips, mps, pct);
}

int main(int argc, char **argv)
{
	long threads = sysconf(_SC_NPROCESSORS_ONLN), passes = 3, warmup = -1;
	const char *manifest = NULL, *root = NULL;
	struct thread *ts = NULL;
	bool json = false, barrier = false;
	long started = 0;
	int rc = 64;

	if (threads < 1)
		threads = 1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
			if (parse_uint(v, "threads", 1024, &threads))
				goto out;
			if (threads < 1) {
				fprintf(stderr, "decode_ceiling: threads: must be >= 1\n");
				goto out;
			}
			i++;
		} else if (!strcmp(a, "-r") || !strcmp(a, "--passes")) {
			if (parse_uint(v, "passes", 1000000, &passes))
				goto out;
			if (passes < 1) {
				fprintf(stderr, "decode_ceiling: passes: must be >= 1\n");
				goto out;
			}
			i++;
		} else if (!strcmp(a, "-w") || !strcmp(a, "--warmup")) {
			if (parse_uint(v, "warmup", 100000000, &warmup))
				goto out;
			i++;
		} else if (!strcmp(a, "-m") || !strcmp(a, "--manifest") || !strcmp(a, "--root")) {
			if (!v) {
				usage(stderr);
				goto out;
			}
			if (a[2] == 'r')
				root = v;
			else
				manifest = v;
			i++;
		} else if (!strcmp(a, "--crops")) {
			if (v && !strcmp(v, "train"))
				crops_mode = CROPS_TRAIN;
			else if (v && !strcmp(v, "center"))
				crops_mode = CROPS_CENTER;
			else {
				fprintf(stderr, "decode_ceiling: --crops: expected train or center, got '%s'\n",
					v ? v : "");
				goto out;
			}
			i++;
		} else if (!strcmp(a, "--size") || !strcmp(a, "--seed")) {
			long n;
			if (parse_uint(v, a + 2, 1 << 20, &n))
				goto out;
			if (a[3] == 'i') {
				if (n < 1) {
					fprintf(stderr, "decode_ceiling: size: must be >= 1\n");
					goto out;
				}
				out_size = (int)n;
			} else {
				crop_seed = (uint64_t)n;
			}
			i++;
		} else if (!strcmp(a, "--resize")) {
			do_resize = true;
		} else if (!strcmp(a, "--no-stream")) {
			stream = false;
		} else if (!strcmp(a, "--bicubic")) {
			filter = RESIZE_BICUBIC;
		} else if (!strcmp(a, "--no-dct-scale")) {
			dct_scale = false;
		} else if (!strcmp(a, "--json")) {
			json = true;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			rc = 0;
			goto out;
		} else if (a[0] == '-' && a[1]) {
			fprintf(stderr, "decode_ceiling: unknown option '%s'\n", a);
			usage(stderr);
			goto out;
		} else if (add_file(a)) {
			fprintf(stderr, "decode_ceiling: out of memory\n");
			rc = 1;
			goto out;
		}
	}
	if (do_resize && !crops_mode) {
		fprintf(stderr, "decode_ceiling: --resize needs --crops\n");
		goto out;
	}
	rc = 1;
	if (manifest && read_manifest(manifest, root))
		goto out;
	if (n_files == 0) {
		fprintf(stderr, "decode_ceiling: no files given\n");
		usage(stderr);
		rc = 64;
		goto out;
	}

	uint64_t bytes = 0;
	for (size_t i = 0; i < n_files; i++) {
		if (load_file(&files[i]))
			goto out;
		bytes += files[i].len;
	}
	total_items = (uint64_t)passes * n_files;
	warmup_items = warmup < 0 ? (uint64_t)threads * 8 : (uint64_t)warmup;

	ts = calloc((size_t)threads, sizeof(*ts));
	if (!ts || pthread_barrier_init(&start_barrier, NULL, (unsigned)threads + 1)) {
		fprintf(stderr, "decode_ceiling: out of memory\n");
		goto out;
	}
	barrier = true;
	for (long i = 0; i < threads; i++) {
		ts[i].id = (int)i;
		int e = pthread_create(&ts[i].tid, NULL, thread_main, &ts[i]);
		if (e) {
			/* The started threads wait on the barrier for ever: exit. */
			fprintf(stderr, "decode_ceiling: cannot start thread %ld: %s\n", i, strerror(e));
			exit(1);
		}
		started++;
	}
	pthread_barrier_wait(&start_barrier);
	double cpu0 = cpu_seconds(), t0 = now();
	for (long i = 0; i < started; i++)
		pthread_join(ts[i].tid, NULL);
	double t1 = now(), cpu1 = cpu_seconds();

	uint64_t images = 0, pixels = 0, checksum = 0;
	rc = 0;
	for (long i = 0; i < started; i++) {
		images += ts[i].images;
		pixels += ts[i].pixels;
		checksum += ts[i].checksum;
		if (ts[i].failed) {
			fprintf(stderr, "decode_ceiling: '%s': %s\n",
				files[ts[i].failed - 1].path, ts[i].why);
			rc = 1;
		}
	}
	print_result(json, threads, passes, bytes, images, pixels, checksum, t1 - t0,
		     cpu1 - cpu0, rc == 0);
out:
	for (long i = 0; ts && i < started; i++) {
		free(ts[i].buf);
		free(ts[i].rows);
	}
	free(ts);
	free_files();
	if (barrier)
		pthread_barrier_destroy(&start_barrier);
	return rc;
}
