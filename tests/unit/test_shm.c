/*
 * test_shm.c — shared-memory sessions (daemon/shm.c): no slot before the
 * handshake; the handshake over the abstract side socket passes a memfd
 * that is sealed (no shrink, no writable mapping) and shows what the
 * daemon wrote; a token works once and a wrong one gets nothing; slots are
 * bound to their peer, handed out once until released at their
 * generation; bad releases are refused; the byte cap and the expiry free
 * the memory; a client's close ends its session. Asserts on the main
 * thread only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include "shm.h"

static const uint8_t PEER[] = { 0, 1, 2, 3, 4 };
static const uint8_t OTHER[] = { 0, 1, 2, 3, 5 };

static int side_connect(const char *name)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	size_t n = strlen(name);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	memcpy(a.sun_path + 1, name + 1, n - 1);
	assert_int_equal(connect(fd, (struct sockaddr *)&a,
				 (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)), 0);
	return fd;
}

/* Let the daemon side work at time `now`, then read the answer on side
 * connection c (closed here): the memfd, or -1 when there is none. */
static int answer(shm_t *sh, int c, double now, uint64_t *sid)
{
	int fd = -1;
	uint8_t idb[8];
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { idb, sizeof(idb) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };

	for (int k = 0; k < 4; k++) /* accept, then read */
		shm_handle(sh, now);
	ssize_t n = recvmsg(c, &mh, MSG_DONTWAIT);
	if (n == (ssize_t)sizeof(idb)) {
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		assert_non_null(cm);
		memcpy(&fd, CMSG_DATA(cm), sizeof(int));
		*sid = 0;
		for (int i = 7; i >= 0; i--)
			*sid = *sid << 8 | idb[i];
	}
	close(c);
	return fd;
}

/* Write `token` on a new side connection and read the answer (above). */
static int handshake(shm_t *sh, const char *name, const uint8_t *token, uint64_t *sid)
{
	int c = side_connect(name);

	assert_int_equal(write(c, token, WIRE_SHM_TOKEN_SIZE), WIRE_SHM_TOKEN_SIZE);
	return answer(sh, c, 1.0, sid);
}

static shm_t *open_one(struct wire_shm_open *o, uint32_t slots, uint64_t slot_size)
{
	char err[256];
	shm_t *sh = shm_new(1 << 20, 8, err, sizeof(err));

	assert_non_null(sh);
	assert_int_equal(shm_session_open(sh, PEER, sizeof(PEER), slots, slot_size, 1.0, o), 0);
	assert_int_equal(o->slots, slots);
	assert_int_equal(o->slot_size, slot_size);
	assert_int_equal(o->name[0], '@');
	return sh;
}

