/*
 * keyfile.c — CURVE key files: the grammar of keyfile.h.
 *
 * A key file is small: it is read whole and parsed line by line; every
 * key found, decoded to binary, goes to the caller's callback with its
 * line number. What the keys mean (a pair, a set of authorized keys) is
 * the caller's business. No state, no threads. Buffers that held key
 * text are wiped (explicit_bzero) before they are freed.
 */
#include "errbuf.h"
#include "keyfile.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#define QUOTE_MAX 60 /* text of a bad line quoted in a message */

static const char z85_chars[] =
	"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	".-:+=^!/*?&<>()[]{}@%$#";

static const char expected[] = "expected 'public-key = KEY', "
	"'secret-key = KEY', a bare KEY or a '#' comment";

/* Copy s for a message: at most QUOTE_MAX characters, controls as '?'. */
static const char *quote(char *dst, size_t n, const char *s, size_t len)
{
	size_t o = 0;

	for (size_t i = 0; i < len && o + 4 < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (i == QUOTE_MAX) {
			memcpy(dst + o, "...", 3);
			o += 3;
			break;
		}
		dst[o++] = (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
	}
	dst[o] = '\0';
	return dst;
}

bool keyfile_z85_ok(const char *text, size_t len, uint8_t out[KEYFILE_BIN_LEN])
{
	char z[KEYFILE_Z85_LEN + 1], back[KEYFILE_Z85_LEN + 1];
	uint8_t bin[KEYFILE_BIN_LEN];
	bool ok;

	if (!text || len != KEYFILE_Z85_LEN)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!text[i] || !strchr(z85_chars, text[i]))
			return false;
	memcpy(z, text, len);
	z[len] = '\0';
	/* A group of five characters can exceed 2^32: such text decodes to
	 * something else (or is refused); encoding back tells. */
	ok = zmq_z85_decode(bin, z) && zmq_z85_encode(back, bin, sizeof(bin)) &&
	     memcmp(back, z, KEYFILE_Z85_LEN) == 0;
	if (ok && out)
		memcpy(out, bin, sizeof(bin));
	explicit_bzero(z, sizeof(z));
	explicit_bzero(back, sizeof(back));
	explicit_bzero(bin, sizeof(bin));
	return ok;
}

int keyfile_read(const char *path, char **out, size_t *len_out, unsigned *mode,
		 char *err, size_t errlen)
{
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	int fd, rc = 0;

	/* O_NONBLOCK: a FIFO must not hang start-up or a reload in open();
	 * it is refused below as not a regular file */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return errbuf_fail_errno(err, errlen, -errno, path, "cannot open");
	if (fstat(fd, &st) < 0) {
		rc = errbuf_fail_errno(err, errlen, -errno, path, "cannot open");
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = errbuf_fail(err, errlen, "%s: not a regular file", path);
		goto out_close;
	}
	if (st.st_size > KEYFILE_MAX_BYTES) {
		rc = errbuf_fail(err, errlen, "%s: too large for a key file (%lld bytes, max %d)",
				 path, (long long)st.st_size, KEYFILE_MAX_BYTES);
		goto out_close;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		rc = errbuf_fail_errno(err, errlen, -ENOMEM, path, "cannot read");
		goto out_close;
	}
	for (;;) {
		ssize_t got = read(fd, buf + len, (size_t)st.st_size - len);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = errbuf_fail_errno(err, errlen, -errno, path, "cannot read");
			goto out_close;
		}
		if (got == 0 || (len += (size_t)got) == (size_t)st.st_size)
			break;
	}
	buf[len] = '\0';
	*out = buf;
	*len_out = len;
	if (mode)
		*mode = (unsigned)st.st_mode;
	buf = NULL;
out_close:
	keyfile_free_text(buf, len);
	close(fd);
	return rc;
}

void keyfile_free_text(char *buf, size_t len)
{
	if (buf)
		explicit_bzero(buf, len);
	free(buf);
}

/* NAME of a NAME = VALUE line, compared without case, '_' as '-'. */
static bool name_is(const char *p, size_t n, const char *want)
{
	if (n != strlen(want))
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = p[i] == '_' ? '-' : (char)tolower((unsigned char)p[i]);

		if (c != want[i])
			return false;
	}
	return true;
}

