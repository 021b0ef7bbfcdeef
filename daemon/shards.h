/*
 * shards.h — WebDataset tar shards read in place: an offset index of every
 * sample, built once by reading tar headers (no decompression, no image
 * bytes), cached per shard, and one pread per image.
 *
 * [dataset] shards = /data/train-{000000..000146}.tar
 *   The pattern expands brace ranges ({000..146}: zero-padded to the width
 *   of the first number, in order; several braces multiply), brace lists
 *   ({a,b}) and then globs (*, ?, [..]: matches sorted byte-wise). Every
 *   expanded name that is not a glob must exist; a glob must match.
 *
 * Members are grouped as WebDataset groups them: the key of "dir/abc.seg.jpg"
 * is "dir/abc" (up to the first dot of the last component), its extension
 * "seg.jpg" (lower-cased); consecutive members with the same key form one
 * sample. A sample is KEY.jpg / .jpeg / .png / .webp (the first present in
 * that order) plus KEY.cls, the class index as decimal text. Other
 * extensions (.json, .txt, ...) are ignored.
 *
 * Sample order: shards in the order of the expanded pattern, samples in the
 * order their first member appears in the tar. So a tar written from an
 * ImageFolder in its order (classes sorted, paths sorted within a class)
 * yields the same sample indices, hence the same batches, as the folder.
 *
 * Class names: [dataset] class_names = FILE, else classes.txt in the first
 * shard's folder, one name per line (line k names class k); without either,
 * classes are "0".."max". A class index beyond the names is a skipped sample.
 *
 * Counted and skipped (a warning per shard names the first of each, the
 * total is dataset_skipped()): members that are not regular files (symlinks,
 * hard links, devices: never followed), samples without an image, without a
 * class or with an unreadable one, duplicate members within a sample (the
 * first is kept), a key seen before in the same shard (the later sample is
 * dropped). A header with a bad checksum, a member running past the end of
 * the file, or a pax/GNU long-name record that does not parse ends the
 * shard there with a warning (what came before is kept). Compressed shards
 * (.tar.gz, .tgz, gzip/bzip2/xz/zstd magic) are refused at start-up: they
 * cannot be read at an offset.
 *
 * Index cache: per shard, "SHARD.cutmixd-idx" next to it, or
 * index_cache/HASH.cutmixd-idx (HASH = SHA-256 of the shard's real path)
 * when index_cache is set. It is used when the shard's size and mtime are
 * those it recorded, else rebuilt. Failing to write it is logged, not an
 * error. At read time a shard whose size or mtime changed is an error for
 * that sample (replaced like any bad file): SIGHUP re-indexes.
 */
#ifndef CUTMIXD_SHARDS_H
#define CUTMIXD_SHARDS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct dataset;
typedef struct shards shards_t;

/*
 * Index the shards of cfg->shards into ds (through dataset_push_sample /
 * dataset_push_class / dataset_add_skipped) and return the per-sample
 * locations in *out. 0, or -errno with a message in err.
 */
int shards_load(const struct dataset_cfg *cfg, struct dataset *ds,
		shards_t **out, char *err, size_t errlen);
void shards_destroy(shards_t **s);

/* Where sample i lives: the shard's path, the image's offset and size. */
int shards_locate(const shards_t *s, uint32_t i, const char **path,
		  uint64_t *off, uint64_t *size);

/*
 * Read sample i's image with one pread into the decoder's input buffer
 * (decoder_input_buffer: valid until the next read on dec).
 * max_file_bytes (0: none) applies to the member. 0 or -errno with a
 * message in why.
 */
struct decoder;
int shards_read(const shards_t *s, uint32_t i, struct decoder *dec,
		uint64_t max_file_bytes, const uint8_t **data, size_t *len,
		char *why, size_t whylen);

/* A location table filled by another index (pack.c): the shard files
 * (stat'ed now: their size and mtime are checked at every read), then one
 * shards_table_add per sample, in sample order. */
shards_t *shards_table_new(const char *const *paths, size_t n, char *err, size_t errlen);
uint64_t shards_table_size(const shards_t *s, uint32_t shard);
int shards_table_add(shards_t *s, uint32_t shard, uint64_t off, uint64_t size);

/* Restart-segment offsets per sample (pack.h), ownership moves in: segs
 * (all samples' offsets), first[n] and count[n]. */
void shards_table_set_segments(shards_t *s, uint32_t **segs, uint64_t **first, uint32_t **n);
int shards_segments(const shards_t *s, uint32_t i, const uint32_t **segs, uint32_t *n);

uint32_t shards_count(const shards_t *s);
size_t shards_memory(const shards_t *s);

/* Expand a shard pattern (exposed for the tests): the names, in order, as
 * one arena of NUL-terminated strings; *n of them. 0 or -errno + err. */
int shards_expand(const char *pattern, char **names, size_t *n,
		  char *err, size_t errlen);

#endif
