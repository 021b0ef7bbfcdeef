/*
 * test_dataset.c — folder scans and manifests built in temporary trees:
 * order, labels, class names, containment, errors, and memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <linux/capability.h>
#include <cmocka.h>

#include "dataset.h"
#include "digest.h"
#include "log.h"
#include "test_util.h"

/* ---- helpers ----------------------------------------------------------- */

/* snprintf that fails the test instead of truncating. */
static void fmt(char *buf, size_t len, const char *f, ...)
	__attribute__((format(printf, 3, 4)));

static void fmt(char *buf, size_t len, const char *f, ...)
{
	va_list ap;
	int n;

	va_start(ap, f);
	n = vsnprintf(buf, len, f, ap);
	va_end(ap);
	assert_true(n >= 0 && (size_t)n < len);
}

static char logbuf[8192];

static void log_capture(enum log_level lvl, const char *line, void *ctx)
{
	size_t n = strlen(logbuf);
	(void)lvl;
	(void)ctx;
	snprintf(logbuf + n, sizeof(logbuf) - n, "%s\n", line);
}

struct tree {
	char root[PATH_MAX];  /* the dataset root */
	char base[PATH_MAX];  /* temp folder holding root and "outside" */
};

static void tree_new(struct tree *t)
{
	tu_mkdtemp(t->base, "cutmixd-ds");
	fmt(t->root, sizeof(t->root), "%s/root", t->base);
	assert_int_equal(mkdir(t->root, 0755), 0);
}

static void tree_free(struct tree *t)
{
	tu_rmtree(t->base);
}

/* mkdir -p for every folder of base/rel, then (if !dir) an empty file. */
static void make_at(const char *base, const char *rel, int dir)
{
	char p[PATH_MAX];

	fmt(p, sizeof(p), "%s/%s", base, rel);
	for (char *s = p + strlen(base) + 1; *s; s++) {
		if (*s == '/') {
			*s = '\0';
			if (mkdir(p, 0755) != 0)
				assert_int_equal(errno, EEXIST);
			*s = '/';
		}
	}
	if (dir) {
		if (mkdir(p, 0755) != 0)
			assert_int_equal(errno, EEXIST);
	} else {
		FILE *f = fopen(p, "w");
		assert_non_null(f);
		fputs("not really a jpeg", f);
		fclose(f);
	}
}

static void mk(const struct tree *t, const char *rel)
{
	make_at(t->root, rel, 0);
}

static void mkd(const struct tree *t, const char *rel)
{
	make_at(t->root, rel, 1);
}

static void mk_outside(const struct tree *t, const char *rel)
{
	make_at(t->base, rel, 0);
}

/* symlink root/rel -> target (target as given: relative to the link, or
 * absolute if it starts with '/'; "@/" means base/...). */
static void ln(const struct tree *t, const char *target, const char *rel)
{
	char p[PATH_MAX], tg[PATH_MAX];

	fmt(p, sizeof(p), "%s/%s", t->root, rel);
	if (strncmp(target, "@/", 2) == 0)
		fmt(tg, sizeof(tg), "%s/%s", t->base, target + 2);
	else
		fmt(tg, sizeof(tg), "%s", target);
	assert_int_equal(symlink(tg, p), 0);
}

static void manifest_path(const struct tree *t, char *buf, size_t len)
{
	fmt(buf, len, "%s/labels.tsv", t->base);
}

static int open_ds(const char *root, const char *manifest, bool follow,
		   dataset_t **ds, char *err, size_t errlen)
{
	struct dataset_cfg cfg;

	memset(&cfg, 0, sizeof(cfg));
	strcpy(cfg.name, "default");
	cfg.root = (char *)root;
	cfg.manifest = (char *)manifest;
	cfg.follow_symlinks = follow;
	err[0] = '\0';
	logbuf[0] = '\0';
	return dataset_open(&cfg, ds, err, errlen);
}

static void digest_of(const dataset_t *ds, char hex[2 * DIGEST_SIZE + 1])
{
	sha256_t s;
	uint8_t d[DIGEST_SIZE];

	sha256_init(&s);
	dataset_digest(ds, &s);
	sha256_final(&s, d);
	digest_hex(d, hex);
}

static void expect_entries(const dataset_t *ds, const char *const *paths,
			   const int32_t *labels, uint32_t n)
{
	assert_int_equal(dataset_size(ds), n);
	for (uint32_t i = 0; i < n; i++) {
		assert_string_equal(dataset_path(ds, i), paths[i]);
		assert_int_equal(dataset_label(ds, i), labels[i]);
	}
}

static int setup(void **state)
{
	(void)state;
	log_set_sink(log_capture, NULL);
	log_set_level(LOGL_DEBUG);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	log_set_sink(NULL, NULL);
	log_set_level(LOGL_INFO);
	return 0;
}

