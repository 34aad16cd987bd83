/* The admin HTTP API, served by the master process.
 *
 * A small HTTP/1.1 server (keep-alive, pipelining answered in order) on the
 * master's event loop: Prometheus metrics and a JSON API to look at pools
 * and to change a backend's weight or admin state. It never blocks the
 * loop: sockets are non-blocking, buffers are bounded (16 KiB head, 64 KiB
 * body), at most ADMIN_MAX_CONNS clients at a time, and a client that leaves
 * a request unfinished (or does not read its answer) for 30 s is dropped.
 *
 * Every request reads the master's struct admin_view afresh, so the master
 * may swap cfg and sh on reload without telling the server. Changes made
 * through the API go to the shared region with atomic stores and bump
 * sh->generation, which the workers poll.
 */
#ifndef SLUICE_CORE_ADMIN_H
#define SLUICE_CORE_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "lib/addr.h"
#include "core/config.h"
#include "core/evloop.h"
#include "core/shared.h"

#define ADMIN_MAX_CONNS 256
#define ADMIN_IDLE_MS 30000
#define ADMIN_MAX_HEAD 16384
#define ADMIN_MAX_BODY 65536
#define ADMIN_MAX_WEIGHT 1000000

struct admin_reply;

struct admin_view {
    const struct sl_config *cfg;      /* current config (replaced on reload) */
    struct shared_state *sh;          /* current shared region (replaced on reload) */
    uint64_t started_ms;              /* ev_clock_ms() at start */
    uint32_t reloads;
    uint64_t worker_restarts;
    int *worker_pids;
    uint32_t n_workers;
    const char *version;
    /* Optional: more metric families appended to /metrics (sluice l4 adds
     * its XDP counters). Returns a malloc'd text, NULL for none. */
    char *(*extra_metrics)(void *arg, size_t *len);
    void *extra_arg;
    /* Optional: every request under /api/<ext_prefix>/ goes to ext_handler
     * with the path segments after it (decoded), e.g. sluice l4's
     * /api/l4/services/... It must fill reply (admin_reply_* below). */
    const char *ext_prefix;
    void (*ext_handler)(void *arg, const char *method, const char *const *seg, size_t n_seg, const char *body,
                        size_t body_len, struct admin_reply *reply);
    void *ext_arg;
};

struct admin_server;

/* Listen on addr (plain TCP, not SO_REUSEPORT; port 0 picks a free port,
 * see admin_port) and serve on loop until admin_stop. NULL with a message
 * in err on failure. */
struct admin_server *admin_start(struct ev_loop *loop, const struct sl_addr *addr, struct admin_view *view,
                                 char *err, size_t errlen);
/* Close the listener and every client connection. Safe to call from any
 * callback of the same loop; the memory is released once the current batch
 * of events is done (or by ev_loop_free). */
void admin_stop(struct admin_server *srv);
/* The bound port (useful after listening on port 0). */
uint16_t admin_port(const struct admin_server *srv);

/* Render /metrics into a malloc'd, NUL-terminated string (used by tests
 * too). Returns NULL on out of memory. */
char *admin_render_metrics(const struct admin_view *view, size_t *len);

/* Validate a PATCH body ({"weight": N} and/or {"admin": "enabled" |
 * "draining" | "disabled"}) and apply it to backend gidx of sh. All of the
 * body is checked before anything is stored, so a rejected body changes
 * nothing. "admin": "enabled" also clears a passive ejection. Returns 0, or
 * -1 with a reason in err (the caller answers 400). */
int admin_apply_backend_patch(struct shared_state *sh, size_t gidx, const char *body, size_t len,
                              char *err, size_t errlen);

/* One answer of the API, independent of the connection it goes to. */
struct admin_reply {
    int status;
    const char *content_type;         /* static string */
    const char *allow;                /* static string, for 405; NULL otherwise */
    char *body;                       /* malloc'd */
    size_t body_len;
};

/* For ext_handler: fill a reply. admin_reply_json takes the reference to
 * doc; admin_reply_text takes the malloc'd text. */
void admin_reply_json(struct admin_reply *r, int status, json_t *doc);
__attribute__((format(printf, 3, 4))) void admin_reply_error(struct admin_reply *r, int status, const char *fmt, ...);
void admin_reply_text(struct admin_reply *r, int status, char *text, size_t len);
void admin_reply_method_not_allowed(struct admin_reply *r, const char *allow);

/* Route and answer one request (no I/O): method as sent ("GET"...), target
 * as in the request line (path and optional query). Always fills reply,
 * including for errors; free reply->body afterwards. */
void admin_handle(struct admin_view *view, const char *method, size_t method_len, const char *target,
                  size_t target_len, const char *body, size_t body_len, struct admin_reply *reply);

#endif
