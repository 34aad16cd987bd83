/* Unit tests for core/vip_board: what a tier publishes, the verdict per
 * address (announce, stand-in, not serving, too few healthy), and the
 * subscribers called once per loop turn, only after a change. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/vip_board.h"

static struct vip_entry entry(const char *owner, const char *ip, enum vip_kind kind, uint32_t healthy,
                              uint32_t total, bool serving)
{
    struct vip_entry e = { .kind = kind, .healthy = healthy, .total = total, .serving = serving };
    snprintf(e.owner, sizeof e.owner, "%s", owner);
    snprintf(e.source, sizeof e.source, "test");
    assert_int_equal(vip_ip_parse(ip, &e.addr), 0);
    return e;
}

/* The verdict for ip (fails when the board has none). */
static struct vip_verdict verdict(const struct vip_board *b, uint32_t min_healthy, const char *ip)
{
    struct vip_verdict *v, found = { 0 };
    size_t n;
    struct vip_ip want;
    assert_int_equal(vip_ip_parse(ip, &want), 0);
    assert_int_equal(vip_board_verdicts(b, min_healthy, &v, &n), 0);
    bool seen = false;
    for (size_t i = 0; i < n; i++) {
        if (vip_ip_equal(&v[i].addr, &want)) {
            found = v[i];
            seen = true;
        }
    }
    free(v);
    if (!seen)
        fail_msg("no verdict for %s", ip);
    return found;
}

static void test_ip_helpers(void **state)
{
    struct vip_ip a, b;
    char buf[64];
    assert_int_equal(vip_ip_parse("10.0.0.1", &a), 0);
    assert_string_equal(vip_ip_string(&a, buf, sizeof buf), "10.0.0.1");
    assert_int_equal(vip_ip_parse("2001:db8::1", &b), 0);
    assert_string_equal(vip_ip_string(&b, buf, sizeof buf), "2001:db8::1");
    assert_false(vip_ip_equal(&a, &b));
    assert_int_equal(vip_ip_parse("10.0.0.1:80", &a), -1);
    assert_int_equal(vip_ip_parse("", &a), -1);
    assert_int_equal(vip_ip_parse("0.0.0.0", &a), 0);
    assert_true(vip_ip_is_any(&a));
    assert_int_equal(vip_ip_parse("::", &a), 0);
    assert_true(vip_ip_is_any(&a));
    assert_false(vip_ip_is_any(&b));
}

/* One VIP with two services (ports): one service with enough healthy
 * reals announces it, whatever the other says. */
static void test_one_good_service_announces_the_vip(void **state)
{
    struct vip_board b;
    vip_board_init(&b, NULL);
    struct vip_entry web = entry("tcp:10.0.0.100:80", "10.0.0.100", VIP_SERVICE, 2, 2, true);
    struct vip_entry dns = entry("udp:10.0.0.100:53", "10.0.0.100", VIP_SERVICE, 0, 0, true);
    assert_int_equal(vip_board_publish(&b, &web), 0);
    assert_int_equal(vip_board_publish(&b, &dns), 0);
    struct vip_verdict v = verdict(&b, 1, "10.0.0.100");
    assert_int_equal(v.reason, VIP_ANNOUNCE);
    assert_false(v.standin);
    assert_false(v.local_only);
    assert_string_equal(v.owners, "tcp:10.0.0.100:80, udp:10.0.0.100:53");
    /* the web reals fail: nothing serves it well enough */
    web.healthy = 0;
    assert_int_equal(vip_board_publish(&b, &web), 0);
    v = verdict(&b, 1, "10.0.0.100");
    assert_int_equal(v.reason, VIP_TOO_FEW_HEALTHY);
    assert_int_equal(v.healthy, 0);
    assert_int_equal(v.total, 2);
    /* min_healthy 0: serving is enough */
    assert_int_equal(verdict(&b, 0, "10.0.0.100").reason, VIP_ANNOUNCE);
    /* min_healthy 2 with one of two healthy: "too few (1/2)" */
    web.healthy = 1;
    assert_int_equal(vip_board_publish(&b, &web), 0);
    v = verdict(&b, 2, "10.0.0.100");
    assert_int_equal(v.reason, VIP_TOO_FEW_HEALTHY);
    assert_int_equal(v.healthy, 1);
    assert_int_equal(v.total, 2);
    assert_int_equal(verdict(&b, 1, "10.0.0.100").reason, VIP_ANNOUNCE);
    vip_board_fini(&b);
}

