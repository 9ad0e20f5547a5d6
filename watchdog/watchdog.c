/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * watchdog.c - carries out the election's effects on the real world.
 *
 * The election (elect.c) decides; this file only moves bytes and time:
 * it reads datagrams, opens them with the wire codec (wire.c), hands the
 * messages to the state machine with the current CLOCK_BOOTTIME time, and
 * then performs the effects it queued, in order:
 *
 *   PERSIST  the term and vote go to state_dir/watchdog.state (temp file,
 *            fsync, rename, fsync of the directory) before anything after it
 *            in the batch happens; if that fails the batch is dropped and
 *            the daemon stops, since a vote that is not durable must not be
 *            sent (S5);
 *   SEND     sealed and sent with sendto; a send error is counted, never
 *            retried (the next heartbeat is the retry);
 *   FENCE    the fence_command hook, whose outcome goes back to the state
 *            machine (exit 0 = fenced; anything else = not fenced, S6);
 *   ROLE     one event line.
 *
 * One loop timer is armed at the state machine's next wake-up. The steady
 * heartbeat path allocates nothing: the receive buffer and the codec's
 * contexts are allocated once.
 *
 * Other parts reach in through a few calls: extension bytes for the
 * heartbeats (watchdog_set_ext, then watchdog_flush to send them now), a
 * listener for the extension bytes of every authenticated heartbeat, and
 * watchdog_transfer to hand the coordinator role over. Callbacks run only
 * after the state machine's effects are carried out, so a callback may
 * call back into the watchdog; the one exception is the entitlement
 * listener at a transfer, told first (before any datagram leaves) so that
 * the VIP is released before the successor can take the role.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/state.h"
#include "ctl/json.h"
#include "hooks/hook.h"
#include "watchdog/elect.h"
#include "watchdog/watchdog.h"
#include "watchdog/wire.h"

#define VOTE_FILE "watchdog.state"
#define RECV_BATCH 64
#define REJECT_LOG_EVERY_MS 10000
#define RESIGN_HOLD_MS 5000	/* no candidacy after resigning */

struct watchdog {
	struct loop *loop;		/* borrowed */
	const struct conf *conf;	/* borrowed: the running configuration */
	struct hook_runner *hooks;	/* borrowed */
	int64_t self;
	int fd;				/* UDP socket bound to our peer address */
	struct wire *wire;		/* owned */
	struct wd *wd;			/* owned */
	struct loop_timer *timer;	/* owned by the loop */
	void (*on_fatal)(void *arg);
	void *fatal_arg;		/* borrowed */
	bool fatal;
	uint64_t tilts_seen;		/* wd_counters()->tilts already logged */
	uint64_t send_errors;
	uint64_t wrong_source;
	uint64_t reject_logged_at[WIRE_R_COUNT];
	watchdog_listener listener;
	void *listener_arg;		/* borrowed */
	watchdog_status_extra extra;
	void *extra_arg;		/* borrowed */
	watchdog_ext_listener ext_listener;
	void *ext_arg;			/* borrowed */
	/* the verdict the listener was last told */
	bool told;
	bool told_lease;
	uint64_t told_end, told_term;
	uint8_t buf[WIRE_MAX_DGRAM + 1];
};

static void run_effects(struct watchdog *w);

static void
rearm(struct watchdog *w)
{
	if (!w->fatal)
		loop_timer_at(w->timer, wd_next_wakeup(w->wd));
}

/*
 * Tells the listener the election's verdict: always after a step of the
 * election (a renewal moves lease_end), only when it changed otherwise.
 */
static void
notify(struct watchdog *w, uint64_t now, bool always)
{
	bool lease = wd_has_lease(w->wd, now);
	uint64_t end = lease ? wd_lease_end(w->wd) : 0, term = wd_term(w->wd);

	if (!w->listener || w->fatal)
		return;
	if (!always && w->told && w->told_lease == lease && w->told_end == end &&
	    w->told_term == term)
		return;
	w->told = true;
	w->told_lease = lease;
	w->told_end = end;
	w->told_term = term;
	w->listener(w->listener_arg, lease, end, term);
}

