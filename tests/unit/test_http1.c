/* Unit tests for lib/http1: the request/response head parsers and the
 * chunked framing validator. Each strictness rule has accept and reject
 * cases; incremental feeding is checked by parsing exact-size copies of every
 * prefix (the parser is stateless, so a split at byte k is the prefix k). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/http1.h"

static struct http1_message msg;   /* 4 KiB of headers: keep it off the stack */

/* ---- helpers ------------------------------------------------------------ */

static enum http1_result parse_req_lim(const char *s, const struct http1_limits *lim)
{
    return http1_parse_request(s, strlen(s), lim, &msg);
}

static enum http1_result parse_req(const char *s)
{
    return parse_req_lim(s, NULL);
}

static enum http1_result parse_resp(const char *s, enum http1_method m)
{
    return http1_parse_response(s, strlen(s), NULL, m, &msg);
}

static void req_ok(const char *s)
{
    enum http1_result r = parse_req(s);
    if (r != HTTP1_DONE)
        fail_msg("expected DONE, got %d (%d %s) for: %s", r, msg.error_status,
                 msg.error_reason ? msg.error_reason : "-", s);
    assert_int_equal(msg.head_len, strlen(s));
}

static void req_err_lim(const char *s, const struct http1_limits *lim, int status)
{
    enum http1_result r = parse_req_lim(s, lim);
    if (r != HTTP1_ERROR || msg.error_status != status)
        fail_msg("expected error %d, got result %d status %d (%s) for: %s", status, r, msg.error_status,
                 msg.error_reason ? msg.error_reason : "-", s);
    assert_non_null(msg.error_reason);
}

static void req_err(const char *s, int status)
{
    req_err_lim(s, NULL, status);
}

static void resp_ok(const char *s, enum http1_method m)
{
    enum http1_result r = parse_resp(s, m);
    if (r != HTTP1_DONE)
        fail_msg("expected DONE, got %d (%s) for: %s", r, msg.error_reason ? msg.error_reason : "-", s);
    assert_int_equal(msg.head_len, strlen(s));
}

static void resp_err(const char *s)
{
    enum http1_result r = parse_resp(s, HTTP1_M_GET);
    if (r != HTTP1_ERROR || msg.error_status != 502)
        fail_msg("expected 502, got result %d status %d for: %s", r, msg.error_status, s);
    assert_non_null(msg.error_reason);
}

static bool slice_is(struct http1_slice s, const char *want)
{
    return s.len == strlen(want) && memcmp(s.p, want, s.len) == 0;
}

#define assert_slice(s, want) assert_true(slice_is((s), (want)))

/* A request with a simple GET head plus one extra header line. */
static void req_with_header_ok(const char *line)
{
    char buf[512];
    snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: a\r\n%s\r\n\r\n", line);
    req_ok(buf);
}

static void req_with_header_err(const char *line, int status)
{
    char buf[512];
    snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: a\r\n%s\r\n\r\n", line);
    req_err(buf, status);
}

/* Parse an exact-size heap copy of s[0..k) so ASan catches any read past k. */
static enum http1_result parse_prefix(bool request, const char *s, size_t k, struct http1_message *m)
{
    char *copy = malloc(k ? k : 1);
    assert_non_null(copy);
    memcpy(copy, s, k);
    enum http1_result r = request ? http1_parse_request(copy, k, NULL, m)
                                  : http1_parse_response(copy, k, NULL, HTTP1_M_GET, m);
    free(copy);
    return r;
}

/* ---- request line --------------------------------------------------------- */

static void test_request_basic(void **state)
{
    const char *s = "GET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\nUser-Agent:  t/1 \r\nX-Empty:\r\n\r\n";
    req_ok(s);
    assert_int_equal(msg.method, HTTP1_M_GET);
    assert_slice(msg.method_str, "GET");
    assert_slice(msg.target, "/a/b?c=d");
    assert_int_equal(msg.version_minor, 1);
    assert_int_equal(msg.n_headers, 3);
    assert_slice(msg.headers[0].name, "Host");
    assert_slice(msg.headers[0].value, "example.com");
    assert_slice(msg.headers[1].value, "t/1");   /* OWS trimmed on both sides */
    assert_int_equal(msg.headers[2].value.len, 0);
    assert_slice(msg.host, "example.com");
    assert_int_equal(msg.authority.len, 0);
    assert_int_equal(msg.body, HTTP1_BODY_NONE);
    assert_true(msg.keep_alive);
    assert_false(msg.upgrade);
    assert_false(msg.expect_continue);
    assert_int_equal(msg.error_status, 0);
    assert_null(msg.error_reason);
}

