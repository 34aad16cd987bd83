/* Unit tests for lib/balance: weight shares over 10^6 picks for every
 * algorithm (idle and under a simulated load), exclusion, weight 0, SWRR
 * ordering and state retention. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lib/balance.h"
#include "lib/hash.h"
#include "lib/maglev.h"

#define PICKS 1000000u
#define SHARE_TOLERANCE 0.01
#define MAX_BACKENDS 8

struct weight_case {
    size_t n;
    uint32_t w[MAX_BACKENDS];
};

/* The weight sets named by the acceptance criteria. */
static const struct weight_case CASES[] = {
    {4, {1, 2, 3, 4}},
    {3, {5, 1, 1}},
    {5, {1, 1, 1, 1, 1}},
};
#define N_CASES (sizeof CASES / sizeof CASES[0])

static const enum lb_algorithm ALGS[] = {LB_ROUND_ROBIN, LB_LEAST_CONN, LB_P2C, LB_HASH};
#define N_ALGS (sizeof ALGS / sizeof ALGS[0])

/* Local, so this test links without config.c. */
static const char *alg_name(enum lb_algorithm alg)
{
    static const char *const names[] = {"round_robin", "least_conn", "p2c", "hash"};
    return names[alg];
}

static const char *const KEYS[MAX_BACKENDS] = {
    "10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080", "10.0.0.4:8080",
    "10.0.0.5:8080", "10.0.0.6:8080", "10.0.0.7:8080", "10.0.0.8:8080",
};

/* Deterministic test randomness (splitmix64), independent of the balancer's. */
static uint64_t test_rng = 12345;

static uint64_t rnd(void)
{
    test_rng += 0x9e3779b97f4a7c15ULL;
    return sl_mix64(test_rng);
}

static uint64_t key_hash_of(uint64_t i)
{
    return sl_hash64(&i, sizeof i, 0xc0ffee);
}

static struct lb_state *make_lb(enum lb_algorithm alg, const uint32_t *w, size_t n)
{
    struct lb_state *lb = lb_create(alg, n);
    assert_non_null(lb);
    lb_seed(lb, 42);
    assert_int_equal(lb_set_weights(lb, w, KEYS), 0);
    return lb;
}

static uint32_t weight_sum(const uint32_t *w, size_t n)
{
    uint32_t t = 0;
    for (size_t i = 0; i < n; i++)
        t += w[i];
    return t;
}

static void assert_shares(const char *what, const uint64_t *counts, const uint32_t *w, size_t n,
                          uint64_t picks)
{
    double total = weight_sum(w, n);
    for (size_t i = 0; i < n; i++) {
        double got = (double)counts[i] / (double)picks;
        double want = w[i] / total;
        double diff = got > want ? got - want : want - got;
        if (diff > SHARE_TOLERANCE)
            fail_msg("%s: backend %zu share %.4f, want %.4f (weight %u/%.0f)", what, i, got, want,
                     w[i], total);
    }
}

/* ---- shares with no load: least_conn reduces to SWRR, p2c to a weighted
 * random draw (ties go to the first candidate) ---- */

static void check_idle_shares(enum lb_algorithm alg)
{
    for (size_t c = 0; c < N_CASES; c++) {
        const struct weight_case *wc = &CASES[c];
        struct lb_state *lb = make_lb(alg, wc->w, wc->n);
        uint32_t load[MAX_BACKENDS] = {0};
        uint64_t counts[MAX_BACKENDS] = {0};
        for (uint64_t i = 0; i < PICKS; i++) {
            int idx = lb_pick(lb, load, key_hash_of(i), NULL);
            assert_in_range(idx, 0, (int)wc->n - 1);
            counts[idx]++;
        }
        char what[64];
        snprintf(what, sizeof what, "%s idle case %zu", alg_name(alg), c);
        assert_shares(what, counts, wc->w, wc->n, PICKS);
        lb_free(lb);
    }
}

static void test_idle_round_robin(void **state) { check_idle_shares(LB_ROUND_ROBIN); }
static void test_idle_least_conn(void **state) { check_idle_shares(LB_LEAST_CONN); }
static void test_idle_p2c(void **state) { check_idle_shares(LB_P2C); }
static void test_idle_hash(void **state) { check_idle_shares(LB_HASH); }

