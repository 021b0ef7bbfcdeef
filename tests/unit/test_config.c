/*
 * test_config.c — config_load() against real files in a temporary folder:
 * defaults, every key, every kind of bad value with its exact message and
 * line, sections, duplicates, the cross-field rules, --set overrides, long
 * lines, relative paths and the canonical text.
 *
 * Each test runs in a fresh mkdtemp() folder that is also the working
 * directory, so the config is "train.ini" and messages read exactly as a
 * user sees them ("train.ini:7: [pipeline.train] size: ...").
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <unistd.h>
#include <sys/stat.h>
#include <cmocka.h>
#include <ini.h>

#include "config.h"
#include "log.h"
#include "test_util.h"

static int setup(void **state)
{
	(void)state;
	return tu_enter_tmpdir("test_config");
}

static int teardown(void **state)
{
	(void)state;
	return tu_leave_tmpdir();
}

/* Write train.ini and load it. */
static int load(const char *text, char *const *sets, int n_sets,
		config_t **cfg, char *err, size_t errlen)
{
	tu_write_file("train.ini", text);
	return config_load("train.ini", sets, n_sets, cfg, err, errlen);
}

static config_t *load_ok(const char *text, char *const *sets, int n_sets)
{
	config_t *cfg = NULL;
	char err[1024] = "";
	int rc = load(text, sets, n_sets, &cfg, err, sizeof(err));

	if (rc)
		print_error("unexpected error: %s\n", err);
	assert_int_equal(rc, 0);
	assert_string_equal(err, "");
	assert_non_null(cfg);
	return cfg;
}

static void expect_error(const char *text, char *const *sets, int n_sets,
			 const char *want)
{
	config_t *cfg = (config_t *)(uintptr_t)1;
	char err[1024] = "";
	int rc = load(text, sets, n_sets, &cfg, err, sizeof(err));

	assert_int_equal(rc, -EINVAL);
	assert_null(cfg);
	assert_string_equal(err, want);
}

static char *real_tmpdir(void)
{
	char *p = realpath(tu_tmpdir(), NULL);

	assert_non_null(p);
	return p;
}

#define MINIMAL "[dataset]\nroot = data\n[pipeline.train]\n"

/* ------------------------------------------------------------- defaults */

static void test_defaults(void **state)
{
	config_t *cfg;
	const struct server_cfg *sv;
	const struct dataset_cfg *d;
	const struct pipeline_cfg *p;
	char *dir = real_tmpdir(), want[PATH_MAX + 8];
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	(void)state;
	/* inih's process-wide options are put back after the parse */
	int max_line = ini_max_line;
	bool multiline = ini_allow_multiline, stop = ini_stop_on_first_error;
	char *inline_prefixes = ini_inline_comment_prefixes;

	cfg = load_ok(MINIMAL, NULL, 0);
	assert_string_equal(cfg->path, "train.ini");
	assert_int_equal(ini_max_line, max_line);
	assert_true(ini_allow_multiline == multiline);
	assert_true(ini_stop_on_first_error == stop);
	assert_ptr_equal(ini_inline_comment_prefixes, inline_prefixes);

	sv = &cfg->server;
	assert_int_equal(sv->n_endpoints, 1);
	assert_string_equal(sv->endpoints[0], "tcp://127.0.0.1:5555");
	assert_null(sv->endpoints[1]);
	assert_int_equal(sv->workers, cpus > 1024 ? 1024 : cpus < 1 ? 1 : cpus);
	assert_true(sv->seed == 0);
	assert_int_equal(sv->max_inflight, 0);
	assert_int_equal(sv->max_client_window, 16);
	assert_int_equal(sv->max_clients, 1024);
	assert_true(sv->max_pixels == 50000000);
	assert_true(sv->max_file_bytes == 67108864);
	assert_int_equal(sv->on_decode_error, ON_ERROR_REPLACE);
	assert_int_equal(sv->idle_timeout_s, 300);
	assert_int_equal(sv->log_level, LOGL_INFO);

	assert_int_equal(cfg->n_datasets, 1);
	d = &cfg->datasets[0];
	assert_string_equal(d->name, "default");
	snprintf(want, sizeof(want), "%s/data", dir);
	assert_string_equal(d->root, want);
	assert_null(d->manifest);
	assert_false(d->follow_symlinks);
	assert_int_equal(d->line, 1);

	assert_int_equal(cfg->n_pipelines, 1);
	p = &cfg->pipelines[0];
	assert_string_equal(p->name, "train");
	assert_int_equal(p->line, 3);
	assert_int_equal(p->dataset, 0);
	assert_string_equal(p->dataset_name, "default");
	assert_false(p->eval);
	assert_true(p->shuffle);
	assert_false(p->drop_last);
	assert_int_equal(p->batch_size, 128);
	assert_int_equal(p->size, 224);
	assert_int_equal(p->crop, CROP_RANDOM_RESIZED);
	assert_int_equal(p->resize, 0);
	assert_true(p->scale[0] == 0.08 && p->scale[1] == 1.0);
	assert_true(p->ratio[0] == 0.75 && p->ratio[1] == 4.0 / 3.0);
	assert_true(p->flip == 0.5);
	assert_true(p->dct_scale);
	assert_int_equal(p->interpolation, 0);
	assert_true(p->cutout_prob == 1.0);
	assert_int_equal(p->cutout_holes, 1);
	assert_int_equal(p->cutout_size[0], 0);
	assert_int_equal(p->cutout_size[1], 0);
	assert_int_equal(p->cutout_fill, FILL_VALUE);
	assert_int_equal(p->cutout_value, 0);
	assert_true(p->mixup_alpha == 0 && p->cutmix_alpha == 0);
	assert_false(p->has_cutmix_minmax);
	assert_true(p->prob == 1.0 && p->switch_prob == 0.5);
	assert_int_equal(p->mode, MIX_BATCH);
	assert_int_equal(p->partner, PARTNER_PERMUTE);
	assert_true(p->correct_lam);
	assert_true(p->label_smoothing == 0);
	assert_int_equal(p->off_epoch, 0);
	assert_int_equal(p->layout, LAYOUT_NHWC);
	assert_int_equal(p->dtype, DTYPE_UINT8);
	assert_true(p->mean[0] == 0.485 && p->mean[1] == 0.456 &&
		    p->mean[2] == 0.406);
	assert_true(p->std[0] == 0.229 && p->std[1] == 0.224 &&
		    p->std[2] == 0.225);
	assert_true(config_pipeline_augments(p)); /* flip 0.5 */

	assert_int_equal(config_find_pipeline(cfg, "train"), 0);
	assert_int_equal(config_find_pipeline(cfg, "val"), -1);
	assert_int_equal(config_find_pipeline(NULL, "train"), -1);

	config_destroy(&cfg);
	assert_null(cfg);
	config_destroy(&cfg); /* idempotent */
	config_destroy(NULL);
	free(dir);
}

static void test_eval_defaults(void **state)
{
	config_t *cfg;
	const struct pipeline_cfg *p;

	(void)state;
	cfg = load_ok("[dataset]\nroot = data\n[pipeline.val]\neval = true\n",
		      NULL, 0);
	p = &cfg->pipelines[0];
	assert_true(p->eval);
	assert_int_equal(p->crop, CROP_CENTER);
	assert_int_equal(p->resize, 256); /* round(224 / 0.875) */
	assert_true(p->flip == 0);
	assert_false(p->shuffle);
	assert_int_equal(p->cutout_size[1], 0);
	assert_false(config_pipeline_augments(p));
	config_destroy(&cfg);

	/* auto resize rounds: 100 / 0.875 = 114.29; 4 / 0.875 = 4.57 */
	cfg = load_ok("[dataset]\nroot = d\n[pipeline.a]\neval = yes\nsize = 100\n"
		      "[pipeline.b]\neval = on\nsize = 4\nshuffle = true\n"
		      "resize = 4\n", NULL, 0);
	assert_int_equal(cfg->pipelines[0].resize, 114);
	assert_int_equal(cfg->pipelines[1].resize, 4);
	assert_true(cfg->pipelines[1].shuffle); /* not an augmentation */
	config_destroy(&cfg);

	/* a training pipeline may use a center crop, with its own resize */
	cfg = load_ok("[dataset]\nroot = d\n[pipeline.t]\ncrop = center\n"
		      "resize = 300\nflip = 0\n", NULL, 0);
	p = &cfg->pipelines[0];
	assert_int_equal(p->crop, CROP_CENTER);
	assert_int_equal(p->resize, 300);
	assert_true(p->shuffle);
	assert_false(config_pipeline_augments(p));
	config_destroy(&cfg);
}

