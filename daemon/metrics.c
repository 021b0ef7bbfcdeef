/*
 * metrics.c — see metrics.h.
 *
 * DESIGN
 * - libmicrohttpd runs its own thread (MHD_USE_INTERNAL_POLLING_THREAD,
 *   one thread polling every connection); answer() runs there. It renders
 *   the text from the atomics of struct stats (no lock) and from
 *   `snap`/`hist` under `lock`.
 * - `lock` guards `snap`, `hist[]` and `n_hist`; the server thread takes
 *   it for a copy or one histogram update (a few dozen instructions), the
 *   HTTP thread while it renders (microseconds). No other lock is taken
 *   while it is held.
 * - HTTP errors: a path other than /metrics gets 404, a method other than
 *   GET or HEAD gets 405 with Allow; bytes that are not HTTP get 400 from
 *   libmicrohttpd itself. Connections are capped (METRICS_MAX_CONN) and
 *   time out (METRICS_TIMEOUT_S), so a scraper that stalls cannot pile up.
 * - Histograms are cumulative from the start (Prometheus counts); a
 *   pipeline is a label value, kept once seen (at most METRICS_MAX_PL;
 *   the rest go to pipeline="(other)").
 */
#include "metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "wire.h"

#ifndef CUTMIXD_VERSION
#define CUTMIXD_VERSION "0.1.0"
#endif

#define METRICS_MAX_PL 64
#define METRICS_MAX_CONN 64
#define METRICS_TIMEOUT_S 10
#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Upper bounds in seconds (le), shared by both histograms: 0.5 ms .. 30 s
 * covers a cache hit, a small batch and a 256 x 224^2 float batch on one
 * slow core. */
static const double bounds[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
				 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30 };
#define NB ((int)(sizeof(bounds) / sizeof(bounds[0])))

struct histo {
	uint64_t bucket[NB];   /* not cumulative here; summed when rendered */
	uint64_t count;
	double sum;
};

struct pl_hist {
	char name[WIRE_PIPELINE_MAX + 1];
	struct histo wait, build;
};

struct metrics {
	struct MHD_Daemon *httpd;
	struct stats *st;
	char hostport[80];
	double start_unix;     /* process start, seconds since the epoch */

	pthread_mutex_t lock;
	struct metrics_gauges snap;
	struct pl_hist hist[METRICS_MAX_PL + 1]; /* +1: "(other)" */
	int n_hist;
};

/* ---- server side ------------------------------------------------------ */

static struct pl_hist *hist_for(metrics_t *m, const char *pipeline)
{
	for (int i = 0; i < m->n_hist; i++)
		if (!strncmp(m->hist[i].name, pipeline, WIRE_PIPELINE_MAX))
			return &m->hist[i];
	struct pl_hist *h = &m->hist[m->n_hist < METRICS_MAX_PL ? m->n_hist : METRICS_MAX_PL];
	if (m->n_hist < METRICS_MAX_PL) {
		m->n_hist++;
		snprintf(h->name, sizeof(h->name), "%.*s", WIRE_PIPELINE_MAX, pipeline);
	} else {
		snprintf(h->name, sizeof(h->name), "(other)");
	}
	return h;
}

static void observe(struct histo *h, double v)
{
	int i = 0;

	if (!(v >= 0)) /* NaN or a clock step */
		v = 0;
	while (i < NB && v > bounds[i])
		i++;
	if (i < NB)
		h->bucket[i]++;
	h->count++;
	h->sum += v;
}

void metrics_observe_wait(metrics_t *m, const char *pipeline, double seconds)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	observe(&hist_for(m, pipeline)->wait, seconds);
	pthread_mutex_unlock(&m->lock);
}

void metrics_observe_build(metrics_t *m, const char *pipeline, double seconds)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	observe(&hist_for(m, pipeline)->build, seconds);
	pthread_mutex_unlock(&m->lock);
}

void metrics_gauges(metrics_t *m, const struct metrics_gauges *g)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	m->snap = *g;
	pthread_mutex_unlock(&m->lock);
}

