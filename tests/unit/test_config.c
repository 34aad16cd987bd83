/* Unit tests for the configuration loader (src/core/config.c, the walker in
 * config_walk.c) and the proxy's section (src/proxy/proxy_conf.c). sluice
 * l4's section: test_l4_conf.c; the section table: test_config_sections.c. */
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
#include <unistd.h>

#include "core/config.h"
#include "core/config_walk.h"
#include "core/log.h"
#include "proxy/proxy_conf.h"

#include "config_expect.h"

/* The proxy's part of a loaded configuration. */
#define P(cfg) proxy_conf(cfg)

/* ------------------------------------------------------------------------ */

static const char full_yaml[] =
    "workers: 4\n"
    "log:\n"
    "  level: warn\n"
    "  file: /var/log/sluice.log\n"
    "admin:\n"
    "  listen: 127.0.0.1:9999\n"
    "pools:\n"
    "  - name: app\n"
    "    algorithm: hash\n"
    "    hash_key: header:X-User\n"
    "    sticky_cookie: SLUICE\n"
    "    retries: 5\n"
    "    keepalive: 64\n"
    "    slow_start: 10s\n"
    "    health_check:\n"
    "      type: http\n"
    "      interval: 5s\n"
    "      timeout: 500ms\n"
    "      rise: 4\n"
    "      fall: 6\n"
    "      path: /health\n"
    "      host: example.com\n"
    "      expect_status: 200-299\n"
    "    passive:\n"
    "      max_fails: 7\n"
    "      eject_time: 20s\n"
    "      max_eject_time: 10m\n"
    "    backends:\n"
    "      - address: 127.0.0.1:9001\n"
    "        weight: 3\n"
    "      - 127.0.0.1:9002\n"
    "      - address: \"[::1]:9003\"\n"
    "        weight: 0\n"
    "  - name: api\n"
    "    algorithm: least_conn\n"
    "    backends: [10.0.0.1:80]\n"
    "listeners:\n"
    "  - name: web\n"
    "    listen: 0.0.0.0:8080\n"
    "    protocol: http\n"
    "    pool: app\n"
    "    routes:\n"
    "      - host: API.example.com\n"
    "        path_prefix: /v1\n"
    "        pool: api\n"
    "      - host: \"*.example.com\"\n"
    "        pool: app\n"
    "    timeouts: { connect: 2s, client_header: 5s, idle: 2m, upstream_response: 1h, udp_session: 45s,"
    " client_body: 90s }\n"
    "    limits: { max_request_line: 4k, max_header_size: 64k, max_headers: 50, buffer_size: 32k,"
    " max_connections: 500, min_body_rate: 4k }\n"
    "    access_log: stdout\n"
    "    access_log_format: json\n"
    "    splice: false\n"
    "    allow_underscores_in_headers: true\n"
    "  - name: dns\n"
    "    listen: 0.0.0.0:8080\n"
    "    protocol: udp\n"
    "    pool: api\n";

static void test_full_config(void **state)
{
    struct sl_config *cfg = load_ok(full_yaml);

    assert_string_equal(cfg->path, "t.yaml");
    assert_int_equal(P(cfg)->workers, 4);
    assert_int_equal(cfg->log_level, LOG_LEVEL_WARN);
    assert_string_equal(cfg->log_file, "/var/log/sluice.log");
    assert_true(cfg->admin_enabled);
    assert_string_equal(cfg->admin_addr.text, "127.0.0.1:9999");

    assert_int_equal(P(cfg)->n_pools, 2);
    const struct cfg_pool *p = &P(cfg)->pools[0];
    assert_string_equal(p->name, "app");
    assert_int_equal(p->line, 8);
    assert_int_equal(p->algorithm, LB_HASH);
    assert_int_equal(p->hash_key, HASH_KEY_HEADER);
    assert_string_equal(p->hash_key_name, "X-User");
    assert_string_equal(p->sticky_cookie, "SLUICE");
    assert_int_equal(p->retries, 5);
    assert_int_equal(p->keepalive, 64);
    assert_int_equal(p->slow_start_ms, 10000);
    assert_int_equal(p->health.type, HEALTH_HTTP);
    assert_int_equal(p->health.interval_ms, 5000);
    assert_int_equal(p->health.timeout_ms, 500);
    assert_int_equal(p->health.rise, 4);
    assert_int_equal(p->health.fall, 6);
    assert_string_equal(p->health.http_path, "/health");
    assert_string_equal(p->health.http_host, "example.com");
    assert_int_equal(p->health.status_min, 200);
    assert_int_equal(p->health.status_max, 299);
    assert_int_equal(p->passive.max_fails, 7);
    assert_int_equal(p->passive.eject_ms, 20000);
    assert_int_equal(p->passive.max_eject_ms, 600000);
    assert_int_equal(p->n_backends, 3);
    assert_string_equal(p->backends[0].addr.text, "127.0.0.1:9001");
    assert_int_equal(p->backends[0].weight, 3);
    assert_int_equal(p->backends[0].line, 29);
    assert_string_equal(p->backends[1].addr.text, "127.0.0.1:9002");
    assert_int_equal(p->backends[1].weight, 1);
    assert_int_equal(p->backends[1].line, 31);
    assert_string_equal(p->backends[2].addr.text, "[::1]:9003");
    assert_int_equal(p->backends[2].weight, 0);
    assert_int_equal(P(cfg)->pools[1].algorithm, LB_LEAST_CONN);
    assert_int_equal(P(cfg)->pools[1].n_backends, 1);

    assert_int_equal(P(cfg)->n_listeners, 2);
    const struct cfg_listener *l = &P(cfg)->listeners[0];
    assert_string_equal(l->name, "web");
    assert_int_equal(l->line, 38);
    assert_string_equal(l->addr.text, "0.0.0.0:8080");
    assert_int_equal(l->proto, PROTO_HTTP);
    assert_true(l->has_default_pool);
    assert_int_equal(l->default_pool, 0);
    assert_int_equal(l->n_routes, 2);
    assert_string_equal(l->routes[0].host, "api.example.com"); /* lowercased */
    assert_string_equal(l->routes[0].path_prefix, "/v1");
    assert_int_equal(l->routes[0].pool, 1);
    assert_int_equal(l->routes[0].line, 43);
    assert_string_equal(l->routes[1].host, "*.example.com");
    assert_string_equal(l->routes[1].path_prefix, "/");
    assert_int_equal(l->routes[1].pool, 0);
    assert_int_equal(l->timeouts.connect_ms, 2000);
    assert_int_equal(l->timeouts.client_header_ms, 5000);
    assert_int_equal(l->timeouts.idle_ms, 120000);
    assert_int_equal(l->timeouts.upstream_response_ms, 3600000);
    assert_int_equal(l->timeouts.udp_session_ms, 45000);
    assert_int_equal(l->timeouts.client_body_ms, 90000);
    assert_int_equal(l->limits.max_request_line, 4096);
    assert_int_equal(l->limits.max_header_size, 65536);
    assert_int_equal(l->limits.max_headers, 50);
    assert_int_equal(l->limits.buffer_size, 32768);
    assert_int_equal(l->limits.max_connections, 500);
    assert_int_equal(l->limits.min_body_rate, 4096);
    assert_true(l->allow_underscores);
    assert_string_equal(l->access_log, "stdout");
    assert_int_equal(l->access_log_format, ACCESS_LOG_JSON);
    assert_false(l->splice);

    /* Same address as "web" is fine: UDP is a different socket kind. */
    const struct cfg_listener *u = &P(cfg)->listeners[1];
    assert_int_equal(u->proto, PROTO_UDP);
    assert_int_equal(u->default_pool, 1);
    assert_int_equal(u->n_routes, 0);

    config_free(cfg);
}

