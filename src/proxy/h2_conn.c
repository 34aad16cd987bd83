/* An HTTP/2 client connection: see h2_conn.h. */
#include "proxy/h2_conn.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "proxy/http_conn.h"

#define H2_READ_BUF (16u * 1024)
#define H2_WRITE_BUF (32u * 1024)
#define H2_LINGER_MS 2000   /* for a GOAWAY to leave before we close */

static void conn_close(struct h2_conn *c);

/* ---------- per listener: every HTTP/2 connection ---------- */

static void all_add(struct h2_conn *c)
{
    struct http_listener *hl = http_listener_of(c->l);
    c->all_prev = NULL;
    c->all_next = hl->h2_all;
    if (hl->h2_all)
        hl->h2_all->all_prev = c;
    hl->h2_all = c;
}

static void all_remove(struct h2_conn *c)
{
    struct http_listener *hl = http_listener_of(c->l);
    if (c->all_prev)
        c->all_prev->all_next = c->all_next;
    else
        hl->h2_all = c->all_next;
    if (c->all_next)
        c->all_next->all_prev = c->all_prev;
    c->all_prev = c->all_next = NULL;
}

/* ---------- the session's hooks ---------- */

static struct h2_stream *stream_of(struct h2_req *r)
{
    return (struct h2_stream *)((char *)r - offsetof(struct h2_stream, req));
}

static struct h2_req *hook_stream_open(void *owner, int32_t id)
{
    struct h2_conn *c = owner;
    struct h2_stream *st = h2_stream_new(c, id);
    return st ? &st->req : NULL;
}

static void hook_request(void *owner, struct h2_req *r, bool end_stream)
{
    h2_stream_head_done(stream_of(r), end_stream);
}

static int hook_data(void *owner, struct h2_req *r, const uint8_t *p, size_t n)
{
    return h2_stream_data(stream_of(r), p, n);
}

static void hook_end_stream(void *owner, struct h2_req *r) { h2_stream_end(stream_of(r)); }

static void hook_stream_closed(void *owner, struct h2_req *r, uint32_t error_code)
{
    struct h2_stream *st = stream_of(r);
    /* Torn down in the connection's step, never inside nghttp2. */
    st->closed = true;
    st->dirty = true;
}

static const struct h2_session_hooks conn_hooks = {
    .stream_open = hook_stream_open,
    .request = hook_request,
    .data = hook_data,
    .end_stream = hook_end_stream,
    .stream_closed = hook_stream_closed,
};

/* ---------- reading and writing ---------- */

/* Feed what was read; false when the connection must end. */
static bool conn_feed(struct h2_conn *c)
{
    if (c->ending)
        return true;
    c->s.now_ms = ev_now(c->w->loop);
    if (!buf_len(&c->rbuf) && !h2_session_paused(&c->s))
        return true;
    ssize_t n = h2_session_feed(&c->s, (const uint8_t *)buf_head(&c->rbuf), buf_len(&c->rbuf));
    if (n < 0) {
        if (c->s.flood >= 0) {
            log_info("client %s: http2 %s flood: closing the connection", c->peer_ip, h2_flood_names[c->s.flood]);
            atomic_fetch_add_explicit(&c->l->ctr->h2_flood_closes[c->s.flood], 1, memory_order_relaxed);
        }
        c->ending = true;
        c->rbuf.start = c->rbuf.end = 0;
        ev_timer_start(c->w->loop, &c->timer, H2_LINGER_MS);
        return true; /* the GOAWAY goes out first */
    }
    buf_consume(&c->rbuf, (size_t)n);
    return true;
}

/* Gather frames from nghttp2 and write them: 0, or -1 on a socket error. */
static int conn_flush(struct h2_conn *c)
{
    if (buf_alloc(&c->wbuf, H2_WRITE_BUF) < 0)
        return -1;
    for (;;) {
        while (buf_room(&c->wbuf)) {
            if (!c->wpend_len) {
                const uint8_t *p;
                ssize_t n = nghttp2_session_mem_send(c->s.ng, &p);
                if (n < 0)
                    return -1;
                if (n == 0)
                    break;
                c->wpend = p;
                c->wpend_len = (size_t)n;
            }
            size_t k = c->wpend_len < buf_room(&c->wbuf) ? c->wpend_len : buf_room(&c->wbuf);
            buf_append(&c->wbuf, c->wpend, k);
            c->wpend += k;
            c->wpend_len -= k;
        }
        if (!buf_len(&c->wbuf))
            return 0;
        ssize_t w = transport_send1(&c->tr, buf_head(&c->wbuf), buf_len(&c->wbuf));
        if (w < 0)
            return errno == EAGAIN ? 0 : -1;
        atomic_fetch_add_explicit(&c->l->ctr->bytes_sent, (uint64_t)w, memory_order_relaxed);
        buf_consume(&c->wbuf, (size_t)w);
        if (buf_len(&c->wbuf))
            return 0; /* the socket is full */
    }
}

static bool conn_output_pending(const struct h2_conn *c)
{
    return buf_len(&c->wbuf) || c->wpend_len || nghttp2_session_want_write(c->s.ng);
}

