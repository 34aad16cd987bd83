#include "proxy/shared.h"

#include <string.h>
#include <sys/mman.h>

#include "core/evloop.h"
#include "proxy/ratelimit.h"

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

struct shared_state *shared_create(const struct proxy_conf *cfg, uint32_t n_workers)
{
    size_t n_backends = 0;
    for (size_t p = 0; p < cfg->n_pools; p++)
        n_backends += cfg_pool_slots(&cfg->pools[p]);
    size_t nw = n_workers ? n_workers : 1;

    size_t off_first = align64(sizeof(struct shared_state));
    size_t off_back = off_first + align64((cfg->n_pools + 1) * sizeof(size_t));
    size_t off_bctr = off_back + align64(n_backends * sizeof(struct shared_backend));
    size_t off_lctr = off_bctr + align64(nw * n_backends * sizeof(struct backend_counters));
    size_t off_work = off_lctr + align64(nw * cfg->n_listeners * sizeof(struct listener_counters));
    size_t size = off_work + align64(nw * sizeof(struct shared_worker));

    char *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return NULL;
    struct shared_state *sh = (struct shared_state *)base;
    bool rl_failed;
    sh->rl = ratelimit_create(cfg, &rl_failed);
    if (rl_failed) {
        munmap(base, size);
        return NULL;
    }
    sh->size = size;
    sh->n_workers = (uint32_t)nw;
    sh->n_backends = n_backends;
    sh->n_listeners = cfg->n_listeners;
    sh->pool_first = (size_t *)(base + off_first);
    sh->backends = (struct shared_backend *)(base + off_back);
    sh->bctr = (struct backend_counters *)(base + off_bctr);
    sh->lctr = (struct listener_counters *)(base + off_lctr);
    sh->workers = (struct shared_worker *)(base + off_work);

    uint64_t now = ev_clock_ms();
    size_t i = 0;
    for (size_t p = 0; p < cfg->n_pools; p++) {
        sh->pool_first[p] = i;
        for (size_t b = 0; b < cfg_pool_slots(&cfg->pools[p]); b++, i++) {
            struct shared_backend *sb = &sh->backends[i];
            /* A discovered or dynamic pool's slots start empty; the master fills them. */
            atomic_store(&sb->weight, cfg_pool_slotted(&cfg->pools[p]) ? 0 : cfg->pools[p].backends[b].weight);
            atomic_store(&sb->admin, BACKEND_ENABLED);
            atomic_store(&sb->health, HEALTH_UP);
            /* A fresh start is not a recovery: no slow start. */
            atomic_store(&sb->up_since_ms, now > 86400000u ? now - 86400000u : 0);
            strcpy(sb->last_check, "not checked yet");
        }
    }
    sh->pool_first[cfg->n_pools] = i;
    return sh;
}

void shared_destroy(struct shared_state *sh)
{
    if (!sh)
        return;
    ratelimit_destroy(sh->rl);
    munmap(sh, sh->size);
}

static void add_backend_counters(struct backend_counters *dst, const struct backend_counters *src)
{
    atomic_fetch_add(&dst->requests, atomic_load(&src->requests));
    for (int k = 0; k < 6; k++)
        atomic_fetch_add(&dst->responses[k], atomic_load(&src->responses[k]));
    atomic_fetch_add(&dst->connect_failures, atomic_load(&src->connect_failures));
    atomic_fetch_add(&dst->upstream_errors, atomic_load(&src->upstream_errors));
    atomic_fetch_add(&dst->retries, atomic_load(&src->retries));
    atomic_fetch_add(&dst->bytes_sent, atomic_load(&src->bytes_sent));
    atomic_fetch_add(&dst->bytes_received, atomic_load(&src->bytes_received));
    atomic_fetch_add(&dst->active, atomic_load(&src->active));
    atomic_fetch_add(&dst->idle, atomic_load(&src->idle));
    latency_add(&dst->connect_time, &src->connect_time);
    latency_add(&dst->header_time, &src->header_time);
}

void shared_sum_backend(const struct shared_state *sh, size_t backend, struct backend_counters *out)
{
    memset(out, 0, sizeof *out);
    for (uint32_t w = 0; w < sh->n_workers; w++)
        add_backend_counters(out, &sh->bctr[(size_t)w * sh->n_backends + backend]);
}

static void tls_counters_add(struct tls_counters *dst, const struct tls_counters *src)
{
    for (int v = 0; v < 2; v++)
        for (int r = 0; r < 2; r++)
            atomic_fetch_add(&dst->handshakes[v][r], atomic_load(&src->handshakes[v][r]));
    for (int k = 0; k < TLS_FAIL_COUNT; k++)
        atomic_fetch_add(&dst->failures[k], atomic_load(&src->failures[k]));
}

