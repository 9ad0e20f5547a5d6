/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * ctl.c - the control socket server: one request line in, one reply out,
 * then close; every step nonblocking on the daemon's event loop.
 *
 * Invariants:
 * - a client is either reading its request (reply == NULL, fd watched for
 *   EPOLLIN) or writing its reply (reply != NULL, EPOLLOUT once a send
 *   would block); one timer per client bounds each phase, so a client that
 *   never sends, or never reads, is dropped and cannot pin a slot;
 * - at most CTL_MAX_CLIENTS clients hold state; a connection beyond that,
 *   or from a uid other than 0 and ours, gets one nonblocking error line and
 *   is closed at once, with nothing allocated for it;
 * - the handler runs synchronously with a complete line; the status line
 *   ("ok" / "error: ...") is written here, so a handler cannot get the
 *   framing wrong;
 * - before a connection is closed, input still queued on it is read and
 *   discarded: closing a Unix socket with unread data makes the client's
 *   next read fail with ECONNRESET instead of seeing a clean end of reply.
 *
 * - a follower (the handler returned CTL_FOLLOW) stays after its reply:
 *   its buffer grows by what is published, up to CTL_FOLLOW_BUFFER unread
 *   bytes, and it is dropped beyond that, or when it reads nothing for a
 *   timeout while bytes wait; it counts against CTL_MAX_FOLLOWERS, not
 *   CTL_MAX_CLIENTS, so followers cannot lock out a status request.
 *
 * Why a fresh connection per request and "close ends the reply": the
 * client needs no length prefix and no parser beyond its first line, and
 * `socat - UNIX-CONNECT:PATH` is a usable debugging tool. The daemon's
 * state is small, so a reply is built whole in a memstream and then sent;
 * only a follower's stream goes on after it.
 *
 * Why bind under umask 0177 and then chmod: an AF_UNIX socket file takes
 * its mode from the umask at bind(); fchmod on the socket fd does not
 * reach the file. Setting the umask closes the window in which the file
 * would exist with a wider mode; the chmod makes the result independent of
 * what the kernel does with the umask. The umask is process-wide, which is
 * safe here because the daemon has one thread.
 */
#include <errno.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/log.h"
#include "core/loop.h"
#include "ctl/ctl.h"

/* A request line with its "\n" must fit. */
#define REQ_BUF (CTL_MAX_REQUEST + 1)
#define BACKLOG 32
/* Connections accepted per wake-up, so a flood cannot starve the loop. */
#define ACCEPT_BATCH 16
/* Pause after accept ran out of fds; the listener would fire in a loop. */
#define ACCEPT_PAUSE_MS 1000
/* Bytes of unread input discarded before a close, at most. */
#define DRAIN_MAX 65536

struct ctl_client {
	struct ctl_server *cs;	/* borrowed: the server that owns this */
	int fd;
	pid_t pid;		/* peer credentials, for logs */
	uid_t uid;
	char who[CTL_WHO_MAX];	/* "uid=0(root) pid=1234", for the handler */
	struct loop_timer *timer;	/* owned: phase deadline */
	char req[REQ_BUF + 1];	/* request bytes, NUL-terminated when served */
	size_t reqlen;
	char *reply;		/* owned: status line and body; NULL while reading */
	size_t replylen, replyoff, replycap;
	bool want_out;		/* fd is watched for EPOLLOUT */
	bool follow;		/* a follower: stays after its reply */
	struct ctl_client *prev;	/* borrowed */
	struct ctl_client *next;	/* owned: list of the server's clients */
};

struct ctl_server {
	struct loop *loop;	/* borrowed */
	char *path;		/* owned */
	int fd;			/* listening socket, -1 when none */
	dev_t dev;		/* the socket file we created */
	ino_t ino;
	bool created;		/* dev and ino are valid; unlink at free */
	uid_t euid;		/* the uid allowed besides root */
	char euser[32];		/* its name, looked up once at start; "" if none */
	ctl_handler handler;
	void *arg;		/* borrowed */
	uint64_t timeout_ms;
	struct loop_timer *resume;	/* owned: ends an accept pause */
	struct ctl_client *clients;	/* owned list */
	size_t nclients;	/* those not following */
	size_t nfollowers;
};

