/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * loop.h - the daemon's one event loop: epoll for file descriptors, one
 * CLOCK_BOOTTIME timerfd for all timers, signalfd for signals, and a child
 * table fed by SIGCHLD.
 *
 * Nothing else in pgvigil installs a signal handler or waits for a child.
 * All times are milliseconds on CLOCK_BOOTTIME (see clock.h).
 */
#ifndef PGVIGIL_LOOP_H
#define PGVIGIL_LOOP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct loop;
struct loop_timer;

/* Called when fd is ready; events is the EPOLL* mask that fired. */
typedef void (*loop_fd_cb)(struct loop *loop, int fd, uint32_t events,
			   void *arg);
/* Called once when a timer's deadline has passed; the timer is disarmed. */
typedef void (*loop_timer_cb)(struct loop *loop, struct loop_timer *t,
			      void *arg);
/* Called for SIGTERM, SIGINT and SIGHUP (SIGCHLD is handled by the loop). */
typedef void (*loop_signal_cb)(struct loop *loop, int signo, void *arg);
/* Called once a watched child has been reaped; status is from waitpid. */
typedef void (*loop_child_cb)(struct loop *loop, pid_t pid, int status,
			      void *arg);

/*
 * Creates the loop: blocks SIGTERM, SIGINT, SIGHUP and SIGCHLD and reads them
 * through a signalfd, ignores SIGPIPE. Returns NULL with errno set on failure.
 */
struct loop *loop_new(void);
/*
 * Blocks the signals the loop reads (TERM, INT, HUP, CHLD) before it
 * exists, so that one arriving during start-up waits for the loop instead
 * of killing the process. The daemon calls it first thing.
 */
int loop_block_signals(void);
/* Frees the loop and every timer still owned by it; NULL is fine. */
void loop_free(struct loop *loop);

/* Registers fd (borrowed: the caller closes it after loop_del_fd). */
int loop_add_fd(struct loop *loop, int fd, uint32_t events, loop_fd_cb cb,
		void *arg);
int loop_mod_fd(struct loop *loop, int fd, uint32_t events);
void loop_del_fd(struct loop *loop, int fd);

/* Timers are owned by the loop until loop_timer_free (NULL is fine). */
struct loop_timer *loop_timer_new(struct loop *loop, loop_timer_cb cb,
				  void *arg);
/* Arms at an absolute CLOCK_BOOTTIME deadline, replacing any earlier one. */
void loop_timer_at(struct loop_timer *t, uint64_t deadline_ms);
/* Arms delay_ms after now. */
void loop_timer_in(struct loop_timer *t, uint64_t delay_ms);
void loop_timer_stop(struct loop_timer *t);
bool loop_timer_armed(const struct loop_timer *t);
uint64_t loop_timer_deadline(const struct loop_timer *t);
void loop_timer_free(struct loop_timer *t);

/* One handler for the daemon's signals (TERM, INT, HUP). */
void loop_on_signal(struct loop *loop, loop_signal_cb cb, void *arg);

/*
 * Asks the loop to report pid's exit. Children nobody watches (orphans that
 * were reparented to us as subreaper) are reaped and logged.
 */
int loop_watch_child(struct loop *loop, pid_t pid, loop_child_cb cb,
		     void *arg);
void loop_unwatch_child(struct loop *loop, pid_t pid);

/* Runs until loop_stop; returns 0, or -1 with errno on a fatal error. */
int loop_run(struct loop *loop);
/* Runs one iteration, waiting at most max_wait_ms (tests use this). */
int loop_run_once(struct loop *loop, int max_wait_ms);
void loop_stop(struct loop *loop);
bool loop_stopping(const struct loop *loop);

/* The time read when the current iteration woke up. */
uint64_t loop_now(const struct loop *loop);
/* Largest gap between two wake-ups seen in the last iteration (tilt input). */
uint64_t loop_last_gap(const struct loop *loop);

#endif
