/* The DNS side of dynamic pools (pool_dyn.h): A and AAAA queries for each
 * name over UDP from the master's event loop, answers matched to them,
 * resolvers tried in turn, TTLs bounded, failures kept apart from answers. */
#include "proxy/pool_dyn_priv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"

static const uint16_t qtypes[Q_N] = { DNS_TYPE_A, DNS_TYPE_AAAA };


void pool_dyn_addr_from_answer(struct sl_addr *out, const struct dns_answer_addr *a, uint16_t port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    if (a->family == AF_INET) {
        struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        memcpy(&v4->sin_addr, a->addr, 4);
        len = sizeof *v4;
    } else {
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        memcpy(&v6->sin6_addr, a->addr, 16);
        len = sizeof *v6;
    }
    addr_from_sockaddr(out, (const struct sockaddr *)&ss, len);
}

static uint16_t random_id(void)
{
    uint16_t id = 0;
    if (getrandom(&id, sizeof id, GRND_NONBLOCK) != (ssize_t)sizeof id)
        id = (uint16_t)(rand() ^ (int)ev_clock_ms());
    return id;
}

/* The resolvers a name asks: its pool's, else the system's, else the
 * loopback (what the C library does without a resolv.conf). */
static const struct sl_addr *resolver_for(const struct pool_dyn *d, const struct dyn_name *n, unsigned try_no,
                                          size_t *count)
{
    static struct sl_addr loopback;
    if (n->conf.n_resolvers) {
        *count = n->conf.n_resolvers;
        return &n->conf.resolvers[try_no % n->conf.n_resolvers];
    }
    if (d->n_sys) {
        *count = d->n_sys;
        return &d->sys[try_no % d->n_sys];
    }
    const char *why;
    addr_parse("127.0.0.1:53", &loopback, &why);
    *count = 1;
    return &loopback;
}

/* ------------------------------------------------------------------ */
/* queries */

static void on_readable(struct ev_loop *loop, struct ev_io *io, uint32_t ev);

void pool_resolve_forget(struct pool_dyn *d, struct dyn_name *n)
{
    if (n->fd < 0)
        return;
    ev_io_stop(d->loop, &n->io);
    close(n->fd);
    n->fd = -1;
}

/* Each try has a socket of its own, connected to the resolver: a fresh
 * random source port, and the kernel delivers only that resolver's
 * datagrams; with the 16-bit IDs and the question that must match, a
 * forged answer has to guess all three. */
static int try_socket(struct pool_dyn *d, struct dyn_name *n)
{
    pool_resolve_forget(d, n);
    int fd = socket(n->server.ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (const struct sockaddr *)&n->server.ss, n->server.len) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    n->fd = fd;
    n->owner = d;
    ev_io_init(&n->io, fd, on_readable, n);
    ev_io_set(d->loop, &n->io, EPOLLIN);
    return fd;
}

static void send_queries(struct pool_dyn *d, struct dyn_name *n, uint64_t now)
{
    size_t count;
    n->server = *resolver_for(d, n, n->try_no, &count);
    n->busy = true;
    n->deadline_ms = now + n->conf.timeout_ms;
    int fd = try_socket(d, n);
    for (int k = 0; k < Q_N; k++) {
        n->answered[k] = false;
        n->id[k] = random_id();
        uint8_t buf[DNS_HEADER_LEN + DNS_NAME_MAX + 4 + 11];
        int len = dns_build_query(buf, sizeof buf, n->id[k], n->qname.wire, n->qname.len, qtypes[k]);
        /* A send that fails is a try that times out: the next resolver
         * gets its turn then. */
        if (fd < 0 || len < 0 || send(fd, buf, (size_t)len, 0) < 0)
            snprintf(n->last_error, sizeof n->last_error, "cannot send to %s: %s", n->server.text,
                     strerror(errno));
    }
}

static bool same_set(const struct dyn_name *n, const struct dns_answer_addr *a, size_t k)
{
    if (k != n->n_addrs)
        return false;
    for (size_t i = 0; i < k; i++) {
        bool found = false;
        for (size_t j = 0; j < n->n_addrs && !found; j++)
            found = a[i].family == n->addrs[j].family && !memcmp(a[i].addr, n->addrs[j].addr, 16);
        if (!found)
            return false;
    }
    return true;
}

static const char *rcode_name(unsigned rc)
{
    switch (rc) {
    case DNS_RCODE_NOERROR: return "no address";
    case DNS_RCODE_FORMERR: return "FORMERR";
    case DNS_RCODE_SERVFAIL: return "SERVFAIL";
    case DNS_RCODE_NXDOMAIN: return "NXDOMAIN";
    case DNS_RCODE_NOTIMP: return "NOTIMP";
    case DNS_RCODE_REFUSED: return "REFUSED";
    default: return "an error";
    }
}

static uint32_t bounded_ttl(const struct cfg_resolve *c, uint64_t ttl_ms)
{
    if (ttl_ms < c->min_ttl_ms)
        ttl_ms = c->min_ttl_ms;
    if (ttl_ms > c->max_ttl_ms)
        ttl_ms = c->max_ttl_ms;
    return (uint32_t)ttl_ms;
}

static void resolution_failed(struct pool_dyn *d, struct dyn_name *n, uint64_t now)
{
    n->busy = false;
    pool_resolve_forget(d, n);
    n->failed_total++;
    if (!n->failing)
        log_warn("pool %s: backend name %s: resolution failed (%s); keeping its last %zu address%s", n->pool,
                 n->host, n->last_error, n->n_addrs, n->n_addrs == 1 ? "" : "es");
    n->failing = true;
    n->next_ms = now + bounded_ttl(&n->conf, n->conf.min_ttl_ms > 1000 ? n->conf.min_ttl_ms : 1000);
}