/* ---- shares under load: a closed system ----
 * A fixed population of clients (20 per weight unit) each has one request
 * in flight and sends the next as soon as it completes, so every completion
 * is followed by one pick and the pick shares equal the completion shares.
 * Two service models:
 *
 *  capacity: backend i is a server whose capacity is proportional to its
 *    weight; the next completion is drawn by weight among busy backends.
 *    Keeping every backend busy gives the weight shares. That alone does
 *    not prove weights are used (unweighted least_conn adapts to faster
 *    servers too), so the time-averaged in-flight share, which a weighted
 *    balancer keeps at load/weight parity, is checked as well.
 *
 *  latency: every request takes the same time wherever it runs (backends
 *    far from saturation); the next completion is a uniformly random
 *    in-flight request. Throughput then follows the in-flight counts, so the
 *    weight shares appear only if the balancer keeps load proportional to
 *    weight: a weight-blind balancer gives equal shares here. */
enum service_model { SERVICE_CAPACITY, SERVICE_LATENCY };

static size_t next_completion(enum service_model model, const uint32_t *w, size_t n,
                              const uint32_t *load, uint32_t in_flight)
{
    const uint32_t *by = model == SERVICE_CAPACITY ? w : load;
    uint32_t total = model == SERVICE_CAPACITY ? weight_sum(w, n) : in_flight;
    for (;;) {
        uint64_t r = rnd() % total;
        size_t i = 0;
        while (r >= by[i])
            r -= by[i++];
        if (load[i] > 0) /* an idle server completes nothing */
            return i;
    }
}

static void check_loaded_shares(enum lb_algorithm alg, enum service_model model)
{
    for (size_t c = 0; c < N_CASES; c++) {
        const struct weight_case *wc = &CASES[c];
        struct lb_state *lb = make_lb(alg, wc->w, wc->n);
        uint32_t load[MAX_BACKENDS] = {0};
        uint64_t counts[MAX_BACKENDS] = {0};
        uint64_t load_time[MAX_BACKENDS] = {0};
        uint32_t clients = 20 * weight_sum(wc->w, wc->n);

        for (uint32_t i = 0; i < clients; i++)
            load[lb_pick(lb, load, 0, NULL)]++;
        for (uint64_t i = 0; i < PICKS; i++) {
            load[next_completion(model, wc->w, wc->n, load, clients)]--;
            int idx = lb_pick(lb, load, 0, NULL);
            assert_in_range(idx, 0, (int)wc->n - 1);
            load[idx]++;
            counts[idx]++;
            for (size_t b = 0; b < wc->n; b++)
                load_time[b] += load[b];
        }
        char what[80];
        snprintf(what, sizeof what, "%s %s case %zu picks", alg_name(alg),
                 model == SERVICE_CAPACITY ? "capacity" : "latency", c);
        assert_shares(what, counts, wc->w, wc->n, PICKS);
        snprintf(what, sizeof what, "%s %s case %zu in-flight", alg_name(alg),
                 model == SERVICE_CAPACITY ? "capacity" : "latency", c);
        assert_shares(what, load_time, wc->w, wc->n, PICKS * clients);
        lb_free(lb);
    }
}

static void test_loaded_least_conn_capacity(void **state)
{
    check_loaded_shares(LB_LEAST_CONN, SERVICE_CAPACITY);
}
static void test_loaded_least_conn_latency(void **state)
{
    check_loaded_shares(LB_LEAST_CONN, SERVICE_LATENCY);
}
static void test_loaded_p2c_capacity(void **state) { check_loaded_shares(LB_P2C, SERVICE_CAPACITY); }
static void test_loaded_p2c_latency(void **state) { check_loaded_shares(LB_P2C, SERVICE_LATENCY); }

/* ---- exclusion (retries) ---- */

