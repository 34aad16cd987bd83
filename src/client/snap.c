/* See snap.h. */
#include "client/snap.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "lib/hash.h"

/* ---- grace periods ------------------------------------------------------ */

void cl_grace_init(struct cl_grace *g)
{
    atomic_init(&g->epoch, 0);
    for (unsigned side = 0; side < 2; side++)
        for (unsigned k = 0; k < CL_GRACE_STRIPES; k++)
            atomic_init(&g->readers[side][k].n, 0);
    pthread_mutex_init(&g->writers, NULL);
}

void cl_grace_destroy(struct cl_grace *g)
{
    pthread_mutex_destroy(&g->writers);
}

/* This thread's stripe, handed out in turn at its first read. */
static unsigned my_stripe(void)
{
    static _Atomic unsigned next_stripe;
    static _Thread_local unsigned stripe_plus_one;
    if (!stripe_plus_one)
        stripe_plus_one = atomic_fetch_add_explicit(&next_stripe, 1, memory_order_relaxed) % CL_GRACE_STRIPES + 1;
    return stripe_plus_one - 1;
}

/* The token is side + 2 * stripe. */
unsigned cl_grace_enter(struct cl_grace *g)
{
    unsigned side = (unsigned)(atomic_load(&g->epoch) & 1);
    unsigned stripe = my_stripe();
    atomic_fetch_add(&g->readers[side][stripe].n, 1);
    return side + 2 * stripe;
}

void cl_grace_exit(struct cl_grace *g, unsigned token)
{
    atomic_fetch_sub(&g->readers[token & 1][token / 2].n, 1);
}

/* Readers hold a side for a copy or a pick: yield first, then sleep a
 * little, so a preempted reader gets the CPU back. */
static void drain(struct cl_grace *g, unsigned side)
{
    for (unsigned k = 0; k < CL_GRACE_STRIPES; k++) {
        for (unsigned spins = 0; atomic_load(&g->readers[side][k].n) != 0; spins++) {
            if (spins < 64) {
                sched_yield();
            } else {
                struct timespec ts = {0, 50000};
                nanosleep(&ts, NULL);
            }
        }
    }
}

void cl_grace_wait(struct cl_grace *g)
{
    pthread_mutex_lock(&g->writers);
    for (int flip = 0; flip < 2; flip++) {
        uint64_t old = atomic_fetch_add(&g->epoch, 1);
        drain(g, (unsigned)(old & 1));
    }
    pthread_mutex_unlock(&g->writers);
}

/* ---- pick state --------------------------------------------------------- */

void cl_slots_free(struct cl_slots *s)
{
    for (uint32_t i = 0; i < CL_SLOT_CHUNKS; i++)
        free(atomic_load(&s->chunk[i]));
    for (uint32_t i = 0; i < s->n; i++)
        free(s->ids[i]);
    free(s->ids);
    free(s->map);
    memset(s, 0, sizeof *s);
}

struct cl_slot *cl_slot_at(struct cl_slots *s, uint32_t i)
{
    struct cl_slot *chunk = atomic_load_explicit(&s->chunk[i / CL_SLOT_CHUNK], memory_order_acquire);
    return &chunk[i % CL_SLOT_CHUNK];
}

static uint32_t id_hash(const char *id)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return (uint32_t)sl_mix64(h);
}

static int map_grow(struct cl_slots *s)
{
    uint32_t cap = s->map_cap ? s->map_cap * 2 : 64;
    uint32_t *map = calloc(cap, sizeof *map);
    if (!map)
        return -1;
    for (uint32_t i = 0; i < s->n; i++) {
        uint32_t h = id_hash(s->ids[i]) & (cap - 1);
        while (map[h])
            h = (h + 1) & (cap - 1);
        map[h] = i + 1;
    }
    free(s->map);
    s->map = map;
    s->map_cap = cap;
    return 0;
}

/* A new slot for id: its chunk allocated (zeroed) and published first. */
static uint32_t slot_add(struct cl_slots *s, const char *id)
{
    uint32_t i = s->n;
    if (i >= CL_SLOT_CHUNK * CL_SLOT_CHUNKS)
        return CL_NO_SLOT;
    if (!atomic_load(&s->chunk[i / CL_SLOT_CHUNK])) {
        struct cl_slot *chunk = calloc(CL_SLOT_CHUNK, sizeof *chunk);
        if (!chunk)
            return CL_NO_SLOT;
        atomic_store_explicit(&s->chunk[i / CL_SLOT_CHUNK], chunk, memory_order_release);
    }
    if (i == s->ids_cap) {
        uint32_t cap = s->ids_cap ? s->ids_cap * 2 : 16;
        char **ids = realloc(s->ids, cap * sizeof *ids);
        if (!ids)
            return CL_NO_SLOT;
        s->ids = ids;
        s->ids_cap = cap;
    }
    s->ids[i] = strdup(id);
    if (!s->ids[i])
        return CL_NO_SLOT;
    s->n++;
    return i;
}

