/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * nl.c - rtnetlink through libmnl: add, delete and dump the VIP's
 * addresses, read a link, and watch address and link changes.
 *
 * Two sockets. The request socket is blocking with a receive timeout: a
 * request is one sendto followed by reads until the kernel's answer to
 * that request ends (an ACK or error for a single request, NLMSG_DONE for
 * a dump), a local round trip. The monitor socket is non-blocking, joined
 * to RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR and RTNLGRP_IPV6_IFADDR and read by
 * the event loop.
 *
 * Invariants:
 * - Only the kernel is believed. Any process may unicast to a netlink
 *   port id, so a message whose sender port id is not 0 is dropped on both
 *   sockets: otherwise a local user could forge "link down" and force a
 *   failover, or forge an ACK for an address that was never added.
 * - A request only accepts answers carrying its own sequence number;
 *   older ones are skipped. After a timeout the request socket is closed
 *   and a new one opened, so a late answer, or a dump the kernel still
 *   holds open for the old socket (the next dump would get EBUSY), can
 *   never be taken for the answer to the next request.
 * - A dump is always read to its NLMSG_DONE, even when the kernel flags it
 *   inconsistent (NLM_F_DUMP_INTR): the caller is then told to dump again,
 *   and the socket is left clean.
 * - Requests do not nest: a request issued from a dump callback is
 *   refused, because its answer would interleave with the dump's. Requests
 *   from monitor callbacks are fine (different socket, different buffer).
 * - vip_nl_free may be called from any callback: while callbacks run the
 *   monitor is taken off the loop at once and the memory released when the
 *   outermost callback returns.
 * - The monitor reads a bounded number of datagrams per wake-up (the loop
 *   is level-triggered and comes back). Lost events (ENOBUFS) are reported
 *   once per wake-up through on_resync; the caller dumps and reconciles.
 *
 * Why like this: keepalived's netlink code is the model (two sockets,
 * ACKed requests, IPv6 with IFA_F_NODAD so a short layer-2 split cannot
 * leave the VIP in "dadfailed"), but with a receive timeout, so a wedged
 * kernel shows as an error instead of a hung daemon. Messages are walked
 * here with libmnl's helpers rather than with mnl_cb_run, which fails the
 * whole batch with EPROTO on a stale sequence number, stops in the middle
 * of an interrupted dump (leaving it open on the socket) and drops the
 * kernel's extended-ACK text, which makes "Invalid argument" explainable.
 * Attributes are read with mnl_attr_parse and each one's length checked
 * before use; buffers live in the handle, so steady-state monitoring
 * allocates nothing.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>

/* after <net/if.h> (from nl.h): libc-compat then adds only IFF_LOWER_UP */
#include "vip/nl.h"
#include <linux/if.h>

#include "core/log.h"
#include "core/loop.h"

#define NL_TIMEOUT_MS 1000	/* guard on each read of the request socket */
#define NL_RBUF 32768		/* the kernel's largest dump datagram */
#define NL_SBUF 512		/* our largest request is under 128 bytes */
#define NL_MON_RCVBUF (1 << 20)	/* makes ENOBUFS rare on busy hosts */
#define NL_MON_READS 32		/* datagrams per wake-up */
#define NL_EXT_MSG 160

#define NL_IPV4_LEN 4
#define NL_IPV6_LEN 16

struct vip_nl {
	struct loop *loop;		/* borrowed; NULL: no monitor */
	struct mnl_socket *req;		/* owned; NULL after a failed reopen */
	struct mnl_socket *mon;		/* owned; NULL without a loop */
	bool mon_on_loop;
	uint32_t portid;		/* of req */
	uint32_t seq;
	vip_nl_addr_cb on_addr;
	vip_nl_link_cb on_link;
	vip_nl_resync_cb on_resync;
	void *arg;			/* borrowed */
	bool busy;			/* a request is reading its answer */
	int depth;			/* nesting of our calls into callbacks */
	bool freed;			/* vip_nl_free ran inside a callback */
	char ext_msg[NL_EXT_MSG];	/* kernel's extended-ACK text, last error */
	alignas(8) char sbuf[NL_SBUF];	/* request being built */
	alignas(8) char rbuf[NL_RBUF];	/* answers on req */
	alignas(8) char mbuf[NL_RBUF];	/* events on mon */
};

