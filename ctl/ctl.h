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
 * A handler may instead keep the connection open after its reply (it
 * returns CTL_FOLLOW): the client is then a follower, and every text given
 * to ctl_server_publish() is sent to it until it closes. pgvigilctl events
 * --follow works this way.
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
/*
 * Followers at once (besides CTL_MAX_CLIENTS); one more gets an error.
 * A follower with more than CTL_FOLLOW_BUFFER bytes not yet read, or that
 * reads nothing for CTL_TIMEOUT_MS while some wait, is dropped: the daemon
 * never buffers without a bound for a client that does not read.
 */
#define CTL_MAX_FOLLOWERS 8
#define CTL_FOLLOW_BUFFER (256 * 1024)
/* A handler's return: "ok", the body, then the connection stays open. */
#define CTL_FOLLOW 1

struct loop;
struct ctl_server;

/*
 * Handles one request line (without "\n"). who names the client for logs,
 * from its peer credentials: "uid=0(root) pid=1234" (the user name only
 * for root and the daemon's own user, known without a lookup that could
 * block). Writes the reply body to out
 * and returns 0 (the client gets "ok" then the body) or CTL_FOLLOW (the
 * same, then it follows ctl_server_publish()), or writes the error
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

/*
 * Sends text to every follower, after what it was sent before. A follower
 * whose unread bytes would pass CTL_FOLLOW_BUFFER is dropped (with a
 * warning). Safe to call from a handler.
 */
void ctl_server_publish(struct ctl_server *cs, const char *text, size_t len);
/* Followers connected now. */
size_t ctl_server_followers(const struct ctl_server *cs);

/* Replaces CTL_TIMEOUT_MS for every deadline armed from now on (tests). */
void ctl_server_set_timeout_ms(struct ctl_server *cs, uint64_t ms);

#endif
