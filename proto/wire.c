/*
 * wire.c — encode and decode the cutmixd wire format (see wire.h for the
 * byte layouts and proto/PROTOCOL.md for the specification).
 *
 * Every field is written and read one byte at a time in little-endian
 * order; floating-point values travel as the little-endian bytes of their
 * IEEE-754 bit pattern. Nothing here casts a struct onto a buffer, so the
 * encoding is the same on every host and compiler.
 *
 * Decoders treat their input as untrusted: they never read past `len`,
 * decode every field that lies entirely inside the buffer (so a reply to a
 * broken request can still echo its request_id), and report the first
 * problem found as a negative wire_status.
 *
 * The wire_* symbols are internal to libcutmixd: hidden from the shared
 * library's dynamic symbol table so that the library exports only its
 * cutmixd_ prefix. Static linking (daemon, tests) is unaffected.
 */
#pragma GCC visibility push(hidden)
#include "wire.h"
#include "status.h"
#pragma GCC visibility pop

#include <errno.h>
#include <string.h>

/* ---- little-endian primitives ------------------------------------------ */

static void put_u16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_f32(uint8_t *p, float f)
{
	uint32_t bits;

	memcpy(&bits, &f, sizeof(bits));
	put_u32(p, bits);
}

static void put_f64(uint8_t *p, double d)
{
	uint64_t bits;

	memcpy(&bits, &d, sizeof(bits));
	put_u64(p, bits);
}

static uint16_t get_u16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (uint16_t)p[1] << 8);
}

static uint32_t get_u32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* Two's complement, spelled out so no implementation-defined conversion
 * of an out-of-range unsigned value is involved. */
static int32_t get_i32(const uint8_t *p)
{
	uint32_t u = get_u32(p);

	return u <= INT32_MAX ? (int32_t)u : -(int32_t)(~u) - 1;
}

static int64_t get_i64(const uint8_t *p)
{
	uint64_t u = get_u64(p);

	return u <= INT64_MAX ? (int64_t)u : -(int64_t)(~u) - 1;
}

static float get_f32(const uint8_t *p)
{
	uint32_t bits = get_u32(p);
	float f;

	memcpy(&f, &bits, sizeof(f));
	return f;
}

static double get_f64(const uint8_t *p)
{
	uint64_t bits = get_u64(p);
	double d;

	memcpy(&d, &bits, sizeof(d));
	return d;
}

/* A field [off, off+size) is decoded only when it lies inside the input. */
static bool have(size_t len, size_t off, size_t size)
{
	return len >= off + size;
}

/* ---- request ------------------------------------------------------------ */

enum {
	RQ_MAGIC = 0, RQ_VERSION = 4, RQ_TYPE = 6, RQ_FLAGS = 8,
	RQ_BATCH = 12, RQ_ID = 16, RQ_EPOCH = 24, RQ_RANK = 28,
	RQ_WORLD = 32, RQ_RESERVED0 = 36, RQ_PIPELINE = 40, RQ_SESSION = 72,
};

/*
 * A zero version means "the version this code speaks", so a zeroed struct
 * with only the interesting fields set encodes a valid request.
 * -EINVAL when the pipeline name has no NUL within WIRE_PIPELINE_MAX bytes
 * (it cannot be sent); `out` then holds the request with an empty name.
 */
int wire_encode_request(const struct wire_request *rq, uint8_t out[WIRE_REQUEST_SIZE])
{
	const char *nul = memchr(rq->pipeline, 0, WIRE_PIPELINE_MAX);

	memset(out, 0, WIRE_REQUEST_SIZE);
	put_u32(out + RQ_MAGIC, WIRE_REQUEST_MAGIC);
	put_u16(out + RQ_VERSION, rq->version ? rq->version : WIRE_VERSION);
	put_u16(out + RQ_TYPE, rq->type);
	put_u32(out + RQ_FLAGS, rq->flags);
	put_u32(out + RQ_BATCH, rq->batch);
	put_u64(out + RQ_ID, rq->request_id);
	put_u32(out + RQ_EPOCH, rq->epoch);
	put_u32(out + RQ_RANK, rq->rank);
	put_u32(out + RQ_WORLD, rq->world);
	put_u64(out + RQ_SESSION, rq->session);
	if (!nul)
		return -EINVAL;
	memcpy(out + RQ_PIPELINE, rq->pipeline, (size_t)(nul - rq->pipeline));
	return 0;
}

