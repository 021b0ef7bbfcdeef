/*
 * cache.c — see cache.h.
 *
 * DESIGN
 * - The table (hash buckets), the LRU list and the byte count belong to
 *   the server thread; no lock guards them because no other thread
 *   touches them.
 * - An entry's `refs` is atomic: the table holds one while the entry is
 *   in it, the build one until it has made its replies, each queued reply
 *   and each ZeroMQ message one. ZeroMQ's I/O thread drops the message
 *   references (cache_frame_free); whoever drops the last frees the
 *   buffers (images back to the bufpool, labels and metadata with free()).
 *   The frames never change once filled, so every holder reads them
 *   without a lock.
 * - Only ready entries are in the LRU list and the budget; a building one
 *   is in the table (so later requests find it and wait) and cannot be
 *   evicted.
 */
#include "cache.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "bufpool.h"

#define BUCKETS 4096

struct cache_entry {
	atomic_int refs;
	struct cache_key key;
	uint32_t hash;
	bool ready, in_table;
	uint64_t bytes;
	struct cache_frames f;
	cache_entry_t *hnext;        /* bucket chain */
	cache_entry_t *prev, *next;  /* LRU, most recent at head (ready only) */
	void **waiters;              /* parked requests, FIFO */
	int n_waiters, first_waiter, cap_waiters;
};

struct cache {
	uint64_t budget, bytes;
	uint64_t n_ready;
	bool stale_set;              /* `current` is set (a reload happened) */
	uint8_t current[WIRE_DIGEST_SIZE];
	struct stats *st;
	cache_entry_t *buckets[BUCKETS];
	cache_entry_t *head, *tail;  /* LRU */
};

void cache_key_make(struct cache_key *k, const uint8_t digest[WIRE_DIGEST_SIZE],
		    const char *pipeline, uint32_t epoch, uint32_t rank,
		    uint32_t world, uint32_t batch)
{
	memset(k, 0, sizeof(*k));
	memcpy(k->digest, digest, WIRE_DIGEST_SIZE);
	strncpy(k->pipeline, pipeline, WIRE_PIPELINE_MAX - 1);
	k->epoch = epoch;
	k->rank = rank;
	k->world = world;
	k->batch = batch;
}

static uint32_t key_hash(const struct cache_key *k)
{
	const uint8_t *p = (const uint8_t *)k;
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < sizeof(*k); i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

static void publish(cache_t *c)
{
	atomic_store_explicit(&c->st->cache_bytes, c->bytes, memory_order_relaxed);
	atomic_store_explicit(&c->st->cache_entries, c->n_ready, memory_order_relaxed);
}

cache_t *cache_new(uint64_t budget_bytes, struct stats *st)
{
	cache_t *c;

	if (!budget_bytes)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->budget = budget_bytes;
	c->st = st;
	publish(c);
	return c;
}

/* ---- references ------------------------------------------------------- */

static void entry_free(cache_entry_t *e)
{
	bufpool_put(e->f.body[0]);
	free(e->f.body[1]);
	free(e->f.body[2]);
	for (int i = 0; i < e->n_waiters; i++)
		free(e->waiters[(e->first_waiter + i) % e->cap_waiters]);
	free(e->waiters);
	free(e);
}

cache_entry_t *cache_ref(cache_entry_t *e)
{
	if (e)
		atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
	return e;
}

void cache_unref(cache_entry_t **ep)
{
	cache_entry_t *e = ep ? *ep : NULL;

	if (!e)
		return;
	*ep = NULL;
	if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1)
		entry_free(e);
}

void cache_frame_free(void *data, void *hint)
{
	cache_entry_t *e = hint;

	(void)data;
	cache_unref(&e);
}

const struct cache_frames *cache_frames(const cache_entry_t *e)
{
	return &e->f;
}

/* ---- table and LRU ---------------------------------------------------- */

