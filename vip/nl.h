/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * nl.h - rtnetlink through libmnl: the VIP's addresses and the link they
 * live on. A request socket adds, deletes and dumps addresses and reads
 * links (each request waits for the kernel's ACK, a local round trip); a
 * separate monitor socket, on the event loop, reports address and link
 * changes as they happen (RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR,
 * RTNLGRP_IPV6_IFADDR). Nothing shells out to ip(8).
 *
 * Addresses pgvigil adds carry a tag so a restarted daemon finds them:
 * IFA_PROTO = VIP_NL_PROTO (kernel 5.18 and later) and, for IPv4, the
 * label "<ifname>:vip".
 */
#ifndef PGVIGIL_VIP_NL_H
#define PGVIGIL_VIP_NL_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VIP_NL_PROTO 0xa7	/* IFA_PROTO value that marks pgvigil's addresses */

struct loop;
struct vip_nl;

struct vip_nl_addr {
	bool added;		/* RTM_NEWADDR (true) or RTM_DELADDR */
	int family;		/* AF_INET or AF_INET6 */
	int ifindex;
	uint8_t addr[16];	/* 4 or 16 bytes used */
	uint8_t prefixlen;
	uint8_t proto;		/* IFA_PROTO, 0 when absent */
	char label[IFNAMSIZ];	/* IFA_LABEL (IPv4), empty when absent */
	bool tagged;		/* proto == VIP_NL_PROTO, or label ends in ":vip" */
};

struct vip_nl_link {
	int ifindex;
	char name[IFNAMSIZ];
	bool up;		/* IFF_UP and IFF_LOWER_UP (carrier) */
	uint8_t mac[6];
	unsigned mtu;
};

typedef void (*vip_nl_addr_cb)(const struct vip_nl_addr *a, void *arg);
typedef void (*vip_nl_link_cb)(const struct vip_nl_link *l, void *arg);
/* The monitor lost events (ENOBUFS): the caller must dump and reconcile. */
typedef void (*vip_nl_resync_cb)(void *arg);

/*
 * Opens both sockets and subscribes the monitor. Callbacks may be NULL.
 * Returns NULL with err set.
 */
struct vip_nl *vip_nl_new(struct loop *loop, vip_nl_addr_cb on_addr,
			  vip_nl_link_cb on_link, vip_nl_resync_cb on_resync,
			  void *arg, char *err, size_t errlen);
void vip_nl_free(struct vip_nl *nl);

/* Reads the link named ifname. Returns 0, or -1 with err set. */
int vip_nl_get_link(struct vip_nl *nl, const char *ifname,
		    struct vip_nl_link *out, char *err, size_t errlen);

/*
 * Adds addr/prefixlen on ifindex, tagged (see above), IPv6 with
 * IFA_F_NODAD, and waits for the ACK. Returns 0, 1 if it already exists
 * (EEXIST), or -1 with err set.
 */
int vip_nl_addr_add(struct vip_nl *nl, int ifindex, int family,
		    const uint8_t *addr, uint8_t prefixlen, const char *label,
		    char *err, size_t errlen);
/* Deletes it. Returns 0, 1 if it was not there, or -1 with err set. */
int vip_nl_addr_del(struct vip_nl *nl, int ifindex, int family,
		    const uint8_t *addr, uint8_t prefixlen, char *err,
		    size_t errlen);
/* Calls cb for every address of the system (both families). */
int vip_nl_addr_dump(struct vip_nl *nl, vip_nl_addr_cb cb, void *arg,
		     char *err, size_t errlen);

#endif