/* Handles one of our data messages during a request; false stops it. */
typedef bool (*nl_data_fn)(struct vip_nl *nl, const struct nlmsghdr *nlh,
			   void *data);

/* ---- small helpers ------------------------------------------------------ */

static size_t
family_len(int family)
{
	if (family == AF_INET)
		return NL_IPV4_LEN;
	if (family == AF_INET6)
		return NL_IPV6_LEN;
	return 0;
}

static void
fmt_addr(int family, const uint8_t *addr, char *buf, size_t len)
{
	if (!inet_ntop(family, addr, buf, (socklen_t)len))
		snprintf(buf, len, "?");
}

/*
 * err = prefix + ": " + reason (+ the kernel's own explanation, when it
 * sent one). e is the errno of the failure.
 */
static void LOG_PRINTF(5, 6)
set_err(const struct vip_nl *nl, char *err, size_t errlen, int e,
	const char *fmt, ...)
{
	char prefix[256];
	const char *reason;
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	if (e == ETIMEDOUT)
		reason = "no answer from the kernel within 1 s";
	else
		reason = strerror(e);
	if (nl && nl->ext_msg[0])
		snprintf(err, errlen, "%s: %s (%s)", prefix, reason,
			 nl->ext_msg);
	else
		snprintf(err, errlen, "%s: %s", prefix, reason);
}

/*
 * recvmsg that keeps only the kernel's datagrams: *foreign is set for one
 * sent by a process, which the caller drops. A truncated datagram is an
 * error (ENOSPC): its tail is lost.
 */
static ssize_t
nl_recv(struct mnl_socket *s, char *buf, size_t len, int flags,
	bool *foreign)
{
	struct sockaddr_nl sa;
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr msg = {
		.msg_name = &sa,
		.msg_namelen = sizeof(sa),
		.msg_iov = &iov,
		.msg_iovlen = 1,
	};
	ssize_t n;

	*foreign = false;
	n = recvmsg(mnl_socket_get_fd(s), &msg, flags);
	if (n < 0)
		return -1;
	if (msg.msg_flags & MSG_TRUNC) {
		errno = ENOSPC;
		return -1;
	}
	if (msg.msg_namelen != sizeof(sa) || sa.nl_family != AF_NETLINK ||
	    sa.nl_pid != 0)
		*foreign = true;
	return n;
}

/* ---- parsing ------------------------------------------------------------ */

struct attrs {
	const struct nlattr **tb;	/* borrowed: caller's array */
	uint16_t max;
};

static int
attr_cb(const struct nlattr *attr, void *data)
{
	struct attrs *a = data;
	uint16_t type = mnl_attr_get_type(attr);

	/* attributes newer than our headers are not ours to read */
	if (type <= a->max)
		a->tb[type] = attr;
	return MNL_CB_OK;
}

/* Copies a NUL-terminated string attribute; false if malformed or long. */
static bool
attr_str(const struct nlattr *attr, char *out, size_t outlen)
{
	const char *s;
	size_t n;

	if (mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) < 0)
		return false;
	s = mnl_attr_get_str(attr);
	n = strnlen(s, mnl_attr_get_payload_len(attr));
	if (n >= outlen)
		return false;
	memcpy(out, s, n);
	out[n] = '\0';
	return true;
}

static bool
label_is_tag(const char *label)
{
	size_t n = strlen(label);

	return n >= 4 && strcmp(label + n - 4, ":vip") == 0;
}

/*
 * Fills out from RTM_NEWADDR or RTM_DELADDR. False for families other than
 * IPv4 and IPv6 and for malformed messages.
 */
