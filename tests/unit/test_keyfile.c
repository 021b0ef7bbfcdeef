/*
 * test_keyfile.c — the one key-file grammar (proto/keyfile.c) through
 * every C reader of it: the daemon's keys_load_secret / keys_load_public
 * (its own key pair, `cutmixd stats --key`) and the C client's
 * cutmixd_load_keypair, each fed every fixture of tests/fixtures/keys/
 * and checked against expected.tsv (the table the Python client is tested
 * against too). Run from the repository root, or set CUTMIXD_SRCDIR.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zmq.h>

#include "cutmixd.h"
#include "keyfile.h"
#include "keys.h"
#include "log.h"

struct row {
	char file[64], mode[16], result[16], line[16], pub[48];
};

static char fixdir[512];

static void silent(enum log_level lvl, const char *line, void *ctx)
{
	(void)ctx;
	(void)lvl;
	(void)line; /* mode warnings: the checkout's file modes are not ours */
}

static int read_rows(struct row *rows, int max)
{
	char path[600], line[256];
	const char *src = getenv("CUTMIXD_SRCDIR");
	FILE *f;
	int n = 0;

	snprintf(fixdir, sizeof(fixdir), "%s/tests/fixtures/keys", src ? src : ".");
	snprintf(path, sizeof(path), "%s/expected.tsv", fixdir);
	f = fopen(path, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		struct row *r = &rows[n];

		if (line[0] == '#' || line[0] == '\n')
			continue;
		assert_true(n < max);
		assert_int_equal(sscanf(line, "%63[^\t]\t%15[^\t]\t%15[^\t]\t%15[^\t]\t%47[^\t\n]",
					r->file, r->mode, r->result, r->line, r->pub), 5);
		n++;
	}
	fclose(f);
	return n;
}

/* An error message names "<path>:<line>:" (line given), only "<path>:"
 * ("-"), or anything ("*"). */
static void check_error(const struct row *r, const char *path, const char *who,
			int rc, const char *err)
{
	char want[700];

	if (rc == 0)
		fail_msg("%s: %s (%s) accepted, expected an error", who, r->file, r->mode);
	if (strcmp(r->line, "*") == 0)
		return;
	if (strcmp(r->line, "-") == 0) {
		snprintf(want, sizeof(want), "%s: ", path);
		if (strncmp(err, want, strlen(want)) != 0)
			fail_msg("%s: %s: message '%s' should begin '%s'", who, r->file, err, want);
		return;
	}
	snprintf(want, sizeof(want), "%s:%s: ", path, r->line);
	if (strncmp(err, want, strlen(want)) != 0)
		fail_msg("%s: %s: message '%s' should begin '%s'", who, r->file, err, want);
}

static void check_row(const struct row *r)
{
	char path[700], pub[41] = "", sec[41] = "", err[512] = "";
	bool pair = strcmp(r->mode, "pair") == 0;
	bool ok = strcmp(r->result, "ok") == 0;
	int rc;

	snprintf(path, sizeof(path), "%s/%s", fixdir, r->file);
	/* the daemon */
	rc = pair ? keys_load_secret(path, sec, pub, err, sizeof(err))
		  : keys_load_public(path, pub, err, sizeof(err));
	if (ok) {
		if (rc != 0)
			fail_msg("daemon: %s (%s): %s", r->file, r->mode, err);
		assert_string_equal(pub, r->pub);
	} else {
		check_error(r, path, "daemon", rc, err);
	}
	/* the C client */
	memset(pub, 0, sizeof(pub));
	err[0] = 0;
	rc = cutmixd_load_keypair(path, pub, pair ? sec : NULL, err, sizeof(err));
	if (ok) {
		if (rc != 0)
			fail_msg("client: %s (%s): %s", r->file, r->mode, err);
		assert_string_equal(pub, r->pub);
	} else {
		check_error(r, path, "client", rc, err);
	}
}

static void test_fixtures(void **state)
{
	struct row rows[64];
	int n = read_rows(rows, 64), good = 0;

	(void)state;
	log_set_sink(silent, NULL);
	assert_true(n >= 20);
	for (int i = 0; i < n; i++) {
		check_row(&rows[i]);
		good += strcmp(rows[i].result, "ok") == 0;
	}
	assert_true(good >= 8 && good < n); /* both kinds are there */
	log_set_sink(NULL, NULL);
}

/* The zcert file a Python user was told works: `cutmixd stats --key`
 * goes through keys_load_secret, which refused its quotes and section
 * words before the grammar was shared. */
static void test_zcert_pair_for_stats(void **state)
{
	char path[700], pub[41], sec[41], pub2[41], sec2[41], err[512];
	struct row rows[64];

	(void)state;
	read_rows(rows, 64);
	log_set_sink(silent, NULL);
	snprintf(path, sizeof(path), "%s/zcert.key", fixdir);
	assert_int_equal(keys_load_secret(path, sec, pub, err, sizeof(err)), 0);
	assert_int_equal(cutmixd_load_keypair(path, pub2, sec2, err, sizeof(err)), 0);
	assert_string_equal(pub, pub2);
	assert_string_equal(sec, sec2);
	log_set_sink(NULL, NULL);
}

/* keyfile_parse on text: the callback sees every key with its line. */
static int count_key(void *ctx, const char *path, const struct keyfile_key *k,
		     char *err, size_t errlen)
{
	int *lines = ctx;

	(void)path;
	(void)err;
	(void)errlen;
	lines[k->kind] = k->line;
	return 0;
}

static void test_parse_text(void **state)
{
	char pub[41], sec[41], text[256], err[256];
	int lines[2] = { 0, 0 };

	(void)state;
	assert_int_equal(zmq_curve_keypair(pub, sec), 0);
	snprintf(text, sizeof(text), "\n# c\nmetadata\n  x = 1\ncurve\n public_key = \"%s\"\n"
		 "SECRET-KEY=%s", pub, sec);
	assert_int_equal(keyfile_parse("t", text, strlen(text), count_key, lines, err,
				       sizeof(err)), 0);
	assert_int_equal(lines[KEYFILE_PUBLIC], 6);
	assert_int_equal(lines[KEYFILE_SECRET], 7);
	assert_int_equal(keyfile_parse("t", "x = 1\n", 6, count_key, lines, err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "t:1: expected 'public-key = KEY', 'secret-key = KEY', a bare "
			    "KEY or a '#' comment, got 'x = ...'");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixtures),
		cmocka_unit_test(test_zcert_pair_for_stats),
		cmocka_unit_test(test_parse_text),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
