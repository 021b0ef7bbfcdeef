/*
 * test_server.c — the serving loop end to end inside one process: a real
 * engine (a dataset of JPEGs written at test time), a real worker pool,
 * server_new on an ipc:// endpoint in a temporary folder, server_run on
 * its own thread, and a real ZeroMQ DEALER in the test. INFO and STATS
 * replies (header magic, version, status, JSON), BATCH replies (frames
 * that decode with proto/wire.h and equal the batch built directly with
 * batch_new on the same engine), every bad request answered with an ERROR
 * reply of the right code and message while the server keeps serving,
 * the stop through SIGTERM on the server's signalfd, an endpoint already
 * served refused, and server_destroy NULL-safe.
 *
 * SIGTERM/SIGINT/SIGHUP are blocked in main() before any thread starts,
 * as the daemon's main.c does, so only the signalfd sees them. Every
 * receive has a timeout (RECV_MS); asserts are on the main thread only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <zmq.h>
#include <cmocka.h>

#include "batch.h"
#include "config.h"
#include "engine_int.h" /* reads the engine's fields (refs, digest) */
#include "jpeg_fixtures.h"
#include "log.h"
#include "pool.h"
#include "preflight.h"
#include "server.h"
#include "stats.h"
#include "test_util.h"
#include "wire.h"

#define RECV_MS 5000  /* one reply: far more than a 4-image batch takes */
#define MAX_FRAMES 6

/* ---- fixtures ------------------------------------------------------------ */

/* data/cC/imgNNN.jpg, every file a different pattern and size. */
static void make_dataset(int classes, int per_class)
{
	tu_jpeg_folders(classes, per_class, 36, 28, 10);
}

/* One server on ipc://TMP/s.sock with its engine, pool, thread and a
 * DEALER connected to it. */
struct fix {
	struct stats st;
	engine_t *eng;
	pool_t *pool;
	server_t *srv;
	pthread_t th;
	bool running;
	int run_rc;
	char endpoint[PATH_MAX + 16];
	void *zctx, *dealer;
};

static void *serve_main(void *arg)
{
	struct fix *f = arg;

	f->run_rc = server_run(f->srv);
	return NULL;
}

static void *dealer_new(struct fix *f)
{
	void *d = zmq_socket(f->zctx, ZMQ_DEALER);
	int v = RECV_MS, linger = 0;

	assert_non_null(d);
	zmq_setsockopt(d, ZMQ_RCVTIMEO, &v, sizeof(v));
	zmq_setsockopt(d, ZMQ_SNDTIMEO, &v, sizeof(v));
	zmq_setsockopt(d, ZMQ_LINGER, &linger, sizeof(linger));
	assert_int_equal(zmq_connect(d, f->endpoint), 0);
	return d;
}

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));
	config_t *cfg = NULL;
	char err[512] = "", text[PATH_MAX + 1024];

	if (!f || tu_enter_tmpdir("cutmixd-server"))
		return -1;
	log_set_level(LOGL_ERR);
	make_dataset(3, 4);
	snprintf(f->endpoint, sizeof(f->endpoint), "ipc://%s/s.sock", tu_tmpdir());
	snprintf(text, sizeof(text),
		 "[server]\nendpoint = %s\nworkers = 2\nseed = 3\nmax_client_window = 8\n"
		 "[dataset]\nroot = data\n"
		 "[pipeline.train]\nsize = 16\nbatch_size = 4\nshuffle = true\n"
		 "flip = 0.5\ncutmix_alpha = 1.0\nmixup_alpha = 0.2\nmode = elem\n"
		 "label_smoothing = 0.1\n"
		 "[pipeline.val]\neval = true\nsize = 8\nbatch_size = 5\n",
		 f->endpoint);
	tu_write_file("test.ini", text);
	if (config_load("test.ini", NULL, 0, &cfg, err, sizeof(err)) ||
	    engine_new(&cfg, &f->st, &f->eng, err, sizeof(err))) {
		fprintf(stderr, "setup: %s\n", err);
		return -1;
	}
	f->st.started = stats_now();
	f->pool = pool_new(2, batch_worker_new, batch_worker_free);
	struct server_opts so = { .config_path = "test.ini" };
	f->srv = f->pool ? server_new(f->eng, f->pool, &f->st, &so, err, sizeof(err)) : NULL;
	if (!f->srv) {
		fprintf(stderr, "setup: server_new: %s\n", err);
		return -1;
	}
	f->run_rc = -1; /* before the thread starts: it writes run_rc */
	if (pthread_create(&f->th, NULL, serve_main, f))
		return -1;
	f->running = true;
	f->zctx = zmq_ctx_new();
	if (!f->zctx)
		return -1;
	f->dealer = dealer_new(f);
	*state = f;
	return 0;
}

