/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * hwdog.h - feeding a hardware watchdog (/dev/watchdog) from the event
 * loop: layer 3 of the fencing (DESIGN.md §4.3, doc/failover.md). A daemon
 * whose loop hangs stops feeding it, and the driver resets the host.
 *
 * Restart only: opened once at start ([failover] watchdog_device,
 * watchdog_timeout), disarmed (magic close) when the daemon leaves through
 * its exit path, left armed when the process dies without it.
 */
#ifndef PGVIGIL_FAILOVER_HWDOG_H
#define PGVIGIL_FAILOVER_HWDOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct conf;
struct loop;
struct hwdog;

/* The byte written to keep the watchdog alive; anything but 'V'. */
#define HWDOG_KEEPALIVE_BYTE '.'
/* The magic close character: written last, it disarms the watchdog. */
#define HWDOG_MAGIC_CLOSE 'V'
/* Feeding is never rarer than this, whatever the timeout. */
#define HWDOG_MAX_PERIOD_MS 1000

enum hwdog_kind {
	HWDOG_DEVICE,		/* a character device: the real thing */
	HWDOG_FIFO,		/* a named pipe (tests) */
	HWDOG_FILE,		/* a regular file (tests), appended to */
	HWDOG_REFUSED,		/* anything else: never written to */
};

/*
 * Opens and arms the device named by c's [failover] watchdog_device and
 * starts feeding it; an empty setting gives a handle that does nothing.
 * Never blocks: a FIFO without a reader is an error. On failure returns
 * NULL with the message in err and a hint for the operator in hint.
 */
struct hwdog *hwdog_new(struct loop *loop, const struct conf *c, char *err,
			size_t errlen, char *hint, size_t hintlen);
/*
 * Disarms (writes the magic close character) and closes; NULL is fine.
 * Must be called before the loop is freed (it owns the feeding timer).
 */
void hwdog_free(struct hwdog *h);

bool hwdog_armed(const struct hwdog *h);
/* Keepalive writes done and failed since the start. */
uint64_t hwdog_feeds(const struct hwdog *h);
uint64_t hwdog_failures(const struct hwdog *h);

/* ---- pure parts (unit-tested) ------------------------------------------ */

/* The feeding period for a timeout: a quarter of it, at most 1 s. */
uint64_t hwdog_period_ms(uint32_t timeout_s);
/* What a file of this st_mode is to us. */
enum hwdog_kind hwdog_kind_of(mode_t mode);
const char *hwdog_kind_name(enum hwdog_kind kind);

/* Outcome of the keepalive writes, for logging a change once. */
struct hwdog_writes {
	uint64_t feeds;		/* writes that succeeded */
	uint64_t failures;	/* writes that failed */
	int last_err;		/* errno of the last write, 0 = it succeeded */
};

/*
 * Records one write's outcome (0 or an errno). Returns true when it differs
 * from the previous write's (the first failure, another errno, the first
 * success after failures): the one time it is worth a log line.
 */
bool hwdog_note_write(struct hwdog_writes *w, int err);

#endif
