/* Unit tests for the configuration loader (src/core/config.c). */
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

static struct sl_config *load(const char *yaml, struct config_errors *errs)
{
    return config_load_string("t.yaml", yaml, strlen(yaml), errs);
}

static void dump_errors(const struct config_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        print_message("  error: %s\n", errs->lines[i]);
}

/* Loading must succeed with no errors. Caller frees. */
static struct sl_config *load_ok(const char *yaml)
{
    struct config_errors errs = { 0 };
    struct sl_config *cfg = load(yaml, &errs);
    if (!cfg || errs.n)
        dump_errors(&errs);
    assert_non_null(cfg);
    assert_int_equal(errs.n, 0);
    config_errors_free(&errs);
    return cfg;
}

/* Loading must fail with exactly the given error lines, in order. */
static void expect_errors(const char *yaml, const char *const *want, size_t n_want)
{
    struct config_errors errs = { 0 };
    struct sl_config *cfg = load(yaml, &errs);
    bool same = errs.n == n_want;
    for (size_t i = 0; same && i < n_want; i++)
        same = strcmp(errs.lines[i], want[i]) == 0;
    if (!same) {
        print_message("for YAML:\n%s\n", yaml);
        dump_errors(&errs);
    }
    assert_null(cfg);
    assert_int_equal(errs.n, n_want);
    for (size_t i = 0; i < n_want; i++)
        assert_string_equal(errs.lines[i], want[i]);
    config_errors_free(&errs);
}

static void expect_error(const char *yaml, const char *want)
{
    expect_errors(yaml, &want, 1);
}

/* A small valid config; tests append to it or edit copies of it. */
#define MIN_POOLS                                                                                    \
    "pools:\n"                        /* 1 */                                                        \
    "  - name: app\n"                 /* 2 */                                                        \
    "    backends: [127.0.0.1:9001]\n" /* 3 */
#define MIN_LISTENERS                                                                                \
    "listeners:\n"                    /* 4 */                                                        \
    "  - name: web\n"                 /* 5 */                                                        \
    "    listen: 127.0.0.1:8080\n"    /* 6 */                                                        \
    "    pool: app\n"                 /* 7 */

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
    assert_int_equal(cfg->workers, 4);
    assert_int_equal(cfg->log_level, LOG_WARN);
    assert_string_equal(cfg->log_file, "/var/log/sluice.log");
    assert_true(cfg->admin_enabled);
    assert_string_equal(cfg->admin_addr.text, "127.0.0.1:9999");

    assert_int_equal(cfg->n_pools, 2);
    const struct cfg_pool *p = &cfg->pools[0];
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
    assert_int_equal(cfg->pools[1].algorithm, LB_LEAST_CONN);
    assert_int_equal(cfg->pools[1].n_backends, 1);

    assert_int_equal(cfg->n_listeners, 2);
    const struct cfg_listener *l = &cfg->listeners[0];
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
    const struct cfg_listener *u = &cfg->listeners[1];
    assert_int_equal(u->proto, PROTO_UDP);
    assert_int_equal(u->default_pool, 1);
    assert_int_equal(u->n_routes, 0);

    config_free(cfg);
}

static void test_defaults(void **state)
{
    struct sl_config *cfg = load_ok(MIN_POOLS MIN_LISTENERS);

    assert_int_equal(cfg->workers, 0);
    assert_int_equal(cfg->log_level, LOG_INFO);
    assert_null(cfg->log_file);
    assert_true(cfg->admin_enabled);
    assert_string_equal(cfg->admin_addr.text, "127.0.0.1:9900");

    const struct cfg_pool *p = &cfg->pools[0];
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

    const struct cfg_listener *l = &cfg->listeners[0];
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
    assert_int_equal(cfg->log_level, LOG_INFO);
    assert_int_equal(cfg->pools[0].health.rise, 2);
    assert_int_equal(cfg->pools[0].passive.max_fails, 3);
    assert_int_equal(cfg->n_listeners, 0);
    config_free(cfg);
}

static void test_small_values(void **state)
{
    struct sl_config *cfg = load_ok("workers: auto\nlog: {level: debug, file: stderr}\n"
                                    "admin: {listen: off}\n");
    assert_int_equal(cfg->workers, 0);
    assert_int_equal(cfg->log_level, LOG_DEBUG);
    assert_null(cfg->log_file);
    assert_false(cfg->admin_enabled);
    config_free(cfg);

    cfg = load_ok("workers: 256\n");
    assert_int_equal(cfg->workers, 256);
    config_free(cfg);

    cfg = load_ok(MIN_POOLS "listeners:\n  - {name: t, listen: 1.2.3.4:80, protocol: tcp, pool: app,"
                            " access_log: \"off\", splice: True}\n");
    assert_int_equal(cfg->listeners[0].proto, PROTO_TCP);
    assert_null(cfg->listeners[0].access_log);
    assert_true(cfg->listeners[0].splice);
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
    assert_int_equal(cfg->pools[0].hash_key, HASH_KEY_URI);
    assert_int_equal(cfg->pools[1].hash_key, HASH_KEY_COOKIE);
    assert_string_equal(cfg->pools[1].hash_key_name, "sid");
    assert_int_equal(cfg->pools[2].hash_key, HASH_KEY_CLIENT_IP);
    assert_int_equal(cfg->pools[2].health.status_min, 204);
    assert_int_equal(cfg->pools[2].health.status_max, 204);
    assert_int_equal(cfg->pools[3].health.type, HEALTH_TCP);
    assert_int_equal(config_pool_index(cfg, "d.e_f-9"), 3);
    assert_int_equal(config_pool_index(cfg, "zzz"), -1);
    config_free(cfg);
}

