/*
 * main.c — command line, start-up order and exit status.
 *
 *   config (exit 78 on any error, before anything is bound)
 *   → [security] key files (exit 78 on a bad one)
 *   → datasets, samplers, digest (engine; exit 78 on a bad dataset)
 *   → signals blocked in every thread, worker pool, ROUTER bound
 *   → serve until SIGTERM, then tear down in the order written in teardown()
 *     (pool, server with its ZeroMQ context, engine) and exit 0.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <dirent.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <zmq.h>

#include "batch.h"
#include "bindcheck.h"
#include "config.h"
#include "engine.h"
#include "keys.h"
#include "log.h"
#include "pack.h"
#include "pool.h"
#include "preflight.h"
#include "server.h"
#include "stats.h"
#include "wire.h"

#ifndef CUTMIXD_VERSION /* -DCUTMIXD_VERSION=\"$(cat VERSION)\" from the Makefile */
#error "CUTMIXD_VERSION is not defined: build with the Makefile (it comes from the file VERSION)"
#endif

#define EX_USAGE_ 64
#define EX_SOFTWARE_ 70
#define EX_CONFIG_ 78

/* Free file descriptors below which the daemon refuses to start: libzmq
 * needs about a dozen for its context, threads and the bound endpoints,
 * and aborts (an assertion) when it gets none; the rest is room for
 * clients and dataset files. */
#define MIN_FREE_FDS 32

/*
 * Raise the soft RLIMIT_NOFILE to the hard limit (every client connection
 * and every open image is a descriptor; libzmq 4.3 aborts when accept()
 * finds none), then check that enough are free. Returns 0, or -EMFILE
 * with a message.
 */
static int fd_budget(char *err, size_t errlen)
{
	struct rlimit rl;
	long open_fds = 0;
	DIR *d;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rlim_t was = rl.rlim_cur;
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
			log_info("file descriptor limit raised from %llu to the hard limit %llu",
				 (unsigned long long)was, (unsigned long long)rl.rlim_max);
		else
			getrlimit(RLIMIT_NOFILE, &rl);
	}
	d = opendir("/proc/self/fd");
	if (d) {
		while (readdir(d))
			open_fds++;
		closedir(d);
		open_fds -= 3; /* ".", ".." and the listing itself */
	}
	if (rl.rlim_cur != RLIM_INFINITY && (long long)rl.rlim_cur - open_fds < MIN_FREE_FDS) {
		snprintf(err, errlen, "too few file descriptors: RLIMIT_NOFILE is %llu with %ld "
			 "open, and cutmixd needs at least %d free (raise 'ulimit -n' or the "
			 "unit's LimitNOFILE)", (unsigned long long)rl.rlim_cur, open_fds,
			 MIN_FREE_FDS);
		return -EMFILE;
	}
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: cutmixd -c FILE [--set SECTION.KEY=VALUE]... [--check]\n"
		"       cutmixd stats [--key NAME.key --server-key SERVER.pub] ENDPOINT\n"
		"                                  print a running daemon's counters (JSON)\n"
		"       cutmixd keygen NAME        write a CURVE key pair: NAME.key (secret,\n"
		"                                  mode 0600) and NAME.pub (public)\n"
		"       cutmixd pack -c FILE [--dataset NAME] [--shard-bytes N] OUTDIR\n"
		"                                  rewrite a dataset as a pack (docs/CONFIG.md)\n"
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
		"Exit status: 0 ok, 64 usage, 78 bad config, key file or dataset, 70 internal\n"
		"error; stats and keygen: 1 when they fail.\n"
		"Signals: SIGTERM/SIGINT stop gracefully, SIGHUP reloads the config.\n");
}

