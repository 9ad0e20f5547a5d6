/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_ctl.c - the JSON writer (structure, escaping, UTF-8, misuse) and the
 * control socket server: replies framed as "ok" / "error: ...", request
 * limits, timeouts, stale and live socket files, the socket's mode, peer
 * credentials, the bound on clients, slow readers, followers (the stream
 * of published text, its bounds), and clean release.
 *
 * The server runs on a real loop driven by loop_run_once; clients are
 * nonblocking sockets of the same process, except the one that must run
 * under another uid, which is a forked child.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/loop.h"
#include "ctl/ctl.h"
#include "ctl/json.h"

#define DEADLINE_MS 3000
#define BIG_REPLY (1024 * 1024)

/* ---- JSON ------------------------------------------------------------------ */

struct mem {
	char *buf;		/* owned */
	size_t len;
	FILE *f;		/* owned */
	struct json j;
};

static void
mem_open(struct mem *m)
{
	m->buf = NULL;
	m->len = 0;
	m->f = open_memstream(&m->buf, &m->len);
	assert_non_null(m->f);
	json_init(&m->j, m->f);
}

/* Closes the stream and returns json_finish's verdict. */
static int
mem_close(struct mem *m)
{
	int rc = json_finish(&m->j);

	assert_int_equal(fclose(m->f), 0);
	return rc;
}

static void
test_json_writes_nested_structure_with_commas(void **s)
{
	struct mem m;
	struct json *j = &m.j;

	(void)s;
	mem_open(&m);
	json_begin_object(j);
	json_key(j, "version");
	json_int(j, 1);
	json_key(j, "cluster");
	json_str(j, "sales");
	json_key(j, "coordinator");
	json_null(j);
	json_key(j, "peers");
	json_begin_array(j);
	for (int i = 1; i <= 2; i++) {
		json_begin_object(j);
		json_key(j, "id");
		json_int(j, i);
		json_key(j, "tilt");
		json_bool(j, i == 2);
		json_end_object(j);
	}
	json_end_array(j);
	json_key(j, "empty");
	json_begin_array(j);
	json_end_array(j);
	json_key(j, "none");
	json_begin_object(j);
	json_end_object(j);
	json_key(j, "list");
	json_begin_array(j);
	json_int(j, -1);
	json_str(j, "x");
	json_begin_array(j);
	json_null(j);
	json_end_array(j);
	json_end_array(j);
	json_end_object(j);
	assert_int_equal(mem_close(&m), 0);
	assert_string_equal(m.buf,
			    "{\"version\":1,\"cluster\":\"sales\",\"coordinator\":null,"
			    "\"peers\":[{\"id\":1,\"tilt\":false},{\"id\":2,\"tilt\":true}],"
			    "\"empty\":[],\"none\":{},\"list\":[-1,\"x\",[null]]}");
	free(m.buf);
}

static void
test_json_escapes_quotes_backslash_and_control_chars(void **s)
{
	struct mem m;

	(void)s;
	mem_open(&m);
	json_begin_object(&m.j);
	json_key(&m.j, "k\"ey");
	json_str(&m.j, "a\"b\\c/\n\t\r\x01\x1f\x7f end");
	json_end_object(&m.j);
	assert_int_equal(mem_close(&m), 0);
	assert_string_equal(m.buf,
			    "{\"k\\\"ey\":\"a\\\"b\\\\c/\\u000a\\u0009\\u000d"
			    "\\u0001\\u001f\\u007f end\"}");
	free(m.buf);
}

