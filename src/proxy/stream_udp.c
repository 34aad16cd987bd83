/* UDP stream proxying: see stream.h. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "lib/hash.h"
#include "proxy/pool.h"
#include "proxy/proto.h"
#include "proxy/stream.h"

#define UDP_BATCH 64          /* datagrams per readiness event, so one busy listener cannot starve the loop */
#define UDP_MAX_DGRAM 65535
#define DEFAULT_UDP_SESSION_MS 30000
#define UDP_MIN_BUCKETS 64
/* Idle time after which a session ends while the worker drains. Draining
 * stops reading the listener, so a session can only still receive late
 * replies; waiting the full udp_session_ms for them would hold up every
 * reload and shutdown. */
#define UDP_DRAIN_IDLE_MS 2000

/* A client address in a comparable, hashable form (no padding, zeroed). */
struct udp_key {
    uint16_t family;
    uint16_t port;
    uint32_t scope;
    uint8_t addr[16];
};

struct udp_table;

struct udp_session {
    struct udp_table *t;
    struct udp_session *hnext;          /* hash chain */
    struct udp_session *older, *newer;  /* LRU order by last activity */
    struct udp_key key;
    uint64_t hash;
    struct sockaddr_storage client;
    socklen_t client_len;
    struct backend_rt *b;
    int fd;                             /* connected to b */
    struct ev_io io;
    uint64_t last_active;
    uint64_t to_client;                 /* for the access log */
    uint64_t started_us;
};

struct udp_table {
    struct listener_rt *l;
    struct pool_rt *p;
    struct udp_session **buckets;
    size_t n_buckets;                   /* power of two */
    size_t n;
    struct udp_session *oldest, *newest;
    uint64_t seed;                      /* random: clients cannot aim at one chain */
    uint64_t warn_at;
    uint8_t buf[UDP_MAX_DGRAM];
};

static void udp_key_of(const struct sockaddr_storage *ss, struct udp_key *k)
{
    memset(k, 0, sizeof *k);
    k->family = ss->ss_family;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        k->port = sin->sin_port;
        memcpy(k->addr, &sin->sin_addr, sizeof sin->sin_addr);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        k->port = sin6->sin6_port;
        k->scope = sin6->sin6_scope_id;
        memcpy(k->addr, &sin6->sin6_addr, sizeof sin6->sin6_addr);
    }
}

static struct udp_session *udp_find(struct udp_table *t, const struct udp_key *k, uint64_t h)
{
    for (struct udp_session *s = t->buckets[h & (t->n_buckets - 1)]; s; s = s->hnext)
        if (s->hash == h && memcmp(&s->key, k, sizeof *k) == 0)
            return s;
    return NULL;
}

/* Keep chains short: double the bucket array when sessions outnumber it.
 * On allocation failure the table keeps working, only slower. */
