/* The master process of `sluice proxy`.
 *
 * It owns everything that must outlive a worker: the listening sockets, the
 * shared region, the admin API and the active health checker. Workers are
 * forked from it and supervised: one that dies unexpectedly is replaced in
 * the same slot, on the same sockets, and the reason is logged.
 *
 * A "generation" is one configuration with its shared region, sockets and
 * workers. SIGHUP loads the file again; if it is valid a new generation
 * starts, and the old one is told to drain (SIGTERM) and freed when its last
 * worker has exited. Sockets whose listener is unchanged are handed over
 * (dup), so no queued connection is lost across a reload.
 */
#include "proxy/master.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/admin.h"
#include "core/daemon.h"
#include "core/evloop.h"
#include "core/listen_guard.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/privs.h"
#include "core/version.h"
#include "core/discovery.h"
#include "proxy/proxy_admin.h"
#include "proxy/pool_dyn.h"
#include "proxy/proxy_discovery.h"
#include "proxy/proxy_health.h"
#include "proxy/proxy_module.h"
#include "proxy/proxy_vips.h"
#include "proxy/shared.h"
#include "proxy/tls_openssl.h"
#include "proxy/tls_session.h"
#include "proxy/worker.h"

#define MAX_GENERATIONS 8
#define STOP_TIMEOUT_MS 35000
#define RESTART_BACKOFF_MS 1000 /* before restarting a worker that keeps dying */
#define DISCOVERY_SYNC_MS 250   /* discovered pools: reclaim drained slots, catch up */
#define TLS_SESSIONS_TICK_MS 1000 /* ticket key rotation, key file watch */
#define VIPS_TICK_MS 100          /* backends' health onto the VIP board */

struct generation {
    struct sl_config *cfg;
    const struct proxy_conf *pc;   /* the proxy's part of cfg */
    struct shared_state *sh;
    uint32_t n_workers;
    int *fds;                /* [listener * n_workers + slot], -1 = closed */
    size_t n_fds;
    pid_t *pids;             /* [slot], 0 = not running */
    uint64_t *last_start;    /* [slot] ms, for crash-loop back-off */
    uint32_t *quick_deaths;  /* [slot] */
    struct proxy_discovery *pd; /* its discovered pools' slots */
    /* [listener]: the TLS listener's session store (NULL without tls),
     * owned by master.tls_sessions. The workers get these pointers; the
     * stores' mappings were made before any fork, so they are valid in
     * every child. Once retiring, a generation spawns no worker, so the
     * pointers of stores a later reload dropped are never used. */
    struct tls_session_store **tls_sessions;
    bool retiring;
};

struct master {
    const char *config_path;
    uint32_t workers_override;
    bool allow_shared_listen;    /* --allow-shared-listen: no listen_guard check */
    struct daemon d;             /* loop, signals, admin API, pid file */
    struct ev_loop *loop;        /* d.loop */
    struct generation *gens[MAX_GENERATIONS]; /* gens[0] is current */
    size_t n_gens;
    struct ev_timer restart_timer;
    struct ev_timer stop_timer;
    struct proxy_admin pools;    /* the current generation, as /api/pools shows it */
    struct proxy_health *health;
    /* The registry clients of discovered pools (NULL until a configuration
     * has one). They outlive generations: a reload keeps the clients and
     * their lists. Their threads run in this process only (see
     * spawn_worker). */
    struct discovery *disc;
    struct ev_io disc_io;
    struct ev_timer disc_timer;      /* slots' catch-up: discovered and dynamic pools */
    bool disc_timer_on;
    /* Dynamic pools' names and the API's changes (pool_dyn.h); like disc,
     * it outlives generations. */
    struct pool_dyn *dyn;
    /* One session store per TLS listener (tickets, session cache), kept
     * across reloads by listener name: clients resume on any worker of
     * any generation. */
    struct tls_session_stores *tls_sessions;
    struct ev_timer tls_sessions_timer;
    struct ev_timer vips_timer;  /* the listeners on the VIP board (proxy_vips.h) */
    bool stopping;
    uint64_t restarts;
};

static struct generation *current(struct master *m) { return m->gens[0]; }

/* What the running configuration serves, on the daemon's VIP board (for
 * companions: HA announces it). After every change the master makes, and
 * on a tick for what the health checks and the workers change. */
static void publish_vips(struct master *m)
{
    const struct generation *g = current(m);
    const struct proxy_vips_view v = { .pc = g->pc, .sh = g->sh, .fds = g->fds, .pids = g->pids,
                                       .n_workers = g->n_workers, .stopping = m->stopping };
    proxy_publish_listeners(&m->d.vips, &v);
}

