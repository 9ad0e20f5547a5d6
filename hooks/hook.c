/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * hook.c - runs operator hook commands as `/bin/sh -c COMMAND` in their own
 * process group, with a timeout, without ever blocking the event loop.
 *
 * Invariants:
 * - A hook's pid is also its process group id: the child calls
 *   setpgid(0, 0) and the parent setpgid(pid, pid), so whichever runs first
 *   wins and no signal to the group can miss it.
 * - The loop reaps the leader (loop_watch_child); this file never calls
 *   waitpid except in hook_runner_free, when the loop no longer runs.
 *   Grandchildren left behind are SIGKILLed with the group when the leader
 *   exits and, reparented to the daemon (a child subreaper), reaped by the
 *   loop like any unwatched child.
 * - The callback runs exactly once per started hook, after the leader was
 *   reaped and its output pipe reached EOF (or the drain deadline passed),
 *   with the hook already unlinked and its fd and timer released, so a
 *   callback may start another hook.
 * - One timer per hook serves, by phase, as the timeout (SIGTERM), the
 *   grace (SIGKILL) and, after the leader exited, the drain deadline: a
 *   process that left the group (setsid, as `pg_ctl start` does) may keep
 *   the pipe open forever and must not keep the hook from finishing.
 *
 * Why like this: a hook is an operator's shell command running with the
 * daemon's privileges at the worst moment (failover). Values such as a
 * host name or a reason come from configuration and peers, so each is
 * substituted shell-quoted and only where quoting is known to hold: a
 * placeholder inside '...', "...", `...`, a here-document or right after
 * \ or $ is refused, because there our quoting would be undone by the
 * shell. The child starts clean (default signals, empty mask, stdin from
 * /dev/null, no inherited fds, a fixed environment) so a hook behaves the
 * same from a terminal, from systemd and from the tests.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/loop.h"
#include "hooks/hook.h"
#include "hooks/hook_int.h"

bool hook_test_no_close_range;
const char *hook_test_shell;

#define HOOK_SHELL "/bin/sh"
#define HOOK_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define HOOK_EXEC_FAILED 127	/* as the shell's "command not found" */
#define HOOK_READS_PER_WAKEUP 16	/* bounds one callback's work */

/* ---- growing string ---------------------------------------------------- */

struct sbuf {
	char *s;		/* owned, NUL-terminated once non-NULL */
	size_t len, cap;
	bool oom;
};

