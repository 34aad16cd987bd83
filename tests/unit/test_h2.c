/* Unit tests for the hand-written parts of HTTP/2 to clients: the request
 * head rendered as HTTP/1.1 (proxy/h2_request.c) and the response helpers
 * (proxy/h2_response.c): header lists from HTTP/1 heads, chunked framing
 * stripped. The protocol itself is nghttp2's; tests/integration/
 * test_http2.py runs it end to end, tests/fuzz/fuzz_h2.c fuzzes it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/h2_request.h"
#include "proxy/h2_response.h"

static void add(struct h2_req *r, const char *name, const char *value)
{
    assert_int_equal(h2_req_add(r, (const uint8_t *)name, strlen(name), (const uint8_t *)value, strlen(value)), 0);
}

/* Render r into a string (static buffer); *status the result. */
static const char *render(struct h2_req *r, bool chunked, int *status, const char **reason)
{
    static char text[8192];
    struct buf out = {0};
    assert_int_equal(buf_alloc(&out, h2_req_rendered_size(r)), 0);
    *status = h2_req_render(r, chunked, &out, reason);
    snprintf(text, sizeof text, "%.*s", (int)buf_len(&out), buf_head(&out));
    buf_release(&out);
    return text;
}

static void test_get_with_authority(void **state)
{
    struct h2_req r;
    h2_req_init(&r, 4096);
    add(&r, ":method", "GET");
    add(&r, ":scheme", "http");
    add(&r, ":path", "/a?b=c");
    add(&r, ":authority", "example.com:8080");
    add(&r, "user-agent", "t");
    add(&r, "accept", "*/*");
    int st;
    const char *why;
    const char *t = render(&r, false, &st, &why);
    assert_int_equal(st, 0);
    assert_string_equal(t, "GET /a?b=c HTTP/1.1\r\nhost: example.com:8080\r\nuser-agent: t\r\naccept: */*\r\n\r\n");
    h2_req_free(&r);
}

static void test_cookies_joined_host_dropped_chunked_added(void **state)
{
    struct h2_req r;
    h2_req_init(&r, 4096);
    add(&r, ":method", "POST");
    add(&r, ":path", "/p");
    add(&r, ":authority", "h");
    add(&r, "cookie", "a=1");
    add(&r, "host", "H");
    add(&r, "x-mid", "m");
    add(&r, "cookie", "b=2");
    int st;
    const char *why;
    const char *t = render(&r, true, &st, &why);
    assert_int_equal(st, 0);
    assert_string_equal(t, "POST /p HTTP/1.1\r\nhost: h\r\nx-mid: m\r\ncookie: a=1; b=2\r\n"
                           "transfer-encoding: chunked\r\n\r\n");
    h2_req_free(&r);
}

static void test_content_length_means_no_chunking(void **state)
{
    struct h2_req r;
    h2_req_init(&r, 4096);
    add(&r, ":method", "PUT");
    add(&r, ":path", "/u");
    add(&r, "host", "only-host");
    add(&r, "content-length", "5");
    int st;
    const char *why;
    const char *t = render(&r, true, &st, &why);
    assert_int_equal(st, 0);
    assert_string_equal(t, "PUT /u HTTP/1.1\r\nhost: only-host\r\ncontent-length: 5\r\n\r\n");
    h2_req_free(&r);
}

static void test_host_differing_from_authority_is_400(void **state)
{
    struct h2_req r;
    h2_req_init(&r, 4096);
    add(&r, ":method", "GET");
    add(&r, ":path", "/");
    add(&r, ":authority", "a.example");
    add(&r, "host", "b.example");
    int st;
    const char *why;
    render(&r, false, &st, &why);
    assert_int_equal(st, 400);
    assert_string_equal(why, "host and :authority differ");
    h2_req_free(&r);
}

static void test_connect_targets_authority(void **state)
{
    struct h2_req r;
    h2_req_init(&r, 4096);
    add(&r, ":method", "CONNECT");
    add(&r, ":authority", "example.com:443");
    int st;
    const char *why;
    const char *t = render(&r, false, &st, &why);
    assert_int_equal(st, 0);
    assert_string_equal(t, "CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n");
    h2_req_free(&r);
}

