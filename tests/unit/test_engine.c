/*
 * test_engine.c — one configuration generation built from a config file
 * and a dataset of real JPEGs written at test time: engine_new (datasets,
 * pipelines, digest; errors name the cause and take the config in every
 * case), references (the last engine_unref frees; NULL-safe, clears the
 * pointer), engine_find_pipeline, and engine_note_bad (every failure
 * counted, each file listed once with its first error, at most
 * ENGINE_BAD_LIST listed, one log line per file, safe from many threads).
 *
 * Each test runs in its own temporary folder (tu_enter_tmpdir). Asserts
 * on the main thread only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "config.h"
#include "engine_int.h"
#include "jpeg_fixtures.h"
#include "log.h"
#include "stats.h"
#include "test_util.h"

/* Sanitizers bring their own allocator, which mallinfo2() does not see. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif

/* ---- fixtures ------------------------------------------------------------ */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char logbuf[1 << 16];
static int log_lines;

static void log_capture(enum log_level lvl, const char *line, void *ctx)
{
	(void)lvl;
	(void)ctx;
	pthread_mutex_lock(&log_lock);
	size_t n = strlen(logbuf);
	snprintf(logbuf + n, sizeof(logbuf) - n, "%s\n", line);
	log_lines++;
	pthread_mutex_unlock(&log_lock);
}

static int setup(void **state)
{
	(void)state;
	logbuf[0] = '\0';
	log_lines = 0;
	log_set_sink(log_capture, NULL);
	return tu_enter_tmpdir("cutmixd-engine");
}

static int teardown(void **state)
{
	(void)state;
	log_set_sink(NULL, NULL);
	return tu_leave_tmpdir();
}

/* data/CLASS/imgNNN.jpg: `per_class` real JPEGs in each of `classes`
 * folders c0, c1, ... */
static void make_dataset(const char *root, int classes, int per_class)
{
	struct jpeg_fixture_spec spec = { .width = 16, .height = 12, .components = 3 };
	uint8_t *jpg;
	size_t len;
	char p[512];

	assert_int_equal(jpeg_fixture_make(&spec, &jpg, &len), 0);
	assert_int_equal(mkdir(root, 0755), 0);
	for (int c = 0; c < classes; c++) {
		snprintf(p, sizeof(p), "%s/c%d", root, c);
		assert_int_equal(mkdir(p, 0755), 0);
		for (int i = 0; i < per_class; i++) {
			snprintf(p, sizeof(p), "%s/c%d/img%03d.jpg", root, c, i);
			tu_write_bytes(p, jpg, len);
		}
	}
	free(jpg);
}

#define CONFIG_TEXT \
	"[server]\nworkers = 2\n" \
	"[dataset]\nroot = data\n" \
	"[pipeline.train]\nsize = 32\nbatch_size = 4\nshuffle = true\n" \
	"[pipeline.val]\nsize = 24\nbatch_size = 2\n"

static config_t *load(const char *text)
{
	config_t *cfg = NULL;
	char err[512] = "";

	tu_write_file("test.ini", text);
	int rc = config_load("test.ini", NULL, 0, &cfg, err, sizeof(err));
	if (rc)
		fprintf(stderr, "config_load: %s\n", err);
	assert_int_equal(rc, 0);
	assert_non_null(cfg);
	return cfg;
}

static engine_t *engine_ok(const char *text, struct stats *st)
{
	config_t *cfg = load(text);
	engine_t *e = NULL;
	char err[512] = "";

	int rc = engine_new(&cfg, st, &e, err, sizeof(err));
	if (rc)
		fprintf(stderr, "engine_new: %s\n", err);
	assert_int_equal(rc, 0);
	assert_null(cfg);
	assert_non_null(e);
	return e;
}

/* ---- engine_new ---------------------------------------------------------- */

