/* See proxy_admin.h. */
#include "proxy/proxy_admin.h"

#include <stdio.h>
#include <string.h>

#include "core/metrics.h"
#include "proxy/ratelimit_http.h"
#include "proxy/proxy_latency.h"
#include "proxy/slots.h"
#include "proxy/stats_page.h"

void proxy_admin_apply_patch(struct shared_state *sh, size_t gidx, const struct backend_patch *pt)
{
    struct shared_backend *sb = &sh->backends[gidx];
    if (pt->has_weight)
        atomic_store(&sb->weight, pt->weight);
    if (pt->has_admin) {
        /* Re-enabling is the operator saying "try it again now": forget a
         * passive ejection too. */
        if (pt->admin == BACKEND_ENABLED) {
            atomic_store(&sb->ejected_until_ms, 0);
            atomic_store(&sb->consecutive_fails, 0);
        }
        atomic_store(&sb->admin, pt->admin);
    }
    atomic_fetch_add(&sh->generation, 1);
}

int proxy_admin_apply_backend_patch(struct shared_state *sh, size_t gidx, const char *body, size_t len, char *err,
                               size_t errlen)
{
    if (!sh || gidx >= sh->n_backends) {
        snprintf(err, errlen, "no such backend");
        return -1;
    }
    struct backend_patch pt;
    if (backend_patch_parse(body, len, false, &pt, err, errlen) < 0)
        return -1;
    proxy_admin_apply_patch(sh, gidx, &pt);
    return 0;
}

/* cfg and sh are swapped together on reload, but a mismatch must never
 * turn into an out-of-bounds read. */
static bool view_consistent(void *arg)
{
    const struct proxy_admin *v = arg;
    if (!v || !v->cfg || !v->sh)
        return false;
    size_t n = 0;
    for (size_t p = 0; p < v->cfg->n_pools; p++)
        n += cfg_pool_slots(&v->cfg->pools[p]);
    return n == v->sh->n_backends && v->cfg->n_listeners == v->sh->n_listeners;
}

static size_t view_n_listeners(void *arg)
{
    const struct proxy_admin *v = arg;
    return v->cfg->n_listeners;
}

/* counters index responses as [0]=other, [1..5]=1xx..5xx; the view uses
 * label order. */
static void responses_in_label_order(uint64_t out[6], const _Atomic uint64_t in[6])
{
    for (int k = 0; k < 5; k++)
        out[k] = atomic_load(&in[k + 1]);
    out[5] = atomic_load(&in[0]);
}

static void view_listener(void *arg, size_t l, struct pool_listener_info *r)
{
    const struct proxy_admin *v = arg;
    struct listener_counters c;
    shared_sum_listener(v->sh, l, &c);
    memset(r, 0, sizeof *r);
    r->name = v->cfg->listeners[l].name;
    r->connections = atomic_load(&c.connections);
    r->requests = atomic_load(&c.requests);
    responses_in_label_order(r->responses, c.responses);
    r->rejected = atomic_load(&c.rejected);
    r->no_backend = atomic_load(&c.no_backend);
    r->timeouts = atomic_load(&c.timeouts);
    r->bytes_received = atomic_load(&c.bytes_received);
    r->bytes_sent = atomic_load(&c.bytes_sent);
    r->active = atomic_load(&c.active);
    for (int k = 0; k < 2; k++)
        r->underscore_dropped[k] = atomic_load(&c.underscore_dropped[k]);
    r->body_timeouts = atomic_load(&c.body_timeouts);
    r->h2_connections = atomic_load(&c.h2_connections);
    r->h2_streams = atomic_load(&c.h2_streams);
    for (int k = 0; k < 6; k++)
        r->h2_flood_closes[k] = atomic_load(&c.h2_flood_closes[k]);
    for (int k = 0; k < 4; k++)
        r->proxy_headers[k] = atomic_load(&c.proxy_headers[k]);
}

static size_t view_n_pools(void *arg)
{
    const struct proxy_admin *v = arg;
    return v->cfg->n_pools;
}

static const char *view_pool_name(void *arg, size_t p)
{
    const struct proxy_admin *v = arg;
    return v->cfg->pools[p].name;
}

static const char *view_pool_algorithm(void *arg, size_t p)
{
    const struct proxy_admin *v = arg;
    return lb_algorithm_name(v->cfg->pools[p].algorithm);
}

/* A discovered pool shows the members in its slots (active or draining),
 * in slot order: b is the b-th slot that holds one. */
static size_t view_slot(const struct proxy_admin *v, size_t p, size_t b)
{
    size_t first = v->sh->pool_first[p], n = cfg_pool_slots(&v->cfg->pools[p]);
    for (size_t i = 0; i < n; i++)
        if (atomic_load(&v->sh->backends[first + i].slot_state) != SLOT_EMPTY && b-- == 0)
            return first + i;
    return first; /* not reached: b < view_n_backends() */
}

