/* Unit tests for the locality policy libsluice shares with the registry
 * (src/lib/locality.c): for each case of one table, the registry's answer
 * (reg_select.c over a reg_model) and the client's snapshot (snap.c over
 * the same instances as a registry answer) choose the same tier, fail
 * open alike, and draw from the same instances. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "client/snap.h"
#include "lib/locality.h"
#include "registry/reg_select.h"

#include "reg_helpers.h"

struct row {
    const char *dc, *region;
    uint32_t weight;
    bool enabled, up;
};

struct lcase {
    const char *what;
    const char *caller_dc, *caller_region;
    uint32_t min_healthy;
    double ratio, protect;
    struct row rows[12];
    /* expected, checked on both sides */
    enum sl_tier tier;
    bool fail_open;
    uint32_t members;
};

#define UP(dc, r) {dc, r, 100, true, true}
#define DOWN(dc, r) {dc, r, 100, true, false}

static const struct lcase cases[] = {
    {"own datacenter qualifies", "dc1", "r1", 1, 0, 0,
     {UP("dc1", "r1"), UP("dc1", "r1"), UP("dc2", "r1"), UP("dc3", "r2")}, SL_TIER_DC, false, 2},
    {"datacenter down: region", "dc1", "r1", 1, 0, 0,
     {DOWN("dc1", "r1"), UP("dc2", "r1"), UP("dc2", "r1"), UP("dc3", "r2")}, SL_TIER_REGION, false, 2},
    {"min_healthy 2 not met in dc", "dc1", "r1", 2, 0, 0,
     {UP("dc1", "r1"), DOWN("dc1", "r1"), UP("dc2", "r1"), UP("dc2", "r1"), UP("dc3", "r2")}, SL_TIER_REGION, false,
     3},
    {"ratio not met anywhere local: all", "dc1", "r1", 1, 0.6, 0,
     {UP("dc1", "r1"), DOWN("dc1", "r1"), DOWN("dc2", "r1"), UP("dc3", "r2"), UP("dc3", "r2"), UP("dc3", "r2")},
     SL_TIER_ALL, false, 4},
    {"unknown caller: all", NULL, NULL, 1, 0, 0,
     {UP("dc1", "r1"), UP("dc2", "r1"), DOWN("dc3", "r2")}, SL_TIER_ALL, false, 2},
    {"region only known", NULL, "r2", 1, 0, 0,
     {UP("dc1", "r1"), UP("dc3", "r2"), UP("dc4", "r2")}, SL_TIER_REGION, false, 2},
    {"protect: dc below threshold fails open", "dc1", "r1", 1, 0, 0.75,
     {UP("dc1", "r1"), UP("dc1", "r1"), DOWN("dc1", "r1"), DOWN("dc1", "r1"), UP("dc2", "r1")}, SL_TIER_DC, true, 4},
    {"protect: at the threshold does not", "dc1", "r1", 1, 0, 0.5,
     {UP("dc1", "r1"), DOWN("dc1", "r1")}, SL_TIER_DC, false, 1},
    {"disabled and weight 0 count nowhere", "dc1", "r1", 1, 0, 0.5,
     {UP("dc1", "r1"), {"dc1", "r1", 0, true, true}, {"dc1", "r1", 100, false, true}, {"dc1", "r1", 0, true, false},
      DOWN("dc2", "r1")}, SL_TIER_DC, false, 1},
    {"everything down: all fails open", "dc1", "r1", 1, 0, 0.1,
     {DOWN("dc1", "r1"), DOWN("dc2", "r1"), DOWN("dc3", "r2")}, SL_TIER_ALL, true, 3},
    {"everything down, no protection: nothing", "dc1", "r1", 1, 0, 0,
     {DOWN("dc1", "r1"), DOWN("dc2", "r1")}, SL_TIER_ALL, false, 0},
    {"weights do not change the tier", "dc2", "r1", 1, 0.5, 0,
     {{"dc2", "r1", 10000, true, true}, DOWN("dc2", "r1"), DOWN("dc2", "r1"), UP("dc1", "r1"), UP("dc1", "r1")},
     SL_TIER_REGION, false, 3},
};

