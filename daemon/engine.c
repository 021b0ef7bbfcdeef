#include "engine_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "budget.h"
#include "info.h"
#include "log.h"
#include "rng.h"

/* Every dataset's index, its bad-file map and INFO's class names. */
static int open_datasets(engine_t *e, char *err, size_t errlen)
{
	const config_t *cfg = e->cfg;
	int rc;

	for (int d = 0; d < cfg->n_datasets; d++) {
		rc = dataset_open(&cfg->datasets[d], &e->datasets[d], err, errlen);
		if (rc && cfg->datasets[d].root && access(cfg->datasets[d].root, F_OK) != 0) {
			/* The usual first-run mistake (the installed example
			 * config's root): say which key of which file to edit. */
			const char *name = cfg->datasets[d].name;
			bool dflt = strcmp(name, "default") == 0;

			snprintf(err, errlen, "%s: [dataset%s%s] root: cannot open '%s': %s: "
				 "edit root to the folder of your dataset", cfg->path,
				 dflt ? "" : ".", dflt ? "" : name, cfg->datasets[d].root,
				 strerror(errno));
		}
		if (rc)
			return rc;
		e->bad[d] = calloc(dataset_size(e->datasets[d]), 1);
		/* INFO's biggest part, escaped once here (on the reload thread
		 * for a reload), not per request on the serving thread */
		e->class_names_json[d] = info_class_names_json(e->datasets[d]);
		if (!e->bad[d] || !e->class_names_json[d]) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
	}
	return 0;
}

/* A sampler and the output sizes of every pipeline. */
static int open_pipelines(engine_t *e, char *err, size_t errlen)
{
	const config_t *cfg = e->cfg;

	for (int i = 0; i < cfg->n_pipelines; i++) {
		const struct pipeline_cfg *p = &cfg->pipelines[i];
		struct pipeline_rt *rt = &e->pipelines[i];
		struct sampler_params sp = {
			.n = dataset_size(e->datasets[p->dataset]),
			.batch_size = p->batch_size,
			.shuffle = p->shuffle,
			.drop_last = p->drop_last,
			.repeats = p->aug_repeats,
			.key = rng_key(cfg->server.seed, p->name, 0, 0),
		};

		rt->cfg = p;
		rt->ds_index = p->dataset;
		rt->ds = e->datasets[p->dataset];
		rt->pixel_bytes = (size_t)p->size * p->size * 3;
		rt->out_bytes = rt->pixel_bytes * (p->dtype == DTYPE_FLOAT32 ? sizeof(float) : 1);
		rt->sampler = sampler_new(&sp);
		if (!rt->sampler) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
	}
	return 0;
}

/* Digest: everything that can change a batch's bytes. */
static int make_digest(engine_t *e, char *err, size_t errlen)
{
	char *canon = config_canonical(e->cfg);
	sha256_t s;

	if (!canon) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	sha256_init(&s);
	sha256_update(&s, "cutmixd-digest-1\n", 17);
	sha256_update(&s, canon, strlen(canon));
	for (int d = 0; d < e->cfg->n_datasets; d++)
		dataset_digest(e->datasets[d], &s);
	sha256_final(&s, e->digest);
	digest_hex(e->digest, e->digest_hex);
	free(canon);
	return 0;
}

