/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * pgvigilctl.c - the operator's client of the daemon's control socket
 * (pgvigilctl(8)).
 *
 * It sends one request line, reads the reply until the daemon closes the
 * connection, and maps the reply's first line to its exit status: "ok"
 * prints the body and exits 0, "error: ..." prints the message on stderr
 * and exits 1. 2 is a usage or configuration error, 3 means the daemon
 * could not be reached or gave no usable reply, so a script can tell "the
 * cluster says no" from "nobody answered".
 *
 * Blocking I/O is fine in a command line tool, but not without an end:
 * the whole exchange has one deadline (CTL_TIMEOUT_MS), enforced by
 * SO_SNDTIMEO for connect (a Unix connect waits on a full backlog) and by
 * poll for the rest.
 *
 * The socket is found, first match wins, from -s, from the configuration
 * file given with -c, from $PGVIGIL_SOCKET, from the default configuration
 * file if there is one, else at the daemon's compiled-in default. The
 * daemon's default socket lives in its state_dir, so a configuration that
 * moves state_dir moves the socket: reading the file is the only way to
 * find it without making the operator repeat the path.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/conf.h"
#include "ctl/ctl.h"
#include "ctl/evview.h"

#define DEFAULT_CONF PGVIGIL_SYSCONFDIR "/pgvigil/pgvigil.conf"
/* conf_control_socket() of a file that sets neither state_dir nor control_socket. */
#define DEFAULT_SOCKET PGVIGIL_LOCALSTATEDIR "/lib/pgvigil/pgvigil.sock"

#define EXIT_OK 0
#define EXIT_REFUSED 1		/* the daemon answered "error: ..." */
#define EXIT_USAGE 2
#define EXIT_UNREACHABLE 3

/* A status reply is a few kilobytes; this only stops a runaway peer. */
#define MAX_REPLY (16u << 20)

static const char *progname = "pgvigilctl";

static void
usage(FILE *out)
{
	fprintf(out,
		"pgvigilctl talks to a running pgvigil through its control socket.\n\n"
		"Usage:\n"
		"  pgvigilctl [-s SOCKET | -c FILE] status [--json] [-w [SECONDS] [-n COUNT]]\n"
		"  pgvigilctl [-s SOCKET | -c FILE] events [-n COUNT] [--since WHEN] [-f] [--json]\n"
		"  pgvigilctl [-s SOCKET | -c FILE] pause | resume | rejoin ID\n"
		"  pgvigilctl [-s SOCKET | -c FILE] switchover [--to ID] [--dry-run] [--no-wait]\n"
		"  pgvigilctl [-s SOCKET | -c FILE] failover [--to ID] [--force] [--dry-run] [--no-wait]\n"
		"  pgvigilctl [-s SOCKET | -c FILE] fence ID [--yes]\n"
		"  pgvigilctl --version | --help\n\n"
		"Commands:\n"
		"  status              show this peer's view of the cluster\n"
		"  events              the event history; each failover as a timeline\n"
		"  pause               maintenance mode: no automatic failover; the VIP stays\n"
		"  resume              leave maintenance mode\n"
		"  rejoin ID           run rejoin_command for backend ID, a failed old\n"
		"                      primary, so it can be a standby (and a candidate) again\n"
		"  switchover          planned change of primary with no data loss: checks,\n"
		"                      clean stop of the primary, the target gets all WAL,\n"
		"                      promotion, the old primary follows, the VIP moves\n"
		"  failover            replace the primary now (fenced first); --force also\n"
		"                      promotes a standby beyond max_lag (writes are lost)\n"
		"  fence ID            run fence_command against backend ID (asks to confirm)\n\n"
		"Options:\n"
		"  -s, --socket SOCKET control socket of the daemon (events: repeat it to\n"
		"                      merge the histories of several daemons)\n"
		"  -c, --config FILE   use the control_socket setting of this file\n"
		"      --json          print JSON (schemas in pgvigilctl(8))\n"
		"  -w, --watch[=SECONDS] status: print it again every SECONDS (2) until Ctrl-C\n"
		"  -n, --count COUNT   status -w: stop after COUNT; events: the last COUNT\n"
		"      --since WHEN    events since WHEN: 30s, 10m, 2h, 1d ago, or a UTC\n"
		"                      time 2026-11-26T09:00[:00]\n"
		"  -f, --follow        events: then print new ones as they happen\n"
		"      --to ID         switchover/failover: the standby to promote (default:\n"
		"                      the most advanced eligible one)\n"
		"      --dry-run       print the checks and what would be done; do nothing\n"
		"      --no-wait       do not follow the steps until the end\n"
		"      --timeout SECS  how long to follow them (default 120)\n"
		"      --force         failover: accept losing writes beyond max_lag\n"
		"      --yes           fence: do not ask for confirmation\n"
		"  -v, --version       print the version and exit\n"
		"  -h, --help          print this help and exit\n\n"
		"Without -s or -c the socket is $PGVIGIL_SOCKET, else the one\n"
		"%s names if it exists, else\n"
		"%s.\n\n"
		"Exit status: 0 ok, 1 the daemon reported an error, 2 usage or\n"
		"configuration error, 3 the daemon could not be reached. See pgvigilctl(8).\n",
		DEFAULT_CONF, DEFAULT_SOCKET);
}

