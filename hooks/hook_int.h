/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * hook_int.h - limits of the hook runner, shared by hook.c and its unit
 * test. Not part of the public API.
 */
#ifndef PGVIGIL_HOOK_INT_H
#define PGVIGIL_HOOK_INT_H

#include <stdbool.h>

/* A longer output line is logged in pieces of this many bytes. */
#define HOOK_LINE_MAX 4096
/* Output bytes logged per run; the rest is read and dropped. */
#define HOOK_OUTPUT_MAX (1024 * 1024)
/* hook_runner_free waits at most this long for SIGTERM to work. */
#define HOOK_FREE_TERM_WAIT_MAX_MS 10000
/* ... and then this long for SIGKILL, in case a process is in D state. */
#define HOOK_FREE_KILL_WAIT_MS 2000

/*
 * Set by the unit test to make the child close its fds through the
 * /proc/self/fd walk, the fallback for kernels without close_range(2).
 */
extern bool hook_test_no_close_range;
/* Set by the unit test to make exec fail; NULL means /bin/sh. */
extern const char *hook_test_shell;

#endif
