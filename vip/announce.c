/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * announce.c - the VIP's link-layer frames, built byte for byte, and the
 * AF_PACKET sockets that send them and watch who else claims the address.
 *
 * Frames (all multi-byte fields big-endian, written one byte at a time
 * through a bounds-checked cursor; no struct is ever cast over a buffer):
 * - ARP: Ethernet broadcast, ethertype 0x0806, htype 1, ptype 0x0800,
 *   hlen 6, plen 4. Gratuitous request: op 1, SPA = TPA = VIP, THA = 0.
 *   Gratuitous reply: op 2, SPA = TPA = VIP, THA = SHA (Linux ignores a
 *   reply whose THA is not SHA inside its locktime). Probe (RFC 5227):
 *   op 1, SPA = 0.0.0.0, TPA = VIP, THA = 0. An ARP frame is 42 bytes;
 *   it is padded with zeros to the 60-byte Ethernet minimum (without the
 *   FCS) so the bytes on the wire are exactly the bytes built here, rather
 *   than whatever a driver pads with.
 * - Unsolicited NA (RFC 4861 7.2.6): Ethernet 33:33:00:00:00:01, IPv6
 *   from the given source to ff02::1, hop limit 255, ICMPv6 136 code 0,
 *   Override set, Solicited and Router clear, target = VIP, one target
 *   link-layer address option (type 2, length 1) = mac. 86 bytes.
 * - DAD probe (RFC 4862 5.4.2): NS from :: to the solicited-node group
 *   ff02::1:ffXX:XXXX (Ethernet 33:33:ff:XX:XX:XX), hop limit 255, ICMPv6
 *   135 code 0, target = VIP and no source link-layer address option (it
 *   must not be sent from ::). 78 bytes.
 * The ICMPv6 checksum is computed here over the RFC 8200 8.1 pseudo-header.
 * Builders return 0 (nothing usable written) when cap is smaller than the
 * frame, when a pointer is NULL, for an unknown ARP kind, and for an IPv6
 * VIP that is multicast (receivers must drop such a target).
 *
 * Parsing accepts untagged Ethernet only. The receive socket's filter also
 * drops frames whose 802.1Q tag the kernel (or the NIC) has already moved
 * into metadata: on a trunk those look untagged, and a claim made on
 * another VLAN must not count as one made on ours. Rules:
 * - ARP: htype 1, ptype 0x0800, hlen 6, plen 4, any op, SPA != 0 (a probe
 *   claims nothing). is_reply = (op == 2). Trailing padding is ignored.
 * - NA: IPv6 version 6, payload length within the frame, next header 58
 *   directly (no extension headers), hop limit 255, ICMPv6 type 136 code 0,
 *   at least 24 bytes, valid checksum, target not multicast, Solicited
 *   clear if the destination is multicast, every option length nonzero and
 *   inside the message (RFC 4861 7.1.2). mac = the first target
 *   link-layer option (which must have length 1, Ethernet), else the
 *   Ethernet source. is_reply = Solicited.
 * vip_frame_parse writes *c only when it returns 0; for AF_INET only the
 * first 4 bytes of addr are used and the rest are zero.
 *
 * Sockets: the send socket is bound with protocol 0, so the kernel never
 * queues received frames on it. The receive socket is created with
 * protocol 0 too, gets its BPF filter, and only then is bound to ETH_P_ALL
 * on the interface: no frame is ever queued before the filter is in place.
 * The filter keeps ARP and ICMPv6 NA only, drops our own transmissions
 * (PACKET_OUTGOING, checked again in user space) and VLAN-tagged frames,
 * and truncates to RX_SNAP bytes. Both sockets are non-blocking: the loop
 * never waits on them, a full transmit queue is an EAGAIN for the caller.
 * A readable receive socket is drained at most RX_BATCH frames per wake-up
 * so a flood cannot starve the loop (epoll is level-triggered and comes
 * back). The callback may call vip_pkt_free on its own handle: the free is
 * deferred until the read handler returns.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/loop.h"
