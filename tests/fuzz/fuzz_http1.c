/* libFuzzer target for lib/http1.
 *
 * Input: byte 0 picks the parser (% 3: request, response, chunked), byte 1
 * picks limits (< 0x40: tiny ones so 414/431 are reachable; else defaults)
 * and, for responses, the request method (% 10). The rest is the message.
 *
 * Beyond "no crash", it checks what callers rely on: slices stay inside the
 * head, limits hold, parsing is deterministic, every prefix of the input
 * gives HTTP1_INCOMPLETE or the whole input's answer (so re-parsing a growing
 * buffer is sound), the http1_head_ready() shortcut never hides a complete
 * head, and the chunked validator gives the same answer however its input is
 * split. Prefixes are parsed from exact-size copies so ASan sees over-reads. */
#include "lib/http1.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(x)                                                                        \
    do {                                                                                \
        if (!(x)) {                                                                     \
            fprintf(stderr, "fuzz_http1: invariant failed at line %d: %s\n", __LINE__, #x); \
            abort();                                                                    \
        }                                                                               \
    } while (0)

enum mode { MODE_REQUEST, MODE_RESPONSE, MODE_CHUNKED };

struct setup {
    enum mode mode;
    struct http1_limits lim;
    enum http1_method req_method;
};

static enum http1_result parse(const struct setup *s, const char *buf, size_t len, struct http1_message *m)
{
    if (s->mode == MODE_REQUEST)
        return http1_parse_request(buf, len, &s->lim, m);
    return http1_parse_response(buf, len, &s->lim, s->req_method, m);
}

static void check_slice(struct http1_slice sl, const char *buf, size_t head_len)
{
    if (sl.len == 0)
        return;
    CHECK(sl.p >= buf && sl.p + sl.len <= buf + head_len);
}

static void check_message(const struct setup *s, const char *buf, size_t len, enum http1_result r,
                          const struct http1_message *m)
{
    CHECK(r == HTTP1_DONE || r == HTTP1_INCOMPLETE || r == HTTP1_ERROR);
    if (r == HTTP1_ERROR) {
        CHECK(m->error_reason != NULL);
        if (s->mode == MODE_REQUEST)
            CHECK(m->error_status == 400 || m->error_status == 414 || m->error_status == 431 ||
                  m->error_status == 501 || m->error_status == 505);
        else
            CHECK(m->error_status == 502);
        return;
    }
    if (r != HTTP1_DONE)
        return;

    CHECK(m->head_len <= len && m->head_len <= s->lim.max_head);
    CHECK(m->head_len >= 4 && memcmp(buf + m->head_len - 4, "\r\n\r\n", 4) == 0);
    CHECK(m->n_headers <= s->lim.max_headers && m->n_headers <= HTTP1_MAX_HEADERS_CAP);
    CHECK(m->version_minor == 0 || m->version_minor == 1);
    CHECK(m->error_reason == NULL);
    for (size_t i = 0; i < m->n_headers; i++) {
        const struct http1_header *h = &m->headers[i];
        CHECK(h->name.len > 0);
        check_slice(h->name, buf, m->head_len);
        check_slice(h->value, buf, m->head_len);
        if (h->value.len) {
            CHECK(h->value.p[0] != ' ' && h->value.p[0] != '\t');
            CHECK(h->value.p[h->value.len - 1] != ' ' && h->value.p[h->value.len - 1] != '\t');
        }
        CHECK(memchr(h->value.p, '\r', h->value.len) == NULL && memchr(h->value.p, '\n', h->value.len) == NULL);
        (void)http1_is_hop_by_hop(m, h->name);
        (void)http1_has_token(h->value, "close");
        /* A framing look-alike has a '_', and is never the real (hop-by-hop
         * or Content-Length) name. */
        bool underscore = http1_name_has_underscore(h->name);
        CHECK(underscore == (memchr(h->name.p, '_', h->name.len) != NULL));
        if (http1_is_framing_lookalike(h->name))
            CHECK(underscore && !http1_is_hop_by_hop(m, h->name));
    }
    if (s->mode == MODE_REQUEST) {
        CHECK(m->method_str.len > 0 && m->target.len > 0);
        check_slice(m->method_str, buf, m->head_len);
        check_slice(m->target, buf, m->head_len);
        check_slice(m->authority, buf, m->head_len);
        check_slice(m->host, buf, m->head_len);
        CHECK(m->body != HTTP1_BODY_UNTIL_CLOSE);
        CHECK(m->version_minor == 1 || m->body != HTTP1_BODY_CHUNKED);
        const struct http1_header *h = http1_find_header(m, "host");
        CHECK(m->version_minor == 0 || h != NULL);
        (void)http1_method_idempotent(m->method);
    } else {
        CHECK(m->status >= 100 && m->status <= 599);
        check_slice(m->reason, buf, m->head_len);
        CHECK(m->body != HTTP1_BODY_UNTIL_CLOSE || !m->keep_alive);
    }
    CHECK(!(m->body == HTTP1_BODY_CHUNKED && http1_find_header(m, "content-length")));
}

/* a and b parsed the same bytes at different addresses: compare by offset. */
static void check_same(enum http1_result ra, const struct http1_message *a, const char *ba, enum http1_result rb,
                       const struct http1_message *b, const char *bb)
{
    CHECK(ra == rb);
    if (ra == HTTP1_ERROR) {
        CHECK(a->error_status == b->error_status);
        CHECK(a->error_reason == b->error_reason);
    }
    if (ra != HTTP1_DONE)
        return;
    CHECK(a->head_len == b->head_len && a->n_headers == b->n_headers);
    CHECK(a->body == b->body && a->content_length == b->content_length);
    CHECK(a->keep_alive == b->keep_alive && a->upgrade == b->upgrade && a->expect_continue == b->expect_continue);
    CHECK(a->method == b->method && a->status == b->status && a->version_minor == b->version_minor);
    CHECK(a->target.len == b->target.len && a->host.len == b->host.len);
    for (size_t i = 0; i < a->n_headers; i++) {
        CHECK(a->headers[i].name.p - ba == b->headers[i].name.p - bb);
        CHECK(a->headers[i].value.p - ba == b->headers[i].value.p - bb);
        CHECK(a->headers[i].value.len == b->headers[i].value.len);
    }
}

static struct http1_message full_msg, tmp_msg;

/* Parse buf[0..k) from an exact-size copy. */
static enum http1_result parse_prefix(const struct setup *s, const char *buf, size_t k, struct http1_message *m,
                                      char **copy)
{
    *copy = malloc(k ? k : 1);
    CHECK(*copy != NULL);
    memcpy(*copy, buf, k);
    return parse(s, *copy, k, m);
}

static void check_prefix(const struct setup *s, const char *buf, size_t len, enum http1_result full, size_t k)
{
    char *copy;
    enum http1_result r = parse_prefix(s, buf, k, &tmp_msg, &copy);
    check_message(s, copy, k, r, &tmp_msg);
    if (full == HTTP1_DONE && k >= full_msg.head_len)
        CHECK(r == HTTP1_DONE);
    if (r != HTTP1_INCOMPLETE)
        check_same(full, &full_msg, buf, r, &tmp_msg, copy);
    free(copy);
}

/* A caller that re-parses only when http1_head_ready() says so. */
static void check_ready_hint(const struct setup *s, const char *buf, size_t len, enum http1_result full)
{
    enum http1_result r = HTTP1_INCOMPLETE;
    size_t prev = 0;
    for (size_t k = 1; k <= len && r == HTTP1_INCOMPLETE; k++) {
        if (http1_head_ready(buf, k, prev, &s->lim)) {
            char *copy;
            r = parse_prefix(s, buf, k, &tmp_msg, &copy);
            if (r != HTTP1_INCOMPLETE)
                check_same(full, &full_msg, buf, r, &tmp_msg, copy);
            free(copy);
        }
        prev = k;
    }
    if (full == HTTP1_DONE)
        CHECK(r == HTTP1_DONE);
}

static void run_chunked_on(const char *buf, size_t len)
{
    struct http1_chunked c;
    http1_chunked_init(&c);
    ssize_t n = http1_chunked_feed(&c, buf, len);
    CHECK(n >= -1 && n <= (ssize_t)len);
}

static void fuzz_head(const struct setup *s, const char *buf, size_t len)
{
    enum http1_result full = parse(s, buf, len, &full_msg);
    check_message(s, buf, len, full, &full_msg);

    /* Deterministic. */
    enum http1_result again = parse(s, buf, len, &tmp_msg);
    check_same(full, &full_msg, buf, again, &tmp_msg, buf);

    /* Every prefix when short; a sample plus the interesting edges when long. */
    if (len <= 256) {
        for (size_t k = 0; k < len; k++)
            check_prefix(s, buf, len, full, k);
    } else {
        for (size_t k = 0; k < len; k += len / 61 + 1)
            check_prefix(s, buf, len, full, k);
        if (full == HTTP1_DONE) {
            check_prefix(s, buf, len, full, full_msg.head_len - 1);
            check_prefix(s, buf, len, full, full_msg.head_len);
        }
    }
    if (len <= 1024)
        check_ready_hint(s, buf, len, full);

    if (full == HTTP1_DONE && full_msg.body == HTTP1_BODY_CHUNKED)
        run_chunked_on(buf + full_msg.head_len, len - full_msg.head_len);
}

/* Feed in pieces whose sizes come from a small LCG (piece == 1: byte by byte). */
static ssize_t feed_split(struct http1_chunked *c, const char *buf, size_t len, uint32_t seed, bool bytewise)
{
    size_t i = 0;
    while (i < len) {
        size_t piece = 1;
        if (!bytewise) {
            seed = seed * 1103515245u + 12345u;
            piece = 1 + (seed >> 16) % 17;
            if (piece > len - i)
                piece = len - i;
        }
        ssize_t n = http1_chunked_feed(c, buf + i, piece);
        if (n < 0) {
            CHECK(c->error_reason != NULL && !c->done);
            CHECK(http1_chunked_feed(c, buf + i, piece) == -1);   /* errors stick */
            return -1;
        }
        CHECK((size_t)n <= piece);
        i += (size_t)n;
        if ((size_t)n < piece) {
            CHECK(c->done);   /* only the end of the message stops it early */
            break;
        }
        if (c->done)
            break;
    }
    return (ssize_t)i;
}

static void fuzz_chunked(const char *buf, size_t len)
{
    struct http1_chunked whole, bytes, pieces;

    http1_chunked_init(&whole);
    http1_chunked_init(&bytes);
    http1_chunked_init(&pieces);
    ssize_t n = http1_chunked_feed(&whole, buf, len);
    ssize_t nb = feed_split(&bytes, buf, len, 0, true);
    ssize_t np = feed_split(&pieces, buf, len, (uint32_t)len * 2654435761u, false);

    CHECK(n == nb && n == np);
    CHECK(whole.done == bytes.done && whole.done == pieces.done);
    CHECK(whole.error_reason == bytes.error_reason && whole.error_reason == pieces.error_reason);
    if (n < 0)
        return;
    CHECK((size_t)n <= len);
    CHECK(whole.done || (size_t)n == len);
    if (whole.done) {
        CHECK(n >= 5);   /* at least "0\r\n\r\n" */
        CHECK(memcmp(buf + n - 2, "\r\n", 2) == 0);
        CHECK(http1_chunked_feed(&whole, buf, len) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct setup s;

    if (size < 2)
        return 0;
    s.mode = (enum mode)(data[0] % 3);
    if (data[1] >= 0x40) {
        s.lim = http1_default_limits;
    } else {
        s.lim.max_request_line = 4 + (data[1] & 7) * 6;
        s.lim.max_head = 16 + ((data[1] >> 3) & 7) * 24;
        s.lim.max_headers = data[1] % 5;
    }
    s.req_method = (enum http1_method)(data[1] % 10);

    const char *buf = (const char *)data + 2;
    size_t len = size - 2;
    if (s.mode == MODE_CHUNKED)
        fuzz_chunked(buf, len);
    else
        fuzz_head(&s, buf, len);
    return 0;
}
