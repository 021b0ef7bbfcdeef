/*
 * info.h — the JSON bodies of `info` and `stats` replies (keys listed in
 * proto/PROTOCOL.md).
 */
#ifndef CUTMIXD_INFO_H
#define CUTMIXD_INFO_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"

/* Samples each rank of `world` receives per epoch (INFO samples_per_rank). */
uint32_t info_samples_per_rank(const struct pipeline_rt *rt, uint32_t world);

/* The JSON array of a dataset's class names (escaped once, at engine_new):
 * malloc'd, or NULL when out of memory. */
char *info_class_names_json(const dataset_t *ds);

/* pipeline < 0: global keys only; `version` is the request's protocol
 * version ("protocol" and "meta_size" answer for it). Returns malloc'd
 * text or NULL. */
char *info_json(const engine_t *e, int pipeline, uint32_t rank, uint32_t world,
		unsigned version, uint32_t max_window);

struct server_gauges {
	uint32_t clients, pending, inflight, unsent, queue_depth;
	double img_per_s;
};
/* Counters, gauges, and the engine's list of bad files (per file). */
char *stats_json(const struct stats *st, const struct server_gauges *g,
		 engine_t *e);

#endif
