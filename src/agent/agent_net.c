/* The agent's sockets: the UDP and TCP listeners, the queries that wait
 * (parked for a service's first list, or forwarded to an upstream), and
 * the TCP connections of clients. See agent_dns.h for what is answered.
 *
 * UDP: recvmmsg() takes a batch; each query is answered into its own
 * answer buffer and the immediate answers leave in one sendmmsg(). A
 * socket bound to a wildcard address keeps each datagram's destination
 * (IP_PKTINFO / IPV6_RECVPKTINFO) and answers from it, immediate and late
 * answers alike.
 *
 * A waiting query (struct pending) owns a copy of the client's message
 * and says where the answer goes: a UDP listener and the client's address,
 * or a TCP connection. Parked queries are tried again every PARK_POLL_MS
 * until their service has a list or first_wait passes. A forwarded query
 * has one socket at a time, new for each attempt (the kernel's random
 * ephemeral port) and connected to the upstream, so only that upstream's
 * datagrams reach it; the answer must also carry our random ID and the
 * query's question (agent_fwd_accept).
 *
 * TCP clients: several queries per connection; immediate answers are
 * written in order, forwarded ones when they come (RFC 7766 §7 allows
 * answers out of order). A connection has at most CONN_WAITING_MAX
 * queries waiting and reads nothing more until one is answered; a
 * connection closed with queries waiting is freed by the last of them.
 *
 * The sockets, the UDP batch, the TCP framing and a connection's life
 * (accept, buffers, idle timer) are core/dns_server's, shared with sluice
 * registry's DNS server; what is here is what only the agent does.
 */
#include "agent/agent_dns_priv.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/dns_server.h"
#include "core/log.h"

#define PARK_POLL_MS 10
#define CONN_WAITING_MAX 64
#define CONN_OUT_MAX (256 * 1024)
#define UDP_ROUNDS 8

struct tcp_conn {
    struct dns_tcp_conn t;        /* first: the list holds these */
    struct agent_dns *d;
    uint32_t waiting;             /* its queries parked or forwarded */
    bool busy;                    /* conn_process is running (a query may end at once and call it again) */
};

enum pending_kind { P_PARKED, P_FORWARD };

struct pending {
    struct agent_dns *d;
    enum pending_kind kind;
    /* the client */
    struct tcp_conn *conn;        /* NULL: a UDP client */
    struct udp_listener *ul;
    struct sockaddr_storage from;
    socklen_t from_len;
    uint8_t cmsg[DNS_CMSG_ROOM];
    size_t cmsg_len;
    uint8_t *msg;                 /* the client's query as received */
    size_t len;
    uint16_t client_id;
    uint64_t deadline;            /* parked: when to give up */
    /* forwarding */
    struct agent_fwd_expect expect;
    size_t upstream, tries;
    struct ev_io io;
    bool io_open;
    struct ev_timer timer;
    uint8_t *tbuf;                /* TCP to the upstream: the query out, then the answer in */
    size_t tlen, tcap, toff;
    bool treading;
    struct pending *prev, *next;
};

static void conn_process(struct tcp_conn *c);
static void conn_rearm(struct tcp_conn *c);
static void fwd_try(struct pending *p);

/* ---- sending answers ------------------------------------------------------ */

static void udp_send_one(struct agent_dns *d, struct udp_listener *ul, const struct sockaddr_storage *to,
                         socklen_t to_len, const uint8_t *cmsg, size_t cmsg_len, const uint8_t *buf, size_t n)
{
    if (dns_udp_send_one(ul->io.fd, to, to_len, cmsg, ul->pktinfo ? cmsg_len : 0, buf, n) < 0)
        d->stats.dropped++;
}

static void conn_free(void *p)
{
    struct tcp_conn *c = p;
    dns_tcp_conn_release(&c->t);
    free(c);
}

/* Queue an answer (with its length) on the connection. -1 out of memory. */
static int conn_queue(struct tcp_conn *c, const uint8_t *buf, size_t n)
{
    return dns_tcp_queue(&c->t.out, &c->t.out_off, &c->t.out_len, &c->t.out_cap, buf, n, true);
}

