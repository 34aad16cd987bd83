/* Unit tests for sluice l4's config section (src/l4/l4_conf.c): the l4:
 * key of a file, and the services and reals the admin API is sent, read
 * by the same parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/config.h"
#include "l4/l4_conf.h"
#include "proxy/proxy_conf.h"

#include "config_expect.h"

/* ------------------------------------------------------------------------
 * l4: (sluice l4)
 */

static const char l4_yaml[] =
    "l4:\n"                                             /* 1 */
    "  interfaces: [veth-lb0, eth1]\n"                  /* 2 */
    "  xdp_mode: generic\n"                             /* 3 */
    "  seed: 0x12345678\n"                              /* 4 */
    "  syn_cap: 5000\n"                                 /* 5 */
    "  tun_source_prefix: 10.99.0.0/24\n"               /* 6 */
    "  tun_source_prefix6: fd00:99::/96\n"              /* 7 */
    "  services:\n"                                     /* 8 */
    "    - vip: 10.0.0.100:80\n"                        /* 9 */
    "      protocol: tcp\n"                             /* 10 */
    "      mode: dr\n"                                  /* 11 */
    "      scheduler: wrr\n"                            /* 12 */
    "      health_check: { type: tcp, interval: 1s, rise: 2, fall: 2 }\n" /* 13 */
    "      reals:\n"                                    /* 14 */
    "        - { address: 10.0.0.11:80, weight: 3 }\n"  /* 15 */
    "        - 10.0.0.12\n"                             /* 16 */
    "    - vip: \"[2001:db8::100]:53\"\n"               /* 17 */
    "      protocol: udp\n"                             /* 18 */
    "      mode: tun\n"                                 /* 19 */
    "      reals: [\"[2001:db8::11]:53\", 10.0.0.21:53]\n" /* 20 */
    "    - vip: \"[2001:db8::100]:443\"\n"              /* 21 */
    "      mode: fullnat\n"                             /* 22 */
    "      scheduler: source-hash\n"                    /* 23 */
    "      local_addresses: [\"2001:db8::10\", \"2001:db8::11\"]\n" /* 24 */
    "      reals: [\"[2001:db8::21]:8443\"]\n";         /* 25 */

static void test_l4_full(void **state)
{
    (void)state;
    struct sl_config *cfg = load_ok(l4_yaml);
    const struct cfg_l4 *l4 = l4_conf(cfg);
    assert_true(l4->present);
    assert_int_equal(l4->n_interfaces, 2);
    assert_string_equal(l4->interfaces[1], "eth1");
    assert_true(l4->xdp_generic);
    assert_int_equal(l4->seed, 0x12345678u);
    assert_int_equal(l4->syn_cap, 5000);
    assert_int_equal(l4->tun_src4.family, AF_INET);
    assert_int_equal(l4->tun_src4.plen, 24);
    assert_int_equal(l4->tun_src4.addr[1], 99);
    assert_int_equal(l4->tun_src6.family, AF_INET6);
    assert_int_equal(l4->tun_src6.plen, 96);
    assert_int_equal(l4->n_services, 3);

    const struct cfg_l4_service *s = &l4->services[0];
    assert_string_equal(s->vip.text, "10.0.0.100:80");
    assert_int_equal(s->proto, L4_PROTO_TCP);
    assert_int_equal(s->mode, L4_FWD_DR);
    assert_int_equal(s->scheduler, L4_SCHED_WRR);
    assert_int_equal(s->health.type, HEALTH_TCP);
    assert_int_equal(s->health.interval_ms, 1000);
    assert_int_equal(s->health.fall, 2);
    assert_int_equal(s->n_reals, 2);
    assert_int_equal(s->reals[0].weight, 3);
    assert_int_equal(s->reals[0].line, 15);
    /* A bare IP takes the VIP's port. */
    assert_string_equal(s->reals[1].addr.text, "10.0.0.12:80");
    assert_int_equal(s->reals[1].weight, 1);

    s = &l4->services[1];
    assert_string_equal(s->vip.text, "[2001:db8::100]:53");
    assert_int_equal(s->proto, L4_PROTO_UDP);
    assert_int_equal(s->mode, L4_FWD_TUN);
    assert_int_equal(s->scheduler, L4_SCHED_MAGLEV);
    assert_int_equal(s->health.type, HEALTH_NONE);
    /* TUN may cross families (6in4, 4in6). */
    assert_string_equal(s->reals[1].addr.text, "10.0.0.21:53");

    s = &l4->services[2];
    assert_int_equal(s->mode, L4_FWD_FULLNAT);
    assert_int_equal(s->scheduler, L4_SCHED_SOURCE_HASH);
    assert_int_equal(s->n_local_addrs, 2);
    assert_string_equal(s->local_addrs[1].text, "2001:db8::11");
    assert_string_equal(s->reals[0].addr.text, "[2001:db8::21]:8443");
    assert_string_equal(l4_fwd_mode_name(s->mode), "fullnat");
    assert_string_equal(l4_scheduler_name(s->scheduler), "source-hash");
    config_free(cfg);
}

