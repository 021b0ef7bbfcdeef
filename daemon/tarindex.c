/*
 * tarindex.c — scan a tar shard's headers into samples and cache the
 * result (tarindex.h, rules in shards.h). No threads: called on the thread
 * that builds the dataset index.
 */
#include "tarindex.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "digest.h"
#include "errbuf.h"
#include "log.h"
#include "scratch.h"

#define MAX_NAME          4096        /* member path */
#define MAX_PAX           (1u << 20)  /* pax header record */
#define MAX_CLS           64          /* bytes of a .cls member */
#define CACHE_MAGIC       "CMXSIDX1"
#define CACHE_SUFFIX      ".cutmixd-idx"

const char *const tar_problem_text[N_PROBLEMS] = {
	"members that are not regular files (symlinks, links, devices; not followed)",
	"samples without an image (.jpg .jpeg .png .webp)",
	"samples without a class (.cls)",
	"samples whose .cls is not a class index",
	"duplicate members within a sample (the first kept)",
	"samples whose key appeared before in the shard (dropped)",
};

/* ---- tar headers ------------------------------------------------------- */

ssize_t tar_pread(int fd, void *buf, size_t n, uint64_t off)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

static bool parse_octal(const uint8_t *f, size_t n, uint64_t *v)
{
	size_t i = 0;
	uint64_t x = 0;
	bool any = false;

	while (i < n && f[i] == ' ')
		i++;
	for (; i < n && f[i] >= '0' && f[i] <= '7'; i++) {
		if (x > (UINT64_MAX >> 3))
			return false;
		x = x << 3 | (uint64_t)(f[i] - '0');
		any = true;
	}
	for (; i < n; i++)
		if (f[i] != ' ' && f[i] != '\0')
			return false;
	*v = x;
	return any;
}

/* Size field: octal, or GNU base-256 (high bit of the first byte). */
static bool parse_size(const uint8_t *h, uint64_t *v)
{
	const uint8_t *f = h + 124;

	if (f[0] & 0x80) {
		uint64_t x = 0;
		if (f[0] != 0x80 || f[1] || f[2] || f[3])
			return false;  /* negative, or beyond 2^64 */
		for (int i = 4; i < 12; i++)
			x = x << 8 | f[i];
		*v = x;
		return true;
	}
	return parse_octal(f, 12, v);
}

static bool checksum_ok(const uint8_t *h)
{
	uint64_t want;
	unsigned long u = 0;
	long s = 0;

	if (!parse_octal(h + 148, 8, &want))
		return false;
	for (int i = 0; i < 512; i++) {
		uint8_t c = (i >= 148 && i < 156) ? ' ' : h[i];
		u += c;
		s += (signed char)c;
	}
	return want == u || (long)want == s;
}

/* "LEN key=value\n" records: path and size are the ones we use. */
static bool parse_pax(char *p, size_t n, char *path, bool *have_path,
		      uint64_t *size, bool *have_size)
{
	size_t at = 0;

	while (at < n) {
		char *end;
		errno = 0;
		unsigned long len = strtoul(p + at, &end, 10);
		if (errno || end == p + at || *end != ' ' || len == 0 || len > n - at ||
		    p[at + len - 1] != '\n')
			return false;
		char *kv = end + 1, *eq = memchr(kv, '=', (size_t)(p + at + len - 1 - kv));
		if (!eq)
			return false;
		size_t kl = (size_t)(eq - kv), vl = (size_t)(p + at + len - 1 - eq - 1);
		if (kl == 4 && memcmp(kv, "path", 4) == 0) {
			if (vl == 0 || vl > MAX_NAME)
				return false;
			memcpy(path, eq + 1, vl);
			path[vl] = '\0';
			*have_path = true;
		} else if (kl == 4 && memcmp(kv, "size", 4) == 0) {
			char num[32];
			if (vl == 0 || vl >= sizeof(num))
				return false;
			memcpy(num, eq + 1, vl);
			num[vl] = '\0';
			errno = 0;
			*size = strtoull(num, &end, 10);
			if (errno || *end || !isdigit((unsigned char)num[0]))
				return false;
			*have_size = true;
		}
		at += len;
	}
	return true;
}

