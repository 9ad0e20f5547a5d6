/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * state.c - atomic, checksummed state files and the state directory lock.
 *
 * File format (text, so an operator can read it):
 *
 *     pgvigil-state 1
 *     key=value
 *     ...
 *     sha256 <64 hex digits over every byte above this line>
 *
 * A crash during a write leaves either the old file or the new one, never a
 * mix: the new content goes to a temporary file in the same directory,
 * which is fsync'd, renamed over the old name, and then the directory is
 * fsync'd so the rename itself is durable. The reader refuses anything it
 * cannot prove whole: a missing trailer (truncation), a checksum mismatch
 * (corruption), a version it does not know. The caller decides what such a
 * refusal means; for votes and terms it means "do not start".
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/state.h"

#define STATE_MAX_FILE (1024 * 1024)
#define STATE_MAX_KEY 63
#define STATE_MAX_VALUE 1023
#define STATE_MAGIC "pgvigil-state"

struct kv {
	char *key;		/* owned */
	char *value;		/* owned */
};

struct state {
	struct kv *kv;		/* owned array */
	size_t n, cap;
};

struct state *
state_new(void)
{
	return calloc(1, sizeof(struct state));
}

void
state_free(struct state *st)
{
	if (!st)
		return;
	for (size_t i = 0; i < st->n; i++) {
		free(st->kv[i].key);
		free(st->kv[i].value);
	}
	free(st->kv);
	free(st);
}

static int
valid_key(const char *k)
{
	size_t n = strlen(k);

	if (n == 0 || n > STATE_MAX_KEY)
		return 0;
	for (; *k; k++)
		if (!islower((unsigned char)*k) && !isdigit((unsigned char)*k) &&
		    *k != '_' && *k != '.')
			return 0;
	return 1;
}

static int
valid_value(const char *v)
{
	if (strlen(v) > STATE_MAX_VALUE)
		return 0;
	for (; *v; v++)
		if ((unsigned char)*v < 0x20 || *v == 0x7f)
			return 0;
	return 1;
}

int
state_set(struct state *st, const char *key, const char *value)
{
	char *v;

	if (!valid_key(key) || !valid_value(value)) {
		errno = EINVAL;
		return -1;
	}
	v = strdup(value);
	if (!v)
		return -1;
	for (size_t i = 0; i < st->n; i++) {
		if (strcmp(st->kv[i].key, key) == 0) {
			free(st->kv[i].value);
			st->kv[i].value = v;
			return 0;
		}
	}
	if (st->n == st->cap) {
		size_t cap = st->cap ? st->cap * 2 : 8;
		struct kv *n = realloc(st->kv, cap * sizeof(*n));

		if (!n) {
			free(v);
			return -1;
		}
		st->kv = n;
		st->cap = cap;
	}
	st->kv[st->n].key = strdup(key);
	if (!st->kv[st->n].key) {
		free(v);
		return -1;
	}
	st->kv[st->n++].value = v;
	return 0;
}

int
state_set_u64(struct state *st, const char *key, uint64_t v)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%" PRIu64, v);
	return state_set(st, key, buf);
}

const char *
state_get(const struct state *st, const char *key)
{
	for (size_t i = 0; i < st->n; i++)
		if (strcmp(st->kv[i].key, key) == 0)
			return st->kv[i].value;
	return NULL;
}

int
state_get_u64(const struct state *st, const char *key, uint64_t *v)
{
	const char *s = state_get(st, key);
	char *end;

	if (!s || !isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	unsigned long long x = strtoull(s, &end, 10);

	if (errno || *end != '\0')
		return -1;
	*v = x;
	return 0;
}

size_t
state_count(const struct state *st)
{
	return st->n;
}

/* SHA-256 of buf as 64 lower-case hex digits into hex[65]. */
static int
sha256_hex(const char *buf, size_t len, char hex[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (!EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
		return -1;
	for (unsigned i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	return 0;
}

static int
write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

int
state_write(const struct state *st, const char *dir, const char *name,
	    char *err, size_t errlen)
{
	char tmp[256], hex[65];
	char *body = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&body, &len);
	int dfd = -1, fd = -1, rc = -1;

	if (!m) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	fprintf(m, "%s %d\n", STATE_MAGIC, STATE_FORMAT_VERSION);
	for (size_t i = 0; i < st->n; i++)
		fprintf(m, "%s=%s\n", st->kv[i].key, st->kv[i].value);
	if (fclose(m) != 0 || sha256_hex(body, len, hex) < 0) {
		snprintf(err, errlen, "could not format state file \"%s/%s\"", dir, name);
		free(body);
		return -1;
	}
	snprintf(tmp, sizeof(tmp), ".%s.tmp.%d", name, (int)getpid());

	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		snprintf(err, errlen, "could not open state directory \"%s\": %s",
			 dir, strerror(errno));
		goto out;
	}
	unlinkat(dfd, tmp, 0);
	fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "could not create \"%s/%s\": %s", dir, tmp,
			 strerror(errno));
		goto out;
	}
	char trailer[80];

	snprintf(trailer, sizeof(trailer), "sha256 %s\n", hex);
	if (write_all(fd, body, len) < 0 ||
	    write_all(fd, trailer, strlen(trailer)) < 0 || fsync(fd) < 0) {
		snprintf(err, errlen, "could not write \"%s/%s\": %s", dir, tmp,
			 strerror(errno));
		goto out_unlink;
	}
	if (close(fd) < 0) {
		fd = -1;
		snprintf(err, errlen, "could not write \"%s/%s\": %s", dir, tmp,
			 strerror(errno));
		goto out_unlink;
	}
	fd = -1;
	if (renameat(dfd, tmp, dfd, name) < 0) {
		snprintf(err, errlen, "could not rename \"%s/%s\" to \"%s\": %s",
			 dir, tmp, name, strerror(errno));
		goto out_unlink;
	}
	/* The rename is durable only once the directory is. */
	if (fsync(dfd) < 0) {
		snprintf(err, errlen, "could not fsync state directory \"%s\": %s",
			 dir, strerror(errno));
		goto out;
	}
	rc = 0;
	goto out;
out_unlink:
	unlinkat(dfd, tmp, 0);
out:
	if (fd >= 0)
		close(fd);
	if (dfd >= 0)
		close(dfd);
	free(body);
	return rc;
}

