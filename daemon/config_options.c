/*
 * config_options.c — the ONE table of options of the config file, and
 * what is made from it: the "must be WHAT" text of a key, the table for
 * the man page (config_option_get(), scripts/gen_ini_man.c) and the
 * canonical text of the settings that change a batch (config_canonical()).
 * Add a key here: a row in options[] and its field in config.h.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_int.h"
#include "log.h"
#include "policy.h"

#define DEFAULT_ENDPOINT  "tcp://127.0.0.1:5555"
#define RESIZE_MAX        16384u


static const struct keyword kw_on_error[] = {
	{ "replace", ON_ERROR_REPLACE }, { "fail", ON_ERROR_FAIL }, { NULL, 0 } };
static const struct keyword kw_log_level[] = {
	{ "err", LOGL_ERR }, { "warning", LOGL_WARNING }, { "notice", LOGL_NOTICE },
	{ "info", LOGL_INFO }, { "debug", LOGL_DEBUG }, { NULL, 0 } };
const struct keyword cfg_kw_crop[] = {
	{ "random_resized", CROP_RANDOM_RESIZED }, { "center", CROP_CENTER },
	{ NULL, 0 } };
/* values of enum resize_filter (resize.h): bilinear 0, bicubic 1 */
static const struct keyword kw_interp[] = {
	{ "bilinear", 0 }, { "bicubic", 1 }, { NULL, 0 } };
static const struct keyword kw_train_interp[] = {
	{ "bilinear", TI_BILINEAR }, { "bicubic", TI_BICUBIC },
	{ "random", TI_RANDOM }, { NULL, 0 } };
static const struct keyword kw_remode[] = {
	{ "const", ERASE_CONST }, { "rand", ERASE_RAND }, { "pixel", ERASE_PIXEL },
	{ NULL, 0 } };
static const struct keyword kw_mode[] = {
	{ "batch", MIX_BATCH }, { "pair", MIX_PAIR }, { "elem", MIX_ELEM },
	{ NULL, 0 } };
static const struct keyword kw_partner[] = {
	{ "permute", PARTNER_PERMUTE }, { "flip", PARTNER_FLIP },
	{ "roll", PARTNER_ROLL }, { NULL, 0 } };
static const struct keyword kw_layout[] = {
	{ "nhwc", LAYOUT_NHWC }, { "nchw", LAYOUT_NCHW }, { NULL, 0 } };
static const struct keyword kw_dtype[] = {
	{ "uint8", DTYPE_UINT8 }, { "float32", DTYPE_FLOAT32 }, { NULL, 0 } };

_Static_assert(sizeof(enum on_error) == sizeof(int), "enums land as int");
_Static_assert(sizeof(enum crop_mode) == sizeof(int), "enums land as int");
_Static_assert(sizeof(enum mix_mode) == sizeof(int), "enums land as int");
_Static_assert(sizeof(enum partner_rule) == sizeof(int), "enums land as int");
_Static_assert(sizeof(enum out_layout) == sizeof(int), "enums land as int");
_Static_assert(sizeof(enum out_dtype) == sizeof(int), "enums land as int");
_Static_assert(sizeof(enum fill_mode) == sizeof(int), "enums land as int");
_Static_assert(sizeof(enum erase_mode) == sizeof(int), "enums land as int");

#define S_(f) offsetof(struct server_cfg, f)
#define D_(f) offsetof(struct dataset_cfg, f)
#define P_(f) offsetof(struct pipeline_cfg, f)
#define K_(f) offsetof(struct security_cfg, f)

/* One row per key. Columns after the type: integer range, floating range,
 * default, default in an eval pipeline, where it lands, keywords, flags. */
#define UINT(sec, key, t, lo, hi, def, defe, off, fl) \
	{ sec, key, t, lo, hi, 0, 0, def, defe, off, 0, NULL, fl }
#define REAL(sec, key, t, lo, hi, def, defe, off, fl) \
	{ sec, key, t, 0, 0, lo, hi, def, defe, off, 0, NULL, fl }
#define WORD(sec, key, words, def, defe, off, fl) \
	{ sec, key, OT_ENUM, 0, 0, 0, 0, def, defe, off, 0, words, fl }
#define TEXT(sec, key, t, def, off, off2, fl) \
	{ sec, key, t, 0, 0, 0, 0, def, NULL, off, off2, NULL, fl }

