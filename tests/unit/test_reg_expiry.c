/* Unit tests for the clock of the registry model (src/registry/reg_expiry.c):
 * heartbeat timeouts, expiry, the eviction cap, self-preservation on and
 * off, and the grace period after a restart. Time is driven by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry/reg_model.h"
#include "registry/reg_select.h"

#include "reg_helpers.h"

/* Defaults (5 s heartbeats, down after 15 s, expired after 30 s; cap 25%
 * per minute; self-preservation below 85% over a minute; 30 s grace),
 * with self-preservation as given. */
static struct reg_model *model_with(double self_preservation, double cap)
{
    struct reg_model_conf c;
    reg_model_conf_defaults(&c);
    c.self_preservation = self_preservation;
    c.eviction_cap = cap;
    return th_model(&c);
}

struct expiries {
    int n;
    char id[256][REG_ID_MAX + 1];
};

static void on_change(void *arg, const struct reg_event *ev)
{
    struct expiries *e = arg;
    if (ev->kind == REG_EV_INSTANCE_EXPIRE && e->n < 256)
        snprintf(e->id[e->n++], sizeof e->id[0], "%s", ev->instance->id);
}

static void test_silence_marks_down_and_heartbeat_lifts(void **state)
{
    (void)state;
    struct reg_model *m = model_with(0, 1);
    struct reg_service *svc = th_service(m, "eph", NULL);
    struct reg_instance *e = th_put_ephemeral(m, svc, "10.0.0.1:80", 0);
    struct reg_instance *p = th_put(m, svc, "10.0.0.2:80", "dc1", "r1", 100);
    struct reg_tick_result r;

    reg_model_tick(m, 15000, &r); /* exactly the timeout: not yet */
    assert_int_equal(e->health, REG_HEALTH_UP);
    reg_model_tick(m, 15001, &r);
    assert_int_equal(r.marked_down, 1);
    assert_int_equal(e->health, REG_HEALTH_DOWN);
    assert_string_equal(e->health_reason, "no heartbeat for 15.0s");
    assert_int_equal(e->health_changed_ms, 15001);
    uint64_t idx = reg_model_index(m);
    reg_model_tick(m, 16000, &r); /* already down: no second change */
    assert_int_equal(r.marked_down, 0);
    assert_int_equal(reg_model_index(m), idx);

    assert_true(reg_instance_heartbeat(m, e, 20000));
    assert_int_equal(e->health, REG_HEALTH_UP);
    assert_string_equal(e->health_reason, "heartbeat resumed");
    assert_false(reg_instance_heartbeat(m, e, 21000));

    /* Set DOWN by hand: a heartbeat does not lift it. */
    reg_instance_set_health(m, e, REG_HEALTH_DOWN, "draining", 22000);
    assert_false(reg_instance_heartbeat(m, e, 23000));
    assert_int_equal(e->health, REG_HEALTH_DOWN);
    assert_string_equal(e->health_reason, "draining");

    /* A persistent instance neither goes down for silence nor expires. */
    reg_model_tick(m, 3600000, &r);
    assert_int_equal(p->health, REG_HEALTH_UP);
    assert_ptr_equal(reg_instance_find(svc, "10.0.0.2:80"), p);
    assert_null(reg_instance_find(svc, "10.0.0.1:80")); /* the ephemeral one expired */
    reg_model_free(m);
}

static void test_expiry(void **state)
{
    (void)state;
    struct reg_model *m = model_with(0, 1);
    struct expiries ex = {0};
    reg_model_on_change(m, on_change, &ex);
    struct reg_service *svc = th_service(m, "eph", NULL);
    struct reg_instance *a = th_put_ephemeral(m, svc, "10.0.0.1:80", 0);
    th_put_ephemeral(m, svc, "10.0.0.2:80", 0);
    struct reg_tick_result r;
    for (uint64_t t = 1000; t <= 30000; t += 1000) {
        reg_instance_heartbeat(m, a, t);
        reg_model_tick(m, t, &r);
        assert_int_equal(r.expired, 0);
    }
    reg_model_tick(m, 30001, &r);
    assert_int_equal(r.expired, 1);
    assert_int_equal(ex.n, 1);
    assert_string_equal(ex.id[0], "10.0.0.2:80");
    assert_int_equal(svc->n_instances, 1);
    assert_int_equal(svc->n_ephemeral, 1);
    struct reg_model_stats st;
    reg_model_stats(m, &st);
    assert_int_equal(st.expirations, 1);
    assert_int_equal(st.heartbeats, 30);
    /* The service stays when its instances go. */
    reg_model_tick(m, 100000, &r);
    assert_int_equal(svc->n_instances, 0);
    assert_ptr_equal(reg_service_find(m, "eph", 3), svc);
    reg_model_free(m);
}