int engine_new(config_t **cfgp, struct stats *stats, engine_t **out,
	       char *err, size_t errlen)
{
	config_t *cfg = *cfgp;
	engine_t *e;
	int rc;

	*cfgp = NULL;
	*out = NULL;
	e = calloc(1, sizeof(*e));
	if (!e) {
		config_destroy(&cfg);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	atomic_init(&e->refs, 1);
	pthread_mutex_init(&e->bad_lock, NULL);
	e->cfg = cfg;
	e->stats = stats;

	rc = open_datasets(e, err, errlen);
	if (!rc)
		rc = open_pipelines(e, err, errlen);
	/* Memory up front (budget.h): refuse what would OOM at the first
	 * request. */
	if (!rc)
		rc = budget_check(e, err, errlen);
	if (!rc)
		rc = make_digest(e, err, errlen);
	if (rc) {
		engine_unref(&e);
		return rc;
	}
	*out = e;
	return 0;
}

engine_t *engine_ref(engine_t *e)
{
	atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
	return e;
}

void engine_unref(engine_t **ep)
{
	engine_t *e = ep ? *ep : NULL;

	if (!e)
		return;
	*ep = NULL;
	if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (int i = 0; i < CONFIG_MAX_PIPELINES; i++)
		sampler_destroy(&e->pipelines[i].sampler);
	for (int d = 0; d < CONFIG_MAX_DATASETS; d++) {
		dataset_destroy(&e->datasets[d]);
		free(e->bad[d]);
		free(e->class_names_json[d]);
	}
	config_destroy(&e->cfg);
	pthread_mutex_destroy(&e->bad_lock);
	free(e);
}

int engine_find_pipeline(const engine_t *e, const char *name)
{
	return config_find_pipeline(e->cfg, name);
}

uint32_t engine_check_request(const engine_t *e, int pi, const struct wire_request *rq,
			      char *msg, size_t msglen)
{
	const struct pipeline_rt *rt = &e->pipelines[pi];

	if (rq->world == 0 || rq->rank >= rq->world) {
		snprintf(msg, msglen, "rank %u is not below world %u", rq->rank, rq->world);
		return WIRE_E_BAD_SHARD;
	}
	if ((rq->flags & WIRE_FLAG_EXPECT_EVAL) && config_pipeline_augments(rt->cfg)) {
		snprintf(msg, msglen, "pipeline '%s' augments its data; evaluation data must come from an eval pipeline",
			 rt->cfg->name);
		return WIRE_E_NOT_EVAL;
	}
	if (rq->type == WIRE_BATCH) {
		uint32_t nb = sampler_batches(rt->sampler, rq->world);
		if (rq->batch >= nb) {
			snprintf(msg, msglen, "batch %u out of range: pipeline '%s' has %u batches per epoch for world %u",
				 rq->batch, rt->cfg->name, nb, rq->world);
			return WIRE_E_BATCH_RANGE;
		}
	}
	return WIRE_OK;
}

void engine_note_bad(engine_t *e, int ds, uint32_t index, const char *why)
{
	stats_add(e->stats, decode_errors, 1);
	pthread_mutex_lock(&e->bad_lock);
	uint32_t k = 0;
	while (k < e->n_bad_list && (e->bad_list[k].ds != ds || e->bad_list[k].index != index))
		k++;
	if (k == e->n_bad_list && k < ENGINE_BAD_LIST) {
		e->bad_list[k].ds = ds;
		e->bad_list[k].index = index;
		e->bad_list[k].failures = 0;
		snprintf(e->bad_list[k].why, sizeof(e->bad_list[k].why), "%s", why);
		e->n_bad_list++;
	}
	if (k < e->n_bad_list)
		e->bad_list[k].failures++;
	pthread_mutex_unlock(&e->bad_lock);
	if (atomic_exchange_explicit(&e->bad[ds][index], 1, memory_order_relaxed))
		return;
	stats_add(e->stats, bad_files, 1);
	log_warning("decode: '%s': %s (logged once per file)",
		    dataset_path(e->datasets[ds], index), why);
}

const config_t *engine_config(const engine_t *e)
{
	return e->cfg;
}

const struct pipeline_rt *engine_pipeline(const engine_t *e, int pipeline)
{
	return &e->pipelines[pipeline];
}

dataset_t *engine_dataset(const engine_t *e, int ds)
{
	return e->datasets[ds];
}

struct stats *engine_stats(const engine_t *e)
{
	return e->stats;
}

const uint8_t *engine_digest(const engine_t *e)
{
	return e->digest;
}

const char *engine_digest_hex(const engine_t *e)
{
	return e->digest_hex;
}

const char *engine_class_names_json(const engine_t *e, int ds)
{
	return e->class_names_json[ds];
}

void engine_bad_each(engine_t *e, void (*fn)(const struct bad_entry *be, uint32_t k, void *arg),
		     void *arg)
{
	pthread_mutex_lock(&e->bad_lock);
	for (uint32_t k = 0; k < e->n_bad_list; k++)
		fn(&e->bad_list[k], k, arg);
	pthread_mutex_unlock(&e->bad_lock);
}
