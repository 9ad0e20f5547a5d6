/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * vip.c - who holds the virtual IP, and keeping that true.
 *
 * The election says, after each of its steps, whether this peer is
 * entitled (coordinator with a valid lease) and until when. The VIP is on
 * this host only while that holds:
 *
 *   RELEASED --entitled--> PROBING --no claimant--> HELD
 *       ^                     |claimant                |
 *       |                     v                        |
 *       +---------------- CONFLICT (re-probe) <--------+ lease ending,
 *                                                        step-down, stop
 *
 * - It is released margin before the lease can end (one heartbeat
 *   interval), by a timer of its own, so a coordinator that stops hearing
 *   echoes has dropped the VIP before any other peer can be elected (the
 *   lease inequality leaves that room; doc/election.md).
 * - Before adding, an ARP probe (RFC 5227) or an IPv6 duplicate-address
 *   solicitation: an answer within probe_timeout means another host has
 *   the address; then it is not added, vip-conflict is logged, and the
 *   probe is retried while entitled.
 * - While held: announcements on a back-off schedule plus a periodic
 *   refresh; a delete by someone else is undone at once (vip-foreign-delete,
 *   vip-readded), but if it keeps happening the election is told to step
 *   down; the link going down releases and steps down; another MAC claiming
 *   the address is answered with a fresh announcement and logged.
 * - At start every address tagged as pgvigil's is removed: nobody is
 *   entitled at start, so such an address is a leftover of a crash.
 *
 * Netlink requests wait for the kernel's ACK (a local round trip); frames
 * go out from an AF_PACKET socket. Nothing here shells out.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/loop.h"
#include "ctl/json.h"
#include "hooks/hook.h"
#include "vip/announce.h"
#include "vip/nl.h"
#include "vip/vip.h"

#define READD_WINDOW_MS 10000	/* foreign deletes counted over this window */
#define READD_MAX 5		/* more than this in the window: step down */
#define CONFLICT_RETRY_MS 1000
#define RECONCILE_MS 30000	/* the slow safety net */
#define RESIGN_HOLD_MS 5000

enum vip_st {
	VS_NONE,		/* no VIP configured, or a witness */
	VS_RELEASED,
	VS_PROBING,
	VS_HELD,
	VS_CONFLICT,		/* a claimant answered the probe; retrying */
	VS_LINK_DOWN,
};

static const char *const st_names[] = {
	[VS_NONE] = "none", [VS_RELEASED] = "released", [VS_PROBING] = "probing",
	[VS_HELD] = "held", [VS_CONFLICT] = "conflict", [VS_LINK_DOWN] = "link-down",
};

struct vip {
	struct loop *loop;		/* borrowed */
	const struct conf *conf;	/* borrowed: the running configuration */
	struct hook_runner *hooks;	/* borrowed */
	vip_trouble_cb on_trouble;
	void *arg;			/* borrowed */
	int64_t self;
	enum vip_st st;
	int family;
	uint8_t addr[16];
	uint8_t prefixlen;
	char addr_text[64];
	char ifname[IFNAMSIZ];
	char label[IFNAMSIZ];
	struct vip_nl_link link;
	struct vip_nl *nl;		/* owned */
	struct vip_pkt *pkt;		/* owned */
	struct loop_timer *release_t;	/* owned by the loop: lease end - margin */
	struct loop_timer *probe_t;	/* probe window, conflict retry */
	struct loop_timer *announce_t;	/* announcement schedule and refresh */
	struct loop_timer *reconcile_t;
	bool entitled;
	uint64_t lease_end;
	uint64_t term;
	unsigned announce_n;		/* announcements sent in this schedule */
	uint64_t readd_times[READD_MAX + 1];
	size_t nreadd;
	bool conflict_seen;		/* a claimant answered during this probe */
	uint8_t conflict_mac[6];
	/* counters */
	uint64_t announcements, conflicts, foreign_deletes, readds, acquired,
		released;
};

static void acquire(struct vip *v);
static void release(struct vip *v, const char *why);

static uint64_t
margin_ms(const struct vip *v)
{
	return (uint64_t)v->conf->wd.heartbeat_ms;
}

static void
mac_text(const uint8_t *m, char *buf, size_t len)
{
	snprintf(buf, len, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3],
		 m[4], m[5]);
}