/* SIGTERM to the serving thread (blocked there, so it waits for the
 * signalfd); server_run must return within its stop deadline. */
static int stop_server(struct fix *f)
{
	struct timespec until;

	if (!f->running)
		return 0;
	f->running = false;
	if (pthread_kill(f->th, SIGTERM))
		return -1;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 10;
	return pthread_timedjoin_np(f->th, NULL, &until) ? -1 : 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;
	int rc = 0;

	if (!f)
		return tu_leave_tmpdir();
	if (f->dealer)
		zmq_close(f->dealer);
	if (f->zctx)
		zmq_ctx_term(f->zctx);
	if (stop_server(f))
		rc = -1;
	pool_destroy(&f->pool); /* before the server (main.c's order) */
	server_destroy(&f->srv);
	engine_unref(&f->eng);
	free(f);
	log_set_level(LOGL_INFO);
	if (tu_leave_tmpdir())
		rc = -1;
	return rc;
}

/* ---- wire helpers -------------------------------------------------------- */

struct reply_msg {
	int n;
	zmq_msg_t part[MAX_FRAMES];
	struct wire_reply h;
};

static void send_frames(void *sock, const void *const *bufs, const size_t *lens, int n)
{
	for (int i = 0; i < n; i++)
		assert_int_equal(zmq_send(sock, bufs[i], lens[i], i + 1 < n ? ZMQ_SNDMORE : 0),
				 (int)lens[i]);
}

static void send_request(void *sock, const struct wire_request *rq)
{
	uint8_t buf[WIRE_REQUEST_SIZE];
	const void *b[1] = { buf };
	size_t l[1] = { sizeof(buf) };

	assert_int_equal(wire_encode_request(rq, buf), 0);
	send_frames(sock, b, l, 1);
}

static struct wire_request request(uint16_t type, const char *pipeline, uint64_t id)
{
	struct wire_request rq;

	memset(&rq, 0, sizeof(rq));
	rq.version = WIRE_VERSION;
	rq.type = type;
	rq.request_id = id;
	rq.world = 1;
	snprintf(rq.pipeline, sizeof(rq.pipeline), "%s", pipeline);
	return rq;
}

/* One whole reply (fails on timeout); the header decoded into r->h,
 * after checking its raw magic. */
static void recv_reply(void *sock, struct reply_msg *r)
{
	int more = 1;

	r->n = 0;
	while (more) {
		assert_true(r->n < MAX_FRAMES);
		zmq_msg_t *m = &r->part[r->n];
		zmq_msg_init(m);
		int rc = zmq_msg_recv(m, sock, 0);
		if (rc < 0)
			fail_msg("no reply within %d ms: %s", RECV_MS, zmq_strerror(errno));
		r->n++;
		more = zmq_msg_more(m);
	}
	const uint8_t *hb = zmq_msg_data(&r->part[0]);
	assert_int_equal(zmq_msg_size(&r->part[0]), WIRE_REPLY_SIZE);
	uint32_t magic = hb[0] | hb[1] << 8 | hb[2] << 16 | (uint32_t)hb[3] << 24;
	assert_int_equal(magic, WIRE_REPLY_MAGIC);
	assert_int_equal(wire_decode_reply(hb, WIRE_REPLY_SIZE, &r->h), 0);
}

