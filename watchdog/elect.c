/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * elect.c - coordinator election with leases, as a pure state machine.
 *
 * Raft's terms and votes without a log: pre-vote, randomized election
 * timeouts ordered by priority, one durable vote per term, majority of the
 * configured voters. The coordinator holds a lease measured from the SEND
 * time of the newest heartbeat that a majority (itself included) echoed
 * back in its term.
 *
 * Why two peers never hold valid leases at once (doc/election.md has the
 * long form): a peer that accepts a coordinator's heartbeat at local time t
 * refuses every vote and pre-vote, and does not stand itself, until
 * t + election_min (on its own clock). A new coordinator needs the votes of
 * a majority; any majority shares a peer with the majority whose echoes
 * built the old lease; that peer received the heartbeat after it was sent,
 * and voted at least election_min later. Since the old lease lasts
 * lease_ms from the send time and lease_ms * (1 + drift) < election_min *
 * (1 - drift) (checked by wd_check_config), the old lease has ended by
 * the time the new coordinator can exist. Terms make the old coordinator
 * unable to renew: echoes count only from peers in its term following it.
 * A restarted peer forgets what it echoed, so it starts with the same
 * refusal window ("boot hold"); a stalled loop (SIGSTOP, VM pause) enters
 * tilt: a coordinator steps down, others neither vote nor stand for a while.
 *
 * Handing the role over (wd_stop, wd_transfer): the coordinator gives up
 * its lease first, then announces it (the stopping or yielding flag on its
 * heartbeats), then names a successor. A voter waives its refusal window
 * for that successor's handover vote request only once the coordinator
 * whose heartbeat opened the window announced that it gave up that term:
 * the window protected that coordinator's lease, and that lease is gone.
 * Only the stop notice, never the handover message, tells a two-node
 * partner that the other voter is out of the game: a transfer leaves the
 * sender a voter, so the partner must win its vote like any candidate.
 *
 * Nothing here reads a clock or does I/O: every entry point takes `now`
 * (local milliseconds) and leaves effects in wd->effs for the caller, in
 * the order they must happen (a PERSIST before the SEND it guards).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "watchdog/elect.h"

#define SENT_RING 64		/* send times of our last heartbeats, by seq */
#define MAX_EFFECTS (4 * WD_MAX_PEERS + 8)
#define FENCE_RETRY_MAX_MS 30000

struct peer {
	struct wd_peer_config cfg;
	uint64_t last_heard;	/* 0 = never */
	uint32_t rtt_ms;
	uint64_t term;		/* as the peer announced it */
	enum wd_role role;
	uint8_t leader;
	bool tilt;
	bool stopping;		/* announced a clean stop */
	uint64_t yield_term;	/* newest term it announced it gave up (transfer) */
	uint64_t max_term;	/* highest term any of its heartbeats carried */
	uint64_t last_seq;	/* newest hb_seq received from it */
	uint64_t last_seq_at;	/* when */
	uint64_t acked_seq;	/* as coordinator: newest of our seqs it echoed */
	uint32_t lease_left_ms;	/* as announced in its last heartbeat */
	bool prevote;		/* granted in the current round */
	bool vote;
	bool fenced;		/* two-node: we fenced it; it has not restarted since */
	uint64_t boot;		/* newest boot id seen from it (0 = unknown) */
	uint64_t fenced_boot;	/* its boot when we fenced it */
	uint64_t fenced_at;	/* when its fence was confirmed */
};

struct wd {
	struct wd_config cfg;
	struct peer peers[WD_MAX_PEERS];
	size_t self;		/* index of this peer in peers */
	size_t nvoters;		/* every configured peer votes */
	struct wd_durable d;
	enum wd_role role;
	uint8_t leader;		/* coordinator of d.term, 0 = unknown */
	uint64_t last_call;	/* time of the previous entry (tilt detection) */
	uint64_t election_at;	/* follower/candidate timeout */
	uint64_t heartbeat_at;	/* next heartbeat batch */
	uint64_t vote_block_until;	/* no votes, pre-votes or candidacy before */
	/* the coordinator, and its term, whose heartbeat last opened the window */
	uint8_t window_leader;
	uint64_t window_term;
	/* a handover vote request refused only for the window, granted once waived */
	uint8_t pending_from;
	uint64_t pending_term;
	uint64_t tilt_until;
	uint64_t no_stand_until;	/* after wd_resign: vote, but do not stand */
	uint64_t hb_seq;	/* our heartbeat counter */
	struct {
		uint64_t seq, at;
	} sent[SENT_RING];
	uint64_t lead_first_seq;	/* first seq sent as coordinator of d.term */
	uint64_t lease_end;	/* 0 = no lease */
	uint64_t prevote_term;	/* term the current pre-vote round asks for */
	bool handover_pending;	/* candidacy started by a handover */
	uint8_t handover_to;	/* successor we named at a clean stop */
	/* wd_transfer: the term given up, the successor, until when the next
	 * term's votes are kept for it, until when this peer does not stand */
	uint64_t yield_term;
	uint8_t yield_to;
	uint64_t yield_votes_until;
	uint64_t yield_until;
	uint64_t last_batch_at;	/* send time of the last heartbeat batch */
	char role_reason[96];	/* a ROLE effect's reason built at run time */
	bool was_holder;	/* held the coordinator role most recently */
	bool stopped;
	/* two-node fencing */
	bool fencing;		/* fence hook running */
	uint8_t fence_target;
	uint64_t fence_not_before;	/* after a failed fence: the retry time */
	uint32_t fence_backoff;
	uint64_t started_at;	/* wd_new time: silence is counted from here at most */
	bool fenced_mode;	/* coordinator established by fencing its peer */
	uint64_t rng;
	struct wd_counters ctr;
	struct wd_effect effs[MAX_EFFECTS];
	size_t neffs;
	uint8_t ext[WD_EXT_MAX];
	uint16_t ext_len;
};

static void check_stall(struct wd *wd, uint64_t now);

static const char *const role_names[] = {
	[WD_FOLLOWER] = "follower",
	[WD_PRECANDIDATE] = "precandidate",
	[WD_CANDIDATE] = "candidate",
	[WD_LEADER] = "coordinator",
};

const char *
wd_role_name(enum wd_role r)
{
	return (unsigned)r <= WD_ROLE_MAX ? role_names[r] : "?";
}

const char *
wd_peer_state_name(enum wd_peer_state s)
{
	static const char *const n[] = { "unknown", "up", "down", "fenced" };

	return (unsigned)s <= WD_PEER_FENCED ? n[s] : "?";
}

