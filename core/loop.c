/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * loop.c - the event loop: epoll + one timerfd + signalfd + child table.
 *
 * Invariants:
 * - one thread; callbacks run to completion and must not block;
 * - timers live in a binary min-heap keyed by deadline; the timerfd
 *   (CLOCK_BOOTTIME, absolute) is always armed to the heap's head, so a VM
 *   suspend counts as elapsed time and a lease cannot outlive it;
 * - SIGTERM, SIGINT, SIGHUP and SIGCHLD are blocked and read from a
 *   signalfd: a signal arriving while a callback runs is seen by the next
 *   epoll_wait, never lost in a flag-then-poll window;
 * - SIGCHLD reaps every exited child with waitpid(-1, WNOHANG) and reports
 *   watched ones; the daemon is a child subreaper, so a hook's orphaned
 *   grandchildren end up here too and never stay zombies.
 * Callbacks may add, remove or free fds and timers, including their own.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/loop.h"

struct fd_entry {
	int fd;
	loop_fd_cb cb;
	void *arg;		/* borrowed */
	struct fd_entry *next;	/* owned: next in the list */
	bool dead;		/* removed during dispatch, freed after */
};

struct loop_timer {
	struct loop *loop;	/* borrowed */
	loop_timer_cb cb;
	void *arg;		/* borrowed */
	uint64_t deadline;
	size_t heap_idx;	/* SIZE_MAX when not armed */
};

struct child_entry {
	pid_t pid;
	loop_child_cb cb;
	void *arg;		/* borrowed */
	struct child_entry *next;	/* owned */
};

struct loop {
	int epfd;
	int tfd;		/* timerfd, CLOCK_BOOTTIME */
	int sfd;		/* signalfd */
	struct fd_entry *fds;	/* owned list */
	int dispatching;	/* >0 while fd callbacks run */
	struct loop_timer **heap;	/* owned array of borrowed timers */
	size_t nheap, capheap;
	struct loop_timer **all;	/* owned array of owned timers */
	size_t nall, capall;
	struct child_entry *children;	/* owned list */
	loop_signal_cb sig_cb;
	void *sig_arg;		/* borrowed */
	sigset_t oldmask;
	bool mask_saved;	/* oldmask holds the mask to restore */
	struct sigaction old_pipe;	/* SIGPIPE disposition to restore */
	bool pipe_saved;
	uint64_t now;
	uint64_t last_gap;
	bool stop;
};

/* ---- timer heap ------------------------------------------------------ */

static void
heap_swap(struct loop *l, size_t a, size_t b)
{
	struct loop_timer *t = l->heap[a];

	l->heap[a] = l->heap[b];
	l->heap[b] = t;
	l->heap[a]->heap_idx = a;
	l->heap[b]->heap_idx = b;
}

static void
heap_up(struct loop *l, size_t i)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;

		if (l->heap[p]->deadline <= l->heap[i]->deadline)
			break;
		heap_swap(l, p, i);
		i = p;
	}
}

static void
heap_down(struct loop *l, size_t i)
{
	for (;;) {
		size_t c = 2 * i + 1, m = i;

		if (c < l->nheap && l->heap[c]->deadline < l->heap[m]->deadline)
			m = c;
		if (c + 1 < l->nheap &&
		    l->heap[c + 1]->deadline < l->heap[m]->deadline)
			m = c + 1;
		if (m == i)
			break;
		heap_swap(l, i, m);
		i = m;
	}
}

static void
heap_remove(struct loop *l, struct loop_timer *t)
{
	size_t i = t->heap_idx;

	if (i == SIZE_MAX)
		return;
	l->nheap--;
	if (i != l->nheap) {
		l->heap[i] = l->heap[l->nheap];
		l->heap[i]->heap_idx = i;
		heap_down(l, i);
		heap_up(l, i);
	}
	t->heap_idx = SIZE_MAX;
}

