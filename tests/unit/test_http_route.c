/* Routing by host and path prefix, cookies, and consistent-hash keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "lib/hash.h"
#include "proxy/http_route.h"

static struct http1_message msg;

static const struct http1_message *parse(const char *raw)
{
    assert_int_equal(http1_parse_request(raw, strlen(raw), NULL, &msg), HTTP1_DONE);
    return &msg;
}

/* Listener with routes: pools 0 (default), 1 (api.example.com /), 2 (*.example.com /static),
 * 3 (any host, /v1), 4 (any host, /v1/admin), 5 (api.example.com /v1). */
static struct cfg_route routes[] = {
    {.host = "api.example.com", .path_prefix = "/", .pool = 1},
    {.host = "*.example.com", .path_prefix = "/static", .pool = 2},
    {.host = NULL, .path_prefix = "/v1", .pool = 3},
    {.host = NULL, .path_prefix = "/v1/admin", .pool = 4},
    {.host = "api.example.com", .path_prefix = "/v1", .pool = 5},
};

static struct cfg_listener listener = {
    .routes = routes, .n_routes = 5, .has_default_pool = true, .default_pool = 0,
};

static int route(const char *raw) { return http_route(&listener, parse(raw)); }

static void test_route_precedence(void **state)
{
    /* exact host beats any-host, then longest prefix */
    assert_int_equal(route("GET /v1/x HTTP/1.1\r\nHost: api.example.com\r\n\r\n"), 5);
    assert_int_equal(route("GET /other HTTP/1.1\r\nHost: API.Example.com:8080\r\n\r\n"), 1);
    /* wildcard host */
    assert_int_equal(route("GET /static/a.css HTTP/1.1\r\nHost: cdn.example.com\r\n\r\n"), 2);
    /* the wildcard does not match the bare domain */
    assert_int_equal(route("GET /static/a.css HTTP/1.1\r\nHost: example.com\r\n\r\n"), 0);
    /* any host: longest prefix */
    assert_int_equal(route("GET /v1/admin/users HTTP/1.1\r\nHost: other\r\n\r\n"), 4);
    assert_int_equal(route("GET /v1/users HTTP/1.1\r\nHost: other\r\n\r\n"), 3);
    /* nothing matches: the listener's pool */
    assert_int_equal(route("GET /nothing HTTP/1.1\r\nHost: other\r\n\r\n"), 0);
    /* an absolute-form target's authority wins over Host */
    assert_int_equal(route("GET http://api.example.com/v1/x HTTP/1.1\r\nHost: other\r\n\r\n"), 5);
}

static void test_route_without_default(void **state)
{
    struct cfg_listener l = {.routes = routes, .n_routes = 1};
    assert_int_equal(http_route(&l, parse("GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n")), 1);
    assert_int_equal(http_route(&l, parse("GET / HTTP/1.1\r\nHost: nope\r\n\r\n")), -1);
}

static void test_host_matches(void **state)
{
    struct http1_slice h = {"WWW.Example.COM:443", 19};
    assert_true(http_host_matches("www.example.com", h));
    assert_true(http_host_matches("*.example.com", h));
    assert_false(http_host_matches("*.www.example.com", h));
    assert_false(http_host_matches("example.com", h));
    struct http1_slice v6 = {"[::1]:80", 8};
    assert_false(http_host_matches("::1", v6));
}

static void test_cookies(void **state)
{
    const struct http1_message *m =
        parse("GET / HTTP/1.1\r\nHost: h\r\nCookie: a=1; uid=42\r\nCookie: sid=xyz\r\n\r\n");
    struct http1_slice v;
    assert_true(http_find_cookie(m, "uid", &v));
    assert_int_equal(v.len, 2);
    assert_memory_equal(v.p, "42", 2);
    assert_true(http_find_cookie(m, "sid", &v));
    assert_memory_equal(v.p, "xyz", 3);
    assert_false(http_find_cookie(m, "ui", &v));
    assert_false(http_find_cookie(m, "missing", &v));
}

static void test_key_hash(void **state)
{
    struct cfg_pool pool = {.hash_key = HASH_KEY_HEADER, .hash_key_name = "X-User"};
    const char *with = "GET /a HTTP/1.1\r\nHost: h\r\nX-User: alice\r\n\r\n";
    uint64_t k1 = http_key_hash(&pool, parse(with), "10.0.0.1");
    uint64_t k2 = http_key_hash(&pool, parse(with), "10.0.0.2");
    assert_true(k1 == k2); /* the header decides, not the client */
    assert_true(k1 == sl_hash64("alice", 5, 0));
    /* header absent: the client's address */
    uint64_t k3 = http_key_hash(&pool, parse("GET /a HTTP/1.1\r\nHost: h\r\n\r\n"), "10.0.0.1");
    assert_true(k3 == sl_hash64("10.0.0.1", 8, 0));
    pool.hash_key = HASH_KEY_URI;
    assert_true(http_key_hash(&pool, parse(with), "x") == sl_hash64("/a", 2, 0));
    pool.hash_key = HASH_KEY_COOKIE;
    pool.hash_key_name = "uid";
    uint64_t kc = http_key_hash(&pool, parse("GET / HTTP/1.1\r\nHost: h\r\nCookie: uid=7\r\n\r\n"), "x");
    assert_true(kc == sl_hash64("7", 1, 0));
    pool.hash_key = HASH_KEY_CLIENT_IP;
    assert_true(http_key_hash(&pool, parse(with), "::1") == sl_hash64("::1", 3, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route_precedence),
        cmocka_unit_test(test_route_without_default),
        cmocka_unit_test(test_host_matches),
        cmocka_unit_test(test_cookies),
        cmocka_unit_test(test_key_hash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