static void
run_hook(struct vip *v, const char *name, const char *cmd)
{
	char self[24], term[24];
	struct hook_var vars[4];
	struct hook_spec spec;

	if (!cmd || !cmd[0])
		return;
	snprintf(self, sizeof(self), "%" PRId64, v->self);
	snprintf(term, sizeof(term), "%" PRIu64, v->term);
	vars[0] = (struct hook_var){ 'v', "VIP", v->addr_text };
	vars[1] = (struct hook_var){ 'I', "INTERFACE", v->ifname };
	vars[2] = (struct hook_var){ 'i', "PEER_ID", self };
	vars[3] = (struct hook_var){ 'T', "TERM", term };
	/* The VIP does not depend on the hook: its outcome is only logged. */
	conf_hook_spec(v->conf, name, cmd, vars, 4, &spec);
	hook_run(v->hooks, &spec, NULL, NULL);
}

/* ---- announcements ------------------------------------------------------- */

static void
send_announcement(struct vip *v)
{
	uint8_t f[VIP_FRAME_MAX];
	size_t n;

	if (!v->pkt)
		return;
	if (v->family == AF_INET) {
		struct in_addr a;

		memcpy(&a, v->addr, 4);
		n = vip_arp_build(f, sizeof(f), VIP_ARP_GRATUITOUS_REQUEST, v->link.mac, &a);
		if (n && vip_pkt_send(v->pkt, f, n) == 0)
			v->announcements++;
		if (v->conf->vip.arp_reply_form) {
			n = vip_arp_build(f, sizeof(f), VIP_ARP_GRATUITOUS_REPLY, v->link.mac, &a);
			if (n && vip_pkt_send(v->pkt, f, n) == 0)
				v->announcements++;
		}
	} else {
		struct in6_addr a, ll;

		memcpy(&a, v->addr, 16);
		/* fe80::/64 with the EUI-64 of the MAC: the interface's link-local. */
		memset(&ll, 0, sizeof(ll));
		ll.s6_addr[0] = 0xfe;
		ll.s6_addr[1] = 0x80;
		ll.s6_addr[8] = v->link.mac[0] ^ 0x02;
		ll.s6_addr[9] = v->link.mac[1];
		ll.s6_addr[10] = v->link.mac[2];
		ll.s6_addr[11] = 0xff;
		ll.s6_addr[12] = 0xfe;
		ll.s6_addr[13] = v->link.mac[3];
		ll.s6_addr[14] = v->link.mac[4];
		ll.s6_addr[15] = v->link.mac[5];
		n = vip_na_build(f, sizeof(f), v->link.mac, &ll, &a);
		if (n && vip_pkt_send(v->pkt, f, n) == 0)
			v->announcements++;
	}
}

/* Offsets 0, interval, 3 interval, 7 interval...: the gap doubles. */
static void
on_announce(struct loop *loop, struct loop_timer *t, void *arg)
{
	struct vip *v = arg;
	uint64_t interval = (uint64_t)v->conf->vip.announce_interval_ms;

	(void)loop;
	if (v->st != VS_HELD)
		return;
	send_announcement(v);
	v->announce_n++;
	if (v->announce_n < (unsigned)v->conf->vip.announce_count)
		loop_timer_in(t, interval << (v->announce_n - 1));
	else if (v->conf->vip.announce_refresh_ms > 0)
		loop_timer_in(t, (uint64_t)v->conf->vip.announce_refresh_ms);
}

static void
start_announcing(struct vip *v)
{
	v->announce_n = 0;
	loop_timer_in(v->announce_t, 0);
}

/* ---- add and remove ------------------------------------------------------- */

static int
add_address(struct vip *v)
{
	char err[256];
	int rc = vip_nl_addr_add(v->nl, v->link.ifindex, v->family, v->addr,
				 v->prefixlen, v->family == AF_INET ? v->label : NULL,
				 err, sizeof(err));

	if (rc < 0)
		log_error("%s", err);
	return rc < 0 ? -1 : 0;
}

static void
remove_address(struct vip *v)
{
	char err[256];

	if (vip_nl_addr_del(v->nl, v->link.ifindex, v->family, v->addr, v->prefixlen,
			    err, sizeof(err)) < 0)
		log_error("%s", err);
}

