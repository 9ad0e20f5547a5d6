/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_orch.c - the failover state machine, driven peer by peer: views
 * in, extension bytes between peers, hooks completed by the test. Each
 * case checks a rule of doc/failover.md (quorum, fence before promote,
 * candidate order, max_lag, resumption by the next coordinator).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "failover/orch.h"

#define NP 3
#define NB 3

struct ran {
	uint8_t peer;
	enum fo_hook_kind kind;
	uint8_t backend, new_primary;
	uint64_t term;
	bool done;
};

struct cl {
	struct fo *fo[NP + 1];	/* by peer id */
	struct fo_config cfg[NP + 1];
	uint64_t now;
	struct ran ran[64];
	size_t nran;
	char events[128][48];
	size_t nev;
	uint8_t transfer[NP + 1];	/* peer -> transfer target asked */
	int checks;
	bool down[NP + 1];	/* a peer that neither sends nor receives */
};

static void
base_config(struct fo_config *c, uint8_t self, size_t nb)
{
	memset(c, 0, sizeof(*c));
	c->self = self;
	c->npeers = NP;
	for (size_t i = 0; i < NP; i++) {
		c->peers[i] = (uint8_t)(i + 1);
		c->peer_eligible[i] = true;
	}
	c->nbackends = nb;
	for (size_t i = 0; i < nb; i++) {
		c->backends[i].id = (uint8_t)(i + 1);
		c->backends[i].priority = 1;
		c->backends[i].peer = (uint8_t)(i + 1);
	}
	c->auto_failover = true;
	c->max_lag = 1 << 20;
	c->has_stop_command = true;
	c->has_fence_command = true;
	c->has_follow_command = true;
	c->view_max_age_ms = 700;
	c->fence_timeout_ms = 5000;
	c->verify_timeout_ms = 10000;
	c->retry_ms = 1000;
	c->retry_max_ms = 30000;
	c->settle_ms = 2000;
}

static void
effects(struct cl *c, uint8_t p)
{
	const struct fo_effect *e;
	size_t n = fo_effects(c->fo[p], &e);

	for (size_t i = 0; i < n; i++) {
		switch (e[i].kind) {
		case FO_EFF_HOOK:
			assert_true(c->nran < 64);
			c->ran[c->nran++] = (struct ran){ p, e[i].hook, e[i].backend,
				e[i].new_primary, e[i].term, false };
			break;
		case FO_EFF_EVENT:
			if (c->nev < 128)
				snprintf(c->events[c->nev++], 48, "%u:%s", p, e[i].event);
			break;
		case FO_EFF_TRANSFER:
			c->transfer[p] = e[i].peer;
			break;
		case FO_EFF_CHECK_NOW:
			c->checks++;
			break;
		default:
			break;
		}
	}
}

static void
cl_init(struct cl *c, size_t nb)
{
	memset(c, 0, sizeof(*c));
	c->now = 1000;
	for (uint8_t p = 1; p <= NP; p++) {
		base_config(&c->cfg[p], p, nb);
		c->fo[p] = fo_new(&c->cfg[p], NULL, c->now);
		assert_non_null(c->fo[p]);
	}
}

static void
cl_free(struct cl *c)
{
	for (uint8_t p = 1; p <= NP; p++)
		fo_free(c->fo[p]);
}

/* Every live peer sends its extension to every other live peer, rounds times. */
static void
exchange(struct cl *c, int rounds)
{
	uint8_t buf[1024];

	for (int r = 0; r < rounds; r++) {
		c->now += 5;
		for (uint8_t from = 1; from <= NP; from++) {
			size_t len;

			if (c->down[from])
				continue;
			len = fo_ext(c->fo[from], buf, sizeof(buf));
			assert_true(len > 0);
			for (uint8_t to = 1; to <= NP; to++) {
				if (to == from || c->down[to])
					continue;
				assert_int_equal(fo_peer_ext(c->fo[to], c->now, from, buf, len), 0);
				effects(c, to);
			}
		}
		for (uint8_t p = 1; p <= NP; p++) {
			if (c->down[p])
				continue;
			fo_tick(c->fo[p], c->now);
			effects(c, p);
		}
	}
}

static struct fo_view
view(uint8_t b, enum fo_health h, enum fo_role r, uint32_t tli, uint64_t lsn)
{
	return (struct fo_view){ .backend = b, .health = (uint8_t)h, .role = (uint8_t)r,
		.timeline = tli, .lsn = lsn, .system_id = 42 };
}

/* Peer p's checks: the same list for every backend. */
static void
see(struct cl *c, uint8_t p, const struct fo_view *v, size_t n)
{
	struct fo_view copy[NB];

	for (size_t i = 0; i < n; i++) {
		copy[i] = v[i];
		copy[i].checked_at = c->now;
	}
	fo_local_view(c->fo[p], c->now, copy, n);
	effects(c, p);
}

static void
see_all(struct cl *c, const struct fo_view *v, size_t n)
{
	for (uint8_t p = 1; p <= NP; p++)
		if (!c->down[p])
			see(c, p, v, n);
}

static void
coordinator(struct cl *c, uint8_t p, uint64_t term)
{
	for (uint8_t q = 1; q <= NP; q++) {
		fo_set_coordinator(c->fo[q], c->now, q == p, q == p ? term : 0);
		effects(c, q);
	}
}

static bool
has_event(const struct cl *c, uint8_t p, const char *token)
{
	char want[48];

	snprintf(want, sizeof(want), "%u:%s", p, token);
	for (size_t i = 0; i < c->nev; i++)
		if (strcmp(c->events[i], want) == 0)
			return true;
	return false;
}

static struct ran *
find_hook(struct cl *c, enum fo_hook_kind kind, bool pending)
{
	for (size_t i = 0; i < c->nran; i++)
		if (c->ran[i].kind == kind && (!pending || !c->ran[i].done))
			return &c->ran[i];
	return NULL;
}

static size_t
count_hooks(const struct cl *c, enum fo_hook_kind kind)
{
	size_t n = 0;

	for (size_t i = 0; i < c->nran; i++)
		if (c->ran[i].kind == kind)
			n++;
	return n;
}

static void
finish(struct cl *c, struct ran *r, bool ok)
{
	assert_non_null(r);
	r->done = true;
	c->now += 10;
	fo_hook_done(c->fo[r->peer], c->now, r->kind, r->backend, r->term, ok);
	effects(c, r->peer);
}

/* Steady cluster: backend 1 primary, 2 (and 3) standbys, peer 2 coordinator. */
static void
steady(struct cl *c, size_t nb)
{
	struct fo_view v[NB] = {
		view(1, FO_H_UP, FO_R_PRIMARY, 1, 1000),
		view(2, FO_H_UP, FO_R_STANDBY, 1, 1000),
		view(3, FO_H_UP, FO_R_STANDBY, 1, 900),
	};

	cl_init(c, nb);
	see_all(c, v, nb);
	coordinator(c, 2, 5);
	exchange(c, 3);
	assert_int_equal(fo_record(c->fo[2])->primary, 1);
	assert_true(has_event(c, 2, "primary-known"));
	/* The record reached everyone. */
	assert_int_equal(fo_record(c->fo[1])->primary, 1);
	assert_int_equal(fo_record(c->fo[3])->primary, 1);
}

static void
primary_fails(struct cl *c, size_t nb, uint64_t lsn2, uint64_t lsn3)
{
	struct fo_view v[NB] = {
		view(1, FO_H_FAILED, FO_R_PRIMARY, 1, 1000),
		view(2, FO_H_UP, FO_R_STANDBY, 1, lsn2),
		view(3, FO_H_UP, FO_R_STANDBY, 1, lsn3),
	};

	see_all(c, v, nb);
	exchange(c, 3);
}