/* A connection closed with queries waiting is freed by the last of them. */
static void conn_close(struct tcp_conn *c)
{
    if (dns_tcp_conn_close(c->d->loop, &c->d->conns, &c->t) && c->waiting == 0)
        ev_defer_free(c->d->loop, c, conn_free);
}

/* Write what is queued: 1 all sent, 0 some left, -1 error. */
static int conn_flush(struct tcp_conn *c)
{
    bool wrote = false;
    return dns_tcp_flush(c->t.io.fd, c->t.out, &c->t.out_off, &c->t.out_len, &wrote);
}

/* The answer of a waiting query goes to its client. */
static void deliver(struct pending *p, const uint8_t *buf, size_t n)
{
    struct agent_dns *d = p->d;
    if (!p->conn) {
        udp_send_one(d, p->ul, &p->from, p->from_len, p->cmsg, p->cmsg_len, buf, n);
        return;
    }
    struct tcp_conn *c = p->conn;
    if (c->t.closed)
        return;
    if (conn_queue(c, buf, n) < 0 || conn_flush(c) < 0) {
        conn_close(c);
        return;
    }
}

static void deliver_servfail(struct pending *p)
{
    struct agent_dns *d = p->d;
    size_t n = agent_dns_servfail(d, p->msg, p->len, p->conn != NULL, d->out_buf, DNS_MSG_MAX);
    d->stats.servfail++;
    if (n)
        deliver(p, d->out_buf, n);
}

/* ---- waiting queries ---------------------------------------------------- */

static void fwd_close_socket(struct pending *p)
{
    if (!p->io_open)
        return;
    ev_io_stop(p->d->loop, &p->io);
    close(p->io.fd);
    p->io_open = false;
}

static void pending_release(void *arg)
{
    struct pending *p = arg;
    free(p->msg);
    free(p->tbuf);
    free(p);
}

/* Its memory goes after the current batch of events: one of them may
 * still name its socket. */
static void pending_free(struct pending *p)
{
    struct agent_dns *d = p->d;
    fwd_close_socket(p);
    ev_timer_stop(d->loop, &p->timer);
    if (p->prev)
        p->prev->next = p->next;
    else
        d->pending = p->next;
    if (p->next)
        p->next->prev = p->prev;
    d->n_pending--;
    struct tcp_conn *c = p->conn;
    if (d->loop)
        ev_defer_free(d->loop, p, pending_release);
    else
        pending_release(p);
    if (c) {
        c->waiting--;
        if (c->t.closed) {
            if (c->waiting == 0)
                ev_defer_free(d->loop, c, conn_free);
        } else if (!c->busy) {
            conn_process(c);   /* it may read again */
            conn_rearm(c);
        }
    }
}

/* A waiting query from a UDP client (ul, from, cmsg) or a TCP one (c). */
static struct pending *pending_new(struct agent_dns *d, enum pending_kind kind, const uint8_t *msg, size_t len,
                                   struct udp_listener *ul, const struct msghdr *h, struct tcp_conn *c)
{
    struct pending *p = calloc(1, sizeof *p);
    uint8_t *copy = malloc(len);
    if (!p || !copy) {
        free(p);
        free(copy);
        return NULL;
    }
    memcpy(copy, msg, len);
    p->d = d;
    p->kind = kind;
    p->msg = copy;
    p->len = len;
    p->client_id = (uint16_t)(msg[0] << 8 | msg[1]);
    if (c) {
        p->conn = c;
        c->waiting++;
    } else {
        p->ul = ul;
        memcpy(&p->from, h->msg_name, h->msg_namelen);
        p->from_len = h->msg_namelen;
        if (ul->pktinfo && h->msg_controllen <= sizeof p->cmsg) {
            memcpy(p->cmsg, h->msg_control, h->msg_controllen);
            p->cmsg_len = h->msg_controllen;
        }
    }
    ev_timer_init(&p->timer, NULL, p);
    p->next = d->pending;
    if (d->pending)
        d->pending->prev = p;
    d->pending = p;
    d->n_pending++;
    return p;
}

/* Parked queries: answered once their service has a list, SERVFAIL once
 * first_wait has passed. */
