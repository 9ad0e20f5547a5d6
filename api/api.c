/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * api.c - the HTTP API on libmicrohttpd, run from the daemon's event loop.
 *
 * libmicrohttpd runs without a thread of its own (MHD_USE_EPOLL, no
 * internal polling thread): its epoll descriptor sits in our loop and a
 * timer of ours follows MHD_get_timeout, and both call MHD_run. The
 * listening socket is ours: bound at start so that a bad address is a
 * start error naming the address, then handed over (MHD closes it).
 * Connections, their idle time and their memory are bounded; a request
 * body larger than API_MAX_BODY gets 413.
 *
 * Handlers answer at once from what the daemon already holds: this
 * peer's latest health checks, the cluster record, the election. The
 * health endpoints follow Patroni's paths and codes (200 / 503) so a load
 * balancer configured for Patroni works unchanged; the decision is the
 * pure function api_decide. The mutating endpoints send the control
 * socket's request lines to the daemon's control handler, so the API can
 * do nothing pgvigilctl cannot, and only with a bearer token or a client
 * certificate verified against [api] tls_ca.
 *
 * TLS is libmicrohttpd's, which is GnuTLS: the client certificate is
 * checked with GnuTLS against the configured CA (the daemon's own
 * cryptography stays OpenSSL).
 *
 * The metrics are read from the subsystems at each scrape, except what
 * needs history: histograms of failover step durations (from the failover
 * events) and of health check latency, and hook runs by name and outcome,
 * gathered through observers the subsystems call.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "api/api.h"
#include "api/metrics.h"
#include "core/clock.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/loop.h"
#include "ctl/ctl.h"
#include "ctl/json.h"
#include "failover/failover.h"
#include "failover/health.h"
#include "failover/orch.h"
#include "hooks/hook.h"
#include "vip/vip.h"
#include "watchdog/watchdog.h"

#define API_MAX_BODY 4096		/* request body bytes */
#define API_MAX_CONNECTIONS 64
#define API_MAX_PER_IP 32
#define API_CONN_TIMEOUT_S 10		/* idle connection closed after */
#define API_CONN_MEMORY (32 * 1024)	/* per connection: headers and buffers */
#define API_MAX_FILE (256 * 1024)	/* certificate, key, CA or token file */
#define API_MAX_HOOK_NAMES 32
#define API_REFUSED_LOG_MS 10000	/* refused requests: one warning per */

enum step_metric {
	SM_FENCE, SM_SELECT, SM_PROMOTE, SM_VERIFY, SM_FOLLOW, SM_TOTAL,
	SM_COUNT,
};

static const char *const step_names[SM_COUNT] = {
	"fence", "select", "promote", "verify", "follow", "total",
};

static const double step_le[] = {
	0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
};

static const double check_le[] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
};

struct hook_count {
	char name[32];
	uint64_t n[HOOK_CANCELLED + 1];	/* by enum hook_outcome */
};

struct check_hist {
	int64_t backend;
	struct mx_hist lat;
};

struct api {
	const struct conf *conf;	/* borrowed: the running configuration */
	struct api_deps d;		/* borrowed pointers */
	struct MHD_Daemon *mhd;		/* owned; NULL: no listener */
	int epfd;			/* MHD's epoll fd, registered in the loop */
	struct loop_timer *timer;	/* owned by the loop: MHD's timeout */
	char *token;			/* owned: token or token_file's, NULL = none */
	char *pem_cert, *pem_key, *pem_ca;	/* owned: MHD reads them while it runs */
	bool client_ca;			/* tls_ca set: client certificates authorize */
	char listen[96];
	/* metrics with history */
	struct mx_hist steps[SM_COUNT];
	uint64_t fence_done_at, promote_done_at, verified_at;	/* 0 = not in this failover */
	struct check_hist checks[CONF_MAX_BACKENDS];
	size_t nchecks;
	struct hook_count hookc[API_MAX_HOOK_NAMES];
	size_t nhookc;
	uint64_t refused_logged_at;	/* a scanner must not flood the log */
	uint64_t refused_quiet;		/* refusals not logged since */
};

/* One request in progress (MHD's per-connection pointer). */
struct req {
	size_t len;
	bool too_big;
	char body[API_MAX_BODY + 1];
};

/* ---- pure parts -------------------------------------------------------- */

static bool
is_primary(const struct api_node *n)
{
	return n->has_backend && n->up && n->role == API_ROLE_PRIMARY &&
	       n->record_primary && !n->failover_busy && !n->needs_rejoin;
}

static bool
is_replica(const struct api_node *n, uint64_t max_lag)
{
	if (!n->has_backend || !n->up || n->role != API_ROLE_STANDBY ||
	    n->needs_rejoin)
		return false;
	if (max_lag == API_NO_LAG_LIMIT)
		return true;
	return n->lag_known && n->lag <= max_lag;
}

int
api_decide(const struct api_node *n, enum api_check c, uint64_t max_lag)
{
	bool ok = false;

	switch (c) {
	case API_CHECK_PRIMARY:
		ok = is_primary(n);
		break;
	case API_CHECK_REPLICA:
		ok = is_replica(n, max_lag);
		break;
	case API_CHECK_READ_ONLY:
	case API_CHECK_READINESS:
		ok = is_primary(n) || is_replica(n, max_lag);
		break;
	case API_CHECK_HEALTH:
		ok = n->has_backend && n->up;
		break;
	case API_CHECK_LIVENESS:
		/* The loop answers this very request. */
		ok = true;
		break;
	}
	return ok ? 200 : 503;
}

int
api_parse_lag(const char *s, uint64_t *bytes)
{
	static const struct {
		const char *unit;
		uint64_t mult;
	} units[] = { { "", 1 }, { "B", 1 }, { "kB", 1ULL << 10 },
		      { "MB", 1ULL << 20 }, { "GB", 1ULL << 30 },
		      { "TB", 1ULL << 40 } };
	unsigned long long v;
	char *end;

	if (!s || !isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -1;
	while (*end == ' ')
		end++;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcasecmp(end, units[i].unit) != 0)
			continue;
		if (v > UINT64_MAX / units[i].mult)
			return -1;
		*bytes = v * units[i].mult;
		return 0;
	}
	return -1;
}