int wire_decode_request(const void *buf, size_t len, struct wire_request *rq)
{
	const uint8_t *p = buf;
	bool magic_ok = false, name_ok = false;

	memset(rq, 0, sizeof(*rq));
	if (!p)
		len = 0;
	if (have(len, RQ_MAGIC, 4))
		magic_ok = get_u32(p + RQ_MAGIC) == WIRE_REQUEST_MAGIC;
	if (have(len, RQ_VERSION, 2))
		rq->version = get_u16(p + RQ_VERSION);
	if (have(len, RQ_TYPE, 2))
		rq->type = get_u16(p + RQ_TYPE);
	if (have(len, RQ_FLAGS, 4))
		rq->flags = get_u32(p + RQ_FLAGS);
	if (have(len, RQ_BATCH, 4))
		rq->batch = get_u32(p + RQ_BATCH);
	if (have(len, RQ_ID, 8))
		rq->request_id = get_u64(p + RQ_ID);
	if (have(len, RQ_EPOCH, 4))
		rq->epoch = get_u32(p + RQ_EPOCH);
	if (have(len, RQ_RANK, 4))
		rq->rank = get_u32(p + RQ_RANK);
	if (have(len, RQ_WORLD, 4))
		rq->world = get_u32(p + RQ_WORLD);
	if (have(len, RQ_PIPELINE, WIRE_PIPELINE_MAX)) {
		const uint8_t *name = p + RQ_PIPELINE;
		const uint8_t *nul = memchr(name, 0, WIRE_PIPELINE_MAX);

		/* Bytes after the first NUL are padding and are ignored. */
		if (nul) {
			memcpy(rq->pipeline, name, (size_t)(nul - name));
			name_ok = true;
		}
	}
	if (have(len, RQ_SESSION, 8))
		rq->session = get_u64(p + RQ_SESSION);
	/* Reserved bytes (36..39) are ignored on receipt. */

	if (len != WIRE_REQUEST_SIZE || !magic_ok)
		return -WIRE_E_MALFORMED;
	if (!wire_version_ok(rq->version))
		return -WIRE_E_VERSION;
	if (!name_ok)
		return -WIRE_E_MALFORMED;
	return 0;
}

/* ---- reply -------------------------------------------------------------- */

enum {
	RP_MAGIC = 0, RP_VERSION = 4, RP_TYPE = 6, RP_STATUS = 8,
	RP_FLAGS = 12, RP_ID = 16, RP_EPOCH = 24, RP_RANK = 28,
	RP_WORLD = 32, RP_BATCH = 36, RP_BATCH_SIZE = 40, RP_HEIGHT = 44,
	RP_WIDTH = 48, RP_CHANNELS = 52, RP_LAYOUT = 56, RP_DTYPE = 57,
	RP_META_SIZE = 58, RP_NUM_CLASSES = 60, RP_BPE = 64,
	RP_RESERVED = 68, RP_DIGEST = 72, RP_BODY_BYTES = 104,
};

/* A zero version encodes as WIRE_VERSION, as for requests. */
void wire_encode_reply(const struct wire_reply *rp, uint8_t out[WIRE_REPLY_SIZE])
{
	memset(out, 0, WIRE_REPLY_SIZE);
	put_u32(out + RP_MAGIC, WIRE_REPLY_MAGIC);
	put_u16(out + RP_VERSION, rp->version ? rp->version : WIRE_VERSION);
	put_u16(out + RP_TYPE, rp->type);
	put_u32(out + RP_STATUS, rp->status);
	put_u32(out + RP_FLAGS, rp->flags);
	put_u64(out + RP_ID, rp->request_id);
	put_u32(out + RP_EPOCH, rp->epoch);
	put_u32(out + RP_RANK, rp->rank);
	put_u32(out + RP_WORLD, rp->world);
	put_u32(out + RP_BATCH, rp->batch);
	put_u32(out + RP_BATCH_SIZE, rp->batch_size);
	put_u32(out + RP_HEIGHT, rp->height);
	put_u32(out + RP_WIDTH, rp->width);
	put_u32(out + RP_CHANNELS, rp->channels);
	out[RP_LAYOUT] = rp->layout;
	out[RP_DTYPE] = rp->dtype;
	put_u16(out + RP_META_SIZE, rp->meta_size);
	put_u32(out + RP_NUM_CLASSES, rp->num_classes);
	put_u32(out + RP_BPE, rp->batches_per_epoch);
	memcpy(out + RP_DIGEST, rp->digest, WIRE_DIGEST_SIZE);
	for (int i = 0; i < 3; i++)
		put_u64(out + RP_BODY_BYTES + 8 * i, rp->body_bytes[i]);
}

