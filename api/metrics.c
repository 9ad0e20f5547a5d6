/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * metrics.c - histograms and the Prometheus text format writer of the API.
 *
 * Buckets are counted individually and made cumulative only when written,
 * so an observation costs one comparison per bound and no allocation.
 * Values are written with %.17g, which round-trips a double; whole
 * numbers come out without a fraction.
 */
#include <math.h>
#include <string.h>

#include "api/metrics.h"

void
mx_hist_init(struct mx_hist *h, const double *le, size_t n)
{
	memset(h, 0, sizeof(*h));
	h->le = le;
	h->n = n < MX_HIST_MAX ? n : MX_HIST_MAX;
}

void
mx_hist_observe(struct mx_hist *h, double v)
{
	if (isnan(v))
		return;
	for (size_t i = 0; i < h->n; i++) {
		if (v <= h->le[i]) {
			h->bucket[i]++;
			break;
		}
	}
	h->count++;
	h->sum += v;
}

void
mx_family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
value(FILE *f, double v)
{
	if (isinf(v))
		fputs(v > 0 ? "+Inf" : "-Inf", f);
	else if (isnan(v))
		fputs("NaN", f);
	else
		fprintf(f, "%.17g", v);
}

void
mx_sample(FILE *f, const char *name, const char *labels, double v)
{
	if (labels && labels[0])
		fprintf(f, "%s{%s} ", name, labels);
	else
		fprintf(f, "%s ", name);
	value(f, v);
	fputc('\n', f);
}

void
mx_hist_write(FILE *f, const char *name, const char *labels,
	      const struct mx_hist *h)
{
	uint64_t cum = 0;
	const char *sep = labels && labels[0] ? "," : "";

	for (size_t i = 0; i < h->n; i++) {
		cum += h->bucket[i];
		fprintf(f, "%s_bucket{%s%sle=\"", name, labels ? labels : "", sep);
		value(f, h->le[i]);
		fprintf(f, "\"} %llu\n", (unsigned long long)cum);
	}
	fprintf(f, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels ? labels : "", sep,
		(unsigned long long)h->count);
	fprintf(f, "%s_sum{%s} ", name, labels ? labels : "");
	value(f, h->sum);
	fprintf(f, "\n%s_count{%s} %llu\n", name, labels ? labels : "",
		(unsigned long long)h->count);
}

void
mx_label(char *buf, size_t cap, const char *key, const char *v)
{
	size_t n = strnlen(buf, cap);

	if (n + 1 >= cap)
		return;
	int r = snprintf(buf + n, cap - n, "%s%s=\"", n ? "," : "", key);

	if (r < 0 || (size_t)r >= cap - n) {
		buf[n] = '\0';
		return;
	}
	n += (size_t)r;
	for (; v && *v && n + 3 < cap; v++) {
		if (*v == '\\' || *v == '"') {
			buf[n++] = '\\';
			buf[n++] = *v;
		} else if (*v == '\n') {
			buf[n++] = '\\';
			buf[n++] = 'n';
		} else {
			buf[n++] = *v;
		}
	}
	if (n + 1 < cap)
		buf[n++] = '"';
	buf[n < cap ? n : cap - 1] = '\0';
}
