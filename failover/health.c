/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * health.c - health checks of the PostgreSQL backends, on the event loop.
 *
 * Every backend runs one small state machine:
 *
 *   IDLE --tick--> CONNECTING --PQconnectPoll OK--> QUERYING --standby--> IDLE
 *     \--tick, connection still open------------------^    \
 *                                                primary: PROBING --> IDLE
 *
 * A check is one tick: it starts a deadline timer (timeout_ms) and ends in
 * check_ok() or check_fail(), which disarm it, arm the next tick
 * (interval_ms after a success, recheck_ms after a failure, at once when
 * health_check_now() asked during the check) and then tell the listener. A
 * failure always PQfinish()es the connection, so the next check starts from
 * a clean connect; a success keeps it open, so a steady check costs one
 * status query (plus the write probe on a primary) and no connect (and no
 * allocation of ours). The sample a check gathers is published only by
 * check_ok(): a failed check leaves the role, timeline and LSNs of the last
 * successful one in place.
 *
 * Only the non-blocking libpq API is used: PQconnectStartParams with
 * hostaddr= (no name lookup), PQconnectPoll driven by the fd readiness it
 * asks for, PQsendQuery + PQflush, PQconsumeInput + PQisBusy + PQgetResult.
 * PQconnectPoll ignores connect_timeout, so our deadline timer is the one
 * that counts. libpq may close and reopen its socket between polls (a
 * second address, SSL refused then plain), so the fd is compared after
 * every poll and re-registered when it changed - even when the number is
 * the same, since epoll forgot the old file when libpq closed it.
 *
 * While idle with an open connection the socket stays registered for
 * reading, so a server that goes away (shutdown, crash) is noticed at once
 * and checked again immediately rather than at the next interval.
 *
 * The status query is one statement and one round trip; see HEALTH_QUERY
 * for where the timeline comes from, WRITE_PROBE for what the probe proves.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#include <libpq-fe.h>

#include "core/clock.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/loop.h"
#include "ctl/json.h"
#include "failover/health.h"

/*
 * The status query. pg_is_in_recovery() is read once, in FROM, so every
 * column agrees on the role even when a promotion lands during the query
 * (pg_current_wal_lsn() and pg_walfile_name() raise an error in recovery).
 * Columns: 0 in recovery, 1 standby timeline, 2 primary's WAL file name,
 * 3 primary LSN, 4 standby receive LSN, 5 standby replay LSN (a promoted
 * primary still answers the last two: null there, as a standby's 3 is),
 * 6 system identifier, 7 standby replay lag in seconds.
 *
 * The timeline of a primary is the first 8 hex digits of its current WAL
 * file's name, which is the timeline it writes on: right from the first
 * check after a promotion, where pg_control_checkpoint() would lag until
 * the first checkpoint on the new timeline. A standby's is the WAL
 * receiver's received_tli (the timeline it streams, so it moves when the
 * standby follows a promoted primary), else - no receiver running, or a
 * role not allowed to see it - the last restartpoint's.
 *
 * The replay lag of a standby is 0 while it has replayed all it received,
 * else the age of the last transaction it replayed: the usual measure, and
 * cheap (two function calls), but only an upper bound when the primary
 * was idle for a while before the WAL still to replay. It is for people
 * (status); no decision uses it.
 */
#define HEALTH_QUERY							\
	"SELECT r,"							\
	" CASE WHEN r THEN coalesce("					\
	"(SELECT received_tli FROM pg_stat_wal_receiver),"		\
	" (SELECT timeline_id FROM pg_control_checkpoint())) END,"	\
	" pg_walfile_name(w), w,"					\
	" CASE WHEN r THEN pg_last_wal_receive_lsn() END,"		\
	" CASE WHEN r THEN pg_last_wal_replay_lsn() END,"		\
	" (SELECT system_identifier FROM pg_control_system()),"	\
	" CASE WHEN r THEN CASE WHEN pg_last_wal_receive_lsn() ="	\
	" pg_last_wal_replay_lsn() THEN 0 ELSE extract(epoch FROM"	\
	" now() - pg_last_xact_replay_timestamp()) END END,"		\
	" CASE WHEN NOT r THEN (SELECT count(*) FROM pg_replication_slots"	\
	" WHERE slot_type = 'logical') END"				\
	" FROM pg_is_in_recovery() AS r,"				\
	" LATERAL (SELECT CASE WHEN r THEN NULL"			\
	" ELSE pg_current_wal_lsn() END AS w) AS cur"
#define HEALTH_COLUMNS 9

/*
 * The write probe, sent in the same check once the status query has found
 * a primary (so a standby never gets it, even on the first check after it
 * changed role). It must make COMMIT wait until the transaction's WAL is
 * flushed to the primary's own disk: a primary whose storage hangs or fails
 * still answers the status query, but not that.
 *
 * A transaction whose only WAL record is its commit record commits
 * asynchronously whatever synchronous_commit says (PostgreSQL's
 * RecordTransactionCommit() flushes only when the transaction wrote WAL
 * before committing), so "SELECT txid_current(); COMMIT" returns without
 * any flush and passes on a frozen disk. A transactional logical message
 * takes an xid and writes a WAL record of its own, so its COMMIT flushes.
 * It needs no table and no privilege beyond the default; logical decoding
 * consumers see an empty message with prefix "pgvigil" and skip it as they
 * skip every prefix they do not know.
 *
 * synchronous_commit = local waits for exactly that local flush. Not the
 * default (on): with synchronous_standby_names set the commit would also
 * wait for a synchronous standby, and a standby going away would fail the
 * healthy primary. Not off: that does not wait for the flush at all.
 * SET LOCAL keeps the setting inside this transaction. One round trip (a
 * multi-statement simple query); per check and peer it costs one xid, one
 * WAL flush and about a hundred bytes of WAL.
 */
