/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fosim.c - deterministic cluster simulator for the failover (DESIGN.md §3,
 * §4, §6; how to use it: tests/sim/README-failover.md).
 *
 * N peers run in one process, each with BOTH state machines the daemon
 * runs: the election (watchdog/elect.c) and the failover orchestration
 * (failover/orch.c), unmodified, through their headers only. They are glued
 * together as failover/failover.c does it: the failover's extension bytes
 * ride in the election's heartbeats, the election's verdict (lease, term)
 * is fed to the failover after every election step, the failover's effects
 * are carried out in order (persist the record, run a hook only while the
 * lease is valid, check the backends now, flush heartbeats, hand the
 * coordinator role over).
 *
 * Around them a simulated world: PostgreSQL backends next to the peers
 * (a primary whose LSN advances, standbys that receive and replay it with
 * random lag), health checks derived from what each peer can reach (with
 * failure_threshold, recheck and timeouts), hooks that succeed, fail, hang
 * or succeed after they reported a failure, and faults: crashes of the
 * postmaster, of the daemon and of whole hosts, frozen hosts, slow
 * primaries, paused replay, partitions between peers, between peers and
 * backends, and of replication. The operator asks for switchovers, manual
 * failovers (forced or not) and fences on any live peer, at any moment; a
 * switchover's clean stop gives the connected standbys the old primary's
 * WAL up to its final LSN and reports it, as PostgreSQL's fast shutdown and
 * the shipped stop script do.
 *
 * After every event the invariants are checked (README-failover.md):
 * never two writable backends (and never two through the VIP), no promote
 * hook before the old primary is fenced or stopped, the candidate is not
 * behind another eligible standby nor more than max_lag behind the last
 * primary LSN sampled, one promotion per failure, no promotion of a backend
 * that needs a rejoin, no automatic failover of a healthy primary, the
 * record durable before it is shown, a switchover that loses nothing unless
 * it says it degraded, a cancelled switchover that promotes nothing, an
 * operator fence never of the primary and never followed by a promotion of
 * the fenced backend before a rejoin; in quiet phases a failover (and a
 * switchover asked for) must complete within a stated bound. Everything
 * random comes from the seed: `fosim --verbose SEED` replays a schedule
 * with its full trace.
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

#include "failover/orch.h"
#include "watchdog/elect.h"

#define MAXP 5			/* peers per simulated cluster */
#define MAXB 5			/* backends */
#define MAXHOOKS 256		/* hooks in flight */
#define DRIFT_PCT 2
#define DRIFT_PPM_MAX 10000
#define QUIET_DELAY_MAX_US 20000
#define SPIKE_DELAY_MAX_US 300000
#define PQ_CAP 1024
#define PQ_MSG_CAP 1000
#define SPLIT_RETRIES 3
#define DEFAULT_DURATION_MS 60000
#define VMSG_LEN 640
#define FENCE_HOOK_MAX_US 3000000	/* the election's fence hook */
#define WAL_TICK_US 20000		/* the world advances WAL every 20 ms */
#define SETTLE_LOOP_MAX 64		/* glue ping-pong between the two machines */
#define LATE_MAX_US 3000000		/* a "late" hook acts up to 3 s after it reported */
#define FO_LOG_MAX 256			/* failovers remembered per schedule */
#define CLEAN_STOP_FACTOR 3		/* orch.c: a clean stop may take 3 x fence_timeout */

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

static uint64_t
rng_range(struct rng *r, uint64_t lo, uint64_t hi)
{
	if (hi <= lo)
		return lo;
	return lo + rng_next(r) % (hi - lo + 1);
}

static bool
rng_chance(struct rng *r, uint32_t ppm)
{
	return ppm && (uint32_t)(rng_next(r) % 1000000) < ppm;
}

/* ---- events ----------------------------------------------------------- */

enum ev_kind {
	EV_START,		/* a: peer; first boot */
	EV_DELIVER,		/* a: msg slot, b: from idx, c: to idx */
	EV_WAKE,		/* a: peer, b: wake generation (election) */
	EV_FOWAKE,		/* a: peer, b: wake generation (failover) */
	EV_FENCE_DONE,		/* a: fencer, b: incarnation, c: target, d: ok (election fence) */
	EV_RESUME,		/* a: peer, b: pause generation */
	EV_RESTART,		/* a: peer, b: restart generation (daemon) */
	EV_HOSTUP,		/* a: host, b: host generation */
	EV_THAW,		/* a: host, b: host generation */
	EV_FAULT,
	EV_PHASE,
	EV_DEADLINE,		/* a: quiet phase, b: quiet generation */
	EV_EXIT,		/* a: peer, b: incarnation; end of a clean stop */
	EV_CHECK,		/* a: peer, b: check generation, c: backend */
	EV_CHECK_SAMPLE,	/* a: peer, b: check generation, c: backend */
	EV_CHECK_DONE,		/* a: peer, b: check generation, c: backend, d: ok */
	EV_HOOK_ACT,		/* a: hook slot, b: hook generation */
	EV_HOOK_DONE,		/* a: hook slot, b: hook generation */
	EV_BRESTART,		/* a: backend, b: backend generation */
	EV_WAL,
	EV_OP,			/* operator: rejoin / resume in quiet phases */
	EV_MIDSTEP,		/* a: peer, b: incarnation: crash or freeze it mid-failover */
	EV_OPCMD,		/* a: quiet phase: the operator asks a switchover or failover */
};

struct ev {
	uint64_t t;
	uint64_t seq;
	uint32_t a, b;
	uint16_t c;
	uint8_t kind;
	uint8_t d;
};

/* ---- the simulated world ------------------------------------------------ */

enum pstate { PS_DOWN, PS_UP, PS_PAUSED };

enum pin_kind { PIN_MSG, PIN_FENCE, PIN_HOOK };

/* An input that reached a frozen daemon, handled when it resumes. */
struct pin {
	uint8_t kind;
	uint32_t slot;		/* message slot / hook slot */
	uint32_t gen;		/* hook generation */
	uint8_t from;		/* message: peer idx */
	uint8_t target;		/* fence result: target idx */
	uint8_t ok;
};

/* One peer's health view of one backend (the health module). */
struct hview {
	uint8_t state;		/* enum fo_health */
	uint8_t role;		/* enum fo_role, of the last success */
	uint32_t tli;
	uint64_t lsn, sysid;
	uint64_t checked_at;	/* local ms, 0 = never */
	uint32_t fails;
	uint32_t gen;		/* a bump discards the check in flight or armed */
	bool inflight, again;
	uint64_t started;	/* real µs */
	/* what the server answered (taken at EV_CHECK_SAMPLE) */
	uint8_t s_role;
	uint32_t s_tli;
	uint64_t s_lsn, s_sysid;
	uint64_t max_primary_lsn;	/* own successful checks as a primary, this boot ... */
	uint32_t max_primary_tli;	/* ... on this timeline */
};

struct speer {
	struct wd *wd;		/* owned; NULL while down */
	struct fo *fo;		/* owned; NULL while down */
	struct wd_config cfg;
	struct fo_config fcfg;
	uint8_t id;
	bool eligible;
	bool witness;
	enum pstate st;
	uint32_t inc;
	uint32_t pause_gen, restart_gen, wake_gen, fowake_gen;
	uint32_t boots;
	uint64_t c_real, c_local;
	int32_t ppm;
	uint64_t wake_local, fowake_local;
	uint64_t same_wake, same_fowake;
	uint64_t last_local;
	struct pin *pq;		/* owned, PQ_CAP entries */
	uint32_t pq_head, pq_len;
	/* durable state */
	struct wd_durable disk;
	struct fo_record fdisk;
	uint64_t term_seen;
	bool fenced;		/* down because the election fenced its host */
	bool lingering;
	/* glue */
	bool want_flush;
	uint8_t want_transfer;	/* peer id, 0 = none */
	enum fo_command last_cmd;	/* the last operator command sent here */
	struct hview hv[MAXB];
};

enum bst { BS_RUNNING, BS_CRASHED, BS_STOPPED, BS_FENCED };

static const char *const bst_names[] = { "running", "crashed", "stopped", "fenced" };

struct sbackend {
	uint8_t id;
	uint8_t prio;
	size_t host;		/* = index of the peer next to it */
	uint64_t sysid;
	enum bst st;
	bool primary;
	uint32_t tli;
	uint64_t lsn;		/* primary: current WAL position */
	uint64_t recv, replay;	/* standby */
	int upstream;		/* backend idx it streams from, -1 = none */
	uint64_t promote_lsn;	/* where it was promoted (its timeline switch) */
	uint64_t slow_until, stream_pause_until, replay_pause_until;	/* real µs */
	uint32_t chunk_max;	/* bytes per WAL tick it can receive */
	uint32_t gen;		/* bumps at each crash: stale restarts ignored */
	bool tainted;		/* diverged from the current primary's history: needs a rejoin */
	bool foreign;		/* another cluster's system id */
	/* for the S4 and L2 checks */
	bool elig_now;
	uint64_t elig_since;
	bool healthy_now;
	uint64_t healthy_since;
	uint64_t primary_since;	/* when it became the primary (0 = from the start) */
	bool opfenced;		/* an operator fence was started against it, no rejoin since */
	uint64_t opfenced_at;	/* when the last one started */
	bool reach_now;		/* serving, not slow, reachable by every peer, any role */
	uint64_t reach_since;
};

struct shost {
	bool up;
	bool frozen;
	uint32_t gen;
};

enum hout { HO_OK, HO_FAIL, HO_HANG, HO_LATE };

static const char *const hout_names[] = { "ok", "fails", "hangs", "late" };

struct shook {
	bool used;
	uint32_t gen;
	size_t peer;		/* the runner */
	uint32_t inc;		/* the runner's incarnation */
	enum fo_hook_kind kind;
	uint8_t backend, newp, oldp;
	uint64_t term;
	enum hout out;
	bool act_pending, done_pending;
	bool act_ok;
	uint64_t started;
	uint32_t tgt_gen;	/* the promoted backend's server run at the start */
	bool clean;		/* stop: a clean stop (switchover) */
	bool no_report;		/* stop: the script prints no shutdown_lsn line */
	uint64_t report_lsn;	/* stop: the shutdown checkpoint it reports, 0 = none */
	bool op_fence;		/* fence: the operator's, not a failover's */
	int fo_k;		/* promote: fo_log index of its failover, -1 = unknown */
};

struct msgslot {
	struct wd_msg m;
	uint32_t inc;
	uint32_t next_free;
};

struct link {
	bool up;
	uint32_t drop_ppm;
};

struct stats {
	uint64_t schedules, violations, events, deliveries, drops;
	uint64_t elections, won, fences_ok, fences_failed;
	uint64_t crashes, stops, pauses, restarts, pg_crashes, host_crashes, freezes;
	uint64_t fo_started, fo_done, fo_refused, fo_blocked, two_primaries;
	uint64_t promotions, hooks[FO_HOOK_KIND_MAX + 1], hooks_failed, hooks_hung,
		 hooks_late, hooks_gated, transfers, rejoins_ok;
	uint64_t s4_checked, s4_compared, second_failovers, lost_records;
	/* the operator */
	uint64_t op_sent[3], op_local_refused, op_refused;	/* sent: switchover, failover, fence */
	uint64_t sw_started, sw_done, sw_cancelled, sw_degraded, sw_lossless_checked;
	uint64_t man_started, man_forced, clean_stops, clean_reports, opfences, opfences_acted;
	uint64_t sw_cancel_lost;	/* a cancel no majority held: the switchover went on */
	uint64_t sw_stale_stops;	/* stops for a switchover cancelled already */
	uint64_t quiet_phases, quiet_checked, quiet_healthy, quiet_excused;
	uint64_t excuses[10];
	uint64_t tth_sum_ms, tth_max_ms, tth_max_seed;
	double tth_max_ratio;
	uint64_t tth_ratio_seed;
	uint64_t bound_max_ms;
	uint64_t fo_time_n, fo_time_sum_ms, fo_time_max_ms, fo_time_max_seed;
	uint64_t tth_hist[8];
};

struct opts {
	uint64_t seeds, start, duration_ms;
	bool long_mode;
	bool verbose;
	uint64_t verbose_seed;
	size_t tail;
	unsigned jobs;
	uint64_t fault_mask;
	int mode;
	int vip;		/* -1 from seed, else enum fo_vip_follow */
	bool no_transfer;	/* ignore FO_EFF_TRANSFER */
	bool no_flush;		/* ignore FO_EFF_FLUSH */
	bool reliable;		/* hooks never fail */
	bool strict_two_node;	/* two-node mode: a lone peer's stale record is a violation */
	bool no_operator;	/* no switchover, manual failover or operator fence */
	bool strict_cancel;	/* a stop for a cancelled switchover is a violation (inv4) */
	unsigned max_report;
};

enum fault {
	F_CRASH, F_STOP, F_PAUSE, F_SPLIT, F_ISOLATE, F_ONEWAY, F_LOSSY,
	F_SPIKES, F_HEAL, F_DRIFT, F_RESTART, F_BRIDGE,
	F_PGCRASH, F_HOSTCRASH, F_FREEZE, F_SLOW, F_LAG, F_REPLAY, F_PBCUT,
	F_PGISO, F_REPLCUT, F_MAINT, F_REJOIN, F_MIDSTEP,
	F_SWITCHOVER, F_MANUAL, F_OPFENCE,
	F_COUNT
};

static const char *const fault_names[F_COUNT] = {
	"crash", "stop", "pause", "split", "isolate", "oneway", "lossy",
	"spikes", "heal", "drift", "restart", "bridge",
	"pgcrash", "hostcrash", "freeze", "slow", "lag", "replay", "pbcut",
	"pgiso", "replcut", "maint", "rejoin", "midstep",
	"switchover", "failover", "opfence",
};

/* The operator's commands (drawn from their own stream: see sim_reset). */
static bool
operator_fault(int f)
{
	return f == F_SWITCHOVER || f == F_MANUAL || f == F_OPFENCE;
}

enum mode { M_THREE, M_FIVE, M_WITNESS, M_TWO_NODE, M_COUNT };

static const char *const mode_names[M_COUNT] = {
	"3 peers", "5 peers", "2 peers + witness", "2 peers with fencing",
};

struct hookcfg {
	uint32_t fail_ppm, hang_ppm, late_ppm;
	uint32_t dur_max_ms;
};

struct sim {
	const struct opts *o;
	uint64_t seed;
	struct rng r_cfg, r_net, r_fault, r_fence, r_hook, r_wal, r_chk, r_op;
	uint64_t now, end;
	size_t n, nb;
	int mode;
	struct speer p[MAXP];
	struct shost h[MAXP];
	struct sbackend b[MAXB];
	uint8_t idx_of[256];	/* peer id -> idx */
	uint8_t bidx_of[256];	/* backend id -> idx */
	/* events */
	struct ev *heap;	/* owned */
	size_t hn, hcap;
	uint64_t seq;
	struct msgslot *pool;	/* owned */
	uint32_t pool_cap, pool_free;
	/* network */
	struct link link[MAXP][MAXP];
	bool reach[MAXP][MAXP];	/* peer -> host (PostgreSQL port) */
	bool repl[MAXP][MAXP];	/* host <-> host replication */
	uint32_t spike_ppm;
	uint32_t fault_w[F_COUNT];
	uint32_t fence_ok_ppm;	/* the election's fence */
	uint32_t noreport_ppm;	/* a clean stop that reports no shutdown_lsn */
	uint32_t opcmd_ppm;	/* quiet phases in which the operator asks for a switchover/failover */
	bool tick_first;
	/* configuration of the world */
	uint32_t ci_ms, ct_ms, rr_ms, ft;	/* health: interval, timeout, recheck, threshold */
	uint32_t wal_rate;	/* max bytes per WAL tick */
	uint32_t hook_timeout_ms;
	struct hookcfg hk[FO_HOOK_KIND_MAX + 1];
	bool power_fence;	/* fence_command powers the host off (else kills PostgreSQL) */
	bool idem_promote;	/* the promote script exits 0 on a primary */
	bool reliable_phase;	/* hooks never fail in this phase */
	struct shook hooks[MAXHOOKS];
	uint32_t hook_gen;
	/* phases */
	bool quiet;
	uint32_t phase;
	uint64_t quiet_start;
	uint32_t quiet_gen;
	bool got_healthy;
	uint64_t bound_ms, elect_bound_ms;
	uint64_t qdelay_us;
	uint64_t l2_window_us, s4_margin_us;
	/* world bookkeeping */
	int cur;		/* backend idx of the current primary epoch */
	uint32_t epoch;
	uint64_t epoch_fterm;	/* failover_term of the failover of this epoch's primary, 0 = none */
	uint64_t epoch_fseq;	/* ... and its failover_seq */
	uint64_t lost_at;	/* when the current primary stopped being writable, 0 = writable */
	struct {
		uint64_t fterm, fseq;	/* the failover: its term and number */
		uint64_t fence_at;	/* real µs of backend-fence-done, 0 = not seen */
		uint64_t sampled;	/* own samples of the old primary by the starter */
		uint8_t old;
		uint8_t kind, target;	/* enum fo_kind, the backend asked for */
		bool force;
		bool degraded;		/* switchover-degraded was logged for it */
		bool cancelled;		/* switchover-cancelled was logged for it */
		uint64_t cancel_term, cancel_seq;	/* the record version that cancelled it */
		bool cancel_committed;	/* a majority of peers persisted that version (or newer) */
		bool promote_started;	/* a promote hook of it started */
	} fo_log[FO_LOG_MAX];
	size_t nfo_log;
	uint64_t max_rec_term;	/* the highest term of any record persisted */
	/* invariants */
	bool violated;
	char vmsg[VMSG_LEN];
	/* trace */
	bool tracing;
	char **ring;
	size_t ring_n, ring_pos;
	struct stats st;
};

/* ---- trace and violations ---------------------------------------------- */

