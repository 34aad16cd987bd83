/* The HTTP/1.1 client connection: see http_conn.h. */
#include "proxy/http_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "lib/addr.h"
#include "proxy/error_pages.h"
#include "proxy/proto.h"
#include "proxy/ratelimit_http.h"
#include "proxy/tls.h"
#include "proxy/proxy_protocol.h"
#include "proxy/toa_lookup.h"

#define LINGER_MS 2000
#define DRAIN_IDLE_GRACE_MS 1000

static void http_conn_close(struct http_conn *c);
static void http_conn_progress(struct http_conn *c);

static inline void http_conn_set_timer(struct http_conn *c, uint64_t ms)
{
    ev_timer_start(c->w->loop, &c->timer, ms);
}

/* ---------- per listener: every connection, and the idle ones ---------- */

static void all_add(struct http_conn *c)
{
    struct http_listener *hl = http_listener_of(c->l);
    c->all_prev = NULL;
    c->all_next = hl->all;
    if (hl->all)
        hl->all->all_prev = c;
    hl->all = c;
}

static void all_remove(struct http_conn *c)
{
    struct http_listener *hl = http_listener_of(c->l);
    if (c->all_prev)
        c->all_prev->all_next = c->all_next;
    else
        hl->all = c->all_next;
    if (c->all_next)
        c->all_next->all_prev = c->all_prev;
    c->all_prev = c->all_next = NULL;
}

static void idle_remove(struct http_conn *c)
{
    struct http_listener *hl = http_listener_of(c->l);
    if (!c->on_idle_list)
        return;
    if (c->idle_prev)
        c->idle_prev->idle_next = c->idle_next;
    else
        hl->idle_head = c->idle_next;
    if (c->idle_next)
        c->idle_next->idle_prev = c->idle_prev;
    else
        hl->idle_tail = c->idle_prev;
    c->idle_prev = c->idle_next = NULL;
    c->on_idle_list = false;
}

/* Idle means waiting for the first byte of a request: a keep-alive client
 * between requests, or a new connection that has not spoken yet. Both are
 * what a flood of silent connections looks like, and both are the first to
 * go when the listener is full. */
static void idle_add(struct http_conn *c)
{
    struct http_listener *hl = http_listener_of(c->l);
    if (c->on_idle_list)
        return;
    c->idle_prev = hl->idle_tail;
    c->idle_next = NULL;
    if (hl->idle_tail)
        hl->idle_tail->idle_next = c;
    else
        hl->idle_head = c;
    hl->idle_tail = c;
    c->on_idle_list = true;
    c->idle_since = ev_now(c->w->loop);
}

/* Close the listener's oldest idle client connection, if any, to make
 * room for a new one. Returns 1 if one was closed. */
static int http_evict_idle(struct listener_rt *l)
{
    struct http_conn *c = http_listener_of(l)->idle_head;
    if (!c)
        return 0;
    http_conn_close(c);
    return 1;
}

/* ---------- answers of our own ---------- */

static const char *status_text(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}

/* Answer with an error of our own and close once it is sent; if part of
 * a response already reached the client, close at once. */
