/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * sim.c - deterministic cluster simulator for the coordinator election
 * (DESIGN.md §3, §4.1; how to use it: tests/sim/README.md).
 *
 * N election state machines (watchdog/elect.c, unmodified) run in one
 * process against a simulated network and simulated clocks. Real time is a
 * discrete-event queue in microseconds; every peer has its own local clock
 * (offset + drift, |drift| <= 1%, monotonic) and is only ever called with
 * its local time in milliseconds, as the daemon would. The network drops,
 * delays, duplicates, reorders and partitions (also one way); peers crash
 * (memory lost, "disk" kept), restart, stop cleanly, freeze (VM pause:
 * inputs queue up and are handled at resume), change drift, and in
 * two-node mode fence each other; coordinators hand their role to random
 * peers (wd_transfer) and peers flush heartbeats in bursts (wd_flush). Everything random comes from the seed,
 * so a schedule replays exactly: `sim --verbose SEED` prints its trace.
 *
 * After every call into a peer the safety invariants are checked (at most
 * one valid lease at any real instant, terms never decrease, one durable
 * vote per peer and term and durable before sent, one coordinator per
 * term, a two-node take-over "after a clean stop" only after a real stop);
 * in quiet phases (no faults, healed network) a lease must appear within
 * a stated bound and then hold, and a planned transfer must give the
 * target a lease within a few round trips and fence nobody. The first violation ends the
 * schedule and is reported with its seed and time.
 *
 * Built for throughput: events live in one binary heap, messages in a pool
 * with a free list, queues and tables are reused across schedules, so the
 * steady state allocates nothing (elect.c allocates one struct per start).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "watchdog/elect.h"

#define MAXP 5			/* peers per simulated cluster */
#define DRIFT_PCT 2		/* the bound configs are validated against */
#define DRIFT_PPM_MAX 10000	/* the clocks drift at most 1% */
#define QUIET_DELAY_MAX_US 20000	/* one-way delay bound in quiet phases */
#define SPIKE_DELAY_MAX_US 300000
#define PQ_CAP 1024		/* inputs queued while paused (socket buffer) */
#define PQ_MSG_CAP 1000		/* beyond this, datagrams to a frozen peer drop */
#define SPLIT_RETRIES 3		/* K in the liveness bound (README) */
#define DEFAULT_DURATION_MS 60000
#define VMSG_LEN 640
#define FENCE_HOOK_MAX_US 3000000	/* a fence hook runs 10 ms to 3 s */
#define FLUSH_BURST_MAX 40	/* wd_flush calls in one burst */

/* ---- PRNG: splitmix64 to seed, xoshiro256** to draw ------------------ */

struct rng {
	uint64_t s[4];
};

static uint64_t
splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void
rng_seed(struct rng *r, uint64_t seed, uint64_t stream)
{
	uint64_t x = seed * 0x2545f4914f6cdd1dULL + stream * 0x9e3779b97f4a7c15ULL;

	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&x);
}

static uint64_t
rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t
rng_next(struct rng *r)
{
	uint64_t *s = r->s;
	uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return res;
}

/* Uniform in [lo, hi], both included. */
static uint64_t
rng_range(struct rng *r, uint64_t lo, uint64_t hi)
{
	if (hi <= lo)
		return lo;
	return lo + rng_next(r) % (hi - lo + 1);
}

/* True with probability ppm / 1e6. */
static bool
rng_chance(struct rng *r, uint32_t ppm)
{
	return ppm && (uint32_t)(rng_next(r) % 1000000) < ppm;
}

/* ---- events ----------------------------------------------------------- */

enum ev_kind {
	EV_START,		/* a: peer, first boot */
	EV_DELIVER,		/* a: msg slot, b: from idx, c: to idx */
	EV_WAKE,		/* a: peer, b: wake generation */
	EV_FENCE_DONE,		/* a: fencer, b: fencer incarnation, c: target, d: ok */
	EV_RESUME,		/* a: peer, b: pause generation */
	EV_RESTART,		/* a: peer, b: restart generation */
	EV_FAULT,
	EV_PHASE,
	EV_DEADLINE,		/* a: quiet phase number */
	EV_EXIT,		/* a: peer, b: incarnation; the end of a clean stop */
	EV_XFER,		/* a: quiet phase; a planned transfer */
	EV_XFER_DEADLINE,	/* a: quiet phase, b: transfer number */
	EV_FLUSH,		/* a: peer, b: incarnation */
};

struct ev {
	uint64_t t;		/* real time, µs */
	uint64_t seq;		/* FIFO among equal times: determinism */
	uint32_t a, b;
	uint16_t c;
	uint8_t kind;
	uint8_t d;
};

/* ---- simulated world ---------------------------------------------------- */

enum pstate { PS_DOWN, PS_UP, PS_PAUSED };

/* An input that reached a frozen peer, handled when it resumes. */
struct pin {
	uint32_t slot;		/* message slot, or UINT32_MAX for a fence result */
	uint8_t from;		/* peer idx */
	uint8_t target;		/* fence result: target idx */
	uint8_t ok;
};

struct speer {
	struct wd *wd;		/* owned; NULL while down */
	struct wd_config cfg;
	uint8_t id;
	bool eligible;
	enum pstate st;
	uint32_t inc;		/* incarnation: bumps at every crash */
	uint32_t pause_gen, restart_gen, wake_gen;
	uint32_t boots;
	/* Local clock: local_us = c_local + dt + dt * ppm / 1e6, dt = real - c_real. */
	uint64_t c_real, c_local;
	int32_t ppm;
	uint64_t wake_local;	/* armed wakeup (local ms), UINT64_MAX = none */
	uint64_t same_wake;	/* consecutive wakeups that did not advance */
	uint64_t last_local;	/* local ms of the previous call into wd */
	struct pin *pq;		/* owned, PQ_CAP entries */
	uint32_t pq_head, pq_len;
	/* invariant bookkeeping */
	struct wd_durable disk;	/* what survived: last PERSIST */
	uint64_t term_seen;	/* highest wd_term of any incarnation */
	bool fenced;		/* down because a fence succeeded */
	bool lingering;		/* stopped cleanly, exits at its EV_EXIT */
	uint64_t booted_at;	/* real µs of its last start */
	uint64_t down_at;	/* real µs of its last crash */
	/* newest heartbeat received from each peer, and from which incarnation */
	uint64_t rx_seq[MAXP];
	uint32_t rx_inc[MAXP];
	/* newest incarnation + 1 of any message delivered from each peer, 0 = none */
	uint32_t rx_max_inc[MAXP];
};

struct msgslot {
	struct wd_msg m;
	uint32_t inc;		/* sender's incarnation */
	uint32_t next_free;
};

struct link {
	bool up;
	uint32_t drop_ppm;
};

/* Open-addressing map: (key != 0) -> value. */
struct map {
	uint64_t *keys;		/* owned */
	uint32_t *vals;		/* owned */
	size_t cap, n;
};

struct stats {
	uint64_t schedules, violations, events, deliveries, drops;
	uint64_t elections, won, stepdowns, fences_ok, fences_failed;
	uint64_t crashes, stops, pauses, restarts, tilts_seen;
	uint64_t quiet_phases, quiet_measured, ttc_sum_ms, ttc_max_ms, ttc_max_seed;
	uint64_t ttc_over_half_bound;
	uint64_t bound_max_ms;	/* largest bound seen */
	double ttc_max_ratio;	/* worst ttc / bound */
	uint64_t ttc_ratio_seed;
	uint64_t ttc_hist[8];	/* ttc / bound in eighths */
	uint64_t phantom_echoes, phantom_schedules;
	uint64_t transfers, transfers_made, flushes;
	uint64_t xfer_quiet, xfer_quiet_done, xfer_sum_us, xfer_max_us, xfer_max_seed;
	uint64_t xfer_bound_max_us;
};

struct opts {
	uint64_t seeds, start, duration_ms;
	bool long_mode;
	bool verbose;
	uint64_t verbose_seed;
	size_t tail;		/* verbose: print only the last lines before a violation */
	unsigned jobs;
	uint32_t fault_mask;	/* allowed fault kinds */
	int mode;		/* -1 = from seed */
	bool no_dup;
	bool strict_echo;
	unsigned max_report;
};

enum fault {
	F_CRASH, F_STOP, F_PAUSE, F_SPLIT, F_ISOLATE, F_ONEWAY, F_LOSSY,
	F_SPIKES, F_DUP, F_HEAL, F_DRIFT, F_RESTART, F_BRIDGE, F_TRANSFER, F_FLUSH,
	F_COUNT
};

static const char *const fault_names[F_COUNT] = {
	"crash", "stop", "pause", "split", "isolate", "oneway", "lossy",
	"spikes", "dup", "heal", "drift", "restart", "bridge", "transfer", "flush",
};

enum mode { M_THREE, M_FIVE, M_WITNESS, M_TWO_NODE, M_COUNT };

static const char *const mode_names[M_COUNT] = {
	"3 peers", "5 peers", "2 peers + witness", "2 peers with fencing",
};

struct sim {
	const struct opts *o;
	uint64_t seed;
	struct rng r_cfg, r_net, r_fault, r_fence;
	uint64_t now;		/* real µs */
	uint64_t end;
	size_t n;
	int mode;
	struct speer p[MAXP];
	uint8_t idx_of[256];	/* peer id -> idx, 0xff = none */
	/* event heap */
	struct ev *heap;	/* owned */
	size_t hn, hcap;
	uint64_t seq;
	/* message pool */
	struct msgslot *pool;	/* owned */
	uint32_t pool_cap, pool_free;
	/* network */
	struct link link[MAXP][MAXP];
	uint32_t dup_ppm, spike_ppm;
	uint32_t fault_w[F_COUNT];
	uint32_t fence_ok_ppm;
	bool tick_first;	/* at resume: timers before queued inputs */
	/* phases */
	bool quiet;
	uint32_t phase;
	uint64_t quiet_start;
	bool got_lease, stable;
	uint8_t stable_holder;
	uint64_t stable_term;
	uint64_t bound_ms;
	uint64_t qdelay_us;	/* one-way delay bound in quiet phases */
	/* invariants */
	struct map votes;	/* (idx+1) << 56 | term -> candidate id */
	struct map leaders;	/* term + 1 -> leader id */
	struct map stops;	/* (idx+1) << 56 | incarnation -> 1: it called wd_stop */
	/* the planned transfer of the current quiet phase */
	bool xfer_pending;	/* waiting for the target's lease */
	bool xfer_done_phase;	/* a transfer happened in this quiet phase */
	size_t xfer_target;	/* idx */
	uint64_t xfer_at;	/* real µs */
	uint64_t settled_at;	/* real µs the quiet phase settled */
	uint32_t xfer_n;	/* transfers so far, to match deadlines */
	uint64_t xfer_bound_us;
	bool violated;
	char vmsg[VMSG_LEN];
	uint64_t phantom_at;	/* first echo of a heartbeat never received, 0 = none */
	/* trace */
	bool tracing;
	char **ring;		/* owned when tail > 0 */
	size_t ring_n, ring_pos;
	struct stats st;
};

/* ---- trace and violations ---------------------------------------------- */