const struct option config_options[] = {
	/* [server] */
	TEXT(SEC_SERVER, "endpoint", OT_ENDPOINTS, DEFAULT_ENDPOINT,
	     S_(endpoints), S_(n_endpoints), 0),
	UINT(SEC_SERVER, "workers", OT_U32, 0, 1024, "0", NULL, S_(workers), 0),
	UINT(SEC_SERVER, "seed", OT_U64, 0, UINT64_MAX, "0", NULL, S_(seed),
	     F_DIGEST),
	UINT(SEC_SERVER, "max_inflight", OT_U32, 0, 4096, "0", NULL,
	     S_(max_inflight), 0),
	UINT(SEC_SERVER, "max_client_window", OT_U32, 1, 1024, "16", NULL,
	     S_(max_client_window), 0),
	UINT(SEC_SERVER, "max_clients", OT_U32, 1, 65536, "1024", NULL,
	     S_(max_clients), 0),
	UINT(SEC_SERVER, "max_pixels", OT_U64, 1, 1000000000000ull, "50000000",
	     NULL, S_(max_pixels), F_DIGEST),
	UINT(SEC_SERVER, "max_file_bytes", OT_U64, 1, 1ull << 40, "67108864",
	     NULL, S_(max_file_bytes), F_DIGEST),
	UINT(SEC_SERVER, "max_scan_blocks", OT_U64, 0, 1ull << 50, "0",
	     NULL, S_(max_scan_blocks), F_DIGEST),
	UINT(SEC_SERVER, "max_batch_bytes", OT_U64, 0, 1ull << 50, "0",
	     NULL, S_(max_batch_bytes), 0),
	WORD(SEC_SERVER, "on_decode_error", kw_on_error, "replace", NULL,
	     S_(on_decode_error), F_DIGEST),
	UINT(SEC_SERVER, "idle_timeout", OT_U32, 1, 86400, "300", NULL,
	     S_(idle_timeout_s), 0),
	WORD(SEC_SERVER, "log_level", kw_log_level, "info", NULL,
	     S_(log_level), 0),
	TEXT(SEC_SERVER, "metrics", OT_HOSTPORT, "off", S_(metrics), 0, 0),
	UINT(SEC_SERVER, "batch_cache_mb", OT_U64, 0, 1ull << 20, "0", NULL,
	     S_(batch_cache_mb), 0),
	TEXT(SEC_SERVER, "shm", OT_BOOL, "on", S_(shm), 0, 0),
	UINT(SEC_SERVER, "shm_max_mb", OT_U64, 1, 1ull << 20, "4096", NULL,
	     S_(shm_max_mb), 0),
	UINT(SEC_SERVER, "shm_slots", OT_U32, 0, 64, "0", NULL, S_(shm_slots), 0),
	UINT(SEC_SERVER, "tcp_sndbuf_kb", OT_U32, 0, 1u << 20, "0", NULL,
	     S_(tcp_sndbuf_kb), 0),

	/* [security]: both or neither (check_all); not F_DIGEST */
	TEXT(SEC_SECURITY, "curve_secret_key_file", OT_PATH, NULL,
	     K_(curve_secret_key_file), 0, 0),
	TEXT(SEC_SECURITY, "authorized_keys", OT_PATH, NULL,
	     K_(authorized_keys), 0, 0),

	/* [dataset] and [dataset.NAME] */
	TEXT(SEC_DATASET, "root", OT_PATH, NULL, D_(root), 0,
	     F_REQUIRED | F_DIGEST),
	TEXT(SEC_DATASET, "manifest", OT_PATH, NULL, D_(manifest), 0, F_DIGEST),
	TEXT(SEC_DATASET, "follow_symlinks", OT_BOOL, "false",
	     D_(follow_symlinks), 0, F_DIGEST),
	TEXT(SEC_DATASET, "digest_contents", OT_BOOL, "false",
	     D_(digest_contents), 0, 0),
	TEXT(SEC_DATASET, "shards", OT_PATH, NULL, D_(shards), 0, F_DIGEST),
	TEXT(SEC_DATASET, "index_cache", OT_PATH, NULL, D_(index_cache), 0, 0),
	TEXT(SEC_DATASET, "class_names", OT_PATH, NULL, D_(class_names), 0, F_DIGEST),
	TEXT(SEC_DATASET, "pack", OT_PATH, NULL, D_(pack), 0, F_DIGEST),

	/* [pipeline.NAME] */
	TEXT(SEC_PIPELINE, "dataset", OT_NAME, "default", P_(dataset_name), 0,
	     F_DIGEST),
	TEXT(SEC_PIPELINE, "eval", OT_BOOL, "false", P_(eval), 0, F_DIGEST),
	UINT(SEC_PIPELINE, "batch_size", OT_U32, 1, 65536, "128", NULL,
	     P_(batch_size), F_DIGEST),
	UINT(SEC_PIPELINE, "size", OT_U32, 1, CONFIG_MAX_SIZE, "224", NULL,
	     P_(size), F_DIGEST),
	WORD(SEC_PIPELINE, "crop", cfg_kw_crop, "random_resized", "center",
	     P_(crop), F_DIGEST),
	UINT(SEC_PIPELINE, "resize", OT_U32, 0, RESIZE_MAX, "0", NULL,
	     P_(resize), F_DIGEST),
	REAL(SEC_PIPELINE, "scale", OT_PAIR, 0, 1, "0.08,1.0", NULL, P_(scale),
	     F_MIN_OPEN | F_AUG | F_DIGEST),
	REAL(SEC_PIPELINE, "ratio", OT_PAIR, 0, INF,
	     "0.75,1.3333333333333333", NULL, P_(ratio),
	     F_MIN_OPEN | F_AUG | F_DIGEST),
	REAL(SEC_PIPELINE, "flip", OT_DOUBLE, 0, 1, "0.5", "0", P_(flip),
	     F_AUG | F_DIGEST),
	WORD(SEC_PIPELINE, "interpolation", kw_interp, "bilinear", NULL,
	     P_(interpolation), F_DIGEST),
	TEXT(SEC_PIPELINE, "dct_scale", OT_BOOL, "true", P_(dct_scale), 0,
	     F_DIGEST),
	{ SEC_PIPELINE, "shuffle", OT_BOOL, 0, 0, 0, 0, "true", "false",
	  P_(shuffle), 0, NULL, F_DIGEST },
	TEXT(SEC_PIPELINE, "drop_last", OT_BOOL, "false", P_(drop_last), 0,
	     F_DIGEST),
	REAL(SEC_PIPELINE, "cutout_prob", OT_DOUBLE, 0, 1, "1.0", NULL,
	     P_(cutout_prob), F_AUG | F_DIGEST),
	UINT(SEC_PIPELINE, "cutout_holes", OT_U32, 1, CONFIG_MAX_HOLES, "1",
	     NULL, P_(cutout_holes), F_AUG | F_DIGEST),
	UINT(SEC_PIPELINE, "cutout_size", OT_SIZES, 0, CONFIG_MAX_SIZE, "0",
	     NULL, P_(cutout_size), F_AUG | F_DIGEST),
	TEXT(SEC_PIPELINE, "cutout_fill", OT_FILL, "0", P_(cutout_fill),
	     P_(cutout_value), F_AUG | F_DIGEST),
	/* recipes (issue 8; timm's names; check_recipes() parses the texts) */
	WORD(SEC_PIPELINE, "train_interpolation", kw_train_interp, NULL, NULL,
	     P_(train_interpolation), F_AUG | F_DIGEST),
	TEXT(SEC_PIPELINE, "auto_augment", OT_TEXT, NULL, P_(auto_augment), 0,
	     F_AUG | F_DIGEST),
	TEXT(SEC_PIPELINE, "aa_fill", OT_FILL, "mean", P_(aa_fill),
	     P_(aa_fill_value), F_AUG | F_DIGEST),
	TEXT(SEC_PIPELINE, "color_jitter", OT_TEXT, NULL, P_(color_jitter), 0,
	     F_AUG | F_DIGEST),
	REAL(SEC_PIPELINE, "reprob", OT_DOUBLE, 0, 1, "0", NULL, P_(reprob),
	     F_AUG | F_DIGEST),
	WORD(SEC_PIPELINE, "remode", kw_remode, "pixel", NULL, P_(remode),
	     F_AUG | F_DIGEST),
	UINT(SEC_PIPELINE, "recount", OT_U32, 1, CONFIG_MAX_ERASE, "1", NULL,
	     P_(recount), F_AUG | F_DIGEST),
	REAL(SEC_PIPELINE, "remin", OT_DOUBLE, 0, 1, "0.02", NULL, P_(remin),
	     F_MIN_OPEN | F_AUG | F_DIGEST),
	REAL(SEC_PIPELINE, "remax", OT_DOUBLE, 0, 1, "0.3333333333333333", NULL,
	     P_(remax), F_MIN_OPEN | F_AUG | F_DIGEST),
	UINT(SEC_PIPELINE, "aug_repeats", OT_U32, 0, 16, "0", NULL,
	     P_(aug_repeats), F_AUG | F_DIGEST),
	REAL(SEC_PIPELINE, "mixup_alpha", OT_DOUBLE, 0, INF, "0", NULL,
	     P_(mixup_alpha), F_AUG | F_DIGEST),
	REAL(SEC_PIPELINE, "cutmix_alpha", OT_DOUBLE, 0, INF, "0", NULL,
	     P_(cutmix_alpha), F_AUG | F_DIGEST),
	REAL(SEC_PIPELINE, "cutmix_minmax", OT_PAIR, 0, 1, NULL, NULL,
	     P_(cutmix_minmax), F_MIN_OPEN | F_LESS | F_AUG | F_DIGEST),
	REAL(SEC_PIPELINE, "prob", OT_DOUBLE, 0, 1, "1.0", NULL, P_(prob),
	     F_AUG | F_DIGEST),
	REAL(SEC_PIPELINE, "switch_prob", OT_DOUBLE, 0, 1, "0.5", NULL,
	     P_(switch_prob), F_AUG | F_DIGEST),
	WORD(SEC_PIPELINE, "mode", kw_mode, "batch", NULL, P_(mode),
	     F_AUG | F_DIGEST),
	WORD(SEC_PIPELINE, "partner", kw_partner, "permute", NULL, P_(partner),
	     F_AUG | F_DIGEST),
	TEXT(SEC_PIPELINE, "correct_lam", OT_BOOL, "true", P_(correct_lam), 0,
	     F_AUG | F_DIGEST),
	REAL(SEC_PIPELINE, "label_smoothing", OT_DOUBLE, 0, 1, "0", NULL,
	     P_(label_smoothing), F_MAX_OPEN | F_AUG | F_DIGEST),
	UINT(SEC_PIPELINE, "off_epoch", OT_U32, 0, UINT32_MAX, "0", NULL,
	     P_(off_epoch), F_AUG | F_DIGEST),
	WORD(SEC_PIPELINE, "layout", kw_layout, "nhwc", NULL, P_(layout),
	     F_DIGEST),
	WORD(SEC_PIPELINE, "dtype", kw_dtype, "uint8", NULL, P_(dtype),
	     F_DIGEST),
	REAL(SEC_PIPELINE, "mean", OT_RGB, 0, 1, "0.485,0.456,0.406", NULL,
	     P_(mean), F_DIGEST),
	REAL(SEC_PIPELINE, "std", OT_RGB, 0, INF, "0.229,0.224,0.225", NULL,
	     P_(std), F_MIN_OPEN | F_DIGEST),
};

