/* Request variables (proxy/http_vars.c): compiling formats, rendering them
 * with each escaping, the header mode's refusal of control bytes, head
 * copies; and the config keys built on them (proxy/http_vars_conf.c):
 * log_formats, header rules and their plans, redirect and return. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "config_expect.h"
#include "proxy/http_vars.h"
#include "proxy/proxy_conf.h"

static char out[4096];
static char err[256];

static struct http1_message req;

static const char raw_req[] = "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: Example.com:8080\r\nUser-Agent: t/1\r\n"
                              "X-Test: one\r\nx-test: two\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n";

static void parse_req(void)
{
    assert_int_equal(http1_parse_request(raw_req, strlen(raw_req), NULL, &req), HTTP1_DONE);
}

static struct http_vars vars(void)
{
    parse_req();
    return (struct http_vars){
        .req = &req,
        .remote_addr = "192.0.2.1",
        .remote_port = 5555,
        .scheme = "https",
        .listener = "web",
        .route = "r1",
        .pool = "app",
        .upstream_addr = "10.0.0.1:80",
        .status = 201,
        .body_bytes_sent = 12,
        .bytes_sent = 99,
        .request_length = 120,
        .upstream_connect_us = 1500,
        .upstream_header_us = 20000,
        .upstream_response_us = 2345678,
        .request_time_us = 2400000,
        .upstream_tries = 2,
        .now = {1700000000, 123456789},
        .request_id = "0123456789abcdef0123456789abcdef",
    };
}

static const char *render(const char *fmt, const struct http_vars *v, enum http_escape esc)
{
    struct http_fmt f;
    if (http_fmt_compile(fmt, &f, err, sizeof err) < 0)
        fail_msg("compile %s: %s", fmt, err);
    bool refused = false;
    http_fmt_render(&f, v, esc, out, sizeof out, &refused);
    http_fmt_free(&f);
    return out;
}

static void expect_compile_error(const char *fmt, const char *want)
{
    struct http_fmt f;
    assert_int_equal(http_fmt_compile(fmt, &f, err, sizeof err), -1);
    assert_string_equal(err, want);
    http_fmt_free(&f);
}

static void test_compile_errors(void **state)
{
    (void)state;
    expect_compile_error("$stauts", "unknown variable \"$stauts\" (did you mean \"$status\"?)");
    expect_compile_error("a $zzzzzzz b", "unknown variable \"$zzzzzzz\"");
    expect_compile_error("a $ b", "\"$\" must be followed by a variable name (write \"$$\" for a dollar sign)");
    expect_compile_error("${status", "\"${\" must be followed by a variable name and \"}\"");
    expect_compile_error("${}", "\"${\" must be followed by a variable name and \"}\"");
    expect_compile_error("${a-b}", "\"${\" must be followed by a variable name and \"}\"");
    expect_compile_error("$http_", "variable \"$http_\" needs a header name after the prefix");
}

static void test_request_variables(void **state)
{
    (void)state;
    struct http_vars v = vars();
    assert_string_equal(render("$request_method $request_uri $uri $args $query_string $host", &v, HTTP_ESC_LOG),
                        "GET /a/b?x=1&y=2 /a/b x=1&y=2 x=1&y=2 Example.com");
    assert_string_equal(render("\"$request\" $server_protocol $scheme", &v, HTTP_ESC_LOG),
                        "\"GET /a/b?x=1&y=2 HTTP/1.1\" HTTP/1.1 https");
    v.http2 = true;
    assert_string_equal(render("$server_protocol", &v, HTTP_ESC_LOG), "HTTP/2.0");
    /* http_NAME: '_' for '-', case-insensitive, every field joined */
    assert_string_equal(render("$http_user_agent|$http_x_test|$http_cookie|$http_none", &v, HTTP_ESC_LOG),
                        "t/1|one, two|a=1; b=2|-");
    assert_string_equal(render("$http_none", &v, HTTP_ESC_HEADER), "");
    v.req = NULL;
    assert_string_equal(render("$request $uri $http_x_test", &v, HTTP_ESC_LOG), "- - -");
}

