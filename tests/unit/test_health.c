/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_health.c - health checks without a real PostgreSQL server: the pure
 * helpers (LSN, WAL file name and timeline parsing, error text, probe
 * latency rounding), a backend nobody listens on going unknown -> suspect
 * -> failed after failure_threshold checks with libpq's error text and
 * re-checked at recheck_interval, reload keeping the state of unchanged
 * backends, and the status outputs.
 *
 * The check itself (status query, write probe, listener, check-now, what a
 * failed check keeps) runs against a fake server on the same loop: it
 * speaks just enough of the PostgreSQL v3 protocol for libpq (SSL refused,
 * trust authentication, simple queries) and answers the status query and
 * the write probe from a script. The real server is the system test's.
 *
 * The static helpers are reached through health.c's test-only wrappers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/loop.h"
#include "ctl/json.h"
#include "failover/health.h"

/* test-only, defined in failover/health.c */
int health_test_parse_lsn(const char *s, uint64_t *out);
void health_test_set_error(char *buf, size_t len, const char *msg);
int health_test_parse_walfile_timeline(const char *name, uint32_t *out);
int health_test_parse_timeline(const char *s, uint32_t *out);
uint32_t health_test_probe_ms(uint32_t us);
const char *health_test_query(void);
const char *health_test_write_probe(void);

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

