/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * orch.h - the failover orchestration: a deterministic state machine with no
 * I/O and no clock reads (DESIGN.md §3, §4, §6). Like the election
 * (elect.h) it takes an event and the current time in milliseconds and
 * queues effects that the caller carries out in order: persist the cluster
 * record, run a hook, check the backends now, send heartbeats now, hand the
 * coordinator role to a peer, log an event.
 *
 * Every peer runs one. Each peer reports, in its heartbeats, its own view
 * of every backend (fo_local_view) and the newest cluster record it knows;
 * fo_ext encodes that, fo_peer_ext decodes what a peer sent. Only the
 * coordinator with a valid lease (fo_set_coordinator) decides; the others
 * adopt its records, make them durable, and run the cooperative fence
 * (stop_command) when the record asks them to stop their own backend.
 *
 * The cluster record is replicated the way a single Raft entry would be:
 * the coordinator makes a record durable on a majority (the peers echo its
 * version) before it acts on it, and a new coordinator reads the records
 * of a majority before it acts at all. So a step that a dead coordinator
 * started is seen, and finished exactly once, by the next one.
 *
 * The sequence and the safety argument are in doc/failover.md.
 */
#ifndef PGVIGIL_ORCH_H
#define PGVIGIL_ORCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FO_MAX_BACKENDS 32
#define FO_MAX_PEERS 32
#define FO_EVENT_LEN 384

/* A backend's health as one peer sees it (mirrors enum health_state). */
enum fo_health {
	FO_H_UNKNOWN = 0,
	FO_H_UP,
	FO_H_SUSPECT,
	FO_H_FAILED,
};

enum fo_role {
	FO_R_UNKNOWN = 0,
	FO_R_PRIMARY,
	FO_R_STANDBY,
};

/* One peer's view of one backend. */
struct fo_view {
	uint8_t backend;	/* [backend.N] id */
	uint8_t health;		/* enum fo_health */
	uint8_t role;		/* enum fo_role, of the last successful check */
	uint32_t timeline;	/* 0 = unknown */
	/*
	 * Primary: pg_current_wal_lsn(); standby: max(receive, replay).
	 * Of the last successful check: a failed backend keeps its last value.
	 */
	uint64_t lsn;
	uint64_t system_id;	/* local view only, never sent; 0 = unknown */
	uint64_t checked_at;	/* local view only: when the check ended */
	int32_t logical_slots;	/* local view only: a primary's logical slots, -1 = unknown */
};

/* Steps of a failover, as recorded in the cluster record. */
enum fo_step {
	FO_STEP_NONE = 0,	/* steady: record.primary is the primary */
	FO_STEP_FENCING,	/* old primary must be fenced */
	FO_STEP_SELECTING,	/* fenced; choosing the candidate */
	FO_STEP_PROMOTING,	/* candidate chosen; promote it, verify */
	FO_STEP_FOLLOWING,	/* promoted; the other standbys follow it */
	FO_STEP_MAX = FO_STEP_FOLLOWING,
};

/* Why a failover runs, as recorded in the cluster record. */
enum fo_kind {
	FO_KIND_FAILOVER = 0,	/* the primary failed */
	FO_KIND_SWITCHOVER,	/* planned: clean stop, no data loss, old primary follows */
	FO_KIND_MANUAL,		/* pgvigilctl failover: the primary is replaced on request */
	FO_KIND_MAX = FO_KIND_MANUAL,
};

/* Per-backend flags in the cluster record. */
#define FO_B_NEEDS_REJOIN 0x01	/* old primary, or missed a follow: never promoted before a rejoin */
#define FO_B_FENCED 0x02	/* fenced in this failover */

/* The cluster record: replicated through the heartbeats, persisted by every peer. */
struct fo_record {
	uint64_t term;		/* term of the coordinator that wrote it, 0 = none yet */
	uint64_t seq;		/* writes within that term */
	uint8_t primary;	/* backend id, 0 = not known yet */
	uint32_t timeline;	/* of the primary, when known */
	uint64_t system_id;	/* the cluster's PostgreSQL system identifier */
	uint64_t switch_lsn;	/* candidate's LSN at the last promotion */
	uint8_t step;		/* enum fo_step */
	uint8_t old_primary;	/* failover in progress: the failed primary */
	uint8_t candidate;	/* PROMOTING / FOLLOWING: the new primary */
	uint64_t failover_term;	/* term in which the failover in progress began */
	uint64_t failover_seq;	/* failovers recorded so far: with failover_term, names this one */
	bool fence_go;		/* FENCING, committed: the old primary's peer may stop it now */
	uint64_t last_primary_lsn;	/* highest LSN the old primary was seen at */
	bool paused;		/* maintenance: no automatic action */
	uint8_t kind;		/* enum fo_kind of the failover in progress */
	uint8_t target;		/* switchover / manual failover: the backend asked for, 0 = best */
	bool force;		/* manual failover: max_lag does not apply */
	uint64_t shutdown_lsn;	/* switchover: the old primary's shutdown checkpoint, 0 = unknown */
	uint8_t nflags;
	struct {
		uint8_t backend;
		uint8_t flags;	/* FO_B_* */
	} flags[FO_MAX_BACKENDS];
	/* Operator commands applied, per peer: the last sequence number seen. */
	uint8_t nops;
	struct {
		uint8_t peer;
		uint32_t seq;
	} ops[FO_MAX_PEERS];
};

