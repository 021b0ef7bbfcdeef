/*
 * pack.c — write (`cutmixd pack`) and load the pack format (pack.h).
 *
 * No threads: the writer is a one-shot command on one thread; the loader
 * runs where dataset_open() runs and hands a read-only location table to
 * the workers (shards.h).
 *
 * Lossless transcoding is libjpeg's jpeg_read_coefficients() ->
 * jpeg_copy_critical_parameters() -> jpeg_write_coefficients(), what
 * jpegtran does: the quantized DCT coefficients are copied, only their
 * entropy coding changes. Each transcoded file is decoded next to its
 * source with the daemon's own decoder and every pixel compared; a file
 * that does not come out identical is stored as is.
 */
#include "pack.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>


#include "dataset.h"
#include "decode.h"
#include "errbuf.h"
#include "imgfmt.h"
#include "shards.h"
#include "source.h"
#include "splice.h"

#define PACK_MAGIC   "CMXPACK1"
#define PACK_VERSION 1u
#define PACK_INDEX   "index.cmxpack"
#define DEFAULT_SHARD_BYTES (1ull << 30)

struct pack_hdr {
	char magic[8];
	uint32_t version, n_shards;
	uint64_t n_samples;
	uint32_t n_classes, flags;
	uint64_t names_bytes, class_bytes, n_segments;
};

struct pack_rec {
	uint32_t shard, kind;
	uint64_t off;
	uint32_t size;
	int32_t label;
	uint64_t name_off, first_seg;
	uint32_t n_segs, src_size;
};

_Static_assert(sizeof(struct pack_hdr) == 56, "pack header layout");
_Static_assert(sizeof(struct pack_rec) == 48, "pack record layout");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "pack files are little-endian");

/* ---- writing ----------------------------------------------------------- */

struct writer {
	const char *dir;
	uint64_t shard_bytes;
	FILE *f;
	uint32_t shard;
	uint64_t off;
	uint64_t *shard_sizes;
	size_t n_shards, shard_cap;
	struct pack_rec *recs;
	uint32_t *segs;
	size_t n_segs, seg_cap;
	uint8_t *ref;            /* pixels of the source, for the check */
	size_t ref_cap;
	uint64_t counts[4], src_total, out_total;
	const struct decode_limits *lim;
};

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
	size_t n = *cap ? *cap : 64;
	void *np;

	if (need <= *cap)
		return 0;
	while (n < need)
		n *= 2;
	np = realloc(*p, n * elem);
	if (!np)
		return -ENOMEM;
	*p = np;
	*cap = n;
	return 0;
}

/* Decode data fully into w->ref (keep) or compare with w->ref. */
static int decode_all(decoder_t *dec, const uint8_t *data, size_t len,
		      struct writer *w, bool keep, int *W, int *H)
{
	struct decoded d;
	int rc = decoder_open(dec, data, len, w->lim, W, H);

	if (rc == 0)
		rc = decoder_read(dec, 1, 0, 0, *W, *H, &d);
	if (rc)
		return rc;
	size_t row = (size_t)*W * 3, need = row * (size_t)*H;
	if (keep) {
		if (need > w->ref_cap) {
			void *np = realloc(w->ref, need);
			if (!np)
				return -ENOMEM;
			w->ref = np;
			w->ref_cap = need;
		}
		for (int y = 0; y < *H; y++)
			memcpy(w->ref + (size_t)y * row, d.rgb + (size_t)y * d.stride, row);
		return 0;
	}
	for (int y = 0; y < *H; y++)
		if (memcmp(w->ref + (size_t)y * row, d.rgb + (size_t)y * d.stride, row))
			return -EILSEQ;
	return 0;
}

static int open_shard(struct writer *w)
{
	char path[PATH_MAX];

	if (w->f) {
		if (fclose(w->f))
			return -errno;
		w->f = NULL;
		w->shard++;
	}
	if (grow((void **)&w->shard_sizes, &w->shard_cap, w->shard + 1, sizeof(uint64_t)))
		return -ENOMEM;
	snprintf(path, sizeof(path), "%s/pack-%05u.bin", w->dir, w->shard);
	w->f = fopen(path, "wbe");
	if (!w->f)
		return -errno;
	w->shard_sizes[w->shard] = 0;
	w->n_shards = w->shard + 1;
	w->off = 0;
	return 0;
}

