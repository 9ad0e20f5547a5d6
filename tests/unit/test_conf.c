/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_conf.c - the configuration reader: one golden case per class of
 * error (the exact "file:line: message" an operator sees), defaults,
 * values, and the reload rule for restart-only settings; the failover
 * settings and their mapping onto the failover state machine's config.
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
#include "failover/orch.h"
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
	       "t.conf:5: unknown section [frobnicate] (known: [cluster], [hooks], [watchdog], [vip], [health], [failover], [peer.N], [backend.N], [api])");
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
	       "t.conf:4: unknown section [nope] (known: [cluster], [hooks], [watchdog], [vip], [health], [failover], [peer.N], [backend.N], [api])",
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
test_conf_sizes(void **s)
{
	int64_t b;

	(void)s;
	assert_int_equal(conf_parse_size("100", &b), 0);
	assert_int_equal(b, 100);
	assert_int_equal(conf_parse_size("100B", &b), 0);
	assert_int_equal(b, 100);
	assert_int_equal(conf_parse_size("64kB", &b), 0);
	assert_int_equal(b, 65536);
	assert_int_equal(conf_parse_size("16 MB", &b), 0);
	assert_int_equal(b, 16 * 1048576);
	assert_int_equal(conf_parse_size("2GB", &b), 0);
	assert_int_equal(b, 2LL << 30);
	assert_int_equal(conf_parse_size("1TB", &b), 0);
	assert_int_equal(b, 1LL << 40);
	/* PostgreSQL's units, case and all. */
	assert_int_equal(conf_parse_size("1mb", &b), -1);
	assert_int_equal(conf_parse_size("1KB", &b), -1);
	assert_int_equal(conf_parse_size("1k", &b), -1);
	assert_int_equal(conf_parse_size("1PB", &b), -1);
	assert_int_equal(conf_parse_size("-1MB", &b), -1);
	assert_int_equal(conf_parse_size("1.5MB", &b), -1);
	assert_int_equal(conf_parse_size("MB", &b), -1);
	assert_int_equal(conf_parse_size("", &b), -1);
	assert_int_equal(conf_parse_size("9000000TB", &b), -1);
	assert_int_equal(conf_parse_size("99999999999999999999", &b), -1);
}

static void
test_conf_failover_bad_values_are_errors(void **s)
{
	(void)s;
	EXPECT(CLUSTER "[failover]\nmax_lag = 16mb\n" PEERS,
	       "t.conf:6: invalid value \"16mb\" for \"max_lag\": expected a size such as 512kB, 16MB or 1GB (units B, kB, MB, GB, TB)");
	EXPECT(CLUSTER "[failover]\nmax_lag = 2TB\n" PEERS,
	       "t.conf:6: value 2TB for \"max_lag\" is out of range (0B to 1TB)");
	EXPECT(CLUSTER "[failover]\nmax_lag = 99999999TB\n" PEERS,
	       "t.conf:6: invalid value \"99999999TB\" for \"max_lag\": expected a size such as 512kB, 16MB or 1GB (units B, kB, MB, GB, TB)");
	EXPECT(CLUSTER "[failover]\nfailure_quorum = 33\n" PEERS,
	       "t.conf:6: value 33 for \"failure_quorum\" is out of range (0 to 32)");
	EXPECT(CLUSTER "[failover]\nfailover_command = /bin/promote %d %m %x\n" PEERS,
	       "t.conf:6: invalid value for \"failover_command\": unknown placeholder %x in hook command");
	/* pgvigil quotes values itself: pgpool-II's quoted placeholders are refused. */
	EXPECT(CLUSTER "[failover]\nfollow_primary_command = /bin/follow '%d'\n" PEERS,
	       "t.conf:6: invalid value for \"follow_primary_command\": placeholder %d must not be inside single quotes in hook command, pgvigil quotes each value itself");
	EXPECT(CLUSTER "[vip]\nfollow = backend\n" PEERS,
	       "t.conf:6: invalid value \"backend\" for \"follow\": expected one of coordinator|primary");
	EXPECT(CLUSTER "[health]\nwrite_probe = sometimes\n" PEERS,
	       "t.conf:6: invalid value \"sometimes\" for \"write_probe\": expected yes or no");
	EXPECT(CLUSTER PEERS "[backend.1]\nhost = 192.0.2.21\npriority = 256\ndata_directory = pgdata\n",
	       "t.conf:13: value 256 for \"priority\" is out of range (0 to 255)",
	       "t.conf:14: invalid value \"pgdata\" for \"data_directory\": expected an absolute path");
}