#define WRITE_PROBE							\
	"BEGIN; SET LOCAL synchronous_commit TO local;"			\
	" SELECT pg_logical_emit_message(true, 'pgvigil', ''); COMMIT"

enum phase {
	PH_IDLE = 0,		/* no check running; conn open or NULL */
	PH_CONNECTING,		/* PQconnectPoll in progress */
	PH_QUERYING,		/* status query sent, results pending */
	PH_PROBING,		/* write probe sent, results pending */
};

/* What the check found, kept apart until the check succeeds. */
struct sample {
	bool have_row;
	enum health_role role;
	uint32_t timeline;
	uint64_t lsn, receive_lsn, replay_lsn, system_id;
	int64_t replay_lag_ms;	/* -1 = unknown */
	int32_t logical_slots;	/* primary: its logical replication slots; -1 = unknown */
	/* the write probe */
	bool probed;		/* it was sent */
	bool probe_row;		/* pg_logical_emit_message() returned its LSN */
	bool probe_commit;	/* COMMIT said COMMIT */
	uint64_t probe_sent_us;
	uint32_t probe_us;	/* round trip, when it succeeded */
	char error[256];	/* an error result, "" when none */
};

struct hb {
	struct health_backend pub;
	struct health *h;		/* borrowed: the owner */
	char *host;			/* owned */
	char *dbname;			/* owned */
	char *user;			/* owned */
	int64_t port;
	int64_t connect_timeout_ms;
	enum phase phase;
	PGconn *conn;			/* owned; NULL when closed */
	int fd;				/* registered with the loop, or -1 */
	uint32_t fd_events;
	bool flushing;			/* the query is not all sent yet */
	struct loop_timer *tick;	/* owned: next check */
	struct loop_timer *deadline;	/* owned: end of the running check */
	uint64_t started;		/* when the running check began */
	bool again;			/* health_check_now() during this check */
	struct sample s;
};

struct health {
	struct loop *loop;		/* borrowed */
	struct hb *b[CONF_MAX_BACKENDS];	/* owned; sorted by id like conf */
	size_t n;
	int64_t interval_ms, timeout_ms, failure_threshold, recheck_ms;
	bool write_probe;
	health_listener listener;	/* NULL: none */
	void *listener_arg;		/* borrowed */
	health_listener observer;	/* NULL: none (the API's metrics) */
	void *observer_arg;		/* borrowed */
};

static void on_fd(struct loop *loop, int fd, uint32_t events, void *arg);

const char *
health_state_name(enum health_state s)
{
	switch (s) {
	case HEALTH_UNKNOWN:
		return "unknown";
	case HEALTH_UP:
		return "up";
	case HEALTH_SUSPECT:
		return "suspect";
	case HEALTH_FAILED:
		return "failed";
	}
	return "?";
}

const char *
health_role_name(enum health_role r)
{
	switch (r) {
	case HEALTH_ROLE_UNKNOWN:
		return "unknown";
	case HEALTH_ROLE_PRIMARY:
		return "primary";
	case HEALTH_ROLE_STANDBY:
		return "standby";
	}
	return "?";
}

/*
 * Parses PostgreSQL's pg_lsn text "X/Y" (two hex numbers of at most 8
 * digits) into (X << 32) | Y. Returns 0, or -1 on anything else.
 */
static int
parse_lsn(const char *s, uint64_t *out)
{
	uint64_t part[2] = { 0, 0 };
	int i, digits;

	for (i = 0; i < 2; i++) {
		digits = 0;
		for (;; s++) {
			int c = (unsigned char)*s, v;

			if (c >= '0' && c <= '9')
				v = c - '0';
			else if (c >= 'a' && c <= 'f')
				v = c - 'a' + 10;
			else if (c >= 'A' && c <= 'F')
				v = c - 'A' + 10;
			else
				break;
			if (++digits > 8)
				return -1;
			part[i] = part[i] << 4 | (uint64_t)v;
		}
		if (digits == 0)
			return -1;
		if (i == 0 && *s++ != '/')
			return -1;
	}
	if (*s != '\0')
		return -1;
	*out = part[0] << 32 | part[1];
	return 0;
}

/*
 * The timeline in a WAL file name (24 hex digits: timeline, log, segment).
 * Returns 0, or -1 when name is not one or the timeline is 0.
 */
static int
parse_walfile_timeline(const char *name, uint32_t *out)
{
	uint32_t tli = 0;
	int i;

	for (i = 0; i < 24; i++) {
		int c = (unsigned char)name[i], v;

		if (c >= '0' && c <= '9')
			v = c - '0';
		else if (c >= 'A' && c <= 'F')
			v = c - 'A' + 10;
		else if (c >= 'a' && c <= 'f')
			v = c - 'a' + 10;
		else
			return -1;
		if (i < 8)
			tli = tli << 4 | (uint32_t)v;
	}
	if (name[24] != '\0' || tli == 0)
		return -1;
	*out = tli;
	return 0;
}

