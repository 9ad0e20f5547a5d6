/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * orch.c - the failover orchestration state machine (see orch.h). No I/O,
 * no clock reads: every input carries `now`, every output is an effect.
 *
 * Invariants this file keeps, and the simulator checks:
 * - Only a coordinator with a valid lease that has read the records of a
 *   majority in its term (synced) decides or acts (S3).
 * - A step is acted on only once its record is durable on a majority
 *   (committed), so the next coordinator sees it and finishes it instead
 *   of starting a second, different one.
 * - No promotion before the old primary is fenced: cooperatively (its own
 *   peer ran stop_command and said so) or by fence_command exit 0 (S2,
 *   S6). A failed fence is retried with back-off, never skipped.
 * - The candidate is the eligible standby with the highest (timeline,
 *   LSN) in the coordinator's own checks made after the fence; one more
 *   than max_lag behind the last primary LSN is refused (S4).
 * - Once a candidate is in the record it stays the candidate until it is
 *   verified as primary: a retry promotes the same backend again, never
 *   another one. A backend that was primary and failed is flagged
 *   needs-rejoin and is never a candidate until a rejoin clears it (S8).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "failover/orch.h"

#define MAX_EFFECTS (4 * FO_MAX_BACKENDS + 32)
#define VERIFY_POLL_MS 20	/* checks while a promotion is being verified */
#define TRANSFER_WAIT_MS 1000	/* a handover takes milliseconds; this is plenty */
#define TRANSFER_RETRY_MS 10000
/* A clean stop checkpoints and waits for the standbys: more than a kill. */
#define CLEAN_STOP_FACTOR 3

/* TLV types in the heartbeat extension (failover's range 0x01xx). */
#define EXT_VIEW 0x0101
#define EXT_RECORD 0x0102
#define EXT_STOP_ACK 0x0103
#define EXT_OP 0x0104

#define VIEW_ENTRY_LEN 15	/* backend u8, health u8, role u8, tli u32, lsn u64 */

/* Coordinator's progress inside the recorded step (volatile, per term). */
enum act {
	ACT_IDLE = 0,
	ACT_COOP_WAIT,		/* cooperative fence asked; waiting for the ack */
	ACT_FENCE_HOOK,		/* fence_command running */
	ACT_SETTLE,		/* fenced: waiting for fresh checks of the standbys */
	ACT_PROMOTE_HOOK,	/* failover_command running */
	ACT_VERIFY,		/* promoted: waiting to see it as primary */
	ACT_FOLLOW,		/* follow hooks running */
	ACT_BACKOFF,		/* a step failed: retry at retry_at */
};

struct stop_ack {
	uint64_t failover_term;	/* the failover it answers: term ... */
	uint64_t failover_seq;	/* ... and number */
	uint64_t ver_term, ver_seq;	/* the record version that asked */
	uint8_t backend;
	bool ok;
	bool valid;
	uint64_t lsn;		/* clean stop: its shutdown checkpoint, 0 = unknown */
};

struct pview {
	bool have;
	uint64_t at;		/* when received (self: when checked) */
	size_t n;
	struct fo_view v[FO_MAX_BACKENDS];
	uint64_t rec_term, rec_seq;	/* version of the record it holds */
	struct stop_ack ack;
	uint32_t op_seq;
	uint8_t op, op_arg;
};

enum follow_state { FS_NONE = 0, FS_RUNNING, FS_OK, FS_FAILED, FS_SKIPPED };

struct fo {
	struct fo_config cfg;
	struct fo_record rec;
	struct fo_counters ctr;

	bool coordinator;
	uint64_t term;		/* the term we coordinate (or last did) */
	uint64_t coord_since;
	bool synced;		/* read a majority's records in this term */

	struct pview pv[FO_MAX_PEERS];	/* index = peer index; self included */
	uint64_t primary_lsn_seen;	/* highest LSN any view gave the primary */
	uint8_t primary_lsn_of;		/* ... for this backend */
	/*
	 * When this coordinator took rec.primary as the primary (synced with
	 * it, learned it, or verified its promotion). Other peers check a
	 * backend only every health interval, so for a while after a
	 * promotion their views still show the new primary as the standby it
	 * was: "up as a standby" counts as a failure only after that.
	 */
	uint64_t primary_since;
	/*
	 * The record version that made rec.primary the primary (or that this
	 * coordinator synced with): a peer holding an older record has not
	 * heard of it, and its view of it is older too.
	 */
	uint64_t primary_ver_term, primary_ver_seq;

	/* coordinator progress */
	enum act act;
	uint64_t act_since;
	uint64_t deadline;
	uint64_t retry_at;
	uint32_t backoff_ms;
	uint64_t attempt_term, attempt_seq;	/* record version of this fence attempt */
	bool commit_pending;
	uint64_t failover_started;	/* 0 when this coordinator did not start it */
	uint64_t step_started;
	uint64_t fenced_at;
	uint64_t next_poll;
	enum follow_state follow[FO_MAX_BACKENDS];	/* by backend index */
	uint8_t rejoin_running;	/* backend id, 0 = none */
	uint8_t rejoin_after;	/* switchover's old primary: rejoin once its end is committed */
	uint8_t fence_after;	/* operator fence: run once its needs-rejoin flag is committed */
	uint8_t fence_by;	/* ... asked by this peer */
	uint8_t fence_running;	/* operator fence: backend id, 0 = none */
	bool degraded;		/* switchover: falls back to the failover's rules */
	uint64_t transfer_at;	/* no new transfer before this */
	uint64_t transfer_sent;	/* when the last one was handed out, 0 = never */

	/* the cooperative fence, as the old primary's peer */
	bool stop_running;
	uint64_t stop_for_term, stop_for_seq, stop_for_failover, stop_for_fseq;
	uint8_t stop_for_backend;
	struct stop_ack my_ack;

	/* operator commands this peer carries to the coordinator */
	uint32_t op_seq;
	uint8_t op, op_arg;

	/* alarms are logged when they change, not on every step */
	char last_alarm[160];
	char waiting[200];

	uint64_t last_call;	/* now of the last input: deadlines up to it are handled */
	/*
	 * After a stall (no input for longer than a view may age: SIGSTOP, a
	 * VM pause), our own view is as old as the stall: it is neither sent
	 * nor counted until every backend was checked again. 0 = fresh.
	 */
	uint64_t view_stale_since;

	struct fo_effect effs[MAX_EFFECTS];
	size_t neffs;
};

/* ---- names -------------------------------------------------------------- */

const char *
fo_step_name(enum fo_step s)
{
	static const char *const n[] = { "none", "fencing", "selecting",
		"promoting", "following" };

	return (unsigned)s <= FO_STEP_MAX ? n[s] : "?";
}

const char *
fo_hook_name(enum fo_hook_kind k)
{
	static const char *const n[] = { "?", "stop", "fence_backend", "failover",
		"follow_primary", "rejoin" };

	return (unsigned)k <= FO_HOOK_KIND_MAX ? n[k] : "?";
}

/* ---- small helpers ------------------------------------------------------ */

static int
peer_index(const struct fo *fo, uint8_t id)
{
	for (size_t i = 0; i < fo->cfg.npeers; i++)
		if (fo->cfg.peers[i] == id)
			return (int)i;
	return -1;
}

static int
self_index(const struct fo *fo)
{
	return peer_index(fo, fo->cfg.self);
}

static int
backend_index(const struct fo *fo, uint8_t id)
{
	for (size_t i = 0; i < fo->cfg.nbackends; i++)
		if (fo->cfg.backends[i].id == id)
			return (int)i;
	return -1;
}

static const struct fo_backend_config *
backend_cfg(const struct fo *fo, uint8_t id)
{
	int i = backend_index(fo, id);

	return i < 0 ? NULL : &fo->cfg.backends[i];
}

static size_t
majority(const struct fo *fo)
{
	return fo->cfg.npeers / 2 + 1;
}

static bool fresh(const struct fo *fo, int pi, uint64_t now);

/*
 * Peers that must hold a record (commit) or be read (sync): a majority;
 * in two-node mode, a coordinator that does not hear the other peer has
 * fenced it (that is how it holds a lease), and a fenced peer can neither
 * hold a step we need nor act on one, so this peer alone is enough.
 */
static size_t
needed(const struct fo *fo, uint64_t now)
{
	if (fo->cfg.two_node && fo->cfg.npeers == 2) {
		for (size_t i = 0; i < fo->cfg.npeers; i++)
			if ((int)i != self_index(fo) && !fresh(fo, (int)i, now))
				return 1;
	}
	return majority(fo);
}

static bool
ver_ge(uint64_t t1, uint64_t s1, uint64_t t2, uint64_t s2)
{
	return t1 > t2 || (t1 == t2 && s1 >= s2);
}

uint8_t
fo_record_flags(const struct fo_record *r, uint8_t backend)
{
	for (size_t i = 0; i < r->nflags; i++)
		if (r->flags[i].backend == backend)
			return r->flags[i].flags;
	return 0;
}

static void
set_flags(struct fo_record *r, uint8_t backend, uint8_t set, uint8_t clear)
{
	for (size_t i = 0; i < r->nflags; i++) {
		if (r->flags[i].backend == backend) {
			r->flags[i].flags = (uint8_t)((r->flags[i].flags | set) & ~clear);
			return;
		}
	}
	if ((set & ~clear) && r->nflags < FO_MAX_BACKENDS) {
		r->flags[r->nflags].backend = backend;
		r->flags[r->nflags].flags = (uint8_t)(set & ~clear);
		r->nflags++;
	}
}

uint32_t
fo_record_op_applied(const struct fo_record *r, uint8_t peer)
{
	for (size_t i = 0; i < r->nops; i++)
		if (r->ops[i].peer == peer)
			return r->ops[i].seq;
	return 0;
}

static void
set_op_applied(struct fo_record *r, uint8_t peer, uint32_t seq)
{
	for (size_t i = 0; i < r->nops; i++) {
		if (r->ops[i].peer == peer) {
			r->ops[i].seq = seq;
			return;
		}
	}
	if (r->nops < FO_MAX_PEERS) {
		r->ops[r->nops].peer = peer;
		r->ops[r->nops].seq = seq;
		r->nops++;
	}
}

static struct fo_effect *
effect(struct fo *fo, enum fo_effect_kind kind)
{
	struct fo_effect *e;

	if (fo->neffs == MAX_EFFECTS)
		return NULL;	/* cannot happen: bounded by the number of backends */
	e = &fo->effs[fo->neffs++];
	memset(e, 0, sizeof(*e));
	e->kind = kind;
	return e;
}

