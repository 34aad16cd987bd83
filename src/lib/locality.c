/* See locality.h. */
#include "lib/locality.h"


const char *sl_tier_name(enum sl_tier t)
{
    switch (t) {
    case SL_TIER_DC:
        return "datacenter";
    case SL_TIER_REGION:
        return "region";
    case SL_TIER_ALL:
        break;
    }
    return "all";
}

uint32_t sl_ratio_ppm(double ratio)
{
    if (!(ratio > 0))
        return 0;
    if (ratio >= 1)
        return 1000000u;
    return (uint32_t)(ratio * 1e6 + 0.5); /* llround() for 0 < ratio < 1, without libm */
}

bool sl_tier_qualifies(const struct sl_locality_rules *r, struct sl_tier_count c)
{
    uint32_t min = r->min_healthy ? r->min_healthy : 1;
    return c.healthy >= min && (uint64_t)c.healthy * 1000000u >= (uint64_t)r->min_ratio_ppm * c.total;
}

bool sl_protect_fails_open(const struct sl_locality_rules *r, struct sl_tier_count c)
{
    return c.total > 0 && (uint64_t)c.healthy * 1000000u < (uint64_t)r->protect_ppm * c.total;
}

struct sl_locality sl_locality_choose(const struct sl_locality_rules *r, struct sl_tier_count dc,
                                      struct sl_tier_count region, struct sl_tier_count all)
{
    struct sl_locality l = {.dc_ok = sl_tier_qualifies(r, dc), .region_ok = sl_tier_qualifies(r, region)};
    struct sl_tier_count chosen = all;
    l.tier = SL_TIER_ALL;
    if (l.dc_ok) {
        l.tier = SL_TIER_DC;
        chosen = dc;
    } else if (l.region_ok) {
        l.tier = SL_TIER_REGION;
        chosen = region;
    }
    l.fail_open = sl_protect_fails_open(r, chosen);
    return l;
}