static void
release(struct vip *v, const char *why)
{
	bool was_held = v->st == VS_HELD;

	loop_timer_stop(v->probe_t);
	loop_timer_stop(v->announce_t);
	loop_timer_stop(v->release_t);
	if (v->st == VS_NONE)
		return;
	if (was_held || v->st == VS_PROBING || v->st == VS_CONFLICT)
		remove_address(v);	/* idempotent: safe when it is not there */
	if (v->st != VS_LINK_DOWN)
		v->st = VS_RELEASED;
	if (was_held) {
		v->released++;
		log_event("vip-released", "vip=%s interface=%s term=%" PRIu64 " reason=\"%s\"",
			  v->addr_text, v->ifname, v->term, why);
		run_hook(v, "on_vip_released", v->conf->on_vip_released);
	}
}

static void
hold(struct vip *v)
{
	if (add_address(v) < 0) {
		/* Could not add: count as trouble; the election decides. */
		v->st = VS_RELEASED;
		if (v->on_trouble)
			v->on_trouble(v->arg, "could not add the VIP");
		return;
	}
	v->st = VS_HELD;
	v->acquired++;
	log_event("vip-acquired", "vip=%s interface=%s term=%" PRIu64, v->addr_text,
		  v->ifname, v->term);
	start_announcing(v);
	run_hook(v, "on_vip_acquired", v->conf->on_vip_acquired);
}

/* ---- probe ---------------------------------------------------------------- */

static void
send_probe(struct vip *v)
{
	uint8_t f[VIP_FRAME_MAX];
	size_t n;

	if (!v->pkt)
		return;
	if (v->family == AF_INET) {
		struct in_addr a;

		memcpy(&a, v->addr, 4);
		n = vip_arp_build(f, sizeof(f), VIP_ARP_PROBE, v->link.mac, &a);
	} else {
		struct in6_addr a;

		memcpy(&a, v->addr, 16);
		n = vip_ns_probe_build(f, sizeof(f), v->link.mac, &a);
	}
	if (n)
		vip_pkt_send(v->pkt, f, n);
}

static bool
still_entitled(const struct vip *v)
{
	return v->entitled && clock_now_ms() + margin_ms(v) < v->lease_end;
}

static void
on_probe_timer(struct loop *loop, struct loop_timer *t, void *arg)
{
	struct vip *v = arg;

	(void)loop;
	(void)t;
	if (!still_entitled(v)) {
		release(v, "lease ending");
		return;
	}
	if (v->st == VS_CONFLICT) {
		acquire(v);	/* retry the probe */
		return;
	}
	if (v->st != VS_PROBING)
		return;
	if (v->conflict_seen) {
		char mac[24];

		mac_text(v->conflict_mac, mac, sizeof(mac));
		v->conflicts++;
		v->st = VS_CONFLICT;
		/*
		 * Another host has the address: adding it would make two. Wait
		 * and probe again (stepping down would only move the same
		 * conflict to the next coordinator); fencing that host is the
		 * operator's or the failover layer's call.
		 */
		log_event("vip-conflict", "vip=%s claimant=%s stage=probe detail=\"another host answered for the VIP; not adding it\"",
			  v->addr_text, mac);
		loop_timer_in(v->probe_t, CONFLICT_RETRY_MS);
		return;
	}
	hold(v);
}

static void
acquire(struct vip *v)
{
	if (v->st == VS_NONE || v->st == VS_LINK_DOWN || v->st == VS_HELD)
		return;
	v->conflict_seen = false;
	if (v->conf->vip.probe_timeout_ms == 0) {
		hold(v);
		return;
	}
	v->st = VS_PROBING;
	send_probe(v);
	loop_timer_in(v->probe_t, (uint64_t)v->conf->vip.probe_timeout_ms);
}

/* ---- entitlement ---------------------------------------------------------- */

static void
on_release_timer(struct loop *loop, struct loop_timer *t, void *arg)
{
	struct vip *v = arg;

	(void)loop;
	(void)t;
	/* Not renewed in time: drop the VIP before the lease can end. */
	if (v->st == VS_HELD || v->st == VS_PROBING || v->st == VS_CONFLICT)
		release(v, "lease ending");
}

void
vip_set_entitlement(struct vip *v, bool entitled, uint64_t lease_end, uint64_t term,
		    const char *why_not)
{
	if (!v || v->st == VS_NONE)
		return;
	v->entitled = entitled;
	v->term = term;
	if (!entitled) {
		v->lease_end = 0;
		if (v->st == VS_HELD || v->st == VS_PROBING || v->st == VS_CONFLICT)
			release(v, why_not ? why_not : "not coordinator");
		return;
	}
	v->lease_end = lease_end;
	if (lease_end <= margin_ms(v) || clock_now_ms() + margin_ms(v) >= lease_end) {
		release(v, "lease ending");
		return;
	}
	loop_timer_at(v->release_t, lease_end - margin_ms(v));
	if (v->st == VS_RELEASED)
		acquire(v);
}

