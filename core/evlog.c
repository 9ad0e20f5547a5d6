/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * evlog.c - the event history: a ring in memory, an append-only file on
 * disk, and the line format both share (see evlog.h).
 *
 * Invariants:
 * - the ring holds at most cap events, oldest overwritten first; nothing
 *   is allocated per event (the ring is allocated once);
 * - the file grows by whole lines, each written with one write(2) on an
 *   O_APPEND descriptor, so a crash leaves at most one torn last line,
 *   which the next start skips as unparsable;
 * - events.log never grows past file_max: before a line would take it
 *   there, it is renamed to events.log.1 (replacing the older one) and a
 *   new events.log is started. The disk holds at most twice file_max.
 *
 * Why a text file and not the state file's fsync'd write: the history is
 * for people, nothing decides on it, and an event must never wait for a
 * disk. Losing the last lines in a power cut is acceptable; a daemon that
 * stalls on fsync while failing over is not.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/evlog.h"
#include "core/log.h"

struct evlog {
	char *path;		/* owned: dir/events.log */
	char *path1;		/* owned: dir/events.log.1 */
	int fd;			/* events.log, -1 when it could not be opened */
	uint64_t size;		/* of events.log */
	size_t file_max;
	bool write_failed;	/* a warning was logged; cleared by a success */
	int64_t self;
	struct evlog_event *ring;	/* owned, cap entries */
	size_t cap, head, n;	/* head: index of the oldest */
	void (*listener)(void *arg, const char *line, size_t len);
	void *listener_arg;	/* borrowed */
};

/* ---- lines ---------------------------------------------------------- */

int
evlog_format(const struct evlog_event *e, char *buf, size_t len)
{
	struct tm tm;
	time_t secs = (time_t)(e->wall_ms / 1000);
	char stamp[32];
	int n;

	if (!gmtime_r(&secs, &tm))
		return -1;
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(buf, len, "%s.%03uZ %" PRIu64 " %" PRId64 " %s%s%s\n", stamp,
		     (unsigned)(e->wall_ms % 1000), e->mono_ms, e->peer, e->token,
		     e->text[0] ? " " : "", e->text);
	if (n < 0 || (size_t)n >= len)
		return -1;
	return n;
}

static int
parse_u64(const char **p, uint64_t *out)
{
	char *end;

	if (**p < '0' || **p > '9')
		return -1;
	errno = 0;
	*out = strtoull(*p, &end, 10);
	if (errno || *end != ' ')
		return -1;
	*p = end + 1;
	return 0;
}

int
evlog_parse(const char *line, struct evlog_event *e)
{
	struct tm tm;
	const char *p = line, *tok;
	unsigned ms;
	int used = 0;
	size_t len;
	time_t secs;
	uint64_t peer;

	memset(e, 0, sizeof(*e));
	memset(&tm, 0, sizeof(tm));
	if (sscanf(p, "%4d-%2d-%2dT%2d:%2d:%2d.%3uZ%n", &tm.tm_year, &tm.tm_mon,
		   &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms, &used) != 7 ||
	    used != 24 || p[24] != ' ' || ms > 999)
		return -1;
	used++;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	secs = timegm(&tm);
	if (secs < 0)
		return -1;
	e->wall_ms = (uint64_t)secs * 1000u + ms;
	p += used;
	if (parse_u64(&p, &e->mono_ms) < 0 || parse_u64(&p, &peer) < 0 ||
	    peer > INT64_MAX)
		return -1;
	e->peer = (int64_t)peer;
	tok = p;
	len = strcspn(tok, " \n");
	if (len == 0 || len >= sizeof(e->token))
		return -1;
	for (size_t i = 0; i < len; i++)
		if (!((tok[i] >= 'a' && tok[i] <= 'z') || (tok[i] >= '0' && tok[i] <= '9') ||
		      tok[i] == '-'))
			return -1;
	memcpy(e->token, tok, len);
	p = tok + len;
	if (*p == ' ')
		p++;
	len = strcspn(p, "\n");
	if (len >= sizeof(e->text))
		len = sizeof(e->text) - 1;
	memcpy(e->text, p, len);
	e->text[len] = '\0';
	return 0;
}