static void test_defaults(void **state)
{
    struct sl_config *cfg = load_ok(MIN_POOLS MIN_LISTENERS);

    assert_int_equal(P(cfg)->workers, 0);
    assert_int_equal(cfg->log_level, LOG_LEVEL_INFO);
    assert_null(cfg->log_file);
    assert_true(cfg->admin_enabled);
    assert_string_equal(cfg->admin_addr.text, "127.0.0.1:9900");

    const struct cfg_pool *p = &P(cfg)->pools[0];
    assert_int_equal(p->algorithm, LB_ROUND_ROBIN);
    assert_int_equal(p->hash_key, HASH_KEY_CLIENT_IP);
    assert_null(p->hash_key_name);
    assert_null(p->sticky_cookie);
    assert_int_equal(p->retries, 2);
    assert_int_equal(p->keepalive, 32);
    assert_int_equal(p->slow_start_ms, 0);
    assert_int_equal(p->health.type, HEALTH_NONE);
    assert_int_equal(p->health.interval_ms, 2000);
    assert_int_equal(p->health.timeout_ms, 1000);
    assert_int_equal(p->health.rise, 2);
    assert_int_equal(p->health.fall, 3);
    assert_string_equal(p->health.http_path, "/");
    assert_null(p->health.http_host);
    assert_int_equal(p->health.status_min, 200);
    assert_int_equal(p->health.status_max, 399);
    assert_int_equal(p->passive.max_fails, 3);
    assert_int_equal(p->passive.eject_ms, 10000);
    assert_int_equal(p->passive.max_eject_ms, 300000);
    assert_int_equal(p->backends[0].weight, 1);

    const struct cfg_listener *l = &P(cfg)->listeners[0];
    assert_int_equal(l->proto, PROTO_HTTP);
    assert_int_equal(l->n_routes, 0);
    assert_true(l->has_default_pool);
    assert_int_equal(l->timeouts.connect_ms, 3000);
    assert_int_equal(l->timeouts.client_header_ms, 10000);
    assert_int_equal(l->timeouts.idle_ms, 60000);
    assert_int_equal(l->timeouts.upstream_response_ms, 30000);
    assert_int_equal(l->timeouts.udp_session_ms, 30000);
    /* A body dripped a byte at a time is cut after a minute. */
    assert_int_equal(l->timeouts.client_body_ms, 60000);
    assert_int_equal(l->limits.max_request_line, 8192);
    assert_int_equal(l->limits.max_header_size, 32768);
    assert_int_equal(l->limits.max_headers, 100);
    assert_int_equal(l->limits.buffer_size, 16384);
    assert_int_equal(l->limits.max_connections, 10000);
    assert_int_equal(l->limits.min_body_rate, 1024);
    assert_false(l->allow_underscores);
    assert_null(l->access_log);
    assert_int_equal(l->access_log_format, ACCESS_LOG_COMBINED);
    assert_true(l->splice);

    config_free(cfg);
}

/* Empty sections and keys with no value keep the defaults. */
static void test_empty_sections(void **state)
{
    struct sl_config *cfg = load_ok("log:\nadmin: {}\npools:\n  - name: a\n    health_check:\n"
                                    "    passive: ~\n    backends: [1.2.3.4:5]\n");
    assert_int_equal(cfg->log_level, LOG_LEVEL_INFO);
    assert_int_equal(P(cfg)->pools[0].health.rise, 2);
    assert_int_equal(P(cfg)->pools[0].passive.max_fails, 3);
    assert_int_equal(P(cfg)->n_listeners, 0);
    config_free(cfg);
}

