/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * state.h - durable state: the state directory (created 0700, locked so
 * two daemons cannot share it) and small versioned key=value files written
 * atomically (temp file, fsync, rename, fsync of the directory) and read
 * back only when intact (version known, SHA-256 checksum matches).
 *
 * A term or a vote is written here before it is acted on (DESIGN.md S5).
 */
#ifndef PGVIGIL_STATE_H
#define PGVIGIL_STATE_H

#include <stddef.h>
#include <stdint.h>

#define STATE_FORMAT_VERSION 1

struct state;

struct state *state_new(void);
void state_free(struct state *st);

/*
 * Keys are [a-z0-9_.], 1..63 characters; values are printable text
 * without newlines, at most 1023 bytes. Returns 0, or -1 (EINVAL/ENOMEM).
 */
int state_set(struct state *st, const char *key, const char *value);
int state_set_u64(struct state *st, const char *key, uint64_t v);
/* Returns the value (borrowed) or NULL. */
const char *state_get(const struct state *st, const char *key);
/* Returns 0, or -1 when the key is missing or not a number. */
int state_get_u64(const struct state *st, const char *key, uint64_t *v);
size_t state_count(const struct state *st);

/*
 * Writes dir/name atomically and durably. Returns 0, or -1 with a message
 * in err. On failure the previous file, if any, is untouched.
 */
int state_write(const struct state *st, const char *dir, const char *name,
		char *err, size_t errlen);

/*
 * Reads dir/name. Returns 0 and a new state in *out; 1 when the file does
 * not exist; -1 with a message in err when it cannot be read or is
 * truncated, corrupt or of an unknown version.
 */
int state_read(const char *dir, const char *name, struct state **out,
	       char *err, size_t errlen);

/*
 * Creates dir (and missing parents) with mode 0700 if needed, refuses one
 * writable by group or others, and takes an exclusive lock on dir/pgvigil.lock.
 * Returns the lock fd (keep it open while running) or -1 with err set.
 */
int state_dir_lock(const char *dir, char *err, size_t errlen);

#endif
