/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * failover.h - the failover's I/O: it feeds the state machine of orch.c
 * with this peer's health checks, the other peers' heartbeat extensions,
 * the coordinator verdict and hook results, and carries out its effects
 * (the cluster record in state_dir/cluster.state, hooks, checks, the
 * heartbeat extension, the coordinator handover, events). The decisions
 * are all in orch.c.
 */
#ifndef PGVIGIL_FAILOVER_H
#define PGVIGIL_FAILOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct conf;
struct loop;
struct json;
struct health;
struct watchdog;
struct hook_runner;
struct failover;
struct fo_record;
struct fo_counters;

/*
 * Called with every event the state machine logs (token and key=value
 * detail, borrowed for the call); it must not call into the failover.
 */
typedef void (*failover_event_observer)(void *arg, const char *event,
					const char *text);

/*
 * Starts the failover of peer self. Every pointer is borrowed and must
 * outlive it. Reads the cluster record this peer persisted (a corrupt
 * file is an error: durable state is not guessed at). Returns NULL with
 * err set.
 */
struct failover *failover_new(struct loop *loop, const struct conf *conf,
			      int64_t self, struct watchdog *wd,
			      struct health *health, struct hook_runner *hooks,
			      char *err, size_t errlen);
void failover_reload(struct failover *f, const struct conf *conf);
/* Clean stop: no self-fence for the lease given up now. */
void failover_stop(struct failover *f);
void failover_free(struct failover *f);

/* The election's verdict (from the watchdog listener). */
void failover_set_coordinator(struct failover *f, bool has_lease, uint64_t term);
/*
 * Whether this peer may hold the VIP (besides its lease): see
 * fo_vip_allowed. fn is called whenever that answer changes.
 */
bool failover_vip_allowed(const struct failover *f);
void failover_set_vip_listener(struct failover *f, void (*fn)(void *arg),
			       void *arg);

/*
 * Control requests: "pause", "resume", "rejoin N". Writes the answer to
 * out. Returns 0, or -1 for a refused request (the reason is in out).
 */
int failover_request(struct failover *f, const char *request, const char *who,
		     FILE *out);
/* The LSN in a hook's "shutdown_lsn=X/Y" report word, 0 when none. */
uint64_t failover_report_lsn(const char *report);

void failover_status_json(const struct failover *f, struct json *j);
/* The maintenance and failover lines of the status table's header. */
void failover_status_table(const struct failover *f, FILE *out);
/*
 * What the cluster record makes backend id: "primary", "fenced" (while
 * the failover that fenced it runs), "needs-rejoin", "standby"; NULL while
 * no primary is known.
 */
const char *failover_backend_role(const struct failover *f, int64_t id);

/* The event observer (the API's metrics); NULL removes it. */
void failover_set_event_observer(struct failover *f, failover_event_observer fn,
				 void *arg);
/* The cluster record and counters this peer holds (borrowed). */
const struct fo_record *failover_record(const struct failover *f);
const struct fo_counters *failover_counters(const struct failover *f);

#endif