const int config_n_options = (int)(sizeof(config_options) / sizeof(config_options[0]));

const struct option *cfg_find_option(enum sec_kind kind, const char *key)
{
	for (int i = 0; i < config_n_options; i++)
		if (config_options[i].sec == kind && !strcmp(config_options[i].key, key))
			return &config_options[i];
	return NULL;
}

const char *cfg_word_name(const struct keyword *w, int value)
{
	for (; w->name; w++)
		if (w->value == value)
			return w->name;
	return "?";
}

/* What a number-valued option takes (OT_DOUBLE, OT_PAIR, OT_RGB). */
static void describe_reals(const struct option *o, char *buf, size_t n)
{
	char lo[64], hi[64];
	const char *op_lo = (o->flags & F_MIN_OPEN) ? "<" : "<=";
	const char *op_hi = (o->flags & F_MAX_OPEN) ? "<" : "<=";

	snprintf(lo, sizeof(lo), "%g %s ", o->min, op_lo);
	hi[0] = '\0';
	if (o->max != INF)
		snprintf(hi, sizeof(hi), " %s %g", op_hi, o->max);

	if (o->type == OT_DOUBLE) {
		if (!(o->flags & (F_MIN_OPEN | F_MAX_OPEN)) && o->max != INF)
			snprintf(buf, n, "%g..%g", o->min, o->max);
		else if (o->max == INF)
			snprintf(buf, n, "a number %s %g",
				 (o->flags & F_MIN_OPEN) ? ">" : ">=", o->min);
		else
			snprintf(buf, n, "a number %s %g and %s %g",
				 (o->flags & F_MIN_OPEN) ? ">" : ">=", o->min,
				 op_hi, o->max);
	} else if (o->type == OT_PAIR) {
		snprintf(buf, n, "two numbers A,B with %sA %s B%s", lo,
			 (o->flags & F_LESS) ? "<" : "<=", hi);
	} else if (o->max == INF) {
		snprintf(buf, n, "three numbers R,G,B, each %s %g",
			 (o->flags & F_MIN_OPEN) ? ">" : ">=", o->min);
	} else {
		snprintf(buf, n, "three numbers R,G,B, each %g..%g",
			 o->min, o->max);
	}
}

