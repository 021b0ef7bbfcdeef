/*
 * config_int.h — what the config loader's files share (config.c reads
 * the file and the overrides, config_options.c holds the one table of
 * options, config_values.c parses a value, config_check.c runs the
 * cross-field rules). Not for use outside daemon/config*.c.
 */
#ifndef CUTMIXD_CONFIG_INT_H
#define CUTMIXD_CONFIG_INT_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define SECTION_TEXT_MAX  48         /* "pipeline." + 31 + NUL fits */
#define KEYS_MAX          56         /* >= keys of the largest section */
#define SECTIONS_MAX      (3 + CONFIG_MAX_DATASETS + CONFIG_MAX_PIPELINES) /* [server], [security], +1: section_open() fills secs[n_secs] before its limit checks */
#define QUOTE_MAX         80         /* value text quoted in a message */
#define INF HUGE_VAL

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

/* the table (config_options.c) */
extern const struct option config_options[];
extern const int config_n_options;
extern const struct keyword cfg_kw_crop[];
const struct option *cfg_find_option(enum sec_kind kind, const char *key);
const char *cfg_word_name(const struct keyword *w, int value);
void cfg_describe(const struct option *o, char *buf, size_t n);

/* errors and sections (config.c) */
const char *cfg_quote(char *dst, size_t n, const char *s, size_t len);
__attribute__((format(printf, 3, 4)))
int cfg_fail(struct loader *ld, struct where at, const char *fmt, ...);
int cfg_fail_errno(struct loader *ld, int rc, const char *what);
const struct entry *cfg_find_entry(const struct section *s, const char *key);
struct where cfg_entry_at(const struct section *s, const char *key);

/* values (config_values.c) */
bool cfg_is_name(const char *s, size_t len);
char *cfg_trim(char *s);
void cfg_free_endpoints(char **eps, int n);
int cfg_set_value(struct loader *ld, const struct section *s,
		  const struct option *o, const char *v, struct where at);
int cfg_set_defaults(struct loader *ld, const struct section *s, bool eval);

/* cross-field rules (config_check.c) */
int cfg_check_all(struct loader *ld);

#endif
