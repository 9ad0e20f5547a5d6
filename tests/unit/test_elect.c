/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_elect.c - the election state machine in small, fixed scenarios:
 * a tiny harness delivers every message after 1 ms on a perfect network
 * (links can be cut) and calls every peer at its wake-up time. The
 * randomized torture is tests/sim; these tests pin the behaviours down one
 * by one so a regression names itself.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "watchdog/elect.h"

#define N 5
#define QMAX 4096

struct qmsg {
	uint64_t at;
	uint8_t from, to;
	struct wd_msg m;
};

struct harness {
	struct wd_config cfg[N + 1];
	struct wd *wd[N + 1];	/* NULL = crashed */
	struct wd_durable disk[N + 1];
	bool link[N + 1][N + 1];	/* from -> to */
	int n;
	uint64_t now;
	struct qmsg q[QMAX];
	size_t nq;
	int fence_requests[N + 1];
	int fence_target[N + 1];
	bool fence_ok;
	int persists[N + 1];
	int two_leaders;	/* lease invariant violations seen */
	uint64_t boot[N + 1];	/* incarnation of each peer, as the wire reports it */
	/* heartbeat batches each peer sent (a new hb_seq), and the newest seq */
	int batches[N + 1];
	uint64_t last_seq[N + 1];
	int sends[N + 1];	/* SEND effects queued, delivered or not */
};

static struct harness H;

static void
base_config(struct wd_config *c, int self, int n)
{
	memset(c, 0, sizeof(*c));
	c->self = (uint8_t)self;
	c->npeers = (size_t)n;
	for (int i = 0; i < n; i++) {
		c->peers[i].id = (uint8_t)(i + 1);
		c->peers[i].priority = 1;
	}
	c->heartbeat_ms = 100;
	c->election_min_ms = 700;
	c->election_max_ms = 1100;
	c->lease_ms = 500;
	c->tilt_ms = 300;
	c->tilt_hold_ms = 1000;
	c->fence_delay_ms = 500;
	c->fence_retry_ms = 200;
}

static void
setup_n(int n, void (*tweak)(struct wd_config *))
{
	char err[256];

	memset(&H, 0, sizeof(H));
	H.n = n;
	H.now = 1000;
	H.fence_ok = true;
	for (int i = 1; i <= n; i++) {
		base_config(&H.cfg[i], i, n);
		if (tweak)
			tweak(&H.cfg[i]);
		assert_int_equal(wd_check_config(&H.cfg[i], 2, err, sizeof(err)), 0);
		H.wd[i] = wd_new(&H.cfg[i], &H.disk[i], H.now, (uint64_t)i * 7919);
		assert_non_null(H.wd[i]);
		H.boot[i] = 1;
		for (int j = 1; j <= n; j++)
			H.link[i][j] = true;
	}
}

static void
teardown_all(void)
{
	for (int i = 1; i <= H.n; i++)
		wd_free(H.wd[i]);
	memset(H.wd, 0, sizeof(H.wd));
}

static void
run_effects(int i)
{
	const struct wd_effect *e;
	size_t n = wd_effects(H.wd[i], &e);

	for (size_t k = 0; k < n; k++) {
		switch (e[k].kind) {
		case WD_EFF_PERSIST:
			H.disk[i] = e[k].durable;
			H.persists[i]++;
			break;
		case WD_EFF_SEND:
			H.sends[i]++;
			if (e[k].msg.type == WD_MSG_HEARTBEAT &&
			    e[k].msg.hb_seq != H.last_seq[i]) {
				H.batches[i]++;
				H.last_seq[i] = e[k].msg.hb_seq;
			}
			if (!H.link[i][e[k].to] || H.nq == QMAX)
				break;
			H.q[H.nq].at = H.now + 1;
			H.q[H.nq].from = (uint8_t)i;
			H.q[H.nq].to = e[k].to;
			H.q[H.nq].m = e[k].msg;
			H.q[H.nq].m.sender_boot = H.boot[i];
			H.nq++;
			break;
		case WD_EFF_FENCE:
			H.fence_requests[i]++;
			H.fence_target[i] = e[k].target;
			break;
		case WD_EFF_ROLE:
			break;
		}
	}
}

static int
lease_holders(void)
{
	int n = 0;

	for (int i = 1; i <= H.n; i++)
		if (H.wd[i] && wd_has_lease(H.wd[i], H.now))
			n++;
	return n;
}

/* Advances time to `until` in 1 ms steps, delivering and ticking. */
static void
run_until(uint64_t until)
{
	while (H.now < until) {
		H.now++;
		for (size_t k = 0; k < H.nq;) {
			if (H.q[k].at <= H.now) {
				struct qmsg m = H.q[k];

				H.q[k] = H.q[--H.nq];
				if (H.wd[m.to] && H.link[m.from][m.to]) {
					wd_receive(H.wd[m.to], H.now, m.from, &m.m);
					run_effects(m.to);
				}
			} else {
				k++;
			}
		}
		for (int i = 1; i <= H.n; i++) {
			if (H.wd[i] && wd_next_wakeup(H.wd[i]) <= H.now) {
				wd_tick(H.wd[i], H.now);
				run_effects(i);
			}
		}
		if (lease_holders() > 1)
			H.two_leaders++;
	}
}