static void
test_conf_failover_cross_checks_are_errors(void **s)
{
	(void)s;
	/* A backend's peer must be configured, and not a witness. */
	EXPECT(CLUSTER PEERS "[backend.1]\nhost = 192.0.2.21\npeer = 1\n"
	       "[backend.2]\nhost = 192.0.2.22\npeer = 4\n",
	       "t.conf:16: [backend.2] names peer 4, which is not configured: set peer to the id of the [peer.N] on the backend's host (configured: 1, 2, 3), or 0 for none");
	EXPECT(CLUSTER "[peer.1]\naddress = 192.0.2.1\n[peer.2]\naddress = 192.0.2.2\n"
	       "[peer.3]\naddress = 192.0.2.3\nwitness = yes\n"
	       "[backend.3]\nhost = 192.0.2.23\npeer = 3\n",
	       "t.conf:14: [backend.3] names peer 3, a witness: a witness runs no backend; set peer to the id of the [peer.N] on the backend's host, or 0 for none");
	EXPECT(CLUSTER "[failover]\nfailure_quorum = 4\n" PEERS,
	       "t.conf:6: failure_quorum (4) is more than the 3 configured peers: no failover could ever start; use at most 3, or 0 for a majority");
	EXPECT(CLUSTER "[vip]\nfollow = primary\n" PEERS "[backend.1]\nhost = 192.0.2.21\n",
	       "t.conf:6: follow = primary needs a [backend.N] with its peer set: the coordinator role follows the primary to the peer on its host");
	EXPECT(CLUSTER "[failover]\nretry_interval = 2s\nretry_max = 1s\n" PEERS,
	       "t.conf:7: retry_max (1s) is shorter than retry_interval (2s)");
	EXPECT(CLUSTER "[failover]\nretry_interval = 1min\n" PEERS,
	       "t.conf:6: retry_max (30s) is shorter than retry_interval (1min)");
	EXPECT(CLUSTER "[failover]\nself_fence = yes\n" PEERS,
	       "t.conf:6: self_fence = yes needs a stop_command: it is the command a coordinator runs to stop its own backend");
}

static void
test_conf_failover_defaults(void **s)
{
	struct conf_errors errs = { 0 };
	struct conf *c = load(CLUSTER PEERS "[backend.1]\nhost = 192.0.2.21\n", &errs);

	(void)s;
	assert_non_null(c);
	assert_int_equal(c->fo.auto_failover, 1);
	assert_int_equal(c->fo.failure_quorum, 0);
	assert_int_equal(c->fo.max_lag, 1048576);
	assert_string_equal(c->fo.failover_command, "");
	assert_string_equal(c->fo.follow_primary_command, "");
	assert_string_equal(c->fo.fence_command, "");
	assert_string_equal(c->fo.stop_command, "");
	assert_string_equal(c->fo.rejoin_command, "");
	assert_int_equal(c->fo.fence_timeout_ms, 5000);
	assert_int_equal(c->fo.verify_timeout_ms, 10000);
	assert_int_equal(c->fo.retry_ms, 1000);
	assert_int_equal(c->fo.retry_max_ms, 30000);
	assert_int_equal(c->fo.self_fence, 0);
	assert_int_equal(c->vip.follow, FO_VIP_COORDINATOR);
	assert_int_equal(c->health.recheck_ms, 50);
	assert_int_equal(c->health.write_probe, 1);
	assert_int_equal(c->backends[0].priority, 1);
	assert_int_equal(c->backends[0].peer, 0);
	assert_string_equal(c->backends[0].data_directory, "");
	conf_free(c);
}