static void test_handshake_and_seals(void **state)
{
	struct wire_shm_open o;
	uint32_t slot, gen;
	uint64_t sid = 0;
	(void)state;
	shm_t *sh = open_one(&o, 2, 4096);

	/* no slot before the client has the memfd */
	assert_null(shm_slot_take(sh, o.session, PEER, sizeof(PEER), 10, &slot, &gen, 1.0));
	uint8_t wrong[WIRE_SHM_TOKEN_SIZE];
	memcpy(wrong, o.token, sizeof(wrong));
	wrong[5] ^= 1;
	assert_int_equal(handshake(sh, o.name, wrong, &sid), -1);
	int fd = handshake(sh, o.name, o.token, &sid);
	assert_true(fd >= 0);
	assert_true(sid == o.session);
	assert_int_equal(handshake(sh, o.name, o.token, &sid), -1); /* used */

	assert_int_equal(ftruncate(fd, 0), -1);
	assert_int_equal(errno, EPERM);
	assert_true(mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED);
	uint8_t *ro = mmap(NULL, 8192, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(ro != MAP_FAILED);

	uint8_t *p = shm_slot_take(sh, o.session, PEER, sizeof(PEER), 4096, &slot, &gen, 1.0);
	assert_non_null(p);
	memset(p, 0xab, 4096);
	assert_int_equal(ro[slot * 4096 + 17], 0xab);
	munmap(ro, 8192);
	close(fd);
	struct shm_usage u = shm_usage(sh);
	assert_int_equal(u.sessions, 1);
	assert_int_equal(u.bytes, 8192);
	shm_destroy(&sh);
	assert_null(sh);
}

static void test_slots_and_releases(void **state)
{
	struct wire_shm_open o;
	uint32_t s0, g0, s1, g1, s2, g2;
	uint64_t sid;
	(void)state;
	shm_t *sh = open_one(&o, 2, 4096);
	int fd = handshake(sh, o.name, o.token, &sid);
	assert_true(fd >= 0);
	close(fd);

	/* another peer naming the session, or a batch too big: nothing */
	assert_null(shm_slot_take(sh, o.session, OTHER, sizeof(OTHER), 10, &s0, &g0, 1.0));
	assert_null(shm_slot_take(sh, o.session, PEER, sizeof(PEER), 4097, &s0, &g0, 1.0));
	assert_null(shm_slot_take(sh, o.session + 1, PEER, sizeof(PEER), 10, &s0, &g0, 1.0));
	assert_non_null(shm_slot_take(sh, o.session, PEER, sizeof(PEER), 10, &s0, &g0, 1.0));
	assert_non_null(shm_slot_take(sh, o.session, PEER, sizeof(PEER), 10, &s1, &g1, 1.0));
	assert_int_not_equal(s0, s1);
	assert_null(shm_slot_take(sh, o.session, PEER, sizeof(PEER), 10, &s2, &g2, 1.0));

	assert_int_equal(shm_release(sh, o.session, OTHER, sizeof(OTHER), s0, g0, 1.0), -EINVAL);
	assert_int_equal(shm_release(sh, o.session, PEER, sizeof(PEER), s0, g0 + 1, 1.0), -EINVAL);
	assert_int_equal(shm_release(sh, o.session, PEER, sizeof(PEER), 7, g0, 1.0), -EINVAL);
	assert_int_equal(shm_release(sh, o.session, PEER, sizeof(PEER), s0, g0, 1.0), 0);
	assert_int_equal(shm_release(sh, o.session, PEER, sizeof(PEER), s0, g0, 1.0), -EINVAL);
	assert_non_null(shm_slot_take(sh, o.session, PEER, sizeof(PEER), 10, &s2, &g2, 1.0));
	assert_int_equal(s2, s0);
	assert_int_equal(g2, g0 + 1); /* a new use: the old generation is stale */

	/* the client's close ends the session */
	assert_int_equal(shm_release(sh, o.session, PEER, sizeof(PEER), SHM_SLOT_CLOSE, 0, 1.0), 0);
	assert_int_equal(shm_usage(sh).sessions, 0);
	assert_int_equal(shm_usage(sh).bytes, 0);
	shm_destroy(&sh);
}

static void test_cap_and_expiry(void **state)
{
	struct wire_shm_open o, o2;
	char err[256];
	uint64_t sid;
	(void)state;
	shm_t *sh = shm_new(3 * 4096, 8, err, sizeof(err));

	assert_non_null(sh);
	assert_int_equal(shm_session_open(sh, PEER, sizeof(PEER), 2, 4096, 1.0, &o), 0);
	assert_int_equal(shm_session_open(sh, OTHER, sizeof(OTHER), 2, 4096, 1.0, &o2), -ENOSPC);
	assert_int_equal(shm_session_open(sh, OTHER, sizeof(OTHER), 1, 4096, 1.0, &o2), 0);
	assert_int_equal(shm_usage(sh).bytes, 3 * 4096);
	shm_t *one = shm_new(1 << 20, 8, err, sizeof(err));
	assert_int_equal(shm_session_open(one, PEER, sizeof(PEER), 100, 4096, 1.0, &o2), 0);
	assert_int_equal(o2.slots, 8); /* more than allowed: the most allowed */
	shm_destroy(&one);

	int fd = handshake(sh, o.name, o.token, &sid);
	assert_true(fd >= 0);
	close(fd);
	/* o2's token expires unused; o stays until it has been idle */
	shm_expire(sh, 1.0 + SHM_TOKEN_TTL_S + 0.5, 300.0);
	assert_int_equal(shm_usage(sh).sessions, 1);
	assert_int_equal(shm_usage(sh).bytes, 2 * 4096);
	shm_expire(sh, 302.0, 300.0);
	assert_int_equal(shm_usage(sh).sessions, 0);
	assert_int_equal(shm_usage(sh).bytes, 0);
	shm_destroy(&sh);
	shm_destroy(&sh); /* NULL-safe */
}

/* The side socket's readiness, without waiting. */
static bool side_readable(const shm_t *sh)
{
	struct pollfd p = { .fd = shm_fd(sh), .events = POLLIN };

	return poll(&p, 1, 0) == 1;
}

/* accept4 failing with EMFILE leaves the connection queued: the side
 * socket is taken out of the poll set (no busy loop) and comes back a
 * second later, when the queued client gets its memfd. */
static void test_accept_without_fds_pauses(void **state)
{
	struct wire_shm_open o;
	struct rlimit old, low;
	uint64_t sid;
	int c, fd;
	const char *preload = getenv("LD_PRELOAD");
	(void)state;

	if (preload && strstr(preload, "vgpreload"))
		skip(); /* valgrind emulates setrlimit: accept4 would not fail */
	shm_t *sh = open_one(&o, 2, 4096);

	c = side_connect(o.name);
	assert_int_equal(write(c, o.token, WIRE_SHM_TOKEN_SIZE), WIRE_SHM_TOKEN_SIZE);
	assert_true(side_readable(sh));
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	fd = dup(0); /* the lowest free fd: the limit makes it unavailable */
	assert_true(fd >= 0);
	close(fd);
	low = old;
	low.rlim_cur = (rlim_t)fd;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	shm_handle(sh, 1.1);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	assert_false(side_readable(sh)); /* paused: the loop does not spin */
	shm_handle(sh, 1.5);
	assert_false(side_readable(sh)); /* still paused within the second */
	fd = answer(sh, c, 2.2, &sid); /* resumed: accepted, token read */
	assert_true(fd >= 0);
	assert_int_equal(sid, o.session);
	close(fd);
	shm_destroy(&sh);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_handshake_and_seals),
		cmocka_unit_test(test_slots_and_releases),
		cmocka_unit_test(test_cap_and_expiry),
		cmocka_unit_test(test_accept_without_fds_pauses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
