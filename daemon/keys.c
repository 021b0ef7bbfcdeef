/*
 * keys.c — CURVE key files (format in keys.h).
 *
 * DESIGN
 *   A key file is read whole and parsed by proto/keyfile.c (the one
 *   grammar the daemon, `cutmixd stats` and the C client share), which
 *   hands every key it finds, decoded to binary, to a callback with its
 *   line number. The secret-key reader and the authorized-keys reader
 *   differ only in that callback and in what they check at the end. Nothing here is shared
 *   between threads; the daemon loads keys from its main thread (start,
 *   --check) and its server thread (SIGHUP).
 *
 *   Secret keys are wiped (explicit_bzero) from every buffer that held
 *   them once they are no longer needed, and never quoted in a message.
 */
#include "keys.h"
#include "errbuf.h"
#include "keyfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "log.h"

struct keyset {
	size_t n;
	uint8_t (*keys)[KEYS_BIN_LEN];
};

/* One key of a file, as keyfile_parse() found it. */
#define KEY_PUBLIC KEYFILE_PUBLIC
#define KEY_SECRET KEYFILE_SECRET

typedef keyfile_fn key_fn;

/* ------------------------------------------------------------------- z85 */

bool keys_parse_z85(const char *text, size_t len, uint8_t out[KEYS_BIN_LEN])
{
	return keyfile_z85_ok(text, len, out);
}

/* ----------------------------------------------------------------- files */

/* Read a whole regular file (NUL-terminated copy); *st gets its mode. */
static int read_file(const char *path, char **out, size_t *len_out,
		     struct stat *st, char *err, size_t errlen)
{
	unsigned mode = 0;
	int rc = keyfile_read(path, out, len_out, &mode, err, errlen);

	memset(st, 0, sizeof(*st));
	st->st_mode = (mode_t)mode;
	return rc;
}

static void free_secret_text(char *buf, size_t len)
{
	keyfile_free_text(buf, len);
}

static int parse_text(const char *path, char *buf, size_t len, key_fn each,
		      void *ctx, char *err, size_t errlen)
{
	return keyfile_parse(path, buf, len, each, ctx, err, errlen);
}

/* -------------------------------------------------------- the key pair */

struct pair_ctx {
	uint8_t secret[KEYS_BIN_LEN], public_key[KEYS_BIN_LEN];
	int secret_line, public_line;
	bool public_only;  /* keys_load_public: one public key, nothing else */
};

static int on_pair_key(void *ctx, const char *path, const struct keyfile_key *k,
		       char *err, size_t errlen)
{
	struct pair_ctx *c = ctx;

	if (k->kind == KEY_SECRET) {
		if (c->public_only)
			return 0; /* a NAME.key read for its public key */
		if (c->secret_line)
			return errbuf_fail(err, errlen, "%s:%d: secret-key: duplicate "
					   "(first on line %d)", path, k->line,
					   c->secret_line);
		memcpy(c->secret, k->bin, KEYS_BIN_LEN);
		c->secret_line = k->line;
		return 0;
	}
	if (c->public_line)
		return errbuf_fail(err, errlen, "%s:%d: public-key: duplicate (first on "
				   "line %d)", path, k->line, c->public_line);
	memcpy(c->public_key, k->bin, KEYS_BIN_LEN);
	c->public_line = k->line;
	return 0;
}

/* Read a key-pair file into c (public_only: keys_load_public's rules).
 * On failure *buf may hold the text: the caller wipes and frees it. */
static int read_pair(const char *path, bool public_only, struct pair_ctx *c,
		     char **buf, size_t *len, struct stat *st, char *err,
		     size_t errlen)
{
	int rc;

	memset(c, 0, sizeof(*c));
	c->public_only = public_only;
	rc = read_file(path, buf, len, st, err, errlen);
	if (rc)
		return rc;
	return parse_text(path, *buf, *len, on_pair_key, c, err, errlen);
}