static void vips_tick(struct ev_loop *loop, struct ev_timer *t)
{
    publish_vips(t->data);
    ev_timer_start(loop, t, VIPS_TICK_MS);
}

/* ---------- sockets ---------- */

static int open_listener_socket(const struct cfg_listener *l, char *err, size_t errlen)
{
    int type = l->proto == PROTO_UDP ? SOCK_DGRAM : SOCK_STREAM;
    int fd = socket(l->addr.ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (l->addr.ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)&l->addr.ss, l->addr.len) < 0) {
        snprintf(err, errlen, "cannot bind %s: %s", l->addr.text, strerror(errno));
        close(fd);
        return -1;
    }
    if (type == SOCK_STREAM && listen(fd, 4096) < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", l->addr.text, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static const struct cfg_listener *find_listener(const struct generation *g, const struct cfg_listener *l,
                                                size_t *index)
{
    if (!g)
        return NULL;
    for (size_t i = 0; i < g->pc->n_listeners; i++) {
        const struct cfg_listener *o = &g->pc->listeners[i];
        bool same_kind = (o->proto == PROTO_UDP) == (l->proto == PROTO_UDP);
        if (same_kind && addr_equal(&o->addr, &l->addr)) {
            *index = i;
            return o;
        }
    }
    return NULL;
}

/* A new listener's address served by another process (a second Sluice
 * started by mistake) would split its traffic with it through
 * SO_REUSEPORT, silently: refuse (core/listen_guard.h). -1 logged. */
static int listener_taken(const struct generation *g, size_t i)
{
    const struct cfg_listener *l = &g->pc->listeners[i];
    char err[256];
    pid_t owner;
    if (listen_guard_check(&l->addr, l->proto == PROTO_UDP, &owner, err, sizeof err) <= 0)
        return 0;
    log_error("%s: listeners[%zu] (%s): %s; another instance would split its traffic (SO_REUSEPORT): stop it "
              "first, or start with --allow-shared-listen to share the address on purpose",
              g->cfg->path, i, l->name, err);
    return -1;
}

/* One socket per listener per worker slot; reuse the previous
 * generation's sockets where the listener is unchanged. */
static int open_generation_sockets(const struct master *m, struct generation *g, const struct generation *prev)
{
    size_t nl = g->pc->n_listeners;
    for (size_t i = 0; i < nl; i++) {
        const struct cfg_listener *l = &g->pc->listeners[i];
        size_t pi;
        const struct cfg_listener *old = find_listener(prev, l, &pi);
        for (uint32_t s = 0; s < g->n_workers; s++) {
            int fd = -1;
            if (old && s < prev->n_workers)
                fd = fcntl(prev->fds[pi * prev->n_workers + s], F_DUPFD_CLOEXEC, 3);
            if (fd < 0) {
                char err[256];
                fd = open_listener_socket(l, err, sizeof err);
                if (fd < 0) {
                    log_error("%s: listeners[%zu] (%s): %s", g->cfg->path, i, l->name, err);
                    return -1;
                }
            }
            g->fds[i * g->n_workers + s] = fd;
            /* A new address, bound: is anyone else on it? */
            if (s == 0 && !old && !m->allow_shared_listen && listener_taken(g, i) < 0)
                return -1;
        }
    }
    return 0;
}

/* ---------- generations ---------- */

/* Close the generation's copies of its listening sockets. Workers keep
 * their own copies; once those are closed too the kernel stops queueing
 * connections for the socket. */
static void generation_close_sockets(struct generation *g)
{
    if (!g->fds)
        return;
    for (size_t i = 0; i < g->n_fds; i++) {
        if (g->fds[i] >= 0)
            close(g->fds[i]);
        g->fds[i] = -1;
    }
}

static void generation_free(struct generation *g)
{
    if (!g)
        return;
    generation_close_sockets(g);
    free(g->fds);
    free(g->pids);
    free(g->last_start);
    free(g->quick_deaths);
    free(g->tls_sessions);
    proxy_discovery_free(g->pd);
    shared_destroy(g->sh);
    config_free(g->cfg);
    free(g);
}

static uint32_t worker_count(const struct master *m, const struct proxy_conf *cfg)
{
    if (m->workers_override)
        return m->workers_override;
    if (cfg->workers)
        return cfg->workers;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (uint32_t)n : 1;
}

static void discovery_event(struct ev_loop *loop, struct ev_io *io, uint32_t ev)
{
    struct master *m = io->data;
    discovery_ack(m->disc);
    if (!m->stopping)
        proxy_discovery_sync(current(m)->pd, ev_clock_ms());
}