/* ---------- the step ---------- */

static void streams_reap(struct h2_conn *c)
{
    struct h2_stream *st = c->streams, *next;
    for (; st; st = next) {
        next = st->next;
        if (st->closed)
            h2_stream_destroy(st);
    }
}

static bool streams_step(struct h2_conn *c)
{
    bool moved = false;
    for (struct h2_stream *st = c->streams; st; st = st->next) {
        if (st->closed)
            continue;
        if (st->state == H2S_READY && !c->ending) { /* after a GOAWAY of ours, nothing new starts */
            h2_stream_start(st);
            moved = true;
        }
        if (st->dirty) {
            h2_stream_step(st);
            moved = true;
        }
        h2_stream_open_window(st);
    }
    return moved;
}

static void conn_idle_timer(struct h2_conn *c)
{
    if (c->ending)
        return;
    if (c->n_streams == 0) {
        if (!ev_timer_active(&c->timer))
            ev_timer_start(c->w->loop, &c->timer, c->l->cfg->timeouts.idle_ms);
    } else {
        ev_timer_stop(c->w->loop, &c->timer);
    }
}

void h2_conn_run(struct h2_conn *c)
{
    if (c->dead)
        return;
    if (c->running) {
        c->again = true;
        return;
    }
    c->running = true;
    for (int guard = 0; guard < 64; guard++) {
        c->again = false;
        if (!conn_feed(c))
            break;
        /* What nghttp2 answered to the input leaves first: a GOAWAY it
         * sent for a connection error ends the session (want_read turns
         * false), and then no stream read with it may start. */
        if (conn_flush(c) < 0) {
            c->running = false;
            conn_close(c);
            return;
        }
        if (!c->ending && !nghttp2_session_want_read(c->s.ng)) {
            c->ending = true;
            ev_timer_start(c->w->loop, &c->timer, H2_LINGER_MS);
        }
        bool moved = streams_step(c);
        streams_reap(c);
        if (conn_flush(c) < 0) {
            c->running = false;
            conn_close(c);
            return;
        }
        /* Writing may have drained upstream buffers (the data provider),
         * closed streams, or unpaused the input: go round again. */
        bool more = c->again || (buf_len(&c->rbuf) && !c->ending && !h2_session_paused(&c->s));
        /* A stream that moved may have made the room a paused input
         * waits for: try to feed again (nothing else would wake us, the
         * client's socket is not polled while paused). */
        if (moved && h2_session_paused(&c->s) && !c->ending)
            more = true;
        for (struct h2_stream *st = c->streams; st && !more; st = st->next)
            more = st->dirty || st->closed || (st->state == H2S_READY && !c->ending);
        if (!more)
            break;
    }
    c->running = false;
    if (c->client_eof) {
        conn_close(c);
        return;
    }
    bool pending = conn_output_pending(c);
    if (!c->ending && !pending && c->n_streams == 0 &&
        (c->draining || (!nghttp2_session_want_read(c->s.ng) && !nghttp2_session_want_write(c->s.ng)))) {
        /* Drained, or the client said GOAWAY and everything is answered. */
        c->ending = true;
        ev_timer_start(c->w->loop, &c->timer, H2_LINGER_MS);
    }
    if (c->ending && !pending && !c->shut) {
        /* Everything is out, GOAWAY last: read and drop until the client
         * closes (or the linger timer), so unread input does not turn our
         * close into a reset that destroys what is in flight. */
        transport_shutdown(&c->tr);
        c->shut = true;
    }
    conn_idle_timer(c);
    h2_conn_set_interest(c);
}

void h2_conn_set_interest(struct h2_conn *c)
{
    if (c->dead)
        return;
    struct ev_loop *loop = c->w->loop;
    uint32_t ev = 0;
    /* Input waits while a stream cannot take its DATA (paused), while
     * unfed bytes are there, and while our output is stuck (a client that
     * does not read gets nothing more read from it either, so what
     * nghttp2 queues for it stays bounded); after a GOAWAY it is only
     * drained. */
    bool stuck = buf_len(&c->wbuf) != 0;
    if (!c->client_eof && (c->ending || (!buf_len(&c->rbuf) && !h2_session_paused(&c->s) && !stuck)))
        ev |= EPOLLIN;
    if (buf_len(&c->wbuf) || c->wpend_len)
        ev |= EPOLLOUT;
    ev = transport_events(&c->tr, ev);
    if (ev)
        ev_io_set(loop, &c->io, ev);
    else
        ev_io_stop(loop, &c->io);
    for (struct h2_stream *st = c->streams; st; st = st->next) {
        struct upstream_conn *u = st->txn.up;
        if (!u || st->closed)
            continue;
        uint32_t uev = transport_events(&u->tr, h2_stream_upstream_events(st));
        if (uev)
            ev_io_set(loop, &u->io, uev);
        else
            ev_io_stop(loop, &u->io);
    }
}

/* ---------- events ---------- */

