/*
 * keys.h — CURVE key files: the daemon's key pair (NAME.key), the public
 * keys of the clients it lets in (a file, or a folder of NAME.pub files),
 * and `cutmixd keygen NAME`, which writes both kinds.
 *
 * File format (shared with the clients; keep it exactly):
 *
 *   # cutmixd CURVE key pair: keep this file secret      (NAME.key, 0600)
 *   public-key = <40 Z85 characters>
 *   secret-key = <40 Z85 characters>
 *
 *   # cutmixd CURVE public key                           (NAME.pub, 0644)
 *   public-key = <40 Z85 characters>
 *
 * Readers accept blank lines, '#' comment lines, "public-key = KEY" and
 * "secret-key = KEY" lines (blanks around '=' optional, KEY optionally in
 * double quotes), a bare line of exactly 40 Z85 characters, which is a
 * public key, and ZeroMQ zcert files. No comment may follow a key on its
 * line ('#' is a Z85 character). The whole grammar is proto/keyfile.h's,
 * one parser shared with the C client and `cutmixd stats --key`.
 *
 * Errors are one line naming the file and line:
 *   "clients/bob.pub:2: public-key: must be 40 Z85 characters, got 'abc'"
 * Secret key values are never quoted in messages.
 */
#ifndef CUTMIXD_KEYS_H
#define CUTMIXD_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEYS_Z85_LEN 40   /* a CURVE key as Z85 text, without the NUL */
#define KEYS_BIN_LEN 32   /* a CURVE key in binary */
#define KEYS_MAX     65536 /* public keys in one authorized set */

/* A set of client public keys: a sorted array, looked up with bsearch. */
typedef struct keyset keyset_t;

/*
 * Read a key-pair file: its secret key, and the public key that belongs to
 * it (derived from the secret; a public-key line, when there is one, must
 * match). A file readable or writable by group or others is loaded with a
 * warning in the log. Returns 0, or -EINVAL (content), -ENOENT / -EACCES
 * / ... (file), -ENOMEM with the message in err. Either output may be NULL.
 */
int keys_load_secret(const char *path, char secret[KEYS_Z85_LEN + 1],
		     char public_key[KEYS_Z85_LEN + 1], char *err, size_t errlen);

/* Read a file holding exactly one public key (NAME.pub, or the public-key
 * line of a NAME.key). Returns 0 or -errno as above. */
int keys_load_public(const char *path, char public_key[KEYS_Z85_LEN + 1],
		     char *err, size_t errlen);

/*
 * Read the authorized client keys: `path` is a file (one or more public
 * keys), or a folder whose "*.pub" files (not hidden ones) are read in name
 * order; other files are ignored. A file without a key, or a folder
 * without a *.pub file, is an error; a key listed twice counts once.
 * Returns 0 and a new set in *out, or -errno with the message.
 */
int keys_load_authorized(const char *path, keyset_t **out, char *err,
			 size_t errlen);

bool keys_contains(const keyset_t *set, const uint8_t key[KEYS_BIN_LEN]);
size_t keys_count(const keyset_t *set);
/* NULL-safe, idempotent, clears *set. */
void keys_destroy(keyset_t **set);

/*
 * Write a new key pair to NAME.key (mode 0600) and NAME.pub (mode 0644).
 * Refuses (-EEXIST) when either file exists, and leaves nothing behind on
 * failure. The public key goes to public_key when it is not NULL.
 */
int keys_write_pair(const char *name, char public_key[KEYS_Z85_LEN + 1],
		    char *err, size_t errlen);

/* True when text[0..len) is a CURVE key in Z85 (40 characters that decode
 * and encode back the same); the key goes to out when it is not NULL. */
bool keys_parse_z85(const char *text, size_t len, uint8_t out[KEYS_BIN_LEN]);

#endif
