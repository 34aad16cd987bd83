/* A stream of an HTTP/2 client connection, the carrier of one
 * transaction: see h2_conn.h. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "proxy/error_pages.h"
#include "proxy/h2_conn.h"
#include "proxy/http_conn.h"

/* Room kept in `in` beyond the window: the chunked terminator and the
 * chunk-size lines of the DATA frames a window brings (12 bytes at most
 * each). More frames than that per window only pause the input until the
 * backend has taken some (h2_session.h), they never overflow. */
#define CHUNK_RESERVE (5 + 256)
#define BODY_SLACK 1024

static struct h2_stream *stream_of_cr(struct http_carrier *cr)
{
    return (struct h2_stream *)((char *)cr - offsetof(struct h2_stream, cr));
}

static nghttp2_session *ng_of(const struct h2_stream *st) { return st->c->s.ng; }

/* ---------- the response body: the data provider ---------- */

static ssize_t body_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                         nghttp2_data_source *src, void *user)
{
    struct h2_stream *st = src->ptr;
    if (st->aborted)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (st->own) {
        size_t n = st->own_len - st->own_off;
        if (n > length)
            n = length;
        memcpy(buf, st->own_data + st->own_off, n);
        st->own_off += n;
        if (st->own_off == st->own_len)
            *flags |= NGHTTP2_DATA_FLAG_EOF;
        return (ssize_t)n;
    }
    struct http_txn *t = &st->txn;
    if (t->local_answer) {
        /* A route's redirect: or return: body (http_txn.c). */
        size_t n = t->local_len - t->local_off < length ? t->local_len - t->local_off : length;
        memcpy(buf, t->local_body + t->local_off, n);
        t->local_off += n;
        if (t->local_off == t->local_len)
            *flags |= NGHTTP2_DATA_FLAG_EOF;
        return (ssize_t)n;
    }
    struct upstream_conn *u = t->up;
    size_t n = 0;
    if (u && t->resp_head_done && t->resp_ready) {
        size_t take;
        if (st->dechunk_on) {
            ssize_t took = h2_dechunk_feed(&st->dechunk, buf_head(&u->in), t->resp_ready, (char *)buf, length, &n);
            if (took < 0)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
            take = (size_t)took;
        } else {
            take = n = t->resp_ready < length ? t->resp_ready : length;
            memcpy(buf, buf_head(&u->in), n);
        }
        buf_consume(&u->in, take);
        t->resp_ready -= take;
        t->resp_bytes += take;
        st->dirty = true; /* room upstream; maybe the end of the transaction */
    }
    if (st->state == H2S_OVER || (t->resp_done && !t->resp_ready)) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        return (ssize_t)n;
    }
    if (!n) {
        st->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

static void resume_body(struct h2_stream *st)
{
    if (!st->deferred || st->closed)
        return;
    st->deferred = false;
    nghttp2_session_resume_data(ng_of(st), st->id);
}

/* ---------- the carrier of the transaction ---------- */

static const char *status_text(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Error";
    }
}

/* The transaction is over. What it handed to nghttp2 leaves as the
 * client's window allows; a client that stops reading altogether has its
 * stream reset after timeouts.idle (stream_timeout). */
static void stream_over(struct h2_stream *st)
{
    st->state = H2S_OVER;
    http_txn_body_clock_stop(&st->txn);
    ev_timer_start(st->c->w->loop, &st->timer, st->c->l->cfg->timeouts.idle_ms);
}

