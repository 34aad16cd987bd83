/* libFuzzer target for the HTTP/2 side of the proxy: h2_session.c (the
 * nghttp2 server session with our callbacks and flood defences),
 * h2_request.c (field accumulation and the HTTP/1.1 rendering) and
 * h2_response.c (HTTP/1 heads to header lists, chunked framing stripped).
 *
 * Input: byte 0 picks the mode (bit 7 clear: a connection; set: the
 * response helpers) and small limits; byte 1 a pattern of DATA chunks the
 * stream "cannot take" (the pause path); the rest is what a client sends
 * after the preface (fed in two pieces, split by byte 2), or an HTTP/1
 * response head followed by a chunked body.
 *
 * Beyond "no crash": a rendered request fits the size announced for it,
 * holds exactly one head (no CR/LF smuggled in by a field), and parses
 * with the proxy's HTTP/1 parser into the same method; the session never
 * takes more bytes than offered; the de-chunker gives the same payload
 * however its input is split and never more payload than input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/http1.h"
#include "proxy/h2_request.h"
#include "proxy/h2_response.h"
#include "proxy/h2_session.h"
#include "proxy/http2_conf.h"

#define CHECK(x)                                                                        \
    do {                                                                                \
        if (!(x)) {                                                                     \
            fprintf(stderr, "fuzz_h2: invariant failed at line %d: %s\n", __LINE__, #x); \
            abort();                                                                    \
        }                                                                               \
    } while (0)

struct fz_stream {
    struct h2_req req;
    int32_t id;
    struct fz_stream *next;
};

struct fz {
    struct h2_session s;
    struct fz_stream *streams;
    uint8_t pause_pattern;
    unsigned data_calls;
    size_t data_bytes;
};

static struct fz_stream *of(struct h2_req *r)
{
    return (struct fz_stream *)((char *)r - offsetof(struct fz_stream, req));
}

static struct h2_req *fz_open(void *owner, int32_t id)
{
    struct fz *f = owner;
    struct fz_stream *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    h2_req_init(&st->req, f->s.cfg->max_header_list_size);
    st->id = id;
    st->next = f->streams;
    f->streams = st;
    return &st->req;
}

static size_t count(const char *p, size_t n, const char *needle)
{
    size_t k = 0, nl = strlen(needle);
    for (size_t i = 0; i + nl <= n; i++)
        k += memcmp(p + i, needle, nl) == 0;
    return k;
}

static void fz_request(void *owner, struct h2_req *r, bool end_stream)
{
    struct fz *f = owner;
    struct fz_stream *st = of(r);
    bool chunked = !end_stream && !r->has_content_length;
    size_t cap = h2_req_rendered_size(r);
    struct buf out = {0};
    CHECK(buf_alloc(&out, cap) == 0);
    const char *reason = NULL;
    int status = h2_req_render(r, chunked, &out, &reason);
    if (status) {
        CHECK(reason != NULL && (status == 400 || status == 431 || status == 503));
    } else {
        const char *p = buf_head(&out);
        size_t n = buf_len(&out);
        CHECK(n <= cap && n >= 4 && memcmp(p + n - 4, "\r\n\r\n", 4) == 0);
        CHECK(count(p, n, "\r\n\r\n") == 1);
        static struct http1_message m;
        enum http1_result pr = http1_parse_request(p, n, NULL, &m);
        CHECK(pr != HTTP1_INCOMPLETE);
        if (pr == HTTP1_DONE) {
            CHECK(m.head_len == n);
            CHECK(m.method_str.len == r->method.len &&
                  memcmp(m.method_str.p, buf_head(&r->text) + r->method.off, r->method.len) == 0);
        }
        /* Answer, so that the response path of the session runs too. */
        static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\nX-A: b\r\n\r\n";
        struct h2_head h;
        CHECK(h2_head_from_http1(head, sizeof head - 1, &h) == (ssize_t)(sizeof head - 1));
        nghttp2_submit_response(f->s.ng, st->id, h.nv, h.n, NULL);
        h2_head_free(&h);
    }
    buf_release(&out);
    h2_req_free(r);
}

static int fz_data(void *owner, struct h2_req *r, const uint8_t *p, size_t n)
{
    struct fz *f = owner;
    /* Now and then "no room": the session keeps the chunk and pauses. */
    if ((f->pause_pattern >> (f->data_calls++ % 8)) & 1)
        return 1;
    f->data_bytes += n;
    nghttp2_session_consume(f->s.ng, of(r)->id, n);
    return 0;
}

static void fz_end(void *owner, struct h2_req *r) { (void)owner, (void)r; }

