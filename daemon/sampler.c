/*
 * sampler.c — epoch permutations and sharding into batches.
 *
 * DESIGN
 *   The sampler is read-only after sampler_new() except for the permutation
 *   cache: `nslots` slots (sampler_cache_slots(): as many permutations as
 *   fit in SAMPLER_CACHE_BYTES, at least 2, at most SAMPLER_CACHE_MAX),
 *   each an epoch number, a malloc'd permutation of 0..n-1 and a use stamp
 *   for least-recently-used eviction. `lock` guards the slots and the stamp
 *   counter; it is the only lock here and nothing else is taken while it is
 *   held; `ready` is signalled whenever a slot's computation ends.
 *   A missing permutation is claimed under the lock (the slot is marked
 *   `busy` for that epoch, its old permutation detached) and computed
 *   outside it by the thread that claimed it; every other thread that needs
 *   the same epoch waits on `ready` instead of computing it again, and
 *   callers on other epochs are never held up by the shuffle. A busy slot
 *   is never evicted; when every slot is busy (more epochs being computed
 *   at once than there are slots) the caller computes a private copy and
 *   frees it after use. On allocation failure the slot is released empty
 *   and the waiters retry (each may fail with -ENOMEM in turn).
 *   Callers copy their indices out while holding the lock, so an eviction
 *   can never free a permutation that is being read. The cache owns every
 *   permutation in a slot.
 *
 *   Positions are computed in 64 bits: n is at most 2^31 and world 2^16,
 *   so shard * world and position * world + rank cannot overflow.
 */
#include "sampler.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "rng.h"

struct perm_slot {
	uint32_t *perm; /* NULL: empty, or being computed (busy) */
	uint32_t epoch;
	bool busy;      /* claimed: a thread is computing `epoch` */
	uint64_t stamp; /* last use, for eviction */
};

struct sampler {
	struct sampler_params p;
	pthread_mutex_t lock;
	pthread_cond_t ready;
	uint64_t clock;
	uint64_t computed; /* permutations made, for sampler_computed() */
	uint32_t nslots;
	struct perm_slot slot[SAMPLER_CACHE_MAX];
};

uint32_t sampler_cache_slots(uint32_t n)
{
	uint64_t bytes = (uint64_t)(n ? n : 1) * sizeof(uint32_t);
	uint64_t k = SAMPLER_CACHE_BYTES / bytes;

	if (k < 2)
		k = 2;
	if (k > SAMPLER_CACHE_MAX)
		k = SAMPLER_CACHE_MAX;
	return (uint32_t)k;
}

sampler_t *sampler_new(const struct sampler_params *p)
{
	sampler_t *s;

	if (!p || p->n == 0 || p->batch_size == 0 || p->batch_size > INT32_MAX)
		return NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->p = *p;
	s->nslots = sampler_cache_slots(p->n);
	if (pthread_mutex_init(&s->lock, NULL) != 0) {
		free(s);
		return NULL;
	}
	if (pthread_cond_init(&s->ready, NULL) != 0) {
		pthread_mutex_destroy(&s->lock);
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
	for (uint32_t i = 0; i < s->nslots; i++)
		free(s->slot[i].perm);
	pthread_cond_destroy(&s->ready);
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

uint64_t sampler_computed(sampler_t *s)
{
	uint64_t n;

	if (!s || pthread_mutex_lock(&s->lock) != 0)
		return 0;
	n = s->computed;
	pthread_mutex_unlock(&s->lock);
	return n;
}

uint32_t sampler_batch_count(const sampler_t *s, uint32_t world, uint32_t rank,
			     uint32_t batch)
{
	if (!s || world == 0 || rank >= world || batch >= sampler_batches(s, world))
		return 0;
	uint64_t shard = sampler_shard_size(s, world);
	uint64_t start = (uint64_t)batch * s->p.batch_size;
	uint64_t end = start + s->p.batch_size;
	return (uint32_t)((end > shard ? shard : end) - start);
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

/* Called with the lock held: the slot holding or computing `epoch`. */
static struct perm_slot *find_slot(sampler_t *s, uint32_t epoch)
{
	for (uint32_t i = 0; i < s->nslots; i++)
		if ((s->slot[i].perm || s->slot[i].busy) && s->slot[i].epoch == epoch)
			return &s->slot[i];
	return NULL;
}

/* Called with the lock held: an empty slot, else the least recently used
 * one that is not busy; NULL when every slot is busy. */
static struct perm_slot *victim_slot(sampler_t *s)
{
	struct perm_slot *v = NULL;

	for (uint32_t i = 0; i < s->nslots; i++) {
		struct perm_slot *c = &s->slot[i];
		if (c->busy)
			continue;
		if (!c->perm)
			return c;
		if (!v || c->stamp < v->stamp)
			v = c;
	}
	return v;
}

/*
 * Called with the lock held; returns with it held. The permutation of
 * `epoch`, from the cache (waiting while another thread computes it) or
 * computed here; *own is set when the caller must free it (every slot was
 * busy). NULL with -errno in *err: out of memory, or the wait failed.
 */
static const uint32_t *get_perm(sampler_t *s, uint32_t epoch, bool *own, int *err)
{
	struct perm_slot *slot;
	uint32_t *perm, *old = NULL;

	*own = false;
	for (;;) {
		slot = find_slot(s, epoch);
		if (slot && !slot->busy)
			return slot->perm;
		if (!slot)
			break;
		int rc = pthread_cond_wait(&s->ready, &s->lock);
		if (rc) {
			*err = -rc;
			return NULL;
		}
	}
	slot = victim_slot(s);
	if (slot) {
		old = slot->perm;
		slot->perm = NULL;
		slot->busy = true;
		slot->epoch = epoch;
	}
	pthread_mutex_unlock(&s->lock);
	if (slot)
		free(old);
	perm = make_perm(s, epoch);
	/* Cannot fail: this thread locked this default mutex a moment ago. */
	(void)pthread_mutex_lock(&s->lock);
	if (perm)
		s->computed++;
	if (!slot) {
		*own = true;
		*err = perm ? 0 : -ENOMEM;
		return perm;
	}
	slot->busy = false;
	slot->perm = perm;
	pthread_cond_broadcast(&s->ready);
	*err = perm ? 0 : -ENOMEM;
	return perm;
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
	const uint32_t *perm;
	bool own;
	uint64_t start;
	uint32_t count, n;
	int err;

	if (!s || !idx)
		return -EINVAL;
	count = sampler_batch_count(s, world, rank, batch);
	if (count == 0)
		return -EINVAL;
	n = s->p.n;
	uint32_t K = s->p.repeats > 1 ? s->p.repeats : 1;
	start = (uint64_t)batch * s->p.batch_size;

	if (!s->p.shuffle) {
		for (uint32_t k = 0; k < count; k++) {
			bool w;
			idx[k] = epoch_pos(start + k, rank, world, n, K, &w);
			if (pad)
				pad[k] = w;
		}
		return (int)count;
	}

	err = pthread_mutex_lock(&s->lock);
	if (err)
		return -err;
	perm = get_perm(s, epoch, &own, &err);
	if (!perm) {
		pthread_mutex_unlock(&s->lock);
		return err;
	}
	struct perm_slot *slot = own ? NULL : find_slot(s, epoch);
	if (slot)
		slot->stamp = ++s->clock;
	for (uint32_t k = 0; k < count; k++) {
		bool w;
		idx[k] = perm[epoch_pos(start + k, rank, world, n, K, &w)];
		if (pad)
			pad[k] = w;
	}
	pthread_mutex_unlock(&s->lock);
	if (own)
		free((void *)perm);
	return (int)count;
}
