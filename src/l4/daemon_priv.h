/* The running `sluice l4`'s model, shared by daemon.c (maps, health,
 * reload) and api.c (the /api/l4/ admin routes). Nothing else includes it.
 *
 * The services are d->cfg->l4.services: the file's, then edited by the
 * API. Each service has a slot (vip_meta.svc: its vip_stats entry, its
 * nat_pools entry and its two Maglev tables 2*slot and 2*slot+1) and each
 * real a reals map index. Both stay with the service or real for as long
 * as it exists, across API changes, reloads and restarts (a restart finds
 * them again in the pinned maps: vip_meta.svc and l4_real.owner), because
 * the connection table stores real indexes.
 */
#ifndef SLUICE_L4_DAEMON_PRIV_H
#define SLUICE_L4_DAEMON_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/admin.h"
#include "core/config.h"
#include "core/evloop.h"
#include "core/health.h"
#include "core/shared.h"
#include "l4/loader.h"
#include "l4/stats.h"

struct real_rt {
    uint32_t index;          /* reals map index */
    bool have_mac;
    uint8_t mac[6];
    int ifindex;
    bool active_written;     /* what the reals map says */
    uint64_t next_lookup_ms;
    int last_result;         /* enum nexthop_result, to log changes only */
};

struct svc_rt {
    uint32_t slot;
    uint32_t live_table;     /* 2*slot or 2*slot + 1 */
    uint32_t *weights;       /* effective weights the live table was built from */
    bool built;
};

struct l4d {
    struct sl_config *cfg;   /* the file, services as edited by the API */
    const char *config_path;
    struct sl_config *pcfg;  /* one pool per service, for health and admin */
    struct shared_state *sh;
    struct l4_loader ld;
    const char *pin_dir;
    struct ev_loop *loop;
    struct ev_timer tick;
    struct ev_io sig_io;
    int sig_fd;
    struct health_checker *hc;
    struct admin_server *admin;
    struct admin_site site;  /* what the admin API serves */
    struct shared_view pools;   /* the pools view: one pool per service */
    struct pool_view pool_view;
    struct real_rt *rr;      /* [sh->n_backends], global order */
    struct svc_rt *sr;       /* [n_services] */
    struct l4_fds fds;
    uint32_t seed;
    uint32_t n_slots;        /* services the maps have room for */
    uint32_t next_index;     /* where the search for a free real index starts */
    bool loop_running;       /* health checks run (not during start-up) */
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

/* The admin API's /api/l4/ routes (api.c). */
void l4_api_handle(void *arg, const struct admin_request *rq, struct admin_reply *reply);

#endif
