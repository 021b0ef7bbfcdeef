/*
 * cache.h — recently built batches, answered again without recomputing
 * ([server] batch_cache_mb; off at 0).
 *
 * A batch is a pure function of (config digest, pipeline, epoch, rank,
 * world, batch index), so that tuple is the key: several trainers on one
 * seed (a hyperparameter sweep) get one computation per batch. A reload
 * that changes any batch byte changes the digest, so it never meets an
 * old entry (and cache_keep_digest drops the old ones at once).
 *
 * Entries are shared, not copied: the reply frames point into the entry's
 * buffers and each ZeroMQ message holds a reference, dropped by its free
 * callback (cache_frame_free, any thread). The budget counts the bytes of
 * the entries in the table; an evicted entry still being sent lives until
 * its last message has left.
 *
 * A request for a batch that is being built waits on that build instead
 * of starting another one (cache_wait / cache_take_waiter): two trainers
 * in lockstep still cost one decode per image.
 *
 * Threads: everything but cache_frame_free and the entry reference counts
 * runs on the server thread only (no lock). The counters are in struct
 * stats (cache_hits, cache_misses, cache_bytes, cache_entries).
 */
#ifndef CUTMIXD_CACHE_H
#define CUTMIXD_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "stats.h"
#include "wire.h"

typedef struct cache cache_t;
typedef struct cache_entry cache_entry_t;

struct cache_key {
	uint8_t digest[WIRE_DIGEST_SIZE];
	char pipeline[WIRE_PIPELINE_MAX];  /* NUL-padded */
	uint32_t epoch, rank, world, batch;
};

/* The frames of a cached batch and its reply header (request_id 0). */
struct cache_frames {
	struct wire_reply header;
	void *body[3];
	size_t len[3];
};

/* A key with its padding zeroed (keys are compared as bytes). */
void cache_key_make(struct cache_key *k, const uint8_t digest[WIRE_DIGEST_SIZE],
		    const char *pipeline, uint32_t epoch, uint32_t rank,
		    uint32_t world, uint32_t batch);

/* budget_bytes 0: returns NULL (cache off; every function takes NULL). */
cache_t *cache_new(uint64_t budget_bytes, struct stats *st);
/* Entries still referenced by ZeroMQ messages live on until sent; the
 * waiters left on building entries are freed with free(). */
void cache_destroy(cache_t **c);

/*
 * The entry for `k` (a hit, counted): ready (*ready true: take a
 * reference for the reply with cache_ref) or being built (*ready false:
 * wait on it). NULL: not there (then
 * cache_begin, counted as a miss).
 */
cache_entry_t *cache_find(cache_t *c, const struct cache_key *k, bool *ready);
/* A building entry for `k` (not yet in the budget), with a reference for
 * the caller (the build) to drop with cache_unref once the replies hold
 * theirs, or by cache_abort. NULL: out of memory (the batch is then built
 * without the cache). */
cache_entry_t *cache_begin(cache_t *c, const struct cache_key *k);
/* Park a request (malloc'd, opaque) until the build of e finishes. */
int cache_wait(cache_entry_t *e, void *waiter);
/* The parked requests, one at a time, oldest first; NULL when none. */
void *cache_take_waiter(cache_entry_t *e);
/*
 * The build of e finished: take the batch's frame buffers (b forgets
 * them) and the header. The entry enters the budget, evicting the least
 * recently used ones; one larger than the whole budget is answered and
 * then dropped. Returns e's frames.
 */
const struct cache_frames *cache_fill(cache_t *c, cache_entry_t *e, batch_t *b,
				      const struct wire_reply *h);
/* The build failed: the entry leaves the table (its waiters must have
 * been taken first) and the caller's reference is dropped. */
void cache_abort(cache_t *c, cache_entry_t **e);
/* Drop every entry whose digest is not `digest` (a reload). */
void cache_keep_digest(cache_t *c, const uint8_t digest[WIRE_DIGEST_SIZE]);

const struct cache_frames *cache_frames(const cache_entry_t *e);
/* References: one per ZeroMQ message or reply holding the frames. */
cache_entry_t *cache_ref(cache_entry_t *e);
void cache_unref(cache_entry_t **e);
/* zmq_msg_init_data free callback: hint is the entry (one reference). */
void cache_frame_free(void *data, void *hint);

#endif