/*
 * Permissions bind root only without CAP_DAC_OVERRIDE and
 * CAP_DAC_READ_SEARCH: take them out of (or back into) the effective set,
 * so that the unreadable-folder cases run as root too. Returns false when
 * that is not possible (then the caller checks geteuid()).
 */
static bool dac_override(bool on)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	uint32_t bits = (1u << CAP_DAC_OVERRIDE) | (1u << CAP_DAC_READ_SEARCH);

	if (syscall(SYS_capget, &h, d) != 0)
		return false;
	if (on)
		d[0].effective |= bits & d[0].permitted;
	else
		d[0].effective &= ~bits;
	return syscall(SYS_capset, &h, d) == 0;
}

/* Can this process be refused by permissions right now? */
static bool permissions_bind(void)
{
	return geteuid() != 0 || dac_override(false);
}

/* ---- folder scan ------------------------------------------------------- */

static void make_basic_tree(struct tree *t)
{
	tree_new(t);
	mk(t, "cat/b.jpg");
	mk(t, "cat/a.JPEG");
	mk(t, "cat/sub/c.jpg");
	mk(t, "cat/sub/deeper/d.Jpg");
	mk(t, "cat/sub/deeper/notes.txt");
	mk(t, "cat/notes.txt");
	mk(t, "cat/x.png");
	mk(t, "cat/jpg");
	mk(t, "cat/.hidden.jpg");
	mk(t, "cat/.hiddendir/e.jpg");
	mk(t, "cat/f.jpg.bak");
	mkd(t, "cat/emptydir");
	mk(t, "dog/z.jpeg");
	mk(t, "dog/A.jpg");
	mk(t, "dog/B.jPeG");
	mk(t, "Bird/q.jpg");
	mk(t, ".git/h.jpg");
	mk(t, "top.jpg");
	mk(t, "README");
	mkd(t, "empty/nothing");
}

static void test_scan_order(void **state)
{
	static const char *const paths[] = {
		"Bird/q.jpg",
		"cat/a.JPEG", "cat/b.jpg", "cat/sub/c.jpg", "cat/sub/deeper/d.Jpg",
		"cat/x.png",
		"dog/A.jpg", "dog/B.jPeG", "dog/z.jpeg",
	};
	static const int32_t labels[] = { 0, 1, 1, 1, 1, 1, 2, 2, 2 };
	struct tree t;
	dataset_t *ds = NULL;
	char err[512], buf[PATH_MAX], want[PATH_MAX];
	(void)state;

	make_basic_tree(&t);
	assert_int_equal(open_ds(t.root, NULL, false, &ds, err, sizeof(err)), 0);
	assert_non_null(ds);
	expect_entries(ds, paths, labels, 9);
	/* regular files under class folders that are not images: counted and
	 * named (hidden ones and files at the top level are not) */
	assert_int_equal(dataset_skipped(ds), 4);
	assert_non_null(dataset_skipped_path(ds, 3));
	assert_null(dataset_skipped_path(ds, 4));
	assert_non_null(strstr(logbuf, "skipped 4 files"));

	assert_int_equal(dataset_num_classes(ds), 4);
	assert_string_equal(dataset_class_name(ds, 0), "Bird");
	assert_string_equal(dataset_class_name(ds, 1), "cat");
	assert_string_equal(dataset_class_name(ds, 2), "dog");
	assert_string_equal(dataset_class_name(ds, 3), "empty");
	assert_null(dataset_class_name(ds, 4));
	assert_non_null(strstr(logbuf, "class 'empty' has no image files"));

	assert_string_equal(dataset_root(ds), t.root);
	fmt(want, sizeof(want), "%s/cat/sub/deeper/d.Jpg", t.root);
	assert_ptr_equal(dataset_full_path(ds, 4, buf, sizeof(buf)), buf);
	assert_string_equal(buf, want);
	assert_null(dataset_full_path(ds, 4, buf, strlen(want)));
	assert_non_null(dataset_full_path(ds, 4, buf, strlen(want) + 1));
	assert_null(dataset_full_path(ds, 9, buf, sizeof(buf)));
	assert_null(dataset_path(ds, 9));
	assert_int_equal(dataset_label(ds, 9), -1);

	/* trailing slashes on the root change nothing */
	char hex1[65], hex2[65], root2[PATH_MAX];
	digest_of(ds, hex1);
	dataset_destroy(&ds);
	assert_null(ds);
	dataset_destroy(&ds);
	dataset_destroy(NULL);

	fmt(root2, sizeof(root2), "%s//", t.root);
	assert_int_equal(open_ds(root2, NULL, false, &ds, err, sizeof(err)), 0);
	expect_entries(ds, paths, labels, 9);
	assert_string_equal(dataset_root(ds), t.root);
	assert_non_null(dataset_full_path(ds, 4, buf, sizeof(buf)));
	assert_string_equal(buf, want);
	digest_of(ds, hex2);
	assert_string_equal(hex1, hex2);
	dataset_destroy(&ds);

	/* one more file changes the digest */
	mk(&t, "dog/zz.jpg");
	assert_int_equal(open_ds(t.root, NULL, false, &ds, err, sizeof(err)), 0);
	assert_int_equal(dataset_size(ds), 10);
	digest_of(ds, hex2);
	assert_string_not_equal(hex1, hex2);
	dataset_destroy(&ds);
	tree_free(&t);
}

