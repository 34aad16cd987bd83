/* See pool_view.h. */
#include "core/pool_view.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/admin.h"
#include "core/log.h"
#include "core/metrics.h"

/* ------------------------------------------------------------------ */
/* A backend's control state */

const char *backend_admin_name(uint32_t a)
{
    switch (a) {
    case BACKEND_DRAINING: return "draining";
    case BACKEND_DISABLED: return "disabled";
    default: return "enabled";
    }
}

uint32_t backend_effective_weight(const struct backend_ctl *b, uint32_t slow_start_ms, uint64_t now_ms)
{
    if (b->admin != BACKEND_ENABLED || !b->up || b->ejected_until_ms > now_ms)
        return 0;
    uint32_t w = b->weight;
    if (w && slow_start_ms) {
        uint64_t since = b->up_since_ms;
        if (b->ejected_until_ms > since)
            since = b->ejected_until_ms;
        if (now_ms < since + slow_start_ms) {
            uint64_t ramp = (uint64_t)w * (now_ms - since) / slow_start_ms;
            w = ramp ? (uint32_t)ramp : 1;
        }
    }
    return w;
}

const char *backend_state_name(const struct backend_ctl *b, uint32_t slow_start_ms, uint64_t now_ms)
{
    if (b->admin == BACKEND_DISABLED)
        return "disabled";
    if (!b->up)
        return "down";
    if (b->ejected_until_ms > now_ms)
        return "ejected";
    if (b->admin == BACKEND_DRAINING)
        return "draining";
    if (b->weight == 0)
        return "drained"; /* weight 0: healthy, but takes no new traffic */
    if (slow_start_ms && b->weight > 1 && backend_effective_weight(b, slow_start_ms, now_ms) < b->weight)
        return "slow-start";
    return "up";
}

/* ------------------------------------------------------------------ */
/* PATCH bodies */

static int parse_admin_name(const char *s, uint32_t *out)
{
    static const struct { const char *name; uint32_t v; } names[] = {
        {"enabled", BACKEND_ENABLED}, {"draining", BACKEND_DRAINING}, {"disabled", BACKEND_DISABLED}};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strcmp(s, names[i].name) == 0) {
            *out = names[i].v;
            return 0;
        }
    return -1;
}

static int patch_field(const char *key, json_t *val, bool weight_only, struct backend_patch *pt, char *err,
                       size_t errlen)
{
    if (strcmp(key, "weight") == 0) {
        if (!json_is_integer(val)) {
            snprintf(err, errlen, "\"weight\" must be an integer");
            return -1;
        }
        json_int_t w = json_integer_value(val);
        if (w < 0 || w > POOL_VIEW_MAX_WEIGHT) {
            snprintf(err, errlen, "\"weight\" must be from 0 to %d, got %" JSON_INTEGER_FORMAT, POOL_VIEW_MAX_WEIGHT,
                     w);
            return -1;
        }
        pt->has_weight = true;
        pt->weight = (uint32_t)w;
        return 0;
    }
    if (strcmp(key, "admin") == 0 && !weight_only) {
        if (!json_is_string(val)) {
            snprintf(err, errlen, "\"admin\" must be a string: \"enabled\", \"draining\" or \"disabled\"");
            return -1;
        }
        if (parse_admin_name(json_string_value(val), &pt->admin) < 0) {
            snprintf(err, errlen, "unknown admin state \"%.64s\" (expected \"enabled\", \"draining\" or \"disabled\")",
                     json_string_value(val));
            return -1;
        }
        pt->has_admin = true;
        return 0;
    }
    if (weight_only)
        snprintf(err, errlen, "unknown field \"%.64s\" (only \"weight\" is accepted here)", key);
    else
        snprintf(err, errlen, "unknown field \"%.64s\" (expected \"weight\" and/or \"admin\")", key);
    return -1;
}

/* Parse body as one JSON object and hand each field to fn, up to the first
 * that fails; 0, or -1 with a reason in err. */
