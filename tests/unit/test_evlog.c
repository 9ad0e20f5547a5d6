/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_evlog.c - the event history: the line format both ways, fields,
 * the ring's bound, the file's rotation at its cap and the history read
 * back at start, the "events" request, and the failover timelines
 * (grouping by order and by failover=T.N, outcomes, offsets) with their
 * text and JSON views.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/evlog.h"
#include "core/log.h"
#include "ctl/ctl.h"
#include "ctl/evview.h"

/* 2026-11-26T09:30:01.123Z */
#define T0 1795685401123ull

static char dir[64];

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int
setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/test_evlog.XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
	return 0;
}

static off_t
file_size(const char *name)
{
	char path[128];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return stat(path, &st) == 0 ? st.st_size : -1;
}

/* ---- lines -------------------------------------------------------------- */

static void
test_evlog_line_round_trip(void **state)
{
	struct evlog_event e = { .wall_ms = T0, .mono_ms = 4242, .peer = 3 }, back;
	char line[EVLOG_LINE_MAX];
	int n;

	(void)state;
	strcpy(e.token, "failover-started");
	strcpy(e.text, "term=3 old=1 reason=\"a b=c\"");
	n = evlog_format(&e, line, sizeof(line));
	assert_true(n > 0);
	assert_string_equal(line, "2026-11-26T09:30:01.123Z 4242 3 failover-started "
			    "term=3 old=1 reason=\"a b=c\"\n");
	assert_int_equal(evlog_parse(line, &back), 0);
	assert_true(back.wall_ms == T0 && back.mono_ms == 4242 && back.peer == 3);
	assert_string_equal(back.token, "failover-started");
	assert_string_equal(back.text, e.text);
	/* no text at all */
	assert_int_equal(evlog_parse("2026-11-26T09:30:01.123Z 1 2 daemon-stopping", &back), 0);
	assert_string_equal(back.token, "daemon-stopping");
	assert_string_equal(back.text, "");
}

static void
test_evlog_parse_rejects_torn_and_foreign_lines(void **state)
{
	struct evlog_event e;

	(void)state;
	assert_int_equal(evlog_parse("", &e), -1);
	assert_int_equal(evlog_parse("2026-11-26T09:30:01.123Z 42", &e), -1);
	assert_int_equal(evlog_parse("2026-11-26T09:30:01.123Z x 1 tok", &e), -1);
	assert_int_equal(evlog_parse("2026-11-26 09:30:01.123 UTC [1] info:  x", &e), -1);
	assert_int_equal(evlog_parse("2026-11-26T09:30:01.123Z 1 1 Bad_Token x=1", &e), -1);
}

static void
test_evlog_fields_by_name_with_quoted_values(void **state)
{
	const char *t = "term=3 reason=\"peer silent; x=1\" by=\"uid=0(root) pid=7\" old=1";
	char buf[64];

	(void)state;
	assert_string_equal(evlog_field(t, "term", buf, sizeof(buf)), "3");
	assert_string_equal(evlog_field(t, "reason", buf, sizeof(buf)), "peer silent; x=1");
	assert_string_equal(evlog_field(t, "by", buf, sizeof(buf)), "uid=0(root) pid=7");
	assert_string_equal(evlog_field(t, "old", buf, sizeof(buf)), "1");
	/* "x" is inside a quoted value, not a field */
	assert_null(evlog_field(t, "x", buf, sizeof(buf)));
	assert_null(evlog_field(t, "pid", buf, sizeof(buf)));
}

/* ---- the log's sink ------------------------------------------------------ */

struct sunk {
	int calls;
	uint64_t wall_ms;
	char token[EVLOG_TOKEN_MAX];
	char text[EVLOG_TEXT_MAX];
};

static void
sink(void *arg, uint64_t wall_ms, const char *token, const char *text)
{
	struct sunk *k = arg;

	k->calls++;
	k->wall_ms = wall_ms;
	snprintf(k->token, sizeof(k->token), "%s", token);
	snprintf(k->text, sizeof(k->text), "%s", text);
	/* a sink that logs an event is not called again from inside itself */
	log_event("nested", "x=1");
}

static void
test_log_event_reaches_the_sink_whatever_the_level(void **state)
{
	struct sunk k = { 0 };
	uint64_t now = (uint64_t)time(NULL) * 1000u;

	(void)state;
	log_set_event_sink(sink, &k);
	log_set_level(LOG_LVL_ERROR);		/* event lines are not printed */
	log_event("daemon-started", "peer=%d reason=\"a\nb\"", 1);
	log_set_event_sink(NULL, NULL);
	log_event("daemon-stopped", "peer=1");
	assert_int_equal(k.calls, 1);
	assert_string_equal(k.token, "daemon-started");
	assert_string_equal(k.text, "peer=1 reason=\"a b\"");
	assert_true(k.wall_ms + 5000 > now && k.wall_ms < now + 5000);
}

