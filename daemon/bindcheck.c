/*
 * bindcheck.c — try-bind every endpoint for --check (bindcheck.h).
 */
#include "bindcheck.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <zmq.h>

#include "metrics.h"

/* Does something accept connections on this ipc:// path? */
static bool ipc_in_use(const char *path)
{
	struct sockaddr_un sa;
	size_t n = strlen(path);
	socklen_t len;
	int fd;
	bool used;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (n == 0 || n >= sizeof(sa.sun_path))
		return false; /* the bind reports it */
	memcpy(sa.sun_path, path, n);
	if (path[0] == '@') /* libzmq: an abstract socket */
		sa.sun_path[0] = '\0';
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] != '@'));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	used = connect(fd, (struct sockaddr *)&sa, len) == 0;
	close(fd);
	return used;
}

int bindcheck_endpoints(const struct server_cfg *sv, char *err, size_t errlen)
{
	const char *bound_ipc[CONFIG_MAX_ENDPOINTS];
	void *ctx = zmq_ctx_new();
	int rc = 0, n_ipc = 0;

	if (!ctx) {
		snprintf(err, errlen, "cannot create a ZeroMQ context: %s",
			 zmq_strerror(errno));
		return -ENOMEM;
	}
	for (int i = 0; i < sv->n_endpoints && rc == 0; i++) {
		const char *ep = sv->endpoints[i];
		void *sock;
		int zero = 0;

		if (!strncmp(ep, "ipc://", 6) && ipc_in_use(ep + 6)) {
			snprintf(err, errlen, "endpoint '%s': cannot bind: address "
				 "already in use (something serves there)", ep);
			rc = -EADDRINUSE;
			break;
		}
		sock = zmq_socket(ctx, ZMQ_ROUTER);
		if (!sock) {
			rc = -errno;
			snprintf(err, errlen, "endpoint '%s': cannot create a socket: %s",
				 ep, zmq_strerror(errno));
			break;
		}
		zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof(zero));
		if (zmq_bind(sock, ep) != 0) {
			rc = -errno;
			snprintf(err, errlen, "endpoint '%s': cannot bind: %s", ep,
				 zmq_strerror(errno));
		} else if (!strncmp(ep, "ipc://", 6) && ep[6] != '@') {
			bound_ipc[n_ipc++] = ep + 6;
		}
		zmq_close(sock);
	}
	zmq_ctx_term(ctx); /* every listener closed */
	/* libzmq 4.3 leaves the socket file of a closed listener behind */
	for (int i = 0; i < n_ipc; i++) {
		struct stat st;

		if (lstat(bound_ipc[i], &st) == 0 && S_ISSOCK(st.st_mode))
			unlink(bound_ipc[i]);
	}
	/* the HTTP metrics listener as well ([server] metrics) */
	if (rc == 0 && sv->metrics)
		rc = metrics_bindcheck(sv->metrics, err, errlen);
	return rc;
}
