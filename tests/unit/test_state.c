/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_state.c - the state file survives what it must (round trip,
 * replacement, a leftover temp file) and refuses what it cannot prove whole
 * (truncation, a flipped byte, an unknown version); the state directory is
 * locked against a second daemon and refused when others can write to it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/state.h"

static char dir[64];

static int
setup(void **s)
{
	(void)s;
	snprintf(dir, sizeof(dir), "/tmp/pgvigil-test-state-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int
teardown(void **s)
{
	char cmd[128];

	(void)s;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void
write_sample(void)
{
	struct state *st = state_new();
	char err[256];

	assert_non_null(st);
	assert_int_equal(state_set(st, "cluster", "lab"), 0);
	assert_int_equal(state_set_u64(st, "term", 42), 0);
	assert_int_equal(state_set_u64(st, "voted_for", 3), 0);
	assert_int_equal(state_write(st, dir, "s.state", err, sizeof(err)), 0);
	state_free(st);
}

/* Reads dir/name and expects failure with a message containing want. */
static void
expect_refused(const char *want)
{
	struct state *st = NULL;
	char err[512] = "";

	assert_int_equal(state_read(dir, "s.state", &st, err, sizeof(err)), -1);
	assert_null(st);
	if (!strstr(err, want))
		fail_msg("error \"%s\" lacks \"%s\"", err, want);
}

static void
rewrite_file(const char *content, size_t len)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/s.state", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(content, 1, len, f), len);
	fclose(f);
}

static char *
read_file(size_t *len)
{
	char path[128];
	static char buf[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/s.state", dir);
	f = fopen(path, "r");
	assert_non_null(f);
	*len = fread(buf, 1, sizeof(buf) - 1, f);
	buf[*len] = '\0';
	fclose(f);
	return buf;
}

static void
test_state_round_trip(void **s)
{
	struct state *st = NULL;
	char err[256];
	uint64_t v;

	(void)s;
	write_sample();
	assert_int_equal(state_read(dir, "s.state", &st, err, sizeof(err)), 0);
	assert_string_equal(state_get(st, "cluster"), "lab");
	assert_int_equal(state_get_u64(st, "term", &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(state_get_u64(st, "cluster", &v), -1);
	assert_null(state_get(st, "missing"));
	assert_int_equal(state_count(st), 3);
	state_free(st);
	state_free(NULL);
}

static void
test_state_replace_and_mode(void **s)
{
	struct state *st = state_new();
	char err[256], path[128];
	struct stat sb;
	uint64_t v;

	(void)s;
	write_sample();
	assert_int_equal(state_set_u64(st, "term", 43), 0);
	assert_int_equal(state_write(st, dir, "s.state", err, sizeof(err)), 0);
	state_free(st);
	st = NULL;
	assert_int_equal(state_read(dir, "s.state", &st, err, sizeof(err)), 0);
	assert_int_equal(state_get_u64(st, "term", &v), 0);
	assert_int_equal(v, 43);
	assert_null(state_get(st, "cluster"));	/* whole-file replacement */
	state_free(st);
	snprintf(path, sizeof(path), "%s/s.state", dir);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
}

static void
test_state_missing_file_is_not_an_error(void **s)
{
	struct state *st = NULL;
	char err[256];

	(void)s;
	assert_int_equal(state_read(dir, "none.state", &st, err, sizeof(err)), 1);
	assert_null(st);
}

static void
test_state_truncated_file_is_refused(void **s)
{
	size_t len;
	char *img;

	(void)s;
	write_sample();
	img = read_file(&len);
	/* Cut at every length short of whole: none may be accepted. */
	for (size_t cut = 0; cut < len; cut++) {
		char copy[4096];

		memcpy(copy, img, len);
		rewrite_file(copy, cut);
		expect_refused(cut == 0 ? "truncated" : "");
	}
	rewrite_file(img, len - 1);
	expect_refused("is truncated");
}

static void
test_state_flipped_byte_is_refused(void **s)
{
	size_t len;
	char *img, copy[4096];

	(void)s;
	write_sample();
	img = read_file(&len);
	memcpy(copy, img, len);
	copy[20] ^= 0x01;	/* inside "cluster=lab" */
	rewrite_file(copy, len);
	expect_refused("is corrupt: its checksum does not match");
}

static void
test_state_unknown_version_is_refused(void **s)
{
	const char *img = "pgvigil-state 2\nterm=1\n";
	char file[256];
	struct state *st = state_new();
	char err[256];

	(void)s;
	/* A well-formed file of another version: forge its checksum. */
	assert_int_equal(state_set_u64(st, "term", 1), 0);
	assert_int_equal(state_write(st, dir, "s.state", err, sizeof(err)), 0);
	state_free(st);
	size_t len;
	char *cur = read_file(&len);
	char *trailer = strstr(cur, "sha256 ");

	assert_non_null(trailer);
	/* Recompute with the shell's sha256sum over the new body. */
	char cmd[512];

	snprintf(cmd, sizeof(cmd),
		 "printf '%%s' '%s' > %s/body && h=$(sha256sum %s/body | cut -c1-64) && "
		 "{ cat %s/body; echo \"sha256 $h\"; } > %s/s.state",
		 img, dir, dir, dir, dir);
	assert_int_equal(system(cmd), 0);
	snprintf(file, sizeof(file), "%s/body", dir);
	unlink(file);
	expect_refused("has format version 2; this pgvigil reads version 1");
}

static void
test_state_not_a_state_file_is_refused(void **s)
{
	(void)s;
	rewrite_file("hello\n", 6);
	expect_refused("is truncated: its checksum line is missing");
}

static void
test_state_rejects_bad_keys_and_values(void **s)
{
	struct state *st = state_new();

	(void)s;
	assert_int_equal(state_set(st, "Bad", "x"), -1);
	assert_int_equal(state_set(st, "", "x"), -1);
	assert_int_equal(state_set(st, "k", "line\nbreak"), -1);
	assert_int_equal(state_set(st, "k=v", "x"), -1);
	assert_int_equal(state_count(st), 0);
	state_free(st);
}

static void
test_state_stale_temp_file_does_not_block_write(void **s)
{
	char path[160];
	int fd;

	(void)s;
	snprintf(path, sizeof(path), "%s/.s.state.tmp.%d", dir, (int)getpid());
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "junk", 4), 4);
	close(fd);
	write_sample();
	assert_int_equal(access(path, F_OK), -1);
}

static void
test_state_dir_is_locked_and_checked(void **s)
{
	char sub[128], err[256];
	int fd1, fd2;

	(void)s;
	snprintf(sub, sizeof(sub), "%s/a/b/state", dir);
	fd1 = state_dir_lock(sub, err, sizeof(err));
	assert_true(fd1 >= 0);
	struct stat sb;

	assert_int_equal(stat(sub, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0700);
	fd2 = state_dir_lock(sub, err, sizeof(err));
	assert_int_equal(fd2, -1);
	assert_non_null(strstr(err, "is in use by another pgvigil"));
	close(fd1);
	fd2 = state_dir_lock(sub, err, sizeof(err));
	assert_true(fd2 >= 0);
	close(fd2);
	assert_int_equal(chmod(sub, 0777), 0);
	assert_int_equal(state_dir_lock(sub, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "writable by group or others"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_state_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_replace_and_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_missing_file_is_not_an_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_truncated_file_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_flipped_byte_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_unknown_version_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_not_a_state_file_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_rejects_bad_keys_and_values, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_stale_temp_file_does_not_block_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_dir_is_locked_and_checked, setup, teardown),
	};

	log_open("test_state", LOG_DEST_STDERR, LOG_LVL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