static void trace(struct sim *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
trace(struct sim *s, const char *fmt, ...)
{
	char buf[640];
	va_list ap;
	int off;

	if (!s->tracing)
		return;
	off = snprintf(buf, sizeof(buf), "%10.3f ", (double)s->now / 1000.0);
	va_start(ap, fmt);
	vsnprintf(buf + off, sizeof(buf) - (size_t)off, fmt, ap);
	va_end(ap);
	if (s->ring) {
		snprintf(s->ring[s->ring_pos], 640, "%s", buf);
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
			perror("fosim: realloc");
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

/* ---- message pool ------------------------------------------------------- */

static uint32_t
msg_alloc(struct sim *s)
{
	uint32_t i;

	if (s->pool_free == UINT32_MAX) {
		uint32_t old = s->pool_cap;

		s->pool_cap = old ? 2 * old : 1024;
		s->pool = realloc(s->pool, s->pool_cap * sizeof(*s->pool));
		if (!s->pool) {
			perror("fosim: realloc");
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

static uint64_t
lnow(const struct sim *s, size_t i)
{
	return local_ms(&s->p[i], s->now);
}

/* ---- small world helpers ---------------------------------------------- */

static bool
has_backend(const struct sim *s, size_t host)
{
	return host < s->nb;
}

static bool
writable(const struct sim *s, size_t bi)
{
	const struct sbackend *b = &s->b[bi];

	return s->h[b->host].up && b->st == BS_RUNNING && b->primary;
}

/* Running and answering: host up and not frozen, postmaster running. */
static bool
serving(const struct sim *s, size_t bi)
{
	const struct sbackend *b = &s->b[bi];

	return s->h[b->host].up && !s->h[b->host].frozen && b->st == BS_RUNNING;
}

static uint64_t
blsn(const struct sbackend *b)
{
	if (b->primary)
		return b->lsn;
	return b->recv > b->replay ? b->recv : b->replay;
}

static int
find_fo_log(const struct sim *s, const struct fo_record *r)
{
	for (size_t i = 0; i < s->nfo_log; i++)
		if (s->fo_log[i].fterm == r->failover_term && s->fo_log[i].fseq == r->failover_seq)
			return (int)i;
	return -1;
}

static int
find_fo_log_id(const struct sim *s, uint64_t fterm, uint64_t fseq)
{
	for (size_t i = 0; i < s->nfo_log; i++)
		if (s->fo_log[i].fterm == fterm && s->fo_log[i].fseq == fseq)
			return (int)i;
	return -1;
}

/* The failover an event names (" failover=T.N", orch.c's event()), or -1. */
static int
event_fo_log(const struct sim *s, const char *text)
{
	const char *f = strstr(text, " failover=");
	uint64_t t, n;

	if (!f || sscanf(f, " failover=%" SCNu64 ".%" SCNu64, &t, &n) != 2)
		return -1;
	return find_fo_log_id(s, t, n);
}

/* The number after " key=" in an event's text, or -1. */
static long
event_num(const char *text, const char *key)
{
	char k[40];
	const char *f;

	snprintf(k, sizeof(k), " %s=", key);
	f = strstr(text, k);
	return f ? strtol(f + strlen(k), NULL, 10) : -1;
}

/* The coordinator with a valid lease, if any (its index), else -1. */
static int
coordinator_idx(const struct sim *s)
{
	for (size_t i = 0; i < s->n; i++) {
		const struct speer *p = &s->p[i];

		if (p->st != PS_DOWN && wd_has_lease(p->wd, lnow(s, i)))
			return (int)i;
	}
	return -1;
}

static const char *
hook_name(enum fo_hook_kind k)
{
	return fo_hook_name(k);
}

/* ---- the durable record ------------------------------------------------- */

static bool
rec_eq(const struct fo_record *a, const struct fo_record *b)
{
	if (a->term != b->term || a->seq != b->seq || a->primary != b->primary ||
	    a->timeline != b->timeline || a->system_id != b->system_id ||
	    a->switch_lsn != b->switch_lsn || a->step != b->step ||
	    a->old_primary != b->old_primary || a->candidate != b->candidate ||
	    a->failover_term != b->failover_term || a->failover_seq != b->failover_seq ||
	    a->fence_go != b->fence_go ||
	    a->last_primary_lsn != b->last_primary_lsn || a->paused != b->paused ||
	    a->kind != b->kind || a->target != b->target || a->force != b->force ||
	    a->shutdown_lsn != b->shutdown_lsn ||
	    a->nflags != b->nflags || a->nops != b->nops)
		return false;
	for (size_t i = 0; i < a->nflags; i++)
		if (a->flags[i].backend != b->flags[i].backend ||
		    a->flags[i].flags != b->flags[i].flags)
			return false;
	for (size_t i = 0; i < a->nops; i++)
		if (a->ops[i].peer != b->ops[i].peer || a->ops[i].seq != b->ops[i].seq)
			return false;
	return true;
}

static void
fmt_rec(char *buf, size_t len, const struct fo_record *r)
{
	size_t off;

	off = (size_t)snprintf(buf, len, "v%" PRIu64 ".%" PRIu64 " primary=%u tli=%" PRIu32
			       " step=%s old=%u cand=%u fterm=%" PRIu64 " last_lsn=%" PRIu64 "%s",
			       r->term, r->seq, r->primary, r->timeline,
			       fo_step_name((enum fo_step)r->step), r->old_primary, r->candidate,
			       r->failover_term, r->last_primary_lsn, r->paused ? " PAUSED" : "");
	if (r->step != FO_STEP_NONE && r->kind != FO_KIND_FAILOVER && off < len)
		off += (size_t)snprintf(buf + off, len - off, " kind=%s target=%u%s shutdown_lsn=%"
					PRIu64, fo_kind_name((enum fo_kind)r->kind), r->target,
					r->force ? " force" : "", r->shutdown_lsn);
	if (off < len)
		off += (size_t)snprintf(buf + off, len - off, " flags=");
	for (size_t i = 0; i < r->nflags && off < len; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%u:%s%s", i ? "," : "",
					r->flags[i].backend,
					r->flags[i].flags & FO_B_NEEDS_REJOIN ? "R" : "",
					r->flags[i].flags & FO_B_FENCED ? "F" : "");
}

/*
 * Two-node mode, not --strict-two-node: what a lone peer's lost record
 * leads to is noted (counted with the lost records), not a violation.
 */
static bool
two_node_note(struct sim *s)
{
	if (s->mode != M_TWO_NODE || s->o->strict_two_node)
		return false;
	s->st.lost_records++;
	return true;
}

/* ---- world events: the primary epoch ------------------------------------ */

/* A backend became primary in the world (a promote hook took effect). */
static void
world_promoted(struct sim *s, size_t bi, const struct shook *h)
{
	struct sbackend *c = &s->b[bi];
	int oi = h->oldp ? s->bidx_of[h->oldp] : -1;

	s->st.promotions++;
	trace(s, "WORLD backend %u promoted: timeline %" PRIu32 " at lsn %" PRIu64
	      " (hook of peer %u term %" PRIu64 " old=%u)", c->id, c->tli, c->lsn,
	      s->p[h->peer].id, h->term, h->oldp);
	/* Invariant 4: one promotion per failure, and for the current one. */
	if (s->cur >= 0 && (size_t)s->cur != bi) {
		if (oi != s->cur)
			violation(s, "inv4 second promotion: backend %u promoted by a hook for the failure of "
				  "%u, but the current primary epoch is backend %u's (already replaced)",
				  c->id, h->oldp, s->b[s->cur].id);
	}
	for (size_t i = 0; i < s->nb; i++)
		if (i != bi && !s->b[i].foreign)
			s->b[i].tainted = true;
	c->tainted = false;
	c->primary_since = s->now;
	if (s->lost_at && s->quiet && (s->reliable_phase || s->o->reliable)) {
		uint64_t from = s->lost_at > s->quiet_start ? s->lost_at : s->quiet_start;
		uint64_t ms = (s->now - from) / 1000;

		s->st.fo_time_n++;
		s->st.fo_time_sum_ms += ms;
		if (ms > s->st.fo_time_max_ms) {
			s->st.fo_time_max_ms = ms;
			s->st.fo_time_max_seed = s->seed;
		}
	}
	s->cur = (int)bi;
	s->epoch++;
	s->epoch_fterm = 0;
	s->lost_at = 0;
}

/* ---- invariants on the world, after every event ------------------------- */

static void
update_elig(struct sim *s)
{
	for (size_t bi = 0; bi < s->nb; bi++) {
		struct sbackend *b = &s->b[bi];
		bool reach_all = true, e, hl;

		for (size_t pi = 0; pi < s->n; pi++)
			if (!s->reach[pi][b->host])
				reach_all = false;
		e = serving(s, bi) && !b->primary && s->now >= b->slow_until && reach_all;
		if (e && !b->elig_now)
			b->elig_since = s->now;
		b->elig_now = e;
		hl = serving(s, bi) && b->primary && s->now >= b->slow_until && reach_all;
		if (hl && !b->healthy_now)
			b->healthy_since = s->now;
		b->healthy_now = hl;
		hl = serving(s, bi) && s->now >= b->slow_until && reach_all;
		if (hl && !b->reach_now)
			b->reach_since = s->now;
		b->reach_now = hl;
	}
	if (s->cur >= 0) {
		if (!writable(s, (size_t)s->cur)) {
			if (!s->lost_at)
				s->lost_at = s->now;
		} else {
			s->lost_at = 0;
		}
	}
}

static void
check_world(struct sim *s)
{
	int w1 = -1, w2 = -1, v1 = -1, v2 = -1;
	int holders = 0;

	if (s->violated)
		return;
	update_elig(s);
	/* Invariant 1: at most one writable backend. */
	for (size_t bi = 0; bi < s->nb; bi++) {
		if (!writable(s, bi))
			continue;
		if (w1 < 0)
			w1 = (int)bi;
		else
			w2 = (int)bi;
	}
	if (w2 >= 0) {
		violation(s, "inv1 two writable backends: %u (timeline %" PRIu32 ", lsn %" PRIu64
			  ") and %u (timeline %" PRIu32 ", lsn %" PRIu64 ")",
			  s->b[w1].id, s->b[w1].tli, s->b[w1].lsn, s->b[w2].id, s->b[w2].tli,
			  s->b[w2].lsn);
		return;
	}
	/* ... and through the VIP: the holders' own backends. */
	for (size_t i = 0; i < s->n; i++) {
		struct speer *p = &s->p[i];

		if (p->st == PS_DOWN || !wd_has_lease(p->wd, lnow(s, i)))
			continue;
		holders++;
		if (p->fcfg.vip_follow == FO_VIP_PRIMARY && !fo_vip_allowed(p->fo))
			continue;
		if (!has_backend(s, i) || !writable(s, i))
			continue;
		if (v1 < 0)
			v1 = (int)i;
		else
			v2 = (int)i;
	}
	if (holders > 1) {
		violation(s, "election: %d peers hold a valid lease at once", holders);
		return;
	}
	if (v2 >= 0)
		violation(s, "inv1 two backends writable through the VIP: %u and %u",
			  s->b[v1].id, s->b[v2].id);
}

/* ---- network ------------------------------------------------------------ */

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
	uint32_t slot;

	if (!l->up || rng_chance(&s->r_net, l->drop_ppm)) {
		s->st.drops++;
		return;
	}
	slot = msg_alloc(s);
	memcpy(&s->pool[slot].m, m, offsetof(struct wd_msg, ext) + m->ext_len);
	s->pool[slot].inc = s->p[from].inc;
	push(s, s->now + net_delay(s), EV_DELIVER, slot, (uint32_t)from, (uint16_t)to, 0);
}

/* ---- forward declarations ---------------------------------------------- */

static void after_wd(struct sim *s, size_t i);
static void after_fo(struct sim *s, size_t i);
static void start_check(struct sim *s, size_t i, size_t bi, uint64_t at);
static void host_crash(struct sim *s, size_t h, const char *why);
static void quiet_reset(struct sim *s);

/* ---- timers -------------------------------------------------------------- */

static void
arm_wake(struct sim *s, size_t i)
{
	struct speer *p = &s->p[i];
	uint64_t w, l = lnow(s, i);

	if (p->st != PS_UP)
		return;
	w = wd_next_wakeup(p->wd);
	if (w != p->wake_local) {
		if (w > l + 600000) {
			violation(s, "progress: peer %u election wakeup %" PRIu64 " ms ahead",
				  p->id, w - l);
			return;
		}
		p->wake_local = w;
		p->wake_gen++;
		push(s, real_at_local(p, s->now, w), EV_WAKE, (uint32_t)i, p->wake_gen, 0, 0);
	}
	w = fo_next_wakeup(p->fo);
	if (w != p->fowake_local) {
		p->fowake_local = w;
		p->fowake_gen++;
		if (w != UINT64_MAX) {
			if (w > l + 3600000) {
				violation(s, "progress: peer %u failover wakeup %" PRIu64 " ms ahead",
					  p->id, w - l);
				return;
			}
			push(s, real_at_local(p, s->now, w), EV_FOWAKE, (uint32_t)i,
			     p->fowake_gen, 0, 0);
		}
	}
}

/* ---- hooks --------------------------------------------------------------- */

static int
hook_alloc(struct sim *s)
{
	for (int k = 0; k < MAXHOOKS; k++)
		if (!s->hooks[k].used)
			return k;
	return -1;
}

static void
hook_maybe_free(struct shook *h)
{
	if (!h->act_pending && !h->done_pending)
		h->used = false;
}

/* Carries out one hook effect of peer i's failover: starts the hook. */
static void
start_hook(struct sim *s, size_t i, const struct fo_effect *e)
{
	struct speer *p = &s->p[i];
	struct hookcfg *hc = &s->hk[e->hook];
	struct shook *h;
	int k;
	uint64_t dur, done_at;
	int bi = s->bidx_of[e->backend];
	int ci = e->new_primary ? s->bidx_of[e->new_primary] : -1;
	int fo_k = -1;
	bool op_fence = false;

	s->st.hooks[e->hook]++;
	/* Where hooks run and with what (orch.h): stop on the backend's own peer. */
	if (bi == 0xff || (e->new_primary && ci == 0xff)) {
		violation(s, "hook %s from peer %u names an unknown backend %u / %u",
			  hook_name(e->hook), p->id, e->backend, e->new_primary);
		return;
	}
	if (e->hook == FO_HOOK_STOP && s->b[bi].host != i) {
		violation(s, "hook stop of backend %u runs on peer %u, not on its own peer",
			  e->backend, p->id);
		return;
	}
	if (e->hook != FO_HOOK_STOP && e->term != wd_term(p->wd)) {
		violation(s, "hook %s of peer %u carries term %" PRIu64 ", its election is in term %" PRIu64,
			  hook_name(e->hook), p->id, e->term, wd_term(p->wd));
		return;
	}
	if (e->hook == FO_HOOK_PROMOTE) {
		const struct fo_record *r = fo_record(p->fo);
		int oi = s->bidx_of[e->old_primary];
		struct sbackend *c = &s->b[ci];
		int fk;

		/*
		 * Invariant 2: the old primary is fenced or stopped right now.
		 * (Two-node mode: a lone peer's lost record can have the other
		 * promote again a candidate that is primary already, its old
		 * primary rejoined to it: noted.)
		 */
		if (oi != 0xff && s->b[oi].st == BS_RUNNING && !s->b[oi].primary &&
		    s->b[oi].upstream == ci && c->primary && two_node_note(s))
			trace(s, "  note: promote hook for %u, primary already, its old primary %u "
			      "rejoined to it", e->new_primary, e->old_primary);
		else if (oi == 0xff || (s->b[oi].st != BS_FENCED && s->b[oi].st != BS_STOPPED))
			violation(s, "inv2 promote hook for %u starts while the old primary %u is %s%s",
				  e->new_primary, e->old_primary,
				  oi == 0xff ? "unknown" : bst_names[s->b[oi].st],
				  oi != 0xff && writable(s, (size_t)oi) ? " and writable" : "");
		for (size_t x = 0; x < s->nb && !s->violated; x++)
			if ((int)x != ci && writable(s, x))
				violation(s, "inv2 promote hook for %u starts while backend %u is writable",
					  e->new_primary, s->b[x].id);
		/* ... and the fence was confirmed: the record says so. */
		if (!s->violated && !(fo_record_flags(r, e->old_primary) & FO_B_FENCED))
			violation(s, "inv2 promote hook for %u starts but the record does not show the "
				  "old primary %u fenced", e->new_primary, e->old_primary);
		/* Invariant 5: never a backend that needs a rejoin (or cannot be one). */
		if (!s->violated && (fo_record_flags(r, e->new_primary) & FO_B_NEEDS_REJOIN))
			violation(s, "inv5 promote hook for %u, flagged needs-rejoin in the record",
				  e->new_primary);
		if (!s->violated && !c->primary && c->tainted)
			violation(s, "inv5 promote hook for %u, whose history diverged from the current "
				  "primary's (it missed a follow or was a primary itself)",
				  e->new_primary);
		if (!s->violated && (c->prio == 0 || c->foreign))
			violation(s, "inv5 promote hook for %u: %s", e->new_primary,
				  c->prio == 0 ? "priority 0" : "another cluster's system id");
		/*
		 * Invariant 7: an operator-fenced backend is never promoted
		 * before a rejoin. (Two-node mode: a lone peer's record with
		 * the flag may be lost to the other's; noted.)
		 */
		if (!s->violated && c->opfenced && two_node_note(s)) {
			trace(s, "  note: promote hook for %u, which the operator fenced (no rejoin since)",
			      e->new_primary);
			c->opfenced = false;
		} else if (!s->violated && c->opfenced)
			violation(s, "inv7 promote hook for %u, which the operator fenced (no rejoin since)",
				  e->new_primary);
		/*
		 * Invariant 6: a cancelled switchover promotes nothing, once
		 * a majority holds the cancel. (A cancel the coordinator wrote
		 * but no majority held before it died is not a decision: the
		 * next coordinator goes on with the switchover. Noted.)
		 */
		fk = find_fo_log(s, r);
		if (!s->violated && fk >= 0 && s->fo_log[fk].cancelled &&
		    s->fo_log[fk].cancel_committed)
			violation(s, "inv6 promote hook for %u in switchover %" PRIu64 ".%" PRIu64
				  ", whose cancel a majority held", e->new_primary, r->failover_term,
				  r->failover_seq);
		else if (!s->violated && fk >= 0 && s->fo_log[fk].cancelled) {
			s->st.sw_cancel_lost++;
			s->fo_log[fk].cancelled = false;
			trace(s, "  note: switchover %" PRIu64 ".%" PRIu64 " goes on: its cancel (v%"
			      PRIu64 ".%" PRIu64 ") was lost", r->failover_term, r->failover_seq,
			      s->fo_log[fk].cancel_term, s->fo_log[fk].cancel_seq);
		}
		if (s->violated)
			return;
		if (fk >= 0)
			s->fo_log[fk].promote_started = true;
		fo_k = fk;
	}
	/*
	 * Invariant 7: a coordinator does not run rejoin_command against a
	 * backend while its own operator fence of it has not ended.
	 */
	if (e->hook == FO_HOOK_REJOIN) {
		for (int x = 0; x < MAXHOOKS; x++) {
			const struct shook *o = &s->hooks[x];

			/* Not reported yet: it has not ended as far as orch.c can know. */
			bool running = o->done_pending || (o->out == HO_OK && o->act_pending);

			if (o->used && o->op_fence && running && o->backend == e->backend &&
			    o->peer == i && o->inc == p->inc && o->term == e->term) {
				violation(s, "inv7 rejoin hook for %u starts while the operator fence of it, "
					  "started by the same coordinator in term %" PRIu64 ", runs",
					  e->backend, e->term);
				return;
			}
		}
	}
	/*
	 * The operator fence (FO_CMD_FENCE): any fence hook that is not the
	 * fencing step's own. Invariant 7: never against the recorded
	 * primary, nor a backend a failover in progress acts on, and the
	 * backend is flagged needs-rejoin before the hook starts.
	 */
	if (e->hook == FO_HOOK_FENCE) {
		const struct fo_record *r = fo_record(p->fo);

		op_fence = !(r->step == FO_STEP_FENCING && e->backend == r->old_primary);
		if (op_fence) {
			s->st.opfences++;
			if (e->backend == r->primary)
				violation(s, "inv7 operator fence of backend %u, the recorded primary "
					  "(step %s)", e->backend, fo_step_name((enum fo_step)r->step));
			else if (r->step != FO_STEP_NONE && e->backend == r->candidate)
				violation(s, "inv7 operator fence of backend %u, the candidate of the "
					  "failover in progress", e->backend);
			else if (!(fo_record_flags(r, e->backend) & FO_B_NEEDS_REJOIN))
				violation(s, "inv7 operator fence of backend %u starts, but the record "
					  "does not flag it needs-rejoin", e->backend);
			if (s->violated)
				return;
			s->b[bi].opfenced = true;
			s->b[bi].opfenced_at = s->now;
		}
	}
	/*
	 * Invariant 4: one failover per failure. A failover that was started
	 * but never committed does nothing; the first hook is what counts.
	 */
	if (e->hook == FO_HOOK_STOP || (e->hook == FO_HOOK_FENCE && !op_fence) ||
	    e->hook == FO_HOOK_PROMOTE) {
		const struct fo_record *r = fo_record(p->fo);
		int oi = s->bidx_of[r->old_primary];
		int ck = find_fo_log(s, r);

		/*
		 * A stop for a switchover cancelled already: its peer acts on
		 * a record it holds from before the cancel (it was down or cut
		 * off, and heard a stale peer first). Noted, unless
		 * --strict-cancel (open finding: README-failover.md).
		 */
		if (e->hook == FO_HOOK_STOP && ck >= 0 && s->fo_log[ck].cancelled &&
		    !s->o->strict_cancel) {
			s->st.sw_stale_stops++;
			trace(s, "  note: a stop for switchover %" PRIu64 ".%" PRIu64 ", cancelled already",
			      r->failover_term, r->failover_seq);
		} else if (r->step != FO_STEP_NONE && oi != 0xff && oi == s->cur) {
			bool other = s->epoch_fterm && (s->epoch_fterm != r->failover_term ||
							s->epoch_fseq != r->failover_seq);

			if (other && !s->o->strict_two_node &&
			    s->mode == M_TWO_NODE) {
				s->st.second_failovers++;
				trace(s, "  note: a second failover (failover_term %" PRIu64 ") of primary %u acts",
				      r->failover_term, r->old_primary);
			} else if (other)
				violation(s, "inv4 a second failover (failover_term %" PRIu64 ") of primary %u "
					  "acts (%s), after failover %" PRIu64 " of it did", r->failover_term,
					  r->old_primary, hook_name(e->hook), s->epoch_fterm);
			s->epoch_fterm = r->failover_term;
			s->epoch_fseq = r->failover_seq;
			if (s->violated)
				return;
		}
	}
	k = hook_alloc(s);
	if (k < 0) {
		fprintf(stderr, "fosim: seed %" PRIu64 ": too many hooks in flight\n", s->seed);
		exit(2);
	}
	h = &s->hooks[k];
	memset(h, 0, sizeof(*h));
	h->used = true;
	h->gen = ++s->hook_gen;
	h->peer = i;
	h->inc = p->inc;
	h->kind = e->hook;
	h->backend = e->backend;
	h->newp = e->new_primary;
	h->oldp = e->old_primary;
	h->term = e->term;
	h->started = s->now;
	h->clean = e->hook == FO_HOOK_STOP && e->clean;
	h->op_fence = op_fence;
	h->fo_k = fo_k;
	if (ci != 0xff && e->new_primary)
		h->tgt_gen = s->b[ci].gen;
	/* A custom stop_command may not print the report line. */
	if (h->clean)
		h->no_report = rng_chance(&s->r_op, s->noreport_ppm);
	if (s->reliable_phase || s->o->reliable)
		h->out = HO_OK;
	else if (rng_chance(&s->r_hook, hc->fail_ppm))
		h->out = HO_FAIL;
	else if (rng_chance(&s->r_hook, hc->hang_ppm))
		h->out = HO_HANG;
	else if (rng_chance(&s->r_hook, hc->late_ppm))
		h->out = HO_LATE;
	else
		h->out = HO_OK;
	dur = rng_range(&s->r_hook, 1000, (uint64_t)hc->dur_max_ms * 1000);
	switch (h->out) {
	case HO_OK:
		h->act_pending = true;
		push(s, s->now + dur, EV_HOOK_ACT, (uint32_t)k, h->gen, 0, 0);
		break;
	case HO_FAIL:
		h->done_pending = true;
		push(s, s->now + dur, EV_HOOK_DONE, (uint32_t)k, h->gen, 0, 0);
		break;
	case HO_HANG:
	case HO_LATE:
		s->st.hooks_hung += h->out == HO_HANG;
		s->st.hooks_late += h->out == HO_LATE;
		done_at = s->now + (uint64_t)s->hook_timeout_ms * 1000;
		h->done_pending = true;
		push(s, done_at, EV_HOOK_DONE, (uint32_t)k, h->gen, 0, 0);
		if (h->out == HO_LATE) {
			h->act_pending = true;
			push(s, done_at + rng_range(&s->r_hook, 0, LATE_MAX_US), EV_HOOK_ACT,
			     (uint32_t)k, h->gen, 0, 0);
		}
		break;
	}
	trace(s, "  %u HOOK %s backend=%u new=%u old=%u term=%" PRIu64 " (will: %s)%s%s%s",
	      p->id, hook_name(h->kind), h->backend, h->newp, h->oldp, h->term,
	      hout_names[h->out], h->clean ? " clean" : "", h->no_report ? " no-report" : "",
	      h->op_fence ? " operator" : "");
}

/* The host a hook's action needs, or SIZE_MAX when it acts out of band. */
static size_t
hook_exec_host(const struct sim *s, const struct shook *h)
{
	int bi = s->bidx_of[h->backend];

	switch (h->kind) {
	case FO_HOOK_FENCE:
		return s->power_fence ? SIZE_MAX : s->b[bi].host;
	case FO_HOOK_PROMOTE:
		return s->b[s->bidx_of[h->newp]].host;
	default:
		return s->b[bi].host;
	}
}

/* What a hook does to the world. Returns whether it succeeded. */
static bool
hook_act(struct sim *s, struct shook *h)
{
	size_t hh = hook_exec_host(s, h);
	int bi = s->bidx_of[h->backend];
	struct sbackend *b = &s->b[bi];

	/* Remote actions go over ssh from the runner's host. */
	if (hh != SIZE_MAX) {
		if (!s->h[hh].up)
			return false;
		if (hh != h->peer && !s->reach[h->peer][hh])
			return false;
	}
	switch (h->kind) {
	case FO_HOOK_STOP:
		h->report_lsn = 0;
		if (h->clean && b->st == BS_RUNNING) {
			/*
			 * A clean stop (switchover): CHECKPOINT, pg_ctl stop -m
			 * fast. Its final LSN is where it is now; the WAL senders
			 * give every connected standby (streaming from it, not
			 * cut off from its host) the WAL up to there before the
			 * server ends. The script then reports that LSN.
			 */
			uint64_t fin = blsn(b);

			for (size_t x = 0; x < s->nb; x++) {
				struct sbackend *o = &s->b[x];

				if ((int)x == bi || !serving(s, x) || o->primary || o->foreign ||
				    o->upstream != bi || o->tli != b->tli ||
				    !s->repl[o->host][b->host] || s->now < o->stream_pause_until)
					continue;
				if (o->recv < fin) {
					trace(s, "WORLD backend %u receives %" PRIu64 " bytes more from %u "
					      "at its shutdown", o->id, fin - o->recv, b->id);
					o->recv = fin;
				}
			}
			s->st.clean_stops++;
			if (!h->no_report) {
				h->report_lsn = fin;
				s->st.clean_reports++;
			}
			b->st = BS_STOPPED;
			b->gen++;
			trace(s, "WORLD backend %u stopped cleanly by stop_command at lsn %" PRIu64
			      "%s", b->id, fin, h->no_report ? " (the script reports no LSN)" : "");
			return true;
		}
		/* Not running: stopped already, in either mode (no report then). */
		if (b->st == BS_RUNNING || b->st == BS_CRASHED) {
			b->st = BS_STOPPED;
			b->gen++;
		}
		trace(s, "WORLD backend %u stopped by stop_command", b->id);
		return true;
	case FO_HOOK_FENCE:
		b->gen++;
		/*
		 * Marked at its start already; a late one (it reported a
		 * failure, then acted) after a rejoin the coordinator could
		 * let run is the hook contract's to answer for, not inv7's.
		 */
		if (h->op_fence)
			s->st.opfences_acted++;
		if (s->power_fence) {
			b->st = BS_FENCED;
			if (s->h[b->host].up)
				host_crash(s, b->host, "fenced (power off)");
			trace(s, "WORLD backend %u fenced: host powered off", b->id);
		} else {
			b->st = BS_FENCED;
			trace(s, "WORLD backend %u fenced: PostgreSQL killed", b->id);
		}
		return true;
	case FO_HOOK_PROMOTE: {
		size_t ci = s->bidx_of[h->newp];
		struct sbackend *c = &s->b[ci];

		if (c->st != BS_RUNNING)
			return false;
		/*
		 * A promotion requested of a server run that has ended since
		 * (stopped, fenced, crashed, rejoined) is void: PostgreSQL
		 * removes a leftover promote signal when it starts.
		 */
		if (c->gen != h->tgt_gen && h->out == HO_LATE)
			return false;
		if (c->primary)
			return s->idem_promote;
		/*
		 * Invariant 6: a switchover that was not degraded loses
		 * nothing: the target has the old primary's WAL up to its
		 * final LSN (the old primary is stopped: inv2).
		 */
		if (h->fo_k >= 0 && s->fo_log[h->fo_k].kind == FO_KIND_SWITCHOVER &&
		    !s->fo_log[h->fo_k].degraded && h->oldp) {
			const struct sbackend *o = &s->b[s->bidx_of[h->oldp]];

			s->st.sw_lossless_checked++;
			if (o->primary && blsn(c) < o->lsn)
				violation(s, "inv6 switchover %" PRIu64 ".%" PRIu64 " promotes %u at lsn %"
					  PRIu64 ", behind the old primary %u's final lsn %" PRIu64
					  " (%" PRIu64 " bytes lost), with no switchover-degraded",
					  s->fo_log[h->fo_k].fterm, s->fo_log[h->fo_k].fseq, c->id,
					  blsn(c), o->id, o->lsn, o->lsn - blsn(c));
		}
		/* Promotion replays what was received, then opens a new timeline there. */
		c->lsn = blsn(c);
		c->primary = true;
		c->tli++;
		c->promote_lsn = c->lsn;
		c->upstream = -1;
		world_promoted(s, ci, h);
		return true;
	}
	case FO_HOOK_FOLLOW: {
		size_t ci = s->bidx_of[h->newp];
		struct sbackend *c = &s->b[ci];

		if (b->st != BS_RUNNING || b->primary || !serving(s, ci) || !c->primary)
			return false;
		if (b->tli < c->tli && blsn(b) > c->promote_lsn) {
			/* Diverged: the follow script rewinds it first. */
			b->recv = b->replay = c->promote_lsn;
		}
		b->upstream = (int)ci;
		b->tli = c->tli;
		if ((int)ci == s->cur)
			b->tainted = false;
		trace(s, "WORLD backend %u follows %u (timeline %" PRIu32 ")", b->id, c->id, c->tli);
		return true;
	}
	case FO_HOOK_REJOIN: {
		size_t ri = s->bidx_of[h->newp];
		struct sbackend *r = &s->b[ri];

		if (!serving(s, ri) || !r->primary || b->foreign)
			return false;
		b->st = BS_RUNNING;
		b->primary = false;
		b->upstream = (int)ri;
		b->tli = r->tli;
		b->recv = b->replay = r->promote_lsn < blsn(b) ? r->promote_lsn : blsn(b);
		b->gen++;
		if ((int)ri == s->cur)
			b->tainted = false;
		/*
		 * Rejoined. (An operator fence of another term that acts
		 * late may still stop it: the hook contract allows that.)
		 */
		if (h->started > b->opfenced_at)
			b->opfenced = false;
		s->st.rejoins_ok++;
		trace(s, "WORLD backend %u rejoined as a standby of %u", b->id, r->id);
		return true;
	}
	default:
		return false;
	}
}

static void report_hook(struct sim *s, size_t i, uint32_t slot, uint32_t gen);

static void
ev_hook_act(struct sim *s, uint32_t slot, uint32_t gen)
{
	struct shook *h = &s->hooks[slot];
	size_t hh;

	if (!h->used || h->gen != gen || !h->act_pending)
		return;
	hh = hook_exec_host(s, h);
	/* A frozen host does nothing until it thaws: the action waits. */
	if (hh != SIZE_MAX && s->h[hh].up && s->h[hh].frozen) {
		push(s, s->now + 50000, EV_HOOK_ACT, slot, gen, 0, 0);
		return;
	}
	h->act_pending = false;
	h->act_ok = hook_act(s, h);
	trace(s, "hook %s of peer %u for backend %u acted: %s%s", hook_name(h->kind),
	      s->p[h->peer].id, h->backend, h->act_ok ? "done" : "could not",
	      h->out == HO_LATE ? " (after reporting a failure)" : "");
	if (h->out == HO_OK) {
		h->done_pending = true;
		push(s, s->now + rng_range(&s->r_hook, 0, 20000), EV_HOOK_DONE, slot, gen, 0, 0);
	}
	hook_maybe_free(h);
	check_world(s);
}

static void
ev_hook_done(struct sim *s, uint32_t slot, uint32_t gen)
{
	struct shook *h = &s->hooks[slot];
	struct speer *p;

	if (!h->used || h->gen != gen || !h->done_pending)
		return;
	h->done_pending = false;
	p = &s->p[h->peer];
	if (p->st == PS_DOWN || p->inc != h->inc) {
		hook_maybe_free(h);
		return;
	}
	if (p->st == PS_PAUSED) {
		h->done_pending = true;	/* still ours until reported */
		if (p->pq_len < PQ_CAP) {
			p->pq[(p->pq_head + p->pq_len) % PQ_CAP] =
				(struct pin){ .kind = PIN_HOOK, .slot = slot, .gen = gen };
			p->pq_len++;
		}
		return;
	}
	report_hook(s, h->peer, slot, gen);
}

/* The runner's daemon died: its hooks are killed (PR_SET_PDEATHSIG). */
static void
kill_hooks_of(struct sim *s, size_t i)
{
	for (int k = 0; k < MAXHOOKS; k++) {
		struct shook *h = &s->hooks[k];

		if (!h->used || h->peer != i)
			continue;
		h->done_pending = false;
		/* An action not yet triggered dies with it; a "late" one was. */
		if (h->out != HO_LATE)
			h->act_pending = false;
		hook_maybe_free(h);
	}
}

/* ---- the failover's effects --------------------------------------------- */

static void
note_event(struct sim *s, size_t i, const struct fo_effect *e)
{
	struct speer *p = &s->p[i];
	const struct fo_record *r = fo_record(p->fo);
	const char *t = e->event;
	int k;

	trace(s, "  %u EVENT %s %s", p->id, t, e->text);
	/*
	 * The midstep fault: the coordinator dies or freezes right after a
	 * step of a failover, so that the next one must resume it.
	 */
	if (!s->quiet && s->fault_w[F_MIDSTEP] &&
	    (!strcmp(t, "failover-started") || !strcmp(t, "backend-fence-done") ||
	     !strcmp(t, "candidate-chosen") || !strcmp(t, "promote-started") ||
	     !strcmp(t, "promote-verified") || !strcmp(t, "follow-started") ||
	     !strcmp(t, "backend-stop-started") ||
	     (!strcmp(t, "backend-stopped") && r->kind == FO_KIND_SWITCHOVER) ||
	     !strcmp(t, "switchover-degraded") || !strcmp(t, "switchover-cancelled")) &&
	    rng_chance(&s->r_fault, 250000))
		push(s, s->now + rng_range(&s->r_fault, 0, 40000), EV_MIDSTEP, (uint32_t)i,
		     p->inc, 0, 0);
	if (!strcmp(t, "failover-started")) {
		int oi = s->bidx_of[r->old_primary];

		s->st.fo_started++;
		if (s->nfo_log < FO_LOG_MAX && find_fo_log(s, r) < 0) {
			k = (int)s->nfo_log++;
			s->fo_log[k].fterm = r->failover_term;
			s->fo_log[k].fseq = r->failover_seq;
			s->fo_log[k].fence_at = 0;
			s->fo_log[k].old = r->old_primary;
			s->fo_log[k].sampled = oi != 0xff ? p->hv[oi].max_primary_lsn : 0;
			s->fo_log[k].kind = r->kind;
			s->fo_log[k].target = r->target;
			s->fo_log[k].force = r->force;
			s->fo_log[k].degraded = s->fo_log[k].cancelled = false;
			s->fo_log[k].promote_started = false;
			if (r->kind == FO_KIND_SWITCHOVER)
				s->st.sw_started++;
			else if (r->kind == FO_KIND_MANUAL) {
				s->st.man_started++;
				s->st.man_forced += r->force;
			}
		}
		if (oi == 0xff) {
			violation(s, "failover-started names an unknown backend %u", r->old_primary);
			return;
		}
		/*
		 * L2: no failover of a primary that is up and reachable by every
		 * peer: for long enough that every failed view of it is gone, or
		 * ever since it was promoted (views older than that are stale).
		 */
		if (r->kind == FO_KIND_FAILOVER && s->b[oi].healthy_now &&
		    (s->now - s->b[oi].healthy_since >= s->l2_window_us ||
		     (s->b[oi].healthy_since <= s->b[oi].primary_since &&
		      s->b[oi].reach_since + s->l2_window_us <= s->b[oi].primary_since)))
			violation(s, "L2 false failover: backend %u has been a healthy primary, reachable "
				  "by every peer, for %" PRIu64 " ms%s", r->old_primary,
				  (s->now - s->b[oi].healthy_since) / 1000,
				  s->b[oi].healthy_since <= s->b[oi].primary_since ?
				  ", ever since it was promoted" : "");
	} else if (!strcmp(t, "backend-fence-done")) {
		k = find_fo_log(s, r);
		if (k >= 0 && !s->fo_log[k].fence_at)
			s->fo_log[k].fence_at = s->now;
	} else if (!strcmp(t, "failover-done")) {
		s->st.fo_done++;
		s->st.sw_done += strstr(e->text, " kind=switchover") != NULL;
	} else if (!strcmp(t, "switchover-refused") || !strcmp(t, "manual-failover-refused")) {
		s->st.op_refused++;
	} else if (!strcmp(t, "switchover-degraded")) {
		s->st.sw_degraded++;
		k = event_fo_log(s, e->text);
		if (k >= 0)
			s->fo_log[k].degraded = true;
	} else if (!strcmp(t, "switchover-cancelled")) {
		/*
		 * Invariant 6: a cancelled switchover leaves the old primary
		 * the recorded primary, not flagged needs-rejoin, and has
		 * promoted nothing (nor will: see start_hook).
		 */
		long old = event_num(e->text, "old");

		s->st.sw_cancelled++;
		k = event_fo_log(s, e->text);
		if (k >= 0) {
			s->fo_log[k].cancel_term = r->term;
			s->fo_log[k].cancel_seq = r->seq;
			s->fo_log[k].cancel_committed = false;
		}
		if (k >= 0 && s->fo_log[k].promote_started && two_node_note(s))
			trace(s, "  note: switchover %" PRIu64 ".%" PRIu64 " cancelled after a promote "
			      "hook of it started", s->fo_log[k].fterm, s->fo_log[k].fseq);
		else if (k >= 0 && s->fo_log[k].promote_started)
			violation(s, "inv6 switchover %" PRIu64 ".%" PRIu64 " cancelled after a promote "
				  "hook of it started", s->fo_log[k].fterm, s->fo_log[k].fseq);
		else if (k >= 0 && s->fo_log[k].kind != FO_KIND_SWITCHOVER)
			violation(s, "inv6 switchover-cancelled for failover %" PRIu64 ".%" PRIu64
				  " of kind %s", s->fo_log[k].fterm, s->fo_log[k].fseq,
				  fo_kind_name((enum fo_kind)s->fo_log[k].kind));
		else if (old <= 0 || r->primary != old)
			violation(s, "inv6 switchover-cancelled (old=%ld) leaves backend %u the "
				  "recorded primary", old, r->primary);
		else if (r->step == FO_STEP_NONE &&
			 (fo_record_flags(r, (uint8_t)old) & FO_B_NEEDS_REJOIN))
			violation(s, "inv6 switchover-cancelled leaves the old primary %ld flagged "
				  "needs-rejoin", old);
		if (k >= 0) {
			s->fo_log[k].cancelled = true;
			/*
			 * It did not replace the primary: a failover of the
			 * same primary later (its stop acted after all, say)
			 * is not a second failover of one failure.
			 */
			if (s->epoch_fterm == s->fo_log[k].fterm &&
			    s->epoch_fseq == s->fo_log[k].fseq)
				s->epoch_fterm = 0;
		}
	} else if (!strcmp(t, "failover-refused")) {
		s->st.fo_refused++;
	} else if (!strcmp(t, "failover-blocked")) {
		s->st.fo_blocked++;
	} else if (!strcmp(t, "two-primaries")) {
		s->st.two_primaries++;
	} else if (!strcmp(t, "coordinator-transfer")) {
		s->st.transfers++;
	} else if (!strcmp(t, "candidate-chosen") && !strstr(e->text, "already_primary=yes")) {
		/*
		 * Invariant 3 (S4), judged on the world as it is at the choice
		 * (not when a coordinator records a promotion already done).
		 */
		int ci = s->bidx_of[r->candidate];
		struct sbackend *c;
		uint64_t fence_at, sampled;

		if (ci == 0xff) {
			violation(s, "candidate-chosen names an unknown backend %u", r->candidate);
			return;
		}
		c = &s->b[ci];
		s->st.s4_checked++;
		k = find_fo_log(s, r);
		fence_at = k >= 0 ? s->fo_log[k].fence_at : 0;
		sampled = k >= 0 ? s->fo_log[k].sampled : 0;
		/*
		 * max_lag holds for every kind (a manual failover too) but a
		 * forced one: pgvigilctl failover --force accepts the loss.
		 */
		if (r->force && r->kind == FO_KIND_MANUAL)
			;
		else if (blsn(c) + p->fcfg.max_lag < sampled)
			violation(s, "inv3 candidate %u at lsn %" PRIu64 " is more than max_lag %" PRIu64
				  " behind the primary's lsn %" PRIu64 " its coordinator sampled (%s)",
				  c->id, blsn(c), p->fcfg.max_lag, sampled,
				  fo_kind_name((enum fo_kind)r->kind));
		else if (blsn(c) + p->fcfg.max_lag < r->last_primary_lsn)
			violation(s, "inv3 candidate %u at lsn %" PRIu64 " is more than max_lag %" PRIu64
				  " behind the record's last primary lsn %" PRIu64 " (%s)", c->id, blsn(c),
				  p->fcfg.max_lag, r->last_primary_lsn,
				  fo_kind_name((enum fo_kind)r->kind));
		/* The standby the operator asked for is preferred to a better one. */
		if (s->violated || !fence_at || (r->target && r->candidate == r->target))
			return;
		for (size_t x = 0; x < s->nb; x++) {
			struct sbackend *o = &s->b[x];
			bool better;

			if ((int)x == ci || o->id == r->old_primary || !o->elig_now ||
			    o->elig_since + s->s4_margin_us > fence_at || o->prio == 0 ||
			    o->foreign || o->tainted ||
			    (fo_record_flags(r, o->id) & FO_B_NEEDS_REJOIN))
				continue;
			s->st.s4_compared++;
			better = o->tli > c->tli || (o->tli == c->tli && blsn(o) > blsn(c)) ||
				 (o->tli == c->tli && blsn(o) == blsn(c) &&
				  (o->prio > c->prio || (o->prio == c->prio && o->id < c->id)));
			if (better)
				violation(s, "inv3 candidate %u (timeline %" PRIu32 ", lsn %" PRIu64 ", priority %u) "
					  "chosen over eligible standby %u (timeline %" PRIu32 ", lsn %" PRIu64
					  ", priority %u), reachable by every peer since %.3f ms",
					  c->id, c->tli, blsn(c), c->prio, o->id, o->tli, blsn(o), o->prio,
					  (double)o->elig_since / 1000.0);
		}
	}
}

/* Whether a majority of peers now hold each cancel (invariant 6). */
static void
note_cancel_commit(struct sim *s)
{
	for (size_t k = 0; k < s->nfo_log; k++) {
		size_t n = 0;

		/*
		 * Once a record of a later term exists, a coordinator of that
		 * term has read a majority's records already: a majority that
		 * comes to hold the cancel after that does not commit it (as in
		 * Raft, an older term's entry is not committed by its count).
		 */
		if (!s->fo_log[k].cancelled || s->fo_log[k].cancel_committed ||
		    s->max_rec_term > s->fo_log[k].cancel_term)
			continue;
		for (size_t i = 0; i < s->n; i++) {
			const struct fo_record *d = &s->p[i].fdisk;

			/*
			 * That version or a later one of its term (its writer's,
			 * built on it). A later term's record need not be: the
			 * flag is set at the moment a majority holds it.
			 */
			if (d->term == s->fo_log[k].cancel_term && d->seq >= s->fo_log[k].cancel_seq)
				n++;
		}
		if (n >= s->n / 2 + 1)
			s->fo_log[k].cancel_committed = true;
	}
}

/* Carries out peer i's failover effects, as failover.c does. */
static void
carry_out_fo(struct sim *s, size_t i)
{
	struct speer *p = &s->p[i];
	const struct fo_effect *e;
	size_t n = fo_effects(p->fo, &e);
	uint8_t ext[WD_EXT_MAX];
	size_t len;
	char buf[400];

	for (size_t k = 0; k < n && !s->violated; k++) {
		switch (e[k].kind) {
		case FO_EFF_PERSIST: {
			const struct fo_record *r = &e[k].record;

			if (s->tracing) {
				fmt_rec(buf, sizeof(buf), r);
				trace(s, "  %u persist %s", p->id, buf);
			}
			if (r->term < p->fdisk.term ||
			    (r->term == p->fdisk.term && r->seq < p->fdisk.seq))
				violation(s, "record: peer %u persists version %" PRIu64 ".%" PRIu64
					  " over the newer %" PRIu64 ".%" PRIu64, p->id, r->term, r->seq,
					  p->fdisk.term, p->fdisk.seq);
			p->fdisk = *r;
			if (r->term > s->max_rec_term)
				s->max_rec_term = r->term;
			note_cancel_commit(s);
			/*
			 * Invariant 5 (S8) on the record: a coordinator never records
			 * as the primary, with no failover in progress, a backend whose
			 * history diverged from the current primary's.
			 */
			if (r->step == FO_STEP_NONE && r->primary && wd_has_lease(p->wd, lnow(s, i))) {
				int bi = s->bidx_of[r->primary];

				if (bi != 0xff && s->b[bi].tainted && !s->o->strict_two_node &&
				    s->mode == M_TWO_NODE) {
					s->st.lost_records++;
					trace(s, "  note: %u records backend %u as the primary, whose history "
					      "diverged", p->id, r->primary);
				} else if (bi != 0xff && s->b[bi].tainted)
					violation(s, "inv5 coordinator %u records backend %u as the primary, but "
						  "its history diverged (it failed over to %u, or missed a follow): "
						  "a record was lost", p->id, r->primary,
						  s->cur >= 0 ? s->b[s->cur].id : 0);
			}
			break;
		}
		case FO_EFF_HOOK:
			/* failover.c: a coordinator's hook starts only under a valid lease. */
			if (e[k].hook != FO_HOOK_STOP && !wd_has_lease(p->wd, lnow(s, i))) {
				s->st.hooks_gated++;
				trace(s, "  %u hook %s not started: no valid lease", p->id,
				      hook_name(e[k].hook));
				break;
			}
			start_hook(s, i, &e[k]);
			break;
		case FO_EFF_CHECK_NOW:
			for (size_t bi = 0; bi < s->nb; bi++) {
				struct hview *v = &p->hv[bi];

				if (v->inflight) {
					v->again = true;
				} else {
					v->gen++;
					start_check(s, i, bi, s->now);
				}
			}
			break;
		case FO_EFF_FLUSH:
			if (!s->o->no_flush)
				p->want_flush = true;
			break;
		case FO_EFF_TRANSFER:
			if (!s->o->no_transfer)
				p->want_transfer = e[k].peer;
			trace(s, "  %u TRANSFER to %u%s", p->id, e[k].peer,
			      s->o->no_transfer ? " (ignored)" : "");
			break;
		case FO_EFF_EVENT:
			note_event(s, i, &e[k]);
			break;
		default:
			violation(s, "effect: peer %u queued unknown failover effect %d", p->id,
				  (int)e[k].kind);
			break;
		}
	}
	if (s->violated)
		return;
	/* Nothing in memory that is not on disk (durable before visible). */
	if (!rec_eq(fo_record(p->fo), &p->fdisk)) {
		char b2[400];

		fmt_rec(buf, sizeof(buf), fo_record(p->fo));
		fmt_rec(b2, sizeof(b2), &p->fdisk);
		violation(s, "record: peer %u holds a record it did not persist: memory %s, disk %s",
			  p->id, buf, b2);
		return;
	}
	len = fo_ext(p->fo, ext, sizeof(ext));
	if (len == 0) {
		violation(s, "ext: peer %u's failover extension does not fit %d bytes", p->id,
			  WD_EXT_MAX);
		return;
	}
	wd_set_ext(p->wd, ext, (uint16_t)len);
}

/* ---- the election's effects ---------------------------------------------- */

static void
carry_out_wd(struct sim *s, size_t i)
{
	struct speer *p = &s->p[i];
	const struct wd_effect *effs;
	size_t n = wd_effects(p->wd, &effs);

	for (size_t k = 0; k < n && !s->violated; k++) {
		const struct wd_effect *e = &effs[k];
		size_t to;

		switch (e->kind) {
		case WD_EFF_PERSIST:
			if (e->durable.term < p->disk.term)
				violation(s, "election: durable term of peer %u decreased", p->id);
			p->disk = e->durable;
			break;
		case WD_EFF_SEND:
			to = s->idx_of[e->to];
			if (to == 0xff || to == i) {
				violation(s, "send: peer %u sends to id %u", p->id, e->to);
				break;
			}
			net_send(s, i, to, &e->msg);
			break;
		case WD_EFF_FENCE:
			to = s->idx_of[e->target];
			trace(s, "  %u FENCE peer %u (%s)", p->id, e->target, e->reason ? e->reason : "");
			if (s->mode != M_TWO_NODE || to == 0xff || to == i) {
				violation(s, "fence: peer %u fences %u outside two-node mode", p->id,
					  e->target);
				break;
			}
			push(s, s->now + rng_range(&s->r_fence, 10000, FENCE_HOOK_MAX_US),
			     EV_FENCE_DONE, (uint32_t)i, p->inc, (uint16_t)to,
			     rng_chance(&s->r_fence, s->fence_ok_ppm));
			break;
		case WD_EFF_ROLE:
			trace(s, "  %u ROLE %s term %" PRIu64 " leader %u (%s)", p->id,
			      wd_role_name(e->role), e->term, e->leader, e->reason ? e->reason : "");
			if (e->role == WD_CANDIDATE)
				s->st.elections++;
			else if (e->role == WD_LEADER)
				s->st.won++;
			break;
		default:
			violation(s, "effect: peer %u queued unknown election effect %d", p->id,
				  (int)e->kind);
			break;
		}
	}
}

/*
 * The glue after any call into peer i: the failover learns the election's
 * verdict after every election step (failover_set_coordinator), and its
 * flush and transfer effects go back into the election, until both are
 * quiet. Then the invariants and the timers.
 */
static void
settle(struct sim *s, size_t i, bool wd_step)
{
	struct speer *p = &s->p[i];
	int loops = 0;

	while (!s->violated && p->st == PS_UP) {
		uint64_t l = lnow(s, i);

		if (++loops > SETTLE_LOOP_MAX) {
			violation(s, "progress: peer %u: the election and the failover keep calling "
				  "each other (%d rounds)", p->id, loops);
			return;
		}
		if (wd_step) {
			wd_step = false;
			fo_set_coordinator(p->fo, l, wd_has_lease(p->wd, l), wd_term(p->wd));
			carry_out_fo(s, i);
			continue;
		}
		if (p->want_flush) {
			p->want_flush = false;
#ifdef FOSIM_HAVE_FLUSH
			wd_flush(p->wd, l);
			carry_out_wd(s, i);
			wd_step = true;
#endif
			continue;
		}
		if (p->want_transfer) {
			uint8_t t = p->want_transfer;

			p->want_transfer = 0;
#ifdef FOSIM_HAVE_TRANSFER
			wd_transfer(p->wd, l, t, "the VIP follows the primary");
			carry_out_wd(s, i);
			wd_step = true;
#else
			(void)t;
#endif
			continue;
		}
		break;
	}
	if (s->violated || p->st != PS_UP)
		return;
	if (wd_term(p->wd) < p->term_seen)
		violation(s, "election: peer %u term decreased", p->id);
	p->term_seen = wd_term(p->wd);
	p->last_local = lnow(s, i);
	check_world(s);
	arm_wake(s, i);
}

static void
after_wd(struct sim *s, size_t i)
{
	s->st.events++;
	carry_out_wd(s, i);
	settle(s, i, true);
}

static void
after_fo(struct sim *s, size_t i)
{
	s->st.events++;
	carry_out_fo(s, i);
	settle(s, i, false);
}

static void
report_hook(struct sim *s, size_t i, uint32_t slot, uint32_t gen)
{
	struct shook *h = &s->hooks[slot];
	struct speer *p = &s->p[i];
	bool ok;

	if (!h->used || h->gen != gen)
		return;
	h->done_pending = false;
	ok = h->out == HO_OK && h->act_ok;
	if (!ok)
		s->st.hooks_failed++;
	trace(s, "%u hook %s backend=%u term=%" PRIu64 " exits %s", p->id, hook_name(h->kind),
	      h->backend, h->term, ok ? "0" : h->out == HO_OK || h->out == HO_FAIL ? "1" : "(timeout)");
	if (h->kind == FO_HOOK_STOP)
		fo_hook_done_lsn(p->fo, lnow(s, i), h->kind, h->backend, h->term, ok,
				 ok ? h->report_lsn : 0);
	else
		fo_hook_done(p->fo, lnow(s, i), h->kind, h->backend, h->term, ok);
	hook_maybe_free(h);
	after_fo(s, i);
}

/* ---- health checks ------------------------------------------------------ */

static void
start_check(struct sim *s, size_t i, size_t bi, uint64_t at)
{
	push(s, at, EV_CHECK, (uint32_t)i, s->p[i].hv[bi].gen, (uint16_t)bi, 0);
}

static void
ev_check(struct sim *s, size_t i, uint32_t gen, size_t bi)
{
	struct speer *p = &s->p[i];
	struct hview *v = &p->hv[bi];
	size_t host = s->b[bi].host;

	if (p->st != PS_UP || v->gen != gen)
		return;
	v->inflight = true;
	v->again = false;
	v->started = s->now;
	if (!s->h[host].up || (host != i && !s->reach[i][host])) {
		/* No route, no answer: the check times out. */
		push(s, s->now + (uint64_t)s->ct_ms * 1000, EV_CHECK_DONE, (uint32_t)i, gen,
		     (uint16_t)bi, 0);
		return;
	}
	push(s, s->now + rng_range(&s->r_chk, 100, host == i ? 500 : 2500), EV_CHECK_SAMPLE,
	     (uint32_t)i, gen, (uint16_t)bi, 0);
}

static void
ev_check_sample(struct sim *s, size_t i, uint32_t gen, size_t bi)
{
	struct speer *p = &s->p[i];
	struct hview *v = &p->hv[bi];
	struct sbackend *b = &s->b[bi];
	size_t host = b->host;
	uint64_t timeout_at = v->started + (uint64_t)s->ct_ms * 1000;
	uint64_t back = rng_range(&s->r_chk, 100, host == i ? 500 : 2500);

	if (p->st != PS_UP || v->gen != gen)
		return;
	if (!s->h[host].up || s->h[host].frozen || (host != i && !s->reach[i][host]) ||
	    (b->st == BS_RUNNING && s->now < b->slow_until)) {
		push(s, timeout_at > s->now ? timeout_at : s->now, EV_CHECK_DONE, (uint32_t)i,
		     gen, (uint16_t)bi, 0);
		return;
	}
	if (b->st != BS_RUNNING) {
		/* Connection refused: quick. */
		push(s, s->now + back, EV_CHECK_DONE, (uint32_t)i, gen, (uint16_t)bi, 0);
		return;
	}
	v->s_role = b->primary ? FO_R_PRIMARY : FO_R_STANDBY;
	v->s_tli = b->tli;
	v->s_lsn = blsn(b);
	v->s_sysid = b->sysid;
	if (b->primary)
		b->lsn += 64;	/* the write probe commits a tiny transaction */
	push(s, s->now + back < timeout_at ? s->now + back : timeout_at, EV_CHECK_DONE,
	     (uint32_t)i, gen, (uint16_t)bi, s->now + back < timeout_at);
}

static void
feed_views(struct sim *s, size_t i)
{
	struct speer *p = &s->p[i];
	struct fo_view v[MAXB];

	for (size_t bi = 0; bi < s->nb; bi++) {
		const struct hview *h = &p->hv[bi];

		memset(&v[bi], 0, sizeof(v[bi]));
		v[bi].backend = s->b[bi].id;
		v[bi].health = h->state;
		v[bi].role = h->role;
		v[bi].timeline = h->tli;
		v[bi].lsn = h->lsn;
		v[bi].system_id = h->sysid;
		v[bi].checked_at = h->checked_at;
	}
	fo_local_view(p->fo, lnow(s, i), v, s->nb);
	after_fo(s, i);
}

static void
ev_check_done(struct sim *s, size_t i, uint32_t gen, size_t bi, bool ok)
{
	struct speer *p = &s->p[i];
	struct hview *v = &p->hv[bi];
	uint64_t next;

	if (p->st != PS_UP || v->gen != gen || !v->inflight)
		return;
	v->inflight = false;
	v->checked_at = lnow(s, i);
	if (ok) {
		v->fails = 0;
		v->state = FO_H_UP;
		v->role = v->s_role;
		v->tli = v->s_tli;
		v->lsn = v->s_lsn;
		v->sysid = v->s_sysid;
		if (v->role == FO_R_PRIMARY &&
		    (v->tli != v->max_primary_tli || v->lsn > v->max_primary_lsn)) {
			v->max_primary_lsn = v->lsn;
			v->max_primary_tli = v->tli;
		}
		next = s->now + (uint64_t)s->ci_ms * 1000;
	} else {
		v->fails++;
		v->state = v->fails >= s->ft ? FO_H_FAILED : FO_H_SUSPECT;
		next = s->now + (uint64_t)s->rr_ms * 1000;
	}
	if (v->again)
		next = s->now;
	v->gen++;
	start_check(s, i, bi, next);
	if (s->tracing)
		trace(s, "%u check %u: %s%s %s tli %" PRIu32 " lsn %" PRIu64, p->id, s->b[bi].id,
		      ok ? "ok" : "FAILED", ok ? "" : (v->state == FO_H_FAILED ? " (failed)" : " (suspect)"),
		      v->role == FO_R_PRIMARY ? "primary" : v->role == FO_R_STANDBY ? "standby" : "?",
		      v->tli, v->lsn);
	feed_views(s, i);
}

/* Discards every check in flight or armed and starts afresh (boot, resume). */
static void
restart_checks(struct sim *s, size_t i)
{
	struct speer *p = &s->p[i];

	for (size_t bi = 0; bi < s->nb; bi++) {
		p->hv[bi].gen++;
		p->hv[bi].inflight = false;
		p->hv[bi].again = false;
		start_check(s, i, bi, s->now + rng_range(&s->r_chk, 0, 5000));
	}
}

/* ---- peers ----------------------------------------------------------------- */

static void
pq_drop_all(struct sim *s, struct speer *p)
{
	while (p->pq_len) {
		struct pin *in = &p->pq[p->pq_head];

		if (in->kind == PIN_MSG)
			msg_free(s, in->slot);
		else if (in->kind == PIN_HOOK && s->hooks[in->slot].used &&
			 s->hooks[in->slot].gen == in->gen) {
			s->hooks[in->slot].done_pending = false;
			hook_maybe_free(&s->hooks[in->slot]);
		}
		p->pq_head = (p->pq_head + 1) % PQ_CAP;
		p->pq_len--;
	}
}

static void
deliver(struct sim *s, size_t to, size_t from, uint32_t slot)
{
	struct speer *p = &s->p[to];
	struct wd_msg *m = &s->pool[slot].m;
	uint64_t l = lnow(s, to);

	s->st.deliveries++;
	m->sender_boot = (uint64_t)s->pool[slot].inc + 1;
	wd_receive(p->wd, l, s->p[from].id, m);
	after_wd(s, to);
	m = &s->pool[slot].m;	/* sends may have moved the pool */
	/* failover.c: the extension of every heartbeat goes to the failover. */
	if (!s->violated && p->st == PS_UP && m->type == WD_MSG_HEARTBEAT && m->ext_len) {
		if (fo_peer_ext(p->fo, l, s->p[from].id, m->ext, m->ext_len) < 0)
			violation(s, "ext: peer %u refuses peer %u's failover extension (%u bytes)",
				  p->id, s->p[from].id, m->ext_len);
		else
			after_fo(s, to);
	}
	msg_free(s, slot);
}

static void
fence_result(struct sim *s, size_t i, size_t target, bool ok)
{
	struct speer *p = &s->p[i];

	trace(s, "%u election fence of peer %u done: %s", p->id, s->p[target].id,
	      ok ? "ok" : "FAILED");
	wd_fence_done(p->wd, lnow(s, i), s->p[target].id, ok);
	after_wd(s, i);
}

static void
tick(struct sim *s, size_t i)
{
	struct speer *p = &s->p[i];
	uint64_t l = lnow(s, i);

	p->wake_local = UINT64_MAX;
	wd_tick(p->wd, l);
	after_wd(s, i);
	if (!s->violated && p->st == PS_UP && p->wake_local != UINT64_MAX && p->wake_local <= l) {
		if (++p->same_wake > 1000)
			violation(s, "progress: peer %u election wakeup stays at %" PRIu64,
				  p->id, p->wake_local);
	} else {
		p->same_wake = 0;
	}
}

static void
fotick(struct sim *s, size_t i)
{
	struct speer *p = &s->p[i];
	uint64_t l = lnow(s, i);

	p->fowake_local = UINT64_MAX;
	fo_tick(p->fo, l);
	after_fo(s, i);
	if (!s->violated && p->st == PS_UP && p->fowake_local != UINT64_MAX &&
	    p->fowake_local <= l) {
		if (++p->same_fowake > 1000)
			violation(s, "progress: peer %u failover wakeup stays at %" PRIu64
				  " after fo_tick", p->id, p->fowake_local);
	} else {
		p->same_fowake = 0;
	}
}

/* The daemon dies (memory lost, disk kept, hooks killed). */
static void
crash(struct sim *s, size_t i, const char *why)
{
	struct speer *p = &s->p[i];

	if (p->st == PS_DOWN)
		return;
	trace(s, "%u CRASH (%s) term %" PRIu64 " %s", p->id, why, wd_term(p->wd),
	      wd_role_name(wd_role(p->wd)));
	wd_free(p->wd);
	fo_free(p->fo);
	p->wd = NULL;
	p->fo = NULL;
	p->st = PS_DOWN;
	p->lingering = false;
	p->inc++;
	p->wake_gen++;
	p->fowake_gen++;
	p->wake_local = p->fowake_local = UINT64_MAX;
	p->want_flush = false;
	p->want_transfer = 0;
	p->last_cmd = 0;	/* a command it carried dies with it */
	for (size_t bi = 0; bi < s->nb; bi++) {
		p->hv[bi].gen++;
		p->hv[bi].inflight = false;
	}
	pq_drop_all(s, p);
	kill_hooks_of(s, i);
}

static void
boot(struct sim *s, size_t i)
{
	struct speer *p = &s->p[i];
	struct fo_record rec;
	char text[2048];
	uint64_t l;

	if (p->st != PS_DOWN || !s->h[i].up)
		return;
	if (p->boots && (p->fenced || rng_chance(&s->r_fault, 300000))) {
		p->c_real = s->now;
		p->c_local = rng_range(&s->r_fault, 5000, 60000) * 1000;
	}
	l = lnow(s, i);
	/* The record goes through the state file's text form. */
	if (fo_record_format(&p->fdisk, text, sizeof(text)) < 0 ||
	    fo_record_parse(text, &rec) < 0) {
		if (p->fdisk.term || p->fdisk.seq) {
			violation(s, "record codec: peer %u's record does not survive the state file: %s",
				  p->id, text);
			return;
		}
		memset(&rec, 0, sizeof(rec));
	} else if (!rec_eq(&rec, &p->fdisk)) {
		violation(s, "record codec: peer %u's record changes through the state file: %s",
			  p->id, text);
		return;
	}
	p->wd = wd_new(&p->cfg, &p->disk, l,
		       splitmix64(&(uint64_t){ s->seed ^ ((uint64_t)i << 40) ^ p->boots }));
	p->fo = fo_new(&p->fcfg, &rec, l);
	if (!p->wd || !p->fo) {
		fprintf(stderr, "fosim: allocation failed\n");
		exit(2);
	}
	p->boots++;
	p->fenced = false;
	p->last_local = l;
	p->st = PS_UP;
	p->wake_local = p->fowake_local = UINT64_MAX;
	p->same_wake = p->same_fowake = 0;
	for (size_t bi = 0; bi < s->nb; bi++) {
		uint32_t g = p->hv[bi].gen;

		memset(&p->hv[bi], 0, sizeof(p->hv[bi]));
		p->hv[bi].gen = g;
	}
	s->st.restarts++;
	trace(s, "%u START local %" PRIu64 " disk term %" PRIu64 " record v%" PRIu64 ".%" PRIu64,
	      p->id, l, p->disk.term, rec.term, rec.seq);
	if (p->term_seen < wd_term(p->wd))
		p->term_seen = wd_term(p->wd);
	restart_checks(s, i);
	{
		uint8_t ext[WD_EXT_MAX];
		size_t len = fo_ext(p->fo, ext, sizeof(ext));

		wd_set_ext(p->wd, ext, (uint16_t)len);
	}
	after_wd(s, i);
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
	trace(s, "%u PAUSE for %" PRIu64 " ms", p->id, us / 1000);
	for (size_t bi = 0; bi < s->nb; bi++) {
		p->hv[bi].gen++;
		p->hv[bi].inflight = false;
	}
	if (us)
		push(s, s->now + us, EV_RESUME, (uint32_t)i, p->pause_gen, 0, 0);
}

static void
resume(struct sim *s, size_t i)
{
	struct speer *p = &s->p[i];
	bool ticked = false;

	if (p->st != PS_PAUSED || s->h[i].frozen)
		return;
	p->st = PS_UP;
	trace(s, "%u RESUME (%u queued inputs)", p->id, p->pq_len);
	restart_checks(s, i);
	if (s->tick_first && wd_next_wakeup(p->wd) <= lnow(s, i)) {
		tick(s, i);
		ticked = true;
	}
	while (p->pq_len && !s->violated && p->st == PS_UP) {
		struct pin in = p->pq[p->pq_head];

		p->pq_head = (p->pq_head + 1) % PQ_CAP;
		p->pq_len--;
		if (in.kind == PIN_FENCE)
			fence_result(s, i, in.target, in.ok);
		else if (in.kind == PIN_HOOK)
			report_hook(s, i, in.slot, in.gen);
		else
			deliver(s, i, in.from, in.slot);
	}
	if (s->violated || p->st != PS_UP)
		return;
	if (!ticked && wd_next_wakeup(p->wd) <= lnow(s, i))
		tick(s, i);
	if (!s->violated && p->st == PS_UP && fo_next_wakeup(p->fo) <= lnow(s, i))
		fotick(s, i);
	if (!s->violated && p->st == PS_UP) {
		p->wake_local = p->fowake_local = UINT64_MAX;
		arm_wake(s, i);
	}
}

static bool
pq_push(struct speer *p, struct pin in)
{
	if (p->pq_len >= (in.kind == PIN_MSG ? PQ_MSG_CAP : PQ_CAP))
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

/* ---- hosts and backends --------------------------------------------------- */

static void
host_crash(struct sim *s, size_t h, const char *why)
{
	struct shost *ho = &s->h[h];

	if (!ho->up)
		return;
	trace(s, "HOST %u DOWN (%s)%s", s->p[h].id, why,
	      has_backend(s, h) ? " with its backend" : "");
	s->st.host_crashes++;
	ho->up = false;
	ho->frozen = false;
	ho->gen++;
	crash(s, h, why);
	s->p[h].restart_gen++;	/* the daemon comes back with the host */
	if (has_backend(s, h))
		s->b[h].gen++;
}

static void
host_up(struct sim *s, size_t h)
{
	struct shost *ho = &s->h[h];

	if (ho->up)
		return;
	ho->up = true;
	ho->gen++;
	trace(s, "HOST %u UP%s", s->p[h].id,
	      has_backend(s, h) ? (s->b[h].st == BS_RUNNING ? " (PostgreSQL starts)" :
				   " (PostgreSQL stays down)") : "");
	boot(s, h);
	check_world(s);
}

static void
host_later(struct sim *s, size_t h, uint64_t min_us, uint64_t max_us)
{
	push(s, s->now + rng_range(&s->r_fault, min_us, max_us), EV_HOSTUP, (uint32_t)h,
	     s->h[h].gen, 0, 0);
}

static void
freeze_host(struct sim *s, size_t h, uint64_t us)
{
	struct shost *ho = &s->h[h];

	if (!ho->up || ho->frozen || s->p[h].st == PS_PAUSED)
		return;
	s->st.freezes++;
	ho->frozen = true;
	ho->gen++;
	trace(s, "HOST %u FROZEN for %" PRIu64 " ms", s->p[h].id, us / 1000);
	if (s->p[h].st == PS_UP)
		pause_peer(s, h, 0);
	push(s, s->now + us, EV_THAW, (uint32_t)h, ho->gen, 0, 0);
}

static void
thaw_host(struct sim *s, size_t h)
{
	struct shost *ho = &s->h[h];

	if (!ho->up || !ho->frozen)
		return;
	ho->frozen = false;
	ho->gen++;
	trace(s, "HOST %u THAWED", s->p[h].id);
	resume(s, h);
	check_world(s);
}

static void
pg_crash(struct sim *s, size_t bi)
{
	struct sbackend *b = &s->b[bi];

	if (b->st != BS_RUNNING || !s->h[b->host].up)
		return;
	s->st.pg_crashes++;
	b->st = BS_CRASHED;
	b->gen++;
	trace(s, "WORLD backend %u (%s) postmaster crashed", b->id,
	      b->primary ? "primary" : "standby");
	/* Sometimes a supervisor starts it again at once. */
	if (rng_chance(&s->r_fault, 300000))
		push(s, s->now + rng_range(&s->r_fault, 50000, 3000000), EV_BRESTART,
		     (uint32_t)bi, b->gen, 0, 0);
	check_world(s);
}

static void
pg_restart(struct sim *s, size_t bi)
{
	struct sbackend *b = &s->b[bi];

	if (b->st != BS_CRASHED)
		return;
	b->st = BS_RUNNING;
	trace(s, "WORLD backend %u postmaster restarted (%s)", b->id,
	      b->primary ? "primary" : "standby");
	check_world(s);
}

/* Every WAL tick: the primary writes, the standbys receive and replay. */
static void
wal_tick(struct sim *s)
{
	for (size_t bi = 0; bi < s->nb; bi++) {
		struct sbackend *b = &s->b[bi];

		if (!serving(s, bi) || !b->primary)
			continue;
		b->lsn += rng_range(&s->r_wal, 0, s->now < b->slow_until ? s->wal_rate / 8 : s->wal_rate);
	}
	for (size_t bi = 0; bi < s->nb; bi++) {
		struct sbackend *b = &s->b[bi];
		struct sbackend *u;

		if (!serving(s, bi) || b->primary || b->foreign)
			continue;
		if (b->upstream >= 0 && s->now >= b->stream_pause_until) {
			u = &s->b[b->upstream];
			if (serving(s, (size_t)b->upstream) && u->primary && u->tli == b->tli &&
			    s->repl[b->host][u->host] && u->lsn > b->recv) {
				uint64_t c = rng_range(&s->r_wal, 0, b->chunk_max);

				b->recv = u->lsn - b->recv < c ? u->lsn : b->recv + c;
			}
		}
		if (s->now >= b->replay_pause_until && b->replay < b->recv) {
			uint64_t c = rng_range(&s->r_wal, 0, 2 * (uint64_t)b->chunk_max);

			b->replay = b->recv - b->replay < c ? b->recv : b->replay + c;
		}
	}
	push(s, s->now + WAL_TICK_US, EV_WAL, 0, 0, 0, 0);
}

/* ---- configuration -------------------------------------------------------- */

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

	if (rng_chance(r, 400000)) {
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
	c->election_max_ms = emin + rr(r, 2 * hb, 8 * hb);
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
	struct fo_config f;
	char err[256];
	int tries;
	uint64_t d, hold, local, fo_extra, hook_max = 0;

	memset(&c, 0, sizeof(c));
	memset(&f, 0, sizeof(f));
	s->mode = s->o->mode >= 0 ? s->o->mode : (int)rng_range(r, 0, M_COUNT - 1);
	s->n = s->mode == M_FIVE ? 5 : s->mode == M_THREE || s->mode == M_WITNESS ? 3 : 2;
	s->nb = s->mode == M_FIVE ? rng_range(r, 3, 5) : s->mode == M_THREE ? 3 : 2;
	c.npeers = s->n;
	c.two_node = s->mode == M_TWO_NODE;
	memset(s->idx_of, 0xff, sizeof(s->idx_of));
	memset(s->bidx_of, 0xff, sizeof(s->bidx_of));
	for (size_t i = 0; i < s->n; i++) {
		uint8_t id;

		do
			id = (uint8_t)rng_range(r, 1, 255);
		while (s->idx_of[id] != 0xff);
		s->idx_of[id] = (uint8_t)i;
		c.peers[i].id = id;
		c.peers[i].priority = (uint8_t)rng_range(r, 1, 3);
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
		fprintf(stderr, "fosim: seed %" PRIu64 ": no accepted timings (%s)\n", s->seed, err);
		exit(2);
	}
	/* The backends: ids of their own, next to the first nb peers. */
	for (size_t bi = 0; bi < s->nb; bi++) {
		uint8_t id;

		do
			id = (uint8_t)rng_range(r, 1, 255);
		while (s->bidx_of[id] != 0xff);
		s->bidx_of[id] = (uint8_t)bi;
		s->b[bi].id = id;
		s->b[bi].host = bi;
		s->b[bi].prio = (uint8_t)rng_range(r, 1, 3);
		s->b[bi].chunk_max = rr(r, 1000, 200000);
	}
	if (rng_chance(r, 150000))
		s->b[rng_range(r, 0, s->nb - 1)].prio = 0;
	if (s->nb >= 3 && rng_chance(r, 80000))
		s->b[s->nb - 1].foreign = true;
	/* Health checks. */
	s->ci_ms = rng_chance(r, 300000) ? 1000 : rr(r, 50, 1000);
	s->ct_ms = rng_chance(r, 300000) ? 2000 : rr(r, 100, 2000);
	s->rr_ms = rng_chance(r, 300000) ? 50 : rr(r, 10, 200);
	s->ft = rng_chance(r, 300000) ? 3 : rr(r, 1, 4);
	s->wal_rate = rr(r, 0, 65536);
	/* Hooks. */
	s->hook_timeout_ms = rr(r, 500, 8000);
	for (int k = 1; k <= FO_HOOK_KIND_MAX; k++) {
		struct hookcfg *h = &s->hk[k];
		static const uint32_t fail[] = { 0, 0, 50000, 200000, 500000 };

		h->fail_ppm = fail[rng_range(r, 0, 4)];
		h->hang_ppm = rng_chance(r, 300000) ? rr(r, 0, 200000) : 0;
		h->late_ppm = rng_chance(r, 300000) ? rr(r, 0, 200000) : 0;
		h->dur_max_ms = rr(r, 5, s->hook_timeout_ms / 2);
		if (h->dur_max_ms > hook_max)
			hook_max = h->dur_max_ms;
	}
	s->power_fence = rng_chance(r, 500000);
	s->idem_promote = rng_chance(r, 500000);
	/* The failover's configuration, as conf_fo_config builds it. */
	f.npeers = s->n;
	for (size_t i = 0; i < s->n; i++) {
		f.peers[i] = c.peers[i].id;
		f.peer_eligible[i] = !c.peers[i].witness && c.peers[i].priority > 0;
	}
	f.nbackends = s->nb;
	for (size_t bi = 0; bi < s->nb; bi++) {
		f.backends[bi].id = s->b[bi].id;
		f.backends[bi].priority = s->b[bi].prio;
		f.backends[bi].peer = c.peers[s->b[bi].host].id;
	}
	f.auto_failover = !rng_chance(r, 30000);
	f.failure_quorum = rng_chance(r, 800000) ? 0 : rr(r, 1, (uint32_t)s->n);
	f.max_lag = rng_chance(r, 300000) ? 1u << 20 :
		    rng_chance(r, 150000) ? rng_range(r, 0, 4096) : rng_range(r, 16384, 8u << 20);
	f.has_fence_command = !rng_chance(r, 100000);
	f.has_stop_command = !rng_chance(r, 150000);
	if (!f.has_fence_command && !f.has_stop_command)
		f.has_stop_command = true;
	f.has_follow_command = !rng_chance(r, 100000);
	/* Drawn from the operator's stream: the other draws stay as they were. */
	f.has_rejoin_command = !rng_chance(&s->r_op, 100000);
	{
		static const uint32_t nr[] = { 0, 0, 0, 50000, 200000 };

		s->noreport_ppm = nr[rng_range(&s->r_op, 0, 4)];
	}
	s->opcmd_ppm = s->o->no_operator ? 0 : (uint32_t)rng_range(&s->r_op, 100000, 500000);
	f.vip_follow = s->o->vip >= 0 ? (enum fo_vip_follow)s->o->vip :
		       rng_chance(r, 400000) ? FO_VIP_PRIMARY : FO_VIP_COORDINATOR;
	f.two_node = c.two_node;
	f.view_max_age_ms = 3 * c.heartbeat_ms > c.election_min_ms ? 3 * c.heartbeat_ms :
			    c.election_min_ms;
	f.fence_timeout_ms = rng_chance(r, 300000) ? 5000 : rr(r, 100, 5000);
	f.verify_timeout_ms = rng_chance(r, 300000) ? 10000 : rr(r, 200, 10000);
	f.retry_ms = rng_chance(r, 300000) ? 1000 : rr(r, 10, 1000);
	f.retry_max_ms = rr(r, f.retry_ms, 8000);
	f.settle_ms = s->ct_ms;
	f.recheck_bound_ms = s->ci_ms + s->ct_ms;	/* as failover.c sets it */
	for (size_t i = 0; i < s->n; i++) {
		struct speer *p = &s->p[i];

		p->cfg = c;
		p->cfg.self = c.peers[i].id;
		p->id = c.peers[i].id;
		p->witness = c.peers[i].witness;
		p->eligible = c.peers[i].priority > 0 && !c.peers[i].witness;
		p->fcfg = f;
		p->fcfg.self = p->id;
		if (wd_check_config(&p->cfg, DRIFT_PCT, err, sizeof(err)) != 0 ||
		    fo_check_config(&p->fcfg, err, sizeof(err)) != 0) {
			fprintf(stderr, "fosim: seed %" PRIu64 ": peer %u config refused: %s\n",
				s->seed, p->id, err);
			exit(2);
		}
	}
	/* The election's liveness bound, as in sim.c (README.md there). */
	s->qdelay_us = QUIET_DELAY_MAX_US;
	if ((c.lease_ms - c.heartbeat_ms - 2) * 1000 / 2 < s->qdelay_us)
		s->qdelay_us = (c.lease_ms - c.heartbeat_ms - 2) * 1000 / 2;
	d = (s->qdelay_us + 999) / 1000;
	hold = c.tilt_hold_ms > c.election_min_ms ? c.tilt_hold_ms : c.election_min_ms;
	local = hold + c.election_max_ms + SPLIT_RETRIES * (c.election_max_ms + 4 * d);
	if (c.two_node)
		local += c.fence_delay_ms + c.election_max_ms;
	s->elect_bound_ms = local * (100 + 1) / 100 + 1 + 6 * d + c.heartbeat_ms +
			    (c.two_node ? FENCE_HOOK_MAX_US / 1000 : 0);
	/*
	 * The failover's liveness bound (README-failover.md): after the
	 * election, a hook or back-off left from the fault phase, detection,
	 * the commits, the fence (cooperative, then the command), the fresh
	 * checks, the promotion and its verification, a transfer of the role,
	 * the follows; with room for a second coordinator.
	 */
	fo_extra = s->hook_timeout_ms + LATE_MAX_US / 1000 + f.retry_max_ms +
		   s->ci_ms + (uint64_t)s->ft * (s->ct_ms + s->rr_ms) + s->ct_ms +
		   12 * (c.heartbeat_ms + 2 * d) + f.view_max_age_ms +
		   f.fence_timeout_ms + 3 * hook_max + s->ct_ms + 2 * s->ci_ms + 200;
	if (f.vip_follow == FO_VIP_PRIMARY)
		fo_extra += 2000 + s->elect_bound_ms;
	/*
	 * An operator's switchover: the clean stop may take CLEAN_STOP_FACTOR
	 * x fence_timeout before it is cancelled, the target verify_timeout
	 * to receive the shutdown checkpoint before the failover's rules
	 * decide, and the request goes round first.
	 */
	if (!s->o->no_operator)
		fo_extra += (CLEAN_STOP_FACTOR - 1) * (uint64_t)f.fence_timeout_ms +
			    f.verify_timeout_ms + hook_max + 4 * (c.heartbeat_ms + 2 * d);
	s->bound_ms = s->elect_bound_ms + fo_extra + 1000;
	if (s->bound_ms > s->st.bound_max_ms)
		s->st.bound_max_ms = s->bound_ms;
	/* L2: a healthy primary's failed views are gone by then. */
	s->l2_window_us = ((uint64_t)f.view_max_age_ms + s->ci_ms + 2 * s->ct_ms +
			   (uint64_t)s->ft * s->rr_ms + c.heartbeat_ms + 2 * d + 100) * 1000;
	s->s4_margin_us = ((uint64_t)s->ci_ms + 2 * s->ct_ms + f.view_max_age_ms +
			   c.heartbeat_ms + 100) * 1000;
}

/* ---- faults and phases ---------------------------------------------------- */

static size_t
pick(struct sim *s, size_t n)
{
	return n ? (size_t)rng_range(&s->r_fault, 0, n - 1) : SIZE_MAX;
}

static size_t
pick_peer(struct sim *s, int state)
{
	size_t c[MAXP], n = 0;

	for (size_t i = 0; i < s->n; i++)
		if (state < 0 || (int)s->p[i].st == state)
			c[n++] = i;
	return n ? c[pick(s, n)] : SIZE_MAX;
}

/* A backend, the current primary half the time. */
static size_t
pick_backend(struct sim *s)
{
	if (s->cur >= 0 && rng_chance(&s->r_fault, 500000))
		return (size_t)s->cur;
	return pick(s, s->nb);
}

static void
heal(struct sim *s)
{
	for (size_t a = 0; a < s->n; a++)
		for (size_t b = 0; b < s->n; b++) {
			s->link[a][b].up = true;
			s->link[a][b].drop_ppm = 0;
			s->reach[a][b] = true;
			s->repl[a][b] = true;
		}
	s->spike_ppm = 0;
}

static void
cut_sides(struct sim *s, const bool *side, size_t bridge)
{
	for (size_t i = 0; i < s->n; i++)
		for (size_t j = 0; j < s->n; j++)
			if (i != bridge && j != bridge && side[i] != side[j]) {
				s->link[i][j].up = false;
				s->reach[i][j] = false;
				s->repl[i][j] = false;
			}
}

static const char *
cmd_name(enum fo_command cmd)
{
	switch (cmd) {
	case FO_CMD_PAUSE: return "pause";
	case FO_CMD_RESUME: return "resume";
	case FO_CMD_REJOIN: return "rejoin";
	case FO_CMD_SWITCHOVER: return "switchover";
	case FO_CMD_FAILOVER: return "failover";
	case FO_CMD_FAILOVER_FORCE: return "failover --force";
	case FO_CMD_FENCE: return "fence";
	}
	return "?";
}

/*
 * pgvigilctl on peer i. With preflight, as failover.c's failover_request:
 * a switchover or failover is only sent when this peer's own checks pass
 * (otherwise the coordinator's checks alone decide).
 */
static bool
operator_request(struct sim *s, size_t i, enum fo_command cmd, uint8_t arg, bool preflight)
{
	struct speer *p = &s->p[i];
	char err[160];

	if (p->st != PS_UP)
		return false;
	if (preflight && (cmd == FO_CMD_SWITCHOVER || cmd == FO_CMD_FAILOVER ||
			  cmd == FO_CMD_FAILOVER_FORCE)) {
		char report[2048], *no, *nl;
		uint8_t chosen = 0;

		if (fo_preflight(p->fo, lnow(s, i), cmd, arg, report, sizeof(report), &chosen) < 0) {
			no = strstr(report, "no: ");
			no = no ? no : report;
			nl = strchr(no, '\n');
			if (nl)
				*nl = '\0';
			s->st.op_local_refused++;
			trace(s, "%u operator %s %u: not sent (%s)", p->id, cmd_name(cmd), arg, no);
			return false;
		}
		if (!chosen) {
			violation(s, "preflight: peer %u passes %s %u with no target chosen", p->id,
				  cmd_name(cmd), arg);
			return false;
		}
	}
	if (fo_command(p->fo, lnow(s, i), cmd, arg, err, sizeof(err)) < 0) {
		trace(s, "%u operator %s %u refused: %s", p->id, cmd_name(cmd), arg, err);
		return false;
	}
	p->last_cmd = cmd;
	trace(s, "%u operator %s %u%s", p->id, cmd_name(cmd), arg,
	      preflight ? " (preflight passed here)" : "");
	after_fo(s, i);
	return true;
}

static void
operator_command(struct sim *s, size_t i, enum fo_command cmd, uint8_t arg)
{
	operator_request(s, i, cmd, arg, false);
}

/*
 * The operator asks a random live peer for a switchover, a manual failover
 * or a fence (the fault `switchover`, `failover`, `opfence`; and once in
 * some quiet phases). Targets: the best standby or any backend, the
 * primary and another cluster's included: the checks must refuse those.
 */
static void
operator_ask(struct sim *s, int f)
{
	struct rng *r = &s->r_op;
	size_t up[MAXP], n = 0, i;
	enum fo_command cmd;
	uint8_t arg = 0;
	bool pre = rng_chance(r, 700000);

	for (size_t k = 0; k < s->n; k++)
		if (s->p[k].st == PS_UP)
			up[n++] = k;
	if (!n)
		return;
	i = up[rng_range(r, 0, n - 1)];
	if (f == F_OPFENCE) {
		cmd = FO_CMD_FENCE;
		arg = s->b[rng_range(r, 0, s->nb - 1)].id;
	} else {
		cmd = f == F_SWITCHOVER ? FO_CMD_SWITCHOVER :
		      rng_chance(r, 250000) ? FO_CMD_FAILOVER_FORCE : FO_CMD_FAILOVER;
		if (rng_chance(r, 600000))
			arg = s->b[rng_range(r, 0, s->nb - 1)].id;
	}
	if (operator_request(s, i, cmd, arg, pre))
		s->st.op_sent[f == F_SWITCHOVER ? 0 : f == F_MANUAL ? 1 : 2]++;
}

/* The operator rejoins what needs it and lifts a pause. */
static void
operator_round(struct sim *s)
{
	size_t i = pick_peer(s, PS_UP);
	const struct fo_record *r;
	uint8_t want[MAXB];
	size_t n = 0;

	if (i == SIZE_MAX)
		return;
	r = fo_record(s->p[i].fo);
	if (r->paused) {
		operator_command(s, i, FO_CMD_RESUME, 0);
		return;
	}
	for (size_t bi = 0; bi < s->nb; bi++)
		if ((fo_record_flags(r, s->b[bi].id) & FO_B_NEEDS_REJOIN) &&
		    s->b[bi].id != r->primary && !s->b[bi].foreign)
			want[n++] = s->b[bi].id;
	if (n)
		operator_command(s, i, FO_CMD_REJOIN, want[pick(s, n)]);
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
		wd_stop(s->p[i].wd, lnow(s, i));
		after_wd(s, i);
		s->p[i].lingering = true;
		push(s, s->now + rng_range(r, 0, 300000), EV_EXIT, (uint32_t)i, s->p[i].inc, 0, 0);
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
	case F_SPLIT:
	case F_BRIDGE: {
		bool side[MAXP];
		size_t b = f == F_BRIDGE ? pick_peer(s, -1) : SIZE_MAX;

		for (i = 0; i < s->n; i++)
			side[i] = rng_chance(r, 500000);
		cut_sides(s, side, b);
		if (f == F_BRIDGE)
			trace(s, "PARTITION bridge through %u", s->p[b].id);
		else
			trace(s, "PARTITION split");
		break;
	}
	case F_ISOLATE:
		i = pick_peer(s, -1);
		for (j = 0; j < s->n; j++) {
			if (j == i)
				continue;
			s->link[i][j].up = s->link[j][i].up = false;
			s->reach[i][j] = s->reach[j][i] = false;
			s->repl[i][j] = s->repl[j][i] = false;
		}
		trace(s, "PARTITION isolate host %u", s->p[i].id);
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
			s->p[i].wake_local = s->p[i].fowake_local = UINT64_MAX;
			arm_wake(s, i);
		}
		break;
	case F_RESTART:
		if ((i = pick_peer(s, PS_DOWN)) != SIZE_MAX && s->h[i].up)
			boot(s, i);
		break;
	case F_PGCRASH:
		pg_crash(s, pick_backend(s));
		break;
	case F_HOSTCRASH:
		i = rng_chance(r, 600000) ? pick_backend(s) : pick_peer(s, -1);
		if (!s->h[i].up)
			break;
		host_crash(s, i, "fault");
		if (rng_chance(r, 700000))
			host_later(s, i, 200000, 10000000);
		check_world(s);
		break;
	case F_FREEZE:
		i = rng_chance(r, 600000) ? pick_backend(s) : pick_peer(s, -1);
		freeze_host(s, i, rng_range(r, 10000, 6000000));
		break;
	case F_SLOW:
		i = pick_backend(s);
		s->b[i].slow_until = s->now + rng_range(r, 50000, 8000000);
		trace(s, "WORLD backend %u slow for %" PRIu64 " ms", s->b[i].id,
		      (s->b[i].slow_until - s->now) / 1000);
		break;
	case F_LAG:
		i = pick(s, s->nb);
		s->b[i].stream_pause_until = s->now + rng_range(r, 50000, 8000000);
		trace(s, "WORLD backend %u stops receiving WAL for %" PRIu64 " ms", s->b[i].id,
		      (s->b[i].stream_pause_until - s->now) / 1000);
		break;
	case F_REPLAY:
		i = pick(s, s->nb);
		s->b[i].replay_pause_until = s->now + rng_range(r, 50000, 8000000);
		trace(s, "WORLD backend %u pauses replay for %" PRIu64 " ms", s->b[i].id,
		      (s->b[i].replay_pause_until - s->now) / 1000);
		break;
	case F_PBCUT:
		i = pick_peer(s, -1);
		j = pick_backend(s);
		if (s->b[j].host == i)
			break;
		s->reach[i][s->b[j].host] = false;
		trace(s, "PARTITION peer %u cannot reach backend %u", s->p[i].id, s->b[j].id);
		break;
	case F_PGISO:
		j = pick_backend(s);
		for (i = 0; i < s->n; i++)
			if (i != s->b[j].host)
				s->reach[i][s->b[j].host] = false;
		trace(s, "PARTITION backend %u unreachable from the other peers", s->b[j].id);
		break;
	case F_REPLCUT:
		j = s->b[pick(s, s->nb)].host;
		for (i = 0; i < s->n; i++)
			if (i != j)
				s->repl[i][j] = s->repl[j][i] = false;
		trace(s, "PARTITION replication of host %u cut", s->p[j].id);
		break;
	case F_MAINT:
		if ((i = pick_peer(s, PS_UP)) != SIZE_MAX)
			operator_command(s, i, rng_chance(r, 600000) ? FO_CMD_PAUSE : FO_CMD_RESUME, 0);
		break;
	case F_REJOIN:
		operator_round(s);
		break;
	case F_SWITCHOVER:
	case F_MANUAL:
	case F_OPFENCE:
		operator_ask(s, f);
		break;
	default:
		break;
	}
	check_world(s);
}

static void start_quiet(struct sim *s);

static void
start_faults(struct sim *s)
{
	uint64_t len = rng_range(&s->r_fault, 500000, 15000000);
	uint64_t k = rng_range(&s->r_fault, 1, 10);

	s->quiet = false;
	s->reliable_phase = false;
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
	s->quiet_gen++;
	s->got_healthy = false;
	push(s, s->now + s->bound_ms * 1000, EV_DEADLINE, s->phase, s->quiet_gen, 0, 0);
}

/*
 * A live peer carries a switchover or failover the record r has not
 * applied yet: its peer id, else 0. (A rejoin or resume the quiet phase's
 * operator asked for is not waited on.)
 */
static uint8_t
op_pending(const struct sim *s, const struct fo_record *r)
{
	for (size_t i = 0; i < s->n; i++) {
		const struct speer *p = &s->p[i];
		uint32_t applied = 0;

		if (p->st != PS_UP || (p->last_cmd != FO_CMD_SWITCHOVER &&
					p->last_cmd != FO_CMD_FAILOVER &&
					p->last_cmd != FO_CMD_FAILOVER_FORCE))
			continue;
		for (size_t k = 0; k < r->nops; k++)
			if (r->ops[k].peer == p->id)
				applied = r->ops[k].seq;
		if (fo_op_seq(p->fo) > applied)
			return p->id;
	}
	return 0;
}

/*
 * Healthy: one writable backend, and the coordinator's record names it,
 * with no step in progress, and every operator command a live peer
 * carries applied (a switchover asked for is done, cancelled or refused).
 */
static bool
healthy(struct sim *s)
{
	int c = coordinator_idx(s), w = -1;
	const struct fo_record *r;

	for (size_t bi = 0; bi < s->nb; bi++)
		if (writable(s, bi) && !s->h[s->b[bi].host].frozen)
			w = (int)bi;
	if (c < 0 || w < 0)
		return false;
	r = fo_record(s->p[c].fo);
	return r->primary == s->b[w].id && r->step == FO_STEP_NONE && !r->paused &&
	       !op_pending(s, r);
}

/* Why a quiet phase that did not get healthy is excused (index - 1). */
enum { EX_1 = 1, EX_2, EX_3, EX_4, EX_5, EX_6, EX_7, EX_8, EX_9, EX_10, EX_COUNT = EX_10 };

static const char *const excuse_names[EX_COUNT] = {
	"hooks may fail in this phase",
	"no coordinator",
	"auto_failover is off",
	"no primary was ever recorded",
	"failure_quorum is more than the live peers",
	"unknown primary",
	"no fence_command and the old primary's peer is down",
	"the fence kills PostgreSQL over ssh and the old primary's host is down",
	"the recorded candidate is not running",
	"no eligible standby within max_lag",
};

/*
 * Whether the cluster can reach health by itself in this quiet phase: 0,
 * or why not (EX_*). If not, the phase is excused (counted by reason).
 */
static int
why_not_live(struct sim *s)
{
	int c = coordinator_idx(s);
	const struct fo_record *r;
	size_t up = 0;
	uint64_t need;
	bool cand = false;

	if (!s->reliable_phase && !s->o->reliable)
		return EX_1;
	for (size_t i = 0; i < s->n; i++)
		up += s->p[i].st == PS_UP;
	if (c < 0)
		return EX_2;
	r = fo_record(s->p[c].fo);
	if (s->cur >= 0 && writable(s, (size_t)s->cur) && (r->step == FO_STEP_NONE ||
							   r->old_primary != s->b[s->cur].id))
		return 0;	/* nothing to fail over */
	/* A switchover of a writable primary stops it cleanly or is cancelled. */
	if (s->cur >= 0 && writable(s, (size_t)s->cur) && r->step == FO_STEP_FENCING &&
	    r->kind == FO_KIND_SWITCHOVER)
		return 0;
	/* An operator's failover in progress goes on with auto_failover off too. */
	if (!s->p[c].fcfg.auto_failover && r->step == FO_STEP_NONE)
		return EX_3;
	if (!r->primary)
		return EX_4;
	if (s->p[c].fcfg.failure_quorum > up &&
	    (r->step == FO_STEP_NONE || r->kind == FO_KIND_FAILOVER))
		return EX_5;
	if (r->step == FO_STEP_NONE || r->step == FO_STEP_FENCING) {
		int oi = s->bidx_of[r->step == FO_STEP_NONE ? r->primary : r->old_primary];
		const struct sbackend *o;

		if (oi == 0xff)
			return EX_6;
		o = &s->b[oi];
		if (!s->p[c].fcfg.has_fence_command &&
		    (s->p[o->host].st != PS_UP || !s->p[c].fcfg.has_stop_command))
			return EX_7;
		if (s->p[c].fcfg.has_fence_command && !s->power_fence && !s->h[o->host].up &&
		    (!s->p[c].fcfg.has_stop_command || s->p[o->host].st != PS_UP))
			return EX_8;
	}
	if (r->step >= FO_STEP_PROMOTING && r->candidate) {
		int ci = s->bidx_of[r->candidate];

		if (ci == 0xff || !serving(s, (size_t)ci))
			return EX_9;
		return 0;
	}
	/*
	 * The failed primary's last LSN in the world: every sample of it is
	 * at or below it, so a standby within max_lag of it must be accepted.
	 */
	need = s->cur >= 0 ? blsn(&s->b[s->cur]) : r->last_primary_lsn;
	for (size_t bi = 0; bi < s->nb; bi++) {
		const struct sbackend *b = &s->b[bi];

		if (serving(s, bi) && !b->primary && !b->tainted && !b->foreign && b->prio &&
		    !(fo_record_flags(r, b->id) & FO_B_NEEDS_REJOIN) &&
		    (int)bi != s->cur && (blsn(b) + s->p[c].fcfg.max_lag >= need ||
					  (r->step != FO_STEP_NONE && r->force)))
			cand = true;
	}
	return cand ? 0 : EX_10;
}

static void
note_healthy(struct sim *s)
{
	uint64_t ms;
	double ratio;
	unsigned b;

	if (!s->quiet || s->got_healthy || !healthy(s))
		return;
	s->got_healthy = true;
	ms = (s->now - s->quiet_start) / 1000;
	trace(s, "quiet phase %u: healthy after %" PRIu64 " ms (bound %" PRIu64 ")", s->phase,
	      ms, s->bound_ms);
	/* Healthy: the phase has shown what it had to; it ends a little later. */
	push(s, s->now + rng_range(&s->r_fault, 300000, 3000000), EV_PHASE, s->phase, 0, 0, 0);
	/* The bound holds where hooks do not fail: only those phases are measured. */
	if (!s->reliable_phase && !s->o->reliable)
		return;
	ratio = (double)ms / (double)s->bound_ms;
	b = (unsigned)(ratio * 8);
	s->st.quiet_healthy++;
	s->st.tth_sum_ms += ms;
	if (ms > s->st.tth_max_ms) {
		s->st.tth_max_ms = ms;
		s->st.tth_max_seed = s->seed;
	}
	if (ratio > s->st.tth_max_ratio) {
		s->st.tth_max_ratio = ratio;
		s->st.tth_ratio_seed = s->seed;
	}
	s->st.tth_hist[b < 7 ? b : 7]++;
}

static void
start_quiet(struct sim *s)
{
	size_t down = 0, leave, eligible_up = 0;

	s->quiet = true;
	s->phase++;
	s->reliable_phase = rng_chance(&s->r_fault, 700000);
	heal(s);
	s->st.quiet_phases++;
	for (size_t bi = 0; bi < s->nb; bi++) {
		struct sbackend *b = &s->b[bi];

		b->slow_until = b->stream_pause_until = b->replay_pause_until = s->now;
	}
	for (size_t h = 0; h < s->n && !s->violated; h++) {
		s->p[h].restart_gen++;
		if (s->h[h].frozen)
			thaw_host(s, h);
		if (!s->h[h].up)
			host_up(s, h);
	}
	for (size_t i = 0; i < s->n && !s->violated; i++) {
		if (s->p[i].st == PS_PAUSED)
			resume(s, i);
		if (s->p[i].lingering)
			crash(s, i, "stopped");
	}
	for (size_t bi = 0; bi < s->nb && !s->violated; bi++)
		pg_restart(s, bi);
	for (size_t i = 0; i < s->n; i++)
		down += s->p[i].st == PS_DOWN;
	leave = 0;
	if ((s->mode == M_THREE || s->mode == M_FIVE) && rng_chance(&s->r_fault, 200000))
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
	quiet_reset(s);
	trace(s, "PHASE %u: quiet for at least %" PRIu64 " ms%s", s->phase, s->bound_ms,
	      s->reliable_phase ? ", hooks reliable" : "");
	push(s, s->now + 200000, EV_OP, s->phase, 0, 0, 0);
	push(s, s->now + (s->bound_ms + rng_range(&s->r_fault, 1000, 5000)) * 1000,
	     EV_PHASE, s->phase, 0, 0, 0);
	/* Sometimes the operator asks for a switchover (or a failover) in it. */
	if (rng_chance(&s->r_op, s->opcmd_ppm))
		push(s, s->now + rng_range(&s->r_op, 0, 1500000), EV_OPCMD, s->phase, 0, 0, 0);
	check_world(s);
}

static void
deadline(struct sim *s)
{
	int why;

	s->st.quiet_checked++;
	if (s->got_healthy)
		return;
	why = why_not_live(s);
	if (why) {
		s->st.quiet_excused++;
		s->st.excuses[why - 1]++;
		trace(s, "quiet phase %u: not healthy after %" PRIu64 " ms, excused: %s", s->phase,
		      s->bound_ms, excuse_names[why - 1]);
		return;
	}
	{
		int c = coordinator_idx(s);
		char buf[400] = "no coordinator";

		if (c >= 0)
			fmt_rec(buf, sizeof(buf), fo_record(s->p[c].fo));
		violation(s, "inv4 liveness: quiet phase %u not healthy %" PRIu64 " ms after it began "
			  "(bound); current primary %u is %s; coordinator %u waits for \"%s\"; %s%s",
			  s->phase, s->bound_ms, s->cur >= 0 ? s->b[s->cur].id : 0,
			  s->cur >= 0 ? (writable(s, (size_t)s->cur) ? "writable" :
					 bst_names[s->b[s->cur].st]) : "-",
			  c >= 0 ? s->p[c].id : 0, c >= 0 ? fo_waiting(s->p[c].fo) : "", buf,
			  c >= 0 && op_pending(s, fo_record(s->p[c].fo)) ?
			  "; an operator command is not applied" : "");
	}
}

/* ---- one schedule -------------------------------------------------------- */

static void
world_reset(struct sim *s)
{
	struct rng *r = &s->r_cfg;
	size_t prim = rng_range(r, 0, s->nb - 1);
	uint64_t sysid = rng_range(r, 1, UINT64_MAX / 2);
	uint64_t base = rng_range(r, 1u << 24, 1ULL << 40);

	if (s->b[prim].foreign)
		prim = 0;
	for (size_t h = 0; h < MAXP; h++) {
		s->h[h].up = true;
		s->h[h].frozen = false;
		s->h[h].gen = 0;
	}
	for (size_t bi = 0; bi < s->nb; bi++) {
		struct sbackend *b = &s->b[bi];

		b->st = BS_RUNNING;
		b->primary = bi == prim;
		b->tli = 1;
		b->lsn = base;
		b->recv = b->replay = base - rng_range(r, 0, 65536);
		b->upstream = b->primary ? -1 : (int)prim;
		b->promote_lsn = 0;
		b->slow_until = b->stream_pause_until = b->replay_pause_until = 0;
		b->gen = 0;
		b->tainted = false;
		b->sysid = sysid;
		b->elig_now = b->healthy_now = false;
		b->elig_since = b->healthy_since = 0;
		if (b->foreign) {
			b->sysid = sysid + 1;
			b->tli = 3;
			b->upstream = -1;
			b->recv = b->replay = base * 2;
		}
	}
	s->cur = (int)prim;
	s->epoch = 0;
	s->epoch_fterm = 0;
	s->lost_at = 0;
	s->nfo_log = 0;
	s->max_rec_term = 0;
	memset(s->hooks, 0, sizeof(s->hooks));
}

static void
sim_reset(struct sim *s, uint64_t seed)
{
	struct rng *r;

	s->seed = seed;
	rng_seed(&s->r_cfg, seed, 1);
	rng_seed(&s->r_net, seed, 2);
	rng_seed(&s->r_fault, seed, 3);
	rng_seed(&s->r_fence, seed, 4);
	rng_seed(&s->r_hook, seed, 5);
	rng_seed(&s->r_wal, seed, 6);
	rng_seed(&s->r_chk, seed, 7);
	rng_seed(&s->r_op, seed, 8);
	r = &s->r_cfg;
	s->now = 0;
	s->end = s->o->duration_ms * 1000;
	s->hn = 0;
	s->seq = 0;
	s->violated = false;
	s->vmsg[0] = 0;
	s->quiet = false;
	s->phase = 0;
	s->got_healthy = false;
	s->reliable_phase = false;
	for (size_t i = 0; i < MAXP; i++) {
		struct speer *p = &s->p[i];
		struct pin *pq = p->pq;

		memset(p, 0, sizeof(*p));
		p->pq = pq;
		if (!p->pq && !(p->pq = calloc(PQ_CAP, sizeof(*p->pq)))) {
			perror("fosim: calloc");
			exit(2);
		}
		p->st = PS_DOWN;
		p->wake_local = p->fowake_local = UINT64_MAX;
	}
	memset(s->b, 0, sizeof(s->b));
	make_config(s);
	world_reset(s);
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
		/* The operator's from its own stream: --no-operator replays older schedules. */
		struct rng *fr = operator_fault(f) ? &s->r_op : r;

		s->fault_w[f] = (s->o->fault_mask >> f) & 1 ? (uint32_t)rng_range(fr, 1, 10) : 0;
		if (rng_chance(fr, 200000) || (operator_fault(f) && s->o->no_operator))
			s->fault_w[f] = 0;
	}
	{
		static const uint32_t ok[] = { 1000000, 900000, 500000, 0 };

		s->fence_ok_ppm = ok[rng_range(r, 0, 3)];
	}
	s->tick_first = rng_chance(r, 500000);
}

static void
describe(struct sim *s)
{
	const struct wd_config *c = &s->p[0].cfg;
	const struct fo_config *f = &s->p[0].fcfg;
	char buf[600];
	size_t off = 0;

	for (size_t i = 0; i < s->n; i++)
		off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%u(prio %u%s)",
					i ? " " : "", c->peers[i].id, c->peers[i].priority,
					c->peers[i].witness ? ", witness" : "");
	trace(s, "seed %" PRIu64 ": %s: peers %s", s->seed, mode_names[s->mode], buf);
	off = 0;
	for (size_t bi = 0; bi < s->nb; bi++)
		off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%u@%u(prio %u%s%s)",
					bi ? " " : "", s->b[bi].id, s->p[s->b[bi].host].id,
					s->b[bi].prio, (int)bi == s->cur ? ", primary" : "",
					s->b[bi].foreign ? ", other cluster" : "");
	trace(s, "backends %s", buf);
	trace(s, "heartbeat %u election %u-%u lease %u tilt %u hold %u fence_delay %u",
	      c->heartbeat_ms, c->election_min_ms, c->election_max_ms, c->lease_ms,
	      c->tilt_ms, c->tilt_hold_ms, c->fence_delay_ms);
	trace(s, "health interval %u timeout %u recheck %u threshold %u; wal %u B/tick",
	      s->ci_ms, s->ct_ms, s->rr_ms, s->ft, s->wal_rate);
	trace(s, "failover: auto %d quorum %u max_lag %" PRIu64 " fence_cmd %d (%s) stop_cmd %d "
	      "follow_cmd %d vip %s fence_timeout %u verify %u retry %u-%u settle %u view_age %u",
	      f->auto_failover, f->failure_quorum, f->max_lag, f->has_fence_command,
	      s->power_fence ? "power" : "kill", f->has_stop_command, f->has_follow_command,
	      f->vip_follow == FO_VIP_PRIMARY ? "primary" : "coordinator", f->fence_timeout_ms,
	      f->verify_timeout_ms, f->retry_ms, f->retry_max_ms, f->settle_ms,
	      f->view_max_age_ms);
	off = 0;
	for (int k = 1; k <= FO_HOOK_KIND_MAX; k++)
		off += (size_t)snprintf(buf + off, sizeof(buf) - off,
					" %s:fail%u%%/hang%u%%/late%u%%/%ums", hook_name((enum fo_hook_kind)k),
					s->hk[k].fail_ppm / 10000, s->hk[k].hang_ppm / 10000,
					s->hk[k].late_ppm / 10000, s->hk[k].dur_max_ms);
	trace(s, "hooks (timeout %u ms, promote %s):%s", s->hook_timeout_ms,
	      s->idem_promote ? "idempotent" : "fails on a primary", buf);
	off = 0;
	buf[0] = 0;
	for (int k = 0; k < F_COUNT; k++)
		if (s->fault_w[k])
			off += (size_t)snprintf(buf + off, sizeof(buf) - off, " %s:%u",
						fault_names[k], s->fault_w[k]);
	trace(s, "faults%s; liveness bound %" PRIu64 " ms (election %" PRIu64 ")", buf,
	      s->bound_ms, s->elect_bound_ms);
}

static bool
run_schedule(struct sim *s, uint64_t seed)
{
	uint64_t last_start = 0;

	sim_reset(s, seed);
	s->st.schedules++;
	if (s->tracing)
		describe(s);
	for (size_t i = 0; i < s->n; i++) {
		uint64_t t = rng_range(&s->r_fault, 0, 1000000);

		push(s, t, EV_START, (uint32_t)i, 0, 0, 0);
		if (t > last_start)
			last_start = t;
	}
	push(s, last_start, EV_PHASE, 0, 0, 0, 0);
	push(s, WAL_TICK_US, EV_WAL, 0, 0, 0, 0);
	while (s->hn && !s->violated) {
		struct ev e = pop(s);
		struct speer *p;

		if (e.t > s->end) {
			if (e.kind == EV_DELIVER)
				msg_free(s, e.a);
			continue;
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
				if (!pq_push(p, (struct pin){ .kind = PIN_MSG, .slot = e.a,
							      .from = (uint8_t)e.b })) {
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
		case EV_FOWAKE:
			p = &s->p[e.a];
			if (p->st == PS_UP && e.b == p->fowake_gen)
				fotick(s, e.a);
			break;
		case EV_FENCE_DONE:
			if (e.d) {
				s->st.fences_ok++;
				if (s->h[e.c].up) {
					host_crash(s, e.c, "fenced by the election");
					s->p[e.c].fenced = true;
					host_later(s, e.c, s->quiet ? 500000 : 1000000,
						   s->quiet ? 2000000 : 10000000);
					if (s->quiet)
						quiet_reset(s);
					check_world(s);
				}
			} else {
				s->st.fences_failed++;
			}
			p = &s->p[e.a];
			if (p->st == PS_DOWN || p->inc != e.b)
				break;
			if (p->st == PS_PAUSED)
				pq_push(p, (struct pin){ .kind = PIN_FENCE, .target = (uint8_t)e.c,
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
		case EV_HOSTUP:
			if (s->h[e.a].gen == e.b)
				host_up(s, e.a);
			break;
		case EV_THAW:
			if (s->h[e.a].gen == e.b)
				thaw_host(s, e.a);
			break;
		case EV_EXIT:
			if (s->p[e.a].st != PS_DOWN && s->p[e.a].inc == e.b) {
				crash(s, e.a, "stopped");
				restart_later(s, e.a, 10000, 5000000);
			}
			break;
		case EV_CHECK:
			ev_check(s, e.a, e.b, e.c);
			break;
		case EV_CHECK_SAMPLE:
			ev_check_sample(s, e.a, e.b, e.c);
			break;
		case EV_CHECK_DONE:
			ev_check_done(s, e.a, e.b, e.c, e.d);
			break;
		case EV_HOOK_ACT:
			ev_hook_act(s, e.a, e.b);
			break;
		case EV_HOOK_DONE:
			ev_hook_done(s, e.a, e.b);
			break;
		case EV_BRESTART:
			if (s->b[e.a].gen == e.b)
				pg_restart(s, e.a);
			break;
		case EV_WAL:
			wal_tick(s);
			break;
		case EV_MIDSTEP:
			p = &s->p[e.a];
			if (s->quiet || p->st != PS_UP || p->inc != e.b)
				break;
			if (rng_chance(&s->r_fault, 500000)) {
				s->st.crashes++;
				crash(s, e.a, "midstep");
				restart_later(s, e.a, 1000, 3000000);
			} else {
				pause_peer(s, e.a, rng_range(&s->r_fault, 100000, 3000000));
			}
			break;
		case EV_OP:
			if (s->quiet && e.a == s->phase) {
				operator_round(s);
				push(s, s->now + rng_range(&s->r_fault, 300000, 1500000), EV_OP,
				     s->phase, 0, 0, 0);
			}
			break;
		case EV_OPCMD:
			if (s->quiet && e.a == s->phase)
				operator_ask(s, rng_chance(&s->r_op, 650000) ? F_SWITCHOVER : F_MANUAL);
			break;
		case EV_FAULT:
			if (!s->quiet)
				do_fault(s);
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
			if (s->quiet && e.a == s->phase && e.b == s->quiet_gen)
				deadline(s);
			break;
		default:
			break;
		}
		if (!s->violated) {
			check_world(s);
			note_healthy(s);
		}
	}
	while (s->hn) {
		struct ev e = pop(s);

		if (e.kind == EV_DELIVER)
			msg_free(s, e.a);
	}
	for (size_t i = 0; i < s->n; i++) {
		struct speer *p = &s->p[i];

		pq_drop_all(s, p);
		wd_free(p->wd);
		fo_free(p->fo);
		p->wd = NULL;
		p->fo = NULL;
	}
	if (s->violated) {
		size_t l = strlen(s->vmsg);

		s->st.violations++;
		snprintf(s->vmsg + l, sizeof(s->vmsg) - l, " [%s]", mode_names[s->mode]);
	}
	return s->violated;
}

/* ---- driver: workers, summary --------------------------------------------- */

enum rec_kind { REC_FAIL = 1, REC_PROGRESS, REC_DONE };

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
	if (s->ring) {
		for (size_t i = 0; i < s->ring_n; i++)
			free(s->ring[i]);
		free(s->ring);
	}
}

static void
worker(const struct opts *o, unsigned w, unsigned nw, int fd, volatile uint64_t *current)
{
	struct sim *s = malloc(sizeof(*s));
	struct rec r;
	uint64_t done = 0;

	if (!s)
		exit(2);
	sim_init(s, o);
	for (uint64_t k = w; k < o->seeds; k += nw) {
		uint64_t seed = o->start + k;

		current[w] = seed;
		if (run_schedule(s, seed)) {
			memset(&r, 0, sizeof(r));
			r.kind = REC_FAIL;
			r.seed = seed;
			snprintf(r.msg, sizeof(r.msg), "%s", s->vmsg);
			write_rec(fd, &r);
		}
		if (++done % 1000 == 0) {
			memset(&r, 0, sizeof(r));
			r.kind = REC_PROGRESS;
			r.count = 1000;
			write_rec(fd, &r);
		}
	}
	memset(&r, 0, sizeof(r));
	r.kind = REC_DONE;
	r.count = done % 1000;
	r.st = s->st;
	write_rec(fd, &r);
	sim_fini(s);
	free(s);
}

static void
merge(struct stats *a, const struct stats *b)
{
	const uint64_t *bb = (const uint64_t *)b;
	uint64_t *aa = (uint64_t *)a;
	size_t nsum = offsetof(struct stats, tth_sum_ms) / sizeof(uint64_t);

	/* The plain counters come first in struct stats. */
	for (size_t i = 0; i < nsum; i++)
		aa[i] += bb[i];
	a->tth_sum_ms += b->tth_sum_ms;
	if (b->tth_max_ms > a->tth_max_ms) {
		a->tth_max_ms = b->tth_max_ms;
		a->tth_max_seed = b->tth_max_seed;
	}
	if (b->tth_max_ratio > a->tth_max_ratio) {
		a->tth_max_ratio = b->tth_max_ratio;
		a->tth_ratio_seed = b->tth_ratio_seed;
	}
	if (b->bound_max_ms > a->bound_max_ms)
		a->bound_max_ms = b->bound_max_ms;
	a->fo_time_n += b->fo_time_n;
	a->fo_time_sum_ms += b->fo_time_sum_ms;
	if (b->fo_time_max_ms > a->fo_time_max_ms) {
		a->fo_time_max_ms = b->fo_time_max_ms;
		a->fo_time_max_seed = b->fo_time_max_seed;
	}
	for (int i = 0; i < 8; i++)
		a->tth_hist[i] += b->tth_hist[i];
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
	printf("fosim: %" PRIu64 " ms per schedule; %" PRIu64 " calls, %" PRIu64
	       " deliveries, %" PRIu64 " dropped\n", o->duration_ms, st->events,
	       st->deliveries, st->drops);
	printf("fosim: elections %" PRIu64 ", coordinators %" PRIu64 ", transfers %" PRIu64
	       "; daemon crashes %" PRIu64 ", stops %" PRIu64 ", pauses %" PRIu64 ", starts %" PRIu64
	       "; postmaster crashes %" PRIu64 ", host crashes %" PRIu64 ", freezes %" PRIu64 "\n",
	       st->elections, st->won, st->transfers, st->crashes, st->stops, st->pauses,
	       st->restarts, st->pg_crashes, st->host_crashes, st->freezes);
	printf("fosim: failovers started %" PRIu64 ", done %" PRIu64 ", promotions %" PRIu64
	       ", refused %" PRIu64 ", blocked %" PRIu64 ", two-primaries alarms %" PRIu64
	       ", rejoins %" PRIu64 "\n", st->fo_started, st->fo_done, st->promotions,
	       st->fo_refused, st->fo_blocked, st->two_primaries, st->rejoins_ok);
	printf("fosim: hooks stop %" PRIu64 ", fence %" PRIu64 ", promote %" PRIu64
	       ", follow %" PRIu64 ", rejoin %" PRIu64 "; failed %" PRIu64 " (hung %" PRIu64
	       ", late %" PRIu64 "), not started without a lease %" PRIu64 "\n",
	       st->hooks[FO_HOOK_STOP], st->hooks[FO_HOOK_FENCE], st->hooks[FO_HOOK_PROMOTE],
	       st->hooks[FO_HOOK_FOLLOW], st->hooks[FO_HOOK_REJOIN], st->hooks_failed,
	       st->hooks_hung, st->hooks_late, st->hooks_gated);
	printf("fosim: candidate choices checked %" PRIu64 " (against %" PRIu64
	       " eligible standbys); two-node notes: second failovers %" PRIu64
	       ", lost records %" PRIu64 "\n", st->s4_checked, st->s4_compared,
	       st->second_failovers, st->lost_records);
	printf("fosim: operator: sent switchover %" PRIu64 ", failover %" PRIu64 ", fence %" PRIu64
	       ", not sent (local checks) %" PRIu64 ", refused by the coordinator %" PRIu64
	       "; switchovers started %" PRIu64 ", done %" PRIu64 ", cancelled %" PRIu64
	       ", degraded %" PRIu64 ", promotions checked lossless %" PRIu64 "; clean stops %" PRIu64
	       " (reported %" PRIu64 "); manual failovers %" PRIu64 " (forced %" PRIu64
	       "); operator fences %" PRIu64 " (acted %" PRIu64 "); cancels lost %" PRIu64
	       ", stops after a cancel %" PRIu64 "\n",
	       st->op_sent[0], st->op_sent[1], st->op_sent[2],
	       st->op_local_refused, st->op_refused, st->sw_started, st->sw_done,
	       st->sw_cancelled, st->sw_degraded, st->sw_lossless_checked, st->clean_stops,
	       st->clean_reports, st->man_started, st->man_forced, st->opfences,
	       st->opfences_acted, st->sw_cancel_lost, st->sw_stale_stops);
	printf("fosim: quiet phases %" PRIu64 ", judged %" PRIu64 ", excused %" PRIu64
	       "; healthy with reliable hooks %" PRIu64 ", time to healthy mean %.0f ms, worst %" PRIu64
	       " ms (seed %" PRIu64 "), worst/bound %.2f (seed %" PRIu64 "), largest bound %"
	       PRIu64 " ms\n", st->quiet_phases, st->quiet_checked, st->quiet_excused,
	       st->quiet_healthy,
	       st->quiet_healthy ? (double)st->tth_sum_ms / (double)st->quiet_healthy : 0.0,
	       st->tth_max_ms, st->tth_max_seed, st->tth_max_ratio, st->tth_ratio_seed,
	       st->bound_max_ms);
	if (st->quiet_excused) {
		printf("fosim: excused quiet phases:");
		for (int i = 0; i < EX_COUNT; i++)
			if (st->excuses[i])
				printf(" %s: %" PRIu64 ";", excuse_names[i], st->excuses[i]);
		printf("\n");
	}
	printf("fosim: primary lost (or quiet phase begun) to new primary writable, reliable quiet phases: %" PRIu64
	       " times, mean %.0f ms, worst %" PRIu64 " ms (seed %" PRIu64 ")\n", st->fo_time_n,
	       st->fo_time_n ? (double)st->fo_time_sum_ms / (double)st->fo_time_n : 0.0,
	       st->fo_time_max_ms, st->fo_time_max_seed);
	printf("fosim: time to healthy / bound, in eighths:");
	for (int i = 0; i < 8; i++)
		printf(" %" PRIu64, st->tth_hist[i]);
	printf("\n");
	printf("fosim: %.2f s, %.0f schedules/s\n", secs,
	       secs > 0 ? (double)st->schedules / secs : 0.0);
	printf("%" PRIu64 " schedules, %" PRIu64 " violations\n", st->schedules,
	       st->violations);
}

static int
run_verbose(const struct opts *o)
{
	struct sim *s = malloc(sizeof(*s));
	double t0 = mono_s();
	bool bad;

	if (!s)
		return 2;
	sim_init(s, o);
	s->tracing = true;
	if (o->tail) {
		s->ring_n = o->tail;
		s->ring = calloc(s->ring_n, sizeof(*s->ring));
		if (!s->ring)
			exit(2);
		for (size_t i = 0; i < s->ring_n; i++)
			if (!(s->ring[i] = calloc(1, 640)))
				exit(2);
	}
	bad = run_schedule(s, o->verbose_seed);
	if (s->ring)
		for (size_t k = 0; k < s->ring_n; k++) {
			const char *l = s->ring[(s->ring_pos + k) % s->ring_n];

			if (*l)
				puts(l);
		}
	if (bad)
		printf("FAIL seed %" PRIu64 ": %s\n", o->verbose_seed, s->vmsg);
	summary(o, &s->st, mono_s() - t0);
	sim_fini(s);
	free(s);
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
	uint64_t progress = 0, next_report = 10000;
	double t0 = mono_s();
	uint64_t *shared;
	volatile uint64_t *current;

	memset(&total, 0, sizeof(total));
	shared = mmap(NULL, 64 * sizeof(uint64_t), PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shared == MAP_FAILED) {
		perror("fosim: mmap");
		return 2;
	}
	current = shared;
	if (nw > o->seeds)
		nw = o->seeds ? (unsigned)o->seeds : 1;
	fflush(stdout);
	for (unsigned w = 0; w < nw; w++) {
		int p[2];

		if (pipe(p) < 0) {
			perror("fosim: pipe");
			return 2;
		}
		pids[w] = fork();
		if (pids[w] < 0) {
			perror("fosim: fork");
			return 2;
		}
		if (pids[w] == 0) {
			close(p[0]);
			for (unsigned k = 0; k < w; k++)
				close(fds[k]);
			worker(o, w, nw, p[1], current);
			close(p[1]);
			exit(0);
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
			perror("fosim: poll");
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

				fprintf(stderr, "fosim: %" PRIu64 " schedules, %zu violations, %.0f/s\n",
					progress, nfail, dt > 0 ? (double)progress / dt : 0.0);
				next_report += 10000;
			}
		}
	}
	for (unsigned w = 0; w < nw; w++) {
		int status;

		if (waitpid(pids[w], &status, 0) < 0 || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != 0) {
			if (WIFSIGNALED(status))
				fprintf(stderr, "fosim: worker %u died of signal %d in seed %" PRIu64
					"; replay it with --verbose %" PRIu64 "\n", w,
					WTERMSIG(status), current[w], current[w]);
			else
				fprintf(stderr, "fosim: worker %u failed in seed %" PRIu64 "\n", w,
					current[w]);
			free(fails);
			return 2;
		}
	}
	if (nfail)
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
		"usage: fosim [--seeds N] [--start S] [--duration-ms D] [--jobs J] [--long]\n"
		"             [--verbose SEED [--tail K]] [--mode 3|5|witness|2node]\n"
		"             [--vip coordinator|primary] [--faults LIST] [--reliable]\n"
		"             [--no-transfer] [--no-flush] [--strict-two-node] [--no-operator]\n"
		"             [--strict-cancel] [--max-report N]\n"
		"faults:");
	for (int f = 0; f < F_COUNT; f++)
		fprintf(stderr, "%s%s", f ? "," : " ", fault_names[f]);
	fprintf(stderr, "\n");
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
		fprintf(stderr, "fosim: %s needs a number, not \"%s\"\n", opt, v);
		exit(2);
	}
	return x;
}