static bool
parse_addr(const struct nlmsghdr *nlh, struct vip_nl_addr *out)
{
	const struct nlattr *tb[IFA_MAX + 1] = { 0 };
	struct attrs a = { .tb = tb, .max = IFA_MAX };
	const struct ifaddrmsg *ifa;
	const struct nlattr *at;
	size_t alen;

	if (mnl_nlmsg_get_payload_len(nlh) < sizeof(*ifa))
		return false;
	ifa = mnl_nlmsg_get_payload(nlh);
	alen = family_len(ifa->ifa_family);
	if (alen == 0)
		return false;
	if (mnl_attr_parse(nlh, sizeof(*ifa), attr_cb, &a) < 0)
		return false;
	/* IFA_LOCAL is the address itself; IFA_ADDRESS then is the peer */
	at = tb[IFA_LOCAL] ? tb[IFA_LOCAL] : tb[IFA_ADDRESS];
	if (!at || mnl_attr_get_payload_len(at) != alen)
		return false;

	memset(out, 0, sizeof(*out));
	out->added = nlh->nlmsg_type == RTM_NEWADDR;
	out->family = ifa->ifa_family;
	out->ifindex = (int)ifa->ifa_index;
	memcpy(out->addr, mnl_attr_get_payload(at), alen);
	out->prefixlen = ifa->ifa_prefixlen;
	if (tb[IFA_PROTO] && mnl_attr_validate(tb[IFA_PROTO], MNL_TYPE_U8) == 0)
		out->proto = mnl_attr_get_u8(tb[IFA_PROTO]);
	if (tb[IFA_LABEL] &&
	    !attr_str(tb[IFA_LABEL], out->label, sizeof(out->label)))
		out->label[0] = '\0';
	out->tagged = out->proto == VIP_NL_PROTO || label_is_tag(out->label);
	return true;
}

/* Fills out from RTM_NEWLINK or RTM_DELLINK; false if malformed or not
 * about the link itself. */
static bool
parse_link(const struct nlmsghdr *nlh, struct vip_nl_link *out)
{
	const struct nlattr *tb[IFLA_MAX + 1] = { 0 };
	struct attrs a = { .tb = tb, .max = IFLA_MAX };
	const struct ifinfomsg *ifi;

	if (mnl_nlmsg_get_payload_len(nlh) < sizeof(*ifi))
		return false;
	ifi = mnl_nlmsg_get_payload(nlh);
	/*
	 * Only the link itself: a bridge reports its ports with AF_BRIDGE,
	 * and RTM_DELLINK there means "left the bridge", not "gone".
	 */
	if (ifi->ifi_family != AF_UNSPEC)
		return false;
	if (mnl_attr_parse(nlh, sizeof(*ifi), attr_cb, &a) < 0)
		return false;

	memset(out, 0, sizeof(*out));
	out->ifindex = ifi->ifi_index;
	if (!tb[IFLA_IFNAME] ||
	    !attr_str(tb[IFLA_IFNAME], out->name, sizeof(out->name)))
		return false;
	out->up = nlh->nlmsg_type == RTM_NEWLINK &&
		  (ifi->ifi_flags & IFF_UP) && (ifi->ifi_flags & IFF_LOWER_UP);
	/* other link types (tunnels, InfiniBand) keep an all-zero MAC */
	if (tb[IFLA_ADDRESS] &&
	    mnl_attr_get_payload_len(tb[IFLA_ADDRESS]) == sizeof(out->mac))
		memcpy(out->mac, mnl_attr_get_payload(tb[IFLA_ADDRESS]),
		       sizeof(out->mac));
	if (tb[IFLA_MTU] && mnl_attr_validate(tb[IFLA_MTU], MNL_TYPE_U32) == 0)
		out->mtu = mnl_attr_get_u32(tb[IFLA_MTU]);
	return true;
}

/* ---- the request socket ------------------------------------------------- */

