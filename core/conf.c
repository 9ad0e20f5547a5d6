/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * conf.c - the settings table and the INI reader built on it.
 *
 * One table (conf_keys[] below) says, for every setting: section, name,
 * type, default (NULL = required), bounds, whether SIGHUP may change it, the
 * placeholders a command may use, where the value lives, and a one-line
 * doc. Parsing, defaults, validation, `pgvigil -t --dump-config`, reload policy and
 * tests/check-docs (which fails `make check` when a setting is missing from
 * the sample file or the man page) all read this table, so a setting cannot
 * exist in one place and not in another.
 *
 * The file is parsed with inih's ini_parse_stream through our own line
 * reader: Debian's libinih does not pass line numbers to the handler, and
 * the reader knows which line it just returned. The reader also checks the
 * syntax of every line itself so that every error is reported, not only
 * the first one inih would return. inih's multi-line values and inline
 * comments are switched off: with them an indented line silently joins the
 * previous value and "key = a ;b" silently loses ";b".
 *
 * Nothing here is kept on error: conf_load returns a complete, validated
 * configuration or NULL and the full list of errors.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <net/if.h>

#include "core/conf.h"
#include "core/log.h"
#include "failover/orch.h"
#include "hooks/hook.h"
#include "watchdog/elect.h"

#define CONF_MAX_LINE 4096

enum sect {
	SECT_CLUSTER,
	SECT_HOOKS,
	SECT_WATCHDOG,
	SECT_VIP,
	SECT_HEALTH,
	SECT_FAILOVER,
	SECT_PEER,
	SECT_BACKEND,
	SECT_API,
	SECT_COUNT,
};

static const char *const sect_names[SECT_COUNT] = {
	[SECT_CLUSTER] = "cluster",
	[SECT_HOOKS] = "hooks",
	[SECT_WATCHDOG] = "watchdog",
	[SECT_VIP] = "vip",
	[SECT_HEALTH] = "health",
	[SECT_FAILOVER] = "failover",
	[SECT_PEER] = "peer",
	[SECT_BACKEND] = "backend",
	[SECT_API] = "api",
};

/* Indexed sections are written [name.N]. */
static const bool sect_indexed[SECT_COUNT] = {
	[SECT_PEER] = true,
	[SECT_BACKEND] = true,
};

enum ktype {
	KT_STRING,	/* free text */
	KT_NAME,	/* [A-Za-z0-9_.-], 1..63 characters */
	KT_PATH,	/* absolute path */
	KT_OPT_PATH,	/* absolute path or empty */
	KT_ADDRESS,	/* IPv4 or IPv6 literal */
	KT_OPT_ADDRESS,	/* IPv4 or IPv6 literal, or empty */
	KT_INT,
	KT_BOOL,	/* yes/no, true/false, on/off, 1/0; stored as 0 or 1 */
	KT_DURATION,	/* milliseconds, written with a unit */
	KT_SIZE,	/* bytes, written with a unit (1024-based) */
	KT_ENUM,	/* one of choices, stored as its index */
	KT_COMMAND,	/* hook command line with %-placeholders */
};

struct conf_key {
	enum sect sect;
	const char *name;
	enum ktype type;
	const char *def;	/* NULL: required */
	int64_t min, max;	/* KT_INT, KT_DURATION and KT_SIZE bounds */
	bool reload;		/* SIGHUP may change it */
	const char *choices;	/* KT_ENUM: "a|b|c"; KT_COMMAND: codes */
	size_t off;		/* in struct conf, conf_peer or conf_backend */
	const char *doc;
};

#define C(f) offsetof(struct conf, f)
#define W(f) offsetof(struct conf, wd.f)
#define V(f) offsetof(struct conf, vip.f)
#define HL(f) offsetof(struct conf, health.f)
#define FO(f) offsetof(struct conf, fo.f)
#define P(f) offsetof(struct conf_peer, f)
#define B(f) offsetof(struct conf_backend, f)
#define A(f) offsetof(struct conf, api.f)
#define DAY_MS (24LL * 3600 * 1000)
#define TB (1LL << 40)

/* Placeholders the notify hook receives (see hooks/hook.h, doc/hooks.md). */
#define NOTIFY_CODES "eic"
/* Placeholders of the fence hook: target id and address, own id, term, cluster. */
#define FENCE_CODES "taiTc"
/* Placeholders of the VIP hooks: VIP, interface, own id, term. */
#define VIP_CODES "vIiT"
/*
 * Placeholders of every failover hook, pgpool-II's letters and meanings
 * (doc/hooks.md): the backend acted on (%d %h %p %D), the new primary
 * (%m %H %r %R), the old main and primary (%M %P %N %S), and pgvigil's own
 * term, peer id and cluster (%T %i %c).
 */
#define FAILOVER_CODES "dhpDmHMrRPNSTic"
/* primary_change_command: the new primary and the old one, no "node". */
#define PRIMARY_CHANGE_CODES "mHrRMPNSTic"

