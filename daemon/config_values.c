/*
 * config_values.c — parse one value of the config file into its field,
 * by the type of its option (config_int.h), with the "must be WHAT, got
 * 'X'" message when it does not parse.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_int.h"

/* ------------------------------------------------------ value parsers */

bool cfg_is_name(const char *s, size_t len)
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


char *cfg_trim(char *s)
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
		parts[k] = cfg_trim(p);
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

void cfg_free_endpoints(char **eps, int n)
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
		e = cfg_trim(p);
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
	cfg_free_endpoints(eps, *n_out);
	memcpy(eps, tmp, sizeof(tmp));
	*n_out = n;
	free(buf);
	return 1;

out_free:
	cfg_free_endpoints(tmp, n);
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
		if (!parse_u64(cfg_trim(buf), &a))
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


/* An integer in the option's range, stored as its uint32_t or uint64_t. */
static bool parse_uint(const struct option *o, const char *v, void *dst)
{
	uint64_t u;

	if (!parse_u64(v, &u) || u < o->umin || u > o->umax)
		return false;
	if (o->type == OT_U32)
		*(uint32_t *)dst = (uint32_t)u;
	else
		*(uint64_t *)dst = u;
	return true;
}

/* One of the keywords, in any case. */
static bool parse_word(const struct keyword *w, const char *v, int *out)
{
	for (; w->name; w++) {
		if (!strcasecmp(v, w->name)) {
			*out = w->value;
			return true;
		}
	}
	return false;
}

/* 1..CONFIG_TEXT_MAX - 1 printable characters, no blanks. */
static bool parse_text(const char *v, char *dst)
{
	size_t len = strlen(v);
	bool ok = len > 0 && len < CONFIG_TEXT_MAX;

	for (size_t i = 0; ok && i < len; i++)
		ok = v[i] > ' ' && v[i] < 0x7f;
	if (ok)
		memcpy(dst, v, len + 1);
	return ok;
}

/* "mean", "noise" or a value 0..255 (FILL_VALUE). */
static bool parse_fill(const char *v, int *mode, uint8_t *value)
{
	uint64_t u;

	if (!strcasecmp(v, "mean")) {
		*mode = FILL_MEAN;
	} else if (!strcasecmp(v, "noise")) {
		*mode = FILL_NOISE;
	} else if (parse_u64(v, &u) && u <= 255) {
		*mode = FILL_VALUE;
		*value = (uint8_t)u;
	} else {
		return false;
	}
	return true;
}

/*
 * The types whose value owns memory: OT_PATH (resolved against dir),
 * OT_ENDPOINTS, OT_HOSTPORT ("off" = NULL). The old value is freed once
 * the new one parsed. Returns 1 when parsed, 0 when the text is bad,
 * -ENOMEM.
 */
static int parse_owned(const char *dir, const struct section *s,
		       const struct option *o, const char *v, void *dst)
{
	char *p;

	if (o->type == OT_ENDPOINTS)
		return parse_endpoints(v, dst, (int *)((char *)s->base + o->off2));
	if (o->type == OT_PATH) {
		if (v[0] == '\0')
			return 0;
		p = join_path(dir, v);
		if (!p)
			return -ENOMEM;
	} else {
		if (!parse_hostport(v))
			return 0;
		p = strcasecmp(v, "off") ? strdup(v) : NULL;
		if (!p && strcasecmp(v, "off"))
			return -ENOMEM;
	}
	free(*(char **)dst);
	*(char **)dst = p;
	return 1;
}

/*
 * Parse v into the field(s) of o in base. Returns 0, or the error (with
 * the message written) saying what the key takes and what it got.
 */
int cfg_set_value(struct loader *ld, const struct section *s,
		  const struct option *o, const char *v, struct where at)
{
	void *dst = (char *)s->base + o->off;
	char what[160], got[QUOTE_MAX + 8];
	bool ok = false;
	double d, dv[3];
	int rc;

	switch (o->type) {
	case OT_BOOL:
		ok = parse_bool(v, (bool *)dst);
		break;
	case OT_U32:
	case OT_U64:
		ok = parse_uint(o, v, dst);
		break;
	case OT_DOUBLE:
		ok = parse_double(v, &d) && in_range(o, d);
		if (ok)
			*(double *)dst = d;
		break;
	case OT_ENUM:
		ok = parse_word(o->words, v, (int *)dst);
		break;
	case OT_NAME:
		ok = cfg_is_name(v, strlen(v));
		if (ok)
			strcpy(dst, v);
		break;
	case OT_PATH:
	case OT_ENDPOINTS:
	case OT_HOSTPORT:
		rc = parse_owned(ld->dir, s, o, v, dst);
		if (rc < 0)
			return cfg_fail_errno(ld, rc, "loading config");
		ok = rc == 1;
		break;
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
	case OT_TEXT:
		ok = parse_text(v, dst);
		break;
	case OT_FILL:
		ok = parse_fill(v, (int *)dst, (uint8_t *)s->base + o->off2);
		break;
	}
	if (ok)
		return 0;
	cfg_describe(o, what, sizeof(what));
	return cfg_fail(ld, at, "[%s] %s: must be %s, got '%s'", s->text, o->key,
			what, cfg_quote(got, sizeof(got), v, strlen(v)));
}

/* The built-in defaults of a section (eval: those of an eval pipeline
 * for the keys that have one, and only those). */
int cfg_set_defaults(struct loader *ld, const struct section *s, bool eval)
{
	static const struct where builtin = { 0, "(built-in default)" };
	int rc;

	for (int i = 0; i < config_n_options; i++) {
		const struct option *o = &config_options[i];
		const char *def = eval ? o->def_eval : o->def;

		if (o->sec != s->kind || !def)
			continue;
		rc = cfg_set_value(ld, s, o, def, builtin);
		if (rc)
			return rc;
	}
	return 0;
}

