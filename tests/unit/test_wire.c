/*
 * test_wire.c — the wire codec: round trips, exact byte offsets against
 * hand-written byte arrays (so a layout change cannot slip through as a
 * symmetric encoder/decoder bug), rejection of malformed input, and the
 * status name table.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "wire.h"

/* ---- fixtures: one request, reply and metadata record with every field
 * holding a distinct multi-byte value, and their exact encodings. ------- */

static struct wire_request sample_request(void)
{
	struct wire_request rq;

	memset(&rq, 0, sizeof(rq));
	rq.version = 1; /* the fixture bytes are a version 1 request */
	rq.type = WIRE_BATCH;
	rq.flags = WIRE_FLAG_EXPECT_EVAL | 0x00a0b000u;
	rq.batch = 0x00012345u;
	rq.request_id = 0x0102030405060708ull;
	rq.epoch = 0x0000abcdu;
	rq.rank = 3;
	rq.world = 0x00000100u;
	strcpy(rq.pipeline, "train");
	return rq;
}

static const uint8_t sample_request_bytes[WIRE_REQUEST_SIZE] = {
	/*  0 magic "CMXQ" */ 0x43, 0x4d, 0x58, 0x51,
	/*  4 version      */ 0x01, 0x00,
	/*  6 type         */ 0x02, 0x00,
	/*  8 flags        */ 0x01, 0xb0, 0xa0, 0x00,
	/* 12 batch        */ 0x45, 0x23, 0x01, 0x00,
	/* 16 request_id   */ 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
	/* 24 epoch        */ 0xcd, 0xab, 0x00, 0x00,
	/* 28 rank         */ 0x03, 0x00, 0x00, 0x00,
	/* 32 world        */ 0x00, 0x01, 0x00, 0x00,
	/* 36 reserved     */ 0x00, 0x00, 0x00, 0x00,
	/* 40 pipeline     */ 't', 'r', 'a', 'i', 'n', 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	/* 72 reserved     */ 0, 0, 0, 0, 0, 0, 0, 0,
};

static struct wire_reply sample_reply(void)
{
	struct wire_reply rp;

	memset(&rp, 0, sizeof(rp));
	rp.version = 1; /* the fixture bytes are a version 1 reply */
	rp.type = WIRE_BATCH;
	rp.status = 0x00000a0bu;
	rp.flags = WIRE_RFLAG_LAST | 0x00020000u;
	rp.request_id = 0x1122334455667788ull;
	rp.epoch = 5;
	rp.rank = 2;
	rp.world = 8;
	rp.batch = 0x00000309u;
	rp.batch_size = 32;
	rp.height = 224;
	rp.width = 320;
	rp.channels = 3;
	rp.layout = WIRE_NCHW;
	rp.dtype = WIRE_FLOAT32;
	rp.meta_size = WIRE_META_SIZE_V1;
	rp.num_classes = 1000;
	rp.batches_per_epoch = 0x00010000u;
	for (int i = 0; i < WIRE_DIGEST_SIZE; i++)
		rp.digest[i] = (uint8_t)(0xa0 + i);
	rp.body_bytes[0] = 0x0102030405060708ull;
	rp.body_bytes[1] = 128000;
	rp.body_bytes[2] = 7168;
	return rp;
}

static const uint8_t sample_reply_bytes[WIRE_REPLY_SIZE] = {
	/*   0 magic "CMXR" */ 0x43, 0x4d, 0x58, 0x52,
	/*   4 version      */ 0x01, 0x00,
	/*   6 type         */ 0x02, 0x00,
	/*   8 status       */ 0x0b, 0x0a, 0x00, 0x00,
	/*  12 flags        */ 0x01, 0x00, 0x02, 0x00,
	/*  16 request_id   */ 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,
	/*  24 epoch        */ 0x05, 0x00, 0x00, 0x00,
	/*  28 rank         */ 0x02, 0x00, 0x00, 0x00,
	/*  32 world        */ 0x08, 0x00, 0x00, 0x00,
	/*  36 batch        */ 0x09, 0x03, 0x00, 0x00,
	/*  40 batch_size   */ 0x20, 0x00, 0x00, 0x00,
	/*  44 height       */ 0xe0, 0x00, 0x00, 0x00,
	/*  48 width        */ 0x40, 0x01, 0x00, 0x00,
	/*  52 channels     */ 0x03, 0x00, 0x00, 0x00,
	/*  56 layout       */ 0x01,
	/*  57 dtype        */ 0x01,
	/*  58 meta_size    */ 0xe0, 0x00,
	/*  60 num_classes  */ 0xe8, 0x03, 0x00, 0x00,
	/*  64 batches/ep.  */ 0x00, 0x00, 0x01, 0x00,
	/*  68 reserved     */ 0x00, 0x00, 0x00, 0x00,
	/*  72 digest       */
	0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
	0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,
	0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7,
	0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf,
	/* 104 body_bytes[0] */ 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
	/* 112 body_bytes[1] */ 0x00, 0xf4, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
	/* 120 body_bytes[2] */ 0x00, 0x1c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
};