static void reply_close(struct reply_msg *r)
{
	for (int i = 0; i < r->n; i++)
		zmq_msg_close(&r->part[i]);
	r->n = 0;
}

static const char *body_text(struct reply_msg *r, char *out, size_t outlen)
{
	size_t n = zmq_msg_size(&r->part[1]);

	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, zmq_msg_data(&r->part[1]), n);
	out[n] = '\0';
	return out;
}

/* An ERROR reply of `status` whose message contains `want`. */
static void expect_error(void *sock, uint64_t id, uint32_t status, const char *want)
{
	struct reply_msg r;
	char text[700];

	recv_reply(sock, &r);
	assert_int_equal(r.h.type, WIRE_ERROR);
	assert_int_equal(r.h.status, status);
	assert_int_equal(r.h.request_id, id);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.h.body_bytes[0], zmq_msg_size(&r.part[1]));
	body_text(&r, text, sizeof(text));
	if (!strstr(text, want))
		fail_msg("error text '%s' lacks '%s'", text, want);
	reply_close(&r);
}

/* The server still answers: an INFO round trip. */
static void expect_serving(void *sock, uint64_t id)
{
	struct wire_request rq = request(WIRE_INFO, "", id);
	struct reply_msg r;

	send_request(sock, &rq);
	recv_reply(sock, &r);
	assert_int_equal(r.h.type, WIRE_INFO);
	assert_int_equal(r.h.status, WIRE_OK);
	assert_int_equal(r.h.request_id, id);
	reply_close(&r);
}

/* ---- INFO / STATS -------------------------------------------------------- */

static void test_info(void **state)
{
	struct fix *f = *state;
	struct reply_msg r;
	char json[1 << 14];

	struct wire_request rq = request(WIRE_INFO, "", 41);
	send_request(f->dealer, &rq);
	recv_reply(f->dealer, &r);
	assert_int_equal(r.h.version, WIRE_VERSION);
	assert_int_equal(r.h.type, WIRE_INFO);
	assert_int_equal(r.h.status, WIRE_OK);
	assert_int_equal(r.h.request_id, 41);
	assert_memory_equal(r.h.digest, f->eng->digest, WIRE_DIGEST_SIZE);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.h.body_bytes[0], zmq_msg_size(&r.part[1]));
	body_text(&r, json, sizeof(json));
	assert_int_equal(json[0], '{');
	assert_int_equal(json[strlen(json) - 1], '}');
	assert_non_null(strstr(json, "\"pipelines\""));
	assert_non_null(strstr(json, "\"train\""));
	assert_non_null(strstr(json, "\"val\""));
	assert_non_null(strstr(json, f->eng->digest_hex));
	reply_close(&r);

	/* One pipeline: the header carries its shape. */
	rq = request(WIRE_INFO, "train", 42);
	send_request(f->dealer, &rq);
	recv_reply(f->dealer, &r);
	assert_int_equal(r.h.status, WIRE_OK);
	assert_int_equal(r.h.batch_size, 4);
	assert_int_equal(r.h.height, 16);
	assert_int_equal(r.h.width, 16);
	assert_int_equal(r.h.channels, 3);
	assert_int_equal(r.h.num_classes, 3);
	assert_int_equal(r.h.batches_per_epoch, 3);
	assert_int_equal(r.h.meta_size, WIRE_META_SIZE_V2);
	body_text(&r, json, sizeof(json));
	assert_non_null(strstr(json, "\"class_names\""));
	assert_non_null(strstr(json, "\"c2\""));
	reply_close(&r);

	/* A version 1 client is answered in version 1. */
	rq = request(WIRE_INFO, "train", 43);
	rq.version = 1;
	send_request(f->dealer, &rq);
	recv_reply(f->dealer, &r);
	assert_int_equal(r.h.version, 1);
	assert_int_equal(r.h.status, WIRE_OK);
	assert_int_equal(r.h.meta_size, WIRE_META_SIZE_V1);
	reply_close(&r);

	/* STATS: JSON counters, these requests counted. */
	rq = request(WIRE_STATS, "", 44);
	send_request(f->dealer, &rq);
	recv_reply(f->dealer, &r);
	assert_int_equal(r.h.type, WIRE_STATS);
	assert_int_equal(r.h.status, WIRE_OK);
	body_text(&r, json, sizeof(json));
	assert_int_equal(json[0], '{');
	assert_non_null(strstr(json, "\"requests\":4"));
	reply_close(&r);
}