int wire_decode_reply(const void *buf, size_t len, struct wire_reply *rp)
{
	const uint8_t *p = buf;
	bool magic_ok = false;

	memset(rp, 0, sizeof(*rp));
	if (!p)
		len = 0;
	if (have(len, RP_MAGIC, 4))
		magic_ok = get_u32(p + RP_MAGIC) == WIRE_REPLY_MAGIC;
	if (have(len, RP_VERSION, 2))
		rp->version = get_u16(p + RP_VERSION);
	if (have(len, RP_TYPE, 2))
		rp->type = get_u16(p + RP_TYPE);
	if (have(len, RP_STATUS, 4))
		rp->status = get_u32(p + RP_STATUS);
	if (have(len, RP_FLAGS, 4))
		rp->flags = get_u32(p + RP_FLAGS);
	if (have(len, RP_ID, 8))
		rp->request_id = get_u64(p + RP_ID);
	if (have(len, RP_EPOCH, 4))
		rp->epoch = get_u32(p + RP_EPOCH);
	if (have(len, RP_RANK, 4))
		rp->rank = get_u32(p + RP_RANK);
	if (have(len, RP_WORLD, 4))
		rp->world = get_u32(p + RP_WORLD);
	if (have(len, RP_BATCH, 4))
		rp->batch = get_u32(p + RP_BATCH);
	if (have(len, RP_BATCH_SIZE, 4))
		rp->batch_size = get_u32(p + RP_BATCH_SIZE);
	if (have(len, RP_HEIGHT, 4))
		rp->height = get_u32(p + RP_HEIGHT);
	if (have(len, RP_WIDTH, 4))
		rp->width = get_u32(p + RP_WIDTH);
	if (have(len, RP_CHANNELS, 4))
		rp->channels = get_u32(p + RP_CHANNELS);
	if (have(len, RP_LAYOUT, 1))
		rp->layout = p[RP_LAYOUT];
	if (have(len, RP_DTYPE, 1))
		rp->dtype = p[RP_DTYPE];
	if (have(len, RP_META_SIZE, 2))
		rp->meta_size = get_u16(p + RP_META_SIZE);
	if (have(len, RP_NUM_CLASSES, 4))
		rp->num_classes = get_u32(p + RP_NUM_CLASSES);
	if (have(len, RP_BPE, 4))
		rp->batches_per_epoch = get_u32(p + RP_BPE);
	/* 68..71 reserved, ignored. */
	if (have(len, RP_DIGEST, WIRE_DIGEST_SIZE))
		memcpy(rp->digest, p + RP_DIGEST, WIRE_DIGEST_SIZE);
	for (int i = 0; i < 3; i++)
		if (have(len, RP_BODY_BYTES + 8 * (size_t)i, 8))
			rp->body_bytes[i] = get_u64(p + RP_BODY_BYTES + 8 * i);

	if (len != WIRE_REPLY_SIZE || !magic_ok)
		return -WIRE_E_MALFORMED;
	if (!wire_version_ok(rp->version))
		return -WIRE_E_VERSION;
	return 0;
}

/* ---- metadata record ---------------------------------------------------- */

enum {
	M_INDEX = 0, M_SOURCE = 8, M_PARTNER = 16, M_LAM = 24, M_LABEL = 32,
	M_PARTNER_LABEL = 36, M_PARTNER_POS = 40, M_BOX = 44, M_CROP = 60,
	M_SRC_W = 76, M_SRC_H = 80, M_OP = 84, M_FLIP = 85, M_STATUS = 86,
	M_N_HOLES = 87, M_PAD = 88, M_RESERVED = 89, M_HOLES = 96,
	/* version 2 */
	M_N_OPS = 224, M_N_ERASE = 225, M_ERASE_MODE = 226, M_RESIZE_INTERP = 227,
	M_OPS = 232, M_OP_SIZE = 16, M_ERASE = 360,
};

_Static_assert(M_ERASE + 16 * WIRE_MAX_ERASE == WIRE_META_SIZE_V2, "v2 record size");
_Static_assert(M_OPS + M_OP_SIZE * WIRE_MAX_OPS == M_ERASE, "v2 op entries");

size_t wire_meta_size(unsigned version)
{
	return version == 1 ? WIRE_META_SIZE_V1 : version == 2 ? WIRE_META_SIZE_V2 : 0;
}

