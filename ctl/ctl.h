/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * ctl.h - the daemon's control socket, served from the event loop.
 *
 * Protocol (pgvigilctl(8)): a client connects to a Unix stream socket and
 * sends one request line of at most CTL_MAX_REQUEST bytes ending in "\n"
 * (a "\r" before it is dropped; end of input also ends the line). The
 * server answers and closes the connection; the close marks the end of the
 * reply. The first line of a reply is "ok" or "error: MESSAGE"; the body
 * follows on the next lines. Bytes after the first line of a request are
 * ignored: one request per connection.
 *
 * Only uid 0 and the daemon's effective uid may talk to it (SO_PEERCRED);
 * the socket file is mode 0600 as well.
 */
#ifndef PGVIGIL_CTL_CTL_H
#define PGVIGIL_CTL_CTL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Longest request line, without its "\n". */
#define CTL_MAX_REQUEST 1024
/* Connections served at once; more get "error: ..." and are closed. */
#define CTL_MAX_CLIENTS 16
/* Time a client has to send its request, and again to read the reply. */
#define CTL_TIMEOUT_MS 5000

struct loop;
struct ctl_server;

/*
 * Handles one request line (without "\n"). who names the client for logs,
 * from its peer credentials: "uid=0(root) pid=1234" (the user name only
 * for root and the daemon's own user, known without a lookup that could
 * block). Writes the reply body to out
 * and returns 0 (the client gets "ok" then the body), or writes the error
 * text and returns -1 (the client gets "error: " then the text: its first
 * line is the message, in PostgreSQL style and without an "error: " of its
 * own; further lines such as "hint: ..." follow it). The server adds the
 * final newline if the text lacks one.
 * Runs inside the event loop: it must not block, and must not free the
 * server.
 */
typedef int (*ctl_handler)(const char *request, const char *who, FILE *out,
			   void *arg);

/* Longest who string, with its NUL. */
#define CTL_WHO_MAX 64

/*
 * Creates the socket at path and serves it on loop. The parent directory
 * is created (0755) if missing. A socket file nobody listens on is a
 * leftover of a crash and is replaced; one a live process answers on is
 * an error, and so is a path that exists and is not a socket. arg is
 * borrowed. Returns NULL with a message in err on failure.
 */
struct ctl_server *ctl_server_new(struct loop *loop, const char *path,
				  ctl_handler h, void *arg, char *err,
				  size_t errlen);
/*
 * Closes every client and the socket, and removes the socket file if it is
 * still the one this server created. Must be called before loop_free.
 * NULL is fine.
 */
void ctl_server_free(struct ctl_server *cs);

/* Replaces CTL_TIMEOUT_MS for every deadline armed from now on (tests). */
void ctl_server_set_timeout_ms(struct ctl_server *cs, uint64_t ms);

#endif