/* ---- monitoring ------------------------------------------------------------ */

static bool
is_ours(const struct vip *v, const struct vip_nl_addr *a)
{
	size_t n = v->family == AF_INET ? 4 : 16;

	return a->family == v->family && a->ifindex == v->link.ifindex &&
	       memcmp(a->addr, v->addr, n) == 0;
}

static void
on_addr(const struct vip_nl_addr *a, void *arg)
{
	struct vip *v = arg;
	uint64_t now = clock_now_ms();

	if (v->st != VS_HELD || a->added || !is_ours(v, a))
		return;
	/* Deleted behind our back while we are entitled: put it back at once. */
	v->foreign_deletes++;
	log_event("vip-foreign-delete", "vip=%s interface=%s", v->addr_text, v->ifname);
	size_t k = 0;

	for (size_t i = 0; i < v->nreadd; i++)
		if (now - v->readd_times[i] < READD_WINDOW_MS)
			v->readd_times[k++] = v->readd_times[i];
	v->nreadd = k;
	if (v->nreadd >= READD_MAX) {
		release(v, "removed too often by someone else");
		if (v->on_trouble)
			v->on_trouble(v->arg, "the VIP keeps being removed by someone else");
		return;
	}
	v->readd_times[v->nreadd++] = now;
	if (!still_entitled(v)) {
		release(v, "lease ending");
		return;
	}
	if (add_address(v) == 0) {
		v->readds++;
		log_event("vip-readded", "vip=%s interface=%s", v->addr_text, v->ifname);
		start_announcing(v);
	}
}

static void
on_link(const struct vip_nl_link *l, void *arg)
{
	struct vip *v = arg;

	if (v->st == VS_NONE || l->ifindex != v->link.ifindex)
		return;
	memcpy(v->link.mac, l->mac, 6);
	if (!l->up && v->st != VS_LINK_DOWN) {
		bool held = v->st == VS_HELD;

		release(v, "link down");
		v->st = VS_LINK_DOWN;
		log_warning("interface \"%s\" of the VIP is down", v->ifname);
		if (held && v->on_trouble)
			v->on_trouble(v->arg, "the VIP's interface is down");
	} else if (l->up && v->st == VS_LINK_DOWN) {
		log_info("interface \"%s\" of the VIP is up again", v->ifname);
		v->st = VS_RELEASED;
		/* An IPv6 address goes with the link: acquire adds it anew. */
		if (still_entitled(v))
			acquire(v);
	}
}

struct reconcile {
	struct vip *v;		/* borrowed */
	bool present;
};

static void
reconcile_addr(const struct vip_nl_addr *a, void *arg)
{
	struct reconcile *r = arg;

	if (is_ours(r->v, a))
		r->present = true;
}

/* Makes the kernel's state match ours: after lost events, and now and then. */
static void
reconcile(struct vip *v)
{
	struct reconcile r = { v, false };
	char err[256];

	if (v->st == VS_NONE || vip_nl_addr_dump(v->nl, reconcile_addr, &r, err, sizeof(err)) < 0)
		return;
	if (v->st == VS_HELD && !r.present) {
		struct vip_nl_addr gone = { .added = false, .family = v->family,
					    .ifindex = v->link.ifindex };

		memcpy(gone.addr, v->addr, sizeof(gone.addr));
		on_addr(&gone, v);
	} else if (v->st != VS_HELD && v->st != VS_PROBING && r.present) {
		remove_address(v);
	}
}

static void
on_resync(void *arg)
{
	reconcile(arg);
}

static void
on_reconcile_timer(struct loop *loop, struct loop_timer *t, void *arg)
{
	(void)loop;
	reconcile(arg);
	loop_timer_in(t, RECONCILE_MS);
}

