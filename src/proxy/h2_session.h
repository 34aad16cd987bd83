/* The HTTP/2 protocol of a client connection, without its socket: an
 * nghttp2 server session, its settings and options from the listener's
 * http2: block, the request heads it decodes (h2_request.h), and the
 * defences against floods that end the connection.
 *
 * The connection (h2_conn.c) feeds it the bytes it reads and sends what
 * nghttp2_session_mem_send() gives; the session reports streams and their
 * requests through a table of hooks. Nothing here knows the event loop,
 * so the fuzz target (tests/fuzz/fuzz_h2.c) runs exactly this code.
 *
 * Flow control: nghttp2 does not open windows by itself
 * (NO_AUTO_WINDOW_UPDATE); the owner calls nghttp2_session_consume() as
 * the backend takes request bytes. When a DATA chunk cannot be taken
 * (data hook returns 1: the stream's buffer is full, which the windows
 * make rare), the session keeps a copy of it and stops taking input:
 * h2_session_feed() returns what it took, and delivers the kept chunk
 * first on the next call.
 *
 * Defences (docs/http2.md), each closing the connection with GOAWAY
 * ENHANCE_YOUR_CALM and counted by kind: RST_STREAM, PING, SETTINGS and
 * empty DATA frames from the client past token buckets (max_X per
 * flood_window); more CONTINUATION frames than max_continuations after a
 * HEADERS (nghttp2's check, backported by Debian for CVE-2024-28182);
 * more queued PING/SETTINGS acknowledgements than nghttp2 keeps (a client
 * that sends them without reading).
 */
#ifndef SLUICE_PROXY_H2_SESSION_H
#define SLUICE_PROXY_H2_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <nghttp2/nghttp2.h>

#include "proxy/h2_request.h"
#include "proxy/proxy_conf.h"

enum h2_flood {
    H2_FLOOD_RESET,
    H2_FLOOD_PING,
    H2_FLOOD_SETTINGS,
    H2_FLOOD_EMPTY_FRAMES,
    H2_FLOOD_CONTINUATION,
    H2_FLOOD_ACK_QUEUE,
    H2_FLOOD_KINDS,
};
#define H2_BUCKETS 4 /* the first four kinds are rate limited */

/* Label values of sluice_http2_flood_closes_total{kind}, by enum h2_flood. */
extern const char *const h2_flood_names[H2_FLOOD_KINDS];

struct h2_session_hooks {
    /* A client opens a stream with a request: its field accumulator
     * (h2_req_init'ed), or NULL to refuse it (REFUSED_STREAM). */
    struct h2_req *(*stream_open)(void *owner, int32_t id);
    /* The request head is complete; end_stream: no body follows. */
    void (*request)(void *owner, struct h2_req *r, bool end_stream);
    /* Body bytes: 0 when taken, 1 when they cannot be now. */
    int (*data)(void *owner, struct h2_req *r, const uint8_t *p, size_t n);
    /* The client's END_STREAM after a body (or trailers). */
    void (*end_stream)(void *owner, struct h2_req *r);
    /* nghttp2 forgets the stream (closed both ways, or reset by either
     * side: error_code is the reset's, NO_ERROR for a normal end). */
    void (*stream_closed)(void *owner, struct h2_req *r, uint32_t error_code);
};

struct h2_bucket {
    double tokens;
    uint64_t at_ms;
};

struct h2_session {
    nghttp2_session *ng;
    const struct cfg_http2 *cfg;
    const struct h2_session_hooks *hooks;
    void *owner;
    uint64_t now_ms;                 /* set by the owner before feeding */
    struct h2_bucket buckets[H2_BUCKETS];
    int flood;                       /* enum h2_flood that ended it, or -1 */
    struct {                         /* a DATA chunk the stream could not take yet */
        struct h2_req *r;
        int32_t id;
        uint8_t *p;
        size_t n;
    } pending;
};

/* Connection-level receive window: bounds the request bytes one
 * connection holds for all its streams. */
#define H2_CONNECTION_WINDOW (1u << 20)

/* Set up the session and queue our SETTINGS. Returns 0 or -1. */
int h2_session_init(struct h2_session *s, const struct cfg_http2 *cfg, const struct h2_session_hooks *hooks,
                    void *owner, uint64_t now_ms);
void h2_session_fini(struct h2_session *s);

/* Bytes from the client: returns how many were taken (fewer than n when a
 * stream's buffer is full: call again once it has room), or -1 when the
 * connection must end (send what nghttp2 still has, a GOAWAY, then close);
 * s->flood says whether a defence ended it. */
ssize_t h2_session_feed(struct h2_session *s, const uint8_t *p, size_t n);

/* Whether input waits for a stream's room (do not read more). */
static inline bool h2_session_paused(const struct h2_session *s) { return s->pending.n != 0; }

#endif
