/* See reg_select.h.
 *
 * A service's view holds, for each address family, its answerable
 * instances laid out three times over: grouped by datacenter, grouped by
 * region, and all together. Each group is a slice of that array with its
 * healthy members first, and a running weight sum over the slice (cum), so
 * a draw among the healthy members is a binary search in the slice's first
 * part and a draw among all members (failing open) one in the whole slice.
 * Groups are sorted by id, so the caller's group is a binary search too.
 *
 * Drawing without replacement: each draw picks r uniformly in the weight
 * left (the slice's weight minus the instances already taken), then walks
 * past the taken instances in index order, adding each one's weight to r
 * when it lies at or before r; a binary search then finds the instance. So
 * each draw is exact (no rejection loop) and costs O(taken + log n).
 */
#include "registry/reg_select.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/hash.h"
#include "lib/locality.h"
#include "registry/reg_model_priv.h"

struct reg_group {
    uint32_t id;          /* datacenter or region id; 0 for "all" */
    uint32_t start;       /* slice [start, start + total) of member and cum */
    uint32_t total;
    uint32_t healthy;     /* the first `healthy` of the slice are UP */
    uint64_t w_healthy, w_total;
};

struct reg_fam_view {
    const struct reg_instance **member;
    uint64_t *cum;        /* cum[start + i] = weights of slice members 0..i */
    uint32_t member_cap, cum_cap;
    struct reg_group *group; /* n_dc datacenters, n_region regions, then "all" */
    uint32_t group_cap;
    uint32_t n_dc, n_region;
};

struct sort_ent {
    uint32_t key;
    uint32_t down;        /* 0 healthy, 1 not: healthy sort first */
    uint32_t order;       /* position in the service: keeps sorts stable */
    const struct reg_instance *inst;
};

struct reg_view {
    struct reg_fam_view fam[REG_FAMILIES];
    struct sort_ent *tmp;
    uint32_t tmp_cap;
};

const char *reg_tier_name(enum reg_tier t)
{
    switch (t) {
    case REG_TIER_DC:
        return "datacenter";
    case REG_TIER_REGION:
        return "region";
    case REG_TIER_ALL:
        break;
    }
    return "all";
}

void reg_rand_seed(struct reg_rand *r, uint64_t seed)
{
    r->state = seed;
}

uint64_t reg_rand_next(struct reg_rand *r)
{
    r->state += 0x9e3779b97f4a7c15ULL;
    return sl_mix64(r->state);
}

/* Uniform in [0, bound), bound > 0 (Lemire's multiply; the bias is below
 * bound / 2^64, nothing at registry weights). */
static uint64_t rand_below(struct reg_rand *r, uint64_t bound)
{
    return (uint64_t)(((unsigned __int128)reg_rand_next(r) * bound) >> 64);
}

/* ---- building the views ------------------------------------------------ */

void reg_view_free(struct reg_view *v)
{
    if (!v)
        return;
    for (int f = 0; f < REG_FAMILIES; f++) {
        free(v->fam[f].member);
        free(v->fam[f].cum);
        free(v->fam[f].group);
    }
    free(v->tmp);
    free(v);
}

/* p grown to hold at least need elements of size sz (the same p when it
 * already does); on failure p unchanged and *ok cleared. */
static void *grow(void *p, uint32_t *cap, uint32_t need, size_t sz, bool *ok)
{
    if (need <= *cap)
        return p;
    uint32_t n = *cap ? *cap : 16;
    while (n < need) {
        if (n > UINT32_MAX / 2) {
            *ok = false;
            return p;
        }
        n *= 2;
    }
    void *q = realloc(p, (size_t)n * sz);
    if (!q) {
        *ok = false;
        return p;
    }
    *cap = n;
    return q;
}

static bool family_has(enum reg_family f, const struct reg_instance *inst)
{
    sa_family_t af = inst->addr.ss.ss_family;
    return f == REG_FAMILY_ANY || (f == REG_FAMILY_V4 && af == AF_INET) || (f == REG_FAMILY_V6 && af == AF_INET6);
}

static bool answerable(const struct reg_instance *inst)
{
    return inst->enabled && inst->weight > 0;
}

