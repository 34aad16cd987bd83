/* The master's side of discovered pools: for one configuration generation,
 * follow each discovered pool's registry service (core/discovery.h), seat
 * its members in the pool's slots (proxy/slots.h) and copy the slots into
 * the shared region, where the workers pick them up on their 100 ms tick.
 *
 * Only the master runs this: the libsluice client's threads live in the
 * master, and workers (forked) never call into it; they read the shared
 * region only. The discovery set itself (struct discovery) outlives
 * generations, so a reload keeps the registry clients and their lists.
 */
#ifndef SLUICE_PROXY_PROXY_DISCOVERY_H
#define SLUICE_PROXY_PROXY_DISCOVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/discovery.h"
#include "proxy/proxy_conf.h"
#include "proxy/shared.h"

struct proxy_health;
struct proxy_discovery;
struct pool_dyn;

/* How long a removed member's slot drains at least before it may be
 * reused: ten worker ticks, so every worker has seen it leave. */
#define PROXY_DISCOVERY_MIN_DRAIN_MS 1000
/* A pool still without a list this long after the start says so (once). */
#define PROXY_DISCOVERY_NO_LIST_GRACE_MS 2000

/* Follow every discovered pool of pc (none: returns an empty one) and seat
 * what the lists already hold (a reload, or a cache_dir); seat every
 * dynamic pool's members from dyn (proxy/pool_dyn.h; ds may be NULL when
 * pc has no discovered pool). NULL with the reason when a registry client
 * cannot be opened. */
struct proxy_discovery *proxy_discovery_new(struct discovery *ds, struct pool_dyn *dyn, const struct proxy_conf *pc,
                                            struct shared_state *sh, char *err, size_t errlen);
void proxy_discovery_free(struct proxy_discovery *pd);

/* Where slot changes restart health checks (NULL: nowhere). */
void proxy_discovery_set_health(struct proxy_discovery *pd, struct proxy_health *ph);

/* Read the lists again and apply what changed; reclaim quiet slots. Call
 * after the discovery fd fired and on a timer. */
void proxy_discovery_sync(struct proxy_discovery *pd, uint64_t now_ms);

/* For the admin API: pool p's discovery state (false for a fixed pool). */
bool proxy_discovery_status(struct proxy_discovery *pd, size_t pool, struct discovery_status *out);
/* Counter totals slot g had before its current member took it (the view
 * shows the member's own: sums minus this). NULL for a fixed backend. */
const struct backend_counters *proxy_discovery_baseline(const struct proxy_discovery *pd, size_t g);

#endif
