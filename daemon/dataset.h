/*
 * dataset.h — the index of one dataset: every sample's path and class,
 * built once at start-up.
 *
 * Memory is proportional to the paths: all paths live in one arena of
 * NUL-terminated strings (relative to the root), plus one 64-bit offset and
 * one 32-bit label per sample. A million ImageNet files cost about the
 * length of their names plus 12 bytes each; no per-file struct.
 *
 * Two ways to describe a dataset:
 *   root only    one folder per class; class index = position of the folder
 *                name in byte-wise sorted order (torchvision ImageFolder);
 *                files are found recursively, *.jpg / *.jpeg / *.png /
 *                *.webp in any case, sorted by path within a class; other
 *                regular files are skipped: counted (dataset_skipped), the
 *                first 1000 named, a warning at start-up.
 *   manifest     a text file of "path<TAB>class" lines, paths relative to
 *                root, in file order. If every class field is a decimal
 *                integer they are class indices (num_classes = max + 1);
 *                otherwise they are names, indexed in sorted order.
 *                Blank lines and lines starting with '#' are skipped.
 * A third, `shards` (shards.h): WebDataset tar files read in place.
 * Paths may not escape the root: no absolute paths, no "..", and (unless
 * follow_symlinks) no symbolic link that leaves it, nor any absolute link.
 * That rule is applied at every open (beneath.h), not only while the index
 * is built: a file or folder replaced by a link to outside the root after
 * start is refused when a sample is read.
 *
 * A scan follows links that stay inside the root (any link with
 * follow_symlinks). Within one class, each real folder (device, inode) is
 * walked once, under the first path a depth-first walk meets it by (the
 * entries of each folder visited in byte-wise order of their names): a
 * loop or a tree of links cannot multiply the index. A file is indexed
 * once per path that leads to it through distinct folders or file links.
 * A folder the scan cannot read (permissions, vanished) is skipped with a
 * warning and counted (dataset_skipped_dirs()); other errors (out of
 * memory or file descriptors, I/O) fail the build.
 *
 * The digest covers the class names, every path and label, and per file
 * its size and modification time (nanoseconds), or with digest_contents
 * a SHA-256 of its bytes read while the index is built.
 */
#ifndef CUTMIXD_DATASET_H
#define CUTMIXD_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

typedef struct dataset dataset_t;

/* Returns 0 and *out, or -errno with a message in err naming the file
 * (and line, for a manifest). An empty dataset is an error (-ENOENT). */
int dataset_open(const struct dataset_cfg *cfg, dataset_t **out,
		 char *err, size_t errlen);
void dataset_destroy(dataset_t **ds);

uint32_t dataset_size(const dataset_t *ds);
uint32_t dataset_num_classes(const dataset_t *ds);
const char *dataset_class_name(const dataset_t *ds, uint32_t k);
/* Path relative to the root. */
const char *dataset_path(const dataset_t *ds, uint32_t i);
int32_t dataset_label(const dataset_t *ds, uint32_t i);
/* Full path root/path into buf; returns buf, or NULL if it does not fit. */
char *dataset_full_path(const dataset_t *ds, uint32_t i, char *buf, size_t len);
const char *dataset_root(const dataset_t *ds);
/* Open sample i for reading, relative to the root under the containment
 * rules, with O_NONBLOCK (a FIFO cannot block): fd or -errno (-EXDEV:
 * leaves the root; beneath_strerror() words it). */
int dataset_open_file(const dataset_t *ds, const char *rel, int flags);
int dataset_open_sample(const dataset_t *ds, uint32_t i);
/* Folders a scan skipped because it could not read them. */
uint32_t dataset_skipped_dirs(const dataset_t *ds);
/* How many classes have at least one sample. */
uint32_t dataset_used_classes(const dataset_t *ds);
/* Feed the dataset's digest (class names, paths, labels, file stamps; not
 * the root) to a SHA-256. */
struct sha256;
void dataset_digest(const dataset_t *ds, struct sha256 *s);
/* Bytes the index holds (struct, root, arenas, arrays), for tests and
 * start-up logging. */
size_t dataset_memory(const dataset_t *ds);
/* Regular files a folder scan skipped (not an image extension it
 * indexes), and the path of the i-th of the first 1000 (NULL past them). */
uint64_t dataset_skipped(const dataset_t *ds);

/* For index builders of other sources (shards.c, pack.c): append a sample
 * (name relative to the source, label, and a two-word stamp the digest
 * covers: e.g. the shard's size and mtime) or a class name; 0 or -ENOMEM /
 * -E2BIG. dataset_add_skipped counts samples a builder left out. */
int dataset_push_sample(dataset_t *ds, const char *name, size_t len, int32_t label,
			uint64_t stamp_a, uint64_t stamp_b);
int dataset_push_class(dataset_t *ds, const char *name, size_t len);
void dataset_add_skipped(dataset_t *ds, uint64_t n);
/* The shard index of a [dataset] shards = ... dataset, else NULL (its
 * dataset_path is "KEY.EXT"; dataset_full_path gives NULL and
 * dataset_open_sample -EINVAL: read it with source_read()). */
struct shards;
const struct shards *dataset_shards(const dataset_t *ds);
const char *dataset_skipped_path(const dataset_t *ds, uint32_t i);

#endif
