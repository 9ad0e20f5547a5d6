/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_hwdog.c - the hardware watchdog feeder: the feeding period, which
 * files it writes to, failed writes logged once per change, the settings
 * and their checks; and, against a FIFO and a regular file on the real
 * event loop, keepalive bytes at the period and the magic close at the end,
 * a FIFO without a reader or a missing path refused without blocking,
 * /dev/null refused as no watchdog.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/loop.h"
#include "failover/hwdog.h"

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

/* A configuration for hwdog_new: only [failover] is read. */
static void
conf_for(struct conf *c, char *path, int64_t timeout_ms)
{
	memset(c, 0, sizeof(*c));
	c->fo.watchdog_device = path;
	c->fo.watchdog_timeout_ms = timeout_ms;
}

/* Runs the loop for ms milliseconds. */
static void
run_for(struct loop *l, uint64_t ms)
{
	uint64_t end = clock_now_ms() + ms;

	while (clock_now_ms() < end)
		assert_int_equal(loop_run_once(l, 20), 0);
}

/* Everything a non-blocking reader can read now, appended to buf. */
static size_t
drain(int fd, char *buf, size_t len, size_t have)
{
	ssize_t n;

	while (have < len && (n = read(fd, buf + have, len - have)) > 0)
		have += (size_t)n;
	return have;
}

static size_t
count(const char *buf, size_t n, char c)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++)
		k += buf[i] == c;
	return k;
}

struct tmp {
	char dir[64];
	char path[128];
};

static void
tmp_make(struct tmp *t, const char *name)
{
	snprintf(t->dir, sizeof(t->dir), "/tmp/test_hwdog.XXXXXX");
	assert_non_null(mkdtemp(t->dir));
	snprintf(t->path, sizeof(t->path), "%s/%s", t->dir, name);
}

static void
tmp_remove(struct tmp *t)
{
	unlink(t->path);
	rmdir(t->dir);
}

/* ---- pure parts -------------------------------------------------------- */

static void
test_hwdog_period_is_a_quarter_of_the_timeout_at_most_one_second(void **s)
{
	(void)s;
	assert_int_equal(hwdog_period_ms(1), 250);
	assert_int_equal(hwdog_period_ms(2), 500);
	assert_int_equal(hwdog_period_ms(3), 750);
	assert_int_equal(hwdog_period_ms(4), 1000);
	assert_int_equal(hwdog_period_ms(10), 1000);
	assert_int_equal(hwdog_period_ms(3600), 1000);
	assert_int_equal(hwdog_period_ms(UINT32_MAX), 1000);
	/* A driver that reports 0 s must not make the timer spin. */
	assert_int_equal(hwdog_period_ms(0), 1);
}

static void
test_hwdog_writes_only_to_char_devices_fifos_and_regular_files(void **s)
{
	(void)s;
	assert_int_equal(hwdog_kind_of(S_IFCHR | 0600), HWDOG_DEVICE);
	assert_int_equal(hwdog_kind_of(S_IFIFO | 0600), HWDOG_FIFO);
	assert_int_equal(hwdog_kind_of(S_IFREG | 0644), HWDOG_FILE);
	/* A block device is a disk: never a byte written to it. */
	assert_int_equal(hwdog_kind_of(S_IFBLK | 0660), HWDOG_REFUSED);
	assert_int_equal(hwdog_kind_of(S_IFDIR | 0755), HWDOG_REFUSED);
	assert_int_equal(hwdog_kind_of(S_IFSOCK | 0777), HWDOG_REFUSED);
	assert_int_equal(hwdog_kind_of(S_IFLNK | 0777), HWDOG_REFUSED);
	assert_string_equal(hwdog_kind_name(HWDOG_DEVICE), "device");
	assert_string_equal(hwdog_kind_name(HWDOG_FIFO), "fifo");
	assert_string_equal(hwdog_kind_name(HWDOG_FILE), "file");
}

static void
test_hwdog_failed_writes_counted_and_logged_once_per_change(void **s)
{
	struct hwdog_writes w = { 0 };

	(void)s;
	assert_false(hwdog_note_write(&w, 0));		/* ok after ok: quiet */
	assert_false(hwdog_note_write(&w, 0));
	assert_true(hwdog_note_write(&w, EPIPE));	/* first failure */
	assert_false(hwdog_note_write(&w, EPIPE));	/* the same again */
	assert_false(hwdog_note_write(&w, EPIPE));
	assert_true(hwdog_note_write(&w, EIO));		/* another reason */
	assert_true(hwdog_note_write(&w, 0));		/* recovered */
	assert_false(hwdog_note_write(&w, 0));
	assert_int_equal(w.feeds, 4);
	assert_int_equal(w.failures, 4);
	assert_int_equal(w.last_err, 0);
}

