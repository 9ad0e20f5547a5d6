/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * clock.c - CLOCK_BOOTTIME milliseconds. See clock.h for why BOOTTIME.
 */
#include <time.h>

#include "core/clock.h"

uint64_t
clock_now_ms(void)
{
	struct timespec ts;

	/* CLOCK_BOOTTIME cannot fail on Linux >= 2.6.39 with a valid pointer. */
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