/* ------------------------------------------------------------ every key */

static void test_every_key(void **state)
{
	static const char text[] =
		"[server]\n"
		"endpoint = tcp://0.0.0.0:6000 , ipc:///tmp/c.sock\n"
		"workers = 7\n"
		"seed = 18446744073709551615\n"
		"max_inflight = 4096\n"
		"max_client_window = 1024\n"
		"max_clients = 65536\n"
		"max_pixels = 1000000000000\n"
		"max_file_bytes = 1099511627776\n"
		"on_decode_error = fail\n"
		"idle_timeout = 86400\n"
		"log_level = debug\n"
		"[dataset.imagenet]\n"
		"root = /srv/imagenet\n"
		"manifest = lists/train.tsv\n"
		"follow_symlinks = on\n"
		"[pipeline.train]\n"
		"dataset = imagenet\n"
		"eval = false\n"
		"batch_size = 65536\n"
		"size = 8192\n"
		"crop = random_resized\n"
		"scale = 0.25, 0.75\n"
		"ratio = 0.5,2\n"
		"flip = 0.25\n"
		"interpolation = bicubic\n"
		"dct_scale = no\n"
		"shuffle = off\n"
		"drop_last = 1\n"
		"cutout_prob = 0.75\n"
		"cutout_holes = 8\n"
		"cutout_size = 20 - 40\n"
		"cutout_fill = 128\n"
		"mixup_alpha = 0.2\n"
		"cutmix_alpha = 1e0\n"
		"cutmix_minmax = 0.2,0.8\n"
		"prob = 0.5\n"
		"switch_prob = 0\n"
		"mode = elem\n"
		"partner = roll\n"
		"correct_lam = false\n"
		"label_smoothing = 0.1\n"
		"off_epoch = 4294967295\n"
		"layout = nchw\n"
		"dtype = float32\n"
		"mean = 0.5, 0.25, 0\n"
		"std = 1,2,0.5\n"
		"[pipeline.pair]\n"
		"dataset = imagenet\n"
		"mode = pair\n"
		"partner = flip\n"
		"cutout_size = 16\n"
		"cutout_fill = mean\n"
		"[pipeline.noise]\n"
		"dataset = imagenet\n"
		"cutout_fill = NOISE\n"
		"interpolation = bilinear\n"
		"crop = center\n"
		"resize = 16384\n";
	config_t *cfg;
	const struct server_cfg *sv;
	const struct dataset_cfg *d;
	const struct pipeline_cfg *p;
	char *dir = real_tmpdir(), want[PATH_MAX + 32];

	(void)state;
	cfg = load_ok(text, NULL, 0);
	sv = &cfg->server;
	assert_int_equal(sv->n_endpoints, 2);
	assert_string_equal(sv->endpoints[0], "tcp://0.0.0.0:6000");
	assert_string_equal(sv->endpoints[1], "ipc:///tmp/c.sock");
	assert_int_equal(sv->workers, 7);
	assert_true(sv->seed == UINT64_MAX);
	assert_int_equal(sv->max_inflight, 4096);
	assert_int_equal(sv->max_client_window, 1024);
	assert_int_equal(sv->max_clients, 65536);
	assert_true(sv->max_pixels == 1000000000000ull);
	assert_true(sv->max_file_bytes == 1ull << 40);
	assert_int_equal(sv->on_decode_error, ON_ERROR_FAIL);
	assert_int_equal(sv->idle_timeout_s, 86400);
	assert_int_equal(sv->log_level, LOGL_DEBUG);

	assert_int_equal(cfg->n_datasets, 1);
	d = &cfg->datasets[0];
	assert_string_equal(d->name, "imagenet");
	assert_string_equal(d->root, "/srv/imagenet");
	snprintf(want, sizeof(want), "%s/lists/train.tsv", dir);
	assert_string_equal(d->manifest, want);
	assert_true(d->follow_symlinks);
	assert_int_equal(d->line, 13);

	assert_int_equal(cfg->n_pipelines, 3);
	p = &cfg->pipelines[0];
	assert_int_equal(p->line, 17);
	assert_int_equal(p->dataset, 0);
	assert_string_equal(p->dataset_name, "imagenet");
	assert_false(p->eval);
	assert_int_equal(p->batch_size, 65536);
	assert_int_equal(p->size, 8192);
	assert_int_equal(p->crop, CROP_RANDOM_RESIZED);
	assert_int_equal(p->resize, 0);
	assert_true(p->scale[0] == 0.25 && p->scale[1] == 0.75);
	assert_true(p->ratio[0] == 0.5 && p->ratio[1] == 2);
	assert_true(p->flip == 0.25);
	assert_int_equal(p->interpolation, 1);
	assert_false(p->dct_scale);
	assert_false(p->shuffle);
	assert_true(p->drop_last);
	assert_true(p->cutout_prob == 0.75);
	assert_int_equal(p->cutout_holes, 8);
	assert_int_equal(p->cutout_size[0], 20);
	assert_int_equal(p->cutout_size[1], 40);
	assert_int_equal(p->cutout_fill, FILL_VALUE);
	assert_int_equal(p->cutout_value, 128);
	assert_true(p->mixup_alpha == 0.2);
	assert_true(p->cutmix_alpha == 1.0);
	assert_true(p->has_cutmix_minmax);
	assert_true(p->cutmix_minmax[0] == 0.2 && p->cutmix_minmax[1] == 0.8);
	assert_true(p->prob == 0.5);
	assert_true(p->switch_prob == 0);
	assert_int_equal(p->mode, MIX_ELEM);
	assert_int_equal(p->partner, PARTNER_ROLL);
	assert_false(p->correct_lam);
	assert_true(p->label_smoothing == 0.1);
	assert_int_equal(p->off_epoch, UINT32_MAX);
	assert_int_equal(p->layout, LAYOUT_NCHW);
	assert_int_equal(p->dtype, DTYPE_FLOAT32);
	assert_true(p->mean[0] == 0.5 && p->mean[1] == 0.25 && p->mean[2] == 0);
	assert_true(p->std[0] == 1 && p->std[1] == 2 && p->std[2] == 0.5);
	assert_true(config_pipeline_augments(p));

	p = &cfg->pipelines[1];
	assert_string_equal(p->name, "pair");
	assert_int_equal(p->mode, MIX_PAIR);
	assert_int_equal(p->partner, PARTNER_FLIP);
	assert_int_equal(p->cutout_size[0], 16);
	assert_int_equal(p->cutout_size[1], 16);
	assert_int_equal(p->cutout_fill, FILL_MEAN);

	p = &cfg->pipelines[2];
	assert_int_equal(p->cutout_fill, FILL_NOISE);
	assert_int_equal(p->interpolation, 0);
	assert_int_equal(p->crop, CROP_CENTER);
	assert_int_equal(p->resize, 16384);
	config_destroy(&cfg);
	free(dir);
}

static void test_augments(void **state)
{
	config_t *cfg;
	struct pipeline_cfg p;

	(void)state;
	cfg = load_ok("[dataset]\nroot = d\n[pipeline.t]\nflip = 0\n", NULL, 0);
	p = cfg->pipelines[0];
	config_destroy(&cfg);
	assert_false(config_pipeline_augments(&p));
	p.cutout_size[1] = 8;
	assert_true(config_pipeline_augments(&p));
	p.cutout_prob = 0;
	assert_false(config_pipeline_augments(&p));
	p.mixup_alpha = 0.2;
	assert_true(config_pipeline_augments(&p));
	p.prob = 0;
	assert_false(config_pipeline_augments(&p));
	p.prob = 1;
	p.mixup_alpha = 0;
	p.cutmix_alpha = 1;
	assert_true(config_pipeline_augments(&p));

	/* cutmix_minmax alone switches CutMix on, as in timm */
	cfg = load_ok("[dataset]\nroot = d\n[pipeline.t]\nflip = 0\n"
		      "cutmix_minmax = 0.1,0.9\n"
		      "[pipeline.u]\ncutmix_minmax = 0.1,0.9\ncutmix_alpha = 0.3\n",
		      NULL, 0);
	assert_true(cfg->pipelines[0].cutmix_alpha == 1.0);
	assert_true(config_pipeline_augments(&cfg->pipelines[0]));
	assert_true(cfg->pipelines[1].cutmix_alpha == 0.3);
	config_destroy(&cfg);
}