static struct wire_meta sample_meta(void)
{
	struct wire_meta m;

	memset(&m, 0, sizeof(m));
	m.index = 0x0102030405060708ll;
	m.source = -2;
	m.partner = -1;
	m.lam = 0.75;
	m.label = 7;
	m.partner_label = -1;
	m.partner_pos = 0x1234;
	m.box[0] = 1; m.box[1] = 2; m.box[2] = 300; m.box[3] = 400;
	m.crop[0] = 0.5f; m.crop[1] = 1.5f; m.crop[2] = 100.25f; m.crop[3] = -2.0f;
	m.src_w = 640;
	m.src_h = 480;
	m.op = WIRE_OP_CUTMIX;
	m.flip = 1;
	m.status = WIRE_SAMPLE_REPLACED;
	m.n_holes = 2;
	m.pad = 1;
	m.holes[0][0] = 10; m.holes[0][1] = 20; m.holes[0][2] = 30; m.holes[0][3] = 40;
	m.holes[1][0] = -1; m.holes[1][1] = 0;
	m.holes[1][2] = INT32_MAX; m.holes[1][3] = INT32_MIN;
	return m;
}

static const uint8_t sample_meta_bytes[WIRE_META_SIZE] = {
	/*   0 index        */ 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
	/*   8 source (-2)  */ 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	/*  16 partner (-1) */ 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	/*  24 lam 0.75     */ 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xe8, 0x3f,
	/*  32 label        */ 0x07, 0x00, 0x00, 0x00,
	/*  36 partner_label*/ 0xff, 0xff, 0xff, 0xff,
	/*  40 partner_pos  */ 0x34, 0x12, 0x00, 0x00,
	/*  44 box          */ 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00,
	                       0x2c, 0x01, 0x00, 0x00, 0x90, 0x01, 0x00, 0x00,
	/*  60 crop         */ 0x00, 0x00, 0x00, 0x3f, 0x00, 0x00, 0xc0, 0x3f,
	                       0x00, 0x80, 0xc8, 0x42, 0x00, 0x00, 0x00, 0xc0,
	/*  76 src_w        */ 0x80, 0x02, 0x00, 0x00,
	/*  80 src_h        */ 0xe0, 0x01, 0x00, 0x00,
	/*  84 op flip status n_holes pad */ 0x01, 0x01, 0x01, 0x02, 0x01,
	/*  89 reserved     */ 0, 0, 0, 0, 0, 0, 0,
	/*  96 holes[0]     */ 0x0a, 0, 0, 0, 0x14, 0, 0, 0, 0x1e, 0, 0, 0, 0x28, 0, 0, 0,
	/* 112 holes[1]     */ 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00,
	                       0xff, 0xff, 0xff, 0x7f, 0x00, 0x00, 0x00, 0x80,
	/* 128 holes[2..7] are zero */
};

/* ---- request ------------------------------------------------------------ */

static void test_request_exact_bytes(void **state)
{
	struct wire_request rq = sample_request();
	uint8_t buf[WIRE_REQUEST_SIZE];

	memset(buf, 0xee, sizeof(buf));
	assert_int_equal(wire_encode_request(&rq, buf), 0);
	assert_memory_equal(buf, sample_request_bytes, WIRE_REQUEST_SIZE);
}

static void test_request_round_trip(void **state)
{
	struct wire_request in = sample_request(), out;
	uint8_t buf[WIRE_REQUEST_SIZE];

	assert_int_equal(wire_encode_request(&in, buf), 0);
	memset(&out, 0x5a, sizeof(out));
	assert_int_equal(wire_decode_request(buf, sizeof(buf), &out), 0);
	assert_int_equal(out.version, in.version);
	assert_int_equal(out.type, in.type);
	assert_int_equal(out.flags, in.flags);
	assert_int_equal(out.batch, in.batch);
	assert_true(out.request_id == in.request_id);
	assert_int_equal(out.epoch, in.epoch);
	assert_int_equal(out.rank, in.rank);
	assert_int_equal(out.world, in.world);
	assert_string_equal(out.pipeline, "train");
	/* The decoded name is NUL-padded, like the encoder's input. */
	for (size_t i = strlen("train"); i < WIRE_PIPELINE_MAX; i++)
		assert_int_equal(out.pipeline[i], 0);
}

