/*
 * batch.c — replies and batches: reading a whole reply off a socket,
 * checking it against its request, turning a batch reply into a
 * cutmixd_batch (frames moved, not copied) and the batch accessors,
 * metadata decoding included.
 */
#include "internal.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

static bool host_is_le(void)
{
	const uint16_t one = 1;

	return *(const uint8_t *)&one == 1;
}
/* ---- replies ------------------------------------------------------------ */

void cmx_reply_free(struct reply **rp)
{
	struct reply *r = rp ? *rp : NULL;

	if (!r)
		return;
	for (int i = 0; i < r->n; i++)
		zmq_msg_close(&r->f[i]);
	free(r);
	*rp = NULL;
}

static size_t frame_size(struct reply *r, int i)
{
	return i < r->n ? zmq_msg_size(&r->f[i]) : 0;
}

/* The daemon's error reply as a failure: "daemon: <its message>". */
static void fail_from_error_reply(struct failure *f, struct reply *r)
{
	char text[ERR_MAX - 16];
	size_t n = 0;

	if (r->n >= 2) {
		const unsigned char *s = zmq_msg_data(&r->f[1]);
		size_t len = zmq_msg_size(&r->f[1]);

		/* Untrusted text on one line: control bytes become '?'. */
		for (size_t i = 0; i < len && n + 1 < sizeof(text); i++)
			text[n++] = (s[i] < 0x20 || s[i] == 0x7f) ? '?' : (char)s[i];
	}
	text[n] = 0;
	cmx_fail_set(f, cmx_status_errno(r->h.status), r->h.status, "daemon: %s",
		 n ? text : wire_status_name(r->h.status));
}

/*
 * Checks shared by every reply to request `rq`: header, error replies,
 * type, echoed fields, frame count and sizes against body_bytes. (The
 * config digest was checked when the reply arrived.) 0 or a failure in *f.
 */
int cmx_check_reply(cutmixd_client_t *c, struct reply *r, const struct wire_request *rq,
		       uint16_t want_type, int bodies, struct failure *f)
{
	const char *what = cmx_type_name(rq->type);

	(void)c;
	if (r->hrc == -WIRE_E_VERSION) {
		cmx_fail_set(f, -EPROTONOSUPPORT, 0,
			 "%s: daemon replied with protocol version %u, this client speaks %u",
			 what, r->h.version, WIRE_VERSION);
		return f->err;
	}
	if (r->hrc < 0) {
		cmx_fail_set(f, -EPROTO, 0, "%s: bad reply header (%zu bytes)", what, frame_size(r, 0));
		return f->err;
	}
	if (r->h.type == WIRE_ERROR) {
		fail_from_error_reply(f, r);
		return f->err;
	}
	if (r->h.type != want_type) {
		cmx_fail_set(f, -EPROTO, 0, "%s: daemon replied with type %u ('%s')", what,
			 r->h.type, cmx_type_name(r->h.type));
		return f->err;
	}
	if (want_type == WIRE_BATCH &&
	    (r->h.epoch != rq->epoch || r->h.batch != rq->batch ||
	     r->h.rank != rq->rank || r->h.world != rq->world)) {
		cmx_fail_set(f, -EPROTO, 0,
			 "batch: asked for epoch %u batch %u rank %u/%u, got epoch %u batch %u rank %u/%u",
			 rq->epoch, rq->batch, rq->rank, rq->world,
			 r->h.epoch, r->h.batch, r->h.rank, r->h.world);
		return f->err;
	}
	if (r->extra || r->n != 1 + bodies) {
		cmx_fail_set(f, -EPROTO, 0, "%s: reply has %d frames, expected %d", what,
			 r->n + r->extra, 1 + bodies);
		return f->err;
	}
	for (int i = 0; i < BODY_MAX; i++) {
		uint64_t want = i < bodies ? frame_size(r, 1 + i) : 0;

		if (r->h.body_bytes[i] != want) {
			cmx_fail_set(f, -EPROTO, 0,
				 "%s: body frame %d has %" PRIu64 " bytes, header says %" PRIu64,
				 what, i, want, r->h.body_bytes[i]);
			return f->err;
		}
	}
	return 0;
}

static bool mul_ok(uint64_t *acc, uint64_t x)
{
	return !__builtin_mul_overflow(*acc, x, acc);
}