/* After every entry into the state machine: effects, events, verdict, timer. */
static void
after_call_notify(struct watchdog *w, uint64_t now, bool always)
{
	const struct wd_counters *c = wd_counters(w->wd);

	run_effects(w);
	if (c->tilts != w->tilts_seen) {
		w->tilts_seen = c->tilts;
		log_event("tilt", "peer=%" PRId64 " hold_ms=%" PRId64
			  " detail=\"the loop did not run for longer than stall_threshold\"",
			  w->self, w->conf->wd.stall_hold_ms);
	}
	notify(w, now, always);
	rearm(w);
}

static void
after_call(struct watchdog *w, uint64_t now)
{
	after_call_notify(w, now, true);
}

static int
persist(struct watchdog *w, const struct wd_durable *d)
{
	struct state *st = state_new();
	char err[512];
	int rc = -1;

	if (st && state_set_u64(st, "term", d->term) == 0 &&
	    state_set_u64(st, "voted_for", d->voted_for) == 0 &&
	    state_write(st, w->conf->state_dir, VOTE_FILE, err, sizeof(err)) == 0)
		rc = 0;
	else if (st)
		log_error("could not make term %" PRIu64 " and vote durable: %s",
			  d->term, err);
	state_free(st);
	return rc;
}

static void
send_msg(struct watchdog *w, uint8_t to, const struct wd_msg *m)
{
	const struct conf_peer *p = conf_peer_by_id(w->conf, to);
	uint8_t out[WIRE_MAX_DGRAM];
	ssize_t n;

	if (!p)
		return;
	n = wire_seal(w->wire, to, m, out, sizeof(out));
	if (n < 0 || sendto(w->fd, out, (size_t)n, MSG_DONTWAIT,
			    (const struct sockaddr *)&p->sa, p->salen) < 0) {
		w->send_errors++;
		log_debug("could not send %s to peer %u: %s", wd_msg_type_name(m->type),
			  to, n < 0 ? "encoding failed" : strerror(errno));
	}
}

struct fence_ctx {
	struct watchdog *w;	/* borrowed */
	uint8_t target;
};

static void
fence_done(const struct hook_result *res, void *arg)
{
	struct fence_ctx *fc = arg;
	struct watchdog *w = fc->w;
	uint64_t now = clock_now_ms();
	bool ok = res->outcome == HOOK_OK;

	if (ok)
		log_event("fence-succeeded", "target=%u outcome=%s exit=%d duration_ms=%" PRIu64,
			  fc->target, hook_outcome_name(res->outcome), res->exit_code,
			  res->duration_ms);
	else
		log_event("fence-failed", "target=%u outcome=%s exit=%d duration_ms=%" PRIu64,
			  fc->target, hook_outcome_name(res->outcome), res->exit_code,
			  res->duration_ms);
	if (!ok && res->outcome != HOOK_CANCELLED)
		log_error("fencing peer %u failed; this peer will not take the coordinator role and retries later",
			  fc->target);
	if (res->outcome != HOOK_CANCELLED && !w->fatal) {
		wd_fence_done(w->wd, now, fc->target, ok);
		after_call(w, now);
	}
	free(fc);
}

static void
start_fence(struct watchdog *w, uint8_t target, const char *reason)
{
	const struct conf_peer *p = conf_peer_by_id(w->conf, target);
	const char *cmd = w->conf->wd.fence_command;
	char tid[8], self[24], term[24];
	struct hook_var vars[5];
	struct hook_spec spec;
	struct fence_ctx *fc = calloc(1, sizeof(*fc));
	uint64_t now = clock_now_ms();

	log_event("fence-started", "target=%u reason=\"%s\"", target, reason);
	if (!fc || !p || !cmd || !cmd[0]) {
		free(fc);
		log_error("cannot fence peer %u: no fence_command is configured", target);
		log_event("fence-failed", "target=%u outcome=not-started", target);
		wd_fence_done(w->wd, now, target, false);
		after_call(w, now);
		return;
	}
	fc->w = w;
	fc->target = target;
	snprintf(tid, sizeof(tid), "%u", target);
	snprintf(self, sizeof(self), "%" PRId64, w->self);
	snprintf(term, sizeof(term), "%" PRIu64, wd_term(w->wd));
	vars[0] = (struct hook_var){ 't', "TARGET_ID", tid };
	vars[1] = (struct hook_var){ 'a', "TARGET_ADDRESS", p->address };
	vars[2] = (struct hook_var){ 'i', "PEER_ID", self };
	vars[3] = (struct hook_var){ 'T', "TERM", term };
	vars[4] = (struct hook_var){ 'c', "CLUSTER", w->conf->cluster_name };
	conf_hook_spec(w->conf, "fence", cmd, vars, 5, &spec);
	if (hook_run(w->hooks, &spec, fence_done, fc) < 0) {
		free(fc);
		log_event("fence-failed", "target=%u outcome=not-started", target);
		wd_fence_done(w->wd, now, target, false);
		after_call(w, now);
	}
}