static void discovery_tick(struct ev_loop *loop, struct ev_timer *t)
{
    struct master *m = t->data;
    if (m->stopping)
        return;
    proxy_discovery_sync(current(m)->pd, ev_clock_ms());
    ev_timer_start(loop, t, DISCOVERY_SYNC_MS);
}

static bool has_discovered_pool(const struct proxy_conf *pc)
{
    for (size_t p = 0; p < pc->n_pools; p++)
        if (pc->pools[p].discovery)
            return true;
    return false;
}

static bool has_slotted_pool(const struct proxy_conf *pc)
{
    for (size_t p = 0; p < pc->n_pools; p++)
        if (cfg_pool_slotted(&pc->pools[p]))
            return true;
    return false;
}

/* Slots of removed backends are reclaimed on this timer once quiet. */
static void sync_timer_start(struct master *m)
{
    if (m->disc_timer_on)
        return;
    ev_timer_init(&m->disc_timer, discovery_tick, m);
    ev_timer_start(m->loop, &m->disc_timer, DISCOVERY_SYNC_MS);
    m->disc_timer_on = true;
}

/* A name's addresses changed: seat them now rather than on the timer. */
static void dyn_changed(void *arg)
{
    struct master *m = arg;
    if (!m->stopping && m->n_gens)
        proxy_discovery_sync(current(m)->pd, ev_clock_ms());
}

/* The first configuration with a discovered pool starts the clients'
 * set, its change signal and the catch-up timer. */
static int discovery_start(struct master *m)
{
    if (m->disc)
        return 0;
    char err[256];
    m->disc = discovery_new(err, sizeof err);
    if (!m->disc) {
        log_error("discovery: %s", err);
        return -1;
    }
    ev_io_init(&m->disc_io, discovery_fd(m->disc), discovery_event, m);
    ev_io_set(m->loop, &m->disc_io, EPOLLIN);
    sync_timer_start(m);
    return 0;
}

static void discovery_stop(struct master *m)
{
    if (m->disc_timer_on)
        ev_timer_stop(m->loop, &m->disc_timer);
    m->disc_timer_on = false;
    if (!m->disc)
        return;
    ev_io_stop(m->loop, &m->disc_io);
    discovery_free(m->disc);
    m->disc = NULL;
}

/* /api/status: "backend_names", the dynamic pools' names and addresses. */
static void dyn_status(void *arg, json_t *status)
{
    json_object_set_new(status, "backend_names", pool_dyn_status(arg));
}

/* ---------- TLS session stores ---------- */

/* One pass over pc's TLS listeners (tls_session.h): each gets its store,
 * made or reconfigured, into stores[listener] when stores is not NULL.
 * -1 (logged) when one cannot be made; the caller then restores. */
static int sessions_pass(struct master *m, const struct proxy_conf *pc, const char *path,
                         struct tls_session_store **stores)
{
    tls_session_stores_begin(m->tls_sessions);
    for (size_t i = 0; i < pc->n_listeners; i++) {
        const struct cfg_listener *l = &pc->listeners[i];
        if (!l->tls)
            continue;
        char err[512];
        struct tls_session_store *st =
            tls_session_stores_get(m->tls_sessions, l->name, &l->tls->sessions, ev_clock_ms(), err, sizeof err);
        if (!st) {
            log_error("%s: listeners[%zu] (%s): tls.sessions: %s", path, i, l->name, err);
            return -1;
        }
        if (stores)
            stores[i] = st;
    }
    return 0;
}

/* A reload that failed after its pass: put the running configuration's
 * settings back (its key files are read again) and drop the stores made
 * for listeners only the aborted configuration had. */
static void sessions_restore(struct master *m)
{
    const struct generation *g = current(m);
    if (sessions_pass(m, g->pc, g->cfg->path, NULL) < 0)
        log_error("tls: the running configuration's session settings could not all be restored");
    tls_session_stores_commit(m->tls_sessions);
}

static void sessions_tick(struct ev_loop *loop, struct ev_timer *t)
{
    struct master *m = t->data;
    tls_session_stores_tick(m->tls_sessions, ev_clock_ms());
    ev_timer_start(loop, t, TLS_SESSIONS_TICK_MS);
}

