/* Unit tests for a discovered pool's member slots (src/proxy/slots.c):
 * members that stay keep their slot, gone ones drain and are reused only
 * once quiet, a member back while draining takes its slot back, and a full
 * table makes newcomers wait. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "proxy/slots.h"

static struct slot_member mem(const char *text, uint32_t weight)
{
    struct slot_member m = { .weight = weight };
    const char *why;
    assert_int_equal(addr_parse(text, &m.addr, &why), 0);
    return m;
}

static int slot_of(const struct slot *s, size_t n, const char *text)
{
    for (size_t i = 0; i < n; i++)
        if (s[i].state != SLOT_EMPTY && strcmp(s[i].addr.text, text) == 0)
            return (int)i;
    return -1;
}

static void clear_flags(struct slot *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        s[i].addr_changed = s[i].weight_changed = s[i].state_changed = false;
}

static bool busy_set[8];
static bool busy(void *arg, size_t i) { return busy_set[i]; }

static void test_members_keep_their_slots(void **state)
{
    struct slot s[4] = { 0 };
    struct slots_result r;
    struct slot_member a[] = { mem("10.0.0.1:80", 100), mem("10.0.0.2:80", 100) };
    slots_apply(s, 4, a, 2, 1000, &r);
    assert_int_equal(r.added, 2);
    int s1 = slot_of(s, 4, "10.0.0.1:80"), s2 = slot_of(s, 4, "10.0.0.2:80");
    assert_true(s1 >= 0 && s2 >= 0 && s1 != s2);
    assert_true(s[s1].addr_changed && s[s1].state == SLOT_ACTIVE);
    clear_flags(s, 4);

    /* .1 goes, .3 comes, .2 changes weight: .2 stays where it was and its
     * address is untouched; .1 drains and its slot is not given to .3. */
    struct slot_member b[] = { mem("10.0.0.3:80", 100), mem("10.0.0.2:80", 250) };
    slots_apply(s, 4, b, 2, 2000, &r);
    assert_int_equal(r.kept, 1);
    assert_int_equal(r.added, 1);
    assert_int_equal(r.removed, 1);
    assert_int_equal(slot_of(s, 4, "10.0.0.2:80"), s2);
    assert_false(s[s2].addr_changed);
    assert_true(s[s2].weight_changed);
    assert_int_equal(s[s2].weight, 250);
    assert_int_equal(s[s1].state, SLOT_DRAINING);
    assert_int_equal(s[s1].drain_since_ms, 2000);
    int s3 = slot_of(s, 4, "10.0.0.3:80");
    assert_true(s3 >= 0 && s3 != s1 && s3 != s2);
    assert_int_equal(slots_used(s, 4), 3);
}

static void test_draining_slot_reused_only_when_quiet(void **state)
{
    struct slot s[2] = { 0 };
    struct slots_result r;
    struct slot_member a[] = { mem("10.0.0.1:80", 1), mem("10.0.0.2:80", 1) };
    slots_apply(s, 2, a, 2, 0, &r);
    int s1 = slot_of(s, 2, "10.0.0.1:80");
    struct slot_member b[] = { mem("10.0.0.2:80", 1), mem("10.0.0.9:80", 1) };
    slots_apply(s, 2, b, 2, 100, &r);
    /* No free slot: .9 waits while .1 drains. */
    assert_int_equal(r.waiting, 1);
    assert_int_equal(slot_of(s, 2, "10.0.0.9:80"), -1);
    assert_int_equal(s[s1].state, SLOT_DRAINING);

    /* Too early, then still busy: not reclaimed. */
    memset(busy_set, 0, sizeof busy_set);
    assert_int_equal(slots_reclaim(s, 2, 500, 1000, busy, NULL), 0);
    busy_set[s1] = true;
    assert_int_equal(slots_reclaim(s, 2, 5000, 1000, busy, NULL), 0);
    assert_int_equal(s[s1].state, SLOT_DRAINING);
    busy_set[s1] = false;
    clear_flags(s, 2);
    assert_int_equal(slots_reclaim(s, 2, 5000, 1000, busy, NULL), 1);
    assert_int_equal(s[s1].state, SLOT_EMPTY);
    assert_true(s[s1].addr_changed);

    /* Now the waiting member gets it. */
    slots_apply(s, 2, b, 2, 5100, &r);
    assert_int_equal(r.waiting, 0);
    assert_int_equal(slot_of(s, 2, "10.0.0.9:80"), s1);
}

static void test_member_back_while_draining(void **state)
{
    struct slot s[3] = { 0 };
    struct slots_result r;
    struct slot_member a[] = { mem("10.0.0.1:80", 1), mem("[::1]:8080", 1) };
    slots_apply(s, 3, a, 2, 0, &r);
    int s6 = slot_of(s, 3, "[::1]:8080");
    slots_apply(s, 3, a, 1, 10, &r);
    assert_int_equal(s[s6].state, SLOT_DRAINING);
    clear_flags(s, 3);
    slots_apply(s, 3, a, 2, 20, &r);
    assert_int_equal(s[s6].state, SLOT_ACTIVE);
    assert_false(s[s6].addr_changed);
    assert_true(s[s6].state_changed);
    assert_int_equal(slots_used(s, 3), 2);
}

static void test_duplicates_and_empty_list(void **state)
{
    struct slot s[3] = { 0 };
    struct slots_result r;
    struct slot_member a[] = { mem("10.0.0.1:80", 5), mem("10.0.0.1:80", 7) };
    slots_apply(s, 3, a, 2, 0, &r);
    assert_int_equal(r.added, 1);
    assert_int_equal(slots_used(s, 3), 1);
    assert_int_equal(s[slot_of(s, 3, "10.0.0.1:80")].weight, 5);
    slots_apply(s, 3, NULL, 0, 1, &r);
    assert_int_equal(r.removed, 1);
    assert_int_equal(slots_used(s, 3), 1); /* draining, not gone */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_members_keep_their_slots),
        cmocka_unit_test(test_draining_slot_reused_only_when_quiet),
        cmocka_unit_test(test_member_back_while_draining),
        cmocka_unit_test(test_duplicates_and_empty_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
