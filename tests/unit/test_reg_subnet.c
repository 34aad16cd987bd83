/* Unit tests for the client subnet table (src/registry/reg_subnet.c):
 * longest-prefix match over nested IPv4 and IPv6 prefixes, the RFC 7871
 * scope, IPv4-mapped addresses, errors, and a comparison with a naive
 * longest-prefix search over random prefixes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/hash.h"
#include "registry/reg_subnet.h"

static struct reg_loc L(uint32_t dc, uint32_t region)
{
    return (struct reg_loc){.dc = dc, .region = region};
}

static void add(struct reg_subnets *t, const char *cidr, struct reg_loc loc)
{
    char err[200] = "";
    if (reg_subnets_add(t, cidr, loc, err, sizeof err) < 0)
        fail_msg("add %s: %s", cidr, err);
}

static void build(struct reg_subnets *t)
{
    char err[200] = "";
    if (reg_subnets_build(t, err, sizeof err) < 0)
        fail_msg("build: %s", err);
}

/* Look up a textual address; returns the dc (0 when not found) and the scope. */
static uint32_t where(const struct reg_subnets *t, const char *ip, uint8_t *scope)
{
    uint8_t b[16];
    struct reg_loc loc;
    bool found;
    if (inet_pton(AF_INET, ip, b) == 1)
        found = reg_subnets_lookup4(t, b, &loc, scope);
    else {
        assert_int_equal(inet_pton(AF_INET6, ip, b), 1);
        found = reg_subnets_lookup6(t, b, &loc, scope);
    }
    if (!found)
        assert_int_equal(loc.dc, 0);
    return found ? loc.dc : 0;
}

static void expect(const struct reg_subnets *t, const char *ip, uint32_t dc, uint8_t scope)
{
    uint8_t got_scope = 255;
    uint32_t got = where(t, ip, &got_scope);
    if (got != dc || got_scope != scope)
        fail_msg("%s: dc %u scope %u, expected dc %u scope %u", ip, got, got_scope, dc, scope);
}

static void test_v4_longest_prefix(void **state)
{
    (void)state;
    struct reg_subnets *t = reg_subnets_new();
    assert_non_null(t);
    add(t, "10.1.2.128/25", L(4, 1));
    add(t, "10.0.0.0/8", L(1, 1));
    add(t, "10.1.2.0/24", L(3, 1));
    add(t, "10.1.0.0/16", L(2, 1));
    add(t, "192.168.7.7", L(5, 2));
    build(t);
    assert_int_equal(reg_subnets_count(t), 5);
    expect(t, "10.1.2.5", 3, 25);     /* the /24, minus its /25 */
    expect(t, "10.1.2.200", 4, 25);
    expect(t, "10.1.3.1", 2, 24);     /* the /16, minus the /24 next door */
    expect(t, "10.1.255.255", 2, 17);
    expect(t, "10.200.0.1", 1, 9);    /* the /8, minus the /16 at 10.1 */
    expect(t, "10.0.0.0", 1, 16);
    expect(t, "192.168.7.7", 5, 32);
    expect(t, "11.0.0.1", 0, 8);      /* nothing: 11.0.0.0/8 is uncovered */
    expect(t, "0.0.0.1", 0, 5);       /* 0.0.0.0/5 holds no prefix */
    expect(t, "192.168.7.6", 0, 32);
    reg_subnets_free(t);
}

static void test_v6_longest_prefix_and_default(void **state)
{
    (void)state;
    struct reg_subnets *t = reg_subnets_new();
    add(t, "2001:db8::/32", L(1, 1));
    add(t, "2001:db8:1::/48", L(2, 1));
    add(t, "::/0", L(9, 9));
    add(t, "0.0.0.0/0", L(8, 8));
    build(t);
    expect(t, "2001:db8:1::5", 2, 48);
    expect(t, "2001:db8:2::5", 1, 47);
    expect(t, "2001:db8:ffff::1", 1, 33);
    expect(t, "2001:db9::1", 9, 32);
    expect(t, "fe80::1", 9, 1);
    expect(t, "::1", 9, 3);
    /* IPv4, and IPv4-mapped IPv6 looked up as IPv4. */
    expect(t, "1.2.3.4", 8, 0);
    expect(t, "::ffff:1.2.3.4", 8, 0);
    reg_subnets_free(t);
}

static void test_mapped_and_sockaddr(void **state)
{
    (void)state;
    struct reg_subnets *t = reg_subnets_new();
    add(t, "10.1.0.0/16", L(2, 1));
    add(t, "fd00::/8", L(3, 1));
    build(t);
    expect(t, "::ffff:10.1.9.9", 2, 16);
    struct sockaddr_in in = {.sin_family = AF_INET};
    inet_pton(AF_INET, "10.1.2.3", &in.sin_addr);
    struct reg_loc loc;
    uint8_t scope;
    assert_true(reg_subnets_lookup_sa(t, (struct sockaddr *)&in, &loc, &scope));
    assert_int_equal(loc.dc, 2);
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "fd12::1", &in6.sin6_addr);
    assert_true(reg_subnets_lookup_sa(t, (struct sockaddr *)&in6, &loc, NULL));
    assert_int_equal(loc.dc, 3);
    struct sockaddr un = {.sa_family = AF_UNIX};
    assert_false(reg_subnets_lookup_sa(t, &un, &loc, &scope));
    assert_int_equal(scope, 0);
    reg_subnets_free(t);
}

