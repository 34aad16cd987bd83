/* Unit tests for the registry: section (src/registry/reg_conf.c): the
 * file's keys, defaults and errors, and the API bodies read by the same
 * parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "core/config.h"
#include "registry/reg_conf.h"
#include "registry/reg_dns.h"

#include "config_expect.h"

static const char reg_yaml[] =
    "admin:\n"                                                          /* 1 */
    "  listen: 127.0.0.1:9950\n"                                        /* 2 */
    "registry:\n"                                                       /* 3 */
    "  node: reg1\n"                                                    /* 4 */
    "  datacenter: dc1\n"                                               /* 5 */
    "  region: r1\n"                                                    /* 6 */
    "  data_dir: ./reg-data\n"                                          /* 7 */
    "  store: embedded\n"                                               /* 8 */
    "  etcd: { endpoints: [http://127.0.0.1:2379], prefix: /sr/, lease_ttl: 10s }\n" /* 9 */
    "  token: s3cret\n"                                                 /* 10 */
    "  api: { max_watchers: 3000, merge_window: 20ms, max_wait: 2m }\n" /* 11 */
    "  dns:\n"                                                          /* 12 */
    "    listen: [127.0.0.1:5353, \"[::1]:5353\"]\n"                    /* 13 */
    "    zone: Sluice.Test\n"                                           /* 14 */
    "    ns: [ns1.sluice.test., ns2.sluice.test]\n"                     /* 15 */
    "    soa: { mbox: hostmaster.sluice.test., refresh: 1h, retry: 10m, expire: 1w, minimum: 30s }\n" /* 16 */
    "    udp_max: 1400\n"                                               /* 17 */
    "    tcp: { max_conns: 500, idle: 5s }\n"                           /* 18 */
    "  subnets:\n"                                                      /* 19 */
    "    - { cidr: 10.1.0.0/16, datacenter: dc1, region: r1 }\n"        /* 20 */
    "    - { cidr: \"2001:db8::/32\", datacenter: dc2, region: r2 }\n"  /* 21 */
    "  expiry: { eviction_cap: 0.5, eviction_interval: 30s, self_preservation: 0.8, rate_window: 20s, grace: 45s }\n" /* 22 */
    "  services:\n"                                                     /* 23 */
    "    - name: Web\n"                                                 /* 24 */
    "      protect_threshold: 0.5\n"                                    /* 25 */
    "      locality: { min_healthy: 2, min_healthy_ratio: 0.25 }\n"     /* 26 */
    "      dns_ttl: 7\n"                                                /* 27 */
    "      answer_count: 3\n"                                           /* 28 */
    "      heartbeat: { interval: 2s, timeout: 6s, expire_after: 12s }\n" /* 29 */
    "      health: { type: http, path: /health, interval: 2s, timeout: 1s, rise: 2, fall: 3 }\n" /* 30 */
    "      instances:\n"                                                /* 31 */
    "        - { address: 10.1.0.10, port: 80, weight: 100, datacenter: dc1, region: r1, labels: {v: \"2\"} }\n" /* 32 */
    "        - { id: w2, address: \"2001:db8::5\", port: 8080, enabled: false }\n"; /* 33 */

static void test_full(void **state)
{
    (void)state;
    struct sl_config *cfg = load_ok(reg_yaml);
    const struct cfg_registry *r = reg_conf(cfg);
    assert_true(r->present);
    assert_string_equal(r->node, "reg1");
    assert_string_equal(r->datacenter, "dc1");
    assert_string_equal(r->data_dir, "./reg-data");
    assert_int_equal(r->store, REG_STORE_EMBEDDED);
    assert_int_equal(r->etcd.n_endpoints, 1);
    assert_string_equal(r->etcd.prefix, "/sr/");
    assert_string_equal(r->token, "s3cret");
    assert_int_equal(r->api.max_watchers, 3000);
    assert_int_equal(r->api.merge_window_ms, 20);
    assert_int_equal(r->api.max_wait_ms, 120000);
    assert_true(r->dns.present);
    assert_int_equal(r->dns.n_listen, 2);
    assert_string_equal(r->dns.zone, "sluice.test.");
    assert_int_equal(r->dns.n_ns, 2);
    assert_string_equal(r->dns.ns[1], "ns2.sluice.test.");
    assert_int_equal(r->dns.soa_refresh, 3600);
    assert_int_equal(r->dns.soa_retry, 600);
    assert_int_equal(r->dns.soa_expire, 604800);
    assert_int_equal(r->dns.soa_minimum, 30);
    assert_int_equal(r->dns.udp_max, 1400);
    assert_int_equal(r->dns.tcp_max_conns, 500);
    assert_int_equal(r->dns.tcp_idle_ms, 5000);
    struct reg_dns_conf dc;
    reg_conf_dns(&r->dns, &dc);
    assert_int_equal(dc.n_listen, 2);
    assert_string_equal(dc.zone, "sluice.test.");
    assert_string_equal(dc.ns[0], "ns1.sluice.test.");
    assert_string_equal(dc.soa_mbox, "hostmaster.sluice.test.");
    assert_int_equal(dc.soa_expire, 604800);
    assert_int_equal(dc.udp_max, 1400);
    assert_int_equal(dc.tcp_max_conns, 500);
    assert_int_equal(r->n_subnets, 2);
    assert_true(r->expiry.eviction_cap == 0.5);
    assert_int_equal(r->expiry.grace_ms, 45000);
    assert_int_equal(r->n_services, 1);
    const struct cfg_reg_service *s = &r->services[0];
    assert_string_equal(s->name, "web");
    assert_true(s->settings.protect_threshold == 0.5);
    assert_int_equal(s->settings.locality.min_healthy, 2);
    assert_int_equal(s->settings.answer_count, 3);
    assert_int_equal(s->settings.expire_after_ms, 12000);
    assert_int_equal(s->settings.health.fall, 3);
    assert_int_equal(s->n_instances, 2);
    assert_string_equal(s->instances[0].addr.text, "10.1.0.10:80");
    assert_null(s->instances[0].id);
    assert_int_equal(s->instances[0].n_labels, 1);
    assert_string_equal(s->instances[1].addr.text, "[2001:db8::5]:8080");
    assert_false(s->instances[1].enabled);
    assert_int_equal(s->instances[1].weight, REG_WEIGHT_DEFAULT);
    config_free(cfg);
}