/* SHA-256 of both sides, compared in constant time: the length leaks nothing either. */
bool
api_token_ok(const char *header, const char *token)
{
	unsigned char h1[EVP_MAX_MD_SIZE], h2[EVP_MAX_MD_SIZE];
	unsigned int n1 = 0, n2 = 0;
	const char *given;

	if (!header || !token || !token[0])
		return false;
	if (strncasecmp(header, "Bearer ", 7) != 0)
		return false;
	given = header + 7;
	while (*given == ' ')
		given++;
	if (EVP_Digest(given, strlen(given), h1, &n1, EVP_sha256(), NULL) != 1 ||
	    EVP_Digest(token, strlen(token), h2, &n2, EVP_sha256(), NULL) != 1 ||
	    n1 != n2)
		return false;
	return CRYPTO_memcmp(h1, h2, n1) == 0;
}

/* A cursor over the body for api_parse_body. */
struct cur {
	const char *p, *end;
};

static void
skip_ws(struct cur *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' ||
				 *c->p == '\r'))
		c->p++;
}

static bool
take(struct cur *c, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0)
		return false;
	c->p += n;
	return true;
}

/* A member name: plain ASCII, no escapes (the known names need none). */
static int
take_name(struct cur *c, char *buf, size_t cap)
{
	size_t n = 0;

	if (c->p >= c->end || *c->p != '"')
		return -1;
	c->p++;
	while (c->p < c->end && *c->p != '"') {
		if (*c->p == '\\' || (unsigned char)*c->p < 0x20 || n + 1 >= cap)
			return -1;
		buf[n++] = *c->p++;
	}
	if (c->p >= c->end)
		return -1;
	c->p++;
	buf[n] = '\0';
	return 0;
}

int
api_parse_body(const char *body, size_t len, struct api_body *out, char *err,
	       size_t errlen)
{
	struct cur c = { body, body + len };
	char name[32];

	memset(out, 0, sizeof(*out));
	skip_ws(&c);
	if (c.p == c.end)
		return 0;
	if (!take(&c, "{")) {
		snprintf(err, errlen, "the body must be a JSON object");
		return -1;
	}
	skip_ws(&c);
	if (take(&c, "}"))
		goto done;
	for (;;) {
		skip_ws(&c);
		if (take_name(&c, name, sizeof(name)) < 0) {
			snprintf(err, errlen, "expected a member name in double quotes");
			return -1;
		}
		skip_ws(&c);
		if (!take(&c, ":")) {
			snprintf(err, errlen, "expected \":\" after \"%s\"", name);
			return -1;
		}
		skip_ws(&c);
		if (strcmp(name, "candidate") == 0) {
			if (take(&c, "null")) {
				out->candidate = 0;
			} else {
				int64_t v = 0;
				const char *start = c.p;

				while (c.p < c.end && isdigit((unsigned char)*c.p) &&
				       c.p - start < 4)
					v = v * 10 + (*c.p++ - '0');
				if (c.p == start || v < 1 || v > 255 ||
				    (c.p < c.end && isdigit((unsigned char)*c.p))) {
					snprintf(err, errlen, "\"candidate\" must be a backend id from 1 to 255");
					return -1;
				}
				out->candidate = v;
			}
		} else if (strcmp(name, "dry_run") == 0 || strcmp(name, "force") == 0) {
			bool *b = name[0] == 'd' ? &out->dry_run : &out->force;

			if (take(&c, "true"))
				*b = true;
			else if (take(&c, "false"))
				*b = false;
			else {
				snprintf(err, errlen, "\"%s\" must be true or false", name);
				return -1;
			}
		} else {
			snprintf(err, errlen, "unknown member \"%s\" (known: candidate, dry_run, force)",
				 name);
			return -1;
		}
		skip_ws(&c);
		if (take(&c, "}"))
			break;
		if (!take(&c, ",")) {
			snprintf(err, errlen, "expected \",\" or \"}\"");
			return -1;
		}
	}
done:
	skip_ws(&c);
	if (c.p != c.end) {
		snprintf(err, errlen, "unexpected bytes after the JSON object");
		return -1;
	}
	return 0;
}

/* ---- what this peer knows ------------------------------------------------ */

static const struct conf_backend *
own_backend(const struct api *a)
{
	for (size_t i = 0; i < a->conf->nbackends; i++)
		if (a->conf->backends[i].peer == a->d.self)
			return &a->conf->backends[i];
	return NULL;
}

static const struct health_backend *
health_of(const struct api *a, int64_t id)
{
	size_t n = health_count(a->d.health);

	for (size_t i = 0; i < n; i++) {
		const struct health_backend *b = health_get(a->d.health, i);

		if (b->id == id)
			return b;
	}
	return NULL;
}

/* The record's primary's WAL position as this peer last saw it, 0 = unknown. */
static uint64_t
primary_lsn(const struct api *a)
{
	const struct fo_record *r = failover_record(a->d.fo);
	const struct health_backend *p = r->primary ? health_of(a, r->primary) : NULL;

	if (!p || p->role != HEALTH_ROLE_PRIMARY || !p->last_ok)
		return 0;
	return p->lsn;
}

/* Bytes of WAL backend b has not replayed; false when unknown. */
static bool
lag_of(const struct api *a, const struct health_backend *b, uint64_t *lag)
{
	uint64_t top, pos;

	if (b->role == HEALTH_ROLE_PRIMARY) {
		/* The primary is 0 behind; a failed-over old primary is unknown. */
		*lag = 0;
		return b->last_ok != 0 && failover_record(a->d.fo)->primary == b->id;
	}
	top = primary_lsn(a);
	pos = b->replay_lsn ? b->replay_lsn : b->receive_lsn;
	if (!top || !pos || b->role != HEALTH_ROLE_STANDBY)
		return false;
	*lag = top > pos ? top - pos : 0;
	return true;
}

static void
node_view(const struct api *a, struct api_node *n,
	  const struct conf_backend **cb, const struct health_backend **hb)
{
	const struct fo_record *r = failover_record(a->d.fo);

	memset(n, 0, sizeof(*n));
	*cb = own_backend(a);
	*hb = *cb ? health_of(a, (*cb)->id) : NULL;
	if (!*cb || !*hb)
		return;
	n->has_backend = true;
	n->up = (*hb)->state == HEALTH_UP;
	n->role = (*hb)->role == HEALTH_ROLE_PRIMARY ? API_ROLE_PRIMARY :
		  (*hb)->role == HEALTH_ROLE_STANDBY ? API_ROLE_STANDBY : API_ROLE_UNKNOWN;
	n->record_primary = r->primary && r->primary == (*cb)->id;
	n->failover_busy = r->step != FO_STEP_NONE;
	n->needs_rejoin = (fo_record_flags(r, (uint8_t)(*cb)->id) & FO_B_NEEDS_REJOIN) != 0;
	n->lag_known = lag_of(a, *hb, &n->lag);
}