/* ---- settings ---------------------------------------------------------- */

static void
test_hwdog_settings_default_off_and_restart_only(void **s)
{
	struct conf_errors errs = { 0 }, changed = { 0 };
	struct conf *cur = load(CLUSTER PEERS, &errs);
	struct conf *fresh = load(CLUSTER "[failover]\nwatchdog_device = /dev/watchdog\n"
				  "watchdog_timeout = 30s\n" PEERS, &errs);

	(void)s;
	assert_non_null(cur);
	assert_non_null(fresh);
	assert_string_equal(cur->fo.watchdog_device, "");
	assert_int_equal(cur->fo.watchdog_timeout_ms, 10000);
	assert_int_equal(conf_keep_restart_only(cur, fresh, &changed), 2);
	assert_string_equal(changed.msgs[0], "failover.watchdog_device");
	assert_string_equal(changed.msgs[1], "failover.watchdog_timeout");
	assert_string_equal(fresh->fo.watchdog_device, "");	/* kept */
	assert_int_equal(fresh->fo.watchdog_timeout_ms, 10000);	/* kept */
	conf_errors_clear(&changed);
	conf_free(fresh);
	conf_free(cur);
}

static void
test_hwdog_settings_checked(void **s)
{
	static const struct {
		const char *text;
		const char *error;	/* NULL: valid */
	} cases[] = {
		{ "watchdog_device = dev/watchdog\n",
		  "t.conf:6: invalid value \"dev/watchdog\" for \"watchdog_device\": expected an absolute path" },
		{ "watchdog_timeout = 500ms\n",
		  "t.conf:6: value 500ms for \"watchdog_timeout\" is out of range (1s to 1h)" },
		{ "watchdog_timeout = 1500ms\n",
		  "t.conf:6: watchdog_timeout (1500ms) is not a whole number of seconds: a watchdog driver counts in seconds" },
		/* Not longer than stall_threshold: refused, but only with a device. */
		{ "watchdog_device = /dev/watchdog\nwatchdog_timeout = 1s\n[watchdog]\nstall_threshold = 1s\n"
		  "election_timeout_min = 3s\nelection_timeout_max = 4s\nlease = 2s\n",
		  "t.conf:7: watchdog_timeout (1s) must be longer than stall_threshold (1s): a pause the daemon survives must not reset the host; keep it well above" },
		{ "watchdog_timeout = 1s\n[watchdog]\nstall_threshold = 1s\n"
		  "election_timeout_min = 3s\nelection_timeout_max = 4s\nlease = 2s\n", NULL },
		{ "watchdog_device = /dev/watchdog\nwatchdog_timeout = 1s\n", NULL },
	};

	(void)s;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct conf_errors errs = { 0 };
		char text[1024];
		struct conf *c;

		snprintf(text, sizeof(text), CLUSTER "[failover]\n%s" PEERS, cases[i].text);
		c = load(text, &errs);
		if (errs.n != (cases[i].error ? 1u : 0u) ||
		    (cases[i].error && strcmp(errs.msgs[0], cases[i].error) != 0))
			for (size_t k = 0; k < errs.n; k++)
				print_message("  case %zu: %s\n", i, errs.msgs[k]);
		if (cases[i].error) {
			assert_null(c);
			assert_int_equal(errs.n, 1);
			assert_string_equal(errs.msgs[0], cases[i].error);
		} else {
			assert_non_null(c);
			assert_int_equal(errs.n, 0);
		}
		conf_free(c);
		conf_errors_clear(&errs);
	}
}

/* ---- against files ----------------------------------------------------- */

static void
test_hwdog_off_when_no_device_is_set(void **s)
{
	struct loop *l = loop_new();
	struct conf c;
	char err[256], hint[256];
	struct hwdog *h;

	(void)s;
	conf_for(&c, (char *)"", 10000);
	h = hwdog_new(l, &c, err, sizeof(err), hint, sizeof(hint));
	assert_non_null(h);
	assert_false(hwdog_armed(h));
	run_for(l, 50);
	assert_int_equal(hwdog_feeds(h), 0);
	hwdog_free(h);
	hwdog_free(NULL);
	loop_free(l);
}