/* ---- rendering (HTTP thread) ------------------------------------------ */

static void family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void counter(FILE *f, const char *name, const char *help, uint64_t v)
{
	family(f, name, "counter", help);
	fprintf(f, "%s %llu\n", name, (unsigned long long)v);
}

static void gauge(FILE *f, const char *name, const char *help, double v)
{
	family(f, name, "gauge", help);
	fprintf(f, "%s %.17g\n", name, v);
}

/* A label value: \, " and newline escaped (exposition format). */
static void label_value(FILE *f, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			fprintf(f, "\\%c", *v);
		else if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
}

static void histogram(FILE *f, const char *name, const char *help,
		      const struct pl_hist *h, int n, bool build)
{
	family(f, name, "histogram", help);
	for (int p = 0; p < n; p++) {
		const struct histo *x = build ? &h[p].build : &h[p].wait;
		uint64_t cum = 0;

		for (int i = 0; i <= NB; i++) {
			cum += i < NB ? x->bucket[i] : 0;
			fprintf(f, "%s_bucket{pipeline=\"", name);
			label_value(f, h[p].name);
			if (i < NB)
				fprintf(f, "\",le=\"%g\"} %llu\n", bounds[i], (unsigned long long)cum);
			else
				fprintf(f, "\",le=\"+Inf\"} %llu\n", (unsigned long long)x->count);
		}
		fprintf(f, "%s_sum{pipeline=\"", name);
		label_value(f, h[p].name);
		fprintf(f, "\"} %.17g\n%s_count{pipeline=\"", x->sum, name);
		label_value(f, h[p].name);
		fprintf(f, "\"} %llu\n", (unsigned long long)x->count);
	}
}

static void render_counters(FILE *f, const struct stats *st)
{
	counter(f, "cutmixd_requests_total", "Request frames received.", stats_get(st, requests));
	counter(f, "cutmixd_bad_requests_total", "Requests answered with an error.",
		stats_get(st, bad_requests));
	counter(f, "cutmixd_dropped_requests_total",
		"Requests dropped from clients that do not read their replies.",
		stats_get(st, dropped));
	counter(f, "cutmixd_batches_total", "Batch replies sent.", stats_get(st, batches));
	counter(f, "cutmixd_images_total", "Samples in the batch replies sent.",
		stats_get(st, images));
	counter(f, "cutmixd_sent_bytes_total", "Body bytes of the batch replies sent.",
		stats_get(st, bytes_sent));
	counter(f, "cutmixd_decode_errors_total", "Failed decode attempts.",
		stats_get(st, decode_errors));
	counter(f, "cutmixd_replaced_samples_total",
		"Samples filled by a replacement after a decode error.", stats_get(st, replaced));
	counter(f, "cutmixd_cache_hits_total",
		"Batch requests answered from the batch cache.", stats_get(st, cache_hits));
	counter(f, "cutmixd_cache_misses_total",
		"Batch requests computed while the batch cache is on.", stats_get(st, cache_misses));
	counter(f, "cutmixd_shm_batches_total",
		"Batch replies written into a client's shared memory.", stats_get(st, shm_batches));
	counter(f, "cutmixd_shm_fallbacks_total",
		"Batch requests that asked for shared memory and were copied (no free slot, unknown session).",
		stats_get(st, shm_fallbacks));
	counter(f, "cutmixd_shm_bad_releases_total",
		"Shared-memory releases naming no slot the client holds (ignored).",
		stats_get(st, shm_bad_releases));
}