static uint64_t
parse_faults(const char *v)
{
	uint64_t mask = 0;
	char buf[512], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", v);
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		int f;

		for (f = 0; f < F_COUNT && strcmp(t, fault_names[f]); f++)
			;
		if (f == F_COUNT) {
			fprintf(stderr, "fosim: unknown fault \"%s\"\n", t);
			exit(2);
		}
		mask |= 1ull << f;
	}
	return mask;
}

int
main(int argc, char **argv)
{
	struct opts o = {
		.seeds = 0, .start = 1, .duration_ms = DEFAULT_DURATION_MS,
		.fault_mask = (1ull << F_COUNT) - 1, .mode = -1, .vip = -1, .max_report = 50,
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
		} else if (!strcmp(a, "--vip")) {
			if (!v)
				usage();
			if (!strcmp(v, "coordinator"))
				o.vip = FO_VIP_COORDINATOR;
			else if (!strcmp(v, "primary"))
				o.vip = FO_VIP_PRIMARY;
			else
				usage();
			i++;
		} else if (!strcmp(a, "--strict-two-node")) {
			o.strict_two_node = true;
		} else if (!strcmp(a, "--reliable")) {
			o.reliable = true;
		} else if (!strcmp(a, "--no-operator")) {
			o.no_operator = true;
		} else if (!strcmp(a, "--strict-cancel")) {
			o.strict_cancel = true;
		} else if (!strcmp(a, "--no-transfer")) {
			o.no_transfer = true;
		} else if (!strcmp(a, "--no-flush")) {
			o.no_flush = true;
		} else if (!strcmp(a, "--long")) {
			o.long_mode = true;
		} else {
			usage();
		}
	}
	if (!seeds_given)
		o.seeds = o.long_mode ? 100000 : 1000;
	if (o.jobs < 1)
		o.jobs = 1;
	if (o.jobs > 64)
		o.jobs = 64;
	if (o.duration_ms < 1000) {
		fprintf(stderr, "fosim: --duration-ms must be at least 1000\n");
		return 2;
	}
	if (o.verbose)
		return run_verbose(&o);
	return run_batch(&o);
}
