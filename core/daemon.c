/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * daemon.c - the daemon's life: start, reload, stop.
 *
 * Start-up order matters and is all-or-nothing: configuration (every error
 * reported, exit 2), identity, state directory lock, state file (a corrupt
 * one stops the start: durable state we cannot read is not guessed at),
 * boot counter made durable, then sockets, then the hardware watchdog
 * (failover/hwdog.c), armed last so that a failed start never arms it.
 * Only then does the loop run.
 *
 * Reload (SIGHUP) parses the file into a fresh configuration. If it has any
 * error the running configuration stays untouched and every error is
 * logged; otherwise restart-only settings that changed are named in a
 * warning and kept at their running values, and the rest takes effect.
 *
 * Under systemd (Type=notify, core/sdnotify.c) READY=1 is sent only once
 * all of that is done, just before the loop runs; RELOADING=1 / READY=1
 * frame a reload, STOPPING=1 a stop, and the watchdog keep-alive comes
 * from a loop timer, so a hung loop gets the daemon restarted.
 *
 * The daemon is a child subreaper (PR_SET_CHILD_SUBREAPER): a hook that
 * double-forks leaves its orphans with us, where the loop reaps them,
 * instead of with init where nobody would kill them.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/api.h"
#include "core/clock.h"
#include "core/conf.h"
#include "core/daemon.h"
#include "core/evlog.h"
#include "core/ident.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/sdnotify.h"
#include "core/state.h"
#include "ctl/ctl.h"
#include "ctl/json.h"
#include "failover/failover.h"
#include "failover/health.h"
#include "failover/hwdog.h"
#include "hooks/hook.h"
#include "vip/vip.h"
#include "watchdog/watchdog.h"

#define STATE_FILE "pgvigil.state"
#define STOP_DRAIN_MS 5000	/* at most this long for hooks at a clean stop */

struct daemon {
	const char *conf_path;	/* borrowed: from argv */
	struct conf *conf;	/* owned: the running configuration */
	struct loop *loop;	/* owned */
	struct hook_runner *hooks;	/* owned */
	struct watchdog *wd;	/* owned */
	struct vip *vip;	/* owned */
	struct health *health;	/* owned */
	struct failover *fo;	/* owned */
	struct hwdog *hwdog;	/* owned; fed by the loop, disarmed at exit */
	/* The election's last verdict, for the VIP when the failover's changes. */
	bool has_lease;
	uint64_t lease_end, term;
	struct ctl_server *ctl;	/* owned */
	struct sdnotify *sdn;	/* owned: the service manager, if any */
	struct api *api;	/* owned: the HTTP API, [api] */
	struct evlog *ev;	/* owned: event history, NULL if it could not open */
	int64_t self;		/* our peer id */
	int lockfd;		/* state directory lock, held while running */
	uint64_t boot_count;	/* starts of this peer, durable */
	uint64_t boot_id;	/* this start's wire identity, durable, increasing */
	int exit_code;		/* set when the loop is stopped for a failure */
	struct loop_timer *drain;	/* owned by the loop: waits for hooks at stop */
	uint64_t drain_until;
	char ctx[32];		/* log context "peer N" */
};

static void
apply_log_settings(const struct conf *c)
{
	log_set_level((enum log_level)c->log_level);
	log_set_dest((enum log_dest)c->log_destination);
}

/* Runs notify_command for a daemon event, if one is configured. */
static void
notify(struct daemon *d, const char *event)
{
	char id[24];
	struct hook_var vars[3];
	struct hook_spec spec;

	if (!d->conf->notify_command || !d->conf->notify_command[0] || !d->hooks)
		return;
	snprintf(id, sizeof(id), "%" PRId64, d->self);
	vars[0] = (struct hook_var){ 'e', "EVENT", event };
	vars[1] = (struct hook_var){ 'i', "PEER_ID", id };
	vars[2] = (struct hook_var){ 'c', "CLUSTER", d->conf->cluster_name };
	/* Nothing depends on notify: its outcome is only logged. */
	conf_hook_spec(d->conf, "notify", d->conf->notify_command, vars, 3, &spec);
	hook_run(d->hooks, &spec, NULL, NULL);
}

