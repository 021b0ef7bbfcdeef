/*
 * config.c — the INI file and --set overrides, checked against ONE table of
 * options (section, key, type, range, default, where it lands, flags).
 * The loader is split in four files: this one reads the file and the
 * overrides and opens the sections; config_options.c holds the table and
 * what is made from it (messages, the man page, config_canonical());
 * config_values.c parses one value; config_check.c runs the cross-field
 * rules.
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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_int.h"

#define CONFIG_FILE_MAX   (1 << 20)  /* a config file is small */

/* ---------------------------------------------------------------- errors */

/* Copy s for a message: at most QUOTE_MAX characters, controls as '?'. */
const char *cfg_quote(char *dst, size_t n, const char *s, size_t len)
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

int cfg_fail(struct loader *ld, struct where at, const char *fmt, ...)
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
			 cfg_quote(set, sizeof(set), at.set, strlen(at.set)), msg);
	else if (at.line > 0)
		snprintf(ld->err, ld->errlen, "%s:%d: %s", ld->path, at.line, msg);
	else
		snprintf(ld->err, ld->errlen, "%s: %s", ld->path, msg);
	return ld->rc;
}

int cfg_fail_errno(struct loader *ld, int rc, const char *what)
{
	if (ld->rc)
		return ld->rc;
	ld->rc = rc;
	if (ld->err && ld->errlen)
		snprintf(ld->err, ld->errlen, "%s: %s: %s", ld->path, what,
			 strerror(-rc));
	return rc;
}
/* ------------------------------------------------------------ sections */

const struct entry *cfg_find_entry(const struct section *s,
				      const char *key)
{
	for (int i = 0; i < s->n_entries; i++)
		if (!strcmp(s->entries[i].opt->key, key))
			return &s->entries[i];
	return NULL;
}

/* The entry's place, else the section's (a key left at its default). */
struct where cfg_entry_at(const struct section *s, const char *key)
{
	const struct entry *e = cfg_find_entry(s, key);

	return e ? e->at : s->at;
}

/* The kind and NAME of section header `text` (len bytes): false when it
 * is no section this file knows. */
static bool section_kind(const char *text, size_t len, enum sec_kind *kind,
			 const char **id, size_t *id_len)
{
	*id_len = 0;
	if (len == 6 && !memcmp(text, "server", 6)) {
		*kind = SEC_SERVER;
		*id = "";
	} else if (len == 8 && !memcmp(text, "security", 8)) {
		*kind = SEC_SECURITY;
		*id = "";
	} else if (len == 7 && !memcmp(text, "dataset", 7)) {
		*kind = SEC_DATASET;
		*id = "default";
		*id_len = 7;
	} else if (len > 8 && !memcmp(text, "dataset.", 8)) {
		*kind = SEC_DATASET;
		*id = text + 8;
		*id_len = len - 8;
	} else if (len > 9 && !memcmp(text, "pipeline.", 9)) {
		*kind = SEC_PIPELINE;
		*id = text + 9;
		*id_len = len - 9;
	} else {
		return false;
	}
	return true;
}

/* Point new section s at the struct its keys land in: the server's or
 * the security's, else a new dataset or pipeline of the config. */