static void carrier_abort(struct http_carrier *cr)
{
    struct h2_stream *st = stream_of_cr(cr);
    if (!st->closed && !st->aborted)
        nghttp2_submit_rst_stream(ng_of(st), NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
    st->aborted = true;
    if (st->txn.up)
        http_txn_detach_upstream(&st->txn, false);
    stream_over(st);
}

#define NV(n, v, vl) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vl), NGHTTP2_NV_FLAG_NONE}

static void carrier_send_error(struct http_carrier *cr, int status, const char *reason)
{
    struct h2_stream *st = stream_of_cr(cr);
    struct http_txn *t = &st->txn;
    log_debug("client %s: stream %d: %d %s: %s", cr->peer_ip, st->id, status, status_text(status), reason);
    if (st->head_submitted || st->closed) {
        carrier_abort(cr);
        return;
    }
    if (t->up)
        http_txn_detach_upstream(t, false);
    /* A page of error_pages: for this status, else the status and the
     * reason in a line of text. */
    const struct error_page *page = http_txn_error_page(t, status);
    size_t blen;
    if (page) {
        st->own_data = page->body;
        blen = page->len;
    } else {
        int n = snprintf(st->own_body, sizeof st->own_body, "%d %s: %s\n", status, status_text(status), reason);
        blen = n < (int)sizeof st->own_body ? (size_t)n : sizeof st->own_body - 1;
        st->own_data = st->own_body;
    }
    const char *ctype = page ? page->content_type : "text/plain";
    char code[4] = {(char)('0' + status / 100 % 10), (char)('0' + status / 10 % 10), (char)('0' + status % 10), 0};
    char len[24];
    int llen = snprintf(len, sizeof len, "%zu", blen);
    char retry_after[12];
    int rlen = snprintf(retry_after, sizeof retry_after, "%u", t->retry_after_s);
    nghttp2_nv nv[] = {
        NV(":status", code, 3),
        NV("content-type", ctype, strlen(ctype)),
        NV("content-length", len, (size_t)llen),
        NV("server", "sluice", 6),
        NV("retry-after", retry_after, (size_t)rlen), /* last: left out without one */
    };
    st->own = true;
    st->own_len = t->method == HTTP1_M_HEAD ? 0 : blen;
    st->own_off = 0;
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = body_read};
    nghttp2_submit_response(ng_of(st), st->id, nv, sizeof nv / sizeof nv[0] - (t->retry_after_s ? 0 : 1),
                            st->own_len ? &prd : NULL);
    st->head_submitted = true;
    cr->out.start = cr->out.end = 0;
    t->status = status;
    t->resp_bytes = (uint64_t)blen;
    http_count_response(cr->l, status);
    if (status >= 400 && status < 500)
        atomic_fetch_add_explicit(&cr->l->ctr->rejected, 1, memory_order_relaxed);
    http_txn_log_refused(t, reason);
    stream_over(st);
}

/* Turn the heads in `out` into HEADERS (interim ones, then the final
 * one with the data provider), and wake the provider when body bytes or
 * the end have come. */
static int carrier_send(struct http_carrier *cr)
{
    struct h2_stream *st = stream_of_cr(cr);
    struct http_txn *t = &st->txn;
    if (st->closed)
        return -1;
    while (buf_len(&cr->out)) {
        struct h2_head h;
        ssize_t k = h2_head_from_http1(buf_head(&cr->out), buf_len(&cr->out), &h);
        if (k <= 0)
            return -1;
        int rv;
        if (h.status < 200) {
            rv = nghttp2_submit_headers(ng_of(st), NGHTTP2_FLAG_NONE, st->id, NULL, h.nv, h.n, NULL);
        } else {
            bool body = !(t->resp_done && !t->resp_ready) || t->local_off < t->local_len;
            st->dechunk_on = t->resp_body == HTTP1_BODY_CHUNKED;
            if (st->dechunk_on)
                h2_dechunk_init(&st->dechunk);
            nghttp2_data_provider prd = {.source.ptr = st, .read_callback = body_read};
            rv = nghttp2_submit_response(ng_of(st), st->id, h.nv, h.n, body ? &prd : NULL);
            st->head_submitted = true;
            t->resp_sent = true;
        }
        h2_head_free(&h);
        buf_consume(&cr->out, (size_t)k);
        if (rv != 0)
            return -1;
    }
    if (st->head_submitted && (t->resp_ready || t->resp_done))
        resume_body(st);
    return 0;
}

static void carrier_request_done(struct http_carrier *cr)
{
    struct h2_stream *st = stream_of_cr(cr);
    stream_over(st);
    resume_body(st); /* the end of the body may still have to leave */
}

static void carrier_progress(struct http_carrier *cr)
{
    struct h2_stream *st = stream_of_cr(cr);
    st->dirty = true;
    h2_conn_run(st->c);
}

static void carrier_set_interest(struct http_carrier *cr) { h2_conn_set_interest(stream_of_cr(cr)->c); }

static void carrier_set_timer(struct http_carrier *cr, uint64_t ms)
{
    struct h2_stream *st = stream_of_cr(cr);
    ev_timer_start(st->c->w->loop, &st->timer, ms);
}

/* A 101 needs an Upgrade the client cannot send over HTTP/2 (it is
 * connection-specific), so the transaction never asks for one. */
static void carrier_tunnel(struct http_carrier *cr) { carrier_abort(cr); }

static const struct http_carrier_ops h2_carrier_ops = {
    .send_error = carrier_send_error,
    .send = carrier_send,
    .request_done = carrier_request_done,
    .abort = carrier_abort,
    .progress = carrier_progress,
    .set_interest = carrier_set_interest,
    .set_timer = carrier_set_timer,
    .tunnel = carrier_tunnel,
};