static void lru_unlink(cache_t *c, cache_entry_t *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		c->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		c->tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_push(cache_t *c, cache_entry_t *e)
{
	e->prev = NULL;
	e->next = c->head;
	if (c->head)
		c->head->prev = e;
	c->head = e;
	if (!c->tail)
		c->tail = e;
}

/* Take e out of the table (and the LRU and budget when ready); drops the
 * table's reference. */
static void remove_entry(cache_t *c, cache_entry_t *e)
{
	cache_entry_t **pp = &c->buckets[e->hash % BUCKETS];

	while (*pp && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = e->hnext;
	e->hnext = NULL;
	if (e->ready) {
		lru_unlink(c, e);
		c->bytes -= e->bytes;
		c->n_ready--;
	}
	e->in_table = false;
	publish(c);
	cache_unref(&e);
}

cache_entry_t *cache_find(cache_t *c, const struct cache_key *k, bool *ready)
{
	uint32_t h;

	if (!c)
		return NULL;
	h = key_hash(k);
	for (cache_entry_t *e = c->buckets[h % BUCKETS]; e; e = e->hnext) {
		if (e->hash != h || memcmp(&e->key, k, sizeof(*k)) != 0)
			continue;
		*ready = e->ready;
		if (e->ready) {
			lru_unlink(c, e);
			lru_push(c, e);
		}
		stats_add(c->st, cache_hits, 1);
		return e;
	}
	return NULL;
}

cache_entry_t *cache_begin(cache_t *c, const struct cache_key *k)
{
	cache_entry_t *e;

	if (!c)
		return NULL;
	stats_add(c->st, cache_misses, 1);
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->key = *k;
	e->hash = key_hash(k);
	atomic_init(&e->refs, 2); /* the table and the build */
	e->in_table = true;
	e->hnext = c->buckets[e->hash % BUCKETS];
	c->buckets[e->hash % BUCKETS] = e;
	return e;
}

int cache_wait(cache_entry_t *e, void *waiter)
{
	if (e->n_waiters == e->cap_waiters) {
		int cap = e->cap_waiters ? 2 * e->cap_waiters : 4;
		void **w = malloc((size_t)cap * sizeof(*w));

		if (!w)
			return -ENOMEM;
		for (int i = 0; i < e->n_waiters; i++)
			w[i] = e->waiters[(e->first_waiter + i) % e->cap_waiters];
		free(e->waiters);
		e->waiters = w;
		e->first_waiter = 0;
		e->cap_waiters = cap;
	}
	e->waiters[(e->first_waiter + e->n_waiters) % e->cap_waiters] = waiter;
	e->n_waiters++;
	return 0;
}

void *cache_take_waiter(cache_entry_t *e)
{
	void *w;

	if (!e || e->n_waiters == 0)
		return NULL;
	w = e->waiters[e->first_waiter];
	e->first_waiter = (e->first_waiter + 1) % e->cap_waiters;
	e->n_waiters--;
	return w;
}

const struct cache_frames *cache_fill(cache_t *c, cache_entry_t *e, batch_t *b,
				      const struct wire_reply *h)
{
	e->f.header = *h;
	e->f.header.request_id = 0;
	e->f.len[0] = b->images_bytes;
	e->f.len[1] = b->labels_bytes;
	e->f.len[2] = b->meta_bytes;
	e->f.body[0] = batch_take_images(b);
	e->f.body[1] = batch_take_labels(b);
	e->f.body[2] = batch_take_meta(b);
	e->bytes = e->f.len[0] + e->f.len[1] + e->f.len[2] + sizeof(*e);
	e->ready = true;
	if (!e->in_table)
		return &e->f;
	if (e->bytes > c->budget || /* answered, then gone */
	    (c->stale_set && memcmp(e->key.digest, c->current, WIRE_DIGEST_SIZE))) {
		e->ready = false;
		remove_entry(c, e);
		return &e->f;
	}
	while (c->tail && c->bytes + e->bytes > c->budget)
		remove_entry(c, c->tail);
	lru_push(c, e);
	c->bytes += e->bytes;
	c->n_ready++;
	publish(c);
	return &e->f;
}

void cache_abort(cache_t *c, cache_entry_t **ep)
{
	cache_entry_t *e = ep ? *ep : NULL;

	if (!e)
		return;
	if (e->in_table)
		remove_entry(c, e);
	cache_unref(ep);
}

void cache_keep_digest(cache_t *c, const uint8_t digest[WIRE_DIGEST_SIZE])
{
	if (!c)
		return;
	memcpy(c->current, digest, WIRE_DIGEST_SIZE); /* builds of the old one finish uncached */
	c->stale_set = true;
	for (cache_entry_t *e = c->head, *next; e; e = next) {
		next = e->next;
		if (memcmp(e->key.digest, digest, WIRE_DIGEST_SIZE) != 0)
			remove_entry(c, e);
	}
}

void cache_destroy(cache_t **cp)
{
	cache_t *c = cp ? *cp : NULL;

	if (!c)
		return;
	for (int h = 0; h < BUCKETS; h++)
		while (c->buckets[h])
			remove_entry(c, c->buckets[h]);
	free(c);
	*cp = NULL;
}