uint32_t cl_slots_get(struct cl_slots *s, const char *id)
{
    if ((s->n + 1) * 2 > s->map_cap && map_grow(s) < 0)
        return CL_NO_SLOT;
    uint32_t h = id_hash(id) & (s->map_cap - 1);
    for (; s->map[h]; h = (h + 1) & (s->map_cap - 1))
        if (strcmp(s->ids[s->map[h] - 1], id) == 0)
            return s->map[h] - 1;
    uint32_t i = slot_add(s, id);
    if (i != CL_NO_SLOT)
        s->map[h] = i + 1;
    return i;
}

/* ---- snapshots ---------------------------------------------------------- */

void cl_snap_free(struct cl_snap *snap)
{
    if (!snap)
        return;
    free(snap->inst);
    free(snap->members);
    free(snap);
}

enum { IN_DC = 1, IN_REGION = 2 };

static unsigned tiers_of(const struct cl_doc_inst *in, const char *dc, const char *region)
{
    unsigned t = 0;
    if (dc && dc[0] && strcmp(in->datacenter, dc) == 0)
        t |= IN_DC;
    if (region && region[0] && strcmp(in->region, region) == 0)
        t |= IN_REGION;
    return t;
}

static bool in_tier(unsigned where, enum sl_tier tier)
{
    return tier == SL_TIER_ALL || (tier == SL_TIER_DC && (where & IN_DC)) ||
           (tier == SL_TIER_REGION && (where & IN_REGION));
}

/* The tier and protection for the caller: counted as the registry counts
 * (answerable instances only), decided by lib/locality. */
static struct sl_locality choose_tier(const struct cl_doc *doc, const struct cl_snap *snap, const char *dc,
                                      const char *region)
{
    struct sl_tier_count c_dc = {0}, c_region = {0}, c_all = {0};
    for (uint32_t i = 0; i < snap->n_inst; i++) {
        const struct cl_snap_inst *si = &snap->inst[i];
        if (!si->answerable)
            continue;
        unsigned where = tiers_of(&si->d, dc, region);
        struct sl_tier_count *cs[3] = {&c_all, where & IN_DC ? &c_dc : NULL, where & IN_REGION ? &c_region : NULL};
        for (int k = 0; k < 3; k++)
            if (cs[k]) {
                cs[k]->total++;
                cs[k]->healthy += si->d.healthy;
            }
    }
    struct sl_locality_rules rules = {.min_healthy = doc->min_healthy,
                                      .min_ratio_ppm = sl_ratio_ppm(doc->min_healthy_ratio),
                                      .protect_ppm = sl_ratio_ppm(doc->protect_threshold)};
    return sl_locality_choose(&rules, c_dc, c_region, c_all);
}

/* Members: the tier's healthy answerable instances, or when failing open
 * every answerable one of the tier, healthy first. */
static void fill_members(struct cl_snap *snap, const char *dc, const char *region)
{
    uint64_t cum = 0;
    for (int pass = 0; pass < 2; pass++) {
        bool want_healthy = pass == 0;
        if (!want_healthy && !snap->fail_open)
            break;
        for (uint32_t i = 0; i < snap->n_inst; i++) {
            const struct cl_snap_inst *si = &snap->inst[i];
            if (!si->answerable || si->d.healthy != want_healthy ||
                !in_tier(tiers_of(&si->d, dc, region), snap->tier))
                continue;
            cum += si->d.weight;
            snap->members[snap->n_members++] = (struct cl_member){.inst = i, .slot = si->slot, .cum = cum};
        }
    }
    snap->total_weight = cum;
}

struct cl_snap *cl_snap_build(const struct cl_doc *doc, const char *datacenter, const char *region, int source,
                              uint64_t version, struct cl_slots *s)
{
    struct cl_snap *snap = calloc(1, sizeof *snap);
    if (!snap)
        return NULL;
    size_t n = doc->n ? doc->n : 1;
    snap->inst = calloc(n, sizeof *snap->inst);
    snap->members = calloc(n, sizeof *snap->members);
    if (!snap->inst || !snap->members)
        goto fail;
    snap->version = version;
    snap->source = source;
    snap->dns_ttl = doc->dns_ttl;
    snap->answer_count = doc->answer_count;
    snap->registry_index = doc->modify_index;
    for (size_t i = 0; i < doc->n; i++) {
        struct cl_snap_inst *si = &snap->inst[i];
        si->d = doc->inst[i];
        si->answerable = si->d.enabled && si->d.weight > 0;
        si->slot = cl_slots_get(s, si->d.id);
        if (si->slot == CL_NO_SLOT)
            goto fail;
        snap->answerable += si->answerable;
        snap->healthy += si->answerable && si->d.healthy;
    }
    snap->n_inst = (uint32_t)doc->n;
    struct sl_locality l = choose_tier(doc, snap, datacenter, region);
    snap->tier = l.tier;
    snap->fail_open = l.fail_open;
    fill_members(snap, datacenter, region);
    return snap;
fail:
    cl_snap_free(snap);
    return NULL;
}

/* ---- picks -------------------------------------------------------------- */

uint64_t cl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static _Thread_local uint64_t rand_state;
static _Thread_local bool rand_seeded;

