/*
 * fdlimit.h — make room in the descriptor table before serving.
 *
 * Every connected client holds a descriptor, and libzmq's ipc:// listener
 * aborts the whole process when accept() fails with EMFILE (it asserts on
 * the errno; its TCP listener does not). A shell's default soft limit
 * (1024) is no more than the default max_clients, so the daemon raises
 * its soft RLIMIT_NOFILE to the hard limit at start (it uses poll/epoll
 * only, never select, so a high limit is safe) and warns when even that
 * leaves less than `need` descriptors.
 */
#ifndef CUTMIXD_FDLIMIT_H
#define CUTMIXD_FDLIMIT_H

#include <stdint.h>

/* Raise the soft RLIMIT_NOFILE to the hard one; logs what it did, and a
 * warning when the limit in force is below `need`. Returns the soft limit
 * in force afterwards (0 when it cannot be read). */
uint64_t fdlimit_raise(uint64_t need);

#endif