static void test_names(void **state)
{
    assert_string_equal(lb_algorithm_name(LB_ROUND_ROBIN), "round_robin");
    assert_string_equal(lb_algorithm_name(LB_LEAST_CONN), "least_conn");
    assert_string_equal(lb_algorithm_name(LB_P2C), "p2c");
    assert_string_equal(lb_algorithm_name(LB_HASH), "hash");
    assert_string_equal(log_level_name(LOG_DEBUG), "debug");
    assert_string_equal(log_level_name(LOG_ERROR), "error");
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
        assert_int_equal(parse_duration_ms(good[i].in, &v), 0);
        assert_int_equal(v, good[i].ms);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint32_t v = 12345;
        if (parse_duration_ms(bad[i], &v) == 0)
            fail_msg("parse_duration_ms accepted \"%s\"", bad[i]);
        assert_int_equal(v, 12345); /* untouched on failure */
    }
    uint32_t v;
    assert_int_not_equal(parse_duration_ms(NULL, &v), 0);
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
        assert_int_equal(parse_size(good[i].in, &v), 0);
        assert_int_equal(v, good[i].n);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint32_t v = 7;
        if (parse_size(bad[i], &v) == 0)
            fail_msg("parse_size accepted \"%s\"", bad[i]);
        assert_int_equal(v, 7);
    }
    uint32_t v;
    assert_int_not_equal(parse_size(NULL, &v), 0);
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
    { "log: {file: \"\"}\n", "t.yaml:1: log.file: expected a file path or \"stderr\", got \"\"" },
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
      "t.yaml:8: listeners[0].routes[0]: missing required key \"pool\"" },
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
      "t.yaml:8: listeners[0].access_log_format: expected combined or json, got \"xml\"" },
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
    assert_int_equal(cfg->listeners[0].default_pool, 0);
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
    assert_int_equal(cfg->n_listeners, 2);
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
    assert_int_equal(cfg->workers, 3);
    config_free(cfg);
}


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
    const struct cfg_l4 *l4 = &cfg->l4;
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
    assert_int_equal(s->proto, PROTO_TCP);
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
    assert_int_equal(s->proto, PROTO_UDP);
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
    assert_true(cfg->l4.present);
    assert_false(cfg->l4.xdp_generic);
    assert_int_equal(cfg->l4.seed, 0x5eed1a4bu);
    assert_int_equal(cfg->l4.syn_cap, 100000);
    assert_int_equal(cfg->l4.tun_src4.family, 0);
    assert_int_equal(cfg->l4.services[0].proto, PROTO_TCP);
    assert_int_equal(cfg->l4.services[0].mode, L4_FWD_DR);
    assert_int_equal(cfg->l4.services[0].scheduler, L4_SCHED_MAGLEV);
    assert_int_equal(cfg->l4.services[0].health.type, HEALTH_NONE);
    assert_int_equal(cfg->l4.max_services, 16);
    assert_int_equal(cfg->l4.tun_mtu, 0);
    assert_null(cfg->l4.tx_interface);
    config_free(cfg);

    cfg = load_ok("l4:\n  interfaces: [lb0, lb1]\n  tx_interface: lb1\n  tun_mtu: 1500\n  max_services: 2\n"
                  "  services:\n    - { vip: 10.0.0.1:80, reals: [10.0.0.2] }\n    - { vip: 10.0.0.1:81, reals: [10.0.0.2] }\n"
                  "    - { vip: 10.0.0.1:82, reals: [10.0.0.2] }\n");
    assert_string_equal(cfg->l4.tx_interface, "lb1");
    assert_int_equal(cfg->l4.tun_mtu, 1500);
    assert_int_equal(cfg->l4.max_services, 3); /* raised to the file's count */
    config_free(cfg);

    /* Without an l4: section nothing changes for the proxy. */
    cfg = load_ok(MIN_POOLS MIN_LISTENERS);
    assert_false(cfg->l4.present);
    assert_int_equal(cfg->l4.n_services, 0);
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
                 "t.yaml:4: l4.services[0]: missing required key \"reals\"");
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

int main(void)
{
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
        cmocka_unit_test(test_cannot_open),
        cmocka_unit_test(test_optional_arguments),
        cmocka_unit_test(test_length_respected),
        cmocka_unit_test(test_l4_full),
        cmocka_unit_test(test_l4_defaults),
        cmocka_unit_test(test_l4_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