static int __attribute__((format(printf, 1, 2)))
usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry \"%s --help\" for more information.\n", progname);
	return EXIT_USAGE;
}

/* Milliseconds left until deadline, at least 0, as poll wants them. */
static int
remaining(uint64_t deadline)
{
	uint64_t now = clock_now_ms();

	return now >= deadline ? 0 : (int)(deadline - now);
}

static void
connect_failed(const char *path, const char *why, int err)
{
	fprintf(stderr, "%s: could not connect to pgvigil at \"%s\": %s\n",
		progname, path, why);
	if (err == EACCES || err == EPERM)
		fprintf(stderr, "hint: only root and the user pgvigil runs as may use its control socket\n");
	else
		fprintf(stderr, "hint: is pgvigil running? Name its socket with -s, or its configuration file with -c\n");
}

/* Connects with a deadline; returns the fd or -1 after printing why. */
static int
connect_to(const char *path, uint64_t deadline)
{
	struct sockaddr_un sun;
	struct timeval tv;
	int ms = remaining(deadline);
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		connect_failed(path, "path too long for a Unix socket", 0);
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		connect_failed(path, strerror(errno), errno);
		return -1;
	}
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	while (connect(fd, (const struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int err = errno;

		if (err == EINTR)
			continue;
		connect_failed(path, err == EAGAIN || err == EINPROGRESS ?
			       "timed out" : strerror(err), err);
		close(fd);
		return -1;
	}
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
		connect_failed(path, strerror(errno), errno);
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * Sends the request. A daemon that refuses us (permission, too many
 * connections) may close before we are done: that is not an error here,
 * since its reply is waiting to be read.
 */
static int
send_request(int fd, const char *path, const char *req, uint64_t deadline)
{
	size_t off = 0, len = strlen(req);

	while (off < len) {
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		ssize_t n = send(fd, req + off, len - off, MSG_NOSIGNAL);

		if (n >= 0) {
			off += (size_t)n;
			continue;
		}
		if (errno == EPIPE || errno == ECONNRESET)
			return 0;
		if (errno != EAGAIN && errno != EINTR) {
			fprintf(stderr, "%s: could not send request to pgvigil at \"%s\": %s\n",
				progname, path, strerror(errno));
			return -1;
		}
		if (errno == EAGAIN && poll(&p, 1, remaining(deadline)) == 0) {
			fprintf(stderr, "%s: timed out sending request to pgvigil at \"%s\"\n",
				progname, path);
			return -1;
		}
	}
	return 0;
}

/* Reads until the daemon closes; returns the reply (owned) or NULL. */
static char *
read_reply(int fd, const char *path, uint64_t deadline, size_t *lenp)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap + 1);

	if (!buf) {
		fprintf(stderr, "%s: out of memory\n", progname);
		return NULL;
	}
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;
		int rc = poll(&p, 1, remaining(deadline));

		if (rc < 0 && errno == EINTR)
			continue;
		if (rc == 0) {
			fprintf(stderr, "%s: timed out waiting for a reply from pgvigil at \"%s\"\n",
				progname, path);
			goto fail;
		}
		if (len == cap) {
			char *nb;

			if (cap >= MAX_REPLY) {
				fprintf(stderr, "%s: reply from pgvigil at \"%s\" is larger than %u bytes\n",
					progname, path, MAX_REPLY);
				goto fail;
			}
			cap *= 2;
			nb = realloc(buf, cap + 1);
			if (!nb) {
				fprintf(stderr, "%s: out of memory\n", progname);
				goto fail;
			}
			buf = nb;
		}
		n = recv(fd, buf + len, cap - len, 0);
		if (n > 0) {
			len += (size_t)n;
			continue;
		}
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		/*
		 * A reset after data still ends the reply: on a Unix socket
		 * nothing the daemon wrote before closing is lost.
		 */
		if (n == 0 || (errno == ECONNRESET && len > 0))
			break;
		fprintf(stderr, "%s: could not read reply from pgvigil at \"%s\": %s\n",
			progname, path, strerror(errno));
		goto fail;
	}
	buf[len] = '\0';
	*lenp = len;
	return buf;
