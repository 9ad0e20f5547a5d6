/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_hook.c - the hook runner against a real /bin/sh and a real loop.
 *
 * The test process makes itself a child subreaper, as the daemon does, so
 * a hook's orphaned grandchildren come back to it and the loop reaps them.
 * Every wait polls the loop against a deadline; nothing sleeps to
 * synchronise. Log output is checked by pointing stderr at a file for the
 * duration of one hook.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/loop.h"
#include "hooks/hook.h"
#include "hooks/hook_int.h"

#define WAIT_MS 5000		/* generous: only reached when a test fails */

struct fixture {
	struct loop *loop;		/* owned */
	struct hook_runner *hr;		/* owned; NULL once a test freed it */
	char dir[64];			/* scratch directory, removed after */
	int saved_stderr;		/* >= 0 while stderr is captured */
	enum log_level saved_level;
	char logpath[96];
};

struct box {
	int calls;
	struct hook_result res;		/* res.name is cleared: borrowed */
	char name[32];
};

static void
on_done(const struct hook_result *res, void *arg)
{
	struct box *b = arg;

	b->calls++;
	b->res = *res;
	snprintf(b->name, sizeof(b->name), "%s", res->name);
	b->res.name = NULL;
}

/* ---- helpers ------------------------------------------------------------ */

static void
path_in(const struct fixture *f, const char *file, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", f->dir, file);
}

/* The whole file as a string, or NULL when it does not exist. */
static char *
slurp(const char *path)
{
	FILE *fp = fopen(path, "rb");
	char *s = NULL;
	size_t len = 0, cap = 0, n;
	char buf[4096];

	if (!fp)
		return NULL;
	while ((n = fread(buf, 1, sizeof(buf), fp)) > 0) {
		if (len + n + 1 > cap) {
			cap = (len + n + 1) * 2;
			s = realloc(s, cap);
			assert_non_null(s);
		}
		memcpy(s + len, buf, n);
		len += n;
	}
	fclose(fp);
	if (!s)
		s = calloc(1, 1);
	else
		s[len] = '\0';
	return s;
}

static bool
file_exists(const struct fixture *f, const char *file)
{
	char path[160];

	path_in(f, file, path, sizeof(path));
	return access(path, F_OK) == 0;
}

/* A pid written by a hook as "N\n"; 0 while the line is not complete. */
static pid_t
read_pidfile(const struct fixture *f, const char *file)
{
	char path[160];
	char *s;
	pid_t pid = 0;

	path_in(f, file, path, sizeof(path));
	s = slurp(path);
	if (s && strchr(s, '\n'))
		pid = (pid_t)atoi(s);
	free(s);
	return pid;
}

static void
loop_until(struct fixture *f, bool (*done)(void *), void *arg, int max_ms)
{
	uint64_t deadline = clock_now_ms() + (uint64_t)max_ms;

	while (!done(arg) && clock_now_ms() < deadline)
		assert_int_equal(loop_run_once(f->loop, 20), 0);
}

static bool
box_done(void *arg)
{
	return ((struct box *)arg)->calls > 0;
}

static void
wait_box(struct fixture *f, struct box *b)
{
	loop_until(f, box_done, b, WAIT_MS);
	assert_int_equal(b->calls, 1);
}

static bool
process_gone(void *arg)
{
	pid_t pid = *(pid_t *)arg;

	return kill(pid, 0) < 0 && errno == ESRCH;
}

/* Gone means reaped too: kill() still finds a zombie. */
static void
assert_gone(struct fixture *f, pid_t pid)
{
	assert_true(pid > 0);
	loop_until(f, process_gone, &pid, WAIT_MS);
	assert_true(process_gone(&pid));
}

static long
start(struct fixture *f, const char *name, const char *cmd,
      const struct hook_var *vars, size_t nvars, uint64_t timeout_ms,
      uint64_t grace_ms, struct box *b)
{
	struct hook_spec spec = {
		.name = name,
		.command = cmd,
		.vars = vars,
		.nvars = nvars,
		.timeout_ms = timeout_ms,
		.kill_grace_ms = grace_ms,
	};

	return hook_run(f->hr, &spec, on_done, b);
}

static void
run(struct fixture *f, const char *name, const char *cmd,
    const struct hook_var *vars, size_t nvars, uint64_t timeout_ms,
    uint64_t grace_ms, struct box *b)
{
	assert_true(start(f, name, cmd, vars, nvars, timeout_ms, grace_ms,
			  b) > 0);
	wait_box(f, b);
	assert_int_equal(hook_running(f->hr), 0);
}

