/*
 * log.h — one line per message on stderr, prefixed with the systemd
 * priority ("<3>" error ... "<7>" debug) so journald files each line at the
 * right level. Thread safe: each message is one write(2).
 */
#ifndef CUTMIXD_LOG_H
#define CUTMIXD_LOG_H

#include <stdarg.h>

enum log_level { LOGL_ERR = 3, LOGL_WARNING = 4, LOGL_NOTICE = 5, LOGL_INFO = 6, LOGL_DEBUG = 7 };

/* Messages above `max` (numerically) are dropped. Default LOGL_INFO. */
void log_set_level(enum log_level max);
/* Redirect into a callback instead of stderr (tests). NULL restores. */
void log_set_sink(void (*sink)(enum log_level lvl, const char *line, void *ctx), void *ctx);

void log_msg(enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level lvl, const char *fmt, va_list ap);

#define log_err(...)     log_msg(LOGL_ERR, __VA_ARGS__)
#define log_warning(...) log_msg(LOGL_WARNING, __VA_ARGS__)
#define log_notice(...)  log_msg(LOGL_NOTICE, __VA_ARGS__)
#define log_info(...)    log_msg(LOGL_INFO, __VA_ARGS__)
#define log_debug(...)   log_msg(LOGL_DEBUG, __VA_ARGS__)

#endif
