/* See proxy_latency.h. */
#include "proxy/proxy_latency.h"

#include <string.h>

/* The same check as proxy_admin.c's view: cfg and sh are swapped together
 * on reload; never read one with the other's sizes. */
static bool consistent(const struct proxy_admin *pa)
{
    if (!pa || !pa->cfg || !pa->sh)
        return false;
    size_t n = 0;
    for (size_t p = 0; p < pa->cfg->n_pools; p++)
        n += cfg_pool_slots(&pa->cfg->pools[p]);
    return n == pa->sh->n_backends && pa->cfg->n_listeners == pa->sh->n_listeners;
}

void proxy_latency_pool(const struct proxy_admin *pa, size_t p, struct latency_hist *connect,
                        struct latency_hist *header)
{
    memset(connect, 0, sizeof *connect);
    memset(header, 0, sizeof *header);
    for (size_t g = pa->sh->pool_first[p]; g < pa->sh->pool_first[p + 1]; g++) {
        for (uint32_t w = 0; w < pa->sh->n_workers; w++) {
            const struct backend_counters *c = &pa->sh->bctr[(size_t)w * pa->sh->n_backends + g];
            latency_add(connect, &c->connect_time);
            latency_add(header, &c->header_time);
        }
    }
}

static void listener_histograms(const struct proxy_admin *pa, struct strbuf *out, const char *name,
                                enum listener_proto proto, size_t field_off)
{
    if (!consistent(pa))
        return;
    for (size_t l = 0; l < pa->cfg->n_listeners; l++) {
        if (pa->cfg->listeners[l].proto != proto)
            continue;
        struct latency_hist sum;
        memset(&sum, 0, sizeof sum);
        for (uint32_t w = 0; w < pa->sh->n_workers; w++) {
            const struct listener_counters *c = &pa->sh->lctr[(size_t)w * pa->sh->n_listeners + l];
            latency_add(&sum, (const struct latency_hist *)((const char *)c + field_off));
        }
        struct metric_label lb = { "listener", pa->cfg->listeners[l].name };
        latency_samples(out, name, &lb, 1, &sum);
    }
}

static void pool_histograms(const struct proxy_admin *pa, struct strbuf *out, bool header)
{
    const char *name = header ? "sluice_pool_upstream_header_duration_seconds"
                              : "sluice_pool_upstream_connect_duration_seconds";
    if (!consistent(pa))
        return;
    for (size_t p = 0; p < pa->cfg->n_pools; p++) {
        struct latency_hist connect, head;
        proxy_latency_pool(pa, p, &connect, &head);
        struct metric_label lb = { "pool", pa->cfg->pools[p].name };
        latency_samples(out, name, &lb, 1, header ? &head : &connect);
    }
}

void proxy_latency_collect(void *arg, struct strbuf *out)
{
    const struct proxy_admin *pa = arg;
    latency_family(out, "sluice_listener_request_duration_seconds",
                   "HTTP requests (HTTP/1 and HTTP/2) on the listener, from the first byte of the request to the "
                   "last byte of its response handed to the client (or Sluice's own error answer).");
    listener_histograms(pa, out, "sluice_listener_request_duration_seconds", PROTO_HTTP,
                        offsetof(struct listener_counters, request_time));
    latency_family(out, "sluice_listener_connection_duration_seconds",
                   "Connections of a tcp listener, from accept to close.");
    listener_histograms(pa, out, "sluice_listener_connection_duration_seconds", PROTO_TCP,
                        offsetof(struct listener_counters, connection_time));
    latency_family(out, "sluice_pool_upstream_connect_duration_seconds",
                   "TCP connects to the pool's backends that succeeded: new connections only (a pooled "
                   "keep-alive connection needs none), TLS handshake not included.");
    pool_histograms(pa, out, false);
    latency_family(out, "sluice_pool_upstream_header_duration_seconds",
                   "HTTP: from the start of the try (connect, or taking a pooled connection) to the first byte "
                   "of the backend's response, as nginx's $upstream_header_time.");
    pool_histograms(pa, out, true);
}
