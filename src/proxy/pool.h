/* Pools of a worker: backend selection and passive health, shared by
 * every protocol (HTTP, TCP, UDP).
 *
 * The runtime types (struct pool_rt, struct backend_rt) are in worker.h,
 * which the worker fills from the configuration; this file is what a
 * protocol calls to choose a backend and to report how it went. None of
 * these functions allocates on the pick path.
 */
#ifndef SLUICE_PROXY_POOL_H
#define SLUICE_PROXY_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/evloop.h"
#include "lib/addr.h"
#include "lib/buffer.h"
#include "proxy/proxy_protocol.h"
#include "proxy/transport.h"
#include "proxy/worker.h"

/* A discovered pool: pick up the members the master put in its slots
 * (a new member's address; a removed one's idle connections closed). */
void pool_sync_slots(struct worker *w, struct pool_rt *p);
/* Recompute effective weights from the shared region (cheap if unchanged). */
void pool_refresh(struct worker *w, struct pool_rt *p);
/* Pick a backend: -1 when none is available. */
int pool_pick(struct worker *w, struct pool_rt *p, uint64_t key_hash, const uint8_t *exclude);
/* Passive health: a connect failure / 5xx (ok=false) or a good answer (ok=true). */
void backend_report(struct worker *w, struct pool_rt *p, struct backend_rt *b, bool ok);
/* Non-blocking socket + connect to addr. Returns fd (connect may be in
 * progress) or -1 with errno set. */
int upstream_socket_connect(const struct sl_addr *addr, int type);

/* ---- keep-alive connections to backends ----
 *
 * A connection to a backend is lent to one owner at a time (an HTTP
 * transaction) and, when the owner is done with it and it is clean, kept
 * on its backend's idle list (LIFO, at most the pool's `keepalive`) for
 * the next owner. While it is lent, its events go to the owner's callback
 * (io.data is the connection, owner is the user); while pooled, the pool
 * watches it and closes it as soon as the server speaks or hangs up,
 * since a pooled connection that did either is no longer reusable.
 * Gauges: the backend's `active` counts lent connections, `idle` pooled
 * ones. */
struct upstream_conn {
    struct transport tr;          /* the backend's socket */
    struct ev_io io;
    struct worker *w;
    struct pool_rt *pool;
    struct backend_rt *b;
    void *owner;                  /* the user it is lent to, NULL while pooled */
    struct upstream_conn *next_idle, *prev_idle;
    uint64_t idle_since;
    bool connecting;              /* connect() in progress */
    bool reused;                  /* came from the idle list */
    bool eof;                     /* the backend closed its side */
    struct buf in;                /* bytes from the backend */
    /* send_proxy pools: the client the connection's PROXY header named.
     * A header is said once per connection, so the connection may only
     * ever carry that client's requests (upstream_get_for). */
    struct conn_origin pp_client;
};

/* A pooled connection to b, or a new one (connecting). Its events go to
 * cb with io->data = the connection. NULL with errno set when a socket
 * cannot be opened or connect() fails at once. */
struct upstream_conn *upstream_get(struct worker *w, struct pool_rt *p, struct backend_rt *b, ev_io_cb cb,
                                   void *owner);
/* The same for a request of client (NULL: any). In a send_proxy pool only
 * a pooled connection opened for the same client (addresses both ways) is
 * reused; a new one remembers the client. As HAProxy marks such
 * connections private to their client. */
struct upstream_conn *upstream_get_for(struct worker *w, struct pool_rt *p, struct backend_rt *b, ev_io_cb cb,
                                       void *owner, const struct conn_origin *client);
/* The owner is done and the connection is clean (no unread bytes, the
 * backend keeps it open): pool it, or close it if the backend's idle list
 * is full or the worker is draining. */
void upstream_release(struct upstream_conn *u);
/* Set tr over fd (connecting to b) as the pool speaks to its backends:
 * plain, or TLS with the pool's client context, SNI, verification and
 * the backend's saved session. 0, or -1 with errno (fd left open). */
int pool_upstream_transport(struct pool_rt *p, struct backend_rt *b, struct transport *tr, int fd);

/* Close it, lent or pooled. Freed after the current batch of events. */
void upstream_close(struct upstream_conn *u);
/* Close pooled connections idle for a minute, or all of them while the
 * worker drains. */
void pool_sweep_idle(struct worker *w);

#endif
