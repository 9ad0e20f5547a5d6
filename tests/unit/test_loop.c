/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_loop.c - the event loop: timers fire in deadline order and never
 * early, can be re-armed, stopped and freed from their own callbacks; fds
 * dispatch; signals arrive through the signalfd; children are reaped and
 * reported, unwatched ones reaped silently.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/loop.h"

#define DEADLINE_MS 3000

/* Runs the loop until *flag is set or the deadline passes. */
static void
run_until(struct loop *l, const int *flag)
{
	uint64_t end = clock_now_ms() + DEADLINE_MS;

	while (!*flag && clock_now_ms() < end)
		assert_int_equal(loop_run_once(l, 50), 0);
	assert_true(*flag);
}

struct order {
	int seq[8];
	uint64_t at[8];
	int n;
};

struct tctx {
	struct order *o;
	int id;
};

static void
on_timer(struct loop *l, struct loop_timer *t, void *arg)
{
	struct tctx *c = arg;

	(void)t;
	c->o->at[c->o->n] = loop_now(l);
	c->o->seq[c->o->n++] = c->id;
}

static void
test_loop_timers_fire_in_deadline_order_never_early(void **s)
{
	struct loop *l = loop_new();
	struct order o = { 0 };
	struct tctx c[4] = { { &o, 0 }, { &o, 1 }, { &o, 2 }, { &o, 3 } };
	struct loop_timer *t[4];
	uint64_t start = clock_now_ms();
	const uint64_t delay[4] = { 60, 20, 40, 80 };

	(void)s;
	assert_non_null(l);
	for (int i = 0; i < 4; i++) {
		t[i] = loop_timer_new(l, on_timer, &c[i]);
		assert_non_null(t[i]);
		loop_timer_at(t[i], start + delay[i]);
		assert_true(loop_timer_armed(t[i]));
		assert_int_equal(loop_timer_deadline(t[i]), start + delay[i]);
	}
	/* Timer 3 is stopped before it fires. */
	loop_timer_stop(t[3]);
	assert_false(loop_timer_armed(t[3]));
	uint64_t end = start + 300;

	while (clock_now_ms() < end)
		assert_int_equal(loop_run_once(l, 20), 0);
	assert_int_equal(o.n, 3);
	assert_int_equal(o.seq[0], 1);
	assert_int_equal(o.seq[1], 2);
	assert_int_equal(o.seq[2], 0);
	for (int i = 0; i < 3; i++)
		assert_true(o.at[i] >= start + delay[o.seq[i]]);
	for (int i = 0; i < 4; i++)
		assert_false(loop_timer_armed(t[i]));
	loop_timer_free(t[0]);
	loop_timer_free(NULL);
	loop_free(l);	/* frees the timers still owned */
	loop_free(NULL);
}

struct rearm {
	int count;
	int done;
};

static void
on_rearm(struct loop *l, struct loop_timer *t, void *arg)
{
	struct rearm *r = arg;

	(void)l;
	if (++r->count < 5)
		loop_timer_in(t, 1);
	else
		r->done = 1;
}

static void
test_loop_timer_rearms_from_its_callback(void **s)
{
	struct loop *l = loop_new();
	struct rearm r = { 0 };
	struct loop_timer *t = loop_timer_new(l, on_rearm, &r);

	(void)s;
	loop_timer_in(t, 1);
	run_until(l, &r.done);
	assert_int_equal(r.count, 5);
	loop_free(l);
}

static void
on_self_free(struct loop *l, struct loop_timer *t, void *arg)
{
	(void)l;
	loop_timer_free(t);
	*(int *)arg = 1;
}

static void
test_loop_timer_frees_itself_in_callback(void **s)
{
	struct loop *l = loop_new();
	int fired = 0;
	struct loop_timer *t = loop_timer_new(l, on_self_free, &fired);

	(void)s;
	loop_timer_in(t, 0);
	run_until(l, &fired);
	loop_free(l);
}

static void
test_loop_many_timers_heap(void **s)
{
	struct loop *l = loop_new();
	struct order o = { 0 };
	struct loop_timer *t[200];
	struct tctx c = { &o, 0 };
	int n = 0;

	(void)s;
	/* Enough timers to grow the heap; re-arm some to reorder it. */
	for (int i = 0; i < 200; i++) {
		t[i] = loop_timer_new(l, on_timer, &c);
		assert_non_null(t[i]);
		loop_timer_in(t[i], 10000 + (uint64_t)((i * 7919) % 200));
	}
	for (int i = 0; i < 200; i += 3)
		loop_timer_stop(t[i]);
	for (int i = 0; i < 200; i++)
		n += loop_timer_armed(t[i]);
	assert_int_equal(n, 200 - 67);
	for (int i = 0; i < 200; i += 2)
		loop_timer_free(t[i]);
	loop_free(l);
}

