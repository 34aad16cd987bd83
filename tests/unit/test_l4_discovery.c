/* Unit tests for src/l4/l4_discovery_reals.c: which registry members an L4
 * service takes as reals (its mode's rules), and the merge of that list
 * into the service's current reals (what stays keeps its place, weights
 * follow, new ones are appended). Pure code: no kernel, no registry. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "l4/l4_discovery.h"

static struct l4_disc_member member(const char *ip, uint16_t port, uint32_t weight)
{
    struct l4_disc_member m = { .weight = weight };
    struct sockaddr_in *v4 = (struct sockaddr_in *)&m.addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&m.addr;
    if (inet_pton(AF_INET, ip, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        m.addrlen = sizeof *v4;
    } else {
        assert_int_equal(inet_pton(AF_INET6, ip, &v6->sin6_addr), 1);
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        m.addrlen = sizeof *v6;
    }
    return m;
}

static struct cfg_l4_service service(const char *vip, enum l4_fwd_mode mode)
{
    struct cfg_l4_service s = { .mode = mode };
    const char *why = NULL;
    assert_int_equal(addr_parse(vip, &s.vip, &why), 0);
    return s;
}

static struct cfg_l4_real real(const char *addr, uint32_t weight)
{
    struct cfg_l4_real r = { .weight = weight };
    const char *why = NULL;
    assert_int_equal(addr_parse(addr, &r.addr, &why), 0);
    return r;
}

static void test_dr_same_family_and_port(void **state)
{
    (void)state;
    struct cfg_l4 l4 = { 0 };
    struct cfg_l4_service s = service("10.0.0.100:80", L4_FWD_DR);
    struct l4_disc_member m[] = {
        member("10.0.0.11", 80, 100), member("fd00::12", 80, 100), member("10.0.0.13", 8080, 100),
        member("10.0.0.14", 80, 300), member("10.0.0.11", 80, 50),
    };
    struct cfg_l4_real out[5];
    struct l4_disc_skips sk;
    size_t n = l4_disc_reals_of(&l4, &s, m, 5, out, &sk);
    assert_int_equal(n, 2);
    assert_string_equal(out[0].addr.text, "10.0.0.11:80");
    assert_int_equal(out[0].weight, 100);
    assert_string_equal(out[1].addr.text, "10.0.0.14:80");
    assert_int_equal(out[1].weight, 300);
    assert_int_equal(out[1].line, 0);
    assert_int_equal(sk.family, 1);
    assert_int_equal(sk.port, 1);
    assert_int_equal(sk.duplicate, 1);
    assert_int_equal(sk.invalid, 0);
}

static void test_nat_takes_member_port_ipv6(void **state)
{
    (void)state;
    struct cfg_l4 l4 = { 0 };
    struct cfg_l4_service s = service("[fd00::100]:443", L4_FWD_FULLNAT);
    struct l4_disc_member m[] = { member("fd00::11", 8443, 7), member("10.0.0.12", 8443, 1),
                                  member("fd00::13", 9443, 1) };
    struct cfg_l4_real out[3];
    size_t n = l4_disc_reals_of(&l4, &s, m, 3, out, NULL);
    assert_int_equal(n, 2);
    assert_string_equal(out[0].addr.text, "[fd00::11]:8443");
    assert_int_equal(addr_port(&out[0].addr), 8443);
    assert_int_equal(out[0].addr.len, sizeof(struct sockaddr_in6));
    assert_int_equal(out[0].weight, 7);
    assert_string_equal(out[1].addr.text, "[fd00::13]:9443");
    /* The text is what addr_parse writes: the API finds the real by it. */
    struct cfg_l4_real parsed = real("[fd00::11]:8443", 7);
    assert_true(addr_equal(&parsed.addr, &out[0].addr));
    assert_string_equal(parsed.addr.text, out[0].addr.text);
}

