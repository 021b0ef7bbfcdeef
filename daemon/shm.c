/*
 * shm.c — shared-memory sessions (shm.h): the memfds, their slots, and the
 * abstract side socket that hands a memfd to the client that proved, with
 * the one-time token of its SHM_OPEN reply, that it is that client.
 *
 * DESIGN
 * - Serving thread only. Side connections are non-blocking and live in a
 *   fixed table (SHM_MAX_CONNS) with a deadline; one that sends nothing,
 *   too little or a wrong token is closed, never waited for. When the
 *   table is full, the oldest connection is closed to make room: a flood
 *   of silent connections delays a real client's handshake, it cannot
 *   block it for long (the client falls back to copies if it fails).
 * - A slot is written only while it is free: shm_slot_take marks it held
 *   and bumps its generation; only a matching SHM_RELEASE (same peer,
 *   session, slot, generation) frees it. A session that expires is
 *   unmapped here; the client's own mapping keeps the pages alive for it.
 * - Seals: the daemon maps the memfd read-write first, then seals it
 *   F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL, so a
 *   client can neither truncate it (which would SIGBUS the daemon's next
 *   write) nor map it writable, nor undo the seals.
 */
#include "shm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

struct session {
	uint64_t id;
	uint8_t peer[255];
	uint8_t peer_len;
	uint8_t token[WIRE_SHM_TOKEN_SIZE];
	bool handed;          /* token used: the client has the memfd */
	double token_deadline;
	double last_used;
	int memfd;
	uint8_t *map;
	uint64_t slot_size;
	uint32_t slots;
	uint32_t gen[SHM_MAX_SLOTS];
	bool held[SHM_MAX_SLOTS];
	struct session *next;
};

struct conn {
	int fd;               /* -1: free */
	double deadline;
	size_t got;
	uint8_t buf[WIRE_SHM_TOKEN_SIZE];
};

struct shm {
	int lfd, efd;
	double accept_paused; /* > 0: lfd out of the epoll set until then */
	char name[WIRE_SHM_NAME_MAX]; /* "@cutmixd-shm-PID-HEX" */
	uint64_t max_bytes;
	uint32_t max_slots;
	struct session *sessions;
	struct shm_usage use;
	struct conn conns[SHM_MAX_CONNS];
};