static void test_exclude_one(void **state)
{
    static const uint32_t w[4] = {1, 2, 3, 4};
    static const uint32_t w_rest[4] = {1, 2, 3, 0}; /* what the rest should get */
    const uint64_t picks = 200000;
    for (size_t a = 0; a < N_ALGS; a++) {
        struct lb_state *lb = make_lb(ALGS[a], w, 4);
        uint32_t load[4] = {0};
        uint8_t exclude[4] = {0, 0, 0, 1};
        uint64_t counts[4] = {0};
        for (uint64_t i = 0; i < picks; i++) {
            int idx = lb_pick(lb, load, key_hash_of(i), exclude);
            assert_in_range(idx, 0, 2);
            counts[idx]++;
        }
        assert_shares(alg_name(ALGS[a]), counts, w_rest, 4, picks);
        lb_free(lb);
    }
}

static void test_exclude_all_and_all_but_one(void **state)
{
    static const uint32_t w[4] = {1, 2, 3, 4};
    for (size_t a = 0; a < N_ALGS; a++) {
        struct lb_state *lb = make_lb(ALGS[a], w, 4);
        uint32_t load[4] = {3, 0, 7, 1};
        uint8_t all[4] = {1, 1, 1, 1};
        uint8_t all_but_2[4] = {1, 1, 0, 1};
        for (uint64_t i = 0; i < 1000; i++) {
            assert_int_equal(lb_pick(lb, load, key_hash_of(i), all), -1);
            assert_int_equal(lb_pick(lb, load, key_hash_of(i), all_but_2), 2);
        }
        lb_free(lb);
    }
}

/* A retried hash key moves to a fixed fallback, so retries stay sticky. */
static void test_hash_exclude_is_sticky(void **state)
{
    static const uint32_t w[5] = {1, 1, 1, 1, 1};
    struct lb_state *lb = make_lb(LB_HASH, w, 5);
    for (uint64_t i = 0; i < 10000; i++) {
        uint64_t h = key_hash_of(i);
        int first = lb_pick(lb, NULL, h, NULL);
        uint8_t exclude[5] = {0};
        exclude[first] = 1;
        int retry = lb_pick(lb, NULL, h, exclude);
        assert_true(retry >= 0 && retry != first);
        assert_int_equal(lb_pick(lb, NULL, h, exclude), retry);
    }
    lb_free(lb);
}

/* ---- weight 0 and empty pools ---- */

static void test_zero_weight_never_picked(void **state)
{
    static const uint32_t w[3] = {3, 0, 2};
    for (size_t a = 0; a < N_ALGS; a++) {
        struct lb_state *lb = make_lb(ALGS[a], w, 3);
        uint32_t load[3] = {5, 0, 5}; /* the zero-weight backend looks idlest */
        for (uint64_t i = 0; i < 100000; i++) {
            int idx = lb_pick(lb, load, key_hash_of(i), NULL);
            assert_true(idx == 0 || idx == 2);
        }
        lb_free(lb);
    }
}

static void test_all_zero_weights(void **state)
{
    static const uint32_t zero[3] = {0, 0, 0};
    static const uint32_t one[3] = {1, 1, 1};
    for (size_t a = 0; a < N_ALGS; a++) {
        struct lb_state *lb = lb_create(ALGS[a], 3);
        assert_non_null(lb);
        /* Before any weights are set nothing is available. */
        assert_int_equal(lb_pick(lb, NULL, 1, NULL), -1);
        assert_int_equal(lb_set_weights(lb, zero, KEYS), 0);
        for (uint64_t i = 0; i < 1000; i++)
            assert_int_equal(lb_pick(lb, NULL, key_hash_of(i), NULL), -1);
        /* And back: everything down, then up again. */
        assert_int_equal(lb_set_weights(lb, one, KEYS), 0);
        assert_in_range(lb_pick(lb, NULL, 7, NULL), 0, 2);
        assert_int_equal(lb_set_weights(lb, zero, KEYS), 0);
        assert_int_equal(lb_pick(lb, NULL, 7, NULL), -1);
        lb_free(lb);

        lb = lb_create(ALGS[a], 0);
        assert_non_null(lb);
        assert_int_equal(lb_set_weights(lb, NULL, NULL), 0);
        assert_int_equal(lb_pick(lb, NULL, 7, NULL), -1);
        lb_free(lb);
    }
}

