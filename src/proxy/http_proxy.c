/* HTTP/1.1 reverse proxy.
 *
 * One client connection (struct http_conn) handles one request at a time;
 * pipelined requests wait in its input buffer and are answered in order.
 * For each request it borrows an upstream connection (struct upstream_conn)
 * from the backend's keep-alive pool or opens one, sends a rewritten head
 * (hop-by-hop headers dropped, X-Forwarded-For/-Proto set), then streams the
 * body through bounded buffers; the response comes back the same way.
 *
 * Buffers and backpressure: a side is read only while the buffer it fills
 * has room, and bytes leave a buffer only when the other socket accepts
 * them, so memory per connection is fixed whatever the body size.
 *
 * Retries: the raw request stays at the front of the client buffer until
 * the response starts, so a connect failure or a reset before the first
 * response byte can replay it on another backend, as long as no body byte
 * had to be dropped to make room (then the request is no longer
 * replayable) and the method is idempotent or nothing was sent.
 */
#include "proxy/worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "lib/buffer.h"
#include "core/log.h"
#include "proxy/toa_lookup.h"
#include "proxy/access_log.h"
#include "lib/http1.h"
#include "proxy/http_route.h"
#include "proxy/pool.h"
#include "proxy/proto.h"
#include "proxy/transport.h"

#define LINGER_MS 2000
#define DRAIN_IDLE_GRACE_MS 1000
#define HEAD_SLACK 2048 /* room for the headers the proxy adds */

enum cstate { C_READ_HEAD, C_FORWARD, C_TUNNEL, C_LINGER };

struct request_log {
    char line[512];
    char referer[256];
    char user_agent[256];
    char host[128];
};

struct http_conn {
    struct worker *w;
    struct listener_rt *l;
    struct transport tr;          /* the client's socket */
    struct ev_io io;
    struct ev_timer timer;
    enum cstate state;
    char peer_ip[48];
    struct buf in;                /* bytes from the client */
    struct buf out;               /* bytes the proxy generates for the client */
    struct buf fwd;               /* the rewritten request head */
    size_t fwd_sent;
    bool client_eof;
    bool close_after;             /* no keep-alive after this response */
    struct http_conn *idle_prev, *idle_next;
    bool on_idle_list;
    struct http_conn *all_prev, *all_next; /* every open connection of the listener, for http_shutdown() */
    uint64_t idle_since;
    uint64_t head_deadline;       /* client_header timeout for the request being read */
    size_t head_scanned;          /* bytes of an incomplete head already parsed */

    /* the request in flight */
    enum http1_method method;
    bool http10;
    bool want_upgrade;
    size_t head_len;              /* raw head at the front of `in` */
    size_t pos;                   /* next body byte to send, as an offset into `in` */
    size_t req_ready;             /* validated body bytes at `pos` not yet sent */
    enum http1_body req_body;
    uint64_t req_length;          /* the request's Content-Length, for a replay */
    uint64_t req_left;            /* Content-Length bytes not yet validated */
    struct http1_chunked req_chunk;
    bool req_done;                /* the whole body went upstream */
    bool req_abandoned;           /* the backend stopped taking the body */
    bool replayable;              /* `in` still holds everything sent */
    bool req_sent_any;
    uint32_t tries;
    uint8_t *tried;               /* per backend of the pool, for retries */
    struct backend_rt *retry_from; /* failed the last try: the next one counts its retry */
    struct pool_rt *pool;
    struct upstream_conn *up;
    bool set_sticky;              /* add Set-Cookie for the chosen backend */
    int sticky_idx;               /* backend named by the client's cookie, or -1 */
    uint64_t key_hash;
    uint64_t started_us;          /* first byte of the request head arrived; 0 = none yet */

    /* the request body deadline (timeouts.client_body), see body_deadline() */
    struct ev_timer body_timer;
    bool body_clock;              /* running: a body is still on its way */
    bool body_paused;             /* our buffer is full: the client cannot send now */
    uint64_t body_since;          /* ev_now() when the head was complete */
    uint64_t body_paused_at;
    uint64_t body_paused_ms;      /* earlier pauses, in total */
    uint64_t body_rcvd;           /* bytes read from the client since the head */

    /* the response in flight */
    bool resp_started;            /* a response byte arrived */
    bool resp_sent;               /* a byte of the final response reached the client */
    bool connect_timed_out;       /* the last upstream attempt failed by timing out */
    bool resp_head_done;
    enum http1_body resp_body;
    uint64_t resp_left;
    struct http1_chunked resp_chunk;
    size_t resp_ready;            /* validated body bytes at the front of up->in */
    bool resp_done;
    int status;
    uint64_t resp_bytes;
    bool resp_keep_upstream;
    bool tunnel_up_eof, tunnel_client_eof;

    struct request_log *log;      /* only when an access log is on */
};

static void conn_progress(struct http_conn *c);
static void conn_close(struct http_conn *c);
static void body_clock_start(struct http_conn *c);
static void body_clock_update(struct http_conn *c);
static void body_clock_stop(struct http_conn *c);
static void body_timeout(struct ev_loop *loop, struct ev_timer *t);
static void request_start_upstream(struct http_conn *c);
static void upstream_event(struct ev_loop *loop, struct ev_io *io, uint32_t ev);

/* upstream_failed() reason of a connect timeout, recognised by address:
 * if it is the last failure, the client gets 504 rather than 502. */
static const char connect_timeout_reason[] = "connect timed out";

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static size_t in_cap(const struct cfg_listener *cfg)
{
    return cfg->limits.buffer_size > cfg->limits.max_header_size ? cfg->limits.buffer_size
                                                                  : cfg->limits.max_header_size;
}

static struct http1_limits limits_of(const struct cfg_listener *cfg)
{
    return (struct http1_limits){
        .max_request_line = cfg->limits.max_request_line,
        .max_head = cfg->limits.max_header_size,
        .max_headers = cfg->limits.max_headers,
    };
}

/* ---------- per listener: every connection, and the idle ones ---------- */

/* l->proto_state of an http listener. */
struct http_listener {
    /* Every open connection: http_shutdown() closes the ones still busy
     * when the drain deadline passes rather than leak them. */
    struct http_conn *all;
    /* Idle connections, oldest first (see idle_add). */
    struct http_conn *idle_head, *idle_tail;
    /* The parse target, reused for every message of the listener. */
    struct http1_message scratch;
};

static struct http_listener *listener_state(const struct listener_rt *l)
{
    return l->proto_state;
}

static void all_add(struct http_conn *c)
{
    struct http_listener *hl = listener_state(c->l);
    c->all_prev = NULL;
    c->all_next = hl->all;
    if (hl->all)
        hl->all->all_prev = c;
    hl->all = c;
}

static void all_remove(struct http_conn *c)
{
    struct http_listener *hl = listener_state(c->l);
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
    struct http_listener *hl = listener_state(c->l);
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
    struct http_listener *hl = listener_state(c->l);
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
    struct http_conn *c = listener_state(l)->idle_head;
    if (!c)
        return 0;
    conn_close(c);
    return 1;
}

/* ---------- small helpers ---------- */

static void count_response(struct http_conn *c, int status)
{
    int cls = status / 100;
    if (cls < 1 || cls > 5)
        cls = 0;
    atomic_fetch_add_explicit(&c->l->ctr->responses[cls], 1, memory_order_relaxed);
}

static void set_timer(struct http_conn *c, uint64_t ms)
{
    ev_timer_start(c->w->loop, &c->timer, ms);
}

static void copy_slice(char *dst, size_t cap, struct http1_slice s)
{
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    memcpy(dst, s.p, n);
    dst[n] = '\0';
}