static void http_conn_send_error(struct http_conn *c, int status, const char *reason)
{
    log_debug("client %s: %d %s: %s", c->peer_ip, status, status_text(status), reason);
    http_txn_body_clock_stop(&c->txn);
    /* Part of a response already reached the client (the final head, or
     * some of an interim one): an error message now would be read as the
     * rest of it. Closing is the only unambiguous signal left. */
    if (c->txn.resp_sent || c->cr.out.start) {
        http_conn_close(c);
        return;
    }
    /* A page of error_pages: for this status (its body and type), else
     * the status and the reason in a line of text. */
    const struct error_page *page = http_txn_error_page(&c->txn, status);
    char text[256];
    const char *body = text;
    size_t blen;
    if (page) {
        body = page->body;
        blen = page->len;
    } else {
        int n = snprintf(text, sizeof text, "%d %s: %s\n", status, status_text(status), reason);
        blen = n < (int)sizeof text ? (size_t)n : sizeof text - 1;
    }
    char retry_after[32] = "";
    if (c->txn.retry_after_s)
        snprintf(retry_after, sizeof retry_after, "Retry-After: %u\r\n", c->txn.retry_after_s);
    char head[256 + sizeof retry_after + ERROR_PAGE_TYPE_MAX];
    int hlen = snprintf(head, sizeof head,
                        "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                        "%sConnection: close\r\nServer: sluice\r\n\r\n",
                        status, status_text(status), page ? page->content_type : "text/plain", blen, retry_after);
    /* Nothing else is owed to the client: the buffer may be replaced by
     * one that holds a page larger than the usual head room. */
    size_t need = (size_t)hlen + blen;
    if (c->cr.out.data && c->cr.out.cap < need)
        buf_release(&c->cr.out);
    size_t cap = c->l->cfg->limits.max_header_size + HTTP_HEAD_SLACK;
    if (buf_alloc(&c->cr.out, cap > need ? cap : need) < 0) {
        http_conn_close(c);
        return;
    }
    c->cr.out.start = c->cr.out.end = 0;
    buf_append(&c->cr.out, head, (size_t)hlen);
    if (c->txn.method != HTTP1_M_HEAD)
        buf_append(&c->cr.out, body, blen);
    c->txn.status = status;
    c->txn.resp_bytes = (uint64_t)blen;
    http_count_response(c->l, status);
    if (status >= 400 && status < 500)
        atomic_fetch_add_explicit(&c->l->ctr->rejected, 1, memory_order_relaxed);
    http_txn_log_refused(&c->txn, reason);
    c->cr.close_after = true;
    c->state = C_LINGER;
    /* Whatever else the client sent is not a request we will read. */
    c->cr.in.start = c->cr.in.end = 0;
    http_conn_set_timer(c, LINGER_MS);
}

/* ---------- writing to the client ---------- */

/* Write c->cr.out, then the transaction's response body bytes, to the
 * client: 0 (all written, or the socket is full), -1 on an error. */
static int http_conn_send(struct http_conn *c)
{
    if (buf_len(&c->cr.out)) {
        struct upstream_conn *u = c->txn.up;
        size_t body = u && c->txn.resp_head_done ? c->txn.resp_ready : 0;
        struct iovec iov[2] = {{buf_head(&c->cr.out), buf_len(&c->cr.out)}, {u ? buf_head(&u->in) : NULL, body}};
        ssize_t n = transport_send(&c->tr, iov, body ? 2 : 1);
        if (n < 0)
            return errno == EAGAIN ? 0 : -1;
        atomic_fetch_add_explicit(&c->l->ctr->bytes_sent, (uint64_t)n, memory_order_relaxed);
        if (n > 0 && c->txn.resp_head_done)
            c->txn.resp_sent = true;
        size_t out_len = buf_len(&c->cr.out);
        if ((size_t)n < out_len) {
            buf_consume(&c->cr.out, (size_t)n);
            return 0;
        }
        buf_consume(&c->cr.out, out_len);
        size_t b = (size_t)n - out_len;
        if (b) {
            buf_consume(&u->in, b);
            c->txn.resp_ready -= b;
            c->txn.resp_bytes += b;
        }
    }
    struct upstream_conn *u = c->txn.up;
    while (u && c->txn.resp_head_done && c->txn.resp_ready) {
        ssize_t n = http_send_some(&c->tr, buf_head(&u->in), c->txn.resp_ready);
        if (n <= 0)
            return (int)n;
        buf_consume(&u->in, (size_t)n);
        c->txn.resp_ready -= (size_t)n;
        c->txn.resp_bytes += (size_t)n;
        atomic_fetch_add_explicit(&c->l->ctr->bytes_sent, (uint64_t)n, memory_order_relaxed);
    }
    return 0;
}

/* ---------- the tunnel (after 101 Switching Protocols) ---------- */

