/* The registry's in-memory model: services and their instances, the
 * indexes that find them, the change index that watches wait on, and the
 * expiry of ephemeral instances with its two protections.
 *
 * Contract:
 *   - The model is pure code: no sockets, no HTTP, no DNS wire format, no
 *     logging and no clock. Every function that depends on time takes
 *     `now_ms`, milliseconds on one monotonic clock the caller chooses (the
 *     daemon passes its event loop's time; tests drive it by hand).
 *   - One thread owns a model (the registry's event loop); nothing locks.
 *   - The model owns every service and instance. Pointers the functions
 *     return stay valid until that service or instance is deleted or
 *     expires (REG_EV_*_DELETE / REG_EV_INSTANCE_EXPIRE are reported
 *     before the memory goes), or until reg_model_free(). The structs are
 *     public so the DNS and API paths read fields without calls; they are
 *     read-only to callers: change them only through these functions,
 *     which keep the indexes, the counts, the answer views and the change
 *     index right.
 *   - Errors: -1 with a reason in the caller's buffer (err, errlen), or
 *     NULL for "not found"; nothing aborts on bad input.
 *
 * Change index: one counter for the whole model, bumped by every change of
 * a service or an instance (registration, deregistration, expiry, settings,
 * weight, enabled, health). The service's modify_index is the counter's
 * value at its last change, so a watch is "wait until modify_index > N"
 * (Consul's ?index=N) and a watch of the service list waits on
 * reg_model_index(). Heartbeats that change nothing bump nothing. Every
 * change is also reported to the change callback (reg_model_on_change),
 * which is where the daemon merges changes of a short window before it
 * wakes watchers.
 *
 * Locations: datacenter and region names are interned into small ids
 * (struct reg_loc), so answers compare integers. A datacenter name means
 * the same datacenter everywhere; its region comes from the instance. Id 0
 * is "unknown" (an empty name).
 *
 * Health: UP or DOWN, with the reason and the time of the last change.
 * Persistent instances get theirs from the daemon's active checks
 * (reg_instance_set_health); ephemeral instances from heartbeats: a
 * heartbeat keeps one UP, silence longer than the service's
 * heartbeat_timeout turns it DOWN (reg_model_tick), and a heartbeat
 * brings it back. A new instance starts UP ("registered, not checked
 * yet"), as a fresh health-check target does, unless its spec says DOWN.
 *
 * Expiry (reg_model_tick, see reg_expiry.c):
 *   - an ephemeral instance silent for longer than its service's
 *     expire_after is removed, with two protections, each a flag the API
 *     and metrics read:
 *   - eviction cap: in each eviction interval at most a share of a
 *     service's ephemeral instances (counted when the interval starts,
 *     at least one) expire; the longest silent go first and the rest wait
 *     (reg_service.eviction_capped);
 *   - self-preservation: when the heartbeats this node received over the
 *     last rate window (registrations of ephemeral instances count as
 *     heartbeats) fall below a share of those it expected (each ephemeral
 *     instance heartbeats once per its service's heartbeat_interval from
 *     its registration on), the node is probably the one cut off, so
 *     nothing expires until the rate recovers
 *     (reg_model_stats.self_preservation). It needs a fleet to judge by:
 *     with fewer than self_preservation_min ephemeral instances it is off.
 *     Instances are still marked DOWN meanwhile, so answers stay right
 *     when the silence is real and the protect threshold fails open when
 *     it is not; only their removal waits.
 *   - grace: ephemeral instances loaded from the store after a restart
 *     (reg_instance_load) are neither marked down nor expired before
 *     now + grace_ms, so their clients have time to heartbeat again. They
 *     are expected to heartbeat from the load on, so when few come back
 *     self-preservation holds the rest (DOWN, not answered) rather than
 *     expiring them: a node that restarts while cut off keeps its data.
 */
#ifndef SLUICE_REGISTRY_REG_MODEL_H
#define SLUICE_REGISTRY_REG_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/addr.h"
#include "core/health_conf.h"
#include "registry/reg_table.h"

#define REG_NAME_MAX 63         /* a service name is one DNS label */
#define REG_ID_MAX 128          /* an instance id */
#define REG_LOC_NAME_MAX 63     /* a datacenter or region name */
#define REG_OWNER_MAX 63        /* the node that holds a registration */
#define REG_REASON_MAX 127      /* a health reason */
#define REG_LABELS_MAX 32       /* labels per instance */
#define REG_LABEL_KEY_MAX 63
#define REG_LABEL_VALUE_MAX 255
#define REG_WEIGHT_MAX 10000
#define REG_WEIGHT_DEFAULT 100
#define REG_ANSWER_MAX 256      /* the most instances one A/AAAA answer may hold */
#define REG_TTL_MAX 86400

