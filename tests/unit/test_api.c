/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_api.c - the HTTP API's pure parts: the health endpoints' decision
 * for every role and flag, ?lag= parsing, the bearer token check, the
 * POST body parser, the [api] settings and their checks, and the
 * Prometheus writer (label escaping, cumulative histogram buckets).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/metrics.h"
#include "core/conf.h"

#define BASE "[cluster]\nname = t\nstate_dir = /tmp/x\nkey_file = /tmp/k\n" \
	"[peer.1]\naddress = 192.0.2.1\n[peer.2]\naddress = 192.0.2.2\n" \
	"[peer.3]\naddress = 192.0.2.3\n"

static struct conf *
load(const char *text, struct conf_errors *errs)
{
	FILE *f = fmemopen((void *)(uintptr_t)text, strlen(text), "r");
	struct conf *c;

	assert_non_null(f);
	c = conf_load_stream(f, "t.conf", errs);
	fclose(f);
	return c;
}

static const struct api_node primary = {
	.has_backend = true, .up = true, .role = API_ROLE_PRIMARY,
	.record_primary = true, .lag_known = true, .lag = 0,
};

static const struct api_node standby = {
	.has_backend = true, .up = true, .role = API_ROLE_STANDBY,
	.lag_known = true, .lag = 1000,
};

static void
test_api_primary_is_200_only_on_primary_endpoints(void **state)
{
	(void)state;
	assert_int_equal(api_decide(&primary, API_CHECK_PRIMARY, API_NO_LAG_LIMIT), 200);
	assert_int_equal(api_decide(&primary, API_CHECK_REPLICA, API_NO_LAG_LIMIT), 503);
	assert_int_equal(api_decide(&primary, API_CHECK_READ_ONLY, API_NO_LAG_LIMIT), 200);
	assert_int_equal(api_decide(&primary, API_CHECK_HEALTH, API_NO_LAG_LIMIT), 200);
	assert_int_equal(api_decide(&primary, API_CHECK_READINESS, 0), 200);
}

static void
test_api_primary_needs_record_no_failover_no_rejoin(void **state)
{
	struct api_node n = primary;

	(void)state;
	n.record_primary = false;	/* a second primary the record does not name */
	assert_int_equal(api_decide(&n, API_CHECK_PRIMARY, API_NO_LAG_LIMIT), 503);
	n = primary;
	n.failover_busy = true;
	assert_int_equal(api_decide(&n, API_CHECK_PRIMARY, API_NO_LAG_LIMIT), 503);
	n = primary;
	n.needs_rejoin = true;
	assert_int_equal(api_decide(&n, API_CHECK_PRIMARY, API_NO_LAG_LIMIT), 503);
	assert_int_equal(api_decide(&n, API_CHECK_READ_ONLY, API_NO_LAG_LIMIT), 503);
	n = primary;
	n.up = false;		/* latest check failed: its role is old news */
	assert_int_equal(api_decide(&n, API_CHECK_PRIMARY, API_NO_LAG_LIMIT), 503);
	assert_int_equal(api_decide(&n, API_CHECK_HEALTH, API_NO_LAG_LIMIT), 503);
}

static void
test_api_replica_within_lag(void **state)
{
	struct api_node n = standby;

	(void)state;
	assert_int_equal(api_decide(&n, API_CHECK_PRIMARY, API_NO_LAG_LIMIT), 503);
	assert_int_equal(api_decide(&n, API_CHECK_REPLICA, API_NO_LAG_LIMIT), 200);
	assert_int_equal(api_decide(&n, API_CHECK_REPLICA, 1000), 200);
	assert_int_equal(api_decide(&n, API_CHECK_REPLICA, 999), 503);
	assert_int_equal(api_decide(&n, API_CHECK_READ_ONLY, 999), 503);
	assert_int_equal(api_decide(&n, API_CHECK_READINESS, 1000), 200);
	n.lag_known = false;	/* the primary's position is not known here */
	assert_int_equal(api_decide(&n, API_CHECK_REPLICA, 1u << 30), 503);
	assert_int_equal(api_decide(&n, API_CHECK_REPLICA, API_NO_LAG_LIMIT), 200);
	n = standby;
	n.needs_rejoin = true;
	assert_int_equal(api_decide(&n, API_CHECK_REPLICA, API_NO_LAG_LIMIT), 503);
	/* A failover in progress does not make a standby less of a replica. */
	n = standby;
	n.failover_busy = true;
	assert_int_equal(api_decide(&n, API_CHECK_REPLICA, API_NO_LAG_LIMIT), 200);
}

static void
test_api_peer_without_backend_is_only_alive(void **state)
{
	struct api_node n = { 0 };

	(void)state;
	for (int c = API_CHECK_PRIMARY; c <= API_CHECK_READINESS; c++)
		assert_int_equal(api_decide(&n, (enum api_check)c, API_NO_LAG_LIMIT),
				 c == API_CHECK_LIVENESS ? 200 : 503);
}

