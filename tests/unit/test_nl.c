/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_nl.c - rtnetlink against the real kernel: links are read, addresses
 * are added tagged (IPv4 label, IFA_PROTO, IPv6 without DAD), found again
 * in a dump, deleted idempotently; the monitor reports foreign changes,
 * link loss and lost events, and believes only the kernel.
 *
 * Needs root: main() moves the process into a network namespace of its own
 * (unshare(CLONE_NEWNET)) before anything else, so only interfaces made
 * here (the veth pair vip0/vip0p, and a few others per test) are ever
 * touched; without root every test is skipped. A veth, not a dummy: this
 * kernel is built without the dummy driver, and a veth has a carrier only
 * while its peer is up, which is what the link tests need anyway. ip(8)
 * is run through system() here only, to make changes that did not come
 * from the code under test. Addresses are documentation ones
 * (192.0.2.0/24, 2001:db8::/32).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <linux/rtnetlink.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/loop.h"
#include "vip/nl.h"

#define DEADLINE_MS 5000
#define MAX_EVENTS 512
#define LONG_IF "vip0123456789a"	/* 14 bytes: "<it>:vip" is 18 */

static const uint8_t V4[4] = { 192, 0, 2, 200 };
static const uint8_t V4B[4] = { 192, 0, 2, 201 };
static const uint8_t V6[16] = { 0x20, 0x01, 0x0d, 0xb8, [14] = 0x02,
				[15] = 0x00 };
static const uint8_t VIP0_MAC[6] = { 0x02, 0x00, 0x00, 0x00, 0x02, 0x00 };

static bool netns_ok;

struct fx {
	struct loop *loop;
	struct vip_nl *nl;
	int ifindex;			/* of vip0 */
	struct vip_nl_addr addrs[MAX_EVENTS];
	int naddrs;
	struct vip_nl_link links[MAX_EVENTS];
	int nlinks;
	int resyncs;
	bool free_on_event;		/* on_addr frees nl */
	char err[256];
};

/* ---- helpers ------------------------------------------------------------ */

