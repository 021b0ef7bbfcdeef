/*
 * shards.c — index and read WebDataset tar shards (the rules are in
 * shards.h).
 *
 * DESIGN
 * Built once on the main thread (start-up or SIGHUP re-index), read-only
 * afterwards: workers only call shards_read(), which reads the shared
 * arrays and writes only into the calling worker's decoder buffer, so
 * there are no locks. Per sample the index holds the image's offset (u64)
 * and size (u32; 4 GiB or more is an error when read), 12 bytes, next to
 * the dataset's own path arena ("KEY.EXT") and label; the shard of a sample
 * is found by binary search in the per-shard first-sample table (samples
 * are in shard order). A pack (pack.c) fills the same table, plus its
 * restart-segment offsets.
 *
 * A shard is scanned header by header (tarindex.c) with pread (512 bytes,
 * plus pax / GNU long-name records and .cls members, which are tiny);
 * image bytes are never read. The result (samples and problem counts) is
 * cached per shard.
 */
#include "shards.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset.h"
#include "decode.h"
#include "digest.h"
#include "errbuf.h"
#include "log.h"
#include "scratch.h"
#include "tarindex.h"

#define MAX_SHARDS        (1u << 20)

struct shards {
	char *paths;         /* arena of shard paths */
	uint64_t *path_offs;
	uint64_t *sizes;     /* size and mtime at indexing */
	int64_t *mtimes;
	size_t n_shards;
	uint32_t *first;     /* [n_shards + 1]: shard k holds samples
			      * first[k] .. first[k+1]-1 (samples are in shard order) */
	uint64_t *offs;      /* [n] */
	uint32_t *lens;      /* [n], UINT32_MAX: 4 GiB or more */
	size_t n, offs_cap, lens_cap;  /* caps in bytes */
	uint32_t last;       /* the last shard in use (first[0..last] valid) */
	uint32_t *segs;      /* pack: restart segments of all samples */
	uint64_t *seg_first; /* [n] or NULL */
	uint32_t *seg_n;     /* [n] or NULL */
};

/* ---- string vectors ---------------------------------------------------- */

struct strvec {
	char *arena;
	size_t len, cap;
	uint64_t *offs;
	size_t n, ncap;
};

static int sv_push(struct strvec *v, const char *s, size_t len)
{
	if (scratch_grow_keep((void **)&v->arena, &v->cap, v->len + len + 1) ||
	    scratch_grow_keep((void **)&v->offs, &v->ncap, (v->n + 1) * sizeof(*v->offs)))
		return -ENOMEM;
	memcpy(v->arena + v->len, s, len);
	v->arena[v->len + len] = '\0';
	v->offs[v->n++] = v->len;
	v->len += len + 1;
	return 0;
}

static void sv_free(struct strvec *v)
{
	free(v->arena);
	free(v->offs);
	memset(v, 0, sizeof(*v));
}

/* ---- pattern expansion ------------------------------------------------- */