static const struct conf_key conf_keys[] = {
	{ SECT_CLUSTER, "name", KT_NAME, NULL, 0, 0, false, NULL, C(cluster_name),
	  "name of the cluster; peers of different clusters never talk" },
	{ SECT_CLUSTER, "state_dir", KT_PATH, PGVIGIL_LOCALSTATEDIR "/lib/pgvigil",
	  0, 0, false, NULL, C(state_dir),
	  "directory for the state file and lock; created 0700 if missing" },
	{ SECT_CLUSTER, "log_level", KT_ENUM, "info", 0, 0, true,
	  "error|warning|info|debug", C(log_level),
	  "least severe level written to the log" },
	{ SECT_CLUSTER, "log_destination", KT_ENUM, "stderr", 0, 0, true,
	  "stderr|syslog", C(log_destination),
	  "where log lines go: stderr (systemd journal) or syslog" },
	{ SECT_CLUSTER, "key_file", KT_PATH, NULL, 0, 0, false, NULL, C(key_file),
	  "secret shared by all peers (at least 32 bytes, mode 0600); every datagram is encrypted and authenticated with keys derived from it" },
	{ SECT_CLUSTER, "control_socket", KT_OPT_PATH, "", 0, 0, false, NULL,
	  C(control_socket),
	  "Unix socket pgvigilctl talks to; empty means state_dir/pgvigil.sock" },

	{ SECT_HOOKS, "notify_command", KT_COMMAND, "", 0, 0, true,
	  NOTIFY_CODES, C(notify_command),
	  "command run on daemon events (%e event, %i peer id, %c cluster)" },
	{ SECT_HOOKS, "on_vip_acquired", KT_COMMAND, "", 0, 0, true, VIP_CODES,
	  C(on_vip_acquired),
	  "command run after this peer added the VIP (%v VIP, %I interface, %i peer id, %T term)" },
	{ SECT_HOOKS, "on_vip_released", KT_COMMAND, "", 0, 0, true, VIP_CODES,
	  C(on_vip_released),
	  "command run after this peer removed the VIP (same placeholders)" },
	{ SECT_HOOKS, "hook_timeout", KT_DURATION, "30s", 100, DAY_MS, true,
	  NULL, C(hook_timeout_ms),
	  "a hook still running after this gets SIGTERM (whole process group)" },
	{ SECT_HOOKS, "hook_kill_grace", KT_DURATION, "5s", 10, 3600 * 1000, true,
	  NULL, C(hook_kill_grace_ms),
	  "time between SIGTERM and SIGKILL for a hook that timed out" },

	{ SECT_WATCHDOG, "heartbeat_interval", KT_DURATION, "100ms", 10, 10000,
	  false, NULL, W(heartbeat_ms),
	  "every peer sends a heartbeat to every other peer this often" },
	{ SECT_WATCHDOG, "election_timeout_min", KT_DURATION, "700ms", 30, 600000,
	  false, NULL, W(election_min_ms),
	  "silence from the coordinator after which a peer may stand (lower bound)" },
	{ SECT_WATCHDOG, "election_timeout_max", KT_DURATION, "1100ms", 40, 600000,
	  false, NULL, W(election_max_ms),
	  "upper bound of the randomized election timeout" },
	{ SECT_WATCHDOG, "lease", KT_DURATION, "500ms", 20, 600000, false, NULL,
	  W(lease_ms),
	  "coordinator lease, counted from the send time of the heartbeat a majority echoed" },
	{ SECT_WATCHDOG, "max_clock_drift", KT_INT, "2", 0, 20, false, NULL,
	  W(drift_pct),
	  "clock rate difference between peers, in percent, that the lease must survive" },
	{ SECT_WATCHDOG, "stall_threshold", KT_DURATION, "300ms", 20, 600000,
	  false, NULL, W(stall_ms),
	  "a loop that did not run for this long entered a stall (SIGSTOP, VM pause)" },
	{ SECT_WATCHDOG, "stall_hold", KT_DURATION, "2s", 0, 600000, false, NULL,
	  W(stall_hold_ms),
	  "after a stall the peer neither votes nor stands for this long" },
	{ SECT_WATCHDOG, "fence_command", KT_COMMAND, "", 0, 0, true, FENCE_CODES,
	  W(fence_command),
	  "two peers without a witness: command that fences the other peer (%t id, %a address, %i own id, %T term, %c cluster); exit 0 means fenced" },
	{ SECT_WATCHDOG, "fence_delay", KT_DURATION, "1s", 0, 600000, false, NULL,
	  W(fence_delay_ms),
	  "the peer that did not hold the coordinator role waits this long before fencing" },
	{ SECT_WATCHDOG, "fence_retry", KT_DURATION, "1s", 10, 30000, false, NULL,
	  W(fence_retry_ms),
	  "first retry delay after a failed fence; it doubles up to 30s" },

	{ SECT_VIP, "address", KT_OPT_ADDRESS, "", 0, 0, false, NULL, V(address),
	  "the virtual IP (IPv4 /32 or IPv6 /128) the coordinator holds; empty = none" },
	{ SECT_VIP, "interface", KT_STRING, "", 0, 0, false, NULL, V(interface),
	  "interface the VIP is added to; the same name on every peer" },
	{ SECT_VIP, "probe_timeout", KT_DURATION, "100ms", 0, 5000, true, NULL,
	  V(probe_timeout_ms),
	  "how long an ARP probe / neighbour solicitation waits for another holder before the VIP is added; 0 = no probe" },
	{ SECT_VIP, "announce_count", KT_INT, "4", 1, 16, true, NULL,
	  V(announce_count),
	  "gratuitous ARPs / unsolicited NAs sent after the VIP is added" },
	{ SECT_VIP, "announce_interval", KT_DURATION, "500ms", 10, 10000, true, NULL,
	  V(announce_interval_ms),
	  "gap after the first announcement; each next gap doubles (0, 0.5, 1.5, 3.5 s)" },
	{ SECT_VIP, "announce_refresh", KT_DURATION, "60s", 0, 3600000, true, NULL,
	  V(announce_refresh_ms),
	  "announce again this often while holding the VIP; 0 = never" },
	{ SECT_VIP, "arp_reply_form", KT_BOOL, "no", 0, 0, true, NULL,
	  V(arp_reply_form),
	  "also send the reply form of the gratuitous ARP (for hosts that ignore the request form)" },
	{ SECT_VIP, "follow", KT_ENUM, "coordinator", 0, 0, false,
	  "coordinator|primary", V(follow),
	  "where the VIP goes: with the coordinator, or (primary) the coordinator role follows the primary's peer" },

	{ SECT_HEALTH, "interval", KT_DURATION, "1s", 100, 3600000, true, NULL,
	  HL(interval_ms),
	  "every backend is checked this often (one query on a kept connection)" },
	{ SECT_HEALTH, "timeout", KT_DURATION, "2s", 100, 60000, true, NULL,
	  HL(timeout_ms),
	  "a check (connecting included) not done in this time has failed" },
	{ SECT_HEALTH, "recheck_interval", KT_DURATION, "50ms", 10, 60000, true, NULL,
	  HL(recheck_ms),
	  "after a failed check the next one comes this soon" },
	{ SECT_HEALTH, "failure_threshold", KT_INT, "3", 1, 100, true, NULL,
	  HL(failure_threshold),
	  "consecutive failed checks after which a backend is failed" },
	{ SECT_HEALTH, "write_probe", KT_BOOL, "yes", 0, 0, true, NULL,
	  HL(write_probe),
	  "on a primary each check also commits a tiny transaction (synchronous_commit = local); a probe that fails or times out fails the check" },

	{ SECT_FAILOVER, "auto_failover", KT_BOOL, "yes", 0, 0, true, NULL,
	  FO(auto_failover),
	  "the coordinator replaces a failed primary; no: failures are only reported" },
	{ SECT_FAILOVER, "failure_quorum", KT_INT, "0", 0, 32, true, NULL,
	  FO(failure_quorum),
	  "peers that must see the primary failed before a failover; 0 = a majority of the configured peers" },
	{ SECT_FAILOVER, "max_lag", KT_SIZE, "1MB", 0, TB, true, NULL,
	  FO(max_lag),
	  "a candidate further than this behind the old primary's last known WAL position is not promoted" },
	{ SECT_FAILOVER, "failover_command", KT_COMMAND, "", 0, 0, true,
	  FAILOVER_CODES, FO(failover_command),
	  "command that promotes the new primary %m; runs on the coordinator" },
	{ SECT_FAILOVER, "follow_primary_command", KT_COMMAND, "", 0, 0, true,
	  FAILOVER_CODES, FO(follow_primary_command),
	  "command that makes standby %d follow the new primary %m; one run per standby, on the coordinator" },
	{ SECT_FAILOVER, "fence_command", KT_COMMAND, "", 0, 0, true,
	  FAILOVER_CODES, FO(fence_command),
	  "command that fences (STONITH) the old primary backend %d; runs on the coordinator; exit 0 means fenced" },
	{ SECT_FAILOVER, "stop_command", KT_COMMAND, "", 0, 0, true,
	  FAILOVER_CODES, FO(stop_command),
	  "command that stops the local backend %d (cooperative fence); runs on the backend's peer; exit 0 means stopped" },
	{ SECT_FAILOVER, "rejoin_command", KT_COMMAND, "", 0, 0, true,
	  FAILOVER_CODES, FO(rejoin_command),
	  "command that makes the failed old primary %d a standby of the primary %m; run by pgvigilctl rejoin, on the coordinator" },
	{ SECT_FAILOVER, "primary_change_command", KT_COMMAND, "", 0, 0, true,
	  PRIMARY_CHANGE_CODES, FO(primary_change_command),
	  "command run on every peer when the cluster's primary changes (first known, or a verified new primary %m; %M the old one): repoints pgbouncer and the like" },
	{ SECT_FAILOVER, "fence_timeout", KT_DURATION, "5s", 100, 600000, true,
	  NULL, FO(fence_timeout_ms),
	  "how long the coordinator waits for the backend's peer to confirm a cooperative fence" },
	{ SECT_FAILOVER, "verify_timeout", KT_DURATION, "10s", 100, 3600000, true,
	  NULL, FO(verify_timeout_ms),
	  "the promoted candidate must be seen as a primary on a new timeline within this" },
	{ SECT_FAILOVER, "retry_interval", KT_DURATION, "1s", 10, 600000, true,
	  NULL, FO(retry_ms),
	  "first retry after a failed failover step; it doubles up to retry_max" },
	{ SECT_FAILOVER, "retry_max", KT_DURATION, "30s", 10, 3600000, true,
	  NULL, FO(retry_max_ms),
	  "longest delay between two retries of a failed failover step" },
	{ SECT_FAILOVER, "self_fence", KT_BOOL, "no", 0, 0, true, NULL,
	  FO(self_fence),
	  "a coordinator that loses its lease while its own backend is the primary runs stop_command on it" },
	{ SECT_FAILOVER, "watchdog_device", KT_OPT_PATH, "", 0, 0, false, NULL,
	  FO(watchdog_device),
	  "hardware watchdog (/dev/watchdog) the daemon feeds from its event loop, so that a hung daemon resets the host; empty = none" },
	{ SECT_FAILOVER, "watchdog_timeout", KT_DURATION, "10s", 1000, 3600000,
	  false, NULL, FO(watchdog_timeout_ms),
	  "timeout set on watchdog_device, in whole seconds: the host is reset when the daemon has not fed it for this long" },

	{ SECT_PEER, "address", KT_ADDRESS, NULL, 0, 0, false, NULL, P(address),
	  "IP address of the peer; pgvigil finds itself by this address" },
	{ SECT_PEER, "port", KT_INT, "5480", 1, 65535, false, NULL, P(port),
	  "UDP port of the peer's watchdog socket" },
	{ SECT_PEER, "priority", KT_INT, "1", 0, 255, false, NULL, P(priority),
	  "higher stands for coordinator first; 0 never becomes coordinator" },
	{ SECT_PEER, "witness", KT_BOOL, "no", 0, 0, false, NULL, P(witness),
	  "a witness votes but never becomes coordinator nor holds the VIP" },

	{ SECT_BACKEND, "host", KT_ADDRESS, NULL, 0, 0, true, NULL, B(host),
	  "IP address of the PostgreSQL server (libpq hostaddr, no DNS)" },
	{ SECT_BACKEND, "port", KT_INT, "5432", 1, 65535, true, NULL, B(port),
	  "PostgreSQL port" },
	{ SECT_BACKEND, "dbname", KT_STRING, "postgres", 0, 0, true, NULL,
	  B(dbname), "database pgvigil connects to" },
	{ SECT_BACKEND, "user", KT_STRING, "pgvigil", 0, 0, true, NULL, B(user),
	  "role pgvigil connects as (password from ~/.pgpass or PGPASSFILE)" },
	{ SECT_BACKEND, "connect_timeout", KT_DURATION, "2s", 100, 60000, true,
	  NULL, B(connect_timeout_ms),
	  "deadline for connecting to the server" },
	{ SECT_BACKEND, "priority", KT_INT, "1", 0, 255, true, NULL, B(priority),
	  "among equally advanced standbys the higher is promoted first; 0 is never promoted" },
	{ SECT_BACKEND, "peer", KT_INT, "0", 0, CONF_MAX_ID, true, NULL, B(peer),
	  "id of the [peer.N] that runs on the backend's host (it runs stop_command); 0 = none" },
	{ SECT_BACKEND, "data_directory", KT_OPT_PATH, "", 0, 0, true, NULL,
	  B(data_directory),
	  "the server's data directory, for the hooks (%D, %R); empty = not given" },

	{ SECT_API, "listen", KT_STRING, "", 0, 0, false, NULL, A(listen),
	  "address:port ([IPv6]:port) of the HTTP API (health endpoints, /cluster, /metrics); empty = no API" },
	{ SECT_API, "token", KT_STRING, "", 0, 0, true, NULL, A(token),
	  "bearer token that authorizes the mutating endpoints (POST); empty = none" },
	{ SECT_API, "token_file", KT_OPT_PATH, "", 0, 0, true, NULL, A(token_file),
	  "file holding the bearer token (not readable by others), instead of token" },
	{ SECT_API, "tls_cert", KT_OPT_PATH, "", 0, 0, false, NULL, A(tls_cert),
	  "PEM certificate (chain) of the API; set with tls_key, the API speaks HTTPS only" },
	{ SECT_API, "tls_key", KT_OPT_PATH, "", 0, 0, false, NULL, A(tls_key),
	  "PEM private key of tls_cert" },
	{ SECT_API, "tls_ca", KT_OPT_PATH, "", 0, 0, false, NULL, A(tls_ca),
	  "PEM CA: a client certificate it verifies also authorizes the mutating endpoints; needs tls_cert" },
};

