/* The locality policy of a service's answers, in one place: which tier a
 * caller is answered from and whether protection fails open. The registry
 * (src/registry/reg_select.c, for DNS and the API) and libsluice
 * (src/client, for picks in the caller) both decide with these functions,
 * so a caller gets the same tier from either.
 *
 * Pure: counts in, decision out. The caller counts, per tier, the
 * answerable instances (enabled, weight > 0) and the healthy ones among
 * them; a tier whose location the caller does not know counts 0 of 0.
 *
 * Rules (see reg_select.h for the whole answer):
 *   - a tier qualifies when its healthy instances number at least
 *     min_healthy (at least 1) and make at least min_healthy_ratio of its
 *     total;
 *   - the tier is the caller's datacenter if it qualifies, else its region
 *     if that does, else "all";
 *   - the chosen tier fails open when it has instances and healthy/total is
 *     below protect_threshold: the answer is then drawn from every
 *     answerable instance of the tier, healthy or not.
 * Ratios are compared in millionths, exactly (no floating point). */
#ifndef SLUICE_LIB_LOCALITY_H
#define SLUICE_LIB_LOCALITY_H

#include <stdbool.h>
#include <stdint.h>

enum sl_tier { SL_TIER_DC, SL_TIER_REGION, SL_TIER_ALL };

/* "datacenter", "region", "all". */
const char *sl_tier_name(enum sl_tier t);

struct sl_locality_rules {
    uint32_t min_healthy;      /* 0 means 1 */
    uint32_t min_ratio_ppm;    /* locality.min_healthy_ratio in millionths */
    uint32_t protect_ppm;      /* protect_threshold in millionths (0: off) */
};

/* A ratio 0..1 in millionths, rounded (how settings become rules). */
uint32_t sl_ratio_ppm(double ratio);

struct sl_tier_count {
    uint32_t healthy;          /* healthy answerable instances */
    uint32_t total;            /* answerable instances */
};

struct sl_locality {
    enum sl_tier tier;         /* the tier answered from */
    bool dc_ok, region_ok;     /* which tiers qualified */
    bool fail_open;            /* protection: draw from every answerable instance of the tier */
};

/* Whether a tier with these counts meets the locality minimums. */
bool sl_tier_qualifies(const struct sl_locality_rules *r, struct sl_tier_count c);

/* Whether a tier with these counts is below the protect threshold. */
bool sl_protect_fails_open(const struct sl_locality_rules *r, struct sl_tier_count c);

/* The decision for a caller whose tiers count dc, region and all. */
struct sl_locality sl_locality_choose(const struct sl_locality_rules *r, struct sl_tier_count dc,
                                      struct sl_tier_count region, struct sl_tier_count all);

#endif