static void
test_json_keeps_valid_utf8_and_replaces_invalid_bytes(void **s)
{
	struct mem m;

	(void)s;
	mem_open(&m);
	json_begin_array(&m.j);
	/* e acute, euro sign, U+1F600: kept as they are. */
	json_str(&m.j, "\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
	/* A stray byte, an overlong '/', a surrogate, past U+10FFFF. */
	json_str(&m.j, "\xff|\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80");
	/* A sequence cut short by the end of the string. */
	json_str(&m.j, "x\xe2\x82");
	json_end_array(&m.j);
	assert_int_equal(mem_close(&m), 0);
	assert_string_equal(m.buf,
			    "[\"\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\","
			    "\"\\ufffd|\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd|"
			    "\\ufffd\\ufffd\\ufffd\\ufffd\","
			    "\"x\\ufffd\\ufffd\"]");
	free(m.buf);
}

static void
test_json_null_string_extreme_numbers_and_bools(void **s)
{
	struct mem m;

	(void)s;
	mem_open(&m);
	json_begin_array(&m.j);
	json_str(&m.j, NULL);
	json_str(&m.j, "");
	json_int(&m.j, INT64_MIN);
	json_int(&m.j, INT64_MAX);
	json_uint(&m.j, UINT64_MAX);
	json_uint(&m.j, 0);
	json_bool(&m.j, true);
	json_bool(&m.j, false);
	json_end_array(&m.j);
	assert_int_equal(mem_close(&m), 0);
	assert_string_equal(m.buf,
			    "[null,\"\",-9223372036854775808,9223372036854775807,"
			    "18446744073709551615,0,true,false]");
	free(m.buf);
}

static void
test_json_top_level_scalar_is_a_document(void **s)
{
	struct mem m;

	(void)s;
	mem_open(&m);
	json_str(&m.j, "alone");
	assert_int_equal(mem_close(&m), 0);
	assert_string_equal(m.buf, "\"alone\"");
	free(m.buf);
}

enum misuse {
	VALUE_WITHOUT_KEY,
	KEY_IN_ARRAY,
	KEY_AT_TOP,
	NULL_KEY,
	TWO_KEYS,
	KEY_WITHOUT_VALUE,
	WRONG_CLOSE,
	CLOSE_AT_TOP,
	UNCLOSED,
	TWO_DOCUMENTS,
	NOTHING,
	TOO_DEEP,
	MISUSE_COUNT,
};

static void
test_json_misuse_fails_finish_and_stops_output(void **s)
{
	(void)s;
	for (int u = 0; u < MISUSE_COUNT; u++) {
		struct mem m;
		struct json *j = &m.j;

		mem_open(&m);
		switch ((enum misuse)u) {
		case VALUE_WITHOUT_KEY:
			json_begin_object(j);
			json_int(j, 1);
			json_end_object(j);
			break;
		case KEY_IN_ARRAY:
			json_begin_array(j);
			json_key(j, "k");
			json_end_array(j);
			break;
		case KEY_AT_TOP:
			json_key(j, "k");
			break;
		case NULL_KEY:
			json_begin_object(j);
			json_key(j, NULL);
			break;
		case TWO_KEYS:
			json_begin_object(j);
			json_key(j, "a");
			json_key(j, "b");
			break;
		case KEY_WITHOUT_VALUE:
			json_begin_object(j);
			json_key(j, "a");
			json_end_object(j);
			break;
		case WRONG_CLOSE:
			json_begin_object(j);
			json_end_array(j);
			break;
		case CLOSE_AT_TOP:
			json_end_object(j);
			break;
		case UNCLOSED:
			json_begin_array(j);
			json_int(j, 1);
			break;
		case TWO_DOCUMENTS:
			json_begin_array(j);
			json_end_array(j);
			json_null(j);
			break;
		case NOTHING:
			break;
		case TOO_DEEP:
			for (int d = 0; d <= JSON_MAX_DEPTH; d++)
				json_begin_array(j);
			break;
		case MISUSE_COUNT:
			break;
		}
		/* After misuse nothing more is written (the two incomplete
		 * documents are not misuse yet: a value may still come). */
		if (u != NOTHING && u != UNCLOSED)
			json_str(j, "after");
		if (mem_close(&m) != -1)
			fail_msg("misuse %d was not reported (output \"%s\")", u, m.buf);
		if (strstr(m.buf, "after"))
			fail_msg("misuse %d: output went on (\"%s\")", u, m.buf);
		free(m.buf);
	}
}

static void
test_json_sixteen_levels_are_allowed(void **s)
{
	struct mem m;

	(void)s;
	mem_open(&m);
	for (int d = 0; d < JSON_MAX_DEPTH; d++)
		json_begin_array(&m.j);
	for (int d = 0; d < JSON_MAX_DEPTH; d++)
		json_end_array(&m.j);
	assert_int_equal(mem_close(&m), 0);
	assert_int_equal(strlen(m.buf), 2 * JSON_MAX_DEPTH);
	free(m.buf);
}

/* ---- control server: fixture ----------------------------------------------- */

struct fx {
	char dir[64];
	char path[128];
	struct loop *loop;		/* owned */
	struct ctl_server *cs;		/* owned */
	int calls;			/* handler invocations */
	char last[CTL_MAX_REQUEST + 1];	/* last request seen */
	char who[CTL_WHO_MAX];		/* who sent it */
	size_t lastlen;
};

/* The fake status producer. */
static int
fake_handler(const char *req, const char *who, FILE *out, void *arg)
{
	struct fx *fx = arg;

	snprintf(fx->who, sizeof(fx->who), "%s", who);

	fx->calls++;
	fx->lastlen = strlen(req);
	memcpy(fx->last, req, fx->lastlen + 1);
	if (strcmp(req, "status") == 0) {
		fputs("ID  ROLE         STATE\n 1  coordinator  up\n 2  standby      up\n", out);
		return 0;
	}
	if (strcmp(req, "status json") == 0) {
		struct json j;

		json_init(&j, out);
		json_begin_object(&j);
		json_key(&j, "version");
		json_int(&j, 1);
		json_end_object(&j);
		return json_finish(&j);
	}
	if (strcmp(req, "silent") == 0)
		return 0;
	if (strcmp(req, "follow") == 0) {
		fputs("hello\n", out);
		return CTL_FOLLOW;
	}
	if (strcmp(req, "fail") == 0)
		return -1;
	if (strcmp(req, "big") == 0) {
		for (int i = 0; i < BIG_REPLY / 64; i++)
			fprintf(out, "%063d\n", i);
		return 0;
	}
	fprintf(out, "unknown request \"%s\"\nhint: the requests are \"status\" and \"status json\"", req);
	return -1;
}

static int
setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	char err[256];

	assert_non_null(fx);
	strcpy(fx->dir, "/tmp/test_ctl.XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	snprintf(fx->path, sizeof(fx->path), "%s/pgvigil.sock", fx->dir);
	fx->loop = loop_new();
	assert_non_null(fx->loop);
	fx->cs = ctl_server_new(fx->loop, fx->path, fake_handler, fx, err, sizeof(err));
	if (!fx->cs)
		fail_msg("ctl_server_new: %s", err);
	*state = fx;
	return 0;
}

static int
remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	if (remove(path) < 0)
		fprintf(stderr, "could not remove \"%s\": %s\n", path, strerror(errno));
	return 0;
}