static void test_create_errors(void **state)
{
    errno = 0;
    assert_null(lb_create((enum lb_algorithm)42, 3));
    assert_int_equal(errno, EINVAL);

    static const uint32_t w[2] = {1, 1};
    struct lb_state *lb = lb_create(LB_HASH, 2);
    assert_non_null(lb);
    errno = 0;
    assert_int_equal(lb_set_weights(lb, w, NULL), -1); /* Maglev needs keys */
    assert_int_equal(errno, EINVAL);
    lb_free(lb);
    lb_free(NULL);
}

/* ---- smooth weighted round-robin ---- */

static void test_swrr_sequence(void **state)
{
    static const uint32_t w[3] = {5, 1, 1};
    static const int want[14] = {0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0}; /* a a b a c a a */
    struct lb_state *lb = make_lb(LB_ROUND_ROBIN, w, 3);
    for (size_t i = 0; i < 14; i++)
        assert_int_equal(lb_pick(lb, NULL, 0, NULL), want[i]);
    lb_free(lb);
}

static void test_set_weights_unchanged_keeps_progress(void **state)
{
    static const int want[7] = {0, 0, 1, 0, 2, 0, 0};
    uint32_t w[3] = {5, 1, 1};
    struct lb_state *lb = make_lb(LB_ROUND_ROBIN, w, 3);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(lb_pick(lb, NULL, 0, NULL), want[i]);
    /* Same values from a different buffer: still "unchanged". */
    uint32_t same[3] = {5, 1, 1};
    assert_int_equal(lb_set_weights(lb, same, KEYS), 0);
    for (size_t i = 3; i < 7; i++)
        assert_int_equal(lb_pick(lb, NULL, 0, NULL), want[i]);

    /* A real change restarts the sequence for the new weights. */
    for (size_t i = 0; i < 3; i++)
        lb_pick(lb, NULL, 0, NULL);
    uint32_t w2[3] = {1, 1, 5};
    assert_int_equal(lb_set_weights(lb, w2, KEYS), 0);
    static const int want2[7] = {2, 2, 0, 2, 1, 2, 2};
    for (size_t i = 0; i < 7; i++)
        assert_int_equal(lb_pick(lb, NULL, 0, NULL), want2[i]);
    lb_free(lb);
}

/* ---- least connections ---- */

static void test_least_conn_ratio(void **state)
{
    static const uint32_t equal[3] = {1, 1, 1};
    struct lb_state *lb = make_lb(LB_LEAST_CONN, equal, 3);
    uint32_t load[3] = {5, 1, 3};
    assert_int_equal(lb_pick(lb, load, 0, NULL), 1);
    lb_free(lb);

    /* 4/8 < 1/1: the heavier backend is relatively less loaded. */
    static const uint32_t w[2] = {8, 1};
    lb = make_lb(LB_LEAST_CONN, w, 2);
    uint32_t load2[2] = {4, 1};
    assert_int_equal(lb_pick(lb, load2, 0, NULL), 0);
    uint32_t load3[2] = {9, 1};
    assert_int_equal(lb_pick(lb, load3, 0, NULL), 1);
    lb_free(lb);
}

static void test_least_conn_ties_rotate(void **state)
{
    static const uint32_t w[3] = {1, 1, 1};
    struct lb_state *lb = make_lb(LB_LEAST_CONN, w, 3);
    uint32_t load[3] = {4, 4, 4};
    int counts[3] = {0};
    for (int i = 0; i < 30; i++)
        counts[lb_pick(lb, load, 0, NULL)]++;
    for (int i = 0; i < 3; i++)
        assert_int_equal(counts[i], 10);
    lb_free(lb);
}

/* ---- power of two choices ---- */

static void test_p2c_two_distinct_candidates(void **state)
{
    /* With two backends, distinct candidates means both are always compared. */
    static const uint32_t w[2] = {1, 1};
    struct lb_state *lb = make_lb(LB_P2C, w, 2);
    uint32_t load_a[2] = {100, 0}, load_b[2] = {0, 100};
    for (int i = 0; i < 10000; i++) {
        assert_int_equal(lb_pick(lb, load_a, 0, NULL), 1);
        assert_int_equal(lb_pick(lb, load_b, 0, NULL), 0);
    }
    lb_free(lb);
}

