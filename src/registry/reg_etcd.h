/* A small asynchronous etcd v3 client on the core event loop: put,
 * delete, range, txn, lease grant / keepalive / revoke, and watch streams,
 * over etcd's JSON gateway (/v3/...) with libcurl's multi interface. curl's
 * sockets are watched by ev_io and its timeouts by an ev_timer
 * (CURLMOPT_SOCKETFUNCTION / CURLMOPT_TIMERFUNCTION), so nothing here
 * ever blocks the loop.
 *
 * Endpoints and failover: requests go to the "current" endpoint; when it
 * cannot be reached (refused, reset, timed out) or answers that it cannot
 * serve (HTTP 5xx / gRPC Unavailable: no leader, stopping), the request
 * is sent to the next endpoint, and so on until each was tried once or
 * the request's time (request_timeout_ms, all tries together) runs out;
 * the endpoint that answered becomes the current one. Every request is
 * idempotent in effect (a put or delete done twice leaves the same
 * state), so a retry after a timeout is safe.
 *
 * Watches reconnect on their own: when the stream breaks, the watch is
 * started again on the next endpoint from the revision after the last one
 * it delivered, after a short backoff (100 ms doubling to 2 s), forever,
 * until stopped. Every watch and keepalive asks for a member with a leader
 * (gRPC metadata hasleader=true), so a member cut off from its cluster
 * ends the stream instead of going silent. If the revision to resume from
 * was compacted, the watch says so (on_compacted) and stops: the caller
 * loads again (range) and starts a new watch.
 *
 * Callbacks: every request's callback is called exactly once, from the
 * event loop (never from inside the call that started it), with ok or a
 * reason naming the endpoint and what failed. reg_etcd_free() drops what
 * is pending without calling back.
 *
 * Keys and values are byte strings (length given); prefix requests cover
 * every key that starts with the given key.
 */
#ifndef SLUICE_REGISTRY_REG_ETCD_H
#define SLUICE_REGISTRY_REG_ETCD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/evloop.h"
#include "registry/reg_etcd_msg.h"

#define REG_ETCD_MAX_ENDPOINTS 16
#define REG_ETCD_ENDPOINT_MAX 255

struct reg_etcd_conf {
    /* "http://host:port" (https works too, with the system's CAs). */
    char endpoints[REG_ETCD_MAX_ENDPOINTS][REG_ETCD_ENDPOINT_MAX + 1];
    size_t n_endpoints;
    uint32_t connect_timeout_ms;  /* one connection attempt (default 1 s) */
    uint32_t request_timeout_ms;  /* a request, all endpoints tried (default 5 s) */
};

void reg_etcd_conf_defaults(struct reg_etcd_conf *c);
/* -1 with a reason for no endpoint, a bad URL or a timeout of 0. */
int reg_etcd_conf_check(const struct reg_etcd_conf *c, char *err, size_t errlen);

/* What a request's callback gets. reply is valid during the call only;
 * when ok is false, reason says why and reply is zero. */
struct reg_etcd_result {
    bool ok;
    const char *reason;
    const char *endpoint;             /* the one that answered or failed last */
    const struct reg_etcd_reply *reply;
};

typedef void reg_etcd_cb(void *arg, const struct reg_etcd_result *r);

struct reg_etcd;

struct reg_etcd *reg_etcd_new(struct ev_loop *loop, const struct reg_etcd_conf *c, char *err, size_t errlen);
/* Cancel everything (no callbacks) and free. */
void reg_etcd_free(struct reg_etcd *e);

/* The endpoint requests go to now. */
const char *reg_etcd_endpoint(const struct reg_etcd *e);

struct reg_etcd_stats {
    uint64_t requests, failed, retries; /* retries: tries on another endpoint */
    uint64_t watch_restarts;
    size_t in_flight;
};
void reg_etcd_stats(const struct reg_etcd *e, struct reg_etcd_stats *out);

/* ---- key-value ------------------------------------------------------------ */

/* lease 0: none. The reply's header.revision is the put's revision. */
int reg_etcd_put(struct reg_etcd *e, const void *key, size_t key_len, const void *value, size_t value_len,
                 int64_t lease, reg_etcd_cb *cb, void *arg);
