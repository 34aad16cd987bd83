/* The client: configuration, open and close, logging, stats. See
 * client_priv.h for the files of libsluice. */
#include "client/client_priv.h"

#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "client/http.h"
#include "lib/errbuf.h"

const char *sluice_version(void)
{
    return "0.1.0";
}

void cl_copy(char *dst, size_t cap, const char *src)
{
    if (cap == 0)
        return;
    size_t n = src ? strnlen(src, cap - 1) : 0;
    memcpy(dst, src ? src : "", n);
    dst[n] = '\0';
}

/* ---- logging ----------------------------------------------------------- */

static const char *level_name(enum sluice_log_level l)
{
    switch (l) {
    case SLUICE_LOG_ERROR:
        return "error";
    case SLUICE_LOG_WARN:
        return "warn";
    case SLUICE_LOG_INFO:
        return "info";
    case SLUICE_LOG_DEBUG:
        break;
    }
    return "debug";
}

static void log_text(sluice_client *c, enum sluice_log_level lvl, const char *msg)
{
    if (c->cfg.log)
        c->cfg.log(c->cfg.log_arg, lvl, msg);
    else if (lvl <= SLUICE_LOG_WARN)
        fprintf(stderr, "libsluice %s: %s\n", level_name(lvl), msg);
}

static void vlog(sluice_client *c, enum sluice_log_level lvl, const char *suffix, const char *fmt, va_list ap)
{
    if (!c->cfg.log && lvl > SLUICE_LOG_WARN)
        return;
    char msg[1024];
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    if (suffix && n >= 0 && (size_t)n < sizeof msg)
        snprintf(msg + n, sizeof msg - (size_t)n, "%s", suffix);
    log_text(c, lvl, msg);
}

void cl_log(sluice_client *c, enum sluice_log_level lvl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(c, lvl, NULL, fmt, ap);
    va_end(ap);
}

void cl_log_limited(sluice_client *c, struct cl_ratelimit *rl, enum sluice_log_level lvl, const char *fmt, ...)
{
    uint64_t now = cl_now_ms();
    pthread_mutex_lock(&c->log_lock);
    bool emit = now >= rl->next_ms;
    uint64_t suppressed = rl->suppressed;
    if (emit) {
        rl->next_ms = now + CL_LOG_EVERY_MS;
        rl->suppressed = 0;
    } else {
        rl->suppressed++;
    }
    pthread_mutex_unlock(&c->log_lock);
    if (!emit)
        return;
    char suffix[64] = "";
    if (suppressed)
        snprintf(suffix, sizeof suffix, " (and %llu more like it)", (unsigned long long)suppressed);
    va_list ap;
    va_start(ap, fmt);
    vlog(c, lvl, suffix, fmt, ap);
    va_end(ap);
}

/* ---- configuration ------------------------------------------------------ */

void sluice_config_init(struct sluice_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->size = sizeof *cfg;
    cfg->watch_wait_ms = 30000;
    cfg->pull_interval_ms = 30000;
    cfg->request_timeout_ms = 2000;
    cfg->avoid_after_failures = 3;
    cfg->avoid_ms = 10000;
}

/* A copy of s, NULL for NULL or "". *ok cleared when out of memory. */
static char *dup_opt(const char *s, bool *ok)
{
    if (!s || !*s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *ok = false;
    return d;
}

/* The caller's struct, which may be an older (shorter) one, over the
 * defaults. */
static void take_config(struct sluice_config *dst, const struct sluice_config *src)
{
    sluice_config_init(dst);
    size_t n = src->size && src->size < sizeof *dst ? src->size : sizeof *dst;
    memcpy(dst, src, n);
    dst->size = sizeof *dst;
    if (!dst->watch_wait_ms)
        dst->watch_wait_ms = 30000;
    if (!dst->pull_interval_ms)
        dst->pull_interval_ms = 30000;
    if (!dst->request_timeout_ms)
        dst->request_timeout_ms = 2000;
}

static int check_config(const struct sluice_config *cfg, char *err, size_t errlen)
{
    bool has_registries = cfg->registries && *cfg->registries;
    if (!has_registries && !(cfg->failover_dir && *cfg->failover_dir) && !(cfg->cache_dir && *cfg->cache_dir))
        return errbuf_fail(err, errlen, "registries: required unless cache_dir or failover_dir feeds the consumer");
    if (cfg->watch_wait_ms < 1000 || cfg->watch_wait_ms > 600000)
        return errbuf_fail(err, errlen, "watch_wait_ms: must be 1000..600000");
    if (cfg->pull_interval_ms < 100)
        return errbuf_fail(err, errlen, "pull_interval_ms: must be at least 100");
    if (cfg->request_timeout_ms < 10 || cfg->request_timeout_ms > 600000)
        return errbuf_fail(err, errlen, "request_timeout_ms: must be 10..600000");
    return 0;
}

/* mkdir -p, mode 0755. */
static int make_dirs(const char *path, char *err, size_t errlen)
{
    char buf[4096];
    if (strlen(path) >= sizeof buf)
        return errbuf_fail(err, errlen, "cache_dir: path too long");
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        bool end = *p == '\0';
        if (*p == '/' || end) {
            *p = '\0';
            if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                return errbuf_fail(err, errlen, "cache_dir: %s: %s", buf, strerror(errno));
            if (end)
                break;
            *p = '/';
        }
    }
    struct stat st;
    if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
        return errbuf_fail(err, errlen, "cache_dir: %s: not a directory", path);
    return 0;
}

