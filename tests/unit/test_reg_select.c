/* Unit tests for registry answers (src/registry/reg_select.c): locality
 * fallback with count and ratio minimums, weights over 10^6 picks, the
 * protect threshold failing open with healthy first, disabled and weight-0
 * instances never answered, address families, SRV priorities and weights,
 * explain, and thousands of instances. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry/reg_model.h"
#include "registry/reg_select.h"

#include "reg_helpers.h"

#define PICKS 1000000u

static struct reg_rand rnd_seeded(uint64_t seed)
{
    struct reg_rand r;
    reg_rand_seed(&r, seed);
    return r;
}

/* Pick one instance n times; count[i] += 1 for the instance whose index in
 * insts[] it is (the test fails on any instance not in insts). */
static void count_picks(struct reg_model *m, struct reg_service *svc, struct reg_loc caller, enum reg_family f,
                        struct reg_instance **insts, size_t n_insts, uint32_t n, uint64_t *count)
{
    struct reg_rand r = rnd_seeded(7);
    for (uint32_t k = 0; k < n; k++) {
        const struct reg_instance *out[1];
        assert_int_equal(reg_answer_pick(m, svc, caller, f, &r, out, 1, NULL), 1);
        size_t i = 0;
        while (i < n_insts && insts[i] != out[0])
            i++;
        assert_true(i < n_insts);
        count[i]++;
    }
}

static bool in_dc(const struct reg_instance *inst, const char *dc)
{
    return strcmp(inst->datacenter, dc) == 0;
}

/* ---- locality ---------------------------------------------------------- */

/* dc1 and dc2 in region r1, dc3 in r2. */
struct three_dcs {
    struct reg_model *m;
    struct reg_service *svc;
    struct reg_instance *dc1[2], *dc2[3], *dc3[4];
};

static void three_dcs(struct three_dcs *t, const struct reg_service_settings *s)
{
    t->m = th_model(NULL);
    t->svc = th_service(t->m, "web", s);
    char a[32];
    for (int i = 0; i < 2; i++) {
        snprintf(a, sizeof a, "10.1.0.%d:80", i + 1);
        t->dc1[i] = th_put(t->m, t->svc, a, "dc1", "r1", 100);
    }
    for (int i = 0; i < 3; i++) {
        snprintf(a, sizeof a, "10.2.0.%d:80", i + 1);
        t->dc2[i] = th_put(t->m, t->svc, a, "dc2", "r1", 100);
    }
    for (int i = 0; i < 4; i++) {
        snprintf(a, sizeof a, "10.3.0.%d:80", i + 1);
        t->dc3[i] = th_put(t->m, t->svc, a, "dc3", "r2", 100);
    }
}

/* Every one of 200 picks of up to 9 comes from where(inst) being true. */
static void expect_answers_from(struct three_dcs *t, struct reg_loc caller, enum reg_tier tier,
                                bool (*where)(const struct reg_instance *), uint32_t expect_n)
{
    struct reg_rand r = rnd_seeded(1);
    for (int k = 0; k < 200; k++) {
        const struct reg_instance *out[9];
        struct reg_explain ex;
        int n = reg_answer_pick(t->m, t->svc, caller, REG_FAMILY_ANY, &r, out, 9, &ex);
        assert_int_equal(n, expect_n);
        assert_int_equal(ex.tier, tier);
        assert_false(ex.protect_active);
        for (int i = 0; i < n; i++) {
            assert_true(where(out[i]));
            assert_int_equal(out[i]->health, REG_HEALTH_UP);
            for (int j = 0; j < i; j++)
                assert_ptr_not_equal(out[i], out[j]);
        }
    }
}

static bool is_dc1(const struct reg_instance *i) { return in_dc(i, "dc1"); }
static bool is_r1(const struct reg_instance *i) { return strcmp(i->region, "r1") == 0; }
static bool is_any(const struct reg_instance *i) { (void)i; return true; }

