/* See dns_server.h. */
#include "core/dns_server.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

#define OPEN_PAIR_ATTEMPTS 20     /* port 0: tries at finding a port free for both UDP and TCP */
#define TCP_OUT_INITIAL 4096
#define TCP_IN_INITIAL 4096       /* most queries fit; a larger one grows it */
#define ACCEPT_BATCH 16
#define ACCEPT_PAUSE_MS 100

/* ---- listeners ------------------------------------------------------------ */

bool dns_addr_is_wildcard(const struct sl_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr == htonl(INADDR_ANY);
    return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
}

static int open_socket(const char *who, const struct sl_addr *a, int type, char *err, size_t errlen)
{
    const char *what = type == SOCK_DGRAM ? "udp" : "tcp";
    int fd = socket(a->ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "%s listener %s (%s): socket: %s", who, a->text, what, strerror(errno));
        return -1;
    }
    int one = 1;
    if (type == SOCK_STREAM)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (a->ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);   /* [::] is not 0.0.0.0 too */
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 || (type == SOCK_STREAM && listen(fd, 511) < 0)) {
        snprintf(err, errlen, "%s listener %s (%s): %s", who, a->text, what, strerror(errno));
        close(fd);
        return -1;
    }
    if (type == SOCK_DGRAM && dns_addr_is_wildcard(a)) {
        if (a->ss.ss_family == AF_INET)
            setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one);
        else
            setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one);
    }
    return fd;
}

int dns_listen_open(const char *who, const struct sl_addr *want, int *udp_fd, int *tcp_fd, struct sl_addr *bound,
                    char *err, size_t errlen)
{
    bool any_port = addr_port(want) == 0;
    for (int attempt = 0; attempt < (any_port ? OPEN_PAIR_ATTEMPTS : 1); attempt++) {
        *udp_fd = open_socket(who, want, SOCK_DGRAM, err, errlen);
        if (*udp_fd < 0)
            return -1;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        if (getsockname(*udp_fd, (struct sockaddr *)&ss, &sl) < 0) {
            snprintf(err, errlen, "%s listener %s: getsockname: %s", who, want->text, strerror(errno));
            close(*udp_fd);
            return -1;
        }
        addr_from_sockaddr(bound, (struct sockaddr *)&ss, sl);
        *tcp_fd = open_socket(who, bound, SOCK_STREAM, err, errlen);
        if (*tcp_fd >= 0)
            return 0;
        close(*udp_fd);
    }
    return -1;
}

/* ---- UDP ------------------------------------------------------------------ */

void dns_udp_batch_init(struct dns_udp_batch *b, uint8_t *bufs, size_t buf_size)
{
    b->bufs = bufs;
    b->buf_size = buf_size;
    b->n_out = 0;
    for (unsigned i = 0; i < DNS_UDP_BATCH; i++) {
        b->riov[i] = (struct iovec){ .iov_base = bufs + (size_t)i * buf_size, .iov_len = buf_size };
        b->rmsg[i].msg_hdr = (struct msghdr){
            .msg_name = &b->from[i],
            .msg_namelen = sizeof b->from[i],
            .msg_iov = &b->riov[i],
            .msg_iovlen = 1,
            .msg_control = b->cmsg[i],
            .msg_controllen = DNS_CMSG_ROOM,
        };
    }
}

unsigned dns_udp_batch_recv(struct dns_udp_batch *b, int fd, bool pktinfo)
{
    /* recvmmsg wrote the lengths of the last batch over these. */
    for (unsigned i = 0; i < DNS_UDP_BATCH; i++) {
        struct msghdr *h = &b->rmsg[i].msg_hdr;
        h->msg_namelen = sizeof b->from[i];
        h->msg_controllen = pktinfo ? DNS_CMSG_ROOM : 0;
        h->msg_flags = 0;
    }
    b->n_out = 0;
    int got = recvmmsg(fd, b->rmsg, DNS_UDP_BATCH, MSG_DONTWAIT, NULL);
    return got > 0 ? (unsigned)got : 0;
}

void dns_udp_batch_reply(struct dns_udp_batch *b, unsigned i, uint8_t *resp, size_t n, bool pktinfo)
{
    const struct msghdr *h = &b->rmsg[i].msg_hdr;
    unsigned o = b->n_out++;
    b->siov[o] = (struct iovec){ .iov_base = resp, .iov_len = n };
    b->smsg[o].msg_hdr = (struct msghdr){ .msg_name = &b->from[i], .msg_namelen = h->msg_namelen,
                                          .msg_iov = &b->siov[o], .msg_iovlen = 1 };
    if (pktinfo && h->msg_controllen) {
        b->smsg[o].msg_hdr.msg_control = b->cmsg[i];
        b->smsg[o].msg_hdr.msg_controllen = h->msg_controllen;
    }
}

unsigned dns_udp_batch_send(struct dns_udp_batch *b, int fd)
{
    unsigned sent = 0, lost = 0;
    while (sent < b->n_out) {
        int rc = sendmmsg(fd, b->smsg + sent, b->n_out - sent, MSG_DONTWAIT);
        if (rc > 0) {
            sent += (unsigned)rc;
            continue;
        }
        if (rc < 0 && errno == EINTR)
            continue;
        /* EAGAIN (buffer full) or an error for the next datagram (an
         * unreachable client): that one is lost, the rest may still go. */
        lost++;
        sent++;
    }
    b->n_out = 0;
    return lost;
}

int dns_udp_send_one(int fd, const struct sockaddr_storage *to, socklen_t to_len, const uint8_t *cmsg,
                     size_t cmsg_len, const uint8_t *buf, size_t n)
{
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = n };
    struct msghdr h = { .msg_name = (void *)to, .msg_namelen = to_len, .msg_iov = &iov, .msg_iovlen = 1 };
    if (cmsg_len) {
        h.msg_control = (void *)cmsg;
        h.msg_controllen = cmsg_len;
    }
    ssize_t r;
    do
        r = sendmsg(fd, &h, MSG_DONTWAIT);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -1 : 0;
}

