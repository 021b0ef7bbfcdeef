/*
 * test_pool.c — the worker pool's contract as pool.h states it: pool_new
 * returns only when every worker is ready (or NULL with no thread left),
 * every item of a task runs exactly once and done() runs once after all of
 * them on a worker, tasks run in FIFO order, pool_destroy finishes what is
 * queued, is NULL-safe and clears the pointer, and each worker's context
 * is made and freed exactly once and used by that worker only.
 *
 * House style: cmocka asserts run on the main thread only. Workers record
 * what they see in atomics (or under a test mutex) and the main thread
 * asserts after pool_destroy has joined them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "log.h"
#include "pool.h"

#define MAX_CTX 64

/* ---- worker contexts ----------------------------------------------------- */

struct test_ctx {
	int id;
	pthread_t owner;          /* the thread that made it */
	atomic_int frees;
};

static struct test_ctx ctxs[MAX_CTX];
static atomic_int n_ctx_new;      /* ctx_new calls that returned a context */
static atomic_int n_ctx_free;
static atomic_int ctx_delay_ms;   /* each ctx_new sleeps this long first */
static atomic_int ctx_fail_at;    /* the k-th ctx_new call (1-based) fails */
static atomic_int n_ctx_calls;
static atomic_int wrong_thread;   /* ctx used or freed off its own worker */

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static void *ctx_new(void)
{
	int call = atomic_fetch_add(&n_ctx_calls, 1) + 1;
	int delay = atomic_load(&ctx_delay_ms);

	if (delay)
		sleep_ms(delay);
	if (call == atomic_load(&ctx_fail_at))
		return NULL;
	int id = atomic_fetch_add(&n_ctx_new, 1);
	if (id >= MAX_CTX)
		return NULL;
	ctxs[id].id = id;
	ctxs[id].owner = pthread_self();
	atomic_store(&ctxs[id].frees, 0);
	return &ctxs[id];
}

static void ctx_free(void *p)
{
	struct test_ctx *c = p;

	if (!pthread_equal(c->owner, pthread_self()))
		atomic_fetch_add(&wrong_thread, 1);
	atomic_fetch_add(&c->frees, 1);
	atomic_fetch_add(&n_ctx_free, 1);
}

static void check_ctx(void *p)
{
	struct test_ctx *c = p;

	if (!c || c < ctxs || c >= ctxs + MAX_CTX || !pthread_equal(c->owner, pthread_self()))
		atomic_fetch_add(&wrong_thread, 1);
}

static int reset(void **state)
{
	(void)state;
	memset(ctxs, 0, sizeof(ctxs));
	atomic_store(&n_ctx_new, 0);
	atomic_store(&n_ctx_free, 0);
	atomic_store(&ctx_delay_ms, 0);
	atomic_store(&ctx_fail_at, 0);
	atomic_store(&n_ctx_calls, 0);
	atomic_store(&wrong_thread, 0);
	return 0;
}

/* ---- a task that counts -------------------------------------------------- */

struct count_task {
	struct pool_task t;       /* first: the pool hands this pointer back */
	int id;
	atomic_uint *hits;        /* [t.n]: runs of each item */
	atomic_uint items_done;   /* items finished */
	atomic_int done_calls;
	atomic_uint items_at_done; /* items_done when done() ran */
	atomic_int done_order;    /* position among finished tasks */
	atomic_int item_delay_us;
};

static atomic_int finished;       /* done() calls, every task */
static pthread_mutex_t fin_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t fin_cond = PTHREAD_COND_INITIALIZER;

static void count_run(struct pool_task *t, uint32_t item, void *ctx)
{
	struct count_task *c = (struct count_task *)t;
	int us = atomic_load(&c->item_delay_us);

	check_ctx(ctx);
	if (us)
		usleep((useconds_t)us);
	atomic_fetch_add(&c->hits[item], 1);
	atomic_fetch_add(&c->items_done, 1);
}

static void count_done(struct pool_task *t, void *ctx)
{
	struct count_task *c = (struct count_task *)t;

	check_ctx(ctx);
	atomic_store(&c->items_at_done, atomic_load(&c->items_done));
	atomic_fetch_add(&c->done_calls, 1);
	pthread_mutex_lock(&fin_lock);
	atomic_store(&c->done_order, atomic_fetch_add(&finished, 1));
	pthread_cond_broadcast(&fin_cond);
	pthread_mutex_unlock(&fin_lock);
}

static struct count_task *count_task_new(int id, uint32_t n)
{
	struct count_task *c = calloc(1, sizeof(*c));