static int tunnel_pump(struct http_conn *c)
{
    struct upstream_conn *u = c->txn.up;
    /* client -> upstream: everything after the request head */
    size_t pending = buf_len(&c->cr.in) - c->txn.pos;
    while (pending) {
        ssize_t n = http_send_some(&u->tr, buf_head(&c->cr.in) + c->txn.pos, pending);
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        atomic_fetch_add_explicit(&u->b->ctr->bytes_sent, (uint64_t)n, memory_order_relaxed);
        c->txn.pos += (size_t)n;
        pending -= (size_t)n;
    }
    if (c->txn.pos == buf_len(&c->cr.in)) {
        c->cr.in.start = c->cr.in.end = 0;
        c->txn.pos = 0;
        if (c->cr.client_eof && !c->tunnel_client_eof) {
            transport_shutdown(&u->tr);
            c->tunnel_client_eof = true;
        }
    } else {
        http_txn_compact(&c->txn);
    }
    /* upstream -> client */
    c->txn.resp_ready = buf_len(&u->in);
    if (http_conn_send(c) < 0)
        return -1;
    if (!buf_len(&u->in) && !buf_len(&c->cr.out) && u->eof && !c->tunnel_up_eof) {
        transport_shutdown(&c->tr);
        c->tunnel_up_eof = true;
    }
    if (c->tunnel_up_eof && c->tunnel_client_eof)
        return -1; /* both directions finished */
    return 0;
}

/* ---------- connection lifecycle ---------- */

static void conn_free(void *p)
{
    struct http_conn *c = p;
    buf_release(&c->cr.in);
    buf_release(&c->cr.out);
    http_txn_free(&c->txn);
    free(c);
}

/* Take the connection off the listener's lists and stop its watchers:
 * what both closing it and handing it over to HTTP/2 do before it is
 * freed. Its socket is left to the caller. */
static void conn_unhook(struct http_conn *c)
{
    idle_remove(c);
    all_remove(c);
    ev_timer_stop(c->w->loop, &c->timer);
    ev_slow_stop(c->w->loop, &c->hs_slow);
    http_txn_body_clock_stop(&c->txn);
    ev_io_stop(c->w->loop, &c->io);
}

/* Close the connection (and its upstream), free it after this batch of
 * events. Closing a closed one does nothing. */
static void http_conn_close(struct http_conn *c)
{
    if (!transport_open(&c->tr))
        return;
    if (c->txn.up)
        http_txn_detach_upstream(&c->txn, false);
    conn_unhook(c);
    transport_close(&c->tr, false);
    ratelimit_conn_release(&c->rl_hold);
    worker_conn_closed(c->w, c->l);
    ev_defer_free(c->w->loop, c, conn_free);
}

/* After a final response with Connection: close: stop sending, read and
 * discard until the client closes, so unread input does not turn our
 * close into a reset that could destroy the response in flight. */
static void conn_start_linger(struct http_conn *c)
{
    http_txn_body_clock_stop(&c->txn);
    transport_shutdown(&c->tr);
    c->state = C_LINGER;
    c->cr.in.start = c->cr.in.end = 0;
    http_conn_set_timer(c, LINGER_MS);
}

/* The transaction is finished and its response written: go on with the
 * next request, or linger and close. */
static void http_conn_request_done(struct http_conn *c)
{
    /* A client that half-closed after pipelining still gets an answer to
     * every complete request it sent: linger only when nothing is left. */
    if (c->cr.close_after || (c->cr.client_eof && buf_len(&c->cr.in) == c->txn.pos)) {
        conn_start_linger(c);
        return;
    }
    buf_consume(&c->cr.in, c->txn.pos);
    http_txn_reset(&c->txn);
    c->state = C_READ_HEAD;
    c->head_deadline = 0;
}

/* Set the interest of the client's and the upstream's sockets from the
 * state and the buffers. */