#include "vip/announce.h"

#define ETH_HDR_LEN	14
#define ETH_MIN_LEN	60	/* without the FCS */
#define ARP_LEN		28
#define IP6_HDR_LEN	40
#define NA_LEN		32	/* ICMPv6 header, flags, target, TLLA option */
#define NS_LEN		24	/* ICMPv6 header, reserved, target */
#define ND_HOPLIMIT	255
#define NA_MIN_LEN	24	/* without options, RFC 4861 7.1.2 */
#define NA_FLAG_ROUTER		0x80000000u
#define NA_FLAG_SOLICITED	0x40000000u
#define NA_FLAG_OVERRIDE	0x20000000u
#define ND_OPT_TLLA	2
#define ICMP6_NS	135
#define ICMP6_NA	136
#define IPPROTO_ICMP6_NUM 58

#define RX_SNAP		256	/* an NA with a few options fits */
#define RX_BATCH	32

struct vip_pkt {
	struct loop *loop;	/* borrowed */
	int ifindex;
	int tx_fd;		/* owned */
	int rx_fd;		/* owned; registered on loop */
	vip_pkt_cb cb;
	void *arg;		/* borrowed */
	bool in_cb;		/* the read handler is running callbacks */
	bool free_pending;	/* vip_pkt_free was called from a callback */
};

static const uint8_t mac_broadcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
static const uint8_t mac_all_nodes[6] = { 0x33, 0x33, 0x00, 0x00, 0x00, 0x01 };
static const uint8_t ip6_all_nodes[16] = {
	0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
};
static const uint8_t zeros[16];

/* ---- bounds-checked cursors ------------------------------------------ */

/* Sticky: after one put did not fit, every later put fails too. */
struct wcur {
	uint8_t *p;		/* borrowed */
	size_t cap;
	size_t off;
	bool full;
};

static void
put_bytes(struct wcur *w, const void *src, size_t n)
{
	if (w->full || w->cap - w->off < n) {
		w->full = true;
		return;
	}
	memcpy(w->p + w->off, src, n);
	w->off += n;
}

static void
put_zeros(struct wcur *w, size_t n)
{
	if (w->full || w->cap - w->off < n) {
		w->full = true;
		return;
	}
	memset(w->p + w->off, 0, n);
	w->off += n;
}

static void
put_u8(struct wcur *w, uint8_t v)
{
	put_bytes(w, &v, 1);
}

static void
put_u16(struct wcur *w, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };

	put_bytes(w, b, 2);
}

static void
put_u32(struct wcur *w, uint32_t v)
{
	uint8_t b[4] = {
		(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8),
		(uint8_t)v,
	};

	put_bytes(w, b, 4);
}

struct rcur {
	const uint8_t *p;	/* borrowed */
	size_t len;
	size_t off;
};

static int
get_bytes(struct rcur *c, void *dst, size_t n)
{
	if (c->len - c->off < n)
		return -1;
	memcpy(dst, c->p + c->off, n);
	c->off += n;
	return 0;
}

static int
get_u8(struct rcur *c, uint8_t *v)
{
	return get_bytes(c, v, 1);
}

static int
get_u16(struct rcur *c, uint16_t *v)
{
	uint8_t b[2];

	if (get_bytes(c, b, 2) < 0)
		return -1;
	*v = (uint16_t)((unsigned)b[0] << 8 | b[1]);
	return 0;
}

static int
get_u32(struct rcur *c, uint32_t *v)
{
	uint8_t b[4];

	if (get_bytes(c, b, 4) < 0)
		return -1;
	*v = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 |
	     (uint32_t)b[2] << 8 | b[3];
	return 0;
}

static int
skip(struct rcur *c, size_t n)
{
	if (c->len - c->off < n)
		return -1;
	c->off += n;
	return 0;
}

/* ---- checksum ---------------------------------------------------------- */

/* One's-complement sum of n bytes as big-endian 16-bit words (odd byte padded). */
static uint32_t
csum_add(uint32_t sum, const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i + 1 < n; i += 2)
		sum += (uint32_t)p[i] << 8 | p[i + 1];
	if (i < n)
		sum += (uint32_t)p[i] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return sum;
}

