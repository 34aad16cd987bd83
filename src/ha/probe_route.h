/* Where a probe leaves: the next hop the node's main routing table has
 * for a VIP, as if the VIP were not a local address (local addresses live
 * in the `local` table, which is not consulted), with the MAC the kernel's
 * neighbour table holds for it. Plain rtnetlink, blocking with a 1 s
 * bound: a route dump, a neighbour dump, an address dump at most.
 *
 * Policy routing (ip rule) is not followed: the main table is what a
 * client-bound packet of an LB node uses in the deployments docs/ha.md
 * describes. A configured gateway overrides the route's. */
#ifndef SLUICE_HA_PROBE_ROUTE_H
#define SLUICE_HA_PROBE_ROUTE_H

#include <stddef.h>
#include <stdint.h>

struct probe_nexthop {
    int ifindex;
    uint8_t mac[6];
    uint8_t gateway[16];
    uint8_t source[16]; /* preferred source of the route, else the first global address of ifindex */
    int has_source;
};

enum probe_route_rc {
    PROBE_ROUTE_FOUND = 0,
    PROBE_ROUTE_PENDING = 1, /* the gateway's MAC is not known yet; resolution was started */
    PROBE_ROUTE_ERROR = -1,  /* no route, an on-link route without a gateway, netlink failure */
};

/* dst and gateway: 4 or 16 network-order bytes by family; gateway NULL =
 * the route's. err gets the reason of a non-FOUND answer. */
enum probe_route_rc probe_route_resolve(int family, const uint8_t *dst, const uint8_t *gateway,
                                        struct probe_nexthop *out, char *err, size_t errlen);

#endif
