/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * failover.c - carries out what the failover state machine (orch.c)
 * decides. Inputs: every finished health check (the whole local view is
 * handed over each time), every heartbeat extension a peer sent, the
 * election's verdict, hook results, a timer at fo_next_wakeup. Effects,
 * in the order given: the record is written durably (state_dir/
 * cluster.state, fsync'd) before any later effect, hooks are started,
 * checks requested, the heartbeat extension refreshed and flushed, the
 * coordinator role handed over, events logged.
 *
 * Where a hook runs: stop_command on the peer next to the backend (the
 * state machine only asks that peer), primary_change_command on every
 * peer once it has made a record with a new primary durable (one run at a
 * time, the latest primary wins), every other failover hook on the
 * coordinator, and only while its lease is valid at the moment of the
 * start (the term is in the hook's arguments so a script can refuse a
 * stale call that was already running when the lease ended).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/state.h"
#include "ctl/json.h"
#include "failover/failover.h"
#include "failover/health.h"
#include "failover/orch.h"
#include "hooks/hook.h"
#include "watchdog/elect.h"
#include "watchdog/watchdog.h"

#define STATE_FILE "cluster.state"
#define STATE_KEY "record"

struct run {
	struct failover *f;	/* borrowed */
	enum fo_hook_kind kind;
	uint8_t backend;
	uint64_t term;
	bool self_fence;	/* not reported to the state machine */
	bool clean;		/* a clean stop (switchover) */
	struct run *next;	/* pending list: runs that could not start */
};

struct failover {
	struct loop *loop;		/* borrowed */
	const struct conf *conf;	/* borrowed */
	struct watchdog *wd;		/* borrowed */
	struct health *health;		/* borrowed */
	struct hook_runner *hooks;	/* borrowed */
	int64_t self;
	struct fo *fo;			/* owned */
	struct loop_timer *timer;	/* owned by the loop */
	struct loop_timer *later;	/* owned by the loop: deferred results */
	struct run *deferred;		/* owned: results to report next turn */
	bool coordinator;
	bool stopping;
	bool transferring;		/* we handed the role over: no self-fence */
	bool vip_allowed;
	void (*vip_fn)(void *arg);
	void *vip_arg;			/* borrowed */
	uint64_t persist_failures;
	failover_event_observer ev_fn;	/* NULL: none (the API's metrics) */
	void *ev_arg;			/* borrowed */
	/* primary_change_command: what it last ran for, what the record says. */
	uint8_t pc_done, pc_wanted;
	uint64_t pc_term;
	bool pc_running;
};

static void run_effects(struct failover *f);

static void
arm(struct failover *f)
{
	uint64_t t = fo_next_wakeup(f->fo);

	if (t == UINT64_MAX)
		loop_timer_stop(f->timer);
	else
		loop_timer_at(f->timer, t);
}

static void
on_timer(struct loop *loop, struct loop_timer *t, void *arg)
{
	struct failover *f = arg;

	(void)loop;
	(void)t;
	fo_tick(f->fo, clock_now_ms());
	run_effects(f);
}

/* ---- the record on disk -------------------------------------------------- */

static int
persist(struct failover *f, const struct fo_record *r)
{
	struct state *st = state_new();
	char buf[1024], err[256];
	int rc = -1;

	if (!st)
		return -1;
	if (fo_record_format(r, buf, sizeof(buf)) == 0 &&
	    state_set(st, STATE_KEY, buf) == 0 &&
	    state_write(st, f->conf->state_dir, STATE_FILE, err, sizeof(err)) == 0)
		rc = 0;
	else
		log_error("could not write the cluster record: %s", err);
	state_free(st);
	return rc;
}

static int
load_record(const struct conf *c, struct fo_record *r, char *err, size_t errlen)
{
	struct state *st = NULL;
	const char *s;
	int rc = state_read(c->state_dir, STATE_FILE, &st, err, errlen);

	memset(r, 0, sizeof(*r));
	if (rc == 1)
		return 0;
	if (rc < 0)
		return -1;
	s = state_get(st, STATE_KEY);
	if (!s || fo_record_parse(s, r) < 0) {
		snprintf(err, errlen, "\"%s/%s\" holds no valid cluster record",
			 c->state_dir, STATE_FILE);
		state_free(st);
		return -1;
	}
	state_free(st);
	return 0;
}

/* ---- hooks ---------------------------------------------------------------- */

static const char *
hook_command(const struct conf *c, enum fo_hook_kind k)
{
	switch (k) {
	case FO_HOOK_STOP: return c->fo.stop_command;
	case FO_HOOK_FENCE: return c->fo.fence_command;
	case FO_HOOK_PROMOTE: return c->fo.failover_command;
	case FO_HOOK_FOLLOW: return c->fo.follow_primary_command;
	case FO_HOOK_REJOIN: return c->fo.rejoin_command;
	}
	return NULL;
}

static const struct conf_backend *
backend_by_id(const struct conf *c, int64_t id)
{
	for (size_t i = 0; i < c->nbackends; i++)
		if (c->backends[i].id == id)
			return &c->backends[i];
	return NULL;
}

static void
report(struct failover *f, const struct run *r, bool ok, uint64_t lsn)
{
	if (r->self_fence)
		return;
	fo_hook_done_lsn(f->fo, clock_now_ms(), r->kind, r->backend, r->term, ok, lsn);
	run_effects(f);
}

/*
 * "shutdown_lsn=X/Y" (PostgreSQL's notation, hex) in a hook's report line,
 * among other key=value words. Returns 0 when absent or malformed.
 */
uint64_t
failover_report_lsn(const char *report)
{
	const char *p = report ? strstr(report, "shutdown_lsn=") : NULL;
	unsigned long long hi, lo;
	int n = 0;

	if (!p || (p != report && p[-1] != ' '))
		return 0;
	p += strlen("shutdown_lsn=");
	if (sscanf(p, "%8llx/%8llx%n", &hi, &lo, &n) != 2 || n == 0 ||
	    (p[n] != '\0' && p[n] != ' ') || hi > 0xffffffffULL || lo > 0xffffffffULL)
		return 0;
	return (uint64_t)hi << 32 | (uint64_t)lo;
}

static void
on_hook_done(const struct hook_result *res, void *arg)
{
	struct run *r = arg;
	struct failover *f = r->f;
	uint64_t lsn = 0;

	if (r->self_fence)
		log_event("self-fence-done", "backend=%u outcome=%s", r->backend,
			  hook_outcome_name(res->outcome));
	if (r->kind == FO_HOOK_STOP && res->outcome == HOOK_OK) {
		lsn = failover_report_lsn(res->report);
		if (r->clean && !lsn)
			log_warning("stop_command stopped backend %u but reported no \"pgvigil-report: shutdown_lsn=X/Y\" line; the switchover cannot prove its target has all WAL",
				    r->backend);
	}
	if (res->outcome != HOOK_CANCELLED)
		report(f, r, res->outcome == HOOK_OK, lsn);
	free(r);
}

static void
on_later(struct loop *loop, struct loop_timer *t, void *arg)
{
	struct failover *f = arg;
	struct run *list = f->deferred;

	(void)loop;
	(void)t;
	f->deferred = NULL;
	while (list) {
		struct run *r = list;

		list = r->next;
		report(f, r, false, 0);
		free(r);
	}
}

/* A hook that cannot run fails, reported from the loop (not re-entrantly). */
static void
defer_failure(struct failover *f, struct run *r)
{
	r->next = f->deferred;
	f->deferred = r;
	loop_timer_in(f->later, 0);
}

static const char *
nz(const char *s)
{
	return s ? s : "";
}

static void
start_hook(struct failover *f, enum fo_hook_kind kind, uint8_t backend,
	   uint8_t new_primary, uint8_t old_primary, uint64_t term, bool self_fence,
	   bool clean)
{
	const struct conf *c = f->conf;
	const char *cmd = hook_command(c, kind);
	const struct conf_backend *d = backend_by_id(c, backend);
	const struct conf_backend *m = new_primary ? backend_by_id(c, new_primary) : NULL;
	const struct conf_backend *o = old_primary ? backend_by_id(c, old_primary) : NULL;
	char sd[8], sp[8], sm[8], sr[8], so[8], sS[8], sT[24], si[24];
	struct hook_var vars[24];
	size_t n = 0;
	struct hook_spec spec;
	struct run *r = calloc(1, sizeof(*r));

	if (!r) {
		log_error("out of memory starting hook %s", fo_hook_name(kind));
		return;
	}
	*r = (struct run){ f, kind, backend, term, self_fence, clean, NULL };
	if (!cmd || !cmd[0]) {
		log_error("hook %s is needed for backend %u but no command is set",
			  fo_hook_name(kind), backend);
		defer_failure(f, r);
		return;
	}
	snprintf(sd, sizeof(sd), "%u", backend);
	snprintf(sp, sizeof(sp), "%" PRId64, d ? d->port : 0);
	snprintf(sm, sizeof(sm), "%u", new_primary);
	snprintf(sr, sizeof(sr), "%" PRId64, m ? m->port : 0);
	snprintf(so, sizeof(so), "%u", old_primary);
	snprintf(sS, sizeof(sS), "%" PRId64, o ? o->port : 0);
	snprintf(sT, sizeof(sT), "%" PRIu64, term);
	snprintf(si, sizeof(si), "%" PRId64, f->self);
#define V(code, env, val) vars[n++] = (struct hook_var){ code, env, nz(val) }
	V('d', "NODE_ID", sd);
	V('h', "NODE_HOST", d ? d->host : "");
	V('p', "NODE_PORT", d ? sp : "");
	V('D', "NODE_DATA", d ? d->data_directory : "");
	V(0, "NODE_USER", d ? d->user : "");
	V(0, "NODE_DBNAME", d ? d->dbname : "");
	V('m', "NEW_PRIMARY_ID", new_primary ? sm : "");
	V('H', "NEW_PRIMARY_HOST", m ? m->host : "");
	V('r', "NEW_PRIMARY_PORT", m ? sr : "");
	V('R', "NEW_PRIMARY_DATA", m ? m->data_directory : "");
	V(0, "NEW_PRIMARY_USER", m ? m->user : "");
	V(0, "NEW_PRIMARY_DBNAME", m ? m->dbname : "");
	V('M', "OLD_MAIN_ID", old_primary ? so : "");
	V('P', "OLD_PRIMARY_ID", old_primary ? so : "");
	V('N', "OLD_PRIMARY_HOST", o ? o->host : "");
	V('S', "OLD_PRIMARY_PORT", o ? sS : "");
	V('T', "TERM", sT);
	V('i', "PEER_ID", si);
	V('c', "CLUSTER", c->cluster_name);
	/* stop_command: "clean" (switchover: checkpoint, fast shutdown) or "immediate". */
	if (kind == FO_HOOK_STOP)
		V(0, "STOP_MODE", clean ? "clean" : "immediate");
#undef V
	conf_hook_spec(c, fo_hook_name(kind), cmd, vars, n, &spec);
	if (hook_run(f->hooks, &spec, on_hook_done, r) < 0)
		defer_failure(f, r);
}

/* ---- primary_change_command ------------------------------------------------ */

struct pc_run {
	struct failover *f;	/* borrowed */
	uint8_t new_primary, old_primary;
	uint64_t term;
};

static void start_primary_change(struct failover *f);

static void
on_pc_done(const struct hook_result *res, void *arg)
{
	struct pc_run *r = arg;
	struct failover *f = r->f;

	log_event(res->outcome == HOOK_OK ? "primary-change-hook-done" : "primary-change-hook-failed",
		  "term=%" PRIu64 " new=%u old=%u outcome=%s exit=%d duration_ms=%" PRIu64,
		  r->term, r->new_primary, r->old_primary, hook_outcome_name(res->outcome),
		  res->exit_code, res->duration_ms);
	f->pc_running = false;
	f->pc_done = r->new_primary;
	free(r);
	/* The primary changed again while it ran: tell about the latest. */
	if (res->outcome != HOOK_CANCELLED && !f->stopping && f->pc_wanted != f->pc_done)
		start_primary_change(f);
}

static void
start_primary_change(struct failover *f)
{
	const struct conf *c = f->conf;
	const char *cmd = c->fo.primary_change_command;
	const struct conf_backend *m = backend_by_id(c, f->pc_wanted);
	const struct conf_backend *o = f->pc_done ? backend_by_id(c, f->pc_done) : NULL;
	char sm[8], sr[8], so[8], sS[8], sT[24], si[24];
	struct hook_var vars[16];
	size_t n = 0;
	struct hook_spec spec;
	struct pc_run *r;

	if (!cmd || !cmd[0] || f->pc_running || !m)
		return;
	r = calloc(1, sizeof(*r));
	if (!r) {
		log_error("out of memory starting hook primary_change");
		return;
	}
	*r = (struct pc_run){ f, f->pc_wanted, f->pc_done, f->pc_term };
	snprintf(sm, sizeof(sm), "%u", r->new_primary);
	snprintf(sr, sizeof(sr), "%" PRId64, m->port);
	snprintf(so, sizeof(so), "%u", r->old_primary);
	snprintf(sS, sizeof(sS), "%" PRId64, o ? o->port : 0);
	snprintf(sT, sizeof(sT), "%" PRIu64, r->term);
	snprintf(si, sizeof(si), "%" PRId64, f->self);
#define V(code, env, val) vars[n++] = (struct hook_var){ code, env, nz(val) }
	V('m', "NEW_PRIMARY_ID", sm);
	V('H', "NEW_PRIMARY_HOST", m->host);
	V('r', "NEW_PRIMARY_PORT", sr);
	V('R', "NEW_PRIMARY_DATA", m->data_directory);
	V(0, "NEW_PRIMARY_USER", m->user);
	V(0, "NEW_PRIMARY_DBNAME", m->dbname);
	V('M', "OLD_MAIN_ID", r->old_primary ? so : "");
	V('P', "OLD_PRIMARY_ID", r->old_primary ? so : "");
	V('N', "OLD_PRIMARY_HOST", o ? o->host : "");
	V('S', "OLD_PRIMARY_PORT", o ? sS : "");
	V('T', "TERM", sT);
	V('i', "PEER_ID", si);
	V('c', "CLUSTER", c->cluster_name);
#undef V
	conf_hook_spec(c, "primary_change", cmd, vars, n, &spec);
	log_event("primary-change-hook-started", "term=%" PRIu64 " new=%u old=%u host=%s port=%s",
		  r->term, r->new_primary, r->old_primary, m->host, sr);
	if (hook_run(f->hooks, &spec, on_pc_done, r) < 0) {
		log_event("primary-change-hook-failed",
			  "term=%" PRIu64 " new=%u old=%u outcome=not-started exit=-1 duration_ms=0",
			  r->term, r->new_primary, r->old_primary);
		free(r);
		return;
	}
	f->pc_running = true;
}

/* A record just made durable here: did the primary change? */
static void
primary_persisted(struct failover *f, const struct fo_record *r)
{
	if (r->primary == f->pc_wanted)
		return;
	f->pc_wanted = r->primary;
	f->pc_term = r->term;
	if (r->primary)
		start_primary_change(f);
}

/* ---- effects -------------------------------------------------------------- */

static void
update_ext(struct failover *f)
{
	uint8_t buf[1024];
	size_t len = fo_ext(f->fo, buf, sizeof(buf));

	if (len == 0 || watchdog_set_ext(f->wd, buf, (uint16_t)len) < 0)
		log_warning("the failover state does not fit in a heartbeat (%zu bytes)", len);
}

static void
run_effects(struct failover *f)
{
	const struct fo_effect *e;
	size_t n = fo_effects(f->fo, &e);
	bool flush = false;
	uint8_t transfer_to = 0;

	for (size_t i = 0; i < n; i++) {
		switch (e[i].kind) {
		case FO_EFF_PERSIST:
			if (persist(f, &e[i].record) < 0) {
				/*
				 * A record we cannot make durable must not be
				 * acted on or claimed: say nothing more this turn.
				 */
				f->persist_failures++;
				log_event("cluster-record-unwritable",
					  "detail=\"the cluster record could not be written; the step waits\"");
				arm(f);
				return;
			}
			primary_persisted(f, &e[i].record);
			break;
		case FO_EFF_HOOK:
			if (e[i].hook != FO_HOOK_STOP &&
			    !watchdog_is_coordinator(f->wd)) {
				log_warning("not starting hook %s: this peer no longer holds a coordinator lease",
					    fo_hook_name(e[i].hook));
				break;
			}
			start_hook(f, e[i].hook, e[i].backend, e[i].new_primary,
				   e[i].old_primary, e[i].term, false, e[i].clean);
			break;
		case FO_EFF_CHECK_NOW:
			health_check_now(f->health);
			break;
		case FO_EFF_FLUSH:
			flush = true;
			break;
		case FO_EFF_TRANSFER:
			/*
			 * After the loop: the watchdog tells its listener
			 * at once, which calls back into the state machine
			 * and replaces the effects this loop reads.
			 */
			transfer_to = e[i].peer;
			break;
		case FO_EFF_EVENT:
			log_event(e[i].event, "%s", e[i].text);
			if (f->ev_fn)
				f->ev_fn(f->ev_arg, e[i].event, e[i].text);
			break;
		}
	}
	update_ext(f);
	if (flush)
		watchdog_flush(f->wd);
	if (fo_vip_allowed(f->fo) != f->vip_allowed) {
		f->vip_allowed = !f->vip_allowed;
		if (f->vip_fn)
			f->vip_fn(f->vip_arg);
	}
	arm(f);
	if (transfer_to) {
		f->transferring = true;
		watchdog_transfer(f->wd, transfer_to, "the VIP follows the primary");
	}
}

/* ---- inputs ---------------------------------------------------------------- */

static enum fo_health
map_health(enum health_state s)
{
	switch (s) {
	case HEALTH_UP: return FO_H_UP;
	case HEALTH_SUSPECT: return FO_H_SUSPECT;
	case HEALTH_FAILED: return FO_H_FAILED;
	default: return FO_H_UNKNOWN;
	}
}

static void
on_health(void *arg, const struct health_backend *changed)
{
	struct failover *f = arg;
	struct fo_view v[FO_MAX_BACKENDS];
	size_t n = health_count(f->health);

	(void)changed;
	if (n > FO_MAX_BACKENDS)
		n = FO_MAX_BACKENDS;
	for (size_t i = 0; i < n; i++) {
		const struct health_backend *b = health_get(f->health, i);

		memset(&v[i], 0, sizeof(v[i]));
		v[i].backend = (uint8_t)b->id;
		v[i].health = (uint8_t)map_health(b->state);
		v[i].role = b->role == HEALTH_ROLE_PRIMARY ? FO_R_PRIMARY :
			    b->role == HEALTH_ROLE_STANDBY ? FO_R_STANDBY : FO_R_UNKNOWN;
		v[i].timeline = b->timeline;
		if (b->role == HEALTH_ROLE_PRIMARY)
			v[i].lsn = b->lsn;
		else
			v[i].lsn = b->receive_lsn > b->replay_lsn ? b->receive_lsn :
				   b->replay_lsn;
		v[i].system_id = b->system_id;
		v[i].checked_at = b->last_check;
		v[i].logical_slots = b->logical_slots;
	}
	fo_local_view(f->fo, clock_now_ms(), v, n);
	run_effects(f);
}

static void
on_ext(void *arg, int64_t from, const uint8_t *ext, size_t len)
{
	struct failover *f = arg;

	if (len == 0 || from < 1 || from > 255)
		return;
	if (fo_peer_ext(f->fo, clock_now_ms(), (uint8_t)from, ext, len) < 0) {
		log_debug("ignoring a malformed failover extension from peer %" PRId64,
			  from);
		return;
	}
	run_effects(f);
}

/* Self-fence: the lease is gone and our own backend is the primary. */
static void
maybe_self_fence(struct failover *f)
{
	const struct fo_record *r = fo_record(f->fo);
	const struct conf_backend *b;

	if (!f->conf->fo.self_fence || f->stopping || f->transferring ||
	    !r->primary)
		return;
	b = backend_by_id(f->conf, r->primary);
	if (!b || b->peer != f->self)
		return;
	log_event("self-fence",
		  "backend=%u reason=\"this peer lost its coordinator lease while next to the primary\"",
		  r->primary);
	start_hook(f, FO_HOOK_STOP, r->primary, 0, r->primary, watchdog_term(f->wd), true, false);
}

void
failover_set_coordinator(struct failover *f, bool has_lease, uint64_t term)
{
	if (f->coordinator && !has_lease) {
		/* A lease handed over on purpose is not a lost one. */
		if (!f->transferring)
			maybe_self_fence(f);
		f->transferring = false;
	}
	if (has_lease)
		f->transferring = false;
	f->coordinator = has_lease;
	fo_set_coordinator(f->fo, clock_now_ms(), has_lease, term);
	run_effects(f);
}

/* ---- life ------------------------------------------------------------------ */

static void
make_config(const struct conf *c, int64_t self, struct fo_config *cfg)
{
	struct wd_config w;

	conf_fo_config(c, self, cfg);
	conf_wd_config(c, self, &w);
	cfg->two_node = w.two_node;
	cfg->recheck_bound_ms = (uint32_t)(c->health.interval_ms + c->health.timeout_ms);
}

struct failover *
failover_new(struct loop *loop, const struct conf *conf, int64_t self,
	     struct watchdog *wd, struct health *health, struct hook_runner *hooks,
	     char *err, size_t errlen)
{
	struct failover *f = calloc(1, sizeof(*f));
	struct fo_config cfg;
	struct fo_record rec;

	if (!f) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	*f = (struct failover){ .loop = loop, .conf = conf, .wd = wd,
		.health = health, .hooks = hooks, .self = self };
	make_config(conf, self, &cfg);
	if (fo_check_config(&cfg, err, errlen) < 0)
		goto fail;
	if (load_record(conf, &rec, err, errlen) < 0)
		goto fail;
	f->fo = fo_new(&cfg, &rec, clock_now_ms());
	f->timer = loop_timer_new(loop, on_timer, f);
	f->later = loop_timer_new(loop, on_later, f);
	if (!f->fo || !f->timer || !f->later) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	f->vip_allowed = fo_vip_allowed(f->fo);
	/* The record on disk is where the last run left things: no hook for it. */
	f->pc_done = f->pc_wanted = rec.primary;
	health_set_listener(health, on_health, f);
	watchdog_set_ext_listener(wd, on_ext, f);
	update_ext(f);
	if (rec.term)
		log_info("cluster record from \"%s/%s\": primary %u, timeline %" PRIu32 ", step %s%s; it is checked against the backends before anything is done",
			 conf->state_dir, STATE_FILE, rec.primary, rec.timeline,
			 fo_step_name(rec.step), rec.paused ? ", maintenance on" : "");
	return f;
fail:
	failover_free(f);
	return NULL;
}

void
failover_reload(struct failover *f, const struct conf *conf)
{
	struct fo_config cfg;
	char err[256];

	make_config(conf, f->self, &cfg);
	if (fo_check_config(&cfg, err, sizeof(err)) < 0) {
		log_error("failover settings not applied: %s", err);
		return;
	}
	f->conf = conf;
	fo_reload(f->fo, &cfg);
	run_effects(f);
}

void
failover_stop(struct failover *f)
{
	f->stopping = true;
}

void
failover_free(struct failover *f)
{
	if (!f)
		return;
	if (f->health)
		health_set_listener(f->health, NULL, NULL);
	if (f->wd)
		watchdog_set_ext_listener(f->wd, NULL, NULL);
	while (f->deferred) {
		struct run *r = f->deferred;

		f->deferred = r->next;
		free(r);
	}
	loop_timer_free(f->timer);
	loop_timer_free(f->later);
	fo_free(f->fo);
	free(f);
}

bool
failover_vip_allowed(const struct failover *f)
{
	return fo_vip_allowed(f->fo);
}

void
failover_set_vip_listener(struct failover *f, void (*fn)(void *arg), void *arg)
{
	f->vip_fn = fn;
	f->vip_arg = arg;
}

/* "progress": one line for pgvigilctl to follow a switchover or failover. */
static void
print_progress(struct failover *f, FILE *out)
{
	const struct fo_record *r = fo_record(f->fo);
	uint32_t applied = fo_record_op_applied(r, (uint8_t)f->self);

	fprintf(out, "failover=%" PRIu64 ".%" PRIu64 " step=%s kind=%s primary=%u old=%u candidate=%u target=%u op_applied=%" PRIu32 " op_sent=%" PRIu32 " coordinator=%" PRId64 "\n",
		r->failover_term, r->failover_seq, fo_step_name(r->step),
		fo_kind_name(r->kind), r->primary, r->old_primary, r->candidate,
		r->target, applied, fo_op_seq(f->fo), watchdog_coordinator(f->wd));
}

int
failover_request(struct failover *f, const char *request, const char *who,
		 FILE *out)
{
	char err[160], word[16] = "";
	enum fo_command cmd;
	unsigned arg = 0;
	const char *what, *name;
	char whatbuf[200];
	int n;

	if (strcmp(request, "progress") == 0) {
		print_progress(f, out);
		return 0;
	}
	/* "switchover [ID] [dry-run]", "failover [ID] [force] [dry-run]", "fence ID" */
	n = sscanf(request, "%15s", word);
	if (n >= 1 && (strcmp(word, "switchover") == 0 || strcmp(word, "failover") == 0)) {
		bool sw = word[0] == 's', dry = false, force = false;
		char report[2048];
		uint8_t chosen = 0;
		const char *tok = request + strlen(word);

		while (*tok == ' ')
			tok++;
		while (*tok) {
			char t[16];
			int used = 0;
			unsigned id;

			if (sscanf(tok, "%15s%n", t, &used) != 1)
				break;
			if (strcmp(t, "dry-run") == 0)
				dry = true;
			else if (!sw && strcmp(t, "force") == 0)
				force = true;
			else if (sscanf(t, "%3u", &id) == 1 && id >= 1 && id <= 255 &&
				 strspn(t, "0123456789") == strlen(t) && !arg)
				arg = id;
			else {
				fprintf(out, "unknown argument \"%.15s\" of %s", t, word);
				return -1;
			}
			tok += used;
			while (*tok == ' ')
				tok++;
		}
		cmd = sw ? FO_CMD_SWITCHOVER : force ? FO_CMD_FAILOVER_FORCE : FO_CMD_FAILOVER;
		if (fo_preflight(f->fo, clock_now_ms(), cmd, (uint8_t)arg, report,
				 sizeof(report), &chosen) < 0 ||
		    watchdog_coordinator(f->wd) <= 0) {
			const char *no = strstr(report, "no: ");
			const char *nl;

			if (watchdog_coordinator(f->wd) <= 0)
				no = "no: no coordinator is known: nothing can be carried out now";
			no = no ? no + 4 : "a check failed";
			nl = strchr(no, '\n');
			fprintf(out, "%s is not possible: %.*s\n%s", word,
				nl ? (int)(nl - no) : (int)strlen(no), no, report);
			return -1;
		}
		if (dry) {
			fprintf(out, "%s%s of backend %u to backend %u would be carried out by the coordinator, peer %" PRId64 "; dry run: nothing was done",
				report, sw ? "switchover" : "failover", fo_record(f->fo)->primary,
				chosen, watchdog_coordinator(f->wd));
			return 0;
		}
		if (fo_command(f->fo, clock_now_ms(), cmd, (uint8_t)arg, err, sizeof(err)) < 0) {
			fprintf(out, "%s", err);
			return -1;
		}
		log_event("operator-request", "request=%s backend=%u%s by=\"%s\"", word, arg,
			  force ? " force=yes" : "", who ? who : "unknown");
		run_effects(f);
		fprintf(out, "%s%s requested: backend %u to backend %u%s; the coordinator, peer %" PRId64 ", checks again and carries it out\n",
			report, sw ? "switchover" : "failover", fo_record(f->fo)->primary,
			arg ? arg : chosen, arg ? "" : " (or the best standby then)",
			watchdog_coordinator(f->wd));
		print_progress(f, out);
		return 0;
	}
	if (strcmp(request, "pause") == 0) {
		cmd = FO_CMD_PAUSE;
		name = "pause";
		what = "maintenance mode on: no automatic failover until resume";
	} else if (strcmp(request, "resume") == 0) {
		cmd = FO_CMD_RESUME;
		name = "resume";
		what = "maintenance mode off: automatic failover resumes";
	} else if (sscanf(request, "rejoin %3u", &arg) == 1 && arg >= 1 && arg <= 255) {
		cmd = FO_CMD_REJOIN;
		name = "rejoin";
		what = "rejoin requested: the coordinator runs rejoin_command";
	} else if (sscanf(request, "fence %3u", &arg) == 1 && arg >= 1 && arg <= 255) {
		cmd = FO_CMD_FENCE;
		name = "fence";
		snprintf(whatbuf, sizeof(whatbuf),
			 "fence requested: the coordinator runs fence_command against backend %u; it is flagged needs-rejoin",
			 arg);
		what = whatbuf;
	} else {
		fprintf(out, "unknown request \"%.64s\"", request);
		return -1;
	}
	if (fo_command(f->fo, clock_now_ms(), cmd, (uint8_t)arg, err, sizeof(err)) < 0) {
		fprintf(out, "%s", err);
		return -1;
	}
	log_event("operator-request", "request=%s backend=%u by=\"%s\"", name, arg,
		  who ? who : "unknown");
	run_effects(f);
	fprintf(out, "%s", what);
	return 0;
}

void
failover_status_json(const struct failover *f, struct json *j)
{
	const struct fo_record *r = fo_record(f->fo);
	const struct fo_counters *c = fo_counters(f->fo);

	json_key(j, "failover");
	json_begin_object(j);
	json_key(j, "primary");
	if (r->primary)
		json_uint(j, r->primary);
	else
		json_null(j);
	json_key(j, "timeline");
	json_uint(j, r->timeline);
	json_key(j, "step");
	json_str(j, fo_step_name(r->step));
	json_key(j, "name");
	if (r->step != FO_STEP_NONE) {
		char name[48];

		snprintf(name, sizeof(name), "%" PRIu64 ".%" PRIu64, r->failover_term,
			 r->failover_seq);
		json_str(j, name);
	} else {
		json_null(j);
	}
	json_key(j, "kind");
	json_str(j, r->step != FO_STEP_NONE ? fo_kind_name(r->kind) : NULL);
	json_key(j, "maintenance");
	json_bool(j, r->paused);
	json_key(j, "record_term");
	json_uint(j, r->term);
	json_key(j, "record_seq");
	json_uint(j, r->seq);
	json_key(j, "old_primary");
	json_uint(j, r->old_primary);
	json_key(j, "candidate");
	json_uint(j, r->candidate);
	json_key(j, "last_primary_lsn");
	json_uint(j, r->last_primary_lsn);
	json_key(j, "switch_lsn");
	json_uint(j, r->switch_lsn);
	json_key(j, "needs_rejoin");
	json_begin_array(j);
	for (size_t i = 0; i < r->nflags; i++)
		if (r->flags[i].flags & FO_B_NEEDS_REJOIN)
			json_uint(j, r->flags[i].backend);
	json_end_array(j);
	json_key(j, "waiting");
	json_str(j, fo_waiting(f->fo));
	json_key(j, "failovers");
	json_uint(j, c->failovers);
	json_key(j, "failovers_done");
	json_uint(j, c->failovers_done);
	json_key(j, "fences_failed");
	json_uint(j, c->fences_failed);
	json_key(j, "refusals");
	json_uint(j, c->refusals);
	json_end_object(j);
}

void
failover_status_table(const struct failover *f, FILE *out)
{
	const struct fo_record *r = fo_record(f->fo);
	const char *w = fo_waiting(f->fo);

	fprintf(out, "  maintenance %s\n", r->paused ? "on: no automatic failover" : "off");
	if (r->step == FO_STEP_NONE)
		fprintf(out, "  failover: none in progress");
	else
		fprintf(out, "  failover %" PRIu64 ".%" PRIu64 " (%s): step %s, old primary %u, candidate %u",
			r->failover_term, r->failover_seq, fo_kind_name(r->kind),
			fo_step_name(r->step), r->old_primary, r->candidate);
	if (r->primary)
		fprintf(out, "; primary backend %u, timeline %" PRIu32, r->primary,
			r->timeline);
	else
		fprintf(out, "; primary not known yet");
	fprintf(out, "\n");
	if (w[0])
		fprintf(out, "  waiting for: %s\n", w);
}

void
failover_set_event_observer(struct failover *f, failover_event_observer fn,
			    void *arg)
{
	f->ev_fn = fn;
	f->ev_arg = arg;
}

const struct fo_record *
failover_record(const struct failover *f)
{
	return fo_record(f->fo);
}

const struct fo_counters *
failover_counters(const struct failover *f)
{
	return fo_counters(f->fo);
}

const char *
failover_backend_role(const struct failover *f, int64_t id)
{
	const struct fo_record *r = fo_record(f->fo);
	uint8_t flags;

	if (id < 1 || id > 255)
		return NULL;
	flags = fo_record_flags(r, (uint8_t)id);
	if (r->primary == id && !(flags & FO_B_FENCED))
		return "primary";
	/* once the failover is over, what to do about it is the rejoin */
	if ((flags & FO_B_FENCED) &&
	    (r->step != FO_STEP_NONE || !(flags & FO_B_NEEDS_REJOIN)))
		return "fenced";
	if (flags & FO_B_NEEDS_REJOIN)
		return "needs-rejoin";
	return r->primary ? "standby" : NULL;
}
