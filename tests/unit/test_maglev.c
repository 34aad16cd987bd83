/* Unit tests for lib/maglev (table size, determinism, order independence,
 * disruption on removal and addition, weighted shares, build time) and for
 * the lib/hash primitives it is built on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "lib/hash.h"
#include "lib/maglev.h"

#define MAX_BACKENDS 128
#define SHARE_TOLERANCE 0.01

static char key_store[MAX_BACKENDS][32];
static const char *keys[MAX_BACKENDS];

static int setup_keys(void **state)
{
    for (int i = 0; i < MAX_BACKENDS; i++) {
        snprintf(key_store[i], sizeof key_store[i], "10.1.%d.%d:443", i / 200, i % 200 + 1);
        keys[i] = key_store[i];
    }
    return 0;
}

static int32_t *new_table(uint32_t m)
{
    int32_t *t = test_malloc((size_t)m * sizeof *t);
    assert_non_null(t);
    return t;
}

static void build_ok(int32_t *t, uint32_t m, const char *const *k, const uint32_t *w, size_t n)
{
    assert_int_equal(maglev_build(t, m, k, w, n, MAGLEV_DEFAULT_SEED), 0);
}

static void fill_weights(uint32_t *w, size_t n, uint32_t value)
{
    for (size_t i = 0; i < n; i++)
        w[i] = value;
}

/* Fraction of slots whose owner differs, owners compared by key so tables
 * built from differently ordered or compacted arrays can be compared. */
static double moved_fraction(const int32_t *a, const char *const *keys_a, const int32_t *b,
                             const char *const *keys_b, uint32_t m)
{
    uint32_t moved = 0;
    for (uint32_t s = 0; s < m; s++) {
        if (a[s] < 0 || b[s] < 0) {
            moved += a[s] != b[s];
            continue;
        }
        moved += strcmp(keys_a[a[s]], keys_b[b[s]]) != 0;
    }
    return (double)moved / m;
}

/* ---- sizing and errors ---- */

static void test_table_size(void **state)
{
    assert_int_equal(maglev_table_size(0), 65537);
    assert_int_equal(maglev_table_size(1), 65537);
    assert_int_equal(maglev_table_size(655), 65537);  /* 65500 <= 65537 */
    assert_int_equal(maglev_table_size(656), 65609);  /* first prime >= 65600 */
    assert_int_equal(maglev_table_size(1000), 100003); /* first prime >= 100000 */
}

static void test_all_zero_and_bad_size(void **state)
{
    uint32_t m = maglev_table_size(3);
    int32_t *t = new_table(m);
    uint32_t zero[3] = {0, 0, 0};
    errno = 0;
    assert_int_equal(maglev_build(t, m, keys, zero, 3, MAGLEV_DEFAULT_SEED), -1);
    assert_int_equal(errno, ENOENT);
    for (uint32_t s = 0; s < m; s++)
        assert_int_equal(t[s], -1);
    assert_int_equal(maglev_lookup(t, m, 12345), -1);

    uint32_t one[3] = {1, 1, 1};
    errno = 0;
    assert_int_equal(maglev_build(t, 65536, keys, one, 3, MAGLEV_DEFAULT_SEED), -1);
    assert_int_equal(errno, EINVAL); /* not prime: permutations would not cover the table */
    test_free(t);
}

/* A tiny prime table with more backends than slots still fills every slot. */
static void test_small_table(void **state)
{
    uint32_t w[20];
    fill_weights(w, 20, 1);
    int32_t t[7];
    build_ok(t, 7, keys, w, 20);
    for (int s = 0; s < 7; s++)
        assert_in_range(t[s], 0, 19);
}

/* ---- determinism ---- */

static void test_same_inputs_same_table(void **state)
{
    uint32_t m = maglev_table_size(10);
    int32_t *a = new_table(m), *b = new_table(m);
    uint32_t w[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    build_ok(a, m, keys, w, 10);
    build_ok(b, m, keys, w, 10);
    assert_memory_equal(a, b, (size_t)m * sizeof *a);
    for (uint32_t s = 0; s < m; s++)
        assert_in_range(a[s], 0, 9);

    /* The seed matters: another seed gives another table. */
    assert_int_equal(maglev_build(b, m, keys, w, 10, 1), 0);
    assert_true(moved_fraction(a, keys, b, keys, m) > 0.5);
    test_free(a);
    test_free(b);
}

static void test_order_independent(void **state)
{
    enum { N = 10 };
    uint32_t m = maglev_table_size(N);
    int32_t *a = new_table(m), *b = new_table(m);
    uint32_t w[N] = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3};
    /* Same backends listed in reverse order. */
    const char *rkeys[N];
    uint32_t rw[N];
    for (int i = 0; i < N; i++) {
        rkeys[i] = keys[N - 1 - i];
        rw[i] = w[N - 1 - i];
    }
    build_ok(a, m, keys, w, N);
    build_ok(b, m, rkeys, rw, N);
    assert_true(moved_fraction(a, keys, b, rkeys, m) == 0.0);
    test_free(a);
    test_free(b);
}

