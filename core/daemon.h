/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * daemon.h - the running daemon: configuration, identity, state directory,
 * event loop, hooks; start, reload on SIGHUP, clean stop on SIGTERM/SIGINT.
 */
#ifndef PGVIGIL_DAEMON_H
#define PGVIGIL_DAEMON_H

#include <stdint.h>

/* Exit codes (documented in pgvigil(8)). */
#define EXIT_OK 0
#define EXIT_RUNTIME 1
#define EXIT_CONFIG 2

struct daemon_opts {
	const char *conf_path;	/* borrowed */
	int64_t forced_id;	/* --id, 0 = find by address */
};

/* Runs in the foreground until stopped; returns the process exit code. */
int daemon_main(const struct daemon_opts *opts);

#endif