fail:
	free(buf);
	return NULL;
}

/* Prints an ok reply's body; returns 0, or -1 when the output failed. */
typedef int (*body_printer)(const char *body, size_t len, void *arg);

/* Maps the reply to output and exit status; print NULL: the body as is. */
static int
report_with(const char *path, const char *reply, size_t len, body_printer print,
	    void *arg)
{
	const char *nl = memchr(reply, '\n', len);
	size_t first = nl ? (size_t)(nl - reply) : len;
	const char *body = nl ? nl + 1 : reply + len;
	size_t bodylen = len - (size_t)(body - reply);

	if (len == 0) {
		fprintf(stderr, "%s: pgvigil at \"%s\" closed the connection without a reply\n",
			progname, path);
		return EXIT_UNREACHABLE;
	}
	if (first == 2 && memcmp(reply, "ok", 2) == 0) {
		if ((print ? print(body, bodylen, arg) < 0 :
		     fwrite(body, 1, bodylen, stdout) != bodylen) ||
		    fflush(stdout) != 0) {
			fprintf(stderr, "%s: could not write output: %s\n", progname,
				strerror(errno));
			return EXIT_REFUSED;
		}
		return EXIT_OK;
	}
	if (first >= 7 && memcmp(reply, "error: ", 7) == 0) {
		fprintf(stderr, "%s: %.*s\n", progname, (int)(first - 7), reply + 7);
		fwrite(body, 1, bodylen, stderr);
		return EXIT_REFUSED;
	}
	fprintf(stderr, "%s: unexpected reply from pgvigil at \"%s\": \"%.*s\"\n",
		progname, path, (int)(first > 80 ? 80 : first), reply);
	return EXIT_UNREACHABLE;
}

static int
report(const char *path, const char *reply, size_t len)
{
	return report_with(path, reply, len, NULL, NULL);
}

/* One request and its reply, mapped to the exit status by report(). */
static int
ask(const char *sock, const char *req, body_printer print, void *arg)
{
	uint64_t deadline = clock_now_ms() + CTL_TIMEOUT_MS;
	int fd = connect_to(sock, deadline);
	int rc = EXIT_UNREACHABLE;
	char *reply;
	size_t len;

	if (fd < 0)
		return EXIT_UNREACHABLE;
	if (send_request(fd, sock, req, deadline) == 0) {
		reply = read_reply(fd, sock, deadline, &len);
		if (reply) {
			rc = report_with(sock, reply, len, print, arg);
			free(reply);
		}
	}
	close(fd);
	return rc;
}

struct collected {
	char *buf;		/* owned: the bodies, one after another */
	size_t len;
};

static int
collect(const char *body, size_t len, void *arg)
{
	struct collected *c = arg;
	char *nb = realloc(c->buf, c->len + len + 1);

	if (!nb)
		return -1;
	memcpy(nb + c->len, body, len);
	c->len += len;
	nb[c->len] = '\0';
	c->buf = nb;
	return 0;
}

/* An ok reply's body (owned, NUL-terminated) in *bodyp; an error is printed. */
static int
ask_text(const char *sock, const char *req, char **bodyp)
{
	struct collected c = { NULL, 0 };
	int rc = ask(sock, req, collect, &c);

	if (rc == EXIT_OK && !c.buf)
		c.buf = strdup("");
	if (rc == EXIT_OK && !c.buf) {
		fprintf(stderr, "%s: out of memory\n", progname);
		rc = EXIT_UNREACHABLE;
	}
	*bodyp = c.buf;
	return rc;
}

/*
 * The control socket a configuration file names; NULL after printing why.
 * implicit: the file was not named on the command line.
 */
static char *
socket_from_config(const char *file, bool implicit)
{
	struct conf_errors errs = { 0 };
	struct conf *conf = conf_load(file, &errs);
	char buf[4096], *path;

	if (!conf) {
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.msgs[i]);
		conf_errors_clear(&errs);
		fprintf(stderr, "%s: could not find the control socket in \"%s\"\n",
			progname, file);
		if (implicit)
			fprintf(stderr, "hint: name the socket with -s to ask the running daemon anyway\n");
		return NULL;
	}
	conf_control_socket(conf, buf, sizeof(buf));
	conf_free(conf);
	path = strdup(buf);
	if (!path)
		fprintf(stderr, "%s: out of memory\n", progname);
	return path;
}

