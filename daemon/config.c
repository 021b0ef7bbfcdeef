/*
 * config.c — the INI file and --set overrides, checked against ONE table of
 * options (section, key, type, range, default, where it lands, flags).
 *
 * DESIGN
 *   Reading. The file is read into memory and handed to inih line by line
 *   through ini_parse_stream() and our own reader, so we always know the
 *   line being parsed (Debian's inih r55 has no per-line callback). The
 *   reader also sees the section headers, which inih does not report: it
 *   opens, checks and numbers sections there. inih's runtime options are
 *   set for the parse and restored after it (process-wide globals: the
 *   loader is not thread safe; the daemon loads from its main thread).
 *   inih stops at the first error (ini_stop_on_first_error), whether it is
 *   a syntax error of its own or our handler refusing a key.
 *
 *   Values. Each key is parsed as soon as it is read, into the final
 *   config_t struct, after the section's defaults were written there; the
 *   loader remembers which keys were present and where (file line or
 *   --set text), which is what the cross-field rules need. Overrides are
 *   applied after the file with the same code; an override of a key of
 *   the file replaces it. Cross-field rules run last, over the finished
 *   sections.
 *
 *   Errors. The first error wins and stops everything. One line, without
 *   a trailing newline: "FILE:LINE: [SECTION] KEY: must be WHAT, got 'X'".
 */
#include "config.h"

#include <ctype.h>
#include <fcntl.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "log.h"
#include "policy.h"

#define CONFIG_FILE_MAX   (1 << 20)  /* a config file is small */
#define SECTION_TEXT_MAX  48         /* "pipeline." + 31 + NUL fits */
#define KEYS_MAX          56         /* >= keys of the largest section */
#define SECTIONS_MAX      (3 + CONFIG_MAX_DATASETS + CONFIG_MAX_PIPELINES) /* [server], [security], +1: section_open() fills secs[n_secs] before its limit checks */
#define QUOTE_MAX         80         /* value text quoted in a message */
#define DEFAULT_ENDPOINT  "tcp://127.0.0.1:5555"
#define RESIZE_MAX        16384u
#define AUTO_CROP_PCT     0.875      /* resize = round(size / 0.875) */

enum sec_kind { SEC_SERVER, SEC_SECURITY, SEC_DATASET, SEC_PIPELINE };

enum opt_type {
	OT_BOOL,      /* bool */
	OT_U32,       /* uint32_t, umin..umax */
	OT_U64,       /* uint64_t, umin..umax */
	OT_DOUBLE,    /* double, min..max (F_MIN_OPEN / F_MAX_OPEN) */
	OT_ENUM,      /* int-sized enum, one of words */
	OT_NAME,      /* char[CONFIG_NAME_MAX], [A-Za-z0-9_-]{1,31} */
	OT_PATH,      /* char *, resolved against the config's folder */
	OT_ENDPOINTS, /* char *[CONFIG_MAX_ENDPOINTS] at off, int count at off2 */
	OT_PAIR,      /* double[2] "a,b", each in min..max, a <= b (F_LESS: a < b) */
	OT_RGB,       /* double[3] "r,g,b", each in min..max */
	OT_SIZES,     /* uint32_t[2] "N" or "MIN-MAX", umin..umax, MIN <= MAX */
	OT_FILL,      /* enum fill_mode at off, uint8_t value at off2 */
	OT_HOSTPORT,  /* char *, "HOST:PORT" (IPv4, [IPv6], localhost) or "off" = NULL */
	OT_TEXT,      /* char[CONFIG_TEXT_MAX], printable, parsed by a check */
};

enum {
	F_MIN_OPEN = 1 << 0, /* min itself is not allowed */
	F_MAX_OPEN = 1 << 1, /* max itself is not allowed */
	F_LESS     = 1 << 2, /* OT_PAIR: a < b, not a <= b */
	F_REQUIRED = 1 << 3, /* no default: the key must be given */
	F_AUG      = 1 << 4, /* augmentation key: refused in an eval pipeline */
	F_DIGEST   = 1 << 5, /* changes batch bytes: in config_canonical() */
};

struct keyword {
	const char *name;
	int value;
};

struct option {
	enum sec_kind sec;
	const char *key;
	enum opt_type type;
	uint64_t umin, umax;         /* integer types */
	double min, max;             /* floating types; max HUGE_VAL = none */
	const char *def;             /* NULL: unset (see F_REQUIRED) */
	const char *def_eval;        /* default when eval = true; NULL: def */
	size_t off, off2;            /* where it lands in the section struct */
	const struct keyword *words; /* OT_ENUM */
	unsigned flags;
};

static const struct keyword kw_on_error[] = {
	{ "replace", ON_ERROR_REPLACE }, { "fail", ON_ERROR_FAIL }, { NULL, 0 } };
static const struct keyword kw_log_level[] = {
	{ "err", LOGL_ERR }, { "warning", LOGL_WARNING }, { "notice", LOGL_NOTICE },
	{ "info", LOGL_INFO }, { "debug", LOGL_DEBUG }, { NULL, 0 } };
