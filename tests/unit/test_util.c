/*
 * test_util.c — helpers shared by the unit tests (see test_util.h).
 */
#include "test_util.h"
#include "jpeg_fixtures.h"

#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

static char cur_tmpdir[PATH_MAX];
static char old_cwd[PATH_MAX];

void tu_mkdtemp(char dir[PATH_MAX], const char *tag)
{
	const char *base = getenv("TMPDIR");

	snprintf(dir, PATH_MAX, "%s/%s.XXXXXX", base && *base ? base : "/tmp", tag);
	assert_non_null(mkdtemp(dir));
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	chmod(path, 0700); /* a test may have made it unreadable */
	return remove(path);
}

int tu_rmtree(const char *dir)
{
	/* Folders first made readable again, then removed depth first. */
	return nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int tu_enter_tmpdir(const char *tag)
{
	const char *base = getenv("TMPDIR");

	if (!getcwd(old_cwd, sizeof(old_cwd)))
		return -1;
	snprintf(cur_tmpdir, sizeof(cur_tmpdir), "%s/%s.XXXXXX", base && *base ? base : "/tmp",
		 tag);
	if (!mkdtemp(cur_tmpdir) || chdir(cur_tmpdir))
		return -1;
	return 0;
}

int tu_leave_tmpdir(void)
{
	if (chdir(old_cwd))
		return -1;
	return tu_rmtree(cur_tmpdir);
}

const char *tu_tmpdir(void)
{
	return cur_tmpdir;
}

const char *tu_oldcwd(void)
{
	return old_cwd;
}

void tu_write_bytes(const char *path, const void *data, size_t n)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

void tu_write_file(const char *path, const char *text)
{
	tu_write_bytes(path, text, strlen(text));
}

void tu_write_file_mode(const char *path, const char *text, mode_t mode)
{
	tu_write_file(path, text);
	assert_int_equal(chmod(path, mode), 0);
}

void tu_jpeg_folders(int classes, int per_class, int w0, int h0, unsigned seed_step)
{
	char p[512];

	assert_int_equal(mkdir("data", 0755), 0);
	for (int c = 0; c < classes; c++) {
		snprintf(p, sizeof(p), "data/c%d", c);
		assert_int_equal(mkdir(p, 0755), 0);
		for (int i = 0; i < per_class; i++) {
			struct jpeg_fixture_spec spec = {
				.width = w0 + 4 * i, .height = h0 + 2 * c, .components = 3,
				.seed = (unsigned)c * seed_step + (unsigned)i + 1,
			};
			uint8_t *jpg;
			size_t len;
			assert_int_equal(jpeg_fixture_make(&spec, &jpg, &len), 0);
			snprintf(p, sizeof(p), "data/c%d/img%03d.jpg", c, i);
			tu_write_bytes(p, jpg, len);
			free(jpg);
		}
	}
}

uint64_t tu_rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

int tu_rng_below(uint64_t *s, int n)
{
	return (int)(tu_rng_next(s) % (uint64_t)n);
}

/*
 * Under valgrind (its preload library is in LD_PRELOAD), run libjpeg-turbo's
 * C code instead of its SIMD code. The SIMD path for 4:4:0 images makes
 * memcheck report the green byte of the last one or two pixels of every
 * row whose width is not a multiple of 4 as uninitialised (it is computed
 * next to lanes that come from libjpeg's unwritten row padding). The bytes
 * do not depend on that padding: the output is identical with
 * --malloc-fill=0x00/0x01/0x55/0x80/0xaa/0xff and with JSIMD_FORCENONE=1,
 * and libjpeg-turbo's maintainers describe such reports as known false
 * positives of memory checkers on its SIMD code (libjpeg-turbo issues #238,
 * #277). Natively the tests run, and check, the SIMD code.
 */
void tu_avoid_jpeg_simd_under_valgrind(void)
{
	const char *preload = getenv("LD_PRELOAD");

	if (preload && strstr(preload, "vgpreload"))
		setenv("JSIMD_FORCENONE", "1", 0);
}