/* "a, b or c" from an OT_ENUM option's keywords. */
static void describe_words(const struct keyword *words, char *buf, size_t n)
{
	size_t used = 0, count = 0;

	while (words[count].name)
		count++;
	buf[0] = '\0';
	for (size_t i = 0; i < count && used < n; i++)
		used += (size_t)snprintf(buf + used, n - used, "%s%s",
			i == 0 ? "" : i + 1 == count ? " or " : ", ",
			words[i].name);
}

/* What an option takes, for "must be WHAT". */
void cfg_describe(const struct option *o, char *buf, size_t n)
{
	switch (o->type) {
	case OT_BOOL:
		snprintf(buf, n, "true or false (also yes/no, on/off, 1/0)");
		break;
	case OT_U32:
	case OT_U64:
		snprintf(buf, n, "%llu..%llu", (unsigned long long)o->umin,
			 (unsigned long long)o->umax);
		break;
	case OT_DOUBLE:
	case OT_PAIR:
	case OT_RGB:
		describe_reals(o, buf, n);
		break;
	case OT_SIZES:
		snprintf(buf, n, "N or MIN-MAX with %llu <= MIN <= MAX <= %llu",
			 (unsigned long long)o->umin,
			 (unsigned long long)o->umax);
		break;
	case OT_FILL:
		snprintf(buf, n, "0..255, mean or noise");
		break;
	case OT_TEXT:
		snprintf(buf, n, "1..%d printable characters", CONFIG_TEXT_MAX - 1);
		break;
	case OT_ENUM:
		describe_words(o->words, buf, n);
		break;
	case OT_NAME:
		snprintf(buf, n, "a dataset name of 1..%d characters A-Z a-z 0-9 _ -",
			 CONFIG_NAME_MAX - 1);
		break;
	case OT_PATH:
		snprintf(buf, n, "a path");
		break;
	case OT_ENDPOINTS:
		snprintf(buf, n, "1..%d distinct ZeroMQ endpoints, comma "
			 "separated (tcp://HOST:PORT, ipc://PATH)",
			 CONFIG_MAX_ENDPOINTS);
		break;
	case OT_HOSTPORT:
		snprintf(buf, n, "off or HOST:PORT with an IPv4 address, [IPv6] "
			 "or localhost and a port 1..65535");
		break;
	}
}