static int LOG_PRINTF(1, 2)
sh(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	if (st == -1 || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

/* The line of `ip -6 addr show dev ifname` naming addr, or "" if none. */
static void
ip6_line(const char *ifname, const char *addr, char *out, size_t outlen)
{
	char cmd[128], line[512];
	FILE *p;

	out[0] = '\0';
	snprintf(cmd, sizeof(cmd), "ip -6 addr show dev %s", ifname);
	p = popen(cmd, "r");
	assert_non_null(p);
	while (fgets(line, sizeof(line), p))
		if (strstr(line, addr) && !out[0])
			snprintf(out, outlen, "%s", line);
	pclose(p);
}

static void
on_addr(const struct vip_nl_addr *a, void *arg)
{
	struct fx *f = arg;

	if (f->naddrs < MAX_EVENTS)
		f->addrs[f->naddrs++] = *a;
	if (f->free_on_event) {
		vip_nl_free(f->nl);
		f->nl = NULL;
		f->free_on_event = false;
	}
}

static void
on_link(const struct vip_nl_link *l, void *arg)
{
	struct fx *f = arg;

	if (f->nlinks < MAX_EVENTS)
		f->links[f->nlinks++] = *l;
}

static void
on_resync(void *arg)
{
	struct fx *f = arg;

	f->resyncs++;
}

static void
forget_events(struct fx *f)
{
	f->naddrs = 0;
	f->nlinks = 0;
	f->resyncs = 0;
}

static bool
saw_addr(const struct fx *f, int family, const uint8_t *addr, bool added)
{
	size_t len = family == AF_INET ? 4 : 16;
	int i;

	for (i = 0; i < f->naddrs; i++)
		if (f->addrs[i].family == family &&
		    f->addrs[i].added == added &&
		    memcmp(f->addrs[i].addr, addr, len) == 0)
			return true;
	return false;
}

static bool
saw_link(const struct fx *f, const char *name, bool up)
{
	int i;

	for (i = 0; i < f->nlinks; i++)
		if (strcmp(f->links[i].name, name) == 0 &&
		    f->links[i].up == up)
			return true;
	return false;
}

/* Runs the loop until cond holds, or fails at the deadline. */
#define RUN_UNTIL(f, cond)						\
	do {								\
		uint64_t end_ = clock_now_ms() + DEADLINE_MS;		\
		while (!(cond) && clock_now_ms() < end_)		\
			assert_int_equal(loop_run_once((f)->loop, 50), 0); \
		assert_true(cond);					\
	} while (0)

struct dump_list {
	struct vip_nl_addr a[MAX_EVENTS];
	int n;
	struct vip_nl *nl;		/* borrowed: for the nesting tests */
	int nested_rc;
	char nested_err[256];
	bool free_in_cb;
};

static void
dump_cb(const struct vip_nl_addr *a, void *arg)
{
	struct dump_list *d = arg;

	if (d->n < MAX_EVENTS)
		d->a[d->n++] = *a;
}

static const struct vip_nl_addr *
dump_find(struct fx *f, struct dump_list *d, int family, const uint8_t *addr)
{
	size_t len = family == AF_INET ? 4 : 16;
	int i;

	d->n = 0;
	assert_int_equal(vip_nl_addr_dump(f->nl, dump_cb, d, f->err,
					  sizeof(f->err)), 0);
	for (i = 0; i < d->n; i++)
		if (d->a[i].family == family &&
		    memcmp(d->a[i].addr, addr, len) == 0)
			return &d->a[i];
	return NULL;
}

/* ---- fixture ------------------------------------------------------------ */

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct vip_nl_link l;

	assert_non_null(f);
	*state = f;
	if (!netns_ok)
		return 0;
	f->loop = loop_new();
	assert_non_null(f->loop);
	f->nl = vip_nl_new(f->loop, on_addr, on_link, on_resync, f, f->err,
			   sizeof(f->err));
	assert_non_null(f->nl);
	f->ifindex = (int)if_nametoindex("vip0");
	assert_true(f->ifindex > 0);
	/* a veth's carrier follows its peer's, a moment later */
	RUN_UNTIL(f, vip_nl_get_link(f->nl, "vip0", &l, f->err,
				     sizeof(f->err)) == 0 && l.up);
	forget_events(f);
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	vip_nl_free(f->nl);
	loop_free(f->loop);
	if (netns_ok) {
		sh("ip link del " LONG_IF " 2>/dev/null; "
		   "ip link del vip1 2>/dev/null; ip link del vipbr0 2>/dev/null; "
		   "ip link set vip0 up; ip addr flush dev vip0");
	}
	free(f);
	return 0;
}

#define NEED_NETNS()				\
	do {					\
		if (!netns_ok)			\
			skip();			\
	} while (0)

/* ---- links -------------------------------------------------------------- */

static void
test_nl_get_link_reports_index_mac_mtu_and_carrier(void **state)
{
	struct fx *f = *state;
	struct vip_nl_link l;

	NEED_NETNS();
	assert_int_equal(vip_nl_get_link(f->nl, "vip0", &l, f->err,
					 sizeof(f->err)), 0);
	assert_int_equal(l.ifindex, f->ifindex);
	assert_string_equal(l.name, "vip0");
	assert_true(l.up);
	assert_memory_equal(l.mac, VIP0_MAC, 6);
	assert_int_equal(l.mtu, 1400);

	assert_int_equal(sh("ip link set vip0 down"), 0);
	assert_int_equal(vip_nl_get_link(f->nl, "vip0", &l, f->err,
					 sizeof(f->err)), 0);
	assert_false(l.up);
}

static void
test_nl_get_link_of_missing_interface_fails(void **state)
{
	struct fx *f = *state;
	struct vip_nl_link l;

	NEED_NETNS();
	assert_int_equal(vip_nl_get_link(f->nl, "nosuch0", &l, f->err,
					 sizeof(f->err)), -1);
	assert_string_equal(f->err, "interface \"nosuch0\" does not exist");

	assert_int_equal(vip_nl_get_link(f->nl, "waytoolonginterface", &l,
					 f->err, sizeof(f->err)), -1);
	assert_non_null(strstr(f->err, "invalid interface name"));
}

/* ---- addresses ---------------------------------------------------------- */

static void
test_nl_ipv4_add_is_tagged_in_dump(void **state)
{
	struct fx *f = *state;
	static struct dump_list d;
	const struct vip_nl_addr *a;

	NEED_NETNS();
	assert_int_equal(vip_nl_addr_add(f->nl, f->ifindex, AF_INET, V4, 32,
					 "vip0:vip", f->err, sizeof(f->err)),
			 0);
	a = dump_find(f, &d, AF_INET, V4);
	assert_non_null(a);
	assert_true(a->added);
	assert_true(a->tagged);
	assert_int_equal(a->proto, VIP_NL_PROTO);
	assert_string_equal(a->label, "vip0:vip");
	assert_int_equal(a->prefixlen, 32);
	assert_int_equal(a->ifindex, f->ifindex);

	/* someone else's address on the same link is not ours */
	assert_int_equal(sh("ip addr add 192.0.2.201/32 dev vip0"), 0);
	a = dump_find(f, &d, AF_INET, V4B);
	assert_non_null(a);
	assert_false(a->tagged);
	assert_int_equal(a->proto, 0);
	assert_string_equal(a->label, "vip0");
}

static void
test_nl_add_twice_returns_1(void **state)
{
	struct fx *f = *state;

	NEED_NETNS();
	assert_int_equal(vip_nl_addr_add(f->nl, f->ifindex, AF_INET, V4, 32,
					 "vip0:vip", f->err, sizeof(f->err)),
			 0);
	assert_int_equal(vip_nl_addr_add(f->nl, f->ifindex, AF_INET, V4, 32,
					 "vip0:vip", f->err, sizeof(f->err)),
			 1);
	assert_int_equal(vip_nl_addr_add(f->nl, f->ifindex, AF_INET6, V6, 128,
					 NULL, f->err, sizeof(f->err)), 0);
	assert_int_equal(vip_nl_addr_add(f->nl, f->ifindex, AF_INET6, V6, 128,
					 NULL, f->err, sizeof(f->err)), 1);
}

static void
test_nl_del_is_idempotent(void **state)
{
	struct fx *f = *state;
	static struct dump_list d;

	NEED_NETNS();
	assert_int_equal(vip_nl_addr_add(f->nl, f->ifindex, AF_INET, V4, 32,
					 "vip0:vip", f->err, sizeof(f->err)),
			 0);
	assert_int_equal(vip_nl_addr_del(f->nl, f->ifindex, AF_INET, V4, 32,
					 f->err, sizeof(f->err)), 0);
	assert_null(dump_find(f, &d, AF_INET, V4));
	assert_int_equal(vip_nl_addr_del(f->nl, f->ifindex, AF_INET, V4, 32,
					 f->err, sizeof(f->err)), 1);

	assert_int_equal(vip_nl_addr_add(f->nl, f->ifindex, AF_INET6, V6, 128,
					 NULL, f->err, sizeof(f->err)), 0);
	assert_int_equal(vip_nl_addr_del(f->nl, f->ifindex, AF_INET6, V6, 128,
					 f->err, sizeof(f->err)), 0);
	assert_null(dump_find(f, &d, AF_INET6, V6));
	assert_int_equal(vip_nl_addr_del(f->nl, f->ifindex, AF_INET6, V6, 128,
					 f->err, sizeof(f->err)), 1);

	/* the interface is gone: so is the address */
	assert_int_equal(vip_nl_addr_del(f->nl, 9999, AF_INET, V4, 32,
					 f->err, sizeof(f->err)), 1);
}

/*
 * vip0 is a veth, where the kernel runs DAD: the control address, added by
 * ip(8) without nodad, is still tentative right after; ours never is.
 */
static void
test_nl_ipv6_add_is_nodad_usable_at_once_and_tagged(void **state)
{
	struct fx *f = *state;
	static struct dump_list d;
	const struct vip_nl_addr *a;
	char line[512];

	NEED_NETNS();
	assert_int_equal(sh("ip -6 addr add 2001:db8::201/128 dev vip0"), 0);
	ip6_line("vip0", "2001:db8::201/128", line, sizeof(line));
	assert_non_null(strstr(line, "tentative"));

	/* a label for IPv6 is ignored: the kernel has none */
	assert_int_equal(vip_nl_addr_add(f->nl, f->ifindex, AF_INET6, V6, 128,
					 "vip0:vip", f->err, sizeof(f->err)),
			 0);
	ip6_line("vip0", "2001:db8::200/128", line, sizeof(line));
	assert_non_null(strstr(line, "nodad"));
	assert_null(strstr(line, "tentative"));

	a = dump_find(f, &d, AF_INET6, V6);
	assert_non_null(a);
	assert_true(a->tagged);
	assert_int_equal(a->proto, VIP_NL_PROTO);
	assert_string_equal(a->label, "");
	assert_int_equal(a->prefixlen, 128);
}

static void
test_nl_label_too_long_is_refused(void **state)
{
	struct fx *f = *state;
	int idx;

	NEED_NETNS();
	assert_int_equal(sh("ip link add " LONG_IF " type veth peer name vipl"), 0);
	idx = (int)if_nametoindex(LONG_IF);
	assert_true(idx > 0);
	assert_int_equal(vip_nl_addr_add(f->nl, idx, AF_INET, V4, 32,
					 LONG_IF ":vip", f->err,
					 sizeof(f->err)), -1);
	assert_string_equal(f->err, "could not add address 192.0.2.200/32: "
			    "label \"vip0123456789a:vip\" is too long "
			    "(18 bytes, at most 15)");
}

static void
test_nl_label_must_start_with_interface_name(void **state)
{
	struct fx *f = *state;

	NEED_NETNS();
	assert_int_equal(vip_nl_addr_add(f->nl, f->ifindex, AF_INET, V4, 32,
					 "eth9:vip", f->err, sizeof(f->err)),
			 -1);
	assert_string_equal(f->err, "could not add address 192.0.2.200/32 to "
			    "vip0: label \"eth9:vip\" does not start with "
			    "\"vip0:\"");
	assert_int_equal(vip_nl_addr_add(f->nl, f->ifindex, AF_INET, V4, 32,
					 "vip00:vip", f->err, sizeof(f->err)),
			 -1);
	/* nothing was added */
	assert_int_equal(vip_nl_addr_del(f->nl, f->ifindex, AF_INET, V4, 32,
					 f->err, sizeof(f->err)), 1);
}

static void
test_nl_add_to_missing_interface_fails(void **state)
{
	struct fx *f = *state;

	NEED_NETNS();
	assert_int_equal(vip_nl_addr_add(f->nl, 9999, AF_INET, V4, 32,
					 "vip0:vip", f->err, sizeof(f->err)),
			 -1);
	assert_string_equal(f->err, "could not add address 192.0.2.200/32: "
			    "interface with index 9999 does not exist");
	assert_int_equal(vip_nl_addr_add(f->nl, 9999, AF_INET6, V6, 128, NULL,
					 f->err, sizeof(f->err)), -1);
	assert_string_equal(f->err, "could not add address 2001:db8::200/128: "
			    "interface with index 9999 does not exist");
}

static void
test_nl_bad_arguments_are_refused(void **state)
{
	struct fx *f = *state;

	NEED_NETNS();
	assert_int_equal(vip_nl_addr_add(f->nl, f->ifindex, AF_INET, V4, 33,
					 NULL, f->err, sizeof(f->err)), -1);
	assert_string_equal(f->err, "invalid prefix length 33");
	assert_int_equal(vip_nl_addr_del(f->nl, f->ifindex, AF_PACKET, V4, 32,
					 f->err, sizeof(f->err)), -1);
	assert_non_null(strstr(f->err, "invalid address family"));
}

/* The kernel's extended ACK text reaches the message. */
static void
test_nl_kernel_explanation_is_kept(void **state)
{
	struct fx *f = *state;
	FILE *p;

	NEED_NETNS();
	p = fopen("/proc/sys/net/ipv6/conf/vip0/disable_ipv6", "w");
	if (!p)
		skip();
	fputs("1\n", p);
	assert_int_equal(fclose(p), 0);
	assert_int_equal(vip_nl_addr_add(f->nl, f->ifindex, AF_INET6, V6, 128,
					 NULL, f->err, sizeof(f->err)), -1);
	p = fopen("/proc/sys/net/ipv6/conf/vip0/disable_ipv6", "w");
	assert_non_null(p);
	fputs("0\n", p);
	assert_int_equal(fclose(p), 0);
	assert_non_null(strstr(f->err, "could not add address "
			       "2001:db8::200/128 to vip0: "));
	assert_non_null(strstr(f->err, ": Permission denied ("));
	assert_non_null(strstr(f->err, "IPv6 is disabled on this device)"));
}

static void
test_nl_requests_after_a_dump_stay_in_step(void **state)
{
	struct fx *f = *state;
	static struct dump_list d;
	int i;

	NEED_NETNS();
	assert_int_equal(vip_nl_addr_add(f->nl, f->ifindex, AF_INET, V4, 32,
					 "vip0:vip", f->err, sizeof(f->err)),
			 0);
	d.n = 0;
	d.nl = f->nl;
	assert_int_equal(vip_nl_addr_dump(f->nl, dump_cb, &d, f->err,
					  sizeof(f->err)), 0);
	assert_true(d.n > 0);
	/* and the socket is still in step */
	for (i = 0; i < 3; i++)
		assert_int_equal(vip_nl_addr_add(f->nl, f->ifindex, AF_INET,
						 V4, 32, "vip0:vip", f->err,
						 sizeof(f->err)), 1);
}

static void
nesting_cb(const struct vip_nl_addr *a, void *arg)
{
	struct dump_list *d = arg;

	d->n++;
	if (d->free_in_cb) {
		vip_nl_free(d->nl);
		d->nl = NULL;
		d->free_in_cb = false;
		return;
	}
	if (d->n == 1)
		d->nested_rc = vip_nl_addr_add(d->nl, (int)a->ifindex,
					       AF_INET, V4B, 32, NULL,
					       d->nested_err,
					       sizeof(d->nested_err));
}

static void
test_nl_nested_request_and_free_in_dump_callback(void **state)
{
	struct fx *f = *state;
	static struct dump_list d;

	NEED_NETNS();
	assert_int_equal(vip_nl_addr_add(f->nl, f->ifindex, AF_INET, V4, 32,
					 "vip0:vip", f->err, sizeof(f->err)),
			 0);
	memset(&d, 0, sizeof(d));
	d.nl = f->nl;
	assert_int_equal(vip_nl_addr_dump(f->nl, nesting_cb, &d, f->err,
					  sizeof(f->err)), 0);
	assert_int_equal(d.nested_rc, -1);
	assert_string_equal(d.nested_err, "could not add an address: a "
			    "netlink request is already in progress (called "
			    "from a dump callback)");

	memset(&d, 0, sizeof(d));
	d.nl = f->nl;
	d.free_in_cb = true;
	assert_int_equal(vip_nl_addr_dump(f->nl, nesting_cb, &d, f->err,
					  sizeof(f->err)), -1);
	f->nl = NULL;		/* freed by the callback */
	assert_int_equal(d.n, 1);
}

/* ---- the monitor -------------------------------------------------------- */

static void
test_nl_monitor_reports_foreign_add_and_delete(void **state)
{
	struct fx *f = *state;

	NEED_NETNS();
	forget_events(f);
	assert_int_equal(sh("ip addr add 192.0.2.200/32 dev vip0"), 0);
	RUN_UNTIL(f, saw_addr(f, AF_INET, V4, true));
	assert_int_equal(sh("ip addr del 192.0.2.200/32 dev vip0"), 0);
	RUN_UNTIL(f, saw_addr(f, AF_INET, V4, false));

	assert_int_equal(sh("ip addr add 2001:db8::200/128 dev vip0 nodad"),
			 0);
	RUN_UNTIL(f, saw_addr(f, AF_INET6, V6, true));
	assert_int_equal(sh("ip addr del 2001:db8::200/128 dev vip0"), 0);
	RUN_UNTIL(f, saw_addr(f, AF_INET6, V6, false));
	assert_int_equal(f->resyncs, 0);
}

static void
test_nl_monitor_reports_own_add_tagged(void **state)
{
	struct fx *f = *state;
	int i;

	NEED_NETNS();
	forget_events(f);
	assert_int_equal(vip_nl_addr_add(f->nl, f->ifindex, AF_INET, V4, 32,
					 "vip0:vip", f->err, sizeof(f->err)),
			 0);
	RUN_UNTIL(f, saw_addr(f, AF_INET, V4, true));
	for (i = 0; i < f->naddrs; i++)
		if (f->addrs[i].family == AF_INET &&
		    memcmp(f->addrs[i].addr, V4, 4) == 0)
			assert_true(f->addrs[i].tagged);
}

static void
test_nl_monitor_reports_link_down_and_deletion(void **state)
{
	struct fx *f = *state;

	NEED_NETNS();
	forget_events(f);
	assert_int_equal(sh("ip link set vip0 down"), 0);
	RUN_UNTIL(f, saw_link(f, "vip0", false));
	assert_int_equal(sh("ip link set vip0 up"), 0);
	RUN_UNTIL(f, saw_link(f, "vip0", true));

	assert_int_equal(sh("ip link add vip1 type veth peer name vip1p && "
			    "ip link set vip1p up && ip link set vip1 up"), 0);
	RUN_UNTIL(f, saw_link(f, "vip1", true));
	forget_events(f);
	assert_int_equal(sh("ip link del vip1"), 0);
	RUN_UNTIL(f, saw_link(f, "vip1", false));
}

/* A port leaving a bridge gets RTM_DELLINK (AF_BRIDGE): not a link loss. */
static void
test_nl_monitor_ignores_bridge_port_removal(void **state)
{
	struct fx *f = *state;

	NEED_NETNS();
	assert_int_equal(sh("ip link add vipbr0 type bridge && "
			    "ip link set vipbr0 up && "
			    "ip link set vip0 master vipbr0"), 0);
	forget_events(f);
	assert_int_equal(sh("ip link set vip0 nomaster && "
			    "ip addr add 192.0.2.200/32 dev vip0"), 0);
	RUN_UNTIL(f, saw_addr(f, AF_INET, V4, true));
	assert_false(saw_link(f, "vip0", false));
}

/* Finds the port id of the socket subscribed to exactly our groups. */
static uint32_t
monitor_portid(void)
{
	unsigned groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR |
			  RTMGRP_IPV6_IFADDR;
	char line[256];
	uint32_t found = 0;
	FILE *p = fopen("/proc/net/netlink", "r");

	assert_non_null(p);
	while (fgets(line, sizeof(line), p)) {
		unsigned eth, g;
		uint32_t pid;

		if (sscanf(line, "%*s %u %u %x", &eth, &pid, &g) == 3 &&
		    eth == NETLINK_ROUTE && g == groups) {
			assert_int_equal(found, 0);	/* only one */
			found = pid;
		}
	}
	fclose(p);
	assert_true(found != 0);
	return found;
}

static void
test_nl_monitor_ignores_messages_not_from_kernel(void **state)
{
	struct fx *f = *state;
	struct mnl_socket *s;
	struct sockaddr_nl to = { .nl_family = AF_NETLINK };
	char buf[256] = { 0 };
	struct nlmsghdr *nlh;
	struct ifinfomsg *ifi;

	NEED_NETNS();
	to.nl_pid = monitor_portid();
	s = mnl_socket_open(NETLINK_ROUTE);
	assert_non_null(s);
	assert_int_equal(mnl_socket_bind(s, 0, MNL_SOCKET_AUTOPID), 0);

	/* a forged "vip0 is gone" */
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_DELLINK;
	ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = f->ifindex;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, "vip0");
	forget_events(f);
	assert_int_equal(sendto(mnl_socket_get_fd(s), nlh, nlh->nlmsg_len, 0,
				(struct sockaddr *)&to, sizeof(to)),
			 (ssize_t)nlh->nlmsg_len);
	mnl_socket_close(s);

	/* a real event queued behind it bounds the wait */
	assert_int_equal(sh("ip addr add 192.0.2.200/32 dev vip0"), 0);
	RUN_UNTIL(f, saw_addr(f, AF_INET, V4, true));
	assert_false(saw_link(f, "vip0", false));
}

