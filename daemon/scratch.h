/*
 * scratch.h — per-thread working buffers that only grow (decoder rows,
 * resampling coefficients, mixing scratch): after warm-up the hot path
 * allocates nothing.
 */
#ifndef CUTMIXD_SCRATCH_H
#define CUTMIXD_SCRATCH_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

/* Grow *buf to at least `need` bytes (doubling, from 4 KiB); the contents
 * are not kept. Returns 0 or -ENOMEM (the old buffer stays valid). */
static inline int scratch_grow(void **buf, size_t *cap, size_t need)
{
	size_t n;
	void *p;

	if (need <= *cap)
		return 0;
	n = *cap ? *cap : 4096;
	while (n < need) {
		if (n > SIZE_MAX / 2) {
			n = need;
			break;
		}
		n *= 2;
	}
	p = malloc(n);
	if (!p)
		return -ENOMEM;
	free(*buf);
	*buf = p;
	*cap = n;
	return 0;
}

/* Grow *p to at least `need` bytes keeping its contents (doubling, from
 * 256 bytes): the growing arrays of the tar index and the shard table.
 * 0 or -ENOMEM (the old block stays valid). */
static inline int scratch_grow_keep(void **p, size_t *cap, size_t need)
{
	size_t n = *cap ? *cap : 256;
	void *np;

	if (need <= *cap)
		return 0;
	while (n < need) {
		if (n > SIZE_MAX / 2)
			return -ENOMEM;
		n *= 2;
	}
	np = realloc(*p, n);
	if (!np)
		return -ENOMEM;
	*p = np;
	*cap = n;
	return 0;
}

#endif