/* ----------------------------------------------------------- bad values */

struct bad_case {
	const char *section;
	const char *line;
	const char *want; /* after "train.ini:7: [SECTION] " */
};

static const struct bad_case bad_cases[] = {
	/* integer ranges, junk, sign, overflow, empty */
	{ "server", "workers = 1025", "workers: must be 0..1024, got '1025'" },
	{ "server", "workers = -1", "workers: must be 0..1024, got '-1'" },
	{ "server", "workers = +4", "workers: must be 0..1024, got '+4'" },
	{ "server", "workers = 12abc", "workers: must be 0..1024, got '12abc'" },
	{ "server", "workers = 4.0", "workers: must be 0..1024, got '4.0'" },
	{ "server", "workers =", "workers: must be 0..1024, got ''" },
	{ "server", "seed = 18446744073709551616",
	  "seed: must be 0..18446744073709551615, got '18446744073709551616'" },
	{ "server", "seed = -1", "seed: must be 0..18446744073709551615, got '-1'" },
	{ "server", "seed = 0x10", "seed: must be 0..18446744073709551615, got '0x10'" },
	{ "server", "max_inflight = 4097", "max_inflight: must be 0..4096, got '4097'" },
	{ "server", "max_client_window = 0",
	  "max_client_window: must be 1..1024, got '0'" },
	{ "server", "max_clients = 65537", "max_clients: must be 1..65536, got '65537'" },
	{ "server", "max_pixels = 1000000000001",
	  "max_pixels: must be 1..1000000000000, got '1000000000001'" },
	{ "server", "max_file_bytes = 1099511627777",
	  "max_file_bytes: must be 1..1099511627776, got '1099511627777'" },
	{ "server", "idle_timeout = 0", "idle_timeout: must be 1..86400, got '0'" },
	/* enums */
	{ "server", "on_decode_error = ignore",
	  "on_decode_error: must be replace or fail, got 'ignore'" },
	{ "server", "log_level = verbose",
	  "log_level: must be err, warning, notice, info or debug, got 'verbose'" },
	/* endpoint lists */
	{ "server", "endpoint = foo://bar",
	  "endpoint: must be 1..8 distinct ZeroMQ endpoints, comma separated "
	  "(tcp://HOST:PORT, ipc://PATH), got 'foo://bar'" },
	{ "server", "endpoint = tcp://a:1, inproc://x",
	  "endpoint: must be 1..8 distinct ZeroMQ endpoints, comma separated "
	  "(tcp://HOST:PORT, ipc://PATH), got 'tcp://a:1, inproc://x'" },
	{ "server", "endpoint = tcp://a:1,",
	  "endpoint: must be 1..8 distinct ZeroMQ endpoints, comma separated "
	  "(tcp://HOST:PORT, ipc://PATH), got 'tcp://a:1,'" },
	{ "server", "endpoint = localhost:5555",
	  "endpoint: must be 1..8 distinct ZeroMQ endpoints, comma separated "
	  "(tcp://HOST:PORT, ipc://PATH), got 'localhost:5555'" },
	{ "server", "endpoint = ipc://a,ipc://a",
	  "endpoint: must be 1..8 distinct ZeroMQ endpoints, comma separated "
	  "(tcp://HOST:PORT, ipc://PATH), got 'ipc://a,ipc://a'" },
	{ "server", "endpoint = ipc://1,ipc://2,ipc://3,ipc://4,ipc://5,ipc://6,"
		    "ipc://7,ipc://8,ipc://9",
	  "endpoint: must be 1..8 distinct ZeroMQ endpoints, comma separated "
	  "(tcp://HOST:PORT, ipc://PATH), got 'ipc://1,ipc://2,ipc://3,ipc://4,"
	  "ipc://5,ipc://6,ipc://7,ipc://8,ipc://9'" },
	/* booleans and paths */
	{ "dataset.other", "follow_symlinks = maybe",
	  "follow_symlinks: must be true or false (also yes/no, on/off, 1/0), "
	  "got 'maybe'" },
	{ "dataset.other", "root =", "root: must be a path, got ''" },
	{ "pipeline.train", "eval = 2",
	  "eval: must be true or false (also yes/no, on/off, 1/0), got '2'" },
	{ "pipeline.train", "shuffle = yes please",
	  "shuffle: must be true or false (also yes/no, on/off, 1/0), "
	  "got 'yes please'" },
	{ "pipeline.train", "dct_scale = 10",
	  "dct_scale: must be true or false (also yes/no, on/off, 1/0), got '10'" },
	/* pipeline integers */
	{ "pipeline.train", "size = 0", "size: must be 1..8192, got '0'" },
	{ "pipeline.train", "size = 8193", "size: must be 1..8192, got '8193'" },
	{ "pipeline.train", "size = 224px", "size: must be 1..8192, got '224px'" },
	{ "pipeline.train", "batch_size = 4294967296",
	  "batch_size: must be 1..65536, got '4294967296'" },
	{ "pipeline.train", "batch_size = 99999999999999999999999",
	  "batch_size: must be 1..65536, got '99999999999999999999999'" },
	{ "pipeline.train", "resize = 16385", "resize: must be 0..16384, got '16385'" },
	{ "pipeline.train", "cutout_holes = 0", "cutout_holes: must be 1..8, got '0'" },
	{ "pipeline.train", "cutout_holes = 9", "cutout_holes: must be 1..8, got '9'" },
	{ "pipeline.train", "off_epoch = 4294967296",
	  "off_epoch: must be 0..4294967295, got '4294967296'" },
	{ "pipeline.train", "off_epoch = -3",
	  "off_epoch: must be 0..4294967295, got '-3'" },
	/* doubles: range, junk, NaN, infinities, overflow, hex */
	{ "pipeline.train", "flip = 1.5", "flip: must be 0..1, got '1.5'" },
	{ "pipeline.train", "flip = -0.1", "flip: must be 0..1, got '-0.1'" },
	{ "pipeline.train", "flip = nan", "flip: must be 0..1, got 'nan'" },
	{ "pipeline.train", "flip = inf", "flip: must be 0..1, got 'inf'" },
	{ "pipeline.train", "flip = 0.5x", "flip: must be 0..1, got '0.5x'" },
	{ "pipeline.train", "flip = 1e999", "flip: must be 0..1, got '1e999'" },
	{ "pipeline.train", "flip = 0x1p-1", "flip: must be 0..1, got '0x1p-1'" },
	{ "pipeline.train", "flip = .", "flip: must be 0..1, got '.'" },
	{ "pipeline.train", "cutout_prob = 1.01",
	  "cutout_prob: must be 0..1, got '1.01'" },
	{ "pipeline.train", "prob = 2", "prob: must be 0..1, got '2'" },
	{ "pipeline.train", "switch_prob = -0.5",
	  "switch_prob: must be 0..1, got '-0.5'" },
	{ "pipeline.train", "mixup_alpha = -0.1",
	  "mixup_alpha: must be a number >= 0, got '-0.1'" },
	{ "pipeline.train", "mixup_alpha = NaN",
	  "mixup_alpha: must be a number >= 0, got 'NaN'" },
	{ "pipeline.train", "cutmix_alpha = inf",
	  "cutmix_alpha: must be a number >= 0, got 'inf'" },
	{ "pipeline.train", "cutmix_alpha = -inf",
	  "cutmix_alpha: must be a number >= 0, got '-inf'" },
	{ "pipeline.train", "label_smoothing = 1",
	  "label_smoothing: must be a number >= 0 and < 1, got '1'" },
	/* enums */
	{ "pipeline.train", "crop = random",
	  "crop: must be random_resized or center, got 'random'" },
	{ "pipeline.train", "interpolation = nearest",
	  "interpolation: must be bilinear or bicubic, got 'nearest'" },
	{ "pipeline.train", "mode = pairs",
	  "mode: must be batch, pair or elem, got 'pairs'" },
	{ "pipeline.train", "partner = shuffle",
	  "partner: must be permute, flip or roll, got 'shuffle'" },
	{ "pipeline.train", "layout = hwc", "layout: must be nhwc or nchw, got 'hwc'" },
	{ "pipeline.train", "dtype = float16",
	  "dtype: must be uint8 or float32, got 'float16'" },
	/* lists */
	{ "pipeline.train", "scale = 0.5",
	  "scale: must be two numbers A,B with 0 < A <= B <= 1, got '0.5'" },
	{ "pipeline.train", "scale = 0.5,0.2",
	  "scale: must be two numbers A,B with 0 < A <= B <= 1, got '0.5,0.2'" },
	{ "pipeline.train", "scale = 0,1",
	  "scale: must be two numbers A,B with 0 < A <= B <= 1, got '0,1'" },
	{ "pipeline.train", "scale = 0.1,1.5",
	  "scale: must be two numbers A,B with 0 < A <= B <= 1, got '0.1,1.5'" },
	{ "pipeline.train", "scale = 0.1,,1",
	  "scale: must be two numbers A,B with 0 < A <= B <= 1, got '0.1,,1'" },
	{ "pipeline.train", "scale = 0.1,0.5,0.9",
	  "scale: must be two numbers A,B with 0 < A <= B <= 1, got '0.1,0.5,0.9'" },
	{ "pipeline.train", "scale = a,b",
	  "scale: must be two numbers A,B with 0 < A <= B <= 1, got 'a,b'" },
	{ "pipeline.train", "ratio = 2,1",
	  "ratio: must be two numbers A,B with 0 < A <= B, got '2,1'" },
	{ "pipeline.train", "ratio = 1,inf",
	  "ratio: must be two numbers A,B with 0 < A <= B, got '1,inf'" },
	{ "pipeline.train", "cutmix_minmax = 0.5,0.5",
	  "cutmix_minmax: must be two numbers A,B with 0 < A < B <= 1, "
	  "got '0.5,0.5'" },
	{ "pipeline.train", "cutmix_minmax = 0,0.5",
	  "cutmix_minmax: must be two numbers A,B with 0 < A < B <= 1, "
	  "got '0,0.5'" },
	{ "pipeline.train", "mean = 0.5,0.5",
	  "mean: must be three numbers R,G,B, each 0..1, got '0.5,0.5'" },
	{ "pipeline.train", "mean = 0.5,0.5,1.5",
	  "mean: must be three numbers R,G,B, each 0..1, got '0.5,0.5,1.5'" },
	{ "pipeline.train", "std = 0.2,0,0.2",
	  "std: must be three numbers R,G,B, each > 0, got '0.2,0,0.2'" },
	/* size ranges and fills */
	{ "pipeline.train", "cutout_size = 40-20",
	  "cutout_size: must be N or MIN-MAX with 0 <= MIN <= MAX <= 8192, "
	  "got '40-20'" },
	{ "pipeline.train", "cutout_size = 8193",
	  "cutout_size: must be N or MIN-MAX with 0 <= MIN <= MAX <= 8192, "
	  "got '8193'" },
	{ "pipeline.train", "cutout_size = -5",
	  "cutout_size: must be N or MIN-MAX with 0 <= MIN <= MAX <= 8192, "
	  "got '-5'" },
	{ "pipeline.train", "cutout_size = 5-",
	  "cutout_size: must be N or MIN-MAX with 0 <= MIN <= MAX <= 8192, "
	  "got '5-'" },
	{ "pipeline.train", "cutout_size = 1-2-3",
	  "cutout_size: must be N or MIN-MAX with 0 <= MIN <= MAX <= 8192, "
	  "got '1-2-3'" },
	{ "pipeline.train", "cutout_fill = 256",
	  "cutout_fill: must be 0..255, mean or noise, got '256'" },
	{ "pipeline.train", "cutout_fill = gray",
	  "cutout_fill: must be 0..255, mean or noise, got 'gray'" },
	/* names */
	{ "pipeline.train", "dataset = bad name!",
	  "dataset: must be a dataset name of 1..31 characters A-Z a-z 0-9 _ -, "
	  "got 'bad name!'" },
};

