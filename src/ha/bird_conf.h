/* BIRD's configuration for the ha: section (pure: a cfg_ha in, text out).
 *
 * What BIRD does for Sluice:
 *   - `protocol direct sluice_vips` reads the /32 and /128 addresses the
 *     daemon puts on its tun device (ha.interface, "sluice-ha"): each one
 *     is a host route, exported over BGP while the address is there;
 *   - `protocol direct sluice_standin` does the same on a second tun
 *     device, ha.interface + "-s" ("sluice-ha-s"), for stand-in addresses:
 *     the FullNAT local addresses of peers this node can take over. A
 *     direct route carries nothing that tells two /32 addresses apart on
 *     one device (no prefix length to play with), so the class of an
 *     address is the device it is on; the export filter knows a stand-in
 *     route by its protocol and gives it BIRD_STANDIN_PREPENDS more
 *     prepends than any node's own routes, so routers use it only when no
 *     owner announces the address;
 *   - one `protocol bgp sluice_bgp_<address>` per neighbor, with BFD and
 *     the channel of the neighbor's family (ipv4 for an IPv4 neighbor,
 *     ipv6 for an IPv6 one: an IPv6 route over an IPv4 session has no
 *     IPv6 next hop), importing nothing and exporting through
 *     `filter sluice_export`: host routes of the two direct protocols only,
 *     with the node's ASN prepended ha.priority times and the community
 *     (asn, 1000 + priority) (stand-ins: (asn, 2000 + priority)); a 4-byte
 *     ASN does not fit a standard community: then the large community
 *     (asn, 1000 + priority, 0).
 *
 * With ha.preempt false (docs/ha.md, "Preempt or not") each BGP protocol
 * exports through a filter of its own, `filter sluice_export_<address>`,
 * which may give some service VIPs another priority than the node's
 * (BIRD_STARTING_PRIORITY while the session is new, or a priority that
 * keeps the node behind a worse zone that carries the VIP: the list comes
 * from the companion, bird_conf_write_export), adds the community
 * (asn, BIRD_COMMUNITY_ZONE + priority) that says the node's own zone
 * priority whatever it announces with, and keeps what the router sends in
 * an import table (`import table on`; `import none` still: nothing reaches
 * a routing table), with `allow local as` since the routes the routers
 * send back carry the group's own ASN.
 *
 * In mode managed the text is a whole bird.conf (router id, log, device);
 * in mode external it is a fragment for the operator's bird.conf to
 * `include`, every name in it prefixed "sluice_" (the operator's file
 * keeps its own router id, log and device protocol: BIRD allows one device
 * protocol, and the direct protocols need it).
 */
#ifndef SLUICE_HA_BIRD_CONF_H
#define SLUICE_HA_BIRD_CONF_H

#include <netinet/in.h>

#include "lib/strbuf.h"
#include "ha/ha_conf.h"

/* Protocol and filter names of the generated configuration. */
#define BIRD_PROTO_DEVICE "sluice_device"
#define BIRD_PROTO_VIPS "sluice_vips"
#define BIRD_PROTO_STANDIN "sluice_standin"
#define BIRD_PROTO_BFD "sluice_bfd"
#define BIRD_FILTER_EXPORT "sluice_export"
#define BIRD_BGP_PREFIX "sluice_bgp_"
#define BIRD_NAME_MAX 64

/* Stand-in routes get this many prepends on top of the node's priority:
 * more than any node's own route can have (HA_PRIORITY_MAX). */
#define BIRD_STANDIN_PREPENDS (HA_PRIORITY_MAX + 1)
#define BIRD_COMMUNITY_VIP 1000
#define BIRD_COMMUNITY_STANDIN 2000
#define BIRD_COMMUNITY_ZONE 3000

/* ha.preempt false: the worst priority a node holds a VIP back with (one
 * behind a zone of priority HA_PRIORITY_MAX), and the priority of a VIP
 * toward a neighbor whose session is new, before the node has seen which
 * zone the router uses: worse than any held or own route, so a starting
 * node takes no traffic from anyone. Routes with more prepends than
 * BIRD_HELD_PRIORITY_MAX are starting nodes' (or stand-ins): a node does
 * not stay behind them. */
#define BIRD_HELD_PRIORITY_MAX (HA_PRIORITY_MAX + 1)
#define BIRD_STARTING_PRIORITY (HA_PRIORITY_MAX + 2)
#define BIRD_FILTER_EXPORT_PREFIX "sluice_export_"

/* ha.preempt false: a service VIP that goes to neighbor `neighbor` (an
 * index into h->neighbors) with `priority` prepends instead of the node's
 * own. */
struct bird_export_priority {
    size_t neighbor;
    struct ha_ip ip;
    uint32_t priority;
};

/* The stand-in device's name: ha.interface + "-s". */
void bird_conf_standin_ifname(const struct cfg_ha *h, char *buf, size_t cap);

/* The name of the BGP protocol for neighbor n: "sluice_bgp_10_0_0_1",
 * "sluice_bgp_2001_db8__1". */
void bird_conf_bgp_name(const struct cfg_ha_neighbor *n, char *buf, size_t cap);

/* The configuration text for h (mode from h->bird.mode), with router_id
 * (managed mode; ignored in external mode), appended to out. source names
 * the Sluice file in the header comment (may be NULL). */
void bird_conf_write(const struct cfg_ha *h, struct in_addr router_id, const char *source, struct strbuf *out);

/* The same with ha.preempt false's exceptions ov[0..n_ov) (ignored when
 * ha.preempt is true; entries of another family than their neighbor's are
 * skipped). */
void bird_conf_write_export(const struct cfg_ha *h, struct in_addr router_id, const char *source,
                            const struct bird_export_priority *ov, size_t n_ov, struct strbuf *out);

/* The export filter of neighbor n with ha.preempt false:
 * "sluice_export_10_0_0_1". */
void bird_conf_export_name(const struct cfg_ha_neighbor *n, char *buf, size_t cap);

#endif