static void
test_bootstrap_and_happy_failover(void **state)
{
	struct cl c;
	struct ran *r;

	(void)state;
	steady(&c, 2);
	primary_fails(&c, 2, 1000, 0);
	assert_true(has_event(&c, 2, "failover-started"));
	/* Cooperative fence: peer 1 (next to backend 1) stops it. */
	r = find_hook(&c, FO_HOOK_STOP, true);
	assert_non_null(r);
	assert_int_equal(r->peer, 1);
	assert_int_equal(r->backend, 1);
	assert_null(find_hook(&c, FO_HOOK_PROMOTE, false));
	finish(&c, r, true);
	exchange(&c, 2);
	assert_true(has_event(&c, 2, "backend-fence-done"));
	/* Fresh checks after the fence, then the choice. */
	assert_true(c.checks > 0);
	primary_fails(&c, 2, 1000, 0);
	r = find_hook(&c, FO_HOOK_PROMOTE, true);
	assert_non_null(r);
	assert_int_equal(r->peer, 2);
	assert_int_equal(r->new_primary, 2);
	assert_int_equal(r->term, 5);
	finish(&c, r, true);
	/* Verified once seen as primary on a new timeline. */
	{
		struct fo_view v[2] = { view(1, FO_H_FAILED, FO_R_PRIMARY, 1, 1000),
					view(2, FO_H_UP, FO_R_PRIMARY, 2, 1100) };

		see_all(&c, v, 2);
		exchange(&c, 3);
	}
	assert_true(has_event(&c, 2, "promote-verified"));
	assert_true(has_event(&c, 2, "failover-done"));
	assert_int_equal(fo_record(c.fo[2])->primary, 2);
	assert_int_equal(fo_record(c.fo[2])->timeline, 2);
	assert_int_equal(fo_record(c.fo[2])->step, FO_STEP_NONE);
	assert_true(fo_record_flags(fo_record(c.fo[2]), 1) & FO_B_NEEDS_REJOIN);
	assert_int_equal(fo_record(c.fo[3])->primary, 2);
	assert_int_equal(count_hooks(&c, FO_HOOK_PROMOTE), 1);
	assert_int_equal(count_hooks(&c, FO_HOOK_FENCE), 0);
	/*
	 * The other peers have not re-checked backend 2 yet: their views
	 * still show the standby it was. That is not a failure of the new
	 * primary (it once started a second failover against it).
	 */
	{
		struct fo_view stale[2] = { view(1, FO_H_FAILED, FO_R_PRIMARY, 1, 1000),
					    view(2, FO_H_UP, FO_R_STANDBY, 1, 1000) };

		see(&c, 1, stale, 2);
		see(&c, 3, stale, 2);
		exchange(&c, 5);
	}
	assert_int_equal(count_hooks(&c, FO_HOOK_STOP), 1);
	assert_int_equal(fo_record(c.fo[2])->step, FO_STEP_NONE);
	assert_int_equal(fo_record(c.fo[2])->primary, 2);
	cl_free(&c);
}

static void
test_one_peer_blip_is_no_failover(void **state)
{
	struct cl c;
	struct fo_view bad[2] = { view(1, FO_H_FAILED, FO_R_PRIMARY, 1, 1000),
				  view(2, FO_H_UP, FO_R_STANDBY, 1, 1000) };

	(void)state;
	steady(&c, 2);
	see(&c, 3, bad, 2);
	exchange(&c, 20);
	assert_false(has_event(&c, 2, "failover-started"));
	assert_int_equal(c.nran, 0);
	/* A second peer agreeing is a quorum of three. */
	see(&c, 2, bad, 2);
	exchange(&c, 2);
	assert_true(has_event(&c, 2, "failover-started"));
	cl_free(&c);
}

static void
test_fence_failure_never_promotes(void **state)
{
	struct cl c;
	struct ran *r;

	(void)state;
	steady(&c, 2);
	/* Peer 1 (with backend 1) is gone: the fence must be the command. */
	c.down[1] = true;
	c.now += 1000;
	primary_fails(&c, 2, 1000, 0);
	assert_true(has_event(&c, 2, "failover-started"));
	assert_null(find_hook(&c, FO_HOOK_STOP, false));
	r = find_hook(&c, FO_HOOK_FENCE, true);
	assert_non_null(r);
	assert_int_equal(r->backend, 1);
	finish(&c, r, false);
	assert_true(has_event(&c, 2, "backend-fence-failed"));
	assert_true(has_event(&c, 2, "failover-blocked"));
	/* Time passes, views keep coming: no promotion, one retry after back-off. */
	for (int i = 0; i < 10; i++)
		primary_fails(&c, 2, 1000, 0);
	assert_null(find_hook(&c, FO_HOOK_PROMOTE, false));
	c.now += 1100;
	primary_fails(&c, 2, 1000, 0);
	r = find_hook(&c, FO_HOOK_FENCE, true);
	assert_non_null(r);
	assert_int_equal(count_hooks(&c, FO_HOOK_FENCE), 2);
	finish(&c, r, true);
	primary_fails(&c, 2, 1000, 0);
	assert_non_null(find_hook(&c, FO_HOOK_PROMOTE, true));
	cl_free(&c);
}

static void
test_no_fence_available_blocks(void **state)
{
	struct cl c;

	(void)state;
	steady(&c, 2);
	for (uint8_t p = 1; p <= NP; p++) {
		c.cfg[p].has_fence_command = false;
		fo_reload(c.fo[p], &c.cfg[p]);
	}
	c.down[1] = true;
	c.now += 1000;
	primary_fails(&c, 2, 1000, 0);
	c.now += 60000;
	primary_fails(&c, 2, 1000, 0);
	assert_true(has_event(&c, 2, "failover-blocked"));
	assert_null(find_hook(&c, FO_HOOK_PROMOTE, false));
	assert_null(find_hook(&c, FO_HOOK_FENCE, false));
	cl_free(&c);
}

static void
test_most_advanced_standby_wins_and_other_follows(void **state)
{
	struct cl c;
	struct ran *r;

	(void)state;
	steady(&c, 3);
	primary_fails(&c, 3, 900, 1000);
	r = find_hook(&c, FO_HOOK_STOP, true);
	finish(&c, r, true);
	exchange(&c, 2);
	primary_fails(&c, 3, 900, 1000);
	r = find_hook(&c, FO_HOOK_PROMOTE, true);
	assert_non_null(r);
	assert_int_equal(r->new_primary, 3);
	finish(&c, r, true);
	{
		struct fo_view v[3] = { view(1, FO_H_FAILED, FO_R_PRIMARY, 1, 1000),
					view(2, FO_H_UP, FO_R_STANDBY, 1, 900),
					view(3, FO_H_UP, FO_R_PRIMARY, 2, 1000) };

		see_all(&c, v, 3);
		exchange(&c, 2);
	}
	r = find_hook(&c, FO_HOOK_FOLLOW, true);
	assert_non_null(r);
	assert_int_equal(r->backend, 2);
	assert_int_equal(r->new_primary, 3);
	assert_false(has_event(&c, 2, "failover-done"));
	finish(&c, r, true);
	assert_true(has_event(&c, 2, "failover-done"));
	assert_false(fo_record_flags(fo_record(c.fo[2]), 2) & FO_B_NEEDS_REJOIN);
	cl_free(&c);
}

static void
test_tie_breaks_by_priority_then_id(void **state)
{
	struct cl c;
	struct ran *r;

	(void)state;
	steady(&c, 3);
	primary_fails(&c, 3, 1000, 1000);
	finish(&c, find_hook(&c, FO_HOOK_STOP, true), true);
	exchange(&c, 2);
	primary_fails(&c, 3, 1000, 1000);
	r = find_hook(&c, FO_HOOK_PROMOTE, true);
	assert_non_null(r);
	assert_int_equal(r->new_primary, 2);	/* same LSN, same priority: lower id */
	cl_free(&c);

	steady(&c, 3);
	for (uint8_t p = 1; p <= NP; p++) {
		c.cfg[p].backends[2].priority = 5;
		fo_reload(c.fo[p], &c.cfg[p]);
	}
	primary_fails(&c, 3, 1000, 1000);
	finish(&c, find_hook(&c, FO_HOOK_STOP, true), true);
	exchange(&c, 2);
	primary_fails(&c, 3, 1000, 1000);
	r = find_hook(&c, FO_HOOK_PROMOTE, true);
	assert_non_null(r);
	assert_int_equal(r->new_primary, 3);	/* higher priority */
	cl_free(&c);
}

static void
test_max_lag_refuses(void **state)
{
	struct cl c;
	struct fo_view v[2] = { view(1, FO_H_UP, FO_R_PRIMARY, 1, 50u << 20),
				view(2, FO_H_UP, FO_R_STANDBY, 1, 1000) };

	(void)state;
	steady(&c, 2);
	see_all(&c, v, 2);	/* the primary got far ahead */
	exchange(&c, 2);
	primary_fails(&c, 2, 1000, 0);
	finish(&c, find_hook(&c, FO_HOOK_STOP, true), true);
	exchange(&c, 2);
	primary_fails(&c, 2, 1000, 0);
	assert_true(has_event(&c, 2, "failover-refused"));
	assert_null(find_hook(&c, FO_HOOK_PROMOTE, false));
	assert_string_not_equal(fo_waiting(c.fo[2]), "");
	/*
	 * Waiting for the retry is a wake-up in the future: a deadline already
	 * handled once made the daemon's loop spin and starve the heartbeats.
	 */
	c.now += 100;
	fo_tick(c.fo[2], c.now);
	effects(&c, 2);
	assert_true(fo_next_wakeup(c.fo[2]) > c.now);
	cl_free(&c);
}

static void
test_next_coordinator_finishes_promotion_once(void **state)
{
	struct cl c;
	struct ran *r;

	(void)state;
	steady(&c, 3);
	primary_fails(&c, 3, 1000, 900);
	finish(&c, find_hook(&c, FO_HOOK_STOP, true), true);
	exchange(&c, 2);
	primary_fails(&c, 3, 1000, 900);
	r = find_hook(&c, FO_HOOK_PROMOTE, true);
	assert_non_null(r);
	assert_int_equal(r->new_primary, 2);
	/* The coordinator dies with the promote hook running; peer 3 takes over. */
	c.down[2] = true;
	r->done = true;
	/* Meanwhile backend 3 looks more advanced: it must not matter now. */
	{
		struct fo_view v[3] = { view(1, FO_H_FAILED, FO_R_PRIMARY, 1, 1000),
					view(2, FO_H_UP, FO_R_STANDBY, 1, 1000),
					view(3, FO_H_UP, FO_R_STANDBY, 1, 2000) };

		see_all(&c, v, 3);
	}
	coordinator(&c, 3, 7);
	exchange(&c, 3);
	assert_true(has_event(&c, 3, "failover-resumed"));
	r = find_hook(&c, FO_HOOK_PROMOTE, true);
	assert_non_null(r);
	assert_int_equal(r->peer, 3);
	assert_int_equal(r->new_primary, 2);
	assert_int_equal(r->term, 7);
	cl_free(&c);
}