/* Someone on the link says it has an address: is it ours? */
static void
on_claim(const struct vip_claim *c, void *arg)
{
	struct vip *v = arg;
	size_t n = v->family == AF_INET ? 4 : 16;
	char mac[24];

	if (c->family != v->family || memcmp(c->addr, v->addr, n) != 0 ||
	    memcmp(c->mac, v->link.mac, 6) == 0)
		return;
	if (v->st == VS_PROBING) {
		v->conflict_seen = true;
		memcpy(v->conflict_mac, c->mac, 6);
		return;
	}
	if (v->st != VS_HELD)
		return;
	mac_text(c->mac, mac, sizeof(mac));
	v->conflicts++;
	log_event("vip-conflict", "vip=%s claimant=%s stage=held detail=\"another host claims the VIP; announcing again\"",
		  v->addr_text, mac);
	send_announcement(v);
}

/* ---- lifecycle ------------------------------------------------------------- */

#define PURGE_MAX 64

/* Tagged addresses found by the start-up dump; removed after it. */
struct purge {
	struct vip_nl_addr found[PURGE_MAX];
	size_t n;
	bool overflow;
	int family;		/* with only: remove this address only */
	const uint8_t *only;	/* borrowed; NULL = every tagged address */
};

static void
purge_collect(const struct vip_nl_addr *a, void *arg)
{
	struct purge *p = arg;

	/* No request may be made from inside a dump: collect, act after. */
	if (!a->added || !a->tagged)
		return;
	if (p->only && (a->family != p->family ||
			memcmp(a->addr, p->only, p->family == AF_INET ? 4 : 16) != 0))
		return;
	if (p->n == PURGE_MAX) {
		p->overflow = true;
		return;
	}
	p->found[p->n++] = *a;
}

/*
 * Removes every address tagged as pgvigil's (with only: that address
 * alone, tagged). Returns how many were removed, or -1 with err set if one
 * could not be removed: starting with a leftover VIP in place could make
 * this host a second holder.
 */
static int
purge(struct vip_nl *nl, int family, const uint8_t *only, const char *detail,
      char *err, size_t errlen)
{
	struct purge *p = calloc(1, sizeof(*p));
	char text[64];
	int rc = 0, removed = 0;

	if (!p) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	p->family = family;
	p->only = only;
	if (vip_nl_addr_dump(nl, purge_collect, p, err, errlen) < 0) {
		free(p);
		return -1;
	}
	for (size_t i = 0; i < p->n && rc == 0; i++) {
		const struct vip_nl_addr *a = &p->found[i];

		inet_ntop(a->family, a->addr, text, sizeof(text));
		if (vip_nl_addr_del(nl, a->ifindex, a->family, a->addr, a->prefixlen,
				    err, errlen) < 0) {
			rc = -1;
			break;
		}
		removed++;
		log_event("vip-purged", "vip=%s ifindex=%d detail=\"%s\"",
			  text, a->ifindex, detail);
	}
	if (rc == 0 && p->overflow) {
		snprintf(err, errlen, "more than %d addresses are tagged as pgvigil's; remove them by hand",
			 PURGE_MAX);
		rc = -1;
	}
	free(p);
	return rc < 0 ? rc : removed;
}

int
vip_release_leftover(const struct conf *conf, char *err, size_t errlen)
{
	uint8_t addr[16];
	int family, rc;
	struct vip_nl *nl;

	if (!conf->vip.address || !conf->vip.address[0])
		return 0;
	if (inet_pton(AF_INET, conf->vip.address, addr) == 1) {
		family = AF_INET;
	} else if (inet_pton(AF_INET6, conf->vip.address, addr) == 1) {
		family = AF_INET6;
	} else {
		snprintf(err, errlen, "invalid VIP address \"%s\"", conf->vip.address);
		return -1;
	}
	/* Requests only: no monitor, no loop. */
	nl = vip_nl_new(NULL, NULL, NULL, NULL, NULL, err, errlen);
	if (!nl)
		return -1;
	rc = purge(nl, family, addr, "left by a daemon that did not stop cleanly",
		   err, errlen);
	vip_nl_free(nl);
	return rc;
}