static int
leader_with_lease(void)
{
	for (int i = 1; i <= H.n; i++)
		if (H.wd[i] && wd_has_lease(H.wd[i], H.now))
			return i;
	return 0;
}

static void
crash(int i)
{
	wd_free(H.wd[i]);
	H.wd[i] = NULL;
}

static void
restart(int i)
{
	H.wd[i] = wd_new(&H.cfg[i], &H.disk[i], H.now, H.now);
	H.boot[i]++;
}

static void
isolate(int i, bool cut)
{
	for (int j = 1; j <= H.n; j++) {
		if (j == i)
			continue;
		H.link[i][j] = !cut;
		H.link[j][i] = !cut;
	}
}

static void
test_elect_one_coordinator_with_lease_at_start(void **s)
{
	(void)s;
	setup_n(3, NULL);
	run_until(H.now + 2500);
	int l = leader_with_lease();

	assert_int_not_equal(l, 0);
	assert_int_equal(H.two_leaders, 0);
	for (int i = 1; i <= 3; i++) {
		assert_int_equal(wd_term(H.wd[i]), wd_term(H.wd[l]));
		assert_int_equal(wd_leader(H.wd[i]), l);
	}
	/* The lease is renewed continuously. */
	run_until(H.now + 3000);
	assert_int_equal(leader_with_lease(), l);
	assert_int_equal(H.two_leaders, 0);
	teardown_all();
}

static void
test_elect_new_coordinator_after_crash_within_bound(void **s)
{
	(void)s;
	setup_n(3, NULL);
	run_until(H.now + 2500);
	int old = leader_with_lease();
	uint64_t term = wd_term(H.wd[old]);

	assert_int_not_equal(old, 0);
	crash(old);
	uint64_t t0 = H.now;

	while (!leader_with_lease() && H.now < t0 + 3000)
		run_until(H.now + 10);
	int l = leader_with_lease();

	assert_int_not_equal(l, 0);
	assert_int_not_equal(l, old);
	assert_true(wd_term(H.wd[l]) > term);
	/* election_max + a few round trips. */
	assert_true(H.now - t0 <= 1100 + 50);
	assert_int_equal(H.two_leaders, 0);
	teardown_all();
}

static void
test_elect_isolated_coordinator_loses_lease_before_new_one(void **s)
{
	(void)s;
	setup_n(3, NULL);
	run_until(H.now + 2500);
	int old = leader_with_lease();

	isolate(old, true);
	uint64_t t0 = H.now;

	run_until(H.now + 3000);
	int l = leader_with_lease();

	assert_int_not_equal(l, 0);
	assert_int_not_equal(l, old);
	assert_false(wd_has_lease(H.wd[old], H.now));
	assert_true(wd_role(H.wd[old]) != WD_LEADER);
	assert_int_equal(H.two_leaders, 0);
	/* The minority side never raised its term: pre-vote failed. */
	assert_true(wd_term(H.wd[old]) < wd_term(H.wd[l]));
	/* Healing: one coordinator, the majority's, keeps its role. */
	isolate(old, false);
	run_until(H.now + 2000);
	assert_int_equal(leader_with_lease(), l);
	assert_int_equal(wd_leader(H.wd[old]), l);
	assert_int_equal(H.two_leaders, 0);
	(void)t0;
	teardown_all();
}

static void
test_elect_partitioned_peer_does_not_disturb_on_return(void **s)
{
	(void)s;
	setup_n(3, NULL);
	run_until(H.now + 2500);
	int l = leader_with_lease();
	int other = l == 3 ? 2 : 3;
	uint64_t term = wd_term(H.wd[l]);

	isolate(other, true);
	run_until(H.now + 5000);
	/* Pre-vote kept it from inflating its term while alone. */
	assert_int_equal(wd_term(H.wd[other]), term);
	isolate(other, false);
	run_until(H.now + 1000);
	assert_int_equal(leader_with_lease(), l);
	assert_int_equal(wd_term(H.wd[l]), term);
	teardown_all();
}

static void
test_elect_votes_are_durable_before_sent(void **s)
{
	(void)s;
	setup_n(3, NULL);
	run_until(H.now + 2500);
	int l = leader_with_lease();
	struct wd_durable d = wd_durable_state(H.wd[l]);

	/* The winner's vote for itself in its term is on "disk". */
	assert_int_equal(H.disk[l].term, d.term);
	assert_int_equal(H.disk[l].voted_for, l);
	for (int i = 1; i <= 3; i++)
		assert_int_equal(H.disk[i].term, d.term);
	teardown_all();
}