static void expect_add_error(const char *cidr, const char *want)
{
    struct reg_subnets *t = reg_subnets_new();
    char err[200] = "";
    assert_int_equal(reg_subnets_add(t, cidr, L(1, 1), err, sizeof err), -1);
    if (!strstr(err, want))
        fail_msg("%s: error \"%s\" lacks \"%s\"", cidr, err, want);
    reg_subnets_free(t);
}

static void test_errors(void **state)
{
    (void)state;
    expect_add_error("10.1.2.3/16", "did you mean 10.1.0.0/16?");
    expect_add_error("2001:db8::1/32", "did you mean 2001:db8::/32?");
    expect_add_error("10.0.0.0/33", "from 0 to 32");
    expect_add_error("2001:db8::/129", "from 0 to 128");
    expect_add_error("10.0.0.0/", "prefix length");
    expect_add_error("10.0.0.0/-1", "prefix length");
    expect_add_error("10.0.0.0/8x", "prefix length");
    expect_add_error("10.0.0/8", "not an IPv4 or IPv6 address");
    expect_add_error("", "expected ADDRESS/LENGTH");
    expect_add_error("/8", "expected ADDRESS/LENGTH");
    expect_add_error("host.example/8", "not an IPv4 or IPv6 address");

    struct reg_subnets *t = reg_subnets_new();
    add(t, "10.0.0.0/8", L(1, 1));
    build(t);
    add(t, "10.0.0.0/8", L(2, 1));
    char err[200] = "";
    assert_int_equal(reg_subnets_build(t, err, sizeof err), -1);
    assert_non_null(strstr(err, "IPv4 subnet 10.0.0.0/8: given twice"));
    expect(t, "10.1.1.1", 1, 8); /* the earlier build is still in use */
    reg_subnets_free(t);
}

/* ---- random prefixes against a naive search ---------------------------- */

struct naive {
    uint32_t addr, mask;
    uint8_t len;
    uint32_t dc;
};

static uint64_t rng = 99;
static uint64_t next(void)
{
    rng += 0x9e3779b97f4a7c15ULL;
    return sl_mix64(rng);
}

static uint32_t naive_lookup(const struct naive *p, int n, uint32_t a)
{
    int best = -1;
    for (int i = 0; i < n; i++)
        if ((a & p[i].mask) == p[i].addr && (best < 0 || p[i].len > p[best].len))
            best = i;
    return best < 0 ? 0 : p[best].dc;
}

static void test_random_against_naive(void **state)
{
    (void)state;
    enum { N = 600, LOOKUPS = 50000 };
    static struct naive p[N];
    struct reg_subnets *t = reg_subnets_new();
    int n = 0;
    while (n < N) {
        /* Clustered under 10.0.0.0/8 so prefixes nest often. */
        uint8_t len = (uint8_t)(8 + next() % 25);
        uint32_t mask = len ? ~0u << (32 - len) : 0;
        uint32_t addr = (0x0a000000u | (uint32_t)(next() & 0x00ffffffu)) & mask;
        bool dup = false;
        for (int i = 0; i < n; i++)
            dup |= p[i].addr == addr && p[i].len == len;
        if (dup)
            continue;
        p[n] = (struct naive){.addr = addr, .mask = mask, .len = len, .dc = (uint32_t)(n % 7) + 1};
        char cidr[32];
        snprintf(cidr, sizeof cidr, "%u.%u.%u.%u/%u", addr >> 24, (addr >> 16) & 255, (addr >> 8) & 255, addr & 255,
                 len);
        add(t, cidr, L(p[n].dc, 1));
        n++;
    }
    build(t);
    for (int k = 0; k < LOOKUPS; k++) {
        /* Half near prefix boundaries, half anywhere in 10/8. */
        uint32_t a = k % 2 ? p[next() % N].addr + (uint32_t)(next() % 3) - 1
                           : 0x0a000000u | (uint32_t)(next() & 0x00ffffffu);
        uint8_t b[4] = {(uint8_t)(a >> 24), (uint8_t)(a >> 16), (uint8_t)(a >> 8), (uint8_t)a};
        struct reg_loc loc;
        uint8_t scope;
        reg_subnets_lookup4(t, b, &loc, &scope);
        uint32_t want = naive_lookup(p, N, a);
        if (loc.dc != want)
            fail_msg("%u.%u.%u.%u: dc %u, naive %u", b[0], b[1], b[2], b[3], loc.dc, want);
        /* The scope's block answers the same at both ends. */
        uint32_t smask = scope ? ~0u << (32 - scope) : 0;
        uint32_t first = a & smask, last = first | ~smask;
        assert_int_equal(naive_lookup(p, N, first), want);
        assert_int_equal(naive_lookup(p, N, last), want);
        /* And one bit shorter would not (some address in it differs):
         * checked on a sample, where the block is small enough to scan. */
        if (k % 100 == 1 && scope > 26) {
            uint32_t pmask = ~0u << (32 - (scope - 1));
            uint32_t pfirst = a & pmask, plast = pfirst | ~pmask;
            bool differs = false;
            for (uint64_t x = pfirst; x <= plast && !differs; x++)
                differs = naive_lookup(p, N, (uint32_t)x) != want;
            assert_true(differs);
        }
    }
    reg_subnets_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v4_longest_prefix),
        cmocka_unit_test(test_v6_longest_prefix_and_default),
        cmocka_unit_test(test_mapped_and_sockaddr),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_random_against_naive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