	assert_non_null(c);
	c->hits = calloc(n, sizeof(*c->hits));
	assert_non_null(c->hits);
	c->id = id;
	c->t.run = count_run;
	c->t.done = count_done;
	c->t.n = n;
	atomic_store(&c->done_order, -1);
	return c;
}

static void count_task_free(struct count_task *c)
{
	free(c->hits);
	free(c);
}

/* Asserts (main thread) that every item ran once and done() ran once,
 * after all of them. */
static void assert_task_complete(struct count_task *c)
{
	for (uint32_t i = 0; i < c->t.n; i++)
		assert_int_equal(atomic_load(&c->hits[i]), 1);
	assert_int_equal(atomic_load(&c->done_calls), 1);
	assert_int_equal(atomic_load(&c->items_at_done), c->t.n);
}

/* Wait (bounded, 10 s) until `n` tasks have finished; 0 or -ETIMEDOUT. */
static int wait_finished(int n)
{
	struct timespec dl;
	int rc = 0;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 10;
	pthread_mutex_lock(&fin_lock);
	while (atomic_load(&finished) < n && rc == 0)
		rc = pthread_cond_timedwait(&fin_cond, &fin_lock, &dl);
	pthread_mutex_unlock(&fin_lock);
	return atomic_load(&finished) >= n ? 0 : -ETIMEDOUT;
}

static int reset_all(void **state)
{
	reset(state);
	atomic_store(&finished, 0);
	return 0;
}

static char logbuf[1024];

/* Log sink: called on the thread that logs (pool_new's, here). */
static void log_capture(enum log_level lvl, const char *line, void *ctx)
{
	size_t n = strlen(logbuf);

	(void)lvl;
	(void)ctx;
	snprintf(logbuf + n, sizeof(logbuf) - n, "%s\n", line);
}

/* ---- tests --------------------------------------------------------------- */

/* pool_new returns only after every worker made its context, even when
 * making one is slow. */
static void test_new_waits_for_every_worker(void **state)
{
	(void)state;
	atomic_store(&ctx_delay_ms, 50);
	pool_t *p = pool_new(4, ctx_new, ctx_free);
	int made = atomic_load(&n_ctx_new);

	assert_non_null(p);
	assert_int_equal(made, 4);
	assert_int_equal(pool_workers(p), 4);
	assert_int_equal(pool_depth(p), 0);
	pool_destroy(&p);
	assert_null(p);
	assert_int_equal(atomic_load(&n_ctx_free), 4);
}

/* One context that cannot be made: NULL, and the contexts that were made
 * are freed (their workers stopped and joined). */
static void test_new_fails_cleanly(void **state)
{
	(void)state;
	logbuf[0] = '\0';
	log_set_sink(log_capture, NULL);
	atomic_store(&ctx_fail_at, 3);
	pool_t *p = pool_new(5, ctx_new, ctx_free);
	log_set_sink(NULL, NULL);

	assert_null(p);
	assert_non_null(strstr(logbuf, "pool: 1 of 5 workers could not start"));
	assert_int_equal(atomic_load(&n_ctx_calls), 5);
	assert_int_equal(atomic_load(&n_ctx_new), 4);
	assert_int_equal(atomic_load(&n_ctx_free), 4);
	for (int i = 0; i < 4; i++)
		assert_int_equal(atomic_load(&ctxs[i].frees), 1);
	assert_int_equal(atomic_load(&wrong_thread), 0);
}

/* Items exactly once, done once after the last item, on a worker with the
 * worker's own context; the task is no longer counted by pool_depth when
 * done() runs. */
static void test_task_items_once_done_last(void **state)
{
	(void)state;
	pool_t *p = pool_new(4, ctx_new, ctx_free);
	assert_non_null(p);
	struct count_task *c = count_task_new(0, 1000);

	pool_submit(p, &c->t);
	assert_int_equal(wait_finished(1), 0);
	assert_task_complete(c);
	/* Counted out before done() returned (pool.c: before it is called). */
	assert_int_equal(pool_depth(p), 0);

	/* The same task struct can be submitted again once done. */
	memset(c->hits, 0, c->t.n * sizeof(*c->hits));
	atomic_store(&c->items_done, 0);
	atomic_store(&c->done_calls, 0);
	pool_submit(p, &c->t);
	assert_int_equal(wait_finished(2), 0);
	assert_task_complete(c);

	pool_destroy(&p);
	assert_null(p);
	assert_int_equal(atomic_load(&wrong_thread), 0);
	count_task_free(c);
}