/* stderr, and so the log, goes to a file until capture_end. */
static void
capture_begin(struct fixture *f)
{
	int fd;

	path_in(f, "log", f->logpath, sizeof(f->logpath));
	fd = open(f->logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	fflush(stderr);
	f->saved_stderr = dup(STDERR_FILENO);
	assert_true(f->saved_stderr >= 0);
	assert_true(dup2(fd, STDERR_FILENO) == STDERR_FILENO);
	close(fd);
	f->saved_level = log_get_level();
	if (f->saved_level < LOG_LVL_INFO)
		log_set_level(LOG_LVL_INFO);
}

static void
capture_stop(struct fixture *f)
{
	if (f->saved_stderr < 0)
		return;
	log_set_level(f->saved_level);
	fflush(stderr);
	dup2(f->saved_stderr, STDERR_FILENO);
	close(f->saved_stderr);
	f->saved_stderr = -1;
}

/* The captured log; the caller frees it. */
static char *
capture_end(struct fixture *f)
{
	char *s;

	capture_stop(f);
	s = slurp(f->logpath);
	assert_non_null(s);
	return s;
}

static int
count_lines_with(const char *log, const char *needle)
{
	int n = 0;

	for (const char *p = log; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

/* ---- fixture ------------------------------------------------------------ */

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->saved_stderr = -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/pgvigil-test-hook-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	f->loop = loop_new();
	if (!f->loop)
		return -1;
	f->hr = hook_runner_new(f->loop);
	if (!f->hr)
		return -1;
	hook_test_no_close_range = false;
	hook_test_shell = NULL;
	*state = f;
	return 0;
}

static void
remove_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[512];

	if (!d)
		return;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	pid_t pid;

	capture_stop(f);
	hook_runner_free(f->hr);
	loop_free(f->loop);
	/* A failed test may leave processes behind: stop and reap them. */
	pid = read_pidfile(f, "gc.pid");
	if (pid > 0)
		kill(pid, SIGKILL);
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	remove_dir(f->dir);
	free(f);
	return 0;
}

/* ---- templates (pure) --------------------------------------------------- */

static void
test_expand_doubled_percent_is_a_literal_percent(void **state)
{
	const struct hook_var vars[] = { { 'd', "NODE_ID", "7" } };
	char err[128];
	char *s;

	(void)state;
	s = hook_expand("a %% b %%d 100%%%%", vars, 1, err, sizeof(err));
	assert_non_null(s);
	assert_string_equal(s, "a % b %d 100%%");
	free(s);
}

static void
test_expand_quotes_each_value(void **state)
{
	const struct hook_var vars[] = {
		{ 'h', "HOST", "it's" },
		{ 'p', "PORT", "" },
		{ 'D', "PGDATA", NULL },
	};
	char err[128];
	char *s;

	(void)state;
	s = hook_expand("run %h --port=%p %D", vars, 3, err, sizeof(err));
	assert_non_null(s);
	assert_string_equal(s, "run 'it'\\''s' --port='' ''");
	free(s);
}

static void
test_expand_unknown_placeholder_fails_with_message(void **state)
{
	const struct hook_var vars[] = { { 'd', "NODE_ID", "7" } };
	char err[128] = "";

	(void)state;
	assert_null(hook_expand("x %d %q", vars, 1, err, sizeof(err)));
	assert_string_equal(err, "unknown placeholder %q in hook command");
	/* A var without a code is environment only. */
	const struct hook_var envonly[] = { { 0, "REASON", "r" } };
	assert_null(hook_expand("%\x01", envonly, 1, err, sizeof(err)));
	assert_string_equal(err,
			    "unknown placeholder %\\x01 in hook command");
}

static void
test_expand_trailing_percent_fails(void **state)
{
	char err[128] = "";

	(void)state;
	assert_null(hook_expand("echo 50%", NULL, 0, err, sizeof(err)));
	assert_string_equal(err, "hook command ends with a lone %");
	assert_int_equal(hook_check_template("50%", "d", err, sizeof(err)),
			 -1);
}

static void
test_expand_refuses_placeholder_where_quoting_would_not_hold(void **state)
{
	const struct hook_var vars[] = { { 'h', "HOST", "x" } };
	static const struct {
		const char *tmpl;
		const char *msg;
	} bad[] = {
		{ "echo '%h'", "inside single quotes" },
		{ "echo \"%h\"", "inside double quotes" },
		{ "echo `echo %h`", "inside backticks" },
		{ "cat <<EOF\n%h\nEOF", "here-document" },
		{ "echo \\%h", "follow \"\\\"" },
		{ "echo $%h", "follow \"$\"" },
		{ "echo \"a\\\"%h\"", "inside double quotes" },
	};
	static const struct {
		const char *tmpl;
		const char *want;
	} good[] = {
		{ "echo 'a' %h \"b\"", "echo 'a' 'x' \"b\"" },
		{ "echo \\' %h", "echo \\' 'x'" },
		{ "echo \\\\%h", "echo \\\\'x'" },
		{ "echo $(echo %h)", "echo $(echo 'x')" },
		{ "echo '%%' \"%%\" %h", "echo '%' \"%\" 'x'" },
	};
	char err[160];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_null(hook_expand(bad[i].tmpl, vars, 1, err,
					sizeof(err)));
		if (!strstr(err, bad[i].msg))
			fail_msg("%s: got \"%s\"", bad[i].tmpl, err);
		assert_int_equal(hook_check_template(bad[i].tmpl, "h", NULL, 0),
				 -1);
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		char *s = hook_expand(good[i].tmpl, vars, 1, err, sizeof(err));

		assert_non_null(s);
		assert_string_equal(s, good[i].want);
		free(s);
		assert_int_equal(hook_check_template(good[i].tmpl, "h", err,
						     sizeof(err)), 0);
	}
}