void shared_sum_listener(const struct shared_state *sh, size_t listener, struct listener_counters *out)
{
    memset(out, 0, sizeof *out);
    for (uint32_t w = 0; w < sh->n_workers; w++) {
        const struct listener_counters *c = &sh->lctr[(size_t)w * sh->n_listeners + listener];
        atomic_fetch_add(&out->connections, atomic_load(&c->connections));
        atomic_fetch_add(&out->requests, atomic_load(&c->requests));
        for (int k = 0; k < 6; k++)
            atomic_fetch_add(&out->responses[k], atomic_load(&c->responses[k]));
        atomic_fetch_add(&out->rejected, atomic_load(&c->rejected));
        atomic_fetch_add(&out->no_backend, atomic_load(&c->no_backend));
        atomic_fetch_add(&out->timeouts, atomic_load(&c->timeouts));
        atomic_fetch_add(&out->bytes_received, atomic_load(&c->bytes_received));
        atomic_fetch_add(&out->bytes_sent, atomic_load(&c->bytes_sent));
        atomic_fetch_add(&out->active, atomic_load(&c->active));
        for (int k = 0; k < 2; k++)
            atomic_fetch_add(&out->underscore_dropped[k], atomic_load(&c->underscore_dropped[k]));
        atomic_fetch_add(&out->body_timeouts, atomic_load(&c->body_timeouts));
        tls_counters_add(&out->tls, &c->tls);
        atomic_fetch_add(&out->h2_connections, atomic_load(&c->h2_connections));
        atomic_fetch_add(&out->h2_streams, atomic_load(&c->h2_streams));
        for (int k = 0; k < 6; k++)
            atomic_fetch_add(&out->h2_flood_closes[k], atomic_load(&c->h2_flood_closes[k]));
        for (int k = 0; k < 4; k++)
            atomic_fetch_add(&out->proxy_headers[k], atomic_load(&c->proxy_headers[k]));
        latency_add(&out->request_time, &c->request_time);
        latency_add(&out->connection_time, &c->connection_time);
    }
}

/* Listener totals carry over by listener name, like backend totals, so a
 * reload does not make the API's and /metrics' counters go backwards. */
static void carry_over_listeners(struct shared_state *dst, const struct proxy_conf *dst_cfg,
                                 const struct shared_state *src, const struct proxy_conf *src_cfg)
{
    for (size_t l = 0; l < dst_cfg->n_listeners && l < dst->n_listeners; l++) {
        for (size_t k = 0; k < src_cfg->n_listeners && k < src->n_listeners; k++) {
            if (strcmp(dst_cfg->listeners[l].name, src_cfg->listeners[k].name) != 0)
                continue;
            struct listener_counters sum;
            shared_sum_listener(src, k, &sum);
            struct listener_counters *d = shared_lctr(dst, 0, l);
            atomic_fetch_add(&d->connections, atomic_load(&sum.connections));
            atomic_fetch_add(&d->requests, atomic_load(&sum.requests));
            for (int c = 0; c < 6; c++)
                atomic_fetch_add(&d->responses[c], atomic_load(&sum.responses[c]));
            atomic_fetch_add(&d->rejected, atomic_load(&sum.rejected));
            atomic_fetch_add(&d->no_backend, atomic_load(&sum.no_backend));
            atomic_fetch_add(&d->timeouts, atomic_load(&sum.timeouts));
            atomic_fetch_add(&d->bytes_received, atomic_load(&sum.bytes_received));
            atomic_fetch_add(&d->bytes_sent, atomic_load(&sum.bytes_sent));
            for (int dir = 0; dir < 2; dir++)
                atomic_fetch_add(&d->underscore_dropped[dir], atomic_load(&sum.underscore_dropped[dir]));
            atomic_fetch_add(&d->body_timeouts, atomic_load(&sum.body_timeouts));
            tls_counters_add(&d->tls, &sum.tls);
            atomic_fetch_add(&d->h2_connections, atomic_load(&sum.h2_connections));
            atomic_fetch_add(&d->h2_streams, atomic_load(&sum.h2_streams));
            for (int kind = 0; kind < 6; kind++)
                atomic_fetch_add(&d->h2_flood_closes[kind], atomic_load(&sum.h2_flood_closes[kind]));
            for (int r = 0; r < 4; r++)
                atomic_fetch_add(&d->proxy_headers[r], atomic_load(&sum.proxy_headers[r]));
            latency_add(&d->request_time, &sum.request_time);
            latency_add(&d->connection_time, &sum.connection_time);
            /* active is a gauge: the new workers count their own. */
            break;
        }
    }
}

const struct sl_addr *shared_backend_addr(const struct shared_state *sh, const struct proxy_conf *cfg, size_t pool,
                                          size_t b)
{
    const struct cfg_pool *p = &cfg->pools[pool];
    if (!cfg_pool_slotted(p))
        return &p->backends[b].addr;
    const struct shared_backend *sb = &sh->backends[shared_backend_index(sh, pool, b)];
    return atomic_load(&sb->slot_state) == 0 /* SLOT_EMPTY */ ? NULL : &sb->slot_addr;
}

/* Backend state by address: the configured weight wins when the file
 * changed it; a discovered member's weight is the registry's, set by the
 * master already. */