/* A backend id from the command line; -1 after the usage error. */
static int
parse_backend_id(const char *s, long *id)
{
	char *end;

	*id = strtol(s, &end, 10);
	if (*end || end == s || *id < 1 || *id > 255) {
		usage_error("backend id \"%s\" is not a number from 1 to 255", s);
		return -1;
	}
	return 0;
}

/* The progress line's fields ("failover=T.N step=... ..."). */
struct progress {
	char failover[48], step[16], kind[16];
	unsigned primary, old, candidate, target;
	unsigned long op_applied, op_sent;
	long coordinator;
	bool ok;
};

static void
parse_progress(const char *text, struct progress *p)
{
	const char *l = strstr(text, "failover=");

	memset(p, 0, sizeof(*p));
	if (!l)
		return;
	p->ok = sscanf(l, "failover=%47s step=%15s kind=%15s primary=%u old=%u candidate=%u target=%u op_applied=%lu op_sent=%lu coordinator=%ld",
		       p->failover, p->step, p->kind, &p->primary, &p->old, &p->candidate,
		       &p->target, &p->op_applied, &p->op_sent, &p->coordinator) == 10;
}

/*
 * Follows a switchover or failover this command asked for, by polling the
 * daemon, printing each step as it changes; 0 when it ended with `want`
 * (or any new primary when 0) as the primary.
 */
static int
follow_steps(const char *sock, const struct progress *start, unsigned want,
	     uint64_t timeout_ms)
{
	uint64_t t0 = clock_now_ms(), end = t0 + timeout_ms;
	char last[96] = "";
	bool started = false;

	while (clock_now_ms() < end) {
		struct progress p;
		char *reply = NULL, now[96];

		if (ask_text(sock, "progress\n", &reply) != EXIT_OK) {
			free(reply);
			return EXIT_UNREACHABLE;
		}
		parse_progress(reply, &p);
		free(reply);
		if (!p.ok) {
			fprintf(stderr, "%s: unexpected progress reply\n", progname);
			return EXIT_UNREACHABLE;
		}
		if (strcmp(p.failover, start->failover) != 0)
			started = true;
		snprintf(now, sizeof(now), "%s %s %u %u", p.failover, p.step, p.candidate, p.primary);
		if (started && strcmp(now, last) != 0) {
			printf("+%6" PRIu64 " ms  %s %s: step %s, old primary %u, candidate %u, primary %u\n",
			       clock_now_ms() - t0, p.kind, p.failover, p.step, p.old,
			       p.candidate, p.primary);
			fflush(stdout);
			snprintf(last, sizeof(last), "%s", now);
		}
		if (started && strcmp(p.step, "none") == 0) {
			if (want && p.primary != want) {
				fprintf(stderr, "%s: it ended with backend %u as the primary, not %u\n",
					progname, p.primary, want);
				return EXIT_REFUSED;
			}
			printf("done: backend %u is the primary\n", p.primary);
			return EXIT_OK;
		}
		if (!started && p.op_applied >= start->op_sent && start->op_sent) {
			fprintf(stderr, "%s: the coordinator (peer %ld) refused it: its checks failed; \"pgvigilctl events\" on that peer says why\n",
				progname, p.coordinator);
			return EXIT_REFUSED;
		}
		usleep(50 * 1000);
	}
	fprintf(stderr, "%s: not finished within %" PRIu64 " s; it goes on: see pgvigilctl status\n",
		progname, timeout_ms / 1000);
	return EXIT_REFUSED;
}

/* ---- events, --follow, --watch ------------------------------------ */

/*
 * --since: "30s", "10m", "2h", "1d" ago, or a UTC time
 * "YYYY-MM-DDTHH:MM[:SS]" (a space for the T, a trailing Z, are fine).
 * Milliseconds since the epoch into *out; -1 when it is neither.
 */