static void
test_check_template_accepts_only_known_codes(void **state)
{
	char err[128] = "";

	(void)state;
	assert_int_equal(hook_check_template("/x/failover.sh %d %h %p %% %D",
					     "dhpD", err, sizeof(err)), 0);
	assert_int_equal(hook_check_template("/x/f.sh %d %M", "dhpD", err,
					     sizeof(err)), -1);
	assert_string_equal(err, "unknown placeholder %M in hook command");
	assert_int_equal(hook_check_template("plain", NULL, err, sizeof(err)),
			 0);
}

static void
test_shell_quote_escapes_quotes_and_keeps_empty_words(void **state)
{
	char *s;

	(void)state;
	s = hook_shell_quote("");
	assert_string_equal(s, "''");
	free(s);
	s = hook_shell_quote("a b'c");
	assert_string_equal(s, "'a b'\\''c'");
	free(s);
	s = hook_shell_quote("''");
	assert_string_equal(s, "''\\'''\\'''");
	free(s);
}

static void
test_outcome_names_are_stable_tokens(void **state)
{
	(void)state;
	assert_string_equal(hook_outcome_name(HOOK_OK), "ok");
	assert_string_equal(hook_outcome_name(HOOK_FAILED), "failed");
	assert_string_equal(hook_outcome_name(HOOK_TIMEOUT), "timeout");
	assert_string_equal(hook_outcome_name(HOOK_SPAWN_ERROR),
			    "spawn-error");
	assert_string_equal(hook_outcome_name(HOOK_CANCELLED), "cancelled");
}

/* ---- running hooks ------------------------------------------------------ */

static void
test_hostile_value_reaches_script_as_exact_bytes(void **state)
{
	struct fixture *f = *state;
	char value[512], cmd[512], path[160];
	struct box b = { 0 };
	char *got;

	snprintf(value, sizeof(value),
		 "it's \"q\" $(touch %s/pwned1) `touch %s/pwned2` ${HOME} "
		 "\\ \\' * ?\nline two; touch %s/pwned3 | & %%d '",
		 f->dir, f->dir, f->dir);
	const struct hook_var vars[] = {
		{ 'v', "VALUE", value },
		{ 'e', "EMPTY", "" },
	};
	snprintf(cmd, sizeof(cmd),
		 "printf '%%%%s' %%v > %s/arg; "
		 "printf '%%%%s' \"$PGVIGIL_VALUE\" > %s/env; "
		 "printf '[%%%%s]' %%e %%v%%e > %s/words",
		 f->dir, f->dir, f->dir);
	run(f, "quote", cmd, vars, 2, 5000, 1000, &b);
	assert_int_equal(b.res.outcome, HOOK_OK);

	path_in(f, "arg", path, sizeof(path));
	got = slurp(path);
	assert_non_null(got);
	assert_string_equal(got, value);
	free(got);
	path_in(f, "env", path, sizeof(path));
	got = slurp(path);
	assert_non_null(got);
	assert_string_equal(got, value);
	free(got);
	/* An empty value is still one word; adjacent ones join. */
	path_in(f, "words", path, sizeof(path));
	got = slurp(path);
	assert_non_null(got);
	assert_true(strncmp(got, "[][it's", 7) == 0);
	free(got);
	assert_false(file_exists(f, "pwned1"));
	assert_false(file_exists(f, "pwned2"));
	assert_false(file_exists(f, "pwned3"));
}

