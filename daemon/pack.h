/*
 * pack.h — the pack format: a dataset rewritten by `cutmixd pack` into a
 * few large files plus one index, read by the daemon with one pread per
 * image ([dataset] pack = DIR/index.cmxpack).
 *
 * DIR/pack-00000.bin ...   image bytes back to back, a new file when the
 *                          next image would pass --shard-bytes (1 GiB);
 * DIR/index.cmxpack        the index (little-endian):
 *   header  "CMXPACK1", u32 version (1), u32 n_shards, u64 n_samples,
 *           u32 n_classes, u32 flags (0), u64 names_bytes,
 *           u64 class_bytes, u64 n_segments
 *   shards  n_shards x u64 size (checked against the files at start-up)
 *   samples n_samples x { u32 shard, u32 kind, u64 offset, u32 size,
 *           i32 label, u64 name_offset, u64 first_segment, u32 n_segments,
 *           u32 src_size }
 *   names   NUL-terminated original names (dataset paths), one per sample
 *   classes NUL-terminated class names, n_classes of them
 *   segments n_segments x u32: for a transcoded JPEG, the offset (from the
 *           image's first byte) where each restart interval's
 *           entropy-coded segment starts (the first right after SOS).
 *
 * kind: 1 JPEG transcoded losslessly (DCT coefficients unchanged as
 * jpegtran does, optimized Huffman tables, baseline, restart intervals of
 * about 64 px that tile each MCU row (one per row when the MCUs per row
 * have no such divisor), metadata markers dropped), checked by
 * decoding both files and comparing every pixel; 2 stored as is (PNG,
 * WebP, CMYK JPEG, or a JPEG whose transcode did not decode identically);
 * 3 unreadable in the source (size 0: the daemon replaces it like the
 * unreadable file it was, at the same index).
 * Samples keep the source dataset's order, names, labels and classes, so a
 * pack serves byte-identical batches to its source. The daemon decodes a
 * crop of a transcoded JPEG from its needed MCU rows only (splice.h).
 */
#ifndef CUTMIXD_PACK_H
#define CUTMIXD_PACK_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct dataset;
struct shards;

enum pack_kind { PACK_TRANSCODED = 1, PACK_AS_IS = 2, PACK_UNREADABLE = 3 };

/* Load DIR/index.cmxpack into ds and a location table; 0 or -errno + err. */
int pack_load(const struct dataset_cfg *cfg, struct dataset *ds,
	      struct shards **out, char *err, size_t errlen);

/* `cutmixd pack -c CONFIG [--dataset NAME] [--shard-bytes N] OUTDIR`:
 * exit status (0 ok, 64 usage, 78 config/dataset, 1 failure). */
int pack_main(int argc, char **argv);
extern const char pack_usage_text[];

/* The transcode and the segment table: splice.h. */

#endif