static void
sb_putn(struct sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		char *ns;

		while (b->len + n + 1 > cap)
			cap *= 2;
		ns = realloc(b->s, cap);
		if (!ns) {
			b->oom = true;
			return;
		}
		b->s = ns;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void
sb_putc(struct sbuf *b, char c)
{
	sb_putn(b, &c, 1);
}

/* 'value' with each ' written as '\'' (close, escaped quote, reopen). */
static void
sb_quote(struct sbuf *b, const char *s)
{
	sb_putc(b, '\'');
	for (; s && *s; s++) {
		if (*s == '\'')
			sb_putn(b, "'\\''", 4);
		else
			sb_putc(b, *s);
	}
	sb_putc(b, '\'');
}

/* Hands the string to the caller; NULL after an allocation failure. */
static char *
sb_take(struct sbuf *b)
{
	if (b->oom) {
		free(b->s);
		return NULL;
	}
	if (!b->s)
		sb_putn(b, "", 0);
	return b->oom ? NULL : b->s;
}

/* ---- templates --------------------------------------------------------- */

/* "%x" for messages; a byte that is not printable as "%\xNN". */
static const char *
placeholder_str(char code, char *buf, size_t len)
{
	if (isprint((unsigned char)code))
		snprintf(buf, len, "%%%c", code);
	else
		snprintf(buf, len, "%%\\x%02x", (unsigned char)code);
	return buf;
}

/*
 * The one walk over a template, shared by hook_expand (out != NULL, values
 * from vars) and hook_check_template (out == NULL, letters from codes).
 * It follows just enough of the POSIX shell lexer to know whether a
 * placeholder stands in plain, unquoted text, the one place where a
 * single-quoted value is sure to reach the command as literal bytes.
 */
static int
scan_template(const char *tmpl, const struct hook_var *vars, size_t nvars,
	      const char *codes, struct sbuf *out, char *err, size_t errlen)
{
	enum { SH_PLAIN, SH_SQUOTE, SH_DQUOTE, SH_BACKTICK } st = SH_PLAIN;
	static const char *const where[] = {
		[SH_SQUOTE] = "single quotes",
		[SH_DQUOTE] = "double quotes",
		[SH_BACKTICK] = "backticks",
	};
	bool heredoc = false;
	char prev = '\0';	/* previous byte, if it was plain text */
	char ph[8], scratch[160];

	if (!err || errlen == 0) {
		err = scratch;
		errlen = sizeof(scratch);
	}
	if (!tmpl) {
		snprintf(err, errlen, "no hook command");
		return -1;
	}
	for (const char *p = tmpl; *p; p++) {
		const struct hook_var *v = NULL;
		char c = *p;

		if (c == '%') {
			char code = p[1];

			if (code == '\0') {
				snprintf(err, errlen,
					 "hook command ends with a lone %%");
				return -1;
			}
			p++;
			if (code == '%') {
				if (out)
					sb_putc(out, '%');
				prev = '\0';
				continue;
			}
			for (size_t i = 0; out && i < nvars && !v; i++)
				if (vars[i].code == code)
					v = &vars[i];
			if (out ? !v : !strchr(codes, code)) {
				snprintf(err, errlen, "unknown placeholder %s in "
					 "hook command",
					 placeholder_str(code, ph, sizeof(ph)));
				return -1;
			}
			if (st != SH_PLAIN) {
				snprintf(err, errlen, "placeholder %s must not "
					 "be inside %s in hook command, pgvigil "
					 "quotes each value itself",
					 placeholder_str(code, ph, sizeof(ph)),
					 where[st]);
				return -1;
			}
			if (heredoc) {
				snprintf(err, errlen, "placeholder %s must not "
					 "follow a here-document operator in "
					 "hook command",
					 placeholder_str(code, ph, sizeof(ph)));
				return -1;
			}
			if (prev == '\\' || prev == '$') {
				snprintf(err, errlen, "placeholder %s must not "
					 "follow \"%c\" in hook command",
					 placeholder_str(code, ph, sizeof(ph)),
					 prev);
				return -1;
			}
			if (out)
				sb_quote(out, v->value);
			prev = '\0';
			continue;
		}
		if (out)
			sb_putc(out, c);
		switch (st) {
		case SH_PLAIN:
			if (c == '\\' && p[1] != '\0' && p[1] != '%') {
				/* An escaped byte is a plain character. */
				if (out)
					sb_putc(out, p[1]);
				p++;
				prev = '\0';
				break;
			}
			if (c == '\'')
				st = SH_SQUOTE;
			else if (c == '"')
				st = SH_DQUOTE;
			else if (c == '`')
				st = SH_BACKTICK;
			else if (c == '<' && prev == '<')
				heredoc = true;
			prev = c;
			break;
		case SH_SQUOTE:
			if (c == '\'')
				st = SH_PLAIN;
			prev = '\0';
			break;
		case SH_DQUOTE:
		case SH_BACKTICK:
			if (c == '\\' && p[1] != '\0' && p[1] != '%') {
				if (out)
					sb_putc(out, p[1]);
				p++;
			} else if (c == (st == SH_DQUOTE ? '"' : '`')) {
				st = SH_PLAIN;
			}
			prev = '\0';
			break;
		}
	}
	/* An unterminated quote is the shell's to report. */
	return 0;
}

char *
hook_expand(const char *tmpl, const struct hook_var *vars, size_t nvars,
	    char *err, size_t errlen)
{
	struct sbuf b = { 0 };
	char *s;

	if (scan_template(tmpl, vars, nvars, NULL, &b, err, errlen) < 0) {
		free(b.s);
		return NULL;
	}
	s = sb_take(&b);
	if (!s && err && errlen > 0)
		snprintf(err, errlen, "out of memory");
	return s;
}

int
hook_check_template(const char *tmpl, const char *codes, char *err,
		    size_t errlen)
{
	return scan_template(tmpl, NULL, 0, codes ? codes : "", NULL, err,
			     errlen);
}

char *
hook_shell_quote(const char *s)
{
	struct sbuf b = { 0 };

	sb_quote(&b, s);
	return sb_take(&b);
}

const char *
hook_outcome_name(enum hook_outcome o)
{
	switch (o) {
	case HOOK_OK:
		return "ok";
	case HOOK_FAILED:
		return "failed";
	case HOOK_TIMEOUT:
		return "timeout";
	case HOOK_SPAWN_ERROR:
		return "spawn-error";
	case HOOK_CANCELLED:
		return "cancelled";
	}
	return "unknown";
}

/* ---- runner state ------------------------------------------------------ */

enum hook_phase {
	PH_RUNNING,		/* timer = timeout */
	PH_TERM_SENT,		/* timer = grace before SIGKILL */
	PH_KILL_SENT,		/* timer idle; waiting for the leader */
	PH_DRAINING,		/* leader reaped; timer = drain deadline */
};

struct hook_proc {
	struct hook_runner *hr;	/* borrowed: the runner listing us */
	struct hook_proc *next;	/* owned: next in hr->procs */
	char *name;		/* owned copy of spec->name */
	hook_done_cb cb;
	void *cb_arg;		/* borrowed: the caller's */
	struct loop_timer *timer;	/* owned (freed through the loop) */
	long id;
	pid_t pid;		/* also the process group id */
	int out_fd;		/* owned: stdout+stderr read end; -1 at EOF */
	int err_fd;		/* owned: exec-error read end; -1 once read */
	enum hook_phase phase;
	uint64_t timeout_ms, kill_grace_ms;
	uint64_t start_ms, end_ms;
	int status;		/* waitpid status, valid once exited */
	bool exited;
	bool timed_out;
	bool spawn_failed;	/* the child could not exec the shell */
	unsigned leftover_killed;
	size_t out_total;	/* output bytes logged so far */
	bool out_truncated;
	size_t linelen;
	char line[HOOK_LINE_MAX];	/* partial output line */
	char report[HOOK_REPORT_MAX];	/* its last "pgvigil-report: " line */
};

struct hook_runner {
	struct loop *loop;	/* borrowed: must outlive the runner */
	struct hook_proc *procs;	/* owned list of running hooks */
	size_t nprocs;
	long last_id;
	bool freeing;		/* hook_runner_free runs: refuse new hooks */
	hook_done_cb observer;	/* NULL: none (the API's metrics) */
	void *observer_arg;	/* borrowed */
};

/* What a child that could not exec the shell reports on its error pipe. */
enum child_stage {
	CS_PGRP,
	CS_PDEATHSIG,
	CS_SIGNALS,
	CS_FDS,
	CS_DEVNULL,
	CS_CLOSE,
	CS_EXEC,
};

struct child_err {
	int stage;
	int err;
};

static const char *
child_stage_name(int stage)
{
	switch (stage) {
	case CS_PGRP:
		return "create its process group";
	case CS_PDEATHSIG:
		return "set its parent-death signal";
	case CS_SIGNALS:
		return "reset its signals";
	case CS_FDS:
		return "set up its output";
	case CS_DEVNULL:
		return "open /dev/null";
	case CS_CLOSE:
		return "close inherited files";
	case CS_EXEC:
		return "execute " HOOK_SHELL;
	}
	return "set up the child";
}

struct hook_runner *
hook_runner_new(struct loop *loop)
{
	struct hook_runner *hr;

	if (!loop)
		return NULL;
	hr = calloc(1, sizeof(*hr));
	if (hr)
		hr->loop = loop;
	return hr;
}

size_t
hook_running(const struct hook_runner *hr)
{
	return hr ? hr->nprocs : 0;
}

/* ---- output ------------------------------------------------------------ */

/*
 * Logs the buffered line. Bytes outside printable ASCII become \xNN so a
 * hook cannot write escape sequences or forge log lines.
 */
static void
out_emit(struct hook_proc *p)
{
	static const char hex[] = "0123456789abcdef";
	char esc[HOOK_LINE_MAX * 4 + 1];
	size_t n = p->linelen, j = 0;

	if (n > 0 && p->line[n - 1] == '\r')
		n--;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p->line[i];

		if (c >= 0x20 && c < 0x7f) {
			esc[j++] = (char)c;
		} else {
			esc[j++] = '\\';
			esc[j++] = 'x';
			esc[j++] = hex[c >> 4];
			esc[j++] = hex[c & 0xf];
		}
	}
	esc[j] = '\0';
	p->linelen = 0;
	log_info("hook %s[%d]: %s", p->name, (int)p->pid, esc);
	if (strncmp(esc, HOOK_REPORT_PREFIX, strlen(HOOK_REPORT_PREFIX)) == 0) {
		const char *rep = esc + strlen(HOOK_REPORT_PREFIX);
		size_t rlen = strlen(rep);

		if (rlen >= sizeof(p->report))
			rlen = sizeof(p->report) - 1;	/* a report is a few words */
		memcpy(p->report, rep, rlen);
		p->report[rlen] = '\0';
	}
}

