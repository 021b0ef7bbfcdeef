/*
 * bufpool.c — see bufpool.h.
 *
 * DESIGN
 * - `lock` guards `idle[]`, `n_idle` and `limit`; mmap/munmap run outside it.
 * - Each buffer starts with a 64-byte header holding its mapping length,
 *   so bufpool_put needs no size. A buffer is reused for a request of its
 *   mapping length or somewhat smaller (up to a third less: the short last
 *   batch of an epoch takes a full batch's buffer instead of faulting in a
 *   fresh mapping); the smallest fitting idle buffer is taken.
 * - High-water rule (bufpool_bound_by_peak, the daemon turns it on): a
 *   returned buffer is kept only while the buffers held
 *   (in use + idle) stay within the most ever in use at once (`peak`), and
 *   `limit` caps the idle ones. So the pool never makes the daemon hold more
 *   than its busiest moment did (peak RSS unchanged), and in the steady
 *   state every get is served from the pool: no page faults, no zeroing, no
 *   munmap on the hot path. With limit 1 a burst of two releases before the
 *   next get unmapped one of them: measured 2365 minor faults per batch
 *   (half the batches on fresh pages; scripts/faults.py).
 * - Fresh mappings are MAP_POPULATE'd: the kernel faults the whole buffer in
 *   one call instead of one trap per 4 KiB page while the resize writes it.
 */
#include "bufpool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#define HEADER 64
#define MAX_IDLE 64

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static void *idle[MAX_IDLE];
static unsigned n_idle;
static unsigned limit = 4;
static unsigned live, peak;   /* buffers handed out now / at most so far */
static bool peak_bound;       /* bufpool_bound_by_peak() */

static size_t map_len(size_t size)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	return (size + HEADER + page - 1) / page * page;
}

void *bufpool_get(size_t size)
{
	size_t len = map_len(size);
	void *base = NULL;

	unsigned best = MAX_IDLE;

	pthread_mutex_lock(&lock);
	for (unsigned i = 0; i < n_idle; i++) {
		size_t have = *(size_t *)idle[i];

		if (have >= len && have - len <= have / 3 &&
		    (best == MAX_IDLE || have < *(size_t *)idle[best]))
			best = i;
	}
	if (best != MAX_IDLE) {
		base = idle[best];
		idle[best] = idle[--n_idle];
	}
	pthread_mutex_unlock(&lock);
	if (!base) {
		base = mmap(NULL, len, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
		if (base == MAP_FAILED)
			return NULL;
		*(size_t *)base = len;
	}
	pthread_mutex_lock(&lock);
	if (++live > peak)
		peak = live;
	pthread_mutex_unlock(&lock);
	return (uint8_t *)base + HEADER;
}

void bufpool_put(void *buf)
{
	void *base, *drop = NULL;

	if (!buf)
		return;
	base = (uint8_t *)buf - HEADER;
	pthread_mutex_lock(&lock);
	if (live > 0)
		live--;
	if (n_idle < limit && (!peak_bound || live + n_idle < peak)) {
		idle[n_idle++] = base;
	} else {
		drop = base;
	}
	pthread_mutex_unlock(&lock);
	if (drop)
		munmap(drop, *(size_t *)drop);
}

void bufpool_free_cb(void *data, void *hint)
{
	(void)hint;
	bufpool_put(data);
}

void bufpool_set_limit(unsigned n)
{
	void *drop[MAX_IDLE];
	unsigned nd = 0;

	if (n > MAX_IDLE)
		n = MAX_IDLE;
	pthread_mutex_lock(&lock);
	limit = n;
	while (n_idle > limit)
		drop[nd++] = idle[--n_idle];
	pthread_mutex_unlock(&lock);
	while (nd > 0) {
		nd--;
		munmap(drop[nd], *(size_t *)drop[nd]);
	}
}

void bufpool_bound_by_peak(bool on)
{
	pthread_mutex_lock(&lock);
	peak_bound = on;
	peak = live; /* the busiest moment from now on */
	pthread_mutex_unlock(&lock);
}

unsigned bufpool_idle(void)
{
	pthread_mutex_lock(&lock);
	unsigned n = n_idle;
	pthread_mutex_unlock(&lock);
	return n;
}
