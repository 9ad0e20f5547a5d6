/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * json.h - a small streaming JSON writer over a FILE* (a memstream, usually).
 *
 * Compact output, no whitespace: {"a":1,"b":[true,null]}. Commas and colons
 * are written by the writer, never by the caller. Inside an object every
 * value follows a json_key(); inside an array values follow each other; at
 * the top level there is exactly one value.
 *
 * Misuse (a value without its key in an object, a key in an array, closing
 * the wrong container, nesting deeper than JSON_MAX_DEPTH, a second top-level
 * value) does not abort: the writer stops writing and json_finish() returns
 * -1, so a bug gives an error reply instead of a malformed document.
 */
#ifndef PGVIGIL_CTL_JSON_H
#define PGVIGIL_CTL_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 16

struct json {
	FILE *out;		/* borrowed */
	int depth;		/* open containers */
	bool first[JSON_MAX_DEPTH];	/* nothing written yet in this container */
	bool object[JSON_MAX_DEPTH];	/* container is an object, not an array */
	bool after_key;		/* a key was written, its value is due */
	bool done;		/* the top-level value is complete */
	bool failed;		/* misuse seen: nothing more is written */
};

void json_init(struct json *j, FILE *out);

void json_begin_object(struct json *j);
void json_end_object(struct json *j);
void json_begin_array(struct json *j);
void json_end_array(struct json *j);

/* key is written escaped like a string; NULL is misuse. */
void json_key(struct json *j, const char *key);

/*
 * s is written with '"' and '\' escaped, control characters (and DEL) as
 * \u00XX, and bytes that are not valid UTF-8 as \ufffd, so the output is
 * always valid JSON in UTF-8. NULL writes null.
 */
void json_str(struct json *j, const char *s);
/* Integers beyond +-2^53 are exact in the text but not in JavaScript. */
void json_int(struct json *j, int64_t v);
void json_uint(struct json *j, uint64_t v);
void json_bool(struct json *j, bool v);
void json_null(struct json *j);

/*
 * Returns 0 when exactly one complete top-level value was written without
 * misuse and the stream has no error; -1 otherwise. Does not close out.
 */
int json_finish(struct json *j);

#endif
