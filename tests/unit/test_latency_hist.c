/* Unit tests for core/latency_hist: bucket edges (le is inclusive), the
 * exposition (cumulative buckets, +Inf = _count, _sum in seconds),
 * adding and subtracting copies, and the quantile estimate, which must
 * agree with PromQL's histogram_quantile() on the same buckets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/latency_hist.h"

static void test_bucket_edges_are_inclusive(void **state)
{
    struct latency_hist h = { 0 };
    latency_observe(&h, 0);
    latency_observe(&h, 500);        /* le="0.0005" */
    latency_observe(&h, 501);        /* le="0.001" */
    latency_observe(&h, 30000000);   /* le="30" */
    latency_observe(&h, 30000001);   /* +Inf */
    assert_int_equal(atomic_load(&h.bucket[0]), 2);
    assert_int_equal(atomic_load(&h.bucket[1]), 1);
    assert_int_equal(atomic_load(&h.bucket[LATENCY_BOUNDS - 1]), 1);
    assert_int_equal(atomic_load(&h.bucket[LATENCY_BOUNDS]), 1);
    assert_int_equal(latency_count(&h), 5);
    assert_int_equal(atomic_load(&h.sum_us), 0 + 500 + 501 + 30000000 + 30000001);
}

static void test_exposition(void **state)
{
    struct latency_hist h = { 0 };
    latency_observe(&h, 700);    /* 0.001 */
    latency_observe(&h, 2000);   /* 0.0025 */
    latency_observe(&h, 2000);
    latency_observe(&h, 45000000); /* +Inf */
    struct strbuf s = { 0 };
    latency_family(&s, "x_seconds", "Things.");
    const struct metric_label lb = { "pool", "a\"b" };
    latency_samples(&s, "x_seconds", &lb, 1, &h);
    char *text = strbuf_finish(&s, NULL);
    assert_non_null(text);
    assert_non_null(strstr(text, "# TYPE x_seconds histogram\n"));
    assert_non_null(strstr(text, "x_seconds_bucket{pool=\"a\\\"b\",le=\"0.0005\"} 0\n"
                                 "x_seconds_bucket{pool=\"a\\\"b\",le=\"0.001\"} 1\n"
                                 "x_seconds_bucket{pool=\"a\\\"b\",le=\"0.0025\"} 3\n"
                                 "x_seconds_bucket{pool=\"a\\\"b\",le=\"0.005\"} 3\n"));
    assert_non_null(strstr(text, "x_seconds_bucket{pool=\"a\\\"b\",le=\"30\"} 3\n"
                                 "x_seconds_bucket{pool=\"a\\\"b\",le=\"+Inf\"} 4\n"
                                 "x_seconds_sum{pool=\"a\\\"b\"} 45.004700\n"
                                 "x_seconds_count{pool=\"a\\\"b\"} 4\n"));
    /* 15 bounds and +Inf: 16 bucket lines. */
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, "x_seconds_bucket{")); p++)
        n++;
    assert_int_equal(n, LATENCY_BUCKETS);
    free(text);
}

static void test_add_and_sub(void **state)
{
    struct latency_hist a = { 0 }, b = { 0 }, sum = { 0 };
    latency_observe(&a, 100);
    latency_observe(&b, 100);
    latency_observe(&b, 2000000);
    latency_add(&sum, &a);
    latency_add(&sum, &b);
    assert_int_equal(latency_count(&sum), 3);
    assert_int_equal(atomic_load(&sum.sum_us), 2000200);
    latency_sub(&sum, &a);
    assert_int_equal(latency_count(&sum), 2);
    assert_int_equal(atomic_load(&sum.bucket[0]), 1);
    latency_sub(&sum, &b);
    latency_sub(&sum, &b); /* never below zero */
    assert_int_equal(latency_count(&sum), 0);
    assert_int_equal(atomic_load(&sum.sum_us), 0);
}

/* histogram_quantile(q) on the same buckets: rank q*count, linear within
 * the bucket that holds it, lower edge 0 for the first bucket. */
static void test_quantile_as_promql(void **state)
{
    struct latency_hist h = { 0 };
    assert_true(latency_quantile(&h, 0.5) < 0);
    for (int i = 0; i < 10; i++)
        latency_observe(&h, 3000);   /* (0.0025, 0.005] */
    for (int i = 0; i < 10; i++)
        latency_observe(&h, 20000);  /* (0.01, 0.025] */
    /* rank 10 of 20: the end of the first occupied bucket. */
    assert_float_equal(latency_quantile(&h, 0.5), 0.005, 1e-9);
    /* rank 15: half-way through (0.01, 0.025]. */
    assert_float_equal(latency_quantile(&h, 0.75), 0.0175, 1e-9);
    /* rank 2.5: a quarter of (0.0025, 0.005]. */
    assert_float_equal(latency_quantile(&h, 0.125), 0.0025 + 0.0025 * 0.25, 1e-9);
    /* In +Inf: the highest finite bound. */
    struct latency_hist slow = { 0 };
    latency_observe(&slow, 60000000);
    assert_float_equal(latency_quantile(&slow, 0.99), 30.0, 1e-9);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_edges_are_inclusive),
        cmocka_unit_test(test_exposition),
        cmocka_unit_test(test_add_and_sub),
        cmocka_unit_test(test_quantile_as_promql),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