static void test_request_decode_hand_bytes(void **state)
{
	struct wire_request rq;

	assert_int_equal(wire_decode_request(sample_request_bytes, WIRE_REQUEST_SIZE, &rq), 0);
	assert_int_equal(rq.type, WIRE_BATCH);
	assert_int_equal(rq.flags, 0x00a0b001u);
	assert_int_equal(rq.batch, 0x12345);
	assert_true(rq.request_id == 0x0102030405060708ull);
	assert_int_equal(rq.epoch, 0xabcd);
	assert_int_equal(rq.rank, 3);
	assert_int_equal(rq.world, 256);
	assert_string_equal(rq.pipeline, "train");
}

static void test_request_extremes(void **state)
{
	struct wire_request in, out;
	uint8_t buf[WIRE_REQUEST_SIZE];

	memset(&in, 0, sizeof(in));
	in.type = 0xffff;
	in.flags = in.batch = in.epoch = in.rank = in.world = UINT32_MAX;
	in.request_id = UINT64_MAX;
	memset(in.pipeline, 'p', WIRE_PIPELINE_MAX - 1); /* longest name: 31 */
	assert_int_equal(wire_encode_request(&in, buf), 0);
	assert_int_equal(buf[4], WIRE_VERSION); /* version 0 means "current" */
	assert_int_equal(buf[40 + 31], 0);
	assert_int_equal(wire_decode_request(buf, sizeof(buf), &out), 0);
	assert_int_equal(out.version, WIRE_VERSION);
	assert_int_equal(out.type, 0xffff);
	assert_int_equal(out.world, UINT32_MAX);
	assert_true(out.request_id == UINT64_MAX);
	assert_int_equal(strlen(out.pipeline), WIRE_PIPELINE_MAX - 1);

	/* The empty name (global INFO) is valid too. */
	memset(&in, 0, sizeof(in));
	in.type = WIRE_INFO;
	assert_int_equal(wire_encode_request(&in, buf), 0);
	assert_int_equal(wire_decode_request(buf, sizeof(buf), &out), 0);
	assert_string_equal(out.pipeline, "");
}

static void test_request_encode_unterminated_name(void **state)
{
	struct wire_request rq = sample_request();
	uint8_t buf[WIRE_REQUEST_SIZE];

	memset(rq.pipeline, 'x', WIRE_PIPELINE_MAX);
	assert_int_equal(wire_encode_request(&rq, buf), -EINVAL);
	/* Never an unterminated name on the wire. */
	for (int i = 40; i < 72; i++)
		assert_int_equal(buf[i], 0);
}

static void test_request_reserved_ignored(void **state)
{
	uint8_t buf[WIRE_REQUEST_SIZE];
	struct wire_request rq;

	memcpy(buf, sample_request_bytes, sizeof(buf));
	memset(buf + 36, 0xff, 4);
	/* Bytes after the name's NUL are padding, ignored as well. */
	memset(buf + 46, 'z', 72 - 46);
	assert_int_equal(wire_decode_request(buf, sizeof(buf), &rq), 0);
	assert_string_equal(rq.pipeline, "train");
	assert_int_equal(rq.world, 256);
}

/* Bytes 72..79: the shared-memory session id, little-endian. */
static void test_request_session(void **state)
{
	uint8_t buf[WIRE_REQUEST_SIZE];
	struct wire_request rq = { .type = WIRE_SHM_RELEASE, .request_id = 1, .world = 1,
				   .batch = 3, .epoch = 9, .session = 0x8877665544332211ull };
	struct wire_request back;
	(void)state;

	assert_int_equal(wire_encode_request(&rq, buf), 0);
	for (int i = 0; i < 8; i++)
		assert_int_equal(buf[72 + i], 0x11 * (i + 1));
	assert_int_equal(wire_decode_request(buf, sizeof(buf), &back), 0);
	assert_true(back.session == rq.session);
	assert_int_equal(back.type, WIRE_SHM_RELEASE);
}

/* The SHM_OPEN body and the batch descriptor: byte offsets, round trip,
 * and sizes or names that are refused. */