/* ---- disruption ---- */

/* Remove backend `victim` from n equal-weight backends, both by setting its
 * weight to 0 and by dropping it from the arrays: the two must agree, and
 * at most 1/n + 1% of the table may change owner (the victim's own 1/n must
 * move; Maglev adds a little churn on top). Re-adding restores the table. */
static void check_removal(size_t n, size_t victim)
{
    uint32_t m = maglev_table_size(n);
    int32_t *orig = new_table(m), *zeroed = new_table(m), *dropped = new_table(m);
    uint32_t w[MAX_BACKENDS];
    fill_weights(w, n, 1);
    build_ok(orig, m, keys, w, n);

    w[victim] = 0;
    build_ok(zeroed, m, keys, w, n);
    for (uint32_t s = 0; s < m; s++)
        assert_int_not_equal(zeroed[s], (int32_t)victim);

    const char *rest[MAX_BACKENDS];
    for (size_t i = 0, k = 0; i < n; i++)
        if (i != victim)
            rest[k++] = keys[i];
    fill_weights(w, n - 1, 1);
    build_ok(dropped, m, rest, w, n - 1);
    assert_true(moved_fraction(zeroed, keys, dropped, rest, m) == 0.0);

    double moved = moved_fraction(orig, keys, zeroed, keys, m);
    double limit = 1.0 / (double)n + 0.01;
    if (moved > limit)
        fail_msg("n=%zu remove %zu: %.4f of slots moved, limit %.4f", n, victim, moved, limit);

    /* Back again: the original table, exactly. */
    fill_weights(w, n, 1);
    build_ok(zeroed, m, keys, w, n);
    assert_memory_equal(orig, zeroed, (size_t)m * sizeof *orig);

    test_free(orig);
    test_free(zeroed);
    test_free(dropped);
}

static void test_removal_disruption(void **state)
{
    static const size_t sizes[] = {3, 10, 50};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s];
        for (size_t victim = 0; victim < n; victim += n < 10 ? 1 : 7)
            check_removal(n, victim);
        check_removal(n, n - 1);
    }
}

/* Adding an (n+1)th backend moves about its fair share, 1/(n+1), plus a
 * little churn. */
static void test_addition_disruption(void **state)
{
    static const size_t sizes[] = {3, 10, 50};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s];
        uint32_t m = maglev_table_size(n + 1);
        int32_t *before = new_table(m), *after = new_table(m);
        uint32_t w[MAX_BACKENDS];
        fill_weights(w, n + 1, 1);
        build_ok(before, m, keys, w, n);
        build_ok(after, m, keys, w, n + 1);
        double moved = moved_fraction(before, keys, after, keys, m);
        double limit = 1.0 / (double)(n + 1) + 0.01;
        if (moved > limit)
            fail_msg("n=%zu add one: %.4f moved, limit %.4f", n, moved, limit);
        test_free(before);
        test_free(after);
    }
}

/* Changing one backend's weight moves roughly the share it gains or loses. */
static void test_reweight_disruption(void **state)
{
    enum { N = 10 };
    uint32_t m = maglev_table_size(N);
    int32_t *a = new_table(m), *b = new_table(m);
    uint32_t w[N];
    fill_weights(w, N, 10);
    build_ok(a, m, keys, w, N);
    w[4] = 5; /* share 10/100 -> 5/95 */
    build_ok(b, m, keys, w, N);
    double moved = moved_fraction(a, keys, b, keys, m);
    double limit = (10.0 / 100 - 5.0 / 95) + 0.02;
    if (moved > limit)
        fail_msg("halving one weight moved %.4f, limit %.4f", moved, limit);
    test_free(a);
    test_free(b);
}

/* ---- weighted shares ---- */

static void check_shares(const uint32_t *w, size_t n)
{
    uint32_t m = maglev_table_size(n);
    int32_t *t = new_table(m);
    build_ok(t, m, keys, w, n);
    uint32_t counts[MAX_BACKENDS] = {0};
    for (uint32_t s = 0; s < m; s++)
        counts[t[s]]++;
    double total = 0;
    for (size_t i = 0; i < n; i++)
        total += w[i];
    for (size_t i = 0; i < n; i++) {
        double got = (double)counts[i] / m, want = w[i] / total;
        double diff = got > want ? got - want : want - got;
        if (diff > SHARE_TOLERANCE)
            fail_msg("n=%zu backend %zu: share %.4f, want %.4f", n, i, got, want);
    }
    test_free(t);
}

