/*
 * sampler.h — which dataset indices make up batch k of epoch e for
 * rank r of world w.
 *
 * Epoch order: identity (shuffle off) or a Fisher–Yates permutation from a
 * stream keyed on (seed, pipeline, epoch) only, so every rank agrees on it.
 * Sharding (as torch's DistributedSampler): rank r takes positions
 * r, r+w, r+2w, ... of the epoch order, so shards are disjoint.
 *   drop_last = false: the order is padded by wrapping around to
 *       ceil(N/w)*w so every shard has the same length; the added
 *       duplicates are flagged (`pad`) in the metadata; the last batch of a
 *       shard may be short.
 *   drop_last = true: the order is cut to floor(N/w)*w, and each shard's
 *       tail that does not fill a whole batch is dropped.
 * Every sample appears exactly once per epoch across all shards (apart from
 * flagged pads, or the dropped tail with drop_last).
 *
 * Repeated augmentation (repeats = K > 1, timm RepeatAugSampler / DeiT
 * RASampler): the epoch order is stretched to K*N entries, each index K
 * times in a row ([a,a,a,b,b,b,...]); rank r takes entries r, r+w, ... of
 * it (wrapping past K*N, flagged as pads), and only the first shard-size
 * of them: the epoch length per rank stays what it is without repeats, so
 * an epoch covers about N/K distinct indices, each K times, its copies on
 * consecutive ranks (different ranks when K <= w).
 */
#ifndef CUTMIXD_SAMPLER_H
#define CUTMIXD_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

typedef struct sampler sampler_t;

struct sampler_params {
	uint32_t n;          /* dataset size, > 0 */
	uint32_t batch_size; /* > 0 */
	bool shuffle;
	bool drop_last;
	uint64_t key;        /* rng_key(seed, pipeline, 0, 0) */
	uint32_t repeats;    /* aug_repeats: 0 or 1 = off */
};

/* Caches the permutation of the most recently used epochs (thread safe). */
sampler_t *sampler_new(const struct sampler_params *p);
void sampler_destroy(sampler_t **s);

/* Samples per shard, and batches per epoch for a shard (0 if none). */
uint32_t sampler_shard_size(const sampler_t *s, uint32_t world);
uint32_t sampler_batches(const sampler_t *s, uint32_t world);

/*
 * Fill idx[0..count) (and pad[], 1 = wrapped duplicate; may be NULL) for
 * batch `batch`. Returns the count (<= batch_size), or -EINVAL when
 * rank >= world or batch >= sampler_batches(), -ENOMEM.
 */
int sampler_batch(sampler_t *s, uint32_t epoch, uint32_t rank, uint32_t world,
		  uint32_t batch, uint32_t *idx, uint8_t *pad);

#endif