static void client_event(struct ev_loop *loop, struct ev_io *io, uint32_t ev)
{
    struct h2_conn *c = io->data;
    ev = transport_ready(&c->tr, ev);
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        if (c->ending) {
            /* After our GOAWAY: read and drop, so that closing does not
             * turn into a reset that destroys the GOAWAY in flight. */
            char sink[4096];
            ssize_t n;
            while ((n = transport_recv(&c->tr, sink, sizeof sink)) > 0)
                atomic_fetch_add_explicit(&c->l->ctr->bytes_received, (uint64_t)n, memory_order_relaxed);
            if (n == 0 || (n < 0 && errno != EAGAIN))
                c->client_eof = true;
        } else if (!buf_len(&c->rbuf)) {
            ssize_t n = http_read_into(&c->tr, &c->rbuf);
            if (n > 0)
                atomic_fetch_add_explicit(&c->l->ctr->bytes_received, (uint64_t)n, memory_order_relaxed);
            else if (n == 0 || (n == -1 && errno != EAGAIN))
                c->client_eof = true;
        }
    }
    h2_conn_run(c);
}

/* End the connection politely: GOAWAY, then close once it is out (or
 * after the linger time). */
void h2_conn_goaway(struct h2_conn *c, uint32_t error_code)
{
    if (c->ending || c->dead)
        return;
    nghttp2_session_terminate_session(c->s.ng, error_code);
    c->ending = true;
    ev_timer_start(c->w->loop, &c->timer, H2_LINGER_MS);
}

static void conn_timeout(struct ev_loop *loop, struct ev_timer *t)
{
    struct h2_conn *c = t->data;
    if (c->ending) {
        conn_close(c); /* a GOAWAY that could not leave in time */
        return;
    }
    if (c->n_streams == 0)
        h2_conn_goaway(c, NGHTTP2_NO_ERROR); /* idle (timeouts.idle) */
    h2_conn_run(c);
}

/* ---------- lifecycle ---------- */

static void conn_free(void *p)
{
    struct h2_conn *c = p;
    buf_release(&c->rbuf);
    buf_release(&c->wbuf);
    free(c);
}

static void conn_close(struct h2_conn *c)
{
    if (c->dead)
        return;
    /* Dead first: a stream finishing its transaction below must not run
     * the connection's step. */
    c->dead = true;
    while (c->streams)
        h2_stream_destroy(c->streams);
    h2_session_fini(&c->s);
    all_remove(c);
    ev_timer_stop(c->w->loop, &c->timer);
    ev_io_stop(c->w->loop, &c->io);
    transport_close(&c->tr, false);
    ratelimit_conn_release(&c->rl_hold);
    worker_conn_closed(c->w, c->l);
    ev_defer_free(c->w->loop, c, conn_free);
}

void h2_conn_adopt(struct listener_rt *l, const struct transport *tr, const char *peer_ip,
                   const struct conn_origin *origin, const void *already_read, size_t n, struct rl_hold *hold)
{
    struct worker *w = l->w;
    struct h2_conn *c = calloc(1, sizeof *c);
    if (!c || buf_alloc(&c->rbuf, n > H2_READ_BUF ? n : H2_READ_BUF) < 0 ||
        h2_session_init(&c->s, &l->cfg->http2, &conn_hooks, c, ev_now(w->loop)) < 0) {
        if (c)
            buf_release(&c->rbuf);
        free(c);
        struct transport t = *tr;
        transport_close(&t, true);
        ratelimit_conn_release(hold);
        worker_conn_closed(w, l);
        return;
    }
    c->w = w;
    c->l = l;
    c->tr = *tr;
    c->rl_hold = *hold;
    hold->table = NULL;
    snprintf(c->peer_ip, sizeof c->peer_ip, "%s", peer_ip);
    c->origin = *origin;
    if (n)
        buf_append(&c->rbuf, already_read, n);
    atomic_fetch_add_explicit(&l->ctr->h2_connections, 1, memory_order_relaxed);
    ev_timer_init(&c->timer, conn_timeout, c);
    ev_io_init(&c->io, c->tr.fd, client_event, c);
    all_add(c);
    if (!n) {
        /* After a TLS handshake: the transport may already hold the
         * client's first bytes, which no epoll event would announce. */
        client_event(w->loop, &c->io, EPOLLIN);
        return;
    }
    h2_conn_run(c);
}

void h2_listener_tick(struct listener_rt *l)
{
    struct worker *w = l->w;
    if (!w->draining)
        return;
    struct h2_conn *c = http_listener_of(l)->h2_all, *next;
    for (; c; c = next) {
        next = c->all_next;
        if (c->draining || c->ending)
            continue;
        /* Graceful: the streams the client opened so far are served, no
         * new one is, then the connection closes (RFC 9113 6.8). */
        c->draining = true;
        nghttp2_submit_goaway(c->s.ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(c->s.ng),
                              NGHTTP2_NO_ERROR, NULL, 0);
        h2_conn_run(c);
    }
}

void h2_listener_shutdown(struct listener_rt *l)
{
    struct http_listener *hl = http_listener_of(l);
    while (hl->h2_all)
        conn_close(hl->h2_all);
}
