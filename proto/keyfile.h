/*
 * keyfile.h — the one grammar of CURVE key files, shared by the daemon
 * (daemon/keys.c: its key pair, authorized client keys, `cutmixd stats
 * --key`) and the C client (cutmixd_load_keypair). The Python client
 * implements the same grammar and is tested against the same fixture
 * files (tests/fixtures/keys/, described in its README.md).
 *
 * What `cutmixd keygen NAME` writes:
 *
 *   # cutmixd CURVE key pair: keep this file secret      (NAME.key, 0600)
 *   public-key = <40 Z85 characters>
 *   secret-key = <40 Z85 characters>
 *
 *   # cutmixd CURVE public key                           (NAME.pub, 0644)
 *   public-key = <40 Z85 characters>
 *
 * What every reader accepts, line by line (a file is at most
 * KEYFILE_MAX_BYTES; a UTF-8 BOM at its start is skipped; blanks at both
 * ends of a line are ignored):
 *   - a blank line;
 *   - a line that is exactly one Z85 key (40 characters that decode and
 *     encode back the same): a public key. Checked first, since '#' and
 *     '=' are Z85 characters;
 *   - a '#' comment line (no comment may follow a key on its line);
 *   - NAME = VALUE, blanks around '=' optional, VALUE optionally in double
 *     quotes; NAME is public-key or secret-key, compared without case and
 *     with '_' the same as '-';
 *   - the section words of a ZeroMQ zcert file, `metadata` and `curve`,
 *     alone on their line. After `metadata` (until `curve`), NAME = VALUE
 *     lines with other names are zcert metadata and are skipped.
 * Anything else is an error naming the file and line; so is a NUL byte,
 * a key that is not 40 Z85 characters, and (in the callers) a key given
 * twice. A secret key's value is never quoted in a message.
 */
#ifndef CUTMIXD_KEYFILE_H
#define CUTMIXD_KEYFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEYFILE_Z85_LEN   40        /* a CURVE key as Z85 text, no NUL */
#define KEYFILE_BIN_LEN   32        /* a CURVE key in binary */
#define KEYFILE_MAX_BYTES (1 << 20) /* a key file is small */

enum keyfile_kind { KEYFILE_PUBLIC, KEYFILE_SECRET };

/* One key of a file, as keyfile_parse() found it. */
struct keyfile_key {
	enum keyfile_kind kind;
	int line;
	uint8_t bin[KEYFILE_BIN_LEN];
};

/* Called for every key in file order; a non-zero return stops the parse
 * and is returned (with the callback's message in err). */
typedef int (*keyfile_fn)(void *ctx, const char *path, const struct keyfile_key *k,
			  char *err, size_t errlen);

/*
 * Parse buf[0..len) (a whole file; `path` only names it in messages) and
 * hand every key to `each`. 0, -EINVAL with "path:line: why" in err, or
 * the callback's error. `buf` is not changed.
 */
int keyfile_parse(const char *path, const char *buf, size_t len, keyfile_fn each,
		  void *ctx, char *err, size_t errlen);

/* Read a whole regular file of at most KEYFILE_MAX_BYTES into a new
 * NUL-terminated buffer (free with keyfile_free_text, which wipes it).
 * 0, or -errno with "path: why" in err. *mode gets its st_mode when not
 * NULL. */
int keyfile_read(const char *path, char **out, size_t *len, unsigned *mode,
		 char *err, size_t errlen);
void keyfile_free_text(char *buf, size_t len);

/* True when text[0..len) is a CURVE key in Z85; the key goes to out
 * when it is not NULL. */
bool keyfile_z85_ok(const char *text, size_t len, uint8_t out[KEYFILE_BIN_LEN]);

#endif