bool wire_version_ok(unsigned version)
{
	return version >= WIRE_VERSION_MIN && version <= WIRE_VERSION;
}

void wire_encode_meta(const struct wire_meta *m, uint8_t out[WIRE_META_SIZE])
{
	memset(out, 0, WIRE_META_SIZE);
	put_u64(out + M_INDEX, (uint64_t)m->index);
	put_u64(out + M_SOURCE, (uint64_t)m->source);
	put_u64(out + M_PARTNER, (uint64_t)m->partner);
	put_f64(out + M_LAM, m->lam);
	put_u32(out + M_LABEL, (uint32_t)m->label);
	put_u32(out + M_PARTNER_LABEL, (uint32_t)m->partner_label);
	put_u32(out + M_PARTNER_POS, (uint32_t)m->partner_pos);
	for (int i = 0; i < 4; i++) {
		put_u32(out + M_BOX + 4 * i, (uint32_t)m->box[i]);
		put_f32(out + M_CROP + 4 * i, m->crop[i]);
	}
	put_u32(out + M_SRC_W, (uint32_t)m->src_w);
	put_u32(out + M_SRC_H, (uint32_t)m->src_h);
	out[M_OP] = m->op;
	out[M_FLIP] = m->flip;
	out[M_STATUS] = m->status;
	out[M_N_HOLES] = m->n_holes;
	out[M_PAD] = m->pad;
	for (int h = 0; h < WIRE_MAX_HOLES; h++)
		for (int i = 0; i < 4; i++)
			put_u32(out + M_HOLES + 16 * h + 4 * i, (uint32_t)m->holes[h][i]);
	out[M_N_OPS] = m->n_ops;
	out[M_N_ERASE] = m->n_erase;
	out[M_ERASE_MODE] = m->erase_mode;
	out[M_RESIZE_INTERP] = m->resize_interp;
	for (int k = 0; k < WIRE_MAX_OPS; k++) {
		uint8_t *e = out + M_OPS + M_OP_SIZE * k;

		e[0] = m->ops[k].op;
		e[1] = m->ops[k].interp;
		memcpy(e + 2, m->ops[k].fill, 3);
		put_f64(e + 8, m->ops[k].magnitude);
	}
	for (int h = 0; h < WIRE_MAX_ERASE; h++)
		for (int i = 0; i < 4; i++)
			put_u32(out + M_ERASE + 16 * h + 4 * i, (uint32_t)m->erase[h][i]);
}

/* n_holes is passed through as sent; only holes[0..min(n_holes, 8)) are
 * meaningful and it is the reader's job to clamp. */
void wire_decode_meta(const uint8_t in[WIRE_META_SIZE], struct wire_meta *m)
{
	memset(m, 0, sizeof(*m));
	m->index = get_i64(in + M_INDEX);
	m->source = get_i64(in + M_SOURCE);
	m->partner = get_i64(in + M_PARTNER);
	m->lam = get_f64(in + M_LAM);
	m->label = get_i32(in + M_LABEL);
	m->partner_label = get_i32(in + M_PARTNER_LABEL);
	m->partner_pos = get_i32(in + M_PARTNER_POS);
	for (int i = 0; i < 4; i++) {
		m->box[i] = get_i32(in + M_BOX + 4 * i);
		m->crop[i] = get_f32(in + M_CROP + 4 * i);
	}
	m->src_w = get_i32(in + M_SRC_W);
	m->src_h = get_i32(in + M_SRC_H);
	m->op = in[M_OP];
	m->flip = in[M_FLIP];
	m->status = in[M_STATUS];
	m->n_holes = in[M_N_HOLES];
	m->pad = in[M_PAD];
	for (int h = 0; h < WIRE_MAX_HOLES; h++)
		for (int i = 0; i < 4; i++)
			m->holes[h][i] = get_i32(in + M_HOLES + 16 * h + 4 * i);
	m->n_ops = in[M_N_OPS];
	m->n_erase = in[M_N_ERASE];
	m->erase_mode = in[M_ERASE_MODE];
	m->resize_interp = in[M_RESIZE_INTERP];
	for (int k = 0; k < WIRE_MAX_OPS; k++) {
		const uint8_t *e = in + M_OPS + M_OP_SIZE * k;

		m->ops[k].op = e[0];
		m->ops[k].interp = e[1];
		memcpy(m->ops[k].fill, e + 2, 3);
		m->ops[k].magnitude = get_f64(e + 8);
	}
	for (int h = 0; h < WIRE_MAX_ERASE; h++)
		for (int i = 0; i < 4; i++)
			m->erase[h][i] = get_i32(in + M_ERASE + 16 * h + 4 * i);
}

