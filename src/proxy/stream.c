/* See stream.h. */
#include "proxy/stream.h"
#include <stdio.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/addr.h"
#include "lib/hash.h"
#include "core/log.h"
#include "proxy/access_log.h"
#include "proxy/pool.h"
#include "proxy/proto.h"

#define ACCEPT_BATCH 64       /* accepts per readiness event, so one busy listener cannot starve the loop */
#define UDP_BATCH 64          /* datagrams per readiness event, same reason */
#define UDP_MAX_DGRAM 65535
#define PUMP_ROUNDS 8         /* read/write rounds per direction per event */
#define DEFAULT_BUFFER 16384
#define DEFAULT_UDP_SESSION_MS 30000
#define UDP_MIN_BUCKETS 64
/* Idle time after which a session ends while the worker drains. Draining
 * stops reading the listener, so a session can only still receive late
 * replies; waiting the full udp_session_ms for them would hold up every
 * reload and shutdown. */
#define UDP_DRAIN_IDLE_MS 2000

/* Fixed, so that every worker (and every restart) maps a client IP to the
 * same point of the Maglev table: affinity must not depend on which worker
 * the kernel handed the connection to. */
#define CLIENT_IP_SEED 0x5c1b7e3a9d4f2086ULL

/* ---- small helpers ---- */