typedef int body_field_fn(const char *key, json_t *val, void *ctx, char *err, size_t errlen);
static int walk_body_object(const char *body, size_t len, body_field_fn *fn, void *ctx, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_loadb(body ? body : "", body ? len : 0, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!root) {
        snprintf(err, errlen, "invalid JSON: %s at line %d, column %d (position %d)", je.text, je.line,
                 je.column, je.position);
        return -1;
    }
    int rc = 0;
    if (!json_is_object(root)) {
        snprintf(err, errlen, "the body must be a JSON object");
        rc = -1;
    } else {
        const char *key;
        json_t *val;
        json_object_foreach(root, key, val) {
            if (fn(key, val, ctx, err, errlen) < 0) {
                rc = -1;
                break;
            }
        }
    }
    json_decref(root);
    return rc;
}

struct patch_walk {
    bool weight_only;
    struct backend_patch *pt;
};

static int patch_walk_field(const char *key, json_t *val, void *ctx, char *err, size_t errlen)
{
    struct patch_walk *w = ctx;
    return patch_field(key, val, w->weight_only, w->pt, err, errlen);
}

int backend_patch_parse(const char *body, size_t len, bool weight_only, struct backend_patch *pt, char *err,
                        size_t errlen)
{
    memset(pt, 0, sizeof *pt);
    struct patch_walk w = {weight_only, pt};
    int rc = walk_body_object(body, len, patch_walk_field, &w, err, errlen);
    if (rc == 0 && weight_only && !pt->has_weight) {
        snprintf(err, errlen, "\"weight\" is required");
        rc = -1;
    } else if (rc == 0 && !pt->has_weight && !pt->has_admin) {
        snprintf(err, errlen, "nothing to change: set \"weight\" and/or \"admin\"");
        rc = -1;
    }
    if (rc < 0)
        memset(pt, 0, sizeof *pt);
    return rc;
}

/* POST /api/pools/{pool}/backends: {"address": "IP:PORT", "weight": N} */
struct add_walk {
    struct sl_addr *addr;
    bool has_addr;
    uint32_t *weight;
};

static int add_field(const char *key, json_t *val, void *ctx, char *err, size_t errlen)
{
    struct add_walk *w = ctx;
    if (strcmp(key, "address") == 0) {
        const char *why = NULL;
        if (!json_is_string(val)) {
            snprintf(err, errlen, "\"address\" must be a string like \"10.0.0.7:8080\"");
            return -1;
        }
        if (addr_parse(json_string_value(val), w->addr, &why) < 0) {
            snprintf(err, errlen, "\"address\": %s (an IP address and a port: names go in the file)", why);
            return -1;
        }
        if (addr_port(w->addr) == 0) {
            snprintf(err, errlen, "\"address\": the port must be from 1 to 65535");
            return -1;
        }
        w->has_addr = true;
        return 0;
    }
    if (strcmp(key, "weight") == 0) {
        struct backend_patch pt = {0};
        if (patch_field(key, val, true, &pt, err, errlen) < 0)
            return -1;
        *w->weight = pt.weight;
        return 0;
    }
    snprintf(err, errlen, "unknown field \"%.64s\" (expected \"address\" and optionally \"weight\")", key);
    return -1;
}

int backend_add_parse(const char *body, size_t len, struct sl_addr *addr, uint32_t *weight, char *err,
                      size_t errlen)
{
    *weight = 1;
    struct add_walk w = {addr, false, weight};
    int rc = walk_body_object(body, len, add_field, &w, err, errlen);
    if (rc == 0 && !w.has_addr) {
        snprintf(err, errlen, "\"address\" is required");
        rc = -1;
    }
    return rc;
}

/* ------------------------------------------------------------------ */
/* /metrics: sluice_listener_* and sluice_backend_* */

/* Flattened values of one backend or listener, so the families below can
 * be emitted from a table. Arrays are in the order of their label values. */
struct brow {
    const char *pool, *addr;
    uint64_t requests, responses[6], connect_failures, upstream_errors, retries;
    uint64_t bytes_sent, bytes_received, active, idle, up, eff_weight, weight, checks[2];
};

