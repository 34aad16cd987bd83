/* libsluice: balancing in the caller, with no extra hop.
 *
 * A program links libsluice to use `sluice registry` directly:
 *   - as a provider, it registers an instance of a service and keeps it
 *     alive (heartbeats on a background thread, registering again when a
 *     registry node restarts or another node takes over, with the weight
 *     and enabled flag an operator last set), and deregisters on close;
 *   - as a consumer, it subscribes to a service and picks an instance for
 *     each request: weighted, nearest locality tier first (the service's
 *     own rules, as the registry's DNS applies them), power of two choices
 *     on the caller's outstanding requests when asked, and instances that
 *     keep failing for this caller avoided for a while.
 *
 * It keeps working when every registry node is down: the lists it has stay
 * (an empty or invalid update never wipes a list unless the registry says
 * an operator really emptied the service), the last good list of each
 * service is written to a cache directory and loaded at start when no
 * registry answers, and an operator can replace the lists by hand from a
 * failover directory while its switch file exists.
 *
 * Threads: sluice_open() starts the library's background threads (watching
 * and pulling lists; heartbeats). Every function here may be called from any
 * thread. sluice_pick() and sluice_done() allocate nothing and take no lock
 * that a writer holds for long: a service's list is an immutable snapshot
 * swapped atomically.
 *
 * Errors: functions that can fail return NULL or -1 and, where they take
 * (err, errlen), write a reason there (always terminated).
 *
 * Build: pkg-config --cflags --libs sluice (shared), or --static.
 * Reference: docs/client.md.
 */
#ifndef SLUICE_SLUICE_H
#define SLUICE_SLUICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SLUICE_VERSION_MAJOR 0
#define SLUICE_VERSION_MINOR 1
#define SLUICE_VERSION_PATCH 0

/* "0.1.0": the library's version (which may be newer than the header). */
const char *sluice_version(void);

typedef struct sluice_client sluice_client;
typedef struct sluice_service sluice_service;
typedef struct sluice_provider sluice_provider;

/* ---- the client ------------------------------------------------------- */

enum sluice_log_level { SLUICE_LOG_ERROR, SLUICE_LOG_WARN, SLUICE_LOG_INFO, SLUICE_LOG_DEBUG };

struct sluice_config {
    /* sizeof(struct sluice_config), set by sluice_config_init(): fields
     * added later go at the end, and an older caller's shorter struct
     * still works. */
    size_t size;
    /* The registry nodes' API addresses, comma separated: "host:port" or
     * "http://host:port" ("10.0.0.11:9950,10.0.0.12:9950"). Required unless
     * failover_dir or cache_dir alone is meant to feed the consumer. Each
     * client starts at a node of its own (spread by a per-process random
     * choice) and moves to the next one when a node fails. */
    const char *registries;
    /* Where the caller runs: its datacenter and region names, as the
     * registry's instances carry them. NULL or "": unknown (that tier is
     * skipped). A provider's instance defaults to these. */
    const char *datacenter;
    const char *region;
    /* Last-known-good lists, one file per service, written atomically
     * after each accepted update. NULL: none. Created if missing. */
    const char *cache_dir;
    /* Hand-written lists (the cache file's format, one file per service).
     * While the file `switch` exists in it, these replace the registry's
     * lists for the services they name. NULL: none. */
    const char *failover_dir;
    /* The registry's write token (X-Sluice-Token), for providers. */
    const char *token;
    uint32_t watch_wait_ms;       /* how long one watch (blocking query) waits; default 30000 */
    uint32_t pull_interval_ms;    /* full pull of every subscribed service; default 30000 */
    uint32_t request_timeout_ms;  /* any other request to a node; default 2000 */
    uint32_t avoid_after_failures;/* consecutive failures that avoid an instance; default 3 */
    uint32_t avoid_ms;            /* for how long; default 10000 */
    /* Where the library's messages go (from any thread); NULL: stderr for
     * WARN and ERROR. */
    void (*log)(void *arg, enum sluice_log_level level, const char *msg);
    void *log_arg;
};

