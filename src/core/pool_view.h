/* Pools of backends, and the listeners that feed them, as the admin API
 * and /metrics show them, the same for every tier.
 *
 * Every tier that balances has the same nouns: listeners where traffic
 * comes in, pools of backends where it goes, and per backend an admin
 * weight, an admin state (enabled, draining, disabled) and a health state.
 * The proxy has them in its shared region; `sluice l4` shows each service
 * as a pool named PROTO:VIP whose backends are its reals. A tier describes
 * its model through struct pool_view_ops and pool_view_mount() serves it:
 *
 *   GET   /api/pools                                   every pool
 *   GET   /api/pools/{pool}[/backends]                 one pool / its backends
 *   GET   /api/pools/{pool}/backends/{addr}            one backend
 *   PATCH /api/pools/{pool}/backends/{addr}            {"weight": N} and/or {"admin": "..."}
 *   PUT   /api/pools/{pool}/backends/{addr}/weight     {"weight": N}
 *   POST  /api/pools/{pool}/backends/{addr}/drain|disable|enable
 *   POST  /api/pools/{pool}/backends                   {"address": "ip:port", "weight": N}: add one
 *   DELETE /api/pools/{pool}/backends/{addr}           remove one (it drains)
 *
 * and the families sluice_listener_* and sluice_backend_* of /metrics.
 * The client verbs `sluice pools` and `sluice backend` speak this API,
 * whichever tier answers.
 */
#ifndef SLUICE_CORE_POOL_VIEW_H
#define SLUICE_CORE_POOL_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/addr.h"

struct admin_site;

#define POOL_VIEW_MAX_WEIGHT 1000000

/* ---- a backend's control state ---- */

enum backend_admin { BACKEND_ENABLED = 0, BACKEND_DRAINING = 1, BACKEND_DISABLED = 2 };

/* "enabled", "draining", "disabled" ("enabled" for anything else). */
const char *backend_admin_name(uint32_t a);

/* The values that decide whether a backend takes new traffic, as read at
 * one moment (from atomics, for the proxy). */
struct backend_ctl {
    uint32_t weight;             /* admin weight: the file's, or the API's */
    uint32_t admin;              /* enum backend_admin */
    bool up;                     /* active health checks pass */
    uint64_t up_since_ms;        /* monotonic ms when it last came up (slow start) */
    uint64_t ejected_until_ms;   /* passive health: 0, or ejected until then */
};

/* Effective weight now: 0 when disabled, draining, down or ejected;
 * ramped over slow_start_ms after the backend came up or its ejection
 * ended (0 = no ramp). */
uint32_t backend_effective_weight(const struct backend_ctl *b, uint32_t slow_start_ms, uint64_t now_ms);

/* "up", "down", "ejected", "draining", "disabled", "drained" (weight 0),
 * "slow-start". */
const char *backend_state_name(const struct backend_ctl *b, uint32_t slow_start_ms, uint64_t now_ms);

/* A change asked for through the API. */
struct backend_patch {
    bool has_weight, has_admin;
    uint32_t weight;
    uint32_t admin;              /* enum backend_admin */
};

/* Check a PATCH body ({"weight": N} and/or {"admin": "enabled" |
 * "draining" | "disabled"}; weight_only: {"weight": N} and nothing else).
 * All of it is checked before *pt is filled. Returns 0, or -1 with the
 * reason in err (the API answers 400 with it). */
int backend_patch_parse(const char *body, size_t len, bool weight_only, struct backend_patch *pt, char *err,
                        size_t errlen);

/* Check a POST body that adds a backend: {"address": "IP:PORT"} and
 * optionally "weight" (0..POOL_VIEW_MAX_WEIGHT, default 1), nothing else;
 * the port 1..65535. Returns 0, or -1 with the reason in err. */
int backend_add_parse(const char *body, size_t len, struct sl_addr *addr, uint32_t *weight, char *err,
                      size_t errlen);

/* ---- what a tier shows ---- */

