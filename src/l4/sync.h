/* l4.sync: NAT and FullNAT connection entries replicated between the LB
 * nodes of a group, so that when one node dies another continues its
 * established flows (docs/l4.md "Connection sync"; the wire format is
 * sync_wire.h).
 *
 * Sending: the data plane announces each new flow in the sync_events ring
 * (forwarder_abi.h); every l4.sync.interval the ring is drained, the
 * flows' entries are read from `nat` and sent, in datagrams of up to 16
 * entries, to every peer. Every l4.sync.refresh the whole `nat` map is
 * walked and every live entry this node made is sent again: a lost
 * datagram, a lost ring event or a restarted peer is repaired by the next
 * walk. Every second a hello carries this node's FullNAT local addresses.
 *
 * Receiving: datagrams from the configured peers only, authenticated
 * (HMAC-SHA256 with the shared key), sequence-checked per peer (replays
 * and older epochs refused, gaps counted as missed). Each entry is written
 * into this node's `nat` map as the data plane would have written it:
 * the real by its address (this node's index for it; unknown reals are
 * skipped and counted), the reply's next hop towards the client from this
 * node's own routes and neighbours, the flow's age on this node's clock.
 * A fresher entry of this node is never overwritten. Imported entries
 * carry L4_NAT_F_IMPORTED and are not sent on.
 */
#ifndef SLUICE_L4_SYNC_H
#define SLUICE_L4_SYNC_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/evloop.h"
#include "l4/l4_conf.h"
#include "l4/sync_wire.h"
#include "lib/strbuf.h"

struct l4_sync;

/* What sync needs from the daemon's model. */
struct l4_sync_ops {
    /* The reals map index of real addr (16 bytes, v4-mapped) : port
     * (network order) of the service in slot svc (vip_meta.svc); 0 if the
     * service has no such real. */
    uint32_t (*real_index)(void *arg, uint32_t svc, const uint8_t addr[16], uint16_t port_be);
    /* This node's FullNAT local addresses (v4-mapped), at most max;
     * returns how many. */
    size_t (*local_addrs)(void *arg, uint8_t (*out)[16], size_t max);
    void *arg;
};

struct l4_sync_maps {
    int nat, vips, cfg, ring;   /* the forwarder's maps: nat, vips, l4_config, sync_events */
};

/* Start: bind conf->listen, open the ring, arm the timers. The key is
 * copied. Returns NULL with a reason in err. */
struct l4_sync *l4_sync_start(struct ev_loop *loop, const struct cfg_l4_sync *conf, const uint8_t *key,
                              size_t keylen, const struct l4_sync_maps *maps, const struct l4_sync_ops *ops,
                              char *err, size_t errlen);
void l4_sync_free(struct l4_sync *s);

/* A new key (reload of l4.sync.key_file). */
void l4_sync_set_key(struct l4_sync *s, const uint8_t *key, size_t keylen);

/* GET /api/l4/sync: this node and every peer (address, node id, last
 * heard, datagrams and entries sent, received, imported, missed and
 * rejected by reason, the peer's FullNAT local addresses). */
json_t *l4_sync_json(const struct l4_sync *s);

/* The sluice_l4_sync_* families of /metrics. */
void l4_sync_metrics(const struct l4_sync *s, struct strbuf *out);

/* ---- for the HA companion ----
 *
 * The FullNAT local addresses the peers announced in their hellos: this
 * node holds their flows' entries, so it can stand in for those addresses
 * when their owner dies (the HA tier announces them as stand-ins with a
 * much worse path; the routers then send the replies here only while the
 * owner's own, better route is gone). Fills out[0..max) and returns the
 * total number (may exceed max). Each peer's list is the one of its last
 * hello: it stays when the peer falls silent (a dead peer is exactly the
 * one to stand in for) and changes when its next hello lists others. */
struct l4_sync_standin {
    uint8_t addr[16];         /* v4-mapped for IPv4 */
    uint32_t node_id;         /* the owner */
    char peer[64];            /* the owner's sync address, "10.0.0.2:7400" */
};
size_t l4_sync_standins(const struct l4_sync *s, struct l4_sync_standin *out, size_t max);

/* Whether this node holds its peers' flows yet: true once one refresh
 * period and one batch interval have passed since the sync started (each
 * peer walks its whole nat map once per refresh, so by then every flow a
 * peer made, the ones made while this node was away included, has been
 * sent here), and always with no sync (NULL) or no peers. Until then the
 * l4 tier publishes its VIPs and local addresses as not serving, so a node
 * that comes back takes no flow it could not continue: a FullNAT flow
 * moved to it before its entry arrived would get a new local port and be
 * reset by the real. */
bool l4_sync_warm(const struct l4_sync *s, uint64_t now_ms);

#endif
