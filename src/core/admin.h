/* The admin HTTP API of a Sluice daemon.
 *
 * A small HTTP/1.1 server (keep-alive, pipelining answered in order) on the
 * daemon's event loop. It never blocks the loop: sockets are non-blocking,
 * buffers are bounded (16 KiB head, 64 KiB body), at most ADMIN_MAX_CONNS
 * clients at a time (or what the daemon sets, struct admin_options), and
 * a client that leaves a request unfinished (or does not read its answer)
 * for 30 s (idem) is dropped. A handler may answer later (admin_defer:
 * blocking queries, writes acknowledged once durable); meanwhile the
 * client's later requests wait and the idle timer does not run.
 *
 * What it serves is a struct admin_site, which knows no tier:
 *
 *   GET /metrics      the process families (sluice_info, sluice_workers,
 *                     ...), then every collector of site->metrics
 *   GET /api/status   the daemon: version, pid, uptime, workers, reloads,
 *                     config file, then what tiers add (admin_status_part)
 *   GET /ready        200 {"ready": true} when site->ready says the daemon
 *                     serves, else 503 {"ready": false, "reason": ...}
 *   anything else     the mount whose path prefix matches (admin_mount),
 *                     else 404
 *
 * A tier mounts its routes (the proxy and `sluice l4`: /api/pools through
 * core/pool_view.h; `sluice l4`: /api/l4) and registers its metric
 * families when its daemon starts. Every request reads the site afresh, so
 * a daemon may swap what its handlers look at (a reload) between requests
 * without telling the server; the site outlives servers, so admin.listen
 * can move to a new server with the same site.
 */
#ifndef SLUICE_CORE_ADMIN_H
#define SLUICE_CORE_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "lib/addr.h"
#include "core/admin_auth.h"
#include "core/evloop.h"
#include "core/metrics.h"

struct http1_message;

#define ADMIN_MAX_CONNS 256
#define ADMIN_IDLE_MS 30000
#define ADMIN_MAX_HEAD 16384
#define ADMIN_MAX_BODY 65536
#define ADMIN_MAX_MOUNTS 16
#define ADMIN_MAX_STATUS_PARTS 8
#define ADMIN_MAX_PREFIX_SEGS 4
#define ADMIN_MAX_QUERY 32

/* One answer of the API, independent of the connection it goes to. */
struct admin_reply {
    int status;
    const char *content_type;         /* static string */
    const char *allow;                /* static string, for 405; NULL otherwise */
    char *body;                       /* malloc'd */
    size_t body_len;
};

/* One parameter of the query string, decoded. */
struct admin_query_param {
    const char *key;
    const char *value;                /* "" for "?key" and "?key=" */
};

/* One request as a mount sees it. Everything it points to is valid only
 * while the handler runs: a handler that answers later (admin_defer)
 * copies what it needs. Designated initializers only: fields may be
 * added. */
struct admin_request {
    const char *method;               /* as sent, NUL-terminated ("GET", ...) */
    const char *const *seg;           /* path segments after the mount's prefix, percent-decoded */
    size_t n_seg;
    const char *body;
    size_t body_len;
    uint64_t now_ms;                  /* ev_clock_ms() when the request was routed */
    /* The query string ("?index=5&wait=30s&tag=a&tag=b"), in the order
     * sent, repeated keys kept; see admin_query_get. */
    const struct admin_query_param *query;
    size_t n_query;
    struct admin_conn *conn;          /* the server's, for admin_defer; NULL from admin_handle */
    /* The parsed head (lib/http1.h), for admin_header; NULL from admin_handle. */
    const struct http1_message *head;
};

/* Fills reply (admin_reply_* below); arg is the one given to admin_mount. */
typedef void admin_handler_fn(void *arg, const struct admin_request *rq, struct admin_reply *reply);

/* Adds keys to the /api/status document. */
typedef void admin_status_fn(void *arg, json_t *status);