/* One sample: transcode (checked) or as is, appended to the shard. */
static int pack_one(struct writer *w, decoder_t *dec, const uint8_t *data, size_t len,
		    struct pack_rec *r)
{
	uint8_t *tc = NULL;
	size_t tlen = 0;
	uint32_t *segs = NULL, ns = 0;
	int W, H, W2, H2, rc;
	char why[256];

	r->kind = PACK_AS_IS;
	if (imgfmt_detect(data, len) == IMGFMT_JPEG &&
	    splice_transcode(data, len, SPLICE_TARGET_PX, &tc, &tlen, why, sizeof(why)) == 0 &&
	    splice_segments(tc, tlen, &segs, &ns) == 0 &&
	    decode_all(dec, data, len, w, true, &W, &H) == 0 &&
	    decode_all(dec, tc, tlen, w, false, &W2, &H2) == 0 && W == W2 && H == H2)
		r->kind = PACK_TRANSCODED;
	if (r->kind != PACK_TRANSCODED) {
		free(tc);
		free(segs);
		tc = NULL;
		segs = NULL;
		ns = 0;
	}
	const uint8_t *bytes = tc ? tc : data;
	size_t n = tc ? tlen : len;
	rc = 0;
	if (!w->f || (w->off > 0 && w->off + n > w->shard_bytes))
		rc = open_shard(w);
	if (rc == 0 && n > UINT32_MAX - 1)
		rc = -EFBIG;
	if (rc == 0 && fwrite(bytes, 1, n, w->f) != n)
		rc = -EIO;
	if (rc == 0 && ns && grow((void **)&w->segs, &w->seg_cap, w->n_segs + ns,
				  sizeof(*w->segs)))
		rc = -ENOMEM;
	if (rc == 0) {
		r->shard = w->shard;
		r->off = w->off;
		r->size = (uint32_t)n;
		r->src_size = (uint32_t)(len > UINT32_MAX ? UINT32_MAX : len);
		r->first_seg = w->n_segs;
		r->n_segs = ns;
		if (ns)
			memcpy(w->segs + w->n_segs, segs, ns * sizeof(*segs));
		w->n_segs += ns;
		w->off += n;
		w->shard_sizes[w->shard] = w->off;
		w->counts[r->kind]++;
		w->src_total += len;
		w->out_total += n;
	}
	free(tc);
	free(segs);
	return rc;
}

static int write_all(FILE *f, const void *p, size_t n)
{
	return n && fwrite(p, 1, n, f) != n ? -EIO : 0;
}

static int write_index(struct writer *w, const dataset_t *ds, uint32_t n)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	struct pack_hdr h = { .version = PACK_VERSION };
	uint64_t names = 0, classes = 0;
	uint32_t K = dataset_num_classes(ds);
	FILE *f;
	int rc = 0;

	for (uint32_t i = 0; i < n; i++) {
		w->recs[i].name_off = names;
		names += strlen(dataset_path(ds, i)) + 1;
	}
	for (uint32_t k = 0; k < K; k++)
		classes += strlen(dataset_class_name(ds, k)) + 1;
	memcpy(h.magic, PACK_MAGIC, 8);
	h.n_shards = (uint32_t)w->n_shards;
	h.n_samples = n;
	h.n_classes = K;
	h.names_bytes = names;
	h.class_bytes = classes;
	h.n_segments = w->n_segs;
	snprintf(path, sizeof(path), "%s/%s", w->dir, PACK_INDEX);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "wbe");
	if (!f)
		return -errno;
	rc = write_all(f, &h, sizeof(h));
	if (rc == 0)
		rc = write_all(f, w->shard_sizes, w->n_shards * sizeof(uint64_t));
	if (rc == 0)
		rc = write_all(f, w->recs, (size_t)n * sizeof(*w->recs));
	for (uint32_t i = 0; rc == 0 && i < n; i++)
		rc = write_all(f, dataset_path(ds, i), strlen(dataset_path(ds, i)) + 1);
	for (uint32_t k = 0; rc == 0 && k < K; k++)
		rc = write_all(f, dataset_class_name(ds, k), strlen(dataset_class_name(ds, k)) + 1);
	if (rc == 0)
		rc = write_all(f, w->segs, w->n_segs * sizeof(*w->segs));
	if (fclose(f) && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path))
		rc = -errno;
	return rc;
}

