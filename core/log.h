/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * log.h - logging to stderr or syslog.
 *
 * Messages follow PostgreSQL's style: lower case, no trailing period,
 * "could not ..." for failures. Every state change also logs one stable
 * event token through log_event(): "event=NAME key=value ...". The tokens
 * are listed in doc/events.md and tests match on them, never on prose.
 */
#ifndef PGVIGIL_LOG_H
#define PGVIGIL_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum log_level {
	LOG_LVL_ERROR = 0,
	LOG_LVL_WARNING,
	LOG_LVL_INFO,
	LOG_LVL_DEBUG,
};

enum log_dest {
	LOG_DEST_STDERR = 0,
	LOG_DEST_SYSLOG,
};

#define LOG_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* ident is borrowed and must outlive the logger (argv[0] basename). */
void log_open(const char *ident, enum log_dest dest, enum log_level level);
void log_set_level(enum log_level level);
void log_set_dest(enum log_dest dest);
/* A prefix such as "peer 2" added to every line; NULL clears it. */
void log_set_context(const char *ctx);
enum log_level log_get_level(void);
void log_close(void);

const char *log_level_name(enum log_level level);
/* Returns -1 for an unknown name. */
int log_level_parse(const char *name);

void log_error(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_warning(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_info(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_debug(const char *fmt, ...) LOG_PRINTF(1, 2);
/* "event=TOKEN " followed by fmt; logged at info level. */
void log_event(const char *token, const char *fmt, ...) LOG_PRINTF(2, 3);

/*
 * Receives every log_event, whatever the log level: the wall clock time
 * (milliseconds since the epoch, read here with the log line's), the token
 * and the key=value text (one line). For the event history (core/evlog.h).
 * The sink must not call log_event itself; one sink, NULL for none, arg
 * borrowed.
 */
typedef void (*log_event_sink)(void *arg, uint64_t wall_ms, const char *token,
			       const char *text);
void log_set_event_sink(log_event_sink fn, void *arg);

#endif
