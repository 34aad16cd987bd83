/* See proxy_discovery.h. */
#include "proxy/proxy_discovery.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/evloop.h"
#include "core/log.h"
#include "proxy/pool_dyn.h"
#include "proxy/proxy_health.h"
#include "proxy/slots.h"

struct disc_pool {
    size_t pool;                      /* index in the configuration */
    const struct cfg_pool *cfg;
    size_t cap;                       /* its slots */
    struct discovery_sub *sub;        /* NULL: a dynamic pool (pool_dyn.h) */
    struct slot *slots;               /* [max_members] */
    struct backend_counters *base;    /* [max_members]: totals when the member took the slot */
    struct discovery_member *scratch; /* [max_members] */
    uint64_t version;                 /* of the list seated last */
    uint64_t since_ms;                /* followed since */
    bool seated_once;
    bool said_no_list;                /* "no members yet" logged */
    bool said_too_many;
};

struct proxy_discovery {
    struct discovery *ds;
    struct pool_dyn *dyn;
    const struct proxy_conf *pc;
    struct shared_state *sh;
    struct proxy_health *health;
    struct disc_pool *pools;
    size_t n;
};

static size_t slot_gidx(const struct proxy_discovery *pd, const struct disc_pool *dp, size_t i)
{
    return shared_backend_index(pd->sh, dp->pool, i);
}

/* A draining slot is quiet when no worker has a connection to it, in use
 * or pooled (TCP and UDP sessions count as active too). */
static bool slot_busy(void *arg, size_t i)
{
    void **a = arg;
    const struct proxy_discovery *pd = a[0];
    const struct disc_pool *dp = a[1];
    struct backend_counters sum;
    shared_sum_backend(pd->sh, slot_gidx(pd, dp, i), &sum);
    return atomic_load(&sum.active) || atomic_load(&sum.idle);
}

/* A new member in slot i: it starts as a backend does, enabled and up
 * (active checks, if any, take it down), with no failure history; and its
 * counters start from what the slot counted so far. */
static void seat_member(struct proxy_discovery *pd, struct disc_pool *dp, size_t i, uint64_t now)
{
    size_t g = slot_gidx(pd, dp, i);
    struct shared_backend *sb = &pd->sh->backends[g];
    struct slot *s = &dp->slots[i];
    atomic_store(&sb->weight, s->weight);
    atomic_store(&sb->admin, BACKEND_ENABLED);
    atomic_store(&sb->health, HEALTH_UP);
    /* Members there when the pool starts are not ramped up (slow start is
     * for a member that joins a running pool). */
    atomic_store(&sb->up_since_ms, dp->seated_once ? now : (now > 86400000u ? now - 86400000u : 0));
    atomic_store(&sb->consecutive_fails, 0);
    atomic_store(&sb->eject_count, 0);
    atomic_store(&sb->ejected_until_ms, 0);
    sb->check_rise = sb->check_fall = 0;
    sb->checks_ok = sb->checks_failed = 0;
    snprintf(sb->last_check, sizeof sb->last_check, "not checked yet");
    shared_sum_backend(pd->sh, g, &dp->base[i]);
}

/* Copy what slots_apply / slots_reclaim changed into the shared region. */
static void publish_slots(struct proxy_discovery *pd, struct disc_pool *dp, uint64_t now)
{
    for (size_t i = 0; i < dp->cap; i++) {
        struct slot *s = &dp->slots[i];
        size_t g = slot_gidx(pd, dp, i);
        if (s->addr_changed) {
            if (s->state != SLOT_EMPTY)
                seat_member(pd, dp, i, now);
            shared_slot_write(pd->sh, g, s->state == SLOT_EMPTY ? NULL : &s->addr, s->state);
            proxy_health_slot_changed(pd->health, dp->pool, g);
        } else if (s->state_changed) {
            shared_slot_write(pd->sh, g, &s->addr, s->state);
        }
        if (s->weight_changed && !s->addr_changed && s->state != SLOT_EMPTY) {
            /* The registry's weight replaces whatever was set before (an
             * API change lasts until the registry changes it). */
            atomic_store(&pd->sh->backends[g].weight, s->weight);
            atomic_fetch_add(&pd->sh->generation, 1);
        }
        s->addr_changed = s->weight_changed = s->state_changed = false;
    }
}

