/*
 * main.c — command line, start-up order and exit status.
 *
 *   config (exit 78 on any error, before anything is bound)
 *   → datasets, samplers, digest (engine; exit 78 on a bad dataset)
 *   → signals blocked in every thread, worker pool, ROUTER bound
 *   → serve until SIGTERM, then stop the pool and exit 0.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "batch.h"
#include "config.h"
#include "engine.h"
#include "log.h"
#include "pool.h"
#include "server.h"
#include "stats.h"
#include "wire.h"

#ifndef CUTMIXD_VERSION
#define CUTMIXD_VERSION "0.1.0"
#endif

#define EX_USAGE_ 64
#define EX_SOFTWARE_ 70
#define EX_CONFIG_ 78

static void usage(FILE *f)
{
	fprintf(f,
		"usage: cutmixd -c FILE [--set SECTION.KEY=VALUE]... [--check]\n"
		"       cutmixd stats ENDPOINT     print a running daemon's counters (JSON)\n"
		"       cutmixd --version | --help\n"
		"\n"
		"Serve augmented JPEG batches (Cutout, CutMix, MixUp, soft labels) over ZeroMQ.\n"
		"\n"
		"  -c, --config FILE   INI configuration (see config/default.ini)\n"
		"  -s, --set S.K=V     override one key, e.g. --set pipeline.train.batch_size=64\n"
		"      --check         validate the config and the datasets, print a summary, exit\n"
		"  -V, --version       print the version\n"
		"  -h, --help          this text\n"
		"\n"
		"Exit status: 0 ok, 64 usage, 78 bad config or dataset, 70 internal error.\n"
		"Signals: SIGTERM/SIGINT stop gracefully, SIGHUP reloads the config.\n");
}

static void print_summary(const engine_t *e)
{
	const config_t *cfg = e->cfg;

	printf("config ok: %s\n", cfg->path);
	printf("  digest %s\n", e->digest_hex);
	for (int d = 0; d < cfg->n_datasets; d++)
		printf("  dataset %-10s %u files, %u classes, root %s\n",
		       cfg->datasets[d].name, dataset_size(e->datasets[d]),
		       dataset_num_classes(e->datasets[d]), dataset_root(e->datasets[d]));
	for (int i = 0; i < cfg->n_pipelines; i++) {
		const struct pipeline_rt *rt = &e->pipelines[i];
		printf("  pipeline %-9s %s, batch %u, %ux%u, %u batches per epoch (world 1)\n",
		       rt->cfg->name, rt->cfg->eval ? "eval" : "train", rt->cfg->batch_size,
		       rt->cfg->size, rt->cfg->size, sampler_batches(rt->sampler, 1));
	}
}

/* `cutmixd stats ENDPOINT`: one STATS request, the JSON on stdout. */
static int cmd_stats(const char *endpoint)
{
	struct wire_request rq = { .version = WIRE_VERSION, .type = WIRE_STATS, .world = 1 };
	uint8_t buf[WIRE_REQUEST_SIZE];
	void *ctx = zmq_ctx_new();
	void *sock = ctx ? zmq_socket(ctx, ZMQ_DEALER) : NULL;
	int timeout = 5000, zero = 0, status = 1;

	if (!sock) {
		fprintf(stderr, "cutmixd stats: %s\n", zmq_strerror(errno));
		goto out;
	}
	zmq_setsockopt(sock, ZMQ_RCVTIMEO, &timeout, sizeof(timeout));
	zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof(zero));
	if (zmq_connect(sock, endpoint) < 0) {
		fprintf(stderr, "cutmixd stats: cannot connect to '%s': %s\n", endpoint, zmq_strerror(errno));
		goto out;
	}
	wire_encode_request(&rq, buf);
	zmq_send(sock, buf, sizeof(buf), 0);

	zmq_msg_t hdr, body;
	struct wire_reply rp;
	zmq_msg_init(&hdr);
	zmq_msg_init(&body);
	if (zmq_msg_recv(&hdr, sock, 0) < 0 || !zmq_msg_more(&hdr) ||
	    zmq_msg_recv(&body, sock, 0) < 0) {
		fprintf(stderr, "cutmixd stats: no reply from '%s' within %d s\n", endpoint, timeout / 1000);
	} else if (wire_decode_reply(zmq_msg_data(&hdr), zmq_msg_size(&hdr), &rp)) {
		fprintf(stderr, "cutmixd stats: '%s' did not answer in the cutmixd protocol\n", endpoint);
	} else if (rp.type == WIRE_ERROR) {
		fprintf(stderr, "cutmixd stats: %.*s\n", (int)zmq_msg_size(&body), (char *)zmq_msg_data(&body));
	} else {
		printf("%.*s\n", (int)zmq_msg_size(&body), (char *)zmq_msg_data(&body));
		status = 0;
	}
	zmq_msg_close(&hdr);
	zmq_msg_close(&body);