static int cmp_cstr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One level of braces: the first "{...}" of s, all its alternatives. */
static int expand_braces(const char *s, struct strvec *out, char *err, size_t errlen)
{
	const char *open = strchr(s, '{'), *close = open ? strchr(open, '}') : NULL;
	char *buf = NULL;
	int rc = 0;

	if (!open || !close)
		return out->n >= MAX_SHARDS ? -E2BIG : sv_push(out, s, strlen(s));
	size_t pre = (size_t)(open - s), inner = (size_t)(close - open - 1);
	const char *suf = close + 1;
	size_t sl = strlen(suf);
	char a[32], b[32];
	const char *dots = memmem(open + 1, inner, "..", 2);

	buf = malloc(pre + inner + sl + 64);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, s, pre);
	if (dots && (size_t)(dots - open - 1) < sizeof(a) &&
	    inner - (size_t)(dots - open - 1) - 2 < sizeof(b)) {
		size_t la = (size_t)(dots - open - 1), lb = inner - la - 2;
		memcpy(a, open + 1, la);
		a[la] = '\0';
		memcpy(b, dots + 2, lb);
		b[lb] = '\0';
		char *ea, *eb;
		errno = 0;
		unsigned long long x = strtoull(a, &ea, 10), y = strtoull(b, &eb, 10);
		if (!la || !lb || *ea || *eb || errno || !isdigit((unsigned char)a[0]) ||
		    !isdigit((unsigned char)b[0]) || x > y || y - x >= MAX_SHARDS) {
			errbuf_fail(err, errlen, "shards: bad range '{%.*s}' in '%s' (want "
				    "{FIRST..LAST}, FIRST <= LAST, at most %u)", (int)inner,
				    open + 1, s, MAX_SHARDS);
			rc = -EINVAL;
			goto out;
		}
		for (unsigned long long v = x; v <= y && rc == 0; v++) {
			int w = snprintf(buf + pre, 64, "%0*llu", (int)la, v);
			memcpy(buf + pre + w, suf, sl + 1);
			rc = expand_braces(buf, out, err, errlen);
		}
	} else if (memchr(open + 1, ',', inner)) {
		const char *p = open + 1;
		while (rc == 0) {
			const char *c = memchr(p, ',', (size_t)(close - p));
			size_t l = c ? (size_t)(c - p) : (size_t)(close - p);
			memcpy(buf + pre, p, l);
			memcpy(buf + pre + l, suf, sl + 1);
			rc = expand_braces(buf, out, err, errlen);
			if (!c)
				break;
			p = c + 1;
		}
	} else {
		errbuf_fail(err, errlen, "shards: '{%.*s}' in '%s' is neither a range "
			    "{A..B} nor a list {a,b}", (int)inner, open + 1, s);
		rc = -EINVAL;
	}
out:
	free(buf);
	if (rc == -E2BIG)
		errbuf_fail(err, errlen, "shards: '%s' expands to more than %u names", s,
			    MAX_SHARDS);
	return rc;
}

int shards_expand(const char *pattern, char **names, size_t *n,
		  char *err, size_t errlen)
{
	struct strvec br = { 0 }, out = { 0 };
	int rc;

	*names = NULL;
	*n = 0;
	rc = expand_braces(pattern, &br, err, errlen);
	if (rc == -ENOMEM)
		errbuf_fail(err, errlen, "shards: out of memory");
	for (size_t i = 0; rc == 0 && i < br.n; i++) {
		const char *p = br.arena + br.offs[i];
		glob_t g;

		if (!strpbrk(p, "*?[")) {
			rc = sv_push(&out, p, strlen(p));
			continue;
		}
		int gr = glob(p, GLOB_NOSORT, NULL, &g);
		if (gr == GLOB_NOMATCH) {
			errbuf_fail(err, errlen, "shards: '%s' matches no file", p);
			rc = -ENOENT;
		} else if (gr) {
			errbuf_fail(err, errlen, "shards: glob '%s' failed", p);
			rc = gr == GLOB_NOSPACE ? -ENOMEM : -EIO;
		} else {
			qsort(g.gl_pathv, g.gl_pathc, sizeof(char *), cmp_cstr);
			for (size_t k = 0; rc == 0 && k < g.gl_pathc; k++)
				rc = out.n >= MAX_SHARDS ? -E2BIG :
				     sv_push(&out, g.gl_pathv[k], strlen(g.gl_pathv[k]));
			if (rc == -E2BIG)
				errbuf_fail(err, errlen, "shards: more than %u shards", MAX_SHARDS);
		}
		if (gr == 0 || gr == GLOB_NOMATCH)
			globfree(&g);
	}
	if (rc == 0 && out.n == 0) {
		errbuf_fail(err, errlen, "shards: '%s' names no file", pattern);
		rc = -ENOENT;
	}
	if (rc == 0) {
		/* one NUL-separated arena, in order */
		*names = out.arena;
		*n = out.n;
		out.arena = NULL;
	}
	sv_free(&br);
	sv_free(&out);
	return rc;
}

