/*
 * splice.h — a crop of a JPEG whose restart intervals tile its MCU rows
 * (what `cutmixd pack` writes) without entropy-decoding what lies above
 * and beside it: the intervals a crop needs are cut out of the
 * entropy-coded data at their restart markers and written into a small
 * valid JPEG (same tables, SOF size patched, restart markers renumbered)
 * that is then decoded as usual.
 *
 * Restart markers reset the DC predictions, so every MCU row decodes the
 * same on its own. What differs at a cut is chroma upsampling: with
 * vertically subsampled chroma (4:2:0, 4:4:0) the fancy upsampler takes the
 * chroma row above the first output row of an MCU row and below its last;
 * at the spliced image's edges it replicates instead. So when the crop's
 * first row is the first row of an MCU row (and not the image's), one more
 * MCU row is taken above, and likewise below when its last row is the last
 * of an MCU row; with horizontally subsampled chroma (4:2:0, 4:2:2, 4:1:1)
 * the same holds for columns: one more interval column on the side where
 * the crop's edge falls exactly on an interval boundary inside the image.
 * Elsewhere no margin is needed.
 */
#ifndef CUTMIXD_SPLICE_H
#define CUTMIXD_SPLICE_H

#include <stddef.h>
#include <stdint.h>

/*
 * Restart intervals [c0,c1) of the MCU rows [r0,r1) of jpg (segment
 * offsets segs[nsegs], per_row intervals per MCU row) as a JPEG of
 * width x height, into *buf (grown). 0 or -EBADMSG / -ENOMEM.
 */
int splice_rect(const uint8_t *jpg, size_t len, const uint32_t *segs, uint32_t nsegs,
		uint32_t per_row, uint32_t r0, uint32_t r1, uint32_t c0, uint32_t c1,
		uint32_t width, uint32_t height, uint8_t **buf, size_t *cap, size_t *outlen);

/*
 * Lossless transcode to baseline with optimized Huffman tables and restart
 * intervals of about target_px pixels (the divisor of the MCUs per row
 * nearest it within 48..128 px; none: one interval per MCU row, also when
 * target_px is 0); *out malloc'ed. 0 or -errno with err (-ENOTSUP for
 * CMYK/YCCK).
 */
#define SPLICE_TARGET_PX 64
int splice_transcode(const uint8_t *in, size_t len, int target_px, uint8_t **out,
		     size_t *outlen, char *err, size_t errlen);

/* Where each entropy-coded segment of a single-scan JPEG starts (the first
 * right after SOS, then after each RST marker); *segs malloc'ed. */
int splice_segments(const uint8_t *jpg, size_t len, uint32_t **segs, uint32_t *n);

#endif
