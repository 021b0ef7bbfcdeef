#include "info.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

#ifndef CUTMIXD_VERSION /* -DCUTMIXD_VERSION=\"$(cat VERSION)\" from the Makefile */
#error "CUTMIXD_VERSION is not defined: build with the Makefile (it comes from the file VERSION)"
#endif

/* A growing string; `ok` turns false on the first allocation failure. */
struct sbuf {
	char *s;
	size_t len, cap;
	bool ok;
};

static void sb_grow(struct sbuf *b, size_t more)
{
	if (!b->ok || b->len + more + 1 <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + more + 1)
		cap *= 2;
	char *s = realloc(b->s, cap);
	if (!s) {
		b->ok = false;
		return;
	}
	b->s = s;
	b->cap = cap;
}

static void sb_printf(struct sbuf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->ok = false;
		return;
	}
	sb_grow(b, (size_t)n);
	if (!b->ok)
		return;
	va_start(ap, fmt);
	vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

static void sb_put(struct sbuf *b, const char *p, size_t n)
{
	sb_grow(b, n);
	if (!b->ok)
		return;
	memcpy(b->s + b->len, p, n);
	b->len += n;
	b->s[b->len] = '\0';
}

/* A JSON string literal (RFC 8259 escaping; bytes >= 0x80 pass through).
 * Runs that need no escape are copied in one piece. */
static void sb_json_str(struct sbuf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";

	sb_put(b, "\"", 1);
	while (*s) {
		size_t run = 0;
		while (s[run] && s[run] != '"' && s[run] != '\\' &&
		       (unsigned char)s[run] >= 0x20)
			run++;
		sb_put(b, s, run);
		s += run;
		if (!*s)
			break;
		unsigned char c = (unsigned char)*s++;
		char esc[6] = { '\\', (char)c };
		if (c < 0x20) {
			esc[1] = 'u';
			esc[2] = esc[3] = '0';
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			sb_put(b, esc, 6);
		} else {
			sb_put(b, esc, 2);
		}
	}
	sb_put(b, "\"", 1);
}

static char *sb_finish(struct sbuf *b)
{
	if (!b->ok) {
		free(b->s);
		return NULL;
	}
	return b->s;
}

uint32_t info_samples_per_rank(const struct pipeline_rt *rt, uint32_t world)
{
	/* drop_last drops each shard's tail that does not fill a batch: a
	 * rank receives whole batches only. Otherwise the padded shard. */
	if (rt->cfg->drop_last)
		return sampler_batches(rt->sampler, world) * rt->cfg->batch_size;
	return sampler_shard_size(rt->sampler, world);
}

char *info_class_names_json(const dataset_t *ds)
{
	struct sbuf b = { .ok = true };
	uint32_t K = dataset_num_classes(ds);

	sb_put(&b, "[", 1);
	for (uint32_t k = 0; k < K; k++) {
		if (k)
			sb_put(&b, ",", 1);
		sb_json_str(&b, dataset_class_name(ds, k));
	}
	sb_put(&b, "]", 1);
	return sb_finish(&b);
}

char *info_json(const engine_t *e, int pipeline, uint32_t rank, uint32_t world,
		unsigned version, uint32_t max_window)
{
	struct sbuf b = { .ok = true };
	const config_t *cfg = engine_config(e);

	if (!wire_version_ok(version))
		version = WIRE_VERSION;
	sb_printf(&b, "{\"protocol\":%u,\"protocols\":[%d,%d],\"version\":", version,
		  WIRE_VERSION_MIN, WIRE_VERSION);
	sb_json_str(&b, CUTMIXD_VERSION);
	sb_printf(&b, ",\"config_digest\":\"%s\",\"pipelines\":[", engine_digest_hex(e));
	for (int i = 0; i < cfg->n_pipelines; i++) {
		sb_printf(&b, i ? "," : "");
		sb_json_str(&b, cfg->pipelines[i].name);
	}
	sb_printf(&b, "],\"max_window\":%u,\"meta_size\":%d", max_window,
		  (int)wire_meta_size(version));

	if (pipeline >= 0) {
		const struct pipeline_rt *rt = engine_pipeline(e, pipeline);
		const struct pipeline_cfg *p = rt->cfg;
		uint32_t K = dataset_num_classes(rt->ds);
		uint32_t w = world ? world : 1;

		sb_printf(&b, ",\"pipeline\":");
		sb_json_str(&b, p->name);
		sb_printf(&b, ",\"eval\":%s,\"dataset\":", p->eval ? "true" : "false");
		sb_json_str(&b, cfg->datasets[p->dataset].name);
		sb_printf(&b, ",\"dataset_size\":%u,\"skipped_files\":%llu,"
			  "\"num_classes\":%u,\"class_names\":", dataset_size(rt->ds),
			  (unsigned long long)dataset_skipped(rt->ds), K);
		/* made once per generation (engine_new), copied here */
		sb_put(&b, engine_class_names_json(e, rt->ds_index), strlen(engine_class_names_json(e, rt->ds_index)));
		sb_printf(&b, ",\"batch_size\":%u,\"batches_per_epoch\":%u,"
			  "\"samples_per_rank\":%u,\"rank\":%u,\"world\":%u,",
			  p->batch_size, sampler_batches(rt->sampler, w),
			  info_samples_per_rank(rt, w), rank, w);
		if (p->layout == LAYOUT_NCHW)
			sb_printf(&b, "\"image_shape\":[3,%u,%u],", p->size, p->size);
		else
			sb_printf(&b, "\"image_shape\":[%u,%u,3],", p->size, p->size);
		sb_printf(&b, "\"layout\":\"%s\",\"dtype\":\"%s\",\"drop_last\":%s,"
			  "\"shuffle\":%s,\"label_smoothing\":%.17g",
			  p->layout == LAYOUT_NCHW ? "nchw" : "nhwc",
			  p->dtype == DTYPE_FLOAT32 ? "float32" : "uint8",
			  p->drop_last ? "true" : "false", p->shuffle ? "true" : "false",
			  p->label_smoothing);
	}
	sb_printf(&b, "}");
	return sb_finish(&b);
}

