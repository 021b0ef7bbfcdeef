/*
 * internal.h — what the files of the cutmixd C client share (not installed):
 * the types, limits and the functions one file calls in another. The
 * client: one DEALER socket per daemon, synchronous requests (INFO, STATS,
 * one batch) and in-order epoch iteration over a window of requests spread
 * over the daemons.
 *
 * DESIGN
 * One thread uses a client at a time (cutmixd.h), so nothing here locks.
 *
 * Peers. Every endpoint of the list has its own DEALER (struct peer), so
 * the client knows which daemon each request went to. Sockets use
 * ZMQ_IMMEDIATE: a DEALER without a live connection cannot send, which is
 * how "reachable" is known (ZMQ_EVENTS & ZMQ_POLLOUT), and a connection
 * that drops takes its unanswered requests with it.
 *
 * Jobs and requests. A job is one thing asked for: the synchronous call's
 * (c->sync) or one batch of the epoch iteration (c->ep.slots, batch k in
 * slots[k % window]). A job is sent as one request, and again if that
 * request goes unanswered; every request sent is a struct req in c->reqs
 * (request_id, peer, job and the job's generation, send time, live). A
 * reply is matched by request_id: the first reply for a job wins; a reply
 * for a job that is done, abandoned (generation changed) or unknown is
 * counted as stale and dropped.
 *
 * Dispatch. A job goes to the usable daemon (not down, not refused,
 * connected, fewer than its cap outstanding) with the fewest outstanding
 * requests, preferring one that has not had this job yet; ties rotate.
 * Epoch jobs count against the window (all live requests together < window,
 * per daemon <= max_window); a synchronous request only against max_window.
 *
 * Failures (maintain(), on every service() round):
 *   - a daemon that has live requests and no connection (killed, restarted,
 *     heartbeat timeout): its requests are expired at once;
 *   - a request older than the resend timeout R (default 3 s; 3 x the
 *     daemon's usual latency when that is longer, at most 4 x R): expired;
 *     if the daemon also sent nothing at all for R, it is marked down;
 *   - expired requests stop counting as outstanding; their jobs are sent
 *     again (elsewhere when possible); a late reply is still taken;
 *   - a daemon marked down gets no work; an INFO probe is sent to it after
 *     a back-off (100 ms doubling to 2 s); any reply makes it usable again.
 * BUSY is retried after 10 ms doubling to 1 s; SHUTTING_DOWN marks the
 * daemon down and sends the job elsewhere. Every call is bounded by the
 * timeout.
 *
 * Digest. Every reply's config digest is compared with the first reply's;
 * a daemon with another digest is refused from then on, and the call that
 * saw it fails with -ESTALE naming the endpoint.
 *
 * Ownership. The frames of a reply are zmq_msg_t's received into a
 * struct reply and moved (zmq_msg_move, no copy) into a cutmixd_batch,
 * which then owns them until cutmixd_batch_free(). A batch needs nothing
 * from the client, so it can outlive it and be freed on any thread.
 */
#ifndef CUTMIXD_INTERNAL_H
#define CUTMIXD_INTERNAL_H

#include "cutmixd.h"
#include "wire.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <zmq.h>

#define ERR_MAX          512
#define BODY_MAX         3   /* body frames after the header */
#define BACKOFF_MIN_MS   10  /* BUSY */
#define BACKOFF_MAX_MS   1000
#define PROBE_MIN_MS     100 /* a daemon marked down */
#define PROBE_MAX_MS     2000
#define CHECK_MS         100 /* look for dropped connections this often */
#define RECONNECT_IVL_MS 100
#define CONNECT_TIMEOUT_MS 2000
#define HEARTBEAT_IVL_MS 1000
#define LATENCY_FACTOR   3
#define RESEND_CAP_FACTOR 4
#define TRIED_BITS       64  /* peers remembered per job for "elsewhere" */
#define DNS_SCHEME       "dns+tcp://"
#define DISCOVERY_DEFAULT_MS 10000

/* ---- types -------------------------------------------------------------- */