static void test_p2c_skewed_weights(void **state)
{
    /* The second draw must not spin when one backend holds all but a sliver. */
    static const uint32_t w[3] = {1000000, 1, 0};
    struct lb_state *lb = make_lb(LB_P2C, w, 3);
    uint32_t load[3] = {1000000, 0, 0};
    uint8_t exclude[3] = {0, 0, 1};
    for (int i = 0; i < 10000; i++) {
        assert_int_equal(lb_pick(lb, load, 0, NULL), 1); /* always compared with 0 */
        assert_int_equal(lb_pick(lb, load, 0, exclude), 1);
    }
    lb_free(lb);
}

/* ---- hash ---- */

/* The balancer's hash picks are the plain Maglev table lookups, and a key
 * change (same weights) rebuilds the table. */
static void test_hash_matches_maglev(void **state)
{
    static const uint32_t w[4] = {1, 2, 3, 4};
    static const char *const other_keys[4] = {"a:1", "b:1", "c:1", "d:1"};
    uint32_t m = maglev_table_size(4);
    int32_t *table = test_malloc(m * sizeof *table);
    struct lb_state *lb = make_lb(LB_HASH, w, 4);

    assert_int_equal(maglev_build(table, m, KEYS, w, 4, MAGLEV_DEFAULT_SEED), 0);
    for (uint64_t i = 0; i < 10000; i++)
        assert_int_equal(lb_pick(lb, NULL, key_hash_of(i), NULL),
                         maglev_lookup(table, m, key_hash_of(i)));

    assert_int_equal(lb_set_weights(lb, w, other_keys), 0);
    assert_int_equal(maglev_build(table, m, other_keys, w, 4, MAGLEV_DEFAULT_SEED), 0);
    for (uint64_t i = 0; i < 10000; i++)
        assert_int_equal(lb_pick(lb, NULL, key_hash_of(i), NULL),
                         maglev_lookup(table, m, key_hash_of(i)));
    lb_free(lb);
    test_free(table);
}

/* Draining one backend only moves the keys that were on it. */
static void test_hash_drain_moves_only_its_keys(void **state)
{
    uint32_t w[5] = {1, 1, 1, 1, 1};
    struct lb_state *lb = make_lb(LB_HASH, w, 5);
    enum { N = 100000 };
    static int before[N];
    for (uint64_t i = 0; i < N; i++)
        before[i] = lb_pick(lb, NULL, key_hash_of(i), NULL);
    w[2] = 0;
    assert_int_equal(lb_set_weights(lb, w, KEYS), 0);
    size_t moved = 0;
    for (uint64_t i = 0; i < N; i++) {
        int now = lb_pick(lb, NULL, key_hash_of(i), NULL);
        assert_int_not_equal(now, 2);
        if (before[i] != 2)
            moved += now != before[i];
    }
    assert_true(moved < N / 100);
    lb_free(lb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idle_round_robin),
        cmocka_unit_test(test_idle_least_conn),
        cmocka_unit_test(test_idle_p2c),
        cmocka_unit_test(test_idle_hash),
        cmocka_unit_test(test_loaded_least_conn_capacity),
        cmocka_unit_test(test_loaded_least_conn_latency),
        cmocka_unit_test(test_loaded_p2c_capacity),
        cmocka_unit_test(test_loaded_p2c_latency),
        cmocka_unit_test(test_exclude_one),
        cmocka_unit_test(test_exclude_all_and_all_but_one),
        cmocka_unit_test(test_hash_exclude_is_sticky),
        cmocka_unit_test(test_zero_weight_never_picked),
        cmocka_unit_test(test_all_zero_weights),
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_swrr_sequence),
        cmocka_unit_test(test_set_weights_unchanged_keeps_progress),
        cmocka_unit_test(test_least_conn_ratio),
        cmocka_unit_test(test_least_conn_ties_rotate),
        cmocka_unit_test(test_p2c_two_distinct_candidates),
        cmocka_unit_test(test_p2c_skewed_weights),
        cmocka_unit_test(test_hash_matches_maglev),
        cmocka_unit_test(test_hash_drain_moves_only_its_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