static void carry_backend(struct shared_state *dst, const struct proxy_conf *dst_cfg, size_t p, size_t b,
                          const struct shared_state *src, const struct proxy_conf *src_cfg, size_t sp, size_t k)
{
    struct shared_backend *d = &dst->backends[shared_backend_index(dst, p, b)];
    const struct shared_backend *s = &src->backends[shared_backend_index(src, sp, k)];
    const struct cfg_pool *dpool = &dst_cfg->pools[p], *spool = &src_cfg->pools[sp];
    /* An API weight change survives a reload only if the file still says
     * what it said before; a new value in the file wins. */
    if (!cfg_pool_slotted(dpool) && !cfg_pool_slotted(spool) && dpool->backends[b].weight == spool->backends[k].weight)
        atomic_store(&d->weight, atomic_load(&s->weight));
    atomic_store(&d->admin, atomic_load(&s->admin));
    atomic_store(&d->health, atomic_load(&s->health));
    atomic_store(&d->up_since_ms, atomic_load(&s->up_since_ms));
    atomic_store(&d->consecutive_fails, atomic_load(&s->consecutive_fails));
    atomic_store(&d->eject_count, atomic_load(&s->eject_count));
    atomic_store(&d->ejected_until_ms, atomic_load(&s->ejected_until_ms));
    d->check_rise = s->check_rise;
    d->check_fall = s->check_fall;
    d->checks_ok = s->checks_ok;
    d->checks_failed = s->checks_failed;
    memcpy(d->last_check, s->last_check, sizeof d->last_check);
    d->health_changed_ms = s->health_changed_ms;
    /* Totals go into worker 0's row; gauges start from zero. */
    struct backend_counters sum;
    shared_sum_backend(src, shared_backend_index(src, sp, k), &sum);
    atomic_store(&sum.active, 0);
    atomic_store(&sum.idle, 0);
    add_backend_counters(shared_bctr(dst, 0, shared_backend_index(dst, p, b)), &sum);
}

void shared_carry_over(struct shared_state *dst, const struct proxy_conf *dst_cfg,
                       const struct shared_state *src, const struct proxy_conf *src_cfg)
{
    for (size_t p = 0; p < dst_cfg->n_pools; p++) {
        int sp = proxy_conf_pool_index(src_cfg, dst_cfg->pools[p].name);
        if (sp < 0)
            continue;
        size_t n_src = cfg_pool_slots(&src_cfg->pools[sp]);
        for (size_t b = 0; b < cfg_pool_slots(&dst_cfg->pools[p]); b++) {
            const struct sl_addr *a = shared_backend_addr(dst, dst_cfg, p, b);
            for (size_t k = 0; a && k < n_src; k++) {
                const struct sl_addr *o = shared_backend_addr(src, src_cfg, (size_t)sp, k);
                if (o && addr_equal(a, o)) {
                    carry_backend(dst, dst_cfg, p, b, src, src_cfg, (size_t)sp, k);
                    break;
                }
            }
        }
    }
    carry_over_listeners(dst, dst_cfg, src, src_cfg);
    ratelimit_carry_over(dst->rl, dst_cfg, src->rl, src_cfg);
}

void shared_slot_write(struct shared_state *sh, size_t g, const struct sl_addr *addr, uint32_t state)
{
    struct shared_backend *sb = &sh->backends[g];
    uint32_t seq = atomic_load_explicit(&sb->slot_seq, memory_order_relaxed);
    atomic_store_explicit(&sb->slot_seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    if (addr)
        sb->slot_addr = *addr;
    else
        memset(&sb->slot_addr, 0, sizeof sb->slot_addr);
    atomic_store_explicit(&sb->slot_state, state, memory_order_relaxed);
    atomic_store_explicit(&sb->slot_seq, seq + 2, memory_order_release);
    atomic_fetch_add(&sh->generation, 1);
}

uint32_t shared_slot_seq(const struct shared_backend *b)
{
    return atomic_load_explicit(&b->slot_seq, memory_order_acquire);
}

uint32_t shared_slot_read(const struct shared_backend *b, struct sl_addr *out)
{
    for (;;) {
        uint32_t before = atomic_load_explicit(&b->slot_seq, memory_order_acquire);
        if (before & 1)
            continue; /* the master is in the middle of a write: a few stores */
        /* A copy that may race with the next write; the sequence check
         * below throws it away if it did. */
        memcpy(out, (const void *)&b->slot_addr, sizeof *out);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&b->slot_seq, memory_order_relaxed) == before)
            return before;
    }
}

void shared_backend_ctl(const struct shared_backend *b, struct backend_ctl *out)
{
    out->weight = atomic_load_explicit(&b->weight, memory_order_relaxed);
    out->admin = atomic_load_explicit(&b->admin, memory_order_relaxed);
    out->up = atomic_load_explicit(&b->health, memory_order_relaxed) == HEALTH_UP;
    out->up_since_ms = atomic_load_explicit(&b->up_since_ms, memory_order_relaxed);
    out->ejected_until_ms = atomic_load_explicit(&b->ejected_until_ms, memory_order_relaxed);
}

uint32_t shared_effective_weight(const struct shared_backend *b, uint32_t slow_start_ms, uint64_t now_ms)
{
    struct backend_ctl ctl;
    shared_backend_ctl(b, &ctl);
    return backend_effective_weight(&ctl, slow_start_ms, now_ms);
}