static void
test_hook_exiting_zero_is_ok(void **state)
{
	struct fixture *f = *state;
	struct box b = { 0 };

	run(f, "zero", "exit 0", NULL, 0, 5000, 1000, &b);
	assert_int_equal(b.res.outcome, HOOK_OK);
	assert_int_equal(b.res.exit_code, 0);
	assert_int_equal(b.res.term_signal, 0);
	assert_int_equal(b.res.leftover_killed, 0);
	assert_string_equal(b.name, "zero");
	assert_true(b.res.pid > 0);
	assert_gone(f, b.res.pid);
}

static void
test_hook_exiting_three_is_failed_with_code(void **state)
{
	struct fixture *f = *state;
	struct box b = { 0 };

	capture_begin(f);
	run(f, "three", "exit 3", NULL, 0, 5000, 1000, &b);
	char *log = capture_end(f);

	assert_int_equal(b.res.outcome, HOOK_FAILED);
	assert_int_equal(b.res.exit_code, 3);
	assert_int_equal(b.res.term_signal, 0);
	assert_non_null(strstr(log, "event=hook-finished hook=three pid="));
	assert_non_null(strstr(log, " outcome=failed exit=3 signal=0 "
			       "duration_ms="));
	assert_non_null(strstr(log, "event=hook-started hook=three pid="));
	free(log);
}

static void
test_nonexistent_command_fails_with_127(void **state)
{
	struct fixture *f = *state;
	struct box b = { 0 };

	run(f, "missing", "/nonexistent/pgvigil-hook", NULL, 0, 5000, 1000,
	    &b);
	assert_int_equal(b.res.outcome, HOOK_FAILED);
	assert_int_equal(b.res.exit_code, 127);
}

static void
test_shell_that_cannot_be_executed_is_a_spawn_error(void **state)
{
	struct fixture *f = *state;
	struct box b = { 0 };
	char *log;

	bool logged_stage, logged_event;

	hook_test_shell = "/nonexistent/sh";
	capture_begin(f);
	run(f, "noshell", "exit 0", NULL, 0, 5000, 1000, &b);
	log = capture_end(f);
	hook_test_shell = NULL;
	logged_stage = strstr(log, "could not start hook noshell[") &&
		strstr(log, "could not execute /bin/sh: No such file or "
		       "directory");
	logged_event = strstr(log, " outcome=spawn-error exit=") != NULL;
	free(log);
	assert_int_equal(b.res.outcome, HOOK_SPAWN_ERROR);
	/*
	 * The exit code (127) is not checked: under valgrind the child that
	 * failed to exec is still valgrind's and exits with its code.
	 */
	assert_true(logged_stage);
	assert_true(logged_event);
}

static void
test_refused_template_starts_nothing(void **state)
{
	struct fixture *f = *state;
	struct box b = { 0 };
	const struct hook_var bad_env[] = { { 'd', "node id", "1" } };

	assert_int_equal(start(f, "bad", "echo %z", NULL, 0, 1000, 100, &b),
			 -1);
	assert_int_equal(start(f, "bad", "echo '%d'", bad_env, 1, 1000, 100,
			       &b), -1);
	assert_int_equal(start(f, "bad", "echo %d", bad_env, 1, 1000, 100,
			       &b), -1);
	assert_int_equal(hook_running(f->hr), 0);
	assert_int_equal(loop_run_once(f->loop, 0), 0);
	assert_int_equal(b.calls, 0);
}