static void http_conn_set_interest(struct http_conn *c)
{
    if (!transport_open(&c->tr))
        return; /* closed: its ev_io must not be queued again */
    struct ev_loop *loop = c->w->loop;
    uint32_t cev = 0, uev = 0;
    struct upstream_conn *u = c->txn.up;
    if (c->txn.body_clock)
        http_txn_body_clock_update(&c->txn);
    switch (c->state) {
    case C_READ_HEAD:
        if (!c->cr.client_eof && !buf_full(&c->cr.in))
            cev |= EPOLLIN;
        if (buf_len(&c->cr.out))
            cev |= EPOLLOUT;
        break;
    case C_FORWARD:
        /* Read the request body while there is room; pipelined requests
         * wait in the kernel once the buffer is full. */
        if (!c->cr.client_eof && !buf_full(&c->cr.in))
            cev |= EPOLLIN;
        if (buf_len(&c->cr.out) || (c->txn.resp_head_done && c->txn.resp_ready))
            cev |= EPOLLOUT;
        if (u)
            uev = http_txn_upstream_events(&c->txn);
        break;
    case C_TUNNEL:
        if (!c->cr.client_eof && !buf_full(&c->cr.in))
            cev |= EPOLLIN;
        if (buf_len(&c->cr.out) || (u && buf_len(&u->in)))
            cev |= EPOLLOUT;
        if (u) {
            if (buf_len(&c->cr.in) > c->txn.pos)
                uev |= EPOLLOUT;
            if (!u->eof && (!u->in.data || !buf_full(&u->in)))
                uev |= EPOLLIN;
        }
        break;
    case C_LINGER:
        cev = EPOLLIN;
        if (buf_len(&c->cr.out))
            cev |= EPOLLOUT;
        break;
    }
    /* epoll reports an error or hang-up even with no events asked for, and
     * keeps reporting it (level-triggered): a reset socket we are not
     * reading, e.g. because the buffer it fills is full, would spin the
     * loop. A socket with nothing to do leaves epoll until it has again;
     * its error is then seen by the next read or write. */
    if (c->tls_handshaking)
        cev = EPOLLIN; /* the handshake first, whatever the buffers hold (none yet) */
    cev = transport_events(&c->tr, cev);
    if (cev)
        ev_io_set(loop, &c->io, cev);
    else
        ev_io_stop(loop, &c->io);
    if (u) {
        uev = transport_events(&u->tr, uev);
        if (uev)
            ev_io_set(loop, &u->io, uev);
        else
            ev_io_stop(loop, &u->io);
    }
}

/* Free the connection without closing its socket or counting it closed:
 * HTTP/2 has taken both over. */
static void http_conn_hand_over(struct http_conn *c)
{
    conn_unhook(c);
    c->tr.fd = -1;
    ev_defer_free(c->w->loop, c, conn_free);
}

/* h2c with prior knowledge (RFC 9113 3.3): the connection's first bytes
 * are the HTTP/2 preface. Returns 1 when the connection went to HTTP/2,
 * 0 when it is HTTP/1, -1 when the bytes so far are a beginning of the
 * preface (wait for more: "PRI * HTTP/2.0\r\n\r\n" alone would parse as
 * an HTTP/1 head). */
static int conn_try_h2c(struct http_conn *c)
{
    size_t n = buf_len(&c->cr.in);
    if (c->spoke)
        return 0;
    if (memcmp(buf_head(&c->cr.in), H2_PREFACE, n < H2_PREFACE_LEN ? n : H2_PREFACE_LEN) != 0)
        return 0;
    if (n < H2_PREFACE_LEN)
        return -1;
    http_conn_switch_to_h2(c);
    return 1;
}

void http_conn_switch_to_h2(struct http_conn *c)
{
    struct listener_rt *l = c->l;
    struct transport tr = c->tr;
    char peer_ip[sizeof c->peer_ip];
    memcpy(peer_ip, c->peer_ip, sizeof peer_ip);
    /* The bytes read so far move to the new connection (copied): this one
     * is freed after this batch of events, its buffer with it. */
    h2_conn_adopt(l, &tr, peer_ip, &c->origin, buf_len(&c->cr.in) ? buf_head(&c->cr.in) : NULL, buf_len(&c->cr.in),
                  &c->rl_hold);
    http_conn_hand_over(c);
}

