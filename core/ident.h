/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * ident.h - which configured peer is this process.
 */
#ifndef PGVIGIL_IDENT_H
#define PGVIGIL_IDENT_H

#include <stddef.h>
#include <stdint.h>

struct conf;

/*
 * With forced > 0 (from --id), checks that [peer.forced] exists. Otherwise
 * looks for the configured peer addresses among the local interface
 * addresses: exactly one must match. Returns 0 and the id in *self, or -1
 * with a message in err (none matched, several matched, unknown --id).
 */
int ident_find_self(const struct conf *c, int64_t forced, int64_t *self,
		    char *err, size_t errlen);

#endif
