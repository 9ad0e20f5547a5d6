/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * clock.h - the one place pgvigil reads time for decisions.
 *
 * CLOCK_BOOTTIME in milliseconds: monotonic, and it keeps counting while a
 * VM or laptop is suspended, so a lease measured on it cannot outlive a
 * pause. The wall clock is used only for log timestamps (log.c).
 */
#ifndef PGVIGIL_CLOCK_H
#define PGVIGIL_CLOCK_H

#include <stdint.h>

uint64_t clock_now_ms(void);

#endif
