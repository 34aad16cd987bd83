/* See stats_page.h. */
#include "proxy/stats_page.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/version.h"
#include "lib/html.h"
#include "proxy/proxy_latency.h"

#define REFRESH_MAX_S 3600

/* ---- text pieces ---- */

/* Every name and result on the page goes through html_escape: names come
 * from the configuration, addresses from a registry, check results from
 * the network, and none of them may become markup. */
static void cell_text(struct strbuf *out, const char *s)
{
    strbuf_puts(out, "<td>");
    html_escape(out, s);
    strbuf_puts(out, "</td>");
}

static void cell_u64(struct strbuf *out, uint64_t v)
{
    strbuf_printf(out, "<td class=n>%" PRIu64 "</td>", v);
}

/* 1536 -> "1.5 KiB": a person compares magnitudes. */
static void cell_bytes(struct strbuf *out, uint64_t v)
{
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
    double x = (double)v;
    size_t u = 0;
    while (x >= 1024.0 && u + 1 < sizeof units / sizeof units[0]) {
        x /= 1024.0;
        u++;
    }
    if (u == 0)
        strbuf_printf(out, "<td class=n>%" PRIu64 " B</td>", v);
    else
        strbuf_printf(out, "<td class=n>%.1f %s</td>", x, units[u]);
}

/* A quantile of h in ms or s, or a dash when nothing was observed. */
static void cell_quantile(struct strbuf *out, const struct latency_hist *h, double q)
{
    double s = latency_quantile(h, q);
    if (s < 0)
        strbuf_puts(out, "<td class=n>&ndash;</td>");
    else if (s < 1.0)
        strbuf_printf(out, "<td class=n>%.2f ms</td>", s * 1000.0);
    else
        strbuf_printf(out, "<td class=n>%.2f s</td>", s);
}

static void duration_text(struct strbuf *out, uint64_t ms)
{
    uint64_t s = ms / 1000;
    if (s >= 86400)
        strbuf_printf(out, "%" PRIu64 "d %" PRIu64 "h", s / 86400, s % 86400 / 3600);
    else if (s >= 3600)
        strbuf_printf(out, "%" PRIu64 "h %" PRIu64 "m", s / 3600, s % 3600 / 60);
    else if (s >= 60)
        strbuf_printf(out, "%" PRIu64 "m %" PRIu64 "s", s / 60, s % 60);
    else
        strbuf_printf(out, "%" PRIu64 "s", s);
}

/* ---- the page ---- */

static const char style[] =
    "body{font-family:sans-serif;font-size:13px;margin:12px;color:#222;background:#fff}"
    "h1{font-size:18px;margin:0 0 4px}h2{font-size:15px;margin:18px 0 4px}"
    "p.meta{margin:0 0 8px;color:#555}"
    "table{border-collapse:collapse;margin-bottom:6px}"
    "th,td{border:1px solid #bbb;padding:2px 6px;white-space:nowrap}"
    "th{background:#d8dde8;font-weight:600}td.n{text-align:right;font-family:monospace}"
    "tr.total td{background:#eef0f4;font-weight:600}"
    "td.st{font-weight:700;text-align:center}"
    ".UP{background:#7fd17f}.DOWN{background:#f08080}.DRAIN{background:#8fb8f0}"
    ".DISABLED{background:#c8c8c8}.EJECTED{background:#f4b860}.SLOW{background:#c6ecb0}"
    "td.hc{white-space:normal;min-width:180px;max-width:320px;font-size:12px}"
    ".note{color:#666}";