/* The status table's marks: '*' the record's primary, '?' down, '!' unexpected role. */
static void
test_health_status_marks_primary_unreachable_and_unexpected_role(void **state)
{
	struct health_backend b = { .id = 1, .state = HEALTH_UP, .role = HEALTH_ROLE_PRIMARY };
	char m[3];

	(void)state;
	assert_string_equal(health_status_marks(&b, "primary", m), "* ");
	assert_string_equal(health_status_marks(&b, "standby", m), " !");
	assert_string_equal(health_status_marks(&b, "needs-rejoin", m), " !");
	assert_string_equal(health_status_marks(&b, NULL, m), " !");
	b.role = HEALTH_ROLE_STANDBY;
	assert_string_equal(health_status_marks(&b, "standby", m), "  ");
	assert_string_equal(health_status_marks(&b, "primary", m), "*!");
	assert_string_equal(health_status_marks(&b, "needs-rejoin", m), "  ");
	b.state = HEALTH_FAILED;
	assert_string_equal(health_status_marks(&b, "primary", m), "*?");
	b.state = HEALTH_SUSPECT;
	assert_string_equal(health_status_marks(&b, "standby", m), " ?");
	b.state = HEALTH_UNKNOWN;
	b.role = HEALTH_ROLE_UNKNOWN;
	assert_string_equal(health_status_marks(&b, "standby", m), " ?");
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

static void
test_health_timeline_from_walfile_name(void **state)
{
	uint32_t t = 99;

	assert_int_equal(health_test_parse_walfile_timeline("000000010000000000000002", &t), 0);
	assert_int_equal(t, 1);
	assert_int_equal(health_test_parse_walfile_timeline("0000002A00000003000000FE", &t), 0);
	assert_int_equal(t, 42);
	assert_int_equal(health_test_parse_walfile_timeline("FFFFFFFF0000000000000000", &t), 0);
	assert_true(t == UINT32_MAX);
	t = 99;
	/* timeline 0 does not exist; wrong length; not hex */
	assert_int_equal(health_test_parse_walfile_timeline("000000000000000000000002", &t), -1);
	assert_int_equal(health_test_parse_walfile_timeline("00000001000000000000002", &t), -1);
	assert_int_equal(health_test_parse_walfile_timeline("0000000100000000000000020", &t), -1);
	assert_int_equal(health_test_parse_walfile_timeline("00000001000000000000000G", &t), -1);
	assert_int_equal(health_test_parse_walfile_timeline("0000000G0000000000000002", &t), -1);
	assert_int_equal(health_test_parse_walfile_timeline("", &t), -1);
	assert_int_equal(t, 99);

	assert_int_equal(health_test_parse_timeline("1", &t), 0);
	assert_int_equal(t, 1);
	assert_int_equal(health_test_parse_timeline("4294967295", &t), 0);
	assert_true(t == UINT32_MAX);
	t = 99;
	assert_int_equal(health_test_parse_timeline("0", &t), -1);
	assert_int_equal(health_test_parse_timeline("", &t), -1);
	assert_int_equal(health_test_parse_timeline("-1", &t), -1);
	assert_int_equal(health_test_parse_timeline("4294967296", &t), -1);
	assert_int_equal(health_test_parse_timeline("2 ", &t), -1);
	assert_int_equal(t, 99);
}

static void
test_health_write_probe_latency_rounds_up_to_a_millisecond(void **state)
{
	assert_int_equal(health_test_probe_ms(0), 1);
	assert_int_equal(health_test_probe_ms(1), 1);
	assert_int_equal(health_test_probe_ms(999), 1);
	assert_int_equal(health_test_probe_ms(1000), 1);
	assert_int_equal(health_test_probe_ms(1001), 2);
	assert_int_equal(health_test_probe_ms(2500000), 2500);
}

static void
test_health_status_query_is_one_statement_and_probe_commits_locally(void **state)
{
	const char *q = health_test_query(), *p = health_test_write_probe();

	/* one round trip, one statement: no ';' anywhere */
	assert_null(strchr(q, ';'));
	/* the role is read once; the primary's timeline from its WAL file */
	assert_non_null(strstr(q, "FROM pg_is_in_recovery() AS r"));
	assert_non_null(strstr(q, "pg_walfile_name(w)"));
	assert_non_null(strstr(q, "received_tli"));
	/*
	 * The probe: a WAL record of its own inside the transaction (a bare
	 * xid commits without a flush), committed with a local flush only.
	 */
	assert_true(strncmp(p, "BEGIN;", 6) == 0);
	assert_non_null(strstr(p, "SET LOCAL synchronous_commit TO local;"));
	assert_non_null(strstr(p, "pg_logical_emit_message(true,"));
	assert_non_null(strstr(p, "COMMIT"));
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
	c->health.write_probe = 1;
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
	health_status_json(h, &j, clock_now_ms(), NULL, NULL);
	json_end_object(&j);
	assert_int_equal(json_finish(&j), 0);
	fclose(f);
	assert_non_null(strstr(buf, "\"id\":4,\"host\":\"127.0.0.1\",\"port\":1,"
			       "\"state\":\"suspect\",\"role\":\"unknown\","
			       "\"cluster_role\":null,"
			       "\"timeline\":null,\"lsn\":null,\"receive_lsn\":null,"
			       "\"replay_lsn\":null,\"last_primary_lsn\":null,"
			       "\"lag_bytes\":null,\"replay_lag_ms\":null,"
			       "\"system_id\":null,\"last_ok_ms\":null,"
			       "\"latency_ms\":null,\"write_latency_ms\":null,"));
	assert_non_null(strstr(buf, "\"consecutive_failures\":1,\"checks\":1,"
			       "\"failures\":1,\"error\":\""));
	free(buf);
	buf = NULL;

	f = open_memstream(&buf, &len);
	assert_non_null(f);
	health_status_table(h, f, clock_now_ms(), NULL, NULL);
	fclose(f);
	assert_non_null(strstr(buf, "127.0.0.1:1"));
	assert_non_null(strstr(buf, "suspect"));
	free(buf);

	health_free(h);
	loop_free(l);
	free(c);
}

/* ---- a fake PostgreSQL server on the test's loop -------------------- */

enum probe_mode {
	PROBE_OK = 0,
	PROBE_ERROR,		/* the probe's SELECT fails */
	PROBE_HANG,		/* no answer at all, like a stuck WAL flush */
	PROBE_ROLLBACK,		/* COMMIT answered ROLLBACK */
};

struct fake {
	struct loop *loop;	/* borrowed */
	int lfd;		/* listening, -1 when closed */
	int cfd;		/* the one client, -1 when none */
	int port;
	unsigned char in[16384];
	size_t inlen;
	bool started;		/* startup packet answered */
	/* the script */
	bool standby;
	const char *walfile;	/* primary: pg_walfile_name() */
	const char *tli;	/* standby: the timeline column */
	const char *lsn;	/* primary */
	const char *receive, *replay;	/* standby */
	enum probe_mode probe;
	/* what it saw */
	int connects, status_queries, probes, other_queries;
};

static void
put(char *buf, size_t *len, const void *p, size_t n)
{
	assert_true(*len + n <= 4096);
	memcpy(buf + *len, p, n);
	*len += n;
}

static void
put32(char *buf, size_t *len, uint32_t v)
{
	v = htonl(v);
	put(buf, len, &v, 4);
}

static void
put16(char *buf, size_t *len, uint16_t v)
{
	v = htons(v);
	put(buf, len, &v, 2);
}

/* A message: type, length (patched), body. */
struct msg {
	char buf[4096];
	size_t len, start;
};

static void
msg_begin(struct msg *m, char type)
{
	m->buf[m->len++] = type;
	m->start = m->len;
	put32(m->buf, &m->len, 0);
}

static void
msg_end(struct msg *m)
{
	uint32_t n = htonl((uint32_t)(m->len - m->start));

	memcpy(m->buf + m->start, &n, 4);
}

static void
msg_str(struct msg *m, const char *s)
{
	put(m->buf, &m->len, s, strlen(s) + 1);
}

static void
msg_command(struct msg *m, const char *tag)
{
	msg_begin(m, 'C');
	msg_str(m, tag);
	msg_end(m);
}

static void
msg_ready(struct msg *m, char status)
{
	msg_begin(m, 'Z');
	m->buf[m->len++] = status;
	msg_end(m);
}

static void
msg_row(struct msg *m, int n, const char *const *vals)
{
	int i;

	msg_begin(m, 'T');
	put16(m->buf, &m->len, (uint16_t)n);
	for (i = 0; i < n; i++) {
		char name[8];

		snprintf(name, sizeof(name), "c%d", i);
		msg_str(m, name);
		put32(m->buf, &m->len, 0);	/* table */
		put16(m->buf, &m->len, 0);	/* column */
		put32(m->buf, &m->len, 25);	/* text */
		put16(m->buf, &m->len, 0xffff);	/* typlen -1 */
		put32(m->buf, &m->len, 0xffffffffu);	/* typmod -1 */
		put16(m->buf, &m->len, 0);	/* text format */
	}
	msg_end(m);
	msg_begin(m, 'D');
	put16(m->buf, &m->len, (uint16_t)n);
	for (i = 0; i < n; i++) {
		if (!vals[i]) {
			put32(m->buf, &m->len, 0xffffffffu);
			continue;
		}
		put32(m->buf, &m->len, (uint32_t)strlen(vals[i]));
		put(m->buf, &m->len, vals[i], strlen(vals[i]));
	}
	msg_end(m);
	msg_command(m, "SELECT 1");
}

static void
msg_error(struct msg *m, const char *text)
{
	msg_begin(m, 'E');
	m->buf[m->len++] = 'S';
	msg_str(m, "ERROR");
	m->buf[m->len++] = 'C';
	msg_str(m, "58030");
	m->buf[m->len++] = 'M';
	msg_str(m, text);
	m->buf[m->len++] = '\0';
	msg_end(m);
}

static void
fake_send(struct fake *f, const struct msg *m)
{
	ssize_t r = write(f->cfd, m->buf, m->len);

	/* a few hundred bytes on a fresh local socket: all or nothing */
	assert_int_equal(r, (ssize_t)m->len);
}

static void
fake_drop_client(struct fake *f)
{
	if (f->cfd < 0)
		return;
	loop_del_fd(f->loop, f->cfd);
	close(f->cfd);
	f->cfd = -1;
	f->inlen = 0;
	f->started = false;
}

static void
fake_query(struct fake *f, const char *sql)
{
	struct msg m = { .len = 0 };

	if (strstr(sql, "pg_is_in_recovery")) {
		const char *vals[9];

		f->status_queries++;
		vals[0] = f->standby ? "t" : "f";
		vals[1] = f->standby ? f->tli : NULL;
		vals[2] = f->standby ? NULL : f->walfile;
		vals[3] = f->standby ? NULL : f->lsn;
		vals[4] = f->standby ? f->receive : NULL;
		vals[5] = f->standby ? f->replay : NULL;
		vals[7] = f->standby ? "0.25" : NULL;
		vals[6] = "7712362913286307918";
		vals[8] = f->standby ? NULL : "2";	/* the primary's logical slots */
		msg_row(&m, 9, vals);
		msg_ready(&m, 'I');
	} else if (strstr(sql, "pg_logical_emit_message")) {
		static const char *const lsn[] = { "0/5000100" };

		f->probes++;
		if (f->probe == PROBE_HANG)
			return;
		msg_command(&m, "BEGIN");
		msg_command(&m, "SET");
		if (f->probe == PROBE_ERROR) {
			msg_error(&m, "could not write to file \"pg_wal/xlogtemp.1\": No space left on device");
			msg_ready(&m, 'E');
		} else {
			msg_row(&m, 1, lsn);
			msg_command(&m, f->probe == PROBE_ROLLBACK ? "ROLLBACK" : "COMMIT");
			msg_ready(&m, 'I');
		}
	} else {
		f->other_queries++;
		msg_error(&m, "unexpected query");
		msg_ready(&m, 'I');
	}
	fake_send(f, &m);
}

/* Handles every complete message in f->in. */
static void
fake_messages(struct fake *f)
{
	for (;;) {
		struct msg m = { .len = 0 };
		uint32_t n, code;
		size_t skip;

		if (!f->started) {
			if (f->inlen < 8)
				return;
			memcpy(&n, f->in, 4);
			memcpy(&code, f->in + 4, 4);
			n = ntohl(n);
			code = ntohl(code);
			if (n < 8 || n > sizeof(f->in))
				goto drop;
			if (f->inlen < n)
				return;
			skip = n;
			if (code == 80877103 || code == 80877104) {
				/* SSLRequest / GSSENCRequest: no */
				m.buf[m.len++] = 'N';
			} else if (code == 196608) {
				f->started = true;
				msg_begin(&m, 'R');	/* AuthenticationOk */
				put32(m.buf, &m.len, 0);
				msg_end(&m);
				msg_begin(&m, 'S');
				msg_str(&m, "server_version");
				msg_str(&m, "15.0");
				msg_end(&m);
				msg_begin(&m, 'S');
				msg_str(&m, "client_encoding");
				msg_str(&m, "UTF8");
				msg_end(&m);
				msg_begin(&m, 'S');
				msg_str(&m, "standard_conforming_strings");
				msg_str(&m, "on");
				msg_end(&m);
				msg_begin(&m, 'K');
				put32(m.buf, &m.len, 4242);
				put32(m.buf, &m.len, 1);
				msg_end(&m);
				msg_ready(&m, 'I');
			} else {
				goto drop;
			}
			fake_send(f, &m);
		} else {
			if (f->inlen < 5)
				return;
			memcpy(&n, f->in + 1, 4);
			n = ntohl(n);
			if (n < 4 || n + 1 > sizeof(f->in))
				goto drop;
			if (f->inlen < n + 1)
				return;
			skip = n + 1;
			if (f->in[0] == 'X')
				goto drop;
			if (f->in[0] == 'Q') {
				char sql[sizeof(f->in)];

				memcpy(sql, f->in + 5, n - 4);
				sql[n - 4] = '\0';
				fake_query(f, sql);
			}
		}
		memmove(f->in, f->in + skip, f->inlen - skip);
		f->inlen -= skip;
	}
drop:
	fake_drop_client(f);
}

static void
fake_on_client(struct loop *loop, int fd, uint32_t events, void *arg)
{
	struct fake *f = arg;
	ssize_t r;

	r = read(fd, f->in + f->inlen, sizeof(f->in) - f->inlen);
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r <= 0) {
		fake_drop_client(f);
		return;
	}
	f->inlen += (size_t)r;
	fake_messages(f);
}