static int
parse_since(const char *s, uint64_t *out)
{
	struct timespec now;
	struct tm tm;
	char *end;
	unsigned long long v;
	int used = 0;

	clock_gettime(CLOCK_REALTIME, &now);
	if (s[0] >= '0' && s[0] <= '9' && !strchr(s, '-')) {
		static const struct { char unit; uint64_t ms; } units[] = {
			{ 's', 1000 }, { 'm', 60000 }, { 'h', 3600000 }, { 'd', 86400000 },
		};

		v = strtoull(s, &end, 10);
		for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
			uint64_t nowms = (uint64_t)now.tv_sec * 1000u +
				(uint64_t)now.tv_nsec / 1000000u;

			if (end[0] != units[i].unit || end[1] || v > 100000000ULL)
				continue;
			*out = nowms > v * units[i].ms ? nowms - v * units[i].ms : 0;
			return 0;
		}
		return -1;
	}
	memset(&tm, 0, sizeof(tm));
	if (sscanf(s, "%4d-%2d-%2d%*1[T ]%2d:%2d%n", &tm.tm_year, &tm.tm_mon,
		   &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &used) != 5)
		return -1;
	s += used;
	if (s[0] == ':') {
		used = 0;
		if (sscanf(s, ":%2d%n", &tm.tm_sec, &used) != 1)
			return -1;
		s += used;
	}
	if (s[0] == 'Z')
		s++;
	if (s[0] || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 ||
	    tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
		return -1;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	time_t t = timegm(&tm);

	if (t < 0)
		return -1;
	*out = (uint64_t)t * 1000u;
	return 0;
}

static int
print_events(const char *body, size_t len, void *arg)
{
	return evview_print(body, len, *(bool *)arg, stdout);
}

/*
 * events --follow: the reply's first line within the deadline, then the
 * stream for as long as the daemon sends it (until it stops, or Ctrl-C).
 */
static int
follow_events(const char *sock, const char *req, bool json)
{
	uint64_t deadline = clock_now_ms() + CTL_TIMEOUT_MS;
	struct evview_stream st = { 0 };
	char buf[EVLOG_LINE_MAX * 2];
	size_t have = 0;
	bool first = true;
	int fd = connect_to(sock, deadline);

	if (fd < 0)
		return EXIT_UNREACHABLE;
	if (send_request(fd, sock, req, deadline) < 0) {
		close(fd);
		return EXIT_UNREACHABLE;
	}
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		char *nl;
		ssize_t n;
		int rc = poll(&p, 1, first ? remaining(deadline) : -1);

		if (rc < 0 && errno == EINTR)
			continue;
		if (rc == 0) {
			fprintf(stderr, "%s: timed out waiting for a reply from pgvigil at \"%s\"\n",
				progname, sock);
			close(fd);
			return EXIT_UNREACHABLE;
		}
		n = recv(fd, buf + have, sizeof(buf) - 1 - have, 0);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0) {
			close(fd);
			if (first) {
				/* an error reply, or nothing: report() says which */
				buf[have] = '\0';
				return report(sock, buf, have);
			}
			fprintf(stderr, "%s: pgvigil at \"%s\" closed the stream\n",
				progname, sock);
			return EXIT_UNREACHABLE;
		}
		have += (size_t)n;
		while ((nl = memchr(buf, '\n', have))) {
			size_t ll = (size_t)(nl - buf) + 1;

			*nl = '\0';
			if (first) {
				if (strcmp(buf, "ok") != 0) {
					*nl = '\n';
					/* the rest of an error reply, then report it */
					while (have < sizeof(buf) - 1 &&
					       (n = recv(fd, buf + have, sizeof(buf) - 1 - have, 0)) > 0)
						have += (size_t)n;
					close(fd);
					buf[have] = '\0';
					return report(sock, buf, have);
				}
				first = false;
			} else {
				evview_stream_line(&st, buf, json, stdout);
			}
			memmove(buf, buf + ll, have - ll);
			have -= ll;
		}
		if (have == sizeof(buf) - 1)
			have = 0;	/* longer than any event line: dropped */
	}
}

/* Event lines sort by their time, which leads each of them (fixed width). */
static int
by_time(const void *a, const void *b)
{
	const char *const *x = a, *const *y = b;
	int c = strncmp(*x, *y, 24);

	/* equal times keep their order: a daemon's own, then socket order */
	return c ? c : (*x < *y ? -1 : *x > *y);
}

/*
 * events with several -s: the histories of several daemons in one, in
 * time order, so a failover handed from one coordinator to another reads
 * as one timeline.
 */