struct fo_backend_config {
	uint8_t id;		/* [backend.N] */
	uint8_t priority;	/* 0 = never promoted */
	uint8_t peer;		/* the pgvigil peer on its host, 0 = none */
};

enum fo_vip_follow {
	FO_VIP_COORDINATOR = 0,	/* the VIP is where the coordinator is */
	FO_VIP_PRIMARY,		/* the coordinator role follows the primary's peer */
};

struct fo_config {
	uint8_t self;		/* this peer */
	size_t npeers;		/* configured peers, self included: all vote */
	uint8_t peers[FO_MAX_PEERS];
	bool peer_eligible[FO_MAX_PEERS];	/* may be coordinator (not witness, priority > 0) */
	size_t nbackends;
	struct fo_backend_config backends[FO_MAX_BACKENDS];
	bool auto_failover;	/* false: failures are reported, never acted on */
	unsigned failure_quorum;	/* peers that must see the primary failed; 0 = majority */
	uint64_t max_lag;	/* bytes behind last_primary_lsn a candidate may be */
	bool has_fence_command;	/* [failover] fence_command is set */
	bool has_stop_command;	/* [failover] stop_command is set (cooperative fence) */
	bool has_follow_command;
	bool has_rejoin_command;
	enum fo_vip_follow vip_follow;
	/*
	 * Two-node mode (two voters, no witness, fencing): a coordinator that
	 * no longer hears the other peer has fenced it, so its own view is the
	 * quorum then.
	 */
	bool two_node;
	uint32_t view_max_age_ms;	/* a peer's view older than this does not count */
	uint32_t fence_timeout_ms;	/* cooperative fence: confirmation within */
	uint32_t verify_timeout_ms;	/* promotion must be visible within */
	uint32_t retry_ms;	/* first retry after a failed step; doubles */
	uint32_t retry_max_ms;
	uint32_t settle_ms;	/* after a fence: fresh checks of the standbys within */
	/*
	 * Every peer has checked a backend again within this (health interval
	 * + timeout); 0 = 2 * settle_ms.
	 */
	uint32_t recheck_bound_ms;
};

enum fo_hook_kind {
	FO_HOOK_STOP = 1,	/* stop_command: stop the local backend (cooperative fence) */
	FO_HOOK_FENCE,		/* fence_command: STONITH of the old primary */
	FO_HOOK_PROMOTE,	/* failover_command: promote the candidate */
	FO_HOOK_FOLLOW,		/* follow_primary_command: a standby follows the new primary */
	FO_HOOK_REJOIN,		/* rejoin_command: a failed old primary rejoins as standby */
	FO_HOOK_KIND_MAX = FO_HOOK_REJOIN,
};

enum fo_effect_kind {
	FO_EFF_PERSIST = 1,	/* write record durably; before the later effects */
	FO_EFF_HOOK,		/* run hook `hook` for backend */
	FO_EFF_CHECK_NOW,	/* check every backend now (fresh views) */
	FO_EFF_FLUSH,		/* send heartbeats now: the ext changed */
	FO_EFF_TRANSFER,	/* hand the coordinator role to peer `peer` */
	FO_EFF_EVENT,		/* log event `event` with detail `text` */
};

struct fo_effect {
	enum fo_effect_kind kind;
	/* HOOK */
	enum fo_hook_kind hook;
	uint8_t backend;	/* the backend acted on (%d) */
	uint8_t new_primary;	/* %m, 0 = none */
	uint8_t old_primary;	/* %P / %M, 0 = none */
	uint64_t term;		/* %T: the term the action belongs to */
	/* HOOK FO_HOOK_STOP: a clean stop (switchover): checkpoint, fast shutdown */
	bool clean;
	/* TRANSFER */
	uint8_t peer;
	/* EVENT */
	const char *event;	/* static token, documented in doc/events.md */
	char text[FO_EVENT_LEN];	/* key=value detail */
	/* PERSIST */
	struct fo_record record;
};

struct fo_counters {
	uint64_t failovers;	/* started */
	uint64_t failovers_done;
	uint64_t fences, fences_failed;
	uint64_t promotions, promotions_failed;
	uint64_t follows, follows_failed;
	uint64_t refusals;	/* candidate refused or none eligible */
	uint64_t switchovers, switchovers_done, switchovers_cancelled;
	uint64_t operator_fences, operator_fences_failed;
};

struct fo;

/* Checks the configuration. Returns 0, or -1 with a message in err. */
int fo_check_config(const struct fo_config *cfg, char *err, size_t errlen);

