/* Unit tests for lib/html: what the stats page writes of a name can never
 * be markup, and plain text passes unchanged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>

#include "lib/html.h"

static void check(const char *in, const char *want)
{
    struct strbuf s = { 0 };
    html_escape(&s, in);
    char *got = strbuf_finish(&s, NULL);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void test_markup_becomes_text(void **state)
{
    check("<script>alert('x')</script>", "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;");
    check("a\" onmouseover=\"b", "a&quot; onmouseover=&quot;b");
    check("&amp;", "&amp;amp;");
    check("<<>>", "&lt;&lt;&gt;&gt;");
}

static void test_plain_text_unchanged(void **state)
{
    check("127.0.0.1:8080", "127.0.0.1:8080");
    check("[::1]:80 ok: HTTP 200 in 1 ms", "[::1]:80 ok: HTTP 200 in 1 ms");
    check("", "");
    check(NULL, "");
    check("caf\xc3\xa9", "caf\xc3\xa9");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_markup_becomes_text),
        cmocka_unit_test(test_plain_text_unchanged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
