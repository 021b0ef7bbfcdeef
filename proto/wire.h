/*
 * wire.h — the cutmixd wire format, shared by the daemon and the C client.
 *
 * This is the only code that knows how bytes on the socket are laid out;
 * proto/PROTOCOL.md is its specification. Every integer is little-endian
 * and is encoded/decoded byte by byte, never by casting a struct onto a
 * buffer, so the format does not depend on the host's ABI.
 *
 * Byte layouts (offsets in bytes; "r" = reserved, sent as zero):
 *
 *   request (80):  0 magic u32 | 4 version u16 | 6 type u16 | 8 flags u32 |
 *                  12 batch u32 | 16 request_id u64 | 24 epoch u32 |
 *                  28 rank u32 | 32 world u32 | 36 r u32 |
 *                  40 pipeline char[32] | 72 session u64
 *                  (session: shared-memory session id, else 0)
 *   reply (128):   0 magic u32 | 4 version u16 | 6 type u16 | 8 status u32 |
 *                  12 flags u32 | 16 request_id u64 | 24 epoch u32 |
 *                  28 rank u32 | 32 world u32 | 36 batch u32 |
 *                  40 batch_size u32 | 44 height u32 | 48 width u32 |
 *                  52 channels u32 | 56 layout u8 | 57 dtype u8 |
 *                  58 meta_size u16 | 60 num_classes u32 |
 *                  64 batches_per_epoch u32 | 68 r u32 | 72 digest u8[32] |
 *                  104 body_bytes u64[3]
 *   meta (224):    0 index i64 | 8 source i64 | 16 partner i64 | 24 lam f64 |
 *                  32 label i32 | 36 partner_label i32 | 40 partner_pos i32 |
 *                  44 box i32[4] | 60 crop f32[4] | 76 src_w i32 |
 *                  80 src_h i32 | 84 op u8 | 85 flip u8 | 86 status u8 |
 *                  87 n_holes u8 | 88 pad u8 | 89 r u8[7] |
 *                  96 holes i32[8][4]
 *   meta v2 (488): the 224 bytes of v1, then
 *                  224 n_ops u8 | 225 n_erase u8 | 226 erase_mode u8 |
 *                  227 resize_interp u8 | 228 r u8[4] |
 *                  232 ops[8] of 16: (0 op u8 | 1 interp u8 | 2 fill u8[3] |
 *                                     5 r u8[3] | 8 magnitude f64) |
 *                  360 erase i32[8][4]
 *
 *   shm open body (104):   0 session u64 | 8 slots u32 | 12 r u32 |
 *                  16 slot_size u64 | 24 token u8[32] | 56 r u8[8] |
 *                  64 name char[40] (abstract AF_UNIX name, '@' first)
 *   shm batch descriptor (64): 0 session u64 | 8 slot u32 |
 *                  12 generation u32 | 16 images off u64, len u64 |
 *                  32 labels off u64, len u64 | 48 meta off u64, len u64
 *                  (offsets from the start of the slot)
 *
 * A request is one frame of WIRE_REQUEST_SIZE bytes. A reply is a header
 * frame of WIRE_REPLY_SIZE bytes followed by body frames that depend on
 * the type: a batch has images, labels and metadata; info and stats have
 * one JSON text; an error has one UTF-8 message.
 */
#ifndef CUTMIXD_WIRE_H
#define CUTMIXD_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_REQUEST_MAGIC 0x51584d43u /* "CMXQ" as bytes on the wire */
#define WIRE_REPLY_MAGIC   0x52584d43u /* "CMXR" */
#define WIRE_VERSION       2 /* spoken by default */
#define WIRE_VERSION_MIN   1 /* oldest version still answered */

#define WIRE_REQUEST_SIZE  80
#define WIRE_REPLY_SIZE    128
#define WIRE_META_SIZE_V1  224
#define WIRE_META_SIZE_V2  488
#define WIRE_META_SIZE     WIRE_META_SIZE_V2 /* of WIRE_VERSION */
#define WIRE_PIPELINE_MAX  32 /* bytes incl. NUL padding: names <= 31 chars */
#define WIRE_DIGEST_SIZE   32 /* SHA-256 */
#define WIRE_MAX_HOLES     8  /* Cutout holes recorded per sample */
#define WIRE_MAX_OPS       8  /* per-sample ops recorded (v2) */
#define WIRE_MAX_ERASE     8  /* RandomErasing boxes recorded (v2) */

