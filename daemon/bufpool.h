/*
 * bufpool.h — recycled buffers for batch images, the largest allocations
 * in the daemon (a 128 x 224 x 224 x 3 batch is 18.4 MiB).
 *
 * Buffers are mmap'ed, so a released one goes back to the kernel, and up
 * to `limit` of them are kept for reuse, so the steady state faults in no
 * fresh pages (the profile showed page faults, zeroing and munmap at 5.5%
 * of the daemon's CPU before the pool). Thread safe: ZeroMQ's free
 * callback returns buffers from its I/O thread.
 */
#ifndef CUTMIXD_BUFPOOL_H
#define CUTMIXD_BUFPOOL_H

#include <stdbool.h>
#include <stddef.h>

/* A buffer of at least `size` bytes, 64-byte aligned; NULL if out of memory. */
void *bufpool_get(size_t size);
/* Give a buffer back (NULL-safe): kept for reuse (while the idle ones stay
 * within the limit and, with bufpool_bound_by_peak, the buffers held
 * within the most ever in use at once) or unmapped. */
void bufpool_put(void *buf);
/* zmq_msg_init_data free callback: bufpool_put(data). */
void bufpool_free_cb(void *data, void *hint);
/* Keep at most `n` idle buffers (default 4); extra ones are released. */
void bufpool_set_limit(unsigned n);
/* On: a released buffer is kept only while the buffers held (in use +
 * idle) stay within the most ever in use at once, so a generous limit
 * costs no RSS beyond the busiest moment (default off). Turning it on
 * starts the count of the peak afresh (from the buffers in use now). */
void bufpool_bound_by_peak(bool on);
/* Idle buffers held now (tests, stats). */
unsigned bufpool_idle(void);

#endif
