/* Unit tests for core/admin with the proxy's mount (proxy/proxy_admin.c,
 * core/pool_view.c): /metrics rendering, PATCH body validation,
 * routing through admin_handle (no network), and the HTTP server itself on
 * 127.0.0.1:0 driven by the test's event loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/admin.h"
#include "core/log.h"
#include "core/pool_view.h"
#include "proxy/proxy_admin.h"
#include "proxy/proxy_conf.h"
#include "proxy/shared.h"

#define WEIRD_POOL "we\"ird\\pool\nname"

/* ------------------------------------------------------------------ */
/* A configuration built by hand: pool "app" with two backends, a pool
 * whose name needs escaping, one listener. */

struct fixture {
    struct cfg_backend app_b[2];
    struct cfg_backend weird_b[1];
    struct cfg_pool pools[2];
    struct cfg_listener listener;
    struct proxy_conf cfg;
    struct shared_state *sh;
    int pids[2];
    struct proxy_admin pa;
    struct admin_site site;
};

static void set_addr(struct sl_addr *a, const char *text)
{
    const char *why = NULL;
    assert_int_equal(addr_parse(text, a, &why), 0);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    set_addr(&f->app_b[0].addr, "127.0.0.1:9001");
    f->app_b[0].weight = 1;
    set_addr(&f->app_b[1].addr, "[::1]:9002");
    f->app_b[1].weight = 3;
    set_addr(&f->weird_b[0].addr, "10.0.0.1:80");
    f->weird_b[0].weight = 2;
    f->pools[0] = (struct cfg_pool){.name = "app", .algorithm = LB_ROUND_ROBIN, .backends = f->app_b, .n_backends = 2};
    f->pools[1] = (struct cfg_pool){.name = WEIRD_POOL, .algorithm = LB_LEAST_CONN, .backends = f->weird_b,
                                    .n_backends = 1};
    f->listener.name = "web";
    f->cfg.pools = f->pools;
    f->cfg.n_pools = 2;
    f->cfg.listeners = &f->listener;
    f->cfg.n_listeners = 1;
    f->sh = shared_create(&f->cfg, 2);
    if (!f->sh)
        return -1;
    f->pids[0] = 4242;
    f->pids[1] = 4343;
    f->site.status = (struct admin_status){.started_ms = ev_clock_ms(), .reloads = 1, .worker_restarts = 5,
                                           .worker_pids = f->pids, .n_workers = 2, .version = "9.9.9-test",
                                           .config_path = "/etc/sluice/test.yaml"};
    f->pa = (struct proxy_admin){.cfg = &f->cfg, .sh = f->sh};
    if (proxy_admin_mount(&f->site, &f->pa) < 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    shared_destroy(f->sh);
    free(f);
    return 0;
}

static struct shared_backend *backend(struct fixture *f, size_t g) { return &f->sh->backends[g]; }

/* ------------------------------------------------------------------ */
/* /metrics */

/* Check the exposition format line by line: HELP then TYPE for each
 * family, each family once, every sample belongs to the family just
 * declared (a histogram's: NAME_bucket, NAME_sum, NAME_count), and every
 * sample line is `name{labels} value` with an integer or decimal value. */
static void check_exposition(const char *text)
{
    char family[128] = "";
    bool histogram = false;
    char seen[8192] = " ";
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl);
        char line[1024];
        size_t n = (size_t)(nl - p);
        assert_true(n < sizeof line);
        memcpy(line, p, n);
        line[n] = '\0';
        p = nl + 1;
        if (strncmp(line, "# HELP ", 7) == 0) {
            assert_int_equal(sscanf(line + 7, "%127s", family), 1);
            char key[140];
            snprintf(key, sizeof key, " %s ", family);
            assert_null(strstr(seen, key));       /* each family once */
            assert_true(strlen(seen) + strlen(key) < sizeof seen);
            strcat(seen, key + 1);
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            char name[128], type[16];
            assert_int_equal(sscanf(line + 7, "%127s %15s", name, type), 2);
            assert_string_equal(name, family);
            assert_true(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
                        strcmp(type, "histogram") == 0);
            histogram = strcmp(type, "histogram") == 0;
            continue;
        }
        size_t fl = strlen(family);
        assert_true(fl > 0);
        assert_true(strncmp(line, family, fl) == 0);
        if (histogram) {
            static const char *const parts[] = { "_bucket", "_sum", "_count" };
            size_t k = 0;
            while (k < 3 && strncmp(line + fl, parts[k], strlen(parts[k])) != 0)
                k++;
            assert_true(k < 3);
            fl += strlen(parts[k]);
        }
        assert_true(line[fl] == '{' || line[fl] == ' ');
        const char *value = strrchr(line, ' ');
        assert_non_null(value);
        char *end;
        strtod(value + 1, &end);
        assert_true(*end == '\0' && end != value + 1);
    }
}

static void test_metrics_render(void **state)
{
    struct fixture *f = *state;
    atomic_store(&shared_bctr(f->sh, 0, 0)->requests, 5);
    atomic_store(&shared_bctr(f->sh, 1, 0)->requests, 2);
    atomic_store(&shared_bctr(f->sh, 0, 0)->responses[2], 4);
    atomic_store(&shared_bctr(f->sh, 1, 0)->responses[5], 1);
    atomic_store(&shared_bctr(f->sh, 1, 0)->bytes_received, 1000);
    atomic_store(&shared_bctr(f->sh, 0, 0)->bytes_sent, 300);
    atomic_store(&shared_lctr(f->sh, 0, 0)->bytes_received, 40);
    atomic_store(&shared_lctr(f->sh, 1, 0)->bytes_received, 2);
    atomic_store(&shared_lctr(f->sh, 1, 0)->bytes_sent, 77);
    atomic_store(&shared_bctr(f->sh, 1, 0)->active, 3);
    atomic_store(&shared_lctr(f->sh, 0, 0)->connections, 3);
    atomic_store(&shared_lctr(f->sh, 1, 0)->connections, 4);
    atomic_store(&shared_lctr(f->sh, 1, 0)->responses[4], 9);
    atomic_store(&backend(f, 1)->health, HEALTH_DOWN);
    backend(f, 0)->checks_ok = 11;
    backend(f, 0)->checks_failed = 2;
    /* Histograms: a pool's are its backends' over every worker. */
    latency_observe(&shared_bctr(f->sh, 0, 0)->header_time, 3000);
    latency_observe(&shared_bctr(f->sh, 1, 1)->header_time, 40000);
    latency_observe(&shared_lctr(f->sh, 1, 0)->request_time, 700);

    size_t len = 0;
    char *m = admin_render_metrics(&f->site, &len);
    assert_non_null(m);
    assert_int_equal(len, strlen(m));
    check_exposition(m);

    static const char *const want[] = {
        "# TYPE sluice_backend_requests_total counter\n",
        "\nsluice_backend_requests_total{pool=\"app\",backend=\"127.0.0.1:9001\"} 7\n",
        "\nsluice_backend_responses_total{pool=\"app\",backend=\"127.0.0.1:9001\",code=\"2xx\"} 4\n",
        "\nsluice_backend_responses_total{pool=\"app\",backend=\"127.0.0.1:9001\",code=\"5xx\"} 1\n",
        "\nsluice_backend_bytes_received_total{pool=\"app\",backend=\"127.0.0.1:9001\"} 1000\n",
        "\nsluice_backend_bytes_sent_total{pool=\"app\",backend=\"127.0.0.1:9001\"} 300\n",
        "\nsluice_listener_bytes_received_total{listener=\"web\"} 42\n",
        "\nsluice_listener_bytes_sent_total{listener=\"web\"} 77\n",
        "\nsluice_backend_active_connections{pool=\"app\",backend=\"127.0.0.1:9001\"} 3\n",
        "# TYPE sluice_backend_active_connections gauge\n",
        "\nsluice_backend_up{pool=\"app\",backend=\"127.0.0.1:9001\"} 1\n",
        "\nsluice_backend_up{pool=\"app\",backend=\"[::1]:9002\"} 0\n",
        "\nsluice_backend_effective_weight{pool=\"app\",backend=\"[::1]:9002\"} 0\n",
        "\nsluice_backend_weight{pool=\"app\",backend=\"[::1]:9002\"} 3\n",
        "\nsluice_backend_effective_weight{pool=\"we\\\"ird\\\\pool\\nname\",backend=\"10.0.0.1:80\"} 2\n",
        "\nsluice_backend_health_checks_total{pool=\"app\",backend=\"127.0.0.1:9001\",result=\"ok\"} 11\n",
        "\nsluice_backend_health_checks_total{pool=\"app\",backend=\"127.0.0.1:9001\",result=\"failed\"} 2\n",
        "\nsluice_listener_connections_total{listener=\"web\"} 7\n",
        "\nsluice_listener_responses_total{listener=\"web\",code=\"4xx\"} 9\n",
        "# TYPE sluice_listener_active_connections gauge\n",
        "\nsluice_workers 2\n",
        "\nsluice_worker_restarts_total 5\n",
        "\nsluice_reloads_total 1\n",
        "\nsluice_uptime_seconds ",
        "sluice_info{version=\"9.9.9-test\"} 1\n",
        "# TYPE sluice_pool_upstream_header_duration_seconds histogram\n",
        "\nsluice_pool_upstream_header_duration_seconds_bucket{pool=\"app\",le=\"0.0025\"} 0\n",
        "\nsluice_pool_upstream_header_duration_seconds_bucket{pool=\"app\",le=\"0.005\"} 1\n",
        "\nsluice_pool_upstream_header_duration_seconds_bucket{pool=\"app\",le=\"0.05\"} 2\n",
        "\nsluice_pool_upstream_header_duration_seconds_bucket{pool=\"app\",le=\"+Inf\"} 2\n",
        "\nsluice_pool_upstream_header_duration_seconds_sum{pool=\"app\"} 0.043000\n",
        "\nsluice_pool_upstream_header_duration_seconds_count{pool=\"app\"} 2\n",
        "\nsluice_pool_upstream_connect_duration_seconds_count{pool=\"app\"} 0\n",
        "\nsluice_listener_request_duration_seconds_bucket{listener=\"web\",le=\"0.001\"} 1\n",
        "\nsluice_listener_request_duration_seconds_count{listener=\"web\"} 1\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        if (!strstr(m, want[i]))
            fail_msg("metrics lack %s\n%s", want[i], m);
    }
    free(m);
}