int wire_decode_meta_n(const uint8_t *in, size_t size, struct wire_meta *m)
{
	uint8_t rec[WIRE_META_SIZE];

	if (size < WIRE_META_SIZE_V1)
		return -EINVAL;
	memset(rec, 0, sizeof(rec));
	memcpy(rec, in, size < sizeof(rec) ? size : sizeof(rec));
	if (size < WIRE_META_SIZE_V2) /* a v1 record: no v2 fields */
		memset(rec + WIRE_META_SIZE_V1, 0, sizeof(rec) - WIRE_META_SIZE_V1);
	wire_decode_meta(rec, m);
	return 0;
}

/* ---- shared-memory bodies ----------------------------------------------- */

enum {
	SO_SESSION = 0, SO_SLOTS = 8, SO_SLOT_SIZE = 16, SO_TOKEN = 24, SO_NAME = 64,
	SD_SESSION = 0, SD_SLOT = 8, SD_GEN = 12, SD_PARTS = 16,
};

void wire_encode_shm_open(const struct wire_shm_open *o, uint8_t out[WIRE_SHM_OPEN_SIZE])
{
	size_t n = strnlen(o->name, WIRE_SHM_NAME_MAX - 1);

	memset(out, 0, WIRE_SHM_OPEN_SIZE);
	put_u64(out + SO_SESSION, o->session);
	put_u32(out + SO_SLOTS, o->slots);
	put_u64(out + SO_SLOT_SIZE, o->slot_size);
	memcpy(out + SO_TOKEN, o->token, WIRE_SHM_TOKEN_SIZE);
	memcpy(out + SO_NAME, o->name, n);
}

int wire_decode_shm_open(const void *buf, size_t len, struct wire_shm_open *o)
{
	const uint8_t *p = buf;

	memset(o, 0, sizeof(*o));
	if (!p || len != WIRE_SHM_OPEN_SIZE || !memchr(p + SO_NAME, 0, WIRE_SHM_NAME_MAX))
		return -EINVAL;
	o->session = get_u64(p + SO_SESSION);
	o->slots = get_u32(p + SO_SLOTS);
	o->slot_size = get_u64(p + SO_SLOT_SIZE);
	memcpy(o->token, p + SO_TOKEN, WIRE_SHM_TOKEN_SIZE);
	memcpy(o->name, p + SO_NAME, WIRE_SHM_NAME_MAX);
	return 0;
}

void wire_encode_shm_desc(const struct wire_shm_desc *d, uint8_t out[WIRE_SHM_DESC_SIZE])
{
	put_u64(out + SD_SESSION, d->session);
	put_u32(out + SD_SLOT, d->slot);
	put_u32(out + SD_GEN, d->generation);
	for (int i = 0; i < 3; i++) {
		put_u64(out + SD_PARTS + 16 * i, d->off[i]);
		put_u64(out + SD_PARTS + 16 * i + 8, d->len[i]);
	}
}

int wire_decode_shm_desc(const void *buf, size_t len, struct wire_shm_desc *d)
{
	const uint8_t *p = buf;

	memset(d, 0, sizeof(*d));
	if (!p || len != WIRE_SHM_DESC_SIZE)
		return -EINVAL;
	d->session = get_u64(p + SD_SESSION);
	d->slot = get_u32(p + SD_SLOT);
	d->generation = get_u32(p + SD_GEN);
	for (int i = 0; i < 3; i++) {
		d->off[i] = get_u64(p + SD_PARTS + 16 * i);
		d->len[i] = get_u64(p + SD_PARTS + 16 * i + 8);
	}
	return 0;
}

/* ---- status names ------------------------------------------------------- */

/* Names from the one table (status.h); enum wire_status must agree. */
#define STATUS_NAME(name, code, err, text) [code] = text,
static const char *const status_names[] = { WIRE_STATUS_TABLE(STATUS_NAME) };
#undef STATUS_NAME

#define STATUS_SAME(name, code, err, text) \
	_Static_assert(WIRE_##name == code, "enum wire_status (wire.h) differs from status.h: " #name);
WIRE_STATUS_TABLE(STATUS_SAME)
#undef STATUS_SAME

const char *wire_status_name(uint32_t status)
{
	if (status < sizeof(status_names) / sizeof(status_names[0]) && status_names[status])
		return status_names[status];
	return "unknown status";
}
