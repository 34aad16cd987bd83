/* See pool_dyn.h. */
#include "proxy/pool_dyn.h"

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
#include "core/metrics.h"
#include "lib/dns_client.h"

#define TICK_MS 100
#define MAX_SYS_RESOLVERS 3
#define RESOLV_CONF "/etc/resolv.conf"

enum { Q_A, Q_AAAA, Q_N };
static const uint16_t qtypes[Q_N] = { DNS_TYPE_A, DNS_TYPE_AAAA };

/* One name of one pool, and its resolution. */
struct dyn_name {
    char *pool, *host;
    struct cfg_resolve conf;          /* the pool's resolve: block */
    struct dns_name qname;
    struct dns_answer_addr addrs[DNS_ANSWER_MAX_ADDRS];
    size_t n_addrs;
    bool resolved;                    /* it had a good answer once */
    uint32_t ttl_ms;                  /* of the last good answer, bounded */
    uint64_t next_ms;                 /* when to ask again (idle) */
    uint64_t last_ok_ms;
    /* the query in flight */
    bool busy;
    unsigned try_no;
    uint64_t deadline_ms;
    struct sl_addr server;
    uint16_t id[Q_N];
    bool answered[Q_N];
    struct dns_answer ans[Q_N];
    /* counts */
    uint64_t ok_total, failed_total;
    bool failing;                     /* in a failure streak (said once) */
    char last_error[96];
    bool used;                        /* pool_dyn_retain's mark */
};

/* The API's changes to one pool. */
struct dyn_pool {
    char *name;
    char *fingerprint;                /* the file's backends of the pool when the changes were made */
    struct slot_member *added;
    size_t n_added;
    struct sl_addr *removed;
    size_t n_removed;
    bool used;
};

struct pool_dyn {
    struct ev_loop *loop;
    int fd[2];                        /* [0] IPv4, [1] IPv6; -1 until needed */
    struct ev_io io[2];
    struct ev_timer timer;
    struct dyn_name **names;
    size_t n_names;
    struct dyn_pool **pools;
    size_t n_pools;
    struct sl_addr sys[MAX_SYS_RESOLVERS];
    size_t n_sys;
    uint64_t version;
    void (*notify)(void *arg);
    void *notify_arg;
};

/* ------------------------------------------------------------------ */
/* helpers */

static void addr_from_answer(struct sl_addr *out, const struct dns_answer_addr *a, uint16_t port)
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

static struct dyn_name *find_name(const struct pool_dyn *d, const char *pool, const char *host)
{
    for (size_t i = 0; i < d->n_names; i++)
        if (!strcmp(d->names[i]->pool, pool) && !strcasecmp(d->names[i]->host, host))
            return d->names[i];
    return NULL;
}

static struct dyn_pool *find_pool(const struct pool_dyn *d, const char *name)
{
    for (size_t i = 0; i < d->n_pools; i++)
        if (!strcmp(d->pools[i]->name, name))
            return d->pools[i];
    return NULL;
}

static void free_name(struct dyn_name *n)
{
    if (!n)
        return;
    free(n->pool);
    free(n->host);
    free(n);
}

