/* Unit tests for src/l4/tables.c: the values `sluice l4` writes into the
 * forwarder's control maps (VIP keys, l4_config, reals, NAT pools, vip_meta,
 * Maglev slots, flags), built from a configuration loaded from YAML. No
 * kernel, no root, no libbpf: the map writes are in tables_maps.c. */
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

#include "core/config.h"
#include "l4/l4_conf.h"
#include "proxy/proxy_conf.h"
#include "lib/maglev.h"
#include "l4/tables.h"

static const uint8_t MAC[6] = { 0x02, 0x11, 0x22, 0x33, 0x44, 0x55 };

static struct sl_config *load(const char *yaml)
{
    struct config_errors errs = { 0 };
    struct sl_config *cfg = config_load_string("t.yaml", yaml, strlen(yaml), &errs);

    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.lines[i]);
    config_errors_free(&errs);
    assert_non_null(cfg);
    return cfg;
}

static const char services_yaml[] =
    "l4:\n"
    "  interfaces: [lb0]\n"
    "  syn_cap: 5000\n"
    "  tun_mtu: 1400\n"
    "  tun_source_prefix: 10.99.0.0/24\n"
    "  tun_source_prefix6: fd00:99::/96\n"
    "  services:\n"
    "    - vip: 10.0.0.100:80\n"                                      /* 0: DR, wrr */
    "      scheduler: wrr\n"
    "      reals: [{ address: 10.0.0.11:80, weight: 3 }, 10.0.0.12, 10.0.0.13]\n"
    "    - vip: \"[2001:db8::100]:53\"\n"                             /* 1: TUN, GUE, UDP */
    "      protocol: udp\n"
    "      mode: tun\n"
    "      encapsulation: gue\n"
    "      reals: [\"[2001:db8::11]:53\", 10.0.0.21:53]\n"
    "    - vip: 10.0.0.100:443\n"                                     /* 2: NAT, source hash */
    "      mode: nat\n"
    "      scheduler: source-hash\n"
    "      reals: [10.0.0.31:8443]\n"
    "    - vip: \"[2001:db8::100]:443\"\n"                            /* 3: FullNAT, rr */
    "      mode: fullnat\n"
    "      scheduler: rr\n"
    "      local_addresses: [\"2001:db8::10\", \"2001:db8::11\"]\n"
    "      reals: [\"[2001:db8::21]:8443\"]\n"
    "    - vip: 10.0.0.100:8080\n"                                    /* 4: TUN, IPIP */
    "      mode: tun\n"
    "      reals: [10.0.0.41:8080]\n";

static void test_addr16(void **state)
{
    (void)state;
    struct sockaddr_in a4 = { .sin_family = AF_INET };
    struct sockaddr_in6 a6 = { .sin6_family = AF_INET6 };
    struct sockaddr_storage none = { .ss_family = AF_UNIX };
    __be32 out[4];
    char buf[64];

    inet_pton(AF_INET, "192.0.2.7", &a4.sin_addr);
    l4_addr16(out, (const struct sockaddr *)&a4);
    /* v4-mapped: ::ffff:192.0.2.7 */
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 0);
    assert_int_equal(out[2], htonl(0xffff));
    assert_memory_equal(&out[3], &a4.sin_addr, 4);
    assert_string_equal(l4_addr16_string(out, buf, sizeof buf), "192.0.2.7");

    inet_pton(AF_INET6, "2001:db8::1:2", &a6.sin6_addr);
    l4_addr16(out, (const struct sockaddr *)&a6);
    assert_memory_equal(out, &a6.sin6_addr, 16);
    assert_string_equal(l4_addr16_string(out, buf, sizeof buf), "2001:db8::1:2");

    /* Neither family: all zeros, shown as "::". */
    memset(out, 0xaa, sizeof out);
    l4_addr16(out, (const struct sockaddr *)&none);
    assert_int_equal(out[0] | out[1] | out[2] | out[3], 0);
    assert_string_equal(l4_addr16_string(out, buf, sizeof buf), "::");
}