out:
	if (sock)
		zmq_close(sock);
	if (ctx)
		zmq_ctx_term(ctx);
	return status;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "set", required_argument, NULL, 's' },
		{ "check", no_argument, NULL, 'k' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL;
	char **sets = calloc((size_t)argc + 1, sizeof(*sets));
	int n_sets = 0, check = 0, opt, status = 0;
	char err[2048];
	config_t *cfg = NULL;
	engine_t *eng = NULL;
	pool_t *pool = NULL;
	server_t *srv = NULL;
	struct stats stats;

	if (!sets)
		return EX_SOFTWARE_;
	if (argc >= 2 && strcmp(argv[1], "stats") == 0) {
		free(sets);
		if (argc != 3) {
			fprintf(stderr, "usage: cutmixd stats ENDPOINT\n");
			return EX_USAGE_;
		}
		return cmd_stats(argv[2]);
	}
	while ((opt = getopt_long(argc, argv, "c:s:Vh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 's':
			sets[n_sets++] = optarg;
			break;
		case 'k':
			check = 1;
			break;
		case 'V':
			printf("cutmixd %s\n", CUTMIXD_VERSION);
			free(sets);
			return 0;
		case 'h':
			usage(stdout);
			free(sets);
			return 0;
		default:
			usage(stderr);
			free(sets);
			return EX_USAGE_;
		}
	}
	if (!path || optind != argc) {
		fprintf(stderr, "cutmixd: %s\n", path ? "unexpected argument" : "no config file: use -c FILE");
		usage(stderr);
		free(sets);
		return EX_USAGE_;
	}

	if (config_load(path, sets, n_sets, &cfg, err, sizeof(err))) {
		log_err("config: %s", err);
		status = EX_CONFIG_;
		goto out;
	}
	log_set_level((enum log_level)cfg->server.log_level);

	memset(&stats, 0, sizeof(stats));
	stats.started = stats_now();
	if (engine_new(&cfg, &stats, &eng, err, sizeof(err))) {
		log_err("config: %s", err);
		status = EX_CONFIG_;
		goto out;
	}
	if (check) {
		print_summary(eng);
		goto out;
	}

	/* Signals are read by the server through a signalfd: block them in
	 * this thread before any other starts, so every thread inherits it. */
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* Batch buffers are megabytes and short-lived: serve them from mmap
	 * so a freed batch goes back to the kernel at once, instead of
	 * lingering in per-thread heaps (glibc's dynamic threshold would move
	 * them there after the first free). Costs page faults, not copies. */
	mallopt(M_MMAP_THRESHOLD, 1 << 20);

	uint32_t workers = eng->cfg->server.workers;
	if (workers == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		workers = n > 0 ? (uint32_t)n : 1;
	}
	pool = pool_new(workers, batch_worker_new, batch_worker_free);
	if (!pool) {
		log_err("cannot start %u workers", workers);
		status = EX_SOFTWARE_;
		goto out;
	}
	struct server_opts so = { .config_path = path, .sets = sets, .n_sets = n_sets };
	srv = server_new(eng, pool, &stats, &so, err, sizeof(err));
	if (!srv) {
		log_err("server: %s", err);
		status = EX_SOFTWARE_;
		goto out;
	}
	status = server_run(srv);
	log_notice("stopped: %llu batches, %llu images served",
		   (unsigned long long)stats_get(&stats, batches),
		   (unsigned long long)stats_get(&stats, images));

out:
	pool_destroy(&pool);
	server_destroy(&srv);
	engine_unref(&eng);
	config_destroy(&cfg);
	free(sets);
	return status;
}