/* Both answers are in, or the try timed out: take the addresses, or try
 * the next resolver, or give up until the next time. */
static void finish(struct pool_dyn *d, struct dyn_name *n, uint64_t now, bool timed_out)
{
    struct dns_answer_addr got[DNS_ANSWER_MAX_ADDRS];
    size_t k = 0;
    uint64_t ttl = UINT64_MAX;
    bool retry = timed_out;
    for (int q = 0; q < Q_N; q++) {
        const struct dns_answer *a = &n->ans[q];
        if (!n->answered[q])
            continue;
        if (a->rcode == DNS_RCODE_NOERROR && a->n_addrs) {
            for (size_t i = 0; i < a->n_addrs && k < DNS_ANSWER_MAX_ADDRS; i++)
                got[k++] = a->addrs[i];
            if (a->ttl * 1000ull < ttl)
                ttl = a->ttl * 1000ull;
        } else if (a->rcode != DNS_RCODE_NOERROR && a->rcode != DNS_RCODE_NXDOMAIN) {
            retry = true; /* SERVFAIL, REFUSED...: another resolver may do better */
            snprintf(n->last_error, sizeof n->last_error, "%s from %s", rcode_name(a->rcode), n->server.text);
        } else {
            snprintf(n->last_error, sizeof n->last_error, "%s from %s", rcode_name(a->rcode), n->server.text);
        }
    }
    if (timed_out && !k)
        snprintf(n->last_error, sizeof n->last_error, "no answer from %s within %ums", n->server.text,
                 n->conf.timeout_ms);
    if (!k) {
        size_t count;
        resolver_for(d, n, 0, &count);
        unsigned tries = count < 2 ? 2 : (unsigned)count;
        if (retry && n->try_no + 1 < tries) {
            n->try_no++;
            send_queries(d, n, now);
            return;
        }
        resolution_failed(d, n, now);
        return;
    }
    n->busy = false;
    pool_resolve_forget(d, n);
    n->ok_total++;
    n->last_ok_ms = now;
    n->ttl_ms = bounded_ttl(&n->conf, ttl);
    n->next_ms = now + n->ttl_ms;
    if (n->failing)
        log_info("pool %s: backend name %s resolves again (%zu address%s)", n->pool, n->host, k, k == 1 ? "" : "es");
    n->failing = false;
    bool changed = !n->resolved || !same_set(n, got, k);
    if (changed) {
        log_info("pool %s: backend name %s: %zu address%s (ttl %us)", n->pool, n->host, k, k == 1 ? "" : "es",
                 n->ttl_ms / 1000);
        memcpy(n->addrs, got, k * sizeof *got);
        n->n_addrs = k;
        n->resolved = true;
        d->version++;
        if (d->notify)
            d->notify(d->notify_arg);
    }
}

static void on_readable(struct ev_loop *loop, struct ev_io *io, uint32_t ev)
{
    struct dyn_name *n = io->data;
    struct pool_dyn *d = n->owner;
    uint8_t buf[DNS_MSG_MAX];
    for (int i = 0; i < 16 && n->busy; i++) {
        ssize_t len = recv(n->fd, buf, sizeof buf, 0);
        if (len < 0)
            return;  /* EAGAIN, or an ICMP error (the try times out) */
        if (len < DNS_HEADER_LEN)
            continue;
        uint16_t id = (uint16_t)(buf[0] << 8 | buf[1]);
        for (int q = 0; q < Q_N; q++) {
            if (n->answered[q] || n->id[q] != id)
                continue;
            /* Not an answer to this question: a stray, dropped. */
            if (dns_parse_answer(buf, (size_t)len, id, &n->qname, qtypes[q], &n->ans[q]) < 0)
                continue;
            n->answered[q] = true;
            if (n->answered[0] && n->answered[1]) {
                /* finish may close this socket or open the next try's. */
                finish(d, n, ev_clock_ms(), false);
                return;
            }
            break;
        }
    }
}

void pool_resolve_tick(struct ev_loop *loop, struct ev_timer *t)
{
    struct pool_dyn *d = t->data;
    uint64_t now = ev_clock_ms();
    for (size_t k = 0; k < d->n_names; k++) {
        struct dyn_name *n = d->names[k];
        if (n->busy && now >= n->deadline_ms) {
            finish(d, n, now, true);
        } else if (!n->busy && now >= n->next_ms) {
            n->try_no = 0;
            send_queries(d, n, now);
        }
    }
    ev_timer_start(loop, t, TICK_MS);
}

void pool_resolve_read_conf(struct pool_dyn *d)
{
    char text[16384];
    d->n_sys = 0;
    int fd = open(RESOLV_CONF, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t len = read(fd, text, sizeof text);
    close(fd);
    if (len <= 0)
        return;
    struct dns_answer_addr a[MAX_SYS_RESOLVERS];
    size_t n = dns_resolv_conf_parse(text, (size_t)len, a, MAX_SYS_RESOLVERS);
    for (size_t i = 0; i < n; i++)
        pool_dyn_addr_from_answer(&d->sys[d->n_sys++], &a[i], 53);
}

void pool_resolve_close(struct pool_dyn *d)
{
    for (size_t i = 0; i < d->n_names; i++)
        pool_resolve_forget(d, d->names[i]);
}