static void
test_elect_restarted_peer_keeps_term_and_vote(void **s)
{
	(void)s;
	setup_n(3, NULL);
	run_until(H.now + 2500);
	int l = leader_with_lease();
	int f = l == 1 ? 2 : 1;
	struct wd_durable before = H.disk[f];

	crash(f);
	run_until(H.now + 300);
	restart(f);
	assert_int_equal(wd_term(H.wd[f]), before.term);
	assert_int_equal(wd_durable_state(H.wd[f]).voted_for, before.voted_for);
	run_until(H.now + 1500);
	assert_int_equal(leader_with_lease(), l);
	assert_int_equal(wd_leader(H.wd[f]), l);
	teardown_all();
}

static void
prefer_one(struct wd_config *c)
{
	c->peers[0].priority = 5;
}

/*
 * A peer that restarted counts its heartbeats anew; the others must echo
 * its new heartbeats, or it can win an election but never hold a lease.
 */
static void
test_elect_restarted_peer_can_lead_again(void **s)
{
	(void)s;
	setup_n(3, prefer_one);
	/* Long enough for the others to have seen many of peer 1's heartbeats. */
	run_until(H.now + 10000);
	assert_int_equal(leader_with_lease(), 1);
	crash(1);
	run_until(H.now + 2500);
	int l = leader_with_lease();

	assert_true(l == 2 || l == 3);
	/* Peer 1 returns and follows: leader stickiness keeps l in place. */
	restart(1);
	run_until(H.now + 2000);
	assert_int_equal(leader_with_lease(), l);
	/* The coordinator goes; peer 1 (preferred) stands first and must win. */
	crash(l);
	uint64_t until = H.now + 4000;

	while (H.now < until && leader_with_lease() != 1)
		run_until(H.now + 10);
	assert_int_equal(leader_with_lease(), 1);
	/* ...and keep its lease through the echoes of its new-boot heartbeats. */
	for (int k = 0; k < 30; k++) {
		run_until(H.now + 100);
		assert_int_equal(leader_with_lease(), 1);
	}
	assert_int_equal(H.two_leaders, 0);
	teardown_all();
}

static void
test_elect_stalled_coordinator_steps_down_and_tilts(void **s)
{
	(void)s;
	setup_n(3, NULL);
	run_until(H.now + 2500);
	int l = leader_with_lease();
	struct wd *frozen = H.wd[l];

	/* SIGSTOP: the peer is not called for 2 s; others go on. */
	H.wd[l] = NULL;
	run_until(H.now + 2000);
	int nl = leader_with_lease();

	assert_int_not_equal(nl, 0);
	assert_int_not_equal(nl, l);
	/* Its lease expired on its own clock while it was stopped. */
	assert_false(wd_has_lease(frozen, H.now));
	H.wd[l] = frozen;
	wd_tick(frozen, H.now);
	run_effects(l);
	assert_true(wd_in_tilt(frozen, H.now));
	assert_int_equal(wd_counters(frozen)->tilts, 1);
	assert_true(wd_role(frozen) != WD_LEADER);
	run_until(H.now + 1500);
	assert_int_equal(leader_with_lease(), nl);
	assert_int_equal(H.two_leaders, 0);
	teardown_all();
}

static void
test_elect_clean_stop_hands_over_at_once(void **s)
{
	(void)s;
	setup_n(3, NULL);
	run_until(H.now + 2500);
	int l = leader_with_lease();

	wd_stop(H.wd[l], H.now);
	run_effects(l);
	assert_false(wd_has_lease(H.wd[l], H.now));
	uint64_t t0 = H.now;

	while (!leader_with_lease() && H.now < t0 + 2000)
		run_until(H.now + 1);
	int nl = leader_with_lease();

	assert_int_not_equal(nl, 0);
	assert_int_not_equal(nl, l);
	/* No election timeout waited: a few round trips. */
	assert_true(H.now - t0 < 50);
	assert_int_equal(H.two_leaders, 0);
	teardown_all();
}

static void
prio_tweak(struct wd_config *c)
{
	c->peers[0].priority = 0;	/* peer 1 never stands */
	c->peers[2].priority = 5;	/* peer 3 preferred */
}

static void
test_elect_priority_orders_and_zero_never_stands(void **s)
{
	(void)s;
	int wins3 = 0;

	for (int round = 0; round < 5; round++) {
		setup_n(3, prio_tweak);
		run_until(H.now + 2500);
		int l = leader_with_lease();

		assert_int_not_equal(l, 1);
		wins3 += l == 3;
		crash(l);
		run_until(H.now + 2500);
		l = leader_with_lease();
		/* Only peer 2 or 3 can ever stand; with one crashed, 2 wins. */
		assert_int_not_equal(l, 1);
		teardown_all();
	}
	assert_int_equal(wins3, 5);
}

static void
witness_tweak(struct wd_config *c)
{
	c->peers[2].witness = true;
}

static void
test_elect_witness_votes_but_never_leads(void **s)
{
	(void)s;
	setup_n(3, witness_tweak);
	run_until(H.now + 2500);
	int l = leader_with_lease();

	assert_true(l == 1 || l == 2);
	crash(l);
	run_until(H.now + 2500);
	int nl = leader_with_lease();

	/* The other data peer wins with the witness's vote. */
	assert_int_equal(nl, l == 1 ? 2 : 1);
	teardown_all();
}

