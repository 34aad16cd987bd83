/* An HTTP/2 client connection (h2_conn.c) and its streams (h2_stream.c).
 *
 * Entry: h2_conn_adopt() takes over an accepted connection whose first
 * bytes are HTTP/2's: the HTTP/1 connection hands it over when they are
 * the h2c preface (prior knowledge, http_conn.c), and a TLS connection
 * whose ALPN chose "h2" calls it right after the handshake with nothing
 * read yet. The connection owns the transport from then on, and the
 * worker's count of it (worker_conn_opened was called at accept).
 *
 * The protocol is nghttp2's server session (h2_session.h). Every stream
 * is its own transaction (http_txn.h) through an http_carrier of its own
 * (http_carrier.h): its request, decoded and rendered as HTTP/1.1 text,
 * then its DATA payload, in the carrier's `in`; END_STREAM as client_eof;
 * abort a RST_STREAM. The transaction's HTTP/1-shaped response (heads in
 * `out`, the body as the backend framed it) leaves as HEADERS and DATA
 * (h2_response.h). Routing, balancing, retries, health, access log and
 * metrics are the transaction's, as for HTTP/1.
 *
 * Memory is bounded per stream: request bytes are only let in (stream
 * windows opened with nghttp2_session_consume) as the backend takes them,
 * and response bytes only read from the backend while the client's
 * window lets them leave (the data provider defers; the upstream's
 * buffer fills and its socket is no longer read).
 *
 * Nothing that runs nghttp2's callbacks (mem_recv, mem_send) is called
 * from inside a transaction: streams only queue frames there, and the
 * connection's step (h2_conn_run) feeds, starts and moves streams, and
 * flushes, in that order, until nothing changes.
 */
#ifndef SLUICE_PROXY_H2_CONN_H
#define SLUICE_PROXY_H2_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/evloop.h"
#include "lib/buffer.h"
#include "proxy/h2_request.h"
#include "proxy/h2_response.h"
#include "proxy/h2_session.h"
#include "proxy/http_carrier.h"
#include "proxy/http_txn.h"
#include "proxy/proxy_protocol.h"
#include "proxy/ratelimit.h"
#include "proxy/transport.h"
#include "proxy/worker.h"

/* The h2c connection preface (RFC 9113 3.4). */
#define H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define H2_PREFACE_LEN 24

enum h2_stream_state {
    H2S_HEADERS,   /* the request head is on its way */
    H2S_READY,     /* rendered into cr.in, the transaction not started yet */
    H2S_FORWARD,   /* the transaction runs */
    H2S_OVER,      /* the transaction is over; frames may still leave */
};

struct h2_conn;

struct h2_stream {
    struct h2_conn *c;
    int32_t id;
    enum h2_stream_state state;
    struct h2_req req;           /* during H2S_HEADERS */
    struct http_carrier cr;
    struct http_txn txn;
    struct ev_timer timer;       /* the transaction's (carrier set_timer) */
    bool end_stream;             /* the client sent END_STREAM */
    bool chunked;                /* the body goes upstream chunked (no content-length) */
    bool closed;                 /* nghttp2 forgot the stream: tear it down */
    bool dirty;                  /* something moved: step the transaction */
    bool head_submitted;         /* the final HEADERS are queued */
    bool deferred;               /* the data provider waits for bytes */
    bool aborted;                /* reset by us */
    int refuse_status;           /* the head cannot go on: answer this */
    const char *refuse_reason;
    bool dechunk_on;
    struct h2_dechunk dechunk;
    size_t unacked;              /* DATA payload not yet given back to the windows */
    /* An answer of our own: its body, own_body's text or an error page
     * of the configuration (own_data points at the one sent). */
    char own_body[256];
    const char *own_data;
    size_t own_len, own_off;
    bool own;
    struct h2_stream *prev, *next;
};

struct h2_conn {
    struct worker *w;
    struct listener_rt *l;
    struct transport tr;
    struct ev_io io;
    struct ev_timer timer;       /* idle (no stream), linger after GOAWAY */
    char peer_ip[48];
    struct conn_origin origin;   /* the client and the address it came to (proxy/proxy_protocol.h) */
    struct h2_session s;
    struct buf rbuf;             /* read from the client, not yet fed */
    struct buf wbuf;             /* frames gathered for one write */
    const uint8_t *wpend;        /* what mem_send gave that is not in wbuf yet */
    size_t wpend_len;
    struct h2_stream *streams;
    size_t n_streams;
    bool client_eof;
    bool ending;                 /* GOAWAY queued: close once it is out and the client is done */
    bool shut;                   /* our side is shut down (everything sent) */
    bool draining;               /* graceful GOAWAY sent: close when no stream is left */
    bool running;                /* inside h2_conn_run */
    bool again;                  /* asked to run while running */
    bool dead;
    struct h2_conn *all_prev, *all_next;
    struct rl_hold rl_hold;      /* its place in the listener's connection_limit (proxy/ratelimit.h) */
};

/* Take over an accepted client connection (see the header comment):
 * tr is copied and owned from here, peer_ip the client's address as
 * text, origin its addresses (copied), already_read[0..n) the bytes read
 * from it so far (the preface and whatever came with it; NULL, 0 after a
 * TLS handshake), hold its connection_limit count (moved: the HTTP/1
 * connection drops it). On failure the connection is closed. */
void h2_conn_adopt(struct listener_rt *l, const struct transport *tr, const char *peer_ip,
                   const struct conn_origin *origin, const void *already_read, size_t n, struct rl_hold *hold);

/* The connection's step: see the header comment. */
void h2_conn_run(struct h2_conn *c);
/* GOAWAY with error_code, then close once it is out. */
void h2_conn_goaway(struct h2_conn *c, uint32_t error_code);
/* Set the interest of the client's socket and of every stream's upstream. */
void h2_conn_set_interest(struct h2_conn *c);

/* For the listener (http_conn.c): drain (graceful GOAWAY, close when
 * idle) on the tick, close all at shutdown. */
void h2_listener_tick(struct listener_rt *l);
void h2_listener_shutdown(struct listener_rt *l);

/* h2_stream.c, for h2_conn.c */
struct h2_stream *h2_stream_new(struct h2_conn *c, int32_t id);
/* The request head is complete: render it (H2S_READY), or answer it. */
void h2_stream_head_done(struct h2_stream *st, bool end_stream);
/* Start the transaction of a READY stream. */
void h2_stream_start(struct h2_stream *st);
int h2_stream_data(struct h2_stream *st, const uint8_t *p, size_t n);
void h2_stream_end(struct h2_stream *st);
/* One step of its transaction if something moved. */
void h2_stream_step(struct h2_stream *st);
/* Give request windows back as the buffer has room. */
void h2_stream_open_window(struct h2_stream *st);
/* Tear down (closed by nghttp2, or the connection ends): detach the
 * upstream, free after this batch of events. */
void h2_stream_destroy(struct h2_stream *st);
uint32_t h2_stream_upstream_events(const struct h2_stream *st);

#endif