static void test_scan_symlinks(void **state)
{
	struct tree t;
	dataset_t *ds = NULL;
	char err[512];
	(void)state;

	tree_new(&t);
	mk(&t, "cat/real.jpg");
	mk(&t, "dog/d.jpg");
	mk_outside(&t, "outside/secret.jpg");
	mk_outside(&t, "outside/more/s2.jpg");
	mk_outside(&t, "elsewhere/cls/x.jpg");
	ln(&t, "../dog/d.jpg", "cat/in.jpg");          /* inside: kept */
	ln(&t, "@/outside/secret.jpg", "cat/out.jpg");  /* leaves root */
	ln(&t, "@/outside/more", "cat/outdir");         /* folder outside */
	ln(&t, "../dog", "cat/dogdir");                 /* folder inside */
	ln(&t, "@/elsewhere/cls", "zlinked");           /* class outside */
	ln(&t, "missing.jpg", "cat/dangling.jpg");      /* dangling */
	ln(&t, ".", "dog/loop");                        /* loop */

	assert_int_equal(open_ds(t.root, NULL, false, &ds, err, sizeof(err)), 0);
	{
		static const char *const paths[] = {
			"cat/dogdir/d.jpg", "cat/in.jpg", "cat/real.jpg", "dog/d.jpg",
		};
		static const int32_t labels[] = { 0, 0, 0, 1 };
		expect_entries(ds, paths, labels, 4);
		assert_int_equal(dataset_num_classes(ds), 2);
	}
	assert_non_null(strstr(logbuf, "'cat/out.jpg': symlink leads outside"));
	assert_non_null(strstr(logbuf, "'cat/outdir': symlink leads outside"));
	assert_non_null(strstr(logbuf, "'zlinked': symlink leads outside"));
	assert_non_null(strstr(logbuf, "'dog/loop': symlink loop"));
	dataset_destroy(&ds);

	assert_int_equal(open_ds(t.root, NULL, true, &ds, err, sizeof(err)), 0);
	{
		static const char *const paths[] = {
			"cat/dogdir/d.jpg", "cat/in.jpg", "cat/out.jpg",
			"cat/outdir/s2.jpg", "cat/real.jpg", "dog/d.jpg", "zlinked/x.jpg",
		};
		static const int32_t labels[] = { 0, 0, 0, 0, 0, 1, 2 };
		expect_entries(ds, paths, labels, 7);
		assert_int_equal(dataset_num_classes(ds), 3);
		assert_string_equal(dataset_class_name(ds, 2), "zlinked");
	}
	dataset_destroy(&ds);

	/* a root that is itself a link: containment uses its real path */
	char lroot[PATH_MAX];
	fmt(lroot, sizeof(lroot), "%s/rootlink", t.base);
	assert_int_equal(symlink(t.root, lroot), 0);
	assert_int_equal(open_ds(lroot, NULL, false, &ds, err, sizeof(err)), 0);
	assert_int_equal(dataset_size(ds), 4);
	assert_string_equal(dataset_root(ds), lroot);
	dataset_destroy(&ds);
	tree_free(&t);
}

/*
 * 36 levels, each folder holding two links to the next: 2^36 paths to one
 * file. Each real folder is walked once per class, so the scan indexes
 * the file once (under the first path in byte-wise order), plus once per
 * file link, and finishes at once.
 */
