/* Unit tests for lib/strbuf: appends, growth past the first block and the
 * small printf buffer, and the hand-over. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "lib/strbuf.h"

static void test_empty(void **state)
{
    struct strbuf s = { 0 };
    size_t len = 99;
    char *text = strbuf_finish(&s, &len);
    assert_non_null(text);
    assert_string_equal(text, "");
    assert_int_equal(len, 0);
    assert_null(s.p);
    free(text);
}

static void test_appends(void **state)
{
    struct strbuf s = { 0 };
    strbuf_puts(&s, "a");
    strbuf_put(&s, "bcd", 2);
    strbuf_printf(&s, "-%d-%s", 42, "x");
    assert_string_equal(s.p, "abc-42-x");
    assert_int_equal(s.len, 8);
    size_t len;
    char *text = strbuf_finish(&s, &len);
    assert_string_equal(text, "abc-42-x");
    assert_int_equal(len, 8);
    assert_int_equal(s.len, 0);
    free(text);
}

/* A formatted piece longer than the internal 256-byte buffer, and a text
 * far past the first 1 KiB block. */
static void test_long_pieces(void **state)
{
    struct strbuf s = { 0 };
    char big[3000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    strbuf_printf(&s, "<%s>", big);
    assert_int_equal(s.len, sizeof big + 1);
    assert_int_equal(s.p[0], '<');
    assert_int_equal(s.p[s.len - 1], '>');
    assert_int_equal(strlen(s.p), s.len);
    for (int i = 0; i < 10000; i++)
        strbuf_printf(&s, "%d,", i % 10);
    assert_int_equal(s.len, sizeof big + 1 + 20000);
    assert_true(s.cap > s.len);
    strbuf_free(&s);
    assert_null(s.p);
    assert_int_equal(s.len, 0);
}

/* Once out of memory, appends do nothing and finish hands back NULL. */
static void test_sticky_oom(void **state)
{
    struct strbuf s = { 0 };
    strbuf_puts(&s, "kept");
    assert_false(strbuf_reserve(&s, (size_t)-1 / 2 + 1));
    assert_true(s.oom);
    strbuf_puts(&s, "more");
    assert_int_equal(s.len, 4);
    assert_null(strbuf_finish(&s, NULL));
    assert_null(s.p);
    assert_false(s.oom);
    /* a size that would wrap around is refused, not wrapped */
    strbuf_puts(&s, "x");
    assert_false(strbuf_reserve(&s, SIZE_MAX));
    assert_null(strbuf_finish(&s, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_appends),
        cmocka_unit_test(test_long_pieces),
        cmocka_unit_test(test_sticky_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