/* ---- closing ------------------------------------------------------------ */

static void
drain(int fd)
{
	char buf[4096];
	size_t total = 0;

	while (total < DRAIN_MAX) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n <= 0)
			break;
		total += (size_t)n;
	}
}

/* Sends one line without waiting and closes: for connections we refuse. */
static void
reject(int fd, const char *line)
{
	ssize_t n;

	do
		n = send(fd, line, strlen(line), MSG_DONTWAIT | MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	drain(fd);
	close(fd);
}

static void
client_free(struct ctl_client *c)
{
	struct ctl_server *cs = c->cs;

	if (c->prev)
		c->prev->next = c->next;
	else
		cs->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (c->follow)
		cs->nfollowers--;
	else
		cs->nclients--;
	loop_del_fd(cs->loop, c->fd);
	drain(c->fd);
	close(c->fd);
	loop_timer_free(c->timer);
	free(c->reply);
	free(c);
}

/* ---- replying ------------------------------------------------------------ */

/*
 * Sends what the socket takes; closes when done (a follower waits for more
 * instead), waits for EPOLLOUT if not.
 */
static void
flush_reply(struct ctl_client *c)
{
	bool progress = false;

	while (c->replyoff < c->replylen) {
		ssize_t n = send(c->fd, c->reply + c->replyoff,
				 c->replylen - c->replyoff, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				if (!c->want_out &&
				    loop_mod_fd(c->cs->loop, c->fd, EPOLLOUT) < 0) {
					log_warning("could not wait to write to control connection: %s",
						    strerror(errno));
					client_free(c);
					return;
				}
				/* A follower gets a period to read from its last progress. */
				if (c->follow && (progress || !c->want_out))
					loop_timer_in(c->timer, c->cs->timeout_ms);
				c->want_out = true;
				return;
			}
			log_debug("control client pid %d went away before its reply was sent: %s",
				  (int)c->pid, strerror(errno));
			client_free(c);
			return;
		}
		c->replyoff += (size_t)n;
		progress = true;
	}
	if (!c->follow) {
		client_free(c);
		return;
	}
	/* All sent: wait for more, and for the client to leave. */
	c->replyoff = c->replylen = 0;
	loop_timer_stop(c->timer);
	if (c->want_out) {
		if (loop_mod_fd(c->cs->loop, c->fd, EPOLLIN) < 0) {
			client_free(c);
			return;
		}
		c->want_out = false;
	}
}

/*
 * Frames text as the reply: "ok\n" + body, or "error: " + text, ending in a
 * newline either way. Then starts sending it.
 */
static void
start_reply(struct ctl_client *c, bool ok, const char *text, size_t len)
{
	const char *status = ok ? "ok\n" : "error: ";
	size_t slen = strlen(status);
	bool nl;

	if (!ok && len == 0) {
		text = "request failed";
		len = strlen(text);
	}
	nl = len > 0 && text[len - 1] != '\n';
	c->replylen = slen + len + (nl ? 1 : 0);
	c->replycap = c->replylen;
	c->reply = malloc(c->replylen);
	if (!c->reply) {
		log_error("could not reply on control connection: out of memory");
		client_free(c);
		return;
	}
	memcpy(c->reply, status, slen);
	if (len > 0)
		memcpy(c->reply + slen, text, len);
	if (nl)
		c->reply[c->replylen - 1] = '\n';
	c->replyoff = 0;
	/* The client gets a fresh period to read what it asked for. */
	loop_timer_in(c->timer, c->cs->timeout_ms);
	flush_reply(c);
}

static void
reply_error(struct ctl_client *c, const char *msg)
{
	start_reply(c, false, msg, strlen(msg));
}