static void
fake_on_accept(struct loop *loop, int fd, uint32_t events, void *arg)
{
	struct fake *f = arg;
	int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (c < 0)
		return;
	fake_drop_client(f);	/* one client at a time: the newest */
	f->cfd = c;
	f->connects++;
	assert_int_equal(loop_add_fd(f->loop, c, EPOLLIN, fake_on_client, f), 0);
}

static void
fake_start(struct fake *f, struct loop *l)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);

	memset(f, 0, sizeof(*f));
	f->loop = l;
	f->cfd = -1;
	f->walfile = "000000030000000000000005";
	f->tli = "2";
	f->lsn = "0/5000060";
	f->receive = "0/4000100";
	f->replay = "0/40000A0";
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(f->lfd >= 0);
	assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(f->lfd, 8), 0);
	assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&a, &alen), 0);
	f->port = ntohs(a.sin_port);
	assert_int_equal(loop_add_fd(l, f->lfd, EPOLLIN, fake_on_accept, f), 0);
}

/* Stops listening: connects are refused from now on. */
static void
fake_stop_listening(struct fake *f)
{
	if (f->lfd < 0)
		return;
	loop_del_fd(f->loop, f->lfd);
	close(f->lfd);
	f->lfd = -1;
}

static void
fake_stop(struct fake *f)
{
	fake_drop_client(f);
	fake_stop_listening(f);
}