enum wire_type {
	WIRE_INFO  = 1, /* JSON description of the daemon / one pipeline */
	WIRE_BATCH = 2, /* one batch: images, labels, metadata */
	WIRE_STATS = 3, /* JSON counters */
	WIRE_SHM_OPEN = 4, /* open a shared-memory session (reply: shm open body) */
	WIRE_SHM_RELEASE = 5, /* request only, no reply: a slot is free again */
	WIRE_ERROR = 127, /* reply only: header + UTF-8 message */
};

/* Request flags. */
#define WIRE_FLAG_EXPECT_EVAL 0x1u /* refuse unless the pipeline is eval */
#define WIRE_FLAG_SHM         0x2u /* batch: reply through session `session` */

/* Error codes carried in a WIRE_ERROR reply's `status`. */
enum wire_status {
	WIRE_OK               = 0,
	WIRE_E_MALFORMED      = 1, /* wrong size, magic or field values */
	WIRE_E_VERSION        = 2, /* protocol version not spoken here */
	WIRE_E_UNKNOWN_TYPE   = 3,
	WIRE_E_NO_PIPELINE    = 4, /* pipeline name not in the config */
	WIRE_E_BAD_SHARD      = 5, /* world == 0 or rank >= world */
	WIRE_E_BATCH_RANGE    = 6, /* batch index >= batches per epoch */
	WIRE_E_BUSY           = 7, /* per-client outstanding cap reached */
	WIRE_E_NOT_EVAL       = 8, /* EXPECT_EVAL on an augmenting pipeline */
	WIRE_E_DECODE         = 9, /* a file failed and on_decode_error=fail */
	WIRE_E_INTERNAL       = 10, /* out of memory and the like */
	WIRE_E_SHUTTING_DOWN  = 11, /* daemon is stopping */
	WIRE_E_EPOCH_RANGE    = 12, /* epoch beyond what the sampler allows */
};

enum wire_layout { WIRE_NHWC = 0, WIRE_NCHW = 1 };
enum wire_dtype  { WIRE_UINT8 = 0, WIRE_FLOAT32 = 1 };

enum wire_op     { WIRE_OP_NONE = 0, WIRE_OP_CUTMIX = 1, WIRE_OP_MIXUP = 2 };
enum wire_sample_status { WIRE_SAMPLE_OK = 0, WIRE_SAMPLE_REPLACED = 1 };
/* RandomErasing fill (v2 erase_mode): the pipeline's mean, one random
 * colour per box, random bytes per pixel. */
enum wire_erase_mode { WIRE_ERASE_CONST = 0, WIRE_ERASE_RAND = 1, WIRE_ERASE_PIXEL = 2 };

/* Reply flags. */
#define WIRE_RFLAG_LAST 0x1u /* last batch of the epoch for this shard */
#define WIRE_RFLAG_SHM  0x2u /* the body is one shm batch descriptor */

#define WIRE_SHM_OPEN_SIZE  104
#define WIRE_SHM_DESC_SIZE  64
#define WIRE_SHM_TOKEN_SIZE 32
#define WIRE_SHM_NAME_MAX   40 /* bytes incl. NUL padding */

/* The body of an SHM_OPEN reply. */
struct wire_shm_open {
	uint64_t session;
	uint32_t slots;
	uint64_t slot_size;
	uint8_t token[WIRE_SHM_TOKEN_SIZE];
	char name[WIRE_SHM_NAME_MAX]; /* NUL-terminated */
};

/* The one body frame of a BATCH reply with WIRE_RFLAG_SHM. */
struct wire_shm_desc {
	uint64_t session;
	uint32_t slot, generation;
	uint64_t off[3], len[3]; /* images, labels, meta within the slot */
};

struct wire_request {
	uint16_t version;
	uint16_t type;
	uint32_t flags;
	uint64_t request_id; /* chosen by the client, echoed in the reply */
	uint32_t epoch;
	uint32_t rank;
	uint32_t world;
	uint32_t batch;
	char pipeline[WIRE_PIPELINE_MAX]; /* NUL-terminated, NUL-padded */
	uint64_t session;    /* WIRE_FLAG_SHM, SHM_RELEASE: the session id */
};