/* ---- responses ----------------------------------------------------------- */

static void remote_addr(struct MHD_Connection *c, char *buf, size_t len);

static enum MHD_Result
respond(struct MHD_Connection *c, unsigned code, const char *type,
	const char *body, size_t len, const char *allow)
{
	struct MHD_Response *r =
		MHD_create_response_from_buffer(len, (void *)(uintptr_t)body,
						MHD_RESPMEM_MUST_COPY);
	enum MHD_Result rc;

	if (!r)
		return MHD_NO;
	if (type)
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (allow)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
	if (code == MHD_HTTP_UNAUTHORIZED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
					"Bearer realm=\"pgvigil\"");
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	rc = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result
respond_message(struct MHD_Connection *c, unsigned code, const char *msg,
		const char *allow)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	struct json j;
	enum MHD_Result rc;

	if (!f)
		return MHD_NO;
	json_init(&j, f);
	json_begin_object(&j);
	json_key(&j, "message");
	json_str(&j, msg);
	json_end_object(&j);
	json_finish(&j);
	fputc('\n', f);
	fclose(f);
	rc = respond(c, code, "application/json", buf, len, allow);
	free(buf);
	return rc;
}

/* The body of a health endpoint's GET: what the decision was made from. */
static void
node_json(const struct api *a, FILE *f, const struct api_node *n,
	  const struct conf_backend *cb, const struct health_backend *hb)
{
	const struct fo_record *r = failover_record(a->d.fo);
	struct json j;

	json_init(&j, f);
	json_begin_object(&j);
	json_key(&j, "state");
	json_str(&j, !hb ? "unknown" : n->up ? "running" : health_state_name(hb->state));
	json_key(&j, "role");
	json_str(&j, !n->up ? "unknown" : n->role == API_ROLE_PRIMARY ? "primary" :
		 n->role == API_ROLE_STANDBY ? "replica" : "unknown");
	json_key(&j, "cluster");
	json_str(&j, a->conf->cluster_name);
	json_key(&j, "peer");
	json_int(&j, a->d.self);
	json_key(&j, "backend");
	if (cb)
		json_int(&j, cb->id);
	else
		json_null(&j);
	json_key(&j, "timeline");
	if (hb && hb->timeline)
		json_uint(&j, hb->timeline);
	else
		json_null(&j);
	json_key(&j, "lsn");
	if (hb && hb->role == HEALTH_ROLE_PRIMARY && hb->lsn)
		json_uint(&j, hb->lsn);
	else if (hb && (hb->replay_lsn || hb->receive_lsn))
		json_uint(&j, hb->replay_lsn ? hb->replay_lsn : hb->receive_lsn);
	else
		json_null(&j);
	json_key(&j, "lag");
	if (n->lag_known)
		json_uint(&j, n->lag);
	else
		json_null(&j);
	json_key(&j, "primary");
	if (r->primary)
		json_uint(&j, r->primary);
	else
		json_null(&j);
	json_key(&j, "failover_step");
	json_str(&j, fo_step_name(r->step));
	json_key(&j, "needs_rejoin");
	json_bool(&j, n->needs_rejoin);
	json_key(&j, "maintenance");
	json_bool(&j, r->paused);
	json_key(&j, "term");
	json_uint(&j, watchdog_term(a->d.wd));
	json_key(&j, "coordinator");
	json_bool(&j, watchdog_is_coordinator(a->d.wd));
	json_end_object(&j);
	json_finish(&j);
	fputc('\n', f);
}

static enum MHD_Result
serve_check(struct api *a, struct MHD_Connection *c, enum api_check chk,
	    bool head)
{
	struct api_node n;
	const struct conf_backend *cb;
	const struct health_backend *hb;
	uint64_t max_lag = API_NO_LAG_LIMIT;
	const char *lag = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "lag");
	char *buf = NULL;
	size_t len = 0;
	FILE *f;
	int code;
	enum MHD_Result rc;

	if (lag && api_parse_lag(lag, &max_lag) < 0)
		return respond_message(c, MHD_HTTP_BAD_REQUEST,
				       "invalid lag: use bytes or a size such as 16MB", NULL);
	if (chk == API_CHECK_READINESS && !lag)
		max_lag = (uint64_t)a->conf->fo.max_lag;
	node_view(a, &n, &cb, &hb);
	code = api_decide(&n, chk, max_lag);
	if (head)
		return respond(c, (unsigned)code, NULL, "", 0, NULL);
	f = open_memstream(&buf, &len);
	if (!f)
		return MHD_NO;
	if (chk == API_CHECK_LIVENESS) {
		fprintf(f, "{\"alive\":true,\"loop_gap_ms\":%" PRIu64 "}\n",
			loop_last_gap(a->d.loop));
	} else {
		node_json(a, f, &n, cb, hb);
	}
	fclose(f);
	rc = respond(c, (unsigned)code, "application/json", buf, len, NULL);
	free(buf);
	return rc;
}

static enum MHD_Result
serve_cluster(struct api *a, struct MHD_Connection *c, bool head)
{
	char remote[INET6_ADDRSTRLEN], who[CTL_WHO_MAX];
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	int rc;
	enum MHD_Result r;

	if (!f)
		return MHD_NO;
	remote_addr(c, remote, sizeof(remote));
	snprintf(who, sizeof(who), "http %s", remote);
	rc = a->d.control("status json", who, f, a->d.control_arg);
	fclose(f);
	r = respond(c, rc == 0 ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
		    "application/json", buf, head ? 0 : len, NULL);
	free(buf);
	return r;
}

/* ---- metrics ------------------------------------------------------------- */

