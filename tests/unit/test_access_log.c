/* Access log lines (proxy/access_log.c): JSON that always parses, with
 * UTF-8 that round-trips and ill-formed bytes replaced by U+FFFD; the
 * combined format's escaping. Every JSON line is read back with jansson. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <string.h>

#include "proxy/access_log.h"
#include "proxy/tls_session.h"

static char line[ACCESS_LOG_LINE];

static const struct access_entry base = {
    .client_ip = "192.0.2.7",
    .request_line = "GET /x HTTP/1.1",
    .referer = "",
    .user_agent = "curl/8",
    .host = "example.com",
    .upstream = "127.0.0.1:9001",
    .listener = "web",
    .status = 200,
    .bytes_sent = 12,
    .duration_us = 345,
};

/* Format e as JSON, check the line's shape, parse it. */
static json_t *json_line(const struct access_entry *e)
{
    size_t n = access_log_format(ACCESS_LOG_JSON, e, 0, line, sizeof line);
    assert_true(n > 2 && n < sizeof line);
    assert_int_equal(strlen(line), n);
    assert_int_equal(line[n - 1], '\n');
    assert_null(memchr(line, '\n', n - 1));
    for (size_t i = 0; i < n; i++)
        assert_true((unsigned char)line[i] < 0x80); /* JSON_ENSURE_ASCII */
    json_error_t err;
    json_t *doc = json_loads(line, 0, &err);
    if (!doc)
        fail_msg("not JSON (%s): %s", err.text, line);
    return doc;
}

static const char *str(json_t *doc, const char *key)
{
    const char *s = json_string_value(json_object_get(doc, key));
    assert_non_null(s);
    return s;
}

/* The user_agent of an entry whose User-Agent is ua, as read back. */
static void assert_ua_reads_back(const char *ua, const char *want)
{
    struct access_entry e = base;
    e.user_agent = ua;
    json_t *doc = json_line(&e);
    assert_string_equal(str(doc, "user_agent"), want);
    json_decref(doc);
}

static void test_json_fields(void **state)
{
    struct access_entry e = base;
    e.reason = "request head too large";
    e.status = 431;
    json_t *doc = json_line(&e);
    assert_string_equal(str(doc, "time"), "1970-01-01T00:00:00Z");
    assert_string_equal(str(doc, "client"), "192.0.2.7");
    assert_string_equal(str(doc, "listener"), "web");
    assert_string_equal(str(doc, "host"), "example.com");
    assert_string_equal(str(doc, "request"), "GET /x HTTP/1.1");
    assert_int_equal(json_integer_value(json_object_get(doc, "status")), 431);
    assert_int_equal(json_integer_value(json_object_get(doc, "bytes_sent")), 12);
    assert_string_equal(str(doc, "referer"), "");
    assert_string_equal(str(doc, "user_agent"), "curl/8");
    assert_string_equal(str(doc, "upstream"), "127.0.0.1:9001");
    assert_int_equal(json_integer_value(json_object_get(doc, "duration_us")), 345);
    assert_string_equal(str(doc, "reason"), "request head too large");
    json_decref(doc);

    /* Absent strings (NULL) are empty, not missing. */
    e = (struct access_entry){ .client_ip = "::1", .status = 502 };
    doc = json_line(&e);
    assert_string_equal(str(doc, "request"), "");
    assert_string_equal(str(doc, "upstream"), "");
    assert_string_equal(str(doc, "reason"), "");
    json_decref(doc);
}

static void test_json_utf8_round_trips(void **state)
{
    assert_ua_reads_back("caf\xc3\xa9", "caf\xc3\xa9");
    assert_ua_reads_back("\xe2\x98\x83 \xf0\x9f\x98\x80", "\xe2\x98\x83 \xf0\x9f\x98\x80");
    assert_ua_reads_back("\"q\" \\ \t end", "\"q\" \\ \t end");
    assert_ua_reads_back("\x1b[31mred", "\x1b[31mred"); /* escaped in the line, itself when read */
    assert_ua_reads_back("\xef\xbf\xbf \xf4\x8f\xbf\xbf", "\xef\xbf\xbf \xf4\x8f\xbf\xbf"); /* U+FFFF, U+10FFFF */
    struct access_entry e = base;
    e.user_agent = "caf\xc3\xa9";
    access_log_format(ACCESS_LOG_JSON, &e, 0, line, sizeof line);
    assert_non_null(strstr(line, "\"caf\\u00E9\""));
}