static void
test_environment_is_explicit(void **state)
{
	struct fixture *f = *state;
	struct box b = { 0 };
	const struct hook_var vars[] = {
		{ 'd', "NODE_ID", "3" },
		{ 0, "REASON", "it's \"down\"" },
	};
	char cmd[256], path[160];
	char *env, *got;

	setenv("PGVIGIL_TEST_INHERITED", "leak", 1);
	setenv("TEST_HOOK_INHERITED", "leak", 1);
	snprintf(cmd, sizeof(cmd), "env > %s/env", f->dir);
	run(f, "envcheck", cmd, vars, 2, 5000, 1000, &b);
	unsetenv("PGVIGIL_TEST_INHERITED");
	unsetenv("TEST_HOOK_INHERITED");
	assert_int_equal(b.res.outcome, HOOK_OK);

	path_in(f, "env", path, sizeof(path));
	got = slurp(path);
	assert_non_null(got);
	/* A leading newline lets every check match a whole line. */
	env = calloc(1, strlen(got) + 2);
	assert_non_null(env);
	env[0] = '\n';
	strcpy(env + 1, got);
	free(got);
	assert_non_null(strstr(env, "\nPATH=/usr/local/sbin:/usr/local/bin:"
			       "/usr/sbin:/usr/bin:/sbin:/bin\n"));
	assert_non_null(strstr(env, "\nLANG=C\n"));
	assert_non_null(strstr(env, "\nPGVIGIL_HOOK=envcheck\n"));
	assert_non_null(strstr(env, "\nPGVIGIL_NODE_ID=3\n"));
	assert_non_null(strstr(env, "\nPGVIGIL_REASON=it's \"down\"\n"));
	assert_null(strstr(env, "leak"));
	assert_null(strstr(env, "HOME="));
	free(env);
}

/* Runs the clean-child checks; returns the hook's fd listing. */
static char *
run_clean_check(struct fixture *f, const char *name, const char *cmd)
{
	struct box b = { 0 };
	char prefix[64], *log, *list, *p;
	size_t n = 0;

	capture_begin(f);
	run(f, name, cmd, NULL, 0, 5000, 1000, &b);
	log = capture_end(f);
	/* Collect the hook's output lines as "line line ". */
	snprintf(prefix, sizeof(prefix), "hook %s[%d]: ", name,
		 (int)b.res.pid);
	list = calloc(1, strlen(log) + 1);
	assert_non_null(list);
	for (p = log; (p = strstr(p, prefix)); ) {
		p += strlen(prefix);
		while (*p && *p != '\n')
			list[n++] = *p++;
		list[n++] = ' ';
	}
	free(log);
	if (b.res.exit_code != 0 || b.res.outcome != HOOK_OK) {
		char shown[256];

		snprintf(shown, sizeof(shown), "%s", list);
		free(list);
		fail_msg("hook %s: exit %d, output \"%s\"", name,
			 b.res.exit_code, shown);
	}
	return list;
}

static void
test_child_starts_clean(void **state)
{
	struct fixture *f = *state;
	char *fds;
	int leak = open("/dev/null", O_RDONLY);	/* no O_CLOEXEC on purpose */

	assert_true(leak >= 0);
	assert_int_equal(dup2(leak, 200), 200);
	/*
	 * $$ is the hook's shell; ls lists its fds from outside, with no
	 * redirection for which the shell would save a copy of one. The
	 * other checks exit with their own codes: stdin is /dev/null and
	 * the shell leads its own process group.
	 */
	static const char cmd[] =
		"ls /proc/$$/fd; "
		"[ \"$(readlink /proc/$$/fd/0)\" = /dev/null ] || exit 11; "
		"set -- $(cat /proc/$$/stat); [ \"$5\" = $$ ] || exit 12; "
		"exit 0";

	fds = run_clean_check(f, "clean", cmd);
	assert_string_equal(fds, "0 1 2 ");
	free(fds);

	/* The same through the /proc/self/fd walk. */
	hook_test_no_close_range = true;
	fds = run_clean_check(f, "clean-slow", cmd);
	hook_test_no_close_range = false;
	close(leak);
	close(200);
	assert_string_equal(fds, "0 1 2 ");
	free(fds);
}

static void
test_child_has_no_blocked_or_ignored_signal(void **state)
{
	struct fixture *f = *state;
	char *out;

	/*
	 * exec: grep is the hook's first process itself, with the mask and
	 * dispositions it was started with. (The shell blocks signals for
	 * a moment around each fork, so it is the wrong thing to look at.)
	 * The loop blocks TERM, INT, HUP and CHLD and ignores PIPE here.
	 */
	out = run_clean_check(f, "signals", "exec grep -E "
			      "'^(SigBlk|SigIgn):' /proc/self/status");
	unsigned long long blk = ~0ULL, ign = ~0ULL;
	const char *p = strstr(out, "SigBlk:");
	const char *q = strstr(out, "SigIgn:");

	assert_non_null(p);
	assert_non_null(q);
	blk = strtoull(p + 7, NULL, 16);
	ign = strtoull(q + 7, NULL, 16);
	/*
	 * Signals 32 and 33 are glibc's own real-time signals: sigaction
	 * refuses them, so a child inherits whatever an ancestor set (make
	 * ignores them). Everything else must be default and unblocked.
	 */
	const unsigned long long glibc_rt = (1ULL << 31) | (1ULL << 32);

	assert_int_equal(blk & ~glibc_rt, 0);
	assert_int_equal(ign & ~glibc_rt, 0);
	free(out);
}

