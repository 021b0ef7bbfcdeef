/*
 * cutmixd.h — C client for the cutmixd batch daemon.
 *
 * A client asks a daemon (or several daemons with the same configuration)
 * for batches of one pipeline and one shard (rank of world). A batch is a
 * pure function of (config, pipeline, epoch, rank, world, batch index), so
 * any daemon can serve any batch and asking twice gives the same bytes.
 *
 *   cutmixd_client_t *c = cutmixd_client_new("tcp://cpu1:5555,tcp://cpu2:5555",
 *                                            "train", rank, world, 0);
 *   if (!c) ... errno says why ...
 *   cutmixd_client_epoch_begin(c, epoch, 0);
 *   cutmixd_batch_t *b;
 *   int rc;
 *   while ((rc = cutmixd_client_epoch_next(c, &b)) == 1) {
 *           const uint8_t *px = cutmixd_batch_images(b, NULL);
 *           const float *y = cutmixd_batch_labels(b, NULL);
 *           ...
 *           cutmixd_batch_free(&b);
 *   }
 *   if (rc < 0) fprintf(stderr, "%s\n", cutmixd_client_error(c));
 *   cutmixd_client_destroy(&c);
 *
 * Conventions. Every exported symbol starts with cutmixd_ / CUTMIXD_.
 * Functions that perform an action return 0 (or a count, where said) and
 * a negative errno on failure; cutmixd_client_error() then has a one-line
 * message saying what failed and why. Constructors return NULL and set
 * errno. Destructors take a pointer to the handle, accept NULL and a NULL
 * handle, and clear the handle.
 *
 * Errors the daemon reports come back as these negative errnos, with the
 * daemon's code in cutmixd_client_error_status() and its message in
 * cutmixd_client_error() ("daemon: unknown pipeline: 'x'"):
 *
 *   CUTMIXD_E_MALFORMED     -EPROTO          CUTMIXD_E_BUSY          -EBUSY
 *   CUTMIXD_E_VERSION       -EPROTONOSUPPORT CUTMIXD_E_NOT_EVAL      -EPERM
 *   CUTMIXD_E_UNKNOWN_TYPE  -EOPNOTSUPP      CUTMIXD_E_DECODE        -EIO
 *   CUTMIXD_E_NO_PIPELINE   -ENOENT          CUTMIXD_E_INTERNAL      -EREMOTEIO
 *   CUTMIXD_E_BAD_SHARD     -EINVAL          CUTMIXD_E_SHUTTING_DOWN -ESHUTDOWN
 *   CUTMIXD_E_BATCH_RANGE   -ERANGE          CUTMIXD_E_EPOCH_RANGE   -EDOM
 *   any other code          -EREMOTEIO
 *
 * Errors found on this side have cutmixd_client_error_status() == 0:
 * -ETIMEDOUT (no reply within the timeout), -EPROTO (a reply that breaks
 * the protocol), -ESTALE (a daemon whose config digest differs from the
 * one this client saw first; the message names it), -EINVAL (bad argument
 * or call order), -ENOMEM, or the errno of a failed ZeroMQ call.
 *
 * Several daemons. The client keeps one DEALER per endpoint and spreads
 * the window of batch requests over the daemons that are connected, the
 * least loaded first; batches still come out in order. A request without
 * reply for the resend timeout (default 3 s, see
 * cutmixd_client_set_resend_timeout) is sent again, to another daemon when
 * there is one; the first reply wins and later duplicates are dropped.
 * Requests on a connection that drops (daemon killed or restarted) are
 * re-sent at once. A daemon that stays silent is marked down and probed
 * with an INFO after a back-off (100 ms doubling to 2 s); it is used again
 * as soon as it answers. BUSY replies are retried after a back-off, a
 * SHUTTING_DOWN daemon is treated as down. No call waits longer than the
 * timeout for what it needs; the timeout message names every endpoint and
 * its state. The first reply pins the config digest; a daemon that
 * answers with another one is refused from then on (-ESTALE).
 *
 * Discovery. An endpoint dns+tcp://NAME:PORT stands for every A and AAAA
 * record of NAME, each a daemon at tcp://ADDRESS:PORT (a Kubernetes
 * headless Service, a Slurm host list in DNS). NAME is resolved with
 * getaddrinfo() when the client first connects and again every discovery
 * interval (default 10 s, cutmixd_client_set_discovery_interval), inside
 * the client's calls (no thread; a resolution waits at most what
 * resolv.conf's timeout and attempts allow). Each address is a peer of
 * its own (cutmixd_client_peer_stats: "tcp://ADDRESS:PORT"): a new one is
 * connected and used at once; one missing from the answer becomes
 * CUTMIXD_PEER_GONE: disconnected, sent nothing new, and its outstanding
 * requests are re-sent to the others as for a lost connection (a late
 * reply still counts; the first reply wins), so no batch is lost or
 * delivered twice; it is used again if it comes back. A failed
 * resolution (no DNS server, SERVFAIL, NXDOMAIN, no address) keeps the
 * last answer; if a name never resolved and no other daemon answers, the
 * call fails with -ETIMEDOUT after the timeout, its message saying
 * "cannot resolve 'NAME': why". Peers are only ever appended: peer
 * indexes (cutmixd_batch_peer) stay valid. With window 0 the window is
 * CUTMIXD_DEFAULT_WINDOW per daemon known at each epoch_begin.
 *
 * CURVE. cutmixd_client_set_curve() (before the first request) encrypts
 * and authenticates every connection; cutmixd_load_keypair() reads the
 * key files that `cutmixd keygen NAME` writes.
 *
 * Threads. A client belongs to one thread at a time: no two calls on the
 * same client may run concurrently. Batches are independent of their client
 * and of each other: a batch may be handed to, read by and freed on any
 * thread, and may outlive the client that received it.
 *
 * Zero copy. A batch keeps the received ZeroMQ frames alive and points
 * into them. The only copy made is when a float32 frame is not 4-byte
 * aligned in the receive buffer (ZeroMQ may deliver frames at any address)
 * or the host is big-endian: that frame is then copied once into an
 * aligned, host-order buffer.
 */