static void
run_effects(struct watchdog *w)
{
	const struct wd_effect *e;
	size_t n = wd_effects(w->wd, &e);
	uint8_t fence_target = 0;
	const char *fence_reason = NULL;

	for (size_t i = 0; i < n && !w->fatal; i++) {
		switch (e[i].kind) {
		case WD_EFF_PERSIST:
			if (persist(w, &e[i].durable) < 0) {
				/* Nothing after an unwritten vote may happen. */
				w->fatal = true;
				loop_timer_stop(w->timer);
				if (w->on_fatal)
					w->on_fatal(w->fatal_arg);
				return;
			}
			break;
		case WD_EFF_SEND:
			send_msg(w, e[i].to, &e[i].msg);
			break;
		case WD_EFF_FENCE:
			/*
			 * Started after the batch: a hook that cannot even start
			 * re-enters the state machine, which replaces this list.
			 */
			fence_target = e[i].target;
			fence_reason = e[i].reason;
			break;
		case WD_EFF_ROLE:
			log_event("role-changed",
				  "role=%s term=%" PRIu64 " coordinator=%u reason=\"%s\"",
				  wd_role_name(e[i].role), e[i].term, e[i].leader,
				  e[i].reason ? e[i].reason : "");
			break;
		}
	}
	if (fence_target && !w->fatal)
		start_fence(w, fence_target, fence_reason ? fence_reason : "");
}

static void
on_timer(struct loop *loop, struct loop_timer *t, void *arg)
{
	struct watchdog *w = arg;
	uint64_t now = clock_now_ms();

	(void)loop;
	(void)t;
	wd_tick(w->wd, now);
	after_call(w, now);
}

static bool
same_host(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
		      &((const struct sockaddr_in6 *)b)->sin6_addr,
		      sizeof(struct in6_addr)) == 0;
}

static void
log_reject(struct watchdog *w, enum wire_reject r, const struct sockaddr_storage *src)
{
	uint64_t now = clock_now_ms();
	char addr[INET6_ADDRSTRLEN] = "?";

	if (w->reject_logged_at[r] && now - w->reject_logged_at[r] < REJECT_LOG_EVERY_MS)
		return;
	w->reject_logged_at[r] = now;
	if (src->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)src)->sin_addr, addr, sizeof(addr));
	else if (src->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)src)->sin6_addr, addr, sizeof(addr));
	log_warning("dropped a datagram from %s: %s (%" PRIu64 " so far; logged at most every %ds)",
		    addr, wire_reject_name(r), wire_counters(w->wire)[r],
		    REJECT_LOG_EVERY_MS / 1000);
}

static void
on_readable(struct loop *loop, int fd, uint32_t events, void *arg)
{
	struct watchdog *w = arg;

	(void)loop;
	(void)events;
	for (int i = 0; i < RECV_BATCH && !w->fatal; i++) {
		struct sockaddr_storage src;
		socklen_t slen = sizeof(src);
		ssize_t n = recvfrom(fd, w->buf, sizeof(w->buf), MSG_DONTWAIT,
				     (struct sockaddr *)&src, &slen);
		struct wd_msg m;
		uint8_t from;
		enum wire_reject r;

		if (n < 0)
			return;
		r = wire_open(w->wire, w->buf, (size_t)n, &from, &m);
		if (r != WIRE_OK) {
			log_reject(w, r, &src);
			continue;
		}
		const struct conf_peer *p = conf_peer_by_id(w->conf, from);

		/* Authentic, but not from where that peer lives: not ours to trust. */
		if (!p || !same_host(&src, &p->sa)) {
			w->wrong_source++;
			continue;
		}
		uint64_t now = clock_now_ms();

		wd_receive(w->wd, now, from, &m);
		after_call(w, now);
		/* After the effects: the listener may call back into us. */
		if (m.type == WD_MSG_HEARTBEAT && w->ext_listener && !w->fatal)
			w->ext_listener(w->ext_arg, from, m.ext, m.ext_len);
	}
}