int keys_load_secret(const char *path, char secret[KEYS_Z85_LEN + 1],
		     char public_key[KEYS_Z85_LEN + 1], char *err, size_t errlen)
{
	char sec_z[KEYS_Z85_LEN + 1], pub_z[KEYS_Z85_LEN + 1];
	char given[KEYS_Z85_LEN + 1];
	struct pair_ctx c;
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if (!path)
		return errbuf_fail(err, errlen, "keys_load_secret: no path");
	rc = read_pair(path, false, &c, &buf, &len, &st, err, errlen);
	if (rc)
		goto out_wipe;
	if (!c.secret_line) {
		rc = errbuf_fail(err, errlen, "%s: no 'secret-key = KEY' line (a .pub "
				 "file has none: give the NAME.key file that "
				 "'cutmixd keygen NAME' wrote)", path);
		goto out_wipe;
	}
	if (!zmq_z85_encode(sec_z, c.secret, KEYS_BIN_LEN) ||
	    zmq_curve_public(pub_z, sec_z) != 0) {
		rc = errbuf_fail(err, errlen, "%s: cannot derive the public key: %s "
				 "(libzmq without CURVE?)", path, zmq_strerror(errno));
		goto out_wipe;
	}
	if (c.public_line) {
		zmq_z85_encode(given, c.public_key, KEYS_BIN_LEN);
		if (strcmp(given, pub_z) != 0) {
			rc = errbuf_fail(err, errlen, "%s:%d: public-key: does not belong "
					 "to the secret-key of line %d", path,
					 c.public_line, c.secret_line);
			goto out_wipe;
		}
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO))
		log_warning("keys: '%s' holds a secret key and is accessible to "
			    "group or others (mode %03o): run chmod 600 on it",
			    path, (unsigned)(st.st_mode & 0777));
	if (secret)
		memcpy(secret, sec_z, sizeof(sec_z));
	if (public_key)
		memcpy(public_key, pub_z, sizeof(pub_z));
out_wipe:
	explicit_bzero(sec_z, sizeof(sec_z));
	explicit_bzero(&c, sizeof(c));
	free_secret_text(buf, len);
	return rc;
}

int keys_load_public(const char *path, char public_key[KEYS_Z85_LEN + 1],
		     char *err, size_t errlen)
{
	struct pair_ctx c;
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if (!path)
		return errbuf_fail(err, errlen, "keys_load_public: no path");
	rc = read_pair(path, true, &c, &buf, &len, &st, err, errlen);
	if (!rc && !c.public_line)
		rc = errbuf_fail(err, errlen, "%s: no 'public-key = KEY' line", path);
	if (!rc && public_key)
		zmq_z85_encode(public_key, c.public_key, KEYS_BIN_LEN);
	explicit_bzero(&c, sizeof(c));
	free_secret_text(buf, len);
	return rc;
}

/* ------------------------------------------------------ authorized keys */

struct auth_ctx {
	uint8_t (*keys)[KEYS_BIN_LEN];
	size_t n, cap;
	bool secret_seen;  /* in the file being read */
};

static int on_auth_key(void *ctx, const char *path, const struct keyfile_key *k,
		       char *err, size_t errlen)
{
	struct auth_ctx *c = ctx;

	if (k->kind == KEY_SECRET) {
		if (!c->secret_seen)
			log_warning("keys: '%s' line %d holds a secret key: an "
				    "authorized keys file needs only public keys "
				    "(give the client's NAME.pub)", path, k->line);
		c->secret_seen = true;
		return 0;
	}
	if (c->n == KEYS_MAX)
		return errbuf_fail(err, errlen, "%s:%d: too many authorized keys (max %d)",
				   path, k->line, KEYS_MAX);
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16;
		void *nk = realloc(c->keys, cap * KEYS_BIN_LEN);

		if (!nk)
			return errbuf_fail_errno(err, errlen, -ENOMEM, path, "cannot read");
		c->keys = nk;
		c->cap = cap;
	}
	memcpy(c->keys[c->n++], k->bin, KEYS_BIN_LEN);
	return 0;
}

/* Whoever can change the authorized keys can let a client in. */
static void warn_writable(const char *path, const struct stat *st)
{
	if (st->st_mode & (S_IWGRP | S_IWOTH))
		log_warning("keys: '%s' is writable by group or others (mode "
			    "%03o): whoever can change it can let clients in",
			    path, (unsigned)(st->st_mode & 0777));
}