/* ---- BATCH --------------------------------------------------------------- */

struct done_rec {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int calls;
};

static void on_complete(batch_t *b, void *arg)
{
	struct done_rec *d = arg;

	(void)b;
	pthread_mutex_lock(&d->lock);
	d->calls++;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
}

/* The batch built directly on the server's engine and pool. */
static batch_t *direct_batch(struct fix *f, const char *pl, uint32_t epoch, uint32_t index)
{
	struct done_rec d = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };
	uint32_t status;
	char msg[256];
	struct timespec until;

	batch_t *b = batch_new(f->eng, engine_find_pipeline(f->eng, pl), epoch, 0, 1, index,
			       &status, msg, sizeof(msg));
	assert_non_null(b);
	batch_submit(b, f->pool, on_complete, &d);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += RECV_MS / 1000;
	pthread_mutex_lock(&d.lock);
	while (d.calls == 0)
		if (pthread_cond_timedwait(&d.cond, &d.lock, &until) == ETIMEDOUT)
			break;
	int calls = d.calls;
	pthread_mutex_unlock(&d.lock);
	assert_int_equal(calls, 1);
	assert_int_equal(b->status, WIRE_OK);
	return b;
}

static void check_batch_reply(struct fix *f, struct reply_msg *r, uint64_t id,
			      uint32_t epoch, uint32_t index)
{
	const uint32_t n = 4, K = 3;

	assert_int_equal(r->h.type, WIRE_BATCH);
	assert_int_equal(r->h.status, WIRE_OK);
	assert_int_equal(r->h.request_id, id);
	assert_int_equal(r->h.epoch, epoch);
	assert_int_equal(r->h.batch, index);
	assert_int_equal(r->h.batch_size, n);
	assert_int_equal(r->h.height, 16);
	assert_int_equal(r->h.width, 16);
	assert_int_equal(r->h.channels, 3);
	assert_int_equal(r->h.layout, WIRE_NHWC);
	assert_int_equal(r->h.dtype, WIRE_UINT8);
	assert_int_equal(r->h.num_classes, K);
	assert_int_equal(r->h.batches_per_epoch, 3);
	assert_int_equal(r->h.flags & WIRE_RFLAG_LAST, index == 2 ? WIRE_RFLAG_LAST : 0);
	assert_memory_equal(r->h.digest, f->eng->digest, WIRE_DIGEST_SIZE);
	assert_int_equal(r->n, 4);
	for (int i = 0; i < 3; i++)
		assert_int_equal(r->h.body_bytes[i], zmq_msg_size(&r->part[1 + i]));
	assert_int_equal(r->h.body_bytes[0], n * 16 * 16 * 3);
	assert_int_equal(r->h.body_bytes[1], n * K * sizeof(float));
	assert_int_equal(r->h.body_bytes[2], n * r->h.meta_size);

	/* Soft labels: rows of probabilities. (A received frame need not
	 * be aligned for float: copied first.) */
	float lab[4 * 3];
	memcpy(lab, zmq_msg_data(&r->part[2]), sizeof(lab));
	for (uint32_t i = 0; i < n; i++) {
		double sum = 0;
		for (uint32_t k = 0; k < K; k++) {
			assert_true(lab[i * K + k] >= 0.1 / K - 1e-6);
			sum += lab[i * K + k];
		}
		assert_true(fabs(sum - 1.0) < 1e-6);
	}
	/* Metadata records decode; indices within the dataset. */
	const uint8_t *meta = zmq_msg_data(&r->part[3]);
	for (uint32_t i = 0; i < n; i++) {
		struct wire_meta m;
		assert_int_equal(wire_decode_meta_n(meta + i * r->h.meta_size, r->h.meta_size, &m), 0);
		assert_in_range(m.index, 0, 11);
		assert_int_equal(m.source, m.index);
		assert_in_range(m.label, 0, K - 1);
		assert_int_equal(m.status, WIRE_SAMPLE_OK);
	}

	/* The same bytes as the batch built directly. */
	batch_t *b = direct_batch(f, "train", epoch, index);
	assert_memory_equal(zmq_msg_data(&r->part[1]), b->images, b->images_bytes);
	assert_memory_equal(zmq_msg_data(&r->part[2]), b->labels, b->labels_bytes);
	assert_int_equal(b->meta_bytes, r->h.body_bytes[2]);
	assert_memory_equal(zmq_msg_data(&r->part[3]), b->meta_wire, b->meta_bytes);
	batch_destroy(&b);
}

