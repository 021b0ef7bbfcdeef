/*
 * dataset_scan.c — index a root of one folder per class (torchvision
 * ImageFolder order; the rules are in dataset.h).
 *
 * The walk holds a descriptor per folder on the current path and opens
 * each child relative to its parent: real folders with O_NOFOLLOW, links
 * through beneath_open() from the root, so the scan applies the same
 * containment rule as every later read. The entries of each folder are
 * read in full and sorted by name before any is visited: with each real
 * folder walked once per class (the (device, inode) set `seen`), the path
 * a folder is indexed under must not depend on readdir order.
 */
#include "dataset_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "beneath.h"
#include "log.h"

#define SCAN_MAX_DEPTH 128

struct dev_ino {
	dev_t dev;
	ino_t ino;
};

/* Open-addressing set of (dev, ino); slot.ino == 0 with !used is empty. */
struct dirset {
	struct dev_ino *slot;
	uint8_t *used;
	size_t cap, n;
};

static size_t dirset_hash(const struct dev_ino *k, size_t cap)
{
	uint64_t h = (uint64_t)k->ino * 0x9E3779B97F4A7C15ull ^ (uint64_t)k->dev;

	h ^= h >> 29;
	return (size_t)(h & (cap - 1));
}

static bool dirset_has(const struct dirset *s, const struct dev_ino *k)
{
	if (!s->cap)
		return false;
	for (size_t i = dirset_hash(k, s->cap);; i = (i + 1) & (s->cap - 1)) {
		if (!s->used[i])
			return false;
		if (s->slot[i].dev == k->dev && s->slot[i].ino == k->ino)
			return true;
	}
}

static int dirset_add(struct dirset *s, const struct dev_ino *k)
{
	if ((s->n + 1) * 2 > s->cap) {
		struct dirset ns = { .cap = s->cap ? s->cap * 2 : 64 };

		ns.slot = malloc(ns.cap * sizeof(*ns.slot));
		ns.used = calloc(ns.cap, 1);
		if (!ns.slot || !ns.used) {
			free(ns.slot);
			free(ns.used);
			return -ENOMEM;
		}
		for (size_t i = 0; i < s->cap; i++)
			if (s->used[i])
				dirset_add(&ns, &s->slot[i]);
		free(s->slot);
		free(s->used);
		*s = ns;
	}
	size_t i = dirset_hash(k, s->cap);
	while (s->used[i])
		i = (i + 1) & (s->cap - 1);
	s->slot[i] = *k;
	s->used[i] = 1;
	s->n++;
	return 0;
}

static void dirset_clear(struct dirset *s)
{
	if (s->cap)
		memset(s->used, 0, s->cap);
	s->n = 0;
}

static void dirset_free(struct dirset *s)
{
	free(s->slot);
	free(s->used);
	memset(s, 0, sizeof(*s));
}

/* The visible entries of one folder, sorted by name. */
struct entries {
	char *names;          /* arena */
	size_t len, cap;
	struct ent { size_t off; unsigned char type; } *ent;
	size_t n, ent_cap;
};

static int cmp_ent(const void *a, const void *b, void *arena)
{
	return strcmp((const char *)arena + ((const struct ent *)a)->off,
		      (const char *)arena + ((const struct ent *)b)->off);
}

static int read_entries(DIR *d, struct entries *e)
{
	struct dirent *de;

	for (;;) {
		errno = 0;
		de = readdir(d);
		if (!de)
			break;
		if (de->d_name[0] == '.')
			continue;
		size_t nl = strlen(de->d_name);
		if (ds_grow_in((void **)&e->names, &e->cap, e->len + nl + 1, 1) ||
		    ds_grow_in((void **)&e->ent, &e->ent_cap, e->n + 1, sizeof(*e->ent)))
			return -ENOMEM;
		memcpy(e->names + e->len, de->d_name, nl + 1);
		e->ent[e->n].off = e->len;
		e->ent[e->n].type = de->d_type;
		e->len += nl + 1;
		e->n++;
	}
	if (errno)
		return -errno;
	if (e->n > 1)
		qsort_r(e->ent, e->n, sizeof(*e->ent), cmp_ent, e->names);
	return 0;
}

static void entries_free(struct entries *e)
{
	free(e->names);
	free(e->ent);
}

struct scan {
	dataset_t *ds;
	char full[PATH_MAX]; /* root [/] rel: the entry being looked at */
	size_t rel_off;      /* where rel starts in full */
	struct dev_ino stack[SCAN_MAX_DEPTH];
	int depth;
	struct dirset seen;  /* folders walked in the current class */
	char *err;
	size_t errlen;
};