static void park_poll(struct ev_loop *loop, struct ev_timer *t)
{
    struct agent_dns *d = t->data;
    uint64_t now = ev_now(loop);
    bool any = false;
    struct pending *next;
    for (struct pending *p = d->pending; p; p = next) {
        next = p->next;
        if (p->kind != P_PARKED)
            continue;
        size_t n = 0;
        enum agent_action act = agent_dns_answer(d, p->msg, p->len, p->conn != NULL, d->out_buf, DNS_MSG_MAX, &n);
        if (act == AGENT_ACT_ANSWER) {
            agent_count_kind(d, d->kind);
            deliver(p, d->out_buf, n);
        } else if (act == AGENT_ACT_WAIT && now < p->deadline) {
            any = true;
            continue;
        } else if (act == AGENT_ACT_WAIT) {
            deliver_servfail(p);
        }
        next = p->next;
        pending_free(p);
    }
    if (any)
        ev_timer_start(loop, t, PARK_POLL_MS);
}

/* ---- forwarding ---------------------------------------------------------- */

static void fwd_failed(struct pending *p)
{
    p->d->stats.upstream_failures[p->upstream]++;
    fwd_close_socket(p);
    ev_timer_stop(p->d->loop, &p->timer);
    fwd_try(p);
}

static void fwd_answered(struct pending *p, uint8_t *resp, size_t n)
{
    struct agent_dns *d = p->d;
    d->preferred = p->upstream;
    d->stats.forwarded++;
    deliver(p, resp, n);
    pending_free(p);
}

static void fwd_timeout(struct ev_loop *loop, struct ev_timer *t)
{
    struct pending *p = t->data;
    log_debug("agent: upstream %s did not answer within %u ms", p->d->conf.upstreams[p->upstream].text,
              p->d->conf.upstream_timeout_ms);
    fwd_failed(p);
}

static void fwd_udp_cb(struct ev_loop *loop, struct ev_io *io, uint32_t revents)
{
    struct pending *p = io->data;
    struct agent_dns *d = p->d;
    for (int i = 0; i < 16; i++) {
        ssize_t n = recv(io->fd, d->out_buf, DNS_MSG_MAX, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return;
            log_debug("agent: upstream %s: %s", d->conf.upstreams[p->upstream].text, strerror(errno));
            fwd_failed(p);   /* ECONNREFUSED: nothing listens there */
            return;
        }
        if (agent_fwd_accept(&p->expect, d->out_buf, (size_t)n, p->client_id)) {
            fwd_answered(p, d->out_buf, (size_t)n);
            return;
        }
        d->stats.upstream_ignored++;
    }
}

/* TCP to the upstream: write the query, then read the two-byte length and
 * the answer. */
static void fwd_tcp_cb(struct ev_loop *loop, struct ev_io *io, uint32_t revents)
{
    struct pending *p = io->data;
    if (!p->treading) {
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr) {
            fwd_failed(p);
            return;
        }
        while (p->toff < p->tlen) {
            ssize_t n = write(io->fd, p->tbuf + p->toff, p->tlen - p->toff);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
                return;
            if (n <= 0) {
                fwd_failed(p);
                return;
            }
            p->toff += (size_t)n;
        }
        p->treading = true;
        p->tlen = p->toff = 0;
        ev_io_set(loop, io, EPOLLIN);
        return;
    }
    for (;;) {
        size_t want = p->tlen < 2 ? 2 : 2 + ((size_t)p->tbuf[0] << 8 | p->tbuf[1]);
        if (want > p->tcap) {
            uint8_t *b = realloc(p->tbuf, want);
            if (!b) {
                fwd_failed(p);
                return;
            }
            p->tbuf = b;
            p->tcap = want;
        }
        if (p->tlen == want && want > 2)
            break;
        ssize_t n = read(io->fd, p->tbuf + p->tlen, want - p->tlen);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        if (n <= 0) {
            fwd_failed(p);
            return;
        }
        p->tlen += (size_t)n;
    }
    if (agent_fwd_accept(&p->expect, p->tbuf + 2, p->tlen - 2, p->client_id)) {
        fwd_answered(p, p->tbuf + 2, p->tlen - 2);
        return;
    }
    p->d->stats.upstream_ignored++;
    fwd_failed(p);   /* a connection of our own answered something else: try the next */
}

