/* libsluice's internals, shared by the files of src/client (never by the
 * tiers: they use include/sluice/sluice.h only).
 *
 * Files:
 *   client.c    the client: configuration, open/close, logging, stats
 *   http.c/h    requests to registry nodes over libcurl (one handle per thread)
 *   doc.c/h     a service's list as JSON (registry answer, cache and failover
 *               files): parse, format, and the rules for believing an update
 *   snap.c/h    immutable snapshots, the grace periods that free them, picks
 *   consumer.c  subscriptions and the watcher thread
 *   cache.c     the cache and failover directories
 *   provider.c  registration and heartbeats (issue 10, H2)
 *
 * Visibility: libsluice is built with -fvisibility=hidden; the API's
 * declarations are made visible here, so only sluice_* is exported. */
#ifndef SLUICE_CLIENT_CLIENT_PRIV_H
#define SLUICE_CLIENT_CLIENT_PRIV_H

#pragma GCC visibility push(default)
#include <sluice/sluice.h>
#pragma GCC visibility pop

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "client/snap.h"

#define CL_NODE_NAME 128

struct cl_node {
    char url[192];                  /* "http://host:port" */
    char name[CL_NODE_NAME];        /* as configured, for stats and logs */
    _Atomic uint64_t fail_until_ms; /* backed off until (monotonic ms); 0: fine */
    _Atomic uint32_t fails;         /* consecutive failed requests */
};

/* A rate limit for one kind of message: one per CL_LOG_EVERY_MS, the rest
 * counted and mentioned in the next one. */
struct cl_ratelimit {
    uint64_t next_ms;
    uint64_t suppressed;
};
#define CL_LOG_EVERY_MS 10000

struct cl_stats {
    _Atomic uint64_t watches, pulls, requests_failed, node_switches;
    _Atomic uint64_t updates, updates_ignored_empty, updates_ignored_invalid;
    _Atomic uint64_t cache_writes, cache_write_errors, cache_loads, failover_loads;
    _Atomic bool failover_active, registry_reachable;
};

struct cl_http;

struct sluice_client {
    /* The configuration, with the strings copied (NULL or non-empty). */
    struct sluice_config cfg;
    char *datacenter, *region, *cache_dir, *failover_dir, *token;

    struct cl_node *nodes;
    size_t n_nodes;
    _Atomic size_t node_cur;        /* the node requests go to first */

    /* lock guards services (the array; a service lives until close) and
     * the waits on cond, which wakes the watcher; stop and wake are set
     * under it (and read without it). */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct sluice_service **services;
    size_t n_services, cap_services;
    _Atomic bool stop;
    _Atomic bool wake;              /* a new subscription: fetch it now */
    pthread_mutex_t log_lock;       /* the rate limits (struct cl_ratelimit) */
    struct cl_pick_conf pick;       /* avoidance, from the configuration */
    pthread_t watcher;
    bool watcher_started;
    struct cl_http *watch_http;     /* the watcher's, for cl_http_wake() */

    struct cl_grace grace;          /* readers of every service's snapshots */
    struct cl_stats st;

    /* Providers (provider.c): set by the first sluice_register(), called by
     * sluice_close() before the watcher stops. */
    void *providers;
    void (*providers_close)(sluice_client *c);
};

/* A subscribed service. The fields after `writer` are the writer's: the
 * watcher thread, or sluice_subscribe() while it loads the cache, both
 * under `writer`. Readers touch only snap (through the grace period),
 * slots, the counters and the callback. */
struct sluice_service {
    sluice_client *c;
    char name[64];

    _Atomic(struct cl_snap *) snap;  /* NULL: no list yet */
    struct cl_slots slots;
    _Atomic uint64_t updates, ignored_empty, ignored_invalid;
    _Atomic uint64_t registry_ms;    /* when the list last came from a registry (monotonic; 0 never) */
    _Atomic bool not_found;          /* the last registry answer was 404 while we held nothing */

    /* ready and the change callback */
    pthread_mutex_t mu;
    pthread_cond_t ready_cond;
    void (*on_change)(void *arg, sluice_service *s);
    void *on_change_arg;

    pthread_mutex_t writer;
    struct cl_doc *base;             /* the registry's (or cache's) list, applied */
    enum sluice_source base_source;
    struct cl_doc *overlay;          /* the failover file's while the switch exists */
    struct cl_trust trust;           /* the rules for believing an empty list */
    uint64_t version;
    bool fetch_now;                  /* subscribed and not fetched yet */
    char known_node[CL_NODE_NAME];   /* node of known_index */
    uint64_t known_index;            /* modify_index last fetched from known_node */
    struct cl_ratelimit warn_empty, warn_invalid, warn_failover;
};

/* ---- client.c ---------------------------------------------------------- */

/* A message to the configured log (or stderr for WARN and ERROR). */
void cl_log(sluice_client *c, enum sluice_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The same, at most once per CL_LOG_EVERY_MS for this limiter. */
void cl_log_limited(sluice_client *c, struct cl_ratelimit *rl, enum sluice_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Copy into a fixed buffer, always terminated. */
void cl_copy(char *dst, size_t cap, const char *src);

/* pthread_create with every signal blocked in the new thread: the caller's
 * signals (SIGTERM, SIGHUP, ...) must reach the caller's own threads, which
 * often block them and read a signalfd; a library thread that left them
 * unblocked would take them and, at their default action, end the process.
 * Returns what pthread_create returns. */
int cl_thread_start(pthread_t *t, void *(*fn)(void *), void *arg);

/* ---- consumer.c -------------------------------------------------------- */

/* The watcher thread's body (started by sluice_open). */
void *cl_watcher_main(void *arg);

/* Wake the watcher (a new subscription, or close). */
void cl_watcher_wake(sluice_client *c);

/* One answer of node (status, body of len bytes, may be NULL) to a fetch
 * of the service: judged (doc.h), and when applied, cached and published.
 * The watcher's path, and the tests' and the fuzz target's. */
void cl_service_apply(sluice_service *s, const char *node, long status, const char *body, size_t len);

/* Free a service handle (sluice_close, after the watcher stopped). */
void cl_service_free(sluice_service *s);

/* Publish the snapshot for the service's current base/overlay and caller
 * location; under s->writer. 0, or -1 when it could not be built (the old
 * one stays). */
int cl_service_publish(sluice_service *s);

/* ---- cache.c ----------------------------------------------------------- */

/* Write the service's base list to CACHE_DIR/NAME.json atomically. 0 or -1
 * (logged, counted). */
int cl_cache_write(sluice_service *s, const char *node);

/* Load CACHE_DIR/NAME.json into s->base (source CACHE); 0 loaded, -1 none
 * or invalid (logged when invalid). Under s->writer. */
int cl_cache_load(sluice_service *s);

/* Whether FAILOVER_DIR/switch exists. */
bool cl_failover_active(sluice_client *c);

/* Read FAILOVER_DIR/NAME.json: a new doc, or NULL with *missing set when
 * there is no file (else it was invalid: logged). */
struct cl_doc *cl_failover_read(sluice_service *s, bool *missing);

#endif
