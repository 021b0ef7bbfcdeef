/*
 * digest.c — SHA-256 (FIPS 180-4), fed incrementally: libsodium's
 * crypto_hash_sha256 (libzmq links libsodium for CURVE already), behind
 * the names the daemon has always used.
 */
#include "digest.h"

void sha256_init(sha256_t *s)
{
	/* Idempotent and thread-safe. The hash itself is plain portable
	 * code that works even if init fails (it only picks CPU features and
	 * seeds randombytes, neither used here). */
	if (sodium_init() < 0) {
		/* nothing to do: see above */
	}
	crypto_hash_sha256_init(&s->st);
}

void sha256_update(sha256_t *s, const void *data, size_t len)
{
	crypto_hash_sha256_update(&s->st, data, len);
}

void sha256_final(sha256_t *s, uint8_t out[DIGEST_SIZE])
{
	crypto_hash_sha256_final(&s->st, out);
}

void digest_hex(const uint8_t d[DIGEST_SIZE], char out[2 * DIGEST_SIZE + 1])
{
	static const char hex[] = "0123456789abcdef";

	for (int i = 0; i < DIGEST_SIZE; i++) {
		out[2 * i] = hex[d[i] >> 4];
		out[2 * i + 1] = hex[d[i] & 15];
	}
	out[2 * DIGEST_SIZE] = '\0';
}