static void
reload(struct daemon *d)
{
	struct conf_errors errs = { 0 }, changed = { 0 };
	struct conf *fresh = conf_load(d->conf_path, &errs);

	if (!fresh) {
		for (size_t i = 0; i < errs.n; i++)
			log_error("%s", errs.msgs[i]);
		log_event("config-reload-failed",
			  "errors=%zu detail=\"the running configuration is kept\"",
			  errs.n);
		conf_errors_clear(&errs);
		notify(d, "config-reload-failed");
		return;
	}
	conf_keep_restart_only(d->conf, fresh, &changed);
	for (size_t i = 0; i < changed.n; i++)
		log_warning("setting \"%s\" changed in \"%s\" but takes effect only after a restart; the running value is kept",
			    changed.msgs[i], d->conf_path);
	conf_free(d->conf);
	d->conf = fresh;
	watchdog_reload(d->wd, d->conf);
	vip_reload(d->vip, d->conf);
	failover_reload(d->fo, d->conf);
	{
		char herr[256];

		if (health_reload(d->health, d->conf, herr, sizeof(herr)) < 0)
			log_error("%s", herr);
	}
	{
		char aerr[512];

		if (api_reload(d->api, d->conf, aerr, sizeof(aerr)) < 0)
			log_error("%s; the API keeps its previous token", aerr);
	}
	apply_log_settings(d->conf);
	log_event("config-reloaded", "restart_pending=%zu", changed.n);
	conf_errors_clear(&changed);
	notify(d, "config-reloaded");
}

static void on_drain(struct loop *loop, struct loop_timer *t, void *arg);

static void
on_signal(struct loop *loop, int signo, void *arg)
{
	struct daemon *d = arg;

	switch (signo) {
	case SIGHUP:
		log_info("received SIGHUP, reloading \"%s\"", d->conf_path);
		sdnotify_reloading(d->sdn);
		reload(d);
		sdnotify_reloaded(d->sdn);
		break;
	case SIGTERM:
	case SIGINT:
		if (d->drain_until) {
			/* A second stop signal: do not wait for hooks any more. */
			loop_stop(loop);
			break;
		}
		log_event("daemon-stopping", "signal=%s", signo == SIGTERM ? "TERM" : "INT");
		sdnotify_stopping(d->sdn);
		/* Drop the VIP, then hand the coordinator role over. */
		failover_stop(d->fo);
		vip_stop(d->vip);
		watchdog_stop(d->wd);
		/*
		 * Hooks still running (on_vip_released, say) get to finish,
		 * for at most STOP_DRAIN_MS (or their timeout if shorter);
		 * then the loop stops and the rest are cancelled.
		 */
		uint64_t wait = (uint64_t)d->conf->hook_timeout_ms;

		if (wait > STOP_DRAIN_MS)
			wait = STOP_DRAIN_MS;
		d->drain_until = clock_now_ms() + wait;
		on_drain(loop, d->drain, d);
		break;
	default:
		log_debug("ignoring signal %d", signo);
	}
}

/*
 * The VIP needs both: the lease (S1), and the failover's consent (with
 * vip.follow = primary only the primary's peer holds it, and nobody while
 * a failover has not verified its new primary).
 */
static void
apply_vip(struct daemon *d)
{
	bool allowed = !d->fo || failover_vip_allowed(d->fo);

	vip_set_entitlement(d->vip, d->has_lease && allowed, d->lease_end, d->term,
			    !d->has_lease ? "not coordinator" :
			    "a failover is in progress, or this peer is not next to the primary");
}

/* The service manager's one-line status: role and term. */
static void
update_status(struct daemon *d)
{
	char line[96];
	int64_t c = watchdog_coordinator(d->wd);

	if (!sdnotify_active(d->sdn))
		return;
	if (d->has_lease)
		snprintf(line, sizeof(line), "peer %" PRId64 ": coordinator, term %" PRIu64,
			 d->self, d->term);
	else if (c > 0)
		snprintf(line, sizeof(line), "peer %" PRId64 ": coordinator is peer %" PRId64 ", term %" PRIu64,
			 d->self, c, watchdog_term(d->wd));
	else
		snprintf(line, sizeof(line), "peer %" PRId64 ": no coordinator, term %" PRIu64,
			 d->self, watchdog_term(d->wd));
	sdnotify_status(d->sdn, line);
}

static void
on_entitlement(void *arg, bool has_lease, uint64_t lease_end, uint64_t term)
{
	struct daemon *d = arg;

	d->has_lease = has_lease;
	d->lease_end = lease_end;
	d->term = term;
	if (d->fo)
		failover_set_coordinator(d->fo, has_lease, term);
	apply_vip(d);
	update_status(d);
}