static void free_pool(struct dyn_pool *p)
{
    if (!p)
        return;
    free(p->name);
    free(p->fingerprint);
    free(p->added);
    free(p->removed);
    free(p);
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

static int socket_for(struct pool_dyn *d, int family)
{
    int k = family == AF_INET6;
    if (d->fd[k] >= 0)
        return d->fd[k];
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    d->fd[k] = fd;
    ev_io_init(&d->io[k], fd, on_readable, d);
    ev_io_set(d->loop, &d->io[k], EPOLLIN);
    return fd;
}

static void send_queries(struct pool_dyn *d, struct dyn_name *n, uint64_t now)
{
    size_t count;
    n->server = *resolver_for(d, n, n->try_no, &count);
    n->busy = true;
    n->deadline_ms = now + n->conf.timeout_ms;
    int fd = socket_for(d, n->server.ss.ss_family);
    for (int k = 0; k < Q_N; k++) {
        n->answered[k] = false;
        n->id[k] = random_id();
        uint8_t buf[DNS_HEADER_LEN + DNS_NAME_MAX + 4 + 11];
        int len = dns_build_query(buf, sizeof buf, n->id[k], n->qname.wire, n->qname.len, qtypes[k]);
        /* A send that fails is a try that times out: the next resolver
         * gets its turn then. */
        if (fd < 0 || len < 0 ||
            sendto(fd, buf, (size_t)len, 0, (const struct sockaddr *)&n->server.ss, n->server.len) < 0)
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
    struct pool_dyn *d = io->data;
    uint8_t buf[DNS_MSG_MAX];
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage from;
        socklen_t flen = sizeof from;
        ssize_t len = recvfrom(io->fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen);
        if (len < 0)
            return;
        if (len < DNS_HEADER_LEN)
            continue;
        struct sl_addr src;
        addr_from_sockaddr(&src, (const struct sockaddr *)&from, flen);
        uint16_t id = (uint16_t)(buf[0] << 8 | buf[1]);
        uint64_t now = ev_clock_ms();
        for (size_t k = 0; k < d->n_names; k++) {
            struct dyn_name *n = d->names[k];
            if (!n->busy || !addr_equal(&src, &n->server))
                continue;
            for (int q = 0; q < Q_N; q++) {
                if (n->answered[q] || n->id[q] != id)
                    continue;
                /* Not an answer to this question: a stray, dropped. */
                if (dns_parse_answer(buf, (size_t)len, id, &n->qname, qtypes[q], &n->ans[q]) < 0)
                    continue;
                n->answered[q] = true;
                if (n->answered[0] && n->answered[1])
                    finish(d, n, now, false);
                goto next_datagram;
            }
        }
    next_datagram:;
    }
}

static void tick(struct ev_loop *loop, struct ev_timer *t)
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

/* ------------------------------------------------------------------ */
/* configuration */

struct pool_dyn *pool_dyn_new(struct ev_loop *loop)
{
    struct pool_dyn *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->loop = loop;
    d->fd[0] = d->fd[1] = -1;
    ev_timer_init(&d->timer, tick, d);
    return d;
}

void pool_dyn_free(struct pool_dyn *d)
{
    if (!d)
        return;
    ev_timer_stop(d->loop, &d->timer);
    for (int k = 0; k < 2; k++) {
        if (d->fd[k] >= 0) {
            ev_io_stop(d->loop, &d->io[k]);
            close(d->fd[k]);
        }
    }
    for (size_t i = 0; i < d->n_names; i++)
        free_name(d->names[i]);
    for (size_t i = 0; i < d->n_pools; i++)
        free_pool(d->pools[i]);
    free(d->names);
    free(d->pools);
    free(d);
}

void pool_dyn_set_notify(struct pool_dyn *d, void (*fn)(void *arg), void *arg)
{
    d->notify = fn;
    d->notify_arg = arg;
}

uint64_t pool_dyn_version(const struct pool_dyn *d) { return d ? d->version : 0; }

static void read_resolv_conf(struct pool_dyn *d)
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
        addr_from_answer(&d->sys[d->n_sys++], &a[i], 53);
}

/* What the file says of a dynamic pool's backends, to tell whether it
 * changed between two configurations. */
static char *fingerprint(const struct cfg_pool *cp)
{
    struct strbuf s = {0};
    strbuf_printf(&s, "max=%u;", cp->max_backends);
    for (size_t i = 0; i < cp->n_backends; i++) {
        const struct cfg_backend *b = &cp->backends[i];
        if (b->host)
            strbuf_printf(&s, "%s:%u/%u;", b->host, b->port, b->weight);
        else
            strbuf_printf(&s, "%s/%u;", b->addr.text, b->weight);
    }
    return strbuf_finish(&s, NULL);
}

static bool push(void *arrp, size_t *n, void *item)
{
    void ***arr = arrp;
    void **grown = realloc(*arr, (*n + 1) * sizeof **arr);
    if (!grown)
        return false;
    grown[(*n)++] = item;
    *arr = grown;
    return true;
}

