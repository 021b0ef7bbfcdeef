/*
 * test_keys.c — CURVE key files: keygen's files and modes, the readers'
 * syntax (comments, blanks, CRLF, bare keys), every error with its exact
 * message and line, permission warnings, authorized keys from a file and
 * from a folder of *.pub files, and the sorted set's lookups.
 *
 * Each test runs in a fresh mkdtemp() folder that is also the working
 * directory, so messages read as a user sees them ("bob.pub:2: ...").
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <unistd.h>
#include <sys/stat.h>
#include <cmocka.h>
#include <zmq.h>

#include "keys.h"
#include "log.h"
#include "test_util.h"

static char logged[8192];   /* warnings and errors of the running test */

static void sink(enum log_level lvl, const char *line, void *ctx)
{
	size_t n = strlen(logged);

	(void)ctx;
	snprintf(logged + n, sizeof(logged) - n, "<%d>%s\n", (int)lvl, line);
}

static int setup(void **state)
{
	(void)state;
	if (tu_enter_tmpdir("test_keys"))
		return -1;
	logged[0] = '\0';
	log_set_sink(sink, NULL);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	log_set_sink(NULL, NULL);
	return tu_leave_tmpdir();
}

static char *read_text(const char *name)
{
	static char buf[4096];
	FILE *f = fopen(name, "r");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static mode_t mode_of(const char *name)
{
	struct stat st;

	assert_int_equal(stat(name, &st), 0);
	return st.st_mode & 07777;
}

/* A fresh pair from libzmq (not through keys.c). */
static void pair(char pub[41], char sec[41])
{
	assert_int_equal(zmq_curve_keypair(pub, sec), 0);
}

static void bin_of(const char *z85, uint8_t out[32])
{
	char z[41];

	memcpy(z, z85, 41);
	assert_non_null(zmq_z85_decode(out, z));
}

static void expect_secret_error(const char *text, int want_rc,
				const char *want)
{
	char sec[41] = "", pub[41] = "", err[512] = "";

	tu_write_file_mode("x.key", text, 0600);
	assert_int_equal(keys_load_secret("x.key", sec, pub, err, sizeof(err)),
			 want_rc);
	assert_string_equal(err, want);
	assert_string_equal(sec, "");
}

static void expect_auth_error(const char *path, const char *want)
{
	keyset_t *set = (keyset_t *)(uintptr_t)1;
	char err[512] = "";

	int rc = keys_load_authorized(path, &set, err, sizeof(err));

	if (rc != -EINVAL)
		print_error("%s: rc %d, err '%s'\n", path, rc, err);
	assert_int_equal(rc, -EINVAL);
	assert_null(set);
	assert_string_equal(err, want);
}

/* --------------------------------------------------------------- keygen */

static void test_keygen(void **state)
{
	char pub[41], sec[41], derived[41], err[512], want[256], *text;
	char before[4096];
	mode_t old = umask(077); /* .pub is 0644 whatever the umask */

	(void)state;
	assert_int_equal(keys_write_pair("alice", pub, err, sizeof(err)), 0);
	assert_string_equal(err, "");
	assert_int_equal(mode_of("alice.key"), 0600);
	assert_int_equal(mode_of("alice.pub"), 0644);
	umask(old);

	text = read_text("alice.key");
	assert_int_equal(strlen(text), 48 + 13 + 40 + 1 + 13 + 40 + 1);
	snprintf(want, sizeof(want), "# cutmixd CURVE key pair: keep this file "
		 "secret\npublic-key = %s\nsecret-key = ", pub);
	assert_true(strncmp(text, want, strlen(want)) == 0);
	memcpy(sec, text + strlen(want), 40);
	sec[40] = '\0';
	assert_int_equal(text[strlen(want) + 40], '\n');
	assert_int_equal(zmq_curve_public(derived, sec), 0);
	assert_string_equal(derived, pub);

	snprintf(want, sizeof(want), "# cutmixd CURVE public key\n"
		 "public-key = %s\n", pub);
	assert_string_equal(read_text("alice.pub"), want);

	/* never overwrites: neither file changes */
	strcpy(before, read_text("alice.key"));
	assert_int_equal(keys_write_pair("alice", NULL, err, sizeof(err)),
			 -EEXIST);
	assert_string_equal(err, "alice.key: not overwriting an existing file: "
			    "File exists");
	assert_string_equal(read_text("alice.key"), before);
	/* one of the two is enough to refuse, and nothing is left behind */
	assert_int_equal(unlink("alice.key"), 0);
	assert_int_equal(keys_write_pair("alice", NULL, err, sizeof(err)),
			 -EEXIST);
	assert_string_equal(err, "alice.pub: not overwriting an existing file: "
			    "File exists");
	assert_int_equal(access("alice.key", F_OK), -1);
	/* a folder that is not there */
	assert_int_equal(keys_write_pair("nodir/bob", NULL, err, sizeof(err)),
			 -ENOENT);
	assert_string_equal(err, "nodir/bob.key: cannot create: No such file or "
			    "directory");
	assert_int_equal(keys_write_pair("", NULL, err, sizeof(err)), -EINVAL);

	/* two pairs differ */
	assert_int_equal(keys_write_pair("bob", derived, err, sizeof(err)), 0);
	assert_string_not_equal(derived, pub);
	assert_string_equal(logged, "");
}

/* ---------------------------------------------------------- secret file */

static void test_load_secret(void **state)
{
	char pub[41], sec[41], got_sec[41], got_pub[41], err[512], text[512];

	(void)state;
	assert_int_equal(keys_write_pair("srv", pub, err, sizeof(err)), 0);
	assert_int_equal(keys_load_secret("srv.key", got_sec, got_pub, err,
					  sizeof(err)), 0);
	assert_string_equal(err, "");
	assert_string_equal(got_pub, pub);
	assert_int_equal(zmq_curve_public(sec, got_sec), 0);
	assert_string_equal(sec, pub);
	assert_string_equal(logged, "");

	/* outputs may be NULL */
	assert_int_equal(keys_load_secret("srv.key", NULL, NULL, err,
					  sizeof(err)), 0);

	/* accessible to others: loaded, with a warning */
	assert_int_equal(chmod("srv.key", 0640), 0);
	assert_int_equal(keys_load_secret("srv.key", got_sec, NULL, err,
					  sizeof(err)), 0);
	assert_string_equal(logged, "<4>keys: 'srv.key' holds a secret key and "
			    "is accessible to group or others (mode 640): run "
			    "chmod 600 on it\n");

	/* the syntax readers accept: comments, blanks, CRLF, a BOM, no
	 * blanks around '=', the secret line first, no public line */
	pair(pub, sec);
	snprintf(text, sizeof(text), "\xEF\xBB\xBF# made by hand\r\n\r\n"
		 "   # indented comment\r\n\tsecret-key=%s  \r\n"
		 "public-key   =   %s\r\n", sec, pub);
	tu_write_file_mode("hand.key", text, 0600);
	assert_int_equal(keys_load_secret("hand.key", got_sec, got_pub, err,
					  sizeof(err)), 0);
	assert_string_equal(got_sec, sec);
	assert_string_equal(got_pub, pub);
	snprintf(text, sizeof(text), "secret-key = %s", sec); /* no newline */
	tu_write_file_mode("hand.key", text, 0600);
	assert_int_equal(keys_load_secret("hand.key", got_sec, got_pub, err,
					  sizeof(err)), 0);
	assert_string_equal(got_pub, pub);
}

static void test_secret_errors(void **state)
{
	char pub[41], sec[41], pub2[41], sec2[41], bad[41], text[512], err[512];

	(void)state;
	pair(pub, sec);
	pair(pub2, sec2);

	assert_int_equal(keys_write_pair("c", NULL, err, sizeof(err)), 0);
	{
		char s[41] = "";

		assert_int_equal(keys_load_secret("c.pub", s, NULL, err,
						  sizeof(err)), -EINVAL);
		assert_string_equal(err, "c.pub: no 'secret-key = KEY' line (a "
				    ".pub file has none: give the NAME.key file "
				    "that 'cutmixd keygen NAME' wrote)");
	}
	expect_secret_error("", -EINVAL, "x.key: no 'secret-key = KEY' line (a "
			    ".pub file has none: give the NAME.key file that "
			    "'cutmixd keygen NAME' wrote)");

	/* a bad secret is never shown */
	expect_secret_error("# k\n\nsecret-key = hunter2\n", -EINVAL,
			    "x.key:3: secret-key: must be 40 Z85 characters (got "
			    "7 characters; not shown)");
	/* 40 characters that overflow a Z85 group */
	memset(bad, '%', 40);
	bad[40] = '\0';
	snprintf(text, sizeof(text), "secret-key = %s\n", bad);
	expect_secret_error(text, -EINVAL, "x.key:1: secret-key: must be 40 "
			    "Z85 characters (got 40 characters; not shown)");
	snprintf(text, sizeof(text), "public-key = %s\nsecret-key = %s\n", pub2,
		 sec);
	expect_secret_error(text, -EINVAL, "x.key:1: public-key: does not "
			    "belong to the secret-key of line 2");
	snprintf(text, sizeof(text), "secret-key = %s\nsecret-key = %s\n", sec,
		 sec2);
	expect_secret_error(text, -EINVAL, "x.key:2: secret-key: duplicate "
			    "(first on line 1)");
	snprintf(text, sizeof(text), "secret-key = %s\npublic-key = %s\n"
		 "public-key = %s\n", sec, pub, pub);
	expect_secret_error(text, -EINVAL, "x.key:3: public-key: duplicate "
			    "(first on line 2)");
	snprintf(text, sizeof(text), "secret-key = %s\npublic-key = nope\n", sec);
	expect_secret_error(text, -EINVAL, "x.key:2: public-key: must be 40 Z85 "
			    "characters, got 'nope'");
	/* a line that is nothing known; a misspelt key name hides its value */
	expect_secret_error("# ok\nhello world\n", -EINVAL, "x.key:2: expected "
			    "'public-key = KEY', 'secret-key = KEY', a bare KEY "
			    "or a '#' comment, got 'hello world'");
	snprintf(text, sizeof(text), "private-key = %s\n", sec);
	expect_secret_error(text, -EINVAL, "x.key:1: expected 'public-key = KEY', "
			    "'secret-key = KEY', a bare KEY or a '#' comment, got "
			    "'private-key = ...'");
	/* a comment after a key is part of the value */
	snprintf(text, sizeof(text), "secret-key = %s # mine\n", sec);
	expect_secret_error(text, -EINVAL, "x.key:1: secret-key: must be 40 Z85 "
			    "characters (got 47 characters; not shown)");
	{
		FILE *f = fopen("x.key", "w");
		char s[41] = "";

		assert_non_null(f);
		fwrite("# a\n#\0b\n", 1, 8, f);
		fclose(f);
		assert_int_equal(keys_load_secret("x.key", s, NULL, err,
						  sizeof(err)), -EINVAL);
		assert_string_equal(err, "x.key:2: NUL byte in line");
	}
	/* file errors */
	{
		char s[41] = "";

		assert_int_equal(keys_load_secret("nope.key", s, NULL, err,
						  sizeof(err)), -ENOENT);
		assert_string_equal(err, "nope.key: cannot open: No such file or "
				    "directory");
		assert_int_equal(mkdir("dir.key", 0700), 0);
		assert_int_equal(keys_load_secret("dir.key", s, NULL, err,
						  sizeof(err)), -EINVAL);
		assert_string_equal(err, "dir.key: not a regular file");
		assert_int_equal(keys_load_secret(NULL, s, NULL, err, sizeof(err)),
				 -EINVAL);
		/* no error buffer: still fails cleanly */
		assert_int_equal(keys_load_secret("nope.key", s, NULL, NULL, 0),
				 -ENOENT);
	}
	/* the secret key is not in any message */
	assert_null(strstr(logged, sec));
}

static void test_load_public(void **state)
{
	char pub[41], sec[41], got[41], err[512], text[512];

	(void)state;
	assert_int_equal(keys_write_pair("s", pub, err, sizeof(err)), 0);
	assert_int_equal(keys_load_public("s.pub", got, err, sizeof(err)), 0);
	assert_string_equal(got, pub);
	/* the public line of a key pair file */
	assert_int_equal(keys_load_public("s.key", got, err, sizeof(err)), 0);
	assert_string_equal(got, pub);
	/* a bare key */
	pair(pub, sec);
	snprintf(text, sizeof(text), "# server\n%s\n", pub);
	tu_write_file_mode("bare.pub", text, 0644);
	assert_int_equal(keys_load_public("bare.pub", got, err, sizeof(err)), 0);
	assert_string_equal(got, pub);

	tu_write_file_mode("none.pub", "# nothing\n", 0644);
	assert_int_equal(keys_load_public("none.pub", got, err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "none.pub: no 'public-key = KEY' line");
	snprintf(text, sizeof(text), "%s\n%s\n", pub, pub);
	tu_write_file_mode("two.pub", text, 0644);
	assert_int_equal(keys_load_public("two.pub", got, err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "two.pub:2: public-key: duplicate (first on "
			    "line 1)");
}

/* ------------------------------------------------------ authorized keys */

static void test_authorized_file(void **state)
{
	char p[4][41], s[4][41], text[1024], err[512];
	uint8_t bin[32];
	keyset_t *set = NULL;

	(void)state;
	for (int i = 0; i < 4; i++)
		pair(p[i], s[i]);
	/* keygen lines, bare lines, a duplicate, comments and blanks */
	snprintf(text, sizeof(text),
		 "# cutmixd CURVE public key\npublic-key = %s\n\n"
		 "# bob, by hand\n  %s\r\n"
		 "public-key=%s\n%s\n", p[0], p[1], p[2], p[0]);
	tu_write_file_mode("authorized_keys", text, 0644);
	assert_int_equal(keys_load_authorized("authorized_keys", &set, err,
					      sizeof(err)), 0);
	assert_non_null(set);
	assert_int_equal(keys_count(set), 3);
	for (int i = 0; i < 4; i++) {
		bin_of(p[i], bin);
		assert_true(keys_contains(set, bin) == (i < 3));
		/* a secret key is not a public key */
		bin_of(s[i], bin);
		assert_false(keys_contains(set, bin));
	}
	assert_string_equal(logged, "");
	keys_destroy(&set);
	assert_null(set);
	keys_destroy(&set);
	keys_destroy(NULL);
	assert_false(keys_contains(NULL, bin));
	assert_int_equal(keys_count(NULL), 0);

	/* a key pair file given by mistake: its public key, and a warning */
	snprintf(text, sizeof(text), "public-key = %s\nsecret-key = %s\n", p[3],
		 s[3]);
	tu_write_file_mode("pair.key", text, 0600);
	assert_int_equal(keys_load_authorized("pair.key", &set, err,
					      sizeof(err)), 0);
	assert_int_equal(keys_count(set), 1);
	bin_of(p[3], bin);
	assert_true(keys_contains(set, bin));
	keys_destroy(&set);
	assert_string_equal(logged, "<4>keys: 'pair.key' line 2 holds a secret "
			    "key: an authorized keys file needs only public keys "
			    "(give the client's NAME.pub)\n");
	assert_null(strstr(logged, s[3]));

	/* writable by others: loaded, with a warning */
	logged[0] = '\0';
	assert_int_equal(chmod("authorized_keys", 0666), 0);
	assert_int_equal(keys_load_authorized("authorized_keys", &set, err,
					      sizeof(err)), 0);
	keys_destroy(&set);
	assert_string_equal(logged, "<4>keys: 'authorized_keys' is writable by "
			    "group or others (mode 666): whoever can change it "
			    "can let clients in\n");

	/* errors */
	tu_write_file_mode("empty", "# nobody yet\n\n", 0644);
	expect_auth_error("empty", "empty: no public key in this file");
	/* 39 characters; a Z85 key may hold '=': such a line reads as a
	 * "NAME = VALUE" line */
	snprintf(text, sizeof(text), "%s\n0123456789abcdefghijklmnopqrstuvwxyzABC"
		 "\n", p[0]);
	tu_write_file_mode("short", text, 0644);
	expect_auth_error("short", "short:2: expected 'public-key = KEY', "
			  "'secret-key = KEY', a bare KEY or a '#' comment, got "
			  "'0123456789abcdefghijklmnopqrstuvwxyzABC'");
	tu_write_file_mode("short", "public-key = 0123456789abcdefghijklmnopqrstuvwxyzAB"
		   "C\n", 0644);
	expect_auth_error("short", "short:1: public-key: must be 40 Z85 "
			  "characters, got '0123456789abcdefghijklmnopqrstuvwxyzABC'");
	tu_write_file_mode("short", "0123456789abcdefghij=lmnopqrstuvwxyzABC\n", 0644);
	expect_auth_error("short", "short:1: expected 'public-key = KEY', "
			  "'secret-key = KEY', a bare KEY or a '#' comment, got "
			  "'0123456789abcdefghij = ...'");
	snprintf(text, sizeof(text), "public-key = %s\npublic-key = %sX\n", p[0],
		 p[1]);
	tu_write_file_mode("long", text, 0644);
	snprintf(err, sizeof(err), "long:2: public-key: must be 40 Z85 "
		 "characters, got '%sX'", p[1]);
	expect_auth_error("long", err);
	{
		keyset_t *none = NULL;

		assert_int_equal(keys_load_authorized("missing", &none, err,
						      sizeof(err)), -ENOENT);
		assert_string_equal(err, "missing: cannot open: No such file or "
				    "directory");
		assert_null(none);
	}
}

static void test_authorized_folder(void **state)
{
	char p[4][41], s[4][41], text[512], err[512];
	uint8_t bin[32];
	keyset_t *set = NULL;

	(void)state;
	for (int i = 0; i < 4; i++)
		pair(p[i], s[i]);
	assert_int_equal(mkdir("clients", 0755), 0);
	snprintf(text, sizeof(text), "# cutmixd CURVE public key\n"
		 "public-key = %s\n", p[0]);
	tu_write_file_mode("clients/alice.pub", text, 0644);
	snprintf(text, sizeof(text), "%s\n", p[1]);
	tu_write_file_mode("clients/bob.pub", text, 0644);
	/* ignored: not *.pub, hidden, a key pair file */
	tu_write_file_mode("clients/README", "not a key\n", 0644);
	tu_write_file_mode("clients/.old.pub", "not a key\n", 0644);
	snprintf(text, sizeof(text), "public-key = %s\nsecret-key = %s\n", p[2],
		 s[2]);
	tu_write_file_mode("clients/carol.key", text, 0600);
	tu_write_file_mode("clients/.pub", "not a key\n", 0644);

	assert_int_equal(keys_load_authorized("clients", &set, err, sizeof(err)),
			 0);
	assert_int_equal(keys_count(set), 2);
	for (int i = 0; i < 4; i++) {
		bin_of(p[i], bin);
		assert_true(keys_contains(set, bin) == (i < 2));
	}
	keys_destroy(&set);
	/* a trailing slash is the same folder */
	assert_int_equal(keys_load_authorized("clients/", &set, err, sizeof(err)),
			 0);
	assert_int_equal(keys_count(set), 2);
	keys_destroy(&set);
	assert_string_equal(logged, "");

	/* a bad .pub names its file and line; files are read in name order */
	tu_write_file_mode("clients/zed.pub", "# z\npublic-key = 123\n", 0644);
	tu_write_file_mode("clients/dave.pub", "\n\n\ngarbage\n", 0644);
	expect_auth_error("clients", "clients/dave.pub:4: expected 'public-key = "
			  "KEY', 'secret-key = KEY', a bare KEY or a '#' comment, "
			  "got 'garbage'");
	assert_int_equal(unlink("clients/dave.pub"), 0);
	expect_auth_error("clients/", "clients/zed.pub:2: public-key: must be 40 "
			  "Z85 characters, got '123'");
	assert_int_equal(unlink("clients/zed.pub"), 0);
	/* an empty .pub file is an error too */
	tu_write_file_mode("clients/eve.pub", "", 0644);
	expect_auth_error("clients", "clients/eve.pub: no public key in this file");
	assert_int_equal(unlink("clients/eve.pub"), 0);

	/* the same key in two files counts once */
	snprintf(text, sizeof(text), "%s\n", p[0]);
	tu_write_file_mode("clients/alice2.pub", text, 0644);
	assert_int_equal(keys_load_authorized("clients", &set, err, sizeof(err)),
			 0);
	assert_int_equal(keys_count(set), 2);
	keys_destroy(&set);

	/* a folder writable by others: loaded, with a warning */
	assert_int_equal(chmod("clients", 0777), 0);
	assert_int_equal(keys_load_authorized("clients", &set, err, sizeof(err)),
			 0);
	keys_destroy(&set);
	assert_string_equal(logged, "<4>keys: 'clients' is writable by group or "
			    "others (mode 777): whoever can change it can let "
			    "clients in\n");

	/* no *.pub at all */
	assert_int_equal(mkdir("nobody", 0755), 0);
	tu_write_file_mode("nobody/x.key", text, 0600);
	expect_auth_error("nobody", "nobody: no *.pub files in this folder");
}

/* Many keys: the set is sorted and every one is found by bsearch. */
static void test_many_keys(void **state)
{
	enum { N = 300 };
	static char p[N][41];
	char s[41], err[512];
	uint8_t bin[32];
	keyset_t *set = NULL;
	FILE *f = fopen("many", "w");

	(void)state;
	assert_non_null(f);
	for (int i = 0; i < N; i++) {
		pair(p[i], s);
		fprintf(f, "%s%s\n", i % 2 ? "public-key = " : "", p[i]);
	}
	fclose(f);
	assert_int_equal(keys_load_authorized("many", &set, err, sizeof(err)), 0);
	assert_int_equal(keys_count(set), N);
	for (int i = 0; i < N; i++) {
		bin_of(p[i], bin);
		assert_true(keys_contains(set, bin));
		bin[31] ^= 1;
		assert_false(keys_contains(set, bin));
	}
	keys_destroy(&set);
}

static void test_parse_z85(void **state)
{
	char pub[41], sec[41], back[41];
	uint8_t bin[32];

	(void)state;
	pair(pub, sec);
	assert_true(keys_parse_z85(pub, 40, bin));
	assert_non_null(zmq_z85_encode(back, bin, 32));
	assert_string_equal(back, pub);
	assert_true(keys_parse_z85(pub, 40, NULL));
	assert_false(keys_parse_z85(pub, 39, bin));
	assert_false(keys_parse_z85(NULL, 40, bin));
	pub[7] = ' ';
	assert_false(keys_parse_z85(pub, 40, bin));
	pub[7] = '"';
	assert_false(keys_parse_z85(pub, 40, bin));
	pub[7] = '\0';
	assert_false(keys_parse_z85(pub, 40, bin));
	/* the largest group "%nSc0" is 2^32-1; one more overflows */
	assert_true(keys_parse_z85("%nSc0%nSc0%nSc0%nSc0%nSc0%nSc0%nSc0%nSc0",
				   40, bin));
	for (int i = 0; i < 32; i++)
		assert_int_equal(bin[i], 0xff);
	assert_false(keys_parse_z85("%nSc1%nSc0%nSc0%nSc0%nSc0%nSc0%nSc0%nSc0",
				    40, bin));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_keygen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_secret, setup, teardown),
		cmocka_unit_test_setup_teardown(test_secret_errors, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_load_public, setup, teardown),
		cmocka_unit_test_setup_teardown(test_authorized_file, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_authorized_folder, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_many_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_parse_z85, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
