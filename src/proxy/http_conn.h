/* The HTTP/1.1 client connection: the protocol behind http_proto_ops.
 *
 * A connection owns the client's socket (through its transport), reads
 * and parses request heads, keeps the connection alive between requests,
 * runs its timers and writes to the client. One request at a time is in
 * flight, as the transaction embedded in it (http_txn.h); pipelined
 * requests wait in its input buffer and are answered in order. The
 * connection is the transaction's carrier (http_carrier.h): c->cr holds
 * the window the transaction works on (its input and output buffers,
 * client_eof, close_after) and the table of calls http_conn.c implements
 * for it; the transaction knows nothing else of the connection.
 *
 * Buffers and backpressure: a side is read only while the buffer it fills
 * has room, and bytes leave a buffer only when the other socket accepts
 * them, so memory per connection is fixed whatever the body size.
 *
 * States: C_READ_HEAD (idle, or a head on its way), C_FORWARD (a
 * transaction is exchanging with a backend), C_TUNNEL (after 101
 * Switching Protocols: bytes both ways), C_LINGER (the last response is
 * out; reading and discarding until the client closes). One timer whose
 * meaning follows the state: client header, keep-alive idle, connect and
 * upstream response (set by the transaction), tunnel idle, linger.
 */
#ifndef SLUICE_PROXY_HTTP_CONN_H
#define SLUICE_PROXY_HTTP_CONN_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/evloop.h"
#include "lib/buffer.h"
#include "lib/http1.h"
#include "proxy/h2_conn.h"
#include "proxy/http_carrier.h"
#include "proxy/http_txn.h"
#include "proxy/proxy_protocol.h"
#include "proxy/transport.h"
#include "proxy/worker.h"

enum http_conn_state { C_READ_HEAD, C_FORWARD, C_TUNNEL, C_LINGER };

/* l->proto_state of an http listener. */
struct http_listener {
    /* Every open connection: http_shutdown() closes the ones still busy
     * when the drain deadline passes rather than leak them. */
    struct http_conn *all;
    /* Connections handed over to HTTP/2 (h2_conn.h). */
    struct h2_conn *h2_all;
    /* Idle connections, oldest first (see idle_add). */
    struct http_conn *idle_head, *idle_tail;
    /* The parse target, reused for every message of the listener. */
    struct http1_message scratch;
};

struct http_conn {
    struct worker *w;
    struct listener_rt *l;
    struct transport tr;          /* the client's socket */
    struct ev_io io;
    struct ev_timer timer;
    enum http_conn_state state;
    char peer_ip[48];
    struct conn_origin origin;    /* the client (after a PROXY header) and the address it came to */
    /* The transaction's carrier: in (bytes from the client), out (bytes
     * the proxy generates for the client), client_eof, close_after, and
     * the calls of http1_carrier_ops. */
    struct http_carrier cr;
    struct http_conn *idle_prev, *idle_next;
    bool on_idle_list;
    struct http_conn *all_prev, *all_next; /* every open connection of the listener */
    uint64_t idle_since;
    uint64_t head_deadline;       /* client_header timeout for the request being read */
    size_t head_scanned;          /* bytes of an incomplete head already parsed */
    bool tunnel_up_eof, tunnel_client_eof;
    bool tls_handshaking;         /* TLS listener: no request is read before the handshake is done */
    struct ev_slow hs_slow;       /* the next handshake step, queued behind ready sockets (evloop.h) */
    bool spoke;                   /* a request was read: no HTTP/2 preface any more */

    struct http_txn txn;          /* the request in flight */
    struct rl_hold rl_hold;       /* its place in the listener's connection_limit (proxy/ratelimit.h) */
};

/* Hand the connection over to HTTP/2 (h2_conn_adopt) with the bytes read
 * so far, and free it without closing its transport: for the h2c preface
 * (http_conn.c) and for a TLS handshake whose ALPN chose "h2" (call it
 * right after the handshake, then touch c no more). */
void http_conn_switch_to_h2(struct http_conn *c);

static inline struct http_listener *http_listener_of(const struct listener_rt *l)
{
    return l->proto_state;
}

#endif