static const struct keyword kw_crop[] = {
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
#define INF HUGE_VAL

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

static const struct option options[] = {
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
	WORD(SEC_PIPELINE, "crop", kw_crop, "random_resized", "center",
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

#define N_OPTIONS ((int)(sizeof(options) / sizeof(options[0])))

/* Where a value came from: a line of the file, or one --set argument. */
struct where {
	int line;        /* > 0: file line; 0: no line (the whole file) */
	const char *set; /* the --set text, or NULL */
};

struct entry {
	const struct option *opt;
	struct where at;
};

struct section {
	enum sec_kind kind;
	char text[SECTION_TEXT_MAX]; /* as written, for messages */
	const char *id;              /* the NAME of a dataset or pipeline */
	struct where at;
	void *base;                  /* the struct its keys land in */
	struct entry entries[KEYS_MAX];
	int n_entries;
};

struct loader {
	config_t *cfg;
	const char *path;
	char *dir;                   /* folder of the config file */
	char *err;
	size_t errlen;
	int rc;                      /* first error, 0 while none */

	struct section secs[SECTIONS_MAX];
	int n_secs;
	int cur;                     /* section of the lines being read */

	/* the reader's position in the file */
	const char *buf;
	size_t len, pos;
	int lineno;
	const char *line;            /* last line handed to inih */
	size_t line_len;
};

/* ---------------------------------------------------------------- errors */

/* Copy s for a message: at most QUOTE_MAX characters, controls as '?'. */
static const char *quote(char *dst, size_t n, const char *s, size_t len)
{
	size_t o = 0;

	for (size_t i = 0; i < len && s[i] && o + 4 < n; i++) {
		if (i == QUOTE_MAX) {
			memcpy(dst + o, "...", 3);
			o += 3;
			break;
		}
		unsigned char c = (unsigned char)s[i];
		dst[o++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	dst[o] = '\0';
	return dst;
}

__attribute__((format(printf, 3, 4)))
static int fail(struct loader *ld, struct where at, const char *fmt, ...)
{
	char msg[512], set[QUOTE_MAX * 2 + 8];
	va_list ap;

	if (ld->rc)
		return ld->rc;
	ld->rc = -EINVAL;
	if (!ld->err || !ld->errlen)
		return ld->rc;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (at.set)
		snprintf(ld->err, ld->errlen, "--set %s: %s",
			 quote(set, sizeof(set), at.set, strlen(at.set)), msg);
	else if (at.line > 0)
		snprintf(ld->err, ld->errlen, "%s:%d: %s", ld->path, at.line, msg);
	else
		snprintf(ld->err, ld->errlen, "%s: %s", ld->path, msg);
	return ld->rc;
}

static int fail_errno(struct loader *ld, int rc, const char *what)
{
	if (ld->rc)
		return ld->rc;
	ld->rc = rc;
	if (ld->err && ld->errlen)
		snprintf(ld->err, ld->errlen, "%s: %s: %s", ld->path, what,
			 strerror(-rc));
	return rc;
}

/* ------------------------------------------------------ value parsers */

static bool is_name(const char *s, size_t len)
{
	if (len < 1 || len >= CONFIG_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-')
			return false;
	return true;
}

/* Decimal digits only: no sign, no blanks, no base prefix. */
static bool parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!isdigit((unsigned char)s[0]))
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE || *end)
		return false;
	*out = v;
	return true;
}

/* A finite decimal number ("1", "-0.5", "1e-3"); no nan, inf or hex. */
static bool parse_double(const char *s, double *out)
{
	char *end;
	double v;

	if (!*s || strspn(s, "0123456789+-.eE") != strlen(s))
		return false;
	errno = 0;
	v = strtod(s, &end);
	if (end == s || *end || !isfinite(v))
		return false;
	*out = v;
	return true;
}

static bool in_range(const struct option *o, double v)
{
	if ((o->flags & F_MIN_OPEN) ? !(v > o->min) : !(v >= o->min))
		return false;
	if (o->max == INF)
		return true;
	return (o->flags & F_MAX_OPEN) ? v < o->max : v <= o->max;
}

static bool parse_bool(const char *s, bool *out)
{
	static const char *yes[] = { "true", "yes", "on", "1" };
	static const char *no[] = { "false", "no", "off", "0" };

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (!strcasecmp(s, yes[i])) {
			*out = true;
			return true;
		}
		if (!strcasecmp(s, no[i])) {
			*out = false;
			return true;
		}
	}
	return false;
}

static const char *word_name(const struct keyword *w, int value)
{
	for (; w->name; w++)
		if (w->value == value)
			return w->name;
	return "?";
}

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* Split s (modified) at sep into exactly n trimmed, non-empty parts. */
static bool split(char *s, char sep, char **parts, int n)
{
	int k = 0;

	for (char *p = s;; k++) {
		char *q = strchr(p, sep);

		if (k == n)
			return false;
		if (q)
			*q = '\0';
		parts[k] = trim(p);
		if (!*parts[k])
			return false;
		if (!q)
			break;
		p = q + 1;
	}
	return k + 1 == n;
}

/* n numbers, each in the option's range. */
static bool parse_reals(const struct option *o, const char *v, double *out,
			int n)
{
	char buf[256], *parts[3];

	if (strlen(v) >= sizeof(buf))
		return false;
	strcpy(buf, v);
	if (!split(buf, ',', parts, n))
		return false;
	for (int i = 0; i < n; i++)
		if (!parse_double(parts[i], &out[i]) || !in_range(o, out[i]))
			return false;
	return true;
}

static bool valid_endpoint(const char *e)
{
	const char *sep = strstr(e, "://");

	if (!sep || sep == e || !sep[3])
		return false;
	/* the transports a daemon can serve on: foo://bar would pass here
	 * and then fail the bind (exit 70) after --check said "ok" */
	if (!((sep - e == 3 && !strncmp(e, "tcp", 3)) ||
	      (sep - e == 3 && !strncmp(e, "ipc", 3))))
		return false;
	for (const char *p = e; *p; p++)
		if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p))
			return false;
	return true;
}

static void free_endpoints(char **eps, int n)
{
	for (int i = 0; i < n; i++) {
		free(eps[i]);
		eps[i] = NULL;
	}
}

/* Returns 1 when parsed, 0 when the text is bad, -ENOMEM. */
static int parse_endpoints(const char *v, char **eps, int *n_out)
{
	char *buf, *p, *tmp[CONFIG_MAX_ENDPOINTS] = { 0 };
	int n = 0, rc = 0;

	buf = strdup(v);
	if (!buf)
		return -ENOMEM;
	for (p = buf;;) {
		char *q = strchr(p, ','), *e;

		if (q)
			*q = '\0';
		e = trim(p);
		if (n == CONFIG_MAX_ENDPOINTS || !valid_endpoint(e))
			goto out_free;
		for (int i = 0; i < n; i++)
			if (!strcmp(tmp[i], e))
				goto out_free;
		tmp[n] = strdup(e);
		if (!tmp[n]) {
			rc = -ENOMEM;
			goto out_free;
		}
		n++;
		if (!q)
			break;
		p = q + 1;
	}
	free_endpoints(eps, *n_out);
	memcpy(eps, tmp, sizeof(tmp));
	*n_out = n;
	free(buf);
	return 1;

out_free:
	free_endpoints(tmp, n);
	free(buf);
	return rc;
}

