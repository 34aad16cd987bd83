/* Worker process: sets up per-pool balancing state, serves its listeners,
 * polls the shared region on a 100 ms tick, drains on SIGTERM. */
#include "proxy/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "lib/balance.h"
#include "lib/hash.h"
#include "core/log.h"
#include "core/privs.h"
#include "proxy/access_log.h"
#include "proxy/pool.h"
#include "proxy/proto.h"
#include "proxy/proxy_protocol.h"
#include "proxy/tls.h"

#define TICK_MS 100

/* Accepting is paused per listener: limits.max_connections belongs to one
 * listener, and a listener at its limit must not stop the others. The
 * listener's own io interest says whether it is paused. A listener whose
 * protocol reads the socket itself (UDP: no accept) is never paused. */
static bool listener_pausable(const struct listener_rt *l)
{
    return l->ops->accept && l->fd >= 0;
}

static bool listener_paused(const struct listener_rt *l)
{
    return listener_pausable(l) && !(l->io.want & EPOLLIN);
}

/* Worth polling: below the limit, or (http) an idle keep-alive client can
 * be evicted to make room for a new one. */
static bool listener_can_take(struct worker *w, struct listener_rt *l)
{
    return !worker_at_limit(w, l) || (l->ops->can_make_room && l->ops->can_make_room(l));
}

static void listener_set_paused(struct worker *w, struct listener_rt *l, bool paused)
{
    if (!listener_pausable(l) || listener_paused(l) == paused)
        return;
    ev_io_set(w->loop, &l->io, paused ? 0 : EPOLLIN);
    /* accept_paused: some listener is paused (checked before looking
     * at every listener). */
    if (paused)
        w->accept_paused = true;
}

/* Resume every paused listener that may take a connection again. */
static void listeners_resume(struct worker *w)
{
    if (!w->accept_paused || w->draining)
        return;
    bool still = false;
    for (size_t i = 0; i < w->n_listeners; i++) {
        struct listener_rt *l = &w->listeners[i];
        if (!listener_paused(l))
            continue;
        if (listener_can_take(w, l))
            listener_set_paused(w, l, false);
        else
            still = true;
    }
    w->accept_paused = still;
}

bool worker_at_limit(struct worker *w, struct listener_rt *l)
{
    return atomic_load_explicit(&l->ctr->active, memory_order_relaxed) >= l->cfg->limits.max_connections;
}

void worker_conn_opened(struct worker *w, struct listener_rt *l)
{
    w->n_conns++;
    atomic_fetch_add_explicit(&l->ctr->active, 1, memory_order_relaxed);
}

void worker_conn_closed(struct worker *w, struct listener_rt *l)
{
    w->n_conns--;
    atomic_fetch_sub_explicit(&l->ctr->active, 1, memory_order_relaxed);
    if (w->accept_paused && !w->draining && listener_paused(l) && !worker_at_limit(w, l))
        listener_set_paused(w, l, false); /* accept_paused is tidied on the tick */
}

uint32_t worker_random(struct worker *w)
{
    /* xorshift64*: plenty for jitter and tie-breaking. */
    uint64_t x = w->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    w->rng = x;
    return (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 32);
}

static void reserve_take(struct worker *w)
{
    if (w->reserve_fd < 0)
        w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

void worker_accept_failed(struct listener_rt *l, int err)
{
    struct worker *w = l->w;
    if (err != EMFILE && err != ENFILE)
        return; /* EAGAIN, or a connection that died in the queue */
    uint64_t now = ev_now(w->loop);
    if (now - w->last_fd_warning >= 1000) {
        log_warn("listener %s: out of file descriptors (%s); shedding new connections", l->cfg->name,
                 strerror(err));
        w->last_fd_warning = now;
    }
    if (w->reserve_fd < 0)
        return;
    close(w->reserve_fd);
    w->reserve_fd = -1;
    int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0)
        close(fd);
    reserve_take(w);
}

