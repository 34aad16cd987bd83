/* Unit tests for the agent: section (src/agent/agent_conf.c): every key,
 * the defaults, the errors as FILE:LINE: key.path: reason, and the
 * upstreams read from a resolv.conf (the agent's own listen address left
 * out, so it never forwards to itself). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent_conf.h"
#include "core/config.h"

#include "config_expect.h"

static const char agent_yaml[] =
    "agent:\n"                                                              /* 1 */
    "  listen: [127.0.0.1:5300, \"[::1]:5300\"]\n"                          /* 2 */
    "  zone: Sluice.Test\n"                                                 /* 3 */
    "  registries: [10.0.0.11:9950, http://10.0.0.12:9950]\n"               /* 4 */
    "  datacenter: dc1\n"                                                   /* 5 */
    "  region: r1\n"                                                        /* 6 */
    "  cache_dir: /var/lib/sluice/agent\n"                                  /* 7 */
    "  failover_dir: /etc/sluice/failover\n"                                /* 8 */
    "  token: s3cret\n"                                                     /* 9 */
    "  services: [Web, api]\n"                                              /* 10 */
    "  upstreams: [192.0.2.53, \"192.0.2.54:5353\", \"2001:db8::53\"]\n"   /* 11 */
    "  resolv_conf: /tmp/resolv.conf\n"                                     /* 12 */
    "  ttl_cap: 2s\n"                                                       /* 13 */
    "  negative_ttl: 10s\n"                                                 /* 14 */
    "  first_wait: 500ms\n"                                                 /* 15 */
    "  upstream_timeout: 700ms\n"                                           /* 16 */
    "  max_outstanding: 100\n"                                              /* 17 */
    "  max_services: 50\n"                                                  /* 18 */
    "  udp_max: 1400\n"                                                     /* 19 */
    "  tcp: { max_conns: 20, idle: 3s }\n";                                 /* 20 */

static void test_full(void **state)
{
    struct sl_config *cfg = load_ok(agent_yaml);
    const struct cfg_agent *a = agent_conf(cfg);
    assert_true(a->present);
    assert_int_equal(a->n_listen, 2);
    assert_string_equal(a->listen[0].text, "127.0.0.1:5300");
    assert_string_equal(a->listen[1].text, "[::1]:5300");
    assert_string_equal(a->zone, "sluice.test.");
    assert_int_equal(a->n_registries, 2);
    assert_string_equal(a->registries[1], "http://10.0.0.12:9950");
    assert_string_equal(a->datacenter, "dc1");
    assert_string_equal(a->region, "r1");
    assert_string_equal(a->cache_dir, "/var/lib/sluice/agent");
    assert_string_equal(a->failover_dir, "/etc/sluice/failover");
    assert_string_equal(a->token, "s3cret");
    assert_int_equal(a->n_services, 2);
    assert_string_equal(a->services[0], "web");
    assert_int_equal(a->n_upstreams, 3);
    assert_string_equal(a->upstreams[0].text, "192.0.2.53:53");
    assert_string_equal(a->upstreams[1].text, "192.0.2.54:5353");
    assert_string_equal(a->upstreams[2].text, "[2001:db8::53]:53");
    assert_string_equal(a->resolv_conf, "/tmp/resolv.conf");
    assert_int_equal(a->ttl_cap_s, 2);
    assert_int_equal(a->negative_ttl_s, 10);
    assert_int_equal(a->first_wait_ms, 500);
    assert_int_equal(a->upstream_timeout_ms, 700);
    assert_int_equal(a->max_outstanding, 100);
    assert_int_equal(a->max_services, 50);
    assert_int_equal(a->udp_max, 1400);
    assert_int_equal(a->tcp_max_conns, 20);
    assert_int_equal(a->tcp_idle_ms, 3000);
    config_free(cfg);
}

static void test_defaults(void **state)
{
    struct sl_config *cfg = load_ok("agent:\n  zone: sluice.test.\n  registries: 127.0.0.1:9950\n");
    const struct cfg_agent *a = agent_conf(cfg);
    assert_int_equal(a->n_listen, 1);
    assert_string_equal(a->listen[0].text, "127.0.0.1:53");
    assert_int_equal(a->n_registries, 1);
    assert_int_equal(a->n_upstreams, 0);
    assert_string_equal(a->resolv_conf, "/etc/resolv.conf");
    assert_int_equal(a->ttl_cap_s, 5);
    assert_int_equal(a->negative_ttl_s, 5);
    assert_int_equal(a->first_wait_ms, 1000);
    assert_int_equal(a->upstream_timeout_ms, 1000);
    assert_int_equal(a->max_outstanding, 4096);
    assert_int_equal(a->max_services, 1000);
    assert_int_equal(a->udp_max, 1232);
    assert_null(a->cache_dir);
    config_free(cfg);
    /* No agent: section at all. */
    cfg = load_ok("log: { level: info }\n");
    assert_false(agent_conf(cfg)->present);
    config_free(cfg);
}

