/* See balance.h. All picks are O(n) or better over the pool's backends with
 * no allocation; everything that can be precomputed (prefix sums, the
 * Maglev table) is done in lb_set_weights(), which runs only on changes. */
#include "lib/balance.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/hash.h"
#include "lib/maglev.h"

const char *const lb_algorithm_names[] = {
    [LB_ROUND_ROBIN] = "round_robin", [LB_LEAST_CONN] = "least_conn",
    [LB_P2C] = "p2c",                 [LB_HASH] = "hash",
    NULL,
};

const char *lb_algorithm_name(enum lb_algorithm a)
{
    return (unsigned)a <= LB_HASH ? lb_algorithm_names[a] : "unknown";
}

struct lb_state {
    enum lb_algorithm alg;
    size_t n;
    uint32_t *weight;      /* effective weights as last set */
    uint64_t total;        /* sum of weight[] */
    size_t n_avail;        /* backends with weight > 0 */

    /* Smooth weighted round-robin credit: round_robin, and least_conn ties. */
    int64_t *current;

    /* p2c: prefix[i] = weight[0] + ... + weight[i], for O(log n) draws. */
    uint64_t *prefix;
    uint64_t rng;          /* splitmix64 state */

    /* hash: the Maglev table and the keys it was built from. */
    int32_t *table;
    uint32_t table_size;
    const char **key_ptr;
    uint64_t *key_id;
};

/* ---- creation ---------------------------------------------------------- */

void lb_seed(struct lb_state *lb, uint64_t seed)
{
    lb->rng = seed;
}

static uint64_t initial_seed(const struct lb_state *lb)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t t = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    return sl_mix64(t ^ sl_mix64((uint64_t)(uintptr_t)lb));
}

struct lb_state *lb_create(enum lb_algorithm alg, size_t n_backends)
{
    if ((unsigned)alg > LB_HASH || n_backends > INT32_MAX) {
        errno = EINVAL;
        return NULL;
    }
    struct lb_state *lb = calloc(1, sizeof *lb);
    if (!lb)
        return NULL;
    lb->alg = alg;
    lb->n = n_backends;
    size_t cap = n_backends ? n_backends : 1; /* calloc(0) may return NULL */
    lb->weight = calloc(cap, sizeof *lb->weight);
    lb->current = calloc(cap, sizeof *lb->current);
    lb->prefix = calloc(cap, sizeof *lb->prefix);
    bool ok = lb->weight && lb->current && lb->prefix;
    if (ok && alg == LB_HASH) {
        lb->table_size = maglev_table_size(n_backends);
        lb->table = malloc((size_t)lb->table_size * sizeof *lb->table);
        lb->key_ptr = calloc(cap, sizeof *lb->key_ptr);
        lb->key_id = calloc(cap, sizeof *lb->key_id);
        ok = lb->table && lb->key_ptr && lb->key_id;
        if (ok)
            memset(lb->table, 0xff, (size_t)lb->table_size * sizeof *lb->table); /* all -1 */
    }
    if (!ok) {
        lb_free(lb);
        errno = ENOMEM;
        return NULL;
    }
    lb->rng = initial_seed(lb);
    return lb;
}

void lb_free(struct lb_state *lb)
{
    if (!lb)
        return;
    free(lb->weight);
    free(lb->current);
    free(lb->prefix);
    free(lb->table);
    free(lb->key_ptr);
    free(lb->key_id);
    free(lb);
}

/* ---- weights ----------------------------------------------------------- */

static uint64_t key_identity(const char *key)
{
    return sl_hash64(key, strlen(key), 0);
}

/* Keys matter only to the Maglev table. Pointer equality is the fast path
 * (callers normally pass the same config strings every time); a different
 * pointer is compared by content hash, so re-formatted but equal keys do not
 * trigger a multi-millisecond rebuild, and the new pointer is remembered so
 * the next call is fast again. Stored pointers are only compared, never
 * dereferenced. */
static bool keys_changed(struct lb_state *lb, const char *const *keys)
{
    if (lb->alg != LB_HASH)
        return false;
    for (size_t i = 0; i < lb->n; i++) {
        if (keys[i] == lb->key_ptr[i])
            continue;
        if (key_identity(keys[i]) != lb->key_id[i])
            return true;
        lb->key_ptr[i] = keys[i];
    }
    return false;
}

static void remember_keys(struct lb_state *lb, const char *const *keys)
{
    for (size_t i = 0; i < lb->n; i++) {
        lb->key_ptr[i] = keys[i];
        lb->key_id[i] = key_identity(keys[i]);
    }
}

