/* Which certificate group serves an SNI name: tls_name_matches (exact, or a
 * wildcard for exactly one leftmost label) and tls_server_lookup (exact
 * names of any group before wildcards, first listed wins). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "proxy/tls.h"

static void test_exact_names(void **state)
{
    assert_true(tls_name_matches("example.com", "example.com"));
    assert_true(tls_name_matches("Example.COM", "example.com"));
    assert_false(tls_name_matches("example.com", "www.example.com"));
    assert_false(tls_name_matches("example.com", "example.co"));
    assert_false(tls_name_matches("example.com", ""));
}

static void test_wildcard_is_one_label(void **state)
{
    assert_true(tls_name_matches("*.example.com", "a.example.com"));
    assert_true(tls_name_matches("*.example.com", "A-1.Example.com"));
    assert_false(tls_name_matches("*.example.com", "example.com"));      /* no label at all */
    assert_false(tls_name_matches("*.example.com", "a.b.example.com"));  /* two labels */
    assert_false(tls_name_matches("*.example.com", ".example.com"));     /* an empty label */
    assert_false(tls_name_matches("*.example.com", "aexample.com"));
    assert_false(tls_name_matches("*.example.com", "a.example.com.evil"));
    assert_false(tls_name_matches("*.example.com", "*.example.com.x"));
}

/* Groups: 0 = example.com + *.example.com (the default), 1 = www.example.com,
 * 2 = *.example.com again (listed later: never chosen), 3 = other.org. */
static struct tls_name names[] = {
    {"example.com", 0}, {"*.example.com", 0}, {"www.example.com", 1}, {"*.example.com", 2}, {"other.org", 3},
};
static const struct tls_server server = {.names = names, .n_names = sizeof names / sizeof names[0]};

static void test_lookup_order(void **state)
{
    assert_int_equal(tls_server_lookup(&server, "example.com"), 0);
    assert_int_equal(tls_server_lookup(&server, "www.example.com"), 1); /* exact beats the earlier wildcard */
    assert_int_equal(tls_server_lookup(&server, "api.example.com"), 0); /* first wildcard listed */
    assert_int_equal(tls_server_lookup(&server, "other.org"), 3);
    assert_int_equal(tls_server_lookup(&server, "a.b.example.com"), -1);
    assert_int_equal(tls_server_lookup(&server, "unknown.net"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_names),
        cmocka_unit_test(test_wildcard_is_one_label),
        cmocka_unit_test(test_lookup_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