struct lrow {
    const char *name;
    uint64_t connections, requests, responses[6], rejected, no_backend, timeouts, bytes_received, bytes_sent, active;
    uint64_t underscore_dropped[2], body_timeouts;
    uint64_t h2_connections, h2_streams, h2_flood_closes[6];
    uint64_t proxy_headers[4];
};

static const struct metric_label_values code_labels = {"code", {"1xx", "2xx", "3xx", "4xx", "5xx", "other"}, 6};
static const struct metric_label_values result_labels = {"result", {"ok", "failed"}, 2};
static const struct metric_label_values direction_labels = {"direction", {"request", "response"}, 2};
static const struct metric_label_values flood_labels = {
    "kind", {"reset", "ping", "settings", "empty_frames", "continuation", "ack_queue"}, 6};
static const struct metric_label_values proxy_header_labels = {
    "result", {"accepted", "untrusted", "invalid", "timeout"}, 4};

/* Bytes convention (see docs/admin-api.md): bytes as Sluice's own sockets
 * send and receive them, in each direction separately, heads and bodies
 * alike: what was written to or read from the peer the family is about. */
static const struct metric_row_family backend_families[] = {
    {"sluice_backend_requests_total", "counter",
     "Requests sent to the backend, counted when their first byte goes out; a retry counts again on the backend "
     "it goes to (TCP: connections established; UDP: sessions opened).",
     offsetof(struct brow, requests), NULL},
    {"sluice_backend_responses_total", "counter",
     "Final HTTP response heads received from the backend, by status class (interim 1xx are not counted, 101 is).",
     offsetof(struct brow, responses), &code_labels},
    {"sluice_backend_connect_failures_total", "counter",
     "Connection attempts to the backend that failed: refused, unreachable or timed out "
     "(UDP: ICMP port unreachable).",
     offsetof(struct brow, connect_failures), NULL},
    {"sluice_backend_upstream_errors_total", "counter",
     "Failures after the connection was made: resets, early closes, response timeouts and invalid responses "
     "(UDP: datagrams dropped, too large or a full socket buffer).",
     offsetof(struct brow, upstream_errors), NULL},
    {"sluice_backend_retries_total", "counter",
     "Requests (TCP: connections) that failed on this backend and were then tried on another one.",
     offsetof(struct brow, retries), NULL},
    {"sluice_backend_bytes_sent_total", "counter",
     "Bytes Sluice sent to the backend: request heads (as rewritten) and bodies, tunnelled bytes "
     "(TCP: the stream; UDP: datagram payloads).",
     offsetof(struct brow, bytes_sent), NULL},
    {"sluice_backend_bytes_received_total", "counter",
     "Bytes Sluice received from the backend: response heads and bodies, tunnelled bytes "
     "(TCP: the stream; UDP: datagram payloads).",
     offsetof(struct brow, bytes_received), NULL},
    {"sluice_backend_active_connections", "gauge",
     "Connections to the backend in use, connecting ones included (UDP: sessions).", offsetof(struct brow, active),
     NULL},
    {"sluice_backend_idle_connections", "gauge", "Idle pooled keep-alive connections to the backend.",
     offsetof(struct brow, idle), NULL},
    {"sluice_backend_up", "gauge",
     "1 when the backend passes active health checks and is not ejected by passive checks, else 0.",
     offsetof(struct brow, up), NULL},
    {"sluice_backend_effective_weight", "gauge",
     "Weight used for balancing now (0 when down, ejected, draining or disabled; ramped in slow start).",
     offsetof(struct brow, eff_weight), NULL},
    {"sluice_backend_weight", "gauge", "Configured or API-set weight of the backend.", offsetof(struct brow, weight),
     NULL},
    {"sluice_backend_health_checks_total", "counter", "Active health checks run against the backend, by result.",
     offsetof(struct brow, checks), &result_labels},
};

