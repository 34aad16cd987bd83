/* Unit tests for the ha: section (src/ha/ha_conf.c): every key, the
 * defaults, and each error as FILE:LINE: key.path: reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "ha/ha_conf.h"

#include "config_expect.h"

static const char ha_yaml[] =
    "ha:\n"                                                              /* 1 */
    "  node: lb-a1\n"                                                    /* 2 */
    "  zone: zone-a\n"                                                   /* 3 */
    "  priority: 2\n"                                                    /* 4 */
    "  preempt: false\n"                                                 /* 5 */
    "  asn: 4200000010\n"                                                /* 6 */
    "  router_id: 10.0.0.21\n"                                           /* 7 */
    "  neighbors:\n"                                                     /* 8 */
    "    - address: 10.0.0.1\n"                                          /* 9 */
    "      asn: 65000\n"                                                 /* 10 */
    "      password: \"s3 cret\"\n"                                      /* 11 */
    "      source: 10.0.0.21\n"                                          /* 12 */
    "      hold_time: 9s\n"                                              /* 13 */
    "    - { address: \"2001:db8::1\", asn: 65001, port: 1179, multihop: 3, source: \"2001:db8::21\" }\n" /* 14 */
    "  bfd: { interval: 50ms, multiplier: 5 }\n"                         /* 15 */
    "  min_healthy: 2\n"                                                 /* 16 */
    "  announce: [192.0.2.10, \"2001:db8:10::1\"]\n"                     /* 17 */
    "  interface: lbha0\n"                                               /* 18 */
    "  bird:\n"                                                          /* 19 */
    "    mode: managed\n"                                                /* 20 */
    "    binary: /opt/bird/sbin/bird\n"                                  /* 21 */
    "    control_socket: /run/lb/bird.ctl\n"                             /* 22 */
    "    config_file: /run/lb/bird.conf\n"                               /* 23 */
    "    pid_file: /run/lb/bird.pid\n"                                   /* 24 */
    "    log_file: /var/log/bird-lb.log\n";                              /* 25 */

static void test_full(void **state)
{
    struct sl_config *cfg = load_ok(ha_yaml);
    const struct cfg_ha *h = ha_conf(cfg);
    char buf[64];
    assert_true(h->present);
    assert_string_equal(ha_conf_node(h, buf, sizeof buf), "lb-a1");
    assert_string_equal(h->zone, "zone-a");
    assert_int_equal(h->priority, 2);
    assert_false(h->preempt);
    assert_int_equal(h->asn, 4200000010u);
    assert_true(h->has_router_id);
    assert_string_equal(inet_ntop(AF_INET, &h->router_id, buf, sizeof buf), "10.0.0.21");
    assert_int_equal(h->n_neighbors, 2);
    const struct cfg_ha_neighbor *n = &h->neighbors[0];
    assert_string_equal(n->address.text, "10.0.0.1");
    assert_int_equal(n->asn, 65000);
    assert_int_equal(n->port, 179);
    assert_string_equal(n->password, "s3 cret");
    assert_true(n->has_source);
    assert_string_equal(n->source.text, "10.0.0.21");
    assert_int_equal(n->multihop, 0);
    assert_int_equal(n->hold_time_s, 9);
    n = &h->neighbors[1];
    assert_int_equal(n->address.family, AF_INET6);
    assert_string_equal(n->address.text, "2001:db8::1");
    assert_int_equal(n->port, 1179);
    assert_int_equal(n->multihop, 3);
    assert_null(n->password);
    assert_true(n->has_source);
    assert_true(h->bfd);
    assert_int_equal(h->bfd_interval_ms, 50);
    assert_int_equal(h->bfd_multiplier, 5);
    assert_int_equal(h->min_healthy, 2);
    assert_int_equal(h->n_announce, 2);
    assert_string_equal(h->announce[1].text, "2001:db8:10::1");
    struct ha_ip ip;
    assert_int_equal(ha_ip_parse("192.0.2.10", &ip), 0);
    assert_true(ha_conf_may_announce(h, &ip));
    assert_int_equal(ha_ip_parse("192.0.2.11", &ip), 0);
    assert_false(ha_conf_may_announce(h, &ip));
    assert_string_equal(h->interface, "lbha0");
    assert_int_equal(h->bird.mode, HA_BIRD_MANAGED);
    assert_string_equal(h->bird.binary, "/opt/bird/sbin/bird");
    assert_string_equal(h->bird.control_socket, "/run/lb/bird.ctl");
    assert_string_equal(h->bird.config_file, "/run/lb/bird.conf");
    assert_string_equal(h->bird.pid_file, "/run/lb/bird.pid");
    assert_string_equal(h->bird.log_file, "/var/log/bird-lb.log");
    config_free(cfg);
}

