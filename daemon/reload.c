/*
 * reload.c — the next config generation, built on its own thread.
 *
 * DESIGN
 * - One rebuild_t per SIGHUP build. Its thread owns everything it builds
 *   until it sets `state` to done under `lock`; from then on the serving
 *   thread (rebuild_take) or, once abandoned, the build thread itself
 *   frees it. `abandoned` and `state` are only read and written under
 *   `lock`, so exactly one side frees.
 * - The wake-up write to the serving loop's eventfd happens under `lock`
 *   and only when not abandoned: the server may close that fd once it has
 *   abandoned the build.
 * - The thread inherits the serving thread's blocked signals (SIGTERM,
 *   SIGINT, SIGHUP), so signals keep reaching the loop's signalfd.
 * - A build only reads files and allocates; it touches nothing the serving
 *   thread uses (stats is stored in the engine, not updated here).
 */
#include "reload.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

struct rebuild {
	pthread_t thread;
	pthread_mutex_t lock;   /* guards done, abandoned */
	bool done, abandoned;
	int wake_fd;
	char *config_path;      /* copies: an abandoned build may outlive main's */
	char **sets;
	int n_sets;
	struct stats *stats;
	/* the result, written by the thread before `done` */
	int rc;
	engine_t *eng;
	struct server_keys keys;
	char err[1024];
};

static void rebuild_free(struct rebuild *rb)
{
	for (int i = 0; i < rb->n_sets; i++)
		free(rb->sets[i]);
	free(rb->sets);
	free(rb->config_path);
	engine_unref(&rb->eng);
	server_keys_clear(&rb->keys);
	pthread_mutex_destroy(&rb->lock);
	free(rb);
}

static void *rebuild_main(void *arg)
{
	struct rebuild *rb = arg;
	config_t *cfg = NULL;
	uint64_t one = 1;
	bool abandoned;

	rb->rc = config_load(rb->config_path, rb->sets, rb->n_sets, &cfg, rb->err,
			     sizeof(rb->err));
	if (rb->rc == 0) /* before the dataset scan: a bad key file fails fast */
		rb->rc = server_keys_load(cfg, &rb->keys, rb->err, sizeof(rb->err));
	if (rb->rc == 0)
		rb->rc = engine_new(&cfg, rb->stats, &rb->eng, rb->err, sizeof(rb->err));
	config_destroy(&cfg); /* left when the keys failed; engine_new takes it */

	pthread_mutex_lock(&rb->lock);
	rb->done = true;
	abandoned = rb->abandoned;
	if (!abandoned && write(rb->wake_fd, &one, sizeof(one)) < 0)
		log_err("reload: eventfd write: %s", strerror(errno));
	pthread_mutex_unlock(&rb->lock);
	if (abandoned)
		rebuild_free(rb); /* detached: nobody else holds it */
	return NULL;
}

rebuild_t *rebuild_start(const char *config_path, char *const *sets, int n_sets,
			 struct stats *stats, int wake_fd, char *err, size_t errlen)
{
	struct rebuild *rb = calloc(1, sizeof(*rb));
	int rc;

	if (!rb) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&rb->lock, NULL);
	rb->wake_fd = wake_fd;
	rb->stats = stats;
	rb->config_path = strdup(config_path);
	rb->sets = calloc((size_t)n_sets + 1, sizeof(*rb->sets));
	rc = rb->config_path && rb->sets ? 0 : ENOMEM;
	for (int i = 0; !rc && i < n_sets; i++, rb->n_sets++)
		if (!(rb->sets[i] = strdup(sets[i])))
			rc = ENOMEM;
	if (!rc)
		rc = pthread_create(&rb->thread, NULL, rebuild_main, rb);
	if (rc) {
		snprintf(err, errlen, "cannot start the reload thread: %s", strerror(rc));
		rebuild_free(rb);
		return NULL;
	}
	return rb;
}

bool rebuild_done(rebuild_t *rb)
{
	pthread_mutex_lock(&rb->lock);
	bool done = rb->done;
	pthread_mutex_unlock(&rb->lock);
	return done;
}

int rebuild_take(rebuild_t **rbp, engine_t **eng, struct server_keys *keys,
		 char *err, size_t errlen)
{
	struct rebuild *rb = *rbp;
	int rc;

	*rbp = NULL;
	pthread_join(rb->thread, NULL);
	rc = rb->rc;
	if (rc == 0) {
		*eng = rb->eng;
		rb->eng = NULL;
		*keys = rb->keys;
		memset(&rb->keys, 0, sizeof(rb->keys));
	} else {
		snprintf(err, errlen, "%s", rb->err);
	}
	rebuild_free(rb);
	return rc;
}

void rebuild_abandon(rebuild_t **rbp)
{
	struct rebuild *rb = rbp ? *rbp : NULL;
	pthread_t thread;
	bool done;

	if (!rb)
		return;
	*rbp = NULL;
	pthread_mutex_lock(&rb->lock);
	rb->abandoned = true;
	done = rb->done;
	thread = rb->thread; /* once unlocked, a running build may free rb */
	pthread_mutex_unlock(&rb->lock);
	if (done) { /* ended already: ours to free */
		pthread_join(thread, NULL);
		rebuild_free(rb);
	} else {
		pthread_detach(thread);
	}
}

static const char *level_name(int level)
{
	static const char *const names[] = { "err", "warning", "notice", "info", "debug" };

	return level >= LOGL_ERR && level <= LOGL_DEBUG ? names[level - LOGL_ERR] : "?";
}

/* Append "key (old -> new)" to out. */
static void diff_add(char *out, size_t outlen, int *n, const char *key,
		     const char *old, const char *next)
{
	size_t len = strlen(out);

	if (len < outlen)
		snprintf(out + len, outlen - len, "%s%s (%s -> %s)", *n ? ", " : "", key,
			 old, next);
	(*n)++;
}

static void join_endpoints(const struct server_cfg *sv, char *out, size_t outlen)
{
	size_t len = 0;

	out[0] = '\0';
	for (int i = 0; i < sv->n_endpoints && len < outlen; i++)
		len += (size_t)snprintf(out + len, outlen - len, "%s%s", i ? "," : "",
					sv->endpoints[i]);
}

void restart_keys_of(const config_t *cfg, struct restart_keys *k)
{
	memset(k, 0, sizeof(*k));
	join_endpoints(&cfg->server, k->endpoints, sizeof(k->endpoints));
	k->workers = cfg->server.workers;
	k->max_inflight = cfg->server.max_inflight;
	k->log_level = cfg->server.log_level;
}

int reload_unapplied(const struct restart_keys *a, const config_t *next,
		     char *out, size_t outlen)
{
	struct restart_keys b;
	char x[32], y[32];
	int n = 0;

	out[0] = '\0';
	restart_keys_of(next, &b);
	if (strcmp(a->endpoints, b.endpoints) != 0)
		diff_add(out, outlen, &n, "endpoint", a->endpoints, b.endpoints);
	if (a->workers != b.workers) {
		snprintf(x, sizeof(x), "%u", a->workers);
		snprintf(y, sizeof(y), "%u", b.workers);
		diff_add(out, outlen, &n, "workers", x, y);
	}
	if (a->max_inflight != b.max_inflight) {
		snprintf(x, sizeof(x), "%u", a->max_inflight);
		snprintf(y, sizeof(y), "%u", b.max_inflight);
		diff_add(out, outlen, &n, "max_inflight", x, y);
	}
	if (a->log_level != b.log_level)
		diff_add(out, outlen, &n, "log_level", level_name(a->log_level),
			 level_name(b.log_level));
	return n;
}