#define NKEYS (sizeof(conf_keys) / sizeof(conf_keys[0]))

/* ---- errors ------------------------------------------------------------ */

static void LOG_PRINTF(2, 3)
errs_add(struct conf_errors *e, const char *fmt, ...)
{
	va_list ap;
	char *s;

	if (e->n == e->cap) {
		size_t cap = e->cap ? e->cap * 2 : 8;
		char **m = realloc(e->msgs, cap * sizeof(*m));

		if (!m)
			return;
		e->msgs = m;
		e->cap = cap;
	}
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	if (s)
		e->msgs[e->n++] = s;
}

void
conf_errors_clear(struct conf_errors *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->msgs[i]);
	free(e->msgs);
	memset(e, 0, sizeof(*e));
}

/* ---- parse state ------------------------------------------------------- */

/* One section instance as read: raw values and the lines they came from. */
struct inst {
	enum sect sect;
	int64_t id;		/* 0 for [cluster] and [hooks] */
	int line;		/* header line; 0 if the section is absent */
	char *raw[NKEYS];	/* owned */
	int vline[NKEYS];
};

/* Every unindexed section once, and the most [peer.N] and [backend.N]. */
#define MAX_INSTS (SECT_COUNT + CONF_MAX_PEERS + CONF_MAX_BACKENDS)

struct parse {
	const char *name;	/* borrowed: file name for messages */
	FILE *f;		/* borrowed */
	int line;
	char *buf;		/* owned: getline buffer */
	size_t bufcap;
	struct conf_errors *errs;	/* borrowed */
	struct inst insts[MAX_INSTS];
	size_t ninsts;
	int cur;		/* index into insts, -1: none, -2: bad section */
	size_t errs_before;	/* errs->n when this load began */
};

#define PERR(p, ln, fmt, ...) \
	errs_add((p)->errs, "%s:%d: " fmt, (p)->name, (ln), ##__VA_ARGS__)

static char *
trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* "peer.12" -> SECT_PEER, 12. Returns -1 with a message for a bad name. */
static int
parse_section_name(const char *name, enum sect *sect, int64_t *id,
		   char *msg, size_t msglen)
{
	for (int s = 0; s < SECT_COUNT; s++) {
		size_t n = strlen(sect_names[s]);

		if (strncmp(name, sect_names[s], n) != 0)
			continue;
		if (!sect_indexed[s]) {
			if (name[n] != '\0')
				continue;
			*sect = (enum sect)s;
			*id = 0;
			return 0;
		}
		if (name[n] == '\0') {
			snprintf(msg, msglen,
				 "section [%s] needs an id: write [%s.N] with N from 1 to %d",
				 name, name, CONF_MAX_ID);
			return -1;
		}
		if (name[n] != '.')
			continue;
		const char *d = name + n + 1;
		char *end;
		long v;

		errno = 0;
		v = strtol(d, &end, 10);
		if (!isdigit((unsigned char)*d) || *end != '\0' || errno ||
		    v < 1 || v > CONF_MAX_ID || (*d == '0')) {
			snprintf(msg, msglen,
				 "invalid section [%s]: the id must be a number from 1 to %d",
				 name, CONF_MAX_ID);
			return -1;
		}
		*sect = (enum sect)s;
		*id = v;
		return 0;
	}
	char known[160] = "";

	for (int s = 0; s < SECT_COUNT; s++) {
		size_t n = strlen(known);

		snprintf(known + n, sizeof(known) - n, "%s[%s%s]", s ? ", " : "",
			 sect_names[s], sect_indexed[s] ? ".N" : "");
	}
	snprintf(msg, msglen, "unknown section [%s] (known: %s)", name, known);
	return -1;
}

static int
find_inst(struct parse *p, enum sect s, int64_t id)
{
	for (size_t i = 0; i < p->ninsts; i++)
		if (p->insts[i].sect == s && p->insts[i].id == id)
			return (int)i;
	return -1;
}

static size_t
count_insts(const struct parse *p, enum sect s)
{
	size_t n = 0;

	for (size_t i = 0; i < p->ninsts; i++)
		n += p->insts[i].sect == s;
	return n;
}

static void
section_header(struct parse *p, char *line)
{
	char *close = strchr(line, ']');
	char msg[160];
	enum sect s;
	int64_t id;
	int idx;

	p->cur = -2;
	if (!close || trim(close + 1)[0] != '\0') {
		PERR(p, p->line, "syntax error: a section header is written [name]");
		return;
	}
	*close = '\0';
	char *name = trim(line + 1);

	if (parse_section_name(name, &s, &id, msg, sizeof(msg)) < 0) {
		PERR(p, p->line, "%s", msg);
		return;
	}
	idx = find_inst(p, s, id);
	if (idx >= 0) {
		PERR(p, p->line, "section [%s] appears twice (first at line %d)", name, p->insts[idx].line);
		return;
	}
	if ((s == SECT_PEER && count_insts(p, s) >= CONF_MAX_PEERS) ||
	    (s == SECT_BACKEND && count_insts(p, s) >= CONF_MAX_BACKENDS) ||
	    p->ninsts >= MAX_INSTS) {
		PERR(p, p->line, "too many [%s.N] sections (at most %d)", sect_names[s],
		     s == SECT_PEER ? CONF_MAX_PEERS : CONF_MAX_BACKENDS);
		return;
	}
	struct inst *in = &p->insts[p->ninsts];

	memset(in, 0, sizeof(*in));
	in->sect = s;
	in->id = id;
	in->line = p->line;
	p->cur = (int)p->ninsts++;
}

/*
 * The reader inih pulls lines from. It counts lines, checks each line's
 * shape, and hands inih a blank line in place of a bad one so that an error
 * is reported once, by us, with its line number.
 */
static char *
conf_reader(char *str, int num, void *stream)
{
	struct parse *p = stream;
	ssize_t n = getline(&p->buf, &p->bufcap, p->f);

	if (n < 0)
		return NULL;
	p->line++;
	while (n > 0 && (p->buf[n - 1] == '\n' || p->buf[n - 1] == '\r'))
		p->buf[--n] = '\0';
	/* Room for the newline and the terminator inih expects. */
	if (n > CONF_MAX_LINE || n + 2 > num) {
		PERR(p, p->line, "line is too long (at most %d characters)", CONF_MAX_LINE);
		goto blank;
	}
	if (memchr(p->buf, '\0', (size_t)n)) {
		PERR(p, p->line, "line contains a NUL byte");
		goto blank;
	}
	char *t = p->buf;

	while (isspace((unsigned char)*t))
		t++;
	if (*t == '\0' || *t == ';' || *t == '#') {
		goto blank;
	} else if (*t == '[') {
		char copy[CONF_MAX_LINE + 1];

		snprintf(copy, sizeof(copy), "%s", t);
		section_header(p, copy);
		/* inih tracks sections too; a bad one must not confuse it. */
		if (p->cur < 0)
			goto blank;
	} else {
		char *eq = strchr(t, '=');
		char *colon = strchr(t, ':');

		if (!eq || (colon && colon < eq)) {
			PERR(p, p->line,
			     "syntax error: expected \"name = value\" or \"[section]\"");
			goto blank;
		}
		if (eq == t) {
			PERR(p, p->line, "syntax error: setting name missing before \"=\"");
			goto blank;
		}
	}
	snprintf(str, (size_t)num, "%s\n", p->buf);
	return str;
blank:
	snprintf(str, (size_t)num, "\n");
	return str;
}

static int
conf_handler(void *user, const char *section, const char *name,
	     const char *value)
{
	struct parse *p = user;
	struct inst *in;

	(void)section;		/* the reader tracks sections with ids */
	if (p->cur == -2)
		return 1;	/* the bad section header was reported */
	if (p->cur < 0) {
		PERR(p, p->line, "setting \"%s\" is outside any section", name);
		return 1;
	}
	in = &p->insts[p->cur];
	for (size_t k = 0; k < NKEYS; k++) {
		if (conf_keys[k].sect != in->sect ||
		    strcmp(conf_keys[k].name, name) != 0)
			continue;
		if (in->raw[k]) {
			PERR(p, p->line, "setting \"%s\" appears twice (first at line %d)", name, in->vline[k]);
			return 1;
		}
		in->raw[k] = strdup(value);
		in->vline[k] = p->line;
		return 1;
	}
	if (sect_indexed[in->sect])
		PERR(p, p->line, "unknown setting \"%s\" in section [%s.%" PRId64 "]",
		     name, sect_names[in->sect], in->id);
	else
		PERR(p, p->line, "unknown setting \"%s\" in section [%s]", name,
		     sect_names[in->sect]);
	return 1;
}

/* ---- values ------------------------------------------------------------ */

int
conf_parse_duration(const char *s, int64_t *ms)
{
	static const struct {
		const char *unit;
		int64_t mult;
	} units[] = { { "", 1 }, { "ms", 1 }, { "s", 1000 },
		      { "min", 60000 }, { "h", 3600000 } };
	char *end;
	long long v;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno)
		return -1;
	while (*end == ' ')
		end++;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].unit) == 0) {
			if (v > INT64_MAX / units[i].mult)
				return -1;
			*ms = v * units[i].mult;
			return 0;
		}
	}
	return -1;
}