static void test_l4_defaults(void **state)
{
    (void)state;
    struct sl_config *cfg = load_ok("l4:\n"
                                    "  interfaces: [lb0]\n"
                                    "  services:\n"
                                    "    - vip: 10.0.0.1:80\n"
                                    "      reals: [10.0.0.2:80]\n");
    assert_true(l4_conf(cfg)->present);
    assert_false(l4_conf(cfg)->xdp_generic);
    assert_int_equal(l4_conf(cfg)->seed, 0x5eed1a4bu);
    assert_int_equal(l4_conf(cfg)->syn_cap, 100000);
    assert_int_equal(l4_conf(cfg)->tun_src4.family, 0);
    assert_int_equal(l4_conf(cfg)->services[0].proto, L4_PROTO_TCP);
    assert_int_equal(l4_conf(cfg)->services[0].mode, L4_FWD_DR);
    assert_int_equal(l4_conf(cfg)->services[0].scheduler, L4_SCHED_MAGLEV);
    assert_int_equal(l4_conf(cfg)->services[0].health.type, HEALTH_NONE);
    assert_int_equal(l4_conf(cfg)->max_services, 16);
    assert_int_equal(l4_conf(cfg)->tun_mtu, 0);
    assert_null(l4_conf(cfg)->tx_interface);
    config_free(cfg);

    cfg = load_ok("l4:\n  interfaces: [lb0, lb1]\n  tx_interface: lb1\n  tun_mtu: 1500\n  max_services: 2\n"
                  "  services:\n    - { vip: 10.0.0.1:80, reals: [10.0.0.2] }\n    - { vip: 10.0.0.1:81, reals: [10.0.0.2] }\n"
                  "    - { vip: 10.0.0.1:82, reals: [10.0.0.2] }\n");
    assert_string_equal(l4_conf(cfg)->tx_interface, "lb1");
    assert_int_equal(l4_conf(cfg)->tun_mtu, 1500);
    assert_int_equal(l4_conf(cfg)->max_services, 3); /* raised to the file's count */
    config_free(cfg);

    /* Without an l4: section nothing changes for the proxy. */
    cfg = load_ok(MIN_POOLS MIN_LISTENERS);
    assert_false(l4_conf(cfg)->present);
    assert_int_equal(l4_conf(cfg)->n_services, 0);
    config_free(cfg);
}

#define L4_HEAD "l4:\n  interfaces: [lb0]\n  services:\n" /* lines 1-3 */