static void capture_log_fields(struct http_conn *c, const struct http1_message *m, const char *raw)
{
    if (!c->l->alog)
        return;
    if (!c->log && !(c->log = malloc(sizeof *c->log)))
        return;
    const char *eol = memchr(raw, '\r', m->head_len);
    copy_slice(c->log->line, sizeof c->log->line,
               (struct http1_slice){raw, eol ? (size_t)(eol - raw) : 0});
    const struct http1_header *h = http1_find_header(m, "Referer");
    copy_slice(c->log->referer, sizeof c->log->referer, h ? h->value : (struct http1_slice){"", 0});
    h = http1_find_header(m, "User-Agent");
    copy_slice(c->log->user_agent, sizeof c->log->user_agent, h ? h->value : (struct http1_slice){"", 0});
    copy_slice(c->log->host, sizeof c->log->host, m->host);
}

/* A request refused before it was parsed (400, 414, 431, or 408 for a
 * head that did not arrive): log its first line as far as it came, so the
 * access log shows what was refused. */
static void capture_rejected_line(struct http_conn *c)
{
    if (!c->l->alog)
        return;
    if (!c->log && !(c->log = calloc(1, sizeof *c->log)))
        return;
    const char *raw = buf_len(&c->in) ? buf_head(&c->in) : "";
    size_t n = 0, len = buf_len(&c->in);
    while (n < len && raw[n] != '\r' && raw[n] != '\n')
        n++;
    copy_slice(c->log->line, sizeof c->log->line, (struct http1_slice){raw, n});
    c->log->referer[0] = c->log->user_agent[0] = c->log->host[0] = '\0';
}

/* reason: why Sluice answered itself (send_error), NULL for a response
 * from the backend. */
static void write_access_log(struct http_conn *c, const char *reason)
{
    if (!c->l->alog)
        return;
    struct access_entry e = {
        .client_ip = c->peer_ip,
        .request_line = c->log ? c->log->line : NULL,
        .referer = c->log ? c->log->referer : NULL,
        .user_agent = c->log ? c->log->user_agent : NULL,
        .host = c->log ? c->log->host : NULL,
        .upstream = c->up ? c->up->b->cfg->addr.text : NULL,
        .listener = c->l->cfg->name,
        .reason = reason,
        .status = c->status,
        .bytes_sent = c->resp_bytes,
        .duration_us = c->started_us ? now_us() - c->started_us : 0,
    };
    access_log_write(c->l->alog, &e);
}

static const char *status_text(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}

/* Answer with an error of our own and close once it is sent. */
static void send_error(struct http_conn *c, int status, const char *reason)
{
    log_debug("client %s: %d %s: %s", c->peer_ip, status, status_text(status), reason);
    body_clock_stop(c);
    /* Part of a response already reached the client (the final head, or
     * some of an interim one): an error message now would be read as the
     * rest of it. Closing is the only unambiguous signal left. */
    if (c->resp_sent || c->out.start) {
        conn_close(c);
        return;
    }
    if (buf_alloc(&c->out, c->l->cfg->limits.max_header_size + HEAD_SLACK) < 0) {
        conn_close(c);
        return;
    }
    char body[256];
    int blen = snprintf(body, sizeof body, "%d %s: %s\n", status, status_text(status), reason);
    char head[256];
    int hlen = snprintf(head, sizeof head,
                        "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                        "Connection: close\r\nServer: sluice\r\n\r\n",
                        status, status_text(status), blen);
    c->out.start = c->out.end = 0; /* nothing else is owed to the client */
    buf_append(&c->out, head, (size_t)hlen);
    if (c->method != HTTP1_M_HEAD)
        buf_append(&c->out, body, (size_t)blen);
    c->status = status;
    c->resp_bytes = (uint64_t)blen;
    count_response(c, status);
    if (status >= 400 && status < 500)
        atomic_fetch_add_explicit(&c->l->ctr->rejected, 1, memory_order_relaxed);
    if (!c->log || !c->log->line[0])
        capture_rejected_line(c); /* refused before handle_request() took its fields */
    write_access_log(c, reason);
    c->close_after = true;
    c->state = C_LINGER;
    /* Whatever else the client sent is not a request we will read. */
    c->in.start = c->in.end = 0;
    set_timer(c, LINGER_MS);
}

/* ---------- building the upstream request head ---------- */

static int fwd_put(struct buf *b, const char *p, size_t n)
{
    return buf_append(b, p, n);
}

static int fwd_puts(struct buf *b, const char *s) { return fwd_put(b, s, strlen(s)); }

static bool name_is(struct http1_slice n, const char *lit)
{
    return n.len == strlen(lit) && strncasecmp(n.p, lit, n.len) == 0;
}