/* The same through a configuration loaded from YAML. */
static void test_metrics_from_yaml(void **state)
{
    static const char yaml[] = "pools:\n"
                               "  - name: api\n"
                               "    backends:\n"
                               "      - {address: 127.0.0.1:7001, weight: 4}\n"
                               "      - \"[::1]:7002\"\n"
                               "listeners:\n"
                               "  - {name: front, listen: 127.0.0.1:7080, pool: api}\n";
    struct config_errors errs = {0};
    config_register_section(&proxy_conf_section);
    struct sl_config *cfg = config_load_string("inline.yaml", yaml, sizeof yaml - 1, &errs);
    if (!cfg)
        fail_msg("config: %s", errs.n ? errs.lines[0] : "?");
    struct shared_state *sh = shared_create(proxy_conf(cfg), 1);
    assert_non_null(sh);
    atomic_store(&shared_lctr(sh, 0, 0)->active, 2);
    struct proxy_admin pa = {.cfg = proxy_conf(cfg), .sh = sh};
    struct admin_site site = {.status = {.started_ms = ev_clock_ms(), .n_workers = 1}};
    assert_int_equal(proxy_admin_mount(&site, &pa), 0);
    char *m = admin_render_metrics(&site, NULL);
    assert_non_null(m);
    check_exposition(m);
    assert_non_null(strstr(m, "\nsluice_backend_weight{pool=\"api\",backend=\"127.0.0.1:7001\"} 4\n"));
    assert_non_null(strstr(m, "\nsluice_backend_effective_weight{pool=\"api\",backend=\"[::1]:7002\"} 1\n"));
    assert_non_null(strstr(m, "\nsluice_listener_active_connections{listener=\"front\"} 2\n"));
    assert_non_null(strstr(m, "sluice_info{version=\"unknown\"} 1\n"));
    free(m);
    shared_destroy(sh);
    config_free(cfg);
    config_errors_free(&errs);
}

/* A view whose cfg and shared region disagree still renders (process
 * metrics only) instead of reading out of bounds. */
static void test_metrics_inconsistent_view(void **state)
{
    struct fixture *f = *state;
    struct proxy_conf bigger = f->cfg;
    bigger.n_pools = 1;
    struct proxy_admin pa = {.cfg = &bigger, .sh = f->sh};
    struct admin_site site = {.status = f->site.status};
    assert_int_equal(proxy_admin_mount(&site, &pa), 0);
    char *m = admin_render_metrics(&site, NULL);
    assert_non_null(m);
    check_exposition(m);
    assert_null(strstr(m, "sluice_backend_requests_total{"));
    assert_null(strstr(m, "sluice_pool_upstream_header_duration_seconds_count{"));
    assert_non_null(strstr(m, "# TYPE sluice_pool_upstream_header_duration_seconds histogram\n"));
    free(m);
}

/* ------------------------------------------------------------------ */
/* PATCH bodies */

static int patch(struct fixture *f, size_t g, const char *body, char *err, size_t errlen)
{
    return proxy_admin_apply_backend_patch(f->sh, g, body, strlen(body), err, errlen);
}

static void test_patch_valid(void **state)
{
    struct fixture *f = *state;
    char err[256];
    uint64_t gen = atomic_load(&f->sh->generation);

    assert_int_equal(patch(f, 0, "{\"weight\": 5}", err, sizeof err), 0);
    assert_int_equal(atomic_load(&backend(f, 0)->weight), 5);
    assert_true(atomic_load(&f->sh->generation) > gen);

    assert_int_equal(patch(f, 0, "{\"admin\": \"draining\"}", err, sizeof err), 0);
    assert_int_equal(atomic_load(&backend(f, 0)->admin), BACKEND_DRAINING);
    assert_int_equal(shared_effective_weight(backend(f, 0), 0, ev_clock_ms()), 0);

    assert_int_equal(patch(f, 1, "{\"weight\": 0, \"admin\": \"disabled\"}", err, sizeof err), 0);
    assert_int_equal(atomic_load(&backend(f, 1)->weight), 0);
    assert_int_equal(atomic_load(&backend(f, 1)->admin), BACKEND_DISABLED);

    assert_int_equal(patch(f, 1, "{\"weight\": 1000000}", err, sizeof err), 0);
    assert_int_equal(atomic_load(&backend(f, 1)->weight), 1000000);

    /* "enabled" also forgives a passive ejection. */
    atomic_store(&backend(f, 0)->ejected_until_ms, ev_clock_ms() + 60000);
    atomic_store(&backend(f, 0)->consecutive_fails, 7);
    assert_int_equal(patch(f, 0, "{\"admin\":\"enabled\"}", err, sizeof err), 0);
    assert_int_equal(atomic_load(&backend(f, 0)->admin), BACKEND_ENABLED);
    assert_int_equal(atomic_load(&backend(f, 0)->ejected_until_ms), 0);
    assert_int_equal(atomic_load(&backend(f, 0)->consecutive_fails), 0);
    assert_int_equal(shared_effective_weight(backend(f, 0), 0, ev_clock_ms()), 5);
}

static void test_patch_invalid(void **state)
{
    struct fixture *f = *state;
    static const struct { const char *body; const char *why; } cases[] = {
        {"", "invalid JSON"},
        {"{\"weight\": 5", "line 1"},
        {"{\"weight\": 5} x", "invalid JSON"},
        {"[1]", "JSON object"},
        {"5", "JSON object"},
        {"{\"weight\": \"5\"}", "must be an integer"},
        {"{\"weight\": 1.5}", "must be an integer"},
        {"{\"weight\": true}", "must be an integer"},
        {"{\"weight\": null}", "must be an integer"},
        {"{\"weight\": -1}", "from 0 to 1000000"},
        {"{\"weight\": 1000001}", "from 0 to 1000000"},
        {"{\"weight\": 99999999999999999999999}", "invalid JSON"},
        {"{\"weight\": 5, \"weight\": 6}", "invalid JSON"},
        {"{\"admin\": 3}", "must be a string"},
        {"{\"admin\": \"paused\"}", "unknown admin state"},
        {"{\"admin\": \"Enabled\"}", "unknown admin state"},
        {"{\"colour\": 1}", "unknown field \"colour\""},
        {"{}", "nothing to change"},
        /* validated as a whole: the good half is not applied either */
        {"{\"weight\": 9, \"admin\": \"bogus\"}", "unknown admin state"},
        {"{\"admin\": \"disabled\", \"weight\": -4}", "from 0 to 1000000"},
    };
    uint64_t gen = atomic_load(&f->sh->generation);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char err[256] = "";
        if (patch(f, 0, cases[i].body, err, sizeof err) != -1)
            fail_msg("accepted %s", cases[i].body);
        if (!strstr(err, cases[i].why))
            fail_msg("%s: error \"%s\" lacks \"%s\"", cases[i].body, err, cases[i].why);
    }
    char err[256];
    /* embedded NUL and out-of-range index */
    assert_int_equal(proxy_admin_apply_backend_patch(f->sh, 0, "{\"weight\":5}\0", 13, err, sizeof err), -1);
    assert_int_equal(proxy_admin_apply_backend_patch(f->sh, 3, "{\"weight\":5}", 12, err, sizeof err), -1);
    assert_int_equal(proxy_admin_apply_backend_patch(f->sh, 0, NULL, 0, err, sizeof err), -1);
    assert_int_equal(atomic_load(&backend(f, 0)->weight), 1);
    assert_int_equal(atomic_load(&backend(f, 0)->admin), BACKEND_ENABLED);
    assert_int_equal(atomic_load(&f->sh->generation), gen);
}

/* ------------------------------------------------------------------ */
/* Routing, without sockets */

struct answer {
    int status;
    const char *allow;
    const char *ctype;
    json_t *json;                /* parsed body when JSON */
    char *text;
};

static void answer_free(struct answer *a)
{
    json_decref(a->json);
    free(a->text);
    memset(a, 0, sizeof *a);
}

static struct answer call(struct fixture *f, const char *method, const char *target, const char *body)
{
    struct admin_reply r;
    admin_handle(&f->site, method, strlen(method), target, strlen(target), body, body ? strlen(body) : 0, &r);
    struct answer a = {.status = r.status, .allow = r.allow, .ctype = r.content_type};
    assert_non_null(r.body);
    a.text = strndup(r.body, r.body_len);
    if (strcmp(r.content_type, "application/json") == 0) {
        json_error_t je;
        a.json = json_loadb(r.body, r.body_len, 0, &je);
        if (!a.json)
            fail_msg("%s %s: reply is not JSON: %s", method, target, je.text);
    }
    free(r.body);
    /* Every error is {"error": "..."}. */
    if (a.status >= 400) {
        assert_non_null(a.json);
        assert_true(json_is_string(json_object_get(a.json, "error")));
    }
    return a;
}

static void expect_status(struct fixture *f, const char *method, const char *target, const char *body, int status)
{
    struct answer a = call(f, method, target, body);
    if (a.status != status)
        fail_msg("%s %s: got %d, want %d: %s", method, target, a.status, status, a.text);
    answer_free(&a);
}