static void
two_node_tweak(struct wd_config *c)
{
	c->two_node = true;
}

static void
test_elect_two_node_fences_before_taking_over(void **s)
{
	(void)s;
	setup_n(2, two_node_tweak);
	run_until(H.now + 2500);
	int l = leader_with_lease();
	int o = l == 1 ? 2 : 1;

	assert_int_not_equal(l, 0);
	crash(l);
	H.fence_ok = false;
	run_until(H.now + 2500);
	/* It asked to fence the silent peer, and without a confirmed fence
	 * it is not coordinator. */
	assert_true(H.fence_requests[o] >= 1);
	assert_int_equal(H.fence_target[o], l);
	assert_int_equal(leader_with_lease(), 0);
	/* A failed fence: no promotion, a retry later. */
	wd_fence_done(H.wd[o], H.now, (uint8_t)l, false);
	run_effects(o);
	assert_int_equal(leader_with_lease(), 0);
	assert_int_equal(wd_counters(H.wd[o])->fences_failed, 1);
	int before = H.fence_requests[o];

	run_until(H.now + 3000);
	assert_true(H.fence_requests[o] > before);
	wd_fence_done(H.wd[o], H.now, (uint8_t)l, true);
	run_effects(o);
	assert_int_equal(leader_with_lease(), o);
	/* It keeps its lease alone while the other is fenced. */
	run_until(H.now + 2000);
	assert_int_equal(leader_with_lease(), o);
	struct wd_peer_status st;

	assert_int_equal(wd_peer_status(H.wd[o], (uint8_t)l, H.now, &st), 0);
	assert_int_equal(st.state, WD_PEER_FENCED);
	/* The fenced peer returns: it follows, the coordinator keeps its role. */
	restart(l);
	run_until(H.now + 2000);
	assert_int_equal(leader_with_lease(), o);
	assert_int_equal(wd_leader(H.wd[l]), o);
	assert_int_equal(H.two_leaders, 0);
	teardown_all();
}

static void
test_elect_two_node_clean_stop_hands_over_without_fence(void **s)
{
	(void)s;
	setup_n(2, two_node_tweak);
	run_until(H.now + 2500);
	int l = leader_with_lease();
	int o = l == 1 ? 2 : 1;

	/* The daemon sends its stop heartbeats and handover, then exits at
	 * once: it is not there to vote for its successor. */
	wd_stop(H.wd[l], H.now);
	run_effects(l);
	crash(l);
	run_until(H.now + 50);
	assert_int_equal(leader_with_lease(), o);
	/* It keeps the role while the other is away, without fencing it. */
	run_until(H.now + 5000);
	assert_int_equal(leader_with_lease(), o);
	assert_int_equal(H.fence_requests[o], 0);
	/* The other comes back and follows. */
	restart(l);
	run_until(H.now + 2000);
	assert_int_equal(leader_with_lease(), o);
	assert_int_equal(wd_leader(H.wd[l]), o);
	assert_int_equal(H.two_leaders, 0);
	teardown_all();
}

static void
two_node_first_preferred(struct wd_config *c)
{
	c->two_node = true;
	c->peers[0].priority = 5;
}

/*
 * A stop notice of a previous run of a peer, delivered late, must not make
 * its partner take over from the peer's current run: that would be two
 * coordinators with valid leases.
 */
static void
test_elect_two_node_stale_stop_notice_is_ignored(void **s)
{
	struct wd_msg stale;

	(void)s;
	setup_n(2, two_node_first_preferred);
	/* Peer 1 is in its second run from the start; it stands first. */
	crash(1);
	restart(1);
	run_until(H.now + 2500);
	assert_int_equal(leader_with_lease(), 1);
	/* A stop notice peer 1's first run sent, arriving now. */
	memset(&stale, 0, sizeof(stale));
	stale.type = WD_MSG_HEARTBEAT;
	stale.term = wd_term(H.wd[1]);
	stale.role = WD_FOLLOWER;
	stale.flags = WD_HB_STOPPING;
	stale.hb_seq = 1;
	stale.sender_boot = 1;
	wd_receive(H.wd[2], H.now, 1, &stale);
	run_effects(2);
	run_until(H.now + 1000);
	assert_int_equal(leader_with_lease(), 1);
	assert_int_equal(wd_leader(H.wd[2]), 1);
	assert_int_equal(H.two_leaders, 0);
	teardown_all();
}

static void
second_preferred(struct wd_config *c)
{
	c->two_node = true;
	c->peers[1].priority = 9;	/* peer 2 draws the earlier timeouts */
}

/*
 * A symmetric split in two-node mode: both are alive and cannot talk. The
 * peer that held the role fences first, whatever the timers drew; the
 * other's fence comes fence_delay later, by which time it is fenced.
 */
