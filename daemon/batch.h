/*
 * batch.h — one requested batch, from sampler indices to finished frames.
 *
 * Life of a batch (owner in brackets):
 *   batch_new        [server]  the sample count (no permutation), buffers
 *                              allocated
 *   batch_submit     [pool]    the first item to run fills the indices from
 *                              the sampler (which may shuffle a whole epoch
 *                              there, once per epoch: never on the server
 *                              thread); each worker runs samples (sample.c): read
 *                              file, decode the crop region, resize into the
 *                              batch slot, flip, recipe ops, Cutout,
 *                              RandomErasing; the last worker then mixes
 *                              (CutMix/MixUp), writes soft labels, converts
 *                              the layout/dtype and encodes the metadata
 *   complete()       [server]  called on that worker; the server takes the
 *                              batch back through its own queue
 *   batch_take_*     [zmq]     the server hands the frame buffers to
 *                              zmq_msg_init_data (images back to the
 *                              bufpool, the rest freed with free())
 *   batch_destroy    [server]
 * A failing sample with on_decode_error=fail, or an allocation failure,
 * marks the batch failed (status + message); the remaining samples skip
 * their work and complete() still runs once.
 */
#ifndef CUTMIXD_BATCH_H
#define CUTMIXD_BATCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "pool.h"
#include "wire.h"

typedef struct batch batch_t;

struct batch {
	struct pool_task task;     /* first: the pool hands it back */
	engine_t *eng;             /* a reference */
	const struct pipeline_rt *pl;
	uint32_t epoch, rank, world, index, n;
	uint64_t key;              /* rng_key(seed, pipeline, rank, world) */
	uint32_t batches_per_epoch;
	unsigned version;          /* the request's protocol version (set by
	                            * the server before batch_submit; 0 =
	                            * WIRE_VERSION): the metadata's layout */
	uint32_t *idx;             /* filled on a worker (batch_submit) */
	uint8_t *pad;
	pthread_mutex_t idx_lock;  /* the worker filling idx/pad holds it */
	atomic_int idx_ready;      /* 1 once idx/pad are filled (or failed) */

	uint8_t *pixels;           /* n * size*size*3, uint8 NHWC */
	void *images;              /* output frame (== pixels for uint8 NHWC) */
	size_t images_bytes;
	float *labels;             /* n * num_classes */
	size_t labels_bytes;
	struct wire_meta *meta;    /* n records while working */
	uint8_t *meta_wire;        /* n * wire_meta_size(version) once finished */
	size_t meta_bytes;

	atomic_int failed;         /* first failure wins */
	uint32_t status;           /* WIRE_OK or the error code */
	char error[512];

	void (*complete)(batch_t *b, void *arg);
	void *complete_arg;
	void *user;                /* the server's request envelope */
	const atomic_bool *stop;   /* set: fail with SHUTTING_DOWN (or NULL) */
	batch_t *next;             /* the server's queues */
};

/* Returns NULL with *status and msg set on bad arguments or no memory. */
batch_t *batch_new(engine_t *eng, int pipeline, uint32_t epoch, uint32_t rank,
		   uint32_t world, uint32_t index, uint32_t *status,
		   char *msg, size_t msglen);
void batch_submit(batch_t *b, pool_t *pool,
		  void (*complete)(batch_t *b, void *arg), void *arg);
void batch_destroy(batch_t **b);

/* Hand a frame buffer over (the batch forgets it): images go back with
 * bufpool_put(), labels and metadata with free(). */
void *batch_take_images(batch_t *b);
void *batch_take_labels(batch_t *b);
void *batch_take_meta(batch_t *b);

/* Mark the batch failed (the first failure wins its status and message). */
void batch_fail(batch_t *b, uint32_t status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Per-worker context for pool_new(). */
void *batch_worker_new(void);
void batch_worker_free(void *ctx);

#endif
