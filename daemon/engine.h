/*
 * engine.h — one generation of the daemon's configuration, ready to serve:
 * the config, every dataset's index, a sampler per pipeline, the config
 * digest, and the set of files found unreadable.
 *
 * A SIGHUP builds a new engine and the server swaps it in; batches hold a
 * reference to the engine they started with, so an old generation lives
 * until its last batch is sent.
 */
#ifndef CUTMIXD_ENGINE_H
#define CUTMIXD_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "dataset.h"
#include "digest.h"
#include "sampler.h"
#include "stats.h"
#include "wire.h"

struct pipeline_rt {
	const struct pipeline_cfg *cfg;
	dataset_t *ds;        /* borrowed from the engine */
	int ds_index;
	sampler_t *sampler;
	size_t pixel_bytes;   /* one uint8 RGB output image */
	size_t out_bytes;     /* one image in the output dtype */
};

/* The files that failed, each with its count and first error; at most
 * ENGINE_BAD_LIST of them are listed (all are counted). */
#define ENGINE_BAD_LIST 256
struct bad_entry {
	int ds;
	uint32_t index;
	uint32_t failures;
	char why[120];
};

typedef struct engine {
	atomic_int refs;
	config_t *cfg;
	struct stats *stats;                  /* process-wide, not owned */
	dataset_t *datasets[CONFIG_MAX_DATASETS];
	atomic_uchar *bad[CONFIG_MAX_DATASETS]; /* 1 per file known bad */
	struct pipeline_rt pipelines[CONFIG_MAX_PIPELINES];
	pthread_mutex_t bad_lock;             /* guards bad_list, n_bad_list */
	struct bad_entry bad_list[ENGINE_BAD_LIST];
	uint32_t n_bad_list;
	char *class_names_json[CONFIG_MAX_DATASETS]; /* INFO's class_names */
	uint8_t digest[DIGEST_SIZE];
	char digest_hex[2 * DIGEST_SIZE + 1];
} engine_t;

/*
 * Build an engine; takes ownership of *cfg (cleared) in every case.
 * Returns 0, or -errno with a message (dataset errors name the file).
 */
int engine_new(config_t **cfg, struct stats *stats, engine_t **out,
	       char *err, size_t errlen);
engine_t *engine_ref(engine_t *e);
/* Drop a reference; the last one frees. NULL-safe, clears *e. */
void engine_unref(engine_t **e);

int engine_find_pipeline(const engine_t *e, const char *name);

/*
 * The check of a request for pipeline `pi` (found by its name) against
 * this generation, one for the server (on arrival) and batch_new (when
 * the batch is built, maybe after a reload): rank below world, an
 * EXPECT_EVAL request names a pipeline that does not augment, a BATCH's
 * index is in the epoch. WIRE_OK, or the error status with its message.
 */
uint32_t engine_check_request(const engine_t *e, int pi, const struct wire_request *rq,
			      char *msg, size_t msglen);

/* Record that `index` of dataset `ds` failed: counts every failure, logs
 * the first failure of each file once (with `why`). */
void engine_note_bad(engine_t *e, int ds, uint32_t index, const char *why);

#endif
