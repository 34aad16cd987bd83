/* The sluice_registry_* families of /metrics (docs/admin-api.md,
 * "Metrics"): the model's counters (registrations, deregistrations,
 * heartbeats, expirations), the protections (per service: fail_open and
 * eviction_capped; the node: self_preservation), health changes, the
 * store's state and writes, and the watchers. The DNS server registers
 * its own sluice_registry_dns_* families (reg_dns.h). */
#ifndef SLUICE_REGISTRY_REG_METRICS_H
#define SLUICE_REGISTRY_REG_METRICS_H

#include "lib/strbuf.h"

/* A metrics_collect_fn; arg is the struct reg_daemon. */
void reg_metrics_collect(void *arg, struct strbuf *out);

#endif