static int
req_open(struct vip_nl *nl)
{
	struct timeval tv = {
		.tv_sec = NL_TIMEOUT_MS / 1000,
		.tv_usec = (NL_TIMEOUT_MS % 1000) * 1000,
	};
	struct mnl_socket *s;
	int one = 1;
	int saved;

	s = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
	if (!s)
		return -1;
	if (mnl_socket_bind(s, 0, MNL_SOCKET_AUTOPID) < 0 ||
	    setsockopt(mnl_socket_get_fd(s), SOL_SOCKET, SO_RCVTIMEO, &tv,
		       sizeof(tv)) < 0) {
		saved = errno;
		mnl_socket_close(s);
		errno = saved;
		return -1;
	}
	/* both optional: errors keep their own text without them */
	(void)mnl_socket_setsockopt(s, NETLINK_CAP_ACK, &one, sizeof(one));
	(void)mnl_socket_setsockopt(s, NETLINK_EXT_ACK, &one, sizeof(one));
	nl->req = s;
	nl->portid = mnl_socket_get_portid(s);
	return 0;
}

/* Replaces the request socket; see the invariants at the top. */
static void
req_reopen(struct vip_nl *nl)
{
	if (nl->req)
		mnl_socket_close(nl->req);
	nl->req = NULL;
	if (req_open(nl) < 0)
		log_warning("could not reopen netlink request socket: %s",
			    strerror(errno));
}

/* Copies NLMSGERR_ATTR_MSG of an error into nl->ext_msg, if present. */
static void
ext_ack(struct vip_nl *nl, const struct nlmsghdr *nlh,
	const struct nlmsgerr *e)
{
	const struct nlattr *tb[NLMSGERR_ATTR_MAX + 1] = { 0 };
	struct attrs a = { .tb = tb, .max = NLMSGERR_ATTR_MAX };
	size_t off = sizeof(*e);

	if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS))
		return;
	if (!(nlh->nlmsg_flags & NLM_F_CAPPED)) {
		if (e->msg.nlmsg_len < sizeof(struct nlmsghdr))
			return;
		off += e->msg.nlmsg_len - sizeof(struct nlmsghdr);
	}
	if (off > mnl_nlmsg_get_payload_len(nlh))
		return;
	if (mnl_attr_parse(nlh, (unsigned)off, attr_cb, &a) < 0)
		return;
	if (tb[NLMSGERR_ATTR_MSG] &&
	    !attr_str(tb[NLMSGERR_ATTR_MSG], nl->ext_msg, sizeof(nl->ext_msg)))
		nl->ext_msg[0] = '\0';
}

enum walk {
	WALK_MORE,		/* the answer goes on */
	WALK_DONE,		/* ACK or NLMSG_DONE */
	WALK_FAILED,		/* errno set */
};

struct walk_state {
	uint32_t seq;
	nl_data_fn fn;
	void *data;		/* borrowed */
	bool intr;		/* NLM_F_DUMP_INTR seen */
};

static enum walk
walk(struct vip_nl *nl, size_t len, struct walk_state *w)
{
	const struct nlmsghdr *nlh = (const struct nlmsghdr *)nl->rbuf;
	int left = (int)len;

	for (; mnl_nlmsg_ok(nlh, left); nlh = mnl_nlmsg_next(nlh, &left)) {
		const struct nlmsgerr *e;

		if (nlh->nlmsg_seq != w->seq)
			continue;	/* from an earlier request */
		switch (nlh->nlmsg_type) {
		case NLMSG_NOOP:
			break;
		case NLMSG_ERROR:
			if (mnl_nlmsg_get_payload_len(nlh) < sizeof(*e)) {
				errno = EBADMSG;
				return WALK_FAILED;
			}
			e = mnl_nlmsg_get_payload(nlh);
			if (e->error == 0)
				return WALK_DONE;
			ext_ack(nl, nlh, e);
			errno = e->error < 0 ? -e->error : e->error;
			return WALK_FAILED;
		case NLMSG_DONE:
			/* a dump that failed says why in an int after the header */
			if (mnl_nlmsg_get_payload_len(nlh) >= sizeof(int)) {
				int rc;

				memcpy(&rc, mnl_nlmsg_get_payload(nlh),
				       sizeof(rc));
				if (rc < 0) {
					errno = -rc;
					return WALK_FAILED;
				}
			}
			if (w->intr) {
				errno = EINTR;
				return WALK_FAILED;
			}
			return WALK_DONE;
		case NLMSG_OVERRUN:
			errno = ENOSPC;
			return WALK_FAILED;
		default:
			if (nlh->nlmsg_flags & NLM_F_DUMP_INTR)
				w->intr = true;
			/* only vip_nl_free stops a walk: the socket is gone */
			if (w->fn && !w->fn(nl, nlh, w->data)) {
				errno = ECANCELED;
				return WALK_FAILED;
			}
			/* a single answer (not a dump) ends with its ACK */
			break;
		}
	}
	return WALK_MORE;
}

