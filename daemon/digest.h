/*
 * digest.h — SHA-256 (FIPS 180-4), used for the config digest that clients
 * compare before mixing batches from several daemons. libsodium does the
 * hashing (digest.c).
 */
#ifndef CUTMIXD_DIGEST_H
#define CUTMIXD_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#define DIGEST_SIZE 32

/* libsodium's state (digest.c); the name stays for dataset.h's forward
 * declaration. */
typedef struct sha256 {
	crypto_hash_sha256_state st;
} sha256_t;

void sha256_init(sha256_t *s);
void sha256_update(sha256_t *s, const void *data, size_t len);
void sha256_final(sha256_t *s, uint8_t out[DIGEST_SIZE]);
/* Lower-case hex, 64 chars + NUL. */
void digest_hex(const uint8_t d[DIGEST_SIZE], char out[2 * DIGEST_SIZE + 1]);

#endif