static void
metrics_write(struct api *a, FILE *f)
{
	char base[160] = "", l[320];
	char self[24];
	const struct wd_counters *wc = watchdog_counters(a->d.wd);
	const struct fo_record *r = failover_record(a->d.fo);
	const struct fo_counters *fc = failover_counters(a->d.fo);
	const char *rnames[32];
	uint64_t rcounts[32], acq = 0, ann = 0;
	size_t nrej, nb = health_count(a->d.health);
	unsigned up = 0;

	snprintf(self, sizeof(self), "%" PRId64, a->d.self);
	mx_label(base, sizeof(base), "cluster", a->conf->cluster_name);
	mx_label(base, sizeof(base), "peer", self);

	mx_family(f, "pgvigil_term", "gauge", "Current election term as this peer knows it.");
	mx_sample(f, "pgvigil_term", base, (double)watchdog_term(a->d.wd));
	mx_family(f, "pgvigil_elections_started_total", "counter", "Elections this peer stood in.");
	mx_sample(f, "pgvigil_elections_started_total", base, (double)wc->elections);
	mx_family(f, "pgvigil_elections_won_total", "counter", "Elections this peer won.");
	mx_sample(f, "pgvigil_elections_won_total", base, (double)wc->terms_won);
	mx_family(f, "pgvigil_coordinator", "gauge", "1 while this peer is coordinator with a valid lease.");
	mx_sample(f, "pgvigil_coordinator", base, watchdog_is_coordinator(a->d.wd) ? 1 : 0);
	mx_family(f, "pgvigil_lease_remaining_seconds", "gauge", "Time left of this peer's coordinator lease, 0 without one.");
	mx_sample(f, "pgvigil_lease_remaining_seconds", base,
		  (double)watchdog_lease_remaining_ms(a->d.wd) / 1000.0);
	for (size_t i = 0; i < a->conf->npeers; i++)
		up += watchdog_peer_up(a->d.wd, a->conf->peers[i].id);
	mx_family(f, "pgvigil_peers", "gauge", "Configured peers, this one included.");
	mx_sample(f, "pgvigil_peers", base, (double)a->conf->npeers);
	mx_family(f, "pgvigil_peers_up", "gauge", "Configured peers heard recently, this one included.");
	mx_sample(f, "pgvigil_peers_up", base, up);

	mx_family(f, "pgvigil_maintenance", "gauge", "1 while maintenance mode (pause) is on.");
	mx_sample(f, "pgvigil_maintenance", base, r->paused ? 1 : 0);
	mx_family(f, "pgvigil_failover_in_progress", "gauge", "1 while a failover step is in progress in the cluster record.");
	mx_sample(f, "pgvigil_failover_in_progress", base, r->step != FO_STEP_NONE ? 1 : 0);
	mx_family(f, "pgvigil_failovers_started_total", "counter", "Failovers this peer started as coordinator.");
	mx_sample(f, "pgvigil_failovers_started_total", base, (double)fc->failovers);
	mx_family(f, "pgvigil_failovers_done_total", "counter", "Failovers this peer finished as coordinator.");
	mx_sample(f, "pgvigil_failovers_done_total", base, (double)fc->failovers_done);
	mx_family(f, "pgvigil_failovers_refused_total", "counter", "Failovers refused: no candidate eligible or caught up.");
	mx_sample(f, "pgvigil_failovers_refused_total", base, (double)fc->refusals);
	mx_family(f, "pgvigil_failover_step_duration_seconds", "histogram",
		  "Duration of each failover step this peer ran as coordinator (fence, select, promote, verify, follow, total).");
	for (int s = 0; s < SM_COUNT; s++) {
		snprintf(l, sizeof(l), "%s", base);
		mx_label(l, sizeof(l), "step", step_names[s]);
		mx_hist_write(f, "pgvigil_failover_step_duration_seconds", l, &a->steps[s]);
	}

	/* Per backend, one family after the other. */
	mx_family(f, "pgvigil_health_check_duration_seconds", "histogram",
		  "Duration of this peer's successful health checks, per backend.");
	for (size_t i = 0; i < a->nchecks; i++) {
		char id[24];

		snprintf(id, sizeof(id), "%" PRId64, a->checks[i].backend);
		snprintf(l, sizeof(l), "%s", base);
		mx_label(l, sizeof(l), "backend", id);
		mx_hist_write(f, "pgvigil_health_check_duration_seconds", l, &a->checks[i].lat);
	}
#define PER_BACKEND(name, type, help, expr)                                      \
	do {                                                                     \
		mx_family(f, name, type, help);                                  \
		for (size_t i = 0; i < nb; i++) {                                \
			const struct health_backend *b = health_get(a->d.health, i); \
			char id[24];                                             \
			snprintf(id, sizeof(id), "%" PRId64, b->id);             \
			snprintf(l, sizeof(l), "%s", base);                      \
			mx_label(l, sizeof(l), "backend", id);                   \
			mx_sample(f, name, l, (double)(expr));                   \
		}                                                                \
	} while (0)
	PER_BACKEND("pgvigil_health_checks_total", "counter",
		    "Health checks this peer finished, per backend.", b->checks);
	PER_BACKEND("pgvigil_health_check_failures_total", "counter",
		    "Health checks that failed, per backend.", b->failures);
	PER_BACKEND("pgvigil_backend_up", "gauge",
		    "1 when this peer's latest check of the backend succeeded.",
		    b->state == HEALTH_UP);
	PER_BACKEND("pgvigil_backend_timeline", "gauge",
		    "Timeline of the backend at its last successful check, 0 = unknown.",
		    b->timeline);
	PER_BACKEND("pgvigil_backend_needs_rejoin", "gauge",
		    "1 when the cluster record flags the backend as needing a rejoin.",
		    (fo_record_flags(r, (uint8_t)b->id) & FO_B_NEEDS_REJOIN) != 0);
	PER_BACKEND("pgvigil_backend_primary", "gauge",
		    "1 for the cluster record's primary.", r->primary && r->primary == b->id);
#undef PER_BACKEND
	mx_family(f, "pgvigil_backend_role", "gauge",
		  "Role of the backend at this peer's last successful check: 1 for the current role.");
	for (size_t i = 0; i < nb; i++) {
		const struct health_backend *b = health_get(a->d.health, i);
		static const char *const roles[] = { "unknown", "primary", "standby" };
		char id[24];

		snprintf(id, sizeof(id), "%" PRId64, b->id);
		for (int k = 0; k < 3; k++) {
			snprintf(l, sizeof(l), "%s", base);
			mx_label(l, sizeof(l), "backend", id);
			mx_label(l, sizeof(l), "role", roles[k]);
			mx_sample(f, "pgvigil_backend_role", l, (int)b->role == k);
		}
	}
	mx_family(f, "pgvigil_backend_lag_bytes", "gauge",
		  "WAL bytes a standby has not replayed, behind the primary's position as this peer sees it; absent when unknown.");
	for (size_t i = 0; i < nb; i++) {
		const struct health_backend *b = health_get(a->d.health, i);
		uint64_t lag;
		char id[24];

		if (!lag_of(a, b, &lag))
			continue;
		snprintf(id, sizeof(id), "%" PRId64, b->id);
		snprintf(l, sizeof(l), "%s", base);
		mx_label(l, sizeof(l), "backend", id);
		mx_sample(f, "pgvigil_backend_lag_bytes", l, (double)lag);
	}

	vip_counters(a->d.vip, &acq, &ann);
	mx_family(f, "pgvigil_vip_held", "gauge", "1 while this peer holds the VIP.");
	mx_sample(f, "pgvigil_vip_held", base, strcmp(vip_state(a->d.vip), "held") == 0);
	mx_family(f, "pgvigil_vip_acquisitions_total", "counter", "Times this peer added the VIP.");
	mx_sample(f, "pgvigil_vip_acquisitions_total", base, (double)acq);
	mx_family(f, "pgvigil_vip_announcements_total", "counter",
		  "Gratuitous ARPs and unsolicited neighbour advertisements sent for the VIP.");
	mx_sample(f, "pgvigil_vip_announcements_total", base, (double)ann);

	mx_family(f, "pgvigil_hook_runs_total", "counter", "Hook runs by hook name and outcome.");
	for (size_t i = 0; i < a->nhookc; i++) {
		for (int o = 0; o <= HOOK_CANCELLED; o++) {
			snprintf(l, sizeof(l), "%s", base);
			mx_label(l, sizeof(l), "hook", a->hookc[i].name);
			mx_label(l, sizeof(l), "outcome", hook_outcome_name((enum hook_outcome)o));
			mx_sample(f, "pgvigil_hook_runs_total", l, (double)a->hookc[i].n[o]);
		}
	}

	nrej = watchdog_rejects(a->d.wd, rnames, rcounts, 32);
	mx_family(f, "pgvigil_datagrams_rejected_total", "counter",
		  "Watchdog datagrams dropped, by reason.");
	for (size_t i = 0; i < nrej; i++) {
		snprintf(l, sizeof(l), "%s", base);
		mx_label(l, sizeof(l), "reason", rnames[i]);
		mx_sample(f, "pgvigil_datagrams_rejected_total", l, (double)rcounts[i]);
	}
}