static void test_defaults(void **state)
{
    (void)state;
    struct sl_config *cfg = load_ok("registry:\n");
    const struct cfg_registry *r = reg_conf(cfg);
    assert_true(r->present);
    assert_non_null(r->node);
    assert_null(r->token);
    assert_false(r->dns.present);
    assert_int_equal(r->api.max_watchers, 2000);
    assert_int_equal(r->api.merge_window_ms, 50);
    assert_int_equal(r->api.max_wait_ms, 300000);
    assert_int_equal(r->expiry.eviction_interval_ms, 60000);
    config_free(cfg);
    cfg = load_ok("admin:\n  listen: 127.0.0.1:9950\n");
    assert_false(reg_conf(cfg)->present);
    config_free(cfg);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("registry:\n  stroe: embedded\n",
                 "t.yaml:2: registry.stroe: unknown key (did you mean \"store\"?)");
    expect_error("registry:\n  store: zk\n",
                 "t.yaml:2: registry.store: expected embedded or etcd, got \"zk\"");
    expect_error("registry:\n  store: etcd\n",
                 "t.yaml:2: registry.etcd.endpoints: store: etcd needs at least one endpoint");
    expect_error("registry:\n  token_file: /nonexistent/token\n",
                 "t.yaml:2: registry.token_file: cannot read /nonexistent/token: No such file or directory");
    expect_error("registry:\n  datacenter: \"d c\"\n",
                 "t.yaml:2: registry: datacenter: \"d c\" may hold only letters, digits, '-', '_' and '.'");
    expect_error("registry:\n  subnets:\n    - { cidr: 10.1.0.1/16, datacenter: dc1 }\n",
                 "t.yaml:3: registry.subnets[0].cidr: \"10.1.0.1/16\": host bits are set (did you mean 10.1.0.0/16?)");
    expect_error("registry:\n  dns: { listen: [127.0.0.1:53] }\n",
                 "t.yaml:2: registry.dns: missing required key \"zone\"");
    expect_error("registry:\n  dns: { listen: 127.0.0.1:53, zone: \"a..b\" }\n",
                 "t.yaml:2: registry.dns.zone: expected a domain name like sluice.test. (labels of 1 to 63 letters, "
                 "digits, '-' or '_'), got \"a..b\"");
    expect_error("registry:\n  dns: { listen: 127.0.0.1:53, zone: t., soa: { expire: 1y } }\n",
                 "t.yaml:2: registry.dns.soa.expire: expected a whole number of seconds as \"30s\", \"10m\", \"1h\", "
                 "\"1d\" or \"1w\", got \"1y\"");
    expect_error("registry:\n  dns: { listen: 127.0.0.1:53, zone: t., soa: { minimum: 2d } }\n",
                 "t.yaml:2: registry.dns: soa.minimum: at most 86400 s");
    expect_error("registry:\n  expiry: { eviction_cap: 0 }\n",
                 "t.yaml:2: registry.expiry.eviction_cap: must be above 0 (at most this share of a service's "
                 "instances expire per eviction_interval)");
    expect_error("registry:\n  services:\n    - { protect_threshold: 0.5 }\n",
                 "t.yaml:3: registry.services[0]: missing required key \"name\"");
    expect_error("registry:\n  services:\n    - name: a_b\n",
                 "t.yaml:3: registry.services[0].name: service name: \"a_b\" may hold only letters, digits and '-' "
                 "(one DNS label)");
    expect_error("registry:\n  services:\n    - { name: a, protect_threshold: 1.5 }\n",
                 "t.yaml:3: registry.services[0].protect_threshold: expected a number from 0 to 1, got \"1.5\"");
    expect_error("registry:\n  services:\n    - { name: a, heartbeat: { interval: 10s, timeout: 1s } }\n",
                 "t.yaml:3: registry.services[0]: heartbeat_timeout: must be at least heartbeat_interval");
    expect_error("registry:\n  services:\n    - name: a\n      instances:\n        - { address: 10.0.0.1 }\n",
                 "t.yaml:5: registry.services[0].instances[0]: missing required key \"port\"");
    expect_error("registry:\n  services:\n    - name: a\n      instances:\n"
                 "        - { address: 10.0.0.1, port: 80, ephemeral: true }\n",
                 "t.yaml:5: registry.services[0].instances[0].ephemeral: instances of the file are persistent; "
                 "ephemeral instances register themselves through the API");
    const char *twice[] = {
        "t.yaml:6: registry.services[0].instances[1]: instance \"10.0.0.1:80\" is listed twice (first at "
        "instances[0]); give each an id",
        "t.yaml:7: registry.services[1].name: service a is listed twice (first at services[0])",
    };
    expect_errors("registry:\n  services:\n    - name: a\n      instances:\n"
                  "        - { address: 10.0.0.1, port: 80 }\n        - { address: 10.0.0.1, port: 80 }\n"
                  "    - name: A\n",
                  twice, 2);
}

