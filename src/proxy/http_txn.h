/* An HTTP transaction: one request of a client and its response, from a
 * complete request head to the last byte of the response.
 *
 * The transaction routes the request (http_route), picks a backend of the
 * pool (pool_pick, sticky cookie, retries on other backends), borrows an
 * upstream connection from the keep-alive pool or opens one, sends the
 * rewritten head and the body, reads and checks the response, relays it,
 * and writes the access-log record.
 *
 * What carries it, the client's side, it reaches only through its
 * carrier (http_carrier.h): a window of fields (the request at the front
 * of cr->in, head_len raw head bytes then body bytes from pos; cr->out
 * for response heads; cr->client_eof; cr->close_after) and a table of
 * calls (send an error of our own, send the response, the request is
 * done, abort, take a step, set the interest, arm the timer, become a
 * tunnel). The carrier owns the socket, reads and frames requests,
 * decides keep-alive and writes to the client; it drives the transaction
 * with the calls below (start, progress, timeout, ...) and reads its
 * response state (up, resp_head_done, resp_ready, ...) to write the
 * response. The HTTP/1 connection carries one transaction at a time,
 * embedded in it, over its own buffers; an HTTP/2 connection would carry
 * one per stream, each with a window of its own, and no line here would
 * change.
 *
 * Retries: the raw request stays at the front of the window until the
 * response starts, so a connect failure or a reset before the first
 * response byte can replay it on another backend, as long as no body byte
 * had to be dropped to make room (then the request is no longer
 * replayable) and the method is idempotent or nothing was sent.
 */
#ifndef SLUICE_PROXY_HTTP_TXN_H
#define SLUICE_PROXY_HTTP_TXN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/evloop.h"
#include "lib/buffer.h"
#include "lib/http1.h"
#include "proxy/http_vars.h"
#include "proxy/pool.h"

struct http_carrier;
struct cfg_route;
struct error_page;

/* Fields of the access-log line, taken from the request head (whose
 * bytes do not outlive the request in the carrier's window). */
struct request_log {
    char line[512];
    char referer[256];
    char user_agent[256];
    char host[128];
};

struct http_txn {
    struct http_carrier *cr;      /* what carries it: the client's side (http_carrier.h) */

    /* the request */
    enum http1_method method;
    bool http10;
    bool want_upgrade;
    size_t head_len;              /* raw head at the front of cr->in */
    size_t pos;                   /* next body byte to send, as an offset into cr->in */
    size_t req_ready;             /* validated body bytes at `pos` not yet sent */
    enum http1_body req_body;
    uint64_t req_length;          /* the request's Content-Length, for a replay */
    uint64_t req_left;            /* Content-Length bytes not yet validated */
    struct http1_chunked req_chunk;
    bool req_done;                /* the whole body went upstream */
    bool req_abandoned;           /* the backend stopped taking the body */
    bool replayable;              /* cr->in still holds everything sent */
    bool req_sent_any;
    struct buf fwd;               /* the rewritten request head */
    size_t fwd_sent;

    /* routing and the upstream */
    uint32_t tries;
    uint8_t *tried;               /* per backend of the pool, for retries */
    struct backend_rt *retry_from; /* failed the last try: the next one counts its retry */
    struct pool_rt *pool;
    struct upstream_conn *up;
    bool set_sticky;              /* add Set-Cookie for the chosen backend */
    int sticky_idx;               /* backend named by the client's cookie, or -1 */
    uint64_t key_hash;
    uint64_t started_us;          /* first byte of the request head arrived; 0 = none yet */
    /* The last try's upstream timing, CLOCK_MONOTONIC us (now_us()), 0 = not
     * reached: connect started (or a pooled connection was taken), connect
     * completed (= the start for a pooled one), first response byte. */
    uint64_t upstream_connect_start_us, upstream_connected_us, upstream_first_byte_us;

    /* the request body deadline (timeouts.client_body), see body_deadline() */
    struct ev_timer body_timer;
    bool body_clock;              /* running: a body is still on its way */
    bool body_paused;             /* our buffer is full: the client cannot send now */
    uint64_t body_since;          /* ev_now() when the head was complete */
    uint64_t body_paused_at;
    uint64_t body_paused_ms;      /* earlier pauses, in total */
    uint64_t body_rcvd;           /* bytes read from the client since the head */