static inline void ctr_add(_Atomic uint64_t *c, uint64_t v)
{
    atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

static inline void gauge_inc(_Atomic uint32_t *g) { atomic_fetch_add_explicit(g, 1, memory_order_relaxed); }
static inline void gauge_dec(_Atomic uint32_t *g) { atomic_fetch_sub_explicit(g, 1, memory_order_relaxed); }

/* At most one warning per second per call site: conditions like fd
 * exhaustion or an empty pool recur on every event and would flood the log. */
static bool warn_allowed(uint64_t *last, uint64_t now)
{
    if (*last && now - *last < 1000)
        return false;
    *last = now;
    return true;
}

/* Failures that say nothing about the backend: this process ran out of
 * something. They must not count against the backend's health. */
static bool local_error(int err)
{
    return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

static uint64_t client_ip_hash(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        return sl_hash64(&sin->sin_addr, sizeof sin->sin_addr, CLIENT_IP_SEED);
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        /* A v4 client on a dual-stack listener hashes like on a v4 one. */
        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
            return sl_hash64(&sin6->sin6_addr.s6_addr[12], 4, CLIENT_IP_SEED);
        return sl_hash64(&sin6->sin6_addr, sizeof sin6->sin6_addr, CLIENT_IP_SEED);
    }
    return 0;
}

static uint64_t pick_key(const struct pool_rt *p, const struct sockaddr_storage *ss)
{
    return p->cfg->algorithm == LB_HASH ? client_ip_hash(ss) : 0;
}

/* A connection or session holds its backend from the connect attempt on,
 * so least_conn sees connects in flight too. */
static void backend_acquire(struct pool_rt *p, struct backend_rt *b)
{
    p->active[b->index]++;
    gauge_inc(&b->ctr->active);
}

static void backend_release(struct pool_rt *p, struct backend_rt *b)
{
    if (p->active[b->index])
        p->active[b->index]--;
    gauge_dec(&b->ctr->active);
}

/* worker_conn_opened/closed keep the listener's active gauge (the limit
 * is checked against it); only the running totals are ours. */
static void client_opened(struct listener_rt *l)
{
    worker_conn_opened(l->w, l);
    ctr_add(&l->ctr->connections, 1);
    ctr_add(&l->ctr->requests, 1); /* a stream "request" is the whole session */
}

static void client_closed(struct listener_rt *l)
{
    worker_conn_closed(l->w, l);
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* One access-log line per TCP connection or UDP session (see stream.h for
 * what the status means). */
static void log_stream(struct listener_rt *l, const struct sockaddr_storage *client, const char *what,
                       const struct backend_rt *b, int status, uint64_t to_client, uint64_t started_us)
{
    if (!l->alog)
        return;
    char ip[INET6_ADDRSTRLEN];
    addr_ip_string((const struct sockaddr *)client, ip, sizeof ip);
    struct access_entry e = {
        .client_ip = ip,
        .request_line = what,
        .upstream = b ? b->cfg->addr.text : NULL,
        .listener = l->cfg->name,
        .status = status,
        .bytes_sent = to_client,
        .duration_us = now_us() - started_us,
    };
    access_log_write(l->alog, &e);
}

static void set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Close with a reset instead of a FIN, so that the peer of a connection
 * that broke on the other side learns that its stream was cut short. */
static void close_reset(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

/* ======================================================================
 * TCP
 * ====================================================================== */

enum tcp_state { TCP_CONNECTING, TCP_RELAYING };

enum close_why {
    CLOSE_DONE,         /* both directions finished */
    CLOSE_CLIENT_ERR,   /* reset or error on the client side */
    CLOSE_BACKEND_ERR,  /* reset or error on the backend side */
    CLOSE_IDLE,         /* timeouts.idle_ms without traffic */
    CLOSE_NO_BACKEND,   /* nothing to connect to */
    CLOSE_SHUTDOWN,     /* worker exit */
};

/* One direction of the relay. Bytes wait either in a user-space buffer
 * ([off, len) of buf) or in a pipe (in_pipe bytes), never both. */
struct relay_dir {
    char *buf;
    uint32_t off, len;
    int pipe_rd, pipe_wr;
    uint32_t in_pipe, pipe_cap;
    bool pipe_full;   /* the pipe refused more although it holds < pipe_cap */
    bool eof;         /* the source sent FIN */
    bool shut;        /* FIN passed on: the destination's write side is shut */
};

struct tcp_conn {
    struct worker *w;
    struct listener_rt *l;
    struct pool_rt *p;
    struct backend_rt *b;          /* NULL between connect attempts */
    struct tcp_conn *prev, *next;  /* all stream connections of the process */
    struct ev_io cio, uio;
    struct ev_timer timer;         /* connect timeout, then idle timeout */
    int cfd, ufd;
    enum tcp_state state;
    bool splice;
    bool closed;
    bool client_hup, backend_hup;  /* the socket reported EPOLLHUP (permanent) */
    uint32_t attempts;
    struct backend_rt *failed;     /* the backend the next attempt retries away from */
    uint8_t *exclude;              /* backends that failed this connection; lazily allocated */
    uint64_t key_hash;
    uint64_t last_active;
    uint32_t cap;                  /* bytes per direction */
    uint64_t to_client;            /* bytes relayed to the client, for the access log */
    uint64_t started_us;
    struct sockaddr_storage peer;  /* the client */
    char *bufmem;                  /* both directions' buffers, one allocation */
    struct relay_dir up;           /* client -> backend */
    struct relay_dir down;         /* backend -> client */
};

/* l->proto_state of a TCP listener: its open connections, closed by
 * tcp_shutdown(). */
struct tcp_listener {
    struct tcp_conn *conns;
};

static struct tcp_listener *tcp_listener_state(const struct listener_rt *l)
{
    return l->proto_state;
}
static uint64_t warn_accept_at, warn_nobackend_at, warn_local_at;

static void tcp_client_cb(struct ev_loop *loop, struct ev_io *io, uint32_t ev);
static void tcp_backend_cb(struct ev_loop *loop, struct ev_io *io, uint32_t ev);
static void tcp_timer_cb(struct ev_loop *loop, struct ev_timer *t);
static void tcp_connect_next(struct tcp_conn *c);

static void dir_init(struct relay_dir *d)
{
    memset(d, 0, sizeof *d);
    d->pipe_rd = d->pipe_wr = -1;
}

static void dir_release(struct relay_dir *d)
{
    if (d->pipe_rd >= 0)
        close(d->pipe_rd);
    if (d->pipe_wr >= 0)
        close(d->pipe_wr);
    d->pipe_rd = d->pipe_wr = -1;
}

static void tcp_unlink(struct tcp_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        tcp_listener_state(c->l)->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static int tcp_log_status(const struct tcp_conn *c, enum close_why why)
{
    switch (why) {
    case CLOSE_DONE: return 200;
    case CLOSE_CLIENT_ERR: return 499;
    case CLOSE_BACKEND_ERR: return 502;
    case CLOSE_IDLE: return 504;
    case CLOSE_NO_BACKEND: return c->attempts ? 502 : 503;
    case CLOSE_SHUTDOWN: return c->state == TCP_RELAYING ? 200 : 503;
    }
    return 0;
}

static void tcp_close(struct tcp_conn *c, enum close_why why)
{
    if (c->closed)
        return;
    c->closed = true;
    struct ev_loop *loop = c->w->loop;
    bool reset = why == CLOSE_CLIENT_ERR || why == CLOSE_BACKEND_ERR;

    ev_timer_stop(loop, &c->timer);
    ev_io_stop(loop, &c->cio);
    if (reset)
        close_reset(c->cfd);
    else
        close(c->cfd);
    if (c->ufd >= 0) {
        ev_io_stop(loop, &c->uio);
        if (reset)
            close_reset(c->ufd);
        else
            close(c->ufd);
    }
    if (c->b) {
        if (why == CLOSE_BACKEND_ERR)
            ctr_add(&c->b->ctr->upstream_errors, 1);
        backend_release(c->p, c->b);
    }
    if (why == CLOSE_IDLE)
        ctr_add(&c->l->ctr->timeouts, 1);
    log_stream(c->l, &c->peer, "TCP", c->b ? c->b : c->failed, tcp_log_status(c, why), c->to_client,
               c->started_us);
    dir_release(&c->up);
    dir_release(&c->down);
    free(c->bufmem);
    free(c->exclude);
    tcp_unlink(c);
    client_closed(c->l);
    /* The ios may still have events further down the current batch. */
    ev_defer_free(loop, c, free);
}

/* ---- connecting ---- */

/* One attempt failed before any byte was sent: blame the backend and make
 * sure the retry goes elsewhere. Returns false if the retry cannot be
 * tracked (out of memory). */
static bool tcp_attempt_failed(struct tcp_conn *c, struct backend_rt *b, int err)
{
    ctr_add(&b->ctr->connect_failures, 1);
    backend_report(c->w, c->p, b, false);
    c->failed = b;
    log_debug("tcp %s: connect to %s failed: %s", c->l->cfg->name, b->cfg->addr.text, strerror(err));
    if (!c->exclude)
        c->exclude = calloc(c->p->n, 1);
    if (!c->exclude)
        return false;
    c->exclude[b->index] = 1;
    return true;
}

static void tcp_connect_next(struct tcp_conn *c)
{
    struct pool_rt *p = c->p;
    struct ev_loop *loop = c->w->loop;
    uint32_t max_attempts = 1 + p->cfg->retries;

    while (c->attempts < max_attempts) {
        int i = pool_pick(c->w, p, c->key_hash, c->exclude);
        if (i < 0 && c->attempts == 0) {
            ctr_add(&c->l->ctr->no_backend, 1);
            if (warn_allowed(&warn_nobackend_at, ev_now(loop)))
                log_warn("tcp %s: no backend available in pool %s", c->l->cfg->name, p->cfg->name);
            break;
        }
        if (i < 0)
            break; /* every backend still available has failed this client */
        struct backend_rt *b = &p->b[i];
        /* "retries" belongs to the backend that failed, not the one retried on. */
        if (c->failed)
            ctr_add(&c->failed->ctr->retries, 1);
        c->failed = NULL;
        c->attempts++;
        int fd = upstream_socket_connect(&b->cfg->addr, SOCK_STREAM);
        if (fd < 0) {
            int err = errno;
            if (local_error(err)) {
                if (warn_allowed(&warn_local_at, ev_now(loop)))
                    log_warn("tcp %s: cannot open a backend socket: %s", c->l->cfg->name, strerror(err));
                break;
            }
            /* Refused on the spot (possible on loopback): same as a late refusal. */
            if (!tcp_attempt_failed(c, b, err))
                break;
            continue;
        }
        c->b = b;
        c->ufd = fd;
        backend_acquire(p, b);
        ev_io_init(&c->uio, fd, tcp_backend_cb, c);
        ev_io_set(loop, &c->uio, EPOLLOUT);
        if (c->l->cfg->timeouts.connect_ms)
            ev_timer_start(loop, &c->timer, c->l->cfg->timeouts.connect_ms);
        return;
    }
    tcp_close(c, CLOSE_NO_BACKEND);
}

/* The attempt in flight failed or timed out: drop its socket and retry. */
static void tcp_connect_failed(struct tcp_conn *c, int err)
{
    struct ev_loop *loop = c->w->loop;
    struct backend_rt *b = c->b;

    ev_timer_stop(loop, &c->timer);
    ev_io_stop(loop, &c->uio);
    close(c->ufd);
    c->ufd = -1;
    backend_release(c->p, b);
    c->b = NULL;
    if (!tcp_attempt_failed(c, b, err)) {
        tcp_close(c, CLOSE_NO_BACKEND);
        return;
    }
    tcp_connect_next(c);
}

static bool pipe_open(struct relay_dir *d, uint32_t want)
{
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
        return false;
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0)
        page = 4096;
    size_t size = ((size_t)want + (size_t)page - 1) / (size_t)page * (size_t)page;
    if (size > INT32_MAX)
        size = INT32_MAX;
    /* The kernel may refuse (pipe-max-size, per-user pipe quota): then the
     * pipe keeps whatever capacity it got, which still bounds memory. */
    int got = fcntl(fds[1], F_SETPIPE_SZ, (int)size);
    if (got < 0)
        got = fcntl(fds[1], F_GETPIPE_SZ);
    if (got <= 0) {
        close(fds[0]);
        close(fds[1]);
        return false;
    }
    d->pipe_rd = fds[0];
    d->pipe_wr = fds[1];
    d->pipe_cap = (uint32_t)got;
    return true;
}

/* Set up the relay storage: pipes for splice(2) when asked and possible,
 * else user-space buffers. Pipes cost two fds per direction, so under fd
 * pressure falling back keeps the connection alive. */
static bool tcp_relay_setup(struct tcp_conn *c)
{
    if (c->l->cfg->splice) {
        if (pipe_open(&c->up, c->cap) && pipe_open(&c->down, c->cap)) {
            c->splice = true;
            return true;
        }
        int err = errno;
        dir_release(&c->up);
        dir_release(&c->down);
        log_debug("tcp %s: no pipes (%s), relaying through buffers", c->l->cfg->name, strerror(err));
    }
    c->bufmem = malloc((size_t)c->cap * 2);
    if (!c->bufmem)
        return false;
    c->up.buf = c->bufmem;
    c->down.buf = c->bufmem + c->cap;
    return true;
}

static void tcp_update_interest(struct tcp_conn *c);

static void tcp_connected(struct tcp_conn *c)
{
    struct ev_loop *loop = c->w->loop;

    ev_timer_stop(loop, &c->timer);
    backend_report(c->w, c->p, c->b, true);
    ctr_add(&c->b->ctr->requests, 1);
    free(c->exclude);
    c->exclude = NULL;
    if (!tcp_relay_setup(c)) {
        log_warn("tcp %s: out of memory for relay buffers", c->l->cfg->name);
        tcp_close(c, CLOSE_SHUTDOWN);
        return;
    }
    c->state = TCP_RELAYING;
    c->last_active = ev_now(loop);
    if (c->l->cfg->timeouts.idle_ms)
        ev_timer_start(loop, &c->timer, c->l->cfg->timeouts.idle_ms);
    tcp_update_interest(c);
}

static void tcp_connect_event(struct tcp_conn *c, uint32_t ev)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->ufd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (!err && !(ev & EPOLLOUT))
        err = ECONNRESET; /* hung up without ever becoming writable */
    if (err)
        tcp_connect_failed(c, err);
    else
        tcp_connected(c);
}

/* ---- relaying ---- */

static uint32_t dir_pending(const struct relay_dir *d)
{
    return d->pipe_rd >= 0 ? d->in_pipe : d->len - d->off;
}

/* Backpressure: a side is read only while the other direction has room. */
static bool dir_can_read(const struct tcp_conn *c, const struct relay_dir *d)
{
    if (d->eof)
        return false;
    if (d->pipe_rd >= 0)
        return !d->pipe_full && d->in_pipe < d->pipe_cap;
    return d->len < c->cap || d->off > 0;
}

/* Read from src into d: >0 bytes, 0 at EOF, -1 with errno. */
static ssize_t dir_fill(struct tcp_conn *c, struct relay_dir *d, int src)
{
    ssize_t n;
    if (d->pipe_rd >= 0) {
        n = splice(src, NULL, d->pipe_wr, NULL, d->pipe_cap - d->in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0)
            d->in_pipe += (uint32_t)n;
        else if (n < 0 && errno == EAGAIN && d->in_pipe > 0)
            /* Either the socket is empty or the pipe ran out of slots
             * (each socket fragment takes one, however small). Assume the
             * latter until the pipe drains a bit; otherwise a level-
             * triggered EPOLLIN with a full pipe would spin. */
            d->pipe_full = true;
        return n;
    }
    if (d->off == d->len) {
        d->off = d->len = 0;
    } else if (d->len == c->cap) {
        memmove(d->buf, d->buf + d->off, d->len - d->off);
        d->len -= d->off;
        d->off = 0;
    }
    n = recv(src, d->buf + d->len, c->cap - d->len, 0);
    if (n > 0)
        d->len += (uint32_t)n;
    return n;
}

/* Write what d holds to dst: >0 bytes, -1 with errno. */
static ssize_t dir_flush(struct relay_dir *d, int dst)
{
    ssize_t n;
    if (d->pipe_rd >= 0) {
        n = splice(d->pipe_rd, NULL, dst, NULL, d->in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            d->in_pipe -= (uint32_t)n;
            d->pipe_full = false;
        }
        return n;
    }
    n = send(dst, d->buf + d->off, d->len - d->off, MSG_NOSIGNAL);
    if (n > 0)
        d->off += (uint32_t)n;
    return n;
}

static bool transient(int err)
{
    return err == EAGAIN || err == EWOULDBLOCK || err == EINTR;
}

enum pump_res { PUMP_OK, PUMP_SRC_ERR, PUMP_DST_ERR };

/* Move bytes src -> dst until neither side makes progress (or a few
 * rounds passed, for fairness). Reads only when try_read (the source was
 * reported readable); writes are optimistic. Passes EOF on once all bytes
 * before it are out. */
static enum pump_res dir_pump(struct tcp_conn *c, struct relay_dir *d, int src, int dst, bool try_read)
{
    bool from_backend = d == &c->down;
    struct backend_counters *bc = c->b->ctr;
    struct listener_counters *lc = c->l->ctr;

    for (int round = 0; round < PUMP_ROUNDS; round++) {
        bool progress = false;
        if (try_read && dir_can_read(c, d)) {
            ssize_t n = dir_fill(c, d, src);
            if (n > 0) {
                progress = true;
                ctr_add(from_backend ? &bc->bytes_received : &lc->bytes_received, (uint64_t)n);
            } else if (n == 0) {
                d->eof = true;
            } else if (!transient(errno)) {
                return PUMP_SRC_ERR;
            } else {
                try_read = false;
            }
        }
        if (dir_pending(d)) {
            ssize_t n = dir_flush(d, dst);
            if (n > 0) {
                progress = true;
                if (from_backend)
                    c->to_client += (uint64_t)n;
                ctr_add(from_backend ? &lc->bytes_sent : &bc->bytes_sent, (uint64_t)n);
            } else if (n < 0 && !transient(errno)) {
                return PUMP_DST_ERR;
            }
        }
        if (!progress)
            break;
        c->last_active = ev_now(c->w->loop);
    }
    if (d->eof && !d->shut && !dir_pending(d)) {
        shutdown(dst, SHUT_WR); /* may fail if dst is already gone: the next write tells */
        d->shut = true;
    }
    return PUMP_OK;
}

/* A socket that hung up keeps reporting EPOLLHUP whatever its interest:
 * when nothing is wanted from it, take it out of the epoll set instead of
 * setting an empty interest, or the level-triggered loop would spin. */
static void set_interest(struct ev_loop *loop, struct ev_io *io, uint32_t want, bool hup)
{
    if (!want && hup)
        ev_io_stop(loop, io);
    else
        ev_io_set(loop, io, want);
}

static void tcp_update_interest(struct tcp_conn *c)
{
    struct ev_loop *loop = c->w->loop;
    uint32_t cw = (dir_can_read(c, &c->up) ? EPOLLIN : 0) | (dir_pending(&c->down) ? EPOLLOUT : 0);
    uint32_t uw = (dir_can_read(c, &c->down) ? EPOLLIN : 0) | (dir_pending(&c->up) ? EPOLLOUT : 0);
    set_interest(loop, &c->cio, cw, c->client_hup);
    set_interest(loop, &c->uio, uw, c->backend_hup);
}

/* An event on one side of an established connection. */
static void tcp_relay_event(struct tcp_conn *c, uint32_t ev, bool on_client)
{
    if (ev & EPOLLERR) {
        tcp_close(c, on_client ? CLOSE_CLIENT_ERR : CLOSE_BACKEND_ERR);
        return;
    }
    if (ev & EPOLLHUP) {
        if (on_client)
            c->client_hup = true;
        else
            c->backend_hup = true;
    }
    /* The readable side feeds its direction; a writable side drains the
     * other one, and the room that frees is refilled optimistically. */
    bool readable = ev & (EPOLLIN | EPOLLHUP);
    struct relay_dir *in = on_client ? &c->up : &c->down;
    struct relay_dir *out = on_client ? &c->down : &c->up;
    int self = on_client ? c->cfd : c->ufd;
    int other = on_client ? c->ufd : c->cfd;
    enum close_why self_err = on_client ? CLOSE_CLIENT_ERR : CLOSE_BACKEND_ERR;
    enum close_why other_err = on_client ? CLOSE_BACKEND_ERR : CLOSE_CLIENT_ERR;

    if (readable) {
        enum pump_res r = dir_pump(c, in, self, other, true);
        if (r != PUMP_OK) {
            tcp_close(c, r == PUMP_SRC_ERR ? self_err : other_err);
            return;
        }
    }
    if (ev & EPOLLOUT) {
        enum pump_res r = dir_pump(c, out, other, self, true);
        if (r != PUMP_OK) {
            tcp_close(c, r == PUMP_SRC_ERR ? other_err : self_err);
            return;
        }
    }
    if (c->up.shut && c->down.shut) {
        tcp_close(c, CLOSE_DONE);
        return;
    }
    tcp_update_interest(c);
}

static void tcp_client_cb(struct ev_loop *loop, struct ev_io *io, uint32_t ev)
{
    struct tcp_conn *c = io->data;
    if (c->state == TCP_CONNECTING) {
        /* Only hang-ups are watched while connecting: the client left. */
        if (ev & (EPOLLERR | EPOLLHUP))
            tcp_close(c, CLOSE_CLIENT_ERR);
        return;
    }
    tcp_relay_event(c, ev, true);
}

static void tcp_backend_cb(struct ev_loop *loop, struct ev_io *io, uint32_t ev)
{
    struct tcp_conn *c = io->data;
    if (c->state == TCP_CONNECTING)
        tcp_connect_event(c, ev);
    else
        tcp_relay_event(c, ev, false);
}

static void tcp_timer_cb(struct ev_loop *loop, struct ev_timer *t)
{
    struct tcp_conn *c = t->data;
    if (c->state == TCP_CONNECTING) {
        ctr_add(&c->l->ctr->timeouts, 1); /* as HTTP counts its connect timeouts */
        tcp_connect_failed(c, ETIMEDOUT);
        return;
    }
    /* Activity only stamps last_active; the timer is pushed forward here,
     * lazily, rather than re-armed on every read. */
    uint64_t idle = c->l->cfg->timeouts.idle_ms;
    uint64_t now = ev_now(loop);
    if (now - c->last_active >= idle) {
        log_debug("tcp %s: idle timeout", c->l->cfg->name);
        tcp_close(c, CLOSE_IDLE);
        return;
    }
    ev_timer_start(loop, t, c->last_active + idle - now);
}

static void tcp_conn_start(struct listener_rt *l, int fd, const struct sockaddr_storage *ss)
{
    struct worker *w = l->w;
    struct tcp_conn *c = calloc(1, sizeof *c);
    if (!c) {
        log_warn("tcp %s: out of memory, dropping a client", l->cfg->name);
        close(fd);
        return;
    }
    c->w = w;
    c->l = l;
    c->p = &w->pools[l->cfg->default_pool];
    c->cfd = fd;
    c->ufd = -1;
    c->state = TCP_CONNECTING;
    c->cap = l->cfg->limits.buffer_size ? l->cfg->limits.buffer_size : DEFAULT_BUFFER;
    c->key_hash = pick_key(c->p, ss);
    c->started_us = now_us();
    c->peer = *ss;
    dir_init(&c->up);
    dir_init(&c->down);
    ev_io_init(&c->cio, fd, tcp_client_cb, c);
    ev_io_init(&c->uio, -1, tcp_backend_cb, c);
    ev_timer_init(&c->timer, tcp_timer_cb, c);
    set_nodelay(fd);

    struct tcp_listener *tl = tcp_listener_state(l);
    c->next = tl->conns;
    if (tl->conns)
        tl->conns->prev = c;
    tl->conns = c;
    client_opened(l);

    /* Registered with no interest: only a hang-up is reported while the
     * backend connect is in flight; the client's bytes wait in the kernel. */
    ev_io_set(w->loop, &c->cio, 0);
    tcp_connect_next(c);
}

static void tcp_accept(struct listener_rt *l)
{
    struct worker *w = l->w;
    if (!l->cfg->has_default_pool)
        return;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        if (w->draining || worker_at_limit(w, l))
            return;
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                continue;
            int err = errno;
            if (err == EMFILE || err == ENFILE)
                worker_accept_failed(l, err);
            else if (!transient(err) && warn_allowed(&warn_accept_at, ev_now(w->loop)))
                log_warn("tcp %s: accept: %s", l->cfg->name, strerror(err));
            return;
        }
        tcp_conn_start(l, fd, &ss);
    }
}

