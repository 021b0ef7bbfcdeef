/*
 * dataset.c — build the index of one dataset from a folder tree or a
 * manifest (the rules are in dataset.h).
 *
 * Layout: `paths` is one arena of NUL-terminated paths relative to the root,
 * `offs[i]` the offset of sample i's path in it and `labels[i]` its class;
 * `names` / `name_offs` hold the class names the same way. The arrays grow
 * by doubling while the index is built and are trimmed to size at the end,
 * so a finished index costs the path bytes plus 12 bytes per sample.
 *
 * Containment: unless follow_symlinks, every path must resolve (realpath)
 * inside realpath(root). A scan skips links that leave the root with a
 * warning; a manifest line that does is an error. Paths that do not exist
 * are not an error here (the decoder reports them); their longest existing
 * ancestor must still be inside the root. Image files are never opened.
 *
 * A scan follows links that stay inside the root (and any link with
 * follow_symlinks); a folder already on the current path (a link loop) is
 * skipped with a warning.
 */
#include "dataset.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "digest.h"
#include "log.h"

#define DATASET_MAX_SAMPLES  0x80000000u /* 2^31: what the sampler handles */
#define DATASET_MAX_INT_CLASS 1048575u   /* integer classes: 0..2^20-1 */
#define SCAN_MAX_DEPTH       128

struct dataset {
	char name[CONFIG_NAME_MAX];
	char *root;         /* as configured, trailing '/' trimmed */
	char *root_real;    /* realpath(root) */
	bool follow_symlinks;

	char *paths;        /* arena of NUL-terminated relative paths */
	size_t paths_len, paths_cap;
	uint64_t *offs;     /* [n] offset of each path in `paths` */
	int32_t *labels;    /* [n] */
	size_t n, offs_cap, labels_cap;

	char *names;        /* arena of NUL-terminated class names */
	size_t names_len, names_cap;
	uint64_t *name_offs; /* [num_classes] */
	size_t num_classes, classes_cap;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ---- arenas ------------------------------------------------------------ */

/*
 * Room for `need` elements: returns the block (moved or not) with *cap
 * updated, or NULL with the old block and *cap untouched.
 */
static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
	size_t ncap = *cap ? *cap : 64;
	void *np;

	if (need <= *cap && p)
		return p;
	while (ncap < need) {
		if (ncap > SIZE_MAX / 2 / elem)
			return NULL;
		ncap *= 2;
	}
	np = realloc(p, ncap * elem);
	if (!np)
		return NULL;
	*cap = ncap;
	return np;
}

static int push_path(dataset_t *ds, const char *rel, size_t len, int32_t label)
{
	void *np;

	if (ds->n >= DATASET_MAX_SAMPLES)
		return -E2BIG;
	np = grow(ds->paths, &ds->paths_cap, ds->paths_len + len + 1, 1);
	if (!np)
		return -ENOMEM;
	ds->paths = np;
	np = grow(ds->offs, &ds->offs_cap, ds->n + 1, sizeof(*ds->offs));
	if (!np)
		return -ENOMEM;
	ds->offs = np;
	np = grow(ds->labels, &ds->labels_cap, ds->n + 1, sizeof(*ds->labels));
	if (!np)
		return -ENOMEM;
	ds->labels = np;

	memcpy(ds->paths + ds->paths_len, rel, len);
	ds->paths[ds->paths_len + len] = '\0';
	ds->offs[ds->n] = ds->paths_len;
	ds->labels[ds->n] = label;
	ds->paths_len += len + 1;
	ds->n++;
	return 0;
}

static int push_name(dataset_t *ds, const char *name, size_t len)
{
	void *np;

	np = grow(ds->names, &ds->names_cap, ds->names_len + len + 1, 1);
	if (!np)
		return -ENOMEM;
	ds->names = np;
	np = grow(ds->name_offs, &ds->classes_cap, ds->num_classes + 1,
		  sizeof(*ds->name_offs));
	if (!np)
		return -ENOMEM;
	ds->name_offs = np;
	memcpy(ds->names + ds->names_len, name, len);
	ds->names[ds->names_len + len] = '\0';
	ds->name_offs[ds->num_classes++] = ds->names_len;
	ds->names_len += len + 1;
	return 0;
}