static void
out_feed(struct hook_proc *p, const char *buf, size_t n)
{
	for (size_t i = 0; i < n && !p->out_truncated; i++) {
		if (p->out_total == HOOK_OUTPUT_MAX) {
			if (p->linelen > 0)
				out_emit(p);
			log_warning("output of hook %s[%d] truncated after %d "
				    "bytes", p->name, (int)p->pid,
				    HOOK_OUTPUT_MAX);
			p->out_truncated = true;
			break;
		}
		p->out_total++;
		if (buf[i] == '\n') {
			out_emit(p);
			continue;
		}
		p->line[p->linelen++] = buf[i];
		if (p->linelen == HOOK_LINE_MAX)
			out_emit(p);
	}
}

static void
out_close(struct hook_proc *p)
{
	if (p->out_fd < 0)
		return;
	if (p->linelen > 0)
		out_emit(p);
	loop_del_fd(p->hr->loop, p->out_fd);
	close(p->out_fd);
	p->out_fd = -1;
}

/*
 * Reads what the pipe holds now, a bounded amount per call so a chatty
 * hook cannot starve the loop (epoll is level-triggered and calls again).
 */
static void
out_read(struct hook_proc *p)
{
	char buf[4096];

	for (int i = 0; i < HOOK_READS_PER_WAKEUP && p->out_fd >= 0; i++) {
		ssize_t n = read(p->out_fd, buf, sizeof(buf));

		if (n > 0) {
			out_feed(p, buf, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0)
			log_warning("could not read output of hook %s[%d]: %s",
				    p->name, (int)p->pid, strerror(errno));
		out_close(p);
	}
}

/* ---- finishing --------------------------------------------------------- */

static void
proc_free(struct hook_proc *p)
{
	if (p->out_fd >= 0) {
		loop_del_fd(p->hr->loop, p->out_fd);
		close(p->out_fd);
	}
	if (p->err_fd >= 0)
		close(p->err_fd);
	loop_timer_free(p->timer);
	free(p->name);
	free(p);
}

static void
proc_unlink(struct hook_proc *p)
{
	struct hook_runner *hr = p->hr;

	for (struct hook_proc **pp = &hr->procs; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			hr->nprocs--;
			return;
		}
	}
}

