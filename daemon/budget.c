/*
 * budget.c — the up-front memory check of a configuration (budget.h).
 */
#include "budget.h"

#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "log.h"
#include "wire.h"

uint64_t budget_batch_bytes(const engine_t *e, int i)
{
	const struct pipeline_rt *rt = engine_pipeline(e, i);
	const struct pipeline_cfg *p = rt->cfg;
	uint64_t n = p->batch_size;
	uint64_t px = (uint64_t)p->size * p->size * 3;
	uint64_t k = dataset_num_classes(rt->ds);
	uint64_t bytes = n * px;

	if (p->dtype == DTYPE_FLOAT32)
		bytes += n * px * sizeof(float);
	else if (p->layout != LAYOUT_NHWC)
		bytes += n * px;
	bytes += n * k * sizeof(float);
	bytes += n * (WIRE_META_SIZE + sizeof(struct wire_meta));
	return bytes;
}

uint64_t budget_limit(const struct server_cfg *sv)
{
	long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);

	if (sv->max_batch_bytes)
		return sv->max_batch_bytes;
	if (pages <= 0 || page <= 0)
		return UINT64_MAX;
	return (uint64_t)pages * (uint64_t)page / 4;
}

static double gib(uint64_t b)
{
	return (double)b / (1024.0 * 1024.0 * 1024.0);
}

static void warn_classes(const engine_t *e)
{
	for (int d = 0; d < engine_config(e)->n_datasets; d++) {
		const dataset_t *ds = engine_dataset(e, d);
		uint32_t k = dataset_num_classes(ds), used = dataset_used_classes(ds);

		if (k > 2u * used && k - used >= 16)
			log_warning("dataset '%s': %u classes but only %u have samples: "
				    "every label row still has %u entries (%u bytes per "
				    "sample); check the class column of the manifest "
				    "(integer classes make max + 1 classes)",
				    engine_config(e)->datasets[d].name, k, used, k, k * 4u);
	}
}

int budget_check(const engine_t *e, char *err, size_t errlen)
{
	const struct server_cfg *sv = &engine_config(e)->server;
	uint64_t limit = budget_limit(sv);
	uint64_t inflight = sv->max_inflight ? sv->max_inflight : 2 + sv->workers / 2;

	warn_classes(e);
	for (int i = 0; i < engine_config(e)->n_pipelines; i++) {
		const struct pipeline_cfg *p = engine_pipeline(e, i)->cfg;
		uint64_t one = budget_batch_bytes(e, i);

		if (one <= limit / inflight)
			continue;
		snprintf(err, errlen, "[pipeline.%s]: a batch needs %.2f GiB (batch_size "
			 "%u, size %u, %u classes) and max_inflight %llu batches need "
			 "%.2f GiB, above [server] max_batch_bytes = %llu (%.2f GiB%s): "
			 "lower batch_size or size, or [server] max_inflight, or raise "
			 "max_batch_bytes", p->name, gib(one), p->batch_size, p->size,
			 dataset_num_classes(engine_pipeline(e, i)->ds),
			 (unsigned long long)inflight, gib(one) * (double)inflight,
			 (unsigned long long)limit, gib(limit),
			 sv->max_batch_bytes ? "" : ", a quarter of physical memory");
		return -E2BIG;
	}
	return 0;
}
