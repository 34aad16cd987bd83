/* TCP stream proxying: see stream.h. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "proxy/pool.h"
#include "proxy/proto.h"
#include "proxy/proxy_protocol.h"
#include "proxy/ratelimit_http.h"
#include "proxy/stream.h"
#include "proxy/tls.h"
#include "proxy/transport.h"

#define ACCEPT_BATCH 64       /* accepts per readiness event, so one busy listener cannot starve the loop */
#define PUMP_ROUNDS 8         /* read/write rounds per direction per event */
#define DEFAULT_BUFFER 16384

static void set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* A TLS listener's connection starts in TCP_HANDSHAKE: the backend is
 * connected to only once the client has finished its handshake, so that
 * scanners and broken clients never reach a backend. */
enum tcp_state { TCP_HANDSHAKE, TCP_CONNECTING, TCP_RELAYING };

enum close_why {
    CLOSE_DONE,         /* both directions finished */
    CLOSE_CLIENT_ERR,   /* reset or error on the client side */
    CLOSE_BACKEND_ERR,  /* reset or error on the backend side */
    CLOSE_IDLE,         /* timeouts.idle_ms without traffic */
    CLOSE_NO_BACKEND,   /* nothing to connect to */
    CLOSE_SHUTDOWN,     /* worker exit */
    CLOSE_TLS_FAILED,   /* the client's TLS handshake failed or timed out: counted, not logged */
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
    struct transport client;       /* the client's socket */
    struct transport backend;      /* the backend's; closed (fd -1) between connect attempts */
    enum tcp_state state;
    bool splice;
    bool closed;
    bool client_hup, backend_hup;  /* the socket reported EPOLLHUP (permanent) */
    bool backend_tcp_up;           /* this attempt's connect() finished (a TLS pool then shakes hands) */
    struct ev_slow hs_slow;        /* the client's next handshake step, behind ready sockets */
    uint32_t attempts;
    struct backend_rt *failed;     /* the backend the next attempt retries away from */
    uint8_t *exclude;              /* backends that failed this connection; lazily allocated */
    uint64_t key_hash;
    uint64_t last_active;
    uint32_t cap;                  /* bytes per direction */
    uint64_t to_client;            /* bytes relayed to the client, for the access log */
    uint64_t started_us;
    uint64_t connect_start_us;     /* this attempt's connect() began (stream_now_us) */
    struct sockaddr_storage peer;  /* the client */
    struct conn_origin origin;     /* the client (after a PROXY header) and the address it came to */
    char *bufmem;                  /* both directions' buffers, one allocation */
    struct relay_dir up;           /* client -> backend */
    struct relay_dir down;         /* backend -> client */
    struct rl_hold rl_hold;        /* its place in the listener's connection_limit (proxy/ratelimit.h) */
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
    case CLOSE_TLS_FAILED: return 0;
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
    ev_slow_stop(loop, &c->hs_slow);
    /* Logged before the transport goes: the line has its TLS details. A
     * connection that never got past its TLS handshake is a metric
     * (sluice_tls_handshake_failures_total), not a line: HTTP logs
     * requests, and it made none. */
    if (why != CLOSE_TLS_FAILED) {
        stream_log(c->l, &c->peer, "TCP", c->b ? c->b : c->failed, tcp_log_status(c, why), c->to_client,
                   c->started_us, &c->client);
        latency_observe(&c->l->ctr->connection_time, stream_now_us() - c->started_us);
    }
    /* A connection that broke on one side is reset on both, so that each
     * peer learns that its stream was cut short. */
    ev_io_stop(loop, &c->cio);
    transport_close(&c->client, reset);
    if (transport_open(&c->backend)) {
        ev_io_stop(loop, &c->uio);
        transport_close(&c->backend, reset);
    }
    if (c->b) {
        if (why == CLOSE_BACKEND_ERR)
            ctr_add(&c->b->ctr->upstream_errors, 1);
        stream_backend_release(c->p, c->b);
    }
    if (why == CLOSE_IDLE)
        ctr_add(&c->l->ctr->timeouts, 1);
    dir_release(&c->up);
    dir_release(&c->down);
    free(c->bufmem);
    free(c->exclude);
    tcp_unlink(c);
    ratelimit_conn_release(&c->rl_hold);
    stream_client_closed(c->l);
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
            if (stream_warn_allowed(&warn_nobackend_at, ev_now(loop)))
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
            if (stream_local_error(err)) {
                if (stream_warn_allowed(&warn_local_at, ev_now(loop)))
                    log_warn("tcp %s: cannot open a backend socket: %s", c->l->cfg->name, strerror(err));
                break;
            }
            /* Refused on the spot (possible on loopback): same as a late refusal. */
            if (!tcp_attempt_failed(c, b, err))
                break;
            continue;
        }
        if (pool_upstream_transport(p, b, &c->backend, fd) < 0) {
            close(fd);
            if (stream_warn_allowed(&warn_local_at, ev_now(loop)))
                log_warn("tcp %s: cannot set up TLS to %s", c->l->cfg->name, b->cfg->addr.text);
            break;
        }
        c->b = b;
        c->backend_tcp_up = false;
        c->connect_start_us = stream_now_us();
        stream_backend_acquire(p, b);
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
    transport_close(&c->backend, false);
    stream_backend_release(c->p, b);
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
 * else user-space buffers. Splicing moves bytes socket to socket past the
 * transports, so both must be ones that add nothing to the stream (plain,
 * not TLS). Pipes cost two fds per direction, so under fd pressure falling
 * back keeps the connection alive. */