static int by_key_then_health(const void *a, const void *b)
{
    const struct sort_ent *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    if (x->down != y->down)
        return x->down < y->down ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Where each family's arrays are filled up to. */
struct fill {
    uint32_t pos, n_groups;
};

/* Append the member inst to the group g being filled. */
static void append_member(struct reg_fam_view *fv, struct fill *fl, struct reg_group *g, const struct sort_ent *e)
{
    g->w_total += e->inst->weight;
    fv->member[fl->pos] = e->inst;
    fv->cum[fl->pos] = g->w_total;
    fl->pos++;
    g->total++;
    if (!e->down) {
        g->healthy++;
        g->w_healthy = g->w_total;
    }
}

/* Append family f's members of tmp[0..n) (sorted by key, then healthy
 * first) as one group per key; key 0, an unknown location, makes none. */
static void add_groups(struct reg_fam_view *fv, struct fill *fl, const struct sort_ent *tmp, uint32_t n,
                       enum reg_family f)
{
    for (uint32_t i = 0, j; i < n; i = j) {
        uint32_t key = tmp[i].key;
        for (j = i; j < n && tmp[j].key == key; j++)
            ;
        if (key == 0)
            continue;
        struct reg_group *g = NULL;
        for (uint32_t k = i; k < j; k++) {
            if (!family_has(f, tmp[k].inst))
                continue;
            if (!g) {
                g = &fv->group[fl->n_groups++];
                *g = (struct reg_group){.id = key, .start = fl->pos};
            }
            append_member(fv, fl, g, &tmp[k]);
        }
    }
}

/* Append family f's "all" group: every member, healthy ones first. */
static void add_all_group(struct reg_fam_view *fv, struct fill *fl, const struct sort_ent *tmp, uint32_t n,
                          enum reg_family f)
{
    struct reg_group *g = &fv->group[fl->n_groups++];
    *g = (struct reg_group){.start = fl->pos};
    for (uint32_t pass = 0; pass < 2; pass++)
        for (uint32_t k = 0; k < n; k++)
            if (tmp[k].down == pass && family_has(f, tmp[k].inst))
                append_member(fv, fl, g, &tmp[k]);
}

static int reserve_family(struct reg_fam_view *fv, uint32_t n)
{
    uint64_t need = (uint64_t)n * 3;
    bool ok = need <= UINT32_MAX / 2;
    if (ok) {
        fv->member = grow(fv->member, &fv->member_cap, (uint32_t)need, sizeof *fv->member, &ok);
        fv->cum = grow(fv->cum, &fv->cum_cap, (uint32_t)need, sizeof *fv->cum, &ok);
        fv->group = grow(fv->group, &fv->group_cap, 2 * n + 1, sizeof *fv->group, &ok);
    }
    return ok ? 0 : -ENOMEM;
}

/* Two sorts of the answerable instances (by datacenter, by region) serve
 * every family: each family's groups take its members in sorted order. */
static int build_views(struct reg_view *v, const struct reg_service *svc)
{
    uint32_t n = 0, count[REG_FAMILIES] = {0};
    for (uint32_t i = 0; i < svc->n_instances; i++) {
        const struct reg_instance *inst = svc->instances[i];
        if (!answerable(inst))
            continue;
        v->tmp[n++] = (struct sort_ent){.down = inst->health != REG_HEALTH_UP, .order = i, .inst = inst};
        count[REG_FAMILY_ANY]++;
        count[inst->addr.ss.ss_family == AF_INET ? REG_FAMILY_V4 : REG_FAMILY_V6]++;
    }
    struct fill fill[REG_FAMILIES] = {{0}};
    for (int f = 0; f < REG_FAMILIES; f++)
        if (reserve_family(&v->fam[f], count[f]) < 0)
            return -ENOMEM;

    for (uint32_t i = 0; i < n; i++)
        v->tmp[i].key = v->tmp[i].inst->loc.dc;
    if (n > 1)
        qsort(v->tmp, n, sizeof *v->tmp, by_key_then_health);
    for (int f = 0; f < REG_FAMILIES; f++) {
        add_groups(&v->fam[f], &fill[f], v->tmp, n, (enum reg_family)f);
        v->fam[f].n_dc = fill[f].n_groups;
    }
    for (uint32_t i = 0; i < n; i++)
        v->tmp[i].key = v->tmp[i].inst->loc.region;
    if (n > 1)
        qsort(v->tmp, n, sizeof *v->tmp, by_key_then_health);
    for (int f = 0; f < REG_FAMILIES; f++) {
        add_groups(&v->fam[f], &fill[f], v->tmp, n, (enum reg_family)f);
        v->fam[f].n_region = fill[f].n_groups - v->fam[f].n_dc;
        add_all_group(&v->fam[f], &fill[f], v->tmp, n, (enum reg_family)f);
    }
    return 0;
}

static int view_ensure(struct reg_service *svc)
{
    if (svc->view && !svc->view_dirty)
        return 0;
    if (!svc->view) {
        svc->view = calloc(1, sizeof *svc->view);
        if (!svc->view)
            return -ENOMEM;
    }
    struct reg_view *v = svc->view;
    bool ok = true;
    v->tmp = grow(v->tmp, &v->tmp_cap, svc->n_instances, sizeof *v->tmp, &ok);
    if (!ok)
        return -ENOMEM;
    if (build_views(v, svc) < 0)
        return -ENOMEM;
    svc->view_dirty = false;
    return 0;
}

int reg_answer_prepare(struct reg_service *svc)
{
    return view_ensure(svc);
}

/* ---- choosing the tier ------------------------------------------------- */

static const struct reg_group *find_group(const struct reg_group *g, uint32_t n, uint32_t id)
{
    if (!id)
        return NULL;
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (g[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && g[lo].id == id ? &g[lo] : NULL;
}

/* The service's settings as the shared policy's rules (lib/locality.h:
 * libsluice decides with the same functions). */
static struct sl_locality_rules rules_of(const struct reg_service *svc)
{
    return (struct sl_locality_rules){.min_healthy = svc->settings.locality.min_healthy,
                                      .min_ratio_ppm = svc->min_ratio_ppm,
                                      .protect_ppm = svc->protect_ppm};
}

static struct sl_tier_count count_of(const struct reg_group *g)
{
    return (struct sl_tier_count){.healthy = g ? g->healthy : 0, .total = g ? g->total : 0};
}

static void tier_stat(struct reg_tier_stat *st, const struct reg_group *g, uint32_t id, bool qualified)
{
    *st = (struct reg_tier_stat){
        .id = id, .healthy = g ? g->healthy : 0, .total = g ? g->total : 0, .qualified = qualified};
}

struct choice {
    const struct reg_group *dc, *region, *all, *chosen;
    enum reg_tier tier;
    bool dc_ok, region_ok;
    bool protect;
};

static void choose(const struct reg_service *svc, const struct reg_fam_view *fv, struct reg_loc caller,
                   struct choice *c)
{
    c->dc = find_group(fv->group, fv->n_dc, caller.dc);
    c->region = find_group(fv->group + fv->n_dc, fv->n_region, caller.region);
    c->all = &fv->group[fv->n_dc + fv->n_region];
    struct sl_locality_rules rules = rules_of(svc);
    struct sl_locality l = sl_locality_choose(&rules, count_of(c->dc), count_of(c->region), count_of(c->all));
    c->dc_ok = l.dc_ok;
    c->region_ok = l.region_ok;
    c->protect = l.fail_open;
    switch (l.tier) {
    case SL_TIER_DC:
        c->chosen = c->dc;
        c->tier = REG_TIER_DC;
        break;
    case SL_TIER_REGION:
        c->chosen = c->region;
        c->tier = REG_TIER_REGION;
        break;
    case SL_TIER_ALL:
        c->chosen = c->all;
        c->tier = REG_TIER_ALL;
        break;
    }
}

static void fill_explain(const struct reg_service *svc, enum reg_family f, struct reg_loc caller,
                         const struct choice *c, struct reg_explain *ex)
{
    *ex = (struct reg_explain){
        .family = f,
        .caller = caller,
        .tier = c->tier,
        .min_healthy = svc->settings.locality.min_healthy ? svc->settings.locality.min_healthy : 1,
        .min_healthy_ratio = svc->settings.locality.min_healthy_ratio,
        .protect_threshold = svc->settings.protect_threshold,
        .protect_active = c->protect,
        .candidates = c->protect ? c->chosen->total : c->chosen->healthy,
    };
    tier_stat(&ex->dc, c->dc, caller.dc, c->dc_ok);
    tier_stat(&ex->region, c->region, caller.region, c->region_ok);
    tier_stat(&ex->all, c->all, 0, true);
}

int reg_answer_explain(struct reg_model *m, struct reg_service *svc, struct reg_loc caller, enum reg_family family,
                       struct reg_explain *ex)
{
    (void)m;
    if (view_ensure(svc) < 0)
        return -ENOMEM;
    struct choice c;
    choose(svc, &svc->view->fam[family], caller, &c);
    fill_explain(svc, family, caller, &c, ex);
    return 0;
}

/* ---- A / AAAA ---------------------------------------------------------- */

/* Slice-relative start and weight of member i. */
static uint64_t slice_start(const uint64_t *cum, uint32_t i)
{
    return i ? cum[i - 1] : 0;
}

/* Draw one of slice[0..count) by weight, among those not in taken[0..n)
 * (sorted ascending); w_left is the weight not taken. */
static uint32_t draw(const uint64_t *cum, uint32_t count, const uint32_t *taken, uint32_t n, uint64_t w_left,
                     struct reg_rand *rnd)
{
    uint64_t r = rand_below(rnd, w_left);
    for (uint32_t t = 0; t < n && slice_start(cum, taken[t]) <= r; t++)
        r += cum[taken[t]] - slice_start(cum, taken[t]);
    uint32_t lo = 0, hi = count - 1;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (cum[mid] > r)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

static void insert_sorted(uint32_t *a, uint32_t n, uint32_t v)
{
    uint32_t i = n;
    while (i > 0 && a[i - 1] > v) {
        a[i] = a[i - 1];
        i--;
    }
    a[i] = v;
}

/* Healthy first, keeping the drawn order within each. */
static void healthy_first(const struct reg_instance **out, uint32_t n)
{
    const struct reg_instance *down[REG_ANSWER_MAX];
    uint32_t n_up = 0, n_down = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (out[i]->health == REG_HEALTH_UP)
            out[n_up++] = out[i];
        else
            down[n_down++] = out[i];
    }
    memcpy(out + n_up, down, n_down * sizeof *down);
}

int reg_answer_pick(struct reg_model *m, struct reg_service *svc, struct reg_loc caller, enum reg_family family,
                    struct reg_rand *rnd, const struct reg_instance **out, uint32_t n, struct reg_explain *ex)
{
    (void)m;
    if (view_ensure(svc) < 0)
        return -ENOMEM;
    const struct reg_fam_view *fv = &svc->view->fam[family];
    struct choice c;
    choose(svc, fv, caller, &c);
    if (ex)
        fill_explain(svc, family, caller, &c, ex);
    const struct reg_group *g = c.chosen;
    uint32_t count = c.protect ? g->total : g->healthy;
    uint64_t weight = c.protect ? g->w_total : g->w_healthy;
    if (n > REG_ANSWER_MAX)
        n = REG_ANSWER_MAX;
    if (n > count)
        n = count;
    const uint64_t *cum = fv->cum + g->start;
    uint32_t taken[REG_ANSWER_MAX];
    for (uint32_t k = 0; k < n; k++) {
        uint32_t i = draw(cum, count, taken, k, weight, rnd);
        out[k] = fv->member[g->start + i];
        weight -= cum[i] - slice_start(cum, i);
        insert_sorted(taken, k, i);
    }
    if (c.protect)
        healthy_first(out, n);
    return (int)n;
}

/* ---- SRV --------------------------------------------------------------- */

static uint16_t srv_weight(uint32_t w, uint32_t max)
{
    uint64_t s = ((uint64_t)w * 65535u + max / 2) / max;
    return (uint16_t)(s ? s : 1);
}

/* Members of slice g, healthy ones only unless all, not in datacenter
 * skip_dc nor region skip_region (0: none), written at priority prio. */
struct srv_out {
    struct reg_srv *out;
    uint32_t cap, written, total;
};

static bool srv_skip(const struct reg_instance *inst, uint32_t skip_dc, uint32_t skip_region)
{
    return (skip_dc && inst->loc.dc == skip_dc) || (skip_region && inst->loc.region == skip_region);
}

static void srv_emit(struct srv_out *o, const struct reg_fam_view *fv, const struct reg_group *g, bool all,
                     uint32_t skip_dc, uint32_t skip_region, uint16_t prio)
{
    if (!g)
        return;
    uint32_t count = all ? g->total : g->healthy;
    uint32_t max = 0;
    for (uint32_t i = 0; i < count; i++) {
        const struct reg_instance *inst = fv->member[g->start + i];
        if (!srv_skip(inst, skip_dc, skip_region) && inst->weight > max)
            max = inst->weight;
    }
    for (uint32_t i = 0; i < count; i++) {
        const struct reg_instance *inst = fv->member[g->start + i];
        if (srv_skip(inst, skip_dc, skip_region))
            continue;
        if (o->written < o->cap)
            o->out[o->written++] = (struct reg_srv){.inst = inst, .priority = prio, .weight = srv_weight(inst->weight, max)};
        o->total++;
    }
}

int reg_answer_srv(struct reg_model *m, struct reg_service *svc, struct reg_loc caller, struct reg_srv *out,
                   uint32_t cap, uint32_t *total, struct reg_explain *ex)
{
    (void)m;
    if (view_ensure(svc) < 0)
        return -ENOMEM;
    const struct reg_fam_view *fv = &svc->view->fam[REG_FAMILY_ANY];
    struct choice c;
    choose(svc, fv, caller, &c);
    if (ex)
        fill_explain(svc, REG_FAMILY_ANY, caller, &c, ex);
    struct srv_out o = {.out = out, .cap = cap};
    if (c.protect) {
        srv_emit(&o, fv, c.chosen, true, 0, 0, (uint16_t)c.tier);
    } else {
        uint32_t dc_done = c.dc_ok ? caller.dc : 0;
        uint32_t region_done = c.region_ok ? caller.region : 0;
        if (c.dc_ok)
            srv_emit(&o, fv, c.dc, false, 0, 0, REG_TIER_DC);
        if (c.region_ok)
            srv_emit(&o, fv, c.region, false, dc_done, 0, REG_TIER_REGION);
        srv_emit(&o, fv, c.all, false, dc_done, region_done, REG_TIER_ALL);
    }
    if (total)
        *total = o.total;
    return (int)o.written;
}

/* ---- words ------------------------------------------------------------- */

int reg_explain_format(const struct reg_model *m, const struct reg_explain *ex, char *buf, size_t cap)
{
    char dc[160] = "", region[160] = "", protect[160] = "", ratio[48] = "";
    if (ex->min_healthy_ratio > 0)
        snprintf(ratio, sizeof ratio, " and %.0f%% healthy", ex->min_healthy_ratio * 100);
    if (ex->dc.id)
        snprintf(dc, sizeof dc, "datacenter %s: %" PRIu32 " of %" PRIu32 " healthy (%s); ",
                 reg_model_loc_name(m, ex->dc.id), ex->dc.healthy, ex->dc.total,
                 ex->dc.qualified ? "enough" : "too few");
    else
        snprintf(dc, sizeof dc, "datacenter unknown; ");
    if (ex->region.id)
        snprintf(region, sizeof region, "region %s: %" PRIu32 " of %" PRIu32 " healthy (%s); ",
                 reg_model_loc_name(m, ex->region.id), ex->region.healthy, ex->region.total,
                 ex->region.qualified ? "enough" : "too few");
    else
        snprintf(region, sizeof region, "region unknown; ");
    if (ex->protect_active)
        snprintf(protect, sizeof protect,
                 "; protect threshold %.2f: failing open (every enabled instance of the tier, healthy first)",
                 ex->protect_threshold);
    const char *where = ex->tier == REG_TIER_DC       ? "the caller's datacenter"
                        : ex->tier == REG_TIER_REGION ? "the caller's region"
                                                      : "all datacenters";
    return snprintf(buf, cap,
                    "%s%sall: %" PRIu32 " of %" PRIu32 " healthy; a tier needs %" PRIu32 " healthy%s: "
                    "answering from %s, %" PRIu32 " candidates%s",
                    dc, region, ex->all.healthy, ex->all.total, ex->min_healthy, ratio, where, ex->candidates,
                    protect);
}

void reg_service_summarize(const struct reg_service *svc, struct reg_service_summary *out)
{
    *out = (struct reg_service_summary){
        .instances = svc->n_instances,
        .ephemeral = svc->n_ephemeral,
        .eviction_capped = svc->eviction_capped,
        .expiry_waiting = svc->expiry_waiting,
    };
    for (uint32_t i = 0; i < svc->n_instances; i++) {
        const struct reg_instance *inst = svc->instances[i];
        out->enabled += inst->enabled;
        if (answerable(inst)) {
            out->answerable++;
            out->healthy += inst->health == REG_HEALTH_UP;
        }
    }
    struct sl_locality_rules rules = rules_of(svc);
    out->protect_active =
        sl_protect_fails_open(&rules, (struct sl_tier_count){.healthy = out->healthy, .total = out->answerable});
}

int reg_service_spread(struct reg_model *m, struct reg_service *svc, struct reg_spread *out, uint32_t cap)
{
    (void)m;
    if (view_ensure(svc) < 0)
        return -ENOMEM;
    const struct reg_fam_view *fv = &svc->view->fam[REG_FAMILY_ANY];
    for (uint32_t i = 0; i < fv->n_dc && i < cap; i++) {
        const struct reg_group *g = &fv->group[i];
        out[i] = (struct reg_spread){
            .dc = g->id, .region = fv->member[g->start]->loc.region, .healthy = g->healthy, .total = g->total};
    }
    return (int)fv->n_dc;
}