#define R "\xef\xbf\xbd" /* U+FFFD */

/* Unicode's "substitution of maximal subparts": one U+FFFD per maximal
 * prefix of a well-formed sequence, or per byte that starts none. */
static void test_json_invalid_utf8(void **state)
{
    assert_ua_reads_back("a\x80" "b", "a" R "b");                 /* lone continuation */
    assert_ua_reads_back("a\xc3", "a" R);                         /* cut at the end */
    assert_ua_reads_back("a\xe2\x82" "b", "a" R "b");             /* 2 of 3 bytes: one U+FFFD */
    assert_ua_reads_back("\xf0\x9f\x98" "x", R "x");              /* 3 of 4 bytes */
    assert_ua_reads_back("\xc0\xaf", R R);                        /* overlong '/' */
    assert_ua_reads_back("\xe0\x80\xaf", R R R);                  /* overlong, 3 bytes */
    assert_ua_reads_back("\xf0\x80\x80\xaf", R R R R);            /* overlong, 4 bytes */
    assert_ua_reads_back("\xed\xa0\x80", R R R);                  /* UTF-16 surrogate */
    assert_ua_reads_back("\xf4\x90\x80\x80", R R R R);            /* past U+10FFFF */
    assert_ua_reads_back("\xf5\xff\xfe", R R R);                  /* bytes that start nothing */
    assert_ua_reads_back("\xc3\xc3\xa9", R "\xc3\xa9");           /* a lead byte, then a whole é */
    assert_ua_reads_back("\xe2\x82\xe2\x82\xac", R "\xe2\x82\xac"); /* half a €, then a € */
}

/* Each field has a byte budget; a character the budget cuts is left out,
 * not replaced, and whatever the fields hold the line fits. */
static void test_json_long_fields(void **state)
{
    static char ua[2000], req[4000], bad[4000];
    for (size_t i = 0; i + 2 < sizeof ua; i += 2)
        memcpy(ua + i, "\xc3\xa9", 2);
    memset(req, 'a', sizeof req - 1);
    memcpy(req + 511, "\xe2\x82\xac", 3); /* a 3-byte character across the request's 512-byte budget */
    memset(bad, '\xff', sizeof bad - 1);

    struct access_entry e = base;
    e.user_agent = ua;
    e.request_line = req;
    json_t *doc = json_line(&e);
    const char *got = str(doc, "user_agent");
    assert_int_equal(strlen(got), 256); /* 128 whole é */
    assert_int_equal(memcmp(got + 254, "\xc3\xa9", 2), 0);
    got = str(doc, "request");
    assert_int_equal(strlen(got), 511); /* stops before the € */
    json_decref(doc);

    /* Worst case: every byte of every text field escapes to \ufffd. */
    e = (struct access_entry){ .client_ip = bad, .request_line = bad, .referer = bad, .user_agent = bad,
                               .host = bad, .upstream = bad, .listener = bad, .reason = bad, .status = 400 };
    doc = json_line(&e);
    assert_int_equal(strlen(str(doc, "request")), 3 * 512);
    json_decref(doc);
}

static void test_combined(void **state)
{
    struct access_entry e = base;
    e.request_line = "GET /b\xc3\xa9 \"x\"";
    e.referer = NULL;
    size_t n = access_log_format(ACCESS_LOG_COMBINED, &e, 0, line, sizeof line);
    assert_int_equal(strlen(line), n);
    assert_string_equal(line, "192.0.2.7 - - [01/Jan/1970:00:00:00 +0000] \"GET /b\\xC3\\xA9 \\\"x\\\"\" 200 12 "
                              "\"-\" \"curl/8\"\n");
}

/* A TLS listener's entry: the handshake's fields after the user agent
 * (combined, the client's SNI escaped) or as their own keys (JSON); a
 * plain listener's lines have none of them. */