#ifndef CUTMIXD_H
#define CUTMIXD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CUTMIXD_PROTOCOL_VERSION 2   /* wire protocol spoken (reads 1 and 2) */
#define CUTMIXD_DIGEST_SIZE      32  /* SHA-256 of the daemon's config */
#define CUTMIXD_PIPELINE_MAX     31  /* longest pipeline name, bytes */
#define CUTMIXD_MAX_HOLES        8   /* Cutout holes recorded per sample */
#define CUTMIXD_MAX_OPS          8   /* per-sample ops recorded (protocol 2) */
#define CUTMIXD_MAX_ERASE        8   /* RandomErasing boxes recorded (protocol 2) */
#define CUTMIXD_DEFAULT_TIMEOUT_MS 60000
#define CUTMIXD_DEFAULT_RESEND_TIMEOUT_MS 3000
#define CUTMIXD_DEFAULT_WINDOW   4   /* per endpoint, when window == 0 */
#define CUTMIXD_KEY_Z85_SIZE     41  /* a Z85 CURVE key: 40 characters + NUL */

/* Status codes a daemon sends in an error reply (same numbers on the wire). */
enum cutmixd_status {
	CUTMIXD_OK              = 0,
	CUTMIXD_E_MALFORMED     = 1,
	CUTMIXD_E_VERSION       = 2,
	CUTMIXD_E_UNKNOWN_TYPE  = 3,
	CUTMIXD_E_NO_PIPELINE   = 4,
	CUTMIXD_E_BAD_SHARD     = 5,
	CUTMIXD_E_BATCH_RANGE   = 6,
	CUTMIXD_E_BUSY          = 7,
	CUTMIXD_E_NOT_EVAL      = 8,
	CUTMIXD_E_DECODE        = 9,
	CUTMIXD_E_INTERNAL      = 10,
	CUTMIXD_E_SHUTTING_DOWN = 11,
	CUTMIXD_E_EPOCH_RANGE   = 12,
};

