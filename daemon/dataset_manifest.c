/*
 * dataset_manifest.c — index a manifest of "path<TAB>class" lines (the
 * rules are in dataset.h).
 *
 * Each path is looked up once, relative to the root descriptor under the
 * containment rules (beneath.h), with O_PATH: that is the containment
 * check and the stat for the digest in one lookup, and image files are
 * not read (unless digest_contents). A path that does not exist yet is
 * fine (the decoder reports it when served); one that leaves the root,
 * through a dangling link too, is an error naming the line.
 */
#include "dataset_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool has_dotdot(const char *p)
{
	while (*p) {
		const char *slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return true;
		if (!slash)
			break;
		p = slash + 1;
	}
	return false;
}

/*
 * Does manifest path `rel` stay in the root? 0 with its stamp, -EXDEV
 * when it leaves (absolute, "..", or a link out, dangling or not), other
 * -errno when it cannot be looked at for a reason that is not the tree's
 * (out of memory or descriptors, I/O). A file that does not exist or
 * cannot be read is fine here: the decoder reports it when it is served.
 */
static int manifest_entry(dataset_t *ds, const char *rel, struct stamp *stp)
{
	struct stat st;
	int fd, rc;

	if (rel[0] == '/' || has_dotdot(rel))
		return -EXDEV;
	fd = ds_open(ds, rel, ds->digest_contents ?
		     O_RDONLY | O_NONBLOCK | O_NOCTTY : O_PATH);
	if (fd == -EXDEV || fd == -ELOOP)
		return -EXDEV;
	if (fd == -ENOENT || fd == -ENOTDIR || fd == -EACCES || fd == -EPERM) {
		stp->a = STAMP_NONE;
		stp->b = (uint64_t)-fd;
		return 0;
	}
	if (fd < 0)
		return fd;
	rc = fstat(fd, &st) == 0 ? ds_stamp_fd(ds, fd, &st, stp) : -errno;
	close(fd);
	return rc;
}

static bool is_uint(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* Value of a string of digits, saturating at UINT32_MAX. */
static uint32_t uint_value(const char *s)
{
	uint64_t v = 0;

	for (; *s; s++) {
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > UINT32_MAX)
			return UINT32_MAX;
	}
	return (uint32_t)v;
}

/* What the loader carries from line to line. */
struct mload {
	dataset_t *ds;
	const char *file;
	char *err;
	size_t errlen;
	char **cls;             /* class field of each entry, in the buffer */
	size_t cls_cap;
	bool all_int;           /* every class field so far is digits */
	uint32_t max_int;
	long big_line;          /* first integer class out of range */
	const char *big_text;
};

/* Split "path<TAB>class" (NUL-terminated, ll bytes); 0 or -EINVAL. */
static int split_line(struct mload *m, char *line, size_t ll, long lineno,
		      char **path, char **klass)
{
	const char *file = m->file;
	char *tab;

	if (memchr(line, '\0', ll)) {
		ds_set_err(m->err, m->errlen, "%s:%ld: line contains a NUL byte",
			   file, lineno);
		return -EINVAL;
	}
	tab = strchr(line, '\t');
	if (!tab) {
		ds_set_err(m->err, m->errlen, "%s:%ld: expected 'path<TAB>class', "
			   "got '%.*s'", file, lineno, (int)(ll > 80 ? 80 : ll), line);
		return -EINVAL;
	}
	*tab = '\0';
	*path = line;
	*klass = tab + 1;
	if (!**path) {
		ds_set_err(m->err, m->errlen, "%s:%ld: empty path", file, lineno);
		return -EINVAL;
	}
	if (!**klass) {
		ds_set_err(m->err, m->errlen, "%s:%ld: path '%s' has an empty class",
			   file, lineno, *path);
		return -EINVAL;
	}
	if (strchr(*klass, '\t')) {
		ds_set_err(m->err, m->errlen, "%s:%ld: expected 'path<TAB>class', got "
			   "more than one tab", file, lineno);
		return -EINVAL;
	}
	return 0;
}