static void
event(struct fo *fo, const char *token, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
event(struct fo *fo, const char *token, const char *fmt, ...)
{
	struct fo_effect *e = effect(fo, FO_EFF_EVENT);
	va_list ap;

	if (!e)
		return;
	e->event = token;
	va_start(ap, fmt);
	vsnprintf(e->text, sizeof(e->text), fmt, ap);
	va_end(ap);
	/* Every event of a failover names it, so its steps can be grouped. */
	if (fo->rec.step != FO_STEP_NONE && fo->rec.failover_seq) {
		size_t n = strlen(e->text);

		snprintf(e->text + n, sizeof(e->text) - n,
			 " failover=%" PRIu64 ".%" PRIu64, fo->rec.failover_term,
			 fo->rec.failover_seq);
	}
}

/* An alarm is logged when it is new, not on every evaluation. */
static void
alarm_once(struct fo *fo, const char *token, const char *reason)
{
	char key[sizeof(fo->last_alarm)];

	snprintf(key, sizeof(key), "%s %s", token, reason);
	snprintf(fo->waiting, sizeof(fo->waiting), "%s", reason);
	if (strcmp(key, fo->last_alarm) == 0)
		return;
	snprintf(fo->last_alarm, sizeof(fo->last_alarm), "%s", key);
	event(fo, token, "term=%" PRIu64 " reason=\"%s\"", fo->term, reason);
}

static void
clear_alarm(struct fo *fo)
{
	fo->last_alarm[0] = '\0';
	fo->waiting[0] = '\0';
}

static void
flush(struct fo *fo)
{
	effect(fo, FO_EFF_FLUSH);
}

static void
check_now(struct fo *fo)
{
	effect(fo, FO_EFF_CHECK_NOW);
}

static void
hook(struct fo *fo, enum fo_hook_kind kind, uint8_t backend, uint8_t new_primary,
     uint8_t old_primary)
{
	struct fo_effect *e = effect(fo, FO_EFF_HOOK);

	if (!e)
		return;
	e->hook = kind;
	e->backend = backend;
	e->new_primary = new_primary;
	e->old_primary = old_primary;
	e->term = fo->term;
}

/*
 * Writes the record as this coordinator's: a new version, durable here
 * first (PERSIST comes before any effect that depends on it), then sent.
 * With commit, nothing more happens until a majority holds it.
 */
static void
write_record(struct fo *fo, bool commit)
{
	struct fo_effect *e;
	int si = self_index(fo);

	if (fo->rec.term > fo->term)
		return;		/* never behind a newer term's record (see fo_set_coordinator) */
	if (fo->rec.term != fo->term) {
		fo->rec.term = fo->term;
		fo->rec.seq = 0;
	}
	fo->rec.seq++;
	e = effect(fo, FO_EFF_PERSIST);
	if (e)
		e->record = fo->rec;
	if (si >= 0) {
		fo->pv[si].rec_term = fo->rec.term;
		fo->pv[si].rec_seq = fo->rec.seq;
	}
	flush(fo);
	if (commit)
		fo->commit_pending = true;
}

/* Every input: a gap longer than view_max_age makes our own view stale. */
static void
note_call(struct fo *fo, uint64_t now)
{
	if (fo->last_call && now > fo->last_call + fo->cfg.view_max_age_ms)
		fo->view_stale_since = now;
	fo->last_call = now;
}

static bool
fresh(const struct fo *fo, int pi, uint64_t now)
{
	const struct pview *p = &fo->pv[pi];

	if (!p->have)
		return false;
	if (pi == self_index(fo))
		return !fo->view_stale_since;
	return now - p->at <= fo->cfg.view_max_age_ms;
}

static const struct fo_view *
view_of(const struct pview *p, uint8_t backend)
{
	for (size_t i = 0; i < p->n; i++)
		if (p->v[i].backend == backend)
			return &p->v[i];
	return NULL;
}

static const struct fo_view *
own_view(const struct fo *fo, uint8_t backend)
{
	int si = self_index(fo);

	return si < 0 ? NULL : view_of(&fo->pv[si], backend);
}

static bool
peer_up(const struct fo *fo, uint8_t id, uint64_t now)
{
	int pi = peer_index(fo, id);

	return pi >= 0 && fresh(fo, pi, now);
}

/* How many peers must agree: failure_quorum, or a majority. */
static size_t
quorum(const struct fo *fo, uint64_t now)
{
	size_t q = fo->cfg.failure_quorum ? fo->cfg.failure_quorum : majority(fo);

	if (fo->cfg.two_node) {
		/* The coordinator that does not hear the other peer fenced it. */
		size_t live = 0;

		for (size_t i = 0; i < fo->cfg.npeers; i++)
			if (fresh(fo, (int)i, now))
				live++;
		if (live < q)
			q = live ? live : 1;
	}
	return q;
}

/* The primary's failure as the views say: failed, or seen up as a standby. */
static bool
view_says_failed(const struct fo_view *v)
{
	return v && (v->health == FO_H_FAILED ||
		     (v->health == FO_H_UP && v->role == FO_R_STANDBY));
}

static bool
view_failed_only(const struct fo_view *v)
{
	return v && v->health == FO_H_FAILED;
}

static bool
view_up_primary(const struct fo_view *v)
{
	return v && v->health == FO_H_UP && v->role == FO_R_PRIMARY;
}

/*
 * A view of the recorded primary as a primary counts for its LSN only on
 * its timeline: a view kept from that backend's earlier time as primary
 * (a higher LSN on an older timeline, before a failover back to it) is
 * not where it is now (the simulator found such an LSN made the next
 * failover's last_primary_lsn).
 */
static bool
primary_timeline(const struct fo *fo, const struct fo_view *v)
{
	return !fo->rec.timeline || v->timeline >= fo->rec.timeline;
}

/* Whether peer index i has heard of the current primary (see primary_ver). */
static bool
knows_primary(const struct fo *fo, size_t i)
{
	const struct pview *p = &fo->pv[i];

	return (int)i == self_index(fo) ||
	       ver_ge(p->rec_term, p->rec_seq, fo->primary_ver_term, fo->primary_ver_seq);
}

static size_t
count_views(const struct fo *fo, uint64_t now, uint8_t backend,
	    bool (*pred)(const struct fo_view *))
{
	size_t n = 0;

	for (size_t i = 0; i < fo->cfg.npeers; i++) {
		if (!fresh(fo, (int)i, now))
			continue;
		/* A failure of the primary is only believed from a peer that knows it. */
		if (backend == fo->rec.primary && pred != view_up_primary &&
		    !knows_primary(fo, i))
			continue;
		if (pred(view_of(&fo->pv[i], backend)))
			n++;
	}
	return n;
}


/* The cooperative fence's answer from peer id (our own when it is us). */
static const struct stop_ack *
ack_of(const struct fo *fo, uint8_t id)
{
	int pi;

	if (id == fo->cfg.self)
		return &fo->my_ack;
	pi = peer_index(fo, id);
	return pi < 0 ? NULL : &fo->pv[pi].ack;
}

/* ---- the replicated record ---------------------------------------------- */

static bool
committed(const struct fo *fo, uint64_t now)
{
	size_t n = 0;

	for (size_t i = 0; i < fo->cfg.npeers; i++) {
		const struct pview *p = &fo->pv[i];

		if ((int)i == self_index(fo) ||
		    (p->have && ver_ge(p->rec_term, p->rec_seq, fo->rec.term,
				       fo->rec.seq)))
			n++;
	}
	return n >= needed(fo, now);
}

static void reset_act(struct fo *fo);

/*
 * Two-node mode: each peer alone (the other fenced) commits records the
 * other never held, and the one with the higher version is not always the
 * one that knows more. A record on a newer timeline carries a promotion
 * ours lacks (every promotion raises the timeline): take it, keep our own
 * needs-rejoin flags, applied operator commands and maintenance flag as
 * well, in a new version of ours, and, as coordinator, read the records
 * again as a new coordinator does (the step in it is its writer's, not
 * ours).
 */
static void
merge_promotion(struct fo *fo, const struct fo_record *r)
{
	struct fo_record m = *r;
	struct fo_effect *e;
	int si = self_index(fo);

	for (size_t i = 0; i < fo->rec.nflags; i++)
		if ((fo->rec.flags[i].flags & FO_B_NEEDS_REJOIN) &&
		    fo->rec.flags[i].backend != m.primary)
			set_flags(&m, fo->rec.flags[i].backend, FO_B_NEEDS_REJOIN, 0);
	/* A command applied in either history must not be applied again. */
	for (size_t i = 0; i < fo->rec.nops; i++)
		if (fo->rec.ops[i].seq > fo_record_op_applied(&m, fo->rec.ops[i].peer))
			set_op_applied(&m, fo->rec.ops[i].peer, fo->rec.ops[i].seq);
	/* Maintenance asked in either history stays on until a resume. */
	m.paused = m.paused || fo->rec.paused;
	/* Our version, so that nobody takes it for older than what it replaces. */
	m.term = fo->rec.term;
	m.seq = fo->rec.seq + 1;
	fo->rec = m;
	e = effect(fo, FO_EFF_PERSIST);
	if (e)
		e->record = fo->rec;
	if (si >= 0) {
		fo->pv[si].rec_term = m.term;
		fo->pv[si].rec_seq = m.seq;
	}
	event(fo, "record-merged", "term=%" PRIu64 " primary=%u timeline=%" PRIu32,
	      fo->term, m.primary, m.timeline);
	if (fo->coordinator) {
		fo->synced = false;
		fo->coord_since = fo->last_call;
		reset_act(fo);
	}
	flush(fo);
}

/* A record newer than ours, from anyone: adopt it, durably. */
static void
adopt(struct fo *fo, const struct fo_record *r)
{
	struct fo_effect *e;
	int si = self_index(fo);

	/* Two-node mode: it lacks a promotion we know; its writer merges ours. */
	if (fo->cfg.two_node && r->timeline < fo->rec.timeline)
		return;
	if (ver_ge(fo->rec.term, fo->rec.seq, r->term, r->seq)) {
		if (fo->cfg.two_node && r->timeline > fo->rec.timeline)
			merge_promotion(fo, r);
		return;
	}
	if (fo->coordinator && r->term > fo->term) {
		/* A newer coordinator exists: stop acting. */
		fo->coordinator = false;
		reset_act(fo);
	}
	fo->rec = *r;
	e = effect(fo, FO_EFF_PERSIST);
	if (e)
		e->record = fo->rec;
	if (si >= 0) {
		fo->pv[si].rec_term = r->term;
		fo->pv[si].rec_seq = r->seq;
	}
	/* Say so at once: the coordinator waits for a majority to hold it. */
	flush(fo);
}

/* ---- the cooperative fence, as the old primary's peer ------------------- */

static void
maybe_stop_local(struct fo *fo)
{
	const struct fo_backend_config *b;

	/* Only once a majority holds the step (fence_go): see do_fence. */
	if (fo->rec.step != FO_STEP_FENCING || !fo->rec.fence_go ||
	    fo->stop_running || !fo->cfg.has_stop_command)
		return;
	b = backend_cfg(fo, fo->rec.old_primary);
	if (!b || b->peer != fo->cfg.self)
		return;
	/*
	 * Once stopped for this failover, the answer stands; in a switchover
	 * a failed clean stop's too: the coordinator cancels on it, and a run
	 * for a later version (any write of the record asks) could stop the
	 * primary after the cancel.
	 */
	if (fo->my_ack.valid &&
	    (fo->my_ack.ok || fo->rec.kind == FO_KIND_SWITCHOVER) &&
	    fo->my_ack.failover_term == fo->rec.failover_term &&
	    fo->my_ack.failover_seq == fo->rec.failover_seq &&
	    fo->my_ack.backend == b->id)
		return;
	/* One run per record version that asks. */
	if (fo->stop_for_term || fo->stop_for_seq) {
		if (ver_ge(fo->stop_for_term, fo->stop_for_seq, fo->rec.term,
			   fo->rec.seq))
			return;
	}
	fo->stop_running = true;
	fo->stop_for_term = fo->rec.term;
	fo->stop_for_seq = fo->rec.seq;
	fo->stop_for_failover = fo->rec.failover_term;
	fo->stop_for_fseq = fo->rec.failover_seq;
	fo->stop_for_backend = b->id;
	event(fo, "backend-stop-started",
	      "term=%" PRIu64 " backend=%u failover_term=%" PRIu64 " mode=%s",
	      fo->rec.term, b->id, fo->rec.failover_term,
	      fo->rec.kind == FO_KIND_SWITCHOVER ? "clean" : "immediate");
	{
		struct fo_effect *e = effect(fo, FO_EFF_HOOK);

		if (e) {
			e->hook = FO_HOOK_STOP;
			e->backend = b->id;
			e->old_primary = b->id;
			e->term = fo->rec.term;
			e->clean = fo->rec.kind == FO_KIND_SWITCHOVER;
		}
	}
}

/* ---- coordinator: steps ------------------------------------------------- */

static void
reset_act(struct fo *fo)
{
	fo->act = ACT_IDLE;
	fo->deadline = 0;
	fo->retry_at = 0;
	fo->commit_pending = false;
	fo->next_poll = 0;
	memset(fo->follow, 0, sizeof(fo->follow));
}

static void
set_act(struct fo *fo, uint64_t now, enum act a)
{
	fo->act = a;
	fo->act_since = now;
}

static void
backoff(struct fo *fo, uint64_t now, const char *what)
{
	if (fo->backoff_ms == 0)
		fo->backoff_ms = fo->cfg.retry_ms;
	else if (fo->backoff_ms < fo->cfg.retry_max_ms / 2)
		fo->backoff_ms *= 2;
	else
		fo->backoff_ms = fo->cfg.retry_max_ms;
	fo->retry_at = now + fo->backoff_ms;
	set_act(fo, now, ACT_BACKOFF);
	snprintf(fo->waiting, sizeof(fo->waiting), "retrying %s in %" PRIu32 " ms",
		 what, fo->backoff_ms);
}

static void
enter_step(struct fo *fo, uint64_t now, enum fo_step step)
{
	fo->rec.step = (uint8_t)step;
	fo->rec.fence_go = false;
	fo->step_started = now;
	fo->backoff_ms = 0;
	reset_act(fo);
	clear_alarm(fo);
}

static void
start_failover_kind(struct fo *fo, uint64_t now, uint8_t old, size_t agree,
		    enum fo_kind kind, uint8_t target, bool force)
{
	fo->ctr.failovers++;
	if (kind == FO_KIND_SWITCHOVER)
		fo->ctr.switchovers++;
	fo->failover_started = now;
	fo->degraded = false;
	fo->rec.old_primary = old;
	fo->rec.candidate = 0;
	fo->rec.failover_term = fo->term;
	fo->rec.failover_seq++;
	fo->rec.fence_go = false;
	fo->rec.kind = (uint8_t)kind;
	fo->rec.target = target;
	fo->rec.force = force;
	fo->rec.shutdown_lsn = 0;
	/*
	 * This primary's own last LSN. The one recorded may be an earlier
	 * primary's, higher when this one was promoted behind it (within
	 * max_lag) and failed before it wrote that much: comparing the
	 * standbys with it would refuse every one of them, forever.
	 * Unsampled (every peer restarted since), the point where this
	 * primary began is the best lower bound known. A switchover raises
	 * it to the shutdown checkpoint once the clean stop reports it.
	 */
	if (fo->primary_lsn_of == old && fo->primary_lsn_seen)
		fo->rec.last_primary_lsn = fo->primary_lsn_seen;
	else
		fo->rec.last_primary_lsn = fo->rec.switch_lsn;
	/*
	 * It is never made primary again without a rejoin (S8). A switchover
	 * flags it once it has stopped: until then it is the primary, and a
	 * switchover that cannot stop it is cancelled.
	 */
	if (kind != FO_KIND_SWITCHOVER)
		set_flags(&fo->rec, old, FO_B_NEEDS_REJOIN, 0);
	enter_step(fo, now, FO_STEP_FENCING);
	event(fo, "failover-started",
	      "term=%" PRIu64 " old=%u agree=%zu quorum=%zu last_lsn=%" PRIu64
	      " kind=%s target=%u%s",
	      fo->term, old, agree, quorum(fo, now), fo->rec.last_primary_lsn,
	      fo_kind_name(kind), target, force ? " force=yes" : "");
	write_record(fo, true);
}

static void
start_failover(struct fo *fo, uint64_t now, uint8_t old, size_t agree)
{
	start_failover_kind(fo, now, old, agree, FO_KIND_FAILOVER, 0, false);
}

/*
 * A switchover whose clean stop failed: the old primary was never flagged
 * and stays the primary. If it did stop after all, its checks fail and an
 * ordinary failover follows.
 */
static void
cancel_switchover(struct fo *fo, uint64_t now, const char *why)
{
	fo->ctr.switchovers_cancelled++;
	event(fo, "switchover-cancelled", "term=%" PRIu64 " old=%u target=%u reason=\"%s\"",
	      fo->term, fo->rec.old_primary, fo->rec.target, why);
	fo->rec.old_primary = 0;
	fo->rec.candidate = 0;
	fo->rec.kind = FO_KIND_FAILOVER;
	fo->rec.target = 0;
	fo->rec.force = false;
	fo->failover_started = 0;
	enter_step(fo, now, FO_STEP_NONE);
	/* Give its checks a fresh start before anything is judged failed. */
	fo->primary_since = now;
	write_record(fo, false);
}

/* Steady state: learn the primary, watch it, start a failover. */
static void
steady(struct fo *fo, uint64_t now)
{
	size_t q = quorum(fo, now);
	uint8_t seen[FO_MAX_BACKENDS];
	size_t nseen = 0;

	for (size_t i = 0; i < fo->cfg.nbackends; i++) {
		uint8_t id = fo->cfg.backends[i].id;

		if (count_views(fo, now, id, view_up_primary) >= q)
			seen[nseen++] = id;
	}
	if (fo->rec.primary == 0) {
		const struct fo_view *v;

		if (nseen > 1) {
			alarm_once(fo, "two-primaries",
				   "more than one backend is a primary; no primary is chosen");
			return;
		}
		if (nseen == 0) {
			snprintf(fo->waiting, sizeof(fo->waiting),
				 "waiting for a primary to be seen by %zu peers", q);
			return;
		}
		v = own_view(fo, seen[0]);
		if (!view_up_primary(v) || !v->system_id) {
			snprintf(fo->waiting, sizeof(fo->waiting),
				 "waiting to check backend %u myself", seen[0]);
			return;
		}
		if (fo_record_flags(&fo->rec, seen[0]) & FO_B_NEEDS_REJOIN) {
			alarm_once(fo, "two-primaries",
				   "the only primary seen needs a rejoin; it is not taken as primary");
			return;
		}
		fo->rec.primary = seen[0];
		fo->primary_since = now;
		fo->rec.timeline = v->timeline;
		fo->rec.system_id = v->system_id;
		clear_alarm(fo);
		event(fo, "primary-known",
		      "term=%" PRIu64 " backend=%u timeline=%" PRIu32 " lsn=%" PRIu64,
		      fo->term, seen[0], v->timeline, v->lsn);
		write_record(fo, false);
		fo->primary_ver_term = fo->rec.term;
		fo->primary_ver_seq = fo->rec.seq;
		return;
	}
	/* Another primary beside the recorded one: say so, do nothing. */
	for (size_t i = 0; i < nseen; i++) {
		if (seen[i] != fo->rec.primary) {
			const struct fo_view *nv = own_view(fo, seen[i]);
			char why[128];

			/*
			 * Two-node mode: each peer alone (the other fenced)
			 * writes records the other never holds, and the higher
			 * version is not always the one that knows more: the
			 * record of a promotion can be lost. The recorded
			 * primary is up as a primary nowhere, this one is, on a
			 * newer timeline (every promotion raises it), of this
			 * cluster, free of a pending rejoin: record it, and the
			 * old one needs a rejoin.
			 */
			if (fo->cfg.two_node && view_up_primary(nv) &&
			    nv->timeline > fo->rec.timeline &&
			    count_views(fo, now, fo->rec.primary, view_up_primary) == 0 &&
			    !(fo_record_flags(&fo->rec, seen[i]) & FO_B_NEEDS_REJOIN) &&
			    (!fo->rec.system_id || nv->system_id == fo->rec.system_id)) {
				set_flags(&fo->rec, fo->rec.primary, FO_B_NEEDS_REJOIN, 0);
				event(fo, "primary-known",
				      "term=%" PRIu64 " backend=%u timeline=%" PRIu32 " lsn=%" PRIu64
				      " old=%u reason=\"promoted under a record this peer never held\"",
				      fo->term, seen[i], nv->timeline, nv->lsn, fo->rec.primary);
				fo->rec.primary = seen[i];
				fo->rec.timeline = nv->timeline;
				fo->primary_since = now;
				clear_alarm(fo);
				write_record(fo, false);
				fo->primary_ver_term = fo->rec.term;
				fo->primary_ver_seq = fo->rec.seq;
				return;
			}
			snprintf(why, sizeof(why),
				 "backend %u is a primary besides the recorded primary %u",
				 seen[i], fo->rec.primary);
			alarm_once(fo, "two-primaries", why);
			return;
		}
	}
	{
		const struct fo_view *v = own_view(fo, fo->rec.primary);

		if (view_up_primary(v) && v->timeline > fo->rec.timeline) {
			fo->rec.timeline = v->timeline;
			write_record(fo, false);
		}
	}
	/*
	 * Only "failed" counts. A primary seen up as a standby is news, not a
	 * failure: a view keeps the role of its last successful check, which
	 * may be from before the promotion for a while (the simulator found
	 * false failovers of healthy new primaries that way), and a primary
	 * demoted by hand answers, so nothing is promoted beside it.
	 */
	size_t agree = count_views(fo, now, fo->rec.primary, view_failed_only);

	if (agree < q && now >= fo->primary_since + fo->cfg.view_max_age_ms +
	    (fo->cfg.recheck_bound_ms ? fo->cfg.recheck_bound_ms : 2 * fo->cfg.settle_ms) &&
	    count_views(fo, now, fo->rec.primary, view_says_failed) >= q) {
		char why[140];

		snprintf(why, sizeof(why),
			 "the primary, backend %u, is up as a standby; no standby is promoted while it answers",
			 fo->rec.primary);
		alarm_once(fo, "failover-blocked", why);
	}
	/*
	 * The primary's own peer is silent too (its host is gone, or cut
	 * off from us): one failed check per peer is enough then, instead
	 * of failure_threshold check timeouts in a row.
	 */
	{
		const struct fo_backend_config *pb = backend_cfg(fo, fo->rec.primary);

		if (agree < q && pb && pb->peer && pb->peer != fo->cfg.self &&
		    peer_index(fo, pb->peer) >= 0 && !peer_up(fo, pb->peer, now)) {
			size_t n = 0;

			for (size_t i = 0; i < fo->cfg.npeers; i++) {
				const struct fo_view *v;

				if (!fresh(fo, (int)i, now) || !knows_primary(fo, i))
					continue;
				v = view_of(&fo->pv[i], fo->rec.primary);
				if (v && (v->health == FO_H_SUSPECT || v->health == FO_H_FAILED))
					n++;
			}
			agree = n;
		}
	}

	if (agree < q) {
		if (nseen == 1)
			clear_alarm(fo);
		return;
	}
	if (fo->rec.paused) {
		alarm_once(fo, "failover-blocked",
			   "the primary failed but maintenance mode is on");
		return;
	}
	if (!fo->cfg.auto_failover) {
		alarm_once(fo, "failover-blocked",
			   "the primary failed but auto_failover is off");
		return;
	}
	start_failover(fo, now, fo->rec.primary, agree);
}

static void
fence_confirmed(struct fo *fo, uint64_t now, const char *method)
{
	uint8_t old = fo->rec.old_primary;

	fo->ctr.fences++;
	event(fo, "backend-fence-done",
	      "term=%" PRIu64 " backend=%u method=%s duration_ms=%" PRIu64,
	      fo->term, old, method, now - fo->step_started);
	set_flags(&fo->rec, old, FO_B_FENCED, 0);
	enter_step(fo, now, FO_STEP_SELECTING);
	fo->fenced_at = now;
	/*
	 * Not waited on: a next coordinator that does not see this version
	 * fences again (harmless) and chooses from its own fresh checks.
	 */
	write_record(fo, false);
	check_now(fo);
}

static void
run_fence_command(struct fo *fo, uint64_t now, const char *why)
{
	uint8_t old = fo->rec.old_primary;

	if (!fo->cfg.has_fence_command) {
		char reason[180];

		fo->ctr.fences_failed++;
		snprintf(reason, sizeof(reason),
			 "cannot fence backend %u: %s and no fence_command is set; no promotion",
			 old, why);
		alarm_once(fo, "failover-blocked", reason);
		backoff(fo, now, "the fence");
		return;
	}
	event(fo, "backend-fence-started",
	      "term=%" PRIu64 " backend=%u method=command reason=\"%s\"", fo->term,
	      old, why);
	set_act(fo, now, ACT_FENCE_HOOK);
	hook(fo, FO_HOOK_FENCE, old, 0, old);
}

static void
do_fence(struct fo *fo, uint64_t now)
{
	uint8_t old = fo->rec.old_primary;
	const struct fo_backend_config *b = backend_cfg(fo, old);
	const struct stop_ack *a;

	switch (fo->act) {
	case ACT_IDLE:
		fo->attempt_term = fo->rec.term;
		fo->attempt_seq = fo->rec.seq;
		if (b && b->peer && fo->cfg.has_stop_command &&
		    (b->peer == fo->cfg.self || peer_up(fo, b->peer, now))) {
			set_act(fo, now, ACT_COOP_WAIT);
			fo->deadline = now + fo->cfg.fence_timeout_ms *
				(fo->rec.kind == FO_KIND_SWITCHOVER ? CLEAN_STOP_FACTOR : 1);
			snprintf(fo->waiting, sizeof(fo->waiting),
				 "waiting for peer %u to stop backend %u", b->peer, old);
			/*
			 * The FENCING record is committed now; only this
			 * version lets the peer act, so a failover no
			 * majority holds never stops anything.
			 */
			fo->rec.fence_go = true;
			write_record(fo, false);
			fo->attempt_term = fo->rec.term;
			fo->attempt_seq = fo->rec.seq;
			/* As that peer ourselves, the stop starts here and now. */
			maybe_stop_local(fo);
			break;
		}
		if (fo->rec.kind == FO_KIND_SWITCHOVER) {
			/* Only its own peer can stop it cleanly. */
			cancel_switchover(fo, now,
					  !b || !b->peer ? "the primary has no peer of its own" :
					  !fo->cfg.has_stop_command ? "no stop_command is set" :
					  "the primary's peer is not reachable");
			break;
		}
		run_fence_command(fo, now,
				  !b || !b->peer ? "it has no peer of its own" :
				  !fo->cfg.has_stop_command ? "no stop_command is set" :
				  "its peer is not reachable");
		break;
	case ACT_COOP_WAIT:
		a = b ? ack_of(fo, b->peer) : NULL;
		if (a && a->valid && a->backend == old &&
		    a->failover_term == fo->rec.failover_term &&
		    a->failover_seq == fo->rec.failover_seq) {
			if (a->ok) {
				if (fo->rec.kind == FO_KIND_SWITCHOVER) {
					/* Stopped: from now on it is an old primary (S8). */
					fo->rec.shutdown_lsn = a->lsn;
					set_flags(&fo->rec, old, FO_B_NEEDS_REJOIN, 0);
					if (a->lsn > fo->rec.last_primary_lsn)
						fo->rec.last_primary_lsn = a->lsn;
				}
				fence_confirmed(fo, now, "cooperative");
				break;
			}
			/* Not run again for a switchover (maybe_stop_local): final. */
			if (fo->rec.kind == FO_KIND_SWITCHOVER) {
				cancel_switchover(fo, now, "stop_command failed");
				break;
			}
			if (ver_ge(a->ver_term, a->ver_seq, fo->attempt_term,
				   fo->attempt_seq)) {
				event(fo, "backend-fence-failed",
				      "term=%" PRIu64 " backend=%u method=cooperative reason=\"stop_command failed on peer %u\"",
				      fo->term, old, b->peer);
				run_fence_command(fo, now, "its peer could not stop it");
				break;
			}
		}
		if (now >= fo->deadline && fo->rec.kind == FO_KIND_SWITCHOVER) {
			cancel_switchover(fo, now, "the clean stop was not confirmed in time");
			break;
		}
		if (now >= fo->deadline) {
			event(fo, "backend-fence-failed",
			      "term=%" PRIu64 " backend=%u method=cooperative reason=\"no confirmation within fence_timeout\"",
			      fo->term, old);
			run_fence_command(fo, now, "its peer did not confirm the stop");
		}
		break;
	case ACT_BACKOFF:
		if (now >= fo->retry_at) {
			/* A new attempt is a new record version: the peer runs again. */
			set_act(fo, now, ACT_IDLE);
			fo->rec.fence_go = false;
			write_record(fo, true);
		}
		break;
	default:
		break;
	}
}

/* Candidate choice among the coordinator's own checks since the fence. */
static void
do_select(struct fo *fo, uint64_t now)
{
	const struct fo_view *best = NULL;
	const struct fo_backend_config *bestc = NULL;
	size_t q = quorum(fo, now);
	uint64_t settle_end = fo->fenced_at + fo->cfg.settle_ms;
	bool waiting = false;
	char others[160] = "";
	size_t olen = 0;

	if (fo->act == ACT_BACKOFF && now < fo->retry_at)
		return;
	/* A primary is already there (promoted by hand?): never a second one. */
	for (size_t i = 0; i < fo->cfg.nbackends; i++) {
		const struct fo_backend_config *c = &fo->cfg.backends[i];
		const struct fo_view *v = own_view(fo, c->id);

		if (c->id != fo->rec.old_primary && view_up_primary(v)) {
			char why[140];

			/*
			 * A primary on a newer timeline than the failed one,
			 * of this cluster, free of a pending rejoin: a promotion
			 * for this failure whose record was lost (two-node mode,
			 * where each peer alone writes records the other never
			 * held). Finish it rather than wait forever beside it.
			 */
			if (fo->cfg.two_node && v->timeline > fo->rec.timeline &&
			    !(fo_record_flags(&fo->rec, c->id) & FO_B_NEEDS_REJOIN) &&
			    (!fo->rec.system_id || v->system_id == fo->rec.system_id)) {
				event(fo, "candidate-chosen",
				      "term=%" PRIu64 " backend=%u timeline=%" PRIu32 " lsn=%" PRIu64
				      " lag=0 standbys= already_primary=yes",
				      fo->term, c->id, v->timeline, v->lsn);
				fo->rec.candidate = c->id;
				fo->rec.switch_lsn = v->lsn;
				enter_step(fo, now, FO_STEP_PROMOTING);
				write_record(fo, true);
				return;
			}
			snprintf(why, sizeof(why),
				 "backend %u is already a primary; no standby is promoted beside it",
				 c->id);
			fo->ctr.refusals++;
			alarm_once(fo, "two-primaries", why);
			backoff(fo, now, "the candidate choice");
			return;
		}
	}
	const struct fo_view *tv = NULL;
	const struct fo_backend_config *tc = NULL;

	for (size_t i = 0; i < fo->cfg.nbackends; i++) {
		const struct fo_backend_config *c = &fo->cfg.backends[i];
		const struct fo_view *v = own_view(fo, c->id);

		if (c->id == fo->rec.old_primary)
			continue;
		if (!v || v->checked_at < fo->fenced_at) {
			/*
			 * Not checked since the fence. One that was up as a
			 * standby at our last check may be the best: wait for
			 * its check (it ends within the health timeout, up or
			 * failed) even when this peer was held up past settle;
			 * only one not seen up is skipped after settle.
			 */
			if (now < settle_end ||
			    (v && v->health == FO_H_UP && v->role == FO_R_STANDBY &&
			     now < fo->fenced_at + 10 * (uint64_t)fo->cfg.settle_ms))
				waiting = true;
			continue;
		}
		if (v->health != FO_H_UP || v->role != FO_R_STANDBY)
			continue;
		if (c->priority == 0 ||
		    (fo_record_flags(&fo->rec, c->id) & FO_B_NEEDS_REJOIN))
			continue;
		if (fo->rec.system_id && v->system_id != fo->rec.system_id)
			continue;
		if (count_views(fo, now, c->id, view_failed_only) >= q)
			continue;
		if (c->id == fo->rec.target) {
			tv = v;
			tc = c;
		}
		if (olen < sizeof(others) - 40)
			olen += (size_t)snprintf(others + olen, sizeof(others) - olen,
						 "%s%u:%" PRIu32 "/%" PRIu64, olen ? "," : "",
						 c->id, v->timeline, v->lsn);
		if (!best || v->timeline > best->timeline ||
		    (v->timeline == best->timeline && v->lsn > best->lsn) ||
		    (v->timeline == best->timeline && v->lsn == best->lsn &&
		     (c->priority > bestc->priority ||
		      (c->priority == bestc->priority && c->id < bestc->id)))) {
			best = v;
			bestc = c;
		}
	}
	/*
	 * A switchover promotes its target once it holds the old primary's
	 * shutdown checkpoint: everything the old primary wrote before it
	 * (PostgreSQL's clean shutdown sends its WAL to connected standbys
	 * before it ends). Until verify_timeout after the stop; then the
	 * failover's rules decide, and say so.
	 */
	if (fo->rec.kind == FO_KIND_SWITCHOVER && !fo->degraded) {
		const char *why = NULL;

		if (!fo->rec.shutdown_lsn)
			why = "the stop did not report a shutdown checkpoint LSN";
		else if (tv && tv->lsn >= fo->rec.shutdown_lsn) {
			best = tv;
			bestc = tc;
			waiting = false;
			goto chosen;
		} else if (now >= fo->fenced_at + fo->cfg.verify_timeout_ms)
			why = "the target did not receive the shutdown checkpoint within verify_timeout";
		if (why) {
			char text[200];

			fo->degraded = true;
			snprintf(text, sizeof(text),
				 "term=%" PRIu64 " target=%u shutdown_lsn=%" PRIu64 " target_lsn=%" PRIu64 " reason=\"%s\"",
				 fo->term, fo->rec.target, fo->rec.shutdown_lsn,
				 tv ? tv->lsn : 0, why);
			event(fo, "switchover-degraded", "%s", text);
		} else {
			snprintf(fo->waiting, sizeof(fo->waiting),
				 "waiting for backend %u to receive the old primary's WAL up to %" PRIu64,
				 fo->rec.target, fo->rec.shutdown_lsn);
			if (now >= fo->next_poll) {
				check_now(fo);
				fo->next_poll = now + VERIFY_POLL_MS;
			}
			return;
		}
	}
	if (waiting) {
		snprintf(fo->waiting, sizeof(fo->waiting),
			 "waiting for fresh checks of the standbys");
		if (now >= fo->next_poll) {
			check_now(fo);
			fo->next_poll = now + VERIFY_POLL_MS;
		}
		return;
	}
	if (!best) {
		fo->ctr.refusals++;
		alarm_once(fo, "failover-refused",
			   "no eligible standby: none is up, a standby, of this cluster, of priority > 0 and free of a pending rejoin");
		backoff(fo, now, "the candidate choice");
		fo->fenced_at = now;	/* the next choice wants fresh checks */
		check_now(fo);
		return;
	}
	/* The standby asked for, when it is eligible and close enough. */
	if (tv && (fo->rec.force || tv->lsn + fo->cfg.max_lag >= fo->rec.last_primary_lsn)) {
		best = tv;
		bestc = tc;
	}
	if (!fo->rec.force && best->lsn + fo->cfg.max_lag < fo->rec.last_primary_lsn) {
		char reason[180];

		fo->ctr.refusals++;
		snprintf(reason, sizeof(reason),
			 "candidate %u is %" PRIu64 " bytes behind the last primary LSN %" PRIu64 ", more than max_lag %" PRIu64,
			 bestc->id, fo->rec.last_primary_lsn - best->lsn,
			 fo->rec.last_primary_lsn, fo->cfg.max_lag);
		alarm_once(fo, "failover-refused", reason);
		backoff(fo, now, "the candidate choice");
		fo->fenced_at = now;
		check_now(fo);
		return;
	}
chosen:
	event(fo, "candidate-chosen",
	      "term=%" PRIu64 " backend=%u timeline=%" PRIu32 " lsn=%" PRIu64 " lag=%" PRIu64 " standbys=%s",
	      fo->term, bestc->id, best->timeline, best->lsn,
	      fo->rec.last_primary_lsn > best->lsn ? fo->rec.last_primary_lsn - best->lsn : 0,
	      others);
	fo->rec.candidate = bestc->id;
	fo->rec.switch_lsn = best->lsn;
	enter_step(fo, now, FO_STEP_PROMOTING);
	write_record(fo, true);
}

static void
promoted(struct fo *fo, uint64_t now, const struct fo_view *v)
{
	uint8_t c = fo->rec.candidate;
	const struct fo_backend_config *bc = backend_cfg(fo, c);

	fo->ctr.promotions++;
	event(fo, "promote-verified",
	      "term=%" PRIu64 " backend=%u timeline=%" PRIu32 " lsn=%" PRIu64 " duration_ms=%" PRIu64,
	      fo->term, c, v->timeline, v->lsn, now - fo->step_started);
	fo->rec.primary = c;
	fo->primary_since = now;
	fo->rec.timeline = v->timeline;
	fo->primary_lsn_seen = v->lsn;
	fo->primary_lsn_of = c;
	enter_step(fo, now, FO_STEP_FOLLOWING);
	/*
	 * Not waited on: a next coordinator that only holds "promoting C"
	 * sees C as a primary on a newer timeline in its own check and
	 * takes this same step, without promoting anything.
	 */
	write_record(fo, false);
	fo->primary_ver_term = fo->rec.term;
	fo->primary_ver_seq = fo->rec.seq;
	(void)bc;
}

static void
do_promote(struct fo *fo, uint64_t now)
{
	uint8_t c = fo->rec.candidate;
	const struct fo_view *v = own_view(fo, c);

	/* Already a primary on a newer timeline (a previous coordinator did it)? */
	if (v && view_up_primary(v) && v->checked_at >= fo->step_started &&
	    (fo->rec.timeline == 0 || v->timeline > fo->rec.timeline)) {
		promoted(fo, now, v);
		return;
	}
	switch (fo->act) {
	case ACT_IDLE:
		event(fo, "promote-started", "term=%" PRIu64 " backend=%u old=%u",
		      fo->term, c, fo->rec.old_primary);
		set_act(fo, now, ACT_PROMOTE_HOOK);
		snprintf(fo->waiting, sizeof(fo->waiting),
			 "waiting for failover_command to promote backend %u", c);
		hook(fo, FO_HOOK_PROMOTE, fo->rec.old_primary, c, fo->rec.old_primary);
		break;
	case ACT_VERIFY:
		if (now >= fo->deadline) {
			fo->ctr.promotions_failed++;
			event(fo, "promote-failed",
			      "term=%" PRIu64 " backend=%u reason=\"not seen as primary on a new timeline within verify_timeout\"",
			      fo->term, c);
			backoff(fo, now, "the promotion");
		} else if (now >= fo->next_poll) {
			check_now(fo);
			fo->next_poll = now + VERIFY_POLL_MS;
		}
		break;
	case ACT_BACKOFF:
		if (now >= fo->retry_at) {
			set_act(fo, now, ACT_IDLE);
			do_promote(fo, now);
		}
		break;
	default:
		break;
	}
}

static void
finish_failover(struct fo *fo, uint64_t now)
{
	size_t ok = 0, failed = 0;

	for (size_t i = 0; i < fo->cfg.nbackends; i++) {
		if (fo->follow[i] == FS_OK)
			ok++;
		else if (fo->follow[i] == FS_FAILED || fo->follow[i] == FS_SKIPPED)
			failed++;
	}
	uint8_t old = fo->rec.old_primary;
	bool switchover = fo->rec.kind == FO_KIND_SWITCHOVER;

	fo->ctr.failovers_done++;
	if (switchover)
		fo->ctr.switchovers_done++;
	if (fo->failover_started)
		event(fo, "failover-done",
		      "term=%" PRIu64 " old=%u new=%u followed=%zu not_followed=%zu kind=%s duration_ms=%" PRIu64,
		      fo->term, fo->rec.old_primary, fo->rec.primary, ok, failed,
		      fo_kind_name(fo->rec.kind), now - fo->failover_started);
	else
		event(fo, "failover-done",
		      "term=%" PRIu64 " old=%u new=%u followed=%zu not_followed=%zu kind=%s resumed=yes",
		      fo->term, fo->rec.old_primary, fo->rec.primary, ok, failed,
		      fo_kind_name(fo->rec.kind));
	fo->rec.old_primary = 0;
	fo->rec.candidate = 0;
	fo->rec.kind = FO_KIND_FAILOVER;
	fo->rec.target = 0;
	fo->rec.force = false;
	fo->failover_started = 0;
	enter_step(fo, now, FO_STEP_NONE);
	/*
	 * Committed before anything acts on it: a next coordinator that only
	 * held "promoting" would promote again, and expects the old primary
	 * stopped then, not rejoined (the simulator found the switchover's
	 * rejoin below running before the end of the failover was durable).
	 */
	write_record(fo, true);
	/*
	 * A switchover stopped the old primary cleanly: it follows the new
	 * one as a standby at once (rejoin_command; pg_rewind finds nothing
	 * to rewind), once that is committed (rejoin_switched_over). After a
	 * failover that is the operator's call.
	 */
	if (switchover && fo->cfg.has_rejoin_command)
		fo->rejoin_after = old;
}

/* The rejoin a switchover asked for, once its end is committed. */
static void
rejoin_switched_over(struct fo *fo)
{
	uint8_t old = fo->rejoin_after;

	if (!old || fo->rec.step != FO_STEP_NONE || fo->rejoin_running)
		return;
	fo->rejoin_after = 0;
	if (old == fo->rec.primary || fo->fence_running == old ||
	    !(fo_record_flags(&fo->rec, old) & FO_B_NEEDS_REJOIN))
		return;
	fo->rejoin_running = old;
	event(fo, "rejoin-started", "term=%" PRIu64 " backend=%u new=%u by_peer=0 reason=switchover",
	      fo->term, old, fo->rec.primary);
	hook(fo, FO_HOOK_REJOIN, old, fo->rec.primary, old);
}

static void
do_follow(struct fo *fo, uint64_t now)
{
	bool running = false;

	if (fo->act == ACT_IDLE) {
		bool flagged = false;

		set_act(fo, now, ACT_FOLLOW);
		for (size_t i = 0; i < fo->cfg.nbackends; i++) {
			const struct fo_backend_config *c = &fo->cfg.backends[i];
			const struct fo_view *v = own_view(fo, c->id);

			if (c->id == fo->rec.primary || c->id == fo->rec.old_primary ||
			    (fo_record_flags(&fo->rec, c->id) & FO_B_NEEDS_REJOIN)) {
				fo->follow[i] = FS_NONE;
				continue;
			}
			if (!fo->cfg.has_follow_command || !v || v->health != FO_H_UP) {
				fo->follow[i] = FS_SKIPPED;
				set_flags(&fo->rec, c->id, FO_B_NEEDS_REJOIN, 0);
				flagged = true;
				event(fo, "follow-failed",
				      "term=%" PRIu64 " backend=%u new=%u reason=\"%s\"",
				      fo->term, c->id, fo->rec.primary,
				      !fo->cfg.has_follow_command ?
				      "no follow_primary_command is set; it needs a rejoin" :
				      "it is not up; it needs a rejoin");
				continue;
			}
			fo->follow[i] = FS_RUNNING;
			fo->ctr.follows++;
			event(fo, "follow-started", "term=%" PRIu64 " backend=%u new=%u",
			      fo->term, c->id, fo->rec.primary);
			hook(fo, FO_HOOK_FOLLOW, c->id, fo->rec.primary,
			     fo->rec.old_primary);
		}
		if (flagged)
			write_record(fo, false);
	}
	for (size_t i = 0; i < fo->cfg.nbackends; i++)
		if (fo->follow[i] == FS_RUNNING)
			running = true;
	if (running) {
		snprintf(fo->waiting, sizeof(fo->waiting),
			 "waiting for follow_primary_command");
		return;
	}
	finish_failover(fo, now);
}

/* Operator commands carried by the peers (and our own). */
static void
apply_ops(struct fo *fo, uint64_t now)
{
	for (size_t i = 0; i < fo->cfg.npeers; i++) {
		struct pview *p = &fo->pv[i];
		uint8_t id = fo->cfg.peers[i];

		if (!p->have || p->op_seq == 0 ||
		    p->op_seq <= fo_record_op_applied(&fo->rec, id))
			continue;
		set_op_applied(&fo->rec, id, p->op_seq);
		switch (p->op) {
		case FO_CMD_PAUSE:
			if (!fo->rec.paused)
				event(fo, "maintenance-on", "term=%" PRIu64 " by_peer=%u",
				      fo->term, id);
			fo->rec.paused = true;
			break;
		case FO_CMD_RESUME:
			if (fo->rec.paused)
				event(fo, "maintenance-off", "term=%" PRIu64 " by_peer=%u",
				      fo->term, id);
			fo->rec.paused = false;
			clear_alarm(fo);
			break;
		case FO_CMD_REJOIN: {
			uint8_t b = p->op_arg;

			/*
			 * Not while our operator fence of it runs: the fence
			 * would stop what the rejoin starts (the simulator
			 * found such a standby rejoined, then promoted).
			 */
			if (fo->rejoin_running || fo->fence_running == b ||
			    fo->rec.step != FO_STEP_NONE ||
			    !fo->rec.primary || b == fo->rec.primary ||
			    !(fo_record_flags(&fo->rec, b) & FO_B_NEEDS_REJOIN)) {
				event(fo, "rejoin-failed",
				      "term=%" PRIu64 " backend=%u by_peer=%u reason=\"%s\"",
				      fo->term, b, id,
				      fo->rejoin_running ? "a rejoin is running" :
				      fo->fence_running == b ? "an operator fence of it is running" :
				      fo->rec.step != FO_STEP_NONE ? "a failover is in progress" :
				      !fo->rec.primary ? "no primary is known" :
				      b == fo->rec.primary ? "it is the primary" :
				      "it does not need a rejoin");
				break;
			}
			fo->rejoin_running = b;
			event(fo, "rejoin-started", "term=%" PRIu64 " backend=%u new=%u by_peer=%u",
			      fo->term, b, fo->rec.primary, id);
			hook(fo, FO_HOOK_REJOIN, b, fo->rec.primary, b);
			break;
		}
		case FO_CMD_SWITCHOVER:
		case FO_CMD_FAILOVER:
		case FO_CMD_FAILOVER_FORCE: {
			char report[1024];
			uint8_t chosen = 0;
			bool sw = p->op == FO_CMD_SWITCHOVER;

			/* The coordinator's own checks decide, not the asking peer's. */
			if (fo_preflight(fo, now, (enum fo_command)p->op, p->op_arg,
					 report, sizeof(report), &chosen) < 0) {
				char *no = strstr(report, "no: ");
				char *nl;

				no = no ? no + 4 : report;
				nl = strchr(no, '\n');
				if (nl)
					*nl = '\0';
				for (char *q = no; *q; q++)
					if (*q == '"')
						*q = '\'';
				fo->ctr.refusals++;
				event(fo, sw ? "switchover-refused" : "manual-failover-refused",
				      "term=%" PRIu64 " target=%u by_peer=%u reason=\"%s\"",
				      fo->term, p->op_arg, id, no);
				break;
			}
			start_failover_kind(fo, now, fo->rec.primary, 0,
					    sw ? FO_KIND_SWITCHOVER : FO_KIND_MANUAL,
					    sw ? chosen : p->op_arg,
					    p->op == FO_CMD_FAILOVER_FORCE);
			break;
		}
		case FO_CMD_FENCE: {
			uint8_t b = p->op_arg;
			/* Nor while a rejoin of it runs: its end clears the flag set here. */
			const char *why = fo->fence_running ? "an operator fence is running" :
				fo->rejoin_running == b ? "a rejoin of it is running" :
				!fo->cfg.has_fence_command ? "no fence_command is set" :
				backend_index(fo, b) < 0 ? "it is not configured" :
				b == fo->rec.primary && fo->rec.step == FO_STEP_NONE ?
				"it is the primary; replace it with pgvigilctl failover" :
				(b == fo->rec.old_primary || b == fo->rec.candidate) &&
				fo->rec.step != FO_STEP_NONE ?
				"a failover in progress acts on it" : NULL;

			if (why) {
				event(fo, "backend-fence-failed",
				      "term=%" PRIu64 " backend=%u method=operator by_peer=%u reason=\"%s\"",
				      fo->term, b, id, why);
				break;
			}
			/*
			 * Out of the candidates from now on, whatever the fence
			 * does: committed before the fence runs (operator_fence),
			 * or a next coordinator without the flag could promote
			 * the backend being fenced (the simulator found it).
			 */
			set_flags(&fo->rec, b, FO_B_NEEDS_REJOIN, 0);
			fo->fence_running = b;
			fo->fence_after = b;
			fo->fence_by = id;
			break;
		}
		default:
			break;
		}
		write_record(fo, fo->fence_after != 0);
	}
	(void)now;
}

/* The operator fence, once a majority holds its needs-rejoin flag. */
static void
operator_fence(struct fo *fo)
{
	uint8_t b = fo->fence_after;

	if (!b)
		return;
	fo->fence_after = 0;
	fo->ctr.operator_fences++;
	event(fo, "backend-fence-started",
	      "term=%" PRIu64 " backend=%u method=operator by_peer=%u reason=\"operator request\"",
	      fo->term, b, fo->fence_by);
	hook(fo, FO_HOOK_FENCE, b, 0, b);
}

/*
 * vip.follow = primary: the VIP is only ever on the coordinator (its lease
 * is what makes S1 hold), so the coordinator role goes to the primary's
 * peer. Between steps only: not while hooks of this coordinator run.
 */
static bool
maybe_transfer(struct fo *fo, uint64_t now)
{
	const struct fo_backend_config *b;
	struct fo_effect *e;
	int pi;

	/* Just handed out: give it a moment to take before doing anything. */
	if (fo->transfer_sent && now < fo->transfer_sent + TRANSFER_WAIT_MS)
		return true;
	if (fo->cfg.vip_follow != FO_VIP_PRIMARY || !fo->rec.primary ||
	    now < fo->transfer_at)
		return false;
	if (fo->rec.step != FO_STEP_NONE &&
	    !(fo->rec.step == FO_STEP_FOLLOWING && fo->act == ACT_IDLE))
		return false;
	if (fo->rejoin_running || fo->rejoin_after)
		return false;
	b = backend_cfg(fo, fo->rec.primary);
	if (!b || !b->peer || b->peer == fo->cfg.self || !peer_up(fo, b->peer, now))
		return false;
	pi = peer_index(fo, b->peer);
	if (pi < 0 || !fo->cfg.peer_eligible[pi])
		return false;
	e = effect(fo, FO_EFF_TRANSFER);
	if (!e)
		return false;
	e->peer = b->peer;
	event(fo, "coordinator-transfer",
	      "term=%" PRIu64 " to=%u primary=%u step=%s", fo->term, b->peer,
	      fo->rec.primary, fo_step_name(fo->rec.step));
	fo->transfer_sent = now;
	/*
	 * If it does not take (the peer could not stand), the steps go on
	 * here and the handover is tried again later, not on every step.
	 */
	fo->transfer_at = now + TRANSFER_RETRY_MS;
	return true;
}

static void
progress(struct fo *fo, uint64_t now)
{
	if (!fo->coordinator || !fo->synced)
		return;
	if (fo->commit_pending) {
		if (!committed(fo, now)) {
			snprintf(fo->waiting, sizeof(fo->waiting),
				 "waiting for a majority to hold the cluster record");
			return;
		}
		fo->commit_pending = false;
	}
	apply_ops(fo, now);
	/* An operator's switchover or failover waits for its commit too. */
	if (fo->commit_pending && !committed(fo, now)) {
		snprintf(fo->waiting, sizeof(fo->waiting),
			 "waiting for a majority to hold the cluster record");
		return;
	}
	fo->commit_pending = false;
	operator_fence(fo);
	rejoin_switched_over(fo);
	if (maybe_transfer(fo, now))
		return;
	switch ((enum fo_step)fo->rec.step) {
	case FO_STEP_NONE:
		steady(fo, now);
		break;
	case FO_STEP_FENCING:
		do_fence(fo, now);
		break;
	case FO_STEP_SELECTING:
		do_select(fo, now);
		break;
	case FO_STEP_PROMOTING:
		do_promote(fo, now);
		break;
	case FO_STEP_FOLLOWING:
		do_follow(fo, now);
		break;
	}
	/* A step may have been written and committed at once (one peer). */
	if (fo->commit_pending && committed(fo, now)) {
		fo->commit_pending = false;
		progress(fo, now);
	}
}

/* The coordinator has read the records of a majority in its term. */
static void
maybe_sync(struct fo *fo, uint64_t now)
{
	size_t n = 0;

	if (!fo->coordinator || fo->synced)
		return;
	for (size_t i = 0; i < fo->cfg.npeers; i++)
		if ((int)i == self_index(fo) ||
		    (fo->pv[i].have && fo->pv[i].at >= fo->coord_since))
			n++;
	if (n < needed(fo, now)) {
		snprintf(fo->waiting, sizeof(fo->waiting),
			 "waiting for the cluster records of a majority");
		return;
	}
	fo->synced = true;
	reset_act(fo);
	fo->step_started = now;
	fo->primary_since = now;
	/* A choice made here wants checks newer than this moment (resumed at selecting). */
	fo->fenced_at = now;
	check_now(fo);
	/*
	 * Our own version of the newest record, in our term. It asks the old
	 * primary's peer for nothing: fence_go belongs to one coordinator's
	 * attempt, and do_fence sets it again when this one fences. Carried
	 * over, it had that peer stop the primary again for a switchover
	 * this coordinator then cancelled (the simulator found it).
	 */
	fo->rec.fence_go = false;
	write_record(fo, fo->rec.step != FO_STEP_NONE);
	fo->primary_ver_term = fo->rec.term;
	fo->primary_ver_seq = fo->rec.seq;
	if (fo->rec.step != FO_STEP_NONE)
		event(fo, "failover-resumed",
		      "term=%" PRIu64 " step=%s old=%u candidate=%u",
		      fo->term, fo_step_name(fo->rec.step), fo->rec.old_primary,
		      fo->rec.candidate);
}

/* ---- public API --------------------------------------------------------- */

int
fo_check_config(const struct fo_config *c, char *err, size_t errlen)
{
	bool self = false;

	if (c->npeers == 0 || c->npeers > FO_MAX_PEERS) {
		snprintf(err, errlen, "between 1 and %d peers are needed", FO_MAX_PEERS);
		return -1;
	}
	if (c->nbackends > FO_MAX_BACKENDS) {
		snprintf(err, errlen, "at most %d backends", FO_MAX_BACKENDS);
		return -1;
	}
	for (size_t i = 0; i < c->npeers; i++)
		if (c->peers[i] == c->self)
			self = true;
	if (!self) {
		snprintf(err, errlen, "peer %u is not configured", c->self);
		return -1;
	}
	if (c->failure_quorum > c->npeers) {
		snprintf(err, errlen, "failure_quorum %u is more than the %zu peers",
			 c->failure_quorum, c->npeers);
		return -1;
	}
	if (c->retry_ms == 0 || c->retry_max_ms < c->retry_ms) {
		snprintf(err, errlen, "retry_max must be at least retry_interval");
		return -1;
	}
	return 0;
}

struct fo *
fo_new(const struct fo_config *cfg, const struct fo_record *rec, uint64_t now)
{
	struct fo *fo = calloc(1, sizeof(*fo));

	if (!fo)
		return NULL;
	fo->cfg = *cfg;
	if (rec)
		fo->rec = *rec;
	int si = self_index(fo);

	if (si >= 0) {
		fo->pv[si].rec_term = fo->rec.term;
		fo->pv[si].rec_seq = fo->rec.seq;
	}
	/* Operator commands already applied must not be replayed under a new seq. */
	fo->op_seq = fo_record_op_applied(&fo->rec, cfg->self);
	/*
	 * A stop that record asked of our previous run is not asked again:
	 * the record may be stale (the failover ended, or the switchover was
	 * cancelled, while we were down), and stopping a primary the cluster
	 * kept is an outage. A coordinator's newer attempt asks again.
	 */
	if (fo->rec.step == FO_STEP_FENCING && fo->rec.fence_go) {
		fo->stop_for_term = fo->rec.term;
		fo->stop_for_seq = fo->rec.seq;
	}
	(void)now;
	return fo;
}

void
fo_free(struct fo *fo)
{
	free(fo);
}

void
fo_reload(struct fo *fo, const struct fo_config *cfg)
{
	struct pview saved[FO_MAX_PEERS];
	uint8_t ids[FO_MAX_PEERS];
	size_t n = fo->cfg.npeers;

	memcpy(saved, fo->pv, sizeof(saved));
	memcpy(ids, fo->cfg.peers, sizeof(ids));
	fo->cfg = *cfg;
	memset(fo->pv, 0, sizeof(fo->pv));
	for (size_t i = 0; i < n; i++) {
		int j = peer_index(fo, ids[i]);

		if (j >= 0)
			fo->pv[j] = saved[i];
	}
	fo->neffs = 0;
}

void
fo_set_coordinator(struct fo *fo, uint64_t now, bool coordinator, uint64_t term)
{
	fo->neffs = 0;
	note_call(fo, now);
	if (coordinator && fo->coordinator && term == fo->term) {
		/*
		 * Two-node mode: the other peer's silence may be what completes
		 * the read (its view ages out, one record is then enough), and
		 * no heartbeat comes to say so.
		 */
		maybe_sync(fo, now);
		progress(fo, now);
		return;
	}
	if (!coordinator) {
		if (fo->coordinator) {
			fo->coordinator = false;
			fo->rejoin_after = 0;
			/* A fence that never started is not running. */
			if (fo->fence_after && fo->fence_running == fo->fence_after)
				fo->fence_running = 0;
			fo->fence_after = 0;
			reset_act(fo);
			clear_alarm(fo);
		}
		return;
	}
	/*
	 * A record of a newer term exists (two-node mode: the election may
	 * not have heard of that term yet): this term's coordinator must
	 * not write behind it.
	 */
	if (term < fo->rec.term) {
		if (fo->coordinator) {
			fo->coordinator = false;
			reset_act(fo);
		}
		return;
	}
	/*
	 * Our rejoin and operator fence of an earlier term are not ours to
	 * wait for; those of this term, after a loss of the role within it
	 * (a lease that lapsed a moment), still are: their results count
	 * again, and a rejoin beside our own fence must stay refused (the
	 * simulator found one started).
	 */
	if (term != fo->term) {
		fo->rejoin_running = 0;
		fo->fence_running = 0;
	}
	if (fo->fence_after && fo->fence_running == fo->fence_after)
		fo->fence_running = 0;
	fo->fence_after = 0;
	fo->coordinator = true;
	fo->term = term;
	fo->coord_since = now;
	fo->synced = false;
	fo->failover_started = 0;
	fo->rejoin_after = 0;
	fo->degraded = false;
	/*
	 * A handover this peer made as coordinator of an earlier term says
	 * nothing about this one: waiting out its retry delay kept the VIP
	 * away from the primary's peer for up to TRANSFER_RETRY_MS after a
	 * switchover back (bench_switchover found it).
	 */
	fo->transfer_sent = 0;
	fo->transfer_at = 0;
	reset_act(fo);
	clear_alarm(fo);
	maybe_sync(fo, now);
	progress(fo, now);
}

void
fo_local_view(struct fo *fo, uint64_t now, const struct fo_view *v, size_t n)
{
	int si = self_index(fo);
	struct pview *p;
	bool changed = false;

	fo->neffs = 0;
	note_call(fo, now);
	if (si < 0)
		return;
	p = &fo->pv[si];
	if (n > FO_MAX_BACKENDS)
		n = FO_MAX_BACKENDS;
	for (size_t i = 0; i < n; i++) {
		const struct fo_view *old = view_of(p, v[i].backend);

		if (!old || old->health != v[i].health || old->role != v[i].role ||
		    old->timeline != v[i].timeline)
			changed = true;
	}
	if (n != p->n)
		changed = true;
	memcpy(p->v, v, n * sizeof(*v));
	p->n = n;
	p->have = true;
	p->at = now;
	if (fo->view_stale_since) {
		bool all = true;

		for (size_t i = 0; i < n; i++)
			if (v[i].checked_at < fo->view_stale_since)
				all = false;
		if (all)
			fo->view_stale_since = 0;
	}
	for (size_t i = 0; i < n; i++) {
		if (v[i].backend == fo->rec.primary && v[i].role == FO_R_PRIMARY &&
		    primary_timeline(fo, &v[i]) &&
		    (fo->primary_lsn_of != v[i].backend || v[i].lsn > fo->primary_lsn_seen)) {
			fo->primary_lsn_of = v[i].backend;
			fo->primary_lsn_seen = v[i].lsn;
		}
	}
	/* A change of health or role is news the coordinator wants now. */
	if (changed)
		flush(fo);
	progress(fo, now);
}

/* ---- extension codec ---------------------------------------------------- */

struct wcur {
	uint8_t *p;
	size_t cap, len;
	bool overflow;
};

static void
w8(struct wcur *c, uint8_t v)
{
	if (c->len + 1 > c->cap) {
		c->overflow = true;
		return;
	}
	c->p[c->len++] = v;
}

static void
w16(struct wcur *c, uint16_t v)
{
	w8(c, (uint8_t)(v >> 8));
	w8(c, (uint8_t)v);
}

static void
w32(struct wcur *c, uint32_t v)
{
	w16(c, (uint16_t)(v >> 16));
	w16(c, (uint16_t)v);
}

static void
w64(struct wcur *c, uint64_t v)
{
	w32(c, (uint32_t)(v >> 32));
	w32(c, (uint32_t)v);
}

struct rcur {
	const uint8_t *p;
	size_t len, off;
	bool bad;
};

static uint8_t
r8(struct rcur *c)
{
	if (c->off + 1 > c->len) {
		c->bad = true;
		return 0;
	}
	return c->p[c->off++];
}

static uint16_t
r16(struct rcur *c)
{
	uint16_t hi = r8(c);

	return (uint16_t)(hi << 8 | r8(c));
}

static uint32_t
r32(struct rcur *c)
{
	uint32_t hi = r16(c);

	return hi << 16 | r16(c);
}

static uint64_t
r64(struct rcur *c)
{
	uint64_t hi = r32(c);

	return hi << 32 | r32(c);
}

/* Starts a TLV; returns the offset of its length field. */
static size_t
tlv_begin(struct wcur *c, uint16_t type)
{
	size_t at;

	w16(c, type);
	at = c->len;
	w16(c, 0);
	return at;
}

static void
tlv_end(struct wcur *c, size_t at)
{
	size_t len = c->len - at - 2;

	if (c->overflow)
		return;
	c->p[at] = (uint8_t)(len >> 8);
	c->p[at + 1] = (uint8_t)len;
}

static void
put_record(struct wcur *c, const struct fo_record *r)
{
	w64(c, r->term);
	w64(c, r->seq);
	w8(c, r->primary);
	w32(c, r->timeline);
	w64(c, r->system_id);
	w64(c, r->switch_lsn);
	w8(c, r->step);
	w8(c, r->old_primary);
	w8(c, r->candidate);
	w64(c, r->failover_term);
	w64(c, r->failover_seq);
	w8(c, r->fence_go ? 1 : 0);
	w64(c, r->last_primary_lsn);
	w8(c, r->paused ? 1 : 0);
	w8(c, r->kind);
	w8(c, r->target);
	w8(c, r->force ? 1 : 0);
	w64(c, r->shutdown_lsn);
	w8(c, r->nflags);
	for (size_t i = 0; i < r->nflags; i++) {
		w8(c, r->flags[i].backend);
		w8(c, r->flags[i].flags);
	}
	w8(c, r->nops);
	for (size_t i = 0; i < r->nops; i++) {
		w8(c, r->ops[i].peer);
		w32(c, r->ops[i].seq);
	}
}

static int
get_record(struct rcur *c, struct fo_record *r)
{
	memset(r, 0, sizeof(*r));
	r->term = r64(c);
	r->seq = r64(c);
	r->primary = r8(c);
	r->timeline = r32(c);
	r->system_id = r64(c);
	r->switch_lsn = r64(c);
	r->step = r8(c);
	r->old_primary = r8(c);
	r->candidate = r8(c);
	r->failover_term = r64(c);
	r->failover_seq = r64(c);
	r->fence_go = r8(c) != 0;
	r->last_primary_lsn = r64(c);
	r->paused = r8(c) != 0;
	r->kind = r8(c);
	r->target = r8(c);
	r->force = r8(c) != 0;
	r->shutdown_lsn = r64(c);
	r->nflags = r8(c);
	if (r->nflags > FO_MAX_BACKENDS || r->step > FO_STEP_MAX || r->kind > FO_KIND_MAX)
		return -1;
	for (size_t i = 0; i < r->nflags; i++) {
		r->flags[i].backend = r8(c);
		r->flags[i].flags = r8(c);
	}
	r->nops = r8(c);
	if (r->nops > FO_MAX_PEERS)
		return -1;
	for (size_t i = 0; i < r->nops; i++) {
		r->ops[i].peer = r8(c);
		r->ops[i].seq = r32(c);
	}
	return c->bad ? -1 : 0;
}

size_t
fo_ext(const struct fo *fo, uint8_t *buf, size_t cap)
{
	struct wcur c = { buf, cap, 0, false };
	int si = self_index(fo);
	size_t at;

	if (si >= 0 && fo->pv[si].have && !fo->view_stale_since) {
		const struct pview *p = &fo->pv[si];

		at = tlv_begin(&c, EXT_VIEW);
		for (size_t i = 0; i < p->n; i++) {
			w8(&c, p->v[i].backend);
			w8(&c, p->v[i].health);
			w8(&c, p->v[i].role);
			w32(&c, p->v[i].timeline);
			w64(&c, p->v[i].lsn);
		}
		tlv_end(&c, at);
	}
	at = tlv_begin(&c, EXT_RECORD);
	put_record(&c, &fo->rec);
	tlv_end(&c, at);
	if (fo->my_ack.valid) {
		at = tlv_begin(&c, EXT_STOP_ACK);
		w64(&c, fo->my_ack.failover_term);
		w64(&c, fo->my_ack.failover_seq);
		w64(&c, fo->my_ack.ver_term);
		w64(&c, fo->my_ack.ver_seq);
		w8(&c, fo->my_ack.backend);
		w8(&c, fo->my_ack.ok ? 1 : 0);
		w64(&c, fo->my_ack.lsn);
		tlv_end(&c, at);
	}
	if (fo->op_seq > fo_record_op_applied(&fo->rec, fo->cfg.self)) {
		at = tlv_begin(&c, EXT_OP);
		w32(&c, fo->op_seq);
		w8(&c, fo->op);
		w8(&c, fo->op_arg);
		tlv_end(&c, at);
	}
	return c.overflow ? 0 : c.len;
}

int
fo_peer_ext(struct fo *fo, uint64_t now, uint8_t from, const uint8_t *ext,
	    size_t len)
{
	struct rcur c = { ext, len, 0, false };
	int pi = peer_index(fo, from);
	struct pview nv;
	struct fo_record rec;
	bool have_rec = false;

	fo->neffs = 0;
	note_call(fo, now);
	if (pi < 0 || pi == self_index(fo))
		return -1;
	nv = fo->pv[pi];
	nv.op_seq = 0;
	/*
	 * No view in this heartbeat (a daemon that just started and has not
	 * finished a check): it has none. Keeping the previous one would
	 * pass off what its previous run saw (a failed check of the
	 * primary) as fresh.
	 */
	nv.n = 0;
	while (c.off < c.len) {
		uint16_t type = r16(&c), tl = r16(&c);
		struct rcur t;

		if (c.bad || c.off + tl > c.len)
			return -1;
		t = (struct rcur){ c.p + c.off, tl, 0, false };
		c.off += tl;
		switch (type) {
		case EXT_VIEW:
			if (tl % VIEW_ENTRY_LEN || tl / VIEW_ENTRY_LEN > FO_MAX_BACKENDS)
				return -1;
			nv.n = tl / VIEW_ENTRY_LEN;
			for (size_t i = 0; i < nv.n; i++) {
				struct fo_view *v = &nv.v[i];

				memset(v, 0, sizeof(*v));
				v->backend = r8(&t);
				v->health = r8(&t);
				v->role = r8(&t);
				v->timeline = r32(&t);
				v->lsn = r64(&t);
				if (v->health > FO_H_FAILED || v->role > FO_R_STANDBY)
					return -1;
			}
			break;
		case EXT_RECORD:
			if (get_record(&t, &rec) < 0 || t.off != t.len)
				return -1;
			have_rec = true;
			break;
		case EXT_STOP_ACK:
			nv.ack.failover_term = r64(&t);
			nv.ack.failover_seq = r64(&t);
			nv.ack.ver_term = r64(&t);
			nv.ack.ver_seq = r64(&t);
			nv.ack.backend = r8(&t);
			nv.ack.ok = r8(&t) != 0;
			nv.ack.lsn = r64(&t);
			nv.ack.valid = true;
			if (t.bad)
				return -1;
			break;
		case EXT_OP:
			nv.op_seq = r32(&t);
			nv.op = r8(&t);
			nv.op_arg = r8(&t);
			if (t.bad)
				return -1;
			break;
		default:
			break;	/* a newer peer's TLV: not ours to judge */
		}
	}
	if (!have_rec)
		return -1;
	/*
	 * A peer's record version never goes back (it is durable across its
	 * restarts): an extension with an older one is a late datagram, of a
	 * previous incarnation or reordered, and its view is older than the
	 * one we hold. It is dropped whole.
	 */
	if (fo->pv[pi].have &&
	    !ver_ge(rec.term, rec.seq, fo->pv[pi].rec_term, fo->pv[pi].rec_seq))
		return 0;
	nv.rec_term = rec.term;
	nv.rec_seq = rec.seq;
	nv.have = true;
	nv.at = now;
	fo->pv[pi] = nv;
	for (size_t i = 0; i < nv.n; i++) {
		const struct fo_view *v = &nv.v[i];

		if (v->backend == fo->rec.primary && v->role == FO_R_PRIMARY &&
		    primary_timeline(fo, v) &&
		    (fo->primary_lsn_of != v->backend || v->lsn > fo->primary_lsn_seen)) {
			fo->primary_lsn_of = v->backend;
			fo->primary_lsn_seen = v->lsn;
		}
	}
	adopt(fo, &rec);
	maybe_stop_local(fo);
	maybe_sync(fo, now);
	progress(fo, now);
	return 0;
}

void
fo_hook_done(struct fo *fo, uint64_t now, enum fo_hook_kind kind,
	     uint8_t backend, uint64_t term, bool ok)
{
	fo_hook_done_lsn(fo, now, kind, backend, term, ok, 0);
}

void
fo_hook_done_lsn(struct fo *fo, uint64_t now, enum fo_hook_kind kind,
		 uint8_t backend, uint64_t term, bool ok, uint64_t lsn)
{
	int bi = backend_index(fo, backend);

	fo->neffs = 0;
	note_call(fo, now);
	if (kind == FO_HOOK_STOP) {
		/* Our own backend, for the record version that asked. */
		fo->stop_running = false;
		fo->my_ack = (struct stop_ack){
			.failover_term = fo->stop_for_failover,
			.failover_seq = fo->stop_for_fseq,
			.ver_term = fo->stop_for_term,
			.ver_seq = fo->stop_for_seq,
			.backend = fo->stop_for_backend,
			.ok = ok,
			.valid = true,
			.lsn = ok ? lsn : 0,
		};
		if (ok)
			event(fo, "backend-stopped", "term=%" PRIu64 " backend=%u shutdown_lsn=%" PRIu64,
			      term, backend, fo->my_ack.lsn);
		else
			event(fo, "backend-stop-failed",
			      "term=%" PRIu64 " backend=%u reason=\"stop_command failed\"",
			      term, backend);
		flush(fo);
		/* A newer request may have come while it ran. */
		maybe_stop_local(fo);
		progress(fo, now);
		return;
	}
	/* The coordinator's hooks count only in the term that started them. */
	if (!fo->coordinator || term != fo->term || !fo->synced) {
		/*
		 * Ours of this term has ended. One of an earlier term says
		 * nothing of the one of this term against the same backend
		 * (the simulator found a rejoin let beside that one).
		 */
		if (kind == FO_HOOK_REJOIN && fo->rejoin_running == backend && term == fo->term)
			fo->rejoin_running = 0;
		if (kind == FO_HOOK_FENCE && fo->fence_running == backend && term == fo->term)
			fo->fence_running = 0;
		return;
	}
	if (kind == FO_HOOK_FENCE && fo->fence_running == backend &&
	    !(fo->rec.step == FO_STEP_FENCING && fo->act == ACT_FENCE_HOOK &&
	      backend == fo->rec.old_primary)) {
		fo->fence_running = 0;
		if (ok) {
			set_flags(&fo->rec, backend, FO_B_FENCED | FO_B_NEEDS_REJOIN, 0);
			event(fo, "backend-fence-done",
			      "term=%" PRIu64 " backend=%u method=operator", fo->term, backend);
			write_record(fo, false);
		} else {
			fo->ctr.operator_fences_failed++;
			event(fo, "backend-fence-failed",
			      "term=%" PRIu64 " backend=%u method=operator reason=\"fence_command failed\"",
			      fo->term, backend);
		}
		progress(fo, now);
		return;
	}
	switch (kind) {
	case FO_HOOK_FENCE:
		if (fo->rec.step != FO_STEP_FENCING || fo->act != ACT_FENCE_HOOK ||
		    backend != fo->rec.old_primary)
			break;
		if (ok) {
			fence_confirmed(fo, now, "command");
		} else {
			fo->ctr.fences_failed++;
			event(fo, "backend-fence-failed",
			      "term=%" PRIu64 " backend=%u method=command reason=\"fence_command failed; no promotion\"",
			      fo->term, backend);
			alarm_once(fo, "failover-blocked",
				   "the old primary could not be fenced; no promotion");
			backoff(fo, now, "the fence");
		}
		break;
	case FO_HOOK_PROMOTE:
		if (fo->rec.step != FO_STEP_PROMOTING || fo->act != ACT_PROMOTE_HOOK)
			break;
		if (ok) {
			event(fo, "promote-done", "term=%" PRIu64 " backend=%u duration_ms=%" PRIu64,
			      fo->term, fo->rec.candidate, now - fo->act_since);
			set_act(fo, now, ACT_VERIFY);
			fo->deadline = now + fo->cfg.verify_timeout_ms;
			fo->next_poll = now + VERIFY_POLL_MS;
			snprintf(fo->waiting, sizeof(fo->waiting),
				 "waiting to see backend %u as primary", fo->rec.candidate);
			check_now(fo);
		} else {
			fo->ctr.promotions_failed++;
			event(fo, "promote-failed",
			      "term=%" PRIu64 " backend=%u reason=\"failover_command failed\"",
			      fo->term, fo->rec.candidate);
			backoff(fo, now, "the promotion");
		}
		break;
	case FO_HOOK_FOLLOW:
		if (fo->rec.step != FO_STEP_FOLLOWING || bi < 0 ||
		    fo->follow[bi] != FS_RUNNING)
			break;
		fo->follow[bi] = ok ? FS_OK : FS_FAILED;
		if (ok) {
			event(fo, "follow-done", "term=%" PRIu64 " backend=%u new=%u",
			      fo->term, backend, fo->rec.primary);
		} else {
			fo->ctr.follows_failed++;
			set_flags(&fo->rec, backend, FO_B_NEEDS_REJOIN, 0);
			write_record(fo, false);
			event(fo, "follow-failed",
			      "term=%" PRIu64 " backend=%u new=%u reason=\"follow_primary_command failed; it needs a rejoin\"",
			      fo->term, backend, fo->rec.primary);
		}
		break;
	case FO_HOOK_REJOIN:
		if (fo->rejoin_running != backend)
			break;
		fo->rejoin_running = 0;
		if (ok) {
			set_flags(&fo->rec, backend, 0, FO_B_NEEDS_REJOIN | FO_B_FENCED);
			event(fo, "rejoin-done", "term=%" PRIu64 " backend=%u new=%u",
			      fo->term, backend, fo->rec.primary);
			write_record(fo, false);
		} else {
			event(fo, "rejoin-failed",
			      "term=%" PRIu64 " backend=%u reason=\"rejoin_command failed\"",
			      fo->term, backend);
		}
		break;
	default:
		break;
	}
	progress(fo, now);
}

void
fo_tick(struct fo *fo, uint64_t now)
{
	fo->neffs = 0;
	note_call(fo, now);
	maybe_stop_local(fo);
	maybe_sync(fo, now);
	progress(fo, now);
}

uint64_t
fo_next_wakeup(const struct fo *fo)
{
	uint64_t cand[4] = { 0, 0, 0, 0 }, t = UINT64_MAX;

	if (!fo->coordinator)
		return t;
	cand[0] = fo->deadline;
	cand[1] = fo->act == ACT_BACKOFF ? fo->retry_at : 0;
	cand[2] = fo->next_poll;
	cand[3] = fo->transfer_sent ? fo->transfer_sent + TRANSFER_WAIT_MS : 0;
	/*
	 * Every input runs the steps, so a deadline at or before the last
	 * input's time has been dealt with: returning it again would only
	 * make the caller spin.
	 */
	for (size_t i = 0; i < 4; i++)
		if (cand[i] > fo->last_call && cand[i] < t)
			t = cand[i];
	return t;
}

int
fo_command(struct fo *fo, uint64_t now, enum fo_command cmd, uint8_t arg,
	   char *err, size_t errlen)
{
	fo->neffs = 0;
	note_call(fo, now);
	/* The backend named (a switchover's or failover's 0 means the best one). */
	if ((cmd == FO_CMD_FENCE || cmd == FO_CMD_REJOIN ||
	     ((cmd == FO_CMD_SWITCHOVER || cmd == FO_CMD_FAILOVER ||
	       cmd == FO_CMD_FAILOVER_FORCE) && arg)) && backend_index(fo, arg) < 0) {
		snprintf(err, errlen, "backend %u is not configured", arg);
		return -1;
	}
	switch (cmd) {
	case FO_CMD_PAUSE:
	case FO_CMD_RESUME:
	case FO_CMD_SWITCHOVER:
	case FO_CMD_FAILOVER:
	case FO_CMD_FAILOVER_FORCE:
		break;
	case FO_CMD_FENCE:
		if (!fo->cfg.has_fence_command) {
			snprintf(err, errlen, "no fence_command is set");
			return -1;
		}
		if (arg == fo->rec.primary && fo->rec.step == FO_STEP_NONE) {
			snprintf(err, errlen, "backend %u is the primary; replace it with pgvigilctl failover", arg);
			return -1;
		}
		break;
	case FO_CMD_REJOIN:
		if (!(fo_record_flags(&fo->rec, arg) & FO_B_NEEDS_REJOIN)) {
			snprintf(err, errlen, "backend %u does not need a rejoin", arg);
			return -1;
		}
		if (arg == fo->rec.primary) {
			snprintf(err, errlen, "backend %u is the primary", arg);
			return -1;
		}
		break;
	default:
		snprintf(err, errlen, "unknown command");
		return -1;
	}
	/* Never below what the record says was applied: a new number each time. */
	if (fo->op_seq < fo_record_op_applied(&fo->rec, fo->cfg.self))
		fo->op_seq = fo_record_op_applied(&fo->rec, fo->cfg.self);
	fo->op_seq++;
	fo->op = (uint8_t)cmd;
	fo->op_arg = arg;
	{
		int si = self_index(fo);

		if (si >= 0) {
			fo->pv[si].op_seq = fo->op_seq;
			fo->pv[si].op = fo->op;
			fo->pv[si].op_arg = arg;
			fo->pv[si].have = true;
		}
	}
	flush(fo);
	progress(fo, now);
	return 0;
}

size_t
fo_effects(const struct fo *fo, const struct fo_effect **effs)
{
	*effs = fo->effs;
	return fo->neffs;
}

bool
fo_vip_allowed(const struct fo *fo)
{
	const struct fo_backend_config *b;

	if (fo->cfg.vip_follow != FO_VIP_PRIMARY)
		return true;
	if (!fo->rec.primary || (fo->rec.step != FO_STEP_NONE &&
				 fo->rec.step != FO_STEP_FOLLOWING))
		return false;
	b = backend_cfg(fo, fo->rec.primary);
	return b && b->peer == fo->cfg.self;
}

const struct fo_record *
fo_record(const struct fo *fo)
{
	return &fo->rec;
}

const struct fo_counters *
fo_counters(const struct fo *fo)
{
	return &fo->ctr;
}

const char *
fo_waiting(const struct fo *fo)
{
	return fo->coordinator ? fo->waiting : "";
}

/* ---- the record in the state file ---------------------------------------- */

int
fo_record_format(const struct fo_record *r, char *buf, size_t len)
{
	size_t n;

	n = (size_t)snprintf(buf, len,
			     "term=%" PRIu64 " seq=%" PRIu64 " primary=%u timeline=%" PRIu32
			     " system_id=%" PRIu64 " switch_lsn=%" PRIu64 " step=%u old=%u"
			     " candidate=%u failover_term=%" PRIu64 " failover_seq=%" PRIu64
			     " fence_go=%u last_primary_lsn=%" PRIu64 " paused=%u"
			     " kind=%u target=%u force=%u shutdown_lsn=%" PRIu64 " flags=",
			     r->term, r->seq, r->primary, r->timeline, r->system_id,
			     r->switch_lsn, r->step, r->old_primary, r->candidate,
			     r->failover_term, r->failover_seq, r->fence_go ? 1 : 0,
			     r->last_primary_lsn, r->paused ? 1 : 0, r->kind, r->target,
			     r->force ? 1 : 0, r->shutdown_lsn);
	for (size_t i = 0; i < r->nflags && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, "%s%u:%u", i ? "," : "",
				      r->flags[i].backend, r->flags[i].flags);
	if (n < len)
		n += (size_t)snprintf(buf + n, len - n, " ops=");
	for (size_t i = 0; i < r->nops && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, "%s%u:%" PRIu32, i ? "," : "",
				      r->ops[i].peer, r->ops[i].seq);
	return n < len ? 0 : -1;
}

static int
parse_u64(const char *s, uint64_t *v)
{
	char *end;

	if (*s < '0' || *s > '9')
		return -1;
	*v = strtoull(s, &end, 10);
	return *end == '\0' ? 0 : -1;
}

static int
parse_pairs(char *s, size_t max, size_t *n, uint8_t *a, size_t astride,
	    void *b, size_t bstride, size_t bsize)
{
	*n = 0;
	if (*s == '\0')
		return 0;
	for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
		char *colon = strchr(tok, ':');
		uint64_t x, y;

		if (!colon || *n >= max)
			return -1;
		*colon = '\0';
		if (parse_u64(tok, &x) < 0 || parse_u64(colon + 1, &y) < 0 || x > 255)
			return -1;
		a[*n * astride] = (uint8_t)x;
		if (bsize == 1) {
			if (y > 255)
				return -1;
			((uint8_t *)b)[*n * bstride] = (uint8_t)y;
		} else {
			uint32_t y32 = (uint32_t)y;

			if (y > UINT32_MAX)
				return -1;
			memcpy((uint8_t *)b + *n * bstride, &y32, sizeof(y32));
		}
		(*n)++;
	}
	return 0;
}

