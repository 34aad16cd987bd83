/* The sluice_registry_* families: see reg_metrics.h. */
#include "registry/reg_metrics.h"

#include "core/metrics.h"
#include "registry/reg_cluster.h"
#include "registry/reg_daemon.h"
#include "registry/reg_health.h"
#include "registry/reg_select.h"

static void one(struct strbuf *out, const char *name, const char *type, const char *help, uint64_t v)
{
    metrics_family(out, name, type, help);
    metrics_sample(out, name, NULL, 0, v);
}

/* A per-service gauge over every service. */
static void per_service(struct strbuf *out, struct reg_daemon *d, const char *name, const char *help,
                        uint64_t (*value)(const struct reg_service *svc, const struct reg_service_summary *sum))
{
    metrics_family(out, name, "gauge", help);
    uint32_t n = reg_model_service_count(d->model);
    for (uint32_t i = 0; i < n; i++) {
        const struct reg_service *svc = reg_model_service_at(d->model, i);
        struct reg_service_summary sum;
        reg_service_summarize(svc, &sum);
        struct metric_label l = { "service", svc->name };
        metrics_sample(out, name, &l, 1, value(svc, &sum));
    }
}

static uint64_t v_instances(const struct reg_service *s, const struct reg_service_summary *m) { return m->instances; }
static uint64_t v_healthy(const struct reg_service *s, const struct reg_service_summary *m) { return m->healthy; }
static uint64_t v_fail_open(const struct reg_service *s, const struct reg_service_summary *m)
{
    return m->protect_active;
}
static uint64_t v_capped(const struct reg_service *s, const struct reg_service_summary *m)
{
    return s->eviction_capped;
}

void reg_metrics_collect(void *arg, struct strbuf *out)
{
    struct reg_daemon *d = arg;
    struct reg_model_stats ms;
    reg_model_stats(d->model, &ms);
    struct reg_store_stats ss = { 0 };
    if (d->store)
        reg_store_stats(d->store, &ss);
    const struct reg_counters *c = &d->counters;

    one(out, "sluice_registry_index", "gauge", "The registry's change index (what watches wait on).",
        reg_model_index(d->model));
    one(out, "sluice_registry_services", "gauge", "Services known to this node.", ms.services);
    one(out, "sluice_registry_instances", "gauge", "Instances known to this node.", ms.instances);
    one(out, "sluice_registry_ephemeral_instances", "gauge", "Ephemeral (heartbeating) instances.", ms.ephemeral);
    one(out, "sluice_registry_registrations_total", "counter", "Instances registered (new or changed).",
        ms.registrations);
    one(out, "sluice_registry_deregistrations_total", "counter", "Instances deregistered.", ms.deregistrations);
    one(out, "sluice_registry_heartbeats_total", "counter", "Heartbeats received (never written to the store).",
        ms.heartbeats);
    one(out, "sluice_registry_expirations_total", "counter", "Ephemeral instances expired for silence.",
        ms.expirations);
    one(out, "sluice_registry_marked_down_total", "counter", "Ephemeral instances turned DOWN for missed heartbeats.",
        ms.marked_down_by_silence);
    one(out, "sluice_registry_expiry_deferred_by_cap_total", "counter",
        "Instance-ticks an expiry waited for the eviction cap.", ms.expiry_deferred_by_cap);
    one(out, "sluice_registry_expiry_held_by_preservation_total", "counter",
        "Instance-ticks an expiry was held by self-preservation.", ms.expiry_held_by_preservation);
    one(out, "sluice_registry_self_preservation", "gauge",
        "1 while self-preservation stops expiry (the node-wide heartbeat rate is below its share of the expected).",
        ms.self_preservation);
    one(out, "sluice_registry_self_preservation_episodes_total", "counter", "Times self-preservation turned on.",
        ms.self_preservation_episodes);
    per_service(out, d, "sluice_registry_service_instances", "Instances of the service.", v_instances);
    per_service(out, d, "sluice_registry_service_healthy", "Healthy answerable instances of the service.",
                v_healthy);
    per_service(out, d, "sluice_registry_service_fail_open", "1 while the service's answers fail open (healthy "
                "share below its protect threshold).", v_fail_open);
    per_service(out, d, "sluice_registry_service_eviction_capped", "1 while expiries of the service wait for the "
                "eviction cap.", v_capped);
    one(out, "sluice_registry_health_checks", "gauge", "Persistent instances under active health checks.",
        reg_health_targets(d->health));
    one(out, "sluice_registry_health_changes_total", "counter",
        "Persistent instances turned UP or DOWN by their health checks.", c->health_changes);
    one(out, "sluice_registry_store_healthy", "gauge", "1 when the store's last commit worked.", ss.healthy);
    one(out, "sluice_registry_store_writes_total", "counter", "Writes handed to the store.", c->store_writes);
    one(out, "sluice_registry_store_commits_total", "counter", "Batches of writes the store made durable.",
        ss.commits);
    one(out, "sluice_registry_store_write_failures_total", "counter", "Writes the store refused or lost.",
        c->store_write_failures);
    one(out, "sluice_registry_store_pending", "gauge", "Writes waiting for the next commit.", ss.pending);
    if (reg_store_is_cluster(d->store)) { /* cluster mode: reg_cluster.h */
        struct reg_cluster_stats cs;
        reg_cluster_stats(d->store, &cs);
        one(out, "sluice_registry_stale", "gauge", "1 while etcd is unreachable: answers come from the last copy.",
            cs.stale);
        one(out, "sluice_registry_cluster_members", "gauge", "Live registry nodes seen in etcd.", cs.members);
        one(out, "sluice_registry_cluster_revision", "gauge", "The last etcd revision applied to the model.",
            (uint64_t)cs.revision);
        one(out, "sluice_registry_cluster_held", "gauge",
            "Instances of a dead node held for their clients to register again.", cs.holding);
        one(out, "sluice_registry_cluster_lease_losses_total", "counter", "This node's etcd lease found expired.",
            cs.lease_losses);
    }
    one(out, "sluice_registry_watchers", "gauge", "Blocking queries waiting for a change.", d->n_watchers);
    one(out, "sluice_registry_watch_wakeups_total", "counter", "Watchers answered because of a change.",
        c->watch_wakeups);
    one(out, "sluice_registry_watch_timeouts_total", "counter", "Watchers answered because their wait ended.",
        c->watch_timeouts);
    one(out, "sluice_registry_watch_refused_total", "counter", "Watches refused at registry.api.max_watchers.",
        c->watch_refused);
    one(out, "sluice_registry_merges_total", "counter", "Merge windows closed (each one wake-up of the watchers).",
        c->merges);
    one(out, "sluice_registry_api_unauthorized_total", "counter", "Writes refused for a missing or wrong token.",
        c->api_unauthorized);
}
