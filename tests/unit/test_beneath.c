/*
 * test_beneath.c — beneath_open() in a temporary tree, with openat2 and
 * with the component walk that stands in for it on older kernels: the
 * same paths must give the same answers.
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
#include <unistd.h>
#include <cmocka.h>

#include "beneath.h"

static char base[PATH_MAX], root[PATH_MAX + 8];

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

static void put(const char *rel, const char *text)
{
	char p[2 * PATH_MAX];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", base, rel);
	f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void dir(const char *rel)
{
	char p[2 * PATH_MAX];

	snprintf(p, sizeof(p), "%s/%s", base, rel);
	assert_int_equal(mkdir(p, 0755), 0);
}

/* base/rel -> target; "@" in target stands for base */
static void lnk(const char *target, const char *rel)
{
	char p[2 * PATH_MAX], t[2 * PATH_MAX];

	snprintf(p, sizeof(p), "%s/%s", base, rel);
	if (target[0] == '@')
		snprintf(t, sizeof(t), "%s%s", base, target + 1);
	else
		snprintf(t, sizeof(t), "%s", target);
	assert_int_equal(symlink(t, p), 0);
}

static int setup(void **state)
{
	(void)state;
	strcpy(base, "/tmp/cutmixd-beneath-XXXXXX");
	assert_non_null(mkdtemp(base));
	snprintf(root, sizeof(root), "%s/root", base);
	dir("root");
	dir("root/a");
	dir("outside");
	put("root/a/f", "inside");
	put("outside/f", "outside");
	lnk("a/f", "root/in");                  /* relative, stays in */
	lnk("@/root/a/f", "root/abs_in");       /* absolute, points in */
	lnk("../outside/f", "root/out");        /* climbs out */
	lnk("../outside/later", "root/dang_out"); /* dangling, would leave */
	lnk("a/missing", "root/dang_in");       /* dangling, stays in */
	lnk("loop", "root/loop");               /* itself */
	lnk("a", "root/dirlink");
	lnk("../outside", "root/dirout");
	lnk("..", "root/a/up");                 /* to the root: still inside */
	lnk("../..", "root/a/up2");             /* above the root */
	lnk("/proc/self/fd/0", "root/magic");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	nftw(base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

struct want {
	const char *rel;
	int rc;              /* 0: opens, and reads `text` */
	const char *text;
};

static const struct want cases[] = {
	{ "a/f", 0, "inside" },
	{ "in", 0, "inside" },
	{ "./a//f", 0, "inside" },
	{ "a/../a/f", 0, "inside" },
	{ "dirlink/f", 0, "inside" },
	{ "a/up/a/f", 0, "inside" },
	{ "abs_in", -EXDEV, NULL },
	{ "out", -EXDEV, NULL },
	{ "dang_out", -EXDEV, NULL },
	{ "dirout/f", -EXDEV, NULL },
	{ "a/up2/outside/f", -EXDEV, NULL },
	{ "../outside/f", -EXDEV, NULL },
	{ "a/../../outside/f", -EXDEV, NULL },
	{ "/etc/passwd", -EXDEV, NULL },
	{ "magic", -EXDEV, NULL },
	{ "dang_in", -ENOENT, NULL },
	{ "nope", -ENOENT, NULL },
	{ "a/f/x", -ENOTDIR, NULL },
	{ "loop", -ELOOP, NULL },
};

static void run_cases(void)
{
	int rfd = open(root, O_RDONLY | O_DIRECTORY);

	assert_true(rfd >= 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct want *w = &cases[i];
		int fd = beneath_open(rfd, w->rel, O_RDONLY, false);
		char buf[64] = "";

		if ((w->rc == 0) != (fd >= 0) || (w->rc && fd != w->rc))
			print_error("'%s': got %d (%s), want %d\n", w->rel, fd,
				    fd < 0 ? strerror(-fd) : "ok", w->rc);
		if (w->rc) {
			assert_int_equal(fd, w->rc);
			continue;
		}
		assert_true(fd >= 0);
		assert_true(read(fd, buf, sizeof(buf) - 1) > 0);
		assert_string_equal(buf, w->text);
		close(fd);
	}
	/* O_PATH works the same (the index uses it) */
	int fd = beneath_open(rfd, "in", O_PATH, false);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(beneath_open(rfd, "out", O_PATH, false), -EXDEV);

	/* follow: links go anywhere */
	fd = beneath_open(rfd, "out", O_RDONLY, true);
	assert_true(fd >= 0);
	char buf[64] = "";
	assert_true(read(fd, buf, sizeof(buf) - 1) > 0);
	assert_string_equal(buf, "outside");
	close(fd);
	close(rfd);
}

static void test_openat2(void **state)
{
	(void)state;
	beneath_force_fallback(false);
	run_cases();
}

static void test_walk(void **state)
{
	(void)state;
	beneath_force_fallback(true);
	run_cases();
	beneath_force_fallback(false);
}

static void test_messages(void **state)
{
	(void)state;
	assert_non_null(strstr(beneath_strerror(-EXDEV), "leaves the dataset root"));
	assert_non_null(strstr(beneath_strerror(-EXDEV), "follow_symlinks"));
	assert_string_equal(beneath_strerror(-ENOENT), strerror(ENOENT));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_openat2),
		cmocka_unit_test(test_walk),
		cmocka_unit_test(test_messages),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