static void test_locality_fallback_by_count(void **state)
{
    (void)state;
    struct reg_service_settings s;
    reg_service_settings_defaults(&s);
    s.locality.min_healthy = 2;
    struct three_dcs t;
    three_dcs(&t, &s);
    reg_service_settings_free(&s);
    struct reg_loc caller = th_loc(t.m, "dc1", "r1");

    /* dc1 has its 2 healthy: answers come from it. */
    expect_answers_from(&t, caller, REG_TIER_DC, is_dc1, 2);
    /* One down: 1 < 2, so the region (dc1 + dc2: 1 + 3 healthy). */
    reg_instance_set_health(t.m, t.dc1[0], REG_HEALTH_DOWN, "test", 1);
    expect_answers_from(&t, caller, REG_TIER_REGION, is_r1, 4);
    /* dc2 down as well: the region has 1, so all (1 + 4). */
    for (int i = 0; i < 3; i++)
        reg_instance_set_health(t.m, t.dc2[i], REG_HEALTH_DOWN, "test", 1);
    expect_answers_from(&t, caller, REG_TIER_ALL, is_any, 5);
    /* Back up: the datacenter again. */
    reg_instance_set_health(t.m, t.dc1[0], REG_HEALTH_UP, "test", 2);
    expect_answers_from(&t, caller, REG_TIER_DC, is_dc1, 2);

    /* A caller whose datacenter is unknown starts at its region; one whose
     * location is unknown gets all. */
    for (int i = 0; i < 3; i++)
        reg_instance_set_health(t.m, t.dc2[i], REG_HEALTH_UP, "test", 3);
    expect_answers_from(&t, th_loc(t.m, "", "r1"), REG_TIER_REGION, is_r1, 5);
    expect_answers_from(&t, th_loc(t.m, "dc9", "r9"), REG_TIER_ALL, is_any, 9);
    expect_answers_from(&t, (struct reg_loc){0}, REG_TIER_ALL, is_any, 9);
    reg_model_free(t.m);
}

static void test_locality_fallback_by_ratio(void **state)
{
    (void)state;
    struct reg_service_settings s;
    reg_service_settings_defaults(&s);
    s.locality.min_healthy = 1;
    s.locality.min_healthy_ratio = 0.6;
    struct reg_model *m = th_model(NULL);
    struct reg_service *svc = th_service(m, "api", &s);
    reg_service_settings_free(&s);
    struct reg_instance *dc1[5];
    char a[32];
    for (int i = 0; i < 5; i++) {
        snprintf(a, sizeof a, "10.1.0.%d:80", i + 1);
        dc1[i] = th_put(m, svc, a, "dc1", "r1", 100);
    }
    th_put(m, svc, "10.2.0.1:80", "dc2", "r1", 100);
    th_put(m, svc, "10.2.0.2:80", "dc2", "r1", 100);
    struct reg_loc caller = th_loc(m, "dc1", "r1");
    struct reg_explain ex;

    /* 3 of 5 healthy = 0.6: exactly the ratio, the datacenter answers. */
    reg_instance_set_health(m, dc1[0], REG_HEALTH_DOWN, "t", 1);
    reg_instance_set_health(m, dc1[1], REG_HEALTH_DOWN, "t", 1);
    assert_int_equal(reg_answer_explain(m, svc, caller, REG_FAMILY_ANY, &ex), 0);
    assert_int_equal(ex.tier, REG_TIER_DC);
    assert_int_equal(ex.dc.healthy, 3);
    assert_int_equal(ex.dc.total, 5);
    /* 2 of 5 = 0.4 < 0.6: the region (4 of 7 = 0.57 < 0.6 too): all. */
    reg_instance_set_health(m, dc1[2], REG_HEALTH_DOWN, "t", 1);
    assert_int_equal(reg_answer_explain(m, svc, caller, REG_FAMILY_ANY, &ex), 0);
    assert_false(ex.dc.qualified);
    assert_false(ex.region.qualified);
    assert_int_equal(ex.tier, REG_TIER_ALL);
    /* A third dc2 instance: region 5 of 8 = 0.625, it answers. */
    th_put(m, svc, "10.2.0.3:80", "dc2", "r1", 100);
    assert_int_equal(reg_answer_explain(m, svc, caller, REG_FAMILY_ANY, &ex), 0);
    assert_int_equal(ex.tier, REG_TIER_REGION);
    assert_int_equal(ex.region.healthy, 5);
    assert_int_equal(ex.region.total, 8);
    reg_model_free(m);
}

/* ---- weights ----------------------------------------------------------- */

/* Shares of 10^6 single picks against the weights: within 2% of each
 * share (shares of 10% and more), and within 0.1 percentage points for a
 * 1% share (2% of it would be two standard deviations). */
static void check_shares(const uint32_t *w, int n, double rel_tol, double abs_tol)
{
    struct reg_model *m = th_model(NULL);
    struct reg_service *svc = th_service(m, "w", NULL);
    struct reg_instance *insts[8];
    char a[32];
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        snprintf(a, sizeof a, "10.0.0.%d:80", i + 1);
        insts[i] = th_put(m, svc, a, "dc1", "r1", w[i]);
        total += w[i];
    }
    uint64_t count[8] = {0};
    count_picks(m, svc, th_loc(m, "dc1", "r1"), REG_FAMILY_ANY, insts, (size_t)n, PICKS, count);
    for (int i = 0; i < n; i++) {
        double want = (double)w[i] / (double)total, got = (double)count[i] / PICKS;
        if (fabs(got - want) > rel_tol * want + abs_tol)
            fail_msg("weight %u: share %.5f, expected %.5f", w[i], got, want);
    }
    reg_model_free(m);
}

