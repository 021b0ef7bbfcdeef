/*
 * json.c — the little JSON the client reads: top-level integer members of
 * the INFO object. The text comes from the network: every step is bounded
 * by the NUL at its end.
 */
#include "internal.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

/* ---- JSON: top-level integer members of an object ----------------------- */

static const char *json_ws(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	return p;
}

/* p at '"': returns the byte after the closing quote, NULL if unterminated. */
static const char *json_skip_string(const char *p)
{
	for (p++; *p; p++) {
		if (*p == '\\') {
			if (!*++p)
				return NULL;
		} else if (*p == '"') {
			return p + 1;
		}
	}
	return NULL;
}

static const char *json_skip_value(const char *p)
{
	int depth = 0;

	p = json_ws(p);
	do {
		switch (*p) {
		case 0:
			return NULL;
		case '"':
			p = json_skip_string(p);
			if (!p)
				return NULL;
			continue;
		case '{': case '[':
			depth++;
			break;
		case '}': case ']':
			if (--depth < 0)
				return NULL;
			break;
		case ',':
			if (depth == 0)
				return NULL; /* empty value */
			break;
		default:
			if (depth == 0) { /* number or literal */
				while (*p && *p != ',' && *p != '}' && *p != ']' &&
				       *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
					p++;
				return p;
			}
		}
		p++;
	} while (depth > 0);
	return p;
}

/* 0 and *out, -ENOENT if the object has no such member, -EINVAL if the
 * text is not an object or the member is not an integer. */
int cmx_json_top_int(const char *js, const char *key, int64_t *out)
{
	size_t klen = strlen(key);
	const char *p = json_ws(js);

	if (*p++ != '{')
		return -EINVAL;
	p = json_ws(p);
	if (*p == '}')
		return -ENOENT;
	for (;;) {
		const char *name, *end;
		bool match;

		if (*p != '"')
			return -EINVAL;
		name = p + 1;
		end = json_skip_string(p);
		if (!end)
			return -EINVAL;
		match = (size_t)(end - 1 - name) == klen && memcmp(name, key, klen) == 0;
		p = json_ws(end);
		if (*p++ != ':')
			return -EINVAL;
		p = json_ws(p);
		if (match) {
			char *e;
			long long v;

			errno = 0;
			v = strtoll(p, &e, 10);
			if (e == p || errno || *e == '.' || *e == 'e' || *e == 'E')
				return -EINVAL;
			*out = v;
			return 0;
		}
		p = json_skip_value(p);
		if (!p)
			return -EINVAL;
		p = json_ws(p);
		if (*p == '}')
			return -ENOENT;
		if (*p++ != ',')
			return -EINVAL;
		p = json_ws(p);
	}
}