static void test_small_values(void **state)
{
    struct sl_config *cfg = load_ok("workers: auto\nlog: {level: debug, file: stderr}\n"
                                    "admin: {listen: off}\n");
    assert_int_equal(P(cfg)->workers, 0);
    assert_int_equal(cfg->log_level, LOG_LEVEL_DEBUG);
    assert_null(cfg->log_file);
    assert_false(cfg->admin_enabled);
    config_free(cfg);

    cfg = load_ok("workers: 256\n");
    assert_int_equal(P(cfg)->workers, 256);
    config_free(cfg);

    cfg = load_ok(MIN_POOLS "listeners:\n  - {name: t, listen: 1.2.3.4:80, protocol: tcp, pool: app,"
                            " access_log: \"off\", splice: True}\n");
    assert_int_equal(P(cfg)->listeners[0].proto, PROTO_TCP);
    assert_null(P(cfg)->listeners[0].access_log);
    assert_true(P(cfg)->listeners[0].splice);
    config_free(cfg);
}

static void test_hash_keys_and_status(void **state)
{
    struct sl_config *cfg = load_ok("pools:\n"
                                    "  - {name: a, hash_key: uri, backends: [1.1.1.1:1]}\n"
                                    "  - {name: b, hash_key: \"cookie:sid\", backends: [1.1.1.1:1]}\n"
                                    "  - {name: c, hash_key: client_ip, backends: [1.1.1.1:1],\n"
                                    "     health_check: {type: http, expect_status: 204}}\n"
                                    "  - {name: d.e_f-9, backends: [1.1.1.1:1], health_check: {type: tcp}}\n");
    assert_int_equal(P(cfg)->pools[0].hash_key, HASH_KEY_URI);
    assert_int_equal(P(cfg)->pools[1].hash_key, HASH_KEY_COOKIE);
    assert_string_equal(P(cfg)->pools[1].hash_key_name, "sid");
    assert_int_equal(P(cfg)->pools[2].hash_key, HASH_KEY_CLIENT_IP);
    assert_int_equal(P(cfg)->pools[2].health.status_min, 204);
    assert_int_equal(P(cfg)->pools[2].health.status_max, 204);
    assert_int_equal(P(cfg)->pools[3].health.type, HEALTH_TCP);
    assert_int_equal(proxy_conf_pool_index(P(cfg), "d.e_f-9"), 3);
    assert_int_equal(proxy_conf_pool_index(P(cfg), "zzz"), -1);
    config_free(cfg);
}

static void test_names(void **state)
{
    assert_string_equal(lb_algorithm_name(LB_ROUND_ROBIN), "round_robin");
    assert_string_equal(lb_algorithm_name(LB_LEAST_CONN), "least_conn");
    assert_string_equal(lb_algorithm_name(LB_P2C), "p2c");
    assert_string_equal(lb_algorithm_name(LB_HASH), "hash");
    assert_string_equal(log_level_name(LOG_LEVEL_DEBUG), "debug");
    assert_string_equal(log_level_name(LOG_LEVEL_ERROR), "error");
}

/* ------------------------------------------------------------------------ */

static void test_parse_duration(void **state)
{
    static const struct {
        const char *in;
        uint32_t ms;
    } good[] = {
        { "0", 0 },           { "1", 1 },           { "500ms", 500 },       { "10s", 10000 },
        { "2m", 120000 },     { "1h", 3600000 },    { "0s", 0 },            { "010s", 10000 },
        { "4294967295", UINT32_MAX },               { "4294967295ms", UINT32_MAX },
        { "4294967s", 4294967000u },                { "1193h", 4294800000u },
    };
    static const char *const bad[] = {
        "", "-1", "+1", " 1", "1 ", "10 s", "1.5s", "10x", "s", "ms", "10S", "10sec", "1d",
        "4294967296", "4294968s", "71583m", "1194h", "99999999999999999999999", "0x10",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint32_t v = 12345;
        assert_int_equal(config_parse_duration_ms(good[i].in, &v), 0);
        assert_int_equal(v, good[i].ms);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint32_t v = 12345;
        if (config_parse_duration_ms(bad[i], &v) == 0)
            fail_msg("parse_duration_ms accepted \"%s\"", bad[i]);
        assert_int_equal(v, 12345); /* untouched on failure */
    }
    uint32_t v;
    assert_int_not_equal(config_parse_duration_ms(NULL, &v), 0);
}

static void test_parse_size(void **state)
{
    static const struct {
        const char *in;
        uint32_t n;
    } good[] = {
        { "0", 0 },         { "512", 512 },        { "8k", 8192 },         { "32K", 32768 },
        { "1m", 1048576 },  { "16M", 16777216 },   { "1g", 1073741824 },   { "3G", 3221225472u },
        { "4294967295", UINT32_MAX },              { "4194303k", 4294966272u },
    };
    static const char *const bad[] = {
        "", "-1", "+1", " 1", "1k ", "1kb", "1KiB", "1.5k", "k", "1t", "4g", "4194304k", "4096m",
        "4294967296", "18446744073709551617",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint32_t v = 7;
        assert_int_equal(config_parse_size(good[i].in, &v), 0);
        assert_int_equal(v, good[i].n);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint32_t v = 7;
        if (config_parse_size(bad[i], &v) == 0)
            fail_msg("parse_size accepted \"%s\"", bad[i]);
        assert_int_equal(v, 7);
    }
    uint32_t v;
    assert_int_not_equal(config_parse_size(NULL, &v), 0);
}

/* ------------------------------------------------------------------------
 * One bad thing per document, one exact error line each.
 */