/* ---- grouping members into samples ------------------------------------- */

struct group {
	bool active;
	char key[MAX_NAME + 1];
	size_t key_len;
	int img_prio;             /* -1: none */
	char img_ext[8];
	uint64_t img_off, img_size;
	int cls;                  /* 0 none, 1 ok, 2 bad */
	int32_t label;
};

static void note(struct scan *sc, enum problem p, const char *what)
{
	if (sc->counts[p]++ == 0)
		snprintf(sc->first[p], sizeof(sc->first[p]), "%.127s", what);
}

static int image_prio(const char *ext)
{
	static const char *const exts[] = { "jpg", "jpeg", "png", "webp" };

	for (int i = 0; i < 4; i++)
		if (strcmp(ext, exts[i]) == 0)
			return i;
	return -1;
}

static int emit(struct scan *sc, struct group *g)
{
	if (!g->active)
		return 0;
	g->active = false;
	if (g->img_prio < 0) {
		note(sc, P_NO_IMAGE, g->key);
		return 0;
	}
	if (g->cls != 1) {
		note(sc, g->cls ? P_BAD_CLASS : P_NO_CLASS, g->key);
		return 0;
	}
	size_t el = strlen(g->img_ext), nl = g->key_len + 1 + el;
	if (scratch_grow_keep((void **)&sc->recs, &sc->cap, (sc->n + 1) * sizeof(*sc->recs)) ||
	    scratch_grow_keep((void **)&sc->names, &sc->names_cap, sc->names_len + nl + 1) ||
	    sc->names_len + nl + 1 > UINT32_MAX)
		return -ENOMEM;
	char *dst = sc->names + sc->names_len;
	memcpy(dst, g->key, g->key_len);
	dst[g->key_len] = '.';
	memcpy(dst + g->key_len + 1, g->img_ext, el + 1);
	sc->recs[sc->n++] = (struct rec){ g->img_off, g->img_size, g->label,
					  (uint32_t)sc->names_len, (uint32_t)g->key_len };
	sc->names_len += nl + 1;
	return 0;
}

static void read_cls(struct scan *sc, struct group *g, int fd, uint64_t off,
		     uint64_t size)
{
	char buf[MAX_CLS + 1], *p, *end;
	ssize_t r;

	g->cls = 2;
	if (size > MAX_CLS)
		return;
	r = tar_pread(fd, buf, (size_t)size, off);
	if (r != (ssize_t)size)
		return;
	buf[r] = '\0';
	for (p = buf; isspace((unsigned char)*p); p++)
		;
	if (!isdigit((unsigned char)*p))
		return;
	errno = 0;
	unsigned long v = strtoul(p, &end, 10);
	while (isspace((unsigned char)*end))
		end++;
	if (errno || *end || v > 1048575ul)  /* the manifest's class limit */
		return;
	g->label = (int32_t)v;
	g->cls = 1;
	(void)sc;
}

