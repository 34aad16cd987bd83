/* Unit tests for rate and connection limits (src/proxy/ratelimit.c,
 * ratelimit_conf.c): the bucket arithmetic (burst + 1 at once, then one per
 * interval, the wait until the next one), the shared tables (keys apart,
 * drained buckets reused, eviction of the bucket closest to drained,
 * connection counts that are never evicted), carrying buckets over a
 * reload, and the configuration keys with their errors. Ends with a
 * microbenchmark of a check (ns per request), printed, not asserted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config_expect.h"
#include "proxy/ratelimit.h"

#define SEC 1000000000ull
#define NOW0 (1000 * SEC) /* any CLOCK_MONOTONIC-like start */

/* ---- the bucket arithmetic ---- */

static void test_gcra_burst_then_rate(void **state)
{
    const uint64_t interval = SEC / 10, tolerance = 5 * interval; /* 10r/s, burst 5 */
    uint64_t tat = 0, wait = 0;
    /* burst + 1 at once */
    for (int i = 0; i < 6; i++)
        assert_true(ratelimit_gcra(&tat, NOW0, interval, tolerance, &wait));
    assert_false(ratelimit_gcra(&tat, NOW0, interval, tolerance, &wait));
    assert_int_equal(wait, interval); /* one more leaks out in 100 ms */
    /* a refused request does not charge the bucket */
    assert_int_equal(tat, NOW0 + 6 * interval);
    /* just before the interval: still refused, then admitted, once */
    assert_false(ratelimit_gcra(&tat, NOW0 + interval - 1, interval, tolerance, &wait));
    assert_int_equal(wait, 1);
    assert_true(ratelimit_gcra(&tat, NOW0 + interval, interval, tolerance, &wait));
    assert_false(ratelimit_gcra(&tat, NOW0 + interval, interval, tolerance, &wait));
    /* quiet for long: the bucket drains, a whole burst again */
    uint64_t later = NOW0 + 60 * SEC;
    for (int i = 0; i < 6; i++)
        assert_true(ratelimit_gcra(&tat, later, interval, tolerance, &wait));
    assert_false(ratelimit_gcra(&tat, later, interval, tolerance, &wait));
}

/* Requests arriving faster than the rate for a while: the admitted count is
 * burst + 1 + rate * time, whatever the arrival pattern. */
static void test_gcra_sustained_rate(void **state)
{
    const uint64_t interval = SEC / 50, tolerance = 10 * interval; /* 50r/s, burst 10 */
    uint64_t tat = 0, wait, admitted = 0;
    for (uint64_t t = 0; t < 4 * SEC; t += SEC / 1000) /* 1000 r/s offered for 4 s */
        admitted += ratelimit_gcra(&tat, NOW0 + t, interval, tolerance, &wait);
    assert_int_equal(admitted, 1 + 10 + 200 - 1); /* the last interval starts at 4 s, outside */
}

static void test_gcra_no_burst(void **state)
{
    const uint64_t interval = 60 * SEC; /* 1r/m */
    uint64_t tat = 0, wait;
    assert_true(ratelimit_gcra(&tat, NOW0, interval, 0, &wait));
    assert_false(ratelimit_gcra(&tat, NOW0 + SEC, interval, 0, &wait));
    assert_int_equal(wait, 59 * SEC);
}

/* ---- tables, through a region made from a configuration ---- */

static struct sl_config *cfg_with(const char *listener_extra)
{
    char yaml[2048];
    snprintf(yaml, sizeof yaml, MIN_POOLS MIN_LISTENERS "%s", listener_extra);
    return load_ok(yaml);
}

#define ONE_LIMIT                                                                                   \
    "    rate_limits:\n"                                                                            \
    "      - { name: per_ip, key: client_ip, rate: 10r/s, burst: 2, max_keys: 16 }\n"

static void test_keys_have_their_own_buckets(void **state)
{
    struct sl_config *cfg = cfg_with(ONE_LIMIT);
    bool failed;
    struct ratelimit_region *r = ratelimit_create(proxy_conf(cfg), &failed);
    assert_non_null(r);
    struct rl_table *t = ratelimit_table(r, 0, 0);
    assert_non_null(t);
    assert_null(ratelimit_table(r, 0, 1)); /* no connection limit */
    assert_int_equal(t->interval_ns, SEC / 10);
    uint64_t a = ratelimit_hash(t, "10.0.0.1", 8), b = ratelimit_hash(t, "10.0.0.2", 8), wait;
    assert_int_not_equal(a, b);
    for (int i = 0; i < 3; i++)
        assert_true(ratelimit_take(t, a, NOW0, &wait));
    assert_false(ratelimit_take(t, a, NOW0, &wait));
    for (int i = 0; i < 3; i++)
        assert_true(ratelimit_take(t, b, NOW0, &wait));
    assert_false(ratelimit_take(t, b, NOW0, &wait));
    /* a refund gives one back */
    ratelimit_refund(t, a);
    assert_true(ratelimit_take(t, a, NOW0, &wait));
    assert_false(ratelimit_take(t, a, NOW0, &wait));
    ratelimit_destroy(r);
    config_free(cfg);
}