struct reply {
	zmq_msg_t f[1 + BODY_MAX]; /* header, bodies */
	int n;                     /* frames held in f[] */
	int extra;                 /* frames beyond f[] (dropped) */
	int hrc;                   /* wire_decode_reply() result */
	struct wire_reply h;
};

struct cutmixd_batch {
	struct wire_reply h;
	zmq_msg_t f[1 + BODY_MAX];
	const void *images;
	const float *labels;
	void *images_copy; /* only when a float frame had to be realigned */
	float *labels_copy;
	int peer;          /* index of the endpoint that served it */
};

/* A failure to be reported later: message and codes. */
struct failure {
	int err;
	uint32_t status;
	char msg[ERR_MAX];
};

struct peer {
	char *endpoint;
	void *sock;
	bool down;           /* silent: no work until a probe is answered */
	bool scratch;        /* dispatch(): already considered */
	bool refused;        /* another config digest: never used again */
	uint32_t live;       /* requests outstanding (counted) */
	int64_t last_rx;     /* ms of its last reply, -1 never */
	int64_t probe_at;
	uint64_t probe_id;   /* outstanding probe, 0 none */
	int64_t probe_sent;
	int backoff;         /* probe back-off, ms */
	double latency;      /* EWMA request -> reply, ms; < 0 unknown */
	uint64_t requests, replies, batches, resent, downs, disconnects;
	int group;           /* dns+tcp:// group it came from, -1 listed */
	bool gone;           /* vanished from its group's DNS answer: unused */
	bool connected;      /* zmq_connect done (and not disconnected) */
};

/* One dns+tcp://NAME:PORT of the endpoint list (discovery.c). */
struct dns_group {
	char *spec;          /* as listed */
	char *host, *port;
	int64_t next_at;     /* next resolution, ms */
	int naddrs;          /* addresses in the last good answer, 0 none yet */
	char err[160];       /* why the last resolution failed, "" if it did not */
};

enum job_state { JOB_FREE, JOB_WAIT, JOB_DONE, JOB_FAILED };

struct job {
	enum job_state state;
	uint16_t type;
	uint32_t epoch, batch;
	uint64_t gen;        /* bumped whenever the job is reused or abandoned */
	bool sync;           /* the synchronous call's job */
	int only;            /* the one peer to ask, -1 any */
	uint32_t nlive;      /* live requests for it */
	uint32_t sends;
	uint64_t tried;      /* bit i: peer i has had it */
	int64_t retry_at;    /* BUSY: not before */
	int backoff;
	cutmixd_batch_t *b;  /* DONE, epoch job */
	struct reply *r;     /* DONE, sync job: the whole reply */
	int from;            /* DONE: peer that answered */
	struct failure *fail; /* FAILED */
};

struct req {
	uint64_t id;
	int peer;
	struct job *job;     /* NULL: a probe, or the job was let go */
	uint64_t gen;
	int64_t sent;
	bool live;
};

struct epoch_iter {
	bool active;
	uint32_t epoch;
	uint32_t next;   /* next batch to deliver */
	uint32_t sent;   /* next batch to ask for */
	uint32_t end;    /* batches per epoch */
	uint32_t window;
	struct job *slots;
	int failed;      /* sticky error, 0 if none */
	struct failure fail;
};

struct cutmixd_client {
	void *ctx;
	struct peer *peers;  /* may move (discovery adds peers): use indexes */
	int npeers, cappeers;
	zmq_pollitem_t *items;
	struct dns_group *groups;
	int ngroups;
	int discovery_ms;    /* re-resolve groups this often */
	bool window_auto;    /* window 0: CUTMIXD_DEFAULT_WINDOW per daemon */
	char *endpoints;     /* the list as given */
	bool connected;
	struct failure *connect_fail; /* a failed connect is final */
	char pipeline[WIRE_PIPELINE_MAX];
	uint32_t rank, world, window, flags;
	int timeout_ms;
	int resend_ms;
	uint64_t next_id;
	int rr;              /* round-robin start among equal peers */

