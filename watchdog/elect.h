/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * elect.h - coordinator election: a deterministic state machine with no
 * I/O and no clock reads (DESIGN.md §3, §4.1). It takes an event (a message
 * received, a timer, a fence result, a stop request) and the current time in
 * milliseconds, and queues effects (persist this term and vote, send this
 * message, run the fence hook, the role changed) that the caller carries out
 * in order. The daemon drives it from watchdog.c; the simulator in
 * tests/sim drives many of them against a simulated network and clock.
 *
 * The protocol, with the proof sketch of why two peers never both hold a
 * valid coordinator lease, is in doc/election.md.
 */
#ifndef PGVIGIL_ELECT_H
#define PGVIGIL_ELECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WD_MAX_PEERS 32
/*
 * Opaque extension bytes a heartbeat carries for later subsystems. A
 * heartbeat with this much extension still fits one datagram (wire.h
 * checks it at compile time).
 */
#define WD_EXT_MAX 1024

enum wd_msg_type {
	WD_MSG_HEARTBEAT = 1,	/* every peer to every peer, each interval */
	WD_MSG_PREVOTE_REQ,	/* "would you vote for me in term T?" */
	WD_MSG_PREVOTE_RESP,
	WD_MSG_VOTE_REQ,	/* "vote for me in term T" */
	WD_MSG_VOTE_RESP,
	WD_MSG_HANDOVER,	/* coordinator to its successor: start now */
	WD_MSG_TYPE_MAX = WD_MSG_HANDOVER,
};

enum wd_role {
	WD_FOLLOWER = 0,
	WD_PRECANDIDATE,	/* asking for pre-votes; term not raised yet */
	WD_CANDIDATE,		/* term raised, own vote durable, asking votes */
	WD_LEADER,		/* the coordinator of its term */
	WD_ROLE_MAX = WD_LEADER,
};

/* Heartbeat flags. */
#define WD_HB_TILT 0x01		/* sender is in tilt: it neither votes nor claims */
#define WD_HB_STOPPING 0x02	/* sender is leaving (clean stop) */
#define WD_HB_FENCED_MODE 0x04	/* two-node coordinator that fenced its peer */
/*
 * The sender gave up the coordinator role of the heartbeat's term by a
 * transfer (wd_transfer): it holds no lease of that term and never will.
 * Unlike WD_HB_STOPPING it goes on voting and may stand again later.
 */
#define WD_HB_YIELDING 0x08
/* Vote request flags. */
#define WD_VOTE_HANDOVER 0x01	/* the coordinator handed over: skip the lease wait */

/*
 * One message, as the state machine sees it. The wire module (wire.h)
 * encodes it into an authenticated datagram and back.
 */
struct wd_msg {
	uint8_t type;		/* enum wd_msg_type */
	uint64_t term;
	/* WD_MSG_HEARTBEAT */
	uint8_t role;		/* sender's enum wd_role */
	uint8_t leader;		/* coordinator the sender follows, 0 = none */
	uint8_t flags;		/* WD_HB_* */
	uint64_t hb_seq;	/* sender's heartbeat counter */
	uint64_t echo_seq;	/* last hb_seq received from the addressee */
	uint32_t echo_delay_ms;	/* how long the sender held that echo */
	uint32_t lease_left_ms;	/* coordinator: lease remaining, for status */
	/* WD_MSG_*_RESP */
	uint8_t granted;
	/* WD_MSG_VOTE_REQ */
	uint8_t vote_flags;	/* WD_VOTE_* */
	/*
	 * Filled in by the receiving transport, never encoded: the sender's
	 * boot id (it grows with each start), 0 when unknown. A fenced peer
	 * counts again only when it speaks from a newer boot; its datagrams
	 * still in flight from before the fence are ignored.
	 */
	uint64_t sender_boot;
	/* Extension TLVs (type u16, length u16, value), opaque here. */
	uint16_t ext_len;
	uint8_t ext[WD_EXT_MAX];
};

