/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * conf.h - the configuration: one table of settings drives parsing,
 * defaults, validation, reload policy, `pgvigil -t` and the documentation
 * check. Loading is all or nothing: a file with any error yields no
 * configuration, only the list of errors as "file:line: message".
 */
#ifndef PGVIGIL_CONF_H
#define PGVIGIL_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#define CONF_MAX_PEERS 32
#define CONF_MAX_BACKENDS 32
#define CONF_MAX_ID 255

struct conf_peer {
	int64_t id;		/* N of [peer.N]; 1..CONF_MAX_ID */
	int line;		/* line of the section header */
	char *address;		/* owned: IP literal as written */
	int64_t port;
	int64_t priority;	/* 0 = never coordinator */
	int64_t witness;	/* bool */
	/* derived from address and port at validation */
	struct sockaddr_storage sa;
	socklen_t salen;
};

struct conf_backend {
	int64_t id;		/* N of [backend.N] */
	int line;
	char *host;		/* owned: IP literal, used as libpq hostaddr */
	int64_t port;
	char *dbname;		/* owned */
	char *user;		/* owned */
	int64_t connect_timeout_ms;
	int64_t priority;	/* 0 = never promoted */
	int64_t peer;		/* the [peer.N] on its host, 0 = none */
	char *data_directory;	/* owned; empty = not given */
};

struct conf {
	char *path;		/* owned: the file it was read from */
	/* [cluster] */
	char *cluster_name;	/* owned */
	char *state_dir;	/* owned */
	int64_t log_level;	/* enum log_level */
	int64_t log_destination;	/* enum log_dest */
	char *key_file;		/* owned */
	char *control_socket;	/* owned; empty = state_dir/pgvigil.sock */
	/* [hooks] */
	char *notify_command;	/* owned; empty = none */
	char *on_vip_acquired;	/* owned; empty = none */
	char *on_vip_released;	/* owned; empty = none */
	int64_t hook_timeout_ms;
	int64_t hook_kill_grace_ms;
	/* [watchdog] */
	struct conf_watchdog {
		int64_t heartbeat_ms;
		int64_t election_min_ms;
		int64_t election_max_ms;
		int64_t lease_ms;
		int64_t drift_pct;
		int64_t stall_ms;
		int64_t stall_hold_ms;
		char *fence_command;	/* owned; empty = none */
		int64_t fence_delay_ms;
		int64_t fence_retry_ms;
	} wd;
	/* [health] */
	struct conf_health {
		int64_t interval_ms;
		int64_t timeout_ms;
		int64_t recheck_ms;
		int64_t failure_threshold;
		int64_t write_probe;	/* bool */
	} health;
	/* [vip] */
	struct conf_vip {
		char *address;		/* owned; empty = no VIP */
		char *interface;	/* owned */
		int64_t probe_timeout_ms;
		int64_t announce_count;
		int64_t announce_interval_ms;
		int64_t announce_refresh_ms;
		int64_t arp_reply_form;	/* bool */
		int64_t follow;		/* enum fo_vip_follow: 0 coordinator, 1 primary */
	} vip;
	/* [failover] */
	struct conf_failover {
		int64_t auto_failover;	/* bool */
		char *failover_command;	/* owned; empty = none */
		char *follow_primary_command;	/* owned; empty = none */
		char *fence_command;	/* owned; empty = none */
		char *stop_command;	/* owned; empty = none */
		char *rejoin_command;	/* owned; empty = none */
		char *primary_change_command;	/* owned; empty = none */
		int64_t failure_quorum;	/* 0 = majority of the peers */
		int64_t max_lag;	/* bytes */
		int64_t fence_timeout_ms;
		int64_t verify_timeout_ms;
		int64_t retry_ms;
		int64_t retry_max_ms;
		int64_t self_fence;	/* bool */
		char *watchdog_device;	/* owned; empty = no hardware watchdog */
		int64_t watchdog_timeout_ms;	/* a whole number of seconds */
	} fo;
	/* [api] */
	struct conf_api {
		char *listen;		/* owned; "address:port", empty = no API */
		char *token;		/* owned; empty = none */
		char *token_file;	/* owned; empty = none */
		char *tls_cert;		/* owned; empty = plain HTTP */
		char *tls_key;		/* owned */
		char *tls_ca;		/* owned; empty = no client certificates */
	} api;
	/* [peer.N], [backend.N], sorted by id */
	struct conf_peer peers[CONF_MAX_PEERS];
	size_t npeers;
	struct conf_backend backends[CONF_MAX_BACKENDS];
	size_t nbackends;
};