int
fo_record_parse(const char *s, struct fo_record *r)
{
	char buf[2048];
	unsigned seen = 0;

	if (strlen(s) >= sizeof(buf))
		return -1;
	memset(r, 0, sizeof(*r));
	snprintf(buf, sizeof(buf), "%s", s);
	for (char *save = NULL, *f = strtok_r(buf, " ", &save); f;
	     f = strtok_r(NULL, " ", &save)) {
		char *eq = strchr(f, '=');
		uint64_t v = 0;
		size_t n;

		if (!eq)
			return -1;
		*eq++ = '\0';
		if (strcmp(f, "flags") == 0) {
			if (parse_pairs(eq, FO_MAX_BACKENDS, &n, &r->flags[0].backend,
					sizeof(r->flags[0]), &r->flags[0].flags,
					sizeof(r->flags[0]), 1) < 0)
				return -1;
			r->nflags = (uint8_t)n;
			continue;
		}
		if (strcmp(f, "ops") == 0) {
			if (parse_pairs(eq, FO_MAX_PEERS, &n, &r->ops[0].peer,
					sizeof(r->ops[0]), &r->ops[0].seq,
					sizeof(r->ops[0]), 4) < 0)
				return -1;
			r->nops = (uint8_t)n;
			continue;
		}
		if (parse_u64(eq, &v) < 0)
			return -1;
		if (strcmp(f, "term") == 0) r->term = v;
		else if (strcmp(f, "seq") == 0) r->seq = v;
		else if (strcmp(f, "primary") == 0 && v <= 255) r->primary = (uint8_t)v;
		else if (strcmp(f, "timeline") == 0 && v <= UINT32_MAX) r->timeline = (uint32_t)v;
		else if (strcmp(f, "system_id") == 0) r->system_id = v;
		else if (strcmp(f, "switch_lsn") == 0) r->switch_lsn = v;
		else if (strcmp(f, "step") == 0 && v <= FO_STEP_MAX) r->step = (uint8_t)v;
		else if (strcmp(f, "old") == 0 && v <= 255) r->old_primary = (uint8_t)v;
		else if (strcmp(f, "candidate") == 0 && v <= 255) r->candidate = (uint8_t)v;
		else if (strcmp(f, "failover_term") == 0) r->failover_term = v;
		else if (strcmp(f, "failover_seq") == 0) r->failover_seq = v;
		else if (strcmp(f, "fence_go") == 0 && v <= 1) r->fence_go = v != 0;
		else if (strcmp(f, "last_primary_lsn") == 0) r->last_primary_lsn = v;
		else if (strcmp(f, "paused") == 0 && v <= 1) r->paused = v != 0;
		else if (strcmp(f, "kind") == 0 && v <= FO_KIND_MAX) r->kind = (uint8_t)v;
		else if (strcmp(f, "target") == 0 && v <= 255) r->target = (uint8_t)v;
		else if (strcmp(f, "force") == 0 && v <= 1) r->force = v != 0;
		else if (strcmp(f, "shutdown_lsn") == 0) r->shutdown_lsn = v;
		else
			return -1;
		seen++;
	}
	return seen >= 2 ? 0 : -1;
}