/* Every sample of ds, in order, into w. */
static int pack_dataset(struct writer *w, const dataset_t *ds,
			const struct decode_limits *lim)
{
	uint32_t n = dataset_size(ds);
	decoder_t *dec = decoder_new();
	char why[512];
	int rc = 0;

	w->lim = lim;
	w->recs = calloc(n, sizeof(*w->recs));
	if (!dec || !w->recs) {
		decoder_destroy(&dec);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < n && rc == 0; i++) {
		const uint8_t *data;
		size_t len;
		struct pack_rec *r = &w->recs[i];

		r->label = dataset_label(ds, i);
		rc = source_read(ds, i, dec, lim, &data, &len, why, sizeof(why));
		if (rc) {
			fprintf(stderr, "cutmixd pack: '%s': %s (kept as an unreadable "
				"sample: replaced when served, as before)\n",
				dataset_path(ds, i), why);
			r->kind = PACK_UNREADABLE;
			r->shard = w->f ? w->shard : 0;
			r->off = w->off;
			w->counts[PACK_UNREADABLE]++;
			rc = w->f ? 0 : open_shard(w);
			continue;
		}
		rc = pack_one(w, dec, data, len, r);
		if (rc)
			fprintf(stderr, "cutmixd pack: writing '%s': %s\n",
				dataset_path(ds, i), strerror(-rc));
	}
	if (rc == 0 && w->f && fclose(w->f))
		rc = -errno;
	w->f = NULL;
	if (rc == 0)
		rc = write_index(w, ds, n);
	decoder_destroy(&dec);
	return rc;
}

const char pack_usage_text[] =
	"usage: cutmixd pack -c CONFIG [--dataset NAME] [--shard-bytes N] OUTDIR\n"
	"  rewrites the dataset NAME (default: 'default') of CONFIG into OUTDIR:\n"
	"  pack-NNNNN.bin files of about N bytes (default 1 GiB) and index.cmxpack;\n"
	"  serve it with [dataset] pack = OUTDIR/index.cmxpack\n"
	"Exit status: 0 ok, 1 failed, 64 usage, 78 bad config or dataset.\n";

static int pack_usage(void)
{
	fputs(pack_usage_text, stderr);
	return 64;
}

/* `cutmixd pack`'s options (argv[1] is "pack"): 0, or 64 after the usage. */
static int pack_args(int argc, char **argv, const char **config, const char **name,
		     struct writer *w)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "dataset", required_argument, NULL, 'd' },
		{ "shard-bytes", required_argument, NULL, 'b' },
		{ NULL, 0, NULL, 0 },
	};
	char *end;
	int opt;

	optind = 2;
	while ((opt = getopt_long(argc, argv, "c:d:b:", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			*config = optarg;
			break;
		case 'd':
			*name = optarg;
			break;
		case 'b':
			errno = 0;
			w->shard_bytes = strtoull(optarg, &end, 10);
			if (errno || *end || w->shard_bytes < 1)
				return pack_usage();
			break;
		default:
			return pack_usage();
		}
	}
	if (!*config || optind != argc - 1)
		return pack_usage();
	w->dir = argv[optind];
	return 0;
}

int pack_main(int argc, char **argv)
{
	const char *config = NULL, *name = "default";
	struct writer w = { .shard_bytes = DEFAULT_SHARD_BYTES };
	config_t *cfg = NULL;
	dataset_t *ds = NULL;
	char err[1024];
	int rc, k = -1;

	rc = pack_args(argc, argv, &config, &name, &w);
	if (rc)
		return rc;
	rc = config_load(config, NULL, 0, &cfg, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "cutmixd pack: %s\n", err);
		return 78;
	}
	for (int i = 0; i < cfg->n_datasets; i++)
		if (strcmp(cfg->datasets[i].name, name) == 0)
			k = i;
	if (k < 0) {
		fprintf(stderr, "cutmixd pack: %s has no dataset '%s'\n", config, name);
		rc = 78;
		goto out;
	}
	if (dataset_open(&cfg->datasets[k], &ds, err, sizeof(err))) {
		fprintf(stderr, "cutmixd pack: %s\n", err);
		rc = 78;
		goto out;
	}
	if (mkdir(w.dir, 0755) && errno != EEXIST) {
		fprintf(stderr, "cutmixd pack: cannot create '%s': %s\n", w.dir, strerror(errno));
		rc = 1;
		goto out;
	}
	struct decode_limits lim = { cfg->server.max_pixels, cfg->server.max_file_bytes,
				     cfg->server.max_scan_blocks };
	rc = pack_dataset(&w, ds, &lim);
	if (rc) {
		fprintf(stderr, "cutmixd pack: '%s': %s\n", w.dir, strerror(-rc));
		rc = 1;
		goto out;
	}
	printf("packed %u samples into %zu files in %s: %" PRIu64 " JPEGs transcoded, %"
	       PRIu64 " stored as is, %" PRIu64 " unreadable; %" PRIu64 " bytes (source %"
	       PRIu64 ")\n", dataset_size(ds), w.n_shards, w.dir, w.counts[PACK_TRANSCODED],
	       w.counts[PACK_AS_IS], w.counts[PACK_UNREADABLE], w.out_total, w.src_total);
	rc = 0;
