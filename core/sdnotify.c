/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * sdnotify.c - sd_notify(3) spoken directly: one AF_UNIX SOCK_DGRAM
 * socket, one "KEY=VALUE\n..." datagram per notification, sent to the path
 * in $NOTIFY_SOCKET ('@' at its start names the abstract namespace).
 *
 * Why not libsystemd: the protocol is a datagram of text, and the daemon
 * needs five messages of it; a library for that would be one more
 * dependency on every host, systemd or not.
 *
 * Invariants:
 * - the variables are read once and removed from the environment at once
 *   (hooks get an explicit environment anyway; this also covers anything
 *   else that might ever be started);
 * - sending never blocks (a non-blocking socket): a service manager that
 *   does not read is its problem, not the loop's; a failed send is logged
 *   once until one succeeds again;
 * - the keep-alive runs from a timer of the event loop at half the
 *   interval systemd asked for, so that it stops when the loop stops
 *   running, which is what the watchdog is for. It is only fed when
 *   WATCHDOG_PID is unset or names this process (as sd_watchdog_enabled).
 */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/loop.h"
#include "core/sdnotify.h"

#define STATUS_MAX 200

struct sdnotify {
	int fd;				/* -1 when not under a service manager */
	struct sockaddr_un addr;
	socklen_t addrlen;
	uint64_t watchdog_ms;		/* 0 = no keep-alive asked for */
	struct loop_timer *feed;	/* owned by the loop: the keep-alive */
	bool send_failed;		/* the last send failed (logged once) */
	char status[STATUS_MAX];	/* last STATUS sent, or to send with READY */
	bool ready;
};

static int
parse_socket(struct sdnotify *n, const char *path)
{
	size_t len = strlen(path);

	if ((path[0] != '/' && path[0] != '@') || len < 2 ||
	    len > sizeof(n->addr.sun_path) - 1) {
		log_warning("ignoring NOTIFY_SOCKET \"%.100s\": not an absolute path or an abstract name",
			    path);
		return -1;
	}
	memset(&n->addr, 0, sizeof(n->addr));
	n->addr.sun_family = AF_UNIX;
	memcpy(n->addr.sun_path, path, len);
	if (path[0] == '@') {
		/* Abstract: a leading NUL, and the length counts exactly. */
		n->addr.sun_path[0] = '\0';
		n->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	} else {
		n->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
	}
	return 0;
}

static uint64_t
parse_watchdog(const char *usec, const char *pid)
{
	char *end;
	unsigned long long v;

	if (!usec || !usec[0])
		return 0;
	if (pid && pid[0]) {
		errno = 0;
		v = strtoull(pid, &end, 10);
		if (errno || *end || v != (unsigned long long)getpid())
			return 0;	/* meant for another process */
	}
	errno = 0;
	v = strtoull(usec, &end, 10);
	if (errno || *end || v == 0) {
		log_warning("ignoring WATCHDOG_USEC \"%.40s\": not a positive number", usec);
		return 0;
	}
	/* Whole milliseconds, at least one, so the timer does not spin. */
	return v < 1000 ? 1 : v / 1000;
}

struct sdnotify *
sdnotify_new(void)
{
	struct sdnotify *n = calloc(1, sizeof(*n));
	const char *sock = getenv("NOTIFY_SOCKET");

	if (!n)
		return NULL;
	n->fd = -1;
	if (sock && sock[0] && parse_socket(n, sock) == 0) {
		n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (n->fd < 0)
			log_warning("could not create the notification socket: %s",
				    strerror(errno));
	}
	if (n->fd >= 0)
		n->watchdog_ms = parse_watchdog(getenv("WATCHDOG_USEC"),
						getenv("WATCHDOG_PID"));
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	return n;
}

void
sdnotify_free(struct sdnotify *n)
{
	if (!n)
		return;
	loop_timer_free(n->feed);
	if (n->fd >= 0)
		close(n->fd);
	free(n);
}

bool
sdnotify_active(const struct sdnotify *n)
{
	return n && n->fd >= 0;
}

uint64_t
sdnotify_watchdog_ms(const struct sdnotify *n)
{
	return n ? n->watchdog_ms : 0;
}

int
sdnotify_send(struct sdnotify *n, const char *msg)
{
	if (!sdnotify_active(n))
		return 0;
	if (sendto(n->fd, msg, strlen(msg), MSG_NOSIGNAL,
		   (const struct sockaddr *)&n->addr, n->addrlen) < 0) {
		int e = errno;

		if (!n->send_failed)
			log_warning("could not notify the service manager: %s", strerror(e));
		n->send_failed = true;
		errno = e;
		return -1;
	}
	n->send_failed = false;
	return 0;
}

static void
on_feed(struct loop *loop, struct loop_timer *t, void *arg)
{
	struct sdnotify *n = arg;

	(void)loop;
	sdnotify_send(n, "WATCHDOG=1");
	loop_timer_in(t, n->watchdog_ms / 2 ? n->watchdog_ms / 2 : 1);
}

void
sdnotify_ready(struct sdnotify *n, struct loop *loop)
{
	char msg[STATUS_MAX + 32];

	if (!sdnotify_active(n))
		return;
	n->ready = true;
	if (n->status[0])
		snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", n->status);
	else
		snprintf(msg, sizeof(msg), "READY=1");
	sdnotify_send(n, msg);
	if (n->watchdog_ms && !n->feed && loop) {
		n->feed = loop_timer_new(loop, on_feed, n);
		if (!n->feed) {
			log_error("out of memory: the service manager's watchdog is not fed");
			return;
		}
		log_info("feeding the service manager's watchdog every %" PRIu64 " ms",
			 n->watchdog_ms / 2 ? n->watchdog_ms / 2 : 1);
		on_feed(loop, n->feed, n);
	}
}

void
sdnotify_reloading(struct sdnotify *n)
{
	struct timespec ts;
	char msg[64];

	if (!sdnotify_active(n))
		return;
	/* systemd wants CLOCK_MONOTONIC here, to order it against its own. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%" PRIu64,
		 (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
	sdnotify_send(n, msg);
}

void
sdnotify_reloaded(struct sdnotify *n)
{
	sdnotify_send(n, "READY=1");
}

void
sdnotify_stopping(struct sdnotify *n)
{
	sdnotify_send(n, "STOPPING=1");
}

void
sdnotify_status(struct sdnotify *n, const char *text)
{
	char msg[STATUS_MAX + 16];

	if (!sdnotify_active(n) || strncmp(n->status, text, sizeof(n->status) - 1) == 0)
		return;
	snprintf(n->status, sizeof(n->status), "%s", text);
	/* Before READY the line goes out with it: one datagram fewer. */
	if (!n->ready)
		return;
	snprintf(msg, sizeof(msg), "STATUS=%s", n->status);
	sdnotify_send(n, msg);
}
