/* The shared tables of rate and connection limits: see ratelimit.h. */
#include "proxy/ratelimit.h"

#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>

#include "lib/hash.h"

/* How long a worker spins for a slot's lock before it gives up on the
 * limit for this request (admits it). A lock is held for a few dozen
 * instructions: only a worker that died inside one holds it longer. */
#define RL_SPIN_MAX (1u << 20)

struct ratelimit_region {
    size_t size;
    size_t n_listeners;
    size_t *first;            /* [n_listeners + 1]: listener l's tables are [first[l], first[l+1]) */
    size_t *offset;           /* [n_tables]: byte offset of each table, 0 = none */
};

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

static uint32_t slots_for(uint32_t max_keys)
{
    uint32_t n = RL_PROBE;
    while (n < max_keys)
        n <<= 1;
    return n;
}

static size_t table_bytes(uint32_t slots) { return align64(sizeof(struct rl_table) + slots * sizeof(struct rl_slot)); }

/* Tables of listener l: one per rate limit, then one for its connection
 * limit (always a place for it, offset 0 when off). */
static size_t listener_tables(const struct cfg_listener *l) { return l->n_rate_limits + 1; }

static uint64_t random_seed(void)
{
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed)
        seed = sl_mix64((uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&seed);
    return seed;
}

static bool has_limits(const struct proxy_conf *cfg)
{
    for (size_t i = 0; i < cfg->n_listeners; i++)
        if (cfg->listeners[i].n_rate_limits || cfg->listeners[i].conn_limit.max)
            return true;
    return false;
}

static void table_init(struct rl_table *t, uint32_t slots, uint64_t interval_ns, uint32_t burst)
{
    t->seed = random_seed();
    t->mask = slots - 1;
    t->interval_ns = interval_ns;
    t->tolerance_ns = interval_ns * burst;
}

struct ratelimit_region *ratelimit_create(const struct proxy_conf *cfg, bool *failed)
{
    *failed = false;
    if (!has_limits(cfg))
        return NULL;
    size_t n_tables = 0;
    for (size_t i = 0; i < cfg->n_listeners; i++)
        n_tables += listener_tables(&cfg->listeners[i]);
    size_t off_first = align64(sizeof(struct ratelimit_region));
    size_t off_offset = off_first + align64((cfg->n_listeners + 1) * sizeof(size_t));
    size_t size = off_offset + align64(n_tables * sizeof(size_t));
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct cfg_listener *l = &cfg->listeners[i];
        for (size_t k = 0; k < l->n_rate_limits; k++)
            size += table_bytes(slots_for(l->rate_limits[k].max_keys));
        if (l->conn_limit.max)
            size += table_bytes(slots_for(l->conn_limit.max_keys));
    }
    char *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) {
        *failed = true;
        return NULL;
    }
    struct ratelimit_region *r = (struct ratelimit_region *)base;
    r->size = size;
    r->n_listeners = cfg->n_listeners;
    r->first = (size_t *)(base + off_first);
    r->offset = (size_t *)(base + off_offset);
    size_t at = off_offset + align64(n_tables * sizeof(size_t)), t = 0;
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct cfg_listener *l = &cfg->listeners[i];
        r->first[i] = t;
        for (size_t k = 0; k < l->n_rate_limits; k++, t++) {
            const struct cfg_rate_limit *rl = &l->rate_limits[k];
            uint32_t slots = slots_for(rl->max_keys);
            r->offset[t] = at;
            table_init((struct rl_table *)(base + at), slots, rl->interval_ns, rl->burst);
            at += table_bytes(slots);
        }
        if (l->conn_limit.max) {
            uint32_t slots = slots_for(l->conn_limit.max_keys);
            r->offset[t] = at;
            table_init((struct rl_table *)(base + at), slots, 0, 0);
            at += table_bytes(slots);
        }
        t++;
    }
    r->first[cfg->n_listeners] = t;
    return r;
}

void ratelimit_destroy(struct ratelimit_region *r)
{
    if (r)
        munmap(r, r->size);
}

struct rl_table *ratelimit_table(const struct ratelimit_region *r, size_t li, size_t k)
{
    if (!r || li >= r->n_listeners || r->first[li] + k >= r->first[li + 1])
        return NULL;
    size_t off = r->offset[r->first[li] + k];
    return off ? (struct rl_table *)((char *)r + off) : NULL;
}