static const struct metric_row_family listener_families[] = {
    {"sluice_listener_connections_total", "counter", "Client connections accepted (UDP: sessions opened).",
     offsetof(struct lrow, connections), NULL},
    {"sluice_listener_requests_total", "counter",
     "Client requests with a well-formed head (TCP: connections; UDP: sessions).",
     offsetof(struct lrow, requests), NULL},
    {"sluice_listener_responses_total", "counter",
     "Final HTTP responses to clients, Sluice's own error responses included, by status class "
     "(interim 1xx are not counted, 101 is).",
     offsetof(struct lrow, responses), &code_labels},
    {"sluice_listener_rejected_total", "counter",
     "Requests that Sluice answered itself with a 4xx: malformed or too large, no route, client too slow (408).",
     offsetof(struct lrow, rejected), NULL},
    {"sluice_listener_no_backend_total", "counter",
     "Requests turned away because no backend of the pool was available: HTTP answers 503 "
     "(TCP: connections closed; UDP: datagrams dropped).",
     offsetof(struct lrow, no_backend), NULL},
    {"sluice_listener_timeouts_total", "counter",
     "Timeouts that ran out on a request or connection in progress: client_header (part of a head received), "
     "request body, connect, upstream_response, idle of a tunnel or TCP connection.",
     offsetof(struct lrow, timeouts), NULL},
    {"sluice_listener_bytes_received_total", "counter",
     "Bytes Sluice received from clients: request heads and bodies, tunnelled bytes "
     "(TCP: the stream; UDP: datagram payloads).",
     offsetof(struct lrow, bytes_received), NULL},
    {"sluice_listener_bytes_sent_total", "counter",
     "Bytes Sluice sent to clients: response heads (as rewritten) and bodies, Sluice's own error responses, "
     "tunnelled bytes (TCP: the stream; UDP: datagram payloads).",
     offsetof(struct lrow, bytes_sent), NULL},
    {"sluice_listener_active_connections", "gauge", "Open client connections (UDP: sessions).",
     offsetof(struct lrow, active), NULL},
    {"sluice_listener_underscore_headers_dropped_total", "counter",
     "Header fields dropped because their name contains '_' (request: all of them unless "
     "allow_underscores_in_headers; response: look-alikes of framing headers).",
     offsetof(struct lrow, underscore_dropped), &direction_labels},
    {"sluice_listener_client_body_timeouts_total", "counter",
     "Requests cut because their body did not arrive within timeouts.client_body (plus the "
     "limits.min_body_rate allowance).",
     offsetof(struct lrow, body_timeouts), NULL},
    {"sluice_http2_connections_total", "counter",
     "Client connections that spoke HTTP/2 (h2c prior knowledge, or TLS with ALPN h2).",
     offsetof(struct lrow, h2_connections), NULL},
    {"sluice_http2_streams_total", "counter",
     "HTTP/2 requests with a well-formed head (also counted in sluice_listener_requests_total).",
     offsetof(struct lrow, h2_streams), NULL},
    {"sluice_http2_flood_closes_total", "counter",
     "HTTP/2 connections closed with GOAWAY ENHANCE_YOUR_CALM by a flood defence, by kind: RST_STREAM "
     "(rapid reset), PING, SETTINGS or empty DATA frames past the http2.max_* budgets, more CONTINUATION frames "
     "than http2.max_continuations, or acknowledgements queued for a client that does not read.",
     offsetof(struct lrow, h2_flood_closes), &flood_labels},
    {"sluice_listener_proxy_headers_total", "counter",
     "PROXY protocol headers on listeners with proxy_protocol, by result: accepted, untrusted (the peer is "
     "not in trusted_proxies; closed before reading), invalid (malformed, of a version not accepted, or no "
     "header), timeout (not complete within timeouts.client_header).",
     offsetof(struct lrow, proxy_headers), &proxy_header_labels},
};


static bool consistent(const struct pool_view *v)
{
    return !v->ops->consistent || v->ops->consistent(v->arg);
}

