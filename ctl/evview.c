/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * evview.c - the event history as people and scripts read it.
 *
 * Text: one line per event, "TIME  peer P  TOKEN key=value ...". The
 * events of a failover (evlog_timeline) are set off under a header line
 * that says which primary it replaced, how it ended and how long it took;
 * each of them carries "+OFFSET ms" since the failover began and, in
 * parentheses, the milliseconds since the failover's previous event: the
 * duration of that step. Hook outcomes are the hook-finished events among
 * them.
 *
 * JSON: the same events with their fields split out, and the failovers
 * with their summary (see pgvigilctl(8), EVENTS JSON).
 *
 * Why in the client: the daemon sends its lines as they are stored, so
 * the history a daemon keeps and what an operator sees cannot drift
 * apart, and the grouping is a pure function that the unit tests run on
 * made-up histories.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl/evview.h"
#include "ctl/json.h"

#define MAX_FAILOVERS 512

static void
fmt_time(uint64_t wall_ms, char *buf, size_t len, bool iso)
{
	time_t secs = (time_t)(wall_ms / 1000);
	struct tm tm;
	char stamp[32];

	if (!gmtime_r(&secs, &tm)) {
		snprintf(buf, len, "?");
		return;
	}
	strftime(stamp, sizeof(stamp), iso ? "%Y-%m-%dT%H:%M:%S" : "%Y-%m-%d %H:%M:%S",
		 &tm);
	snprintf(buf, len, "%s.%03u%s", stamp, (unsigned)(wall_ms % 1000),
		 iso ? "Z" : "");
}

static void
print_plain(const struct evlog_event *e, FILE *out)
{
	char t[40];

	fmt_time(e->wall_ms, t, sizeof(t), false);
	fprintf(out, "%s  peer %-3" PRId64 " %s%s%s\n", t, e->peer, e->token,
		e->text[0] ? " " : "", e->text);
}

/* An event of a failover: offset from its start, time since the one before. */
static void
print_step(const struct evlog_event *e, uint64_t offset, const uint64_t *delta,
	   FILE *out)
{
	char t[40], off[24], d[24] = "";

	fmt_time(e->wall_ms, t, sizeof(t), false);
	snprintf(off, sizeof(off), "+%" PRIu64 " ms", offset);
	if (delta)
		snprintf(d, sizeof(d), "(%" PRIu64 ")", *delta);
	fprintf(out, "%s  peer %-3" PRId64 "   %10s %-8s %s%s%s\n", t, e->peer, off,
		d, e->token, e->text[0] ? " " : "", e->text);
}

static void
print_header(const struct evlog_event *e, const struct evlog_failover *f,
	     FILE *out)
{
	char t[40];

	fmt_time(e->wall_ms, t, sizeof(t), false);
	fprintf(out, "%s  peer %-3" PRId64 " == %s %s: ", t, e->peer, f->kind, f->name);
	if (f->old_primary)
		fprintf(out, "backend %" PRId64 " -> ", f->old_primary);
	if (f->new_primary)
		fprintf(out, "%" PRId64 ", ", f->new_primary);
	else if (f->old_primary)
		fprintf(out, "?, ");
	if (strcmp(f->outcome, "handed-over") == 0)
		fprintf(out, "handed over to peer %" PRId64, f->handed_to);
	else
		fprintf(out, "%s", f->outcome);
	fprintf(out, " after %" PRIu64 " ms, %zu events\n", f->duration_ms, f->nevents);
}

static void
json_event(struct json *j, const struct evlog_event *e, const char *failover,
	   const uint64_t *offset)
{
	const char *p = e->text, *k, *v;
	size_t kl, vl;
	char t[40], key[64], val[EVLOG_TEXT_MAX];

	fmt_time(e->wall_ms, t, sizeof(t), true);
	json_begin_object(j);
	json_key(j, "time");
	json_str(j, t);
	json_key(j, "wall_ms");
	json_uint(j, e->wall_ms);
	json_key(j, "mono_ms");
	json_uint(j, e->mono_ms);
	json_key(j, "peer");
	json_int(j, e->peer);
	json_key(j, "event");
	json_str(j, e->token);
	json_key(j, "fields");
	json_begin_object(j);
	while (evlog_next_field(&p, &k, &kl, &v, &vl) == 1) {
		if (kl >= sizeof(key))
			continue;
		memcpy(key, k, kl);
		key[kl] = '\0';
		memcpy(val, v, vl);
		val[vl] = '\0';
		json_key(j, key);
		json_str(j, val);
	}
	json_end_object(j);
	json_key(j, "failover");
	json_str(j, failover);
	json_key(j, "offset_ms");
	if (offset)
		json_uint(j, *offset);
	else
		json_null(j);
	json_end_object(j);
}

