/*
 * bindcheck.h — `cutmixd --check` tries every endpoint the way the daemon
 * will bind it, then lets it go, so that an address already in use fails
 * the check (exit 70, as the daemon itself would) instead of passing it
 * and sending a unit with Restart=on-failure into a restart loop.
 *
 * An ipc:// path is first probed with a plain connect(): libzmq's bind
 * would unlink the socket file of a daemon serving there and take the
 * path over (the running daemon then unreachable), so a path that accepts
 * a connection is reported in use and never bound. A stale socket file
 * (nobody listening) is bound and released, as the daemon's start would.
 */
#ifndef CUTMIXD_BINDCHECK_H
#define CUTMIXD_BINDCHECK_H

#include <stddef.h>

#include "config.h"

/* The `[server] metrics` HOST:PORT (when set) is bound and released too.
 * 0, or -errno with "endpoint 'X': cannot bind: why" (or "[server] metrics
 * 'HOST:PORT': cannot bind: why") in err. */
int bindcheck_endpoints(const struct server_cfg *sv, char *err, size_t errlen);

#endif