static void test_defaults(void **state)
{
    struct sl_config *cfg = load_ok("ha:\n  asn: 65010\n  neighbors: [{ address: 10.0.0.1, asn: 65000 }]\n");
    const struct cfg_ha *h = ha_conf(cfg);
    char buf[256];
    assert_true(h->present);
    assert_null(h->node);
    char host[256];
    assert_int_equal(gethostname(host, sizeof host), 0);
    assert_string_equal(ha_conf_node(h, buf, sizeof buf), host);
    assert_string_equal(h->zone, "default");
    assert_int_equal(h->priority, 0);
    assert_true(h->preempt);
    assert_false(h->has_router_id);
    assert_true(h->bfd);
    assert_int_equal(h->bfd_interval_ms, 100);
    assert_int_equal(h->bfd_multiplier, 3);
    assert_int_equal(h->min_healthy, 1);
    assert_null(h->announce);
    struct ha_ip ip;
    assert_int_equal(ha_ip_parse("198.51.100.7", &ip), 0);
    assert_true(ha_conf_may_announce(h, &ip));
    assert_string_equal(h->interface, "sluice-ha");
    assert_int_equal(h->bird.mode, HA_BIRD_MANAGED);
    assert_string_equal(h->bird.binary, "/usr/sbin/bird");
    assert_string_equal(h->bird.control_socket, "/run/sluice/bird.ctl");
    assert_string_equal(h->bird.config_file, "/run/sluice/bird.conf");
    assert_string_equal(h->bird.pid_file, "/run/sluice/bird.pid");
    assert_null(h->bird.log_file);
    assert_int_equal(h->neighbors[0].port, 179);
    config_free(cfg);
    /* bfd: false turns it off; bfd: true keeps the defaults. */
    cfg = load_ok("ha:\n  asn: 65010\n  neighbors: [{ address: 10.0.0.1, asn: 65000 }]\n  bfd: false\n");
    assert_false(ha_conf(cfg)->bfd);
    config_free(cfg);
    cfg = load_ok("ha:\n  asn: 65010\n  neighbors: [{ address: 10.0.0.1, asn: 65000 }]\n  bfd: true\n");
    assert_true(ha_conf(cfg)->bfd);
    assert_int_equal(ha_conf(cfg)->bfd_interval_ms, 100);
    config_free(cfg);
    /* Mode external. */
    cfg = load_ok("ha:\n  asn: 65010\n  neighbors: [{ address: 10.0.0.1, asn: 65000 }]\n"
                  "  bird: { mode: external, control_socket: /run/bird/bird.ctl, config_file: /etc/bird/sluice.conf }\n");
    assert_int_equal(ha_conf(cfg)->bird.mode, HA_BIRD_EXTERNAL);
    config_free(cfg);
    /* No ha: section at all. */
    cfg = load_ok("log: { level: info }\n");
    assert_false(ha_conf(cfg)->present);
    config_free(cfg);
}

#define N1 "  neighbors: [{ address: 10.0.0.1, asn: 65000 }]\n"