/*
 * Reports and frees p, which the caller already unlinked. Nothing of p or
 * the runner is touched after the callback: it may free the runner.
 */
static void
proc_report(struct hook_proc *p, bool cancelled)
{
	struct hook_result res;
	uint64_t end = p->exited ? p->end_ms : clock_now_ms();

	memset(&res, 0, sizeof(res));
	res.name = p->name;
	res.pid = p->pid;
	res.exit_code = -1;
	if (p->exited && WIFEXITED(p->status))
		res.exit_code = WEXITSTATUS(p->status);
	if (p->exited && WIFSIGNALED(p->status))
		res.term_signal = WTERMSIG(p->status);
	if (cancelled)
		res.outcome = HOOK_CANCELLED;
	else if (p->spawn_failed)
		res.outcome = HOOK_SPAWN_ERROR;
	else if (p->timed_out)
		res.outcome = HOOK_TIMEOUT;
	else if (res.exit_code == 0)
		res.outcome = HOOK_OK;
	else
		res.outcome = HOOK_FAILED;
	res.duration_ms = end - p->start_ms;
	res.leftover_killed = p->leftover_killed;
	res.report = p->report;

	/* The fd and timer go first so the callback may start new hooks. */
	out_close(p);
	loop_timer_free(p->timer);
	p->timer = NULL;

	log_event("hook-finished", "hook=%s pid=%d outcome=%s exit=%d "
		  "signal=%d duration_ms=%" PRIu64, p->name, (int)p->pid,
		  hook_outcome_name(res.outcome), res.exit_code,
		  res.term_signal, res.duration_ms);
	if (p->hr->observer)
		p->hr->observer(&res, p->hr->observer_arg);
	if (p->cb)
		p->cb(&res, p->cb_arg);
	proc_free(p);
}

