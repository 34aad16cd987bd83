/* The client's address in and out: PROXY protocol headers on listeners and
 * towards backends (lib/proxy_header.h is the codec).
 *
 * In: a listener with proxy_protocol takes a connection, and before its
 * protocol (HTTP/1, HTTP/2, TLS, a TCP relay) sees a byte, reads the
 * header here: only from a peer in trusted_proxies (anyone else is closed
 * at once, as is a trusted peer whose header is missing, malformed or
 * late: timeouts.client_header). The header's source address is then the
 * client's address everywhere: X-Forwarded-For, the access log, the
 * balancing hash. Only the header's bytes are taken from the socket (they
 * are peeked first), so the protocol starts with its own first byte: a
 * TLS ClientHello, a request line, the HTTP/2 preface.
 *
 * Out: a pool with send_proxy writes a header on each new backend
 * connection as soon as its TCP connect completes, before TLS to the
 * backend and before the request (pp_send_to_backend).
 */
#ifndef SLUICE_PROXY_PROXY_PROTOCOL_H
#define SLUICE_PROXY_PROXY_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "proxy/proxy_conf.h"
#include "proxy/transport.h"
#include "proxy/worker.h"

/* What became of a PROXY header (sluice_listener_proxy_headers_total{result}). */
enum pp_result { PP_ACCEPTED, PP_UNTRUSTED, PP_INVALID, PP_TIMEOUT, PP_RESULTS };

/* Who a client connection is from, and where it came to. */
struct conn_origin {
    struct sockaddr_storage client; /* the peer, or the source a PROXY header gave */
    struct sockaddr_storage local;  /* the address it connected to (the header's destination) */
    bool from_header;               /* client came from a PROXY header */
};

/* The rest of a protocol's accept, once the origin is known. */
typedef void pp_adopt_fn(struct listener_rt *l, int fd, const struct conn_origin *o);

/* A connection fd was just accepted from peer: hand it to adopt at once
 * (no proxy_protocol on the listener), or after its PROXY header (later,
 * from the event loop), or close it (an untrusted peer). */
void pp_accept(struct listener_rt *l, int fd, const struct sockaddr_storage *peer, pp_adopt_fn *adopt);

/* The worker exits: close the connections still waiting for a header. */
void pp_shutdown(struct worker *w);

/* Whether the client (after its PROXY header) is in the listener's
 * trusted_proxies: its own X-Forwarded-For and Forwarded are then kept
 * and appended to. */
bool pp_client_trusted(const struct cfg_listener *cfg, const struct conn_origin *o);

/* What the client's side knows that a v2 header can carry. */
struct pp_client_info {
    const struct conn_origin *origin;
    const struct transport *client_tr; /* TLS: ALPN, SNI, version, cipher */
    const char *unique_id;             /* a request id, NULL if none */
};

/* Write the pool's PROXY header for this client on the backend socket fd,
 * whose connect just completed (nothing else was sent on it). 0, or -1
 * with errno. A pool without send_proxy sends nothing. */
int pp_send_to_backend(enum send_proxy mode, int fd, const struct pp_client_info *ci);

/* The header a health check of a send_proxy pool starts with, into out:
 * no client to speak for, so v2 says LOCAL and v1 "UNKNOWN" (the backend
 * takes the connection's own addresses, as the specification asks of
 * checks). Its length; 0 for a pool without send_proxy. */
size_t pp_check_header(enum send_proxy mode, uint8_t *out, size_t cap);

#endif