static void test_errors(void **state)
{
    expect_errors("ha:\n  zone: a\n", (const char *const[]){
                      "t.yaml:2: ha: missing required key \"asn\"",
                      "t.yaml:2: ha: missing required key \"neighbors\"" }, 2);
    expect_error("ha:\n  asn: 65010\n  neighbors: []\n",
                 "t.yaml:2: ha.neighbors: give at least one BGP neighbor (a router)");
    expect_error("ha:\n  asn: 0\n" N1,
                 "t.yaml:2: ha.asn: expected an AS number from 1 to 4294967294 (not 65535), got \"0\"");
    expect_error("ha:\n  asn: 65535\n" N1,
                 "t.yaml:2: ha.asn: expected an AS number from 1 to 4294967294 (not 65535), got \"65535\"");
    expect_error("ha:\n  asn: 65010\n" N1 "  priority: 16\n",
                 "t.yaml:4: ha.priority: expected an integer from 0 to 15, got \"16\"");
    expect_error("ha:\n  asn: 65010\n" N1 "  preempt: maybe\n",
                 "t.yaml:4: ha.preempt: expected true or false, got \"maybe\"");
    expect_error("ha:\n  asn: 65010\n" N1 "  router_id: \"2001:db8::1\"\n",
                 "t.yaml:4: ha.router_id: expected an IPv4 address other than 0.0.0.0 (BGP router IDs are 32 "
                 "bits), got \"2001:db8::1\"");
    expect_error("ha:\n  asn: 65010\n" N1 "  router_id: lb1\n",
                 "t.yaml:4: ha.router_id: expected an IPv4 address like 192.0.2.1 (BGP router IDs are 32 bits), "
                 "got \"lb1\"");
    expect_error("ha:\n  asn: 65010\n  neighbors:\n    - asn: 65000\n",
                 "t.yaml:4: ha.neighbors[0]: missing required key \"address\"");
    expect_error("ha:\n  asn: 65010\n  neighbors:\n    - address: 10.0.0.1\n",
                 "t.yaml:4: ha.neighbors[0]: missing required key \"asn\"");
    expect_error("ha:\n  asn: 65010\n  neighbors:\n    - address: 10.0.0.1:179\n      asn: 65000\n",
                 "t.yaml:4: ha.neighbors[0].address: expected an IP address like 192.0.2.1 (no port: see port), "
                 "got \"10.0.0.1:179\"");
    expect_error("ha:\n  asn: 65010\n  neighbors:\n    - { address: 10.0.0.1, asn: 65000, port: 0 }\n",
                 "t.yaml:4: ha.neighbors[0].port: expected an integer from 1 to 65535, got \"0\"");
    expect_error("ha:\n  asn: 65010\n  neighbors:\n    - { address: 10.0.0.1, asn: 65000, password: 'a\"b' }\n",
                 "t.yaml:4: ha.neighbors[0].password: expected 1 to 80 printable characters without '\"' or '\\' "
                 "(BIRD's config strings have no escapes)");
    expect_error("ha:\n  asn: 65010\n  neighbors:\n    - { address: 10.0.0.1, asn: 65000, source: \"::1\" }\n",
                 "t.yaml:4: ha.neighbors[0].source: ::1 and the neighbor's address 10.0.0.1 are not of the same "
                 "family");
    expect_error("ha:\n  asn: 65010\n  neighbors:\n    - { address: 10.0.0.1, asn: 65000, multihop: 0 }\n",
                 "t.yaml:4: ha.neighbors[0].multihop: expected an integer from 1 to 255, got \"0\"");
    expect_error("ha:\n  asn: 65010\n  neighbors:\n    - { address: 10.0.0.1, asn: 65000, multihop: 2 }\n",
                 "t.yaml:4: ha.neighbors: 10.0.0.1: multihop with BFD needs the session's local address: give "
                 "source (or bfd: false)");
    config_free(load_ok("ha:\n  asn: 65010\n  neighbors:\n    - { address: 10.0.0.1, asn: 65000, multihop: 2 }\n  bfd: false\n"));
    expect_error("ha:\n  asn: 65010\n  neighbors:\n    - { address: 10.0.0.1, asn: 65000, hold_time: 1s }\n",
                 "t.yaml:4: ha.neighbors[0].hold_time: must be from 3s to 65535s, got \"1s\"");
    expect_error("ha:\n  asn: 65010\n  neighbors:\n    - { address: 10.0.0.1, asn: 65000, colour: red }\n",
                 "t.yaml:4: ha.neighbors[0].colour: unknown key");
    expect_error("ha:\n  asn: 65010\n  neighbors:\n    - { address: 10.0.0.1, asn: 65000 }\n"
                 "    - { address: 10.0.0.1, asn: 65001 }\n",
                 "t.yaml:5: ha.neighbors: 10.0.0.1 is listed twice (items 0 and 1)");
    expect_error("ha:\n  asn: 65010\n" N1 "  bfd: { interval: 5ms }\n",
                 "t.yaml:4: ha.bfd.interval: must be from 10ms to 10s, got \"5ms\"");
    expect_error("ha:\n  asn: 65010\n" N1 "  bfd: { multiplier: 0 }\n",
                 "t.yaml:4: ha.bfd.multiplier: expected an integer from 1 to 255, got \"0\"");
    expect_error("ha:\n  asn: 65010\n" N1 "  bfd: sometimes\n",
                 "t.yaml:4: ha.bfd: expected true or false, got \"sometimes\"");
    expect_error("ha:\n  asn: 65010\n" N1 "  min_healthy: 0\n",
                 "t.yaml:4: ha.min_healthy: expected an integer from 1 to 1000000, got \"0\"");
    expect_error("ha:\n  asn: 65010\n" N1 "  announce: [10.0.0.5, 10.0.0.5]\n",
                 "t.yaml:4: ha.announce[1]: 10.0.0.5 is listed twice");
    expect_error("ha:\n  asn: 65010\n" N1 "  announce: [10.0.0.0/24]\n",
                 "t.yaml:4: ha.announce[0]: expected an IP address like 192.0.2.10, got \"10.0.0.0/24\"");
    expect_error("ha:\n  asn: 65010\n" N1 "  announce: []\n",
                 "t.yaml:2: ha.announce: give at least one address, or leave announce out to announce every "
                 "address the serving tier publishes");
    expect_error("ha:\n  asn: 65010\n" N1 "  interface: sluice-ha-long\n",
                 "t.yaml:4: ha.interface: expected an interface name of 1 to 13 letters, digits, '_', '.' or '-' "
                 "(the stand-in device adds \"-s\" within Linux's 15), got \"sluice-ha-long\"");
    expect_error("ha:\n  asn: 65010\n" N1 "  interface: \"ha*\"\n",
                 "t.yaml:4: ha.interface: expected an interface name of 1 to 13 letters, digits, '_', '.' or '-' "
                 "(the stand-in device adds \"-s\" within Linux's 15), got \"ha*\"");
    expect_error("ha:\n  asn: 65010\n" N1 "  bird: { mode: manual }\n",
                 "t.yaml:4: ha.bird.mode: expected managed or external, got \"manual\"");
    expect_error("ha:\n  asn: 65010\n" N1 "  bird: { config_file: run/bird.conf }\n",
                 "t.yaml:4: ha.bird.config_file: expected an absolute path without '\"' or control characters, "
                 "got \"run/bird.conf\"");
    expect_error("ha:\n  asn: 65010\n" N1 "  bird:\n    mode: external\n    pid_file: /run/b.pid\n",
                 "t.yaml:5: ha.bird.pid_file: only for mode managed (the operator runs BIRD in mode external)");
    expect_error("ha:\n  asn: 65010\n" N1 "  bird: { config_file: /run/sluice/bird.ctl }\n",
                 "t.yaml:2: ha.bird.config_file: must differ from bird.control_socket and bird.pid_file");
    expect_error("ha:\n  asn: 65010\n" N1 "  node: \"lb 1\"\n",
                 "t.yaml:4: ha.node: expected a name of 1 to 64 characters from A-Z a-z 0-9 _ . -, got \"lb 1\"");
    expect_error("ha:\n  asn: 65010\n" N1 "  zones: a\n",
                 "t.yaml:4: ha.zones: unknown key (did you mean \"zone\"?)");
}