/* Put the members m[0..n) into the slots and publish what changed. */
static void seat_members(struct proxy_discovery *pd, struct disc_pool *dp, const struct slot_member *m, size_t n,
                         uint64_t now, struct slots_result *r)
{
    slots_apply(dp->slots, dp->cap, m, n, now, r);
    publish_slots(pd, dp, now);
    if (r->waiting)
        log_warn("pool %s: %zu new backends wait for a removed one's slot to drain", dp->cfg->name, r->waiting);
}

/* A dynamic pool: its names' addresses and the API's changes. */
static void seat_dynamic(struct proxy_discovery *pd, struct disc_pool *dp, uint64_t now)
{
    uint64_t version = pool_dyn_version(pd->dyn);
    if (version == dp->version && dp->seated_once)
        return;
    struct slot_member *m = calloc(dp->cap + 1, sizeof *m);
    if (!m) {
        log_error("pool %s: out of memory seating backends", dp->cfg->name);
        return;
    }
    size_t n = pool_dyn_members(pd->dyn, dp->cfg, m, dp->cap);
    if (n > dp->cap) {
        if (!dp->said_too_many)
            log_warn("pool %s: %zu backends, max_backends is %zu: the rest are not used", dp->cfg->name, n, dp->cap);
        dp->said_too_many = true;
        n = dp->cap;
    }
    struct slots_result r;
    seat_members(pd, dp, m, n, now, &r);
    free(m);
    if (r.added || r.removed)
        log_info("pool %s: %zu backends: %zu new, %zu removed", dp->cfg->name, n, r.added, r.removed);
    dp->version = r.waiting ? version - 1 : version;
    dp->seated_once = true;
}

static void seat_list(struct proxy_discovery *pd, struct disc_pool *dp, uint64_t now)
{
    size_t cap = dp->cap;
    if (!dp->sub) {
        seat_dynamic(pd, dp, now);
        return;
    }
    struct discovery_status st;
    discovery_status(dp->sub, &st);
    if (st.source == SLUICE_SOURCE_NONE) {
        /* A registry usually answers within milliseconds of the start:
         * say it only when it did not. */
        if (!dp->said_no_list && now - dp->since_ms >= PROXY_DISCOVERY_NO_LIST_GRACE_MS)
            log_warn("pool %s: no members yet: service %s has no list from a registry, cache or failover "
                     "directory; requests to the pool fail (503 for http) until it has one",
                     dp->cfg->name, dp->cfg->discovery->service);
        dp->said_no_list = now - dp->since_ms >= PROXY_DISCOVERY_NO_LIST_GRACE_MS;
        return;
    }
    /* Nothing new (the common case on the timer): no copy of the list. */
    if (st.version == dp->version && dp->seated_once)
        return;
    uint64_t version = 0;
    int n = discovery_members(dp->sub, dp->scratch, cap, &version);
    if (n < 0) {
        log_error("pool %s: out of memory reading the members of service %s", dp->cfg->name,
                  dp->cfg->discovery->service);
        return;
    }
    if ((size_t)n > cap) {
        if (!dp->said_too_many)
            log_warn("pool %s: service %s has %d members, max_members is %zu: the rest are not used",
                     dp->cfg->name, dp->cfg->discovery->service, n, cap);
        dp->said_too_many = true;
        n = (int)cap;
    }
    struct slot_member *m = calloc((size_t)n + 1, sizeof *m);
    if (!m) {
        log_error("pool %s: out of memory seating members", dp->cfg->name);
        return;
    }
    for (int i = 0; i < n; i++)
        m[i] = (struct slot_member){ .addr = dp->scratch[i].addr, .weight = dp->scratch[i].weight };
    struct slots_result r;
    slots_apply(dp->slots, cap, m, (size_t)n, now, &r);
    free(m);
    publish_slots(pd, dp, now);
    if (r.added || r.removed || !dp->seated_once)
        log_info("pool %s: %d members from service %s (%s, version %llu): %zu new, %zu removed%s",
                 dp->cfg->name, n, dp->cfg->discovery->service, st.source_name, (unsigned long long)version,
                 r.added, r.removed, n ? "" : "; requests to the pool fail until members come back");
    if (r.waiting)
        log_warn("pool %s: %zu new members wait for a removed member's slot to drain", dp->cfg->name, r.waiting);
    dp->said_no_list = false;
    /* Members still waiting for a slot: apply again on the next sync. */
    dp->version = r.waiting ? version - 1 : version;
    dp->seated_once = true;
}