static void client_free(sluice_client *c)
{
    for (size_t i = 0; i < c->n_services; i++)
        cl_service_free(c->services[i]);
    free(c->services);
    free(c->nodes);
    free(c->datacenter);
    free(c->region);
    free(c->cache_dir);
    free(c->failover_dir);
    free(c->token);
    cl_grace_destroy(&c->grace);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
    pthread_mutex_destroy(&c->log_lock);
    free(c);
    curl_global_cleanup();
}

sluice_client *sluice_open(const struct sluice_config *cfg, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!cfg) {
        errbuf_fail(err, errlen, "no configuration");
        return NULL;
    }
    struct sluice_config conf;
    take_config(&conf, cfg);
    if (check_config(&conf, err, errlen) < 0)
        return NULL;
    if (conf.cache_dir && *conf.cache_dir && make_dirs(conf.cache_dir, err, errlen) < 0)
        return NULL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        errbuf_fail(err, errlen, "libcurl: initialization failed");
        return NULL;
    }
    sluice_client *c = calloc(1, sizeof *c);
    if (!c) {
        curl_global_cleanup();
        errbuf_fail(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&c->lock, NULL);
    pthread_mutex_init(&c->log_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cond, &ca);
    pthread_condattr_destroy(&ca);
    cl_grace_init(&c->grace);
    c->cfg = conf;
    c->pick = (struct cl_pick_conf){.avoid_after_failures = conf.avoid_after_failures, .avoid_ms = conf.avoid_ms};
    bool ok = true;
    c->datacenter = dup_opt(conf.datacenter, &ok);
    c->region = dup_opt(conf.region, &ok);
    c->cache_dir = dup_opt(conf.cache_dir, &ok);
    c->failover_dir = dup_opt(conf.failover_dir, &ok);
    c->token = dup_opt(conf.token, &ok);
    c->cfg.registries = NULL; /* parsed into nodes; the caller's string is not kept */
    c->cfg.datacenter = c->datacenter;
    c->cfg.region = c->region;
    c->cfg.cache_dir = c->cache_dir;
    c->cfg.failover_dir = c->failover_dir;
    c->cfg.token = c->token;
    if (!ok) {
        errbuf_fail(err, errlen, "out of memory");
        client_free(c);
        return NULL;
    }
    if (conf.registries && cl_nodes_parse(c, conf.registries, err, errlen) < 0) {
        client_free(c);
        return NULL;
    }
    /* Each process starts at a node of its own, so a fleet's watches spread
     * over the nodes. */
    if (c->n_nodes)
        atomic_store(&c->node_cur, (size_t)(cl_rand64() % c->n_nodes));
    int rc = cl_thread_start(&c->watcher, cl_watcher_main, c);
    if (rc != 0) {
        errbuf_fail(err, errlen, "starting the watcher thread: %s", strerror(rc));
        client_free(c);
        return NULL;
    }
    c->watcher_started = true;
    return c;
}

int cl_thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(t, NULL, fn, arg);   /* the thread inherits the full mask */
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

void sluice_close(sluice_client *c)
{
    if (!c)
        return;
    if (c->providers_close)
        c->providers_close(c);
    pthread_mutex_lock(&c->lock);
    atomic_store(&c->stop, true);
    pthread_mutex_unlock(&c->lock);
    cl_watcher_wake(c);
    if (c->watcher_started)
        pthread_join(c->watcher, NULL);
    client_free(c);
}

int sluice_stats(sluice_client *c, struct sluice_stats *out)
{
    if (!c || !out)
        return -1;
    memset(out, 0, sizeof *out);
    out->watches = atomic_load(&c->st.watches);
    out->pulls = atomic_load(&c->st.pulls);
    out->requests_failed = atomic_load(&c->st.requests_failed);
    out->node_switches = atomic_load(&c->st.node_switches);
    out->updates = atomic_load(&c->st.updates);
    out->updates_ignored_empty = atomic_load(&c->st.updates_ignored_empty);
    out->updates_ignored_invalid = atomic_load(&c->st.updates_ignored_invalid);
    out->cache_writes = atomic_load(&c->st.cache_writes);
    out->cache_write_errors = atomic_load(&c->st.cache_write_errors);
    out->cache_loads = atomic_load(&c->st.cache_loads);
    out->failover_loads = atomic_load(&c->st.failover_loads);
    out->failover_active = atomic_load(&c->st.failover_active);
    out->registry_reachable = atomic_load(&c->st.registry_reachable);
    if (c->n_nodes)
        cl_copy(out->node, sizeof out->node, c->nodes[atomic_load(&c->node_cur)].name);
    return 0;
}