/* Counters of one listener, summed over whatever counts them. */
struct pool_listener_info {
    const char *name;
    uint64_t connections, requests;
    uint64_t responses[6];       /* 1xx, 2xx, 3xx, 4xx, 5xx, other */
    uint64_t rejected, no_backend, timeouts, bytes_received, bytes_sent, active;
    uint64_t underscore_dropped[2]; /* request, response */
    uint64_t body_timeouts;
    uint64_t h2_connections, h2_streams;
    uint64_t h2_flood_closes[6];  /* reset, ping, settings, empty_frames, continuation, ack_queue */
    uint64_t proxy_headers[4];    /* PROXY protocol: accepted, untrusted, invalid, timeout */
};

/* Traffic through one backend. */
struct pool_traffic {
    uint64_t requests;
    uint64_t responses[6];       /* 1xx, 2xx, 3xx, 4xx, 5xx, other */
    uint64_t connect_failures, upstream_errors, retries;
    uint64_t bytes_sent, bytes_received, active, idle;
};

struct pool_backend_info {
    struct backend_ctl ctl;
    uint32_t effective_weight;
    const char *state;           /* backend_state_name() or the tier's own */
    char last_check[128];        /* the last health check in words */
    uint64_t checks_ok, checks_failed;
    uint64_t ejected_for_ms;     /* passive ejection left, 0 = none */
    struct pool_traffic traffic;
};

/* Where a pool's backends come from when a registry feeds it (a
 * discovery: block): shown as the pool's "discovery" object. */
struct pool_discovery_info {
    const char *service;
    const char *source;          /* "none", "registry", "cache", "failover" */
    uint64_t version;            /* of the member list */
    uint64_t age_ms;             /* since the list last came from a registry (0: never) */
    uint32_t members, instances, healthy;
    bool fail_open;              /* the service's protection is on: unhealthy members are used */
    bool registry_reachable;
    const char *node;            /* the registry node in use */
};

/* The tier's model. Indexes are stable while one request or one /metrics
 * rendering runs (they all run on the daemon's loop). */
struct pool_view_ops {
    /* False while the model is being replaced (the API answers 503 and
     * /metrics leaves the families out); NULL: always consistent. */
    bool (*consistent)(void *arg);
    size_t (*n_listeners)(void *arg);
    void (*listener)(void *arg, size_t l, struct pool_listener_info *out);
    size_t (*n_pools)(void *arg);
    const char *(*pool_name)(void *arg, size_t p);
    const char *(*pool_algorithm)(void *arg, size_t p);
    size_t (*n_backends)(void *arg, size_t p);
    const struct sl_addr *(*backend_addr)(void *arg, size_t p, size_t b);
    void (*backend)(void *arg, size_t p, size_t b, uint64_t now_ms, struct pool_backend_info *out);
    /* Optional: fills out and returns true for a pool fed by discovery.
     * Strings live until the next call. */
    bool (*pool_discovery)(void *arg, size_t p, struct pool_discovery_info *out);
    /* Apply a checked change to backend b of pool p. */
    void (*change)(void *arg, size_t p, size_t b, const struct backend_patch *pt);
    /* Optional (NULL: 405): add a backend to pool p at run time, or remove
     * one (it drains). 0, or an HTTP status (404, 409, 503...) with the
     * reason in err. */
    int (*add)(void *arg, size_t p, const struct sl_addr *addr, uint32_t weight, char *err, size_t errlen);
    int (*remove)(void *arg, size_t p, const struct sl_addr *addr, char *err, size_t errlen);
};

struct pool_view {
    const struct pool_view_ops *ops;
    void *arg;
};

/* Serve `view` on site: mount /api/pools and register the listener and
 * backend families with site's metrics. view must outlive the site's use.
 * Returns 0, or -1 when the site has no room left (a programming error). */
int pool_view_mount(struct admin_site *site, const struct pool_view *view);

/* Index of the pool called `name`, or -1. */
int pool_view_find_pool(const struct pool_view *view, const char *name);

/* Index of backend `text` in pool p: the canonical "ip:port", or any
 * spelling addr_parse understands ("localhost:80", "[0::1]:80"); -1 if
 * none. */
int pool_view_find_backend(const struct pool_view *view, size_t p, const char *text);

#endif