enum cutmixd_layout { CUTMIXD_NHWC = 0, CUTMIXD_NCHW = 1 };
enum cutmixd_dtype  { CUTMIXD_UINT8 = 0, CUTMIXD_FLOAT32 = 1 };
enum cutmixd_op     { CUTMIXD_OP_NONE = 0, CUTMIXD_OP_CUTMIX = 1, CUTMIXD_OP_MIXUP = 2 };
enum cutmixd_sample_status { CUTMIXD_SAMPLE_OK = 0, CUTMIXD_SAMPLE_REPLACED = 1 };

/* Per-sample op codes (protocol 2; PROTOCOL.md section 7): torchvision
 * _apply_op names, cutmixd_op_name() spells them. */
enum cutmixd_imgop {
	CUTMIXD_IMGOP_IDENTITY = 0, CUTMIXD_IMGOP_SHEAR_X = 1, CUTMIXD_IMGOP_SHEAR_Y = 2,
	CUTMIXD_IMGOP_TRANSLATE_X = 3, CUTMIXD_IMGOP_TRANSLATE_Y = 4,
	CUTMIXD_IMGOP_ROTATE = 5, CUTMIXD_IMGOP_BRIGHTNESS = 6, CUTMIXD_IMGOP_COLOR = 7,
	CUTMIXD_IMGOP_CONTRAST = 8, CUTMIXD_IMGOP_SHARPNESS = 9,
	CUTMIXD_IMGOP_POSTERIZE = 10, CUTMIXD_IMGOP_SOLARIZE = 11,
	CUTMIXD_IMGOP_AUTOCONTRAST = 12, CUTMIXD_IMGOP_EQUALIZE = 13,
	CUTMIXD_IMGOP_INVERT = 14, CUTMIXD_IMGOP_HUE = 15,
	CUTMIXD_IMGOP_SOLARIZE_ADD = 16, CUTMIXD_IMGOP_GRAYSCALE = 17,
	CUTMIXD_IMGOP_GAUSSIAN_BLUR = 18,
};
enum cutmixd_erase_mode { CUTMIXD_ERASE_CONST = 0, CUTMIXD_ERASE_RAND = 1, CUTMIXD_ERASE_PIXEL = 2 };

/* torchvision's name of an op code ("Rotate"), or NULL if unknown. */
const char *cutmixd_op_name(unsigned op);

/* One applied per-sample op, in the order applied. */
struct cutmixd_op_rec {
	uint8_t op;            /* enum cutmixd_imgop */
	uint8_t interp;        /* geometric ops: 0 nearest, 1 bilinear */
	uint8_t fill[3];       /* geometric ops: value of pixels from outside */
	double magnitude;      /* the argument of torchvision's _apply_op */
};

/* Flags for cutmixd_client_set_flags(). */
#define CUTMIXD_EXPECT_EVAL 0x1u /* daemon refuses (-EPERM) unless eval pipeline */

/* One sample's metadata record, decoded (see PROTOCOL.md for meanings). */
struct cutmixd_meta {
	int64_t index;         /* dataset index the sampler chose */
	int64_t source;        /* dataset index whose pixels fill the slot */
	int64_t partner;       /* batch partner's dataset index, -1 if none */
	double lam;            /* weight of the own label before smoothing */
	int32_t label;         /* class of `source` */
	int32_t partner_label; /* -1 if none */
	int32_t partner_pos;   /* partner's position in this batch, -1 if none */
	int32_t box[4];        /* CutMix box x0,y0,x1,y1 in output pixels */
	float crop[4];         /* source region x0,y0,x1,y1 in source pixels */
	int32_t src_w, src_h;  /* source image size */
	uint8_t op;            /* enum cutmixd_op */
	uint8_t flip;          /* 1 = mirrored horizontally */
	uint8_t status;        /* enum cutmixd_sample_status */
	uint8_t n_holes;       /* Cutout holes in holes[], <= CUTMIXD_MAX_HOLES */
	uint8_t pad;           /* 1 = wrap-around duplicate equalising shards */
	int32_t holes[CUTMIXD_MAX_HOLES][4]; /* x0,y0,x1,y1 in output pixels */
	/* protocol 2 (all 0 in a version 1 reply): */
	uint8_t resize_interp; /* resample of the crop: 0 bilinear, 1 bicubic */
	uint8_t n_ops;         /* ops in ops[], <= CUTMIXD_MAX_OPS */
	struct cutmixd_op_rec ops[CUTMIXD_MAX_OPS]; /* after the flip, in order */
	uint8_t erase_mode;    /* enum cutmixd_erase_mode */
	uint8_t n_erase;       /* RandomErasing boxes, <= CUTMIXD_MAX_ERASE */
	int32_t erase[CUTMIXD_MAX_ERASE][4]; /* x0,y0,x1,y1 in output pixels */
};

