/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * metrics.h - private to api/: histograms and a writer of the Prometheus
 * text exposition format 0.0.4 (one HELP and TYPE line per family, then
 * its samples, label values escaped).
 */
#ifndef PGVIGIL_API_METRICS_H
#define PGVIGIL_API_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define MX_HIST_MAX 16

/* A histogram with fixed upper bounds (seconds), +Inf implied. */
struct mx_hist {
	const double *le;	/* borrowed: static bounds, increasing */
	size_t n;		/* at most MX_HIST_MAX */
	uint64_t bucket[MX_HIST_MAX];	/* per bucket, not cumulative */
	uint64_t count;
	double sum;
};

void mx_hist_init(struct mx_hist *h, const double *le, size_t n);
void mx_hist_observe(struct mx_hist *h, double v);

/* "# HELP name help" and "# TYPE name type". */
void mx_family(FILE *f, const char *name, const char *type, const char *help);
/*
 * One sample: name{labels} value. labels is the inside of the braces,
 * already escaped (mx_label), "" for none.
 */
void mx_sample(FILE *f, const char *name, const char *labels, double v);
/* Its _bucket (cumulative, le="+Inf" last), _sum and _count samples. */
void mx_hist_write(FILE *f, const char *name, const char *labels,
		   const struct mx_hist *h);
/*
 * Appends key="value" (value escaped: backslash, double quote, newline)
 * to buf, with a comma before it when buf is not empty. Truncates safely.
 */
void mx_label(char *buf, size_t cap, const char *key, const char *value);

#endif