static void
proc_finish(struct hook_proc *p)
{
	proc_unlink(p);
	proc_report(p, false);
}

/*
 * Signals p's process group. Before the leader is reaped its pid cannot be
 * reused, so the group id is safe; after, it is safe while any member
 * lives, and when none does kill() fails with ESRCH.
 */
static void
signal_group(struct hook_proc *p, int sig)
{
	if (kill(-p->pid, sig) < 0 && errno != ESRCH)
		log_warning("could not send SIG%s to hook %s[%d]: %s",
			    sigabbrev_np(sig), p->name, (int)p->pid,
			    strerror(errno));
}

static void
read_spawn_error(struct hook_proc *p)
{
	struct child_err ce;
	ssize_t n;

	if (p->err_fd < 0)
		return;
	/* The write end closed at exec or exit: this never waits. */
	n = read(p->err_fd, &ce, sizeof(ce));
	close(p->err_fd);
	p->err_fd = -1;
	if (n != (ssize_t)sizeof(ce))
		return;
	p->spawn_failed = true;
	log_error("could not start hook %s[%d]: could not %s: %s", p->name,
		  (int)p->pid, child_stage_name(ce.stage), strerror(ce.err));
}

/* ---- loop callbacks ---------------------------------------------------- */

static void
on_output(struct loop *loop, int fd, uint32_t events, void *arg)
{
	struct hook_proc *p = arg;

	(void)loop;
	(void)fd;
	(void)events;
	out_read(p);
	if (p->out_fd < 0 && p->exited)
		proc_finish(p);
}

static void
on_child(struct loop *loop, pid_t pid, int status, void *arg)
{
	struct hook_proc *p = arg;

	(void)loop;
	(void)pid;
	p->exited = true;
	p->status = status;
	p->end_ms = clock_now_ms();
	loop_timer_stop(p->timer);
	read_spawn_error(p);
	/*
	 * A background job of the hook would outlive it, hold its output
	 * pipe and run on unsupervised: the group goes with its leader.
	 * After a timeout the group was signalled already and what kill()
	 * finds may only be zombies on their way to the loop, so only a
	 * hook that ended by itself counts as having left processes.
	 */
	if (p->phase == PH_RUNNING && kill(-p->pid, 0) == 0) {
		p->leftover_killed = 1;
		log_warning("hook %s[%d] exited but left processes in its "
			    "process group; killing them", p->name,
			    (int)p->pid);
	}
	if (p->leftover_killed || p->phase == PH_TERM_SENT)
		signal_group(p, SIGKILL);
	out_read(p);
	if (p->out_fd < 0) {
		proc_finish(p);
		return;
	}
	p->phase = PH_DRAINING;
	loop_timer_in(p->timer, p->kill_grace_ms);
}

static void
on_timer(struct loop *loop, struct loop_timer *t, void *arg)
{
	struct hook_proc *p = arg;

	(void)loop;
	(void)t;
	switch (p->phase) {
	case PH_RUNNING:
		p->timed_out = true;
		p->phase = PH_TERM_SENT;
		log_event("hook-timeout", "hook=%s pid=%d timeout_ms=%" PRIu64,
			  p->name, (int)p->pid, p->timeout_ms);
		signal_group(p, SIGTERM);
		loop_timer_in(p->timer, p->kill_grace_ms);
		break;
	case PH_TERM_SENT:
		p->phase = PH_KILL_SENT;
		log_warning("hook %s[%d] still running %" PRIu64 " ms after "
			    "SIGTERM; sending SIGKILL", p->name, (int)p->pid,
			    p->kill_grace_ms);
		signal_group(p, SIGKILL);
		break;
	case PH_KILL_SENT:
		break;
	case PH_DRAINING:
		log_warning("output of hook %s[%d] still open %" PRIu64 " ms "
			    "after it exited; a process outside its group "
			    "holds it", p->name, (int)p->pid, p->kill_grace_ms);
		out_read(p);
		proc_finish(p);
		break;
	}
}

/* ---- the child --------------------------------------------------------- */