static void test_batch(void **state)
{
	struct fix *f = *state;
	struct reply_msg r;

	struct wire_request rq = request(WIRE_BATCH, "train", 7);
	rq.epoch = 2;
	rq.batch = 1;
	send_request(f->dealer, &rq);
	recv_reply(f->dealer, &r);
	check_batch_reply(f, &r, 7, 2, 1);
	reply_close(&r);

	/* Three at once (within the window): one reply each, any order. */
	for (uint32_t i = 0; i < 3; i++) {
		rq = request(WIRE_BATCH, "train", 100 + i);
		rq.epoch = 0;
		rq.batch = i;
		send_request(f->dealer, &rq);
	}
	bool seen[3] = { false, false, false };
	for (int k = 0; k < 3; k++) {
		recv_reply(f->dealer, &r);
		uint64_t i = r.h.request_id - 100;
		assert_in_range(i, 0, 2);
		assert_false(seen[i]);
		seen[i] = true;
		check_batch_reply(f, &r, 100 + i, 0, (uint32_t)i);
		reply_close(&r);
	}
	/* No fourth reply comes. */
	zmq_pollitem_t it = { f->dealer, 0, ZMQ_POLLIN, 0 };
	assert_int_equal(zmq_poll(&it, 1, 200), 0);
	assert_true(stats_get(&f->st, batches) >= 4);
}

/* ---- bad requests -------------------------------------------------------- */

