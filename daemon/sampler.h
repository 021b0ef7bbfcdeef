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

/*
 * The permutation cache: as many epoch permutations (n * 4 bytes each) as
 * fit in SAMPLER_CACHE_BYTES, at least 2 and at most SAMPLER_CACHE_MAX,
 * least recently used evicted. A 4M-sample dataset (16 MiB a permutation)
 * keeps 4 epochs; 8M samples or more keep 2 (2 * n * 4 bytes).
 */
#define SAMPLER_CACHE_BYTES (64u << 20)
#define SAMPLER_CACHE_MAX 8

/* Slots the cache of a sampler over n samples has. */
uint32_t sampler_cache_slots(uint32_t n);

/*
 * Caches the permutation of the most recently used epochs (thread safe).
 * A missing one is computed by the first caller that needs it; concurrent
 * callers on that epoch wait for it (they do not compute it again), and
 * callers on cached epochs are not held up. sampler_batch can therefore
 * take as long as one shuffle of n entries: call it on a worker thread,
 * not on a thread that serves requests.
 */
sampler_t *sampler_new(const struct sampler_params *p);
void sampler_destroy(sampler_t **s);

/* Samples per shard, and batches per epoch for a shard (0 if none). */
uint32_t sampler_shard_size(const sampler_t *s, uint32_t world);
uint32_t sampler_batches(const sampler_t *s, uint32_t world);

/* Permutations computed so far (cache misses; 0 with shuffle off). */
uint64_t sampler_computed(sampler_t *s);

/* The count sampler_batch() returns for this batch, without computing the
 * permutation (0 when rank >= world or batch is out of range). */
uint32_t sampler_batch_count(const sampler_t *s, uint32_t world, uint32_t rank,
			     uint32_t batch);

/*
 * Fill idx[0..count) (and pad[], 1 = wrapped duplicate; may be NULL) for
 * batch `batch`. Returns the count (<= batch_size), or -EINVAL when
 * rank >= world or batch >= sampler_batches(), -ENOMEM.
 */
int sampler_batch(sampler_t *s, uint32_t epoch, uint32_t rank, uint32_t world,
		  uint32_t batch, uint32_t *idx, uint8_t *pad);

#endif
