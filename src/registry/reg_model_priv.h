/* What the registry model's own files share (reg_model.c, reg_expiry.c,
 * reg_select.c): the model struct and the helpers that keep the change
 * index and the answer views right. Not for callers of the model. */
#ifndef SLUICE_REGISTRY_REG_MODEL_PRIV_H
#define SLUICE_REGISTRY_REG_MODEL_PRIV_H

#include "registry/reg_model.h"

/* The heartbeat rate is measured over a ring of buckets that together span
 * the rate window; the judgement uses the complete buckets only. */
#define REG_RATE_BUCKETS 12

struct reg_model {
    struct reg_model_conf conf;
    char node[REG_OWNER_MAX + 1]; /* in a cluster: this node ("" = alone) */
    uint64_t index;
    reg_change_fn *on_change;
    void *on_change_arg;

    struct reg_service **services;
    uint32_t n_services, services_cap;
    struct reg_table by_name;

    /* Interned location names: id i is loc_names[i - 1]. */
    char **loc_names;
    uint32_t n_locs, locs_cap;
    struct reg_table loc_by_name;

    /* Heartbeats received, by bucket of rate_window / REG_RATE_BUCKETS. */
    uint64_t hb_bucket_no[REG_RATE_BUCKETS];
    uint64_t hb_count[REG_RATE_BUCKETS];

    struct reg_model_stats st; /* counters; the sizes are filled in by reg_model_stats() */

    /* Expiry's scratch list, kept between ticks. */
    struct reg_instance **scratch;
    uint32_t scratch_cap;
};

/* Record a change: bump the index, stamp the service and instance (either
 * may be NULL), mark the service's answers for a rebuild, and tell the
 * callback. */
void reg_model_changed(struct reg_model *m, struct reg_service *svc, struct reg_instance *inst,
                       enum reg_event_kind kind);

/* Take an instance out of its service and free it; kind is
 * REG_EV_INSTANCE_DELETE or REG_EV_INSTANCE_EXPIRE (reported first). */
void reg_model_remove_instance(struct reg_model *m, struct reg_instance *inst, enum reg_event_kind kind);

/* Set health and its reason (truncated, control characters replaced). */
void reg_model_apply_health(struct reg_instance *inst, enum reg_health h, const char *reason, uint64_t now_ms);

/* reg_select.c: free a service's answer views. */
void reg_view_free(struct reg_view *v);

#endif