static struct generation *generation_new(struct master *m, struct sl_config *cfg, const struct generation *prev)
{
    struct generation *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->cfg = cfg;
    g->pc = proxy_conf(cfg);
    g->n_workers = worker_count(m, g->pc);
    g->n_fds = g->pc->n_listeners * g->n_workers;
    g->fds = malloc((g->n_fds + 1) * sizeof *g->fds);
    /* -1 before anything can fail: generation_free must never close
     * descriptors (0, 1, ...) this generation does not own. */
    for (size_t i = 0; g->fds && i < g->n_fds; i++)
        g->fds[i] = -1;
    g->pids = calloc(g->n_workers, sizeof *g->pids);
    g->last_start = calloc(g->n_workers, sizeof *g->last_start);
    g->quick_deaths = calloc(g->n_workers, sizeof *g->quick_deaths);
    g->tls_sessions = calloc(g->pc->n_listeners + 1, sizeof *g->tls_sessions);
    g->sh = shared_create(g->pc, g->n_workers);
    if (!g->fds || !g->pids || !g->last_start || !g->quick_deaths || !g->tls_sessions || !g->sh) {
        log_error("out of memory creating the worker generation");
        generation_free(g);
        return NULL;
    }
    /* The TLS listeners' session stores, made or reconfigured; when this
     * or anything later fails, the caller undoes the pass (a reload puts
     * the running configuration's settings back, a start frees them). */
    if (sessions_pass(m, g->pc, g->cfg->path, g->tls_sessions) < 0) {
        g->cfg = NULL; /* the caller still owns cfg on failure */
        generation_free(g);
        return NULL;
    }
    /* Discovered pools' members into their slots first: state carries
     * over by address. */
    if (has_slotted_pool(g->pc)) {
        char err[256];
        bool clients_ok = !has_discovered_pool(g->pc) || discovery_start(m) == 0;
        if (clients_ok) {
            pool_dyn_configure(m->dyn, g->pc);
            sync_timer_start(m);
        }
        if (!clients_ok || !(g->pd = proxy_discovery_new(m->disc, m->dyn, g->pc, g->sh, err, sizeof err))) {
            if (clients_ok)
                log_error("%s: %s", g->cfg->path, err);
            g->cfg = NULL; /* the caller still owns cfg on failure */
            generation_free(g);
            return NULL;
        }
    }
    if (prev)
        shared_carry_over(g->sh, g->pc, prev->sh, prev->pc);
    if (open_generation_sockets(m, g, prev) < 0) {
        /* Close what was opened (or dup'ed) before the failure, then
         * leave cfg to the caller, who still owns it on failure. */
        generation_close_sockets(g);
        g->cfg = NULL;
        generation_free(g);
        return NULL;
    }
    return g;
}

/* ---------- workers ---------- */

/* In the child: close every descriptor the worker does not need (the
 * master's epoll, signalfd, admin and health sockets, other slots). The
 * directory is not read while descriptors are being closed, so it is read
 * in passes of up to 1024 until a pass finds nothing left to close (a
 * master with many listeners and admin clients has more than that). */
static void close_inherited_fds(const int *keep, size_t n_keep, int log_fd_keep)
{
    for (;;) {
        DIR *d = opendir("/proc/self/fd");
        if (!d)
            return;
        int dfd = dirfd(d);
        int to_close[1024];
        size_t n = 0;
        struct dirent *e;
        while ((e = readdir(d)) && n < 1024) {
            if (e->d_name[0] == '.')
                continue;
            int fd = atoi(e->d_name);
            if (fd <= 2 || fd == dfd || fd == log_fd_keep)
                continue;
            bool kept = false;
            for (size_t i = 0; i < n_keep; i++)
                kept |= keep[i] == fd;
            if (!kept)
                to_close[n++] = fd;
        }
        closedir(d);
        for (size_t i = 0; i < n; i++)
            close(to_close[i]);
        if (n < 1024)
            return;
    }
}

static int spawn_worker(struct master *m, struct generation *g, uint32_t slot)
{
    size_t nl = g->pc->n_listeners;
    int *fds = calloc(nl + 1, sizeof *fds);
    if (!fds)
        return -1;
    for (size_t i = 0; i < nl; i++)
        fds[i] = g->fds[i * g->n_workers + slot];
    /* With discovered pools the master runs libsluice's threads, and
     * fork() copies only this one: a lock another thread holds stays held
     * for ever in the child. glibc re-initialises malloc's own locks in
     * the child, so the worker may allocate, but nothing else of those
     * threads' state is safe: the worker never calls into libsluice or
     * core/discovery (it reads its members from the shared region), and
     * close_inherited_fds() closes the discovery eventfd it inherits. */
    pid_t pid = fork();
    if (pid < 0) {
        log_error("cannot start worker %u: fork: %s; trying again in %d ms", slot, strerror(errno),
                  RESTART_BACKOFF_MS);
        free(fds);
        /* Nothing else would ever fill the slot again. */
        if (!g->retiring)
            ev_timer_start(m->loop, &m->restart_timer, RESTART_BACKOFF_MS);
        return -1;
    }
    if (pid == 0) {
        privs_arm(&g->cfg->run_as);   /* dropped once the worker is set up */
        close_inherited_fds(fds, nl, log_fd());
        int rc = worker_main(g->pc, g->sh, slot, fds, g->tls_sessions);
        _exit(rc);
    }
    free(fds);
    g->pids[slot] = pid;
    g->last_start[slot] = ev_clock_ms();
    atomic_store(&g->sh->workers[slot].pid, (int32_t)pid);
    log_info("worker %u started (pid %d)", slot, (int)pid);
    return 0;
}