/* Sixteen slots, sixteen busy keys: a newcomer evicts the one closest to
 * drained; a drained bucket is reused without counting an eviction. */
static void test_full_table_evicts_closest_to_drained(void **state)
{
    struct sl_config *cfg = cfg_with(ONE_LIMIT);
    bool failed;
    struct ratelimit_region *r = ratelimit_create(proxy_conf(cfg), &failed);
    struct rl_table *t = ratelimit_table(r, 0, 0);
    assert_int_equal(t->mask, RL_PROBE - 1);
    uint64_t wait;
    /* Hashes chosen by hand: all sixteen land in the window of the first. */
    for (uint64_t k = 1; k <= RL_PROBE; k++) {
        int takes = k == 7 ? 1 : 3; /* key 7 is the least charged */
        for (int i = 0; i < takes; i++)
            assert_true(ratelimit_take(t, k << 8, NOW0, &wait));
    }
    assert_int_equal(atomic_load(&t->ctr.evicted), 0);
    assert_true(ratelimit_take(t, 99u << 8, NOW0, &wait));
    assert_int_equal(atomic_load(&t->ctr.evicted), 1);
    /* key 7 lost its bucket; the others kept theirs */
    assert_false(ratelimit_take(t, 1u << 8, NOW0, &wait));
    assert_true(ratelimit_take(t, 99u << 8, NOW0, &wait));
    assert_true(ratelimit_take(t, 99u << 8, NOW0, &wait));
    assert_false(ratelimit_take(t, 99u << 8, NOW0, &wait));
    /* a second later every bucket has drained: newcomers reuse them */
    assert_true(ratelimit_take(t, 200u << 8, NOW0 + SEC, &wait));
    assert_int_equal(atomic_load(&t->ctr.evicted), 1);
    ratelimit_destroy(r);
    config_free(cfg);
}

static void test_connection_counts(void **state)
{
    struct sl_config *cfg = cfg_with("    connection_limit: { key: client_ip, max: 2, max_keys: 16 }\n");
    bool failed;
    struct ratelimit_region *r = ratelimit_create(proxy_conf(cfg), &failed);
    struct rl_table *t = ratelimit_table(r, 0, 0);
    assert_non_null(t);
    struct rl_hold h1, h2, h3, other;
    assert_true(ratelimit_conn_acquire(t, 5, 2, &h1));
    assert_true(ratelimit_conn_acquire(t, 5, 2, &h2));
    assert_false(ratelimit_conn_acquire(t, 5, 2, &h3));
    assert_null(h3.table);
    assert_true(ratelimit_conn_acquire(t, 6, 2, &other));
    ratelimit_conn_release(&h1);
    assert_null(h1.table);
    ratelimit_conn_release(&h1); /* twice does nothing */
    assert_true(ratelimit_conn_acquire(t, 5, 2, &h3));
    assert_false(ratelimit_conn_acquire(t, 5, 2, &h1));
    /* a window full of keys with open connections refuses a newcomer */
    struct rl_hold many[RL_PROBE];
    size_t held = 0;
    for (uint64_t k = 1; k <= RL_PROBE; k++)
        if (ratelimit_conn_acquire(t, k << 8, 2, &many[held]))
            held++;
    assert_int_equal(held, RL_PROBE - 2); /* 5 and 6 sit in the window too */
    assert_false(ratelimit_conn_acquire(t, 77u << 8, 2, &h1));
    /* one closes: its slot is free for the newcomer */
    ratelimit_conn_release(&many[0]);
    assert_true(ratelimit_conn_acquire(t, 77u << 8, 2, &h1));
    ratelimit_destroy(r);
    config_free(cfg);
}

/* A reload keeps the buckets of a limit whose settings are the same and
 * the counters of every limit by listener and name. */