/* Every failover hook takes pgpool-II's letters and pgvigil's %T %i %c. */
static void
test_conf_failover_hooks_take_every_placeholder(void **s)
{
	static const char *const keys[] = { "failover_command",
		"follow_primary_command", "fence_command", "stop_command",
		"rejoin_command" };
	char text[1024];

	(void)s;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		struct conf_errors errs = { 0 };
		struct conf *c;

		/* a fence_command beside it: a failover_command alone is refused */
		snprintf(text, sizeof(text), CLUSTER "[failover]\n%s = /bin/h "
			 "%%d %%h %%p %%D %%m %%H %%M %%r %%R %%P %%N %%S %%T %%i %%c %%%%\n"
			 "%s" PEERS, keys[i], i == 0 ? "fence_command = /bin/f %d\n" : "");
		c = load(text, &errs);
		for (size_t j = 0; j < errs.n; j++)
			print_message("  got: %s\n", errs.msgs[j]);
		assert_non_null(c);
		conf_free(c);
		conf_errors_clear(&errs);
	}
	/* A failover_command with no way to fence the old primary could never run. */
	EXPECT(CLUSTER "[failover]\nfailover_command = /bin/p %m\n" PEERS,
	       "t.conf:6: failover_command is set but neither stop_command nor fence_command: a primary is promoted over only once it is fenced, so no failover could ever happen; add stop_command (the primary's own peer stops it) or fence_command (STONITH), or set auto_failover = no");
	/* The notify hook keeps its own, shorter list. */
	EXPECT(CLUSTER "[hooks]\nnotify_command = /bin/echo %d\n" PEERS,
	       "t.conf:6: invalid value for \"notify_command\": unknown placeholder %d in hook command");
}

static void
test_conf_fo_config_maps_every_field(void **s)
{
	struct conf_errors errs = { 0 };
	struct conf *c = load(CLUSTER
			      "[watchdog]\nheartbeat_interval = 200ms\nelection_timeout_min = 900ms\n"
			      "election_timeout_max = 1500ms\nlease = 600ms\nstall_threshold = 400ms\n"
			      "[vip]\nfollow = primary\n"
			      "[health]\ntimeout = 1500ms\n"
			      "[failover]\nauto_failover = no\nfailure_quorum = 2\nmax_lag = 16MB\n"
			      "fence_command = /bin/fence %d\nstop_command = /bin/stop %D\n"
			      "fence_timeout = 3s\nverify_timeout = 20s\nretry_interval = 250ms\n"
			      "retry_max = 8s\nself_fence = yes\n"
			      "[peer.1]\naddress = 192.0.2.1\npriority = 5\n"
			      "[peer.2]\naddress = 192.0.2.2\npriority = 0\n"
			      "[peer.4]\naddress = 192.0.2.4\nwitness = yes\n"
			      "[peer.3]\naddress = 192.0.2.3\n"
			      "[backend.2]\nhost = 192.0.2.22\npeer = 2\npriority = 0\n"
			      "[backend.1]\nhost = 192.0.2.21\npeer = 1\npriority = 9\n"
			      "data_directory = /var/lib/postgresql/15/main\n"
			      "[backend.7]\nhost = 192.0.2.27\n",
			      &errs);
	struct fo_config fc;

	(void)s;
	for (size_t j = 0; j < errs.n; j++)
		print_message("  got: %s\n", errs.msgs[j]);
	assert_non_null(c);
	assert_string_equal(c->backends[0].data_directory, "/var/lib/postgresql/15/main");
	memset(&fc, 0xa5, sizeof(fc));
	conf_fo_config(c, 3, &fc);
	assert_int_equal(fc.self, 3);
	assert_int_equal(fc.npeers, 4);
	assert_int_equal(fc.peers[0], 1);
	assert_int_equal(fc.peers[1], 2);
	assert_int_equal(fc.peers[2], 3);
	assert_int_equal(fc.peers[3], 4);
	assert_true(fc.peer_eligible[0]);
	assert_false(fc.peer_eligible[1]);	/* priority 0 */
	assert_true(fc.peer_eligible[2]);
	assert_false(fc.peer_eligible[3]);	/* witness */
	assert_int_equal(fc.nbackends, 3);
	assert_int_equal(fc.backends[0].id, 1);
	assert_int_equal(fc.backends[0].priority, 9);
	assert_int_equal(fc.backends[0].peer, 1);
	assert_int_equal(fc.backends[1].id, 2);
	assert_int_equal(fc.backends[1].priority, 0);
	assert_int_equal(fc.backends[1].peer, 2);
	assert_int_equal(fc.backends[2].id, 7);
	assert_int_equal(fc.backends[2].priority, 1);
	assert_int_equal(fc.backends[2].peer, 0);
	assert_false(fc.auto_failover);
	assert_int_equal(fc.failure_quorum, 2);
	assert_int_equal(fc.max_lag, 16 * 1048576);
	assert_true(fc.has_fence_command);
	assert_true(fc.has_stop_command);
	assert_false(fc.has_follow_command);
	assert_int_equal(fc.vip_follow, FO_VIP_PRIMARY);
	assert_int_equal(fc.view_max_age_ms, 900);	/* election_timeout_min */
	assert_int_equal(fc.fence_timeout_ms, 3000);
	assert_int_equal(fc.verify_timeout_ms, 20000);
	assert_int_equal(fc.retry_ms, 250);
	assert_int_equal(fc.retry_max_ms, 8000);
	assert_int_equal(fc.settle_ms, 1500);
	conf_free(c);

	/* Defaults: the view age is election_timeout_min, larger than 3 heartbeats. */
	c = load(CLUSTER PEERS "[failover]\nfollow_primary_command = /bin/f %d %m\n", &errs);
	assert_non_null(c);
	conf_fo_config(c, 1, &fc);
	assert_int_equal(fc.view_max_age_ms, 700);
	assert_true(fc.auto_failover);
	assert_int_equal(fc.failure_quorum, 0);
	assert_int_equal(fc.max_lag, 1048576);
	assert_false(fc.has_fence_command);
	assert_false(fc.has_stop_command);
	assert_true(fc.has_follow_command);
	assert_int_equal(fc.vip_follow, FO_VIP_COORDINATOR);
	assert_int_equal(fc.nbackends, 0);
	assert_int_equal(fc.settle_ms, 2000);
	assert_true(fc.peer_eligible[0] && fc.peer_eligible[1] && fc.peer_eligible[2]);
	conf_free(c);

	/*
	 * Three heartbeats longer than election_timeout_min: the heartbeats
	 * win. A file cannot say so (the watchdog rules forbid it), so the
	 * struct is filled by hand.
	 */
	struct conf raw = { 0 };

	raw.wd.heartbeat_ms = 400;
	raw.wd.election_min_ms = 700;
	conf_fo_config(&raw, 1, &fc);
	assert_int_equal(fc.view_max_age_ms, 1200);
	assert_int_equal(fc.npeers, 0);
	assert_false(fc.has_fence_command);	/* NULL strings are empty */
}

