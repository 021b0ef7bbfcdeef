/*
 * dataset.c — one dataset's index: the arenas, the public calls, the
 * digest and the opening of files under the root (the rules are in
 * dataset.h; the folder walk is dataset_scan.c, manifests
 * dataset_manifest.c).
 *
 * Layout: `paths` is one arena of NUL-terminated paths relative to the root,
 * `offs[i]` the offset of sample i's path in it and `labels[i]` its class;
 * `names` / `name_offs` hold the class names the same way. The arrays grow
 * by doubling while the index is built and are trimmed to size at the end,
 * so a finished index costs the path bytes plus 12 bytes per sample. The
 * per-file stamps (size and mtime, or a content hash) live only while the
 * index is built: they go into the digest, computed once at the end.
 *
 * Containment: the root is opened once (root_fd) and every later open,
 * while indexing and for every sample served, resolves its path relative
 * to that descriptor with beneath_open(): unless follow_symlinks, nothing
 * may leave the root, whatever was swapped in after the index was built.
 */
#include "dataset_int.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "beneath.h"
#include "log.h"
#include "pack.h"
#include "shards.h"

void ds_set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ---- arenas ------------------------------------------------------------ */

void *ds_grow(void *p, size_t *cap, size_t need, size_t elem)
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

int ds_grow_in(void **pp, size_t *cap, size_t need, size_t elem)
{
	void *np = ds_grow(*pp, cap, need, elem);

	if (!np)
		return -ENOMEM;
	*pp = np;
	return 0;
}

int ds_push_path(dataset_t *ds, const char *rel, size_t len, int32_t label,
		 const struct stamp *st)
{
	if (ds->n >= DATASET_MAX_SAMPLES)
		return -E2BIG;
	if (ds_grow_in((void **)&ds->paths, &ds->paths_cap, ds->paths_len + len + 1, 1) ||
	    ds_grow_in((void **)&ds->offs, &ds->offs_cap, ds->n + 1, sizeof(*ds->offs)) ||
	    ds_grow_in((void **)&ds->labels, &ds->labels_cap, ds->n + 1,
		       sizeof(*ds->labels)) ||
	    ds_grow_in((void **)&ds->stamps, &ds->stamps_cap, ds->n + 1,
		       sizeof(*ds->stamps)))
		return -ENOMEM;

	memcpy(ds->paths + ds->paths_len, rel, len);
	ds->paths[ds->paths_len + len] = '\0';
	ds->offs[ds->n] = ds->paths_len;
	ds->labels[ds->n] = label;
	ds->stamps[ds->n] = *st;
	ds->paths_len += len + 1;
	ds->n++;
	return 0;
}

int ds_push_name(dataset_t *ds, const char *name, size_t len)
{
	if (ds_grow_in((void **)&ds->names, &ds->names_cap, ds->names_len + len + 1, 1) ||
	    ds_grow_in((void **)&ds->name_offs, &ds->classes_cap, ds->num_classes + 1,
		       sizeof(*ds->name_offs)))
		return -ENOMEM;
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

struct sort_item {
	uint64_t off;
	struct stamp st;
};

static int cmp_item(const void *a, const void *b, void *arena)
{
	const char *p = arena;

	return strcmp(p + ((const struct sort_item *)a)->off,
		      p + ((const struct sort_item *)b)->off);
}

int ds_sort_range(dataset_t *ds, size_t first)
{
	size_t n = ds->n - first;
	struct sort_item *it;

	if (n < 2)
		return 0;
	it = malloc(n * sizeof(*it));
	if (!it)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		it[i].off = ds->offs[first + i];
		it[i].st = ds->stamps[first + i];
	}
	qsort_r(it, n, sizeof(*it), cmp_item, ds->paths);
	for (size_t i = 0; i < n; i++) {
		ds->offs[first + i] = it[i].off;
		ds->stamps[first + i] = it[i].st;
	}
	free(it);
	return 0;
}

/* ---- files under the root ---------------------------------------------- */

int ds_open(const dataset_t *ds, const char *rel, int flags)
{
	return beneath_open(ds->root_fd, rel, flags, ds->follow_symlinks);
}