static void
test_hwdog_feeds_a_fifo_at_the_period_and_disarms_with_magic_close(void **s)
{
	struct loop *l = loop_new();
	struct tmp t;
	struct conf c;
	char err[256], hint[256], buf[4096];
	struct hwdog *h;
	size_t n;
	int rfd;

	(void)s;
	tmp_make(&t, "wd.fifo");
	assert_int_equal(mkfifo(t.path, 0600), 0);
	rfd = open(t.path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	assert_true(rfd >= 0);
	conf_for(&c, t.path, 1000);	/* period 250 ms */
	h = hwdog_new(l, &c, err, sizeof(err), hint, sizeof(hint));
	if (!h)
		print_message("  %s (%s)\n", err, hint);
	assert_non_null(h);
	assert_true(hwdog_armed(h));
	/* The first keepalive is written at once, when it is armed. */
	n = drain(rfd, buf, sizeof(buf), 0);
	assert_int_equal(n, 1);
	assert_int_equal(buf[0], HWDOG_KEEPALIVE_BYTE);
	/*
	 * 1 + 1100 / 250 = 5 bytes; one late timer is allowed for a slow
	 * machine, a period twice as long (3 bytes) is not.
	 */
	run_for(l, 1100);
	n = drain(rfd, buf, sizeof(buf), n);
	assert_true(n >= 4);
	assert_true(n <= 6);
	assert_int_equal(count(buf, n, HWDOG_KEEPALIVE_BYTE), n);
	assert_int_equal(hwdog_feeds(h), n);
	assert_int_equal(hwdog_failures(h), 0);
	/* The loop not running: nothing is written. */
	usleep(600 * 1000);
	assert_int_equal(drain(rfd, buf, sizeof(buf), n), n);
	/* It runs again: the overdue keepalive goes out at once. */
	assert_int_equal(loop_run_once(l, 20), 0);
	n = drain(rfd, buf, sizeof(buf), n);
	assert_int_equal(buf[n - 1], HWDOG_KEEPALIVE_BYTE);
	/* The end: 'V' last. */
	hwdog_free(h);
	n = drain(rfd, buf, sizeof(buf), n);
	assert_int_equal(buf[n - 1], HWDOG_MAGIC_CLOSE);
	assert_int_equal(count(buf, n, HWDOG_MAGIC_CLOSE), 1);
	close(rfd);
	loop_free(l);
	tmp_remove(&t);
}

static void
test_hwdog_fifo_without_reader_is_refused_without_blocking(void **s)
{
	struct loop *l = loop_new();
	struct tmp t;
	struct conf c;
	char err[256], hint[256];
	uint64_t t0;

	(void)s;
	tmp_make(&t, "wd.fifo");
	assert_int_equal(mkfifo(t.path, 0600), 0);
	conf_for(&c, t.path, 10000);
	t0 = clock_now_ms();
	/* An open that waits for a reader would hang: SIGALRM ends the test. */
	alarm(10);
	assert_null(hwdog_new(l, &c, err, sizeof(err), hint, sizeof(hint)));
	alarm(0);
	assert_true(clock_now_ms() - t0 < 1000);
	assert_non_null(strstr(err, t.path));
	assert_non_null(strstr(err, strerror(ENXIO)));
	assert_non_null(strstr(hint, "open it for reading"));
	loop_free(l);
	tmp_remove(&t);
}

static void
test_hwdog_missing_path_is_refused_naming_it(void **s)
{
	struct loop *l = loop_new();
	struct conf c;
	char err[256], hint[256];

	(void)s;
	conf_for(&c, (char *)"/nonexistent/watchdog", 10000);
	assert_null(hwdog_new(l, &c, err, sizeof(err), hint, sizeof(hint)));
	assert_string_equal(err, "could not open watchdog device \"/nonexistent/watchdog\": No such file or directory");
	assert_non_null(strstr(hint, "load the driver"));
	loop_free(l);
}

static void
test_hwdog_char_device_that_is_no_watchdog_is_refused(void **s)
{
	struct loop *l = loop_new();
	struct conf c;
	char err[256], hint[256];

	(void)s;
	conf_for(&c, (char *)"/dev/null", 10000);
	assert_null(hwdog_new(l, &c, err, sizeof(err), hint, sizeof(hint)));
	assert_non_null(strstr(err, "\"/dev/null\" is not a watchdog device"));
	assert_non_null(strstr(hint, "/dev/watchdog"));
	loop_free(l);
}

static void
test_hwdog_directory_is_refused(void **s)
{
	struct loop *l = loop_new();
	struct conf c;
	char err[256], hint[256];

	(void)s;
	conf_for(&c, (char *)"/tmp", 10000);
	assert_null(hwdog_new(l, &c, err, sizeof(err), hint, sizeof(hint)));
	assert_non_null(strstr(err, "\"/tmp\""));
	loop_free(l);
}

static void
test_hwdog_regular_file_is_appended_to_never_overwritten(void **s)
{
	struct loop *l = loop_new();
	struct tmp t;
	struct conf c;
	char err[256], hint[256], buf[256];
	struct hwdog *h;
	ssize_t n;
	int fd;

	(void)s;
	tmp_make(&t, "wd.file");
	fd = open(t.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "keep\n", 5), 5);
	close(fd);
	conf_for(&c, t.path, 1000);
	h = hwdog_new(l, &c, err, sizeof(err), hint, sizeof(hint));
	assert_non_null(h);
	run_for(l, 300);
	hwdog_free(h);
	fd = open(t.path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	n = read(fd, buf, sizeof(buf));
	close(fd);
	assert_true(n >= 5 + 2 + 1);
	assert_memory_equal(buf, "keep\n", 5);
	assert_int_equal(count(buf + 5, (size_t)n - 6, HWDOG_KEEPALIVE_BYTE), (size_t)n - 6);
	assert_int_equal(buf[n - 1], HWDOG_MAGIC_CLOSE);
	loop_free(l);
	tmp_remove(&t);
}

/* Counts event lines in what was written to fd 2 while f captured it. */
static size_t
count_in(FILE *f, const char *needle)
{
	char line[1024];
	size_t k = 0;

	rewind(f);
	while (fgets(line, sizeof(line), f))
		k += strstr(line, needle) != NULL;
	return k;
}

static void
test_hwdog_lost_reader_counted_logged_once_and_recovered(void **s)
{
	struct loop *l = loop_new();
	struct tmp t;
	struct conf c;
	char err[256], hint[256], buf[64];
	struct hwdog *h;
	FILE *cap = tmpfile();
	int rfd, saved;
	uint64_t failed;

	(void)s;
	assert_non_null(cap);
	tmp_make(&t, "wd.fifo");
	assert_int_equal(mkfifo(t.path, 0600), 0);
	rfd = open(t.path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	assert_true(rfd >= 0);
	conf_for(&c, t.path, 1000);
	/* Event lines are at info level: capture stderr for this test. */
	fflush(stderr);
	saved = dup(2);
	assert_true(saved >= 0);
	assert_int_equal(dup2(fileno(cap), 2), 2);
	log_set_level(LOG_LVL_INFO);
	h = hwdog_new(l, &c, err, sizeof(err), hint, sizeof(hint));
	assert_non_null(h);
	close(rfd);		/* writes fail with EPIPE from now on */
	run_for(l, 900);
	failed = hwdog_failures(h);
	rfd = open(t.path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	assert_true(rfd >= 0);
	run_for(l, 600);
	drain(rfd, buf, sizeof(buf), 0);
	hwdog_free(h);
	log_set_level(LOG_LVL_ERROR);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	assert_true(failed >= 2);
	assert_int_equal(hwdog_failures(NULL), 0);
	assert_int_equal(count_in(cap, "event=hw-watchdog-armed "), 1);
	assert_int_equal(count_in(cap, "event=hw-watchdog-feed-failed "), 1);
	assert_int_equal(count_in(cap, "reason=\"Broken pipe\""), 1);
	assert_int_equal(count_in(cap, "event=hw-watchdog-feed-resumed "), 1);
	assert_int_equal(count_in(cap, "event=hw-watchdog-disarmed "), 1);
	fclose(cap);
	close(rfd);
	loop_free(l);
	tmp_remove(&t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hwdog_period_is_a_quarter_of_the_timeout_at_most_one_second),
		cmocka_unit_test(test_hwdog_writes_only_to_char_devices_fifos_and_regular_files),
		cmocka_unit_test(test_hwdog_failed_writes_counted_and_logged_once_per_change),
		cmocka_unit_test(test_hwdog_settings_default_off_and_restart_only),
		cmocka_unit_test(test_hwdog_settings_checked),
		cmocka_unit_test(test_hwdog_off_when_no_device_is_set),
		cmocka_unit_test(test_hwdog_feeds_a_fifo_at_the_period_and_disarms_with_magic_close),
		cmocka_unit_test(test_hwdog_fifo_without_reader_is_refused_without_blocking),
		cmocka_unit_test(test_hwdog_missing_path_is_refused_naming_it),
		cmocka_unit_test(test_hwdog_char_device_that_is_no_watchdog_is_refused),
		cmocka_unit_test(test_hwdog_directory_is_refused),
		cmocka_unit_test(test_hwdog_regular_file_is_appended_to_never_overwritten),
		cmocka_unit_test(test_hwdog_lost_reader_counted_logged_once_and_recovered),
	};

	log_open("test_hwdog", LOG_DEST_STDERR, LOG_LVL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
