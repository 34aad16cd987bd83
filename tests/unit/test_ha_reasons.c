/* Unit tests for the HA companion's decision per address
 * (ha_verdict_reason in src/ha/ha_daemon.c): the board's verdict, then
 * ha.announce, then a drain (which keeps this node's own FullNAT local
 * addresses), and nothing once stopping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/config.h"
#include "ha/ha_conf.h"
#include "ha/ha_daemon.h"

#include "config_expect.h"

/* load_ok() is config_expect.h's; it brings helpers this file does not need. */
static void (*const unused_expect_error)(const char *, const char *) __attribute__((unused)) = expect_error;

static struct vip_verdict verdict(const char *ip, enum vip_reason reason, bool local_only, bool standin)
{
    struct vip_verdict v = { .reason = reason, .local_only = local_only, .standin = standin };
    assert_int_equal(vip_ip_parse(ip, &v.addr), 0);
    return v;
}

static void test_reasons(void **state)
{
    config_register_section(&ha_conf_section);
    struct sl_config *cfg = load_ok("ha:\n  asn: 65010\n  neighbors: [{ address: 10.0.0.1, asn: 65000 }]\n"
                                    "  announce: [10.0.0.100, 10.1.0.1, 10.1.0.2]\n");
    struct ha_companion h = { .ha = ha_conf(cfg) };
    struct vip_verdict vip = verdict("10.0.0.100", VIP_ANNOUNCE, false, false);
    struct vip_verdict local = verdict("10.1.0.1", VIP_ANNOUNCE, true, false);
    struct vip_verdict standin = verdict("10.1.0.2", VIP_ANNOUNCE, false, true);
    struct vip_verdict other = verdict("10.0.0.200", VIP_ANNOUNCE, false, false);
    assert_int_equal(ha_verdict_reason(&h, &vip), HA_WD_COUNT);           /* announced */
    assert_int_equal(ha_verdict_reason(&h, &local), HA_WD_COUNT);
    assert_int_equal(ha_verdict_reason(&h, &standin), HA_WD_COUNT);
    assert_int_equal(ha_verdict_reason(&h, &other), HA_WD_NOT_LISTED);   /* not in ha.announce */
    vip.reason = VIP_TOO_FEW_HEALTHY;
    assert_int_equal(ha_verdict_reason(&h, &vip), HA_WD_TOO_FEW_HEALTHY);
    vip.reason = VIP_NOT_SERVING;
    assert_int_equal(ha_verdict_reason(&h, &vip), HA_WD_NOT_SERVING);
    vip.reason = VIP_ANNOUNCE;
    /* drained: VIPs and stand-ins go, the node's own local addresses stay */
    h.drained = true;
    assert_int_equal(ha_verdict_reason(&h, &vip), HA_WD_DRAINED);
    assert_int_equal(ha_verdict_reason(&h, &standin), HA_WD_DRAINED);
    assert_int_equal(ha_verdict_reason(&h, &local), HA_WD_COUNT);
    /* the board's reason comes first */
    vip.reason = VIP_TOO_FEW_HEALTHY;
    assert_int_equal(ha_verdict_reason(&h, &vip), HA_WD_TOO_FEW_HEALTHY);
    /* stopping: nothing */
    h.stopped = true;
    assert_int_equal(ha_verdict_reason(&h, &local), HA_WD_STOPPING);
    for (int r = 0; r < HA_WD_COUNT; r++)
        assert_string_not_equal(ha_withdraw_reason_label((enum ha_withdraw_reason)r), "?");
    config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reasons),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
