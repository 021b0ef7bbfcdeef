/*
 * fuzz_decode.c — libFuzzer target for the JPEG decode wrapper
 * (daemon/decode.c over libjpeg-turbo).
 *
 * Input layout:
 *   byte 0   flags: bits 0-1 scale 1/1, 1/2, 1/4, 1/8 (DCT scaling);
 *            bit 2  also decode the whole image at the same scale and
 *                   compare the region with it byte for byte (the
 *                   "region == full decode" promise of decode.h), only
 *                   when FUZZ_DECODE_DIFF=1 is set in the environment
 *                   (see docs/FUZZING.md);
 *            bit 3  raw region: coordinates may lie outside the image
 *                   (argument checks of decoder_read);
 *            bit 4  tiny pixel limit (4096) instead of 4,000,000;
 *            bit 5  decode twice: a second decoder_open, this time with
 *                   decoder_read_stream (the daemon's path), of the same
 *                   bytes must give the same result and pixels, its row
 *                   groups in order and within the region (with
 *                   FUZZ_DECODE_DIFF=1 on a brand-new decoder, so state
 *                   the reused one carries over from earlier inputs
 *                   shows up);
 *            bit 6  through a file, as the daemon does: the JPEG is
 *                   written to /dev/shm/fuzz_decode.PID.jpg and loaded with
 *                   decode_read_file() into the decoder's reusable input
 *                   buffer (bit 4 also sets max_file_bytes = 1024);
 *            bit 7  with bit 6: after decoder_open(), load a larger file
 *                   (the input buffer moves) and check that the open
 *                   image was closed rather than left pointing at the
 *                   freed buffer.
 *   bytes 1-4 region x0, y0, x1, y1 as fractions of the scaled size
 *            (always a valid, non-empty region unless bit 3);
 *   the rest the JPEG file.
 * Shorter inputs go to decoder_open() as they are (empty input included).
 *
 * One decoder_t is reused across all inputs, as a daemon worker reuses its
 * decoder across files, so state left behind by a failed image (libjpeg
 * abort, longjmp out of any stage) is exercised too.
 *
 * Properties checked (abort() on violation): return codes are 0 or one of
 * the documented negative errno values; a failure leaves a message and a
 * success none; the decoded region has the size asked for and every byte
 * of it is readable (ASan); after decoder_read() the decoder is idle
 * (another read says "no image open"); repeated decodes are identical.
 * Memory stays bounded by the pixel limit (declared width*height).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "decode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define HDR 5
#define MAX_PIXELS 4000000u
#define TINY_PIXELS 4096u
#define TINY_FILE 1024u

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "fuzz_decode: %s:%d: check failed: %s\n", \
				__FILE__, __LINE__, #cond);                  \
			abort();                                             \
		}                                                            \
	} while (0)

static decoder_t *dec;
static bool diff_mode;
static volatile uint32_t sink;
static char *img_path, *big_path;

static void cleanup(void)
{
	decoder_destroy(&dec);
	free(img_path);
	free(big_path);
}

/* Per-process file names under /dev/shm (or $TMPDIR); each file is
 * removed as soon as decode_read_file() has read it, so nothing is left
 * behind, not even by a crash. */
static void make_paths(void)
{
	const char *base = "/dev/shm";
	struct stat st;

	if (stat(base, &st) < 0 || !S_ISDIR(st.st_mode) || access(base, W_OK) < 0) {
		base = getenv("TMPDIR");
		if (!base || !*base)
			base = "/tmp";
	}
	CHECK(asprintf(&img_path, "%s/fuzz_decode.%d.jpg", base, (int)getpid()) > 0);
	CHECK(asprintf(&big_path, "%s/fuzz_decode.%d.big", base, (int)getpid()) > 0);
}