/*
 * PostgreSQL's memory units, case and all, so that a value copied from
 * postgresql.conf means the same here.
 */
static const struct {
	const char *unit;
	int64_t mult;
} size_units[] = { { "TB", 1LL << 40 }, { "GB", 1LL << 30 },
		   { "MB", 1LL << 20 }, { "kB", 1LL << 10 }, { "B", 1 },
		   { "", 1 } };

int
conf_parse_size(const char *s, int64_t *bytes)
{
	char *end;
	long long v;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno)
		return -1;
	while (*end == ' ')
		end++;
	for (size_t i = 0; i < sizeof(size_units) / sizeof(size_units[0]); i++) {
		if (strcmp(end, size_units[i].unit) == 0) {
			if (v > INT64_MAX / size_units[i].mult)
				return -1;
			*bytes = v * size_units[i].mult;
			return 0;
		}
	}
	return -1;
}

static void *
field(void *base, const struct conf_key *k)
{
	return (char *)base + k->off;
}

static const void *
cfield(const void *base, const struct conf_key *k)
{
	return (const char *)base + k->off;
}

static void
format_duration(int64_t ms, char *buf, size_t len)
{
	if (ms != 0 && ms % 3600000 == 0)
		snprintf(buf, len, "%" PRId64 "h", ms / 3600000);
	else if (ms != 0 && ms % 60000 == 0)
		snprintf(buf, len, "%" PRId64 "min", ms / 60000);
	else if (ms != 0 && ms % 1000 == 0)
		snprintf(buf, len, "%" PRId64 "s", ms / 1000);
	else
		snprintf(buf, len, "%" PRId64 "ms", ms);
}

/* A size in the largest unit that writes it exactly: 1MB, 1536kB, 0B. */
static void
format_size(int64_t b, char *buf, size_t len)
{
	for (size_t i = 0; i < sizeof(size_units) / sizeof(size_units[0]); i++) {
		int64_t m = size_units[i].mult;

		if ((b != 0 && b % m == 0) || m == 1) {
			snprintf(buf, len, "%" PRId64 "%s", b / m, m == 1 ? "B" : size_units[i].unit);
			return;
		}
	}
}

/* The nth choice of "a|b|c" into buf. */
static void
enum_name(const char *choices, int64_t idx, char *buf, size_t len)
{
	const char *s = choices;

	for (int64_t i = 0; i < idx && s; i++) {
		s = strchr(s, '|');
		if (s)
			s++;
	}
	if (!s) {
		snprintf(buf, len, "?");
		return;
	}
	size_t n = strcspn(s, "|");

	snprintf(buf, len, "%.*s", (int)n, s);
}

static int
enum_index(const char *choices, const char *v)
{
	const char *s = choices;

	for (int i = 0; s; i++) {
		size_t n = strcspn(s, "|");

		if (strlen(v) == n && strncasecmp(s, v, n) == 0)
			return i;
		s = strchr(s, '|');
		if (s)
			s++;
	}
	return -1;
}

/* Formats a setting's value as it would be written in the file. */
static void
format_value(const void *base, const struct conf_key *k, char *buf,
	     size_t len)
{
	switch (k->type) {
	case KT_INT:
		snprintf(buf, len, "%" PRId64, *(const int64_t *)cfield(base, k));
		break;
	case KT_DURATION:
		format_duration(*(const int64_t *)cfield(base, k), buf, len);
		break;
	case KT_SIZE:
		format_size(*(const int64_t *)cfield(base, k), buf, len);
		break;
	case KT_ENUM:
		enum_name(k->choices, *(const int64_t *)cfield(base, k), buf, len);
		break;
	case KT_BOOL:
		snprintf(buf, len, "%s", *(const int64_t *)cfield(base, k) ? "yes" : "no");
		break;
	default: {
		const char *s = *(char *const *)cfield(base, k);

		snprintf(buf, len, "%s", s ? s : "");
		break;
	}
	}
}

static bool
valid_name(const char *v)
{
	size_t n = strlen(v);

	if (n == 0 || n > 63)
		return false;
	for (const char *c = v; *c; c++)
		if (!isalnum((unsigned char)*c) && !strchr("_.-", *c))
			return false;
	return true;
}

/*
 * Converts raw into the field of base. Returns 0, or -1 with a message
 * (without file:line) in msg.
 */