/* "N" or "MIN-MAX" (blanks allowed around '-'). */
static bool parse_sizes(const struct option *o, const char *v, uint32_t *out)
{
	char buf[64], *parts[2];
	uint64_t a, b;

	if (strlen(v) >= sizeof(buf))
		return false;
	strcpy(buf, v);
	if (!strchr(buf, '-')) {
		if (!parse_u64(trim(buf), &a))
			return false;
		b = a;
	} else if (!split(buf, '-', parts, 2) || !parse_u64(parts[0], &a) ||
		   !parse_u64(parts[1], &b)) {
		return false;
	}
	if (a < o->umin || b > o->umax || a > b)
		return false;
	out[0] = (uint32_t)a;
	out[1] = (uint32_t)b;
	return true;
}

static char *join_path(const char *dir, const char *v)
{
	char *out;

	if (v[0] == '/' || !dir)
		return strdup(v);
	if (asprintf(&out, "%s/%s", dir, v) < 0)
		return NULL;
	return out;
}

/* "off", or HOST:PORT for an HTTP listener: an IPv4 literal, [IPv6] or
 * localhost, and a port 1..65535. */
static bool parse_hostport(const char *v)
{
	const char *colon = strrchr(v, ':');
	char host[64], *end;
	unsigned char addr[16];
	size_t hl;
	unsigned long port;

	if (!strcasecmp(v, "off"))
		return true;
	if (!colon || colon == v || !colon[1])
		return false;
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (*end || errno || port < 1 || port > 65535 || !isdigit((unsigned char)colon[1]))
		return false;
	hl = (size_t)(colon - v);
	if (v[0] == '[') {
		if (hl < 3 || v[hl - 1] != ']' || hl - 2 >= sizeof(host))
			return false;
		memcpy(host, v + 1, hl - 2);
		host[hl - 2] = '\0';
		return inet_pton(AF_INET6, host, addr) == 1;
	}
	if (hl >= sizeof(host))
		return false;
	memcpy(host, v, hl);
	host[hl] = '\0';
	return !strcmp(host, "localhost") || inet_pton(AF_INET, host, addr) == 1;
}