static void test_token_file(void **state)
{
    (void)state;
    char path[] = "/tmp/reg-token-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "tok-en  \nsecond line\n", 21), 21);
    close(fd);
    char yaml[256];
    snprintf(yaml, sizeof yaml, "registry:\n  token_file: %s\n", path);
    struct sl_config *cfg = load_ok(yaml);
    assert_string_equal(reg_conf(cfg)->token, "tok-en");
    config_free(cfg);
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "\n", 1), 1);
    close(fd);
    char want[256];
    snprintf(want, sizeof want, "t.yaml:2: registry.token_file: %s holds no token (its first line is empty)", path);
    expect_error(yaml, want);
    unlink(path);
}

static void test_bodies(void **state)
{
    (void)state;
    char err[300];
    struct reg_service_settings s;
    static const char good[] = "{\"protect_threshold\": 0.25, \"heartbeat\": {\"interval\": 2000, \"timeout\": \"6s\"},"
                               " \"health\": {\"type\": \"tcp\"}}";
    assert_int_equal(reg_conf_parse_settings_body(good, sizeof good - 1, &s, err, sizeof err), 0);
    assert_true(s.protect_threshold == 0.25);
    assert_int_equal(s.heartbeat_interval_ms, 2000);
    assert_int_equal(s.heartbeat_timeout_ms, 6000);
    assert_int_equal(s.health.type, HEALTH_TCP);
    reg_service_settings_free(&s);
    static const struct {
        const char *body, *err;
    } bad[] = {
        { "{\"heartbeat\": {\"interval\": \"x\"}}",
          "heartbeat.interval: expected a duration like \"500ms\", \"10s\", \"2m\" or \"1h\", got \"x\"" },
        { "{\"name\": \"web\"}", "name: unknown key" },
        { "[]", "expected a JSON object, got a list" },
        { "", "the body is empty" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(reg_conf_parse_settings_body(bad[i].body, strlen(bad[i].body), &s, err, sizeof err), -1);
        if (strncmp(err, bad[i].err, strlen(bad[i].err)) != 0)
            fail_msg("body %s: got \"%s\", want \"%s\"", bad[i].body, err, bad[i].err);
    }
    struct cfg_reg_instance inst;
    static const char ib[] = "{\"address\": \"10.0.0.1\", \"port\": 80, \"ephemeral\": true, \"labels\": {\"a\": \"b\"}}";
    assert_int_equal(reg_conf_parse_instance_body(ib, sizeof ib - 1, &inst, err, sizeof err), 0);
    assert_true(inst.ephemeral);
    assert_string_equal(inst.addr.text, "10.0.0.1:80");
    assert_string_equal(inst.labels[0].value, "b");
    reg_conf_instance_free(&inst);
    static const char wb[] = "{\"address\": \"10.0.0.1\", \"port\": 80, \"weight\": 10001}";
    assert_int_equal(reg_conf_parse_instance_body(wb, sizeof wb - 1, &inst, err, sizeof err), -1);
    assert_string_equal(err, "weight: expected an integer from 0 to 10000, got \"10001\"");
    bool hw, he, en;
    uint32_t w;
    assert_int_equal(reg_conf_parse_patch_body("{\"weight\": 5}", 13, &hw, &w, &he, &en, err, sizeof err), 0);
    assert_true(hw && w == 5 && !he);
    assert_int_equal(reg_conf_parse_patch_body("{}", 2, &hw, &w, &he, &en, err, sizeof err), -1);
    assert_string_equal(err, "give weight, enabled or both");
}

int main(void)
{
    config_register_section(&reg_conf_section);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_token_file),
        cmocka_unit_test(test_bodies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
