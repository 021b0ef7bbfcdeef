#include "log.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static enum log_level max_level = LOGL_INFO;
static void (*log_sink)(enum log_level, const char *, void *);
static void *log_sink_ctx;

void log_set_level(enum log_level max)
{
	max_level = max;
}

void log_set_sink(void (*sink)(enum log_level, const char *, void *), void *ctx)
{
	log_sink = sink;
	log_sink_ctx = ctx;
}

void log_vmsg(enum log_level lvl, const char *fmt, va_list ap)
{
	char line[1024];
	int n;

	if (lvl > max_level)
		return;
	n = snprintf(line, sizeof(line), "<%d>", (int)lvl);
	vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	if (log_sink) {
		log_sink(lvl, line + n, log_sink_ctx);
		return;
	}
	/* Keep one message on one line: a newline inside would split it
	 * into lines journald files without a priority. */
	for (char *p = line + n; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	size_t len = strlen(line);
	line[len++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, len);
	(void)w;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(lvl, fmt, ap);
	va_end(ap);
}