/* Slow path of close_from: walk /proc/self/fd without allocating. */
static void
close_from_slow(int lowfd)
{
	union {
		struct dirent64 d;
		char buf[4096];
	} u;
	struct rlimit rl;
	ssize_t n;
	int dfd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (dfd < 0) {
		rlim_t max = 65536;

		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < max)
			max = rl.rlim_cur;
		for (int fd = lowfd; (rlim_t)fd < max; fd++)
			close(fd);
		return;
	}
	/* Closing entries behind the read position does not skip any. */
	while ((n = getdents64(dfd, u.buf, sizeof(u.buf))) > 0) {
		for (ssize_t off = 0; off < n;) {
			struct dirent64 *d = (struct dirent64 *)(u.buf + off);
			int fd = 0;
			bool num = d->d_name[0] != '\0';

			for (const char *c = d->d_name; *c; c++) {
				if (*c < '0' || *c > '9' || fd > 100000000) {
					num = false;
					break;
				}
				fd = fd * 10 + (*c - '0');
			}
			if (num && fd >= lowfd && fd != dfd)
				close(fd);
			off += d->d_reclen;
		}
	}
	close(dfd);
}

static void
close_from(int lowfd)
{
	if (!hook_test_no_close_range &&
	    close_range((unsigned)lowfd, ~0U, 0) == 0)
		return;
	close_from_slow(lowfd);
}

/*
 * Runs in the forked child; never returns. Everything it needs was built
 * before fork, so it only makes system calls (the daemon has one thread).
 * A failure goes to the parent through err_w (close-on-exec: a successful
 * exec leaves it empty) and ends with _exit(127).
 */
static void __attribute__((noreturn))
child_exec(char *cmd, char **envp, pid_t parent, int out_w, int err_w)
{
	static char sh_name[] = "sh", sh_c[] = "-c";
	char *argv[] = { sh_name, sh_c, cmd, NULL };
	struct child_err ce;
	struct sigaction sa;
	sigset_t none;
	int fd;

	ce.stage = CS_PGRP;
	if (setpgid(0, 0) < 0)
		goto fail;
	ce.stage = CS_PDEATHSIG;
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
		goto fail;
	/* The daemon died before prctl: nobody would ever stop us. */
	if (getppid() != parent)
		_exit(HOOK_EXEC_FAILED);

	/*
	 * The loop blocks TERM, INT, HUP and CHLD and ignores PIPE; both
	 * survive exec. sigaction fails harmlessly for KILL and STOP.
	 */
	ce.stage = CS_SIGNALS;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	for (int sig = 1; sig < NSIG; sig++)
		(void)sigaction(sig, &sa, NULL);
	sigemptyset(&none);
	if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
		goto fail;

	/* Lift both pipe ends above 2 first: stdio may have been closed. */
	ce.stage = CS_FDS;
	if ((fd = fcntl(err_w, F_DUPFD_CLOEXEC, 3)) < 0)
		goto fail;
	err_w = fd;
	if ((out_w = fcntl(out_w, F_DUPFD_CLOEXEC, 3)) < 0)
		goto fail;
	ce.stage = CS_DEVNULL;
	if ((fd = open("/dev/null", O_RDONLY)) < 0)
		goto fail;
	if (fd != STDIN_FILENO && dup2(fd, STDIN_FILENO) < 0)
		goto fail;
	ce.stage = CS_FDS;
	if (dup2(out_w, STDOUT_FILENO) < 0 || dup2(out_w, STDERR_FILENO) < 0)
		goto fail;
	if (err_w != 3) {
		if (dup3(err_w, 3, O_CLOEXEC) < 0)
			goto fail;
		err_w = 3;
	}
	ce.stage = CS_CLOSE;
	close_from(4);

	ce.stage = CS_EXEC;
	execve(hook_test_shell ? hook_test_shell : HOOK_SHELL, argv, envp);
fail:
	ce.err = errno;
	/* Nothing more can be done if even this fails. */
	if (write(err_w, &ce, sizeof(ce)) < 0)
		_exit(HOOK_EXEC_FAILED);
	_exit(HOOK_EXEC_FAILED);
}

/* ---- starting ---------------------------------------------------------- */

static void
env_free(char **envp)
{
	if (!envp)
		return;
	for (char **e = envp; *e; e++)
		free(*e);
	free(envp);
}