/* A positive decimal int4 (a standby's timeline). Returns 0, or -1. */
static int
parse_timeline(const char *s, uint32_t *out)
{
	uint64_t v = 0;

	if (*s == '\0')
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > UINT32_MAX)
			return -1;
	}
	if (v == 0)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

/* Milliseconds shown for a write probe of us microseconds: rounded up, at least 1. */
static uint32_t
probe_ms(uint32_t us)
{
	uint32_t ms = us / 1000 + (us % 1000 != 0);

	return ms ? ms : 1;
}

/*
 * Microseconds on CLOCK_BOOTTIME. Only to measure the write probe, which
 * often takes less than a millisecond; nothing is decided on it.
 */
static uint64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Copies the first line of msg, trimmed, into buf. */
static void
set_error(char *buf, size_t len, const char *msg)
{
	size_t n;

	if (!msg)
		msg = "";
	while (*msg == ' ' || *msg == '\t' || *msg == '\n' || *msg == '\r')
		msg++;
	n = strcspn(msg, "\r\n");
	while (n > 0 && (msg[n - 1] == ' ' || msg[n - 1] == '\t'))
		n--;
	if (n == 0) {
		msg = "unknown error";
		n = strlen(msg);
	}
	if (n >= len)
		n = len - 1;
	memcpy(buf, msg, n);
	buf[n] = '\0';
}

/*
 * Test-only entry points to the pure helpers above, for
 * tests/unit/test_health.c (which links against this file's object, so it
 * cannot include it). Not in health.h: nothing else calls them.
 */
int health_test_parse_lsn(const char *s, uint64_t *out);
void health_test_set_error(char *buf, size_t len, const char *msg);
int health_test_parse_walfile_timeline(const char *name, uint32_t *out);
int health_test_parse_timeline(const char *s, uint32_t *out);
uint32_t health_test_probe_ms(uint32_t us);
const char *health_test_query(void);
const char *health_test_write_probe(void);

int
health_test_parse_walfile_timeline(const char *name, uint32_t *out)
{
	return parse_walfile_timeline(name, out);
}

int
health_test_parse_timeline(const char *s, uint32_t *out)
{
	return parse_timeline(s, out);
}

uint32_t
health_test_probe_ms(uint32_t us)
{
	return probe_ms(us);
}

const char *
health_test_query(void)
{
	return HEALTH_QUERY;
}

const char *
health_test_write_probe(void)
{
	return WRITE_PROBE;
}

int
health_test_parse_lsn(const char *s, uint64_t *out)
{
	return parse_lsn(s, out);
}

void
health_test_set_error(char *buf, size_t len, const char *msg)
{
	set_error(buf, len, msg);
}

/* ---- the connection's fd -------------------------------------------- */

static void
unwatch(struct hb *b)
{
	if (b->fd >= 0)
		loop_del_fd(b->h->loop, b->fd);
	b->fd = -1;
	b->fd_events = 0;
}

/*
 * Watches libpq's current socket for events. Returns 0, or -1 when the
 * loop refused it.
 */
static int
watch(struct hb *b, uint32_t events)
{
	int fd = PQsocket(b->conn);

	if (fd < 0)
		return -1;
	if (fd == b->fd) {
		if (events == b->fd_events)
			return 0;
		if (loop_mod_fd(b->h->loop, fd, events) == 0) {
			b->fd_events = events;
			return 0;
		}
		/* same number, new socket: epoll dropped the old one */
	}
	unwatch(b);
	if (loop_add_fd(b->h->loop, fd, events, on_fd, b) < 0)
		return -1;
	b->fd = fd;
	b->fd_events = events;
	return 0;
}

static void
close_conn(struct hb *b)
{
	unwatch(b);
	if (b->conn)
		PQfinish(b->conn);
	b->conn = NULL;
	b->flushing = false;
}

/* ---- check results -------------------------------------------------- */

/* Arms the next check delay_ms from now, or at once when one was asked for. */
static void
next_check(struct hb *b, int64_t delay_ms)
{
	loop_timer_in(b->tick, b->again ? 0 : (uint64_t)delay_ms);
	b->again = false;
}

static void
tell(struct hb *b)
{
	struct health *h = b->h;

	if (h->observer)
		h->observer(h->observer_arg, &b->pub);
	if (h->listener)
		h->listener(h->listener_arg, &b->pub);
}

/*
 * The check failed: everything the last successful check found stays as it
 * was. A failure during the write probe says so.
 */