/* One regular-or-not member named `name`. */
static int add_member(struct scan *sc, struct group *g, int fd, const char *name,
		      char type, uint64_t off, uint64_t size)
{
	const char *slash = strrchr(name, '/'), *base = slash ? slash + 1 : name;
	const char *dot = strchr(base, '.');
	char ext[64];
	size_t kl, el;
	int rc = 0;

	if (type == '5')
		return 0;                    /* directories */
	if (!dot || dot == base)
		return 0;                    /* no KEY.EXT: not part of a sample */
	kl = (size_t)(dot - name);
	el = strlen(dot + 1);
	if (el >= sizeof(ext))
		return 0;
	for (size_t i = 0; i <= el; i++)
		ext[i] = (char)tolower((unsigned char)dot[1 + i]);
	if (!g->active || kl != g->key_len || memcmp(g->key, name, kl) != 0) {
		rc = emit(sc, g);
		if (rc)
			return rc;
		memset(g, 0, sizeof(*g));
		g->active = true;
		memcpy(g->key, name, kl);
		g->key[kl] = '\0';
		g->key_len = kl;
		g->img_prio = -1;
	}
	if (type != '0' && type != '\0' && type != '7') {
		note(sc, P_NOT_REGULAR, name);
		return 0;
	}
	int prio = image_prio(ext);
	if (prio >= 0) {
		if (g->img_prio == prio) {
			note(sc, P_DUP_MEMBER, name);
		} else if (g->img_prio < 0 || prio < g->img_prio) {
			g->img_prio = prio;
			snprintf(g->img_ext, sizeof(g->img_ext), "%.7s", ext);
			g->img_off = off;
			g->img_size = size;
		}
	} else if (strcmp(ext, "cls") == 0) {
		if (g->cls)
			note(sc, P_DUP_MEMBER, name);
		else
			read_cls(sc, g, fd, off, size);
	}
	return 0;
}

/* ---- scanning one shard ------------------------------------------------ */

struct pending {
	char name[MAX_NAME + 1];
	bool have_name;
	uint64_t size;
	bool have_size;
};

/* The member name of header h (ustar prefix when POSIX ustar). */
static void header_name(const uint8_t *h, char *out)
{
	char nm[101], pf[156];

	memcpy(nm, h, 100);
	nm[100] = '\0';
	if (memcmp(h + 257, "ustar\0", 6) == 0 && h[345]) {
		memcpy(pf, h + 345, 155);
		pf[155] = '\0';
		snprintf(out, MAX_NAME + 1, "%s/%s", pf, nm);
	} else {
		snprintf(out, MAX_NAME + 1, "%s", nm);
	}
}

/* pax or GNU long-name record at off: into pd. false if it does not parse. */
static bool read_meta(int fd, char type, uint64_t off, uint64_t size, struct pending *pd)
{
	char *buf;
	bool ok = false;

	if (size > (type == 'x' ? MAX_PAX : MAX_NAME))
		return false;
	buf = malloc((size_t)size + 1);
	if (!buf)
		return false;
	if (tar_pread(fd, buf, (size_t)size, off) == (ssize_t)size) {
		buf[size] = '\0';
		if (type == 'x') {
			ok = parse_pax(buf, (size_t)size, pd->name, &pd->have_name,
				       &pd->size, &pd->have_size);
		} else {
			size_t l = strnlen(buf, (size_t)size);
			if (l > 0 && l <= MAX_NAME) {
				memcpy(pd->name, buf, l + 1);
				pd->have_name = true;
				ok = true;
			}
		}
	}
	free(buf);
	return ok;
}

/*
 * Header by header to the end marker, the end of the file, or the first
 * damage (sc->end_note). Returns 0, or -errno for I/O / memory failures.
 * This is one loop over the tar format; splitting it would scatter the
 * offset bookkeeping.
 */