static void report(const char *path, const struct scan *sc, uint64_t *skipped)
{
	for (int p = 0; p < N_PROBLEMS; p++) {
		if (!sc->counts[p])
			continue;
		*skipped += sc->counts[p];
		log_warning("shards: '%s': %" PRIu64 " %s (first: '%s')", path,
			    sc->counts[p], tar_problem_text[p], sc->first[p]);
	}
	if (sc->end_note[0])
		log_warning("shards: '%s': %s", path, sc->end_note);
}

/* class_names file, or classes.txt next to the first shard (optional). */
static int load_names(const struct dataset_cfg *cfg, const char *first,
		      struct strvec *names, char *err, size_t errlen)
{
	char path[PATH_MAX];
	const char *slash = strrchr(first, '/');
	FILE *f;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int rc = 0, lineno = 0;

	if (cfg->class_names)
		snprintf(path, sizeof(path), "%s", cfg->class_names);
	else
		snprintf(path, sizeof(path), "%.*s%sclasses.txt",
			 slash ? (int)(slash - first) : 0, first, slash ? "/" : "");
	f = fopen(path, "re");
	if (!f) {
		if (!cfg->class_names && errno == ENOENT)
			return 0;
		errbuf_fail(err, errlen, "shards: cannot read class names '%s': %s", path,
			    strerror(errno));
		return -errno;
	}
	while ((n = getline(&line, &cap, f)) >= 0) {
		lineno++;
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (n == 0 || memchr(line, '\0', (size_t)n)) {
			errbuf_fail(err, errlen, "%s:%d: %s", path, lineno, n ? "NUL byte" :
				    "empty class name (line k names class k-1)");
			rc = -EINVAL;
			break;
		}
		if ((rc = sv_push(names, line, (size_t)n)))
			break;
	}
	free(line);
	fclose(f);
	if (rc == 0 && names->n == 0) {
		errbuf_fail(err, errlen, "%s: no class names", path);
		rc = -EINVAL;
	}
	return rc;
}

static int push_scan(shards_t *s, struct dataset *ds, uint32_t shard,
		     const struct scan *sc, uint64_t stamp_a, uint64_t stamp_b,
		     uint32_t n_names, int32_t *max_label,
		     uint64_t *out_of_range, char *oor_first, size_t oor_len)
{
	size_t need = s->n + sc->n;

	if (need > 0x80000000u)
		return -E2BIG;
	for (size_t i = 0; i < sc->n; i++) {
		const struct rec *r = &sc->recs[i];
		const char *name = sc->names + r->name_off;
		int rc;

		if (n_names && (uint32_t)r->label >= n_names) {
			if ((*out_of_range)++ == 0)
				snprintf(oor_first, oor_len, "%s", name);
			continue;
		}
		rc = dataset_push_sample(ds, name, strlen(name), r->label, stamp_a, stamp_b);
		if (rc)
			return rc;
		if (r->label > *max_label)
			*max_label = r->label;
		if (scratch_grow_keep((void **)&s->offs, &s->offs_cap, (s->n + 1) * sizeof(*s->offs)) ||
		    scratch_grow_keep((void **)&s->lens, &s->lens_cap, (s->n + 1) * sizeof(*s->lens)))
			return -ENOMEM;
		s->offs[s->n] = r->off;
		s->lens[s->n] = r->size >= UINT32_MAX ? UINT32_MAX : (uint32_t)r->size;
		s->n++;
	}
	return 0;
}

/* The shard holding sample i: the last k with first[k] <= i. */
static uint32_t shard_of(const shards_t *s, uint32_t i)
{
	size_t lo = 0, hi = (size_t)s->last + 1;  /* first[lo] <= i, i < first[hi] or hi past the used shards */

	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->first[mid] <= i)
			lo = mid;
		else
			hi = mid;
	}
	return (uint32_t)lo;
}

