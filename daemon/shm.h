/*
 * shm.h — shared-memory sessions for local clients: batches written into a
 * memfd that the client maps read-only, instead of copied through the
 * socket (proto/PROTOCOL.md section "Shared memory").
 *
 * A session is opened by an SHM_OPEN request on the ZeroMQ socket (so
 * CURVE/ZAP covers it) and bound to that peer's routing id. The reply
 * names an abstract AF_UNIX socket and a one-time token; the client
 * connects there, writes the token and receives the session id and the
 * memfd (SCM_RIGHTS). The memfd is sealed against shrinking, growing and
 * writable mappings by anyone but the daemon, which mapped it before.
 *
 * Everything here runs on the serving thread; nothing is locked.
 */
#ifndef CUTMIXD_SHM_H
#define CUTMIXD_SHM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

typedef struct shm shm_t;

#define SHM_MAX_SLOTS 64      /* per session */
#define SHM_MAX_SESSIONS 256  /* in all */
#define SHM_MAX_CONNS 16      /* side-socket connections being served */
#define SHM_TOKEN_TTL_S 5.0   /* an unused token expires (and its session) */
#define SHM_CONN_TTL_S 2.0    /* a side connection must send its token by then */

/* Parts of a slot start on 64-byte boundaries. */
#define SHM_ALIGN(x) (((uint64_t)(x) + 63) & ~(uint64_t)63)

struct shm_usage {
	uint32_t sessions;
	uint64_t bytes;       /* mapped by the daemon, over all sessions */
};

/* Listen on a new abstract socket. `max_bytes`: the cap over all sessions;
 * `max_slots`: per session. NULL with a message in err. */
shm_t *shm_new(uint64_t max_bytes, uint32_t max_slots, char *err, size_t errlen);
/* Unmaps and closes everything; NULL-safe, clears *sp. */
void shm_destroy(shm_t **sp);
/* An epoll fd that is readable when the side socket has work (shm_handle). */
int shm_fd(const shm_t *sh);

/* A session for peer `id` with `slots` (1..max_slots, capped) of
 * `slot_size` bytes each; fills *o. 0, -ENOSPC (cap reached), -ENOMEM, or
 * another negative errno (memfd, seals). */
int shm_session_open(shm_t *sh, const uint8_t *id, size_t idlen, uint32_t slots,
		     uint64_t slot_size, double now, struct wire_shm_open *o);
/* Accept side connections, read their tokens, pass the memfds; close
 * connections past their deadline. Never blocks. An accept that fails
 * for want of fds or memory takes the side socket out of shm_fd's set
 * for a second (it would stay readable: a busy loop). */
void shm_handle(shm_t *sh, double now);

/* A free slot of at least `bytes` in `session`, when it belongs to peer
 * `id` and its handshake is done: its address, *slot and a new *gen; the
 * slot is held until shm_release. NULL: none (the caller copies). */
uint8_t *shm_slot_take(shm_t *sh, uint64_t session, const uint8_t *id, size_t idlen,
		       uint64_t bytes, uint32_t *slot, uint32_t *gen, double now);
/* Give back a slot taken by shm_slot_take (a reply that could not be
 * built or sent). */
void shm_slot_undo(shm_t *sh, uint64_t session, uint32_t slot);
#define SHM_SLOT_CLOSE UINT32_MAX /* release of this slot: end the session */

/* A client's SHM_RELEASE (slot SHM_SLOT_CLOSE: the whole session). 0, or -EINVAL when it names no slot this peer
 * holds at that generation (ignored; the caller counts it). */
int shm_release(shm_t *sh, uint64_t session, const uint8_t *id, size_t idlen,
		uint32_t slot, uint32_t gen, double now);
/* Drop sessions idle for `idle_s` and those whose token expired unused. */
void shm_expire(shm_t *sh, double now, double idle_s);
struct shm_usage shm_usage(const shm_t *sh);

#endif