static void page_head(struct strbuf *out, const struct proxy_admin *pa, unsigned refresh_s, uint64_t now_ms)
{
    const struct admin_status *st = &pa->site->status;
    strbuf_puts(out, "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>");
    if (refresh_s)
        strbuf_printf(out, "<meta http-equiv=refresh content=\"%u\">", refresh_s);
    strbuf_printf(out, "<title>Sluice proxy stats</title><style>%s</style></head><body>\n", style);
    strbuf_puts(out, "<h1>Sluice proxy</h1><p class=meta>version ");
    html_escape(out, st->version ? st->version : SLUICE_VERSION);
    strbuf_printf(out, " &middot; pid %d &middot; up ", (int)getpid());
    duration_text(out, now_ms > st->started_ms ? now_ms - st->started_ms : 0);
    strbuf_printf(out, " &middot; %u worker%s &middot; %u reload%s", st->n_workers, st->n_workers == 1 ? "" : "s",
                  st->reloads, st->reloads == 1 ? "" : "s");
    if (refresh_s)
        strbuf_printf(out, " &middot; refreshing every %u s (<a href=\"stats\">stop</a>)", refresh_s);
    else
        strbuf_puts(out, " &middot; refresh: <a href=\"stats?refresh=5\">every 5 s</a>");
    strbuf_puts(out, " &middot; JSON: <a href=\"api/pools\">/api/pools</a>, "
                     "Prometheus: <a href=\"metrics\">/metrics</a></p>\n");
}

static const char *proto_name(enum listener_proto p)
{
    return p == PROTO_TCP ? "tcp" : p == PROTO_UDP ? "udp" : "http";
}

static void listener_row(struct strbuf *out, const struct proxy_admin *pa, size_t l)
{
    const struct cfg_listener *lc = &pa->cfg->listeners[l];
    struct listener_counters c;
    shared_sum_listener(pa->sh, l, &c);
    strbuf_puts(out, "<tr>");
    cell_text(out, lc->name);
    cell_text(out, proto_name(lc->proto));
    cell_text(out, lc->tls ? "yes" : "no");
    cell_u64(out, atomic_load(&c.active));
    cell_u64(out, atomic_load(&c.connections));
    cell_u64(out, atomic_load(&c.requests));
    for (int k = 2; k <= 5; k++)
        cell_u64(out, atomic_load(&c.responses[k]));
    cell_u64(out, atomic_load(&c.rejected));
    cell_u64(out, atomic_load(&c.no_backend));
    cell_u64(out, atomic_load(&c.timeouts));
    /* An http listener's latency is per request, a tcp one's per connection. */
    const struct latency_hist *h = lc->proto == PROTO_HTTP ? &c.request_time : &c.connection_time;
    cell_quantile(out, h, 0.5);
    cell_quantile(out, h, 0.99);
    cell_bytes(out, atomic_load(&c.bytes_received));
    cell_bytes(out, atomic_load(&c.bytes_sent));
    strbuf_puts(out, "</tr>\n");
}

static void listeners_table(struct strbuf *out, const struct proxy_admin *pa)
{
    strbuf_puts(out, "<h2>Listeners</h2><table><tr><th>name</th><th>proto</th><th>tls</th><th>active</th>"
                     "<th>connections</th><th>requests</th><th>2xx</th><th>3xx</th><th>4xx</th><th>5xx</th>"
                     "<th>rejected</th><th>no backend</th><th>timeouts</th><th>p50</th><th>p99</th>"
                     "<th>bytes in</th><th>bytes out</th></tr>\n");
    for (size_t l = 0; l < pa->cfg->n_listeners; l++)
        listener_row(out, pa, l);
    strbuf_puts(out, "</table><p class=note>p50/p99: http requests, first byte in to last byte out; "
                     "tcp connections, open to close.</p>\n");
}

/* The state as HAProxy users read it, and its colour class. */
static const char *state_class(const char *state)
{
    if (!strcmp(state, "up"))
        return "UP";
    if (!strcmp(state, "down"))
        return "DOWN";
    if (!strcmp(state, "draining") || !strcmp(state, "drained") || !strcmp(state, "removed"))
        return "DRAIN";
    if (!strcmp(state, "disabled"))
        return "DISABLED";
    if (!strcmp(state, "ejected"))
        return "EJECTED";
    return "SLOW"; /* slow-start */
}