/* Give back the slack of the doubling growth (a failed shrink keeps it). */
static void trim(shards_t *s)
{
	void *p;

	if (s->n && (p = realloc(s->offs, s->n * sizeof(*s->offs)))) {
		s->offs = p;
		s->offs_cap = s->n * sizeof(*s->offs);
	}
	if (s->n && (p = realloc(s->lens, s->n * sizeof(*s->lens)))) {
		s->lens = p;
		s->lens_cap = s->n * sizeof(*s->lens);
	}
}

/* Shard paths, sizes and mtimes from the expanded names. */
static int shards_init(shards_t *s, char *names, size_t n)
{
	size_t at = 0;

	s->paths = names;
	s->n_shards = n;
	s->path_offs = calloc(n, sizeof(*s->path_offs));
	s->sizes = calloc(n, sizeof(*s->sizes));
	s->mtimes = calloc(2 * n, sizeof(*s->mtimes));
	s->first = calloc(n + 1, sizeof(*s->first));
	if (!s->path_offs || !s->sizes || !s->mtimes || !s->first)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		s->path_offs[i] = at;
		at += strlen(names + at) + 1;
	}
	return 0;
}

/* What shards_load() adds up over the shards. */
struct load_acc {
	size_t cached;             /* indexes taken from the cache */
	uint64_t skipped, oor;     /* members skipped; of them, label too big */
	int32_t max_label;
	char oor_first[160];       /* the first member with a label too big */
};

/* Shard i: its index (scanned or cached), size and mtime, its samples
 * into s and the dataset. */
static int load_shard(shards_t *s, struct dataset *ds, const struct dataset_cfg *cfg,
		      size_t i, size_t n_classes, struct load_acc *a,
		      char *err, size_t errlen)
{
	const char *path = s->paths + s->path_offs[i];
	struct scan sc = { 0 };
	struct stat st;
	bool hit;
	int rc;

	rc = tarindex_shard(path, cfg->index_cache, &sc, &st, &hit, err, errlen);
	if (rc)
		return rc;
	a->cached += hit;
	s->sizes[i] = (uint64_t)st.st_size;
	s->mtimes[2 * i] = st.st_mtim.tv_sec;
	s->mtimes[2 * i + 1] = st.st_mtim.tv_nsec;
	report(path, &sc, &a->skipped);
	s->first[i] = (uint32_t)s->n;
	/* the digest sees each sample with its shard's size and mtime */
	rc = push_scan(s, ds, (uint32_t)i, &sc, (uint64_t)st.st_size,
		       (uint64_t)st.st_mtim.tv_sec * 1000000000u +
		       (uint64_t)st.st_mtim.tv_nsec, (uint32_t)n_classes, &a->max_label,
		       &a->oor, a->oor_first, sizeof(a->oor_first));
	tarindex_free(&sc);
	if (rc)
		errbuf_fail(err, errlen, rc == -E2BIG ? "shards: more than 2^31 samples" :
			    "shards: out of memory");
	return rc;
}

/* The class names: those of the names file, or "0".."max_label". */
static int push_classes(struct dataset *ds, const struct strvec *cls, int32_t max_label)
{
	int rc = 0;

	for (size_t k = 0; rc == 0 && k < cls->n; k++)
		rc = dataset_push_class(ds, cls->arena + cls->offs[k],
					strlen(cls->arena + cls->offs[k]));
	for (int32_t k = 0; rc == 0 && !cls->n && k <= max_label; k++) {
		char num[16];
		int nn = snprintf(num, sizeof(num), "%d", k);
		rc = dataset_push_class(ds, num, (size_t)nn);
	}
	return rc;
}