static void
check_fail(struct hb *b, const char *msg)
{
	struct health *h = b->h;
	struct health_backend *p = &b->pub;
	enum health_state was = p->state;

	/* msg may be PQerrorMessage(): copy it before PQfinish frees it */
	if (b->phase == PH_PROBING && strncmp(msg, "write probe ", 12) != 0) {
		char first[sizeof(p->error) - sizeof("write probe failed: ") + 1];

		set_error(first, sizeof(first), msg);
		snprintf(p->error, sizeof(p->error), "write probe failed: %s",
			 first);
	} else {
		set_error(p->error, sizeof(p->error), msg);
	}
	close_conn(b);
	loop_timer_stop(b->deadline);
	b->phase = PH_IDLE;
	p->consecutive_failures++;
	p->failures++;
	p->checks++;
	p->last_check = clock_now_ms();
	if ((int64_t)p->consecutive_failures >= h->failure_threshold)
		p->state = HEALTH_FAILED;
	else
		p->state = HEALTH_SUSPECT;
	if (p->state == HEALTH_FAILED && was != HEALTH_FAILED) {
		/* libpq quotes the host: keep the event's error="..." parsable */
		char quoted[sizeof(p->error)], *c;

		memcpy(quoted, p->error, sizeof(quoted));
		for (c = quoted; *c; c++)
			if (*c == '"')
				*c = '\'';
		log_event("backend-failed",
			  "backend=%" PRId64 " host=%s port=%" PRId64
			  " failures=%u error=\"%s\"", p->id, b->host, b->port,
			  p->consecutive_failures, quoted);
	}
	else if (was == HEALTH_UP)
		log_warning("backend %" PRId64 " check failed: %s", p->id,
			    p->error);
	next_check(b, h->recheck_ms);
	tell(b);
}

static void
check_ok(struct hb *b)
{
	struct health_backend *p = &b->pub;
	enum health_state was = p->state;
	enum health_role old_role = p->role;
	uint64_t now = clock_now_ms();

	loop_timer_stop(b->deadline);
	b->phase = PH_IDLE;
	p->role = b->s.role;
	p->timeline = b->s.timeline;
	p->lsn = b->s.lsn;
	p->receive_lsn = b->s.receive_lsn;
	p->replay_lsn = b->s.replay_lsn;
	p->system_id = b->s.system_id;
	p->replay_lag_ms = b->s.have_row ? b->s.replay_lag_ms : -1;
	p->logical_slots = b->s.have_row ? b->s.logical_slots : -1;
	if (p->role == HEALTH_ROLE_PRIMARY)
		p->last_primary_lsn = p->lsn;
	p->write_latency_us = b->s.probed ? b->s.probe_us : 0;
	p->write_latency_ms = b->s.probed ? probe_ms(b->s.probe_us) : 0;
	p->consecutive_failures = 0;
	p->checks++;
	p->last_check = now;
	p->last_ok = now;
	p->latency_ms = (uint32_t)(now - b->started);
	p->error[0] = '\0';
	p->state = HEALTH_UP;
	if (was != HEALTH_UP)
		log_event("backend-up",
			  "backend=%" PRId64 " host=%s port=%" PRId64
			  " role=%s", p->id, b->host, b->port,
			  health_role_name(p->role));
	else if (old_role != p->role)
		log_event("backend-role-changed",
			  "backend=%" PRId64 " from=%s to=%s", p->id,
			  health_role_name(old_role),
			  health_role_name(p->role));
	/* between checks, watch for the server closing the connection */
	if (watch(b, EPOLLIN) < 0) {
		close_conn(b);
	}
	next_check(b, b->h->interval_ms);
	tell(b);
}

/* An error result's text: the primary message, without "ERROR:  ". */
static const char *
result_error(const PGresult *res)
{
	const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

	return m && *m ? m : PQresultErrorMessage(res);
}

/* Takes the one row of the status query into b->s. */
static void
take_row(struct hb *b, const PGresult *res)
{
	struct sample *s = &b->s;
	const char *v;
	int i;

	if (PQntuples(res) != 1 || PQnfields(res) != HEALTH_COLUMNS) {
		snprintf(s->error, sizeof(s->error),
			 "unexpected result shape: %d rows, %d columns",
			 PQntuples(res), PQnfields(res));
		return;
	}
	if (PQgetisnull(res, 0, 0)) {
		snprintf(s->error, sizeof(s->error),
			 "pg_is_in_recovery() returned null");
		return;
	}
	v = PQgetvalue(res, 0, 0);
	s->role = v[0] == 't' ? HEALTH_ROLE_STANDBY : HEALTH_ROLE_PRIMARY;
	/* an unknown timeline (0) is not an error: the rest still counts */
	i = s->role == HEALTH_ROLE_STANDBY ? 1 : 2;
	if (!PQgetisnull(res, 0, i)) {
		v = PQgetvalue(res, 0, i);
		if ((i == 1 ? parse_timeline(v, &s->timeline) :
		     parse_walfile_timeline(v, &s->timeline)) < 0) {
			snprintf(s->error, sizeof(s->error),
				 "could not parse timeline \"%.40s\"", v);
			return;
		}
	}
	for (i = 3; i <= 5; i++) {
		uint64_t lsn = 0;

		if (!PQgetisnull(res, 0, i) &&
		    parse_lsn(PQgetvalue(res, 0, i), &lsn) < 0) {
			snprintf(s->error, sizeof(s->error),
				 "could not parse LSN \"%.40s\"",
				 PQgetvalue(res, 0, i));
			return;
		}
		if (i == 3)
			s->lsn = lsn;
		else if (i == 4)
			s->receive_lsn = lsn;
		else
			s->replay_lsn = lsn;
	}
	/* an int8 on the SQL side: the bits of the unsigned identifier */
	s->system_id = PQgetisnull(res, 0, 6) ? 0 :
		(uint64_t)strtoll(PQgetvalue(res, 0, 6), NULL, 10);
	s->replay_lag_ms = -1;
	if (!PQgetisnull(res, 0, 7)) {
		double secs = strtod(PQgetvalue(res, 0, 7), NULL);

		/* a clock behind the primary's makes it negative: caught up */
		s->replay_lag_ms = secs > 0 && secs < 1e9 ? (int64_t)(secs * 1000.0) : 0;
	}
	/* A primary's logical slots: a switchover does not carry them over. */
	s->logical_slots = PQgetisnull(res, 0, 8) ? -1 :
		(int32_t)strtol(PQgetvalue(res, 0, 8), NULL, 10);
	s->have_row = true;
}

