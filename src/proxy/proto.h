/* The seam between the worker and the protocols it serves.
 *
 * Each protocol module (HTTP, TCP, UDP) exports one constant table of
 * operations, and the worker sets a listener's table once, from its
 * configured protocol (proxy_proto_of), as nginx sets ls->handler. From
 * then on the worker calls l->ops->accept, ->tick, ->drain and ->shutdown
 * without knowing which protocol is behind them, and includes no protocol
 * header: a new protocol (HTTP/2 with TLS, say) is a new table here and
 * one more case in proxy_proto_of().
 *
 * Every operation takes the listener; a protocol keeps what it needs per
 * listener (its connections, idle lists, session tables) in
 * l->proto_state, which it owns from init to fini.
 */
#ifndef SLUICE_PROXY_PROTO_H
#define SLUICE_PROXY_PROTO_H

#include <stdbool.h>
#include <stddef.h>

#include "proxy/proxy_conf.h"

struct listener_rt;

struct proxy_proto_ops {
    const char *name;   /* "http", "tcp", "udp": for log messages */

    /* Optional. Set up l->proto_state. A protocol without accept (a
     * datagram listener) registers l->io itself here. Returns 0, or -1
     * with a reason in err. */
    int (*init)(struct listener_rt *l, char *err, size_t errlen);

    /* The listening socket is readable: accept as many connections as the
     * limits allow. NULL for a protocol that reads its listening socket
     * itself (UDP): the worker then neither polls, pauses nor closes the
     * socket on a drain. */
    void (*accept)(struct listener_rt *l);

    /* Optional. The listener is at limits.max_connections: true if a new
     * connection could still be taken by closing an idle one (HTTP
     * keep-alive clients). While it is, the worker keeps polling the
     * listener instead of pausing it. */
    bool (*can_make_room)(const struct listener_rt *l);

    /* Optional. The worker's 100 ms tick (timeouts that no event wakes,
     * idle connections to close while draining). */
    void (*tick)(struct listener_rt *l);

    /* Optional. SIGTERM: take no new work (the listening socket of an
     * accepting protocol is already closed); what is open runs to its end.
     * The worker exits once w->n_conns reaches 0 or the drain timeout
     * passes. */
    void (*drain)(struct listener_rt *l);

    /* Optional. Close every connection and session of the listener (the
     * drain timeout passed, or the worker exits). Memory that events may
     * still reference is released through ev_defer_free(). */
    void (*shutdown)(struct listener_rt *l);

    /* Optional. Free l->proto_state, after shutdown or after a failed
     * setup (then init may not have run: proto_state is NULL). */
    void (*fini)(struct listener_rt *l);
};

/* One per protocol module: proxy/http_conn.c, stream_tcp.c, stream_udp.c. */
extern const struct proxy_proto_ops http_proto_ops;
extern const struct proxy_proto_ops tcp_proto_ops;
extern const struct proxy_proto_ops udp_proto_ops;

/* The table of a configured protocol. */
const struct proxy_proto_ops *proxy_proto_of(enum listener_proto proto);

#endif