static void test_handle_pools(void **state)
{
    struct fixture *f = *state;
    atomic_store(&shared_bctr(f->sh, 1, 1)->responses[2], 6);
    struct answer a = call(f, "GET", "/api/pools", NULL);
    assert_int_equal(a.status, 200);
    assert_true(json_is_array(a.json));
    assert_int_equal(json_array_size(a.json), 2);
    json_t *app = json_array_get(a.json, 0);
    assert_string_equal(json_string_value(json_object_get(app, "name")), "app");
    assert_string_equal(json_string_value(json_object_get(app, "algorithm")), "round_robin");
    json_t *b1 = json_array_get(json_object_get(app, "backends"), 1);
    assert_string_equal(json_string_value(json_object_get(b1, "address")), "[::1]:9002");
    assert_int_equal(json_integer_value(json_object_get(b1, "weight")), 3);
    assert_int_equal(json_integer_value(json_object_get(b1, "effective_weight")), 3);
    assert_string_equal(json_string_value(json_object_get(b1, "admin")), "enabled");
    assert_string_equal(json_string_value(json_object_get(b1, "state")), "up");
    assert_int_equal(json_integer_value(json_object_get(b1, "ejected_until_ms")), 0);
    json_t *health = json_object_get(b1, "health");
    assert_string_equal(json_string_value(json_object_get(health, "last_check")), "not checked yet");
    assert_true(json_is_integer(json_object_get(health, "checks_ok")));
    json_t *ctr = json_object_get(b1, "counters");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(ctr, "responses"), "2xx")), 6);
    for (const char *const *k = (const char *const[]){"requests", "connect_failures", "upstream_errors", "retries",
                                                      "bytes_sent", "bytes_received", "active", "idle", NULL};
         *k; k++)
        assert_true(json_is_integer(json_object_get(ctr, *k)));
    answer_free(&a);

    a = call(f, "GET", "/api/pools/app", NULL);
    assert_int_equal(a.status, 200);
    assert_string_equal(json_string_value(json_object_get(a.json, "name")), "app");
    answer_free(&a);

    /* query strings and a trailing slash are fine; percent-encoded names too */
    expect_status(f, "GET", "/api/pools/?pretty=1", NULL, 200);
    expect_status(f, "GET", "/api/pools/we%22ird%5Cpool%0Aname", NULL, 200);
    expect_status(f, "HEAD", "/api/pools/app", NULL, 200);

    a = call(f, "GET", "/api/pools/nope", NULL);
    assert_int_equal(a.status, 404);
    assert_non_null(strstr(json_string_value(json_object_get(a.json, "error")), "nope"));
    answer_free(&a);

    /* an unknown pool named with bytes that are not UTF-8 still yields valid JSON */
    expect_status(f, "GET", "/api/pools/%FF%FE", NULL, 404);
}

static void test_handle_backend_changes(void **state)
{
    struct fixture *f = *state;
    const char *b6 = "/api/pools/app/backends/%5B%3A%3A1%5D%3A9002";
    struct answer a = call(f, "GET", b6, NULL);
    assert_int_equal(a.status, 200);
    assert_string_equal(json_string_value(json_object_get(a.json, "address")), "[::1]:9002");
    answer_free(&a);
    expect_status(f, "GET", "/api/pools/app/backends/[::1]:9002", NULL, 200);
    expect_status(f, "GET", "/api/pools/app/backends/localhost:9001", NULL, 200);

    a = call(f, "PATCH", b6, "{\"weight\": 7}");
    assert_int_equal(a.status, 200);
    assert_int_equal(json_integer_value(json_object_get(a.json, "weight")), 7);
    assert_int_equal(atomic_load(&backend(f, 1)->weight), 7);
    answer_free(&a);

    a = call(f, "POST", "/api/pools/app/backends/127.0.0.1:9001/drain", NULL);
    assert_int_equal(a.status, 200);
    assert_string_equal(json_string_value(json_object_get(a.json, "admin")), "draining");
    assert_string_equal(json_string_value(json_object_get(a.json, "state")), "draining");
    assert_int_equal(json_integer_value(json_object_get(a.json, "effective_weight")), 0);
    answer_free(&a);

    a = call(f, "POST", "/api/pools/app/backends/127.0.0.1:9001/disable", "ignored");
    assert_int_equal(a.status, 200);
    assert_int_equal(atomic_load(&backend(f, 0)->admin), BACKEND_DISABLED);
    answer_free(&a);

    atomic_store(&backend(f, 0)->ejected_until_ms, ev_clock_ms() + 60000);
    a = call(f, "POST", "/api/pools/app/backends/127.0.0.1:9001/enable", NULL);
    assert_int_equal(a.status, 200);
    assert_string_equal(json_string_value(json_object_get(a.json, "state")), "up");
    assert_int_equal(atomic_load(&backend(f, 0)->ejected_until_ms), 0);
    answer_free(&a);

    a = call(f, "PUT", "/api/pools/app/backends/127.0.0.1:9001/weight", "{\"weight\": 4}");
    assert_int_equal(a.status, 200);
    assert_int_equal(atomic_load(&backend(f, 0)->weight), 4);
    answer_free(&a);
    expect_status(f, "PUT", "/api/pools/app/backends/127.0.0.1:9001/weight", "{\"admin\": \"enabled\"}", 400);
    expect_status(f, "PUT", "/api/pools/app/backends/127.0.0.1:9001/weight", "{}", 400);

    a = call(f, "PATCH", b6, "{\"weight\": 7");
    assert_int_equal(a.status, 400);
    assert_non_null(strstr(json_string_value(json_object_get(a.json, "error")), "invalid JSON"));
    answer_free(&a);
}

static void test_handle_errors(void **state)
{
    struct fixture *f = *state;
    struct answer a = call(f, "DELETE", "/api/pools", NULL);
    assert_int_equal(a.status, 405);
    assert_string_equal(a.allow, "GET, HEAD");
    answer_free(&a);
    a = call(f, "GET", "/api/pools/app/backends/127.0.0.1:9001/drain", NULL);
    assert_int_equal(a.status, 405);
    assert_string_equal(a.allow, "POST");
    answer_free(&a);
    a = call(f, "POST", "/api/pools/app/backends/127.0.0.1:9001", "{}");
    assert_int_equal(a.status, 405);
    assert_string_equal(a.allow, "GET, HEAD, PATCH, DELETE");
    answer_free(&a);
    expect_status(f, "GET", "/api/pools/app/backends/127.0.0.1:9001/weight", NULL, 405);
    expect_status(f, "POST", "/metrics", NULL, 405);

    expect_status(f, "GET", "/", NULL, 404);
    expect_status(f, "GET", "/nope", NULL, 404);
    expect_status(f, "GET", "/api", NULL, 404);
    expect_status(f, "GET", "/api/pools/app/backends/1.2.3.4:1", NULL, 404);
    expect_status(f, "GET", "/api/pools/app/backends/garbage", NULL, 404);
    expect_status(f, "POST", "/api/pools/app/backends/127.0.0.1:9001/explode", NULL, 404);
    expect_status(f, "GET", "/api/pools/app/nope", NULL, 404);
    expect_status(f, "GET", "/api//pools", NULL, 404);
    expect_status(f, "GET", "/a/b/c/d/e/f/g/h/i/j", NULL, 404);
    expect_status(f, "GET", "*", NULL, 404);
    expect_status(f, "GET", "http://x/metrics", NULL, 404);
    expect_status(f, "GET", "/api/pools/%zz", NULL, 400);
    expect_status(f, "GET", "/api/pools/%00", NULL, 400);
    expect_status(f, "GET", "/api/pools/%4", NULL, 400);
    expect_status(f, "VERYLONGMETHODNAMEHERE", "/metrics", NULL, 501);
    /* nothing changed along the way */
    assert_int_equal(atomic_load(&backend(f, 0)->admin), BACKEND_ENABLED);
}

static void test_handle_status_and_metrics(void **state)
{
    struct fixture *f = *state;
    struct answer a = call(f, "GET", "/api/status", NULL);
    assert_int_equal(a.status, 200);
    assert_string_equal(json_string_value(json_object_get(a.json, "version")), "9.9.9-test");
    assert_int_equal(json_integer_value(json_object_get(a.json, "pid")), getpid());
    assert_true(json_is_integer(json_object_get(a.json, "uptime_s")));
    assert_int_equal(json_integer_value(json_object_get(a.json, "reloads")), 1);
    assert_int_equal(json_integer_value(json_object_get(a.json, "worker_restarts")), 5);
    assert_string_equal(json_string_value(json_object_get(a.json, "config")), "/etc/sluice/test.yaml");
    json_t *w = json_object_get(a.json, "workers");
    assert_int_equal(json_array_size(w), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(w, 1), "id")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(w, 1), "pid")), 4343);
    answer_free(&a);

    a = call(f, "GET", "/metrics", NULL);
    assert_int_equal(a.status, 200);
    assert_string_equal(a.ctype, "text/plain; version=0.0.4");
    assert_non_null(strstr(a.text, "sluice_workers 2\n"));
    answer_free(&a);
}

/* ------------------------------------------------------------------ */
/* The mount table and /api/status parts */

struct seen {
    const char *who;
    char method[16];
    char segs[128];              /* "a|b|c" */
    size_t calls;
};

static void record(void *arg, const struct admin_request *rq, struct admin_reply *r)
{
    struct seen *s = arg;
    s->calls++;
    snprintf(s->method, sizeof s->method, "%s", rq->method);
    s->segs[0] = '\0';
    for (size_t i = 0; i < rq->n_seg; i++) {
        strncat(s->segs, i ? "|" : "", sizeof s->segs - strlen(s->segs) - 1);
        strncat(s->segs, rq->seg[i], sizeof s->segs - strlen(s->segs) - 1);
    }
    admin_reply_json(r, 200, json_pack("{s:s}", "who", s->who));
}

static struct answer call_site(struct admin_site *site, const char *method, const char *target)
{
    struct admin_reply r;
    admin_handle(site, method, strlen(method), target, strlen(target), NULL, 0, &r);
    struct answer a = {.status = r.status, .allow = r.allow, .ctype = r.content_type};
    a.text = strndup(r.body, r.body_len);
    json_error_t je;
    a.json = json_loadb(r.body, r.body_len, 0, &je);
    free(r.body);
    return a;
}

static void expect_site_status(struct admin_site *site, const char *method, const char *target, int status)
{
    struct answer a = call_site(site, method, target);
    if (a.status != status)
        fail_msg("%s %s: got %d, want %d: %s", method, target, a.status, status, a.text);
    answer_free(&a);
}

