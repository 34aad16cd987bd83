/* Unit tests for ha.preempt false (src/ha/ha_preempt.c): which route a
 * router sends back makes this node stay behind it (a worse zone's, read
 * from the zone community or the prepends), the priority it then goes out
 * with, the release after HA_PREEMPT_RELEASE_POLLS polls without it, a
 * starting session, and a forced preempt. The routes are what
 * birdc_parse_routes gives (test_ha_bird.c checks that on BIRD's output). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/config.h"
#include "core/evloop.h"
#include "ha/ha_conf.h"
#include "ha/ha_daemon.h"

#include "config_expect.h"

#define ASN 65010

/* load_ok() is config_expect.h's; it brings helpers this file does not need. */
static void (*const unused_expect_error)(const char *, const char *) __attribute__((unused)) = expect_error;

/* A route for prefix whose path is the router's ASN then ours `count`
 * times, with the zone community when zone >= 0. */
static struct birdc_route route(const char *prefix, uint32_t count, int zone)
{
    struct birdc_route r;
    memset(&r, 0, sizeof r);
    snprintf(r.prefix, sizeof r.prefix, "%s", prefix);
    snprintf(r.proto, sizeof r.proto, "sluice_bgp_10_0_0_1");
    r.as_path[r.as_path_len++] = 65000;
    for (uint32_t i = 0; i < count; i++)
        r.as_path[r.as_path_len++] = ASN;
    r.community[r.n_community][0] = ASN;
    r.community[r.n_community++][1] = BIRD_COMMUNITY_VIP + count - 1;
    if (zone >= 0) {
        r.community[r.n_community][0] = ASN;
        r.community[r.n_community++][1] = BIRD_COMMUNITY_ZONE + (uint32_t)zone;
    }
    return r;
}

static struct vip_ip ip_of(const char *s)
{
    struct vip_ip ip;
    assert_int_equal(vip_ip_parse(s, &ip), 0);
    return ip;
}

static void test_carrier(void **state)
{
    uint32_t prio, zone;
    struct birdc_route r = route("10.9.0.1/32", 2, -1);   /* one prepend, no zone community */
    assert_true(ha_preempt_carrier(&r, ASN, &prio, &zone));
    assert_int_equal(prio, 1);
    assert_int_equal(zone, 1);                            /* from the prepends */
    r = route("10.9.0.1/32", 3, 0);                       /* a zone-0 node held at 2 */
    assert_true(ha_preempt_carrier(&r, ASN, &prio, &zone));
    assert_int_equal(prio, 2);
    assert_int_equal(zone, 0);
    assert_false(ha_preempt_carrier(&r, 65011, &prio, &zone));   /* not the group's */
    /* A 4-byte ASN: the zone is a large community. */
    struct birdc_route big;
    memset(&big, 0, sizeof big);
    big.as_path[big.as_path_len++] = 65000;
    big.as_path[big.as_path_len++] = 4200000000u;
    big.as_path[big.as_path_len++] = 4200000000u;
    big.large_community[0][0] = 4200000000u;
    big.large_community[0][1] = BIRD_COMMUNITY_ZONE + 3;
    big.n_large_community = 1;
    assert_true(ha_preempt_carrier(&big, 4200000000u, &prio, &zone));
    assert_int_equal(prio, 1);
    assert_int_equal(zone, 3);
    /* A zone community out of range is not read as one. */
    r = route("10.9.0.1/32", 2, HA_PRIORITY_MAX + 1);
    assert_true(ha_preempt_carrier(&r, ASN, &prio, &zone));
    assert_int_equal(zone, 1);
}

struct fixture {
    struct sl_config *cfg;
    struct ha_companion h;
};

