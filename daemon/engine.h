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

/* Opaque (engine_int.h has the fields, for engine.c and its unit test). */
typedef struct engine engine_t;

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

/* What one generation holds, read-only for everyone but engine.c. */
const config_t *engine_config(const engine_t *e);
const struct pipeline_rt *engine_pipeline(const engine_t *e, int pipeline);
dataset_t *engine_dataset(const engine_t *e, int ds);
struct stats *engine_stats(const engine_t *e);
/* The config digest (DIGEST_SIZE bytes) and its hex spelling. */
const uint8_t *engine_digest(const engine_t *e);
const char *engine_digest_hex(const engine_t *e);
/* INFO's class_names of dataset `ds` (a JSON array, escaped once). */
const char *engine_class_names_json(const engine_t *e, int ds);
/* Call fn for each listed bad file, in the order found, under the lock
 * engine_note_bad takes (fn must not call back into the engine). */
void engine_bad_each(engine_t *e, void (*fn)(const struct bad_entry *be, uint32_t k, void *arg),
		     void *arg);

/* Record that `index` of dataset `ds` failed: counts every failure, logs
 * the first failure of each file once (with `why`). */
void engine_note_bad(engine_t *e, int ds, uint32_t index, const char *why);

#endif