int
evlog_next_field(const char **pp, const char **key, size_t *klen,
		 const char **val, size_t *vlen)
{
	const char *p = *pp;

	for (;;) {
		const char *eq, *end;

		while (*p == ' ')
			p++;
		if (!*p) {
			*pp = p;
			return 0;
		}
		end = p + strcspn(p, " =");
		if (*end != '=' || end == p) {
			/* a word without '=': not a field */
			p = end + strcspn(end, " ");
			continue;
		}
		eq = end;
		*key = p;
		*klen = (size_t)(eq - p);
		if (eq[1] == '"') {
			const char *q = strchr(eq + 2, '"');

			*val = eq + 2;
			*vlen = q ? (size_t)(q - *val) : strlen(*val);
			p = q ? q + 1 : *val + *vlen;
		} else {
			*val = eq + 1;
			*vlen = strcspn(*val, " ");
			p = *val + *vlen;
		}
		*pp = p;
		return 1;
	}
}

const char *
evlog_field(const char *text, const char *key, char *buf, size_t len)
{
	size_t klen = strlen(key), kl, vl;
	const char *p = text, *k, *v;

	while (evlog_next_field(&p, &k, &kl, &v, &vl) == 1) {
		if (kl != klen || memcmp(k, key, klen) != 0)
			continue;
		if (len == 0)
			return NULL;
		if (vl >= len)
			vl = len - 1;
		memcpy(buf, v, vl);
		buf[vl] = '\0';
		return buf;
	}
	return NULL;
}

/* ---- the file ------------------------------------------------------- */

static void
load_file(struct evlog *ev, const char *path)
{
	FILE *f = fopen(path, "re");
	char line[EVLOG_LINE_MAX + 2];
	struct evlog_event e;

	if (!f) {
		if (errno != ENOENT)
			log_warning("could not read event history \"%s\": %s", path,
				    strerror(errno));
		return;
	}
	while (fgets(line, sizeof(line), f)) {
		size_t len = strlen(line);

		if (len && line[len - 1] != '\n') {
			/* longer than any line we write: skip the rest of it */
			int c;

			while ((c = fgetc(f)) != EOF && c != '\n')
				;
			/* without its newline: torn by a crash */
			continue;
		}
		if (evlog_parse(line, &e) == 0) {
			size_t slot = (ev->head + ev->n) % ev->cap;

			ev->ring[slot] = e;
			if (ev->n < ev->cap)
				ev->n++;
			else
				ev->head = (ev->head + 1) % ev->cap;
		}
	}
	fclose(f);
}

/*
 * A last line without its newline was torn by a crash: it is cut off, so
 * that it is not read back as a shorter event and the next line starts
 * clean.
 */
static void
cut_torn_line(struct evlog *ev)
{
	char buf[EVLOG_LINE_MAX];
	uint64_t from;
	ssize_t n;

	if (ev->size == 0)
		return;
	from = ev->size > sizeof(buf) ? ev->size - sizeof(buf) : 0;
	n = pread(ev->fd, buf, (size_t)(ev->size - from), (off_t)from);
	if (n <= 0 || (uint64_t)n != ev->size - from || buf[n - 1] == '\n')
		return;
	while (n > 0 && buf[n - 1] != '\n')
		n--;
	if (ftruncate(ev->fd, (off_t)(from + (uint64_t)n)) == 0)
		ev->size = from + (uint64_t)n;
}