/* Trim a block to `used` elements; a failed shrink keeps the old block. */
static void *shrink(void *p, size_t *cap, size_t used, size_t elem)
{
	void *np;

	if (used == *cap)
		return p;
	if (used == 0) {
		free(p);
		*cap = 0;
		return NULL;
	}
	np = realloc(p, used * elem);
	if (!np)
		return p;
	*cap = used;
	return np;
}

static void shrink_all(dataset_t *ds)
{
	ds->paths = shrink(ds->paths, &ds->paths_cap, ds->paths_len, 1);
	ds->offs = shrink(ds->offs, &ds->offs_cap, ds->n, sizeof(*ds->offs));
	ds->labels = shrink(ds->labels, &ds->labels_cap, ds->n, sizeof(*ds->labels));
	ds->names = shrink(ds->names, &ds->names_cap, ds->names_len, 1);
	ds->name_offs = shrink(ds->name_offs, &ds->classes_cap, ds->num_classes,
			       sizeof(*ds->name_offs));
}

/* ---- paths and containment --------------------------------------------- */

/* Separator between root and a relative path: none when root is "/". */
static const char *root_sep(const dataset_t *ds)
{
	return strcmp(ds->root, "/") == 0 ? "" : "/";
}

static bool real_inside(const dataset_t *ds, const char *real)
{
	size_t n = strlen(ds->root_real);

	if (strcmp(ds->root_real, "/") == 0)
		return true;
	return strncmp(real, ds->root_real, n) == 0 &&
	       (real[n] == '\0' || real[n] == '/');
}

/*
 * Does `full` (a path under the root) resolve inside the root? When it or
 * some of its last components do not exist, the longest existing ancestor
 * decides (what does not exist cannot be a link). 0 or -errno.
 */
static int resolve_inside(const dataset_t *ds, const char *full, bool *inside)
{
	char tmp[PATH_MAX], real[PATH_MAX];
	size_t rootlen = strlen(ds->root);
	size_t len = strlen(full);

	if (len >= sizeof(tmp))
		return -ENAMETOOLONG;
	memcpy(tmp, full, len + 1);
	for (;;) {
		if (realpath(tmp, real)) {
			*inside = real_inside(ds, real);
			return 0;
		}
		if (errno != ENOENT && errno != ENOTDIR)
			return -errno;
		char *slash = strrchr(tmp, '/');
		if (!slash || (size_t)(slash - tmp) <= rootlen) {
			/* back at the root, which exists */
			*inside = true;
			return 0;
		}
		*slash = '\0';
	}
}

static bool has_jpeg_ext(const char *name, size_t len)
{
	if (len > 4 && strcasecmp(name + len - 4, ".jpg") == 0)
		return true;
	return len > 5 && strcasecmp(name + len - 5, ".jpeg") == 0;
}

static int check_root(dataset_t *ds, char *err, size_t errlen)
{
	char real[PATH_MAX];
	struct stat st;
	DIR *d;
	int rc;

	if (!realpath(ds->root, real) || stat(real, &st) != 0) {
		rc = -errno;
		set_err(err, errlen, "dataset '%s': cannot open root '%s': %s",
			ds->name, ds->root, strerror(errno));
		return rc;
	}
	if (!S_ISDIR(st.st_mode)) {
		set_err(err, errlen, "dataset '%s': root '%s' is not a directory",
			ds->name, ds->root);
		return -ENOTDIR;
	}
	d = opendir(real);
	if (!d) {
		rc = -errno;
		set_err(err, errlen, "dataset '%s': cannot open root '%s': %s",
			ds->name, ds->root, strerror(errno));
		return rc;
	}
	closedir(d);
	ds->root_real = strdup(real);
	if (!ds->root_real) {
		set_err(err, errlen, "dataset '%s': out of memory", ds->name);
		return -ENOMEM;
	}
	return 0;
}

/* ---- root scan --------------------------------------------------------- */

enum entry_kind { ENT_SKIP, ENT_DIR, ENT_FILE };

struct scan {
	dataset_t *ds;
	char full[PATH_MAX]; /* root [/] rel: the entry being looked at */
	size_t rel_off;      /* where rel starts in full */
	struct { dev_t dev; ino_t ino; } stack[SCAN_MAX_DEPTH];
	int depth;
	char *err;
	size_t errlen;
};