static size_t view_gidx(const struct proxy_admin *v, size_t p, size_t b)
{
    return cfg_pool_slotted(&v->cfg->pools[p]) ? view_slot(v, p, b) : shared_backend_index(v->sh, p, b);
}

size_t proxy_admin_backend_gidx(const struct proxy_admin *pa, size_t p, size_t b)
{
    return view_gidx(pa, p, b);
}

static size_t view_n_backends(void *arg, size_t p)
{
    const struct proxy_admin *v = arg;
    const struct cfg_pool *pool = &v->cfg->pools[p];
    if (!cfg_pool_slotted(pool))
        return pool->n_backends;
    size_t used = 0, first = v->sh->pool_first[p];
    for (size_t i = 0; i < cfg_pool_slots(pool); i++)
        used += atomic_load(&v->sh->backends[first + i].slot_state) != SLOT_EMPTY;
    return used;
}

static const struct sl_addr *view_backend_addr(void *arg, size_t p, size_t b)
{
    const struct proxy_admin *v = arg;
    if (cfg_pool_slotted(&v->cfg->pools[p]))
        return &v->sh->backends[view_slot(v, p, b)].slot_addr;
    return &v->cfg->pools[p].backends[b].addr;
}

/* A discovered member's counters are its own: the slot's totals minus
 * what earlier members of the slot counted. */
static void minus_baseline(struct backend_counters *c, const struct backend_counters *base)
{
    if (!base)
        return;
#define SUB(f) atomic_store(&c->f, atomic_load(&c->f) - atomic_load(&base->f))
    SUB(requests);
    for (int k = 0; k < 6; k++)
        SUB(responses[k]);
    SUB(connect_failures);
    SUB(upstream_errors);
    SUB(retries);
    SUB(bytes_sent);
    SUB(bytes_received);
#undef SUB
    latency_sub(&c->connect_time, &base->connect_time);
    latency_sub(&c->header_time, &base->header_time);
}

static void view_backend(void *arg, size_t p, size_t b, uint64_t now, struct pool_backend_info *r)
{
    const struct proxy_admin *v = arg;
    const struct cfg_pool *pool = &v->cfg->pools[p];
    size_t g = view_gidx(v, p, b);
    const struct shared_backend *sb = &v->sh->backends[g];
    struct backend_counters c;
    shared_sum_backend(v->sh, g, &c);
    if (cfg_pool_slotted(pool))
        minus_baseline(&c, proxy_discovery_baseline(v->disc, g));
    memset(r, 0, sizeof *r);
    shared_backend_ctl(sb, &r->ctl);
    r->effective_weight = backend_effective_weight(&r->ctl, pool->slow_start_ms, now);
    r->state = backend_state_name(&r->ctl, pool->slow_start_ms, now);
    if (cfg_pool_slotted(pool) && atomic_load(&sb->slot_state) == SLOT_DRAINING) {
        r->state = "removed"; /* gone from the registry's list (or the pool's): draining */
        r->effective_weight = 0;
    }
    memcpy(r->last_check, sb->last_check, sizeof sb->last_check);
    r->last_check[sizeof sb->last_check] = '\0';
    r->checks_ok = sb->checks_ok;
    r->checks_failed = sb->checks_failed;
    r->ejected_for_ms = r->ctl.ejected_until_ms > now ? r->ctl.ejected_until_ms - now : 0;
    struct pool_traffic *t = &r->traffic;
    t->requests = atomic_load(&c.requests);
    responses_in_label_order(t->responses, c.responses);
    t->connect_failures = atomic_load(&c.connect_failures);
    t->upstream_errors = atomic_load(&c.upstream_errors);
    t->retries = atomic_load(&c.retries);
    t->bytes_sent = atomic_load(&c.bytes_sent);
    t->bytes_received = atomic_load(&c.bytes_received);
    t->active = atomic_load(&c.active);
    t->idle = atomic_load(&c.idle);
}

static void view_change(void *arg, size_t p, size_t b, const struct backend_patch *pt)
{
    const struct proxy_admin *v = arg;
    proxy_admin_apply_patch(v->sh, view_gidx(v, p, b), pt);
}

static bool view_pool_discovery(void *arg, size_t p, struct pool_discovery_info *out)
{
    struct proxy_admin *v = arg;
    static struct discovery_status st; /* the strings out points to live here until the next call */
    if (!v->cfg->pools[p].discovery || !proxy_discovery_status(v->disc, p, &st))
        return false;
    *out = (struct pool_discovery_info){
        .service = v->cfg->pools[p].discovery->service,
        .source = st.source_name,
        .version = st.version,
        .age_ms = st.age_ms,
        .members = st.members,
        .instances = st.instances,
        .healthy = st.healthy,
        .fail_open = st.fail_open,
        .registry_reachable = st.registry_reachable,
        .node = st.node,
    };
    return true;
}

/* The API's adds and removes go to pool_dyn, then into the slots at once
 * (the answer shows the backend seated, or draining). */
