/*
 * count_epoch.c — cutmixd-count: stream one epoch from a cutmixd daemon and
 * summarise it, or dump one batch's frames exactly as received.
 *
 *   cutmixd-count -e ENDPOINT[,ENDPOINT...] -p PIPELINE [-E epoch] [-r rank]
 *                 [-w world] [-W window] [-t timeout_ms] [-R resend_ms] [-v]
 *                 [--server-key KEY|FILE [--client-key FILE]] [--no-checksum]
 *   cutmixd-count -e ENDPOINT -p PIPELINE [-E epoch] [-r rank] [-w world]
 *                 --dump-batch K --out FILE
 *
 * The summary is one "key: value" line each: batches, images, seconds,
 * img_per_s, mixed (cutmix + mixup samples), cutmix, mixup, replaced,
 * padded, and checksum, the FNV-1a 64 hash of every image byte of the epoch
 * in batch order (the same on any daemon with the same config). With
 * several endpoints, one "served ENDPOINT: N batches, R resent" line per
 * daemon follows. -v adds a line per batch (with a hash of its body frames
 * and the daemon that served it; --sleep-ms slows the loop down, and an
 * endpoint may be dns+tcp://NAME:PORT, see cutmixd.h). --dump-batch writes the header,
 * images, labels and metadata frames of batch K, concatenated. CURVE:
 * --server-key is the daemons' public key (Z85, or a NAME.pub / NAME.key
 * file), --client-key this client's keypair file (NAME.key of `cutmixd
 * keygen`; without it a new keypair is made). --no-checksum skips the
 * checksum (and its line): the loop then only receives, for measuring the
 * transport. --help prints the usage to stdout, --version the version.
 * Exit status: 0 ok, 1 error, 64 bad usage (EX_USAGE, as every cutmixd
 * binary).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cutmixd.h"

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME  0x00000100000001b3ull
#define EX_USAGE_  64 /* sysexits.h */

struct opts {
	const char *endpoint;
	const char *pipeline;
	uint32_t epoch, rank, world, window;
	int timeout_ms, resend_ms;
	int discovery_ms;      /* 0: the library's default */
	int sleep_ms;          /* per batch: a slow trainer */
	const char *server_key, *client_key;
	bool verbose;
	bool no_checksum;
	bool dump;
	uint32_t dump_batch;
	const char *out;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: cutmixd-count -e ENDPOINT[,ENDPOINT...] -p PIPELINE [-E epoch] [-r rank]\n"
		"                     [-w world] [-W window] [-t timeout_ms] [-R resend_ms] [-v]\n"
		"                     [--server-key KEY|FILE [--client-key FILE]] [--no-checksum]\n"
		"                     [--discovery-interval MS] [--sleep-ms MS]\n"
		"       cutmixd-count -e ENDPOINT -p PIPELINE [-E epoch] [-r rank] [-w world]\n"
		"                     --dump-batch K --out FILE\n"
		"Streams one epoch (from one daemon or several) and prints batches, images,\n"
		"img/s, mixed and replaced samples and an FNV-1a 64 checksum of the image\n"
		"bytes; --dump-batch writes batch K's header, images, labels and metadata\n"
		"frames as received to FILE. --server-key (Z85 or key file) and --client-key\n"
		"(keypair file of `cutmixd keygen`) switch to CURVE. An ENDPOINT may be\n"
		"dns+tcp://NAME:PORT: every address of NAME is a daemon, NAME resolved again\n"
		"every --discovery-interval ms (10000). -v prints one line per batch with an\n"
		"FNV-1a 64 of its images, labels and metadata and the daemon that served it;\n"
		"--sleep-ms waits that long after each batch (a slow trainer).\n"
		"       cutmixd-count --version | --help\n"
		"Exit status: 0 ok, 1 error, 64 usage.\n");
}

static int parse_u32(const char *opt, const char *s, uint32_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v > UINT32_MAX) {
		fprintf(stderr, "cutmixd-count: %s: expected an integer 0..%u, got '%s'\n",
			opt, UINT32_MAX, s);
		return -EINVAL;
	}
	*out = (uint32_t)v;
	return 0;
}

static int check_opts(const struct opts *o);