static void test_bad_values(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *c = &bad_cases[i];
		char text[1024], want[1024];

		/* comments and blank lines before: the key is on line 7 */
		snprintf(text, sizeof(text),
			 "; bad values\n"
			 "\n"
			 "[dataset]\n"
			 "root = data ; inline comment\n"
			 "# comment\n"
			 "[%s]\n"
			 "%s\n"
			 "[pipeline.after]\n", c->section, c->line);
		snprintf(want, sizeof(want), "train.ini:7: [%s] %s", c->section,
			 c->want);
		expect_error(text, NULL, 0, want);
	}
}

/* A long value is cut in the message. */
static void test_long_value_quoted(void **state)
{
	char digits[101], text[512], want[512];

	(void)state;
	memset(digits, '1', 100);
	digits[100] = '\0';
	snprintf(text, sizeof(text), "[server]\nworkers = %s\n", digits);
	snprintf(want, sizeof(want), "train.ini:2: [server] workers: must be "
		 "0..1024, got '%.80s...'", digits);
	expect_error(text, NULL, 0, want);
}

/* -------------------------------------------- sections, keys, syntax */

static void test_sections_and_keys(void **state)
{
	(void)state;
	expect_error("[dataset]\nroot = d\n[pipleine.train]\nsize = 3\n", NULL, 0,
		     "train.ini:3: unknown section [pipleine.train]");
	expect_error(MINIMAL "[secure]\n", NULL, 0,
		     "train.ini:4: unknown section [secure]");
	expect_error(MINIMAL "[security.x]\n", NULL, 0,
		     "train.ini:4: unknown section [security.x]");
	expect_error(MINIMAL "[pipeline]\n", NULL, 0,
		     "train.ini:4: unknown section [pipeline]");
	expect_error(MINIMAL "[server.x]\n", NULL, 0,
		     "train.ini:4: unknown section [server.x]");
	expect_error(MINIMAL "[ server ]\n", NULL, 0,
		     "train.ini:4: unknown section [ server ]");
	expect_error(MINIMAL "[pipeline.bad name]\n", NULL, 0,
		     "train.ini:4: bad section name [pipeline.bad name]: NAME must "
		     "be 1..31 characters A-Z a-z 0-9 _ -");
	expect_error(MINIMAL "[dataset.0123456789012345678901234567890123]\n",
		     NULL, 0,
		     "train.ini:4: bad section name "
		     "[dataset.0123456789012345678901234567890123]: NAME must be "
		     "1..31 characters A-Z a-z 0-9 _ -");
	expect_error(MINIMAL "  [server] junk\n", NULL, 0,
		     "train.ini:4: expected end of line after ']', got "
		     "'[server] junk'");
	expect_error("[dataset]\nroot = d\n\n[pipeline.train]\nsize = 3\n"
		     "\n\n\n\nsise = 4\n", NULL, 0,
		     "train.ini:10: [pipeline.train] sise: unknown key");
	expect_error("[dataset]\nroot = d\n[pipeline.train]\nSize = 3\n", NULL, 0,
		     "train.ini:4: [pipeline.train] Size: unknown key");
	expect_error("[dataset]\nroot = d\nsize = 3\n[pipeline.train]\n", NULL, 0,
		     "train.ini:3: [dataset] size: unknown key");
	expect_error("; top\nsize = 3\n" MINIMAL, NULL, 0,
		     "train.ini:2: size: key outside any section (put it under "
		     "[server], [dataset] or [pipeline.NAME])");
	expect_error(MINIMAL "= 4\n", NULL, 0,
		     "train.ini:4: [pipeline.train] missing key name before '='");

	/* syntax errors inih reports: the line and what was found */
	expect_error("[dataset]\nroot = d\n\n; c\nfoo bar\n[pipeline.t]\n", NULL, 0,
		     "train.ini:5: expected 'KEY = VALUE', got 'foo bar'");
	expect_error("[dataset]\nroot = d\n[pipeline.t\n", NULL, 0,
		     "train.ini:3: expected '[SECTION]', got '[pipeline.t'");
	expect_error("[dataset]\nroot = d\n[pipeline.t ;x]\n", NULL, 0,
		     "train.ini:3: expected '[SECTION]', got '[pipeline.t ;x]'");
	/* no multi-line values: an indented line is not a continuation */
	expect_error("[dataset]\nroot = d\n  more\n[pipeline.t]\n", NULL, 0,
		     "train.ini:3: expected 'KEY = VALUE', got 'more'");
	/* NUL bytes are refused */
	{
		FILE *f = fopen("train.ini", "w");
		config_t *cfg = NULL;
		char err[256];

		assert_non_null(f);
		fwrite("[dataset]\nroot = d\0x\n", 1, 21, f);
		fclose(f);
		assert_int_equal(config_load("train.ini", NULL, 0, &cfg, err,
					     sizeof(err)), -EINVAL);
		assert_string_equal(err, "train.ini:2: NUL byte in line");
	}
}