static void update_view(struct master *m)
{
    struct generation *g = current(m);
    m->pools.cfg = g->pc;
    m->pools.sh = g->sh;
    m->pools.disc = g->pd;
    m->d.site.status.config_path = g->cfg->path;
    m->d.site.status.n_workers = g->n_workers;
    m->d.site.status.worker_pids = g->pids;
    m->d.site.status.worker_restarts = m->restarts;
}

static void restart_pending(struct ev_loop *loop, struct ev_timer *t)
{
    struct master *m = t->data;
    struct generation *g = current(m);
    if (m->stopping)
        return;
    for (uint32_t s = 0; s < g->n_workers; s++)
        if (!g->pids[s])
            spawn_worker(m, g, s);
}

static const char *describe_exit(int status, char *buf, size_t cap)
{
    if (WIFEXITED(status))
        snprintf(buf, cap, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, cap, "was killed by signal %d (%s)%s", WTERMSIG(status), strsignal(WTERMSIG(status)),
                 WCOREDUMP(status) ? ", core dumped" : "");
    else
        snprintf(buf, cap, "stopped (status 0x%x)", status);
    return buf;
}

static bool all_workers_gone(const struct master *m)
{
    for (size_t i = 0; i < m->n_gens; i++)
        for (uint32_t s = 0; s < m->gens[i]->n_workers; s++)
            if (m->gens[i]->pids[s])
                return false;
    return true;
}

static void reap_children(struct master *m)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (size_t gi = 0; gi < m->n_gens; gi++) {
            struct generation *g = m->gens[gi];
            for (uint32_t s = 0; s < g->n_workers; s++) {
                if (g->pids[s] != pid)
                    continue;
                g->pids[s] = 0;
                char why[128];
                describe_exit(status, why, sizeof why);
                if (g->retiring || m->stopping) {
                    log_info("worker %u (pid %d) %s", s, (int)pid, why);
                    continue;
                }
                /* Unexpected: replace it, backing off if it keeps dying. */
                m->restarts++;
                atomic_fetch_add(&g->sh->workers[s].restarts, 1);
                uint64_t now = ev_clock_ms();
                g->quick_deaths[s] = now - g->last_start[s] < 2000 ? g->quick_deaths[s] + 1 : 0;
                log_error("worker %u (pid %d) %s; restarting it", s, (int)pid, why);
                if (g->quick_deaths[s] >= 3)
                    ev_timer_start(m->loop, &m->restart_timer, RESTART_BACKOFF_MS);
                else
                    spawn_worker(m, g, s);
            }
        }
    }
    /* Free retired generations whose workers are all gone. */
    for (size_t gi = 1; gi < m->n_gens;) {
        struct generation *g = m->gens[gi];
        bool alive = false;
        for (uint32_t s = 0; s < g->n_workers; s++)
            alive |= g->pids[s] != 0;
        if (alive) {
            gi++;
            continue;
        }
        generation_free(g);
        memmove(&m->gens[gi], &m->gens[gi + 1], (m->n_gens - gi - 1) * sizeof m->gens[0]);
        m->n_gens--;
        log_info("previous configuration retired");
    }
    update_view(m);
    publish_vips(m);
    if (m->stopping && all_workers_gone(m))
        daemon_stopped(&m->d);
}

static void signal_generation(struct generation *g, int sig)
{
    for (uint32_t s = 0; s < g->n_workers; s++)
        if (g->pids[s])
            kill(g->pids[s], sig);
}

/* ---------- reload and stop ---------- */

/* How a reload went, for the API (SIGHUP only logs it). */
struct reload_result {
    int status;            /* 200, or the HTTP status of the refusal */
    char reason[160];
    json_t *errors;        /* the configuration's error lines, or NULL */
};

__attribute__((format(printf, 3, 4))) static void refuse(struct reload_result *r, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof r->reason, fmt, ap);
    va_end(ap);
    r->status = status;
    log_error("%s", r->reason);
}