struct wd_peer_config {
	uint8_t id;		/* 1..255 */
	uint8_t priority;	/* 0 = never coordinator; higher stands first */
	bool witness;		/* votes, never coordinator */
};

struct wd_config {
	uint8_t self;
	size_t npeers;		/* configured peers, self included */
	struct wd_peer_config peers[WD_MAX_PEERS];
	uint32_t heartbeat_ms;	/* heartbeat interval */
	uint32_t election_min_ms;	/* randomized election timeout range */
	uint32_t election_max_ms;
	uint32_t lease_ms;	/* coordinator lease, from heartbeat send time */
	uint32_t tilt_ms;	/* a gap between two calls longer than this is a stall */
	uint32_t tilt_hold_ms;	/* after a stall: no votes, no claims for this long */
	/*
	 * Two-node mode (two voters, no witness): the coordinator of a term
	 * may be established by fencing the other peer instead of its vote.
	 */
	bool two_node;
	uint32_t fence_delay_ms;	/* the peer that did not hold the role waits */
	uint32_t fence_retry_ms;	/* first retry after a failed fence; doubles */
};

/* What must survive a crash: written (fsync'd) before it is acted on. */
struct wd_durable {
	uint64_t term;
	uint8_t voted_for;	/* in term; 0 = nobody */
};

enum wd_effect_kind {
	WD_EFF_PERSIST = 1,	/* write durable; must complete before later effects */
	WD_EFF_SEND,		/* send msg to peer `to` */
	WD_EFF_FENCE,		/* run the fence hook against peer `target` */
	WD_EFF_ROLE,		/* role or term changed (for logs, VIP, status) */
};

struct wd_effect {
	enum wd_effect_kind kind;
	uint8_t to;		/* SEND */
	uint8_t target;		/* FENCE */
	struct wd_durable durable;	/* PERSIST */
	enum wd_role role;	/* ROLE: the new role */
	uint64_t term;		/* ROLE: the term */
	uint8_t leader;		/* ROLE: the coordinator now known, 0 = none */
	/* ROLE, FENCE: a static string, or one the state machine holds until
	 * its next call */
	const char *reason;
	struct wd_msg msg;	/* SEND */
};

enum wd_peer_state {
	WD_PEER_UNKNOWN = 0,	/* never heard */
	WD_PEER_UP,		/* heard within election_min_ms */
	WD_PEER_DOWN,		/* silent for longer */
	WD_PEER_FENCED,		/* fenced by us (two-node mode) */
};

struct wd_peer_status {
	uint8_t id;
	enum wd_peer_state state;
	uint64_t last_heard;	/* time of the last valid message, 0 = never */
	uint32_t rtt_ms;	/* last measured round trip, 0 = unknown */
	uint64_t term;		/* last term the peer announced */
	enum wd_role role;	/* last role the peer announced */
	uint8_t leader;		/* coordinator the peer follows */
	bool tilt;
	/* Lease the peer announced as coordinator, less the time since: for
	 * display only, never for a decision. */
	uint32_t lease_left_ms;
};

struct wd_counters {
	uint64_t elections;	/* terms this peer stood in */
	uint64_t prevotes_failed;
	uint64_t terms_won;
	uint64_t stepdowns;
	uint64_t tilts;
	uint64_t fences;
	uint64_t fences_failed;
	uint64_t transfers;	/* coordinator role handed over by wd_transfer */
};

struct wd;

/*
 * Checks the configuration: ids unique, self present, timings consistent.
 * drift_pct is the clock drift bound the lease inequality must survive:
 * lease_ms * (100 + drift) < election_min_ms * (100 - drift).
 * Returns 0, or -1 with a message in err.
 */
int wd_check_config(const struct wd_config *cfg, unsigned drift_pct, char *err,
		    size_t errlen);

/*
 * Creates the state machine from its durable state. It starts as a
 * follower that neither votes nor stands for election_min_ms (a restarted
 * peer does not remember whose lease it may have acknowledged). seed feeds
 * the election timeout jitter. Returns NULL on allocation failure.
 */