/* One non-blank, non-comment line: checked, looked up, indexed. */
static int manifest_line(struct mload *m, char *line, size_t ll, long lineno)
{
	dataset_t *ds = m->ds;
	char *path, *klass;
	struct stamp stp;
	int rc;

	rc = split_line(m, line, ll, lineno, &path, &klass);
	if (rc)
		return rc;
	rc = manifest_entry(ds, path, &stp);
	if (rc == -EXDEV) {
		ds_set_err(m->err, m->errlen, "%s:%ld: path '%s' escapes the dataset "
			   "root", m->file, lineno, path);
		return rc;
	} else if (rc) {
		ds_set_err(m->err, m->errlen, "%s:%ld: path '%s': %s", m->file, lineno,
			   path, strerror(-rc));
		return rc;
	}
	if (m->all_int && is_uint(klass)) {
		uint32_t v = uint_value(klass);
		if (v > DATASET_MAX_INT_CLASS && !m->big_line) {
			m->big_line = lineno;
			m->big_text = klass;
		}
		if (v > m->max_int)
			m->max_int = v;
	} else {
		m->all_int = false;
	}
	rc = ds_push_path(ds, path, strlen(path), -1, &stp);
	if (rc == 0 && ds->n > m->cls_cap) {
		void *np = ds_grow(m->cls, &m->cls_cap, ds->n, sizeof(*m->cls));
		if (np)
			m->cls = np;
		else
			rc = -ENOMEM;
	}
	if (rc) {
		ds_set_err(m->err, m->errlen, rc == -E2BIG ? "%s:%ld: more than 2^31 "
			   "files" : "%s:%ld: out of memory", m->file, lineno);
		return rc;
	}
	m->cls[ds->n - 1] = klass;
	return 0;
}

/* Class names and labels once every line is in: integers are indices
 * (names "0".."max"), anything else names sorted byte-wise. */
static int manifest_labels(struct mload *m)
{
	dataset_t *ds = m->ds;
	char **uniq = NULL;
	size_t nu = 0;

	if (m->all_int) {
		char num[16];
		if (m->big_line) {
			ds_set_err(m->err, m->errlen, "%s:%ld: class index '%s' out of "
				   "range (0..%u)", m->file, m->big_line, m->big_text,
				   DATASET_MAX_INT_CLASS);
			return -EINVAL;
		}
		for (uint32_t k = 0; k <= m->max_int; k++) {
			int nn = snprintf(num, sizeof(num), "%u", k);
			if (ds_push_name(ds, num, (size_t)nn))
				goto out_oom;
		}
		for (size_t i = 0; i < ds->n; i++)
			ds->labels[i] = (int32_t)uint_value(m->cls[i]);
		return 0;
	}
	uniq = malloc(ds->n * sizeof(*uniq));
	if (!uniq)
		goto out_oom;
	memcpy(uniq, m->cls, ds->n * sizeof(*uniq));
	qsort(uniq, ds->n, sizeof(*uniq), cmp_str);
	for (size_t i = 0; i < ds->n; i++)
		if (nu == 0 || strcmp(uniq[nu - 1], uniq[i]) != 0)
			uniq[nu++] = uniq[i];
	for (size_t k = 0; k < nu; k++)
		if (ds_push_name(ds, uniq[k], strlen(uniq[k])))
			goto out_oom;
	for (size_t i = 0; i < ds->n; i++) {
		char **hit = bsearch(&m->cls[i], uniq, nu, sizeof(*uniq), cmp_str);
		ds->labels[i] = (int32_t)(hit - uniq);
	}
	free(uniq);
	return 0;

out_oom:
	free(uniq);
	ds_set_err(m->err, m->errlen, "dataset '%s': out of memory", ds->name);
	return -ENOMEM;
}

int ds_load_manifest(dataset_t *ds, const char *file, char *err, size_t errlen)
{
	struct mload m = { .ds = ds, .file = file, .err = err, .errlen = errlen,
			   .all_int = true };
	char *buf = NULL;
	size_t len = 0;
	long lineno = 0;
	int rc;

	rc = ds_read_all(file, &buf, &len);
	if (rc) {
		ds_set_err(err, errlen, "dataset '%s': cannot read manifest '%s': %s",
			   ds->name, file, rc == -EINVAL ? "not a regular file" :
			   strerror(-rc));
		return rc;
	}

	/* a UTF-8 byte order mark is not part of the first path */
	char *start = buf;
	if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0)
		start += 3;
	for (char *p = start, *end = buf + len; p < end;) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		char *line = p;
		size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);

		p = nl ? nl + 1 : end;
		lineno++;
		if (ll > 0 && line[ll - 1] == '\r')
			ll--;
		line[ll] = '\0';
		if (strspn(line, " \t") == ll || line[0] == '#')
			continue;
		rc = manifest_line(&m, line, ll, lineno);
		if (rc)
			goto out_free;
	}
	if (ds->n == 0) {
		ds_set_err(err, errlen, "dataset '%s': manifest '%s' lists no files",
			   ds->name, file);
		rc = -ENOENT;
		goto out_free;
	}
	rc = manifest_labels(&m);
out_free:
	free(m.cls);
	free(buf);
	return rc;
}
