/* See latency_hist.h. */
#include "core/latency_hist.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

const uint64_t latency_bounds_us[LATENCY_BOUNDS] = {
    500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
    1000000, 2500000, 5000000, 10000000, 30000000,
};

/* The le label of each bound, as Prometheus' client libraries print them. */
static const char *const bound_text[LATENCY_BOUNDS] = {
    "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
    "0.25", "0.5", "1", "2.5", "5", "10", "30",
};

static size_t bucket_of(uint64_t us)
{
    size_t i = 0;
    while (i < LATENCY_BOUNDS && us > latency_bounds_us[i])
        i++;
    return i;
}

void latency_observe(struct latency_hist *h, uint64_t us)
{
    atomic_fetch_add_explicit(&h->bucket[bucket_of(us)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
}

void latency_add(struct latency_hist *dst, const struct latency_hist *src)
{
    for (size_t i = 0; i < LATENCY_BUCKETS; i++)
        atomic_fetch_add_explicit(&dst->bucket[i], atomic_load_explicit(&src->bucket[i], memory_order_relaxed),
                                  memory_order_relaxed);
    atomic_fetch_add_explicit(&dst->sum_us, atomic_load_explicit(&src->sum_us, memory_order_relaxed),
                              memory_order_relaxed);
}

static void sub_floor(_Atomic uint64_t *c, uint64_t v)
{
    uint64_t have = atomic_load_explicit(c, memory_order_relaxed);
    atomic_store_explicit(c, have > v ? have - v : 0, memory_order_relaxed);
}

void latency_sub(struct latency_hist *dst, const struct latency_hist *base)
{
    for (size_t i = 0; i < LATENCY_BUCKETS; i++)
        sub_floor(&dst->bucket[i], atomic_load_explicit(&base->bucket[i], memory_order_relaxed));
    sub_floor(&dst->sum_us, atomic_load_explicit(&base->sum_us, memory_order_relaxed));
}

uint64_t latency_count(const struct latency_hist *h)
{
    uint64_t n = 0;
    for (size_t i = 0; i < LATENCY_BUCKETS; i++)
        n += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
    return n;
}

double latency_quantile(const struct latency_hist *h, double q)
{
    uint64_t counts[LATENCY_BUCKETS], total = 0;
    for (size_t i = 0; i < LATENCY_BUCKETS; i++)
        total += counts[i] = atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
    if (!total)
        return -1.0;
    double rank = q * (double)total, below = 0;
    for (size_t i = 0; i < LATENCY_BUCKETS; i++) {
        if (below + (double)counts[i] < rank || !counts[i]) {
            below += (double)counts[i];
            continue;
        }
        if (i == LATENCY_BOUNDS) /* in +Inf: the highest bound we know */
            return (double)latency_bounds_us[LATENCY_BOUNDS - 1] / 1e6;
        double lo = i ? (double)latency_bounds_us[i - 1] : 0.0, hi = (double)latency_bounds_us[i];
        return (lo + (hi - lo) * (rank - below) / (double)counts[i]) / 1e6;
    }
    return (double)latency_bounds_us[LATENCY_BOUNDS - 1] / 1e6;
}

void latency_family(struct strbuf *out, const char *name, const char *help)
{
    metrics_family(out, name, "histogram", help);
}

void latency_samples(struct strbuf *out, const char *name, const struct metric_label *labels, size_t n_labels,
                     const struct latency_hist *h)
{
    char series[128];
    struct metric_label lb[8];
    if (n_labels > 7)
        n_labels = 7;
    memcpy(lb, labels, n_labels * sizeof *lb);
    uint64_t cumulative = 0;
    snprintf(series, sizeof series, "%s_bucket", name);
    for (size_t i = 0; i < LATENCY_BUCKETS; i++) {
        cumulative += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
        lb[n_labels] = (struct metric_label){ "le", i < LATENCY_BOUNDS ? bound_text[i] : "+Inf" };
        metrics_sample(out, series, lb, n_labels + 1, cumulative);
    }
    char sum[32];
    uint64_t sum_us = atomic_load_explicit(&h->sum_us, memory_order_relaxed);
    snprintf(sum, sizeof sum, "%" PRIu64 ".%06" PRIu64, sum_us / 1000000, sum_us % 1000000);
    snprintf(series, sizeof series, "%s_sum", name);
    metrics_sample_text(out, series, labels, n_labels, sum);
    snprintf(series, sizeof series, "%s_count", name);
    metrics_sample(out, series, labels, n_labels, cumulative);
}