/* The reply's count is how many keys were deleted. */
int reg_etcd_delete(struct reg_etcd *e, const void *key, size_t key_len, bool prefix, reg_etcd_cb *cb, void *arg);
/* revision 0: the newest. The reply's kvs hold the keys, in key order;
 * header.revision is the store's revision the range was read at. */
int reg_etcd_range(struct reg_etcd *e, const void *key, size_t key_len, bool prefix, int64_t revision,
                   reg_etcd_cb *cb, void *arg);

/* A transaction: if every compare holds, the success ops run, else the
 * failure ops; all at one revision. */
enum reg_etcd_op_kind { REG_ETCD_OP_PUT, REG_ETCD_OP_DELETE, REG_ETCD_OP_DELETE_PREFIX };
struct reg_etcd_op {
    enum reg_etcd_op_kind kind;
    const void *key, *value;
    size_t key_len, value_len;
    int64_t lease;
};
enum reg_etcd_cmp_target { REG_ETCD_CMP_VERSION, REG_ETCD_CMP_CREATE, REG_ETCD_CMP_MOD, REG_ETCD_CMP_LEASE };
enum reg_etcd_cmp_result { REG_ETCD_CMP_EQUAL, REG_ETCD_CMP_NOT_EQUAL, REG_ETCD_CMP_GREATER, REG_ETCD_CMP_LESS };
struct reg_etcd_cmp {
    const void *key;
    size_t key_len;
    enum reg_etcd_cmp_target target;
    enum reg_etcd_cmp_result result;
    int64_t value;
};
struct reg_etcd_txn {
    const struct reg_etcd_cmp *cmps;
    size_t n_cmps;
    const struct reg_etcd_op *success, *failure;
    size_t n_success, n_failure;
};
/* The reply's succeeded says which branch ran. */
int reg_etcd_txn(struct reg_etcd *e, const struct reg_etcd_txn *t, reg_etcd_cb *cb, void *arg);

/* ---- leases ----------------------------------------------------------------- */

/* The reply's lease_id and ttl (seconds) name the new lease. */
int reg_etcd_lease_grant(struct reg_etcd *e, uint32_t ttl_s, reg_etcd_cb *cb, void *arg);
/* One keepalive; the reply's ttl is the lease's new TTL, 0 when the lease
 * is gone (expired or revoked: its keys are deleted). */
int reg_etcd_lease_keepalive(struct reg_etcd *e, int64_t lease, reg_etcd_cb *cb, void *arg);
int reg_etcd_lease_revoke(struct reg_etcd *e, int64_t lease, reg_etcd_cb *cb, void *arg);

/* ---- watches ------------------------------------------------------------------ */

struct reg_etcd_watch_cbs {
    /* Events of one stream message, in revision order; each revision's
     * events come whole in one call. */
    void (*events)(void *arg, const struct reg_etcd_event *ev, size_t n, int64_t revision);
    /* The stream is up (a watch was created) or down (reason). Called on
     * every change, so the caller can tell "live" from "catching up". */
    void (*state)(void *arg, bool up, const char *reason);
    /* The revision to resume from was compacted away: the watch has
     * stopped; load again and start a new one. */
    void (*compacted)(void *arg, int64_t compact_revision);
    void *arg;
};

struct reg_etcd_watch;

/* Watch key (or every key under it, prefix) from start_revision (0: from
 * now). The callbacks come from the loop. NULL with a reason on bad
 * arguments or out of memory. */
struct reg_etcd_watch *reg_etcd_watch_start(struct reg_etcd *e, const void *key, size_t key_len, bool prefix,
                                            int64_t start_revision, const struct reg_etcd_watch_cbs *cbs,
                                            char *err, size_t errlen);
/* The revision the next event must be above (the last delivered, or
 * start - 1). */
int64_t reg_etcd_watch_revision(const struct reg_etcd_watch *w);
bool reg_etcd_watch_up(const struct reg_etcd_watch *w);
/* Stop and free (no callbacks after). Safe from inside its callbacks. */
void reg_etcd_watch_stop(struct reg_etcd_watch *w);

#endif
