/* Rate limits on requests, connection limits on connections, and their
 * metrics: see ratelimit_http.h. */
#include "proxy/ratelimit_http.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/metrics.h"
#include "proxy/access_log.h"
#include "proxy/http_carrier.h"
#include "proxy/http_route.h"
#include "proxy/http_txn.h"

/* Logged when Sluice closes without an answer, as nginx logs "return 444". */
#define RL_CLOSED_STATUS 444

/* The key of limit rl for this request: its bytes, or false when the
 * request has none (no such header, or an empty one): such a request is
 * not limited by rl, as nginx does not account requests with an empty
 * key. */
static bool request_key(const struct cfg_rate_limit *rl, const struct http_carrier *cr,
                        const struct http1_message *m, const char **key, size_t *len)
{
    if (rl->key == RL_KEY_CLIENT_IP) {
        *key = cr->peer_ip;
        *len = strlen(cr->peer_ip);
        return true;
    }
    const struct http1_header *h = http1_find_header(m, rl->header);
    if (!h || !h->value.len)
        return false;
    *key = h->value.p;
    *len = h->value.len;
    return true;
}

static void refuse(struct http_txn *t, const struct cfg_rate_limit *rl, uint64_t wait_ns)
{
    struct http_carrier *cr = t->cr;
    char reason[128];
    snprintf(reason, sizeof reason, "rate limit \"%s\" (%u r/%s, burst %u) exceeded", rl->name, rl->rate,
             rl->per_minute ? "m" : "s", rl->burst);
    if (rl->status == RL_STATUS_CLOSE) {
        log_debug("client %s: %s: closing", cr->peer_ip, reason);
        t->status = RL_CLOSED_STATUS;
        http_txn_log_refused(t, reason);
        http_carrier_abort(cr);
        return;
    }
    /* Whole seconds (RFC 9110 10.2.3), rounded up so a client that waits
     * as told finds room. */
    uint64_t secs = (wait_ns + 999999999ull) / 1000000000ull;
    t->retry_after_s = secs ? (uint32_t)(secs > 86400 ? 86400 : secs) : 1;
    http_carrier_send_error(cr, rl->status, reason);
}

bool ratelimit_refuse_request(struct http_txn *t, const struct http1_message *m)
{
    struct http_carrier *cr = t->cr;
    const struct cfg_listener *lc = cr->l->cfg;
    if (!lc->n_rate_limits)
        return false;
    const struct ratelimit_region *r = cr->w->sh->rl;
    uint64_t now = ratelimit_now_ns();
    struct rl_table *charged[RL_MAX_LIMITS];
    uint64_t hashes[RL_MAX_LIMITS];
    size_t n = 0;
    int route = -2; /* the request's route, found when a limit is for some routes only */
    for (size_t k = 0; k < lc->n_rate_limits && k < RL_MAX_LIMITS; k++) {
        struct rl_table *tab = ratelimit_table(r, cr->l->index, k);
        const char *key;
        size_t len;
        if (!tab || !request_key(&lc->rate_limits[k], cr, m, &key, &len))
            continue;
        if (lc->rate_limits[k].route_scoped) {
            if (route == -2)
                route = http_route_index(lc, m);
            if (route < 0 || !(lc->routes[route].rate_limits & (1u << k)))
                continue;
        }
        uint64_t h = ratelimit_hash(tab, key, len), wait_ns = 0;
        if (ratelimit_take(tab, h, now, &wait_ns)) {
            charged[n] = tab;
            hashes[n++] = h;
            continue;
        }
        /* Refused: the limits before this one give their charge back. */
        for (size_t i = 0; i < n; i++)
            ratelimit_refund(charged[i], hashes[i]);
        atomic_fetch_add_explicit(&tab->ctr.rejected, 1, memory_order_relaxed);
        refuse(t, &lc->rate_limits[k], wait_ns);
        return true;
    }
    for (size_t i = 0; i < n; i++)
        atomic_fetch_add_explicit(&charged[i]->ctr.passed, 1, memory_order_relaxed);
    return false;
}

/* ---- connections ---- */

