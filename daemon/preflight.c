/*
 * preflight.c — checks made before libzmq gets a chance to abort or to
 * take over an endpoint (preflight.h).
 */
#include "preflight.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <zmq.h>

#include "log.h"

void preflight_signal_set(sigset_t *mask)
{
	sigemptyset(mask);
	sigaddset(mask, SIGTERM);
	sigaddset(mask, SIGINT);
	sigaddset(mask, SIGHUP);
}

void preflight_block_signals(void)
{
	sigset_t mask;

	preflight_signal_set(&mask);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
}

struct idle_gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool go;
};

static void *idle_thread(void *arg)
{
	struct idle_gate *g = arg;

	pthread_mutex_lock(&g->lock);
	while (!g->go)
		pthread_cond_wait(&g->cond, &g->lock);
	pthread_mutex_unlock(&g->lock);
	return NULL;
}

/*
 * libzmq starts its reaper and I/O thread with the first socket and aborts
 * (an assertion) when it cannot: start two threads like them first, alive
 * at the same time, and fail cleanly when that is impossible (RLIMIT_AS,
 * RLIMIT_NPROC). Their stacks go to glibc's cache, where libzmq's threads
 * find them.
 */
int preflight_threads(char *err, size_t errlen)
{
	struct idle_gate g = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false };
	pthread_t t[2];
	int n = 0, rc = 0;

	for (; n < 2; n++) {
		rc = pthread_create(&t[n], NULL, idle_thread, &g);
		if (rc)
			break;
	}
	pthread_mutex_lock(&g.lock);
	g.go = true;
	pthread_cond_broadcast(&g.cond);
	pthread_mutex_unlock(&g.lock);
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	if (rc)
		snprintf(err, errlen, "cannot start ZeroMQ's threads: %s (a memory or "
			 "process limit: RLIMIT_AS, RLIMIT_NPROC?)", strerror(rc));
	return rc ? -rc : 0;
}

/*
 * Before binding an ipc:// endpoint: take a lock file beside the socket
 * (PATH.lock, flock, held until exit) and refuse when another process
 * holds it or answers a connect on PATH; libzmq would otherwise unlink
 * the other daemon's socket and take the endpoint over silently.
 */
int preflight_ipc(const char *ep, int *lock_fd, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char lock[sizeof(sa.sun_path) + 8];
	const char *path = ep + 6;
	int fd;

	*lock_fd = -1;
	if (strncmp(ep, "ipc://", 6) != 0 || path[0] == '@' || strlen(path) >= sizeof(sa.sun_path))
		return 0; /* abstract or over-long: libzmq's own checks apply */
	snprintf(lock, sizeof(lock), "%s.lock", path);
	fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK) {
		close(fd);
		snprintf(err, errlen, "cannot bind '%s': another process serves it (it holds '%s')",
			 ep, lock);
		return -EADDRINUSE;
	}
	*lock_fd = fd;
	/* no lock file (read-only folder) or an older daemon: ask the socket */
	int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c < 0)
		return 0;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int rc = connect(c, (struct sockaddr *)&sa, sizeof(sa));
	close(c);
	if (rc == 0) {
		snprintf(err, errlen, "cannot bind '%s': another process serves it (it "
			 "accepted a connection)", ep);
		if (fd >= 0)
			close(fd);
		*lock_fd = -1;
		return -EADDRINUSE;
	}
	return 0;
}

static bool endpoint_is_loopback(const char *ep)
{
	if (strncmp(ep, "tcp://", 6) != 0)
		return true; /* ipc://, inproc:// stay on the machine */
	const char *h = ep + 6;
	return strncmp(h, "127.", 4) == 0 || strncmp(h, "localhost:", 10) == 0 ||
	       strncmp(h, "[::1]:", 6) == 0;
}

int preflight_bind(void *router, const char *ep, bool authenticated, int *lock_fd,
		   char *err, size_t errlen)
{
	int rc = preflight_ipc(ep, lock_fd, err, errlen);

	if (rc)
		return rc;
	if (zmq_bind(router, ep) < 0) {
		snprintf(err, errlen, "cannot bind '%s': %s", ep, zmq_strerror(errno));
		return -EADDRNOTAVAIL;
	}
	if (!authenticated && !endpoint_is_loopback(ep))
		log_warning("server: '%s' is reachable from other machines and not authenticated: any client there can read the dataset",
			    ep);
	return 0;
}

/* An explicit size turns autotuning off for the socket, and the kernel
 * silently caps it at net.core.wmem_max (then doubles it): a size above
 * the cap is not what the operator asked for, so say so. */
int preflight_sndbuf(void *router, unsigned kb, char *err, size_t errlen)
{
	int v = (int)kb * 1024;
	long max = -1;
	FILE *f;

	if (!kb)
		return 0;
	if (zmq_setsockopt(router, ZMQ_SNDBUF, &v, sizeof(v))) {
		int e = errno;

		snprintf(err, errlen, "zmq ZMQ_SNDBUF %d: %s", v, zmq_strerror(e));
		return -e;
	}
	f = fopen("/proc/sys/net/core/wmem_max", "r");
	if (f && fscanf(f, "%ld", &max) != 1)
		max = -1;
	if (f)
		fclose(f);
	if (max >= 0 && v > max)
		log_warning("server: tcp_sndbuf_kb %u is above net.core.wmem_max (%ld bytes): "
			    "the kernel caps each connection's send buffer at that", kb, max);
	else
		log_info("server: tcp send buffer %d bytes per connection", v);
	return 0;
}
