/* Discovered services: their subscriptions and the changes they bring.
 * See l4_discovery.h.
 *
 * One follower per discovered service (by its name, PROTO:VIP), with its
 * own copy of the discovery block it subscribed with. The core's glue
 * signals one eventfd when any followed list changes; the loop then reads
 * every follower's list again and applies those whose version moved.
 *
 * Applying a list is what the admin API does to add, remove and reweight
 * reals: a copy of the services with this service's reals replaced,
 * handed to l4d_replace_services(). Reals that stay keep their index,
 * health target and connection-table entries; Maglev moves only the
 * shares of the reals that came or went. An empty list is applied only
 * when the client library says it is real (it keeps the last list through
 * a registry outage and ignores empty pushes): a list with source "none"
 * (nothing from the registry, the cache or the failover directory yet)
 * never touches the reals.
 */
#include "l4/l4_discovery.h"

#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/evloop.h"
#include "core/log.h"
#include "l4/daemon_priv.h"

struct follower {
    char name[96];                 /* the service's, PROTO:VIP */
    struct discovery_sub *sub;     /* NULL: could not follow (st.last_error) */
    struct l4_disc_status st;      /* st.conf: set by l4_discovery_status() */
    struct cfg_discovery conf;
    bool listed;                   /* seen in this sync's pass */
};

struct l4_discovery {
    struct discovery *ds;
    struct ev_io io;
    struct follower *f;
    size_t n;
};

static const struct cfg_l4_service *service_at(const struct l4d *d, size_t s)
{
    return &l4_conf(d->cfg)->services[s];
}

static int service_index(const struct l4d *d, const char *name)
{
    for (size_t s = 0; s < l4_conf(d->cfg)->n_services; s++) {
        char n[96];
        l4_service_name(service_at(d, s), n, sizeof n);
        if (strcmp(n, name) == 0)
            return (int)s;
    }
    return -1;
}

static struct follower *follower_of(struct l4_discovery *disc, const char *name)
{
    for (size_t i = 0; disc && i < disc->n; i++)
        if (strcmp(disc->f[i].name, name) == 0)
            return &disc->f[i];
    return NULL;
}

/* ---- applying a list ---- */

/* The service's members as the pure half takes them. */
static size_t read_members(struct follower *f, struct l4_disc_member **out, uint64_t *version, bool *truncated)
{
    size_t cap = f->conf.max_members;
    struct discovery_member *raw = calloc(cap, sizeof *raw);
    struct l4_disc_member *m = calloc(cap, sizeof *m);
    int n = raw && m ? discovery_members(f->sub, raw, cap, version) : -1;
    *truncated = n > 0 && (size_t)n > cap;
    size_t k = n < 0 ? 0 : *truncated ? cap : (size_t)n;
    for (size_t i = 0; i < k; i++) {
        m[i].addr = raw[i].addr.ss;
        m[i].addrlen = raw[i].addr.len;
        m[i].weight = raw[i].weight;
    }
    free(raw);
    if (n < 0) {
        free(m);
        m = NULL;
    }
    *out = m;
    return n < 0 ? SIZE_MAX : k;
}

static void log_skips(const char *name, const struct l4_disc_skips *now, const struct l4_disc_skips *before,
                      const struct cfg_l4_service *svc)
{
    if (!memcmp(now, before, sizeof *now))
        return;
    if (now->family)
        log_warn("service %s: %zu member%s of another address family left out (mode %s%s)", name, now->family,
                 now->family == 1 ? "" : "s", l4_fwd_mode_name(svc->mode),
                 svc->mode == L4_FWD_TUN ? ": no l4.tun_source_prefix for it" : " reaches the VIP's family only");
    if (now->port)
        log_warn("service %s: %zu member%s on another port than the VIP's left out (mode %s does not change the "
                 "port: register them on port %u)", name, now->port, now->port == 1 ? "" : "s",
                 l4_fwd_mode_name(svc->mode), addr_port(&svc->vip));
    if (now->duplicate)
        log_warn("service %s: %zu member%s at an address and port already listed left out", name, now->duplicate,
                 now->duplicate == 1 ? "" : "s");
}