/* What sc->full is: a folder to enter, a JPEG to index, or neither. */
static int classify(struct scan *sc, unsigned char type, bool jpeg,
		    enum entry_kind *kind)
{
	const dataset_t *ds = sc->ds;
	struct stat st;

	*kind = ENT_SKIP;
	if (type == DT_UNKNOWN) {
		if (lstat(sc->full, &st) != 0)
			return 0; /* vanished */
		type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG :
		       S_ISLNK(st.st_mode) ? DT_LNK : DT_UNKNOWN;
	}
	if (type == DT_DIR) {
		*kind = ENT_DIR;
		return 0;
	}
	if (type == DT_REG) {
		*kind = jpeg ? ENT_FILE : ENT_SKIP;
		return 0;
	}
	if (type != DT_LNK)
		return 0;

	if (stat(sc->full, &st) != 0) {
		log_debug("dataset '%s': skipping '%s': dangling symlink",
			  ds->name, sc->full + sc->rel_off);
		return 0;
	}
	if (!S_ISDIR(st.st_mode) && !(S_ISREG(st.st_mode) && jpeg))
		return 0;
	if (!ds->follow_symlinks) {
		char real[PATH_MAX];
		if (!realpath(sc->full, real))
			return 0;
		if (!real_inside(ds, real)) {
			log_warning("dataset '%s': skipping '%s': symlink leads outside "
				    "the root (set follow_symlinks to allow)",
				    ds->name, sc->full + sc->rel_off);
			return 0;
		}
	}
	*kind = S_ISDIR(st.st_mode) ? ENT_DIR : ENT_FILE;
	return 0;
}