struct wire_reply {
	uint16_t version;
	uint16_t type;
	uint32_t status; /* enum wire_status; WIRE_OK unless type == ERROR */
	uint64_t request_id;
	uint32_t epoch, rank, world, batch;
	uint32_t batch_size;   /* samples in this batch (last may be short) */
	uint32_t height, width, channels;
	uint8_t layout;        /* enum wire_layout */
	uint8_t dtype;         /* enum wire_dtype */
	uint16_t meta_size;    /* bytes per metadata record */
	uint32_t num_classes;
	uint32_t flags;        /* WIRE_RFLAG_* */
	uint32_t batches_per_epoch;
	uint8_t digest[WIRE_DIGEST_SIZE]; /* config digest */
	uint64_t body_bytes[3]; /* sizes of the following frames (0 if absent) */
};

/* One record per sample in the metadata frame. */
struct wire_meta {
	int64_t index;       /* dataset index the sampler chose */
	int64_t source;      /* dataset index whose pixels are in the slot */
	int64_t partner;     /* batch partner's dataset index, -1 if none */
	double lam;          /* weight of the own label before smoothing */
	int32_t label;       /* class of `source` */
	int32_t partner_label; /* -1 if none */
	int32_t partner_pos; /* partner's position in the batch, -1 if none */
	int32_t box[4];      /* CutMix box x0,y0,x1,y1 (all 0 if none) */
	float crop[4];       /* source region x0,y0,x1,y1 in source pixels */
	int32_t src_w, src_h;/* source image size */
	uint8_t op;          /* enum wire_op */
	uint8_t flip;        /* 1 = mirrored horizontally */
	uint8_t status;      /* enum wire_sample_status */
	uint8_t n_holes;     /* Cutout holes applied (<= WIRE_MAX_HOLES) */
	uint8_t pad;         /* 1 = duplicate added to equalise shard sizes */
	int32_t holes[WIRE_MAX_HOLES][4]; /* x0,y0,x1,y1 each */
	/* version 2: the per-sample ops after the flip, in order (op codes:
	 * daemon/imgops.h, PROTOCOL.md section 7), and RandomErasing */
	uint8_t n_ops;       /* <= WIRE_MAX_OPS */
	uint8_t n_erase;     /* <= WIRE_MAX_ERASE */
	uint8_t erase_mode;  /* enum wire_erase_mode */
	uint8_t resize_interp; /* 0 bilinear, 1 bicubic: the crop's resample */
	struct wire_op_rec {
		uint8_t op, interp;
		uint8_t fill[3];
		double magnitude;
	} ops[WIRE_MAX_OPS];
	int32_t erase[WIRE_MAX_ERASE][4]; /* x0,y0,x1,y1 each */
};

/* Bytes of one metadata record in protocol `version` (0 if unknown). */
size_t wire_meta_size(unsigned version);
/* True when the daemon answers requests of this version. */
bool wire_version_ok(unsigned version);

int wire_encode_request(const struct wire_request *rq, uint8_t out[WIRE_REQUEST_SIZE]);
/* 0, or -WIRE_E_MALFORMED / -WIRE_E_VERSION (the request was still decoded
 * as far as possible, so request_id can be echoed). */
int wire_decode_request(const void *buf, size_t len, struct wire_request *rq);

void wire_encode_reply(const struct wire_reply *rp, uint8_t out[WIRE_REPLY_SIZE]);
int wire_decode_reply(const void *buf, size_t len, struct wire_reply *rp);

/* The record of the current version (WIRE_META_SIZE bytes). A version 1
 * record is its first WIRE_META_SIZE_V1 bytes. */
void wire_encode_meta(const struct wire_meta *m, uint8_t out[WIRE_META_SIZE]);
void wire_decode_meta(const uint8_t in[WIRE_META_SIZE], struct wire_meta *m);
/* Decode a record of `size` bytes (>= WIRE_META_SIZE_V1): the version 2
 * fields only when size >= WIRE_META_SIZE_V2, else zero. 0, or -EINVAL
 * when size is too small. */
int wire_decode_meta_n(const uint8_t *in, size_t size, struct wire_meta *m);

void wire_encode_shm_open(const struct wire_shm_open *o, uint8_t out[WIRE_SHM_OPEN_SIZE]);
/* 0, or -EINVAL (wrong size, name without NUL). */
int wire_decode_shm_open(const void *buf, size_t len, struct wire_shm_open *o);
void wire_encode_shm_desc(const struct wire_shm_desc *d, uint8_t out[WIRE_SHM_DESC_SIZE]);
int wire_decode_shm_desc(const void *buf, size_t len, struct wire_shm_desc *d);

/* Static English text for a status code ("unknown pipeline", ...). */
const char *wire_status_name(uint32_t status);

#endif
