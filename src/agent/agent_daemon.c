/* `sluice agent -c FILE`: see agent_daemon.h.
 *
 * One process, one event loop (core/daemon.h) for the DNS server, plus
 * libsluice's own background threads, which keep the lists of the
 * services followed (watch and pull from the registry nodes, the cache
 * directory, the failover directory). The loop reads those lists through
 * libsluice's lock-free calls; nothing else crosses threads (the
 * library's log lines go to the daemon's log, which writes each line in
 * one write()).
 */
#include "agent/agent_daemon.h"

#include <jansson.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/sluice.h>

#include "agent/agent_conf.h"
#include "agent/agent_dns.h"
#include "agent/agent_module.h"
#include "core/daemon.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/version.h"
#include "lib/strbuf.h"

struct agent_daemon {
    struct daemon dmn;
    const char *config_path;
    struct sl_config *cfg;
    const struct cfg_agent *ac;
    sluice_client *client;
    struct agent_dns *dns;
};

/* ---- libsluice as the agent's source -------------------------------------- */

static void *src_subscribe(void *arg, const char *name)
{
    struct agent_daemon *a = arg;
    char err[256];
    sluice_service *s = sluice_subscribe(a->client, name, err, sizeof err);
    if (!s)
        log_warn("agent: cannot follow service %s: %s", name, err);
    else
        log_debug("agent: following service %s", name);
    return s;
}

static void src_info(void *arg, void *h, struct agent_svc_info *out)
{
    struct sluice_service_info si;
    memset(out, 0, sizeof *out);
    if (sluice_service_info(h, &si) < 0) {
        out->state = AGENT_SVC_PENDING;
        return;
    }
    if (si.source != SLUICE_SOURCE_NONE)
        out->state = AGENT_SVC_READY;
    else
        out->state = si.not_found ? AGENT_SVC_MISSING : AGENT_SVC_PENDING;
    out->version = si.version;
    out->dns_ttl = si.dns_ttl;
    out->answer_count = si.answer_count;
}

static int src_members(void *arg, void *h, bool all, struct sluice_member *out, size_t cap)
{
    return all ? sluice_instances(h, out, cap, NULL) : sluice_members(h, out, cap, NULL);
}

static const struct agent_source_ops sluice_source = {
    .subscribe = src_subscribe,
    .info = src_info,
    .members = src_members,
};

static void library_log(void *arg, enum sluice_log_level level, const char *msg)
{
    switch (level) {
    case SLUICE_LOG_ERROR: log_error("libsluice: %s", msg); break;
    case SLUICE_LOG_WARN: log_warn("libsluice: %s", msg); break;
    case SLUICE_LOG_INFO: log_info("libsluice: %s", msg); break;
    case SLUICE_LOG_DEBUG: log_debug("libsluice: %s", msg); break;
    }
}

static sluice_client *open_client(const struct cfg_agent *ac, char *err, size_t errlen)
{
    struct strbuf regs = { 0 };
    for (size_t i = 0; i < ac->n_registries; i++)
        strbuf_printf(&regs, "%s%s", i ? "," : "", ac->registries[i]);
    struct sluice_config sc;
    sluice_config_init(&sc);
    sc.registries = regs.len ? regs.p : NULL;
    sc.datacenter = ac->datacenter;
    sc.region = ac->region;
    sc.cache_dir = ac->cache_dir;
    sc.failover_dir = ac->failover_dir;
    sc.token = ac->token;
    sc.log = library_log;
    char why[256] = "";
    sluice_client *c = sluice_open(&sc, why, sizeof why);
    strbuf_free(&regs);
    if (!c)
        snprintf(err, errlen, "libsluice: %s", why);
    return c;
}

/* ---- metrics: libsluice's own counters ------------------------------------ */

