/* `sluice registry -c FILE`: a registry node.
 *
 * One process, one event loop, one thread: the model (reg_model.h) in
 * memory, the embedded store (reg_store.h) on disk, the HTTP API
 * (reg_api.h) on the admin site, active checks of persistent instances
 * (reg_health.h), the DNS server (reg_dns.h) and the metrics
 * (reg_metrics.h), all on the loop of core/daemon.h.
 *
 * How a change travels:
 *   - an API write is validated, written to the store, and applied to the
 *     model only in the store's completion, which also sends its 200: the
 *     model holds only what is durable, and a 200 means "on disk";
 *   - the store is flushed once per loop turn (a zero timer armed by the
 *     first write of the turn), so the writes of one turn share a commit;
 *   - every model change (writes, heartbeats that revive, the clock's
 *     expiry, health results) is reported by the model's change callback;
 *     the daemon collects the changed services for merge_window, then
 *     rebuilds their answer views (reg_answer_prepare, so DNS queries never
 *     pay for it), brings their health checks in line with their
 *     instances, and answers every watcher whose index has passed;
 *   - the clock (reg_model_tick) runs once a second: ephemeral instances
 *     that stopped heartbeating go DOWN, then expire (and are deleted from
 *     the store, or a restart would bring them back).
 *
 * What is written besides API writes: expiries (deletions), health
 * changes of persistent instances (so a restart does not answer with an
 * instance that was failing its checks before the health checker has
 * judged it again), and the services and instances of the config file.
 * Heartbeats never write.
 */
#ifndef SLUICE_REGISTRY_REG_DAEMON_H
#define SLUICE_REGISTRY_REG_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/admin.h"
#include "core/config.h"
#include "core/daemon.h"
#include "core/evloop.h"
#include "registry/reg_conf.h"
#include "registry/reg_model.h"
#include "registry/reg_select.h"
#include "registry/reg_store.h"
#include "registry/reg_subnet.h"
#include "registry/reg_table.h"

#define REG_TICK_MS 1000

struct reg_checker;
struct reg_watch;
struct reg_dns;

/* Counters the metrics and the status read. */
struct reg_counters {
    uint64_t health_changes;        /* persistent instances turned up or down by their checks */
    uint64_t store_writes;          /* writes handed to the store */
    uint64_t store_write_failures;  /* completions that said not ok */
    uint64_t watch_wakeups;         /* watchers answered because their index passed */
    uint64_t watch_timeouts;        /* watchers answered because their wait ended */
    uint64_t watch_refused;         /* watchers refused: api.max_watchers reached */
    uint64_t merges;                /* merge windows closed */
    uint64_t api_unauthorized;      /* writes refused for a missing or wrong token */
};

struct reg_daemon {
    struct daemon dmn;
    struct ev_loop *loop;
    const char *config_path;
    struct sl_config *cfg;
    const struct cfg_registry *rc;  /* reg_conf(cfg) */

    struct reg_model *model;
    struct reg_store *store;
    struct reg_subnets *subnets;
    struct reg_checker *health;
    struct reg_dns *dns;            /* NULL: no registry.dns (or the DNS server is not built in yet) */
    struct reg_rand rnd;

    struct ev_timer tick;           /* the model's clock */
    struct ev_timer flush;          /* armed by a write: flush the store at the next loop turn */
    struct ev_timer merge;          /* armed by a change: close the merge window */

    /* Services changed in the current merge window (names; a deleted one too). */
    struct reg_table dirty;
    char **dirty_names;
    size_t n_dirty, dirty_cap;

    /* Blocking queries waiting for a change. */
    struct reg_watch *watchers;
    uint32_t n_watchers;

    struct reg_counters counters;
    bool stopping;
    bool cluster_config_applied;    /* store etcd: the file's services go in after the first load */
};

/* The verb: `sluice registry -c FILE [--pid-file PATH]`. */
int reg_main(int argc, char **argv);
void reg_usage(FILE *out);

/* The module's admin hook: the API routes, the metric families and the
 * status part on the daemon's site (arg: the struct reg_daemon). */
int reg_daemon_admin(struct admin_site *site, void *arg);

/* For the API: hand a write to the store (counted, flushed this turn). */
void reg_daemon_put_service(struct reg_daemon *d, const char *name, const struct reg_service_settings *s,
                            reg_store_done_fn *done, void *arg);
void reg_daemon_delete_service(struct reg_daemon *d, const char *name, reg_store_done_fn *done, void *arg);
void reg_daemon_put_instance(struct reg_daemon *d, const char *service, const struct reg_instance_spec *spec,
                             reg_store_done_fn *done, void *arg);
void reg_daemon_delete_instance(struct reg_daemon *d, const char *service, const char *id, reg_store_done_fn *done,
                                void *arg);

/* The caller's location from a client address (the subnet map) or from
 * names; unknown names are unknown locations. */
struct reg_loc reg_daemon_locate_names(const struct reg_daemon *d, const char *datacenter, const char *region);

#endif