/*
 * The ICMPv6 checksum field value for msg (whose own checksum bytes are
 * taken as they are: zero when building; when verifying, the result over a
 * correct message is 0).
 */
static uint16_t
icmp6_csum(const uint8_t src[16], const uint8_t dst[16], const uint8_t *msg,
	   size_t len)
{
	uint8_t ph[8] = {
		(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
		(uint8_t)len, 0, 0, 0, IPPROTO_ICMP6_NUM,
	};
	uint32_t sum = 0;

	sum = csum_add(sum, src, 16);
	sum = csum_add(sum, dst, 16);
	sum = csum_add(sum, ph, sizeof(ph));
	sum = csum_add(sum, msg, len);
	return (uint16_t)~sum;
}

/* ---- builders ---------------------------------------------------------- */

static void
put_eth(struct wcur *w, const uint8_t dst[6], const uint8_t src[6],
	uint16_t type)
{
	put_bytes(w, dst, 6);
	put_bytes(w, src, 6);
	put_u16(w, type);
}

size_t
vip_arp_build(uint8_t *buf, size_t cap, enum vip_arp_kind kind,
	      const uint8_t mac[6], const struct in_addr *vip)
{
	struct wcur w = { .p = buf, .cap = cap };
	const uint8_t *spa, *tha;
	uint16_t op;

	if (!buf || !mac || !vip)
		return 0;
	switch (kind) {
	case VIP_ARP_GRATUITOUS_REQUEST:
		op = 1;
		spa = (const uint8_t *)&vip->s_addr;
		tha = zeros;
		break;
	case VIP_ARP_GRATUITOUS_REPLY:
		op = 2;
		spa = (const uint8_t *)&vip->s_addr;
		tha = mac;
		break;
	case VIP_ARP_PROBE:
		op = 1;
		spa = zeros;
		tha = zeros;
		break;
	default:
		return 0;
	}
	put_eth(&w, mac_broadcast, mac, ETH_P_ARP);
	put_u16(&w, 1);			/* htype: Ethernet */
	put_u16(&w, ETH_P_IP);		/* ptype */
	put_u8(&w, 6);			/* hlen */
	put_u8(&w, 4);			/* plen */
	put_u16(&w, op);
	put_bytes(&w, mac, 6);		/* SHA */
	put_bytes(&w, spa, 4);		/* SPA */
	put_bytes(&w, tha, 6);		/* THA */
	put_bytes(&w, &vip->s_addr, 4);	/* TPA */
	put_zeros(&w, ETH_MIN_LEN - ETH_HDR_LEN - ARP_LEN);
	return w.full ? 0 : w.off;
}

/* Writes the IPv6 header of an ND message: no flow label, hop limit 255. */
static void
put_ip6(struct wcur *w, uint16_t plen, const uint8_t src[16],
	const uint8_t dst[16])
{
	put_u32(w, 6u << 28);
	put_u16(w, plen);
	put_u8(w, IPPROTO_ICMP6_NUM);
	put_u8(w, ND_HOPLIMIT);
	put_bytes(w, src, 16);
	put_bytes(w, dst, 16);
}

/* Fills in the checksum of the ICMPv6 message that starts at buf + off. */
static void
seal_icmp6(uint8_t *buf, size_t off, size_t len, const uint8_t src[16],
	   const uint8_t dst[16])
{
	uint16_t ck = icmp6_csum(src, dst, buf + off, len);

	buf[off + 2] = (uint8_t)(ck >> 8);
	buf[off + 3] = (uint8_t)ck;
}

size_t
vip_na_build(uint8_t *buf, size_t cap, const uint8_t mac[6],
	     const struct in6_addr *src, const struct in6_addr *vip)
{
	struct wcur w = { .p = buf, .cap = cap };
	const size_t icmp_off = ETH_HDR_LEN + IP6_HDR_LEN;

	if (!buf || !mac || !src || !vip || vip->s6_addr[0] == 0xff)
		return 0;
	put_eth(&w, mac_all_nodes, mac, ETH_P_IPV6);
	put_ip6(&w, NA_LEN, src->s6_addr, ip6_all_nodes);
	put_u8(&w, ICMP6_NA);
	put_u8(&w, 0);			/* code */
	put_u16(&w, 0);			/* checksum, filled in below */
	put_u32(&w, NA_FLAG_OVERRIDE);
	put_bytes(&w, vip->s6_addr, 16);
	put_u8(&w, ND_OPT_TLLA);
	put_u8(&w, 1);			/* length in units of 8 bytes */
	put_bytes(&w, mac, 6);
	if (w.full)
		return 0;
	seal_icmp6(buf, icmp_off, NA_LEN, src->s6_addr, ip6_all_nodes);
	return w.off;
}

size_t
vip_ns_probe_build(uint8_t *buf, size_t cap, const uint8_t mac[6],
		   const struct in6_addr *vip)
{
	struct wcur w = { .p = buf, .cap = cap };
	const size_t icmp_off = ETH_HDR_LEN + IP6_HDR_LEN;
	const uint8_t *t;
	uint8_t dmac[6], dip[16];

	if (!buf || !mac || !vip || vip->s6_addr[0] == 0xff)
		return 0;
	t = vip->s6_addr;
	/* Solicited-node group ff02::1:ffXX:XXXX and its RFC 2464 MAC. */
	memset(dip, 0, sizeof(dip));
	dip[0] = 0xff;
	dip[1] = 0x02;
	dip[11] = 0x01;
	dip[12] = 0xff;
	memcpy(dip + 13, t + 13, 3);
	dmac[0] = 0x33;
	dmac[1] = 0x33;
	memcpy(dmac + 2, dip + 12, 4);

	put_eth(&w, dmac, mac, ETH_P_IPV6);
	put_ip6(&w, NS_LEN, zeros, dip);
	put_u8(&w, ICMP6_NS);
	put_u8(&w, 0);			/* code */
	put_u16(&w, 0);			/* checksum, filled in below */
	put_u32(&w, 0);			/* reserved */
	put_bytes(&w, t, 16);
	if (w.full)
		return 0;
	seal_icmp6(buf, icmp_off, NS_LEN, zeros, dip);
	return w.off;
}

/* ---- parser ------------------------------------------------------------ */

static int
parse_arp(struct rcur *r, struct vip_claim *c)
{
	uint16_t htype, ptype, op;
	uint8_t hlen, plen, sha[6], spa[4];

	if (get_u16(r, &htype) < 0 || htype != 1 ||
	    get_u16(r, &ptype) < 0 || ptype != ETH_P_IP ||
	    get_u8(r, &hlen) < 0 || hlen != 6 ||
	    get_u8(r, &plen) < 0 || plen != 4 ||
	    get_u16(r, &op) < 0 ||
	    get_bytes(r, sha, 6) < 0 || get_bytes(r, spa, 4) < 0 ||
	    skip(r, 6 + 4) < 0)		/* THA, TPA: only their presence matters */
		return -1;
	if (memcmp(spa, zeros, 4) == 0)
		return -1;
	memset(c, 0, sizeof(*c));
	c->family = AF_INET;
	memcpy(c->addr, spa, 4);
	memcpy(c->mac, sha, 6);
	c->is_reply = op == 2;
	return 0;
}

static int
parse_na(struct rcur *r, const uint8_t eth_src[6], struct vip_claim *c)
{
	uint32_t vtf, flags;
	uint16_t plen;
	uint8_t nh, hlim, type, code, src[16], dst[16], target[16], mac[6];
	size_t icmp_off;
	bool have_tlla = false;
	struct rcur m;

	if (get_u32(r, &vtf) < 0 || vtf >> 28 != 6 ||
	    get_u16(r, &plen) < 0 ||
	    get_u8(r, &nh) < 0 || nh != IPPROTO_ICMP6_NUM ||
	    get_u8(r, &hlim) < 0 || hlim != ND_HOPLIMIT ||
	    get_bytes(r, src, 16) < 0 || get_bytes(r, dst, 16) < 0)
		return -1;
	/* The ICMPv6 message is exactly plen bytes; the rest is padding. */
	icmp_off = r->off;
	if (plen < NA_MIN_LEN || r->len - icmp_off < plen)
		return -1;
	if (icmp6_csum(src, dst, r->p + icmp_off, plen) != 0)
		return -1;
	m = (struct rcur){ .p = r->p + icmp_off, .len = plen };
	if (get_u8(&m, &type) < 0 || type != ICMP6_NA ||
	    get_u8(&m, &code) < 0 || code != 0 ||
	    skip(&m, 2) < 0 ||		/* checksum, verified above */
	    get_u32(&m, &flags) < 0 ||
	    get_bytes(&m, target, 16) < 0)
		return -1;
	if (target[0] == 0xff)
		return -1;
	if (dst[0] == 0xff && (flags & NA_FLAG_SOLICITED))
		return -1;
	memcpy(mac, eth_src, 6);
	while (m.off < m.len) {
		uint8_t otype, olen;
		size_t body;

		if (get_u8(&m, &otype) < 0 || get_u8(&m, &olen) < 0 ||
		    olen == 0)
			return -1;
		body = (size_t)olen * 8 - 2;
		if (otype == ND_OPT_TLLA && !have_tlla) {
			if (olen != 1 || get_bytes(&m, mac, 6) < 0)
				return -1;
			have_tlla = true;
		} else if (skip(&m, body) < 0) {
			return -1;
		}
	}
	memset(c, 0, sizeof(*c));
	c->family = AF_INET6;
	memcpy(c->addr, target, 16);
	memcpy(c->mac, mac, 6);
	c->is_reply = (flags & NA_FLAG_SOLICITED) != 0;
	return 0;
}

int
vip_frame_parse(const uint8_t *frame, size_t len, struct vip_claim *c)
{
	struct rcur r = { .p = frame, .len = len };
	uint8_t dst[6], src[6];
	uint16_t type;

	if (!frame || !c ||
	    get_bytes(&r, dst, 6) < 0 || get_bytes(&r, src, 6) < 0 ||
	    get_u16(&r, &type) < 0)
		return -1;
	switch (type) {
	case ETH_P_ARP:
		return parse_arp(&r, c);
	case ETH_P_IPV6:
		return parse_na(&r, src, c);
	default:
		return -1;
	}
}

/* ---- sockets ----------------------------------------------------------- */

/*
 * Classic BPF for the receive socket. Loads past the end of a short frame
 * end the program with "drop", so no length checks are needed here.
 */
static struct sock_filter rx_filter[] = {
	/* 0: frames whose 802.1Q tag was stripped into metadata */
	BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT),
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 10),
	/* 2: frames this host sends, ours included */
	BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + SKF_AD_PKTTYPE),
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PACKET_OUTGOING, 8, 0),
	/* 4: ethertype */
	BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 12),
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_ARP, 5, 0),
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IPV6, 0, 5),
	/* 7: IPv6 next header = ICMPv6, ICMPv6 type = NA */
	BPF_STMT(BPF_LD | BPF_B | BPF_ABS, ETH_HDR_LEN + 6),
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_ICMP6_NUM, 0, 3),
	BPF_STMT(BPF_LD | BPF_B | BPF_ABS, ETH_HDR_LEN + IP6_HDR_LEN),
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ICMP6_NA, 0, 1),
	/* 11: accept */
	BPF_STMT(BPF_RET | BPF_K, RX_SNAP),
	/* 12: drop */
	BPF_STMT(BPF_RET | BPF_K, 0),
};