static bool tcp_relay_setup(struct tcp_conn *c)
{
    if (c->l->cfg->splice && transport_can_splice(&c->client) && transport_can_splice(&c->backend)) {
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

/* TCP_CONNECTING: the connect, then for a TLS pool the handshake with
 * the backend, both within timeouts.connect; a handshake that fails is a
 * failed attempt like a refused connect (the next backend is tried). */
static void tcp_connect_event(struct tcp_conn *c, uint32_t ev)
{
    if (!c->backend_tcp_up) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->backend.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (!err && !(ev & EPOLLOUT))
            err = ECONNRESET; /* hung up without ever becoming writable */
        if (err) {
            tcp_connect_failed(c, err);
            return;
        }
        c->backend_tcp_up = true;
        latency_observe(&c->b->ctr->connect_time, stream_now_us() - c->connect_start_us);
        struct pp_client_info ci = {.origin = &c->origin, .client_tr = &c->client};
        if (pp_send_to_backend(c->p->cfg->send_proxy, c->backend.fd, &ci) < 0) {
            tcp_connect_failed(c, errno);
            return;
        }
    }
    if (transport_is_tls(&c->backend)) {
        int r = transport_tls_handshake(&c->backend);
        if (r == 0) {
            ev_io_set(c->w->loop, &c->uio, transport_events(&c->backend, EPOLLOUT));
            return;
        }
        if (r < 0) {
            log_debug("tcp %s: TLS handshake with %s failed: %s", c->l->cfg->name, c->b->cfg->addr.text,
                      transport_tls_handshake_error(&c->backend));
            tcp_connect_failed(c, EPROTO);
            return;
        }
    }
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
static ssize_t dir_fill(struct tcp_conn *c, struct relay_dir *d, struct transport *src)
{
    ssize_t n;
    if (d->pipe_rd >= 0) {
        n = splice(src->fd, NULL, d->pipe_wr, NULL, d->pipe_cap - d->in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
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
    n = transport_recv(src, d->buf + d->len, c->cap - d->len);
    if (n > 0)
        d->len += (uint32_t)n;
    return n;
}

/* Write what d holds to dst: >0 bytes, -1 with errno. */
static ssize_t dir_flush(struct relay_dir *d, struct transport *dst)
{
    ssize_t n;
    if (d->pipe_rd >= 0) {
        n = splice(d->pipe_rd, NULL, dst->fd, NULL, d->in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            d->in_pipe -= (uint32_t)n;
            d->pipe_full = false;
        }
        return n;
    }
    n = transport_send1(dst, d->buf + d->off, d->len - d->off);
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
static enum pump_res dir_pump(struct tcp_conn *c, struct relay_dir *d, struct transport *src, struct transport *dst,
                              bool try_read)
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
        transport_shutdown(dst); /* may fail if dst is already gone: the next write tells */
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
    set_interest(loop, &c->cio, transport_events(&c->client, cw), c->client_hup);
    set_interest(loop, &c->uio, transport_events(&c->backend, uw), c->backend_hup);
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
    struct transport *self = on_client ? &c->client : &c->backend;
    struct transport *other = on_client ? &c->backend : &c->client;
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

/* TCP_HANDSHAKE: drive the client's TLS handshake; once it is done,
 * connect to a backend (the client's bytes wait in TLS and the kernel). */
static void tcp_handshake_event(struct tcp_conn *c)
{
    int r = transport_tls_handshake(&c->client);
    if (r < 0) {
        tcp_close(c, CLOSE_TLS_FAILED);
        return;
    }
    if (r == 0) {
        ev_io_set(c->w->loop, &c->cio, transport_events(&c->client, EPOLLIN));
        return;
    }
    ev_timer_stop(c->w->loop, &c->timer);
    c->state = TCP_CONNECTING;
    ev_io_set(c->w->loop, &c->cio, 0);
    tcp_connect_next(c);
}

static void tcp_handshake_turn(struct ev_loop *loop, struct ev_slow *s)
{
    tcp_handshake_event(s->data);
}

static void tcp_client_cb(struct ev_loop *loop, struct ev_io *io, uint32_t ev)
{
    struct tcp_conn *c = io->data;
    if (c->state == TCP_HANDSHAKE) {
        /* As on HTTP listeners (http_conn.c): the costly step waits
         * behind the sockets that are ready. */
        ev_io_stop(loop, &c->cio);
        ev_slow_start(loop, &c->hs_slow);
        return;
    }
    if (c->state == TCP_CONNECTING) {
        /* Only hang-ups are watched while connecting: the client left. */
        if (ev & (EPOLLERR | EPOLLHUP))
            tcp_close(c, CLOSE_CLIENT_ERR);
        return;
    }
    tcp_relay_event(c, transport_ready(&c->client, ev), true);
}

static void tcp_backend_cb(struct ev_loop *loop, struct ev_io *io, uint32_t ev)
{
    struct tcp_conn *c = io->data;
    if (c->state == TCP_CONNECTING)
        tcp_connect_event(c, ev);
    else
        tcp_relay_event(c, transport_ready(&c->backend, ev), false);
}

static void tcp_timer_cb(struct ev_loop *loop, struct ev_timer *t)
{
    struct tcp_conn *c = t->data;
    if (c->state == TCP_HANDSHAKE) {
        transport_tls_handshake_timed_out(&c->client);
        tcp_close(c, CLOSE_TLS_FAILED);
        return;
    }
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

/* The listener's connection_limit, by the client's address as text (as
 * HTTP listeners key it). */
static bool tcp_conn_admit(struct listener_rt *l, const struct sockaddr_storage *ss, struct rl_hold *hold)
{
    char ip[INET6_ADDRSTRLEN];
    addr_ip_string((const struct sockaddr *)ss, ip, sizeof ip);
    const char *key = ip;
    if (ss->ss_family == AF_INET6 && strncmp(ip, "::ffff:", 7) == 0)
        key = ip + 7;
    return ratelimit_conn_admit(l, key, hold);
}

/* The rest of the accept, once the client is known (proxy_protocol.h). */
static void tcp_conn_start(struct listener_rt *l, int fd, const struct conn_origin *o)
{
    const struct sockaddr_storage *ss = &o->client;
    struct worker *w = l->w;
    struct rl_hold hold = { 0 };
    if (l->cfg->conn_limit.max && !tcp_conn_admit(l, ss, &hold)) {
        close(fd);
        return;
    }
    struct tcp_conn *c = calloc(1, sizeof *c);
    if (!c) {
        log_warn("tcp %s: out of memory, dropping a client", l->cfg->name);
        ratelimit_conn_release(&hold);
        close(fd);
        return;
    }
    c->rl_hold = hold;
    c->w = w;
    c->l = l;
    c->p = &w->pools[l->cfg->default_pool];
    if (!l->tls) {
        transport_plain(&c->client, fd);
    } else if (transport_tls_server(&c->client, fd, l->tls) < 0) {
        log_warn("tcp %s: out of memory, dropping a client", l->cfg->name);
        ratelimit_conn_release(&c->rl_hold);
        close(fd);
        free(c);
        return;
    }
    transport_plain(&c->backend, -1);
    c->state = l->tls ? TCP_HANDSHAKE : TCP_CONNECTING;
    c->cap = l->cfg->limits.buffer_size ? l->cfg->limits.buffer_size : DEFAULT_BUFFER;
    c->key_hash = stream_pick_key(c->p, ss);
    c->started_us = stream_now_us();
    c->peer = *ss;
    c->origin = *o;
    dir_init(&c->up);
    dir_init(&c->down);
    ev_io_init(&c->cio, fd, tcp_client_cb, c);
    ev_io_init(&c->uio, -1, tcp_backend_cb, c);
    ev_timer_init(&c->timer, tcp_timer_cb, c);
    ev_slow_init(&c->hs_slow, tcp_handshake_turn, c);
    set_nodelay(fd);

    struct tcp_listener *tl = tcp_listener_state(l);
    c->next = tl->conns;
    if (tl->conns)
        tl->conns->prev = c;
    tl->conns = c;
    stream_client_opened(l);

    if (l->tls) {
        ev_io_set(w->loop, &c->cio, transport_events(&c->client, EPOLLIN));
        ev_timer_start(w->loop, &c->timer, l->cfg->tls->handshake_timeout_ms);
        return;
    }
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
            else if (!transient(err) && stream_warn_allowed(&warn_accept_at, ev_now(w->loop)))
                log_warn("tcp %s: accept: %s", l->cfg->name, strerror(err));
            return;
        }
        pp_accept(l, fd, &ss, tcp_conn_start);
    }
}

/* ---- the listener's operations (proxy/proto.h) ---- */

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