typedef struct cutmixd_client cutmixd_client_t;
typedef struct cutmixd_batch cutmixd_batch_t;

/* What a client knows of one of its daemons (cutmixd_client_peer_stats). */
enum cutmixd_peer_state {
	CUTMIXD_PEER_UP            = 0, /* connected, in use */
	CUTMIXD_PEER_NOT_CONNECTED = 1, /* no connection (yet, or any more) */
	CUTMIXD_PEER_DOWN          = 2, /* silent: probed, unused until it answers */
	CUTMIXD_PEER_REFUSED       = 3, /* another config digest: never used again */
	CUTMIXD_PEER_GONE          = 4, /* left its dns+tcp:// name's answer: unused */
};

struct cutmixd_peer_stats {
	const char *endpoint;           /* valid while the client lives */
	enum cutmixd_peer_state state;
	uint32_t outstanding;           /* requests waiting for a reply */
	uint64_t requests;              /* sent to it (probes included) */
	uint64_t replies;               /* received from it */
	uint64_t batches;               /* batches it served this client */
	uint64_t resent;                /* its requests re-sent after no reply */
	uint64_t downs;                 /* times marked down */
	uint64_t disconnects;           /* connections lost with requests on them */
	double latency_ms;              /* usual request -> reply time, < 0 unknown */
};

/* ---- client ------------------------------------------------------------- */

/*
 * A client for one pipeline and shard. `endpoint` is a ZeroMQ endpoint
 * ("tcp://host:5555", "ipc:///run/cutmixd.sock"), a discovery name
 * ("dns+tcp://NAME:PORT", below) or a comma-separated list of them;
 * requests are spread over all daemons of the list, which must run the
 * same configuration (checked through the config digest). `pipeline`
 * may be NULL or "" for a client that only asks global INFO and STATS.
 * `window` is how many batch requests epoch iteration keeps in flight over
 * all daemons (0 = CUTMIXD_DEFAULT_WINDOW per endpoint); at most the
 * daemons' max_window go to one daemon. The client connects on its first
 * request, not here, so settings that concern the connection
 * (cutmixd_client_set_curve) have their place between new and the first
 * request. NULL with errno EINVAL (bad argument: also an endpoint without
 * "transport://", or one listed twice), ENAMETOOLONG (pipeline longer than
 * CUTMIXD_PIPELINE_MAX) or ENOMEM / a ZeroMQ errno.
 */
cutmixd_client_t *cutmixd_client_new(const char *endpoint, const char *pipeline,
				     uint32_t rank, uint32_t world, uint32_t window);
void cutmixd_client_destroy(cutmixd_client_t **c);

/* How long to wait for a reply, in milliseconds (> 0; default 60000).
 * A reply that does not come in time fails the call with -ETIMEDOUT. */
int cutmixd_client_set_timeout(cutmixd_client_t *c, int ms);
/* A request without reply for this long, in milliseconds (> 0; default
 * 3000), is sent again, to another daemon when there is one; a daemon that
 * sent nothing at all for that long is marked down. For a daemon whose
 * replies usually take longer, 3 x its usual reply time is used instead
 * (at most 4 x this), so a loaded daemon is not flooded with duplicates. */
