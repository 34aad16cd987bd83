/* See pool_dyn.h. The queries themselves are in pool_resolve.c. */
#include "proxy/pool_dyn_priv.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/metrics.h"

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

/* ------------------------------------------------------------------ */
/* configuration */

struct pool_dyn *pool_dyn_new(struct ev_loop *loop)
{
    struct pool_dyn *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->loop = loop;
    ev_timer_init(&d->timer, pool_resolve_tick, d);
    return d;
}

void pool_dyn_free(struct pool_dyn *d)
{
    if (!d)
        return;
    ev_timer_stop(d->loop, &d->timer);
    pool_resolve_close(d);
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
        if (n)
            n->fd = -1;
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
    pool_resolve_read_conf(d);
    ev_timer_stop(d->loop, &d->timer);
    /* New names are asked at once: resolved at start, not a tick later. */
    pool_resolve_tick(d->loop, &d->timer);
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
        if (d->names[i]->used) {
            d->names[w++] = d->names[i];
        } else {
            pool_resolve_forget(d, d->names[i]);
            free_name(d->names[i]);
        }
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
            pool_dyn_addr_from_answer(&a, &n->addrs[k], b->port);
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
    struct slot_member *all;
    size_t n = all_members(d, cp, &all);
    free(all);
    if (n >= cp->max_backends) {
        snprintf(err, errlen, "pool \"%s\" is full: %zu backends, max_backends is %u", cp->name, n, cp->max_backends);
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