/* ---- carrying state over a reload ---- */

static bool same_rate_limit(const struct cfg_rate_limit *a, const struct cfg_rate_limit *b)
{
    return a->interval_ns == b->interval_ns && a->burst == b->burst && a->key == b->key &&
           slots_for(a->max_keys) == slots_for(b->max_keys) &&
           (a->key != RL_KEY_HEADER || strcasecmp(a->header, b->header) == 0);
}

static void carry_table(struct rl_table *d, const struct rl_table *s, bool buckets)
{
    atomic_store(&d->ctr.passed, atomic_load(&s->ctr.passed));
    atomic_store(&d->ctr.rejected, atomic_load(&s->ctr.rejected));
    atomic_store(&d->ctr.evicted, atomic_load(&s->ctr.evicted));
    if (!buckets)
        return;
    /* The old workers may still be charging these buckets: a slot copied
     * in the middle of an update is off by a request at most. */
    d->seed = s->seed;
    for (uint32_t i = 0; i <= d->mask; i++) {
        atomic_store_explicit(&d->slots[i].key, atomic_load_explicit(&s->slots[i].key, memory_order_relaxed),
                              memory_order_relaxed);
        d->slots[i].tat_ns = s->slots[i].tat_ns;
    }
}

static int find_rate_limit(const struct cfg_listener *l, const char *name)
{
    for (size_t k = 0; k < l->n_rate_limits; k++)
        if (strcmp(l->rate_limits[k].name, name) == 0)
            return (int)k;
    return -1;
}

void ratelimit_carry_over(struct ratelimit_region *dst, const struct proxy_conf *dst_cfg,
                          const struct ratelimit_region *src, const struct proxy_conf *src_cfg)
{
    if (!dst || !src)
        return;
    for (size_t i = 0; i < dst_cfg->n_listeners; i++) {
        const struct cfg_listener *dl = &dst_cfg->listeners[i];
        for (size_t j = 0; j < src_cfg->n_listeners; j++) {
            const struct cfg_listener *sl = &src_cfg->listeners[j];
            if (strcmp(dl->name, sl->name) != 0)
                continue;
            for (size_t k = 0; k < dl->n_rate_limits; k++) {
                int sk = find_rate_limit(sl, dl->rate_limits[k].name);
                struct rl_table *d = ratelimit_table(dst, i, k);
                const struct rl_table *s = sk < 0 ? NULL : ratelimit_table(src, j, (size_t)sk);
                if (d && s)
                    carry_table(d, s, same_rate_limit(&dl->rate_limits[k], &sl->rate_limits[sk]));
            }
            /* Connection counts are not carried: the old workers' open
             * connections are released into the old table. */
            struct rl_table *d = ratelimit_table(dst, i, dl->n_rate_limits);
            const struct rl_table *s = ratelimit_table(src, j, sl->n_rate_limits);
            if (d && s)
                carry_table(d, s, false);
            break;
        }
    }
}

/* ---- slots ---- */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static bool slot_lock(struct rl_slot *s)
{
    for (uint32_t spins = 0; spins < RL_SPIN_MAX; spins++) {
        if (!atomic_load_explicit(&s->lock, memory_order_relaxed) &&
            !atomic_exchange_explicit(&s->lock, 1, memory_order_acquire))
            return true;
        cpu_relax();
    }
    return false;
}

static void slot_unlock(struct rl_slot *s) { atomic_store_explicit(&s->lock, 0, memory_order_release); }

static inline uint64_t slot_key(const struct rl_slot *s)
{
    return atomic_load_explicit(&s->key, memory_order_relaxed);
}

/* Whether a slot may be given to another key: never used, a drained
 * bucket (rate limits), or no open connection (connection limits). */
static bool slot_reusable(const struct rl_table *t, const struct rl_slot *s, uint64_t now_ns)
{
    if (!slot_key(s))
        return true;
    return t->interval_ns ? s->tat_ns <= now_ns : s->conns == 0;
}

static void slot_claim(struct rl_slot *s, uint64_t hash)
{
    atomic_store_explicit(&s->key, hash, memory_order_relaxed);
    s->tat_ns = 0;
    s->conns = 0;
}

/* The slot of hash, locked: found, or claimed in the probe window (a
 * reusable one, or for rate limits the one closest to drained, evicted).
 * NULL when none can be had. */
