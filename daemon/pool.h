/*
 * pool.h — a fixed set of worker threads that run the items of tasks.
 *
 * A task is n independent items (the samples of a batch) plus a `done`
 * step that runs once, on the worker that finished the last item (batch
 * assembly). Workers take items from the task at the head of a FIFO, so a
 * batch's samples are spread over every worker and batches finish in
 * roughly the order they were submitted.
 *
 * Each worker owns a context made by ctx_new (decoder, resizer, scratch):
 * nothing in it is shared, so the hot path takes no lock.
 */
#ifndef CUTMIXD_POOL_H
#define CUTMIXD_POOL_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct pool pool_t;

struct pool_task {
	void (*run)(struct pool_task *t, uint32_t item, void *ctx);
	void (*done)(struct pool_task *t, void *ctx);
	uint32_t n;             /* items, > 0 */
	/* private to the pool */
	uint32_t next;          /* next item to hand out (under the lock) */
	atomic_uint remaining;  /* items not yet finished */
	struct pool_task *qnext;
};

/*
 * Start `workers` threads; each calls ctx_new() once. Returns only when
 * every worker is ready, or NULL (and no thread left running) if a thread
 * or a context could not be created.
 */
pool_t *pool_new(uint32_t workers, void *(*ctx_new)(void), void (*ctx_free)(void *));

/* Queue a task; the pool does not own it (done() must release it). */
void pool_submit(pool_t *p, struct pool_task *t);

/* Tasks queued or running. */
uint32_t pool_depth(pool_t *p);
uint32_t pool_workers(const pool_t *p);

/* Finish every queued task, then stop and join the workers. NULL-safe. */
void pool_destroy(pool_t **p);

#endif