/* A task of one item on a pool of many workers, and a task with more
 * workers than items. */
static void test_small_tasks(void **state)
{
	(void)state;
	pool_t *p = pool_new(8, ctx_new, ctx_free);
	assert_non_null(p);
	struct count_task *a = count_task_new(0, 1);
	struct count_task *b = count_task_new(1, 3);

	pool_submit(p, &a->t);
	pool_submit(p, &b->t);
	assert_int_equal(wait_finished(2), 0);
	pool_destroy(&p);
	assert_task_complete(a);
	assert_task_complete(b);
	assert_int_equal(atomic_load(&wrong_thread), 0);
	count_task_free(a);
	count_task_free(b);
}

/* Many tasks submitted from several threads at once. */
#define SUBMITTERS 4
#define TASKS_EACH 40

struct submitter {
	pool_t *pool;
	struct count_task *tasks[TASKS_EACH];
};

static void *submit_main(void *arg)
{
	struct submitter *s = arg;

	for (int i = 0; i < TASKS_EACH; i++)
		pool_submit(s->pool, &s->tasks[i]->t);
	return NULL;
}

static void test_many_concurrent_tasks(void **state)
{
	(void)state;
	pool_t *p = pool_new(4, ctx_new, ctx_free);
	assert_non_null(p);
	struct submitter subs[SUBMITTERS];
	pthread_t th[SUBMITTERS];

	for (int s = 0; s < SUBMITTERS; s++) {
		subs[s].pool = p;
		for (int i = 0; i < TASKS_EACH; i++)
			subs[s].tasks[i] = count_task_new(s * TASKS_EACH + i,
							  1 + (uint32_t)((s * 7 + i * 13) % 97));
	}
	for (int s = 0; s < SUBMITTERS; s++)
		assert_int_equal(pthread_create(&th[s], NULL, submit_main, &subs[s]), 0);
	for (int s = 0; s < SUBMITTERS; s++)
		assert_int_equal(pthread_join(th[s], NULL), 0);
	assert_int_equal(wait_finished(SUBMITTERS * TASKS_EACH), 0);
	assert_int_equal(pool_depth(p), 0);
	pool_destroy(&p);
	assert_null(p);

	int seen[SUBMITTERS * TASKS_EACH] = { 0 };
	for (int s = 0; s < SUBMITTERS; s++) {
		for (int i = 0; i < TASKS_EACH; i++) {
			struct count_task *c = subs[s].tasks[i];
			assert_task_complete(c);
			int pos = atomic_load(&c->done_order);
			assert_in_range(pos, 0, SUBMITTERS * TASKS_EACH - 1);
			seen[pos]++;
			count_task_free(c);
		}
	}
	for (int i = 0; i < SUBMITTERS * TASKS_EACH; i++)
		assert_int_equal(seen[i], 1);
	assert_int_equal(atomic_load(&finished), SUBMITTERS * TASKS_EACH);
	assert_int_equal(atomic_load(&wrong_thread), 0);
}

/* One worker takes tasks from the head of the FIFO: they finish in the
 * order they were submitted. */
static void test_fifo_order(void **state)
{
	(void)state;
	pool_t *p = pool_new(1, ctx_new, ctx_free);
	assert_non_null(p);
	struct count_task *c[10];

	for (int i = 0; i < 10; i++) {
		c[i] = count_task_new(i, 5);
		pool_submit(p, &c[i]->t);
	}
	assert_int_equal(wait_finished(10), 0);
	pool_destroy(&p);
	for (int i = 0; i < 10; i++) {
		assert_task_complete(c[i]);
		assert_int_equal(atomic_load(&c[i]->done_order), i);
		count_task_free(c[i]);
	}
}

/* A task whose first item blocks until the main thread lets it go: the
 * pool counts it as queued or running meanwhile. */
struct gate_task {
	struct pool_task t;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int open;
	atomic_int entered;
	atomic_int done_calls;
	atomic_int timed_out;
};

static void gate_run(struct pool_task *t, uint32_t item, void *ctx)
{
	struct gate_task *g = (struct gate_task *)t;
	struct timespec dl;
	int rc = 0;

	(void)item;
	check_ctx(ctx);
	atomic_fetch_add(&g->entered, 1);
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 10;
	pthread_mutex_lock(&g->lock);
	while (!g->open && rc == 0)
		rc = pthread_cond_timedwait(&g->cond, &g->lock, &dl);
	if (!g->open)
		atomic_store(&g->timed_out, 1);
	pthread_mutex_unlock(&g->lock);
}