/* Takes one result of the write probe into b->s. */
static void
take_probe_result(struct hb *b, PGresult *res)
{
	struct sample *s = &b->s;

	switch (PQresultStatus(res)) {
	case PGRES_TUPLES_OK:
		/* the LSN of the message */
		if (PQntuples(res) == 1 && PQnfields(res) == 1 &&
		    !PQgetisnull(res, 0, 0))
			s->probe_row = true;
		break;
	case PGRES_COMMAND_OK:
		/* an aborted transaction "commits" as ROLLBACK */
		if (strcmp(PQcmdStatus(res), "COMMIT") == 0)
			s->probe_commit = true;
		break;
	default:
		if (!s->error[0])
			set_error(s->error, sizeof(s->error),
				  result_error(res));
		break;
	}
}

/* ---- the state machine ---------------------------------------------- */

/* Sends sql in phase ph; the results come to query_step(). */
static void
send_sql(struct hb *b, enum phase ph, const char *sql)
{
	int r;

	b->phase = ph;
	if (PQsetnonblocking(b->conn, 1) != 0 || !PQsendQuery(b->conn, sql)) {
		check_fail(b, PQerrorMessage(b->conn));
		return;
	}
	r = PQflush(b->conn);
	if (r < 0) {
		check_fail(b, PQerrorMessage(b->conn));
		return;
	}
	b->flushing = r == 1;
	if (watch(b, b->flushing ? EPOLLIN | EPOLLOUT : EPOLLIN) < 0)
		check_fail(b, "could not watch the connection's socket");
}

static void
send_query(struct hb *b)
{
	memset(&b->s, 0, sizeof(b->s));
	send_sql(b, PH_QUERYING, HEALTH_QUERY);
}

/* All results of the running query are in: the check goes on or ends. */
static void
results_done(struct hb *b)
{
	struct sample *s = &b->s;

	if (b->phase == PH_QUERYING) {
		if (s->error[0])
			check_fail(b, s->error);
		else if (!s->have_row)
			check_fail(b, "the health query returned no row");
		else if (s->role == HEALTH_ROLE_PRIMARY && b->h->write_probe) {
			s->probed = true;
			s->probe_sent_us = now_us();
			send_sql(b, PH_PROBING, WRITE_PROBE);
		} else {
			check_ok(b);
		}
		return;
	}
	if (s->error[0])
		check_fail(b, s->error);
	else if (!s->probe_row || !s->probe_commit)
		check_fail(b, "the transaction did not commit");
	else {
		uint64_t us = now_us() - s->probe_sent_us;

		s->probe_us = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
		check_ok(b);
	}
}

static void
start_connect(struct hb *b)
{
	char port[24], timeout[24];
	const char *keys[] = {
		"hostaddr", "port", "dbname", "user", "application_name",
		"connect_timeout",
		/*
		 * A GSSAPI credential cache lookup may block: the daemon
		 * never uses GSS, so do not even try it.
		 */
		"gssencmode", NULL,
	};
	const char *vals[] = {
		b->host, port, b->dbname, b->user, "pgvigil", timeout,
		"disable", NULL,
	};
	int64_t secs = (b->connect_timeout_ms + 999) / 1000;

	snprintf(port, sizeof(port), "%" PRId64, b->port);
	snprintf(timeout, sizeof(timeout), "%" PRId64, secs < 2 ? 2 : secs);
	b->phase = PH_CONNECTING;
	b->conn = PQconnectStartParams(keys, vals, 0);
	if (!b->conn) {
		check_fail(b, "out of memory");
		return;
	}
	if (PQstatus(b->conn) == CONNECTION_BAD) {
		check_fail(b, PQerrorMessage(b->conn));
		return;
	}
	/* libpq: start as if PQconnectPoll had returned PGRES_POLLING_WRITING */
	if (watch(b, EPOLLOUT) < 0)
		check_fail(b, "could not watch the connection's socket");
}

static void
connect_step(struct hb *b)
{
	switch (PQconnectPoll(b->conn)) {
	case PGRES_POLLING_READING:
		if (watch(b, EPOLLIN) < 0)
			check_fail(b, "could not watch the connection's socket");
		break;
	case PGRES_POLLING_WRITING:
		if (watch(b, EPOLLOUT) < 0)
			check_fail(b, "could not watch the connection's socket");
		break;
	case PGRES_POLLING_OK:
		send_query(b);
		break;
	case PGRES_POLLING_FAILED:
	default:
		check_fail(b, PQerrorMessage(b->conn));
		break;
	}
}