static void
test_elect_two_node_split_holder_fences_first(void **s)
{
	(void)s;
	for (int holder_id = 1; holder_id <= 2; holder_id++) {
		setup_n(2, second_preferred);
		run_until(H.now + 2500);
		int l = leader_with_lease();

		if (l != holder_id) {
			/* Make holder_id the coordinator through a clean handover. */
			wd_stop(H.wd[l], H.now);
			run_effects(l);
			crash(l);
			run_until(H.now + 100);
			restart(l);
			run_until(H.now + 2000);
		}
		l = leader_with_lease();
		assert_int_equal(l, holder_id);
		int o = l == 1 ? 2 : 1;

		isolate(l, true);
		uint64_t t0 = H.now;

		while (!H.fence_requests[l] && !H.fence_requests[o] && H.now < t0 + 5000)
			run_until(H.now + 1);
		assert_int_equal(H.fence_requests[l], 1);
		assert_int_equal(H.fence_requests[o], 0);
		/* The holder's fence hook kills the other. */
		crash(o);
		wd_fence_done(H.wd[l], H.now, (uint8_t)o, true);
		run_effects(l);
		assert_int_equal(leader_with_lease(), l);
		assert_int_equal(H.two_leaders, 0);
		teardown_all();
	}
}

static void
test_elect_resigned_coordinator_steps_down_and_holds_back(void **s)
{
	(void)s;
	setup_n(3, NULL);
	run_until(H.now + 2500);
	int l = leader_with_lease();

	wd_resign(H.wd[l], H.now, 3000, "link down");
	run_effects(l);
	assert_false(wd_has_lease(H.wd[l], H.now));
	run_until(H.now + 2500);
	int nl = leader_with_lease();

	assert_int_not_equal(nl, 0);
	assert_int_not_equal(nl, l);
	/* It still votes: the others elected with a majority that may include it. */
	assert_int_equal(wd_leader(H.wd[l]), nl);
	assert_int_equal(H.two_leaders, 0);
	teardown_all();
}


/* ---- leadership transfer and flush ------------------------------------ */

/* Steps 1 ms at a time until peer id holds a lease; returns the time, or 0. */
static uint64_t
wait_lease(int id, uint64_t max_ms)
{
	uint64_t until = H.now + max_ms;

	while (H.now < until) {
		if (H.wd[id] && wd_has_lease(H.wd[id], H.now))
			return H.now;
		run_until(H.now + 1);
	}
	return H.wd[id] && wd_has_lease(H.wd[id], H.now) ? H.now : 0;
}

/* Some peer other than l and not excluded, highest id first. */
static int
other_than(int l, int excluded)
{
	for (int i = H.n; i >= 1; i--)
		if (i != l && i != excluded)
			return i;
	return 0;
}

/*
 * The coordinator's lease ends at the call; the target stands on the
 * handover and is coordinator one round trip later (its vote request and
 * the answers, 1 ms each way here), holding a lease after one more (its
 * first heartbeat and the echoes). Nobody waits for an election timeout.
 */
static void
test_elect_transfer_hands_the_role_to_the_target_within_a_round_trip(void **s)
{
	(void)s;
	setup_n(3, NULL);
	run_until(H.now + 2500);
	int l = leader_with_lease();
	int t = other_than(l, 0);
	uint64_t term = wd_term(H.wd[l]), t0 = H.now, at;

	assert_int_not_equal(l, 0);
	wd_transfer(H.wd[l], H.now, (uint8_t)t, "new primary");
	/* The lease ends at the call, before any effect is carried out. */
	assert_false(wd_has_lease(H.wd[l], H.now));
	assert_int_equal(wd_lease_end(H.wd[l]), 0);
	assert_int_equal(wd_role(H.wd[l]), WD_FOLLOWER);
	assert_int_equal(wd_counters(H.wd[l])->transfers, 1);
	run_effects(l);
	/* handover (1 ms), vote request (1 ms), answers (1 ms) */
	run_until(t0 + 3);
	assert_int_equal(wd_role(H.wd[t]), WD_LEADER);
	assert_int_equal(wd_term(H.wd[t]), term + 1);
	at = wait_lease(t, 100);
	assert_int_not_equal(at, 0);
	assert_true(at - t0 <= 5);
	/* It keeps the role; the old coordinator follows it and votes again. */
	run_until(H.now + 3000);
	assert_int_equal(leader_with_lease(), t);
	for (int i = 1; i <= 3; i++)
		assert_int_equal(wd_leader(H.wd[i]), t);
	assert_int_equal(H.two_leaders, 0);
	/* ... and can take it back the same way at once (a newer term ends the
	 * hold on standing). */
	t0 = H.now;
	wd_transfer(H.wd[t], H.now, (uint8_t)l, "switch back");
	run_effects(t);
	at = wait_lease(l, 100);
	assert_int_not_equal(at, 0);
	assert_true(at - t0 <= 5);
	assert_int_equal(wd_term(H.wd[l]), term + 2);
	assert_int_equal(H.two_leaders, 0);
	teardown_all();
}