static struct rl_slot *slot_acquire(struct rl_table *t, uint64_t hash, uint64_t now_ns)
{
    uint32_t base = (uint32_t)hash & t->mask;
    /* The common case: the key is there, found without taking locks. */
    for (uint32_t i = 0; i < RL_PROBE; i++) {
        struct rl_slot *s = &t->slots[(base + i) & t->mask];
        if (slot_key(s) != hash)
            continue;
        if (!slot_lock(s))
            return NULL;
        if (slot_key(s) == hash)
            return s;
        slot_unlock(s);
        break;
    }
    /* New (or just moved): look again slot by slot under each one's lock,
     * so two workers bringing the same new key end up in the same slot. */
    struct rl_slot *oldest = NULL;
    uint64_t oldest_tat = UINT64_MAX;
    for (uint32_t i = 0; i < RL_PROBE; i++) {
        struct rl_slot *s = &t->slots[(base + i) & t->mask];
        if (!slot_lock(s))
            return NULL;
        if (slot_key(s) == hash)
            return s;
        if (slot_reusable(t, s, now_ns)) {
            slot_claim(s, hash);
            return s;
        }
        if (s->tat_ns < oldest_tat) {
            oldest_tat = s->tat_ns;
            oldest = s;
        }
        slot_unlock(s);
    }
    if (!t->interval_ns || !oldest || !slot_lock(oldest))
        return NULL;
    if (slot_key(oldest) != hash) {
        slot_claim(oldest, hash);
        atomic_fetch_add_explicit(&t->ctr.evicted, 1, memory_order_relaxed);
    }
    return oldest;
}

/* ---- rate limits ---- */

bool ratelimit_gcra(uint64_t *tat_ns, uint64_t now_ns, uint64_t interval_ns, uint64_t tolerance_ns,
                    uint64_t *wait_ns)
{
    uint64_t tat = *tat_ns > now_ns ? *tat_ns : now_ns;
    if (tat - now_ns > tolerance_ns) {
        *wait_ns = tat - now_ns - tolerance_ns;
        return false;
    }
    *tat_ns = tat + interval_ns;
    return true;
}

uint64_t ratelimit_hash(const struct rl_table *t, const void *key, size_t len)
{
    uint64_t h = sl_hash64(key, len, t->seed);
    return h ? h : 1; /* 0 marks a slot never used */
}

bool ratelimit_take(struct rl_table *t, uint64_t hash, uint64_t now_ns, uint64_t *wait_ns)
{
    struct rl_slot *s = slot_acquire(t, hash, now_ns);
    if (!s)
        return true;
    bool ok = ratelimit_gcra(&s->tat_ns, now_ns, t->interval_ns, t->tolerance_ns, wait_ns);
    slot_unlock(s);
    return ok;
}

void ratelimit_refund(struct rl_table *t, uint64_t hash)
{
    uint32_t base = (uint32_t)hash & t->mask;
    for (uint32_t i = 0; i < RL_PROBE; i++) {
        struct rl_slot *s = &t->slots[(base + i) & t->mask];
        if (slot_key(s) != hash || !slot_lock(s))
            continue;
        if (slot_key(s) == hash && s->tat_ns >= t->interval_ns)
            s->tat_ns -= t->interval_ns;
        slot_unlock(s);
        return;
    }
}

/* ---- connection limits ---- */

bool ratelimit_conn_acquire(struct rl_table *t, uint64_t hash, uint32_t max, struct rl_hold *hold)
{
    hold->table = NULL;
    struct rl_slot *s = slot_acquire(t, hash, 0);
    if (!s)
        return false;
    bool ok = s->conns < max;
    if (ok) {
        s->conns++;
        hold->table = t;
        hold->slot = (uint32_t)(s - t->slots);
    }
    slot_unlock(s);
    return ok;
}

void ratelimit_conn_release(struct rl_hold *hold)
{
    if (!hold->table)
        return;
    struct rl_slot *s = &hold->table->slots[hold->slot];
    /* Never evicted while it has connections: the slot is still ours. If
     * its lock cannot be had (a dead worker), the count stays one high. */
    if (slot_lock(s)) {
        if (s->conns)
            s->conns--;
        slot_unlock(s);
    }
    hold->table = NULL;
}

uint64_t ratelimit_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