static void udp_grow(struct udp_table *t)
{
    size_t nb = t->n_buckets * 2;
    struct udp_session **b = calloc(nb, sizeof *b);
    if (!b)
        return;
    for (size_t i = 0; i < t->n_buckets; i++) {
        struct udp_session *s = t->buckets[i];
        while (s) {
            struct udp_session *next = s->hnext;
            s->hnext = b[s->hash & (nb - 1)];
            b[s->hash & (nb - 1)] = s;
            s = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->n_buckets = nb;
}

static void udp_insert(struct udp_table *t, struct udp_session *s)
{
    if (t->n >= t->n_buckets)
        udp_grow(t);
    struct udp_session **head = &t->buckets[s->hash & (t->n_buckets - 1)];
    s->hnext = *head;
    *head = s;
    s->older = t->newest;
    s->newer = NULL;
    if (t->newest)
        t->newest->newer = s;
    else
        t->oldest = s;
    t->newest = s;
    t->n++;
}

static void udp_remove(struct udp_table *t, struct udp_session *s)
{
    for (struct udp_session **pp = &t->buckets[s->hash & (t->n_buckets - 1)]; *pp; pp = &(*pp)->hnext) {
        if (*pp == s) {
            *pp = s->hnext;
            break;
        }
    }
    if (s->older)
        s->older->newer = s->newer;
    else
        t->oldest = s->newer;
    if (s->newer)
        s->newer->older = s->older;
    else
        t->newest = s->older;
    s->older = s->newer = s->hnext = NULL;
    t->n--;
}

/* Traffic in either direction keeps a session alive: move it to the young end. */
static void udp_touch(struct udp_table *t, struct udp_session *s)
{
    s->last_active = ev_now(t->l->w->loop);
    if (t->newest == s)
        return;
    if (s->older)
        s->older->newer = s->newer;
    else
        t->oldest = s->newer;
    s->newer->older = s->older;
    s->older = t->newest;
    s->newer = NULL;
    t->newest->newer = s;
    t->newest = s;
}

static void udp_session_cb(struct ev_loop *loop, struct ev_io *io, uint32_t ev);

static void udp_session_close(struct udp_table *t, struct udp_session *s)
{
    struct ev_loop *loop = t->l->w->loop;
    stream_log(t->l, &s->client, "UDP", s->b, 200, s->to_client, s->started_us, NULL);
    udp_remove(t, s);
    ev_io_stop(loop, &s->io);
    close(s->fd);
    stream_backend_release(t->p, s->b);
    stream_client_closed(t->l);
    ev_defer_free(loop, s, free);
}

/* Open a connected socket to a backend of the pool; -1 when that fails.
 * Connecting a UDP socket only sets its peer, so a failure here is local
 * or a routing problem, and ICMP errors show up later on the socket. */
static int udp_open_backend(struct udp_table *t, struct backend_rt *b)
{
    int fd = upstream_socket_connect(&b->cfg->addr, SOCK_DGRAM);
    if (fd >= 0)
        return fd;
    int err = errno;
    if (!stream_local_error(err)) {
        ctr_add(&b->ctr->connect_failures, 1);
        backend_report(t->l->w, t->p, b, false);
    }
    if (stream_warn_allowed(&t->warn_at, ev_now(t->l->w->loop)))
        log_warn("udp %s: cannot open a socket to %s: %s", t->l->cfg->name, b->cfg->addr.text, strerror(err));
    return -1;
}

static struct udp_session *udp_session_new(struct udp_table *t, const struct sockaddr_storage *ss,
                                           socklen_t len, const struct udp_key *k, uint64_t h)
{
    struct listener_rt *l = t->l;
    struct worker *w = l->w;
    int i = pool_pick(w, t->p, stream_pick_key(t->p, ss), NULL);
    if (i < 0) {
        ctr_add(&l->ctr->no_backend, 1);
        if (stream_warn_allowed(&t->warn_at, ev_now(w->loop)))
            log_warn("udp %s: no backend available in pool %s", l->cfg->name, t->p->cfg->name);
        return NULL;
    }
    struct backend_rt *b = &t->p->b[i];
    struct udp_session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->fd = udp_open_backend(t, b);
    if (s->fd < 0) {
        free(s);
        return NULL;
    }
    s->t = t;
    s->key = *k;
    s->hash = h;
    memcpy(&s->client, ss, len);
    s->client_len = len;
    s->b = b;
    s->last_active = ev_now(w->loop);
    s->started_us = stream_now_us();
    ev_io_init(&s->io, s->fd, udp_session_cb, s);
    ev_io_set(w->loop, &s->io, EPOLLIN);
    udp_insert(t, s);

    stream_backend_acquire(t->p, b);
    ctr_add(&b->ctr->requests, 1);
    stream_client_opened(l);
    return s;
}

/* The session's backend went down, was disabled or ejected. A draining
 * backend keeps its sessions: draining means "no new ones". */
static bool udp_backend_gone(const struct pool_rt *p, const struct backend_rt *b)
{
    return p->weights[b->index] == 0 &&
           atomic_load_explicit(&b->sh->admin, memory_order_relaxed) != BACKEND_DRAINING;
}

/* Move a session to another backend. If there is none, it stays where it
 * is: for a datagram, a chance beats a certain drop. */
static void udp_session_repick(struct udp_table *t, struct udp_session *s)
{
    struct worker *w = t->l->w;
    int i = pool_pick(w, t->p, stream_pick_key(t->p, &s->client), NULL);
    if (i < 0 || &t->p->b[i] == s->b)
        return;
    struct backend_rt *b = &t->p->b[i];
    int fd = udp_open_backend(t, b);
    if (fd < 0)
        return;
    log_debug("udp %s: session moves from %s to %s", t->l->cfg->name, s->b->cfg->addr.text, b->cfg->addr.text);
    ev_io_stop(w->loop, &s->io);
    close(s->fd);
    stream_backend_release(t->p, s->b);
    s->fd = fd;
    s->b = b;
    stream_backend_acquire(t->p, b);
    ctr_add(&b->ctr->requests, 1);
    ev_io_init(&s->io, fd, udp_session_cb, s);
    ev_io_set(w->loop, &s->io, EPOLLIN);
}

/* ICMP port unreachable came back as ECONNREFUSED: passive health decides
 * whether the backend is ejected; the next datagram then moves. */
static void udp_backend_refused(struct udp_table *t, struct udp_session *s)
{
    ctr_add(&s->b->ctr->connect_failures, 1);
    backend_report(t->l->w, t->p, s->b, false);
}

static void udp_from_client(struct udp_table *t, const struct sockaddr_storage *ss, socklen_t len, size_t n)
{
    struct listener_rt *l = t->l;
    struct worker *w = l->w;
    struct udp_key k;
    udp_key_of(ss, &k);
    uint64_t h = sl_hash64(&k, sizeof k, t->seed);
    struct udp_session *s = udp_find(t, &k, h);
    if (!s) {
        if (w->draining || worker_at_limit(w, l))
            return;
        s = udp_session_new(t, ss, len, &k, h);
        if (!s)
            return;
    } else if (udp_backend_gone(t->p, s->b)) {
        udp_session_repick(t, s);
    }
    udp_touch(t, s);
    ssize_t sent = send(s->fd, t->buf, n, MSG_DONTWAIT);
    if (sent >= 0) {
        ctr_add(&s->b->ctr->bytes_sent, (uint64_t)sent);
        return;
    }
    /* Dropped: a full socket buffer, or a pending ICMP error reported
     * instead of sending. */
    if (errno == ECONNREFUSED)
        udp_backend_refused(t, s);
    else
        ctr_add(&s->b->ctr->upstream_errors, 1);
}

static void udp_listener_cb(struct ev_loop *loop, struct ev_io *io, uint32_t ev)
{
    struct listener_rt *l = io->data;
    struct udp_table *t = l->proto_state;
    if (!t)
        return;
    for (int i = 0; i < UDP_BATCH; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        /* MSG_TRUNC: the real length, so an oversized datagram is seen and dropped. */
        ssize_t n = recvfrom(l->fd, t->buf, sizeof t->buf, MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)&ss, &len);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            continue; /* a queued error was reported (and cleared); go on */
        }
        ctr_add(&l->ctr->bytes_received, (uint64_t)n);
        if ((size_t)n > sizeof t->buf)
            continue;
        udp_from_client(t, &ss, len, (size_t)n);
    }
}