/* ---- TCP ------------------------------------------------------------------ */

enum dns_tcp_read_result dns_tcp_read(int fd, uint8_t **buf, size_t *len, size_t *cap)
{
    size_t need = *cap;
    if (*len >= 2) {
        size_t mlen = (size_t)(*buf)[0] << 8 | (*buf)[1];
        if (2 + mlen > need)
            need = 2 + mlen;
    }
    if (need > *cap) {
        uint8_t *p = realloc(*buf, need);
        if (!p)
            return DNS_TCP_ERROR;
        *buf = p;
        *cap = need;
    }
    if (*len == *cap)
        return DNS_TCP_NOTHING;   /* full of complete messages waiting for their answers to go */
    ssize_t n = read(fd, *buf + *len, *cap - *len);
    if (n > 0) {
        *len += (size_t)n;
        return DNS_TCP_DATA;
    }
    if (n == 0)
        return DNS_TCP_EOF;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return DNS_TCP_NOTHING;
    return DNS_TCP_ERROR;
}

bool dns_tcp_message(const uint8_t *buf, size_t len, size_t pos, size_t *mlen)
{
    if (len < pos || len - pos < 2)
        return false;
    size_t m = (size_t)buf[pos] << 8 | buf[pos + 1];
    if (len - pos < 2 + m)
        return false;
    *mlen = m;
    return true;
}

void dns_tcp_consume(uint8_t *buf, size_t *len, size_t pos)
{
    if (pos == 0)
        return;
    memmove(buf, buf + pos, *len - pos);
    *len -= pos;
}

int dns_tcp_queue(uint8_t **buf, size_t *off, size_t *len, size_t *cap, const uint8_t *p, size_t n, bool framed)
{
    if (*off > 0 && *off == *len)
        *off = *len = 0;
    size_t add = (framed ? 2 : 0) + n;
    if (*len + add > *cap) {
        /* Doubling: answers queued one by one do not copy the buffer each time. */
        size_t c = *cap ? *cap : TCP_OUT_INITIAL;
        while (c < *len + add)
            c *= 2;
        uint8_t *q = realloc(*buf, c);
        if (!q)
            return -1;
        *buf = q;
        *cap = c;
    }
    if (framed) {
        (*buf)[*len] = (uint8_t)(n >> 8);
        (*buf)[*len + 1] = (uint8_t)n;
        *len += 2;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
    return 0;
}

int dns_tcp_flush(int fd, const uint8_t *buf, size_t *off, size_t *len, bool *wrote)
{
    while (*off < *len) {
        ssize_t n = write(fd, buf + *off, *len - *off);
        if (n > 0) {
            *off += (size_t)n;
            *wrote = true;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        return -1;
    }
    *off = *len = 0;
    return 1;
}

/* ---- TCP connections ------------------------------------------------------ */

int dns_tcp_conn_open(struct ev_loop *loop, struct dns_tcp_conns *list, struct dns_tcp_conn *c, int fd,
                      const struct sockaddr_storage *peer, ev_io_cb io_cb, ev_timer_cb idle_cb, void *data,
                      uint32_t idle_ms)
{
    c->in = malloc(TCP_IN_INITIAL);
    if (!c->in) {
        close(fd);
        return -1;
    }
    c->in_cap = TCP_IN_INITIAL;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (peer)
        c->peer = *peer;
    ev_io_init(&c->io, fd, io_cb, data);
    ev_timer_init(&c->idle, idle_cb, data);
    c->prev = NULL;
    c->next = list->head;
    if (list->head)
        list->head->prev = c;
    list->head = c;
    list->n++;
    ev_io_set(loop, &c->io, EPOLLIN);
    ev_timer_start(loop, &c->idle, idle_ms);
    return 0;
}

bool dns_tcp_conn_close(struct ev_loop *loop, struct dns_tcp_conns *list, struct dns_tcp_conn *c)
{
    if (c->closed)
        return false;
    c->closed = true;
    ev_io_stop(loop, &c->io);
    ev_timer_stop(loop, &c->idle);
    close(c->io.fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        list->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    list->n--;
    return true;
}

int dns_tcp_conn_read(struct ev_loop *loop, struct dns_tcp_conn *c, uint32_t idle_ms)
{
    switch (dns_tcp_read(c->io.fd, &c->in, &c->in_len, &c->in_cap)) {
    case DNS_TCP_DATA:
        ev_timer_start(loop, &c->idle, idle_ms);
        return 1;
    case DNS_TCP_EOF:
        c->eof = true;
        return 1;
    case DNS_TCP_NOTHING:
        return 0;
    case DNS_TCP_ERROR:
        break;
    }
    return -1;
}

void dns_tcp_conn_release(struct dns_tcp_conn *c)
{
    free(c->in);
    free(c->out);
}

void dns_tcp_accept(struct ev_loop *loop, struct ev_io *listener, struct ev_timer *pause, const char *who,
                    dns_tcp_accepted_fn *accepted, void *arg)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        int fd = accept4(listener->fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                log_warn("%s: accept: %s; pausing for %d ms", who, strerror(errno), ACCEPT_PAUSE_MS);
                ev_io_set(loop, listener, 0);
                ev_timer_start(loop, pause, ACCEPT_PAUSE_MS);
            }
            return;
        }
        accepted(arg, fd, &peer);
    }
}

void dns_tcp_accept_resume(struct ev_loop *loop, struct ev_io *listener)
{
    ev_io_set(loop, listener, EPOLLIN);
}