static int
merged_events(const char *sock, const char *const *more, size_t nmore,
	      const char *req, bool json)
{
	struct collected c = { 0 };
	char **lines = NULL, *out = NULL;
	size_t n = 0, cap = 0, len = 0;
	int rc = EXIT_OK;

	for (size_t i = 0; i <= nmore && rc == EXIT_OK; i++)
		rc = ask(i ? more[i - 1] : sock, req, collect, &c);
	if (rc != EXIT_OK || !c.buf) {
		free(c.buf);
		return rc;
	}
	for (char *p = c.buf; *p;) {
		char *nl = strchr(p, '\n');

		if (n == cap) {
			char **nb = realloc(lines, (cap = cap ? cap * 2 : 1024) * sizeof(*lines));

			if (!nb)
				goto oom;
			lines = nb;
		}
		lines[n++] = p;
		if (!nl)
			break;
		*nl = '\0';
		p = nl + 1;
	}
	qsort(lines, n, sizeof(*lines), by_time);
	out = malloc(c.len + 2);
	if (!out)
		goto oom;
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(lines[i]);

		memcpy(out + len, lines[i], l);
		len += l;
		out[len++] = '\n';
	}
	if (evview_print(out, len, json, stdout) < 0 || fflush(stdout) != 0) {
		fprintf(stderr, "%s: could not write output: %s\n", progname, strerror(errno));
		rc = EXIT_REFUSED;
	}
	free(out);
	free(lines);
	free(c.buf);
	return rc;
oom:
	fprintf(stderr, "%s: out of memory\n", progname);
	free(lines);
	free(c.buf);
	return EXIT_REFUSED;
}

/*
 * status -w: the status again every interval, count times (0: until
 * Ctrl-C), each under a line that says when; with --json only the
 * documents, one per line, for a script to read as they come.
 */
static int
watch(const char *sock, const char *req, unsigned interval, unsigned long count,
      bool json)
{
	bool tty = isatty(STDOUT_FILENO);
	int rc = EXIT_OK;

	for (unsigned long i = 0; count == 0 || i < count; i++) {
		struct timespec ts = { .tv_sec = (time_t)interval };
		time_t now;
		struct tm tm;
		char stamp[32];

		if (i > 0)
			while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
				;
		now = time(NULL);
		gmtime_r(&now, &tm);
		strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S UTC", &tm);
		/* Clear the screen on a terminal; a blank line between otherwise. */
		if (!json)
			printf("%severy %us: pgvigilctl status    %s\n\n",
			       tty ? "\033[H\033[2J" : i > 0 ? "\n" : "", interval, stamp);
		fflush(stdout);
		rc = ask(sock, req, NULL, NULL);
	}
	return rc;
}