/*
 * Sends the request in nl->sbuf and reads until its answer ends. fn sees
 * each of our data messages. Returns 0, or -1 with errno set (ETIMEDOUT
 * when the kernel did not answer in time) and nl->ext_msg possibly set.
 */
static int
talk(struct vip_nl *nl, nl_data_fn fn, void *data)
{
	struct nlmsghdr *nlh = (struct nlmsghdr *)nl->sbuf;
	struct walk_state w = { .fn = fn, .data = data };
	enum walk r = WALK_MORE;
	int saved;

	nl->ext_msg[0] = '\0';
	if (!nl->req && req_open(nl) < 0)
		return -1;
	if (++nl->seq == 0)
		nl->seq = 1;
	w.seq = nlh->nlmsg_seq = nl->seq;
	nlh->nlmsg_pid = 0;
	if (mnl_socket_sendto(nl->req, nlh, nlh->nlmsg_len) < 0)
		return -1;

	nl->busy = true;
	while (r == WALK_MORE) {
		bool foreign;
		ssize_t n = nl_recv(nl->req, nl->rbuf, sizeof(nl->rbuf), 0,
				    &foreign);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				errno = ETIMEDOUT;
			saved = errno;
			nl->busy = false;
			if (saved == ETIMEDOUT || saved == ENOSPC)
				req_reopen(nl);
			errno = saved;
			return -1;
		}
		if (foreign)
			continue;
		r = walk(nl, (size_t)n, &w);
	}
	nl->busy = false;
	return r == WALK_DONE ? 0 : -1;
}

static struct nlmsghdr *
req_start(struct vip_nl *nl, uint16_t type, uint16_t flags)
{
	struct nlmsghdr *nlh;

	memset(nl->sbuf, 0, sizeof(nl->sbuf));
	nlh = mnl_nlmsg_put_header(nl->sbuf);
	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	return nlh;
}

/* Refuses a request nested in another (from a dump callback). */
static bool
req_nested(struct vip_nl *nl, const char *what, char *err, size_t errlen)
{
	if (!nl->busy)
		return false;
	if (err && errlen > 0)
		snprintf(err, errlen, "could not %s: a netlink request is "
			 "already in progress (called from a dump callback)",
			 what);
	return true;
}

/* ---- links -------------------------------------------------------------- */

static bool
link_data(struct vip_nl *nl, const struct nlmsghdr *nlh, void *data)
{
	struct vip_nl_link *out = data;

	if (nlh->nlmsg_type == RTM_NEWLINK && out->ifindex == 0 &&
	    !parse_link(nlh, out))
		out->ifindex = 0;
	return true;
}

/*
 * Reads a link by name (ifindex 0) or by index. Returns 0, or -1 with
 * errno set; ENODEV when there is no such link.
 */
static int
link_query(struct vip_nl *nl, int ifindex, const char *name,
	   struct vip_nl_link *out)
{
	struct nlmsghdr *nlh;
	struct ifinfomsg *ifi;

	nlh = req_start(nl, RTM_GETLINK, NLM_F_ACK);
	ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = ifindex;
	if (ifindex == 0)
		mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	memset(out, 0, sizeof(*out));
	if (talk(nl, link_data, out) < 0)
		return -1;
	if (out->ifindex == 0) {
		errno = ENODATA;
		return -1;
	}
	return 0;
}

int
vip_nl_get_link(struct vip_nl *nl, const char *ifname,
		struct vip_nl_link *out, char *err, size_t errlen)
{
	size_t n = ifname ? strlen(ifname) : 0;