/* What the listener saw. */
struct heard {
	int calls;
	const struct health_backend *last;
	struct health_backend copy;	/* the view at the last call */
	uint64_t at[64];		/* when each call came */
	struct health *h;		/* to call health_check_now from the listener */
	int check_now_at;		/* call it at this call number, 0 = never */
};

static void
listener(void *arg, const struct health_backend *b)
{
	struct heard *hd = arg;

	if (hd->calls < 64)
		hd->at[hd->calls] = clock_now_ms();
	hd->calls++;
	hd->last = b;
	hd->copy = *b;
	if (hd->check_now_at && hd->calls == hd->check_now_at)
		health_check_now(hd->h);
}

/* Runs the loop until *counter reaches want or DEADLINE_MS passes. */
static void
run_until(struct loop *l, const int *counter, int want)
{
	uint64_t end = clock_now_ms() + DEADLINE_MS;

	while (*counter < want && clock_now_ms() < end)
		assert_int_equal(loop_run_once(l, 20), 0);
	assert_true(*counter >= want);
}

static struct conf *
fake_conf(const struct fake *f)
{
	const int64_t ids[] = { 1 }, ports[] = { f->port };
	struct conf *c = test_conf(1, ids, ports);

	c->health.interval_ms = 60000;	/* only the first check, check-now and rechecks */
	c->health.recheck_ms = 50;
	return c;
}

