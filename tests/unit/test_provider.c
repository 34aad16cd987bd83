/* Unit tests for libsluice's provider side (src/client/provider.c): the
 * heartbeat interval read from a service's settings, in the forms the
 * registry writes and the ones it never does. (Registration, heartbeats and
 * registering again run against real registry nodes in
 * tests/integration/test_client.py.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "client/provider_priv.h"

static void test_durations_the_registry_writes(void **state)
{
    assert_int_equal(cl_duration_ms("300ms"), 300);
    assert_int_equal(cl_duration_ms("5s"), 5000);
    assert_int_equal(cl_duration_ms("2m"), 120000);
    assert_int_equal(cl_duration_ms("1h"), 3600000);
    assert_int_equal(cl_duration_ms("0ms"), 0);
}

static void test_not_durations(void **state)
{
    const char *bad[] = { NULL, "", "5", "s", "-5s", "+5s", " 5s", "5 s", "5sec", "5S", "1.5s", "5ss",
                          "ms", "5msx", "99999999999999999999999s", "4294968s", "1194h" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (cl_duration_ms(bad[i]) != 0)
            fail_msg("\"%s\" was taken for a duration", bad[i] ? bad[i] : "(null)");
    }
    /* the largest that fits */
    assert_int_equal(cl_duration_ms("4294967295ms"), 4294967295u);
    assert_int_equal(cl_duration_ms("4294967s"), 4294967000u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_durations_the_registry_writes),
        cmocka_unit_test(test_not_durations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
