/*
 * test_bufpool.c — the batch buffer pool: a buffer given back comes back
 * on the next get of the same size, buffers of other sizes are not handed
 * out for it, at most `limit` idle buffers are kept (and lowering the
 * limit releases the extra ones), no more buffers are held than were ever
 * in use at once, the short last batch of an epoch reuses a full batch's
 * buffer, buffers are 64-byte aligned and fully
 * writable, and get/put are safe while ZeroMQ's free callback returns
 * buffers from another thread.
 *
 * The pool is process-wide: each test starts from an empty pool with the
 * default limit (setup drains it). Asserts on the main thread only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>
#include <cmocka.h>

#include "bufpool.h"

static int drain(void **state)
{
	(void)state;
	bufpool_set_limit(0);
	bufpool_set_limit(4);
	return 0;
}

static void test_put_buffer_comes_back(void **state)
{
	(void)state;
	size_t size = 3 * 224 * 224 * 8;
	uint8_t *a = bufpool_get(size);

	assert_non_null(a);
	assert_int_equal((uintptr_t)a % 64, 0);
	memset(a, 0xA5, size); /* every byte is usable */
	bufpool_put(a);
	assert_int_equal(bufpool_idle(), 1);

	uint8_t *b = bufpool_get(size);
	assert_ptr_equal(b, a);
	assert_int_equal(bufpool_idle(), 0);
	/* Recycled, not cleared: the caller overwrites every byte anyway. */
	assert_int_equal(b[0], 0xA5);
	assert_int_equal(b[size - 1], 0xA5);
	bufpool_put(b);

	bufpool_put(NULL); /* NULL-safe */
	assert_int_equal(bufpool_idle(), 1);
	bufpool_free_cb(NULL, NULL);
	assert_int_equal(bufpool_idle(), 1);
}

/* A buffer of another size is not handed out; it stays idle for its own
 * size (only a request up to a third smaller may take it: below). */
static void test_sizes_kept_apart(void **state)
{
	(void)state;
	size_t big = 1 << 20, small = 1 << 16;
	uint8_t *a = bufpool_get(big);

	assert_non_null(a);
	bufpool_put(a);
	uint8_t *s = bufpool_get(small);
	assert_non_null(s);
	assert_ptr_not_equal(s, a);
	memset(s, 1, small);
	assert_int_equal(bufpool_idle(), 1); /* the big one, still kept */

	uint8_t *b = bufpool_get(2 * big);
	assert_non_null(b);
	assert_ptr_not_equal(b, a);
	memset(b, 2, 2 * big);

	bufpool_put(s);
	bufpool_put(b);
	assert_int_equal(bufpool_idle(), 3);
	/* Each size gets its own buffer back. */
	assert_ptr_equal(bufpool_get(small), s);
	assert_ptr_equal(bufpool_get(big), a);
	assert_ptr_equal(bufpool_get(2 * big), b);
	assert_int_equal(bufpool_idle(), 0);
	bufpool_put(a);
	bufpool_put(b);
	bufpool_put(s);
}

static void test_idle_bound(void **state)
{
	(void)state;
	void *bufs[70];

	/* Default limit 4. */
	for (int i = 0; i < 6; i++)
		assert_non_null(bufs[i] = bufpool_get(4096));
	for (int i = 0; i < 6; i++)
		bufpool_put(bufs[i]);
	assert_int_equal(bufpool_idle(), 4);

	/* Lowering the limit releases the extra ones now. */
	bufpool_set_limit(2);
	assert_int_equal(bufpool_idle(), 2);
	bufpool_set_limit(0);
	assert_int_equal(bufpool_idle(), 0);
	void *x = bufpool_get(4096);
	assert_non_null(x);
	bufpool_put(x);
	assert_int_equal(bufpool_idle(), 0);

	/* At most 64, whatever is asked. */
	bufpool_set_limit(1000);
	for (int i = 0; i < 70; i++)
		assert_non_null(bufs[i] = bufpool_get(8192));
	for (int i = 0; i < 70; i++)
		bufpool_put(bufs[i]);
	assert_int_equal(bufpool_idle(), 64);
	/* The kept ones are all distinct and come back. */
	for (int i = 0; i < 64; i++) {
		bufs[i] = bufpool_get(8192);
		for (int j = 0; j < i; j++)
			assert_ptr_not_equal(bufs[i], bufs[j]);
	}
	assert_int_equal(bufpool_idle(), 0);
	for (int i = 0; i < 64; i++)
		bufpool_put(bufs[i]);
}

#define MB (1024 * 1024)

/* The short last batch of an epoch takes a full batch's buffer (a bit
 * larger); a much smaller request does not pin a big buffer, and a larger
 * one never gets a too small buffer. */
