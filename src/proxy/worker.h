/* A proxy worker: one process, one event loop, shared nothing with the
 * other workers except the read-mostly shared region (proxy/shared.h).
 *
 * The master creates the listening sockets (one SO_REUSEPORT socket per
 * listener per worker slot) and keeps them open across reloads and worker
 * restarts, so a connection waiting in an accept queue is never lost: the
 * worker that replaces another accepts from the very same socket.
 */
#ifndef SLUICE_PROXY_WORKER_H
#define SLUICE_PROXY_WORKER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/evloop.h"
#include "proxy/proxy_conf.h"
#include "proxy/shared.h"
#include "proxy/tls_upstream.h"

struct worker;
struct upstream_conn;
struct proxy_proto_ops;
struct tls_server;
struct tls_session_store;

struct backend_rt {
    size_t index;                     /* in its pool */
    size_t gidx;                      /* in the shared region */
    const struct cfg_backend *cfg;
    struct shared_backend *sh;
    struct backend_counters *ctr;     /* this worker's row */
    struct upstream_conn *idle;       /* pooled keep-alive connections (LIFO) */
    uint32_t n_idle;
    char sticky_token[17];            /* cookie value that names this backend */
    /* A discovered pool's slot: cfg points at slot_cfg, this worker's copy
     * of the member the master put in the slot (see pool_sync_slots). */
    struct cfg_backend slot_cfg;
    uint32_t slot_seq;                /* the slot's sequence slot_cfg was read at */
    bool slot_active;                 /* SLOT_ACTIVE: may take new requests */
    char slot_key[2][64];             /* Maglev identity; flips on a new member so the
                                       * balancer sees a new key pointer */
    uint8_t slot_key_flip;
    struct tls_upstream_session tls_sess; /* TLS pools: the session to resume (proxy/tls_upstream.h) */
};

struct pool_rt {
    const struct cfg_pool *cfg;
    size_t index;
    struct backend_rt *b;
    size_t n;
    struct lb_state *lb;
    uint32_t *weights;                /* effective weights, refreshed on the tick */
    uint32_t *active;                 /* connections in use, per backend (least_conn) */
    uint32_t *outstanding;            /* requests in flight, per backend (p2c) */
    const char **keys;                /* backend "ip:port", Maglev identity */
    uint32_t available;               /* backends with weight > 0 */
    bool discovered;                  /* b[] are slots of discovered members */
    SSL_CTX *tls_ctx;                 /* "tls:" pools: the client context; NULL = plain */
};

struct listener_rt {
    struct worker *w;
    const struct cfg_listener *cfg;
    size_t index;
    int fd;
    struct ev_io io;
    struct listener_counters *ctr;    /* this worker's row */
    struct access_log *alog;
    const struct proxy_proto_ops *ops; /* its protocol (proxy/proto.h), set once */
    void *proto_state;                /* the protocol's own, from ops->init to ops->fini */
    struct tls_server *tls;           /* cfg->tls built (proxy/tls.h); NULL = plain */
};

struct worker {
    uint32_t id;
    struct ev_loop *loop;
    const struct proxy_conf *cfg;     /* the proxy part of its configuration */
    struct shared_state *sh;
    struct tls_session_store *const *tls_sessions; /* [listener]: its session store, NULL without tls */
    struct pool_rt *pools;
    size_t n_pools;
    struct listener_rt *listeners;
    size_t n_listeners;
    struct ev_timer tick;
    struct ev_io signal_io;
    int signal_fd;
    bool draining;                    /* SIGTERM: finish in-flight work, then exit */
    uint64_t drain_deadline;
    uint32_t n_conns;                 /* client connections and sessions, all protocols */
    uint64_t ticks;                   /* 100 ms ticks so far */
    bool accept_paused;
    uint64_t last_fd_warning;         /* rate limit for the out-of-descriptors warning */
    uint64_t rng;
    int reserve_fd;                   /* spare descriptor, see worker_accept_failed */
};

/* Run a worker until it has drained after SIGTERM. listen_fds[i] is the
 * socket of cfg->listeners[i] for this worker's slot; tls_sessions[i] the
 * session store (proxy/tls_session.h) the master made for it before
 * forking, NULL for a listener without tls. Returns the exit code. */
int worker_main(const struct proxy_conf *cfg, struct shared_state *sh, uint32_t id, const int *listen_fds,
                struct tls_session_store *const *tls_sessions);

/* Bookkeeping for every client connection, whatever its protocol: counts
 * it against limits.max_connections and pauses/resumes accepting. */
void worker_conn_opened(struct worker *w, struct listener_rt *l);
void worker_conn_closed(struct worker *w, struct listener_rt *l);
/* True when a listener may not take one more connection right now. */
bool worker_at_limit(struct worker *w, struct listener_rt *l);
/* accept() failed with errno err. Out of descriptors, the connection
 * stays queued and the level-triggered listener would wake the loop at
 * once, forever: give up the spare descriptor, take the connection and
 * close it, so the queue drains instead of spinning. */
void worker_accept_failed(struct listener_rt *l, int err);

/* xorshift64*: jitter, tie-breaking, seeds (not for secrets). */
uint32_t worker_random(struct worker *w);

#endif