/* The services with service s's reals replaced by next[0..n). */
static struct cfg_l4_service *services_with(const struct l4d *d, size_t s, const struct cfg_l4_real *next, size_t n)
{
    size_t count = l4_conf(d->cfg)->n_services;
    struct cfg_l4_service *v = calloc(count + 1, sizeof *v);
    struct cfg_l4_real *reals = malloc((n ? n : 1) * sizeof *reals);
    size_t done = 0;
    for (; v && reals && done < count; done++)
        if (l4_conf_service_copy(&v[done], service_at(d, done)) < 0)
            break;
    if (!v || !reals || done < count) {
        for (size_t i = 0; v && i < done; i++)
            l4_conf_service_free(&v[i]);
        free(v);
        free(reals);
        return NULL;
    }
    if (n)
        memcpy(reals, next, n * sizeof *reals);
    free(v[s].reals);
    v[s].reals = reals;
    v[s].n_reals = n;
    return v;
}

/* Apply follower f's list to service s if its version moved. */
static void apply_one(struct l4d *d, struct follower *f, size_t s)
{
    discovery_status(f->sub, &f->st.now);
    if (f->st.now.source == SLUICE_SOURCE_NONE)
        return;   /* nothing from anywhere yet: the reals stay as they are */
    uint64_t version = 0;
    bool truncated = false;
    struct l4_disc_member *m = NULL;
    size_t n = read_members(f, &m, &version, &truncated);
    if (n == SIZE_MAX) {
        snprintf(f->st.last_error, sizeof f->st.last_error, "out of memory reading the list");
        log_error("service %s: discovery: %s", f->name, f->st.last_error);
        return;
    }
    if (f->st.applied_version && version == f->st.applied_version) {
        free(m);
        return;
    }
    const struct cfg_l4_service *svc = service_at(d, s);
    struct cfg_l4_real *want = calloc(n + 1, sizeof *want);
    struct cfg_l4_real *next = calloc(n + 1, sizeof *next);
    if (!want || !next) {
        free(m);
        free(want);
        free(next);
        snprintf(f->st.last_error, sizeof f->st.last_error, "out of memory applying the list");
        log_error("service %s: discovery: %s", f->name, f->st.last_error);
        return;
    }
    if (truncated)
        log_warn("service %s: registry service %s has more members than discovery.max_members (%" PRIu32 "); "
                 "the first %" PRIu32 " are used", f->name, f->conf.service, f->conf.max_members,
                 f->conf.max_members);
    struct l4_disc_skips skips;
    size_t n_want = l4_disc_reals_of(l4_conf(d->cfg), svc, m, n, want, &skips);
    free(m);
    log_skips(f->name, &skips, &f->st.skipped, svc);
    struct l4_disc_change ch;
    size_t n_next = l4_disc_merge(svc->reals, svc->n_reals, want, n_want, next, &ch);
    free(want);
    f->st.members = n;
    f->st.used = n_next;
    f->st.skipped = skips;
    f->st.applied_version = version;
    if (!ch.added && !ch.removed && !ch.reweighted) {
        free(next);
        return;
    }
    struct cfg_l4_service *v = services_with(d, s, next, n_next);
    free(next);
    char err[512];
    int rc = v ? l4d_replace_services(d, v, l4_conf(d->cfg)->n_services, err, sizeof err) : 500;
    if (rc) {
        snprintf(f->st.last_error, sizeof f->st.last_error, "%s", v ? err : "out of memory");
        log_error("service %s: discovery: the list of %s (version %" PRIu64 ") cannot be applied: %s; keeping "
                  "the reals it has", f->name, f->conf.service, version, f->st.last_error);
        return;
    }
    f->st.last_error[0] = '\0';
    f->st.changes++;
    log_info("service %s: reals from registry service %s (%s%s, version %" PRIu64 "): %zu added, %zu removed, "
             "%zu reweighted; %zu real%s", f->name, f->conf.service, f->st.now.source_name,
             f->st.now.fail_open ? ", failing open" : "", version, ch.added, ch.removed, ch.reweighted, n_next,
             n_next == 1 ? "" : "s");
}

/* Every follower whose list moved. A change of one service's reals
 * rebuilds the list of services, so each is found again by name. */
static void apply_all(struct l4d *d)
{
    struct l4_discovery *disc = d->disc;
    for (size_t i = 0; disc && i < disc->n; i++) {
        struct follower *f = &disc->f[i];
        int s = service_index(d, f->name);
        if (f->sub && s >= 0)
            apply_one(d, f, (size_t)s);
    }
}

static void on_signal(struct ev_loop *loop, struct ev_io *io, uint32_t revents)
{
    struct l4d *d = io->data;
    discovery_ack(d->disc->ds);
    apply_all(d);
}

/* ---- following ---- */

