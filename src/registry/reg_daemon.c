/* `sluice registry -c FILE`: see reg_daemon.h. */
#include "registry/reg_daemon.h"

#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/daemon.h"
#include "core/log.h"
#include "core/version.h"
#include "registry/reg_api.h"
#include "registry/reg_cluster.h"
#include "registry/reg_dns.h"
#include "registry/reg_health.h"
#include "registry/reg_metrics.h"
#include "registry/registry_module.h"

/* Room on the admin server beyond the watchers, for the other clients. */
#define ADMIN_CONNS_BESIDE_WATCHERS 256

/* ---- store writes ------------------------------------------------------ */

static void arm_flush(struct reg_daemon *d)
{
    if (!ev_timer_active(&d->flush))
        ev_timer_start(d->loop, &d->flush, 0);
}

/* The store's group commit: every write of a loop turn in one commit. */
static void flush_now(struct ev_loop *loop, struct ev_timer *t)
{
    struct reg_daemon *d = t->data;
    reg_store_flush(d->store);
}

/* A write nobody waits for (an expiry, a health change, the config file). */
static void background_done(void *arg, bool ok, const char *reason)
{
    struct reg_daemon *d = arg;
    if (!ok) {
        d->counters.store_write_failures++;
        log_error("registry: the store refused a write: %s", reason ? reason : "unknown reason");
    }
}

#define WRITE_PRELUDE()                                                                                            \
    do {                                                                                                           \
        d->counters.store_writes++;                                                                                \
        if (!done) {                                                                                               \
            done = background_done;                                                                                \
            arg = d;                                                                                               \
        }                                                                                                          \
    } while (0)

void reg_daemon_put_service(struct reg_daemon *d, const char *name, const struct reg_service_settings *s,
                            reg_store_done_fn *done, void *arg)
{
    WRITE_PRELUDE();
    reg_store_put_service(d->store, name, s, done, arg);
    arm_flush(d);
}

void reg_daemon_delete_service(struct reg_daemon *d, const char *name, reg_store_done_fn *done, void *arg)
{
    WRITE_PRELUDE();
    reg_store_delete_service(d->store, name, done, arg);
    arm_flush(d);
}

void reg_daemon_put_instance(struct reg_daemon *d, const char *service, const struct reg_instance_spec *spec,
                             reg_store_done_fn *done, void *arg)
{
    WRITE_PRELUDE();
    reg_store_put_instance(d->store, service, spec, done, arg);
    arm_flush(d);
}

void reg_daemon_delete_instance(struct reg_daemon *d, const char *service, const char *id, reg_store_done_fn *done,
                                void *arg)
{
    WRITE_PRELUDE();
    reg_store_delete_instance(d->store, service, id, done, arg);
    arm_flush(d);
}

/* ---- locations ---------------------------------------------------------- */

/* The id of a location name the model knows, 0 for one it does not (an
 * API caller's unknown name must not grow the model's table). */
static uint32_t known_loc(const struct reg_model *m, const char *name)
{
    if (!name || !*name)
        return 0;
    for (uint32_t id = 1;; id++) {
        const char *n = reg_model_loc_name(m, id);
        if (!*n)
            return 0;
        if (strcmp(n, name) == 0)
            return id;
    }
}

struct reg_loc reg_daemon_locate_names(const struct reg_daemon *d, const char *datacenter, const char *region)
{
    return (struct reg_loc){ .dc = known_loc(d->model, datacenter), .region = known_loc(d->model, region) };
}

static struct reg_subnets *build_subnets(struct reg_daemon *d, const struct cfg_registry *rc, char *err,
                                         size_t errlen)
{
    struct reg_subnets *t = reg_subnets_new();
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < rc->n_subnets; i++) {
        const struct cfg_reg_subnet *s = &rc->subnets[i];
        struct reg_loc loc;
        if (reg_model_loc(d->model, s->datacenter, s->region, &loc, err, errlen) < 0 ||
            reg_subnets_add(t, s->cidr, loc, err, errlen) < 0) {
            reg_subnets_free(t);
            return NULL;
        }
    }
    if (reg_subnets_build(t, err, errlen) < 0) {
        reg_subnets_free(t);
        return NULL;
    }
    return t;
}