static void test_vip_keys(void **state)
{
    (void)state;
    struct sl_config *cfg = load(services_yaml);
    const struct cfg_l4_service *s = l4_conf(cfg)->services;
    struct l4_vip_key k;

    memset(&k, 0xaa, sizeof k); /* every byte, padding included, is set */
    l4_vip_key_of(&k, &s[0]);
    assert_int_equal(k.addr[2], htonl(0xffff));
    assert_int_equal(k.addr[3], inet_addr("10.0.0.100"));
    assert_int_equal(k.port, htons(80));
    assert_int_equal(k.proto, IPPROTO_TCP);
    assert_int_equal(k.pad, 0);

    l4_vip_key_of(&k, &s[1]);
    assert_int_equal(ntohl(k.addr[0]), 0x20010db8);
    assert_int_equal(ntohl(k.addr[3]), 0x100);
    assert_int_equal(k.port, htons(53));
    assert_int_equal(k.proto, IPPROTO_UDP);

    /* The ICMP entry: the VIP's address, port 0, the family's ICMP. */
    memset(&k, 0xaa, sizeof k);
    l4_icmp_key_of(&k, &s[0]);
    assert_int_equal(k.addr[3], inet_addr("10.0.0.100"));
    assert_int_equal(k.port, 0);
    assert_int_equal(k.proto, IPPROTO_ICMP);
    assert_int_equal(k.pad, 0);
    l4_icmp_key_of(&k, &s[1]);
    assert_int_equal(k.proto, IPPROTO_ICMPV6);
    assert_int_equal(k.port, 0);
    config_free(cfg);
}

static void test_config_value(void **state)
{
    (void)state;
    struct sl_config *cfg = load(services_yaml);
    struct l4_cfg c;
    uint8_t want4[4] = { 10, 99, 0, 0 }, want6[16] = { 0xfd, 0x00, 0x00, 0x99 };

    memset(&c, 0xaa, sizeof c);
    l4_config_of(&c, l4_conf(cfg), MAC, 7, 65537, 32);
    assert_memory_equal(c.src_mac, MAC, 6);
    assert_int_equal(c.tx_ifindex, 7);
    assert_int_equal(c.new_flow_cap, 5000);
    assert_int_equal(c.tun_mtu, 1400);
    assert_memory_equal(&c.tun_src4, want4, 4);
    assert_int_equal(c.tun_src4_plen, 24);
    assert_memory_equal(c.tun_src6, want6, 16);
    assert_int_equal(c.tun_src6_plen, 96);
    assert_int_equal(c.maglev_m, 65537);
    assert_int_equal(c.maglev_tables, 32);
    /* NAT and FullNAT services exist: replies are looked up. */
    assert_int_equal(c.flags, L4_CFG_F_NAT_REPLIES);
    /* The GUE port defaults to 6080, in network order. */
    assert_int_equal(c.gue_port, htons(L4_GUE_DEFAULT_PORT));
    /* Unset fields and padding are zero: the data plane's defaults. */
    assert_int_equal(c.nat_tcp_timeout, 0);
    assert_int_equal(c.nat_fin_timeout, 0);
    assert_int_equal(c.nat_udp_timeout, 0);
    assert_int_equal(c.pad[0] | c.pad[1] | c.pad3, 0);
    config_free(cfg);

    /* No NAT service, no prefixes, another GUE port: no reply lookups, and
     * the TUN sources stay zero. */
    cfg = load("l4:\n  interfaces: [lb0]\n  gue_port: 5555\n  services:\n"
               "    - { vip: 10.0.0.1:80, reals: [10.0.0.2] }\n");
    l4_config_of(&c, l4_conf(cfg), MAC, 0, 251, 16);
    assert_int_equal(c.flags, 0);
    assert_int_equal(c.tx_ifindex, 0);
    assert_int_equal(c.gue_port, htons(5555));
    assert_int_equal(c.tun_src4, 0);
    assert_int_equal(c.tun_src4_plen, 0);
    assert_int_equal(c.tun_src6_plen, 0);
    assert_int_equal(c.new_flow_cap, 100000); /* the config's default */
    config_free(cfg);
}

static void test_real_value(void **state)
{
    (void)state;
    struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_port = htons(8443) };
    struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_port = htons(53) };
    struct l4_real r;
    const uint8_t zero[6] = { 0 };

    inet_pton(AF_INET, "10.0.0.31", &a4.sin_addr);
    inet_pton(AF_INET6, "2001:db8::21", &a6.sin6_addr);

    memset(&r, 0xaa, sizeof r);
    l4_real_of(&r, (const struct sockaddr *)&a4, MAC, true, false, 3);
    assert_int_equal(r.addr[3], inet_addr("10.0.0.31"));
    assert_int_equal(r.addr[2], htonl(0xffff));
    assert_memory_equal(r.mac, MAC, 6);
    assert_int_equal(r.flags, L4_REAL_F_ACTIVE);
    assert_int_equal(r.port, 0); /* DR/TUN: the VIP's port */
    assert_int_equal(r.owner, 3);

    /* NAT: the real's port; inactive; no MAC yet. */
    l4_real_of(&r, (const struct sockaddr *)&a4, NULL, false, true, 0);
    assert_int_equal(r.port, htons(8443));
    assert_int_equal(r.flags, 0);
    assert_memory_equal(r.mac, zero, 6);
    assert_int_equal(r.owner, 0);

    l4_real_of(&r, (const struct sockaddr *)&a6, MAC, true, true, 1);
    assert_memory_equal(r.addr, &a6.sin6_addr, 16);
    assert_int_equal(r.flags, L4_REAL_F_ACTIVE | L4_REAL_F_V6);
    assert_int_equal(r.port, htons(53));
}