static size_t n_rows(const struct lcase *c)
{
    size_t n = 0;
    while (n < 12 && c->rows[n].dc)
        n++;
    return n;
}

static void addr_of(size_t i, char *buf, size_t cap)
{
    snprintf(buf, cap, "10.0.%zu.%zu", i / 200, i % 200 + 1);
}

/* The registry's candidates: tier, protection, and the instances an answer
 * draws from (every one, by drawing them all without replacement). */
static void registry_side(const struct lcase *c, enum sl_tier *tier, bool *fail_open, char set[][32], uint32_t *n)
{
    struct reg_service_settings s;
    reg_service_settings_defaults(&s);
    s.locality.min_healthy = c->min_healthy;
    s.locality.min_healthy_ratio = c->ratio;
    s.protect_threshold = c->protect;
    struct reg_model *m = th_model(NULL);
    struct reg_service *svc = th_service(m, "web", &s);
    reg_service_settings_free(&s);
    for (size_t i = 0; i < n_rows(c); i++) {
        char a[64], ip[32];
        addr_of(i, ip, sizeof ip);
        snprintf(a, sizeof a, "%s:80", ip);
        struct reg_instance_spec spec = th_spec(a, c->rows[i].dc, c->rows[i].region, c->rows[i].weight);
        spec.enabled = c->rows[i].enabled;
        struct reg_instance *inst = th_put_spec(m, svc, &spec, 0);
        if (!c->rows[i].up)
            reg_instance_set_health(m, inst, REG_HEALTH_DOWN, "test", 0);
    }
    struct reg_loc caller = {0};
    if (c->caller_dc || c->caller_region)
        caller = th_loc(m, c->caller_dc ? c->caller_dc : "", c->caller_region ? c->caller_region : "");
    struct reg_explain ex;
    assert_int_equal(reg_answer_explain(m, svc, caller, REG_FAMILY_ANY, &ex), 0);
    *tier = ex.tier == REG_TIER_DC ? SL_TIER_DC : ex.tier == REG_TIER_REGION ? SL_TIER_REGION : SL_TIER_ALL;
    *fail_open = ex.protect_active;
    struct reg_rand r;
    reg_rand_seed(&r, 1);
    const struct reg_instance *out[REG_ANSWER_MAX];
    int k = reg_answer_pick(m, svc, caller, REG_FAMILY_ANY, &r, out, REG_ANSWER_MAX, NULL);
    assert_true(k >= 0);
    assert_int_equal((uint32_t)k, ex.candidates);
    for (int i = 0; i < k; i++)
        addr_ip_string((const struct sockaddr *)&out[i]->addr.ss, set[i], 32);
    *n = (uint32_t)k;
    reg_model_free(m);
}

/* The client's: the same instances as a registry answer, into a snapshot. */
static struct cl_snap *client_side(const struct lcase *c, struct cl_slots *slots)
{
    struct cl_doc d = {.min_healthy = c->min_healthy,
                       .min_healthy_ratio = c->ratio,
                       .protect_threshold = c->protect,
                       .dns_ttl = 5,
                       .answer_count = 1};
    snprintf(d.name, sizeof d.name, "web");
    d.n = n_rows(c);
    d.inst = calloc(d.n + 1, sizeof *d.inst);
    for (size_t i = 0; i < d.n; i++) {
        char ip[32];
        addr_of(i, ip, sizeof ip);
        char body[512];
        snprintf(body, sizeof body,
                 "{\"name\":\"web\",\"instances\":[{\"id\":\"i%zu\",\"address\":\"%s\",\"port\":80,\"weight\":%u,"
                 "\"enabled\":%s,\"health\":\"%s\",\"datacenter\":\"%s\",\"region\":\"%s\"}]}",
                 i, ip, c->rows[i].weight, c->rows[i].enabled ? "true" : "false", c->rows[i].up ? "up" : "down",
                 c->rows[i].dc, c->rows[i].region);
        struct cl_doc *one = cl_doc_parse(body, strlen(body), NULL, 0);
        assert_non_null(one);
        d.inst[i] = one->inst[0];
        cl_doc_free(one);
    }
    struct cl_snap *snap = cl_snap_build(&d, c->caller_dc, c->caller_region, 1, 1, slots);
    free(d.inst);
    assert_non_null(snap);
    return snap;
}