static void fz_closed(void *owner, struct h2_req *r, uint32_t code)
{
    struct fz *f = owner;
    struct fz_stream *st = of(r), **pp = &f->streams;
    while (*pp != st)
        pp = &(*pp)->next;
    *pp = st->next;
    h2_req_free(&st->req);
    free(st);
}

static const struct h2_session_hooks hooks = {fz_open, fz_request, fz_data, fz_end, fz_closed};

static void drain(struct fz *f)
{
    for (int i = 0; i < 10000; i++) {
        const uint8_t *p;
        ssize_t n = nghttp2_session_mem_send(f->s.ng, &p);
        if (n <= 0)
            return;
    }
}

/* Feed everything, resuming after pauses; false once the session ends it. */
static bool feed(struct fz *f, const uint8_t *p, size_t n)
{
    for (int rounds = 0; rounds < 100000; rounds++) {
        f->s.now_ms += 7;
        ssize_t k = h2_session_feed(&f->s, p, n);
        if (k < 0)
            return false;
        CHECK((size_t)k <= n);
        p += k;
        n -= (size_t)k;
        drain(f);
        if (!n && !h2_session_paused(&f->s))
            return true;
        if (k == 0)
            f->pause_pattern >>= 1; /* the stream makes room, eventually */
    }
    return true;
}

static void run_connection(const uint8_t *data, size_t size)
{
    struct cfg_http2 cfg;
    http2_conf_defaults(&cfg);
    if (data[0] & 1) { /* small limits, so every defence is reachable */
        cfg.max_header_list_size = 1024;
        cfg.max_concurrent_streams = 2;
        cfg.max_continuations = 1;
        cfg.max_resets = cfg.max_pings = cfg.max_settings = cfg.max_empty_frames = 3;
        cfg.initial_window_size = 1024;
    }
    struct fz f = {.pause_pattern = data[1]};
    CHECK(h2_session_init(&f.s, &cfg, &hooks, &f, 1000) == 0);
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    bool alive = feed(&f, (const uint8_t *)preface, sizeof preface - 1);
    data += 3, size -= 3;
    size_t split = size ? data[-1] % (size + 1) : 0;
    if (alive)
        alive = feed(&f, data, split);
    if (alive)
        feed(&f, data + split, size - split);
    drain(&f);
    h2_session_fini(&f.s);
    while (f.streams) {
        struct fz_stream *st = f.streams;
        f.streams = st->next;
        h2_req_free(&st->req);
        free(st);
    }
}

static void run_response(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data + 3;
    size_t n = size - 3;
    struct h2_head h;
    ssize_t k = h2_head_from_http1(p, n, &h);
    CHECK(k >= -1 && k <= (ssize_t)n);
    if (k > 0) {
        CHECK(h.n >= 1 && h.status >= 100 && h.status <= 599);
        for (size_t i = 1; i < h.n; i++)
            for (size_t c = 0; c < h.nv[i].namelen; c++)
                CHECK(!(h.nv[i].name[c] >= 'A' && h.nv[i].name[c] <= 'Z'));
        h2_head_free(&h);
        p += k, n -= (size_t)k;
    }
    /* The body as http_txn.c lets it through: only the validated bytes. */
    struct http1_chunked v;
    http1_chunked_init(&v);
    ssize_t valid = http1_chunked_feed(&v, p, n);
    if (valid <= 0)
        return;
    char *one = malloc((size_t)valid + 1), *two = malloc((size_t)valid + 1);
    CHECK(one && two);
    struct h2_dechunk d;
    h2_dechunk_init(&d);
    size_t n1 = 0;
    ssize_t took = h2_dechunk_feed(&d, p, (size_t)valid, one, (size_t)valid, &n1);
    CHECK(took == valid && n1 <= (size_t)valid && d.done == v.done);
    /* Split: the same payload, whatever the pieces and the room. */
    h2_dechunk_init(&d);
    size_t pos = 0, n2 = 0, step = data[1] % 7 + 1;
    for (int guard = 0; pos < (size_t)valid && guard < 1000000; guard++) {
        size_t piece = (size_t)valid - pos < step ? (size_t)valid - pos : step;
        size_t room = step * 2 < (size_t)valid + 1 - n2 ? step * 2 : (size_t)valid + 1 - n2, got = 0;
        ssize_t t = h2_dechunk_feed(&d, p + pos, piece, two + n2, room, &got);
        CHECK(t >= 0);
        pos += (size_t)t;
        n2 += got;
    }
    CHECK(pos == (size_t)valid && n2 == n1 && memcmp(one, two, n1) == 0);
    free(one);
    free(two);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    if (data[0] & 0x80)
        run_response(data, size);
    else
        run_connection(data, size);
    return 0;
}