static void
on_vip_gate(void *arg)
{
	apply_vip(arg);
}

static void
on_vip_trouble(void *arg, const char *reason)
{
	struct daemon *d = arg;

	watchdog_resign(d->wd, reason);
}

static const char *
backend_role(void *arg, int64_t id)
{
	struct daemon *d = arg;

	return d->fo ? failover_backend_role(d->fo, id) : NULL;
}

/*
 * The cluster's system identifier as the checks saw it: the one every
 * backend that answered reports, else 0; *mixed when they disagree (a
 * backend of another cluster in the configuration).
 */
static uint64_t
system_identifier(const struct daemon *d, bool *mixed)
{
	uint64_t id = 0;

	*mixed = false;
	for (size_t i = 0; i < health_count(d->health); i++) {
		const struct health_backend *b = health_get(d->health, i);

		if (!b->system_id)
			continue;
		if (id && b->system_id != id)
			*mixed = true;
		if (!id || b->role == HEALTH_ROLE_PRIMARY)
			id = b->system_id;
	}
	return id;
}

static void
status_extra(void *arg, struct json *j, FILE *table, bool header)
{
	struct daemon *d = arg;
	int64_t holder = watchdog_coordinator(d->wd);
	bool mixed;
	uint64_t sysid = system_identifier(d, &mixed);

	if (j) {
		char buf[24];

		json_key(j, "system_identifier");
		snprintf(buf, sizeof(buf), "%" PRIu64, sysid);
		json_str(j, sysid ? buf : NULL);
		vip_status_json(d->vip, j, holder);
		health_status_json(d->health, j, clock_now_ms(), backend_role, d);
		failover_status_json(d->fo, j);
	}
	if (table && header) {
		if (sysid)
			fprintf(table, "  system identifier %" PRIu64 "%s\n", sysid,
				mixed ? " (! the backends report different ones)" : "");
		else if (health_count(d->health) > 0)
			fprintf(table, "  system identifier not known yet\n");
		vip_status_line(d->vip, table, holder);
		failover_status_table(d->fo, table);
	} else if (table && health_count(d->health) > 0) {
		fprintf(table, "\nBackends:\n");
		health_status_table(d->health, table, clock_now_ms(), backend_role, d);
	}
}

/* At a clean stop: stop the loop once no hook runs (or the wait is over). */
static void
on_drain(struct loop *loop, struct loop_timer *t, void *arg)
{
	struct daemon *d = arg;

	if (hook_running(d->hooks) == 0 || clock_now_ms() >= d->drain_until || !t)
		loop_stop(loop);
	else
		loop_timer_in(t, 20);
}

/* The vote file could not be written: this peer must not take part. */
static void
on_watchdog_fatal(void *arg)
{
	struct daemon *d = arg;

	log_error("stopping: a vote that cannot be made durable must not be sent");
	d->exit_code = EXIT_RUNTIME;
	loop_stop(d->loop);
}

static int
on_control(const char *request, const char *who, FILE *out, void *arg)
{
	struct daemon *d = arg;

	if (strcmp(request, "status") == 0)
		return watchdog_status(d->wd, false, out);
	if (strcmp(request, "status json") == 0)
		return watchdog_status(d->wd, true, out);
	if (strncmp(request, "events", 6) == 0 && (!request[6] || request[6] == ' ')) {
		if (d->ev)
			return evlog_request(d->ev, request, out);
		fprintf(out, "the event history is not available\nhint: the daemon's log says why");
		return -1;
	}
	if (strcmp(request, "pause") == 0 || strcmp(request, "resume") == 0 ||
	    strncmp(request, "rejoin ", 7) == 0 || strncmp(request, "fence ", 6) == 0 ||
	    strcmp(request, "progress") == 0 ||
	    strcmp(request, "switchover") == 0 || strncmp(request, "switchover ", 11) == 0 ||
	    strcmp(request, "failover") == 0 || strncmp(request, "failover ", 9) == 0)
		return failover_request(d->fo, request, who, out);
	fprintf(out, "unknown request \"%.64s\"\nhint: pgvigilctl --help lists the commands",
		request);
	return -1;
}

/*
 * Reads the state file, checks it belongs to this cluster and peer, counts
 * this start and makes that durable before anything is sent.
 */
