/*
 * bufpool.c — see bufpool.h.
 *
 * DESIGN
 * - `lock` guards `idle[]`, `n_idle` and `limit`; mmap/munmap run outside it.
 * - Each buffer starts with a 64-byte header holding its mapping length,
 *   so bufpool_put needs no size. A buffer is reused only for a request of
 *   the same mapping length (pipelines have fixed batch sizes; the short
 *   last batch of an epoch maps its own).
 */
#include "bufpool.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#define HEADER 64
#define MAX_IDLE 64

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static void *idle[MAX_IDLE];
static unsigned n_idle;
static unsigned limit = 4;

static size_t map_len(size_t size)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	return (size + HEADER + page - 1) / page * page;
}

void *bufpool_get(size_t size)
{
	size_t len = map_len(size);
	void *base = NULL;

	pthread_mutex_lock(&lock);
	for (unsigned i = n_idle; i-- > 0;) {
		if (*(size_t *)idle[i] == len) {
			base = idle[i];
			idle[i] = idle[--n_idle];
			break;
		}
	}
	pthread_mutex_unlock(&lock);
	if (!base) {
		base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (base == MAP_FAILED)
			return NULL;
		*(size_t *)base = len;
	}
	return (uint8_t *)base + HEADER;
}

void bufpool_put(void *buf)
{
	void *base, *drop = NULL;

	if (!buf)
		return;
	base = (uint8_t *)buf - HEADER;
	pthread_mutex_lock(&lock);
	if (n_idle < limit) {
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

unsigned bufpool_idle(void)
{
	pthread_mutex_lock(&lock);
	unsigned n = n_idle;
	pthread_mutex_unlock(&lock);
	return n;
}