static void test_duplicates(void **state)
{
	(void)state;
	expect_error("[dataset]\nroot = d\n[pipeline.train]\nsize = 3\n"
		     "; note\n\n\n\n\nsize = 4\n", NULL, 0,
		     "train.ini:10: [pipeline.train] size: duplicate key (first "
		     "set on line 4)");
	expect_error("[dataset]\nroot = d\n[pipeline.train]\n[server]\n"
		     "[pipeline.train]\n", NULL, 0,
		     "train.ini:5: duplicate section [pipeline.train] (first on "
		     "line 3)");
	expect_error("[dataset]\nroot = d\n[dataset.default]\nroot = e\n", NULL, 0,
		     "train.ini:3: duplicate section [dataset.default] (first on "
		     "line 1)");
	expect_error("[server]\n[server]\n", NULL, 0,
		     "train.ini:2: duplicate section [server] (first on line 1)");
	/* the same key in two sections is fine */
	config_t *cfg = load_ok("[dataset]\nroot = d\n[dataset.b]\nroot = e\n"
				"[pipeline.a]\nsize = 3\n[pipeline.b]\nsize = 4\n"
				"dataset = b\n", NULL, 0);
	assert_int_equal(cfg->pipelines[0].size, 3);
	assert_int_equal(cfg->pipelines[1].size, 4);
	assert_int_equal(cfg->pipelines[1].dataset, 1);
	config_destroy(&cfg);
}

static void test_too_many_sections(void **state)
{
	char text[4096];
	size_t n = 0;

	(void)state;
	n += (size_t)snprintf(text + n, sizeof(text) - n, "[dataset]\nroot = d\n");
	for (int i = 0; i <= CONFIG_MAX_PIPELINES; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n,
				      "[pipeline.p%d]\n", i);
	expect_error(text, NULL, 0,
		     "train.ini:19: too many pipeline sections (max 16)");

	/* every kind of section at its limit, then one more */
	n = (size_t)snprintf(text, sizeof(text), "[server]\n[security]\n");
	for (int i = 0; i < CONFIG_MAX_DATASETS; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n,
				      "[dataset.d%d]\nroot = d\n", i);
	for (int i = 0; i < CONFIG_MAX_PIPELINES; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n,
				      "[pipeline.p%d]\ndataset = d0\n", i);
	config_t *cfg = load_ok(text, NULL, 0);
	assert_int_equal(cfg->n_datasets, CONFIG_MAX_DATASETS);
	assert_int_equal(cfg->n_pipelines, CONFIG_MAX_PIPELINES);
	config_destroy(&cfg);
	snprintf(text + n, sizeof(text) - n, "[dataset.more]\nroot = d\n");
	expect_error(text, NULL, 0,
		     "train.ini:67: too many dataset sections (max 16)");
}

/* --------------------------------------------------------- cross-field */

static void test_eval_rules(void **state)
{
	static const char *const aug[] = {
		"flip = 0", "scale = 0.5,1", "ratio = 1,1", "cutout_prob = 0",
		"cutout_holes = 1", "cutout_size = 0", "cutout_fill = mean",
		"mixup_alpha = 0", "cutmix_alpha = 0", "cutmix_minmax = 0.1,0.2",
		"prob = 0", "switch_prob = 0", "mode = batch", "partner = flip",
		"correct_lam = true", "label_smoothing = 0", "off_epoch = 3",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(aug) / sizeof(aug[0]); i++) {
		char text[512], want[512], key[32];

		snprintf(key, sizeof(key), "%.*s", (int)strcspn(aug[i], " "), aug[i]);
		/* the augmentation key comes before eval: checked at the end */
		snprintf(text, sizeof(text), "[dataset]\nroot = d\n\n"
			 "[pipeline.val]\n# c\n\n%s\neval = true\n", aug[i]);
		snprintf(want, sizeof(want), "train.ini:7: [pipeline.val] %s: an "
			 "eval pipeline takes no augmentation keys", key);
		expect_error(text, NULL, 0, want);
	}
	expect_error("[dataset]\nroot = d\n[pipeline.val]\neval = true\n"
		     "crop = random_resized\n", NULL, 0,
		     "train.ini:5: [pipeline.val] crop: an eval pipeline must use "
		     "center, got 'random_resized'");
	/* eval set by an override still refuses the file's flip */
	char *set[] = { "pipeline.train.eval=true" };
	expect_error("[dataset]\nroot = d\n[pipeline.train]\nflip = 0.5\n", set, 1,
		     "train.ini:4: [pipeline.train] flip: an eval pipeline takes "
		     "no augmentation keys");
}

static void test_mixing_rules(void **state)
{
	config_t *cfg;

	(void)state;
	expect_error("[dataset]\nroot = d\n[pipeline.train]\nmode = pair\n"
		     "partner = roll\n", NULL, 0,
		     "train.ini:5: [pipeline.train] partner: must be permute or "
		     "flip with mode = pair (roll is not a pairing), got 'roll'");
	cfg = load_ok("[dataset]\nroot = d\n[pipeline.train]\nmode = elem\n"
		      "partner = roll\n[pipeline.b]\nmode = batch\n"
		      "partner = roll\n", NULL, 0);
	config_destroy(&cfg);
}

static void test_crop_rules(void **state)
{
	(void)state;
	expect_error("[dataset]\nroot = d\n[pipeline.train]\nresize = 256\n",
		     NULL, 0,
		     "train.ini:4: [pipeline.train] resize: only allowed with "
		     "crop = center");
	expect_error("[dataset]\nroot = d\n[pipeline.train]\nresize = 0\n"
		     "crop = random_resized\n", NULL, 0,
		     "train.ini:4: [pipeline.train] resize: only allowed with "
		     "crop = center");
	expect_error("[dataset]\nroot = d\n[pipeline.val]\neval = 1\nsize = 224\n"
		     "resize = 200\n", NULL, 0,
		     "train.ini:6: [pipeline.val] resize: must be >= size (224), "
		     "got '200'");
	expect_error("[dataset]\nroot = d\n[pipeline.t]\ncrop = center\n"
		     "scale = 0.5,1\n", NULL, 0,
		     "train.ini:5: [pipeline.t] scale: only used with crop = "
		     "random_resized");
	expect_error("[dataset]\nroot = d\n[pipeline.t]\nratio = 1,1\n"
		     "crop = center\n", NULL, 0,
		     "train.ini:4: [pipeline.t] ratio: only used with crop = "
		     "random_resized");
}

static void test_dataset_rules(void **state)
{
	(void)state;
	expect_error("[dataset]\nmanifest = m.tsv\n[pipeline.t]\n", NULL, 0,
		     "train.ini:1: [dataset] root: required key is missing");
	expect_error("[dataset]\nroot = d\n\n[dataset.extra]\nfollow_symlinks = 1\n"
		     "[pipeline.t]\n", NULL, 0,
		     "train.ini:4: [dataset.extra] root: required key is missing");
	expect_error("[dataset]\nroot = d\n[pipeline.t]\ndataset = imagenet\n",
		     NULL, 0,
		     "train.ini:4: [pipeline.t] dataset: must name a dataset "
		     "section ([dataset] or [dataset.NAME]), got 'imagenet'");
	/* left at its default: the section header's line */
	expect_error("[dataset.imagenet]\nroot = d\n\n[pipeline.t]\nsize = 3\n",
		     NULL, 0,
		     "train.ini:4: [pipeline.t] dataset: must name a dataset "
		     "section ([dataset] or [dataset.NAME]), got 'default'");
	expect_error("[server]\nseed = 1\n[pipeline.t]\n", NULL, 0,
		     "train.ini: no dataset section (add [dataset] with root = "
		     "PATH)");
	expect_error("[server]\nseed = 1\n[dataset]\nroot = d\n", NULL, 0,
		     "train.ini: no pipeline section (add [pipeline.NAME])");
	expect_error("", NULL, 0,
		     "train.ini: no dataset section (add [dataset] with root = "
		     "PATH)");
}

/* ----------------------------------------------------------- overrides */