static void collect_client(void *arg, struct strbuf *out)
{
    struct agent_daemon *a = arg;
    struct sluice_stats s;
    if (!a->client || sluice_stats(a->client, &s) < 0)
        return;
    const struct {
        const char *name, *help;
        uint64_t v;
    } counters[] = {
        { "sluice_agent_client_watches_total", "Blocking queries the registry answered.", s.watches },
        { "sluice_agent_client_pulls_total", "Full pulls of a service's list.", s.pulls },
        { "sluice_agent_client_requests_failed_total", "Requests to a registry node that failed.", s.requests_failed },
        { "sluice_agent_client_node_switches_total", "Moves to another registry node.", s.node_switches },
        { "sluice_agent_client_updates_total", "Lists accepted.", s.updates },
        { "sluice_agent_client_updates_ignored_total", "Updates not applied: empty (not believed) or invalid.",
          s.updates_ignored_empty + s.updates_ignored_invalid },
        { "sluice_agent_client_cache_writes_total", "Last-known-good lists written to the cache directory.",
          s.cache_writes },
        { "sluice_agent_client_cache_loads_total", "Lists loaded from the cache directory.", s.cache_loads },
        { "sluice_agent_client_failover_loads_total", "Lists loaded from the failover directory.",
          s.failover_loads },
    };
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++)
        metrics_single(out, counters[i].name, "counter", counters[i].help, counters[i].v);
    metrics_single(out, "sluice_agent_client_registry_reachable", "gauge",
                   "1 when the last request to a registry node worked.", s.registry_reachable);
    metrics_single(out, "sluice_agent_client_failover_active", "gauge",
                   "1 while the failover directory's switch file exists.", s.failover_active);
}

/* The "agent" part of /api/status: where it answers, what it forwards
 * to, how many services it follows and whether a registry node answers. */
static void agent_status(void *arg, json_t *status)
{
    struct agent_daemon *a = arg;
    json_t *listen = json_array(), *upstreams = json_array();
    struct agent_dns_stats ds = { 0 };
    if (a->dns) {
        for (size_t i = 0; agent_dns_bound(a->dns, i); i++)
            json_array_append_new(listen, json_string(agent_dns_bound(a->dns, i)->text));
        for (size_t i = 0; agent_dns_upstream(a->dns, i); i++)
            json_array_append_new(upstreams, json_string(agent_dns_upstream(a->dns, i)->text));
        agent_dns_stats(a->dns, &ds);
    }
    struct sluice_stats ss = { 0 };
    if (a->client)
        sluice_stats(a->client, &ss);
    json_object_set_new(status, "agent",
                        json_pack("{s:s, s:s, s:s, s:o, s:o, s:i, s:i, s:b, s:s, s:b}", "zone", a->ac->zone,
                                  "datacenter", a->ac->datacenter ? a->ac->datacenter : "", "region",
                                  a->ac->region ? a->ac->region : "", "listen", listen, "upstreams", upstreams,
                                  "services", (json_int_t)ds.services, "outstanding", (json_int_t)ds.outstanding,
                                  "registry_reachable", ss.registry_reachable, "registry_node", ss.node,
                                  "failover_active", ss.failover_active));
}

int agent_daemon_admin(struct admin_site *site, void *arg)
{
    struct agent_daemon *a = arg;
    if (admin_status_part(site, agent_status, a) < 0)
        return -1;
    return metrics_register(&site->metrics, collect_client, a);
}

/* ---- the daemon ------------------------------------------------------------- */

static int start_dns(struct agent_daemon *a, char *err, size_t errlen)
{
    struct sl_addr ups[AGENT_MAX_UPSTREAMS];
    size_t n_up = agent_conf_upstreams(a->ac, ups, AGENT_MAX_UPSTREAMS, err, errlen);
    if (n_up == 0)
        return -1;
    struct agent_dns_conf dc;
    agent_dns_conf_from(a->ac, ups, n_up, &dc);
    a->dns = agent_dns_start(a->dmn.loop, &dc, &sluice_source, a, err, errlen);
    if (!a->dns)
        return -1;
    if (agent_dns_metrics(&a->dmn.site.metrics, a->dns) < 0) {
        snprintf(err, errlen, "too many metric collectors");
        return -1;
    }
    for (size_t i = 0; i < a->ac->n_services; i++)
        agent_dns_follow(a->dns, a->ac->services[i]);
    struct strbuf up = { 0 };
    for (size_t i = 0; i < n_up; i++)
        strbuf_printf(&up, "%s%s", i ? ", " : "", ups[i].text);
    for (size_t i = 0; agent_dns_bound(a->dns, i); i++)
        log_info("agent: DNS on %s (UDP and TCP): %s from the registry, the rest forwarded to %s",
                 agent_dns_bound(a->dns, i)->text, dc.zone, up.p ? up.p : "");
    strbuf_free(&up);
    return 0;
}