static const struct {
    const char *yaml;
    const char *error;
} single_errors[] = {
    /* scalars at the top */
    { "workers: -2\n", "t.yaml:1: workers: expected \"auto\" or an integer from 1 to 256, got \"-2\"" },
    { "workers: 0\n", "t.yaml:1: workers: expected \"auto\" or an integer from 1 to 256, got \"0\"" },
    { "workers: 257\n", "t.yaml:1: workers: expected \"auto\" or an integer from 1 to 256, got \"257\"" },
    { "workers:\n", "t.yaml:1: workers: expected \"auto\" or an integer from 1 to 256, got nothing" },
    { "log:\n  level: verbose\n", "t.yaml:2: log.level: expected debug, info, warn or error, got \"verbose\"" },
    { "log:\n  level: inf\n",
      "t.yaml:2: log.level: expected debug, info, warn or error, got \"inf\" (did you mean \"info\"?)" },
    { "log: {file: \"\"}\n",
      "t.yaml:1: log.file: expected a file path, \"stderr\", \"syslog\" or \"journald\", got \"\"" },
    { "log:\n  file: \"syslog:facility=local8\"\n",
      "t.yaml:2: log.file: syslog: unknown facility \"local8\" (kern, user, mail, daemon, auth, syslog, lpr, news, "
      "uucp, cron, authpriv, ftp, local0 .. local7)" },
    { "log: {file: \"journald:severity=info\"}\n",
      "t.yaml:1: log.file: journald: severity is for access logs; the daemon log's follows each message's level" },
    { "admin: {listen: 127.0.0.1}\n", "t.yaml:1: admin.listen: expected HOST:PORT" },
    { "admin: {listen: \"nowhere:80\"}\n", "t.yaml:1: admin.listen: not a numeric IPv4 or IPv6 address" },

    /* keys and types */
    { "bogus: 1\n", "t.yaml:1: bogus: unknown key" },
    { "log:\n  levl: info\n", "t.yaml:2: log.levl: unknown key (did you mean \"level\"?)" },
    { "pools:\n  - name: app\n    algoritm: hash\n    backends: [1.2.3.4:5]\n",
      "t.yaml:3: pools[0].algoritm: unknown key (did you mean \"algorithm\"?)" },
    { "workers: 2\nlog: {}\nworkers: 3\n", "t.yaml:3: workers: duplicate key (first set on line 1)" },
    { "log: [a]\n", "t.yaml:1: log: expected a mapping, got a list" },
    { "log: debug\n", "t.yaml:1: log: expected a mapping, got \"debug\"" },
    { "pools: {name: app}\n", "t.yaml:1: pools: expected a list, got a mapping" },
    { "log:\n  level:\n    - info\n", "t.yaml:3: log.level: expected debug, info, warn or error, got a list" },
    { "? [a]\n: 1\n", "t.yaml:1: (root): expected a key name, got a list" },
    { "- workers: 2\n", "t.yaml:1: (root): expected a mapping of settings, got a list" },
    { "workers: \"4\\0\"\n",
      "t.yaml:1: workers: expected \"auto\" or an integer from 1 to 256, got a string containing a NUL byte" },

    /* document level */
    { "", "t.yaml:1: (root): empty configuration" },
    { "# nothing but a comment\n\n", "t.yaml:1: (root): empty configuration" },
    { "{}\n", "t.yaml:1: (root): empty configuration" },
    { "workers: [1, 2\n",
      "t.yaml:2: (root): YAML syntax error: did not find expected ',' or ']' (while parsing a flow sequence on line 1)" },
    { "workers: 2\n\tlog: x\n", "t.yaml:2: (root): YAML syntax error: found a tab character that violates indentation "
                                "(while scanning a plain scalar on line 1)" },
    { "workers: 2\n---\nworkers: 3\n", "t.yaml:2: (root): multiple YAML documents are not supported" },
    { "admin: &a\n  listen: off\nlog: *a\n", "t.yaml:3: log: YAML aliases are not supported (found *a)" },
    { "workers: \xff\n", "t.yaml:1: (root): YAML syntax error: invalid leading UTF-8 octet" },

    /* pools */
    { "pools:\n  - name: app\n    backends: [127.0.0.1:99999]\n",
      "t.yaml:3: pools[0].backends[0].address: port must be a number from 0 to 65535" },
    { "pools:\n  - name: app\n    backends:\n      - address: 127.0.0.1:x\n",
      "t.yaml:4: pools[0].backends[0].address: port must be a number from 0 to 65535" },
    { "pools:\n  - name: app\n    backends: [127.0.0.1:0]\n",
      "t.yaml:3: pools[0].backends[0].address: port must be a number from 1 to 65535 for a backend" },
    { "pools:\n  - name: app\n    backends:\n      - {address: 1.2.3.4:5, weight: 1000001}\n",
      "t.yaml:4: pools[0].backends[0].weight: expected an integer from 0 to 1000000, got \"1000001\"" },
    { "pools:\n  - name: app\n    backends:\n      - {weight: 2}\n",
      "t.yaml:4: pools[0].backends[0]: missing required key \"address\"" },
    { "pools:\n  - name: app\n    backends:\n      - [1.2.3.4:5]\n",
      "t.yaml:4: pools[0].backends[0]: expected an address or a mapping with \"address\", got a list" },
    { "pools:\n  - name: app\n    backends: []\n", "t.yaml:3: pools[0].backends: at least one backend is required" },
    { "pools:\n  - name: app\n", "t.yaml:2: pools[0]: missing required key \"backends\"" },
    { "pools:\n  - backends: [1.2.3.4:5]\n", "t.yaml:2: pools[0]: missing required key \"name\"" },
    { "pools:\n  - name: my pool\n    backends: [1.2.3.4:5]\n",
      "t.yaml:2: pools[0].name: expected a name of 1 to 64 characters from A-Z a-z 0-9 _ . -, got \"my pool\"" },
    { "pools:\n  - name: app\n    backends: [1.2.3.4:5, 1.2.3.4:6, \"1.2.3.4:5\"]\n",
      "t.yaml:3: pools[0].backends[2]: duplicate backend 1.2.3.4:5 (first listed on line 3)" },
    { "pools:\n  - name: app\n    backends: [127.0.0.1:9001]\n  - name: app\n    backends: [127.0.0.1:9002]\n",
      "t.yaml:4: pools[1].name: duplicate pool name \"app\" (first defined on line 2)" },
    { "pools:\n  - {name: a, backends: [1.2.3.4:5], algorithm: random}\n",
      "t.yaml:2: pools[0].algorithm: expected round_robin, least_conn, p2c or hash, got \"random\"" },
    { "pools:\n  - {name: a, backends: [1.2.3.4:5], hash_key: \"header:\"}\n",
      "t.yaml:2: pools[0].hash_key: expected client_ip, uri, header:NAME or cookie:NAME, got \"header:\"" },
    { "pools:\n  - {name: a, backends: [1.2.3.4:5], sticky_cookie: \"a b\"}\n",
      "t.yaml:2: pools[0].sticky_cookie: expected a cookie name, got \"a b\"" },
    { "pools:\n  - {name: a, backends: [1.2.3.4:5], retries: 11}\n",
      "t.yaml:2: pools[0].retries: expected an integer from 0 to 10, got \"11\"" },
    { "pools:\n  - {name: a, backends: [1.2.3.4:5], keepalive: 10001}\n",
      "t.yaml:2: pools[0].keepalive: expected an integer from 0 to 10000, got \"10001\"" },
    { "pools:\n  - {name: a, backends: [1.2.3.4:5], slow_start: 10 s}\n",
      "t.yaml:2: pools[0].slow_start: expected a duration like \"500ms\", \"10s\", \"2m\" or \"1h\", got \"10 s\"" },
    { "pools:\n  - {name: a, backends: [1.2.3.4:5], slow_start: 25h}\n",
      "t.yaml:2: pools[0].slow_start: must be from 0ms to 24h, got \"25h\"" },

    /* discovered pools */
    { "pools:\n  - name: app\n    backends: [127.0.0.1:9001]\n    discovery:\n      service: web\n"
      "      registries: [127.0.0.1:9950]\n",
      "t.yaml:4: pools[0].discovery: a pool takes its backends from \"backends\" or from \"discovery\", not both" },
    { "pools:\n  - name: app\n    discovery:\n      service: web\n      registries: [127.0.0.1:0]\n",
      "t.yaml:5: pools[0].discovery.registries[0]: expected a registry address HOST:PORT or http://HOST:PORT, "
      "got \"127.0.0.1:0\"" },
    { "pools:\n  - name: app\n    discovery:\n      registries: [127.0.0.1:9950]\n",
      "t.yaml:4: pools[0].discovery: missing required key \"service\"" },
    { "pools:\n  - name: app\n    discovery:\n      service: web\n      registries: 127.0.0.1:9950\n"
      "      max_members: 5000\n",
      "t.yaml:6: pools[0].discovery.max_members: expected an integer from 1 to 4096, got \"5000\"" },

    /* health checks */
    { "pools:\n  - name: a\n    backends: [1.2.3.4:5]\n    health_check:\n      interval: 5ms\n",
      "t.yaml:5: pools[0].health_check.interval: must be from 10ms to 24h, got \"5ms\"" },
    { "pools:\n  - name: a\n    backends: [1.2.3.4:5]\n    health_check:\n      timeout: 3s\n",
      "t.yaml:5: pools[0].health_check.timeout: must not be longer than interval (2s)" },
    { "pools:\n  - name: a\n    backends: [1.2.3.4:5]\n    health_check:\n      interval: 500ms\n",
      "t.yaml:5: pools[0].health_check.interval: must not be shorter than timeout (1s)" },
    { "pools:\n  - name: a\n    backends: [1.2.3.4:5]\n    health_check:\n      rise: 0\n",
      "t.yaml:5: pools[0].health_check.rise: expected an integer from 1 to 100, got \"0\"" },
    { "pools:\n  - name: a\n    backends: [1.2.3.4:5]\n    health_check:\n      type: udp\n",
      "t.yaml:5: pools[0].health_check.type: expected none, tcp or http, got \"udp\"" },
    { "pools:\n  - name: a\n    backends: [1.2.3.4:5]\n    health_check:\n      path: /health\n",
      "t.yaml:5: pools[0].health_check.path: only used with type: http (type is none)" },
    { "pools:\n  - name: a\n    backends: [1.2.3.4:5]\n    health_check:\n      type: http\n      path: health\n",
      "t.yaml:6: pools[0].health_check.path: expected a URL path starting with \"/\" and without spaces, got \"health\"" },
    { "pools:\n  - name: a\n    backends: [1.2.3.4:5]\n    health_check:\n      type: http\n"
      "      expect_status: 600\n",
      "t.yaml:6: pools[0].health_check.expect_status: expected a status code or range like \"200\" or \"200-399\" "
      "(codes 100 to 599), got \"600\"" },
    { "pools:\n  - name: a\n    backends: [1.2.3.4:5]\n    health_check:\n      type: http\n"
      "      expect_status: 399-200\n",
      "t.yaml:6: pools[0].health_check.expect_status: range start 399 is greater than its end 200" },
    { "pools:\n  - name: a\n    backends: [1.2.3.4:5]\n    passive:\n      eject_time: 5m\n"
      "      max_eject_time: 1m\n",
      "t.yaml:6: pools[0].passive.max_eject_time: must not be shorter than eject_time (5m)" },
    { "pools:\n  - name: a\n    backends: [1.2.3.4:5]\n    passive:\n      eject_time: 1h\n",
      "t.yaml:5: pools[0].passive.eject_time: must not be longer than max_eject_time (5m)" },

    /* listeners */
    { MIN_POOLS "listeners:\n  - name: web\n    listen: 127.0.0.1:8080\n    pool: apps\n",
      "t.yaml:7: listeners[0].pool: no pool named \"apps\"" },
    { MIN_POOLS "listeners:\n  - name: web\n    pool: app\n",
      "t.yaml:5: listeners[0]: missing required key \"listen\"" },
    { MIN_POOLS "listeners:\n  - listen: 127.0.0.1:8080\n    pool: app\n",
      "t.yaml:5: listeners[0]: missing required key \"name\"" },
    { MIN_POOLS "listeners:\n  - name: web\n    listen: 127.0.0.1:8080\n",
      "t.yaml:5: listeners[0]: an http listener needs a pool or at least one route" },
    { MIN_POOLS "listeners:\n  - name: web\n    listen: 127.0.0.1:8080\n    protocol: udp\n",
      "t.yaml:5: listeners[0]: missing required key \"pool\" (a udp listener forwards to one pool)" },
    { MIN_POOLS "listeners:\n  - name: web\n    listen: 127.0.0.1:8080\n    routes:\n      - pool: app\n"
                "    protocol: tcp\n    pool: app\n",
      "t.yaml:7: listeners[0].routes: routes are only allowed on http listeners (protocol is tcp)" },
    { MIN_POOLS "listeners:\n  - name: web\n    listen: 127.0.0.1:8080\n    protocol: quic\n    pool: app\n",
      "t.yaml:7: listeners[0].protocol: expected http, tcp or udp, got \"quic\"" },
    { MIN_POOLS "listeners:\n  - name: web\n    listen: 127.0.0.1:8080\n    routes:\n      - path_prefix: /a\n",
      "t.yaml:8: listeners[0].routes[0]: missing required key \"pool\" (or \"redirect\" or \"return\")" },
    { MIN_POOLS "listeners:\n  - name: web\n    listen: 127.0.0.1:8080\n    routes:\n      - {pool: nope}\n",
      "t.yaml:8: listeners[0].routes[0].pool: no pool named \"nope\"" },
    { MIN_POOLS "listeners:\n  - name: web\n    listen: 127.0.0.1:8080\n    routes:\n"
                "      - {pool: app, path_prefix: v1}\n",
      "t.yaml:8: listeners[0].routes[0].path_prefix: expected a path starting with \"/\" and without spaces, got \"v1\"" },
    { MIN_POOLS "listeners:\n  - name: web\n    listen: 127.0.0.1:8080\n    routes:\n"
                "      - {pool: app, host: \"a..b\"}\n",
      "t.yaml:8: listeners[0].routes[0].host: expected a host name like \"api.example.com\" or \"*.example.com\", "
      "got \"a..b\"" },
    { MIN_POOLS "listeners:\n  - name: web\n    listen: 127.0.0.1:8080\n    routes:\n"
                "      - {pool: app, host: A.com, path_prefix: /x}\n      - {pool: app, host: a.com, path_prefix: /x}\n",
      "t.yaml:9: listeners[0].routes[1]: duplicate route: same host and path_prefix as routes[0] (line 8)" },
    { MIN_POOLS MIN_LISTENERS "  - name: web\n    listen: 127.0.0.1:8081\n    pool: app\n",
      "t.yaml:8: listeners[1].name: duplicate listener name \"web\" (first defined on line 5)" },
    { MIN_POOLS MIN_LISTENERS "  - name: raw\n    listen: 127.0.0.1:8080\n    protocol: tcp\n    pool: app\n",
      "t.yaml:9: listeners[1].listen: address 127.0.0.1:8080 is already used by listener \"web\" (line 5)" },
    { MIN_POOLS "listeners:\n  - name: web\n    listen: 127.0.0.1:9900\n    pool: app\n",
      "t.yaml:6: listeners[0].listen: address 127.0.0.1:9900 is already used by the admin API (admin.listen)" },
    { MIN_POOLS MIN_LISTENERS "    timeouts: {idle: 0}\n",
      "t.yaml:8: listeners[0].timeouts.idle: must be from 1ms to 24h, got \"0\"" },
    { MIN_POOLS MIN_LISTENERS "    timeouts: {conect: 1s}\n",
      "t.yaml:8: listeners[0].timeouts.conect: unknown key (did you mean \"connect\"?)" },
    { MIN_POOLS MIN_LISTENERS "    limits: {buffer_size: 512}\n",
      "t.yaml:8: listeners[0].limits.buffer_size: must be from 1k to 16m, got \"512\"" },
    { MIN_POOLS MIN_LISTENERS "    limits: {max_request_line: 2m}\n",
      "t.yaml:8: listeners[0].limits.max_request_line: must be from 256 to 1m, got \"2m\"" },
    { MIN_POOLS MIN_LISTENERS "    limits: {max_headers: 129}\n",
      "t.yaml:8: listeners[0].limits.max_headers: expected an integer from 1 to 128, got \"129\"" },
    { MIN_POOLS MIN_LISTENERS "    limits: {max_connections: 0}\n",
      "t.yaml:8: listeners[0].limits.max_connections: expected an integer from 1 to 1000000, got \"0\"" },
    { MIN_POOLS MIN_LISTENERS "    limits: {buffer_size: 8 kb}\n",
      "t.yaml:8: listeners[0].limits.buffer_size: expected a size like \"512\", \"16k\" or \"1m\", got \"8 kb\"" },
    { MIN_POOLS MIN_LISTENERS "    limits:\n      max_request_line: 64k\n      max_header_size: 32k\n",
      "t.yaml:10: listeners[0].limits.max_header_size: must be at least max_request_line (64k)" },
    { MIN_POOLS MIN_LISTENERS "    limits:\n      max_request_line: 64k\n",
      "t.yaml:9: listeners[0].limits.max_request_line: must not be larger than max_header_size (32k)" },
    { MIN_POOLS MIN_LISTENERS "    splice: yes\n", "t.yaml:8: listeners[0].splice: expected true or false, got \"yes\"" },
    { MIN_POOLS MIN_LISTENERS "    timeouts: {client_body: 25h}\n",
      "t.yaml:8: listeners[0].timeouts.client_body: must be from 1ms to 24h, got \"25h\"" },
    { MIN_POOLS MIN_LISTENERS "    limits: {min_body_rate: 2g}\n",
      "t.yaml:8: listeners[0].limits.min_body_rate: must be from 0 to 1g, got \"2g\"" },
    { MIN_POOLS MIN_LISTENERS "    limits: {min_body_rate: fast}\n",
      "t.yaml:8: listeners[0].limits.min_body_rate: expected a size like \"512\", \"16k\" or \"1m\", got \"fast\"" },
    { MIN_POOLS MIN_LISTENERS "    allow_underscores_in_headers: on\n",
      "t.yaml:8: listeners[0].allow_underscores_in_headers: expected true or false, got \"on\"" },
    { MIN_POOLS "listeners:\n  - {name: t, listen: 1.2.3.4:80, protocol: tcp, pool: app,\n"
      "     allow_underscores_in_headers: true}\n",
      "t.yaml:6: listeners[0].allow_underscores_in_headers: only for http listeners (protocol is tcp)" },
    { MIN_POOLS MIN_LISTENERS "    access_log_format: xml\n",
      "t.yaml:8: listeners[0].access_log_format: expected combined, json or a name of log_formats, got \"xml\"" },
    { MIN_POOLS MIN_LISTENERS "    access_log: \"syslog:server=10.0.0.1:514,tag=a/b\"\n",
      "t.yaml:8: listeners[0].access_log: syslog: tag must be 1 to 32 of A-Z a-z 0-9 _ . -, got \"a/b\"" },
    { "listeners: []\npools: []\nlisteners: []\n", "t.yaml:3: listeners: duplicate key (first set on line 1)" },
};