static int rebuild_table(struct lb_state *lb, const uint32_t *weights, const char *const *keys)
{
    if (maglev_build(lb->table, lb->table_size, keys, weights, lb->n, MAGLEV_DEFAULT_SEED) < 0
        && errno != ENOENT) /* ENOENT: all weights 0, table is all -1, which is fine */
        return -1;
    remember_keys(lb, keys);
    return 0;
}

int lb_set_weights(struct lb_state *lb, const uint32_t *weights, const char *const *keys)
{
    if (lb->alg == LB_HASH && !keys && lb->n > 0) {
        errno = EINVAL;
        return -1;
    }
    if (lb->n == 0)
        return 0;
    bool changed = memcmp(lb->weight, weights, lb->n * sizeof *weights) != 0;
    if (!changed && !keys_changed(lb, keys))
        return 0;
    /* Build first: on ENOMEM the state must stay consistent with the old table. */
    if (lb->alg == LB_HASH && rebuild_table(lb, weights, keys) < 0)
        return -1;

    uint64_t total = 0;
    size_t avail = 0;
    for (size_t i = 0; i < lb->n; i++) {
        lb->weight[i] = weights[i];
        lb->current[i] = 0; /* restart the SWRR sequence for the new weights */
        total += weights[i];
        lb->prefix[i] = total;
        avail += weights[i] > 0;
    }
    lb->total = total;
    lb->n_avail = avail;
    return 0;
}

/* ---- helpers ----------------------------------------------------------- */

static inline bool usable(const struct lb_state *lb, size_t i, const uint8_t *exclude)
{
    return lb->weight[i] > 0 && !(exclude && exclude[i]);
}

static inline uint32_t load_of(const uint32_t *load, size_t i)
{
    return load ? load[i] : 0;
}

/* load[a]/weight[a] < load[b]/weight[b], without division. Both products are
 * 32x32 bits, so they fit in 64. */
static inline int cmp_ratio(uint64_t load_a, uint64_t w_a, uint64_t load_b, uint64_t w_b)
{
    uint64_t x = load_a * w_b, y = load_b * w_a;
    return (x > y) - (x < y);
}

static inline uint64_t next_random(struct lb_state *lb)
{
    lb->rng += 0x9e3779b97f4a7c15ULL; /* splitmix64: a Weyl sequence, then a mixer */
    return sl_mix64(lb->rng);
}

/* Uniform in [0, bound) by multiply-shift; the bias is at most bound/2^64. */
static inline uint64_t random_below(struct lb_state *lb, uint64_t bound)
{
    return (uint64_t)(((unsigned __int128)next_random(lb) * bound) >> 64);
}

/* ---- round robin and least connections ---------------------------------- */

/* One step of smooth weighted round-robin among the usable backends whose
 * load ratio equals min_load/min_weight (all of them when load is NULL):
 * each gains its weight in credit, the richest is chosen and pays the sum.
 * Interleaves picks (5,1,1 gives a a b a c a a) and is exact over a cycle. */
static int swrr_step(struct lb_state *lb, const uint32_t *load, uint64_t min_load,
                     uint64_t min_weight, const uint8_t *exclude)
{
    int best = -1;
    int64_t sum = 0;
    for (size_t i = 0; i < lb->n; i++) {
        if (!usable(lb, i, exclude))
            continue;
        if (load && cmp_ratio(load[i], lb->weight[i], min_load, min_weight) != 0)
            continue;
        lb->current[i] += lb->weight[i];
        sum += lb->weight[i];
        if (best < 0 || lb->current[i] > lb->current[best])
            best = (int)i;
    }
    if (best >= 0)
        lb->current[best] -= sum;
    return best;
}

static int pick_least_conn(struct lb_state *lb, const uint32_t *load, const uint8_t *exclude)
{
    if (!load)
        return swrr_step(lb, NULL, 0, 0, exclude);
    int best = -1;
    for (size_t i = 0; i < lb->n; i++) {
        if (!usable(lb, i, exclude))
            continue;
        if (best < 0 || cmp_ratio(load[i], lb->weight[i], load[best], lb->weight[best]) < 0)
            best = (int)i;
    }
    if (best < 0)
        return -1;
    /* Equal ratios are common (idle pools, all loads 0): break ties by SWRR
     * so they spread by weight instead of all landing on the lowest index. */
    return swrr_step(lb, load, load[best], lb->weight[best], exclude);
}

/* ---- power of two choices --------------------------------------------- */

/* The backend owning point r of the weight line: smallest i with prefix[i] > r. */
static int prefix_search(const struct lb_state *lb, uint64_t r)
{
    size_t lo = 0, hi = lb->n - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (lb->prefix[mid] > r)
            hi = mid;
        else
            lo = mid + 1;
    }
    return (int)lo;
}