static void test_mounts(void **state)
{
    struct admin_site site = {.status = {.version = "1"}};
    struct seen get = {.who = "get"}, post = {.who = "post"}, any = {.who = "any"}, later = {.who = "later"};
    assert_int_equal(admin_mount(&site, "GET", "/api/things", record, &get), 0);
    assert_int_equal(admin_mount(&site, "POST", "/api/things", record, &post), 0);
    assert_int_equal(admin_mount(&site, NULL, "/api/x/y", record, &any), 0);
    assert_int_equal(admin_mount(&site, NULL, "/api/x/y", record, &later), 0);

    /* methods pick the mount; HEAD goes where GET goes */
    struct answer a = call_site(&site, "GET", "/api/things/one/two");
    assert_int_equal(a.status, 200);
    assert_string_equal(get.segs, "one|two");
    answer_free(&a);
    a = call_site(&site, "HEAD", "/api/things");
    assert_int_equal(a.status, 200);
    assert_int_equal(get.calls, 2);
    assert_string_equal(get.segs, "");
    answer_free(&a);
    a = call_site(&site, "POST", "/api/things/%2F");
    assert_int_equal(a.status, 200);
    assert_string_equal(post.segs, "/");
    answer_free(&a);
    /* a path that is mounted, with a method no mount takes: 405 naming them */
    a = call_site(&site, "DELETE", "/api/things/one");
    assert_int_equal(a.status, 405);
    assert_string_equal(a.allow, "GET, POST");
    answer_free(&a);

    /* any method; the first mount of a prefix wins; segments after it */
    a = call_site(&site, "PUT", "/api/x/y/z");
    assert_int_equal(a.status, 200);
    assert_string_equal(json_string_value(json_object_get(a.json, "who")), "any");
    assert_string_equal(any.method, "PUT");
    assert_string_equal(any.segs, "z");
    assert_int_equal(later.calls, 0);
    answer_free(&a);

    /* prefixes match whole segments only */
    expect_site_status(&site, "GET", "/api/x", 404);
    expect_site_status(&site, "GET", "/api/xy/y", 404);
    expect_site_status(&site, "GET", "/api/thing", 404);
    expect_site_status(&site, "GET", "/api", 404);
    /* the core's own paths come first */
    expect_site_status(&site, "GET", "/api/status", 200);
    expect_site_status(&site, "GET", "/metrics", 200);
    assert_int_equal(get.calls + post.calls + any.calls + later.calls, 4);

    /* malformed prefixes and a full table are refused */
    assert_int_equal(admin_mount(&site, NULL, "", record, &any), -1);
    assert_int_equal(admin_mount(&site, NULL, "api", record, &any), -1);
    assert_int_equal(admin_mount(&site, NULL, "/", record, &any), -1);
    assert_int_equal(admin_mount(&site, NULL, "/a//b", record, &any), -1);
    assert_int_equal(admin_mount(&site, NULL, "/a/b/c/d/e", record, &any), -1);
    assert_int_equal(admin_mount(&site, NULL, "/ok", NULL, &any), -1);
    while (site.n_mounts < ADMIN_MAX_MOUNTS)
        assert_int_equal(admin_mount(&site, NULL, "/filler", record, &any), 0);
    assert_int_equal(admin_mount(&site, NULL, "/one/more", record, &any), -1);
}

/* ------------------------------------------------------------------ */
/* The query string */

/* Answers with the query as handlers see it: [[key, value], ...]. */
static void echo_query(void *arg, const struct admin_request *rq, struct admin_reply *r)
{
    (*(size_t *)arg)++;
    json_t *pairs = json_array();
    for (size_t i = 0; i < rq->n_query; i++)
        json_array_append_new(pairs, json_pack("[s,s]", rq->query[i].key, rq->query[i].value));
    admin_reply_json(r, 200, pairs);
}

/* The query of target as "k=v|k=v" (a status other than 200 fails). */
static void expect_query(struct admin_site *site, const char *target, const char *want)
{
    struct answer a = call_site(site, "GET", target);
    if (a.status != 200)
        fail_msg("%s: got %d: %s", target, a.status, a.text);
    char got[512] = "";
    for (size_t i = 0; i < json_array_size(a.json); i++) {
        json_t *kv = json_array_get(a.json, i);
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s=%s", i ? "|" : "",
                 json_string_value(json_array_get(kv, 0)), json_string_value(json_array_get(kv, 1)));
    }
    if (strcmp(got, want) != 0)
        fail_msg("%s: query seen as \"%s\", want \"%s\"", target, got, want);
    answer_free(&a);
}

/* A 400 whose JSON reason contains why; the handler is not called. */
static void expect_query_refused(struct admin_site *site, const size_t *calls, const char *target, const char *why)
{
    size_t before = *calls;
    struct answer a = call_site(site, "GET", target);
    const char *err = json_string_value(json_object_get(a.json, "error"));
    if (a.status != 400 || !err || !strstr(err, why))
        fail_msg("%s: got %d %s, want 400 with \"%s\"", target, a.status, a.text, why);
    assert_int_equal(*calls, before);
    answer_free(&a);
}

static void check_lookup(void *arg, const struct admin_request *rq, struct admin_reply *r)
{
    assert_string_equal(admin_query_get(rq, "index"), "5");
    assert_string_equal(admin_query_get(rq, "wait"), "30s");
    assert_string_equal(admin_query_get(rq, "dc"), "dc 1");
    assert_string_equal(admin_query_get(rq, "stale"), "");
    assert_null(admin_query_get(rq, "Index"));     /* keys are case-sensitive */
    assert_null(admin_query_get(rq, "nope"));
    /* bytes that are not UTF-8 reach the handler as sent */
    assert_memory_equal(admin_query_get(rq, "raw"), "\xff", 2);
    /* a repeated key, value by value, in the order sent */
    size_t pos = 0;
    assert_string_equal(admin_query_next(rq, "tag", &pos), "a");
    assert_string_equal(admin_query_next(rq, "tag", &pos), "b&c");
    assert_string_equal(admin_query_next(rq, "tag", &pos), "");
    assert_null(admin_query_next(rq, "tag", &pos));
    assert_null(admin_query_next(rq, "tag", &pos));
    assert_string_equal(admin_query_get(rq, "tag"), "a");
    (*(size_t *)arg)++;
    admin_reply_json(r, 200, json_object());
}

static void test_query(void **state)
{
    struct admin_site site = {.status = {.version = "1"}};
    size_t calls = 0, lookups = 0;
    assert_int_equal(admin_mount(&site, "GET", "/q", echo_query, &calls), 0);
    assert_int_equal(admin_mount(&site, "GET", "/lookup", check_lookup, &lookups), 0);

    expect_query(&site, "/q", "");
    expect_query(&site, "/q?", "");
    expect_query(&site, "/q/?index=5&wait=30s&dc=dc1", "index=5|wait=30s|dc=dc1");
    /* percent-decoding, '+' as a space, and an encoded key */
    expect_query(&site, "/q?name=a%20b&x=%2B+%26%3D&%6Bey=1", "name=a b|x=+ &=|key=1");
    /* the first '=' splits; '/', '?' and ';' are ordinary in a value */
    expect_query(&site, "/q?f=a=b&p=/x/y?z;w", "f=a=b|p=/x/y?z;w");
    /* repeated keys kept in order; empty values; an empty key */
    expect_query(&site, "/q?tag=a&tag=b&tag=a", "tag=a|tag=b|tag=a");
    expect_query(&site, "/q?flag&empty=&=v", "flag=|empty=|=v");
    /* empty pieces are skipped */
    expect_query(&site, "/q?&&a=1&&", "a=1");
    /* a fragment ends the query; one before '?' leaves none */
    expect_query(&site, "/q?a=1#b=2", "a=1");
    expect_query(&site, "/q#frag?a=1", "");

    struct answer a = call_site(&site, "GET", "/lookup?index=5&wait=30s&tag=a&dc=dc+1&tag=b%26c&stale&tag=&raw=%FF");
    assert_int_equal(a.status, 200);
    assert_int_equal(lookups, 1);
    answer_free(&a);

    /* exactly ADMIN_MAX_QUERY parameters pass; one more is refused */
    char target[1024] = "/q?";
    for (int i = 0; i < ADMIN_MAX_QUERY; i++)
        snprintf(target + strlen(target), sizeof target - strlen(target), "%sp%d=%d", i ? "&" : "", i, i);
    a = call_site(&site, "GET", target);
    assert_int_equal(a.status, 200);
    assert_int_equal(json_array_size(a.json), ADMIN_MAX_QUERY);
    answer_free(&a);
    strcat(target, "&one=more");
    expect_query_refused(&site, &calls, target, "too many query parameters (at most 32)");
    /* empty pieces do not count */
    char *amps = target + strlen(target);
    strcpy(amps, "&&&&");
    expect_query_refused(&site, &calls, target, "too many query parameters");

    /* malformed escapes and %00, in keys and values */
    expect_query_refused(&site, &calls, "/q?a=%zz", "malformed percent-encoding in the query");
    expect_query_refused(&site, &calls, "/q?a=%4", "malformed percent-encoding in the query");
    expect_query_refused(&site, &calls, "/q?a=1&b=%", "malformed percent-encoding in the query");
    expect_query_refused(&site, &calls, "/q?a=%00", "malformed percent-encoding in the query");
    expect_query_refused(&site, &calls, "/q?%zz=1", "malformed percent-encoding in the query");
    /* the core's own paths too; a well-formed query does not bother them */
    expect_query_refused(&site, &calls, "/metrics?x=%zz", "malformed percent-encoding in the query");
    expect_site_status(&site, "GET", "/metrics?name%5B%5D=sluice_info", 200);
    expect_site_status(&site, "GET", "/api/status?pretty", 200);
    /* a malformed request is refused before it is routed */
    expect_query_refused(&site, &calls, "/nope?a=%zz", "malformed percent-encoding in the query");
    expect_site_status(&site, "GET", "/nope?a=1", 404);
}

static void add_colour(void *arg, json_t *status)
{
    json_object_set_new(status, "colour", json_string(arg));
}

static void test_status_parts(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(admin_status_part(&f->site, add_colour, "green"), 0);
    struct answer a = call(f, "GET", "/api/status", NULL);
    assert_int_equal(a.status, 200);
    assert_string_equal(json_string_value(json_object_get(a.json, "colour")), "green");
    assert_string_equal(json_string_value(json_object_get(a.json, "version")), "9.9.9-test");
    /* the tier's keys come after the core's */
    const char *colour = strstr(a.text, "\"colour\""), *config = strstr(a.text, "\"config\"");
    assert_non_null(colour);
    assert_non_null(config);
    assert_true(config < colour);
    answer_free(&a);
    while (f->site.n_status_parts < ADMIN_MAX_STATUS_PARTS)
        assert_int_equal(admin_status_part(&f->site, add_colour, "x"), 0);
    assert_int_equal(admin_status_part(&f->site, add_colour, "y"), -1);
}