static void
test_output_is_logged_line_by_line(void **state)
{
	struct fixture *f = *state;
	struct box b = { 0 };
	char want[64];
	char *log;

	capture_begin(f);
	/* "thr" and "ee" arrive in separate reads; the last line has no \n. */
	run(f, "out",
	    "printf 'one\\ntwo\\n'; printf 'thr'; sleep 0.1; "
	    "printf 'ee\\001\\033[31m\\r\\n'; echo err >&2; printf partial",
	    NULL, 0, 5000, 1000, &b);
	log = capture_end(f);
	assert_int_equal(b.res.outcome, HOOK_OK);
	snprintf(want, sizeof(want), "hook out[%d]: ", (int)b.res.pid);
	assert_int_equal(count_lines_with(log, want), 5);
	snprintf(want, sizeof(want), "hook out[%d]: one\n", (int)b.res.pid);
	assert_non_null(strstr(log, want));
	snprintf(want, sizeof(want), "hook out[%d]: two\n", (int)b.res.pid);
	assert_non_null(strstr(log, want));
	snprintf(want, sizeof(want), "hook out[%d]: three\\x01\\x1b[31m\n",
		 (int)b.res.pid);
	assert_non_null(strstr(log, want));
	snprintf(want, sizeof(want), "hook out[%d]: err\n", (int)b.res.pid);
	assert_non_null(strstr(log, want));
	snprintf(want, sizeof(want), "hook out[%d]: partial\n",
		 (int)b.res.pid);
	assert_non_null(strstr(log, want));
	free(log);
}

static void
test_long_line_is_split_and_output_is_capped(void **state)
{
	struct fixture *f = *state;
	struct box b = { 0 };
	char tail[HOOK_LINE_MAX];
	char *log;

	capture_begin(f);
	/*
	 * 4096 + 904 bytes, then 1.2 MB through `yes | head`: yes must die
	 * of SIGPIPE (default disposition restored), not complain about
	 * EPIPE.
	 */
	run(f, "long",
	    "head -c 5000 /dev/zero | tr '\\0' a; echo; "
	    "yes 0123456789abcdef0123456789abcdef0123456789abcdef | "
	    "head -c 1200000",
	    NULL, 0, 5000, 1000, &b);
	log = capture_end(f);
	assert_int_equal(b.res.outcome, HOOK_OK);
	memset(tail, 'a', 904);
	tail[904] = '\0';
	char *second = strstr(log, ": aaaa");
	assert_non_null(second);
	second = strstr(second + 1, ": aaaa");
	assert_non_null(second);
	assert_true(strncmp(second + 2, tail, 904) == 0);
	assert_true(second[2 + 904] == '\n');
	assert_int_equal(count_lines_with(log, "output of hook long["), 1);
	assert_non_null(strstr(log, "truncated after 1048576 bytes"));
	assert_null(strstr(log, "Broken pipe"));
	free(log);
}

static void
test_timeout_kills_group_including_grandchild(void **state)
{
	struct fixture *f = *state;
	struct box b = { 0 };
	char cmd[256];
	pid_t gc;
	char *log;

	snprintf(cmd, sizeof(cmd),
		 "sleep 1000 & echo $! > %s/gc.pid; sleep 1000", f->dir);
	capture_begin(f);
	run(f, "slow", cmd, NULL, 0, 300, 2000, &b);
	log = capture_end(f);
	assert_int_equal(b.res.outcome, HOOK_TIMEOUT);
	assert_int_equal(b.res.term_signal, SIGTERM);
	assert_int_equal(b.res.exit_code, -1);
	assert_true(b.res.duration_ms >= 300);
	assert_true(b.res.duration_ms < 1500);
	assert_non_null(strstr(log, "event=hook-timeout hook=slow pid="));
	assert_non_null(strstr(log, " outcome=timeout "));
	free(log);
	gc = read_pidfile(f, "gc.pid");
	assert_gone(f, b.res.pid);
	assert_gone(f, gc);
}