static int scan_tar(int fd, uint64_t fsize, struct scan *sc)
{
	struct group *g = calloc(1, sizeof(*g));
	struct pending *pd = calloc(1, sizeof(*pd));
	char *name = malloc(MAX_NAME + 1);
	uint8_t h[512];
	uint64_t off = 0;
	int rc = 0;

	if (!g || !pd || !name) {
		rc = -ENOMEM;
		goto out_free;
	}
	while (off < fsize) {
		if (fsize - off < 512) {
			snprintf(sc->end_note, sizeof(sc->end_note), "%" PRIu64
				 " stray bytes after the last member at offset %" PRIu64
				 " (truncated shard?)", fsize - off, off);
			break;
		}
		ssize_t r = tar_pread(fd, h, 512, off);
		if (r < 0) {
			rc = (int)r;
			goto out_free;
		}
		if (r != 512)
			break;
		bool zero = true;
		for (int i = 0; i < 512 && zero; i++)
			zero = h[i] == 0;
		if (zero)
			break;
		uint64_t size;
		if (!checksum_ok(h) || !parse_size(h, &size)) {
			snprintf(sc->end_note, sizeof(sc->end_note), "bad tar header at "
				 "offset %" PRIu64 " (%s); the rest of the shard is ignored",
				 off, checksum_ok(h) ? "unreadable size" : "checksum mismatch");
			break;
		}
		char type = (char)h[156];
		if (type != 'x' && type != 'L' && pd->have_size)
			size = pd->size;
		uint64_t data = off + 512;
		if (size > fsize - data) {
			header_name(h, name);
			snprintf(sc->end_note, sizeof(sc->end_note), "member '%.100s' at "
				 "offset %" PRIu64 " runs past the end of the file (%" PRIu64
				 " bytes declared, %" PRIu64 " there): truncated shard",
				 pd->have_name ? pd->name : name, off, size, fsize - data);
			break;
		}
		uint64_t next = data + ((size + 511) & ~(uint64_t)511);
		if (type == 'x' || type == 'L') {
			if (!read_meta(fd, type, data, size, pd)) {
				snprintf(sc->end_note, sizeof(sc->end_note), "unreadable %s "
					 "record at offset %" PRIu64 "; the rest of the shard "
					 "is ignored", type == 'x' ? "pax" : "GNU long-name", off);
				break;
			}
		} else if (type != 'g' && type != 'K') {
			if (pd->have_name)
				memcpy(name, pd->name, strlen(pd->name) + 1);
			else
				header_name(h, name);
			rc = add_member(sc, g, fd, name, type, data, size);
			if (rc)
				goto out_free;
			memset(pd, 0, sizeof(*pd));
		}
		off = next;
	}
	rc = emit(sc, g);
out_free:
	free(g);
	free(pd);
	free(name);
	return rc;
}

static int cmp_key(const void *a, const void *b, void *ctx)
{
	const struct scan *sc = ctx;
	const struct rec *x = &sc->recs[*(const uint32_t *)a];
	const struct rec *y = &sc->recs[*(const uint32_t *)b];
	size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
	int c = memcmp(sc->names + x->name_off, sc->names + y->name_off, n);

	if (c)
		return c;
	if (x->key_len != y->key_len)
		return x->key_len < y->key_len ? -1 : 1;
	return *(const uint32_t *)a < *(const uint32_t *)b ? -1 : 1;
}

/* A key seen twice in one shard: keep the first sample, drop the later. */
static int drop_dup_keys(struct scan *sc)
{
	uint32_t *idx;
	uint8_t *drop;
	size_t k = 0;

	if (sc->n < 2)
		return 0;
	idx = malloc(sc->n * sizeof(*idx));
	drop = calloc(sc->n, 1);
	if (!idx || !drop) {
		free(idx);
		free(drop);
		return -ENOMEM;
	}
	for (size_t i = 0; i < sc->n; i++)
		idx[i] = (uint32_t)i;
	qsort_r(idx, sc->n, sizeof(*idx), cmp_key, sc);
	for (size_t i = 1; i < sc->n; i++) {
		const struct rec *a = &sc->recs[idx[i - 1]], *b = &sc->recs[idx[i]];
		if (a->key_len == b->key_len &&
		    memcmp(sc->names + a->name_off, sc->names + b->name_off, a->key_len) == 0) {
			drop[idx[i]] = 1;
			note(sc, P_DUP_KEY, sc->names + b->name_off);
		}
	}
	for (size_t i = 0; i < sc->n; i++)
		if (!drop[i])
			sc->recs[k++] = sc->recs[i];
	sc->n = k;
	free(idx);
	free(drop);
	return 0;
}

void tarindex_free(struct scan *sc)
{
	free(sc->recs);
	free(sc->names);
	memset(sc, 0, sizeof(*sc));
}