static void test_tls_fields(void **state)
{
    struct access_entry e = base;
    e.tls_version = "TLSv1.3";
    e.tls_cipher = "TLS_AES_128_GCM_SHA256";
    e.sni = "a.example.com\"\x01";
    e.tls_resumed = TLS_RESUMED_TICKET;
    access_log_format(ACCESS_LOG_COMBINED, &e, 0, line, sizeof line);
    assert_string_equal(line, "192.0.2.7 - - [01/Jan/1970:00:00:00 +0000] \"GET /x HTTP/1.1\" 200 12 \"-\" "
                              "\"curl/8\" tls=TLSv1.3 cipher=TLS_AES_128_GCM_SHA256 sni=\"a.example.com\\\"\\x01\" "
                              "resumed=ticket\n");
    e.tls_resumed = TLS_RESUMED_CACHE;
    access_log_format(ACCESS_LOG_COMBINED, &e, 0, line, sizeof line);
    assert_non_null(strstr(line, "\" resumed=cache\n"));
    json_t *doc = json_line(&e);
    assert_true(json_is_true(json_object_get(doc, "tls_resumed")));
    assert_string_equal(str(doc, "tls_resumption"), "cache");
    json_decref(doc);
    e.sni = NULL;
    e.tls_resumed = TLS_RESUMED_NO;
    access_log_format(ACCESS_LOG_COMBINED, &e, 0, line, sizeof line);
    assert_non_null(strstr(line, " sni=\"-\" resumed=no\n"));
    e.sni = "b.example.com";
    doc = json_line(&e);
    assert_string_equal(str(doc, "tls_version"), "TLSv1.3");
    assert_string_equal(str(doc, "tls_cipher"), "TLS_AES_128_GCM_SHA256");
    assert_string_equal(str(doc, "sni"), "b.example.com");
    assert_true(json_is_false(json_object_get(doc, "tls_resumed")));
    assert_string_equal(str(doc, "tls_resumption"), "no");
    json_decref(doc);
    doc = json_line(&base);
    assert_null(json_object_get(doc, "tls_version"));
    assert_null(json_object_get(doc, "sni"));
    json_decref(doc);
    access_log_format(ACCESS_LOG_COMBINED, &base, 0, line, sizeof line);
    assert_null(strstr(line, "tls="));
}

/* tls.client_certificates: the verified subject ends a combined line as
 * client="...", escaped like the other quoted fields, and is its own JSON
 * key; without one (no certificate) neither appears. */
static void test_client_subject_field(void **state)
{
    struct access_entry e = base;
    e.tls_version = "TLSv1.3";
    e.tls_cipher = "TLS_AES_128_GCM_SHA256";
    e.sni = "a.example.com";
    e.client_subject = "CN=alice \"x\",O=Ex";
    access_log_format(ACCESS_LOG_COMBINED, &e, 0, line, sizeof line);
    assert_non_null(strstr(line, " sni=\"a.example.com\" resumed=no client=\"CN=alice \\\"x\\\",O=Ex\"\n"));
    json_t *doc = json_line(&e);
    assert_string_equal(str(doc, "tls_client_subject"), "CN=alice \"x\",O=Ex");
    json_decref(doc);
    e.client_subject = NULL;
    access_log_format(ACCESS_LOG_COMBINED, &e, 0, line, sizeof line);
    assert_null(strstr(line, "client="));
    doc = json_line(&e);
    assert_null(json_object_get(doc, "tls_client_subject"));
    json_decref(doc);
}

/* The fields added for issue 13: bytes received, the upstream's times
 * (null when not reached), tries, route and pool. */
static void test_json_upstream_fields(void **state)
{
    (void)state;
    struct access_entry e = base;
    e.bytes_received = 1234;
    e.upstream_connect_us = 1500;
    e.upstream_header_us = 20000;
    e.upstream_response_us = -1;
    e.upstream_tries = 2;
    e.route = "api";
    json_t *doc = json_line(&e);
    assert_int_equal(json_integer_value(json_object_get(doc, "bytes_received")), 1234);
    assert_int_equal(json_integer_value(json_object_get(doc, "upstream_connect_us")), 1500);
    assert_int_equal(json_integer_value(json_object_get(doc, "upstream_header_us")), 20000);
    assert_true(json_is_null(json_object_get(doc, "upstream_response_us")));
    assert_int_equal(json_integer_value(json_object_get(doc, "upstream_tries")), 2);
    assert_string_equal(str(doc, "route"), "api");
    assert_true(json_is_null(json_object_get(doc, "pool")));
    json_decref(doc);
    /* the combined line keeps its classic shape */
    access_log_format(ACCESS_LOG_COMBINED, &e, 0, line, sizeof line);
    assert_null(strstr(line, "1234"));
    assert_null(strstr(line, "api"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_fields),
        cmocka_unit_test(test_json_utf8_round_trips),
        cmocka_unit_test(test_json_invalid_utf8),
        cmocka_unit_test(test_json_long_fields),
        cmocka_unit_test(test_combined),
        cmocka_unit_test(test_tls_fields),
        cmocka_unit_test(test_client_subject_field),
        cmocka_unit_test(test_json_upstream_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