/* One bad_file_list element (engine_bad_each's callback). */
struct bad_json {
	struct sbuf *b;
	const engine_t *e;
};

static void bad_entry_json(const struct bad_entry *be, uint32_t k, void *arg)
{
	struct bad_json *bj = arg;
	struct sbuf *b = bj->b;

	sb_printf(b, "%s{\"dataset\":", k ? "," : "");
	sb_json_str(b, engine_config(bj->e)->datasets[be->ds].name);
	sb_printf(b, ",\"path\":");
	sb_json_str(b, dataset_path(engine_dataset(bj->e, be->ds), be->index));
	sb_printf(b, ",\"failures\":%u,\"error\":", be->failures);
	sb_json_str(b, be->why);
	sb_printf(b, "}");
}

char *stats_json(const struct stats *st, const struct server_gauges *g,
		 engine_t *e)
{
	struct sbuf b = { .ok = true };

	sb_printf(&b, "{\"uptime_s\":%.3f,\"requests\":%llu,\"bad_requests\":%llu,\"dropped\":%llu,"
		  "\"batches\":%llu,\"images\":%llu,\"bytes_sent\":%llu,"
		  "\"img_per_s\":%.1f,\"decode_errors\":%llu,\"replaced\":%llu,"
		  "\"bad_files\":%llu,\"clients\":%u,\"pending\":%u,\"inflight\":%u,"
		  "\"unsent\":%u,\"queue_depth\":%u,\"rss_bytes\":%llu,"
		  "\"cache_hits\":%llu,\"cache_misses\":%llu,\"cache_bytes\":%llu,"
		  "\"cache_entries\":%llu,\"shm_batches\":%llu,\"shm_fallbacks\":%llu,"
		  "\"shm_bad_releases\":%llu,\"shm_sessions\":%llu,\"shm_bytes\":%llu,",
		  stats_now() - st->started,
		  (unsigned long long)stats_get(st, requests),
		  (unsigned long long)stats_get(st, bad_requests),
		  (unsigned long long)stats_get(st, dropped),
		  (unsigned long long)stats_get(st, batches),
		  (unsigned long long)stats_get(st, images),
		  (unsigned long long)stats_get(st, bytes_sent), g->img_per_s,
		  (unsigned long long)stats_get(st, decode_errors),
		  (unsigned long long)stats_get(st, replaced),
		  (unsigned long long)stats_get(st, bad_files), g->clients,
		  g->pending, g->inflight, g->unsent, g->queue_depth,
		  (unsigned long long)stats_rss_bytes(),
		  (unsigned long long)stats_get(st, cache_hits),
		  (unsigned long long)stats_get(st, cache_misses),
		  (unsigned long long)stats_get(st, cache_bytes),
		  (unsigned long long)stats_get(st, cache_entries),
		  (unsigned long long)stats_get(st, shm_batches),
		  (unsigned long long)stats_get(st, shm_fallbacks),
		  (unsigned long long)stats_get(st, shm_bad_releases),
		  (unsigned long long)stats_get(st, shm_sessions),
		  (unsigned long long)stats_get(st, shm_bytes));
	/* Per file: which failed, how often, and the first error. */
	sb_printf(&b, "\"bad_file_list\":[");
	struct bad_json bj = { &b, e };
	engine_bad_each(e, bad_entry_json, &bj);
	sb_printf(&b, "]}");
	return sb_finish(&b);
}