/*
 * The boot id names this start on the wire (each boot has its own keys,
 * and peers drop datagrams of an older boot). It must grow from one start
 * to the next even when the state directory was lost or a snapshot was
 * restored, so it is taken from the wall clock: seconds since the epoch in
 * the high bits, 24 random bits below, and never less than the last one
 * recorded plus one, in case the clock stepped back. This is the only use
 * of the wall clock besides log timestamps; no timing depends on it.
 */
static uint64_t
next_boot_id(uint64_t last)
{
	uint32_t rnd = 0;
	uint64_t id;

	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
		rnd = (uint32_t)getpid();
	id = ((uint64_t)time(NULL) << 24) | (rnd & 0xffffff);
	return id > last ? id : last + 1;
}

static int
open_state(struct daemon *d)
{
	struct state *st = NULL;
	uint64_t last_boot = 0;
	char err[512];
	int rc;

	d->lockfd = state_dir_lock(d->conf->state_dir, err, sizeof(err));
	if (d->lockfd < 0) {
		log_error("%s", err);
		return -1;
	}
	rc = state_read(d->conf->state_dir, STATE_FILE, &st, err, sizeof(err));
	if (rc < 0) {
		log_error("%s", err);
		log_error("hint: pgvigil does not guess at durable state it cannot read; inspect the file, then move it away to start this peer afresh");
		return -1;
	}
	if (rc == 1) {
		st = state_new();
		if (!st)
			return -1;
	} else {
		const char *cl = state_get(st, "cluster");
		uint64_t peer = 0;
		bool has_peer = state_get_u64(st, "peer_id", &peer) == 0;

		if ((cl && strcmp(cl, d->conf->cluster_name) != 0) ||
		    (has_peer && peer != (uint64_t)d->self)) {
			log_error("state directory \"%s\" belongs to cluster \"%s\" peer %" PRIu64 ", not cluster \"%s\" peer %" PRId64,
				  d->conf->state_dir, cl ? cl : "?", peer,
				  d->conf->cluster_name, d->self);
			state_free(st);
			return -1;
		}
		state_get_u64(st, "boot_count", &d->boot_count);
		state_get_u64(st, "boot_id", &last_boot);
	}
	d->boot_count++;
	d->boot_id = next_boot_id(last_boot);
	if (state_set(st, "cluster", d->conf->cluster_name) < 0 ||
	    state_set_u64(st, "peer_id", (uint64_t)d->self) < 0 ||
	    state_set_u64(st, "boot_count", d->boot_count) < 0 ||
	    state_set_u64(st, "boot_id", d->boot_id) < 0 ||
	    state_write(st, d->conf->state_dir, STATE_FILE, err, sizeof(err)) < 0) {
		log_error("could not record this start in the state file: %s", err);
		state_free(st);
		return -1;
	}
	state_free(st);
	return 0;
}

/* A new event: to the followers of pgvigilctl events --follow. */
static void
on_event_line(void *arg, const char *line, size_t len)
{
	struct daemon *d = arg;

	ctl_server_publish(d->ctl, line, len);
}

static void
daemon_cleanup(struct daemon *d)
{
	api_free(d->api);
	/* The history stays until the last event; the followers go now. */
	if (d->ev)
		evlog_set_listener(d->ev, NULL, NULL);
	ctl_server_free(d->ctl);
	/* Hooks before the watchdog: a fence callback still points at it. */
	hook_runner_free(d->hooks);
	failover_free(d->fo);
	health_free(d->health);
	vip_free(d->vip);
	watchdog_free(d->wd);
	/* Last before the loop: a cleanup that hangs leaves it armed. */
	hwdog_free(d->hwdog);
	sdnotify_free(d->sdn);
	loop_free(d->loop);
	if (d->lockfd >= 0)
		close(d->lockfd);
	conf_free(d->conf);
}