int cutmixd_client_set_resend_timeout(cutmixd_client_t *c, int ms);
/* Request flags sent with every request (CUTMIXD_EXPECT_EVAL). */
int cutmixd_client_set_flags(cutmixd_client_t *c, uint32_t flags);
/* How often dns+tcp:// names are resolved again, in milliseconds (> 0;
 * default 10000). Takes effect at the next resolution at the latest. */
int cutmixd_client_set_discovery_interval(cutmixd_client_t *c, int ms);

/*
 * ZeroMQ CURVE on every connection: `server_public` is the daemons' public
 * key, `client_public`/`client_secret` this client's keypair (the daemons
 * must list the public key in their authorized keys), all Z85 strings of
 * 40 characters. Both client keys NULL: a new keypair is made (enough for
 * daemons that do not check client keys). Only before the first request.
 * 0, -EINVAL (bad key, a secret key that does not belong to the public
 * key, or called too late) or -ENOTSUP (libzmq without CURVE). A wrong
 * server key shows as -ETIMEDOUT: the handshake never completes.
 */
int cutmixd_client_set_curve(cutmixd_client_t *c, const char *server_public,
			     const char *client_public, const char *client_secret);

/*
 * Read a key file of `cutmixd keygen NAME`: lines "public-key = <Z85>" and
 * "secret-key = <Z85>" (value optionally in double quotes), a bare key
 * line (a public key), '#' comment lines and blank lines; ZeroMQ zcert
 * files also work. The same grammar as the daemon's and `cutmixd stats
 * --key` (one parser, proto/keyfile.c; any other line is an error). NAME.key holds both
 * (pass `secret_key` to get it, the pair is checked), NAME.pub only the
 * public key (pass secret_key NULL). Buffers of CUTMIXD_KEY_Z85_SIZE. 0, or
 * -errno of opening the file, -EINVAL (syntax, bad key, mismatched pair),
 * -ENODATA (a key is missing); `err` (may be NULL) gets "file:line: why".
 */
int cutmixd_load_keypair(const char *path, char public_key[CUTMIXD_KEY_Z85_SIZE],
			 char secret_key[CUTMIXD_KEY_Z85_SIZE], char *err, size_t err_size);

/* The daemon's INFO JSON for this client's pipeline and shard (global keys
 * only if the pipeline is ""), NUL-terminated, in *json; free() it. Also
 * caches batches_per_epoch and max_window. 0 or negative errno. */
int cutmixd_client_info(cutmixd_client_t *c, char **json);
/* The daemon's STATS JSON, as for cutmixd_client_info(). */
int cutmixd_client_stats(cutmixd_client_t *c, char **json);
/* Batches in one epoch of this shard (asks INFO the first time), or a
 * negative errno. */
int64_t cutmixd_client_batches_per_epoch(cutmixd_client_t *c);
/* The config digest this client pinned from the first reply: 0, or
 * -ENODATA before any reply. */
int cutmixd_client_digest(const cutmixd_client_t *c, uint8_t out[CUTMIXD_DIGEST_SIZE]);

/* Batch k of `epoch`, waiting for it. 0 and *out set, or negative errno
 * and *out NULL (-ERANGE: k >= batches per epoch). Works while an epoch
 * iteration runs; the iteration's replies are kept meanwhile (if the window
 * already uses all of the daemon's max_window, the daemon answers BUSY and
 * the request is re-sent once a slot frees, within the timeout). */
int cutmixd_client_get_batch(cutmixd_client_t *c, uint32_t epoch, uint32_t k,
			     cutmixd_batch_t **out);

/*
 * Iterate over batches start, start+1, ... of `epoch` in order, keeping
 * `window` requests in flight and reordering replies. Begin sends the first
 * window of requests (and asks INFO first if batches_per_epoch is not known
 * yet); beginning again abandons the previous iteration. 0 or negative
 * errno (-ERANGE: start > batches per epoch).
 *
 * next: 1 and *out = the next batch (free it with cutmixd_batch_free), 0
 * when the epoch is finished, or a negative errno with *out NULL. An error
 * ends the iteration (later calls return the same error); to resume, begin
 * again at the index of the batch that failed, which
 * cutmixd_client_epoch_position() gives.
 */