/* READ_HEAD: parse what has arrived. Returns true if a request was taken. */
static bool conn_try_parse(struct http_conn *c)
{
    if (!buf_len(&c->cr.in))
        return false;
    int h2 = conn_try_h2c(c);
    if (h2 > 0)
        return false;
    if (h2 < 0) {
        idle_remove(c);
        return false;
    }
    idle_remove(c);
    /* Durations in the access log count from the first byte of the request. */
    http_txn_begin(&c->txn);
    struct http1_limits lim = http_limits_of(c->l->cfg);
    struct http1_message *m = &http_listener_of(c->l)->scratch;
    /* The parser starts over on every call; a client sending its head a
     * few bytes at a time would cost quadratic time. Parse again only when
     * the new bytes could finish the head or break a rule. */
    enum http1_result r = HTTP1_INCOMPLETE;
    if (!c->head_scanned || http1_head_ready(buf_head(&c->cr.in), buf_len(&c->cr.in), c->head_scanned, &lim))
        r = http1_parse_request(buf_head(&c->cr.in), buf_len(&c->cr.in), &lim, m);
    c->head_scanned = r == HTTP1_INCOMPLETE ? buf_len(&c->cr.in) : 0;
    if (r == HTTP1_INCOMPLETE) {
        if (!c->head_deadline) {
            c->head_deadline = ev_now(c->w->loop) + c->l->cfg->timeouts.client_header_ms;
            http_conn_set_timer(c, c->l->cfg->timeouts.client_header_ms);
        }
        if (buf_full(&c->cr.in))
            http_conn_send_error(c, 431, "request head too large");
        return false;
    }
    if (r == HTTP1_ERROR) {
        c->txn.method = HTTP1_M_OTHER;
        http_conn_send_error(c, m->error_status ? m->error_status : 400,
                             m->error_reason ? m->error_reason : "bad request");
        return false;
    }
    atomic_fetch_add_explicit(&c->l->ctr->requests, 1, memory_order_relaxed);
    c->spoke = true;
    c->cr.close_after = !m->keep_alive || c->w->draining;
    /* Forwarding from now on, unless the transaction answers at once with
     * an error of our own (then lingering). */
    c->state = C_FORWARD;
    http_txn_start(&c->txn, m);
    return true;
}

/* Take the next step with whatever the sockets and buffers allow, then
 * set the interest of both sockets. */
static void http_conn_progress(struct http_conn *c)
{
    for (int guard = 0; guard < 64 && transport_open(&c->tr); guard++) {
        enum http_conn_state before = c->state;
        switch (c->state) {
        case C_READ_HEAD:
            if (c->cr.client_eof && !buf_len(&c->cr.in)) {
                http_conn_close(c);
                return;
            }
            if (!conn_try_parse(c)) {
                if (c->state == C_READ_HEAD && c->cr.client_eof) {
                    http_conn_close(c); /* half a head, then EOF */
                    return;
                }
                if (c->state == C_READ_HEAD && !buf_len(&c->cr.in)) {
                    /* Becoming idle (first time since the last request):
                     * the idle timeout replaces whatever timer ran for
                     * the request, e.g. upstream_response. */
                    if (!c->on_idle_list) {
                        idle_add(c);
                        c->head_deadline = 0;
                        http_conn_set_timer(c, c->l->cfg->timeouts.idle_ms);
                    }
                    if (c->w->draining && ev_now(c->w->loop) - c->idle_since >= DRAIN_IDLE_GRACE_MS) {
                        http_conn_close(c);
                        return;
                    }
                }
            }
            break;
        case C_FORWARD:
            http_txn_progress(&c->txn);
            break;
        case C_TUNNEL:
            if (tunnel_pump(c) < 0) {
                http_conn_close(c);
                return;
            }
            break;
        case C_LINGER:
            if (buf_len(&c->cr.out)) {
                if (http_conn_send(c) < 0) {
                    http_conn_close(c);
                    return;
                }
                if (!buf_len(&c->cr.out))
                    transport_shutdown(&c->tr);
            }
            if (c->cr.client_eof && !buf_len(&c->cr.out)) {
                http_conn_close(c);
                return;
            }
            break;
        }
        if (!transport_open(&c->tr))
            return;
        if (c->state == before)
            break;
    }
    if (transport_open(&c->tr))
        http_conn_set_interest(c);
}

/* ---------- events ---------- */

/* A TLS listener's connection finishes its handshake before any request
 * is read: under tls.handshake_timeout, then under client_header like a
 * plain connection that just arrived. Returns true once it is done;
 * false while it goes on, or when it failed (the connection is closed). */
