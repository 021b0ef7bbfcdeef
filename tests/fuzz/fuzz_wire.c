/*
 * fuzz_wire.c — libFuzzer target for the wire codec (proto/wire.c).
 *
 * The input is one frame as it would arrive on the socket. It is fed to
 * every decoder, at its own length (untrusted size: short, long, empty),
 * and the results are checked against properties the codec promises:
 *
 *   - decoders never read past `len` (ASan) and never crash;
 *   - return values are 0, -WIRE_E_MALFORMED or -WIRE_E_VERSION only, and
 *     0 exactly when the spec says so (size, magic, version, NUL in name);
 *   - partial decode: a field is filled iff it lies entirely inside the
 *     input, else it is zero (so an error reply can echo request_id);
 *   - the pipeline name is always NUL-terminated, never longer than 31;
 *   - round trip: encode(decode(x)) == x except for the reserved bytes
 *     (sent as zero) and the name's padding after its first NUL;
 *   - the shm open body and descriptor decoders accept exactly their
 *     sizes (and a NUL-terminated name) and round-trip;
 *   - wire_decode_meta on any 224 bytes, then encode, gives the same
 *     bytes except reserved 89..95 (float/double bit patterns, NaN
 *     payloads included, survive);
 *   - wire_encode_request() refuses a name without NUL in its 32 bytes
 *     (-EINVAL, empty name in the frame) and accepts any other;
 *   - wire_status_name() never returns NULL.
 *
 * A violated property calls abort(), which libFuzzer reports as a crash.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "fuzz_wire: %s:%d: check failed: %s\n", \
				__FILE__, __LINE__, #cond);                  \
			abort();                                             \
		}                                                            \
	} while (0)

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

/* Value a partial decode must give: the full decode's if the field
 * [off, off+n) is inside the input, else zero. */
#define PART(field, off, n) (size >= (size_t)(off) + (n) ? full.field : 0)

static void fuzz_request(const uint8_t *data, size_t size)
{
	struct wire_request rq, full, back;
	uint8_t pad[WIRE_REQUEST_SIZE] = { 0 }, enc[WIRE_REQUEST_SIZE];
	size_t n = size < WIRE_REQUEST_SIZE ? size : WIRE_REQUEST_SIZE;
	int rc, rc_full;

	rc = wire_decode_request(data, size, &rq);
	CHECK(rc == 0 || rc == -WIRE_E_MALFORMED || rc == -WIRE_E_VERSION);
	CHECK(memchr(rq.pipeline, 0, WIRE_PIPELINE_MAX) != NULL);

	/* The same bytes zero-padded to a whole frame: the reference for
	 * which fields a short frame may fill. */
	memcpy(pad, data, n);
	rc_full = wire_decode_request(pad, sizeof(pad), &full);
	CHECK(memchr(full.pipeline, 0, WIRE_PIPELINE_MAX) != NULL);
	CHECK(rq.version == PART(version, 4, 2));
	CHECK(rq.type == PART(type, 6, 2));
	CHECK(rq.flags == PART(flags, 8, 4));
	CHECK(rq.batch == PART(batch, 12, 4));
	CHECK(rq.request_id == PART(request_id, 16, 8));
	CHECK(rq.epoch == PART(epoch, 24, 4));
	CHECK(rq.rank == PART(rank, 28, 4));
	CHECK(rq.world == PART(world, 32, 4));
	CHECK(rq.session == PART(session, 72, 8));
	if (size >= 72)
		CHECK(!strcmp(rq.pipeline, full.pipeline));
	else
		CHECK(rq.pipeline[0] == '\0');

	/* 0 exactly when the specification says the frame is good. */
	{
		bool good = size == WIRE_REQUEST_SIZE &&
			    le32(data) == WIRE_REQUEST_MAGIC &&
			    le16(data + 4) >= WIRE_VERSION_MIN &&
			    le16(data + 4) <= WIRE_VERSION &&
			    memchr(data + 40, 0, WIRE_PIPELINE_MAX) != NULL;

		CHECK((rc == 0) == good);
		if (size != WIRE_REQUEST_SIZE || le32(data) != WIRE_REQUEST_MAGIC)
			CHECK(rc == -WIRE_E_MALFORMED);
		(void)rc_full;
	}

	if (rc == 0) {
		/* Round trip. */
		CHECK(wire_encode_request(&rq, enc) == 0);
		CHECK(!memcmp(enc, data, 36));
		CHECK(le32(enc + 36) == 0 && !memcmp(enc + 72, data + 72, 8)); /* session */
		{
			size_t len = strlen(rq.pipeline);

			CHECK(len < WIRE_PIPELINE_MAX);
			CHECK(!memcmp(enc + 40, data + 40, len));
			for (size_t i = len; i < WIRE_PIPELINE_MAX; i++)
				CHECK(enc[40 + i] == 0);
		}
		CHECK(wire_decode_request(enc, sizeof(enc), &back) == 0);
		CHECK(!memcmp(&back, &rq, sizeof(rq)));
	}
	/* Encoding a name of 32 bytes from the input: refused (with an empty
	 * name in the frame) exactly when it has no NUL. */
	if (size >= 72) {
		struct wire_request any = full;
		bool has_nul = memchr(data + 40, 0, WIRE_PIPELINE_MAX) != NULL;
		int erc;

		memcpy(any.pipeline, data + 40, WIRE_PIPELINE_MAX);
		erc = wire_encode_request(&any, enc);
		CHECK(erc == (has_nul ? 0 : -EINVAL));
		if (!has_nul)
			for (int i = 0; i < WIRE_PIPELINE_MAX; i++)
				CHECK(enc[40 + i] == 0);
	}
	/* Undecodable bytes: NULL with any length is an empty frame. */
	CHECK(wire_decode_request(NULL, size, &back) == -WIRE_E_MALFORMED);
}