/* Runs the handler on the complete line req[0..len). */
static void
serve(struct ctl_client *c, size_t len)
{
	struct ctl_server *cs = c->cs;
	char *body = NULL;
	size_t bodylen = 0;
	FILE *f;
	int rc;

	if (len > 0 && c->req[len - 1] == '\r')
		len--;
	if (memchr(c->req, '\0', len)) {
		reply_error(c, "request contains a NUL byte");
		return;
	}
	c->req[len] = '\0';
	log_debug("control request \"%.80s\" from pid %d uid %d", c->req,
		  (int)c->pid, (int)c->uid);
	f = open_memstream(&body, &bodylen);
	if (!f) {
		log_error("could not reply on control connection: %s", strerror(errno));
		client_free(c);
		return;
	}
	rc = cs->handler(c->req, c->who, f, cs->arg);
	if (fclose(f) != 0) {
		log_error("could not reply on control connection: out of memory");
		free(body);
		client_free(c);
		return;
	}
	if (rc == CTL_FOLLOW) {
		if (cs->nfollowers >= CTL_MAX_FOLLOWERS) {
			char msg[80];

			free(body);
			log_warning("refused to stream to pid %d: %d followers are already connected",
				    (int)c->pid, CTL_MAX_FOLLOWERS);
			snprintf(msg, sizeof(msg),
				 "too many followers (at most %d), try again later",
				 CTL_MAX_FOLLOWERS);
			reply_error(c, msg);
			return;
		}
		c->follow = true;
		cs->nclients--;
		cs->nfollowers++;
		log_debug("control client pid %d follows", (int)c->pid);
		rc = 0;
	}
	start_reply(c, rc == 0, body, bodylen);
	free(body);
}

/* ---- reading -------------------------------------------------------------- */

static void
read_request(struct ctl_client *c)
{
	for (;;) {
		size_t room = REQ_BUF - c->reqlen;
		const char *nl;
		ssize_t n;

		if (room == 0) {
			char msg[64];

			log_warning("control request from pid %d is longer than %d bytes",
				    (int)c->pid, CTL_MAX_REQUEST);
			snprintf(msg, sizeof(msg), "request too long (at most %d bytes)",
				 CTL_MAX_REQUEST);
			reply_error(c, msg);
			return;
		}
		n = recv(c->fd, c->req + c->reqlen, room, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			log_debug("could not read from control connection of pid %d: %s",
				  (int)c->pid, strerror(errno));
			client_free(c);
			return;
		}
		if (n == 0) {
			/* End of input ends the line too; nothing at all is a probe. */
			if (c->reqlen == 0) {
				client_free(c);
				return;
			}
			serve(c, c->reqlen);
			return;
		}
		nl = memchr(c->req + c->reqlen, '\n', (size_t)n);
		c->reqlen += (size_t)n;
		if (nl) {
			serve(c, (size_t)(nl - c->req));
			return;
		}
	}
}

/* A follower's socket is readable: it sent something, or it left. */
static void
follower_input(struct ctl_client *c)
{
	char buf[512];
	ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);

	if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR)))
		return;		/* nothing to say to us: ignored */
	log_debug("follower pid %d left", (int)c->pid);
	client_free(c);
}

static void
on_client(struct loop *loop, int fd, uint32_t events, void *arg)
{
	struct ctl_client *c = arg;

	(void)loop;
	(void)fd;
	if (c->follow && !c->want_out && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
		follower_input(c);
		return;
	}
	if (c->reply)
		flush_reply(c);
	else
		read_request(c);
}