static int random_bytes(void *buf, size_t n)
{
	uint8_t *p = buf;

	while (n) {
		ssize_t r = getrandom(p, n, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static int listen_abstract(shm_t *sh, char *err, size_t errlen)
{
	struct sockaddr_un a;
	uint32_t r = 0;

	random_bytes(&r, sizeof(r));
	snprintf(sh->name, sizeof(sh->name), "@cutmixd-shm-%ld-%08x", (long)getpid(), r);
	memset(&a, 0, sizeof(a));
	a.sun_family = AF_UNIX;
	size_t n = strlen(sh->name);
	memcpy(a.sun_path + 1, sh->name + 1, n - 1); /* abstract: leading NUL */
	sh->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (sh->lfd < 0 ||
	    bind(sh->lfd, (struct sockaddr *)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) ||
	    listen(sh->lfd, 128)) {
		snprintf(err, errlen, "shm: side socket '%s': %s", sh->name, strerror(errno));
		return -1;
	}
	return 0;
}

shm_t *shm_new(uint64_t max_bytes, uint32_t max_slots, char *err, size_t errlen)
{
	shm_t *sh = calloc(1, sizeof(*sh));
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = 0 };

	if (!sh) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	sh->lfd = sh->efd = -1;
	sh->max_bytes = max_bytes;
	sh->max_slots = max_slots < 1 ? 1 : max_slots > SHM_MAX_SLOTS ? SHM_MAX_SLOTS : max_slots;
	for (int i = 0; i < SHM_MAX_CONNS; i++)
		sh->conns[i].fd = -1;
	if (listen_abstract(sh, err, errlen))
		goto out_fail;
	sh->efd = epoll_create1(EPOLL_CLOEXEC);
	if (sh->efd < 0 || epoll_ctl(sh->efd, EPOLL_CTL_ADD, sh->lfd, &ev)) {
		snprintf(err, errlen, "shm: epoll: %s", strerror(errno));
		goto out_fail;
	}
	return sh;

out_fail:
	shm_destroy(&sh);
	return NULL;
}

static void session_free(shm_t *sh, struct session *se)
{
	uint64_t bytes = se->slot_size * se->slots;

	if (se->map)
		munmap(se->map, bytes);
	if (se->memfd >= 0)
		close(se->memfd);
	if (se->map) {
		sh->use.bytes -= bytes;
		sh->use.sessions--;
	}
	free(se);
}

static void conn_close(shm_t *sh, struct conn *c)
{
	if (c->fd < 0)
		return;
	epoll_ctl(sh->efd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	c->got = 0;
}

void shm_destroy(shm_t **sp)
{
	shm_t *sh = sp ? *sp : NULL;

	if (!sh)
		return;
	for (int i = 0; i < SHM_MAX_CONNS; i++)
		conn_close(sh, &sh->conns[i]);
	while (sh->sessions) {
		struct session *se = sh->sessions;
		sh->sessions = se->next;
		session_free(sh, se);
	}
	if (sh->lfd >= 0)
		close(sh->lfd);
	if (sh->efd >= 0)
		close(sh->efd);
	free(sh);
	*sp = NULL;
}

int shm_fd(const shm_t *sh)
{
	return sh->efd;
}

struct shm_usage shm_usage(const shm_t *sh)
{
	return sh->use;
}

/* The memfd of a new session, mapped read-write here, then sealed. */
static int session_map(struct session *se)
{
	uint64_t bytes = se->slot_size * se->slots;
	int seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL;

	se->memfd = memfd_create("cutmixd-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (se->memfd < 0 || ftruncate(se->memfd, (off_t)bytes))
		return -errno;
	void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
		       se->memfd, 0);
	if (m == MAP_FAILED)
		return -errno;
	se->map = m;
	/* Without the seals a client could shrink the file under us: no
	 * session rather than one the daemon cannot trust. */
	if (fcntl(se->memfd, F_ADD_SEALS, seals))
		return -errno;
	return 0;
}

int shm_session_open(shm_t *sh, const uint8_t *id, size_t idlen, uint32_t slots,
		     uint64_t slot_size, double now, struct wire_shm_open *o)
{
	struct session *se;
	int rc;

	if (slots < 1 || slots > sh->max_slots)
		slots = sh->max_slots;
	if (idlen > sizeof(se->peer) || slot_size == 0)
		return -EINVAL;
	if (sh->use.sessions >= SHM_MAX_SESSIONS ||
	    sh->use.bytes + slot_size * slots > sh->max_bytes)
		return -ENOSPC;
	se = calloc(1, sizeof(*se));
	if (!se)
		return -ENOMEM;
	se->memfd = -1;
	se->slots = slots;
	se->slot_size = slot_size;
	memcpy(se->peer, id, idlen);
	se->peer_len = (uint8_t)idlen;
	if ((rc = random_bytes(&se->id, sizeof(se->id))) ||
	    (rc = random_bytes(se->token, sizeof(se->token))))
		goto out_free;
	rc = session_map(se);
	if (se->map) {
		sh->use.bytes += slot_size * slots;
		sh->use.sessions++;
	}
	if (rc)
		goto out_free;
	se->token_deadline = now + SHM_TOKEN_TTL_S;
	se->last_used = now;
	se->next = sh->sessions;
	sh->sessions = se;
	memset(o, 0, sizeof(*o));
	o->session = se->id;
	o->slots = slots;
	o->slot_size = slot_size;
	memcpy(o->token, se->token, sizeof(o->token));
	memcpy(o->name, sh->name, sizeof(o->name));
	return 0;

out_free:
	session_free(sh, se);
	return rc;
}

/* ---- the side socket -------------------------------------------------- */

static bool same_bytes(const uint8_t *a, const uint8_t *b, size_t n)
{
	uint8_t d = 0;

	for (size_t i = 0; i < n; i++) /* constant time: no early exit */
		d |= a[i] ^ b[i];
	return d == 0;
}

/* Send the session id with the memfd attached. */
static int send_fd(int fd, const struct session *se)
{
	uint8_t idb[8];
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { idb, sizeof(idb) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

	for (int i = 0; i < 8; i++)
		idb[i] = (uint8_t)(se->id >> (8 * i));
	memset(u.buf, 0, sizeof(u.buf));
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &se->memfd, sizeof(int));
	return sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)sizeof(idb) ? 0 : -1;
}

/* A whole token arrived on c: hand over the memfd of its session. */
static void conn_token(shm_t *sh, struct conn *c, double now)
{
	for (struct session *se = sh->sessions; se; se = se->next) {
		bool match = same_bytes(se->token, c->buf, sizeof(c->buf));
		if (!match || se->handed || now > se->token_deadline)
			continue;
		se->handed = true; /* single use, sent or not */
		memset(se->token, 0, sizeof(se->token));
		if (send_fd(c->fd, se))
			log_info("shm: could not pass the memfd: %s", strerror(errno));
		return;
	}
	log_info("shm: side connection with an unknown or used token: closed");
}

static void conn_read(shm_t *sh, struct conn *c, double now)
{
	ssize_t n = recv(c->fd, c->buf + c->got, sizeof(c->buf) - c->got, MSG_DONTWAIT);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_close(sh, c);
		return;
	}
	c->got += (size_t)n;
	if (c->got == sizeof(c->buf)) {
		conn_token(sh, c, now);
		conn_close(sh, c);
	}
}

/*
 * accept4 failing for want of fds or memory leaves the connection queued,
 * so the side socket would stay readable and the serving loop spin: take
 * it out of the epoll set for a second (the client meanwhile gets
 * copies, or its handshake times out and it does).
 */
static void accept_pause(shm_t *sh, double now)
{
	if (errno != EMFILE && errno != ENFILE && errno != ENOBUFS && errno != ENOMEM)
		return;
	if (epoll_ctl(sh->efd, EPOLL_CTL_DEL, sh->lfd, NULL) == 0) {
		sh->accept_paused = now + 1.0;
		log_warning("shm: side socket accept: %s; paused for 1 s", strerror(errno));
	}
}

static void accept_resume(shm_t *sh, double now)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = 0 };

	if (sh->accept_paused > 0 && now >= sh->accept_paused &&
	    epoll_ctl(sh->efd, EPOLL_CTL_ADD, sh->lfd, &ev) == 0)
		sh->accept_paused = 0;
}