static enum MHD_Result
serve_metrics(struct api *a, struct MHD_Connection *c, bool head)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	enum MHD_Result rc;

	if (!f)
		return MHD_NO;
	metrics_write(a, f);
	fclose(f);
	rc = respond(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", buf,
		     head ? 0 : len, NULL);
	free(buf);
	return rc;
}

/* ---- observers ------------------------------------------------------------ */

static uint64_t
detail_u64(const char *text, const char *key, bool *found)
{
	const char *p = strstr(text, key);

	*found = p != NULL;
	return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

static void
observe_ms(struct api *a, enum step_metric s, uint64_t ms)
{
	mx_hist_observe(&a->steps[s], (double)ms / 1000.0);
}

/*
 * The failover's events carry duration_ms for the fence, the promote hook
 * and the whole failover; the select, verify and follow steps are the
 * time between two events seen here.
 */
static void
on_fo_event(void *arg, const char *event, const char *text)
{
	struct api *a = arg;
	uint64_t now = clock_now_ms(), ms;
	bool has;

	ms = detail_u64(text, "duration_ms=", &has);
	if (strcmp(event, "failover-started") == 0) {
		a->fence_done_at = a->promote_done_at = a->verified_at = 0;
	} else if (strcmp(event, "backend-fence-done") == 0) {
		if (has)
			observe_ms(a, SM_FENCE, ms);
		a->fence_done_at = now;
	} else if (strcmp(event, "candidate-chosen") == 0) {
		if (a->fence_done_at)
			observe_ms(a, SM_SELECT, now - a->fence_done_at);
		a->fence_done_at = 0;
	} else if (strcmp(event, "promote-done") == 0) {
		if (has)
			observe_ms(a, SM_PROMOTE, ms);
		a->promote_done_at = now;
	} else if (strcmp(event, "promote-verified") == 0) {
		if (a->promote_done_at)
			observe_ms(a, SM_VERIFY, now - a->promote_done_at);
		a->promote_done_at = 0;
		a->verified_at = now;
	} else if (strcmp(event, "failover-done") == 0) {
		if (a->verified_at)
			observe_ms(a, SM_FOLLOW, now - a->verified_at);
		if (has)
			observe_ms(a, SM_TOTAL, ms);
		a->verified_at = 0;
	}
}

static void
on_check(void *arg, const struct health_backend *b)
{
	struct api *a = arg;
	struct check_hist *h = NULL;

	if (b->consecutive_failures != 0)
		return;
	for (size_t i = 0; i < a->nchecks; i++)
		if (a->checks[i].backend == b->id)
			h = &a->checks[i];
	if (!h) {
		if (a->nchecks == CONF_MAX_BACKENDS)
			return;
		h = &a->checks[a->nchecks++];
		h->backend = b->id;
		mx_hist_init(&h->lat, check_le, sizeof(check_le) / sizeof(check_le[0]));
	}
	mx_hist_observe(&h->lat, (double)b->latency_ms / 1000.0);
}

static void
on_hook(const struct hook_result *res, void *arg)
{
	struct api *a = arg;
	struct hook_count *h = NULL;

	if (!res->name || (int)res->outcome < 0 || res->outcome > HOOK_CANCELLED)
		return;
	for (size_t i = 0; i < a->nhookc; i++)
		if (strcmp(a->hookc[i].name, res->name) == 0)
			h = &a->hookc[i];
	if (!h) {
		if (a->nhookc == API_MAX_HOOK_NAMES)
			return;
		h = &a->hookc[a->nhookc++];
		snprintf(h->name, sizeof(h->name), "%s", res->name);
	}
	h->n[res->outcome]++;
}

/* ---- mutating requests ---------------------------------------------------- */

static void
remote_addr(struct MHD_Connection *c, char *buf, size_t len)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci ? ci->client_addr : NULL;

	snprintf(buf, len, "?");
	if (sa && sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr,
			  buf, (socklen_t)len);
	else if (sa && sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
			  buf, (socklen_t)len);
}

/*
 * The subject of a client certificate that verifies against tls_ca, into
 * subj; false when there is none (no TLS, no certificate, or it does not
 * verify).
 */
