/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_conf.c - the configuration reader: one golden case per class of
 * error (the exact "file:line: message" an operator sees), defaults,
 * values, and the reload rule for restart-only settings.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/conf.h"
#include "core/log.h"
#include "watchdog/elect.h"

#define PEERS "[peer.1]\naddress = 192.0.2.1\n[peer.2]\naddress = 192.0.2.2\n[peer.3]\naddress = 192.0.2.3\n"
#define CLUSTER "[cluster]\nname = t\nstate_dir = /tmp/x\nkey_file = /tmp/k\n"

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

/* Loads text, expects failure with exactly the given error lines. */
static void
expect_errors(const char *text, const char *const *want, size_t nwant)
{
	struct conf_errors errs = { 0 };
	struct conf *c = load(text, &errs);

	bool same = errs.n == nwant;

	assert_null(c);
	for (size_t i = 0; same && i < nwant; i++)
		same = strcmp(errs.msgs[i], want[i]) == 0;
	for (size_t i = 0; !same && i < errs.n; i++)
		print_message("  got: %s\n", errs.msgs[i]);
	assert_int_equal(errs.n, nwant);
	for (size_t i = 0; i < nwant; i++)
		assert_string_equal(errs.msgs[i], want[i]);
	conf_errors_clear(&errs);
}

#define EXPECT(text, ...)                                                  \
	do {                                                               \
		const char *const w_[] = { __VA_ARGS__ };                  \
		expect_errors(text, w_, sizeof(w_) / sizeof(w_[0]));       \
	} while (0)

static void
test_conf_syntax_error_names_the_line(void **s)
{
	(void)s;
	EXPECT(CLUSTER "just words\n" PEERS,
	       "t.conf:5: syntax error: expected \"name = value\" or \"[section]\"");
	EXPECT(CLUSTER "[peer.1\n" PEERS,
	       "t.conf:5: syntax error: a section header is written [name]");
	EXPECT(CLUSTER "= x\n" PEERS,
	       "t.conf:5: syntax error: setting name missing before \"=\"");
	EXPECT(CLUSTER "log_level: info\n" PEERS,
	       "t.conf:5: syntax error: expected \"name = value\" or \"[section]\"");
}

static void
test_conf_unknown_section_is_an_error(void **s)
{
	(void)s;
	EXPECT(CLUSTER "[frobnicate]\naddress = 192.0.2.200\n" PEERS,
	       "t.conf:5: unknown section [frobnicate] (known: [cluster], [hooks], [watchdog], [vip], [health], [peer.N], [backend.N])");
	/* A VIP needs its interface, and must not be a peer's own address. */
	EXPECT(CLUSTER "[vip]\naddress = 192.0.2.200\n" PEERS,
	       "t.conf:6: [vip] address is set but interface is not: name the interface the VIP is added to");
	EXPECT(CLUSTER "[vip]\naddress = 192.0.2.2\ninterface = eth0\n" PEERS,
	       "t.conf:6: the VIP 192.0.2.2 is the address of [peer.2]: a VIP must be an address of its own");
	EXPECT(CLUSTER "[vip]\naddress = 192.0.2.200\ninterface = enp0s31f6long\n" PEERS,
	       "t.conf:7: interface name \"enp0s31f6long\" leaves no room for the label \"enp0s31f6long:vip\" (at most 15 characters)");
}

static void
test_conf_section_ids_are_checked(void **s)
{
	(void)s;
	EXPECT(CLUSTER "[peer]\n" PEERS,
	       "t.conf:5: section [peer] needs an id: write [peer.N] with N from 1 to 255");
	EXPECT(CLUSTER "[peer.0]\n" PEERS,
	       "t.conf:5: invalid section [peer.0]: the id must be a number from 1 to 255");
	EXPECT(CLUSTER "[backend.256]\n" PEERS,
	       "t.conf:5: invalid section [backend.256]: the id must be a number from 1 to 255");
	EXPECT(CLUSTER "[peer.01]\n" PEERS,
	       "t.conf:5: invalid section [peer.01]: the id must be a number from 1 to 255");
}

static void
test_conf_duplicate_section_is_an_error(void **s)
{
	(void)s;
	EXPECT(CLUSTER PEERS "[peer.1]\nport = 1\n",
	       "t.conf:11: section [peer.1] appears twice (first at line 5)");
	EXPECT(CLUSTER "[cluster]\n" PEERS,
	       "t.conf:5: section [cluster] appears twice (first at line 1)");
}