static void print_summary(const engine_t *e, const struct server_keys *k)
{
	const config_t *cfg = engine_config(e);

	printf("config ok: %s\n", cfg->path);
	printf("  digest %s\n", engine_digest_hex(e));
	if (k->curve)
		printf("  security CURVE, server public key %s, %zu authorized client keys\n",
		       k->public_key, keys_count(k->authorized));
	else
		printf("  security none (no [security]: clients are not authenticated)\n");
	for (int d = 0; d < cfg->n_datasets; d++)
		printf("  dataset %-10s %u files, %u classes, root %s\n",
		       cfg->datasets[d].name, dataset_size(engine_dataset(e, d)),
		       dataset_num_classes(engine_dataset(e, d)), dataset_root(engine_dataset(e, d)));
	for (int d = 0; d < cfg->n_datasets; d++)
		printf("  dataset %-10s index memory %zu bytes\n", cfg->datasets[d].name,
		       dataset_memory(engine_dataset(e, d)));
	for (int d = 0; d < cfg->n_datasets; d++) {
		const char *sp;
		uint64_t ns = dataset_skipped(engine_dataset(e, d));
		uint32_t j = 0;

		if (ns)
			printf("  dataset %-10s skipped %llu files (not .jpg .jpeg .png .webp):\n",
			       cfg->datasets[d].name, (unsigned long long)ns);
		for (; (sp = dataset_skipped_path(engine_dataset(e, d), j)); j++)
			printf("    skipped %s\n", sp);
		if (ns > j)
			printf("    ... and %llu more\n", (unsigned long long)(ns - j));
	}
	for (int i = 0; i < cfg->n_pipelines; i++) {
		const struct pipeline_rt *rt = engine_pipeline(e, i);
		printf("  pipeline %-9s %s, batch %u, %ux%u, %u batches per epoch (world 1)\n",
		       rt->cfg->name, rt->cfg->eval ? "eval" : "train", rt->cfg->batch_size,
		       rt->cfg->size, rt->cfg->size, sampler_batches(rt->sampler, 1));
	}
}

static const char stats_usage[] =
	"usage: cutmixd stats [--key NAME.key --server-key SERVER.pub] ENDPOINT\n"
	"Print a running daemon's counters (JSON). Exit status: 0 ok, 1 failed, 64 usage.\n";
static const char keygen_usage[] =
	"usage: cutmixd keygen NAME   (writes NAME.key and NAME.pub)\n"
	"Exit status: 0 ok, 1 failed (a file exists, cannot write), 64 usage.\n";

/* The convention of every binary: --help prints usage to stdout and exits
 * 0, --version prints the version; a usage error exits 64. For `cutmixd
 * stats|keygen --help|--version`: the exit status, or -1 for other
 * arguments. */
static int sub_help(int argc, char **argv, const char *text)
{
	if (argc < 3)
		return -1;
	if (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h")) {
		fputs(text, stdout);
		return 0;
	}
	if (!strcmp(argv[2], "--version") || !strcmp(argv[2], "-V")) {
		printf("cutmixd %s\n", CUTMIXD_VERSION);
		return 0;
	}
	return -1;
}

/* `cutmixd keygen NAME`: NAME.key and NAME.pub, never overwritten. */
static int cmd_keygen(int argc, char **argv)
{
	char pub[KEYS_Z85_LEN + 1], err[1024];
	int rc = sub_help(argc, argv, keygen_usage);

	if (rc >= 0)
		return rc;
	if (argc != 3 || argv[2][0] == '-') {
		fputs(keygen_usage, stderr);
		return EX_USAGE_;
	}
	if (keys_write_pair(argv[2], pub, err, sizeof(err))) {
		fprintf(stderr, "cutmixd keygen: %s\n", err);
		return 1;
	}
	printf("wrote %s.key (key pair: keep it secret) and %s.pub (public key)\n"
	       "public key %s\n", argv[2], argv[2], pub);
	return 0;
}

/* The CURVE keys `cutmixd stats` connects with: the client's key pair
 * file, and the server's public key (a .pub file or the key itself). */
struct stats_keys {
	char secret[KEYS_Z85_LEN + 1], public_key[KEYS_Z85_LEN + 1];
	char server[KEYS_Z85_LEN + 1];
};

static int stats_load_keys(const char *key_file, const char *server_key,
			   struct stats_keys *k)
{
	char err[1024];

	if (keys_load_secret(key_file, k->secret, k->public_key, err, sizeof(err))) {
		fprintf(stderr, "cutmixd stats: %s\n", err);
		return -1;
	}
	if (keys_parse_z85(server_key, strlen(server_key), NULL) && access(server_key, F_OK) != 0) {
		memcpy(k->server, server_key, sizeof(k->server));
		return 0;
	}
	if (keys_load_public(server_key, k->server, err, sizeof(err))) {
		fprintf(stderr, "cutmixd stats: %s\n", err);
		return -1;
	}
	return 0;
}

