/* See proxy_latency.h. */
#include "proxy/proxy_latency.h"

#include <string.h>

/* cfg and sh are swapped together on reload: the view's own check that
 * the two match, so one is never read with the other's sizes. */
static bool consistent(const struct proxy_admin *pa)
{
    const struct pool_view *v = &pa->view;
    return v->ops && v->ops->consistent(v->arg);
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

/* An http listener times requests, a tcp one connections. */
static const struct latency_hist *listener_hist(const struct listener_counters *c, enum listener_proto proto)
{
    return proto == PROTO_HTTP ? &c->request_time : &c->connection_time;
}

/* The histograms of the listeners of one protocol, one series each. */
static void listener_histograms(const struct proxy_admin *pa, struct strbuf *out, const char *name,
                                enum listener_proto proto)
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
            latency_add(&sum, listener_hist(c, proto));
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
    listener_histograms(pa, out, "sluice_listener_request_duration_seconds", PROTO_HTTP);
    latency_family(out, "sluice_listener_connection_duration_seconds",
                   "Connections of a tcp listener, from accept to close.");
    listener_histograms(pa, out, "sluice_listener_connection_duration_seconds", PROTO_TCP);
    latency_family(out, "sluice_pool_upstream_connect_duration_seconds",
                   "TCP connects to the pool's backends that succeeded: new connections only (a pooled "
                   "keep-alive connection needs none), TLS handshake not included.");
    pool_histograms(pa, out, false);
    latency_family(out, "sluice_pool_upstream_header_duration_seconds",
                   "HTTP: from the start of the try (connect, or taking a pooled connection) to the first byte "
                   "of the backend's response, as nginx's $upstream_header_time.");
    pool_histograms(pa, out, true);
}
