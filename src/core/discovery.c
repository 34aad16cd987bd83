/* See discovery.h.
 *
 * Fork safety. The process that follows services (the proxy's master)
 * runs libsluice's background threads and may fork at any time (its
 * workers). After fork() only the forking thread exists in the child, and
 * any lock another thread held at that moment stays held for ever in the
 * child: libsluice's and libcurl's own locks, and stdio's. glibc makes
 * malloc() itself safe across fork (it takes every arena lock around
 * fork() and resets them in the child), but nothing else is. So a forked
 * child must not call into libsluice at all, nor free what it allocated:
 * it only reads what the parent copied into shared memory, and it closes
 * the eventfd it inherited (the proxy's workers close every inherited
 * descriptor they do not need).
 */
#include "core/discovery.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/log.h"

struct discovery_client {
    struct cfg_discovery key;    /* the block that opened it (its service unused) */
    sluice_client *c;
    unsigned refs;
    struct discovery_client *next;
};

struct discovery_sub {
    struct discovery_client *client;
    sluice_service *svc;
    char *service;
    unsigned refs;
    struct discovery_sub *next;
};

struct discovery {
    int efd;
    struct discovery_client *clients;
    struct discovery_sub *subs;
};

const char *discovery_source_name(enum sluice_source src)
{
    switch (src) {
    case SLUICE_SOURCE_REGISTRY:
        return "registry";
    case SLUICE_SOURCE_CACHE:
        return "cache";
    case SLUICE_SOURCE_FAILOVER:
        return "failover";
    case SLUICE_SOURCE_NONE:
        break;
    }
    return "none";
}

struct discovery *discovery_new(char *err, size_t errlen)
{
    struct discovery *ds = calloc(1, sizeof *ds);
    if (!ds) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    ds->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (ds->efd < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        free(ds);
        return NULL;
    }
    return ds;
}

static void client_close(struct discovery_client *cl)
{
    sluice_close(cl->c);
    discovery_conf_free(&cl->key);
    free(cl);
}

void discovery_free(struct discovery *ds)
{
    if (!ds)
        return;
    /* Clients first: their threads may still call on_change with ds. */
    for (struct discovery_client *cl = ds->clients, *next; cl; cl = next) {
        next = cl->next;
        client_close(cl);
    }
    for (struct discovery_sub *s = ds->subs, *next; s; s = next) {
        next = s->next;
        free(s->service);
        free(s);
    }
    close(ds->efd);
    free(ds);
}

int discovery_fd(const struct discovery *ds)
{
    return ds->efd;
}

void discovery_ack(struct discovery *ds)
{
    uint64_t n;
    while (read(ds->efd, &n, sizeof n) == (ssize_t)sizeof n)
        ;
}

/* On libsluice's thread: as short as the header asks. */
static void on_change(void *arg, sluice_service *svc)
{
    struct discovery *ds = arg;
    uint64_t one = 1;
    ssize_t w = write(ds->efd, &one, sizeof one);
    (void)w; /* EAGAIN: the counter is full, so the fd is readable anyway */
}

/* libsluice's messages, on any of its threads, into the daemon's log
 * (one write(2) per line, so safe from there). */
static void on_log(void *arg, enum sluice_log_level level, const char *msg)
{
    static const enum log_level map[] = {
        [SLUICE_LOG_ERROR] = LOG_LEVEL_ERROR, [SLUICE_LOG_WARN] = LOG_LEVEL_WARN,
        [SLUICE_LOG_INFO] = LOG_LEVEL_INFO, [SLUICE_LOG_DEBUG] = LOG_LEVEL_DEBUG,
    };
    enum log_level l = (unsigned)level < sizeof map / sizeof map[0] ? map[level] : LOG_LEVEL_WARN;
    if (l >= log_get_level())
        log_msg(l, "discovery: %s", msg);
}