static void on_reload(void *arg)
{
    struct agent_daemon *a = arg;
    log_warn("SIGHUP: sluice agent reads %s only at start; restart it to apply changes", a->config_path);
}

static const struct daemon_ops agent_daemon_ops = { .reload = on_reload };

static int run(const char *config_path, const char *pid_file)
{
    struct agent_daemon *a = calloc(1, sizeof *a);
    if (!a) {
        fprintf(stderr, "sluice agent: out of memory\n");
        return 1;
    }
    a->config_path = config_path;
    a->cfg = daemon_load_config_or_say(config_path, CONFIG_FILES_LOG);
    if (!a->cfg) {
        free(a);
        return 1;
    }
    a->ac = agent_conf(a->cfg);
    if (!a->ac->present) {
        fprintf(stderr, "sluice agent: %s has no agent: section (see docs/agent.md)\n", config_path);
        config_free(a->cfg);
        free(a);
        return 1;
    }
    char err[512];
    int rc = 1;
    const struct daemon_spec spec = { .role = "agent", .module = &agent_module, .ops = &agent_daemon_ops, .arg = a };
    if (daemon_init(&a->dmn, &spec, a->cfg, err, sizeof err) < 0) {
        log_error("%s", err);
        goto out;
    }
    /* Signals are blocked before libsluice starts its threads, which
     * inherit the mask: SIGTERM must reach the loop's signalfd, not end
     * the process from another thread. */
    if (daemon_catch_signals(&a->dmn, err, sizeof err) < 0) {
        log_error("%s", err);
        goto out;
    }
    a->client = open_client(a->ac, err, sizeof err);
    if (!a->client) {
        log_error("agent: %s", err);
        goto out;
    }
    a->dmn.site.status = (struct admin_status){ .version = SLUICE_VERSION, .config_path = a->config_path,
                                                .started_ms = ev_clock_ms() };
    if (daemon_admin_start(&a->dmn, a->cfg, err, sizeof err) < 0) {
        log_error("admin API: %s", err);
        goto out;
    }
    if (start_dns(a, err, sizeof err) < 0) {
        log_error("agent: %s", err);
        goto out;
    }
    if (pid_file && daemon_write_pid_file(&a->dmn, pid_file) < 0) {
        log_error("cannot write pid file %s: %m", pid_file);
        goto out;
    }
    log_info("sluice agent %s running: zone %s, registries %zu, datacenter %s, region %s", SLUICE_VERSION,
             a->ac->zone, a->ac->n_registries, a->ac->datacenter ? a->ac->datacenter : "(unknown)",
             a->ac->region ? a->ac->region : "(unknown)");
    rc = daemon_run(&a->dmn) < 0 ? 1 : 0;

out:
    admin_stop(a->dmn.admin);
    a->dmn.admin = NULL;
    agent_dns_stop(a->dns);
    a->dns = NULL;
    sluice_close(a->client);   /* after the DNS server: its handles die with the client */
    a->client = NULL;
    daemon_fini(&a->dmn);
    config_free(a->cfg);
    free(a);
    return rc;
}

void agent_usage(FILE *out)
{
    fputs("Usage: sluice agent -c FILE [--pid-file PATH]\n"
          "\n"
          "Run the local DNS agent FILE's agent: section describes: a stub resolver\n"
          "for this host (127.0.0.1:53 by default) that answers the registry's names\n"
          "(SERVICE.ZONE A/AAAA, _SERVICE._tcp.ZONE SRV) itself from libsluice's\n"
          "lists, with this host's locality, weights and a short TTL, and keeps\n"
          "answering them from its last copy (and its cache_dir after a restart)\n"
          "while every registry node is down. Every other name is forwarded to the\n"
          "upstream resolvers (agent.upstreams, else /etc/resolv.conf's nameservers)\n"
          "and their answers passed back unchanged. SIGTERM or SIGINT stops.\n"
          "\n"
          DAEMON_USAGE_OPTIONS
          "\n"
          "Docs: docs/agent.md, docs/configuration.md (agent)\n",
          out);
}

int agent_main(int argc, char **argv)
{
    const char *path, *pid_file;
    int rc = daemon_parse_args("sluice agent", argc, argv, agent_usage, &path, &pid_file);
    return rc >= 0 ? rc : run(path, pid_file);
}