static bool
client_cert_subject(const struct api *a, struct MHD_Connection *c, char *subj,
		    size_t len)
{
	const union MHD_ConnectionInfo *ci;
	gnutls_session_t s;
	const gnutls_datum_t *peers;
	unsigned int status = 0, n = 0;
	gnutls_x509_crt_t crt;
	size_t sl = len;
	bool ok = false;

	if (!a->client_ca)
		return false;
	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
	if (!ci || !ci->tls_session)
		return false;
	s = (gnutls_session_t)ci->tls_session;
	if (gnutls_certificate_verify_peers2(s, &status) != GNUTLS_E_SUCCESS || status != 0)
		return false;
	peers = gnutls_certificate_get_peers(s, &n);
	if (!peers || n == 0 || gnutls_x509_crt_init(&crt) != GNUTLS_E_SUCCESS)
		return false;
	if (gnutls_x509_crt_import(crt, &peers[0], GNUTLS_X509_FMT_DER) == GNUTLS_E_SUCCESS &&
	    gnutls_x509_crt_get_dn(crt, subj, &sl) == GNUTLS_E_SUCCESS)
		ok = true;
	gnutls_x509_crt_deinit(crt);
	/* The subject goes into a log line: no quotes or control characters. */
	for (char *p = subj; ok && *p; p++)
		if (*p == '"' || (unsigned char)*p < 0x20)
			*p = '?';
	return ok;
}

enum post_kind { P_SWITCHOVER, P_FAILOVER, P_PAUSE, P_RESUME };

static enum MHD_Result
serve_post(struct api *a, struct MHD_Connection *c, enum post_kind kind,
	   const struct req *rq)
{
	char who[300], remote[INET6_ADDRSTRLEN], subj[256], err[160], line[64];
	char caller[CTL_WHO_MAX];
	const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						       MHD_HTTP_HEADER_AUTHORIZATION);
	struct api_body body;
	char *buf = NULL;
	size_t len = 0;
	FILE *f;
	int rc;
	unsigned code;
	enum MHD_Result r;

	remote_addr(c, remote, sizeof(remote));
	if (!a->token && !a->client_ca)
		return respond_message(c, MHD_HTTP_FORBIDDEN,
				       "mutating requests are disabled: set [api] token, token_file or tls_ca",
				       NULL);
	if (client_cert_subject(a, c, subj, sizeof(subj)))
		snprintf(who, sizeof(who), "certificate detail=\"%s\"", subj);
	else if (a->token && api_token_ok(auth, a->token))
		snprintf(who, sizeof(who), "token");
	else {
		uint64_t now = clock_now_ms();

		if (!a->refused_logged_at || now - a->refused_logged_at >= API_REFUSED_LOG_MS) {
			log_warning("API request from %s refused: %s (%" PRIu64 " more refused since the last warning)",
				    remote, auth ? "wrong token" : "no token or client certificate",
				    a->refused_quiet);
			a->refused_logged_at = now;
			a->refused_quiet = 0;
		} else {
			a->refused_quiet++;
		}
		return respond_message(c, MHD_HTTP_UNAUTHORIZED,
				       a->token ? "a valid bearer token or client certificate is needed"
						: "a client certificate signed by tls_ca is needed",
				       NULL);
	}
	if (rq->too_big)
		return respond_message(c, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large", NULL);
	if (api_parse_body(rq->body, rq->len, &body, err, sizeof(err)) < 0)
		return respond_message(c, MHD_HTTP_BAD_REQUEST, err, NULL);
	switch (kind) {
	case P_SWITCHOVER:
		if (body.force)
			return respond_message(c, MHD_HTTP_BAD_REQUEST,
					       "\"force\" is for /failover; a switchover checks its target", NULL);
		snprintf(line, sizeof(line), "switchover");
		if (body.candidate)
			snprintf(line + strlen(line), sizeof(line) - strlen(line), " %" PRId64, body.candidate);
		if (body.dry_run)
			snprintf(line + strlen(line), sizeof(line) - strlen(line), " dry-run");
		break;
	case P_FAILOVER:
		snprintf(line, sizeof(line), "failover");
		if (body.candidate)
			snprintf(line + strlen(line), sizeof(line) - strlen(line), " %" PRId64, body.candidate);
		if (body.force)
			snprintf(line + strlen(line), sizeof(line) - strlen(line), " force");
		if (body.dry_run)
			snprintf(line + strlen(line), sizeof(line) - strlen(line), " dry-run");
		break;
	case P_PAUSE:
	case P_RESUME:
		if (body.candidate || body.dry_run || body.force)
			return respond_message(c, MHD_HTTP_BAD_REQUEST,
					       "pause and resume take no parameters", NULL);
		snprintf(line, sizeof(line), "%s", kind == P_PAUSE ? "pause" : "resume");
		break;
	}
	f = open_memstream(&buf, &len);
	if (!f)
		return MHD_NO;
	{
		char full[INET6_ADDRSTRLEN + sizeof(subj) + 24];

		snprintf(full, sizeof(full), "http %s %s%s%s", remote,
			 who[0] == 't' ? "token" : "certificate", who[0] == 't' ? "" : " ",
			 who[0] == 't' ? "" : subj);
		snprintf(caller, sizeof(caller), "%.*s", (int)sizeof(caller) - 1, full);
	}
	rc = a->d.control(line, caller, f, a->d.control_arg);
	fclose(f);
	/* A switchover or failover is started, not finished, when this returns. */
	code = rc < 0 ? MHD_HTTP_PRECONDITION_FAILED :
	       (kind == P_SWITCHOVER || kind == P_FAILOVER) && !body.dry_run ?
	       MHD_HTTP_ACCEPTED : MHD_HTTP_OK;
	log_event("api-request",
		  "request=%s candidate=%" PRId64 " dry_run=%s force=%s status=%u remote=%s auth=%s",
		  kind == P_SWITCHOVER ? "switchover" : kind == P_FAILOVER ? "failover" :
		  kind == P_PAUSE ? "pause" : "resume", body.candidate,
		  body.dry_run ? "yes" : "no", body.force ? "yes" : "no", code, remote, who);
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
		buf[--len] = '\0';
	r = respond_message(c, code, buf ? buf : "", NULL);
	free(buf);
	return r;
}

/* ---- routing -------------------------------------------------------------- */

enum route_kind { RK_CHECK, RK_CLUSTER, RK_METRICS, RK_POST };

