/* PROXY protocol on listeners and towards backends: see proxy_protocol.h. */
#include "proxy/proxy_protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/addr.h"
#include "lib/proxy_header.h"
#include "core/evloop.h"
#include "core/log.h"
#include "proxy/proxy_protocol_conf.h"
#include "proxy/shared.h"
#include "proxy/tls.h"
#include "proxy/tls_session.h"

/* A connection whose header has not fully arrived. The bytes of the
 * header read so far wait in buf; nothing past the header is read. */
struct pp_pending {
    struct listener_rt *l;
    int fd;
    struct ev_io io;
    struct ev_timer timer;
    struct sockaddr_storage peer;
    pp_adopt_fn *adopt;
    struct pp_pending *prev, *next;
    size_t len;
    uint8_t buf[PROXY_HDR_V2_MAX];
};

/* Every pending connection of this worker process (workers are processes). */
static struct pp_pending *pending_all;

static void count(struct listener_rt *l, enum pp_result r)
{
    atomic_fetch_add_explicit(&l->ctr->proxy_headers[r], 1, memory_order_relaxed);
}

static void pending_unlink(struct pp_pending *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        pending_all = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->prev = p->next = NULL;
}

/* Stop watching it and forget it; the descriptor stays open. */
static void pending_end(struct pp_pending *p)
{
    struct worker *w = p->l->w;
    ev_io_stop(w->loop, &p->io);
    ev_timer_stop(w->loop, &p->timer);
    pending_unlink(p);
    worker_conn_closed(w, p->l);
    ev_defer_free(w->loop, p, free);
}

static void pending_refuse(struct pp_pending *p, enum pp_result why, const char *reason)
{
    char ip[INET6_ADDRSTRLEN];
    addr_ip_string((const struct sockaddr *)&p->peer, ip, sizeof ip);
    log_debug("listener %s: %s: PROXY header refused: %s", p->l->cfg->name, ip, reason);
    count(p->l, why);
    int fd = p->fd;
    pending_end(p);
    close(fd);
}