static void
on_client_timeout(struct loop *loop, struct loop_timer *t, void *arg)
{
	struct ctl_client *c = arg;
	static const char msg[] = "error: timed out waiting for the request\n";

	(void)loop;
	(void)t;
	if (c->follow) {
		log_warning("dropped follower pid %d: it read nothing for %" PRIu64 " ms",
			    (int)c->pid, c->cs->timeout_ms);
	} else if (c->reply) {
		log_warning("dropped control connection of pid %d: reply not read within %" PRIu64 " ms",
			    (int)c->pid, c->cs->timeout_ms);
	} else {
		log_warning("dropped control connection of pid %d: no complete request within %" PRIu64 " ms",
			    (int)c->pid, c->cs->timeout_ms);
		/* Best effort, for a person typing into socat. */
		(void)send(c->fd, msg, sizeof(msg) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
	}
	client_free(c);
}

/* ---- accepting ------------------------------------------------------------- */

static void
admit(struct ctl_server *cs, int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct ctl_client *c;
	const char *user;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		log_warning("could not read the peer credentials of a control connection: %s",
			    strerror(errno));
		reject(fd, "error: could not check permission\n");
		return;
	}
	if (cred.uid != 0 && cred.uid != cs->euid) {
		log_warning("refused control connection from pid %d uid %d: only root and uid %d may use the control socket",
			    (int)cred.pid, (int)cred.uid, (int)cs->euid);
		reject(fd, "error: permission denied\n");
		return;
	}
	if (cs->nclients >= CTL_MAX_CLIENTS) {
		log_warning("refused control connection from pid %d: %d connections are already open",
			    (int)cred.pid, CTL_MAX_CLIENTS);
		reject(fd, "error: too many control connections, try again\n");
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c || !(c->timer = loop_timer_new(cs->loop, on_client_timeout, c))) {
		log_error("could not accept control connection: out of memory");
		free(c);
		close(fd);
		return;
	}
	c->cs = cs;
	c->fd = fd;
	c->pid = cred.pid;
	c->uid = cred.uid;
	user = cred.uid == 0 ? "root" : cs->euser;
	if (user[0])
		snprintf(c->who, sizeof(c->who), "uid=%d(%s) pid=%d",
			 (int)cred.uid, user, (int)cred.pid);
	else
		snprintf(c->who, sizeof(c->who), "uid=%d pid=%d", (int)cred.uid,
			 (int)cred.pid);
	if (loop_add_fd(cs->loop, fd, EPOLLIN, on_client, c) < 0) {
		log_error("could not watch control connection: %s", strerror(errno));
		loop_timer_free(c->timer);
		free(c);
		close(fd);
		return;
	}
	c->next = cs->clients;
	if (c->next)
		c->next->prev = c;
	cs->clients = c;
	cs->nclients++;
	loop_timer_in(c->timer, cs->timeout_ms);
	log_debug("control connection from pid %d uid %d", (int)c->pid, (int)c->uid);
}

static void
on_resume(struct loop *loop, struct loop_timer *t, void *arg)
{
	struct ctl_server *cs = arg;

	(void)t;
	if (loop_mod_fd(loop, cs->fd, EPOLLIN) < 0)
		log_error("could not watch control socket \"%s\" again: %s",
			  cs->path, strerror(errno));
}

static void
on_listen(struct loop *loop, int fd, uint32_t events, void *arg)
{
	struct ctl_server *cs = arg;

	(void)events;
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (cfd >= 0) {
			admit(cs, cfd);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
		    errno == ENOMEM) {
			/*
			 * The pending connection stays queued and the listener
			 * stays readable: stop watching it for a while instead
			 * of spinning on it.
			 */
			log_warning("could not accept control connection: %s; pausing for %d ms",
				    strerror(errno), ACCEPT_PAUSE_MS);
			if (loop_mod_fd(loop, fd, 0) == 0)
				loop_timer_in(cs->resume, ACCEPT_PAUSE_MS);
			return;
		}
		log_warning("could not accept control connection: %s", strerror(errno));
		return;
	}
}

/* ---- the socket file ------------------------------------------------------ */