static void test_scan_link_dag(void **state)
{
	enum { LEVELS = 36 };
	struct tree t;
	dataset_t *ds = NULL;
	char err[512], rel[64], tg[64], want[PATH_MAX];
	struct timespec t0, t1;
	(void)state;

	tree_new(&t);
	for (int i = 0; i < LEVELS; i++) {
		fmt(rel, sizeof(rel), "cls/d%02d", i);
		mkd(&t, rel);
		if (i + 1 < LEVELS) {
			fmt(tg, sizeof(tg), "../d%02d", i + 1);
			fmt(rel, sizeof(rel), "cls/d%02d/a", i);
			ln(&t, tg, rel);
			fmt(rel, sizeof(rel), "cls/d%02d/b", i);
			ln(&t, tg, rel);
		}
	}
	fmt(rel, sizeof(rel), "cls/d%02d/f.jpg", LEVELS - 1);
	mk(&t, rel);
	fmt(rel, sizeof(rel), "cls/d%02d/g.jpg", LEVELS - 1);
	ln(&t, "f.jpg", rel);
	mk(&t, "other/o.jpg");
	ln(&t, "../cls/d00", "other/tree"); /* another class: walked again */

	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(open_ds(t.root, NULL, false, &ds, err, sizeof(err)), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	print_message("      36-level link DAG indexed in %.3f s\n", s);
	assert_true(s < 5.0);

	assert_int_equal(dataset_size(ds), 5);
	strcpy(want, "cls/d00");
	for (int i = 1; i < LEVELS; i++)
		strcat(want, "/a");
	strcat(want, "/f.jpg");
	assert_string_equal(dataset_path(ds, 0), want);
	want[strlen(want) - 5] = 'g';
	assert_string_equal(dataset_path(ds, 1), want);
	assert_int_equal(dataset_label(ds, 1), 0);
	assert_string_equal(dataset_path(ds, 2), "other/o.jpg");
	assert_int_equal(dataset_label(ds, 2), 1);
	assert_int_equal(strncmp(dataset_path(ds, 3), "other/tree/a/a/", 15), 0);
	assert_int_equal(dataset_label(ds, 4), 1);
	assert_non_null(strstr(logbuf, "folder already indexed under another path"));
	dataset_destroy(&ds);
	tree_free(&t);
}

/* A link swapped in after the index was built is refused when the sample
 * is opened (the index was right when it was built; the open is what
 * counts). */
static void test_open_sample_contained(void **state)
{
	struct tree t;
	dataset_t *ds = NULL;
	char err[512], p[PATH_MAX], q[PATH_MAX];
	(void)state;

	tree_new(&t);
	mk(&t, "cat/a.jpg");
	mk(&t, "dog/b.jpg");
	mk_outside(&t, "outside/a.jpg");
	mk_outside(&t, "outside/b.jpg");
	assert_int_equal(open_ds(t.root, NULL, false, &ds, err, sizeof(err)), 0);
	int fd = dataset_open_sample(ds, 0);
	assert_true(fd >= 0);
	close(fd);

	/* a file replaced by a link out */
	fmt(p, sizeof(p), "%s/cat/a.jpg", t.root);
	assert_int_equal(unlink(p), 0);
	ln(&t, "@/outside/a.jpg", "cat/a.jpg");
	assert_int_equal(dataset_open_sample(ds, 0), -EXDEV);
	/* a class folder replaced by a (relative) link out */
	fmt(p, sizeof(p), "%s/dog", t.root);
	fmt(q, sizeof(q), "%s/dog.old", t.base);
	assert_int_equal(rename(p, q), 0);
	ln(&t, "../outside", "dog");
	assert_int_equal(dataset_open_sample(ds, 1), -EXDEV);
	dataset_destroy(&ds);

	/* follow_symlinks: both allowed */
	assert_int_equal(open_ds(t.root, NULL, true, &ds, err, sizeof(err)), 0);
	assert_int_equal(dataset_size(ds), 3); /* cat/a.jpg, dog/a.jpg, dog/b.jpg */
	fd = dataset_open_sample(ds, 2);
	assert_true(fd >= 0);
	close(fd);
	dataset_destroy(&ds);
	tree_free(&t);
}

/* The digest follows file size and mtime (or the bytes, digest_contents). */
static void test_digest_stamps(void **state)
{
	struct tree t;
	dataset_t *ds = NULL;
	struct dataset_cfg cfg;
	char err[512], p[PATH_MAX], h1[65], h2[65], h3[65], c1[65], c2[65];
	struct timespec times[2] = { { 1000, 0 }, { 1000, 0 } };
	(void)state;

	tree_new(&t);
	mk(&t, "cat/a.jpg");
	fmt(p, sizeof(p), "%s/cat/a.jpg", t.root);
	assert_int_equal(utimensat(AT_FDCWD, p, times, 0), 0);
	assert_int_equal(open_ds(t.root, NULL, false, &ds, err, sizeof(err)), 0);
	digest_of(ds, h1);
	dataset_destroy(&ds);

	tu_write_file(p, "other bytes, same name");
	assert_int_equal(utimensat(AT_FDCWD, p, times, 0), 0);
	assert_int_equal(open_ds(t.root, NULL, false, &ds, err, sizeof(err)), 0);
	digest_of(ds, h2);
	dataset_destroy(&ds);
	assert_string_not_equal(h1, h2); /* the size changed */

	times[1].tv_nsec = 1;
	assert_int_equal(utimensat(AT_FDCWD, p, times, 0), 0);
	assert_int_equal(open_ds(t.root, NULL, false, &ds, err, sizeof(err)), 0);
	digest_of(ds, h3);
	dataset_destroy(&ds);
	assert_string_not_equal(h2, h3); /* one nanosecond of mtime */

	/* digest_contents: the bytes count, the mtime does not */
	memset(&cfg, 0, sizeof(cfg));
	strcpy(cfg.name, "default");
	cfg.root = t.root;
	cfg.digest_contents = true;
	assert_int_equal(dataset_open(&cfg, &ds, err, sizeof(err)), 0);
	digest_of(ds, c1);
	dataset_destroy(&ds);
	times[1].tv_sec = 5000;
	assert_int_equal(utimensat(AT_FDCWD, p, times, 0), 0);
	assert_int_equal(dataset_open(&cfg, &ds, err, sizeof(err)), 0);
	digest_of(ds, c2);
	dataset_destroy(&ds);
	assert_string_equal(c1, c2);
	assert_string_not_equal(c1, h3);
	tu_write_file(p, "other bytez, same name");
	assert_int_equal(dataset_open(&cfg, &ds, err, sizeof(err)), 0);
	digest_of(ds, c2);
	dataset_destroy(&ds);
	assert_string_not_equal(c1, c2);
	tree_free(&t);
}

/* ---- manifests --------------------------------------------------------- */

static void test_manifest_names(void **state)
{
	static const char *const paths[] = {
		"z/last.jpg", "a/first.JPEG", "a/b/c.jpg", "not-a-jpeg.png", "z/last.jpg",
	};
	static const int32_t labels[] = { 2, 0, 1, 0, 2 };
	struct tree t;
	dataset_t *ds = NULL;
	char err[512], man[PATH_MAX], buf[PATH_MAX];
	(void)state;

	tree_new(&t);
	mk(&t, "a/first.JPEG");
	manifest_path(&t, man, sizeof(man));
	tu_write_file(man,
		   "\xEF\xBB\xBF# path\tclass\r\n"
		   "z/last.jpg\tzebra\r\n"
		   "\r\n"
		   "a/first.JPEG\tant\n"
		   "   \n"
		   "a/b/c.jpg\tbee\n"
		   "not-a-jpeg.png\tant\n"
		   "z/last.jpg\tzebra"); /* no final newline; a duplicate */
	assert_int_equal(open_ds(t.root, man, false, &ds, err, sizeof(err)), 0);
	expect_entries(ds, paths, labels, 5);
	assert_int_equal(dataset_num_classes(ds), 3);
	assert_string_equal(dataset_class_name(ds, 0), "ant");
	assert_string_equal(dataset_class_name(ds, 1), "bee");
	assert_string_equal(dataset_class_name(ds, 2), "zebra");
	assert_non_null(dataset_full_path(ds, 2, buf, sizeof(buf)));
	assert_true(strncmp(buf, t.root, strlen(t.root)) == 0);
	assert_string_equal(buf + strlen(t.root), "/a/b/c.jpg");
	dataset_destroy(&ds);

	/* a mix of numbers and names: all names, "10" < "2" < "cat" */
	tu_write_file(man, "x.jpg\t2\ny.jpg\tcat\nz.jpg\t10\n");
	assert_int_equal(open_ds(t.root, man, false, &ds, err, sizeof(err)), 0);
	assert_int_equal(dataset_num_classes(ds), 3);
	assert_string_equal(dataset_class_name(ds, 0), "10");
	assert_string_equal(dataset_class_name(ds, 1), "2");
	assert_string_equal(dataset_class_name(ds, 2), "cat");
	assert_int_equal(dataset_label(ds, 0), 1);
	assert_int_equal(dataset_label(ds, 1), 2);
	assert_int_equal(dataset_label(ds, 2), 0);
	dataset_destroy(&ds);
	tree_free(&t);
}

static void test_manifest_integers(void **state)
{
	static const char *const paths[] = { "a.jpg", "b.jpg", "c.jpg", "d.jpg" };
	static const int32_t labels[] = { 3, 0, 7, 3 };
	struct tree t;
	dataset_t *ds = NULL;
	char err[512], man[PATH_MAX];
	(void)state;

	tree_new(&t);
	manifest_path(&t, man, sizeof(man));
	tu_write_file(man, "a.jpg\t3\nb.jpg\t0\r\nc.jpg\t007\nd.jpg\t3\n");
	assert_int_equal(open_ds(t.root, man, false, &ds, err, sizeof(err)), 0);
	expect_entries(ds, paths, labels, 4);
	assert_int_equal(dataset_num_classes(ds), 8);
	assert_string_equal(dataset_class_name(ds, 0), "0");
	assert_string_equal(dataset_class_name(ds, 7), "7");
	assert_null(dataset_class_name(ds, 8));
	dataset_destroy(&ds);

	/* an index that would make a huge class table is refused */
	tu_write_file(man, "a.jpg\t1\nb.jpg\t99999999999\n");
	assert_int_equal(open_ds(t.root, man, false, &ds, err, sizeof(err)), -EINVAL);
	assert_null(ds);
	assert_non_null(strstr(err, "labels.tsv:2: class index '99999999999' out of range"));
	tree_free(&t);
}

struct bad_case {
	const char *text;
	bool follow;
	int rc;
	const char *msg; /* after "labels.tsv" */
};

static void test_manifest_errors(void **state)
{
	static const char seventeen[] =
		"# header\n"
		"a.jpg\tx\na.jpg\tx\na.jpg\tx\na.jpg\tx\na.jpg\tx\n"
		"a.jpg\tx\na.jpg\tx\na.jpg\tx\na.jpg\tx\na.jpg\tx\n"
		"\n"
		"a.jpg\tx\na.jpg\tx\na.jpg\tx\na.jpg\tx\n"
		"../x.jpg\tx\n"
		"a.jpg\tx\n";
	static const struct bad_case cases[] = {
		{ seventeen, false, -EXDEV, ":17: path '../x.jpg' escapes the dataset root" },
		{ seventeen, true, -EXDEV, ":17: path '../x.jpg' escapes the dataset root" },
		{ "a.jpg\tx\n/etc/passwd\tx\n", true, -EXDEV,
		  ":2: path '/etc/passwd' escapes the dataset root" },
		{ "a/../../x.jpg\tx\n", false, -EXDEV,
		  ":1: path 'a/../../x.jpg' escapes the dataset root" },
		{ "a/..\tx\n", false, -EXDEV, ":1: path 'a/..' escapes the dataset root" },
		{ "cat/evil.jpg\tx\n", false, -EXDEV,
		  ":1: path 'cat/evil.jpg' escapes the dataset root" },
		{ "a.jpg\tx\r\nevildir/secret.jpg\tx\r\n", false, -EXDEV,
		  ":2: path 'evildir/secret.jpg' escapes the dataset root" },
		{ "evildir/no/such/y.jpg\tx\n", false, -EXDEV,
		  ":1: path 'evildir/no/such/y.jpg' escapes the dataset root" },
		/* dangling links are links: their target may appear later */
		{ "cat/later.jpg\tx\n", false, -EXDEV,
		  ":1: path 'cat/later.jpg' escapes the dataset root" },
		{ "cat/later_abs.jpg\tx\n", false, -EXDEV,
		  ":1: path 'cat/later_abs.jpg' escapes the dataset root" },
		{ "a.jpg\tx\nno tab here\n", false, -EINVAL, ":2: expected 'path<TAB>class'" },
		{ "a.jpg\tx\n\tcat\n", false, -EINVAL, ":2: empty path" },
		{ "a.jpg\tx\r\na.jpg\t\r\n", false, -EINVAL, ":2: path 'a.jpg' has an empty class" },
		{ "a.jpg\tb\tc\n", false, -EINVAL, ":1: expected 'path<TAB>class', got more than one tab" },
		{ "# nothing\n\n", false, -ENOENT, "' lists no files" },
		{ "", false, -ENOENT, "' lists no files" },
	};
	struct tree t;
	dataset_t *ds = NULL;
	char err[512], man[PATH_MAX], want[256];
	(void)state;

	tree_new(&t);
	mk(&t, "cat/ok.jpg");
	mk_outside(&t, "outside/secret.jpg");
	ln(&t, "@/outside/secret.jpg", "cat/evil.jpg");
	ln(&t, "@/outside", "evildir");
	ln(&t, "../../outside/later.jpg", "cat/later.jpg");
	ln(&t, "@/outside/later.jpg", "cat/later_abs.jpg");
	manifest_path(&t, man, sizeof(man));

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tu_write_file(man, cases[i].text);
		int rc = open_ds(t.root, man, cases[i].follow, &ds, err, sizeof(err));
		fmt(want, sizeof(want), "labels.tsv%s", cases[i].msg);
		if (rc != cases[i].rc || !strstr(err, want))
			print_error("case %zu: rc %d, err '%s', want '%s'\n", i, rc, err, want);
		assert_int_equal(rc, cases[i].rc);
		assert_non_null(strstr(err, want));
		assert_null(ds);
	}

	/* the exact form, manifest named relative to the working folder */
	char cwd[PATH_MAX];
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(t.base), 0);
	tu_write_file("labels.tsv", seventeen);
	assert_int_equal(open_ds(t.root, "labels.tsv", false, &ds, err, sizeof(err)), -EXDEV);
	assert_string_equal(err, "labels.tsv:17: path '../x.jpg' escapes the dataset root");
	assert_int_equal(chdir(cwd), 0);

	/* the symlinked cases are fine with follow_symlinks */
	tu_write_file(man, "cat/evil.jpg\tx\nevildir/secret.jpg\ty\nevildir/no/such.jpg\ty\n");
	assert_int_equal(open_ds(t.root, man, true, &ds, err, sizeof(err)), 0);
	assert_int_equal(dataset_size(ds), 3);
	dataset_destroy(&ds);

	/* links that stay inside, names with dots, and missing files are fine */
	ln(&t, "ok.jpg", "cat/alias.jpg");
	ln(&t, "cat", "catlink");
	tu_write_file(man, "cat/alias.jpg\tx\ncatlink/ok.jpg\tx\na..b.jpg\tx\n"
		   "./cat/ok.jpg\tx\nmissing/dir/m.jpg\tx\n.hidden.jpg\tx\n");
	assert_int_equal(open_ds(t.root, man, false, &ds, err, sizeof(err)), 0);
	assert_int_equal(dataset_size(ds), 6);
	assert_string_equal(dataset_path(ds, 3), "./cat/ok.jpg");
	dataset_destroy(&ds);
	tree_free(&t);
}