/* ---- ring and file ------------------------------------------------------- */

static void
add_n(struct evlog *ev, int from, int to)
{
	for (int i = from; i < to; i++) {
		char text[32];

		snprintf(text, sizeof(text), "i=%d", i);
		evlog_add(ev, T0 + (uint64_t)i, 1000 + (uint64_t)i, "backend-up", text);
	}
}

static void
test_evlog_ring_keeps_the_last_events(void **state)
{
	char err[256], buf[16];
	struct evlog *ev = evlog_new(dir, 1, 5, 0, err, sizeof(err));

	(void)state;
	assert_non_null(ev);
	add_n(ev, 0, 12);
	assert_int_equal(evlog_count(ev), 5);
	assert_string_equal(evlog_field(evlog_get(ev, 0)->text, "i", buf, sizeof(buf)), "7");
	assert_string_equal(evlog_field(evlog_get(ev, 4)->text, "i", buf, sizeof(buf)), "11");
	assert_null(evlog_get(ev, 5));
	evlog_free(ev);
}

static void
test_evlog_file_rotates_at_its_cap_and_is_read_back(void **state)
{
	char err[256], buf[16];
	struct evlog *ev = evlog_new(dir, 2, 1000, 400, err, sizeof(err));

	(void)state;
	assert_non_null(ev);
	/* each line is about 50 bytes: several rotations */
	add_n(ev, 0, 40);
	assert_true(file_size("events.log") > 0 && file_size("events.log") <= 400);
	assert_true(file_size("events.log.1") > 0 && file_size("events.log.1") <= 400);
	assert_int_equal(file_size("events.log.2"), -1);
	evlog_free(ev);

	/* A restart: what both files hold, in order, the newest last. */
	ev = evlog_new(dir, 2, 1000, 400, err, sizeof(err));
	assert_non_null(ev);
	assert_true(evlog_count(ev) >= 8 && evlog_count(ev) < 40);
	assert_string_equal(evlog_field(evlog_get(ev, evlog_count(ev) - 1)->text, "i", buf,
					sizeof(buf)), "39");
	for (size_t i = 1; i < evlog_count(ev); i++)
		assert_true(evlog_get(ev, i)->wall_ms == evlog_get(ev, i - 1)->wall_ms + 1);
	assert_int_equal(evlog_get(ev, 0)->peer, 2);
	/* new events go on after them */
	add_n(ev, 40, 41);
	assert_string_equal(evlog_field(evlog_get(ev, evlog_count(ev) - 1)->text, "i", buf,
					sizeof(buf)), "40");
	evlog_free(ev);
}

static void
test_evlog_torn_last_line_is_skipped_at_start(void **state)
{
	char err[256], path[128];
	struct evlog *ev;
	FILE *f;

	(void)state;
	snprintf(path, sizeof(path), "%s/events.log", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("2026-11-26T09:30:01.123Z 5 1 daemon-started peer=1\n"
	      "garbage\n"
	      "2026-11-26T09:30:02.000Z 6 1 role-ch", f);
	fclose(f);
	ev = evlog_new(dir, 1, 0, 0, err, sizeof(err));
	assert_non_null(ev);
	assert_int_equal(evlog_count(ev), 1);
	assert_string_equal(evlog_get(ev, 0)->token, "daemon-started");
	/* the next event is a line of its own, read back at the next start */
	evlog_add(ev, T0 + 5000, 7, "role-changed", "role=follower");
	evlog_free(ev);
	ev = evlog_new(dir, 1, 0, 0, err, sizeof(err));
	assert_non_null(ev);
	assert_int_equal(evlog_count(ev), 2);
	assert_string_equal(evlog_get(ev, 1)->text, "role=follower");
	evlog_free(ev);
}

static char *
req(struct evlog *ev, const char *r, int *rc)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	*rc = evlog_request(ev, r, f);
	fclose(f);
	return buf;
}