static void test_nat_pool_value(void **state)
{
    (void)state;
    struct sl_config *cfg = load(services_yaml);
    const struct cfg_l4_service *s = l4_conf(cfg)->services;
    struct l4_nat_pool p;
    char err[160] = "";
    uint8_t want[16] = { 0x20, 0x01, 0x0d, 0xb8 };

    memset(&p, 0xaa, sizeof p);
    assert_int_equal(l4_nat_pool_of(&p, &s[3], err, sizeof err), 0);
    assert_int_equal(p.naddrs, 2);
    want[15] = 0x10;
    assert_memory_equal(p.addr[0], want, 16);
    want[15] = 0x11;
    assert_memory_equal(p.addr[1], want, 16);
    for (int i = 2; i < L4_POOL_ADDRS; i++)
        assert_int_equal(p.addr[i][0] | p.addr[i][1] | p.addr[i][2] | p.addr[i][3], 0);
    /* The data plane's default port range. */
    assert_int_equal(p.port_min, 0);
    assert_int_equal(p.port_max, 0);

    /* Other modes: an empty pool, so a stale one is not used. */
    memset(&p, 0xaa, sizeof p);
    assert_int_equal(l4_nat_pool_of(&p, &s[2], err, sizeof err), 0);
    assert_int_equal(p.naddrs, 0);
    assert_int_equal(p.addr[0][0], 0);
    config_free(cfg);

    /* More local addresses than a pool holds: refused, with the reason. */
    cfg = load("l4:\n  interfaces: [lb0]\n  services:\n"
               "    - vip: 10.0.0.1:80\n      mode: fullnat\n"
               "      local_addresses: [10.9.0.1, 10.9.0.2, 10.9.0.3, 10.9.0.4, 10.9.0.5, 10.9.0.6, 10.9.0.7,"
               " 10.9.0.8, 10.9.0.9]\n"
               "      reals: [10.0.0.2]\n");
    assert_int_equal(l4_nat_pool_of(&p, &l4_conf(cfg)->services[0], err, sizeof err), -1);
    assert_string_equal(err, "service 10.0.0.1:80: 9 local addresses, the forwarder takes at most 8");
    config_free(cfg);
}

static void test_vip_meta_value(void **state)
{
    (void)state;
    struct l4_vip_meta m;

    memset(&m, 0xaa, sizeof m);
    l4_vip_meta_of(&m, 5, 11, L4_FWD_FULLNAT, L4_VIP_F_RR);
    assert_int_equal(m.svc, 5);
    assert_int_equal(m.table, 11);
    assert_int_equal(m.mode, L4_MODE_FULLNAT);
    assert_int_equal(m.flags, L4_VIP_F_RR);
    assert_int_equal(m.pad, 0);
    assert_int_equal(m.reserved, 0);
    /* The config's modes are the data plane's, in the same order. */
    l4_vip_meta_of(&m, 0, 0, L4_FWD_DR, 0);
    assert_int_equal(m.mode, L4_MODE_DR);
    l4_vip_meta_of(&m, 0, 0, L4_FWD_TUN, 0);
    assert_int_equal(m.mode, L4_MODE_TUN);
    l4_vip_meta_of(&m, 0, 0, L4_FWD_NAT, 0);
    assert_int_equal(m.mode, L4_MODE_NAT);
}