/*
 * Creates the state machine from the record this peer persisted (or a
 * zero record on first start). Returns NULL on allocation failure.
 */
struct fo *fo_new(const struct fo_config *cfg, const struct fo_record *rec,
		  uint64_t now);
void fo_free(struct fo *fo);
/* A new configuration (reloadable settings only). */
void fo_reload(struct fo *fo, const struct fo_config *cfg);

/*
 * The election's verdict after each of its steps: coordinator with a valid
 * lease in term, or not. Losing the role stops any step in progress here;
 * hooks already running finish, and their results are ignored unless this
 * peer is coordinator of the same term again.
 */
void fo_set_coordinator(struct fo *fo, uint64_t now, bool coordinator,
			uint64_t term);
/* This peer's own view of the backends (all of them, each check result). */
void fo_local_view(struct fo *fo, uint64_t now, const struct fo_view *v,
		   size_t n);
/*
 * Extension bytes from peer `from`'s heartbeat (already authenticated).
 * Returns -1 for a malformed extension (the caller counts it), 0 otherwise.
 */
int fo_peer_ext(struct fo *fo, uint64_t now, uint8_t from, const uint8_t *ext,
		size_t len);
/* A hook this state machine asked for finished; ok = exit status 0. */
void fo_hook_done(struct fo *fo, uint64_t now, enum fo_hook_kind kind,
		  uint8_t backend, uint64_t term, bool ok);
/*
 * The same, with what the hook reported: for a clean stop, the LSN of the
 * shutdown checkpoint it left (0 = not reported).
 */
void fo_hook_done_lsn(struct fo *fo, uint64_t now, enum fo_hook_kind kind,
		      uint8_t backend, uint64_t term, bool ok, uint64_t lsn);
/* Timers: call at or after fo_next_wakeup(). */
void fo_tick(struct fo *fo, uint64_t now);
uint64_t fo_next_wakeup(const struct fo *fo);

/*
 * Operator commands. They take effect on the coordinator; elsewhere they
 * are carried to it in this peer's heartbeats. Returns 0, or -1 with the
 * reason in err (unknown backend, not in the state the command needs).
 */
enum fo_command {
	FO_CMD_PAUSE = 1,
	FO_CMD_RESUME,
	FO_CMD_REJOIN,		/* arg: backend id */
	FO_CMD_SWITCHOVER,	/* arg: target backend, 0 = the best standby */
	FO_CMD_FAILOVER,	/* arg: target backend, 0 = the best standby */
	FO_CMD_FAILOVER_FORCE,	/* the same, beyond max_lag (data loss accepted) */
	FO_CMD_FENCE,		/* arg: backend: fence_command against it */
};
int fo_command(struct fo *fo, uint64_t now, enum fo_command cmd, uint8_t arg,
	       char *err, size_t errlen);
/*
 * The checks a switchover (FO_CMD_SWITCHOVER) or a manual failover
 * (FO_CMD_FAILOVER, FO_CMD_FAILOVER_FORCE) must pass, from this peer's own
 * checks and record: one line per check into out ("ok: ...", "no: ...",
 * "warning: ..."). Returns 0 when none says no, else -1. *chosen gets the
 * target (the one asked for, or the best standby), 0 when there is none.
 * The coordinator runs the same checks again before it acts.
 */
int fo_preflight(const struct fo *fo, uint64_t now, enum fo_command cmd,
		 uint8_t target, char *out, size_t outlen, uint8_t *chosen);
const char *fo_kind_name(enum fo_kind k);
/* The number of this peer's last operator command (carried until applied). */
uint32_t fo_op_seq(const struct fo *fo);

/* Effects queued by the last call, valid until the next call. */
size_t fo_effects(const struct fo *fo, const struct fo_effect **effs);

/* The bytes this peer's heartbeats carry (view, record, acks). Returns the length. */
size_t fo_ext(const struct fo *fo, uint8_t *buf, size_t cap);

/*
 * Whether this peer may hold the VIP now, beyond its lease: with
 * vip_follow = primary only the primary's peer may, and nobody during a
 * failover until the new primary is verified.
 */
bool fo_vip_allowed(const struct fo *fo);

const struct fo_record *fo_record(const struct fo *fo);
const struct fo_counters *fo_counters(const struct fo *fo);
/* Human-readable: what the coordinator is waiting for, "" when nothing. */
const char *fo_waiting(const struct fo *fo);

const char *fo_step_name(enum fo_step s);
const char *fo_hook_name(enum fo_hook_kind k);
uint8_t fo_record_flags(const struct fo_record *r, uint8_t backend);
/* The last operator command of peer `peer` the record says was applied, 0 = none. */
uint32_t fo_record_op_applied(const struct fo_record *r, uint8_t peer);

/* Record codec for the state file: text "k=v ..." round trip. */
int fo_record_format(const struct fo_record *r, char *buf, size_t len);
int fo_record_parse(const char *s, struct fo_record *r);

#endif
