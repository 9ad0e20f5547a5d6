/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * hwdog.c - the hardware watchdog: layer 3 of the fencing (DESIGN.md §4.3).
 *
 * The election and the VIP rely on timers: a coordinator whose lease runs
 * out drops the VIP, one next to the primary stops it (self_fence). A
 * daemon that hangs runs no timer at all, and keeps whatever it held. With
 * watchdog_device set, a timer of the event loop writes one byte to the
 * device every watchdog_timeout / 4 (at most every second); a loop that
 * stalls stops feeding it, and after watchdog_timeout the driver resets the
 * host, which ends its primary and its VIP for good. It is never counted as
 * the fence of a failover: nobody can tell from outside when it fired.
 *
 * Invariants:
 * - Opening never blocks: O_NONBLOCK for the open (a FIFO without a
 *   reader fails with ENXIO instead of waiting for one), cleared after, so
 *   that a write is a plain write as the watchdog API expects.
 * - Only a character device gets the watchdog ioctls, and only one that
 *   answers WDIOC_GETSUPPORT is kept (a tty or /dev/null is refused). A FIFO
 *   or a regular file (appended to, never overwritten) is accepted for
 *   tests; anything else (a block device above all) is never written to.
 * - Every way out through hwdog_free disarms it: the magic close character
 *   'V', then close. Only a process that dies without its exit path (kill
 *   -9, a crash) or hangs leaves it armed: that is the point. A start error
 *   after the device was opened disarms it too.
 * - A failed keepalive write is counted, and logged when the outcome
 *   changes, not at every period.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/watchdog.h>

#include "core/conf.h"
#include "core/log.h"
#include "core/loop.h"
#include "failover/hwdog.h"

struct hwdog {
	struct loop *loop;	/* borrowed */
	struct loop_timer *feed_t;	/* owned by the loop */
	char *path;		/* owned; NULL when off */
	int fd;			/* -1 when off */
	enum hwdog_kind kind;
	uint32_t timeout_s;	/* what the driver accepted (the setting for tests) */
	uint64_t period_ms;
	struct hwdog_writes w;
};

/* ---- pure parts ------------------------------------------------------- */

uint64_t
hwdog_period_ms(uint32_t timeout_s)
{
	uint64_t p = (uint64_t)timeout_s * 1000 / 4;

	if (p > HWDOG_MAX_PERIOD_MS)
		p = HWDOG_MAX_PERIOD_MS;
	/* A driver that reports 0 s must still not make the timer spin. */
	return p ? p : 1;
}

enum hwdog_kind
hwdog_kind_of(mode_t mode)
{
	if (S_ISCHR(mode))
		return HWDOG_DEVICE;
	if (S_ISFIFO(mode))
		return HWDOG_FIFO;
	if (S_ISREG(mode))
		return HWDOG_FILE;
	return HWDOG_REFUSED;
}

const char *
hwdog_kind_name(enum hwdog_kind kind)
{
	switch (kind) {
	case HWDOG_DEVICE:
		return "device";
	case HWDOG_FIFO:
		return "fifo";
	case HWDOG_FILE:
		return "file";
	case HWDOG_REFUSED:
		break;
	}
	return "refused";
}

bool
hwdog_note_write(struct hwdog_writes *w, int err)
{
	bool changed = err != w->last_err;

	if (err)
		w->failures++;
	else
		w->feeds++;
	w->last_err = err;
	return changed;
}

/* ---- I/O -------------------------------------------------------------- */

/* One byte; returns 0 or the errno. Signals are read by a signalfd, but a
 * stray EINTR is retried once rather than counted as a failure. */
static int
write_byte(int fd, char b)
{
	for (int i = 0; i < 2; i++) {
		ssize_t n = write(fd, &b, 1);

		if (n == 1)
			return 0;
		if (n < 0 && errno == EINTR)
			continue;
		return n < 0 ? errno : EIO;
	}
	return EINTR;
}

static void
feed(struct hwdog *h)
{
	int err = write_byte(h->fd, HWDOG_KEEPALIVE_BYTE);

	if (!hwdog_note_write(&h->w, err))
		return;
	if (err)
		log_event("hw-watchdog-feed-failed",
			  "device=%s failures=%" PRIu64 " reason=\"%s\"", h->path,
			  h->w.failures, strerror(err));
	else
		log_event("hw-watchdog-feed-resumed",
			  "device=%s failures=%" PRIu64, h->path, h->w.failures);
}