/* `user` needs root to switch to; without it (a test, a user's own
 * instance) nginx warns and runs on as it is, and so do we. */
static void check_run_as(struct sl_config *cfg)
{
    if (privs_can_switch(&cfg->run_as))
        return;
    log_warn("%s:%d: user: %s ignored: only root can switch users (running as uid %u)", cfg->path, cfg->user_line,
             cfg->run_as.user, (unsigned)geteuid());
    cfg->run_as.set = false;
}

static void reload(struct master *m, struct reload_result *res)
{
    log_info("reloading %s", m->config_path);
    if (m->stopping) {
        refuse(res, 409, "reload refused: stopping");
        return;
    }
    if (m->n_gens == MAX_GENERATIONS) {
        refuse(res, 409, "reload refused: %d configurations are still draining", MAX_GENERATIONS - 1);
        return;
    }
    struct config_errors errs = {0};
    struct sl_config *cfg = daemon_load_config(m->config_path, CONFIG_FILES_ALL, &errs);
    if (!cfg) {
        for (size_t i = 0; i < errs.n; i++) {
            log_error("%s", errs.lines[i]);
            if (res->errors)
                json_array_append_new(res->errors, json_string(errs.lines[i]));
        }
        refuse(res, 400, "reload aborted: the configuration has %zu error(s); still running the previous one",
               errs.n);
        config_errors_free(&errs);
        return;
    }
    check_run_as(cfg);
    struct generation *old = current(m);
    struct generation *g = generation_new(m, cfg, old);
    if (!g) {
        pool_dyn_retain(m->dyn, old->pc);
        sessions_restore(m);
        config_free(cfg);
        refuse(res, 500, "reload aborted: still running the previous configuration (see the log)");
        return;
    }
    if (!tls_openssl_same(&old->pc->openssl, &g->pc->openssl))
        log_warn("%s: the openssl block changed; providers and async mode stay as they were until a restart",
                 m->config_path);
    /* admin.listen changed: the API moves (or stays where it was). */
    daemon_admin_follow(&m->d, cfg);
    /* log.level applies at once; log.file is reopened (which also picks up
     * a rotated file). New workers inherit the new descriptor. */
    log_setup(cfg->log_level, cfg->log_file, NULL);
    privs_arm(&cfg->run_as);
    for (uint32_t s = 0; s < g->n_workers; s++)
        spawn_worker(m, g, s);
    old->retiring = true;
    /* The new generation holds dups of every socket it kept; the old
     * copies only matter for listeners that were removed (or worker slots
     * that went away), and those must stop queueing connections that no
     * worker will ever accept. The old workers close theirs on SIGTERM. */
    generation_close_sockets(old);
    signal_generation(old, SIGTERM);
    memmove(&m->gens[1], &m->gens[0], m->n_gens * sizeof m->gens[0]);
    m->gens[0] = g;
    m->n_gens++;
    /* The new workers have their stores: drop those of removed listeners. */
    tls_session_stores_commit(m->tls_sessions);
    proxy_health_stop(m->health);
    m->health = proxy_health_start(m->loop, g->pc, g->sh);
    proxy_discovery_set_health(old->pd, NULL);
    proxy_discovery_set_health(g->pd, m->health);
    pool_dyn_retain(m->dyn, g->pc);
    m->d.site.status.reloads++;
    update_view(m);
    publish_vips(m);
    log_info("reload done: %u workers on the new configuration", g->n_workers);
    daemon_reloaded(&m->d, cfg);   /* companions (HA) follow the file too */
}

static void stop_timeout(struct ev_loop *loop, struct ev_timer *t)
{
    struct master *m = t->data;
    log_warn("workers did not finish in time; killing them");
    for (size_t i = 0; i < m->n_gens; i++)
        signal_generation(m->gens[i], SIGKILL);
}

static void begin_stop(struct master *m, int sig)
{
    if (m->stopping && sig != SIGQUIT)
        return;
    m->stopping = true;
    log_info("%s: stopping %s", strsignal(sig), sig == SIGQUIT ? "now" : "after in-flight requests");
    for (size_t i = 0; i < m->n_gens; i++) {
        /* Our copies of the listening sockets would keep them open (and
         * the kernel completing handshakes nobody will answer) until the
         * last worker is done: close them so new clients are refused at
         * once; workers close theirs when they get the signal. */
        generation_close_sockets(m->gens[i]);
        signal_generation(m->gens[i], sig == SIGQUIT ? SIGQUIT : SIGTERM);
    }
    proxy_health_stop(m->health);
    m->health = NULL;
    for (size_t i = 0; i < m->n_gens; i++)
        proxy_discovery_set_health(m->gens[i]->pd, NULL);
    ev_timer_start(m->loop, &m->stop_timer, STOP_TIMEOUT_MS);
    publish_vips(m);
    if (all_workers_gone(m))
        daemon_stopped(&m->d);
}