/* ---- changes: merged, then views rebuilt, checks synced, watchers woken -- */

static void mark_dirty(struct reg_daemon *d, const char *name)
{
    if (reg_table_get(&d->dirty, name, strlen(name)))
        return;
    if (d->n_dirty == d->dirty_cap) {
        size_t cap = d->dirty_cap ? d->dirty_cap * 2 : 16;
        char **n = realloc(d->dirty_names, cap * sizeof *n);
        if (!n)
            goto oom;
        d->dirty_names = n;
        d->dirty_cap = cap;
    }
    char *copy = strdup(name);
    if (!copy)
        goto oom;
    if (reg_table_put(&d->dirty, copy, strlen(copy), copy) < 0) {
        free(copy);
        goto oom;
    }
    d->dirty_names[d->n_dirty++] = copy;
    if (!ev_timer_active(&d->merge) && !d->stopping)
        ev_timer_start(d->loop, &d->merge, d->rc->api.merge_window_ms);
    return;
oom:
    log_error("registry: out of memory noting a change of service %s", name);
}

static void on_change(void *arg, const struct reg_event *ev)
{
    struct reg_daemon *d = arg;
    mark_dirty(d, ev->service->name);
    /* An expired instance leaves the store too, or a restart would bring
     * it back for a grace period. */
    if (ev->kind == REG_EV_INSTANCE_EXPIRE)
        reg_daemon_delete_instance(d, ev->service->name, ev->instance->id, NULL, NULL);
    /* In a cluster the other nodes learn an ephemeral instance's health
     * (silence, a heartbeat back) only from etcd; what the feed itself
     * applied came from etcd and is not written back. */
    if (ev->kind == REG_EV_INSTANCE_CHANGE && reg_store_is_cluster(d->store) && !reg_cluster_feeding(d->store) &&
        ev->instance->ephemeral && !ev->instance->remote) {
        struct reg_instance_spec spec;
        reg_instance_spec_of(ev->instance, &spec);
        reg_daemon_put_instance(d, ev->service->name, &spec, NULL, NULL);
    }
}

/* The merge window closed: every service it saw change gets its answer
 * views rebuilt and its health checks synced, then the watchers whose
 * index passed are answered, once for the whole window. */