/* One "prefix.key=value" line for the option's value in base. */
static void canon_value(FILE *f, const char *prefix, const struct option *o,
			const void *base)
{
	const void *src = (const char *)base + o->off;
	const double *dv = src;

	fprintf(f, "%s.%s=", prefix, o->key);
	switch (o->type) {
	case OT_BOOL:
		fputs(*(const bool *)src ? "true" : "false", f);
		break;
	case OT_U32:
		fprintf(f, "%u", *(const uint32_t *)src);
		break;
	case OT_U64:
		fprintf(f, "%llu", (unsigned long long)*(const uint64_t *)src);
		break;
	case OT_DOUBLE:
		fprintf(f, "%.17g", *dv);
		break;
	case OT_ENUM:
		fputs(cfg_word_name(o->words, *(const int *)src), f);
		break;
	case OT_NAME:
		fputs(src, f);
		break;
	case OT_PATH:
		fputs(*(char *const *)src ? *(char *const *)src : "", f);
		break;
	case OT_HOSTPORT:
		fputs(*(char *const *)src ? *(char *const *)src : "off", f);
		break;
	case OT_ENDPOINTS: {
		char *const *eps = src;
		const void *count = (const char *)base + o->off2;
		int n = *(const int *)count;

		for (int i = 0; i < n; i++)
			fprintf(f, "%s%s", i ? "," : "", eps[i]);
		break;
	}
	case OT_PAIR:
		if (o->def == NULL &&
		    !((const struct pipeline_cfg *)base)->has_cutmix_minmax)
			fputs("none", f); /* cutmix_minmax unset */
		else
			fprintf(f, "%.17g,%.17g", dv[0], dv[1]);
		break;
	case OT_RGB:
		fprintf(f, "%.17g,%.17g,%.17g", dv[0], dv[1], dv[2]);
		break;
	case OT_SIZES:
		fprintf(f, "%u-%u", ((const uint32_t *)src)[0],
			((const uint32_t *)src)[1]);
		break;
	case OT_TEXT:
		fputs(src, f);
		break;
	case OT_FILL: {
		int mode = *(const int *)src;

		if (mode == FILL_MEAN)
			fputs("mean", f);
		else if (mode == FILL_NOISE)
			fputs("noise", f);
		else
			fprintf(f, "%u", *((const uint8_t *)base + o->off2));
		break;
	}
	}
	fputc('\n', f);
}