static void
test_conf_unknown_setting_is_an_error(void **s)
{
	(void)s;
	EXPECT(CLUSTER "colour = blue\n" PEERS,
	       "t.conf:5: unknown setting \"colour\" in section [cluster]");
	EXPECT(CLUSTER PEERS "colour = blue\n",
	       "t.conf:11: unknown setting \"colour\" in section [peer.3]");
}

static void
test_conf_duplicate_setting_is_an_error(void **s)
{
	(void)s;
	EXPECT(CLUSTER "log_level = info\nlog_level = debug\n" PEERS,
	       "t.conf:6: setting \"log_level\" appears twice (first at line 5)");
}

static void
test_conf_setting_outside_section_is_an_error(void **s)
{
	(void)s;
	EXPECT("name = t\n" CLUSTER PEERS,
	       "t.conf:1: setting \"name\" is outside any section");
}

static void
test_conf_bad_values_are_errors(void **s)
{
	(void)s;
	EXPECT(CLUSTER PEERS "port = 70000\n",
	       "t.conf:11: value 70000 for \"port\" is out of range (1 to 65535)");
	EXPECT(CLUSTER PEERS "port = 54x\n",
	       "t.conf:11: invalid value \"54x\" for \"port\": expected an integer");
	EXPECT(CLUSTER "log_level = loud\n" PEERS,
	       "t.conf:5: invalid value \"loud\" for \"log_level\": expected one of error|warning|info|debug");
	EXPECT(CLUSTER "[hooks]\nhook_timeout = 5 parsecs\n" PEERS,
	       "t.conf:6: invalid value \"5 parsecs\" for \"hook_timeout\": expected a duration such as 500ms, 2s or 1min");
	EXPECT(CLUSTER "[hooks]\nhook_timeout = 3d\n" PEERS,
	       "t.conf:6: invalid value \"3d\" for \"hook_timeout\": expected a duration such as 500ms, 2s or 1min");
	EXPECT(CLUSTER "[hooks]\nhook_timeout = 10ms\n" PEERS,
	       "t.conf:6: value 10ms for \"hook_timeout\" is out of range (100ms to 24h)");
	EXPECT("[cluster]\nname = has space\nkey_file = /k\n" PEERS,
	       "t.conf:2: invalid value \"has space\" for \"name\": use 1 to 63 letters, digits, \"_\", \".\" or \"-\"");
	EXPECT("[cluster]\nname = t\nstate_dir = var/lib\nkey_file = /k\n" PEERS,
	       "t.conf:3: invalid value \"var/lib\" for \"state_dir\": expected an absolute path");
	EXPECT(CLUSTER "[peer.1]\naddress = db1.example\n",
	       "t.conf:6: invalid value \"db1.example\" for \"address\": expected an IPv4 or IPv6 address (host names are not resolved)");
}

static void
test_conf_unknown_placeholder_is_an_error(void **s)
{
	(void)s;
	EXPECT(CLUSTER "[hooks]\nnotify_command = /bin/echo %e %Q\n" PEERS,
	       "t.conf:6: invalid value for \"notify_command\": unknown placeholder %Q in hook command");
}

static void
test_conf_missing_required_setting_is_an_error(void **s)
{
	(void)s;
	EXPECT(CLUSTER "[peer.1]\nport = 5480\n",
	       "t.conf:5: section [peer.1] lacks the required setting \"address\"");
	EXPECT(PEERS,
	       "t.conf: section [cluster] with the required setting \"name\" is missing",
	       "t.conf: section [cluster] with the required setting \"key_file\" is missing");
	EXPECT(CLUSTER PEERS "[backend.1]\nport = 5432\n",
	       "t.conf:11: section [backend.1] lacks the required setting \"host\"");
}

