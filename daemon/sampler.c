/*
 * sampler.c — epoch permutations and sharding into batches.
 *
 * DESIGN
 *   The sampler is read-only after sampler_new() except for the permutation
 *   cache: SAMPLER_CACHE slots, each an epoch number and a malloc'd
 *   permutation of 0..n-1, with a use stamp for least-recently-used
 *   eviction. `lock` guards the slots and the stamp counter; it is the only
 *   lock here and nothing else is taken while it is held.
 *   A missing permutation is computed outside the lock by the thread that
 *   needs it (a large shuffle never stalls callers that hit the cache), then
 *   inserted under the lock unless another thread got there first, in which
 *   case the spare copy is freed. Callers copy their indices out while
 *   holding the lock, so an eviction can never free a permutation that is
 *   being read. The cache owns every permutation.
 *
 *   Positions are computed in 64 bits: n is at most 2^31 and world 2^16,
 *   so shard * world and position * world + rank cannot overflow.
 */
#include "sampler.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "rng.h"

#define SAMPLER_CACHE 2

struct perm_slot {
	uint32_t *perm; /* NULL: empty slot */
	uint32_t epoch;
	uint64_t stamp; /* last use, for eviction */
};

struct sampler {
	struct sampler_params p;
	pthread_mutex_t lock;
	uint64_t clock;
	struct perm_slot slot[SAMPLER_CACHE];
};

sampler_t *sampler_new(const struct sampler_params *p)
{
	sampler_t *s;

	if (!p || p->n == 0 || p->batch_size == 0 || p->batch_size > INT32_MAX)
		return NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->p = *p;
	if (pthread_mutex_init(&s->lock, NULL) != 0) {
		free(s);
		return NULL;
	}
	return s;
}

void sampler_destroy(sampler_t **sp)
{
	sampler_t *s;

	if (!sp || !*sp)
		return;
	s = *sp;
	for (int i = 0; i < SAMPLER_CACHE; i++)
		free(s->slot[i].perm);
	pthread_mutex_destroy(&s->lock);
	free(s);
	*sp = NULL;
}

uint32_t sampler_shard_size(const sampler_t *s, uint32_t world)
{
	if (!s || world == 0)
		return 0;
	uint64_t n = s->p.n;
	if (s->p.drop_last)
		return (uint32_t)(n / world);
	return (uint32_t)((n + world - 1) / world);
}

uint32_t sampler_batches(const sampler_t *s, uint32_t world)
{
	uint64_t shard = sampler_shard_size(s, world);

	if (shard == 0)
		return 0;
	uint64_t bs = s->p.batch_size;
	if (s->p.drop_last)
		return (uint32_t)(shard / bs);
	return (uint32_t)((shard + bs - 1) / bs);
}

static uint32_t *make_perm(const sampler_t *s, uint32_t epoch)
{
	uint32_t n = s->p.n;
	uint32_t *perm = malloc((size_t)n * sizeof(*perm));
	rng_t r;

	if (!perm)
		return NULL;
	for (uint32_t i = 0; i < n; i++)
		perm[i] = i;
	rng_init(&r, s->p.key, epoch, 0, 0, RNG_PERMUTE, 0);
	rng_shuffle_u32(&r, perm, n);
	return perm;
}

/* Called with the lock held. */
static struct perm_slot *find_slot(sampler_t *s, uint32_t epoch)
{
	for (int i = 0; i < SAMPLER_CACHE; i++)
		if (s->slot[i].perm && s->slot[i].epoch == epoch)
			return &s->slot[i];
	return NULL;
}

/* Called with the lock held: the empty or least recently used slot. */
static struct perm_slot *victim_slot(sampler_t *s)
{
	struct perm_slot *v = &s->slot[0];

	for (int i = 0; i < SAMPLER_CACHE; i++) {
		if (!s->slot[i].perm)
			return &s->slot[i];
		if (s->slot[i].stamp < v->stamp)
			v = &s->slot[i];
	}
	return v;
}

/* Epoch position of shard position j of `rank`; *wrapped when padded.
 * With K repeats the order is K*n long, each position K times in a row. */
static inline uint32_t epoch_pos(uint64_t j, uint32_t rank, uint32_t world,
				 uint32_t n, uint32_t K, bool *wrapped)
{
	uint64_t q = j * world + rank;
	uint64_t len = (uint64_t)n * K;

	*wrapped = q >= len;
	return (uint32_t)((q % len) / K);
}

int sampler_batch(sampler_t *s, uint32_t epoch, uint32_t rank, uint32_t world,
		  uint32_t batch, uint32_t *idx, uint8_t *pad)
{
	uint32_t *spare = NULL;
	uint64_t start, end;
	uint32_t count, n;

	if (!s || !idx || world == 0 || rank >= world)
		return -EINVAL;
	if (batch >= sampler_batches(s, world))
		return -EINVAL;
	n = s->p.n;
	uint32_t K = s->p.repeats > 1 ? s->p.repeats : 1;
	start = (uint64_t)batch * s->p.batch_size;
	end = start + s->p.batch_size;
	if (end > sampler_shard_size(s, world))
		end = sampler_shard_size(s, world);
	count = (uint32_t)(end - start);

	if (!s->p.shuffle) {
		for (uint32_t k = 0; k < count; k++) {
			bool w;
			idx[k] = epoch_pos(start + k, rank, world, n, K, &w);
			if (pad)
				pad[k] = w;
		}
		return (int)count;
	}

	int err = pthread_mutex_lock(&s->lock);
	if (err)
		return -err;
	struct perm_slot *slot = find_slot(s, epoch);
	if (!slot) {
		pthread_mutex_unlock(&s->lock);
		spare = make_perm(s, epoch);
		if (!spare)
			return -ENOMEM;
		err = pthread_mutex_lock(&s->lock);
		if (err) {
			free(spare);
			return -err;
		}
		slot = find_slot(s, epoch);
		if (!slot) {
			slot = victim_slot(s);
			free(slot->perm);
			slot->perm = spare;
			slot->epoch = epoch;
			spare = NULL;
		}
	}
	slot->stamp = ++s->clock;
	for (uint32_t k = 0; k < count; k++) {
		bool w;
		idx[k] = slot->perm[epoch_pos(start + k, rank, world, n, K, &w)];
		if (pad)
			pad[k] = w;
	}
	pthread_mutex_unlock(&s->lock);
	free(spare);
	return (int)count;
}
