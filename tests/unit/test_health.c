/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_health.c - health checks without a PostgreSQL server: LSN parsing,
 * a backend nobody listens on going unknown -> suspect -> failed after
 * failure_threshold checks with libpq's error text, reload keeping the
 * state of unchanged backends, and the status outputs.
 *
 * The static helpers are reached through health.c's test-only wrappers.
 * A black-hole timeout cannot be made on loopback; the deadline path is
 * covered by the system test only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/loop.h"
#include "ctl/json.h"
#include "failover/health.h"

/* test-only, defined in failover/health.c */
int health_test_parse_lsn(const char *s, uint64_t *out);
void health_test_set_error(char *buf, size_t len, const char *msg);

#define DEADLINE_MS 5000

static void
test_health_parse_lsn_accepts_pg_text_and_rejects_garbage(void **state)
{
	uint64_t v = 1;

	assert_int_equal(health_test_parse_lsn("0/0", &v), 0);
	assert_true(v == 0);
	assert_int_equal(health_test_parse_lsn("16/B374D848", &v), 0);
	assert_true(v == ((uint64_t)0x16 << 32 | 0xB374D848u));
	assert_int_equal(health_test_parse_lsn("ffffffff/ffffffff", &v), 0);
	assert_true(v == UINT64_MAX);
	v = 42;
	assert_int_equal(health_test_parse_lsn("", &v), -1);
	assert_int_equal(health_test_parse_lsn("/", &v), -1);
	assert_int_equal(health_test_parse_lsn("16", &v), -1);
	assert_int_equal(health_test_parse_lsn("16/", &v), -1);
	assert_int_equal(health_test_parse_lsn("/16", &v), -1);
	assert_int_equal(health_test_parse_lsn("16/B374D848x", &v), -1);
	assert_int_equal(health_test_parse_lsn("1G/0", &v), -1);
	assert_int_equal(health_test_parse_lsn("123456789/0", &v), -1);
	assert_int_equal(health_test_parse_lsn(" 0/0", &v), -1);
	assert_int_equal(health_test_parse_lsn("0/0/0", &v), -1);
	assert_true(v == 42);
}

static void
test_health_error_text_is_first_line_trimmed(void **state)
{
	char buf[32];

	health_test_set_error(buf, sizeof(buf), "  connection refused \nIs the server running?\n");
	assert_string_equal(buf, "connection refused");
	health_test_set_error(buf, sizeof(buf), "\n");
	assert_string_equal(buf, "unknown error");
	health_test_set_error(buf, 8, "0123456789");
	assert_string_equal(buf, "0123456");
}

static struct conf *
test_conf(size_t n, const int64_t *ids, const int64_t *ports)
{
	struct conf *c = calloc(1, sizeof(*c));
	size_t i;

	assert_non_null(c);
	c->health.interval_ms = 1000;
	c->health.timeout_ms = 2000;
	c->health.failure_threshold = 3;
	c->health.recheck_ms = 100;
	for (i = 0; i < n; i++) {
		c->backends[i].id = ids[i];
		c->backends[i].host = (char *)"127.0.0.1";
		c->backends[i].port = ports[i];
		c->backends[i].dbname = (char *)"postgres";
		c->backends[i].user = (char *)"postgres";
		c->backends[i].connect_timeout_ms = 2000;
	}
	c->nbackends = n;
	return c;
}

static void
test_health_refused_backend_goes_suspect_then_failed(void **state)
{
	const int64_t ids[] = { 7 }, ports[] = { 1 };
	struct conf *c = test_conf(1, ids, ports);
	struct loop *l = loop_new();
	struct health *h;
	const struct health_backend *b;
	char err[128];
	bool saw_suspect = false;
	uint64_t end;

	assert_non_null(l);
	h = health_new(l, c, err, sizeof(err));
	assert_non_null(h);
	assert_int_equal(health_count(h), 1);
	b = health_get(h, 0);
	assert_non_null(b);
	assert_null(health_get(h, 1));
	assert_int_equal(b->id, 7);
	assert_int_equal(b->state, HEALTH_UNKNOWN);
	assert_int_equal(b->checks, 0);

	end = clock_now_ms() + DEADLINE_MS;
	while (b->state != HEALTH_FAILED && clock_now_ms() < end) {
		assert_int_equal(loop_run_once(l, 50), 0);
		b = health_get(h, 0);
		if (b->state == HEALTH_SUSPECT) {
			saw_suspect = true;
			assert_true(b->consecutive_failures < 3);
		}
	}
	assert_true(saw_suspect);
	assert_int_equal(b->state, HEALTH_FAILED);
	assert_int_equal(b->consecutive_failures, 3);
	assert_int_equal(b->checks, 3);
	assert_int_equal(b->failures, 3);
	assert_int_equal(b->last_ok, 0);
	assert_true(b->last_check > 0);
	assert_int_equal(b->role, HEALTH_ROLE_UNKNOWN);
	assert_non_null(strcasestr(b->error, "connection refused"));
	assert_null(strchr(b->error, '\n'));

	/* failed backends are still checked */
	end = clock_now_ms() + DEADLINE_MS;
	while (b->checks < 4 && clock_now_ms() < end)
		assert_int_equal(loop_run_once(l, 50), 0);
	assert_int_equal(b->checks, 4);
	assert_int_equal(b->state, HEALTH_FAILED);

	health_free(h);
	loop_free(l);
	free(c);
}

