/* See proxy_health.h. */
#include "proxy/proxy_health.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/health.h"
#include "core/log.h"
#include "proxy/proxy_protocol.h"
#include "proxy/tls_upstream.h"

/* A TLS pool's checks: the client context they take SSLs from. */
struct pool_check_tls {
    SSL_CTX *ctx;
    const struct cfg_pool_tls *cfg;
};

/* What a target's results go to: its backend's row of the shared region. */
struct backend_mirror {
    struct shared_state *sh;
    struct shared_backend *sb;
};

struct proxy_health {
    struct ev_loop *loop;
    const struct proxy_conf *cfg;
    struct shared_state *sh;
    struct hc_set *set;
    struct backend_mirror *mirrors;   /* [sh->n_backends], global order */
    struct hc_target **targets;       /* [sh->n_backends]: NULL for an empty slot */
    struct pool_check_tls *tls;       /* [n_tls = cfg->n_pools]; ctx NULL for a plain pool */
    size_t n_tls;
};

static void mirror(void *arg, const struct hc_status *st, bool changed)
{
    struct backend_mirror *m = arg;
    struct shared_backend *sb = m->sb;
    sb->check_rise = st->rise;
    sb->check_fall = st->fall;
    sb->checks_ok = st->checks_ok;
    sb->checks_failed = st->checks_failed;
    snprintf(sb->last_check, sizeof sb->last_check, "%s", st->last_check);
    if (!changed)
        return;
    /* up_since_ms before health: a worker that sees UP also sees when. */
    sb->health_changed_ms = ev_clock_ms(); /* for /stats */
    if (st->up)
        atomic_store(&sb->up_since_ms, st->up_since_ms);
    atomic_store(&sb->health, st->up ? HEALTH_UP : HEALTH_DOWN);
    atomic_fetch_add(&m->sh->generation, 1);
}

/* What the region says of the backend: carried over from the previous
 * generation, or fresh. */
static void status_of(const struct shared_backend *sb, struct hc_status *st)
{
    memset(st, 0, sizeof *st);
    st->up = atomic_load(&sb->health) == HEALTH_UP;
    st->up_since_ms = atomic_load(&sb->up_since_ms);
    st->rise = sb->check_rise;
    st->fall = sb->check_fall;
    st->checks_ok = sb->checks_ok;
    st->checks_failed = sb->checks_failed;
    snprintf(st->last_check, sizeof st->last_check, "%.*s", (int)sizeof sb->last_check, sb->last_check);
}

static void proxy_health_free(void *p)
{
    struct proxy_health *ph = p;
    free(ph->mirrors);
    free(ph->targets);
    for (size_t i = 0; i < ph->n_tls; i++)
        SSL_CTX_free(ph->tls[i].ctx);
    free(ph->tls);
    free(ph);
}

/* A check's SSL: verified and named as the pool's traffic is, so a
 * backend whose certificate the proxy would refuse is not healthy. */
static SSL *check_ssl(void *arg, const struct sl_addr *addr)
{
    struct pool_check_tls *pt = arg;
    char err[256];
    SSL *ssl = tls_upstream_ssl_new(pt->ctx, pt->cfg, addr, NULL, err, sizeof err);
    if (!ssl)
        log_warn("health check of %s: %s", addr->text, err);
    return ssl;
}

static struct hc_target *add_target(struct proxy_health *ph, size_t pool, size_t g, const struct sl_addr *addr)
{
    const struct cfg_pool *p = &ph->cfg->pools[pool];
    struct hc_target_spec spec = { .addr = *addr, .check = &p->health, .group = p->name, .on_result = mirror,
                                   .arg = &ph->mirrors[g] };
    if (ph->tls[pool].ctx) {
        spec.tls_new = check_ssl;
        spec.tls_arg = &ph->tls[pool];
    }
    uint8_t preamble[HEALTH_PREAMBLE_MAX];
    spec.preamble_len = pp_check_header(p->send_proxy, preamble, sizeof preamble);
    spec.preamble = preamble;
    status_of(&ph->sh->backends[g], &spec.initial);
    return hc_add(ph->set, &spec);
}

/* Client contexts for the TLS pools. A context that cannot be built
 * (its files changed since the check) leaves that pool's checks failing
 * with "cannot set up TLS", and says why once. */
static int setup_check_tls(struct proxy_health *ph)
{
    ph->tls = calloc(ph->cfg->n_pools + 1, sizeof *ph->tls);
    if (!ph->tls)
        return -1;
    ph->n_tls = ph->cfg->n_pools;
    for (size_t p = 0; p < ph->cfg->n_pools; p++) {
        const struct cfg_pool *pool = &ph->cfg->pools[p];
        if (!pool->tls.enabled || pool->health.type == HEALTH_NONE)
            continue;
        char err[256];
        ph->tls[p].cfg = &pool->tls;
        ph->tls[p].ctx = tls_upstream_ctx_new(&pool->tls, err, sizeof err);
        if (!ph->tls[p].ctx)
            log_error("pool %s: health checks: %s", pool->name, err);
    }
    return 0;
}

struct proxy_health *proxy_health_start(struct ev_loop *loop, const struct proxy_conf *cfg, struct shared_state *sh)
{
    struct proxy_health *ph = calloc(1, sizeof *ph);
    if (!ph)
        return NULL;
    ph->loop = loop;
    ph->set = hc_set_new(loop);
    ph->cfg = cfg;
    ph->sh = sh;
    ph->mirrors = calloc(sh->n_backends + 1, sizeof *ph->mirrors);
    ph->targets = calloc(sh->n_backends + 1, sizeof *ph->targets);
    if (!ph->set || !ph->mirrors || !ph->targets || setup_check_tls(ph) < 0) {
        hc_set_free(ph->set);
        proxy_health_free(ph);
        return NULL;
    }
    for (size_t p = 0; p < cfg->n_pools; p++) {
        const struct cfg_pool *pool = &cfg->pools[p];
        for (size_t b = 0; b < cfg_pool_slots(pool); b++) {
            size_t g = shared_backend_index(sh, p, b);
            ph->mirrors[g] = (struct backend_mirror){ sh, &sh->backends[g] };
            const struct sl_addr *addr = shared_backend_addr(sh, cfg, p, b);
            if (!addr)
                continue; /* an empty slot */
            ph->targets[g] = add_target(ph, p, g, addr);
            if (!ph->targets[g]) {
                proxy_health_stop(ph);
                return NULL;
            }
        }
    }
    return ph;
}

void proxy_health_stop(struct proxy_health *ph)
{
    if (!ph)
        return;
    hc_set_free(ph->set);
    ev_defer_free(ph->loop, ph, proxy_health_free);
}

void proxy_health_slot_changed(struct proxy_health *ph, size_t pool, size_t g)
{
    if (!ph || g >= ph->sh->n_backends)
        return;
    if (ph->targets[g])
        hc_remove(ph->set, ph->targets[g]);
    ph->targets[g] = NULL;
    const struct cfg_pool *p = &ph->cfg->pools[pool];
    const struct sl_addr *addr = shared_backend_addr(ph->sh, ph->cfg, pool, g - ph->sh->pool_first[pool]);
    if (!addr)
        return;
    ph->targets[g] = add_target(ph, pool, g, addr);
    if (!ph->targets[g])
        log_error("pool %s: out of memory starting the health checks of %s", p->name, addr->text);
}