/* Not serving (the forwarder is not attached, the listener closed):
 * withdrawn whatever the health; local and stand-in entries need only to
 * be serving. */
static void test_serving_and_kinds(void **state)
{
    struct vip_board b;
    vip_board_init(&b, NULL);
    struct vip_entry web = entry("tcp:10.0.0.100:80", "10.0.0.100", VIP_SERVICE, 3, 3, false);
    struct vip_entry local = entry("tcp:10.0.0.100:80", "10.1.0.1", VIP_LOCAL, 0, 0, true);
    struct vip_entry peer = entry("peer 10.9.0.2", "10.1.0.2", VIP_STANDIN, 0, 0, true);
    assert_int_equal(vip_board_publish(&b, &web), 0);
    assert_int_equal(vip_board_publish(&b, &local), 0);
    assert_int_equal(vip_board_publish(&b, &peer), 0);
    assert_int_equal(verdict(&b, 1, "10.0.0.100").reason, VIP_NOT_SERVING);
    struct vip_verdict v = verdict(&b, 1, "10.1.0.1");
    assert_int_equal(v.reason, VIP_ANNOUNCE);
    assert_false(v.standin);
    assert_true(v.local_only);
    v = verdict(&b, 1, "10.1.0.2");
    assert_int_equal(v.reason, VIP_ANNOUNCE);
    assert_true(v.standin);
    /* the address comes back to this node as its own local address: its
     * own entry wins, no stand-in path */
    struct vip_entry mine = entry("tcp:10.0.0.101:80", "10.1.0.2", VIP_LOCAL, 0, 0, true);
    assert_int_equal(vip_board_publish(&b, &mine), 0);
    assert_false(verdict(&b, 1, "10.1.0.2").standin);
    peer.serving = false;
    mine.serving = false;
    assert_int_equal(vip_board_publish(&b, &peer), 0);
    assert_int_equal(vip_board_publish(&b, &mine), 0);
    assert_int_equal(verdict(&b, 1, "10.1.0.2").reason, VIP_NOT_SERVING);
    /* removing an owner removes all its entries */
    vip_board_remove(&b, "tcp:10.0.0.100:80");
    struct vip_verdict *all;
    size_t n;
    assert_int_equal(vip_board_verdicts(&b, 1, &all, &n), 0);
    assert_int_equal(n, 1);
    char buf[64];
    assert_string_equal(vip_ip_string(&all[0].addr, buf, sizeof buf), "10.1.0.2");
    free(all);
    vip_board_fini(&b);
}

static int calls;
static void count_call(struct vip_board *b, void *arg) { calls++; }

/* replace: a publisher's whole set at once; the same set again is no
 * change; other publishers' entries are left alone. */