static void test_smaller_request_reuses(void **state)
{
	(void)state;
	bufpool_set_limit(4);
	uint8_t *full = bufpool_get(4 * MB);
	assert_non_null(full);
	bufpool_put(full);
	uint8_t *tiny = bufpool_get(MB);
	assert_non_null(tiny);
	assert_ptr_not_equal(tiny, full);
	uint8_t *shortb = bufpool_get(4 * MB * 104 / 128);
	assert_ptr_equal(shortb, full);
	memset(shortb, 1, 4 * MB * 104 / 128);
	bufpool_put(shortb);
	uint8_t *bigger = bufpool_get(5 * MB);
	assert_non_null(bigger);
	assert_ptr_not_equal(bigger, full);
	memset(bigger, 2, 5 * MB); /* would fault past a 4 MiB mapping */
	bufpool_put(bigger);
	bufpool_put(tiny);
}

/* Bound by the peak (the daemon's setting): the busy pattern that unmapped
 * half the batches with one idle slot, two batches released before the
 * next one starts. Every buffer ever in use stays available, so the next
 * two gets are both recycled ones... */
static void test_burst_of_releases_is_kept(void **state)
{
	(void)state;
	bufpool_set_limit(8);
	bufpool_bound_by_peak(true);
	void *a = bufpool_get(2 * MB), *b = bufpool_get(2 * MB), *c = bufpool_get(2 * MB);
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(c);
	bufpool_put(a);
	bufpool_put(b);
	assert_int_equal(bufpool_idle(), 2);
	void *d = bufpool_get(2 * MB), *e = bufpool_get(2 * MB);
	assert_true((d == a && e == b) || (d == b && e == a));
	bufpool_put(c);
	bufpool_put(d);
	bufpool_put(e);
	assert_int_equal(bufpool_idle(), 3);
	/* ... and nothing beyond the peak in use (3) is ever held: a buffer of
	 * another size, mapped while three idle ones do not fit it, is
	 * released when it comes back (4 held > 3 ever in use). */
	void *x = bufpool_get(8 * MB);
	assert_non_null(x);
	bufpool_put(x);
	assert_int_equal(bufpool_idle(), 3);
	bufpool_bound_by_peak(false);
}

/* ---- thread safety ------------------------------------------------------- */

/*
 * The daemon's pattern: one thread gets a buffer, fills it and hands it to
 * ZeroMQ with bufpool_free_cb; the free callback runs on whichever thread
 * drops the message last. Here a receiver thread closes every message
 * (inproc hands the same buffer over), so puts run there while the main
 * thread keeps getting. Each buffer carries its sequence number at both
 * ends: a buffer handed out twice at once would be overwritten and seen
 * with the wrong number.
 */
#define MSGS 3000
#define SIZES 3

static const size_t msg_size[SIZES] = { 64 * 1024, 150 * 1024, 64 * 1024 + 4096 };
static atomic_int bad_content;
static atomic_int received;
/* Messages filled so far, stored (release) before each send and loaded
 * (acquire) after each receive. ZeroMQ's pipes order the bytes already,
 * but inside a library ThreadSanitizer does not see (tests/tsan.supp):
 * this makes the hand-over visible to it, so `make tsan` checks the
 * bufpool's own locking rather than reporting ZeroMQ's. */
static atomic_uint_fast64_t published;

static void *receiver_main(void *sock)
{
	for (int i = 0; i < MSGS; i++) {
		zmq_msg_t m;
		zmq_msg_init(&m);
		if (zmq_msg_recv(&m, sock, 0) < 0) {
			zmq_msg_close(&m);
			atomic_fetch_add(&bad_content, 1);
			break;
		}
		if (atomic_load_explicit(&published, memory_order_acquire) < (uint64_t)i + 1)
			atomic_fetch_add(&bad_content, 1);
		const uint8_t *d = zmq_msg_data(&m);
		size_t n = zmq_msg_size(&m);
		uint64_t head, tail;
		memcpy(&head, d, 8);
		memcpy(&tail, d + n - 8, 8);
		if (head != (uint64_t)i || tail != (uint64_t)i || n != msg_size[i % SIZES])
			atomic_fetch_add(&bad_content, 1);
		zmq_msg_close(&m); /* bufpool_free_cb, on this thread */
		atomic_fetch_add(&received, 1);
	}
	return NULL;
}