static bool conn_tls_handshake(struct http_conn *c)
{
    int r = transport_tls_handshake(&c->tr);
    if (r < 0) {
        http_conn_close(c);
        return false;
    }
    if (r == 0) {
        http_conn_set_interest(c);
        return false;
    }
    c->tls_handshaking = false;
    /* ALPN chose h2: the connection is HTTP/2 from its first byte, which
     * h2_conn reads itself (it may already sit decrypted in the
     * transport). */
    if (transport_tls_alpn_is_h2(&c->tr)) {
        http_conn_switch_to_h2(c);
        return false;
    }
    c->head_deadline = ev_now(c->w->loop) + c->l->cfg->timeouts.client_header_ms;
    http_conn_set_timer(c, c->l->cfg->timeouts.client_header_ms);
    return true;
}

static void client_event(struct ev_loop *loop, struct ev_io *io, uint32_t ev);

/* A handshake step's turn came (see client_event): take it, and once the
 * handshake is done read what the client sent with its Finished. */
static void handshake_turn(struct ev_loop *loop, struct ev_slow *s)
{
    struct http_conn *c = s->data;
    if (conn_tls_handshake(c))
        client_event(loop, &c->io, EPOLLIN);
}

static void client_event(struct ev_loop *loop, struct ev_io *io, uint32_t ev)
{
    struct http_conn *c = io->data;
    if (c->tls_handshaking) {
        /* A handshake step may cost a private-key operation (a
         * millisecond for RSA-2048): it waits behind the sockets that
         * are ready, so a flood of handshakes cannot hold up requests
         * on established connections (issue 11, item 5). The socket
         * leaves epoll meanwhile; the step sets the interest again. */
        ev_io_stop(loop, &c->io);
        ev_slow_start(loop, &c->hs_slow);
        return;
    }
    ev = transport_ready(&c->tr, ev);
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        if (c->state == C_LINGER) {
            char sink[4096];
            ssize_t n;
            while ((n = transport_recv(&c->tr, sink, sizeof sink)) > 0)
                atomic_fetch_add_explicit(&c->l->ctr->bytes_received, (uint64_t)n, memory_order_relaxed);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                c->cr.client_eof = true;
        } else if (!c->cr.client_eof) {
            if (buf_alloc(&c->cr.in, http_in_cap(c->l->cfg)) < 0) {
                http_conn_close(c);
                return;
            }
            ssize_t n = http_read_into(&c->tr, &c->cr.in);
            if (n > 0) {
                atomic_fetch_add_explicit(&c->l->ctr->bytes_received, (uint64_t)n, memory_order_relaxed);
                if (c->txn.body_clock)
                    c->txn.body_rcvd += (uint64_t)n;
            }
            if (n == 0) {
                c->cr.client_eof = true;
            } else if (n == -1 && errno != EAGAIN) {
                http_conn_close(c);
                return;
            }
            if (n > 0 && (c->state == C_FORWARD || c->state == C_TUNNEL) && c->txn.up && !c->txn.up->connecting)
                http_conn_set_timer(c, c->state == C_TUNNEL ? c->l->cfg->timeouts.idle_ms
                                                            : c->l->cfg->timeouts.upstream_response_ms);
        }
    }
    http_conn_progress(c);
}

/* "client_address: toa": the client that an L4 FullNAT put in the SYN's
 * TOA option, as toa.bpf.c recorded it for this connection (see
 * docs/l4-dataplane.md). The map is opened on first use, once per path per
 * process (workers are processes); while it cannot be opened, or has no
 * entry for the connection, the peer address stays. */