void proxy_discovery_sync(struct proxy_discovery *pd, uint64_t now_ms)
{
    if (!pd)
        return;
    for (size_t k = 0; k < pd->n; k++) {
        struct disc_pool *dp = &pd->pools[k];
        void *arg[2] = { pd, dp };
        if (slots_reclaim(dp->slots, dp->cap, now_ms, PROXY_DISCOVERY_MIN_DRAIN_MS,
                          slot_busy, arg))
            publish_slots(pd, dp, now_ms);
        seat_list(pd, dp, now_ms);
    }
}

struct proxy_discovery *proxy_discovery_new(struct discovery *ds, struct pool_dyn *dyn, const struct proxy_conf *pc,
                                            struct shared_state *sh, char *err, size_t errlen)
{
    struct proxy_discovery *pd = calloc(1, sizeof *pd);
    if (!pd)
        goto oom;
    pd->ds = ds;
    pd->dyn = dyn;
    pd->pc = pc;
    pd->sh = sh;
    pd->pools = calloc(pc->n_pools + 1, sizeof *pd->pools);
    if (!pd->pools)
        goto oom;
    for (size_t p = 0; p < pc->n_pools; p++) {
        const struct cfg_pool *cp = &pc->pools[p];
        if (!cfg_pool_slotted(cp))
            continue;
        struct disc_pool *dp = &pd->pools[pd->n++];
        size_t cap = cfg_pool_slots(cp);
        dp->pool = p;
        dp->cfg = cp;
        dp->cap = cap;
        dp->since_ms = ev_clock_ms();
        dp->slots = calloc(cap, sizeof *dp->slots);
        dp->base = calloc(cap, sizeof *dp->base);
        dp->scratch = calloc(cap, sizeof *dp->scratch);
        if (!dp->slots || !dp->base || !dp->scratch)
            goto oom;
        if (!cp->discovery)
            continue; /* dynamic: pool_dyn has its members */
        char why[256];
        dp->sub = discovery_follow(ds, cp->discovery, why, sizeof why);
        if (!dp->sub) {
            snprintf(err, errlen, "pool %s: discovery of service %s: %s", cp->name, cp->discovery->service, why);
            proxy_discovery_free(pd);
            return NULL;
        }
    }
    proxy_discovery_sync(pd, ev_clock_ms());
    return pd;
oom:
    snprintf(err, errlen, "out of memory");
    proxy_discovery_free(pd);
    return NULL;
}

void proxy_discovery_free(struct proxy_discovery *pd)
{
    if (!pd)
        return;
    for (size_t k = 0; k < pd->n; k++) {
        struct disc_pool *dp = &pd->pools[k];
        if (dp->sub)
            discovery_unfollow(pd->ds, dp->sub);
        free(dp->slots);
        free(dp->base);
        free(dp->scratch);
    }
    free(pd->pools);
    free(pd);
}

void proxy_discovery_set_health(struct proxy_discovery *pd, struct proxy_health *ph)
{
    if (pd)
        pd->health = ph;
}

static const struct disc_pool *find_pool(const struct proxy_discovery *pd, size_t pool)
{
    for (size_t k = 0; pd && k < pd->n; k++)
        if (pd->pools[k].pool == pool)
            return &pd->pools[k];
    return NULL;
}

bool proxy_discovery_status(struct proxy_discovery *pd, size_t pool, struct discovery_status *out)
{
    const struct disc_pool *dp = find_pool(pd, pool);
    if (!dp || !dp->sub)
        return false;
    discovery_status(dp->sub, out);
    return true;
}

const struct backend_counters *proxy_discovery_baseline(const struct proxy_discovery *pd, size_t g)
{
    for (size_t k = 0; pd && k < pd->n; k++) {
        const struct disc_pool *dp = &pd->pools[k];
        size_t first = pd->sh->pool_first[dp->pool];
        if (g >= first && g < first + dp->cap)
            return &dp->base[g - first];
    }
    return NULL;
}
