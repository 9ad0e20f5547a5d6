/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * vip.h - the virtual IP: held by this peer exactly while it is entitled
 * (coordinator with a valid lease), released before the lease can end,
 * announced with gratuitous ARP / unsolicited NA, probed before it is
 * added, watched for foreign deletes, link changes and other claimants,
 * and purged at start when a crash left it behind.
 */
#ifndef PGVIGIL_VIP_H
#define PGVIGIL_VIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct conf;
struct loop;
struct hook_runner;
struct json;
struct vip;

/* Something the election must act on: the coordinator cannot serve. */
typedef void (*vip_trouble_cb)(void *arg, const char *reason);

/*
 * Sets up the VIP of conf ([vip] address and interface) for peer self:
 * opens netlink and the packet sockets, and removes every address tagged
 * as pgvigil's (a crash left it; at start nobody is entitled). A witness,
 * or a configuration without a VIP, gets a VIP object that never acts.
 * Returns NULL with err set.
 */
struct vip *vip_new(struct loop *loop, const struct conf *conf, int64_t self,
		    struct hook_runner *hooks, vip_trouble_cb on_trouble,
		    void *arg, char *err, size_t errlen);
void vip_reload(struct vip *v, const struct conf *conf);
/*
 * pgvigil --release-vip: removes conf's VIP from any interface of this
 * network namespace if it is tagged as pgvigil's (a daemon killed without
 * its clean stop left it). Addresses not tagged, and other addresses, are
 * left alone. Returns how many were removed (0: nothing to do), or -1 with
 * err set.
 */
int vip_release_leftover(const struct conf *conf, char *err, size_t errlen);
/*
 * The election's verdict after each of its steps: entitled (coordinator
 * with a valid lease ending at lease_end, CLOCK_BOOTTIME ms) in term. The
 * VIP is released margin_ms before the lease ends unless it is renewed.
 * why_not: the reason logged when a held VIP is released because this
 * peer is not entitled (NULL: "not coordinator").
 */
void vip_set_entitlement(struct vip *v, bool entitled, uint64_t lease_end,
			 uint64_t term, const char *why_not);
/* Clean stop: releases the VIP now. */
void vip_stop(struct vip *v);
void vip_free(struct vip *v);

/* This peer's VIP state: "none", "released", "probing", "held", ... */
const char *vip_state(const struct vip *v);
/* Adds "vip": {...} members to an open JSON object; holder is the coordinator. */
void vip_status_json(const struct vip *v, struct json *j, int64_t holder);
/* One line for the status table, or nothing when no VIP is configured. */
void vip_status_line(const struct vip *v, FILE *out, int64_t holder);
/* Times the VIP was added here, and announcements (GARP / NA) sent. */
void vip_counters(const struct vip *v, uint64_t *acquired,
		  uint64_t *announcements);

#endif