static void
test_evlog_request_count_since_follow_and_errors(void **state)
{
	char err[256];
	struct evlog *ev = evlog_new(dir, 1, 0, 0, err, sizeof(err));
	char *out;
	int rc;

	(void)state;
	assert_non_null(ev);
	add_n(ev, 0, 10);
	out = req(ev, "events", &rc);
	assert_int_equal(rc, 0);
	assert_int_equal(strlen(out) > 0, 1);
	assert_non_null(strstr(out, " i=0\n"));
	assert_non_null(strstr(out, " i=9\n"));
	free(out);
	out = req(ev, "events n=2", &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(out, "2026-11-26T09:30:01.131Z 1008 1 backend-up i=8\n"
			    "2026-11-26T09:30:01.132Z 1009 1 backend-up i=9\n");
	free(out);
	out = req(ev, "events since=1795685401130", &rc);
	assert_null(strstr(out, " i=6\n"));
	assert_non_null(strstr(out, " i=7\n"));
	free(out);
	out = req(ev, "events n=1 follow", &rc);
	assert_int_equal(rc, CTL_FOLLOW);
	assert_non_null(strstr(out, " i=9\n"));
	free(out);
	out = req(ev, "events n=", &rc);
	assert_int_equal(rc, -1);
	free(out);
	out = req(ev, "events frob", &rc);
	assert_int_equal(rc, -1);
	assert_non_null(strstr(out, "invalid events request"));
	free(out);
	evlog_free(ev);
}

/* ---- timelines ---------------------------------------------------------- */

static struct evlog_event
E(uint64_t ms, const char *token, const char *text)
{
	struct evlog_event e = { .wall_ms = T0 + ms, .mono_ms = 50000 + ms, .peer = 1 };

	snprintf(e.token, sizeof(e.token), "%s", token);
	snprintf(e.text, sizeof(e.text), "%s", text);
	return e;
}

static void
test_timeline_groups_a_failover_by_order(void **state)
{
	struct evlog_event ev[] = {
		E(0, "role-changed", "role=coordinator term=3"),
		E(1000, "failover-started", "term=3 old=1 agree=2 quorum=2 last_lsn=1"),
		E(1300, "backend-fence-done", "term=3 backend=1 method=cooperative duration_ms=300"),
		E(1350, "candidate-chosen", "term=3 backend=2"),
		E(1360, "hook-started", "hook=promote pid=9 timeout_ms=90000"),
		E(1900, "hook-finished", "hook=promote pid=9 outcome=ok exit=0 signal=0 duration_ms=540"),
		E(2100, "promote-verified", "term=3 backend=2 timeline=2"),
		E(2500, "failover-done", "term=3 old=1 new=2 followed=0 not_followed=0 duration_ms=1500"),
		E(3000, "backend-up", "backend=1"),
	};
	size_t n = sizeof(ev) / sizeof(ev[0]);
	int group[sizeof(ev) / sizeof(ev[0])];
	struct evlog_failover fo[4];

	(void)state;
	assert_int_equal(evlog_timeline(ev, n, group, fo, 4), 1);
	assert_int_equal(group[0], -1);
	for (size_t i = 1; i < 8; i++)
		assert_int_equal(group[i], 0);
	assert_int_equal(group[8], -1);
	assert_string_equal(fo[0].name, "#1");
	assert_string_equal(fo[0].outcome, "done");
	assert_int_equal(fo[0].old_primary, 1);
	assert_int_equal(fo[0].new_primary, 2);
	assert_int_equal(fo[0].duration_ms, 1500);
	assert_int_equal(fo[0].nevents, 7);
	assert_int_equal(fo[0].first, 1);
	assert_int_equal(fo[0].last, 7);
}

static void
test_timeline_groups_by_failover_key_across_other_events(void **state)
{
	struct evlog_event ev[] = {
		E(0, "failover-started", "term=3 old=1 failover=3.1"),
		E(100, "failover-blocked", "term=3 reason=\"x\" failover=3.1"),
		E(200, "daemon-stopping", "signal=TERM"),
		E(300, "daemon-started", "peer=1"),
		E(400, "backend-up", "backend=2"),
		E(500, "failover-resumed", "term=4 step=fencing old=1 candidate=0 failover=3.1"),
		E(900, "failover-done", "term=4 old=1 new=2 failover=3.1 resumed=yes"),
		E(1000, "failover-started", "term=4 old=2 kind=switchover failover=4.2"),
		E(1100, "failover-refused", "term=4 reason=\"no eligible standby\" failover=4.2"),
	};
	size_t n = sizeof(ev) / sizeof(ev[0]);
	int group[sizeof(ev) / sizeof(ev[0])];
	struct evlog_failover fo[4];

	(void)state;
	assert_int_equal(evlog_timeline(ev, n, group, fo, 4), 2);
	assert_string_equal(fo[0].name, "3.1");
	assert_string_equal(fo[1].name, "4.2");
	assert_int_equal(group[0], 0);
	assert_int_equal(group[1], 0);
	assert_int_equal(group[2], -1);
	assert_int_equal(group[3], -1);
	assert_int_equal(group[4], -1);	/* between a stop and the resume */
	assert_int_equal(group[5], 0);
	assert_int_equal(group[6], 0);
	assert_string_equal(fo[0].outcome, "done");
	assert_int_equal(fo[0].new_primary, 2);
	assert_int_equal(fo[0].duration_ms, 900);
	assert_int_equal(group[7], 1);
	assert_int_equal(group[8], 1);
	assert_string_equal(fo[1].outcome, "refused");
	assert_string_equal(fo[0].kind, "failover");
	assert_string_equal(fo[1].kind, "switchover");
}

/* A history that begins in the middle of a failover still groups it. */
static void
test_timeline_history_that_begins_mid_failover(void **state)
{
	struct evlog_event ev[] = {
		E(0, "promote-started", "term=3 backend=2 failover=3.1"),
		E(50, "hook-finished", "hook=failover outcome=ok"),
		E(90, "failover-done", "term=3 old=1 new=2 failover=3.1"),
		E(100, "backend-up", "backend=1"),
	};
	int group[4];
	struct evlog_failover fo[2];

	(void)state;
	assert_int_equal(evlog_timeline(ev, 4, group, fo, 2), 1);
	assert_int_equal(group[1], 0);
	assert_int_equal(group[2], 0);
	assert_int_equal(group[3], -1);
	assert_string_equal(fo[0].outcome, "done");
}

static void
test_timeline_outcomes_unfinished_blocked_running(void **state)
{
	struct evlog_event ev[] = {
		E(0, "failover-started", "term=3 old=1"),
		E(10, "daemon-stopping", "signal=TERM"),
		E(20, "daemon-started", "peer=1"),
		E(30, "failover-started", "term=5 old=1"),
		E(40, "failover-blocked", "term=5 reason=\"maintenance mode\""),
		E(50, "failover-started", "term=6 old=2"),
		E(60, "failover-blocked", "term=6 reason=\"fence failed\""),
		E(70, "backend-fence-done", "term=6 backend=2"),
	};
	size_t n = sizeof(ev) / sizeof(ev[0]);
	int group[sizeof(ev) / sizeof(ev[0])];
	struct evlog_failover fo[4];

	(void)state;
	assert_int_equal(evlog_timeline(ev, n, group, fo, 4), 3);
	assert_string_equal(fo[0].outcome, "unfinished");
	assert_string_equal(fo[1].outcome, "unfinished");
	assert_string_equal(fo[2].outcome, "running");
	/* blocked, as long as nothing moved after the block */
	ev[7] = E(70, "backend-up", "backend=1");
	evlog_timeline(ev, n, group, fo, 4);
	assert_string_equal(fo[2].outcome, "blocked");
	/* more failovers than room: the later ones are left out */
	assert_int_equal(evlog_timeline(ev, n, group, fo, 1), 1);
	assert_int_equal(group[3], -1);
}

/*
 * A coordinator that hands its role over mid-failover: its own history
 * ends there ("handed-over"), the next coordinator's resumes under the
 * same name, and both merged (pgvigilctl events -s A -s B) are one
 * failover that is done.
 */
static void
test_timeline_handed_over_then_merged_histories_are_one_failover(void **state)
{
	struct evlog_event ev[] = {
		E(0, "failover-started", "term=1 old=1 failover=1.1"),
		E(500, "promote-verified", "term=1 backend=2 timeline=2 failover=1.1"),
		E(510, "coordinator-transfer", "term=1 to=2 primary=2 step=following failover=1.1"),
		E(900, "backend-up", "backend=3"),
	};
	struct evlog_event merged[] = {
		ev[0], ev[1], ev[2],
		E(700, "failover-resumed", "term=2 step=following old=1 candidate=2 failover=1.1"),
		E(800, "failover-done", "term=2 old=1 new=2 resumed=yes failover=1.1"),
		ev[3],
	};
	int group[6];
	struct evlog_failover fo[2];
	char *buf = NULL;
	size_t len = 0;
	FILE *f;
	char body[2048] = "", line[EVLOG_LINE_MAX];

	(void)state;
	merged[3].peer = merged[4].peer = 2;
	assert_int_equal(evlog_timeline(ev, 4, group, fo, 2), 1);
	assert_string_equal(fo[0].outcome, "handed-over");
	assert_int_equal(fo[0].handed_to, 2);
	assert_int_equal(group[3], -1);	/* after the transfer: not its business */
	assert_int_equal(evlog_timeline(merged, 6, group, fo, 2), 1);
	assert_string_equal(fo[0].outcome, "done");
	assert_int_equal(fo[0].nevents, 5);
	assert_int_equal(fo[0].duration_ms, 800);
	assert_int_equal(group[5], -1);
	for (int i = 0; i < 3; i++) {
		assert_true(evlog_format(&ev[i], line, sizeof(line)) > 0);
		strcat(body, line);
	}
	f = open_memstream(&buf, &len);
	assert_int_equal(evview_print(body, strlen(body), false, f), 0);
	fclose(f);
	assert_non_null(strstr(buf, "== failover 1.1: backend 1 -> 2, handed over to peer 2 after 510 ms, 3 events\n"));
	free(buf);
}

static void
test_evview_text_shows_offsets_steps_and_header(void **state)
{
	const char *body =
		"2026-11-26T09:30:01.123Z 50000 1 role-changed role=coordinator term=3\n"
		"2026-11-26T09:30:02.123Z 51000 1 failover-started term=3 old=1\n"
		"2026-11-26T09:30:02.423Z 51300 1 backend-fence-done term=3 backend=1\n"
		"2026-11-26T09:30:03.000Z 51877 1 hook-finished hook=promote outcome=ok exit=0\n"
		"2026-11-26T09:30:03.623Z 52500 1 failover-done term=3 old=1 new=2\n"
		"not an event line\n";
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	(void)state;
	assert_int_equal(evview_print(body, strlen(body), false, f), 0);
	fclose(f);
	assert_non_null(strstr(buf, "2026-11-26 09:30:01.123  peer 1   role-changed role=coordinator term=3\n"));
	assert_non_null(strstr(buf, "== failover #1: backend 1 -> 2, done after 1500 ms, 4 events\n"));
	assert_non_null(strstr(buf, "+0 ms          failover-started term=3 old=1\n"));
	assert_non_null(strstr(buf, "+300 ms (300)    backend-fence-done"));
	assert_non_null(strstr(buf, "+877 ms (577)    hook-finished hook=promote outcome=ok"));
	assert_non_null(strstr(buf, "+1500 ms (623)    failover-done"));
	assert_null(strstr(buf, "not an event"));
	free(buf);

	buf = NULL;
	f = open_memstream(&buf, &len);
	assert_int_equal(evview_print(body, strlen(body), true, f), 0);
	fclose(f);
	assert_non_null(strstr(buf, "{\"schema_version\":1,\"events\":[{\"time\":\"2026-11-26T09:30:01.123Z\","
			       "\"wall_ms\":1795685401123,\"mono_ms\":50000,\"peer\":1,"
			       "\"event\":\"role-changed\",\"fields\":{\"role\":\"coordinator\","
			       "\"term\":\"3\"},\"failover\":null,\"offset_ms\":null}"));
	assert_non_null(strstr(buf, "\"event\":\"backend-fence-done\",\"fields\":{\"term\":\"3\","
			       "\"backend\":\"1\"},\"failover\":\"#1\",\"offset_ms\":300}"));
	assert_non_null(strstr(buf, "\"failovers\":[{\"name\":\"#1\",\"start\":\"2026-11-26T09:30:02.123Z\","
			       "\"peer\":1,\"kind\":\"failover\",\"old_primary\":1,\"new_primary\":2,\"outcome\":\"done\","
			       "\"handed_to\":null,\"duration_ms\":1500,\"events\":4}]}\n"));
	free(buf);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_evlog_line_round_trip),
		cmocka_unit_test(test_evlog_parse_rejects_torn_and_foreign_lines),
		cmocka_unit_test(test_evlog_fields_by_name_with_quoted_values),
		cmocka_unit_test(test_log_event_reaches_the_sink_whatever_the_level),
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_evlog_ring_keeps_the_last_events),
		T(test_evlog_file_rotates_at_its_cap_and_is_read_back),
		T(test_evlog_torn_last_line_is_skipped_at_start),
		T(test_evlog_request_count_since_follow_and_errors),
#undef T
		cmocka_unit_test(test_timeline_groups_a_failover_by_order),
		cmocka_unit_test(test_timeline_groups_by_failover_key_across_other_events),
		cmocka_unit_test(test_timeline_outcomes_unfinished_blocked_running),
		cmocka_unit_test(test_timeline_history_that_begins_mid_failover),
		cmocka_unit_test(test_timeline_handed_over_then_merged_histories_are_one_failover),
		cmocka_unit_test(test_evview_text_shows_offsets_steps_and_header),
	};

	log_open("test_evlog", LOG_DEST_STDERR, LOG_LVL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