static int
print_json(const struct evlog_event *ev, size_t n, const int *group,
	   const struct evlog_failover *fo, size_t nfo, FILE *out)
{
	struct json j;

	json_init(&j, out);
	json_begin_object(&j);
	json_key(&j, "schema_version");
	json_int(&j, EVVIEW_SCHEMA_VERSION);
	json_key(&j, "events");
	json_begin_array(&j);
	for (size_t i = 0; i < n; i++) {
		uint64_t off;

		if (group[i] < 0) {
			json_event(&j, &ev[i], NULL, NULL);
			continue;
		}
		off = evlog_elapsed(&ev[fo[group[i]].first], &ev[i]);
		json_event(&j, &ev[i], fo[group[i]].name, &off);
	}
	json_end_array(&j);
	json_key(&j, "failovers");
	json_begin_array(&j);
	for (size_t k = 0; k < nfo; k++) {
		char t[40];

		json_begin_object(&j);
		json_key(&j, "name");
		json_str(&j, fo[k].name);
		json_key(&j, "start");
		fmt_time(ev[fo[k].first].wall_ms, t, sizeof(t), true);
		json_str(&j, t);
		json_key(&j, "peer");
		json_int(&j, ev[fo[k].first].peer);
		json_key(&j, "kind");
		json_str(&j, fo[k].kind);
		json_key(&j, "old_primary");
		if (fo[k].old_primary)
			json_int(&j, fo[k].old_primary);
		else
			json_null(&j);
		json_key(&j, "new_primary");
		if (fo[k].new_primary)
			json_int(&j, fo[k].new_primary);
		else
			json_null(&j);
		json_key(&j, "outcome");
		json_str(&j, fo[k].outcome);
		json_key(&j, "handed_to");
		if (fo[k].handed_to)
			json_int(&j, fo[k].handed_to);
		else
			json_null(&j);
		json_key(&j, "duration_ms");
		json_uint(&j, fo[k].duration_ms);
		json_key(&j, "events");
		json_uint(&j, fo[k].nevents);
		json_end_object(&j);
	}
	json_end_array(&j);
	json_end_object(&j);
	if (json_finish(&j) < 0)
		return -1;
	fputc('\n', out);
	return 0;
}

int
evview_print(const char *body, size_t len, bool json, FILE *out)
{
	struct evlog_event *ev = NULL;
	struct evlog_failover *fo = NULL;
	int *group = NULL;
	size_t n = 0, cap = 0, nfo;
	const char *p = body, *end = body + len;
	int rc = -1;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
		char line[EVLOG_LINE_MAX];

		if (ll < sizeof(line)) {
			memcpy(line, p, ll);
			line[ll] = '\0';
			if (n == cap) {
				struct evlog_event *nb;

				cap = cap ? cap * 2 : 256;
				nb = realloc(ev, cap * sizeof(*ev));
				if (!nb)
					goto out;
				ev = nb;
			}
			if (evlog_parse(line, &ev[n]) == 0)
				n++;
		}
		p += ll + 1;
	}
	group = calloc(n ? n : 1, sizeof(*group));
	fo = calloc(MAX_FAILOVERS, sizeof(*fo));
	if (!group || !fo)
		goto out;
	nfo = evlog_timeline(ev, n, group, fo, MAX_FAILOVERS);
	if (json) {
		rc = print_json(ev, n, group, fo, nfo, out);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const struct evlog_failover *f;
		size_t prev = SIZE_MAX;

		if (group[i] < 0) {
			print_plain(&ev[i], out);
			continue;
		}
		f = &fo[group[i]];
		if (i == f->first)
			print_header(&ev[i], f, out);
		for (size_t k = i; k-- > f->first;)
			if (group[k] == group[i]) {
				prev = k;
				break;
			}
		if (prev == SIZE_MAX) {
			print_step(&ev[i], evlog_elapsed(&ev[f->first], &ev[i]), NULL, out);
		} else {
			uint64_t d = evlog_elapsed(&ev[prev], &ev[i]);

			print_step(&ev[i], evlog_elapsed(&ev[f->first], &ev[i]), &d, out);
		}
	}
	rc = ferror(out) ? -1 : 0;
out:
	free(ev);
	free(fo);
	free(group);
	return rc;
}

void
evview_stream_line(struct evview_stream *st, const char *line, bool json,
		   FILE *out)
{
	struct evlog_event e;
	bool starts;

	if (evlog_parse(line, &e) < 0)
		return;
	if (json) {
		struct json j;

		json_init(&j, out);
		json_event(&j, &e, NULL, NULL);
		if (json_finish(&j) == 0)
			fputc('\n', out);
		fflush(out);
		return;
	}
	starts = strcmp(e.token, "failover-started") == 0 ||
		strcmp(e.token, "failover-resumed") == 0;
	if (strcmp(e.token, "daemon-started") == 0 ||
	    strcmp(e.token, "daemon-stopping") == 0)
		st->open = false;
	if (starts) {
		st->open = true;
		st->first = e;
		st->prev = e;
	}
	if (st->open) {
		uint64_t d = evlog_elapsed(&st->prev, &e);

		print_step(&e, evlog_elapsed(&st->first, &e), starts ? NULL : &d, out);
		st->prev = e;
		if (strcmp(e.token, "failover-done") == 0)
			st->open = false;
	} else {
		print_plain(&e, out);
	}
	fflush(out);
}