static void test_l4_errors(void **state)
{
    (void)state;
    expect_error("l4:\n  services: []\n", "t.yaml:2: l4: missing required key \"interfaces\"");
    expect_error("l4:\n  interfaces: [lb0]\n  tx_interface: lb1\n",
                 "t.yaml:3: l4.tx_interface: \"lb1\" must be one of l4.interfaces (the forwarder must be attached to "
                 "the interface it sends on)");
    expect_error("l4:\n  interfaces: [lb0]\n  tun_mtu: 576\n",
                 "t.yaml:3: l4.tun_mtu: must be 0 (no check) or 1280..65535, got 576");
    expect_error("l4:\n  interfaces: [lb0]\n  max_services: 0\n",
                 "t.yaml:3: l4.max_services: expected an integer from 1 to 1024, got \"0\"");
    expect_error("l4:\n  interfaces: []\n", "t.yaml:2: l4.interfaces: at least one interface is required");
    expect_error("l4:\n  interfaces: [a/b]\n",
                 "t.yaml:2: l4.interfaces[0]: expected an interface name (1 to 15 characters, no \"/\" or spaces), "
                 "got \"a/b\"");
    expect_error("l4:\n  interfaces: [lb0, lb0]\n", "t.yaml:2: l4.interfaces[1]: duplicate interface \"lb0\"");
    expect_error("l4:\n  interfaces: [lb0]\n  xdp_mode: nativ\n",
                 "t.yaml:3: l4.xdp_mode: expected native or generic, got \"nativ\" (did you mean \"native\"?)");
    expect_error("l4:\n  interfaces: [lb0]\n  seed: 0x100000000\n",
                 "t.yaml:3: l4.seed: expected a 32-bit number like 0x5eed1a4b, got \"0x100000000\"");
    expect_error("l4:\n  interfaces: [lb0]\n  syn_cap: -1\n",
                 "t.yaml:3: l4.syn_cap: expected an integer from 0 to 100000000, got \"-1\"");
    expect_error("l4:\n  interfaces: [lb0]\n  tun_source_prefix: 10.99.0.0/33\n",
                 "t.yaml:3: l4.tun_source_prefix: expected an IPv4 prefix like 10.99.0.0/24 (length 0 to 32), got "
                 "\"10.99.0.0/33\"");
    expect_error("l4:\n  interfaces: [lb0]\n  tun_source_prefix6: 10.0.0.0/8\n",
                 "t.yaml:3: l4.tun_source_prefix6: expected an IPv6 prefix like fd00:99::/96, got \"10.0.0.0/8\"");
    expect_error("l4:\n  interfaces: [lb0]\n  bogus: 1\n", "t.yaml:3: l4.bogus: unknown key");
    expect_error(L4_HEAD "    - vip: 10.0.0.1\n      reals: [10.0.0.2:80]\n",
                 "t.yaml:4: l4.services[0].vip: expected HOST:PORT");
    expect_error(L4_HEAD "    - vip: 10.0.0.1:0\n      reals: [10.0.0.2:80]\n",
                 "t.yaml:4: l4.services[0].vip: port must be a number from 1 to 65535 for a VIP");
    expect_error(L4_HEAD "    - vip: 10.0.0.1:80\n      protocol: sctp\n      reals: [10.0.0.2:80]\n",
                 "t.yaml:5: l4.services[0].protocol: expected tcp or udp, got \"sctp\"");
    expect_error(L4_HEAD "    - vip: 10.0.0.1:80\n      mode: snat\n      reals: [10.0.0.2:80]\n",
                 "t.yaml:5: l4.services[0].mode: expected dr, tun, nat or fullnat, got \"snat\" (did you mean "
                 "\"nat\"?)");
    expect_error(L4_HEAD "    - vip: 10.0.0.1:80\n      scheduler: lc\n      reals: [10.0.0.2:80]\n",
                 "t.yaml:5: l4.services[0].scheduler: expected maglev, source-hash, wrr or rr, got \"lc\"");
    expect_error(L4_HEAD "    - vip: 10.0.0.1:80\n",
                 "t.yaml:4: l4.services[0]: missing required key \"reals\" (or \"discovery\", to take them from "
                 "a registry service)");
    expect_error(L4_HEAD "    - vip: 10.0.0.1:80\n      reals: []\n",
                 "t.yaml:5: l4.services[0].reals: at least one real server is required");
    expect_error(L4_HEAD "    - vip: 10.0.0.1:80\n      reals: [{address: 10.0.0.2:80, weight: x}]\n",
                 "t.yaml:5: l4.services[0].reals[0].weight: expected an integer from 0 to 1000000, got \"x\"");
    expect_error(L4_HEAD "    - vip: 10.0.0.1:80\n      reals: [foo]\n",
                 "t.yaml:5: l4.services[0].reals[0].address: expected HOST:PORT");
    expect_error(L4_HEAD "    - vip: 10.0.0.1:80\n      reals: [10.0.0.2:8080]\n",
                 "t.yaml:5: l4.services[0].reals[0].address: mode dr cannot change the port: use the VIP's port 80 "
                 "or none");
    expect_error(L4_HEAD "    - vip: 10.0.0.1:80\n      reals: [\"[2001:db8::2]:80\"]\n",
                 "t.yaml:5: l4.services[0].reals[0].address: mode dr needs a real of the VIP's address family "
                 "(IPv4)");
    expect_error(L4_HEAD "    - vip: \"[2001:db8::1]:80\"\n      mode: nat\n      reals: [10.0.0.2:80]\n",
                 "t.yaml:6: l4.services[0].reals[0].address: mode nat needs a real of the VIP's address family "
                 "(IPv6)");
    expect_error(L4_HEAD "    - vip: 10.0.0.1:80\n      reals: [10.0.0.2, 10.0.0.2:80]\n",
                 "t.yaml:5: l4.services[0].reals[1]: duplicate real 10.0.0.2:80 (first listed on line 5)");
    expect_error(L4_HEAD "    - vip: 10.0.0.1:80\n      mode: fullnat\n      reals: [10.0.0.2:80]\n",
                 "t.yaml:5: l4.services[0]: mode fullnat needs local_addresses (the SNAT pool)");
    expect_error(L4_HEAD "    - vip: 10.0.0.1:80\n      local_addresses: [10.0.0.9]\n      reals: [10.0.0.2:80]\n",
                 "t.yaml:5: l4.services[0].local_addresses: only used with mode: fullnat (mode is dr)");
    expect_error(L4_HEAD "    - vip: 10.0.0.1:80\n      mode: fullnat\n      local_addresses: [10.0.0.9:1]\n"
                 "      reals: [10.0.0.2:80]\n",
                 "t.yaml:6: l4.services[0].local_addresses[0]: expected an IPv4 or IPv6 address without a port, "
                 "got \"10.0.0.9:1\"");
    expect_error(L4_HEAD "    - vip: \"[2001:db8::1]:80\"\n      mode: fullnat\n      local_addresses: [10.0.0.9]\n"
                 "      reals: [\"[2001:db8::2]:80\"]\n",
                 "t.yaml:6: l4.services[0].local_addresses[0]: a local address must be of the VIP's address family");
    expect_error(L4_HEAD "    - vip: 10.0.0.1:80\n      mode: tun\n      reals: [10.0.0.2]\n",
                 "t.yaml:1: l4: a tun service with IPv4 reals needs l4.tun_source_prefix");
    expect_error(L4_HEAD "    - vip: 10.0.0.1:80\n      health_check: { type: ping }\n      reals: [10.0.0.2]\n",
                 "t.yaml:5: l4.services[0].health_check.type: expected none, tcp or http, got \"ping\"");
    expect_error(L4_HEAD "    - vip: 10.0.0.1:80\n      reals: [10.0.0.2]\n"
                 "    - vip: 10.0.0.1:80\n      reals: [10.0.0.3]\n",
                 "t.yaml:6: l4.services[1]: duplicate service 10.0.0.1:80/tcp (first listed on line 4)");
    /* Same VIP and port over UDP is another service. */
    struct sl_config *cfg = load_ok(L4_HEAD "    - vip: 10.0.0.1:53\n      reals: [10.0.0.2]\n"
                                            "    - vip: 10.0.0.1:53\n      protocol: udp\n      reals: [10.0.0.2]\n");
    config_free(cfg);
}