static void
test_pause_blocks_resume_allows(void **state)
{
	struct cl c;
	char err[128];

	(void)state;
	steady(&c, 2);
	/* Asked on a follower: carried to the coordinator. */
	assert_int_equal(fo_command(c.fo[3], c.now, FO_CMD_PAUSE, 0, err, sizeof(err)), 0);
	effects(&c, 3);
	exchange(&c, 3);
	assert_true(fo_record(c.fo[2])->paused);
	assert_true(has_event(&c, 2, "maintenance-on"));
	primary_fails(&c, 2, 1000, 0);
	exchange(&c, 5);
	assert_false(has_event(&c, 2, "failover-started"));
	assert_true(has_event(&c, 2, "failover-blocked"));
	assert_int_equal(fo_command(c.fo[1], c.now, FO_CMD_RESUME, 0, err, sizeof(err)), 0);
	effects(&c, 1);
	exchange(&c, 3);
	assert_false(fo_record(c.fo[2])->paused);
	assert_true(has_event(&c, 2, "failover-started"));
	/* A rejoin of a backend that does not need one is refused at once. */
	assert_int_equal(fo_command(c.fo[1], c.now, FO_CMD_REJOIN, 2, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "does not need"));
	cl_free(&c);
}

static void
test_vip_follows_primary(void **state)
{
	struct cl c;

	(void)state;
	cl_init(&c, 2);
	for (uint8_t p = 1; p <= NP; p++) {
		c.cfg[p].vip_follow = FO_VIP_PRIMARY;
		fo_reload(c.fo[p], &c.cfg[p]);
	}
	{
		struct fo_view v[2] = { view(1, FO_H_UP, FO_R_PRIMARY, 1, 1000),
					view(2, FO_H_UP, FO_R_STANDBY, 1, 1000) };

		see_all(&c, v, 2);
	}
	coordinator(&c, 3, 4);
	exchange(&c, 3);
	/* Peer 3 has no backend: it hands the role to the primary's peer. */
	assert_int_equal(c.transfer[3], 1);
	assert_false(fo_vip_allowed(c.fo[3]));
	assert_true(fo_vip_allowed(c.fo[1]));
	assert_false(fo_vip_allowed(c.fo[2]));
	cl_free(&c);
}

static void
test_ext_and_record_codecs(void **state)
{
	struct cl c;
	uint8_t buf[1024];
	size_t len;
	struct fo_record r, back;
	char text[1024];

	(void)state;
	steady(&c, 3);
	len = fo_ext(c.fo[1], buf, sizeof(buf));
	assert_true(len > 0);
	/* Truncated or garbled bytes are refused, not half-read. */
	assert_int_equal(fo_peer_ext(c.fo[2], c.now, 1, buf, len - 1), -1);
	assert_int_equal(fo_peer_ext(c.fo[2], c.now, 1, buf, 3), -1);
	assert_int_equal(fo_peer_ext(c.fo[2], c.now, 9, buf, len), -1);
	assert_int_equal(fo_peer_ext(c.fo[2], c.now, 1, buf, len), 0);

	memset(&r, 0, sizeof(r));
	r.term = 9;
	r.seq = 3;
	r.primary = 2;
	r.timeline = 4;
	r.system_id = 7345729384729;
	r.step = FO_STEP_PROMOTING;
	r.old_primary = 1;
	r.candidate = 2;
	r.failover_term = 8;
	r.failover_seq = 3;
	r.fence_go = true;
	r.last_primary_lsn = 123456789;
	r.paused = true;
	r.nflags = 2;
	r.flags[0].backend = 1;
	r.flags[0].flags = FO_B_NEEDS_REJOIN | FO_B_FENCED;
	r.flags[1].backend = 3;
	r.flags[1].flags = FO_B_NEEDS_REJOIN;
	r.nops = 1;
	r.ops[0].peer = 2;
	r.ops[0].seq = 77;
	assert_int_equal(fo_record_format(&r, text, sizeof(text)), 0);
	assert_int_equal(fo_record_parse(text, &back), 0);
	assert_memory_equal(&r, &back, sizeof(r));
	assert_int_equal(fo_record_parse("term=1 seq=x", &back), -1);
	assert_int_equal(fo_record_parse("term=1 bogus=2", &back), -1);
	assert_int_equal(fo_record_parse("term=1 seq=2 step=9", &back), -1);
	cl_free(&c);
}

static void
test_silent_primary_peer_makes_suspect_enough(void **state)
{
	struct cl c;
	struct fo_view sus[2] = { view(1, FO_H_SUSPECT, FO_R_PRIMARY, 1, 1000),
				  view(2, FO_H_UP, FO_R_STANDBY, 1, 1000) };

	(void)state;
	steady(&c, 2);
	/* One failed check each while the primary's peer still speaks: nothing. */
	see(&c, 2, sus, 2);
	see(&c, 3, sus, 2);
	exchange(&c, 10);
	assert_false(has_event(&c, 2, "failover-started"));
	/* Its host is gone: the peer falls silent too, and that is enough. */
	c.down[1] = true;
	c.now += 800;
	see(&c, 2, sus, 2);
	see(&c, 3, sus, 2);
	exchange(&c, 2);
	assert_true(has_event(&c, 2, "failover-started"));
	/* Its peer cannot stop it: the fence command does. */
	assert_null(find_hook(&c, FO_HOOK_STOP, false));
	assert_non_null(find_hook(&c, FO_HOOK_FENCE, true));
	cl_free(&c);
}

/* One datagram, from -> to, and nothing back. */
static void
send_one(struct cl *c, uint8_t from, uint8_t to)
{
	uint8_t buf[1024];
	size_t len = fo_ext(c->fo[from], buf, sizeof(buf));

	c->now += 1;
	assert_int_equal(fo_peer_ext(c->fo[to], c->now, from, buf, len), 0);
	effects(c, to);
}

static void
test_no_stop_before_a_majority_holds_the_step(void **state)
{
	struct cl c;
	struct fo_view v[2] = { view(1, FO_H_FAILED, FO_R_PRIMARY, 1, 1000),
				view(2, FO_H_UP, FO_R_STANDBY, 1, 1000) };

	(void)state;
	steady(&c, 2);
	see(&c, 1, v, 2);
	see(&c, 3, v, 2);
	send_one(&c, 1, 2);
	send_one(&c, 3, 2);
	see(&c, 2, v, 2);
	assert_true(has_event(&c, 2, "failover-started"));
	/* Peer 1 holds the step, but the coordinator has not heard so. */
	send_one(&c, 2, 1);
	assert_int_equal(fo_record(c.fo[1])->step, FO_STEP_FENCING);
	assert_null(find_hook(&c, FO_HOOK_STOP, false));
	/* Once a majority holds it, the go follows and peer 1 stops its backend. */
	send_one(&c, 1, 2);
	send_one(&c, 2, 1);
	assert_non_null(find_hook(&c, FO_HOOK_STOP, true));
	cl_free(&c);
}

static void
test_same_backend_failed_twice_in_one_term_is_fenced_twice(void **state)
{
	struct cl c;
	struct ran *r;
	char err[128];

	(void)state;
	steady(&c, 2);
	primary_fails(&c, 2, 1000, 0);
	finish(&c, find_hook(&c, FO_HOOK_STOP, true), true);
	exchange(&c, 2);
	primary_fails(&c, 2, 1000, 0);
	finish(&c, find_hook(&c, FO_HOOK_PROMOTE, true), true);
	{
		struct fo_view v[2] = { view(1, FO_H_FAILED, FO_R_PRIMARY, 1, 1000),
					view(2, FO_H_UP, FO_R_PRIMARY, 2, 1100) };

		see_all(&c, v, 2);
		exchange(&c, 3);
	}
	assert_int_equal(fo_record(c.fo[2])->primary, 2);
	/* Backend 1 rejoins, then is made primary again by hand (a switchover). */
	assert_int_equal(fo_command(c.fo[1], c.now, FO_CMD_REJOIN, 1, err, sizeof(err)), 0);
	effects(&c, 1);
	exchange(&c, 2);
	finish(&c, find_hook(&c, FO_HOOK_REJOIN, true), true);
	exchange(&c, 2);
	assert_false(fo_record_flags(fo_record(c.fo[2]), 1) & FO_B_NEEDS_REJOIN);
	/* Now backend 2 fails; backend 1 is promoted; then backend 1 fails again. */
	{
		struct fo_view v[2] = { view(1, FO_H_UP, FO_R_STANDBY, 2, 1200),
					view(2, FO_H_FAILED, FO_R_PRIMARY, 2, 1200) };

		c.now += 10000;
		see_all(&c, v, 2);
		exchange(&c, 3);
	}
	finish(&c, find_hook(&c, FO_HOOK_STOP, true), true);
	exchange(&c, 2);
	{
		struct fo_view v[2] = { view(1, FO_H_UP, FO_R_STANDBY, 2, 1200),
					view(2, FO_H_FAILED, FO_R_PRIMARY, 2, 1200) };

		see_all(&c, v, 2);
		exchange(&c, 2);
	}
	finish(&c, find_hook(&c, FO_HOOK_PROMOTE, true), true);
	{
		struct fo_view v[2] = { view(1, FO_H_UP, FO_R_PRIMARY, 3, 1300),
					view(2, FO_H_FAILED, FO_R_PRIMARY, 2, 1200) };

		see_all(&c, v, 2);
		exchange(&c, 3);
	}
	assert_int_equal(fo_record(c.fo[2])->primary, 1);
	/* A rejoin of backend 2, then backend 1 fails again, in the same term. */
	assert_int_equal(fo_command(c.fo[3], c.now, FO_CMD_REJOIN, 2, err, sizeof(err)), 0);
	effects(&c, 3);
	exchange(&c, 2);
	finish(&c, find_hook(&c, FO_HOOK_REJOIN, true), true);
	exchange(&c, 2);
	c.now += 10000;
	primary_fails(&c, 2, 1300, 0);
	/* The earlier "stopped" answer of peer 1 is for another failover. */
	r = find_hook(&c, FO_HOOK_STOP, true);
	assert_non_null(r);
	assert_int_equal(r->backend, 1);
	assert_null(find_hook(&c, FO_HOOK_PROMOTE, true));
	cl_free(&c);
}

