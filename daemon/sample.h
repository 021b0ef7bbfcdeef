/*
 * sample.h — one sample of a batch: read -> decode -> crop -> resize ->
 * flip -> per-sample augmentation, into the batch's slot and metadata.
 */
#ifndef CUTMIXD_SAMPLE_H
#define CUTMIXD_SAMPLE_H

#include <stddef.h>
#include <stdint.h>

#include "augment.h"
#include "batch.h"
#include "decode.h"
#include "pool.h"
#include "resize.h"

/* One worker's scratch (batch_worker_new() makes it). */
struct worker_ctx {
	decoder_t *dec;
	resizer_t *rz;
	uint8_t *scratch;          /* partner pixels while mixing */
	size_t scratch_cap;
	struct mix_item *items;
	uint32_t *perm;
	uint32_t items_cap;
	uint8_t *op_scratch;       /* imgop_apply's scratch */
	size_t op_scratch_cap;
	char why[512];
};

/*
 * The pool's per-sample callback for a batch_t task: fills slot `pos` of
 * b->pixels and b->meta[pos]; on a failure that fails the batch it calls
 * batch_fail(). `ctx` is the worker's struct worker_ctx.
 */
void sample_run(struct pool_task *t, uint32_t pos, void *ctx);

#endif