/* Weighted draw over all available backends, optionally leaving out `skip`:
 * its interval is cut out of the line, so the second candidate is drawn
 * exactly from the remaining weights without retry loops (which would spin
 * when one backend holds nearly all the weight). */
static int draw_prefix(struct lb_state *lb, int skip)
{
    if (skip < 0)
        return prefix_search(lb, random_below(lb, lb->total));
    uint64_t w = lb->weight[skip];
    uint64_t r = random_below(lb, lb->total - w);
    if (r >= lb->prefix[skip] - w)
        r += w;
    return prefix_search(lb, r);
}

/* The same draw by linear scan, for retries: excluded backends change the
 * weight line, and retries are rare enough that O(n) is fine. */
static int draw_linear(struct lb_state *lb, uint64_t total, int skip, const uint8_t *exclude)
{
    uint64_t r = random_below(lb, total);
    int last = -1;
    for (size_t i = 0; i < lb->n; i++) {
        if (!usable(lb, i, exclude) || (int)i == skip)
            continue;
        if (r < lb->weight[i])
            return (int)i;
        r -= lb->weight[i];
        last = (int)i;
    }
    return last; /* not reached: r < total */
}

static int pick_p2c(struct lb_state *lb, const uint32_t *load, const uint8_t *exclude)
{
    int a, b;
    if (!exclude) {
        if (lb->total == 0)
            return -1;
        a = draw_prefix(lb, -1);
        if (lb->n_avail == 1)
            return a;
        b = draw_prefix(lb, a);
    } else {
        uint64_t total = 0;
        for (size_t i = 0; i < lb->n; i++)
            total += usable(lb, i, exclude) ? lb->weight[i] : 0;
        if (total == 0)
            return -1;
        a = draw_linear(lb, total, -1, exclude);
        if (total == lb->weight[a])
            return a;
        b = draw_linear(lb, total - lb->weight[a], a, exclude);
    }
    /* Ties go to the first candidate, which was drawn by weight. */
    return cmp_ratio(load_of(load, b), lb->weight[b], load_of(load, a), lb->weight[a]) < 0 ? b : a;
}

/* ---- consistent hash ---------------------------------------------------- */

/* Retry probes before falling back to a linear walk; enough that the walk
 * only happens when the allowed backends own a tiny part of the table. */
#define HASH_RETRY_PROBES 64

static int pick_hash(struct lb_state *lb, uint64_t key_hash, const uint8_t *exclude)
{
    uint32_t m = lb->table_size;
    int32_t idx = maglev_lookup(lb->table, m, key_hash);
    if (idx < 0 || !exclude || !exclude[idx])
        return idx;

    /* Check first that some allowed backend exists, so an all-excluded retry
     * costs O(n), not O(m). */
    bool any = false;
    for (size_t i = 0; i < lb->n && !any; i++)
        any = usable(lb, i, exclude);
    if (!any)
        return -1;

    /* Probe re-mixed slots rather than the next slot: neighbouring Maglev
     * slots are correlated (after a slot of backend A, A itself is
     * under-represented), so walking forward skews the retry shares by
     * several percent. Each probe is an independent uniform slot, so the
     * retry lands on the allowed backends in proportion to their weights,
     * and the same key always retries on the same backend. */
    for (uint64_t probe = 1; probe <= HASH_RETRY_PROBES; probe++) {
        idx = maglev_lookup(lb->table, m, sl_mix64(key_hash + probe * 0x9e3779b97f4a7c15ULL));
        if (!exclude[idx])
            return idx;
    }
    uint32_t slot = (uint32_t)(key_hash % m);
    for (uint32_t step = 1; step < m; step++) {
        if (++slot == m)
            slot = 0;
        if (!exclude[lb->table[slot]])
            return lb->table[slot];
    }
    return -1; /* the allowed backends own no slot (tiny weights) */
}

/* ---- dispatch ----------------------------------------------------------- */

int lb_pick(struct lb_state *lb, const uint32_t *load, uint64_t key_hash, const uint8_t *exclude)
{
    if (lb->n_avail == 0)
        return -1;
    switch (lb->alg) {
    case LB_ROUND_ROBIN:
        return swrr_step(lb, NULL, 0, 0, exclude);
    case LB_LEAST_CONN:
        return pick_least_conn(lb, load, exclude);
    case LB_P2C:
        return pick_p2c(lb, load, exclude);
    case LB_HASH:
        return pick_hash(lb, key_hash, exclude);
    }
    return -1;
}