static void
test_conf_cross_field_contradictions_are_errors(void **s)
{
	(void)s;
	EXPECT(CLUSTER,
	       "t.conf: no [peer.N] section: list every pgvigil peer, this one included");
	EXPECT(CLUSTER PEERS "[peer.4]\naddress = 192.0.2.1\n",
	       "t.conf:12: [peer.4] has the same address and port as [peer.1] (192.0.2.1 port 5480)");
	/* The same address written two ways is still the same address. */
	EXPECT(CLUSTER "[peer.1]\naddress = 2001:db8::1\n[peer.2]\naddress = 2001:DB8:0::1\n",
	       "t.conf:8: [peer.2] has the same address and port as [peer.1] (2001:db8::1 port 5480)");
	EXPECT(CLUSTER PEERS "[backend.1]\nhost = 192.0.2.11\n[backend.2]\nhost = 192.0.2.11\n",
	       "t.conf:14: [backend.2] has the same host and port as [backend.1] (192.0.2.11 port 5432)");
}

static void
test_conf_watchdog_timings_and_topology_are_checked(void **s)
{
	(void)s;
	/* The lease must end before another peer's election timeout can. */
	EXPECT(CLUSTER PEERS "[watchdog]\nelection_timeout_min = 600ms\nlease = 600ms\n",
	       "t.conf:13: lease (600ms) must end before election_timeout_min (600ms) can elapse on another peer: with a clock drift bound of 2%, lease * 102 must be below election_timeout_min * 98");
	EXPECT(CLUSTER PEERS "[watchdog]\nelection_timeout_max = 500ms\n",
	       "t.conf:12: election_timeout_max (500ms) must exceed election_timeout_min (700ms) by at least twice heartbeat_interval (2 x 100ms), so that randomized timeouts separate candidates");
	EXPECT(CLUSTER PEERS "[watchdog]\nheartbeat_interval = 300ms\n",
	       "t.conf:12: election_timeout_min (700ms) must be at least three times heartbeat_interval (3 x 300ms)");
	/* Two peers, no witness, no fence command: refused with the remedy. */
	EXPECT(CLUSTER "[peer.1]\naddress = 192.0.2.1\n[peer.2]\naddress = 192.0.2.2\n",
	       "t.conf:7: two peers without a witness cannot form a majority after one fails: add a witness peer or a fence_command");
	EXPECT(CLUSTER "[peer.1]\naddress = 192.0.2.1\npriority = 0\n"
	       "[peer.2]\naddress = 192.0.2.2\nwitness = yes\n[peer.3]\naddress = 192.0.2.3\npriority = 0\n",
	       "t.conf:11: no peer can become coordinator: give at least one non-witness peer a priority above 0");
	EXPECT(CLUSTER PEERS "[watchdog]\nfence_command = fence %x\n",
	       "t.conf:12: invalid value for \"fence_command\": unknown placeholder %x in hook command");
	EXPECT(CLUSTER "[peer.1]\naddress = 192.0.2.1\nwitness = maybe\n" PEERS,
	       "t.conf:7: invalid value \"maybe\" for \"witness\": expected yes or no",
	       "t.conf:8: section [peer.1] appears twice (first at line 5)");
	/* Two peers of which one is a witness: any failure stops the cluster. */
	EXPECT(CLUSTER "[peer.1]\naddress = 192.0.2.1\n[peer.2]\naddress = 192.0.2.2\nwitness = yes\n",
	       "t.conf:7: two peers of which one is a witness survive no failure (the other cannot win alone): add a third peer, or drop the witness and set a fence_command");

	/* With a fence command, two peers are two-node mode. */
	struct conf_errors errs = { 0 };
	struct conf *c = load(CLUSTER "[watchdog]\nfence_command = /bin/fence %t %a\n"
			      "[peer.1]\naddress = 192.0.2.1\n[peer.2]\naddress = 192.0.2.2\n",
			      &errs);
	struct wd_config wc;

	assert_non_null(c);
	conf_wd_config(c, 2, &wc);
	assert_true(wc.two_node);
	assert_int_equal(wc.self, 2);
	assert_int_equal(wc.npeers, 2);
	assert_int_equal(wc.lease_ms, 500);
	conf_free(c);
}

static void
test_conf_line_too_long_is_an_error(void **s)
{
	char *text = malloc(6000);

	(void)s;
	assert_non_null(text);
	strcpy(text, CLUSTER "[hooks]\nnotify_command = /bin/echo ");
	size_t n = strlen(text);

	memset(text + n, 'a', 4200);
	strcpy(text + n + 4200, "\n" PEERS);
	EXPECT(text, "t.conf:6: line is too long (at most 4096 characters)");
	free(text);
}