/* ha.probe: keys, defaults (off), and errors as ha.probe.KEY. */
static void test_probe(void **state)
{
    struct sl_config *cfg = load_ok("ha:\n  asn: 65010\n" N1);
    const struct cfg_ha *h = ha_conf(cfg);
    assert_false(h->probe_enabled);
    assert_int_equal(h->probe.interval_ms, 1000);
    assert_int_equal(h->probe.timeout_ms, 500);
    assert_int_equal(h->probe.fall, 3);
    assert_int_equal(h->probe.rise, 2);
    assert_int_equal(h->probe.hold_ms, 30000);
    assert_int_equal(h->probe.port_lo, 61000);
    assert_int_equal(h->probe.port_hi, 61999);
    config_free(cfg);
    cfg = load_ok("ha:\n  asn: 65010\n" N1
                  "  probe:\n    enabled: true\n    interval: 2s\n    timeout: 300ms\n    fall: 5\n    rise: 4\n"
                  "    hold: 1m\n    learn_ports: 8\n    source_ports: 50000-50099\n"
                  "    source: [10.0.0.21, \"2001:db8::21\"]\n    gateway: 10.0.0.1\n");
    h = ha_conf(cfg);
    assert_true(h->probe_enabled);
    assert_int_equal(h->probe.interval_ms, 2000);
    assert_int_equal(h->probe.timeout_ms, 300);
    assert_int_equal(h->probe.fall, 5);
    assert_int_equal(h->probe.rise, 4);
    assert_int_equal(h->probe.hold_ms, 60000);
    assert_int_equal(h->probe.learn_ports, 8);
    assert_int_equal(h->probe.port_lo, 50000);
    assert_int_equal(h->probe.port_hi, 50099);
    assert_int_equal(h->probe.source4.ss_family, AF_INET);
    assert_int_equal(h->probe.source6.ss_family, AF_INET6);
    assert_int_equal(h->probe.gateway4.ss_family, AF_INET);
    assert_int_equal(h->probe.gateway6.ss_family, 0);
    config_free(cfg);
    expect_error("ha:\n  asn: 65010\n" N1 "  probe:\n    interval: 1s\n    timeout: 1s\n",
                 "t.yaml:6: ha.probe.timeout: must be shorter than probe.interval");
    expect_error("ha:\n  asn: 65010\n" N1 "  probe:\n    fall: 0\n",
                 "t.yaml:5: ha.probe.fall: expected an integer from 1 to 1000, got \"0\"");
    expect_error("ha:\n  asn: 65010\n" N1 "  probe:\n    source_ports: 70000-70001\n",
                 "t.yaml:5: ha.probe.source_ports: expected a port range LOW-HIGH with 1 <= LOW <= HIGH <= 65535, "
                 "got \"70000-70001\"");
    expect_error("ha:\n  asn: 65010\n" N1 "  probe:\n    source: [10.0.0.1, 10.0.0.2]\n",
                 "t.yaml:5: ha.probe.source[1]: one address per family: 10.0.0.2 is the second IPv4 address");
    expect_error("ha:\n  asn: 65010\n" N1 "  probe:\n    gateway: 10.0.0.1:80\n",
                 "t.yaml:5: ha.probe.gateway: expected an IP address (no port), got \"10.0.0.1:80\"");
    expect_error("ha:\n  asn: 65010\n" N1 "  probe:\n    learn_ports: 17\n",
                 "t.yaml:5: ha.probe.learn_ports: expected an integer from 0 to 16, got \"17\"");
    expect_error("ha:\n  asn: 65010\n" N1 "  probe:\n    enable: true\n",
                 "t.yaml:5: ha.probe.enable: unknown key (did you mean \"enabled\"?)");
}

int main(void)
{
    config_register_section(&ha_conf_section);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_probe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
