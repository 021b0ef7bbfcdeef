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
 *                files are found recursively, *.jpg / *.jpeg in any case,
 *                sorted by path within a class; other files are ignored.
 *   manifest     a text file of "path<TAB>class" lines, paths relative to
 *                root, in file order. If every class field is a decimal
 *                integer they are class indices (num_classes = max + 1);
 *                otherwise they are names, indexed in sorted order.
 *                Blank lines and lines starting with '#' are skipped.
 * Paths may not escape the root: no absolute paths, no "..", and (unless
 * follow_symlinks) no symbolic links that resolve outside it.
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
/* Feed every (path, label) and the class names to a SHA-256. */
struct sha256;
void dataset_digest(const dataset_t *ds, struct sha256 *s);
/* Bytes the index holds (struct, root, arenas, arrays), for tests and
 * start-up logging. */
size_t dataset_memory(const dataset_t *ds);

#endif
