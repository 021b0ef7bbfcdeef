/*
 * stats.h — process-wide counters, updated with relaxed atomics from any
 * thread and read by the server for `stats` replies and systemd STATUS=.
 */
#ifndef CUTMIXD_STATS_H
#define CUTMIXD_STATS_H

#include <stdatomic.h>
#include <stdint.h>

struct stats {
	atomic_uint_fast64_t requests;      /* every request frame received */
	atomic_uint_fast64_t bad_requests;  /* answered with an error */
	atomic_uint_fast64_t dropped;       /* from clients that do not read */
	atomic_uint_fast64_t batches;       /* batch replies sent */
	atomic_uint_fast64_t images;        /* samples in those batches */
	atomic_uint_fast64_t bytes_sent;    /* body bytes of batch replies */
	atomic_uint_fast64_t decode_errors; /* failed decode attempts */
	atomic_uint_fast64_t replaced;      /* samples filled by a replacement */
	atomic_uint_fast64_t bad_files;     /* distinct files that failed, per config generation */
	atomic_uint_fast64_t cache_hits;    /* batch requests answered from the cache */
	atomic_uint_fast64_t cache_misses;  /* ... computed (cache on) */
	atomic_uint_fast64_t cache_bytes;   /* gauge: bytes held by the cache */
	atomic_uint_fast64_t cache_entries; /* gauge: batches held by the cache */
	atomic_uint_fast64_t shm_batches;   /* batch replies through shared memory */
	atomic_uint_fast64_t shm_fallbacks; /* shm asked, copied (no slot, bad session) */
	atomic_uint_fast64_t shm_bad_releases; /* SHM_RELEASE naming no held slot */
	atomic_uint_fast64_t shm_sessions;  /* gauge: open sessions */
	atomic_uint_fast64_t shm_bytes;     /* gauge: bytes mapped for them */
	double started;                     /* monotonic seconds at start */
};

#define stats_add(s, field, n) \
	atomic_fetch_add_explicit(&(s)->field, (n), memory_order_relaxed)
#define stats_get(s, field) \
	((uint64_t)atomic_load_explicit(&(s)->field, memory_order_relaxed))

/* Monotonic clock in seconds. */
double stats_now(void);
/* Resident set size of this process in bytes (from /proc), 0 if unknown. */
uint64_t stats_rss_bytes(void);

#endif