/* Decimal digits of v (the hot path has no use for printf's generality). */
static int put_uint(struct buf *o, uint64_t v)
{
    char digits[20];
    size_t n = 0;
    do {
        digits[sizeof digits - ++n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return buf_append(o, digits + sizeof digits - n, n);
}

static int build_request_head(struct http_conn *c, const struct http1_message *m)
{
    struct buf *f = &c->fwd;
    if (buf_alloc(f, c->l->cfg->limits.max_header_size + HEAD_SLACK) < 0)
        return -1;
    f->start = f->end = 0;
    int rc = 0;
    rc |= fwd_put(f, m->method_str.p, m->method_str.len);
    rc |= fwd_puts(f, " ");
    /* An absolute-form target goes upstream in origin form with its
     * authority as the Host, which is how it was routed. */
    bool absolute = m->authority.len && m->method != HTTP1_M_CONNECT;
    struct http1_slice path = http_request_path(m);
    if (absolute && (!path.len || path.p[0] != '/'))
        rc |= fwd_puts(f, "/");
    rc |= fwd_put(f, path.p, path.len);
    rc |= fwd_puts(f, c->http10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
    if (absolute) {
        rc |= fwd_puts(f, "Host: ");
        rc |= fwd_put(f, m->authority.p, m->authority.len);
        rc |= fwd_puts(f, "\r\n");
    }
    const struct http1_header *xff = NULL;
    uint8_t hop[HTTP1_MAX_HEADERS_CAP];
    http1_mark_hop_by_hop(m, hop);
    bool drop_underscores = !c->l->cfg->allow_underscores;
    uint64_t dropped = 0;
    for (size_t i = 0; i < m->n_headers; i++) {
        const struct http1_header *h = &m->headers[i];
        if (drop_underscores && http1_name_has_underscore(h->name)) {
            /* What nginx does by default: "X_Forwarded_For" or
             * "Transfer_Encoding" would reach a CGI/WSGI/PHP application
             * as the field whose '-' it replaces, one we rewrote or framed
             * the request by (see http1_name_has_underscore). */
            dropped++;
            log_debug("client %s: dropped request header field \"%.*s\" (its name has '_')", c->peer_ip,
                      (int)h->name.len, h->name.p);
            continue;
        }
        if (hop[i])
            continue;
        if (absolute && name_is(h->name, "Host"))
            continue; /* replaced by the target's authority above */
        if (name_is(h->name, "Content-Length"))
            continue; /* sent once, normalized, below */
        if (name_is(h->name, "X-Forwarded-For")) {
            xff = h; /* merged below, with the client's address last */
            continue;
        }
        if (name_is(h->name, "X-Forwarded-Proto"))
            continue; /* ours, not the client's, is the truth */
        rc |= fwd_put(f, h->name.p, h->name.len);
        rc |= fwd_puts(f, ": ");
        rc |= fwd_put(f, h->value.p, h->value.len);
        rc |= fwd_puts(f, "\r\n");
    }
    rc |= fwd_puts(f, "X-Forwarded-For: ");
    if (xff) {
        /* Every X-Forwarded-For line, in order, joined by commas. */
        for (size_t i = 0; i < m->n_headers; i++) {
            const struct http1_header *h = &m->headers[i];
            if (name_is(h->name, "X-Forwarded-For") && h->value.len) {
                rc |= fwd_put(f, h->value.p, h->value.len);
                rc |= fwd_puts(f, ", ");
            }
        }
    }
    rc |= fwd_puts(f, c->peer_ip);
    rc |= fwd_puts(f, "\r\nX-Forwarded-Proto: http\r\n");
    /* The parser accepted "5, 5" or two equal Content-Length fields (RFC
     * 9110 §8.6); the backend gets exactly one plain value, so it cannot
     * frame the body differently. */
    if (m->body == HTTP1_BODY_LENGTH) {
        rc |= fwd_puts(f, "Content-Length: ");
        rc |= put_uint(f, m->content_length);
        rc |= fwd_puts(f, "\r\n");
    }
    if (m->body == HTTP1_BODY_CHUNKED)
        rc |= fwd_puts(f, "Transfer-Encoding: chunked\r\n");
    if (c->want_upgrade) {
        const struct http1_header *up = http1_find_header(m, "Upgrade");
        rc |= fwd_puts(f, "Connection: upgrade\r\nUpgrade: ");
        rc |= fwd_put(f, up->value.p, up->value.len);
        rc |= fwd_puts(f, "\r\n");
    } else if (c->http10) {
        rc |= fwd_puts(f, "Connection: keep-alive\r\n");
    }
    rc |= fwd_puts(f, "\r\n");
    if (dropped)
        atomic_fetch_add_explicit(&c->l->ctr->underscore_dropped[0], dropped, memory_order_relaxed);
    return rc ? -1 : 0;
}

/* A sticky cookie naming a backend that can still take the session. */
static int sticky_backend(struct worker *w, struct pool_rt *p, const struct http1_message *m)
{
    struct http1_slice v;
    if (!http_find_cookie(m, p->cfg->sticky_cookie, &v) || v.len != 16)
        return -1;
    for (size_t i = 0; i < p->n; i++) {
        if (memcmp(p->b[i].sticky_token, v.p, 16) != 0)
            continue;
        /* Draining keeps its sessions; down, disabled or ejected does not. */
        struct shared_backend *sb = p->b[i].sh;
        if (p->weights[i] ||
            (atomic_load(&sb->admin) == BACKEND_DRAINING && atomic_load(&sb->health) == HEALTH_UP &&
             atomic_load(&sb->ejected_until_ms) <= ev_now(w->loop)))
            return (int)i;
        return -1;
    }
    return -1;
}

/* ---------- request handling ---------- */

static void request_reset(struct http_conn *c)
{
    c->head_len = c->pos = c->req_ready = 0;
    c->req_left = 0;
    c->req_done = false;
    c->req_abandoned = false;
    c->replayable = true;
    c->req_sent_any = false;
    c->tries = 0;
    c->retry_from = NULL;
    c->pool = NULL;
    c->set_sticky = false;
    c->resp_started = c->resp_head_done = c->resp_done = false;
    c->resp_sent = false;
    c->connect_timed_out = false;
    c->req_length = 0;
    c->resp_ready = 0;
    c->resp_left = 0;
    c->status = 0;
    c->resp_bytes = 0;
    c->want_upgrade = false;
    c->fwd_sent = 0;
    c->started_us = 0;
    body_clock_stop(c);
    /* A request refused before parsing must not be logged with the fields
     * of the one before it on this connection. */
    if (c->log)
        c->log->line[0] = c->log->referer[0] = c->log->user_agent[0] = c->log->host[0] = '\0';
}

static void handle_request(struct http_conn *c, struct http1_message *m)
{
    struct worker *w = c->w;
    atomic_fetch_add_explicit(&c->l->ctr->requests, 1, memory_order_relaxed);
    c->method = m->method;
    c->http10 = m->version_minor == 0;
    c->head_len = m->head_len;
    c->pos = m->head_len;
    c->req_body = m->body;
    c->req_left = m->body == HTTP1_BODY_LENGTH ? m->content_length : 0;
    c->req_length = c->req_left;
    if (m->body == HTTP1_BODY_CHUNKED)
        http1_chunked_init(&c->req_chunk);
    c->req_done = m->body == HTTP1_BODY_NONE || (m->body == HTTP1_BODY_LENGTH && m->content_length == 0);
    /* Not h2c: a cleartext HTTP/2 connection to the backend would carry
     * requests this proxy never sees or routes. Without want_upgrade the
     * Upgrade header (hop-by-hop) is dropped and the request is plain. */
    const struct http1_header *upg = http1_find_header(m, "Upgrade");
    c->want_upgrade = m->upgrade && upg && !http1_has_token(upg->value, "h2c");
    c->close_after = !m->keep_alive || w->draining;
    capture_log_fields(c, m, buf_head(&c->in));

    if (m->method == HTTP1_M_CONNECT) {
        send_error(c, 501, "CONNECT is not supported");
        return;
    }
    int pool = http_route(c->l->cfg, m);
    if (pool < 0) {
        send_error(c, 404, "no route for this host and path");
        return;
    }
    struct pool_rt *p = &w->pools[pool];
    c->pool = p;
    if (build_request_head(c, m) < 0) {
        send_error(c, 431, "request head too large after rewriting");
        return;
    }
    c->key_hash = p->cfg->algorithm == LB_HASH ? http_key_hash(p->cfg, m, c->peer_ip) : 0;
    free(c->tried);
    c->tried = calloc(p->n, 1);
    if (!c->tried) {
        send_error(c, 503, "out of memory");
        return;
    }
    c->sticky_idx = p->cfg->sticky_cookie ? sticky_backend(w, p, m) : -1;
    c->state = C_FORWARD;
    if (!c->req_done)
        body_clock_start(c);
    request_start_upstream(c);
}

/* Pick a backend that has not been tried for this request: the sticky
 * one first if the client has a valid cookie. */
static int request_pick(struct http_conn *c)
{
    if (c->tries == 0 && c->sticky_idx >= 0)
        return c->sticky_idx;
    return pool_pick(c->w, c->pool, c->key_hash, c->tried);
}

static void request_fail(struct http_conn *c, int status, const char *why)
{
    if (status == 503)
        atomic_fetch_add_explicit(&c->l->ctr->no_backend, 1, memory_order_relaxed);
    send_error(c, status, why);
}

static void request_start_upstream(struct http_conn *c)
{
    struct pool_rt *p = c->pool;
    for (;;) {
        if (c->tries > p->cfg->retries) {
            if (c->connect_timed_out)
                request_fail(c, 504, "no backend accepted the connection in time");
            else
                request_fail(c, 502, "no backend answered");
            return;
        }
        int idx = request_pick(c);
        if (idx < 0) {
            if (c->connect_timed_out)
                request_fail(c, 504, "no backend accepted the connection in time");
            else
                request_fail(c, c->tries ? 502 : 503,
                             c->tries ? "every backend tried failed" : "no backend is available");
            return;
        }
        struct backend_rt *b = &p->b[idx];
        c->tried[idx] = 1;
        c->tries++;
        if (c->retry_from) /* counted on the backend that failed, as the help text says */
            atomic_fetch_add_explicit(&c->retry_from->ctr->retries, 1, memory_order_relaxed);
        c->retry_from = NULL;
        c->set_sticky = p->cfg->sticky_cookie && idx != c->sticky_idx;
        struct upstream_conn *u = upstream_get(c->w, p, b, upstream_event, c);
        if (!u) {
            c->connect_timed_out = false;
            atomic_fetch_add_explicit(&b->ctr->connect_failures, 1, memory_order_relaxed);
            backend_report(c->w, p, b, false);
            c->retry_from = b;
            continue;
        }
        c->up = u;
        p->outstanding[idx]++;
        p->active[idx]++;
        c->fwd_sent = 0;
        set_timer(c, u->connecting ? c->l->cfg->timeouts.connect_ms : c->l->cfg->timeouts.upstream_response_ms);
        return;
    }
}

/* Detach the upstream from the request: keep it pooled or close it. */
static void request_detach_upstream(struct http_conn *c, bool reusable)
{
    struct upstream_conn *u = c->up;
    if (!u)
        return;
    struct pool_rt *p = c->pool;
    size_t idx = u->b->index;
    if (p->outstanding[idx])
        p->outstanding[idx]--;
    if (p->active[idx])
        p->active[idx]--;
    c->up = NULL;
    if (reusable)
        upstream_release(u);
    else
        upstream_close(u);
}

/* The upstream failed before any response byte: retry or give up. */
static void upstream_failed(struct http_conn *c, bool connect_failure, const char *why)
{
    /* The latest failure decides between 502 and 504 if nothing is left to try. */
    c->connect_timed_out = why == connect_timeout_reason;
    struct upstream_conn *u = c->up;
    struct backend_rt *b = u->b;
    bool was_reused = u->reused;
    if (connect_failure)
        atomic_fetch_add_explicit(&b->ctr->connect_failures, 1, memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&b->ctr->upstream_errors, 1, memory_order_relaxed);
    /* A pooled connection the server had already closed says nothing
     * about the backend's health. */
    if (!was_reused)
        backend_report(c->w, c->pool, b, false);
    request_detach_upstream(c, false);
    bool never_sent = connect_failure || !c->req_sent_any;
    bool may_retry = c->replayable && !c->resp_started &&
                     (never_sent || http1_method_idempotent(c->method));
    if (!may_retry) {
        log_debug("upstream %s failed (%s), request not retryable", b->cfg->addr.text, why);
        request_fail(c, 502, why);
        return;
    }
    if (was_reused) {
        c->tries--; /* a stale pooled connection does not use up a try... */
        c->tried[b->index] = 0; /* ...nor rule out its backend */
    } else {
        c->retry_from = b;
    }
    /* Replay from the start of the body. */
    c->pos = c->head_len;
    c->req_ready = 0;
    c->req_sent_any = false;
    c->req_done = c->req_body == HTTP1_BODY_NONE;
    if (c->req_body == HTTP1_BODY_LENGTH) {
        /* Still replayable, so every body byte is in the buffer again:
         * none of it has been validated for this attempt. (The raw head
         * may be gone, see request_compact(), so not re-parsed.) */
        c->req_left = c->req_length;
        c->req_done = c->req_left == 0;
    } else if (c->req_body == HTTP1_BODY_CHUNKED) {
        http1_chunked_init(&c->req_chunk);
    }
    request_start_upstream(c);
}

/* ---------- moving bytes ---------- */

static ssize_t read_into(struct transport *t, struct buf *b)
{
    size_t room;
    char *tail = buf_tail(b, &room);
    if (!room)
        return -2;
    ssize_t n = transport_recv(t, tail, room);
    if (n > 0)
        b->end += (size_t)n;
    return n;
}

/* Send up to len bytes; returns bytes sent, 0 if it would block, -1 on error. */
static ssize_t send_some(struct transport *t, const char *p, size_t len)
{
    ssize_t n = transport_send1(t, p, len);
    if (n < 0)
        return errno == EAGAIN ? 0 : -1;
    return n;
}

/* Validate newly arrived request body bytes so they may be sent. */
static int request_body_validate(struct http_conn *c)
{
    size_t avail = buf_len(&c->in) - c->pos - c->req_ready;
    if (!avail || c->req_done || c->req_abandoned)
        return 0;
    const char *p = buf_head(&c->in) + c->pos + c->req_ready;
    if (c->req_body == HTTP1_BODY_LENGTH) {
        size_t take = avail < c->req_left ? avail : (size_t)c->req_left;
        c->req_ready += take;
        c->req_left -= take;
    } else if (c->req_body == HTTP1_BODY_CHUNKED && !c->req_chunk.done) {
        ssize_t n = http1_chunked_feed(&c->req_chunk, p, avail);
        if (n < 0)
            return -1;
        c->req_ready += (size_t)n;
    }
    return 0;
}

static bool request_body_complete(const struct http_conn *c)
{
    if (c->req_body == HTTP1_BODY_NONE)
        return true;
    if (c->req_ready)
        return false;
    if (c->req_body == HTTP1_BODY_LENGTH)
        return c->req_left == 0;
    return c->req_chunk.done;
}

/* The client closed its side before the body was complete, and every body
 * byte it did send has gone upstream: the request can never complete. */
static bool request_body_truncated(const struct http_conn *c)
{
    return c->client_eof && !c->req_done && !c->req_abandoned && !c->resp_started && !c->req_ready &&
           c->pos == buf_len(&c->in) && !request_body_complete(c);
}

/* Send the rewritten head, then body bytes, to the upstream. */
static int upstream_send(struct http_conn *c)
{
    struct upstream_conn *u = c->up;
    if (!u || u->connecting || c->req_abandoned)
        return 0;
    if (c->fwd_sent < buf_len(&c->fwd)) {
        /* Head and the first body bytes in one system call. */
        struct iovec iov[2] = {
            {buf_head(&c->fwd) + c->fwd_sent, buf_len(&c->fwd) - c->fwd_sent},
            {buf_head(&c->in) + c->pos, c->req_ready},
        };
        ssize_t n = transport_send(&u->tr, iov, c->req_ready ? 2 : 1);
        if (n < 0)
            return errno == EAGAIN ? 0 : -1;
        if (!c->req_sent_any)
            atomic_fetch_add_explicit(&u->b->ctr->requests, 1, memory_order_relaxed);
        c->req_sent_any = true;
        atomic_fetch_add_explicit(&u->b->ctr->bytes_sent, (uint64_t)n, memory_order_relaxed);
        size_t head_left = buf_len(&c->fwd) - c->fwd_sent;
        if ((size_t)n <= head_left) {
            c->fwd_sent += (size_t)n;
            return 0;
        }
        c->fwd_sent += head_left;
        c->pos += (size_t)n - head_left;
        c->req_ready -= (size_t)n - head_left;
    }
    while (c->req_ready) {
        ssize_t n = send_some(&u->tr, buf_head(&c->in) + c->pos, c->req_ready);
        if (n <= 0)
            return (int)n;
        atomic_fetch_add_explicit(&u->b->ctr->bytes_sent, (uint64_t)n, memory_order_relaxed);
        c->pos += (size_t)n;
        c->req_ready -= (size_t)n;
    }
    if (!c->req_done && request_body_complete(c))
        c->req_done = true;
    return 0;
}

/* Make room in the client buffer for more body: drop what was sent. */
static void request_compact(struct http_conn *c)
{
    if (c->state != C_FORWARD && c->state != C_TUNNEL)
        return;
    if (!buf_full(&c->in) || c->pos == 0)
        return;
    /* Dropping the raw head costs nothing (the rewritten one is in fwd);
     * dropping body bytes means a retry could not send them again. */
    if (c->pos > c->head_len)
        c->replayable = false;
    buf_consume(&c->in, c->pos);
    c->pos = 0;
    c->head_len = 0;
}

/* ---------- the response ---------- */

static int put_head_line(struct buf *o, struct http1_slice name, struct http1_slice value)
{
    int rc = buf_append(o, name.p, name.len);
    rc |= buf_append(o, ": ", 2);
    rc |= buf_append(o, value.p, value.len);
    rc |= buf_append(o, "\r\n", 2);
    return rc;
}

/* Status line and end-to-end header fields of a response, without the
 * final empty line. */
static int put_status_and_headers(struct buf *o, const struct http1_message *m, struct listener_rt *l)
{
    char line[16] = "HTTP/1.1 000 ";
    line[9] = (char)('0' + m->status / 100);
    line[10] = (char)('0' + m->status / 10 % 10);
    line[11] = (char)('0' + m->status % 10);
    int rc = buf_append(o, line, 13);
    rc |= buf_append(o, m->reason.p, m->reason.len);
    rc |= buf_append(o, "\r\n", 2);
    bool has_cl = false;
    uint8_t hop[HTTP1_MAX_HEADERS_CAP];
    http1_mark_hop_by_hop(m, hop);
    for (size_t i = 0; i < m->n_headers; i++) {
        const struct http1_header *h = &m->headers[i];
        if (hop[i])
            continue;
        if (http1_is_framing_lookalike(h->name)) {
            /* "Transfer_Encoding: chunked" beside the Content-Length we
             * set: harmless to a client that reads names as they are,
             * a second framing to one that folds '_' into '-'. It has no
             * legitimate use, so it goes whatever the listener allows in
             * requests; other '_' names in responses pass. */
            atomic_fetch_add_explicit(&l->ctr->underscore_dropped[1], 1, memory_order_relaxed);
            continue;
        }
        if (name_is(h->name, "Content-Length")) {
            has_cl = true; /* sent once, normalized, below */
            continue;
        }
        rc |= put_head_line(o, h->name, h->value);
    }
    /* One plain value even if the backend sent "5, 5" or the field twice,
     * so the client cannot frame the body differently than we did. (Kept
     * on bodiless responses too: there it describes the selected resource.) */
    if (has_cl) {
        rc |= buf_append(o, "Content-Length: ", 16);
        rc |= put_uint(o, m->content_length);
        rc |= buf_append(o, "\r\n", 2);
    }
    return rc;
}

static int build_response_head(struct http_conn *c, const struct http1_message *m)
{
    struct buf *o = &c->out;
    if (buf_alloc(o, c->l->cfg->limits.max_header_size + HEAD_SLACK) < 0)
        return -1;
    int rc = put_status_and_headers(o, m, c->l);
    if (m->status == 101) {
        const struct http1_header *up = http1_find_header(m, "Upgrade");
        rc |= buf_append(o, "Connection: upgrade\r\n", 21);
        if (up)
            rc |= put_head_line(o, (struct http1_slice){"Upgrade", 7}, up->value);
    } else if (m->status >= 200) {
        if (m->body == HTTP1_BODY_CHUNKED)
            rc |= buf_append(o, "Transfer-Encoding: chunked\r\n", 28);
        if (c->close_after)
            rc |= buf_append(o, "Connection: close\r\n", 19);
        else if (c->http10)
            rc |= buf_append(o, "Connection: keep-alive\r\n", 24);
        if (c->set_sticky && c->up) {
            char cookie[160];
            int cn = snprintf(cookie, sizeof cookie, "Set-Cookie: %s=%s; Path=/; HttpOnly\r\n",
                              c->pool->cfg->sticky_cookie, c->up->b->sticky_token);
            rc |= buf_append(o, cookie, (size_t)cn);
        }
    }
    rc |= buf_append(o, "\r\n", 2);
    return rc ? -1 : 0;
}

/* Parse the response head in up->in. Returns 0 (parsed, or need more bytes
 * or more room), -1 on a bad response. An interim (1xx) response is relayed
 * and consumed, leaving resp_head_done false: call again while that makes
 * progress, since the final head may already be in the buffer behind it. */
static int response_parse_head(struct http_conn *c)
{
    struct upstream_conn *u = c->up;
    struct cfg_listener const *lc = c->l->cfg;
    struct http1_limits lim = limits_of(lc);
    struct http1_message *m = &listener_state(c->l)->scratch;
    enum http1_result r = http1_parse_response(buf_head(&u->in), buf_len(&u->in), &lim, c->method, m);
    if (r == HTTP1_INCOMPLETE)
        return buf_full(&u->in) ? -1 : 0;
    if (r == HTTP1_ERROR) {
        log_warn("bad response from %s: %s", u->b->cfg->addr.text, m->error_reason);
        return -1;
    }
    if (m->status == 101 && !c->want_upgrade)
        return -1;
    if (m->body == HTTP1_BODY_CHUNKED && c->http10)
        return -1; /* an HTTP/1.0 client cannot read chunked framing */
    if (m->status >= 100 && m->status < 200 && m->status != 101) {
        /* Interim response (100 Continue, 103 Early Hints): pass it on with
         * its end-to-end fields (RFC 9110 §15.2), wait for the final one.
         * HTTP/1.0 clients do not expect 1xx: drop it. */
        if (buf_alloc(&c->out, lc->limits.max_header_size + HEAD_SLACK) < 0)
            return -1;
        if (!c->http10) {
            /* A backend streaming 1xx faster than the client reads waits
             * for room (no progress now; the client's EPOLLOUT resumes). */
            if (buf_room(&c->out) < m->head_len + m->n_headers + 64)
                return 0;
            /* The rewrite adds at most one byte per field (": " after a bare
             * ':'), so with the room checked above this cannot fail half-way. */
            if (put_status_and_headers(&c->out, m, c->l) || buf_append(&c->out, "\r\n", 2))
                return -1;
        }
        buf_consume(&u->in, m->head_len);
        return 0;
    }
    c->status = m->status;
    if (m->body == HTTP1_BODY_UNTIL_CLOSE || !c->req_done)
        c->close_after = true;
    c->resp_keep_upstream = m->keep_alive && m->body != HTTP1_BODY_UNTIL_CLOSE && m->status != 101;
    if (build_response_head(c, m) < 0)
        return -1;
    buf_consume(&u->in, m->head_len);
    c->resp_head_done = true;
    c->resp_body = m->body;
    c->resp_left = m->body == HTTP1_BODY_LENGTH ? m->content_length : 0;
    if (m->body == HTTP1_BODY_CHUNKED)
        http1_chunked_init(&c->resp_chunk);
    c->resp_done = m->body == HTTP1_BODY_NONE || (m->body == HTTP1_BODY_LENGTH && m->content_length == 0);
    count_response(c, m->status);
    int cls = m->status / 100;
    atomic_fetch_add_explicit(&u->b->ctr->responses[cls >= 1 && cls <= 5 ? cls : 0], 1, memory_order_relaxed);
    backend_report(c->w, c->pool, u->b, m->status < 500);
    if (m->status == 101) {
        c->state = C_TUNNEL;
        c->resp_done = true;
        set_timer(c, lc->timeouts.idle_ms);
    }
    return 0;
}

/* Parse response heads while that makes progress: interim responses and
 * the final head may arrive in one read. Returns -1 on a bad response. */
static int response_read_heads(struct http_conn *c)
{
    struct upstream_conn *u = c->up;
    while (!c->resp_head_done && buf_len(&u->in)) {
        size_t had = buf_len(&u->in);
        if (response_parse_head(c) < 0)
            return -1;
        if (buf_len(&u->in) == had)
            break; /* incomplete, or waiting for room in c->out */
    }
    return 0;
}

static int response_body_validate(struct http_conn *c)
{
    struct upstream_conn *u = c->up;
    size_t avail = buf_len(&u->in) - c->resp_ready;
    if (!avail || c->resp_done)
        return 0;
    const char *p = buf_head(&u->in) + c->resp_ready;
    switch (c->resp_body) {
    case HTTP1_BODY_LENGTH: {
        size_t take = avail < c->resp_left ? avail : (size_t)c->resp_left;
        c->resp_ready += take;
        c->resp_left -= take;
        if (!c->resp_left)
            c->resp_done = true;
        break;
    }
    case HTTP1_BODY_CHUNKED: {
        ssize_t n = http1_chunked_feed(&c->resp_chunk, p, avail);
        if (n < 0)
            return -1;
        c->resp_ready += (size_t)n;
        if (c->resp_chunk.done)
            c->resp_done = true;
        break;
    }
    case HTTP1_BODY_UNTIL_CLOSE:
        c->resp_ready += avail;
        break;
    case HTTP1_BODY_NONE:
        break;
    }
    return 0;
}

/* Write c->out, then response body bytes, to the client. */
static int client_send(struct http_conn *c)
{
    if (buf_len(&c->out)) {
        struct upstream_conn *u = c->up;
        size_t body = u && c->resp_head_done ? c->resp_ready : 0;
        struct iovec iov[2] = {{buf_head(&c->out), buf_len(&c->out)}, {u ? buf_head(&u->in) : NULL, body}};
        ssize_t n = transport_send(&c->tr, iov, body ? 2 : 1);
        if (n < 0)
            return errno == EAGAIN ? 0 : -1;
        atomic_fetch_add_explicit(&c->l->ctr->bytes_sent, (uint64_t)n, memory_order_relaxed);
        if (n > 0 && c->resp_head_done)
            c->resp_sent = true;
        size_t out_len = buf_len(&c->out);
        if ((size_t)n < out_len) {
            buf_consume(&c->out, (size_t)n);
            return 0;
        }
        buf_consume(&c->out, out_len);
        size_t b = (size_t)n - out_len;
        if (b) {
            buf_consume(&u->in, b);
            c->resp_ready -= b;
            c->resp_bytes += b;
        }
    }
    struct upstream_conn *u = c->up;
    while (u && c->resp_head_done && c->resp_ready) {
        ssize_t n = send_some(&c->tr, buf_head(&u->in), c->resp_ready);
        if (n <= 0)
            return (int)n;
        buf_consume(&u->in, (size_t)n);
        c->resp_ready -= (size_t)n;
        c->resp_bytes += (size_t)n;
        atomic_fetch_add_explicit(&c->l->ctr->bytes_sent, (uint64_t)n, memory_order_relaxed);
    }
    return 0;
}

/* ---------- the tunnel (after 101 Switching Protocols) ---------- */

static int tunnel_pump(struct http_conn *c)
{
    struct upstream_conn *u = c->up;
    /* client -> upstream: everything after the request head */
    size_t pending = buf_len(&c->in) - c->pos;
    while (pending) {
        ssize_t n = send_some(&u->tr, buf_head(&c->in) + c->pos, pending);
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        atomic_fetch_add_explicit(&u->b->ctr->bytes_sent, (uint64_t)n, memory_order_relaxed);
        c->pos += (size_t)n;
        pending -= (size_t)n;
    }
    if (c->pos == buf_len(&c->in)) {
        c->in.start = c->in.end = 0;
        c->pos = 0;
        if (c->client_eof && !c->tunnel_client_eof) {
            transport_shutdown(&u->tr);
            c->tunnel_client_eof = true;
        }
    } else {
        request_compact(c);
    }
    /* upstream -> client */
    c->resp_ready = buf_len(&u->in);
    if (client_send(c) < 0)
        return -1;
    if (!buf_len(&u->in) && !buf_len(&c->out) && u->eof && !c->tunnel_up_eof) {
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
    buf_release(&c->in);
    buf_release(&c->out);
    buf_release(&c->fwd);
    free(c->tried);
    free(c->log);
    free(c);
}

static void conn_close(struct http_conn *c)
{
    if (!transport_open(&c->tr))
        return;
    if (c->up)
        request_detach_upstream(c, false);
    idle_remove(c);
    all_remove(c);
    ev_timer_stop(c->w->loop, &c->timer);
    body_clock_stop(c);
    ev_io_stop(c->w->loop, &c->io);
    transport_close(&c->tr, false);
    worker_conn_closed(c->w, c->l);
    ev_defer_free(c->w->loop, c, conn_free);
}

/* After a final response with Connection: close: stop sending, read and
 * discard until the client closes, so unread input does not turn our
 * close into a reset that could destroy the response in flight. */
static void conn_start_linger(struct http_conn *c)
{
    body_clock_stop(c);
    transport_shutdown(&c->tr);
    c->state = C_LINGER;
    c->in.start = c->in.end = 0;
    set_timer(c, LINGER_MS);
}

/* The response is fully written: log, release, and go on with the next request. */
static void request_finish(struct http_conn *c)
{
    write_access_log(c, NULL);
    bool reusable = c->resp_keep_upstream && c->req_done && c->up && !c->up->eof &&
                    buf_len(&c->up->in) == 0;
    request_detach_upstream(c, reusable);
    /* A client that half-closed after pipelining still gets an answer to
     * every complete request it sent: linger only when nothing is left. */
    if (c->close_after || (c->client_eof && buf_len(&c->in) == c->pos)) {
        conn_start_linger(c);
        return;
    }
    buf_consume(&c->in, c->pos);
    request_reset(c);
    c->state = C_READ_HEAD;
    c->head_deadline = 0;
}

static void conn_set_interest(struct http_conn *c)
{
    if (!transport_open(&c->tr))
        return; /* closed: its ev_io must not be queued again */
    struct ev_loop *loop = c->w->loop;
    uint32_t cev = 0, uev = 0;
    struct upstream_conn *u = c->up;
    if (c->body_clock)
        body_clock_update(c);
    switch (c->state) {
    case C_READ_HEAD:
        if (!c->client_eof && !buf_full(&c->in))
            cev |= EPOLLIN;
        if (buf_len(&c->out))
            cev |= EPOLLOUT;
        break;
    case C_FORWARD:
        /* Read the request body while there is room; pipelined requests
         * wait in the kernel once the buffer is full. */
        if (!c->client_eof && !buf_full(&c->in))
            cev |= EPOLLIN;
        if (buf_len(&c->out) || (c->resp_head_done && c->resp_ready))
            cev |= EPOLLOUT;
        if (u) {
            if (u->connecting || c->fwd_sent < buf_len(&c->fwd) || c->req_ready)
                uev |= EPOLLOUT;
            if (!u->connecting && !u->eof && (!u->in.data || !buf_full(&u->in)))
                uev |= EPOLLIN;
        }
        break;
    case C_TUNNEL:
        if (!c->client_eof && !buf_full(&c->in))
            cev |= EPOLLIN;
        if (buf_len(&c->out) || (u && buf_len(&u->in)))
            cev |= EPOLLOUT;
        if (u) {
            if (buf_len(&c->in) > c->pos)
                uev |= EPOLLOUT;
            if (!u->eof && (!u->in.data || !buf_full(&u->in)))
                uev |= EPOLLIN;
        }
        break;
    case C_LINGER:
        cev = EPOLLIN;
        if (buf_len(&c->out))
            cev |= EPOLLOUT;
        break;
    }
    /* epoll reports an error or hang-up even with no events asked for, and
     * keeps reporting it (level-triggered): a reset socket we are not
     * reading, e.g. because the buffer it fills is full, would spin the
     * loop. A socket with nothing to do leaves epoll until it has again;
     * its error is then seen by the next read or write. */
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

/* READ_HEAD: parse what has arrived. Returns true if a request was taken. */
static bool conn_try_parse(struct http_conn *c)
{
    if (!buf_len(&c->in))
        return false;
    idle_remove(c);
    /* Durations in the access log count from the first byte of the request. */
    if (!c->started_us)
        c->started_us = now_us();
    struct http1_limits lim = limits_of(c->l->cfg);
    struct http1_message *m = &listener_state(c->l)->scratch;
    /* The parser starts over on every call; a client sending its head a
     * few bytes at a time would cost quadratic time. Parse again only when
     * the new bytes could finish the head or break a rule. */
    enum http1_result r = HTTP1_INCOMPLETE;
    if (!c->head_scanned || http1_head_ready(buf_head(&c->in), buf_len(&c->in), c->head_scanned, &lim))
        r = http1_parse_request(buf_head(&c->in), buf_len(&c->in), &lim, m);
    c->head_scanned = r == HTTP1_INCOMPLETE ? buf_len(&c->in) : 0;
    if (r == HTTP1_INCOMPLETE) {
        if (!c->head_deadline) {
            c->head_deadline = ev_now(c->w->loop) + c->l->cfg->timeouts.client_header_ms;
            set_timer(c, c->l->cfg->timeouts.client_header_ms);
        }
        if (buf_full(&c->in))
            send_error(c, 431, "request head too large");
        return false;
    }
    if (r == HTTP1_ERROR) {
        c->method = HTTP1_M_OTHER;
        send_error(c, m->error_status ? m->error_status : 400, m->error_reason ? m->error_reason : "bad request");
        return false;
    }
    handle_request(c, m);
    return true;
}

static void conn_progress(struct http_conn *c)
{
    for (int guard = 0; guard < 64 && transport_open(&c->tr); guard++) {
        enum cstate before = c->state;
        switch (c->state) {
        case C_READ_HEAD:
            if (c->client_eof && !buf_len(&c->in)) {
                conn_close(c);
                return;
            }
            if (!conn_try_parse(c)) {
                if (c->state == C_READ_HEAD && c->client_eof) {
                    conn_close(c); /* half a head, then EOF */
                    return;
                }
                if (c->state == C_READ_HEAD && !buf_len(&c->in)) {
                    /* Becoming idle (first time since the last request):
                     * the idle timeout replaces whatever timer ran for
                     * the request, e.g. upstream_response. */
                    if (!c->on_idle_list) {
                        idle_add(c);
                        c->head_deadline = 0;
                        set_timer(c, c->l->cfg->timeouts.idle_ms);
                    }
                    if (c->w->draining && ev_now(c->w->loop) - c->idle_since >= DRAIN_IDLE_GRACE_MS) {
                        conn_close(c);
                        return;
                    }
                }
            }
            break;
        case C_FORWARD: {
            if (request_body_validate(c) < 0) {
                log_debug("client %s: invalid chunked body: %s", c->peer_ip, c->req_chunk.error_reason);
                /* The invalid bytes never reach the backend. The client gets
                 * a 400 unless a response is already under way (then
                 * send_error closes the connection). */
                request_detach_upstream(c, false);
                send_error(c, 400, c->req_chunk.error_reason ? c->req_chunk.error_reason : "invalid chunked body");
                break;
            }
            if (upstream_send(c) < 0) {
                if (!c->resp_started) {
                    upstream_failed(c, false, "upstream closed while the request was sent");
                    break;
                }
                /* The backend answered and stopped reading (e.g. 413): send
                 * no more body, deliver the response, then close, since the
                 * rest of the body is still on its way to us. */
                c->req_abandoned = true;
                c->req_ready = 0;
                c->close_after = true;
            }
            request_compact(c);
            struct upstream_conn *u = c->up;
            if (!u)
                break;
            if (request_body_truncated(c)) {
                /* The client half-closed in the middle of the body: the
                 * request can never be completed, so do not wait for the
                 * backend's timeout. */
                request_detach_upstream(c, false);
                send_error(c, 400, "request body ended early");
                break;
            }
            if (response_read_heads(c) < 0) {
                atomic_fetch_add_explicit(&u->b->ctr->upstream_errors, 1, memory_order_relaxed);
                backend_report(c->w, c->pool, u->b, false);
                request_detach_upstream(c, false);
                request_fail(c, 502, "invalid response from the backend");
                break;
            }
            if (c->state == C_TUNNEL)
                break;
            if (c->resp_head_done && response_body_validate(c) < 0) {
                log_warn("bad chunked response body from %s: %s", u->b->cfg->addr.text, c->resp_chunk.error_reason);
                atomic_fetch_add_explicit(&u->b->ctr->upstream_errors, 1, memory_order_relaxed);
                backend_report(c->w, c->pool, u->b, false);
                request_detach_upstream(c, false);
                /* A 502 if the head has not left yet, else a cut connection:
                 * the invalid bytes are never forwarded either way. */
                request_fail(c, 502, "invalid response body from the backend");
                break;
            }
            if (client_send(c) < 0) {
                conn_close(c);
                return;
            }
            if (u->eof && c->resp_head_done && c->resp_body == HTTP1_BODY_UNTIL_CLOSE && !buf_len(&u->in))
                c->resp_done = true;
            if (u->eof && !c->resp_done && !buf_len(&u->in) && c->resp_head_done) {
                atomic_fetch_add_explicit(&u->b->ctr->upstream_errors, 1, memory_order_relaxed);
                request_detach_upstream(c, false);
                request_fail(c, 502, "the backend closed the connection in the middle of the response");
                break;
            }
            if (u->eof && !c->resp_head_done) {
                if (!c->resp_started) {
                    upstream_failed(c, false, "upstream closed the connection before answering");
                } else {
                    request_detach_upstream(c, false);
                    request_fail(c, 502, "upstream closed in the middle of the response head");
                }
                break;
            }
            if (c->resp_done && c->resp_head_done && !c->resp_ready && !buf_len(&c->out)) {
                if (!c->req_done) {
                    /* The backend answered before the body was all in
                     * (e.g. 413): the rest of the body is not worth reading. */
                    c->close_after = true;
                }
                request_finish(c);
            }
            break;
        }
        case C_TUNNEL:
            if (tunnel_pump(c) < 0) {
                conn_close(c);
                return;
            }
            break;
        case C_LINGER:
            if (buf_len(&c->out)) {
                if (client_send(c) < 0) {
                    conn_close(c);
                    return;
                }
                if (!buf_len(&c->out))
                    transport_shutdown(&c->tr);
            }
            if (c->client_eof && !buf_len(&c->out)) {
                conn_close(c);
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
        conn_set_interest(c);
}

/* ---------- events ---------- */

static void client_event(struct ev_loop *loop, struct ev_io *io, uint32_t ev)
{
    struct http_conn *c = io->data;
    ev = transport_ready(&c->tr, ev);
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        if (c->state == C_LINGER) {
            char sink[4096];
            ssize_t n;
            while ((n = transport_recv(&c->tr, sink, sizeof sink)) > 0)
                atomic_fetch_add_explicit(&c->l->ctr->bytes_received, (uint64_t)n, memory_order_relaxed);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                c->client_eof = true;
        } else if (!c->client_eof) {
            if (buf_alloc(&c->in, in_cap(c->l->cfg)) < 0) {
                conn_close(c);
                return;
            }
            ssize_t n = read_into(&c->tr, &c->in);
            if (n > 0) {
                atomic_fetch_add_explicit(&c->l->ctr->bytes_received, (uint64_t)n, memory_order_relaxed);
                if (c->body_clock)
                    c->body_rcvd += (uint64_t)n;
            }
            if (n == 0) {
                c->client_eof = true;
            } else if (n == -1 && errno != EAGAIN) {
                conn_close(c);
                return;
            }
            if (n > 0 && (c->state == C_FORWARD || c->state == C_TUNNEL) && c->up && !c->up->connecting)
                set_timer(c, c->state == C_TUNNEL ? c->l->cfg->timeouts.idle_ms
                                                  : c->l->cfg->timeouts.upstream_response_ms);
        }
    }
    conn_progress(c);
}

static void upstream_event(struct ev_loop *loop, struct ev_io *io, uint32_t ev)
{
    struct upstream_conn *u = io->data;
    struct http_conn *c = u->owner;
    if (u->connecting) {
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(u->tr.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err || (ev & EPOLLERR)) {
            upstream_failed(c, true, err ? strerror(err) : "connect failed");
            conn_progress(c);
            return;
        }
        u->connecting = false;
        set_timer(c, c->l->cfg->timeouts.upstream_response_ms);
    }
    ev = transport_ready(&u->tr, ev);
    if ((ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !u->eof) {
        if (buf_alloc(&u->in, in_cap(c->l->cfg)) < 0) {
            conn_close(c);
            return;
        }
        ssize_t n = read_into(&u->tr, &u->in);
        if (n > 0) {
            atomic_fetch_add_explicit(&u->b->ctr->bytes_received, (uint64_t)n, memory_order_relaxed);
            c->resp_started = true;
            if (c->state != C_TUNNEL)
                set_timer(c, c->l->cfg->timeouts.upstream_response_ms);
            else
                set_timer(c, c->l->cfg->timeouts.idle_ms);
        } else if (n == 0) {
            u->eof = true;
        } else if (n == -1 && errno != EAGAIN) {
            u->eof = true;
            if (!c->resp_started && c->state == C_FORWARD) {
                upstream_failed(c, false, strerror(errno));
                conn_progress(c);
                return;
            }
        }
    }
    conn_progress(c);
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

/* ---------- the request body deadline ---------- */

/* The body must be in within timeouts.client_body of the end of the head,
 * plus 1/limits.min_body_rate s for every byte received (a big body on a
 * slow link goes on as long as it keeps that average), plus the time the
 * client could not send because our buffer was full: the backend not
 * taking the body is no fault of the client's. Unlike the connection's
 * timer, which every byte pushes back, nothing resets this one, so a
 * client dripping a body holds its connection and a backend connection
 * for a bounded time. */
static uint64_t body_deadline(const struct http_conn *c, uint64_t now)
{
    const struct cfg_listener *cfg = c->l->cfg;
    uint64_t due = c->body_since + cfg->timeouts.client_body_ms + c->body_paused_ms;
    if (c->body_paused)
        due += now - c->body_paused_at;
    if (cfg->limits.min_body_rate)
        due += c->body_rcvd * 1000 / cfg->limits.min_body_rate;
    return due;
}

static void body_clock_start(struct http_conn *c)
{
    c->body_clock = true;
    c->body_paused = false;
    c->body_paused_ms = 0;
    c->body_since = ev_now(c->w->loop);
    /* Body bytes that came with the head count as received. */
    c->body_rcvd = buf_len(&c->in) - c->head_len;
    ev_timer_start(c->w->loop, &c->body_timer, c->l->cfg->timeouts.client_body_ms);
}

static void body_clock_stop(struct http_conn *c)
{
    c->body_clock = false;
    ev_timer_stop(c->w->loop, &c->body_timer);
}

/* Every byte of the body is in (validated), or no longer wanted. */
static bool request_body_received(const struct http_conn *c)
{
    switch (c->req_body) {
    case HTTP1_BODY_LENGTH:
        return c->req_left == 0;
    case HTTP1_BODY_CHUNKED:
        return c->req_chunk.done;
    default:
        return true;
    }
}

/* After every step of a connection: stop the clock once the body is in,
 * and keep track of the time the client was held up by our full buffer. */
static void body_clock_update(struct http_conn *c)
{
    if (c->state != C_FORWARD || c->req_abandoned || c->req_done || request_body_received(c)) {
        body_clock_stop(c);
        return;
    }
    bool held_up = buf_full(&c->in);
    uint64_t now = ev_now(c->w->loop);
    if (held_up && !c->body_paused) {
        c->body_paused = true;
        c->body_paused_at = now;
    } else if (!held_up && c->body_paused) {
        c->body_paused = false;
        c->body_paused_ms += now - c->body_paused_at;
    }
}

static void body_timeout(struct ev_loop *loop, struct ev_timer *t)
{
    struct http_conn *c = t->data;
    if (!c->body_clock)
        return;
    uint64_t now = ev_now(loop), due = body_deadline(c, now);
    if (now < due) {
        /* Bytes arrived, or the client was held up, since it was set. */
        ev_timer_start(loop, t, due - now);
        return;
    }
    body_clock_stop(c);
    struct listener_counters *lc = c->l->ctr;
    atomic_fetch_add_explicit(&lc->timeouts, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&lc->body_timeouts, 1, memory_order_relaxed);
    /* The backend has half a request it will never see the end of: close
     * that connection rather than pool it. */
    request_detach_upstream(c, false);
    /* 408 if no response has started, else send_error closes. */
    send_error(c, 408, "the request body did not arrive in time (timeouts.client_body)");
    conn_set_interest(c);
}

static void conn_timeout(struct ev_loop *loop, struct ev_timer *t)
{
    struct http_conn *c = t->data;
    struct listener_counters *lc = c->l->ctr;
    switch (c->state) {
    case C_READ_HEAD:
        if (buf_len(&c->in)) {
            atomic_fetch_add_explicit(&lc->timeouts, 1, memory_order_relaxed);
            send_error(c, 408, "the request head did not arrive in time");
            conn_set_interest(c);
        } else {
            conn_close(c);
        }
        return;
    case C_FORWARD:
        atomic_fetch_add_explicit(&lc->timeouts, 1, memory_order_relaxed);
        if (c->up && c->up->connecting) {
            upstream_failed(c, true, connect_timeout_reason);
            conn_progress(c);
            return;
        }
        if (c->up && !c->resp_started && !c->req_done && !c->req_ready) {
            /* Everything the client sent is upstream and the backend waits
             * for the rest of the body: the client is the slow one. */
            request_detach_upstream(c, false);
            send_error(c, 408, "the request body did not arrive in time");
            conn_set_interest(c);
            return;
        }
        if (c->up) {
            atomic_fetch_add_explicit(&c->up->b->ctr->upstream_errors, 1, memory_order_relaxed);
            backend_report(c->w, c->pool, c->up->b, false);
            request_detach_upstream(c, false);
            /* A 504 unless part of the response already reached the client
             * (the head, then a stalled body): then send_error closes. */
            request_fail(c, 504, "the backend did not answer in time");
            conn_set_interest(c);
            return;
        }
        conn_close(c);
        return;
    case C_TUNNEL:
        atomic_fetch_add_explicit(&lc->timeouts, 1, memory_order_relaxed); /* idle, as a TCP relay counts it */
        conn_close(c);
        return;
    case C_LINGER:
        conn_close(c);
        return;
    }
}

static void http_accept(struct listener_rt *l)
{
    struct worker *w = l->w;
    for (int i = 0; i < 64; i++) {
        /* At the limit, take the new connection only if an idle one can
         * make room for it, and evict only once a connection was really
         * waiting. */
        bool full = worker_at_limit(w, l);
        if (full && !listener_state(l)->idle_head)
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
        transport_plain(&c->tr, fd);
        c->state = C_READ_HEAD;
        struct sockaddr_storage toa_client;
        if (l->cfg->client_toa && toa_client_of(l->cfg, fd, &toa_client))
            ss = toa_client;
        addr_ip_string((struct sockaddr *)&ss, c->peer_ip, sizeof c->peer_ip);
        if (ss.ss_family == AF_INET6 && strncmp(c->peer_ip, "::ffff:", 7) == 0)
            memmove(c->peer_ip, c->peer_ip + 7, strlen(c->peer_ip + 7) + 1);
        ev_timer_init(&c->timer, conn_timeout, c);
        ev_timer_init(&c->body_timer, body_timeout, c);
        request_reset(c);
        all_add(c);
        ev_io_init(&c->io, fd, client_event, c);
        worker_conn_opened(w, l);
        atomic_fetch_add_explicit(&l->ctr->connections, 1, memory_order_relaxed);
        c->head_deadline = ev_now(w->loop) + l->cfg->timeouts.client_header_ms;
        set_timer(c, l->cfg->timeouts.client_header_ms);
        idle_add(c);
        ev_io_set(w->loop, &c->io, EPOLLIN);
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
    return listener_state(l)->idle_head != NULL;
}

/* While draining, idle clients get a short grace, since a keep-alive
 * client may be sending a request right now, then they are closed. */
static void http_tick(struct listener_rt *l)
{
    struct worker *w = l->w;
    if (!w->draining)
        return;
    uint64_t now = ev_now(w->loop);
    struct http_listener *hl = listener_state(l);
    while (hl->idle_head && now - hl->idle_head->idle_since >= DRAIN_IDLE_GRACE_MS)
        conn_close(hl->idle_head);
}

static void http_shutdown(struct listener_rt *l)
{
    struct http_listener *hl = listener_state(l);
    while (hl->all)
        conn_close(hl->all);
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