static void test_weights_over_a_million_picks(void **state)
{
    (void)state;
    const uint32_t even[] = {100, 200, 300, 400};
    check_shares(even, 4, 0.02, 0);
    const uint32_t fine[] = {10000, 5000, 2500, 2500};
    check_shares(fine, 4, 0.02, 0);
    const uint32_t skewed[] = {1, 99};
    check_shares(skewed, 2, 0, 0.001);
}

/* With three answers each, the first record still follows the weights and
 * the three are distinct. */
static void test_first_of_several_follows_weights(void **state)
{
    (void)state;
    struct reg_model *m = th_model(NULL);
    struct reg_service *svc = th_service(m, "w", NULL);
    const uint32_t w[] = {10, 20, 30, 40};
    struct reg_instance *insts[4];
    char a[32];
    for (int i = 0; i < 4; i++) {
        snprintf(a, sizeof a, "10.0.0.%d:80", i + 1);
        insts[i] = th_put(m, svc, a, "", "", w[i]);
    }
    uint64_t first[4] = {0}, second[4] = {0}, any[4] = {0};
    struct reg_rand r = rnd_seeded(3);
    for (uint32_t k = 0; k < PICKS; k++) {
        const struct reg_instance *out[3];
        assert_int_equal(reg_answer_pick(m, svc, (struct reg_loc){0}, REG_FAMILY_ANY, &r, out, 3, NULL), 3);
        assert_ptr_not_equal(out[0], out[1]);
        assert_ptr_not_equal(out[0], out[2]);
        assert_ptr_not_equal(out[1], out[2]);
        for (int j = 0; j < 3; j++)
            for (int i = 0; i < 4; i++)
                if (out[j] == insts[i]) {
                    any[i]++;
                    if (j == 0)
                        first[i]++;
                    if (j == 1)
                        second[i]++;
                }
    }
    for (int i = 0; i < 4; i++) {
        double want = w[i] / 100.0, got = (double)first[i] / PICKS;
        assert_true(fabs(got - want) <= 0.02 * want);
    }
    /* The second record is drawn by weight among the three left: its
     * share is the sum over first records i of w_i/W * w_j/(W - w_i). */
    for (int j = 0; j < 4; j++) {
        double want = 0;
        for (int i = 0; i < 4; i++)
            if (i != j)
                want += w[i] / 100.0 * w[j] / (100.0 - w[i]);
        double got = (double)second[j] / PICKS;
        if (fabs(got - want) > 0.02 * want)
            fail_msg("second record %d: share %.4f, expected %.4f", j, got, want);
    }
    /* Three of four: an instance is left out with the probability that
     * the other three are drawn first. For weight 10 (w0) it is in almost
     * every answer; the heaviest is the one most often in. */
    assert_true(any[3] > any[0] || any[3] == PICKS);
    assert_int_equal(any[0] + any[1] + any[2] + any[3], 3 * (uint64_t)PICKS);
    reg_model_free(m);
}

/* Asking for more than there are gives each once. */
static void test_pick_all_distinct(void **state)
{
    (void)state;
    struct reg_model *m = th_model(NULL);
    struct reg_service *svc = th_service(m, "w", NULL);
    char a[32];
    for (int i = 0; i < 40; i++) {
        snprintf(a, sizeof a, "10.0.0.%d:80", i + 1);
        th_put(m, svc, a, "dc1", "r1", i == 0 ? 10000 : 1); /* one weight dominates */
    }
    struct reg_rand r = rnd_seeded(11);
    for (int k = 0; k < 1000; k++) {
        const struct reg_instance *out[64];
        int n = reg_answer_pick(m, svc, (struct reg_loc){0}, REG_FAMILY_ANY, &r, out, 64, NULL);
        assert_int_equal(n, 40);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < i; j++)
                assert_ptr_not_equal(out[i], out[j]);
    }
    reg_model_free(m);
}

/* ---- protection -------------------------------------------------------- */

