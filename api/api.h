/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * api.h - the optional HTTP API ([api] listen): Patroni-compatible health
 * endpoints for load balancers, the status JSON (/cluster), Prometheus
 * metrics (/metrics) and, when a token or a client CA is configured, the
 * mutating operator requests (doc/api.md).
 *
 * It is served by libmicrohttpd from the daemon's own event loop: no
 * thread of the library's, its epoll descriptor registered in our loop and
 * its timeout fed to one of our timers. Every handler answers at once
 * from state the daemon already holds; nothing waits.
 */
#ifndef PGVIGIL_API_H
#define PGVIGIL_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct conf;
struct loop;
struct watchdog;
struct health;
struct failover;
struct vip;
struct hook_runner;
struct api;

/*
 * The daemon's control handler (ctl_handler's contract, see ctl/ctl.h);
 * who names the HTTP client: "http ADDRESS token" or "http ADDRESS
 * certificate SUBJECT", cut to CTL_WHO_MAX.
 */
typedef int (*api_control_fn)(const char *request, const char *who, FILE *out,
			      void *arg);

/* What the API reads from and observes; every pointer is borrowed. */
struct api_deps {
	struct loop *loop;
	int64_t self;
	struct watchdog *wd;
	struct health *health;
	struct failover *fo;
	struct vip *vip;
	struct hook_runner *hooks;
	api_control_fn control;
	void *control_arg;
};

/*
 * Starts the API of conf's [api] section; with an empty listen it
 * returns an API that serves nothing but still counts what /metrics
 * would show (so NULL means failure only). conf and deps are borrowed and
 * must outlive it. Returns NULL with err set ("could not listen on ...",
 * an unreadable certificate or token file).
 */
struct api *api_new(const struct conf *conf, const struct api_deps *deps,
		    char *err, size_t errlen);
/*
 * A new configuration: the token is read again (listen and TLS are
 * restart-only). On error the previous token stays and err is set.
 */
int api_reload(struct api *a, const struct conf *conf, char *err,
	       size_t errlen);
/* Stops serving and frees; must be called before loop_free. NULL is fine. */
void api_free(struct api *a);

/* ---- pure parts, exposed for the unit tests ------------------------------ */

/* The health endpoints' checks. */
enum api_check {
	API_CHECK_PRIMARY,	/* /, /primary, /read-write, /leader, /master */
	API_CHECK_REPLICA,	/* /replica */
	API_CHECK_READ_ONLY,	/* /read-only: primary or replica */
	API_CHECK_HEALTH,	/* /health: PostgreSQL up, any role */
	API_CHECK_LIVENESS,	/* /liveness: the daemon's loop answers */
	API_CHECK_READINESS,	/* /readiness: primary, or replica within lag */
};

enum api_role {
	API_ROLE_UNKNOWN = 0,
	API_ROLE_PRIMARY,
	API_ROLE_STANDBY,
};

/* This peer's backend, as this peer sees it. */
struct api_node {
	bool has_backend;	/* a [backend.N] names this peer as its peer */
	bool up;		/* this peer's latest check of it succeeded */
	enum api_role role;	/* of that check */
	bool record_primary;	/* it is the cluster record's primary */
	bool failover_busy;	/* a failover step is in progress */
	bool needs_rejoin;	/* flagged in the cluster record */
	bool lag_known;		/* the primary's position is known here */
	uint64_t lag;		/* bytes of WAL the standby has not replayed */
};

#define API_NO_LAG_LIMIT UINT64_MAX

/*
 * 200 or 503 for check c of node n. max_lag bounds a replica's lag
 * (API_NO_LAG_LIMIT: none); a bound with an unknown lag is not met.
 */
int api_decide(const struct api_node *n, enum api_check c, uint64_t max_lag);

/*
 * Parses a ?lag= value as Patroni takes it: bytes, or a number with a unit
 * B, kB, MB, GB or TB (1024-based, case-insensitive). Returns 0, or -1.
 */
int api_parse_lag(const char *s, uint64_t *bytes);

/*
 * Whether an Authorization header value carries token ("Bearer TOKEN",
 * the scheme case-insensitive). Compares in constant time; an empty token
 * never matches.
 */
bool api_token_ok(const char *header, const char *token);

/* The body of POST /switchover and /failover. */
struct api_body {
	int64_t candidate;	/* 0 = none named */
	bool dry_run;
	bool force;
};

/*
 * Parses a flat JSON object with the members candidate (integer 1..255 or
 * null), dry_run and force (booleans); an empty body is {}. Anything else
 * (another member, another type, trailing bytes) is -1 with err set.
 */
int api_parse_body(const char *body, size_t len, struct api_body *out,
		   char *err, size_t errlen);

#endif
