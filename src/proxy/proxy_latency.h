/* The proxy's latency histograms on /metrics (core/latency_hist.h):
 *
 *   sluice_listener_request_duration_seconds{listener}       http listeners
 *   sluice_listener_connection_duration_seconds{listener}    tcp listeners
 *   sluice_pool_upstream_connect_duration_seconds{pool}
 *   sluice_pool_upstream_header_duration_seconds{pool}
 *
 * The workers count per listener and per backend (shared.h); a pool's
 * histograms are the sums of its backends', so /metrics carries 16
 * buckets per listener and pool, not per backend: a discovered pool's
 * members come and go, and per-backend series would multiply with them.
 * The stats page (stats_page.h) shows per-backend quantiles from the
 * same counters.
 */
#ifndef SLUICE_PROXY_PROXY_LATENCY_H
#define SLUICE_PROXY_PROXY_LATENCY_H

#include <stddef.h>

#include "core/latency_hist.h"
#include "proxy/proxy_admin.h"

/* The collector for metrics_register; arg is the struct proxy_admin. */
void proxy_latency_collect(void *arg, struct strbuf *out);

/* Pool p's connect and header histograms: its backends' (all slots of a
 * discovered pool), summed over workers. */
void proxy_latency_pool(const struct proxy_admin *pa, size_t p, struct latency_hist *connect,
                        struct latency_hist *header);

#endif