/* The daemon skeleton's signals: SIGHUP, SIGTERM/SIGINT/SIGQUIT, SIGCHLD. */
static void on_reload(void *arg)
{
    struct master *m = arg;
    struct reload_result res = { .status = 200 };
    if (!m->stopping)
        reload(m, &res);
}

/* POST /api/reload: what SIGHUP does, answered with the outcome. */
static void handle_reload(void *arg, const struct admin_request *rq, struct admin_reply *reply)
{
    struct master *m = arg;
    struct reload_result res = { .status = 200, .errors = json_array() };
    uint32_t before = m->d.site.status.reloads;
    reload(m, &res);
    daemon_reload_note(&m->d, before);
    json_t *doc = res.status == 200
                      ? json_pack("{s:b, s:I, s:I}", "reloaded", 1, "reloads", (json_int_t)m->d.site.status.reloads,
                                  "workers", (json_int_t)current(m)->n_workers)
                      : json_pack("{s:s, s:O}", "error", res.reason, "errors", res.errors);
    json_decref(res.errors);
    if (!doc) {
        admin_reply_error(reply, 500, "out of memory");
        return;
    }
    admin_reply_json(reply, res.status, doc);
}

static void on_stop(void *arg, int sig)
{
    begin_stop(arg, sig);
}

static void on_signal(void *arg, int sig)
{
    if (sig == SIGCHLD)
        reap_children(arg);
}

/* SIGUSR1 (the core reopened log.file): the access logs are the
 * workers' to reopen, but a worker that gave up root may not create a
 * file in a root-owned directory. So the master creates each one first
 * and hands it to `user`, as nginx does, then tells every worker. */
static void on_reopen(void *arg)
{
    struct master *m = arg;
    const struct proxy_conf *pc = current(m)->pc;
    for (size_t i = 0; i < pc->n_listeners; i++) {
        const char *path = pc->listeners[i].access_log;
        if (!path || strcmp(path, "stdout") == 0)
            continue;
        int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0) {
            log_error("cannot reopen access log %s: %s", path, strerror(errno));
            continue;
        }
        log_give_file(fd, privs_file_owner());
        close(fd);
    }
    for (size_t i = 0; i < m->n_gens; i++)
        signal_generation(m->gens[i], SIGUSR1);
}

/* GET /ready: every worker of the running configuration is up (the
 * listeners are bound before any is forked). */
static bool master_ready(void *arg, char *why, size_t whylen)
{
    struct master *m = arg;
    const struct generation *g = current(m);
    if (m->stopping) {
        snprintf(why, whylen, "stopping");
        return false;
    }
    uint32_t up = 0;
    for (uint32_t s = 0; s < g->n_workers; s++)
        up += g->pids[s] != 0;
    if (up < g->n_workers) {
        snprintf(why, whylen, "%u of %u workers running", up, g->n_workers);
        return false;
    }
    return true;
}

static const struct daemon_ops master_ops = { .reload = on_reload, .stop = on_stop, .signal = on_signal,
                                              .reopen = on_reopen, .ready = master_ready };
static const int stop_signals[] = { SIGQUIT, 0 };
static const int other_signals[] = { SIGCHLD, 0 };

int master_admin(struct admin_site *site, void *arg)
{
    struct master *m = arg;
    if (admin_mount(site, "POST", "/api/reload", handle_reload, m) < 0)
        return -1;
    return proxy_admin_mount(site, &m->pools);
}

/* Undo a start that went wrong half way. */
static int fail_start(struct master *m, struct sl_config *cfg)
{
    for (size_t i = 0; i < m->n_gens; i++)
        generation_free(m->gens[i]);
    if (!m->n_gens)
        config_free(cfg);
    discovery_stop(m);
    pool_dyn_free(m->dyn);
    m->dyn = NULL;
    if (m->loop)
        ev_timer_stop(m->loop, &m->tls_sessions_timer);
    tls_openssl_unload();
    daemon_fini(&m->d);
    tls_session_stores_free(m->tls_sessions);
    return 1;
}