static void
rx_ready(struct loop *loop, int fd, uint32_t events, void *arg)
{
	struct vip_pkt *p = arg;
	uint8_t buf[RX_SNAP];

	p->in_cb = true;
	for (int i = 0; i < RX_BATCH && !p->free_pending; i++) {
		struct sockaddr_ll sll;
		socklen_t slen = sizeof(sll);
		struct vip_claim c;
		ssize_t n;

		n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&sll,
			     &slen);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_warning("could not receive on packet socket of interface %d: %s",
					    p->ifindex, strerror(errno));
			break;
		}
		if (slen >= sizeof(sll) && sll.sll_pkttype == PACKET_OUTGOING)
			continue;
		if (vip_frame_parse(buf, (size_t)n, &c) < 0)
			continue;
		p->cb(&c, p->arg);
	}
	p->in_cb = false;
	if (p->free_pending)
		vip_pkt_free(p);
}

static int
open_tx(int ifindex)
{
	struct sockaddr_ll sll;
	int fd;

	fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = 0;		/* send only: nothing is queued for us */
	sll.sll_ifindex = ifindex;
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
		int saved = errno;

		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

static int
open_rx(int ifindex, const char **what)
{
	struct sock_fprog prog = {
		.len = sizeof(rx_filter) / sizeof(rx_filter[0]),
		.filter = rx_filter,
	};
	struct sockaddr_ll sll;
	int fd, saved;

	*what = "open";
	fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	*what = "attach a filter to";
	if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog,
		       sizeof(prog)) < 0)
		goto fail;
	*what = "bind";
	memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_ALL);
	sll.sll_ifindex = ifindex;
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0)
		goto fail;
	return fd;