static char *render(metrics_t *m, size_t *len)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, len);
	struct metrics_gauges g;
	struct pl_hist *h;
	int n;

	if (!f)
		return NULL;
	h = malloc(sizeof(m->hist));
	if (!h) {
		fclose(f);
		free(buf);
		return NULL;
	}
	pthread_mutex_lock(&m->lock);
	g = m->snap;
	n = m->n_hist + (m->hist[METRICS_MAX_PL].wait.count || m->hist[METRICS_MAX_PL].build.count);
	memcpy(h, m->hist, sizeof(m->hist));
	if (n > m->n_hist)
		h[m->n_hist] = m->hist[METRICS_MAX_PL];
	pthread_mutex_unlock(&m->lock);

	family(f, "cutmixd_build_info", "gauge", "Always 1; the version is a label.");
	fprintf(f, "cutmixd_build_info{version=\"%s\"} 1\n", CUTMIXD_VERSION);
	family(f, "cutmixd_config_info", "gauge",
	       "Always 1; the config digest of the serving generation is a label.");
	fprintf(f, "cutmixd_config_info{digest=\"%s\"} 1\n", g.digest_hex);
	render_counters(f, m->st);
	gauge(f, "cutmixd_bad_files", "Distinct files that failed in this config generation.",
	      (double)stats_get(m->st, bad_files));
	gauge(f, "cutmixd_clients", "Clients known to the daemon.", g.clients);
	gauge(f, "cutmixd_pending_requests", "Batch requests waiting for a worker.", g.pending);
	gauge(f, "cutmixd_inflight_batches", "Batches being computed.", g.inflight);
	gauge(f, "cutmixd_unsent_replies", "Replies waiting for a client to read.", g.unsent);
	gauge(f, "cutmixd_queue_depth", "Tasks queued or running in the worker pool.",
	      g.queue_depth);
	gauge(f, "cutmixd_workers", "Worker threads.", g.workers);
	gauge(f, "cutmixd_cache_bytes", "Bytes held by the batch cache.",
	      (double)stats_get(m->st, cache_bytes));
	gauge(f, "cutmixd_cache_entries", "Batches held by the batch cache.",
	      (double)stats_get(m->st, cache_entries));
	gauge(f, "cutmixd_cache_limit_bytes", "Budget of the batch cache (0: off).",
	      (double)g.cache_limit_bytes);
	gauge(f, "cutmixd_shm_sessions", "Open shared-memory sessions.",
	      (double)stats_get(m->st, shm_sessions));
	gauge(f, "cutmixd_shm_bytes", "Bytes of the shared-memory sessions.",
	      (double)stats_get(m->st, shm_bytes));
	gauge(f, "process_resident_memory_bytes", "Resident memory size in bytes.",
	      (double)stats_rss_bytes());
	gauge(f, "process_start_time_seconds",
	      "Start time of the process since unix epoch in seconds.", m->start_unix);
	histogram(f, "cutmixd_request_wait_seconds",
		  "Time a batch request waited in the daemon's queue before a worker or the cache took it.",
		  h, n, false);
	histogram(f, "cutmixd_batch_build_seconds",
		  "Time to build one batch on the workers (read, decode, augment, assemble).",
		  h, n, true);
	free(h);
	if (fclose(f)) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* ---- HTTP ------------------------------------------------------------- */

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned code,
				 const char *text, const char *allow)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), (void *)text,
								 MHD_RESPMEM_PERSISTENT);
	enum MHD_Result rc;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
	if (allow)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
	rc = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
			      const char *method, const char *version,
			      const char *upload, size_t *upload_size, void **state)
{
	metrics_t *m = cls;
	struct MHD_Response *r;
	enum MHD_Result rc;
	size_t len = 0;
	char *text;

	(void)version;
	(void)upload;
	(void)state;
	if (strcmp(url, "/metrics") != 0)
		return send_text(c, MHD_HTTP_NOT_FOUND,
				 "not found: cutmixd serves its metrics at /metrics\n", NULL);
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
		*upload_size = 0; /* a body is not read: the connection closes */
		return send_text(c, MHD_HTTP_METHOD_NOT_ALLOWED,
				 "method not allowed: /metrics takes GET or HEAD\n", "GET, HEAD");
	}
	text = render(m, &len);
	if (!text)
		return send_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
				 "out of memory rendering the metrics\n", NULL);
	r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, CONTENT_TYPE);
	rc = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return rc;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];
	size_t n;

	(void)cls;
	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	while (n && line[n - 1] == '\n')
		line[--n] = '\0';
	log_debug("metrics: %s", line); /* bad requests, timeouts: per peer */
}