static void conns_accept(shm_t *sh, double now)
{
	for (int k = 0; k < 64; k++) {
		int fd = accept4(sh->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			accept_pause(sh, now);
			return;
		}
		struct conn *c = NULL, *oldest = &sh->conns[0];
		for (int i = 0; i < SHM_MAX_CONNS && !c; i++) {
			if (sh->conns[i].fd < 0)
				c = &sh->conns[i];
			else if (sh->conns[i].deadline < oldest->deadline)
				oldest = &sh->conns[i];
		}
		struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP };
		if (!c) { /* table full: the oldest makes room (silent ones age out first) */
			conn_close(sh, oldest);
			c = oldest;
		}
		ev.data.u32 = (uint32_t)(c - sh->conns) + 1;
		if (epoll_ctl(sh->efd, EPOLL_CTL_ADD, fd, &ev)) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->got = 0;
		c->deadline = now + SHM_CONN_TTL_S;
	}
}

void shm_handle(shm_t *sh, double now)
{
	struct epoll_event ev[SHM_MAX_CONNS + 1];
	int n;

	accept_resume(sh, now);
	n = epoll_wait(sh->efd, ev, SHM_MAX_CONNS + 1, 0);

	for (int i = 0; i < n; i++) {
		uint32_t k = ev[i].data.u32;
		if (k == 0)
			conns_accept(sh, now);
		else if (k <= SHM_MAX_CONNS && sh->conns[k - 1].fd >= 0)
			conn_read(sh, &sh->conns[k - 1], now);
	}
	for (int i = 0; i < SHM_MAX_CONNS; i++)
		if (sh->conns[i].fd >= 0 && now > sh->conns[i].deadline)
			conn_close(sh, &sh->conns[i]);
}

/* ---- slots ------------------------------------------------------------ */

static struct session *session_of(shm_t *sh, uint64_t id, const uint8_t *peer, size_t len)
{
	for (struct session *se = sh->sessions; se; se = se->next)
		if (se->id == id)
			return se->peer_len == len && memcmp(se->peer, peer, len) == 0 ? se : NULL;
	return NULL;
}

uint8_t *shm_slot_take(shm_t *sh, uint64_t session, const uint8_t *id, size_t idlen,
		       uint64_t bytes, uint32_t *slot, uint32_t *gen, double now)
{
	struct session *se = session_of(sh, session, id, idlen);

	if (!se || !se->handed || bytes > se->slot_size)
		return NULL;
	se->last_used = now;
	for (uint32_t i = 0; i < se->slots; i++) {
		if (se->held[i])
			continue;
		se->held[i] = true;
		*slot = i;
		*gen = ++se->gen[i];
		return se->map + (uint64_t)i * se->slot_size;
	}
	return NULL;
}

void shm_slot_undo(shm_t *sh, uint64_t session, uint32_t slot)
{
	for (struct session *se = sh->sessions; se; se = se->next)
		if (se->id == session && slot < se->slots)
			se->held[slot] = false;
}

/* The session's end, asked for by its client (slot SHM_SLOT_CLOSE). */
static int session_close(shm_t *sh, struct session *target)
{
	for (struct session **pp = &sh->sessions; *pp; pp = &(*pp)->next)
		if (*pp == target) {
			*pp = target->next;
			session_free(sh, target);
			return 0;
		}
	return -EINVAL;
}

int shm_release(shm_t *sh, uint64_t session, const uint8_t *id, size_t idlen,
		uint32_t slot, uint32_t gen, double now)
{
	struct session *se = session_of(sh, session, id, idlen);

	if (se && slot == SHM_SLOT_CLOSE)
		return session_close(sh, se);
	if (!se || slot >= se->slots || !se->held[slot] || se->gen[slot] != gen)
		return -EINVAL;
	se->held[slot] = false;
	se->last_used = now;
	return 0;
}

void shm_expire(shm_t *sh, double now, double idle_s)
{
	struct session **pp = &sh->sessions;

	while (*pp) {
		struct session *se = *pp;
		bool unused = !se->handed && now > se->token_deadline;
		if (unused || now - se->last_used > idle_s) {
			*pp = se->next;
			log_info("shm: session %016llx closed (%s)", (unsigned long long)se->id,
				 unused ? "token not used" : "idle");
			session_free(sh, se);
		} else {
			pp = &se->next;
		}
	}
}