static void test_other_variables(void **state)
{
    (void)state;
    struct http_vars v = vars();
    assert_string_equal(render("$remote_addr:$remote_port $status $body_bytes_sent $bytes_sent $request_length",
                               &v, HTTP_ESC_LOG),
                        "192.0.2.1:5555 201 12 99 120");
    assert_string_equal(render("$upstream_addr $upstream_connect_time $upstream_header_time "
                               "$upstream_response_time $request_time $upstream_tries",
                               &v, HTTP_ESC_LOG),
                        "10.0.0.1:80 0.001 0.020 2.345 2.400 2");
    assert_string_equal(render("$listener $route $pool $request_id", &v, HTTP_ESC_LOG),
                        "web r1 app 0123456789abcdef0123456789abcdef");
    assert_string_equal(render("$time_iso8601|$time_local|$msec", &v, HTTP_ESC_LOG),
                        "2023-11-14T22:13:20+00:00|14/Nov/2023:22:13:20 +0000|1700000000.123");
    v.upstream_connect_us = v.upstream_header_us = v.upstream_response_us = -1;
    v.upstream_addr = NULL;
    v.status = 0;
    assert_string_equal(render("$upstream_addr $upstream_connect_time $upstream_header_time $status", &v,
                               HTTP_ESC_LOG),
                        "- - - -");
    /* TLS: only on a TLS listener */
    assert_string_equal(render("$ssl_protocol $ssl_cipher $ssl_session_reused", &v, HTTP_ESC_LOG), "- - -");
    v.ssl_protocol = "TLSv1.3";
    v.ssl_cipher = "TLS_AES_128_GCM_SHA256";
    v.ssl_server_name = "a.example";
    v.ssl_session_reused = true;
    assert_string_equal(render("$ssl_protocol $ssl_cipher $ssl_server_name $ssl_session_reused", &v, HTTP_ESC_LOG),
                        "TLSv1.3 TLS_AES_128_GCM_SHA256 a.example r");
    /* literals, $$ and ${} */
    assert_string_equal(render("$$5 ${status}ok $$$status", &v, HTTP_ESC_LOG), "$5 -ok $-");
}

static void test_escapes(void **state)
{
    (void)state;
    struct http_vars v = vars();
    v.remote_addr = "a\"b\\c\x01\n\xc3\xa9";
    assert_string_equal(render("[$remote_addr]", &v, HTTP_ESC_LOG), "[a\\x22b\\x5Cc\\x01\\x0A\\xC3\\xA9]");
    assert_string_equal(render("[$remote_addr]", &v, HTTP_ESC_JSON), "[a\\\"b\\\\c\\u0001\\n\xc3\xa9]");
    /* escape=json: bytes that are not UTF-8 become U+FFFD, so the line parses */
    v.remote_addr = "a\xff\xc3(\xe2\x82\xac";
    assert_string_equal(render("$remote_addr", &v, HTTP_ESC_JSON), "a\\ufffd\\ufffd(\xe2\x82\xac");
    v.remote_addr = "a\"b\\c\x01\n\xc3\xa9";
    /* a JSON format line reads back */
    render("{\"a\":\"$remote_addr\",\"s\":$status}", &v, HTTP_ESC_JSON);
    json_error_t jerr;
    json_t *doc = json_loads(out, 0, &jerr);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "a")), v.remote_addr);
    json_decref(doc);
}

static void test_header_mode_refuses_control_bytes(void **state)
{
    (void)state;
    struct http_vars v = vars();
    struct http_fmt f;
    bool refused;
    assert_int_equal(http_fmt_compile("  x-$route\t ", &f, err, sizeof err), 0);
    assert_int_equal(http_fmt_render(&f, &v, HTTP_ESC_HEADER, out, sizeof out, &refused), 4);
    assert_string_equal(out, "x-r1");
    assert_false(refused);
    const char *bad[] = {"a\r\nX-Injected: 1", "a\nb", "a\rb", "a\x7f", "a\x01"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v.route = bad[i];
        assert_int_equal(http_fmt_render(&f, &v, HTTP_ESC_HEADER, out, sizeof out, &refused), 0);
        assert_true(refused);
        assert_string_equal(out, "");
    }
    v.route = "tab\there \xc3\xa9"; /* HTAB and obs-text are field content */
    assert_int_equal(http_fmt_render(&f, &v, HTTP_ESC_HEADER, out, sizeof out, &refused), 13);
    assert_false(refused);
    http_fmt_free(&f);
}

static void test_bounded_output(void **state)
{
    (void)state;
    struct http_vars v = vars();
    struct http_fmt f;
    char small[8];
    assert_int_equal(http_fmt_compile("$request_id$request_id", &f, err, sizeof err), 0);
    assert_int_equal(http_fmt_render(&f, &v, HTTP_ESC_LOG, small, sizeof small, NULL), 7);
    assert_string_equal(small, "0123456");
    http_fmt_free(&f);
    /* an escape is never cut in two */
    v.route = "\x01\x01";
    assert_int_equal(http_fmt_compile("ab$route", &f, err, sizeof err), 0);
    assert_int_equal(http_fmt_render(&f, &v, HTTP_ESC_LOG, small, sizeof small, NULL), 6);
    assert_string_equal(small, "ab\\x01");
    http_fmt_free(&f);
}