static void test_list_size_counts_32_per_field(void **state)
{
    struct h2_req r;
    h2_req_init(&r, 100);
    add(&r, ":method", "GET");   /* 7 + 3 + 32 = 42 */
    add(&r, ":path", "/");       /* 5 + 1 + 32 = 38: 80 */
    add(&r, "a", "bcdefghijklmnopqrs"); /* 1 + 18 + 32 = 51: 131 > 100 */
    assert_true(r.too_large);
    add(&r, "more", "fields are only counted now");
    int st;
    const char *why;
    render(&r, false, &st, &why);
    assert_int_equal(st, 431);
    h2_req_free(&r);
}

static void test_missing_method_or_path(void **state)
{
    struct h2_req r;
    int st;
    const char *why;
    h2_req_init(&r, 4096);
    add(&r, ":path", "/");
    render(&r, false, &st, &why);
    assert_int_equal(st, 400);
    h2_req_free(&r);
    h2_req_init(&r, 4096);
    add(&r, ":method", "GET");
    render(&r, false, &st, &why);
    assert_int_equal(st, 400);
    h2_req_free(&r);
}

static void test_response_head_to_header_list(void **state)
{
    const char head[] = "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                        "Transfer-Encoding: chunked\r\nKeep-Alive: timeout=5\r\nX-Mixed-Case: V\r\n\r\nbody";
    struct h2_head h;
    ssize_t n = h2_head_from_http1(head, sizeof head - 1, &h);
    assert_int_equal(n, sizeof head - 1 - 4);
    assert_int_equal(h.status, 404);
    assert_int_equal(h.n, 3);
    assert_memory_equal(h.nv[0].name, ":status", 7);
    assert_memory_equal(h.nv[0].value, "404", 3);
    assert_int_equal(h.nv[1].namelen, 12);
    assert_memory_equal(h.nv[1].name, "content-type", 12);
    assert_memory_equal(h.nv[2].name, "x-mixed-case", 12);
    assert_memory_equal(h.nv[2].value, "V", 1);
    h2_head_free(&h);
    assert_int_equal(h2_head_from_http1("HTTP/1.1 200 OK\r\nA: b\r\n", 23, &h), 0);
    assert_int_equal(h2_head_from_http1("garbage\r\n\r\n", 11, &h), -1);
}

static void test_dechunk_in_pieces(void **state)
{
    const char body[] = "5;x=y\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nTrailer: t\r\n\r\nNEXT";
    size_t len = sizeof body - 1 - 4; /* the message, not what follows */
    for (size_t step = 1; step <= len; step++) {
        struct h2_dechunk d;
        h2_dechunk_init(&d);
        char out[64];
        size_t pos = 0, o = 0;
        while (pos < sizeof body - 1 && !d.done) {
            size_t piece = sizeof body - 1 - pos < step ? sizeof body - 1 - pos : step;
            size_t got = 0;
            ssize_t t = h2_dechunk_feed(&d, body + pos, piece, out + o, 3, &got); /* little room */
            assert_true(t >= 0);
            pos += (size_t)t;
            o += got;
        }
        assert_true(d.done);
        assert_int_equal(pos, len);
        assert_int_equal(o, 16);
        assert_memory_equal(out, "hello 0123456789", 16);
    }
    struct h2_dechunk d;
    h2_dechunk_init(&d);
    char out[8];
    size_t got;
    assert_int_equal(h2_dechunk_feed(&d, "3\r\nabcX", 7, out, sizeof out, &got), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_with_authority),
        cmocka_unit_test(test_cookies_joined_host_dropped_chunked_added),
        cmocka_unit_test(test_content_length_means_no_chunking),
        cmocka_unit_test(test_host_differing_from_authority_is_400),
        cmocka_unit_test(test_connect_targets_authority),
        cmocka_unit_test(test_list_size_counts_32_per_field),
        cmocka_unit_test(test_missing_method_or_path),
        cmocka_unit_test(test_response_head_to_header_list),
        cmocka_unit_test(test_dechunk_in_pieces),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
