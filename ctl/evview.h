/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * evview.h - how pgvigilctl shows the event history (core/evlog.h): a list
 * of events in which each failover is a timeline of its steps, with the
 * time since the failover began and since its previous event, or the same
 * as JSON (schema in pgvigilctl(8)).
 */
#ifndef PGVIGIL_CTL_EVVIEW_H
#define PGVIGIL_CTL_EVVIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "core/evlog.h"

/* Version of the events JSON document; see pgvigilctl(8). */
#define EVVIEW_SCHEMA_VERSION 1

/*
 * Prints the history in body (evlog lines, as the daemon's "events" reply
 * has them; lines that do not parse are skipped) as text, or as one JSON
 * document. Returns 0, or -1 when out of memory or the output fails.
 */
int evview_print(const char *body, size_t len, bool json, FILE *out);

/* Live events, one at a time (events --follow). Zero it to start. */
struct evview_stream {
	bool open;			/* a failover is in progress */
	struct evlog_event first;	/* its first event */
	struct evlog_event prev;	/* its last event so far */
};

/* Prints one line of the stream (an evlog line, with or without "\n"). */
void evview_stream_line(struct evview_stream *st, const char *line, bool json,
			FILE *out);

#endif
