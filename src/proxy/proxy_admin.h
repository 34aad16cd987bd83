/* The proxy's part of the admin API: its listeners, pools and backends as
 * core/pool_view.h shows them (/api/pools, the sluice_listener_* and
 * sluice_backend_* families), read from a generation's configuration and
 * shared region, and the API's changes written back there (atomic stores
 * and a generation bump, which the workers poll).
 */
#ifndef SLUICE_PROXY_PROXY_ADMIN_H
#define SLUICE_PROXY_PROXY_ADMIN_H

#include <stddef.h>

#include "core/admin.h"
#include "core/pool_view.h"
#include "proxy/proxy_conf.h"
#include "proxy/pool_dyn.h"
#include "proxy/proxy_discovery.h"
#include "proxy/shared.h"

/* What the routes look at: the master swaps cfg and sh together on
 * reload, between requests. */
struct proxy_admin {
    const struct proxy_conf *cfg;
    struct shared_state *sh;
    struct proxy_discovery *disc;     /* its discovered and dynamic pools, NULL if none */
    struct pool_dyn *dyn;             /* dynamic pools' sources (proxy/pool_dyn.h): the API's adds, removes */
    struct pool_view view;            /* set by proxy_admin_mount */
    const struct admin_site *site;    /* idem: the daemon's status, for /stats */
};

/* Mount /api/pools and register the listener and backend families on
 * site. pa must outlive the site's use. Returns 0 or -1 (site full). */
int proxy_admin_mount(struct admin_site *site, struct proxy_admin *pa);

/* Validate a PATCH body (backend_patch_parse) and apply it to backend gidx
 * of sh: all of the body is checked before anything is stored, so a
 * rejected body changes nothing. "admin": "enabled" also clears a passive
 * ejection. Returns 0, or -1 with a reason in err. */
int proxy_admin_apply_backend_patch(struct shared_state *sh, size_t gidx, const char *body, size_t len, char *err,
                                    size_t errlen);
/* Index in pa->sh of the b-th backend of pool p as the API lists them (a
 * discovered pool: its b-th occupied slot). */
size_t proxy_admin_backend_gidx(const struct proxy_admin *pa, size_t p, size_t b);
/* Apply a checked change to backend gidx and bump sh->generation. */
void proxy_admin_apply_patch(struct shared_state *sh, size_t gidx, const struct backend_patch *pt);

#endif