static const struct route {
	const char *path;
	enum route_kind kind;
	int arg;		/* enum api_check or enum post_kind */
} routes[] = {
	{ "/", RK_CHECK, API_CHECK_PRIMARY },
	{ "/primary", RK_CHECK, API_CHECK_PRIMARY },
	{ "/read-write", RK_CHECK, API_CHECK_PRIMARY },
	{ "/leader", RK_CHECK, API_CHECK_PRIMARY },
	{ "/master", RK_CHECK, API_CHECK_PRIMARY },
	{ "/replica", RK_CHECK, API_CHECK_REPLICA },
	{ "/read-only", RK_CHECK, API_CHECK_READ_ONLY },
	{ "/health", RK_CHECK, API_CHECK_HEALTH },
	{ "/liveness", RK_CHECK, API_CHECK_LIVENESS },
	{ "/readiness", RK_CHECK, API_CHECK_READINESS },
	{ "/cluster", RK_CLUSTER, 0 },
	{ "/metrics", RK_METRICS, 0 },
	{ "/switchover", RK_POST, P_SWITCHOVER },
	{ "/failover", RK_POST, P_FAILOVER },
	{ "/pause", RK_POST, P_PAUSE },
	{ "/resume", RK_POST, P_RESUME },
};

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *c, const char *url,
	   const char *method, const char *version, const char *upload_data,
	   size_t *upload_size, void **con_cls)
{
	struct api *a = cls;
	struct req *rq = *con_cls;
	const struct route *rt = NULL;
	bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0;
	bool head = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
	bool options = strcmp(method, MHD_HTTP_METHOD_OPTIONS) == 0;
	bool post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;

	(void)version;
	if (!rq) {
		rq = calloc(1, sizeof(*rq));
		if (!rq)
			return MHD_NO;
		*con_cls = rq;
		return MHD_YES;
	}
	if (*upload_size) {
		if (rq->len + *upload_size > API_MAX_BODY)
			rq->too_big = true;
		else {
			memcpy(rq->body + rq->len, upload_data, *upload_size);
			rq->len += *upload_size;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	rq->body[rq->len] = '\0';
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (strcmp(url, routes[i].path) == 0)
			rt = &routes[i];
	if (!rt)
		return respond_message(c, MHD_HTTP_NOT_FOUND, "no such endpoint (see doc/api.md)", NULL);
	if (rt->kind == RK_POST) {
		if (options)
			return respond(c, MHD_HTTP_OK, NULL, "", 0, "POST, OPTIONS");
		if (!post)
			return respond_message(c, MHD_HTTP_METHOD_NOT_ALLOWED,
					       "use POST", "POST, OPTIONS");
		return serve_post(a, c, (enum post_kind)rt->arg, rq);
	}
	/* Patroni answers HEAD and OPTIONS of a check with its status only. */
	if (options && rt->kind == RK_CHECK)
		return serve_check(a, c, (enum api_check)rt->arg, true);
	if (options)
		return respond(c, MHD_HTTP_OK, NULL, "", 0, "GET, HEAD, OPTIONS");
	if (!get && !head)
		return respond_message(c, MHD_HTTP_METHOD_NOT_ALLOWED, "use GET, HEAD or OPTIONS",
				       "GET, HEAD, OPTIONS");
	switch (rt->kind) {
	case RK_CHECK:
		return serve_check(a, c, (enum api_check)rt->arg, head);
	case RK_CLUSTER:
		return serve_cluster(a, c, head);
	case RK_METRICS:
		return serve_metrics(a, c, head);
	case RK_POST:
		break;
	}
	return MHD_NO;
}

static void
on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
	     enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)c;
	(void)toe;
	free(*con_cls);
	*con_cls = NULL;
}

static void
on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	size_t n;

	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '.'))
		msg[--n] = '\0';
	log_debug("http: %s", msg);
}

/* ---- life ---------------------------------------------------------------- */

static void
rearm(struct api *a)
{
	MHD_UNSIGNED_LONG_LONG t = 0;

	if (MHD_get_timeout(a->mhd, &t) == MHD_YES)
		loop_timer_in(a->timer, (uint64_t)t);
	else
		loop_timer_stop(a->timer);
}

static void
run_mhd(struct api *a)
{
	if (MHD_run(a->mhd) != MHD_YES)
		log_debug("http: MHD_run failed");
	rearm(a);
}

static void
on_fd(struct loop *loop, int fd, uint32_t events, void *arg)
{
	(void)loop;
	(void)fd;
	(void)events;
	run_mhd(arg);
}

static void
on_timer(struct loop *loop, struct loop_timer *t, void *arg)
{
	(void)loop;
	(void)t;
	run_mhd(arg);
}

/*
 * Reads a whole small file. private: it must not be readable or writable
 * by group or others (a key, a token). Returns a NUL-terminated malloc'd
 * copy, or NULL with err set.
 */