static void follow_name(struct pool_dyn *d, const struct cfg_pool *cp, const struct cfg_backend *b)
{
    struct dyn_name *n = find_name(d, cp->name, b->host);
    if (!n) {
        n = calloc(1, sizeof *n);
        uint8_t wire[DNS_NAME_MAX];
        int wlen = n ? dns_name_from_text(b->host, wire) : -1;
        if (!n || wlen < 0 || dns_name_set(&n->qname, wire, (size_t)wlen) < 0 ||
            !(n->pool = strdup(cp->name)) || !(n->host = strdup(b->host)) || !push(&d->names, &d->n_names, n)) {
            log_error("pool %s: cannot follow backend name %s (out of memory or not a DNS name)", cp->name, b->host);
            free_name(n);
            return;
        }
        snprintf(n->last_error, sizeof n->last_error, "not resolved yet");
    }
    /* A changed resolve: block applies from the next query. */
    n->conf = cp->resolve;
    n->used = true;
}

static void configure_pool(struct pool_dyn *d, const struct cfg_pool *cp)
{
    char *fp = fingerprint(cp);
    struct dyn_pool *p = find_pool(d, cp->name);
    if (!p) {
        p = calloc(1, sizeof *p);
        if (!p || !(p->name = strdup(cp->name)) || !push(&d->pools, &d->n_pools, p)) {
            free_pool(p);
            free(fp);
            return;
        }
    } else if (fp && p->fingerprint && strcmp(fp, p->fingerprint) != 0 && (p->n_added || p->n_removed)) {
        log_warn("pool %s: its backends changed in the file: the %zu backend(s) added and %zu removed through the "
                 "admin API since are dropped",
                 cp->name, p->n_added, p->n_removed);
        p->n_added = p->n_removed = 0;
        d->version++;
    }
    free(p->fingerprint);
    p->fingerprint = fp;
    p->used = true;
    for (size_t i = 0; i < cp->n_backends; i++)
        if (cp->backends[i].host)
            follow_name(d, cp, &cp->backends[i]);
}

void pool_dyn_configure(struct pool_dyn *d, const struct proxy_conf *pc)
{
    bool names = false;
    for (size_t i = 0; i < pc->n_pools; i++) {
        const struct cfg_pool *cp = &pc->pools[i];
        if (!cp->max_backends || cp->discovery)
            continue;
        configure_pool(d, cp);
        names |= pool_dyn_has_names(cp);
    }
    if (!names)
        return;
    read_resolv_conf(d);
    ev_timer_stop(d->loop, &d->timer);
    /* New names are asked at once: resolved at start, not a tick later. */
    tick(d->loop, &d->timer);
}

void pool_dyn_retain(struct pool_dyn *d, const struct proxy_conf *pc)
{
    for (size_t i = 0; i < d->n_names; i++)
        d->names[i]->used = false;
    for (size_t i = 0; i < d->n_pools; i++)
        d->pools[i]->used = false;
    for (size_t i = 0; i < pc->n_pools; i++) {
        const struct cfg_pool *cp = &pc->pools[i];
        if (!cp->max_backends || cp->discovery)
            continue;
        struct dyn_pool *p = find_pool(d, cp->name);
        if (p)
            p->used = true;
        for (size_t b = 0; b < cp->n_backends; b++) {
            struct dyn_name *n = cp->backends[b].host ? find_name(d, cp->name, cp->backends[b].host) : NULL;
            if (n)
                n->used = true;
        }
    }
    size_t w = 0;
    for (size_t i = 0; i < d->n_names; i++) {
        if (d->names[i]->used)
            d->names[w++] = d->names[i];
        else
            free_name(d->names[i]);
    }
    d->n_names = w;
    w = 0;
    for (size_t i = 0; i < d->n_pools; i++) {
        if (d->pools[i]->used)
            d->pools[w++] = d->pools[i];
        else
            free_pool(d->pools[i]);
    }
    d->n_pools = w;
    if (!d->n_names)
        ev_timer_stop(d->loop, &d->timer);
}

/* ------------------------------------------------------------------ */
/* members */