static int auth_file(struct auth_ctx *c, const char *path, char *err,
		     size_t errlen)
{
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	int rc;

	rc = read_file(path, &buf, &len, &st, err, errlen);
	if (rc)
		return rc;
	warn_writable(path, &st);
	c->secret_seen = false;
	size_t before = c->n;
	rc = parse_text(path, buf, len, on_auth_key, c, err, errlen);
	/* an empty file is a mistake (a truncated copy?), not "nobody" */
	if (!rc && c->n == before)
		rc = errbuf_fail(err, errlen, "%s: no public key in this file", path);
	free_secret_text(buf, len);
	return rc;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_pub_name(const char *name)
{
	size_t n = strlen(name);

	return name[0] != '.' && n > 4 && !strcmp(name + n - 4, ".pub");
}

/* Every NAME.pub of a folder, in name order. */
static int auth_folder(struct auth_ctx *c, const char *path,
		       const struct stat *st, char *err, size_t errlen)
{
	char **names = NULL, *file = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int rc = 0;

	d = opendir(path);
	if (!d)
		return errbuf_fail_errno(err, errlen, -errno, path, "cannot open");
	warn_writable(path, st);
	while ((errno = 0, de = readdir(d))) {
		if (!is_pub_name(de->d_name))
			continue;
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 16;
			char **nn = realloc(names, nc * sizeof(*names));

			if (!nn) {
				rc = errbuf_fail_errno(err, errlen, -ENOMEM, path,
						       "cannot read");
				goto out_free;
			}
			names = nn;
			cap = nc;
		}
		names[n] = strdup(de->d_name);
		if (!names[n]) {
			rc = errbuf_fail_errno(err, errlen, -ENOMEM, path, "cannot read");
			goto out_free;
		}
		n++;
	}
	if (errno) {
		rc = errbuf_fail_errno(err, errlen, -errno, path, "cannot read");
		goto out_free;
	}
	if (n == 0) {
		rc = errbuf_fail(err, errlen, "%s: no *.pub files in this folder", path);
		goto out_free;
	}
	qsort(names, n, sizeof(*names), cmp_name);
	for (size_t i = 0; i < n && !rc; i++) {
		const char *sep = path[strlen(path) - 1] == '/' ? "" : "/";

		if (asprintf(&file, "%s%s%s", path, sep, names[i]) < 0) {
			file = NULL;
			rc = errbuf_fail_errno(err, errlen, -ENOMEM, path, "cannot read");
			break;
		}
		rc = auth_file(c, file, err, errlen);
		free(file);
		file = NULL;
	}
out_free:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(d);
	return rc;
}

static int cmp_key(const void *a, const void *b)
{
	return memcmp(a, b, KEYS_BIN_LEN);
}

int keys_load_authorized(const char *path, keyset_t **out, char *err,
			 size_t errlen)
{
	struct auth_ctx c = { 0 };
	keyset_t *set = NULL;
	struct stat st;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if (!path || !out)
		return errbuf_fail(err, errlen, "keys_load_authorized: bad arguments");
	*out = NULL;
	if (stat(path, &st) < 0)
		return errbuf_fail_errno(err, errlen, -errno, path, "cannot open");
	if (S_ISDIR(st.st_mode))
		rc = auth_folder(&c, path, &st, err, errlen);
	else
		rc = auth_file(&c, path, err, errlen);
	if (rc)
		goto out_free;
	qsort(c.keys, c.n, KEYS_BIN_LEN, cmp_key);
	size_t u = 1;
	for (size_t i = 1; i < c.n; i++)
		if (memcmp(c.keys[i], c.keys[u - 1], KEYS_BIN_LEN))
			memcpy(c.keys[u++], c.keys[i], KEYS_BIN_LEN);
	set = calloc(1, sizeof(*set));
	if (!set) {
		rc = errbuf_fail_errno(err, errlen, -ENOMEM, path, "cannot read");
		goto out_free;
	}
	set->n = u;
	set->keys = c.keys;
	c.keys = NULL;
	*out = set;
out_free:
	free(c.keys);
	return rc;
}

