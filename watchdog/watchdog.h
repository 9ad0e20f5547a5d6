/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * watchdog.h - the watchdog's I/O: the UDP socket, the election's timer,
 * the durable vote file, the fence hook, and the status report. The
 * decisions are in elect.c; this file only carries out their effects.
 */
#ifndef PGVIGIL_WATCHDOG_H
#define PGVIGIL_WATCHDOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct conf;
struct loop;
struct hook_runner;
struct watchdog;

/*
 * Starts the watchdog of peer self, speaking as boot boot_id (increasing
 * from one start to the next, see daemon.c): binds its UDP socket, reads the durable
 * term and vote (a corrupt file is an error), loads the key, and arms the
 * timer. conf, loop and hooks are borrowed and must outlive it. on_fatal is
 * called when the vote file cannot be written: a peer that cannot make its
 * vote durable must not take part (S5). Returns NULL with err set.
 */
struct watchdog *watchdog_new(struct loop *loop, const struct conf *conf,
			      int64_t self, uint64_t boot_id,
			      struct hook_runner *hooks,
			      void (*on_fatal)(void *arg), void *arg,
			      char *err, size_t errlen);
/* A new configuration took effect (only reloadable settings differ). */
void watchdog_reload(struct watchdog *w, const struct conf *conf);
/* Clean stop: gives up the lease at once and hands over. */
void watchdog_stop(struct watchdog *w);
void watchdog_free(struct watchdog *w);

/*
 * Called after every step of the election with its verdict: whether this
 * peer is coordinator with a valid lease, until when (CLOCK_BOOTTIME ms)
 * and in which term. The VIP follows it.
 */
typedef void (*watchdog_listener)(void *arg, bool has_lease, uint64_t lease_end,
				  uint64_t term);
void watchdog_set_listener(struct watchdog *w, watchdog_listener fn, void *arg);
/* This peer cannot serve as coordinator for a while (see wd_resign). */
void watchdog_resign(struct watchdog *w, const char *reason);
/* The coordinator as this peer sees it, or 0. */
int64_t watchdog_coordinator(const struct watchdog *w);

struct json;
/* Lets another part add members to the status (JSON object, or table lines). */
typedef void (*watchdog_status_extra)(void *arg, struct json *j, FILE *table);
void watchdog_set_status_extra(struct watchdog *w, watchdog_status_extra fn,
			       void *arg);

/* The control socket's requests: "status" and "status json". */
int watchdog_status(struct watchdog *w, bool json, FILE *out);
/* Whether this peer is coordinator with a valid lease now. */
bool watchdog_is_coordinator(const struct watchdog *w);

#endif
