/*
 * test_util.h — helpers shared by the cmocka unit tests (linked into every
 * tests/unit/test_*.c program by the Makefile's UNIT_HELP): temporary
 * folders and writing files. Failures are cmocka assertions unless said.
 */
#ifndef CUTMIXD_TEST_UTIL_H
#define CUTMIXD_TEST_UTIL_H

#include <stdint.h>
#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

/* A new empty folder $TMPDIR/TAG.XXXXXX (/tmp without TMPDIR); its path
 * in dir. Asserts. */
void tu_mkdtemp(char dir[PATH_MAX], const char *tag);
/* rm -r `dir` (entries made read-only by a test included). 0 or -1. */
int tu_rmtree(const char *dir);

/* cmocka setup / teardown pair: a new temporary folder that becomes the
 * current directory (tu_tmpdir() names it), then back to the previous
 * directory and the folder removed. TAG names the folder. 0 or -1. */
int tu_enter_tmpdir(const char *tag);
int tu_leave_tmpdir(void);
const char *tu_tmpdir(void);
/* The current directory before tu_enter_tmpdir(). */
const char *tu_oldcwd(void);

/* Write `text` (a C string) or n bytes to path, replacing it. Asserts. */
void tu_write_file(const char *path, const char *text);
void tu_write_file_mode(const char *path, const char *text, mode_t mode);
void tu_write_bytes(const char *path, const void *data, size_t n);
/* data/cC/imgNNN.jpg: `per_class` RGB JPEGs in each of `classes` folders,
 * image i of class c (w0 + 4i) x (h0 + 2c) pixels, pattern seed
 * c * seed_step + i + 1, so every file differs. */
void tu_jpeg_folders(int classes, int per_class, int w0, int h0, unsigned seed_step);

/* splitmix64: the tests' own deterministic random cases (not the
 * daemon's generator). tu_rng_below: uniform-ish in [0, n). */
uint64_t tu_rng_next(uint64_t *s);
int tu_rng_below(uint64_t *s, int n);

/* Under valgrind, libjpeg-turbo's C code instead of its SIMD code (why:
 * test_util.c). Call it at the start of main(). */
void tu_avoid_jpeg_simd_under_valgrind(void);

#endif