static const char *rel_of(const struct scan *sc)
{
	return sc->full + sc->rel_off;
}

/* What a scan indexes: the formats decode.c reads (JPEG, PNG, WebP). */
static bool has_jpeg_ext(const char *name, size_t len)
{
	static const char *const exts[] = { ".jpg", ".jpeg", ".png", ".webp" };

	for (int i = 0; i < 4; i++) {
		size_t el = strlen(exts[i]);
		if (len > el && strcasecmp(name + len - el, exts[i]) == 0)
			return true;
	}
	return false;
}

/* Errors that skip one folder or link instead of failing the scan: the
 * tree is what it is (permissions, a link out, something vanished). Out
 * of memory or descriptors, or I/O errors, fail it: an index silently
 * missing folders would be worse. */
static bool skippable(int e)
{
	return e == EACCES || e == EPERM || e == ENOENT || e == ENOTDIR ||
	       e == ELOOP || e == EXDEV;
}

static int fatal(struct scan *sc, int rc, const char *what)
{
	ds_set_err(sc->err, sc->errlen, "dataset '%s': cannot %s '%s': %s",
		   sc->ds->name, what, sc->full, strerror(-rc));
	return rc;
}

static int skip_dir(struct scan *sc, int rc)
{
	if (!skippable(-rc))
		return fatal(sc, rc, "open");
	sc->ds->skipped_dirs++;
	log_warning("dataset '%s': skipping folder '%s': %s (its files are not "
		    "indexed)", sc->ds->name, rel_of(sc), strerror(-rc));
	return 0;
}

static int index_file(struct scan *sc, int fd, const struct stat *st,
		      size_t len, int32_t label)
{
	struct stamp stp;
	int rc = ds_stamp_fd(sc->ds, fd, st, &stp);

	if (rc)
		return fatal(sc, rc, "read");
	rc = ds_push_path(sc->ds, rel_of(sc), len - sc->rel_off, label, &stp);
	if (rc)
		ds_set_err(sc->err, sc->errlen, rc == -E2BIG ?
			   "dataset '%s': more than 2^31 files" :
			   "dataset '%s': out of memory", sc->ds->name);
	return rc;
}

static int walk(struct scan *sc, int dfd, size_t len, int32_t label);

/* A regular file named *.jpg / *.jpeg in the folder dfd. */
static int visit_file(struct scan *sc, int dfd, const char *name, size_t len,
		      int32_t label)
{
	struct stat st;
	int fd = -1, rc;

	if (sc->ds->digest_contents) {
		fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
			    O_NOCTTY | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &st) != 0) {
			rc = -errno;
			if (fd >= 0)
				close(fd);
			if (!skippable(-rc))
				return fatal(sc, rc, "open");
			log_debug("dataset '%s': skipping '%s': %s", sc->ds->name,
				  rel_of(sc), strerror(-rc));
			return 0;
		}
	} else if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
		return 0; /* vanished */
	}
	rc = S_ISREG(st.st_mode) ? index_file(sc, fd, &st, len, label) : 0;
	if (fd >= 0)
		close(fd);
	return rc;
}

/* A symbolic link: followed when it stays inside the root. */
static int visit_link(struct scan *sc, bool jpeg, size_t len, int32_t label)
{
	dataset_t *ds = sc->ds;
	struct stat st;
	int fd, rc = 0;

	fd = ds_open(ds, rel_of(sc), O_PATH);
	if (fd < 0) {
		if (fd == -ENOENT)
			log_debug("dataset '%s': skipping '%s': dangling symlink",
				  ds->name, rel_of(sc));
		else if (fd == -EXDEV)
			log_warning("dataset '%s': skipping '%s': symlink leads outside "
				    "the root (set follow_symlinks to allow)",
				    ds->name, rel_of(sc));
		else if (skippable(-fd))
			log_warning("dataset '%s': skipping '%s': %s", ds->name,
				    rel_of(sc), strerror(-fd));
		else
			return fatal(sc, fd, "open");
		return 0;
	}
	if (fstat(fd, &st) != 0) {
		rc = fatal(sc, -errno, "stat");
	} else if (S_ISDIR(st.st_mode)) {
		int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_NONBLOCK | O_CLOEXEC);
		rc = dfd < 0 ? skip_dir(sc, -errno) : walk(sc, dfd, len, label);
	} else if (S_ISREG(st.st_mode) && !jpeg) {
		ds_note_skipped(ds, rel_of(sc));
	} else if (S_ISREG(st.st_mode) && jpeg) {
		if (ds->digest_contents) {
			int rfd = ds_open(ds, rel_of(sc), O_RDONLY | O_NONBLOCK | O_NOCTTY);
			if (rfd < 0) {
				log_debug("dataset '%s': skipping '%s': %s", ds->name,
					  rel_of(sc), strerror(-rfd));
			} else {
				if (fstat(rfd, &st) == 0)
					rc = index_file(sc, rfd, &st, len, label);
				close(rfd);
			}
		} else {
			rc = index_file(sc, -1, &st, len, label);
		}
	}
	close(fd);
	return rc;
}

