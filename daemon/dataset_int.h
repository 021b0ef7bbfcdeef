/*
 * dataset_int.h — what dataset.c (arenas, public calls, digest),
 * dataset_scan.c (the folder walk) and dataset_manifest.c (manifests)
 * share. Not for use outside those three files.
 */
#ifndef CUTMIXD_DATASET_INT_H
#define CUTMIXD_DATASET_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "config.h"
#include "dataset.h"
#include "digest.h"

#define DATASET_MAX_SAMPLES  0x80000000u /* 2^31: what the sampler handles */
#define DATASET_MAX_INT_CLASS 1048575u   /* integer classes: 0..2^20-1 */

/*
 * What the digest knows of one file besides its path: size and mtime in
 * nanoseconds, or (digest_contents) the first 128 bits of the SHA-256 of
 * its bytes. A file that could not be looked at is {STAMP_NONE, errno}
 * or, not a regular file, {STAMP_NONE, file type bits}.
 */
struct stamp {
	uint64_t a, b;
};
#define STAMP_NONE UINT64_MAX

struct dataset {
	char name[CONFIG_NAME_MAX];
	char *root;         /* as configured, trailing '/' trimmed */
	int root_fd;        /* the root folder, opened once (O_RDONLY) */
	bool follow_symlinks;
	bool digest_contents;

	char *paths;        /* arena of NUL-terminated relative paths */
	size_t paths_len, paths_cap;
	uint64_t *offs;     /* [n] offset of each path in `paths` */
	int32_t *labels;    /* [n] */
	size_t n, offs_cap, labels_cap;
	struct stamp *stamps; /* [n] while the index is built, then freed */
	size_t stamps_cap;

	char *names;        /* arena of NUL-terminated class names */
	size_t names_len, names_cap;
	uint64_t *name_offs; /* [num_classes] */
	size_t num_classes, classes_cap;

	uint32_t skipped_dirs; /* folders a scan could not read */

	/* regular files a scan did not index: all counted, the first
	 * SKIPPED_LISTED named (arena of NUL-terminated relative paths);
	 * also the samples a shard index left out */
	uint64_t skipped, skipped_tv;  /* _tv: torchvision would load them */
	char *skip_paths;
	size_t skip_len, skip_cap;
	uint32_t skip_listed;

	struct shards *shards; /* shards or pack: where each sample's bytes are */
	uint8_t digest[DIGEST_SIZE];
};

void ds_set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Room for `need` elements of `elem` bytes (doubling); NULL when out of
 * memory, the old block and *cap untouched. */
void *ds_grow(void *p, size_t *cap, size_t need, size_t elem);
/* ds_grow() in place: *pp grown (contents kept) or left as it was. 0 or
 * -ENOMEM. */
int ds_grow_in(void **pp, size_t *cap, size_t need, size_t elem);
/* Append a sample (path, label, stamp): 0, -E2BIG (2^31) or -ENOMEM. */
int ds_push_path(dataset_t *ds, const char *rel, size_t len, int32_t label,
		 const struct stamp *st);
int ds_push_name(dataset_t *ds, const char *name, size_t len);
/* Stamp of the file open on fd (st: its fstat); reads the whole file with
 * digest_contents. 0 or -errno of read(). */
int ds_stamp_fd(const dataset_t *ds, int fd, const struct stat *st,
		struct stamp *out);
/* Sort samples [first, ds->n) by path, keeping stamps with their paths. */
int ds_sort_range(dataset_t *ds, size_t first);
/* Open a file or folder of the dataset relative to the root under the
 * containment rules (beneath.h): fd or -errno. */
int ds_open(const dataset_t *ds, const char *rel, int flags);

/* A regular file under a class folder that is not an image the scan
 * indexes: counted, and named while fewer than SKIPPED_LISTED are. */
#define SKIPPED_LISTED 1000
void ds_note_skipped(dataset_t *ds, const char *rel);

int ds_scan_root(dataset_t *ds, char *err, size_t errlen);
int ds_load_manifest(dataset_t *ds, const char *file, char *err, size_t errlen);

/* Read a whole regular file (the manifest): O_NONBLOCK, so that a FIFO
 * is refused (-EINVAL: not a regular file) instead of blocking. */
int ds_read_all(const char *path, char **out, size_t *outlen);

#endif