static void
expect_no_transfer(int l, uint8_t target)
{
	const struct wd_effect *e;

	wd_transfer(H.wd[l], H.now, target, "test");
	assert_int_equal(wd_effects(H.wd[l], &e), 0);
	assert_int_equal(wd_role(H.wd[l]), WD_LEADER);
	assert_true(wd_has_lease(H.wd[l], H.now));
}

static void
third_priority_zero(struct wd_config *c)
{
	c->peers[2].priority = 0;
}

/*
 * A target that is down, unknown, this peer itself, or never eligible: the
 * call changes nothing. A call on a peer that is not coordinator neither.
 */
static void
test_elect_transfer_to_a_target_not_up_does_nothing(void **s)
{
	(void)s;
	setup_n(4, third_priority_zero);
	run_until(H.now + 2500);
	int l = leader_with_lease();
	int down = other_than(l, 3), f = 0;

	for (int i = 1; i <= 4; i++)
		if (i != l && i != down)
			f = i;

	assert_int_not_equal(l, 0);
	assert_int_not_equal(l, 3);	/* priority 0 never leads */
	crash(down);
	run_until(H.now + 800);	/* longer than election_min: it is down */
	assert_int_equal(leader_with_lease(), l);
	expect_no_transfer(l, (uint8_t)down);
	expect_no_transfer(l, 3);	/* priority 0 */
	expect_no_transfer(l, (uint8_t)l);
	expect_no_transfer(l, 9);
	expect_no_transfer(l, 0);
	assert_int_equal(wd_counters(H.wd[l])->transfers, 0);
	/* A follower cannot transfer anything. */
	wd_transfer(H.wd[f], H.now, (uint8_t)l, "test");
	const struct wd_effect *e;

	assert_int_equal(wd_effects(H.wd[f], &e), 0);
	assert_int_equal(wd_role(H.wd[f]), WD_FOLLOWER);
	/* The lease goes on being renewed; the peer returns and can take it. */
	run_until(H.now + 1000);
	assert_int_equal(leader_with_lease(), l);
	restart(down);
	run_until(H.now + 1500);
	assert_int_equal(leader_with_lease(), l);
	wd_transfer(H.wd[l], H.now, (uint8_t)down, "back");
	run_effects(l);
	assert_int_not_equal(wait_lease(down, 100), 0);
	assert_int_equal(H.two_leaders, 0);
	teardown_all();
}

/*
 * Two-node mode: a transfer is not a stop. The target needs the old
 * coordinator's vote, gets it, and nobody is fenced. Its lease then rests
 * on the old coordinator's echoes (not renewed alone as after a stop):
 * when the link is cut it ends within a lease, and the new holder, not
 * the peer that handed over, is the one that fences first.
 */
static void
test_elect_transfer_in_two_node_mode_fences_nobody(void **s)
{
	(void)s;
	setup_n(2, two_node_tweak);
	run_until(H.now + 2500);
	int l = leader_with_lease();
	int o = l == 1 ? 2 : 1;
	uint64_t t0 = H.now, cut;
	struct wd_peer_status st;

	assert_int_not_equal(l, 0);
	wd_transfer(H.wd[l], H.now, (uint8_t)o, "new primary");
	run_effects(l);
	assert_int_not_equal(wait_lease(o, 100), 0);
	assert_true(H.now - t0 <= 5);
	/* A term won by election, with the old coordinator's durable vote. */
	assert_int_equal(H.disk[l].term, wd_term(H.wd[o]));
	assert_int_equal(H.disk[l].voted_for, o);
	run_until(H.now + 5000);
	assert_int_equal(leader_with_lease(), o);
	assert_int_equal(wd_leader(H.wd[l]), o);
	assert_int_equal(H.fence_requests[1] + H.fence_requests[2], 0);
	assert_int_equal(wd_peer_status(H.wd[o], (uint8_t)l, H.now, &st), 0);
	assert_int_equal(st.state, WD_PEER_UP);
	/* The link goes: the lease is not renewed alone. */
	isolate(o, true);
	cut = H.now;
	run_until(cut + 520);
	assert_false(wd_has_lease(H.wd[o], H.now));
	assert_int_equal(leader_with_lease(), 0);
	while (!H.fence_requests[l] && !H.fence_requests[o] && H.now < cut + 5000)
		run_until(H.now + 1);
	assert_int_equal(H.fence_requests[o], 1);
	assert_int_equal(H.fence_requests[l], 0);
	assert_int_equal(H.fence_target[o], l);
	assert_int_equal(H.two_leaders, 0);
	teardown_all();
}

/*
 * The target dies with the transfer: the old coordinator keeps its vote
 * for it only for election_min and does not stand for election_max, and
 * the cluster still elects a coordinator within about two election
 * timeouts.
 */