static void merge_close(struct ev_loop *loop, struct ev_timer *t)
{
    struct reg_daemon *d = t->data;
    char **names = d->dirty_names;
    size_t n = d->n_dirty;
    /* Syncing checks can change health (a service whose check was turned
     * off brings its instances up): those changes start a new window. */
    d->dirty_names = NULL;
    d->n_dirty = d->dirty_cap = 0;
    reg_table_free(&d->dirty);
    reg_table_init(&d->dirty, 0);
    for (size_t i = 0; i < n; i++) {
        struct reg_service *svc = reg_service_find(d->model, names[i], strlen(names[i]));
        if (svc && reg_answer_prepare(svc) < 0)
            log_error("registry: out of memory rebuilding the answers of service %s", names[i]);
        reg_health_sync(d->health, names[i]);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    d->counters.merges++;
    reg_api_wake(d);
}

static void tick(struct ev_loop *loop, struct ev_timer *t)
{
    struct reg_daemon *d = t->data;
    struct reg_tick_result res;
    reg_model_tick(d->model, ev_clock_ms(), &res);
    if (res.self_preservation_changed) {
        struct reg_model_stats ms;
        reg_model_stats(d->model, &ms);
        if (ms.self_preservation)
            log_warn("registry: self-preservation on: %" PRIu64 " heartbeats in the last window, %.0f expected; "
                     "no instance expires until the rate recovers",
                     ms.heartbeats_in_window, ms.heartbeats_expected);
        else
            log_info("registry: self-preservation off: the heartbeat rate recovered");
    }
    if (res.expired)
        log_info("registry: %" PRIu32 " ephemeral instance%s expired", res.expired, res.expired == 1 ? "" : "s");
    ev_timer_start(loop, t, REG_TICK_MS);
}

/* A persistent instance's health changed by its checks: written, so a
 * restart starts from it. */
static void on_health_changed(void *arg, struct reg_instance *inst)
{
    struct reg_daemon *d = arg;
    d->counters.health_changes++;
    struct reg_instance_spec spec;
    reg_instance_spec_of(inst, &spec);
    reg_daemon_put_instance(d, inst->service->name, &spec, NULL, NULL);
}

/* ---- the config file's services and instances ----------------------------- */

static bool in_config(const struct cfg_registry *rc, const char *service, const char *id)
{
    for (size_t i = 0; rc && i < rc->n_services; i++) {
        const struct cfg_reg_service *s = &rc->services[i];
        if (!s->name || strcmp(s->name, service) != 0)
            continue;
        for (size_t j = 0; j < s->n_instances; j++) {
            const struct cfg_reg_instance *in = &s->instances[j];
            if (strcmp(in->id ? in->id : in->addr.text, id) == 0)
                return true;
        }
    }
    return false;
}

/* The owner of the instances the config file lists: a restart or a reload
 * deregisters those of them the file no longer lists (an instance
 * registered again through the API gets another owner and stays). In a
 * cluster every node sees every node's instances, so the owner names the
 * node ("config.reg1"): a node deregisters only what its own file dropped,
 * never what another node's file lists. */
static void config_owner(const struct reg_daemon *d, char out[REG_OWNER_MAX + 1])
{
    if (d->rc->store == REG_STORE_ETCD)
        snprintf(out, REG_OWNER_MAX + 1, "config.%.*s", REG_OWNER_MAX - 7, d->rc->node);
    else
        snprintf(out, REG_OWNER_MAX + 1, "config");
}

/* Put the file's services and instances into the model and the store;
 * instances of an earlier file that this one does not list are removed.
 * The file wins over API changes to what it lists. */
static void apply_config(struct reg_daemon *d, const struct cfg_registry *nrc)
{
    char why[256], owner[REG_OWNER_MAX + 1];
    uint64_t now = ev_clock_ms();
    config_owner(d, owner);
    for (size_t i = 0; i < nrc->n_services; i++) {
        const struct cfg_reg_service *cs = &nrc->services[i];
        struct reg_service *svc = reg_service_find(d->model, cs->name, strlen(cs->name));
        uint64_t before = svc ? svc->modify_index : 0;
        if (reg_service_put(d->model, cs->name, &cs->settings, &svc, why, sizeof why) < 0) {
            log_error("registry: service %s of the config: %s", cs->name, why);
            continue;
        }
        if (svc->modify_index != before)
            reg_daemon_put_service(d, svc->name, &svc->settings, NULL, NULL);
        for (size_t j = 0; j < cs->n_instances; j++) {
            struct reg_instance_spec spec;
            reg_conf_instance_spec(&cs->instances[j], &spec);
            spec.owner = owner;
            struct reg_instance *inst = reg_instance_find(svc, spec.id ? spec.id : spec.addr.text);
            before = inst ? inst->modify_index : 0;
            if (reg_instance_put(d->model, svc, &spec, now, &inst, why, sizeof why) < 0) {
                log_error("registry: instance %s of service %s in the config: %s",
                          spec.id ? spec.id : spec.addr.text, cs->name, why);
                continue;
            }
            if (inst->modify_index != before) {
                reg_instance_spec_of(inst, &spec);
                reg_daemon_put_instance(d, svc->name, &spec, NULL, NULL);
            }
        }
    }
    /* Those the file listed before (this run or an earlier one) and lists no more. */
    for (uint32_t i = 0; i < reg_model_service_count(d->model); i++) {
        struct reg_service *svc = reg_model_service_at(d->model, i);
        for (uint32_t j = svc->n_instances; j-- > 0;) {
            const struct reg_instance *inst = svc->instances[j];
            if (strcmp(inst->owner, owner) != 0 || in_config(nrc, svc->name, inst->id))
                continue;
            char id[REG_ID_MAX + 1];
            snprintf(id, sizeof id, "%s", inst->id);
            log_info("registry: instance %s of service %s left the config: deregistered", id, svc->name);
            reg_instance_delete(d->model, svc, id);
            reg_daemon_delete_instance(d, svc->name, id, NULL, NULL);
        }
    }
}

/* ---- reload ------------------------------------------------------------------ */

static bool same_str(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

static void warn_restart_only(const struct cfg_registry *o, const struct cfg_registry *n)
{
    if (!same_str(o->node, n->node) || !same_str(o->datacenter, n->datacenter) || !same_str(o->region, n->region))
        log_warn("reload: registry.node, datacenter and region take effect at the next restart");
    if (!same_str(o->data_dir, n->data_dir) || o->store != n->store)
        log_warn("reload: registry.data_dir and registry.store take effect at the next restart");
    if (memcmp(&o->expiry, &n->expiry, sizeof o->expiry) != 0)
        log_warn("reload: registry.expiry takes effect at the next restart");
    if (o->dns.present != n->dns.present || memcmp(o->dns.listen, n->dns.listen, sizeof o->dns.listen) != 0 ||
        strcmp(o->dns.zone, n->dns.zone) != 0)
        log_warn("reload: registry.dns takes effect at the next restart (the subnets apply now)");
}

static void reload(struct reg_daemon *d)
{
    struct config_errors errs = { 0 };
    struct sl_config *cfg = daemon_load_config(d->config_path, CONFIG_FILES_LOG, &errs);
    if (!cfg) {
        for (size_t i = 0; i < errs.n; i++)
            log_error("%s", errs.lines[i]);
        config_errors_free(&errs);
        log_error("reload: %s has errors; still running the previous configuration", d->config_path);
        return;
    }
    const struct cfg_registry *nrc = reg_conf(cfg);
    if (!nrc->present) {
        log_error("reload: %s has no registry: section; still running the previous configuration", d->config_path);
        config_free(cfg);
        return;
    }
    char err[256];
    struct reg_subnets *subnets = build_subnets(d, nrc, err, sizeof err);
    if (!subnets) {
        log_error("reload: registry.subnets: %s; still running the previous configuration", err);
        config_free(cfg);
        return;
    }
    warn_restart_only(d->rc, nrc);
    apply_config(d, nrc);
    struct sl_config *old = d->cfg;
    if (d->dns)
        reg_dns_set_subnets(d->dns, subnets);
    reg_subnets_free(d->subnets);
    d->subnets = subnets;
    d->cfg = cfg;
    d->rc = nrc;
    d->dmn.admin_opts.max_conns = nrc->api.max_watchers + ADMIN_CONNS_BESIDE_WATCHERS;
    daemon_admin_follow(&d->dmn, cfg);
    config_free(old);
    d->dmn.site.status.reloads++;
    d->dmn.site.status.config_path = d->config_path;
    log_info("reloaded %s: %zu service%s listed, %zu subnet%s", d->config_path, nrc->n_services,
             nrc->n_services == 1 ? "" : "s", nrc->n_subnets, nrc->n_subnets == 1 ? "" : "s");
}

/* ---- the daemon ------------------------------------------------------------- */

int reg_daemon_admin(struct admin_site *site, void *arg)
{
    struct reg_daemon *d = arg;
    if (metrics_register(&site->metrics, reg_metrics_collect, d) < 0 ||
        admin_status_part(site, reg_api_status, d) < 0)
        return -1;
    return admin_mount(site, NULL, "/api/registry", reg_api_handle, d);
}

static void on_reload(void *arg)
{
    struct reg_daemon *d = arg;
    log_info("SIGHUP: reloading %s", d->config_path);
    reload(d);
}

static const struct daemon_ops reg_daemon_ops = { .reload = on_reload }; /* stop: the core logs it and stops at once */

/* ---- cluster mode (store: etcd, see reg_cluster.h) -------------------------- */

static bool cluster_duty(void *arg, const char *service, const char *id)
{
    struct reg_daemon *d = arg;
    return reg_cluster_has_duty(d->store, service, id);
}

/* Members came or went: the checks move, so every service is synced. */
static void on_members_changed(void *arg)
{
    struct reg_daemon *d = arg;
    log_info("registry: %zu live member%s in etcd; health-check duty rebalanced", reg_cluster_member_count(d->store),
             reg_cluster_member_count(d->store) == 1 ? "" : "s");
    for (uint32_t i = 0; i < reg_model_service_count(d->model); i++)
        mark_dirty(d, reg_model_service_at(d->model, i)->name);
}

static void on_cluster_state(void *arg, bool stale, const char *reason)
{
    struct reg_daemon *d = arg;
    if (stale) {
        log_warn("registry: stale: %s; answering from the last copy, refusing writes", reason);
        return;
    }
    struct reg_cluster_stats cs;
    reg_cluster_stats(d->store, &cs);
    log_info("registry: in step with etcd (%s, revision %lld)", cs.endpoint, (long long)cs.revision);
    if (!d->cluster_config_applied) { /* the file's services, once etcd's content is in */
        d->cluster_config_applied = true;
        apply_config(d, d->rc);
    }
}

static int start_cluster(struct reg_daemon *d, char *err, size_t errlen)
{
    const struct cfg_registry *rc = d->rc;
    struct reg_etcd_store_conf c;
    reg_etcd_store_conf_defaults(&c);
    for (size_t i = 0; i < rc->etcd.n_endpoints && i < REG_ETCD_MAX_ENDPOINTS; i++)
        snprintf(c.etcd.endpoints[c.etcd.n_endpoints++], sizeof c.etcd.endpoints[0], "%s", rc->etcd.endpoints[i]);
    if (rc->etcd.prefix)
        snprintf(c.prefix, sizeof c.prefix, "%s", rc->etcd.prefix);
    c.lease_ttl_ms = rc->etcd.lease_ttl_ms;
    snprintf(c.node, sizeof c.node, "%s", rc->node ? rc->node : "");
    snprintf(c.datacenter, sizeof c.datacenter, "%s", rc->datacenter ? rc->datacenter : "");
    snprintf(c.region, sizeof c.region, "%s", rc->region ? rc->region : "");
    c.reregister_grace_ms = rc->expiry.grace_ms;
    char why[256];
    d->store = reg_store_etcd_open(d->loop, &c, why, sizeof why);
    if (!d->store) {
        snprintf(err, errlen, "registry.etcd: %s", why);
        return -1;
    }
    struct reg_cluster_hooks hooks = { .members_changed = on_members_changed, .state_changed = on_cluster_state,
                                       .arg = d };
    if (reg_cluster_attach(d->store, d->model, &hooks, err, errlen) < 0)
        return -1;
    log_info("registry: cluster mode: node %s over etcd %s (prefix %s); loading", c.node, c.etcd.endpoints[0],
             c.prefix);
    return 0;
}

/* The model, the store's contents and the file's services, before anything listens. */
static int start_model(struct reg_daemon *d, char *err, size_t errlen)
{
    struct reg_model_conf mc = d->rc->expiry;
    d->model = reg_model_create(&mc, err, errlen);
    if (!d->model)
        return -1;
    reg_model_on_change(d->model, on_change, d);
    reg_table_init(&d->dirty, 0);
    reg_rand_seed(&d->rnd, (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32));
    struct reg_loc self;
    if (reg_model_loc(d->model, d->rc->datacenter, d->rc->region, &self, err, errlen) < 0)
        return -1;
    d->subnets = build_subnets(d, d->rc, err, errlen);
    if (!d->subnets)
        return -1;
    if (d->rc->store == REG_STORE_ETCD) {
        /* The feed loads etcd's content on the loop; the file's services
         * follow once it is in (on_cluster_state). */
        if (start_cluster(d, err, errlen) < 0)
            return -1;
        d->health = reg_health_new(d->loop, d->model, on_health_changed, d);
        if (!d->health) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        reg_health_set_duty(d->health, cluster_duty, d);
        return 0;
    }
    /* Opened here, in the process that uses it (no fork follows). */
    d->store = reg_store_sqlite_open(d->rc->data_dir, NULL, err, errlen);
    if (!d->store)
        return -1;
    char why[256];
    if (reg_store_load(d->store, d->model, ev_clock_ms(), why, sizeof why) < 0) {
        snprintf(err, errlen, "%s: %s", d->rc->data_dir, why);
        return -1;
    }
    struct reg_model_stats ms;
    reg_model_stats(d->model, &ms);
    log_info("registry: loaded %" PRIu32 " service%s and %" PRIu32 " instance%s from %s (%" PRIu32
             " ephemeral, in their grace period of %" PRIu32 " ms)",
             ms.services, ms.services == 1 ? "" : "s", ms.instances, ms.instances == 1 ? "" : "s", d->rc->data_dir,
             ms.ephemeral, d->rc->expiry.grace_ms);
    d->health = reg_health_new(d->loop, d->model, on_health_changed, d);
    if (!d->health) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    apply_config(d, d->rc);
    return 0;
}

/* The authoritative DNS server on the loop, answering from the model. */
static int start_dns(struct reg_daemon *d, char *err, size_t errlen)
{
    struct reg_dns_conf dc;
    reg_conf_dns(&d->rc->dns, &dc);
    d->dns = reg_dns_start(d->loop, &dc, d->model, d->subnets, err, errlen);
    if (!d->dns)
        return -1;
    if (reg_dns_metrics(&d->dmn.site.metrics, d->dns) < 0) {
        snprintf(err, errlen, "too many metric collectors");
        return -1;
    }
    for (size_t i = 0; reg_dns_bound(d->dns, i); i++)
        log_info("registry: DNS for %s on %s (UDP and TCP)", dc.zone, reg_dns_bound(d->dns, i)->text);
    return 0;
}

static int run(const char *config_path, const char *pid_file)
{
    struct reg_daemon *d = calloc(1, sizeof *d);
    if (!d) {
        fprintf(stderr, "sluice registry: out of memory\n");
        return 1;
    }
    d->config_path = config_path;
    char err[512];
    int rc = 1;
    d->cfg = daemon_load_config_or_say(config_path, CONFIG_FILES_LOG);
    if (!d->cfg) {
        free(d);
        return 1;
    }
    d->rc = reg_conf(d->cfg);
    if (!d->rc->present) {
        fprintf(stderr, "sluice registry: %s has no registry: section (see docs/configuration.md)\n", config_path);
        config_free(d->cfg);
        free(d);
        return 1;
    }
    const struct daemon_spec spec = { .role = "registry", .module = &registry_module, .ops = &reg_daemon_ops,
                                      .arg = d };
    if (daemon_init(&d->dmn, &spec, d->cfg, err, sizeof err) < 0) {
        log_error("%s", err);
        goto out;
    }
    d->loop = d->dmn.loop;
    ev_timer_init(&d->tick, tick, d);
    ev_timer_init(&d->flush, flush_now, d);
    ev_timer_init(&d->merge, merge_close, d);
    if (start_model(d, err, sizeof err) < 0) {
        log_error("registry: %s", err);
        goto out;
    }
    if (daemon_catch_signals(&d->dmn, err, sizeof err) < 0) {
        log_error("%s", err);
        goto out;
    }
    d->dmn.site.status = (struct admin_status){ .version = SLUICE_VERSION, .config_path = d->config_path,
                                                .started_ms = ev_clock_ms() };
    d->dmn.admin_opts.max_conns = d->rc->api.max_watchers + ADMIN_CONNS_BESIDE_WATCHERS;
    if (daemon_admin_start(&d->dmn, d->cfg, err, sizeof err) < 0) {
        log_error("admin API: %s", err);
        goto out;
    }
    if (!d->dmn.admin)
        log_warn("registry: admin.listen is off, so the registry has no HTTP API");
    if (d->rc->dns.present && start_dns(d, err, sizeof err) < 0) {
        log_error("registry: %s", err);
        goto out;
    }
    if (pid_file && daemon_write_pid_file(&d->dmn, pid_file) < 0) {
        log_error("cannot write pid file %s: %m", pid_file);
        goto out;
    }
    ev_timer_start(d->loop, &d->tick, REG_TICK_MS);
    if (!ev_timer_active(&d->merge))
        ev_timer_start(d->loop, &d->merge, 0);   /* the first views and checks for what was loaded */
    for (uint32_t i = 0; i < reg_model_service_count(d->model); i++)
        mark_dirty(d, reg_model_service_at(d->model, i)->name);
    log_info("sluice registry %s running: node %s, API on %s, store %s in %s", SLUICE_VERSION, d->rc->node,
             d->dmn.admin ? d->cfg->admin_addr.text : "(off)", reg_store_kind_name(d->rc->store), d->rc->data_dir);
    rc = daemon_run(&d->dmn) < 0 ? 1 : 0;

out:
    d->stopping = true;
    admin_stop(d->dmn.admin);           /* watchers are cancelled with their connections */
    d->dmn.admin = NULL;
    reg_api_drop_watchers(d);
    reg_dns_stop(d->dns);
    d->dns = NULL;
    reg_health_free(d->health);
    d->health = NULL;
    reg_store_close(d->store);          /* pending writes are committed (their clients are gone) */
    d->store = NULL;
    if (d->loop) {
        ev_timer_stop(d->loop, &d->tick);
        ev_timer_stop(d->loop, &d->flush);
        ev_timer_stop(d->loop, &d->merge);
    }
    for (size_t i = 0; i < d->n_dirty; i++)
        free(d->dirty_names[i]);
    free(d->dirty_names);
    reg_table_free(&d->dirty);
    reg_model_free(d->model);
    reg_subnets_free(d->subnets);
    daemon_fini(&d->dmn);
    config_free(d->cfg);
    free(d);
    return rc;
}

void reg_usage(FILE *out)
{
    fputs("Usage: sluice registry -c FILE [--pid-file PATH]\n"
          "\n"
          "Run a registry node as FILE's registry: section says: services and their\n"
          "instances in memory and in an embedded store (registry.data_dir), or with\n"
          "store: etcd in an etcd cluster shared by several nodes (registry.etcd), an\n"
          "HTTP API on admin.listen (/api/registry/...), active health checks of\n"
          "persistent instances, expiry of ephemeral ones that stop heartbeating.\n"
          "SIGHUP reloads FILE (services, instances, subnets, token, api limits);\n"
          "SIGTERM or SIGINT stops.\n"
          "\n"
          DAEMON_USAGE_OPTIONS
          "\n"
          "Docs: docs/configuration.md (registry), docs/admin-api.md (Registry)\n",
          out);
}

int reg_main(int argc, char **argv)
{
    const char *path, *pid_file;
    int rc = daemon_parse_args("sluice registry", argc, argv, reg_usage, &path, &pid_file);
    return rc >= 0 ? rc : run(path, pid_file);
}
