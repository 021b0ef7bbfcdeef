/*
 * source.c — read one sample's bytes from its file or its shard (see
 * source.h). No state: called by the workers, each with its own decoder.
 */
#include "source.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>

#include "shards.h"

int source_read(const dataset_t *ds, uint32_t i, decoder_t *dec,
		const struct decode_limits *lim, const uint8_t **data,
		size_t *len, char *why, size_t whylen)
{
	const shards_t *sh = dataset_shards(ds);
	int rc;

	if (sh) {
		const uint32_t *segs;
		uint32_t n;

		rc = shards_read(sh, i, dec, lim ? lim->max_file_bytes : 0, data, len,
				 why, whylen);
		/* a packed JPEG: decode only the MCU rows a crop needs */
		if (rc == 0 && shards_segments(sh, i, &segs, &n) == 0 && n)
			decoder_set_segments(dec, segs, n);
		return rc;
	}
	/* opened relative to the dataset root: containment is checked at
	 * every open (dataset.h), not only when the index was built */
	rc = decode_read_fd(dec, dataset_open_sample(ds, i), NULL, lim, data, len);
	if (rc)
		snprintf(why, whylen, "%s", decoder_error(dec));
	return rc;
}