static int view_add(void *arg, size_t p, const struct sl_addr *addr, uint32_t weight, char *err, size_t errlen)
{
    struct proxy_admin *v = arg;
    int status = pool_dyn_add(v->dyn, &v->cfg->pools[p], addr, weight, err, errlen);
    if (!status)
        proxy_discovery_sync(v->disc, ev_clock_ms());
    return status;
}

static int view_remove(void *arg, size_t p, const struct sl_addr *addr, char *err, size_t errlen)
{
    struct proxy_admin *v = arg;
    int status = pool_dyn_remove(v->dyn, &v->cfg->pools[p], addr, err, errlen);
    if (!status)
        proxy_discovery_sync(v->disc, ev_clock_ms());
    return status;
}

static const struct pool_view_ops proxy_pool_view_ops = {
    .consistent = view_consistent,
    .n_listeners = view_n_listeners,
    .listener = view_listener,
    .n_pools = view_n_pools,
    .pool_name = view_pool_name,
    .pool_algorithm = view_pool_algorithm,
    .n_backends = view_n_backends,
    .backend_addr = view_backend_addr,
    .backend = view_backend,
    .change = view_change,
    .pool_discovery = view_pool_discovery,
    .add = view_add,
    .remove = view_remove,
};

/* ------------------------------------------------------------------
 * sluice_tls_*: the handshakes of listeners with tls:, summed over the
 * workers. The families are always there (HELP and TYPE), with samples
 * for TLS listeners only.
 */

static const char *const tls_fail_labels[TLS_FAIL_COUNT] = {
    [TLS_FAIL_PROTOCOL] = "protocol", [TLS_FAIL_CLOSED] = "closed", [TLS_FAIL_TIMEOUT] = "timeout",
    [TLS_FAIL_CLIENT_CERT] = "client_certificate",
};

static void tls_handshake_samples(struct strbuf *out, const char *listener, const struct tls_counters *c)
{
    static const char *const versions[2] = { "TLSv1.2", "TLSv1.3" };
    for (int v = 0; v < 2; v++) {
        for (int r = 0; r < 2; r++) {
            struct metric_label lb[3] = { { "listener", listener }, { "version", versions[v] },
                                          { "resumed", r ? "true" : "false" } };
            metrics_sample(out, "sluice_tls_handshakes_total", lb, 3, atomic_load(&c->handshakes[v][r]));
        }
    }
}

static void tls_failure_samples(struct strbuf *out, const char *listener, const struct tls_counters *c)
{
    for (int k = 0; k < TLS_FAIL_COUNT; k++) {
        struct metric_label lb[2] = { { "listener", listener }, { "reason", tls_fail_labels[k] } };
        metrics_sample(out, "sluice_tls_handshake_failures_total", lb, 2, atomic_load(&c->failures[k]));
    }
}

/* Every TLS listener's counters through emit (none while a reload
 * swaps the configuration and the region). */
static void each_tls_listener(const struct proxy_admin *pa, struct strbuf *out,
                              void (*emit)(struct strbuf *, const char *, const struct tls_counters *))
{
    if (!view_consistent((void *)pa))
        return;
    for (size_t l = 0; l < pa->cfg->n_listeners; l++) {
        if (!pa->cfg->listeners[l].tls)
            continue;
        struct listener_counters sum;
        shared_sum_listener(pa->sh, l, &sum);
        emit(out, pa->cfg->listeners[l].name, &sum.tls);
    }
}

static void collect_tls(void *arg, struct strbuf *out)
{
    const struct proxy_admin *pa = arg;
    metrics_family(out, "sluice_tls_handshakes_total", "counter",
                   "TLS handshakes completed on the listener, by protocol version and whether the session was "
                   "resumed (ticket or session ID).");
    each_tls_listener(pa, out, tls_handshake_samples);
    metrics_family(out, "sluice_tls_handshake_failures_total", "counter",
                   "TLS handshakes that failed on the listener: protocol (not TLS, no common version, cipher or "
                   "group, a fatal alert), closed (the client went away mid-handshake), timeout "
                   "(tls.handshake_timeout).");
    each_tls_listener(pa, out, tls_failure_samples);
}

static void collect_ratelimit(void *arg, struct strbuf *out)
{
    struct proxy_admin *pa = arg;
    bool ok = view_consistent(pa);
    ratelimit_metrics(out, ok ? pa->cfg : NULL, ok ? pa->sh : NULL);
}

int proxy_admin_mount(struct admin_site *site, struct proxy_admin *pa)
{
    pa->view = (struct pool_view){ &proxy_pool_view_ops, pa };
    pa->site = site;
    if (pool_view_mount(site, &pa->view) < 0)
        return -1;
    if (metrics_register(&site->metrics, collect_ratelimit, pa) < 0 ||
        metrics_register(&site->metrics, collect_tls, pa) < 0 ||
        metrics_register(&site->metrics, proxy_latency_collect, pa) < 0)
        return -1;
    return stats_page_mount(site, pa);
}