static void test_head_copy(void **state)
{
    (void)state;
    parse_req();
    struct http_head_copy c = {0};
    char *raw = strdup(raw_req);
    assert_int_equal(http1_parse_request(raw, strlen(raw), NULL, &req), HTTP1_DONE);
    assert_int_equal(http_head_copy_take(&c, raw, &req), 0);
    memset(raw, 'z', strlen(raw)); /* the original bytes are gone */
    free(raw);
    struct http_vars v = vars();
    v.req = &c.m;
    assert_string_equal(render("$request_uri $host $http_x_test", &v, HTTP_ESC_LOG), "/a/b?x=1&y=2 Example.com one, two");
    free(c.raw);
}

static void test_request_ids(void **state)
{
    (void)state;
    char a[33], b[33];
    http_vars_new_request_id(a);
    http_vars_new_request_id(b);
    assert_int_equal(strlen(a), 32);
    assert_int_equal(strspn(a, "0123456789abcdef"), 32);
    assert_string_not_equal(a, b);
}

/* ---------- the config keys ---------- */

static void test_config_log_formats(void **state)
{
    (void)state;
    struct sl_config *cfg = load_ok("log_formats:\n  main: '$remote_addr $status'\n"
                                    "  j: { format: '{\"s\":$status}', escape: json }\n" MIN_POOLS MIN_LISTENERS
                                    "    access_log_format: j\n");
    struct proxy_conf *pc = proxy_conf(cfg);
    assert_int_equal(pc->n_log_formats, 2);
    assert_int_equal(pc->listeners[0].access_log_format, ACCESS_LOG_CUSTOM);
    assert_ptr_equal(pc->listeners[0].log_format, &pc->log_formats[1]);
    assert_int_equal(pc->log_formats[1].escape, HTTP_ESC_JSON);
    config_free(cfg);
    expect_error("log_formats:\n  main: '$remote_addr $stauts'\n" MIN_POOLS MIN_LISTENERS,
                 "t.yaml:2: log_formats.main: unknown variable \"$stauts\" (did you mean \"$status\"?)");
    expect_error("log_formats:\n  combined: '$status'\n" MIN_POOLS MIN_LISTENERS,
                 "t.yaml:2: log_formats.combined: \"combined\" is a built-in format; choose another name");
    expect_error("log_formats:\n  m: \"a\\nb\"\n" MIN_POOLS MIN_LISTENERS,
                 "t.yaml:2: log_formats.m: control characters (a line break, ...) are not allowed in a log format");
    expect_error("log_formats:\n  m: '$status'\n" MIN_POOLS
                 "listeners:\n  - name: t\n    listen: 127.0.0.1:9000\n    protocol: tcp\n    pool: app\n"
                 "    access_log_format: m\n",
                 "t.yaml:11: listeners[0].access_log_format: a log_formats entry is only for http listeners "
                 "(protocol is tcp; use combined or json)");
    expect_error(MIN_POOLS MIN_LISTENERS "    access_log_format: jsn\n",
                 "t.yaml:8: listeners[0].access_log_format: expected combined, json or a name of log_formats, got "
                 "\"jsn\"");
}