static void test_shm_bodies(void **state)
{
	struct wire_shm_open o = { .session = 0x0102030405060708ull, .slots = 6,
				   .slot_size = 0x1000, .name = "@cutmixd-shm-1-ab" }, o2;
	struct wire_shm_desc d = { .session = 7, .slot = 2, .generation = 5,
				   .off = { 0, 64, 128 }, .len = { 60, 8, 488 } }, d2;
	uint8_t ob[WIRE_SHM_OPEN_SIZE], db[WIRE_SHM_DESC_SIZE];
	(void)state;

	memset(o.token, 0xaa, sizeof(o.token));
	wire_encode_shm_open(&o, ob);
	assert_int_equal(ob[0], 0x08);
	assert_int_equal(ob[8], 6);
	assert_int_equal(ob[17], 0x10);
	assert_int_equal(ob[24], 0xaa);
	assert_int_equal(ob[55], 0xaa);
	assert_int_equal(ob[56], 0);
	assert_memory_equal(ob + 64, "@cutmixd-shm-1-ab", 17);
	assert_int_equal(wire_decode_shm_open(ob, sizeof(ob), &o2), 0);
	assert_true(o2.session == o.session && o2.slots == 6 && o2.slot_size == 0x1000);
	assert_string_equal(o2.name, o.name);
	assert_int_equal(wire_decode_shm_open(ob, sizeof(ob) - 1, &o2), -EINVAL);
	memset(ob + 64, 'x', WIRE_SHM_NAME_MAX); /* no NUL in the name */
	assert_int_equal(wire_decode_shm_open(ob, sizeof(ob), &o2), -EINVAL);

	wire_encode_shm_desc(&d, db);
	assert_int_equal(db[8], 2);
	assert_int_equal(db[12], 5);
	assert_int_equal(db[32], 64);  /* labels offset */
	assert_int_equal(db[56], 488 & 0xff); /* meta length */
	assert_int_equal(db[57], 488 >> 8);
	assert_int_equal(wire_decode_shm_desc(db, sizeof(db), &d2), 0);
	assert_memory_equal(&d2, &d, sizeof(d));
	assert_int_equal(wire_decode_shm_desc(db, sizeof(db) + 1, &d2), -EINVAL);
	assert_int_equal(wire_decode_shm_desc(NULL, sizeof(db), &d2), -EINVAL);
}

static void test_request_rejects_length(void **state)
{
	uint8_t buf[WIRE_REQUEST_SIZE + 16];
	struct wire_request rq;

	memset(buf, 0, sizeof(buf));
	memcpy(buf, sample_request_bytes, WIRE_REQUEST_SIZE);

	/* Short by one byte: malformed, but everything before is decoded. */
	assert_int_equal(wire_decode_request(buf, WIRE_REQUEST_SIZE - 1, &rq), -WIRE_E_MALFORMED);
	assert_true(rq.request_id == 0x0102030405060708ull);
	assert_int_equal(rq.world, 256);
	assert_string_equal(rq.pipeline, "train");

	/* One byte too long. */
	assert_int_equal(wire_decode_request(buf, WIRE_REQUEST_SIZE + 1, &rq), -WIRE_E_MALFORMED);
	assert_true(rq.request_id == 0x0102030405060708ull);

	/* Just long enough to hold the request id. */
	assert_int_equal(wire_decode_request(buf, 24, &rq), -WIRE_E_MALFORMED);
	assert_true(rq.request_id == 0x0102030405060708ull);
	assert_int_equal(rq.epoch, 0);
	assert_string_equal(rq.pipeline, "");

	/* One byte short of the request id: it is not guessed at. */
	assert_int_equal(wire_decode_request(buf, 23, &rq), -WIRE_E_MALFORMED);
	assert_true(rq.request_id == 0);
	assert_int_equal(rq.batch, 0x12345);

	assert_int_equal(wire_decode_request(buf, 0, &rq), -WIRE_E_MALFORMED);
	assert_int_equal(wire_decode_request(NULL, 0, &rq), -WIRE_E_MALFORMED);
	assert_int_equal(wire_decode_request(NULL, 80, &rq), -WIRE_E_MALFORMED);
	assert_true(rq.request_id == 0);
}

static void test_request_rejects_magic(void **state)
{
	uint8_t buf[WIRE_REQUEST_SIZE];
	struct wire_request rq;

	memcpy(buf, sample_request_bytes, sizeof(buf));
	buf[0] ^= 0x01;
	assert_int_equal(wire_decode_request(buf, sizeof(buf), &rq), -WIRE_E_MALFORMED);
	assert_true(rq.request_id == 0x0102030405060708ull);

	/* A reply header's magic is not a request's. */
	memcpy(buf, sample_request_bytes, sizeof(buf));
	buf[3] = 'R';
	assert_int_equal(wire_decode_request(buf, sizeof(buf), &rq), -WIRE_E_MALFORMED);

	/* Bad magic outranks a bad version. */
	buf[4] = 9;
	assert_int_equal(wire_decode_request(buf, sizeof(buf), &rq), -WIRE_E_MALFORMED);
}

