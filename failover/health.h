/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * health.h - health checks of the PostgreSQL backends, on the event loop.
 *
 * Each backend gets one libpq connection, opened with the non-blocking
 * API (PQconnectStartParams / PQconnectPoll, hostaddr only, our own
 * deadline: PQconnectPoll ignores connect_timeout) and kept open between
 * checks. A check sends one query (PQsendQuery) that returns the role
 * (pg_is_in_recovery), the timeline, the current / receive / replay LSNs and
 * the system identifier. On a primary, with [health] write_probe on, the
 * same check then commits a tiny transaction (the write probe) and fails
 * if that errors or does not finish in time. A failed check closes the
 * connection and the next one follows after recheck_interval; a backend is
 * "failed" after failure_threshold consecutive failures, and is checked on
 * all the same. Nothing here blocks the loop.
 */
#ifndef PGVIGIL_HEALTH_H
#define PGVIGIL_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct conf;
struct loop;
struct json;
struct health;

enum health_state {
	HEALTH_UNKNOWN = 0,	/* not checked yet */
	HEALTH_UP,		/* the last check succeeded */
	HEALTH_SUSPECT,		/* failed, fewer than failure_threshold times in a row */
	HEALTH_FAILED,		/* failed failure_threshold times in a row or more */
};

enum health_role {
	HEALTH_ROLE_UNKNOWN = 0,
	HEALTH_ROLE_PRIMARY,
	HEALTH_ROLE_STANDBY,
};

/*
 * One backend as the last checks saw it. role, timeline, lsn, receive_lsn,
 * replay_lsn and system_id are those of the last SUCCESSFUL check: a
 * suspect or failed backend keeps them (the failover needs the last place
 * the primary was seen at).
 */
struct health_backend {
	int64_t id;			/* [backend.N] */
	enum health_state state;
	enum health_role role;
	/*
	 * 0 = unknown. Primary: of its current WAL file, so right from the
	 * first check after a promotion; standby: the WAL receiver's, else
	 * the last checkpoint's (restartpoint's).
	 */
	uint32_t timeline;
	uint64_t lsn;			/* primary: pg_current_wal_lsn(); standby: 0 */
	uint64_t receive_lsn;		/* standby: pg_last_wal_receive_lsn() */
	uint64_t replay_lsn;		/* standby: pg_last_wal_replay_lsn() */
	uint64_t last_primary_lsn;	/* lsn of the last success as a primary, 0 = never; kept after it turns standby */
	uint64_t system_id;		/* pg_control_system() system_identifier */
	/*
	 * Standby: 0 when it replayed all it received, else the age of the
	 * last transaction it replayed; -1 = unknown (or not a standby).
	 */
	int64_t replay_lag_ms;
	/* Primary: its logical replication slots (a switchover loses them); -1 = unknown. */
	int32_t logical_slots;
	unsigned consecutive_failures;
	uint64_t last_ok;		/* CLOCK_BOOTTIME ms of the last success, 0 = never */
	uint64_t last_check;		/* of the last finished check, 0 = never */
	uint32_t latency_ms;		/* of the last successful check */
	/*
	 * The last successful check's write probe, rounded up to a whole
	 * millisecond (so a probe that ran is >= 1); 0 = that check sent no
	 * probe (a standby, or write_probe off). write_latency_us unrounded.
	 */
	uint32_t write_latency_ms;
	uint32_t write_latency_us;
	uint64_t checks, failures;	/* counters */
	char error[256];		/* last failure, "" when none */
};

/*
 * Called after every finished check, successful or not, with the
 * backend's updated view (borrowed until the next loop turn). It runs from
 * the loop, never from inside a health_* call. It may call
 * health_check_now(); it must not call health_reload() or health_free().
 */
typedef void (*health_listener)(void *arg, const struct health_backend *b);

/*
 * Starts checking every [backend.N] of conf. conf and loop are borrowed.
 * Returns NULL with err set (only on allocation failure: an unreachable
 * backend is a check result, not an error).
 */
struct health *health_new(struct loop *loop, const struct conf *conf,
			  char *err, size_t errlen);
/* A new configuration: backends added or removed, settings changed. */
int health_reload(struct health *h, const struct conf *conf, char *err,
		  size_t errlen);
void health_free(struct health *h);

/* One listener (NULL: none); arg is borrowed. Replaces the previous one. */
void health_set_listener(struct health *h, health_listener fn, void *arg);
/*
 * A second, read-only listener (the API's metrics), called before the
 * listener. It must not call into the health checks. NULL: none.
 */
void health_set_observer(struct health *h, health_listener fn, void *arg);
/*
 * Starts a check of every backend now (on the next loop turn) instead of
 * at its next interval. A backend whose check is in flight is left alone,
 * but checked again as soon as that check ends.
 */
void health_check_now(struct health *h);

size_t health_count(const struct health *h);
/* The i-th backend's view (0 <= i < health_count), borrowed until the next loop turn. */
const struct health_backend *health_get(const struct health *h, size_t i);

const char *health_state_name(enum health_state s);
const char *health_role_name(enum health_role r);

/*
 * The role the cluster record gives backend id ("primary", "standby",
 * "needs-rejoin", "fenced"), or NULL when it has none; for the status.
 */
typedef const char *(*health_role_fn)(void *arg, int64_t id);

/*
 * Adds "backends": [...] to an open JSON object; cluster_role may be
 * NULL (then "cluster_role" is null).
 */
void health_status_json(const struct health *h, struct json *j, uint64_t now,
			health_role_fn cluster_role, void *arg);
/*
 * Prints the backends table, each line marked: '*' in the first column
 * for the cluster record's primary; '?' in the second for a backend whose
 * last check failed (or none ran yet), '!' for one whose checks see
 * another role than the record gives it (a standby running as a primary).
 */
void health_status_table(const struct health *h, FILE *out, uint64_t now,
			 health_role_fn cluster_role, void *arg);
/* Those two marks of p, given its cluster role (NULL: none), in buf. */
const char *health_status_marks(const struct health_backend *p,
				const char *cluster_role, char buf[3]);

#endif