static void test_errors(void **state)
{
    expect_error("agent:\n  registries: [127.0.0.1:9950]\n", "t.yaml:2: agent: missing required key \"zone\"");
    expect_error("agent:\n  zone: sluice.test.\n",
                 "t.yaml:2: agent: registries: give the registry's API addresses (or at least a cache_dir or "
                 "failover_dir to answer from)");
    expect_error("agent:\n  zone: \"bad zone\"\n  registries: [a:1]\n",
                 "t.yaml:2: agent.zone: expected a domain name like sluice.test. (labels of 1 to 63 letters, "
                 "digits, '-' or '_'), got \"bad zone\"");
    expect_error("agent:\n  zone: z.\n  registries: [a:1]\n  listen: [127.0.0.1:0]\n",
                 "t.yaml:4: agent.listen[0]: port must be a number from 1 to 65535");
    expect_error("agent:\n  zone: z.\n  registries: [\"a:1,b:2\"]\n",
                 "t.yaml:3: agent.registries[0]: one address per item (no commas), got \"a:1,b:2\"");
    expect_error("agent:\n  zone: z.\n  registries: [a:1]\n  upstreams: [not-an-ip]\n",
                 "t.yaml:4: agent.upstreams[0]: expected a resolver address like 192.0.2.53 or "
                 "[2001:db8::53]:5353, got \"not-an-ip\": expected HOST:PORT");
    expect_error("agent:\n  zone: z.\n  registries: [a:1]\n  services: [_web]\n",
                 "t.yaml:4: agent.services[0]: a service name is one DNS label (letters, digits and '-', 1 to "
                 "63, not beginning or ending with '-'), got \"_web\"");
    expect_error("agent:\n  zone: z.\n  registries: [a:1]\n  ttl_cap: 1500ms\n",
                 "t.yaml:4: agent.ttl_cap: a DNS TTL is a whole number of seconds (\"5s\", \"1m\")");
    expect_error("agent:\n  zone: z.\n  registries: [a:1]\n  udp_max: 100\n",
                 "t.yaml:4: agent.udp_max: expected an integer from 512 to 65535, got \"100\"");
    expect_error("agent:\n  zone: z.\n  registries: [a:1]\n  listen: 127.0.0.1:5300\n  upstreams: 127.0.0.1:5300\n",
                 "t.yaml:2: agent.upstreams: 127.0.0.1:5300 is the agent's own listen address: it would forward "
                 "to itself");
    expect_error("agent:\n  zone: z.\n  registries: [a:1]\n  colour: blue\n",
                 "t.yaml:4: agent.colour: unknown key");
}

static void test_resolv_conf(void **state)
{
    struct sl_addr listen[2], out[8];
    const char *why;
    assert_int_equal(addr_parse("127.0.0.1:53", &listen[0], &why), 0);
    assert_int_equal(addr_parse("[::]:53", &listen[1], &why), 0);
    const char *text = "# comment\n"
                       "search example.com\n"
                       "nameserver 127.0.0.1\n"        /* the agent itself */
                       "nameserver 192.0.2.53\n"
                       "nameserver\t192.0.2.54  \r\n"
                       "nameserver ::1\n"              /* the agent's wildcard [::]:53 */
                       "nameserver 2001:db8::53\n"
                       "nameserver fe80::1%eth0\n"     /* a zone: left out */
                       "nameserver not-an-address\n"
                       "options edns0\n"
                       "nameserver 127.0.0.53";        /* no final newline; another loopback, not ours */
    size_t n = agent_conf_parse_resolv(text, listen, 2, out, 8);
    assert_int_equal(n, 4);
    assert_string_equal(out[0].text, "192.0.2.53:53");
    assert_string_equal(out[1].text, "192.0.2.54:53");
    assert_string_equal(out[2].text, "[2001:db8::53]:53");
    assert_string_equal(out[3].text, "127.0.0.53:53");
    /* A wildcard IPv4 listener on port 53 leaves out every IPv4 loopback. */
    assert_int_equal(addr_parse("0.0.0.0:53", &listen[0], &why), 0);
    n = agent_conf_parse_resolv("nameserver 127.0.0.53\nnameserver 192.0.2.1\n", listen, 1, out, 8);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].text, "192.0.2.1:53");
    /* Listening elsewhere than port 53: 127.0.0.1 is a real upstream. */
    assert_int_equal(addr_parse("127.0.0.1:5300", &listen[0], &why), 0);
    n = agent_conf_parse_resolv("nameserver 127.0.0.1\n", listen, 1, out, 8);
    assert_int_equal(n, 1);
    /* cap */
    n = agent_conf_parse_resolv("nameserver 192.0.2.1\nnameserver 192.0.2.2\n", listen, 1, out, 1);
    assert_int_equal(n, 1);
}

static void test_upstreams_from_file(void **state)
{
    char path[] = "/tmp/test_agent_resolv_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "nameserver 127.0.0.1\nnameserver 192.0.2.9\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    char yaml[512];
    snprintf(yaml, sizeof yaml, "agent:\n  zone: z.\n  registries: [a:1]\n  resolv_conf: %s\n", path);
    struct sl_config *cfg = load_ok(yaml);
    struct sl_addr out[8];
    char err[256] = "";
    size_t n = agent_conf_upstreams(agent_conf(cfg), out, 8, err, sizeof err);
    assert_int_equal(n, 1);   /* 127.0.0.1:53 is the agent's default listen address */
    assert_string_equal(out[0].text, "192.0.2.9:53");
    config_free(cfg);
    unlink(path);
    snprintf(yaml, sizeof yaml, "agent:\n  zone: z.\n  registries: [a:1]\n  resolv_conf: %s\n", path);
    cfg = load_ok(yaml);
    n = agent_conf_upstreams(agent_conf(cfg), out, 8, err, sizeof err);
    assert_int_equal(n, 0);
    assert_non_null(strstr(err, "agent.upstreams: none given, and /tmp/test_agent_resolv_"));
    assert_non_null(strstr(err, "No such file or directory"));
    config_free(cfg);
}

int main(void)
{
    config_register_section(&agent_conf_section);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_resolv_conf),
        cmocka_unit_test(test_upstreams_from_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
