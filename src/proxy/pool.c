/* See pool.h. */
#include "proxy/pool.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/balance.h"
#include "lib/hash.h"
#include "core/log.h"
#include "proxy/slots.h"
#include "proxy/tls.h"

static void close_idle(struct backend_rt *b)
{
    while (b->idle)
        upstream_close(b->idle);
}

/* The slot holds another member now (or none): what this worker kept for
 * the old one goes. The master reuses a slot only once it is quiet, so
 * normally there is nothing left; closing is the safe side. */
static void slot_take_member(struct backend_rt *b, const struct sl_addr *addr)
{
    close_idle(b);
    tls_upstream_session_drop(&b->tls_sess); /* another server now */
    b->slot_cfg.addr = *addr;
    b->slot_cfg.weight = 1;
    b->slot_key_flip ^= 1;
    char *key = b->slot_key[b->slot_key_flip];
    if (addr->len)
        snprintf(key, sizeof b->slot_key[0], "%s", addr->text);
    else
        snprintf(key, sizeof b->slot_key[0], "empty-slot-%zu", b->index);
    snprintf(b->sticky_token, sizeof b->sticky_token, "%016llx",
             (unsigned long long)sl_hash64(addr->text, strlen(addr->text), 0x571c4eULL));
}

void pool_sync_slots(struct worker *w, struct pool_rt *p)
{
    if (!p->discovered)
        return;
    for (size_t i = 0; i < p->n; i++) {
        struct backend_rt *b = &p->b[i];
        if (shared_slot_seq(b->sh) != b->slot_seq) {
            struct sl_addr a;
            b->slot_seq = shared_slot_read(b->sh, &a);
            if (!addr_equal(&a, &b->slot_cfg.addr) || a.len != b->slot_cfg.addr.len)
                slot_take_member(b, &a);
            p->keys[i] = b->slot_key[b->slot_key_flip];
        }
        b->slot_active = atomic_load_explicit(&b->sh->slot_state, memory_order_relaxed) == SLOT_ACTIVE;
        /* A removed member: no new requests, and its pooled connections
         * go now (in-flight ones finish on their own). */
        if (!b->slot_active)
            close_idle(b);
    }
}

void pool_refresh(struct worker *w, struct pool_rt *p)
{
    uint64_t now = ev_now(w->loop);
    uint32_t available = 0;
    for (size_t i = 0; i < p->n; i++) {
        if (p->discovered && !p->b[i].slot_active) {
            p->weights[i] = 0;
            continue;
        }
        p->weights[i] = shared_effective_weight(p->b[i].sh, p->cfg->slow_start_ms, now);
        if (p->weights[i])
            available++;
    }
    p->available = available;
    if (lb_set_weights(p->lb, p->weights, p->keys) < 0)
        log_error("pool %s: out of memory rebuilding the balancing table", p->cfg->name);
}

int pool_pick(struct worker *w, struct pool_rt *p, uint64_t key_hash, const uint8_t *exclude)
{
    const uint32_t *load = NULL;
    if (p->cfg->algorithm == LB_LEAST_CONN)
        load = p->active;
    else if (p->cfg->algorithm == LB_P2C)
        load = p->outstanding;
    return lb_pick(p->lb, load, key_hash, exclude);
}

void backend_report(struct worker *w, struct pool_rt *p, struct backend_rt *b, bool ok)
{
    struct shared_backend *sb = b->sh;
    const struct cfg_passive *pc = &p->cfg->passive;
    if (ok) {
        /* Read before writing: a healthy backend is the common case and
         * its cache line should stay shared between workers. */
        if (atomic_load_explicit(&sb->consecutive_fails, memory_order_relaxed))
            atomic_store_explicit(&sb->consecutive_fails, 0, memory_order_relaxed);
        if (atomic_load_explicit(&sb->eject_count, memory_order_relaxed) &&
            atomic_load_explicit(&sb->ejected_until_ms, memory_order_relaxed) <= ev_now(w->loop))
            atomic_store_explicit(&sb->eject_count, 0, memory_order_relaxed);
        return;
    }
    if (!pc->max_fails)
        return;
    uint32_t fails = atomic_fetch_add(&sb->consecutive_fails, 1) + 1;
    if (fails < pc->max_fails)
        return;
    uint64_t now = ev_now(w->loop);
    uint64_t until = atomic_load(&sb->ejected_until_ms);
    if (until > now)
        return; /* another worker already ejected it */
    /* Back-off from the ejections in a row so far. Only the worker whose
     * compare-and-swap wins counts this ejection: when several workers see
     * the failures at once, the back-off must still double once, not once
     * per worker. */
    uint32_t n = atomic_load(&sb->eject_count);
    uint64_t dur = pc->eject_ms;
    for (uint32_t i = 0; i < n && dur < pc->max_eject_ms; i++)
        dur *= 2;
    if (dur > pc->max_eject_ms)
        dur = pc->max_eject_ms;
    if (atomic_compare_exchange_strong(&sb->ejected_until_ms, &until, now + dur)) {
        atomic_fetch_add(&sb->eject_count, 1);
        atomic_store(&sb->consecutive_fails, 0);
        log_warn("backend %s in pool %s ejected for %llu ms after %u consecutive failures",
                 b->cfg->addr.text, p->cfg->name, (unsigned long long)dur, fails);
    }
    pool_refresh(w, p);
}