static void
test_elect_transfer_to_a_target_that_dies_recovers(void **s)
{
	(void)s;
	setup_n(3, NULL);
	run_until(H.now + 2500);
	int l = leader_with_lease();
	int t = other_than(l, 0);
	uint64_t t0 = H.now;

	wd_transfer(H.wd[l], H.now, (uint8_t)t, "new primary");
	run_effects(l);
	crash(t);
	while (!leader_with_lease() && H.now < t0 + 5000)
		run_until(H.now + 1);
	int nl = leader_with_lease();

	assert_int_not_equal(nl, 0);
	assert_int_not_equal(nl, t);
	assert_true(H.now - t0 <= 2 * 1100 + 100);
	/* The old coordinator did not stand within election_max. */
	if (nl == l)
		assert_true(H.now - t0 >= 1100);
	assert_int_equal(H.two_leaders, 0);
	teardown_all();
}

/*
 * A voter may get the successor's handover vote request before the
 * transferring coordinator's yield notice. It refuses it then (its
 * refusal window still protects that coordinator), but grants it when the
 * notice arrives, here with the next periodic heartbeat: the successor
 * wins long before any election timeout.
 */
static void
test_elect_transfer_vote_refused_before_the_notice_is_granted_after(void **s)
{
	(void)s;
	setup_n(5, NULL);
	run_until(H.now + 2500);
	int l = leader_with_lease();
	int t = other_than(l, 0);
	uint64_t t0 = H.now, at;

	/* The first yield notice reaches no voter but the target. */
	for (int i = 1; i <= 5; i++)
		if (i != l && i != t)
			H.link[l][i] = false;
	wd_transfer(H.wd[l], H.now, (uint8_t)t, "new primary");
	run_effects(l);
	run_until(H.now + 5);
	/* Two votes of five: refused by the voters that have no notice yet. */
	assert_int_equal(wd_role(H.wd[t]), WD_CANDIDATE);
	for (int i = 1; i <= 5; i++)
		H.link[l][i] = true;
	at = wait_lease(t, 300);
	assert_int_not_equal(at, 0);
	assert_true(at - t0 <= 100 + 5);
	for (int i = 1; i <= 5; i++)
		if (H.wd[i] && i != t)
			assert_int_equal(H.disk[i].voted_for, t);
	assert_int_equal(H.two_leaders, 0);
	teardown_all();
}

/*
 * wd_flush sends a batch at once with the new extension bytes; more calls
 * within heartbeat_ms / 4 of a batch move the next batch to the end of
 * that interval instead of sending. A flood of calls (one per ms for 2 s)
 * sends at most one batch per 25 ms, and the coordinator keeps its role,
 * lease and term throughout.
 */
static void
test_elect_flush_sends_now_and_at_most_one_batch_per_quarter_interval(void **s)
{
	static const uint8_t ext[] = { 0x00, 0x05, 0x00, 0x02, 0xca, 0xfe };
	const struct wd_effect *e;
	size_t n;

	(void)s;
	setup_n(3, NULL);
	run_until(H.now + 2500);
	int l = leader_with_lease();
	uint64_t term = wd_term(H.wd[l]), t0;
	int before;

	/* More than 25 ms after the last batch: the flush goes out at once. */
	while (wd_next_wakeup(H.wd[l]) != H.now + 70)
		run_until(H.now + 1);
	assert_int_equal(wd_set_ext(H.wd[l], ext, sizeof(ext)), 0);
	wd_flush(H.wd[l], H.now);
	/* The periodic batch keeps its time. */
	assert_int_equal(wd_next_wakeup(H.wd[l]), H.now + 70);
	n = wd_effects(H.wd[l], &e);
	assert_int_equal(n, 2);
	for (size_t k = 0; k < n; k++) {
		assert_int_equal(e[k].kind, WD_EFF_SEND);
		assert_int_equal(e[k].msg.type, WD_MSG_HEARTBEAT);
		assert_int_equal(e[k].msg.ext_len, sizeof(ext));
		assert_memory_equal(e[k].msg.ext, ext, sizeof(ext));
		assert_int_equal(e[k].msg.hb_seq, e[0].msg.hb_seq);
	}
	run_effects(l);
	/* Again at once: nothing now, the next batch 25 ms after this one. */
	wd_flush(H.wd[l], H.now);
	assert_int_equal(wd_effects(H.wd[l], &e), 0);
	assert_int_equal(wd_next_wakeup(H.wd[l]), H.now + 25);
	before = H.batches[l];
	run_until(H.now + 25);
	assert_int_equal(H.batches[l], before + 1);
	/* The flood. */
	before = H.batches[l];
	t0 = H.now;
	while (H.now < t0 + 2000) {
		wd_flush(H.wd[l], H.now);
		run_effects(l);
		run_until(H.now + 1);
		assert_true(wd_has_lease(H.wd[l], H.now));
	}
	assert_true(H.batches[l] - before <= 2000 / 25 + 1);
	assert_true(H.batches[l] - before >= 2000 / 25 - 1);
	assert_int_equal(wd_term(H.wd[l]), term);
	assert_int_equal(wd_counters(H.wd[l])->stepdowns, 0);
	for (int i = 1; i <= 3; i++)
		assert_int_equal(wd_leader(H.wd[i]), l);
	assert_int_equal(H.two_leaders, 0);
	teardown_all();
}