/* Defaults for every field (size set, strings NULL). */
void sluice_config_init(struct sluice_config *cfg);

/* Checks the configuration, creates the cache directory if needed and
 * starts the background threads. The strings are copied. */
sluice_client *sluice_open(const struct sluice_config *cfg, char *err, size_t errlen);

/* Deregisters every provider, stops the threads, frees every service and
 * provider handle. No call may be running on the client any more. */
void sluice_close(sluice_client *c);

/* ---- provider: register an instance and keep it alive ------------------ */

struct sluice_instance {
    const char *service;     /* required: the service's name */
    const char *id;          /* required: unique within the service */
    const char *address;     /* required: an IPv4 or IPv6 literal */
    uint16_t port;           /* required, 1..65535 */
    uint32_t weight;         /* 0..10000; 0 here means the registry's default (100) */
    const char *datacenter;  /* NULL: the client's */
    const char *region;      /* NULL: the client's */
    /* Labels as "key=value" strings, n_labels of them. */
    const char *const *labels;
    size_t n_labels;
};

/* Registers the instance as an ephemeral one on a registry node, and keeps
 * it alive from the background thread at the service's heartbeat interval.
 * Returns once a node has acknowledged the registration; when none
 * answers, returns NULL with the reason (the caller may retry). */
sluice_provider *sluice_register(sluice_client *c, const struct sluice_instance *inst, char *err, size_t errlen);

/* Deregisters the instance (one attempt per node until one answers) and
 * frees the handle. Returns 0, or -1 when no node acknowledged it (the
 * registry will expire it). */
int sluice_deregister(sluice_provider *p);

struct sluice_provider_info {
    bool registered;           /* the last heartbeat or registration was acknowledged */
    uint32_t weight;           /* as the registry last said (an operator may have changed it) */
    bool enabled;              /* likewise */
    uint64_t heartbeats_ok, heartbeats_failed;
    uint64_t registrations;    /* the first one included: >1 means it registered again */
    char node[128];            /* the registry address it talks to now */
};
int sluice_provider_info(const sluice_provider *p, struct sluice_provider_info *out);

/* ---- consumer: subscribe and pick -------------------------------------- */

/* Subscribes to a service (the same handle again for the same name). Returns
 * at once: the list comes from the cache directory or the failover
 * directory at once if they have it, and from the registry as soon as a
 * node answers. */
sluice_service *sluice_subscribe(sluice_client *c, const char *service, char *err, size_t errlen);

/* Waits until the service has a list (from any source) or timeout_ms
 * passes: 0 when it has one, -1 on timeout. */
int sluice_wait_ready(sluice_service *s, uint32_t timeout_ms);

enum sluice_pick_flags {
    /* Power of two choices: draw two by weight and take the one with fewer
     * of this caller's outstanding requests (picks not yet sluice_done()). */
    SLUICE_PICK_P2C = 1u << 0,
};

/* One pick: a copy, valid for as long as the caller likes. */
struct sluice_pick {
    struct sockaddr_storage addr;   /* address and port, ready for connect() */
    socklen_t addrlen;
    char host[46];                  /* the address as text */
    uint16_t port;
    char id[129];                   /* the instance's id */
    uint32_t slot_;                 /* the library's own: pass the pick back to sluice_done() */
    uint64_t version_;
};

/* Picks an instance for one request. Returns 0, or -1 when the service has
 * no instance to pick (no list yet, or an empty one). Every successful pick
 * must be followed by one sluice_done() (it ends the outstanding request
 * that SLUICE_PICK_P2C counts). */
int sluice_pick(sluice_service *s, unsigned flags, struct sluice_pick *out);