static struct l4_discovery *discovery_of(struct l4d *d)
{
    if (d->disc)
        return d->disc;
    char err[160];
    struct l4_discovery *disc = calloc(1, sizeof *disc);
    if (!disc || !(disc->ds = discovery_new(err, sizeof err))) {
        log_error("discovery: %s", disc ? err : "out of memory");
        free(disc);
        return NULL;
    }
    ev_io_init(&disc->io, discovery_fd(disc->ds), on_signal, d);
    ev_io_set(d->loop, &disc->io, EPOLLIN);
    d->disc = disc;
    return disc;
}

static void follower_drop(struct l4_discovery *disc, size_t i)
{
    struct follower *f = &disc->f[i];
    if (f->sub)
        discovery_unfollow(disc->ds, f->sub);
    discovery_conf_free(&f->conf);
    memmove(&disc->f[i], &disc->f[i + 1], (disc->n - i - 1) * sizeof *disc->f);
    disc->n--;
}

/* discovery_follow() may start the client library's threads, which take
 * the signal mask of the thread that starts them. At start-up the daemon
 * does not block its signals yet (a stop then ends the process at once),
 * and a SIGTERM delivered to one of those threads would kill the process
 * instead of reaching the daemon's signalfd later: they start with every
 * signal blocked, whatever the caller's mask. */
static struct discovery_sub *follow_signals_blocked(struct discovery *ds, const struct cfg_discovery *conf, char *err,
                                                    size_t errlen)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    struct discovery_sub *sub = discovery_follow(ds, conf, err, errlen);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return sub;
}

static void follow(struct l4_discovery *disc, struct follower *f)
{
    char err[200];
    f->sub = follow_signals_blocked(disc->ds, &f->conf, err, sizeof err);
    if (f->sub) {
        f->st.last_error[0] = '\0';
        log_info("service %s: following registry service %s (registries %s)", f->name, f->conf.service,
                 f->conf.registries ? f->conf.registries : "none: the failover directory only");
        return;
    }
    snprintf(f->st.last_error, sizeof f->st.last_error, "cannot follow registry service %s: %s", f->conf.service,
             err);
    log_error("service %s: %s", f->name, f->st.last_error);
}

/* Followers in line with the services: gone or changed ones dropped, new
 * ones added. */
static void follow_services(struct l4d *d)
{
    const struct cfg_l4 *l4 = l4_conf(d->cfg);
    bool any = false;
    for (size_t s = 0; s < l4->n_services; s++)
        any |= l4->services[s].discovered;
    if (!any && !d->disc)
        return;
    struct l4_discovery *disc = discovery_of(d);
    if (!disc)
        return;
    for (size_t i = 0; i < disc->n; i++)
        disc->f[i].listed = false;
    for (size_t s = 0; s < l4->n_services; s++) {
        const struct cfg_l4_service *svc = &l4->services[s];
        if (!svc->discovered)
            continue;
        char name[96];
        l4_service_name(svc, name, sizeof name);
        struct follower *f = follower_of(disc, name);
        if (f && !discovery_conf_equal(&f->conf, &svc->discovery)) {
            log_info("service %s: its discovery block changed", name);
            follower_drop(disc, (size_t)(f - disc->f));
            f = NULL;
        }
        if (!f) {
            struct follower *grown = realloc(disc->f, (disc->n + 1) * sizeof *grown);
            if (!grown) {
                log_error("service %s: discovery: out of memory", name);
                continue;
            }
            disc->f = grown;
            f = &disc->f[disc->n];
            memset(f, 0, sizeof *f);
            snprintf(f->name, sizeof f->name, "%s", name);
            if (discovery_conf_copy(&f->conf, &svc->discovery) < 0) {
                log_error("service %s: discovery: out of memory", name);
                continue;
            }
            disc->n++;
        }
        if (!f->sub)
            follow(disc, f);
        f->listed = true;
    }
    for (size_t i = disc->n; i-- > 0;) {
        if (!disc->f[i].listed) {
            log_info("service %s: no longer follows registry service %s", disc->f[i].name, disc->f[i].conf.service);
            follower_drop(disc, i);
        }
    }
}

void l4_discovery_sync(struct l4d *d)
{
    follow_services(d);
    apply_all(d);
}

/* ---- start, reload, status, exit ---- */

static bool all_have_lists(struct l4d *d)
{
    for (size_t i = 0; d->disc && i < d->disc->n; i++) {
        struct follower *f = &d->disc->f[i];
        if (!f->sub)
            continue;
        discovery_status(f->sub, &f->st.now);
        if (f->st.now.source == SLUICE_SOURCE_NONE)
            return false;
    }
    return true;
}

/* The first model is not built yet: the lists go straight into the
 * configuration's services, as if the file had listed them. */