static bool in_set(char set[][32], uint32_t n, const char *ip)
{
    for (uint32_t i = 0; i < n; i++)
        if (strcmp(set[i], ip) == 0)
            return true;
    return false;
}

static void test_client_equals_registry(void **state)
{
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const struct lcase *c = &cases[k];
        enum sl_tier rtier;
        bool ropen;
        char set[REG_ANSWER_MAX][32];
        uint32_t rn;
        registry_side(c, &rtier, &ropen, set, &rn);
        struct cl_slots slots = {0};
        struct cl_snap *snap = client_side(c, &slots);
        if (rtier != c->tier || ropen != c->fail_open || rn != c->members)
            fail_msg("%s: the registry chose %s%s with %u members; the table says %s%s with %u", c->what,
                     sl_tier_name(rtier), ropen ? " (fail open)" : "", rn, sl_tier_name(c->tier),
                     c->fail_open ? " (fail open)" : "", c->members);
        if (snap->tier != rtier || snap->fail_open != ropen || snap->n_members != rn)
            fail_msg("%s: the client chose %s%s with %u members; the registry %s%s with %u", c->what,
                     sl_tier_name(snap->tier), snap->fail_open ? " (fail open)" : "", snap->n_members,
                     sl_tier_name(rtier), ropen ? " (fail open)" : "", rn);
        for (uint32_t i = 0; i < snap->n_members; i++) {
            const struct cl_snap_inst *si = &snap->inst[snap->members[i].inst];
            if (!in_set(set, rn, si->d.host))
                fail_msg("%s: the client draws from %s, the registry does not", c->what, si->d.host);
            /* failing open: healthy first, and the others marked */
            if (i > 0 && si->d.healthy)
                assert_true(snap->inst[snap->members[i - 1].inst].d.healthy);
        }
        cl_snap_free(snap);
        cl_slots_free(&slots);
    }
}

/* The policy by itself: the edges of its rules. */
static void test_policy_edges(void **state)
{
    struct sl_locality_rules r = {.min_healthy = 0, .min_ratio_ppm = sl_ratio_ppm(0.5), .protect_ppm = 0};
    assert_true(sl_tier_qualifies(&r, (struct sl_tier_count){1, 2}));
    assert_false(sl_tier_qualifies(&r, (struct sl_tier_count){1, 3}));
    assert_false(sl_tier_qualifies(&r, (struct sl_tier_count){0, 0}));
    r.protect_ppm = sl_ratio_ppm(0.5);
    assert_false(sl_protect_fails_open(&r, (struct sl_tier_count){0, 0}));
    assert_false(sl_protect_fails_open(&r, (struct sl_tier_count){1, 2}));
    assert_true(sl_protect_fails_open(&r, (struct sl_tier_count){1, 3}));
    assert_int_equal(sl_ratio_ppm(1), 1000000);
    assert_int_equal(sl_ratio_ppm(0.333333), 333333);
    struct sl_locality l = sl_locality_choose(&r, (struct sl_tier_count){0, 0}, (struct sl_tier_count){2, 2},
                                              (struct sl_tier_count){2, 9});
    assert_int_equal(l.tier, SL_TIER_REGION);
    assert_false(l.dc_ok);
    assert_true(l.region_ok);
    assert_false(l.fail_open);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_equals_registry),
        cmocka_unit_test(test_policy_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