static void
test_health_primary_gets_write_probe_standby_never(void **state)
{
	struct loop *l = loop_new();
	struct fake f;
	struct heard hd = { 0 };
	struct conf *c;
	struct health *h;
	const struct health_backend *b;
	char err[128];

	assert_non_null(l);
	fake_start(&f, l);
	c = fake_conf(&f);
	h = health_new(l, c, err, sizeof(err));
	assert_non_null(h);
	hd.h = h;
	health_set_listener(h, listener, &hd);
	run_until(l, &hd.calls, 1);
	b = health_get(h, 0);
	assert_ptr_equal(hd.last, b);
	assert_string_equal(b->error, "");
	assert_int_equal(b->state, HEALTH_UP);
	assert_int_equal(b->role, HEALTH_ROLE_PRIMARY);
	assert_int_equal(b->timeline, 3);	/* from the WAL file name */
	assert_true(b->lsn == 0x5000060);
	assert_true(b->last_primary_lsn == 0x5000060);
	assert_true(b->receive_lsn == 0 && b->replay_lsn == 0);
	assert_int_equal(b->replay_lag_ms, -1);	/* not a standby */
	assert_int_equal(b->logical_slots, 2);	/* the primary's, as the query said */
	assert_true(b->system_id == 7712362913286307918ull);
	assert_true(b->write_latency_ms >= 1);
	assert_int_equal(f.status_queries, 1);
	assert_int_equal(f.probes, 1);
	assert_int_equal(f.other_queries, 0);

	/* a second check on the kept connection probes again */
	health_check_now(h);
	run_until(l, &hd.calls, 2);
	assert_int_equal(f.connects, 1);
	assert_int_equal(f.status_queries, 2);
	assert_int_equal(f.probes, 2);

	/* the same server now in recovery: no probe, the receiver's timeline */
	f.standby = true;
	health_check_now(h);
	run_until(l, &hd.calls, 3);
	assert_int_equal(b->state, HEALTH_UP);
	assert_int_equal(b->role, HEALTH_ROLE_STANDBY);
	assert_int_equal(b->timeline, 2);
	assert_true(b->lsn == 0);
	assert_true(b->receive_lsn == 0x4000100 && b->replay_lsn == 0x40000A0);
	assert_int_equal(b->replay_lag_ms, 250);	/* 0.25 s, as the query said */
	assert_int_equal(b->logical_slots, -1);	/* a standby's are not asked for */
	assert_true(b->last_primary_lsn == 0x5000060);	/* kept */
	assert_int_equal(b->write_latency_ms, 0);
	assert_int_equal(b->write_latency_us, 0);
	assert_int_equal(f.status_queries, 3);
	assert_int_equal(f.probes, 2);

	/* a standby without a timeline known is still up */
	f.tli = NULL;
	health_check_now(h);
	run_until(l, &hd.calls, 4);
	assert_int_equal(b->state, HEALTH_UP);
	assert_int_equal(b->timeline, 0);

	/* primary again, write_probe off: no probe */
	f.standby = false;
	c->health.write_probe = 0;
	assert_int_equal(health_reload(h, c, err, sizeof(err)), 0);
	health_check_now(h);
	run_until(l, &hd.calls, 5);
	assert_int_equal(b->role, HEALTH_ROLE_PRIMARY);
	assert_int_equal(b->state, HEALTH_UP);
	assert_int_equal(b->write_latency_ms, 0);
	assert_int_equal(f.probes, 2);
	assert_int_equal(f.status_queries, 5);
	assert_int_equal(f.other_queries, 0);
	assert_int_equal(hd.calls, (int)b->checks);

	health_free(h);
	fake_stop(&f);
	loop_free(l);
	free(c);
}

