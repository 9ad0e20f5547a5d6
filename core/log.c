/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * log.c - stderr or syslog output, one line per message.
 *
 * The stderr form is "2026-11-26 03:53:14.123 UTC [pid] LEVEL:  message",
 * close to PostgreSQL's log_line_prefix so operators read both the same
 * way. The wall clock is read here and nowhere else in the daemon. Lines
 * are written with one write(2) each so concurrent writers (hooks share the
 * terminal in the foreground) do not interleave inside a line. Events also
 * go to one sink (the event history), at every log level. The logger's
 * settings are the only process-wide mutable state outside the loop; they
 * change only at start and on a successful reload.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

static const char *log_ident = "pgvigil";
static enum log_dest log_dest_cur = LOG_DEST_STDERR;
static enum log_level log_level_cur = LOG_LVL_INFO;
static char log_ctx[64];
static int syslog_open;
static log_event_sink log_sink;
static void *log_sink_arg;
static int log_in_sink;

static const char *const level_names[] = {
	[LOG_LVL_ERROR] = "error",
	[LOG_LVL_WARNING] = "warning",
	[LOG_LVL_INFO] = "info",
	[LOG_LVL_DEBUG] = "debug",
};

const char *
log_level_name(enum log_level level)
{
	if ((unsigned)level > LOG_LVL_DEBUG)
		return "?";
	return level_names[level];
}

int
log_level_parse(const char *name)
{
	for (int i = 0; i <= LOG_LVL_DEBUG; i++)
		if (strcasecmp(name, level_names[i]) == 0)
			return i;
	return -1;
}

void
log_open(const char *ident, enum log_dest dest, enum log_level level)
{
	log_ident = ident ? ident : "pgvigil";
	log_level_cur = level;
	log_set_dest(dest);
}

void
log_set_level(enum log_level level)
{
	log_level_cur = level;
}

enum log_level
log_get_level(void)
{
	return log_level_cur;
}

void
log_set_dest(enum log_dest dest)
{
	if (dest == LOG_DEST_SYSLOG && !syslog_open) {
		openlog(log_ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
		syslog_open = 1;
	} else if (dest == LOG_DEST_STDERR && syslog_open) {
		closelog();
		syslog_open = 0;
	}
	log_dest_cur = dest;
}

void
log_set_context(const char *ctx)
{
	if (ctx)
		snprintf(log_ctx, sizeof(log_ctx), "%s: ", ctx);
	else
		log_ctx[0] = '\0';
}

void
log_close(void)
{
	if (syslog_open)
		closelog();
	syslog_open = 0;
	log_dest_cur = LOG_DEST_STDERR;
}

static void LOG_PRINTF(3, 0)
log_emit(enum log_level level, const char *prefix, const char *fmt,
	 va_list ap)
{
	static const int prio[] = {
		[LOG_LVL_ERROR] = LOG_ERR,
		[LOG_LVL_WARNING] = LOG_WARNING,
		[LOG_LVL_INFO] = LOG_INFO,
		[LOG_LVL_DEBUG] = LOG_DEBUG,
	};
	/* Room for a hook's longest output line with every byte escaped. */
	char msg[17 * 1024];
	char line[sizeof(msg) + 256];
	int n;

	if (level > log_level_cur)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	/* One line per message: a newline in a value must not forge a line. */
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	if (log_dest_cur == LOG_DEST_SYSLOG) {
		syslog(prio[level], "%s%s%s", log_ctx, prefix, msg);
		return;
	}
	struct timespec ts;
	struct tm tm;
	char stamp[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
	n = snprintf(line, sizeof(line), "%s.%03ld UTC [%d] %s:  %s%s%s\n",
		     stamp, ts.tv_nsec / 1000000L, (int)getpid(),
		     log_level_name(level), log_ctx, prefix, msg);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line)) {
		n = (int)sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	/* Nothing useful can be done when stderr itself fails. */
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}

#define LOG_FN(fname, lvl)                                                 \
	void fname(const char *fmt, ...)                                   \
	{                                                                  \
		va_list ap;                                                \
		va_start(ap, fmt);                                         \
		log_emit(lvl, "", fmt, ap);                                \
		va_end(ap);                                                \
	}

LOG_FN(log_error, LOG_LVL_ERROR)
LOG_FN(log_warning, LOG_LVL_WARNING)
LOG_FN(log_info, LOG_LVL_INFO)
LOG_FN(log_debug, LOG_LVL_DEBUG)

void
log_set_event_sink(log_event_sink fn, void *arg)
{
	log_sink = fn;
	log_sink_arg = arg;
}

void
log_event(const char *token, const char *fmt, ...)
{
	char prefix[96];
	va_list ap;

	snprintf(prefix, sizeof(prefix), "event=%s ", token);
	va_start(ap, fmt);
	log_emit(LOG_LVL_INFO, prefix, fmt, ap);
	va_end(ap);
	if (log_sink && !log_in_sink) {
		char text[1024];
		struct timespec ts;

		va_start(ap, fmt);
		vsnprintf(text, sizeof(text), fmt, ap);
		va_end(ap);
		for (char *p = text; *p; p++)
			if (*p == '\n' || *p == '\r')
				*p = ' ';
		clock_gettime(CLOCK_REALTIME, &ts);
		/* A sink that logs an event by mistake must not recurse. */
		log_in_sink = 1;
		log_sink(log_sink_arg, (uint64_t)ts.tv_sec * 1000u +
			 (uint64_t)ts.tv_nsec / 1000000u, token, text);
		log_in_sink = 0;
	}
}