/* `cutmixd stats ENDPOINT`: one STATS request, the JSON on stdout. */
static int cmd_stats(const char *endpoint, const struct stats_keys *keys)
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
	if (keys && (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, keys->server, KEYS_Z85_LEN + 1) ||
		     zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, keys->public_key, KEYS_Z85_LEN + 1) ||
		     zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, keys->secret, KEYS_Z85_LEN + 1))) {
		fprintf(stderr, "cutmixd stats: cannot use CURVE: %s\n", zmq_strerror(errno));
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
		fprintf(stderr, "cutmixd stats: no reply from '%s' within %d s%s\n", endpoint, timeout / 1000,
			keys ? " (a daemon that does not know this client key answers nothing)"
			     : " (a daemon with [security] answers only CURVE clients: --key, --server-key)");
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

/* `cutmixd stats [--key K --server-key S] ENDPOINT`: parse, load the
 * keys, ask. */
static int stats_main(int argc, char **argv)
{
	const char *key_file = NULL, *server_key = NULL, *endpoint = NULL;
	struct stats_keys sk;
	int i, rc;

	rc = sub_help(argc, argv, stats_usage);
	if (rc >= 0)
		return rc;
	for (i = 2; i + 1 < argc && argv[i][0] == '-'; i += 2) {
		if (!strcmp(argv[i], "--key"))
			key_file = argv[i + 1];
		else if (!strcmp(argv[i], "--server-key"))
			server_key = argv[i + 1];
		else
			break;
	}
	if (i + 1 == argc && argv[i][0] != '-')
		endpoint = argv[i];
	if (!endpoint || !key_file != !server_key) {
		fputs(stats_usage, stderr);
		return EX_USAGE_;
	}
	if (!key_file)
		return cmd_stats(endpoint, NULL);
	memset(&sk, 0, sizeof(sk));
	rc = stats_load_keys(key_file, server_key, &sk) ? 1 : cmd_stats(endpoint, &sk);
	explicit_bzero(&sk, sizeof(sk));
	return rc;
}

/* `cutmixd stats|keygen|pack ...`: the exit status, or -1 when argv[1]
 * names no subcommand (the daemon itself runs). */
static int subcommand(int argc, char **argv)
{
	if (argc < 2)
		return -1;
	if (strcmp(argv[1], "stats") == 0)
		return stats_main(argc, argv);
	if (strcmp(argv[1], "keygen") == 0)
		return cmd_keygen(argc, argv);
	if (strcmp(argv[1], "pack") == 0) {
		int hrc = sub_help(argc, argv, pack_usage_text);

		return hrc >= 0 ? hrc : pack_main(argc, argv);
	}
	return -1;
}

/* The daemon's command line: -c FILE, --set (kept in order), --check. */
struct cli {
	const char *path;
	char **sets; /* argc + 1 slots, owned */
	int n_sets;
	int check;
};

/* Parse the daemon's options into *c: -1 to go on, or the exit status
 * (--help, --version, a usage error). */
static int parse_args(int argc, char **argv, struct cli *c)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "set", required_argument, NULL, 's' },
		{ "check", no_argument, NULL, 'k' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	while ((opt = getopt_long(argc, argv, "c:s:Vh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			c->path = optarg;
			break;
		case 's':
			c->sets[c->n_sets++] = optarg;
			break;
		case 'k':
			c->check = 1;
			break;
		case 'V':
			printf("cutmixd %s\n", CUTMIXD_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EX_USAGE_;
		}
	}
	if (!c->path || optind != argc) {
		fprintf(stderr, "cutmixd: %s\n", c->path ? "unexpected argument" : "no config file: use -c FILE");
		usage(stderr);
		return EX_USAGE_;
	}
	return -1;
}

/* What the daemon holds while it runs; torn down by teardown(). */
struct daemon {
	config_t *cfg;
	engine_t *eng;
	pool_t *pool;
	server_t *srv;
	struct stats stats;
	struct server_keys keys;
};

/* Descriptors, config, keys, engine: -1 to go on serving, or the exit
 * status (--check ends here with the summary). */
static int load(const struct cli *c, struct daemon *d)
{
	char err[2048];

	if (fd_budget(err, sizeof(err))) {
		log_err("%s", err);
		return EX_SOFTWARE_;
	}
	if (config_load(c->path, c->sets, c->n_sets, &d->cfg, err, sizeof(err))) {
		log_err("config: %s", err);
		return EX_CONFIG_;
	}
	log_set_level((enum log_level)d->cfg->server.log_level);
	if (server_keys_load(d->cfg, &d->keys, err, sizeof(err))) {
		log_err("config: %s", err);
		return EX_CONFIG_;
	}
	memset(&d->stats, 0, sizeof(d->stats));
	d->stats.started = stats_now();
	if (engine_new(&d->cfg, &d->stats, &d->eng, err, sizeof(err))) {
		log_err("config: %s", err);
		return EX_CONFIG_;
	}
	if (c->check) {
		/* the endpoints too: bound and released (bindcheck.h) */
		if (bindcheck_endpoints(&engine_config(d->eng)->server, err, sizeof(err))) {
			log_err("check: %s", err);
			return EX_SOFTWARE_;
		}
		print_summary(d->eng, &d->keys);
		return 0;
	}
	return -1;
}

/* Signals, allocator, worker pool, ROUTER bound: 0, or the exit status. */
static int start(const struct cli *c, struct daemon *d)
{
	char err[2048];

	/* Before any other thread starts (preflight.h). */
	preflight_block_signals();

	/* A batch's images (the uint8 pixels and any float or NCHW copy)
	 * come from bufpool, its own recycled mmaps. The other large,
	 * short-lived buffers are malloc'ed (a batch's soft labels, which
	 * grow with num_classes, and a decoder's buffers after a huge
	 * image): serve those of 1 MiB and more from mmap so a freed one
	 * goes back to the kernel at once, instead of lingering in
	 * per-thread heaps (glibc's dynamic threshold would move them there
	 * after the first free). Costs page faults, not copies. */
	mallopt(M_MMAP_THRESHOLD, 1 << 20);

	uint32_t workers = engine_config(d->eng)->server.workers; /* config resolved 0 */
	d->pool = pool_new(workers, batch_worker_new, batch_worker_free);
	if (!d->pool) {
		log_err("cannot start %u workers", workers);
		return EX_SOFTWARE_;
	}
	struct server_opts so = { .config_path = c->path, .sets = c->sets, .n_sets = c->n_sets,
				  .keys = &d->keys };
	d->srv = server_new(d->eng, d->pool, &d->stats, &so, err, sizeof(err));
	server_keys_clear(&d->keys); /* the secret is in ZeroMQ now */
	if (!d->srv) {
		log_err("server: %s", err);
		return EX_SOFTWARE_;
	}
	return 0;
}

/* Serve until SIGTERM: the exit status. */
static int serve(struct daemon *d)
{
	int status = server_run(d->srv);

	log_notice("stopped: %llu batches, %llu images served",
		   (unsigned long long)stats_get(&d->stats, batches),
		   (unsigned long long)stats_get(&d->stats, images));
	return status;
}

static void teardown(struct daemon *d)
{
	/*
	 * Teardown order, relied on (every destructor is NULL-safe, so an
	 * early return from load() or start() runs the same steps on what
	 * exists):
	 * 1. pool_destroy: runs every batch still queued to its done step,
	 *    which hands it to the server (batch_complete: the server's
	 *    `done` list under `done_lock`, then its eventfd), and joins the
	 *    workers. After it no thread but this one touches the server,
	 *    so it must come before server_destroy, which frees that list,
	 *    closes the eventfd and destroys the lock.
	 * 2. server_destroy: joins the metrics HTTP thread, frees the
	 *    batches never sent (each drops its engine reference), the
	 *    replies ZeroMQ refused and the batch cache's table, closes the
	 *    sockets, then zmq_ctx_term, which waits up to the ROUTER's
	 *    ZMQ_LINGER (500 ms) to deliver queued replies. Frames still
	 *    held by ZeroMQ messages (cached ones are reference counted)
	 *    are released on ZeroMQ's threads before it returns, into
	 *    bufpool or free(): bufpool is process-wide and never torn
	 *    down, so that is safe. Then it drops its own engine reference
	 *    (after a SIGHUP, the newest generation).
	 * 3. engine_unref: this function's reference to the first
	 *    generation, the last one once the pool and the server are gone.
	 *    Batches and the server read the engine's config, datasets and
	 *    samplers, so the engine goes after both.
	 * cfg is NULL here unless engine_new was never reached (it takes
	 * the config); the keys are cleared again for the early exits.
	 */
	pool_destroy(&d->pool);
	server_destroy(&d->srv);
	engine_unref(&d->eng);
	config_destroy(&d->cfg);
	server_keys_clear(&d->keys);
}

int main(int argc, char **argv)
{
	struct cli c = { 0 };
	struct daemon d;
	int status = subcommand(argc, argv);

	if (status >= 0)
		return status;
	c.sets = calloc((size_t)argc + 1, sizeof(*c.sets));
	if (!c.sets)
		return EX_SOFTWARE_;
	status = parse_args(argc, argv, &c);
	if (status >= 0) {
		free(c.sets);
		return status;
	}
	memset(&d, 0, sizeof(d));
	status = load(&c, &d);
	if (status < 0)
		status = start(&c, &d);
	if (status == 0 && !c.check)
		status = serve(&d);
	teardown(&d);
	free(c.sets); /* after the server, which kept a pointer to it */
	return status;
}