static void fill_first(struct l4d *d)
{
    struct cfg_l4 *l4 = l4_conf(d->cfg);
    for (size_t i = 0; d->disc && i < d->disc->n; i++) {
        struct follower *f = &d->disc->f[i];
        int s = service_index(d, f->name);
        if (!f->sub || s < 0 || f->st.now.source == SLUICE_SOURCE_NONE) {
            if (f->sub)
                log_warn("service %s: no list of registry service %s yet (no registry answered, nothing in the "
                         "cache): it starts with no reals, and takes them as soon as one answers", f->name,
                         f->conf.service);
            continue;
        }
        struct cfg_l4_service *svc = &l4->services[s];
        uint64_t version = 0;
        bool truncated = false;
        struct l4_disc_member *m = NULL;
        size_t n = read_members(f, &m, &version, &truncated);
        struct cfg_l4_real *want = n == SIZE_MAX ? NULL : calloc(n + 1, sizeof *want);
        if (!want) {
            free(m);
            log_error("service %s: discovery: out of memory", f->name);
            continue;
        }
        struct l4_disc_skips skips;
        size_t k = l4_disc_reals_of(l4, svc, m, n, want, &skips);
        free(m);
        log_skips(f->name, &skips, &f->st.skipped, svc);
        free(svc->reals);
        svc->reals = want;
        svc->n_reals = k;
        f->st.members = n;
        f->st.used = k;
        f->st.skipped = skips;
        f->st.applied_version = version;
        log_info("service %s: reals from registry service %s (%s%s, version %" PRIu64 "): %zu real%s", f->name,
                 f->conf.service, f->st.now.source_name, f->st.now.fail_open ? ", failing open" : "", version, k,
                 k == 1 ? "" : "s");
    }
}

void l4_discovery_start(struct l4d *d, uint32_t wait_ms)
{
    follow_services(d);
    if (!d->disc)
        return;
    uint64_t end = ev_clock_ms() + wait_ms;
    while (!all_have_lists(d)) {
        uint64_t now = ev_clock_ms();
        if (now >= end)
            break;
        struct pollfd p = { .fd = discovery_fd(d->disc->ds), .events = POLLIN };
        if (poll(&p, 1, (int)(end - now > 100 ? 100 : end - now)) > 0)
            discovery_ack(d->disc->ds);
    }
    fill_first(d);
}

int l4_discovery_carry_reals(const struct l4d *d, struct cfg_l4_service *next, size_t n)
{
    const struct cfg_l4 *run = l4_conf(d->cfg);
    for (size_t i = 0; i < n; i++) {
        struct cfg_l4_service *ns = &next[i];
        if (!ns->discovered)
            continue;
        for (size_t s = 0; s < run->n_services; s++) {
            const struct cfg_l4_service *os = &run->services[s];
            if (os->proto != ns->proto || !addr_equal(&os->vip, &ns->vip) || !os->discovered ||
                !discovery_conf_same_client(&os->discovery, &ns->discovery) ||
                strcmp(os->discovery.service, ns->discovery.service) != 0)
                continue;
            struct cfg_l4_real *r = malloc((os->n_reals ? os->n_reals : 1) * sizeof *r);
            if (!r)
                return -1;
            if (os->n_reals)
                memcpy(r, os->reals, os->n_reals * sizeof *r);
            free(ns->reals);
            ns->reals = r;
            ns->n_reals = os->n_reals;
            break;
        }
    }
    return 0;
}

const struct l4_disc_status *l4_discovery_status(struct l4d *d, size_t s)
{
    if (s >= l4_conf(d->cfg)->n_services || !service_at(d, s)->discovered)
        return NULL;
    char name[96];
    l4_service_name(service_at(d, s), name, sizeof name);
    struct follower *f = follower_of(d->disc, name);
    if (!f)
        return NULL;
    f->st.conf = &f->conf;   /* the array may have moved since the last call */
    if (f->sub)
        discovery_status(f->sub, &f->st.now);
    else
        f->st.now.source_name = "none";
    return &f->st;
}

void l4_discovery_free(struct l4d *d)
{
    struct l4_discovery *disc = d->disc;
    if (!disc)
        return;
    if (d->loop)
        ev_io_stop(d->loop, &disc->io);
    for (size_t i = 0; i < disc->n; i++)
        discovery_conf_free(&disc->f[i].conf);
    free(disc->f);
    discovery_free(disc->ds);   /* unfollows everything: the clients' threads stop */
    free(disc);
    d->disc = NULL;
}