static struct fixture *setup_node(const char *yaml_tail)
{
    static struct fixture f;
    char yaml[512];
    snprintf(yaml, sizeof yaml, "ha:\n  asn: %d\n  neighbors: [{ address: 10.0.0.1, asn: 65000 }]\n%s", ASN,
             yaml_tail);
    memset(&f, 0, sizeof f);
    f.cfg = load_ok(yaml);
    f.h.ha = ha_conf(f.cfg);
    f.h.n_sessions = 1;
    snprintf(f.h.sessions[0].neighbor, sizeof f.h.sessions[0].neighbor, "10.0.0.1");
    f.h.sessions[0].up = true;
    f.h.sessions[0].settled = true;
    return &f;
}

static void teardown_node(struct fixture *f)
{
    ha_preempt_clear(&f->h.sessions[0]);
    config_free(f->cfg);
}

static uint32_t prio_of(struct fixture *f, const char *ip, enum ha_preempt_state *st)
{
    struct vip_ip a = ip_of(ip);
    return ha_preempt_priority(&f->h, 0, &a, st, NULL);
}

/* A primary (priority 0) back while zone 1 carries its VIP: held at 2;
 * released two polls after the router stops sending zone 1's route. */
static void test_hold_and_release(void **state)
{
    struct fixture *f = setup_node("  priority: 0\n  preempt: false\n");
    enum ha_preempt_state st;
    uint64_t now = ev_clock_ms();
    assert_int_equal(prio_of(f, "10.9.0.1", &st), 0);
    assert_int_equal(st, HA_PRIO_OWN);
    struct birdc_route r[3] = {
        route("10.9.0.1/32", 2, 1),      /* zone 1 carries 10.9.0.1 */
        route("10.9.0.2/32", 1, 0),      /* another zone-0 node carries .2: ECMP, no hold */
        route("10.9.0.3/32", 18, 1),     /* a starting zone-1 node (17 prepends): no hold */
    };
    assert_true(ha_preempt_observe(&f->h, 0, r, 3, now));
    assert_int_equal(prio_of(f, "10.9.0.1", &st), 2);
    assert_int_equal(st, HA_PRIO_HELD);
    assert_int_equal(prio_of(f, "10.9.0.2", &st), 0);
    assert_int_equal(st, HA_PRIO_OWN);
    assert_int_equal(prio_of(f, "10.9.0.3", &st), 0);
    const struct ha_hold *hd;
    struct vip_ip a = ip_of("10.9.0.1");
    ha_preempt_priority(&f->h, 0, &a, &st, &hd);
    assert_non_null(hd);
    assert_int_equal(hd->zone, 1);
    assert_int_equal(hd->carrier, 1);
    /* The same again: nothing changes. */
    assert_false(ha_preempt_observe(&f->h, 0, r, 3, now));
    /* Zone 1 withdrew: the router sends nothing for .1 (this node's
     * route is its best). One poll: still held (hysteresis). */
    assert_false(ha_preempt_observe(&f->h, 0, &r[1], 2, now));
    assert_int_equal(prio_of(f, "10.9.0.1", &st), 2);
    /* Back within the hysteresis: the count starts again. */
    assert_false(ha_preempt_observe(&f->h, 0, r, 3, now));
    assert_false(ha_preempt_observe(&f->h, 0, NULL, 0, now));
    assert_int_equal(prio_of(f, "10.9.0.1", &st), 2);
    assert_true(ha_preempt_observe(&f->h, 0, NULL, 0, now));   /* the second poll in a row: released */
    assert_int_equal(prio_of(f, "10.9.0.1", &st), 0);
    assert_int_equal(st, HA_PRIO_OWN);
    assert_int_equal(f->h.sessions[0].n_holds, 0);
    teardown_node(f);
}