static void test_request_rejects_version(void **state)
{
	uint8_t buf[WIRE_REQUEST_SIZE];
	struct wire_request rq;

	memcpy(buf, sample_request_bytes, sizeof(buf));
	buf[4] = 2; /* version 2 is spoken too */
	assert_int_equal(wire_decode_request(buf, sizeof(buf), &rq), 0);
	assert_int_equal(rq.version, 2);
	buf[4] = 3;
	assert_int_equal(wire_decode_request(buf, sizeof(buf), &rq), -WIRE_E_VERSION);
	assert_int_equal(rq.version, 3);
	assert_true(rq.request_id == 0x0102030405060708ull);
	assert_string_equal(rq.pipeline, "train");

	buf[4] = 1;
	buf[5] = 1; /* 0x0101: the high byte counts */
	assert_int_equal(wire_decode_request(buf, sizeof(buf), &rq), -WIRE_E_VERSION);
	assert_int_equal(rq.version, 0x0101);

	buf[4] = 0;
	buf[5] = 0;
	assert_int_equal(wire_decode_request(buf, sizeof(buf), &rq), -WIRE_E_VERSION);
}

static void test_request_rejects_unterminated_name(void **state)
{
	uint8_t buf[WIRE_REQUEST_SIZE];
	struct wire_request rq;

	memcpy(buf, sample_request_bytes, sizeof(buf));
	memset(buf + 40, 'a', WIRE_PIPELINE_MAX);
	assert_int_equal(wire_decode_request(buf, sizeof(buf), &rq), -WIRE_E_MALFORMED);
	assert_true(rq.request_id == 0x0102030405060708ull);
	assert_string_equal(rq.pipeline, ""); /* never an unterminated string */

	/* A NUL in the last name byte is enough. */
	buf[40 + WIRE_PIPELINE_MAX - 1] = 0;
	assert_int_equal(wire_decode_request(buf, sizeof(buf), &rq), 0);
	assert_int_equal(strlen(rq.pipeline), WIRE_PIPELINE_MAX - 1);

	/* A NUL in the reserved bytes after the name does not count. */
	buf[40 + WIRE_PIPELINE_MAX - 1] = 'a';
	memset(buf + 72, 0, 8);
	assert_int_equal(wire_decode_request(buf, sizeof(buf), &rq), -WIRE_E_MALFORMED);
}

/* ---- reply -------------------------------------------------------------- */

static void test_reply_exact_bytes(void **state)
{
	struct wire_reply rp = sample_reply();
	uint8_t buf[WIRE_REPLY_SIZE];

	memset(buf, 0xee, sizeof(buf));
	wire_encode_reply(&rp, buf);
	assert_memory_equal(buf, sample_reply_bytes, WIRE_REPLY_SIZE);
}

static void test_reply_round_trip(void **state)
{
	struct wire_reply in = sample_reply(), out;
	uint8_t buf[WIRE_REPLY_SIZE];

	wire_encode_reply(&in, buf);
	memset(&out, 0x5a, sizeof(out));
	assert_int_equal(wire_decode_reply(buf, sizeof(buf), &out), 0);
	assert_int_equal(out.version, in.version);
	assert_int_equal(out.type, in.type);
	assert_int_equal(out.status, in.status);
	assert_int_equal(out.flags, in.flags);
	assert_true(out.request_id == in.request_id);
	assert_int_equal(out.epoch, in.epoch);
	assert_int_equal(out.rank, in.rank);
	assert_int_equal(out.world, in.world);
	assert_int_equal(out.batch, in.batch);
	assert_int_equal(out.batch_size, in.batch_size);
	assert_int_equal(out.height, in.height);
	assert_int_equal(out.width, in.width);
	assert_int_equal(out.channels, in.channels);
	assert_int_equal(out.layout, in.layout);
	assert_int_equal(out.dtype, in.dtype);
	assert_int_equal(out.meta_size, in.meta_size);
	assert_int_equal(out.num_classes, in.num_classes);
	assert_int_equal(out.batches_per_epoch, in.batches_per_epoch);
	assert_memory_equal(out.digest, in.digest, WIRE_DIGEST_SIZE);
	for (int i = 0; i < 3; i++)
		assert_true(out.body_bytes[i] == in.body_bytes[i]);
}