static void test_protect_threshold_fails_open_healthy_first(void **state)
{
    (void)state;
    struct reg_service_settings s;
    reg_service_settings_defaults(&s);
    s.protect_threshold = 0.5;
    struct reg_model *m = th_model(NULL);
    struct reg_service *svc = th_service(m, "p", &s);
    reg_service_settings_free(&s);
    struct reg_instance *insts[10];
    char a[32];
    for (int i = 0; i < 10; i++) {
        snprintf(a, sizeof a, "10.0.0.%d:80", i + 1);
        insts[i] = th_put(m, svc, a, "dc1", "r1", 100);
    }
    struct reg_loc caller = th_loc(m, "dc1", "r1");
    struct reg_rand r = rnd_seeded(5);
    const struct reg_instance *out[16];
    struct reg_explain ex;

    /* 5 of 10 healthy = 0.5: not below the threshold, healthy only. */
    for (int i = 0; i < 5; i++)
        reg_instance_set_health(m, insts[i], REG_HEALTH_DOWN, "t", 1);
    int n = reg_answer_pick(m, svc, caller, REG_FAMILY_ANY, &r, out, 16, &ex);
    assert_int_equal(n, 5);
    assert_false(ex.protect_active);
    for (int i = 0; i < n; i++)
        assert_int_equal(out[i]->health, REG_HEALTH_UP);

    /* 3 of 10 = 0.3 < 0.5: every enabled instance, the healthy first. */
    reg_instance_set_health(m, insts[5], REG_HEALTH_DOWN, "t", 1);
    reg_instance_set_health(m, insts[6], REG_HEALTH_DOWN, "t", 1);
    for (int k = 0; k < 100; k++) {
        n = reg_answer_pick(m, svc, caller, REG_FAMILY_ANY, &r, out, 16, &ex);
        assert_int_equal(n, 10);
        assert_true(ex.protect_active);
        assert_int_equal(ex.candidates, 10);
        for (int i = 0; i < 3; i++)
            assert_int_equal(out[i]->health, REG_HEALTH_UP);
        for (int i = 3; i < 10; i++)
            assert_int_equal(out[i]->health, REG_HEALTH_DOWN);
    }
    /* One answer at a time, the traffic spreads over all ten (fail-open). */
    uint64_t count[10] = {0};
    count_picks(m, svc, caller, REG_FAMILY_ANY, insts, 10, 100000, count);
    for (int i = 0; i < 10; i++)
        assert_true(fabs((double)count[i] / 100000 - 0.1) < 0.01);

    /* With the threshold off the same state answers the 3 healthy. */
    reg_service_settings_defaults(&s);
    s.protect_threshold = 0;
    th_service(m, "p", &s);
    reg_service_settings_free(&s);
    n = reg_answer_pick(m, svc, caller, REG_FAMILY_ANY, &r, out, 16, &ex);
    assert_int_equal(n, 3);
    assert_false(ex.protect_active);
    reg_model_free(m);
}

static void test_disabled_never_answered(void **state)
{
    (void)state;
    struct reg_service_settings s;
    reg_service_settings_defaults(&s);
    s.protect_threshold = 0.9;
    struct reg_model *m = th_model(NULL);
    struct reg_service *svc = th_service(m, "d", &s);
    reg_service_settings_free(&s);
    struct reg_instance *insts[6];
    char a[32];
    for (int i = 0; i < 6; i++) {
        snprintf(a, sizeof a, "10.0.0.%d:80", i + 1);
        insts[i] = th_put(m, svc, a, i % 2 ? "dc1" : "dc2", "r1", 100);
    }
    reg_instance_set_enabled(m, insts[0], false);
    reg_instance_set_enabled(m, insts[1], false);
    struct reg_rand r = rnd_seeded(9);
    struct reg_loc callers[] = {th_loc(m, "dc1", "r1"), th_loc(m, "dc2", "r1"), {0}};
    for (int round = 0; round < 2; round++) {
        /* round 1: most are down, so the protect threshold fails open */
        if (round == 1)
            for (int i = 2; i < 5; i++)
                reg_instance_set_health(m, insts[i], REG_HEALTH_DOWN, "t", 1);
        for (size_t c = 0; c < sizeof callers / sizeof callers[0]; c++) {
            for (int k = 0; k < 2000; k++) {
                const struct reg_instance *out[8];
                int n = reg_answer_pick(m, svc, callers[c], REG_FAMILY_ANY, &r, out, 8, NULL);
                for (int i = 0; i < n; i++)
                    assert_true(out[i]->enabled);
            }
            struct reg_srv srv[8];
            uint32_t total;
            int n = reg_answer_srv(m, svc, callers[c], srv, 8, &total, NULL);
            assert_true(n > 0);
            for (int i = 0; i < n; i++)
                assert_true(srv[i].inst->enabled);
        }
    }
    /* Re-enabled, it is answered again. */
    reg_instance_set_enabled(m, insts[0], true);
    struct reg_srv srv[8];
    int n = reg_answer_srv(m, svc, (struct reg_loc){0}, srv, 8, NULL, NULL);
    bool seen = false;
    for (int i = 0; i < n; i++)
        seen |= srv[i].inst == insts[0];
    assert_true(seen);
    reg_model_free(m);
}