out:
	if (w.f)
		fclose(w.f);
	free(w.shard_sizes);
	free(w.recs);
	free(w.segs);
	free(w.ref);
	dataset_destroy(&ds);
	config_destroy(&cfg);
	return rc;
}

/* ---- loading ----------------------------------------------------------- */

static int read_file(const char *path, uint8_t **out, size_t *len)
{
	FILE *f = fopen(path, "rbe");
	struct stat st;
	int rc = 0;

	if (!f)
		return -errno;
	if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		goto out;
	}
	*len = (size_t)st.st_size;
	*out = malloc(*len ? *len : 1);
	if (!*out)
		rc = -ENOMEM;
	else if (fread(*out, 1, *len, f) != *len)
		rc = -EIO;
out:
	fclose(f);
	return rc;
}

/* Every count and offset of the index checked before anything uses it. */
static const char *check_index(const uint8_t *b, size_t len, const struct pack_hdr **hp)
{
	const struct pack_hdr *h = (const void *)b;

	if (len < sizeof(*h) || memcmp(h->magic, PACK_MAGIC, 8))
		return "not a cutmixd pack index";
	if (h->version != PACK_VERSION)
		return "unsupported pack version";
	if (h->n_shards > (1u << 20) || h->n_samples > 0x80000000u ||
	    h->n_classes > (1u << 20) || h->names_bytes > len || h->class_bytes > len ||
	    h->n_segments > len / 4)
		return "counts out of range";
	uint64_t want = sizeof(*h) + 8ull * h->n_shards + sizeof(struct pack_rec) * h->n_samples +
			h->names_bytes + h->class_bytes + 4 * h->n_segments;
	if (want != len)
		return "size does not match its counts (truncated?)";
	const uint64_t *sizes = (const void *)(b + sizeof(*h));
	const struct pack_rec *r = (const void *)(sizes + h->n_shards);
	const char *names = (const char *)(r + h->n_samples);
	const char *classes = names + h->names_bytes;
	if ((h->names_bytes && names[h->names_bytes - 1]) ||
	    (h->class_bytes && classes[h->class_bytes - 1]))
		return "unterminated names";
	for (uint64_t i = 0; i < h->n_samples; i++, r++) {
		if (r->shard >= h->n_shards || r->kind < 1 || r->kind > 3 ||
		    r->off > sizes[r->shard] || r->size > sizes[r->shard] - r->off ||
		    r->label < 0 || (uint32_t)r->label >= h->n_classes ||
		    r->name_off >= h->names_bytes || r->first_seg > h->n_segments ||
		    r->n_segs > h->n_segments - r->first_seg)
			return "a sample record is out of range";
	}
	*hp = h;
	return NULL;
}

/* The restart segments of the transcoded samples into the table (splice.h):
 * the others get none. 0 or -ENOMEM. */