static void test_single_errors(void **state)
{
    for (size_t i = 0; i < sizeof single_errors / sizeof single_errors[0]; i++)
        expect_error(single_errors[i].yaml, single_errors[i].error);
}

/* ------------------------------------------------------------------------ */

static void test_multiple_errors_collected(void **state)
{
    static const char yaml[] = "workers: many\n"                      /* 1 */
                               "log: {level: loud}\n"                 /* 2 */
                               "pools:\n"                             /* 3 */
                               "  - name: app\n"                      /* 4 */
                               "    retries: 99\n"                    /* 5 */
                               "    backends:\n"                      /* 6 */
                               "      - 127.0.0.1:70000\n"            /* 7 */
                               "      - address: 127.0.0.1:9002\n"    /* 8 */
                               "        wieght: 2\n"                  /* 9 */
                               "listeners:\n"                         /* 10 */
                               "  - name: web\n"                      /* 11 */
                               "    listen: 127.0.0.1:8080\n"         /* 12 */
                               "    pool: apps\n";                    /* 13 */
    static const char *const want[] = {
        "t.yaml:1: workers: expected \"auto\" or an integer from 1 to 256, got \"many\"",
        "t.yaml:2: log.level: expected debug, info, warn or error, got \"loud\"",
        "t.yaml:5: pools[0].retries: expected an integer from 0 to 10, got \"99\"",
        "t.yaml:7: pools[0].backends[0].address: port must be a number from 0 to 65535",
        "t.yaml:9: pools[0].backends[1].wieght: unknown key (did you mean \"weight\"?)",
        "t.yaml:13: listeners[0].pool: no pool named \"apps\"",
    };
    expect_errors(yaml, want, sizeof want / sizeof want[0]);
}

