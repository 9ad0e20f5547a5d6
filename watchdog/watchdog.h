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

#include "watchdog/elect.h"

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
/*
 * Lets another part add members to the status: to the JSON object (j set),
 * or lines to the table (table set): with header true to the header block
 * (after the cluster and term lines), else after the peers table.
 */
typedef void (*watchdog_status_extra)(void *arg, struct json *j, FILE *table,
				      bool header);
void watchdog_set_status_extra(struct watchdog *w, watchdog_status_extra fn,
			       void *arg);

/* The control socket's requests: "status" and "status json". */
int watchdog_status(struct watchdog *w, bool json, FILE *out);
/* Whether this peer is coordinator with a valid lease now. */
bool watchdog_is_coordinator(const struct watchdog *w);

/*
 * The extension bytes every heartbeat carries from now on (copied): TLVs
 * (type u16, length u16, value) filling len, len <= WD_EXT_MAX. Returns
 * -1, keeping the previous bytes, for anything else. They leave with the
 * next batch; watchdog_flush sends one now.
 */
int watchdog_set_ext(struct watchdog *w, const uint8_t *ext, uint16_t len);
/*
 * Sends a heartbeat batch now (at most one extra per heartbeat_interval / 4;
 * a call inside that interval moves the next batch to its end). Harmless
 * to the lease (wd_flush).
 */
void watchdog_flush(struct watchdog *w);
/*
 * Hands the coordinator role to peer target (wd_transfer). The entitlement
 * listener is told that the lease is gone before this returns and before
 * any datagram leaves, so a caller must not be in the middle of something
 * that listener changes. Nothing happens, with a warning logged, when this
 * peer is not coordinator or target is not an eligible peer that is up
 * and follows it.
 */
void watchdog_transfer(struct watchdog *w, int64_t target, const char *reason);

/*
 * Called for every authenticated heartbeat from a peer, after the
 * election has handled it, with its extension bytes (len may be 0; ext is
 * valid only during the call). The listener may call into the watchdog.
 */
typedef void (*watchdog_ext_listener)(void *arg, int64_t from, const uint8_t *ext,
				      size_t len);
void watchdog_set_ext_listener(struct watchdog *w, watchdog_ext_listener fn, void *arg);

/* The current term. */
uint64_t watchdog_term(const struct watchdog *w);
/* Whether peer id was heard within election_timeout_min (self: true). */
bool watchdog_peer_up(const struct watchdog *w, int64_t id);
/* The election's view of peer id (wd_peer_status); -1 for an unknown id. */
int watchdog_peer_status(const struct watchdog *w, int64_t id, struct wd_peer_status *st);

/* The election's counters (elections stood, terms won, ...). */
const struct wd_counters *watchdog_counters(const struct watchdog *w);
/* Milliseconds left of this peer's coordinator lease, 0 without one. */
uint64_t watchdog_lease_remaining_ms(const struct watchdog *w);
/*
 * Rejected datagrams by reason (the wire's reasons, then "wrong-source"):
 * fills at most cap names (static strings) and counts, returns how many.
 */
size_t watchdog_rejects(const struct watchdog *w, const char **names,
			uint64_t *counts, size_t cap);

#endif