/* Fill *sa from a checked HOST:PORT. */
static int parse_addr(const char *hp, struct sockaddr_storage *sa, bool *v6)
{
	const char *colon = strrchr(hp, ':');
	char host[64];
	size_t hl = colon ? (size_t)(colon - hp) : 0;
	long port = colon ? strtol(colon + 1, NULL, 10) : 0;

	memset(sa, 0, sizeof(*sa));
	if (!colon || hl >= sizeof(host) || port < 1 || port > 65535)
		return -EINVAL;
	*v6 = hp[0] == '[';
	if (*v6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;

		if (hl < 3)
			return -EINVAL;
		memcpy(host, hp + 1, hl - 2);
		host[hl - 2] = '\0';
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		return inet_pton(AF_INET6, host, &s6->sin6_addr) == 1 ? 0 : -EINVAL;
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
	memcpy(host, hp, hl);
	host[hl] = '\0';
	s4->sin_family = AF_INET;
	s4->sin_port = htons((uint16_t)port);
	if (!strcmp(host, "localhost"))
		strcpy(host, "127.0.0.1");
	return inet_pton(AF_INET, host, &s4->sin_addr) == 1 ? 0 : -EINVAL;
}

int metrics_bindcheck(const char *hostport, char *err, size_t errlen)
{
	struct sockaddr_storage sa;
	bool v6 = false;
	int fd, one = 1, rc = 0;

	if (!hostport || parse_addr(hostport, &sa, &v6)) {
		snprintf(err, errlen, "[server] metrics '%s': cannot bind: not HOST:PORT",
			 hostport ? hostport : "(null)");
		return -EINVAL;
	}
	fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "[server] metrics '%s': cannot create a socket: %s",
			 hostport, strerror(errno));
		return rc;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, v6 ? sizeof(struct sockaddr_in6) :
		 sizeof(struct sockaddr_in)) != 0 || listen(fd, 1) != 0) {
		rc = -errno;
		snprintf(err, errlen, "[server] metrics '%s': cannot bind: %s%s", hostport,
			 strerror(errno), errno == EADDRINUSE ?
			 " (another process listens there; change [server] metrics)" : "");
	}
	close(fd);
	return rc;
}

metrics_t *metrics_new(const char *hostport, struct stats *st, char *err, size_t errlen)
{
	struct sockaddr_storage sa;
	struct timespec now;
	bool v6 = false;
	metrics_t *m;

	if (!hostport || parse_addr(hostport, &sa, &v6)) {
		snprintf(err, errlen, "metrics: cannot listen on '%s': not HOST:PORT",
			 hostport ? hostport : "(null)");
		return NULL;
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	m->st = st;
	snprintf(m->hostport, sizeof(m->hostport), "%s", hostport);
	clock_gettime(CLOCK_REALTIME, &now);
	m->start_unix = (double)now.tv_sec + (double)now.tv_nsec * 1e-9 -
			(stats_now() - st->started);
	pthread_mutex_init(&m->lock, NULL);
	errno = 0;
	m->httpd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO |
				    MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0),
				    0, NULL, NULL, answer, m,
				    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
				    MHD_OPTION_CONNECTION_LIMIT, (unsigned)METRICS_MAX_CONN,
				    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)METRICS_TIMEOUT_S,
				    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32768,
				    MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
				    MHD_OPTION_END);
	if (!m->httpd) {
		snprintf(err, errlen, "metrics: cannot listen on '%s': %s", hostport,
			 errno ? strerror(errno) : "libmicrohttpd could not start");
		metrics_destroy(&m);
		return NULL;
	}
	log_notice("metrics: serving Prometheus metrics at http://%s/metrics", hostport);
	return m;
}

void metrics_destroy(metrics_t **mp)
{
	metrics_t *m = mp ? *mp : NULL;

	if (!m)
		return;
	if (m->httpd)
		MHD_stop_daemon(m->httpd);
	pthread_mutex_destroy(&m->lock);
	free(m);
	*mp = NULL;
}
