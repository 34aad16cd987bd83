/* The configuration of pools whose backends change at run time
 * (docs/configuration.md, "Backends by name and at run time"):
 *
 *   pools:
 *     - name: app
 *       max_backends: 32            # slots for backends; makes the pool dynamic
 *       resolve:                    # how names among the backends are resolved
 *         resolvers: [10.0.0.2:53]  # default: the nameservers of /etc/resolv.conf
 *         min_ttl: 1s               # re-resolve no sooner than this (default 1s)
 *         max_ttl: 5m               # and no later (default 5m)
 *         timeout: 2s               # per resolver try (default 2s)
 *       backends:
 *         - address: app.internal:8080   # a name: every address it has is a backend
 *         - 10.0.0.9:8080
 *
 * A pool is dynamic when it sets max_backends or lists a backend by name
 * (then max_backends defaults to POOL_DYN_DEFAULT_SLOTS): its backends sit
 * in max_backends slots of the shared region (proxy/slots.h), as a
 * discovered pool's members do, so names can resolve to more or fewer
 * addresses and the API can add and remove backends without a reload.
 *
 * Pure code: parsing only; proxy/pool_dyn.h does the resolving.
 */
#ifndef SLUICE_PROXY_POOL_DYN_CONF_H
#define SLUICE_PROXY_POOL_DYN_CONF_H

#include <stdbool.h>
#include <stdint.h>

#include "lib/addr.h"
#include "core/config_walk.h"

#define POOL_DYN_DEFAULT_SLOTS 64u
#define POOL_DYN_MAX_SLOTS 4096u
#define POOL_DYN_MAX_RESOLVERS 4u

struct cfg_resolve {
    struct sl_addr resolvers[POOL_DYN_MAX_RESOLVERS]; /* none: /etc/resolv.conf's */
    size_t n_resolvers;
    uint32_t min_ttl_ms;     /* default 1s */
    uint32_t max_ttl_ms;     /* default 5m */
    uint32_t timeout_ms;     /* default 2s */
    int line;                /* of the resolve: key's value, 0 when absent */
};

struct cfg_pool;
struct cfg_backend;

void pool_dyn_conf_defaults(struct cfg_pool *p);
/* "max_backends:" and "resolve:" of a pool. */
void pool_dyn_conf_max_backends(struct config_ctx *c, const struct ynode *v, struct cfg_pool *p);
void pool_dyn_conf_resolve(struct config_ctx *c, const struct ynode *v, struct cfg_pool *p);
/* A backend address HOST:PORT whose HOST is a DNS name (not an IP, not
 * "localhost"): fills b->host and b->port and returns true (errors for a
 * malformed name or port reported); false when it is not a name (the
 * caller parses an address). */
bool pool_dyn_conf_backend_name(struct config_ctx *c, const struct ynode *v, struct cfg_backend *b);
/* Once the pool is read: defaults and rules across keys. v is the pool's mapping. */
void pool_dyn_conf_check(struct config_ctx *c, const struct ynode *v, struct cfg_pool *p);
void pool_dyn_conf_free(struct cfg_pool *p);

/* The pool has a backend given by name. */
bool pool_dyn_has_names(const struct cfg_pool *p);

#endif