static int
set_value(void *base, const struct conf_key *k, const char *raw, char *msg,
	  size_t msglen)
{
	char tmp[160];

	switch (k->type) {
	case KT_INT: {
		char *end;
		long long v;

		errno = 0;
		v = strtoll(raw, &end, 10);
		if (*raw == '\0' || *end != '\0' || errno) {
			snprintf(msg, msglen, "invalid value \"%s\" for \"%s\": expected an integer",
				 raw, k->name);
			return -1;
		}
		if (v < k->min || v > k->max) {
			snprintf(msg, msglen,
				 "value %lld for \"%s\" is out of range (%" PRId64 " to %" PRId64 ")",
				 v, k->name, k->min, k->max);
			return -1;
		}
		*(int64_t *)field(base, k) = v;
		return 0;
	}
	case KT_DURATION: {
		int64_t ms;
		char lo[32], hi[32];

		if (conf_parse_duration(raw, &ms) < 0) {
			snprintf(msg, msglen,
				 "invalid value \"%s\" for \"%s\": expected a duration such as 500ms, 2s or 1min",
				 raw, k->name);
			return -1;
		}
		if (ms < k->min || ms > k->max) {
			format_duration(k->min, lo, sizeof(lo));
			format_duration(k->max, hi, sizeof(hi));
			snprintf(msg, msglen,
				 "value %s for \"%s\" is out of range (%s to %s)",
				 raw, k->name, lo, hi);
			return -1;
		}
		*(int64_t *)field(base, k) = ms;
		return 0;
	}
	case KT_SIZE: {
		int64_t b;
		char lo[32], hi[32];

		if (conf_parse_size(raw, &b) < 0) {
			snprintf(msg, msglen,
				 "invalid value \"%s\" for \"%s\": expected a size such as 512kB, 16MB or 1GB (units B, kB, MB, GB, TB)",
				 raw, k->name);
			return -1;
		}
		if (b < k->min || b > k->max) {
			format_size(k->min, lo, sizeof(lo));
			format_size(k->max, hi, sizeof(hi));
			snprintf(msg, msglen,
				 "value %s for \"%s\" is out of range (%s to %s)",
				 raw, k->name, lo, hi);
			return -1;
		}
		*(int64_t *)field(base, k) = b;
		return 0;
	}
	case KT_BOOL: {
		int i = enum_index("no|yes|false|true|off|on|0|1", raw);

		if (i < 0) {
			snprintf(msg, msglen, "invalid value \"%s\" for \"%s\": expected yes or no",
				 raw, k->name);
			return -1;
		}
		*(int64_t *)field(base, k) = i % 2;
		return 0;
	}
	case KT_ENUM: {
		int i = enum_index(k->choices, raw);

		if (i < 0) {
			snprintf(msg, msglen, "invalid value \"%s\" for \"%s\": expected one of %s",
				 raw, k->name, k->choices);
			return -1;
		}
		*(int64_t *)field(base, k) = i;
		return 0;
	}
	case KT_NAME:
		if (!valid_name(raw)) {
			snprintf(msg, msglen,
				 "invalid value \"%s\" for \"%s\": use 1 to 63 letters, digits, \"_\", \".\" or \"-\"",
				 raw, k->name);
			return -1;
		}
		break;
	case KT_PATH:
	case KT_OPT_PATH:
		if (!(k->type == KT_OPT_PATH && *raw == '\0') && raw[0] != '/') {
			snprintf(msg, msglen, "invalid value \"%s\" for \"%s\": expected an absolute path",
				 raw, k->name);
			return -1;
		}
		break;
	case KT_ADDRESS:
	case KT_OPT_ADDRESS: {
		unsigned char a[16];

		if (k->type == KT_OPT_ADDRESS && *raw == '\0')
			break;
		if (inet_pton(AF_INET, raw, a) != 1 &&
		    inet_pton(AF_INET6, raw, a) != 1) {
			snprintf(msg, msglen,
				 "invalid value \"%s\" for \"%s\": expected an IPv4 or IPv6 address (host names are not resolved)",
				 raw, k->name);
			return -1;
		}
		break;
	}
	case KT_COMMAND:
		if (hook_check_template(raw, k->choices, tmp, sizeof(tmp)) < 0) {
			snprintf(msg, msglen, "invalid value for \"%s\": %s", k->name, tmp);
			return -1;
		}
		break;
	case KT_STRING:
		break;
	}
	char *dup = strdup(raw);

	if (!dup) {
		snprintf(msg, msglen, "out of memory");
		return -1;
	}
	free(*(char **)field(base, k));
	*(char **)field(base, k) = dup;
	return 0;
}

static bool
is_string_type(enum ktype t)
{
	return t != KT_INT && t != KT_DURATION && t != KT_SIZE && t != KT_ENUM &&
	       t != KT_BOOL;
}

/* ---- load -------------------------------------------------------------- */

static void *
inst_base(struct conf *c, const struct inst *in)
{
	switch (in->sect) {
	case SECT_PEER:
		return &c->peers[c->npeers];
	case SECT_BACKEND:
		return &c->backends[c->nbackends];
	default:
		return c;
	}
}

/* Fills the fields of one section instance from raw values and defaults. */
static void
apply_inst(struct parse *p, struct conf *c, const struct inst *in)
{
	void *base = inst_base(c, in);
	char msg[512];

	if (in->sect == SECT_PEER) {
		c->peers[c->npeers].id = in->id;
		c->peers[c->npeers].line = in->line;
	} else if (in->sect == SECT_BACKEND) {
		c->backends[c->nbackends].id = in->id;
		c->backends[c->nbackends].line = in->line;
	}
	for (size_t k = 0; k < NKEYS; k++) {
		const struct conf_key *key = &conf_keys[k];
		const char *raw = in->raw[k];
		int line = in->vline[k];

		if (key->sect != in->sect)
			continue;
		if (!raw) {
			raw = key->def;
			line = in->line;
		}
		if (!raw) {
			char sname[32];

			if (sect_indexed[in->sect])
				snprintf(sname, sizeof(sname), "%s.%" PRId64,
					 sect_names[in->sect], in->id);
			else
				snprintf(sname, sizeof(sname), "%s", sect_names[in->sect]);
			if (in->line > 0)
				PERR(p, in->line, "section [%s] lacks the required setting \"%s\"", sname, key->name);
			else
				errs_add(p->errs, "%s: section [%s] with the required setting \"%s\" is missing",
					 p->name, sname, key->name);
			continue;
		}
		if (set_value(base, key, raw, msg, sizeof(msg)) < 0)
			PERR(p, line, "%s", msg);
	}
	if (in->sect == SECT_PEER)
		c->npeers++;
	else if (in->sect == SECT_BACKEND)
		c->nbackends++;
}

static int
cmp_peer(const void *a, const void *b)
{
	const struct conf_peer *x = a, *y = b;

	return (x->id > y->id) - (x->id < y->id);
}

static int
cmp_backend(const void *a, const void *b)
{
	const struct conf_backend *x = a, *y = b;

	return (x->id > y->id) - (x->id < y->id);
}

/* Line of setting key (by name) in the instance, or its header line. */
static int
key_line(const struct parse *p, enum sect s, int64_t id, const char *name)
{
	for (size_t i = 0; i < p->ninsts; i++) {
		const struct inst *in = &p->insts[i];

		if (in->sect != s || in->id != id)
			continue;
		for (size_t k = 0; k < NKEYS; k++)
			if (conf_keys[k].sect == s &&
			    strcmp(conf_keys[k].name, name) == 0 && in->vline[k])
				return in->vline[k];
		return in->line;
	}
	return 0;
}

/* Canonical form of an address, so 2001:db8::1 equals 2001:DB8:0::1. */
static void
canon_addr(const char *in, char *out, size_t len)
{
	unsigned char a[16];

	if (inet_pton(AF_INET, in, a) == 1)
		inet_ntop(AF_INET, a, out, (socklen_t)len);
	else if (inet_pton(AF_INET6, in, a) == 1)
		inet_ntop(AF_INET6, a, out, (socklen_t)len);
	else
		snprintf(out, len, "%s", in);
}

static void
peer_sockaddr(struct conf_peer *pe)
{
	memset(&pe->sa, 0, sizeof(pe->sa));
	if (!pe->address)
		return;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&pe->sa;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&pe->sa;

	if (inet_pton(AF_INET, pe->address, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)pe->port);
		pe->salen = sizeof(*s4);
	} else if (inet_pton(AF_INET6, pe->address, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)pe->port);
		pe->salen = sizeof(*s6);
	}
}

void
conf_wd_config(const struct conf *c, int64_t self, struct wd_config *out)
{
	size_t witnesses = 0;

	memset(out, 0, sizeof(*out));
	out->self = (uint8_t)self;
	out->npeers = c->npeers < WD_MAX_PEERS ? c->npeers : WD_MAX_PEERS;
	for (size_t i = 0; i < out->npeers; i++) {
		out->peers[i].id = (uint8_t)c->peers[i].id;
		out->peers[i].priority = (uint8_t)c->peers[i].priority;
		out->peers[i].witness = c->peers[i].witness != 0;
		witnesses += c->peers[i].witness != 0;
	}
	out->heartbeat_ms = (uint32_t)c->wd.heartbeat_ms;
	out->election_min_ms = (uint32_t)c->wd.election_min_ms;
	out->election_max_ms = (uint32_t)c->wd.election_max_ms;
	out->lease_ms = (uint32_t)c->wd.lease_ms;
	out->tilt_ms = (uint32_t)c->wd.stall_ms;
	out->tilt_hold_ms = (uint32_t)c->wd.stall_hold_ms;
	out->two_node = c->npeers == 2 && witnesses == 0 && c->wd.fence_command &&
			c->wd.fence_command[0] != '\0';
	out->fence_delay_ms = (uint32_t)c->wd.fence_delay_ms;
	out->fence_retry_ms = (uint32_t)c->wd.fence_retry_ms;
}