static void
on_feed(struct loop *loop, struct loop_timer *t, void *arg)
{
	struct hwdog *h = arg;

	(void)loop;
	feed(h);
	loop_timer_in(t, h->period_ms);
}

/*
 * Disarms and closes. On a start error the device may be one that never
 * answered as a watchdog; then it is only closed.
 */
static void
disarm(struct hwdog *h, bool log_it)
{
	int err;

	if (h->fd < 0)
		return;
	err = write_byte(h->fd, HWDOG_MAGIC_CLOSE);
	if (err)
		log_warning("could not write the magic close character to watchdog device \"%s\": %s; it stays armed and resets the host after %" PRIu32 " s",
			    h->path, strerror(err), h->timeout_s);
	else if (log_it)
		log_event("hw-watchdog-disarmed",
			  "device=%s feeds=%" PRIu64 " failures=%" PRIu64, h->path,
			  h->w.feeds, h->w.failures);
	close(h->fd);
	h->fd = -1;
}

static const char *
open_hint(int err, const char *path)
{
	struct stat st;

	switch (err) {
	case ENOENT:
		return "load the driver of the host's watchdog (softdog if it has none), or leave watchdog_device empty";
	case EBUSY:
		return "a watchdog device is opened by one process at a time: stop the other user (watchdog(8), systemd's RuntimeWatchdogSec=) or leave watchdog_device empty";
	case EACCES:
	case EPERM:
	case EROFS:
		return "pgvigil needs write access to the device";
	case ENXIO:
		if (stat(path, &st) == 0 && S_ISFIFO(st.st_mode))
			return "a FIFO is written to only while something has it open for reading; open it for reading before pgvigil starts";
		return "the device has no driver behind it; load the driver of the host's watchdog";
	default:
		return "check watchdog_device in the [failover] section";
	}
}

/*
 * The ioctls of a character device: it must be a watchdog, and gets the
 * configured timeout if its driver can take one. Returns 0, or -1 with
 * err/hint set.
 */
static int
setup_device(struct hwdog *h, uint32_t want_s, char *err, size_t errlen,
	     char *hint, size_t hintlen)
{
	struct watchdog_info info;
	int t = (int)want_s, got = 0;

	memset(&info, 0, sizeof(info));
	if (ioctl(h->fd, WDIOC_GETSUPPORT, &info) < 0) {
		snprintf(err, errlen, "\"%s\" is not a watchdog device: %s", h->path,
			 strerror(errno));
		snprintf(hint, hintlen, "set watchdog_device to the host's watchdog, usually /dev/watchdog or /dev/watchdog0");
		/* Not a watchdog: nothing to disarm, and no 'V' for a tty. */
		close(h->fd);
		h->fd = -1;
		return -1;
	}
	log_debug("watchdog device \"%s\" is \"%.32s\", options 0x%x", h->path,
		  (const char *)info.identity, info.options);
	if (ioctl(h->fd, WDIOC_SETTIMEOUT, &t) < 0) {
		if (errno != EOPNOTSUPP && (info.options & WDIOF_SETTIMEOUT)) {
			snprintf(err, errlen, "could not set the timeout of watchdog device \"%s\" to %" PRIu32 " s: %s",
				 h->path, want_s, strerror(errno));
			snprintf(hint, hintlen, "choose a watchdog_timeout the driver accepts (see its module parameters)");
			return -1;
		}
		log_warning("the driver of watchdog device \"%s\" cannot change its timeout; it keeps its own",
			    h->path);
	}
	if (ioctl(h->fd, WDIOC_GETTIMEOUT, &got) < 0 || got <= 0) {
		log_warning("could not read the timeout of watchdog device \"%s\"; assuming %" PRIu32 " s",
			    h->path, want_s);
		got = (int)want_s;
	}
	if ((uint32_t)got != want_s)
		log_warning("the driver of watchdog device \"%s\" set a timeout of %d s, not the %" PRIu32 " s of watchdog_timeout",
			    h->path, got, want_s);
	h->timeout_s = (uint32_t)got;
	if (!(info.options & WDIOF_MAGICCLOSE))
		log_warning("the driver of watchdog device \"%s\" has no magic close: a pgvigil that crashes disarms it too, only a hung one resets the host",
			    h->path);
	return 0;
}