/* Weight 0: never answered, and counted nowhere. */
static void test_weight_zero_never_answered_nor_counted(void **state)
{
    (void)state;
    struct reg_service_settings s;
    reg_service_settings_defaults(&s);
    s.protect_threshold = 0.5;
    struct reg_model *m = th_model(NULL);
    struct reg_service *svc = th_service(m, "z", &s);
    reg_service_settings_free(&s);
    struct reg_instance *zero = th_put(m, svc, "10.0.0.1:80", "dc1", "r1", 0);
    struct reg_instance *a = th_put(m, svc, "10.0.0.2:80", "dc1", "r1", 100);
    struct reg_instance *b = th_put(m, svc, "10.0.0.3:80", "dc1", "r1", 100);
    struct reg_loc caller = th_loc(m, "dc1", "r1");
    struct reg_rand r = rnd_seeded(2);
    const struct reg_instance *out[4];
    struct reg_explain ex;
    int n = reg_answer_pick(m, svc, caller, REG_FAMILY_ANY, &r, out, 4, &ex);
    assert_int_equal(n, 2);
    assert_int_equal(ex.dc.total, 2);
    /* Both weighted ones down: 0 of 2, failing open over them, not zero. */
    reg_instance_set_health(m, a, REG_HEALTH_DOWN, "t", 1);
    reg_instance_set_health(m, b, REG_HEALTH_DOWN, "t", 1);
    for (int k = 0; k < 1000; k++) {
        n = reg_answer_pick(m, svc, caller, REG_FAMILY_ANY, &r, out, 4, &ex);
        assert_int_equal(n, 2);
        assert_true(ex.protect_active);
        for (int i = 0; i < n; i++)
            assert_ptr_not_equal(out[i], zero);
    }
    struct reg_srv srv[4];
    n = reg_answer_srv(m, svc, caller, srv, 4, NULL, NULL);
    for (int i = 0; i < n; i++)
        assert_ptr_not_equal(srv[i].inst, zero);
    /* Given a weight, it counts and is answered: 1 healthy of 3, still
     * failing open, with it (the healthy one) first. */
    assert_int_equal(reg_instance_set_weight(m, zero, 50), 0);
    n = reg_answer_pick(m, svc, caller, REG_FAMILY_ANY, &r, out, 4, &ex);
    assert_int_equal(n, 3);
    assert_int_equal(ex.dc.healthy, 1);
    assert_int_equal(ex.dc.total, 3);
    assert_ptr_equal(out[0], zero);
    assert_int_equal(reg_instance_set_weight(m, zero, REG_WEIGHT_MAX + 1), -1);
    reg_model_free(m);
}

/* ---- families ---------------------------------------------------------- */

static void test_address_families(void **state)
{
    (void)state;
    struct reg_model *m = th_model(NULL);
    struct reg_service *svc = th_service(m, "dual", NULL);
    th_put(m, svc, "10.0.0.1:80", "dc1", "r1", 100);
    th_put(m, svc, "10.0.0.2:80", "dc2", "r1", 100);
    th_put(m, svc, "[2001:db8::1]:80", "dc1", "r1", 100);
    struct reg_loc caller = th_loc(m, "dc1", "r1");
    struct reg_rand r = rnd_seeded(4);
    const struct reg_instance *out[4];
    struct reg_explain ex;
    for (int k = 0; k < 100; k++) {
        int n = reg_answer_pick(m, svc, caller, REG_FAMILY_V4, &r, out, 4, &ex);
        assert_int_equal(n, 1); /* dc1 has one IPv4 instance */
        assert_int_equal(out[0]->addr.ss.ss_family, AF_INET);
        assert_string_equal(out[0]->addr.text, "10.0.0.1:80");
        n = reg_answer_pick(m, svc, caller, REG_FAMILY_V6, &r, out, 4, &ex);
        assert_int_equal(n, 1);
        assert_int_equal(out[0]->addr.ss.ss_family, AF_INET6);
    }
    /* An IPv6-less datacenter for AAAA falls back on the family's own counts. */
    struct reg_loc dc2 = th_loc(m, "dc2", "r1");
    int n = reg_answer_pick(m, svc, dc2, REG_FAMILY_V6, &r, out, 4, &ex);
    assert_int_equal(n, 1);
    assert_int_equal(ex.tier, REG_TIER_REGION);
    reg_model_free(m);
}

