/*
 * digest.h — SHA-256 (FIPS 180-4), used for the config digest that clients
 * compare before mixing batches from several daemons.
 */
#ifndef CUTMIXD_DIGEST_H
#define CUTMIXD_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#define DIGEST_SIZE 32

typedef struct sha256 {
	uint32_t h[8];
	uint64_t bytes;
	uint8_t buf[64];
	size_t fill;
} sha256_t;

void sha256_init(sha256_t *s);
void sha256_update(sha256_t *s, const void *data, size_t len);
void sha256_final(sha256_t *s, uint8_t out[DIGEST_SIZE]);
/* Lower-case hex, 64 chars + NUL. */
void digest_hex(const uint8_t d[DIGEST_SIZE], char out[2 * DIGEST_SIZE + 1]);

#endif