/* A service takes its reals from a registry service (discovery:) instead
 * of a reals: list; both is an error at the reals: line. */
static void test_l4_discovery(void **state)
{
    (void)state;
    struct sl_config *cfg = load_ok(L4_HEAD
                                    "    - vip: 10.0.0.1:80\n"                                     /* 4 */
                                    "      mode: nat\n"                                            /* 5 */
                                    "      discovery:\n"                                           /* 6 */
                                    "        service: web\n"                                       /* 7 */
                                    "        registries: [127.0.0.1:9950, 10.0.0.9:9950]\n"        /* 8 */
                                    "        datacenter: dc1\n"                                    /* 9 */
                                    "    - vip: 10.0.0.1:81\n"                                     /* 10 */
                                    "      reals: [10.0.0.2]\n");                                  /* 11 */
    const struct cfg_l4 *l4 = l4_conf(cfg);
    assert_int_equal(l4->n_services, 2);
    const struct cfg_l4_service *s = &l4->services[0];
    assert_true(s->discovered);
    assert_int_equal(s->n_reals, 0);
    assert_string_equal(s->discovery.service, "web");
    assert_string_equal(s->discovery.registries, "127.0.0.1:9950,10.0.0.9:9950");
    assert_string_equal(s->discovery.datacenter, "dc1");
    assert_false(l4->services[1].discovered);
    /* A copy (the API and the reload edit copies) owns its own strings. */
    struct cfg_l4_service copy;
    assert_int_equal(l4_conf_service_copy(&copy, s), 0);
    assert_true(copy.discovered);
    assert_ptr_not_equal(copy.discovery.service, s->discovery.service);
    assert_true(discovery_conf_equal(&copy.discovery, &s->discovery));
    l4_conf_service_free(&copy);
    config_free(cfg);

    expect_error(L4_HEAD "    - vip: 10.0.0.1:80\n"
                         "      reals: [10.0.0.2]\n"
                         "      discovery: { service: web, registries: [127.0.0.1:9950] }\n",
                 "t.yaml:5: l4.services[0].reals: a service takes its reals from reals: or from discovery: "
                 "(line 6), not both");
    expect_error(L4_HEAD "    - vip: 10.0.0.1:80\n      discovery: { registries: [127.0.0.1:9950] }\n",
                 "t.yaml:5: l4.services[0].discovery: missing required key \"service\"");
    /* A discovered TUN service needs the tun source prefix of its VIP's family. */
    expect_error(L4_HEAD "    - vip: 10.0.0.1:80\n      mode: tun\n"
                         "      discovery: { service: web, registries: [127.0.0.1:9950] }\n",
                 "t.yaml:1: l4: a tun service with IPv4 reals needs l4.tun_source_prefix");
}