int shards_load(const struct dataset_cfg *cfg, struct dataset *ds,
		shards_t **out, char *err, size_t errlen)
{
	struct strvec cls = { 0 };
	shards_t *s = calloc(1, sizeof(*s));
	struct load_acc a = { .max_label = -1 };
	char *names = NULL;
	size_t n = 0;
	int rc;

	*out = NULL;
	if (!s) {
		errbuf_fail(err, errlen, "shards: out of memory");
		return -ENOMEM;
	}
	rc = shards_expand(cfg->shards, &names, &n, err, errlen);
	if (rc)
		goto out_fail;
	rc = shards_init(s, names, n);
	if (rc == 0)
		rc = load_names(cfg, names, &cls, err, errlen);
	else
		errbuf_fail(err, errlen, "shards: out of memory");
	if (rc)
		goto out_fail;
	for (size_t i = 0; i < n; i++) {
		rc = load_shard(s, ds, cfg, i, cls.n, &a, err, errlen);
		if (rc)
			goto out_fail;
	}
	s->first[n] = (uint32_t)s->n;
	s->last = n ? (uint32_t)(n - 1) : 0;
	trim(s);
	if (a.oor) {
		log_warning("shards: %" PRIu64 " samples have a class index beyond the %zu "
			    "class names (first: '%s'); skipped", a.oor, cls.n, a.oor_first);
		a.skipped += a.oor;
	}
	rc = push_classes(ds, &cls, a.max_label);
	if (rc) {
		errbuf_fail(err, errlen, "shards: out of memory");
		goto out_fail;
	}
	dataset_add_skipped(ds, a.skipped);
	log_info("shards: %zu samples from %zu shards (%zu indexes from the cache), "
		 "%" PRIu64 " skipped", s->n, n, a.cached, a.skipped);
	sv_free(&cls);
	*out = s;
	return 0;

out_fail:
	sv_free(&cls);
	if (!s->paths)
		free(names);
	shards_destroy(&s);
	return rc;
}

void shards_destroy(shards_t **sp)
{
	shards_t *s;

	if (!sp || !*sp)
		return;
	s = *sp;
	free(s->paths);
	free(s->path_offs);
	free(s->sizes);
	free(s->mtimes);
	free(s->first);
	free(s->segs);
	free(s->seg_first);
	free(s->seg_n);
	free(s->offs);
	free(s->lens);
	free(s);
	*sp = NULL;
}

uint32_t shards_count(const shards_t *s)
{
	return s ? (uint32_t)s->n : 0;
}

size_t shards_memory(const shards_t *s)
{
	if (!s)
		return 0;
	size_t paths = 0;
	for (size_t i = 0; i < s->n_shards; i++)
		paths += strlen(s->paths + s->path_offs[i]) + 1;
	return sizeof(*s) + paths + s->n_shards * (sizeof(*s->path_offs) +
	       sizeof(*s->sizes) + 2 * sizeof(*s->mtimes)) +
	       (s->n_shards + 1) * sizeof(*s->first) + s->offs_cap + s->lens_cap;
}

int shards_locate(const shards_t *s, uint32_t i, const char **path,
		  uint64_t *off, uint64_t *size)
{
	if (!s || i >= s->n)
		return -EINVAL;
	*path = s->paths + s->path_offs[shard_of(s, i)];
	*off = s->offs[i];
	*size = s->lens[i];
	return 0;
}

int shards_read(const shards_t *s, uint32_t i, decoder_t *dec,
		uint64_t max_file_bytes, const uint8_t **data, size_t *len,
		char *why, size_t whylen)
{
	const char *path;
	uint64_t off, size;
	struct stat st;
	int fd, rc;

	*data = NULL;
	*len = 0;
	if (shards_locate(s, i, &path, &off, &size)) {
		errbuf_fail(why, whylen, "shards: no sample %u", i);
		return -EINVAL;
	}
	uint32_t k = shard_of(s, i);
	if (size == UINT32_MAX || (max_file_bytes && size > max_file_bytes)) {
		errbuf_fail(why, whylen, "shards: '%s' member at offset %" PRIu64 " is %s%"
			    PRIu64 " bytes, limit is %" PRIu64, path, off,
			    size == UINT32_MAX ? "at least " : "", size, max_file_bytes);
		return -EFBIG;
	}
	if (size == 0) {
		errbuf_fail(why, whylen, "shards: '%s' member at offset %" PRIu64 " is empty",
			    path, off);
		return -ENODATA;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		rc = -errno;
		errbuf_fail(why, whylen, "shards: open '%s': %s", path, strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st) || (uint64_t)st.st_size != s->sizes[k] ||
	    st.st_mtim.tv_sec != s->mtimes[2 * k] ||
	    st.st_mtim.tv_nsec != s->mtimes[2 * k + 1]) {
		errbuf_fail(why, whylen, "shards: '%s' changed since it was indexed "
			    "(SIGHUP re-indexes)", path);
		rc = -EBADMSG;  /* the bytes are not what was indexed (not transient) */
		goto out_close;
	}
	uint8_t *buf = decoder_input_buffer(dec, (size_t)size);
	if (!buf) {
		rc = -ENOMEM;
		errbuf_fail(why, whylen, "shards: out of memory for %" PRIu64 " bytes", size);
		goto out_close;
	}
	ssize_t r = tar_pread(fd, buf, (size_t)size, off);
	if (r != (ssize_t)size) {
		rc = r < 0 ? (int)r : -EIO;
		errbuf_fail(why, whylen, "shards: read '%s' at %" PRIu64 ": %s", path, off,
			    r < 0 ? strerror(-rc) : "short read");
		goto out_close;
	}
	*data = buf;
	*len = (size_t)size;
	rc = 0;
out_close:
	close(fd);
	return rc;
}