static void test_carry_over(void **state)
{
    struct sl_config *c1 = cfg_with(ONE_LIMIT);
    struct sl_config *c2 = cfg_with("    rate_limits:\n"
                                    "      - { name: per_ip, key: client_ip, rate: 10r/s, burst: 2, max_keys: 16 }\n"
                                    "      - { name: api, key: \"header:X-Api-Key\", rate: 5r/m }\n");
    struct sl_config *c3 = cfg_with("    rate_limits:\n"
                                    "      - { name: per_ip, key: client_ip, rate: 20r/s, burst: 2, max_keys: 16 }\n");
    bool failed;
    struct ratelimit_region *r1 = ratelimit_create(proxy_conf(c1), &failed);
    struct rl_table *t1 = ratelimit_table(r1, 0, 0);
    uint64_t h = ratelimit_hash(t1, "k", 1), wait;
    for (int i = 0; i < 3; i++)
        assert_true(ratelimit_take(t1, h, NOW0, &wait));
    atomic_store(&t1->ctr.passed, 3);
    struct ratelimit_region *r2 = ratelimit_create(proxy_conf(c2), &failed);
    ratelimit_carry_over(r2, proxy_conf(c2), r1, proxy_conf(c1));
    struct rl_table *t2 = ratelimit_table(r2, 0, 0);
    assert_int_equal(atomic_load(&t2->ctr.passed), 3);
    assert_false(ratelimit_take(t2, ratelimit_hash(t2, "k", 1), NOW0, &wait)); /* same bucket, still full */
    assert_int_equal(ratelimit_table(r2, 0, 1)->interval_ns, 60 * SEC / 5);
    struct ratelimit_region *r3 = ratelimit_create(proxy_conf(c3), &failed);
    ratelimit_carry_over(r3, proxy_conf(c3), r1, proxy_conf(c1));
    struct rl_table *t3 = ratelimit_table(r3, 0, 0);
    assert_int_equal(atomic_load(&t3->ctr.passed), 3);
    assert_true(ratelimit_take(t3, ratelimit_hash(t3, "k", 1), NOW0, &wait)); /* new rate: empty buckets */
    ratelimit_destroy(r1);
    ratelimit_destroy(r2);
    ratelimit_destroy(r3);
    config_free(c1);
    config_free(c2);
    config_free(c3);
}

static void test_no_limits_no_region(void **state)
{
    struct sl_config *cfg = cfg_with("");
    bool failed;
    assert_null(ratelimit_create(proxy_conf(cfg), &failed));
    assert_false(failed);
    assert_null(ratelimit_table(NULL, 0, 0));
    config_free(cfg);
}

/* Two processes (as two workers) on the same keys at once: the slot locks
 * make the counts exact. At a fixed `now` a bucket admits burst + 1, however
 * the takes interleave; connection counts taken and given back end at 0. */
