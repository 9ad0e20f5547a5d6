/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * announce.h - the VIP's link-layer frames: gratuitous ARP (request form,
 * SPA = TPA = VIP, broadcast; and the reply form, THA = SHA), the RFC 5227
 * ARP probe (SPA = 0.0.0.0), IPv6 unsolicited neighbour advertisement
 * (type 136 to ff02::1, hop limit 255, override flag, target link-layer
 * address option) and the neighbour solicitation of a duplicate-address
 * probe (from ::, to the solicited-node multicast group), built byte for
 * byte and sent from an AF_PACKET socket bound to the interface; received
 * ARP and neighbour advertisements are parsed to find who else claims the
 * address.
 */
#ifndef PGVIGIL_VIP_ANNOUNCE_H
#define PGVIGIL_VIP_ANNOUNCE_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VIP_FRAME_MAX 128

struct loop;
struct vip_pkt;

enum vip_arp_kind {
	VIP_ARP_GRATUITOUS_REQUEST,	/* op 1, SPA = TPA = VIP, THA = 0 */
	VIP_ARP_GRATUITOUS_REPLY,	/* op 2, SPA = TPA = VIP, THA = SHA */
	VIP_ARP_PROBE,			/* op 1, SPA = 0, TPA = VIP, THA = 0 */
};

/*
 * Pure builders: write a whole Ethernet frame into buf (cap >=
 * VIP_FRAME_MAX) and return its length, or 0 if cap is too small.
 */
size_t vip_arp_build(uint8_t *buf, size_t cap, enum vip_arp_kind kind,
		     const uint8_t mac[6], const struct in_addr *vip);
/* Unsolicited NA for vip from mac (link-local source src), to ff02::1. */
size_t vip_na_build(uint8_t *buf, size_t cap, const uint8_t mac[6],
		    const struct in6_addr *src, const struct in6_addr *vip);
/* Duplicate-address probe: NS for vip from ::, to its solicited-node group. */
size_t vip_ns_probe_build(uint8_t *buf, size_t cap, const uint8_t mac[6],
			  const struct in6_addr *vip);

/* What a received frame says about an address. */
struct vip_claim {
	int family;		/* AF_INET (ARP) or AF_INET6 (NA) */
	uint8_t addr[16];	/* the address claimed: ARP SPA, NA target */
	uint8_t mac[6];		/* who claims it: ARP SHA, NA target LL option or source MAC */
	bool is_reply;		/* ARP reply / solicited NA */
};
/*
 * Parses an Ethernet frame: ARP (any op, SPA != 0) or ICMPv6 NA. Returns 0
 * and fills c, or -1 for anything else or malformed (bounds-checked).
 */
int vip_frame_parse(const uint8_t *frame, size_t len, struct vip_claim *c);

typedef void (*vip_pkt_cb)(const struct vip_claim *c, void *arg);

/*
 * Opens AF_PACKET sockets bound to ifindex: one sends, one receives ARP and
 * ICMPv6 NA (a BPF filter keeps everything else out) and calls cb from the
 * loop for each claim it parses. Returns NULL with err set.
 */
struct vip_pkt *vip_pkt_new(struct loop *loop, int ifindex, vip_pkt_cb cb,
			    void *arg, char *err, size_t errlen);
void vip_pkt_free(struct vip_pkt *p);
/* Sends one frame. Returns 0, or -1 with errno. */
int vip_pkt_send(struct vip_pkt *p, const uint8_t *frame, size_t len);

#endif