/* ------------------------------------------------------------------ */
/* The server on a real socket */

struct client {
    struct ev_loop *loop;
    struct ev_io io;
    char *out;
    size_t out_len, out_off;
    char in[1 << 18];
    size_t in_len;
    int want;                    /* responses to wait for */
    bool eof;
};

/* Number of complete responses at the start of c->in (a 1xx has no body). */
static int count_responses(const struct client *c)
{
    int n = 0;
    size_t off = 0;
    for (;;) {
        const char *head = c->in + off;
        const char *end = memmem(head, c->in_len - off, "\r\n\r\n", 4);
        if (!end)
            return n;
        size_t head_len = (size_t)(end - head) + 4;
        size_t body = 0;
        const char *cl = memmem(head, head_len, "\r\nContent-Length: ", 18);
        if (cl && strncmp(head, "HTTP/1.1 1", 10) != 0)
            body = strtoul(cl + 18, NULL, 10);
        if (off + head_len + body > c->in_len)
            return n;
        off += head_len + body;
        n++;
    }
}

static void client_cb(struct ev_loop *loop, struct ev_io *io, uint32_t revents)
{
    struct client *c = io->data;
    if (c->out_off < c->out_len) {
        ssize_t n = send(io->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0)
            c->out_off += (size_t)n;
        else if (n < 0 && errno != EAGAIN)
            c->out_off = c->out_len;     /* server hung up; stop writing */
    }
    if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        ssize_t n = recv(io->fd, c->in + c->in_len, sizeof c->in - 1 - c->in_len, 0);
        if (n > 0) {
            c->in_len += (size_t)n;
            c->in[c->in_len] = '\0';
        } else if (n == 0 || errno != EAGAIN) {
            c->eof = true;
        }
    }
    if (c->eof || count_responses(c) >= c->want) {
        ev_break(loop);
        return;
    }
    ev_io_set(loop, io, EPOLLIN | (c->out_off < c->out_len ? EPOLLOUT : 0));
}

static int connect_to(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    /* The listen backlog completes the handshake before the loop runs. */
    assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
    return fd;
}

static struct client *client_new(struct ev_loop *loop, uint16_t port)
{
    struct client *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->loop = loop;
    ev_io_init(&c->io, connect_to(port), client_cb, c);
    return c;
}

/* Forget the client but keep its connection open; returns the fd. */
static int client_detach(struct client *c)
{
    int fd = c->io.fd;
    ev_io_stop(c->loop, &c->io);
    free(c->out);
    free(c);
    return fd;
}

static void client_free(struct client *c)
{
    ev_io_stop(c->loop, &c->io);
    close(c->io.fd);
    free(c->out);
    free(c);
}

static void deadline_cb(struct ev_loop *loop, struct ev_timer *t)
{
    *(bool *)t->data = true;
    ev_break(loop);
}

/* Queue bytes, then run the loop until `want` responses (counted from the
 * start of the connection) or EOF; 5 s at most. Other clients on the loop
 * may break it meanwhile: it runs again until this one is done. */
static void client_exchange(struct client *c, const char *data, size_t len, int want)
{
    c->out = realloc(c->out, c->out_len + len);
    assert_non_null(c->out);
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    c->want = want;
    bool timed_out = false;
    struct ev_timer deadline;
    ev_timer_init(&deadline, deadline_cb, &timed_out);
    ev_now_update(c->loop);
    ev_timer_start(c->loop, &deadline, 5000);
    ev_io_set(c->loop, &c->io, EPOLLIN | EPOLLOUT);
    while (count_responses(c) < want && !c->eof && !timed_out)
        ev_run(c->loop);
    ev_timer_stop(c->loop, &deadline);
    assert_false(timed_out);
}

/* Wait for the server to hang up. */
static void client_wait_eof(struct client *c)
{
    c->want = 1 << 30;
    bool timed_out = false;
    struct ev_timer deadline;
    ev_timer_init(&deadline, deadline_cb, &timed_out);
    ev_now_update(c->loop);
    ev_timer_start(c->loop, &deadline, 5000);
    ev_io_set(c->loop, &c->io, EPOLLIN);
    while (!c->eof && !timed_out)
        ev_run(c->loop);
    ev_timer_stop(c->loop, &deadline);
    assert_true(c->eof);
}

/* The status of the n-th (0-based) response. */
static int nth_status(const struct client *c, int n)
{
    const char *p = c->in;
    for (int i = 0; p && i <= n; i++) {
        if (i == n)
            return strncmp(p, "HTTP/1.1 ", 9) == 0 ? atoi(p + 9) : -1;
        const char *end = strstr(p, "\r\n\r\n");
        if (!end)
            return -1;
        const char *cl = strstr(p, "\r\nContent-Length: ");
        size_t body = cl && cl < end && strncmp(p, "HTTP/1.1 1", 10) != 0 ? strtoul(cl + 18, NULL, 10) : 0;
        p = end + 4 + body;
    }
    return -1;
}

struct server_fixture {
    struct fixture *f;
    struct ev_loop *loop;
    struct admin_server *srv;
    uint16_t port;
};

static void server_up(struct fixture *f, struct server_fixture *s)
{
    s->f = f;
    s->loop = ev_loop_new();
    assert_non_null(s->loop);
    struct sl_addr a;
    set_addr(&a, "127.0.0.1:0");
    char err[256];
    s->srv = admin_start(s->loop, &a, &f->site, err, sizeof err);
    if (!s->srv)
        fail_msg("admin_start: %s", err);
    s->port = admin_port(s->srv);
    assert_true(s->port != 0);
}

static void server_down(struct server_fixture *s)
{
    admin_stop(s->srv);
    ev_loop_free(s->loop);
}

#define S(lit) lit, sizeof lit - 1

