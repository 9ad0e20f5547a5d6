/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * evlog.h - the event history: every log_event of the daemon kept in a
 * bounded ring in memory and appended to state_dir/events.log, which is
 * rotated to events.log.1 at a size cap and read back at start, so the
 * history survives restarts. pgvigilctl events (doc/pgvigilctl.8) reads it
 * through the control socket, and --follow streams new events.
 *
 * One line per event, in the file and on the control socket:
 *
 *   2026-11-26T09:30:01.123Z 123456789 1 failover-started term=3 old=1 ...
 *
 * the wall clock time (UTC, milliseconds), the monotonic time in
 * milliseconds (CLOCK_BOOTTIME: durations within one boot of the host),
 * the peer id, the event token and its key=value text (doc/events.md).
 *
 * The timeline helpers at the end are pure functions over parsed events,
 * shared by pgvigilctl and the unit tests.
 */
#ifndef PGVIGIL_EVLOG_H
#define PGVIGIL_EVLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Events kept in memory. */
#define EVLOG_RING 2000
/* events.log is rotated to events.log.1 once it would grow past this. */
#define EVLOG_FILE_MAX (1024u * 1024u)
#define EVLOG_FILE "events.log"
#define EVLOG_TOKEN_MAX 48
#define EVLOG_TEXT_MAX 512
/* The longest line: time, mono, peer, token, text and "\n". */
#define EVLOG_LINE_MAX (EVLOG_TEXT_MAX + EVLOG_TOKEN_MAX + 80)

struct evlog_event {
	uint64_t wall_ms;		/* ms since the epoch, UTC */
	uint64_t mono_ms;		/* clock_now_ms() when it happened */
	int64_t peer;			/* the peer that logged it */
	char token[EVLOG_TOKEN_MAX];
	char text[EVLOG_TEXT_MAX];	/* key=value ..., may be empty */
};

struct evlog;

/*
 * Opens the history of peer self in dir (the state directory, which must
 * exist): reads events.log.1 and events.log (lines that do not parse are
 * skipped), keeps the last ring_cap of them, and opens events.log for
 * appending. file_max 0 means EVLOG_FILE_MAX, ring_cap 0 EVLOG_RING
 * (tests set smaller ones). Returns NULL with err set.
 */
struct evlog *evlog_new(const char *dir, int64_t self, size_t ring_cap,
			size_t file_max, char *err, size_t errlen);
void evlog_free(struct evlog *ev);

/*
 * Records one event: into the ring, the file and the listener. A file
 * that cannot be written is reported once (a warning) and retried with
 * the next event; the ring keeps working.
 */
void evlog_add(struct evlog *ev, uint64_t wall_ms, uint64_t mono_ms,
	       const char *token, const char *text);
/* The log_event_sink for core/log.h: evlog_add at clock_now_ms(). */
void evlog_sink(void *arg, uint64_t wall_ms, const char *token,
		const char *text);

/* Called with every new event's line (with its "\n"); NULL for none. */
void evlog_set_listener(struct evlog *ev,
			void (*fn)(void *arg, const char *line, size_t len),
			void *arg);

size_t evlog_count(const struct evlog *ev);
/* The i-th event kept, oldest first (0 <= i < evlog_count). */
const struct evlog_event *evlog_get(const struct evlog *ev, size_t i);

/*
 * The control request "events [n=N] [since=WALL_MS] [follow]": writes the
 * last N (default all) events at or after since, one line each, to out.
 * Returns 0, 1 with follow (the caller keeps the connection open for new
 * events: CTL_FOLLOW), or -1 with the error text in out.
 */
int evlog_request(const struct evlog *ev, const char *request, FILE *out);

/* ---- lines ---------------------------------------------------------- */

/* Formats e as one line with its "\n"; returns its length (< len), or -1. */
int evlog_format(const struct evlog_event *e, char *buf, size_t len);
/* Parses one line (with or without its "\n"); returns 0 or -1. */
int evlog_parse(const char *line, struct evlog_event *e);
/*
 * Steps through a key=value text (values in double quotes may hold
 * spaces): returns 1 with key and value (not NUL-terminated, without the
 * quotes) and *p moved past them, or 0 at the end.
 */
int evlog_next_field(const char **p, const char **key, size_t *klen,
		     const char **val, size_t *vlen);
/*
 * The value of key in a key=value text, without quotes, into buf; returns
 * buf, or NULL when the key is not there.
 */
const char *evlog_field(const char *text, const char *key, char *buf,
			size_t len);

/* ---- failover timelines --------------------------------------------- */

/*
 * A failover as the events tell it. Events between failover-started (or
 * failover-resumed) and failover-done belong to it; events that carry
 * failover=T.N (term and number of the failover) belong to the failover of
 * that name wherever they are. A daemon start or stop, the start of
 * another failover, or a coordinator-transfer ends a failover's events by
 * order (named ones still join it).
 */
struct evlog_failover {
	char name[32];		/* "T.N" from the events, else "#K" by order */
	char kind[16];		/* kind= of its start: "failover", "switchover", "manual" */
	size_t first, last;	/* indices of its first and last event */
	size_t nevents;
	uint64_t duration_ms;	/* first to last, monotonic when it can be */
	int64_t old_primary;	/* 0 when the events do not say */
	int64_t new_primary;
	/*
	 * "done"; "handed-over" (coordinator-transfer: another peer went on
	 * with it and logged the rest); "unfinished" (ended by a restart or
	 * another failover);
	 * else, as the last events leave it, "blocked" or "refused" (waiting
	 * on a failover-blocked / failover-refused) or "running".
	 */
	const char *outcome;
	bool ended;		/* a restart or another failover ended it */
	int64_t handed_to;	/* coordinator-transfer: the peer that went on */
	const char *alarm;	/* "blocked" / "refused" until a step follows */
};

/*
 * Assigns every event of ev[0..n) to a failover: group[i] is the index of
 * its failover in fo[] or -1. Fills at most max failovers (later ones are
 * not assigned) and returns how many. Pure.
 */
size_t evlog_timeline(const struct evlog_event *ev, size_t n, int *group,
		      struct evlog_failover *fo, size_t max);
/* Milliseconds from a to b, monotonic when both are of one boot. */
uint64_t evlog_elapsed(const struct evlog_event *a,
		       const struct evlog_event *b);

#endif
