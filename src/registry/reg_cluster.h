/* Cluster mode: several registry nodes over one etcd cluster.
 *
 * The etcd store (reg_store_etcd_open) is a reg_store like the embedded
 * one, plus what a cluster needs and the store interface lacks: a feed
 * that keeps this node's model equal to what etcd holds, member presence,
 * the duty of checking persistent instances, and a stale state.
 *
 * Keys (PREFIX is registry.etcd.prefix, default "/sluice/registry/"):
 *   PREFIX services/NAME        a service's settings (JSON); no lease
 *   PREFIX instances/NAME/ID    a registration (JSON: reg_instance_spec);
 *                               ephemeral ones carry their owner node's
 *                               lease, persistent ones none
 *   PREFIX members/NODE         a live node (JSON: node, datacenter,
 *                               region), with the node's lease
 * Deleting a service is one transaction (its key and its instances).
 *
 * The feed (reg_cluster_attach): a range of PREFIX at start, applied to
 * the model (reconciled: what the model holds and etcd does not is
 * removed), then a watch from the range's revision on. Every node, the
 * writer included, applies every change from the watch, so the model only
 * ever holds what etcd holds, in etcd's order. A write's completion comes
 * once etcd has answered it AND this node's feed has applied its revision
 * (read-your-writes on the node that wrote), or at once when etcd answered
 * but the watch is down (the write is durable; the model catches up).
 * So in cluster mode the daemon must NOT apply its writes to the model in
 * their completions (reg_store_feeds_model() says so). If etcd compacted
 * the revision the watch must resume from, the feed loads again.
 *
 * Ephemeral instances and leases: each node holds one lease (TTL
 * lease_ttl, kept alive every TTL/3) and puts its ephemeral instances and
 * its member key with it. Heartbeats stay on the node (no etcd write).
 * The model is told this node's name (reg_model_set_node), so instances
 * other nodes own are "remote": never expired here; their owner writes
 * their health and their removal. A heartbeat sent to a node that does
 * not own the instance should be answered 404 by the daemon, so the
 * client re-registers there (that is how a client moves). The owner is
 * the judge of its ephemeral instances: the watch's echo of its own
 * writes (a health change, a weight) never resets their heartbeat clock
 * or their health, and a registration through it (new, moved to it, or
 * with a new address, location or labels) brings the instance UP: a
 * registration is a sign of life (if it carried an old DOWN, the UP is
 * written so the others learn it).
 *
 * When a node dies its lease expires and etcd deletes its member key and
 * its ephemeral instances' keys in one revision. The feed tells such a
 * deletion (an instance key whose lease is the lease of a member key
 * deleted in the same revision) from a deregistration, and HOLDS the
 * instance instead of removing it: it stays in the model as it was
 * (answered while UP) for reregister_grace_ms, with its health reason
 * saying it is held. Its clients, finding their node gone, register again
 * on another node within the grace; that registration (a put of the same
 * service/ID under a new owner) ends the hold, so the instance never
 * disappears from answers. Held instances not registered again by the end
 * of the grace are removed. The same rule applies after a reload
 * (instances missing from the range whose owner is not a live member are
 * held). If this node's own lease is lost (cut off from etcd for longer
 * than the TTL while etcd lived on), it takes a new lease and puts its
 * member key and every ephemeral instance it owns again.
 *
 * Duty: each persistent instance is health-checked by one live node,
 * chosen by rendezvous hashing (the member with the highest
 * hash(member, service/id)) over the member keys the feed has seen, so
 * when a member's key goes only the instances it checked move, and every
 * node computes the same answer. reg_cluster_has_duty() tells the daemon
 * whether to check an instance; the members hook says when to ask again.
 * The daemon writes each health change it observes (ephemeral instances
 * it owns, persistent ones it has the duty of) to the store, since other
 * nodes learn health only through etcd; changes the feed itself makes
 * (reg_cluster_feeding() is true during them) must not be written back.
 *
 * Stale: when the watch has been down for 1.5 s (no etcd member
 * reachable, or none with a leader; a watch that moves to another member
 * is back well within that) or the first load has not finished, the node
 * is stale: reads
 * and DNS keep answering from the model as it was; writes are refused at
 * once (their completion says "etcd unreachable: ..." — the API's 503).
 * When the watch is back, it resumes from its revision and the node is
 * fresh again.
 */
#ifndef SLUICE_REGISTRY_REG_CLUSTER_H
#define SLUICE_REGISTRY_REG_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/evloop.h"
#include "registry/reg_etcd.h"
#include "registry/reg_model.h"
#include "registry/reg_store.h"