/* ---- start-up errors --------------------------------------------------- */

static void test_open_errors(void **state)
{
	struct tree t;
	dataset_t *ds = (dataset_t *)&ds; /* must be cleared on failure */
	char err[512], p[PATH_MAX], want[PATH_MAX + 64];
	struct dataset_cfg cfg;
	(void)state;

	tree_new(&t);

	/* missing root */
	fmt(p, sizeof(p), "%s/nope", t.base);
	assert_int_equal(open_ds(p, NULL, false, &ds, err, sizeof(err)), -ENOENT);
	assert_null(ds);
	assert_non_null(strstr(err, p));
	assert_non_null(strstr(err, strerror(ENOENT)));

	/* root is a file */
	fmt(p, sizeof(p), "%s/file", t.base);
	tu_write_file(p, "x");
	assert_int_equal(open_ds(p, NULL, false, &ds, err, sizeof(err)), -ENOTDIR);
	assert_non_null(strstr(err, p));

	/* missing manifest */
	fmt(p, sizeof(p), "%s/none.tsv", t.base);
	assert_int_equal(open_ds(t.root, p, false, &ds, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, p));
	assert_non_null(strstr(err, strerror(ENOENT)));

	/* manifest is a folder */
	assert_int_equal(open_ds(t.root, t.base, false, &ds, err, sizeof(err)), -EISDIR);

	/* empty: nothing, then only non-JPEG and hidden files */
	fmt(want, sizeof(want), "dataset 'default': no image files (.jpg .jpeg .png "
	    ".webp) under %s", t.root);
	assert_int_equal(open_ds(t.root, NULL, false, &ds, err, sizeof(err)), -ENOENT);
	assert_string_equal(err, want);
	mk(&t, "cat/a.gif");
	mk(&t, "cat/.b.jpg");
	mk(&t, "c.jpg");
	mk(&t, ".hidden/d.jpg");
	assert_int_equal(open_ds(t.root, NULL, false, &ds, err, sizeof(err)), -ENOENT);
	assert_string_equal(err, want);
	assert_null(ds);

	/* the dataset's name is in the message */
	memset(&cfg, 0, sizeof(cfg));
	strcpy(cfg.name, "imgs");
	cfg.root = t.root;
	assert_int_equal(dataset_open(&cfg, &ds, err, sizeof(err)), -ENOENT);
	fmt(want, sizeof(want), "dataset 'imgs': no image files (.jpg .jpeg .png "
	    ".webp) under %s", t.root);
	assert_string_equal(err, want);

	/* a NULL err buffer is allowed */
	assert_int_equal(dataset_open(&cfg, &ds, NULL, 0), -ENOENT);

	/* An unreadable class folder is skipped with a warning (its class
	 * stays, empty), not an error: one bad folder must not fail every
	 * reload. An unreadable root is an error. */
	if (permissions_bind()) {
		mk(&t, "dog/x.jpg");
		mk(&t, "dog/sub/y.jpg");
		mk(&t, "eel/z.jpg");
		fmt(p, sizeof(p), "%s/dog/sub", t.root);
		assert_int_equal(chmod(p, 0), 0);
		assert_int_equal(open_ds(t.root, NULL, false, &ds, err, sizeof(err)), 0);
		assert_int_equal(dataset_size(ds), 2);
		assert_int_equal(dataset_skipped_dirs(ds), 1);
		assert_string_equal(dataset_path(ds, 0), "dog/x.jpg");
		assert_string_equal(dataset_path(ds, 1), "eel/z.jpg");
		assert_non_null(strstr(logbuf, "skipping folder 'dog/sub': "));
		assert_non_null(strstr(logbuf, strerror(EACCES)));
		assert_non_null(strstr(logbuf, "1 folder could not be read and was skipped"));
		dataset_destroy(&ds);
		assert_int_equal(chmod(p, 0755), 0);

		fmt(p, sizeof(p), "%s/dog", t.root);
		assert_int_equal(chmod(p, 0), 0);
		assert_int_equal(open_ds(t.root, NULL, false, &ds, err, sizeof(err)), 0);
		assert_int_equal(dataset_size(ds), 1);
		assert_int_equal(dataset_num_classes(ds), 3); /* dog stays, empty */
		assert_string_equal(dataset_path(ds, 0), "eel/z.jpg");
		assert_int_equal(dataset_label(ds, 0), 2);
		assert_non_null(strstr(logbuf, "skipping folder 'dog': "));
		assert_non_null(strstr(logbuf, "class 'dog' has no image files"));
		dataset_destroy(&ds);
		assert_int_equal(chmod(p, 0755), 0);

		assert_int_equal(chmod(t.root, 0), 0);
		assert_int_equal(open_ds(t.root, NULL, false, &ds, err, sizeof(err)), -EACCES);
		assert_non_null(strstr(err, t.root));
		assert_int_equal(chmod(t.root, 0755), 0);
		if (geteuid() == 0)
			assert_true(dac_override(true));
	}

	tree_free(&t);
}

