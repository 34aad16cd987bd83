/* sluice l4's services as pools (core/pool_view.h): the pool PROTO:VIP
 * ("tcp:10.0.0.100:80") whose backends are the service's reals, so that
 * `sluice pools`, `sluice backend`, /api/pools and the sluice_backend_*
 * families work on sluice l4 as on the proxy. There are no listeners, no
 * traffic counters (the XDP ones are sluice_l4_*) and no passive ejection;
 * a real's weight and admin state are its own (daemon_priv.h), and a
 * change is picked up by the next tick. */
#include <stdio.h>
#include <string.h>

#include "lib/balance.h"
#include "l4/daemon_priv.h"
#include "l4/l4_discovery.h"

static size_t no_listeners(void *arg)
{
    return 0;
}

static void no_listener(void *arg, size_t l, struct pool_listener_info *out)
{
    memset(out, 0, sizeof *out);
}

static size_t n_pools(void *arg)
{
    const struct l4d *d = arg;
    return d->n_svcs;
}

static const char *pool_name(void *arg, size_t p)
{
    const struct l4d *d = arg;
    return d->sr[p].name;
}

/* Every service picks by a hash of the flow (Maglev). */
static const char *pool_algorithm(void *arg, size_t p)
{
    return lb_algorithm_name(LB_HASH);
}

static size_t n_backends(void *arg, size_t p)
{
    const struct l4d *d = arg;
    return l4_conf(d->cfg)->services[p].n_reals;
}

static const struct sl_addr *backend_addr(void *arg, size_t p, size_t b)
{
    const struct l4d *d = arg;
    return &l4_conf(d->cfg)->services[p].reals[b].addr;
}

static void backend(void *arg, size_t p, size_t b, uint64_t now, struct pool_backend_info *out)
{
    const struct l4d *d = arg;
    size_t g = d->sr[p].first + b;
    const struct hc_status *h = l4d_real_health(d, g);
    memset(out, 0, sizeof *out);
    l4d_real_ctl(d, g, &out->ctl);
    out->effective_weight = backend_effective_weight(&out->ctl, 0, now);
    out->state = backend_state_name(&out->ctl, 0, now);
    snprintf(out->last_check, sizeof out->last_check, "%s", h ? h->last_check : "not checked yet");
    out->checks_ok = h ? h->checks_ok : 0;
    out->checks_failed = h ? h->checks_failed : 0;
}

/* A discovered service: its registry service's state, as the proxy's
 * discovered pools show theirs. */
static bool pool_discovery(void *arg, size_t p, struct pool_discovery_info *out)
{
    struct l4d *d = arg;
    const struct l4_disc_status *st = l4_discovery_status(d, p);
    if (!st)
        return false;
    *out = (struct pool_discovery_info){ .service = st->conf->service, .source = st->now.source_name,
                                         .version = st->now.version, .age_ms = st->now.age_ms,
                                         .members = st->now.members, .instances = st->now.instances,
                                         .healthy = st->now.healthy, .fail_open = st->now.fail_open,
                                         .registry_reachable = st->now.registry_reachable, .node = st->now.node };
    return true;
}

static void change(void *arg, size_t p, size_t b, const struct backend_patch *pt)
{
    struct l4d *d = arg;
    l4d_real_change(d, d->sr[p].first + b, pt);
}

const struct pool_view_ops l4_pool_view_ops = {
    .n_listeners = no_listeners,
    .listener = no_listener,
    .n_pools = n_pools,
    .pool_name = pool_name,
    .pool_algorithm = pool_algorithm,
    .n_backends = n_backends,
    .backend_addr = backend_addr,
    .backend = backend,
    .pool_discovery = pool_discovery,
    .change = change,
};