/* ---- SRV --------------------------------------------------------------- */

static const struct reg_srv *srv_of(const struct reg_srv *srv, int n, const struct reg_instance *inst)
{
    for (int i = 0; i < n; i++)
        if (srv[i].inst == inst)
            return &srv[i];
    return NULL;
}

static void test_srv_priorities_and_weights(void **state)
{
    (void)state;
    struct reg_service_settings s;
    reg_service_settings_defaults(&s);
    s.locality.min_healthy = 2;
    struct reg_model *m = th_model(NULL);
    struct reg_service *svc = th_service(m, "srv", &s);
    reg_service_settings_free(&s);
    struct reg_instance *a = th_put(m, svc, "10.1.0.1:80", "dc1", "r1", 100);
    struct reg_instance *b = th_put(m, svc, "10.1.0.2:80", "dc1", "r1", 50);
    struct reg_instance *c = th_put(m, svc, "10.2.0.1:80", "dc2", "r1", 10);
    struct reg_instance *d = th_put(m, svc, "10.3.0.1:80", "dc3", "r2", 10000);
    struct reg_instance *e = th_put(m, svc, "10.3.0.2:80", "dc3", "r2", 5000);
    struct reg_instance *down = th_put(m, svc, "10.3.0.3:80", "dc3", "r2", 100);
    reg_instance_set_health(m, down, REG_HEALTH_DOWN, "t", 1);
    struct reg_loc caller = th_loc(m, "dc1", "r1");
    struct reg_srv srv[8];
    uint32_t total;
    int n = reg_answer_srv(m, svc, caller, srv, 8, &total, NULL);
    assert_int_equal(n, 5);
    assert_int_equal(total, 5);
    assert_null(srv_of(srv, n, down));
    /* priority 0: dc1 (100 -> 65535, 50 -> 32768); 1: dc2; 2: dc3 */
    assert_int_equal(srv_of(srv, n, a)->priority, 0);
    assert_int_equal(srv_of(srv, n, a)->weight, 65535);
    assert_int_equal(srv_of(srv, n, b)->priority, 0);
    assert_int_equal(srv_of(srv, n, b)->weight, 32768);
    assert_int_equal(srv_of(srv, n, c)->priority, 1);
    assert_int_equal(srv_of(srv, n, c)->weight, 65535);
    assert_int_equal(srv_of(srv, n, d)->priority, 2);
    assert_int_equal(srv_of(srv, n, d)->weight, 65535);
    assert_int_equal(srv_of(srv, n, e)->priority, 2);
    assert_int_equal(srv_of(srv, n, e)->weight, 32768);
    for (int i = 1; i < n; i++)
        assert_true(srv[i - 1].priority <= srv[i].priority);

    /* dc1 with one healthy does not qualify: its healthy one joins the
     * region's priority, weights scaled over that priority. Region r1 has
     * 2 healthy (b, c): it qualifies. */
    reg_instance_set_health(m, a, REG_HEALTH_DOWN, "t", 2);
    n = reg_answer_srv(m, svc, caller, srv, 8, &total, NULL);
    assert_int_equal(n, 4);
    assert_int_equal(srv_of(srv, n, b)->priority, 1);
    assert_int_equal(srv_of(srv, n, b)->weight, 65535);
    assert_int_equal(srv_of(srv, n, c)->priority, 1);
    assert_int_equal(srv_of(srv, n, c)->weight, 13107); /* 10/50 of 65535 */
    assert_int_equal(srv_of(srv, n, d)->priority, 2);

    /* A small output: truncated, the total says how many there are. */
    n = reg_answer_srv(m, svc, caller, srv, 2, &total, NULL);
    assert_int_equal(n, 2);
    assert_int_equal(total, 4);
    reg_model_free(m);
}

static void test_srv_fail_open(void **state)
{
    (void)state;
    struct reg_service_settings s;
    reg_service_settings_defaults(&s);
    s.protect_threshold = 0.6;
    struct reg_model *m = th_model(NULL);
    struct reg_service *svc = th_service(m, "srvp", &s);
    reg_service_settings_free(&s);
    struct reg_instance *a = th_put(m, svc, "10.1.0.1:80", "dc1", "r1", 100);
    struct reg_instance *b = th_put(m, svc, "10.1.0.2:80", "dc1", "r1", 100);
    th_put(m, svc, "10.3.0.1:80", "dc3", "r2", 100);
    reg_instance_set_health(m, a, REG_HEALTH_DOWN, "t", 1);
    struct reg_srv srv[8];
    struct reg_explain ex;
    /* dc1: 1 of 2 = 0.5 < 0.6, failing open within dc1: b first, then a */
    int n = reg_answer_srv(m, svc, th_loc(m, "dc1", "r1"), srv, 8, NULL, &ex);
    assert_true(ex.protect_active);
    assert_int_equal(ex.tier, REG_TIER_DC);
    assert_int_equal(n, 2);
    assert_ptr_equal(srv[0].inst, b);
    assert_ptr_equal(srv[1].inst, a);
    assert_int_equal(srv[0].priority, srv[1].priority);
    reg_model_free(m);
}