/* ---- memory ------------------------------------------------------------ */

static void test_memory(void **state)
{
	enum { N = 200000, CLASSES = 1000 };
	struct tree t;
	dataset_t *ds = NULL;
	char err[512], man[PATH_MAX], line[128];
	size_t path_bytes = 0;
	(void)state;

	tree_new(&t);
	manifest_path(&t, man, sizeof(man));
	for (int pass = 0; pass < 2; pass++) {
		FILE *f = fopen(man, "w");
		assert_non_null(f);
		path_bytes = 0;
		for (int i = 0; i < N; i++) {
			int c = (int)(((unsigned)i * 2654435761u) % CLASSES);
			int n = snprintf(line, sizeof(line), "n%08d/n%08d_%d.JPEG", c, c, i);
			path_bytes += (size_t)n;
			if (pass == 0)
				fprintf(f, "%s\tn%08d\n", line, c);
			else
				fprintf(f, "%s\t%d\n", line, c);
		}
		fclose(f);

		assert_int_equal(open_ds(t.root, man, false, &ds, err, sizeof(err)), 0);
		assert_int_equal(dataset_size(ds), N);
		assert_int_equal(dataset_num_classes(ds), CLASSES);
		size_t mem = dataset_memory(ds);
		print_message("      %s classes: %zu bytes for %d paths of %zu bytes "
			      "(%.1f bytes/entry over the paths)\n",
			      pass ? "integer" : "named", mem, N, path_bytes,
			      (double)(mem - path_bytes) / N);
		assert_true(mem < path_bytes + (size_t)40 * N);
		for (uint32_t i = 0; i < N; i += 9973) {
			int c = (int)((i * 2654435761u) % CLASSES);
			snprintf(line, sizeof(line), "n%08d/n%08d_%u.JPEG", c, c, i);
			assert_string_equal(dataset_path(ds, i), line);
			assert_int_equal(dataset_label(ds, i), c);
		}
		if (pass == 0)
			assert_string_equal(dataset_class_name(ds, 5), "n00000005");
		else
			assert_string_equal(dataset_class_name(ds, 5), "5");
		dataset_destroy(&ds);
	}
	tree_free(&t);
}