static int visit(struct scan *sc, int dfd, const char *name, unsigned char type,
		 size_t len, int32_t label)
{
	size_t nl = strlen(name);
	bool jpeg = has_jpeg_ext(name, nl);
	struct stat st;

	if (type == DT_UNKNOWN) {
		if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
			return 0; /* vanished */
		type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG :
		       S_ISLNK(st.st_mode) ? DT_LNK : DT_UNKNOWN;
	}
	if (type == DT_DIR) {
		int cfd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
				 O_NONBLOCK | O_CLOEXEC);
		return cfd < 0 ? skip_dir(sc, -errno) : walk(sc, cfd, len, label);
	}
	if (type == DT_REG && !jpeg)
		ds_note_skipped(sc->ds, rel_of(sc));
	if (type == DT_REG)
		return jpeg ? visit_file(sc, dfd, name, len, label) : 0;
	if (type == DT_LNK)
		return visit_link(sc, jpeg, len, label);
	return 0;
}

/* Index every JPEG under the folder dfd (owned), sc->full[0..len). */
static int walk(struct scan *sc, int dfd, size_t len, int32_t label)
{
	dataset_t *ds = sc->ds;
	struct entries e = { 0 };
	struct stat st;
	struct dev_ino id;
	DIR *d;
	int rc = 0;

	if (fstat(dfd, &st) != 0) {
		rc = fatal(sc, -errno, "stat");
		close(dfd);
		return rc;
	}
	id.dev = st.st_dev;
	id.ino = st.st_ino;
	for (int i = 0; i < sc->depth; i++) {
		if (sc->stack[i].dev == id.dev && sc->stack[i].ino == id.ino) {
			log_warning("dataset '%s': skipping '%s': symlink loop",
				    ds->name, rel_of(sc));
			close(dfd);
			return 0;
		}
	}
	if (dirset_has(&sc->seen, &id)) {
		log_debug("dataset '%s': skipping '%s': folder already indexed "
			  "under another path", ds->name, rel_of(sc));
		close(dfd);
		return 0;
	}
	if (sc->depth >= SCAN_MAX_DEPTH) {
		ds_set_err(sc->err, sc->errlen, "dataset '%s': '%s': folders nested "
			   "deeper than %d", ds->name, sc->full, SCAN_MAX_DEPTH);
		close(dfd);
		return -ELOOP;
	}
	if (dirset_add(&sc->seen, &id) != 0) {
		close(dfd);
		return fatal(sc, -ENOMEM, "index");
	}
	d = fdopendir(dfd);
	if (!d) {
		rc = fatal(sc, -errno, "read");
		close(dfd);
		return rc;
	}
	rc = read_entries(d, &e);
	if (rc) {
		rc = fatal(sc, rc, "read");
		goto out_close;
	}
	sc->stack[sc->depth++] = id;
	for (size_t k = 0; k < e.n && rc == 0; k++) {
		const char *name = e.names + e.ent[k].off;
		size_t nl = strlen(name);

		if (len + 1 + nl + 1 > sizeof(sc->full)) {
			ds_set_err(sc->err, sc->errlen, "dataset '%s': path too long "
				   "under '%s'", ds->name, sc->full);
			rc = -ENAMETOOLONG;
			break;
		}
		sc->full[len] = '/';
		memcpy(sc->full + len + 1, name, nl + 1);
		rc = visit(sc, dirfd(d), name, e.ent[k].type, len + 1 + nl, label);
		sc->full[len] = '\0';
	}
	sc->depth--;
out_close:
	entries_free(&e);
	closedir(d);
	return rc;
}

/* The class folders: visible entries of the root that are folders, or
 * links to folders inside the root. Sorted already (read_entries). */