static void test_replace_by_source(void **state)
{
    struct vip_board b;
    vip_board_init(&b, NULL);
    calls = 0;
    assert_int_equal(vip_board_subscribe(&b, count_call, NULL), 0);
    struct vip_entry peer = entry("peer a", "10.1.0.2", VIP_STANDIN, 0, 0, true);
    assert_int_equal(vip_board_replace(&b, "sync", &peer, 1), 0);
    struct vip_entry set[2] = { entry("tcp:10.0.0.1:80", "10.0.0.1", VIP_SERVICE, 1, 1, true),
                                entry("tcp:10.0.0.2:80", "10.0.0.2", VIP_SERVICE, 1, 1, true) };
    assert_int_equal(vip_board_replace(&b, "l4", set, 2), 0);
    assert_int_equal(calls, 2);   /* no loop: called at once */
    assert_int_equal(b.n, 3);
    assert_int_equal(vip_board_replace(&b, "l4", set, 2), 0);
    assert_int_equal(calls, 2);   /* nothing changed */
    assert_int_equal(vip_board_replace(&b, "l4", set + 1, 1), 0);
    assert_int_equal(calls, 3);
    assert_int_equal(b.n, 2);
    assert_string_equal(b.entries[0].source, "sync");
    assert_string_equal(b.entries[1].owner, "tcp:10.0.0.2:80");
    assert_string_equal(b.entries[1].source, "l4");
    set[1].healthy = 0;
    assert_int_equal(vip_board_replace(&b, "l4", set + 1, 1), 0);
    assert_int_equal(calls, 4);
    assert_int_equal(vip_board_replace(&b, "l4", NULL, 0), 0);
    assert_int_equal(b.n, 1);
    assert_int_equal(calls, 5);
    /* publishing the same entry again is no change either */
    snprintf(peer.source, sizeof peer.source, "sync");
    assert_int_equal(vip_board_publish(&b, &peer), 0);
    assert_int_equal(calls, 5);
    vip_board_unsubscribe(&b, count_call, NULL);
    peer.serving = false;
    assert_int_equal(vip_board_publish(&b, &peer), 0);
    assert_int_equal(calls, 5);
    vip_board_fini(&b);
}

static void stop_loop(struct ev_loop *loop, struct ev_timer *t) { ev_break(loop); }

/* With a loop: many changes in one turn, one call after it. */
static void test_coalesced_once_per_turn(void **state)
{
    struct ev_loop *loop = ev_loop_new();
    assert_non_null(loop);
    struct vip_board b;
    vip_board_init(&b, loop);
    calls = 0;
    assert_int_equal(vip_board_subscribe(&b, count_call, NULL), 0);
    for (int i = 0; i < 10; i++) {
        struct vip_entry e = entry("tcp:10.0.0.1:80", "10.0.0.1", VIP_SERVICE, (uint32_t)i, 10, true);
        assert_int_equal(vip_board_publish(&b, &e), 0);
    }
    assert_int_equal(calls, 0);   /* not from inside the publisher's call */
    struct ev_timer t;
    ev_timer_init(&t, stop_loop, NULL);
    ev_timer_start(loop, &t, 50);
    assert_int_equal(ev_run(loop), 0);
    assert_int_equal(calls, 1);
    /* no change: no call */
    ev_timer_start(loop, &t, 20);
    assert_int_equal(ev_run(loop), 0);
    assert_int_equal(calls, 1);
    vip_board_fini(&b);
    ev_loop_free(loop);
}

static void test_subscriber_slots(void **state)
{
    struct vip_board b;
    vip_board_init(&b, NULL);
    for (int i = 0; i < VIP_MAX_SUBSCRIBERS; i++)
        assert_int_equal(vip_board_subscribe(&b, count_call, &b.subs[i]), 0);
    assert_int_equal(vip_board_subscribe(&b, count_call, NULL), -1);
    vip_board_fini(&b);
}

/* Many owners of one address: the list is cut, never overrun. */
static void test_many_owners(void **state)
{
    struct vip_board b;
    vip_board_init(&b, NULL);
    for (int i = 0; i < 40; i++) {
        char owner[64];
        snprintf(owner, sizeof owner, "tcp:10.0.0.1:%d", 1000 + i);
        struct vip_entry e = entry(owner, "10.0.0.1", VIP_SERVICE, 1, 1, true);
        assert_int_equal(vip_board_publish(&b, &e), 0);
    }
    struct vip_verdict v = verdict(&b, 1, "10.0.0.1");
    assert_true(strlen(v.owners) < sizeof v.owners);
    assert_non_null(strstr(v.owners, "..."));
    assert_int_equal(strncmp(v.owners, "tcp:10.0.0.1:1000, ", 19), 0);
    vip_board_fini(&b);
}

