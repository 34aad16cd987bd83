/* Unit tests for the registry model (src/registry/reg_model.c): the change
 * index and events, validation with reasons, case-insensitive service
 * names, re-registration, deletion, location names, labels, and the name
 * index under churn. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry/reg_model.h"
#include "registry/reg_table.h"

#include "reg_helpers.h"

/* ---- events ------------------------------------------------------------ */

#define MAX_EVENTS 64

struct recorder {
    int n;
    enum reg_event_kind kind[MAX_EVENTS];
    uint64_t index[MAX_EVENTS];
    char service[MAX_EVENTS][REG_NAME_MAX + 1];
    char instance[MAX_EVENTS][REG_ID_MAX + 1];
};

static void record(void *arg, const struct reg_event *ev)
{
    struct recorder *r = arg;
    assert_true(r->n < MAX_EVENTS);
    r->kind[r->n] = ev->kind;
    r->index[r->n] = ev->index;
    snprintf(r->service[r->n], sizeof r->service[0], "%s", ev->service ? ev->service->name : "");
    snprintf(r->instance[r->n], sizeof r->instance[0], "%s", ev->instance ? ev->instance->id : "");
    r->n++;
}

static void test_change_index_monotonic(void **state)
{
    (void)state;
    struct reg_model *m = th_model(NULL);
    struct recorder rec = {0};
    reg_model_on_change(m, record, &rec);
    uint64_t last = reg_model_index(m);
    assert_int_equal(last, 1);

    struct reg_service *svc = th_service(m, "Web", NULL);
    assert_string_equal(svc->name, "web");
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.kind[0], REG_EV_SERVICE_PUT);
    assert_int_equal(svc->modify_index, reg_model_index(m));
    assert_int_equal(svc->create_index, svc->modify_index);

    struct reg_instance *a = th_put(m, svc, "10.0.0.1:80", "dc1", "r1", 100);
    struct reg_instance *b = th_put(m, svc, "10.0.0.2:80", "dc1", "r1", 100);
    assert_int_equal(a->create_index + 1, b->create_index);
    /* The same registration again changes nothing: no bump, no event. */
    uint64_t before = reg_model_index(m);
    int n_before = rec.n;
    th_put(m, svc, "10.0.0.1:80", "dc1", "r1", 100);
    assert_int_equal(reg_model_index(m), before);
    assert_int_equal(rec.n, n_before);
    /* Neither do setters that set what is there, nor heartbeats. */
    reg_instance_set_enabled(m, a, true);
    assert_int_equal(reg_instance_set_weight(m, a, 100), 0);
    reg_instance_set_health(m, a, REG_HEALTH_UP, "still up", 5);
    reg_instance_heartbeat(m, a, 5);
    th_service(m, "web", NULL);
    assert_int_equal(reg_model_index(m), before);

    /* Each real change: one bump, one event, in order. */
    reg_instance_set_weight(m, a, 7);
    reg_instance_set_enabled(m, b, false);
    reg_instance_set_health(m, a, REG_HEALTH_DOWN, "refused", 6);
    struct reg_service_settings s;
    reg_service_settings_defaults(&s);
    s.dns_ttl = 30;
    th_service(m, "WEB", &s);
    reg_service_settings_free(&s);
    assert_int_equal(svc->settings.dns_ttl, 30);
    assert_int_equal(reg_instance_delete(m, svc, "10.0.0.2:80"), 0);
    assert_int_equal(reg_instance_delete(m, svc, "10.0.0.2:80"), -1);
    struct reg_service *other = th_service(m, "other", NULL);
    th_put(m, other, "10.0.0.9:80", "", "", 1);
    assert_int_equal(reg_service_delete(m, "OTHER"), 0);
    assert_int_equal(reg_service_delete(m, "other"), -1);

    enum reg_event_kind want[] = {
        REG_EV_SERVICE_PUT,     REG_EV_INSTANCE_PUT,    REG_EV_INSTANCE_PUT,   REG_EV_INSTANCE_CHANGE,
        REG_EV_INSTANCE_CHANGE, REG_EV_INSTANCE_CHANGE, REG_EV_SERVICE_PUT,    REG_EV_INSTANCE_DELETE,
        REG_EV_SERVICE_PUT,     REG_EV_INSTANCE_PUT,    REG_EV_SERVICE_DELETE,
    };
    assert_int_equal(rec.n, (int)(sizeof want / sizeof want[0]));
    for (int i = 0; i < rec.n; i++) {
        assert_int_equal(rec.kind[i], want[i]);
        assert_true(rec.index[i] > last);
        last = rec.index[i];
    }
    assert_int_equal(last, reg_model_index(m));
    assert_string_equal(rec.instance[7], "10.0.0.2:80");
    assert_string_equal(rec.service[10], "other");
    /* The service's index is its last change; a's is its own last. */
    assert_int_equal(svc->modify_index, rec.index[7]);
    assert_int_equal(a->modify_index, rec.index[5]);
    assert_string_equal(a->health_reason, "refused");
    assert_int_equal(a->health_changed_ms, 6);
    reg_model_free(m);
}