/* ---- locations --------------------------------------------------------- */

struct reg_loc {
    uint32_t dc;      /* interned datacenter name, 0 = unknown */
    uint32_t region;  /* interned region name, 0 = unknown */
};

/* ---- services ---------------------------------------------------------- */

/* Which locality tier an answer came from (see reg_select.h). */
struct reg_locality {
    /* A tier (same datacenter, same region) answers only when it has at
     * least min_healthy healthy instances (0 counts as 1) AND at least
     * min_healthy_ratio of its answerable instances are healthy (0..1,
     * 0 = no ratio rule). Otherwise the next tier is tried; the last,
     * "all", always answers. */
    uint32_t min_healthy;
    double min_healthy_ratio;
};

/* A service's persistent settings: they stay when its instances go. */
struct reg_service_settings {
    /* Fail-open: when healthy/total of the chosen tier is below this
     * (0..1, 0 = off), answer every enabled instance of the tier, healthy
     * first. */
    double protect_threshold;
    struct cfg_health health;        /* persistent instances' active check (type none: none) */
    struct reg_locality locality;
    uint32_t dns_ttl;                /* seconds, 0..REG_TTL_MAX (default 5) */
    uint32_t answer_count;           /* A/AAAA records per answer, 1..REG_ANSWER_MAX (default 1) */
    uint32_t heartbeat_interval_ms;  /* what ephemeral clients send (default 5 s): the expected rate */
    uint32_t heartbeat_timeout_ms;   /* silent this long: DOWN (default 15 s) */
    uint32_t expire_after_ms;        /* silent this long: removed (default 30 s) */
};

struct reg_view; /* the answer views, reg_select.c */

struct reg_service {
    char name[REG_NAME_MAX + 1];     /* lower case */
    struct reg_service_settings settings;
    uint64_t create_index, modify_index;

    struct reg_instance **instances; /* dense, in no particular order */
    uint32_t n_instances;
    uint32_t n_ephemeral;

    /* Eviction cap (reg_model_tick). */
    bool eviction_capped;            /* expired instances are waiting for the next interval */
    uint32_t expiry_waiting;         /* how many, at the last tick */
    uint64_t evict_window_start_ms;
    uint32_t evict_budget, evicted_in_window;

    /* private */
    uint32_t protect_ppm, min_ratio_ppm; /* the settings' ratios in millionths */
    struct reg_table by_id;
    uint32_t n_cap;
    uint32_t slot;                   /* index in the model's service array */
    struct reg_view *view;           /* built on the first answer after a change */
    bool view_dirty;
};

/* ---- instances --------------------------------------------------------- */

enum reg_health { REG_HEALTH_UP, REG_HEALTH_DOWN };

struct reg_label {
    char *key;
    char *value;
};

struct reg_instance {
    char id[REG_ID_MAX + 1];
    struct reg_service *service;
    struct sl_addr addr;
    uint32_t weight;                 /* 0..REG_WEIGHT_MAX; 0 is never answered (reg_select.h) */
    struct reg_loc loc;
    const char *datacenter, *region; /* the names ("" when unknown); owned by the model */
    struct reg_label *labels;
    uint32_t n_labels;
    bool enabled;
    bool ephemeral;
    enum reg_health health;
    char health_reason[REG_REASON_MAX + 1];
    uint64_t health_changed_ms;
    uint64_t registered_ms;          /* put or loaded */
    uint64_t last_heartbeat_ms;      /* ephemeral: the last heartbeat (registration counts) */
    uint64_t grace_until_ms;         /* loaded from the store: left alone until then */
    char owner[REG_OWNER_MAX + 1];   /* the node holding the registration ("" = none) */
    /* In a cluster (reg_model_set_node): an ephemeral instance another
     * node owns. Its heartbeats go to its owner, which writes its health
     * and its removal to the shared store; here it is neither marked down
     * for silence, nor expired, nor counted by self-preservation. */
    bool remote;
    uint64_t create_index, modify_index;

    /* private */
    uint32_t slot;                   /* index in service->instances */
    bool down_by_silence;            /* DOWN because of missed heartbeats: a heartbeat lifts it */
};

/* What a registration says: the input of reg_instance_put() and what a
 * store saves and loads. Pointers are read during the call only. */
