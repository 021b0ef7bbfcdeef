/*
 * fuzz_config.c — libFuzzer target for the config loader (daemon/config.c
 * over inih).
 *
 * config_load() reads a path, so the input is written to
 * /dev/shm/fuzz_config.PID.ini (or under $TMPDIR when /dev/shm is missing),
 * loaded from there the way the daemon loads its config, and removed. --set overrides
 * come from the input as well:
 *
 *   - every line that starts with "#set " (a comment to the INI parser)
 *     gives one override, the rest of the line: "#set pipeline.a.size=1";
 *     at most MAX_SETS of them;
 *   - when there is none, one override is derived from the input: a key
 *     picked from a fixed table by a hash of the input, with the input's
 *     last line as its value, so the override parsers always get fuzzed.
 *
 * The error buffer is heap-allocated at a size taken from the hash (1 to
 * 300 bytes), so a write past errlen is caught by ASan.
 *
 * Properties checked (abort() on violation):
 *   - rc is 0 or a negative errno (-EINVAL, -ENOMEM, -EFBIG...);
 *   - on failure *out is NULL and err is a non-empty, NUL-terminated
 *     single line; on success err is empty;
 *   - on success: 1..8 endpoints, every pipeline's dataset index valid and
 *     its name found by config_find_pipeline(), dataset roots set, names
 *     NUL-terminated, config_canonical() succeeds;
 *   - config_destroy() frees everything (LeakSanitizer at exit of each
 *     input) and NULLs the pointer.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_SETS 8
#define SET_MAX  512 /* longest override taken from the input */

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "fuzz_config: %s:%d: check failed: %s\n", \
				__FILE__, __LINE__, #cond);                  \
			abort();                                             \
		}                                                            \
	} while (0)

static char *ini_path;

static void free_path(void)
{
	free(ini_path);
	ini_path = NULL;
}

/* A per-process file name; the file exists only while config_load() runs,
 * so nothing is left behind (a crash leaves that one input). */
static const char *make_ini_path(void)
{
	const char *base = "/dev/shm";
	struct stat st;

	if (ini_path)
		return ini_path;
	if (stat(base, &st) < 0 || !S_ISDIR(st.st_mode) || access(base, W_OK) < 0) {
		base = getenv("TMPDIR");
		if (!base || !*base)
			base = "/tmp";
	}
	CHECK(asprintf(&ini_path, "%s/fuzz_config.%d.ini", base, (int)getpid()) > 0);
	atexit(free_path);
	return ini_path;
}

static void write_file(const char *path, const uint8_t *data, size_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	size_t off = 0;

	CHECK(fd >= 0);
	while (off < size) {
		ssize_t n = write(fd, data + off, size - off);

		CHECK(n > 0);
		off += (size_t)n;
	}
	CHECK(close(fd) == 0);
}

/* FNV-1a: deterministic per input, so a crash reproduces. */
static uint32_t hash(const uint8_t *data, size_t size)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < size; i++)
		h = (h ^ data[i]) * 16777619u;
	return h;
}

/* Keys of every kind and section (new sections included), for the
 * override derived when the input has no "#set" line. */
static const char *const derived_keys[] = {
	"server.workers", "server.seed", "server.endpoint", "server.max_pixels",
	"server.on_decode_error", "server.log_level",
	"dataset.root", "dataset.manifest", "dataset.extra.root",
	"dataset.follow_symlinks",
	"pipeline.train.size", "pipeline.train.scale", "pipeline.train.mean",
	"pipeline.train.cutout_size", "pipeline.train.cutout_fill",
	"pipeline.train.cutmix_minmax", "pipeline.train.crop",
	"pipeline.train.dataset", "pipeline.train.eval", "pipeline.val.resize",
	"pipeline.new.batch_size", "pipeline.x-y_z.mode",
	"pipeline", "nosuch.key", "server.", ".x",
};

static char *dup_n(const char *s, size_t n)
{
	char *out = malloc(n + 1);

	CHECK(out != NULL);
	memcpy(out, s, n);
	out[n] = '\0';
	return out;
}