static void fill_brow(const struct pool_view *v, size_t p, size_t b, uint64_t now, struct brow *r)
{
    struct pool_backend_info in;
    v->ops->backend(v->arg, p, b, now, &in);
    memset(r, 0, sizeof *r);
    r->pool = v->ops->pool_name(v->arg, p);
    r->addr = v->ops->backend_addr(v->arg, p, b)->text;
    r->requests = in.traffic.requests;
    memcpy(r->responses, in.traffic.responses, sizeof r->responses);
    r->connect_failures = in.traffic.connect_failures;
    r->upstream_errors = in.traffic.upstream_errors;
    r->retries = in.traffic.retries;
    r->bytes_sent = in.traffic.bytes_sent;
    r->bytes_received = in.traffic.bytes_received;
    r->active = in.traffic.active;
    r->idle = in.traffic.idle;
    r->up = in.ctl.up && in.ctl.ejected_until_ms <= now;
    r->eff_weight = in.effective_weight;
    r->weight = in.ctl.weight;
    r->checks[0] = in.checks_ok;
    r->checks[1] = in.checks_failed;
}

static void fill_lrow(const struct pool_view *v, size_t l, struct lrow *r)
{
    struct pool_listener_info in;
    memset(&in, 0, sizeof in);
    v->ops->listener(v->arg, l, &in);
    memset(r, 0, sizeof *r);
    r->name = in.name;
    r->connections = in.connections;
    r->requests = in.requests;
    memcpy(r->responses, in.responses, sizeof r->responses);
    r->rejected = in.rejected;
    r->no_backend = in.no_backend;
    r->timeouts = in.timeouts;
    r->bytes_received = in.bytes_received;
    r->bytes_sent = in.bytes_sent;
    r->active = in.active;
    memcpy(r->underscore_dropped, in.underscore_dropped, sizeof r->underscore_dropped);
    r->body_timeouts = in.body_timeouts;
    r->h2_connections = in.h2_connections;
    r->h2_streams = in.h2_streams;
    memcpy(r->h2_flood_closes, in.h2_flood_closes, sizeof r->h2_flood_closes);
    memcpy(r->proxy_headers, in.proxy_headers, sizeof r->proxy_headers);
}

static void brow_labels(struct strbuf *s, const void *row)
{
    const struct brow *r = row;
    metrics_label(s, "pool", r->pool, 1);
    metrics_label(s, "backend", r->addr, 0);
}

static void lrow_labels(struct strbuf *s, const void *row)
{
    const struct lrow *r = row;
    metrics_label(s, "listener", r->name ? r->name : "", 1);
}

/* The listener families, then the backend families; none of them while
 * the model is being replaced. */
static void collect(void *arg, struct strbuf *out)
{
    const struct pool_view *v = arg;
    if (!consistent(v))
        return;
    uint64_t now = ev_clock_ms();
    size_t nl = v->ops->n_listeners(v->arg), np = v->ops->n_pools(v->arg), nb = 0;
    for (size_t p = 0; p < np; p++)
        nb += v->ops->n_backends(v->arg, p);
    struct lrow *lrows = calloc(nl + 1, sizeof *lrows);
    struct brow *brows = calloc(nb + 1, sizeof *brows);
    if (!lrows || !brows) {
        out->oom = true;
    } else {
        for (size_t l = 0; l < nl; l++)
            fill_lrow(v, l, &lrows[l]);
        size_t i = 0;
        for (size_t p = 0; p < np; p++)
            for (size_t b = 0; b < v->ops->n_backends(v->arg, p); b++)
                fill_brow(v, p, b, now, &brows[i++]);
        metrics_emit_rows(out, listener_families, sizeof listener_families / sizeof *listener_families, lrows, nl,
                          sizeof *lrows, lrow_labels);
        metrics_emit_rows(out, backend_families, sizeof backend_families / sizeof *backend_families, brows, i,
                          sizeof *brows, brow_labels);
    }
    free(lrows);
    free(brows);
}

/* ------------------------------------------------------------------ */
/* JSON views */