static int section_bind(struct loader *ld, struct section *s, const char *id,
			size_t id_len, struct where at)
{
	config_t *cfg = ld->cfg;

	switch (s->kind) {
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
			return cfg_fail(ld, at, "too many dataset sections (max %d)",
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
			return cfg_fail(ld, at, "too many pipeline sections (max %d)",
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
	return 0;
}

/*
 * Open section `text` (len bytes, not NUL-terminated): check its name,
 * refuse a duplicate (from the file) or return the existing one (from
 * --set), else create it with its defaults. *idx = index in ld->secs.
 */
static int section_open(struct loader *ld, const char *text, size_t len,
			struct where at, bool reuse, int *idx)
{
	char shown[QUOTE_MAX + 8];
	enum sec_kind kind;
	const char *id = NULL;
	size_t id_len = 0;
	struct section *s;
	int rc;

	cfg_quote(shown, sizeof(shown), text, len);
	if (!section_kind(text, len, &kind, &id, &id_len))
		return cfg_fail(ld, at, "unknown section [%s]", shown);
	if ((kind == SEC_DATASET || kind == SEC_PIPELINE) && !cfg_is_name(id, id_len))
		return cfg_fail(ld, at, "bad section name [%s]: NAME must be 1..%d "
				"characters A-Z a-z 0-9 _ -", shown,
				CONFIG_NAME_MAX - 1);

	for (int i = 0; i < ld->n_secs; i++) {
		s = &ld->secs[i];
		if (s->kind != kind || strlen(s->id) != id_len ||
		    memcmp(s->id, id, id_len))
			continue;
		if (!reuse) {
			if (s->at.set)
				return cfg_fail(ld, at, "duplicate section [%s]", shown);
			return cfg_fail(ld, at, "duplicate section [%s] (first on "
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
	rc = section_bind(ld, s, id, id_len, at);
	if (rc)
		return rc;
	ld->n_secs++;
	*idx = ld->n_secs - 1;
	/* the server's defaults were set before anything was read */
	if (kind == SEC_SERVER)
		return 0;
	rc = cfg_set_defaults(ld, s, false);
	return rc;
}

/* Record key = value of section s, then parse the value. */
static int section_set(struct loader *ld, struct section *s, const char *key,
		       const char *value, struct where at)
{
	const struct option *o;
	struct entry *e = NULL;

	if (!*key)
		return cfg_fail(ld, at, "[%s] missing key name before '='", s->text);
	o = cfg_find_option(s->kind, key);
	if (!o) {
		char shown[QUOTE_MAX + 8];

		return cfg_fail(ld, at, "[%s] %s: unknown key", s->text,
				cfg_quote(shown, sizeof(shown), key, strlen(key)));
	}
	for (int i = 0; i < s->n_entries; i++)
		if (s->entries[i].opt == o)
			e = &s->entries[i];
	if (e && !at.set && !e->at.set)
		return cfg_fail(ld, at, "[%s] %s: duplicate key (first set on line "
				"%d)", s->text, key, e->at.line);
	if (!e) {
		if (s->n_entries == KEYS_MAX) /* cannot happen: keys are unique */
			return cfg_fail(ld, at, "[%s] too many keys", s->text);
		e = &s->entries[s->n_entries++];
		e->opt = o;
	}
	e->at = at;
	return cfg_set_value(ld, s, o, value, at);
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
			return cfg_fail(ld, at, "expected end of line after ']', got '%s'",
					cfg_quote(shown, sizeof(shown), s, ld->line_len -
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
		cfg_fail(ld, at, "line too long (%zu characters, max %d)", text,
			 CONFIG_LINE_MAX);
		return NULL;
	}
	if (memchr(p, '\0', len)) {
		cfg_fail(ld, at, "NUL byte in line");
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
		cfg_fail(ld, at, "%s: key outside any section (put it under "
			 "[server], [dataset] or [pipeline.NAME])",
			 cfg_quote(shown, sizeof(shown), name, strlen(name)));
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
		return cfg_fail_errno(ld, -errno, "cannot open");
	if (fstat(fd, &st) != 0) {
		rc = cfg_fail_errno(ld, -errno, "cannot open");
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
				rc = cfg_fail_errno(ld, -EFBIG, "cannot read");
				goto out_close;
			}
			cap = cap ? cap * 2 : 4096;
			nb = realloc(buf, cap + 1);
			if (!nb) {
				rc = cfg_fail_errno(ld, -ENOMEM, "cannot read");
				goto out_close;
			}
			buf = nb;
		}
		got = read(fd, buf + len, cap - len);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = cfg_fail_errno(ld, -errno, "cannot read");
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
			return cfg_fail_errno(ld, -ENOMEM, "cannot read");
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
		cfg_fail_errno(ld, -ENOMEM, "cannot parse");
	if (!ld->rc && ret > 0) {
		/* inih's own syntax error, at the last line it was given */
		struct where at = { ret, NULL };
		char shown[QUOTE_MAX + 8];
		const char *s = ld->line;
		size_t n = ld->line_len;

		if (ret != ld->lineno || !s) {
			cfg_fail(ld, at, "syntax error");
		} else {
			while (n && isspace((unsigned char)*s)) {
				s++;
				n--;
			}
			cfg_quote(shown, sizeof(shown), s, n);
			if (*s == '[')
				cfg_fail(ld, at, "expected '[SECTION]', got '%s'", shown);
			else
				cfg_fail(ld, at, "expected 'KEY = VALUE', got '%s'", shown);
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
		return cfg_fail(ld, at, "must be SECTION.KEY=VALUE (e.g. "
				"pipeline.train.size=224)");
	left = strndup(set, (size_t)(eq - set));
	value = strdup(eq + 1);
	if (!left || !value) {
		rc = cfg_fail_errno(ld, -ENOMEM, "loading config");
		goto out_free;
	}
	name = cfg_trim(left);
	dot = strrchr(name, '.');
	if (!dot || dot == name || !dot[1]) {
		rc = cfg_fail(ld, at, "must be SECTION.KEY=VALUE (e.g. "
			      "pipeline.train.size=224)");
		goto out_free;
	}
	*dot = '\0';
	rc = section_open(ld, name, strlen(name), at, true, &idx);
	if (!rc)
		rc = section_set(ld, &ld->secs[idx], dot + 1, cfg_trim(value), at);
out_free:
	free(left);
	free(value);
	return rc;
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
		rc = cfg_fail_errno(ld, -ENOMEM, "loading config");
		goto out_free;
	}
	server.base = &cfg->server;
	rc = cfg_set_defaults(ld, &server, false);
	if (rc)
		goto out_free;
	rc = parse_file(ld);
	if (rc)
		goto out_free;
	for (int i = 0; i < n_sets && !rc; i++)
		rc = apply_set(ld, sets[i] ? sets[i] : "");
	if (rc)
		goto out_free;
	rc = cfg_check_all(ld);
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
	cfg_free_endpoints(cfg->server.endpoints, cfg->server.n_endpoints);
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
