/* See stream.h: what TCP and UDP proxying share. */
#include "proxy/stream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <time.h>

#include "lib/addr.h"
#include "lib/hash.h"
#include "proxy/access_log.h"
#include "proxy/tls.h"

/* Fixed, so that every worker (and every restart) maps a client IP to the
 * same point of the Maglev table: affinity must not depend on which worker
 * the kernel handed the connection to. */
#define CLIENT_IP_SEED 0x5c1b7e3a9d4f2086ULL

static inline void gauge_inc(_Atomic uint32_t *g) { atomic_fetch_add_explicit(g, 1, memory_order_relaxed); }
static inline void gauge_dec(_Atomic uint32_t *g) { atomic_fetch_sub_explicit(g, 1, memory_order_relaxed); }

/* At most one warning per second per call site: conditions like fd
 * exhaustion or an empty pool recur on every event and would flood the log. */
bool stream_warn_allowed(uint64_t *last, uint64_t now)
{
    if (*last && now - *last < 1000)
        return false;
    *last = now;
    return true;
}

/* Failures that say nothing about the backend: this process ran out of
 * something. They must not count against the backend's health. */
bool stream_local_error(int err)
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

uint64_t stream_pick_key(const struct pool_rt *p, const struct sockaddr_storage *ss)
{
    return p->cfg->algorithm == LB_HASH ? client_ip_hash(ss) : 0;
}

/* A connection or session holds its backend from the connect attempt on,
 * so least_conn sees connects in flight too. */
void stream_backend_acquire(struct pool_rt *p, struct backend_rt *b)
{
    p->active[b->index]++;
    gauge_inc(&b->ctr->active);
}

void stream_backend_release(struct pool_rt *p, struct backend_rt *b)
{
    if (p->active[b->index])
        p->active[b->index]--;
    gauge_dec(&b->ctr->active);
}

/* worker_conn_opened/closed keep the listener's active gauge (the limit
 * is checked against it); only the running totals are ours. */
void stream_client_opened(struct listener_rt *l)
{
    worker_conn_opened(l->w, l);
    ctr_add(&l->ctr->connections, 1);
    ctr_add(&l->ctr->requests, 1); /* a stream "request" is the whole session */
}

void stream_client_closed(struct listener_rt *l)
{
    worker_conn_closed(l->w, l);
}

uint64_t stream_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* One access-log line per TCP connection or UDP session (see stream.h for
 * what the status means). */
void stream_log(struct listener_rt *l, const struct sockaddr_storage *client, const char *what,
                       const struct backend_rt *b, int status, uint64_t to_client, uint64_t started_us,
                       const struct transport *tr)
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
        .duration_us = stream_now_us() - started_us,
    };
    struct tls_info tls;
    if (tr && transport_tls_info(tr, &tls)) {
        e.tls_version = tls.version;
        e.tls_cipher = tls.cipher;
        e.sni = tls.sni;
        e.tls_resumed = tls.resumed;
        e.client_subject = tls.client_subject;
    }
    access_log_write(l->alog, &e);
}