static json_t *backend_json(const struct pool_view *v, size_t p, size_t b, uint64_t now)
{
    struct pool_backend_info in;
    v->ops->backend(v->arg, p, b, now, &in);
    const struct pool_traffic *c = &in.traffic;
    json_t *responses = json_object();
    for (size_t k = 0; k < code_labels.n; k++)
        json_object_set_new(responses, code_labels.values[k], json_integer((json_int_t)c->responses[k]));
    return json_pack("{s:s, s:I, s:I, s:s, s:s, s:{s:s, s:s, s:I, s:I}, s:I, s:{s:I, s:o, s:I, s:I, s:I, s:I, s:I, "
                     "s:I, s:I}}",
                     "address", v->ops->backend_addr(v->arg, p, b)->text,
                     "weight", (json_int_t)in.ctl.weight,
                     "effective_weight", (json_int_t)in.effective_weight,
                     "admin", backend_admin_name(in.ctl.admin),
                     "state", in.state,
                     "health",
                     "status", in.ctl.up ? "up" : "down",
                     "last_check", in.last_check,
                     "checks_ok", (json_int_t)in.checks_ok,
                     "checks_failed", (json_int_t)in.checks_failed,
                     "ejected_until_ms", (json_int_t)in.ejected_for_ms,
                     "counters",
                     "requests", (json_int_t)c->requests,
                     "responses", responses,
                     "connect_failures", (json_int_t)c->connect_failures,
                     "upstream_errors", (json_int_t)c->upstream_errors,
                     "retries", (json_int_t)c->retries,
                     "bytes_sent", (json_int_t)c->bytes_sent,
                     "bytes_received", (json_int_t)c->bytes_received,
                     "active", (json_int_t)c->active,
                     "idle", (json_int_t)c->idle);
}

