/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * ident.c - finds this peer's id by its addresses.
 *
 * The same configuration file is meant to be copied to every peer, so the
 * daemon must know which [peer.N] it is. It compares each configured peer
 * address with the addresses of the local interfaces (getifaddrs). Zero
 * matches or more than one are errors: guessing would let two daemons
 * speak for the same peer, or one speak for none. --id overrides.
 */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "core/conf.h"
#include "core/ident.h"

static int
same_ip(const struct sockaddr *a, const struct sockaddr_storage *b)
{
	if (a->sa_family != b->ss_family)
		return 0;
	if (a->sa_family == AF_INET)
		return memcmp(&((const struct sockaddr_in *)(const void *)a)->sin_addr,
			      &((const struct sockaddr_in *)(const void *)b)->sin_addr,
			      sizeof(struct in_addr)) == 0;
	if (a->sa_family == AF_INET6)
		return memcmp(&((const struct sockaddr_in6 *)(const void *)a)->sin6_addr,
			      &((const struct sockaddr_in6 *)(const void *)b)->sin6_addr,
			      sizeof(struct in6_addr)) == 0;
	return 0;
}

int
ident_find_self(const struct conf *c, int64_t forced, int64_t *self,
		char *err, size_t errlen)
{
	struct ifaddrs *ifa = NULL;
	int64_t found = 0;
	char list[256] = "";

	if (forced > 0) {
		if (!conf_peer_by_id(c, forced)) {
			snprintf(err, errlen, "--id %" PRId64 " does not name a [peer.N] section of \"%s\"",
				 forced, c->path);
			return -1;
		}
		*self = forced;
		return 0;
	}
	if (getifaddrs(&ifa) < 0) {
		snprintf(err, errlen, "could not list local addresses: %m");
		return -1;
	}
	for (size_t i = 0; i < c->npeers; i++) {
		const struct conf_peer *p = &c->peers[i];
		int local = 0;

		for (struct ifaddrs *a = ifa; a && !local; a = a->ifa_next)
			if (a->ifa_addr && same_ip(a->ifa_addr, &p->sa))
				local = 1;
		if (!local)
			continue;
		size_t n = strlen(list);

		snprintf(list + n, sizeof(list) - n, "%s%" PRId64, n ? ", " : "", p->id);
		if (found) {
			snprintf(err, errlen,
				 "several configured peers have a local address (peers %s); start with --id N to choose",
				 list);
			freeifaddrs(ifa);
			return -1;
		}
		found = p->id;
	}
	freeifaddrs(ifa);
	if (!found) {
		snprintf(err, errlen,
			 "none of the peer addresses in \"%s\" is a local address; start with --id N or fix [peer.N] address",
			 c->path);
		return -1;
	}
	*self = found;
	return 0;
}
