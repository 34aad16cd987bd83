/* The layer-4 stream proxy of a worker: TCP relaying and UDP sessions.
 *
 * TCP: every accepted client gets one backend connection, chosen from the
 * listener's pool (retrying on other backends while nothing has been sent),
 * and bytes are relayed both ways through bounded per-direction buffers, or
 * through a pipe with splice(2) when the listener has `splice: true`. Half
 * closes are propagated; an error or reset on either side closes both.
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

#include <stddef.h>

#include "proxy/worker.h"

/* A TCP listener's socket is readable: accept as many as the limits allow
 * and start relaying each to a backend of the listener's pool. */
void stream_tcp_accept(struct listener_rt *l);

/* Set up a UDP listener: l->fd is a bound non-blocking UDP socket. Creates
 * the session table in l->udp and registers l->io. Returns 0, or -1 (out of
 * memory, or the listener has no pool). */
int stream_udp_init(struct listener_rt *l);

/* The worker's 100 ms tick: expires idle UDP sessions. */
void stream_tick(struct worker *w);

/* SIGTERM: stop accepting TCP clients and stop reading the UDP listeners
 * (a replacement worker shares those sockets and takes the new traffic);
 * open TCP connections run to their end and UDP sessions still deliver
 * replies until they go idle. Returns how many are still open; cheap enough
 * to call on every tick. */
size_t stream_drain(struct worker *w);

/* Close every stream connection and session of the worker and free the UDP
 * tables. Memory that events may still reference is released through
 * ev_defer_free(), i.e. on the next loop iteration or ev_loop_free(). */
void stream_shutdown(struct worker *w);

#endif
