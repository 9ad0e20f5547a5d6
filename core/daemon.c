/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * daemon.c - the daemon's life: start, reload, stop.
 *
 * Start-up order matters and is all-or-nothing: configuration (every error
 * reported, exit 2), identity, state directory lock, state file (a corrupt
 * one stops the start: durable state we cannot read is not guessed at),
 * boot counter made durable, then sockets. Only then does the loop run.
 *
 * Reload (SIGHUP) parses the file into a fresh configuration. If it has any
 * error the running configuration stays untouched and every error is
 * logged; otherwise restart-only settings that changed are named in a
 * warning and kept at their running values, and the rest takes effect.
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
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/conf.h"
#include "core/daemon.h"
#include "core/ident.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/state.h"
#include "hooks/hook.h"

#define STATE_FILE "pgvigil.state"

struct daemon {
	const char *conf_path;	/* borrowed: from argv */
	struct conf *conf;	/* owned: the running configuration */
	struct loop *loop;	/* owned */
	struct hook_runner *hooks;	/* owned */
	int64_t self;		/* our peer id */
	int lockfd;		/* state directory lock, held while running */
	int udpfd;		/* watchdog socket, bound to our peer address */
	uint64_t boot_count;	/* starts of this peer, durable */
	uint64_t udp_dropped;	/* datagrams read and dropped */
	char ctx[32];		/* log context "peer N" */
};

static void
apply_log_settings(const struct conf *c)
{
	log_set_level((enum log_level)c->log_level);
	log_set_dest((enum log_dest)c->log_destination);
}

static void
notify_done(const struct hook_result *res, void *arg)
{
	/* The runner logs event=hook-finished; nothing depends on notify. */
	(void)res;
	(void)arg;
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
	memset(&spec, 0, sizeof(spec));
	spec.name = "notify";
	spec.command = d->conf->notify_command;
	spec.vars = vars;
	spec.nvars = 3;
	spec.timeout_ms = (uint64_t)d->conf->hook_timeout_ms;
	spec.kill_grace_ms = (uint64_t)d->conf->hook_kill_grace_ms;
	hook_run(d->hooks, &spec, notify_done, d);
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
	apply_log_settings(d->conf);
	log_event("config-reloaded", "restart_pending=%zu", changed.n);
	conf_errors_clear(&changed);
	notify(d, "config-reloaded");
}

static void
on_signal(struct loop *loop, int signo, void *arg)
{
	struct daemon *d = arg;

	switch (signo) {
	case SIGHUP:
		log_info("received SIGHUP, reloading \"%s\"", d->conf_path);
		reload(d);
		break;
	case SIGTERM:
	case SIGINT:
		if (!loop_stopping(loop))
			log_event("daemon-stopping", "signal=%s",
				  signo == SIGTERM ? "TERM" : "INT");
		loop_stop(loop);
		break;
	default:
		log_debug("ignoring signal %d", signo);
	}
}

/*
 * The watchdog socket. Until the heartbeat protocol reads it, what arrives
 * is drained and counted so the socket buffer never fills.
 */
static void
on_udp(struct loop *loop, int fd, uint32_t events, void *arg)
{
	struct daemon *d = arg;
	char buf[2048];

	(void)loop;
	(void)events;
	for (int i = 0; i < 64; i++) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n < 0)
			break;
		d->udp_dropped++;
		log_debug("dropped a %zd-byte datagram: no protocol handler", n);
	}
}

static int
open_udp(struct daemon *d)
{
	const struct conf_peer *me = conf_peer_by_id(d->conf, d->self);
	int one = 1;
	int fd = socket(me->sa.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		log_error("could not create UDP socket: %s", strerror(errno));
		return -1;
	}
	if (me->sa.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&me->sa, me->salen) < 0) {
		log_error("could not bind UDP socket to %s port %" PRId64 ": %s",
			  me->address, me->port, strerror(errno));
		close(fd);
		return -1;
	}
	d->udpfd = fd;
	return 0;
}

/*
 * Reads the state file, checks it belongs to this cluster and peer, counts
 * this start and makes that durable before anything is sent.
 */
static int
open_state(struct daemon *d)
{
	struct state *st = NULL;
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
	}
	d->boot_count++;
	if (state_set(st, "cluster", d->conf->cluster_name) < 0 ||
	    state_set_u64(st, "peer_id", (uint64_t)d->self) < 0 ||
	    state_set_u64(st, "boot_count", d->boot_count) < 0 ||
	    state_write(st, d->conf->state_dir, STATE_FILE, err, sizeof(err)) < 0) {
		log_error("could not record this start in the state file: %s", err);
		state_free(st);
		return -1;
	}
	state_free(st);
	return 0;
}

static void
daemon_cleanup(struct daemon *d)
{
	/* Hooks first: they may still write to pipes the loop watches. */
	hook_runner_free(d->hooks);
	if (d->udpfd >= 0) {
		loop_del_fd(d->loop, d->udpfd);
		close(d->udpfd);
	}
	loop_free(d->loop);
	if (d->lockfd >= 0)
		close(d->lockfd);
	conf_free(d->conf);
}

int
daemon_main(const struct daemon_opts *opts)
{
	struct daemon d = { .conf_path = opts->conf_path, .lockfd = -1, .udpfd = -1 };
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
	if (open_state(&d) < 0 || open_udp(&d) < 0)
		goto out;
	if (loop_add_fd(d.loop, d.udpfd, EPOLLIN, on_udp, &d) < 0) {
		log_error("could not watch UDP socket: %s", strerror(errno));
		goto out;
	}
	loop_on_signal(d.loop, on_signal, &d);

	log_event("daemon-started",
		  "peer=%" PRId64 " cluster=%s boot=%" PRIu64 " version=%s pid=%d",
		  d.self, d.conf->cluster_name, d.boot_count, PGVIGIL_VERSION,
		  (int)getpid());
	notify(&d, "daemon-started");
	if (loop_run(d.loop) < 0) {
		log_error("event loop failed: %s", strerror(errno));
		goto out;
	}
	rc = EXIT_OK;
out:
	daemon_cleanup(&d);
	if (rc == EXIT_OK)
		log_event("daemon-stopped", "peer=%" PRId64 " dropped_datagrams=%" PRIu64,
			  d.self, d.udp_dropped);
	log_set_context(NULL);
	return rc;
}