/* Index every JPEG under the folder sc->full[0..len) with `label`. */
static int walk(struct scan *sc, size_t len, int32_t label)
{
	dataset_t *ds = sc->ds;
	struct dirent *de;
	struct stat st;
	DIR *d;
	int rc = 0;

	d = opendir(sc->full);
	if (!d) {
		rc = -errno;
		set_err(sc->err, sc->errlen, "dataset '%s': cannot open '%s': %s",
			ds->name, sc->full, strerror(errno));
		return rc;
	}
	if (fstat(dirfd(d), &st) != 0) {
		rc = -errno;
		set_err(sc->err, sc->errlen, "dataset '%s': cannot stat '%s': %s",
			ds->name, sc->full, strerror(errno));
		goto out_close;
	}
	for (int i = 0; i < sc->depth; i++) {
		if (sc->stack[i].dev == st.st_dev && sc->stack[i].ino == st.st_ino) {
			log_warning("dataset '%s': skipping '%s': symlink loop",
				    ds->name, sc->full + sc->rel_off);
			goto out_close;
		}
	}
	if (sc->depth >= SCAN_MAX_DEPTH) {
		set_err(sc->err, sc->errlen, "dataset '%s': '%s': folders nested "
			"deeper than %d", ds->name, sc->full, SCAN_MAX_DEPTH);
		rc = -ELOOP;
		goto out_close;
	}
	sc->stack[sc->depth].dev = st.st_dev;
	sc->stack[sc->depth].ino = st.st_ino;
	sc->depth++;

	for (;;) {
		enum entry_kind kind;

		errno = 0;
		de = readdir(d);
		if (!de) {
			if (errno) {
				rc = -errno;
				set_err(sc->err, sc->errlen, "dataset '%s': cannot read '%s': %s",
					ds->name, sc->full, strerror(errno));
			}
			break;
		}
		if (de->d_name[0] == '.')
			continue;
		size_t nl = strlen(de->d_name);
		if (len + 1 + nl + 1 > sizeof(sc->full)) {
			set_err(sc->err, sc->errlen, "dataset '%s': path too long under '%s'",
				ds->name, sc->full);
			rc = -ENAMETOOLONG;
			break;
		}
		sc->full[len] = '/';
		memcpy(sc->full + len + 1, de->d_name, nl + 1);
		rc = classify(sc, de->d_type, has_jpeg_ext(de->d_name, nl), &kind);
		if (rc == 0 && kind == ENT_DIR)
			rc = walk(sc, len + 1 + nl, label);
		else if (rc == 0 && kind == ENT_FILE) {
			rc = push_path(ds, sc->full + sc->rel_off,
				       len + 1 + nl - sc->rel_off, label);
			if (rc)
				set_err(sc->err, sc->errlen, rc == -E2BIG ?
					"dataset '%s': more than 2^31 files" :
					"dataset '%s': out of memory", ds->name);
		}
		sc->full[len] = '\0';
		if (rc)
			break;
	}
	sc->depth--;
out_close:
	closedir(d);
	return rc;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_off(const void *a, const void *b, void *arena)
{
	const char *p = arena;

	return strcmp(p + *(const uint64_t *)a, p + *(const uint64_t *)b);
}

static int scan_root(dataset_t *ds, char *err, size_t errlen)
{
	struct scan *sc;
	struct dirent *de;
	struct stat st;
	char **classes = NULL;
	size_t n_classes = 0, cap = 0;
	DIR *d = NULL;
	int rc = 0;

	sc = calloc(1, sizeof(*sc));
	if (!sc) {
		set_err(err, errlen, "dataset '%s': out of memory", ds->name);
		return -ENOMEM;
	}
	sc->ds = ds;
	sc->err = err;
	sc->errlen = errlen;
	sc->rel_off = (size_t)snprintf(sc->full, sizeof(sc->full), "%s%s",
				       ds->root, root_sep(ds));
	if (sc->rel_off >= sizeof(sc->full)) {
		set_err(err, errlen, "dataset '%s': root '%s': path too long",
			ds->name, ds->root);
		rc = -ENAMETOOLONG;
		goto out_free;
	}
	d = opendir(ds->root);
	if (!d || fstat(dirfd(d), &st) != 0) {
		rc = -errno;
		set_err(err, errlen, "dataset '%s': cannot open root '%s': %s",
			ds->name, ds->root, strerror(errno));
		goto out_free;
	}
	sc->stack[0].dev = st.st_dev;
	sc->stack[0].ino = st.st_ino;
	sc->depth = 1;

	/* class folders: immediate subfolders, sorted byte-wise */
	for (;;) {
		enum entry_kind kind;

		errno = 0;
		de = readdir(d);
		if (!de) {
			if (errno) {
				rc = -errno;
				set_err(err, errlen, "dataset '%s': cannot read root '%s': %s",
					ds->name, ds->root, strerror(errno));
				goto out_free;
			}
			break;
		}
		if (de->d_name[0] == '.')
			continue;
		size_t nl = strlen(de->d_name);
		if (sc->rel_off + nl + 1 > sizeof(sc->full))
			continue; /* cannot be a usable class folder */
		memcpy(sc->full + sc->rel_off, de->d_name, nl + 1);
		rc = classify(sc, de->d_type, false, &kind);
		if (rc)
			goto out_free;
		if (kind != ENT_DIR)
			continue;
		if (n_classes == cap) {
			void *np = grow(classes, &cap, n_classes + 1, sizeof(*classes));
			if (!np)
				goto out_oom;
			classes = np;
		}
		classes[n_classes] = strdup(de->d_name);
		if (!classes[n_classes])
			goto out_oom;
		n_classes++;
	}
	if (n_classes > 0)
		qsort(classes, n_classes, sizeof(*classes), cmp_str);

	for (size_t k = 0; k < n_classes; k++) {
		size_t nl = strlen(classes[k]);
		size_t first = ds->n;

		rc = push_name(ds, classes[k], nl);
		if (rc)
			goto out_oom;
		memcpy(sc->full + sc->rel_off, classes[k], nl + 1);
		rc = walk(sc, sc->rel_off + nl, (int32_t)k);
		if (rc)
			goto out_free;
		if (ds->n == first)
			log_warning("dataset '%s': class '%s' has no JPEG files under '%s'",
				    ds->name, classes[k], ds->root);
		if (ds->n - first > 1)
			qsort_r(ds->offs + first, ds->n - first, sizeof(*ds->offs),
				cmp_off, ds->paths);
	}
	goto out_free;

out_oom:
	set_err(err, errlen, "dataset '%s': out of memory", ds->name);
	rc = -ENOMEM;
out_free:
	if (d)
		closedir(d);
	for (size_t k = 0; k < n_classes; k++)
		free(classes[k]);
	free(classes);
	free(sc);
	return rc;
}

/* ---- manifest ---------------------------------------------------------- */

static int read_all(const char *path, char **out, size_t *outlen)
{
	struct stat st;
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		goto out_close;
	}
	if (S_ISDIR(st.st_mode)) {
		rc = -EISDIR;
		goto out_close;
	}
	cap = S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t)st.st_size + 1 : 4096;
	buf = malloc(cap);
	if (!buf) {
		rc = -ENOMEM;
		goto out_close;
	}
	for (;;) {
		if (len + 1 >= cap) {
			void *np = grow(buf, &cap, cap + 1, 1);
			if (!np) {
				rc = -ENOMEM;
				goto out_close;
			}
			buf = np;
		}
		ssize_t r = read(fd, buf + len, cap - len - 1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			goto out_close;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	buf[len] = '\0';
	*out = buf;
	*outlen = len;
	buf = NULL;
out_close:
	free(buf);
	close(fd);
	return rc;
}

struct manifest {
	dataset_t *ds;
	const char *file;
	char *err;
	size_t errlen;
	/* containment cache: the last folder checked and its verdict */
	char *dir;
	size_t dir_len, dir_cap;
	bool dir_inside;
	bool dir_valid;
};

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

/* 0 if `rel` stays in the root, -EXDEV if not, other -errno on failure. */
static int manifest_contained(struct manifest *m, const char *rel)
{
	dataset_t *ds = m->ds;
	char full[PATH_MAX];
	struct stat st;
	bool inside;
	int rc;

	if (rel[0] == '/' || has_dotdot(rel))
		return -EXDEV;
	if (ds->follow_symlinks)
		return 0;
	if ((size_t)snprintf(full, sizeof(full), "%s%s%s", ds->root, root_sep(ds), rel)
	    >= sizeof(full))
		return -ENAMETOOLONG;

	/* the folder part, cached: manifests list files folder by folder */
	const char *slash = strrchr(rel, '/');
	size_t dlen = slash ? (size_t)(slash - rel) : 0;
	if (!m->dir_valid || dlen != m->dir_len || memcmp(m->dir, rel, dlen) != 0) {
		if (dlen == 0) {
			inside = true;
		} else {
			size_t flen = strlen(ds->root) + strlen(root_sep(ds)) + dlen;
			char save = full[flen];
			full[flen] = '\0';
			rc = resolve_inside(ds, full, &inside);
			full[flen] = save;
			if (rc)
				return rc;
		}
		void *np = grow(m->dir, &m->dir_cap, dlen + 1, 1);
		if (!np)
			return -ENOMEM;
		m->dir = np;
		memcpy(m->dir, rel, dlen);
		m->dir[dlen] = '\0';
		m->dir_len = dlen;
		m->dir_inside = inside;
		m->dir_valid = true;
	}
	if (!m->dir_inside)
		return -EXDEV;

	/* the file itself matters only if it is a link */
	if (lstat(full, &st) != 0 || !S_ISLNK(st.st_mode))
		return 0;
	rc = resolve_inside(ds, full, &inside);
	if (rc)
		return rc;
	return inside ? 0 : -EXDEV;
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

static int load_manifest(dataset_t *ds, const char *file, char *err, size_t errlen)
{
	struct manifest m = { .ds = ds, .file = file, .err = err, .errlen = errlen };
	char *buf = NULL;
	char **cls = NULL;      /* class field of each entry, in buf */
	char **uniq = NULL;     /* sorted distinct class names */
	size_t len = 0, cls_cap = 0;
	bool all_int = true;
	uint32_t max_int = 0;
	long big_line = 0;      /* first integer class out of range */
	const char *big_text = NULL;
	long lineno = 0;
	int rc;

	rc = read_all(file, &buf, &len);
	if (rc) {
		set_err(err, errlen, "dataset '%s': cannot read manifest '%s': %s",
			ds->name, file, strerror(-rc));
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

		size_t blank = strspn(line, " \t");
		if (blank == ll || line[0] == '#')
			continue;
		if (memchr(line, '\0', ll)) {
			set_err(err, errlen, "%s:%ld: line contains a NUL byte", file, lineno);
			rc = -EINVAL;
			goto out_free;
		}
		char *tab = strchr(line, '\t');
		if (!tab) {
			set_err(err, errlen, "%s:%ld: expected 'path<TAB>class', got '%.*s'",
				file, lineno, (int)(ll > 80 ? 80 : ll), line);
			rc = -EINVAL;
			goto out_free;
		}
		*tab = '\0';
		char *path = line, *klass = tab + 1;
		if (!*path) {
			set_err(err, errlen, "%s:%ld: empty path", file, lineno);
			rc = -EINVAL;
			goto out_free;
		}
		if (!*klass) {
			set_err(err, errlen, "%s:%ld: path '%s' has an empty class",
				file, lineno, path);
			rc = -EINVAL;
			goto out_free;
		}
		if (strchr(klass, '\t')) {
			set_err(err, errlen, "%s:%ld: expected 'path<TAB>class', got "
				"more than one tab", file, lineno);
			rc = -EINVAL;
			goto out_free;
		}
		rc = manifest_contained(&m, path);
		if (rc == -EXDEV) {
			set_err(err, errlen, "%s:%ld: path '%s' escapes the dataset root",
				file, lineno, path);
			goto out_free;
		} else if (rc) {
			set_err(err, errlen, "%s:%ld: path '%s': %s", file, lineno, path,
				strerror(-rc));
			goto out_free;
		}

		if (all_int && is_uint(klass)) {
			uint32_t v = uint_value(klass);
			if (v > DATASET_MAX_INT_CLASS && !big_line) {
				big_line = lineno;
				big_text = klass;
			}
			if (v > max_int)
				max_int = v;
		} else {
			all_int = false;
		}
		rc = push_path(ds, path, (size_t)(tab - path), -1);
		if (rc == 0 && ds->n > cls_cap) {
			void *np = grow(cls, &cls_cap, ds->n, sizeof(*cls));
			if (np)
				cls = np;
			else
				rc = -ENOMEM;
		}
		if (rc) {
			set_err(err, errlen, rc == -E2BIG ? "%s:%ld: more than 2^31 files" :
				"%s:%ld: out of memory", file, lineno);
			goto out_free;
		}
		cls[ds->n - 1] = klass;
	}
	if (ds->n == 0) {
		set_err(err, errlen, "dataset '%s': manifest '%s' lists no files",
			ds->name, file);
		rc = -ENOENT;
		goto out_free;
	}

	if (all_int) {
		char num[16];
		if (big_line) {
			set_err(err, errlen, "%s:%ld: class index '%s' out of range (0..%u)",
				file, big_line, big_text, DATASET_MAX_INT_CLASS);
			rc = -EINVAL;
			goto out_free;
		}
		for (uint32_t k = 0; k <= max_int; k++) {
			int nn = snprintf(num, sizeof(num), "%u", k);
			rc = push_name(ds, num, (size_t)nn);
			if (rc)
				goto out_oom;
		}
		for (size_t i = 0; i < ds->n; i++)
			ds->labels[i] = (int32_t)uint_value(cls[i]);
		rc = 0;
		goto out_free;
	}

	uniq = malloc(ds->n * sizeof(*uniq));
	if (!uniq)
		goto out_oom;
	memcpy(uniq, cls, ds->n * sizeof(*uniq));
	qsort(uniq, ds->n, sizeof(*uniq), cmp_str);
	size_t nu = 0;
	for (size_t i = 0; i < ds->n; i++)
		if (nu == 0 || strcmp(uniq[nu - 1], uniq[i]) != 0)
			uniq[nu++] = uniq[i];
	for (size_t k = 0; k < nu; k++) {
		rc = push_name(ds, uniq[k], strlen(uniq[k]));
		if (rc)
			goto out_oom;
	}
	for (size_t i = 0; i < ds->n; i++) {
		char **hit = bsearch(&cls[i], uniq, nu, sizeof(*uniq), cmp_str);
		ds->labels[i] = (int32_t)(hit - uniq);
	}
	rc = 0;
	goto out_free;

out_oom:
	set_err(err, errlen, "dataset '%s': out of memory", ds->name);
	rc = -ENOMEM;
out_free:
	free(uniq);
	free(cls);
	free(m.dir);
	free(buf);
	return rc;
}

/* ---- public ------------------------------------------------------------ */

int dataset_open(const struct dataset_cfg *cfg, dataset_t **out,
		 char *err, size_t errlen)
{
	dataset_t *ds;
	size_t rl;
	int rc;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!cfg || !cfg->root || !*cfg->root) {
		set_err(err, errlen, "dataset '%s': no root given",
			cfg && cfg->name[0] ? cfg->name : "default");
		return -EINVAL;
	}
	ds = calloc(1, sizeof(*ds));
	if (!ds) {
		set_err(err, errlen, "dataset: out of memory");
		return -ENOMEM;
	}
	snprintf(ds->name, sizeof(ds->name), "%s", cfg->name[0] ? cfg->name : "default");
	ds->follow_symlinks = cfg->follow_symlinks;
	ds->root = strdup(cfg->root);
	if (!ds->root) {
		set_err(err, errlen, "dataset '%s': out of memory", ds->name);
		rc = -ENOMEM;
		goto out_destroy;
	}
	rl = strlen(ds->root);
	while (rl > 1 && ds->root[rl - 1] == '/')
		ds->root[--rl] = '\0';

	rc = check_root(ds, err, errlen);
	if (rc)
		goto out_destroy;
	if (cfg->manifest)
		rc = load_manifest(ds, cfg->manifest, err, errlen);
	else
		rc = scan_root(ds, err, errlen);
	if (rc)
		goto out_destroy;
	if (ds->n == 0) {
		set_err(err, errlen, "dataset '%s': no JPEG files under %s",
			ds->name, ds->root);
		rc = -ENOENT;
		goto out_destroy;
	}
	shrink_all(ds);
	*out = ds;
	return 0;

out_destroy:
	dataset_destroy(&ds);
	return rc;
}

void dataset_destroy(dataset_t **dsp)
{
	dataset_t *ds;

	if (!dsp || !*dsp)
		return;
	ds = *dsp;
	free(ds->root);
	free(ds->root_real);
	free(ds->paths);
	free(ds->offs);
	free(ds->labels);
	free(ds->names);
	free(ds->name_offs);
	free(ds);
	*dsp = NULL;
}

uint32_t dataset_size(const dataset_t *ds)
{
	return ds ? (uint32_t)ds->n : 0;
}

uint32_t dataset_num_classes(const dataset_t *ds)
{
	return ds ? (uint32_t)ds->num_classes : 0;
}

const char *dataset_class_name(const dataset_t *ds, uint32_t k)
{
	if (!ds || k >= ds->num_classes)
		return NULL;
	return ds->names + ds->name_offs[k];
}

const char *dataset_path(const dataset_t *ds, uint32_t i)
{
	if (!ds || i >= ds->n)
		return NULL;
	return ds->paths + ds->offs[i];
}

int32_t dataset_label(const dataset_t *ds, uint32_t i)
{
	if (!ds || i >= ds->n)
		return -1;
	return ds->labels[i];
}

char *dataset_full_path(const dataset_t *ds, uint32_t i, char *buf, size_t len)
{
	const char *rel = dataset_path(ds, i);

	if (!rel || !buf || len == 0)
		return NULL;
	int n = snprintf(buf, len, "%s%s%s", ds->root, root_sep(ds), rel);
	if (n < 0 || (size_t)n >= len)
		return NULL;
	return buf;
}

const char *dataset_root(const dataset_t *ds)
{
	return ds ? ds->root : NULL;
}

size_t dataset_memory(const dataset_t *ds)
{
	if (!ds)
		return 0;
	return sizeof(*ds) + strlen(ds->root) + 1 +
	       (ds->root_real ? strlen(ds->root_real) + 1 : 0) +
	       ds->paths_cap + ds->offs_cap * sizeof(*ds->offs) +
	       ds->labels_cap * sizeof(*ds->labels) +
	       ds->names_cap + ds->classes_cap * sizeof(*ds->name_offs);
}

static void put_u32(struct sha256 *s, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16),
			 (uint8_t)(v >> 24) };

	sha256_update(s, b, sizeof(b));
}

/*
 * Class count, each class name with its NUL, sample count, then each path
 * with its NUL and its label (little-endian). The root is left out: moving
 * a dataset does not change what it yields.
 */
void dataset_digest(const dataset_t *ds, struct sha256 *s)
{
	if (!ds || !s)
		return;
	put_u32(s, (uint32_t)ds->num_classes);
	for (size_t k = 0; k < ds->num_classes; k++) {
		const char *name = ds->names + ds->name_offs[k];
		sha256_update(s, name, strlen(name) + 1);
	}
	put_u32(s, (uint32_t)ds->n);
	for (size_t i = 0; i < ds->n; i++) {
		const char *p = ds->paths + ds->offs[i];
		sha256_update(s, p, strlen(p) + 1);
		put_u32(s, (uint32_t)ds->labels[i]);
	}
}