/* A primary seen up, then failing in the given way: returns the backend. */
static const struct health_backend *
primary_then(struct loop *l, struct fake *f, struct heard *hd,
	     struct health *h, enum probe_mode mode)
{
	const struct health_backend *b;

	run_until(l, &hd->calls, 1);
	b = health_get(h, 0);
	assert_int_equal(b->state, HEALTH_UP);
	assert_int_equal(b->role, HEALTH_ROLE_PRIMARY);
	assert_int_equal(b->timeline, 3);
	/* the server moves on; a failing check must not take any of it */
	f->walfile = "000000040000000000000006";
	f->lsn = "0/6000000";
	f->probe = mode;
	health_check_now(h);
	run_until(l, &hd->calls, 2);
	return b;
}

/* What a failed check must leave alone: the last successful check's view. */
static void
assert_kept_primary_view(const struct health_backend *b)
{
	assert_int_equal(b->role, HEALTH_ROLE_PRIMARY);
	assert_int_equal(b->timeline, 3);
	assert_true(b->lsn == 0x5000060);
	assert_true(b->last_primary_lsn == 0x5000060);
	assert_true(b->system_id == 7712362913286307918ull);
	assert_true(b->last_ok > 0);
}

static void
test_health_write_probe_error_fails_the_check_keeping_the_last_view(void **state)
{
	struct loop *l = loop_new();
	struct fake f;
	struct heard hd = { 0 };
	struct conf *c;
	struct health *h;
	const struct health_backend *b;
	char err[128];

	assert_non_null(l);
	fake_start(&f, l);
	c = fake_conf(&f);
	h = health_new(l, c, err, sizeof(err));
	assert_non_null(h);
	health_set_listener(h, listener, &hd);
	b = primary_then(l, &f, &hd, h, PROBE_ERROR);
	assert_int_equal(b->state, HEALTH_SUSPECT);
	assert_string_equal(b->error, "write probe failed: could not write to "
			    "file \"pg_wal/xlogtemp.1\": No space left on device");
	assert_kept_primary_view(b);
	/* the listener got the failed view */
	assert_int_equal(hd.copy.state, HEALTH_SUSPECT);
	assert_int_equal(hd.copy.role, HEALTH_ROLE_PRIMARY);
	assert_int_equal(hd.copy.consecutive_failures, 1);

	/* failed after the threshold (3), still the same view */
	run_until(l, &hd.calls, 4);
	assert_int_equal(b->state, HEALTH_FAILED);
	assert_int_equal(b->consecutive_failures, 3);
	assert_kept_primary_view(b);

	/* COMMIT answered ROLLBACK is not a commit */
	f.probe = PROBE_ROLLBACK;
	run_until(l, &hd.calls, 5);
	assert_int_equal(b->state, HEALTH_FAILED);
	assert_string_equal(b->error, "write probe failed: the transaction did not commit");
	assert_kept_primary_view(b);

	/* the probe works again: up, and now the new LSN */
	f.probe = PROBE_OK;
	run_until(l, &hd.calls, 6);
	assert_int_equal(b->state, HEALTH_UP);
	assert_int_equal(b->timeline, 4);
	assert_true(b->lsn == 0x6000000);
	assert_true(b->last_primary_lsn == 0x6000000);
	assert_true(b->write_latency_ms >= 1);

	health_free(h);
	fake_stop(&f);
	loop_free(l);
	free(c);
}