static void test_flags(void **state)
{
    (void)state;
    struct sl_config *cfg = load(services_yaml);
    const struct cfg_l4_service *s = l4_conf(cfg)->services;

    assert_int_equal(l4_scheduler_flags(L4_SCHED_MAGLEV), 0);
    assert_int_equal(l4_scheduler_flags(L4_SCHED_SOURCE_HASH), L4_VIP_F_SRC_HASH);
    assert_int_equal(l4_scheduler_flags(L4_SCHED_WRR), L4_VIP_F_RR);
    assert_int_equal(l4_scheduler_flags(L4_SCHED_RR), L4_VIP_F_RR);

    assert_int_equal(l4_service_flags(&s[0]), L4_VIP_F_RR);              /* DR, wrr */
    assert_int_equal(l4_service_flags(&s[1]), L4_VIP_F_GUE);             /* TUN, GUE */
    assert_int_equal(l4_service_flags(&s[2]), L4_VIP_F_SRC_HASH);        /* NAT, source hash */
    assert_int_equal(l4_service_flags(&s[3]), L4_VIP_F_RR);              /* FullNAT, rr */
    assert_int_equal(l4_service_flags(&s[4]), 0);                        /* TUN, IPIP */
    config_free(cfg);
}

/* The slots are the weighted Maglev table of the reals' addresses, with
 * each position replaced by the real's index; weight 0 takes a real out,
 * all weights 0 leave every slot empty. */
static void test_maglev_slots(void **state)
{
    (void)state;
    enum { M = 251 };
    struct sl_config *cfg = load(services_yaml);
    const struct cfg_l4_service *s = &l4_conf(cfg)->services[0];
    const uint32_t indexes[3] = { 7, 8, 9 }, weights[3] = { 3, 1, 1 };
    const char *keys[3] = { s->reals[0].addr.text, s->reals[1].addr.text, s->reals[2].addr.text };
    uint32_t w[3], count[10] = { 0 };
    __u32 vals[M];
    int32_t table[M];
    char err[160] = "";

    assert_int_equal(maglev_build(table, M, keys, weights, 3, l4_conf(cfg)->seed), 0);
    assert_int_equal(l4_maglev_slots(vals, M, s, weights, indexes, l4_conf(cfg)->seed, err, sizeof err), 0);
    for (uint32_t i = 0; i < M; i++) {
        assert_int_equal(vals[i], indexes[table[i]]);
        count[vals[i]]++;
    }
    /* Weight 3:1:1 over 251 slots. */
    assert_true(count[7] > count[8] && count[7] > count[9]);
    assert_int_equal(count[7] + count[8] + count[9], M);

    memcpy(w, weights, sizeof w);
    w[1] = 0;
    assert_int_equal(l4_maglev_slots(vals, M, s, w, indexes, l4_conf(cfg)->seed, err, sizeof err), 0);
    for (uint32_t i = 0; i < M; i++)
        assert_true(vals[i] == 7 || vals[i] == 9);

    memset(w, 0, sizeof w);
    assert_int_equal(l4_maglev_slots(vals, M, s, w, indexes, l4_conf(cfg)->seed, err, sizeof err), 0);
    for (uint32_t i = 0; i < M; i++)
        assert_int_equal(vals[i], 0);

    /* Another seed: another table (the seed is every node's shared secret). */
    assert_int_equal(l4_maglev_slots(vals, M, s, weights, indexes, l4_conf(cfg)->seed + 1, err, sizeof err), 0);
    {
        uint32_t differ = 0;
        for (uint32_t i = 0; i < M; i++)
            differ += vals[i] != indexes[table[i]];
        assert_true(differ > 0);
    }
    config_free(cfg);
}

static void test_vip_key_kept(void **state)
{
    (void)state;
    struct sl_config *cfg = load(services_yaml);
    struct l4_vip_key keep[2], other;

    l4_vip_key_of(&keep[0], &l4_conf(cfg)->services[0]);
    l4_icmp_key_of(&keep[1], &l4_conf(cfg)->services[0]);
    assert_true(l4_vip_key_kept(keep, 2, &keep[0]));
    assert_true(l4_vip_key_kept(keep, 2, &keep[1]));
    l4_vip_key_of(&other, &l4_conf(cfg)->services[4]); /* same address, port 8080 */
    assert_false(l4_vip_key_kept(keep, 2, &other));
    assert_false(l4_vip_key_kept(keep, 0, &keep[0]));
    config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr16),
        cmocka_unit_test(test_vip_keys),
        cmocka_unit_test(test_config_value),
        cmocka_unit_test(test_real_value),
        cmocka_unit_test(test_nat_pool_value),
        cmocka_unit_test(test_vip_meta_value),
        cmocka_unit_test(test_flags),
        cmocka_unit_test(test_maglev_slots),
        cmocka_unit_test(test_vip_key_kept),
    };
    config_register_section(&proxy_conf_section);
    config_register_section(&l4_conf_section);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