static void write_file(const char *path, const uint8_t *data, size_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	size_t off = 0;

	CHECK(fd >= 0);
	while (off < size) {
		ssize_t n = write(fd, data + off, size - off);

		CHECK(n > 0);
		off += (size_t)n;
	}
	CHECK(close(fd) == 0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *e = getenv("FUZZ_DECODE_DIFF");

	(void)argc;
	(void)argv;
	diff_mode = e && *e == '1';
	dec = decoder_new();
	CHECK(dec != NULL);
	make_paths();
	atexit(cleanup);
	return 0;
}

static bool open_rc_ok(int rc)
{
	return rc == 0 || rc == -EBADMSG || rc == -ENOTSUP || rc == -E2BIG ||
	       rc == -ENOMEM || rc == -EFBIG;
}

static bool read_rc_ok(int rc)
{
	return rc == 0 || rc == -EBADMSG || rc == -ENOTSUP || rc == -ENOMEM;
}

/* Message state after a call: set on failure, empty on success. */
static void check_message_of(decoder_t *d, int rc)
{
	const char *msg = decoder_error(d);

	CHECK(msg != NULL);
	CHECK(strlen(msg) < 256);
	if (rc == 0)
		CHECK(msg[0] == '\0');
	else
		CHECK(msg[0] != '\0');
}

static void check_message(int rc)
{
	check_message_of(dec, rc);
}

/* A coordinate inside [0, s]: b/256 of the way, for the start. */
static int frac_lo(uint8_t b, int s)
{
	return (int)((int64_t)b * s / 256);
}

/* The end of a non-empty range starting at lo: lo+1 .. s. */
static int frac_hi(uint8_t b, int lo, int s)
{
	return lo + 1 + (int)((int64_t)b * (s - lo - 1) / 255);
}

/* Raw mode: near 0 or near the far edge, inside or out. */
static int raw_coord(uint8_t b, int s)
{
	return b < 128 ? (int)b - 8 : s + (int)b - 136;
}

/* Copy a decoded region into a packed malloc'd buffer, reading every byte
 * (ASan checks each row lies inside the decoder's buffer). */
static uint8_t *copy_region(const struct decoded *out)
{
	size_t row = (size_t)out->width * 3;
	uint8_t *copy = malloc(row * (size_t)out->height);
	uint32_t sum = 0;

	CHECK(copy != NULL);
	for (int y = 0; y < out->height; y++) {
		const uint8_t *src = out->rgb + (size_t)y * out->stride;

		memcpy(copy + (size_t)y * row, src, row);
		sum += src[0] + src[row - 1];
	}
	sink = sum;
	return copy;
}

/* Open `jpg` on d and check what the open promises; returns its rc. */
static int do_open_on(decoder_t *d, const uint8_t *jpg, size_t len,
		      const struct decode_limits *lim, int *w, int *h)
{
	int rc = decoder_open(d, jpg, len, lim, w, h);

	CHECK(open_rc_ok(rc));
	check_message_of(d, rc);
	if (rc != 0) {
		CHECK(*w == 0 && *h == 0);
		return rc;
	}
	CHECK(*w > 0 && *h > 0);
	CHECK((uint64_t)*w * (uint64_t)*h <= lim->max_pixels);
	return 0;
}

static int do_open(const uint8_t *jpg, size_t len,
		   const struct decode_limits *lim, int *w, int *h)
{
	return do_open_on(dec, jpg, len, lim, w, h);
}

/* What decoder_read_stream() hands over, gathered into one region. */
struct gather {
	uint8_t *buf;
	int width, height, next_row;
};

static void gather_rows(void *ctx, const uint8_t *rows, size_t stride,
			int row0, int nrows)
{
	struct gather *g = ctx;
	size_t row = (size_t)g->width * 3;

	/* Groups come in order, 1-16 rows, inside the region. */
	CHECK(row0 == g->next_row && nrows >= 1 && nrows <= 16);
	CHECK(row0 + nrows <= g->height && stride >= row);
	for (int y = 0; y < nrows; y++)
		memcpy(g->buf + (size_t)(row0 + y) * row, rows + (size_t)y * stride,
		       row);
	g->next_row = row0 + nrows;
}

/*
 * Decode the same bytes and region again, streamed as the daemon does,
 * and compare with the first decode (rc1, and its pixels when rc1 == 0):
 * the two read paths must agree. In diff mode on a brand-new decoder: a
 * decoder reused across files must not carry anything from one image to
 * the next (tables, state), or a file's pixels, or whether it decodes at
 * all, would depend on what that worker decoded before.
 */
static void decode_again(const uint8_t *jpg, size_t len,
			 const struct decode_limits *lim, int denom, int x0,
			 int y0, int x1, int y1, int rc1, const uint8_t *region)
{
	decoder_t *d = diff_mode ? decoder_new() : dec;
	struct gather g = { NULL, x1 - x0, y1 - y0, 0 };
	size_t bytes = (size_t)g.width * (size_t)g.height * 3;
	int rc, w, h;

	CHECK(d != NULL);
	CHECK((g.buf = malloc(bytes)) != NULL);
	rc = do_open_on(d, jpg, len, lim, &w, &h);
	if (rc == 0)
		rc = decoder_read_stream(d, denom, x0, y0, x1, y1, gather_rows, &g);
	if (rc != rc1) {
		fprintf(stderr, "fuzz_decode: streamed again on a %s decoder: "
			"rc %d (%s), first decode on the reused decoder: rc %d "
			"(%s)\n", d == dec ? "reused" : "fresh", rc,
			decoder_error(d), rc1, rc1 ? decoder_error(dec) : "");
		abort();
	}
	if (rc == 0) {
		CHECK(g.next_row == g.height);
		for (int y = 0; y < g.height; y++) {
			size_t row = (size_t)g.width * 3;

			if (memcmp(g.buf + (size_t)y * row, region + (size_t)y * row,
				   row)) {
				fprintf(stderr, "fuzz_decode: streamed again on a "
					"%s decoder: row %d differs\n",
					d == dec ? "reused" : "fresh", y0 + y);
				abort();
			}
		}
	}
	free(g.buf);
	if (d != dec)
		decoder_destroy(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct decode_limits lim = { .max_pixels = MAX_PIXELS,
				     .max_file_bytes = 0 };
	const uint8_t *jpg;
	uint8_t flags;
	size_t len;
	int denom, w, h, sw, sh, x0, y0, x1, y1, rc, w2, h2;
	struct decoded out;
	uint8_t *region = NULL;
	bool valid;

	if (size < HDR) {
		rc = do_open(data, size, &lim, &w, &h);
		return 0;
	}
	flags = data[0];
	denom = 1 << (flags & 3);
	jpg = data + HDR;
	len = size - HDR;
	if (flags & 0x10)
		lim.max_pixels = TINY_PIXELS;

	if (flags & 0x40) {
		/* The daemon's path: file -> decoder's input buffer. */
		const uint8_t *buf;
		size_t got;

		if (flags & 0x10)
			lim.max_file_bytes = TINY_FILE;
		write_file(img_path, jpg, len);
		rc = decode_read_file(dec, img_path, &lim, &buf, &got);
		unlink(img_path);
		CHECK(rc == 0 || rc == -ENODATA || rc == -EFBIG);
		check_message(rc);
		CHECK(rc != -ENODATA || len == 0);
		CHECK(rc != -EFBIG || (lim.max_file_bytes && len > lim.max_file_bytes));
		if (rc != 0) {
			CHECK(buf == NULL && got == 0);
			CHECK(decoder_read(dec, denom, 0, 0, 1, 1, &out) == -EINVAL);
			return 0;
		}
		CHECK(got == len && !memcmp(buf, jpg, len));
		jpg = buf; /* valid until the next decode_read_file() */
	}

	rc = do_open(jpg, len, &lim, &w, &h);
	if (rc == 0 && (flags & 0xc0) == 0xc0) {
		/* Load a file larger than any buffer so far while the image is
		 * open: the input buffer is reallocated under it. The image
		 * must have been closed (a read now would use freed memory). */
		static size_t big_len = 1u << 15;
		const uint8_t *buf;
		size_t got;
		uint8_t *big;

		if (big_len < (1u << 20))
			big_len *= 2;
		big = calloc(1, big_len);
		CHECK(big != NULL);
		write_file(big_path, big, big_len);
		free(big);
		lim.max_file_bytes = 0;
		rc = decode_read_file(dec, big_path, &lim, &buf, &got);
		unlink(big_path);
		CHECK(rc == 0);
		CHECK(got == big_len);
		CHECK(decoder_read(dec, denom, 0, 0, 1, 1, &out) == -EINVAL);
		return 0;
	}
	if (rc != 0) {
		/* Nothing open: a read must refuse. */
		CHECK(decoder_read(dec, denom, 0, 0, 1, 1, &out) == -EINVAL);
		CHECK(out.rgb == NULL && out.width == 0 && out.height == 0);
		if ((flags & 0x20) && diff_mode) {
			decoder_t *fresh = decoder_new();

			CHECK(fresh != NULL);
			CHECK(do_open_on(fresh, jpg, len, &lim, &w2, &h2) == rc);
			decoder_destroy(&fresh);
		}
		return 0;
	}

	decoder_scaled_size(dec, denom, &sw, &sh);
	CHECK(sw == (w + denom - 1) / denom && sh == (h + denom - 1) / denom);
	{
		int bw, bh;

		decoder_scaled_size(dec, 3, &bw, &bh);
		CHECK(bw == 0 && bh == 0);
	}

	if (flags & 0x08) {
		x0 = raw_coord(data[1], sw);
		y0 = raw_coord(data[2], sh);
		x1 = raw_coord(data[3], sw);
		y1 = raw_coord(data[4], sh);
	} else {
		x0 = frac_lo(data[1], sw);
		y0 = frac_lo(data[2], sh);
		x1 = frac_hi(data[3], x0, sw);
		y1 = frac_hi(data[4], y0, sh);
	}
	valid = x0 >= 0 && y0 >= 0 && x0 < x1 && y0 < y1 && x1 <= sw && y1 <= sh;

	rc = decoder_read(dec, denom, x0, y0, x1, y1, &out);
	if (!valid) {
		CHECK(rc == -EINVAL);
	} else {
		CHECK(read_rc_ok(rc));
	}
	check_message(rc);
	if (rc == 0) {
		CHECK(out.rgb != NULL);
		CHECK(out.width == x1 - x0 && out.height == y1 - y0);
		CHECK(out.stride >= (size_t)out.width * 3);
		region = copy_region(&out);
	} else {
		CHECK(out.rgb == NULL);
	}
	/* Success or not, the image is closed now. */
	CHECK(decoder_read(dec, denom, x0, y0, x1, y1, &out) == -EINVAL);
	decoder_scaled_size(dec, denom, &w2, &h2);
	CHECK(w2 == 0 && h2 == 0);

	if ((flags & 0x20) && valid)
		decode_again(jpg, len, &lim, denom, x0, y0, x1, y1, rc, region);

	if (rc == 0 && diff_mode && (flags & 0x04) &&
	    (x0 != 0 || y0 != 0 || x1 != sw || y1 != sh)) {
		/* Region vs the same rows and columns of a full decode. A
		 * full decode may fail where the region's did not (it reads
		 * further into a broken file): then there is nothing to
		 * compare. */
		CHECK(do_open(jpg, len, &lim, &w2, &h2) == 0);
		if (decoder_read(dec, denom, 0, 0, sw, sh, &out) == 0) {
			size_t row = (size_t)(x1 - x0) * 3;

			for (int y = y0; y < y1; y++) {
				const uint8_t *full = out.rgb +
					(size_t)y * out.stride + (size_t)x0 * 3;
				const uint8_t *reg = region + (size_t)(y - y0) * row;

				if (memcmp(full, reg, row)) {
					size_t i = 0;

					while (full[i] == reg[i])
						i++;
					fprintf(stderr, "fuzz_decode: %dx%d 1/%d "
						"region [%d,%d)x[%d,%d): pixel "
						"(%d,%d) channel %d is %d, full "
						"decode has %d\n", w, h, denom,
						x0, x1, y0, y1, x0 + (int)(i / 3),
						y, (int)(i % 3), reg[i], full[i]);
					abort();
				}
			}
		}
	}
	free(region);
	return 0;
}