static void
test_health_hung_write_probe_times_out(void **state)
{
	struct loop *l = loop_new();
	struct fake f;
	struct heard hd = { 0 };
	struct conf *c;
	struct health *h;
	const struct health_backend *b;
	char err[128];
	uint64_t t0;

	assert_non_null(l);
	fake_start(&f, l);
	c = fake_conf(&f);
	c->health.timeout_ms = 300;
	h = health_new(l, c, err, sizeof(err));
	assert_non_null(h);
	health_set_listener(h, listener, &hd);
	run_until(l, &hd.calls, 1);
	t0 = clock_now_ms();
	b = primary_then(l, &f, &hd, h, PROBE_HANG);
	assert_int_equal(b->state, HEALTH_SUSPECT);
	assert_string_equal(b->error, "write probe timed out after 300 ms");
	assert_true(clock_now_ms() - t0 >= 300);
	assert_int_equal(f.probes, 2);
	assert_kept_primary_view(b);
	/* the status query of that check was answered; only the probe hung */
	assert_int_equal(f.status_queries, 2);

	health_free(h);
	fake_stop(&f);
	loop_free(l);
	free(c);
}

static void
test_health_check_now_rechecks_after_a_check_in_flight(void **state)
{
	struct loop *l = loop_new();
	struct fake f;
	struct heard hd = { 0 };
	struct conf *c;
	struct health *h;
	const struct health_backend *b;
	char err[128];
	uint64_t end;

	assert_non_null(l);
	fake_start(&f, l);
	c = fake_conf(&f);
	c->health.timeout_ms = 300;
	c->health.recheck_ms = 30000;	/* far: only check-now can explain a quick one */
	h = health_new(l, c, err, sizeof(err));
	assert_non_null(h);
	hd.h = h;
	health_set_listener(h, listener, &hd);
	run_until(l, &hd.calls, 1);

	/* idle: check-now starts one at once, not at the 60 s interval */
	health_check_now(h);
	run_until(l, &hd.calls, 2);
	assert_true(hd.at[1] - hd.at[0] < 2000);

	/* in flight: the probe hangs; check-now must not start a second check */
	f.probe = PROBE_HANG;
	health_check_now(h);
	end = clock_now_ms() + DEADLINE_MS;
	while (f.probes < 3 && clock_now_ms() < end)
		assert_int_equal(loop_run_once(l, 20), 0);
	assert_int_equal(f.probes, 3);
	health_check_now(h);
	health_check_now(h);
	assert_int_equal(f.status_queries, 3);
	f.probe = PROBE_OK;	/* too late for the hung one */
	run_until(l, &hd.calls, 3);
	b = health_get(h, 0);
	assert_int_equal(b->state, HEALTH_SUSPECT);
	/* ... but one follows at once, not after recheck_interval (30 s) */
	run_until(l, &hd.calls, 4);
	assert_int_equal(b->state, HEALTH_UP);
	assert_true(hd.at[3] - hd.at[2] < 2000);
	assert_int_equal(f.status_queries, 4);

	/* asked from the listener itself */
	hd.check_now_at = 5;
	health_check_now(h);
	run_until(l, &hd.calls, 6);
	assert_true(hd.at[5] - hd.at[4] < 2000);
	assert_int_equal(hd.calls, (int)b->checks);

	health_free(h);
	fake_stop(&f);
	loop_free(l);
	free(c);
}

