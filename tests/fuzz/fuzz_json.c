/*
 * fuzz_json.c — libFuzzer target for the C client's JSON reader
 * (client/c/json.c: top-level integer members of the daemon's INFO
 * object). That text comes from the network into a user's process.
 *
 * Properties checked on every input:
 *   - cmx_json_top_int() never reads past the NUL that ends the text
 *     (ASan: the input is copied into a buffer of exactly size + 1) and
 *     never crashes or hangs;
 *   - it returns 0, -ENOENT or -EINVAL only, and leaves *out alone unless
 *     it returns 0;
 *   - embedding: the input (escaped as a JSON string) as the value of a
 *     member before "batches_per_epoch": 123 and inside a nested array
 *     before "max_window": 7 — whatever bytes a string holds, the members
 *     after it are found with their values.
 * A violated property calls abort(), which libFuzzer reports as a crash.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "fuzz_json: %s:%d: check failed: %s\n", \
				__FILE__, __LINE__, #cond);                  \
			abort();                                             \
		}                                                            \
	} while (0)

static const char *const keys[] = { "batches_per_epoch", "max_window", "", "a" };

static void check_plain(const char *text)
{
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		int64_t v = 0x5a5a5a5a;
		int rc = cmx_json_top_int(text, keys[i], &v);

		CHECK(rc == 0 || rc == -ENOENT || rc == -EINVAL);
		if (rc != 0)
			CHECK(v == 0x5a5a5a5a);
	}
}

/* data as a JSON string literal (with quotes) into out; its length. */
static size_t json_string(const uint8_t *data, size_t size, char *out)
{
	size_t o = 0;

	out[o++] = '"';
	for (size_t i = 0; i < size; i++) {
		uint8_t c = data[i];

		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c < 0x20 || c >= 0x7f) {
			o += (size_t)sprintf(out + o, "\\u%04x", c);
		} else {
			out[o++] = (char)c;
		}
	}
	out[o++] = '"';
	out[o] = 0;
	return o;
}

static void check_embedded(const uint8_t *data, size_t size)
{
	size_t cap = 6 * size + 128;
	char *s = malloc(cap), *doc = malloc(3 * cap + 256);
	int64_t v = -1;

	CHECK(s && doc);
	json_string(data, size, s);
	snprintf(doc, 3 * cap + 256, "{\"x\": %s, \"n\": [%s, {\"k\": [%s]}], \"batches_per_epoch\": 123, "
		 "\"max_window\" :7}", s, s, s);
	CHECK(cmx_json_top_int(doc, "batches_per_epoch", &v) == 0 && v == 123);
	CHECK(cmx_json_top_int(doc, "max_window", &v) == 0 && v == 7);
	CHECK(cmx_json_top_int(doc, "absent", &v) == -ENOENT);
	free(s);
	free(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);

	CHECK(text);
	memcpy(text, data, size);
	text[size] = 0;
	check_plain(text);
	free(text);
	if (size <= 4096)
		check_embedded(data, size);
	return 0;
}