static void
test_hook_ignoring_sigterm_is_killed_after_grace(void **state)
{
	struct fixture *f = *state;
	struct box b = { 0 };

	run(f, "stubborn", "trap '' TERM; sleep 1000", NULL, 0, 200, 300, &b);
	assert_int_equal(b.res.outcome, HOOK_TIMEOUT);
	assert_int_equal(b.res.term_signal, SIGKILL);
	assert_true(b.res.duration_ms >= 500);
	assert_true(b.res.duration_ms < 2000);
	assert_gone(f, b.res.pid);
}

static void
test_background_grandchild_is_killed_when_hook_exits(void **state)
{
	struct fixture *f = *state;
	struct box b = { 0 };
	char cmd[256];
	pid_t gc;

	snprintf(cmd, sizeof(cmd), "sleep 1000 & echo $! > %s/gc.pid; exit 0",
		 f->dir);
	run(f, "bg", cmd, NULL, 0, 5000, 1000, &b);
	assert_int_equal(b.res.outcome, HOOK_OK);
	assert_int_equal(b.res.exit_code, 0);
	assert_int_equal(b.res.leftover_killed, 1);
	/* The sleep held the pipe: the callback came only after it died. */
	assert_true(b.res.duration_ms < 1000);
	gc = read_pidfile(f, "gc.pid");
	assert_gone(f, gc);
}

static void
test_process_escaping_group_does_not_hold_hook_forever(void **state)
{
	struct fixture *f = *state;
	struct box b = { 0 };
	char cmd[512];
	uint64_t t0;
	pid_t gc;
	char *log;

	/* The hook waits until the escapee really left its group. */
	snprintf(cmd, sizeof(cmd),
		 "setsid sleep 1000 & echo $! > %s/gc.pid; "
		 "while set -- $(cat /proc/$!/stat) && [ \"$5\" = $$ ]; "
		 "do sleep 0.01; done; exit 0", f->dir);
	capture_begin(f);
	t0 = clock_now_ms();
	run(f, "escape", cmd, NULL, 0, 5000, 200, &b);
	log = capture_end(f);
	assert_int_equal(b.res.outcome, HOOK_OK);
	assert_int_equal(b.res.leftover_killed, 0);
	assert_true(clock_now_ms() - t0 < 2000);
	assert_non_null(strstr(log, "a process outside its group holds it"));
	free(log);
	gc = read_pidfile(f, "gc.pid");
	assert_true(gc > 0);
	assert_int_equal(kill(gc, 0), 0);
	kill(gc, SIGKILL);
	assert_gone(f, gc);
}

static bool
pidfile_written(void *arg)
{
	return read_pidfile(arg, "gc.pid") > 0;
}

static void
test_runner_free_cancels_running_hook(void **state)
{
	struct fixture *f = *state;
	struct box b = { 0 };
	char cmd[256];
	pid_t gc;

	snprintf(cmd, sizeof(cmd),
		 "sleep 1000 & echo $! > %s/gc.pid; sleep 1000", f->dir);
	assert_true(start(f, "cancel", cmd, NULL, 0, 60000, 1000, &b) > 0);
	loop_until(f, pidfile_written, f, WAIT_MS);
	gc = read_pidfile(f, "gc.pid");
	assert_true(gc > 0);
	assert_int_equal(hook_running(f->hr), 1);

	hook_runner_free(f->hr);
	f->hr = NULL;
	assert_int_equal(b.calls, 1);
	assert_int_equal(b.res.outcome, HOOK_CANCELLED);
	assert_int_equal(b.res.term_signal, SIGTERM);
	/* Reaped by hook_runner_free itself, without the loop. */
	assert_true(process_gone(&b.res.pid));
	assert_true(process_gone(&gc));
}

static void
test_runner_free_kills_hook_ignoring_sigterm(void **state)
{
	struct fixture *f = *state;
	struct box b = { 0 };
	uint64_t t0;

	char cmd[256];

	/* gc.pid doubles as the sign that the trap is in place. */
	snprintf(cmd, sizeof(cmd),
		 "trap '' TERM; echo $$ > %s/gc.pid; sleep 1000", f->dir);
	assert_true(start(f, "stubborn", cmd, NULL, 0, 60000, 200, &b) > 0);
	loop_until(f, pidfile_written, f, WAIT_MS);
	assert_true(read_pidfile(f, "gc.pid") > 0);
	t0 = clock_now_ms();
	hook_runner_free(f->hr);
	f->hr = NULL;
	assert_int_equal(b.calls, 1);
	assert_int_equal(b.res.outcome, HOOK_CANCELLED);
	assert_int_equal(b.res.term_signal, SIGKILL);
	assert_true(clock_now_ms() - t0 < 200 + HOOK_FREE_KILL_WAIT_MS);
	assert_true(process_gone(&b.res.pid));
}