struct reg_instance_spec {
    const char *id;                  /* NULL or "": the address text ("10.0.0.1:80") */
    struct sl_addr addr;
    uint32_t weight;
    const char *datacenter;          /* NULL = "" */
    const char *region;              /* NULL = "" */
    const struct reg_label *labels;
    uint32_t n_labels;
    bool enabled;
    bool ephemeral;
    const char *owner;               /* NULL = "" */
    bool down;                       /* start DOWN (a new instance), with health_reason */
    const char *health_reason;       /* NULL: "registered, not checked yet" */
};

/* ---- the model --------------------------------------------------------- */

struct reg_model_conf {
    /* Eviction cap: at most this share (0 < x <= 1, default 0.25) of a
     * service's ephemeral instances expire per eviction_interval_ms
     * (default 60 s); at least one always may. */
    double eviction_cap;
    uint32_t eviction_interval_ms;
    /* Self-preservation: expiry stops while the heartbeats received over
     * the last rate_window_ms (default 60 s) are below this share of the
     * expected ones (0..1, default 0.85; 0 = off). */
    double self_preservation;
    uint32_t rate_window_ms;
    /* ... judged only with at least this many ephemeral instances on the
     * node (default 10): with a handful, a drop is as likely a death as a
     * cut, and holding a dead one forever would surprise more than help. */
    uint32_t self_preservation_min;
    /* Grace after a restart for ephemeral instances loaded from the store
     * (default 30 s). */
    uint32_t grace_ms;
    /* Hash seed of the name indexes; 0 = a random one. */
    uint64_t hash_seed;
};

enum reg_event_kind {
    REG_EV_SERVICE_PUT,       /* created or its settings changed */
    REG_EV_SERVICE_DELETE,    /* about to be freed, with all its instances (no per-instance events) */
    REG_EV_INSTANCE_PUT,      /* registered or re-registered with changes */
    REG_EV_INSTANCE_DELETE,   /* deregistered; about to be freed */
    REG_EV_INSTANCE_EXPIRE,   /* expired (ephemeral); about to be freed */
    REG_EV_INSTANCE_CHANGE,   /* weight, enabled or health changed */
};

struct reg_event {
    enum reg_event_kind kind;
    const struct reg_service *service;
    const struct reg_instance *instance;   /* NULL for service events */
    uint64_t index;                        /* the change index this change got */
};

typedef void reg_change_fn(void *arg, const struct reg_event *ev);

struct reg_model_stats {
    uint32_t services, instances, ephemeral;
    uint64_t registrations, deregistrations, heartbeats, expirations;
    uint64_t marked_down_by_silence;
    uint64_t expiry_deferred_by_cap;        /* instance-ticks that waited for the cap */
    uint64_t expiry_held_by_preservation;   /* instance-ticks that waited for self-preservation */
    bool self_preservation;                 /* expiry is stopped now */
    uint64_t self_preservation_since_ms;
    uint64_t self_preservation_episodes;
    /* The last judgement: heartbeats received and expected over the window. */
    uint64_t heartbeats_in_window;
    double heartbeats_expected;
};

struct reg_model;

/* The defaults documented above. */
void reg_model_conf_defaults(struct reg_model_conf *c);
/* -1 with a reason when a value is out of range. */
int reg_model_conf_check(const struct reg_model_conf *c, char *err, size_t errlen);

/* A new empty model; NULL with a reason (bad conf, out of memory). */
struct reg_model *reg_model_create(const struct reg_model_conf *conf, char *err, size_t errlen);
void reg_model_free(struct reg_model *m);

/* Every change is reported to fn(arg, ev) after it is made (for deletions:
 * before the memory goes). One callback; NULL turns it off. The callback
 * must not change the model. */
void reg_model_on_change(struct reg_model *m, reg_change_fn *fn, void *arg);

/* In a cluster: this node's name, so that ephemeral instances owned by
 * other nodes are told apart (reg_instance.remote); NULL or "" (the
 * default): a single node, every instance is local. Recomputes the flag
 * of every instance; not a change (no index bump). */
void reg_model_set_node(struct reg_model *m, const char *node);

/* The change index: starts at 1 (as Consul's, so "index > 0" never waits
 * on an empty model) and only grows. */
uint64_t reg_model_index(const struct reg_model *m);

void reg_model_stats(const struct reg_model *m, struct reg_model_stats *out);

/* ---- locations --------------------------------------------------------- */

/* Intern a datacenter and a region name (NULL or "" = unknown, id 0).
 * -1 with a reason for an invalid name or out of memory. */
int reg_model_loc(struct reg_model *m, const char *dc, const char *region, struct reg_loc *out,
                  char *err, size_t errlen);
/* The name of an id ("" for 0 or an id never given out). */
const char *reg_model_loc_name(const struct reg_model *m, uint32_t id);