static bool toa_client_of(const struct cfg_listener *cfg, int fd, struct sockaddr_storage *out)
{
    static struct {
        const char *path;
        int fd;
    } maps[8];
    static size_t n_maps;
    static uint64_t warned_ms;
    const char *path = cfg->toa_map ? cfg->toa_map : SLUICE_TOA_PIN_DEFAULT;
    int map = -1;
    for (size_t i = 0; i < n_maps && map < 0; i++)
        if (strcmp(maps[i].path, path) == 0)
            map = maps[i].fd;
    if (map < 0) {
        map = sluice_toa_open(path);
        if (map < 0) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            uint64_t now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
            if (!warned_ms || now - warned_ms > 60000) {
                log_warn("listener %s: client_address toa: cannot open the TOA map %s: %s; using the peer "
                         "address", cfg->name, path, strerror(-map));
                warned_ms = now;
            }
            return false;
        }
        /* A copy: a reload may free the config the path came from. */
        char *copy = n_maps < sizeof maps / sizeof maps[0] ? strdup(path) : NULL;
        if (copy) {
            maps[n_maps].path = copy;
            maps[n_maps++].fd = map;
        }
    }
    int rc = sluice_toa_lookup_sock(map, fd, out) == 0;
    /* An fd we could not keep (more than 8 paths) is not leaked. */
    bool kept = false;
    for (size_t i = 0; i < n_maps && !kept; i++)
        kept = maps[i].fd == map;
    if (!kept)
        close(map);
    return rc;
}

static void conn_timeout(struct ev_loop *loop, struct ev_timer *t)
{
    struct http_conn *c = t->data;
    struct listener_counters *lc = c->l->ctr;
    switch (c->state) {
    case C_READ_HEAD:
        if (c->tls_handshaking) {
            transport_tls_handshake_timed_out(&c->tr); /* counted as a TLS failure, not a request timeout */
            http_conn_close(c);
        } else if (buf_len(&c->cr.in)) {
            atomic_fetch_add_explicit(&lc->timeouts, 1, memory_order_relaxed);
            http_conn_send_error(c, 408, "the request head did not arrive in time");
            http_conn_set_interest(c);
        } else {
            http_conn_close(c);
        }
        return;
    case C_FORWARD:
        http_txn_timeout(&c->txn);
        return;
    case C_TUNNEL:
        atomic_fetch_add_explicit(&lc->timeouts, 1, memory_order_relaxed); /* idle, as a TCP relay counts it */
        http_conn_close(c);
        return;
    case C_LINGER:
        http_conn_close(c);
        return;
    }
}

/* ---------- the carrier of the transaction (proxy/http_carrier.h) ---------- */

static struct http_conn *conn_of(struct http_carrier *cr)
{
    return (struct http_conn *)((char *)cr - offsetof(struct http_conn, cr));
}

static void carrier_send_error(struct http_carrier *cr, int status, const char *reason)
{
    http_conn_send_error(conn_of(cr), status, reason);
}

static int carrier_send(struct http_carrier *cr) { return http_conn_send(conn_of(cr)); }
static void carrier_request_done(struct http_carrier *cr) { http_conn_request_done(conn_of(cr)); }
static void carrier_abort(struct http_carrier *cr) { http_conn_close(conn_of(cr)); }
static void carrier_progress(struct http_carrier *cr) { http_conn_progress(conn_of(cr)); }
static void carrier_set_interest(struct http_carrier *cr) { http_conn_set_interest(conn_of(cr)); }
static void carrier_set_timer(struct http_carrier *cr, uint64_t ms) { http_conn_set_timer(conn_of(cr), ms); }

/* After 101 Switching Protocols: bytes both ways (tunnel_pump), the
 * tunnel's idle timer set by the transaction. */
static void carrier_tunnel(struct http_carrier *cr) { conn_of(cr)->state = C_TUNNEL; }

static const struct http_carrier_ops http1_carrier_ops = {
    .send_error = carrier_send_error,
    .send = carrier_send,
    .request_done = carrier_request_done,
    .abort = carrier_abort,
    .progress = carrier_progress,
    .set_interest = carrier_set_interest,
    .set_timer = carrier_set_timer,
    .tunnel = carrier_tunnel,
};