/* A float frame, little-endian on the wire, as an aligned host-order array:
 * the frame itself when possible, else a copy in *copy. */
static const float *float_view(const void *data, size_t bytes, float **copy)
{
	const uint8_t *p = data;
	float *out;

	*copy = NULL;
	if (host_is_le() && (uintptr_t)data % _Alignof(float) == 0)
		return data;
	out = malloc(bytes ? bytes : 1);
	if (!out)
		return NULL;
	if (host_is_le()) {
		memcpy(out, data, bytes);
	} else {
		for (size_t i = 0; i < bytes / 4; i++) {
			uint32_t v = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
				     (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;

			memcpy(&out[i], &v, 4);
		}
	}
	*copy = out;
	return out;
}

/* Turn a reply to batch request `rq` into a batch; the reply's frames move
 * into it. 0, or a failure in *f (the reply is left to the caller). */
int cmx_make_batch(cutmixd_client_t *c, struct reply *r, const struct wire_request *rq,
		      cutmixd_batch_t **out, struct failure *f)
{
	const struct wire_reply *h = &r->h;
	uint64_t img = 1, lab = 1, meta = 1;
	cutmixd_batch_t *b;

	*out = NULL;
	if (cmx_check_reply(c, r, rq, WIRE_BATCH, BODY_MAX, f) < 0)
		return f->err;
	if (h->batch_size == 0 || h->height == 0 || h->width == 0 || h->channels == 0 ||
	    h->num_classes == 0 || h->layout > WIRE_NCHW || h->dtype > WIRE_FLOAT32 ||
	    h->meta_size < WIRE_META_SIZE_V1) {
		cmx_fail_set(f, -EPROTO, 0,
			 "batch: bad shape in reply to batch %u: B=%u H=%u W=%u C=%u K=%u layout=%u dtype=%u meta_size=%u",
			 rq->batch, h->batch_size, h->height, h->width, h->channels,
			 h->num_classes, h->layout, h->dtype, h->meta_size);
		return f->err;
	}
	if (!mul_ok(&img, h->batch_size) || !mul_ok(&img, h->height) ||
	    !mul_ok(&img, h->width) || !mul_ok(&img, h->channels) ||
	    !mul_ok(&img, h->dtype == WIRE_FLOAT32 ? 4 : 1) ||
	    !mul_ok(&lab, h->batch_size) || !mul_ok(&lab, h->num_classes) || !mul_ok(&lab, 4) ||
	    !mul_ok(&meta, h->batch_size) || !mul_ok(&meta, h->meta_size) ||
	    h->body_bytes[0] != img || h->body_bytes[1] != lab || h->body_bytes[2] != meta) {
		cmx_fail_set(f, -EPROTO, 0,
			 "batch: frame sizes %" PRIu64 "/%" PRIu64 "/%" PRIu64
			 " do not match shape B=%u H=%u W=%u C=%u K=%u",
			 h->body_bytes[0], h->body_bytes[1], h->body_bytes[2],
			 h->batch_size, h->height, h->width, h->channels, h->num_classes);
		return f->err;
	}

	b = calloc(1, sizeof(*b));
	if (!b)
		goto out_nomem;
	b->h = *h;
	b->peer = -1;
	for (int i = 0; i < 1 + BODY_MAX; i++) {
		zmq_msg_init(&b->f[i]);
		zmq_msg_move(&b->f[i], &r->f[i]);
	}
	b->images = zmq_msg_data(&b->f[1]);
	if (h->dtype == WIRE_FLOAT32) {
		float *copy;

		b->images = float_view(zmq_msg_data(&b->f[1]), img, &copy);
		b->images_copy = copy;
		if (!b->images)
			goto out_free;
	}
	b->labels = float_view(zmq_msg_data(&b->f[2]), lab, &b->labels_copy);
	if (!b->labels)
		goto out_free;
	*out = b;
	return 0;

out_free:
	cutmixd_batch_free(&b);
out_nomem:
	cmx_fail_set(f, -ENOMEM, 0, "batch: out of memory");
	return f->err;
}

/* ---- receiving ---------------------------------------------------------- */

/* Read one whole reply (all its frames; ZeroMQ delivers them together).
 * 0 with *out NULL when nothing is there. */
int cmx_recv_reply(cutmixd_client_t *c, void *sock, struct reply **out)
{
	struct reply *r = calloc(1, sizeof(*r));
	bool first = true;
	int more;

	*out = NULL;
	if (!r)
		return cmx_set_error(c, -ENOMEM, 0, "receive: out of memory");
	do {
		zmq_msg_t m;

		zmq_msg_init(&m);
		if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
			int e = zmq_errno();

			zmq_msg_close(&m);
			if (first && (e == EAGAIN || e == EINTR)) {
				free(r);
				return 0;
			}
			cmx_reply_free(&r);
			return cmx_set_error(c, -e, 0, "receive: %s", zmq_strerror(e));
		}
		more = zmq_msg_more(&m);
		if (first && more && zmq_msg_size(&m) == 0) {
			/* An empty delimiter (REQ-style envelope): skip it. */
			zmq_msg_close(&m);
		} else if (r->n < 1 + BODY_MAX) {
			zmq_msg_init(&r->f[r->n]);
			zmq_msg_move(&r->f[r->n++], &m);
			zmq_msg_close(&m);
		} else {
			r->extra++;
			zmq_msg_close(&m);
		}
		first = false;
	} while (more);
	r->hrc = wire_decode_reply(zmq_msg_data(&r->f[0]), zmq_msg_size(&r->f[0]), &r->h);
	*out = r;
	return 0;
}