static void
test_nl_monitor_asks_for_resync_after_lost_events(void **state)
{
	struct fx *f = *state;
	char path[] = "/tmp/test_nl.XXXXXX";
	FILE *b;
	int fd, i;

	NEED_NETNS();
	fd = mkstemp(path);
	assert_true(fd >= 0);
	b = fdopen(fd, "w");
	assert_non_null(b);
	/* far more than 1 MiB of events while nobody reads the socket */
	for (i = 0; i < 3000; i++)
		fputs("link set vip0 down\nlink set vip0 up\n", b);
	assert_int_equal(fclose(b), 0);
	forget_events(f);
	assert_int_equal(sh("ip -batch %s", path), 0);
	unlink(path);

	RUN_UNTIL(f, f->resyncs > 0);
	/* still listening afterwards, once the backlog is read */
	do {
		forget_events(f);
		assert_int_equal(loop_run_once(f->loop, 200), 0);
	} while (f->naddrs + f->nlinks > 0);
	assert_int_equal(sh("ip addr add 192.0.2.200/32 dev vip0"), 0);
	RUN_UNTIL(f, saw_addr(f, AF_INET, V4, true));
}

static void
test_nl_free_from_monitor_callback_is_safe(void **state)
{
	struct fx *f = *state;
	uint64_t end;

	NEED_NETNS();
	forget_events(f);
	f->free_on_event = true;
	/* several events in one datagram batch */
	assert_int_equal(sh("ip addr add 192.0.2.200/32 dev vip0 && "
			    "ip addr add 192.0.2.201/32 dev vip0"), 0);
	RUN_UNTIL(f, f->nl == NULL);
	end = clock_now_ms() + 200;
	while (clock_now_ms() < end)
		assert_int_equal(loop_run_once(f->loop, 20), 0);
	assert_int_equal(f->naddrs, 1);
}