static void fuzz_reply(const uint8_t *data, size_t size)
{
	struct wire_reply rp, full, back;
	uint8_t pad[WIRE_REPLY_SIZE] = { 0 }, enc[WIRE_REPLY_SIZE];
	size_t n = size < WIRE_REPLY_SIZE ? size : WIRE_REPLY_SIZE;
	int rc;

	rc = wire_decode_reply(data, size, &rp);
	CHECK(rc == 0 || rc == -WIRE_E_MALFORMED || rc == -WIRE_E_VERSION);
	CHECK((rc == 0) == (size == WIRE_REPLY_SIZE &&
			    le32(data) == WIRE_REPLY_MAGIC &&
			    le16(data + 4) >= WIRE_VERSION_MIN &&
			    le16(data + 4) <= WIRE_VERSION));
	(void)wire_status_name(rp.status);
	CHECK(wire_status_name(rp.status) != NULL);

	memcpy(pad, data, n);
	(void)wire_decode_reply(pad, sizeof(pad), &full);
	CHECK(rp.version == PART(version, 4, 2));
	CHECK(rp.type == PART(type, 6, 2));
	CHECK(rp.status == PART(status, 8, 4));
	CHECK(rp.flags == PART(flags, 12, 4));
	CHECK(rp.request_id == PART(request_id, 16, 8));
	CHECK(rp.epoch == PART(epoch, 24, 4));
	CHECK(rp.rank == PART(rank, 28, 4));
	CHECK(rp.world == PART(world, 32, 4));
	CHECK(rp.batch == PART(batch, 36, 4));
	CHECK(rp.batch_size == PART(batch_size, 40, 4));
	CHECK(rp.height == PART(height, 44, 4));
	CHECK(rp.width == PART(width, 48, 4));
	CHECK(rp.channels == PART(channels, 52, 4));
	CHECK(rp.layout == PART(layout, 56, 1));
	CHECK(rp.dtype == PART(dtype, 57, 1));
	CHECK(rp.meta_size == PART(meta_size, 58, 2));
	CHECK(rp.num_classes == PART(num_classes, 60, 4));
	CHECK(rp.batches_per_epoch == PART(batches_per_epoch, 64, 4));
	for (int i = 0; i < 3; i++)
		CHECK(rp.body_bytes[i] == PART(body_bytes[i], 104 + 8 * (size_t)i, 8));
	if (size >= 104)
		CHECK(!memcmp(rp.digest, full.digest, WIRE_DIGEST_SIZE));
	else
		for (int i = 0; i < WIRE_DIGEST_SIZE; i++)
			CHECK(rp.digest[i] == 0);

	if (rc == 0) {
		wire_encode_reply(&rp, enc);
		CHECK(!memcmp(enc, data, 68));
		CHECK(le32(enc + 68) == 0);
		CHECK(!memcmp(enc + 72, data + 72, WIRE_REPLY_SIZE - 72));
		CHECK(wire_decode_reply(enc, sizeof(enc), &back) == 0);
		CHECK(!memcmp(&back, &rp, sizeof(rp)));
	}
	CHECK(wire_decode_reply(NULL, size, &back) == -WIRE_E_MALFORMED);
}

