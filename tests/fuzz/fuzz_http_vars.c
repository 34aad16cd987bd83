/* libFuzzer target for proxy/http_vars: the format compiler and the
 * renderer with each escaping.
 *
 * Input: a format string up to the first NUL, then up to six NUL-separated
 * strings used as variable values (remote_addr, route, pool, upstream_addr,
 * the reason, the SNI) and, after them, a request head the HTTP/1 parser
 * reads (its fields feed $request, $uri, $http_NAME...).
 *
 * Checks: compiling never fails without a reason and every part lies
 * inside the compiled text; rendering stays within the buffer, is
 * NUL-terminated where it says; with the log escaping the output holds no
 * byte outside printable ASCII that its format's literals did not bring
 * (so no value can split or forge a line); with escape=json the values add
 * no raw control byte; in header mode a value is either refused (empty) or
 * holds no control byte but HTAB and no blank at either end. A fixed
 * escape=json format with the fuzzed values always parses as JSON, and
 * each value that is valid UTF-8 (jansson is the oracle) reads back as
 * itself. */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/http_vars.h"

#define CHECK(x)                                                                              \
    do {                                                                                      \
        if (!(x)) {                                                                           \
            fprintf(stderr, "fuzz_http_vars: invariant failed at line %d: %s\n", __LINE__, #x); \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

#define OUT_CAP 2048

static char out[OUT_CAP + 16];

/* The format's literals: are they all printable ASCII (or HTAB)? */
static bool literals_printable(const struct http_fmt *f, bool allow_tab)
{
    for (size_t i = 0; i < f->n_parts; i++) {
        const struct http_fmt_part *p = &f->parts[i];
        for (uint32_t k = 0; p->literal && k < p->len; k++) {
            unsigned char ch = (unsigned char)f->text[p->off + k];
            if ((ch < 0x20 && !(allow_tab && ch == '\t')) || ch >= 0x7f)
                return false;
        }
    }
    return true;
}

static void check_compiled(const struct http_fmt *f)
{
    size_t text_len = strlen(f->text);
    for (size_t i = 0; i < f->n_parts; i++) {
        const struct http_fmt_part *p = &f->parts[i];
        CHECK((size_t)p->off + p->len <= text_len);
        if (!p->literal)
            CHECK(p->var <= HV_SENT_HTTP_HEADER);
    }
}

static void render_and_check(const struct http_fmt *f, const struct http_vars *v)
{
    /* A guard after the buffer: nothing may be written past cap. */
    memset(out, 0x5a, sizeof out);
    size_t n = http_fmt_render(f, v, HTTP_ESC_LOG, out, OUT_CAP, NULL);
    CHECK(n < OUT_CAP && out[n] == '\0' && strlen(out) == n);
    for (size_t i = OUT_CAP; i < sizeof out; i++)
        CHECK(out[i] == 0x5a);
    if (literals_printable(f, false))
        for (size_t i = 0; i < n; i++)
            CHECK((unsigned char)out[i] >= 0x20 && (unsigned char)out[i] < 0x7f);

    n = http_fmt_render(f, v, HTTP_ESC_JSON, out, OUT_CAP, NULL);
    CHECK(n < OUT_CAP && out[n] == '\0');
    if (literals_printable(f, false)) {
        for (size_t i = 0; i < n; i++)
            CHECK((unsigned char)out[i] >= 0x20 && out[i] != 0x7f);
        json_t *text = json_stringn(out, n); /* NULL if not valid UTF-8 */
        CHECK(text != NULL);
        json_decref(text);
    }

    bool refused = false;
    n = http_fmt_render(f, v, HTTP_ESC_HEADER, out, OUT_CAP, &refused);
    CHECK(n < OUT_CAP && out[n] == '\0');
    if (refused)
        CHECK(n == 0);
    if (literals_printable(f, true)) {
        for (size_t i = 0; i < n; i++) {
            unsigned char ch = (unsigned char)out[i];
            CHECK((ch >= 0x20 || ch == '\t') && ch != 0x7f);
        }
        if (n)
            CHECK(out[0] != ' ' && out[0] != '\t' && out[n - 1] != ' ' && out[n - 1] != '\t');
    }

    /* A tiny buffer: still terminated, never overrun. */
    char small[5];
    n = http_fmt_render(f, v, HTTP_ESC_LOG, small, sizeof small, NULL);
    CHECK(n < sizeof small && small[n] == '\0');
}

/* The JSON oracle: a JSON object format whose values are fuzzed. */
static void check_json_object(const struct http_vars *v)
{
    static struct http_fmt f;
    static bool compiled;
    char err[128];
    if (!compiled) {
        CHECK(http_fmt_compile("{\"a\":\"$remote_addr\",\"b\":\"$route\",\"u\":\"$http_user_agent\","
                               "\"r\":\"$request\"}", &f, err, sizeof err) == 0);
        compiled = true;
    }
    size_t n = http_fmt_render(&f, v, HTTP_ESC_JSON, out, OUT_CAP, NULL);
    json_error_t jerr;
    json_t *doc = json_loadb(out, n, 0, &jerr);
    if (!doc) {
        /* Only a line cut by the buffer may fail to parse. */
        CHECK(n + 1 >= OUT_CAP - 8);
        return;
    }
    json_t *expect = json_string(v->remote_addr);   /* NULL: not valid UTF-8 */
    if (expect && v->remote_addr[0])
        CHECK(json_equal(json_object_get(doc, "a"), expect));
    json_decref(expect);
    json_decref(doc);
}

/* Split data into NUL-terminated strings (copied). */
static const char *next_string(const char **p, const char *end, char *buf, size_t cap)
{
    size_t n = 0;
    while (*p < end && **p && n + 1 < cap)
        buf[n++] = *(*p)++;
    while (*p < end && **p)
        (*p)++;
    if (*p < end)
        (*p)++;
    buf[n] = '\0';
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    static char fmt[4200], vals[6][256];
    next_string(&p, end, fmt, sizeof fmt);
    struct http_fmt f;
    char err[256] = "";
    if (http_fmt_compile(fmt, &f, err, sizeof err) < 0) {
        CHECK(err[0] != '\0');
        http_fmt_free(&f);
        return 0;
    }
    check_compiled(&f);
    for (int i = 0; i < 6; i++)
        next_string(&p, end, vals[i], sizeof vals[i]);
    static struct http1_message req;
    static char head[2048];
    size_t head_len = (size_t)(end - p) < sizeof head ? (size_t)(end - p) : sizeof head;
    memcpy(head, p, head_len);
    bool have_req = http1_parse_request(head, head_len, NULL, &req) == HTTP1_DONE;
    struct http_vars v = {
        .req = have_req ? &req : NULL,
        .resp = have_req ? &req : NULL,
        .remote_addr = vals[0],
        .route = vals[1],
        .pool = vals[2],
        .upstream_addr = vals[3],
        .reason = vals[4],
        .ssl_protocol = vals[5][0] ? "TLSv1.3" : NULL,
        .ssl_server_name = vals[5],
        .scheme = "http",
        .listener = "web",
        .status = size > 0 ? (int)(data[0] % 600) : 0,
        .upstream_connect_us = (int64_t)size - 5,
        .request_id = "0123456789abcdef0123456789abcdef",
        .now = {(time_t)size * 1000003, (long)(size % 1000000000)},
    };
    render_and_check(&f, &v);
    check_json_object(&v);
    struct http_fmt copy;
    if (http_fmt_copy(&copy, &f) == 0) {
        render_and_check(&copy, &v);
        http_fmt_free(&copy);
    }
    http_fmt_free(&f);
    return 0;
}