struct member_list {
    struct slot_member *out;
    size_t cap, n;
    const struct dyn_pool *p;
};

static bool is_removed(const struct dyn_pool *p, const struct sl_addr *a)
{
    for (size_t i = 0; p && i < p->n_removed; i++)
        if (addr_equal(&p->removed[i], a))
            return true;
    return false;
}

static void add_member(struct member_list *l, const struct sl_addr *a, uint32_t weight)
{
    if (is_removed(l->p, a))
        return;
    for (size_t i = 0; i < l->n && i < l->cap; i++)
        if (addr_equal(&l->out[i].addr, a))
            return; /* listed twice (a name and an address): once */
    if (l->n < l->cap)
        l->out[l->n] = (struct slot_member){ .addr = *a, .weight = weight };
    l->n++;
}

size_t pool_dyn_members(const struct pool_dyn *d, const struct cfg_pool *cp, struct slot_member *out, size_t cap)
{
    struct member_list l = { .out = out, .cap = cap, .p = d ? find_pool(d, cp->name) : NULL };
    for (size_t i = 0; i < cp->n_backends; i++) {
        const struct cfg_backend *b = &cp->backends[i];
        if (!b->host) {
            add_member(&l, &b->addr, b->weight);
            continue;
        }
        const struct dyn_name *n = d ? find_name(d, cp->name, b->host) : NULL;
        for (size_t k = 0; n && k < n->n_addrs; k++) {
            struct sl_addr a;
            addr_from_answer(&a, &n->addrs[k], b->port);
            add_member(&l, &a, b->weight);
        }
    }
    for (size_t i = 0; l.p && i < l.p->n_added; i++)
        add_member(&l, &l.p->added[i].addr, l.p->added[i].weight);
    return l.n;
}

/* Pool cp's members, every one of them (malloc'd into *out; NULL when
 * memory ran out): a first pass without room gives a bound, a second one
 * with room for it the exact, duplicate-free list. */
static size_t all_members(const struct pool_dyn *d, const struct cfg_pool *cp, struct slot_member **out)
{
    size_t bound = pool_dyn_members(d, cp, NULL, 0);
    *out = calloc(bound + 1, sizeof **out);
    return *out ? pool_dyn_members(d, cp, *out, bound) : 0;
}

static bool is_member(const struct pool_dyn *d, const struct cfg_pool *cp, const struct sl_addr *a)
{
    struct slot_member *m;
    size_t n = all_members(d, cp, &m);
    bool found = false;
    for (size_t i = 0; i < n && !found; i++)
        found = addr_equal(&m[i].addr, a);
    free(m);
    return found;
}

static int fixed_pool(const struct cfg_pool *cp, char *err, size_t errlen)
{
    snprintf(err, errlen,
             "pool \"%s\" %s: set max_backends on it to add and remove backends at run time", cp->name,
             cp->discovery ? "takes its backends from the registry (discovery)" : "has a fixed list of backends");
    return 409;
}

int pool_dyn_add(struct pool_dyn *d, const struct cfg_pool *cp, const struct sl_addr *a, uint32_t weight, char *err,
                 size_t errlen)
{
    if (!cp->max_backends || cp->discovery || !d)
        return fixed_pool(cp, err, errlen);
    struct dyn_pool *p = find_pool(d, cp->name);
    if (!p) {
        snprintf(err, errlen, "pool \"%s\" is not ready yet; try again", cp->name);
        return 503;
    }
    if (is_member(d, cp, a)) {
        snprintf(err, errlen, "%s is a backend of pool \"%s\" already (PATCH it to change its weight)", a->text,
                 cp->name);
        return 409;
    }
    /* One that was removed comes back; else it is added. */
    for (size_t i = 0; i < p->n_removed; i++) {
        if (addr_equal(&p->removed[i], a)) {
            p->removed[i] = p->removed[--p->n_removed];
            if (is_member(d, cp, a)) {
                d->version++;
                return 0;
            }
            break;
        }
    }
    struct slot_member *all;
    size_t n = all_members(d, cp, &all);
    free(all);
    if (n >= cp->max_backends) {
        snprintf(err, errlen, "pool \"%s\" is full: %zu backends, max_backends is %u", cp->name, n, cp->max_backends);
        return 409;
    }
    struct slot_member *grown = realloc(p->added, (p->n_added + 1) * sizeof *grown);
    if (!grown) {
        snprintf(err, errlen, "out of memory");
        return 500;
    }
    p->added = grown;
    p->added[p->n_added++] = (struct slot_member){ .addr = *a, .weight = weight };
    d->version++;
    return 0;
}