static void
test_health_reload_keeps_unchanged_backends(void **state)
{
	const int64_t ids[] = { 1, 2 }, ports[] = { 1, 2 };
	const int64_t ids2[] = { 2, 3 }, ports2[] = { 2, 3 };
	struct conf *c = test_conf(2, ids, ports);
	struct conf *c2 = test_conf(2, ids2, ports2);
	struct loop *l = loop_new();
	struct health *h;
	char err[128];
	uint64_t end;

	assert_non_null(l);
	h = health_new(l, c, err, sizeof(err));
	assert_non_null(h);
	end = clock_now_ms() + DEADLINE_MS;
	while (health_get(h, 1)->checks < 1 && clock_now_ms() < end)
		assert_int_equal(loop_run_once(l, 50), 0);
	assert_true(health_get(h, 1)->checks >= 1);

	assert_int_equal(health_reload(h, c2, err, sizeof(err)), 0);
	assert_int_equal(health_count(h), 2);
	assert_int_equal(health_get(h, 0)->id, 2);
	assert_true(health_get(h, 0)->checks >= 1);	/* kept */
	assert_int_equal(health_get(h, 1)->id, 3);
	assert_int_equal(health_get(h, 1)->checks, 0);	/* new */

	/* a changed port is a new backend */
	c2->backends[0].port = 5;
	assert_int_equal(health_reload(h, c2, err, sizeof(err)), 0);
	assert_int_equal(health_get(h, 0)->id, 2);
	assert_int_equal(health_get(h, 0)->checks, 0);

	c2->nbackends = 0;
	assert_int_equal(health_reload(h, c2, err, sizeof(err)), 0);
	assert_int_equal(health_count(h), 0);

	health_free(h);
	loop_free(l);
	free(c);
	free(c2);
}

static void
test_health_status_outputs_every_field(void **state)
{
	const int64_t ids[] = { 4 }, ports[] = { 1 };
	struct conf *c = test_conf(1, ids, ports);
	struct loop *l = loop_new();
	struct health *h;
	struct json j;
	char err[128], *buf = NULL;
	size_t len = 0;
	FILE *f;
	uint64_t end;

	assert_non_null(l);
	h = health_new(l, c, err, sizeof(err));
	assert_non_null(h);
	end = clock_now_ms() + DEADLINE_MS;
	while (health_get(h, 0)->checks < 1 && clock_now_ms() < end)
		assert_int_equal(loop_run_once(l, 50), 0);

	f = open_memstream(&buf, &len);
	assert_non_null(f);
	json_init(&j, f);
	json_begin_object(&j);
	health_status_json(h, &j, clock_now_ms());
	json_end_object(&j);
	assert_int_equal(json_finish(&j), 0);
	fclose(f);
	assert_non_null(strstr(buf, "\"id\":4,\"host\":\"127.0.0.1\",\"port\":1,"
			       "\"state\":\"suspect\",\"role\":\"unknown\","
			       "\"timeline\":null,\"lsn\":null,\"receive_lsn\":null,"
			       "\"replay_lsn\":null,\"system_id\":null,"
			       "\"last_ok_ms\":null,\"latency_ms\":null,"));
	assert_non_null(strstr(buf, "\"consecutive_failures\":1,\"checks\":1,"
			       "\"failures\":1,\"error\":\""));
	free(buf);
	buf = NULL;

	f = open_memstream(&buf, &len);
	assert_non_null(f);
	health_status_table(h, f, clock_now_ms());
	fclose(f);
	assert_non_null(strstr(buf, "127.0.0.1:1"));
	assert_non_null(strstr(buf, "suspect"));
	free(buf);

	health_free(h);
	loop_free(l);
	free(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_health_parse_lsn_accepts_pg_text_and_rejects_garbage),
		cmocka_unit_test(test_health_error_text_is_first_line_trimmed),
		cmocka_unit_test(test_health_refused_backend_goes_suspect_then_failed),
		cmocka_unit_test(test_health_reload_keeps_unchanged_backends),
		cmocka_unit_test(test_health_status_outputs_every_field),
	};

	log_open("test_health", LOG_DEST_STDERR, LOG_LVL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