/* Points the timerfd at the earliest deadline, or disarms it. */
static void
rearm_timerfd(struct loop *l)
{
	struct itimerspec its;

	memset(&its, 0, sizeof(its));
	if (l->nheap > 0) {
		uint64_t d = l->heap[0]->deadline;

		/* An all-zero it_value would disarm: never arm at 0. */
		if (d == 0)
			d = 1;
		its.it_value.tv_sec = (time_t)(d / 1000);
		its.it_value.tv_nsec = (long)(d % 1000) * 1000000L;
	}
	if (timerfd_settime(l->tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
		log_error("could not arm timer: %s", strerror(errno));
}

struct loop_timer *
loop_timer_new(struct loop *l, loop_timer_cb cb, void *arg)
{
	struct loop_timer *t;

	if (l->nall == l->capall) {
		size_t cap = l->capall ? l->capall * 2 : 16;
		struct loop_timer **n = realloc(l->all, cap * sizeof(*n));
		struct loop_timer **h = realloc(l->heap, cap * sizeof(*h));

		if (n)
			l->all = n;
		if (h)
			l->heap = h;
		if (!n || !h)
			return NULL;
		l->capall = l->capheap = cap;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->loop = l;
	t->cb = cb;
	t->arg = arg;
	t->heap_idx = SIZE_MAX;
	l->all[l->nall++] = t;
	return t;
}

void
loop_timer_at(struct loop_timer *t, uint64_t deadline_ms)
{
	struct loop *l = t->loop;

	heap_remove(l, t);
	t->deadline = deadline_ms;
	t->heap_idx = l->nheap;
	l->heap[l->nheap++] = t;
	heap_up(l, t->heap_idx);
	rearm_timerfd(l);
}

void
loop_timer_in(struct loop_timer *t, uint64_t delay_ms)
{
	uint64_t now = clock_now_ms();

	/* Saturate: a huge delay means "never", not a deadline in the past. */
	loop_timer_at(t, delay_ms > UINT64_MAX - now ? UINT64_MAX : now + delay_ms);
}

void
loop_timer_stop(struct loop_timer *t)
{
	if (t->heap_idx == SIZE_MAX)
		return;
	heap_remove(t->loop, t);
	rearm_timerfd(t->loop);
}

bool
loop_timer_armed(const struct loop_timer *t)
{
	return t->heap_idx != SIZE_MAX;
}

uint64_t
loop_timer_deadline(const struct loop_timer *t)
{
	return t->deadline;
}

void
loop_timer_free(struct loop_timer *t)
{
	struct loop *l;

	if (!t)
		return;
	l = t->loop;
	loop_timer_stop(t);
	for (size_t i = 0; i < l->nall; i++) {
		if (l->all[i] == t) {
			l->all[i] = l->all[--l->nall];
			break;
		}
	}
	free(t);
}

static void
run_timers(struct loop *l)
{
	uint64_t exp;

	/* Drain the expiration count; the heap says what is due. */
	while (read(l->tfd, &exp, sizeof(exp)) > 0)
		;
	/*
	 * Fire only what is due now; a callback re-arming its timer for
	 * "now" runs on the next iteration, so a busy timer cannot starve fds.
	 */
	uint64_t now = l->now;
	size_t budget = l->nheap;

	while (budget-- > 0 && l->nheap > 0 && l->heap[0]->deadline <= now) {
		struct loop_timer *t = l->heap[0];

		heap_remove(l, t);
		t->cb(l, t, t->arg);
	}
	rearm_timerfd(l);
}

/* ---- fds ------------------------------------------------------------- */

static struct fd_entry *
find_fd(struct loop *l, int fd)
{
	for (struct fd_entry *e = l->fds; e; e = e->next)
		if (e->fd == fd && !e->dead)
			return e;
	return NULL;
}

int
loop_add_fd(struct loop *l, int fd, uint32_t events, loop_fd_cb cb, void *arg)
{
	struct epoll_event ev;
	struct fd_entry *e;

	if (find_fd(l, fd)) {
		errno = EEXIST;
		return -1;
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return -1;
	e->fd = fd;
	e->cb = cb;
	e->arg = arg;
	memset(&ev, 0, sizeof(ev));
	ev.events = events;
	ev.data.ptr = e;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int saved = errno;

		free(e);
		errno = saved;
		return -1;
	}
	e->next = l->fds;
	l->fds = e;
	return 0;
}

int
loop_mod_fd(struct loop *l, int fd, uint32_t events)
{
	struct fd_entry *e = find_fd(l, fd);
	struct epoll_event ev;

	if (!e) {
		errno = ENOENT;
		return -1;
	}
	memset(&ev, 0, sizeof(ev));
	ev.events = events;
	ev.data.ptr = e;
	return epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev);
}

static void
reap_dead_fds(struct loop *l)
{
	struct fd_entry **pp = &l->fds;

	while (*pp) {
		struct fd_entry *e = *pp;

		if (e->dead) {
			*pp = e->next;
			free(e);
		} else {
			pp = &e->next;
		}
	}
}

void
loop_del_fd(struct loop *l, int fd)
{
	struct fd_entry *e = find_fd(l, fd);

	if (!e)
		return;
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
	/*
	 * An epoll batch may still hold a pointer to e: mark it and free it
	 * once the batch is done.
	 */
	e->dead = true;
	if (!l->dispatching)
		reap_dead_fds(l);
}

/* ---- signals and children -------------------------------------------- */

void
loop_on_signal(struct loop *l, loop_signal_cb cb, void *arg)
{
	l->sig_cb = cb;
	l->sig_arg = arg;
}

int
loop_watch_child(struct loop *l, pid_t pid, loop_child_cb cb, void *arg)
{
	struct child_entry *c = calloc(1, sizeof(*c));

	if (!c)
		return -1;
	c->pid = pid;
	c->cb = cb;
	c->arg = arg;
	c->next = l->children;
	l->children = c;
	return 0;
}

void
loop_unwatch_child(struct loop *l, pid_t pid)
{
	for (struct child_entry **pp = &l->children; *pp; pp = &(*pp)->next) {
		if ((*pp)->pid == pid) {
			struct child_entry *c = *pp;

			*pp = c->next;
			free(c);
			return;
		}
	}
}

#define REAP_BATCH 64

/*
 * Reaps every exited child, then reports the watched ones. Reaping all
 * before any callback runs means that when a hook's callback runs, the
 * grandchildren that died with it are already gone, not zombies.
 */
static void
reap_children(struct loop *l)
{
	for (;;) {
		struct {
			pid_t pid;
			int status;
		} done[REAP_BATCH];
		size_t n = 0;

		while (n < REAP_BATCH) {
			int status;
			pid_t pid = waitpid(-1, &status, WNOHANG);

			if (pid <= 0)
				break;
			done[n].pid = pid;
			done[n++].status = status;
		}
		for (size_t i = 0; i < n; i++) {
			struct child_entry *c = NULL;

			for (struct child_entry **pp = &l->children; *pp;
			     pp = &(*pp)->next) {
				if ((*pp)->pid == done[i].pid) {
					c = *pp;
					*pp = c->next;
					break;
				}
			}
			if (c) {
				c->cb(l, done[i].pid, done[i].status, c->arg);
				free(c);
			} else {
				log_debug("reaped unwatched process %d", (int)done[i].pid);
			}
		}
		/* A short batch means nothing was left to reap. */
		if (n < REAP_BATCH)
			return;
	}
}

static void
handle_signals(struct loop *l)
{
	struct signalfd_siginfo si;
	bool chld = false;

	while (read(l->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGCHLD)
			chld = true;
		else if (l->sig_cb)
			l->sig_cb(l, (int)si.ssi_signo, l->sig_arg);
	}
	/* SIGCHLD coalesces: one read may stand for many exits. */
	if (chld)
		reap_children(l);
}

/* ---- lifecycle and dispatch ------------------------------------------ */

static void
loop_signal_set(sigset_t *mask)
{
	sigemptyset(mask);
	sigaddset(mask, SIGTERM);
	sigaddset(mask, SIGINT);
	sigaddset(mask, SIGHUP);
	sigaddset(mask, SIGCHLD);
}

int
loop_block_signals(void)
{
	sigset_t mask;

	loop_signal_set(&mask);
	return sigprocmask(SIG_BLOCK, &mask, NULL);
}

struct loop *
loop_new(void)
{
	struct loop *l = calloc(1, sizeof(*l));
	struct epoll_event ev;
	sigset_t mask;

	if (!l)
		return NULL;
	l->epfd = l->tfd = l->sfd = -1;
	loop_signal_set(&mask);
	if (sigprocmask(SIG_BLOCK, &mask, &l->oldmask) < 0)
		goto fail;
	l->mask_saved = true;
	/* A peer closing a pipe or socket is an EPIPE, not a death. */
	struct sigaction ign;

	memset(&ign, 0, sizeof(ign));
	ign.sa_handler = SIG_IGN;
	sigemptyset(&ign.sa_mask);
	if (sigaction(SIGPIPE, &ign, &l->old_pipe) == 0)
		l->pipe_saved = true;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	l->tfd = timerfd_create(CLOCK_BOOTTIME, TFD_NONBLOCK | TFD_CLOEXEC);
	l->sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (l->epfd < 0 || l->tfd < 0 || l->sfd < 0)
		goto fail;
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.ptr = &l->tfd;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->tfd, &ev) < 0)
		goto fail;
	ev.data.ptr = &l->sfd;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->sfd, &ev) < 0)
		goto fail;
	l->now = clock_now_ms();
	return l;