static struct discovery_client *client_for(struct discovery *ds, const struct cfg_discovery *d, char *err,
                                           size_t errlen)
{
    for (struct discovery_client *cl = ds->clients; cl; cl = cl->next)
        if (discovery_conf_same_client(&cl->key, d))
            return cl;
    struct discovery_client *cl = calloc(1, sizeof *cl);
    if (!cl || discovery_conf_copy(&cl->key, d) < 0) {
        free(cl);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    struct sluice_config sc;
    sluice_config_init(&sc);
    sc.registries = d->registries;
    sc.datacenter = d->datacenter;
    sc.region = d->region;
    sc.cache_dir = d->cache_dir;
    sc.failover_dir = d->failover_dir;
    sc.log = on_log;
    sc.log_arg = ds;
    cl->c = sluice_open(&sc, err, errlen);
    if (!cl->c) {
        discovery_conf_free(&cl->key);
        free(cl);
        return NULL;
    }
    cl->next = ds->clients;
    ds->clients = cl;
    return cl;
}

static void client_release(struct discovery *ds, struct discovery_client *cl)
{
    if (--cl->refs)
        return;
    for (struct discovery_client **pp = &ds->clients; *pp; pp = &(*pp)->next) {
        if (*pp == cl) {
            *pp = cl->next;
            break;
        }
    }
    client_close(cl);
}

struct discovery_sub *discovery_follow(struct discovery *ds, const struct cfg_discovery *d, char *err,
                                       size_t errlen)
{
    struct discovery_client *cl = client_for(ds, d, err, errlen);
    if (!cl)
        return NULL;
    for (struct discovery_sub *s = ds->subs; s; s = s->next) {
        if (s->client == cl && strcmp(s->service, d->service) == 0) {
            s->refs++;
            return s;
        }
    }
    cl->refs++; /* from here on the sub owns a reference, released on failure */
    struct discovery_sub *s = calloc(1, sizeof *s);
    if (s)
        s->service = strdup(d->service);
    if (!s || !s->service) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    s->svc = sluice_subscribe(cl->c, d->service, err, errlen);
    if (!s->svc)
        goto fail;
    s->client = cl;
    s->refs = 1;
    sluice_on_change(s->svc, on_change, ds);
    s->next = ds->subs;
    ds->subs = s;
    /* The list may have come from the cache before the callback was set. */
    on_change(ds, s->svc);
    return s;
fail:
    if (s)
        free(s->service);
    free(s);
    client_release(ds, cl);
    return NULL;
}

void discovery_unfollow(struct discovery *ds, struct discovery_sub *s)
{
    if (!s || --s->refs)
        return;
    for (struct discovery_sub **pp = &ds->subs; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    /* libsluice has no unsubscribe: the service stays on the client (if
     * others keep it open) but stops signalling. */
    sluice_on_change(s->svc, NULL, NULL);
    struct discovery_client *cl = s->client;
    free(s->service);
    free(s);
    client_release(ds, cl);
}

int discovery_members(struct discovery_sub *s, struct discovery_member *out, size_t cap, uint64_t *version)
{
    struct sluice_member *raw = cap ? calloc(cap, sizeof *raw) : NULL;
    if (cap && !raw)
        return -1;
    int n = sluice_members(s->svc, raw, cap, version);
    size_t kept = 0;
    for (int i = 0; i < n && (size_t)i < cap; i++) {
        const struct sluice_member *m = &raw[i];
        if (m->addr.ss_family != AF_INET && m->addr.ss_family != AF_INET6)
            continue;
        struct discovery_member *d = &out[kept++];
        addr_from_sockaddr(&d->addr, (const struct sockaddr *)&m->addr, m->addrlen);
        snprintf(d->id, sizeof d->id, "%s", m->id);
        d->weight = m->weight;
        d->healthy = m->healthy;
    }
    free(raw);
    if (n < 0)
        return -1;
    /* More than cap: say so, as sluice_members does. */
    return (size_t)n > cap ? n : (int)kept;
}

void discovery_status(struct discovery_sub *s, struct discovery_status *out)
{
    struct sluice_service_info info;
    struct sluice_stats st;
    memset(out, 0, sizeof *out);
    memset(&info, 0, sizeof info);
    if (sluice_service_info(s->svc, &info) == 0) {
        out->source = info.source;
        out->version = info.version;
        out->age_ms = info.age_ms;
        out->members = info.members;
        out->instances = info.instances;
        out->healthy = info.healthy;
        out->fail_open = info.fail_open;
        snprintf(out->tier, sizeof out->tier, "%s", info.tier);
    }
    out->source_name = discovery_source_name(out->source);
    memset(&st, 0, sizeof st);
    if (sluice_stats(s->client->c, &st) == 0) {
        out->registry_reachable = st.registry_reachable;
        snprintf(out->node, sizeof out->node, "%s", st.node);
    }
}

const char *discovery_service(const struct discovery_sub *s)
{
    return s->service;
}