/*
 * Switchover: the target is promoted only once it has the old primary's
 * shutdown checkpoint (the clean stop's report), and the old primary is
 * flagged only once it stopped; then it rejoins.
 */
static void
test_switchover_waits_for_shutdown_lsn(void **state)
{
	struct cl c;
	struct ran *r;
	char out[1024], err[128];
	uint8_t chosen = 0;

	(void)state;
	steady(&c, 2);
	c.cfg[2].has_rejoin_command = true;
	fo_reload(c.fo[2], &c.cfg[2]);
	assert_int_equal(fo_preflight(c.fo[3], c.now, FO_CMD_SWITCHOVER, 2, out,
				      sizeof(out), &chosen), 0);
	assert_int_equal(chosen, 2);
	assert_non_null(strstr(out, "ok: stop: peer 1 stops backend 1 cleanly"));
	assert_non_null(strstr(out, "ok: slots: no logical replication slots on the primary"));
	/* Logical slots on the primary are not carried over: a warning, not a refusal. */
	{
		struct fo_view v[2] = { view(1, FO_H_UP, FO_R_PRIMARY, 1, 1000),
					view(2, FO_H_UP, FO_R_STANDBY, 1, 1000) };

		v[0].logical_slots = 3;
		see(&c, 3, v, 2);
		assert_int_equal(fo_preflight(c.fo[3], c.now, FO_CMD_SWITCHOVER, 2, out,
					      sizeof(out), &chosen), 0);
		assert_non_null(strstr(out, "warning: slots: the primary has 3 logical replication slot(s)"));
	}
	/* The primary itself is no target. */
	assert_int_equal(fo_preflight(c.fo[3], c.now, FO_CMD_SWITCHOVER, 1, out,
				      sizeof(out), &chosen), -1);
	assert_non_null(strstr(out, "no: target: backend 1 cannot be promoted: it is the primary"));
	/* Asked on peer 3, carried to the coordinator (peer 2). */
	assert_int_equal(fo_command(c.fo[3], c.now, FO_CMD_SWITCHOVER, 2, err, sizeof(err)), 0);
	effects(&c, 3);
	exchange(&c, 3);
	assert_true(has_event(&c, 2, "failover-started"));
	assert_int_equal(fo_record(c.fo[2])->kind, FO_KIND_SWITCHOVER);
	/* Not flagged before it stopped. */
	assert_false(fo_record_flags(fo_record(c.fo[2]), 1) & FO_B_NEEDS_REJOIN);
	r = find_hook(&c, FO_HOOK_STOP, true);
	assert_non_null(r);
	assert_int_equal(r->peer, 1);
	r->done = true;
	c.now += 10;
	fo_hook_done_lsn(c.fo[1], c.now, FO_HOOK_STOP, 1, r->term, true, 5000);
	effects(&c, 1);
	exchange(&c, 2);
	assert_true(has_event(&c, 2, "backend-fence-done"));
	assert_int_equal(fo_record(c.fo[2])->shutdown_lsn, 5000);
	/* The lag of a degraded choice is measured from the shutdown checkpoint. */
	assert_int_equal(fo_record(c.fo[2])->last_primary_lsn, 5000);
	assert_true(fo_record_flags(fo_record(c.fo[2]), 1) & FO_B_NEEDS_REJOIN);
	/* The target has not received the shutdown checkpoint yet: no promotion. */
	{
		struct fo_view v[2] = { view(1, FO_H_FAILED, FO_R_PRIMARY, 1, 4990),
					view(2, FO_H_UP, FO_R_STANDBY, 1, 4990) };

		see_all(&c, v, 2);
		exchange(&c, 3);
	}
	assert_null(find_hook(&c, FO_HOOK_PROMOTE, false));
	assert_false(has_event(&c, 2, "switchover-degraded"));
	{
		struct fo_view v[2] = { view(1, FO_H_FAILED, FO_R_PRIMARY, 1, 4990),
					view(2, FO_H_UP, FO_R_STANDBY, 1, 5120) };

		see_all(&c, v, 2);
		exchange(&c, 2);
	}
	r = find_hook(&c, FO_HOOK_PROMOTE, true);
	assert_non_null(r);
	assert_int_equal(r->new_primary, 2);
	finish(&c, r, true);
	{
		struct fo_view v[2] = { view(1, FO_H_FAILED, FO_R_PRIMARY, 1, 4990),
					view(2, FO_H_UP, FO_R_PRIMARY, 2, 5200) };

		see_all(&c, v, 2);
		exchange(&c, 3);
	}
	assert_true(has_event(&c, 2, "failover-done"));
	assert_int_equal(fo_record(c.fo[2])->primary, 2);
	/* The old primary follows at once: rejoin_command. */
	r = find_hook(&c, FO_HOOK_REJOIN, true);
	assert_non_null(r);
	assert_int_equal(r->backend, 1);
	finish(&c, r, true);
	assert_false(fo_record_flags(fo_record(c.fo[2]), 1) & FO_B_NEEDS_REJOIN);
	assert_int_equal(count_hooks(&c, FO_HOOK_FENCE), 0);
	cl_free(&c);
}

/* A clean stop that fails cancels the switchover: the primary stays. */
static void
test_switchover_failed_stop_cancels(void **state)
{
	struct cl c;
	struct ran *r;
	char err[128];

	(void)state;
	steady(&c, 2);
	assert_int_equal(fo_command(c.fo[2], c.now, FO_CMD_SWITCHOVER, 0, err, sizeof(err)), 0);
	effects(&c, 2);
	exchange(&c, 3);
	r = find_hook(&c, FO_HOOK_STOP, true);
	assert_non_null(r);
	finish(&c, r, false);
	exchange(&c, 3);
	assert_true(has_event(&c, 2, "switchover-cancelled"));
	assert_int_equal(fo_record(c.fo[2])->step, FO_STEP_NONE);
	assert_int_equal(fo_record(c.fo[2])->primary, 1);
	assert_false(fo_record_flags(fo_record(c.fo[2]), 1) & FO_B_NEEDS_REJOIN);
	/* Never the fence_command, never a promotion. */
	assert_int_equal(count_hooks(&c, FO_HOOK_FENCE), 0);
	assert_null(find_hook(&c, FO_HOOK_PROMOTE, false));
	/* An operator fence of the primary is refused; of a standby it runs. */
	assert_int_equal(fo_command(c.fo[3], c.now, FO_CMD_FENCE, 1, err, sizeof(err)), -1);
	assert_int_equal(fo_command(c.fo[3], c.now, FO_CMD_FENCE, 2, err, sizeof(err)), 0);
	effects(&c, 3);
	exchange(&c, 3);
	r = find_hook(&c, FO_HOOK_FENCE, true);
	assert_non_null(r);
	assert_int_equal(r->backend, 2);
	assert_true(fo_record_flags(fo_record(c.fo[2]), 2) & FO_B_NEEDS_REJOIN);
	finish(&c, r, true);
	assert_true(has_event(&c, 2, "backend-fence-done"));
	assert_true(fo_record_flags(fo_record(c.fo[2]), 2) & FO_B_FENCED);
	assert_int_equal(fo_record(c.fo[2])->step, FO_STEP_NONE);
	cl_free(&c);
}

/* Views of backends 1..3 as every peer checks them, in one line. */
static void
see3(struct cl *c, struct fo_view a, struct fo_view b, struct fo_view d, int rounds)
{
	struct fo_view v[3] = { a, b, d };

	see_all(c, v, 3);
	exchange(c, rounds);
}

/*
 * The lag is measured from the failed primary's own last LSN: a primary
 * promoted behind the one before it (within max_lag) that fails before it
 * wrote that far has standbys close to it, and one of them is promoted.
 * Compared with the earlier primary's LSN they were all refused, forever.
 */