/* ---- explain ----------------------------------------------------------- */

static void test_explain(void **state)
{
    (void)state;
    struct reg_service_settings s;
    reg_service_settings_defaults(&s);
    s.locality.min_healthy = 2;
    s.protect_threshold = 0.8;
    struct three_dcs t;
    three_dcs(&t, &s);
    reg_service_settings_free(&s);
    reg_instance_set_health(t.m, t.dc1[0], REG_HEALTH_DOWN, "t", 1);
    reg_instance_set_health(t.m, t.dc2[0], REG_HEALTH_DOWN, "t", 1);
    struct reg_explain ex;
    assert_int_equal(reg_answer_explain(t.m, t.svc, th_loc(t.m, "dc1", "r1"), REG_FAMILY_V4, &ex), 0);
    assert_int_equal(ex.tier, REG_TIER_REGION);
    assert_int_equal(ex.dc.healthy, 1);
    assert_int_equal(ex.dc.total, 2);
    assert_false(ex.dc.qualified);
    assert_int_equal(ex.region.healthy, 3);
    assert_int_equal(ex.region.total, 5);
    assert_true(ex.region.qualified);
    assert_int_equal(ex.all.healthy, 7);
    assert_int_equal(ex.all.total, 9);
    assert_true(ex.protect_active); /* 3/5 = 0.6 < 0.8 */
    assert_int_equal(ex.candidates, 5);
    char buf[512];
    reg_explain_format(t.m, &ex, buf, sizeof buf);
    assert_non_null(strstr(buf, "datacenter dc1: 1 of 2 healthy (too few)"));
    assert_non_null(strstr(buf, "region r1: 3 of 5 healthy (enough)"));
    assert_non_null(strstr(buf, "answering from the caller's region"));
    assert_non_null(strstr(buf, "failing open"));

    struct reg_service_summary sum;
    reg_service_summarize(t.svc, &sum);
    assert_int_equal(sum.instances, 9);
    assert_int_equal(sum.healthy, 7);
    assert_int_equal(sum.answerable, 9);
    assert_true(sum.protect_active); /* 7/9 < 0.8 */
    struct reg_spread spread[4];
    int n = reg_service_spread(t.m, t.svc, spread, 4);
    assert_int_equal(n, 3);
    assert_string_equal(reg_model_loc_name(t.m, spread[0].dc), "dc1");
    assert_int_equal(spread[0].healthy, 1);
    assert_int_equal(spread[0].total, 2);
    assert_string_equal(reg_model_loc_name(t.m, spread[2].region), "r2");
    reg_model_free(t.m);
}

/* A service without instances, or with none answerable: empty answers,
 * no protection, and the views follow once instances come. */
static void test_empty_service(void **state)
{
    (void)state;
    struct reg_service_settings s;
    reg_service_settings_defaults(&s);
    s.protect_threshold = 0.5;
    struct reg_model *m = th_model(NULL);
    struct reg_service *svc = th_service(m, "empty", &s);
    reg_service_settings_free(&s);
    struct reg_loc caller = th_loc(m, "dc1", "r1");
    struct reg_rand r = rnd_seeded(1);
    const struct reg_instance *out[4];
    struct reg_explain ex;
    assert_int_equal(reg_answer_prepare(svc), 0);
    assert_int_equal(reg_answer_pick(m, svc, caller, REG_FAMILY_V4, &r, out, 4, &ex), 0);
    assert_int_equal(ex.tier, REG_TIER_ALL);
    assert_int_equal(ex.all.total, 0);
    assert_false(ex.protect_active);
    struct reg_srv srv[4];
    uint32_t total = 9;
    assert_int_equal(reg_answer_srv(m, svc, caller, srv, 4, &total, &ex), 0);
    assert_int_equal(total, 0);
    /* Only a disabled one: still nothing. */
    struct reg_instance *a = th_put(m, svc, "10.0.0.1:80", "dc1", "r1", 100);
    reg_instance_set_enabled(m, a, false);
    assert_int_equal(reg_answer_pick(m, svc, caller, REG_FAMILY_V4, &r, out, 4, &ex), 0);
    reg_instance_set_enabled(m, a, true);
    assert_int_equal(reg_answer_prepare(svc), 0);
    assert_int_equal(reg_answer_pick(m, svc, caller, REG_FAMILY_V4, &r, out, 4, &ex), 1);
    assert_int_equal(ex.tier, REG_TIER_DC);
    assert_int_equal(reg_answer_pick(m, svc, caller, REG_FAMILY_V6, &r, out, 4, &ex), 0);
    reg_model_free(m);
}