int ds_stamp_fd(const dataset_t *ds, int fd, const struct stat *st,
		struct stamp *out)
{
	if (!S_ISREG(st->st_mode)) {
		out->a = STAMP_NONE;
		out->b = (uint64_t)(st->st_mode & S_IFMT);
		return 0;
	}
	if (!ds->digest_contents) {
		out->a = (uint64_t)st->st_size;
		out->b = (uint64_t)st->st_mtim.tv_sec * 1000000000u +
			 (uint64_t)st->st_mtim.tv_nsec;
		return 0;
	}

	enum { CHUNK = 1 << 16 };
	uint8_t h[DIGEST_SIZE], *buf = malloc(CHUNK);
	sha256_t s;
	int rc = 0;

	if (!buf)
		return -ENOMEM;
	sha256_init(&s);
	for (;;) {
		ssize_t r = read(fd, buf, CHUNK);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = r < 0 ? -errno : 0;
			break;
		}
		sha256_update(&s, buf, (size_t)r);
	}
	free(buf);
	if (rc)
		return rc;
	sha256_final(&s, h);
	memcpy(&out->a, h, 8);
	memcpy(&out->b, h + 8, 8);
	return 0;
}

int ds_read_all(const char *path, char **out, size_t *outlen)
{
	struct stat st;
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int fd, rc = 0;

	/* O_NONBLOCK: opening a FIFO with no writer must not hang start-up
	 * or a reload; it is refused just below. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
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
	if (!S_ISREG(st.st_mode)) {
		rc = -EINVAL; /* "not a regular file", says the caller */
		goto out_close;
	}
	cap = st.st_size > 0 ? (size_t)st.st_size + 1 : 4096;
	buf = malloc(cap);
	if (!buf) {
		rc = -ENOMEM;
		goto out_close;
	}
	for (;;) {
		if (len + 1 >= cap) {
			void *np = ds_grow(buf, &cap, cap + 1, 1);
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

static int open_root(dataset_t *ds, char *err, size_t errlen)
{
	struct stat st;
	int rc;

	/* The root itself may be a link (followed): containment is about
	 * what lies below it. */
	ds->root_fd = open(ds->root, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (ds->root_fd < 0 || fstat(ds->root_fd, &st) != 0) {
		rc = -errno;
		ds_set_err(err, errlen, "dataset '%s': cannot open root '%s': %s",
			   ds->name, ds->root, strerror(errno));
		return rc;
	}
	if (!S_ISDIR(st.st_mode)) {
		ds_set_err(err, errlen, "dataset '%s': root '%s' is not a directory",
			   ds->name, ds->root);
		return -ENOTDIR;
	}
	return 0;
}

/* ---- digest ------------------------------------------------------------ */

static void put_u32(sha256_t *s, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16),
			 (uint8_t)(v >> 24) };

	sha256_update(s, b, sizeof(b));
}

static void put_u64(sha256_t *s, uint64_t v)
{
	put_u32(s, (uint32_t)v);
	put_u32(s, (uint32_t)(v >> 32));
}

/*
 * A tag for what the stamps mean, the class count, each class name with
 * its NUL, the sample count, then each path with its NUL, its label and
 * its stamp (little-endian). The root is left out: moving a dataset does
 * not change what it yields.
 */
static void compute_digest(dataset_t *ds)
{
	sha256_t s;

	sha256_init(&s);
	sha256_update(&s, ds->digest_contents ? "contents\n" : "size+mtime\n",
		      ds->digest_contents ? 9 : 11);
	put_u32(&s, (uint32_t)ds->num_classes);
	for (size_t k = 0; k < ds->num_classes; k++) {
		const char *name = ds->names + ds->name_offs[k];
		sha256_update(&s, name, strlen(name) + 1);
	}
	put_u32(&s, (uint32_t)ds->n);
	for (size_t i = 0; i < ds->n; i++) {
		const char *p = ds->paths + ds->offs[i];
		sha256_update(&s, p, strlen(p) + 1);
		put_u32(&s, (uint32_t)ds->labels[i]);
		put_u64(&s, ds->stamps[i].a);
		put_u64(&s, ds->stamps[i].b);
	}
	sha256_final(&s, ds->digest);
}

/* ---- public ------------------------------------------------------------ */

/* Tar shards or a pack: their own index (shards.h, pack.h). */
static int load_indexed(dataset_t *ds, const struct dataset_cfg *cfg,
			char *err, size_t errlen)
{
	int rc = cfg->pack ? pack_load(cfg, ds, &ds->shards, err, errlen) :
			     shards_load(cfg, ds, &ds->shards, err, errlen);

	if (rc == 0 && ds->n == 0) {
		ds_set_err(err, errlen, "dataset '%s': no samples in '%s'",
			   ds->name, ds->root);
		rc = -ENOENT;
	}
	return rc;
}

/* A directory tree: scanned, or listed by a manifest. */
static int load_tree(dataset_t *ds, const struct dataset_cfg *cfg,
		     char *err, size_t errlen)
{
	int rc = open_root(ds, err, errlen);

	if (rc)
		return rc;
	if (cfg->manifest)
		rc = ds_load_manifest(ds, cfg->manifest, err, errlen);
	else
		rc = ds_scan_root(ds, err, errlen);
	if (rc)
		return rc;
	if (ds->n == 0) {
		ds_set_err(err, errlen, "dataset '%s': no image files (.jpg .jpeg .png "
			   ".webp) under %s", ds->name, ds->root);
		return -ENOENT;
	}
	if (ds->skipped)
		log_warning("dataset '%s': skipped %" PRIu64 " files that are not "
			    ".jpg/.jpeg/.png/.webp (first: '%s'; --check lists them)%s",
			    ds->name, ds->skipped, ds->skip_paths ? ds->skip_paths : "?",
			    ds->skipped_tv ? "; some are .bmp/.ppm/.pgm/.tif, which "
			    "torchvision's ImageFolder would load" : "");
	return 0;
}

int dataset_open(const struct dataset_cfg *cfg, dataset_t **out,
		 char *err, size_t errlen)
{
	dataset_t *ds;
	size_t rl;
	int rc;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!cfg || ((!cfg->root || !*cfg->root) && !(cfg->shards && *cfg->shards) &&
		     !(cfg->pack && *cfg->pack))) {
		ds_set_err(err, errlen, "dataset '%s': no root given",
			   cfg && cfg->name[0] ? cfg->name : "default");
		return -EINVAL;
	}
	ds = calloc(1, sizeof(*ds));
	if (!ds) {
		ds_set_err(err, errlen, "dataset: out of memory");
		return -ENOMEM;
	}
	ds->root_fd = -1;
	snprintf(ds->name, sizeof(ds->name), "%s", cfg->name[0] ? cfg->name : "default");
	ds->follow_symlinks = cfg->follow_symlinks;
	ds->digest_contents = cfg->digest_contents;
	ds->root = strdup(cfg->pack ? cfg->pack : cfg->shards ? cfg->shards : cfg->root);
	if (!ds->root) {
		ds_set_err(err, errlen, "dataset '%s': out of memory", ds->name);
		rc = -ENOMEM;
		goto out_destroy;
	}
	rl = strlen(ds->root);
	while (rl > 1 && ds->root[rl - 1] == '/')
		ds->root[--rl] = '\0';

	rc = cfg->shards || cfg->pack ? load_indexed(ds, cfg, err, errlen) :
					load_tree(ds, cfg, err, errlen);
	if (rc)
		goto out_destroy;
	compute_digest(ds);
	free(ds->stamps);
	ds->stamps = NULL;
	ds->stamps_cap = 0;
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
	if (ds->root_fd >= 0)
		close(ds->root_fd);
	free(ds->root);
	free(ds->paths);
	free(ds->offs);
	free(ds->labels);
	free(ds->stamps);
	free(ds->names);
	free(ds->name_offs);
	free(ds->skip_paths);
	shards_destroy(&ds->shards);
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

/* Separator between root and a relative path: none when root is "/". */
static const char *root_sep(const dataset_t *ds)
{
	return strcmp(ds->root, "/") == 0 ? "" : "/";
}

char *dataset_full_path(const dataset_t *ds, uint32_t i, char *buf, size_t len)
{
	const char *rel = dataset_path(ds, i);

	if (!rel || !buf || len == 0 || ds->shards)
		return NULL;
	int n = snprintf(buf, len, "%s%s%s", ds->root, root_sep(ds), rel);
	if (n < 0 || (size_t)n >= len)
		return NULL;
	return buf;
}

int dataset_open_file(const dataset_t *ds, const char *rel, int flags)
{
	if (!ds || !rel)
		return -EINVAL;
	return ds_open(ds, rel, flags);
}

int dataset_open_sample(const dataset_t *ds, uint32_t i)
{
	const char *rel = dataset_path(ds, i);

	if (!rel || ds->shards)
		return -EINVAL;
	/* O_NONBLOCK: a FIFO or device swapped in must not block a worker
	 * in open(); the reader refuses anything but a regular file. */
	return ds_open(ds, rel, O_RDONLY | O_NONBLOCK | O_NOCTTY);
}

const char *dataset_root(const dataset_t *ds)
{
	return ds ? ds->root : NULL;
}

uint32_t dataset_skipped_dirs(const dataset_t *ds)
{
	return ds ? ds->skipped_dirs : 0;
}

uint32_t dataset_used_classes(const dataset_t *ds)
{
	uint8_t *seen;
	uint32_t used = 0;

	if (!ds || ds->num_classes == 0)
		return 0;
	seen = calloc(ds->num_classes, 1);
	if (!seen)
		return (uint32_t)ds->num_classes; /* no warning rather than a wrong one */
	for (size_t i = 0; i < ds->n; i++) {
		if (!seen[ds->labels[i]]) {
			seen[ds->labels[i]] = 1;
			used++;
		}
	}
	free(seen);
	return used;
}

size_t dataset_memory(const dataset_t *ds)
{
	if (!ds)
		return 0;
	return sizeof(*ds) + strlen(ds->root) + 1 +
	       ds->paths_cap + ds->offs_cap * sizeof(*ds->offs) +
	       ds->labels_cap * sizeof(*ds->labels) +
	       ds->names_cap + ds->classes_cap * sizeof(*ds->name_offs) +
	       ds->skip_cap + shards_memory(ds->shards);
}

static bool has_tv_only_ext(const char *name, size_t len)
{
	static const char *const exts[] = { ".ppm", ".bmp", ".pgm", ".tif", ".tiff" };

	for (int i = 0; i < 5; i++) {
		size_t el = strlen(exts[i]);
		if (len > el && strcasecmp(name + len - el, exts[i]) == 0)
			return true;
	}
	return false;
}

void ds_note_skipped(dataset_t *ds, const char *rel)
{
	size_t len = strlen(rel);

	ds->skipped++;
	if (has_tv_only_ext(rel, len))
		ds->skipped_tv++;
	if (ds->skip_listed >= SKIPPED_LISTED)
		return;
	void *np = ds_grow(ds->skip_paths, &ds->skip_cap, ds->skip_len + len + 1, 1);
	if (!np)
		return; /* still counted */
	ds->skip_paths = np;
	memcpy(ds->skip_paths + ds->skip_len, rel, len + 1);
	ds->skip_len += len + 1;
	ds->skip_listed++;
}

int dataset_push_sample(dataset_t *ds, const char *name, size_t len, int32_t label,
			uint64_t stamp_a, uint64_t stamp_b)
{
	struct stamp st = { stamp_a, stamp_b };

	return ds_push_path(ds, name, len, label, &st);
}

int dataset_push_class(dataset_t *ds, const char *name, size_t len)
{
	return ds_push_name(ds, name, len);
}

void dataset_add_skipped(dataset_t *ds, uint64_t n)
{
	ds->skipped += n;
}

const struct shards *dataset_shards(const dataset_t *ds)
{
	return ds ? ds->shards : NULL;
}

uint64_t dataset_skipped(const dataset_t *ds)
{
	return ds ? ds->skipped : 0;
}

const char *dataset_skipped_path(const dataset_t *ds, uint32_t i)
{
	const char *p;

	if (!ds || i >= ds->skip_listed)
		return NULL;
	p = ds->skip_paths;
	while (i--)
		p += strlen(p) + 1;
	return p;
}

void dataset_digest(const dataset_t *ds, struct sha256 *s)
{
	if (!ds || !s)
		return;
	sha256_update(s, ds->digest, sizeof(ds->digest));
}