static void test_weighted_shares(void **state)
{
    static const uint32_t a[] = {1, 2, 3, 4};
    static const uint32_t b[] = {5, 1, 1};
    static const uint32_t c[] = {1, 1, 1, 1, 1};
    static const uint32_t d[] = {1000000, 1, 0, 250000}; /* extreme ratios, 1 ~ 0 slots */
    check_shares(a, 4);
    check_shares(b, 3);
    check_shares(c, 5);
    check_shares(d, 4);
    uint32_t many[100];
    for (int i = 0; i < 100; i++)
        many[i] = (uint32_t)(i % 10 + 1) * 100;
    check_shares(many, 100);
}

/* Lookups of 10^6 distinct keys follow the table shares. */
static void test_lookup_key_shares(void **state)
{
    static const uint32_t w[] = {1, 2, 3, 4};
    uint32_t m = maglev_table_size(4);
    int32_t *t = new_table(m);
    build_ok(t, m, keys, w, 4);
    uint32_t counts[4] = {0};
    for (uint64_t i = 0; i < 1000000; i++) {
        char key[32];
        int len = snprintf(key, sizeof key, "client-%llu", (unsigned long long)i);
        counts[maglev_lookup(t, m, sl_hash64(key, (size_t)len, 7))]++;
    }
    for (int i = 0; i < 4; i++) {
        double got = counts[i] / 1e6, want = w[i] / 10.0;
        assert_true(got > want - SHARE_TOLERANCE && got < want + SHARE_TOLERANCE);
    }
    test_free(t);
}

/* The build must be cheap enough to run on every health change. */
static void test_build_time(void **state)
{
    enum { N = 100 };
    uint32_t m = maglev_table_size(N);
    assert_int_equal(m, 65537);
    int32_t *t = new_table(m);
    uint32_t w[N];
    fill_weights(w, N, 1);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    build_ok(t, m, keys, w, N);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
    print_message("maglev build M=%u, %d backends: %.2f ms\n", m, N, ms);
    assert_true(ms < 500); /* generous: sanitizers and loaded CI machines */
    test_free(t);
}

/* ---- hash primitives ---- */

static void test_hash_basics(void **state)
{
    const char *s = "hello, sluice";
    size_t len = strlen(s);
    assert_true(sl_hash64(s, len, 1) == sl_hash64(s, len, 1));
    assert_true(sl_hash64(s, len, 1) != sl_hash64(s, len, 2));
    /* Every prefix length hashes differently, including the empty string
     * and lengths whose short-input reads overlap ("a" vs "aa"). */
    char buf[80];
    memset(buf, 'a', sizeof buf);
    uint64_t seen[81];
    for (size_t l = 0; l <= sizeof buf; l++) {
        seen[l] = sl_hash64(buf, l, 0);
        for (size_t k = 0; k < l; k++)
            assert_true(seen[k] != seen[l]);
    }
    /* A one-bit input change flips about half the output bits. */
    unsigned long flips = 0, trials = 0;
    for (size_t l = 1; l <= 40; l++) {
        for (size_t bit = 0; bit < l * 8; bit++) {
            uint64_t h0 = sl_hash64(buf, l, 99);
            buf[bit / 8] ^= (char)(1 << (bit % 8));
            flips += (unsigned long)__builtin_popcountll(h0 ^ sl_hash64(buf, l, 99));
            buf[bit / 8] ^= (char)(1 << (bit % 8));
            trials++;
        }
    }
    double mean = (double)flips / trials;
    assert_true(mean > 31.0 && mean < 33.0);
    /* sl_mix64 is a bijection that moves 0 to 0 and mixes neighbours apart. */
    assert_true(sl_mix64(0) == 0);
    assert_true(__builtin_popcountll(sl_mix64(1) ^ sl_mix64(2)) > 16);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_size),
        cmocka_unit_test(test_all_zero_and_bad_size),
        cmocka_unit_test(test_small_table),
        cmocka_unit_test(test_same_inputs_same_table),
        cmocka_unit_test(test_order_independent),
        cmocka_unit_test(test_removal_disruption),
        cmocka_unit_test(test_addition_disruption),
        cmocka_unit_test(test_reweight_disruption),
        cmocka_unit_test(test_weighted_shares),
        cmocka_unit_test(test_lookup_key_shares),
        cmocka_unit_test(test_build_time),
        cmocka_unit_test(test_hash_basics),
    };
    return cmocka_run_group_tests(tests, setup_keys, NULL);
}