/* --dump-config writes sizes so that they read back the same. */
static void
test_conf_dump_reads_back(void **s)
{
	struct conf_errors errs = { 0 };
	struct conf *c = load(CLUSTER PEERS "[failover]\nmax_lag = 1536kB\n"
			      "failover_command = /bin/p %m\nstop_command = /bin/s %D\n"
			      "[vip]\nfollow = primary\n"
			      "[backend.1]\nhost = 192.0.2.21\npeer = 2\n", &errs);
	char *buf = NULL;
	size_t len = 0;
	FILE *out;
	struct conf *c2;

	(void)s;
	assert_non_null(c);
	out = open_memstream(&buf, &len);
	assert_non_null(out);
	conf_dump(c, out);
	fclose(out);
	assert_non_null(strstr(buf, "\nmax_lag = 1536kB\n"));
	assert_non_null(strstr(buf, "\nfollow = primary\n"));
	assert_non_null(strstr(buf, "\nrecheck_interval = 50ms\n"));
	c2 = load(buf, &errs);
	for (size_t j = 0; j < errs.n; j++)
		print_message("  got: %s\n", errs.msgs[j]);
	assert_non_null(c2);
	assert_int_equal(c2->fo.max_lag, 1536 * 1024);
	assert_int_equal(c2->vip.follow, FO_VIP_PRIMARY);
	assert_int_equal(c2->backends[0].peer, 2);
	assert_string_equal(c2->fo.failover_command, "/bin/p %m");
	conf_free(c2);
	conf_free(c);
	free(buf);
}