static void test_reply_version_zero_is_current(void **state)
{
	struct wire_reply rp, out;
	uint8_t buf[WIRE_REPLY_SIZE];

	memset(&rp, 0, sizeof(rp));
	rp.type = WIRE_ERROR;
	rp.status = WIRE_E_NO_PIPELINE;
	wire_encode_reply(&rp, buf);
	assert_int_equal(buf[4], WIRE_VERSION);
	assert_int_equal(buf[5], 0);
	assert_int_equal(buf[6], 127);
	assert_int_equal(buf[8], WIRE_E_NO_PIPELINE);
	assert_int_equal(wire_decode_reply(buf, sizeof(buf), &out), 0);
	assert_int_equal(out.type, WIRE_ERROR);
}

static void test_reply_reserved_ignored(void **state)
{
	uint8_t buf[WIRE_REPLY_SIZE];
	struct wire_reply rp;

	memcpy(buf, sample_reply_bytes, sizeof(buf));
	memset(buf + 68, 0xff, 4);
	assert_int_equal(wire_decode_reply(buf, sizeof(buf), &rp), 0);
	assert_int_equal(rp.batches_per_epoch, 0x10000);
	assert_int_equal(rp.digest[0], 0xa0);
}

static void test_reply_rejects(void **state)
{
	uint8_t buf[WIRE_REPLY_SIZE + 8];
	struct wire_reply rp;

	memset(buf, 0, sizeof(buf));
	memcpy(buf, sample_reply_bytes, WIRE_REPLY_SIZE);

	assert_int_equal(wire_decode_reply(buf, WIRE_REPLY_SIZE - 1, &rp), -WIRE_E_MALFORMED);
	assert_true(rp.request_id == 0x1122334455667788ull);
	assert_true(rp.body_bytes[1] == 128000);
	assert_true(rp.body_bytes[2] == 0); /* not entirely inside: not decoded */
	assert_int_equal(wire_decode_reply(buf, WIRE_REPLY_SIZE + 1, &rp), -WIRE_E_MALFORMED);
	assert_int_equal(wire_decode_reply(buf, 0, &rp), -WIRE_E_MALFORMED);
	assert_int_equal(wire_decode_reply(NULL, 128, &rp), -WIRE_E_MALFORMED);
	/* A request is not a reply. */
	assert_int_equal(wire_decode_reply(sample_request_bytes, WIRE_REQUEST_SIZE, &rp),
			 -WIRE_E_MALFORMED);

	buf[2] ^= 0x40;
	assert_int_equal(wire_decode_reply(buf, WIRE_REPLY_SIZE, &rp), -WIRE_E_MALFORMED);
	assert_true(rp.request_id == 0x1122334455667788ull);
	buf[2] ^= 0x40;

	buf[4] = 7;
	assert_int_equal(wire_decode_reply(buf, WIRE_REPLY_SIZE, &rp), -WIRE_E_VERSION);
	assert_int_equal(rp.version, 7);
	assert_true(rp.request_id == 0x1122334455667788ull);
}

/* ---- metadata ----------------------------------------------------------- */

static void test_meta_exact_bytes(void **state)
{
	struct wire_meta m = sample_meta();
	uint8_t buf[WIRE_META_SIZE];

	memset(buf, 0xee, sizeof(buf));
	wire_encode_meta(&m, buf);
	assert_memory_equal(buf, sample_meta_bytes, WIRE_META_SIZE);
}

static void test_meta_round_trip(void **state)
{
	struct wire_meta in = sample_meta(), out;
	uint8_t buf[WIRE_META_SIZE];

	wire_encode_meta(&in, buf);
	memset(&out, 0x5a, sizeof(out));
	wire_decode_meta(buf, &out);
	assert_true(out.index == in.index);
	assert_true(out.source == -2);
	assert_true(out.partner == -1);
	assert_true(out.lam == 0.75);
	assert_int_equal(out.label, 7);
	assert_int_equal(out.partner_label, -1);
	assert_int_equal(out.partner_pos, 0x1234);
	assert_memory_equal(out.box, in.box, sizeof(in.box));
	for (int i = 0; i < 4; i++)
		assert_true(out.crop[i] == in.crop[i]);
	assert_int_equal(out.src_w, 640);
	assert_int_equal(out.src_h, 480);
	assert_int_equal(out.op, WIRE_OP_CUTMIX);
	assert_int_equal(out.flip, 1);
	assert_int_equal(out.status, WIRE_SAMPLE_REPLACED);
	assert_int_equal(out.n_holes, 2);
	assert_int_equal(out.pad, 1);
	assert_memory_equal(out.holes, in.holes, sizeof(in.holes));
	assert_int_equal(out.holes[1][3], INT32_MIN);
}