static void test_set_overrides(void **state)
{
	config_t *cfg;
	char *dir = real_tmpdir(), want[PATH_MAX + 32];

	(void)state;
	{
		char *sets[] = {
			"pipeline.train.size=64",        /* in the file: replaced */
			" pipeline.train.flip = 0.25 ",  /* blanks trimmed */
			"pipeline.val.eval=true",        /* creates a section */
			"dataset.extra.root=other",      /* creates a dataset */
			"pipeline.val.dataset=extra",
			"server.seed=42",                /* no [server] in the file */
			"pipeline.train.batch_size=8",
			"pipeline.train.batch_size=16",  /* the last one wins */
			"dataset.root=/abs/root",        /* [dataset] == "dataset" */
		};
		cfg = load_ok("[dataset]\nroot = d\n[pipeline.train]\nsize = 100\n",
			      sets, 9);
		assert_int_equal(cfg->n_pipelines, 2);
		assert_int_equal(cfg->pipelines[0].size, 64);
		assert_true(cfg->pipelines[0].flip == 0.25);
		assert_int_equal(cfg->pipelines[0].batch_size, 16);
		assert_string_equal(cfg->pipelines[1].name, "val");
		assert_true(cfg->pipelines[1].eval);
		assert_int_equal(cfg->pipelines[1].crop, CROP_CENTER);
		assert_int_equal(cfg->pipelines[1].line, 0);
		assert_int_equal(cfg->pipelines[1].dataset, 1);
		assert_int_equal(cfg->n_datasets, 2);
		assert_string_equal(cfg->datasets[0].root, "/abs/root");
		snprintf(want, sizeof(want), "%s/other", dir);
		assert_string_equal(cfg->datasets[1].root, want);
		assert_true(cfg->server.seed == 42);
		config_destroy(&cfg);
	}
	{
		/* the whole config from overrides, on an empty file */
		char *sets[] = { "dataset.root=d", "pipeline.t.size=32" };

		cfg = load_ok("", sets, 2);
		assert_int_equal(cfg->pipelines[0].size, 32);
		config_destroy(&cfg);
	}
	{
		char *s1[] = { "pipeline.train.size=0" };
		expect_error(MINIMAL, s1, 1, "--set pipeline.train.size=0: "
			     "[pipeline.train] size: must be 1..8192, got '0'");
	}
	{
		char *s1[] = { "pipeline.train.sise=3" };
		expect_error(MINIMAL, s1, 1, "--set pipeline.train.sise=3: "
			     "[pipeline.train] sise: unknown key");
	}
	{
		char *s1[] = { "pipleine.train.size=3" };
		expect_error(MINIMAL, s1, 1, "--set pipleine.train.size=3: "
			     "unknown section [pipleine.train]");
	}
	{
		char *s1[] = { "pipeline.n.dataset=nope" };
		expect_error(MINIMAL, s1, 1, "--set pipeline.n.dataset=nope: "
			     "[pipeline.n] dataset: must name a dataset section "
			     "([dataset] or [dataset.NAME]), got 'nope'");
	}
	{
		/* a section an override created: its errors name the override */
		char *s1[] = { "dataset.x.follow_symlinks=1" };
		expect_error(MINIMAL, s1, 1, "--set dataset.x.follow_symlinks=1: "
			     "[dataset.x] root: required key is missing");
	}
	{
		static const char *const bad[] = {
			"pipeline.train.size", "size=3", "=3", ".size=3",
			"pipeline.train.=3", "",
		};
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			char *s1[] = { (char *)bad[i] };
			char msg[256];

			snprintf(msg, sizeof(msg), "--set %s: must be "
				 "SECTION.KEY=VALUE (e.g. pipeline.train.size=224)",
				 bad[i]);
			expect_error(MINIMAL, s1, 1, msg);
		}
	}
	{
		/* an error in the file comes before the overrides */
		char *s1[] = { "pipeline.train.size=0" };
		expect_error("[dataset]\nroot = d\n[pipeline.train]\nflip = 3\n",
			     s1, 1, "train.ini:4: [pipeline.train] flip: must be "
			     "0..1, got '3'");
	}
	free(dir);
}

/* -------------------------------------------------------- lines, paths */

static void test_line_numbers(void **state)
{
	config_t *cfg;

	(void)state;
	/* CRLF line ends, a BOM, inline comments with ';' and '#' */
	cfg = load_ok("\xEF\xBB\xBF; header\r\n[dataset]\r\nroot = d#x\r\n"
		      "[pipeline.t]\r\nsize = 64 # hash comment\r\n"
		      "batch_size = 8 ; semicolon comment\r\n"
		      "   \r\n\t; indented comment\r\n", NULL, 0);
	assert_int_equal(cfg->pipelines[0].size, 64);
	assert_int_equal(cfg->pipelines[0].batch_size, 8);
	assert_int_equal(cfg->pipelines[0].line, 4);
	assert_non_null(strstr(cfg->datasets[0].root, "/d#x"));
	config_destroy(&cfg);

	expect_error("\xEF\xBB\xBF; header\r\n[dataset]\r\nroot = d\r\n\r\n"
		     "[pipeline.t]\r\n# c\r\n; c\r\n\r\nsize = 0 ; zero\r\n",
		     NULL, 0,
		     "train.ini:9: [pipeline.t] size: must be 1..8192, got '0'");
	/* a file without a final newline */
	expect_error("[dataset]\nroot = d\n[pipeline.t]\nsize = 9000", NULL, 0,
		     "train.ini:4: [pipeline.t] size: must be 1..8192, got '9000'");
}