static void
test_max_lag_from_this_primarys_own_lsn(void **state)
{
	struct cl c;
	struct ran *r;
	const uint64_t mb = 1 << 20;

	(void)state;
	steady(&c, 3);
	see3(&c, view(1, FO_H_UP, FO_R_PRIMARY, 1, 10 * mb),
	     view(2, FO_H_UP, FO_R_STANDBY, 1, 10 * mb - 900 * 1024),
	     view(3, FO_H_UP, FO_R_STANDBY, 1, 8 * mb), 2);
	/* Backend 1 fails; backend 2, 0.9 MB behind it, is promoted. */
	see3(&c, view(1, FO_H_FAILED, FO_R_PRIMARY, 1, 10 * mb),
	     view(2, FO_H_UP, FO_R_STANDBY, 1, 10 * mb - 900 * 1024),
	     view(3, FO_H_UP, FO_R_STANDBY, 1, 8 * mb), 3);
	assert_int_equal(fo_record(c.fo[2])->last_primary_lsn, 10 * mb);
	finish(&c, find_hook(&c, FO_HOOK_STOP, true), true);
	exchange(&c, 2);
	see3(&c, view(1, FO_H_FAILED, FO_R_PRIMARY, 1, 10 * mb),
	     view(2, FO_H_UP, FO_R_STANDBY, 1, 10 * mb - 900 * 1024),
	     view(3, FO_H_UP, FO_R_STANDBY, 1, 8 * mb), 2);
	r = find_hook(&c, FO_HOOK_PROMOTE, true);
	assert_non_null(r);
	assert_int_equal(r->new_primary, 2);
	finish(&c, r, true);
	see3(&c, view(1, FO_H_FAILED, FO_R_PRIMARY, 1, 10 * mb),
	     view(2, FO_H_UP, FO_R_PRIMARY, 2, 10 * mb - 800 * 1024),
	     view(3, FO_H_UP, FO_R_STANDBY, 1, 8 * mb), 2);
	finish(&c, find_hook(&c, FO_HOOK_FOLLOW, true), true);
	assert_true(has_event(&c, 2, "failover-done"));
	assert_int_equal(fo_record(c.fo[2])->primary, 2);
	/* Backend 3 follows it; backend 2 writes up to 9.5 MB, 3 gets 8.6 MB of it. */
	see3(&c, view(1, FO_H_FAILED, FO_R_PRIMARY, 1, 10 * mb),
	     view(2, FO_H_UP, FO_R_PRIMARY, 2, 9 * mb + 512 * 1024),
	     view(3, FO_H_UP, FO_R_STANDBY, 2, 8 * mb + 600 * 1024), 2);
	c.now += 5000;
	/* Backend 2 fails: backend 3 is 0.9 MB behind it, 1.4 MB behind backend 1. */
	see3(&c, view(1, FO_H_FAILED, FO_R_PRIMARY, 1, 10 * mb),
	     view(2, FO_H_FAILED, FO_R_PRIMARY, 2, 9 * mb + 512 * 1024),
	     view(3, FO_H_UP, FO_R_STANDBY, 2, 8 * mb + 600 * 1024), 3);
	assert_int_equal(fo_record(c.fo[2])->old_primary, 2);
	assert_int_equal(fo_record(c.fo[2])->last_primary_lsn, 9 * mb + 512 * 1024);
	r = find_hook(&c, FO_HOOK_STOP, true);
	assert_non_null(r);
	assert_int_equal(r->backend, 2);
	finish(&c, r, true);
	exchange(&c, 2);
	see3(&c, view(1, FO_H_FAILED, FO_R_PRIMARY, 1, 10 * mb),
	     view(2, FO_H_FAILED, FO_R_PRIMARY, 2, 9 * mb + 512 * 1024),
	     view(3, FO_H_UP, FO_R_STANDBY, 2, 8 * mb + 600 * 1024), 2);
	assert_false(has_event(&c, 2, "failover-refused"));
	r = find_hook(&c, FO_HOOK_PROMOTE, true);
	assert_non_null(r);
	assert_int_equal(r->new_primary, 3);
	cl_free(&c);
}

/*
 * A peer that restarts sends heartbeats without a view until its first
 * checks end: what it saw before (a failed check of the primary) is gone,
 * not refreshed, and counts for nothing.
 */
static void
test_view_less_heartbeat_clears_the_view(void **state)
{
	struct cl c;
	struct fo_record rec;
	struct fo_view bad[2] = { view(1, FO_H_FAILED, FO_R_PRIMARY, 1, 1000),
				  view(2, FO_H_UP, FO_R_STANDBY, 1, 1000) };

	(void)state;
	steady(&c, 2);
	see(&c, 3, bad, 2);
	exchange(&c, 2);
	assert_false(has_event(&c, 2, "failover-started"));
	/* Peer 3 restarts from its state file and has checked nothing yet. */
	rec = *fo_record(c.fo[3]);
	fo_free(c.fo[3]);
	c.fo[3] = fo_new(&c.cfg[3], &rec, c.now);
	assert_non_null(c.fo[3]);
	exchange(&c, 2);
	/* One failed check of the coordinator's own is no quorum of three. */
	see(&c, 2, bad, 2);
	exchange(&c, 5);
	assert_false(has_event(&c, 2, "failover-started"));
	assert_int_equal(c.nran, 0);
	cl_free(&c);
}

/*
 * Two-node mode: a peer that wins while the other one's view is still
 * fresh needs both records; once that view is old, its own is enough.
 * Nothing but time passes (no heartbeat comes), and the election still
 * says "coordinator, same term": that must complete the read.
 */
static void
test_two_node_sync_completes_as_the_other_falls_silent(void **state)
{
	struct cl c;
	struct fo_view ok[2] = { view(1, FO_H_UP, FO_R_PRIMARY, 1, 1000),
				 view(2, FO_H_UP, FO_R_STANDBY, 1, 1000) };
	struct fo_view bad[2] = { view(1, FO_H_FAILED, FO_R_PRIMARY, 1, 1000),
				  view(2, FO_H_UP, FO_R_STANDBY, 1, 1000) };

	(void)state;
	cl_init(&c, 2);
	c.down[3] = true;
	for (uint8_t p = 1; p <= 2; p++) {
		c.cfg[p].npeers = 2;
		c.cfg[p].two_node = true;
		fo_reload(c.fo[p], &c.cfg[p]);
	}
	see_all(&c, ok, 2);
	coordinator(&c, 1, 5);
	exchange(&c, 3);
	assert_int_equal(fo_record(c.fo[2])->primary, 1);
	/* Peer 2 fenced peer 1's host and won, just after its last heartbeat. */
	c.down[1] = true;
	c.now += 50;
	fo_set_coordinator(c.fo[2], c.now, true, 6);
	effects(&c, 2);
	assert_string_equal(fo_waiting(c.fo[2]), "waiting for the cluster records of a majority");
	see(&c, 2, bad, 2);
	assert_false(has_event(&c, 2, "failover-started"));
	for (int i = 0; i < 10; i++) {
		c.now += 200;
		fo_set_coordinator(c.fo[2], c.now, true, 6);
		effects(&c, 2);
		see(&c, 2, bad, 2);
	}
	assert_int_equal(fo_record(c.fo[2])->term, 6);
	assert_true(has_event(&c, 2, "failover-started"));
	cl_free(&c);
}

/*
 * A peer that stalls (SIGSTOP, a VM pause) for longer than a view may age
 * resumes with the view it had before: that one is neither sent nor
 * counted, even by itself, until it has checked every backend again.
 */
static void
test_own_view_after_a_stall_waits_for_new_checks(void **state)
{
	struct cl c;
	struct fo_view ok[2] = { view(1, FO_H_UP, FO_R_PRIMARY, 1, 1000),
				 view(2, FO_H_UP, FO_R_STANDBY, 1, 1000) };
	struct fo_view bad[2] = { view(1, FO_H_FAILED, FO_R_PRIMARY, 1, 1000),
				  view(2, FO_H_UP, FO_R_STANDBY, 1, 1000) };

	(void)state;
	steady(&c, 2);
	/* Peer 3 saw the primary fail, then stalled for a second. */
	see(&c, 3, bad, 2);
	exchange(&c, 1);
	c.down[3] = true;
	exchange(&c, 200);
	/* Meanwhile the primary was fine; peer 3 resumes and speaks. */
	c.down[3] = false;
	exchange(&c, 2);
	/* A blip on the coordinator alone is no quorum of three. */
	see(&c, 2, bad, 2);
	exchange(&c, 5);
	assert_false(has_event(&c, 2, "failover-started"));
	assert_int_equal(c.nran, 0);
	/* With failure_quorum 1 it does not even count for itself. */
	see(&c, 2, ok, 2);
	c.cfg[3].failure_quorum = 1;
	fo_reload(c.fo[3], &c.cfg[3]);
	see(&c, 3, bad, 2);
	c.down[3] = true;
	exchange(&c, 200);
	c.down[3] = false;
	coordinator(&c, 3, 9);
	exchange(&c, 3);
	assert_false(has_event(&c, 3, "failover-started"));
	/* Checked again: its view counts and is sent again. */
	see(&c, 3, bad, 2);
	exchange(&c, 2);
	assert_true(has_event(&c, 3, "failover-started"));
	cl_free(&c);
}