struct hwdog *
hwdog_new(struct loop *loop, const struct conf *c, char *err, size_t errlen,
	  char *hint, size_t hintlen)
{
	struct hwdog *h = calloc(1, sizeof(*h));
	const char *path = c->fo.watchdog_device;
	uint32_t want_s = (uint32_t)(c->fo.watchdog_timeout_ms / 1000);
	struct stat st;
	int fl;

	if (hint && hintlen)
		hint[0] = '\0';
	if (!h) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->loop = loop;
	h->fd = -1;
	if (!path || !path[0])
		return h;
	h->path = strdup(path);
	h->feed_t = loop_timer_new(loop, on_feed, h);
	if (!h->path || !h->feed_t) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	h->timeout_s = want_s;
	h->fd = open(path, O_WRONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (h->fd < 0) {
		int e = errno;

		snprintf(err, errlen, "could not open watchdog device \"%s\": %s", path,
			 strerror(e));
		snprintf(hint, hintlen, "%s", open_hint(e, path));
		goto fail;
	}
	if (fstat(h->fd, &st) < 0) {
		int e = errno;

		snprintf(err, errlen, "could not stat watchdog device \"%s\": %s", path,
			 strerror(e));
		snprintf(hint, hintlen, "%s", open_hint(e, path));
		close(h->fd);
		h->fd = -1;
		goto fail;
	}
	h->kind = hwdog_kind_of(st.st_mode);
	if (h->kind == HWDOG_REFUSED) {
		snprintf(err, errlen, "watchdog device \"%s\" is not a character device", path);
		snprintf(hint, hintlen, "set watchdog_device to the host's watchdog, usually /dev/watchdog or /dev/watchdog0");
		close(h->fd);
		h->fd = -1;
		goto fail;
	}
	/* Writes are plain writes from now on; a regular file is only appended to. */
	fl = fcntl(h->fd, F_GETFL);
	if (fl < 0 || fcntl(h->fd, F_SETFL, (fl & ~O_NONBLOCK) |
			    (h->kind == HWDOG_FILE ? O_APPEND : 0)) < 0) {
		int e = errno;

		snprintf(err, errlen, "could not set the flags of watchdog device \"%s\": %s",
			 path, strerror(e));
		snprintf(hint, hintlen, "%s", open_hint(e, path));
		disarm(h, false);
		goto fail;
	}
	if (h->kind == HWDOG_DEVICE) {
		if (setup_device(h, want_s, err, errlen, hint, hintlen) < 0) {
			disarm(h, false);
			goto fail;
		}
	} else {
		log_debug("watchdog device \"%s\" is a %s, not a character device: no timeout is set on it (a test setup)",
			  path, h->kind == HWDOG_FIFO ? "FIFO" : "regular file");
	}
	h->period_ms = hwdog_period_ms(h->timeout_s);
	/* Opening armed it: the first keepalive goes out now. */
	feed(h);
	loop_timer_in(h->feed_t, h->period_ms);
	log_event("hw-watchdog-armed",
		  "device=%s timeout_s=%" PRIu32 " period_ms=%" PRIu64 " kind=%s",
		  path, h->timeout_s, h->period_ms, hwdog_kind_name(h->kind));
	return h;
fail:
	loop_timer_free(h->feed_t);
	free(h->path);
	free(h);
	return NULL;
}

void
hwdog_free(struct hwdog *h)
{
	if (!h)
		return;
	disarm(h, true);
	loop_timer_free(h->feed_t);
	free(h->path);
	free(h);
}

bool
hwdog_armed(const struct hwdog *h)
{
	return h && h->fd >= 0;
}

uint64_t
hwdog_feeds(const struct hwdog *h)
{
	return h ? h->w.feeds : 0;
}

uint64_t
hwdog_failures(const struct hwdog *h)
{
	return h ? h->w.failures : 0;
}
