/*
 * engine_int.h — the fields of engine_t, for engine.c and
 * tests/unit/test_engine.c only; everyone else uses engine.h's accessors.
 */
#ifndef CUTMIXD_ENGINE_INT_H
#define CUTMIXD_ENGINE_INT_H

#include "engine.h"

struct engine {
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
};

#endif