static void udp_session_cb(struct ev_loop *loop, struct ev_io *io, uint32_t ev)
{
    struct udp_session *s = io->data;
    struct udp_table *t = s->t;
    struct listener_rt *l = t->l;
    bool got_reply = false;

    for (int i = 0; i < UDP_BATCH; i++) {
        ssize_t n = recv(s->fd, t->buf, sizeof t->buf, MSG_DONTWAIT | MSG_TRUNC);
        if (n < 0) {
            if (errno == ECONNREFUSED) {
                udp_backend_refused(t, s);
                continue; /* the error is cleared; replies may still be queued */
            }
            if (errno == EINTR)
                continue;
            break;
        }
        ctr_add(&s->b->ctr->bytes_received, (uint64_t)n);
        if ((size_t)n > sizeof t->buf) {
            ctr_add(&s->b->ctr->upstream_errors, 1);
            continue;
        }
        got_reply = true;
        if (sendto(l->fd, t->buf, (size_t)n, MSG_DONTWAIT, (const struct sockaddr *)&s->client, s->client_len) < 0) {
            ctr_add(&s->b->ctr->upstream_errors, 1); /* client side full: dropped */
        } else {
            s->to_client += (uint64_t)n;
            ctr_add(&l->ctr->bytes_sent, (uint64_t)n);
        }
    }
    if (got_reply) {
        backend_report(l->w, t->p, s->b, true);
        udp_touch(t, s);
    }
}