static void fuzz_meta(const uint8_t *data, size_t size)
{
	struct wire_meta m, back;
	uint8_t *in, enc[WIRE_META_SIZE];

	if (size < WIRE_META_SIZE)
		return;
	/* Exactly WIRE_META_SIZE bytes on the heap: an over-read is caught. */
	in = malloc(WIRE_META_SIZE);
	CHECK(in != NULL);
	memcpy(in, data + (size - WIRE_META_SIZE), WIRE_META_SIZE);
	wire_decode_meta(in, &m);
	wire_encode_meta(&m, enc);
	CHECK(!memcmp(enc, in, 89));
	for (int i = 89; i < 96; i++)
		CHECK(enc[i] == 0);
	/* Version 2 (protocol section 7): holes, then n_ops..resize_interp
	 * (224..227), reserved 228..231, WIRE_MAX_OPS 16-byte ops (op,
	 * interp, fill[3], 3 reserved, magnitude), the erase boxes from 360. */
	CHECK(!memcmp(enc + 96, in + 96, 228 - 96));
	for (int i = 228; i < 232; i++)
		CHECK(enc[i] == 0);
	for (int k = 0; k < WIRE_MAX_OPS; k++) {
		const uint8_t *e = enc + 232 + 16 * k, *x = in + 232 + 16 * k;

		CHECK(!memcmp(e, x, 5) && !memcmp(e + 8, x + 8, 8));
		CHECK(e[5] == 0 && e[6] == 0 && e[7] == 0);
	}
	CHECK(!memcmp(enc + 360, in + 360, WIRE_META_SIZE - 360));
	wire_decode_meta(enc, &back);
	/* Compare fields, not the struct: its padding is not ours. */
	CHECK(back.index == m.index && back.source == m.source &&
	      back.partner == m.partner && back.label == m.label &&
	      back.partner_label == m.partner_label &&
	      back.partner_pos == m.partner_pos && back.src_w == m.src_w &&
	      back.src_h == m.src_h && back.op == m.op && back.flip == m.flip &&
	      back.status == m.status && back.n_holes == m.n_holes &&
	      back.pad == m.pad);
	CHECK(!memcmp(&back.lam, &m.lam, sizeof(m.lam)));
	CHECK(!memcmp(back.box, m.box, sizeof(m.box)));
	CHECK(!memcmp(back.crop, m.crop, sizeof(m.crop)));
	CHECK(!memcmp(back.holes, m.holes, sizeof(m.holes)));
	free(in);
}

static void fuzz_shm(const uint8_t *data, size_t size)
{
	struct wire_shm_open o;
	struct wire_shm_desc d;
	uint8_t ob[WIRE_SHM_OPEN_SIZE], db[WIRE_SHM_DESC_SIZE];
	int rc = wire_decode_shm_open(data, size, &o);

	CHECK(rc == 0 || rc == -EINVAL);
	CHECK((rc == 0) == (size == WIRE_SHM_OPEN_SIZE &&
			    memchr(data + 64, 0, WIRE_SHM_NAME_MAX) != NULL));
	if (rc == 0) {
		wire_encode_shm_open(&o, ob);
		CHECK(!memcmp(ob, data, 12) && !memcmp(ob + 16, data + 16, 40));
	}
	rc = wire_decode_shm_desc(data, size, &d);
	CHECK((rc == 0) == (size == WIRE_SHM_DESC_SIZE));
	if (rc == 0) {
		wire_encode_shm_desc(&d, db);
		CHECK(!memcmp(db, data, WIRE_SHM_DESC_SIZE));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_shm(data, size);
	fuzz_request(data, size);
	fuzz_reply(data, size);
	fuzz_meta(data, size);
	return 0;
}