/* The daemon as /api/status and the process families report it; the
 * daemon keeps these fields current. */
struct admin_status {
    const char *version;
    const char *config_path;          /* NULL: none */
    uint64_t started_ms;              /* ev_clock_ms() at start */
    uint32_t reloads;
    uint64_t worker_restarts;
    const int *worker_pids;           /* [n_workers], 0 = not running */
    uint32_t n_workers;
    /* Reloads (daemon_reload_outcome): the families
     * sluice_config_reloads_total{result}, sluice_config_last_reload_*
     * are written when `reloadable`. reloads above counts successes. */
    bool reloadable;
    uint64_t reload_failures;
    bool last_reload_failed;
    uint64_t last_reload_success_unix_ms; /* the start, until a reload succeeds */
};

/* GET /ready: true when the daemon serves; otherwise why not, in why. */
typedef bool admin_ready_fn(void *arg, char *why, size_t whylen);

struct admin_mount {
    const char *method;               /* NULL: any (the handler answers 405 itself) */
    const char *prefix;               /* "/api/pools": matches that path and below */
    size_t seg_off[ADMIN_MAX_PREFIX_SEGS];   /* the prefix's segments, as spans of it */
    size_t seg_len[ADMIN_MAX_PREFIX_SEGS];
    size_t n_segs;
    admin_handler_fn *fn;
    void *arg;
};

struct admin_site {
    struct admin_status status;
    admin_ready_fn *ready;            /* NULL: always ready */
    void *ready_arg;
    struct metrics_registry metrics;
    struct admin_mount mounts[ADMIN_MAX_MOUNTS];
    size_t n_mounts;
    struct {
        admin_status_fn *fn;
        void *arg;
    } status_parts[ADMIN_MAX_STATUS_PARTS];
    size_t n_status_parts;
    char allow[64];                   /* a 405's Allow list built from the mounts */
    /* The server's: the requests whose answers are deferred. Allocated
     * while there are any, so a site needs no freeing. */
    struct admin_defer_table *deferred;
    uint64_t defer_gen;
    /* admin.token_file, token_reads, read_only: every request passes it
     * before it is routed (the daemon sets it from the configuration). */
    struct admin_auth auth;
};

/* Route requests for `prefix` (and the paths below it) with `method` (NULL:
 * any) to fn. Mounts are tried in the order they were made; a path that
 * matches a mount's prefix but none of its methods is answered 405 with
 * the methods that would do. prefix is "/seg[/seg...]", at most
 * ADMIN_MAX_PREFIX_SEGS segments, and must stay valid. Returns 0, or -1
 * when the table is full or the prefix malformed (a programming error). */
int admin_mount(struct admin_site *site, const char *method, const char *prefix, admin_handler_fn *fn, void *arg);

/* Add fn's keys to /api/status. Returns 0, or -1 when full. */
int admin_status_part(struct admin_site *site, admin_status_fn *fn, void *arg);

struct admin_server;

/* What a server may differ in; a zero field takes the default. */
struct admin_options {
    /* Clients served at once (default ADMIN_MAX_CONNS); the next one is
     * answered 503 and closed. Each is a descriptor: the daemon raises
     * its open-file limit to the hard limit at start, and admin_start_with
     * logs a warning when max_conns does not fit under it. A server for
     * more than ADMIN_MAX_CONNS clients also gets a listen backlog of
     * that size (at most 4096) instead of 128. */
    uint32_t max_conns;
    /* A client that leaves a request unfinished, or its answer unread,
     * this long is dropped (default ADMIN_IDLE_MS). It does not run while
     * a deferred answer is awaited (see admin_defer). */
    uint32_t idle_ms;
};

/* Listen on addr (plain TCP, not SO_REUSEPORT; port 0 picks a free port,
 * see admin_port) and serve site on loop until admin_stop. opts may be
 * NULL (the defaults: what admin_start does). NULL with a message in err
 * on failure. */