/* The forwarded hook: publishers' answers combined, slots, removal. */
static int answer_yes(void *arg, const struct vip_flow *f, uint64_t since_ns) { return 1; }
static int answer_no(void *arg, const struct vip_flow *f, uint64_t since_ns) { return 0; }
static int answer_unsure(void *arg, const struct vip_flow *f, uint64_t since_ns) { return -1; }
static uint64_t seen_since;
static uint16_t seen_port;
static int answer_port_80(void *arg, const struct vip_flow *f, uint64_t since_ns)
{
    seen_since = since_ns;
    seen_port = f->dport;
    return f->dport == 80;
}

static void test_forwarded_hook(void **state)
{
    struct vip_board b;
    vip_board_init(&b, NULL);
    struct vip_flow f = { .sport = 61000, .dport = 80, .proto = 6 };
    assert_int_equal(vip_ip_parse("10.0.0.9", &f.src), 0);
    assert_int_equal(vip_ip_parse("10.0.0.1", &f.dst), 0);
    assert_false(vip_board_has_forwarded(&b));
    assert_int_equal(vip_board_forwarded(&b, &f, 5), -1);   /* nobody to ask */
    int a, c, e;
    assert_int_equal(vip_board_set_forwarded(&b, answer_unsure, &a), 0);
    assert_int_equal(vip_board_forwarded(&b, &f, 5), -1);
    assert_int_equal(vip_board_set_forwarded(&b, answer_no, &c), 0);
    assert_int_equal(vip_board_forwarded(&b, &f, 5), 0);
    assert_int_equal(vip_board_set_forwarded(&b, answer_port_80, &e), 0);
    assert_int_equal(vip_board_forwarded(&b, &f, 123456789), 1);   /* one yes is enough */
    assert_int_equal(seen_since, 123456789);
    assert_int_equal(seen_port, 80);
    f.dport = 81;
    assert_int_equal(vip_board_forwarded(&b, &f, 5), 0);
    /* the same arg replaces its predicate; NULL removes it */
    assert_int_equal(vip_board_set_forwarded(&b, answer_yes, &c), 0);
    assert_int_equal(vip_board_forwarded(&b, &f, 5), 1);
    assert_int_equal(vip_board_set_forwarded(&b, NULL, &c), 0);
    assert_int_equal(vip_board_forwarded(&b, &f, 5), 0);
    int more[VIP_MAX_SUBSCRIBERS];
    size_t taken = 0;
    for (int i = 0; i < VIP_MAX_SUBSCRIBERS; i++)
        taken += vip_board_set_forwarded(&b, answer_no, &more[i]) == 0;
    assert_int_equal(taken, VIP_MAX_SUBSCRIBERS - 2);   /* a and e hold two slots */
    vip_board_fini(&b);
}

/* Service entries carry proto and port; a port change is a change. */
static void test_port_is_part_of_an_entry(void **state)
{
    struct vip_board b;
    vip_board_init(&b, NULL);
    calls = 0;
    assert_int_equal(vip_board_subscribe(&b, count_call, NULL), 0);
    struct vip_entry e = entry("tcp:10.0.0.1:80", "10.0.0.1", VIP_SERVICE, 1, 1, true);
    e.proto = 6;
    e.port = 80;
    assert_int_equal(vip_board_replace(&b, "l4", &e, 1), 0);
    assert_int_equal(calls, 1);
    assert_int_equal(vip_board_replace(&b, "l4", &e, 1), 0);
    assert_int_equal(calls, 1);
    e.port = 8080;
    assert_int_equal(vip_board_replace(&b, "l4", &e, 1), 0);
    assert_int_equal(calls, 2);
    assert_int_equal(b.entries[0].port, 8080);
    assert_int_equal(b.entries[0].proto, 6);
    vip_board_fini(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forwarded_hook),
        cmocka_unit_test(test_port_is_part_of_an_entry),
        cmocka_unit_test(test_ip_helpers),
        cmocka_unit_test(test_one_good_service_announces_the_vip),
        cmocka_unit_test(test_serving_and_kinds),
        cmocka_unit_test(test_replace_by_source),
        cmocka_unit_test(test_coalesced_once_per_turn),
        cmocka_unit_test(test_subscriber_slots),
        cmocka_unit_test(test_many_owners),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
