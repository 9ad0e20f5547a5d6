/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * hook.h - runs operator hook commands (fence, failover, follow_primary,
 * notify, ...) without ever blocking the event loop.
 *
 * A hook is a command line run as `/bin/sh -c COMMAND` after pgpool-II-style
 * %-placeholders were replaced by shell-quoted values, so a value holding
 * quotes, spaces or $(...) reaches the script literally. Every value is also
 * exported as a PGVIGIL_* environment variable. The child runs in its own
 * process group with PR_SET_PDEATHSIG, fds above 2 closed and an explicit
 * environment; on timeout the group gets SIGTERM, then SIGKILL after a grace
 * period. stdout and stderr are logged line by line with the hook's name, and
 * the outcome (exit status, timeout, duration) comes back through a callback
 * from the loop.
 */
#ifndef PGVIGIL_HOOK_H
#define PGVIGIL_HOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct loop;
struct hook_runner;

/*
 * One value a hook receives. code is the placeholder letter ('d' for %d) or
 * 0 for an environment-only value; env is the variable name without the
 * PGVIGIL_ prefix ("NODE_ID"). Both strings are borrowed for the call.
 */
struct hook_var {
	char code;
	const char *env;
	const char *value;
};

struct hook_spec {
	const char *name;	/* borrowed: "notify", "fence", ... for logs */
	const char *command;	/* borrowed: template with %-placeholders */
	const struct hook_var *vars;	/* borrowed, nvars entries */
	size_t nvars;
	uint64_t timeout_ms;	/* SIGTERM to the group after this */
	uint64_t kill_grace_ms;	/* SIGKILL this long after SIGTERM */
};

enum hook_outcome {
	HOOK_OK = 0,		/* exited with status 0 */
	HOOK_FAILED,		/* exited non-zero or was killed by a signal */
	HOOK_TIMEOUT,		/* still running at its timeout; killed */
	HOOK_SPAWN_ERROR,	/* could not fork or set up the child */
	HOOK_CANCELLED,		/* killed by hook_runner_free (daemon stop) */
};

struct hook_result {
	const char *name;	/* borrowed: valid during the callback */
	pid_t pid;
	enum hook_outcome outcome;
	int exit_code;		/* -1 unless the hook exited normally */
	int term_signal;	/* 0 unless the hook was killed by a signal */
	uint64_t duration_ms;
	unsigned leftover_killed; /* 1 if processes remained in its group */
	/*
	 * The text after "pgvigil-report: " of the last output line that
	 * starts so ("" when none): how a hook hands back a result, such as a
	 * clean stop's "shutdown_lsn=0/3000028". Borrowed, like name.
	 */
	const char *report;
};

#define HOOK_REPORT_PREFIX "pgvigil-report: "
#define HOOK_REPORT_MAX 256

typedef void (*hook_done_cb)(const struct hook_result *res, void *arg);

struct hook_runner *hook_runner_new(struct loop *loop);
/*
 * Kills every running hook's process group (TERM, then KILL after its
 * grace, bounded), reaps them, reports HOOK_CANCELLED, frees. NULL is fine.
 */
void hook_runner_free(struct hook_runner *hr);

/*
 * Starts a hook. Returns a positive run id, or -1 with a message in the log
 * (the callback is not called then). cb, unless NULL (the outcome is
 * logged either way), is called exactly once otherwise, from the loop,
 * after the process group is gone and output is drained.
 */
long hook_run(struct hook_runner *hr, const struct hook_spec *spec,
	      hook_done_cb cb, void *arg);

/* Number of hooks currently running. */
size_t hook_running(const struct hook_runner *hr);

const char *hook_outcome_name(enum hook_outcome o);

/*
 * Called with every finished hook's result, before its own callback (the
 * API counts runs by name and outcome). NULL removes it; arg is borrowed.
 */
void hook_set_observer(struct hook_runner *hr, hook_done_cb fn, void *arg);

/*
 * Pure helpers, used by the runner and by config validation.
 *
 * hook_expand: replaces each %X in tmpl by the shell-quoted value of the
 * var with code X, and %% by %. Returns a malloc'd string (owned by the
 * caller), or NULL with a message in err for an unknown placeholder or a
 * trailing %.
 */
char *hook_expand(const char *tmpl, const struct hook_var *vars, size_t nvars,
		  char *err, size_t errlen);
/*
 * Checks that tmpl uses only placeholders whose letters are in codes.
 * Returns 0, or -1 with "unknown placeholder %x ..." in err.
 */
int hook_check_template(const char *tmpl, const char *codes, char *err,
			size_t errlen);
/* Appends the POSIX-shell single-quoted form of s to a malloc'd string. */
char *hook_shell_quote(const char *s);

#endif