struct admin_server *admin_start_with(struct ev_loop *loop, const struct sl_addr *addr, struct admin_site *site,
                                      const struct admin_options *opts, char *err, size_t errlen);
struct admin_server *admin_start(struct ev_loop *loop, const struct sl_addr *addr, struct admin_site *site,
                                 char *err, size_t errlen);
/* Change the options of a running server (a reload): the limit applies to
 * the connections accepted from now on (none already open is closed), the
 * idle time to timers armed from now on. opts NULL: the defaults. */
void admin_set_options(struct admin_server *srv, const struct admin_options *opts);
/* Close the listener and every client connection. Safe to call from any
 * callback of the same loop; the memory is released once the current batch
 * of events is done (or by ev_loop_free). */
void admin_stop(struct admin_server *srv);
/* The bound port (useful after listening on port 0). */
uint16_t admin_port(const struct admin_server *srv);
/* Clients connected now (waiting ones included). */
uint32_t admin_connections(const struct admin_server *srv);

/* Render /metrics into a malloc'd, NUL-terminated string (used by tests
 * too). Returns NULL on out of memory. */
char *admin_render_metrics(const struct admin_site *site, size_t *len);

/* For handlers: fill a reply. admin_reply_json takes the reference to
 * doc; admin_reply_text takes the malloc'd text. Error reasons are kept
 * printable ASCII, so they are always valid JSON strings. */
void admin_reply_json(struct admin_reply *r, int status, json_t *doc);
__attribute__((format(printf, 3, 4))) void admin_reply_error(struct admin_reply *r, int status, const char *fmt, ...);
void admin_reply_text(struct admin_reply *r, int status, char *text, size_t len);
/* text/plain; version=0.0.4, the Prometheus exposition type. */
void admin_reply_metrics(struct admin_reply *r, char *text, size_t len);
void admin_reply_method_not_allowed(struct admin_reply *r, const char *allow);

/* GET or HEAD (HEAD is answered like GET, without the body). */
int admin_is_get(const struct admin_request *rq);

/* The query string, as handlers see it. It is split at '&' (empty pieces
 * skipped) and each piece at its first '='; keys and values are
 * percent-decoded with '+' as a space (form encoding, as Go's and so
 * Consul's clients send it). A piece without '=' is a key with the value
 * "". Keys are compared byte for byte (case matters). A request whose
 * query has a malformed escape or a %00, or more than ADMIN_MAX_QUERY
 * parameters, is answered 400 with the reason before any handler sees it
 * (the core's own /metrics and /api/status included): dropping the
 * parameters past the limit could change what a request means. Decoded
 * bytes are not checked for UTF-8; admin_reply_error keeps any that a
 * reason quotes printable.
 *
 * admin_query_get: the value of the first parameter named key, or NULL.
 * admin_query_next: the values of a repeated key one by one; start with
 * *pos = 0, NULL when there are no more. */
const char *admin_query_get(const struct admin_request *rq, const char *key);
const char *admin_query_next(const struct admin_request *rq, const char *key, size_t *pos);

/* admin_header: the value of the request's first header named name
 * (case-insensitive), its length in *len (may be NULL; the value is not
 * NUL-terminated), or NULL when there is none or the request came through
 * admin_handle.
 * admin_token_ok: whether the request carries token, as
 * "X-Sluice-Token: T" or "Authorization: Bearer T" (the first one present
 * is judged), compared in a time that does not depend on how much of it
 * matches. */
const char *admin_header(const struct admin_request *rq, const char *name, size_t *len);
bool admin_token_ok(const struct admin_request *rq, const char *token);
/* Each header on its own (constant time): X-Sluice-Token, and
 * Authorization: Bearer. */
bool admin_x_token_matches(const struct admin_request *rq, const char *token);
bool admin_bearer_matches(const struct admin_request *rq, const char *token);

