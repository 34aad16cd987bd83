/* Reading the forwarder's state and counters back from its maps, for
 * `sluice l4 list` and /metrics: per-CPU counters summed over CPUs, and
 * each service's live Maglev table counted into slots per real.
 *
 * Two halves: stats_maps.c reads the maps (l4_percpu_sum(),
 * l4_snapshot_build()); stats.c fills the snapshot's rows from what was
 * read and renders them, with no map I/O (unit-tested without a kernel). */
#ifndef SLUICE_L4_STATS_H
#define SLUICE_L4_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "l4/l4_conf.h"
#include "lib/strbuf.h"
#include "l4/bpf/forwarder_abi.h"
#include "l4/conns.h"

/* Summed counters (uint64_t, unlike the kernel's __u64, for printf). */
struct l4_sum {
    uint64_t packets, bytes;
};

struct l4_fds {
    int vips, reals, maglev, vip_stats, real_stats, reasons;
    int cfg;                 /* l4_config: M for readers without a model; -1 if not open */
    int conn, conn_shared, nat; /* connection counts; -1 to skip */
};

struct l4_row_real {
    uint32_t index;          /* reals map index */
    char addr[72];           /* "10.0.0.11:80", or the bare IP when unknown */
    int64_t weight;          /* configured weight, -1 when not known */
    const char *state;       /* up, drained, down, no-nexthop */
    uint32_t slots;          /* Maglev slots in the live table */
    uint64_t active, inactive;  /* connections (see src/l4/conns.h) */
    struct l4_sum c;
};

struct l4_row_svc {
    char vip[72];            /* "10.0.0.100:80" / "[2001:db8::1]:80" */
    const char *proto;       /* "TCP" / "UDP" */
    const char *mode;        /* dr, tun, nat, fullnat */
    const char *scheduler;   /* from the config, or "maglev" */
    uint32_t svc, table;
    uint16_t vip_port;
    int loaded;              /* the service is in the vips map */
    struct l4_sum c;
    struct l4_row_real *reals;
    size_t n_reals;
    char source[160];        /* where its reals come from when not the file ("" = the file or the API) */
};

struct l4_snapshot {
    uint32_t m;              /* Maglev table size */
    struct l4_row_svc *svcs;
    size_t n_svcs;
    struct l4_sum reasons[L4_R__COUNT];
};

/* What the running daemon knows of a service: its config, its slot
 * (vip_meta.svc) and, per real in config order, the reals map index, the
 * current weight and state. */
struct l4_model_real {
    uint32_t index;
    int64_t weight;          /* admin weight now (config or API) */
    const char *state;       /* up, down, draining, disabled, drained, no-nexthop */
};
struct l4_model_svc {
    const struct cfg_l4_service *cs;
    uint32_t slot;
    const struct l4_model_real *reals;   /* [cs->n_reals] */
    const char *source;                  /* row's source (NULL: none) */
};

/* ---- reading the maps (stats_maps.c) ---- */

/* Sum a per-CPU array's entry over every possible CPU. */
int l4_percpu_sum(int fd, uint32_t key, struct l4_sum *out);

/* Build a snapshot. With a model (the daemon's), services and reals are
 * the model's. Without one (svcs NULL), services come from the vips map
 * and reals from the reals map (those the service owns) and the live
 * Maglev tables; weights are then unknown. m = 0: read it from l4_config.
 * Returns 0 or -1 with err. */
int l4_snapshot_build(struct l4_snapshot *snap, const struct l4_model_svc *svcs, size_t n_svcs,
                      const struct l4_fds *fds, uint32_t m, char *err, size_t errlen);

/* ---- the rows and their rendering (stats.c) ---- */

void l4_snapshot_free(struct l4_snapshot *snap);

/* A service row from a vips entry (no config: scheduler "maglev", loaded),
 * appended to snap->svcs; l4_snapshot_sort() orders them by slot. */
int l4_snapshot_add_vip(struct l4_snapshot *snap, const struct l4_vip_key *key, const struct l4_vip_meta *meta);
void l4_snapshot_sort(struct l4_snapshot *snap);
/* One row per model service, with its reals (address, weight, state) in
 * config order; not yet loaded (the caller looks the VIP up). */
int l4_snapshot_from_model(struct l4_snapshot *snap, const struct l4_model_svc *svcs, size_t n);
/* Append a real (reals map index) to a row: weight -1 (unknown). */
int l4_row_add_real(struct l4_row_svc *s, uint32_t index);
/* Count the m slots of a service's live Maglev table into its reals. A
 * real that is not in the row is added, unless known_reals (a model gave
 * the row its reals: such a slot is stale and skipped). */
void l4_row_count_slots(struct l4_row_svc *s, const __u32 *slots, uint32_t m, bool known_reals);
/* What the reals map says of a real: its address when the row has none
 * (with the VIP's port for DR and TUN), and its state when the model gave
 * none: down (inactive), up (has slots), drained (weight 0) or down. */
void l4_row_real_describe(struct l4_row_real *rr, const struct l4_row_svc *s, const struct l4_real *real);
/* Connection counts by reals map index (by_real[0..n_reals)) into the rows. */
void l4_snapshot_set_conns(struct l4_snapshot *snap, const struct l4_conn_count *by_real, size_t n_reals);

/* The ipvsadm -Ln --stats style table. malloc'd text. */
char *l4_snapshot_render_list(const struct l4_snapshot *snap, const char *pin_dir);
/* The sluice_l4_* families of /metrics, written into out. */
void l4_snapshot_metrics(const struct l4_snapshot *snap, struct strbuf *out);

/* Tables per service pair and the table count `sluice l4` uses for n
 * services: two per service, at least L4_MAGLEV_DEFAULT_TABLES. */
uint32_t l4_table_count(size_t n_services);

#endif