static void log_refused_conn(struct listener_rt *l, const char *client_ip)
{
    char reason[96];
    snprintf(reason, sizeof reason, "connection limit (%u per client address) reached", l->cfg->conn_limit.max);
    log_debug("client %s: %s: %s", client_ip, l->cfg->name, reason);
    if (!l->alog)
        return;
    struct access_entry e = {
        .client_ip = client_ip,
        .request_line = l->cfg->proto == PROTO_TCP ? "TCP" : NULL,
        .listener = l->cfg->name,
        .reason = reason,
        .status = RL_CLOSED_STATUS,
    };
    access_log_write(l->alog, &e);
}

bool ratelimit_conn_admit(struct listener_rt *l, const char *client_ip, struct rl_hold *hold)
{
    hold->table = NULL;
    const struct cfg_conn_limit *cl = &l->cfg->conn_limit;
    struct rl_table *tab = cl->max ? ratelimit_table(l->w->sh->rl, l->index, l->cfg->n_rate_limits) : NULL;
    if (!tab)
        return true;
    if (ratelimit_conn_acquire(tab, ratelimit_hash(tab, client_ip, strlen(client_ip)), cl->max, hold)) {
        atomic_fetch_add_explicit(&tab->ctr.passed, 1, memory_order_relaxed);
        return true;
    }
    atomic_fetch_add_explicit(&tab->ctr.rejected, 1, memory_order_relaxed);
    log_refused_conn(l, client_ip);
    return false;
}

/* ---- metrics ---- */

static void request_samples(struct strbuf *out, const struct proxy_conf *cfg, const struct shared_state *sh)
{
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct cfg_listener *l = &cfg->listeners[i];
        for (size_t k = 0; k < l->n_rate_limits; k++) {
            const struct rl_table *t = ratelimit_table(sh->rl, i, k);
            if (!t)
                continue;
            struct metric_label lb[3] = { { "listener", l->name }, { "limit", l->rate_limits[k].name },
                                          { "result", "passed" } };
            metrics_sample(out, "sluice_ratelimit_requests_total", lb, 3, atomic_load(&t->ctr.passed));
            lb[2].value = "rejected";
            metrics_sample(out, "sluice_ratelimit_requests_total", lb, 3, atomic_load(&t->ctr.rejected));
        }
    }
}

static void eviction_samples(struct strbuf *out, const struct proxy_conf *cfg, const struct shared_state *sh)
{
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct cfg_listener *l = &cfg->listeners[i];
        for (size_t k = 0; k < l->n_rate_limits; k++) {
            const struct rl_table *t = ratelimit_table(sh->rl, i, k);
            struct metric_label lb[2] = { { "listener", l->name }, { "limit", l->rate_limits[k].name } };
            if (t)
                metrics_sample(out, "sluice_ratelimit_evictions_total", lb, 2, atomic_load(&t->ctr.evicted));
        }
    }
}

static void connection_samples(struct strbuf *out, const struct proxy_conf *cfg, const struct shared_state *sh)
{
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct cfg_listener *l = &cfg->listeners[i];
        const struct rl_table *t = l->conn_limit.max ? ratelimit_table(sh->rl, i, l->n_rate_limits) : NULL;
        if (!t)
            continue;
        struct metric_label lb[2] = { { "listener", l->name }, { "result", "passed" } };
        metrics_sample(out, "sluice_connlimit_connections_total", lb, 2, atomic_load(&t->ctr.passed));
        lb[1].value = "rejected";
        metrics_sample(out, "sluice_connlimit_connections_total", lb, 2, atomic_load(&t->ctr.rejected));
    }
}

void ratelimit_metrics(struct strbuf *out, const struct proxy_conf *cfg, const struct shared_state *sh)
{
    metrics_family(out, "sluice_ratelimit_requests_total", "counter",
                   "Requests checked against a rate limit of the listener (rate_limits), by result: passed, or "
                   "rejected (answered with the limit's status, or closed).");
    if (cfg && sh)
        request_samples(out, cfg, sh);
    metrics_family(out, "sluice_ratelimit_evictions_total", "counter",
                   "Keys of a rate limit that lost their bucket to make room for another (the limit's max_keys "
                   "is too small for the clients seen).");
    if (cfg && sh)
        eviction_samples(out, cfg, sh);
    metrics_family(out, "sluice_connlimit_connections_total", "counter",
                   "Client connections checked against the listener's connection_limit, by result: passed, or "
                   "rejected (closed at once).");
    if (cfg && sh)
        connection_samples(out, cfg, sh);
}
