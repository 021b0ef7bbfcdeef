/*
 * source.h — the bytes of one dataset sample, whatever holds them: a file
 * under the root (decode_read_file) or a member of a tar shard (one pread,
 * shards.h). The bytes land in the decoder's input buffer, ready for
 * decoder_open().
 */
#ifndef CUTMIXD_SOURCE_H
#define CUTMIXD_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "dataset.h"
#include "decode.h"

/* 0, or -errno with "what failed: why" in why. */
int source_read(const dataset_t *ds, uint32_t i, decoder_t *dec,
		const struct decode_limits *lim, const uint8_t **data,
		size_t *len, char *why, size_t whylen);

#endif