#define REG_ETCD_PREFIX_MAX 200
#define REG_CLUSTER_DEFAULT_PREFIX "/sluice/registry/"

struct reg_etcd_store_conf {
    struct reg_etcd_conf etcd;           /* endpoints and timeouts */
    char prefix[REG_ETCD_PREFIX_MAX + 1]; /* ends with '/' (default REG_CLUSTER_DEFAULT_PREFIX) */
    uint32_t lease_ttl_ms;               /* default 10 s; whole seconds, at least 2 s */
    char node[REG_OWNER_MAX + 1];        /* this node's name (required) */
    char datacenter[REG_LOC_NAME_MAX + 1], region[REG_LOC_NAME_MAX + 1]; /* shown in its member key */
    uint32_t reregister_grace_ms;        /* how long a dead node's instances are held (default 30 s) */
};

void reg_etcd_store_conf_defaults(struct reg_etcd_store_conf *c);
/* -1 with a reason naming the field (endpoints, prefix, lease_ttl, node). */
int reg_etcd_store_conf_check(const struct reg_etcd_store_conf *c, char *err, size_t errlen);

/* The store on etcd. It starts granting its lease at once (on the loop).
 * Its scan op (reg_store_load) blocks on a range of its own: for tools and
 * tests; the daemon uses reg_cluster_attach, which loads without blocking.
 * NULL with a reason on a bad configuration or out of memory; etcd being
 * unreachable is not an error (the store is stale until it answers). */
struct reg_store *reg_store_etcd_open(struct ev_loop *loop, const struct reg_etcd_store_conf *c, char *err,
                                      size_t errlen);

/* Whether st is the etcd store (the other calls below take only it). */
bool reg_store_is_cluster(const struct reg_store *st);
/* The store feeds the model itself: completions must not apply writes. */
static inline bool reg_store_feeds_model(const struct reg_store *st)
{
    return reg_store_is_cluster(st);
}

struct reg_cluster_hooks {
    /* The set of live members changed: duty may have moved. */
    void (*members_changed)(void *arg);
    /* Stale or fresh again (reason: why stale). */
    void (*state_changed)(void *arg, bool stale, const char *reason);
    void *arg;
};

/* Feed m from etcd: load, then watch (see above). hooks may be NULL.
 * Calls reg_model_set_node(m, node). One model per store. */
int reg_cluster_attach(struct reg_store *st, struct reg_model *m, const struct reg_cluster_hooks *hooks, char *err,
                       size_t errlen);

/* True while the feed is changing the model (inside the model's change
 * callback): such changes come from etcd and must not be written back. */
bool reg_cluster_feeding(const struct reg_store *st);

/* Stale (see above); reason gets why (may be NULL). */
bool reg_cluster_stale(const struct reg_store *st, char *reason, size_t reasonlen);

/* The first load has been applied. */
bool reg_cluster_loaded(const struct reg_store *st);

/* Whether this node checks the persistent instance service/id. */
bool reg_cluster_has_duty(const struct reg_store *st, const char *service, const char *id);
/* The member that checks it ("" when no member is known). */
const char *reg_cluster_duty_of(const struct reg_store *st, const char *service, const char *id);

/* Live members, as the feed last saw them (sorted by name). */
size_t reg_cluster_member_count(const struct reg_store *st);
const char *reg_cluster_member_at(const struct reg_store *st, size_t i);

/* Whether service/id is held after its owner's lease expired. */
bool reg_cluster_held(const struct reg_store *st, const char *service, const char *id);

struct reg_cluster_stats {
    bool stale, loaded, has_lease;
    int64_t revision;                  /* the last revision applied */
    int64_t lease_id;
    uint64_t events_applied, loads, watch_restarts;
    uint64_t lease_losses;             /* this node's lease found gone */
    uint64_t held, held_expired, held_reclaimed; /* holds started, removed at the grace's end, ended by a registration */
    size_t holding;                    /* instances held now */
    size_t members;
    char endpoint[REG_ETCD_ENDPOINT_MAX + 1]; /* the etcd endpoint in use */
};
void reg_cluster_stats(const struct reg_store *st, struct reg_cluster_stats *out);

/* JSON value codecs of the keys (pure; the tests and tools use them). */
char *reg_cluster_service_json(const struct reg_service_settings *s);
int reg_cluster_service_parse(const char *text, size_t len, struct reg_service_settings *out, char *err,
                              size_t errlen);

#endif