static void test_two_processes_share_exactly(void **state)
{
    struct sl_config *cfg = cfg_with("    rate_limits:\n      - { name: r, rate: 1r/m, burst: 9999, max_keys: 64 }\n"
                                     "    connection_limit: { max: 1000000, max_keys: 64 }\n");
    bool failed;
    struct ratelimit_region *r = ratelimit_create(proxy_conf(cfg), &failed);
    struct rl_table *rate = ratelimit_table(r, 0, 0), *conns = ratelimit_table(r, 0, 1);
    enum { KEYS = 2, TAKES = 200000, ROUNDS = 200000 };
    /* Both start together: a flag in shared memory they wait on. */
    _Atomic int *go = mmap(NULL, sizeof *go, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(go != MAP_FAILED);
    atomic_store(go, 0);
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        assert_true(kids[k] >= 0);
        if (kids[k] == 0) {
            while (!atomic_load(go))
                ;
            uint64_t wait, admitted = 0;
            for (int i = 0; i < TAKES; i++)
                admitted += ratelimit_take(rate, (uint64_t)(i % KEYS + 1) << 20, NOW0, &wait);
            struct rl_hold h;
            for (int i = 0; i < ROUNDS; i++) {
                if (!ratelimit_conn_acquire(conns, (uint64_t)(i % KEYS + 1) << 20, 1000000, &h))
                    _exit(1);
                ratelimit_conn_release(&h);
            }
            atomic_fetch_add(&rate->ctr.passed, admitted);
            _exit(0);
        }
    }
    atomic_store(go, 1);
    for (int k = 0; k < 2; k++) {
        int st;
        assert_int_equal(waitpid(kids[k], &st, 0), kids[k]);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    munmap(go, sizeof *go);
    /* 2 * 200000 offered over 2 keys: burst + 1 = 10000 each */
    assert_int_equal(atomic_load(&rate->ctr.passed), KEYS * 10000);
    for (uint32_t i = 0; i <= conns->mask; i++)
        assert_int_equal(conns->slots[i].conns, 0);
    ratelimit_destroy(r);
    config_free(cfg);
}

/* ---- configuration ---- */

static void test_rate_syntax(void **state)
{
    uint32_t rate;
    bool pm;
    const char *why;
    assert_int_equal(ratelimit_parse_rate("10r/s", &rate, &pm, &why), 0);
    assert_int_equal(rate, 10);
    assert_false(pm);
    assert_int_equal(ratelimit_parse_rate("600r/m", &rate, &pm, &why), 0);
    assert_int_equal(rate, 600);
    assert_true(pm);
    assert_int_equal(ratelimit_parse_rate("1000000r/s", &rate, &pm, &why), 0);
    const char *bad[] = { "", "r/s", "10", "10r", "10r/", "10r/h", "10r/ss", "0r/s", "1000001r/s",
                          "99999999999999999999r/s", "-1r/s", " 10r/s", "10 r/s", "10R/S" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(ratelimit_parse_rate(bad[i], &rate, &pm, &why), -1);
}

static void test_config_values(void **state)
{
    struct sl_config *cfg = cfg_with("    rate_limits:\n"
                                     "      - name: api\n"
                                     "        key: header:X-Api-Key\n"
                                     "        rate: 600r/m\n"
                                     "        burst: 20\n"
                                     "        status: close\n"
                                     "      - { name: ip, rate: 5r/s }\n"
                                     "    connection_limit: { max: 10 }\n");
    const struct cfg_listener *l = &proxy_conf(cfg)->listeners[0];
    assert_int_equal(l->n_rate_limits, 2);
    assert_string_equal(l->rate_limits[0].name, "api");
    assert_int_equal(l->rate_limits[0].key, RL_KEY_HEADER);
    assert_string_equal(l->rate_limits[0].header, "X-Api-Key");
    assert_int_equal(l->rate_limits[0].interval_ns, SEC / 10);
    assert_int_equal(l->rate_limits[0].burst, 20);
    assert_int_equal(l->rate_limits[0].status, RL_STATUS_CLOSE);
    assert_int_equal(l->rate_limits[1].key, RL_KEY_CLIENT_IP);
    assert_int_equal(l->rate_limits[1].status, 429);
    assert_int_equal(l->rate_limits[1].burst, 0);
    assert_int_equal(l->rate_limits[1].max_keys, RL_DEFAULT_MAX_KEYS);
    assert_int_equal(l->conn_limit.max, 10);
    config_free(cfg);
}

static void test_config_errors(void **state)
{
    expect_error(MIN_POOLS MIN_LISTENERS "    rate_limits:\n      - { name: a, rate: 10r/h }\n",
                 "t.yaml:9: listeners[0].rate_limits[0].rate: expected a rate such as 10r/s or 600r/m, got \"10r/h\"");
    expect_error(MIN_POOLS MIN_LISTENERS "    rate_limits:\n      - { name: a, rate: 0r/s }\n",
                 "t.yaml:9: listeners[0].rate_limits[0].rate: the rate must be 1 to 1000000 requests, got \"0r/s\"");
    expect_error(MIN_POOLS MIN_LISTENERS "    rate_limits:\n      - { name: a }\n",
                 "t.yaml:9: listeners[0].rate_limits[0]: missing required key \"rate\"");
    expect_error(MIN_POOLS MIN_LISTENERS "    rate_limits:\n      - { name: a, rate: 1r/s, key: cookie:x }\n",
                 "t.yaml:9: listeners[0].rate_limits[0].key: expected client_ip or header:NAME, got \"cookie:x\"");
    expect_error(MIN_POOLS MIN_LISTENERS "    rate_limits:\n      - { name: a, rate: 1r/s, key: \"header:a b\" }\n",
                 "t.yaml:9: listeners[0].rate_limits[0].key: header name \"a b\" is not a valid field name");
    expect_error(MIN_POOLS MIN_LISTENERS "    rate_limits:\n      - { name: a, rate: 1r/s, status: 200 }\n",
                 "t.yaml:9: listeners[0].rate_limits[0].status: expected an HTTP status (400-599) or close, got \"200\"");
    expect_error(MIN_POOLS MIN_LISTENERS "    rate_limits:\n      - { name: a, rate: 1r/s }\n"
                                         "      - { name: a, rate: 2r/s }\n",
                 "t.yaml:10: listeners[0].rate_limits[1].name: duplicate rate limit name \"a\" (first defined on line 9)");
    expect_error(MIN_POOLS MIN_LISTENERS "    connection_limit: { key: \"header:x\", max: 1 }\n",
                 "t.yaml:8: listeners[0].connection_limit.key: expected client_ip (connections are counted per "
                 "client address), got \"header:x\"");
    expect_error(MIN_POOLS MIN_LISTENERS "    connection_limit: { key: client_ip }\n",
                 "t.yaml:8: listeners[0].connection_limit: missing required key \"max\"");
    expect_error(MIN_POOLS
                 "listeners:\n  - name: t\n    listen: 127.0.0.1:8080\n    protocol: tcp\n    pool: app\n"
                 "    rate_limits: []\n",
                 "t.yaml:9: listeners[0].rate_limits: only for http listeners (protocol is tcp)");
    expect_error(MIN_POOLS
                 "listeners:\n  - name: u\n    listen: 127.0.0.1:8080\n    protocol: udp\n    pool: app\n"
                 "    connection_limit: { max: 1 }\n",
                 "t.yaml:9: listeners[0].connection_limit: only for http and tcp listeners (protocol is udp)");
}

static void test_route_scoped_limits(void **state)
{
    struct sl_config *cfg = cfg_with("    rate_limits:\n"
                                     "      - { name: all, rate: 10r/s }\n"
                                     "      - { name: api, rate: 1r/s }\n"
                                     "    routes:\n"
                                     "      - { path_prefix: /api, pool: app, rate_limits: [api] }\n"
                                     "      - { path_prefix: /, pool: app }\n");
    const struct cfg_listener *l = &proxy_conf(cfg)->listeners[0];
    assert_false(l->rate_limits[0].route_scoped);
    assert_true(l->rate_limits[1].route_scoped);
    assert_int_equal(l->routes[0].rate_limits, 1u << 1);
    assert_int_equal(l->routes[1].rate_limits, 0);
    config_free(cfg);
    expect_error(MIN_POOLS MIN_LISTENERS "    rate_limits:\n      - { name: a, rate: 1r/s }\n"
                                         "    routes:\n      - { pool: app, rate_limits: [a, b] }\n",
                 "t.yaml:11: listeners[0].routes[0].rate_limits[1]: no rate limit named \"b\" in the listener's "
                 "rate_limits");
}

/* ---- cost of a check ---- */

static void bench_take(void **state)
{
    struct sl_config *cfg = cfg_with("    rate_limits:\n      - { name: b, rate: 1000000r/s, burst: 1000 }\n");
    bool failed;
    struct ratelimit_region *r = ratelimit_create(proxy_conf(cfg), &failed);
    struct rl_table *t = ratelimit_table(r, 0, 0);
    enum { N = 1000000, KEYS = 1024 };
    static char ips[KEYS][16];
    size_t lens[KEYS];
    for (int k = 0; k < KEYS; k++)
        lens[k] = (size_t)snprintf(ips[k], sizeof ips[k], "10.0.%d.%d", k / 256, k % 256);
    uint64_t wait, passed = 0, now = ratelimit_now_ns(), start = now;
    for (int i = 0; i < N; i++) {
        const int k = i % KEYS;
        passed += ratelimit_take(t, ratelimit_hash(t, ips[k], lens[k]), now + (uint64_t)i, &wait);
    }
    uint64_t mid = ratelimit_now_ns();
    for (int i = 0; i < N; i++)
        now += ratelimit_now_ns() & 1;
    uint64_t end = ratelimit_now_ns();
    print_message("rate limit check (hash of the key, slot lock, GCRA; %d keys): %.1f ns/request, "
                  "plus the clock read: %.1f ns (%llu of %d passed)\n",
                  KEYS, (double)(mid - start) / N, (double)(end - mid) / N, (unsigned long long)passed, N);
    assert_true(passed > 0 && now > start);
    ratelimit_destroy(r);
    config_free(cfg);
}

int main(void)
{
    if (config_register_section(&proxy_conf_section) < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gcra_burst_then_rate),
        cmocka_unit_test(test_gcra_sustained_rate),
        cmocka_unit_test(test_gcra_no_burst),
        cmocka_unit_test(test_keys_have_their_own_buckets),
        cmocka_unit_test(test_full_table_evicts_closest_to_drained),
        cmocka_unit_test(test_connection_counts),
        cmocka_unit_test(test_carry_over),
        cmocka_unit_test(test_two_processes_share_exactly),
        cmocka_unit_test(test_no_limits_no_region),
        cmocka_unit_test(test_rate_syntax),
        cmocka_unit_test(test_config_values),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_route_scoped_limits),
        cmocka_unit_test(bench_take),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