static void test_meta_extremes(void **state)
{
	struct wire_meta in, out;
	uint8_t buf[WIRE_META_SIZE];

	memset(&in, 0, sizeof(in));
	in.index = INT64_MIN;
	in.source = INT64_MAX;
	in.partner = -1;
	in.lam = 1.0 / 3.0;
	in.label = INT32_MIN;
	in.partner_label = INT32_MAX;
	in.partner_pos = -1;
	in.crop[0] = 1e-30f;
	in.op = WIRE_OP_MIXUP;
	in.n_holes = WIRE_MAX_HOLES;
	for (int h = 0; h < WIRE_MAX_HOLES; h++)
		for (int i = 0; i < 4; i++)
			in.holes[h][i] = h * 1000 + i - 4000;
	wire_encode_meta(&in, buf);
	wire_decode_meta(buf, &out);
	assert_true(out.index == INT64_MIN);
	assert_true(out.source == INT64_MAX);
	assert_true(out.lam == 1.0 / 3.0); /* bit exact */
	assert_int_equal(out.label, INT32_MIN);
	assert_int_equal(out.partner_label, INT32_MAX);
	assert_true(out.crop[0] == 1e-30f);
	assert_int_equal(out.op, WIRE_OP_MIXUP);
	assert_memory_equal(out.holes, in.holes, sizeof(in.holes));
	assert_int_equal(buf[96 + 16 * 7 + 12], (uint8_t)(7 * 1000 + 3 - 4000));
}

static void test_meta_reserved_ignored(void **state)
{
	uint8_t buf[WIRE_META_SIZE];
	struct wire_meta m;

	memcpy(buf, sample_meta_bytes, sizeof(buf));
	memset(buf + 89, 0xff, 7);
	wire_decode_meta(buf, &m);
	assert_int_equal(m.pad, 1);
	assert_int_equal(m.holes[0][0], 10);
}

/* Version 2: the ops and erase boxes land at their documented offsets and
 * survive a round trip; a version 1 record (224 bytes) decodes with them
 * zero. */
static void test_meta_v2_fields(void **state)
{
	struct wire_meta in = sample_meta(), out;
	uint8_t buf[WIRE_META_SIZE];

	in.n_ops = 2;
	in.n_erase = 1;
	in.erase_mode = WIRE_ERASE_PIXEL;
	in.resize_interp = 1;
	in.ops[0].op = 5;
	in.ops[0].interp = 1;
	in.ops[0].fill[0] = 124; in.ops[0].fill[1] = 116; in.ops[0].fill[2] = 104;
	in.ops[0].magnitude = -27.5;
	in.ops[7].op = 15;
	in.ops[7].magnitude = 0.125;
	in.erase[0][0] = 3; in.erase[0][1] = 4; in.erase[0][2] = 50; in.erase[0][3] = 60;
	in.erase[7][3] = -7;
	wire_encode_meta(&in, buf);
	assert_memory_equal(buf, sample_meta_bytes, WIRE_META_SIZE_V1);
	assert_int_equal(buf[224], 2);
	assert_int_equal(buf[225], 1);
	assert_int_equal(buf[226], WIRE_ERASE_PIXEL);
	assert_int_equal(buf[227], 1);
	assert_int_equal(buf[232], 5);
	assert_int_equal(buf[233], 1);
	assert_int_equal(buf[234], 124);
	assert_int_equal(buf[236], 104);
	/* -27.5 = 0xc03b800000000000, little-endian */
	assert_int_equal(buf[232 + 15], 0xc0);
	assert_int_equal(buf[232 + 14], 0x3b);
	assert_int_equal(buf[232 + 13], 0x80);
	assert_int_equal(buf[232 + 7 * 16], 15);
	assert_int_equal(buf[360], 3);
	assert_int_equal(buf[360 + 12], 60);
	assert_int_equal(buf[487], 0xff);

	memset(&out, 0x5a, sizeof(out));
	assert_int_equal(wire_decode_meta_n(buf, WIRE_META_SIZE_V2, &out), 0);
	assert_int_equal(out.n_ops, 2);
	assert_int_equal(out.n_erase, 1);
	assert_int_equal(out.erase_mode, WIRE_ERASE_PIXEL);
	assert_int_equal(out.resize_interp, 1);
	assert_int_equal(out.ops[0].op, 5);
	assert_int_equal(out.ops[0].fill[1], 116);
	assert_true(out.ops[0].magnitude == -27.5);
	assert_true(out.ops[7].magnitude == 0.125);
	assert_memory_equal(out.erase, in.erase, sizeof(in.erase));

	/* a v1 record: the v2 fields read as zero, the v1 fields as sent */
	assert_int_equal(wire_decode_meta_n(buf, WIRE_META_SIZE_V1, &out), 0);
	assert_int_equal(out.n_ops, 0);
	assert_int_equal(out.n_erase, 0);
	assert_true(out.ops[0].magnitude == 0);
	assert_int_equal(out.erase[0][0], 0);
	assert_int_equal(out.n_holes, 2);
	assert_int_equal(out.holes[0][0], 10);
	assert_int_equal(wire_decode_meta_n(buf, WIRE_META_SIZE_V1 - 1, &out), -EINVAL);
}