/* ---- validation -------------------------------------------------------- */

static void expect_service_error(struct reg_model *m, const char *name, const struct reg_service_settings *s,
                                 const char *want)
{
    char err[256] = "";
    assert_int_equal(reg_service_put(m, name, s, NULL, err, sizeof err), -1);
    if (!strstr(err, want))
        fail_msg("service %s: error \"%s\" lacks \"%s\"", name, err, want);
}

static void test_service_validation(void **state)
{
    (void)state;
    struct reg_model *m = th_model(NULL);
    expect_service_error(m, "", NULL, "empty");
    expect_service_error(m, "-web", NULL, "may not begin or end");
    expect_service_error(m, "web-", NULL, "may not begin or end");
    expect_service_error(m, "web.api", NULL, "one DNS label");
    expect_service_error(m, "web_api", NULL, "one DNS label");
    char long_name[80];
    memset(long_name, 'a', 64);
    long_name[64] = '\0';
    expect_service_error(m, long_name, NULL, "longer than 63");
    long_name[63] = '\0';
    th_service(m, long_name, NULL);

    struct reg_service_settings s;
#define BAD_SETTING(stmt, want)                                                                      \
    do {                                                                                             \
        reg_service_settings_defaults(&s);                                                           \
        stmt;                                                                                        \
        expect_service_error(m, "ok", &s, want);                                                     \
        reg_service_settings_free(&s);                                                               \
    } while (0)
    BAD_SETTING(s.protect_threshold = 1.5, "protect_threshold");
    BAD_SETTING(s.protect_threshold = -0.1, "protect_threshold");
    BAD_SETTING(s.locality.min_healthy_ratio = 2, "min_healthy_ratio");
    BAD_SETTING(s.answer_count = 0, "answer_count");
    BAD_SETTING(s.answer_count = REG_ANSWER_MAX + 1, "answer_count");
    BAD_SETTING(s.dns_ttl = REG_TTL_MAX + 1, "dns_ttl");
    BAD_SETTING(s.heartbeat_interval_ms = 10, "heartbeat_interval");
    BAD_SETTING(s.heartbeat_timeout_ms = 1000, "heartbeat_timeout");
    BAD_SETTING(s.expire_after_ms = 10000, "expire_after");
    BAD_SETTING(s.health.rise = 0, "health_check.rise");
    BAD_SETTING(s.health.timeout_ms = s.health.interval_ms + 1, "health_check.timeout");
    BAD_SETTING(s.health.status_min = 99, "health_check.expect_status");
    BAD_SETTING((free(s.health.http_path), s.health.http_path = strdup("/x\r\nHost: evil")), "health_check.path");
    BAD_SETTING(s.health.http_host = strdup("a b"), "health_check.host");
#undef BAD_SETTING
    assert_null(reg_service_find(m, "ok", 2)); /* nothing was created on errors */
    reg_model_free(m);
}

static void expect_instance_error(struct reg_model *m, struct reg_service *svc, struct reg_instance_spec *spec,
                                  const char *want)
{
    char err[256] = "";
    assert_int_equal(reg_instance_put(m, svc, spec, 0, NULL, err, sizeof err), -1);
    if (!strstr(err, want))
        fail_msg("error \"%s\" lacks \"%s\"", err, want);
}

