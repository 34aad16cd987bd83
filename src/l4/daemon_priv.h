/* The running `sluice l4`'s model, shared by daemon.c (maps, health,
 * reload), api.c (the /api/l4/ admin routes) and pools.c (the services as
 * pools of the admin API). Nothing else includes it.
 *
 * The services are l4_conf(d->cfg)->services: the file's, then edited by the
 * API. Each service has a slot (vip_meta.svc: its vip_stats entry, its
 * nat_pools entry and its two Maglev tables 2*slot and 2*slot+1) and each
 * real a reals map index. Both stay with the service or real for as long
 * as it exists, across API changes, reloads and restarts (a restart finds
 * them again in the pinned maps: vip_meta.svc and l4_real.owner), because
 * the connection table stores real indexes.
 *
 * The reals of every service, in service order, are d->rr[0..n_reals);
 * service s's are d->rr[sr[s].first ..]. Each real has its admin weight
 * and state (the file's, then the API's) and a target in the health-check
 * set d->hc, which stays with the real across changes (its checks go on
 * undisturbed) unless its service's health_check changes.
 */
#ifndef SLUICE_L4_DAEMON_PRIV_H
#define SLUICE_L4_DAEMON_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/admin.h"
#include "core/daemon.h"
#include "l4/l4_conf.h"
#include "core/evloop.h"
#include "core/health.h"
#include "core/pool_view.h"
#include "l4/loader.h"
#include "l4/stats.h"
#include "l4/sync.h"

struct real_rt {
    uint32_t index;          /* reals map index */
    bool have_mac;
    uint8_t mac[6];
    int ifindex;
    bool active_written;     /* what the reals map says */
    uint64_t next_lookup_ms;
    int last_result;         /* enum nexthop_result, to log changes only */
    uint32_t weight;         /* admin weight: the file's, or the API's */
    uint32_t admin;          /* enum backend_admin */
    struct hc_target *target;   /* its checks in d->hc; NULL until the loop runs */
    bool start_down;         /* without a target yet: down (an earlier run had
                              * taken it out), until its checks pass */
    bool recheck;            /* its service's health_check changed: commit()
                              * gives it a new target with the old results */
};

struct svc_rt {
    uint32_t slot;
    uint32_t live_table;     /* 2*slot or 2*slot + 1 */
    uint32_t *weights;       /* effective weights the live table was built from */
    bool built;
    size_t first;            /* its first real in rr */
    char name[96];           /* "tcp:10.0.0.100:80": its pool's name */
};

struct l4d {
    struct sl_config *cfg;   /* the file, services as edited by the API */
    const char *config_path;
    struct l4_loader ld;
    const char *pin_dir;
    struct daemon dmn;       /* loop, signals, admin API (core/daemon.h) */
    struct ev_loop *loop;    /* dmn.loop */
    struct ev_timer tick;
    struct hc_set *hc;       /* the reals' health checks */
    struct pool_view pool_view; /* the services as pools (pools.c) */
    struct real_rt *rr;      /* [n_reals], in service order */
    size_t n_reals;
    struct svc_rt *sr;       /* [n_svcs] */
    size_t n_svcs;           /* the services the model was built for */
    struct l4_fds fds;
    uint32_t seed;
    uint32_t n_slots;        /* services the maps have room for */
    uint32_t next_index;     /* where the search for a free real index starts */
    bool loop_running;       /* health checks run (not during start-up) */
    struct l4_discovery *disc; /* discovered services' subscriptions (l4_discovery.c); NULL: none yet */
    struct l4_sync *sync;    /* l4.sync (sync.h); NULL when off */
};

/* Replace the list of services with svcs[0..n) (ownership of the array
 * and its services passes to the callee, also on failure). Returns 0, or
 * an HTTP status (400 bad request, 507 no room, 500) with a reason in err;
 * on failure nothing changed. */
int l4d_replace_services(struct l4d *d, struct cfg_l4_service *svcs, size_t n, char *err, size_t errlen);

/* "tcp:10.0.0.100:80": a service's name in the admin API (its pool's). */
void l4_service_name(const struct cfg_l4_service *s, char *buf, size_t cap);

/* Snapshot of the live state (model + maps), for the list and the API. */
int l4d_snapshot(struct l4d *d, struct l4_snapshot *snap, char *err, size_t errlen);

/* Real g's control values: weight, admin, health. */
void l4d_real_ctl(const struct l4d *d, size_t g, struct backend_ctl *out);
/* What its checks found; NULL while it has no target (start-up). */
const struct hc_status *l4d_real_health(const struct l4d *d, size_t g);
/* Apply an admin change to real g (the tick rebuilds the tables). */
void l4d_real_change(struct l4d *d, size_t g, const struct backend_patch *pt);

/* Publish every service's VIP and FullNAT local addresses, with their
 * readiness, on the daemon's VIP board (vips.c; for companions: HA). */
/* With l4.sync, a node that starts publishes its local addresses as
 * serving once warm (l4_sync_warm) and its VIPs this much later (vips.c). */
#define L4_VIPS_AFTER_LOCALS_MS 1000

void l4_publish_vips(struct l4d *d);
/* Register l4's "did this node forward flow F?" on the VIP board (vips.c). */
void l4_register_forwarded(struct l4d *d);

/* The admin API's /api/l4/ routes (api.c). */
void l4_api_handle(void *arg, const struct admin_request *rq, struct admin_reply *reply);

/* The services as pools (pools.c): `sluice pools`, /api/pools and the
 * sluice_backend_* families show a service as the pool PROTO:VIP whose
 * backends are its reals. */
extern const struct pool_view_ops l4_pool_view_ops;

#endif
