/* Next-hop MAC addresses for real servers, from the kernel's tables.
 *
 * The forwarder writes the next hop's MAC into every frame it sends, so the
 * control plane must know it before a real can take traffic. The route to
 * the real gives the outgoing interface and the gateway (none when the real
 * is on-link, as in DR); the neighbour table gives the gateway's (or the
 * real's) MAC. When the neighbour is not known yet, a UDP datagram to the
 * real makes the kernel resolve it (ARP or ND) and the caller asks again.
 */
#ifndef SLUICE_L4_NEXTHOP_H
#define SLUICE_L4_NEXTHOP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum nexthop_result {
    NEXTHOP_FOUND = 0,     /* mac and ifindex filled */
    NEXTHOP_PENDING = 1,   /* not in the neighbour table: resolution started */
    NEXTHOP_ERROR = -1,    /* no route, or netlink failed: reason in err */
};

/* dst: the real's address (AF_INET or AF_INET6, the port is ignored). */
enum nexthop_result nexthop_lookup(const struct sockaddr *dst, int *ifindex, uint8_t mac[6], char *err,
                                   size_t errlen);

#endif