enum sluice_result {
    SLUICE_OK = 0,        /* the request worked: the instance's failure streak ends */
    SLUICE_FAILED = 1,    /* it failed (connect refused, timeout, 5xx): counts toward avoidance */
    SLUICE_CANCELLED = 2, /* not sent at all: ends the outstanding request, counts nothing */
};
void sluice_done(sluice_service *s, const struct sluice_pick *p, enum sluice_result r);

/* ---- for programs that balance themselves (Sluice's own tiers, the DNS
 * agent): the list picks are drawn from ------------------------------------ */

enum sluice_source {
    SLUICE_SOURCE_NONE,       /* no list yet */
    SLUICE_SOURCE_REGISTRY,   /* from a registry node (now or earlier in this run) */
    SLUICE_SOURCE_CACHE,      /* loaded from the cache directory: no registry has answered yet */
    SLUICE_SOURCE_FAILOVER,   /* the failover directory's list (switch file present) */
};

struct sluice_member {
    struct sockaddr_storage addr;   /* address and port */
    socklen_t addrlen;
    char id[129];
    uint32_t weight;                /* 1..10000 */
    bool healthy;                   /* false only when failing open (protection) */
    bool avoided;                   /* failing for this caller: picks skip it for now */
};

struct sluice_service_info {
    enum sluice_source source;
    uint64_t version;               /* bumps at every change of the list picks draw from */
    uint32_t members;               /* how many instances picks draw from now */
    uint32_t instances;             /* how many the service has in all */
    uint32_t healthy;               /* healthy and answerable (enabled, weight > 0) */
    char tier[16];                  /* "datacenter", "region" or "all": the tier picks draw from */
    bool fail_open;                 /* protection: the tier is below protect_threshold */
    uint32_t dns_ttl;               /* the service's DNS TTL, seconds */
    uint32_t answer_count;          /* the service's A/AAAA records per answer */
    uint64_t registry_index;        /* the service's modify_index at the registry node */
    uint64_t updates, updates_ignored_empty, updates_ignored_invalid;
    uint64_t age_ms;                /* since the list last came from a registry (0: never) */
    /* The registry said the service does not exist (404) and there is no
     * list from any source (source NONE): a DNS agent answers NXDOMAIN
     * rather than waiting for a list. */
    bool not_found;
};

/* The service's state; 0, or -1 for a NULL handle. */
int sluice_service_info(sluice_service *s, struct sluice_service_info *out);

/* The members picks draw from now (the chosen locality tier, protection
 * applied), into out (at most cap). Returns how many there are (more than
 * cap: the rest were not written); *version (may be NULL) gets the version
 * they belong to. Allocates nothing. */
int sluice_members(sluice_service *s, struct sluice_member *out, size_t cap, uint64_t *version);

/* Every instance of the service as the registry listed it, healthy or not,
 * in any tier (for status pages and for SRV-style answers). Same contract as
 * sluice_members. */
int sluice_instances(sluice_service *s, struct sluice_member *out, size_t cap, uint64_t *version);

/* Called on the library's thread after each change of the service's list
 * (keep it short: write to an eventfd, set a flag). NULL clears it. */
void sluice_on_change(sluice_service *s, void (*cb)(void *arg, sluice_service *s), void *arg);

/* ---- the whole client ---------------------------------------------------- */

struct sluice_stats {
    uint64_t watches;               /* blocking queries answered */
    uint64_t pulls;                 /* full pulls of a service */
    uint64_t requests_failed;       /* requests to a node that failed */
    uint64_t node_switches;         /* moves to another registry node */
    uint64_t updates;               /* lists accepted */
    uint64_t updates_ignored_empty; /* empty lists not applied (logged) */
    uint64_t updates_ignored_invalid;
    uint64_t cache_writes, cache_write_errors, cache_loads;
    uint64_t failover_loads;
    bool failover_active;           /* the switch file exists */
    bool registry_reachable;        /* the last request to a node worked */
    char node[128];                 /* the registry address in use */
};
int sluice_stats(sluice_client *c, struct sluice_stats *out);

#ifdef __cplusplus
}
#endif

#endif