static void
query_step(struct hb *b, uint32_t events)
{
	PGresult *res;

	if (b->flushing) {
		int r = PQflush(b->conn);

		if (r < 0) {
			check_fail(b, PQerrorMessage(b->conn));
			return;
		}
		b->flushing = r == 1;
	}
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		if (!PQconsumeInput(b->conn)) {
			check_fail(b, PQerrorMessage(b->conn));
			return;
		}
		while (!PQisBusy(b->conn)) {
			res = PQgetResult(b->conn);
			if (!res) {
				results_done(b);
				return;
			}
			if (b->phase == PH_PROBING)
				take_probe_result(b, res);
			else if (PQresultStatus(res) == PGRES_TUPLES_OK) {
				if (!b->s.have_row && !b->s.error[0])
					take_row(b, res);
			} else if (!b->s.error[0]) {
				set_error(b->s.error, sizeof(b->s.error),
					  result_error(res));
			}
			PQclear(res);
		}
	}
	if (watch(b, b->flushing ? EPOLLIN | EPOLLOUT : EPOLLIN) < 0)
		check_fail(b, "could not watch the connection's socket");
}

static void
on_fd(struct loop *loop, int fd, uint32_t events, void *arg)
{
	struct hb *b = arg;

	switch (b->phase) {
	case PH_CONNECTING:
		connect_step(b);
		break;
	case PH_QUERYING:
	case PH_PROBING:
		query_step(b, events);
		break;
	case PH_IDLE:
		/*
		 * Between checks the server should say nothing: input here is
		 * the connection going away (or a notice). Check at once.
		 */
		if (!PQconsumeInput(b->conn) ||
		    PQstatus(b->conn) == CONNECTION_BAD) {
			log_debug("backend %" PRId64 " connection lost: %s",
				  b->pub.id, PQerrorMessage(b->conn));
			close_conn(b);
			loop_timer_in(b->tick, 0);
		}
		break;
	}
}

static void
on_tick(struct loop *loop, struct loop_timer *t, void *arg)
{
	struct hb *b = arg;

	if (b->phase != PH_IDLE) {
		/* cannot happen: the tick is armed only when a check ends */
		log_debug("backend %" PRId64 " tick during a check", b->pub.id);
		return;
	}
	b->started = clock_now_ms();
	loop_timer_in(b->deadline, (uint64_t)b->h->timeout_ms);
	if (b->conn && PQstatus(b->conn) == CONNECTION_OK)
		send_query(b);
	else {
		close_conn(b);
		start_connect(b);
	}
}

static void
on_deadline(struct loop *loop, struct loop_timer *t, void *arg)
{
	struct hb *b = arg;
	char msg[64];

	if (b->phase == PH_IDLE)
		return;
	snprintf(msg, sizeof(msg), "%stimed out after %" PRId64 " ms",
		 b->phase == PH_PROBING ? "write probe " : "",
		 b->h->timeout_ms);
	check_fail(b, msg);
}

/* ---- lifecycle ------------------------------------------------------ */

static void
hb_free(struct hb *b)
{
	if (!b)
		return;
	close_conn(b);
	loop_timer_free(b->tick);
	loop_timer_free(b->deadline);
	free(b->host);
	free(b->dbname);
	free(b->user);
	free(b);
}

static struct hb *
hb_new(struct health *h, const struct conf_backend *cb)
{
	struct hb *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->h = h;
	b->fd = -1;
	b->pub.id = cb->id;
	b->port = cb->port;
	b->connect_timeout_ms = cb->connect_timeout_ms;
	b->host = strdup(cb->host ? cb->host : "");
	b->dbname = strdup(cb->dbname ? cb->dbname : "");
	b->user = strdup(cb->user ? cb->user : "");
	b->tick = loop_timer_new(h->loop, on_tick, b);
	b->deadline = loop_timer_new(h->loop, on_deadline, b);
	if (!b->host || !b->dbname || !b->user || !b->tick || !b->deadline) {
		hb_free(b);
		return NULL;
	}
	loop_timer_in(b->tick, 0);
	return b;
}

static bool
same_str(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") == 0;
}

/* The running connection can serve cb as it is. */
static bool
hb_matches(const struct hb *b, const struct conf_backend *cb)
{
	return b->pub.id == cb->id && b->port == cb->port &&
	       same_str(b->host, cb->host) && same_str(b->dbname, cb->dbname) &&
	       same_str(b->user, cb->user);
}

static void
take_settings(struct health *h, const struct conf *conf)
{
	h->interval_ms = conf->health.interval_ms;
	h->timeout_ms = conf->health.timeout_ms;
	h->failure_threshold = conf->health.failure_threshold;
	h->recheck_ms = conf->health.recheck_ms;
	h->write_probe = conf->health.write_probe != 0;
	if (h->failure_threshold < 1)
		h->failure_threshold = 1;
}

struct health *
health_new(struct loop *loop, const struct conf *conf, char *err,
	   size_t errlen)
{
	struct health *h = calloc(1, sizeof(*h));

	if (!h) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->loop = loop;
	if (health_reload(h, conf, err, errlen) < 0) {
		health_free(h);
		return NULL;
	}
	return h;
}