static void
test_conf_every_error_is_reported_in_line_order(void **s)
{
	(void)s;
	EXPECT("[cluster]\nname = bad name\nlog_level = loud\n[nope]\n[peer.1]\naddress = x\nport = 0\n",
	       "t.conf:1: section [cluster] lacks the required setting \"key_file\"",
	       "t.conf:2: invalid value \"bad name\" for \"name\": use 1 to 63 letters, digits, \"_\", \".\" or \"-\"",
	       "t.conf:3: invalid value \"loud\" for \"log_level\": expected one of error|warning|info|debug",
	       "t.conf:4: unknown section [nope] (known: [cluster], [hooks], [watchdog], [vip], [health], [peer.N], [backend.N])",
	       "t.conf:6: invalid value \"x\" for \"address\": expected an IPv4 or IPv6 address (host names are not resolved)",
	       "t.conf:7: value 0 for \"port\" is out of range (1 to 65535)");
}

static void
test_conf_defaults_and_values(void **s)
{
	struct conf_errors errs = { 0 };
	struct conf *c = load("; comment\n# comment\n" CLUSTER
			      "  log_level = debug\n"
			      "[hooks]\nnotify_command = /bin/echo a ;b # c %e\n"
			      "hook_timeout = 2min\n"
			      "[peer.2]\naddress = 2001:db8::2\nport = 6000\nwitness = on\n"
			      "[peer.1]\naddress = 192.0.2.1\npriority = 7\n"
			      "[peer.3]\naddress = 192.0.2.3\n"
			      "[backend.1]\nhost = 192.0.2.11\nconnect_timeout = 1500\n",
			      &errs);

	(void)s;
	assert_int_equal(errs.n, 0);
	assert_non_null(c);
	assert_string_equal(c->cluster_name, "t");
	assert_int_equal(c->log_level, LOG_LVL_DEBUG);	/* indented line is a setting */
	assert_int_equal(c->log_destination, LOG_DEST_STDERR);
	/* ";" inside a value is data, not the start of a comment. */
	assert_string_equal(c->notify_command, "/bin/echo a ;b # c %e");
	assert_int_equal(c->hook_timeout_ms, 120000);
	assert_int_equal(c->hook_kill_grace_ms, 5000);
	assert_int_equal(c->npeers, 3);
	assert_int_equal(c->peers[0].id, 1);	/* sorted by id */
	assert_int_equal(c->peers[0].port, 5480);
	assert_int_equal(c->peers[1].id, 2);
	assert_int_equal(c->peers[1].port, 6000);
	assert_int_equal(c->peers[1].sa.ss_family, AF_INET6);
	assert_int_equal(c->peers[0].priority, 7);
	assert_int_equal(c->peers[0].witness, 0);
	assert_int_equal(c->peers[1].priority, 1);
	assert_int_equal(c->peers[1].witness, 1);
	/* Watchdog defaults: DESIGN.md §8 timings, consistent with each other. */
	assert_int_equal(c->wd.heartbeat_ms, 100);
	assert_int_equal(c->wd.election_min_ms, 700);
	assert_int_equal(c->wd.election_max_ms, 1100);
	assert_int_equal(c->wd.lease_ms, 500);
	assert_int_equal(c->wd.drift_pct, 2);
	assert_string_equal(c->key_file, "/tmp/k");
	char sock[256];

	conf_control_socket(c, sock, sizeof(sock));
	assert_string_equal(sock, "/tmp/x/pgvigil.sock");
	assert_int_equal(c->nbackends, 1);
	assert_int_equal(c->backends[0].port, 5432);
	assert_string_equal(c->backends[0].dbname, "postgres");
	assert_string_equal(c->backends[0].user, "pgvigil");
	assert_int_equal(c->backends[0].connect_timeout_ms, 1500);
	assert_ptr_equal(conf_peer_by_id(c, 2), &c->peers[1]);
	assert_null(conf_peer_by_id(c, 4));
	conf_free(c);
	conf_free(NULL);
}