/* ---- the per-shard cache file ------------------------------------------ */

struct cache_hdr {
	char magic[8];
	uint64_t size;
	int64_t mtime_s, mtime_ns;
	uint64_t n, names_len;
	uint64_t counts[N_PROBLEMS];
	char first[N_PROBLEMS][128];
	char end_note[256];
};

static int cache_path(const char *shard, const char *dir, char *out, size_t len)
{
	int n;

	if (!dir) {
		n = snprintf(out, len, "%s%s", shard, CACHE_SUFFIX);
	} else {
		char real[PATH_MAX], hex[2 * DIGEST_SIZE + 1];
		uint8_t d[DIGEST_SIZE];
		sha256_t s;

		if (!realpath(shard, real))
			return -errno;
		sha256_init(&s);
		sha256_update(&s, real, strlen(real));
		sha256_final(&s, d);
		digest_hex(d, hex);
		n = snprintf(out, len, "%s/%s%s", dir, hex, CACHE_SUFFIX);
	}
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* 0 when the cache at path matches st and was loaded into sc. */
static int cache_load(const char *path, const struct stat *st, struct scan *sc)
{
	struct cache_hdr h;
	struct stat cs;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	int rc = -EINVAL;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &cs) || !S_ISREG(cs.st_mode) ||
	    tar_pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h) ||
	    memcmp(h.magic, CACHE_MAGIC, 8) || h.size != (uint64_t)st->st_size ||
	    h.mtime_s != (int64_t)st->st_mtim.tv_sec ||
	    h.mtime_ns != (int64_t)st->st_mtim.tv_nsec ||
	    h.n > UINT32_MAX || h.names_len > UINT32_MAX ||
	    (uint64_t)cs.st_size != sizeof(h) + h.n * sizeof(struct rec) + h.names_len)
		goto out_close;
	sc->recs = malloc(h.n ? h.n * sizeof(struct rec) : 1);
	sc->names = malloc(h.names_len ? h.names_len : 1);
	if (!sc->recs || !sc->names) {
		rc = -ENOMEM;
		goto out_close;
	}
	size_t rb = h.n * sizeof(struct rec);
	if (tar_pread(fd, sc->recs, rb, sizeof(h)) != (ssize_t)rb ||
	    tar_pread(fd, sc->names, h.names_len, sizeof(h) + rb) != (ssize_t)h.names_len)
		goto out_close;
	if (h.names_len && sc->names[h.names_len - 1] != '\0')
		goto out_close;
	for (uint64_t i = 0; i < h.n; i++)  /* every name inside the arena */
		if (sc->recs[i].name_off >= h.names_len ||
		    sc->recs[i].key_len >= h.names_len - sc->recs[i].name_off ||
		    sc->recs[i].label < 0)
			goto out_close;
	sc->n = sc->cap = h.n;
	sc->cap *= sizeof(struct rec);
	sc->names_len = sc->names_cap = h.names_len;
	memcpy(sc->counts, h.counts, sizeof(h.counts));
	memcpy(sc->first, h.first, sizeof(h.first));
	memcpy(sc->end_note, h.end_note, sizeof(h.end_note));
	for (int p = 0; p < N_PROBLEMS; p++)
		sc->first[p][sizeof(sc->first[p]) - 1] = '\0';
	sc->end_note[sizeof(sc->end_note) - 1] = '\0';
	rc = 0;
out_close:
	close(fd);
	if (rc)
		tarindex_free(sc);
	return rc;
}