fail:
	saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

struct vip_pkt *
vip_pkt_new(struct loop *loop, int ifindex, vip_pkt_cb cb, void *arg,
	    char *err, size_t errlen)
{
	struct vip_pkt *p;
	const char *what;

	if (!loop || !cb || ifindex <= 0) {
		snprintf(err, errlen, "invalid packet socket parameters (interface %d)",
			 ifindex);
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->loop = loop;
	p->ifindex = ifindex;
	p->cb = cb;
	p->arg = arg;
	p->rx_fd = -1;
	p->tx_fd = open_tx(ifindex);
	if (p->tx_fd < 0) {
		snprintf(err, errlen, "could not open sending packet socket on interface %d: %s",
			 ifindex, strerror(errno));
		goto fail;
	}
	p->rx_fd = open_rx(ifindex, &what);
	if (p->rx_fd < 0) {
		snprintf(err, errlen, "could not %s receiving packet socket on interface %d: %s",
			 what, ifindex, strerror(errno));
		goto fail;
	}
	if (loop_add_fd(loop, p->rx_fd, EPOLLIN, rx_ready, p) < 0) {
		snprintf(err, errlen, "could not watch packet socket on interface %d: %s",
			 ifindex, strerror(errno));
		goto fail;
	}
	return p;
fail:
	if (p->rx_fd >= 0)
		close(p->rx_fd);
	if (p->tx_fd >= 0)
		close(p->tx_fd);
	free(p);
	return NULL;
}

void
vip_pkt_free(struct vip_pkt *p)
{
	if (!p)
		return;
	if (p->in_cb) {
		p->free_pending = true;
		return;
	}
	loop_del_fd(p->loop, p->rx_fd);
	close(p->rx_fd);
	close(p->tx_fd);
	free(p);
}

int
vip_pkt_send(struct vip_pkt *p, const uint8_t *frame, size_t len)
{
	struct sockaddr_ll sll;
	ssize_t n;

	if (!p || !frame || len < ETH_HDR_LEN || p->free_pending) {
		errno = EINVAL;
		return -1;
	}
	memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_ifindex = p->ifindex;
	/* Network byte order, as it is in the frame. */
	memcpy(&sll.sll_protocol, frame + 12, 2);
	sll.sll_halen = 6;
	memcpy(sll.sll_addr, frame, 6);
	n = sendto(p->tx_fd, frame, len, 0, (struct sockaddr *)&sll,
		   sizeof(sll));
	if (n < 0)
		return -1;
	if ((size_t)n != len) {
		errno = EIO;
		return -1;
	}
	return 0;
}