/* mkdir -p of the directory part of path, new directories mode 0755. */
static int
make_parent(const char *path, char *err, size_t errlen)
{
	char *dir = strdup(path);
	char *slash;
	int rc = 0;

	if (!dir) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	slash = strrchr(dir, '/');
	if (!slash || slash == dir) {
		free(dir);
		return 0;
	}
	*slash = '\0';
	for (char *p = dir + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char saved = *p;

		*p = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
			snprintf(err, errlen,
				 "could not create directory \"%s\" for the control socket: %s",
				 dir, strerror(errno));
			rc = -1;
			break;
		}
		*p = saved;
		if (saved == '\0')
			break;
	}
	free(dir);
	return rc;
}

static int
bind_0600(int fd, const struct sockaddr_un *sun)
{
	mode_t old = umask(0177);
	int rc = bind(fd, (const struct sockaddr *)sun, sizeof(*sun));
	int saved = errno;

	umask(old);
	errno = saved;
	return rc;
}

/*
 * Is anyone listening on the socket file? Returns 1 yes, 0 no (a stale
 * file), -1 on error with errno set.
 */
static int
probe_live(const struct sockaddr_un *sun)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int rc, saved;

	if (fd < 0)
		return -1;
	rc = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
	saved = errno;
	close(fd);
	if (rc == 0)
		return 1;
	/* A full backlog: someone listens, and is busy. */
	if (saved == EAGAIN)
		return 1;
	if (saved == ECONNREFUSED || saved == ENOENT)
		return 0;
	errno = saved;
	return -1;
}

/* Binds cs->fd to path, replacing a stale socket file. */
static int
bind_path(struct ctl_server *cs, const struct sockaddr_un *sun, char *err,
	  size_t errlen)
{
	struct stat st;
	int live;

	if (bind_0600(cs->fd, sun) == 0)
		return 0;
	if (errno != EADDRINUSE)
		goto fail;
	if (lstat(cs->path, &st) < 0) {
		if (errno != ENOENT)
			goto fail;
	} else if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen,
			 "could not create control socket \"%s\": a file that is not a socket is in the way",
			 cs->path);
		return -1;
	}
	live = probe_live(sun);
	if (live < 0) {
		snprintf(err, errlen, "could not check control socket \"%s\": %s",
			 cs->path, strerror(errno));
		return -1;
	}
	if (live) {
		snprintf(err, errlen,
			 "control socket \"%s\" is in use by another pgvigil",
			 cs->path);
		return -1;
	}
	log_info("removing stale control socket \"%s\"", cs->path);
	if (unlink(cs->path) < 0 && errno != ENOENT)
		goto fail;
	if (bind_0600(cs->fd, sun) == 0)
		return 0;
fail:
	snprintf(err, errlen, "could not bind control socket \"%s\": %s",
		 cs->path, strerror(errno));
	return -1;
}

/* ---- lifecycle ---------------------------------------------------------- */

