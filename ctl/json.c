/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * json.c - the streaming JSON writer of json.h.
 *
 * Invariants:
 * - first[d] is true until the first member of container d is written, so
 *   a comma goes before every member but the first; after_key is true
 *   between a key and its value, when no comma may be written;
 * - once failed is set nothing more is written, so a misused writer leaves
 *   a truncated document and an error from json_finish(), never a document
 *   that parses but says something else.
 *
 * Why validate UTF-8: the strings come from configuration files and
 * peers, and JSON must be UTF-8. A consumer such as jq or Python rejects
 * the whole document on one bad byte; replacing that byte with U+FFFD
 * keeps the rest readable and shows where the problem is.
 */
#include <inttypes.h>
#include <stddef.h>

#include "ctl/json.h"

void
json_init(struct json *j, FILE *out)
{
	*j = (struct json){ .out = out };
}

/*
 * Checks that a value may come here and writes the comma it needs. Returns
 * false (and marks the writer failed) on misuse.
 */
static bool
value_prefix(struct json *j)
{
	if (j->failed)
		return false;
	if (j->depth == 0) {
		if (j->done) {
			j->failed = true;
			return false;
		}
		return true;
	}
	if (j->object[j->depth - 1]) {
		if (!j->after_key) {
			j->failed = true;
			return false;
		}
		j->after_key = false;
		return true;
	}
	if (!j->first[j->depth - 1])
		putc(',', j->out);
	j->first[j->depth - 1] = false;
	return true;
}

/* A scalar just written at the top level completes the document. */
static void
value_done(struct json *j)
{
	if (j->depth == 0)
		j->done = true;
}

/* Length of the valid UTF-8 sequence at s, or 0 if it is not valid. */
static size_t
utf8_len(const unsigned char *s)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t n;

	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	/* Overlong forms, UTF-16 surrogates and code points past U+10FFFF. */
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

static void
write_string(FILE *out, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;

	putc('"', out);
	while (*s) {
		unsigned char c = *s;

		if (c == '"' || c == '\\') {
			putc('\\', out);
			putc(c, out);
			s++;
		} else if (c < 0x20 || c == 0x7f) {
			fprintf(out, "\\u%04x", c);
			s++;
		} else if (c < 0x80) {
			putc(c, out);
			s++;
		} else {
			/* A NUL ends a sequence early, so it is never skipped. */
			size_t n = utf8_len(s);

			if (n == 0) {
				fputs("\\ufffd", out);
				s++;
			} else {
				fwrite(s, 1, n, out);
				s += n;
			}
		}
	}
	putc('"', out);
}

static void
begin(struct json *j, bool object, char open)
{
	if (!value_prefix(j))
		return;
	if (j->depth == JSON_MAX_DEPTH) {
		j->failed = true;
		return;
	}
	putc(open, j->out);
	j->first[j->depth] = true;
	j->object[j->depth] = object;
	j->depth++;
}

static void
end(struct json *j, bool object, char close)
{
	if (j->failed)
		return;
	if (j->depth == 0 || j->object[j->depth - 1] != object || j->after_key) {
		j->failed = true;
		return;
	}
	putc(close, j->out);
	j->depth--;
	value_done(j);
}

void
json_begin_object(struct json *j)
{
	begin(j, true, '{');
}

void
json_end_object(struct json *j)
{
	end(j, true, '}');
}

void
json_begin_array(struct json *j)
{
	begin(j, false, '[');
}

void
json_end_array(struct json *j)
{
	end(j, false, ']');
}

void
json_key(struct json *j, const char *key)
{
	if (j->failed)
		return;
	if (j->depth == 0 || !j->object[j->depth - 1] || j->after_key || !key) {
		j->failed = true;
		return;
	}
	if (!j->first[j->depth - 1])
		putc(',', j->out);
	j->first[j->depth - 1] = false;
	write_string(j->out, key);
	putc(':', j->out);
	j->after_key = true;
}

void
json_str(struct json *j, const char *s)
{
	if (!value_prefix(j))
		return;
	if (s)
		write_string(j->out, s);
	else
		fputs("null", j->out);
	value_done(j);
}

void
json_int(struct json *j, int64_t v)
{
	if (!value_prefix(j))
		return;
	fprintf(j->out, "%" PRId64, v);
	value_done(j);
}

void
json_uint(struct json *j, uint64_t v)
{
	if (!value_prefix(j))
		return;
	fprintf(j->out, "%" PRIu64, v);
	value_done(j);
}

void
json_bool(struct json *j, bool v)
{
	if (!value_prefix(j))
		return;
	fputs(v ? "true" : "false", j->out);
	value_done(j);
}

void
json_null(struct json *j)
{
	if (!value_prefix(j))
		return;
	fputs("null", j->out);
	value_done(j);
}

int
json_finish(struct json *j)
{
	if (j->failed || !j->done || ferror(j->out))
		return -1;
	return 0;
}
