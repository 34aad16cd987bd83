/* The discovery: block: where a tier's pool (the proxy's) or service
 * (sluice l4's) takes its members from, instead of a fixed list. Read from
 * YAML with the same keys, defaults and errors wherever a tier puts it:
 *
 *   discovery:
 *     service: web                       # the registry service (required)
 *     registries: [127.0.0.1:9950, ...]  # registry nodes' API addresses
 *                                        # (required unless failover_dir)
 *     datacenter: dc1                    # this node's location (optional):
 *     region: r1                         #   the nearest tier is used first
 *     cache_dir: /var/lib/sluice/discovery   # last-known-good lists (optional)
 *     failover_dir: /etc/sluice/failover     # hand-written lists (optional)
 *     max_members: 64                    # members kept at most, 1..4096
 *
 * Pure code: parsing only. core/discovery.h follows the registry (through
 * libsluice) for a parsed block.
 */
#ifndef SLUICE_CORE_DISCOVERY_CONF_H
#define SLUICE_CORE_DISCOVERY_CONF_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config_walk.h"

#define DISCOVERY_MAX_MEMBERS_DEFAULT 64u
#define DISCOVERY_MAX_MEMBERS_LIMIT 4096u
#define DISCOVERY_MAX_REGISTRIES 16u

struct cfg_discovery {
    char *service;        /* the registry's service name */
    char *registries;     /* "10.0.0.1:9950,http://10.0.0.2:9950" as libsluice takes them; NULL: none */
    size_t n_registries;
    char *datacenter;     /* NULL: unknown */
    char *region;
    char *cache_dir;      /* NULL: none */
    char *failover_dir;   /* NULL: none */
    uint32_t max_members; /* default DISCOVERY_MAX_MEMBERS_DEFAULT */
    int line;             /* of the discovery: key's value */
};

/* Empty: every string NULL, max_members at its default. */
void discovery_conf_defaults(struct cfg_discovery *d);
/* Read a discovery: mapping into d (at its defaults); errors at the
 * walker's current path ("pools[0].discovery.registries[1]: ..."). */
void discovery_conf_parse(struct config_ctx *c, const struct ynode *v, struct cfg_discovery *d);
void discovery_conf_free(struct cfg_discovery *d);
/* Deep copy; 0, or -1 when out of memory (dst left empty). */
int discovery_conf_copy(struct cfg_discovery *dst, const struct cfg_discovery *src);
/* The same registry client serves both: same registries, datacenter,
 * region, cache_dir and failover_dir (the service may differ). */
bool discovery_conf_same_client(const struct cfg_discovery *a, const struct cfg_discovery *b);
/* Everything equal, service and max_members included. */
bool discovery_conf_equal(const struct cfg_discovery *a, const struct cfg_discovery *b);

#endif
