/*
 * jpeg_fixtures.h — JPEG files made in memory at test time with libjpeg's
 * compressor, from known pixel patterns, so a fresh clone needs no binary
 * fixtures. Depends on libjpeg and libc only (every unit test links it).
 */
#ifndef CUTMIXD_TESTS_JPEG_FIXTURES_H
#define CUTMIXD_TESTS_JPEG_FIXTURES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum jpeg_fixture_subsamp {
	JPEG_FIXTURE_444 = 0,
	JPEG_FIXTURE_422,        /* luma 2x1 */
	JPEG_FIXTURE_420,        /* luma 2x2 */
	JPEG_FIXTURE_440,        /* luma 1x2 */
	JPEG_FIXTURE_411,        /* luma 4x1 */
};

struct jpeg_fixture_spec {
	int width, height;
	int components;          /* 1 gray, 3 RGB (coded YCbCr), 4 CMYK */
	enum jpeg_fixture_subsamp subsamp; /* ignored for gray */
	int quality;             /* 1..100; 0 means 90 */
	bool progressive;
	int restart_interval;    /* in MCUs; 0 = no restart markers */
	bool arithmetic;         /* arithmetic instead of Huffman coding */
	bool ycck;               /* 4 components: code as YCCK, not CMYK */
	bool plain_cmyk;         /* 4 components: no Adobe marker, ink stored
				    as is (not inverted) */
	unsigned seed;           /* varies the pattern; 0 is fine */
};

/*
 * The pattern value of channel c (0..components-1) at (x, y): smooth
 * gradients in every channel, a few hard edges and some seeded texture, so
 * that chroma upsampling and block edges matter. For 4 components the
 * values are ink amounts (0 = no ink), not what is stored in the file.
 */
uint8_t jpeg_fixture_pattern(const struct jpeg_fixture_spec *s, int x, int y, int c);

/*
 * Fill `px` (height rows of stride bytes, width*components used) with the
 * pattern.
 */
void jpeg_fixture_fill(const struct jpeg_fixture_spec *s, uint8_t *px, size_t stride);

/*
 * Compress `px` (as jpeg_fixture_fill lays it out; 4 components are ink
 * amounts and are written inverted with an Adobe marker, as Photoshop
 * does, unless plain_cmyk). On success *out is malloc'd (free() it). Returns 0 or -EINVAL /
 * -ENOMEM / -EIO (libjpeg error; the message goes to errbuf if not NULL).
 */
int jpeg_fixture_encode(const struct jpeg_fixture_spec *s, const uint8_t *px,
			size_t stride, uint8_t **out, size_t *len,
			char *errbuf, size_t errlen);

/* jpeg_fixture_fill + jpeg_fixture_encode. */
int jpeg_fixture_make(const struct jpeg_fixture_spec *s, uint8_t **out, size_t *len);

/*
 * Offset of the 0xFF of the first SOFn marker in `jpg`, or -1. The frame
 * header follows it: [+4] precision, [+5,+6] height, [+7,+8] width (big
 * endian), [+9] number of components; tests patch these to make 12-bit,
 * empty or absurdly large files.
 */
long jpeg_fixture_find_sof(const uint8_t *jpg, size_t len);

#endif