static void test_new_builds_everything(void **state)
{
	(void)state;
	struct stats st = { 0 };
	make_dataset("data", 3, 4);
	engine_t *e = engine_ok(CONFIG_TEXT, &st);

	assert_int_equal(atomic_load(&e->refs), 1);
	assert_ptr_equal(e->stats, &st);
	assert_non_null(e->datasets[0]);
	assert_null(e->datasets[1]);
	assert_int_equal(dataset_size(e->datasets[0]), 12);
	assert_int_equal(dataset_num_classes(e->datasets[0]), 3);
	assert_string_equal(dataset_path(e->datasets[0], 5), "c1/img001.jpg");

	int t = engine_find_pipeline(e, "train");
	int v = engine_find_pipeline(e, "val");
	assert_int_equal(t, 0);
	assert_int_equal(v, 1);
	assert_true(engine_find_pipeline(e, "nope") < 0);
	assert_true(engine_find_pipeline(e, "") < 0);
	assert_true(engine_find_pipeline(e, "Train") < 0);

	const struct pipeline_rt *tr = &e->pipelines[t], *va = &e->pipelines[v];
	assert_string_equal(tr->cfg->name, "train");
	assert_ptr_equal(tr->ds, e->datasets[0]);
	assert_int_equal(tr->ds_index, 0);
	assert_non_null(tr->sampler);
	assert_int_equal(tr->pixel_bytes, 32 * 32 * 3);
	assert_int_equal(tr->out_bytes, 32 * 32 * 3); /* uint8 by default */
	assert_int_equal(va->pixel_bytes, 24 * 24 * 3);
	assert_null(e->pipelines[2].sampler);

	assert_int_equal(strlen(e->digest_hex), 2 * DIGEST_SIZE);
	assert_int_equal(strspn(e->digest_hex, "0123456789abcdef"), 2 * DIGEST_SIZE);
	assert_int_equal(e->n_bad_list, 0);
	engine_unref(&e);
	assert_null(e);
}

/* The digest is the same for the same config and files, and changes when
 * a setting that changes batches changes or a file is added. */
static void test_digest_follows_inputs(void **state)
{
	(void)state;
	struct stats st = { 0 };
	make_dataset("data", 2, 3);
	engine_t *a = engine_ok(CONFIG_TEXT, &st);
	engine_t *b = engine_ok(CONFIG_TEXT, &st);
	assert_string_equal(a->digest_hex, b->digest_hex);
	engine_unref(&b);

	b = engine_ok(CONFIG_TEXT "[pipeline.extra]\nsize = 8\n", &st);
	assert_string_not_equal(a->digest_hex, b->digest_hex);
	engine_unref(&b);

	struct jpeg_fixture_spec spec = { .width = 8, .height = 8, .components = 1 };
	uint8_t *jpg;
	size_t len;
	assert_int_equal(jpeg_fixture_make(&spec, &jpg, &len), 0);
	tu_write_bytes("data/c1/zzz.jpg", jpg, len);
	free(jpg);
	b = engine_ok(CONFIG_TEXT, &st);
	assert_int_equal(dataset_size(b->datasets[0]), 7);
	assert_string_not_equal(a->digest_hex, b->digest_hex);
	engine_unref(&b);
	engine_unref(&a);
}

/* A dataset that cannot be opened: -errno, a message naming it, the
 * config taken (and freed) anyway, *out NULL. */
static void test_new_errors(void **state)
{
	(void)state;
	struct stats st = { 0 };
	config_t *cfg = load(CONFIG_TEXT); /* no data/ folder */
	engine_t *e = (engine_t *)&st;     /* must be overwritten with NULL */
	char err[512] = "";

	int rc = engine_new(&cfg, &st, &e, err, sizeof(err));
	assert_true(rc < 0);
	assert_null(cfg);
	assert_null(e);
	assert_non_null(strstr(err, "data"));

	/* An empty dataset is refused as well. */
	assert_int_equal(mkdir("data", 0755), 0);
	assert_int_equal(mkdir("data/c0", 0755), 0);
	cfg = load(CONFIG_TEXT);
	err[0] = '\0';
	rc = engine_new(&cfg, &st, &e, err, sizeof(err));
	assert_int_equal(rc, -ENOENT);
	assert_null(cfg);
	assert_null(e);
	assert_true(strlen(err) > 0);
}

/* ---- references ---------------------------------------------------------- */

static size_t heap_in_use(void)
{
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd;
}