static void stream_timeout(struct ev_loop *loop, struct ev_timer *timer)
{
    struct h2_stream *st = timer->data;
    struct h2_conn *c = st->c;
    if (st->closed)
        return;
    switch (st->state) {
    case H2S_HEADERS:
        /* A header block that stopped half-way (HEADERS without
         * END_HEADERS): nothing else may come on the connection until it
         * ends, so the connection goes (timeouts.client_header). */
        atomic_fetch_add_explicit(&c->l->ctr->timeouts, 1, memory_order_relaxed);
        h2_conn_goaway(c, NGHTTP2_NO_ERROR);
        break;
    case H2S_READY:
        break;
    case H2S_FORWARD:
        http_txn_timeout(&st->txn);
        break;
    case H2S_OVER:
        atomic_fetch_add_explicit(&c->l->ctr->timeouts, 1, memory_order_relaxed);
        if (!st->aborted)
            nghttp2_submit_rst_stream(ng_of(st), NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
        st->aborted = true;
        break;
    }
    h2_conn_run(c);
}

/* ---------- what the connection calls ---------- */

struct h2_stream *h2_stream_new(struct h2_conn *c, int32_t id)
{
    struct h2_stream *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->c = c;
    st->id = id;
    st->state = H2S_HEADERS;
    h2_req_init(&st->req, c->l->cfg->http2.max_header_list_size);
    st->cr.ops = &h2_carrier_ops;
    st->cr.w = c->w;
    st->cr.l = c->l;
    st->cr.peer_ip = c->peer_ip;
    st->cr.origin = &c->origin;
    st->cr.tr = &c->tr; /* X-Forwarded-Proto and the access log's TLS fields */
    st->cr.scratch = &http_listener_of(c->l)->scratch;
    st->cr.http2 = true;
    http_txn_init(&st->txn, &st->cr);
    http_txn_begin(&st->txn);
    ev_timer_init(&st->timer, stream_timeout, st);
    ev_timer_start(c->w->loop, &st->timer, c->l->cfg->timeouts.client_header_ms);
    st->next = c->streams;
    if (c->streams)
        c->streams->prev = st;
    c->streams = st;
    c->n_streams++;
    return st;
}

/* The access log shows the request line the client sent: HTTP/2. The
 * rendered head says HTTP/1.1 (the parser wants that); where the log takes
 * the line from the buffer (requests refused before the transaction
 * started), the version is swapped in place, same length. */
static void log_line_http2(char *line, size_t len)
{
    const char *eol = memchr(line, '\r', len);
    size_t n = eol ? (size_t)(eol - line) : len;
    if (n >= 8 && memcmp(line + n - 8, "HTTP/1.1", 8) == 0)
        memcpy(line + n - 8, "HTTP/2.0", 8);
}

/* A head that could not be rendered: still give the log its line. */
static void refused_line(struct h2_stream *st)
{
    const struct h2_req *r = &st->req;
    struct buf *in = &st->cr.in;
    in->start = in->end = 0;
    const struct h2_slot *target = r->path.set ? &r->path : &r->authority;
    if (!r->method.set || !target->set || buf_room(in) < r->method.len + target->len + 12)
        return;
    buf_append(in, buf_head(&r->text) + r->method.off, r->method.len);
    buf_append(in, " ", 1);
    buf_append(in, buf_head(&r->text) + target->off, target->len);
    buf_append(in, " HTTP/2.0\r\n", 11);
}

void h2_stream_head_done(struct h2_stream *st, bool end_stream)
{
    const struct cfg_http2 *h2 = &st->c->l->cfg->http2;
    st->end_stream = end_stream;
    st->chunked = !end_stream && !st->req.has_content_length;
    size_t cap = h2_req_rendered_size(&st->req);
    if (!end_stream)
        cap += h2->initial_window_size + BODY_SLACK;
    if (buf_alloc(&st->cr.in, cap) < 0) {
        st->refuse_status = 503;
        st->refuse_reason = "out of memory";
    } else {
        st->refuse_status = h2_req_render(&st->req, st->chunked, &st->cr.in, &st->refuse_reason);
        if (st->refuse_status)
            refused_line(st);
    }
    h2_req_free(&st->req);
    st->cr.client_eof = end_stream;
    st->state = H2S_READY;
    ev_timer_stop(st->c->w->loop, &st->timer);
}

void h2_stream_start(struct h2_stream *st)
{
    struct http_carrier *cr = &st->cr;
    struct listener_rt *l = cr->l;
    st->state = H2S_FORWARD;
    if (st->refuse_status) {
        carrier_send_error(cr, st->refuse_status, st->refuse_reason);
        return;
    }
    struct http1_limits lim = http_limits_of(l->cfg);
    struct http1_message *m = cr->scratch;
    /* The same strict parser as for HTTP/1: one set of rules for what
     * reaches a backend, whatever the client spoke. */
    enum http1_result r = http1_parse_request(buf_head(&cr->in), buf_len(&cr->in), &lim, m);
    if (r != HTTP1_DONE) {
        bool err = r == HTTP1_ERROR;
        log_line_http2(buf_head(&cr->in), buf_len(&cr->in));
        carrier_send_error(cr, err && m->error_status ? m->error_status : 400,
                           err && m->error_reason ? m->error_reason : "bad request");
        return;
    }
    atomic_fetch_add_explicit(&l->ctr->requests, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&l->ctr->h2_streams, 1, memory_order_relaxed);
    cr->close_after = false;
    http_txn_start(&st->txn, m);
    if (st->txn.log)
        log_line_http2(st->txn.log->line, strlen(st->txn.log->line));
}

int h2_stream_data(struct h2_stream *st, const uint8_t *p, size_t n)
{
    struct buf *in = &st->cr.in;
    if (st->state == H2S_OVER || st->refuse_status || !in->data) {
        /* Nobody wants these bytes: give their window back at once. */
        nghttp2_session_consume(ng_of(st), st->id, n);
        return 0;
    }
    char size_line[24];
    int sl = st->chunked ? snprintf(size_line, sizeof size_line, "%zx\r\n", n) : 0;
    size_t need = n + (st->chunked ? (size_t)sl + 2 + 5 : 0);
    if (buf_room(in) < need && st->state == H2S_FORWARD)
        http_txn_compact_now(&st->txn);
    if (buf_room(in) < need)
        return 1; /* paused until the backend takes some */
    if (st->chunked)
        buf_append(in, size_line, (size_t)sl);
    buf_append(in, p, n);
    if (st->chunked)
        buf_append(in, "\r\n", 2);
    st->unacked += n;
    if (st->txn.body_clock)
        st->txn.body_rcvd += n;
    st->dirty = true;
    return 0;
}

void h2_stream_end(struct h2_stream *st)
{
    st->end_stream = true;
    st->cr.client_eof = true;
    if (st->chunked && st->state != H2S_OVER && !st->refuse_status && st->cr.in.data)
        buf_append(&st->cr.in, "0\r\n\r\n", 5); /* room kept by h2_stream_data */
    st->dirty = true;
}

void h2_stream_step(struct h2_stream *st)
{
    st->dirty = false;
    if (st->state == H2S_FORWARD && !st->closed)
        http_txn_progress(&st->txn);
}

void h2_stream_open_window(struct h2_stream *st)
{
    if (!st->unacked || st->closed)
        return;
    nghttp2_session *ng = ng_of(st);
    if (st->state == H2S_OVER || st->refuse_status) {
        nghttp2_session_consume(ng, st->id, st->unacked);
        st->unacked = 0;
        return;
    }
    size_t window = st->c->l->cfg->http2.initial_window_size;
    struct buf *in = &st->cr.in;
    size_t reserve = st->chunked ? CHUNK_RESERVE : 0;
    if (st->state == H2S_FORWARD && buf_room(in) < window + reserve && st->txn.pos > 0)
        http_txn_compact_now(&st->txn);
    size_t room = buf_room(in) > reserve ? buf_room(in) - reserve : 0;
    /* The client may send (window - unacked) more once k bytes are given
     * back: that must fit in the room. */
    if (room + st->unacked <= window)
        return;
    size_t k = room + st->unacked - window;
    if (k > st->unacked)
        k = st->unacked;
    nghttp2_session_consume(ng, st->id, k);
    st->unacked -= k;
}

uint32_t h2_stream_upstream_events(const struct h2_stream *st)
{
    if (st->state != H2S_FORWARD || !st->txn.up)
        return 0;
    return http_txn_upstream_events(&st->txn);
}

static void stream_free(void *p)
{
    struct h2_stream *st = p;
    buf_release(&st->cr.in);
    buf_release(&st->cr.out);
    http_txn_free(&st->txn);
    free(st);
}

void h2_stream_destroy(struct h2_stream *st)
{
    struct h2_conn *c = st->c;
    struct http_txn *t = &st->txn;
    /* The whole response went out and the stream closed before the
     * transaction took its last step: let it finish (access log, the
     * upstream back to the pool). */
    if (st->state == H2S_FORWARD && !st->aborted && t->resp_head_done && t->resp_done && !t->resp_ready &&
        !buf_len(&st->cr.out)) {
        st->closed = false;
        http_txn_progress(t);
        st->closed = true;
    }
    if (t->up)
        http_txn_detach_upstream(t, false);
    http_txn_body_clock_stop(t);
    ev_timer_stop(c->w->loop, &st->timer);
    if (st->unacked && c->s.ng)
        nghttp2_session_consume_connection(c->s.ng, st->unacked);
    h2_req_free(&st->req);
    if (st->prev)
        st->prev->next = st->next;
    else
        c->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    c->n_streams--;
    ev_defer_free(c->w->loop, st, stream_free);
}