static void trace(struct sim *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
trace(struct sim *s, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int off;

	if (!s->tracing)
		return;
	off = snprintf(buf, sizeof(buf), "%10.3f ", (double)s->now / 1000.0);
	va_start(ap, fmt);
	vsnprintf(buf + off, sizeof(buf) - (size_t)off, fmt, ap);
	va_end(ap);
	if (s->ring) {
		snprintf(s->ring[s->ring_pos], 512, "%s", buf);
		s->ring_pos = (s->ring_pos + 1) % s->ring_n;
		return;
	}
	puts(buf);
}

static void violation(struct sim *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
violation(struct sim *s, const char *fmt, ...)
{
	char buf[VMSG_LEN - 64];
	va_list ap;

	if (s->violated)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	s->violated = true;
	snprintf(s->vmsg, sizeof(s->vmsg), "t=%.3fms %s", (double)s->now / 1000.0, buf);
	trace(s, "VIOLATION %s", buf);
}

/* ---- maps --------------------------------------------------------------- */

static void
map_reset(struct map *m)
{
	if (!m->cap) {
		m->cap = 1024;
		m->keys = calloc(m->cap, sizeof(*m->keys));
		m->vals = calloc(m->cap, sizeof(*m->vals));
		if (!m->keys || !m->vals) {
			perror("sim: calloc");
			exit(2);
		}
	} else if (m->n) {
		memset(m->keys, 0, m->cap * sizeof(*m->keys));
	}
	m->n = 0;
}

static size_t
map_slot(const struct map *m, uint64_t key)
{
	uint64_t h = key * 0x9e3779b97f4a7c15ULL;
	size_t i = (size_t)(h >> 20) & (m->cap - 1);

	while (m->keys[i] && m->keys[i] != key)
		i = (i + 1) & (m->cap - 1);
	return i;
}

static void map_put(struct map *m, uint64_t key, uint32_t val);

static void
map_grow(struct map *m)
{
	struct map old = *m;

	m->cap *= 2;
	m->n = 0;
	m->keys = calloc(m->cap, sizeof(*m->keys));
	m->vals = calloc(m->cap, sizeof(*m->vals));
	if (!m->keys || !m->vals) {
		perror("sim: calloc");
		exit(2);
	}
	for (size_t i = 0; i < old.cap; i++)
		if (old.keys[i])
			map_put(m, old.keys[i], old.vals[i]);
	free(old.keys);
	free(old.vals);
}

static void
map_put(struct map *m, uint64_t key, uint32_t val)
{
	size_t i;

	if (2 * (m->n + 1) > m->cap)
		map_grow(m);
	i = map_slot(m, key);
	if (!m->keys[i]) {
		m->keys[i] = key;
		m->n++;
	}
	m->vals[i] = val;
}

/* Returns true and the value when key is present. */
static bool
map_get(const struct map *m, uint64_t key, uint32_t *val)
{
	size_t i = map_slot(m, key);

	if (!m->keys[i])
		return false;
	*val = m->vals[i];
	return true;
}

/* ---- heap --------------------------------------------------------------- */

static bool
ev_before(const struct ev *a, const struct ev *b)
{
	return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static void
push(struct sim *s, uint64_t t, uint8_t kind, uint32_t a, uint32_t b, uint16_t c,
     uint8_t d)
{
	struct ev e = { .t = t, .seq = s->seq++, .a = a, .b = b, .c = c,
			.kind = kind, .d = d };
	size_t i;

	if (s->hn == s->hcap) {
		s->hcap = s->hcap ? 2 * s->hcap : 1024;
		s->heap = realloc(s->heap, s->hcap * sizeof(*s->heap));
		if (!s->heap) {
			perror("sim: realloc");
			exit(2);
		}
	}
	i = s->hn++;
	while (i > 0) {
		size_t up = (i - 1) / 2;

		if (!ev_before(&e, &s->heap[up]))
			break;
		s->heap[i] = s->heap[up];
		i = up;
	}
	s->heap[i] = e;
}

static struct ev
pop(struct sim *s)
{
	struct ev top = s->heap[0], last = s->heap[--s->hn];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= s->hn)
			break;
		if (c + 1 < s->hn && ev_before(&s->heap[c + 1], &s->heap[c]))
			c++;
		if (!ev_before(&s->heap[c], &last))
			break;
		s->heap[i] = s->heap[c];
		i = c;
	}
	if (s->hn)
		s->heap[i] = last;
	return top;
}

/* ---- message pool --------------------------------------------------------- */

static uint32_t
msg_alloc(struct sim *s)
{
	uint32_t i;

	if (s->pool_free == UINT32_MAX) {
		uint32_t old = s->pool_cap;

		s->pool_cap = old ? 2 * old : 1024;
		s->pool = realloc(s->pool, s->pool_cap * sizeof(*s->pool));
		if (!s->pool) {
			perror("sim: realloc");
			exit(2);
		}
		for (i = old; i < s->pool_cap; i++)
			s->pool[i].next_free = i + 1 < s->pool_cap ? i + 1 : UINT32_MAX;
		s->pool_free = old;
	}
	i = s->pool_free;
	s->pool_free = s->pool[i].next_free;
	return i;
}

static void
msg_free(struct sim *s, uint32_t i)
{
	s->pool[i].next_free = s->pool_free;
	s->pool_free = i;
}

/* ---- clocks ------------------------------------------------------------- */

static uint64_t
local_us(const struct speer *p, uint64_t real)
{
	int64_t dt = (int64_t)(real - p->c_real);

	return p->c_local + (uint64_t)(dt + dt * p->ppm / 1000000);
}

static uint64_t
local_ms(const struct speer *p, uint64_t real)
{
	return local_us(p, real) / 1000;
}

/* The first real µs >= now at which p's clock reads at least ms. */
static uint64_t
real_at_local(const struct speer *p, uint64_t now, uint64_t ms)
{
	uint64_t want = ms * 1000;
	int64_t dt;

	if (local_us(p, now) >= want)
		return now;
	dt = (int64_t)((want - p->c_local) * 1000000 / (uint64_t)(1000000 + p->ppm));
	while (local_us(p, p->c_real + (uint64_t)dt) < want)
		dt++;
	while (dt > 0 && local_us(p, p->c_real + (uint64_t)dt - 1) >= want)
		dt--;
	return p->c_real + (uint64_t)dt > now ? p->c_real + (uint64_t)dt : now;
}

static void
set_drift(struct speer *p, uint64_t now, int32_t ppm)
{
	p->c_local = local_us(p, now);
	p->c_real = now;
	p->ppm = ppm;
}

/* ---- names for the trace -------------------------------------------------- */

static const char *
role_name(int r)
{
	return wd_role_name((enum wd_role)r);
}

static void
fmt_msg(char *buf, size_t len, const struct wd_msg *m)
{
	switch (m->type) {
	case WD_MSG_HEARTBEAT:
		snprintf(buf, len, "heartbeat t%" PRIu64 " %s ldr=%u fl=%#x seq=%" PRIu64
			 " echo=%" PRIu64 "+%ums left=%u", m->term, role_name(m->role),
			 m->leader, m->flags, m->hb_seq, m->echo_seq, m->echo_delay_ms,
			 m->lease_left_ms);
		break;
	case WD_MSG_PREVOTE_RESP:
	case WD_MSG_VOTE_RESP:
		snprintf(buf, len, "%s t%" PRIu64 " %s", wd_msg_type_name(m->type),
			 m->term, m->granted ? "granted" : "refused");
		break;
	case WD_MSG_VOTE_REQ:
		snprintf(buf, len, "%s t%" PRIu64 "%s", wd_msg_type_name(m->type),
			 m->term, m->vote_flags & WD_VOTE_HANDOVER ? " handover" : "");
		break;
	default:
		snprintf(buf, len, "%s t%" PRIu64, wd_msg_type_name(m->type), m->term);
		break;
	}
}

/* ---- invariants -------------------------------------------------------- */

/* Invariant 3: one vote per peer and term, across restarts. */
static void
record_vote(struct sim *s, size_t i, uint64_t term, uint8_t cand, const char *how)
{
	uint64_t key = ((uint64_t)(i + 1) << 56) | (term & 0x00ffffffffffffffULL);
	uint32_t prev;

	if (map_get(&s->votes, key, &prev)) {
		if (prev != cand)
			violation(s, "inv3 double vote: peer %u voted for %u and then for %u "
				  "in term %" PRIu64 " (%s)", s->p[i].id, prev, cand, term, how);
		return;
	}
	map_put(&s->votes, key, cand);
}

/* Invariant 4: one coordinator per term. */
static void
record_leader(struct sim *s, size_t i, uint64_t term)
{
	uint32_t prev;

	if (map_get(&s->leaders, term + 1, &prev)) {
		if (prev != s->p[i].id)
			violation(s, "inv4 two coordinators in term %" PRIu64 ": %u and %u",
				  term, prev, s->p[i].id);
		return;
	}
	map_put(&s->leaders, term + 1, s->p[i].id);
}

static void
check_leases(struct sim *s)
{
	size_t holders = 0, h[MAXP];

	for (size_t i = 0; i < s->n; i++) {
		struct speer *p = &s->p[i];

		if (p->st != PS_DOWN && wd_has_lease(p->wd, local_ms(p, s->now)))
			h[holders++] = i;
	}
	if (holders >= 2) {
		struct speer *a = &s->p[h[0]], *b = &s->p[h[1]];

		violation(s, "inv1 two lease holders: peer %u (term %" PRIu64
			  ", %s, lease_end %" PRIu64 ", local now %" PRIu64 ") and peer %u (term %"
			  PRIu64 ", %s, lease_end %" PRIu64 ", local now %" PRIu64 ")",
			  a->id, wd_term(a->wd), a->st == PS_PAUSED ? "paused" : "running",
			  wd_lease_end(a->wd), local_ms(a, s->now), b->id, wd_term(b->wd),
			  b->st == PS_PAUSED ? "paused" : "running", wd_lease_end(b->wd),
			  local_ms(b, s->now));
		return;
	}
	if (!s->quiet)
		return;
	if (s->xfer_pending && holders == 1) {
		uint64_t us = s->now - s->xfer_at;

		if (h[0] != s->xfer_target) {
			violation(s, "transfer: peer %u holds the lease after a transfer to %u",
				  s->p[h[0]].id, s->p[s->xfer_target].id);
			return;
		}
		s->xfer_pending = false;
		s->st.xfer_quiet_done++;
		s->st.xfer_sum_us += us;
		if (us > s->st.xfer_max_us) {
			s->st.xfer_max_us = us;
			s->st.xfer_max_seed = s->seed;
		}
		trace(s, "quiet phase %u: transfer target %u holds the lease after %.3f ms",
		      s->phase, s->p[h[0]].id, (double)us / 1000.0);
	}
	if (!s->got_lease && holders == 1) {
		uint64_t ttc = (s->now - s->quiet_start) / 1000;
		double ratio = (double)ttc / (double)s->bound_ms;
		unsigned b = (unsigned)(ratio * 8);

		s->got_lease = true;
		s->st.quiet_measured++;
		s->st.ttc_sum_ms += ttc;
		if (ttc > s->st.ttc_max_ms) {
			s->st.ttc_max_ms = ttc;
			s->st.ttc_max_seed = s->seed;
		}
		if (ratio > s->st.ttc_max_ratio) {
			s->st.ttc_max_ratio = ratio;
			s->st.ttc_ratio_seed = s->seed;
		}
		s->st.ttc_hist[b < 7 ? b : 7]++;
		trace(s, "quiet phase %u: lease holder %u after %" PRIu64 " ms (bound %" PRIu64 ")",
		      s->phase, s->p[h[0]].id, ttc, s->bound_ms);
	}
	if (s->got_lease && !s->stable && holders == 1) {
		/* Settled: one holder, every live peer follows it in its term, none in tilt. */
		struct speer *hp = &s->p[h[0]];
		uint64_t term = wd_term(hp->wd);
		bool settled = true;

		for (size_t i = 0; i < s->n && settled; i++) {
			struct speer *p = &s->p[i];

			if (p->st == PS_DOWN) {
				struct wd_peer_status ps;

				/*
				 * Two-node mode: a lease outlives a dead partner only in
				 * fenced mode; a partner killed by a fence whose result
				 * the holder never saw (it restarted meanwhile) is just
				 * silent, and the lease runs out.
				 */
				if (s->mode == M_TWO_NODE &&
				    (wd_peer_status(hp->wd, p->id, local_ms(hp, s->now), &ps) < 0 ||
				     ps.state != WD_PEER_FENCED))
					settled = false;
				continue;
			}
			/* A peer not called since a stall will tilt on its next call. */
			if (local_ms(p, s->now) - p->last_local > p->cfg.tilt_ms)
				settled = false;
			if (wd_term(p->wd) != term || wd_in_tilt(p->wd, local_ms(p, s->now)) ||
			    (p != hp && (wd_role(p->wd) != WD_FOLLOWER ||
					 wd_leader(p->wd) != hp->id)))
				settled = false;
		}
		/* ... and a lease built on a heartbeat sent in this phase. */
		if (wd_lease_end(hp->wd) < local_ms(hp, s->quiet_start) + hp->cfg.lease_ms)
			settled = false;
		if (settled) {
			s->stable = true;
			s->stable_holder = hp->id;
			s->stable_term = term;
			s->settled_at = s->now;
			trace(s, "quiet phase %u: settled on %u term %" PRIu64, s->phase,
			      hp->id, term);
			/*
			 * Half the quiet phases hand the role over once settled, after
			 * every follower's heartbeat since settling reached the holder.
			 */
			if (!s->xfer_done_phase && rng_chance(&s->r_fault, 500000))
				push(s, s->now + (uint64_t)hp->cfg.heartbeat_ms * 1000 +
				     2 * s->qdelay_us + 2000 + rng_range(&s->r_fault, 0, 2000000),
				     EV_XFER, s->phase, 0, 0, 0);
		}
		return;
	}
	if (s->stable) {
		/* Stability (L2): a settled quiet cluster keeps its coordinator. */
		if (holders == 0)
			violation(s, "stability: coordinator %u (term %" PRIu64 ") lost its lease "
				  "in a quiet phase", s->stable_holder, s->stable_term);
		else if (s->p[h[0]].id != s->stable_holder ||
			 wd_term(s->p[h[0]].wd) != s->stable_term)
			violation(s, "stability: coordinator changed in a quiet phase: %u term %"
				  PRIu64 " -> %u term %" PRIu64, s->stable_holder, s->stable_term,
				  s->p[h[0]].id, wd_term(s->p[h[0]].wd));
	}
}

/* Invariant 2 and durable-before-visible, after each call into peer i. */
static void
check_peer(struct sim *s, size_t i)
{
	struct speer *p = &s->p[i];
	uint64_t term = wd_term(p->wd);
	struct wd_durable d = wd_durable_state(p->wd);

	if (term < p->term_seen)
		violation(s, "inv2 term decreased: peer %u from %" PRIu64 " to %" PRIu64,
			  p->id, p->term_seen, term);
	p->term_seen = term;
	if (d.term != p->disk.term || d.voted_for != p->disk.voted_for)
		violation(s, "inv2 durable state not persisted: peer %u holds term %" PRIu64
			  " vote %u, disk has term %" PRIu64 " vote %u", p->id, d.term,
			  d.voted_for, p->disk.term, p->disk.voted_for);
	if (wd_role(p->wd) == WD_LEADER)
		record_leader(s, i, term);
}

/* ---- network -------------------------------------------------------------- */

static uint64_t
net_delay(struct sim *s)
{
	if (s->quiet)
		return rng_range(&s->r_net, 100, s->qdelay_us);
	if (rng_chance(&s->r_net, s->spike_ppm))
		return rng_range(&s->r_net, QUIET_DELAY_MAX_US, SPIKE_DELAY_MAX_US);
	return rng_range(&s->r_net, 100, QUIET_DELAY_MAX_US);
}

static void
net_send(struct sim *s, size_t from, size_t to, const struct wd_msg *m)
{
	struct link *l = &s->link[from][to];
	int copies = 1;

	if (!l->up || rng_chance(&s->r_net, l->drop_ppm)) {
		s->st.drops++;
		return;
	}
	if (!s->quiet && rng_chance(&s->r_net, s->dup_ppm))
		copies = 2;
	for (int c = 0; c < copies; c++) {
		uint32_t slot = msg_alloc(s);

		memcpy(&s->pool[slot].m, m, offsetof(struct wd_msg, ext) + m->ext_len);
		s->pool[slot].inc = s->p[from].inc;
		push(s, s->now + net_delay(s), EV_DELIVER, slot, (uint32_t)from,
		     (uint16_t)to, 0);
	}
}

/* ---- peers ---------------------------------------------------------------- */

static void restart_later(struct sim *s, size_t i, uint64_t min_us, uint64_t max_us);

static void
arm_wake(struct sim *s, size_t i)
{
	struct speer *p = &s->p[i];
	uint64_t w = wd_next_wakeup(p->wd), lnow = local_ms(p, s->now);

	if (w == p->wake_local)
		return;
	if (w > lnow + 600000) {
		violation(s, "progress: peer %u next wakeup %" PRIu64 " ms ahead",
			  p->id, w - lnow);
		return;
	}
	p->wake_local = w;
	p->wake_gen++;
	push(s, real_at_local(p, s->now, w), EV_WAKE, (uint32_t)i, p->wake_gen, 0, 0);
}

/*
 * An echo to the coordinator we follow, while it leads our term, must name
 * a heartbeat we received from its current incarnation; otherwise it may
 * count the echo for a heartbeat of its own that never reached us. Noted (the first one is
 * shown with a violation), a violation itself with --strict-echo.
 */
static void
phantom_echo(struct sim *s, size_t i, size_t to, const struct wd_msg *m)
{
	s->st.phantom_echoes++;
	if (!s->phantom_at)
		s->phantom_at = s->now ? s->now : 1;
	trace(s, "  note: %u echoes seq %" PRIu64 " to %u, which it never received from "
	      "that incarnation (newest received: %" PRIu64 "%s)", s->p[i].id, m->echo_seq,
	      s->p[to].id, s->p[i].rx_seq[to],
	      s->p[i].rx_inc[to] != s->p[to].inc ? ", from an earlier incarnation" : "");
	if (s->o->strict_echo)
		violation(s, "echo of a heartbeat never received: peer %u echoes seq %" PRIu64
			  " to %u, newest received from its current incarnation %" PRIu64,
			  s->p[i].id, m->echo_seq, s->p[to].id,
			  s->p[i].rx_inc[to] == s->p[to].inc ? s->p[i].rx_seq[to] : 0);
}

/*
 * Two-node mode: a peer takes the role "after a clean stop" of the other
 * only if the other's newest incarnation it heard from really called
 * wd_stop. A transfer (or anything else) read as a stop would let it
 * renew a lease alone while the other still votes and stands.
 */
static void
check_stop_takeover(struct sim *s, size_t i, const char *reason)
{
	size_t o = 1 - i;
	uint32_t inc1 = s->p[i].rx_max_inc[o], v;

	if (s->mode != M_TWO_NODE || !reason || !strstr(reason, "stopped cleanly"))
		return;
	if (!inc1 || !map_get(&s->stops, ((uint64_t)(o + 1) << 56) | (inc1 - 1), &v))
		violation(s, "stop: peer %u takes the role after a clean stop of %u, whose "
			  "incarnation %u it heard from never stopped", s->p[i].id, s->p[o].id,
			  inc1 ? inc1 - 1 : 0);
}

static void
carry_out(struct sim *s, size_t i)
{
	struct speer *p = &s->p[i];
	const struct wd_effect *effs;
	size_t n = wd_effects(p->wd, &effs);
	char buf[200];

	for (size_t k = 0; k < n && !s->violated; k++) {
		const struct wd_effect *e = &effs[k];
		size_t to;

		switch (e->kind) {
		case WD_EFF_PERSIST:
			trace(s, "  %u persist term %" PRIu64 " vote %u", p->id,
			      e->durable.term, e->durable.voted_for);
			if (e->durable.term < p->disk.term)
				violation(s, "inv2 durable term decreased: peer %u from %" PRIu64
					  " to %" PRIu64, p->id, p->disk.term, e->durable.term);
			else if (e->durable.term == p->disk.term && p->disk.voted_for &&
				 e->durable.voted_for != p->disk.voted_for)
				violation(s, "inv3 durable vote overwritten: peer %u term %" PRIu64
					  " vote %u -> %u", p->id, e->durable.term,
					  p->disk.voted_for, e->durable.voted_for);
			if (e->durable.voted_for)
				record_vote(s, i, e->durable.term, e->durable.voted_for, "persist");
			p->disk = e->durable;
			break;
		case WD_EFF_SEND:
			to = s->idx_of[e->to];
			if (to == 0xff || to == i) {
				violation(s, "send: peer %u sends to %s id %u", p->id,
					  to == i ? "its own" : "unknown", e->to);
				break;
			}
			if (e->msg.type < 1 || e->msg.type > WD_MSG_TYPE_MAX ||
			    e->msg.ext_len > WD_EXT_MAX) {
				violation(s, "send: peer %u malformed message type %u ext_len %u",
					  p->id, e->msg.type, e->msg.ext_len);
				break;
			}
			if (s->tracing) {
				fmt_msg(buf, sizeof(buf), &e->msg);
				trace(s, "  %u send %s -> %u", p->id, buf, e->to);
			}
			/* S5: a term is durable before a message shows it. */
			if (e->msg.type != WD_MSG_PREVOTE_REQ &&
			    e->msg.type != WD_MSG_PREVOTE_RESP && e->msg.term > p->disk.term)
				violation(s, "S5 term sent before durable: peer %u sends %s in term %"
					  PRIu64 ", disk has term %" PRIu64, p->id,
					  wd_msg_type_name(e->msg.type), e->msg.term, p->disk.term);
			if (e->msg.type == WD_MSG_VOTE_RESP && e->msg.granted) {
				if (p->disk.term != e->msg.term || p->disk.voted_for != e->to)
					violation(s, "inv3 vote sent before durable: peer %u grants %u "
						  "term %" PRIu64 ", disk has term %" PRIu64 " vote %u",
						  p->id, e->to, e->msg.term, p->disk.term,
						  p->disk.voted_for);
				record_vote(s, i, e->msg.term, e->to, "vote-response");
			}
			if (e->msg.type == WD_MSG_HEARTBEAT && e->msg.echo_seq &&
			    e->msg.leader == e->to && s->p[to].st != PS_DOWN &&
			    wd_role(s->p[to].wd) == WD_LEADER &&
			    wd_term(s->p[to].wd) == e->msg.term &&
			    (p->rx_inc[to] != s->p[to].inc || e->msg.echo_seq > p->rx_seq[to]))
				phantom_echo(s, i, to, &e->msg);
			net_send(s, i, to, &e->msg);
			break;
		case WD_EFF_FENCE:
			to = s->idx_of[e->target];
			trace(s, "  %u FENCE %u (%s)", p->id, e->target,
			      e->reason ? e->reason : "");
			if (s->mode != M_TWO_NODE || to == 0xff || to == i) {
				violation(s, "fence: peer %u fences %u outside two-node mode",
					  p->id, e->target);
				break;
			}
			/* Both up and talking since the transfer: nobody is silent. */
			if (s->quiet && s->xfer_done_phase) {
				violation(s, "transfer: peer %u fences %u in a quiet phase after a "
					  "transfer", p->id, e->target);
				break;
			}
			push(s, s->now + rng_range(&s->r_fence, 10000, FENCE_HOOK_MAX_US), EV_FENCE_DONE,
			     (uint32_t)i, p->inc, (uint16_t)to,
			     rng_chance(&s->r_fence, s->fence_ok_ppm));
			break;
		case WD_EFF_ROLE:
			trace(s, "  %u ROLE %s term %" PRIu64 " leader %u (%s)", p->id,
			      wd_role_name(e->role), e->term, e->leader,
			      e->reason ? e->reason : "");
			if (e->role == WD_CANDIDATE)
				s->st.elections++;
			else if (e->role == WD_LEADER) {
				s->st.won++;
				record_leader(s, i, e->term);
				check_stop_takeover(s, i, e->reason);
			}
			break;
		default:
			violation(s, "effect: peer %u queued unknown effect kind %d", p->id,
				  (int)e->kind);
			break;
		}
	}
}

/* Everything after a call into peer i: effects, invariants, next timer. */
static void
after_call(struct sim *s, size_t i)
{
	struct speer *p = &s->p[i];
	uint64_t l = local_ms(p, s->now);

	s->st.events++;
	carry_out(s, i);
	if (s->violated)
		return;
	/* elect.h: a gap between two calls longer than tilt_ms is a stall. */
	if (p->last_local && l - p->last_local > p->cfg.tilt_ms && p->cfg.tilt_hold_ms &&
	    !wd_in_tilt(p->wd, l))
		violation(s, "tilt: peer %u was not called for %" PRIu64 " ms (tilt_ms %u) "
			  "and is not in tilt after the call", p->id, l - p->last_local,
			  p->cfg.tilt_ms);
	p->last_local = l;
	if (s->violated)
		return;
	check_peer(s, i);
	if (s->violated)
		return;
	check_leases(s);
	if (s->violated)
		return;
	arm_wake(s, i);
}

static void
deliver(struct sim *s, size_t to, size_t from, uint32_t slot)
{
	struct speer *p = &s->p[to];
	const struct wd_msg *m = &s->pool[slot].m;

	if (s->tracing) {
		char buf[200];

		fmt_msg(buf, sizeof(buf), m);
		trace(s, "%u <- %u %s (local %" PRIu64 ")", p->id, s->p[from].id, buf,
		      local_ms(p, s->now));
	}
	s->st.deliveries++;
	if (s->pool[slot].inc + 1 > p->rx_max_inc[from])
		p->rx_max_inc[from] = s->pool[slot].inc + 1;
	if (m->type == WD_MSG_HEARTBEAT) {
		uint32_t inc = s->pool[slot].inc;

		if (inc != p->rx_inc[from] || m->hb_seq > p->rx_seq[from]) {
			p->rx_inc[from] = inc;
			p->rx_seq[from] = m->hb_seq;
		}
	}
	/* As the wire layer does: the sender's boot, growing with each start. */
	s->pool[slot].m.sender_boot = (uint64_t)s->pool[slot].inc + 1;
	wd_receive(p->wd, local_ms(p, s->now), s->p[from].id, &s->pool[slot].m);
	msg_free(s, slot);
	after_call(s, to);
}

static void
fence_result(struct sim *s, size_t i, size_t target, bool ok)
{
	struct speer *p = &s->p[i];

	trace(s, "%u fence of %u done: %s", p->id, s->p[target].id, ok ? "ok" : "FAILED");
	wd_fence_done(p->wd, local_ms(p, s->now), s->p[target].id, ok);
	after_call(s, i);
}

static void
tick(struct sim *s, size_t i)
{
	struct speer *p = &s->p[i];
	uint64_t l = local_ms(p, s->now);

	trace(s, "%u tick (local %" PRIu64 ", %s t%" PRIu64 ")", p->id, l,
	      wd_role_name(wd_role(p->wd)), wd_term(p->wd));
	p->wake_local = UINT64_MAX;
	wd_tick(p->wd, l);
	after_call(s, i);
	if (!s->violated && p->wake_local != UINT64_MAX && p->wake_local <= l) {
		if (++p->same_wake > 1000)
			violation(s, "progress: peer %u wakeup stays at %" PRIu64 " after wd_tick",
				  p->id, p->wake_local);
	} else {
		p->same_wake = 0;
	}
}

static void
pq_drop_all(struct sim *s, struct speer *p)
{
	while (p->pq_len) {
		struct pin *in = &p->pq[p->pq_head];

		if (in->slot != UINT32_MAX)
			msg_free(s, in->slot);
		p->pq_head = (p->pq_head + 1) % PQ_CAP;
		p->pq_len--;
	}
}

static void
crash(struct sim *s, size_t i, const char *why)
{
	struct speer *p = &s->p[i];

	if (p->st == PS_DOWN)
		return;
	trace(s, "%u CRASH (%s) term %" PRIu64 " %s", p->id, why, wd_term(p->wd),
	      wd_role_name(wd_role(p->wd)));
	wd_free(p->wd);
	p->wd = NULL;
	p->st = PS_DOWN;
	p->down_at = s->now;
	p->lingering = false;
	p->inc++;
	p->wake_gen++;
	p->wake_local = UINT64_MAX;
	pq_drop_all(s, p);
}

/* New extension bytes for peer i: mostly short, sometimes up to WD_EXT_MAX. */
static void
random_ext(struct sim *s, size_t i)
{
	struct speer *p = &s->p[i];
	uint8_t ext[WD_EXT_MAX];
	uint16_t elen = (uint16_t)rng_range(&s->r_fault, 0, rng_chance(&s->r_fault, 300000)
					    ? WD_EXT_MAX : 64);
	uint8_t salt = (uint8_t)rng_next(&s->r_fault);

	for (uint16_t k = 0; k < elen; k++)
		ext[k] = (uint8_t)(k * 7 + p->id + salt);
	if (wd_set_ext(p->wd, ext, elen) != 0)
		violation(s, "ext: wd_set_ext refused %u bytes", elen);
}

static void
boot(struct sim *s, size_t i)
{
	struct speer *p = &s->p[i];
	uint64_t l;

	if (p->st != PS_DOWN)
		return;
	/* A fenced host was power-cycled; some restarts are reboots too: the
	 * boot clock starts again near zero. */
	if (p->boots && (p->fenced || rng_chance(&s->r_fault, 300000))) {
		p->c_real = s->now;
		p->c_local = rng_range(&s->r_fault, 5000, 60000) * 1000;
	}
	l = local_ms(p, s->now);
	p->wd = wd_new(&p->cfg, &p->disk, l,
		       splitmix64(&(uint64_t){ s->seed ^ ((uint64_t)i << 40) ^ p->boots }));
	if (!p->wd) {
		fprintf(stderr, "sim: wd_new failed\n");
		exit(2);
	}
	p->boots++;
	p->booted_at = s->now;
	p->fenced = false;
	p->last_local = l;
	memset(p->rx_seq, 0, sizeof(p->rx_seq));
	memset(p->rx_inc, 0xff, sizeof(p->rx_inc));
	memset(p->rx_max_inc, 0, sizeof(p->rx_max_inc));
	p->st = PS_UP;
	p->wake_local = UINT64_MAX;
	p->same_wake = 0;
	random_ext(s, i);
	s->st.restarts++;
	trace(s, "%u START local %" PRIu64 " disk term %" PRIu64 " vote %u", p->id, l,
	      p->disk.term, p->disk.voted_for);
	if (wd_term(p->wd) < p->disk.term)
		violation(s, "inv2 term decreased at restart: peer %u disk term %" PRIu64
			  ", restarted with %" PRIu64, p->id, p->disk.term, wd_term(p->wd));
	if (p->term_seen < wd_term(p->wd))
		p->term_seen = wd_term(p->wd);
	/*
	 * A peer that comes back with a term above the settled coordinator's
	 * (reached while they could not talk: in two-node mode each may take
	 * a term by fencing) makes the coordinator adopt it and step down:
	 * terms only grow. The cluster is no longer settled; the liveness
	 * bound applies again from here.
	 */
	if (s->stable && p->disk.term > s->stable_term) {
		trace(s, "quiet phase %u: %u returns with term %" PRIu64 " above the settled %"
		      PRIu64 "; waiting for a coordinator again", s->phase, p->id,
		      p->disk.term, s->stable_term);
		s->stable = false;
		s->got_lease = false;
		s->quiet_start = s->now;
	}
	after_call(s, i);
}

static void
pause_peer(struct sim *s, size_t i, uint64_t us)
{
	struct speer *p = &s->p[i];

	if (p->st != PS_UP)
		return;
	p->st = PS_PAUSED;
	p->pause_gen++;
	s->st.pauses++;
	trace(s, "%u PAUSE for %" PRIu64 " ms (%s t%" PRIu64 ")", p->id, us / 1000,
	      wd_role_name(wd_role(p->wd)), wd_term(p->wd));
	push(s, s->now + us, EV_RESUME, (uint32_t)i, p->pause_gen, 0, 0);
}

static void
resume(struct sim *s, size_t i)
{
	struct speer *p = &s->p[i];
	bool ticked = false;

	if (p->st != PS_PAUSED)
		return;
	p->st = PS_UP;
	trace(s, "%u RESUME (%u queued inputs)", p->id, p->pq_len);
	if (s->tick_first && wd_next_wakeup(p->wd) <= local_ms(p, s->now)) {
		tick(s, i);
		ticked = true;
	}
	while (p->pq_len && !s->violated && p->st == PS_UP) {
		struct pin in = p->pq[p->pq_head];

		p->pq_head = (p->pq_head + 1) % PQ_CAP;
		p->pq_len--;
		if (in.slot == UINT32_MAX)
			fence_result(s, i, in.target, in.ok);
		else
			deliver(s, i, in.from, in.slot);
	}
	if (s->violated || p->st != PS_UP)
		return;
	if (!ticked && wd_next_wakeup(p->wd) <= local_ms(p, s->now))
		tick(s, i);
	else {
		p->wake_local = UINT64_MAX;
		arm_wake(s, i);
	}
}

static bool
pq_push(struct speer *p, struct pin in)
{
	if (p->pq_len >= (in.slot == UINT32_MAX ? PQ_CAP : PQ_MSG_CAP))
		return false;
	p->pq[(p->pq_head + p->pq_len) % PQ_CAP] = in;
	p->pq_len++;
	return true;
}

static void
restart_later(struct sim *s, size_t i, uint64_t min_us, uint64_t max_us)
{
	struct speer *p = &s->p[i];

	p->restart_gen++;
	push(s, s->now + rng_range(&s->r_fault, min_us, max_us), EV_RESTART,
	     (uint32_t)i, p->restart_gen, 0, 0);
}

/* ---- configuration ------------------------------------------------------- */

static uint32_t
rr(struct rng *r, uint32_t lo, uint32_t hi)
{
	return (uint32_t)rng_range(r, lo, hi);
}

static void
random_timings(struct sim *s, struct wd_config *c)
{
	struct rng *r = &s->r_cfg;
	uint32_t hb, emin, lease_max;

	if (rng_chance(r, 300000)) {
		c->heartbeat_ms = 100;
		c->election_min_ms = 700;
		c->election_max_ms = 1100;
		c->lease_ms = 500;
		c->tilt_ms = 300;
		c->tilt_hold_ms = 1000;
		c->fence_delay_ms = 500;
		c->fence_retry_ms = 1000;
		return;
	}
	hb = rr(r, 10, 300);
	emin = hb * rr(r, 3, 12) + rr(r, 0, hb);
	c->heartbeat_ms = hb;
	c->election_min_ms = emin;
	c->election_max_ms = emin + rr(r, 1, 8 * hb);
	/* lease * (100 + DRIFT_PCT) < emin * (100 - DRIFT_PCT), often at the edge */
	lease_max = (uint32_t)(((uint64_t)emin * (100 - DRIFT_PCT) - 1) / (100 + DRIFT_PCT));
	c->lease_ms = rng_chance(r, 300000) ? lease_max : rr(r, 2 * hb, lease_max);
	c->tilt_ms = rr(r, hb + 1, emin - 1);
	c->tilt_hold_ms = rr(r, 0, 3 * c->election_max_ms);
	c->fence_delay_ms = rr(r, 0, 2 * c->election_max_ms);
	c->fence_retry_ms = rr(r, hb, 3000);
}

static void
make_config(struct sim *s)
{
	struct rng *r = &s->r_cfg;
	struct wd_config c;
	char err[256];
	int tries;

	memset(&c, 0, sizeof(c));
	s->mode = s->o->mode >= 0 ? s->o->mode : (int)rng_range(r, 0, M_COUNT - 1);
	s->n = s->mode == M_FIVE ? 5 : s->mode == M_THREE || s->mode == M_WITNESS ? 3 : 2;
	c.npeers = s->n;
	c.two_node = s->mode == M_TWO_NODE;
	memset(s->idx_of, 0xff, sizeof(s->idx_of));
	for (size_t i = 0; i < s->n; i++) {
		uint8_t id;

		do
			id = (uint8_t)rng_range(r, 1, 255);
		while (s->idx_of[id] != 0xff);
		s->idx_of[id] = (uint8_t)i;
		c.peers[i].id = id;
		c.peers[i].priority = (uint8_t)rng_range(r, 1, 3);
		c.peers[i].witness = false;
	}
	if (s->mode == M_WITNESS)
		c.peers[2].witness = true;
	if (s->mode == M_FIVE && rng_chance(r, 300000))
		c.peers[4].priority = 0;
	for (tries = 0; tries < 100; tries++) {
		random_timings(s, &c);
		c.self = c.peers[0].id;
		if (wd_check_config(&c, DRIFT_PCT, err, sizeof(err)) == 0)
			break;
	}
	if (tries == 100) {
		fprintf(stderr, "sim: seed %" PRIu64 ": no accepted timings (%s)\n", s->seed, err);
		exit(2);
	}
	for (size_t i = 0; i < s->n; i++) {
		struct speer *p = &s->p[i];

		p->cfg = c;
		p->cfg.self = c.peers[i].id;
		p->id = c.peers[i].id;
		p->eligible = c.peers[i].priority > 0 && !c.peers[i].witness;
		if (wd_check_config(&p->cfg, DRIFT_PCT, err, sizeof(err)) != 0) {
			fprintf(stderr, "sim: seed %" PRIu64 ": peer %u config refused: %s\n",
				s->seed, p->id, err);
			exit(2);
		}
	}
	/*
	 * Liveness bound (README): every peer may vote and stand after tilt
	 * hold or boot hold, a full election timeout, then SPLIT_RETRIES more
	 * rounds for split or refused votes, each an election timeout plus two
	 * round trips, scaled by the drift; then pre-vote, vote and the first
	 * echo (three round trips) and one heartbeat interval.
	 */
	uint64_t d;

	/*
	 * Quiet phases need a network in which the lease can be renewed
	 * without a gap: an echo must be back before the lease of the
	 * previous heartbeat ends, lease > heartbeat + 2 * delay.
	 */
	s->qdelay_us = QUIET_DELAY_MAX_US;
	if ((c.lease_ms - c.heartbeat_ms - 2) * 1000 / 2 < s->qdelay_us)
		s->qdelay_us = (c.lease_ms - c.heartbeat_ms - 2) * 1000 / 2;
	d = (s->qdelay_us + 999) / 1000;
	uint64_t hold = c.tilt_hold_ms > c.election_min_ms ? c.tilt_hold_ms : c.election_min_ms;
	uint64_t local = hold + c.election_max_ms +
			 SPLIT_RETRIES * (c.election_max_ms + 4 * d);

	/*
	 * Two-node mode: a fence hook that was running when the phase began
	 * may still kill a peer (the phase then starts again from the kill),
	 * and the survivor may have to wait fence_delay and run its own.
	 */
	if (c.two_node)
		local += c.fence_delay_ms + c.election_max_ms;
	s->bound_ms = local * (100 + 1) / 100 + 1 + 6 * d + c.heartbeat_ms +
		      (c.two_node ? FENCE_HOOK_MAX_US / 1000 : 0);
	if (s->bound_ms > s->st.bound_max_ms)
		s->st.bound_max_ms = s->bound_ms;
}

/* ---- faults and phases -------------------------------------------------- */

/*
 * Peer i, if coordinator, hands its role to target (any id: a down,
 * ineligible, unknown peer or itself must leave it unchanged). Returns
 * whether the role was handed over.
 */
static bool
do_transfer(struct sim *s, size_t i, uint8_t target)
{
	struct speer *p = &s->p[i];
	uint64_t before = wd_counters(p->wd)->transfers;
	bool was = wd_role(p->wd) == WD_LEADER, made;

	trace(s, "%u TRANSFER to %u (%s t%" PRIu64 ")", p->id, target,
	      wd_role_name(wd_role(p->wd)), wd_term(p->wd));
	s->st.transfers++;
	wd_transfer(p->wd, local_ms(p, s->now), target, "sim");
	made = wd_counters(p->wd)->transfers != before;
	if (made && (!was || wd_role(p->wd) == WD_LEADER ||
		     wd_has_lease(p->wd, local_ms(p, s->now))))
		violation(s, "transfer: peer %u counted a transfer but is still coordinator "
			  "or was not one", p->id);
	if (!made && was && wd_role(p->wd) == WD_LEADER) {
		const struct wd_effect *e;

		if (wd_effects(p->wd, &e) != 0)
			violation(s, "transfer: peer %u refused a transfer to %u but queued "
				  "effects", p->id, target);
	}
	s->st.transfers_made += made;
	after_call(s, i);
	return made;
}

/* A burst of wd_flush calls on peer i over the next two heartbeats. */
static void
flush_burst(struct sim *s, size_t i)
{
	struct speer *p = &s->p[i];
	uint64_t k = rng_range(&s->r_fault, 1, FLUSH_BURST_MAX);

	if (p->st != PS_UP)
		return;
	if (rng_chance(&s->r_fault, 500000))
		random_ext(s, i);
	for (uint64_t n = 0; n < k; n++)
		push(s, s->now + rng_range(&s->r_fault, 0, 2000 * (uint64_t)p->cfg.heartbeat_ms),
		     EV_FLUSH, (uint32_t)i, p->inc, 0, 0);
}

static size_t
pick_peer(struct sim *s, int state)
{
	size_t c[MAXP], n = 0;

	for (size_t i = 0; i < s->n; i++)
		if (state < 0 || (int)s->p[i].st == state)
			c[n++] = i;
	return n ? c[rng_range(&s->r_fault, 0, n - 1)] : SIZE_MAX;
}

static void
heal(struct sim *s)
{
	for (size_t a = 0; a < s->n; a++)
		for (size_t b = 0; b < s->n; b++) {
			s->link[a][b].up = true;
			s->link[a][b].drop_ppm = 0;
		}
	s->dup_ppm = 0;
	s->spike_ppm = 0;
}

static void
do_fault(struct sim *s)
{
	struct rng *r = &s->r_fault;
	uint64_t total = 0, x;
	int f;
	size_t i, j;

	for (f = 0; f < F_COUNT; f++)
		total += s->fault_w[f];
	if (!total)
		return;
	x = rng_range(r, 0, total - 1);
	for (f = 0; f < F_COUNT - 1 && x >= s->fault_w[f]; f++)
		x -= s->fault_w[f];
	switch (f) {
	case F_CRASH:
		if ((i = pick_peer(s, -1)) == SIZE_MAX || s->p[i].st == PS_DOWN)
			break;
		s->st.crashes++;
		crash(s, i, "fault");
		/* Often a supervisor restarts it at once (within a lease or two). */
		if (rng_chance(r, 400000))
			restart_later(s, i, 1000, 2000 * (uint64_t)s->p[i].cfg.lease_ms);
		else if (rng_chance(r, 700000))
			restart_later(s, i, 50000, 8000000);
		break;
	case F_STOP:
		if ((i = pick_peer(s, PS_UP)) == SIZE_MAX)
			break;
		s->st.stops++;
		trace(s, "%u STOP", s->p[i].id);
		map_put(&s->stops, ((uint64_t)(i + 1) << 56) | s->p[i].inc, 1);
		wd_stop(s->p[i].wd, local_ms(&s->p[i], s->now));
		after_call(s, i);
		/* The daemon lingers a little (its last datagrams, a vote for its
		 * successor), then exits; a supervisor starts it again later. */
		s->p[i].lingering = true;
		push(s, s->now + rng_range(r, 0, 300000), EV_EXIT, (uint32_t)i, s->p[i].inc,
		     0, 0);
		break;
	case F_PAUSE:
		if ((i = pick_peer(s, PS_UP)) == SIZE_MAX)
			break;
		if (rng_chance(r, 700000))
			x = rng_range(r, 10, 3 * s->p[i].cfg.lease_ms);
		else
			x = rng_range(r, s->p[i].cfg.lease_ms, 5 * s->p[i].cfg.election_max_ms);
		pause_peer(s, i, x * 1000);
		break;
	case F_SPLIT: {
		bool side[MAXP];

		for (i = 0; i < s->n; i++)
			side[i] = rng_chance(r, 500000);
		for (i = 0; i < s->n; i++)
			for (j = 0; j < s->n; j++)
				if (side[i] != side[j])
					s->link[i][j].up = false;
		trace(s, "PARTITION split");
		break;
	}
	case F_BRIDGE: {
		/*
		 * Jepsen's bridge: two sides that cannot talk to each other and
		 * one peer that still talks to both.
		 */
		size_t b = pick_peer(s, -1);
		bool side[MAXP];

		for (i = 0; i < s->n; i++)
			side[i] = rng_chance(r, 500000);
		for (i = 0; i < s->n; i++)
			for (j = 0; j < s->n; j++)
				if (i != b && j != b && side[i] != side[j])
					s->link[i][j].up = false;
		trace(s, "PARTITION bridge through %u", s->p[b].id);
		break;
	}
	case F_ISOLATE:
		i = pick_peer(s, -1);
		for (j = 0; j < s->n; j++) {
			s->link[i][j].up = false;
			s->link[j][i].up = false;
		}
		trace(s, "PARTITION isolate %u", s->p[i].id);
		break;
	case F_ONEWAY:
		i = pick_peer(s, -1);
		j = pick_peer(s, -1);
		if (i == j)
			break;
		s->link[i][j].up = false;
		trace(s, "PARTITION one-way %u -> %u down", s->p[i].id, s->p[j].id);
		break;
	case F_LOSSY:
		x = rng_range(r, 0, 500000);
		for (i = 0; i < s->n; i++)
			for (j = 0; j < s->n; j++)
				s->link[i][j].drop_ppm = rng_chance(r, 500000) ? (uint32_t)x : 0;
		trace(s, "NET loss up to %.1f%%", (double)x / 10000.0);
		break;
	case F_SPIKES:
		s->spike_ppm = (uint32_t)rng_range(r, 0, 300000);
		trace(s, "NET delay spikes %.1f%%", (double)s->spike_ppm / 10000.0);
		break;
	case F_DUP:
		s->dup_ppm = s->o->no_dup ? 0 : (uint32_t)rng_range(r, 0, 200000);
		trace(s, "NET duplication %.1f%%", (double)s->dup_ppm / 10000.0);
		break;
	case F_HEAL:
		heal(s);
		trace(s, "NET heal");
		break;
	case F_DRIFT:
		i = pick_peer(s, -1);
		set_drift(&s->p[i], s->now, (int32_t)rng_range(r, 0, 2 * DRIFT_PPM_MAX) -
						 DRIFT_PPM_MAX);
		trace(s, "%u DRIFT %+d ppm", s->p[i].id, s->p[i].ppm);
		if (s->p[i].st == PS_UP) {
			s->p[i].wake_local = UINT64_MAX;
			arm_wake(s, i);
		}
		break;
	case F_RESTART:
		if ((i = pick_peer(s, PS_DOWN)) != SIZE_MAX)
			boot(s, i);
		break;
	case F_TRANSFER: {
		size_t c[MAXP], nl = 0;
		uint8_t target;

		for (i = 0; i < s->n; i++)
			if (s->p[i].st == PS_UP && wd_role(s->p[i].wd) == WD_LEADER)
				c[nl++] = i;
		if (!nl)
			break;
		i = c[rng_range(r, 0, nl - 1)];
		/* Mostly a configured peer (itself included), sometimes any id. */
		if (rng_chance(r, 100000))
			target = (uint8_t)rng_range(r, 0, 255);
		else
			target = s->p[rng_range(r, 0, s->n - 1)].id;
		do_transfer(s, i, target);
		break;
	}
	case F_FLUSH:
		if ((i = pick_peer(s, PS_UP)) != SIZE_MAX)
			flush_burst(s, i);
		break;
	default:
		break;
	}
}

static void start_quiet(struct sim *s);

static void
start_faults(struct sim *s)
{
	uint64_t len = rng_range(&s->r_fault, 500000, 15000000);
	uint64_t k = rng_range(&s->r_fault, 1, 10);

	s->quiet = false;
	s->got_lease = s->stable = false;
	s->xfer_pending = s->xfer_done_phase = false;
	s->phase++;
	trace(s, "PHASE %u: faults for %" PRIu64 " ms, %" PRIu64 " faults", s->phase,
	      len / 1000, k);
	for (uint64_t n = 0; n < k; n++)
		push(s, s->now + rng_range(&s->r_fault, 0, len - 1), EV_FAULT, 0, 0, 0, 0);
	push(s, s->now + len, EV_PHASE, s->phase, 0, 0, 0);
}

static void
quiet_reset(struct sim *s)
{
	s->quiet_start = s->now;
	s->st.quiet_phases++;
	s->got_lease = false;
	s->stable = false;
	s->xfer_pending = s->xfer_done_phase = false;
	push(s, s->now + s->bound_ms * 1000, EV_DEADLINE, s->phase, 0, 0, 0);
}

static void
start_quiet(struct sim *s)
{
	size_t down = 0, leave, eligible_up = 0;

	s->quiet = true;
	s->phase++;
	heal(s);
	quiet_reset(s);
	for (size_t i = 0; i < s->n; i++) {
		s->p[i].restart_gen++;	/* a quiet phase has no restarts of its own */
		if (s->p[i].st == PS_PAUSED)
			resume(s, i);
		if (s->p[i].lingering)
			crash(s, i, "stopped");	/* and restarted below */
		if (s->violated)
			return;
	}
	/* Restart the crashed, except sometimes a minority (not in two-node mode). */
	for (size_t i = 0; i < s->n; i++)
		down += s->p[i].st == PS_DOWN;
	leave = 0;
	if (s->mode == M_THREE || s->mode == M_FIVE)
		if (rng_chance(&s->r_fault, 300000))
			leave = (s->n - 1) / 2;
	for (size_t i = 0; i < s->n && !s->violated; i++) {
		if (s->p[i].st != PS_DOWN)
			continue;
		if (leave && down > 0) {
			leave--;
			down--;
			continue;
		}
		boot(s, i);
	}
	for (size_t i = 0; i < s->n; i++)
		eligible_up += s->p[i].st != PS_DOWN && s->p[i].eligible;
	for (size_t i = 0; i < s->n && !eligible_up && !s->violated; i++)
		if (s->p[i].st == PS_DOWN && s->p[i].eligible) {
			boot(s, i);
			eligible_up++;
		}
	trace(s, "PHASE %u: quiet for at least %" PRIu64 " ms", s->phase, s->bound_ms);
	/* Flushes are not faults: a settled cluster must not notice them. */
	if (rng_chance(&s->r_fault, 500000))
		for (uint64_t k = rng_range(&s->r_fault, 1, 4); k > 0; k--) {
			size_t i = pick_peer(s, PS_UP);

			if (i != SIZE_MAX)
				push(s, s->now + rng_range(&s->r_fault, 0, s->bound_ms * 1000),
				     EV_FLUSH, (uint32_t)i, s->p[i].inc, 1, 0);
		}
	push(s, s->now + (s->bound_ms + rng_range(&s->r_fault, 1000, 5000)) * 1000,
	     EV_PHASE, s->phase, 0, 0, 0);
}

/*
 * A quiet phase has settled: the holder hands its role to a random peer.
 * An eligible peer that was up when the phase settled (and so follows the
 * holder) must be accepted; one that started since (a fenced peer
 * rebooting) may be accepted once the holder has heard it follow. An
 * accepted target must get the role, with a lease, within a few one-way
 * delays: the handover, the vote request (granted at the latest when the
 * yield notice, sent first, arrives), the answer, the first heartbeat and
 * its echo; and nobody may be fenced for it. Any other target (itself,
 * down, not eligible) must leave everything as it was.
 */
static void
planned_transfer(struct sim *s)
{
	size_t h = s->idx_of[s->stable_holder], c[MAXP], n = 0, t;
	uint8_t target;

	if (h == 0xff || s->p[h].st != PS_UP)
		return;
	for (size_t i = 0; i < s->n; i++)
		if (i != h && s->p[i].eligible && s->p[i].st == PS_UP)
			c[n++] = i;
	if (n && rng_chance(&s->r_fault, 850000))
		t = c[rng_range(&s->r_fault, 0, n - 1)];
	else
		t = rng_range(&s->r_fault, 0, s->n - 1);
	target = s->p[t].id;
	bool good = t != h && s->p[t].eligible && s->p[t].st == PS_UP;
	/*
	 * Required once the holder's view of the target is fresh: a heartbeat
	 * of the fault phase delayed by a spike (reordered) may still arrive
	 * up to SPIKE_DELAY_MAX_US into the phase and show an older term or
	 * role, after which the holder hears the target's current state within
	 * a heartbeat interval and a round trip.
	 */
	uint64_t fresh = (s->settled_at > s->quiet_start + SPIKE_DELAY_MAX_US
			  ? s->settled_at : s->quiet_start + SPIKE_DELAY_MAX_US) +
			 (uint64_t)s->p[h].cfg.heartbeat_ms * 1000 + 2 * s->qdelay_us + 2000;
	bool required = good && s->p[t].booted_at < s->settled_at && s->now >= fresh;

	/* The holder gives its lease up on purpose: not a stability failure. */
	s->stable = false;
	if (!do_transfer(s, h, target)) {
		s->stable = true;
		if (required && !s->violated)
			violation(s, "transfer: settled coordinator %u refused to hand over to "
				  "%u, an eligible follower that is up", s->p[h].id, target);
		return;
	}
	s->st.xfer_quiet++;
	/*
	 * A peer that went down less than election_min ago (on the holder's
	 * clock, from its last datagram, which a spike may have delayed) still
	 * counts as up: the holder cannot know. The handover is then lost like
	 * a coordinator, and the liveness bound applies again from here.
	 */
	if (t != h && s->p[t].eligible && s->p[t].st == PS_DOWN &&
	    s->now < s->p[t].down_at + SPIKE_DELAY_MAX_US +
		     (uint64_t)s->p[h].cfg.election_min_ms * 1000 * (100 + 1) / 100 + 1000) {
		trace(s, "quiet phase %u: handed over to %u, down since %.3f ms; waiting for "
		      "a coordinator again", s->phase, target, (double)s->p[t].down_at / 1000.0);
		quiet_reset(s);
		return;
	}
	if (!good) {
		if (!s->violated)
			violation(s, "transfer: coordinator %u handed over to %u, which is %s",
				  s->p[h].id, target, t == h ? "itself" : !s->p[t].eligible
				  ? "not eligible" : "down");
		return;
	}
	s->xfer_pending = true;
	s->xfer_done_phase = true;
	s->xfer_target = t;
	s->xfer_at = s->now;
	s->xfer_n++;
	s->xfer_bound_us = 6 * s->qdelay_us + 2000;
	if (s->xfer_bound_us > s->st.xfer_bound_max_us)
		s->st.xfer_bound_max_us = s->xfer_bound_us;
	push(s, s->now + s->xfer_bound_us, EV_XFER_DEADLINE, s->phase, s->xfer_n, 0, 0);
}

/* ---- one schedule ------------------------------------------------------ */

static void
sim_reset(struct sim *s, uint64_t seed)
{
	struct rng *r;

	s->seed = seed;
	rng_seed(&s->r_cfg, seed, 1);
	rng_seed(&s->r_net, seed, 2);
	rng_seed(&s->r_fault, seed, 3);
	rng_seed(&s->r_fence, seed, 4);
	r = &s->r_cfg;
	s->now = 0;
	s->end = s->o->duration_ms * 1000;
	s->hn = 0;
	s->seq = 0;
	s->violated = false;
	s->vmsg[0] = 0;
	s->phantom_at = 0;
	s->quiet = false;
	s->phase = 0;
	s->got_lease = s->stable = false;
	map_reset(&s->votes);
	map_reset(&s->leaders);
	map_reset(&s->stops);
	s->xfer_pending = s->xfer_done_phase = false;
	s->xfer_n = 0;
	for (size_t i = 0; i < MAXP; i++) {
		struct speer *p = &s->p[i];
		struct pin *pq = p->pq;

		memset(p, 0, sizeof(*p));
		p->pq = pq;
		if (!p->pq && !(p->pq = calloc(PQ_CAP, sizeof(*p->pq)))) {
			perror("sim: calloc");
			exit(2);
		}
		p->st = PS_DOWN;
		p->wake_local = UINT64_MAX;
	}
	make_config(s);
	for (size_t i = 0; i < s->n; i++) {
		struct speer *p = &s->p[i];

		p->c_local = rng_range(r, 1000, 10000000000ULL) * 1000;
		p->c_real = 0;
		if (rng_chance(r, 300000))
			p->ppm = i % 2 ? DRIFT_PPM_MAX : -DRIFT_PPM_MAX;
		else
			p->ppm = (int32_t)rng_range(r, 0, 2 * DRIFT_PPM_MAX) - DRIFT_PPM_MAX;
	}
	heal(s);
	for (int f = 0; f < F_COUNT; f++) {
		s->fault_w[f] = (s->o->fault_mask >> f) & 1 ? (uint32_t)rng_range(r, 1, 10) : 0;
		if (rng_chance(r, 200000))
			s->fault_w[f] = 0;
	}
	{
		static const uint32_t ok[] = { 1000000, 900000, 500000, 0 };

		s->fence_ok_ppm = ok[rng_range(r, 0, 3)];
	}
	s->tick_first = rng_chance(r, 500000);
}

static void
peer_label(const struct sim *s, char *buf, size_t len)
{
	size_t off = 0;

	for (size_t i = 0; i < s->n && off < len; i++) {
		const struct wd_peer_config *pc = &s->p[0].cfg.peers[i];

		off += (size_t)snprintf(buf + off, len - off, "%s%u(prio %u%s, %+dppm)",
					i ? " " : "", pc->id, pc->priority,
					pc->witness ? ", witness" : "", s->p[i].ppm);
	}
}

/* Runs one schedule. Returns true when it violated an invariant. */
static bool
run_schedule(struct sim *s, uint64_t seed)
{
	uint64_t last_start = 0;

	sim_reset(s, seed);
	s->st.schedules++;
	if (s->tracing) {
		const struct wd_config *c = &s->p[0].cfg;
		char buf[400];

		peer_label(s, buf, sizeof(buf));
		trace(s, "seed %" PRIu64 ": %s: %s", seed, mode_names[s->mode], buf);
		trace(s, "heartbeat %u election %u-%u lease %u tilt %u hold %u fence_delay %u "
		      "retry %u; fence ok %u%%; liveness bound %" PRIu64 " ms",
		      c->heartbeat_ms, c->election_min_ms, c->election_max_ms, c->lease_ms,
		      c->tilt_ms, c->tilt_hold_ms, c->fence_delay_ms, c->fence_retry_ms,
		      s->fence_ok_ppm / 10000, s->bound_ms);
		buf[0] = 0;
		for (int f = 0, off = 0; f < F_COUNT; f++)
			if (s->fault_w[f])
				off += snprintf(buf + off, sizeof(buf) - (size_t)off, " %s:%u",
						fault_names[f], s->fault_w[f]);
		trace(s, "faults%s", buf);
	}
	for (size_t i = 0; i < s->n; i++) {
		uint64_t t = rng_range(&s->r_fault, 0, 1000000);

		push(s, t, EV_START, (uint32_t)i, 0, 0, 0);
		if (t > last_start)
			last_start = t;
	}
	/* The cold start is the first quiet phase, from the last boot on. */
	push(s, last_start, EV_PHASE, 0, 0, 0, 0);
	while (s->hn && !s->violated) {
		struct ev e = pop(s);
		struct speer *p;

		if (e.t > s->end) {
			if (e.kind == EV_DELIVER)
				msg_free(s, e.a);
			continue;	/* drain: frees the pool slots */
		}
		s->now = e.t;
		switch (e.kind) {
		case EV_START:
			boot(s, e.a);
			break;
		case EV_DELIVER:
			p = &s->p[e.c];
			if (p->st == PS_DOWN) {
				msg_free(s, e.a);
			} else if (p->st == PS_PAUSED) {
				if (!pq_push(p, (struct pin){ .slot = e.a, .from = (uint8_t)e.b })) {
					s->st.drops++;
					msg_free(s, e.a);
				}
			} else {
				deliver(s, e.c, e.b, e.a);
			}
			break;
		case EV_WAKE:
			p = &s->p[e.a];
			if (p->st == PS_UP && e.b == p->wake_gen)
				tick(s, e.a);
			break;
		case EV_FENCE_DONE:
			p = &s->p[e.c];
			if (e.d) {
				s->st.fences_ok++;
				if (p->st != PS_DOWN) {
					crash(s, e.c, "fenced");
					p->fenced = true;
					if (s->quiet) {
						/* A fence in a quiet phase is a fault: count again. */
						restart_later(s, e.c, 500000, 2000000);
						quiet_reset(s);
					} else {
						restart_later(s, e.c, 1000000, 10000000);
					}
				}
			} else {
				s->st.fences_failed++;
			}
			p = &s->p[e.a];
			if (p->st == PS_DOWN || p->inc != e.b)
				break;
			if (p->st == PS_PAUSED)
				pq_push(p, (struct pin){ .slot = UINT32_MAX, .target = (uint8_t)e.c,
							 .ok = e.d });
			else
				fence_result(s, e.a, e.c, e.d);
			break;
		case EV_RESUME:
			if (s->p[e.a].pause_gen == e.b)
				resume(s, e.a);
			break;
		case EV_RESTART:
			if (s->p[e.a].restart_gen == e.b)
				boot(s, e.a);
			break;
		case EV_EXIT:
			if (s->p[e.a].st != PS_DOWN && s->p[e.a].inc == e.b) {
				crash(s, e.a, "stopped");
				restart_later(s, e.a, 10000, 5000000);
			}
			break;
		case EV_FAULT:
			if (!s->quiet)
				do_fault(s);
			break;
		case EV_XFER:
			if (s->quiet && e.a == s->phase && s->stable)
				planned_transfer(s);
			break;
		case EV_XFER_DEADLINE:
			if (s->quiet && e.a == s->phase && e.b == s->xfer_n && s->xfer_pending)
				violation(s, "transfer: target %u holds no lease %.3f ms after the "
					  "transfer (bound %.3f ms)", s->p[s->xfer_target].id,
					  (double)(s->now - s->xfer_at) / 1000.0,
					  (double)s->xfer_bound_us / 1000.0);
			break;
		case EV_FLUSH:
			p = &s->p[e.a];
			if (p->st != PS_UP || p->inc != e.b)
				break;
			if (e.c) {	/* the start of a burst within a quiet phase */
				flush_burst(s, e.a);
				break;
			}
			trace(s, "%u flush", p->id);
			s->st.flushes++;
			wd_flush(p->wd, local_ms(p, s->now));
			after_call(s, e.a);
			break;
		case EV_PHASE:
			if (e.a != s->phase)
				break;
			if (s->quiet)
				start_faults(s);
			else
				start_quiet(s);
			break;
		case EV_DEADLINE:
			if (s->quiet && e.a == s->phase && !s->got_lease &&
			    s->now - s->quiet_start >= s->bound_ms * 1000)
				violation(s, "inv5 liveness: no lease holder %" PRIu64
					  " ms into quiet phase %u (bound %" PRIu64 " ms)",
					  (s->now - s->quiet_start) / 1000, e.a, s->bound_ms);
			break;
		default:
			break;
		}
	}
	/* Free what is still queued, and the peers. */
	while (s->hn) {
		struct ev e = pop(s);

		if (e.kind == EV_DELIVER)
			msg_free(s, e.a);
	}
	for (size_t i = 0; i < s->n; i++) {
		struct speer *p = &s->p[i];

		if (p->wd) {
			const struct wd_counters *c = wd_counters(p->wd);

			s->st.tilts_seen += c->tilts;
			s->st.stepdowns += c->stepdowns;
		}
		pq_drop_all(s, p);
		wd_free(p->wd);
		p->wd = NULL;
	}
	if (s->phantom_at)
		s->st.phantom_schedules++;
	if (s->violated) {
		size_t l = strlen(s->vmsg);

		s->st.violations++;
		snprintf(s->vmsg + l, sizeof(s->vmsg) - l, " [%s]", mode_names[s->mode]);
		if (s->phantom_at) {
			l = strlen(s->vmsg);
			snprintf(s->vmsg + l, sizeof(s->vmsg) - l,
				 " [after a phantom echo at t=%.3fms]", (double)s->phantom_at / 1000.0);
		}
	}
	return s->violated;
}

/* ---- driver: workers, summary ------------------------------------------- */

enum rec_kind { REC_FAIL = 1, REC_PROGRESS, REC_DONE };

/* One record on a worker's pipe; below PIPE_BUF, so writes are atomic. */
struct rec {
	uint32_t kind;
	uint64_t seed;
	uint64_t count;
	struct stats st;
	char msg[VMSG_LEN];
};

static void
write_rec(int fd, const struct rec *r)
{
	const char *b = (const char *)r;
	size_t off = 0;

	while (off < sizeof(*r)) {
		ssize_t w = write(fd, b + off, sizeof(*r) - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			exit(2);
		off += (size_t)w;
	}
}

/* Reads one whole record; returns false at end of file. */
static bool
read_rec(int fd, struct rec *r)
{
	char *b = (char *)r;
	size_t off = 0;

	while (off < sizeof(*r)) {
		ssize_t n = read(fd, b + off, sizeof(*r) - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		off += (size_t)n;
	}
	return true;
}

static void
sim_init(struct sim *s, const struct opts *o)
{
	memset(s, 0, sizeof(*s));
	s->o = o;
	s->pool_free = UINT32_MAX;
}

static void
sim_fini(struct sim *s)
{
	for (size_t i = 0; i < MAXP; i++)
		free(s->p[i].pq);
	free(s->heap);
	free(s->pool);
	free(s->votes.keys);
	free(s->votes.vals);
	free(s->leaders.keys);
	free(s->leaders.vals);
	free(s->stops.keys);
	free(s->stops.vals);
	if (s->ring) {
		for (size_t i = 0; i < s->ring_n; i++)
			free(s->ring[i]);
		free(s->ring);
	}
}

/* current[w]: the seed worker w runs, shared so a crash can be traced to it */
static void
worker(const struct opts *o, unsigned w, unsigned nw, int fd, volatile uint64_t *current)
{
	struct sim s;
	struct rec r;
	uint64_t done = 0;

	sim_init(&s, o);
	for (uint64_t k = w; k < o->seeds; k += nw) {
		uint64_t seed = o->start + k;

		current[w] = seed;

		if (run_schedule(&s, seed)) {
			memset(&r, 0, sizeof(r));
			r.kind = REC_FAIL;
			r.seed = seed;
			snprintf(r.msg, sizeof(r.msg), "%s", s.vmsg);
			write_rec(fd, &r);
		}
		if (++done % 5000 == 0) {
			memset(&r, 0, sizeof(r));
			r.kind = REC_PROGRESS;
			r.count = 5000;
			write_rec(fd, &r);
		}
	}
	memset(&r, 0, sizeof(r));
	r.kind = REC_DONE;
	r.count = done % 5000;
	r.st = s.st;
	write_rec(fd, &r);
	sim_fini(&s);
}

static void
merge(struct stats *a, const struct stats *b)
{
	a->schedules += b->schedules;
	a->violations += b->violations;
	a->events += b->events;
	a->deliveries += b->deliveries;
	a->drops += b->drops;
	a->elections += b->elections;
	a->won += b->won;
	a->stepdowns += b->stepdowns;
	a->fences_ok += b->fences_ok;
	a->fences_failed += b->fences_failed;
	a->crashes += b->crashes;
	a->stops += b->stops;
	a->pauses += b->pauses;
	a->restarts += b->restarts;
	a->tilts_seen += b->tilts_seen;
	a->phantom_echoes += b->phantom_echoes;
	a->phantom_schedules += b->phantom_schedules;
	a->transfers += b->transfers;
	a->transfers_made += b->transfers_made;
	a->flushes += b->flushes;
	a->xfer_quiet += b->xfer_quiet;
	a->xfer_quiet_done += b->xfer_quiet_done;
	a->xfer_sum_us += b->xfer_sum_us;
	if (b->xfer_max_us > a->xfer_max_us ||
	    (b->xfer_max_us == a->xfer_max_us && b->xfer_max_seed < a->xfer_max_seed)) {
		a->xfer_max_us = b->xfer_max_us;
		a->xfer_max_seed = b->xfer_max_seed;
	}
	if (b->xfer_bound_max_us > a->xfer_bound_max_us)
		a->xfer_bound_max_us = b->xfer_bound_max_us;
	a->quiet_phases += b->quiet_phases;
	a->quiet_measured += b->quiet_measured;
	a->ttc_sum_ms += b->ttc_sum_ms;
	if (b->ttc_max_ms > a->ttc_max_ms ||
	    (b->ttc_max_ms == a->ttc_max_ms && b->ttc_max_seed < a->ttc_max_seed)) {
		a->ttc_max_ms = b->ttc_max_ms;
		a->ttc_max_seed = b->ttc_max_seed;
	}
	if (b->ttc_max_ratio > a->ttc_max_ratio) {
		a->ttc_max_ratio = b->ttc_max_ratio;
		a->ttc_ratio_seed = b->ttc_ratio_seed;
	}
	if (b->bound_max_ms > a->bound_max_ms)
		a->bound_max_ms = b->bound_max_ms;
	for (int i = 0; i < 8; i++)
		a->ttc_hist[i] += b->ttc_hist[i];
}

static double
mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
cmp_fail(const void *a, const void *b)
{
	const struct rec *x = a, *y = b;

	return x->seed < y->seed ? -1 : x->seed > y->seed;
}

static void
summary(const struct opts *o, const struct stats *st, double secs)
{
	printf("sim: %" PRIu64 " ms per schedule; %" PRIu64 " events, %" PRIu64
	       " deliveries, %" PRIu64 " dropped\n", o->duration_ms, st->events,
	       st->deliveries, st->drops);
	printf("sim: elections %" PRIu64 ", coordinators %" PRIu64 ", step-downs %" PRIu64
	       ", tilts %" PRIu64 "; crashes %" PRIu64 ", clean stops %" PRIu64
	       ", pauses %" PRIu64 ", starts %" PRIu64 "; fences %" PRIu64 " ok, %" PRIu64
	       " failed\n", st->elections, st->won, st->stepdowns, st->tilts_seen,
	       st->crashes, st->stops, st->pauses, st->restarts, st->fences_ok,
	       st->fences_failed);
	printf("sim: quiet phases %" PRIu64 ", with a coordinator %" PRIu64
	       "; time to coordinator mean %.0f ms, worst %" PRIu64 " ms (seed %" PRIu64
	       "), worst/bound %.2f (seed %" PRIu64 "), largest bound %" PRIu64 " ms\n",
	       st->quiet_phases, st->quiet_measured,
	       st->quiet_measured ? (double)st->ttc_sum_ms / (double)st->quiet_measured : 0.0,
	       st->ttc_max_ms, st->ttc_max_seed, st->ttc_max_ratio, st->ttc_ratio_seed,
	       st->bound_max_ms);
	printf("sim: echoes of heartbeats never received: %" PRIu64 " in %" PRIu64
	       " schedules\n", st->phantom_echoes, st->phantom_schedules);
	printf("sim: transfers %" PRIu64 " called, %" PRIu64 " made; planned in quiet phases %"
	       PRIu64 ", target held the lease after mean %.2f ms, worst %.2f ms (seed %" PRIu64
	       "), largest bound %.1f ms; flushes %" PRIu64 "\n", st->transfers,
	       st->transfers_made, st->xfer_quiet,
	       st->xfer_quiet_done ? (double)st->xfer_sum_us / 1000.0 /
				     (double)st->xfer_quiet_done : 0.0,
	       (double)st->xfer_max_us / 1000.0, st->xfer_max_seed,
	       (double)st->xfer_bound_max_us / 1000.0, st->flushes);
	printf("sim: time to coordinator / bound, in eighths:");
	for (int i = 0; i < 8; i++)
		printf(" %" PRIu64, st->ttc_hist[i]);
	printf("\n");
	printf("sim: %.2f s, %.0f schedules/s\n", secs,
	       secs > 0 ? (double)st->schedules / secs : 0.0);
	printf("%" PRIu64 " schedules, %" PRIu64 " violations\n", st->schedules,
	       st->violations);
}

static int
run_verbose(const struct opts *o)
{
	struct sim s;
	double t0 = mono_s();
	bool bad;

	sim_init(&s, o);
	s.tracing = true;
	if (o->tail) {
		s.ring_n = o->tail;
		s.ring = calloc(s.ring_n, sizeof(*s.ring));
		for (size_t i = 0; s.ring && i < s.ring_n; i++)
			if (!(s.ring[i] = calloc(1, 512)))
				exit(2);
		if (!s.ring)
			exit(2);
	}
	bad = run_schedule(&s, o->verbose_seed);
	if (s.ring)
		for (size_t k = 0; k < s.ring_n; k++) {
			const char *l = s.ring[(s.ring_pos + k) % s.ring_n];

			if (*l)
				puts(l);
		}
	if (bad)
		printf("FAIL seed %" PRIu64 ": %s\n", o->verbose_seed, s.vmsg);
	summary(o, &s.st, mono_s() - t0);
	sim_fini(&s);
	return bad ? 1 : 0;
}

static int
run_batch(const struct opts *o)
{
	unsigned nw = o->jobs;
	int fds[64];
	pid_t pids[64];
	struct pollfd pfd[64];
	struct stats total;
	struct rec r;
	struct rec *fails = NULL;
	size_t nfail = 0, capfail = 0, open_fds = 0;
	uint64_t progress = 0, next_report = 100000;
	double t0 = mono_s();
	uint64_t *shared;
	volatile uint64_t *current;

	memset(&total, 0, sizeof(total));
	shared = mmap(NULL, 64 * sizeof(uint64_t), PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shared == MAP_FAILED) {
		perror("sim: mmap");
		return 2;
	}
	current = shared;
	if (nw > o->seeds)
		nw = o->seeds ? (unsigned)o->seeds : 1;
	fflush(stdout);
	for (unsigned w = 0; w < nw; w++) {
		int p[2];

		if (pipe(p) < 0) {
			perror("sim: pipe");
			return 2;
		}
		pids[w] = fork();
		if (pids[w] < 0) {
			perror("sim: fork");
			return 2;
		}
		if (pids[w] == 0) {
			close(p[0]);
			for (unsigned k = 0; k < w; k++)
				close(fds[k]);
			worker(o, w, nw, p[1], current);
			close(p[1]);
			exit(0);	/* stdout was flushed before the fork; lets LSan check the worker */
		}
		close(p[1]);
		fds[w] = p[0];
		pfd[w].fd = p[0];
		pfd[w].events = POLLIN;
		open_fds++;
	}
	while (open_fds) {
		if (poll(pfd, nw, -1) < 0) {
			if (errno == EINTR)
				continue;
			perror("sim: poll");
			return 2;
		}
		for (unsigned w = 0; w < nw; w++) {
			if (pfd[w].fd < 0 || !(pfd[w].revents & (POLLIN | POLLHUP)))
				continue;
			if (!read_rec(pfd[w].fd, &r)) {
				close(pfd[w].fd);
				pfd[w].fd = -1;
				open_fds--;
				continue;
			}
			if (r.kind == REC_FAIL) {
				if (nfail == capfail) {
					capfail = capfail ? 2 * capfail : 64;
					fails = realloc(fails, capfail * sizeof(*fails));
					if (!fails)
						return 2;
				}
				fails[nfail++] = r;
				if (o->long_mode && nfail <= o->max_report)
					fprintf(stderr, "FAIL seed %" PRIu64 ": %s\n", r.seed, r.msg);
			} else if (r.kind == REC_PROGRESS) {
				progress += r.count;
			} else if (r.kind == REC_DONE) {
				progress += r.count;
				merge(&total, &r.st);
			}
			if (o->long_mode && progress >= next_report) {
				double dt = mono_s() - t0;

				fprintf(stderr, "sim: %" PRIu64 " schedules, %zu violations, %.0f/s\n",
					progress, nfail, dt > 0 ? (double)progress / dt : 0.0);
				next_report += 100000;
			}
		}
	}
	for (unsigned w = 0; w < nw; w++) {
		int status;

		if (waitpid(pids[w], &status, 0) < 0 || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != 0) {
			if (WIFSIGNALED(status))
				fprintf(stderr, "sim: worker %u died of signal %d in seed %" PRIu64
					"; replay it with --verbose %" PRIu64 "\n", w,
					WTERMSIG(status), current[w], current[w]);
			else
				fprintf(stderr, "sim: worker %u failed in seed %" PRIu64 "\n", w,
					current[w]);
			free(fails);
			return 2;
		}
	}
	if (nfail)	/* qsort wants a valid pointer even for no elements */
		qsort(fails, nfail, sizeof(*fails), cmp_fail);
	for (size_t i = 0; i < nfail && i < o->max_report; i++)
		printf("FAIL seed %" PRIu64 ": %s\n", fails[i].seed, fails[i].msg);
	if (nfail > o->max_report)
		printf("(%zu more failing seeds not shown)\n", nfail - o->max_report);
	free(fails);
	munmap(shared, 64 * sizeof(uint64_t));
	summary(o, &total, mono_s() - t0);
	return total.violations ? 1 : 0;
}

static void
usage(void)
{
	fprintf(stderr,
		"usage: sim [--seeds N] [--start S] [--duration-ms D] [--jobs J] [--long]\n"
		"           [--verbose SEED [--tail K]] [--mode 3|5|witness|2node]\n"
		"           [--faults LIST] [--no-dup] [--strict-echo] [--max-report N]\n"
		"faults: crash,stop,pause,split,isolate,oneway,lossy,spikes,dup,heal,drift,restart,bridge,\n"
		"        transfer,flush\n");
	exit(2);
}

static uint64_t
num_arg(const char *opt, const char *v)
{
	char *end;
	unsigned long long x;

	if (!v)
		usage();
	errno = 0;
	x = strtoull(v, &end, 10);
	if (errno || end == v || *end || v[0] == '-') {
		fprintf(stderr, "sim: %s needs a number, not \"%s\"\n", opt, v);
		exit(2);
	}
	return x;
}

static uint32_t
parse_faults(const char *v)
{
	uint32_t mask = 0;
	char buf[256], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", v);
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		int f;

		for (f = 0; f < F_COUNT && strcmp(t, fault_names[f]); f++)
			;
		if (f == F_COUNT) {
			fprintf(stderr, "sim: unknown fault \"%s\"\n", t);
			exit(2);
		}
		mask |= 1u << f;
	}
	return mask;
}

int
main(int argc, char **argv)
{
	struct opts o = {
		.seeds = 0, .start = 1, .duration_ms = DEFAULT_DURATION_MS,
		.fault_mask = (1u << F_COUNT) - 1, .mode = -1, .max_report = 50,
	};
	bool seeds_given = false;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	o.jobs = ncpu > 0 ? (unsigned)ncpu : 1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--seeds")) {
			o.seeds = num_arg(a, v);
			seeds_given = true;
			i++;
		} else if (!strcmp(a, "--start")) {
			o.start = num_arg(a, v);
			i++;
		} else if (!strcmp(a, "--duration-ms")) {
			o.duration_ms = num_arg(a, v);
			i++;
		} else if (!strcmp(a, "--jobs")) {
			o.jobs = (unsigned)num_arg(a, v);
			i++;
		} else if (!strcmp(a, "--verbose")) {
			o.verbose = true;
			o.verbose_seed = num_arg(a, v);
			i++;
		} else if (!strcmp(a, "--tail")) {
			o.tail = (size_t)num_arg(a, v);
			i++;
		} else if (!strcmp(a, "--max-report")) {
			o.max_report = (unsigned)num_arg(a, v);
			i++;
		} else if (!strcmp(a, "--faults")) {
			if (!v)
				usage();
			o.fault_mask = parse_faults(v);
			i++;
		} else if (!strcmp(a, "--mode")) {
			if (!v)
				usage();
			if (!strcmp(v, "3"))
				o.mode = M_THREE;
			else if (!strcmp(v, "5"))
				o.mode = M_FIVE;
			else if (!strcmp(v, "witness"))
				o.mode = M_WITNESS;
			else if (!strcmp(v, "2node"))
				o.mode = M_TWO_NODE;
			else
				usage();
			i++;
		} else if (!strcmp(a, "--strict-echo")) {
			o.strict_echo = true;
		} else if (!strcmp(a, "--no-dup")) {
			o.no_dup = true;
		} else if (!strcmp(a, "--long")) {
			o.long_mode = true;
		} else {
			usage();
		}
	}
	if (!seeds_given)
		o.seeds = o.long_mode ? 1000000 : 2000;
	if (o.jobs < 1)
		o.jobs = 1;
	if (o.jobs > 64)
		o.jobs = 64;
	if (o.duration_ms < 1000) {
		fprintf(stderr, "sim: --duration-ms must be at least 1000\n");
		return 2;
	}
	if (o.verbose)
		return run_verbose(&o);
	return run_batch(&o);
}