/*
 * A coordinator whose own checks are held up after the fence (past
 * settle) waits for the fresh check of a standby that was up at its last
 * check, the best one here, instead of choosing among those it has.
 */
static void
test_select_waits_for_a_standby_that_was_up(void **state)
{
	struct cl c;
	struct ran *r;
	struct fo_view v[3];

	(void)state;
	steady(&c, 3);
	primary_fails(&c, 3, 900, 1000);
	finish(&c, find_hook(&c, FO_HOOK_STOP, true), true);
	exchange(&c, 2);
	assert_true(has_event(&c, 2, "backend-fence-done"));
	/* Only backend 2 was checked since; backend 3's check is held up. */
	v[0] = view(1, FO_H_FAILED, FO_R_PRIMARY, 1, 1000);
	v[1] = view(2, FO_H_UP, FO_R_STANDBY, 1, 900);
	v[2] = view(3, FO_H_UP, FO_R_STANDBY, 1, 1000);
	v[0].checked_at = v[1].checked_at = c.now;
	v[2].checked_at = c.now - 100;
	fo_local_view(c.fo[2], c.now, v, 3);
	effects(&c, 2);
	exchange(&c, 600);	/* 3 s: past settle (2 s) */
	assert_null(find_hook(&c, FO_HOOK_PROMOTE, false));
	assert_string_equal(fo_waiting(c.fo[2]), "waiting for fresh checks of the standbys");
	v[2].checked_at = c.now;
	fo_local_view(c.fo[2], c.now, v, 3);
	effects(&c, 2);
	exchange(&c, 2);
	r = find_hook(&c, FO_HOOK_PROMOTE, true);
	assert_non_null(r);
	assert_int_equal(r->new_primary, 3);
	cl_free(&c);
}

/*
 * A coordinator that resumes a switchover at fencing writes its own version
 * of the record first: that version must not ask the old primary's peer to
 * stop it again. Here the new coordinator then cancels (the peer is not
 * reachable from it), and a stop run for that first version would have
 * stopped the primary after the cancel.
 */
static void
test_resumed_switchover_asks_no_stop(void **state)
{
	struct cl c;
	struct ran *r;
	char err[128];
	uint8_t buf[1024];
	size_t len;

	(void)state;
	steady(&c, 2);
	assert_int_equal(fo_command(c.fo[2], c.now, FO_CMD_SWITCHOVER, 0, err, sizeof(err)), 0);
	effects(&c, 2);
	exchange(&c, 3);
	assert_true(fo_record(c.fo[1])->fence_go);
	r = find_hook(&c, FO_HOOK_STOP, true);
	assert_non_null(r);
	assert_int_equal(r->peer, 1);
	/* The clean stop fails, and nobody hears of it: peer 1 is cut off. */
	finish(&c, r, false);
	c.down[1] = true;
	c.now += 1000;
	coordinator(&c, 3, 7);
	/* Peer 3 syncs with peer 2's record (fencing, fence_go) ... */
	len = fo_ext(c.fo[2], buf, sizeof(buf));
	assert_int_equal(fo_peer_ext(c.fo[3], c.now, 2, buf, len), 0);
	effects(&c, 3);
	assert_true(has_event(&c, 3, "failover-resumed"));
	assert_int_equal(fo_record(c.fo[3])->step, FO_STEP_FENCING);
	assert_false(fo_record(c.fo[3])->fence_go);
	/* ... and peer 1 hears that version: it asks for no stop. */
	len = fo_ext(c.fo[3], buf, sizeof(buf));
	assert_int_equal(fo_peer_ext(c.fo[1], c.now, 3, buf, len), 0);
	effects(&c, 1);
	assert_int_equal(fo_record(c.fo[1])->term, 7);
	assert_int_equal(count_hooks(&c, FO_HOOK_STOP), 1);
	/* Peer 3 cannot reach peer 1: it cancels; nothing was stopped. */
	exchange(&c, 3);
	assert_true(has_event(&c, 3, "switchover-cancelled"));
	assert_int_equal(fo_record(c.fo[3])->primary, 1);
	assert_int_equal(count_hooks(&c, FO_HOOK_STOP), 1);
	cl_free(&c);
}

/*
 * An operator fence and a rejoin of one backend never run at once: the
 * fence would stop what the rejoin starts, and the rejoin's end would
 * clear the needs-rejoin flag the fence set.
 */
static void
test_operator_fence_and_rejoin_exclude_each_other(void **state)
{
	struct cl c;
	struct ran *r;
	char err[128];

	(void)state;
	steady(&c, 3);
	c.cfg[2].has_rejoin_command = true;
	fo_reload(c.fo[2], &c.cfg[2]);
	/* Fence standby 3; a rejoin of it asked while the fence runs is refused. */
	assert_int_equal(fo_command(c.fo[3], c.now, FO_CMD_FENCE, 3, err, sizeof(err)), 0);
	effects(&c, 3);
	exchange(&c, 3);
	r = find_hook(&c, FO_HOOK_FENCE, true);
	assert_non_null(r);
	assert_int_equal(r->backend, 3);
	assert_int_equal(fo_command(c.fo[1], c.now, FO_CMD_REJOIN, 3, err, sizeof(err)), 0);
	effects(&c, 1);
	exchange(&c, 3);
	assert_true(has_event(&c, 2, "rejoin-failed"));
	assert_int_equal(count_hooks(&c, FO_HOOK_REJOIN), 0);
	finish(&c, r, true);
	assert_true(fo_record_flags(fo_record(c.fo[2]), 3) & FO_B_NEEDS_REJOIN);
	/* Once the fence has ended, the rejoin runs ... */
	assert_int_equal(fo_command(c.fo[1], c.now, FO_CMD_REJOIN, 3, err, sizeof(err)), 0);
	effects(&c, 1);
	exchange(&c, 3);
	r = find_hook(&c, FO_HOOK_REJOIN, true);
	assert_non_null(r);
	/* ... and a fence of it asked while it runs is refused. */
	c.nev = 0;
	assert_int_equal(fo_command(c.fo[3], c.now, FO_CMD_FENCE, 3, err, sizeof(err)), 0);
	effects(&c, 3);
	exchange(&c, 3);
	assert_true(has_event(&c, 2, "backend-fence-failed"));
	assert_int_equal(count_hooks(&c, FO_HOOK_FENCE), 1);
	finish(&c, r, true);
	assert_false(fo_record_flags(fo_record(c.fo[2]), 3) & FO_B_NEEDS_REJOIN);
	cl_free(&c);
}

/*
 * A peer that restarts with a fencing record on disk does not stop its
 * backend for it: the record may be stale. A newer attempt asks again.
 */
static void
test_restart_does_not_stop_for_a_stale_record(void **state)
{
	struct cl c;
	struct fo_record rec;
	char err[128];

	(void)state;
	steady(&c, 2);
	assert_int_equal(fo_command(c.fo[2], c.now, FO_CMD_SWITCHOVER, 0, err, sizeof(err)), 0);
	effects(&c, 2);
	exchange(&c, 3);
	assert_true(fo_record(c.fo[1])->fence_go);
	assert_int_equal(count_hooks(&c, FO_HOOK_STOP), 1);
	/* Peer 1's daemon dies with its stop (killed with it) and starts again. */
	rec = *fo_record(c.fo[1]);
	fo_free(c.fo[1]);
	c.now += 100;
	c.fo[1] = fo_new(&c.cfg[1], &rec, c.now);
	assert_non_null(c.fo[1]);
	fo_tick(c.fo[1], c.now);
	effects(&c, 1);
	assert_int_equal(count_hooks(&c, FO_HOOK_STOP), 1);
	/* A new coordinator's attempt is a newer version: that one asks. */
	c.now += 1000;
	coordinator(&c, 3, 7);
	exchange(&c, 4);
	assert_int_equal(count_hooks(&c, FO_HOOK_STOP), 2);
	cl_free(&c);
}

/*
 * A switchover's clean stop runs once: after it failed, a later version of
 * the record (any write asks) does not run it again, and the coordinator
 * cancels.
 */
static void
test_switchover_failed_stop_is_not_run_again(void **state)
{
	struct cl c;
	struct ran *r;
	char err[128];

	(void)state;
	steady(&c, 2);
	assert_int_equal(fo_command(c.fo[2], c.now, FO_CMD_SWITCHOVER, 0, err, sizeof(err)), 0);
	effects(&c, 2);
	exchange(&c, 3);
	r = find_hook(&c, FO_HOOK_STOP, true);
	assert_non_null(r);
	/* While it runs, the coordinator writes a new version (an operator's pause). */
	assert_int_equal(fo_command(c.fo[3], c.now, FO_CMD_PAUSE, 0, err, sizeof(err)), 0);
	effects(&c, 3);
	exchange(&c, 2);
	assert_true(fo_record(c.fo[1])->paused);
	assert_int_equal(fo_record(c.fo[1])->step, FO_STEP_FENCING);
	finish(&c, r, false);
	assert_int_equal(count_hooks(&c, FO_HOOK_STOP), 1);
	exchange(&c, 3);
	assert_true(has_event(&c, 2, "switchover-cancelled"));
	assert_int_equal(count_hooks(&c, FO_HOOK_STOP), 1);
	cl_free(&c);
}