fail:
	loop_free(l);
	return NULL;
}

void
loop_free(struct loop *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->nall; i++)
		free(l->all[i]);
	free(l->all);
	free(l->heap);
	for (struct fd_entry *e = l->fds, *n; e; e = n) {
		n = e->next;
		free(e);
	}
	for (struct child_entry *c = l->children, *n; c; c = n) {
		n = c->next;
		free(c);
	}
	if (l->epfd >= 0)
		close(l->epfd);
	if (l->tfd >= 0)
		close(l->tfd);
	if (l->sfd >= 0)
		close(l->sfd);
	/* Give the process back the signal state it had before the loop. */
	if (l->pipe_saved)
		sigaction(SIGPIPE, &l->old_pipe, NULL);
	if (l->mask_saved)
		sigprocmask(SIG_SETMASK, &l->oldmask, NULL);
	free(l);
}

#define LOOP_BATCH 32

int
loop_run_once(struct loop *l, int max_wait_ms)
{
	struct epoll_event evs[LOOP_BATCH];
	bool timers = false, signals = false;
	uint64_t before = l->now;
	int n;

	n = epoll_wait(l->epfd, evs, LOOP_BATCH, max_wait_ms);
	if (n < 0) {
		if (errno == EINTR)
			return 0;
		return -1;
	}
	l->now = clock_now_ms();
	l->last_gap = l->now - before;
	l->dispatching++;
	for (int i = 0; i < n; i++) {
		void *p = evs[i].data.ptr;

		if (p == &l->tfd) {
			timers = true;
		} else if (p == &l->sfd) {
			signals = true;
		} else {
			struct fd_entry *e = p;

			if (!e->dead)
				e->cb(l, e->fd, evs[i].events, e->arg);
		}
	}
	l->dispatching--;
	reap_dead_fds(l);
	if (signals)
		handle_signals(l);
	if (timers || (l->nheap > 0 && l->heap[0]->deadline <= l->now))
		run_timers(l);
	return 0;
}

int
loop_run(struct loop *l)
{
	while (!l->stop) {
		if (loop_run_once(l, -1) < 0)
			return -1;
	}
	return 0;
}

void
loop_stop(struct loop *l)
{
	l->stop = true;
}

bool
loop_stopping(const struct loop *l)
{
	return l->stop;
}

uint64_t
loop_now(const struct loop *l)
{
	return l->now;
}

uint64_t
loop_last_gap(const struct loop *l)
{
	return l->last_gap;
}
