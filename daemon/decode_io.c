/*
 * decode_io.c — the decoder's input side: a file (or fd) read whole into
 * the decoder's input buffer after the checks of decode_limits
 * (max_file_bytes, regular non-empty file), the buffer handed to callers
 * that fill it themselves (tar members, packs), and the trimming of
 * buffers one huge image grew past DECODE_KEEP_BYTES. The decoder itself
 * is decode.c; the struct both share is decode_impl.h. A decoder_t
 * belongs to one worker thread: no locks here either.
 */
#include "decode.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "beneath.h"
#include "decode_impl.h"
#include "scratch.h"

/* Give back buffers that one huge image grew past DECODE_KEEP_BYTES:
 * the next image of ordinary size should not pay for it in RSS. */
static void decoder_trim(decoder_t *d)
{
	if (d->in_cap > DECODE_KEEP_BYTES) {
		free(d->in);
		d->in = NULL;
		d->in_cap = 0;
	}
	if (d->rgb_cap > DECODE_KEEP_BYTES) {
		free(d->rgb);
		d->rgb = NULL;
		d->rgb_cap = 0;
	}
	if (d->spl_cap > DECODE_KEEP_BYTES) {
		free(d->spl);
		d->spl = NULL;
		d->spl_cap = 0;
	}
	if (d->scan_cap + d->rows_cap > DECODE_KEEP_BYTES / 16) {
		free(d->scan);
		free(d->rows);
		d->scan = NULL;
		d->rows = NULL;
		d->scan_cap = d->rows_cap = 0;
	}
}

size_t decoder_retained(const decoder_t *d)
{
	return d ? d->in_cap + d->rgb_cap + d->scan_cap + d->rows_cap + d->spl_cap : 0;
}

bool decode_error_transient(int rc)
{
	switch (rc) {
	case -ENOMEM:
	case -ENOBUFS:
	case -EMFILE:
	case -ENFILE:
	case -EIO:
	case -EAGAIN:
	case -EINTR:
	case -ETIMEDOUT:
	case -ESTALE:
	case -ENOLCK:
		return true;
	default:
		return false;
	}
}

/* What decode_read_fd() accepts: a regular, non-empty file within
 * max_file_bytes. 0 with its size, or -errno with the message (q: the
 * quoted name and ": ", or ""). */
static int check_file(decoder_t *d, int fd, const char *q,
		      const struct decode_limits *lim, size_t *size)
{
	struct stat st;

	if (fstat(fd, &st) < 0) {
		int rc = -errno;
		decoder_set_error(d, "decode: %sstat: %s", q, strerror(-rc));
		return rc;
	}
	if (!S_ISREG(st.st_mode)) {
		decoder_set_error(d, "decode: %snot a regular file", q);
		return -EINVAL;
	}
	if (lim && lim->max_file_bytes && (uint64_t)st.st_size > lim->max_file_bytes) {
		decoder_set_error(d, "decode: %sfile is %" PRIu64
				  " bytes, limit is %" PRIu64, q,
				  (uint64_t)st.st_size, lim->max_file_bytes);
		return -EFBIG;
	}
	if (st.st_size == 0) {
		decoder_set_error(d, "decode: %sempty file", q);
		return -ENODATA;
	}
	if ((uint64_t)st.st_size > SIZE_MAX - 1) {
		decoder_set_error(d, "decode: %sfile too large", q);
		return -EFBIG;
	}
	*size = (size_t)st.st_size;
	return 0;
}

int decode_read_file(decoder_t *d, const char *path,
		     const struct decode_limits *lim,
		     const uint8_t **data, size_t *len)
{
	/* O_NONBLOCK: a FIFO (or device) must not block the worker in
	 * open(); it is refused as not a regular file. For regular files
	 * the flag changes nothing. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);

	return decode_read_fd(d, fd < 0 ? -errno : fd, path, lim, data, len);
}

int decode_read_fd(decoder_t *d, int fd, const char *name,
		   const struct decode_limits *lim,
		   const uint8_t **data, size_t *len)
{
	size_t size = 0, got = 0;
	char q[300] = "";
	int rc;

	/* "decode: 'name': why", or "decode: why" when the caller adds the
	 * name itself (the daemon: no doubled path in its messages) */
	if (name) {
		snprintf(q, sizeof(q), "'%s': ", name);
		q[sizeof(q) - 1] = '\0';
	}
	*data = NULL;
	*len = 0;
	/* The input buffer may move: an image open on it must not outlive it. */
	decoder_end_image(d);
	decoder_trim(d);
	decoder_set_segments(d, NULL, 0);
	d->errbuf[0] = '\0';
	if (fd < 0) {
		decoder_set_error(d, "decode: %sopen: %s", q, beneath_strerror(fd));
		return fd;
	}
	rc = check_file(d, fd, q, lim, &size);
	if (rc)
		goto out_close;
	rc = scratch_grow((void **)&d->in, &d->in_cap, size);
	if (rc < 0) {
		decoder_set_error(d, "decode: %sout of memory for %zu bytes",
				  q, size);
		goto out_close;
	}
	while (got < size) {
		ssize_t n = read(fd, d->in + got, size - got);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			decoder_set_error(d, "decode: %sread: %s", q,
					  strerror(-rc));
			goto out_close;
		}
		if (n == 0)
			break; /* shrank under us: use what is there */
		got += (size_t)n;
	}
	if (got == 0) {
		rc = -ENODATA;
		decoder_set_error(d, "decode: %sempty file", q);
		goto out_close;
	}
	*data = d->in;
	*len = got;
	rc = 0;
out_close:
	close(fd);
	return rc;
}

void decoder_set_segments(decoder_t *d, const uint32_t *segs, uint32_t n)
{
	d->segs = n ? segs : NULL;
	d->nsegs = n;
}

uint8_t *decoder_input_buffer(decoder_t *d, size_t need)
{
	decoder_end_image(d);
	decoder_trim(d);
	decoder_set_segments(d, NULL, 0);
	if (scratch_grow((void **)&d->in, &d->in_cap, need ? need : 1) < 0)
		return NULL;
	return d->in;
}