static void test_instance_validation(void **state)
{
    (void)state;
    struct reg_model *m = th_model(NULL);
    struct reg_service *svc = th_service(m, "web", NULL);
    struct reg_instance_spec spec = th_spec("10.0.0.1:80", "dc1", "r1", 10001);
    expect_instance_error(m, svc, &spec, "weight");
    spec = th_spec("10.0.0.1:80", "dc 1", "r1", 1);
    expect_instance_error(m, svc, &spec, "datacenter");
    spec = th_spec("10.0.0.1:80", "dc1", "r/1", 1);
    expect_instance_error(m, svc, &spec, "region");
    spec = th_spec("10.0.0.1:80", "dc1", "r1", 1);
    spec.id = "has space";
    expect_instance_error(m, svc, &spec, "id");
    spec.id = "a/b";
    expect_instance_error(m, svc, &spec, "id");
    char long_id[200];
    memset(long_id, 'x', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    spec.id = long_id;
    expect_instance_error(m, svc, &spec, "longer than");
    spec = th_spec("10.0.0.1:0", "dc1", "r1", 1);
    expect_instance_error(m, svc, &spec, "port 0");
    spec = (struct reg_instance_spec){.id = "x", .weight = 1, .enabled = true};
    expect_instance_error(m, svc, &spec, "address");
    struct reg_label dup[] = {{"zone", "a"}, {"zone", "b"}};
    spec = th_spec("10.0.0.1:80", "dc1", "r1", 1);
    spec.labels = dup;
    spec.n_labels = 2;
    expect_instance_error(m, svc, &spec, "given twice");
    struct reg_label ctl[] = {{"k", "a\nb"}};
    spec.labels = ctl;
    spec.n_labels = 1;
    expect_instance_error(m, svc, &spec, "printable");
    struct reg_label badkey[] = {{"k=v", "a"}};
    spec.labels = badkey;
    expect_instance_error(m, svc, &spec, "key");
    assert_int_equal(svc->n_instances, 0);
    reg_model_free(m);
}

/* ---- registration ------------------------------------------------------ */

static void test_reregistration_and_labels(void **state)
{
    (void)state;
    struct reg_model *m = th_model(NULL);
    struct reg_service *svc = th_service(m, "web", NULL);
    struct reg_label labels[] = {{"version", "1.2"}, {"canary", "yes"}};
    struct reg_instance_spec spec = th_spec("10.0.0.1:80", "dc1", "r1", 100);
    spec.id = "web-1";
    spec.labels = labels;
    spec.n_labels = 2;
    spec.owner = "node-a";
    struct reg_instance *inst = th_put_spec(m, svc, &spec, 100);
    assert_string_equal(inst->id, "web-1");
    assert_int_equal(inst->n_labels, 2);
    assert_string_equal(inst->labels[1].value, "yes");
    assert_string_equal(inst->owner, "node-a");
    assert_string_equal(inst->datacenter, "dc1");
    assert_string_equal(inst->health_reason, "registered, not checked yet");
    assert_ptr_equal(reg_instance_find(svc, "web-1"), inst);

    /* Health stays over a re-registration at the same address ... */
    reg_instance_set_health(m, inst, REG_HEALTH_DOWN, "failed", 200);
    labels[0].value = "1.3";
    spec.weight = 200;
    assert_ptr_equal(th_put_spec(m, svc, &spec, 300), inst);
    assert_int_equal(inst->weight, 200);
    assert_string_equal(inst->labels[0].value, "1.3");
    assert_int_equal(inst->health, REG_HEALTH_DOWN);
    /* ... and starts afresh at a new one. */
    spec.addr = th_spec("10.0.0.2:80", "", "", 0).addr;
    th_put_spec(m, svc, &spec, 400);
    assert_int_equal(inst->health, REG_HEALTH_UP);
    assert_string_equal(inst->addr.text, "10.0.0.2:80");
    assert_int_equal(svc->n_instances, 1);

    /* The spec of a live instance registers the same thing. */
    struct reg_instance_spec back;
    reg_instance_spec_of(inst, &back);
    struct reg_service *copy = th_service(m, "copy", NULL);
    struct reg_instance *twin = th_put_spec(m, copy, &back, 500);
    assert_string_equal(twin->id, "web-1");
    assert_int_equal(twin->weight, 200);
    assert_string_equal(twin->labels[1].key, "canary");
    assert_string_equal(twin->region, "r1");

    /* Without an id, the address is the id. */
    struct reg_instance *anon = th_put(m, svc, "[2001:db8::1]:443", "", "", 5);
    assert_string_equal(anon->id, "[2001:db8::1]:443");
    assert_string_equal(anon->datacenter, "");
    assert_int_equal(anon->loc.dc, 0);
    reg_model_free(m);
}

static void test_find_is_case_insensitive(void **state)
{
    (void)state;
    struct reg_model *m = th_model(NULL);
    struct reg_service *svc = th_service(m, "Payments-API", NULL);
    assert_ptr_equal(reg_service_find(m, "payments-api", 12), svc);
    assert_ptr_equal(reg_service_find(m, "PAYMENTS-API", 12), svc);
    /* A label out of a longer buffer (the DNS path): only len bytes count. */
    assert_ptr_equal(reg_service_find(m, "payments-api.sluice.test", 12), svc);
    assert_null(reg_service_find(m, "payments", 8));
    char big[100];
    memset(big, 'a', sizeof big);
    assert_null(reg_service_find(m, big, sizeof big));
    reg_model_free(m);
}

static void test_locations(void **state)
{
    (void)state;
    struct reg_model *m = th_model(NULL);
    struct reg_loc a = th_loc(m, "dc1", "eu");
    struct reg_loc b = th_loc(m, "dc2", "eu");
    struct reg_loc c = th_loc(m, "dc1", "");
    assert_int_equal(a.dc, c.dc);
    assert_int_equal(a.region, b.region);
    assert_int_not_equal(a.dc, b.dc);
    assert_int_equal(c.region, 0);
    assert_string_equal(reg_model_loc_name(m, a.dc), "dc1");
    assert_string_equal(reg_model_loc_name(m, 0), "");
    assert_string_equal(reg_model_loc_name(m, 999), "");
    char err[128];
    struct reg_loc bad;
    assert_int_equal(reg_model_loc(m, "dc\"1", "eu", &bad, err, sizeof err), -1);
    assert_non_null(strstr(err, "datacenter"));
    reg_model_free(m);
}

/* The name index under churn: 20,000 keys put, a half deleted in a
 * scattered order, every lookup still right (backward-shift deletion). */
static void test_table_churn(void **state)
{
    (void)state;
    struct reg_table t;
    reg_table_init(&t, 42);
    enum { N = 20000 };
    static char keys[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        assert_int_equal(reg_table_put(&t, keys[i], strlen(keys[i]), keys[i]), 0);
    }
    assert_int_equal(reg_table_put(&t, keys[5], strlen(keys[5]), keys[5]), -EEXIST);
    for (int i = 0; i < N; i++) {
        int j = (int)(((uint64_t)i * 7919) % N);
        if (j % 2)
            assert_ptr_equal(reg_table_del(&t, keys[j], strlen(keys[j])), keys[j]);
    }
    assert_int_equal(t.count, N / 2);
    for (int i = 0; i < N; i++) {
        void *got = reg_table_get(&t, keys[i], strlen(keys[i]));
        if (i % 2)
            assert_null(got);
        else
            assert_ptr_equal(got, keys[i]);
    }
    assert_null(reg_table_del(&t, "absent", 6));
    reg_table_free(&t);
}

static void test_conf_check(void **state)
{
    (void)state;
    struct reg_model_conf c;
    char err[128];
    reg_model_conf_defaults(&c);
    assert_int_equal(reg_model_conf_check(&c, err, sizeof err), 0);
    c.eviction_cap = 0;
    assert_int_equal(reg_model_conf_check(&c, err, sizeof err), -1);
    assert_non_null(strstr(err, "eviction_cap"));
    reg_model_conf_defaults(&c);
    c.self_preservation = 1.2;
    assert_null(reg_model_create(&c, err, sizeof err));
    assert_non_null(strstr(err, "self_preservation"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_change_index_monotonic),
        cmocka_unit_test(test_service_validation),
        cmocka_unit_test(test_instance_validation),
        cmocka_unit_test(test_reregistration_and_labels),
        cmocka_unit_test(test_find_is_case_insensitive),
        cmocka_unit_test(test_locations),
        cmocka_unit_test(test_table_churn),
        cmocka_unit_test(test_conf_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