static void test_refs(void **state)
{
	(void)state;
	struct stats st = { 0 };
	make_dataset("data", 2, 2);

	engine_unref(NULL);
	engine_t *none = NULL;
	engine_unref(&none);
	assert_null(none);

	/* One engine first, so one-time allocations of libc (stdio, locale)
	 * are not counted below. */
	engine_t *e = engine_ok(CONFIG_TEXT, &st);
	engine_unref(&e);
	size_t before = heap_in_use();
	e = engine_ok(CONFIG_TEXT, &st);
	size_t built = heap_in_use();
	engine_t *held = engine_ref(e);
	assert_ptr_equal(held, e);
	assert_int_equal(atomic_load(&e->refs), 2);
	engine_t *held2 = engine_ref(e);
	assert_int_equal(atomic_load(&e->refs), 3);

	/* Not the last reference: the pointer is cleared, the engine lives
	 * on (still usable through the other references). */
	engine_unref(&held);
	assert_null(held);
	assert_int_equal(atomic_load(&e->refs), 2);
	engine_unref(&held2);
	assert_null(held2);
	assert_int_equal(atomic_load(&e->refs), 1);
	assert_int_equal(engine_find_pipeline(e, "val"), 1);
	assert_int_equal(dataset_size(e->datasets[0]), 4);
	size_t still = heap_in_use();

	/* The last one frees everything engine_new allocated. */
	engine_unref(&e);
	assert_null(e);
	size_t after = heap_in_use();
#ifndef UNDER_SANITIZER
	/* (Under ASan its leak check covers this instead.)
	 * Small freed blocks may stay in glibc's per-thread cache, which
	 * mallinfo2 counts as in use, hence the slack. */
	assert_true(built - before >= sizeof(engine_t));
	assert_int_equal(still, built);
	assert_true(built - after >= sizeof(engine_t));
	assert_true(after < before + 4096);
#else
	(void)before;
	(void)built;
	(void)still;
	(void)after;
#endif
}

/* ---- bad files ----------------------------------------------------------- */