static int
open_socket(struct watchdog *w, char *err, size_t errlen)
{
	const struct conf_peer *me = conf_peer_by_id(w->conf, w->self);
	int one = 1;

	w->fd = socket(me->sa.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (w->fd < 0) {
		snprintf(err, errlen, "could not create UDP socket: %s", strerror(errno));
		return -1;
	}
	if (me->sa.ss_family == AF_INET6)
		setsockopt(w->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(w->fd, (const struct sockaddr *)&me->sa, me->salen) < 0) {
		snprintf(err, errlen, "could not bind UDP socket to %s port %" PRId64 ": %s",
			 me->address, me->port, strerror(errno));
		return -1;
	}
	return 0;
}

static int
read_vote(struct watchdog *w, struct wd_durable *d, char *err, size_t errlen)
{
	struct state *st = NULL;
	uint64_t term = 0, voted = 0;
	int rc = state_read(w->conf->state_dir, VOTE_FILE, &st, err, errlen);

	memset(d, 0, sizeof(*d));
	if (rc == 1)
		return 0;
	if (rc < 0)
		return -1;
	if (state_get_u64(st, "term", &term) < 0 ||
	    state_get_u64(st, "voted_for", &voted) < 0 || voted > CONF_MAX_ID) {
		snprintf(err, errlen, "vote file \"%s/%s\" lacks a valid term or vote",
			 w->conf->state_dir, VOTE_FILE);
		state_free(st);
		return -1;
	}
	state_free(st);
	d->term = term;
	d->voted_for = (uint8_t)voted;
	return 0;
}

struct watchdog *
watchdog_new(struct loop *loop, const struct conf *conf, int64_t self,
	     uint64_t boot_id, struct hook_runner *hooks,
	     void (*on_fatal)(void *arg), void *arg, char *err, size_t errlen)
{
	struct watchdog *w = calloc(1, sizeof(*w));
	uint8_t secret[256];
	size_t slen = 0;
	uint32_t rnd = 0;
	struct wd_config wc;
	struct wd_durable d;
	uint64_t now = clock_now_ms();

	if (!w) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	w->loop = loop;
	w->conf = conf;
	w->hooks = hooks;
	w->self = self;
	w->fd = -1;
	w->on_fatal = on_fatal;
	w->fatal_arg = arg;
	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
		rnd = (uint32_t)now ^ (uint32_t)getpid();
	conf_wd_config(conf, self, &wc);
	if (wd_check_config(&wc, (unsigned)conf->wd.drift_pct, err, errlen) < 0 ||
	    read_vote(w, &d, err, errlen) < 0 ||
	    wire_load_key(conf->key_file, secret, sizeof(secret), &slen, err, errlen) < 0)
		goto fail;
	w->wire = wire_new(conf->cluster_name, secret, slen, (uint8_t)self,
			   boot_id, err, errlen);
	explicit_bzero(secret, sizeof(secret));
	if (!w->wire)
		goto fail;
	for (size_t i = 0; i < conf->npeers; i++)
		if (conf->peers[i].id != self)
			wire_add_peer(w->wire, (uint8_t)conf->peers[i].id);
	w->wd = wd_new(&wc, &d, now, ((uint64_t)rnd << 32) ^ now);
	w->timer = loop_timer_new(loop, on_timer, w);
	if (!w->wd || !w->timer) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (open_socket(w, err, errlen) < 0)
		goto fail;
	if (loop_add_fd(loop, w->fd, EPOLLIN, on_readable, w) < 0) {
		snprintf(err, errlen, "could not watch UDP socket: %s", strerror(errno));
		goto fail;
	}
	log_event("watchdog-started",
		  "peer=%" PRId64 " term=%" PRIu64 " voted_for=%u peers=%zu mode=%s",
		  self, d.term, d.voted_for, conf->npeers,
		  wc.two_node ? "two-node" : "majority");
	rearm(w);
	return w;
fail:
	explicit_bzero(secret, sizeof(secret));
	watchdog_free(w);
	return NULL;
}

void
watchdog_reload(struct watchdog *w, const struct conf *conf)
{
	w->conf = conf;
}

void
watchdog_stop(struct watchdog *w)
{
	uint64_t now = clock_now_ms();

	if (!w || w->fatal)
		return;
	wd_stop(w->wd, now);
	run_effects(w);
	log_event("watchdog-stopped", "peer=%" PRId64 " term=%" PRIu64, w->self,
		  wd_term(w->wd));
}

void
watchdog_free(struct watchdog *w)
{
	if (!w)
		return;
	if (w->fd >= 0) {
		loop_del_fd(w->loop, w->fd);
		close(w->fd);
	}
	loop_timer_free(w->timer);
	wd_free(w->wd);
	wire_free(w->wire);
	free(w);
}

void
watchdog_set_listener(struct watchdog *w, watchdog_listener fn, void *arg)
{
	w->listener = fn;
	w->listener_arg = arg;
}

void
watchdog_set_status_extra(struct watchdog *w, watchdog_status_extra fn, void *arg)
{
	w->extra = fn;
	w->extra_arg = arg;
}

void
watchdog_resign(struct watchdog *w, const char *reason)
{
	uint64_t now = clock_now_ms();

	if (!w || w->fatal)
		return;
	log_warning("stepping down as coordinator for %d ms: %s", RESIGN_HOLD_MS, reason);
	wd_resign(w->wd, now, RESIGN_HOLD_MS, reason);
	after_call(w, now);
}

bool
watchdog_is_coordinator(const struct watchdog *w)
{
	return wd_has_lease(w->wd, clock_now_ms());
}

int
watchdog_set_ext(struct watchdog *w, const uint8_t *ext, uint16_t len)
{
	/* A heartbeat that cannot be encoded would never leave: refuse here. */
	if (!w || (len && !ext) || !wire_ext_valid(ext, len))
		return -1;
	return wd_set_ext(w->wd, ext, len);
}

void
watchdog_flush(struct watchdog *w)
{
	uint64_t now = clock_now_ms();

	if (!w || w->fatal)
		return;
	wd_flush(w->wd, now);
	after_call_notify(w, now, false);
}

void
watchdog_transfer(struct watchdog *w, int64_t target, const char *reason)
{
	uint64_t now = clock_now_ms();
	uint64_t before;
	bool was;

	if (!w || w->fatal)
		return;
	if (target < 1 || target > CONF_MAX_ID || target == w->self) {
		log_warning("not handing the coordinator role to peer %" PRId64
			    ": not another peer's id", target);
		return;
	}
	was = wd_role(w->wd) == WD_LEADER;
	before = wd_counters(w->wd)->transfers;
	wd_transfer(w->wd, now, (uint8_t)target, reason ? reason : "");
	if (was && wd_counters(w->wd)->transfers == before && wd_role(w->wd) == WD_LEADER)
		log_warning("not handing the coordinator role to peer %" PRId64
			    ": it is not an eligible peer that is up and follows this coordinator",
			    target);
	/* The lease is gone: the VIP goes before the successor hears of it. */
	notify(w, now, false);
	after_call_notify(w, now, false);
}

void
watchdog_set_ext_listener(struct watchdog *w, watchdog_ext_listener fn, void *arg)
{
	w->ext_listener = fn;
	w->ext_arg = arg;
}

uint64_t
watchdog_term(const struct watchdog *w)
{
	return wd_term(w->wd);
}

int
watchdog_peer_status(const struct watchdog *w, int64_t id, struct wd_peer_status *st)
{
	if (!w || id < 1 || id > CONF_MAX_ID)
		return -1;
	return wd_peer_status(w->wd, (uint8_t)id, clock_now_ms(), st);
}

bool
watchdog_peer_up(const struct watchdog *w, int64_t id)
{
	struct wd_peer_status st;

	return watchdog_peer_status(w, id, &st) == 0 && st.state == WD_PEER_UP;
}

/* ---- status ------------------------------------------------------------- */

/* The coordinator as this peer sees it, or 0. */
static uint8_t coordinator(const struct watchdog *w, uint64_t now);

int64_t
watchdog_coordinator(const struct watchdog *w)
{
	return coordinator(w, clock_now_ms());
}

static uint8_t
coordinator(const struct watchdog *w, uint64_t now)
{
	struct wd_peer_status st;
	uint8_t l;

	if (wd_has_lease(w->wd, now))
		return (uint8_t)w->self;
	l = wd_leader(w->wd);
	if (!l || l == w->self || wd_peer_status(w->wd, l, now, &st) < 0)
		return 0;
	if (st.state != WD_PEER_UP || st.role != WD_LEADER || st.term != wd_term(w->wd))
		return 0;
	return l;
}

static int
status_json(struct watchdog *w, uint64_t now, FILE *out)
{
	struct json j;
	uint8_t coord = coordinator(w, now);
	const uint64_t *rc = wire_counters(w->wire);
	const struct wd_counters *c = wd_counters(w->wd);

	json_init(&j, out);
	json_begin_object(&j);
	json_key(&j, "schema_version");
	json_int(&j, 1);
	/* the first name of schema_version, kept for the consumers of 0.1 */
	json_key(&j, "version");
	json_int(&j, 1);
	json_key(&j, "cluster");
	json_str(&j, w->conf->cluster_name);
	json_key(&j, "self");
	json_int(&j, w->self);
	json_key(&j, "term");
	json_uint(&j, wd_term(w->wd));
	json_key(&j, "coordinator");
	if (coord)
		json_int(&j, coord);
	else
		json_null(&j);
	json_key(&j, "lease_remaining_ms");
	if (wd_has_lease(w->wd, now))
		json_uint(&j, wd_lease_end(w->wd) - now);
	else
		json_null(&j);
	json_key(&j, "tilt");
	json_bool(&j, wd_in_tilt(w->wd, now));
	json_key(&j, "peers");
	json_begin_array(&j);
	for (size_t i = 0; i < w->conf->npeers; i++) {
		const struct conf_peer *p = &w->conf->peers[i];
		struct wd_peer_status st;

		if (wd_peer_status(w->wd, (uint8_t)p->id, now, &st) < 0)
			continue;
		json_begin_object(&j);
		json_key(&j, "id");
		json_int(&j, p->id);
		json_key(&j, "address");
		json_str(&j, p->address);
		json_key(&j, "port");
		json_int(&j, p->port);
		json_key(&j, "priority");
		json_int(&j, p->priority);
		json_key(&j, "witness");
		json_bool(&j, p->witness != 0);
		json_key(&j, "role");
		json_str(&j, st.state == WD_PEER_UP ? wd_role_name(st.role) : NULL);
		json_key(&j, "state");
		json_str(&j, wd_peer_state_name(st.state));
		json_key(&j, "term");
		json_uint(&j, st.term);
		json_key(&j, "last_heard_ms");
		if (st.last_heard)
			json_uint(&j, now - st.last_heard);
		else
			json_null(&j);
		json_key(&j, "rtt_ms");
		if (st.rtt_ms || (st.last_heard && p->id != w->self))
			json_uint(&j, st.rtt_ms);
		else
			json_null(&j);
		json_key(&j, "tilt");
		json_bool(&j, st.tilt);
		json_key(&j, "lease_left_ms");
		if (st.lease_left_ms)
			json_uint(&j, st.lease_left_ms);
		else
			json_null(&j);
		json_key(&j, "boot_id");
		if (p->id == w->self)
			json_uint(&j, wire_boot_id(w->wire));
		else if (wire_peer_boot(w->wire, (uint8_t)p->id))
			json_uint(&j, wire_peer_boot(w->wire, (uint8_t)p->id));
		else
			json_null(&j);
		json_end_object(&j);
	}
	json_end_array(&j);
	json_key(&j, "counters");
	json_begin_object(&j);
	json_key(&j, "elections");
	json_uint(&j, c->elections);
	json_key(&j, "terms_won");
	json_uint(&j, c->terms_won);
	json_key(&j, "stepdowns");
	json_uint(&j, c->stepdowns);
	json_key(&j, "tilts");
	json_uint(&j, c->tilts);
	json_key(&j, "fences");
	json_uint(&j, c->fences);
	json_key(&j, "fences_failed");
	json_uint(&j, c->fences_failed);
	json_key(&j, "send_errors");
	json_uint(&j, w->send_errors);
	json_key(&j, "datagrams_accepted");
	json_uint(&j, rc[WIRE_OK]);
	json_key(&j, "datagrams_rejected");
	json_begin_object(&j);
	for (int r = 1; r < WIRE_R_COUNT; r++) {
		json_key(&j, wire_reject_name((enum wire_reject)r));
		json_uint(&j, rc[r]);
	}
	json_key(&j, "wrong-source");
	json_uint(&j, w->wrong_source);
	json_end_object(&j);
	json_end_object(&j);
	if (w->extra)
		w->extra(w->extra_arg, &j, NULL, false);
	json_end_object(&j);
	if (json_finish(&j) < 0)
		return -1;
	fputc('\n', out);
	return 0;
}

/*
 * The table, like patronictl list: a header (cluster, term, coordinator
 * and lease, then the extra lines: VIP, maintenance, failover), the peers
 * (the coordinator marked '*', a peer not heard from lately '?'), then the
 * extra part after them (the backends).
 */
static void
status_table(struct watchdog *w, uint64_t now, FILE *out)
{
	uint8_t coord = coordinator(w, now);
	struct wd_peer_status cst;

	fprintf(out, "Cluster %s, as peer %" PRId64 " sees it%s\n", w->conf->cluster_name,
		w->self, wd_in_tilt(w->wd, now) ? " (in tilt: it neither votes nor stands)" : "");
	fprintf(out, "  term %" PRIu64 ", coordinator ", wd_term(w->wd));
	if (coord)
		fprintf(out, "%u", coord);
	else
		fprintf(out, "none");
	if (wd_has_lease(w->wd, now))
		fprintf(out, " (this peer, lease %" PRIu64 " ms left)",
			wd_lease_end(w->wd) - now);
	else if (coord && wd_peer_status(w->wd, coord, now, &cst) == 0 && cst.lease_left_ms)
		fprintf(out, " (lease about %u ms left)", cst.lease_left_ms);
	fputc('\n', out);
	if (w->extra)
		w->extra(w->extra_arg, NULL, out, true);
	fprintf(out, "\nPeers:\n   %-3s %-28s %-17s %-8s %6s %12s %8s %8s\n", "ID", "ADDRESS",
		"ROLE", "STATE", "TERM", "LAST HEARD", "RTT", "LEASE");
	for (size_t i = 0; i < w->conf->npeers; i++) {
		const struct conf_peer *p = &w->conf->peers[i];
		struct wd_peer_status st;
		char addr[64], heard[24] = "-", rtt[16] = "-", role[24], lease[16] = "-";

		if (wd_peer_status(w->wd, (uint8_t)p->id, now, &st) < 0)
			continue;
		snprintf(addr, sizeof(addr), p->sa.ss_family == AF_INET6 ? "[%s]:%" PRId64
			 : "%s:%" PRId64, p->address, p->port);
		if (p->id == w->self)
			snprintf(heard, sizeof(heard), "(self)");
		else if (st.last_heard)
			snprintf(heard, sizeof(heard), "%" PRIu64 " ms ago", now - st.last_heard);
		if (st.rtt_ms || (st.last_heard && p->id != w->self))
			snprintf(rtt, sizeof(rtt), "%u ms", st.rtt_ms);
		snprintf(role, sizeof(role), "%s%s",
			 st.state == WD_PEER_UP ? wd_role_name(st.role) : "-",
			 p->witness ? "/witness" : "");
		if (st.lease_left_ms)
			snprintf(lease, sizeof(lease), "%u ms", st.lease_left_ms);
		fprintf(out, "%c%c %-3" PRId64 " %-28s %-17s %-8s %6" PRIu64 " %12s %8s %8s\n",
			p->id == coord ? '*' : ' ',
			p->id != w->self && st.state != WD_PEER_UP ? '?' : ' ', p->id, addr,
			role, wd_peer_state_name(st.state), st.term, heard, rtt, lease);
	}
	if (w->extra)
		w->extra(w->extra_arg, NULL, out, false);
}

int
watchdog_status(struct watchdog *w, bool json, FILE *out)
{
	uint64_t now = clock_now_ms();

	if (json && status_json(w, now, out) < 0) {
		fprintf(out, "could not format the status as JSON");
		return -1;
	}
	if (!json)
		status_table(w, now, out);
	return 0;
}

const struct wd_counters *
watchdog_counters(const struct watchdog *w)
{
	return wd_counters(w->wd);
}

uint64_t
watchdog_lease_remaining_ms(const struct watchdog *w)
{
	uint64_t now = clock_now_ms();

	return wd_has_lease(w->wd, now) ? wd_lease_end(w->wd) - now : 0;
}

size_t
watchdog_rejects(const struct watchdog *w, const char **names, uint64_t *counts,
		 size_t cap)
{
	const uint64_t *rc = wire_counters(w->wire);
	size_t n = 0;

	for (int r = 1; r < WIRE_R_COUNT && n < cap; r++, n++) {
		names[n] = wire_reject_name((enum wire_reject)r);
		counts[n] = rc[r];
	}
	if (n < cap) {
		names[n] = "wrong-source";
		counts[n++] = w->wrong_source;
	}
	return n;
}