struct wd *wd_new(const struct wd_config *cfg, const struct wd_durable *d,
		  uint64_t now, uint64_t seed);
void wd_free(struct wd *wd);

/* A message authenticated by the wire layer, from peer `from`. */
void wd_receive(struct wd *wd, uint64_t now, uint8_t from,
		const struct wd_msg *m);
/* Timers: call at or after wd_next_wakeup(). */
void wd_tick(struct wd *wd, uint64_t now);
/* The fence hook against target finished; ok = exit status 0. */
void wd_fence_done(struct wd *wd, uint64_t now, uint8_t target, bool ok);
/*
 * Clean stop: a coordinator gives up its lease at once and tells the best
 * peer to start an election without waiting; others just stop voting.
 */
void wd_stop(struct wd *wd, uint64_t now);

/*
 * Leadership transfer: the coordinator hands its role to peer target (with
 * vip.follow = primary, the peer next to a new primary). It gives up its
 * lease at once, then tells every peer in a heartbeat with WD_HB_YIELDING
 * that it relinquished its term (so that voters waive their refusal
 * window for the handover candidate, as after a clean stop), and sends
 * WD_MSG_HANDOVER to target, which stands at once. For election_min_ms
 * it grants pre-votes and votes of the next term only to target, and for
 * election_max_ms it does not stand itself unless a newer term is seen
 * first; otherwise it stays an ordinary voting follower (unlike wd_stop).
 *
 * Nothing happens (no effect, still coordinator) when this peer is not
 * the coordinator, or when target is this peer, unknown, not eligible
 * (witness, priority 0), fenced, stopping, in tilt, not heard within
 * election_min_ms, or not following this coordinator in its term.
 * wd_role() tells the caller which it was. reason (borrowed for the call)
 * goes into the ROLE effect.
 */
void wd_transfer(struct wd *wd, uint64_t now, uint8_t target, const char *reason);

/*
 * Sends a heartbeat batch now, typically because the extension bytes
 * changed. At most one extra batch leaves per heartbeat_ms / 4: a call
 * inside that interval moves the next batch to its end instead, so a
 * flood of calls neither floods the network nor delays anything. The
 * periodic batches and timers keep their schedule.
 */
void wd_flush(struct wd *wd, uint64_t now);

/*
 * The coordinator cannot serve (its VIP's link went down, the VIP keeps
 * being removed): it steps down at once and does not stand again for
 * hold_ms; it still votes. A non-coordinator just does not stand.
 */
void wd_resign(struct wd *wd, uint64_t now, uint32_t hold_ms,
	       const char *reason);

/* When wd_tick must next be called. */
uint64_t wd_next_wakeup(const struct wd *wd);

/*
 * The effects queued by the last call, in the order they must be carried
 * out. Valid until the next call into the state machine.
 */
size_t wd_effects(const struct wd *wd, const struct wd_effect **effs);

/* Coordinator with a lease valid at now (the only test that entitles). */
bool wd_has_lease(const struct wd *wd, uint64_t now);
uint64_t wd_lease_end(const struct wd *wd);	/* 0 when none */
enum wd_role wd_role(const struct wd *wd);
uint64_t wd_term(const struct wd *wd);
uint8_t wd_leader(const struct wd *wd);	/* known coordinator, 0 = none */
bool wd_in_tilt(const struct wd *wd, uint64_t now);
struct wd_durable wd_durable_state(const struct wd *wd);
/* Status of configured peer id (self included). Returns -1 if unknown id. */
int wd_peer_status(const struct wd *wd, uint8_t id, uint64_t now,
		   struct wd_peer_status *st);
const struct wd_counters *wd_counters(const struct wd *wd);
/*
 * Sets the extension bytes (TLVs) this peer's heartbeats carry from now
 * on (copied). Returns -1 when len > WD_EXT_MAX.
 */
int wd_set_ext(struct wd *wd, const uint8_t *ext, uint16_t len);

const char *wd_role_name(enum wd_role r);
const char *wd_peer_state_name(enum wd_peer_state s);
const char *wd_msg_type_name(uint8_t t);

#endif