/* ---- scale ------------------------------------------------------------- */

static void test_thousands_of_instances(void **state)
{
    (void)state;
    struct reg_model *m = th_model(NULL);
    struct reg_service *big = th_service(m, "big", NULL);
    char a[64], dc[16], id[32];
    enum { N = 5000, DCS = 10, SERVICES = 2000 };
    for (int i = 0; i < N; i++) {
        snprintf(a, sizeof a, "10.%d.%d.%d:8080", i / 65536, (i / 256) % 256, i % 256);
        snprintf(dc, sizeof dc, "dc%d", i % DCS);
        th_put(m, big, a, dc, i % DCS < 5 ? "east" : "west", 1 + (uint32_t)(i % 7));
    }
    for (int s = 0; s < SERVICES; s++) {
        snprintf(id, sizeof id, "svc-%d", s);
        struct reg_service *svc = th_service(m, id, NULL);
        for (int i = 0; i < 3; i++) {
            snprintf(a, sizeof a, "10.200.%d.%d:80", s % 256, i);
            th_put(m, svc, a, "dc1", "east", 100);
        }
    }
    assert_int_equal(reg_model_service_count(m), SERVICES + 1);
    /* Every one is found by name and by id. */
    for (int s = 0; s < SERVICES; s++) {
        snprintf(id, sizeof id, "SVC-%d", s);
        struct reg_service *svc = reg_service_find(m, id, strlen(id));
        assert_non_null(svc);
        assert_int_equal(svc->n_instances, 3);
    }
    for (int i = 0; i < N; i++) {
        snprintf(a, sizeof a, "10.%d.%d.%d:8080", i / 65536, (i / 256) % 256, i % 256);
        assert_non_null(reg_instance_find(big, a));
    }
    struct reg_loc caller = th_loc(m, "dc3", "east");
    struct reg_rand r = rnd_seeded(8);
    const struct reg_instance *out[8];
    for (int k = 0; k < 10000; k++) {
        int n = reg_answer_pick(m, big, caller, REG_FAMILY_V4, &r, out, 8, NULL);
        assert_int_equal(n, 8);
        for (int i = 0; i < n; i++)
            assert_string_equal(out[i]->datacenter, "dc3");
    }
    /* Deregister every dc3 instance: answers move to the region. */
    for (int i = 3; i < N; i += DCS) {
        snprintf(a, sizeof a, "10.%d.%d.%d:8080", i / 65536, (i / 256) % 256, i % 256);
        assert_int_equal(reg_instance_delete(m, big, a), 0);
    }
    assert_int_equal(big->n_instances, N - N / DCS);
    struct reg_explain ex;
    int n = reg_answer_pick(m, big, caller, REG_FAMILY_V4, &r, out, 8, &ex);
    assert_int_equal(n, 8);
    assert_int_equal(ex.tier, REG_TIER_REGION);
    assert_int_equal(ex.region.total, N / 2 - N / DCS);
    for (int i = 0; i < n; i++)
        assert_string_equal(out[i]->region, "east");
    /* The SRV view of all of them: a truncated answer with the full count. */
    struct reg_srv srv[100];
    uint32_t total;
    assert_int_equal(reg_answer_srv(m, big, caller, srv, 100, &total, NULL), 100);
    assert_int_equal(total, N - N / DCS);
    reg_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_locality_fallback_by_count),
        cmocka_unit_test(test_locality_fallback_by_ratio),
        cmocka_unit_test(test_weights_over_a_million_picks),
        cmocka_unit_test(test_first_of_several_follows_weights),
        cmocka_unit_test(test_pick_all_distinct),
        cmocka_unit_test(test_protect_threshold_fails_open_healthy_first),
        cmocka_unit_test(test_disabled_never_answered),
        cmocka_unit_test(test_weight_zero_never_answered_nor_counted),
        cmocka_unit_test(test_address_families),
        cmocka_unit_test(test_srv_priorities_and_weights),
        cmocka_unit_test(test_srv_fail_open),
        cmocka_unit_test(test_explain),
        cmocka_unit_test(test_empty_service),
        cmocka_unit_test(test_thousands_of_instances),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