static int count_str(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

static void test_note_bad(void **state)
{
	(void)state;
	struct stats st = { 0 };
	make_dataset("data", 2, 3);
	engine_t *e = engine_ok(CONFIG_TEXT, &st);
	logbuf[0] = '\0';
	log_lines = 0;

	engine_note_bad(e, 0, 4, "bad huffman code");
	engine_note_bad(e, 0, 4, "premature end of data");
	engine_note_bad(e, 0, 4, "bad huffman code");
	engine_note_bad(e, 0, 1, "not a jpeg");

	assert_int_equal(stats_get(&st, decode_errors), 4);
	assert_int_equal(stats_get(&st, bad_files), 2);
	assert_int_equal(e->n_bad_list, 2);
	assert_int_equal(e->bad_list[0].ds, 0);
	assert_int_equal(e->bad_list[0].index, 4);
	assert_int_equal(e->bad_list[0].failures, 3);
	assert_string_equal(e->bad_list[0].why, "bad huffman code"); /* the first */
	assert_int_equal(e->bad_list[1].index, 1);
	assert_int_equal(e->bad_list[1].failures, 1);
	assert_string_equal(e->bad_list[1].why, "not a jpeg");
	assert_int_equal(atomic_load(&e->bad[0][4]), 1);
	assert_int_equal(atomic_load(&e->bad[0][1]), 1);
	assert_int_equal(atomic_load(&e->bad[0][0]), 0);

	/* One log line per file, with its path (relative: the daemon's
	 * absolute root stays out of it) and first error. */
	assert_int_equal(log_lines, 2);
	assert_non_null(strstr(logbuf, "decode: 'c1/img001.jpg': bad huffman code"));
	assert_non_null(strstr(logbuf, "decode: 'c0/img001.jpg': not a jpeg"));
	assert_null(strstr(logbuf, "premature"));

	/* A long error is cut to the entry, still NUL-terminated. */
	char longwhy[400];
	memset(longwhy, 'x', sizeof(longwhy) - 1);
	longwhy[sizeof(longwhy) - 1] = '\0';
	engine_note_bad(e, 0, 0, longwhy);
	assert_int_equal(e->n_bad_list, 3);
	assert_int_equal(strlen(e->bad_list[2].why), sizeof(e->bad_list[2].why) - 1);

	/* A new engine (a reload) starts with an empty list. */
	engine_t *e2 = engine_ok(CONFIG_TEXT, &st);
	assert_int_equal(e2->n_bad_list, 0);
	assert_int_equal(atomic_load(&e2->bad[0][4]), 0);
	engine_unref(&e2);
	engine_unref(&e);
}

/* More bad files than the list holds: all counted, ENGINE_BAD_LIST listed
 * (the first ones), each logged once. */
static void test_bad_list_bound(void **state)
{
	(void)state;
	struct stats st = { 0 };
	const int files = ENGINE_BAD_LIST + 44;
	make_dataset("data", 1, files);
	engine_t *e = engine_ok(CONFIG_TEXT, &st);
	log_set_sink(NULL, NULL);   /* 300 warnings: count, don't keep */
	log_set_level(LOGL_ERR);

	for (int i = 0; i < files; i++)
		engine_note_bad(e, 0, (uint32_t)i, "corrupt");
	engine_note_bad(e, 0, (uint32_t)files - 1, "corrupt"); /* unlisted */
	engine_note_bad(e, 0, 0, "corrupt");                  /* listed */
	log_set_level(LOGL_INFO);

	assert_int_equal(e->n_bad_list, ENGINE_BAD_LIST);
	assert_int_equal(stats_get(&st, decode_errors), files + 2);
	assert_int_equal(stats_get(&st, bad_files), files);
	for (int k = 0; k < ENGINE_BAD_LIST; k++)
		assert_int_equal(e->bad_list[k].index, (uint32_t)k);
	assert_int_equal(e->bad_list[0].failures, 2);
	assert_int_equal(e->bad_list[ENGINE_BAD_LIST - 1].failures, 1);
	for (int i = 0; i < files; i++)
		assert_int_equal(atomic_load(&e->bad[0][i]), 1);
	engine_unref(&e);
}

/* Workers report failures at once: the counts and the list stay exact. */
#define NB_THREADS 4
#define NB_FILES 50
#define NB_ROUNDS 5

static void *note_main(void *arg)
{
	engine_t *e = arg;

	for (int r = 0; r < NB_ROUNDS; r++)
		for (uint32_t i = 0; i < NB_FILES; i++)
			engine_note_bad(e, 0, i, "bad");
	return NULL;
}

static void test_note_bad_threads(void **state)
{
	(void)state;
	struct stats st = { 0 };
	make_dataset("data", 2, NB_FILES / 2);
	engine_t *e = engine_ok(CONFIG_TEXT, &st);
	logbuf[0] = '\0';
	log_lines = 0;
	pthread_t th[NB_THREADS];

	for (int i = 0; i < NB_THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, note_main, e), 0);
	for (int i = 0; i < NB_THREADS; i++)
		pthread_join(th[i], NULL);

	assert_int_equal(stats_get(&st, decode_errors), NB_THREADS * NB_ROUNDS * NB_FILES);
	assert_int_equal(stats_get(&st, bad_files), NB_FILES);
	assert_int_equal(e->n_bad_list, NB_FILES);
	int seen[NB_FILES] = { 0 };
	for (uint32_t k = 0; k < e->n_bad_list; k++) {
		assert_in_range(e->bad_list[k].index, 0, NB_FILES - 1);
		seen[e->bad_list[k].index]++;
		assert_int_equal(e->bad_list[k].failures, NB_THREADS * NB_ROUNDS);
	}
	for (int i = 0; i < NB_FILES; i++)
		assert_int_equal(seen[i], 1);
	assert_int_equal(log_lines, NB_FILES);
	assert_int_equal(count_str(logbuf, "'c0/img000.jpg'"), 1);
	engine_unref(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_new_builds_everything, setup, teardown),
		cmocka_unit_test_setup_teardown(test_digest_follows_inputs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_new_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_note_bad, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_list_bound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_note_bad_threads, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