/* ---- services ---------------------------------------------------------- */

/* The defaults documented above (health.http_path is allocated: free the
 * settings with reg_service_settings_free). */
void reg_service_settings_defaults(struct reg_service_settings *s);
void reg_service_settings_free(struct reg_service_settings *s);
/* -1 with a reason naming the field ("protect_threshold: must be between 0
 * and 1") when a value is out of range. */
int reg_service_settings_check(const struct reg_service_settings *s, char *err, size_t errlen);

/* A service name: one DNS label (letters, digits, '-', not at either end,
 * 1..63), any case (stored in lower case). 0, or -1 with a reason. */
int reg_service_name_check(const char *name, char *err, size_t errlen);

/* Create the service or replace its settings (s == NULL: the defaults for
 * a new one, no change for an existing one). *out (may be NULL) gets it. */
int reg_service_put(struct reg_model *m, const char *name, const struct reg_service_settings *s,
                    struct reg_service **out, char *err, size_t errlen);
/* Case-insensitive; len bytes (no NUL needed): the DNS path passes a label. */
struct reg_service *reg_service_find(const struct reg_model *m, const char *name, size_t len);
/* Remove the service with its instances; -1 when there is none. */
int reg_service_delete(struct reg_model *m, const char *name);

/* All services, in no particular order (changes with deletions). */
uint32_t reg_model_service_count(const struct reg_model *m);
struct reg_service *reg_model_service_at(const struct reg_model *m, uint32_t i);

/* ---- instances --------------------------------------------------------- */

/* -1 with a reason for a bad id, weight, location name, label or owner. */
int reg_instance_spec_check(const struct reg_instance_spec *spec, char *err, size_t errlen);

/* Register: create the instance, or update the one with the same id (its
 * health stays unless the address changed; an ephemeral one counts a
 * heartbeat). *out (may be NULL) gets it. */
int reg_instance_put(struct reg_model *m, struct reg_service *svc, const struct reg_instance_spec *spec,
                     uint64_t now_ms, struct reg_instance **out, char *err, size_t errlen);
/* The same, for an instance read back from the store at start: an
 * ephemeral one gets the grace period; health comes from the spec. */
int reg_instance_load(struct reg_model *m, struct reg_service *svc, const struct reg_instance_spec *spec,
                      uint64_t now_ms, struct reg_instance **out, char *err, size_t errlen);
struct reg_instance *reg_instance_find(const struct reg_service *svc, const char *id);
/* Deregister; -1 when there is none. */
int reg_instance_delete(struct reg_model *m, struct reg_service *svc, const char *id);

/* A heartbeat of an ephemeral instance: remembered and counted, never
 * written anywhere. A DOWN instance that went down for silence comes UP
 * ("heartbeat resumed"); one set DOWN by reg_instance_set_health stays
 * DOWN. Returns true when its health changed. A heartbeat for a
 * persistent instance is counted in the stats and changes nothing. */
bool reg_instance_heartbeat(struct reg_model *m, struct reg_instance *inst, uint64_t now_ms);

/* Each is a change (index bumped, callback called) only when the value
 * differs. weight > REG_WEIGHT_MAX returns -1. */
int reg_instance_set_weight(struct reg_model *m, struct reg_instance *inst, uint32_t weight);
void reg_instance_set_enabled(struct reg_model *m, struct reg_instance *inst, bool enabled);
void reg_instance_set_health(struct reg_model *m, struct reg_instance *inst, enum reg_health h,
                             const char *reason, uint64_t now_ms);

/* The spec of a live instance (pointers into it: valid until it changes),
 * e.g. to hand it to a store. */
void reg_instance_spec_of(const struct reg_instance *inst, struct reg_instance_spec *out);

const char *reg_health_name(enum reg_health h); /* "up", "down" */

/* ---- time: heartbeats, expiry and its protections (reg_expiry.c) -------- */

struct reg_tick_result {
    uint32_t marked_down;        /* ephemeral instances that turned DOWN for silence */
    uint32_t expired;            /* removed */
    uint32_t deferred_by_cap;    /* due, waiting for the next eviction interval */
    uint32_t held_by_preservation; /* due, held while self-preservation is on */
    bool self_preservation_changed;
};

/* Run the clock: judge self-preservation, mark silent ephemeral instances
 * DOWN and expire those silent past expire_after (with the cap and
 * self-preservation). Call it about once a second; it costs one pass over
 * the ephemeral instances. out may be NULL. */
void reg_model_tick(struct reg_model *m, uint64_t now_ms, struct reg_tick_result *out);

#endif