/* Listeners are checked after pools whatever the key order, so a pool
 * defined below its user resolves. */
static void test_listeners_before_pools(void **state)
{
    struct sl_config *cfg = load_ok(MIN_LISTENERS MIN_POOLS);
    assert_int_equal(P(cfg)->listeners[0].default_pool, 0);
    config_free(cfg);
}

static void test_no_pools_with_listeners(void **state)
{
    static const char *const want[] = {
        "t.yaml:3: listeners[0].pool: no pool named \"app\"",
        "t.yaml:1: pools: at least one pool is required when listeners are defined",
    };
    expect_errors("listeners:\n  - {name: web, listen: 127.0.0.1:8080,\n     pool: app}\n", want, 2);
}

/* A syntax error stops the load: nothing after it is reported. */
static void test_syntax_error_stops(void **state)
{
    expect_error("bogus: 1\nworkers: [\n",
                 "t.yaml:3: (root): YAML syntax error: did not find expected node content "
                 "(while parsing a flow node on line 3)");
}

static void test_nesting_limit(void **state)
{
    char yaml[300];
    size_t o = 0;
    o += (size_t)snprintf(yaml, sizeof yaml, "x: ");
    for (int i = 0; i < 64; i++)
        yaml[o++] = '[';
    for (int i = 0; i < 64; i++)
        yaml[o++] = ']';
    yaml[o] = '\0';
    /* 65 levels counting the root mapping. */
    expect_error(yaml, "t.yaml:1: (root): nesting is deeper than 64 levels");
    /* 64 levels parse; the unknown key is the only problem. */
    memmove(yaml + 4, yaml + 5, o - 5);
    yaml[o - 2] = '\0';
    expect_error(yaml, "t.yaml:1: x: unknown key");
}

