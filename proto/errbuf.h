/*
 * errbuf.h — write an error message into a caller's (err, errlen) buffer,
 * the convention of the key-file reader (keyfile.c) and the daemon's key
 * loading (daemon/keys.c). Either may be NULL / 0: the message is then
 * dropped and only the return value says what failed.
 */
#ifndef CUTMIXD_ERRBUF_H
#define CUTMIXD_ERRBUF_H

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* The formatted message; returns -EINVAL. */
__attribute__((format(printf, 3, 4)))
static inline int errbuf_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* "PATH: WHAT: strerror(-rc)"; returns rc (a -errno). */
static inline int errbuf_fail_errno(char *err, size_t errlen, int rc,
				    const char *path, const char *what)
{
	if (err && errlen)
		snprintf(err, errlen, "%s: %s: %s", path, what, strerror(-rc));
	return rc;
}

#endif