static void origin_from_peer(int fd, const struct sockaddr_storage *peer, struct conn_origin *o)
{
    /* Only the family's part: accept() leaves the rest of a
     * sockaddr_storage as it was, and origins are compared whole
     * (upstream_get_for). */
    memset(o, 0, sizeof *o);
    memcpy(&o->client, peer, peer->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
    socklen_t len = sizeof o->local; /* o->local is zeroed: the rest stays 0 */
    if (getsockname(fd, (struct sockaddr *)&o->local, &len) < 0)
        o->local.ss_family = AF_UNSPEC;
}

static void pending_done(struct pp_pending *p, const struct proxy_hdr *h)
{
    struct conn_origin o;
    origin_from_peer(p->fd, &p->peer, &o);
    if (!h->local) {
        o.client = h->src;
        o.local = h->dst;
        o.from_header = true;
    }
    count(p->l, PP_ACCEPTED);
    struct listener_rt *l = p->l;
    int fd = p->fd;
    pp_adopt_fn *adopt = p->adopt;
    pending_end(p);
    adopt(l, fd, &o);
}

/* Readable: look at what has come (peeked), and take from the socket
 * only the bytes that belong to the header. */
static void pending_event(struct ev_loop *loop, struct ev_io *io, uint32_t ev)
{
    struct pp_pending *p = io->data;
    (void)loop;
    (void)ev;
    ssize_t n = recv(p->fd, p->buf + p->len, sizeof p->buf - p->len, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        /* Gone before its header: not a refusal (a port check does this). */
        int fd = p->fd;
        pending_end(p);
        close(fd);
        return;
    }
    struct proxy_hdr h;
    const char *why = NULL;
    int r = proxy_hdr_parse(p->buf, p->len + (size_t)n, p->l->cfg->client_addr.proxy_protocol, &h, &why);
    if (r < 0) {
        pending_refuse(p, PP_INVALID, why);
        return;
    }
    /* Complete: the rest of the header; incomplete: all of it is header. */
    size_t take = r > 0 ? (size_t)r - p->len : (size_t)n;
    if (recv(p->fd, p->buf + p->len, take, 0) != (ssize_t)take) {
        pending_refuse(p, PP_INVALID, "the socket gave back fewer bytes than it showed");
        return;
    }
    p->len += take;
    if (r > 0) {
        /* h points into buf; its addresses are copies, which is all
         * pending_done uses. */
        pending_done(p, &h);
    } else if (p->len == sizeof p->buf) {
        pending_refuse(p, PP_INVALID, "header too long");
    }
}

static void pending_timeout(struct ev_loop *loop, struct ev_timer *t)
{
    (void)loop;
    pending_refuse(t->data, PP_TIMEOUT, "it did not arrive within timeouts.client_header");
}

bool pp_client_trusted(const struct cfg_listener *cfg, const struct conn_origin *o)
{
    return pp_cidr_match(cfg->client_addr.trusted, cfg->client_addr.n_trusted, (const struct sockaddr *)&o->client);
}

void pp_accept(struct listener_rt *l, int fd, const struct sockaddr_storage *peer, pp_adopt_fn *adopt)
{
    const struct cfg_client_addr *ca = &l->cfg->client_addr;
    if (!ca->proxy_protocol) {
        struct conn_origin o;
        origin_from_peer(fd, peer, &o);
        adopt(l, fd, &o);
        return;
    }
    if (!pp_cidr_match(ca->trusted, ca->n_trusted, (const struct sockaddr *)peer)) {
        /* Whoever is not a trusted proxy could claim any address in a
         * header, and a listener that takes headers is not meant for
         * direct clients (nginx and HAProxy both refuse them too). */
        char ip[INET6_ADDRSTRLEN];
        addr_ip_string((const struct sockaddr *)peer, ip, sizeof ip);
        log_debug("listener %s: %s is not in trusted_proxies: connection closed", l->cfg->name, ip);
        count(l, PP_UNTRUSTED);
        close(fd);
        return;
    }
    struct pp_pending *p = malloc(sizeof *p);
    if (!p) {
        close(fd);
        return;
    }
    memset(p, 0, offsetof(struct pp_pending, buf));
    p->l = l;
    p->fd = fd;
    p->peer = *peer;
    p->adopt = adopt;
    p->next = pending_all;
    if (pending_all)
        pending_all->prev = p;
    pending_all = p;
    /* Counted as open while it waits: limits.max_connections and the
     * drain see it; pending_end() uncounts it before the protocol counts
     * it again. */
    worker_conn_opened(l->w, l);
    ev_io_init(&p->io, fd, pending_event, p);
    ev_io_set(l->w->loop, &p->io, EPOLLIN);
    ev_timer_init(&p->timer, pending_timeout, p);
    ev_timer_start(l->w->loop, &p->timer, l->cfg->timeouts.client_header_ms);
}

void pp_shutdown(struct worker *w)
{
    (void)w;
    while (pending_all) {
        struct pp_pending *p = pending_all;
        int fd = p->fd;
        pending_end(p);
        close(fd);
    }
}

/* ---------- towards backends ---------- */

int pp_send_to_backend(enum send_proxy mode, int fd, const struct pp_client_info *ci)
{
    if (mode == SEND_PROXY_OFF)
        return 0;
    uint8_t hdr[2048];
    size_t len;
    const struct sockaddr *src = (const struct sockaddr *)&ci->origin->client;
    const struct sockaddr *dst = (const struct sockaddr *)&ci->origin->local;
    if (mode == SEND_PROXY_V1) {
        len = proxy_hdr_write_v1((char *)hdr, sizeof hdr, src, dst);
    } else {
        struct proxy_hdr_v2_out out = {.src = src, .dst = dst, .unique_id = ci->unique_id};
        struct tls_info tls;
        if (ci->client_tr && transport_tls_info(ci->client_tr, &tls)) {
            out.alpn = tls.alpn;
            out.authority = tls.sni;
            out.ssl = true;
            out.ssl_version = tls.version;
            out.ssl_cipher = tls.cipher;
            /* Sluice only ever accepts a client certificate verified. */
            out.cert_in_session = tls.client_subject != NULL;
            out.cert_on_connection = out.cert_in_session && tls.resumed == TLS_RESUMED_NO;
        }
        len = proxy_hdr_write_v2(hdr, sizeof hdr, &out);
    }
    if (!len) {
        errno = EOVERFLOW;
        return -1;
    }
    /* The connect has just completed and nothing else was written: the
     * socket's send buffer is empty and takes these few hundred bytes
     * whole, so no partial write needs to be carried. */
    ssize_t n = send(fd, hdr, len, MSG_NOSIGNAL);
    if (n == (ssize_t)len)
        return 0;
    if (n >= 0)
        errno = EAGAIN;
    return -1;
}

size_t pp_check_header(enum send_proxy mode, uint8_t *out, size_t cap)
{
    if (mode == SEND_PROXY_V1)
        return proxy_hdr_write_v1((char *)out, cap, NULL, NULL);
    if (mode == SEND_PROXY_V2) {
        struct proxy_hdr_v2_out local = {0};
        return proxy_hdr_write_v2(out, cap, &local);
    }
    return 0;
}
