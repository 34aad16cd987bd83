/* The layer-4 stream proxy of a worker: TCP relaying and UDP sessions.
 *
 * TCP: every accepted client gets one backend connection, chosen from the
 * listener's pool (retrying on other backends while nothing has been sent),
 * and bytes are relayed both ways through bounded per-direction buffers by
 * the two sides' transports (proxy/transport.h), or through a pipe with
 * splice(2) when the listener has `splice: true` and both transports can
 * splice (plain ones can; splicing bypasses them). Half closes are
 * propagated; an error or reset on either side closes both.
 *
 * UDP: one session per client address, each with its own connected socket
 * to the chosen backend, so replies find their way back to the client and
 * the same client keeps talking to the same backend. Sessions end after
 * timeouts.udp_session_ms without traffic. Datagrams that cannot be sent
 * right now are dropped (and counted as upstream_errors of the backend):
 * nothing is queued.
 *
 * Counters: backend requests (= sessions opened), bytes_sent/bytes_received,
 * connect_failures, retries (on the backend that failed), upstream_errors
 * and the active gauge; listener connections and requests (both = sessions),
 * bytes_received/bytes_sent, no_backend and timeouts (TCP connect and idle). The listener's active gauge is
 * kept by worker_conn_opened/closed.
 *
 * Access log (listener access_log): one line per TCP connection ("TCP") or
 * UDP session ("UDP") when it ends, with the bytes sent to the client, the
 * backend and the duration. TCP status: 200 ended normally, 499 client
 * reset, 502 backend failed (connect attempts exhausted, or reset), 503 no
 * backend available, 504 idle timeout. UDP sessions always log 200.
 */
#ifndef SLUICE_PROXY_STREAM_H
#define SLUICE_PROXY_STREAM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "proxy/worker.h"

/* The protocols' operations are tcp_proto_ops (stream_tcp.c) and
 * udp_proto_ops (stream_udp.c), see proxy/proto.h. What follows is what
 * the two share (stream.c). */

static inline void ctr_add(_Atomic uint64_t *c, uint64_t v)
{
    atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

/* At most one warning per second per call site: conditions like fd
 * exhaustion or an empty pool recur on every event and would flood the log. */
bool stream_warn_allowed(uint64_t *last, uint64_t now);
/* Failures that say nothing about the backend: this process ran out of
 * something. They must not count against the backend's health. */
bool stream_local_error(int err);
/* The balancing key of a client: its IP for a hash pool, else 0. */
uint64_t stream_pick_key(const struct pool_rt *p, const struct sockaddr_storage *ss);
/* A connection or session holds its backend from the connect attempt on,
 * so least_conn sees connects in flight too. */
void stream_backend_acquire(struct pool_rt *p, struct backend_rt *b);
void stream_backend_release(struct pool_rt *p, struct backend_rt *b);
/* A TCP connection or UDP session opened or closed: the listener's
 * counters and the worker's connection count. */
void stream_client_opened(struct listener_rt *l);
void stream_client_closed(struct listener_rt *l);
uint64_t stream_now_us(void);
/* One access-log line per TCP connection or UDP session (see above for
 * what the status means); tr: the client's transport, for a TLS
 * listener's details (NULL for UDP). */
struct transport;
void stream_log(struct listener_rt *l, const struct sockaddr_storage *client, const char *what,
                const struct backend_rt *b, int status, uint64_t to_client, uint64_t started_us,
                const struct transport *tr);

#endif