/* ---- operator preflight ---------------------------------------------------- */

const char *
fo_kind_name(enum fo_kind k)
{
	switch (k) {
	case FO_KIND_FAILOVER: return "failover";
	case FO_KIND_SWITCHOVER: return "switchover";
	case FO_KIND_MANUAL: return "manual";
	}
	return "?";
}

struct pf {
	char *p;
	size_t len, n;
	bool fail;
};

static void pf_line(struct pf *pf, const char *verdict, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
pf_line(struct pf *pf, const char *verdict, const char *fmt, ...)
{
	va_list ap;

	if (strcmp(verdict, "no") == 0)
		pf->fail = true;
	if (pf->n >= pf->len)
		return;
	pf->n += (size_t)snprintf(pf->p + pf->n, pf->len - pf->n, "%s: ", verdict);
	if (pf->n >= pf->len)
		return;
	va_start(ap, fmt);
	pf->n += (size_t)vsnprintf(pf->p + pf->n, pf->len - pf->n, fmt, ap);
	va_end(ap);
	if (pf->n < pf->len)
		pf->n += (size_t)snprintf(pf->p + pf->n, pf->len - pf->n, "\n");
}

/* Why a backend cannot be the target, or NULL. */
static const char *
not_eligible(const struct fo *fo, const struct fo_backend_config *c,
	     const struct fo_view *v)
{
	if (c->id == fo->rec.primary)
		return "it is the primary";
	if (c->priority == 0)
		return "its priority is 0 (never promoted)";
	if (fo_record_flags(&fo->rec, c->id) & FO_B_NEEDS_REJOIN)
		return "it needs a rejoin";
	if (!v || v->health != FO_H_UP)
		return "it is not up in this peer's checks";
	if (v->role != FO_R_STANDBY)
		return "it is not a standby";
	if (fo->rec.system_id && v->system_id && v->system_id != fo->rec.system_id)
		return "it belongs to another PostgreSQL cluster (system identifier)";
	return NULL;
}

int
fo_preflight(const struct fo *fo, uint64_t now, enum fo_command cmd,
	     uint8_t target, char *out, size_t outlen, uint8_t *chosen)
{
	struct pf pf = { out, outlen, 0, false };
	const struct fo_record *r = &fo->rec;
	bool sw = cmd == FO_CMD_SWITCHOVER, force = cmd == FO_CMD_FAILOVER_FORCE;
	const struct fo_view *pv, *tv = NULL;
	const struct fo_backend_config *tc = NULL, *pb;
	uint64_t plsn = 0, lag;

	*chosen = 0;
	if (outlen)
		out[0] = '\0';
	if (r->step != FO_STEP_NONE)
		pf_line(&pf, "no", "a failover is in progress (step %s)", fo_step_name(r->step));
	if (!r->primary) {
		pf_line(&pf, "no", "no primary is known yet");
		return -1;
	}
	pv = own_view(fo, r->primary);
	if (view_up_primary(pv)) {
		plsn = pv->lsn;
		pf_line(&pf, "ok", "primary: backend %u is up (timeline %" PRIu32 ", LSN %" PRIu64 ")",
			r->primary, pv->timeline, pv->lsn);
	} else {
		plsn = r->last_primary_lsn;
		if (fo->primary_lsn_of == r->primary && fo->primary_lsn_seen > plsn)
			plsn = fo->primary_lsn_seen;
		pf_line(&pf, sw ? "no" : "warning",
			"primary: backend %u is not up as a primary in this peer's checks%s",
			r->primary, sw ? "; a switchover needs a running primary (use failover)" : "");
	}
	/* The target: the one asked for, else the most advanced eligible standby. */
	for (size_t i = 0; i < fo->cfg.nbackends; i++) {
		const struct fo_backend_config *c = &fo->cfg.backends[i];
		const struct fo_view *v = own_view(fo, c->id);
		/*
		 * No timeline test: a standby streaming from the primary reports
		 * the timeline of the last WAL it received, which stays the old
		 * one after a rejoin until new WAL arrives. What matters, that
		 * it receives the primary's WAL, is what the switchover waits
		 * for (its LSN reaching the shutdown checkpoint).
		 */
		const char *why = not_eligible(fo, c, v);

		if (target) {
			if (c->id != target)
				continue;
			if (why) {
				pf_line(&pf, "no", "target: backend %u cannot be promoted: %s", c->id, why);
				return -1;
			}
			tv = v;
			tc = c;
			break;
		}
		if (why)
			continue;
		if (!tv || v->lsn > tv->lsn ||
		    (v->lsn == tv->lsn && (c->priority > tc->priority ||
					   (c->priority == tc->priority && c->id < tc->id)))) {
			tv = v;
			tc = c;
		}
	}
	if (!tc) {
		if (target)
			pf_line(&pf, "no", "target: backend %u is not configured", target);
		else
			pf_line(&pf, "no", "target: no standby is eligible (up, a standby of this cluster, priority > 0, no pending rejoin)");
		return -1;
	}
	*chosen = tc->id;
	lag = plsn > tv->lsn ? plsn - tv->lsn : 0;
	pf_line(&pf, "ok", "target: backend %u, standby on timeline %" PRIu32 ", LSN %" PRIu64 "%s",
		tc->id, tv->timeline, tv->lsn, target ? "" : " (the most advanced eligible standby)");
	if (sw) {
		if (lag > fo->cfg.max_lag)
			pf_line(&pf, "no", "lag: backend %u is %" PRIu64 " bytes behind the primary, more than max_lag %" PRIu64,
				tc->id, lag, fo->cfg.max_lag);
		else
			pf_line(&pf, "ok", "lag: %" PRIu64 " bytes (max_lag %" PRIu64 "); it is promoted only once it has all of the primary's WAL",
				lag, fo->cfg.max_lag);
	} else if (lag > fo->cfg.max_lag) {
		pf_line(&pf, force ? "warning" : "no",
			"lag: backend %u is %" PRIu64 " bytes behind the last primary LSN, more than max_lag %" PRIu64 "%s",
			tc->id, lag, fo->cfg.max_lag,
			force ? "; forced: those writes are lost" : " (--force accepts the loss)");
	} else {
		pf_line(&pf, "ok", "lag: %" PRIu64 " bytes (max_lag %" PRIu64 ")", lag, fo->cfg.max_lag);
	}
	/* How the old primary is stopped. */
	pb = backend_cfg(fo, r->primary);
	{
		bool coop = pb && pb->peer && fo->cfg.has_stop_command &&
			    (pb->peer == fo->cfg.self || peer_up(fo, pb->peer, now));

		if (coop)
			pf_line(&pf, "ok", "stop: peer %u stops backend %u %s (stop_command)",
				pb->peer, r->primary, sw ? "cleanly: checkpoint, then a fast shutdown" : "at once");
		else if (sw)
			pf_line(&pf, "no", "stop: %s; a switchover needs the primary's own peer to stop it cleanly",
				!fo->cfg.has_stop_command ? "no stop_command is set" :
				!pb || !pb->peer ? "the primary has no peer of its own" :
				"the primary's peer is not reachable");
		else if (fo->cfg.has_fence_command)
			pf_line(&pf, "ok", "fence: fence_command stops backend %u (its peer cannot)", r->primary);
		else
			pf_line(&pf, "no", "fence: neither the primary's peer (stop_command) nor fence_command can stop backend %u",
				r->primary);
	}
	if (!pv || pv->logical_slots < 0)
		pf_line(&pf, "warning", "slots: the primary's logical replication slots are not known (no check yet)");
	else if (pv->logical_slots > 0)
		pf_line(&pf, "warning", "slots: the primary has %" PRId32 " logical replication slot(s); PostgreSQL does not copy them to standbys: their consumers must be set up again on the new primary",
			pv->logical_slots);
	else
		pf_line(&pf, "ok", "slots: no logical replication slots on the primary (physical ones are made by the hooks as the standbys need them)");
	if (sw)
		pf_line(&pf, fo->cfg.has_rejoin_command ? "ok" : "warning",
			"old primary: %s", fo->cfg.has_rejoin_command ?
			"follows the new primary as a standby (rejoin_command)" :
			"no rejoin_command is set: it stays stopped, flagged needs-rejoin");
	{
		size_t others = 0;

		for (size_t i = 0; i < fo->cfg.nbackends; i++) {
			uint8_t id = fo->cfg.backends[i].id;

			if (id != r->primary && id != tc->id &&
			    !(fo_record_flags(r, id) & FO_B_NEEDS_REJOIN))
				others++;
		}
		if (others)
			pf_line(&pf, fo->cfg.has_follow_command ? "ok" : "warning",
				"standbys: %zu other standby(s) %s", others,
				fo->cfg.has_follow_command ? "follow the new primary (follow_primary_command)" :
				"will be flagged needs-rejoin: no follow_primary_command is set");
	}
	if (r->paused)
		pf_line(&pf, "warning", "maintenance mode is on: an operator's request is carried out anyway");
	return pf.fail ? -1 : 0;
}

uint32_t
fo_op_seq(const struct fo *fo)
{
	return fo->op_seq;
}
