/* Following a registry service from a tier (the proxy's pools, sluice l4's
 * services): a small glue over libsluice's consumer (<sluice/sluice.h>).
 *
 * A daemon has one struct discovery. Each discovery: block it follows
 * becomes a struct discovery_sub; blocks with the same registries,
 * datacenter, region, cache_dir and failover_dir share one sluice_client
 * (one set of background threads, one connection to the registry), and
 * the same service followed twice shares one subscription.
 *
 * Changes: libsluice calls back on its own thread after each change of a
 * service's list; the glue only writes to one eventfd, which the tier's
 * event loop watches (discovery_fd). On readiness the tier calls
 * discovery_ack() and then reads the lists it follows again
 * (discovery_members), comparing versions to see which changed.
 *
 * Threads and fork: the clients' threads live in the process that called
 * discovery_follow(). A process forked from it must never call anything
 * here (see discovery.c).
 */
#ifndef SLUICE_CORE_DISCOVERY_H
#define SLUICE_CORE_DISCOVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sluice/sluice.h>

#include "lib/addr.h"
#include "core/discovery_conf.h"

struct discovery;
struct discovery_sub;

/* One member a tier may balance to (the chosen locality tier, the
 * service's protection applied: healthy is false only when failing open). */
struct discovery_member {
    struct sl_addr addr;
    char id[129];
    uint32_t weight;      /* 1..10000 */
    bool healthy;
};

struct discovery_status {
    enum sluice_source source;
    const char *source_name;  /* "none", "registry", "cache", "failover" */
    uint64_t version;         /* bumps at every change of the members */
    uint64_t age_ms;          /* since the list last came from a registry (0: never) */
    uint32_t members;
    uint32_t instances;
    uint32_t healthy;
    bool fail_open;
    char tier[16];
    bool registry_reachable;
    char node[128];           /* the registry node in use */
};

/* NULL with the reason on failure (no eventfd). */
struct discovery *discovery_new(char *err, size_t errlen);
/* Closes every client (their threads stop) and frees every sub. */
void discovery_free(struct discovery *ds);

/* Readable after any followed service changed; level-triggered until
 * discovery_ack(). */
int discovery_fd(const struct discovery *ds);
void discovery_ack(struct discovery *ds);

/* Follow d's service: opens a client for d's registries if none matches
 * yet, and subscribes. Returns at once (the list comes when a registry or
 * the cache answers). NULL with the reason when the client cannot be
 * opened. Each follow is matched by one discovery_unfollow(); a client
 * that nobody follows any more is closed. */
struct discovery_sub *discovery_follow(struct discovery *ds, const struct cfg_discovery *d, char *err,
                                       size_t errlen);
void discovery_unfollow(struct discovery *ds, struct discovery_sub *s);

/* The members now, at most cap of them into out; returns how many there
 * are (may exceed cap: the rest were not written). *version (may be NULL)
 * gets their version. Members whose address libsluice cannot express are
 * skipped. */
int discovery_members(struct discovery_sub *s, struct discovery_member *out, size_t cap, uint64_t *version);

/* The subscription's state, for status pages. */
void discovery_status(struct discovery_sub *s, struct discovery_status *out);

/* The followed service's name. */
const char *discovery_service(const struct discovery_sub *s);

const char *discovery_source_name(enum sluice_source src);

#endif
