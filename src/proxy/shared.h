/* State shared between the master and its workers, in one MAP_SHARED
 * anonymous mapping made before the workers are forked.
 *
 * The master owns the control fields (admin weight and state, active health
 * result) and workers only read them; each worker owns its own row of
 * counters and the master only reads them. The one place where several
 * writers meet is passive health (consecutive failures, ejection), which
 * uses atomics. No locks anywhere: a worker polls the control fields on its
 * 100 ms tick and rebuilds its balancing tables when they changed.
 *
 * A reload builds a new region for the new configuration; backend state
 * (health, admin changes, ejection, counters) carries over by pool name and
 * backend address.
 */
#ifndef SLUICE_PROXY_SHARED_H
#define SLUICE_PROXY_SHARED_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/latency_hist.h"
#include "core/pool_view.h"
#include "proxy/proxy_conf.h"

struct ratelimit_region;

enum backend_health { HEALTH_UP = 0, HEALTH_DOWN = 1 };

/* Control and passive-health state of one backend. */
struct shared_backend {
    _Atomic uint32_t weight;          /* admin weight (config, then API) */
    _Atomic uint32_t admin;           /* enum backend_admin */
    _Atomic uint32_t health;          /* enum backend_health, from active checks */
    _Atomic uint64_t up_since_ms;     /* monotonic ms when it last came up (slow start) */
    _Atomic uint32_t consecutive_fails;
    _Atomic uint32_t eject_count;     /* ejections in a row, for back-off */
    _Atomic uint64_t ejected_until_ms;
    /* master-only bookkeeping of the active checker, shown by the API */
    uint32_t check_rise, check_fall;  /* current streaks */
    uint64_t checks_ok, checks_failed;
    char last_check[96];              /* last result in words */
    uint64_t health_changed_ms;       /* ev_clock_ms() of the last UP/DOWN change, 0 = none yet */
    /* A discovered pool's slot (proxy/slots.h): which member sits here.
     * The master writes slot_addr under slot_seq, a sequence lock (odd
     * while it writes), so a worker never reads a torn address: it reads
     * the sequence, the address, the sequence again, and retries if it
     * moved. slot_state is enum slot_state (SLOT_EMPTY for fixed pools'
     * backends, which never look at it). */
    _Atomic uint32_t slot_seq;
    _Atomic uint32_t slot_state;
    struct sl_addr slot_addr;
};

/* One worker's counters for one backend. Written by that worker only. */
struct backend_counters {
    _Atomic uint64_t requests;        /* requests sent (or TCP/UDP sessions opened) */
    _Atomic uint64_t responses[6];    /* by class: [1]=1xx .. [5]=5xx, [0]=other */
    _Atomic uint64_t connect_failures;
    _Atomic uint64_t upstream_errors; /* resets, timeouts, bad responses */
    _Atomic uint64_t retries;
    /* Bytes on the wire as Sluice's sockets see them (heads, bodies,
     * tunnelled bytes; UDP payloads): written to / read from the backend. */
    _Atomic uint64_t bytes_sent;
    _Atomic uint64_t bytes_received;
    _Atomic uint32_t active;          /* connections in use now (gauge) */
    _Atomic uint32_t idle;            /* pooled idle connections now (gauge) */
    /* Latency (core/latency_hist.h): a new connection's connect (TCP
     * only), and from the start of the try to the first response byte
     * (HTTP; connect included, as nginx's $upstream_header_time). */
    struct latency_hist connect_time;
    struct latency_hist header_time;
};

/* Why a TLS handshake failed, the label of sluice_tls_handshake_failures_total. */
enum tls_fail_reason {
    TLS_FAIL_PROTOCOL,   /* the peer spoke something else, or no common version, cipher or curve */
    TLS_FAIL_CLOSED,     /* the peer closed or reset the connection mid-handshake */
    TLS_FAIL_TIMEOUT,    /* tls.handshake_timeout ran out */
    TLS_FAIL_CLIENT_CERT,/* tls.client_certificates: none sent (required), or it did not verify */
    TLS_FAIL_COUNT
};

/* One worker's TLS counters for one listener (tls.h counts them). */
struct tls_counters {
    _Atomic uint64_t handshakes[2][2]; /* completed: [0] TLSv1.2, [1] TLSv1.3; [0] full, [1] resumed */
    _Atomic uint64_t failures[TLS_FAIL_COUNT];
};