struct ctl_server *
ctl_server_new(struct loop *loop, const char *path, ctl_handler h, void *arg,
	       char *err, size_t errlen)
{
	struct ctl_server *cs;
	struct sockaddr_un sun;
	struct stat st;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (!path || !path[0] || strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen,
			 "invalid control socket path \"%s\": it must have 1 to %zu bytes",
			 path ? path : "", sizeof(sun.sun_path) - 1);
		return NULL;
	}
	memcpy(sun.sun_path, path, strlen(path));
	cs = calloc(1, sizeof(*cs));
	if (!cs || !(cs->path = strdup(path))) {
		snprintf(err, errlen, "out of memory");
		free(cs);
		return NULL;
	}
	cs->loop = loop;
	cs->fd = -1;
	cs->handler = h;
	cs->arg = arg;
	cs->euid = geteuid();
	/*
	 * The name of our own uid, for the who string: looked up here, at
	 * start-up, because a lookup can block (NSS may ask a directory
	 * server) and the loop must not.
	 */
	{
		struct passwd pw, *res = NULL;
		char buf[1024];

		if (getpwuid_r(cs->euid, &pw, buf, sizeof(buf), &res) == 0 && res &&
		    strlen(res->pw_name) < sizeof(cs->euser))
			memcpy(cs->euser, res->pw_name, strlen(res->pw_name) + 1);
	}
	cs->timeout_ms = CTL_TIMEOUT_MS;
	cs->resume = loop_timer_new(loop, on_resume, cs);
	if (!cs->resume) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (make_parent(path, err, errlen) < 0)
		goto fail;
	cs->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (cs->fd < 0) {
		snprintf(err, errlen, "could not create control socket: %s",
			 strerror(errno));
		goto fail;
	}
	if (bind_path(cs, &sun, err, errlen) < 0)
		goto fail;
	if (lstat(path, &st) == 0) {
		cs->dev = st.st_dev;
		cs->ino = st.st_ino;
		cs->created = true;
	}
	if (chmod(path, 0600) < 0) {
		snprintf(err, errlen, "could not set mode 0600 on control socket \"%s\": %s",
			 path, strerror(errno));
		goto fail;
	}
	if (listen(cs->fd, BACKLOG) < 0) {
		snprintf(err, errlen, "could not listen on control socket \"%s\": %s",
			 path, strerror(errno));
		goto fail;
	}
	if (loop_add_fd(loop, cs->fd, EPOLLIN, on_listen, cs) < 0) {
		snprintf(err, errlen, "could not watch control socket \"%s\": %s",
			 path, strerror(errno));
		goto fail;
	}
	log_info("listening for control requests on \"%s\"", path);
	return cs;
fail:
	ctl_server_free(cs);
	return NULL;
}

void
ctl_server_free(struct ctl_server *cs)
{
	struct stat st;

	if (!cs)
		return;
	while (cs->clients)
		client_free(cs->clients);
	if (cs->fd >= 0) {
		loop_del_fd(cs->loop, cs->fd);
		close(cs->fd);
	}
	/* Someone may have replaced the file since: leave theirs alone. */
	if (cs->created && lstat(cs->path, &st) == 0 && st.st_dev == cs->dev &&
	    st.st_ino == cs->ino)
		unlink(cs->path);
	loop_timer_free(cs->resume);
	free(cs->path);
	free(cs);
}

void
ctl_server_publish(struct ctl_server *cs, const char *text, size_t len)
{
	struct ctl_client *c, *next;

	if (!cs || len == 0)
		return;
	for (c = cs->clients; c; c = next) {
		size_t unread;

		next = c->next;
		if (!c->follow)
			continue;
		unread = c->replylen - c->replyoff;
		if (unread + len > CTL_FOLLOW_BUFFER) {
			log_warning("dropped follower pid %d: more than %d bytes it has not read",
				    (int)c->pid, CTL_FOLLOW_BUFFER);
			client_free(c);
			continue;
		}
		if (c->replyoff > 0) {
			memmove(c->reply, c->reply + c->replyoff, unread);
			c->replyoff = 0;
			c->replylen = unread;
		}
		if (c->replylen + len > c->replycap) {
			size_t cap = c->replycap ? c->replycap : 4096;
			char *nb;

			while (cap < c->replylen + len)
				cap *= 2;
			if (cap > CTL_FOLLOW_BUFFER)
				cap = CTL_FOLLOW_BUFFER;
			nb = realloc(c->reply, cap);
			if (!nb) {
				log_error("dropped follower pid %d: out of memory", (int)c->pid);
				client_free(c);
				continue;
			}
			c->reply = nb;
			c->replycap = cap;
		}
		memcpy(c->reply + c->replylen, text, len);
		c->replylen += len;
		if (!c->want_out)
			flush_reply(c);
	}
}

size_t
ctl_server_followers(const struct ctl_server *cs)
{
	return cs ? cs->nfollowers : 0;
}

void
ctl_server_set_timeout_ms(struct ctl_server *cs, uint64_t ms)
{
	cs->timeout_ms = ms;
}