static void listener_event(struct ev_loop *loop, struct ev_io *io, uint32_t ev)
{
    struct listener_rt *l = io->data;
    struct worker *w = l->w;
    l->ops->accept(l);
    /* Still at the limit with connections waiting: stop polling this
     * listener until one closes, instead of spinning on it. An http
     * listener with idle keep-alive clients keeps polling: the accept
     * evicts one of them for each newcomer. */
    if (l->fd >= 0 && !listener_can_take(w, l))
        listener_set_paused(w, l, true);
}


static void begin_drain(struct worker *w)
{
    if (w->draining)
        return;
    w->draining = true;
    w->drain_deadline = ev_now(w->loop) + w->cfg->drain_timeout_ms;
    log_info("worker %u draining: %u connections open", w->id, w->n_conns);
    for (size_t i = 0; i < w->n_listeners; i++) {
        struct listener_rt *l = &w->listeners[i];
        if (l->fd >= 0 && l->ops->accept) {
            /* The master keeps its copy of the socket: queued connections
             * stay for the worker that replaces this one. */
            ev_io_stop(w->loop, &l->io);
            close(l->fd);
            l->fd = -1;
        }
        if (l->ops->drain)
            l->ops->drain(l);
    }
    /* Pooled upstream connections go now; idle clients get a short grace
     * (their protocol's tick) since a keep-alive client may be sending
     * right now. */
    pool_sweep_idle(w);
}

static void tick(struct ev_loop *loop, struct ev_timer *t)
{
    struct worker *w = t->data;
    atomic_store_explicit(&w->sh->workers[w->id].heartbeat_ms, ev_now(loop), memory_order_relaxed);
    for (size_t p = 0; p < w->n_pools; p++) {
        pool_sync_slots(w, &w->pools[p]);
        pool_refresh(w, &w->pools[p]);
    }
    if (++w->ticks % 10 == 0 || w->draining)
        pool_sweep_idle(w);
    for (size_t i = 0; i < w->n_listeners; i++) {
        struct listener_rt *l = &w->listeners[i];
        if (l->ops->tick)
            l->ops->tick(l);
        if (l->alog)
            access_log_flush(l->alog);
    }
    /* A paused listener may take connections again without one of its own
     * closing (a client became idle and can be evicted). */
    listeners_resume(w);
    if (w->draining) {
        size_t open = w->n_conns; /* every protocol's connections and sessions */
        if (open == 0 || ev_now(loop) >= w->drain_deadline) {
            if (open)
                log_warn("worker %u: drain timeout, closing %zu connections", w->id, open);
            ev_break(loop);
            return;
        }
    }
    ev_timer_start(loop, t, TICK_MS);
}

/* SIGUSR1, passed on by the master once it has created the new files
 * (and handed them to `user`): open them by name again. */
static void reopen_logs(struct worker *w)
{
    int failed = log_reopen(privs_file_owner()) < 0;
    for (size_t i = 0; i < w->n_listeners; i++)
        if (w->listeners[i].alog)
            failed |= access_log_reopen(w->listeners[i].alog, w->listeners[i].cfg->access_log) < 0;
    if (!failed)
        log_info("worker %u: log files reopened", w->id);
}

static void signal_event(struct ev_loop *loop, struct ev_io *io, uint32_t ev)
{
    struct worker *w = io->data;
    struct signalfd_siginfo si;
    while (read(w->signal_fd, &si, sizeof si) == (ssize_t)sizeof si) {
        switch (si.ssi_signo) {
        case SIGTERM:
        case SIGINT:
            begin_drain(w);
            break;
        case SIGQUIT:
            log_info("worker %u: quit", w->id);
            ev_break(loop);
            break;
        case SIGUSR1:
            reopen_logs(w);
            break;
        default:
            break;
        }
    }
}