static void test_size_limit(void **state)
{
    size_t len = (16u << 20) + 1;
    char *big = calloc(1, len);
    assert_non_null(big);
    struct config_errors errs = { 0 };
    assert_null(config_load_string("big.yaml", big, len, &errs));
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.lines[0], "big.yaml:0: (root): configuration is larger than 16 MiB");
    config_errors_free(&errs);
    free(big);
}

static void test_error_cap(void **state)
{
    size_t cap = 200 * 16;
    char *yaml = malloc(cap);
    size_t o = 0;
    for (int i = 0; i < 200; i++)
        o += (size_t)snprintf(yaml + o, cap - o, "junk%d: 1\n", i);
    struct config_errors errs = { 0 };
    assert_null(load(yaml, &errs));
    assert_int_equal(errs.n, 101);
    assert_string_equal(errs.lines[0], "t.yaml:1: junk0: unknown key");
    assert_string_equal(errs.lines[99], "t.yaml:100: junk99: unknown key");
    assert_string_equal(errs.lines[100], "t.yaml:101: (root): too many errors, stopping after 100");
    config_errors_free(&errs);
    free(yaml);
}

/* Control characters in keys must not break the one-line format. */
static void test_error_lines_are_single_lines(void **state)
{
    expect_error("\"a\\nb\\\"c\": 1\n", "t.yaml:1: a\\x0ab\\\"c: unknown key");
}