static json_t *backends_json(const struct pool_view *v, size_t p, uint64_t now)
{
    json_t *arr = json_array();
    for (size_t b = 0; arr && b < v->ops->n_backends(v->arg, p); b++) {
        json_t *one = backend_json(v, p, b, now);
        if (!one || json_array_append_new(arr, one) < 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

static json_t *discovery_json(const struct pool_view *v, size_t p)
{
    struct pool_discovery_info d;
    memset(&d, 0, sizeof d);
    if (!v->ops->pool_discovery || !v->ops->pool_discovery(v->arg, p, &d))
        return NULL;
    return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:b, s:b, s:s}", "service", d.service ? d.service : "",
                     "source", d.source ? d.source : "none", "version", (json_int_t)d.version, "age_ms",
                     (json_int_t)d.age_ms, "members", (json_int_t)d.members, "instances", (json_int_t)d.instances,
                     "healthy", (json_int_t)d.healthy, "fail_open", d.fail_open, "registry_reachable",
                     d.registry_reachable, "node", d.node ? d.node : "");
}

static json_t *pool_json(const struct pool_view *v, size_t p, uint64_t now)
{
    json_t *pool = json_pack("{s:s, s:s, s:o*}", "name", v->ops->pool_name(v->arg, p), "algorithm",
                             v->ops->pool_algorithm(v->arg, p), "backends", backends_json(v, p, now));
    json_t *disc = pool ? discovery_json(v, p) : NULL;
    if (disc && json_object_set_new(pool, "discovery", disc) < 0) {
        json_decref(pool);
        return NULL;
    }
    return pool;
}

static json_t *pools_json(const struct pool_view *v, uint64_t now)
{
    json_t *arr = json_array();
    for (size_t p = 0; arr && p < v->ops->n_pools(v->arg); p++) {
        json_t *one = pool_json(v, p, now);
        if (!one || json_array_append_new(arr, one) < 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

/* ------------------------------------------------------------------ */
/* /api/pools */

int pool_view_find_pool(const struct pool_view *v, const char *name)
{
    for (size_t p = 0; p < v->ops->n_pools(v->arg); p++) {
        const char *n = v->ops->pool_name(v->arg, p);
        if (n && strcmp(n, name) == 0)
            return (int)p;
    }
    return -1;
}

int pool_view_find_backend(const struct pool_view *v, size_t p, const char *text)
{
    size_t n = v->ops->n_backends(v->arg, p);
    for (size_t b = 0; b < n; b++)
        if (strcmp(v->ops->backend_addr(v->arg, p, b)->text, text) == 0)
            return (int)b;
    struct sl_addr a;
    const char *why;
    if (addr_parse(text, &a, &why) < 0)
        return -1;
    for (size_t b = 0; b < n; b++)
        if (addr_equal(v->ops->backend_addr(v->arg, p, b), &a))
            return (int)b;
    return -1;
}

static void change_backend(const struct pool_view *v, const struct admin_request *rq, size_t p, size_t b,
                           const struct backend_patch *pt, struct admin_reply *r)
{
    struct pool_backend_info before, after;
    v->ops->backend(v->arg, p, b, rq->now_ms, &before);
    v->ops->change(v->arg, p, b, pt);
    v->ops->backend(v->arg, p, b, rq->now_ms, &after);
    log_info("admin API: pool %s backend %s: weight %" PRIu32 " -> %" PRIu32 ", admin %s -> %s",
             v->ops->pool_name(v->arg, p), v->ops->backend_addr(v->arg, p, b)->text, before.ctl.weight,
             after.ctl.weight, backend_admin_name(before.ctl.admin), backend_admin_name(after.ctl.admin));
    admin_reply_json(r, 200, backend_json(v, p, b, ev_clock_ms()));
}

/* POST {pool}/backends */
static void add_backend(const struct pool_view *v, const struct admin_request *rq, size_t p, struct admin_reply *r)
{
    char err[512];
    struct sl_addr a;
    uint32_t weight;
    if (!v->ops->add) {
        admin_reply_method_not_allowed(r, "GET, HEAD");
        return;
    }
    if (backend_add_parse(rq->body, rq->body_len, &a, &weight, err, sizeof err) < 0) {
        admin_reply_error(r, 400, "%s", err);
        return;
    }
    int status = v->ops->add(v->arg, p, &a, weight, err, sizeof err);
    if (status) {
        admin_reply_error(r, status, "%s", err);
        return;
    }
    log_info("admin API: pool %s: backend %s added (weight %" PRIu32 ")", v->ops->pool_name(v->arg, p), a.text,
             weight);
    int b = pool_view_find_backend(v, p, a.text);
    if (b >= 0)
        admin_reply_json(r, 201, backend_json(v, p, (size_t)b, ev_clock_ms()));
    else /* seated once a removed backend's slot has drained */
        admin_reply_json(r, 202, json_pack("{s:s, s:I, s:s}", "address", a.text, "weight", (json_int_t)weight,
                                           "state", "waiting for a free slot"));
}

/* DELETE {pool}/backends/{addr} */
static void remove_backend(const struct pool_view *v, const struct admin_request *rq, size_t p, size_t b,
                           struct admin_reply *r)
{
    char err[512];
    struct sl_addr a = *v->ops->backend_addr(v->arg, p, b);
    int status = v->ops->remove(v->arg, p, &a, err, sizeof err);
    if (status) {
        admin_reply_error(r, status, "%s", err);
        return;
    }
    log_info("admin API: pool %s: backend %s removed (it drains)", v->ops->pool_name(v->arg, p), a.text);
    int nb = pool_view_find_backend(v, p, a.text);
    if (nb >= 0)
        admin_reply_json(r, 200, backend_json(v, p, (size_t)nb, ev_clock_ms()));
    else
        admin_reply_json(r, 200, json_pack("{s:s, s:s}", "address", a.text, "state", "removed"));
}

/* seg: {pool} "backends" {addr} [action] */
static void handle_backend(const struct pool_view *v, const struct admin_request *rq, size_t p,
                           struct admin_reply *r)
{
    int b = pool_view_find_backend(v, p, rq->seg[2]);
    if (b < 0) {
        admin_reply_error(r, 404, "pool \"%s\" has no backend \"%s\"", v->ops->pool_name(v->arg, p), rq->seg[2]);
        return;
    }
    char err[512];
    struct backend_patch pt;
    if (rq->n_seg == 3) {
        if (!strcmp(rq->method, "DELETE") && v->ops->remove) {
            remove_backend(v, rq, p, (size_t)b, r);
        } else if (admin_is_get(rq)) {
            admin_reply_json(r, 200, backend_json(v, p, (size_t)b, rq->now_ms));
        } else if (!strcmp(rq->method, "PATCH")) {
            if (backend_patch_parse(rq->body, rq->body_len, false, &pt, err, sizeof err) < 0)
                admin_reply_error(r, 400, "%s", err);
            else
                change_backend(v, rq, p, (size_t)b, &pt, r);
        } else {
            admin_reply_method_not_allowed(r, v->ops->remove ? "GET, HEAD, PATCH, DELETE" : "GET, HEAD, PATCH");
        }
        return;
    }
    const char *action = rq->seg[3];
    memset(&pt, 0, sizeof pt);
    static const struct { const char *verb; uint32_t admin; } verbs[] = {
        {"drain", BACKEND_DRAINING}, {"disable", BACKEND_DISABLED}, {"enable", BACKEND_ENABLED}};
    for (size_t i = 0; rq->n_seg == 4 && i < sizeof verbs / sizeof *verbs; i++) {
        if (strcmp(action, verbs[i].verb) != 0)
            continue;
        /* No body needed; one that is sent anyway is ignored. */
        if (strcmp(rq->method, "POST") != 0) {
            admin_reply_method_not_allowed(r, "POST");
            return;
        }
        pt.has_admin = true;
        pt.admin = verbs[i].admin;
        change_backend(v, rq, p, (size_t)b, &pt, r);
        return;
    }
    if (rq->n_seg == 4 && !strcmp(action, "weight")) {
        if (strcmp(rq->method, "PUT") != 0)
            admin_reply_method_not_allowed(r, "PUT");
        else if (backend_patch_parse(rq->body, rq->body_len, true, &pt, err, sizeof err) < 0)
            admin_reply_error(r, 400, "%s", err);
        else
            change_backend(v, rq, p, (size_t)b, &pt, r);
    } else {
        admin_reply_error(r, 404, "no such path");
    }
}

/* Mounted at /api/pools: rq->seg is what follows. */
static void handle_pools(void *arg, const struct admin_request *rq, struct admin_reply *r)
{
    const struct pool_view *v = arg;
    if (!consistent(v)) {
        admin_reply_error(r, 503, "configuration is being replaced; try again");
        return;
    }
    if (rq->n_seg == 0) {
        if (!admin_is_get(rq))
            admin_reply_method_not_allowed(r, "GET, HEAD");
        else
            admin_reply_json(r, 200, pools_json(v, rq->now_ms));
        return;
    }
    int p = pool_view_find_pool(v, rq->seg[0]);
    if (p < 0) {
        admin_reply_error(r, 404, "no pool named \"%s\"", rq->seg[0]);
        return;
    }
    bool backends = rq->n_seg >= 2 && !strcmp(rq->seg[1], "backends");
    if (rq->n_seg == 2 && backends && !strcmp(rq->method, "POST")) {
        add_backend(v, rq, (size_t)p, r);
        return;
    }
    if (rq->n_seg == 1 || (rq->n_seg == 2 && backends)) {
        if (!admin_is_get(rq))
            admin_reply_method_not_allowed(r, "GET, HEAD");
        else if (rq->n_seg == 1)
            admin_reply_json(r, 200, pool_json(v, (size_t)p, rq->now_ms));
        else
            admin_reply_json(r, 200, backends_json(v, (size_t)p, rq->now_ms));
        return;
    }
    if (rq->n_seg >= 3 && backends) {
        handle_backend(v, rq, (size_t)p, r);
        return;
    }
    admin_reply_error(r, 404, "no such path");
}

int pool_view_mount(struct admin_site *site, const struct pool_view *view)
{
    if (admin_mount(site, NULL, "/api/pools", handle_pools, (void *)view) < 0)
        return -1;
    return metrics_register(&site->metrics, collect, (void *)view);
}