/*
 * Two-node mode: a coordinator in fenced mode renews its lease alone at
 * each periodic tick. Flushes must not delay those ticks: with a flush
 * every 40 ms (each one sent at once), it keeps its lease while the other
 * is fenced, and through the other's return (when the renewal passes from
 * its own ticks to the other's echoes).
 */
static void
test_elect_flush_keeps_a_fenced_mode_lease_renewed(void **s)
{
	(void)s;
	setup_n(2, two_node_tweak);
	run_until(H.now + 2500);
	int l = leader_with_lease();
	int o = l == 1 ? 2 : 1;

	crash(l);
	while (!H.fence_requests[o] && H.now < 10000)
		run_until(H.now + 1);
	assert_int_equal(H.fence_requests[o], 1);
	wd_fence_done(H.wd[o], H.now, (uint8_t)l, true);
	run_effects(o);
	assert_int_equal(leader_with_lease(), o);
	/* Each flush more than heartbeat_ms / 4 after the last batch: all go out. */
	for (int k = 0; k < 100; k++) {
		if (k == 50)
			restart(l);
		wd_flush(H.wd[o], H.now);
		run_effects(o);
		for (int ms = 0; ms < 40; ms++) {
			run_until(H.now + 1);
			assert_true(wd_has_lease(H.wd[o], H.now));
		}
	}
	assert_int_equal(wd_leader(H.wd[l]), o);
	assert_int_equal(H.two_leaders, 0);
	teardown_all();
}

static void
test_elect_config_checks(void **s)
{
	struct wd_config c;
	char err[512];

	(void)s;
	base_config(&c, 1, 3);
	assert_int_equal(wd_check_config(&c, 2, err, sizeof(err)), 0);
	c.lease_ms = 700;
	assert_int_equal(wd_check_config(&c, 2, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "lease (700ms) must end before election_timeout_min (700ms)"));
	base_config(&c, 1, 3);
	c.lease_ms = 680;	/* 680 * 102 >= 700 * 98: the drift bound breaks it */
	assert_int_equal(wd_check_config(&c, 2, err, sizeof(err)), -1);
	base_config(&c, 1, 2);
	assert_int_equal(wd_check_config(&c, 2, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "add a witness peer or a fence_command"));
	c.two_node = true;
	assert_int_equal(wd_check_config(&c, 2, err, sizeof(err)), 0);
	base_config(&c, 1, 3);
	c.peers[0].priority = c.peers[1].priority = c.peers[2].priority = 0;
	assert_int_equal(wd_check_config(&c, 2, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "no peer can become coordinator"));
	base_config(&c, 9, 3);
	assert_int_equal(wd_check_config(&c, 2, err, sizeof(err)), -1);
	base_config(&c, 1, 3);
	c.election_max_ms = 700;
	assert_int_equal(wd_check_config(&c, 2, err, sizeof(err)), -1);
	base_config(&c, 1, 3);
	c.tilt_ms = 50;
	assert_int_equal(wd_check_config(&c, 2, err, sizeof(err)), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_elect_one_coordinator_with_lease_at_start),
		cmocka_unit_test(test_elect_new_coordinator_after_crash_within_bound),
		cmocka_unit_test(test_elect_isolated_coordinator_loses_lease_before_new_one),
		cmocka_unit_test(test_elect_partitioned_peer_does_not_disturb_on_return),
		cmocka_unit_test(test_elect_votes_are_durable_before_sent),
		cmocka_unit_test(test_elect_restarted_peer_keeps_term_and_vote),
		cmocka_unit_test(test_elect_restarted_peer_can_lead_again),
		cmocka_unit_test(test_elect_stalled_coordinator_steps_down_and_tilts),
		cmocka_unit_test(test_elect_clean_stop_hands_over_at_once),
		cmocka_unit_test(test_elect_priority_orders_and_zero_never_stands),
		cmocka_unit_test(test_elect_witness_votes_but_never_leads),
		cmocka_unit_test(test_elect_two_node_fences_before_taking_over),
		cmocka_unit_test(test_elect_two_node_clean_stop_hands_over_without_fence),
		cmocka_unit_test(test_elect_two_node_split_holder_fences_first),
		cmocka_unit_test(test_elect_two_node_stale_stop_notice_is_ignored),
		cmocka_unit_test(test_elect_resigned_coordinator_steps_down_and_holds_back),
		cmocka_unit_test(test_elect_transfer_hands_the_role_to_the_target_within_a_round_trip),
		cmocka_unit_test(test_elect_transfer_to_a_target_not_up_does_nothing),
		cmocka_unit_test(test_elect_transfer_in_two_node_mode_fences_nobody),
		cmocka_unit_test(test_elect_transfer_to_a_target_that_dies_recovers),
		cmocka_unit_test(test_elect_transfer_vote_refused_before_the_notice_is_granted_after),
		cmocka_unit_test(test_elect_flush_sends_now_and_at_most_one_batch_per_quarter_interval),
		cmocka_unit_test(test_elect_flush_keeps_a_fenced_mode_lease_renewed),
		cmocka_unit_test(test_elect_config_checks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
