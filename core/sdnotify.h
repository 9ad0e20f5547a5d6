/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * sdnotify.h - the service manager's notification protocol (sd_notify(3))
 * without libsystemd: READY, RELOADING, STOPPING, STATUS and the watchdog
 * keep-alive, as datagrams to $NOTIFY_SOCKET.
 *
 * Outside systemd (no NOTIFY_SOCKET) every call does nothing.
 */
#ifndef PGVIGIL_SDNOTIFY_H
#define PGVIGIL_SDNOTIFY_H

#include <stdbool.h>
#include <stdint.h>

struct loop;
struct sdnotify;

/*
 * Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID and removes them
 * from the environment, so that no child (a hook) talks to the service
 * manager in our name. An unusable NOTIFY_SOCKET is logged and ignored.
 * Returns NULL only when out of memory.
 */
struct sdnotify *sdnotify_new(void);
/* Closes the socket and stops the keep-alive timer; NULL is fine. */
void sdnotify_free(struct sdnotify *n);

/* True when a notification socket is set. */
bool sdnotify_active(const struct sdnotify *n);
/* The watchdog interval asked for in WATCHDOG_USEC, in ms; 0 for none. */
uint64_t sdnotify_watchdog_ms(const struct sdnotify *n);

/*
 * Start-up finished: READY=1, with the STATUS line set so far. Also starts
 * the keep-alive (WATCHDOG=1 every half interval) from a timer of loop,
 * so a loop that hangs stops feeding it.
 */
void sdnotify_ready(struct sdnotify *n, struct loop *loop);
/* SIGHUP: RELOADING=1 with MONOTONIC_USEC; sdnotify_reloaded sends READY=1. */
void sdnotify_reloading(struct sdnotify *n);
void sdnotify_reloaded(struct sdnotify *n);
/* A stop signal: STOPPING=1. */
void sdnotify_stopping(struct sdnotify *n);
/* STATUS=text (one short line); sent only when it changed. */
void sdnotify_status(struct sdnotify *n, const char *text);

/* Formats and sends one notification message as is; 0, or -1 with errno. */
int sdnotify_send(struct sdnotify *n, const char *msg);

#endif