/* ~90 lines: the option table and one case per option, kept side by side. */
static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longs[] = {
		{ "endpoint", required_argument, NULL, 'e' },
		{ "pipeline", required_argument, NULL, 'p' },
		{ "epoch", required_argument, NULL, 'E' },
		{ "rank", required_argument, NULL, 'r' },
		{ "world", required_argument, NULL, 'w' },
		{ "window", required_argument, NULL, 'W' },
		{ "timeout", required_argument, NULL, 't' },
		{ "resend-timeout", required_argument, NULL, 'R' },
		{ "server-key", required_argument, NULL, 'S' },
		{ "client-key", required_argument, NULL, 'K' },
		{ "no-checksum", no_argument, NULL, 'N' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "dump-batch", required_argument, NULL, 'D' },
		{ "out", required_argument, NULL, 'o' },
		{ "discovery-interval", required_argument, NULL, 'I' },
		{ "sleep-ms", required_argument, NULL, 'Z' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	uint32_t t;
	int ch;

	memset(o, 0, sizeof(*o));
	o->world = 1;
	o->timeout_ms = CUTMIXD_DEFAULT_TIMEOUT_MS;
	o->resend_ms = CUTMIXD_DEFAULT_RESEND_TIMEOUT_MS;
	while ((ch = getopt_long(argc, argv, "e:p:E:r:w:W:t:R:vhV", longs, NULL)) != -1) {
		switch (ch) {
		case 'e': o->endpoint = optarg; break;
		case 'p': o->pipeline = optarg; break;
		case 'E': if (parse_u32("-E", optarg, &o->epoch)) return -EINVAL; break;
		case 'r': if (parse_u32("-r", optarg, &o->rank)) return -EINVAL; break;
		case 'w': if (parse_u32("-w", optarg, &o->world)) return -EINVAL; break;
		case 'W': if (parse_u32("-W", optarg, &o->window)) return -EINVAL; break;
		case 't':
			if (parse_u32("-t", optarg, &t))
				return -EINVAL;
			if (t == 0 || t > INT32_MAX) {
				fprintf(stderr, "cutmixd-count: -t: must be 1..%d ms\n", INT32_MAX);
				return -EINVAL;
			}
			o->timeout_ms = (int)t;
			break;
		case 'R':
			if (parse_u32("-R", optarg, &t))
				return -EINVAL;
			if (t == 0 || t > INT32_MAX) {
				fprintf(stderr, "cutmixd-count: -R: must be 1..%d ms\n", INT32_MAX);
				return -EINVAL;
			}
			o->resend_ms = (int)t;
			break;
		case 'I':
		case 'Z':
			if (parse_u32(ch == 'I' ? "--discovery-interval" : "--sleep-ms", optarg, &t))
				return -EINVAL;
			if ((ch == 'I' && t == 0) || t > INT32_MAX) {
				fprintf(stderr, "cutmixd-count: %s: must be %d..%d ms\n",
					ch == 'I' ? "--discovery-interval" : "--sleep-ms", ch == 'I',
					INT32_MAX);
				return -EINVAL;
			}
			*(ch == 'I' ? &o->discovery_ms : &o->sleep_ms) = (int)t;
			break;
		case 'S': o->server_key = optarg; break;
		case 'K': o->client_key = optarg; break;
		case 'N': o->no_checksum = true; break;
		case 'v': o->verbose = true; break;
		case 'D':
			if (parse_u32("--dump-batch", optarg, &o->dump_batch))
				return -EINVAL;
			o->dump = true;
			break;
		case 'o': o->out = optarg; break;
		case 'h': usage(stdout); exit(0);
		case 'V': printf("cutmixd-count %s\n", cutmixd_version()); exit(0);
		default: return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "cutmixd-count: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	return check_opts(o);
}

/* Rules across options. 0 or -EINVAL (message printed). */
static int check_opts(const struct opts *o)
{
	if (!o->endpoint || !o->pipeline) {
		fprintf(stderr, "cutmixd-count: -e ENDPOINT and -p PIPELINE are required\n");
		return -EINVAL;
	}
	if (o->dump != (o->out != NULL)) {
		fprintf(stderr, "cutmixd-count: --dump-batch and --out go together\n");
		return -EINVAL;
	}
	if (o->client_key && !o->server_key) {
		fprintf(stderr, "cutmixd-count: --client-key needs --server-key\n");
		return -EINVAL;
	}
	if (o->world == 0 || o->rank >= o->world) {
		fprintf(stderr, "cutmixd-count: need world >= 1 and rank < world, got rank %u world %u\n",
			o->rank, o->world);
		return -EINVAL;
	}
	return 0;
}

static double seconds_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t fnv1a(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= FNV_PRIME;
	}
	return h;
}

static int dump_batch(cutmixd_client_t *c, const struct opts *o)
{
	cutmixd_batch_t *b = NULL;
	size_t total = 0;
	FILE *f;
	int rc;

	rc = cutmixd_client_get_batch(c, o->epoch, o->dump_batch, &b);
	if (rc < 0) {
		fprintf(stderr, "cutmixd-count: batch %u of epoch %u: %s\n", o->dump_batch,
			o->epoch, cutmixd_client_error(c));
		return rc;
	}
	f = fopen(o->out, "wb");
	if (!f) {
		rc = -errno;
		fprintf(stderr, "cutmixd-count: '%s': %s\n", o->out, strerror(errno));
		goto out_free;
	}
	for (unsigned i = 0; i < 4; i++) {
		size_t n;
		const void *p = cutmixd_batch_frame(b, i, &n);

		if (n && fwrite(p, 1, n, f) != n) {
			rc = -EIO;
			break;
		}
		total += n;
	}
	if (fclose(f) != 0 && rc == 0)
		rc = -errno;
	if (rc < 0) {
		fprintf(stderr, "cutmixd-count: '%s': write failed: %s\n", o->out, strerror(-rc));
		goto out_free;
	}
	printf("batch: %u\nepoch: %u\nimages: %u\nbytes: %zu\nout: %s\n",
	       cutmixd_batch_index(b), cutmixd_batch_epoch(b), cutmixd_batch_size(b),
	       total, o->out);
out_free:
	cutmixd_batch_free(&b);
	return rc;
}

/* -v: "batch K: N images[ (last)] fnv HASH from ENDPOINT", HASH the
 * FNV-1a 64 of the images, labels and metadata frames (the same bytes on
 * any daemon with the same config). */
static void print_batch(const cutmixd_client_t *c, const cutmixd_batch_t *b)
{
	struct cutmixd_peer_stats st;
	uint64_t h = FNV_OFFSET;

	for (unsigned i = 1; i < 4; i++) {
		size_t n;
		const void *p = cutmixd_batch_frame(b, i, &n);

		h = fnv1a(h, p, n);
	}
	if (cutmixd_client_peer_stats(c, (unsigned)cutmixd_batch_peer(b), &st) != 0)
		st.endpoint = "?";
	printf("batch %u: %u images%s fnv %016" PRIx64 " from %s\n", cutmixd_batch_index(b),
	       cutmixd_batch_size(b), cutmixd_batch_is_last(b) ? " (last)" : "", h, st.endpoint);
	fflush(stdout);
}

static int count_epoch(cutmixd_client_t *c, const struct opts *o)
{
	uint64_t batches = 0, images = 0, cutmix = 0, mixup = 0, replaced = 0, padded = 0;
	uint64_t hash = FNV_OFFSET;
	cutmixd_batch_t *b = NULL;
	double t0, dt;
	int rc;

	t0 = seconds_now();
	rc = cutmixd_client_epoch_begin(c, o->epoch, 0);
	if (rc < 0)
		goto out_err;
	while ((rc = cutmixd_client_epoch_next(c, &b)) == 1) {
		uint32_t n = cutmixd_batch_size(b);
		size_t bytes;
		const uint8_t *px = cutmixd_batch_images(b, &bytes);

		if (!o->no_checksum)
			hash = fnv1a(hash, px, bytes);
		for (uint32_t i = 0; i < n; i++) {
			struct cutmixd_meta m;

			cutmixd_batch_meta(b, i, &m);
			cutmix += m.op == CUTMIXD_OP_CUTMIX;
			mixup += m.op == CUTMIXD_OP_MIXUP;
			replaced += m.status == CUTMIXD_SAMPLE_REPLACED;
			padded += m.pad != 0;
		}
		if (o->verbose)
			print_batch(c, b);
		if (o->sleep_ms) {
			struct timespec ts = { o->sleep_ms / 1000, (o->sleep_ms % 1000) * 1000000L };

			nanosleep(&ts, NULL);
		}
		batches++;
		images += n;
		cutmixd_batch_free(&b);
	}
	if (rc < 0)
		goto out_err;
	dt = seconds_now() - t0;
	printf("batches: %" PRIu64 "\n", batches);
	printf("images: %" PRIu64 "\n", images);
	printf("seconds: %.3f\n", dt);
	printf("img_per_s: %.1f\n", dt > 0 ? (double)images / dt : 0.0);
	printf("mixed: %" PRIu64 "\n", cutmix + mixup);
	printf("cutmix: %" PRIu64 "\n", cutmix);
	printf("mixup: %" PRIu64 "\n", mixup);
	printf("replaced: %" PRIu64 "\n", replaced);
	printf("padded: %" PRIu64 "\n", padded);
	if (!o->no_checksum)
		printf("checksum: %016" PRIx64 "\n", hash);
	if (cutmixd_client_peer_count(c) > 1) {
		for (int i = 0; i < cutmixd_client_peer_count(c); i++) {
			struct cutmixd_peer_stats st;

			if (cutmixd_client_peer_stats(c, (unsigned)i, &st) == 0)
				printf("served %s: %" PRIu64 " batches, %" PRIu64 " resent\n",
				       st.endpoint, st.batches, st.resent);
		}
	}
	return 0;

out_err:
	fprintf(stderr, "cutmixd-count: epoch %u of '%s' at '%s': %s\n", o->epoch,
		o->pipeline, o->endpoint, cutmixd_client_error(c));
	return rc;
}

/* --server-key / --client-key: CURVE on every connection. 0 or -errno. */
static int setup_curve(cutmixd_client_t *c, const struct opts *o)
{
	char server[CUTMIXD_KEY_Z85_SIZE], pub[CUTMIXD_KEY_Z85_SIZE], sec[CUTMIXD_KEY_Z85_SIZE];
	char err[512];
	int rc;

	if (!o->server_key)
		return 0;
	if (strlen(o->server_key) == 40 && access(o->server_key, F_OK) != 0) {
		strcpy(server, o->server_key); /* a Z85 key given as such */
	} else {
		rc = cutmixd_load_keypair(o->server_key, server, NULL, err, sizeof(err));
		if (rc < 0) {
			fprintf(stderr, "cutmixd-count: --server-key: %s\n", err);
			return rc;
		}
	}
	if (o->client_key) {
		rc = cutmixd_load_keypair(o->client_key, pub, sec, err, sizeof(err));
		if (rc < 0) {
			fprintf(stderr, "cutmixd-count: --client-key: %s\n", err);
			return rc;
		}
	}
	rc = cutmixd_client_set_curve(c, server, o->client_key ? pub : NULL,
				      o->client_key ? sec : NULL);
	memset(sec, 0, sizeof(sec));
	if (rc < 0)
		fprintf(stderr, "cutmixd-count: %s\n", cutmixd_client_error(c));
	return rc;
}

int main(int argc, char **argv)
{
	cutmixd_client_t *c;
	struct opts o;
	int rc;

	if (parse_args(argc, argv, &o) < 0) {
		usage(stderr);
		return EX_USAGE_;
	}
	c = cutmixd_client_new(o.endpoint, o.pipeline, o.rank, o.world, o.window);
	if (!c) {
		fprintf(stderr, "cutmixd-count: cannot create client for '%s' pipeline '%s': %s\n",
			o.endpoint, o.pipeline, strerror(errno));
		return errno == EINVAL || errno == ENAMETOOLONG ? EX_USAGE_ : 1;
	}
	cutmixd_client_set_timeout(c, o.timeout_ms);
	cutmixd_client_set_resend_timeout(c, o.resend_ms);
	if (o.discovery_ms)
		cutmixd_client_set_discovery_interval(c, o.discovery_ms);
	rc = setup_curve(c, &o);
	if (rc == 0)
		rc = o.dump ? dump_batch(c, &o) : count_epoch(c, &o);
	cutmixd_client_destroy(&c);
	if (fflush(stdout) != 0)
		rc = -EIO;
	return rc < 0 ? 1 : 0;
}
