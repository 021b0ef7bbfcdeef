/*
 * budget.h — memory a configuration will need, checked when it is loaded
 * (start, --check, every SIGHUP) instead of when the first request gets
 * the daemon OOM-killed.
 *
 * One batch of pipeline P holds, while it is computed:
 *   pixels   batch_size x size x size x 3 bytes (uint8 NHWC, always)
 *   images   batch_size x size x size x 3 x 4 more with dtype = float32,
 *            or x 1 more with layout = nchw (the converted copy)
 *   labels   batch_size x num_classes x 4 (float32 soft labels)
 *   meta     batch_size x (WIRE_META_SIZE + the in-memory record)
 * and up to max_inflight batches (0 = 2 + workers / 2, as the server
 * resolves it) are computed at once. The largest pipeline's batch times
 * max_inflight must stay within [server] max_batch_bytes (0 = a quarter of
 * physical memory), or the config is refused naming the keys.
 *
 * It also warns when a dataset's num_classes far exceeds the classes that
 * have samples (more than twice as many and at least 16 more: an integer
 * class column with a typo makes 2^20 classes, i.e. 4 MiB of labels per
 * sample).
 */
#ifndef CUTMIXD_BUDGET_H
#define CUTMIXD_BUDGET_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"

/* Bytes one batch of pipeline i needs (above). */
uint64_t budget_batch_bytes(const engine_t *e, int pipeline);

/* The max_batch_bytes in force: the configured one, or a quarter of
 * physical memory. */
uint64_t budget_limit(const struct server_cfg *sv);

/* 0, or -E2BIG with a message naming the pipeline and the keys. Logs the
 * num_classes warnings. */
int budget_check(const engine_t *e, char *err, size_t errlen);

#endif