static void
test_api_lag_parses_patroni_units(void **state)
{
	uint64_t b;

	(void)state;
	assert_int_equal(api_parse_lag("0", &b), 0);
	assert_int_equal(b, 0);
	assert_int_equal(api_parse_lag("1048576", &b), 0);
	assert_int_equal(b, 1048576);
	assert_int_equal(api_parse_lag("16MB", &b), 0);
	assert_int_equal(b, 16ULL << 20);
	assert_int_equal(api_parse_lag("16mb", &b), 0);
	assert_int_equal(b, 16ULL << 20);
	assert_int_equal(api_parse_lag("1kB", &b), 0);
	assert_int_equal(b, 1024);
	assert_int_equal(api_parse_lag("2GB", &b), 0);
	assert_int_equal(b, 2ULL << 30);
	assert_int_equal(api_parse_lag("5 B", &b), 0);
	assert_int_equal(b, 5);
	assert_int_equal(api_parse_lag("", &b), -1);
	assert_int_equal(api_parse_lag("-1", &b), -1);
	assert_int_equal(api_parse_lag("16XB", &b), -1);
	assert_int_equal(api_parse_lag("MB", &b), -1);
	assert_int_equal(api_parse_lag("99999999999999TB", &b), -1);
	assert_int_equal(api_parse_lag("99999999999999999999", &b), -1);
	assert_int_equal(api_parse_lag(NULL, &b), -1);
}

static void
test_api_token_check(void **state)
{
	(void)state;
	assert_true(api_token_ok("Bearer s3cret", "s3cret"));
	assert_true(api_token_ok("bearer s3cret", "s3cret"));
	assert_false(api_token_ok("Bearer s3cre", "s3cret"));
	assert_false(api_token_ok("Bearer s3cretX", "s3cret"));
	assert_false(api_token_ok("Basic s3cret", "s3cret"));
	assert_false(api_token_ok("s3cret", "s3cret"));
	assert_false(api_token_ok(NULL, "s3cret"));
	assert_false(api_token_ok("Bearer ", ""));
	assert_false(api_token_ok("Bearer x", NULL));
}

static void
test_api_body_parser(void **state)
{
	struct api_body b;
	char err[160];

	(void)state;
	assert_int_equal(api_parse_body("", 0, &b, err, sizeof(err)), 0);
	assert_int_equal(b.candidate, 0);
	assert_false(b.dry_run || b.force);
	assert_int_equal(api_parse_body(" {} ", 4, &b, err, sizeof(err)), 0);
	const char *s = "{\"candidate\": 2, \"dry_run\": true}";

	assert_int_equal(api_parse_body(s, strlen(s), &b, err, sizeof(err)), 0);
	assert_int_equal(b.candidate, 2);
	assert_true(b.dry_run);
	assert_false(b.force);
	s = "{\"force\":true,\"candidate\":null}";
	assert_int_equal(api_parse_body(s, strlen(s), &b, err, sizeof(err)), 0);
	assert_int_equal(b.candidate, 0);
	assert_true(b.force);
	static const char *const bad[] = {
		"[]", "{", "{\"candidate\": 0}", "{\"candidate\": 256}",
		"{\"candidate\": \"2\"}", "{\"candidate\": 2.5}", "{\"force\": 1}",
		"{\"leader\": 1}", "{\"candidate\": 2} x", "{\"candidate\": 2,}",
		"{candidate: 2}", "{\"candidate\" 2}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(api_parse_body(bad[i], strlen(bad[i]), &b, err, sizeof(err)), -1);
		assert_true(err[0] != '\0');
	}
	assert_non_null(strstr((api_parse_body("{\"leader\": 1}", 13, &b, err, sizeof(err)), err),
			       "unknown member \"leader\""));
}