int pool_dyn_remove(struct pool_dyn *d, const struct cfg_pool *cp, const struct sl_addr *a, char *err,
                    size_t errlen)
{
    if (!cp->max_backends || cp->discovery || !d)
        return fixed_pool(cp, err, errlen);
    struct dyn_pool *p = find_pool(d, cp->name);
    if (!p || !is_member(d, cp, a)) {
        snprintf(err, errlen, "%s is not a backend of pool \"%s\" (any more)", a->text, cp->name);
        return 404;
    }
    for (size_t i = 0; i < p->n_added; i++) {
        if (addr_equal(&p->added[i].addr, a)) {
            p->added[i] = p->added[--p->n_added];
            d->version++;
            return 0;
        }
    }
    /* From the file or a name: kept out until the file changes the pool. */
    struct sl_addr *grown = realloc(p->removed, (p->n_removed + 1) * sizeof *grown);
    if (!grown) {
        snprintf(err, errlen, "out of memory");
        return 500;
    }
    p->removed = grown;
    p->removed[p->n_removed++] = *a;
    d->version++;
    return 0;
}

/* ------------------------------------------------------------------ */
/* status */

void pool_dyn_collect(void *arg, struct strbuf *out)
{
    const struct pool_dyn *d = arg;
    if (!d)
        return;
    metrics_family(out, "sluice_backend_name_resolutions_total", "counter",
                   "Resolutions of backends given by name, by result (failed: the last addresses were kept)");
    for (size_t i = 0; i < d->n_names; i++) {
        const struct dyn_name *n = d->names[i];
        struct metric_label l[3] = { { "pool", n->pool }, { "host", n->host }, { "result", "ok" } };
        metrics_sample(out, "sluice_backend_name_resolutions_total", l, 3, n->ok_total);
        l[2].value = "failed";
        metrics_sample(out, "sluice_backend_name_resolutions_total", l, 3, n->failed_total);
    }
    metrics_family(out, "sluice_backend_name_addresses", "gauge",
                   "Addresses a backend name has now (each is a backend of the pool)");
    for (size_t i = 0; i < d->n_names; i++) {
        const struct dyn_name *n = d->names[i];
        struct metric_label l[2] = { { "pool", n->pool }, { "host", n->host } };
        metrics_sample(out, "sluice_backend_name_addresses", l, 2, n->n_addrs);
    }
}

json_t *pool_dyn_status(const struct pool_dyn *d)
{
    json_t *arr = json_array();
    uint64_t now = ev_clock_ms();
    for (size_t i = 0; d && i < d->n_names; i++) {
        const struct dyn_name *n = d->names[i];
        json_t *addrs = json_array();
        for (size_t k = 0; k < n->n_addrs; k++) {
            char ip[64];
            inet_ntop(n->addrs[k].family, n->addrs[k].addr, ip, sizeof ip);
            json_array_append_new(addrs, json_string(ip));
        }
        json_array_append_new(
            arr, json_pack("{s:s, s:s, s:o, s:I, s:I, s:I, s:b, s:s, s:I}", "pool", n->pool, "name", n->host,
                           "addresses", addrs, "ttl_ms", (json_int_t)n->ttl_ms, "resolutions_ok",
                           (json_int_t)n->ok_total, "resolutions_failed", (json_int_t)n->failed_total, "failing",
                           n->failing, "last_error", n->failing ? n->last_error : "",
                           "next_in_ms", (json_int_t)(n->busy || n->next_ms <= now ? 0 : n->next_ms - now)));
    }
    return arr;
}