static bool
env_name_ok(const char *s)
{
	if (!s || !*s || isdigit((unsigned char)*s))
		return false;
	for (; *s; s++)
		if (!(isupper((unsigned char)*s) || isdigit((unsigned char)*s) ||
		      *s == '_'))
			return false;
	return true;
}

/*
 * The whole environment of a hook: nothing is inherited, so neither
 * LD_PRELOAD nor a stray PGPASSWORD of the daemon's reaches it.
 */
static char **
env_build(const struct hook_spec *spec, char *err, size_t errlen)
{
	size_t n = 0, cap = spec->nvars + 4;
	char **envp = calloc(cap, sizeof(*envp));

	if (!envp)
		goto oom;
	if (!(envp[n++] = strdup(HOOK_PATH)) ||
	    !(envp[n++] = strdup("LANG=C")) ||
	    asprintf(&envp[n++], "PGVIGIL_HOOK=%s", spec->name) < 0)
		goto oom_partial;
	for (size_t i = 0; i < spec->nvars; i++) {
		const struct hook_var *v = &spec->vars[i];

		if (!v->env)
			continue;
		if (!env_name_ok(v->env)) {
			snprintf(err, errlen, "invalid environment variable "
				 "name \"PGVIGIL_%s\"", v->env);
			env_free(envp);
			return NULL;
		}
		if (asprintf(&envp[n++], "PGVIGIL_%s=%s", v->env,
			     v->value ? v->value : "") < 0)
			goto oom_partial;
	}
	return envp;
oom_partial:
	/* asprintf leaves its pointer undefined on failure. */
	envp[n - 1] = NULL;
	env_free(envp);
oom:
	snprintf(err, errlen, "out of memory");
	return NULL;
}

long
hook_run(struct hook_runner *hr, const struct hook_spec *spec,
	 hook_done_cb cb, void *arg)
{
	char err[256];
	const char *name = spec && spec->name ? spec->name : "?";
	char *cmd = NULL;
	char **envp = NULL;
	struct hook_proc *p = NULL;
	int out[2] = { -1, -1 }, ep[2] = { -1, -1 };
	bool fd_added = false;
	pid_t pid, self;

	if (!hr || !spec || !spec->name || !spec->command) {
		log_error("could not start hook %s: invalid arguments", name);
		return -1;
	}
	if (hr->freeing) {
		log_error("could not start hook %s: the daemon is stopping",
			  name);
		return -1;
	}
	if (!(cmd = hook_expand(spec->command, spec->vars, spec->nvars, err,
				sizeof(err))) ||
	    !(envp = env_build(spec, err, sizeof(err))))
		goto fail;

	snprintf(err, sizeof(err), "out of memory");
	if (!(p = calloc(1, sizeof(*p))))
		goto fail;
	p->hr = hr;
	p->out_fd = p->err_fd = -1;
	if (!(p->name = strdup(spec->name)) ||
	    !(p->timer = loop_timer_new(hr->loop, on_timer, p)))
		goto fail;
	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(ep, O_CLOEXEC) < 0 ||
	    fcntl(out[0], F_SETFL, O_NONBLOCK) < 0 ||
	    fcntl(ep[0], F_SETFL, O_NONBLOCK) < 0 ||
	    loop_add_fd(hr->loop, out[0], EPOLLIN, on_output, p) < 0) {
		snprintf(err, sizeof(err), "could not create its output "
			 "pipe: %s", strerror(errno));
		goto fail;
	}
	fd_added = true;

	self = getpid();
	p->start_ms = clock_now_ms();
	pid = fork();
	if (pid == 0)
		child_exec(cmd, envp, self, out[1], ep[1]);
	if (pid < 0) {
		snprintf(err, sizeof(err), "could not fork: %s",
			 strerror(errno));
		goto fail;
	}
	/* Also done by the child; EACCES means it already exec'd. */
	(void)setpgid(pid, pid);
	close(out[1]);
	close(ep[1]);
	out[1] = ep[1] = -1;
	if (loop_watch_child(hr->loop, pid, on_child, p) < 0) {
		/* Without a watch nobody learns of its exit: stop it now.
		 * The loop reaps it as an unwatched child. */
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		snprintf(err, sizeof(err), "could not watch process %d: %s",
			 (int)pid, strerror(errno));
		goto fail;
	}

	p->pid = pid;
	p->out_fd = out[0];
	p->err_fd = ep[0];
	p->cb = cb;
	p->cb_arg = arg;
	p->timeout_ms = spec->timeout_ms;
	p->kill_grace_ms = spec->kill_grace_ms;
	p->phase = PH_RUNNING;
	p->id = ++hr->last_id;
	p->next = hr->procs;
	hr->procs = p;
	hr->nprocs++;
	loop_timer_in(p->timer, spec->timeout_ms);
	free(cmd);
	env_free(envp);
	log_event("hook-started", "hook=%s pid=%d timeout_ms=%" PRIu64,
		  p->name, (int)pid, p->timeout_ms);
	return p->id;