static bool
nonempty(const char *s)
{
	return s && s[0] != '\0';
}

/* [vip] follow is stored as its index in "coordinator|primary". */
_Static_assert(FO_VIP_COORDINATOR == 0 && FO_VIP_PRIMARY == 1,
	       "[vip] follow choices must be in enum fo_vip_follow order");

void
conf_fo_config(const struct conf *c, int64_t self, struct fo_config *out)
{
	uint32_t age;

	memset(out, 0, sizeof(*out));
	out->self = (uint8_t)self;
	out->npeers = c->npeers < FO_MAX_PEERS ? c->npeers : FO_MAX_PEERS;
	for (size_t i = 0; i < out->npeers; i++) {
		out->peers[i] = (uint8_t)c->peers[i].id;
		out->peer_eligible[i] = !c->peers[i].witness && c->peers[i].priority > 0;
	}
	out->nbackends = c->nbackends < FO_MAX_BACKENDS ? c->nbackends : FO_MAX_BACKENDS;
	for (size_t i = 0; i < out->nbackends; i++) {
		out->backends[i].id = (uint8_t)c->backends[i].id;
		out->backends[i].priority = (uint8_t)c->backends[i].priority;
		out->backends[i].peer = (uint8_t)c->backends[i].peer;
	}
	out->auto_failover = c->fo.auto_failover != 0;
	out->failure_quorum = (unsigned)c->fo.failure_quorum;
	out->max_lag = (uint64_t)c->fo.max_lag;
	out->has_fence_command = nonempty(c->fo.fence_command);
	out->has_stop_command = nonempty(c->fo.stop_command);
	out->has_follow_command = nonempty(c->fo.follow_primary_command);
	out->has_rejoin_command = nonempty(c->fo.rejoin_command);
	out->vip_follow = c->vip.follow ? FO_VIP_PRIMARY : FO_VIP_COORDINATOR;
	/*
	 * A peer's view is fresh while its heartbeats could still be on their
	 * way: three lost in a row, or as long as a follower waits before it
	 * suspects the coordinator, whichever is longer.
	 */
	age = (uint32_t)(3 * c->wd.heartbeat_ms);
	if (age < (uint32_t)c->wd.election_min_ms)
		age = (uint32_t)c->wd.election_min_ms;
	out->view_max_age_ms = age;
	out->fence_timeout_ms = (uint32_t)c->fo.fence_timeout_ms;
	out->verify_timeout_ms = (uint32_t)c->fo.verify_timeout_ms;
	out->retry_ms = (uint32_t)c->fo.retry_ms;
	out->retry_max_ms = (uint32_t)c->fo.retry_max_ms;
	/* After a fence every standby gets one full check before selection. */
	out->settle_ms = (uint32_t)c->health.timeout_ms;
}

void
conf_hook_spec(const struct conf *c, const char *name, const char *command,
	       const struct hook_var *vars, size_t nvars, struct hook_spec *out)
{
	memset(out, 0, sizeof(*out));
	out->name = name;
	out->command = command;
	out->vars = vars;
	out->nvars = nvars;
	out->timeout_ms = (uint64_t)c->hook_timeout_ms;
	out->kill_grace_ms = (uint64_t)c->hook_kill_grace_ms;
}

void
conf_control_socket(const struct conf *c, char *buf, size_t len)
{
	if (c->control_socket && c->control_socket[0])
		snprintf(buf, len, "%s", c->control_socket);
	else
		snprintf(buf, len, "%s/pgvigil.sock", c->state_dir);
}

/* Line where key was set in an unindexed section, 0 if it was not. */
static int
set_line(const struct parse *p, enum sect s, const char *name)
{
	for (size_t i = 0; i < p->ninsts; i++) {
		const struct inst *in = &p->insts[i];

		if (in->sect != s)
			continue;
		for (size_t k = 0; k < NKEYS; k++)
			if (conf_keys[k].sect == s && strcmp(conf_keys[k].name, name) == 0)
				return in->vline[k];
	}
	return 0;
}

/*
 * The line a watchdog error is best reported at: the first setting it
 * names that the file sets, else the [watchdog] header, else 0.
 */
static int
watchdog_line(const struct parse *p, const char *msg)
{
	static const char *const keys[] = { "heartbeat_interval", "lease",
		"election_timeout_max", "election_timeout_min", "stall_threshold" };

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strstr(msg, keys[i]) && set_line(p, SECT_WATCHDOG, keys[i]))
			return set_line(p, SECT_WATCHDOG, keys[i]);
	return key_line(p, SECT_WATCHDOG, 0, "lease");
}

/*
 * Failover settings that depend on the peers and backends: each backend's
 * peer must be a configured, non-witness peer; the failure quorum cannot
 * exceed the peers; the VIP can follow the primary only to a peer that
 * runs a backend.
 */
static void
validate_failover(struct parse *p, const struct conf *c)
{
	size_t with_peer = 0;
	char ids[CONF_MAX_PEERS * 5 + 1] = "";

	for (size_t i = 0; i < c->npeers; i++) {
		size_t n = strlen(ids);

		snprintf(ids + n, sizeof(ids) - n, "%s%" PRId64, i ? ", " : "",
			 c->peers[i].id);
	}
	for (size_t i = 0; i < c->nbackends; i++) {
		const struct conf_backend *b = &c->backends[i];
		const struct conf_peer *pe;
		int line = key_line(p, SECT_BACKEND, b->id, "peer");

		if (b->peer == 0)
			continue;
		pe = conf_peer_by_id(c, b->peer);
		if (!pe)
			PERR(p, line,
			     "[backend.%" PRId64 "] names peer %" PRId64 ", which is not configured: set peer to the id of the [peer.N] on the backend's host (configured: %s), or 0 for none",
			     b->id, b->peer, ids);
		else if (pe->witness)
			PERR(p, line,
			     "[backend.%" PRId64 "] names peer %" PRId64 ", a witness: a witness runs no backend; set peer to the id of the [peer.N] on the backend's host, or 0 for none",
			     b->id, b->peer);
		else
			with_peer++;
	}
	if (c->npeers > 0 && c->fo.failure_quorum > (int64_t)c->npeers)
		PERR(p, key_line(p, SECT_FAILOVER, 0, "failure_quorum"),
		     "failure_quorum (%" PRId64 ") is more than the %zu configured peers: no failover could ever start; use at most %zu, or 0 for a majority",
		     c->fo.failure_quorum, c->npeers, c->npeers);
	if (c->fo.retry_max_ms < c->fo.retry_ms) {
		char lo[32], hi[32];
		int line = set_line(p, SECT_FAILOVER, "retry_max");

		if (!line)
			line = key_line(p, SECT_FAILOVER, 0, "retry_interval");
		format_duration(c->fo.retry_ms, lo, sizeof(lo));
		format_duration(c->fo.retry_max_ms, hi, sizeof(hi));
		PERR(p, line, "retry_max (%s) is shorter than retry_interval (%s)", hi, lo);
	}
	/*
	 * A promotion needs the old primary fenced first (S2, S6): with a
	 * failover_command but no way to fence, every failover would block
	 * forever. Say what to add instead of running a cluster that cannot
	 * do what it was configured to do.
	 */
	if (c->fo.auto_failover && nonempty(c->fo.failover_command) &&
	    !nonempty(c->fo.stop_command) && !nonempty(c->fo.fence_command))
		PERR(p, key_line(p, SECT_FAILOVER, 0, "failover_command"),
		     "failover_command is set but neither stop_command nor fence_command: a primary is promoted over only once it is fenced, so no failover could ever happen; add stop_command (the primary's own peer stops it) or fence_command (STONITH), or set auto_failover = no");
	if (c->fo.self_fence && !nonempty(c->fo.stop_command))
		PERR(p, key_line(p, SECT_FAILOVER, 0, "self_fence"),
		     "self_fence = yes needs a stop_command: it is the command a coordinator runs to stop its own backend");
	/*
	 * Watchdog drivers count in seconds. A loop that paused for less than
	 * stall_threshold is not even a stall to the daemon: it must never
	 * cost the host a reset.
	 */
	if (c->fo.watchdog_timeout_ms % 1000 != 0)
		PERR(p, key_line(p, SECT_FAILOVER, 0, "watchdog_timeout"),
		     "watchdog_timeout (%" PRId64 "ms) is not a whole number of seconds: a watchdog driver counts in seconds",
		     c->fo.watchdog_timeout_ms);
	else if (nonempty(c->fo.watchdog_device) &&
		 c->fo.watchdog_timeout_ms <= c->wd.stall_ms) {
		char wt[32], st[32];

		format_duration(c->fo.watchdog_timeout_ms, wt, sizeof(wt));
		format_duration(c->wd.stall_ms, st, sizeof(st));
		PERR(p, key_line(p, SECT_FAILOVER, 0, "watchdog_timeout"),
		     "watchdog_timeout (%s) must be longer than stall_threshold (%s): a pause the daemon survives must not reset the host; keep it well above",
		     wt, st);
	}
	if (c->vip.follow == FO_VIP_PRIMARY && with_peer == 0)
		PERR(p, key_line(p, SECT_VIP, 0, "follow"),
		     "follow = primary needs a [backend.N] with its peer set: the coordinator role follows the primary to the peer on its host");
}