/* 20 silent instances, a cap of 25% per minute: 5 in the first minute
 * (the longest silent first), then 25% of those left each minute. */
static void test_eviction_cap(void **state)
{
    (void)state;
    struct reg_model *m = model_with(0, 0.25);
    struct expiries ex = {0};
    reg_model_on_change(m, on_change, &ex);
    struct reg_service *svc = th_service(m, "eph", NULL);
    char a[32];
    struct reg_instance *insts[20];
    for (int i = 0; i < 20; i++) {
        snprintf(a, sizeof a, "10.0.0.%d:80", i + 1);
        insts[i] = th_put_ephemeral(m, svc, a, 0);
    }
    for (int i = 0; i < 20; i++) /* the last heartbeats: 10.0.0.1 first */
        reg_instance_heartbeat(m, insts[i], 100 + (uint64_t)i);

    struct reg_tick_result r;
    reg_model_tick(m, 30200, &r);
    assert_int_equal(r.expired, 5);
    assert_int_equal(r.deferred_by_cap, 15);
    assert_true(svc->eviction_capped);
    assert_int_equal(svc->expiry_waiting, 15);
    for (int i = 0; i < 5; i++) {
        snprintf(a, sizeof a, "10.0.0.%d:80", i + 1);
        assert_string_equal(ex.id[i], a);
    }
    /* Nothing more within the minute. */
    for (uint64_t t = 31200; t < 90200; t += 1000) {
        reg_model_tick(m, t, &r);
        assert_int_equal(r.expired, 0);
        assert_true(svc->eviction_capped);
    }
    /* Next minute: 25% of the 15 left (3). */
    reg_model_tick(m, 90200, &r);
    assert_int_equal(r.expired, 3);
    assert_int_equal(svc->n_instances, 12);
    /* Over time, each minute's share, never more, until all are gone. */
    uint64_t window_start = 90200;
    int in_window = 3, budget = 3;
    for (uint64_t t = 91200; svc->n_instances && t < 3600000; t += 1000) {
        uint32_t before = svc->n_ephemeral;
        reg_model_tick(m, t, &r);
        if (r.expired) {
            if (t - window_start >= 60000) {
                window_start = t;
                in_window = 0;
                budget = (int)(before / 4) ? (int)(before / 4) : 1;
            }
            in_window += (int)r.expired;
            assert_true(in_window <= budget);
        }
    }
    assert_int_equal(svc->n_instances, 0);
    assert_false(svc->eviction_capped);
    struct reg_model_stats st;
    reg_model_stats(m, &st);
    assert_int_equal(st.expirations, 20);
    assert_true(st.expiry_deferred_by_cap > 0);
    reg_model_free(m);
}

/* Heartbeat every instance every 5 s over [from, to). */
static void heartbeat_all(struct reg_model *m, struct reg_service *svc, uint64_t from, uint64_t to,
                          struct reg_tick_result *sum, bool *preservation_seen)
{
    for (uint64_t t = from; t < to; t += 1000) {
        if (t % 5000 == 0)
            for (uint32_t i = 0; i < svc->n_instances; i++)
                reg_instance_heartbeat(m, svc->instances[i], t);
        struct reg_tick_result r;
        reg_model_tick(m, t, &r);
        sum->expired += r.expired;
        sum->held_by_preservation += r.held_by_preservation;
        struct reg_model_stats st;
        reg_model_stats(m, &st);
        if (preservation_seen)
            *preservation_seen |= st.self_preservation;
    }
}