static bool is_class(struct scan *sc, int dfd, const char *name, unsigned char type)
{
	struct stat st;

	if (type == DT_DIR)
		return true;
	if (type == DT_UNKNOWN || type == DT_LNK) {
		if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
			return false;
		if (S_ISDIR(st.st_mode))
			return true;
		if (!S_ISLNK(st.st_mode))
			return false;
	} else {
		return false;
	}
	int fd = ds_open(sc->ds, name, O_PATH);
	if (fd < 0) {
		if (fd == -EXDEV)
			log_warning("dataset '%s': skipping '%s': symlink leads outside "
				    "the root (set follow_symlinks to allow)",
				    sc->ds->name, name);
		return false;
	}
	bool dir = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
	close(fd);
	return dir;
}

static int scan_classes(struct scan *sc, const struct entries *e, const bool *cls)
{
	dataset_t *ds = sc->ds;
	int32_t k = 0;
	int rc = 0;

	for (size_t j = 0; j < e->n && rc == 0; j++) {
		if (!cls[j])
			continue;
		const char *name = e->names + e->ent[j].off;
		size_t nl = strlen(name), first = ds->n;

		if (sc->rel_off + nl + 1 > sizeof(sc->full))
			continue; /* cannot be a usable class folder */
		rc = ds_push_name(ds, name, nl);
		if (rc)
			return fatal(sc, rc, "index");
		memcpy(sc->full + sc->rel_off, name, nl + 1);
		dirset_clear(&sc->seen);
		int cfd = ds_open(ds, name, O_RDONLY | O_DIRECTORY | O_NONBLOCK);
		rc = cfd < 0 ? skip_dir(sc, cfd) : walk(sc, cfd, sc->rel_off + nl, k);
		if (rc)
			break;
		if (ds->n == first)
			log_warning("dataset '%s': class '%s' has no image files under '%s'",
				    ds->name, name, ds->root);
		rc = ds_sort_range(ds, first);
		if (rc)
			return fatal(sc, rc, "index");
		k++;
	}
	return rc;
}

int ds_scan_root(dataset_t *ds, char *err, size_t errlen)
{
	struct entries e = { 0 };
	struct scan *sc;
	struct stat st;
	bool *cls = NULL;
	DIR *d = NULL;
	int rc = 0, fd;

	sc = calloc(1, sizeof(*sc));
	if (!sc) {
		ds_set_err(err, errlen, "dataset '%s': out of memory", ds->name);
		return -ENOMEM;
	}
	sc->ds = ds;
	sc->err = err;
	sc->errlen = errlen;
	sc->rel_off = (size_t)snprintf(sc->full, sizeof(sc->full), "%s%s", ds->root,
				       strcmp(ds->root, "/") == 0 ? "" : "/");
	if (sc->rel_off >= sizeof(sc->full)) {
		ds_set_err(err, errlen, "dataset '%s': root '%s': path too long",
			   ds->name, ds->root);
		rc = -ENAMETOOLONG;
		goto out_free;
	}
	/* a descriptor of its own: readdir moves the offset */
	fd = openat(ds->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) != 0 || !(d = fdopendir(fd))) {
		rc = -errno;
		if (fd >= 0)
			close(fd);
		ds_set_err(err, errlen, "dataset '%s': cannot open root '%s': %s",
			   ds->name, ds->root, strerror(-rc));
		goto out_free;
	}
	sc->stack[0].dev = st.st_dev;
	sc->stack[0].ino = st.st_ino;
	sc->depth = 1;

	rc = read_entries(d, &e);
	if (rc) {
		ds_set_err(err, errlen, "dataset '%s': cannot read root '%s': %s",
			   ds->name, ds->root, strerror(-rc));
		goto out_free;
	}
	cls = calloc(e.n ? e.n : 1, sizeof(*cls));
	if (!cls) {
		ds_set_err(err, errlen, "dataset '%s': out of memory", ds->name);
		rc = -ENOMEM;
		goto out_free;
	}
	for (size_t j = 0; j < e.n; j++)
		cls[j] = is_class(sc, dirfd(d), e.names + e.ent[j].off, e.ent[j].type);
	rc = scan_classes(sc, &e, cls);
	if (rc == 0 && ds->skipped_dirs)
		log_warning("dataset '%s': %u folder%s could not be read and %s "
			    "skipped: their files are not in the index", ds->name,
			    ds->skipped_dirs, ds->skipped_dirs == 1 ? "" : "s",
			    ds->skipped_dirs == 1 ? "was" : "were");

out_free:
	if (d)
		closedir(d);
	free(cls);
	entries_free(&e);
	dirset_free(&sc->seen);
	free(sc);
	return rc;
}