/* Written to a temporary name and renamed: readers see all or nothing. */
static int cache_save(const char *path, const struct stat *st, const struct scan *sc)
{
	struct cache_hdr h;
	char tmp[PATH_MAX];
	int fd, rc = 0;

	memset(&h, 0, sizeof(h));
	memcpy(h.magic, CACHE_MAGIC, 8);
	h.size = (uint64_t)st->st_size;
	h.mtime_s = st->st_mtim.tv_sec;
	h.mtime_ns = st->st_mtim.tv_nsec;
	h.n = sc->n;
	h.names_len = sc->names_len;
	memcpy(h.counts, sc->counts, sizeof(h.counts));
	memcpy(h.first, sc->first, sizeof(h.first));
	memcpy(h.end_note, sc->end_note, sizeof(h.end_note));
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid()) >= sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return -errno;
	const void *parts[3] = { &h, sc->recs, sc->names };
	size_t lens[3] = { sizeof(h), sc->n * sizeof(struct rec), sc->names_len };
	for (int i = 0; i < 3 && rc == 0; i++) {
		size_t done = 0;
		while (done < lens[i]) {
			ssize_t w = write(fd, (const char *)parts[i] + done, lens[i] - done);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				rc = w < 0 ? -errno : -EIO;
				break;
			}
			done += (size_t)w;
		}
	}
	if (close(fd) && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path))
		rc = -errno;
	if (rc)
		unlink(tmp);
	return rc;
}

/* ---- loading ----------------------------------------------------------- */

static bool ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);

	return a >= b && strcasecmp(s + a - b, suf) == 0;
}

static const char *compressed(const char *path, const uint8_t *m, size_t n)
{
	static const char *const sufs[] = { ".gz", ".tgz", ".bz2", ".xz", ".zst", ".lz4", NULL };

	for (int i = 0; sufs[i]; i++)
		if (ends_with(path, sufs[i]))
			return sufs[i] + 1;
	if (n >= 2 && m[0] == 0x1f && m[1] == 0x8b)
		return "gzip";
	if (n >= 3 && memcmp(m, "BZh", 3) == 0)
		return "bzip2";
	if (n >= 6 && memcmp(m, "\xfd" "7zXZ\0", 6) == 0)
		return "xz";
	if (n >= 4 && memcmp(m, "\x28\xb5\x2f\xfd", 4) == 0)
		return "zstd";
	return NULL;
}

/* Index one shard (cache or scan) into sc; *st its stat. */
int tarindex_shard(const char *path, const char *cache_dir, struct scan *sc,
		       struct stat *st, bool *cached, char *err, size_t errlen)
{
	char cpath[PATH_MAX];
	uint8_t magic[8];
	const char *z;
	int fd, rc;

	*cached = false;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0 || fstat(fd, st)) {
		rc = -errno;
		errbuf_fail(err, errlen, "shards: cannot open '%s': %s", path, strerror(-rc));
		goto out_close;
	}
	if (!S_ISREG(st->st_mode)) {
		errbuf_fail(err, errlen, "shards: '%s' is not a regular file", path);
		rc = -EINVAL;
		goto out_close;
	}
	ssize_t mr = tar_pread(fd, magic, sizeof(magic), 0);
	if ((z = compressed(path, magic, mr > 0 ? (size_t)mr : 0))) {
		errbuf_fail(err, errlen, "shards: '%s' is compressed (%s): a compressed tar "
			    "cannot be read at an offset; decompress it (e.g. gunzip) and "
			    "point shards at the .tar files", path, z);
		rc = -ENOTSUP;
		goto out_close;
	}
	rc = cache_path(path, cache_dir, cpath, sizeof(cpath));
	if (rc == 0 && cache_load(cpath, st, sc) == 0) {
		*cached = true;
		goto out_close;
	}
	memset(sc, 0, sizeof(*sc));
	rc = scan_tar(fd, (uint64_t)st->st_size, sc);
	if (rc == 0)
		rc = drop_dup_keys(sc);
	if (rc) {
		errbuf_fail(err, errlen, "shards: cannot index '%s': %s", path, strerror(-rc));
		goto out_close;
	}
	int wr = cache_save(cpath, st, sc);
	if (wr)
		log_info("shards: cannot write the index cache '%s': %s (set index_cache "
			 "to a writable folder)", cpath, strerror(-wr));
out_close:
	if (fd >= 0)
		close(fd);
	return rc;
}