	bool curve;
	char curve_server[41], curve_public[41], curve_secret[41];

	bool have_digest;
	uint8_t digest[WIRE_DIGEST_SIZE];
	int digest_from;     /* peer that pinned it */
	int64_t bpe;         /* batches per epoch, -1 until INFO */
	int64_t max_window;  /* 0 if unknown */

	struct job sync;
	struct epoch_iter ep;
	struct req *reqs;
	size_t nreqs, capreqs;
	uint64_t stale;
	uint64_t replies;    /* replies routed, all peers */

	char err[ERR_MAX];
	uint32_t err_status;
};

/* ---- shared functions (defined in the file named) ------------------------
 * The prefix cmx_ keeps them out of a user's name space (libcutmixd.a links
 * into programs) and hidden visibility out of libcutmixd.so's symbol table;
 * none is part of the API in cutmixd.h. */
#pragma GCC visibility push(hidden)

/* client.c: small helpers and errors */
int64_t cmx_now_ms(void);
void cmx_fail_set(struct failure *f, int err, uint32_t status, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
int cmx_set_error(cutmixd_client_t *c, int err, uint32_t status, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
int cmx_set_failure(cutmixd_client_t *c, const struct failure *f);
int cmx_status_errno(uint32_t status);
void cmx_hex(char *out, const uint8_t *p, size_t n);
const char *cmx_type_name(uint16_t type);
int cmx_zmq_fail(cutmixd_client_t *c, const char *what);
int cmx_remaining_ms(int64_t deadline);

/* batch.c: replies and batches */
void cmx_reply_free(struct reply **rp);
int cmx_recv_reply(cutmixd_client_t *c, void *sock, struct reply **out);
int cmx_check_reply(cutmixd_client_t *c, struct reply *r, const struct wire_request *rq,
		    uint16_t want_type, int bodies, struct failure *f);
int cmx_make_batch(cutmixd_client_t *c, struct reply *r, const struct wire_request *rq,
		   cutmixd_batch_t **out, struct failure *f);

/* json.c */
int cmx_json_top_int(const char *js, const char *key, int64_t *out);

/* discovery.c: peers and dns+tcp:// groups */
int cmx_peer_add(cutmixd_client_t *c, const char *endpoint, int group);
int cmx_peer_connect(cutmixd_client_t *c, int i);
int cmx_group_add(cutmixd_client_t *c, const char *spec);
int cmx_discover(cutmixd_client_t *c, int64_t now, bool force);
int64_t cmx_discovery_due(const cutmixd_client_t *c);
int cmx_usable_peers(const cutmixd_client_t *c);
void cmx_describe_groups(const cutmixd_client_t *c, char *out, size_t n);

/* dispatch.c: sockets, requests, jobs, service rounds */
bool cmx_peer_writable(const struct peer *p);
int cmx_ensure_connected(cutmixd_client_t *c);
struct wire_request cmx_make_request(const cutmixd_client_t *c, uint16_t type,
				     uint32_t epoch, uint32_t batch);
void cmx_peer_expire_all(cutmixd_client_t *c, int i);
void cmx_reqs_detach(cutmixd_client_t *c, const struct job *jobs, size_t n);
void cmx_job_release(struct job *j);
void cmx_job_start(struct job *j, uint16_t type, uint32_t epoch, uint32_t batch);
enum cutmixd_peer_state cmx_peer_state(const struct peer *p);
void cmx_describe_peers(const cutmixd_client_t *c, char *out, size_t n);
int cmx_dispatch(cutmixd_client_t *c, struct job *j, int64_t now);
struct job *cmx_ep_slot(struct epoch_iter *ep, uint32_t k);
int cmx_service(cutmixd_client_t *c, int64_t until);
bool cmx_all_refused(const cutmixd_client_t *c);
int cmx_refused_error(cutmixd_client_t *c);
int cmx_transact(cutmixd_client_t *c, uint16_t type, uint32_t epoch, uint32_t batch,
		 struct reply **out, int *from);

#pragma GCC visibility pop

#endif
