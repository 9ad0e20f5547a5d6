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
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/conf.h"
#include "ctl/ctl.h"

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
		"  pgvigilctl [-s SOCKET | -c FILE] status [--json]\n"
		"  pgvigilctl [-s SOCKET | -c FILE] pause | resume | rejoin ID\n"
		"  pgvigilctl --version | --help\n\n"
		"Commands:\n"
		"  status              show this peer's view of the cluster\n"
		"  pause               maintenance mode: no automatic failover; the VIP stays\n"
		"  resume              leave maintenance mode\n"
		"  rejoin ID           run rejoin_command for backend ID, a failed old\n"
		"                      primary, so it can be a standby (and a candidate) again\n\n"
		"Options:\n"
		"  -s, --socket SOCKET control socket of the daemon\n"
		"  -c, --config FILE   use the control_socket setting of this file\n"
		"      --json          print the status as JSON (schema in pgvigilctl(8))\n"
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

/* Maps the reply to output and exit status. */
static int
report(const char *path, const char *reply, size_t len)
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
		if (fwrite(body, 1, bodylen, stdout) != bodylen || fflush(stdout) != 0) {
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

int
main(int argc, char **argv)
{
	enum { OPT_JSON = 256 };
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "config", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "version", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *sock = NULL, *config = NULL, *req;
	char reqbuf[64];
	char *owned = NULL, *reply;
	bool json = false, implicit = false;
	uint64_t deadline;
	size_t len;
	int c, fd, rc;

	while ((c = getopt_long(argc, argv, "s:c:vh", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			sock = optarg;
			break;
		case 'c':
			config = optarg;
			break;
		case OPT_JSON:
			json = true;
			break;
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
	if (sock && config)
		return usage_error("-s and -c cannot be used together");
	if (strcmp(argv[optind], "status") == 0) {
		if (optind + 1 < argc)
			return usage_error("unexpected argument \"%s\"", argv[optind + 1]);
		req = json ? "status json\n" : "status\n";
	} else if (strcmp(argv[optind], "pause") == 0 ||
		   strcmp(argv[optind], "resume") == 0) {
		if (optind + 1 < argc)
			return usage_error("unexpected argument \"%s\"", argv[optind + 1]);
		if (json)
			return usage_error("--json goes with status only");
		snprintf(reqbuf, sizeof(reqbuf), "%s\n", argv[optind]);
		req = reqbuf;
	} else if (strcmp(argv[optind], "rejoin") == 0) {
		char *end;
		long id;

		if (optind + 1 >= argc)
			return usage_error("rejoin needs the backend id");
		if (optind + 2 < argc)
			return usage_error("unexpected argument \"%s\"", argv[optind + 2]);
		id = strtol(argv[optind + 1], &end, 10);
		if (*end || end == argv[optind + 1] || id < 1 || id > 255)
			return usage_error("backend id \"%s\" is not a number from 1 to 255",
					   argv[optind + 1]);
		if (json)
			return usage_error("--json goes with status only");
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

	deadline = clock_now_ms() + CTL_TIMEOUT_MS;
	fd = connect_to(sock, deadline);
	if (fd < 0) {
		free(owned);
		return EXIT_UNREACHABLE;
	}
	rc = EXIT_UNREACHABLE;
	if (send_request(fd, sock, req, deadline) == 0) {
		reply = read_reply(fd, sock, deadline, &len);
		if (reply) {
			rc = report(sock, reply, len);
			free(reply);
		}
	}
	close(fd);
	free(owned);
	return rc;
}