static void test_tun_family_needs_prefix(void **state)
{
    (void)state;
    struct cfg_l4 l4 = { .tun_src4 = { .family = AF_INET, .plen = 24 } };
    struct cfg_l4_service s = service("[fd00::100]:53", L4_FWD_TUN);
    struct l4_disc_member m[] = { member("10.0.0.21", 53, 1), member("fd00::22", 53, 1), member("10.0.0.23", 54, 1) };
    struct cfg_l4_real out[3];
    struct l4_disc_skips sk;
    size_t n = l4_disc_reals_of(&l4, &s, m, 3, out, &sk);
    /* IPv4 has its prefix, IPv6 has none; TUN keeps the port. */
    assert_int_equal(n, 1);
    assert_string_equal(out[0].addr.text, "10.0.0.21:53");
    assert_int_equal(sk.family, 1);
    assert_int_equal(sk.port, 1);
    l4.tun_src6 = (struct cfg_prefix){ .family = AF_INET6, .plen = 96 };
    n = l4_disc_reals_of(&l4, &s, m, 3, out, &sk);
    assert_int_equal(n, 2);
    assert_string_equal(out[1].addr.text, "[fd00::22]:53");
}

static void test_invalid_members(void **state)
{
    (void)state;
    struct cfg_l4 l4 = { 0 };
    struct cfg_l4_service s = service("10.0.0.100:80", L4_FWD_NAT);
    struct l4_disc_member m[3] = { member("10.0.0.11", 0, 1), member("10.0.0.12", 80, 1) };
    m[2].addr.ss_family = AF_UNIX;
    m[2].addrlen = sizeof m[2].addr;
    m[1].addrlen = 4;   /* too short for a sockaddr_in */
    struct l4_disc_skips sk;
    struct cfg_l4_real out[3];
    assert_int_equal(l4_disc_reals_of(&l4, &s, m, 3, out, &sk), 0);
    assert_int_equal(sk.invalid, 3);
    assert_int_equal(l4_disc_reals_of(&l4, &s, m, 0, out, NULL), 0);
}

static void test_merge_keeps_order_and_reports(void **state)
{
    (void)state;
    struct cfg_l4_real cur[] = { real("10.0.0.11:80", 1), real("10.0.0.12:80", 1), real("10.0.0.13:80", 2) };
    cur[0].line = 15;   /* a real that stays is kept as it is, but for its weight */
    struct cfg_l4_real want[] = { real("10.0.0.14:80", 5), real("10.0.0.13:80", 3), real("10.0.0.11:80", 1),
                                  real("10.0.0.15:80", 1) };
    struct cfg_l4_real next[4];
    struct l4_disc_change ch;
    size_t n = l4_disc_merge(cur, 3, want, 4, next, &ch);
    assert_int_equal(n, 4);
    assert_string_equal(next[0].addr.text, "10.0.0.11:80");
    assert_int_equal(next[0].line, 15);
    assert_string_equal(next[1].addr.text, "10.0.0.13:80");
    assert_int_equal(next[1].weight, 3);
    assert_string_equal(next[2].addr.text, "10.0.0.14:80");
    assert_int_equal(next[2].weight, 5);
    assert_string_equal(next[3].addr.text, "10.0.0.15:80");
    assert_int_equal(ch.added, 2);
    assert_int_equal(ch.removed, 1);
    assert_int_equal(ch.reweighted, 1);
}

static void test_merge_no_change_and_empty(void **state)
{
    (void)state;
    struct cfg_l4_real cur[] = { real("10.0.0.11:80", 1), real("10.0.0.12:80", 4) };
    struct cfg_l4_real same[] = { real("10.0.0.12:80", 4), real("10.0.0.11:80", 1) };
    struct cfg_l4_real next[2];
    struct l4_disc_change ch;
    assert_int_equal(l4_disc_merge(cur, 2, same, 2, next, &ch), 2);
    assert_int_equal(ch.added + ch.removed + ch.reweighted, 0);
    assert_string_equal(next[0].addr.text, "10.0.0.11:80");
    /* Everything gone (the registry's operator emptied the service). */
    assert_int_equal(l4_disc_merge(cur, 2, NULL, 0, next, &ch), 0);
    assert_int_equal(ch.removed, 2);
    /* From nothing (the first list). */
    assert_int_equal(l4_disc_merge(NULL, 0, same, 2, next, &ch), 2);
    assert_int_equal(ch.added, 2);
    assert_string_equal(next[0].addr.text, "10.0.0.12:80");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dr_same_family_and_port),
        cmocka_unit_test(test_nat_takes_member_port_ipv6),
        cmocka_unit_test(test_tun_family_needs_prefix),
        cmocka_unit_test(test_invalid_members),
        cmocka_unit_test(test_merge_keeps_order_and_reports),
        cmocka_unit_test(test_merge_no_change_and_empty),
    };
    return cmocka_run_group_tests(tests, 0, 0);
}