static void test_bad_requests(void **state)
{
	struct fix *f = *state;
	struct wire_request rq;

	/* A frame of the wrong size. */
	const void *b1[1] = { "short" };
	size_t l1[1] = { 5 };
	send_frames(f->dealer, b1, l1, 1);
	expect_error(f->dealer, 0, WIRE_E_MALFORMED, "80-byte frame");
	expect_serving(f->dealer, 1);

	/* Right size, wrong magic. */
	uint8_t junk[WIRE_REQUEST_SIZE];
	memset(junk, 0x5a, sizeof(junk));
	const void *b2[1] = { junk };
	size_t l2[1] = { sizeof(junk) };
	send_frames(f->dealer, b2, l2, 1);
	expect_error(f->dealer, 0x5a5a5a5a5a5a5a5aULL, WIRE_E_MALFORMED, "magic 'CMXQ'");
	expect_serving(f->dealer, 2);

	/* Two request frames (not an empty delimiter first). */
	uint8_t good[WIRE_REQUEST_SIZE];
	rq = request(WIRE_INFO, "", 3);
	wire_encode_request(&rq, good);
	const void *b3[2] = { good, good };
	size_t l3[2] = { sizeof(good), sizeof(good) };
	send_frames(f->dealer, b3, l3, 2);
	expect_error(f->dealer, 0, WIRE_E_MALFORMED, "exactly one");
	expect_serving(f->dealer, 4);

	/* A version not spoken: the request id is still echoed. */
	rq = request(WIRE_INFO, "", 5);
	wire_encode_request(&rq, good);
	good[4] = 99;
	good[5] = 0;
	const void *b4[1] = { good };
	size_t l4[1] = { sizeof(good) };
	send_frames(f->dealer, b4, l4, 1);
	expect_error(f->dealer, 5, WIRE_E_VERSION, "got 99");

	rq = request(77, "train", 6);
	send_request(f->dealer, &rq);
	expect_error(f->dealer, 6, WIRE_E_UNKNOWN_TYPE, "unknown request type 77");

	rq = request(WIRE_BATCH, "nope", 8);
	send_request(f->dealer, &rq);
	expect_error(f->dealer, 8, WIRE_E_NO_PIPELINE, "unknown pipeline 'nope'");

	rq = request(WIRE_BATCH, "train", 9);
	rq.rank = 2;
	rq.world = 2;
	send_request(f->dealer, &rq);
	expect_error(f->dealer, 9, WIRE_E_BAD_SHARD, "rank 2 is not below world 2");

	rq = request(WIRE_BATCH, "train", 10);
	rq.world = 0;
	send_request(f->dealer, &rq);
	expect_error(f->dealer, 10, WIRE_E_BAD_SHARD, "world 0");

	rq = request(WIRE_BATCH, "train", 11);
	rq.batch = 3;
	send_request(f->dealer, &rq);
	expect_error(f->dealer, 11, WIRE_E_BATCH_RANGE, "batch 3 out of range");

	rq = request(WIRE_BATCH, "train", 12);
	rq.flags = WIRE_FLAG_EXPECT_EVAL;
	send_request(f->dealer, &rq);
	expect_error(f->dealer, 12, WIRE_E_NOT_EVAL, "eval pipeline");

	/* Still serving batches after all that, and every bad one counted. */
	rq = request(WIRE_BATCH, "val", 13);
	rq.flags = WIRE_FLAG_EXPECT_EVAL;
	send_request(f->dealer, &rq);
	struct reply_msg r;
	recv_reply(f->dealer, &r);
	assert_int_equal(r.h.type, WIRE_BATCH);
	assert_int_equal(r.h.status, WIRE_OK);
	assert_int_equal(r.h.batch_size, 5);
	assert_int_equal(r.n, 4);
	assert_int_equal(zmq_msg_size(&r.part[1]), 5 * 8 * 8 * 3);
	reply_close(&r);
	assert_int_equal(stats_get(&f->st, bad_requests), 10);
}

/* ---- life cycle ---------------------------------------------------------- */

/* SIGTERM ends server_run (0) soon, with the replies sent; a client
 * connected but idle does not hold it up. */
static void test_stop(void **state)
{
	struct fix *f = *state;
	struct timespec t0, t1;

	expect_serving(f->dealer, 1);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(stop_server(f), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_int_equal(f->run_rc, 0);
	double took = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	/* Nothing in flight: it stops at once; at the latest at the 3 s
	 * stop deadline (slack for a loaded machine). */
	assert_true(took < 6.0);

	server_destroy(&f->srv);
	assert_null(f->srv);
	server_destroy(&f->srv);
	server_destroy(NULL);
}

/* A second server on an endpoint this one serves is refused with a
 * message naming it; the first keeps serving. */
static void test_endpoint_in_use(void **state)
{
	struct fix *f = *state;
	struct server_opts so = { .config_path = "test.ini" };
	char err[512] = "";

	server_t *s2 = server_new(f->eng, f->pool, &f->st, &so, err, sizeof(err));
	assert_null(s2);
	assert_non_null(strstr(err, f->endpoint));
	assert_non_null(strstr(err, "another process serves it"));
	assert_int_equal(atomic_load(&f->eng->refs), 2); /* the failed one let go */
	expect_serving(f->dealer, 2);
}

int main(void)
{
	/* As main.c: the stop and reload signals go to the signalfd only. */
	preflight_block_signals();

	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_info, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_requests, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_endpoint_in_use, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
