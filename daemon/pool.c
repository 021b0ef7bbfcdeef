/*
 * pool.c — worker threads.
 *
 * DESIGN
 * - `lock` guards the task FIFO (head/tail), every queued task's `next`,
 *   `depth`, `stopping` and the start-up counts `ready` and `failed`.
 *   Items are handed out under the lock; the work itself runs outside it.
 * - A task leaves the FIFO when its last item has been handed out; it is
 *   finished when `remaining` (atomic, decremented after each item) hits
 *   zero, and the worker that takes it to zero takes it out of `depth`
 *   and then calls done() (so whoever done() hands it to never sees it
 *   counted). After that the pool never touches the task again.
 * - Shutdown sets `stopping` and broadcasts; workers drain the FIFO first,
 *   then free their context and exit; pool_destroy joins them. No
 *   pthread_cancel.
 * - Start-up: pool_new waits on `ready_cond` until every started worker has
 *   made its context or failed to (memcached's init wait), so a pool that
 *   exists can work. A worker whose ctx_new fails exits at once; pool_new
 *   then stops and joins the others (they free their contexts) and
 *   returns NULL.
 */
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct worker {
	pool_t *pool;
	pthread_t thread;
	void *ctx;
};

struct pool {
	pthread_mutex_t lock;
	pthread_cond_t not_empty;
	pthread_cond_t ready_cond;
	struct pool_task *head, *tail;
	uint32_t depth;
	bool stopping;
	uint32_t started, ready, failed;
	void *(*ctx_new)(void);
	void (*ctx_free)(void *);
	uint32_t n;
	struct worker *workers;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	pool_t *p = w->pool;

	w->ctx = p->ctx_new();
	pthread_mutex_lock(&p->lock);
	if (w->ctx)
		p->ready++;
	else
		p->failed++;
	pthread_cond_broadcast(&p->ready_cond);
	if (!w->ctx) {
		pthread_mutex_unlock(&p->lock);
		return NULL;
	}
	for (;;) {
		while (!p->head && !p->stopping)
			pthread_cond_wait(&p->not_empty, &p->lock);
		struct pool_task *t = p->head;
		if (!t)
			break; /* stopping and drained */
		uint32_t item = t->next++;
		if (t->next == t->n) {
			p->head = t->qnext;
			if (!p->head)
				p->tail = NULL;
		}
		pthread_mutex_unlock(&p->lock);

		t->run(t, item, w->ctx);
		if (atomic_fetch_sub_explicit(&t->remaining, 1, memory_order_acq_rel) == 1) {
			/* Counted out before done() hands the task on, so a
			 * client that sees the reply never sees it queued. */
			pthread_mutex_lock(&p->lock);
			p->depth--;
			pthread_mutex_unlock(&p->lock);
			t->done(t, w->ctx);
		}
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	p->ctx_free(w->ctx);
	w->ctx = NULL;
	return NULL;
}

pool_t *pool_new(uint32_t workers, void *(*ctx_new)(void), void (*ctx_free)(void *))
{
	pool_t *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->workers = calloc(workers, sizeof(*p->workers));
	if (!p->workers) {
		free(p);
		return NULL;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->not_empty, NULL);
	pthread_cond_init(&p->ready_cond, NULL);
	p->ctx_new = ctx_new;
	p->ctx_free = ctx_free;
	p->n = workers;

	for (uint32_t i = 0; i < workers; i++) {
		p->workers[i].pool = p;
		int rc = pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]);
		if (rc) {
			log_err("pool: cannot start worker %u: %s", i, strerror(rc));
			break;
		}
		p->started++;
	}
	pthread_mutex_lock(&p->lock);
	while (p->ready + p->failed < p->started)
		pthread_cond_wait(&p->ready_cond, &p->lock);
	bool ok = p->ready == workers;
	pthread_mutex_unlock(&p->lock);
	if (!ok) {
		log_err("pool: %u of %u workers could not start", workers - p->ready, workers);
		pool_destroy(&p);
	}
	return p;
}

void pool_submit(pool_t *p, struct pool_task *t)
{
	t->next = 0;
	t->qnext = NULL;
	atomic_store_explicit(&t->remaining, t->n, memory_order_relaxed);
	pthread_mutex_lock(&p->lock);
	if (p->tail)
		p->tail->qnext = t;
	else
		p->head = t;
	p->tail = t;
	p->depth++;
	pthread_cond_broadcast(&p->not_empty);
	pthread_mutex_unlock(&p->lock);
}

uint32_t pool_depth(pool_t *p)
{
	pthread_mutex_lock(&p->lock);
	uint32_t d = p->depth;
	pthread_mutex_unlock(&p->lock);
	return d;
}

uint32_t pool_workers(const pool_t *p)
{
	return p->n;
}

void pool_destroy(pool_t **pp)
{
	pool_t *p = pp ? *pp : NULL;
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->not_empty);
	pthread_mutex_unlock(&p->lock);
	for (uint32_t i = 0; i < p->started; i++)
		pthread_join(p->workers[i].thread, NULL);
	pthread_cond_destroy(&p->ready_cond);
	pthread_cond_destroy(&p->not_empty);
	pthread_mutex_destroy(&p->lock);
	free(p->workers);
	free(p);
	*pp = NULL;
}