	if (n == 0 || n >= IFNAMSIZ) {
		snprintf(err, errlen, "invalid interface name \"%s\"",
			 ifname ? ifname : "");
		return -1;
	}
	if (req_nested(nl, "read an interface", err, errlen))
		return -1;
	if (link_query(nl, 0, ifname, out) < 0) {
		if (errno == ENODEV)
			snprintf(err, errlen, "interface \"%s\" does not exist",
				 ifname);
		else
			set_err(nl, err, errlen, errno,
				"could not read interface \"%s\"", ifname);
		return -1;
	}
	return 0;
}

/* ---- addresses ---------------------------------------------------------- */

static bool
addr_args_ok(int family, const uint8_t *addr, uint8_t prefixlen,
	     char *err, size_t errlen)
{
	size_t alen = family_len(family);

	if (alen == 0) {
		snprintf(err, errlen, "invalid address family %d", family);
		return false;
	}
	if (!addr) {
		snprintf(err, errlen, "no address given");
		return false;
	}
	if (prefixlen > alen * 8) {
		snprintf(err, errlen, "invalid prefix length %u", prefixlen);
		return false;
	}
	return true;
}

static struct nlmsghdr *
addr_msg(struct vip_nl *nl, uint16_t type, uint16_t flags, int ifindex,
	 int family, const uint8_t *addr, uint8_t prefixlen)
{
	struct nlmsghdr *nlh = req_start(nl, type, NLM_F_ACK | flags);
	struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	size_t alen = family_len(family);

	ifa->ifa_family = (uint8_t)family;
	ifa->ifa_prefixlen = prefixlen;
	ifa->ifa_scope = RT_SCOPE_UNIVERSE;
	ifa->ifa_index = (uint32_t)ifindex;
	mnl_attr_put(nlh, IFA_LOCAL, alen, addr);
	mnl_attr_put(nlh, IFA_ADDRESS, alen, addr);
	return nlh;
}

int
vip_nl_addr_add(struct vip_nl *nl, int ifindex, int family,
		const uint8_t *addr, uint8_t prefixlen, const char *label,
		char *err, size_t errlen)
{
	struct vip_nl_link link;
	struct nlmsghdr *nlh;
	char astr[INET6_ADDRSTRLEN];
	size_t llen = 0, nlen;

	if (!addr_args_ok(family, addr, prefixlen, err, errlen))
		return -1;
	fmt_addr(family, addr, astr, sizeof(astr));
	/* IPv6 has no labels: the tag is IFA_PROTO alone */
	if (family != AF_INET)
		label = NULL;
	if (label) {
		llen = strlen(label);
		if (llen >= IFNAMSIZ) {
			snprintf(err, errlen, "could not add address %s/%u: "
				 "label \"%s\" is too long (%zu bytes, at most "
				 "%d)", astr, prefixlen, label, llen,
				 IFNAMSIZ - 1);
			return -1;
		}
	}
	if (req_nested(nl, "add an address", err, errlen))
		return -1;
	/* the name, for the label check and for messages worth reading */
	if (link_query(nl, ifindex, NULL, &link) < 0) {
		if (errno == ENODEV)
			snprintf(err, errlen, "could not add address %s/%u: "
				 "interface with index %d does not exist",
				 astr, prefixlen, ifindex);
		else
			set_err(nl, err, errlen, errno, "could not add address "
				"%s/%u: could not read interface with index %d",
				astr, prefixlen, ifindex);
		return -1;
	}
	if (label) {
		nlen = strlen(link.name);
		if (strncmp(label, link.name, nlen) != 0 ||
		    (label[nlen] != '\0' && label[nlen] != ':')) {
			snprintf(err, errlen, "could not add address %s/%u to "
				 "%s: label \"%s\" does not start with \"%s:\"",
				 astr, prefixlen, link.name, label, link.name);
			return -1;
		}
	}

	nlh = addr_msg(nl, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, ifindex,
		       family, addr, prefixlen);
	if (label)
		mnl_attr_put_strz(nlh, IFA_LABEL, label);
	mnl_attr_put_u8(nlh, IFA_PROTO, VIP_NL_PROTO);
	if (family == AF_INET6) {
		struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);

		ifa->ifa_flags = IFA_F_NODAD;
		mnl_attr_put_u32(nlh, IFA_FLAGS, IFA_F_NODAD);
	}
	if (talk(nl, NULL, NULL) < 0) {
		if (errno == EEXIST)
			return 1;
		set_err(nl, err, errlen, errno,
			"could not add address %s/%u to %s", astr, prefixlen,
			link.name);
		return -1;
	}
	return 0;
}