static void canon_section(FILE *f, enum sec_kind kind, const char *prefix,
			  const void *base)
{
	for (int i = 0; i < config_n_options; i++)
		if (config_options[i].sec == kind && (config_options[i].flags & F_DIGEST))
			canon_value(f, prefix, &config_options[i], base);
}

/* Indices 0..n-1 ordered by names[] (n <= 16: insertion sort). */
static void order_by_name(const char *const *names, int n, int *idx)
{
	for (int i = 0; i < n; i++)
		idx[i] = i;
	for (int i = 1; i < n; i++) {
		for (int j = i; j > 0 && strcmp(names[idx[j - 1]],
						names[idx[j]]) > 0; j--) {
			int t = idx[j];

			idx[j] = idx[j - 1];
			idx[j - 1] = t;
		}
	}
}

/* The n sections of one kind (names[i] the NAME of the one at bases[i]),
 * ordered by name, each as "WORD.NAME.key=value" lines. */
static void canon_by_name(FILE *f, enum sec_kind kind, const char *word,
			  const char *const *names, const void *const *bases,
			  int n)
{
	char prefix[SECTION_TEXT_MAX];
	int idx[CONFIG_MAX_PIPELINES + CONFIG_MAX_DATASETS];

	order_by_name(names, n, idx);
	for (int i = 0; i < n; i++) {
		snprintf(prefix, sizeof(prefix), "%s.%s", word, names[idx[i]]);
		canon_section(f, kind, prefix, bases[idx[i]]);
	}
}

char *config_canonical(const config_t *cfg)
{
	char *text = NULL;
	const char *names[CONFIG_MAX_PIPELINES + CONFIG_MAX_DATASETS];
	const void *bases[CONFIG_MAX_PIPELINES + CONFIG_MAX_DATASETS];
	size_t len = 0;
	FILE *f;

	if (!cfg)
		return NULL;
	f = open_memstream(&text, &len);
	if (!f)
		return NULL;
	canon_section(f, SEC_SERVER, "server", &cfg->server);
	/* datasets and pipelines by name: the order of the sections in the
	 * file does not change a batch */
	for (int i = 0; i < cfg->n_datasets; i++) {
		names[i] = cfg->datasets[i].name;
		bases[i] = &cfg->datasets[i];
	}
	canon_by_name(f, SEC_DATASET, "dataset", names, bases, cfg->n_datasets);
	for (int i = 0; i < cfg->n_pipelines; i++) {
		names[i] = cfg->pipelines[i].name;
		bases[i] = &cfg->pipelines[i];
	}
	canon_by_name(f, SEC_PIPELINE, "pipeline", names, bases, cfg->n_pipelines);
	if (ferror(f)) {
		fclose(f);
		free(text);
		return NULL;
	}
	if (fclose(f)) {
		free(text);
		return NULL;
	}
	return text;
}

/* ------------------------------------------------- the table, for docs */

int config_option_count(void)
{
	return config_n_options;
}

int config_option_get(int i, struct config_option_doc *d)
{
	static const char *const sec_names[] = {
		[SEC_SERVER] = "server", [SEC_SECURITY] = "security",
		[SEC_DATASET] = "dataset", [SEC_PIPELINE] = "pipeline.NAME",
	};
	const struct option *o;

	if (i < 0 || i >= config_n_options || !d)
		return -EINVAL;
	o = &config_options[i];
	d->section = sec_names[o->sec];
	d->key = o->key;
	cfg_describe(o, d->takes, sizeof(d->takes));
	d->def = o->def;
	d->def_eval = o->def_eval;
	d->required = o->flags & F_REQUIRED;
	d->digest = o->flags & F_DIGEST;
	d->aug = o->flags & F_AUG;
	return 0;
}
