/* What an HTTP transaction (http_txn.h) and the client connection that
 * carries it share.
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

#define HTTP_HEAD_SLACK 2048 /* room for the headers the proxy adds */

/* What a transaction sees of the connection that carries it. */
struct http_carrier {
    /* Fixed for the carrier's life. */
    struct worker *w;
    struct listener_rt *l;           /* the listener the client came in on */
    const char *peer_ip;             /* the client's address, as text */
    struct http1_message *scratch;   /* a parse target, valid during one call */

    /* The window: the client's side of the exchange. */
    struct buf in;                   /* the request: its raw head at the front, then body bytes */
    struct buf out;                  /* bytes for the client ahead of the response body: heads */
    bool client_eof;                 /* the client sends nothing more */
    bool close_after;                /* no keep-alive after this response */
};

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