int
vip_nl_addr_del(struct vip_nl *nl, int ifindex, int family,
		const uint8_t *addr, uint8_t prefixlen, char *err,
		size_t errlen)
{
	struct vip_nl_link link;
	char astr[INET6_ADDRSTRLEN];
	char where[IFNAMSIZ + 32];
	char ext[NL_EXT_MSG];
	int e;

	if (!addr_args_ok(family, addr, prefixlen, err, errlen))
		return -1;
	if (req_nested(nl, "delete an address", err, errlen))
		return -1;
	addr_msg(nl, RTM_DELADDR, 0, ifindex, family, addr, prefixlen);
	if (talk(nl, NULL, NULL) == 0)
		return 0;
	e = errno;
	/* not there: gone already, or its interface is (keepalived agrees) */
	if (e == EADDRNOTAVAIL || e == ENOENT || e == ENODEV)
		return 1;

	/* the failure is rare: only now spend a round trip on the name */
	memcpy(ext, nl->ext_msg, sizeof(ext));
	if (link_query(nl, ifindex, NULL, &link) == 0)
		snprintf(where, sizeof(where), "%s", link.name);
	else
		snprintf(where, sizeof(where), "interface with index %d",
			 ifindex);
	memcpy(nl->ext_msg, ext, sizeof(ext));
	fmt_addr(family, addr, astr, sizeof(astr));
	set_err(nl, err, errlen, e, "could not delete address %s/%u from %s",
		astr, prefixlen, where);
	return -1;
}

struct dump_ctx {
	vip_nl_addr_cb cb;
	void *arg;		/* borrowed */
};

static bool
dump_data(struct vip_nl *nl, const struct nlmsghdr *nlh, void *data)
{
	struct dump_ctx *d = data;
	struct vip_nl_addr a;

	if (nlh->nlmsg_type != RTM_NEWADDR || !parse_addr(nlh, &a))
		return true;
	d->cb(&a, d->arg);
	return !nl->freed;
}

int
vip_nl_addr_dump(struct vip_nl *nl, vip_nl_addr_cb cb, void *arg,
		 char *err, size_t errlen)
{
	struct dump_ctx d = { .cb = cb, .arg = arg };
	struct nlmsghdr *nlh;
	struct ifaddrmsg *ifa;
	int rc, e;

	if (!cb) {
		snprintf(err, errlen, "could not dump addresses: no callback");
		return -1;
	}
	if (req_nested(nl, "dump addresses", err, errlen))
		return -1;
	nlh = req_start(nl, RTM_GETADDR, NLM_F_DUMP);
	ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = AF_UNSPEC;

	nl->depth++;
	rc = talk(nl, dump_data, &d);
	e = errno;
	if (nl->freed) {
		snprintf(err, errlen, "could not dump addresses: the handle "
			 "was freed by the callback");
		if (--nl->depth == 0)
			free(nl);
		return -1;
	}
	nl->depth--;
	if (rc == 0)
		return 0;
	if (e == EINTR)
		snprintf(err, errlen, "could not dump addresses: the address "
			 "list changed during the dump, dump again");
	else
		set_err(nl, err, errlen, e, "could not dump addresses");
	return -1;
}

/* ---- the monitor -------------------------------------------------------- */

/* Passes one event to its callback. */
static void
mon_dispatch(struct vip_nl *nl, const struct nlmsghdr *nlh)
{
	struct vip_nl_addr a;
	struct vip_nl_link l;

	switch (nlh->nlmsg_type) {
	case RTM_NEWADDR:
	case RTM_DELADDR:
		if (nl->on_addr && parse_addr(nlh, &a))
			nl->on_addr(&a, nl->arg);
		break;
	case RTM_NEWLINK:
	case RTM_DELLINK:
		if (nl->on_link && parse_link(nlh, &l))
			nl->on_link(&l, nl->arg);
		break;
	default:
		break;
	}
}