/*
 * The end of a switchover is committed before its old primary rejoins: a
 * next coordinator that only held "promoting" would promote again, and the
 * old primary must still be stopped then.
 */
static void
test_switchover_rejoin_waits_for_the_commit(void **state)
{
	struct cl c;
	struct ran *r;
	char err[128];

	(void)state;
	steady(&c, 2);
	c.cfg[2].has_rejoin_command = true;
	fo_reload(c.fo[2], &c.cfg[2]);
	assert_int_equal(fo_command(c.fo[2], c.now, FO_CMD_SWITCHOVER, 2, err, sizeof(err)), 0);
	effects(&c, 2);
	exchange(&c, 3);
	r = find_hook(&c, FO_HOOK_STOP, true);
	assert_non_null(r);
	r->done = true;
	c.now += 10;
	fo_hook_done_lsn(c.fo[1], c.now, FO_HOOK_STOP, 1, r->term, true, 5000);
	effects(&c, 1);
	exchange(&c, 2);
	{
		struct fo_view v[2] = { view(1, FO_H_FAILED, FO_R_PRIMARY, 1, 5000),
					view(2, FO_H_UP, FO_R_STANDBY, 1, 5000) };

		see_all(&c, v, 2);
		exchange(&c, 2);
	}
	r = find_hook(&c, FO_HOOK_PROMOTE, true);
	assert_non_null(r);
	finish(&c, r, true);
	/* The coordinator alone sees the promotion and ends the switchover. */
	c.down[1] = c.down[3] = true;
	{
		struct fo_view v[2] = { view(1, FO_H_FAILED, FO_R_PRIMARY, 1, 5000),
					view(2, FO_H_UP, FO_R_PRIMARY, 2, 5100) };

		see(&c, 2, v, 2);
		exchange(&c, 3);
	}
	assert_true(has_event(&c, 2, "failover-done"));
	assert_int_equal(fo_record(c.fo[2])->step, FO_STEP_NONE);
	assert_null(find_hook(&c, FO_HOOK_REJOIN, false));
	/* Once a majority holds it, the old primary rejoins. */
	c.down[1] = c.down[3] = false;
	exchange(&c, 3);
	r = find_hook(&c, FO_HOOK_REJOIN, true);
	assert_non_null(r);
	assert_int_equal(r->backend, 1);
	assert_int_equal(r->new_primary, 2);
	cl_free(&c);
}

/* Two-node mode (peer 3 absent): backend 1 primary, peer 2 coordinator alone. */
static void
two_node_alone(struct cl *c)
{
	struct fo_view ok[2] = { view(1, FO_H_UP, FO_R_PRIMARY, 1, 1000),
				 view(2, FO_H_UP, FO_R_STANDBY, 1, 1000) };

	cl_init(c, 2);
	c->down[3] = true;
	for (uint8_t p = 1; p <= 2; p++) {
		c->cfg[p].npeers = 2;
		c->cfg[p].two_node = true;
		fo_reload(c->fo[p], &c->cfg[p]);
	}
	see_all(c, ok, 2);
	coordinator(c, 1, 5);
	exchange(c, 3);
	assert_int_equal(fo_record(c->fo[2])->primary, 1);
	/* Peer 1's host is fenced; peer 2 wins alone once its view aged out. */
	c->down[1] = true;
	c->now += 1000;
	fo_set_coordinator(c->fo[2], c->now, true, 6);
	effects(c, 2);
	exchange(c, 1);
	assert_int_equal(fo_record(c->fo[2])->term, 6);
}

/*
 * Two-node mode: backend 2 was promoted under a record this peer never
 * held (the other peer wrote it alone, and a later record of a higher term
 * replaced it). The recorded primary is up nowhere, backend 2 is up as a
 * primary on a newer timeline: it is recorded, not alarmed about forever.
 */
static void
test_two_node_records_a_promotion_whose_record_was_lost(void **state)
{
	struct cl c;
	struct fo_view v[2] = { view(1, FO_H_FAILED, FO_R_PRIMARY, 1, 1000),
				view(2, FO_H_UP, FO_R_PRIMARY, 2, 1100) };

	(void)state;
	two_node_alone(&c);
	see(&c, 2, v, 2);
	exchange(&c, 3);
	assert_false(has_event(&c, 2, "two-primaries"));
	assert_true(has_event(&c, 2, "primary-known"));
	assert_int_equal(fo_record(c.fo[2])->primary, 2);
	assert_int_equal(fo_record(c.fo[2])->timeline, 2);
	assert_true(fo_record_flags(fo_record(c.fo[2]), 1) & FO_B_NEEDS_REJOIN);
	/* Nothing was promoted, fenced or stopped for it. */
	assert_int_equal(c.nran, 0);
	/* Not in the other modes: a primary beside the recorded one is only reported. */
	cl_free(&c);
	steady(&c, 2);
	see_all(&c, v, 2);
	exchange(&c, 3);
	assert_true(has_event(&c, 2, "two-primaries"));
	assert_int_equal(fo_record(c.fo[2])->primary, 1);
	cl_free(&c);
}

/*
 * Two-node mode, the same during a failover: at selecting, a backend up as
 * a primary on a newer timeline is this failure's promotion whose record
 * was lost. It becomes the candidate, verified at once by the check that
 * shows it (failover_command would be idempotent on a primary), instead of
 * a refusal with back-off, forever.
 */
static void
test_two_node_selecting_finishes_a_lost_promotion(void **state)
{
	struct cl c;
	struct ran *r;
	struct fo_view bad[2] = { view(1, FO_H_FAILED, FO_R_PRIMARY, 1, 1000),
				  view(2, FO_H_UP, FO_R_STANDBY, 1, 1000) };
	struct fo_view v[2] = { view(1, FO_H_FAILED, FO_R_PRIMARY, 1, 1000),
				view(2, FO_H_UP, FO_R_PRIMARY, 2, 1100) };

	(void)state;
	two_node_alone(&c);
	see(&c, 2, bad, 2);
	exchange(&c, 2);
	assert_true(has_event(&c, 2, "failover-started"));
	r = find_hook(&c, FO_HOOK_FENCE, true);
	assert_non_null(r);
	finish(&c, r, true);
	assert_int_equal(fo_record(c.fo[2])->step, FO_STEP_SELECTING);
	see(&c, 2, v, 2);
	exchange(&c, 2);
	assert_false(has_event(&c, 2, "two-primaries"));
	assert_true(has_event(&c, 2, "candidate-chosen"));
	/* Its own check after the choice shows it promoted: nothing to run. */
	assert_true(has_event(&c, 2, "promote-verified"));
	assert_true(has_event(&c, 2, "failover-done"));
	assert_int_equal(fo_record(c.fo[2])->primary, 2);
	assert_int_equal(fo_record(c.fo[2])->step, FO_STEP_NONE);
	cl_free(&c);
}

static uint32_t
rec_op(const struct fo_record *r, uint8_t peer)
{
	for (size_t i = 0; i < r->nops; i++)
		if (r->ops[i].peer == peer)
			return r->ops[i].seq;
	return 0;
}

/*
 * Two-node mode: peer 1 alone recorded the promotion of backend 2 (timeline
 * 2) and a rejoin flag; peer 2, alone later, wrote a record of a higher
 * term that never heard of it (backend 1 still the primary on timeline 1)
 * with a flag of its own. The record on the newer timeline is merged, not
 * replaced by the higher version: both peers end with the promotion and
 * both histories' flags, applied commands and maintenance mode.
 */
static void
test_two_node_merges_the_record_on_the_newer_timeline(void **state)
{
	struct cl c;
	struct fo_record a, b;

	(void)state;
	cl_init(&c, 3);
	c.down[3] = true;
	memset(&a, 0, sizeof(a));
	a.term = 5;
	a.seq = 4;
	a.primary = 2;
	a.timeline = 2;
	a.system_id = 42;
	a.nflags = 1;
	a.flags[0].backend = 1;
	a.flags[0].flags = FO_B_NEEDS_REJOIN | FO_B_FENCED;
	a.nops = 1;
	a.ops[0].peer = 1;
	a.ops[0].seq = 4;
	b = a;
	b.term = 6;
	b.seq = 1;
	b.primary = 1;
	b.timeline = 1;
	b.flags[0].backend = 3;
	b.flags[0].flags = FO_B_NEEDS_REJOIN;
	b.ops[0].peer = 2;
	b.ops[0].seq = 7;
	b.paused = true;
	for (uint8_t p = 1; p <= 2; p++) {
		c.cfg[p].npeers = 2;
		c.cfg[p].two_node = true;
		fo_free(c.fo[p]);
		c.fo[p] = fo_new(&c.cfg[p], p == 1 ? &a : &b, c.now);
		assert_non_null(c.fo[p]);
	}
	exchange(&c, 3);
	assert_true(has_event(&c, 2, "record-merged"));
	for (uint8_t p = 1; p <= 2; p++) {
		const struct fo_record *r = fo_record(c.fo[p]);

		assert_int_equal(r->primary, 2);
		assert_int_equal(r->timeline, 2);
		assert_true(fo_record_flags(r, 1) & FO_B_NEEDS_REJOIN);
		assert_true(fo_record_flags(r, 3) & FO_B_NEEDS_REJOIN);
		assert_false(fo_record_flags(r, 2) & FO_B_NEEDS_REJOIN);
		assert_int_equal(rec_op(r, 1), 4);
		assert_int_equal(rec_op(r, 2), 7);
		assert_true(r->paused);
		/* A new version of the higher one: nobody takes it for older. */
		assert_int_equal(r->term, 6);
		assert_int_equal(r->seq, 2);
	}
	cl_free(&c);
}