/* The node is cut off: every heartbeat stops at once. With
 * self-preservation on, nothing expires (instances go DOWN, answers fail
 * open through the protect threshold) and everything comes back when the
 * heartbeats do; with it off, all expire. */
static void cut_off(double self_preservation, bool expect_kept)
{
    struct reg_model *m = model_with(self_preservation, 1.0);
    struct reg_service *svc = th_service(m, "eph", NULL);
    char a[32];
    for (int i = 0; i < 100; i++) {
        snprintf(a, sizeof a, "10.0.%d.%d:80", i / 250, i % 250 + 1);
        th_put_ephemeral(m, svc, a, 0);
    }
    struct reg_tick_result sum = {0};
    bool seen = false;
    heartbeat_all(m, svc, 0, 120000, &sum, &seen);
    assert_false(seen); /* a steady rate never triggers it */
    assert_int_equal(sum.expired, 0);

    /* Silence from 120 s on. */
    struct reg_tick_result r;
    for (uint64_t t = 120000; t < 200000; t += 1000) {
        reg_model_tick(m, t, &r);
        sum.expired += r.expired;
        sum.held_by_preservation += r.held_by_preservation;
    }
    struct reg_model_stats st;
    reg_model_stats(m, &st);
    if (!expect_kept) {
        assert_false(st.self_preservation);
        assert_int_equal(sum.expired, 100);
        assert_int_equal(svc->n_instances, 0);
        reg_model_free(m);
        return;
    }
    assert_true(st.self_preservation);
    assert_int_equal(st.self_preservation_episodes, 1);
    assert_true(st.self_preservation_since_ms > 120000);
    assert_true(st.self_preservation_since_ms < 135000); /* before anything is even marked down */
    assert_int_equal(sum.expired, 0);
    assert_true(sum.held_by_preservation > 0);
    assert_int_equal(svc->n_instances, 100);
    for (uint32_t i = 0; i < svc->n_instances; i++)
        assert_int_equal(svc->instances[i]->health, REG_HEALTH_DOWN);

    /* The heartbeats come back: everything UP at once, and the rate
     * recovers within a window, turning self-preservation off. */
    sum = (struct reg_tick_result){0};
    heartbeat_all(m, svc, 200000, 300000, &sum, NULL);
    reg_model_stats(m, &st);
    assert_false(st.self_preservation);
    assert_int_equal(sum.expired, 0);
    for (uint32_t i = 0; i < svc->n_instances; i++)
        assert_int_equal(svc->instances[i]->health, REG_HEALTH_UP);
    reg_model_free(m);
}

static void test_self_preservation_on(void **state)
{
    (void)state;
    cut_off(0.85, true);
}

static void test_self_preservation_off(void **state)
{
    (void)state;
    cut_off(0, false);
}

/* Half the instances stop (they died): the rate is 50% of the expected,
 * so self-preservation holds the dead ones (DOWN, not answered) instead of
 * expiring them; the live ones are unaffected. */
static void test_self_preservation_holds_partial_loss(void **state)
{
    (void)state;
    struct reg_model *m = model_with(0.85, 1.0);
    struct reg_service *svc = th_service(m, "eph", NULL);
    char a[32];
    struct reg_instance *insts[40];
    for (int i = 0; i < 40; i++) {
        snprintf(a, sizeof a, "10.0.0.%d:80", i + 1);
        insts[i] = th_put_ephemeral(m, svc, a, 0);
    }
    struct reg_tick_result r;
    uint32_t held = 0;
    for (uint64_t t = 1000; t < 300000; t += 1000) {
        if (t % 5000 == 0)
            for (int i = 0; i < 40; i++)
                if (t < 60000 || i % 2 == 0)
                    reg_instance_heartbeat(m, insts[i], t);
        reg_model_tick(m, t, &r);
        assert_int_equal(r.expired, 0);
        held += r.held_by_preservation;
    }
    assert_true(held > 0);
    assert_int_equal(svc->n_instances, 40);
    for (int i = 0; i < 40; i++)
        assert_int_equal(insts[i]->health, i % 2 == 0 ? REG_HEALTH_UP : REG_HEALTH_DOWN);
    /* The answers hold only the live ones. */
    struct reg_service_summary sum;
    reg_service_summarize(svc, &sum);
    assert_int_equal(sum.healthy, 20);
    assert_int_equal(sum.expiry_waiting, 20);
    reg_model_free(m);
}