static void state_cell(struct strbuf *out, const char *state)
{
    const char *cls = state_class(state);
    strbuf_printf(out, "<td class=\"st %s\">", cls);
    for (const char *s = state; *s; s++) /* the label in capitals, as HAProxy shows it */
        strbuf_printf(out, "%c", *s >= 'a' && *s <= 'z' ? *s - 'a' + 'A' : *s);
    strbuf_puts(out, "</td>");
}

/* Totals of a pool's rows, for its last line. */
struct pool_total {
    uint64_t active, requests, errors, responses[6], retries, bytes_sent, bytes_received;
};

static void backend_row(struct strbuf *out, const struct proxy_admin *pa, size_t p, size_t b, uint64_t now,
                        struct pool_total *tot)
{
    const struct pool_view *v = &pa->view;
    struct pool_backend_info r;
    v->ops->backend(v->arg, p, b, now, &r);
    size_t g = proxy_admin_backend_gidx(pa, p, b);
    struct backend_counters c;
    shared_sum_backend(pa->sh, g, &c);
    if (pa->cfg->pools[p].discovery) {
        const struct backend_counters *base = proxy_discovery_baseline(pa->disc, g);
        if (base) {
            latency_sub(&c.connect_time, &base->connect_time);
            latency_sub(&c.header_time, &base->header_time);
        }
    }
    const struct pool_traffic *t = &r.traffic;
    uint64_t errors = t->connect_failures + t->upstream_errors;
    strbuf_puts(out, "<tr>");
    cell_text(out, v->ops->backend_addr(v->arg, p, b)->text);
    state_cell(out, r.state);
    strbuf_printf(out, "<td class=n>%" PRIu32 " / %" PRIu32 "</td>", r.effective_weight, r.ctl.weight);
    cell_u64(out, t->active);
    cell_u64(out, t->idle);
    cell_u64(out, t->requests);
    cell_u64(out, errors);
    for (int k = 1; k <= 4; k++) /* label order: 2xx..5xx */
        cell_u64(out, t->responses[k]);
    cell_u64(out, t->retries);
    cell_quantile(out, &c.connect_time, 0.5);
    cell_quantile(out, &c.header_time, 0.5);
    cell_quantile(out, &c.header_time, 0.99);
    /* Since the last change of the check's verdict (HAProxy's "last
     * status change"); nothing before the first one. */
    uint64_t changed = pa->sh->backends[g].health_changed_ms;
    strbuf_printf(out, "<td class=hc>%s", r.ctl.up ? "up" : "down");
    if (changed && now >= changed) {
        strbuf_puts(out, " for ");
        duration_text(out, now - changed);
    }
    strbuf_puts(out, ": ");
    html_escape(out, r.last_check);
    strbuf_printf(out, " (%" PRIu64 " ok, %" PRIu64 " failed)</td>", r.checks_ok, r.checks_failed);
    cell_bytes(out, t->bytes_sent);
    cell_bytes(out, t->bytes_received);
    strbuf_puts(out, "</tr>\n");
    tot->active += t->active;
    tot->requests += t->requests;
    tot->errors += errors;
    for (int k = 0; k < 6; k++)
        tot->responses[k] += t->responses[k];
    tot->retries += t->retries;
    tot->bytes_sent += t->bytes_sent;
    tot->bytes_received += t->bytes_received;
}