static void gate_done(struct pool_task *t, void *ctx)
{
	struct gate_task *g = (struct gate_task *)t;

	check_ctx(ctx);
	atomic_fetch_add(&g->done_calls, 1);
}

/* pool_depth counts the running task and the queued ones; pool_destroy
 * finishes every queued task before it returns. */
static void test_depth_and_destroy_drains(void **state)
{
	(void)state;
	pool_t *p = pool_new(1, ctx_new, ctx_free);
	assert_non_null(p);
	struct gate_task g = { .t = { .run = gate_run, .done = gate_done, .n = 1 } };
	struct count_task *c[3];

	pthread_mutex_init(&g.lock, NULL);
	pthread_cond_init(&g.cond, NULL);
	pool_submit(p, &g.t);
	for (int i = 0; i < 3; i++) {
		c[i] = count_task_new(i, 4);
		pool_submit(p, &c[i]->t);
	}
	/* The only worker is held in gate_run (bounded wait, 10 s). */
	for (int i = 0; i < 1000 && !atomic_load(&g.entered); i++)
		sleep_ms(10);
	assert_int_equal(atomic_load(&g.entered), 1);
	assert_int_equal(pool_depth(p), 4);
	assert_int_equal(atomic_load(&finished), 0);

	pthread_mutex_lock(&g.lock);
	g.open = 1;
	pthread_cond_broadcast(&g.cond);
	pthread_mutex_unlock(&g.lock);
	pool_destroy(&p); /* must run the three queued tasks first */
	assert_null(p);

	assert_int_equal(atomic_load(&g.timed_out), 0);
	assert_int_equal(atomic_load(&g.done_calls), 1);
	for (int i = 0; i < 3; i++) {
		assert_task_complete(c[i]);
		count_task_free(c[i]);
	}
	assert_int_equal(atomic_load(&n_ctx_free), 1);
	pthread_cond_destroy(&g.cond);
	pthread_mutex_destroy(&g.lock);
}

/* Destroy after every task has finished; then on NULL and on a cleared
 * pointer (no-ops). */
static void test_destroy_finished_and_null(void **state)
{
	(void)state;
	pool_t *p = pool_new(3, ctx_new, ctx_free);
	assert_non_null(p);
	struct count_task *c = count_task_new(0, 30);

	pool_submit(p, &c->t);
	assert_int_equal(wait_finished(1), 0);
	pool_destroy(&p);
	assert_null(p);
	assert_task_complete(c);
	count_task_free(c);

	pool_destroy(&p);      /* cleared pointer: nothing happens */
	assert_null(p);
	pool_destroy(NULL);
	assert_int_equal(atomic_load(&n_ctx_free), 3);
}

/* Every context: made once by its worker, used only by it, freed once by
 * it; all distinct. */
static void test_contexts_once_per_worker(void **state)
{
	(void)state;
	pool_t *p = pool_new(6, ctx_new, ctx_free);
	assert_non_null(p);
	struct count_task *c[8];

	for (int i = 0; i < 8; i++) {
		c[i] = count_task_new(i, 64);
		atomic_store(&c[i]->item_delay_us, 100);
		pool_submit(p, &c[i]->t);
	}
	assert_int_equal(wait_finished(8), 0);
	pool_destroy(&p);

	assert_int_equal(atomic_load(&n_ctx_calls), 6);
	assert_int_equal(atomic_load(&n_ctx_new), 6);
	assert_int_equal(atomic_load(&n_ctx_free), 6);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(atomic_load(&ctxs[i].frees), 1);
		for (int j = 0; j < i; j++)
			assert_false(pthread_equal(ctxs[i].owner, ctxs[j].owner));
	}
	assert_int_equal(atomic_load(&wrong_thread), 0);
	for (int i = 0; i < 8; i++) {
		assert_task_complete(c[i]);
		count_task_free(c[i]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_new_waits_for_every_worker, reset_all),
		cmocka_unit_test_setup(test_new_fails_cleanly, reset_all),
		cmocka_unit_test_setup(test_task_items_once_done_last, reset_all),
		cmocka_unit_test_setup(test_small_tasks, reset_all),
		cmocka_unit_test_setup(test_many_concurrent_tasks, reset_all),
		cmocka_unit_test_setup(test_fifo_order, reset_all),
		cmocka_unit_test_setup(test_depth_and_destroy_drains, reset_all),
		cmocka_unit_test_setup(test_destroy_finished_and_null, reset_all),
		cmocka_unit_test_setup(test_contexts_once_per_worker, reset_all),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
