/* The carrier of an HTTP transaction: the client's side of one exchange,
 * as the transaction (http_txn.h) sees it.
 *
 * A transaction reaches whatever carries it only through a struct
 * http_carrier: fields it reads and writes directly (the window: the
 * request bytes in `in`, response heads into `out`, whether the client
 * finished sending, whether the connection closes after the response)
 * and a table of calls for what the carrier decides (an answer of our
 * own, writing to the client, the end of the request, aborting, the
 * next step, socket interest, the timer, a tunnel). The window is plain
 * fields so the hot path costs no call for them; a call through the
 * table is one indirect call per step, never per byte.
 *
 * The HTTP/1 client connection (http_conn.c) is a carrier: it embeds one
 * struct http_carrier whose window is its own buffers, and one
 * transaction. An HTTP/2 connection would be another: one struct
 * http_carrier per stream, its `in` holding the stream's request (the
 * decoded head rendered as HTTP/1 text, then the DATA payload),
 * END_STREAM as `client_eof`, `abort` a reset of the stream rather than
 * of the connection. What the transaction writes stays HTTP/1-shaped (a
 * status line and fields in `out`, the body as the backend framed it),
 * so such a carrier's `send` converts it into HEADERS and DATA.
 *
 * The context fields (worker, listener, client address, parse target)
 * are the carrier's, fixed for its life: a transaction's log line and
 * X-Forwarded-For name the client the carrier accepted.
 *
 * Also here: the small helpers both sides use (buffer sizes, parse
 * limits, response counting, reading and sending through a transport).
 */
#ifndef SLUICE_PROXY_HTTP_CARRIER_H
#define SLUICE_PROXY_HTTP_CARRIER_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/buffer.h"
#include "lib/http1.h"
#include "proxy/transport.h"
#include "proxy/worker.h"

struct conn_origin;

#define HTTP_HEAD_SLACK 2048 /* room for the headers the proxy adds */

struct http_carrier;

/* What a carrier does for its transaction. Every call is about the one
 * transaction the carrier struct belongs to. */
struct http_carrier_ops {
    /* Answer with an error of our own (the status, and a reason for the
     * log and the body), logged through http_txn_log_refused(); if part of
     * a response already reached the client, abort instead. Either way
     * the transaction is over. */
    void (*send_error)(struct http_carrier *cr, int status, const char *reason);
    /* Write `out`, then the transaction's validated response body bytes
     * (resp_ready at the front of its upstream's input), to the client,
     * taking what was written off both: 0 (all written, or no room now),
     * -1 on an error. */
    int (*send)(struct http_carrier *cr);
    /* The response is out in full, logged, and the upstream let go: go on
     * with the next request (which resets the transaction), or close. */
    void (*request_done)(struct http_carrier *cr);
    /* Give up on the client at once: HTTP/1 closes the connection (and
     * the upstream with it), freeing it after this batch of events. */
    void (*abort)(struct http_carrier *cr);
    /* Something the transaction waits on happened outside a step of the
     * carrier (an upstream event, a retry after a timeout): take the
     * next step, then set the interest of the sockets. */
    void (*progress)(struct http_carrier *cr);
    /* Only set the interest of the sockets, e.g. after an answer of our
     * own from a timer of the transaction's. */
    void (*set_interest)(struct http_carrier *cr);
    /* (Re)arm the timer the carrier runs for the transaction, ms from
     * now; when it fires the carrier calls http_txn_timeout(). */
    void (*set_timer)(struct http_carrier *cr, uint64_t ms);
    /* The final response is 101 Switching Protocols and its head is in
     * `out`: from now on the carrier relays bytes both ways between the
     * client and the transaction's upstream. */
    void (*tunnel)(struct http_carrier *cr);
};

/* What a transaction sees of the connection that carries it. */
struct http_carrier {
    const struct http_carrier_ops *ops;

    /* Fixed for the carrier's life. */
    struct worker *w;
    struct listener_rt *l;           /* the listener the client came in on */
    const char *peer_ip;             /* the client's address, as text */
    const struct conn_origin *origin; /* the client's and the local address (proxy/proxy_protocol.h) */
    const struct transport *tr;      /* the client's transport (an HTTP/2 stream: its connection's):
                                      * TLS or not, for X-Forwarded-Proto and the access log */
    struct http1_message *scratch;   /* a parse target, valid during one call */
    bool http2;                      /* an HTTP/2 stream ($server_protocol, local answers' bodies) */

    /* The window: the client's side of the exchange. */
    struct buf in;                   /* the request: its raw head at the front, then body bytes */
    struct buf out;                  /* bytes for the client ahead of the response body: heads */
    bool client_eof;                 /* the client sends nothing more */
    bool close_after;                /* no keep-alive after this response */
};

static inline void http_carrier_send_error(struct http_carrier *cr, int status, const char *reason)
{
    cr->ops->send_error(cr, status, reason);
}

static inline int http_carrier_send(struct http_carrier *cr) { return cr->ops->send(cr); }
static inline void http_carrier_request_done(struct http_carrier *cr) { cr->ops->request_done(cr); }
static inline void http_carrier_abort(struct http_carrier *cr) { cr->ops->abort(cr); }
static inline void http_carrier_progress(struct http_carrier *cr) { cr->ops->progress(cr); }
static inline void http_carrier_set_interest(struct http_carrier *cr) { cr->ops->set_interest(cr); }
static inline void http_carrier_set_timer(struct http_carrier *cr, uint64_t ms) { cr->ops->set_timer(cr, ms); }
static inline void http_carrier_tunnel(struct http_carrier *cr) { cr->ops->tunnel(cr); }

/* The size of the input buffers: a whole head must fit. */
static inline size_t http_in_cap(const struct cfg_listener *cfg)
{
    return cfg->limits.buffer_size > cfg->limits.max_header_size ? cfg->limits.buffer_size
                                                                  : cfg->limits.max_header_size;
}

static inline struct http1_limits http_limits_of(const struct cfg_listener *cfg)
{
    return (struct http1_limits){
        .max_request_line = cfg->limits.max_request_line,
        .max_head = cfg->limits.max_header_size,
        .max_headers = cfg->limits.max_headers,
    };
}

static inline void http_count_response(struct listener_rt *l, int status)
{
    int cls = status / 100;
    if (cls < 1 || cls > 5)
        cls = 0;
    atomic_fetch_add_explicit(&l->ctr->responses[cls], 1, memory_order_relaxed);
}

/* Read into the free room of b: bytes read, 0 at the end, -1 with errno,
 * -2 when b is full. */
static inline ssize_t http_read_into(struct transport *t, struct buf *b)
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
static inline ssize_t http_send_some(struct transport *t, const char *p, size_t len)
{
    ssize_t n = transport_send1(t, p, len);
    if (n < 0)
        return errno == EAGAIN ? 0 : -1;
    return n;
}

#endif