static void pool_table(struct strbuf *out, const struct proxy_admin *pa, size_t p, uint64_t now)
{
    const struct pool_view *v = &pa->view;
    strbuf_puts(out, "<h2>Pool ");
    html_escape(out, v->ops->pool_name(v->arg, p));
    strbuf_puts(out, " <span class=note>(");
    html_escape(out, v->ops->pool_algorithm(v->arg, p));
    strbuf_puts(out, ")</span></h2>\n<table><tr><th>backend</th><th>state</th><th>weight<br>eff / admin</th>"
                     "<th>active</th><th>idle</th><th>requests</th><th>errors</th><th>2xx</th><th>3xx</th>"
                     "<th>4xx</th><th>5xx</th><th>retries</th><th>connect<br>p50</th><th>response<br>p50</th>"
                     "<th>response<br>p99</th><th>health check</th><th>bytes out</th><th>bytes in</th></tr>\n");
    struct pool_total tot = { 0 };
    size_t n = v->ops->n_backends(v->arg, p);
    for (size_t b = 0; b < n; b++)
        backend_row(out, pa, p, b, now, &tot);
    struct latency_hist connect, header;
    proxy_latency_pool(pa, p, &connect, &header);
    strbuf_printf(out, "<tr class=total><td>total (%zu)</td><td></td><td></td>", n);
    cell_u64(out, tot.active);
    strbuf_puts(out, "<td></td>");
    cell_u64(out, tot.requests);
    cell_u64(out, tot.errors);
    for (int k = 1; k <= 4; k++)
        cell_u64(out, tot.responses[k]);
    cell_u64(out, tot.retries);
    cell_quantile(out, &connect, 0.5);
    cell_quantile(out, &header, 0.5);
    cell_quantile(out, &header, 0.99);
    strbuf_puts(out, "<td></td>");
    cell_bytes(out, tot.bytes_sent);
    cell_bytes(out, tot.bytes_received);
    strbuf_puts(out, "</tr></table>\n");
}

/* ?refresh=N: 0 (none), or 1..REFRESH_MAX_S; -1 for anything else. */
static int parse_refresh(const char *s)
{
    if (!s)
        return 0;
    if (!*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 4)
        return -1;
    long v = strtol(s, NULL, 10);
    return v >= 1 && v <= REFRESH_MAX_S ? (int)v : -1;
}

static void stats_handler(void *arg, const struct admin_request *rq, struct admin_reply *reply)
{
    struct proxy_admin *pa = arg;
    if (!admin_is_get(rq)) {
        admin_reply_method_not_allowed(reply, "GET, HEAD");
        return;
    }
    if (rq->n_seg) {
        admin_reply_error(reply, 404, "no such page: /stats has no subpages");
        return;
    }
    int refresh = parse_refresh(admin_query_get(rq, "refresh"));
    if (refresh < 0) {
        admin_reply_error(reply, 400, "refresh: expected whole seconds from 1 to %d", REFRESH_MAX_S);
        return;
    }
    const struct pool_view *v = &pa->view;
    if (v->ops->consistent && !v->ops->consistent(v->arg)) {
        admin_reply_error(reply, 503, "the configuration is being replaced; try again");
        return;
    }
    struct strbuf out = { 0 };
    page_head(&out, pa, (unsigned)refresh, rq->now_ms);
    listeners_table(&out, pa);
    size_t n_pools = v->ops->n_pools(v->arg);
    for (size_t p = 0; p < n_pools; p++)
        pool_table(&out, pa, p, rq->now_ms);
    strbuf_puts(&out, "<p class=note>weight: effective (after health, drain, slow start) / admin. errors: failed "
                      "connects and upstream errors. connect: new TCP connections; response: from the start of "
                      "the try to the first response byte. Latency quantiles are estimated from the histogram "
                      "buckets, as histogram_quantile() does.</p>\n</body></html>\n");
    size_t len;
    char *body = strbuf_finish(&out, &len);
    if (!body) {
        admin_reply_error(reply, 500, "out of memory");
        return;
    }
    admin_reply_text(reply, 200, body, len);
    reply->content_type = "text/html; charset=utf-8";
}

int stats_page_mount(struct admin_site *site, struct proxy_admin *pa)
{
    return admin_mount(site, NULL, "/stats", stats_handler, pa);
}