static void
on_fd(struct loop *l, int fd, uint32_t ev, void *arg)
{
	char b;

	(void)ev;
	assert_int_equal(read(fd, &b, 1), 1);
	*(char *)arg = b;
	loop_del_fd(l, fd);
}

static void
test_loop_fd_readiness_dispatches(void **s)
{
	struct loop *l = loop_new();
	int p[2];
	char got = 0;

	(void)s;
	assert_int_equal(pipe(p), 0);
	assert_int_equal(loop_add_fd(l, p[0], EPOLLIN, on_fd, &got), 0);
	assert_int_equal(loop_add_fd(l, p[0], EPOLLIN, on_fd, &got), -1);
	assert_int_equal(write(p[1], "x", 1), 1);
	uint64_t end = clock_now_ms() + DEADLINE_MS;

	while (!got && clock_now_ms() < end)
		loop_run_once(l, 50);
	assert_int_equal(got, 'x');
	/* Removed from its own callback: a second byte is not dispatched. */
	got = 0;
	assert_int_equal(write(p[1], "y", 1), 1);
	loop_run_once(l, 50);
	assert_int_equal(got, 0);
	close(p[0]);
	close(p[1]);
	loop_free(l);
}

struct sigs {
	int hup, term;
};

static void
on_sig(struct loop *l, int signo, void *arg)
{
	struct sigs *g = arg;

	if (signo == SIGHUP)
		g->hup++;
	if (signo == SIGTERM) {
		g->term++;
		loop_stop(l);
	}
}

static void
test_loop_signals_arrive_through_signalfd(void **s)
{
	struct loop *l = loop_new();
	struct sigs g = { 0 };

	(void)s;
	loop_on_signal(l, on_sig, &g);
	/* Blocked and queued: raising it does not kill the test. */
	assert_int_equal(raise(SIGHUP), 0);
	run_until(l, &g.hup);
	assert_int_equal(kill(getpid(), SIGTERM), 0);
	assert_false(loop_stopping(l));
	assert_int_equal(loop_run(l), 0);	/* returns once TERM stops it */
	assert_int_equal(g.term, 1);
	assert_true(loop_stopping(l));
	loop_free(l);
}

struct childres {
	pid_t pid;
	int status;
	int done;
};

static void
on_child(struct loop *l, pid_t pid, int status, void *arg)
{
	struct childres *r = arg;

	(void)l;
	r->pid = pid;
	r->status = status;
	r->done = 1;
}

static void
test_loop_reaps_children_and_reports_watched_ones(void **s)
{
	struct loop *l = loop_new();
	struct childres r = { 0 };
	pid_t stray, watched;

	(void)s;
	stray = fork();
	if (stray == 0)
		_exit(0);
	watched = fork();
	if (watched == 0) {
		usleep(20000);
		_exit(7);
	}
	assert_int_equal(loop_watch_child(l, watched, on_child, &r), 0);
	run_until(l, &r.done);
	assert_int_equal(r.pid, watched);
	assert_true(WIFEXITED(r.status));
	assert_int_equal(WEXITSTATUS(r.status), 7);
	/* The unwatched child was reaped too: no zombie is left. */
	assert_int_equal(waitpid(stray, NULL, WNOHANG), -1);
	loop_free(l);
}

static void
test_loop_free_restores_signal_mask(void **s)
{
	sigset_t before, after;
	struct loop *l;

	(void)s;
	sigprocmask(SIG_SETMASK, NULL, &before);
	l = loop_new();
	loop_free(l);
	sigprocmask(SIG_SETMASK, NULL, &after);
	assert_int_equal(sigismember(&before, SIGTERM), sigismember(&after, SIGTERM));
	assert_int_equal(sigismember(&before, SIGCHLD), sigismember(&after, SIGCHLD));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_loop_timers_fire_in_deadline_order_never_early),
		cmocka_unit_test(test_loop_timer_rearms_from_its_callback),
		cmocka_unit_test(test_loop_timer_frees_itself_in_callback),
		cmocka_unit_test(test_loop_many_timers_heap),
		cmocka_unit_test(test_loop_fd_readiness_dispatches),
		cmocka_unit_test(test_loop_signals_arrive_through_signalfd),
		cmocka_unit_test(test_loop_reaps_children_and_reports_watched_ones),
		cmocka_unit_test(test_loop_free_restores_signal_mask),
	};

	log_open("test_loop", LOG_DEST_STDERR, LOG_LVL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