/* ---- status names ------------------------------------------------------- */

static void test_status_names(void **state)
{
	static const struct { uint32_t code; const char *name; } want[] = {
		{ WIRE_OK, "ok" },
		{ WIRE_E_MALFORMED, "malformed request" },
		{ WIRE_E_VERSION, "unsupported protocol version" },
		{ WIRE_E_UNKNOWN_TYPE, "unknown request type" },
		{ WIRE_E_NO_PIPELINE, "unknown pipeline" },
		{ WIRE_E_BAD_SHARD, "bad shard (need world >= 1 and rank < world)" },
		{ WIRE_E_BATCH_RANGE, "batch index out of range" },
		{ WIRE_E_BUSY, "busy: too many outstanding requests" },
		{ WIRE_E_NOT_EVAL, "not an eval pipeline" },
		{ WIRE_E_DECODE, "image decode failed" },
		{ WIRE_E_INTERNAL, "internal error" },
		{ WIRE_E_SHUTTING_DOWN, "shutting down" },
		{ WIRE_E_EPOCH_RANGE, "epoch out of range" },
	};

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		assert_string_equal(wire_status_name(want[i].code), want[i].name);
	/* Every code from 0 to the last has its own name. */
	for (uint32_t a = 0; a <= WIRE_E_EPOCH_RANGE; a++)
		for (uint32_t b = a + 1; b <= WIRE_E_EPOCH_RANGE; b++)
			assert_string_not_equal(wire_status_name(a), wire_status_name(b));
	assert_string_equal(wire_status_name(13), "unknown status");
	assert_string_equal(wire_status_name(WIRE_ERROR), "unknown status");
	assert_string_equal(wire_status_name(UINT32_MAX), "unknown status");
}

static void test_sizes(void **state)
{
	/* The constants the layouts above were written against. */
	assert_int_equal(WIRE_REQUEST_SIZE, 80);
	assert_int_equal(WIRE_REPLY_SIZE, 128);
	assert_int_equal(WIRE_META_SIZE_V1, 224);
	assert_int_equal(WIRE_META_SIZE_V2, 488);
	assert_int_equal(WIRE_META_SIZE, WIRE_META_SIZE_V2);
	assert_int_equal(wire_meta_size(1), 224);
	assert_int_equal(wire_meta_size(2), 488);
	assert_int_equal(wire_meta_size(3), 0);
	assert_int_equal(WIRE_REQUEST_MAGIC, 0x51584d43u);
	assert_int_equal(WIRE_REPLY_MAGIC, 0x52584d43u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_request_exact_bytes),
		cmocka_unit_test(test_request_round_trip),
		cmocka_unit_test(test_request_decode_hand_bytes),
		cmocka_unit_test(test_request_extremes),
		cmocka_unit_test(test_request_encode_unterminated_name),
		cmocka_unit_test(test_request_reserved_ignored),
		cmocka_unit_test(test_request_session),
		cmocka_unit_test(test_shm_bodies),
		cmocka_unit_test(test_request_rejects_length),
		cmocka_unit_test(test_request_rejects_magic),
		cmocka_unit_test(test_request_rejects_version),
		cmocka_unit_test(test_request_rejects_unterminated_name),
		cmocka_unit_test(test_reply_exact_bytes),
		cmocka_unit_test(test_reply_round_trip),
		cmocka_unit_test(test_reply_version_zero_is_current),
		cmocka_unit_test(test_reply_reserved_ignored),
		cmocka_unit_test(test_reply_rejects),
		cmocka_unit_test(test_meta_exact_bytes),
		cmocka_unit_test(test_meta_round_trip),
		cmocka_unit_test(test_meta_extremes),
		cmocka_unit_test(test_meta_reserved_ignored),
		cmocka_unit_test(test_meta_v2_fields),
		cmocka_unit_test(test_status_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