/* ------------------------------------------------------------------------
 * Bodies of the admin API: read by the same parser, errors as "path:
 * reason" inside the body (what POST /api/l4/services answers with 400).
 */

static const char running_yaml[] =
    "l4:\n"
    "  interfaces: [lb0]\n"
    "  tun_source_prefix: 10.99.0.0/24\n"
    "  services:\n"
    "    - { vip: 10.0.0.100:80, reals: [10.0.0.11:80] }\n"
    "    - { vip: \"[2001:db8::1]:80\", mode: fullnat, local_addresses: [\"2001:db8::9\"],"
    " reals: [\"[2001:db8::11]:80\"] }\n"
    "    - { vip: 10.0.0.100:81, mode: tun, reals: [10.0.0.21] }\n";

static void expect_service_error(const struct cfg_l4 *l4, const char *body, const char *want)
{
    struct cfg_l4_service s;
    char err[512] = "";
    if (l4_conf_parse_service(l4, body, strlen(body), &s, err, sizeof err) == 0) {
        l4_conf_service_free(&s);
        fail_msg("accepted %s", body);
    }
    if (strcmp(err, want) != 0)
        fail_msg("%s:\n  got  %s\n  want %s", body, err, want);
}

static void expect_real_error(const struct cfg_l4 *l4, size_t svc, const char *body, const char *want)
{
    struct cfg_l4_real r;
    char err[512] = "";
    if (l4_conf_parse_real(l4, &l4->services[svc], body, strlen(body), &r, err, sizeof err) == 0)
        fail_msg("accepted %s", body);
    if (strcmp(err, want) != 0)
        fail_msg("%s:\n  got  %s\n  want %s", body, err, want);
}