static int setup_pools(struct worker *w)
{
    const struct proxy_conf *cfg = w->cfg;
    w->n_pools = cfg->n_pools;
    w->pools = calloc(cfg->n_pools ? cfg->n_pools : 1, sizeof *w->pools);
    if (!w->pools)
        return -1;
    for (size_t p = 0; p < cfg->n_pools; p++) {
        struct pool_rt *pr = &w->pools[p];
        const struct cfg_pool *pc = &cfg->pools[p];
        size_t n = cfg_pool_slots(pc);
        pr->cfg = pc;
        pr->discovered = cfg_pool_slotted(pc);
        pr->index = p;
        pr->n = n;
        pr->b = calloc(n, sizeof *pr->b);
        pr->weights = calloc(n, sizeof *pr->weights);
        pr->active = calloc(n, sizeof *pr->active);
        pr->outstanding = calloc(n, sizeof *pr->outstanding);
        pr->keys = calloc(n, sizeof *pr->keys);
        pr->lb = lb_create(pc->algorithm, n);
        if (!pr->b || !pr->weights || !pr->active || !pr->outstanding || !pr->keys || !pr->lb)
            return -1;
        if (pc->tls.enabled) {
            char err[256];
            pr->tls_ctx = tls_upstream_ctx_new(&pc->tls, err, sizeof err);
            if (!pr->tls_ctx) {
                log_error("worker %u: pool %s: %s", w->id, pc->name, err);
                return -1;
            }
        }
        for (size_t i = 0; i < n; i++) {
            struct backend_rt *b = &pr->b[i];
            b->index = i;
            b->gidx = shared_backend_index(w->sh, p, i);
            b->cfg = pr->discovered ? &b->slot_cfg : &pc->backends[i];
            b->sh = &w->sh->backends[b->gidx];
            b->ctr = shared_bctr(w->sh, w->id, b->gidx);
            /* Gauges of a crashed predecessor in this slot are stale. */
            atomic_store(&b->ctr->active, 0);
            atomic_store(&b->ctr->idle, 0);
            if (pr->discovered) {
                /* Forces the first pool_sync_slots to read every slot. */
                b->slot_seq = UINT32_MAX;
                for (int k = 0; k < 2; k++)
                    snprintf(b->slot_key[k], sizeof b->slot_key[k], "empty-slot-%zu", i);
                pr->keys[i] = b->slot_key[0];
                continue;
            }
            pr->keys[i] = b->cfg->addr.text;
            snprintf(b->sticky_token, sizeof b->sticky_token, "%016llx",
                     (unsigned long long)sl_hash64(b->cfg->addr.text, strlen(b->cfg->addr.text), 0x571c4eULL));
        }
        pool_sync_slots(w, pr);
        pool_refresh(w, pr);
    }
    return 0;
}

static int setup_listeners(struct worker *w, const int *listen_fds)
{
    const struct proxy_conf *cfg = w->cfg;
    w->n_listeners = cfg->n_listeners;
    w->listeners = calloc(cfg->n_listeners ? cfg->n_listeners : 1, sizeof *w->listeners);
    if (!w->listeners)
        return -1;
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        struct listener_rt *l = &w->listeners[i];
        l->w = w;
        l->cfg = &cfg->listeners[i];
        l->index = i;
        l->fd = listen_fds[i];
        l->ctr = shared_lctr(w->sh, w->id, i);
        atomic_store(&l->ctr->active, 0);
        if (l->cfg->access_log)
            l->alog = access_log_open(l->cfg->access_log, l->cfg->access_log_format);
        l->ops = proxy_proto_of(l->cfg->proto);
        ev_io_init(&l->io, l->fd, listener_event, l);
        char err[256];
        if (l->cfg->tls && !(l->tls = tls_server_new(l->cfg->tls, l->cfg->name, &l->ctr->tls, w->tls_sessions[i],
                                                     err, sizeof err))) {
            log_error("worker %u: listener %s: tls: %s", w->id, l->cfg->name, err);
            return -1;
        }
        if (l->ops->init && l->ops->init(l, err, sizeof err) < 0) {
            log_error("worker %u: %s listener %s: %s", w->id, l->ops->name, l->cfg->name, err);
            return -1;
        }
        if (l->ops->accept)
            ev_io_set(w->loop, &l->io, EPOLLIN);
    }
    return 0;
}