/* One worker's counters for one listener. */
struct listener_counters {
    _Atomic uint64_t connections;     /* accepted */
    _Atomic uint64_t requests;
    _Atomic uint64_t responses[6];
    _Atomic uint64_t rejected;        /* 4xx produced by Sluice for bad input */
    _Atomic uint64_t no_backend;      /* 503: nothing available */
    _Atomic uint64_t timeouts;
    /* Bytes on the wire, as for a backend: read from / written to clients. */
    _Atomic uint64_t bytes_received;
    _Atomic uint64_t bytes_sent;
    _Atomic uint32_t active;          /* open client connections (gauge) */
    _Atomic uint64_t underscore_dropped[2]; /* header fields dropped for a '_' in the name:
                                             * [0] request, [1] response (framing look-alikes) */
    _Atomic uint64_t body_timeouts;   /* request bodies cut by timeouts.client_body */
    struct tls_counters tls;          /* listeners with tls: only */
    _Atomic uint64_t h2_connections;  /* client connections that spoke HTTP/2 */
    _Atomic uint64_t h2_streams;      /* HTTP/2 requests with a well-formed head */
    _Atomic uint64_t h2_flood_closes[6]; /* by enum h2_flood (proxy/h2_session.h) */
    _Atomic uint64_t proxy_headers[4]; /* by enum pp_result (proxy/proxy_protocol.h) */
    /* Latency: an HTTP request from its first byte to its last response
     * byte (or our own answer); a tcp listener's connection, open to close. */
    struct latency_hist request_time;
    struct latency_hist connection_time;
};

struct shared_worker {
    _Atomic int32_t pid;
    _Atomic uint64_t heartbeat_ms;    /* last tick */
    _Atomic uint64_t restarts;
};

struct shared_state {
    size_t size;                      /* bytes mapped */
    uint32_t n_workers;
    size_t n_backends;                /* across all pools, in config order */
    size_t n_listeners;
    size_t *pool_first;               /* pool p's backends (or slots, cfg_pool_slots) are
                                       * [pool_first[p], pool_first[p+1]) */
    struct shared_backend *backends;  /* [n_backends] */
    struct backend_counters *bctr;    /* [n_workers][n_backends] */
    struct listener_counters *lctr;   /* [n_workers][n_listeners] */
    struct shared_worker *workers;    /* [n_workers] */
    _Atomic uint64_t generation;      /* bumped by the master on every control change */
    struct ratelimit_region *rl;      /* rate and connection limits (proxy/ratelimit.h); NULL = none */
};

/* Map a region sized for cfg and n_workers, initialised from cfg. */
struct shared_state *shared_create(const struct proxy_conf *cfg, uint32_t n_workers);
void shared_destroy(struct shared_state *sh);

/* Copy health, admin state, ejection and counter totals from an older
 * region for backends that exist in both (same pool name and address). */
void shared_carry_over(struct shared_state *dst, const struct proxy_conf *dst_cfg,
                       const struct shared_state *src, const struct proxy_conf *src_cfg);

static inline struct backend_counters *shared_bctr(struct shared_state *sh, uint32_t worker, size_t backend)
{
    return &sh->bctr[(size_t)worker * sh->n_backends + backend];
}

static inline struct listener_counters *shared_lctr(struct shared_state *sh, uint32_t worker, size_t listener)
{
    return &sh->lctr[(size_t)worker * sh->n_listeners + listener];
}

/* Sums over workers, for the API and /metrics. */
void shared_sum_backend(const struct shared_state *sh, size_t backend, struct backend_counters *out);
void shared_sum_listener(const struct shared_state *sh, size_t listener, struct listener_counters *out);

/* Global index of backend b of pool p. */
static inline size_t shared_backend_index(const struct shared_state *sh, size_t pool, size_t b)
{
    return sh->pool_first[pool] + b;
}

/* The address backend b of pool p has now: its configured one, or a
 * discovered pool's slot member (NULL for an empty slot). For the master,
 * which is the slots' only writer. */
const struct sl_addr *shared_backend_addr(const struct shared_state *sh, const struct proxy_conf *cfg, size_t pool,
                                          size_t b);

/* Master: put a member into slot g (addr NULL: empty it), state as given;
 * bumps the region's generation. */
void shared_slot_write(struct shared_state *sh, size_t g, const struct sl_addr *addr, uint32_t state);
/* Worker: the slot's sequence now (even when stable), and a consistent
 * copy of its address; returns the sequence the copy belongs to. */
uint32_t shared_slot_seq(const struct shared_backend *b);
uint32_t shared_slot_read(const struct shared_backend *b, struct sl_addr *out);

/* The backend's control values now (relaxed loads). */
void shared_backend_ctl(const struct shared_backend *b, struct backend_ctl *out);

/* backend_effective_weight() of them: used by workers for balancing. */
uint32_t shared_effective_weight(const struct shared_backend *b, uint32_t slow_start_ms, uint64_t now_ms);

#endif