static void test_api_service_bodies(void **state)
{
    (void)state;
    struct sl_config *cfg = load_ok(running_yaml);
    const struct cfg_l4 *l4 = l4_conf(cfg);
    struct cfg_l4_service s;
    char err[512];
    static const char ok[] = "{\"vip\":\"10.0.0.100:82\",\"scheduler\":\"rr\",\"health_check\":{\"type\":\"tcp\"},"
                             "\"reals\":[{\"address\":\"10.0.0.5\",\"weight\":7},\"10.0.0.6:82\"]}";
    assert_int_equal(l4_conf_parse_service(l4, ok, strlen(ok), &s, err, sizeof err), 0);
    assert_string_equal(s.vip.text, "10.0.0.100:82");
    assert_int_equal(s.scheduler, L4_SCHED_RR);
    assert_int_equal(s.health.type, HEALTH_TCP);
    assert_int_equal(s.n_reals, 2);
    assert_string_equal(s.reals[0].addr.text, "10.0.0.5:82");   /* the VIP's port */
    assert_int_equal(s.reals[0].weight, 7);
    l4_conf_service_free(&s);

    expect_service_error(l4, "{\"vip\":\"10.0.0.100:81\",\"mode\":\"sideways\"}",
                         "mode: expected dr, tun, nat or fullnat, got \"sideways\"");
    expect_service_error(l4, "{\"vip\":\"10.0.0.100:81\",\"reals\":[{\"address\":\"10.0.0.5\",\"weight\":\"x\"}]}",
                         "reals[0].weight: expected an integer from 0 to 1000000, got \"x\"");
    expect_service_error(l4, "{\"vip\":\"10.0.0.100:81\",\"bogus\":1}", "bogus: unknown key");
    expect_service_error(l4, "{}", "missing required key \"vip\"");
    expect_service_error(l4, "{\"vip\":\"10.0.0.100:81\",\"reals\":[\"10.0.0.5:8080\"]}",
                         "reals[0].address: mode dr cannot change the port: use the VIP's port 81 or none");
    expect_service_error(l4, "{\"vip\":\"10.0.0.100:81\",\"mode\":\"fullnat\",\"reals\":[\"10.0.0.5\"]}",
                         "mode fullnat needs local_addresses (the SNAT pool)");
    /* The running settings count: an IPv6 TUN real needs a prefix they lack. */
    expect_service_error(l4, "{\"vip\":\"10.0.0.100:83\",\"mode\":\"tun\",\"reals\":[\"[2001:db8::5]:83\"]}",
                         "a tun service with IPv6 reals needs l4.tun_source_prefix6");
    expect_service_error(l4, "{\"vip\":\"10.0.0.100:81\",\"reals\":[\"10.0.0.5\",\"10.0.0.5:81\"]}",
                         "reals[1]: duplicate real 10.0.0.5:81 (first listed on line 1)");
    expect_service_error(l4, "", "the body is empty");
    config_free(cfg);
}

static void test_api_real_bodies(void **state)
{
    (void)state;
    struct sl_config *cfg = load_ok(running_yaml);
    const struct cfg_l4 *l4 = l4_conf(cfg);
    struct cfg_l4_real r;
    char err[512];
    assert_int_equal(l4_conf_parse_real(l4, &l4->services[0], "\"10.0.0.6\"", 10, &r, err, sizeof err), 0);
    assert_string_equal(r.addr.text, "10.0.0.6:80");
    assert_int_equal(r.weight, 1);
    static const char weighted[] = "{\"address\":\"10.0.0.5\",\"weight\":9}";
    assert_int_equal(l4_conf_parse_real(l4, &l4->services[0], weighted, strlen(weighted), &r, err, sizeof err), 0);
    assert_int_equal(r.weight, 9);

    expect_real_error(l4, 0, "{\"address\":\"not-an-ip\"}", "reals[0].address: expected HOST:PORT");
    expect_real_error(l4, 0, "{\"weight\":3}", "reals[0]: missing required key \"address\"");
    expect_real_error(l4, 0, "{\"address\":\"10.0.0.5\",\"bogus\":1}", "reals[0].bogus: unknown key");
    expect_real_error(l4, 0, "\"10.0.0.6:8080\"",
                      "reals[0].address: mode dr cannot change the port: use the VIP's port 80 or none");
    expect_real_error(l4, 1, "{\"address\":\"10.0.0.5:80\"}",
                      "reals[0].address: mode fullnat needs a real of the VIP's address family (IPv6)");
    expect_real_error(l4, 2, "{\"address\":\"[2001:db8::22]:81\"}",
                      "a tun service with IPv6 reals needs l4.tun_source_prefix6");
    config_free(cfg);
}

int main(void)
{
    config_register_section(&proxy_conf_section);
    config_register_section(&l4_conf_section);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_l4_full),
        cmocka_unit_test(test_l4_defaults),
        cmocka_unit_test(test_l4_errors),
        cmocka_unit_test(test_l4_discovery),
        cmocka_unit_test(test_api_service_bodies),
        cmocka_unit_test(test_api_real_bodies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