static char *
read_file(const char *what, const char *path, bool private, char *err,
	  size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf = NULL;
	ssize_t n;
	size_t len = 0;

	if (fd < 0) {
		snprintf(err, errlen, "could not open %s \"%s\": %s", what, path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s \"%s\" is not a regular file", what, path);
		goto fail;
	}
	if (private && (st.st_mode & 077)) {
		snprintf(err, errlen, "%s \"%s\" is accessible by group or others (mode %04o); chmod 0600 it",
			 what, path, (unsigned)(st.st_mode & 07777));
		goto fail;
	}
	if (st.st_size > API_MAX_FILE) {
		snprintf(err, errlen, "%s \"%s\" is larger than %d bytes", what, path, API_MAX_FILE);
		goto fail;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	while (len < (size_t)st.st_size &&
	       (n = read(fd, buf + len, (size_t)st.st_size - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	close(fd);
	return buf;
fail:
	free(buf);
	close(fd);
	return NULL;
}

/* The token of conf: token, or token_file's first line; NULL = none. */
static int
load_token(const struct conf *conf, char **out, char *err, size_t errlen)
{
	const struct conf_api *c = &conf->api;
	char *t;
	size_t n;

	*out = NULL;
	if (c->token && c->token[0]) {
		*out = strdup(c->token);
		if (!*out) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		return 0;
	}
	if (!c->token_file || !c->token_file[0])
		return 0;
	t = read_file("token file", c->token_file, true, err, errlen);
	if (!t)
		return -1;
	t[strcspn(t, "\r\n")] = '\0';
	n = strlen(t);
	while (n > 0 && (t[n - 1] == ' ' || t[n - 1] == '\t'))
		t[--n] = '\0';
	if (n == 0) {
		snprintf(err, errlen, "token file \"%s\" holds no token", c->token_file);
		free(t);
		return -1;
	}
	*out = t;
	return 0;
}

static int
listen_socket(const struct conf *conf, char *err, size_t errlen)
{
	struct sockaddr_storage sa;
	socklen_t salen;
	int fd, one = 1;

	if (conf_parse_listen(conf->api.listen, &sa, &salen) < 0) {
		snprintf(err, errlen, "could not listen on \"%s\": not address:port", conf->api.listen);
		return -1;
	}
	fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "could not listen on %s: %s", conf->api.listen, strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (sa.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, salen) < 0 || listen(fd, 64) < 0) {
		snprintf(err, errlen, "could not listen on %s: %s", conf->api.listen, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static int
start_mhd(struct api *a, char *err, size_t errlen)
{
	const struct conf_api *c = &a->conf->api;
	struct MHD_OptionItem opts[16];
	size_t n = 0;
	unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
	const union MHD_DaemonInfo *di;
	int fd;

	if (c->tls_cert && c->tls_cert[0]) {
		a->pem_cert = read_file("certificate", c->tls_cert, false, err, errlen);
		if (!a->pem_cert)
			return -1;
		a->pem_key = read_file("private key", c->tls_key, true, err, errlen);
		if (!a->pem_key)
			return -1;
		if (c->tls_ca && c->tls_ca[0]) {
			a->pem_ca = read_file("CA certificate", c->tls_ca, false, err, errlen);
			if (!a->pem_ca)
				return -1;
			a->client_ca = true;
		}
		flags |= MHD_USE_TLS;
	}
	fd = listen_socket(a->conf, err, errlen);
	if (fd < 0)
		return -1;
#define OPT(o, v, p) opts[n++] = (struct MHD_OptionItem){ (o), (intptr_t)(v), (p) }
	OPT(MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, a);
	OPT(MHD_OPTION_LISTEN_SOCKET, fd, NULL);
	OPT(MHD_OPTION_CONNECTION_LIMIT, API_MAX_CONNECTIONS, NULL);
	OPT(MHD_OPTION_PER_IP_CONNECTION_LIMIT, API_MAX_PER_IP, NULL);
	OPT(MHD_OPTION_CONNECTION_TIMEOUT, API_CONN_TIMEOUT_S, NULL);
	OPT(MHD_OPTION_CONNECTION_MEMORY_LIMIT, API_CONN_MEMORY, NULL);
	OPT(MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, NULL);
	if (a->pem_cert) {
		OPT(MHD_OPTION_HTTPS_MEM_CERT, 0, a->pem_cert);
		OPT(MHD_OPTION_HTTPS_MEM_KEY, 0, a->pem_key);
		if (a->pem_ca)
			OPT(MHD_OPTION_HTTPS_MEM_TRUST, 0, a->pem_ca);
	}
	OPT(MHD_OPTION_END, 0, NULL);
#undef OPT
	a->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, a,
				  MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
	if (!a->mhd) {
		close(fd);
		snprintf(err, errlen, "could not start the HTTP API on %s%s", c->listen,
			 a->pem_cert ? " (check tls_cert, tls_key and tls_ca)" : "");
		return -1;
	}
	di = MHD_get_daemon_info(a->mhd, MHD_DAEMON_INFO_EPOLL_FD);
	if (!di || di->epoll_fd < 0) {
		snprintf(err, errlen, "could not start the HTTP API on %s: no epoll descriptor",
			 c->listen);
		return -1;
	}
	a->epfd = di->epoll_fd;
	if (loop_add_fd(a->d.loop, a->epfd, EPOLLIN, on_fd, a) < 0) {
		snprintf(err, errlen, "could not start the HTTP API on %s: %s", c->listen,
			 strerror(errno));
		a->epfd = -1;
		return -1;
	}
	rearm(a);
	return 0;
}

struct api *
api_new(const struct conf *conf, const struct api_deps *deps, char *err,
	size_t errlen)
{
	struct api *a = calloc(1, sizeof(*a));

	if (!a) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	a->conf = conf;
	a->d = *deps;
	a->epfd = -1;
	for (int s = 0; s < SM_COUNT; s++)
		mx_hist_init(&a->steps[s], step_le, sizeof(step_le) / sizeof(step_le[0]));
	a->timer = loop_timer_new(deps->loop, on_timer, a);
	if (!a->timer) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (load_token(conf, &a->token, err, errlen) < 0)
		goto fail;
	failover_set_event_observer(deps->fo, on_fo_event, a);
	health_set_observer(deps->health, on_check, a);
	hook_set_observer(deps->hooks, on_hook, a);
	if (conf->api.listen && conf->api.listen[0]) {
		if (start_mhd(a, err, errlen) < 0)
			goto fail;
		snprintf(a->listen, sizeof(a->listen), "%s", conf->api.listen);
		log_event("api-listening", "address=%s tls=%s mutating=%s", a->listen,
			  a->pem_cert ? "yes" : "no",
			  a->token && a->client_ca ? "token,certificate" :
			  a->token ? "token" : a->client_ca ? "certificate" : "off");
	}
	return a;
fail:
	api_free(a);
	return NULL;
}

int
api_reload(struct api *a, const struct conf *conf, char *err, size_t errlen)
{
	char *t;

	a->conf = conf;
	if (load_token(conf, &t, err, errlen) < 0)
		return -1;
	free(a->token);
	a->token = t;
	return 0;
}

void
api_free(struct api *a)
{
	if (!a)
		return;
	if (a->d.fo)
		failover_set_event_observer(a->d.fo, NULL, NULL);
	if (a->d.health)
		health_set_observer(a->d.health, NULL, NULL);
	if (a->d.hooks)
		hook_set_observer(a->d.hooks, NULL, NULL);
	if (a->epfd >= 0)
		loop_del_fd(a->d.loop, a->epfd);
	if (a->mhd)
		MHD_stop_daemon(a->mhd);
	loop_timer_free(a->timer);
	if (a->token)
		OPENSSL_cleanse(a->token, strlen(a->token));
	free(a->token);
	free(a->pem_cert);
	if (a->pem_key)
		OPENSSL_cleanse(a->pem_key, strlen(a->pem_key));
	free(a->pem_key);
	free(a->pem_ca);
	free(a);
}
