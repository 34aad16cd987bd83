/* Latency histograms shared by processes: fixed buckets, relaxed atomics.
 *
 * A struct latency_hist lives in memory that several processes see (the
 * proxy's shared region): each worker writes its own copy with relaxed
 * atomic increments (one for the bucket, one for the sum: no lock on the
 * hot path) and the master sums the copies when /metrics or the stats page
 * asks. The buckets are the same for every histogram, from 0.5 ms to 30 s
 * in the 1-2.5-5 steps of Prometheus' and Envoy's defaults, so two
 * histograms can always be added and a query may aggregate over labels.
 *
 * Buckets are stored as plain counts (not cumulative); the exposition
 * makes them cumulative, as Prometheus' `_bucket{le="..."}` wants, and
 * `_count` is the `+Inf` bucket, so the two always agree.
 */
#ifndef SLUICE_CORE_LATENCY_HIST_H
#define SLUICE_CORE_LATENCY_HIST_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "core/metrics.h"
#include "lib/strbuf.h"

/* Finite upper bounds, then the +Inf bucket. */
#define LATENCY_BOUNDS 15
#define LATENCY_BUCKETS (LATENCY_BOUNDS + 1)

/* Upper bounds in microseconds (inclusive, as Prometheus' le). */
extern const uint64_t latency_bounds_us[LATENCY_BOUNDS];

struct latency_hist {
    _Atomic uint64_t bucket[LATENCY_BUCKETS]; /* observations in (bound[i-1], bound[i]] */
    _Atomic uint64_t sum_us;
};

/* Count one observation of us microseconds (relaxed: hot path). */
void latency_observe(struct latency_hist *h, uint64_t us);

/* dst += src, bucket by bucket (summing workers, carrying over a reload). */
void latency_add(struct latency_hist *dst, const struct latency_hist *src);
/* dst -= base, for a counter whose earlier part belongs to someone else
 * (a discovered slot's earlier members); never below zero. */
void latency_sub(struct latency_hist *dst, const struct latency_hist *base);

/* Observations in all. */
uint64_t latency_count(const struct latency_hist *h);

/* The q-quantile (0 < q < 1) in seconds, estimated the way PromQL's
 * histogram_quantile() does: linear within the bucket that holds it,
 * the highest finite bound if it falls in +Inf. Negative when empty. */
double latency_quantile(const struct latency_hist *h, double q);

/* HELP and TYPE of a histogram family. */
void latency_family(struct strbuf *out, const char *name, const char *help);

/* The samples of one histogram: name_bucket{labels,le="..."} for every
 * bound and +Inf, name_sum{labels} (seconds), name_count{labels}. */
void latency_samples(struct strbuf *out, const char *name, const struct metric_label *labels, size_t n_labels,
                     const struct latency_hist *h);

#endif