/* [api]: the listen address parses; the TLS and token settings go together. */
static void
validate_api(struct parse *p, const struct conf *c)
{
	const struct conf_api *a = &c->api;
	struct sockaddr_storage sa;
	socklen_t salen;

	if (nonempty(a->listen) && conf_parse_listen(a->listen, &sa, &salen) < 0)
		PERR(p, key_line(p, SECT_API, 0, "listen"),
		     "invalid value \"%s\" for \"listen\": expected address:port such as 192.0.2.1:8008 or [2001:db8::1]:8008 (host names are not resolved)",
		     a->listen);
	if (nonempty(a->token) && nonempty(a->token_file))
		PERR(p, key_line(p, SECT_API, 0, "token_file"),
		     "token and token_file are both set: use one of them");
	if (nonempty(a->tls_cert) != nonempty(a->tls_key))
		PERR(p, key_line(p, SECT_API, 0, nonempty(a->tls_cert) ? "tls_cert" : "tls_key"),
		     "tls_cert and tls_key go together: set both for HTTPS, or neither");
	if (nonempty(a->tls_ca) && !nonempty(a->tls_cert))
		PERR(p, key_line(p, SECT_API, 0, "tls_ca"),
		     "tls_ca needs tls_cert and tls_key: client certificates are only asked for over HTTPS");
}

/* Checks that need more than one setting. */
static void
validate(struct parse *p, struct conf *c)
{
	char a1[INET6_ADDRSTRLEN], a2[INET6_ADDRSTRLEN];

	if (c->npeers == 0)
		errs_add(p->errs,
			 "%s: no [peer.N] section: list every pgvigil peer, this one included",
			 p->name);
	for (size_t i = 0; i < c->npeers; i++) {
		peer_sockaddr(&c->peers[i]);
		for (size_t j = 0; j < i; j++) {
			const struct conf_peer *x = &c->peers[j], *y = &c->peers[i];

			if (!x->address || !y->address)
				continue;
			canon_addr(x->address, a1, sizeof(a1));
			canon_addr(y->address, a2, sizeof(a2));
			if (strcmp(a1, a2) == 0 && x->port == y->port)
				PERR(p, key_line(p, SECT_PEER, y->id, "address"),
				     "[peer.%" PRId64 "] has the same address and port as [peer.%" PRId64 "] (%s port %" PRId64 ")",
				     y->id, x->id, a2, y->port);
		}
	}
	for (size_t i = 0; i < c->nbackends; i++) {
		for (size_t j = 0; j < i; j++) {
			const struct conf_backend *x = &c->backends[j];
			const struct conf_backend *y = &c->backends[i];

			if (!x->host || !y->host)
				continue;
			canon_addr(x->host, a1, sizeof(a1));
			canon_addr(y->host, a2, sizeof(a2));
			if (strcmp(a1, a2) == 0 && x->port == y->port)
				PERR(p, key_line(p, SECT_BACKEND, y->id, "host"),
				     "[backend.%" PRId64 "] has the same host and port as [backend.%" PRId64 "] (%s port %" PRId64 ")",
				     y->id, x->id, a2, y->port);
		}
	}
	if (c->vip.address && c->vip.address[0]) {
		int line = key_line(p, SECT_VIP, 0, "address");
		size_t ifn = c->vip.interface ? strlen(c->vip.interface) : 0;

		if (ifn == 0)
			PERR(p, line, "[vip] address is set but interface is not: name the interface the VIP is added to");
		else if (ifn >= IFNAMSIZ)
			PERR(p, key_line(p, SECT_VIP, 0, "interface"),
			     "interface name \"%s\" is longer than %d characters", c->vip.interface,
			     IFNAMSIZ - 1);
		else if (strchr(c->vip.address, '.') && ifn > IFNAMSIZ - 1 - 4)
			PERR(p, key_line(p, SECT_VIP, 0, "interface"),
			     "interface name \"%s\" leaves no room for the label \"%s:vip\" (at most %d characters)",
			     c->vip.interface, c->vip.interface, IFNAMSIZ - 1);
		for (size_t i = 0; i < c->npeers; i++) {
			canon_addr(c->vip.address, a1, sizeof(a1));
			canon_addr(c->peers[i].address ? c->peers[i].address : "", a2, sizeof(a2));
			if (strcmp(a1, a2) == 0)
				PERR(p, line, "the VIP %s is the address of [peer.%" PRId64 "]: a VIP must be an address of its own",
				     a1, c->peers[i].id);
		}
	}
	char sock[512];
	struct sockaddr_un sun;

	conf_control_socket(c, sock, sizeof(sock));
	if (strlen(sock) >= sizeof(sun.sun_path)) {
		int line = c->control_socket && c->control_socket[0]
			   ? key_line(p, SECT_CLUSTER, 0, "control_socket")
			   : key_line(p, SECT_CLUSTER, 0, "state_dir");

		PERR(p, line, "control socket path \"%s\" is longer than %zu bytes, the limit of a Unix socket; set control_socket to a shorter path",
		     sock, sizeof(sun.sun_path) - 1);
	}
	/* The election's own checks only make sense on an otherwise valid file. */
	if (p->errs->n == p->errs_before && c->npeers >= 1 &&
	    c->npeers <= WD_MAX_PEERS) {
		struct wd_config wc;
		char msg[512];

		conf_wd_config(c, c->peers[0].id, &wc);
		if (wd_check_config(&wc, (unsigned)c->wd.drift_pct, msg, sizeof(msg)) < 0) {
			int line = strstr(msg, "witness") || strstr(msg, "peers") ||
				   strstr(msg, "priority")
				   ? c->peers[c->npeers - 1].line
				   : watchdog_line(p, msg);

			if (line > 0)
				PERR(p, line, "%s", msg);
			else
				errs_add(p->errs, "%s: %s", p->name, msg);
		}
	}
	validate_failover(p, c);
	validate_api(p, c);
}

/* Line number of a "file:line: message" entry; 0 when it has none. */
static long
error_line(const char *msg, size_t namelen)
{
	if (strlen(msg) <= namelen || msg[namelen] != ':')
		return 0;
	return strtol(msg + namelen + 1, NULL, 10);
}

/*
 * Errors are found in several passes (syntax, values, cross-checks); an
 * operator reads them best in file order. Insertion sort: stable, so two
 * errors on one line keep the order they were found in, and lists are short.
 */
static void
sort_errors(struct conf_errors *errs, size_t from, size_t namelen)
{
	for (size_t i = from + 1; i < errs->n; i++) {
		char *m = errs->msgs[i];
		long l = error_line(m, namelen);
		size_t j = i;

		while (j > from && error_line(errs->msgs[j - 1], namelen) > l) {
			errs->msgs[j] = errs->msgs[j - 1];
			j--;
		}
		errs->msgs[j] = m;
	}
}