/* Deferred answers. A handler that cannot answer at once (a blocking
 * query waiting for a change, a write acknowledged once it is durable or
 * once etcd has replied) calls admin_defer while it runs, keeps the
 * handle, returns (anything it filled in its reply is dropped), and later,
 * from any callback of the same loop, answers with admin_complete.
 *
 *   admin_defer(rq, cancel, arg)
 *       Only during the handler's call, once per request. Returns the
 *       handle, or a null one (admin_deferred_is_null) when the request
 *       cannot wait: it did not come through a server (admin_handle, as
 *       unit tests call it), it was deferred already, or memory ran out;
 *       then the handler answers in its reply as usual (a 503, say). rq
 *       and what it points to die when the handler returns: copy what the
 *       answer will need (the method if HEAD matters: the server itself
 *       leaves the body out of a HEAD's answer).
 *   admin_complete(handle, reply)
 *       Sends the answer (filled with the admin_reply_* helpers; NULL is
 *       a 500) and takes reply->body in every case (freed, set to NULL).
 *       It writes nothing and runs no handler on the spot: the loop
 *       writes the answer when the socket is writable, then goes on with
 *       the client's next request. So it is safe anywhere on the loop:
 *       inside another request's handler (a write waking its watchers),
 *       inside a cancel callback, inside the deferring handler itself (an
 *       answer that turned out to be ready). On a dead handle (answered
 *       already, client gone, server stopped, null) it only frees the
 *       body. Handles are plain values: never freed by their holder, they
 *       may be copied, dropped, or completed twice.
 *   cancel(arg)
 *       Called at most once, when the answer can no longer be delivered
 *       and admin_complete has not been called: the client closed or
 *       reset its connection or shut down its sending side (an EOF counts
 *       as gone while an answer is awaited, as in Go's net/http), left
 *       earlier answers unread for the idle time, or the server stopped
 *       (admin_stop, admin.listen moved by a reload, daemon exit). The
 *       handle is dead when it runs, so the handler may forget it there
 *       (a watch list drops it) or keep it and complete it later (a store
 *       write in flight): both are fine. Never called from inside
 *       admin_defer or the deferring handler's call. It may call
 *       admin_complete on any handle and admin_stop. NULL: not told.
 *   admin_deferred_alive(handle)
 *       Whether the client still waits (to skip building an answer).
 *
 * On a connection, answers keep the order of the requests (HTTP/1.1):
 * requests pipelined behind a deferred one are read, up to the input
 * bound (ADMIN_MAX_HEAD + ADMIN_MAX_BODY), but not handled until it is
 * answered. The idle timer does not run while the answer is awaited and
 * everything before it is written: the handler owns the deadline (a
 * blocking query ends its wait itself). A client whose hang-up is queued
 * behind more pipelined bytes than that bound is noticed only when its
 * answer is written. A handle stays valid across admin_stop and a new
 * server on the same site (it names a slot of the site's table and the
 * generation it had); the site must outlive the handles used with it. One
 * loop, one thread. */
typedef void admin_cancel_fn(void *arg);

struct admin_deferred {
    struct admin_site *site;          /* NULL: a null handle */
    uint32_t slot;
    uint64_t gen;
};

struct admin_deferred admin_defer(const struct admin_request *rq, admin_cancel_fn *cancel, void *arg);
void admin_complete(struct admin_deferred d, struct admin_reply *reply);
bool admin_deferred_alive(struct admin_deferred d);
static inline bool admin_deferred_is_null(struct admin_deferred d) { return d.site == NULL; }

/* Route and answer one request (no I/O): method as sent ("GET"...), target
 * as in the request line (path and optional query). Always fills reply,
 * including for errors; free reply->body afterwards. */
void admin_handle(struct admin_site *site, const char *method, size_t method_len, const char *target,
                  size_t target_len, const char *body, size_t body_len, struct admin_reply *reply);

#endif