/* Removes the temporary tree whatever a test left in it. */
static void
remove_tree(const char *dir)
{
	nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static int
teardown(void **state)
{
	struct fx *fx = *state;

	ctl_server_free(fx->cs);
	loop_free(fx->loop);
	remove_tree(fx->dir);
	free(fx);
	return 0;
}

/* ---- control server: client side ------------------------------------------ */

static int
client_connect(const char *path)
{
	struct sockaddr_un sun;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	assert_true(strlen(path) < sizeof(sun.sun_path));
	strcpy(sun.sun_path, path);
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		fail_msg("connect %s: %s", path, strerror(errno));
	return fd;
}

static void
client_send(int fd, const void *data, size_t len)
{
	assert_int_equal(send(fd, data, len, MSG_NOSIGNAL), (ssize_t)len);
}

/*
 * Runs the loop and reads fd until the server closes it. Returns the
 * reply (owned, NUL-terminated; NULL-free replies only) and its length.
 */
static char *
client_read_all(struct fx *fx, int fd, size_t *lenp)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap + 1);
	uint64_t end = clock_now_ms() + DEADLINE_MS;

	assert_non_null(buf);
	for (;;) {
		ssize_t n;

		if (clock_now_ms() > end)
			fail_msg("no end of reply within %d ms (got %zu bytes)", DEADLINE_MS, len);
		assert_int_equal(loop_run_once(fx->loop, 5), 0);
		for (;;) {
			if (len == cap) {
				cap *= 2;
				buf = realloc(buf, cap + 1);
				assert_non_null(buf);
			}
			n = recv(fd, buf + len, cap - len, MSG_DONTWAIT);
			if (n <= 0)
				break;
			len += (size_t)n;
		}
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			break;
		assert_true(errno == EAGAIN);
	}
	buf[len] = '\0';
	if (lenp)
		*lenp = len;
	return buf;
}

/* One whole exchange: connect, send data, read the reply to the end. */
static char *
exchange(struct fx *fx, const void *data, size_t len)
{
	int fd = client_connect(fx->path);
	char *reply;

	if (len)
		client_send(fd, data, len);
	reply = client_read_all(fx, fd, NULL);
	close(fd);
	return reply;
}

static char *
request(struct fx *fx, const char *line)
{
	return exchange(fx, line, strlen(line));
}

/* Runs the loop for ms, however much happens. */
static void
run_for(struct fx *fx, uint64_t ms)
{
	uint64_t end = clock_now_ms() + ms;

	while (clock_now_ms() < end)
		assert_int_equal(loop_run_once(fx->loop, 5), 0);
}

/* ---- control server: tests ------------------------------------------------ */

static void
test_ctl_status_request_gets_ok_then_body(void **state)
{
	struct fx *fx = *state;
	char *r = request(fx, "status\n");

	assert_string_equal(r, "ok\nID  ROLE         STATE\n 1  coordinator  up\n 2  standby      up\n");
	assert_int_equal(fx->calls, 1);
	assert_string_equal(fx->last, "status");
	free(r);
	r = request(fx, "status json\n");
	assert_string_equal(r, "ok\n{\"version\":1}\n");
	free(r);
	r = request(fx, "silent\n");
	assert_string_equal(r, "ok\n");
	free(r);
}