    /* the response */
    bool resp_started;            /* a response byte arrived */
    bool resp_sent;               /* a byte of the final response reached the client */
    bool connect_timed_out;       /* the last upstream attempt failed by timing out */
    char last_failure[96];        /* why the last upstream attempt failed ("" = none), for the 502's reason */
    bool resp_head_done;
    enum http1_body resp_body;
    uint64_t resp_left;
    struct http1_chunked resp_chunk;
    size_t resp_ready;            /* validated body bytes at the front of up->in */
    bool resp_done;
    int status;
    uint64_t resp_bytes;
    bool resp_keep_upstream;
    bool tunnel;                  /* a 101 response: the carrier relays bytes both ways */

    struct request_log *log;      /* only when an access log is on */
    uint32_t retry_after_s;       /* an answer of our own carries Retry-After (a rate limit); 0 = none */

    /* Variables (http_vars.h): the upstream's times (CLOCK_MONOTONIC us,
     * the last try's; 0 = not reached), the route, the request id, the
     * request's size, and a copy of its head for what reads it after the
     * head left cr->in (cfg_listener.keep_request_head). */
    const struct cfg_route *route; /* the route taken; NULL: the listener's pool */
    char request_id[33];          /* "" until first used */
    uint64_t req_head_bytes;      /* the request head's size as received */
    uint64_t req_body_bytes;      /* body bytes validated (framing included) */
    uint64_t resp_head_bytes;     /* the final response head as sent to the client */
    struct http_head_copy *req_copy;
    struct http_head_copy *resp_copy; /* the same for the response ($sent_http_NAME in a log format) */
    /* An answer of Sluice's own from a route (redirect:, return:): the
     * head (and over HTTP/1 the body) in cr->out; over HTTP/2 the body
     * waits in local_body for the carrier's data provider. */
    bool local_answer;
    char *local_body;
    size_t local_len, local_off;
};

/* Set up the transaction of a new carrier cr (no request yet); cr->ops,
 * its context and its window are set. */
void http_txn_init(struct http_txn *t, struct http_carrier *cr);
/* Release what it holds (the carrier is being freed). */
void http_txn_free(struct http_txn *t);
/* Forget the request: ready for the next one the carrier brings. */
void http_txn_reset(struct http_txn *t);

/* The first byte of a request head arrived (durations count from here). */
void http_txn_begin(struct http_txn *t);
/* A complete, valid request head m (at the front of cr->in): route it and
 * start the upstream exchange, or answer with an error of our own. The
 * carrier is forwarding from here until request_done, send_error or
 * abort. */
void http_txn_start(struct http_txn *t, struct http1_message *m);
/* One step of the exchange (the carrier is forwarding, not tunnelling):
 * validate and send request bytes, read and relay the response; on the
 * last byte, log and hand the carrier back (ops->request_done). */
void http_txn_progress(struct http_txn *t);
/* The carrier's timer fired while forwarding: connect or response
 * timeout, or a client too slow with its body. */
void http_txn_timeout(struct http_txn *t);

/* Give the upstream connection back: to the keep-alive pool if reusable,
 * else closed. Nothing happens without one. */
void http_txn_detach_upstream(struct http_txn *t, bool reusable);
/* Make room in cr->in for more body: drop what was sent (while
 * forwarding or tunnelling). */
void http_txn_compact(struct http_txn *t);
/* The same whether cr->in is full or not: a carrier that needs room
 * before its buffer is full (HTTP/2 adds chunk framing to DATA). */
void http_txn_compact_now(struct http_txn *t);
/* The access-log record of an answer of our own (reason: why). */
/* The error page for an answer of Sluice's own with this status: the
 * route's (routes[].error_pages) once the request was routed, else the
 * listener's; NULL for none. */
const struct error_page *http_txn_error_page(const struct http_txn *t, int status);

void http_txn_log_refused(struct http_txn *t, const char *reason);

/* The request body deadline: stop it, or bring it up to date after a
 * step of the carrier (see http_txn.c). */
void http_txn_body_clock_stop(struct http_txn *t);
void http_txn_body_clock_update(struct http_txn *t);

/* The events the upstream socket needs during the exchange. */
static inline uint32_t http_txn_upstream_events(const struct http_txn *t)
{
    const struct upstream_conn *u = t->up;
    uint32_t ev = 0;
    if (u->connecting || t->fwd_sent < buf_len(&t->fwd) || t->req_ready)
        ev |= EPOLLOUT;
    if (!u->connecting && !u->eof && (!u->in.data || !buf_full(&u->in)))
        ev |= EPOLLIN;
    return ev;
}

#endif