int cutmixd_client_epoch_begin(cutmixd_client_t *c, uint32_t epoch, uint32_t start);
int cutmixd_client_epoch_next(cutmixd_client_t *c, cutmixd_batch_t **out);
/* Index of the batch the next epoch_next() delivers, or -EINVAL if no
 * iteration was begun. */
int64_t cutmixd_client_epoch_position(const cutmixd_client_t *c);

/* The daemons of the client: those listed, in the order given, then those
 * discovered through dns+tcp:// names, in the order found: how many, and
 * what the client knows of daemon i (0, -ERANGE past the end). */
int cutmixd_client_peer_count(const cutmixd_client_t *c);
int cutmixd_client_peer_stats(const cutmixd_client_t *c, unsigned i,
			      struct cutmixd_peer_stats *out);

/* The last error as one line ("" if none yet); valid until the next call
 * on this client. */
const char *cutmixd_client_error(const cutmixd_client_t *c);
/* The daemon's status code behind the last error, 0 if it arose here. */
uint32_t cutmixd_client_error_status(const cutmixd_client_t *c);
/* English name of a daemon status code ("unknown pipeline"). */
const char *cutmixd_status_name(uint32_t status);
/* This library's version ("0.2.0"; the daemon's --version and the
 * pkg-config file have the same, from the one VERSION file). */
const char *cutmixd_version(void);

/* ---- batch -------------------------------------------------------------- */

uint32_t cutmixd_batch_epoch(const cutmixd_batch_t *b);
uint32_t cutmixd_batch_index(const cutmixd_batch_t *b);
uint32_t cutmixd_batch_size(const cutmixd_batch_t *b);     /* samples B */
uint32_t cutmixd_batch_height(const cutmixd_batch_t *b);
uint32_t cutmixd_batch_width(const cutmixd_batch_t *b);
uint32_t cutmixd_batch_channels(const cutmixd_batch_t *b);
enum cutmixd_layout cutmixd_batch_layout(const cutmixd_batch_t *b);
enum cutmixd_dtype cutmixd_batch_dtype(const cutmixd_batch_t *b);
uint32_t cutmixd_batch_num_classes(const cutmixd_batch_t *b);
uint32_t cutmixd_batch_batches_per_epoch(const cutmixd_batch_t *b);
/* True for the last batch of the epoch for this shard. */
bool cutmixd_batch_is_last(const cutmixd_batch_t *b);
/* Dimensions in memory order: B,H,W,C (nhwc) or B,C,H,W (nchw). */
void cutmixd_batch_shape(const cutmixd_batch_t *b, uint32_t shape[4]);

/* Pixels, C-contiguous in the batch's layout, uint8_t or float; *bytes
 * (if not NULL) gets the size. */
const void *cutmixd_batch_images(const cutmixd_batch_t *b, size_t *bytes);
/* Soft labels, float [B][num_classes]. */
const float *cutmixd_batch_labels(const cutmixd_batch_t *b, size_t *bytes);
/* Raw metadata records, B of cutmixd_batch_meta_size() bytes each. */
const uint8_t *cutmixd_batch_meta_raw(const cutmixd_batch_t *b, size_t *bytes);
uint32_t cutmixd_batch_meta_size(const cutmixd_batch_t *b);
/* Decode record i: 0, or -ERANGE if i >= B. */
int cutmixd_batch_meta(const cutmixd_batch_t *b, uint32_t i, struct cutmixd_meta *out);
/* Index (in the client's endpoint list) of the daemon that served the
 * batch, -1 if unknown. */
int cutmixd_batch_peer(const cutmixd_batch_t *b);
/* The config digest of the daemon that made the batch (32 bytes). */
const uint8_t *cutmixd_batch_digest(const cutmixd_batch_t *b);
/* The frames exactly as received, before any alignment copy: i = 0 header,
 * 1 images, 2 labels, 3 metadata. NULL if i > 3. */
const void *cutmixd_batch_frame(const cutmixd_batch_t *b, unsigned i, size_t *bytes);

void cutmixd_batch_free(cutmixd_batch_t **b);

#ifdef __cplusplus
}
#endif

#endif
