/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_sdnotify.c - the sd_notify client: the variables are read and
 * removed from the environment, messages reach a path socket and an
 * abstract one ('@'), WATCHDOG_PID of another process turns the keep-alive
 * off, STATUS is sent only when it changes and rides along with READY, and
 * without NOTIFY_SOCKET nothing is sent and nothing fails.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/log.h"
#include "core/sdnotify.h"

/* A bound datagram socket: path, or abstract when name starts with '@'. */
static int
listener(const char *name)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	size_t len = strlen(name);
	socklen_t alen;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	assert_true(fd >= 0);
	memcpy(a.sun_path, name, len);
	if (name[0] == '@') {
		a.sun_path[0] = '\0';
		alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	} else {
		unlink(name);
		alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
	}
	assert_int_equal(bind(fd, (struct sockaddr *)&a, alen), 0);
	return fd;
}

/* The next datagram, or "" when none is waiting. */
static const char *
next(int fd)
{
	static char buf[512];
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);

	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static void
test_sdnotify_path_socket_gets_messages_and_env_is_cleared(void **state)
{
	char path[64];
	int fd;
	struct sdnotify *n;

	(void)state;
	snprintf(path, sizeof(path), "/tmp/test_sdnotify.%d", (int)getpid());
	fd = listener(path);
	setenv("NOTIFY_SOCKET", path, 1);
	setenv("WATCHDOG_USEC", "3000000", 1);
	setenv("WATCHDOG_PID", "", 1);
	n = sdnotify_new();
	assert_non_null(n);
	assert_null(getenv("NOTIFY_SOCKET"));
	assert_null(getenv("WATCHDOG_USEC"));
	assert_null(getenv("WATCHDOG_PID"));
	assert_true(sdnotify_active(n));
	assert_int_equal(sdnotify_watchdog_ms(n), 3000);

	sdnotify_status(n, "peer 1: starting");
	assert_string_equal(next(fd), "");	/* held for READY */
	sdnotify_ready(n, NULL);
	assert_string_equal(next(fd), "READY=1\nSTATUS=peer 1: starting");
	sdnotify_status(n, "peer 1: starting");
	assert_string_equal(next(fd), "");	/* unchanged: not sent */
	sdnotify_status(n, "peer 1: coordinator, term 4");
	assert_string_equal(next(fd), "STATUS=peer 1: coordinator, term 4");
	sdnotify_reloading(n);
	assert_true(strncmp(next(fd), "RELOADING=1\nMONOTONIC_USEC=", 27) == 0);
	sdnotify_reloaded(n);
	assert_string_equal(next(fd), "READY=1");
	sdnotify_stopping(n);
	assert_string_equal(next(fd), "STOPPING=1");
	sdnotify_free(n);
	close(fd);
	unlink(path);
}

static void
test_sdnotify_abstract_socket(void **state)
{
	char name[64];
	int fd;
	struct sdnotify *n;

	(void)state;
	snprintf(name, sizeof(name), "@test_sdnotify/%d", (int)getpid());
	fd = listener(name);
	setenv("NOTIFY_SOCKET", name, 1);
	n = sdnotify_new();
	assert_true(sdnotify_active(n));
	assert_int_equal(sdnotify_watchdog_ms(n), 0);
	assert_int_equal(sdnotify_send(n, "WATCHDOG=1"), 0);
	assert_string_equal(next(fd), "WATCHDOG=1");
	sdnotify_free(n);
	close(fd);
}

static void
test_sdnotify_watchdog_pid_of_another_process_is_ignored(void **state)
{
	char path[64], pid[24];
	int fd;
	struct sdnotify *n;

	(void)state;
	snprintf(path, sizeof(path), "/tmp/test_sdnotify.%d", (int)getpid());
	fd = listener(path);
	setenv("NOTIFY_SOCKET", path, 1);
	setenv("WATCHDOG_USEC", "2000000", 1);
	setenv("WATCHDOG_PID", "1", 1);
	n = sdnotify_new();
	assert_int_equal(sdnotify_watchdog_ms(n), 0);
	sdnotify_free(n);

	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	setenv("NOTIFY_SOCKET", path, 1);
	setenv("WATCHDOG_USEC", "2000000", 1);
	setenv("WATCHDOG_PID", pid, 1);
	n = sdnotify_new();
	assert_int_equal(sdnotify_watchdog_ms(n), 2000);
	assert_null(getenv("WATCHDOG_PID"));
	sdnotify_free(n);
	close(fd);
	unlink(path);
}

static void
test_sdnotify_absent_or_relative_socket_sends_nothing(void **state)
{
	struct sdnotify *n;

	(void)state;
	unsetenv("NOTIFY_SOCKET");
	setenv("WATCHDOG_USEC", "1000000", 1);
	n = sdnotify_new();
	assert_false(sdnotify_active(n));
	assert_int_equal(sdnotify_watchdog_ms(n), 0);
	assert_null(getenv("WATCHDOG_USEC"));
	assert_int_equal(sdnotify_send(n, "READY=1"), 0);
	sdnotify_ready(n, NULL);
	sdnotify_free(n);

	setenv("NOTIFY_SOCKET", "relative/path", 1);
	n = sdnotify_new();
	assert_false(sdnotify_active(n));
	sdnotify_free(n);
	sdnotify_free(NULL);
	assert_false(sdnotify_active(NULL));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sdnotify_path_socket_gets_messages_and_env_is_cleared),
		cmocka_unit_test(test_sdnotify_abstract_socket),
		cmocka_unit_test(test_sdnotify_watchdog_pid_of_another_process_is_ignored),
		cmocka_unit_test(test_sdnotify_absent_or_relative_socket_sends_nothing),
	};

	log_open("test_sdnotify", LOG_DEST_STDERR, LOG_LVL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