static int setup_signals(struct worker *w)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    w->signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (w->signal_fd < 0)
        return -1;
    ev_io_init(&w->signal_io, w->signal_fd, signal_event, w);
    ev_io_set(w->loop, &w->signal_io, EPOLLIN);
    return 0;
}

static void worker_free(struct worker *w)
{
    for (size_t p = 0; p < w->n_pools; p++) {
        struct pool_rt *pr = &w->pools[p];
        lb_free(pr->lb);
        for (size_t i = 0; pr->b && i < pr->n; i++)
            tls_upstream_session_drop(&pr->b[i].tls_sess);
        SSL_CTX_free(pr->tls_ctx);
        free(pr->b);
        free(pr->weights);
        free(pr->active);
        free(pr->outstanding);
        free(pr->keys);
    }
    free(w->pools);
    for (size_t i = 0; i < w->n_listeners; i++) {
        struct listener_rt *l = &w->listeners[i];
        if (l->ops && l->ops->fini)
            l->ops->fini(l);
        access_log_close(w->listeners[i].alog);
        tls_server_free(l->tls);
        if (w->listeners[i].fd >= 0)
            close(w->listeners[i].fd);
    }
    free(w->listeners);
    if (w->signal_fd >= 0)
        close(w->signal_fd);
    if (w->reserve_fd >= 0)
        close(w->reserve_fd);
    ev_loop_free(w->loop);
}

int worker_main(const struct proxy_conf *cfg, struct shared_state *sh, uint32_t id, const int *listen_fds,
                struct tls_session_store *const *tls_sessions)
{
    /* Die with the master rather than serve a stale configuration alone. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() == 1)
        return 1;
    char role[16];
    snprintf(role, sizeof role, "worker/%u", id);
    log_set_role(role);

    struct worker w = {0};
    w.id = id;
    w.cfg = cfg;
    w.sh = sh;
    w.tls_sessions = tls_sessions;
    w.signal_fd = -1;
    w.reserve_fd = -1;
    reserve_take(&w);
    w.rng = ((uint64_t)getpid() << 32) ^ (uint64_t)time(NULL) ^ 0x9e3779b97f4a7c15ULL;
    w.loop = ev_loop_new();
    int rc = 1;
    if (!w.loop || setup_signals(&w) < 0 || setup_pools(&w) < 0 ||
        setup_listeners(&w, listen_fds) < 0) {
        log_error("worker %u: setup failed: %s", id, strerror(errno));
        goto out;
    }
    /* Sockets, access logs and TLS keys are open: no more need of root
     * (the `user` key; core/privs.h). */
    char why[256];
    if (privs_drop_armed(why, sizeof why) < 0) {
        log_error("worker %u: %s", id, why);
        goto out;
    }
    /* A change of credentials clears the parent-death signal. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() == 1)
        goto out;
    atomic_store(&sh->workers[id].pid, (int32_t)getpid());
    ev_timer_init(&w.tick, tick, &w);
    ev_timer_start(w.loop, &w.tick, TICK_MS);
    log_debug("worker %u serving %zu listeners", id, w.n_listeners);
    rc = ev_run(w.loop) < 0 ? 1 : 0;
    for (size_t i = 0; i < w.n_listeners; i++) {
        struct listener_rt *l = &w.listeners[i];
        if (l->ops->shutdown)
            l->ops->shutdown(l); /* idle or not: the worker is exiting */
    }
    pp_shutdown(&w); /* connections still waiting for their PROXY header */
    pool_sweep_idle(&w);
out:
    worker_free(&w);
    return rc;
}