static void
mon_readable(struct loop *loop, int fd, uint32_t events, void *arg)
{
	struct vip_nl *nl = arg;
	bool lost = false;
	int i;

	nl->depth++;
	for (i = 0; i < NL_MON_READS && !nl->freed; i++) {
		const struct nlmsghdr *nlh;
		bool foreign;
		ssize_t n;
		int left;

		n = nl_recv(nl->mon, nl->mbuf, sizeof(nl->mbuf), MSG_DONTWAIT,
			    &foreign);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ENOBUFS || errno == ENOSPC) {
				/* the kernel dropped events (or we cut one) */
				lost = true;
				continue;
			}
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_warning("could not read netlink events: %s",
					    strerror(errno));
			break;
		}
		if (foreign) {
			log_debug("ignored netlink message not sent by the "
				  "kernel");
			continue;
		}
		left = (int)n;
		for (nlh = (const struct nlmsghdr *)nl->mbuf;
		     mnl_nlmsg_ok(nlh, left) && !nl->freed;
		     nlh = mnl_nlmsg_next(nlh, &left))
			mon_dispatch(nl, nlh);
	}
	if (lost && !nl->freed) {
		log_warning("netlink events were lost, rereading addresses");
		if (nl->on_resync)
			nl->on_resync(nl->arg);
	}
	if (--nl->depth == 0 && nl->freed)
		free(nl);
}

static int
mon_open(struct vip_nl *nl)
{
	unsigned groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
	int size = NL_MON_RCVBUF;
	int fd;

	nl->mon = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (!nl->mon)
		return -1;
	if (mnl_socket_bind(nl->mon, groups, MNL_SOCKET_AUTOPID) < 0)
		return -1;
	fd = mnl_socket_get_fd(nl->mon);
	/* FORCE passes net.core.rmem_max with CAP_NET_ADMIN; best effort */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size,
		       sizeof(size)) < 0 &&
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)) < 0)
		log_debug("could not enlarge netlink receive buffer: %s",
			  strerror(errno));
	if (loop_add_fd(nl->loop, fd, EPOLLIN, mon_readable, nl) < 0)
		return -1;
	nl->mon_on_loop = true;
	return 0;
}

/* ---- lifecycle ---------------------------------------------------------- */

static void
nl_close(struct vip_nl *nl)
{
	if (nl->mon) {
		if (nl->mon_on_loop)
			loop_del_fd(nl->loop, mnl_socket_get_fd(nl->mon));
		nl->mon_on_loop = false;
		mnl_socket_close(nl->mon);
		nl->mon = NULL;
	}
	if (nl->req) {
		mnl_socket_close(nl->req);
		nl->req = NULL;
	}
}

struct vip_nl *
vip_nl_new(struct loop *loop, vip_nl_addr_cb on_addr,
	   vip_nl_link_cb on_link, vip_nl_resync_cb on_resync, void *arg,
	   char *err, size_t errlen)
{
	struct vip_nl *nl = calloc(1, sizeof(*nl));

	if (!nl) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	nl->loop = loop;
	nl->on_addr = on_addr;
	nl->on_link = on_link;
	nl->on_resync = on_resync;
	nl->arg = arg;
	if (req_open(nl) < 0) {
		set_err(NULL, err, errlen, errno,
			"could not open netlink request socket");
		free(nl);
		return NULL;
	}
	if (loop && mon_open(nl) < 0) {
		set_err(NULL, err, errlen, errno,
			"could not open netlink monitor socket");
		nl_close(nl);
		free(nl);
		return NULL;
	}
	return nl;
}

void
vip_nl_free(struct vip_nl *nl)
{
	if (!nl || nl->freed)
		return;
	nl_close(nl);
	/* inside one of our callbacks: whoever called it frees on return */
	if (nl->depth > 0) {
		nl->freed = true;
		return;
	}
	free(nl);
}