static void test_server_keepalive_and_pipelining(void **state)
{
    struct fixture *f = *state;
    struct server_fixture s;
    server_up(f, &s);
    struct client *c = client_new(s.loop, s.port);

    client_exchange(c, S("GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n"), 1);
    assert_int_equal(nth_status(c, 0), 200);
    assert_non_null(strstr(c->in, "Content-Type: application/json\r\n"));
    assert_non_null(strstr(c->in, "\"version\": \"9.9.9-test\""));

    /* three pipelined requests on the same connection, answered in order */
    client_exchange(c,
                    S("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
                      "PATCH /api/pools/app/backends/127.0.0.1:9001 HTTP/1.1\r\nHost: x\r\n"
                      "Content-Length: 14\r\n\r\n{\"weight\": 42}"
                      "GET /api/pools/nope HTTP/1.1\r\nHost: x\r\n\r\n"),
                    4);
    assert_int_equal(nth_status(c, 1), 200);
    assert_int_equal(nth_status(c, 2), 200);
    assert_int_equal(nth_status(c, 3), 404);
    assert_non_null(strstr(c->in, "Content-Type: text/plain; version=0.0.4\r\n"));
    assert_int_equal(atomic_load(&backend(f, 0)->weight), 42);
    assert_false(c->eof);

    /* a body announced with Expect: 100-continue gets the interim answer first */
    client_exchange(c,
                    S("PUT /api/pools/app/backends/127.0.0.1:9001/weight HTTP/1.1\r\nHost: x\r\n"
                      "Expect: 100-continue\r\nContent-Length: 13\r\n\r\n"),
                    5);
    assert_int_equal(nth_status(c, 4), 100);
    client_exchange(c, S("{\"weight\": 8}"), 6);
    assert_int_equal(nth_status(c, 5), 200);
    assert_int_equal(atomic_load(&backend(f, 0)->weight), 8);

    /* an HTTP/1.0 client asking for keep-alive is told it got it */
    size_t mark = c->in_len;
    client_exchange(c, S("GET /api/status HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), 7);
    assert_int_equal(nth_status(c, 6), 200);
    assert_non_null(strstr(c->in + mark, "\r\nConnection: keep-alive\r\n"));
    assert_false(c->eof);

    /* HTTP/1.1 "Connection: close" is honoured */
    client_exchange(c, S("GET /api/pools HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), 8);
    assert_int_equal(nth_status(c, 7), 200);
    client_wait_eof(c);
    client_free(c);
    server_down(&s);
}

/* Echoes what a handler sees of the request's headers. */
static void header_echo(void *arg, const struct admin_request *rq, struct admin_reply *r)
{
    size_t len = 0;
    const char *v = admin_header(rq, "x-test", &len);
    admin_reply_json(r, 200,
                     json_pack("{s:s%, s:b, s:b}", "x_test", v ? v : "", v ? len : (size_t)0, "present", v != NULL,
                               "token_ok", admin_token_ok(rq, "s3cret")));
}

/* The body of the last answer on c, parsed. */
static json_t *last_json(const struct client *c)
{
    const char *body = NULL;
    for (const char *p = c->in; (p = strstr(p, "\r\n\r\n")) != NULL; p += 4)
        body = p + 4;
    assert_non_null(body);
    json_error_t je;
    json_t *j = json_loads(body, JSON_DISABLE_EOF_CHECK, &je);
    if (!j)
        fail_msg("not JSON: %s", body);
    return j;
}

static void test_server_request_headers_and_token(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(admin_mount(&f->site, "GET", "/hdr", header_echo, NULL), 0);
    struct server_fixture s;
    server_up(f, &s);
    static const struct {
        const char *headers;
        const char *x_test;
        bool present, token_ok;
    } cases[] = {
        { "X-Test:  hello there \r\n", "hello there", true, false },
        { "x-TEST: a\r\nX-Test: b\r\n", "a", true, false },        /* the first one */
        { "", "", false, false },
        { "X-Sluice-Token: s3cret\r\n", "", false, true },
        { "X-Sluice-Token: s3cre\r\n", "", false, false },           /* a prefix */
        { "X-Sluice-Token: s3crett\r\n", "", false, false },         /* longer */
        { "X-Sluice-Token: S3CRET\r\n", "", false, false },          /* case matters */
        { "X-Sluice-Token:\r\n", "", false, false },
        { "Authorization: Bearer s3cret\r\n", "", false, true },
        { "Authorization: bearer   s3cret\r\n", "", false, true },
        { "Authorization: Basic s3cret\r\n", "", false, false },
        { "Authorization: Bearer\r\n", "", false, false },
        /* The first scheme present is judged: a wrong X-Sluice-Token is not
         * rescued by a right Authorization. */
        { "X-Sluice-Token: nope\r\nAuthorization: Bearer s3cret\r\n", "", false, false },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct client *c = client_new(s.loop, s.port);
        char req[512];
        int n = snprintf(req, sizeof req, "GET /hdr HTTP/1.1\r\nHost: x\r\n%s\r\n", cases[i].headers);
        client_exchange(c, req, (size_t)n, 1);
        assert_int_equal(nth_status(c, 0), 200);
        json_t *j = last_json(c);
        if (strcmp(json_string_value(json_object_get(j, "x_test")), cases[i].x_test) != 0 ||
            json_is_true(json_object_get(j, "present")) != cases[i].present ||
            json_is_true(json_object_get(j, "token_ok")) != cases[i].token_ok)
            fail_msg("case %zu (%s): got %s", i, cases[i].headers, c->in);
        json_decref(j);
        client_free(c);
    }
    server_down(&s);
    /* Without a server (admin_handle) there are no headers. */
    struct admin_reply r;
    admin_handle(&f->site, S("GET"), S("/hdr"), NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"present\": false"));
    free(r.body);
}

/* One bad request on a fresh connection: its status, and whether the
 * server hangs up afterwards. */
static void bad_request(struct server_fixture *s, const char *req, size_t len, int status, bool closes)
{
    struct client *c = client_new(s->loop, s->port);
    client_exchange(c, req, len, 1);
    if (nth_status(c, 0) != status)
        fail_msg("got %d, want %d for %.60s\n%s", nth_status(c, 0), status, req, c->in);
    const char *body = strstr(c->in, "\r\n\r\n");
    assert_non_null(body);
    json_error_t je;
    json_t *j = json_loads(body + 4, 0, &je);
    if (!j || !json_is_string(json_object_get(j, "error")))
        fail_msg("error body is not {\"error\":...}: %s", body + 4);
    json_decref(j);
    if (closes) {
        assert_non_null(strstr(c->in, "Connection: close\r\n"));
        client_wait_eof(c);
    }
    client_free(c);
}

static void test_server_bad_requests(void **state)
{
    struct fixture *f = *state;
    struct server_fixture s;
    server_up(f, &s);

    bad_request(&s, S("PATCH /api/pools/app/backends/127.0.0.1:9001 HTTP/1.1\r\nHost: x\r\n"
                      "Content-Length: 6\r\n\r\n{\"w\":}"), 400, false);
    bad_request(&s, S("PATCH /api/pools/app/backends/127.0.0.1:9001 HTTP/1.1\r\nHost: x\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n0\r\n\r\n"), 411, true);
    /* too big a body, sent whole: the answer must survive the unread rest */
    size_t big = 70000;
    char *req = malloc(big + 128);
    assert_non_null(req);
    int n = snprintf(req, 128, "PATCH /api/pools/app/backends/127.0.0.1:9001 HTTP/1.1\r\nHost: x\r\n"
                               "Content-Length: %zu\r\n\r\n", big);
    memset(req + n, ' ', big);
    bad_request(&s, req, (size_t)n + big, 413, true);
    bad_request(&s, S("HELLO\r\n\r\n"), 400, true);
    bad_request(&s, S("GET /metrics HTTP/1.1\nHost: x\n\n"), 400, true);
    bad_request(&s, S("GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"), 400,
                true);
    bad_request(&s, S("DELETE /api/pools HTTP/1.1\r\nHost: x\r\n\r\n"), 405, false);

    /* a head past 16 KiB: 431 */
    big = 20000;
    n = snprintf(req, 64, "GET /metrics HTTP/1.1\r\nX-Big: ");
    memset(req + n, 'a', big);
    memcpy(req + n + big, "\r\n\r\n", 4);
    bad_request(&s, req, (size_t)n + big + 4, 431, true);
    free(req);

    /* the server survived all of that */
    struct client *c = client_new(s.loop, s.port);
    client_exchange(c, S("GET /api/status HTTP/1.0\r\n\r\n"), 1);
    assert_int_equal(nth_status(c, 0), 200);
    client_wait_eof(c);     /* HTTP/1.0 without keep-alive */
    client_free(c);
    server_down(&s);
}

/* Past ADMIN_MAX_CONNS connections the next one gets a 503 and is closed. */
static void test_server_connection_limit(void **state)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 2 * ADMIN_MAX_CONNS + 64)
        skip();
    struct fixture *f = *state;
    struct server_fixture s;
    server_up(f, &s);
    /* Each one answered once, so all of them are accepted before the next
     * connects (the listen backlog is smaller than the limit). */
    int fds[ADMIN_MAX_CONNS];
    for (int i = 0; i < ADMIN_MAX_CONNS; i++) {
        struct client *c = client_new(s.loop, s.port);
        client_exchange(c, S("GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n"), 1);
        assert_int_equal(nth_status(c, 0), 200);
        fds[i] = client_detach(c);
    }
    struct client *extra = client_new(s.loop, s.port);
    client_exchange(extra, S("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), 1);
    assert_int_equal(nth_status(extra, 0), 503);
    client_wait_eof(extra);
    client_free(extra);
    for (int i = 0; i < ADMIN_MAX_CONNS; i++)
        close(fds[i]);
    /* admin_stop with many connections still open: nothing leaks */
    server_down(&s);
}

/* Run the loop until cond(arg) holds, looking every 5 ms and whenever a
 * client's callback breaks the loop; 5 s at most. */
struct poll_until {
    bool (*cond)(void *);
    void *arg;
    bool timed_out;
    uint64_t deadline;
};

static void poll_cb(struct ev_loop *loop, struct ev_timer *t)
{
    struct poll_until *p = t->data;
    if (p->cond(p->arg)) {
        ev_break(loop);
        return;
    }
    if (ev_now(loop) >= p->deadline) {
        p->timed_out = true;
        ev_break(loop);
        return;
    }
    ev_timer_start(loop, t, 5);
}

static void run_until(struct ev_loop *loop, bool (*cond)(void *), void *arg)
{
    if (cond(arg))
        return;
    ev_now_update(loop);
    struct poll_until p = {.cond = cond, .arg = arg, .deadline = ev_now(loop) + 5000};
    struct ev_timer t;
    ev_timer_init(&t, poll_cb, &p);
    ev_timer_start(loop, &t, 5);
    while (!p.timed_out && !cond(arg))
        ev_run(loop);
    ev_timer_stop(loop, &t);
    assert_false(p.timed_out);
}

struct conns_below {
    struct admin_server *srv;
    uint32_t n;
};

static bool conns_below(void *arg)
{
    struct conns_below *b = arg;
    return admin_connections(b->srv) < b->n;
}

static void server_up_with(struct fixture *f, struct server_fixture *s, const struct admin_options *opts)
{
    s->f = f;
    s->loop = ev_loop_new();
    assert_non_null(s->loop);
    struct sl_addr a;
    set_addr(&a, "127.0.0.1:0");
    char err[256];
    s->srv = admin_start_with(s->loop, &a, &f->site, opts, err, sizeof err);
    if (!s->srv)
        fail_msg("admin_start_with: %s", err);
    s->port = admin_port(s->srv);
    assert_true(s->port != 0);
}

/* The limit set per server: N clients are served, the next one gets the
 * 503 and is closed, as with the default limit; one leaving makes room. */
static void test_server_connection_limit_option(void **state)
{
    struct fixture *f = *state;
    static const uint32_t limits[] = {3, ADMIN_MAX_CONNS + 44};
    struct rlimit rl;
    for (size_t l = 0; l < sizeof limits / sizeof *limits; l++) {
        uint32_t n = limits[l];
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 2 * n + 64)
            skip();
        struct server_fixture s;
        server_up_with(f, &s, &(struct admin_options){.max_conns = n});
        int *fds = calloc(n, sizeof *fds);
        assert_non_null(fds);
        for (uint32_t i = 0; i < n; i++) {
            struct client *c = client_new(s.loop, s.port);
            client_exchange(c, S("GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n"), 1);
            assert_int_equal(nth_status(c, 0), 200);
            fds[i] = client_detach(c);
        }
        struct client *extra = client_new(s.loop, s.port);
        client_exchange(extra, S("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), 1);
        assert_int_equal(nth_status(extra, 0), 503);
        assert_non_null(strstr(extra->in, "too many admin connections"));
        client_wait_eof(extra);
        client_free(extra);
        /* one leaves: once the server has seen it go, the next is served */
        close(fds[0]);
        run_until(s.loop, conns_below, &(struct conns_below){s.srv, n});
        struct client *last = client_new(s.loop, s.port);
        client_exchange(last, S("GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n"), 1);
        assert_int_equal(nth_status(last, 0), 200);
        client_free(last);
        for (uint32_t i = 1; i < n; i++)
            close(fds[i]);
        free(fds);
        server_down(&s);
    }
}

/* A server's idle time: a client that leaves a request unfinished, or
 * sends nothing, is dropped after it; one that keeps talking is not. */
static void test_server_idle_option(void **state)
{
    struct fixture *f = *state;
    struct server_fixture s;
    server_up_with(f, &s, &(struct admin_options){.idle_ms = 100});
    struct client *silent = client_new(s.loop, s.port);
    struct client *half = client_new(s.loop, s.port);
    client_exchange(half, S("GET /api/status HTTP/1.1\r\nHo"), 0);
    client_wait_eof(half);
    assert_int_equal(half->in_len, 0);     /* dropped without an answer */
    client_wait_eof(silent);
    client_free(silent);
    client_free(half);
    server_down(&s);
}

static void test_server_bind_error(void **state)
{
    struct fixture *f = *state;
    struct server_fixture s;
    server_up(f, &s);
    struct sl_addr a;
    char text[32], err[256] = "";
    snprintf(text, sizeof text, "127.0.0.1:%u", s.port);
    set_addr(&a, text);
    assert_null(admin_start(s.loop, &a, &f->site, err, sizeof err));
    assert_non_null(strstr(err, text));
    server_down(&s);
}

/* ------------------------------------------------------------------ */
/* Deferred answers */

#define MAX_PENDING 8

struct deferrals;

/* One deferred request as the test's handler keeps it. */
struct pending {
    struct deferrals *w;
    struct admin_deferred h;
    char id[32];
    int cancels;
    bool completed;              /* the test completed it (alive or not) */
    int responses_seen;          /* responses the watched client had then */
    struct ev_timer timer;
};

struct deferrals {
    struct ev_loop *loop;
    struct client *client;       /* whose responses are counted at completion; may be NULL */
    struct pending req[MAX_PENDING];
    size_t n;
    uint64_t delay_ms;           /* complete this long after deferring; 0: the test does it */
    int depth, max_depth;        /* handlers running inside handlers */
};

static void on_cancel(void *arg)
{
    struct pending *p = arg;
    p->cancels++;
    /* the handle is dead already: completing it here is harmless */
    assert_false(admin_deferred_alive(p->h));
}

static void complete_pending(struct pending *p)
{
    struct admin_reply r = {0};
    admin_reply_json(&r, 200, json_pack("{s:s}", "id", p->id));
    p->responses_seen = p->w->client ? count_responses(p->w->client) : -1;
    admin_complete(p->h, &r);
    assert_null(r.body);         /* taken in every case */
    p->completed = true;
}

static void complete_cb(struct ev_loop *loop, struct ev_timer *t) { complete_pending(t->data); }

/* GET /defer?id=ID[&now]: defers, and answers {"id": ID} after
 * w->delay_ms, at once (now), or when the test says. */
static void defer_handler(void *arg, const struct admin_request *rq, struct admin_reply *r)
{
    struct deferrals *w = arg;
    if (++w->depth > w->max_depth)
        w->max_depth = w->depth;
    assert_true(w->n < MAX_PENDING);
    struct pending *p = &w->req[w->n++];
    memset(p, 0, sizeof *p);
    p->w = w;
    const char *id = admin_query_get(rq, "id");
    snprintf(p->id, sizeof p->id, "%s", id ? id : "?");
    ev_timer_init(&p->timer, complete_cb, p);
    p->h = admin_defer(rq, on_cancel, p);
    if (admin_deferred_is_null(p->h)) {
        admin_reply_error(r, 503, "this request cannot wait");
    } else {
        assert_true(admin_deferred_alive(p->h));
        /* a second defer of the same request is refused */
        assert_true(admin_deferred_is_null(admin_defer(rq, on_cancel, p)));
        /* what a deferring handler fills is dropped */
        admin_reply_error(r, 500, "this reply must not be sent");
        if (admin_query_get(rq, "now"))
            complete_pending(p);
        else if (w->delay_ms)
            ev_timer_start(w->loop, &p->timer, w->delay_ms);
    }
    w->depth--;
}

/* POST /wake: completes every request still waiting, from inside this
 * handler (as a registration wakes its watchers). */
static void wake_handler(void *arg, const struct admin_request *rq, struct admin_reply *r)
{
    struct deferrals *w = arg;
    if (++w->depth > w->max_depth)
        w->max_depth = w->depth;
    int woken = 0;
    for (size_t i = 0; i < w->n; i++) {
        if (admin_deferred_alive(w->req[i].h)) {
            complete_pending(&w->req[i]);
            woken++;
        }
    }
    admin_reply_json(r, 200, json_pack("{s:i}", "woken", woken));
    w->depth--;
}

static struct deferrals *deferrals_mount(struct fixture *f, struct ev_loop *loop, uint64_t delay_ms)
{
    struct deferrals *w = calloc(1, sizeof *w);
    assert_non_null(w);
    w->loop = loop;
    w->delay_ms = delay_ms;
    assert_int_equal(admin_mount(&f->site, "GET", "/defer", defer_handler, w), 0);
    assert_int_equal(admin_mount(&f->site, "POST", "/wake", wake_handler, w), 0);
    return w;
}

static void deferrals_free(struct deferrals *w)
{
    for (size_t i = 0; i < w->n; i++)
        ev_timer_stop(w->loop, &w->req[i].timer);
    free(w);
}

/* The body of the n-th response, parsed as JSON (NULL when absent). */
static json_t *nth_json(const struct client *c, int n)
{
    const char *p = c->in;
    for (int i = 0; i <= n; i++) {
        const char *end = strstr(p, "\r\n\r\n");
        if (!end)
            return NULL;
        const char *cl = strstr(p, "\r\nContent-Length: ");
        size_t body = cl && cl < end ? strtoul(cl + 18, NULL, 10) : 0;
        if (i == n) {
            json_error_t je;
            return body ? json_loadb(end + 4, body, 0, &je) : NULL;
        }
        p = end + 4 + body;
    }
    return NULL;
}

static void expect_id(const struct client *c, int n, const char *id)
{
    assert_int_equal(nth_status(c, n), 200);
    json_t *j = nth_json(c, n);
    const char *got = json_string_value(json_object_get(j, "id"));
    if (!got || strcmp(got, id) != 0)
        fail_msg("response %d: id %s, want %s\n%s", n, got ? got : "(none)", id, c->in);
    json_decref(j);
}

static bool handled(void *arg)
{
    struct deferrals *w = arg;
    return w->n > 0;
}

static bool two_handled(void *arg)
{
    struct deferrals *w = arg;
    return w->n >= 2;
}

/* Everything the client sent has reached the server's kernel. */
static bool sent_all(void *arg)
{
    int queued = 0;
    return ioctl(*(int *)arg, SIOCOUTQ, &queued) == 0 && queued == 0;
}

static bool first_cancelled(void *arg)
{
    struct deferrals *w = arg;
    return w->req[0].cancels > 0;
}

/* A handler defers; a timer completes it later; the connection then goes
 * on as usual (keep-alive). HEAD and HTTP/1.0 keep their forms. */
static void test_deferred_reply_completed_later(void **state)
{
    struct fixture *f = *state;
    struct server_fixture s;
    server_up(f, &s);
    struct deferrals *w = deferrals_mount(f, s.loop, 30);
    struct client *c = client_new(s.loop, s.port);
    w->client = c;

    client_exchange(c, S("GET /defer?id=later HTTP/1.1\r\nHost: x\r\n\r\n"), 1);
    expect_id(c, 0, "later");
    assert_int_equal(w->req[0].responses_seen, 0);    /* nothing was sent before the handler answered */
    assert_null(strstr(c->in, "must not be sent"));
    assert_int_equal(w->req[0].cancels, 0);
    assert_false(admin_deferred_alive(w->req[0].h));
    assert_false(c->eof);
    /* the same connection serves on */
    client_exchange(c, S("GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n"), 2);
    assert_int_equal(nth_status(c, 1), 200);
    /* HTTP/1.0 with keep-alive is told so; without, the answer ends the connection */
    size_t mark = c->in_len;
    client_exchange(c, S("GET /defer?id=ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), 3);
    assert_non_null(strstr(c->in + mark, "\r\nConnection: keep-alive\r\n"));
    expect_id(c, 2, "ka");
    client_exchange(c, S("GET /defer?id=bye HTTP/1.0\r\n\r\n"), 4);
    expect_id(c, 3, "bye");
    client_wait_eof(c);
    client_free(c);
    /* HEAD: the deferred answer goes without its body (its head says
     * how long the body would be, so the client waits for EOF) */
    c = client_new(s.loop, s.port);
    w->client = c;
    client_exchange(c, S("HEAD /defer?id=head HTTP/1.0\r\n\r\n"), 1 << 30);
    assert_true(c->eof);
    assert_int_equal(strncmp(c->in, "HTTP/1.1 200 OK\r\n", 17), 0);
    assert_non_null(strstr(c->in, "\r\nContent-Length: "));
    assert_int_equal(strlen(strstr(c->in, "\r\n\r\n")), 4);
    client_free(c);
    for (size_t i = 0; i < w->n; i++)
        assert_int_equal(w->req[i].cancels, 0);
    assert_int_equal(w->max_depth, 1);
    assert_null(f->site.deferred);          /* the table goes with its last slot */
    server_down(&s);
    deferrals_free(w);
}

/* Three pipelined requests, the first deferred, the third answered inside
 * its handler: answers in request order, and the second is not answered
 * (nor the third handled) before the first is. */
static void test_deferred_pipelined_order(void **state)
{
    struct fixture *f = *state;
    struct server_fixture s;
    server_up(f, &s);
    struct deferrals *w = deferrals_mount(f, s.loop, 30);
    struct client *c = client_new(s.loop, s.port);
    w->client = c;
    client_exchange(c,
                    S("GET /defer?id=first HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /defer?id=third&now HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /api/pools/nope HTTP/1.1\r\nHost: x\r\n\r\n"),
                    4);
    assert_int_equal(w->n, 2);
    assert_int_equal(w->req[0].responses_seen, 0);
    /* the third was handled after the first was completed; by then the
     * first's answer was not yet written (the loop writes it) */
    assert_true(w->req[0].completed);
    expect_id(c, 0, "first");
    assert_int_equal(nth_status(c, 1), 200);
    json_t *st = nth_json(c, 1);
    assert_string_equal(json_string_value(json_object_get(st, "version")), "9.9.9-test");
    json_decref(st);
    expect_id(c, 2, "third");
    assert_int_equal(nth_status(c, 3), 404);
    assert_null(strstr(c->in, "must not be sent"));
    assert_false(c->eof);
    client_free(c);
    server_down(&s);
    deferrals_free(w);
}

/* Watchers woken from inside another client's handler: each gets its
 * answer, the requests pipelined behind them are handled by the loop
 * afterwards, never inside the waking handler. */
static void test_deferred_completed_by_another_request(void **state)
{
    struct fixture *f = *state;
    struct server_fixture s;
    server_up(f, &s);
    struct deferrals *w = deferrals_mount(f, s.loop, 0);
    struct client *a = client_new(s.loop, s.port), *b = client_new(s.loop, s.port);
    struct client *writer = client_new(s.loop, s.port);
    client_exchange(a, S("GET /defer?id=a HTTP/1.1\r\nHost: x\r\n\r\n"
                         "GET /defer?id=a2&now HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
    run_until(s.loop, handled, w);
    client_exchange(b, S("GET /defer?id=b HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
    run_until(s.loop, two_handled, w);
    client_exchange(writer, S("POST /wake HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"), 1);
    json_t *j = nth_json(writer, 0);
    if (json_integer_value(json_object_get(j, "woken")) != 2)
        fail_msg("/wake answered %s", writer->in);
    json_decref(j);
    client_exchange(a, "", 0, 2);
    client_exchange(b, "", 0, 1);
    expect_id(a, 0, "a");
    expect_id(a, 1, "a2");
    expect_id(b, 0, "b");
    assert_int_equal(w->max_depth, 1);      /* a2's handler did not run inside /wake's */
    client_free(a);
    client_free(b);
    client_free(writer);
    server_down(&s);
    deferrals_free(w);
}

/* GET /status-code?code=N: answers N, the way the registry's handlers will
 * (401 without the token, 409 on a conflict, 504 when etcd times out). */
static void status_code_handler(void *arg, const struct admin_request *rq, struct admin_reply *r)
{
    const char *code = admin_query_get(rq, "code");
    admin_reply_error(r, code ? atoi(code) : 500, "as asked");
}

/* Each status a handler may give goes out with its reason phrase. */
static void test_server_reason_phrases(void **state)
{
    struct fixture *f = *state;
    static const struct {
        int code;
        const char *line;
    } cases[] = {
        {201, "HTTP/1.1 201 Created\r\n"},           {202, "HTTP/1.1 202 Accepted\r\n"},
        {401, "HTTP/1.1 401 Unauthorized\r\n"},
        {403, "HTTP/1.1 403 Forbidden\r\n"},         {408, "HTTP/1.1 408 Request Timeout\r\n"},
        {409, "HTTP/1.1 409 Conflict\r\n"},          {412, "HTTP/1.1 412 Precondition Failed\r\n"},
        {415, "HTTP/1.1 415 Unsupported Media Type\r\n"}, {422, "HTTP/1.1 422 Unprocessable Content\r\n"},
        {429, "HTTP/1.1 429 Too Many Requests\r\n"}, {502, "HTTP/1.1 502 Bad Gateway\r\n"},
        {504, "HTTP/1.1 504 Gateway Timeout\r\n"},   {503, "HTTP/1.1 503 Service Unavailable\r\n"},
    };
    assert_int_equal(admin_mount(&f->site, "GET", "/status-code", status_code_handler, NULL), 0);
    struct server_fixture s;
    server_up(f, &s);
    struct client *c = client_new(s.loop, s.port);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char req[128];
        int n = snprintf(req, sizeof req, "GET /status-code?code=%d HTTP/1.1\r\nHost: x\r\n\r\n", cases[i].code);
        size_t mark = c->in_len;
        client_exchange(c, req, (size_t)n, (int)i + 1);
        if (strncmp(c->in + mark, cases[i].line, strlen(cases[i].line)) != 0)
            fail_msg("%d: got %.40s", cases[i].code, c->in + mark);
    }
    client_free(c);
    server_down(&s);
}

/* The client goes away while its answer is awaited: the handler's cancel
 * runs once, the handle is dead, completing it later (twice, or with no
 * reply) is harmless and frees the body; the server serves on. Closing,
 * half-closing, and closing with a full input buffer (requests pipelined
 * behind) are all noticed. */
static void test_deferred_client_gone(void **state)
{
    struct fixture *f = *state;
    struct server_fixture s;
    server_up(f, &s);
    struct deferrals *w = deferrals_mount(f, s.loop, 0);
    static const char *const how[] = {"close", "half-close", "close behind a full buffer"};
    /* more than the server buffers for a client, not more than its
     * kernel takes besides, so the FIN behind it gets through */
    size_t flood_len = ADMIN_MAX_HEAD + ADMIN_MAX_BODY + 16384;
    char *flood = malloc(flood_len);
    assert_non_null(flood);
    memset(flood, 'x', flood_len);
    for (size_t t = 0; t < sizeof how / sizeof *how; t++) {
        w->n = 0;
        struct client *c = client_new(s.loop, s.port);
        client_exchange(c, S("GET /defer?id=gone HTTP/1.1\r\nHost: x\r\n\r\n"
                             "GET /defer?id=never HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
        run_until(s.loop, handled, w);
        struct admin_deferred h = w->req[0].h;
        assert_true(admin_deferred_alive(h));
        if (t == 2) {
            size_t sent = 0;
            int fd = c->io.fd;
            while (sent < flood_len) {
                ssize_t n = send(fd, flood + sent, flood_len - sent, MSG_NOSIGNAL);
                assert_true(n > 0);
                sent += (size_t)n;
            }
            run_until(s.loop, sent_all, &fd);
        }
        if (t == 1) {
            assert_int_equal(shutdown(c->io.fd, SHUT_WR), 0);
            run_until(s.loop, first_cancelled, w);
            client_wait_eof(c);                  /* and the server hangs up, with no answer */
            assert_int_equal(c->in_len, 0);
            client_free(c);
        } else {
            client_free(c);
            run_until(s.loop, first_cancelled, w);
        }
        if (w->req[0].cancels != 1)
            fail_msg("%s: cancel called %d times", how[t], w->req[0].cancels);
        assert_false(admin_deferred_alive(h));
        /* a later complete is harmless, and takes the body */
        complete_pending(&w->req[0]);
        complete_pending(&w->req[0]);
        admin_complete(h, NULL);
        struct admin_reply r = {0};
        admin_reply_error(&r, 500, "late");
        admin_complete(h, &r);
        assert_null(r.body);
        /* the pipelined request behind it was never handled */
        assert_int_equal(w->n, 1);
        /* the server serves on; cancel is not called again */
        struct client *other = client_new(s.loop, s.port);
        client_exchange(other, S("GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n"), 1);
        assert_int_equal(nth_status(other, 0), 200);
        client_free(other);
        assert_int_equal(w->req[0].cancels, 1);
        assert_null(f->site.deferred);
    }
    free(flood);
    server_down(&s);
    deferrals_free(w);
}

/* The server stops (admin.listen moved, daemon exit) while answers are
 * awaited: each cancel runs once; handles completed afterwards, when the
 * server's memory is gone, are harmless. */
static void test_deferred_server_stopped(void **state)
{
    struct fixture *f = *state;
    struct server_fixture s;
    server_up(f, &s);
    struct deferrals *w = deferrals_mount(f, s.loop, 0);
    struct client *a = client_new(s.loop, s.port), *b = client_new(s.loop, s.port);
    client_exchange(a, S("GET /defer?id=a HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
    run_until(s.loop, handled, w);
    client_exchange(b, S("GET /defer?id=b HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
    run_until(s.loop, two_handled, w);
    assert_non_null(f->site.deferred);
    admin_stop(s.srv);
    assert_int_equal(w->req[0].cancels, 1);
    assert_int_equal(w->req[1].cancels, 1);
    assert_null(f->site.deferred);
    admin_stop(s.srv);                           /* twice (a cancel might): nothing more happens */
    assert_int_equal(w->req[0].cancels, 1);
    client_free(a);
    client_free(b);
    ev_loop_free(s.loop);                        /* the server's memory goes here */
    complete_pending(&w->req[0]);
    complete_pending(&w->req[1]);
    assert_int_equal(w->req[0].cancels, 1);
    free(w);
}

/* Without a server (admin_handle) a request cannot wait: admin_defer says
 * so and the handler answers at once. */
static void test_deferred_without_server(void **state)
{
    struct fixture *f = *state;
    struct deferrals *w = deferrals_mount(f, NULL, 0);
    expect_status(f, "GET", "/defer?id=x", NULL, 503);
    assert_int_equal(w->n, 1);
    assert_true(admin_deferred_is_null(w->req[0].h));
    assert_false(admin_deferred_alive(w->req[0].h));
    admin_complete(w->req[0].h, NULL);           /* a null handle is harmless too */
    assert_null(f->site.deferred);
    free(w);
}

/* An answer awaited longer than the idle time: the connection is not
 * dropped meanwhile (a silent one next to it is), and once answered the
 * idle timer is back. */
static void test_deferred_outlives_idle_time(void **state)
{
    struct fixture *f = *state;
    struct server_fixture s;
    server_up_with(f, &s, &(struct admin_options){.idle_ms = 100});
    struct deferrals *w = deferrals_mount(f, s.loop, 450);
    struct client *c = client_new(s.loop, s.port), *silent = client_new(s.loop, s.port);
    w->client = c;
    client_exchange(c, S("GET /defer?id=slow HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
    run_until(s.loop, handled, w);
    client_wait_eof(silent);                     /* the idle timer is in force */
    client_free(silent);
    assert_int_equal(w->req[0].cancels, 0);
    client_exchange(c, "", 0, 1);
    expect_id(c, 0, "slow");
    assert_int_equal(w->req[0].cancels, 0);
    assert_false(c->eof);
    client_wait_eof(c);                          /* idle again after the answer */
    client_free(c);
    server_down(&s);
    deferrals_free(w);
}

int main(void)
{
    log_setup(LOG_LEVEL_WARN, NULL, "test");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_metrics_render, setup, teardown),
        cmocka_unit_test(test_metrics_from_yaml),
        cmocka_unit_test_setup_teardown(test_metrics_inconsistent_view, setup, teardown),
        cmocka_unit_test_setup_teardown(test_patch_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_patch_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handle_pools, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handle_backend_changes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handle_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handle_status_and_metrics, setup, teardown),
        cmocka_unit_test(test_mounts),
        cmocka_unit_test(test_query),
        cmocka_unit_test_setup_teardown(test_status_parts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_keepalive_and_pipelining, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_request_headers_and_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_bad_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_connection_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_bind_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_connection_limit_option, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_idle_option, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deferred_reply_completed_later, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deferred_pipelined_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deferred_completed_by_another_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deferred_client_gone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deferred_server_stopped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deferred_without_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deferred_outlives_idle_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_reason_phrases, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