static void
test_health_lost_connection_and_refusal_recheck_at_recheck_interval(void **state)
{
	struct loop *l = loop_new();
	struct fake f;
	struct heard hd = { 0 };
	struct conf *c;
	struct health *h;
	const struct health_backend *b;
	char err[128];
	int i;

	assert_non_null(l);
	fake_start(&f, l);
	c = fake_conf(&f);
	c->health.timeout_ms = 10000;
	h = health_new(l, c, err, sizeof(err));
	assert_non_null(h);
	health_set_listener(h, listener, &hd);
	run_until(l, &hd.calls, 1);
	b = health_get(h, 0);
	assert_int_equal(b->state, HEALTH_UP);

	/* the server closes the idle connection: checked again at once */
	fake_drop_client(&f);
	run_until(l, &hd.calls, 2);
	assert_int_equal(b->state, HEALTH_UP);
	assert_int_equal(f.connects, 2);
	assert_true(hd.at[1] - hd.at[0] < 2000);	/* not the 60 s interval */

	/* gone: refused, and re-checked every recheck_interval (50 ms) */
	fake_stop(&f);
	run_until(l, &hd.calls, 5);
	assert_int_equal(b->state, HEALTH_FAILED);
	assert_non_null(strcasestr(b->error, "connection refused"));
	assert_kept_primary_view(b);
	/* a refusal is seen at once, far from the 10 s timeout */
	assert_true(hd.at[2] - hd.at[1] < 2000);
	for (i = 3; i < 5; i++) {
		assert_true(hd.at[i] - hd.at[i - 1] >= 45);
		assert_true(hd.at[i] - hd.at[i - 1] < 2000);
	}

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
		cmocka_unit_test(test_health_status_marks_primary_unreachable_and_unexpected_role),
		cmocka_unit_test(test_health_timeline_from_walfile_name),
		cmocka_unit_test(test_health_write_probe_latency_rounds_up_to_a_millisecond),
		cmocka_unit_test(test_health_status_query_is_one_statement_and_probe_commits_locally),
		cmocka_unit_test(test_health_refused_backend_goes_suspect_then_failed),
		cmocka_unit_test(test_health_reload_keeps_unchanged_backends),
		cmocka_unit_test(test_health_status_outputs_every_field),
		cmocka_unit_test(test_health_primary_gets_write_probe_standby_never),
		cmocka_unit_test(test_health_write_probe_error_fails_the_check_keeping_the_last_view),
		cmocka_unit_test(test_health_hung_write_probe_times_out),
		cmocka_unit_test(test_health_check_now_rechecks_after_a_check_in_flight),
		cmocka_unit_test(test_health_lost_connection_and_refusal_recheck_at_recheck_interval),
	};

	log_open("test_health", LOG_DEST_STDERR, LOG_LVL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