/* Which routes hold a node back, and with what. */
static void test_what_holds(void **state)
{
    struct fixture *f = setup_node("  priority: 1\n  preempt: false\n");
    enum ha_preempt_state st;
    uint64_t now = ev_clock_ms();
    struct birdc_route r[4] = {
        route("10.9.0.1/32", 1, 0),      /* a better zone carries: no hold (behind it anyway) */
        route("10.9.0.2/32", 4, 0),      /* a zone-0 node held at 3 (community): not a worse zone */
        route("10.9.0.3/32", 4, -1),     /* no community: priority 3 read as zone 3, worse: held at 4 */
        route("2001:db8::1/64", 3, 2),   /* not a host route */
    };
    assert_true(ha_preempt_observe(&f->h, 0, r, 4, now));
    assert_int_equal(prio_of(f, "10.9.0.1", &st), 1);
    assert_int_equal(prio_of(f, "10.9.0.2", &st), 1);
    assert_int_equal(prio_of(f, "10.9.0.3", &st), 4);
    assert_int_equal(f->h.sessions[0].n_holds, 1);
    /* The carrier moves to a worse priority: the hold follows at once. */
    r[2] = route("10.9.0.3/32", 6, -1);
    assert_true(ha_preempt_observe(&f->h, 0, &r[2], 1, now));
    assert_int_equal(prio_of(f, "10.9.0.3", &st), 6);
    /* One behind a zone of priority HA_PRIORITY_MAX, no further. */
    r[2] = route("10.9.0.3/32", HA_PRIORITY_MAX + 2, HA_PRIORITY_MAX);
    assert_true(ha_preempt_observe(&f->h, 0, &r[2], 1, now));
    assert_int_equal(prio_of(f, "10.9.0.3", &st), BIRD_HELD_PRIORITY_MAX);
    /* An IPv6 host route counts as well. */
    struct birdc_route v6 = route("2001:db8::5/128", 3, 2);
    assert_true(ha_preempt_observe(&f->h, 0, &v6, 1, now));
    assert_int_equal(prio_of(f, "2001:db8::5", &st), 3);
    teardown_node(f);
}

/* A new session: every VIP goes out as a starting node's until settled;
 * a forced preempt drops the holds and takes none for a while; with
 * ha.preempt true nothing of this applies. */
static void test_starting_forced_and_preempt_true(void **state)
{
    struct fixture *f = setup_node("  priority: 0\n  preempt: false\n");
    enum ha_preempt_state st;
    uint64_t now = ev_clock_ms();
    f->h.sessions[0].settled = false;
    assert_int_equal(prio_of(f, "10.9.0.1", &st), BIRD_STARTING_PRIORITY);
    assert_int_equal(st, HA_PRIO_STARTING);
    struct birdc_route r = route("10.9.0.1/32", 2, 1);
    assert_true(ha_preempt_observe(&f->h, 0, &r, 1, now));   /* seen while starting: kept for later */
    assert_int_equal(prio_of(f, "10.9.0.1", &st), BIRD_STARTING_PRIORITY);
    f->h.sessions[0].settled = true;
    assert_int_equal(prio_of(f, "10.9.0.1", &st), 2);
    f->h.preempt_forced_until = now + HA_PREEMPT_FORCE_MS;
    for (size_t i = 0; i < f->h.n_sessions; i++)
        ha_preempt_clear(&f->h.sessions[i]);
    assert_false(ha_preempt_observe(&f->h, 0, &r, 1, now));
    assert_int_equal(prio_of(f, "10.9.0.1", &st), 0);
    assert_true(ha_preempt_observe(&f->h, 0, &r, 1, now + HA_PREEMPT_FORCE_MS));   /* the window is over */
    assert_int_equal(prio_of(f, "10.9.0.1", &st), 2);
    teardown_node(f);

    f = setup_node("  priority: 0\n");
    f->h.sessions[0].settled = false;
    assert_int_equal(prio_of(f, "10.9.0.1", &st), 0);
    assert_int_equal(st, HA_PRIO_OWN);
    teardown_node(f);
}

int main(void)
{
    config_register_section(&ha_conf_section);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_carrier),
        cmocka_unit_test(test_hold_and_release),
        cmocka_unit_test(test_what_holds),
        cmocka_unit_test(test_starting_forced_and_preempt_true),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