int
daemon_main(const struct daemon_opts *opts)
{
	struct daemon d = { .conf_path = opts->conf_path, .lockfd = -1 };
	struct conf_errors errs = { 0 };
	char err[512];
	int rc = EXIT_RUNTIME;

	d.conf = conf_load(opts->conf_path, &errs);
	if (!d.conf) {
		for (size_t i = 0; i < errs.n; i++)
			log_error("%s", errs.msgs[i]);
		conf_errors_clear(&errs);
		return EXIT_CONFIG;
	}
	apply_log_settings(d.conf);
	if (ident_find_self(d.conf, opts->forced_id, &d.self, err, sizeof(err)) < 0) {
		log_error("%s", err);
		conf_free(d.conf);
		return EXIT_CONFIG;
	}
	snprintf(d.ctx, sizeof(d.ctx), "peer %" PRId64, d.self);
	log_set_context(d.ctx);
	/* Before any child can exist: it takes NOTIFY_SOCKET out of environ. */
	d.sdn = sdnotify_new();

	if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
		log_warning("could not become child subreaper: %s", strerror(errno));
	d.loop = loop_new();
	if (!d.loop) {
		log_error("could not create event loop: %s", strerror(errno));
		goto out;
	}
	d.hooks = hook_runner_new(d.loop);
	if (!d.hooks) {
		log_error("could not create hook runner");
		goto out;
	}
	if (open_state(&d) < 0)
		goto out;
	/* The history is for people: a start does not fail for it. */
	d.ev = evlog_new(d.conf->state_dir, d.self, 0, 0, err, sizeof(err));
	if (d.ev)
		log_set_event_sink(evlog_sink, d.ev);
	else
		log_warning("%s; pgvigilctl events will not be available", err);
	/* The VIP first: it purges what a crash left before we join. */
	d.vip = vip_new(d.loop, d.conf, d.self, d.hooks, on_vip_trouble, &d, err,
			sizeof(err));
	if (!d.vip) {
		log_error("%s", err);
		goto out;
	}
	d.wd = watchdog_new(d.loop, d.conf, d.self, d.boot_id, d.hooks,
			    on_watchdog_fatal, &d, err, sizeof(err));
	if (!d.wd) {
		log_error("%s", err);
		goto out;
	}
	watchdog_set_listener(d.wd, on_entitlement, &d);
	d.health = health_new(d.loop, d.conf, err, sizeof(err));
	if (!d.health) {
		log_error("%s", err);
		goto out;
	}
	d.fo = failover_new(d.loop, d.conf, d.self, d.wd, d.health, d.hooks, err,
			    sizeof(err));
	if (!d.fo) {
		log_error("%s", err);
		goto out;
	}
	failover_set_vip_listener(d.fo, on_vip_gate, &d);
	watchdog_set_status_extra(d.wd, status_extra, &d);
	char sock[512];

	conf_control_socket(d.conf, sock, sizeof(sock));
	d.ctl = ctl_server_new(d.loop, sock, on_control, &d, err, sizeof(err));
	if (!d.ctl) {
		log_error("%s", err);
		goto out;
	}
	{
		struct api_deps deps = { .loop = d.loop, .self = d.self, .wd = d.wd,
			.health = d.health, .fo = d.fo, .vip = d.vip, .hooks = d.hooks,
			.control = on_control, .control_arg = &d };

		d.api = api_new(d.conf, &deps, err, sizeof(err));
		if (!d.api) {
			log_error("%s", err);
			goto out;
		}
	}
	if (d.ev)
		evlog_set_listener(d.ev, on_event_line, &d);
	d.drain = loop_timer_new(d.loop, on_drain, &d);
	if (!d.drain) {
		log_error("out of memory");
		goto out;
	}
	/*
	 * The hardware watchdog last: a start that fails before this never
	 * arms it, and from here on the loop runs at once and feeds it.
	 */
	char hint[256];

	d.hwdog = hwdog_new(d.loop, d.conf, err, sizeof(err), hint, sizeof(hint));
	if (!d.hwdog) {
		log_error("%s", err);
		if (hint[0])
			log_error("hint: %s", hint);
		goto out;
	}
	loop_on_signal(d.loop, on_signal, &d);

	log_event("daemon-started",
		  "peer=%" PRId64 " cluster=%s boot=%" PRIu64 " version=%s pid=%d",
		  d.self, d.conf->cluster_name, d.boot_count, PGVIGIL_VERSION,
		  (int)getpid());
	notify(&d, "daemon-started");
	/* Configuration, state and every socket are in place: ready. */
	update_status(&d);
	sdnotify_ready(d.sdn, d.loop);
	if (loop_run(d.loop) < 0) {
		log_error("event loop failed: %s", strerror(errno));
		goto out;
	}
	rc = d.exit_code;
out:
	daemon_cleanup(&d);
	if (rc == EXIT_OK)
		log_event("daemon-stopped", "peer=%" PRId64, d.self);
	log_set_event_sink(NULL, NULL);
	evlog_free(d.ev);
	log_set_context(NULL);
	return rc;
}