/* The handler learns who asked, from the peer credentials. */
static void
test_ctl_handler_gets_the_clients_uid_and_pid(void **state)
{
	struct fx *fx = *state;
	char want[CTL_WHO_MAX];
	char *r = request(fx, "status\n");

	free(r);
	if (geteuid() == 0)
		snprintf(want, sizeof(want), "uid=0(root) pid=%d", (int)getpid());
	else
		snprintf(want, sizeof(want), " pid=%d", (int)getpid());
	if (geteuid() == 0)
		assert_string_equal(fx->who, want);
	else
		assert_non_null(strstr(fx->who, want));
	assert_int_equal(strncmp(fx->who, "uid=", 4), 0);
}

static void
test_ctl_handler_error_gets_error_line_then_hint(void **state)
{
	struct fx *fx = *state;
	char *r = request(fx, "frobnicate\n");

	assert_string_equal(r, "error: unknown request \"frobnicate\"\n"
			    "hint: the requests are \"status\" and \"status json\"\n");
	free(r);
}

static void
test_ctl_handler_error_without_text_says_request_failed(void **state)
{
	struct fx *fx = *state;
	char *r = request(fx, "fail\n");

	assert_string_equal(r, "error: request failed\n");
	free(r);
}

static void
test_ctl_crlf_and_end_of_input_end_a_request(void **state)
{
	struct fx *fx = *state;
	char *r = request(fx, "status\r\n");
	int fd;

	assert_string_equal(fx->last, "status");
	assert_true(strncmp(r, "ok\n", 3) == 0);
	free(r);

	/* "status" then shutdown(SHUT_WR), as `printf status | socat` does. */
	fd = client_connect(fx->path);
	client_send(fd, "status", 6);
	assert_int_equal(shutdown(fd, SHUT_WR), 0);
	r = client_read_all(fx, fd, NULL);
	close(fd);
	assert_true(strncmp(r, "ok\n", 3) == 0);
	assert_int_equal(fx->calls, 2);
	free(r);
}

static void
test_ctl_only_the_first_line_is_served(void **state)
{
	struct fx *fx = *state;
	char *r = request(fx, "status\nfrobnicate\n");

	assert_true(strncmp(r, "ok\n", 3) == 0);
	assert_int_equal(fx->calls, 1);
	assert_string_equal(fx->last, "status");
	free(r);
}

static void
test_ctl_request_too_long_is_refused(void **state)
{
	struct fx *fx = *state;
	char line[CTL_MAX_REQUEST + 2];
	char *r;

	/* CTL_MAX_REQUEST bytes and the newline: served. */
	memset(line, 'a', CTL_MAX_REQUEST);
	line[CTL_MAX_REQUEST] = '\n';
	r = exchange(fx, line, CTL_MAX_REQUEST + 1);
	assert_true(strncmp(r, "error: unknown request", 22) == 0);
	assert_int_equal(fx->lastlen, CTL_MAX_REQUEST);
	free(r);

	/* One byte more before the newline: refused, handler not called. */
	memset(line, 'a', CTL_MAX_REQUEST + 1);
	line[CTL_MAX_REQUEST + 1] = '\n';
	r = exchange(fx, line, CTL_MAX_REQUEST + 2);
	assert_string_equal(r, "error: request too long (at most 1024 bytes)\n");
	assert_int_equal(fx->calls, 1);
	free(r);

	/* Without any newline, the limit applies as soon as it is passed. */
	{
		char big[4 * CTL_MAX_REQUEST];

		memset(big, 'b', sizeof(big));
		r = exchange(fx, big, sizeof(big));
		assert_string_equal(r, "error: request too long (at most 1024 bytes)\n");
		free(r);
	}
	assert_int_equal(fx->calls, 1);
}

static void
test_ctl_nul_byte_in_request_is_refused(void **state)
{
	struct fx *fx = *state;
	char *r = exchange(fx, "sta\0tus\n", 8);

	assert_string_equal(r, "error: request contains a NUL byte\n");
	assert_int_equal(fx->calls, 0);
	free(r);
}

static void
test_ctl_silent_client_is_dropped_after_timeout(void **state)
{
	struct fx *fx = *state;
	uint64_t start;
	int fd_silent, fd_partial;
	char *r;

	ctl_server_set_timeout_ms(fx->cs, 150);
	start = clock_now_ms();
	fd_silent = client_connect(fx->path);
	fd_partial = client_connect(fx->path);
	client_send(fd_partial, "stat", 4);
	r = client_read_all(fx, fd_silent, NULL);
	assert_true(clock_now_ms() - start >= 150);
	assert_string_equal(r, "error: timed out waiting for the request\n");
	free(r);
	r = client_read_all(fx, fd_partial, NULL);
	assert_string_equal(r, "error: timed out waiting for the request\n");
	free(r);
	close(fd_silent);
	close(fd_partial);
	assert_int_equal(fx->calls, 0);

	/* A prompt client is still served. */
	r = request(fx, "status\n");
	assert_true(strncmp(r, "ok\n", 3) == 0);
	free(r);
}