static void test_config_header_rules(void **state)
{
    (void)state;
    struct sl_config *cfg = load_ok(MIN_POOLS MIN_LISTENERS
                                    "    request_headers:\n"
                                    "      set: { X-A: listener, X-B: b }\n"
                                    "      add: { X-C: c }\n"
                                    "    routes:\n"
                                    "      - path_prefix: /r\n"
                                    "        pool: app\n"
                                    "        request_headers:\n"
                                    "          set: { X-A: route }\n"
                                    "          remove: [X-C, x-b]\n"
                                    "          add: { X-D: '$route' }\n");
    const struct cfg_listener *l = &proxy_conf(cfg)->listeners[0];
    const struct header_plan *lp = &l->request_plan, *rp = &l->routes[0].request_plan;
    assert_int_equal(lp->n_add, 3);
    assert_true(header_plan_drops(lp, "x-a", 3));
    assert_false(header_plan_drops(lp, "X-C", 3));
    /* the route: X-A overridden, X-B and the listener's X-C removed, X-D added */
    assert_int_equal(rp->n_add, 2);
    assert_string_equal(rp->add[0].name, "X-A");
    assert_string_equal(rp->add[0].value.text, "route");
    assert_string_equal(rp->add[1].name, "X-D");
    assert_true(header_plan_drops(rp, "X-B", 3) && header_plan_drops(rp, "X-C", 3));
    assert_string_equal(l->routes[0].name, "/r");
    config_free(cfg);

    expect_error(MIN_POOLS MIN_LISTENERS "    response_headers:\n      set: { Transfer-Encoding: x }\n",
                 "t.yaml:9: listeners[0].response_headers.set.Transfer-Encoding: Transfer-Encoding frames the "
                 "message or belongs to the connection; it cannot be changed");
    expect_error(MIN_POOLS MIN_LISTENERS "    request_headers:\n      remove: [Host]\n",
                 "t.yaml:9: listeners[0].request_headers.remove[0]: Host can only be set (a request has exactly one)");
    expect_error(MIN_POOLS MIN_LISTENERS "    request_headers:\n      add: { X-Forwarded-For: x }\n",
                 "t.yaml:9: listeners[0].request_headers.add.X-Forwarded-For: X-Forwarded-For is written by Sluice "
                 "itself; it cannot be changed by a rule");
    expect_error(MIN_POOLS MIN_LISTENERS "    request_headers:\n      set: { 'X A': x }\n",
                 "t.yaml:9: listeners[0].request_headers.set.X A: \"X A\" is not a valid header field name (RFC 9110 "
                 "token characters)");
    expect_error(MIN_POOLS MIN_LISTENERS "    request_headers:\n      set: { X-A: \"a\\r\\nX-B: 1\" }\n",
                 "t.yaml:9: listeners[0].request_headers.set.X-A: control characters (a line break, ...) are not "
                 "allowed in a header value");
    expect_error(MIN_POOLS MIN_LISTENERS "    request_headers:\n      set: { X-A: a, x-a: b }\n",
                 "t.yaml:9: listeners[0].request_headers.set.x-a: x-a is named twice (field names are "
                 "case-insensitive)");
    expect_error(MIN_POOLS "listeners:\n  - name: t\n    listen: 127.0.0.1:9000\n    protocol: tcp\n    pool: app\n"
                           "    request_headers: { set: { X-A: a } }\n",
                 "t.yaml:9: listeners[0]: header rules are only for http listeners (protocol is tcp)");
}

static void test_config_redirect_and_return(void **state)
{
    (void)state;
    struct sl_config *cfg = load_ok(MIN_POOLS MIN_LISTENERS
                                    "    routes:\n"
                                    "      - path_prefix: /old\n"
                                    "        redirect: { to: 'https://$host$request_uri', status: 308 }\n"
                                    "      - path_prefix: /gone\n"
                                    "        return: { status: 410, body: gone }\n");
    const struct cfg_listener *l = &proxy_conf(cfg)->listeners[0];
    assert_int_equal(l->routes[0].answer.action, ROUTE_REDIRECT);
    assert_int_equal(l->routes[0].answer.status, 308);
    assert_int_equal(l->routes[1].answer.action, ROUTE_RETURN);
    assert_string_equal(l->routes[1].answer.body, "gone");
    config_free(cfg);
    expect_error(MIN_POOLS MIN_LISTENERS "    routes:\n      - path_prefix: /a\n        redirect: { to: /b, status: 305 }\n",
                 "t.yaml:10: listeners[0].routes[0].redirect.status: expected 301, 302, 303, 307 or 308, got 305");
    expect_error(MIN_POOLS MIN_LISTENERS "    routes:\n      - path_prefix: /a\n        redirect: { status: 301 }\n",
                 "t.yaml:10: listeners[0].routes[0].redirect: missing required key \"to\"");
    expect_error(MIN_POOLS MIN_LISTENERS "    routes:\n      - path_prefix: /a\n",
                 "t.yaml:9: listeners[0].routes[0]: missing required key \"pool\" (or \"redirect\" or \"return\")");
}

int main(void)
{
    config_register_section(&proxy_conf_section);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compile_errors),
        cmocka_unit_test(test_request_variables),
        cmocka_unit_test(test_other_variables),
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_header_mode_refuses_control_bytes),
        cmocka_unit_test(test_bounded_output),
        cmocka_unit_test(test_head_copy),
        cmocka_unit_test(test_request_ids),
        cmocka_unit_test(test_config_log_formats),
        cmocka_unit_test(test_config_header_rules),
        cmocka_unit_test(test_config_redirect_and_return),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