/* One NAME = VALUE line p[0..n) (trimmed; eq at its '='): 1 and *k for a
 * key, 0 for zcert metadata to skip, or -EINVAL. */
static int name_value(const char *path, int lineno, const char *p, size_t n,
		      const char *eq, bool in_metadata, struct keyfile_key *k,
		      char *err, size_t errlen)
{
	char shown[4 * QUOTE_MAX];
	const char *e = p + n, *name_end = eq, *v = eq + 1;
	size_t name_len, v_len;

	while (name_end > p && isspace((unsigned char)name_end[-1]))
		name_end--;
	while (v < e && isspace((unsigned char)*v))
		v++;
	name_len = (size_t)(name_end - p);
	v_len = (size_t)(e - v);
	if (v_len >= 2 && v[0] == '"' && v[v_len - 1] == '"') {
		v++;
		v_len -= 2;
	}
	if (name_is(p, name_len, "public-key")) {
		k->kind = KEYFILE_PUBLIC;
	} else if (name_is(p, name_len, "secret-key")) {
		k->kind = KEYFILE_SECRET;
	} else if (in_metadata) {
		return 0;
	} else {
		/* "secret-key" misspelt could carry a secret: only the name
		 * is shown */
		return errbuf_fail(err, errlen, "%s:%d: %s, got '%s = ...'", path, lineno, expected,
				   quote(shown, sizeof(shown), p, name_len));
	}
	if (keyfile_z85_ok(v, v_len, k->bin))
		return 1;
	if (k->kind == KEYFILE_SECRET)
		return errbuf_fail(err, errlen, "%s:%d: secret-key: must be %d Z85 characters (got "
				   "%zu characters; not shown)", path, lineno, KEYFILE_Z85_LEN, v_len);
	return errbuf_fail(err, errlen, "%s:%d: public-key: must be %d Z85 characters, got '%s'",
			   path, lineno, KEYFILE_Z85_LEN, quote(shown, sizeof(shown), v, v_len));
}

int keyfile_parse(const char *path, const char *buf, size_t len, keyfile_fn each,
		  void *ctx, char *err, size_t errlen)
{
	char shown[4 * QUOTE_MAX];
	struct keyfile_key k;
	bool in_metadata = false;
	int lineno = 0, rc = 0;

	if (len >= 3 && !memcmp(buf, "\xEF\xBB\xBF", 3)) {
		buf += 3; /* a UTF-8 BOM */
		len -= 3;
	}
	for (size_t pos = 0; pos < len && rc == 0;) {
		const char *p = buf + pos, *nl = memchr(p, '\n', len - pos), *e, *eq;
		size_t n = nl ? (size_t)(nl - p) : len - pos;

		pos += n + (nl ? 1 : 0);
		lineno++;
		if (memchr(p, '\0', n)) {
			rc = errbuf_fail(err, errlen, "%s:%d: NUL byte in line", path, lineno);
			break;
		}
		e = p + n;
		while (p < e && isspace((unsigned char)*p))
			p++;
		while (e > p && isspace((unsigned char)e[-1]))
			e--;
		n = (size_t)(e - p);
		if (n == 0)
			continue;
		memset(&k, 0, sizeof(k));
		k.line = lineno;
		if (keyfile_z85_ok(p, n, k.bin)) {
			k.kind = KEYFILE_PUBLIC;
			rc = each(ctx, path, &k, err, errlen);
			continue;
		}
		if (*p == '#')
			continue;
		if (n == 8 && !memcmp(p, "metadata", 8)) {
			in_metadata = true;
			continue;
		}
		if (n == 5 && !memcmp(p, "curve", 5)) {
			in_metadata = false;
			continue;
		}
		eq = memchr(p, '=', n);
		if (!eq) {
			rc = errbuf_fail(err, errlen, "%s:%d: %s, got '%s'", path, lineno, expected,
					 quote(shown, sizeof(shown), p, n));
			break;
		}
		rc = name_value(path, lineno, p, n, eq, in_metadata, &k, err, errlen);
		if (rc > 0)
			rc = each(ctx, path, &k, err, errlen);
	}
	explicit_bzero(&k, sizeof(k));
	return rc;
}