/* The overrides of the input (malloc'd strings); returns their count. */
static int collect_sets(const uint8_t *data, size_t size, uint32_t h,
			char **sets)
{
	const char *p = (const char *)data, *end = p + size;
	int n = 0;

	while (p < end && n < MAX_SETS) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);

		if (len > 5 && !memcmp(p, "#set ", 5)) {
			size_t l = len - 5;

			if (l && p[5 + l - 1] == '\r')
				l--;
			if (l > SET_MAX)
				l = SET_MAX;
			/* An override is a C string: it ends at a NUL byte. */
			sets[n++] = dup_n(p + 5, strnlen(p + 5, l));
		}
		p = nl ? nl + 1 : end;
	}
	if (n == 0) {
		const char *key = derived_keys[h % (sizeof(derived_keys) /
						    sizeof(derived_keys[0]))];
		const char *last = (const char *)data;
		size_t l;
		char *s;

		for (const char *q = last; q < end; q++)
			if (*q == '\n' && q + 1 < end)
				last = q + 1;
		l = (size_t)(end - last);
		if (l && last[l - 1] == '\n')
			l--;
		if (l > SET_MAX)
			l = SET_MAX;
		l = strnlen(last, l);
		CHECK(asprintf(&s, "%s=%.*s", key, (int)l, last) > 0);
		sets[n++] = s;
	}
	return n;
}

static void check_config(const config_t *cfg)
{
	char *canon;

	CHECK(cfg->server.n_endpoints >= 1 &&
	      cfg->server.n_endpoints <= CONFIG_MAX_ENDPOINTS);
	for (int i = 0; i < cfg->server.n_endpoints; i++)
		CHECK(cfg->server.endpoints[i] && cfg->server.endpoints[i][0]);
	CHECK(cfg->server.workers >= 1 && cfg->server.workers <= 1024);
	CHECK(cfg->n_datasets >= 1 && cfg->n_datasets <= CONFIG_MAX_DATASETS);
	CHECK(cfg->n_pipelines >= 1 && cfg->n_pipelines <= CONFIG_MAX_PIPELINES);
	for (int i = 0; i < cfg->n_datasets; i++) {
		const struct dataset_cfg *d = &cfg->datasets[i];

		CHECK(memchr(d->name, 0, CONFIG_NAME_MAX) && d->name[0]);
		CHECK(d->root && d->root[0]);
	}
	for (int i = 0; i < cfg->n_pipelines; i++) {
		const struct pipeline_cfg *p = &cfg->pipelines[i];

		CHECK(memchr(p->name, 0, CONFIG_NAME_MAX) && p->name[0]);
		CHECK(config_find_pipeline(cfg, p->name) == i);
		CHECK(p->dataset >= 0 && p->dataset < cfg->n_datasets);
		CHECK(!strcmp(cfg->datasets[p->dataset].name, p->dataset_name));
		CHECK(p->batch_size >= 1 && p->size >= 1 &&
		      p->size <= CONFIG_MAX_SIZE);
		CHECK(p->cutout_holes >= 1 && p->cutout_holes <= CONFIG_MAX_HOLES);
		CHECK(p->cutout_size[0] <= p->cutout_size[1]);
		if (p->crop == CROP_CENTER)
			CHECK(p->resize >= p->size);
		if (p->eval)
			CHECK(p->crop == CROP_CENTER);
		(void)config_pipeline_augments(p);
	}
	CHECK(config_find_pipeline(cfg, "") == -1);
	canon = config_canonical(cfg);
	CHECK(canon != NULL);
	free(canon);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *path = make_ini_path();
	uint32_t h = hash(data, size);
	size_t errlen = 1 + (h >> 8) % 300;
	char *sets[MAX_SETS], *err;
	config_t *cfg = (config_t *)&cfg; /* must be overwritten */
	int n_sets, rc;

	write_file(path, data, size);
	n_sets = collect_sets(data, size, h, sets);
	err = malloc(errlen);
	CHECK(err != NULL);
	memset(err, 'X', errlen);

	rc = config_load(path, sets, n_sets, &cfg, err, errlen);
	unlink(path);
	CHECK(rc <= 0);
	CHECK(memchr(err, 0, errlen) != NULL);
	if (rc == 0) {
		CHECK(cfg != NULL);
		CHECK(err[0] == '\0');
		check_config(cfg);
		config_destroy(&cfg);
		CHECK(cfg == NULL);
	} else {
		CHECK(cfg == NULL);
		CHECK(errlen == 1 || err[0] != '\0');
		CHECK(strchr(err, '\n') == NULL);
	}
	config_destroy(&cfg); /* NULL: a no-op */

	for (int i = 0; i < n_sets; i++)
		free(sets[i]);
	free(err);
	return 0;
}