static int
open_file(struct evlog *ev)
{
	struct stat st;

	ev->fd = open(ev->path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (ev->fd < 0)
		return -1;
	ev->size = fstat(ev->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
	cut_torn_line(ev);
	return 0;
}

static void
write_failed(struct evlog *ev, const char *what)
{
	if (!ev->write_failed)
		log_warning("could not %s event history \"%s\": %s; events are kept in memory only until it works again",
			    what, ev->path, strerror(errno));
	ev->write_failed = true;
}

static void
append(struct evlog *ev, const char *line, size_t len)
{
	ssize_t n;

	if (ev->fd >= 0 && ev->size > 0 && ev->size + len > ev->file_max) {
		close(ev->fd);
		ev->fd = -1;
		if (rename(ev->path, ev->path1) < 0) {
			write_failed(ev, "rotate");
			/* start over rather than grow without bound */
			if (unlink(ev->path) < 0 && errno != ENOENT)
				return;
		}
	}
	if (ev->fd < 0 && open_file(ev) < 0) {
		write_failed(ev, "open");
		return;
	}
	do
		n = write(ev->fd, line, len);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		write_failed(ev, "write");
		return;
	}
	ev->size += (uint64_t)n;
	ev->write_failed = false;
}

/* ---- the history ---------------------------------------------------- */

struct evlog *
evlog_new(const char *dir, int64_t self, size_t ring_cap, size_t file_max,
	  char *err, size_t errlen)
{
	struct evlog *ev = calloc(1, sizeof(*ev));

	if (!ev) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	ev->fd = -1;
	ev->self = self;
	ev->cap = ring_cap ? ring_cap : EVLOG_RING;
	ev->file_max = file_max ? file_max : EVLOG_FILE_MAX;
	ev->ring = calloc(ev->cap, sizeof(*ev->ring));
	if (!ev->ring || asprintf(&ev->path, "%s/%s", dir, EVLOG_FILE) < 0 ||
	    asprintf(&ev->path1, "%s/%s.1", dir, EVLOG_FILE) < 0) {
		ev->path = ev->path1 = NULL;
		snprintf(err, errlen, "out of memory");
		evlog_free(ev);
		return NULL;
	}
	load_file(ev, ev->path1);
	load_file(ev, ev->path);
	if (open_file(ev) < 0) {
		snprintf(err, errlen, "could not open event history \"%s\": %s",
			 ev->path, strerror(errno));
		evlog_free(ev);
		return NULL;
	}
	return ev;
}

void
evlog_free(struct evlog *ev)
{
	if (!ev)
		return;
	if (ev->fd >= 0)
		close(ev->fd);
	free(ev->ring);
	free(ev->path);
	free(ev->path1);
	free(ev);
}

void
evlog_set_listener(struct evlog *ev,
		   void (*fn)(void *arg, const char *line, size_t len), void *arg)
{
	ev->listener = fn;
	ev->listener_arg = arg;
}

void
evlog_add(struct evlog *ev, uint64_t wall_ms, uint64_t mono_ms,
	  const char *token, const char *text)
{
	size_t slot = (ev->head + ev->n) % ev->cap;
	struct evlog_event *e = &ev->ring[slot];
	char line[EVLOG_LINE_MAX];
	size_t len;
	int n;

	if (ev->n < ev->cap)
		ev->n++;
	else
		ev->head = (ev->head + 1) % ev->cap;
	e->wall_ms = wall_ms;
	e->mono_ms = mono_ms;
	e->peer = ev->self;
	len = strlen(token);
	if (len >= sizeof(e->token))
		len = sizeof(e->token) - 1;
	memcpy(e->token, token, len);
	e->token[len] = '\0';
	len = strlen(text);
	if (len >= sizeof(e->text))
		len = sizeof(e->text) - 1;
	memcpy(e->text, text, len);
	e->text[len] = '\0';
	/* a line break inside would make two lines of one event */
	for (char *p = e->text; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	n = evlog_format(e, line, sizeof(line));
	if (n < 0)
		return;
	append(ev, line, (size_t)n);
	if (ev->listener)
		ev->listener(ev->listener_arg, line, (size_t)n);
}

void
evlog_sink(void *arg, uint64_t wall_ms, const char *token, const char *text)
{
	evlog_add(arg, wall_ms, clock_now_ms(), token, text);
}

size_t
evlog_count(const struct evlog *ev)
{
	return ev ? ev->n : 0;
}

const struct evlog_event *
evlog_get(const struct evlog *ev, size_t i)
{
	if (!ev || i >= ev->n)
		return NULL;
	return &ev->ring[(ev->head + i) % ev->cap];
}

int
evlog_request(const struct evlog *ev, const char *request, FILE *out)
{
	uint64_t since = 0, count = UINT64_MAX;
	bool follow = false;
	const char *p = request;
	size_t first = 0, n = evlog_count(ev);
	char line[EVLOG_LINE_MAX];

	if (strncmp(p, "events", 6) != 0 || (p[6] != '\0' && p[6] != ' '))
		goto bad;
	p += 6;
	while (*p == ' ') {
		char *end;

		p++;
		if (strncmp(p, "n=", 2) == 0 && p[2] >= '0' && p[2] <= '9') {
			count = strtoull(p + 2, &end, 10);
			p = end;
		} else if (strncmp(p, "since=", 6) == 0 && p[6] >= '0' && p[6] <= '9') {
			since = strtoull(p + 6, &end, 10);
			p = end;
		} else if (strncmp(p, "follow", 6) == 0 && (p[6] == ' ' || !p[6])) {
			follow = true;
			p += 6;
		} else {
			goto bad;
		}
		if (*p && *p != ' ')
			goto bad;
	}
	if (*p)
		goto bad;
	while (first < n && evlog_get(ev, first)->wall_ms < since)
		first++;
	if (n - first > count)
		first = n - (size_t)count;
	for (size_t i = first; i < n; i++) {
		int len = evlog_format(evlog_get(ev, i), line, sizeof(line));

		if (len > 0)
			fwrite(line, 1, (size_t)len, out);
	}
	return follow ? 1 : 0;
bad:
	fprintf(out, "invalid events request \"%.64s\"\nhint: events [n=COUNT] [since=EPOCH_MS] [follow]",
		request);
	return -1;
}

/* ---- failover timelines --------------------------------------------- */

uint64_t
evlog_elapsed(const struct evlog_event *a, const struct evlog_event *b)
{
	uint64_t dm, dw;

	dw = b->wall_ms > a->wall_ms ? b->wall_ms - a->wall_ms : 0;
	if (b->mono_ms < a->mono_ms)
		return dw;
	dm = b->mono_ms - a->mono_ms;
	/* A restart after a reboot: the monotonic clock began again. */
	if (dm > dw + 60000 || dw > dm + 60000)
		return dw;
	return dm;
}

static bool
is_token(const struct evlog_event *e, const char *t)
{
	return strcmp(e->token, t) == 0;
}

static int64_t
field_id(const struct evlog_event *e, const char *key)
{
	char buf[24];

	if (!evlog_field(e->text, key, buf, sizeof(buf)))
		return 0;
	return strtoll(buf, NULL, 10);
}

/* Steps that show a failover moving again after a block or a refusal. */
static bool
is_progress(const struct evlog_event *e)
{
	static const char *const steps[] = {
		"backend-fence-done", "candidate-chosen", "promote-started",
		"promote-done", "promote-verified", "follow-started",
	};

	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
		if (is_token(e, steps[i]))
			return true;
	return false;
}

size_t
evlog_timeline(const struct evlog_event *ev, size_t n, int *group,
	       struct evlog_failover *fo, size_t max)
{
	size_t nfo = 0;
	int open = -1;		/* the failover keyless events join by order */

	for (size_t i = 0; i < n; i++) {
		const struct evlog_event *e = &ev[i];
		char name[32];
		bool named = evlog_field(e->text, "failover", name, sizeof(name)) != NULL;
		bool starts = is_token(e, "failover-started") ||
			is_token(e, "failover-resumed");
		int g = -1;

		group[i] = -1;
		if (is_token(e, "daemon-started") || is_token(e, "daemon-stopping")) {
			if (open >= 0)
				fo[open].ended = true;
			open = -1;
			continue;
		}
		if (named)
			for (size_t k = 0; k < nfo; k++)
				if (strcmp(fo[k].name, name) == 0)
					g = (int)k;
		if (g < 0 && (starts || named)) {
			if (nfo == max)
				continue;
			g = (int)nfo++;
			memset(&fo[g], 0, sizeof(fo[g]));
			if (named)
				snprintf(fo[g].name, sizeof(fo[g].name), "%s", name);
			else
				snprintf(fo[g].name, sizeof(fo[g].name), "#%zu", nfo);
			fo[g].first = i;
			snprintf(fo[g].kind, sizeof(fo[g].kind), "failover");
			/* the history begins in the middle of it */
			if (!starts)
				open = g;
		}
		if (g < 0)
			g = open;
		if (g < 0)
			continue;
		if (starts) {
			/* another failover begins: the open one said nothing more */
			if (open >= 0 && open != g && !fo[open].outcome)
				fo[open].ended = true;
			/* a resumed failover goes on under its own name */
			fo[g].ended = false;
			fo[g].handed_to = 0;
			open = g;
			evlog_field(e->text, "kind", fo[g].kind, sizeof(fo[g].kind));
		}
		group[i] = g;
		fo[g].last = i;
		fo[g].nevents++;
		fo[g].duration_ms = evlog_elapsed(&ev[fo[g].first], e);
		if (!fo[g].old_primary && (starts || is_token(e, "failover-done")))
			fo[g].old_primary = field_id(e, "old");
		if (is_token(e, "promote-verified"))
			fo[g].new_primary = field_id(e, "backend");
		if (is_token(e, "failover-done")) {
			fo[g].new_primary = field_id(e, "new");
			fo[g].outcome = "done";
			if (open == g)
				open = -1;
		} else if (is_token(e, "coordinator-transfer")) {
			/* the rest is told by the peer it went to */
			fo[g].handed_to = field_id(e, "to");
			if (open == g)
				open = -1;
		} else if (is_token(e, "failover-blocked")) {
			fo[g].alarm = "blocked";
		} else if (is_token(e, "failover-refused")) {
			fo[g].alarm = "refused";
		} else if (is_progress(e)) {
			fo[g].alarm = NULL;
		}
	}
	for (size_t k = 0; k < nfo; k++) {
		if (fo[k].outcome)
			continue;
		if (fo[k].handed_to)
			fo[k].outcome = "handed-over";
		else if (fo[k].ended)
			fo[k].outcome = "unfinished";
		else if (fo[k].alarm)
			fo[k].outcome = fo[k].alarm;
		else
			fo[k].outcome = "running";
	}
	return nfo;
}