/* One attempt at the next upstream; SERVFAIL once each has been tried. */
static void fwd_try(struct pending *p)
{
    struct agent_dns *d = p->d;
    size_t n_up = d->conf.n_upstreams;
    for (; p->tries < n_up; p->tries++) {
        size_t u = (d->preferred + p->tries) % n_up;
        const struct sl_addr *up = &d->conf.upstreams[u];
        p->upstream = u;
        uint16_t id = (uint16_t)agent_rand(d);
        p->expect.id = id;
        bool tcp = p->conn != NULL;
        int fd = socket(up->ss.ss_family, (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            d->stats.upstream_failures[u]++;
            continue;
        }
        if (tcp) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        if (connect(fd, (const struct sockaddr *)&up->ss, up->len) < 0 && errno != EINPROGRESS) {
            close(fd);
            d->stats.upstream_failures[u]++;
            continue;
        }
        if (tcp) {
            size_t need = 2 + p->len;
            if (need > p->tcap) {
                uint8_t *b = realloc(p->tbuf, need);
                if (!b) {
                    close(fd);
                    break;
                }
                p->tbuf = b;
                p->tcap = need;
            }
            p->tbuf[0] = (uint8_t)(p->len >> 8);
            p->tbuf[1] = (uint8_t)p->len;
            memcpy(p->tbuf + 2, p->msg, p->len);
            p->tbuf[2] = (uint8_t)(id >> 8);
            p->tbuf[3] = (uint8_t)id;
            p->tlen = need;
            p->toff = 0;
            p->treading = false;
            ev_io_init(&p->io, fd, fwd_tcp_cb, p);
            ev_io_set(d->loop, &p->io, EPOLLOUT);
        } else {
            uint8_t *q = d->out_buf;
            memcpy(q, p->msg, p->len);
            q[0] = (uint8_t)(id >> 8);
            q[1] = (uint8_t)id;
            if (send(fd, q, p->len, MSG_DONTWAIT) != (ssize_t)p->len) {
                close(fd);
                d->stats.upstream_failures[u]++;
                continue;
            }
            ev_io_init(&p->io, fd, fwd_udp_cb, p);
            ev_io_set(d->loop, &p->io, EPOLLIN);
        }
        p->io_open = true;
        p->tries++;
        ev_timer_init(&p->timer, fwd_timeout, p);
        ev_timer_start(d->loop, &p->timer, d->conf.upstream_timeout_ms);
        return;
    }
    log_debug("agent: every upstream failed for a forwarded query: SERVFAIL");
    deliver_servfail(p);
    pending_free(p);
}

/* ---- one query from a client --------------------------------------------- */

/* Handle msg from a UDP client (ul, h) or a TCP one (c). Returns the
 * length of an immediate answer in resp, or 0. */
static size_t handle_query(struct agent_dns *d, const uint8_t *msg, size_t len, struct udp_listener *ul,
                           const struct msghdr *h, struct tcp_conn *c, uint8_t *resp, size_t cap)
{
    bool tcp = c != NULL;
    size_t n = 0;
    enum agent_action act = agent_dns_answer(d, msg, len, tcp, resp, cap, &n);
    switch (act) {
    case AGENT_ACT_ANSWER:
        agent_count_kind(d, d->kind);
        return n;
    case AGENT_ACT_DROP:
        d->stats.dropped++;
        return 0;
    case AGENT_ACT_WAIT:
    case AGENT_ACT_FORWARD:
        break;
    }
    bool fwd = act == AGENT_ACT_FORWARD;
    if (d->n_pending >= d->conf.max_outstanding || (fwd && d->conf.n_upstreams == 0) ||
        (!fwd && d->conf.first_wait_ms == 0)) {
        if (d->n_pending >= d->conf.max_outstanding)
            d->stats.outstanding_full++;
        d->stats.servfail++;
        return agent_dns_servfail(d, msg, len, tcp, resp, cap);
    }
    struct pending *p = pending_new(d, fwd ? P_FORWARD : P_PARKED, msg, len, ul, h, c);
    if (!p) {
        d->stats.servfail++;
        return agent_dns_servfail(d, msg, len, tcp, resp, cap);
    }
    if (fwd) {
        /* the question, for matching the upstream's answer */
        struct dns_question rq;
        dns_read_question(msg, len, &rq);
        p->expect.qname = rq.qname;
        p->expect.qtype = rq.qtype;
        p->expect.qclass = rq.qclass;
        fwd_try(p);
        return 0;
    }
    d->stats.parked++;
    p->deadline = ev_now(d->loop) + d->conf.first_wait_ms;
    if (!ev_timer_active(&d->park_timer))
        ev_timer_start(d->loop, &d->park_timer, PARK_POLL_MS);
    return 0;
}

/* ---- UDP ------------------------------------------------------------------ */

static void udp_cb(struct ev_loop *loop, struct ev_io *io, uint32_t revents)
{
    struct udp_listener *ul = io->data;
    struct agent_dns *d = ul->d;
    struct dns_udp_batch *b = &d->batch;
    /* Answers go to buffers of their own: a query may wait (parked or
     * forwarded) and is then copied from its receive buffer. */
    uint8_t *tx = d->udp_bufs + AGENT_UDP_BATCH * AGENT_UDP_BUF;
    for (int round = 0; round < UDP_ROUNDS; round++) {
        unsigned got = dns_udp_batch_recv(b, io->fd, ul->pktinfo);
        if (got == 0)
            return;
        for (unsigned i = 0; i < got; i++) {
            const struct msghdr *h = &b->rmsg[i].msg_hdr;
            d->stats.queries_udp++;
            if (h->msg_flags & MSG_TRUNC) {
                d->stats.dropped++;
                continue;
            }
            uint8_t *resp = tx + (size_t)b->n_out * AGENT_UDP_BUF;
            size_t n = handle_query(d, b->bufs + (size_t)i * AGENT_UDP_BUF, b->rmsg[i].msg_len, ul, h, NULL, resp,
                                    AGENT_UDP_BUF);
            if (n)
                dns_udp_batch_reply(b, i, resp, n, ul->pktinfo);
        }
        d->stats.dropped += dns_udp_batch_send(b, io->fd);
    }
}

/* ---- TCP clients ----------------------------------------------------------- */

static void idle_cb(struct ev_loop *loop, struct ev_timer *t)
{
    struct tcp_conn *c = t->data;
    if (c->waiting) {
        ev_timer_start(loop, t, c->d->conf.tcp_idle_ms);   /* its answers are on their way */
        return;
    }
    conn_close(c);
}

/* Answer the complete messages read, while the connection may have more
 * queries waiting and its output is not too large. */
static void conn_process(struct tcp_conn *c)
{
    struct agent_dns *d = c->d;
    if (c->busy)
        return;
    c->busy = true;
    size_t pos = 0, mlen;
    while (!c->t.closed && c->waiting < CONN_WAITING_MAX && c->t.out_len < CONN_OUT_MAX &&
           dns_tcp_message(c->t.in, c->t.in_len, pos, &mlen)) {
        d->stats.queries_tcp++;
        size_t n = handle_query(d, c->t.in + pos + 2, mlen, NULL, NULL, c, d->out_buf, DNS_MSG_MAX);
        pos += 2 + mlen;
        if (n && conn_queue(c, d->out_buf, n) < 0)
            conn_close(c);
    }
    c->busy = false;
    if (c->t.closed)
        return;
    dns_tcp_consume(c->t.in, &c->t.in_len, pos);
    if (c->t.out_len > c->t.out_off && conn_flush(c) < 0)
        conn_close(c);
}

static void conn_rearm(struct tcp_conn *c)
{
    if (c->t.closed)
        return;
    if (c->t.out_len > c->t.out_off) {
        ev_io_set(c->d->loop, &c->t.io, EPOLLOUT);
        return;
    }
    if (c->t.eof) {
        if (c->waiting == 0)
            conn_close(c);   /* everything complete is answered; a partial message is dropped */
        else
            ev_io_set(c->d->loop, &c->t.io, 0);
        return;
    }
    ev_io_set(c->d->loop, &c->t.io, c->waiting < CONN_WAITING_MAX ? EPOLLIN : 0);
}

static void conn_cb(struct ev_loop *loop, struct ev_io *io, uint32_t revents)
{
    struct tcp_conn *c = io->data;
    if (c->t.closed)
        return;
    if (c->t.eof && (revents & (EPOLLHUP | EPOLLERR))) {
        conn_close(c);   /* gone both ways: its answers have nowhere to go (and HUP would fire again) */
        return;
    }
    if (c->t.out_len > c->t.out_off) {
        int f = conn_flush(c);
        if (f < 0) {
            conn_close(c);
            return;
        }
        if (f == 0) {
            conn_rearm(c);
            return;
        }
    } else if ((revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) &&
               dns_tcp_conn_read(c->d->loop, &c->t, c->d->conf.tcp_idle_ms) < 0) {
        conn_close(c);
        return;
    }
    conn_process(c);
    conn_rearm(c);
}

static void conn_new(struct agent_dns *d, int fd, const struct sockaddr_storage *peer)
{
    struct tcp_conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->d = d;
    if (dns_tcp_conn_open(d->loop, &d->conns, &c->t, fd, peer, conn_cb, idle_cb, c, d->conf.tcp_idle_ms) < 0) {
        free(c);
        return;
    }
    d->stats.tcp_accepted++;
}

static void accepted(void *arg, int fd, const struct sockaddr_storage *peer)
{
    struct agent_dns *d = arg;
    if (d->conns.n >= d->conf.tcp_max_conns) {
        close(fd);
        d->stats.dropped++;
        return;
    }
    conn_new(d, fd, peer);
}

static void accept_cb(struct ev_loop *loop, struct ev_io *io, uint32_t revents)
{
    struct tcp_listener *l = io->data;
    dns_tcp_accept(loop, io, &l->pause, "agent", accepted, l->d);
}

static void accept_resume(struct ev_loop *loop, struct ev_timer *t)
{
    struct tcp_listener *l = t->data;
    dns_tcp_accept_resume(loop, &l->io);
}

/* ---- sockets -------------------------------------------------------------------- */

int agent_net_start(struct agent_dns *d, char *err, size_t errlen)
{
    dns_udp_batch_init(&d->batch, d->udp_bufs, AGENT_UDP_BUF);
    ev_timer_init(&d->park_timer, park_poll, d);
    for (size_t i = 0; i < d->conf.n_listen; i++) {
        int ufd, tfd;
        if (dns_listen_open("agent", &d->conf.listen[i], &ufd, &tfd, &d->bound[i], err, errlen) < 0)
            return -1;
        d->udp[i] = (struct udp_listener){ .d = d, .pktinfo = dns_addr_is_wildcard(&d->bound[i]) };
        ev_io_init(&d->udp[i].io, ufd, udp_cb, &d->udp[i]);
        ev_io_set(d->loop, &d->udp[i].io, EPOLLIN);
        d->tcp[i] = (struct tcp_listener){ .d = d };
        ev_io_init(&d->tcp[i].io, tfd, accept_cb, &d->tcp[i]);
        ev_timer_init(&d->tcp[i].pause, accept_resume, &d->tcp[i]);
        ev_io_set(d->loop, &d->tcp[i].io, EPOLLIN);
        d->n_listen = i + 1;
    }
    return 0;
}

void agent_net_stop(struct agent_dns *d)
{
    /* Connections first: a query that ends must not make one read more. */
    while (d->conns.head)
        conn_close((struct tcp_conn *)d->conns.head);   /* t is its first member */
    while (d->pending)
        pending_free(d->pending);
    if (d->loop)
        ev_timer_stop(d->loop, &d->park_timer);
    for (size_t i = 0; i < d->n_listen; i++) {
        ev_io_stop(d->loop, &d->udp[i].io);
        close(d->udp[i].io.fd);
        ev_io_stop(d->loop, &d->tcp[i].io);
        ev_timer_stop(d->loop, &d->tcp[i].pause);
        close(d->tcp[i].io.fd);
    }
    d->n_listen = 0;
}