static void
test_conf_durations(void **s)
{
	int64_t ms;

	(void)s;
	assert_int_equal(conf_parse_duration("250", &ms), 0);
	assert_int_equal(ms, 250);
	assert_int_equal(conf_parse_duration("250ms", &ms), 0);
	assert_int_equal(ms, 250);
	assert_int_equal(conf_parse_duration("3s", &ms), 0);
	assert_int_equal(ms, 3000);
	assert_int_equal(conf_parse_duration("2min", &ms), 0);
	assert_int_equal(ms, 120000);
	assert_int_equal(conf_parse_duration("1h", &ms), 0);
	assert_int_equal(ms, 3600000);
	assert_int_equal(conf_parse_duration("-1s", &ms), -1);
	assert_int_equal(conf_parse_duration("s", &ms), -1);
	assert_int_equal(conf_parse_duration("1.5s", &ms), -1);
	assert_int_equal(conf_parse_duration("99999999999999999999h", &ms), -1);
}

static void
test_conf_reload_keeps_restart_only_settings(void **s)
{
	struct conf_errors errs = { 0 }, changed = { 0 };
	struct conf *cur = load(CLUSTER "log_level = info\n" PEERS, &errs);
	struct conf *fresh = load("[cluster]\nname = other\nstate_dir = /tmp/x\nkey_file = /tmp/k\n"
				  "log_level = debug\n"
				  "[peer.1]\naddress = 192.0.2.1\nport = 6000\n"
				  "[peer.2]\naddress = 192.0.2.2\n[peer.3]\naddress = 192.0.2.3\n", &errs);

	(void)s;
	assert_non_null(cur);
	assert_non_null(fresh);
	assert_int_equal(conf_keep_restart_only(cur, fresh, &changed), 2);
	assert_string_equal(changed.msgs[0], "cluster.name");
	assert_string_equal(changed.msgs[1], "peer.1.port");
	assert_string_equal(fresh->cluster_name, "t");	/* kept */
	assert_int_equal(fresh->peers[0].port, 5480);	/* kept */
	assert_int_equal(fresh->log_level, LOG_LVL_DEBUG);	/* reloadable */
	conf_errors_clear(&changed);
	conf_free(fresh);

	/* A different peer list is a membership change: restart only. */
	fresh = load(CLUSTER PEERS "[peer.4]\naddress = 192.0.2.4\n", &errs);
	assert_non_null(fresh);
	assert_int_equal(conf_keep_restart_only(cur, fresh, &changed), 1);
	assert_string_equal(changed.msgs[0], "peers");
	assert_int_equal(fresh->npeers, 3);
	assert_string_equal(fresh->peers[1].address, "192.0.2.2");
	conf_errors_clear(&changed);
	conf_free(fresh);
	conf_free(cur);
}

static void
test_conf_missing_file_is_an_error(void **s)
{
	struct conf_errors errs = { 0 };

	(void)s;
	assert_null(conf_load("/nonexistent/pgvigil.conf", &errs));
	assert_int_equal(errs.n, 1);
	assert_string_equal(errs.msgs[0],
			    "/nonexistent/pgvigil.conf: could not open configuration file: No such file or directory");
	conf_errors_clear(&errs);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_conf_syntax_error_names_the_line),
		cmocka_unit_test(test_conf_unknown_section_is_an_error),
		cmocka_unit_test(test_conf_section_ids_are_checked),
		cmocka_unit_test(test_conf_duplicate_section_is_an_error),
		cmocka_unit_test(test_conf_unknown_setting_is_an_error),
		cmocka_unit_test(test_conf_duplicate_setting_is_an_error),
		cmocka_unit_test(test_conf_setting_outside_section_is_an_error),
		cmocka_unit_test(test_conf_bad_values_are_errors),
		cmocka_unit_test(test_conf_unknown_placeholder_is_an_error),
		cmocka_unit_test(test_conf_missing_required_setting_is_an_error),
		cmocka_unit_test(test_conf_cross_field_contradictions_are_errors),
		cmocka_unit_test(test_conf_watchdog_timings_and_topology_are_checked),
		cmocka_unit_test(test_conf_line_too_long_is_an_error),
		cmocka_unit_test(test_conf_every_error_is_reported_in_line_order),
		cmocka_unit_test(test_conf_defaults_and_values),
		cmocka_unit_test(test_conf_durations),
		cmocka_unit_test(test_conf_reload_keeps_restart_only_settings),
		cmocka_unit_test(test_conf_missing_file_is_an_error),
	};

	log_open("test_conf", LOG_DEST_STDERR, LOG_LVL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