/* Set up a UDP listener: l->fd is a bound non-blocking UDP socket. Creates
 * the session table in l->proto_state and registers l->io. */
static int udp_init(struct listener_rt *l, char *err, size_t errlen)
{
    struct worker *w = l->w;
    if (!l->cfg->has_default_pool) {
        snprintf(err, errlen, "no pool");
        return -1;
    }
    struct udp_table *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    t->n_buckets = UDP_MIN_BUCKETS;
    t->buckets = calloc(t->n_buckets, sizeof *t->buckets);
    if (!t->buckets) {
        free(t);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    t->l = l;
    t->p = &w->pools[l->cfg->default_pool];
    t->seed = ((uint64_t)worker_random(w) << 32) | worker_random(w);
    l->proto_state = t;
    ev_io_init(&l->io, l->fd, udp_listener_cb, l);
    ev_io_set(w->loop, &l->io, EPOLLIN);
    return 0;
}

static void udp_expire(struct udp_table *t, uint64_t now)
{
    uint64_t ttl = t->l->cfg->timeouts.udp_session_ms;
    if (!ttl)
        ttl = DEFAULT_UDP_SESSION_MS;
    if (t->l->w->draining && ttl > UDP_DRAIN_IDLE_MS)
        ttl = UDP_DRAIN_IDLE_MS;
    while (t->oldest && now - t->oldest->last_active >= ttl)
        udp_session_close(t, t->oldest);
}

/* ---- the listener's operations (proxy/proto.h) ---- */

/* The worker's 100 ms tick: expires idle UDP sessions. */
static void udp_tick(struct listener_rt *l)
{
    if (l->proto_state)
        udp_expire(l->proto_state, ev_now(l->w->loop));
}

/* SIGTERM: stop reading the listener (a replacement worker shares the
 * socket and takes the new traffic); sessions still deliver replies until
 * they go idle. */
static void udp_drain(struct listener_rt *l)
{
    ev_io_stop(l->w->loop, &l->io);
}

static void udp_shutdown(struct listener_rt *l)
{
    struct udp_table *t = l->proto_state;
    if (!t)
        return;
    ev_io_stop(l->w->loop, &l->io);
    while (t->oldest)
        udp_session_close(t, t->oldest);
}

static void udp_fini(struct listener_rt *l)
{
    struct udp_table *t = l->proto_state;
    if (!t)
        return;
    l->proto_state = NULL;
    free(t->buckets);
    free(t);
}

/* No accept: the protocol reads its listening socket itself. */
const struct proxy_proto_ops udp_proto_ops = {
    .name = "udp",
    .init = udp_init,
    .tick = udp_tick,
    .drain = udp_drain,
    .shutdown = udp_shutdown,
    .fini = udp_fini,
};