/* The digest covers names, paths and labels but not the root. */
static void test_digest(void **state)
{
	struct tree t1, t2;
	dataset_t *a = NULL, *b = NULL;
	char err[512], m1[PATH_MAX], m2[PATH_MAX], h1[65], h2[65];
	(void)state;

	tree_new(&t1);
	tree_new(&t2);
	manifest_path(&t1, m1, sizeof(m1));
	manifest_path(&t2, m2, sizeof(m2));
	tu_write_file(m1, "a.jpg\tcat\nb.jpg\tdog\n");
	tu_write_file(m2, "a.jpg\tcat\nb.jpg\tdog\n");
	assert_int_equal(open_ds(t1.root, m1, false, &a, err, sizeof(err)), 0);
	assert_int_equal(open_ds(t2.root, m2, false, &b, err, sizeof(err)), 0);
	digest_of(a, h1);
	digest_of(b, h2);
	assert_string_equal(h1, h2);
	dataset_destroy(&b);

	static const char *const variants[] = {
		"a.jpg\tdog\nb.jpg\tcat\n",   /* labels swapped */
		"b.jpg\tdog\na.jpg\tcat\n",   /* order */
		"a.jpg\tcat\nb.jpg\tdogs\n",  /* class name */
		"a.jpg\tcat\nb.jpg\tdog\nc.jpg\tdog\n",
		"a.jpg\t0\nb.jpg\t1\n",       /* integers: names "0", "1" */
		"a.jp\tcat\ngb.jpg\tdog\n",   /* same bytes, other split */
	};
	for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
		tu_write_file(m2, variants[i]);
		assert_int_equal(open_ds(t2.root, m2, false, &b, err, sizeof(err)), 0);
		digest_of(b, h2);
		assert_string_not_equal(h1, h2);
		dataset_destroy(&b);
	}
	dataset_destroy(&a);
	tree_free(&t1);
	tree_free(&t2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_scan_order),
		cmocka_unit_test(test_scan_symlinks),
		cmocka_unit_test(test_scan_link_dag),
		cmocka_unit_test(test_open_sample_contained),
		cmocka_unit_test(test_digest_stamps),
		cmocka_unit_test(test_manifest_names),
		cmocka_unit_test(test_manifest_integers),
		cmocka_unit_test(test_manifest_errors),
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test(test_memory),
		cmocka_unit_test(test_digest),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