struct conf *
conf_load_stream(FILE *f, const char *name, struct conf_errors *errs)
{
	struct parse *p = calloc(1, sizeof(*p));
	struct conf *c = calloc(1, sizeof(*c));
	size_t before = errs->n;
	int rc;

	if (!p || !c) {
		errs_add(errs, "%s: out of memory", name);
		free(p);
		free(c);
		return NULL;
	}
	p->name = name;
	p->f = f;
	p->errs = errs;
	p->cur = -1;
	p->errs_before = errs->n;

	/*
	 * Debian's libinih exposes its build options as variables: values are
	 * single lines, ";" is data, and a line may be as long as we allow.
	 */
	ini_allow_multiline = false;
	ini_allow_inline_comments = false;
	ini_stop_on_first_error = false;
	ini_use_stack = false;
	ini_max_line = CONF_MAX_LINE + 3;
	/* The heap buffer is this big from the start (realloc stays off). */
	ini_initial_alloc = CONF_MAX_LINE + 3;

	rc = ini_parse_stream(conf_reader, p, conf_handler, p);
	if (rc == -2)
		errs_add(errs, "%s: out of memory", name);
	else if (rc != 0 && errs->n == before)
		errs_add(errs, "%s:%d: syntax error", name, rc);
	if (ferror(f))
		errs_add(errs, "%s: could not read file: %s", name, strerror(errno));

	/* [cluster] and [hooks] get their defaults even when absent. */
	for (int s = 0; s < SECT_COUNT; s++) {
		if (sect_indexed[s] || find_inst(p, (enum sect)s, 0) >= 0)
			continue;
		if (p->ninsts < MAX_INSTS) {
			memset(&p->insts[p->ninsts], 0, sizeof(p->insts[0]));
			p->insts[p->ninsts++].sect = (enum sect)s;
		}
	}
	c->path = strdup(name);
	for (size_t i = 0; i < p->ninsts; i++)
		apply_inst(p, c, &p->insts[i]);
	qsort(c->peers, c->npeers, sizeof(c->peers[0]), cmp_peer);
	qsort(c->backends, c->nbackends, sizeof(c->backends[0]), cmp_backend);
	validate(p, c);
	sort_errors(errs, before, strlen(name));

	for (size_t i = 0; i < p->ninsts; i++)
		for (size_t k = 0; k < NKEYS; k++)
			free(p->insts[i].raw[k]);
	free(p->buf);
	free(p);
	if (errs->n != before || !c->path) {
		conf_free(c);
		return NULL;
	}
	return c;
}

struct conf *
conf_load(const char *path, struct conf_errors *errs)
{
	FILE *f = fopen(path, "re");
	struct conf *c;

	if (!f) {
		errs_add(errs, "%s: could not open configuration file: %s", path,
			 strerror(errno));
		return NULL;
	}
	c = conf_load_stream(f, path, errs);
	fclose(f);
	return c;
}

static void
free_fields(void *base, enum sect s)
{
	for (size_t k = 0; k < NKEYS; k++) {
		if (conf_keys[k].sect != s || !is_string_type(conf_keys[k].type))
			continue;
		free(*(char **)field(base, &conf_keys[k]));
		*(char **)field(base, &conf_keys[k]) = NULL;
	}
}

void
conf_free(struct conf *c)
{
	if (!c)
		return;
	for (int s = 0; s < SECT_COUNT; s++)
		if (!sect_indexed[s])
			free_fields(c, (enum sect)s);
	for (size_t i = 0; i < c->npeers; i++)
		free_fields(&c->peers[i], SECT_PEER);
	for (size_t i = 0; i < c->nbackends; i++)
		free_fields(&c->backends[i], SECT_BACKEND);
	free(c->path);
	free(c);
}

/* ---- reload ------------------------------------------------------------ */

/* Copies one setting from src to dst (a deep copy for strings). */
static void
copy_value(void *dst, const void *src, const struct conf_key *k)
{
	if (is_string_type(k->type)) {
		const char *s = *(char *const *)cfield(src, k);

		free(*(char **)field(dst, k));
		*(char **)field(dst, k) = s ? strdup(s) : NULL;
	} else {
		*(int64_t *)field(dst, k) = *(const int64_t *)cfield(src, k);
	}
}

static bool
same_value(const void *a, const void *b, const struct conf_key *k)
{
	char va[CONF_MAX_LINE + 1], vb[CONF_MAX_LINE + 1];

	format_value(a, k, va, sizeof(va));
	format_value(b, k, vb, sizeof(vb));
	return strcmp(va, vb) == 0;
}

size_t
conf_keep_restart_only(const struct conf *cur, struct conf *fresh,
		       struct conf_errors *changed)
{
	size_t before = changed->n;
	bool same_peers = cur->npeers == fresh->npeers;

	for (size_t i = 0; same_peers && i < cur->npeers; i++)
		same_peers = cur->peers[i].id == fresh->peers[i].id;

	for (size_t k = 0; k < NKEYS; k++) {
		const struct conf_key *key = &conf_keys[k];

		if (key->reload)
			continue;
		if (!sect_indexed[key->sect]) {
			if (!same_value(cur, fresh, key)) {
				copy_value(fresh, cur, key);
				errs_add(changed, "%s.%s", sect_names[key->sect], key->name);
			}
		} else if (key->sect == SECT_PEER && same_peers) {
			for (size_t i = 0; i < cur->npeers; i++) {
				if (same_value(&cur->peers[i], &fresh->peers[i], key))
					continue;
				copy_value(&fresh->peers[i], &cur->peers[i], key);
				errs_add(changed, "peer.%" PRId64 ".%s",
					 cur->peers[i].id, key->name);
			}
		}
	}
	if (!same_peers) {
		/* The peer list is the cluster's membership: restart only. */
		for (size_t i = 0; i < fresh->npeers; i++)
			free_fields(&fresh->peers[i], SECT_PEER);
		for (size_t i = 0; i < cur->npeers; i++) {
			fresh->peers[i] = cur->peers[i];
			fresh->peers[i].address = NULL;
			for (size_t k = 0; k < NKEYS; k++)
				if (conf_keys[k].sect == SECT_PEER &&
				    is_string_type(conf_keys[k].type))
					copy_value(&fresh->peers[i], &cur->peers[i],
						   &conf_keys[k]);
		}
		fresh->npeers = cur->npeers;
		errs_add(changed, "peers");
	}
	for (size_t i = 0; i < fresh->npeers; i++)
		peer_sockaddr(&fresh->peers[i]);
	return changed->n - before;
}

/* ---- output ------------------------------------------------------------ */

static void
dump_section(FILE *out, const void *base, enum sect s, int64_t id)
{
	char v[CONF_MAX_LINE + 1];

	if (sect_indexed[s])
		fprintf(out, "[%s.%" PRId64 "]\n", sect_names[s], id);
	else
		fprintf(out, "[%s]\n", sect_names[s]);
	for (size_t k = 0; k < NKEYS; k++) {
		if (conf_keys[k].sect != s)
			continue;
		format_value(base, &conf_keys[k], v, sizeof(v));
		fprintf(out, "%s = %s\n", conf_keys[k].name, v);
	}
	fputc('\n', out);
}

void
conf_dump(const struct conf *c, FILE *out)
{
	fprintf(out, "# %s\n", c->path);
	for (int s = 0; s < SECT_COUNT; s++)
		if (!sect_indexed[s])
			dump_section(out, c, (enum sect)s, 0);
	for (size_t i = 0; i < c->npeers; i++)
		dump_section(out, &c->peers[i], SECT_PEER, c->peers[i].id);
	for (size_t i = 0; i < c->nbackends; i++)
		dump_section(out, &c->backends[i], SECT_BACKEND,
			     c->backends[i].id);
}

void
conf_list_settings(FILE *out)
{
	for (size_t k = 0; k < NKEYS; k++)
		fprintf(out, "%s%s %s\n", sect_names[conf_keys[k].sect],
			sect_indexed[conf_keys[k].sect] ? ".N" : "",
			conf_keys[k].name);
}

const struct conf_peer *
conf_peer_by_id(const struct conf *c, int64_t id)
{
	for (size_t i = 0; i < c->npeers; i++)
		if (c->peers[i].id == id)
			return &c->peers[i];
	return NULL;
}

int
conf_parse_listen(const char *s, struct sockaddr_storage *sa, socklen_t *salen)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *port;
	size_t n;
	char *end;
	long v;

	memset(sa, 0, sizeof(*sa));
	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (!close || close[1] != ':')
			return -1;
		n = (size_t)(close - s - 1);
		port = close + 2;
		if (n == 0 || n >= sizeof(host))
			return -1;
		memcpy(host, s + 1, n);
	} else {
		const char *colon = strrchr(s, ':');

		if (!colon || strchr(s, ':') != colon)
			return -1;
		n = (size_t)(colon - s);
		port = colon + 1;
		if (n == 0 || n >= sizeof(host))
			return -1;
		memcpy(host, s, n);
	}
	host[n] = '\0';
	if (!isdigit((unsigned char)port[0]))
		return -1;
	errno = 0;
	v = strtol(port, &end, 10);
	if (*end != '\0' || errno || v < 1 || v > 65535)
		return -1;
	if (s[0] != '[') {
		struct sockaddr_in *s4 = (struct sockaddr_in *)sa;

		if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
			return -1;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)v);
		*salen = sizeof(*s4);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;

		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
			return -1;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)v);
		*salen = sizeof(*s6);
	}
	return 0;
}