static void test_long_lines(void **state)
{
	size_t big = CONFIG_LINE_MAX + 64;
	char *text = malloc(3 * big), *p;
	config_t *cfg;
	char err[512];

	(void)state;
	assert_non_null(text);

	/* a 10000-character comment, then a 5000-character root */
	p = text;
	p += sprintf(p, "[dataset]\n;");
	memset(p, 'c', 10000);
	p += 10000;
	p += sprintf(p, "\nroot = /");
	memset(p, 'r', 5000);
	p += 5000;
	p += sprintf(p, "\n[pipeline.t]\nsize = 0\n");
	expect_error(text, NULL, 0,
		     "train.ini:5: [pipeline.t] size: must be 1..8192, got '0'");
	p -= strlen("size = 0\n");
	strcpy(p, "size = 8\n");
	cfg = load_ok(text, NULL, 0);
	assert_int_equal(strlen(cfg->datasets[0].root), 5001);
	config_destroy(&cfg);

	/* exactly CONFIG_LINE_MAX characters (CRLF too) is fine, one more not */
	p = text;
	p += sprintf(p, "[dataset]\nroot = d\n[pipeline.t]\n;");
	memset(p, 'x', CONFIG_LINE_MAX - 1);
	p += CONFIG_LINE_MAX - 1;
	strcpy(p, "\r\n");
	cfg = load_ok(text, NULL, 0);
	config_destroy(&cfg);
	strcpy(p, "y\nsize = 1\n");
	assert_int_equal(load(text, NULL, 0, &cfg, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "train.ini:4: line too long (16385 characters, "
			    "max 16384)");
	free(text);
}

static void test_paths(void **state)
{
	config_t *cfg;
	char *dir = real_tmpdir(), want[PATH_MAX + 64], err[512];

	(void)state;
	assert_int_equal(mkdir("conf", 0700), 0);
	tu_write_file("conf/c.ini", "[dataset]\nroot = ../data\nmanifest = m.tsv\n"
		   "[dataset.abs]\nroot = /x/y\nmanifest = /x/m.tsv\n"
		   "[pipeline.t]\n");
	assert_int_equal(config_load("conf/c.ini", NULL, 0, &cfg, err,
				     sizeof(err)), 0);
	assert_string_equal(cfg->path, "conf/c.ini");
	snprintf(want, sizeof(want), "%s/conf/../data", dir);
	assert_string_equal(cfg->datasets[0].root, want);
	snprintf(want, sizeof(want), "%s/conf/m.tsv", dir);
	assert_string_equal(cfg->datasets[0].manifest, want);
	assert_string_equal(cfg->datasets[1].root, "/x/y");
	assert_string_equal(cfg->datasets[1].manifest, "/x/m.tsv");
	config_destroy(&cfg);

	/* an absolute config path, and messages name the path as given */
	snprintf(want, sizeof(want), "%s/conf/c.ini", dir);
	tu_write_file("conf/c.ini", "[dataset]\nroot = data\n[pipeline.t]\nsize=0\n");
	assert_int_equal(config_load(want, NULL, 0, &cfg, err, sizeof(err)),
			 -EINVAL);
	assert_null(cfg);
	strcat(want, ":4: [pipeline.t] size: must be 1..8192, got '0'");
	assert_string_equal(err, want);

	/* file errors */
	assert_int_equal(config_load("missing.ini", NULL, 0, &cfg, err,
				     sizeof(err)), -ENOENT);
	assert_null(cfg);
	assert_string_equal(err, "missing.ini: cannot open: No such file or "
			    "directory");
	assert_true(config_load("conf", NULL, 0, &cfg, err, sizeof(err)) < 0);
	assert_null(cfg);
	assert_int_equal(config_load(NULL, NULL, 0, &cfg, err, sizeof(err)),
			 -EINVAL);
	/* no error buffer: still fails cleanly */
	assert_int_equal(config_load("missing.ini", NULL, 0, &cfg, NULL, 0),
			 -ENOENT);
	free(dir);
}

/* ------------------------------------------------------------ security */

static void test_security(void **state)
{
	config_t *cfg;
	char *dir = real_tmpdir(), want[PATH_MAX + 64], err[512];

	(void)state;
	/* neither: no CURVE, with or without an empty section */
	cfg = load_ok(MINIMAL, NULL, 0);
	assert_null(cfg->security.curve_secret_key_file);
	assert_null(cfg->security.authorized_keys);
	assert_int_equal(cfg->security.line, 0);
	assert_false(config_has_curve(cfg));
	config_destroy(&cfg);
	cfg = load_ok(MINIMAL "[security]\n", NULL, 0);
	assert_int_equal(cfg->security.line, 4);
	assert_false(config_has_curve(cfg));
	config_destroy(&cfg);
	assert_false(config_has_curve(NULL));

	/* both: paths resolved against the config's folder */
	cfg = load_ok("[security]\ncurve_secret_key_file = keys/server.key\n"
		      "authorized_keys = /etc/cutmixd/clients\n" MINIMAL, NULL, 0);
	snprintf(want, sizeof(want), "%s/keys/server.key", dir);
	assert_string_equal(cfg->security.curve_secret_key_file, want);
	assert_string_equal(cfg->security.authorized_keys, "/etc/cutmixd/clients");
	assert_int_equal(cfg->security.line, 1);
	assert_true(config_has_curve(cfg));
	config_destroy(&cfg);
	assert_int_equal(mkdir("conf", 0700), 0);
	tu_write_file("conf/c.ini", MINIMAL "[security]\ncurve_secret_key_file = "
		   "s.key\nauthorized_keys = ../clients\n");
	assert_int_equal(config_load("conf/c.ini", NULL, 0, &cfg, err,
				     sizeof(err)), 0);
	snprintf(want, sizeof(want), "%s/conf/s.key", dir);
	assert_string_equal(cfg->security.curve_secret_key_file, want);
	snprintf(want, sizeof(want), "%s/conf/../clients", dir);
	assert_string_equal(cfg->security.authorized_keys, want);
	config_destroy(&cfg);

	/* from --set, alone or on top of the file */
	{
		char *sets[] = { "security.curve_secret_key_file=/k/s.key",
				 "security.authorized_keys = /k/clients" };

		cfg = load_ok(MINIMAL, sets, 2);
		assert_string_equal(cfg->security.curve_secret_key_file,
				    "/k/s.key");
		assert_string_equal(cfg->security.authorized_keys, "/k/clients");
		config_destroy(&cfg);
		cfg = load_ok(MINIMAL "[security]\nauthorized_keys = a\n"
			      "curve_secret_key_file = b\n", sets + 1, 1);
		assert_string_equal(cfg->security.authorized_keys, "/k/clients");
		config_destroy(&cfg);
		expect_error(MINIMAL, sets + 1, 1,
			     "--set security.authorized_keys = /k/clients: "
			     "[security] authorized_keys: needs "
			     "curve_secret_key_file too (set both or neither)");
	}

	/* one without the other: at the key's line */
	expect_error(MINIMAL "[security]\n\ncurve_secret_key_file = s.key\n",
		     NULL, 0, "train.ini:6: [security] curve_secret_key_file: "
		     "needs authorized_keys too (set both or neither)");
	expect_error("[security]\nauthorized_keys = clients\n" MINIMAL, NULL, 0,
		     "train.ini:2: [security] authorized_keys: needs "
		     "curve_secret_key_file too (set both or neither)");
	/* keys of the table's usual rules */
	expect_error(MINIMAL "[security]\nauthorized_keys =\n", NULL, 0,
		     "train.ini:5: [security] authorized_keys: must be a path, "
		     "got ''");
	expect_error(MINIMAL "[security]\nallow_public = true\n", NULL, 0,
		     "train.ini:5: [security] allow_public: unknown key");
	expect_error(MINIMAL "[security]\nauthorized_keys = a\n"
		     "authorized_keys = b\n", NULL, 0,
		     "train.ini:6: [security] authorized_keys: duplicate key "
		     "(first set on line 5)");
	expect_error("[security]\n" MINIMAL "[security]\n", NULL, 0,
		     "train.ini:5: duplicate section [security] (first on "
		     "line 1)");
	expect_error(MINIMAL "[server]\nauthorized_keys = a\n", NULL, 0,
		     "train.ini:5: [server] authorized_keys: unknown key");
	free(dir);
}

/* ----------------------------------------------------------- canonical */

static char *canon_of(const char *text, char *const *sets, int n_sets)
{
	config_t *cfg = load_ok(text, sets, n_sets);
	char *c = config_canonical(cfg);

	assert_non_null(c);
	config_destroy(&cfg);
	return c;
}

static void test_canonical(void **state)
{
	static const char base[] =
		"[server]\nseed = 7\n"
		"[dataset]\nroot = /data\n"
		"[dataset.b]\nroot = /b\n"
		"[pipeline.train]\ncutmix_alpha = 1\ncutout_size = 20-40\n"
		"cutout_fill = mean\n"
		"[pipeline.val]\neval = true\n";
	/* the same settings: other order, comments, server-only keys */
	static const char same[] =
		"; reordered\n"
		"[pipeline.val]\neval = true\n\n"
		"[dataset.b]\nroot = /b\n"
		"[pipeline.train]\ncutout_fill = mean\ncutout_size = 20-40\n"
		"cutmix_alpha = 1.0\nflip = 0.5\n"
		"[dataset]\nroot = /data\n"
		"[server]\nseed = 7\nworkers = 3\nendpoint = ipc:///tmp/x\n"
		"log_level = debug\nmax_clients = 5\nmax_client_window = 2\n"
		"idle_timeout = 9\nmax_inflight = 4\n";
	char *a, *b, *c;

	(void)state;
	a = canon_of(base, NULL, 0);
	b = canon_of(base, NULL, 0);
	assert_string_equal(a, b);
	free(b);
	b = canon_of(same, NULL, 0);
	assert_string_equal(a, b);
	free(b);

	/* what it holds */
	assert_true(strncmp(a, "server.seed=7\n", 14) == 0);
	assert_non_null(strstr(a, "\nserver.max_pixels=50000000\n"));
	assert_non_null(strstr(a, "\nserver.max_file_bytes=67108864\n"));
	assert_non_null(strstr(a, "\nserver.on_decode_error=replace\n"));
	assert_non_null(strstr(a, "\ndataset.default.root=/data\n"));
	assert_non_null(strstr(a, "\ndataset.default.manifest=\n"));
	assert_non_null(strstr(a, "\ndataset.b.follow_symlinks=false\n"));
	assert_non_null(strstr(a, "\npipeline.train.dataset=default\n"));
	assert_non_null(strstr(a, "\npipeline.train.flip=0.5\n"));
	assert_non_null(strstr(a, "\npipeline.train.scale=0.080000000000000002,1\n"));
	assert_non_null(strstr(a, "\npipeline.train.ratio=0.75,1.3333333333333333\n"));
	assert_non_null(strstr(a, "\npipeline.train.cutout_size=20-40\n"));
	assert_non_null(strstr(a, "\npipeline.train.cutout_fill=mean\n"));
	assert_non_null(strstr(a, "\npipeline.train.cutmix_minmax=none\n"));
	assert_non_null(strstr(a, "\npipeline.val.crop=center\n"));
	assert_non_null(strstr(a, "\npipeline.val.resize=256\n"));
	assert_non_null(strstr(a, "\npipeline.val.flip=0\n"));
	assert_non_null(strstr(a, "\npipeline.val.shuffle=false\n"));
	assert_non_null(strstr(a, "\npipeline.val.std=0.22900000000000001,"
			       "0.224,0.22500000000000001\n"));
	assert_null(strstr(a, "endpoint"));
	assert_null(strstr(a, "workers"));
	assert_null(strstr(a, "log_level"));
	assert_null(strstr(a, "max_clients"));
	assert_null(strstr(a, "idle_timeout"));
	assert_null(strstr(a, "max_inflight"));
	/* sorted: dataset b before default, pipeline train before val */
	assert_true(strstr(a, "dataset.b.root") < strstr(a, "dataset.default.root"));
	assert_true(strstr(a, "pipeline.train.") < strstr(a, "pipeline.val."));
	/* every line is section.key=value */
	for (const char *l = a; *l; l = strchr(l, '\n') + 1) {
		const char *nl = strchr(l, '\n');
		const char *eq = memchr(l, '=', (size_t)(nl - l));

		assert_non_null(nl);
		assert_non_null(eq);
		assert_non_null(memchr(l, '.', (size_t)(eq - l)));
	}

	/* a pipeline key, the seed or a dataset changes it */
	{
		char *s1[] = { "pipeline.train.size=128" };
		b = canon_of(base, s1, 1);
		assert_string_not_equal(a, b);
		assert_non_null(strstr(b, "\npipeline.train.size=128\n"));
		free(b);
	}
	{
		char *s1[] = { "pipeline.val.size=225" };
		b = canon_of(base, s1, 1);
		assert_string_not_equal(a, b);
		assert_non_null(strstr(b, "\npipeline.val.resize=257\n"));
		free(b);
	}
	{
		char *s1[] = { "server.seed=8" };
		b = canon_of(base, s1, 1);
		assert_string_not_equal(a, b);
		free(b);
	}
	{
		char *s1[] = { "dataset.b.follow_symlinks=true" };
		b = canon_of(base, s1, 1);
		assert_string_not_equal(a, b);
		free(b);
	}
	{
		char *s1[] = { "server.workers=1", "server.endpoint=tcp://*:1",
			       "server.max_clients=1" };
		b = canon_of(base, s1, 3);
		assert_string_equal(a, b);
		free(b);
	}
	{
		char *s1[] = { "pipeline.train.cutmix_minmax=0.1,0.5" };
		c = canon_of(base, s1, 1);
		assert_non_null(strstr(c, "\npipeline.train.cutmix_minmax="
				       "0.10000000000000001,0.5\n"));
		free(c);
	}
	/* [security] does not change a batch */
	{
		char *s1[] = { "security.curve_secret_key_file=/k/s.key",
			       "security.authorized_keys=/k/clients" };
		b = canon_of(base, s1, 2);
		assert_string_equal(a, b);
		assert_null(strstr(b, "security"));
		assert_null(strstr(b, "/k/"));
		free(b);
	}
	assert_null(config_canonical(NULL));
	free(a);
}

/* ------------------------------------------------------ shipped files */

/* config/default.ini and config/demo.ini load, and default.ini shows every
 * key (set or commented out). Skipped when not run from the source tree. */
static void test_shipped_configs(void **state)
{
	static const char *const keys[] = {
		"endpoint", "workers", "seed", "max_inflight",
		"max_client_window", "max_clients", "max_pixels",
		"max_file_bytes", "max_scan_blocks", "max_batch_bytes",
		"on_decode_error", "idle_timeout", "log_level",
		"root", "manifest", "follow_symlinks", "digest_contents",
		"dataset", "eval", "batch_size", "size", "crop", "resize",
		"scale", "ratio", "flip", "interpolation", "dct_scale",
		"shuffle", "drop_last", "cutout_prob", "cutout_holes",
		"cutout_size", "cutout_fill", "mixup_alpha", "cutmix_alpha",
		"cutmix_minmax", "prob", "switch_prob", "mode", "partner",
		"correct_lam", "label_smoothing", "off_epoch", "layout", "dtype",
		"mean", "std", "curve_secret_key_file", "authorized_keys",
		"train_interpolation", "auto_augment", "aa_fill", "color_jitter",
		"reprob", "remode", "recount", "remin", "remax", "aug_repeats",
	};
	char path[PATH_MAX + 32], err[512], *text;
	config_t *cfg;
	FILE *f;
	long n;

	(void)state;
	snprintf(path, sizeof(path), "%s/config/default.ini", tu_oldcwd());
	f = fopen(path, "r");
	if (!f)
		skip();
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	rewind(f);
	text = calloc(1, (size_t)n + 1);
	assert_non_null(text);
	assert_int_equal(fread(text, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		char a[64], b[64];

		snprintf(a, sizeof(a), "\n;%s = ", keys[i]);
		snprintf(b, sizeof(b), "\n%s = ", keys[i]);
		if (!strstr(text, a) && !strstr(text, b))
			fail_msg("default.ini does not show key '%s'", keys[i]);
	}
	free(text);

	assert_int_equal(config_load(path, NULL, 0, &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg->n_pipelines, 2);
	assert_false(cfg->pipelines[0].eval);
	assert_true(cfg->pipelines[0].cutmix_alpha > 0);
	assert_true(cfg->pipelines[0].cutout_size[1] > 0);
	assert_true(cfg->pipelines[1].eval);
	assert_non_null(strstr(cfg->datasets[0].root, "/build/demo-data"));
	config_destroy(&cfg);

	snprintf(path, sizeof(path), "%s/config/demo.ini", tu_oldcwd());
	assert_int_equal(config_load(path, NULL, 0, &cfg, err, sizeof(err)), 0);
	{
		const struct pipeline_cfg *p = &cfg->pipelines[0];

		assert_int_equal(p->batch_size, 32);
		assert_int_equal(p->size, 128);
		assert_int_equal(p->crop, CROP_RANDOM_RESIZED);
		assert_true(p->flip == 0.5);
		assert_int_equal(p->cutout_holes, 1);
		assert_int_equal(p->cutout_size[0], 24);
		assert_int_equal(p->cutout_size[1], 40);
		assert_int_equal(p->cutout_fill, FILL_MEAN);
		assert_true(p->cutmix_alpha == 1.0 && p->mixup_alpha == 0.2);
		assert_true(p->switch_prob == 0.5 && p->label_smoothing == 0.1);
		assert_true(cfg->pipelines[1].eval);
	}
	config_destroy(&cfg);

	/* the DeiT-S recipe, key by key as docs/CONFIG.md describes it */
	snprintf(path, sizeof(path), "%s/config/deit.ini", tu_oldcwd());
	assert_int_equal(config_load(path, NULL, 0, &cfg, err, sizeof(err)), 0);
	{
		const struct pipeline_cfg *p = &cfg->pipelines[0];

		assert_int_equal(p->size, 224);
		assert_int_equal(p->crop, CROP_RANDOM_RESIZED);
		assert_int_equal(p->interpolation, 1); /* bicubic */
		assert_int_equal(p->aa.kind, AA_RAND);
		assert_true(p->aa.m == 9 && p->aa.mstd == 0.5 && p->aa.inc && p->aa.n == 2);
		assert_true(p->jitter[0] == 0.4 && !p->jitter_on); /* timm: off with RandAugment */
		assert_true(p->reprob == 0.25 && p->remode == ERASE_PIXEL && p->recount == 1);
		assert_true(p->mixup_alpha == 0.8 && p->cutmix_alpha == 1.0);
		assert_true(p->switch_prob == 0.5 && p->label_smoothing == 0.1);
		assert_int_equal(p->aug_repeats, 3);
		assert_true(cfg->pipelines[1].eval);
		assert_int_equal(cfg->pipelines[1].resize, 256);
	}
	config_destroy(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eval_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_every_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_augments, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_values, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_value_quoted, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sections_and_keys, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_duplicates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_many_sections, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_eval_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mixing_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crop_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dataset_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_overrides, setup, teardown),
		cmocka_unit_test_setup_teardown(test_line_numbers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_lines, setup, teardown),
		cmocka_unit_test_setup_teardown(test_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_security, setup, teardown),
		cmocka_unit_test_setup_teardown(test_canonical, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shipped_configs, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