/* The rest of the accept, once the client is known (proxy_protocol.h). */
static void http_adopt(struct listener_rt *l, int fd, const struct conn_origin *o)
{
    struct worker *w = l->w;
    /* A response that leaves in two writes (head, then body once the
     * backend sends it) must not wait for the client's delayed ACK. */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct http_conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->w = w;
    c->l = l;
    if (!l->tls) {
        transport_plain(&c->tr, fd);
    } else if (transport_tls_server(&c->tr, fd, l->tls) < 0) {
        close(fd);
        free(c);
        return;
    } else {
        c->tls_handshaking = true;
    }
    c->state = C_READ_HEAD;
    c->origin = *o;
    struct sockaddr_storage toa_client;
    if (l->cfg->client_toa && !o->from_header && toa_client_of(l->cfg, fd, &toa_client))
        c->origin.client = toa_client;
    struct sockaddr_storage *ss = &c->origin.client;
    addr_ip_string((struct sockaddr *)ss, c->peer_ip, sizeof c->peer_ip);
    if (ss->ss_family == AF_INET6 && strncmp(c->peer_ip, "::ffff:", 7) == 0)
        memmove(c->peer_ip, c->peer_ip + 7, strlen(c->peer_ip + 7) + 1);
    /* connection_limit keys on the client: after the PROXY header and TOA. */
    if (!ratelimit_conn_admit(l, c->peer_ip, &c->rl_hold)) {
        transport_close(&c->tr, true);
        free(c);
        return;
    }
    ev_timer_init(&c->timer, conn_timeout, c);
    ev_slow_init(&c->hs_slow, handshake_turn, c);
    c->cr.ops = &http1_carrier_ops;
    c->cr.w = w;
    c->cr.l = l;
    c->cr.peer_ip = c->peer_ip;
    c->cr.origin = &c->origin;
    c->cr.tr = &c->tr;
    c->cr.scratch = &http_listener_of(l)->scratch;
    http_txn_init(&c->txn, &c->cr);
    all_add(c);
    ev_io_init(&c->io, fd, client_event, c);
    worker_conn_opened(w, l);
    atomic_fetch_add_explicit(&l->ctr->connections, 1, memory_order_relaxed);
    c->head_deadline = ev_now(w->loop) + l->cfg->timeouts.client_header_ms;
    http_conn_set_timer(c, l->tls ? l->cfg->tls->handshake_timeout_ms : l->cfg->timeouts.client_header_ms);
    idle_add(c);
    ev_io_set(w->loop, &c->io, transport_events(&c->tr, EPOLLIN));
}

static void http_accept(struct listener_rt *l)
{
    struct worker *w = l->w;
    for (int i = 0; i < 64; i++) {
        /* At the limit, take the new connection only if an idle one can
         * make room for it, and evict only once a connection was really
         * waiting. */
        bool full = worker_at_limit(w, l);
        if (full && !http_listener_of(l)->idle_head)
            return;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            worker_accept_failed(l, errno);
            return;
        }
        if (full)
            http_evict_idle(l);
        pp_accept(l, fd, &ss, http_adopt);
    }
}

/* ---------- the listener's operations (proxy/proto.h) ---------- */

static int http_listener_init(struct listener_rt *l, char *err, size_t errlen)
{
    l->proto_state = calloc(1, sizeof(struct http_listener));
    if (!l->proto_state) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static bool http_can_make_room(const struct listener_rt *l)
{
    return http_listener_of(l)->idle_head != NULL;
}

/* While draining, idle clients get a short grace, since a keep-alive
 * client may be sending a request right now, then they are closed. */
static void http_tick(struct listener_rt *l)
{
    struct worker *w = l->w;
    if (!w->draining)
        return;
    h2_listener_tick(l);
    uint64_t now = ev_now(w->loop);
    struct http_listener *hl = http_listener_of(l);
    while (hl->idle_head && now - hl->idle_head->idle_since >= DRAIN_IDLE_GRACE_MS)
        http_conn_close(hl->idle_head);
}

static void http_shutdown(struct listener_rt *l)
{
    struct http_listener *hl = http_listener_of(l);
    while (hl->all)
        http_conn_close(hl->all);
    h2_listener_shutdown(l);
}

static void http_listener_fini(struct listener_rt *l)
{
    free(l->proto_state);
    l->proto_state = NULL;
}

const struct proxy_proto_ops http_proto_ops = {
    .name = "http",
    .init = http_listener_init,
    .accept = http_accept,
    .can_make_room = http_can_make_room,
    .tick = http_tick,
    .shutdown = http_shutdown,
    .fini = http_listener_fini,
};