int
health_reload(struct health *h, const struct conf *conf, char *err,
	      size_t errlen)
{
	struct hb *next[CONF_MAX_BACKENDS] = { NULL };
	size_t i, j, n = conf->nbackends;

	if (n > CONF_MAX_BACKENDS)
		n = CONF_MAX_BACKENDS;
	take_settings(h, conf);
	/* allocate every new one first, so failing changes nothing */
	for (i = 0; i < n; i++) {
		const struct conf_backend *cb = &conf->backends[i];

		for (j = 0; j < h->n; j++)
			if (h->b[j] && hb_matches(h->b[j], cb))
				break;
		if (j < h->n) {
			next[i] = h->b[j];
			continue;
		}
		next[i] = hb_new(h, cb);
		if (!next[i]) {
			for (j = 0; j < i; j++) {
				size_t k;

				for (k = 0; k < h->n; k++)
					if (h->b[k] == next[j])
						break;
				if (k == h->n)
					hb_free(next[j]);
			}
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	/* drop the ones no longer wanted (removed, or host/port changed) */
	for (j = 0; j < h->n; j++) {
		for (i = 0; i < n; i++)
			if (next[i] == h->b[j])
				break;
		if (i == n)
			hb_free(h->b[j]);
	}
	memcpy(h->b, next, sizeof(next));
	h->n = n;
	return 0;
}

void
health_free(struct health *h)
{
	size_t i;

	if (!h)
		return;
	for (i = 0; i < h->n; i++)
		hb_free(h->b[i]);
	free(h);
}

void
health_set_listener(struct health *h, health_listener fn, void *arg)
{
	h->listener = fn;
	h->listener_arg = arg;
}

void
health_check_now(struct health *h)
{
	size_t i;

	for (i = 0; h && i < h->n; i++) {
		struct hb *b = h->b[i];

		if (b->phase != PH_IDLE)
			b->again = true;
		else
			loop_timer_in(b->tick, 0);
	}
}

size_t
health_count(const struct health *h)
{
	return h ? h->n : 0;
}

const struct health_backend *
health_get(const struct health *h, size_t i)
{
	if (!h || i >= h->n)
		return NULL;
	return &h->b[i]->pub;
}

/* ---- status --------------------------------------------------------- */

static void
fmt_lsn(char *buf, size_t len, uint64_t lsn)
{
	snprintf(buf, len, "%" PRIX64 "/%" PRIX64, lsn >> 32,
		 lsn & 0xffffffffu);
}

static void
json_lsn(struct json *j, const char *key, uint64_t lsn)
{
	char buf[24];

	json_key(j, key);
	if (!lsn) {
		json_null(j);
		return;
	}
	fmt_lsn(buf, sizeof(buf), lsn);
	json_str(j, buf);
}

/* The one backend up as a primary, else NULL (none, or more than one). */
static const struct health_backend *
the_primary(const struct health *h)
{
	const struct health_backend *primary = NULL;
	size_t nprimary = 0;

	for (size_t i = 0; h && i < h->n; i++) {
		const struct health_backend *p = &h->b[i]->pub;

		if (p->state == HEALTH_UP && p->role == HEALTH_ROLE_PRIMARY) {
			primary = p;
			nprimary++;
		}
	}
	return nprimary == 1 ? primary : NULL;
}

/* Bytes a standby is behind the primary; -1 when that is not known. */
static int64_t
lag_bytes(const struct health_backend *primary, const struct health_backend *p)
{
	uint64_t pos = p->replay_lsn;

	if (!primary || p == primary || p->state != HEALTH_UP ||
	    p->role != HEALTH_ROLE_STANDBY || !pos || !primary->lsn)
		return -1;
	return primary->lsn > pos ? (int64_t)(primary->lsn - pos) : 0;
}

void
health_status_json(const struct health *h, struct json *j, uint64_t now,
		   health_role_fn cluster_role, void *arg)
{
	const struct health_backend *primary = the_primary(h);
	size_t i;

	json_key(j, "backends");
	json_begin_array(j);
	for (i = 0; h && i < h->n; i++) {
		const struct hb *b = h->b[i];
		const struct health_backend *p = &b->pub;
		int64_t lag = lag_bytes(primary, p);
		char buf[24];

		json_begin_object(j);
		json_key(j, "id");
		json_int(j, p->id);
		json_key(j, "host");
		json_str(j, b->host);
		json_key(j, "port");
		json_int(j, b->port);
		json_key(j, "state");
		json_str(j, health_state_name(p->state));
		json_key(j, "role");
		json_str(j, health_role_name(p->role));
		json_key(j, "cluster_role");
		json_str(j, cluster_role ? cluster_role(arg, p->id) : NULL);
		json_key(j, "timeline");
		if (p->timeline)
			json_uint(j, p->timeline);
		else
			json_null(j);
		json_lsn(j, "lsn", p->lsn);
		json_lsn(j, "receive_lsn", p->receive_lsn);
		json_lsn(j, "replay_lsn", p->replay_lsn);
		json_lsn(j, "last_primary_lsn", p->last_primary_lsn);
		json_key(j, "lag_bytes");
		if (lag >= 0)
			json_int(j, lag);
		else
			json_null(j);
		json_key(j, "replay_lag_ms");
		if (p->state == HEALTH_UP && p->role == HEALTH_ROLE_STANDBY &&
		    p->replay_lag_ms >= 0)
			json_int(j, p->replay_lag_ms);
		else
			json_null(j);
		json_key(j, "system_id");
		if (p->system_id) {
			/* a string: JavaScript loses bits beyond 2^53 */
			snprintf(buf, sizeof(buf), "%" PRIu64, p->system_id);
			json_str(j, buf);
		} else {
			json_null(j);
		}
		json_key(j, "last_ok_ms");
		if (p->last_ok)
			json_uint(j, now > p->last_ok ? now - p->last_ok : 0);
		else
			json_null(j);
		json_key(j, "latency_ms");
		if (p->last_ok)
			json_uint(j, p->latency_ms);
		else
			json_null(j);
		json_key(j, "write_latency_ms");
		if (p->write_latency_ms)
			json_uint(j, p->write_latency_ms);
		else
			json_null(j);
		json_key(j, "consecutive_failures");
		json_uint(j, p->consecutive_failures);
		json_key(j, "checks");
		json_uint(j, p->checks);
		json_key(j, "failures");
		json_uint(j, p->failures);
		json_key(j, "error");
		json_str(j, p->error[0] ? p->error : NULL);
		json_end_object(j);
	}
	json_end_array(j);
}

const char *
health_status_marks(const struct health_backend *p, const char *cluster_role,
		    char buf[3])
{
	bool rec_primary = cluster_role && strcmp(cluster_role, "primary") == 0;
	bool rec_standby = cluster_role && strcmp(cluster_role, "standby") == 0;
	bool seen = p->role != HEALTH_ROLE_UNKNOWN;

	buf[0] = rec_primary ? '*' : ' ';
	buf[1] = ' ';
	if (p->state != HEALTH_UP)
		buf[1] = '?';
	else if (seen && ((rec_primary && p->role != HEALTH_ROLE_PRIMARY) ||
			  (!rec_primary && p->role == HEALTH_ROLE_PRIMARY) ||
			  (rec_standby && p->role != HEALTH_ROLE_STANDBY)))
		buf[1] = '!';
	buf[2] = '\0';
	return buf;
}

void
health_status_table(const struct health *h, FILE *out, uint64_t now,
		    health_role_fn cluster_role, void *arg)
{
	const struct health_backend *primary = the_primary(h);
	size_t i;

	fprintf(out, "   %-3s %-22s %-12s %-8s %-8s %3s %-12s %12s %8s %7s %s\n",
		"ID", "BACKEND", "CLUSTER ROLE", "SEEN AS", "HEALTH", "TL", "LSN",
		"LAG BYTES", "LAG S", "WRITE", "LAST OK");
	for (i = 0; h && i < h->n; i++) {
		const struct hb *b = h->b[i];
		const struct health_backend *p = &b->pub;
		const char *crole = cluster_role ? cluster_role(arg, p->id) : NULL;
		char addr[80], tl[16], lsn[24], lag[24], lags[24], wr[16], ok[32], mark[3];
		uint64_t pos = p->role == HEALTH_ROLE_PRIMARY ? p->lsn :
			p->replay_lsn;
		int64_t lb = lag_bytes(primary, p);

		snprintf(addr, sizeof(addr), "%s:%" PRId64, b->host, b->port);
		if (p->timeline)
			snprintf(tl, sizeof(tl), "%" PRIu32, p->timeline);
		else
			snprintf(tl, sizeof(tl), "-");
		if (pos)
			fmt_lsn(lsn, sizeof(lsn), pos);
		else
			snprintf(lsn, sizeof(lsn), "-");
		if (lb >= 0)
			snprintf(lag, sizeof(lag), "%" PRId64, lb);
		else
			snprintf(lag, sizeof(lag), "-");
		if (p->state == HEALTH_UP && p->role == HEALTH_ROLE_STANDBY &&
		    p->replay_lag_ms >= 0)
			snprintf(lags, sizeof(lags), "%" PRId64 ".%01" PRId64,
				 p->replay_lag_ms / 1000, p->replay_lag_ms % 1000 / 100);
		else
			snprintf(lags, sizeof(lags), "-");
		if (p->write_latency_ms)
			snprintf(wr, sizeof(wr), "%" PRIu32 " ms",
				 p->write_latency_ms);
		else
			snprintf(wr, sizeof(wr), "-");
		if (p->last_ok)
			snprintf(ok, sizeof(ok), "%" PRIu64 " ms ago",
				 now > p->last_ok ? now - p->last_ok : 0);
		else
			snprintf(ok, sizeof(ok), "never");
		fprintf(out, "%s %-3" PRId64 " %-22s %-12s %-8s %-8s %3s %-12s %12s %8s %7s %s\n",
			health_status_marks(p, crole, mark), p->id, addr,
			crole ? crole : "-", health_role_name(p->role),
			health_state_name(p->state), tl, lsn, lag, lags, wr, ok);
	}
}

void
health_set_observer(struct health *h, health_listener fn, void *arg)
{
	h->observer = fn;
	h->observer_arg = arg;
}