static void test_free_callback_thread(void **state)
{
	(void)state;
	void *zctx = zmq_ctx_new();
	assert_non_null(zctx);
	void *rx = zmq_socket(zctx, ZMQ_PAIR);
	void *tx = zmq_socket(zctx, ZMQ_PAIR);
	assert_non_null(rx);
	assert_non_null(tx);
	int hwm = 16; /* bounds how many buffers are in flight */
	assert_int_equal(zmq_setsockopt(rx, ZMQ_RCVHWM, &hwm, sizeof(hwm)), 0);
	assert_int_equal(zmq_setsockopt(tx, ZMQ_SNDHWM, &hwm, sizeof(hwm)), 0);
	assert_int_equal(zmq_bind(rx, "inproc://bufpool-test"), 0);
	assert_int_equal(zmq_connect(tx, "inproc://bufpool-test"), 0);
	int timeo = 10000; /* a stuck receiver fails the test, not hangs it */
	assert_int_equal(zmq_setsockopt(tx, ZMQ_SNDTIMEO, &timeo, sizeof(timeo)), 0);
	assert_int_equal(zmq_setsockopt(rx, ZMQ_RCVTIMEO, &timeo, sizeof(timeo)), 0);

	atomic_store(&bad_content, 0);
	atomic_store(&received, 0);
	atomic_store(&published, 0);
	bufpool_set_limit(8);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, receiver_main, rx), 0);

	int sent = 0, get_failed = 0, send_failed = 0;
	for (int i = 0; i < MSGS; i++) {
		size_t n = msg_size[i % SIZES];
		uint8_t *b = bufpool_get(n);
		if (!b) {
			get_failed++;
			break;
		}
		uint64_t seq = (uint64_t)i;
		memset(b + 8, (int)(i & 0xff), n - 16);
		memcpy(b, &seq, 8);
		memcpy(b + n - 8, &seq, 8);
		atomic_store_explicit(&published, seq + 1, memory_order_release);
		zmq_msg_t m;
		if (zmq_msg_init_data(&m, b, n, bufpool_free_cb, NULL)) {
			bufpool_put(b);
			send_failed++;
			break;
		}
		if (zmq_msg_send(&m, tx, 0) < 0) {
			zmq_msg_close(&m);
			send_failed++;
			break;
		}
		sent++;
	}
	pthread_join(th, NULL);
	zmq_close(tx);
	zmq_close(rx);
	zmq_ctx_term(zctx);

	assert_int_equal(get_failed, 0);
	assert_int_equal(send_failed, 0);
	assert_int_equal(sent, MSGS);
	assert_int_equal(atomic_load(&received), MSGS);
	assert_int_equal(atomic_load(&bad_content), 0);
	/* Every buffer came back: the idle set is full but within its bound. */
	assert_in_range(bufpool_idle(), 1, 8);
}

/* Several threads getting and putting at once, each checking that the
 * buffer it holds keeps its own contents. */
#define HAMMER_THREADS 4
#define HAMMER_ROUNDS 2000

static atomic_int hammer_bad;

static void *hammer_main(void *arg)
{
	uintptr_t id = (uintptr_t)arg;

	for (int r = 0; r < HAMMER_ROUNDS; r++) {
		size_t n = (r & 1) ? 8192 : 20000;
		uint8_t *b[2];
		for (int k = 0; k < 2; k++) {
			b[k] = bufpool_get(n);
			if (!b[k]) {
				atomic_fetch_add(&hammer_bad, 1);
				return NULL;
			}
			memset(b[k], (int)(id * 2 + (uintptr_t)k + 1), n);
		}
		for (int k = 0; k < 2; k++) {
			uint8_t want = (uint8_t)(id * 2 + (uintptr_t)k + 1);
			if (b[k][0] != want || b[k][n / 2] != want || b[k][n - 1] != want)
				atomic_fetch_add(&hammer_bad, 1);
			bufpool_put(b[k]);
		}
	}
	return NULL;
}

static void test_concurrent_get_put(void **state)
{
	(void)state;
	pthread_t th[HAMMER_THREADS];

	atomic_store(&hammer_bad, 0);
	bufpool_set_limit(6);
	for (uintptr_t i = 0; i < HAMMER_THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, hammer_main, (void *)i), 0);
	for (int i = 0; i < HAMMER_THREADS; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(atomic_load(&hammer_bad), 0);
	assert_in_range(bufpool_idle(), 1, 6);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_put_buffer_comes_back, drain),
		cmocka_unit_test_setup(test_sizes_kept_apart, drain),
		cmocka_unit_test_setup(test_idle_bound, drain),
		cmocka_unit_test_setup(test_smaller_request_reuses, drain),
		cmocka_unit_test_setup(test_burst_of_releases_is_kept, drain),
		cmocka_unit_test_setup(test_free_callback_thread, drain),
		cmocka_unit_test_setup(test_concurrent_get_put, drain),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	bufpool_set_limit(0);
	return rc;
}