/* ---- public: batch ------------------------------------------------------ */

uint32_t cutmixd_batch_epoch(const cutmixd_batch_t *b) { return b ? b->h.epoch : 0; }
uint32_t cutmixd_batch_index(const cutmixd_batch_t *b) { return b ? b->h.batch : 0; }
uint32_t cutmixd_batch_size(const cutmixd_batch_t *b) { return b ? b->h.batch_size : 0; }
uint32_t cutmixd_batch_height(const cutmixd_batch_t *b) { return b ? b->h.height : 0; }
uint32_t cutmixd_batch_width(const cutmixd_batch_t *b) { return b ? b->h.width : 0; }
uint32_t cutmixd_batch_channels(const cutmixd_batch_t *b) { return b ? b->h.channels : 0; }
uint32_t cutmixd_batch_num_classes(const cutmixd_batch_t *b) { return b ? b->h.num_classes : 0; }
uint32_t cutmixd_batch_meta_size(const cutmixd_batch_t *b) { return b ? b->h.meta_size : 0; }

uint32_t cutmixd_batch_batches_per_epoch(const cutmixd_batch_t *b)
{
	return b ? b->h.batches_per_epoch : 0;
}

enum cutmixd_layout cutmixd_batch_layout(const cutmixd_batch_t *b)
{
	return b && b->h.layout == WIRE_NCHW ? CUTMIXD_NCHW : CUTMIXD_NHWC;
}

enum cutmixd_dtype cutmixd_batch_dtype(const cutmixd_batch_t *b)
{
	return b && b->h.dtype == WIRE_FLOAT32 ? CUTMIXD_FLOAT32 : CUTMIXD_UINT8;
}

bool cutmixd_batch_is_last(const cutmixd_batch_t *b)
{
	return b && (b->h.flags & WIRE_RFLAG_LAST);
}

void cutmixd_batch_shape(const cutmixd_batch_t *b, uint32_t shape[4])
{
	if (!b) {
		memset(shape, 0, 4 * sizeof(*shape));
		return;
	}
	shape[0] = b->h.batch_size;
	if (b->h.layout == WIRE_NCHW) {
		shape[1] = b->h.channels;
		shape[2] = b->h.height;
		shape[3] = b->h.width;
	} else {
		shape[1] = b->h.height;
		shape[2] = b->h.width;
		shape[3] = b->h.channels;
	}
}

const void *cutmixd_batch_images(const cutmixd_batch_t *b, size_t *bytes)
{
	if (bytes)
		*bytes = b ? (size_t)b->h.body_bytes[0] : 0;
	return b ? b->images : NULL;
}

const float *cutmixd_batch_labels(const cutmixd_batch_t *b, size_t *bytes)
{
	if (bytes)
		*bytes = b ? (size_t)b->h.body_bytes[1] : 0;
	return b ? b->labels : NULL;
}

