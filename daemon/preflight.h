/*
 * preflight.h — start-up steps and checks for the serving loop: the
 * signal mask, and what libzmq would otherwise meet with an assertion (no
 * thread), or silently (an ipc:// path another daemon serves).
 */
#ifndef CUTMIXD_PREFLIGHT_H
#define CUTMIXD_PREFLIGHT_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

/* The signals the server reads through its signalfd: SIGTERM and SIGINT
 * stop it, SIGHUP reloads. */
void preflight_signal_set(sigset_t *mask);

/* Block those in the calling thread and ignore SIGPIPE. Call it before
 * any other thread starts: threads inherit the mask, so no thread takes
 * a signal meant for the signalfd. */
void preflight_block_signals(void);

/* Whether two threads (libzmq's reaper and I/O thread) can run at once.
 * 0, or -errno with a message. */
int preflight_threads(char *err, size_t errlen);

/*
 * For an ipc:// endpoint (others: 0, *lock_fd = -1): take PATH.lock (an
 * flock held while *lock_fd stays open; -1 when the folder allows none)
 * and refuse (-EADDRINUSE, message) when another process holds it or
 * accepts a connect on PATH.
 */
int preflight_ipc(const char *ep, int *lock_fd, char *err, size_t errlen);

/*
 * Bind the ROUTER to `ep` after preflight_ipc (its lock, if any, in
 * *lock_fd, kept open by the caller, also on an error: -1 when none);
 * warn when a not `authenticated` endpoint is reachable from other
 * machines. 0, or -errno with a message.
 */
int preflight_bind(void *router, const char *ep, bool authenticated, int *lock_fd,
		   char *err, size_t errlen);

/*
 * [server] tcp_sndbuf_kb: ZMQ_SNDBUF of the (not yet bound) ROUTER, which
 * libzmq applies to every accepted connection; 0 leaves the kernel's
 * autotuning. Warns when net.core.wmem_max will cap it. 0, or -errno
 * with a message.
 */
int preflight_sndbuf(void *router, unsigned kb, char *err, size_t errlen);

#endif