static void
test_api_listen_parses_v4_and_bracketed_v6(void **state)
{
	struct sockaddr_storage sa;
	socklen_t len;

	(void)state;
	assert_int_equal(conf_parse_listen("192.0.2.1:8008", &sa, &len), 0);
	assert_int_equal(sa.ss_family, AF_INET);
	assert_int_equal(ntohs(((struct sockaddr_in *)&sa)->sin_port), 8008);
	assert_int_equal(conf_parse_listen("[2001:db8::1]:8443", &sa, &len), 0);
	assert_int_equal(sa.ss_family, AF_INET6);
	assert_int_equal(ntohs(((struct sockaddr_in6 *)&sa)->sin6_port), 8443);
	assert_int_equal(conf_parse_listen("0.0.0.0:1", &sa, &len), 0);
	static const char *const bad[] = {
		"192.0.2.1", "192.0.2.1:", "192.0.2.1:0", "192.0.2.1:65536",
		"2001:db8::1:8008", "[2001:db8::1]", "[2001:db8::1]8008", "[]:80",
		"localhost:8008", ":8008", "192.0.2.1:80x", "[192.0.2.1]:80",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(conf_parse_listen(bad[i], &sa, &len), -1);
}

static void
test_api_settings_checked_with_file_and_line(void **state)
{
	struct conf_errors e = { 0 };
	struct conf *c;

	(void)state;
	c = load(BASE "[api]\nlisten = 192.0.2.1:8008\ntoken = x\n", &e);
	assert_non_null(c);
	assert_string_equal(c->api.listen, "192.0.2.1:8008");
	conf_free(c);
	c = load(BASE, &e);
	assert_non_null(c);
	assert_string_equal(c->api.listen, "");
	conf_free(c);

	c = load(BASE "[api]\nlisten = somewhere:8008\n", &e);
	assert_null(c);
	assert_int_equal(e.n, 1);
	assert_non_null(strstr(e.msgs[0], "t.conf:12: invalid value \"somewhere:8008\" for \"listen\""));
	conf_errors_clear(&e);

	c = load(BASE "[api]\nlisten = 192.0.2.1:8008\ntoken = x\ntoken_file = /etc/t\n", &e);
	assert_null(c);
	assert_non_null(strstr(e.msgs[0], "t.conf:14: token and token_file are both set"));
	conf_errors_clear(&e);

	c = load(BASE "[api]\nlisten = 192.0.2.1:8008\ntls_cert = /etc/c.pem\n", &e);
	assert_null(c);
	assert_non_null(strstr(e.msgs[0], "t.conf:13: tls_cert and tls_key go together"));
	conf_errors_clear(&e);

	c = load(BASE "[api]\nlisten = 192.0.2.1:8008\ntls_ca = /etc/ca.pem\n", &e);
	assert_null(c);
	assert_non_null(strstr(e.msgs[0], "t.conf:13: tls_ca needs tls_cert"));
	conf_errors_clear(&e);
}

static void
test_api_reload_keeps_listen_takes_token(void **state)
{
	struct conf_errors e = { 0 }, changed = { 0 };
	struct conf *cur = load(BASE "[api]\nlisten = 192.0.2.1:8008\ntoken = a\n", &e);
	struct conf *fresh = load(BASE "[api]\nlisten = 192.0.2.1:9009\ntoken = b\n", &e);

	(void)state;
	assert_non_null(cur);
	assert_non_null(fresh);
	assert_int_equal(conf_keep_restart_only(cur, fresh, &changed), 1);
	assert_string_equal(changed.msgs[0], "api.listen");
	assert_string_equal(fresh->api.listen, "192.0.2.1:8008");
	assert_string_equal(fresh->api.token, "b");
	conf_errors_clear(&changed);
	conf_free(cur);
	conf_free(fresh);
}

static char *
render(void (*fn)(FILE *f, void *arg), void *arg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	fn(f, arg);
	fclose(f);
	return buf;
}

static void
write_hist(FILE *f, void *arg)
{
	mx_hist_write(f, "x_seconds", "a=\"1\"", arg);
}

static void
test_api_histogram_buckets_cumulative(void **state)
{
	static const double le[] = { 0.1, 1, 10 };
	struct mx_hist h;
	char *s;

	(void)state;
	mx_hist_init(&h, le, 3);
	mx_hist_observe(&h, 0.05);
	mx_hist_observe(&h, 0.1);	/* le is inclusive */
	mx_hist_observe(&h, 5);
	mx_hist_observe(&h, 50);
	s = render(write_hist, &h);
	assert_string_equal(s,
		"x_seconds_bucket{a=\"1\",le=\"0.10000000000000001\"} 2\n"
		"x_seconds_bucket{a=\"1\",le=\"1\"} 2\n"
		"x_seconds_bucket{a=\"1\",le=\"10\"} 3\n"
		"x_seconds_bucket{a=\"1\",le=\"+Inf\"} 4\n"
		"x_seconds_sum{a=\"1\"} 55.149999999999999\n"
		"x_seconds_count{a=\"1\"} 4\n");
	free(s);
}

static void
test_api_label_values_escaped(void **state)
{
	char l[64] = "";

	(void)state;
	mx_label(l, sizeof(l), "a", "x\"y\\z\nw");
	mx_label(l, sizeof(l), "b", "2");
	assert_string_equal(l, "a=\"x\\\"y\\\\z\\nw\",b=\"2\"");
	char small[8] = "";

	mx_label(small, sizeof(small), "key", "longvalue");
	assert_true(strlen(small) < sizeof(small));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_api_primary_is_200_only_on_primary_endpoints),
		cmocka_unit_test(test_api_primary_needs_record_no_failover_no_rejoin),
		cmocka_unit_test(test_api_replica_within_lag),
		cmocka_unit_test(test_api_peer_without_backend_is_only_alive),
		cmocka_unit_test(test_api_lag_parses_patroni_units),
		cmocka_unit_test(test_api_token_check),
		cmocka_unit_test(test_api_body_parser),
		cmocka_unit_test(test_api_listen_parses_v4_and_bracketed_v6),
		cmocka_unit_test(test_api_settings_checked_with_file_and_line),
		cmocka_unit_test(test_api_reload_keeps_listen_takes_token),
		cmocka_unit_test(test_api_histogram_buckets_cumulative),
		cmocka_unit_test(test_api_label_values_escaped),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