shards_t *shards_table_new(const char *const *paths, size_t n, char *err, size_t errlen)
{
	shards_t *s = calloc(1, sizeof(*s));
	struct strvec v = { 0 };

	if (!s)
		goto out_oom;
	for (size_t i = 0; i < n; i++)
		if (sv_push(&v, paths[i], strlen(paths[i])))
			goto out_oom;
	if (shards_init(s, v.arena, n))
		goto out_oom;
	v.arena = NULL;
	sv_free(&v);
	for (size_t i = 0; i < n; i++) {
		struct stat st;
		const char *p = s->paths + s->path_offs[i];

		if (stat(p, &st)) {
			errbuf_fail(err, errlen, "pack: cannot open '%s': %s", p, strerror(errno));
			shards_destroy(&s);
			return NULL;
		}
		s->sizes[i] = (uint64_t)st.st_size;
		s->mtimes[2 * i] = st.st_mtim.tv_sec;
		s->mtimes[2 * i + 1] = st.st_mtim.tv_nsec;
	}
	return s;
out_oom:
	sv_free(&v);
	shards_destroy(&s);
	errbuf_fail(err, errlen, "pack: out of memory");
	return NULL;
}

uint64_t shards_table_size(const shards_t *s, uint32_t shard)
{
	return s && shard < s->n_shards ? s->sizes[shard] : 0;
}

int shards_table_add(shards_t *s, uint32_t shard, uint64_t off, uint64_t size)
{
	if (shard >= s->n_shards || s->n >= 0x80000000u || shard < s->last)
		return -EINVAL;  /* samples come in shard order */
	if (scratch_grow_keep((void **)&s->offs, &s->offs_cap, (s->n + 1) * sizeof(*s->offs)) ||
	    scratch_grow_keep((void **)&s->lens, &s->lens_cap, (s->n + 1) * sizeof(*s->lens)))
		return -ENOMEM;
	while (s->last < shard)
		s->first[++s->last] = (uint32_t)s->n;
	s->offs[s->n] = off;
	s->lens[s->n] = size >= UINT32_MAX ? UINT32_MAX : (uint32_t)size;
	s->n++;
	return 0;
}

void shards_table_set_segments(shards_t *s, uint32_t **segs, uint64_t **first, uint32_t **n)
{
	free(s->segs);
	free(s->seg_first);
	free(s->seg_n);
	s->segs = *segs;
	s->seg_first = *first;
	s->seg_n = *n;
	*segs = NULL;
	*first = NULL;
	*n = NULL;
}

int shards_segments(const shards_t *s, uint32_t i, const uint32_t **segs, uint32_t *n)
{
	*segs = NULL;
	*n = 0;
	if (!s || i >= s->n || !s->seg_n)
		return -ENOENT;
	*n = s->seg_n[i];
	*segs = s->segs + s->seg_first[i];
	return 0;
}