/* What an option takes, for "must be WHAT". */
static void describe(const struct option *o, char *buf, size_t n)
{
	char lo[64], hi[64];
	const char *op_lo = (o->flags & F_MIN_OPEN) ? "<" : "<=";
	const char *op_hi = (o->flags & F_MAX_OPEN) ? "<" : "<=";

	snprintf(lo, sizeof(lo), "%g %s ", o->min, op_lo);
	hi[0] = '\0';
	if (o->max != INF)
		snprintf(hi, sizeof(hi), " %s %g", op_hi, o->max);

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
		if (!(o->flags & (F_MIN_OPEN | F_MAX_OPEN)) && o->max != INF)
			snprintf(buf, n, "%g..%g", o->min, o->max);
		else if (o->max == INF)
			snprintf(buf, n, "a number %s %g",
				 (o->flags & F_MIN_OPEN) ? ">" : ">=", o->min);
		else
			snprintf(buf, n, "a number %s %g and %s %g",
				 (o->flags & F_MIN_OPEN) ? ">" : ">=", o->min,
				 op_hi, o->max);
		break;
	case OT_PAIR:
		snprintf(buf, n, "two numbers A,B with %sA %s B%s", lo,
			 (o->flags & F_LESS) ? "<" : "<=", hi);
		break;
	case OT_RGB:
		if (o->max == INF)
			snprintf(buf, n, "three numbers R,G,B, each %s %g",
				 (o->flags & F_MIN_OPEN) ? ">" : ">=", o->min);
		else
			snprintf(buf, n, "three numbers R,G,B, each %g..%g",
				 o->min, o->max);
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
	case OT_ENUM: {
		size_t used = 0, count = 0;

		while (o->words[count].name)
			count++;
		buf[0] = '\0';
		for (size_t i = 0; i < count && used < n; i++)
			used += (size_t)snprintf(buf + used, n - used, "%s%s",
				i == 0 ? "" : i + 1 == count ? " or " : ", ",
				o->words[i].name);
		break;
	}
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

/*
 * Parse v into the field(s) of o in base. Returns 0, or the error (with
 * the message written) saying what the key takes and what it got.
 */
static int set_value(struct loader *ld, const struct section *s,
		     const struct option *o, const char *v, struct where at)
{
	void *dst = (char *)s->base + o->off;
	char what[160], got[QUOTE_MAX + 8];
	bool ok = false;
	uint64_t u;
	double d, dv[3];

	switch (o->type) {
	case OT_BOOL:
		ok = parse_bool(v, (bool *)dst);
		break;
	case OT_U32:
	case OT_U64:
		ok = parse_u64(v, &u) && u >= o->umin && u <= o->umax;
		if (ok && o->type == OT_U32)
			*(uint32_t *)dst = (uint32_t)u;
		else if (ok)
			*(uint64_t *)dst = u;
		break;
	case OT_DOUBLE:
		ok = parse_double(v, &d) && in_range(o, d);
		if (ok)
			*(double *)dst = d;
		break;
	case OT_ENUM:
		for (const struct keyword *w = o->words; w->name && !ok; w++) {
			if (!strcasecmp(v, w->name)) {
				*(int *)dst = w->value;
				ok = true;
			}
		}
		break;
	case OT_NAME:
		ok = is_name(v, strlen(v));
		if (ok)
			strcpy(dst, v);
		break;
	case OT_PATH:
		ok = v[0] != '\0';
		if (ok) {
			char *p = join_path(ld->dir, v);

			if (!p)
				return fail_errno(ld, -ENOMEM, "loading config");
			free(*(char **)dst);
			*(char **)dst = p;
		}
		break;
	case OT_ENDPOINTS: {
		void *count = (char *)s->base + o->off2;
		int rc = parse_endpoints(v, dst, count);

		if (rc < 0)
			return fail_errno(ld, rc, "loading config");
		ok = rc == 1;
		break;
	}
	case OT_PAIR:
		ok = parse_reals(o, v, dv, 2) &&
		     ((o->flags & F_LESS) ? dv[0] < dv[1] : dv[0] <= dv[1]);
		if (ok)
			memcpy(dst, dv, 2 * sizeof(double));
		break;
	case OT_RGB:
		ok = parse_reals(o, v, dv, 3);
		if (ok)
			memcpy(dst, dv, 3 * sizeof(double));
		break;
	case OT_SIZES:
		ok = parse_sizes(o, v, (uint32_t *)dst);
		break;
	case OT_HOSTPORT:
		ok = parse_hostport(v);
		if (ok) {
			char *p = strcasecmp(v, "off") ? strdup(v) : NULL;

			if (!p && strcasecmp(v, "off"))
				return fail_errno(ld, -ENOMEM, "loading config");
			free(*(char **)dst);
			*(char **)dst = p;
		}
		break;
	case OT_TEXT: {
		size_t len = strlen(v);

		ok = len > 0 && len < CONFIG_TEXT_MAX;
		for (size_t i = 0; ok && i < len; i++)
			ok = v[i] > ' ' && v[i] < 0x7f;
		if (ok)
			memcpy(dst, v, len + 1);
		break;
	}
	case OT_FILL: {
		uint8_t *value = (uint8_t *)s->base + o->off2;

		ok = true;
		if (!strcasecmp(v, "mean")) {
			*(int *)dst = FILL_MEAN;
		} else if (!strcasecmp(v, "noise")) {
			*(int *)dst = FILL_NOISE;
		} else if (parse_u64(v, &u) && u <= 255) {
			*(int *)dst = FILL_VALUE;
			*value = (uint8_t)u;
		} else {
			ok = false;
		}
		break;
	}
	}
	if (ok)
		return 0;
	describe(o, what, sizeof(what));
	return fail(ld, at, "[%s] %s: must be %s, got '%s'", s->text, o->key,
		    what, quote(got, sizeof(got), v, strlen(v)));
}

/* The built-in defaults of a section (eval: those of an eval pipeline
 * for the keys that have one, and only those). */
static int set_defaults(struct loader *ld, const struct section *s, bool eval)
{
	static const struct where builtin = { 0, "(built-in default)" };
	int rc;

	for (int i = 0; i < N_OPTIONS; i++) {
		const struct option *o = &options[i];
		const char *def = eval ? o->def_eval : o->def;

		if (o->sec != s->kind || !def)
			continue;
		rc = set_value(ld, s, o, def, builtin);
		if (rc)
			return rc;
	}
	return 0;
}

/* ------------------------------------------------------------ sections */

static const struct option *find_option(enum sec_kind kind, const char *key)
{
	for (int i = 0; i < N_OPTIONS; i++)
		if (options[i].sec == kind && !strcmp(options[i].key, key))
			return &options[i];
	return NULL;
}

static const struct entry *find_entry(const struct section *s,
				      const char *key)
{
	for (int i = 0; i < s->n_entries; i++)
		if (!strcmp(s->entries[i].opt->key, key))
			return &s->entries[i];
	return NULL;
}

/* The entry's place, else the section's (a key left at its default). */
static struct where entry_at(const struct section *s, const char *key)
{
	const struct entry *e = find_entry(s, key);

	return e ? e->at : s->at;
}

/*
 * Open section `text` (len bytes, not NUL-terminated): check its name,
 * refuse a duplicate (from the file) or return the existing one (from
 * --set), else create it with its defaults. *idx = index in ld->secs.
 */
static int section_open(struct loader *ld, const char *text, size_t len,
			struct where at, bool reuse, int *idx)
{
	config_t *cfg = ld->cfg;
	char shown[QUOTE_MAX + 8];
	enum sec_kind kind;
	const char *id = NULL;
	size_t id_len = 0;
	struct section *s;
	int rc;

	quote(shown, sizeof(shown), text, len);
	if (len == 6 && !memcmp(text, "server", 6)) {
		kind = SEC_SERVER;
		id = "";
	} else if (len == 8 && !memcmp(text, "security", 8)) {
		kind = SEC_SECURITY;
		id = "";
	} else if (len == 7 && !memcmp(text, "dataset", 7)) {
		kind = SEC_DATASET;
		id = "default";
		id_len = 7;
	} else if (len > 8 && !memcmp(text, "dataset.", 8)) {
		kind = SEC_DATASET;
		id = text + 8;
		id_len = len - 8;
	} else if (len > 9 && !memcmp(text, "pipeline.", 9)) {
		kind = SEC_PIPELINE;
		id = text + 9;
		id_len = len - 9;
	} else {
		return fail(ld, at, "unknown section [%s]", shown);
	}
	if ((kind == SEC_DATASET || kind == SEC_PIPELINE) && !is_name(id, id_len))
		return fail(ld, at, "bad section name [%s]: NAME must be 1..%d "
			    "characters A-Z a-z 0-9 _ -", shown,
			    CONFIG_NAME_MAX - 1);

	for (int i = 0; i < ld->n_secs; i++) {
		s = &ld->secs[i];
		if (s->kind != kind || strlen(s->id) != id_len ||
		    memcmp(s->id, id, id_len))
			continue;
		if (!reuse) {
			if (s->at.set)
				return fail(ld, at, "duplicate section [%s]", shown);
			return fail(ld, at, "duplicate section [%s] (first on "
				    "line %d)", shown, s->at.line);
		}
		*idx = i;
		return 0;
	}

	s = &ld->secs[ld->n_secs];
	memset(s, 0, sizeof(*s));
	s->kind = kind;
	s->at = at;
	memcpy(s->text, text, len);
	s->text[len] = '\0';
	switch (kind) {
	case SEC_SERVER:
		s->base = &cfg->server;
		s->id = "";
		break;
	case SEC_SECURITY:
		s->base = &cfg->security;
		s->id = "";
		cfg->security.line = at.line;
		break;
	case SEC_DATASET: {
		struct dataset_cfg *d;

		if (cfg->n_datasets == CONFIG_MAX_DATASETS)
			return fail(ld, at, "too many dataset sections (max %d)",
				    CONFIG_MAX_DATASETS);
		d = &cfg->datasets[cfg->n_datasets++];
		memcpy(d->name, id, id_len);
		d->line = at.line;
		s->base = d;
		s->id = d->name;
		break;
	}
	case SEC_PIPELINE: {
		struct pipeline_cfg *p;

		if (cfg->n_pipelines == CONFIG_MAX_PIPELINES)
			return fail(ld, at, "too many pipeline sections (max %d)",
				    CONFIG_MAX_PIPELINES);
		p = &cfg->pipelines[cfg->n_pipelines++];
		memcpy(p->name, id, id_len);
		p->line = at.line;
		p->dataset = -1;
		s->base = p;
		s->id = p->name;
		break;
	}
	}
	ld->n_secs++;
	*idx = ld->n_secs - 1;
	/* the server's defaults were set before anything was read */
	if (kind == SEC_SERVER)
		return 0;
	rc = set_defaults(ld, s, false);
	return rc;
}

/* Record key = value of section s, then parse the value. */
static int section_set(struct loader *ld, struct section *s, const char *key,
		       const char *value, struct where at)
{
	const struct option *o;
	struct entry *e = NULL;

	if (!*key)
		return fail(ld, at, "[%s] missing key name before '='", s->text);
	o = find_option(s->kind, key);
	if (!o) {
		char shown[QUOTE_MAX + 8];

		return fail(ld, at, "[%s] %s: unknown key", s->text,
			    quote(shown, sizeof(shown), key, strlen(key)));
	}
	for (int i = 0; i < s->n_entries; i++)
		if (s->entries[i].opt == o)
			e = &s->entries[i];
	if (e && !at.set && !e->at.set)
		return fail(ld, at, "[%s] %s: duplicate key (first set on line "
			    "%d)", s->text, key, e->at.line);
	if (!e) {
		if (s->n_entries == KEYS_MAX) /* cannot happen: keys are unique */
			return fail(ld, at, "[%s] too many keys", s->text);
		e = &s->entries[s->n_entries++];
		e->opt = o;
	}
	e->at = at;
	return set_value(ld, s, o, value, at);
}

/* ----------------------------------------------------------- the file */

/* The section header on this line, if any (inih's own rules: blanks
 * before '[', the name up to ']', an inline comment needs a blank before
 * it). A header inih would reject is left for inih to report. */
static int check_header(struct loader *ld, const char *line)
{
	struct where at = { ld->lineno, NULL };
	const char *s = line, *end;
	char shown[QUOTE_MAX + 8];
	bool was_space = false;

	if (ld->lineno == 1 && !strncmp(s, "\xEF\xBB\xBF", 3))
		s += 3;
	while (isspace((unsigned char)*s))
		s++;
	if (*s != '[')
		return 0;
	for (end = s + 1; *end && *end != ']'; end++) {
		if (was_space && (*end == ';' || *end == '#'))
			return 0;
		was_space = isspace((unsigned char)*end);
	}
	if (*end != ']')
		return 0;
	for (const char *r = end + 1; *r; r++) {
		if (*r == ';' || *r == '#')
			break;
		if (!isspace((unsigned char)*r))
			return fail(ld, at, "expected end of line after ']', got '%s'",
				    quote(shown, sizeof(shown), s, ld->line_len -
					  (size_t)(s - line)));
	}
	return section_open(ld, s + 1, (size_t)(end - s - 1), at, false,
			    &ld->cur);
}

/* inih's reader: one whole line per call, so line numbers are ours. */
static char *read_line(char *str, int num, void *stream)
{
	struct loader *ld = stream;
	const char *p, *nl;
	size_t len, text;

	if (ld->rc || ld->pos >= ld->len)
		return NULL;
	p = ld->buf + ld->pos;
	nl = memchr(p, '\n', ld->len - ld->pos);
	len = nl ? (size_t)(nl - p) + 1 : ld->len - ld->pos;
	text = len - (nl ? 1 : 0);
	if (text && p[text - 1] == '\r')
		text--;
	ld->pos += len;
	ld->lineno++;
	ld->line = p;
	ld->line_len = text;

	struct where at = { ld->lineno, NULL };
	if (text > CONFIG_LINE_MAX || len + 1 > (size_t)num) {
		fail(ld, at, "line too long (%zu characters, max %d)", text,
		     CONFIG_LINE_MAX);
		return NULL;
	}
	if (memchr(p, '\0', len)) {
		fail(ld, at, "NUL byte in line");
		return NULL;
	}
	memcpy(str, p, len);
	str[len] = '\0';
	if (check_header(ld, str))
		return NULL;
	return str;
}

/* inih's handler: one key = value of the line just read. */
static int on_key(void *user, const char *section, const char *name,
		  const char *value)
{
	struct loader *ld = user;
	struct where at = { ld->lineno, NULL };
	char shown[QUOTE_MAX + 8];

	(void)section; /* == ld->secs[ld->cur].text, we opened it */
	if (ld->cur < 0) {
		fail(ld, at, "%s: key outside any section (put it under "
		     "[server], [dataset] or [pipeline.NAME])",
		     quote(shown, sizeof(shown), name, strlen(name)));
		return 0;
	}
	return section_set(ld, &ld->secs[ld->cur], name, value, at) == 0;
}

static int read_file(struct loader *ld, char **out, size_t *len_out)
{
	struct stat st;
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int fd, rc = 0;

	/* O_NONBLOCK: a FIFO (no writer) must not hang start-up, or the
	 * serving loop in a SIGHUP reload; it is refused just below. */
	fd = open(ld->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return fail_errno(ld, -errno, "cannot open");
	if (fstat(fd, &st) != 0) {
		rc = fail_errno(ld, -errno, "cannot open");
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		if (ld->err && ld->errlen)
			snprintf(ld->err, ld->errlen, "%s: cannot open: %s", ld->path,
				 S_ISDIR(st.st_mode) ? strerror(EISDIR) :
				 "not a regular file");
		ld->rc = rc;
		goto out_close;
	}
	for (;;) {
		ssize_t got;

		if (len == cap) {
			char *nb;

			if (cap >= CONFIG_FILE_MAX) {
				rc = fail_errno(ld, -EFBIG, "cannot read");
				goto out_close;
			}
			cap = cap ? cap * 2 : 4096;
			nb = realloc(buf, cap + 1);
			if (!nb) {
				rc = fail_errno(ld, -ENOMEM, "cannot read");
				goto out_close;
			}
			buf = nb;
		}
		got = read(fd, buf + len, cap - len);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = fail_errno(ld, -errno, "cannot read");
			goto out_close;
		}
		if (got == 0)
			break;
		len += (size_t)got;
	}
out_close:
	close(fd);
	if (rc) {
		free(buf);
		return rc;
	}
	if (!buf) {
		buf = malloc(1);
		if (!buf)
			return fail_errno(ld, -ENOMEM, "cannot read");
	}
	buf[len] = '\0';
	*out = buf;
	*len_out = len;
	return 0;
}

static int parse_file(struct loader *ld)
{
	/* inih's runtime options, restored after the parse */
	static char inline_prefixes[] = ";#";
	static char start_prefixes[] = ";#";
	bool o_multi = ini_allow_multiline, o_inline = ini_allow_inline_comments;
	bool o_stack = ini_use_stack, o_stop = ini_stop_on_first_error;
	bool o_noval = ini_allow_no_value, o_bom = ini_allow_bom;
	char *o_inpre = ini_inline_comment_prefixes;
	char *o_stpre = ini_start_comment_prefixes;
	int o_max = ini_max_line;
	char *buf = NULL;
	size_t len = 0;
	int ret, rc;

	rc = read_file(ld, &buf, &len);
	if (rc)
		return rc;
	ld->buf = buf;
	ld->len = len;
	ld->pos = 0;
	ld->lineno = 0;
	ld->cur = -1;

	ini_allow_multiline = false;
	ini_allow_inline_comments = true;
	ini_inline_comment_prefixes = inline_prefixes;
	ini_start_comment_prefixes = start_prefixes;
	ini_allow_no_value = false;
	ini_allow_bom = true;
	ini_stop_on_first_error = true;
	/* On the stack, inih's line buffer is ini_max_line bytes (a VLA in
	 * r55); room for the text, "\r\n" and the NUL. */
	ini_use_stack = true;
	ini_max_line = CONFIG_LINE_MAX + 3;

	ret = ini_parse_stream(read_line, ld, on_key, ld);

	ini_allow_multiline = o_multi;
	ini_allow_inline_comments = o_inline;
	ini_inline_comment_prefixes = o_inpre;
	ini_start_comment_prefixes = o_stpre;
	ini_allow_no_value = o_noval;
	ini_allow_bom = o_bom;
	ini_stop_on_first_error = o_stop;
	ini_use_stack = o_stack;
	ini_max_line = o_max;

	if (!ld->rc && ret == -2)
		fail_errno(ld, -ENOMEM, "cannot parse");
	if (!ld->rc && ret > 0) {
		/* inih's own syntax error, at the last line it was given */
		struct where at = { ret, NULL };
		char shown[QUOTE_MAX + 8];
		const char *s = ld->line;
		size_t n = ld->line_len;

		if (ret != ld->lineno || !s) {
			fail(ld, at, "syntax error");
		} else {
			while (n && isspace((unsigned char)*s)) {
				s++;
				n--;
			}
			quote(shown, sizeof(shown), s, n);
			if (*s == '[')
				fail(ld, at, "expected '[SECTION]', got '%s'", shown);
			else
				fail(ld, at, "expected 'KEY = VALUE', got '%s'", shown);
		}
	}
	free(buf);
	ld->buf = NULL;
	return ld->rc;
}

/* ------------------------------------------------------------ overrides */

static int apply_set(struct loader *ld, const char *set)
{
	struct where at = { 0, set };
	const char *eq = strchr(set, '=');
	char *left = NULL, *value = NULL, *name, *dot;
	int idx, rc;

	if (!eq || eq == set)
		return fail(ld, at, "must be SECTION.KEY=VALUE (e.g. "
			    "pipeline.train.size=224)");
	left = strndup(set, (size_t)(eq - set));
	value = strdup(eq + 1);
	if (!left || !value) {
		rc = fail_errno(ld, -ENOMEM, "loading config");
		goto out_free;
	}
	name = trim(left);
	dot = strrchr(name, '.');
	if (!dot || dot == name || !dot[1]) {
		rc = fail(ld, at, "must be SECTION.KEY=VALUE (e.g. "
			  "pipeline.train.size=224)");
		goto out_free;
	}
	*dot = '\0';
	rc = section_open(ld, name, strlen(name), at, true, &idx);
	if (!rc)
		rc = section_set(ld, &ld->secs[idx], dot + 1, trim(value), at);
out_free:
	free(left);
	free(value);
	return rc;
}

/* -------------------------------------------------------- cross-field */

/* The recipe keys (docs/AUGMENTATIONS.md): parse auto_augment and
 * color_jitter, resolve train_interpolation, check the erasing range. */
static int check_recipes(struct loader *ld, struct section *s)
{
	struct pipeline_cfg *p = s->base;
	const struct entry *e;
	char why[200];

	e = find_entry(s, "train_interpolation");
	if (!e)
		p->train_interpolation = TI_UNSET;
	if (e) {
		int v = p->train_interpolation;

		if (find_entry(s, "interpolation"))
			return fail(ld, e->at, "[%s] train_interpolation: give "
				    "either it or interpolation, not both", s->text);
		p->train_interpolation = v;
		if (v != TI_RANDOM)
			p->interpolation = v; /* resize_filter: bilinear 0, bicubic 1 */
	}
	e = find_entry(s, "auto_augment");
	if (e && policy_parse_aa(p->auto_augment, &p->aa, why, sizeof(why)))
		return fail(ld, e->at, "[%s] auto_augment: %s, got '%s'", s->text,
			    why, p->auto_augment);
	if (p->aa_fill == FILL_NOISE)
		return fail(ld, entry_at(s, "aa_fill"), "[%s] aa_fill: must be "
			    "mean or 0..255, got 'noise'", s->text);
	e = find_entry(s, "color_jitter");
	if (e && policy_parse_jitter(p->color_jitter, p->jitter, why, sizeof(why)))
		return fail(ld, e->at, "[%s] color_jitter: %s, got '%s'", s->text,
			    why, p->color_jitter);
	/* timm: an auto_augment policy other than 3a switches ColorJitter off */
	p->jitter_on = (p->jitter[0] > 0 || p->jitter[1] > 0 || p->jitter[2] > 0 ||
			p->jitter[3] > 0) && (p->aa.kind == AA_NONE || p->aa.kind == AA_3A);
	if (p->remin > p->remax)
		return fail(ld, entry_at(s, "remin"), "[%s] remin: must be <= remax "
			    "(%g), got '%g'", s->text, p->remax, p->remin);
	return 0;
}

static int check_pipeline(struct loader *ld, struct section *s)
{
	config_t *cfg = ld->cfg;
	struct pipeline_cfg *p = s->base;
	const struct entry *e;
	int rc;

	if (p->eval) {
		for (int i = 0; i < s->n_entries; i++) {
			e = &s->entries[i];
			if (e->opt->flags & F_AUG)
				return fail(ld, e->at, "[%s] %s: an eval pipeline "
					    "takes no augmentation keys", s->text,
					    e->opt->key);
		}
		e = find_entry(s, "crop");
		if (e && p->crop != CROP_CENTER)
			return fail(ld, e->at, "[%s] crop: an eval pipeline must "
				    "use center, got '%s'", s->text,
				    word_name(kw_crop, p->crop));
		/* the eval defaults of the keys left out (crop, flip, shuffle) */
		for (int i = 0; i < N_OPTIONS; i++) {
			const struct option *o = &options[i];

			if (o->sec != SEC_PIPELINE || !o->def_eval ||
			    find_entry(s, o->key))
				continue;
			rc = set_value(ld, s, o, o->def_eval, s->at);
			if (rc)
				return rc;
		}
	}

	if (p->crop != CROP_CENTER) {
		e = find_entry(s, "resize");
		if (e)
			return fail(ld, e->at, "[%s] resize: only allowed with "
				    "crop = center", s->text);
		p->resize = 0;
	} else {
		static const char *const rrc_keys[] = { "scale", "ratio" };

		for (size_t i = 0; i < 2; i++) {
			e = find_entry(s, rrc_keys[i]);
			if (e)
				return fail(ld, e->at, "[%s] %s: only used with "
					    "crop = random_resized", s->text,
					    rrc_keys[i]);
		}
		if (p->resize == 0) {
			p->resize = (uint32_t)lround(p->size / AUTO_CROP_PCT);
		} else if (p->resize < p->size) {
			return fail(ld, entry_at(s, "resize"), "[%s] resize: must "
				    "be >= size (%u), got '%u'", s->text,
				    p->size, p->resize);
		}
	}

	p->has_cutmix_minmax = find_entry(s, "cutmix_minmax") != NULL;
	if (!p->has_cutmix_minmax)
		p->cutmix_minmax[0] = p->cutmix_minmax[1] = 0;
	else if (p->cutmix_alpha == 0)
		p->cutmix_alpha = 1.0; /* as timm: minmax means CutMix */

	if (p->mode == MIX_PAIR && p->partner == PARTNER_ROLL)
		return fail(ld, entry_at(s, "partner"), "[%s] partner: must be "
			    "permute or flip with mode = pair (roll is not a "
			    "pairing), got 'roll'", s->text);

	rc = check_recipes(ld, s);
	if (rc)
		return rc;

	p->dataset = -1;
	for (int i = 0; i < cfg->n_datasets; i++)
		if (!strcmp(cfg->datasets[i].name, p->dataset_name))
			p->dataset = i;
	if (p->dataset < 0)
		return fail(ld, entry_at(s, "dataset"), "[%s] dataset: must name "
			    "a dataset section ([dataset] or [dataset.NAME]), "
			    "got '%s'", s->text, p->dataset_name);
	return 0;
}

/* CURVE needs the daemon's key pair and the clients' public keys. */
static int check_security(struct loader *ld, struct section *s)
{
	struct security_cfg *k = s->base;

	if (k->curve_secret_key_file && !k->authorized_keys)
		return fail(ld, entry_at(s, "curve_secret_key_file"), "[%s] "
			    "curve_secret_key_file: needs authorized_keys too "
			    "(set both or neither)", s->text);
	if (k->authorized_keys && !k->curve_secret_key_file)
		return fail(ld, entry_at(s, "authorized_keys"), "[%s] "
			    "authorized_keys: needs curve_secret_key_file too "
			    "(set both or neither)", s->text);
	return 0;
}

static int check_all(struct loader *ld)
{
	config_t *cfg = ld->cfg;
	struct server_cfg *sv = &cfg->server;
	struct where file = { 0, NULL };
	int rc;

	if (sv->workers == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		sv->workers = n < 1 ? 1 : n > 1024 ? 1024 : (uint32_t)n;
	}
	/* the decode budget: a quarter block per pixel of the largest image
	 * allowed (a 4:4:4 progressive file of the standard 10 scans needs
	 * 0.22, a 4:2:0 one 0.125, baseline 4:2:0 0.023) */
	if (sv->max_scan_blocks == 0)
		sv->max_scan_blocks = sv->max_pixels / 4 ? sv->max_pixels / 4 : 1;
	if (cfg->n_datasets == 0)
		return fail(ld, file, "no dataset section (add [dataset] with "
			    "root = PATH)");
	for (int i = 0; i < ld->n_secs; i++) {
		struct section *s = &ld->secs[i];
		const struct dataset_cfg *dc = s->base;

		if (s->kind != SEC_DATASET)
			continue;
		if (!dc->root && !dc->shards && !dc->pack)
			return fail(ld, s->at, "[%s] root: required key is "
				    "missing", s->text);  /* or shards */
		if (!!dc->root + !!dc->shards + !!dc->pack > 1)
			return fail(ld, s->at, "[%s] root, shards and pack: give one "
				    "of them, not both", s->text);
		if (dc->pack && (dc->manifest || dc->index_cache || dc->class_names))
			return fail(ld, s->at, "[%s] pack: the pack's index names "
				    "the samples and classes (no manifest, index_cache "
				    "or class_names)", s->text);
		if (dc->shards && dc->manifest)
			return fail(ld, s->at, "[%s] manifest: not with shards "
				    "(the tar members name the samples)", s->text);
		if (!dc->shards && (dc->index_cache || dc->class_names))
			return fail(ld, s->at, "[%s] %s: only with shards", s->text,
				    dc->index_cache ? "index_cache" : "class_names");
	}
	if (cfg->n_pipelines == 0)
		return fail(ld, file, "no pipeline section (add [pipeline.NAME])");
	for (int i = 0; i < ld->n_secs; i++) {
		if (ld->secs[i].kind != SEC_PIPELINE)
			continue;
		rc = check_pipeline(ld, &ld->secs[i]);
		if (rc)
			return rc;
	}
	for (int i = 0; i < ld->n_secs; i++) {
		if (ld->secs[i].kind != SEC_SECURITY)
			continue;
		rc = check_security(ld, &ld->secs[i]);
		if (rc)
			return rc;
	}
	return 0;
}

/* ------------------------------------------------------------- public */

/* The config file's folder, absolute when it can be. */
static char *config_dir(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir, *abs;

	if (!slash)
		dir = strdup(".");
	else if (slash == path)
		dir = strdup("/");
	else
		dir = strndup(path, (size_t)(slash - path));
	if (!dir)
		return NULL;
	abs = realpath(dir, NULL);
	if (!abs)
		return dir;
	free(dir);
	return abs;
}

int config_load(const char *path, char *const *sets, int n_sets,
		config_t **out, char *err, size_t errlen)
{
	struct loader *ld;
	config_t *cfg;
	struct section server = { .kind = SEC_SERVER, .text = "server" };
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if (!path || !out || n_sets < 0 || (n_sets > 0 && !sets)) {
		if (err && errlen)
			snprintf(err, errlen, "config_load: bad arguments");
		return -EINVAL;
	}
	*out = NULL;
	ld = calloc(1, sizeof(*ld));
	cfg = calloc(1, sizeof(*cfg));
	if (!ld || !cfg) {
		free(ld);
		free(cfg);
		if (err && errlen)
			snprintf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	ld->cfg = cfg;
	ld->path = path;
	ld->err = err;
	ld->errlen = errlen;
	ld->cur = -1;

	cfg->path = strdup(path);
	ld->dir = config_dir(path);
	if (!cfg->path || !ld->dir) {
		rc = fail_errno(ld, -ENOMEM, "loading config");
		goto out_free;
	}
	server.base = &cfg->server;
	rc = set_defaults(ld, &server, false);
	if (rc)
		goto out_free;
	rc = parse_file(ld);
	if (rc)
		goto out_free;
	for (int i = 0; i < n_sets && !rc; i++)
		rc = apply_set(ld, sets[i] ? sets[i] : "");
	if (rc)
		goto out_free;
	rc = check_all(ld);
	if (rc)
		goto out_free;
	*out = cfg;
	cfg = NULL;
out_free:
	config_destroy(&cfg);
	free(ld->dir);
	free(ld);
	return rc;
}

void config_destroy(config_t **cfgp)
{
	config_t *cfg;

	if (!cfgp || !*cfgp)
		return;
	cfg = *cfgp;
	free_endpoints(cfg->server.endpoints, cfg->server.n_endpoints);
	free(cfg->server.metrics);
	free(cfg->security.curve_secret_key_file);
	free(cfg->security.authorized_keys);
	for (int i = 0; i < cfg->n_datasets; i++) {
		free(cfg->datasets[i].root);
		free(cfg->datasets[i].manifest);
		free(cfg->datasets[i].shards);
		free(cfg->datasets[i].index_cache);
		free(cfg->datasets[i].class_names);
		free(cfg->datasets[i].pack);
	}
	free(cfg->path);
	free(cfg);
	*cfgp = NULL;
}

int config_find_pipeline(const config_t *cfg, const char *name)
{
	if (!cfg || !name)
		return -1;
	for (int i = 0; i < cfg->n_pipelines; i++)
		if (!strcmp(cfg->pipelines[i].name, name))
			return i;
	return -1;
}

bool config_has_curve(const config_t *cfg)
{
	return cfg && cfg->security.curve_secret_key_file &&
	       cfg->security.authorized_keys;
}

bool config_pipeline_augments(const struct pipeline_cfg *p)
{
	bool cutout = p->cutout_size[1] > 0 && p->cutout_prob > 0;
	bool mixing = p->prob > 0 && (p->mixup_alpha > 0 || p->cutmix_alpha > 0);
	bool recipes = p->aa.kind != AA_NONE || p->jitter_on || p->reprob > 0 ||
		       p->aug_repeats > 1 || p->train_interpolation == TI_RANDOM;

	return p->flip > 0 || cutout || mixing || recipes;
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
		fputs(word_name(o->words, *(const int *)src), f);
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
	for (int i = 0; i < N_OPTIONS; i++)
		if (options[i].sec == kind && (options[i].flags & F_DIGEST))
			canon_value(f, prefix, &options[i], base);
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

char *config_canonical(const config_t *cfg)
{
	char *text = NULL, prefix[SECTION_TEXT_MAX];
	const char *names[CONFIG_MAX_PIPELINES + CONFIG_MAX_DATASETS];
	int idx[CONFIG_MAX_PIPELINES + CONFIG_MAX_DATASETS];
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
	for (int i = 0; i < cfg->n_datasets; i++)
		names[i] = cfg->datasets[i].name;
	order_by_name(names, cfg->n_datasets, idx);
	for (int i = 0; i < cfg->n_datasets; i++) {
		const struct dataset_cfg *d = &cfg->datasets[idx[i]];

		snprintf(prefix, sizeof(prefix), "dataset.%s", d->name);
		canon_section(f, SEC_DATASET, prefix, d);
	}
	for (int i = 0; i < cfg->n_pipelines; i++)
		names[i] = cfg->pipelines[i].name;
	order_by_name(names, cfg->n_pipelines, idx);
	for (int i = 0; i < cfg->n_pipelines; i++) {
		const struct pipeline_cfg *p = &cfg->pipelines[idx[i]];

		snprintf(prefix, sizeof(prefix), "pipeline.%s", p->name);
		canon_section(f, SEC_PIPELINE, prefix, p);
	}
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
	return N_OPTIONS;
}

int config_option_get(int i, struct config_option_doc *d)
{
	static const char *const sec_names[] = {
		[SEC_SERVER] = "server", [SEC_SECURITY] = "security",
		[SEC_DATASET] = "dataset", [SEC_PIPELINE] = "pipeline.NAME",
	};
	const struct option *o;

	if (i < 0 || i >= N_OPTIONS || !d)
		return -EINVAL;
	o = &options[i];
	d->section = sec_names[o->sec];
	d->key = o->key;
	describe(o, d->takes, sizeof(d->takes));
	d->def = o->def;
	d->def_eval = o->def_eval;
	d->required = o->flags & F_REQUIRED;
	d->digest = o->flags & F_DIGEST;
	d->aug = o->flags & F_AUG;
	return 0;
}