static void test_load_file(void **state)
{
    char path[] = "/tmp/sluice_test_config_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(full_yaml, f);
    fclose(f);

    struct config_errors errs = { 0 };
    struct sl_config *cfg = config_load(path, &errs);
    assert_non_null(cfg);
    assert_int_equal(errs.n, 0);
    assert_string_equal(cfg->path, path);
    assert_int_equal(P(cfg)->n_listeners, 2);
    config_free(cfg);

    /* Errors name the file as given. */
    f = fopen(path, "w");
    fputs("workers: 2\nlog: {level: x}\n", f);
    fclose(f);
    assert_null(config_load(path, &errs));
    assert_int_equal(errs.n, 1);
    char want[128];
    snprintf(want, sizeof want, "%s:2: log.level: expected debug, info, warn or error, got \"x\"", path);
    assert_string_equal(errs.lines[0], want);
    config_errors_free(&errs);
    unlink(path);
}

static void test_cannot_open(void **state)
{
    struct config_errors errs = { 0 };
    assert_null(config_load("/nonexistent/sluice.yaml", &errs));
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.lines[0], "/nonexistent/sluice.yaml:0: (root): cannot open: No such file or directory");
    config_errors_free(&errs);

    assert_null(config_load("/", &errs));
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.lines[0], "/:0: (root): cannot read: Is a directory");
    config_errors_free(&errs);
}

/* errs may be NULL; text may be NULL when len is 0. */
static void test_optional_arguments(void **state)
{
    assert_null(config_load_string("x", NULL, 0, NULL));
    assert_null(config_load("/nonexistent/sluice.yaml", NULL));
    static const char yaml[] = "workers: 1\n";
    struct sl_config *cfg = config_load_string(NULL, yaml, strlen(yaml), NULL);
    assert_non_null(cfg);
    assert_string_equal(cfg->path, "<string>");
    config_free(cfg);
    config_free(NULL);
    config_errors_free(NULL);
}

/* Only `len` bytes are read: the text need not be NUL-terminated. */
static void test_length_respected(void **state)
{
    static const char text[] = "workers: 3\nbogus: 1\n";
    struct sl_config *cfg = config_load_string("t.yaml", text, 11, NULL);
    assert_non_null(cfg);
    assert_int_equal(P(cfg)->workers, 3);
    config_free(cfg);
}


/* A pool fed by discovery has no fixed backends and max_members slots. */
static void test_discovered_pool(void **state)
{
    struct sl_config *cfg = load_ok("pools:\n  - name: web\n    discovery:\n      service: web\n"
                                    "      registries: [127.0.0.1:9950, 127.0.0.1:9951]\n      max_members: 16\n"
                                    "listeners:\n  - name: l\n    listen: 127.0.0.1:8080\n    pool: web\n");
    const struct cfg_pool *p = &proxy_conf(cfg)->pools[0];
    assert_non_null(p->discovery);
    assert_int_equal(p->n_backends, 0);
    assert_null(p->backends);
    assert_string_equal(p->discovery->service, "web");
    assert_string_equal(p->discovery->registries, "127.0.0.1:9950,127.0.0.1:9951");
    assert_int_equal(cfg_pool_slots(p), 16);
    config_free(cfg);
}

int main(void)
{
    config_register_section(&proxy_conf_section);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_config),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_empty_sections),
        cmocka_unit_test(test_small_values),
        cmocka_unit_test(test_hash_keys_and_status),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_single_errors),
        cmocka_unit_test(test_multiple_errors_collected),
        cmocka_unit_test(test_listeners_before_pools),
        cmocka_unit_test(test_no_pools_with_listeners),
        cmocka_unit_test(test_syntax_error_stops),
        cmocka_unit_test(test_nesting_limit),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_error_cap),
        cmocka_unit_test(test_error_lines_are_single_lines),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_discovered_pool),
        cmocka_unit_test(test_cannot_open),
        cmocka_unit_test(test_optional_arguments),
        cmocka_unit_test(test_length_respected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