uint64_t cl_rand64(void)
{
    if (!rand_seeded) {
        uint64_t seed = 0;
        if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)&rand_state;
        }
        rand_state = seed;
        rand_seeded = true;
    }
    rand_state += 0x9e3779b97f4a7c15ULL;
    return sl_mix64(rand_state);
}

/* Uniform in [0, bound), bound > 0. */
static uint64_t rand_below(uint64_t bound)
{
    return (uint64_t)(((unsigned __int128)cl_rand64() * bound) >> 64);
}

bool cl_slot_avoided(const struct cl_pick_conf *pc, struct cl_slot *slot, uint64_t now_ms)
{
    if (!pc->avoid_after_failures)
        return false;
    uint64_t until = atomic_load_explicit(&slot->avoid_until_ms, memory_order_relaxed);
    if (until == 0)
        return false;   /* never avoided, or a success ended it: no clock needed */
    if (now_ms == CL_NOW_LAZY)
        now_ms = cl_now_ms();
    return until > now_ms;
}

/* The member whose weight range holds r (binary search on cum). */
static uint32_t member_at(const struct cl_snap *snap, uint64_t r)
{
    uint32_t lo = 0, hi = snap->n_members - 1;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (snap->members[mid].cum > r)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

static uint64_t member_weight(const struct cl_snap *snap, uint32_t i)
{
    return snap->members[i].cum - (i ? snap->members[i - 1].cum : 0);
}

/* A weighted draw among the members not avoided: a few draws over all
 * (exact: rejection keeps the weights among those accepted), then, when
 * those keep hitting avoided members, one pass over the rest; when every
 * member is avoided, a plain draw (avoidance never makes a pick fail). */
#define DRAWS_BEFORE_SCAN 8

static uint32_t draw_one(const struct cl_snap *snap, struct cl_slots *slots, const struct cl_pick_conf *pc,
                         uint64_t now_ms)
{
    uint32_t first = member_at(snap, rand_below(snap->total_weight));
    if (!pc->avoid_after_failures || !cl_slot_avoided(pc, cl_slot_at(slots, snap->members[first].slot), now_ms))
        return first;
    for (int k = 1; k < DRAWS_BEFORE_SCAN; k++) {
        uint32_t i = member_at(snap, rand_below(snap->total_weight));
        if (!cl_slot_avoided(pc, cl_slot_at(slots, snap->members[i].slot), now_ms))
            return i;
    }
    uint64_t left = 0;
    for (uint32_t i = 0; i < snap->n_members; i++)
        if (!cl_slot_avoided(pc, cl_slot_at(slots, snap->members[i].slot), now_ms))
            left += member_weight(snap, i);
    if (left == 0)
        return first;
    uint64_t r = rand_below(left);
    for (uint32_t i = 0; i < snap->n_members; i++) {
        if (cl_slot_avoided(pc, cl_slot_at(slots, snap->members[i].slot), now_ms))
            continue;
        uint64_t w = member_weight(snap, i);
        if (r < w)
            return i;
        r -= w;
    }
    return first; /* not reached: r < left */
}

int cl_snap_pick(const struct cl_snap *snap, struct cl_slots *slots, const struct cl_pick_conf *pc, bool p2c,
                 uint64_t now_ms)
{
    if (!snap || snap->n_members == 0 || snap->total_weight == 0)
        return -1;
    uint32_t a = draw_one(snap, slots, pc, now_ms);
    if (!p2c || snap->n_members == 1)
        return (int)a;
    uint32_t b = draw_one(snap, slots, pc, now_ms);
    uint32_t oa = atomic_load_explicit(&cl_slot_at(slots, snap->members[a].slot)->outstanding, memory_order_relaxed);
    uint32_t ob = atomic_load_explicit(&cl_slot_at(slots, snap->members[b].slot)->outstanding, memory_order_relaxed);
    return (int)(ob < oa ? b : a);
}

void cl_slot_done(struct cl_slot *slot, const struct cl_pick_conf *pc, int result, uint64_t now_ms)
{
    uint32_t o = atomic_load_explicit(&slot->outstanding, memory_order_relaxed);
    while (o > 0 && !atomic_compare_exchange_weak(&slot->outstanding, &o, o - 1))
        ;
    if (result == 0) { /* SLUICE_OK: the streak ends (written only when there is one: most
                        * results are successes, and a store would pass the slot's
                        * cache line between the cores of threads that share it) */
        if (atomic_load_explicit(&slot->fails, memory_order_relaxed))
            atomic_store_explicit(&slot->fails, 0, memory_order_relaxed);
        if (atomic_load_explicit(&slot->avoid_until_ms, memory_order_relaxed))
            atomic_store_explicit(&slot->avoid_until_ms, 0, memory_order_relaxed);
    } else if (result == 1) { /* SLUICE_FAILED */
        uint32_t fails = atomic_fetch_add_explicit(&slot->fails, 1, memory_order_relaxed) + 1;
        if (pc->avoid_after_failures && fails >= pc->avoid_after_failures)
            atomic_store_explicit(&slot->avoid_until_ms, now_ms + pc->avoid_ms, memory_order_relaxed);
    }
}