struct vip *
vip_new(struct loop *loop, const struct conf *conf, int64_t self,
	struct hook_runner *hooks, vip_trouble_cb on_trouble, void *arg,
	char *err, size_t errlen)
{
	struct vip *v = calloc(1, sizeof(*v));
	const struct conf_peer *me = conf_peer_by_id(conf, self);

	if (!v) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	v->loop = loop;
	v->conf = conf;
	v->hooks = hooks;
	v->on_trouble = on_trouble;
	v->arg = arg;
	v->self = self;
	v->st = VS_NONE;
	if (!conf->vip.address || !conf->vip.address[0] || (me && me->witness))
		return v;	/* nothing to hold here */

	snprintf(v->addr_text, sizeof(v->addr_text), "%s", conf->vip.address);
	snprintf(v->ifname, sizeof(v->ifname), "%s", conf->vip.interface);
	snprintf(v->label, sizeof(v->label), "%.11s:vip", conf->vip.interface);
	if (inet_pton(AF_INET, v->addr_text, v->addr) == 1) {
		v->family = AF_INET;
		v->prefixlen = 32;
	} else if (inet_pton(AF_INET6, v->addr_text, v->addr) == 1) {
		v->family = AF_INET6;
		v->prefixlen = 128;
	} else {
		snprintf(err, errlen, "invalid VIP address \"%s\"", v->addr_text);
		goto fail;
	}
	v->nl = vip_nl_new(loop, on_addr, on_link, on_resync, v, err, errlen);
	if (!v->nl || vip_nl_get_link(v->nl, v->ifname, &v->link, err, errlen) < 0)
		goto fail;
	v->pkt = vip_pkt_new(loop, v->link.ifindex, on_claim, v, err, errlen);
	v->release_t = loop_timer_new(loop, on_release_timer, v);
	v->probe_t = loop_timer_new(loop, on_probe_timer, v);
	v->announce_t = loop_timer_new(loop, on_announce, v);
	v->reconcile_t = loop_timer_new(loop, on_reconcile_timer, v);
	if (!v->pkt || !v->release_t || !v->probe_t || !v->announce_t || !v->reconcile_t)
		goto fail;
	/* Nobody is entitled at start: anything tagged as ours is a leftover. */
	if (purge(v->nl, 0, NULL, "left by an earlier run; this peer is not entitled at start",
		  err, errlen) < 0)
		goto fail;
	v->st = v->link.up ? VS_RELEASED : VS_LINK_DOWN;
	loop_timer_in(v->reconcile_t, RECONCILE_MS);
	log_info("VIP %s on interface \"%s\" (ifindex %d); not held at start",
		 v->addr_text, v->ifname, v->link.ifindex);
	return v;
fail:
	vip_free(v);
	return NULL;
}

void
vip_reload(struct vip *v, const struct conf *conf)
{
	if (v)
		v->conf = conf;
}

void
vip_stop(struct vip *v)
{
	if (v && v->st != VS_NONE)
		release(v, "clean stop");
}

void
vip_free(struct vip *v)
{
	if (!v)
		return;
	/* Whatever the way out, a held VIP does not outlive the daemon. */
	if (v->st == VS_HELD)
		release(v, "daemon exit");
	loop_timer_free(v->release_t);
	loop_timer_free(v->probe_t);
	loop_timer_free(v->announce_t);
	loop_timer_free(v->reconcile_t);
	vip_pkt_free(v->pkt);
	vip_nl_free(v->nl);
	free(v);
}

const char *
vip_state(const struct vip *v)
{
	return v ? st_names[v->st] : "none";
}

void
vip_status_json(const struct vip *v, struct json *j, int64_t holder)
{
	json_key(j, "vip");
	if (!v || !v->addr_text[0]) {
		json_null(j);
		return;
	}
	json_begin_object(j);
	json_key(j, "address");
	json_str(j, v->addr_text);
	json_key(j, "interface");
	json_str(j, v->ifname);
	json_key(j, "holder");
	if (holder > 0)
		json_int(j, holder);
	else
		json_null(j);
	json_key(j, "state");
	json_str(j, st_names[v->st]);
	json_key(j, "announcements");
	json_uint(j, v->announcements);
	json_key(j, "conflicts");
	json_uint(j, v->conflicts);
	json_key(j, "foreign_deletes");
	json_uint(j, v->foreign_deletes);
	json_key(j, "readds");
	json_uint(j, v->readds);
	json_end_object(j);
}

void
vip_status_line(const struct vip *v, FILE *out, int64_t holder)
{
	if (!v || !v->addr_text[0])
		return;
	fprintf(out, "  VIP %s on %s: ", v->addr_text, v->ifname);
	if (holder > 0)
		fprintf(out, "holder peer %" PRId64, holder);
	else
		fprintf(out, "no holder");
	fprintf(out, ", %s here\n", st_names[v->st]);
}

void
vip_counters(const struct vip *v, uint64_t *acquired, uint64_t *announcements)
{
	*acquired = v ? v->acquired : 0;
	*announcements = v ? v->announcements : 0;
}