int
main(int argc, char **argv)
{
	enum { OPT_JSON = 256, OPT_TO, OPT_DRY, OPT_NOWAIT, OPT_FORCE, OPT_YES, OPT_TIMEOUT,
	       OPT_SINCE };
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "config", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "watch", optional_argument, NULL, 'w' },
		{ "count", required_argument, NULL, 'n' },
		{ "since", required_argument, NULL, OPT_SINCE },
		{ "follow", no_argument, NULL, 'f' },
		{ "to", required_argument, NULL, OPT_TO },
		{ "dry-run", no_argument, NULL, OPT_DRY },
		{ "no-wait", no_argument, NULL, OPT_NOWAIT },
		{ "force", no_argument, NULL, OPT_FORCE },
		{ "yes", no_argument, NULL, OPT_YES },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "version", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *sock = NULL, *config = NULL, *req;
	/* events: -s more than once merges the histories of several daemons */
	const char *more[15];
	size_t nmore = 0;
	char reqbuf[128];
	const char *watch_arg = NULL, *count_arg = NULL, *since_arg = NULL;
	bool watching = false, following = false, events = false;
	unsigned long count = 0, interval = 2;
	uint64_t since = 0;
	char *owned = NULL, *reply;
	bool json = false, implicit = false;
	bool dry = false, nowait = false, force = false, yes = false, opsopt = false;
	const char *to = NULL;
	long to_id = 0, timeout_s = 120;
	bool follow = false;
	int c, rc;

	while ((c = getopt_long(argc, argv, "s:c:w::n:fvh", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (sock && nmore < sizeof(more) / sizeof(more[0]))
				more[nmore++] = optarg;
			else if (sock)
				return usage_error("at most %zu sockets",
						   sizeof(more) / sizeof(more[0]) + 1);
			else
				sock = optarg;
			break;
		case 'c':
			config = optarg;
			break;
		case OPT_JSON:
			json = true;
			break;
		case 'w':
			watching = true;
			watch_arg = optarg;
			break;
		case 'n':
			count_arg = optarg;
			break;
		case OPT_SINCE:
			since_arg = optarg;
			break;
		case 'f':
			following = true;
			break;
		case OPT_TO:
			to = optarg;
			opsopt = true;
			break;
		case OPT_DRY:
			dry = opsopt = true;
			break;
		case OPT_NOWAIT:
			nowait = opsopt = true;
			break;
		case OPT_FORCE:
			force = opsopt = true;
			break;
		case OPT_YES:
			yes = opsopt = true;
			break;
		case OPT_TIMEOUT: {
			char *end;

			timeout_s = strtol(optarg, &end, 10);
			if (*end || end == optarg || timeout_s < 1 || timeout_s > 86400)
				return usage_error("--timeout \"%s\" is not a number of seconds from 1 to 86400",
						   optarg);
			opsopt = true;
			break;
		}
		case 'v':
			printf("pgvigilctl %s\n", PGVIGIL_VERSION);
			return EXIT_OK;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			fprintf(stderr, "Try \"%s --help\" for more information.\n",
				progname);
			return EXIT_USAGE;
		}
	}
	if (optind == argc)
		return usage_error("no command given");
	if (nmore && (strcmp(argv[optind], "events") != 0 || following))
		return usage_error("-s more than once goes with events (without -f) only");
	if (sock && config)
		return usage_error("-s and -c cannot be used together");
	if (count_arg) {
		char *end;

		errno = 0;
		count = strtoul(count_arg, &end, 10);
		if (errno || *end || end == count_arg || count < 1 || count > 1000000)
			return usage_error("count \"%s\" is not a number from 1 to 1000000",
					   count_arg);
	}
	if (since_arg && parse_since(since_arg, &since) < 0)
		return usage_error("--since \"%s\" is neither a time ago (30s, 10m, 2h, 1d) nor a UTC time (2026-11-26T09:00)",
				   since_arg);
	if ((watching || count_arg || since_arg || following) &&
	    strcmp(argv[optind], "status") != 0 && strcmp(argv[optind], "events") != 0)
		return usage_error("-w, -n, --since and -f go with status or events only");
	if (to && parse_backend_id(to, &to_id) < 0)
		return EXIT_USAGE;
	if (strcmp(argv[optind], "switchover") == 0 || strcmp(argv[optind], "failover") == 0) {
		bool sw = argv[optind][0] == 's';

		if (optind + 1 < argc)
			return usage_error("unexpected argument \"%s\" (the target goes with --to)",
					   argv[optind + 1]);
		if (json || yes || (sw && force))
			return usage_error("%s takes --to, --dry-run, --no-wait, --timeout%s",
					   argv[optind], sw ? "" : " and --force");
		snprintf(reqbuf, sizeof(reqbuf), "%s", argv[optind]);
		if (to_id)
			snprintf(reqbuf + strlen(reqbuf), sizeof(reqbuf) - strlen(reqbuf), " %ld", to_id);
		if (force)
			strcat(reqbuf, " force");
		if (dry)
			strcat(reqbuf, " dry-run");
		strcat(reqbuf, "\n");
		req = reqbuf;
		follow = !dry && !nowait;
	} else if (opsopt && strcmp(argv[optind], "fence") != 0) {
		return usage_error("--to, --dry-run, --no-wait, --timeout, --force and --yes go with switchover, failover or fence");
	} else if (strcmp(argv[optind], "fence") == 0) {
		char answer[16];
		long id;

		if (optind + 1 >= argc)
			return usage_error("fence needs the backend id");
		if (optind + 2 < argc)
			return usage_error("unexpected argument \"%s\"", argv[optind + 2]);
		if (parse_backend_id(argv[optind + 1], &id) < 0)
			return EXIT_USAGE;
		if (json || to || dry || nowait || force)
			return usage_error("fence takes only --yes");
		if (!yes) {
			if (!isatty(STDIN_FILENO))
				return usage_error("fence needs --yes when not run from a terminal");
			printf("This runs fence_command against backend %ld (it may power its host off)\n"
			       "and flags it needs-rejoin. Type the backend id to confirm: ", id);
			fflush(stdout);
			if (!fgets(answer, sizeof(answer), stdin) ||
			    strtol(answer, NULL, 10) != id) {
				fprintf(stderr, "%s: not confirmed; nothing was done\n", progname);
				return EXIT_REFUSED;
			}
		}
		snprintf(reqbuf, sizeof(reqbuf), "fence %ld\n", id);
		req = reqbuf;
	} else if (strcmp(argv[optind], "status") == 0) {
		/* "-w 5": getopt leaves an optional argument's separate word alone */
		if (watching && !watch_arg && optind + 1 < argc &&
		    argv[optind + 1][0] >= '0' && argv[optind + 1][0] <= '9')
			watch_arg = argv[++optind];
		if (optind + 1 < argc)
			return usage_error("unexpected argument \"%s\"", argv[optind + 1]);
		if (since_arg || following)
			return usage_error("--since and -f go with events only");
		if (count_arg && !watching)
			return usage_error("-n goes with status -w");
		if (watch_arg) {
			char *end;

			errno = 0;
			interval = strtoul(watch_arg, &end, 10);
			if (errno || *end || end == watch_arg || interval < 1 || interval > 86400)
				return usage_error("watch interval \"%s\" is not a number of seconds from 1 to 86400",
						   watch_arg);
		}
		req = json ? "status json\n" : "status\n";
	} else if (strcmp(argv[optind], "events") == 0) {
		int n;

		if (optind + 1 < argc)
			return usage_error("unexpected argument \"%s\"", argv[optind + 1]);
		if (watching)
			return usage_error("-w goes with status only");
		n = snprintf(reqbuf, sizeof(reqbuf), "events");
		if (count_arg)
			n += snprintf(reqbuf + n, sizeof(reqbuf) - (size_t)n, " n=%lu", count);
		else if (following)
			n += snprintf(reqbuf + n, sizeof(reqbuf) - (size_t)n, " n=10");
		if (since_arg)
			n += snprintf(reqbuf + n, sizeof(reqbuf) - (size_t)n, " since=%llu",
				      (unsigned long long)since);
		snprintf(reqbuf + n, sizeof(reqbuf) - (size_t)n, "%s\n",
			 following ? " follow" : "");
		req = reqbuf;
		events = true;
	} else if (strcmp(argv[optind], "pause") == 0 ||
		   strcmp(argv[optind], "resume") == 0) {
		if (optind + 1 < argc)
			return usage_error("unexpected argument \"%s\"", argv[optind + 1]);
		if (json)
			return usage_error("--json goes with status and events only");
		snprintf(reqbuf, sizeof(reqbuf), "%s\n", argv[optind]);
		req = reqbuf;
	} else if (strcmp(argv[optind], "rejoin") == 0) {
		long id;

		if (optind + 1 >= argc)
			return usage_error("rejoin needs the backend id");
		if (optind + 2 < argc)
			return usage_error("unexpected argument \"%s\"", argv[optind + 2]);
		if (parse_backend_id(argv[optind + 1], &id) < 0)
			return EXIT_USAGE;
		if (json)
			return usage_error("--json goes with status and events only");
		snprintf(reqbuf, sizeof(reqbuf), "rejoin %ld\n", id);
		req = reqbuf;
	} else {
		return usage_error("unknown command \"%s\"", argv[optind]);
	}

	if (!sock && !config) {
		sock = getenv("PGVIGIL_SOCKET");
		if (sock && !sock[0])
			sock = NULL;
	}
	if (!sock && !config && access(DEFAULT_CONF, F_OK) == 0)
		implicit = true;
	if (!sock && (config || implicit)) {
		owned = socket_from_config(implicit ? DEFAULT_CONF : config, implicit);
		if (!owned)
			return EXIT_USAGE;
		sock = owned;
	}
	if (!sock)
		sock = DEFAULT_SOCKET;

	if (follow) {
		struct progress before, sent;

		/* The failover number before the request: a new one is ours. */
		rc = ask_text(sock, "progress\n", &reply);
		if (rc == EXIT_OK)
			parse_progress(reply, &before);
		free(reply);
		reply = NULL;
		if (rc == EXIT_OK && !before.ok) {
			fprintf(stderr, "%s: unexpected progress reply\n", progname);
			rc = EXIT_UNREACHABLE;
		}
		if (rc == EXIT_OK)
			rc = ask_text(sock, req, &reply);
		if (rc == EXIT_OK) {
			const char *body = reply;

			/* The checks and what was asked; the progress line is ours. */
			for (const char *l = body; *l;) {
				const char *nl = strchr(l, '\n');
				size_t n = nl ? (size_t)(nl - l) + 1 : strlen(l);

				if (strncmp(l, "failover=", 9) != 0)
					fwrite(l, 1, n, stdout);
				l += n;
			}
			fflush(stdout);
			parse_progress(body, &sent);
			before.op_sent = sent.ok ? sent.op_sent : 0;
			rc = sent.ok ? follow_steps(sock, &before, (unsigned)to_id,
						    (uint64_t)timeout_s * 1000) : EXIT_UNREACHABLE;
		}
		free(reply);
		free(owned);
		return rc;
	}
	if (following || events || watching) {
		if (following)
			rc = follow_events(sock, req, json);
		else if (events && nmore)
			rc = merged_events(sock, more, nmore, req, json);
		else if (events)
			rc = ask(sock, req, print_events, &json);
		else
			rc = watch(sock, req, (unsigned)interval, count, json);
		free(owned);
		return rc;
	}
	rc = ask(sock, req, NULL, NULL);
	free(owned);
	return rc;
}