fail:
	log_error("could not start hook %s: %s", name, err);
	if (fd_added)
		loop_del_fd(hr->loop, out[0]);
	for (int i = 0; i < 2; i++) {
		if (out[i] >= 0)
			close(out[i]);
		if (ep[i] >= 0)
			close(ep[i]);
	}
	if (p) {
		loop_timer_free(p->timer);
		free(p->name);
		free(p);
	}
	free(cmd);
	env_free(envp);
	return -1;
}

/* ---- shutdown ---------------------------------------------------------- */

/*
 * Reaps whatever of p's group has exited, without blocking. Returns true
 * once no process of the group is left, alive or zombie.
 */
static bool
reap_group(struct hook_proc *p)
{
	for (;;) {
		int status;
		pid_t r = waitpid(-p->pid, &status, WNOHANG);

		if (r == p->pid) {
			p->exited = true;
			p->status = status;
			p->end_ms = clock_now_ms();
		} else if (r == 0) {
			return false;
		} else if (r < 0 && errno != EINTR) {
			break;
		}
	}
	return kill(-p->pid, 0) < 0 && errno == ESRCH;
}

/*
 * Polls every group until each leader exited (whole_group false) or each
 * group is empty (true), or wait_ms passed. Only hook_runner_free polls:
 * the loop may never run again, so nobody else would reap.
 */
static void
free_wait(struct hook_runner *hr, uint64_t wait_ms, bool whole_group)
{
	const struct timespec tick = { 0, 5 * 1000 * 1000 };
	uint64_t deadline = clock_now_ms() + wait_ms;

	for (;;) {
		bool done = true;

		for (struct hook_proc *p = hr->procs; p; p = p->next) {
			bool gone;

			/* A hook blocked on a full pipe cannot exit. */
			out_read(p);
			gone = reap_group(p);
			if (whole_group ? !gone : !p->exited)
				done = false;
		}
		if (done || clock_now_ms() >= deadline)
			return;
		nanosleep(&tick, NULL);
	}
}

void
hook_runner_free(struct hook_runner *hr)
{
	uint64_t grace = 0;
	struct hook_proc *p;

	if (!hr)
		return;
	hr->freeing = true;
	for (p = hr->procs; p; p = p->next) {
		loop_timer_free(p->timer);
		p->timer = NULL;
		if (p->exited) {
			signal_group(p, SIGKILL);
			continue;
		}
		/* From here on this file reaps it, not the loop. */
		loop_unwatch_child(hr->loop, p->pid);
		signal_group(p, SIGTERM);
		if (p->kill_grace_ms > grace)
			grace = p->kill_grace_ms;
	}
	if (grace > HOOK_FREE_TERM_WAIT_MAX_MS)
		grace = HOOK_FREE_TERM_WAIT_MAX_MS;
	free_wait(hr, grace, false);
	for (p = hr->procs; p; p = p->next)
		signal_group(p, SIGKILL);
	free_wait(hr, HOOK_FREE_KILL_WAIT_MS, true);

	while ((p = hr->procs) != NULL) {
		hr->procs = p->next;
		hr->nprocs--;
		if (!p->exited)
			log_warning("could not reap hook %s[%d] within %d ms of "
				    "SIGKILL", p->name, (int)p->pid,
				    HOOK_FREE_KILL_WAIT_MS);
		read_spawn_error(p);
		out_read(p);
		proc_report(p, true);
	}
	free(hr);
}

void
hook_set_observer(struct hook_runner *hr, hook_done_cb fn, void *arg)
{
	hr->observer = fn;
	hr->observer_arg = arg;
}