/* A handful of instances is no fleet to judge by: with fewer than
 * self_preservation_min (10) ephemeral instances, the silent ones expire
 * even with self-preservation on; with 10, they are held. */
static void few_silent(int n, bool expect_held)
{
    struct reg_model *m = model_with(0.85, 1.0);
    struct reg_service *svc = th_service(m, "few", NULL);
    char a[32];
    for (int i = 0; i < n; i++) {
        snprintf(a, sizeof a, "10.0.0.%d:80", i + 1);
        th_put_ephemeral(m, svc, a, 0);
    }
    struct reg_tick_result r;
    uint32_t expired = 0, held = 0;
    for (uint64_t t = 1000; t <= 120000; t += 1000) {
        reg_model_tick(m, t, &r);
        expired += r.expired;
        held += r.held_by_preservation;
    }
    if (expect_held) {
        assert_int_equal(expired, 0);
        assert_true(held > 0);
        assert_int_equal(svc->n_instances, (uint32_t)n);
    } else {
        assert_int_equal(expired, (uint32_t)n);
        assert_int_equal(held, 0);
    }
    reg_model_free(m);
}

static void test_self_preservation_needs_a_fleet(void **state)
{
    (void)state;
    few_silent(1, false);
    few_silent(9, false);
    few_silent(10, true);
}

/* After a restart: ephemeral instances read back from the store are left
 * alone for the grace period; those that heartbeat stay, the others go
 * down and expire when it ends. */
static void test_grace_period(void **state)
{
    (void)state;
    struct reg_model *m = model_with(0, 1.0);
    struct reg_service *svc = th_service(m, "eph", NULL);
    struct reg_instance_spec spec = th_spec("10.0.0.1:80", "dc1", "r1", 100);
    spec.ephemeral = true;
    struct reg_instance *back = NULL, *gone = NULL;
    char err[128];
    const uint64_t load = 1000000;
    assert_int_equal(reg_instance_load(m, svc, &spec, load, &back, err, sizeof err), 0);
    spec = th_spec("10.0.0.2:80", "dc1", "r1", 100);
    spec.ephemeral = true;
    assert_int_equal(reg_instance_load(m, svc, &spec, load, &gone, err, sizeof err), 0);
    assert_int_equal(gone->grace_until_ms, load + 30000);
    struct reg_tick_result r;
    /* Silent past both timeouts, but within the grace: untouched. */
    for (uint64_t t = load; t < load + 30000; t += 1000) {
        reg_model_tick(m, t, &r);
        assert_int_equal(r.marked_down + r.expired, 0);
        if (t >= load + 10000 && t % 5000 == 0)
            reg_instance_heartbeat(m, back, t);
    }
    assert_int_equal(gone->health, REG_HEALTH_UP);
    reg_model_tick(m, load + 30001, &r);
    assert_int_equal(r.expired, 1);
    assert_null(reg_instance_find(svc, "10.0.0.2:80"));
    assert_ptr_equal(reg_instance_find(svc, "10.0.0.1:80"), back);
    assert_int_equal(back->health, REG_HEALTH_UP);

    /* A persistent instance loaded gets no grace (it is never expired). */
    spec = th_spec("10.0.0.3:80", "dc1", "r1", 100);
    struct reg_instance *p = NULL;
    assert_int_equal(reg_instance_load(m, svc, &spec, load, &p, err, sizeof err), 0);
    assert_int_equal(p->grace_until_ms, 0);
    reg_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_silence_marks_down_and_heartbeat_lifts),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_eviction_cap),
        cmocka_unit_test(test_self_preservation_on),
        cmocka_unit_test(test_self_preservation_off),
        cmocka_unit_test(test_self_preservation_holds_partial_loss),
        cmocka_unit_test(test_self_preservation_needs_a_fleet),
        cmocka_unit_test(test_grace_period),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