/* The largest file: every section, 32 peers and 32 backends. */
static void
test_conf_largest_file_loads(void **s)
{
	size_t cap = 16384, n;
	char *text = malloc(cap);
	struct conf_errors errs = { 0 };
	struct conf *c;

	(void)s;
	assert_non_null(text);
	n = (size_t)snprintf(text, cap, CLUSTER "[hooks]\n[watchdog]\n[vip]\n[health]\n[failover]\n");
	for (int i = 1; i <= CONF_MAX_PEERS; i++)
		n += (size_t)snprintf(text + n, cap - n, "[peer.%d]\naddress = 192.0.2.%d\n", i, i);
	for (int i = 1; i <= CONF_MAX_BACKENDS; i++)
		n += (size_t)snprintf(text + n, cap - n, "[backend.%d]\nhost = 192.0.2.%d\npeer = %d\n",
				      i, 100 + i, i);
	assert_true(n < cap);
	c = load(text, &errs);
	for (size_t j = 0; j < errs.n; j++)
		print_message("  got: %s\n", errs.msgs[j]);
	assert_non_null(c);
	assert_int_equal(c->npeers, CONF_MAX_PEERS);
	assert_int_equal(c->nbackends, CONF_MAX_BACKENDS);
	assert_int_equal(c->health.interval_ms, 1000);
	assert_int_equal(c->fo.max_lag, 1048576);
	conf_free(c);
	free(text);
}

/*
 * A hook command line of a few hundred characters (the shipped scripts'
 * lines with site options) loads; libinih's default line buffer is 200
 * bytes and once cut such lines.
 */
static void
test_conf_long_lines_load(void **s)
{
	char text[8400], cmd[4200];
	struct conf_errors errs = { 0 };
	struct conf *c;
	size_t n;

	(void)s;
	n = (size_t)snprintf(cmd, sizeof(cmd), "/usr/local/libexec/pgvigil/pgvigil-follow");
	while (n < 3900)
		n += (size_t)snprintf(cmd + n, sizeof(cmd) - n, " --opt%zu %%d", n);
	snprintf(text, sizeof(text), CLUSTER PEERS "[failover]\nfollow_primary_command = %s\n", cmd);
	c = load(text, &errs);
	for (size_t j = 0; j < errs.n; j++)
		print_message("  got: %s\n", errs.msgs[j]);
	assert_non_null(c);
	assert_string_equal(c->fo.follow_primary_command, cmd);
	conf_free(c);
	/* Past the documented limit it is an error with the line number. */
	memset(cmd, 'x', 4100);
	cmd[4100] = '\0';
	snprintf(text, sizeof(text), CLUSTER PEERS "[hooks]\nnotify_command = %s\n", cmd);
	c = load(text, &errs);
	assert_null(c);
	assert_true(errs.n >= 1);
	assert_non_null(strstr(errs.msgs[0], "t.conf:12: line is too long"));
	conf_errors_clear(&errs);
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

	/* vip.follow waits for a restart; the failover settings do not. */
	cur = load(CLUSTER PEERS "[backend.1]\nhost = 192.0.2.21\npeer = 1\n", &errs);
	fresh = load(CLUSTER "[vip]\nfollow = primary\n[failover]\nmax_lag = 0\n"
		     "auto_failover = off\nfailover_command = /bin/p %m\n" PEERS
		     "[backend.1]\nhost = 192.0.2.21\npeer = 2\npriority = 3\n", &errs);
	assert_non_null(cur);
	assert_non_null(fresh);
	assert_int_equal(conf_keep_restart_only(cur, fresh, &changed), 1);
	assert_string_equal(changed.msgs[0], "vip.follow");
	assert_int_equal(fresh->vip.follow, FO_VIP_COORDINATOR);	/* kept */
	assert_int_equal(fresh->fo.max_lag, 0);
	assert_int_equal(fresh->fo.auto_failover, 0);
	assert_string_equal(fresh->fo.failover_command, "/bin/p %m");
	assert_int_equal(fresh->backends[0].peer, 2);
	assert_int_equal(fresh->backends[0].priority, 3);
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
		cmocka_unit_test(test_conf_sizes),
		cmocka_unit_test(test_conf_failover_bad_values_are_errors),
		cmocka_unit_test(test_conf_failover_cross_checks_are_errors),
		cmocka_unit_test(test_conf_failover_defaults),
		cmocka_unit_test(test_conf_failover_hooks_take_every_placeholder),
		cmocka_unit_test(test_conf_fo_config_maps_every_field),
		cmocka_unit_test(test_conf_dump_reads_back),
		cmocka_unit_test(test_conf_largest_file_loads),
		cmocka_unit_test(test_conf_long_lines_load),
		cmocka_unit_test(test_conf_reload_keeps_restart_only_settings),
		cmocka_unit_test(test_conf_missing_file_is_an_error),
	};

	log_open("test_conf", LOG_DEST_STDERR, LOG_LVL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
