/* What the etcd store's two files share: reg_store_etcd.c (the store ops,
 * the lease, writes) and reg_cluster.c (the feed, members, duty, holds,
 * the JSON values). Not for other callers: see reg_cluster.h. */
#ifndef SLUICE_REGISTRY_REG_ETCD_STORE_PRIV_H
#define SLUICE_REGISTRY_REG_ETCD_STORE_PRIV_H

#include "registry/reg_cluster.h"

#define ES_REASON_MAX 200
/* A watch that reconnects within this (another member took over) never
 * makes the node stale. */
#define ES_STALE_AFTER_MS 1500

/* A write etcd has not answered yet. */
struct es_write {
    struct etcd_store *s;
    reg_store_done_fn *done;
    void *arg;
    struct es_write *prev, *next;
};

/* A completion waiting: for the feed to reach its revision (ok), or for
 * the next loop turn (a refusal). */
struct es_done {
    reg_store_done_fn *done;
    void *arg;
    int64_t revision;
    bool ok;
    char reason[ES_REASON_MAX];
};

struct es_done_list {
    struct es_done *v;
    size_t n, cap;
};

struct es_member {
    char name[REG_OWNER_MAX + 1];
    int64_t lease;
};

struct es_hold {
    char service[REG_NAME_MAX + 1];
    char id[REG_ID_MAX + 1];
    char owner[REG_OWNER_MAX + 1];
    uint64_t until_ms;
};

struct etcd_store {
    struct reg_store base;
    struct ev_loop *loop;
    struct reg_etcd_store_conf conf;
    size_t prefix_len;
    struct reg_etcd *etcd;

    /* The lease. */
    int64_t lease_id;
    bool lease_granting;
    bool member_written;            /* our member key is in etcd with the current lease */
    struct ev_timer lease_timer;

    /* Writes. */
    struct es_write *writes;        /* in flight */
    struct es_done_list waiting;    /* answered, waiting for the feed */
    struct es_done_list refused;    /* to be called back on the next turn */
    struct ev_timer refuse_timer;
    struct reg_store_stats st;

    /* The feed. */
    struct reg_model *m;
    struct reg_cluster_hooks hooks;
    struct reg_etcd_watch *watch;
    bool loaded, loading, feeding, stale;
    char stale_reason[ES_REASON_MAX];
    struct ev_timer load_timer;     /* retry of a failed load */
    struct ev_timer stale_timer;    /* the watch has been down this long: stale */
    bool watch_down_long;

    struct es_member *members;      /* sorted by name */
    size_t n_members, cap_members;

    struct es_hold *holds;
    size_t n_holds, cap_holds;
    struct ev_timer hold_timer;

    struct reg_cluster_stats cst;
};

static inline struct etcd_store *es_of(const struct reg_store *st)
{
    return (struct etcd_store *)st;
}

/* reg_store_etcd.c */
void es_done_push(struct etcd_store *s, struct es_done_list *l, reg_store_done_fn *done, void *arg, int64_t rev,
                  bool ok, const char *reason);
/* Completions waiting for revisions up to rev (all, with rev < 0). */
void es_complete_waiting(struct etcd_store *s, int64_t rev);
/* Put every ephemeral instance this node owns again (a new lease). */
void es_reput_own(struct etcd_store *s);

/* reg_cluster.c */
void es_feed_free(struct etcd_store *s);
/* The stale state from loaded and the watch; calls the hook on a change. */
void es_update_stale(struct etcd_store *s);
/* Keys: PREFIX + kind + rest. */
int es_key(const struct etcd_store *s, char *out, size_t cap, const char *kind, const char *a, const char *b);
char *es_instance_json(const char *owner, const struct reg_instance_spec *spec);
int es_instance_parse(const char *text, size_t len, struct reg_instance_spec *spec, struct reg_label *labels,
                      json_t **doc, char *err, size_t errlen);

#endif