/* ======================================================================
 * UDP
 * ====================================================================== */

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
    log_stream(t->l, &s->client, "UDP", s->b, 200, s->to_client, s->started_us);
    udp_remove(t, s);
    ev_io_stop(loop, &s->io);
    close(s->fd);
    backend_release(t->p, s->b);
    client_closed(t->l);
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
    if (!local_error(err)) {
        ctr_add(&b->ctr->connect_failures, 1);
        backend_report(t->l->w, t->p, b, false);
    }
    if (warn_allowed(&t->warn_at, ev_now(t->l->w->loop)))
        log_warn("udp %s: cannot open a socket to %s: %s", t->l->cfg->name, b->cfg->addr.text, strerror(err));
    return -1;
}

static struct udp_session *udp_session_new(struct udp_table *t, const struct sockaddr_storage *ss,
                                           socklen_t len, const struct udp_key *k, uint64_t h)
{
    struct listener_rt *l = t->l;
    struct worker *w = l->w;
    int i = pool_pick(w, t->p, pick_key(t->p, ss), NULL);
    if (i < 0) {
        ctr_add(&l->ctr->no_backend, 1);
        if (warn_allowed(&t->warn_at, ev_now(w->loop)))
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
    s->started_us = now_us();
    ev_io_init(&s->io, s->fd, udp_session_cb, s);
    ev_io_set(w->loop, &s->io, EPOLLIN);
    udp_insert(t, s);

    backend_acquire(t->p, b);
    ctr_add(&b->ctr->requests, 1);
    client_opened(l);
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
    int i = pool_pick(w, t->p, pick_key(t->p, &s->client), NULL);
    if (i < 0 || &t->p->b[i] == s->b)
        return;
    struct backend_rt *b = &t->p->b[i];
    int fd = udp_open_backend(t, b);
    if (fd < 0)
        return;
    log_debug("udp %s: session moves from %s to %s", t->l->cfg->name, s->b->cfg->addr.text, b->cfg->addr.text);
    ev_io_stop(w->loop, &s->io);
    close(s->fd);
    backend_release(t->p, s->b);
    s->fd = fd;
    s->b = b;
    backend_acquire(t->p, b);
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

/* ======================================================================
 * The listeners' operations (proxy/proto.h)
 * ====================================================================== */

static int tcp_init(struct listener_rt *l, char *err, size_t errlen)
{
    l->proto_state = calloc(1, sizeof(struct tcp_listener));
    if (!l->proto_state) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static void tcp_shutdown(struct listener_rt *l)
{
    struct tcp_listener *tl = tcp_listener_state(l);
    while (tl->conns)
        tcp_close(tl->conns, CLOSE_SHUTDOWN);
}

static void tcp_fini(struct listener_rt *l)
{
    free(l->proto_state);
    l->proto_state = NULL;
}

/* Draining stops accepting (the worker closes the listening socket); open
 * connections run to their end. */
const struct proxy_proto_ops tcp_proto_ops = {
    .name = "tcp",
    .init = tcp_init,
    .accept = tcp_accept,
    .shutdown = tcp_shutdown,
    .fini = tcp_fini,
};

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
