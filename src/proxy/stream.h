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

/* The protocols' operations are tcp_proto_ops and udp_proto_ops (proxy/proto.h). */

#endif