int upstream_socket_connect(const struct sl_addr *addr, int type)
{
    int fd = socket(addr->ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (type == SOCK_STREAM) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    if (connect(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* ---- keep-alive connections to backends ---- */

#define UPSTREAM_IDLE_MS 60000

static void upstream_pool_remove(struct upstream_conn *u)
{
    struct backend_rt *b = u->b;
    if (u->prev_idle)
        u->prev_idle->next_idle = u->next_idle;
    else if (b->idle == u)
        b->idle = u->next_idle;
    if (u->next_idle)
        u->next_idle->prev_idle = u->prev_idle;
    u->next_idle = u->prev_idle = NULL;
    b->n_idle--;
    atomic_fetch_sub_explicit(&b->ctr->idle, 1, memory_order_relaxed);
}

/* A pooled connection spoke or closed: it is no longer reusable. Over
 * TLS a record may carry no data (a session ticket, a key update): the
 * transport takes it in and the connection stays pooled. */
static void upstream_idle_event(struct ev_loop *loop, struct ev_io *io, uint32_t ev)
{
    struct upstream_conn *u = io->data;
    if (transport_is_tls(&u->tr) && !(ev & (EPOLLERR | EPOLLHUP))) {
        char byte;
        if (transport_recv(&u->tr, &byte, 1) < 0 && errno == EAGAIN) {
            ev_io_set(loop, io, transport_events(&u->tr, EPOLLIN));
            return;
        }
    }
    upstream_close(u);
}

int pool_upstream_transport(struct pool_rt *p, struct backend_rt *b, struct transport *tr, int fd)
{
    if (!p->tls_ctx) {
        transport_plain(tr, fd);
        return 0;
    }
    char err[256];
    SSL *ssl = tls_upstream_ssl_new(p->tls_ctx, &p->cfg->tls, &b->cfg->addr, &b->tls_sess, err, sizeof err);
    if (!ssl) {
        log_warn("pool %s: backend %s: %s", p->cfg->name, b->cfg->addr.text, err);
        errno = ENOMEM;
        return -1;
    }
    if (transport_tls_attach(tr, fd, ssl, NULL) < 0) {
        SSL_free(ssl);
        errno = ENOMEM;
        return -1;
    }
    return 0;
}

static void upstream_free(void *p)
{
    struct upstream_conn *u = p;
    buf_release(&u->in);
    free(u);
}

void upstream_close(struct upstream_conn *u)
{
    if (!u->owner)
        upstream_pool_remove(u);
    else
        atomic_fetch_sub_explicit(&u->b->ctr->active, 1, memory_order_relaxed);
    ev_io_stop(u->w->loop, &u->io);
    transport_close(&u->tr, false);
    ev_defer_free(u->w->loop, u, upstream_free);
}

/* The response is complete and the connection clean: keep it for reuse. */
void upstream_release(struct upstream_conn *u)
{
    struct backend_rt *b = u->b;
    atomic_fetch_sub_explicit(&b->ctr->active, 1, memory_order_relaxed);
    u->owner = NULL;
    bool removed = u->pool->discovered && !b->slot_active; /* a member leaving the pool */
    if (b->n_idle >= u->pool->cfg->keepalive || u->w->draining || buf_len(&u->in) || removed) {
        ev_io_stop(u->w->loop, &u->io);
        transport_close(&u->tr, false);
        ev_defer_free(u->w->loop, u, upstream_free);
        return;
    }
    buf_release(&u->in);
    u->idle_since = ev_now(u->w->loop);
    u->prev_idle = NULL;
    u->next_idle = b->idle;
    if (b->idle)
        b->idle->prev_idle = u;
    b->idle = u;
    b->n_idle++;
    atomic_fetch_add_explicit(&b->ctr->idle, 1, memory_order_relaxed);
    /* Watch for the server closing it while idle. */
    u->io.cb = upstream_idle_event;
    ev_io_set(u->w->loop, &u->io, EPOLLIN);
}

static bool same_client(const struct conn_origin *a, const struct conn_origin *b)
{
    return memcmp(&a->client, &b->client, sizeof a->client) == 0 && memcmp(&a->local, &b->local, sizeof a->local) == 0;
}

struct upstream_conn *upstream_get(struct worker *w, struct pool_rt *p, struct backend_rt *b, ev_io_cb cb,
                                   void *owner)
{
    return upstream_get_for(w, p, b, cb, owner, NULL);
}

struct upstream_conn *upstream_get_for(struct worker *w, struct pool_rt *p, struct backend_rt *b, ev_io_cb cb,
                                       void *owner, const struct conn_origin *client)
{
    struct upstream_conn *u = b->idle;
    if (p->cfg->send_proxy && client)
        while (u && !same_client(&u->pp_client, client))
            u = u->next_idle;
    if (u) {
        upstream_pool_remove(u);
        u->reused = true;
    } else {
        int fd = upstream_socket_connect(&b->cfg->addr, SOCK_STREAM);
        if (fd < 0)
            return NULL;
        u = calloc(1, sizeof *u);
        if (!u || pool_upstream_transport(p, b, &u->tr, fd) < 0) {
            free(u);
            close(fd);
            errno = ENOMEM;
            return NULL;
        }
        u->w = w;
        u->pool = p;
        u->b = b;
        u->connecting = true;
        if (client)
            u->pp_client = *client;
        ev_io_init(&u->io, fd, cb, u);
    }
    u->io.cb = cb;
    u->owner = owner;
    u->eof = false;
    atomic_fetch_add_explicit(&b->ctr->active, 1, memory_order_relaxed);
    return u;
}

void pool_sweep_idle(struct worker *w)
{
    uint64_t now = ev_now(w->loop);
    for (size_t p = 0; p < w->n_pools; p++) {
        struct pool_rt *pool = &w->pools[p];
        for (size_t i = 0; i < pool->n; i++) {
            struct upstream_conn *u = pool->b[i].idle;
            while (u) {
                struct upstream_conn *next = u->next_idle;
                if (w->draining || now - u->idle_since >= UPSTREAM_IDLE_MS)
                    upstream_close(u);
                u = next;
            }
        }
    }
}