static void test_request_methods(void **state)
{
    static const struct { const char *name; enum http1_method m; } cases[] = {
        { "GET", HTTP1_M_GET },         { "HEAD", HTTP1_M_HEAD },       { "POST", HTTP1_M_POST },
        { "PUT", HTTP1_M_PUT },         { "DELETE", HTTP1_M_DELETE },   { "OPTIONS", HTTP1_M_OPTIONS },
        { "TRACE", HTTP1_M_TRACE },     { "PATCH", HTTP1_M_PATCH },     { "PROPFIND", HTTP1_M_OTHER },
        { "get", HTTP1_M_OTHER },       { "X-M!#$%&'*+.^_`|~", HTTP1_M_OTHER },
    };
    char buf[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(buf, sizeof buf, "%s / HTTP/1.1\r\nHost: a\r\n\r\n", cases[i].name);
        req_ok(buf);
        assert_int_equal(msg.method, cases[i].m);
        assert_slice(msg.method_str, cases[i].name);
    }
    req_err("GE(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    req_err("GE\"T / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    req_err(" GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    req_err("G\x80T / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    /* Leading empty lines are not skipped. */
    req_err("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
}

static void test_line_endings(void **state)
{
    req_ok("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    req_err("GET / HTTP/1.1\nHost: a\r\n\r\n", 400);
    req_err("GET / HTTP/1.1\r\nHost: a\n\r\n", 400);
    req_err("GET / HTTP/1.1\r\nHost: a\r\n\n", 400);
    req_err("GET / HTTP/1.1\nHost: a\n\n", 400);
    req_err("GET / HTTP/1.1\rHost: a\r\n\r\n", 400);
    req_err("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400);
    req_err("GET / HTTP/1.1\r\nHost: a\r\n\rX", 400);
    req_err("GET /\n HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    req_err("GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    req_err("GET / HTTP/1.1\r\nX: a\nb\r\nHost: a\r\n\r\n", 400);
    req_err("GET / HTTP/1.1\r\nX: a\rb\r\nHost: a\r\n\r\n", 400);
    req_err("GET / HTTP/1.1\r\n\nHost: a\r\n\r\n", 400);
}

static void test_request_line_syntax(void **state)
{
    req_ok("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    req_err("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    req_err("GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    req_err("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400);
    req_err("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    req_err("GET /\tHTTP/1.1\r\nHost: a\r\n\r\n", 400);
    req_err("GET HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    req_err("GET /\r\nHost: a\r\n\r\n", 400);      /* HTTP/0.9 style: no version */
    req_err("GET / \r\nHost: a\r\n\r\n", 400);
    req_err("GET\r\n\r\n", 400);
    req_err("\r\n\r\n", 400);
}

static void test_request_target(void **state)
{
    req_ok("GET /p/a%20t;x?q=1&r=[]{}|^`\"<> HTTP/1.1\r\nHost: a\r\n\r\n");
    req_ok("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
    req_ok("OPTIONS /x HTTP/1.1\r\nHost: a\r\n\r\n");
    req_ok("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
    assert_slice(msg.authority, "example.com:443");
    req_ok("CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: x\r\n\r\n");
    req_ok("GET http://example.com/x?y HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_slice(msg.authority, "example.com");
    req_ok("GET HTTPS://example.com:8443 HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_slice(msg.authority, "example.com:8443");
    req_ok("GET http://h?q HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_slice(msg.authority, "h");

    req_err("GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    req_err("GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    req_err("GET /a\x80 HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    req_err("GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    static const char nul[] = "GET /a\0 HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_int_equal(http1_parse_request(nul, sizeof nul - 1, NULL, &msg), HTTP1_ERROR);
    assert_int_equal(msg.error_status, 400);
    req_err("GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    req_err("GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    req_err("OPTIONS ** HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    req_err("CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    req_err("CONNECT example.com HTTP/1.1\r\nHost: a\r\n\r\n", 400);          /* port required */
    req_err("CONNECT http://example.com:443/ HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    req_err("GET example.com:443 HTTP/1.1\r\nHost: a\r\n\r\n", 400);          /* authority-form only for CONNECT */
    req_err("GET ftp://example.com/ HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    req_err("GET http:// HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    req_err("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    req_err("GET http://user@host/ HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    req_err("GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400);
}

static void test_version(void **state)
{
    req_ok("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_int_equal(msg.version_minor, 1);
    req_ok("GET / HTTP/1.0\r\n\r\n");
    assert_int_equal(msg.version_minor, 0);

    req_err("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
    req_err("GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505);
    req_err("GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505);
    req_err("GET / http/1.1\r\nHost: a\r\n\r\n", 400);
    req_err("GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400);
    req_err("GET / HTTP/1\r\nHost: a\r\n\r\n", 400);
    req_err("GET / HTTP/2\r\nHost: a\r\n\r\n", 400);
    req_err("GET / HTTP/1.x\r\nHost: a\r\n\r\n", 400);
    req_err("GET / HTTPS/1.1\r\nHost: a\r\n\r\n", 400);
}

/* ---- limits --------------------------------------------------------------- */

static void test_request_line_limit(void **state)
{
    const char *line = "GET /xxxxxxxxxx HTTP/1.1";
    struct http1_limits lim = { .max_request_line = strlen(line), .max_head = 4096, .max_headers = 10 };
    char buf[128];

    /* Exactly at the limit is fine; one byte more is 414. */
    snprintf(buf, sizeof buf, "%s\r\nHost: a\r\n\r\n", line);
    assert_int_equal(parse_req_lim(buf, &lim), HTTP1_DONE);
    lim.max_request_line--;
    req_err_lim(buf, &lim, 414);
    lim.max_request_line++;

    /* Proven too long while still incomplete: max+1 bytes without a CR. */
    memset(buf, 0, sizeof buf);
    memcpy(buf, "GET /", 5);
    memset(buf + 5, 'x', lim.max_request_line - 5);
    assert_int_equal(parse_req_lim(buf, &lim), HTTP1_INCOMPLETE);
    buf[lim.max_request_line] = 'x';
    req_err_lim(buf, &lim, 414);
    memset(buf + 5, 'x', 100);
    req_err_lim(buf, &lim, 414);
    /* At the limit and waiting for the LF: not proven yet. */
    snprintf(buf, sizeof buf, "%s\r", line);
    assert_int_equal(parse_req_lim(buf, &lim), HTTP1_INCOMPLETE);
    /* When max_head is the smaller bound, it is 431 instead. */
    lim.max_head = 10;
    req_err_lim("GET /xxxxxxxxxxxxxxxxxxxxxxxxxx", &lim, 431);
}

static void test_head_limits(void **state)
{
    struct http1_limits lim = { .max_request_line = 100, .max_head = 4096, .max_headers = 3 };
    const char *three = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
    const char *four = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";

    assert_int_equal(parse_req_lim(three, &lim), HTTP1_DONE);
    req_err_lim(four, &lim, 431);
    /* Too many fields is known as soon as the fourth field starts. */
    req_err_lim("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC", &lim, 431);

    /* Whole head bigger than max_head: exactly fitting is fine, one byte more is 431. */
    lim.max_headers = 10;
    lim.max_head = strlen(three);
    assert_int_equal(parse_req_lim(three, &lim), HTTP1_DONE);
    lim.max_head = strlen(three) - 1;
    req_err_lim(three, &lim, 431);
    /* ...and while incomplete, as soon as max_head bytes are buffered without an end. */
    lim.max_head = 20;
    assert_int_equal(parse_req_lim("GET / HTTP/1.1\r\nHos", &lim), HTTP1_INCOMPLETE);
    req_err_lim("GET / HTTP/1.1\r\nHost", &lim, 431);
    req_err_lim("GET / HTTP/1.1\r\nHost: a\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaa", &lim, 431);

    /* Configured above the array capacity: the capacity wins. */
    lim.max_head = 1 << 20;
    lim.max_headers = 100000;
    char *big = malloc(64 * 1024);
    assert_non_null(big);
    size_t n = (size_t)sprintf(big, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 1; i < HTTP1_MAX_HEADERS_CAP; i++)
        n += (size_t)sprintf(big + n, "X-%d: v\r\n", i);
    strcpy(big + n, "\r\n");
    assert_int_equal(parse_req_lim(big, &lim), HTTP1_DONE);
    assert_int_equal(msg.n_headers, HTTP1_MAX_HEADERS_CAP);
    strcpy(big + n, "Y: 1\r\n\r\n");
    req_err_lim(big, &lim, 431);
    /* Default limit: 100 fields. */
    req_err(big, 431);
    free(big);
}

/* ---- header fields -------------------------------------------------------- */

static void test_obs_fold(void **state)
{
    req_err("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400);
    req_err("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n", 400);
    req_err("GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400);
    req_err("GET / HTTP/1.1\r\n\tHost: a\r\n\r\n", 400);
    req_err("GET / HTTP/1.1\r\nHost: a\r\n \r\n\r\n", 400);
    req_ok("GET / HTTP/1.1\r\nHost: a\r\nX: a b\tc\r\n\r\n");
    assert_slice(msg.headers[1].value, "a b\tc");
}

static void test_header_name_and_value(void **state)
{
    req_with_header_ok("X-Name!#$%&'*+.^_`|~: v");
    req_with_header_ok("X:v");
    req_with_header_ok("X: \t v \t ");
    assert_slice(msg.headers[1].value, "v");
    req_with_header_ok("X:");
    req_with_header_ok("X:   ");
    assert_int_equal(msg.headers[1].value.len, 0);
    req_with_header_ok("X: caf\xc3\xa9 \x80\xff");   /* obs-text in values */
    req_with_header_ok("X: a\tb");
    req_with_header_ok("X: \"quoted\" (comment) , ; = [] {}");

    req_with_header_err("X : v", 400);
    req_with_header_err("X\t: v", 400);
    req_with_header_err(": v", 400);
    req_with_header_err("X", 400);
    req_with_header_err("X v", 400);
    req_with_header_err("X(y): v", 400);
    req_with_header_err("X/y: v", 400);
    req_with_header_err("X\x80: v", 400);
    req_with_header_err("X: a\x01" "b", 400);
    req_with_header_err("X: a\x7f" "b", 400);
    req_with_header_err("X: a\x1f", 400);
    /* NUL in a value: build it by hand since it ends C strings. */
    static const char nul[] = "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n";
    assert_int_equal(http1_parse_request(nul, sizeof nul - 1, NULL, &msg), HTTP1_ERROR);
    assert_int_equal(msg.error_status, 400);
}

static void test_host(void **state)
{
    static const char *good[] = {
        "example.com", "EXAMPLE.com:8080", "127.0.0.1", "127.0.0.1:65535", "[::1]", "[::1]:80",
        "[2001:db8::1:2]", "ex%41mple.com", "a-b_c~d", "sub.example.com:0", "",
    };
    static const char *bad[] = {
        "a b", "a\tb.c", "example.com:", "example.com:99999", "example.com:123456", "example.com:8x",
        "ex%4mple", "ex%zzmple", "a/b", "a@b", "[::1", "[::1]x", "[zz::1]", "[1.2.3.4]", "a:1:2", ":80",
        "\"a\"", "a?b",
    };
    char buf[256];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", good[i]);
        req_ok(buf);
        assert_slice(msg.host, good[i]);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", bad[i]);
        req_err(buf, 400);
    }
    req_err("GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n", 400);
    req_err("GET / HTTP/1.1\r\n\r\n", 400);                         /* 1.1 needs Host */
    req_err("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400);   /* even identical */
    req_err("GET / HTTP/1.1\r\nHost: a\r\nhOST: b\r\n\r\n", 400);
    req_ok("GET / HTTP/1.0\r\n\r\n");                               /* 1.0 may omit it */
    assert_int_equal(msg.host.len, 0);
    req_ok("GET / HTTP/1.0\r\nhost: x.y\r\n\r\n");
    assert_slice(msg.host, "x.y");
}

static void test_content_length(void **state)
{
    static const struct { const char *v; uint64_t n; } good[] = {
        { "0", 0 }, { "5", 5 }, { "005", 5 }, { "5, 5", 5 }, { "5,5", 5 }, { "5 ,5 , 5", 5 },
        { "18446744073709551615", UINT64_MAX },
    };
    static const char *bad[] = {
        "", "+5", "-5", "5 5", "5a", "0x5", "5.0", "5, 6", "5,", ",5", "5,,5", "1 000",
        "18446744073709551616", "99999999999999999999999",
    };
    char buf[256];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        snprintf(buf, sizeof buf, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %s\r\n\r\n", good[i].v);
        req_ok(buf);
        assert_int_equal(msg.body, HTTP1_BODY_LENGTH);
        assert_true(msg.content_length == good[i].n);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(buf, sizeof buf, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %s\r\n\r\n", bad[i]);
        req_err(buf, 400);
    }
    req_ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\ncontent-length: 7\r\n\r\n");
    assert_true(msg.content_length == 7);
    req_err("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\nContent-Length: 8\r\n\r\n", 400);
    req_err("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\nContent-Length: 7, 8\r\n\r\n", 400);
}

static void test_transfer_encoding(void **state)
{
    static const char *good[] = {
        "chunked", "Chunked", "CHUNKED", "gzip, chunked", "gzip,chunked", "deflate , x-gzip ,chunked",
        "gzip;level=9, chunked", "gzip ; q=\"a,b\" , chunked",
    };
    static const struct { const char *v; int status; } bad[] = {
        { "gzip", 400 },            { "chunked, gzip", 400 },    { "chunked;foo", 400 },
        { "chunked;foo=bar", 400 }, { "chunked, chunked", 400 }, { "", 400 },
        { "chunked,", 400 },        { ", chunked", 400 },        { "chunked gzip", 400 },
        { "gzip;=x, chunked", 400 }, { "gzip;a=\"x, chunked", 400 }, { "\"chunked\"", 400 },
        { "identity", 501 },        { "xchunked", 501 },         { "foo, chunked", 501 },
        { "chunked-x", 501 },
    };
    char buf[256];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        snprintf(buf, sizeof buf, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: %s\r\n\r\n", good[i]);
        req_ok(buf);
        assert_int_equal(msg.body, HTTP1_BODY_CHUNKED);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(buf, sizeof buf, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: %s\r\n\r\n", bad[i].v);
        req_err(buf, bad[i].status);
    }
    /* Several lines form one list. */
    req_ok("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_int_equal(msg.body, HTTP1_BODY_CHUNKED);
    req_err("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
    req_err("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", 400);
    /* With Content-Length, in either order. */
    req_err("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400);
    req_err("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
    assert_string_equal(msg.error_reason, "Transfer-Encoding with Content-Length");
    /* Not in HTTP/1.0. */
    req_err("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
}

static void test_keep_alive(void **state)
{
    req_ok("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_true(msg.keep_alive);
    req_ok("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert_false(msg.keep_alive);
    req_ok("GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, Close\r\n\r\n");
    assert_false(msg.keep_alive);
    req_ok("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n");
    assert_false(msg.keep_alive);
    req_ok("GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n");
    assert_true(msg.keep_alive);
    req_ok("GET / HTTP/1.0\r\n\r\n");
    assert_false(msg.keep_alive);
    req_ok("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    assert_true(msg.keep_alive);
    req_ok("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n");
    assert_false(msg.keep_alive);
}

static void test_upgrade_and_expect(void **state)
{
    req_ok("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n");
    assert_true(msg.upgrade);
    req_ok("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n");
    assert_false(msg.upgrade);
    req_ok("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n");
    assert_false(msg.upgrade);

    req_ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n");
    assert_true(msg.expect_continue);
    req_ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect:  100-Continue \r\n\r\n");
    assert_true(msg.expect_continue);
    req_ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect: 200-ok\r\n\r\n");
    assert_false(msg.expect_continue);
    req_ok("POST / HTTP/1.0\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n");
    assert_false(msg.expect_continue);
}

static void test_request_body_framing(void **state)
{
    req_ok("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_int_equal(msg.body, HTTP1_BODY_NONE);
    req_ok("POST / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_int_equal(msg.body, HTTP1_BODY_NONE);
    req_ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n");
    assert_int_equal(msg.body, HTTP1_BODY_LENGTH);
    assert_true(msg.content_length == 10);
    req_ok("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(msg.body, HTTP1_BODY_LENGTH);
    assert_true(msg.content_length == 0);
    req_ok("PUT / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_int_equal(msg.body, HTTP1_BODY_CHUNKED);
}

/* ---- incremental parsing and pipelining ---------------------------------- */

static void test_incremental_request(void **state)
{
    const char *s = "POST http://example.com/upload?x=1 HTTP/1.1\r\nHost: example.com\r\n"
                    "Content-Length: 12\r\nConnection: keep-alive, Upgrade\r\nUpgrade: h2c\r\n"
                    "X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\tbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb \r\n\r\n";
    size_t len = strlen(s);
    static struct http1_message whole;

    assert_int_equal(http1_parse_request(s, len, NULL, &whole), HTTP1_DONE);
    for (size_t k = 0; k < len; k++) {
        enum http1_result r = parse_prefix(true, s, k, &msg);
        if (r != HTTP1_INCOMPLETE)
            fail_msg("prefix %zu gave %d", k, r);
    }
    assert_int_equal(parse_prefix(true, s, len, &msg), HTTP1_DONE);
    assert_int_equal(msg.head_len, whole.head_len);
    assert_int_equal(msg.n_headers, whole.n_headers);
    assert_int_equal(msg.body, whole.body);
    assert_true(msg.content_length == whole.content_length);
    assert_int_equal(msg.upgrade, whole.upgrade);
    assert_int_equal(whole.head_len, len);
    assert_slice(whole.headers[4].value, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\tbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
}

static void test_incremental_response(void **state)
{
    const char *s = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";
    size_t len = strlen(s);
    for (size_t k = 0; k < len; k++)
        assert_int_equal(parse_prefix(false, s, k, &msg), HTTP1_INCOMPLETE);
    assert_int_equal(parse_prefix(false, s, len, &msg), HTTP1_DONE);
    assert_int_equal(msg.body, HTTP1_BODY_CHUNKED);
    assert_int_equal(msg.head_len, len);
}

/* An invalid head: every prefix is INCOMPLETE or already the same error. */
static void test_incremental_errors(void **state)
{
    static const char *bad[] = {
        "GET / HTTP/1.1\r\nHost: a\r\nX : y\r\n\r\n",
        "GET / HTTP/1.1\nHost: a\r\n\r\n",
        "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    };
    static struct http1_message whole;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t len = strlen(bad[i]);
        assert_int_equal(http1_parse_request(bad[i], len, NULL, &whole), HTTP1_ERROR);
        bool seen_error = false;
        for (size_t k = 0; k <= len; k++) {
            enum http1_result r = parse_prefix(true, bad[i], k, &msg);
            if (r == HTTP1_INCOMPLETE) {
                assert_false(seen_error);   /* once an error, always that error */
                continue;
            }
            seen_error = true;
            assert_int_equal(r, HTTP1_ERROR);
            assert_int_equal(msg.error_status, whole.error_status);
        }
    }
    /* The bare LF is reported as soon as it arrives, long before any CRLFCRLF. */
    assert_int_equal(parse_req("GET / HTTP/1.1\n"), HTTP1_ERROR);
    /* A bad byte in the target is reported before the line ends. */
    assert_int_equal(parse_req("GET /\x01"), HTTP1_ERROR);
}

static void test_pipelined(void **state)
{
    const char *first = "GET /one HTTP/1.1\r\nHost: a\r\n\r\n";
    const char *second = "POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n";
    char buf[256];
    snprintf(buf, sizeof buf, "%s%s", first, second);

    assert_int_equal(parse_req(buf), HTTP1_DONE);
    assert_int_equal(msg.head_len, strlen(first));
    assert_slice(msg.target, "/one");
    const char *next = buf + msg.head_len;
    assert_int_equal(http1_parse_request(next, strlen(next), NULL, &msg), HTTP1_DONE);
    assert_int_equal(msg.head_len, strlen(second));
    assert_slice(msg.target, "/two");
    assert_int_equal(msg.body, HTTP1_BODY_LENGTH);

    /* A partial second request after a complete first does not matter. */
    snprintf(buf, sizeof buf, "%sGET /thr", first);
    assert_int_equal(parse_req(buf), HTTP1_DONE);
    assert_int_equal(msg.head_len, strlen(first));
    /* Nor does garbage: it belongs to the next parse (or a body). */
    snprintf(buf, sizeof buf, "%s\n\n\x01", first);
    assert_int_equal(parse_req(buf), HTTP1_DONE);
}

static void test_head_ready(void **state)
{
    const char *s = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    size_t len = strlen(s);
    /* Fed one byte at a time, it fires only when the head is complete. */
    for (size_t k = 1; k < len; k++)
        assert_false(http1_head_ready(s, k, k - 1, NULL));
    assert_true(http1_head_ready(s, len, len - 1, NULL));
    assert_true(http1_head_ready(s, len, 0, NULL));
    assert_false(http1_head_ready(s, len, len, NULL));
    /* Bare LF fires, so the parser can reject it now. */
    assert_true(http1_head_ready("GET / HTTP/1.1\n", 15, 14, NULL));
    assert_true(http1_head_ready("\n", 1, 0, NULL));
    /* Crossing the limits fires. */
    struct http1_limits lim = { .max_request_line = 10, .max_head = 20, .max_headers = 5 };
    assert_false(http1_head_ready("GET /aaaaa", 10, 9, &lim));
    assert_true(http1_head_ready("GET /aaaaaa", 11, 10, &lim));
    assert_false(http1_head_ready("GET /aaaaaaa", 12, 11, &lim));
    assert_true(http1_head_ready("GET /a HTTP/1.1\r\nXXX", 20, 19, &lim));
}

/* ---- responses ------------------------------------------------------------ */

static void test_response_status_line(void **state)
{
    resp_ok("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", HTTP1_M_GET);
    assert_int_equal(msg.status, 200);
    assert_slice(msg.reason, "OK");
    assert_int_equal(msg.version_minor, 1);
    resp_ok("HTTP/1.0 404 Not Found\r\n\r\n", HTTP1_M_GET);
    assert_int_equal(msg.status, 404);
    assert_slice(msg.reason, "Not Found");
    assert_int_equal(msg.version_minor, 0);
    resp_ok("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", HTTP1_M_GET);   /* no SP, no reason */
    assert_int_equal(msg.reason.len, 0);
    resp_ok("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", HTTP1_M_GET);
    assert_int_equal(msg.reason.len, 0);
    resp_ok("HTTP/1.1 599 Caf\xc3\xa9\tx\r\n\r\n", HTTP1_M_GET);
    resp_ok("HTTP/1.1 100 Continue\r\n\r\n", HTTP1_M_GET);

    resp_err("HTTP/1.1 99 X\r\n\r\n");
    resp_err("HTTP/1.1 099 X\r\n\r\n");
    resp_err("HTTP/1.1 600 X\r\n\r\n");
    resp_err("HTTP/1.1 2000 X\r\n\r\n");
    resp_err("HTTP/1.1 20a X\r\n\r\n");
    resp_err("HTTP/1.1  200 X\r\n\r\n");
    resp_err("HTTP/1.1 200X\r\n\r\n");
    resp_err("HTTP/1.1\r\n\r\n");
    resp_err("HTTP/1.1 \r\n\r\n");
    resp_err("HTTP/2.0 200 OK\r\n\r\n");
    resp_err("HTTP/1.2 200 OK\r\n\r\n");
    resp_err("http/1.1 200 OK\r\n\r\n");
    resp_err("HTTP/1.1 200 O\x01K\r\n\r\n");
    resp_err("HTTP/1.1 200 OK\n\r\n");
    resp_err("HTTP/1.1 200 OK\r\nX: a\n\r\n");
    resp_err("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n");
    resp_err("HTTP/1.1 200 OK\r\nX : a\r\n\r\n");
    resp_err(" HTTP/1.1 200 OK\r\n\r\n");

    struct http1_limits lim = { .max_request_line = 10, .max_head = 100, .max_headers = 5 };
    assert_int_equal(http1_parse_response("HTTP/1.1 200 OK", 15, &lim, HTTP1_M_GET, &msg), HTTP1_ERROR);
    assert_int_equal(msg.error_status, 502);
    lim.max_request_line = 100;
    lim.max_headers = 0;
    assert_int_equal(http1_parse_response("HTTP/1.1 200\r\nX: 1\r\n\r\n", 22, &lim, HTTP1_M_GET, &msg),
                     HTTP1_ERROR);
    assert_int_equal(msg.error_status, 502);
}

static void test_response_framing(void **state)
{
    resp_ok("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", HTTP1_M_GET);
    assert_int_equal(msg.body, HTTP1_BODY_LENGTH);
    assert_true(msg.content_length == 5);
    assert_true(msg.keep_alive);

    resp_ok("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", HTTP1_M_HEAD);
    assert_int_equal(msg.body, HTTP1_BODY_NONE);
    resp_ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", HTTP1_M_HEAD);
    assert_int_equal(msg.body, HTTP1_BODY_NONE);
    resp_ok("HTTP/1.1 204 No Content\r\n\r\n", HTTP1_M_POST);
    assert_int_equal(msg.body, HTTP1_BODY_NONE);
    assert_true(msg.keep_alive);
    resp_ok("HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n", HTTP1_M_GET);
    assert_int_equal(msg.body, HTTP1_BODY_NONE);
    resp_ok("HTTP/1.1 100 Continue\r\n\r\n", HTTP1_M_POST);
    assert_int_equal(msg.body, HTTP1_BODY_NONE);
    resp_ok("HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n", HTTP1_M_GET);
    assert_int_equal(msg.body, HTTP1_BODY_NONE);
    resp_ok("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", HTTP1_M_GET);
    assert_int_equal(msg.body, HTTP1_BODY_NONE);
    assert_true(msg.upgrade);
    resp_ok("HTTP/1.1 200 Connection established\r\n\r\n", HTTP1_M_CONNECT);
    assert_int_equal(msg.body, HTTP1_BODY_NONE);
    resp_ok("HTTP/1.1 407 Auth\r\nContent-Length: 3\r\n\r\n", HTTP1_M_CONNECT);
    assert_int_equal(msg.body, HTTP1_BODY_LENGTH);

    resp_ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", HTTP1_M_GET);
    assert_int_equal(msg.body, HTTP1_BODY_CHUNKED);
    resp_ok("HTTP/1.1 200 OK\r\n\r\n", HTTP1_M_GET);
    assert_int_equal(msg.body, HTTP1_BODY_UNTIL_CLOSE);
    assert_false(msg.keep_alive);
    resp_ok("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", HTTP1_M_GET);
    assert_int_equal(msg.body, HTTP1_BODY_UNTIL_CLOSE);
    assert_false(msg.keep_alive);
    resp_ok("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n", HTTP1_M_GET);
    assert_true(msg.keep_alive);
    resp_ok("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", HTTP1_M_GET);
    assert_false(msg.keep_alive);
    resp_ok("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n", HTTP1_M_GET);
    assert_false(msg.keep_alive);
    /* Host is not checked on responses. */
    resp_ok("HTTP/1.1 200 OK\r\nHost: a b\r\nHost: c\r\nContent-Length: 0\r\n\r\n", HTTP1_M_GET);
}

static void test_response_errors(void **state)
{
    resp_err("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n");
    resp_err("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
    resp_err("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
    resp_err("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
    resp_err("HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n");
    resp_err("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n");
    resp_err("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    resp_err("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n");
    resp_err("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
    resp_err("HTTP/1.1 204 No Content\r\nContent-Length: x\r\n\r\n");
    resp_err("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
    assert_int_equal(parse_resp("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: gzip\r\n\r\n", HTTP1_M_HEAD),
                     HTTP1_ERROR);
}

/* ---- helpers of the API --------------------------------------------------- */

static void test_find_header_and_tokens(void **state)
{
    req_ok("GET / HTTP/1.1\r\nHost: a\r\nX-Foo: 1\r\nx-foo: 2\r\nConnection: keep-alive , ,Upgrade\r\n\r\n");
    const struct http1_header *h = http1_find_header(&msg, "x-FOO");
    assert_non_null(h);
    assert_slice(h->value, "1");
    assert_non_null(http1_find_header(&msg, "HOST"));
    assert_null(http1_find_header(&msg, "X-Fo"));
    assert_null(http1_find_header(&msg, "X-Fooo"));
    assert_null(http1_find_header(&msg, "Missing"));

    h = http1_find_header(&msg, "connection");
    assert_non_null(h);
    assert_true(http1_has_token(h->value, "keep-alive"));
    assert_true(http1_has_token(h->value, "UPGRADE"));
    assert_false(http1_has_token(h->value, "keep"));
    assert_false(http1_has_token(h->value, "close"));
    assert_false(http1_has_token(h->value, ""));
    struct http1_slice v = { "a,b ,\tc\t, close", 15 };
    assert_true(http1_has_token(v, "c"));
    assert_true(http1_has_token(v, "close"));
    assert_true(http1_has_token(v, "b"));
    struct http1_slice empty = { "", 0 };
    assert_false(http1_has_token(empty, "close"));
}

static void test_hop_by_hop(void **state)
{
    req_ok("GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Secret, close\r\nConnection: foo\r\nX-Secret: 1\r\n\r\n");
    static const char *hop[] = {
        "Connection", "keep-alive", "Proxy-Connection", "TE", "Trailer", "transfer-encoding", "UPGRADE",
        "x-secret", "Foo", "close",
    };
    static const char *end[] = { "Host", "Content-Length", "Trailers", "X-Other", "Keep", "T" };
    for (size_t i = 0; i < sizeof hop / sizeof hop[0]; i++)
        assert_true(http1_is_hop_by_hop(&msg, (struct http1_slice){ hop[i], strlen(hop[i]) }));
    for (size_t i = 0; i < sizeof end / sizeof end[0]; i++)
        assert_false(http1_is_hop_by_hop(&msg, (struct http1_slice){ end[i], strlen(end[i]) }));
    /* The one-pass marking agrees with the per-name answer. */
    uint8_t skip[HTTP1_MAX_HEADERS_CAP];
    http1_mark_hop_by_hop(&msg, skip);
    for (size_t i = 0; i < msg.n_headers; i++)
        assert_int_equal(skip[i], http1_is_hop_by_hop(&msg, msg.headers[i].name));
    assert_int_equal(skip[0], 0); /* Host */
    assert_int_equal(skip[1], 1); /* Connection */
    assert_int_equal(skip[3], 1); /* X-Secret, named by Connection */
    req_ok("GET / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\nX-Secret: 1\r\n\r\n");
    http1_mark_hop_by_hop(&msg, skip);
    assert_int_equal(skip[0], 0);
    assert_int_equal(skip[1], 1);
    assert_int_equal(skip[2], 0); /* no Connection field names it here */
}

static bool name_has_underscore(const char *n)
{
    return http1_name_has_underscore((struct http1_slice){ n, strlen(n) });
}

static bool framing_lookalike(const char *n)
{
    return http1_is_framing_lookalike((struct http1_slice){ n, strlen(n) });
}

/* Underscore names are valid tokens (the parser keeps them); the proxy
 * decides what to forward with these two helpers. */
static void test_underscore_names(void **state)
{
    req_ok("GET / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\nContent-Length: 0\r\nX_Y: 1\r\n\r\n");
    assert_int_equal(msg.body, HTTP1_BODY_LENGTH);
    assert_int_equal(msg.n_headers, 4);
    assert_true(http1_name_has_underscore(msg.headers[1].name));
    assert_false(http1_name_has_underscore(msg.headers[2].name));
    assert_true(http1_name_has_underscore(msg.headers[3].name));
    assert_true(name_has_underscore("_"));
    assert_true(name_has_underscore("a_"));
    assert_false(name_has_underscore("X-Forwarded-For"));
    assert_false(http1_name_has_underscore((struct http1_slice){ "x_", 0 }));

    static const char *twins[] = {
        "Transfer_Encoding", "TRANSFER_ENCODING", "transfer_encoding", "Content_Length", "content_length",
        "Keep_Alive", "Proxy_Connection", "proxy_connection",
    };
    static const char *others[] = {
        "Transfer-Encoding", "Content-Length", "Keep-Alive", "Proxy-Connection", "Connection", "TE",
        "Transfer_Encodings", "Transfer__Encoding", "X_Transfer_Encoding", "Content_Type", "X_Forwarded_For",
        "Transfer_Encodin", "_ransfer-Encoding",
    };
    for (size_t i = 0; i < sizeof twins / sizeof twins[0]; i++)
        assert_true(framing_lookalike(twins[i]));
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
        assert_false(framing_lookalike(others[i]));
}

static void test_method_idempotent(void **state)
{
    assert_true(http1_method_idempotent(HTTP1_M_GET));
    assert_true(http1_method_idempotent(HTTP1_M_HEAD));
    assert_true(http1_method_idempotent(HTTP1_M_PUT));
    assert_true(http1_method_idempotent(HTTP1_M_DELETE));
    assert_true(http1_method_idempotent(HTTP1_M_OPTIONS));
    assert_true(http1_method_idempotent(HTTP1_M_TRACE));
    assert_false(http1_method_idempotent(HTTP1_M_POST));
    assert_false(http1_method_idempotent(HTTP1_M_PATCH));
    assert_false(http1_method_idempotent(HTTP1_M_CONNECT));
    assert_false(http1_method_idempotent(HTTP1_M_OTHER));
}

/* ---- chunked -------------------------------------------------------------- */

/* Feed s[0..len) whole, byte by byte and in 3-byte pieces; all must agree.
 * Returns bytes consumed or -1. */
static ssize_t chunked_all_ways(const char *s, size_t len, bool *done)
{
    struct http1_chunked whole, bytes, threes;
    http1_chunked_init(&whole);
    http1_chunked_init(&bytes);
    http1_chunked_init(&threes);

    ssize_t n = http1_chunked_feed(&whole, s, len);

    ssize_t nb = 0;
    for (size_t i = 0; i < len && !bytes.done; i++) {
        ssize_t r = http1_chunked_feed(&bytes, s + i, 1);
        if (r < 0) {
            nb = -1;
            break;
        }
        nb += r;
    }

    ssize_t n3 = 0;
    for (size_t i = 0; i < len && !threes.done; i += 3) {
        size_t piece = len - i < 3 ? len - i : 3;
        ssize_t r = http1_chunked_feed(&threes, s + i, piece);
        if (r < 0) {
            n3 = -1;
            break;
        }
        n3 += r;
    }

    assert_int_equal(n, nb);
    assert_int_equal(n, n3);
    assert_int_equal(whole.done, bytes.done);
    assert_int_equal(whole.done, threes.done);
    if (n < 0) {
        assert_non_null(whole.error_reason);
        assert_false(whole.done);
    }
    *done = whole.done;
    return n;
}

static void chunked_ok(const char *s)
{
    bool done;
    ssize_t n = chunked_all_ways(s, strlen(s), &done);
    if (n != (ssize_t)strlen(s) || !done)
        fail_msg("expected a complete chunked body, got %zd done=%d for: %s", n, done, s);
}

static void chunked_bad(const char *s)
{
    bool done;
    ssize_t n = chunked_all_ways(s, strlen(s), &done);
    if (n != -1)
        fail_msg("expected invalid chunked framing, got %zd for: %s", n, s);
}

static void test_chunked_valid(void **state)
{
    chunked_ok("0\r\n\r\n");
    chunked_ok("5\r\nhello\r\n0\r\n\r\n");
    chunked_ok("4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n");
    chunked_ok("a\r\n0123456789\r\nA\r\n0123456789\r\n000\r\n\r\n");
    chunked_ok("0000000000000005\r\nhello\r\n0\r\n\r\n");   /* 16 digits is the maximum */
    /* Data is opaque, CRLFs included. */
    chunked_ok("6\r\n" "\r\n\r\n\r\n" "\r\n" "0\r\n\r\n");
}

static void test_chunked_incomplete(void **state)
{
    bool done;
    const char *s = "5\r\nhel";
    assert_int_equal(chunked_all_ways(s, strlen(s), &done), (ssize_t)strlen(s));
    assert_false(done);
    s = "5\r\nhello\r\n0\r\n";
    assert_int_equal(chunked_all_ways(s, strlen(s), &done), (ssize_t)strlen(s));
    assert_false(done);
    s = "5\r\nhello\r\n0\r\n\r";
    assert_int_equal(chunked_all_ways(s, strlen(s), &done), (ssize_t)strlen(s));
    assert_false(done);
}

static void test_chunked_stops_at_end(void **state)
{
    const char *body = "3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n";
    char buf[128];
    snprintf(buf, sizeof buf, "%sGET / HTTP/1.1\r\n", body);
    bool done;
    assert_int_equal(chunked_all_ways(buf, strlen(buf), &done), (ssize_t)strlen(body));
    assert_true(done);

    struct http1_chunked c;
    http1_chunked_init(&c);
    assert_int_equal(http1_chunked_feed(&c, buf, strlen(buf)), (ssize_t)strlen(body));
    assert_true(c.done);
    assert_int_equal(http1_chunked_feed(&c, buf, strlen(buf)), 0);   /* done: nothing more is body */
    assert_int_equal(http1_chunked_feed(&c, "x", 1), 0);
}

static void test_chunked_sizes(void **state)
{
    chunked_ok("F\r\n0123456789abcde\r\n0\r\n\r\n");
    chunked_ok("f\r\n0123456789abcde\r\n0\r\n\r\n");
    chunked_bad("\r\nhello\r\n0\r\n\r\n");                        /* empty size */
    chunked_bad("0x5\r\nhello\r\n0\r\n\r\n");
    chunked_bad("+5\r\nhello\r\n0\r\n\r\n");
    chunked_bad("-5\r\nhello\r\n0\r\n\r\n");
    chunked_bad(" 5\r\nhello\r\n0\r\n\r\n");
    chunked_bad("5 \r\nhello\r\n0\r\n\r\n");                      /* BWS only before ';' */
    chunked_bad("g\r\n0\r\n\r\n");
    chunked_bad("00000000000000005\r\nhello\r\n0\r\n\r\n");     /* 17 digits */
    chunked_bad("10000000000000000\r\n");                         /* 2^64 */
    chunked_bad("5\nhello\r\n0\r\n\r\n");                         /* bare LF */
    chunked_bad("5\rhello\r\n0\r\n\r\n");                         /* bare CR */

    /* The largest size is accepted; its data is skipped in bulk. */
    struct http1_chunked c;
    http1_chunked_init(&c);
    assert_int_equal(http1_chunked_feed(&c, "ffffffffffffffff\r\n", 18), 18);
    static char junk[65536];
    for (int i = 0; i < 16; i++)
        assert_int_equal(http1_chunked_feed(&c, junk, sizeof junk), (ssize_t)sizeof junk);
    assert_false(c.done);
    assert_true(c.remaining == UINT64_MAX - 16 * sizeof junk);
}

static void test_chunked_extensions(void **state)
{
    chunked_ok("5;a\r\nhello\r\n0\r\n\r\n");
    chunked_ok("5;a=b\r\nhello\r\n0;last\r\n\r\n");
    chunked_ok("5;a=b;c;d=e\r\nhello\r\n0\r\n\r\n");
    chunked_ok("5 ; a = b ;c\r\nhello\r\n0\r\n\r\n");
    chunked_ok("5\t;\ta\t=\t\"x y\"\r\nhello\r\n0\r\n\r\n");
    chunked_ok("5;a=\"q\\\"u\\\\o;t=e\"\r\nhello\r\n0\r\n\r\n");
    chunked_ok("5;a=\"\"\r\nhello\r\n0\r\n\r\n");
    chunked_ok("5;a=\"\xc3\xa9\"\r\nhello\r\n0\r\n\r\n");
    chunked_ok("5;a=\"x\" ;b\r\nhello\r\n0\r\n\r\n");

    chunked_bad("5;\r\nhello\r\n0\r\n\r\n");
    chunked_bad("5;;a\r\nhello\r\n0\r\n\r\n");
    chunked_bad("5;=a\r\nhello\r\n0\r\n\r\n");
    chunked_bad("5;a=\r\nhello\r\n0\r\n\r\n");
    chunked_bad("5;a b\r\nhello\r\n0\r\n\r\n");
    chunked_bad("5;a \r\nhello\r\n0\r\n\r\n");
    chunked_bad("5;a=b \r\nhello\r\n0\r\n\r\n");
    chunked_bad("5;a=b c\r\nhello\r\n0\r\n\r\n");
    chunked_bad("5;a=(b)\r\nhello\r\n0\r\n\r\n");
    chunked_bad("5;a=\"x\r\nhello\r\n0\r\n\r\n");
    chunked_bad("5;a=\"x\"y\r\nhello\r\n0\r\n\r\n");
    chunked_bad("5;a=\"x\\\r\"\r\nhello\r\n0\r\n\r\n");
    chunked_bad("5;a\nhello\r\n0\r\n\r\n");
    chunked_bad("5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n");
    chunked_bad("5;a@b\r\nhello\r\n0\r\n\r\n");
    chunked_bad("5,a\r\nhello\r\n0\r\n\r\n");
    static const char nul[] = "5;a\0\r\nhello\r\n0\r\n\r\n";
    bool done;
    assert_int_equal(chunked_all_ways(nul, sizeof nul - 1, &done), -1);
}

static void test_chunked_data_crlf(void **state)
{
    chunked_bad("5\r\nhelloX\r\n0\r\n\r\n");     /* more data than the size */
    chunked_bad("5\r\nhell\r\n0\r\n\r\n");       /* less: "\r" is data, "\n0" is not CRLF */
    chunked_bad("5\r\nhello\n0\r\n\r\n");
    chunked_bad("5\r\nhello\r0\r\n\r\n");
    chunked_bad("5\r\nhello0\r\n\r\n");
    chunked_bad("0\r\n\n");
    chunked_bad("0\r\n\rX");
}

static void test_chunked_trailers(void **state)
{
    chunked_ok("0\r\nExpires: never\r\n\r\n");
    chunked_ok("5\r\nhello\r\n0\r\nA: 1\r\nB:\r\nC: x\ty \xff\r\n\r\n");
    chunked_bad("0\r\nA: 1\r\n folded\r\n\r\n");
    chunked_bad("0\r\n A: 1\r\n\r\n");
    chunked_bad("0\r\nA : 1\r\n\r\n");
    chunked_bad("0\r\nA\r\n\r\n");
    chunked_bad("0\r\n: 1\r\n\r\n");
    chunked_bad("0\r\nA: 1\n\r\n");
    chunked_bad("0\r\nA: \x01\r\n\r\n");
    chunked_bad("0\r\nA\x80: 1\r\n\r\n");
}

static void test_chunked_line_limit(void **state)
{
    size_t cap = HTTP1_CHUNK_LINE_MAX;
    char *s = malloc(cap + 64);
    assert_non_null(s);

    /* "5;" + name filling the line to exactly the cap is fine; one more byte is not. */
    memcpy(s, "5;", 2);
    memset(s + 2, 'a', cap - 2);
    strcpy(s + cap, "\r\nhello\r\n0\r\n\r\n");
    chunked_ok(s);
    memset(s + 2, 'a', cap - 1);
    strcpy(s + cap + 1, "\r\nhello\r\n0\r\n\r\n");
    chunked_bad(s);

    /* The same bound applies to trailer lines... */
    memcpy(s, "0\r\nX:", 5);
    memset(s + 5, 'v', cap - 2);
    strcpy(s + 3 + cap, "\r\n\r\n");
    chunked_ok(s);
    memset(s + 5, 'v', cap - 1);
    strcpy(s + 4 + cap, "\r\n\r\n");
    chunked_bad(s);

    /* ...and is detected without the line ever ending. */
    struct http1_chunked c;
    http1_chunked_init(&c);
    memset(s, '0', cap + 1);
    assert_int_equal(http1_chunked_feed(&c, s, 17), -1);   /* too many digits first */
    http1_chunked_init(&c);
    s[0] = '1';
    s[1] = ';';
    memset(s + 2, 'x', cap);
    assert_int_equal(http1_chunked_feed(&c, s, cap + 1), -1);
    free(s);
}

static void test_chunked_sticky(void **state)
{
    struct http1_chunked c;
    http1_chunked_init(&c);
    assert_int_equal(http1_chunked_feed(&c, "zz", 2), -1);
    assert_non_null(c.error_reason);
    assert_int_equal(http1_chunked_feed(&c, "0\r\n\r\n", 5), -1);
    assert_false(c.done);

    http1_chunked_init(&c);
    assert_int_equal(http1_chunked_feed(&c, "", 0), 0);
    assert_false(c.done);
    assert_int_equal(http1_chunked_feed(&c, "0\r\n\r\n", 5), 5);
    assert_true(c.done);
    assert_null(c.error_reason);
    assert_int_equal(http1_chunked_feed(&c, "zz", 2), 0);
}

/* A request head followed by its chunked body and a pipelined request. */
static void test_request_then_chunked_body(void **state)
{
    const char *s = "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "3\r\nabc\r\n0\r\n\r\n"
                    "GET /next HTTP/1.1\r\nHost: a\r\n\r\n";
    size_t len = strlen(s);
    assert_int_equal(http1_parse_request(s, len, NULL, &msg), HTTP1_DONE);
    assert_int_equal(msg.body, HTTP1_BODY_CHUNKED);
    struct http1_chunked c;
    http1_chunked_init(&c);
    ssize_t n = http1_chunked_feed(&c, s + msg.head_len, len - msg.head_len);
    assert_true(c.done);
    const char *next = s + msg.head_len + n;
    assert_int_equal(http1_parse_request(next, strlen(next), NULL, &msg), HTTP1_DONE);
    assert_slice(msg.target, "/next");
}


/* Many short trailer lines are bounded as a whole, not only line by line. */
static void test_chunked_trailer_section_bounded(void **state)
{
    (void)state;
    struct http1_chunked c;
    http1_chunked_init(&c);
    assert_int_equal(http1_chunked_feed(&c, "0\r\n", 3), 3);
    const char *line = "X-T: 0123456789abcdef0123456789abcdef\r\n";
    size_t n = strlen(line);
    ssize_t r = 0;
    for (int i = 0; i < 2000 && r >= 0; i++)
        r = http1_chunked_feed(&c, line, n);
    assert_int_equal(r, -1);
    assert_non_null(c.error_reason);
    assert_false(c.done);

    /* A modest trailer section still passes. */
    http1_chunked_init(&c);
    const char *ok = "0\r\nX-Checksum: abc\r\nX-Other: d\r\n\r\n";
    assert_int_equal(http1_chunked_feed(&c, ok, strlen(ok)), (ssize_t)strlen(ok));
    assert_true(c.done);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunked_trailer_section_bounded),
        cmocka_unit_test(test_request_basic),
        cmocka_unit_test(test_request_methods),
        cmocka_unit_test(test_line_endings),
        cmocka_unit_test(test_request_line_syntax),
        cmocka_unit_test(test_request_target),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_request_line_limit),
        cmocka_unit_test(test_head_limits),
        cmocka_unit_test(test_obs_fold),
        cmocka_unit_test(test_header_name_and_value),
        cmocka_unit_test(test_host),
        cmocka_unit_test(test_content_length),
        cmocka_unit_test(test_transfer_encoding),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_upgrade_and_expect),
        cmocka_unit_test(test_request_body_framing),
        cmocka_unit_test(test_incremental_request),
        cmocka_unit_test(test_incremental_response),
        cmocka_unit_test(test_incremental_errors),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_head_ready),
        cmocka_unit_test(test_response_status_line),
        cmocka_unit_test(test_response_framing),
        cmocka_unit_test(test_response_errors),
        cmocka_unit_test(test_find_header_and_tokens),
        cmocka_unit_test(test_hop_by_hop),
        cmocka_unit_test(test_underscore_names),
        cmocka_unit_test(test_method_idempotent),
        cmocka_unit_test(test_chunked_valid),
        cmocka_unit_test(test_chunked_incomplete),
        cmocka_unit_test(test_chunked_stops_at_end),
        cmocka_unit_test(test_chunked_sizes),
        cmocka_unit_test(test_chunked_extensions),
        cmocka_unit_test(test_chunked_data_crlf),
        cmocka_unit_test(test_chunked_trailers),
        cmocka_unit_test(test_chunked_line_limit),
        cmocka_unit_test(test_chunked_sticky),
        cmocka_unit_test(test_request_then_chunked_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