bool keys_contains(const keyset_t *set, const uint8_t key[KEYS_BIN_LEN])
{
	if (!set || !key || set->n == 0)
		return false;
	return bsearch(key, set->keys, set->n, KEYS_BIN_LEN, cmp_key) != NULL;
}

size_t keys_count(const keyset_t *set)
{
	return set ? set->n : 0;
}

void keys_destroy(keyset_t **setp)
{
	if (!setp || !*setp)
		return;
	free((*setp)->keys);
	free(*setp);
	*setp = NULL;
}

/* ---------------------------------------------------------------- keygen */

static int write_all(int fd, const char *text, size_t len)
{
	while (len) {
		ssize_t w = write(fd, text, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		text += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Create `path` (must not exist) with exactly `mode`, holding `text`. */
static int create_file(const char *path, mode_t mode, const char *text,
		       bool *created, char *err, size_t errlen)
{
	int fd, rc;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		  mode);
	if (fd < 0) {
		rc = -errno;
		if (rc == -EEXIST)
			return errbuf_fail_errno(err, errlen, rc, path,
						 "not overwriting an existing file");
		return errbuf_fail_errno(err, errlen, rc, path, "cannot create");
	}
	*created = true;
	/* exactly `mode`, whatever the umask */
	rc = fchmod(fd, mode) < 0 ? -errno : 0;
	if (!rc)
		rc = write_all(fd, text, strlen(text));
	if (!rc && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (rc)
		return errbuf_fail_errno(err, errlen, rc, path, "cannot write");
	return 0;
}

int keys_write_pair(const char *name, char public_key[KEYS_Z85_LEN + 1],
		    char *err, size_t errlen)
{
	char pub[KEYS_Z85_LEN + 1], sec[KEYS_Z85_LEN + 1];
	char *key_path = NULL, *pub_path = NULL, *key_text = NULL, *pub_text = NULL;
	bool key_made = false, pub_made = false;
	struct stat st;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if (!name || !*name)
		return errbuf_fail(err, errlen, "keygen: no NAME given");
	if (asprintf(&key_path, "%s.key", name) < 0)
		key_path = NULL;
	if (asprintf(&pub_path, "%s.pub", name) < 0)
		pub_path = NULL;
	if (!key_path || !pub_path) {
		rc = errbuf_fail_errno(err, errlen, -ENOMEM, name, "keygen");
		goto out_free;
	}
	/* both checked before either is written */
	if (lstat(key_path, &st) == 0 || lstat(pub_path, &st) == 0) {
		rc = errbuf_fail_errno(err, errlen, -EEXIST,
				       lstat(key_path, &st) == 0 ? key_path : pub_path,
				       "not overwriting an existing file");
		goto out_free;
	}
	if (zmq_curve_keypair(pub, sec) != 0) {
		rc = errbuf_fail(err, errlen, "keygen: cannot make a CURVE key pair: %s "
				 "(libzmq without CURVE?)", zmq_strerror(errno));
		goto out_free;
	}
	if (asprintf(&key_text, "# cutmixd CURVE key pair: keep this file secret\n"
		     "public-key = %s\nsecret-key = %s\n", pub, sec) < 0)
		key_text = NULL;
	if (asprintf(&pub_text, "# cutmixd CURVE public key\npublic-key = %s\n",
		     pub) < 0)
		pub_text = NULL;
	if (!key_text || !pub_text) {
		rc = errbuf_fail_errno(err, errlen, -ENOMEM, name, "keygen");
		goto out_free;
	}
	rc = create_file(key_path, 0600, key_text, &key_made, err, errlen);
	if (!rc)
		rc = create_file(pub_path, 0644, pub_text, &pub_made, err, errlen);
	if (!rc && public_key)
		memcpy(public_key, pub, sizeof(pub));
out_free:
	if (rc && key_made)
		unlink(key_path);
	if (rc && pub_made)
		unlink(pub_path);
	explicit_bzero(sec, sizeof(sec));
	if (key_text)
		explicit_bzero(key_text, strlen(key_text));
	free(key_text);
	free(pub_text);
	free(key_path);
	free(pub_path);
	return rc;
}