/*
 * A peer's view of the primary kept from its earlier time as primary (an
 * older timeline, a higher LSN) does not become the last primary LSN of
 * its next failover.
 */
static void
test_primary_lsn_only_from_its_timeline(void **state)
{
	struct cl c;
	char err[128];
	struct fo_view v[NB] = {
		view(1, FO_H_UP, FO_R_STANDBY, 2, 1000),
		view(2, FO_H_UP, FO_R_PRIMARY, 2, 1000),
		view(3, FO_H_UP, FO_R_STANDBY, 2, 1000),
	};
	struct fo_view stale[NB] = {
		view(1, FO_H_UP, FO_R_STANDBY, 2, 1000),
		view(2, FO_H_FAILED, FO_R_PRIMARY, 1, 900000),
		view(3, FO_H_UP, FO_R_STANDBY, 2, 1000),
	};

	(void)state;
	cl_init(&c, 3);
	see_all(&c, v, 3);
	coordinator(&c, 2, 5);
	exchange(&c, 3);
	assert_int_equal(fo_record(c.fo[2])->primary, 2);
	assert_int_equal(fo_record(c.fo[2])->timeline, 2);
	/* Peer 3 still shows what it last saw of backend 2, long ago. */
	see(&c, 3, stale, 3);
	exchange(&c, 2);
	assert_int_equal(fo_command(c.fo[1], c.now, FO_CMD_FAILOVER, 1, err, sizeof(err)), 0);
	effects(&c, 1);
	exchange(&c, 3);
	assert_true(has_event(&c, 2, "failover-started"));
	assert_int_equal(fo_record(c.fo[2])->last_primary_lsn, 1000);
	cl_free(&c);
}

/*
 * A coordinator that loses its role a moment and gets it back in the same
 * term still knows the operator fence it runs: a rejoin of that backend
 * stays refused.
 */
static void
test_fence_running_survives_a_role_blip(void **state)
{
	struct cl c;
	struct ran *r;
	char err[128];

	(void)state;
	steady(&c, 3);
	assert_int_equal(fo_command(c.fo[3], c.now, FO_CMD_FENCE, 3, err, sizeof(err)), 0);
	effects(&c, 3);
	exchange(&c, 3);
	r = find_hook(&c, FO_HOOK_FENCE, true);
	assert_non_null(r);
	/* The lease lapses and is renewed, same term. */
	fo_set_coordinator(c.fo[2], c.now, false, 5);
	effects(&c, 2);
	c.now += 50;
	fo_set_coordinator(c.fo[2], c.now, true, 5);
	effects(&c, 2);
	exchange(&c, 3);
	assert_int_equal(fo_command(c.fo[1], c.now, FO_CMD_REJOIN, 3, err, sizeof(err)), 0);
	effects(&c, 1);
	exchange(&c, 3);
	assert_true(has_event(&c, 2, "rejoin-failed"));
	assert_int_equal(count_hooks(&c, FO_HOOK_REJOIN), 0);
	/* Its result still counts in this term. */
	finish(&c, r, true);
	assert_true(fo_record_flags(fo_record(c.fo[2]), 3) & FO_B_FENCED);
	cl_free(&c);
}

/*
 * The operator fence runs once a majority holds the backend's needs-rejoin
 * flag: a next coordinator must not promote the backend being fenced.
 */
static void
test_operator_fence_waits_for_its_flag_to_be_committed(void **state)
{
	struct cl c;
	char err[128];

	(void)state;
	steady(&c, 3);
	c.down[1] = c.down[3] = true;
	assert_int_equal(fo_command(c.fo[2], c.now, FO_CMD_FENCE, 3, err, sizeof(err)), 0);
	effects(&c, 2);
	exchange(&c, 3);
	assert_true(fo_record_flags(fo_record(c.fo[2]), 3) & FO_B_NEEDS_REJOIN);
	assert_null(find_hook(&c, FO_HOOK_FENCE, false));
	c.down[1] = c.down[3] = false;
	exchange(&c, 3);
	assert_true(fo_record_flags(fo_record(c.fo[1]), 3) & FO_B_NEEDS_REJOIN);
	assert_non_null(find_hook(&c, FO_HOOK_FENCE, true));
	assert_true(has_event(&c, 2, "backend-fence-started"));
	cl_free(&c);
}

/*
 * The end of an operator fence of an earlier term does not end the one of
 * this term against the same backend: a rejoin of it stays refused.
 */
static void
test_old_terms_fence_result_leaves_this_terms_fence_running(void **state)
{
	struct cl c;
	struct ran *old, *cur;
	char err[128];

	(void)state;
	steady(&c, 3);
	assert_int_equal(fo_command(c.fo[2], c.now, FO_CMD_FENCE, 3, err, sizeof(err)), 0);
	effects(&c, 2);
	exchange(&c, 3);
	old = find_hook(&c, FO_HOOK_FENCE, true);
	assert_non_null(old);
	assert_int_equal(old->term, 5);
	/* A new term, the same coordinator; the fence is asked again. */
	coordinator(&c, 2, 6);
	exchange(&c, 3);
	assert_int_equal(fo_command(c.fo[2], c.now, FO_CMD_FENCE, 3, err, sizeof(err)), 0);
	effects(&c, 2);
	exchange(&c, 3);
	old->done = true;
	cur = find_hook(&c, FO_HOOK_FENCE, true);
	assert_non_null(cur);
	assert_int_equal(cur->term, 6);
	old->done = false;
	/* The term-5 fence times out: the term-6 one still runs. */
	finish(&c, old, false);
	assert_int_equal(fo_command(c.fo[1], c.now, FO_CMD_REJOIN, 3, err, sizeof(err)), 0);
	effects(&c, 1);
	exchange(&c, 3);
	assert_true(has_event(&c, 2, "rejoin-failed"));
	assert_int_equal(count_hooks(&c, FO_HOOK_REJOIN), 0);
	cl_free(&c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bootstrap_and_happy_failover),
		cmocka_unit_test(test_one_peer_blip_is_no_failover),
		cmocka_unit_test(test_fence_failure_never_promotes),
		cmocka_unit_test(test_no_fence_available_blocks),
		cmocka_unit_test(test_silent_primary_peer_makes_suspect_enough),
		cmocka_unit_test(test_most_advanced_standby_wins_and_other_follows),
		cmocka_unit_test(test_tie_breaks_by_priority_then_id),
		cmocka_unit_test(test_max_lag_refuses),
		cmocka_unit_test(test_next_coordinator_finishes_promotion_once),
		cmocka_unit_test(test_pause_blocks_resume_allows),
		cmocka_unit_test(test_vip_follows_primary),
		cmocka_unit_test(test_ext_and_record_codecs),
		cmocka_unit_test(test_no_stop_before_a_majority_holds_the_step),
		cmocka_unit_test(test_same_backend_failed_twice_in_one_term_is_fenced_twice),
		cmocka_unit_test(test_switchover_waits_for_shutdown_lsn),
		cmocka_unit_test(test_switchover_failed_stop_cancels),
		cmocka_unit_test(test_max_lag_from_this_primarys_own_lsn),
		cmocka_unit_test(test_view_less_heartbeat_clears_the_view),
		cmocka_unit_test(test_two_node_sync_completes_as_the_other_falls_silent),
		cmocka_unit_test(test_own_view_after_a_stall_waits_for_new_checks),
		cmocka_unit_test(test_select_waits_for_a_standby_that_was_up),
		cmocka_unit_test(test_resumed_switchover_asks_no_stop),
		cmocka_unit_test(test_operator_fence_and_rejoin_exclude_each_other),
		cmocka_unit_test(test_restart_does_not_stop_for_a_stale_record),
		cmocka_unit_test(test_switchover_failed_stop_is_not_run_again),
		cmocka_unit_test(test_switchover_rejoin_waits_for_the_commit),
		cmocka_unit_test(test_two_node_records_a_promotion_whose_record_was_lost),
		cmocka_unit_test(test_two_node_selecting_finishes_a_lost_promotion),
		cmocka_unit_test(test_two_node_merges_the_record_on_the_newer_timeline),
		cmocka_unit_test(test_primary_lsn_only_from_its_timeline),
		cmocka_unit_test(test_fence_running_survives_a_role_blip),
		cmocka_unit_test(test_operator_fence_waits_for_its_flag_to_be_committed),
		cmocka_unit_test(test_old_terms_fence_result_leaves_this_terms_fence_running),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