int master_run(const struct master_options *opt)
{
    struct config_errors errs = {0};
    struct sl_config *cfg = daemon_load_config(opt->config_path, CONFIG_FILES_ALL, &errs);
    if (!cfg) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.lines[i]);
        fprintf(stderr, "sluice: %zu error(s) in %s; not started\n", errs.n, opt->config_path);
        config_errors_free(&errs);
        return 1;
    }
    struct master m = {0};
    m.config_path = opt->config_path;
    m.workers_override = opt->workers;
    m.allow_shared_listen = opt->allow_shared_listen;
    const struct daemon_spec spec = { .role = "master", .module = &proxy_module, .stop_signals = stop_signals,
                                      .other_signals = other_signals, .ops = &master_ops, .arg = &m,
                                      .honours_user = true };
    char err[256];
    if (daemon_init(&m.d, &spec, cfg, err, sizeof err) < 0 || daemon_catch_signals(&m.d, err, sizeof err) < 0) {
        log_error("%s", err);
        return fail_start(&m, cfg);
    }
    m.loop = m.d.loop;
    check_run_as(cfg);
    privs_arm(&cfg->run_as);
    ev_timer_init(&m.restart_timer, restart_pending, &m);
    ev_timer_init(&m.stop_timer, stop_timeout, &m);
    ev_timer_init(&m.tls_sessions_timer, sessions_tick, &m);
    ev_timer_init(&m.vips_timer, vips_tick, &m);
    m.tls_sessions = tls_session_stores_new();
    m.dyn = pool_dyn_new(m.loop);
    if (m.dyn)
        pool_dyn_set_notify(m.dyn, dyn_changed, &m);
    m.pools.dyn = m.dyn;
    if (!m.tls_sessions || !m.dyn ||
        metrics_register(&m.d.site.metrics, tls_session_stores_collect, m.tls_sessions) < 0 ||
        metrics_register(&m.d.site.metrics, pool_dyn_collect, m.dyn) < 0 ||
        admin_status_part(&m.d.site, dyn_status, m.dyn) < 0) {
        log_error("out of memory");
        return fail_start(&m, cfg);
    }
    /* Providers before any TLS context: the contexts (and the workers
     * forked later) use what is loaded now. */
    if (tls_openssl_apply(&proxy_conf(cfg)->openssl, err, sizeof err) < 0) {
        log_error("%s: %s", cfg->path, err);
        return fail_start(&m, cfg);
    }

    struct generation *g = generation_new(&m, cfg, NULL);
    if (!g)
        return fail_start(&m, cfg);
    m.gens[0] = g;
    m.n_gens = 1;

    m.d.site.status.started_ms = ev_clock_ms();
    m.d.site.status.version = SLUICE_VERSION;
    update_view(&m);
    if (daemon_admin_start(&m.d, cfg, err, sizeof err) < 0) {
        log_error("%s: admin.listen: %s", cfg->path, err);
        return fail_start(&m, cfg);
    }
    if (opt->pid_file && daemon_write_pid_file(&m.d, opt->pid_file) < 0) {
        /* A supervisor that reads the pid file would lose track of us:
         * better not to start than to run without it. */
        log_error("--pid-file %s: cannot write: %s; not started", opt->pid_file, strerror(errno));
        return fail_start(&m, cfg);
    }
    for (uint32_t s = 0; s < g->n_workers; s++)
        spawn_worker(&m, g, s);
    tls_session_stores_commit(m.tls_sessions);
    ev_timer_start(m.loop, &m.tls_sessions_timer, TLS_SESSIONS_TICK_MS);
    publish_vips(&m);
    ev_timer_start(m.loop, &m.vips_timer, VIPS_TICK_MS);
    m.health = proxy_health_start(m.loop, g->pc, g->sh);
    proxy_discovery_set_health(g->pd, m.health);
    for (size_t i = 0; i < g->pc->n_listeners; i++) {
        const struct cfg_listener *l = &g->pc->listeners[i];
        log_info("listening on %s (%s, %s)", l->addr.text, l->name,
                 l->proto == PROTO_HTTP ? "http" : l->proto == PROTO_TCP ? "tcp" : "udp");
    }
    if (m.d.admin)
        log_info("admin API on %s", cfg->admin_addr.text);
    log_info("sluice %s started with %u workers", SLUICE_VERSION, g->n_workers);

    daemon_run(&m.d);

    proxy_health_stop(m.health);
    for (size_t i = 0; i < m.n_gens; i++)
        generation_free(m.gens[i]);
    discovery_stop(&m);
    pool_dyn_free(m.dyn);
    ev_timer_stop(m.loop, &m.tls_sessions_timer);
    ev_timer_stop(m.loop, &m.vips_timer);
    tls_openssl_unload();
    daemon_fini(&m.d);
    tls_session_stores_free(m.tls_sessions);
    log_info("stopped");
    return 0;
}