const uint8_t *cutmixd_batch_meta_raw(const cutmixd_batch_t *b, size_t *bytes)
{
	if (bytes)
		*bytes = b ? (size_t)b->h.body_bytes[2] : 0;
	return b ? zmq_msg_data((zmq_msg_t *)&b->f[3]) : NULL;
}

int cutmixd_batch_meta(const cutmixd_batch_t *b, uint32_t i, struct cutmixd_meta *out)
{
	const uint8_t *raw;
	struct wire_meta m;

	if (!b || !out)
		return -EINVAL;
	if (i >= b->h.batch_size)
		return -ERANGE;
	raw = zmq_msg_data((zmq_msg_t *)&b->f[3]);
	if (wire_decode_meta_n(raw + (size_t)i * b->h.meta_size, b->h.meta_size, &m))
		return -EPROTO;
	memset(out, 0, sizeof(*out));
	out->index = m.index;
	out->source = m.source;
	out->partner = m.partner;
	out->lam = m.lam;
	out->label = m.label;
	out->partner_label = m.partner_label;
	out->partner_pos = m.partner_pos;
	memcpy(out->box, m.box, sizeof(out->box));
	memcpy(out->crop, m.crop, sizeof(out->crop));
	out->src_w = m.src_w;
	out->src_h = m.src_h;
	out->op = m.op;
	out->flip = m.flip;
	out->status = m.status;
	out->n_holes = m.n_holes > CUTMIXD_MAX_HOLES ? CUTMIXD_MAX_HOLES : m.n_holes;
	out->pad = m.pad;
	memcpy(out->holes, m.holes, sizeof(out->holes));
	out->resize_interp = m.resize_interp;
	out->n_ops = m.n_ops > CUTMIXD_MAX_OPS ? CUTMIXD_MAX_OPS : m.n_ops;
	for (int k = 0; k < CUTMIXD_MAX_OPS; k++) {
		out->ops[k].op = m.ops[k].op;
		out->ops[k].interp = m.ops[k].interp;
		memcpy(out->ops[k].fill, m.ops[k].fill, 3);
		out->ops[k].magnitude = m.ops[k].magnitude;
	}
	out->erase_mode = m.erase_mode;
	out->n_erase = m.n_erase > CUTMIXD_MAX_ERASE ? CUTMIXD_MAX_ERASE : m.n_erase;
	memcpy(out->erase, m.erase, sizeof(out->erase));
	return 0;
}

_Static_assert(CUTMIXD_MAX_OPS == WIRE_MAX_OPS, "cutmixd.h and wire.h agree on ops");
_Static_assert(CUTMIXD_MAX_ERASE == WIRE_MAX_ERASE, "cutmixd.h and wire.h agree on erase boxes");
_Static_assert((int)CUTMIXD_ERASE_PIXEL == (int)WIRE_ERASE_PIXEL, "erase modes agree");
_Static_assert(CUTMIXD_PROTOCOL_VERSION == WIRE_VERSION, "one protocol version");

const char *cutmixd_op_name(unsigned op)
{
	static const char *const names[] = {
		"Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate",
		"Brightness", "Color", "Contrast", "Sharpness", "Posterize", "Solarize",
		"AutoContrast", "Equalize", "Invert", "Hue", "SolarizeAdd", "Grayscale",
		"GaussianBlur",
	};

	return op < sizeof(names) / sizeof(names[0]) ? names[op] : NULL;
}

int cutmixd_batch_peer(const cutmixd_batch_t *b)
{
	return b ? b->peer : -1;
}

const uint8_t *cutmixd_batch_digest(const cutmixd_batch_t *b)
{
	return b ? b->h.digest : NULL;
}

const void *cutmixd_batch_frame(const cutmixd_batch_t *b, unsigned i, size_t *bytes)
{
	if (bytes)
		*bytes = 0;
	if (!b || i > BODY_MAX)
		return NULL;
	if (bytes)
		*bytes = zmq_msg_size((zmq_msg_t *)&b->f[i]);
	return zmq_msg_data((zmq_msg_t *)&b->f[i]);
}

void cutmixd_batch_free(cutmixd_batch_t **bp)
{
	cutmixd_batch_t *b = bp ? *bp : NULL;

	if (!b)
		return;
	for (int i = 0; i < 1 + BODY_MAX; i++)
		zmq_msg_close(&b->f[i]);
	free(b->images_copy);
	free(b->labels_copy);
	free(b);
	*bp = NULL;
}