static int pack_load_segments(shards_t *s, const struct pack_hdr *h,
			      const struct pack_rec *r, const void *seg_src)
{
	uint32_t *segs = malloc(h->n_segments ? h->n_segments * 4 : 4);
	uint64_t *first = malloc(h->n_samples ? h->n_samples * 8 : 8);
	uint32_t *cnt = malloc(h->n_samples ? h->n_samples * 4 : 4);
	int rc = 0;

	if (segs && first && cnt) {
		memcpy(segs, seg_src, h->n_segments * 4);
		for (uint64_t i = 0; i < h->n_samples; i++) {
			bool use = r[i].kind == PACK_TRANSCODED;
			first[i] = use ? r[i].first_seg : 0;
			cnt[i] = use ? r[i].n_segs : 0;
		}
		shards_table_set_segments(s, &segs, &first, &cnt);
	} else {
		rc = -ENOMEM;
	}
	free(segs);
	free(first);
	free(cnt);
	return rc;
}

/* The index's class names, in label order, into the dataset. */
static int pack_load_classes(const struct dataset_cfg *cfg, struct dataset *ds,
			     const struct pack_hdr *h, const char *cls,
			     char *err, size_t errlen)
{
	int rc = 0;

	for (uint32_t k = 0, at = 0; rc == 0 && k < h->n_classes; k++) {
		if (at >= h->class_bytes) {
			errbuf_fail(err, errlen, "pack: '%s': fewer class names than classes",
				    cfg->pack);
			return -EINVAL;
		}
		rc = dataset_push_class(ds, cls + at, strlen(cls + at));
		at += (uint32_t)strlen(cls + at) + 1;
	}
	return rc;
}

int pack_load(const struct dataset_cfg *cfg, struct dataset *ds,
	      struct shards **out, char *err, size_t errlen)
{
	uint8_t *b = NULL;
	size_t len = 0;
	const struct pack_hdr *h = NULL;
	char **paths = NULL;
	const char *why, *slash = strrchr(cfg->pack, '/');
	int dl = slash ? (int)(slash - cfg->pack) : 1;
	const char *dir = slash ? cfg->pack : ".";
	shards_t *s = NULL;
	int rc = read_file(cfg->pack, &b, &len);

	*out = NULL;
	if (rc) {
		errbuf_fail(err, errlen, "pack: cannot read '%s': %s", cfg->pack, strerror(-rc));
		goto out_free;
	}
	if ((why = check_index(b, len, &h))) {
		errbuf_fail(err, errlen, "pack: '%s': %s", cfg->pack, why);
		rc = -EINVAL;
		goto out_free;
	}
	const uint64_t *sizes = (const void *)(b + sizeof(*h));
	const struct pack_rec *r = (const void *)(sizes + h->n_shards);
	const char *names = (const char *)(r + h->n_samples);
	const char *cls = names + h->names_bytes;
	paths = calloc(h->n_shards ? h->n_shards : 1, sizeof(*paths));
	rc = paths ? 0 : -ENOMEM;
	for (uint32_t k = 0; rc == 0 && k < h->n_shards; k++)
		if (asprintf(&paths[k], "%.*s/pack-%05u.bin", dl, dir, k) < 0)
			rc = -ENOMEM;
	if (rc == 0 && !(s = shards_table_new((const char *const *)paths, h->n_shards,
					      err, errlen)))
		rc = -EINVAL;
	for (uint32_t k = 0; rc == 0 && k < h->n_shards; k++) {
		if (shards_table_size(s, k) != sizes[k]) {
			errbuf_fail(err, errlen, "pack: '%s' is %" PRIu64 " bytes, the index "
				    "says %" PRIu64, paths[k], shards_table_size(s, k), sizes[k]);
			rc = -EINVAL;
		}
	}
	for (uint64_t i = 0; rc == 0 && i < h->n_samples; i++) {
		const char *nm = names + r[i].name_off;
		/* the digest sees where and how large each sample is */
		rc = dataset_push_sample(ds, nm, strlen(nm), r[i].label, r[i].size,
					 (uint64_t)r[i].shard << 48 ^ r[i].off);
		if (rc == 0)
			rc = shards_table_add(s, r[i].shard, r[i].off, r[i].size);
	}
	if (rc == 0)
		rc = pack_load_segments(s, h, r, cls + h->class_bytes);
	if (rc == 0)
		rc = pack_load_classes(cfg, ds, h, cls, err, errlen);
	if (rc == -ENOMEM)
		errbuf_fail(err, errlen, "pack: out of memory");
out_free:
	if (paths)
		for (uint32_t k = 0; h && k < h->n_shards; k++)
			free(paths[k]);
	free(paths);
	free(b);
	if (rc)
		shards_destroy(&s);
	*out = s;
	return rc;
}