/* Error list: each entry is a full "file:line: message" string. */
struct conf_errors {
	char **msgs;		/* owned array of owned strings */
	size_t n, cap;
};

/*
 * Reads path. On success returns a new conf (owned by the caller) and
 * leaves errs empty. On any error returns NULL and fills errs with every
 * error found (not just the first).
 */
struct conf *conf_load(const char *path, struct conf_errors *errs);
/* Same, from a stream; name is used in messages. */
struct conf *conf_load_stream(FILE *f, const char *name,
			      struct conf_errors *errs);
void conf_free(struct conf *c);
void conf_errors_clear(struct conf_errors *errs);

/*
 * Prepares fresh to replace cur on reload: every restart-only setting that
 * differs is copied back from cur, and its name ("cluster.name",
 * "peer.2.port", "peers") is appended to changed (owned strings, caller
 * clears with conf_errors_clear). Returns the number of such settings.
 */
size_t conf_keep_restart_only(const struct conf *cur, struct conf *fresh,
			      struct conf_errors *changed);

/* Prints every setting with its effective value, as an INI file. */
void conf_dump(const struct conf *c, FILE *out);
/* Prints "section key" for every setting of the table (the doc check). */
void conf_list_settings(FILE *out);

const struct conf_peer *conf_peer_by_id(const struct conf *c, int64_t id);

struct hook_spec;
struct hook_var;
/*
 * A hook spec for command under name, with the [hooks] timeout and kill
 * grace of c. All pointers are borrowed and must outlive the hook_run call.
 */
void conf_hook_spec(const struct conf *c, const char *name, const char *command,
		    const struct hook_var *vars, size_t nvars,
		    struct hook_spec *out);

struct wd_config;
/*
 * Fills the election's configuration for peer self from c. Two voters
 * without a witness become two-node mode when a fence_command is set.
 */
void conf_wd_config(const struct conf *c, int64_t self, struct wd_config *out);
struct fo_config;
/*
 * Fills the failover state machine's configuration for peer self from c:
 * every configured peer (eligible unless a witness or of priority 0), every
 * backend, the [failover] settings and the timings derived from the
 * watchdog and health settings.
 */
void conf_fo_config(const struct conf *c, int64_t self, struct fo_config *out);
/* The control socket path: control_socket, or state_dir/pgvigil.sock. */
void conf_control_socket(const struct conf *c, char *buf, size_t len);

/*
 * Parses a duration: an integer with unit ms, s, min or h; a bare integer
 * is milliseconds. Returns 0, or -1 for anything else.
 */
int conf_parse_duration(const char *s, int64_t *ms);
/*
 * Parses a size: an integer with unit B, kB, MB, GB or TB (1024-based, as
 * in PostgreSQL); a bare integer is bytes. Returns 0, or -1 for anything
 * else, an overflow included.
 */
int conf_parse_size(const char *s, int64_t *bytes);

/*
 * Parses an [api] listen value: "IPv4:port" or "[IPv6]:port", port 1 to
 * 65535, addresses as literals only. Returns 0 with the socket address,
 * or -1 for anything else.
 */
int conf_parse_listen(const char *s, struct sockaddr_storage *sa,
		      socklen_t *salen);

#endif
