/* Answers: which instances of a service a caller gets, for DNS A/AAAA and
 * SRV and for the API, with the reasons ("explain").
 *
 * Contract:
 *   - The caller owns the output arrays; no answer allocates. The first
 *     answer after a change of the service rebuilds its views (an O(n log n)
 *     pass that may grow the view's arrays); every other answer costs a
 *     binary search for the tier and one for each instance picked. That
 *     rebuild is the only failure (-ENOMEM), and the old answer state is
 *     kept dirty so the next call tries again.
 *   - The caller owns randomness: a struct reg_rand per thread (the DNS
 *     server keeps one), seeded once.
 *   - Pointers in the outputs are the model's instances: valid until the
 *     service changes next (do not keep them across event-loop turns).
 *
 * Who is answerable: enabled instances with weight > 0, of the address
 * family asked (A: IPv4, AAAA: IPv6, SRV and explain: any).
 *   (d) Disabled instances are never answered, in no tier and not when
 *       failing open.
 *   Weight 0 is never answered either, and is counted nowhere (not in a
 *       tier's healthy or total, not in the protect ratio): it carries no
 *       traffic, so it is no capacity. There is no "unless": a weight-0
 *       instance as a standby that is answered when nothing else is would
 *       make the protect threshold ambiguous (is a standby healthy
 *       capacity?). Weight 0 is how an instance is drained while it stays
 *       registered and checked; disabling is a separate flag so a weight
 *       comes back unchanged on enable. For a standby, give it weight 1
 *       beside 10000s (0.01% of the traffic) or register it in a service
 *       of its own.
 *
 * Locality tiers (in this order): the caller's datacenter, the caller's
 * region, all. A tier answers only when its healthy answerable instances
 * number at least the service's locality.min_healthy (at least 1) and make
 * at least locality.min_healthy_ratio of its answerable instances; "all"
 * answers when neither does. A caller whose datacenter or region is
 * unknown (id 0) skips that tier.
 *
 * Protect threshold (a): when healthy/total of the chosen tier is below
 * the service's protect_threshold, the answer fails open: it is drawn from
 * every answerable instance of the tier, healthy and not, and the ones
 * drawn are ordered healthy first. reg_explain.protect_active says so.
 *
 * A/AAAA (reg_answer_pick): up to n distinct instances drawn by weight
 * without replacement (each next one by weight among those left), so the
 * first record of each answer follows the weights exactly, and every call
 * draws anew so traffic follows the weights across queries.
 *
 * SRV (reg_answer_srv): every healthy answerable instance, with priority
 * by locality tier: 0 the caller's datacenter, 1 the rest of its region, 2
 * the rest; a tier that does not qualify folds into the next (its members
 * get the priority of the first qualifying tier that holds them). Weights
 * are scaled per priority so the largest is 65535 (ratios kept, at least
 * 1). When the chosen tier fails open, the answer is every answerable
 * instance of that tier, healthy first, at the tier's priority.
 */
#ifndef SLUICE_REGISTRY_REG_SELECT_H
#define SLUICE_REGISTRY_REG_SELECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "registry/reg_model.h"

enum reg_family { REG_FAMILY_ANY, REG_FAMILY_V4, REG_FAMILY_V6 };
#define REG_FAMILIES 3

enum reg_tier { REG_TIER_DC, REG_TIER_REGION, REG_TIER_ALL };

/* "datacenter", "region", "all". */
const char *reg_tier_name(enum reg_tier t);

/* The caller's random source (splitmix64): fast, not cryptographic. */
struct reg_rand {
    uint64_t state;
};
void reg_rand_seed(struct reg_rand *r, uint64_t seed);
uint64_t reg_rand_next(struct reg_rand *r);

/* One tier as the answer saw it. */
struct reg_tier_stat {
    uint32_t id;        /* the datacenter or region id (0: the caller's is unknown; always 0 for "all") */
    uint32_t healthy;   /* healthy answerable instances */
    uint32_t total;     /* answerable instances */
    bool qualified;     /* meets the locality minimums ("all" always does) */
};

struct reg_explain {
    enum reg_family family;
    struct reg_loc caller;
    enum reg_tier tier;             /* the tier answered from */
    struct reg_tier_stat dc, region, all;
    uint32_t min_healthy;           /* the service's minimums, as applied */
    double min_healthy_ratio;
    double protect_threshold;
    bool protect_active;            /* failing open: healthy/total below the threshold */
    uint32_t candidates;            /* instances the answer drew from */
};

/* Up to n (capped at REG_ANSWER_MAX) distinct instances of the family for
 * an A or AAAA answer, into out. Returns how many (0: nothing answerable),
 * or -ENOMEM. ex may be NULL. */
int reg_answer_pick(struct reg_model *m, struct reg_service *svc, struct reg_loc caller, enum reg_family family,
                    struct reg_rand *rnd, const struct reg_instance **out, uint32_t n, struct reg_explain *ex);

struct reg_srv {
    const struct reg_instance *inst;
    uint16_t priority;              /* 0, 1, 2: see above */
    uint16_t weight;                /* 1..65535 */
};

/* The SRV records, by priority, into out (at most cap). Returns how many
 * were written, or -ENOMEM; *total (may be NULL) gets how many the whole
 * answer has (more than cap: the caller truncates). ex may be NULL. */
int reg_answer_srv(struct reg_model *m, struct reg_service *svc, struct reg_loc caller, struct reg_srv *out,
                   uint32_t cap, uint32_t *total, struct reg_explain *ex);

/* Rebuild the service's views now if a change made them stale, which the
 * first answer after a change would otherwise do: the daemon calls it when
 * it has merged a window of changes, so queries never pay for it. 0 or
 * -ENOMEM. */
int reg_answer_prepare(struct reg_service *svc);

/* What an answer for the caller would be drawn from, and why. 0 or -ENOMEM. */
int reg_answer_explain(struct reg_model *m, struct reg_service *svc, struct reg_loc caller, enum reg_family family,
                       struct reg_explain *ex);

/* The explanation in one line of words, into buf (always terminated);
 * returns what snprintf returns. */
int reg_explain_format(const struct reg_model *m, const struct reg_explain *ex, char *buf, size_t cap);

/* ---- for listings and metrics ------------------------------------------ */

struct reg_service_summary {
    uint32_t instances;
    uint32_t enabled;
    uint32_t answerable;            /* enabled with weight > 0 */
    uint32_t healthy;               /* answerable and UP */
    uint32_t ephemeral;
    bool protect_active;            /* for a caller of unknown location (the "all" tier) */
    bool eviction_capped;
    uint32_t expiry_waiting;
};
void reg_service_summarize(const struct reg_service *svc, struct reg_service_summary *out);

/* The locality spread: per datacenter of the service's answerable
 * instances, its healthy and total counts (datacenters in id order). */
struct reg_spread {
    uint32_t dc, region;            /* region of the datacenter's first instance */
    uint32_t healthy, total;
};
/* Returns how many datacenters there are (write at most cap), or -ENOMEM. */
int reg_service_spread(struct reg_model *m, struct reg_service *svc, struct reg_spread *out, uint32_t cap);

#endif