const char *
wd_msg_type_name(uint8_t t)
{
	static const char *const n[] = { "?", "heartbeat", "prevote-request",
		"prevote-response", "vote-request", "vote-response", "handover" };

	return t <= WD_MSG_TYPE_MAX ? n[t] : "?";
}

/* ---- small helpers ------------------------------------------------------ */

/* splitmix64: small, seedable, good enough for timeout jitter. */
static uint64_t
rnd(struct wd *wd)
{
	uint64_t z = (wd->rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static bool
eligible(const struct wd_peer_config *p)
{
	return p->priority > 0 && !p->witness;
}

static struct peer *
peer_by_id(struct wd *wd, uint8_t id)
{
	for (size_t i = 0; i < wd->cfg.npeers; i++)
		if (wd->peers[i].cfg.id == id)
			return &wd->peers[i];
	return NULL;
}

static uint8_t
self_id(const struct wd *wd)
{
	return wd->cfg.self;
}

static size_t
majority(const struct wd *wd)
{
	return wd->nvoters / 2 + 1;
}

static struct wd_effect *
effect(struct wd *wd, enum wd_effect_kind kind)
{
	struct wd_effect *e;

	/* Sized for the largest batch one call can queue; never expected. */
	if (wd->neffs == MAX_EFFECTS)
		return NULL;
	e = &wd->effs[wd->neffs++];
	memset(e, 0, offsetof(struct wd_effect, msg));
	e->kind = kind;
	return e;
}

static void
persist(struct wd *wd)
{
	struct wd_effect *e = effect(wd, WD_EFF_PERSIST);

	if (e)
		e->durable = wd->d;
}

static void
announce_role(struct wd *wd, const char *reason)
{
	struct wd_effect *e = effect(wd, WD_EFF_ROLE);

	if (!e)
		return;
	e->role = wd->role;
	e->term = wd->d.term;
	e->leader = wd->leader;
	e->reason = reason;
}

/*
 * Election timeout: peers of higher priority draw from an earlier slice of
 * [election_min, election_max), so the preferred peer usually stands first;
 * within a slice the draw is random so that equals do not collide forever.
 */
static uint64_t
election_timeout(struct wd *wd)
{
	const struct wd_peer_config *me = &wd->peers[wd->self].cfg;
	uint32_t span = wd->cfg.election_max_ms - wd->cfg.election_min_ms;
	size_t rank = 0, n = 0;

	for (size_t i = 0; i < wd->cfg.npeers; i++) {
		const struct wd_peer_config *p = &wd->peers[i].cfg;

		if (!eligible(p))
			continue;
		n++;
		if (p->priority > me->priority ||
		    (p->priority == me->priority && p->id < me->id))
			rank++;
	}
	if (n == 0)
		n = 1;
	uint64_t slice = span / n ? span / n : 1;

	return wd->cfg.election_min_ms + rank * slice + rnd(wd) % slice;
}

static void
reset_election_timer(struct wd *wd, uint64_t now)
{
	wd->election_at = now + election_timeout(wd);
}

static void
block_votes_until(struct wd *wd, uint64_t t)
{
	if (t > wd->vote_block_until)
		wd->vote_block_until = t;
}

static bool
in_tilt(const struct wd *wd, uint64_t now)
{
	return now < wd->tilt_until;
}

static struct peer *
other_voter(struct wd *wd)
{
	for (size_t i = 0; i < wd->cfg.npeers; i++)
		if (i != wd->self)
			return &wd->peers[i];
	return NULL;
}

/*
 * Two-node mode: the other voter is out of the game, either fenced by our
 * hook or stopping cleanly (a cooperative fence: it announced it gives up
 * its vote until it restarts, and a restart begins with a boot hold).
 * Then our own renewal is the majority.
 */
static bool
other_out(struct wd *wd)
{
	struct peer *o = wd->cfg.two_node ? other_voter(wd) : NULL;

	return o && (o->fenced || o->stopping);
}

/* ---- messages ----------------------------------------------------------- */

static struct wd_msg *
send_to(struct wd *wd, uint8_t to, uint8_t type)
{
	struct wd_effect *e = effect(wd, WD_EFF_SEND);

	if (!e)
		return NULL;
	e->to = to;
	memset(&e->msg, 0, offsetof(struct wd_msg, ext));
	e->msg.type = type;
	e->msg.term = wd->d.term;
	return &e->msg;
}

static void
note_sent(struct wd *wd, uint64_t seq, uint64_t now)
{
	wd->sent[seq % SENT_RING].seq = seq;
	wd->sent[seq % SENT_RING].at = now;
}

static bool
sent_at(const struct wd *wd, uint64_t seq, uint64_t *at)
{
	if (seq == 0 || wd->sent[seq % SENT_RING].seq != seq)
		return false;
	*at = wd->sent[seq % SENT_RING].at;
	return true;
}

static void
fill_heartbeat(struct wd *wd, struct wd_msg *m, struct peer *to, uint64_t now)
{
	m->role = (uint8_t)wd->role;
	m->leader = wd->leader;
	m->hb_seq = wd->hb_seq;
	m->echo_seq = to->last_seq;
	m->echo_delay_ms = to->last_seq ? (uint32_t)(now - to->last_seq_at) : 0;
	if (in_tilt(wd, now))
		m->flags |= WD_HB_TILT;
	if (wd->stopped)
		m->flags |= WD_HB_STOPPING;
	if (wd->fenced_mode)
		m->flags |= WD_HB_FENCED_MODE;
	/* True of every heartbeat of that term: it can never lead it again. */
	if (wd->yield_term && wd->yield_term == wd->d.term)
		m->flags |= WD_HB_YIELDING;
	if (wd->role == WD_LEADER && wd->lease_end > now)
		m->lease_left_ms = (uint32_t)(wd->lease_end - now);
	memcpy(m->ext, wd->ext, wd->ext_len);
	m->ext_len = wd->ext_len;
}

/* One heartbeat to one peer, with a fresh sequence number. */
static void
heartbeat_one(struct wd *wd, struct peer *to, uint64_t now)
{
	struct wd_msg *m;

	wd->hb_seq++;
	note_sent(wd, wd->hb_seq, now);
	m = send_to(wd, to->cfg.id, WD_MSG_HEARTBEAT);
	if (m)
		fill_heartbeat(wd, m, to, now);
}

/* The periodic batch: one sequence number for all peers. */
static void
heartbeat_all(struct wd *wd, uint64_t now)
{
	wd->hb_seq++;
	note_sent(wd, wd->hb_seq, now);
	for (size_t i = 0; i < wd->cfg.npeers; i++) {
		struct wd_msg *m;

		if (i == wd->self || wd->peers[i].fenced)
			continue;
		m = send_to(wd, wd->peers[i].cfg.id, WD_MSG_HEARTBEAT);
		if (m)
			fill_heartbeat(wd, m, &wd->peers[i], now);
	}
	wd->heartbeat_at = now + wd->cfg.heartbeat_ms;
	wd->last_batch_at = now;
}

static void
broadcast(struct wd *wd, uint8_t type, uint8_t vote_flags)
{
	for (size_t i = 0; i < wd->cfg.npeers; i++) {
		struct wd_msg *m;

		if (i == wd->self || wd->peers[i].fenced)
			continue;
		m = send_to(wd, wd->peers[i].cfg.id, type);
		if (m && type == WD_MSG_PREVOTE_REQ)
			m->term = wd->prevote_term;
		if (m)
			m->vote_flags = vote_flags;
	}
}

/* ---- role changes ------------------------------------------------------- */

static void
lose_lease(struct wd *wd)
{
	wd->lease_end = 0;
	wd->fenced_mode = false;
}

static void
become_follower(struct wd *wd, uint64_t now, const char *reason)
{
	bool changed = wd->role != WD_FOLLOWER;

	if (wd->role == WD_LEADER) {
		wd->ctr.stepdowns++;
		wd->was_holder = true;
		wd->leader = 0;	/* nobody is coordinator as far as we know */
	}
	lose_lease(wd);
	wd->role = WD_FOLLOWER;
	wd->handover_pending = false;
	reset_election_timer(wd, now);
	if (changed)
		announce_role(wd, reason);
}

/* A higher term seen anywhere: adopt it (durably) and follow. */
static void
adopt_term(struct wd *wd, uint64_t now, uint64_t term, const char *reason)
{
	wd->d.term = term;
	wd->d.voted_for = 0;
	wd->leader = 0;
	persist(wd);
	if (wd->role != WD_FOLLOWER)
		become_follower(wd, now, reason);
	else
		announce_role(wd, reason);
}

static void
become_leader(struct wd *wd, uint64_t now, bool fenced, const char *reason)
{
	wd->role = WD_LEADER;
	wd->leader = self_id(wd);
	wd->ctr.terms_won++;
	wd->was_holder = false;
	wd->handover_pending = false;
	wd->fenced_mode = fenced;
	for (size_t i = 0; i < wd->cfg.npeers; i++)
		wd->peers[i].acked_seq = 0;
	wd->lease_end = 0;
	announce_role(wd, reason);
	/* The first batch goes out now; its echoes start the lease. */
	heartbeat_all(wd, now);
	wd->lead_first_seq = wd->hb_seq;
	if (fenced || other_out(wd)) {
		wd->fenced_mode = true;
		wd->lease_end = now + wd->cfg.lease_ms;
	}
}

static void
start_prevote(struct wd *wd, uint64_t now)
{
	wd->role = WD_PRECANDIDATE;
	wd->prevote_term = wd->d.term + 1;
	for (size_t i = 0; i < wd->cfg.npeers; i++)
		wd->peers[i].prevote = false;
	wd->peers[wd->self].prevote = true;
	reset_election_timer(wd, now);
	announce_role(wd, "election timeout");
	broadcast(wd, WD_MSG_PREVOTE_REQ, 0);
}

static void
start_election(struct wd *wd, uint64_t now, bool handover)
{
	wd->role = WD_CANDIDATE;
	wd->d.term++;
	wd->d.voted_for = self_id(wd);
	wd->leader = 0;
	wd->handover_pending = handover;
	wd->ctr.elections++;
	for (size_t i = 0; i < wd->cfg.npeers; i++)
		wd->peers[i].vote = false;
	wd->peers[wd->self].vote = true;
	/* Durable before the request leaves (S5). */
	persist(wd);
	reset_election_timer(wd, now);
	announce_role(wd, handover ? "handover" : "pre-vote won");
	broadcast(wd, WD_MSG_VOTE_REQ, handover ? WD_VOTE_HANDOVER : 0);
}

static size_t
count_prevotes(const struct wd *wd)
{
	size_t n = 0;

	for (size_t i = 0; i < wd->cfg.npeers; i++)
		n += wd->peers[i].prevote;
	return n;
}

static size_t
count_votes(const struct wd *wd)
{
	size_t n = 0;

	for (size_t i = 0; i < wd->cfg.npeers; i++)
		n += wd->peers[i].vote;
	return n;
}

/*
 * Lease: the newest of our heartbeat seqs that a majority (us included)
 * has echoed in this term, plus lease_ms from when we sent it.
 */
static void
renew_lease(struct wd *wd)
{
	uint64_t acked[WD_MAX_PEERS];
	size_t n = 0, need = majority(wd) - 1;
	uint64_t at;

	if (wd->fenced_mode)
		return;
	for (size_t i = 0; i < wd->cfg.npeers; i++)
		if (i != wd->self)
			acked[n++] = wd->peers[i].acked_seq;
	if (need == 0 || need > n)
		return;
	/* The need-th largest echo is covered by a majority. */
	for (size_t i = 0; i < need; i++) {
		size_t m = i;

		for (size_t j = i + 1; j < n; j++)
			if (acked[j] > acked[m])
				m = j;
		uint64_t t = acked[i];

		acked[i] = acked[m];
		acked[m] = t;
	}
	uint64_t seq = acked[need - 1];

	if (seq < wd->lead_first_seq || !sent_at(wd, seq, &at))
		return;
	if (at + wd->cfg.lease_ms > wd->lease_end)
		wd->lease_end = at + wd->cfg.lease_ms;
}

/* ---- two-node fencing --------------------------------------------------- */

/*
 * Two voters and no witness: without the other's vote nobody has a
 * majority, so the survivor may take the role only after its fence hook
 * confirmed the other peer is down. The decision rests on silence alone,
 * so that a symmetric split has one winner whatever the timers drew: the
 * peer that held the role most recently fences after election_min of
 * silence, the other only after election_min + fence_delay. fence_delay
 * must cover the fence hook's run time (doc/election.md).
 */
static uint64_t
fence_due(const struct wd *wd)
{
	const struct peer *o = NULL;
	uint64_t since, due;

	if (!wd->cfg.two_node || wd->fencing || wd->stopped ||
	    wd->role == WD_LEADER || !eligible(&wd->peers[wd->self].cfg))
		return 0;
	for (size_t i = 0; i < wd->cfg.npeers; i++)
		if (i != wd->self)
			o = &wd->peers[i];
	/* A peer that stopped cleanly is not fenced: it handed over. */
	if (!o || o->fenced || o->stopping)
		return 0;
	since = o->last_heard > wd->started_at ? o->last_heard : wd->started_at;
	due = since + wd->cfg.election_min_ms +
	      (wd->was_holder ? 0 : wd->cfg.fence_delay_ms);
	if (due < wd->fence_not_before)
		due = wd->fence_not_before;
	if (due < wd->no_stand_until)
		due = wd->no_stand_until;	/* a fence leads to standing */
	/* No fence during a stall hold: the wake-up must not lie in it. */
	return due > wd->tilt_until ? due : wd->tilt_until;
}

/*
 * A term this peer takes without the other's vote (by fence or after its
 * clean stop). It cannot learn which terms the other took the same way
 * while they could not talk, so each uses its own parity: peer index 0
 * odd terms, index 1 even ones. Two such terms never coincide, and no
 * election can succeed in one, since its winner's durable vote is its own.
 */
static uint64_t
own_term(const struct wd *wd)
{
	uint64_t t = wd->d.term + 1;

	if ((t & 1) != (wd->self == 0))
		t++;
	return t;
}

static void
maybe_fence(struct wd *wd, uint64_t now)
{
	uint64_t due = fence_due(wd);
	struct wd_effect *e;

	if (!due || now < due || in_tilt(wd, now))
		return;
	e = effect(wd, WD_EFF_FENCE);
	if (!e)
		return;
	wd->fence_target = other_voter(wd)->cfg.id;
	e->target = wd->fence_target;
	e->reason = wd->was_holder ? "peer silent; this peer held the role"
				   : "peer silent after fence_delay";
	wd->fencing = true;
	wd->ctr.fences++;
}

/*
 * Two-node mode: the other voter announced a clean stop. It gave up its
 * lease before saying so and will neither vote nor stand until it starts
 * again (with a boot hold), so this peer takes the role without its vote.
 */
static void
take_over(struct wd *wd, uint64_t now)
{
	if (!wd->cfg.two_node || wd->role == WD_LEADER || wd->stopped ||
	    wd->fencing || in_tilt(wd, now) || !eligible(&wd->peers[wd->self].cfg) ||
	    !other_out(wd) || now < wd->no_stand_until)
		return;
	wd->d.term = own_term(wd);
	wd->d.voted_for = self_id(wd);
	wd->leader = 0;
	persist(wd);
	become_leader(wd, now, false, other_voter(wd)->fenced
			  ? "the other peer is fenced" : "the other peer stopped cleanly");
}

void
wd_fence_done(struct wd *wd, uint64_t now, uint8_t target, bool ok)
{
	struct peer *o = peer_by_id(wd, target);

	wd->neffs = 0;
	/* The hook may have run across a stall: check before acting on it. */
	check_stall(wd, now);
	if (!wd->fencing || !o || target != wd->fence_target)
		return;
	wd->fencing = false;
	if (!ok) {
		wd->ctr.fences_failed++;
		/* S6: a failed fence never promotes; retry with back-off. */
		wd->fence_backoff = wd->fence_backoff ? wd->fence_backoff * 2
						      : wd->cfg.fence_retry_ms;
		if (wd->fence_backoff > FENCE_RETRY_MAX_MS)
			wd->fence_backoff = FENCE_RETRY_MAX_MS;
		wd->fence_not_before = now + wd->fence_backoff;
		return;
	}
	wd->fence_backoff = 0;
	/*
	 * Exit 0 means the other peer is down now, even if it spoke while the
	 * hook ran (it may have become coordinator meanwhile: it is gone).
	 */
	o->fenced = true;
	o->fenced_boot = o->boot;
	o->fenced_at = now;
	if (wd->stopped || in_tilt(wd, now) || wd->role == WD_LEADER)
		return;
	wd->d.term = own_term(wd);
	wd->d.voted_for = self_id(wd);
	wd->leader = 0;
	persist(wd);
	become_leader(wd, now, true, "fenced the other peer");
}

/* ---- receive ------------------------------------------------------------ */

static bool
may_vote(const struct wd *wd, uint64_t now)
{
	return !wd->stopped && !in_tilt(wd, now) && now >= wd->vote_block_until;
}

/*
 * After wd_transfer: the pre-votes and votes of the next term are kept
 * for the named successor, which stands within a round trip. Only for
 * election_min: by then the peers that echoed our last heartbeats may
 * vote and stand again anyway, and a successor that died must not keep
 * the others from electing someone else.
 */
static bool
yield_reserves(const struct wd *wd, uint64_t now, uint64_t term)
{
	return wd->yield_term && now < wd->yield_votes_until &&
	       term == wd->yield_term + 1;
}

/* After wd_transfer: no candidacy until election_max or a newer term. */
static bool
yield_holds(const struct wd *wd, uint64_t now)
{
	return wd->yield_term && now < wd->yield_until && wd->d.term == wd->yield_term;
}

/*
 * The refusal window protects the lease of the coordinator whose heartbeat
 * opened it (window_leader, in window_term; terms of accepted coordinators
 * only grow, so it is the highest). A vote request of a later term with
 * the handover flag may pass the window once that coordinator announced
 * it gave that lease up for good: it stopped (in the newest boot heard
 * from it, so any older boot is gone too), it yielded exactly that term
 * by a transfer, or it sent a heartbeat of a higher term (it left that
 * term before, and a coordinator never returns to a term it left). The
 * last covers a voter that missed the yield notice: the yielding peer
 * adopts its successor's term when it votes for it, and its heartbeats
 * then no longer carry the flag. doc/election.md section 9 has the proof.
 */
static bool
window_waived(const struct wd *wd, uint64_t now, uint64_t term)
{
	const struct peer *l = NULL;

	if (wd->stopped || in_tilt(wd, now) || !wd->window_leader ||
	    term <= wd->window_term)
		return false;
	for (size_t i = 0; i < wd->cfg.npeers; i++)
		if (wd->peers[i].cfg.id == wd->window_leader)
			l = &wd->peers[i];
	return l && l != &wd->peers[wd->self] &&
	       (l->stopping || l->yield_term == wd->window_term ||
		l->max_term > wd->window_term);
}

static void
on_heartbeat(struct wd *wd, uint64_t now, struct peer *p, const struct wd_msg *m)
{
	uint64_t at;

	p->role = (enum wd_role)m->role;
	p->leader = m->leader;
	p->tilt = (m->flags & WD_HB_TILT) != 0;
	p->stopping = (m->flags & WD_HB_STOPPING) != 0;
	/* A term given up stays given up: keep the newest, whatever arrives late. */
	if ((m->flags & WD_HB_YIELDING) && m->term > p->yield_term)
		p->yield_term = m->term;
	p->lease_left_ms = m->role == WD_LEADER ? m->lease_left_ms : 0;
	/*
	 * Echo the latest heartbeat, not the highest: a restarted peer counts
	 * from a new base, and an older echo only makes a lease shorter.
	 */
	p->last_seq = m->hb_seq;
	p->last_seq_at = now;
	if (m->echo_seq && sent_at(wd, m->echo_seq, &at) &&
	    now >= at + m->echo_delay_ms)
		p->rtt_ms = (uint32_t)(now - at - m->echo_delay_ms);

	if (m->term < wd->d.term)
		return;		/* stale: its sender will learn our term from us */
	if (m->term > wd->d.term)
		adopt_term(wd, now, m->term, "higher term seen");

	if (m->role == WD_LEADER) {
		if (wd->role == WD_LEADER) {
			/* Two coordinators in one term cannot happen; never act on it. */
			return;
		}
		if (p->stopping)
			return;	/* it gave up its lease: no refusal window */
		if (wd->role != WD_FOLLOWER)
			become_follower(wd, now, "coordinator found");
		if (wd->leader != p->cfg.id) {
			wd->leader = p->cfg.id;
			wd->was_holder = false;
			announce_role(wd, "following");
		}
		/*
		 * We echo this heartbeat and so help build its lease: no vote,
		 * pre-vote or candidacy until election_min from now.
		 */
		block_votes_until(wd, now + wd->cfg.election_min_ms);
		wd->window_leader = p->cfg.id;
		wd->window_term = m->term;
		reset_election_timer(wd, now);
		/* Echo at once so the lease is renewed within one round trip. */
		if (!in_tilt(wd, now))
			heartbeat_one(wd, p, now);
		return;
	}
	/* An echo counts only if it names a heartbeat this process sent. */
	if (wd->role == WD_LEADER && m->term == wd->d.term &&
	    m->leader == self_id(wd) && m->echo_seq > p->acked_seq &&
	    sent_at(wd, m->echo_seq, &at) && !(m->flags & WD_HB_TILT)) {
		p->acked_seq = m->echo_seq;
		renew_lease(wd);
	}
}

static void
on_prevote_req(struct wd *wd, uint64_t now, struct peer *p, const struct wd_msg *m)
{
	struct wd_msg *r;
	bool grant = may_vote(wd, now) && m->term > wd->d.term &&
		     eligible(&p->cfg) && wd->role != WD_LEADER &&
		     !(yield_reserves(wd, now, m->term) && p->cfg.id != wd->yield_to);

	r = send_to(wd, p->cfg.id, WD_MSG_PREVOTE_RESP);
	if (!r)
		return;
	r->term = m->term;	/* echo the round's term so it can be matched */
	r->granted = grant;
}

static void
on_prevote_resp(struct wd *wd, uint64_t now, struct peer *p, const struct wd_msg *m)
{
	if (wd->role != WD_PRECANDIDATE || m->term != wd->prevote_term || !m->granted)
		return;
	p->prevote = true;
	if (count_prevotes(wd) >= majority(wd) && may_vote(wd, now))
		start_election(wd, now, false);
}

/*
 * Whether to vote for p in term; adopts the term and makes the vote
 * durable (PERSIST queued) when it does. A handover request refused only
 * because of the refusal window is remembered, and granted when the
 * window is waived later (its stop or yield notice may arrive after it).
 */
static bool
decide_vote(struct wd *wd, uint64_t now, struct peer *p, uint64_t term,
	    uint8_t vote_flags)
{
	bool handover = (vote_flags & WD_VOTE_HANDOVER) != 0;
	/* A coordinator holding a valid lease does not vote it away. */
	bool leading = wd->role == WD_LEADER && now < wd->lease_end;
	bool blocked = leading || !may_vote(wd, now);
	bool reserved = yield_reserves(wd, now, term);

	if (blocked && !leading && handover && window_waived(wd, now, term))
		blocked = false;
	/* The coordinator that stopped or yielded votes for the successor it named. */
	if (blocked && handover && !leading && !in_tilt(wd, now) &&
	    ((wd->stopped && wd->handover_to == p->cfg.id) ||
	     (reserved && wd->yield_to == p->cfg.id)))
		blocked = false;
	if (reserved && wd->yield_to != p->cfg.id)
		return false;
	if (blocked) {
		if (handover && !leading && !wd->stopped && !in_tilt(wd, now) &&
		    term >= wd->d.term) {
			wd->pending_from = p->cfg.id;
			wd->pending_term = term;
		}
		return false;
	}
	if (!eligible(&p->cfg))
		return false;
	if (term > wd->d.term)
		adopt_term(wd, now, term, "vote requested in a higher term");
	if (term != wd->d.term || wd->role != WD_FOLLOWER ||
	    (wd->d.voted_for != 0 && wd->d.voted_for != p->cfg.id))
		return false;
	if (wd->d.voted_for != p->cfg.id) {
		wd->d.voted_for = p->cfg.id;
		/* Durable before the answer leaves (S5). */
		persist(wd);
	}
	reset_election_timer(wd, now);
	return true;
}

static void
on_vote_req(struct wd *wd, uint64_t now, struct peer *p, const struct wd_msg *m)
{
	bool grant = decide_vote(wd, now, p, m->term, m->vote_flags);
	struct wd_msg *r = send_to(wd, p->cfg.id, WD_MSG_VOTE_RESP);

	if (r)
		r->granted = grant;
}

/* A heartbeat arrived: a remembered handover request may pass now. */
static void
retry_pending_vote(struct wd *wd, uint64_t now)
{
	struct peer *c;
	uint64_t term = wd->pending_term;
	struct wd_msg *r;

	if (!wd->pending_from || !window_waived(wd, now, term))
		return;
	c = peer_by_id(wd, wd->pending_from);
	wd->pending_from = 0;
	if (!c || !decide_vote(wd, now, c, term, WD_VOTE_HANDOVER))
		return;
	r = send_to(wd, c->cfg.id, WD_MSG_VOTE_RESP);
	if (r)
		r->granted = 1;
}

static void
on_vote_resp(struct wd *wd, uint64_t now, struct peer *p, const struct wd_msg *m)
{
	if (m->term > wd->d.term) {
		adopt_term(wd, now, m->term, "higher term seen");
		return;
	}
	if (wd->role != WD_CANDIDATE || m->term != wd->d.term || !m->granted)
		return;
	p->vote = true;
	if (count_votes(wd) >= majority(wd) && !in_tilt(wd, now) && !wd->stopped)
		become_leader(wd, now, false, "elected by a majority");
}

static void
on_handover(struct wd *wd, uint64_t now, struct peer *p, const struct wd_msg *m)
{
	if (m->term != wd->d.term || wd->leader != p->cfg.id || wd->stopped ||
	    in_tilt(wd, now) || !eligible(&wd->peers[wd->self].cfg) ||
	    wd->role != WD_FOLLOWER || now < wd->no_stand_until)
		return;
	/*
	 * The handover says "my lease is gone, stand now", after a clean stop
	 * as after a transfer. Whether the sender left for good (two-node mode:
	 * take the role without its vote) comes from its stop notice alone; a
	 * transferring coordinator is still a voter, and votes for us.
	 */
	if (wd->cfg.two_node && other_out(wd))
		take_over(wd, now);
	else
		start_election(wd, now, true);
}

/* Tilt: a gap between two calls means this process did not run. */
static void
check_stall(struct wd *wd, uint64_t now)
{
	if (wd->last_call && now > wd->last_call &&
	    now - wd->last_call > wd->cfg.tilt_ms) {
		wd->tilt_until = now + wd->cfg.tilt_hold_ms;
		wd->ctr.tilts++;
		if (wd->role == WD_LEADER)
			become_follower(wd, now, "tilt: the loop stalled");
		else if (wd->role != WD_FOLLOWER)
			become_follower(wd, now, "tilt: the loop stalled");
		if (wd->election_at < wd->tilt_until)
			wd->election_at = wd->tilt_until + election_timeout(wd);
	}
	if (now > wd->last_call)
		wd->last_call = now;
}

void
wd_receive(struct wd *wd, uint64_t now, uint8_t from, const struct wd_msg *m)
{
	struct peer *p = peer_by_id(wd, from);

	wd->neffs = 0;
	check_stall(wd, now);
	if (!p || p == &wd->peers[wd->self])
		return;
	/*
	 * A fenced peer's datagrams still in flight are ignored: those of the
	 * boot we fenced, and anything in the first election_min after the
	 * fence (it may have rebooted unseen during a partition). A peer that
	 * really restarted is in its boot hold for that long anyway.
	 */
	if (p->fenced && ((m->sender_boot && m->sender_boot <= p->fenced_boot) ||
			  now < p->fenced_at + wd->cfg.election_min_ms))
		return;
	/*
	 * A message from an older boot than one already heard from is stale
	 * (a stop notice of a previous run, say). The wire layer drops these
	 * too; the decision does not rest on its transport for it.
	 */
	if (m->sender_boot && m->sender_boot < p->boot)
		return;
	if (m->sender_boot > p->boot)
		p->boot = m->sender_boot;
	p->last_heard = now;
	if (m->type == WD_MSG_HEARTBEAT) {
		p->term = m->term;
		if (m->term > p->max_term)
			p->max_term = m->term;
	}
	/* It came back (its fence was lifted and it restarted). */
	p->fenced = false;
	switch (m->type) {
	case WD_MSG_HEARTBEAT:
		on_heartbeat(wd, now, p, m);
		break;
	case WD_MSG_PREVOTE_REQ:
		on_prevote_req(wd, now, p, m);
		break;
	case WD_MSG_PREVOTE_RESP:
		on_prevote_resp(wd, now, p, m);
		break;
	case WD_MSG_VOTE_REQ:
		on_vote_req(wd, now, p, m);
		break;
	case WD_MSG_VOTE_RESP:
		on_vote_resp(wd, now, p, m);
		break;
	case WD_MSG_HANDOVER:
		on_handover(wd, now, p, m);
		break;
	default:
		break;
	}
	if (m->type == WD_MSG_HEARTBEAT) {
		retry_pending_vote(wd, now);
		/* Two-node mode: a stop notice is acted on at once, not at the next tick. */
		take_over(wd, now);
	}
}

/* ---- timers ------------------------------------------------------------- */

void
wd_tick(struct wd *wd, uint64_t now)
{
	wd->neffs = 0;
	check_stall(wd, now);

	if (wd->role == WD_LEADER) {
		if (other_out(wd) && !in_tilt(wd, now)) {
			wd->fenced_mode = true;
			wd->lease_end = now + wd->cfg.lease_ms;
		} else if (wd->fenced_mode) {
			/*
			 * The other voter is back: its echoes count again. The lease
			 * we renewed alone stays valid to its end, since the other
			 * cannot form a majority without us; only new echoes extend it.
			 */
			wd->fenced_mode = false;
			for (size_t i = 0; i < wd->cfg.npeers; i++)
				wd->peers[i].acked_seq = 0;
			wd->lead_first_seq = wd->hb_seq + 1;
		}
		uint64_t first_at;
		/*
		 * A new coordinator has no lease until the echoes of its first
		 * batch arrive; it waits for them at most lease_ms. After that,
		 * no valid lease means it is no longer the coordinator.
		 */
		bool young = sent_at(wd, wd->lead_first_seq, &first_at) &&
			     now < first_at + wd->cfg.lease_ms;

		if (now >= wd->lease_end && !young)
			become_follower(wd, now, "lease expired");
	} else if (!wd->stopped && now >= wd->election_at) {
		if (wd->role == WD_PRECANDIDATE)
			wd->ctr.prevotes_failed++;
		if (eligible(&wd->peers[wd->self].cfg) && may_vote(wd, now) &&
		    now >= wd->no_stand_until && !yield_holds(wd, now))
			start_prevote(wd, now);
		else if (yield_holds(wd, now))
			wd->election_at = wd->yield_until;	/* stand then, if nobody did */
		else
			reset_election_timer(wd, now);
	}
	take_over(wd, now);
	maybe_fence(wd, now);
	if (now >= wd->heartbeat_at)
		heartbeat_all(wd, now);
}

void
wd_resign(struct wd *wd, uint64_t now, uint32_t hold_ms, const char *reason)
{
	wd->neffs = 0;
	check_stall(wd, now);
	if (now + hold_ms > wd->no_stand_until)
		wd->no_stand_until = now + hold_ms;
	if (wd->role == WD_LEADER || wd->role == WD_CANDIDATE ||
	    wd->role == WD_PRECANDIDATE)
		become_follower(wd, now, reason);
	if (wd->election_at < wd->no_stand_until)
		wd->election_at = wd->no_stand_until;
}

/*
 * Whether p can take the role over now: eligible, heard within
 * election_min, and neither fenced, in tilt nor stopping.
 */
static bool
successor_ok(const struct wd *wd, const struct peer *p, uint64_t now)
{
	return p != &wd->peers[wd->self] && eligible(&p->cfg) && !p->fenced &&
	       !p->tilt && !p->stopping && p->last_heard &&
	       now - p->last_heard < wd->cfg.election_min_ms;
}

void
wd_transfer(struct wd *wd, uint64_t now, uint8_t target, const char *reason)
{
	struct peer *t = peer_by_id(wd, target);

	wd->neffs = 0;
	check_stall(wd, now);
	/*
	 * The target must also follow us in our term: the handover is acted
	 * on only by a follower of its sender, and a target that would ignore
	 * it would leave the cluster without a coordinator for an election
	 * timeout.
	 */
	if (wd->role != WD_LEADER || wd->stopped || !t || !successor_ok(wd, t, now) ||
	    t->term != wd->d.term || t->leader != self_id(wd) || t->role != WD_FOLLOWER)
		return;
	snprintf(wd->role_reason, sizeof(wd->role_reason), "transfer to peer %u%s%s",
		 target, reason && reason[0] ? ": " : "", reason ? reason : "");
	/* The lease first: wd_has_lease() is false from here on. */
	become_follower(wd, now, wd->role_reason);
	wd->ctr.transfers++;
	wd->yield_term = wd->d.term;
	wd->yield_to = target;
	wd->yield_votes_until = now + wd->cfg.election_min_ms;
	wd->yield_until = now + wd->cfg.election_max_ms;
	/*
	 * Then every peer learns that the term is given up (each heartbeat of
	 * this term carries the flag from now on, so a lost one is repeated),
	 * then the successor stands. In two-node mode it needs our vote: we
	 * did not stop, so it must not take the role without it.
	 */
	heartbeat_all(wd, now);
	send_to(wd, target, WD_MSG_HANDOVER);
}

/*
 * A flushed batch is an ordinary batch: a new sequence number whose send
 * time is recorded before it leaves. Echoes of it give a lease from that
 * send time, and the peers that echo open their refusal windows when it
 * arrives, after it was sent; so sending earlier than the schedule only
 * moves a send time earlier, and every step of the lease argument holds
 * as for a periodic batch. It leaves the periodic schedule alone: the
 * work done at each interval's tick (a two-node coordinator in fenced
 * mode renews its lease there) keeps its pace however many flushes come.
 * The rate limit keeps at most five batches per heartbeat_ms (four extra),
 * so the SENT_RING send times still span twelve intervals of round trip,
 * and the network and the effect list stay bounded.
 */
void
wd_flush(struct wd *wd, uint64_t now)
{
	uint64_t gap = wd->cfg.heartbeat_ms / 4 ? wd->cfg.heartbeat_ms / 4 : 1;
	uint64_t at = wd->last_batch_at + gap;

	wd->neffs = 0;
	check_stall(wd, now);
	if (!wd->last_batch_at || now >= at) {
		uint64_t next = wd->heartbeat_at;

		heartbeat_all(wd, now);
		wd->heartbeat_at = next;
	} else if (at < wd->heartbeat_at) {
		wd->heartbeat_at = at;
	}
}

void
wd_stop(struct wd *wd, uint64_t now)
{
	struct peer *best = NULL;

	wd->neffs = 0;
	check_stall(wd, now);
	if (wd->stopped)
		return;
	wd->stopped = true;
	if (wd->role != WD_LEADER) {
		wd->role = WD_FOLLOWER;
		/* The stop notice is the cooperative fence: send it more than once. */
		for (int i = 0; i < 3; i++)
			heartbeat_all(wd, now);
		return;
	}
	/* Give up the lease first, then tell everyone, then pick a successor. */
	lose_lease(wd);
	wd->role = WD_FOLLOWER;
	wd->leader = 0;
	wd->ctr.stepdowns++;
	announce_role(wd, "clean stop");
	/* The stop notice is the cooperative fence: send it more than once. */
	for (int i = 0; i < 3; i++)
		heartbeat_all(wd, now);
	for (size_t i = 0; i < wd->cfg.npeers; i++) {
		struct peer *p = &wd->peers[i];

		if (!successor_ok(wd, p, now))
			continue;
		if (!best || p->cfg.priority > best->cfg.priority ||
		    (p->cfg.priority == best->cfg.priority && p->cfg.id < best->cfg.id))
			best = p;
	}
	if (best) {
		wd->handover_to = best->cfg.id;
		send_to(wd, best->cfg.id, WD_MSG_HANDOVER);
	}
}

uint64_t
wd_next_wakeup(const struct wd *wd)
{
	uint64_t t = wd->heartbeat_at;

	if (wd->role != WD_LEADER && !wd->stopped && wd->election_at < t)
		t = wd->election_at;
	if (wd->role == WD_LEADER) {
		uint64_t first_at, end = wd->lease_end;

		/*
		 * Past the lease, a coordinator waiting for its first echoes
		 * must wake when that wait ends, not at the bygone lease end.
		 */
		if (end <= wd->last_call && sent_at(wd, wd->lead_first_seq, &first_at))
			end = first_at + wd->cfg.lease_ms;
		if (end > wd->last_call && end < t)
			t = end;
	}
	uint64_t fence = fence_due(wd);

	if (fence && fence < t)
		t = fence;
	return t;
}

/* ---- lifecycle and queries ---------------------------------------------- */

int
wd_check_config(const struct wd_config *c, unsigned drift_pct, char *err,
		size_t errlen)
{
	size_t eligible_n = 0, witnesses = 0;
	bool self_found = false;

	if (c->npeers < 2 || c->npeers > WD_MAX_PEERS) {
		snprintf(err, errlen, "a cluster needs 2 to %d peers, not %zu",
			 WD_MAX_PEERS, c->npeers);
		return -1;
	}
	for (size_t i = 0; i < c->npeers; i++) {
		if (c->peers[i].id == 0) {
			snprintf(err, errlen, "peer id 0 is not valid");
			return -1;
		}
		for (size_t j = 0; j < i; j++)
			if (c->peers[j].id == c->peers[i].id) {
				snprintf(err, errlen, "peer id %u appears twice", c->peers[i].id);
				return -1;
			}
		self_found |= c->peers[i].id == c->self;
		eligible_n += eligible(&c->peers[i]);
		witnesses += c->peers[i].witness;
	}
	if (!self_found) {
		snprintf(err, errlen, "this peer (%u) is not in the peer list", c->self);
		return -1;
	}
	if (eligible_n == 0) {
		snprintf(err, errlen,
			 "no peer can become coordinator: give at least one non-witness peer a priority above 0");
		return -1;
	}
	if (c->npeers == 2 && witnesses > 0) {
		snprintf(err, errlen,
			 "two peers of which one is a witness survive no failure (the other cannot win alone): add a third peer, or drop the witness and set a fence_command");
		return -1;
	}
	if (c->npeers == 2 && witnesses == 0 && !c->two_node) {
		snprintf(err, errlen,
			 "two peers without a witness cannot form a majority after one fails: add a witness peer or a fence_command");
		return -1;
	}
	if (drift_pct >= 50) {
		snprintf(err, errlen, "clock drift bound %u%% is too large", drift_pct);
		return -1;
	}
	if (c->heartbeat_ms < 10) {
		snprintf(err, errlen, "heartbeat_interval must be at least 10ms");
		return -1;
	}
	if (c->election_min_ms < 3 * c->heartbeat_ms) {
		snprintf(err, errlen,
			 "election_timeout_min (%ums) must be at least three times heartbeat_interval (3 x %ums)",
			 c->election_min_ms, c->heartbeat_ms);
		return -1;
	}
	if (c->election_max_ms < c->election_min_ms + 2 * c->heartbeat_ms) {
		snprintf(err, errlen,
			 "election_timeout_max (%ums) must exceed election_timeout_min (%ums) by at least twice heartbeat_interval (2 x %ums), so that randomized timeouts separate candidates",
			 c->election_max_ms, c->election_min_ms, c->heartbeat_ms);
		return -1;
	}
	if (c->lease_ms < 2 * c->heartbeat_ms) {
		snprintf(err, errlen,
			 "lease (%ums) must be at least twice heartbeat_interval (2 x %ums) so that it can be renewed",
			 c->lease_ms, c->heartbeat_ms);
		return -1;
	}
	if ((uint64_t)c->lease_ms * (100 + drift_pct) >=
	    (uint64_t)c->election_min_ms * (100 - drift_pct)) {
		snprintf(err, errlen,
			 "lease (%ums) must end before election_timeout_min (%ums) can elapse on another peer: with a clock drift bound of %u%%, lease * %u must be below election_timeout_min * %u",
			 c->lease_ms, c->election_min_ms, drift_pct, 100 + drift_pct,
			 100 - drift_pct);
		return -1;
	}
	if (c->tilt_ms <= c->heartbeat_ms || c->tilt_ms >= c->election_min_ms) {
		snprintf(err, errlen,
			 "stall_threshold (%ums) must lie between heartbeat_interval (%ums) and election_timeout_min (%ums)",
			 c->tilt_ms, c->heartbeat_ms, c->election_min_ms);
		return -1;
	}
	return 0;
}

struct wd *
wd_new(const struct wd_config *cfg, const struct wd_durable *d, uint64_t now,
       uint64_t seed)
{
	struct wd *wd = calloc(1, sizeof(*wd));

	if (!wd)
		return NULL;
	wd->cfg = *cfg;
	for (size_t i = 0; i < cfg->npeers; i++) {
		wd->peers[i].cfg = cfg->peers[i];
		if (cfg->peers[i].id == cfg->self)
			wd->self = i;
	}
	wd->nvoters = cfg->npeers;
	wd->d = *d;
	wd->rng = seed ^ ((uint64_t)cfg->self << 56);
	wd->role = WD_FOLLOWER;
	wd->last_call = now;
	wd->started_at = now;
	/* Boot hold: we may have echoed a lease we no longer remember. */
	wd->vote_block_until = now + cfg->election_min_ms;
	wd->heartbeat_at = now;
	/* Each boot counts heartbeats from its own random base. */
	wd->hb_seq = (rnd(wd) >> 20) + 1;
	reset_election_timer(wd, now);
	return wd;
}

void
wd_free(struct wd *wd)
{
	free(wd);
}

size_t
wd_effects(const struct wd *wd, const struct wd_effect **effs)
{
	*effs = wd->effs;
	return wd->neffs;
}

bool
wd_has_lease(const struct wd *wd, uint64_t now)
{
	return wd->role == WD_LEADER && now < wd->lease_end && !in_tilt(wd, now) &&
	       !wd->stopped;
}

uint64_t
wd_lease_end(const struct wd *wd)
{
	return wd->role == WD_LEADER ? wd->lease_end : 0;
}

enum wd_role
wd_role(const struct wd *wd)
{
	return wd->role;
}

uint64_t
wd_term(const struct wd *wd)
{
	return wd->d.term;
}

uint8_t
wd_leader(const struct wd *wd)
{
	return wd->leader;
}

bool
wd_in_tilt(const struct wd *wd, uint64_t now)
{
	return in_tilt(wd, now);
}

struct wd_durable
wd_durable_state(const struct wd *wd)
{
	return wd->d;
}

int
wd_peer_status(const struct wd *wd, uint8_t id, uint64_t now,
	       struct wd_peer_status *st)
{
	const struct peer *p = NULL;

	for (size_t i = 0; i < wd->cfg.npeers; i++)
		if (wd->peers[i].cfg.id == id)
			p = &wd->peers[i];
	if (!p)
		return -1;
	memset(st, 0, sizeof(*st));
	st->id = id;
	if (p == &wd->peers[wd->self]) {
		st->state = WD_PEER_UP;
		st->last_heard = now;
		st->term = wd->d.term;
		st->role = wd->role;
		st->leader = wd->leader;
		st->tilt = in_tilt(wd, now);
		if (wd_has_lease(wd, now))
			st->lease_left_ms = (uint32_t)(wd->lease_end - now);
		return 0;
	}
	st->last_heard = p->last_heard;
	st->rtt_ms = p->rtt_ms;
	st->term = p->term;
	st->role = p->role;
	st->leader = p->leader;
	st->tilt = p->tilt;
	if (p->last_heard && now - p->last_heard < p->lease_left_ms)
		st->lease_left_ms = p->lease_left_ms - (uint32_t)(now - p->last_heard);
	if (p->fenced)
		st->state = WD_PEER_FENCED;
	else if (!p->last_heard)
		st->state = WD_PEER_UNKNOWN;
	else if (now - p->last_heard < wd->cfg.election_min_ms)
		st->state = WD_PEER_UP;
	else
		st->state = WD_PEER_DOWN;
	return 0;
}

const struct wd_counters *
wd_counters(const struct wd *wd)
{
	return &wd->ctr;
}

int
wd_set_ext(struct wd *wd, const uint8_t *ext, uint16_t len)
{
	if (len > WD_EXT_MAX || (len && !ext))
		return -1;
	if (len)
		memcpy(wd->ext, ext, len);
	wd->ext_len = len;
	return 0;
}