/* Parses an intact file image; returns 0 or -1 with err set. */
static int
parse_image(char *buf, size_t len, const char *path, struct state **out,
	    char *err, size_t errlen)
{
	char hex[65];
	char *trailer, *line, *save = NULL;
	int version;
	struct state *st;

	if (len == 0 || buf[len - 1] != '\n') {
		snprintf(err, errlen, "state file \"%s\" is truncated: it does not end with a complete line",
			 path);
		return -1;
	}
	buf[len - 1] = '\0';
	trailer = strrchr(buf, '\n');
	if (!trailer || strncmp(trailer + 1, "sha256 ", 7) != 0) {
		snprintf(err, errlen, "state file \"%s\" is truncated: its checksum line is missing",
			 path);
		return -1;
	}
	if (sha256_hex(buf, (size_t)(trailer + 1 - buf), hex) < 0 ||
	    strlen(trailer + 8) != 64 || strcmp(trailer + 8, hex) != 0) {
		snprintf(err, errlen, "state file \"%s\" is corrupt: its checksum does not match its content",
			 path);
		return -1;
	}
	*trailer = '\0';
	line = strtok_r(buf, "\n", &save);
	if (!line || sscanf(line, STATE_MAGIC " %d", &version) != 1) {
		snprintf(err, errlen, "file \"%s\" is not a pgvigil state file", path);
		return -1;
	}
	if (version != STATE_FORMAT_VERSION) {
		snprintf(err, errlen,
			 "state file \"%s\" has format version %d; this pgvigil reads version %d",
			 path, version, STATE_FORMAT_VERSION);
		return -1;
	}
	st = state_new();
	if (!st) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
		char *eq = strchr(line, '=');

		if (!eq) {
			snprintf(err, errlen, "state file \"%s\" is corrupt: bad line \"%.40s\"",
				 path, line);
			state_free(st);
			return -1;
		}
		*eq = '\0';
		if (state_set(st, line, eq + 1) < 0) {
			snprintf(err, errlen, "state file \"%s\" is corrupt: bad entry \"%.40s\"",
				 path, line);
			state_free(st);
			return -1;
		}
	}
	*out = st;
	return 0;
}

int
state_read(const char *dir, const char *name, struct state **out, char *err,
	   size_t errlen)
{
	char path[512];
	char *buf;
	size_t len = 0;
	int fd, rc;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 1;
		snprintf(err, errlen, "could not open state file \"%s\": %s", path,
			 strerror(errno));
		return -1;
	}
	buf = malloc(STATE_MAX_FILE + 1);
	if (!buf) {
		close(fd);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (;;) {
		ssize_t n = read(fd, buf + len, STATE_MAX_FILE + 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "could not read state file \"%s\": %s",
				 path, strerror(errno));
			close(fd);
			free(buf);
			return -1;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > STATE_MAX_FILE) {
			snprintf(err, errlen, "state file \"%s\" is too large", path);
			close(fd);
			free(buf);
			return -1;
		}
	}
	close(fd);
	rc = parse_image(buf, len, path, out, err, errlen);
	free(buf);
	return rc;
}

static int
mkdir_p(const char *dir, char *err, size_t errlen)
{
	char path[512];
	size_t n = strlen(dir);

	if (n == 0 || n >= sizeof(path)) {
		snprintf(err, errlen, "invalid state directory \"%s\"", dir);
		return -1;
	}
	memcpy(path, dir, n + 1);
	for (char *p = path + 1; ; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;

		*p = '\0';
		if (mkdir(path, 0700) < 0 && errno != EEXIST) {
			snprintf(err, errlen, "could not create directory \"%s\": %s",
				 path, strerror(errno));
			return -1;
		}
		*p = c;
		if (c == '\0')
			break;
	}
	return 0;
}

int
state_dir_lock(const char *dir, char *err, size_t errlen)
{
	struct stat sb;
	char path[512];
	int fd;

	if (mkdir_p(dir, err, errlen) < 0)
		return -1;
	if (stat(dir, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
		snprintf(err, errlen, "state directory \"%s\" is not a directory", dir);
		return -1;
	}
	if (sb.st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(err, errlen,
			 "state directory \"%s\" is writable by group or others; chmod 0700 it",
			 dir);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/pgvigil.lock", dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "could not open lock file \"%s\": %s", path,
			 strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		snprintf(err, errlen, errno == EWOULDBLOCK
			 ? "state directory \"%s\" is in use by another pgvigil"
			 : "could not lock state directory \"%s\"", dir);
		close(fd);
		return -1;
	}
	return fd;
}