static void
on_tick(struct loop *loop, struct loop_timer *t, void *arg)
{
	(void)loop;
	(void)t;
	*(uint64_t *)arg = clock_now_ms();
}

static void
test_loop_keeps_running_while_hook_runs(void **state)
{
	struct fixture *f = *state;
	struct box b = { 0 };
	uint64_t fired = 0, t0 = clock_now_ms();
	struct loop_timer *t = loop_timer_new(f->loop, on_tick, &fired);

	assert_non_null(t);
	assert_true(start(f, "sleeper", "sleep 0.5", NULL, 0, 5000, 1000,
			  &b) > 0);
	loop_timer_in(t, 100);
	wait_box(f, &b);
	loop_timer_free(t);
	assert_int_equal(b.res.outcome, HOOK_OK);
	assert_true(b.res.duration_ms >= 500);
	assert_true(fired > 0);
	assert_true(fired - t0 < 400);
}

struct chain {
	struct fixture *f;	/* borrowed */
	struct box *second;	/* borrowed */
	int calls;
	long second_id;
};

static void
chain_cb(const struct hook_result *res, void *arg)
{
	struct chain *c = arg;
	struct hook_spec spec = {
		.name = "second",
		.command = "exit 4",
		.timeout_ms = 5000,
		.kill_grace_ms = 1000,
	};

	(void)res;
	c->calls++;
	c->second_id = hook_run(c->f->hr, &spec, on_done, c->second);
}

static void
test_callback_may_start_another_hook(void **state)
{
	struct fixture *f = *state;
	struct box second = { 0 };
	struct chain c = { f, &second, 0, 0 };
	struct hook_spec spec = {
		.name = "first",
		.command = "exit 0",
		.timeout_ms = 5000,
		.kill_grace_ms = 1000,
	};
	long first_id = hook_run(f->hr, &spec, chain_cb, &c);

	assert_true(first_id > 0);
	wait_box(f, &second);
	assert_int_equal(c.calls, 1);
	assert_true(c.second_id > first_id);
	assert_int_equal(second.res.outcome, HOOK_FAILED);
	assert_int_equal(second.res.exit_code, 4);
	assert_int_equal(hook_running(f->hr), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_expand_doubled_percent_is_a_literal_percent),
		cmocka_unit_test(test_expand_quotes_each_value),
		cmocka_unit_test(test_expand_unknown_placeholder_fails_with_message),
		cmocka_unit_test(test_expand_trailing_percent_fails),
		cmocka_unit_test(test_expand_refuses_placeholder_where_quoting_would_not_hold),
		cmocka_unit_test(test_check_template_accepts_only_known_codes),
		cmocka_unit_test(test_shell_quote_escapes_quotes_and_keeps_empty_words),
		cmocka_unit_test(test_outcome_names_are_stable_tokens),
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_hostile_value_reaches_script_as_exact_bytes),
		T(test_hook_exiting_zero_is_ok),
		T(test_hook_exiting_three_is_failed_with_code),
		T(test_nonexistent_command_fails_with_127),
		T(test_shell_that_cannot_be_executed_is_a_spawn_error),
		T(test_refused_template_starts_nothing),
		T(test_environment_is_explicit),
		T(test_child_starts_clean),
		T(test_child_has_no_blocked_or_ignored_signal),
		T(test_output_is_logged_line_by_line),
		T(test_long_line_is_split_and_output_is_capped),
		T(test_timeout_kills_group_including_grandchild),
		T(test_hook_ignoring_sigterm_is_killed_after_grace),
		T(test_background_grandchild_is_killed_when_hook_exits),
		T(test_process_escaping_group_does_not_hold_hook_forever),
		T(test_runner_free_cancels_running_hook),
		T(test_runner_free_kills_hook_ignoring_sigterm),
		T(test_loop_keeps_running_while_hook_runs),
		T(test_callback_may_start_another_hook),
#undef T
	};

	/* As the daemon does in main: orphaned grandchildren come to us. */
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
		perror("prctl(PR_SET_CHILD_SUBREAPER)");
		return 1;
	}
	log_open("test_hook", LOG_DEST_STDERR, getenv("TEST_HOOK_DEBUG") ? LOG_LVL_DEBUG : LOG_LVL_WARNING);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
