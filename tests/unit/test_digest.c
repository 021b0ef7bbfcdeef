/*
 * test_digest.c — SHA-256 against the FIPS 180-4 / NIST examples, fed in
 * one piece and in awkward chunks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "digest.h"

static void hash_hex(const void *data, size_t len, char out[2 * DIGEST_SIZE + 1])
{
	sha256_t s;
	uint8_t d[DIGEST_SIZE];

	sha256_init(&s);
	sha256_update(&s, data, len);
	sha256_final(&s, d);
	digest_hex(d, out);
}

static void test_empty(void **state)
{
	char hex[2 * DIGEST_SIZE + 1];
	(void)state;

	hash_hex("", 0, hex);
	assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void test_abc(void **state)
{
	char hex[2 * DIGEST_SIZE + 1];
	(void)state;

	hash_hex("abc", 3, hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_448_bits(void **state)
{
	static const char msg[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	static const char want[] = "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1";
	char hex[2 * DIGEST_SIZE + 1];
	(void)state;

	hash_hex(msg, strlen(msg), hex);
	assert_string_equal(hex, want);

	/* byte by byte gives the same */
	sha256_t s;
	uint8_t d[DIGEST_SIZE];
	sha256_init(&s);
	for (size_t i = 0; i < strlen(msg); i++)
		sha256_update(&s, msg + i, 1);
	sha256_final(&s, d);
	digest_hex(d, hex);
	assert_string_equal(hex, want);
}

static void test_896_bits(void **state)
{
	static const char msg[] =
		"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
		"hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
	char hex[2 * DIGEST_SIZE + 1];
	(void)state;

	hash_hex(msg, strlen(msg), hex);
	assert_string_equal(hex, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

static void test_million_a(void **state)
{
	static const char want[] = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
	static const size_t chunks[] = { 1, 3, 63, 64, 65, 127, 1000, 7, 4097 };
	enum { TOTAL = 1000000 };
	char *buf = malloc(TOTAL);
	char hex[2 * DIGEST_SIZE + 1];
	uint8_t d[DIGEST_SIZE];
	sha256_t s;
	(void)state;

	assert_non_null(buf);
	memset(buf, 'a', TOTAL);

	hash_hex(buf, TOTAL, hex);
	assert_string_equal(hex, want);

	sha256_init(&s);
	size_t done = 0, k = 0;
	while (done < TOTAL) {
		size_t n = chunks[k++ % (sizeof(chunks) / sizeof(chunks[0]))];
		if (n > TOTAL - done)
			n = TOTAL - done;
		sha256_update(&s, buf + done, n);
		done += n;
	}
	sha256_final(&s, d);
	digest_hex(d, hex);
	assert_string_equal(hex, want);
	free(buf);
}

/* Lengths around the padding boundary (55, 56, 63, 64 bytes). */
static void test_padding_edges(void **state)
{
	static const struct { size_t len; const char *hex; } v[] = {
		{ 55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318" },
		{ 56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a" },
		{ 63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34" },
		{ 64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb" },
	};
	char buf[64], hex[2 * DIGEST_SIZE + 1];
	(void)state;

	memset(buf, 'a', sizeof(buf));
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		hash_hex(buf, v[i].len, hex);
		assert_string_equal(hex, v[i].hex);
	}
}

static void test_hex(void **state)
{
	uint8_t d[DIGEST_SIZE];
	char hex[2 * DIGEST_SIZE + 1];
	(void)state;

	for (int i = 0; i < DIGEST_SIZE; i++)
		d[i] = (uint8_t)(i * 8 + 7);
	memset(hex, 'x', sizeof(hex));
	digest_hex(d, hex);
	assert_int_equal(strlen(hex), 64);
	assert_string_equal(hex, "070f171f272f373f474f575f676f777f878f979fa7afb7bfc7cfd7dfe7eff7ff");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_abc),
		cmocka_unit_test(test_448_bits),
		cmocka_unit_test(test_896_bits),
		cmocka_unit_test(test_million_a),
		cmocka_unit_test(test_padding_edges),
		cmocka_unit_test(test_hex),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