static void
test_nl_free_null_is_fine(void **state)
{
	(void)state;
	vip_nl_free(NULL);
}

static void
test_nl_without_loop_has_no_monitor(void **state)
{
	struct vip_nl *nl;
	struct vip_nl_link l;
	char err[256];

	NEED_NETNS();
	nl = vip_nl_new(NULL, NULL, NULL, NULL, NULL, err, sizeof(err));
	assert_non_null(nl);
	assert_int_equal(vip_nl_get_link(nl, "vip0", &l, err, sizeof(err)), 0);
	vip_nl_free(nl);
	(void)state;
}

/* ---- main --------------------------------------------------------------- */

static void
make_netns(void)
{
	if (geteuid() != 0 || unshare(CLONE_NEWNET) < 0) {
		fprintf(stderr, "test_nl: no network namespace of our own "
			"(%s): skipping\n", geteuid() != 0 ? "not root" :
			strerror(errno));
		return;
	}
	if (sh("ip link add vip0 address 02:00:00:00:02:00 mtu 1400 "
	       "type veth peer name vip0p && ip link set vip0p up && "
	       "ip link set vip0 up") != 0) {
		fprintf(stderr, "test_nl: could not create vip0: skipping\n");
		return;
	}
	netns_ok = true;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_nl_get_link_reports_index_mac_mtu_and_carrier),
		T(test_nl_get_link_of_missing_interface_fails),
		T(test_nl_ipv4_add_is_tagged_in_dump),
		T(test_nl_add_twice_returns_1),
		T(test_nl_del_is_idempotent),
		T(test_nl_ipv6_add_is_nodad_usable_at_once_and_tagged),
		T(test_nl_label_too_long_is_refused),
		T(test_nl_label_must_start_with_interface_name),
		T(test_nl_add_to_missing_interface_fails),
		T(test_nl_bad_arguments_are_refused),
		T(test_nl_kernel_explanation_is_kept),
		T(test_nl_requests_after_a_dump_stay_in_step),
		T(test_nl_nested_request_and_free_in_dump_callback),
		T(test_nl_monitor_reports_foreign_add_and_delete),
		T(test_nl_monitor_reports_own_add_tagged),
		T(test_nl_monitor_reports_link_down_and_deletion),
		T(test_nl_monitor_ignores_bridge_port_removal),
		T(test_nl_monitor_ignores_messages_not_from_kernel),
		T(test_nl_monitor_asks_for_resync_after_lost_events),
		T(test_nl_free_from_monitor_callback_is_safe),
		T(test_nl_without_loop_has_no_monitor),
		cmocka_unit_test(test_nl_free_null_is_fine),
#undef T
	};

	make_netns();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