static void
test_ctl_client_that_never_reads_its_reply_is_dropped(void **state)
{
	struct fx *fx = *state;
	size_t got = 0;
	char buf[65536];
	ssize_t n;
	int fd;

	/* A reply larger than the socket buffers, which nobody reads. */
	ctl_server_set_timeout_ms(fx->cs, 150);
	fd = client_connect(fx->path);
	client_send(fd, "big\n", 4);
	run_for(fx, 400);
	/* The server gave up: what it sent is there, then the end. */
	while ((n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
		got += (size_t)n;
	assert_true(n == 0 || (n < 0 && errno == ECONNRESET));
	assert_true(got > 0 && got < BIG_REPLY);
	close(fd);
}

static void
test_ctl_slow_reader_gets_the_whole_large_reply(void **state)
{
	struct fx *fx = *state;
	int fd = client_connect(fx->path);
	size_t len;
	char *r;

	client_send(fd, "big\n", 4);
	/* Let the server fill the socket and wait on EPOLLOUT. */
	run_for(fx, 50);
	r = client_read_all(fx, fd, &len);
	close(fd);
	assert_int_equal(len, 3 + BIG_REPLY);
	assert_true(strncmp(r, "ok\n", 3) == 0);
	assert_true(strncmp(r + 3 + BIG_REPLY - 64, "000000000000000000000000000000000000000000000000000000000016383\n", 64) == 0);
	free(r);
}

static void
test_ctl_client_leaving_early_does_not_disturb_the_server(void **state)
{
	struct fx *fx = *state;
	int fd;
	char *r;

	/* Connects and leaves without a word: the handler is not called. */
	fd = client_connect(fx->path);
	close(fd);
	run_for(fx, 30);
	assert_int_equal(fx->calls, 0);

	/* Asks and leaves before the reply. */
	fd = client_connect(fx->path);
	client_send(fd, "big\n", 4);
	close(fd);
	run_for(fx, 30);

	r = request(fx, "status\n");
	assert_true(strncmp(r, "ok\n", 3) == 0);
	free(r);
}

static void
test_ctl_clients_beyond_the_bound_get_an_error(void **state)
{
	struct fx *fx = *state;
	int fds[CTL_MAX_CLIENTS];
	int extra;
	char *r;

	for (int i = 0; i < CTL_MAX_CLIENTS; i++)
		fds[i] = client_connect(fx->path);
	extra = client_connect(fx->path);
	r = client_read_all(fx, extra, NULL);
	close(extra);
	assert_string_equal(r, "error: too many control connections, try again\n");
	free(r);

	/* The admitted ones are served, and free their slots when done. */
	for (int i = 0; i < CTL_MAX_CLIENTS; i++) {
		client_send(fds[i], "status\n", 7);
		r = client_read_all(fx, fds[i], NULL);
		assert_true(strncmp(r, "ok\n", 3) == 0);
		free(r);
		close(fds[i]);
	}
	assert_int_equal(fx->calls, CTL_MAX_CLIENTS);
	r = request(fx, "status\n");
	assert_true(strncmp(r, "ok\n", 3) == 0);
	free(r);
}

static void
test_ctl_socket_mode_is_0600_whatever_the_umask(void **state)
{
	struct fx *fx = *state;
	struct stat st;
	char err[256];
	mode_t old = umask(0);

	/* Replace the fixture's server by one created under umask 0. */
	ctl_server_free(fx->cs);
	fx->cs = ctl_server_new(fx->loop, fx->path, fake_handler, fx, err, sizeof(err));
	assert_int_equal(umask(old), 0);	/* restored after bind */
	if (!fx->cs)
		fail_msg("ctl_server_new: %s", err);
	assert_int_equal(lstat(fx->path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_uid, geteuid());
}

static void
test_ctl_missing_parent_directories_are_created(void **state)
{
	struct fx *fx = *state;
	struct ctl_server *cs;
	char path[192], err[256];
	struct stat st;

	snprintf(path, sizeof(path), "%s/run/pgvigil/ctl.sock", fx->dir);
	cs = ctl_server_new(fx->loop, path, fake_handler, fx, err, sizeof(err));
	if (!cs)
		fail_msg("ctl_server_new: %s", err);
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	snprintf(path, sizeof(path), "%s/run/pgvigil", fx->dir);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	ctl_server_free(cs);
}

static void
test_ctl_stale_socket_file_is_replaced(void **state)
{
	struct fx *fx = *state;
	struct sockaddr_un sun;
	char err[256];
	char *r;
	int fd;

	/* A socket file whose listener is gone, as after a crash. */
	ctl_server_free(fx->cs);
	fx->cs = NULL;
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strcpy(sun.sun_path, fx->path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(fd, 1), 0);
	close(fd);
	assert_int_equal(access(fx->path, F_OK), 0);

	fx->cs = ctl_server_new(fx->loop, fx->path, fake_handler, fx, err, sizeof(err));
	if (!fx->cs)
		fail_msg("ctl_server_new: %s", err);
	r = request(fx, "status\n");
	assert_true(strncmp(r, "ok\n", 3) == 0);
	free(r);
}

static void
test_ctl_second_server_on_a_live_socket_is_refused(void **state)
{
	struct fx *fx = *state;
	struct ctl_server *cs;
	char err[256], want[256];
	char *r;

	cs = ctl_server_new(fx->loop, fx->path, fake_handler, fx, err, sizeof(err));
	assert_null(cs);
	snprintf(want, sizeof(want), "control socket \"%s\" is in use by another pgvigil", fx->path);
	assert_string_equal(err, want);
	/* The first server's socket is untouched and still answers. */
	r = request(fx, "status\n");
	assert_true(strncmp(r, "ok\n", 3) == 0);
	free(r);
	/* The probe connection did not reach the handler. */
	assert_int_equal(fx->calls, 1);
}

static void
test_ctl_file_in_the_way_is_not_removed(void **state)
{
	struct fx *fx = *state;
	char path[192], err[256];
	struct stat st;
	FILE *f;

	snprintf(path, sizeof(path), "%s/not-a-socket", fx->dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("precious\n", f);
	fclose(f);
	assert_null(ctl_server_new(fx->loop, path, fake_handler, fx, err, sizeof(err)));
	assert_non_null(strstr(err, "is not a socket"));
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_size, 9);
}

static void
test_ctl_path_too_long_is_refused(void **state)
{
	struct fx *fx = *state;
	char path[200], err[256];

	memset(path, 'p', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	assert_null(ctl_server_new(fx->loop, path, fake_handler, fx, err, sizeof(err)));
	assert_non_null(strstr(err, "invalid control socket path"));
	assert_null(ctl_server_new(fx->loop, "", fake_handler, fx, err, sizeof(err)));
}

static void
test_ctl_free_removes_only_its_own_socket_file(void **state)
{
	struct fx *fx = *state;
	char err[256], moved[192];
	int fd;

	/* Clients still open at free are closed; they see the end. */
	fd = client_connect(fx->path);
	client_send(fd, "sta", 3);
	run_for(fx, 20);
	ctl_server_free(fx->cs);
	fx->cs = NULL;
	assert_int_equal(recv(fd, err, sizeof(err), MSG_DONTWAIT), 0);
	close(fd);
	assert_int_equal(access(fx->path, F_OK), -1);
	assert_int_equal(errno, ENOENT);

	/* A file put in place of ours after we started is left alone. */
	fx->cs = ctl_server_new(fx->loop, fx->path, fake_handler, fx, err, sizeof(err));
	assert_non_null(fx->cs);
	snprintf(moved, sizeof(moved), "%s/moved.sock", fx->dir);
	assert_int_equal(rename(fx->path, moved), 0);
	fd = open(fx->path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	ctl_server_free(fx->cs);
	fx->cs = NULL;
	assert_int_equal(access(fx->path, F_OK), 0);
}

struct child_done {
	int done;
	int status;
};

static void
on_child(struct loop *l, pid_t pid, int status, void *arg)
{
	struct child_done *d = arg;

	(void)l;
	(void)pid;
	d->status = status;
	d->done = 1;
}

/*
 * In the child: connect as uid 65534, send a request, copy the reply to
 * the pipe. Blocking, with a receive timeout so it cannot hang the test.
 */
static void __attribute__((noreturn))
child_as_nobody(const char *path, int out)
{
	struct sockaddr_un sun;
	struct timeval tv = { .tv_sec = 3 };
	char buf[256];
	ssize_t n;
	int fd;

	if (setgid(65534) < 0 || setuid(65534) < 0)
		_exit(10);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strcpy(sun.sun_path, path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		_exit(11);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	/* The server may have closed already: EPIPE is fine. */
	(void)send(fd, "status\n", 7, MSG_NOSIGNAL);
	while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
		if (write(out, buf, (size_t)n) != n)
			_exit(12);
	_exit(n == 0 || errno == ECONNRESET ? 0 : 13);
}

static void
test_ctl_peer_with_another_uid_is_refused(void **state)
{
	struct fx *fx = *state;
	struct child_done d = { 0 };
	uint64_t end = clock_now_ms() + DEADLINE_MS;
	char buf[256];
	int p[2];
	ssize_t n;
	pid_t pid;

	if (geteuid() != 0)
		skip();
	/* Let uid 65534 reach the socket, so only SO_PEERCRED stands. */
	assert_int_equal(chmod(fx->dir, 0755), 0);
	assert_int_equal(chmod(fx->path, 0666), 0);
	assert_int_equal(pipe(p), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		child_as_nobody(fx->path, p[1]);
	}
	close(p[1]);
	assert_int_equal(loop_watch_child(fx->loop, pid, on_child, &d), 0);
	while (!d.done && clock_now_ms() < end)
		assert_int_equal(loop_run_once(fx->loop, 10), 0);
	assert_true(d.done);
	assert_true(WIFEXITED(d.status));
	assert_int_equal(WEXITSTATUS(d.status), 0);
	n = read(p[0], buf, sizeof(buf) - 1);
	close(p[0]);
	assert_true(n >= 0);
	buf[n] = '\0';
	assert_string_equal(buf, "error: permission denied\n");
	assert_int_equal(fx->calls, 0);
}

/* ---- followers ------------------------------------------------------------ */

/*
 * Reads from fd, running the loop, until what it read ends with want (or
 * the peer closed, when want is NULL). Returns what it read (owned).
 */
static char *
read_until(struct fx *fx, int fd, const char *want, size_t *lenp)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap + 1);
	uint64_t end = clock_now_ms() + DEADLINE_MS;

	assert_non_null(buf);
	for (;;) {
		ssize_t n;

		if (clock_now_ms() > end)
			fail_msg("no \"%s\" within %d ms (got %zu bytes)", want ? want : "end",
				 DEADLINE_MS, len);
		assert_int_equal(loop_run_once(fx->loop, 5), 0);
		for (;;) {
			if (len == cap) {
				cap *= 2;
				buf = realloc(buf, cap + 1);
				assert_non_null(buf);
			}
			n = recv(fd, buf + len, cap - len, MSG_DONTWAIT);
			if (n <= 0)
				break;
			len += (size_t)n;
		}
		buf[len] = '\0';
		if (want && len >= strlen(want) && strcmp(buf + len - strlen(want), want) == 0)
			break;
		if (n == 0 || (n < 0 && errno == ECONNRESET)) {
			if (want)
				fail_msg("closed before \"%s\" (got \"%.200s\")", want, buf);
			break;
		}
	}
	if (lenp)
		*lenp = len;
	return buf;
}

static void
test_ctl_follower_gets_its_reply_then_what_is_published(void **state)
{
	struct fx *fx = *state;
	int fd = client_connect(fx->path);
	char *r;

	client_send(fd, "follow\n", 7);
	r = read_until(fx, fd, "ok\nhello\n", NULL);
	free(r);
	assert_int_equal(ctl_server_followers(fx->cs), 1);
	ctl_server_publish(fx->cs, "one\n", 4);
	ctl_server_publish(fx->cs, "two\n", 4);
	r = read_until(fx, fd, "one\ntwo\n", NULL);
	assert_string_equal(r, "one\ntwo\n");
	free(r);
	/* It stays past the timeout while nothing waits to be read. */
	ctl_server_set_timeout_ms(fx->cs, 50);
	run_for(fx, 150);
	assert_int_equal(ctl_server_followers(fx->cs), 1);
	/* A status request is served beside it. */
	r = request(fx, "status\n");
	assert_int_equal(strncmp(r, "ok\n", 3), 0);
	free(r);
	/* The client leaves: the server notices without publishing. */
	close(fd);
	run_for(fx, 50);
	assert_int_equal(ctl_server_followers(fx->cs), 0);
}

static void
test_ctl_follower_that_does_not_read_is_dropped_at_the_bound(void **state)
{
	struct fx *fx = *state;
	int fd = client_connect(fx->path);
	int small = 4096;
	char chunk[1024];
	size_t total = 0;
	char *r;

	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	client_send(fd, "follow\n", 7);
	r = read_until(fx, fd, "ok\nhello\n", NULL);
	free(r);
	memset(chunk, 'x', sizeof(chunk));
	chunk[sizeof(chunk) - 1] = '\n';
	/* Far more than the kernel and the bound hold together. */
	while (ctl_server_followers(fx->cs) == 1 && total < 8u * CTL_FOLLOW_BUFFER) {
		ctl_server_publish(fx->cs, chunk, sizeof(chunk));
		total += sizeof(chunk);
	}
	assert_int_equal(ctl_server_followers(fx->cs), 0);
	/* Dropped once its unread bytes passed the bound, not before. */
	assert_true(total > CTL_FOLLOW_BUFFER);
	/* What was sent arrives, then the end. */
	r = read_until(fx, fd, NULL, NULL);
	free(r);
	close(fd);
}

static void
test_ctl_follower_that_stops_reading_is_dropped_after_the_timeout(void **state)
{
	struct fx *fx = *state;
	int fd = client_connect(fx->path);
	int small = 4096;
	char chunk[1024];
	char *r;

	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	client_send(fd, "follow\n", 7);
	r = read_until(fx, fd, "ok\nhello\n", NULL);
	free(r);
	ctl_server_set_timeout_ms(fx->cs, 100);
	memset(chunk, 'y', sizeof(chunk));
	/*
	 * More than the socket takes (about 200 kB at most), less than that
	 * and the bound together: bytes wait in the server.
	 */
	for (int i = 0; i < 300; i++)
		ctl_server_publish(fx->cs, chunk, sizeof(chunk));
	assert_int_equal(ctl_server_followers(fx->cs), 1);
	run_for(fx, 300);
	assert_int_equal(ctl_server_followers(fx->cs), 0);
	close(fd);
}

static void
test_ctl_followers_beyond_the_bound_get_an_error(void **state)
{
	struct fx *fx = *state;
	int fds[CTL_MAX_FOLLOWERS];
	char *r;

	for (int i = 0; i < CTL_MAX_FOLLOWERS; i++) {
		fds[i] = client_connect(fx->path);
		client_send(fds[i], "follow\n", 7);
		r = read_until(fx, fds[i], "ok\nhello\n", NULL);
		free(r);
	}
	assert_int_equal(ctl_server_followers(fx->cs), CTL_MAX_FOLLOWERS);
	r = request(fx, "follow\n");
	assert_string_equal(r, "error: too many followers (at most 8), try again later\n");
	free(r);
	ctl_server_publish(fx->cs, "all\n", 4);
	for (int i = 0; i < CTL_MAX_FOLLOWERS; i++) {
		r = read_until(fx, fds[i], "all\n", NULL);
		free(r);
		close(fds[i]);
	}
	run_for(fx, 50);
	assert_int_equal(ctl_server_followers(fx->cs), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_writes_nested_structure_with_commas),
		cmocka_unit_test(test_json_escapes_quotes_backslash_and_control_chars),
		cmocka_unit_test(test_json_keeps_valid_utf8_and_replaces_invalid_bytes),
		cmocka_unit_test(test_json_null_string_extreme_numbers_and_bools),
		cmocka_unit_test(test_json_top_level_scalar_is_a_document),
		cmocka_unit_test(test_json_misuse_fails_finish_and_stops_output),
		cmocka_unit_test(test_json_sixteen_levels_are_allowed),
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_ctl_status_request_gets_ok_then_body),
		T(test_ctl_handler_gets_the_clients_uid_and_pid),
		T(test_ctl_handler_error_gets_error_line_then_hint),
		T(test_ctl_handler_error_without_text_says_request_failed),
		T(test_ctl_crlf_and_end_of_input_end_a_request),
		T(test_ctl_only_the_first_line_is_served),
		T(test_ctl_request_too_long_is_refused),
		T(test_ctl_nul_byte_in_request_is_refused),
		T(test_ctl_silent_client_is_dropped_after_timeout),
		T(test_ctl_client_that_never_reads_its_reply_is_dropped),
		T(test_ctl_slow_reader_gets_the_whole_large_reply),
		T(test_ctl_client_leaving_early_does_not_disturb_the_server),
		T(test_ctl_clients_beyond_the_bound_get_an_error),
		T(test_ctl_socket_mode_is_0600_whatever_the_umask),
		T(test_ctl_missing_parent_directories_are_created),
		T(test_ctl_stale_socket_file_is_replaced),
		T(test_ctl_second_server_on_a_live_socket_is_refused),
		T(test_ctl_file_in_the_way_is_not_removed),
		T(test_ctl_path_too_long_is_refused),
		T(test_ctl_free_removes_only_its_own_socket_file),
		T(test_ctl_peer_with_another_uid_is_refused),
		T(test_ctl_follower_gets_its_reply_then_what_is_published),
		T(test_ctl_follower_that_does_not_read_is_dropped_at_the_bound),
		T(test_ctl_follower_that_stops_reading_is_dropped_after_the_timeout),
		T(test_ctl_followers_beyond_the_bound_get_an_error),
#undef T
	};

	log_open("test_ctl", LOG_DEST_STDERR,
		 getenv("TEST_CTL_DEBUG") ? LOG_LVL_DEBUG : LOG_LVL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
