/*
 * reload.h — SIGHUP: build the next config generation off the serving
 * thread.
 *
 * rebuild_start reads the config again (with the same --set overrides),
 * its [security] key files, and indexes every dataset (engine_new) on a
 * thread of its own, while the serving thread keeps serving the running
 * generation; when the build ends it writes the serving loop's eventfd.
 * The serving thread polls rebuild_done and takes the result with
 * rebuild_take, or leaves a build it no longer wants with rebuild_abandon
 * (a stop does not wait for a dataset scan): the thread then frees what it
 * built.
 */
#ifndef CUTMIXD_RELOAD_H
#define CUTMIXD_RELOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "engine.h"
#include "stats.h"
#include "zap.h"

typedef struct rebuild rebuild_t;

/* Start a build; `wake_fd` (an eventfd) is written once when it ends.
 * NULL with a message in err when no thread can be started. */
rebuild_t *rebuild_start(const char *config_path, char *const *sets, int n_sets,
			 struct stats *stats, int wake_fd, char *err, size_t errlen);
/* Whether the build has ended (never blocks). */
bool rebuild_done(rebuild_t *rb);
/*
 * Join an ended build and take its result: 0 with *eng and *keys (clear
 * them with engine_unref / server_keys_clear), or -errno with the message
 * in err and nothing to free. Clears *rb.
 */
int rebuild_take(rebuild_t **rb, engine_t **eng, struct server_keys *keys,
		 char *err, size_t errlen);
/* Leave a build (running or ended): its thread frees it. Clears *rb. NULL-safe. */
void rebuild_abandon(rebuild_t **rb);

/* The [server] keys a reload cannot apply (they need a restart), as the
 * running daemon uses them. */
struct restart_keys {
	char endpoints[1024];     /* joined with "," */
	uint32_t workers, max_inflight;
	int log_level;
};
void restart_keys_of(const config_t *cfg, struct restart_keys *k);

/*
 * Compare a new config with the running values: each of endpoint,
 * workers, max_inflight, log_level that differs, as "key (old -> new)",
 * joined with ", " into out. Returns how many differ.
 */
int reload_unapplied(const struct restart_keys *running, const config_t *next,
		     char *out, size_t outlen);

#endif
