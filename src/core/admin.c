#include "core/admin.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "lib/http1.h"

#define CT_JSON "application/json"
#define CT_METRICS "text/plain; version=0.0.4"
#define ACCEPT_BATCH 64
#define ACCEPT_PAUSE_MS 100     /* back-off after EMFILE, so the loop does not spin */
#define IN_INITIAL 4096
#define IN_MAX (ADMIN_MAX_HEAD + ADMIN_MAX_BODY)
#define LINGER_MS 2000
#define LINGER_MAX_BYTES (1u << 20)

/* ------------------------------------------------------------------ */
/* A growing string; on out of memory it stops growing and remembers. */

struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static bool sb_reserve(struct sbuf *s, size_t extra)
{
    if (s->oom)
        return false;
    if (s->len + extra + 1 <= s->cap)
        return true;
    size_t cap = s->cap ? s->cap : 1024;
    while (cap < s->len + extra + 1)
        cap *= 2;
    char *p = realloc(s->p, cap);
    if (!p) {
        s->oom = true;
        return false;
    }
    s->p = p;
    s->cap = cap;
    return true;
}

static void sb_put(struct sbuf *s, const char *p, size_t n)
{
    if (!sb_reserve(s, n))
        return;
    memcpy(s->p + s->len, p, n);
    s->len += n;
    s->p[s->len] = '\0';
}

static void sb_puts(struct sbuf *s, const char *str) { sb_put(s, str, strlen(str)); }

__attribute__((format(printf, 2, 3))) static void sb_printf(struct sbuf *s, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof small) {
        sb_put(s, small, (size_t)n);
        return;
    }
    if (!sb_reserve(s, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(s->p + s->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    s->len += (size_t)n;
}

/* Prometheus label values escape exactly backslash, double quote and
 * newline; everything else is taken verbatim. */
static void sb_label_value(struct sbuf *s, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\')
            sb_puts(s, "\\\\");
        else if (*v == '"')
            sb_puts(s, "\\\"");
        else if (*v == '\n')
            sb_puts(s, "\\n");
        else
            sb_put(s, v, 1);
    }
}

/* ------------------------------------------------------------------ */
/* Consistency of the view: cfg and sh are swapped together on reload,
 * but a mismatch must never turn into an out-of-bounds read. */

static bool view_consistent(const struct admin_view *v)
{
    if (!v || !v->cfg || !v->sh)
        return false;
    size_t n = 0;
    for (size_t p = 0; p < v->cfg->n_pools; p++)
        n += v->cfg->pools[p].n_backends;
    return n == v->sh->n_backends && v->cfg->n_listeners == v->sh->n_listeners;
}

static uint64_t uptime_ms(const struct admin_view *v)
{
    uint64_t now = ev_clock_ms();
    return now > v->started_ms ? now - v->started_ms : 0;
}

/* ------------------------------------------------------------------ */
/* /metrics */

/* Flattened, summed-over-workers values of one backend or listener, so
 * the families below can be emitted from a table. Arrays are in the order
 * of their label values. */
struct brow {
    const char *pool, *addr;
    uint64_t requests, responses[6], connect_failures, upstream_errors, retries;
    uint64_t bytes_sent, bytes_received, active, idle, up, eff_weight, weight, checks[2];
};

struct lrow {
    const char *name;
    uint64_t connections, requests, responses[6], rejected, no_backend, timeouts, bytes_received, bytes_sent, active;
    uint64_t underscore_dropped[2], body_timeouts;
};

struct label_set {
    const char *name;
    const char *values[6];
    size_t n;
};

static const struct label_set code_labels = {"code", {"1xx", "2xx", "3xx", "4xx", "5xx", "other"}, 6};
static const struct label_set result_labels = {"result", {"ok", "failed"}, 2};
static const struct label_set direction_labels = {"direction", {"request", "response"}, 2};

struct family {
    const char *name, *type, *help;
    size_t off;                  /* of the first uint64_t value in the row */
    const struct label_set *extra;
};

/* Bytes convention (see docs/admin-api.md): bytes as Sluice's own sockets
 * send and receive them, in each direction separately, heads and bodies
 * alike: what was written to or read from the peer the family is about. */
static const struct family backend_families[] = {
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

static const struct family listener_families[] = {
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
};

/* counters index responses as [0]=other, [1..5]=1xx..5xx; rows use label order. */
static void responses_in_label_order(uint64_t out[6], const _Atomic uint64_t in[6])
{
    for (int k = 0; k < 5; k++)
        out[k] = atomic_load(&in[k + 1]);
    out[5] = atomic_load(&in[0]);
}

static void fill_brow(const struct admin_view *v, size_t p, size_t b, uint64_t now, struct brow *r)
{
    const struct cfg_pool *pool = &v->cfg->pools[p];
    size_t g = shared_backend_index(v->sh, p, b);
    const struct shared_backend *sb = &v->sh->backends[g];
    struct backend_counters c;
    shared_sum_backend(v->sh, g, &c);
    memset(r, 0, sizeof *r);
    r->pool = pool->name;
    r->addr = pool->backends[b].addr.text;
    r->requests = atomic_load(&c.requests);
    responses_in_label_order(r->responses, c.responses);
    r->connect_failures = atomic_load(&c.connect_failures);
    r->upstream_errors = atomic_load(&c.upstream_errors);
    r->retries = atomic_load(&c.retries);
    r->bytes_sent = atomic_load(&c.bytes_sent);
    r->bytes_received = atomic_load(&c.bytes_received);
    r->active = atomic_load(&c.active);
    r->idle = atomic_load(&c.idle);
    r->up = atomic_load(&sb->health) == HEALTH_UP && atomic_load(&sb->ejected_until_ms) <= now;
    r->eff_weight = shared_effective_weight(sb, pool->slow_start_ms, now);
    r->weight = atomic_load(&sb->weight);
    r->checks[0] = sb->checks_ok;
    r->checks[1] = sb->checks_failed;
}

static void fill_lrow(const struct admin_view *v, size_t l, struct lrow *r)
{
    struct listener_counters c;
    shared_sum_listener(v->sh, l, &c);
    memset(r, 0, sizeof *r);
    r->name = v->cfg->listeners[l].name;
    r->connections = atomic_load(&c.connections);
    r->requests = atomic_load(&c.requests);
    responses_in_label_order(r->responses, c.responses);
    r->rejected = atomic_load(&c.rejected);
    r->no_backend = atomic_load(&c.no_backend);
    r->timeouts = atomic_load(&c.timeouts);
    r->bytes_received = atomic_load(&c.bytes_received);
    r->bytes_sent = atomic_load(&c.bytes_sent);
    r->active = atomic_load(&c.active);
    for (int k = 0; k < 2; k++)
        r->underscore_dropped[k] = atomic_load(&c.underscore_dropped[k]);
    r->body_timeouts = atomic_load(&c.body_timeouts);
}

static void emit_header(struct sbuf *s, const char *name, const char *type, const char *help)
{
    sb_printf(s, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The samples of one family for one row: one line, or one per value of
 * the family's extra label. */
static void emit_samples(struct sbuf *s, const struct family *f, const void *row,
                         void (*labels)(struct sbuf *, const void *))
{
    const uint64_t *vals = (const uint64_t *)((const char *)row + f->off);
    size_t n = f->extra ? f->extra->n : 1;
    for (size_t k = 0; k < n; k++) {
        sb_puts(s, f->name);
        sb_puts(s, "{");
        labels(s, row);
        if (f->extra) {
            sb_printf(s, ",%s=\"", f->extra->name);
            sb_label_value(s, f->extra->values[k]);
            sb_puts(s, "\"");
        }
        sb_printf(s, "} %" PRIu64 "\n", vals[k]);
    }
}

static void brow_labels(struct sbuf *s, const void *row)
{
    const struct brow *r = row;
    sb_puts(s, "pool=\"");
    sb_label_value(s, r->pool);
    sb_puts(s, "\",backend=\"");
    sb_label_value(s, r->addr);
    sb_puts(s, "\"");
}

static void lrow_labels(struct sbuf *s, const void *row)
{
    const struct lrow *r = row;
    sb_puts(s, "listener=\"");
    sb_label_value(s, r->name ? r->name : "");
    sb_puts(s, "\"");
}

static void emit_process(struct sbuf *s, const struct admin_view *v)
{
    emit_header(s, "sluice_info", "gauge", "Sluice version; always 1.");
    sb_puts(s, "sluice_info{version=\"");
    sb_label_value(s, v->version ? v->version : "unknown");
    sb_puts(s, "\"} 1\n");
    emit_header(s, "sluice_workers", "gauge", "Worker processes.");
    sb_printf(s, "sluice_workers %" PRIu32 "\n", v->n_workers);
    emit_header(s, "sluice_worker_restarts_total", "counter", "Worker processes restarted after they died.");
    sb_printf(s, "sluice_worker_restarts_total %" PRIu64 "\n", v->worker_restarts);
    emit_header(s, "sluice_reloads_total", "counter", "Configuration reloads applied.");
    sb_printf(s, "sluice_reloads_total %" PRIu32 "\n", v->reloads);
    uint64_t up = uptime_ms(v);
    emit_header(s, "sluice_uptime_seconds", "gauge", "Seconds since the master process started.");
    sb_printf(s, "sluice_uptime_seconds %" PRIu64 ".%03u\n", up / 1000, (unsigned)(up % 1000));
}

char *admin_render_metrics(const struct admin_view *view, size_t *len)
{
    struct sbuf s = {0};
    emit_process(&s, view);
    if (view_consistent(view)) {
        const struct sl_config *cfg = view->cfg;
        uint64_t now = ev_clock_ms();
        struct lrow *lrows = calloc(cfg->n_listeners + 1, sizeof *lrows);
        struct brow *brows = calloc(view->sh->n_backends + 1, sizeof *brows);
        if (!lrows || !brows) {
            s.oom = true;
        } else {
            for (size_t l = 0; l < cfg->n_listeners; l++)
                fill_lrow(view, l, &lrows[l]);
            size_t i = 0;
            for (size_t p = 0; p < cfg->n_pools; p++)
                for (size_t b = 0; b < cfg->pools[p].n_backends; b++)
                    fill_brow(view, p, b, now, &brows[i++]);
            for (size_t f = 0; f < sizeof listener_families / sizeof *listener_families; f++) {
                const struct family *fam = &listener_families[f];
                emit_header(&s, fam->name, fam->type, fam->help);
                for (size_t l = 0; l < cfg->n_listeners; l++)
                    emit_samples(&s, fam, &lrows[l], lrow_labels);
            }
            for (size_t f = 0; f < sizeof backend_families / sizeof *backend_families; f++) {
                const struct family *fam = &backend_families[f];
                emit_header(&s, fam->name, fam->type, fam->help);
                for (size_t k = 0; k < i; k++)
                    emit_samples(&s, fam, &brows[k], brow_labels);
            }
        }
        free(lrows);
        free(brows);
    }
    if (view && view->extra_metrics) {
        size_t n = 0;
        char *extra = view->extra_metrics(view->extra_arg, &n);
        if (extra)
            sb_put(&s, extra, n);
        free(extra);
    }
    if (s.oom || !s.p) {
        free(s.p);
        return NULL;
    }
    if (len)
        *len = s.len;
    return s.p;
}

/* ------------------------------------------------------------------ */
/* PATCH bodies */

struct backend_patch {
    bool has_weight, has_admin;
    uint32_t weight;
    uint32_t admin;
};

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
        if (w < 0 || w > ADMIN_MAX_WEIGHT) {
            snprintf(err, errlen, "\"weight\" must be from 0 to %d, got %" JSON_INTEGER_FORMAT, ADMIN_MAX_WEIGHT, w);
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

static int parse_patch(const char *body, size_t len, bool weight_only, struct backend_patch *pt, char *err,
                       size_t errlen)
{
    memset(pt, 0, sizeof *pt);
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
            if (patch_field(key, val, weight_only, pt, err, errlen) < 0) {
                rc = -1;
                break;
            }
        }
    }
    if (rc == 0 && weight_only && !pt->has_weight) {
        snprintf(err, errlen, "\"weight\" is required");
        rc = -1;
    } else if (rc == 0 && !pt->has_weight && !pt->has_admin) {
        snprintf(err, errlen, "nothing to change: set \"weight\" and/or \"admin\"");
        rc = -1;
    }
    json_decref(root);
    return rc;
}

static void apply_patch(struct shared_state *sh, size_t gidx, const struct backend_patch *pt)
{
    struct shared_backend *sb = &sh->backends[gidx];
    if (pt->has_weight)
        atomic_store(&sb->weight, pt->weight);
    if (pt->has_admin) {
        /* Re-enabling is the operator saying "try it again now": forget a
         * passive ejection too. */
        if (pt->admin == BACKEND_ENABLED) {
            atomic_store(&sb->ejected_until_ms, 0);
            atomic_store(&sb->consecutive_fails, 0);
        }
        atomic_store(&sb->admin, pt->admin);
    }
    atomic_fetch_add(&sh->generation, 1);
}

int admin_apply_backend_patch(struct shared_state *sh, size_t gidx, const char *body, size_t len, char *err,
                              size_t errlen)
{
    if (!sh || gidx >= sh->n_backends) {
        snprintf(err, errlen, "no such backend");
        return -1;
    }
    struct backend_patch pt;
    if (parse_patch(body, len, false, &pt, err, errlen) < 0)
        return -1;
    apply_patch(sh, gidx, &pt);
    return 0;
}

/* ------------------------------------------------------------------ */
/* JSON views */

static json_t *backend_json(const struct admin_view *v, size_t p, size_t b, uint64_t now)
{
    const struct cfg_pool *pool = &v->cfg->pools[p];
    size_t g = shared_backend_index(v->sh, p, b);
    const struct shared_backend *sb = &v->sh->backends[g];
    struct backend_counters c;
    shared_sum_backend(v->sh, g, &c);
    uint64_t until = atomic_load(&sb->ejected_until_ms);
    char last[sizeof sb->last_check + 1];
    memcpy(last, sb->last_check, sizeof sb->last_check);
    last[sizeof sb->last_check] = '\0';
    json_t *responses = json_object();
    for (int k = 0; k < 5; k++)
        json_object_set_new(responses, code_labels.values[k], json_integer((json_int_t)atomic_load(&c.responses[k + 1])));
    json_object_set_new(responses, "other", json_integer((json_int_t)atomic_load(&c.responses[0])));
    return json_pack("{s:s, s:I, s:I, s:s, s:s, s:{s:s, s:s, s:I, s:I}, s:I, s:{s:I, s:o, s:I, s:I, s:I, s:I, s:I, "
                     "s:I, s:I}}",
                     "address", pool->backends[b].addr.text,
                     "weight", (json_int_t)atomic_load(&sb->weight),
                     "effective_weight", (json_int_t)shared_effective_weight(sb, pool->slow_start_ms, now),
                     "admin", backend_admin_name(atomic_load(&sb->admin)),
                     "state", backend_state_name(sb, pool->slow_start_ms, now),
                     "health",
                     "status", atomic_load(&sb->health) == HEALTH_UP ? "up" : "down",
                     "last_check", last,
                     "checks_ok", (json_int_t)sb->checks_ok,
                     "checks_failed", (json_int_t)sb->checks_failed,
                     "ejected_until_ms", (json_int_t)(until > now ? until - now : 0),
                     "counters",
                     "requests", (json_int_t)atomic_load(&c.requests),
                     "responses", responses,
                     "connect_failures", (json_int_t)atomic_load(&c.connect_failures),
                     "upstream_errors", (json_int_t)atomic_load(&c.upstream_errors),
                     "retries", (json_int_t)atomic_load(&c.retries),
                     "bytes_sent", (json_int_t)atomic_load(&c.bytes_sent),
                     "bytes_received", (json_int_t)atomic_load(&c.bytes_received),
                     "active", (json_int_t)atomic_load(&c.active),
                     "idle", (json_int_t)atomic_load(&c.idle));
}

static json_t *backends_json(const struct admin_view *v, size_t p, uint64_t now)
{
    json_t *arr = json_array();
    for (size_t b = 0; arr && b < v->cfg->pools[p].n_backends; b++) {
        json_t *one = backend_json(v, p, b, now);
        if (!one || json_array_append_new(arr, one) < 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

static json_t *pool_json(const struct admin_view *v, size_t p, uint64_t now)
{
    const struct cfg_pool *pool = &v->cfg->pools[p];
    return json_pack("{s:s, s:s, s:o*}", "name", pool->name, "algorithm", lb_algorithm_name(pool->algorithm),
                     "backends", backends_json(v, p, now));
}

static json_t *pools_json(const struct admin_view *v, uint64_t now)
{
    json_t *arr = json_array();
    for (size_t p = 0; arr && p < v->cfg->n_pools; p++) {
        json_t *one = pool_json(v, p, now);
        if (!one || json_array_append_new(arr, one) < 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

static json_t *status_json(const struct admin_view *v)
{
    json_t *workers = json_array();
    for (uint32_t i = 0; workers && i < v->n_workers; i++)
        json_array_append_new(workers, json_pack("{s:I, s:I}", "id", (json_int_t)i, "pid",
                                                 (json_int_t)(v->worker_pids ? v->worker_pids[i] : 0)));
    return json_pack("{s:s, s:I, s:I, s:o*, s:I, s:I, s:s?}", "version", v->version ? v->version : "unknown",
                     "pid", (json_int_t)getpid(), "uptime_s", (json_int_t)(uptime_ms(v) / 1000), "workers", workers,
                     "reloads", (json_int_t)v->reloads, "worker_restarts", (json_int_t)v->worker_restarts, "config",
                     v->cfg ? v->cfg->path : NULL);
}

/* ------------------------------------------------------------------ */
/* Replies */

static void reply_set(struct admin_reply *r, int status, const char *ctype, char *body, size_t len)
{
    free(r->body);
    r->status = status;
    r->content_type = ctype;
    r->body = body;
    r->body_len = len;
}

/* Takes the reference to doc. */
static void reply_json(struct admin_reply *r, int status, json_t *doc)
{
    char *text = doc ? json_dumps(doc, JSON_INDENT(2)) : NULL;
    json_decref(doc);
    size_t n = text ? strlen(text) : 0;
    char *body = text ? realloc(text, n + 2) : NULL;
    if (!body) {
        free(text);
        static const char oom[] = "{\"error\":\"out of memory\"}\n";
        body = strdup(oom);
        reply_set(r, 500, CT_JSON, body, body ? sizeof oom - 1 : 0);
        return;
    }
    body[n] = '\n';     /* friendlier for curl users */
    body[n + 1] = '\0';
    reply_set(r, status, CT_JSON, body, n + 1);
}

/* Error reasons may quote client input (a pool name, a JSON token); keep
 * them printable ASCII so they are always valid JSON strings. */
__attribute__((format(printf, 3, 4))) static void reply_error(struct admin_reply *r, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
    reply_json(r, status, json_pack("{s:s}", "error", msg));
}

static void reply_method_not_allowed(struct admin_reply *r, const char *allow)
{
    reply_error(r, 405, "method not allowed (allowed: %s)", allow);
    r->allow = allow;
}

void admin_reply_json(struct admin_reply *r, int status, json_t *doc)
{
    reply_json(r, status, doc);
}

void admin_reply_error(struct admin_reply *r, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    reply_error(r, status, "%s", msg);
}

void admin_reply_text(struct admin_reply *r, int status, char *text, size_t len)
{
    reply_set(r, status, "text/plain; charset=utf-8", text, len);
}

void admin_reply_method_not_allowed(struct admin_reply *r, const char *allow)
{
    reply_method_not_allowed(r, allow);
}

/* ------------------------------------------------------------------ */
/* Routing */

#define MAX_SEGS 8

struct route {
    char *buf;                   /* decoded path, segments NUL-separated */
    char *seg[MAX_SEGS];
    size_t n;
};

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decode in place; NUL bytes are refused so a decoded segment is
 * an ordinary C string. */
static int percent_decode(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (*r != '%') {
            *w++ = *r;
            continue;
        }
        int hi = hexval(r[1]), lo = hi < 0 ? -1 : hexval(r[2]);
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
            return -1;
        *w++ = (char)(hi * 16 + lo);
        r += 2;
    }
    *w = '\0';
    return 0;
}

/* Split "/a/b%2Fc?q" into decoded segments. A trailing slash is ignored.
 * Returns 0, 1 when the path does not fit any route (too many segments,
 * empty segment), -1 for malformed escapes. */
static int route_split(const char *target, size_t len, struct route *rt)
{
    memset(rt, 0, sizeof *rt);
    size_t plen = 0;
    while (plen < len && target[plen] != '?' && target[plen] != '#')
        plen++;
    if (plen == 0 || target[0] != '/')
        return 1;
    rt->buf = malloc(plen + 1);
    if (!rt->buf)
        return 1;
    memcpy(rt->buf, target, plen);
    rt->buf[plen] = '\0';
    if (memchr(rt->buf, '\0', plen))
        return 1;
    if (plen > 1 && rt->buf[plen - 1] == '/')
        rt->buf[--plen] = '\0';
    char *p = rt->buf + 1;
    if (!*p)
        return 0;        /* "/" */
    for (;;) {
        if (rt->n == MAX_SEGS)
            return 1;
        char *slash = strchr(p, '/');
        if (slash)
            *slash = '\0';
        if (!*p)
            return 1;
        if (percent_decode(p) < 0)
            return -1;
        rt->seg[rt->n++] = p;
        if (!slash)
            return 0;
        p = slash + 1;
    }
}

static bool seg_is(const struct route *rt, size_t i, const char *s)
{
    return i < rt->n && strcmp(rt->seg[i], s) == 0;
}

/* Find backend `text` in pool p: the canonical "ip:port" from the config,
 * or any spelling addr_parse understands ("localhost:80", "[0::1]:80"). */
static int find_backend(const struct cfg_pool *pool, const char *text)
{
    for (size_t b = 0; b < pool->n_backends; b++)
        if (strcmp(pool->backends[b].addr.text, text) == 0)
            return (int)b;
    struct sl_addr a;
    const char *why;
    if (addr_parse(text, &a, &why) < 0)
        return -1;
    for (size_t b = 0; b < pool->n_backends; b++)
        if (addr_equal(&pool->backends[b].addr, &a))
            return (int)b;
    return -1;
}

struct request {
    struct admin_view *v;
    const char *method;          /* NUL-terminated copy */
    const char *body;
    size_t body_len;
    uint64_t now;
};

static bool is_get(const struct request *rq) { return !strcmp(rq->method, "GET") || !strcmp(rq->method, "HEAD"); }

static void log_backend_change(const struct cfg_pool *pool, size_t b, uint32_t old_w, uint32_t old_a,
                               const struct shared_backend *sb)
{
    uint32_t w = atomic_load(&sb->weight), a = atomic_load(&sb->admin);
    log_info("admin API: pool %s backend %s: weight %" PRIu32 " -> %" PRIu32 ", admin %s -> %s", pool->name,
             pool->backends[b].addr.text, old_w, w, backend_admin_name(old_a), backend_admin_name(a));
}

static void handle_backend_change(struct request *rq, size_t p, size_t b, const struct backend_patch *pt,
                                  struct admin_reply *r)
{
    struct admin_view *v = rq->v;
    size_t g = shared_backend_index(v->sh, p, b);
    struct shared_backend *sb = &v->sh->backends[g];
    uint32_t old_w = atomic_load(&sb->weight), old_a = atomic_load(&sb->admin);
    apply_patch(v->sh, g, pt);
    log_backend_change(&v->cfg->pools[p], b, old_w, old_a, sb);
    reply_json(r, 200, backend_json(v, p, b, ev_clock_ms()));
}

static void handle_backend(struct request *rq, const struct route *rt, size_t p, struct admin_reply *r)
{
    const struct cfg_pool *pool = &rq->v->cfg->pools[p];
    int b = find_backend(pool, rt->seg[4]);
    if (b < 0) {
        reply_error(r, 404, "pool \"%s\" has no backend \"%s\"", pool->name, rt->seg[4]);
        return;
    }
    char err[512];
    struct backend_patch pt;
    if (rt->n == 5) {
        if (is_get(rq)) {
            reply_json(r, 200, backend_json(rq->v, p, (size_t)b, rq->now));
        } else if (!strcmp(rq->method, "PATCH")) {
            if (parse_patch(rq->body, rq->body_len, false, &pt, err, sizeof err) < 0)
                reply_error(r, 400, "%s", err);
            else
                handle_backend_change(rq, p, (size_t)b, &pt, r);
        } else {
            reply_method_not_allowed(r, "GET, HEAD, PATCH");
        }
        return;
    }
    const char *action = rt->seg[5];
    memset(&pt, 0, sizeof pt);
    static const struct { const char *verb; uint32_t admin; } verbs[] = {
        {"drain", BACKEND_DRAINING}, {"disable", BACKEND_DISABLED}, {"enable", BACKEND_ENABLED}};
    for (size_t i = 0; rt->n == 6 && i < sizeof verbs / sizeof *verbs; i++) {
        if (strcmp(action, verbs[i].verb) != 0)
            continue;
        /* No body needed; one that is sent anyway is ignored. */
        if (strcmp(rq->method, "POST") != 0) {
            reply_method_not_allowed(r, "POST");
            return;
        }
        pt.has_admin = true;
        pt.admin = verbs[i].admin;
        handle_backend_change(rq, p, (size_t)b, &pt, r);
        return;
    }
    if (rt->n == 6 && !strcmp(action, "weight")) {
        if (strcmp(rq->method, "PUT") != 0)
            reply_method_not_allowed(r, "PUT");
        else if (parse_patch(rq->body, rq->body_len, true, &pt, err, sizeof err) < 0)
            reply_error(r, 400, "%s", err);
        else
            handle_backend_change(rq, p, (size_t)b, &pt, r);
    } else {
        reply_error(r, 404, "no such path");
    }
}

static void handle_pools(struct request *rq, const struct route *rt, struct admin_reply *r)
{
    struct admin_view *v = rq->v;
    if (rt->n == 2) {
        if (!is_get(rq))
            reply_method_not_allowed(r, "GET, HEAD");
        else
            reply_json(r, 200, pools_json(v, rq->now));
        return;
    }
    int p = config_pool_index(v->cfg, rt->seg[2]);
    if (p < 0) {
        reply_error(r, 404, "no pool named \"%s\"", rt->seg[2]);
        return;
    }
    if (rt->n == 3 || (rt->n == 4 && seg_is(rt, 3, "backends"))) {
        if (!is_get(rq))
            reply_method_not_allowed(r, "GET, HEAD");
        else if (rt->n == 3)
            reply_json(r, 200, pool_json(v, (size_t)p, rq->now));
        else
            reply_json(r, 200, backends_json(v, (size_t)p, rq->now));
        return;
    }
    if (rt->n >= 5 && seg_is(rt, 3, "backends")) {
        handle_backend(rq, rt, (size_t)p, r);
        return;
    }
    reply_error(r, 404, "no such path");
}

static void route_request(struct request *rq, const struct route *rt, struct admin_reply *r)
{
    if (rt->n == 1 && seg_is(rt, 0, "metrics")) {
        if (!is_get(rq)) {
            reply_method_not_allowed(r, "GET, HEAD");
            return;
        }
        size_t len = 0;
        char *text = admin_render_metrics(rq->v, &len);
        if (text)
            reply_set(r, 200, CT_METRICS, text, len);
        else
            reply_error(r, 500, "out of memory");
        return;
    }
    if (rt->n == 2 && seg_is(rt, 0, "api") && seg_is(rt, 1, "status")) {
        if (!is_get(rq))
            reply_method_not_allowed(r, "GET, HEAD");
        else
            reply_json(r, 200, status_json(rq->v));
        return;
    }
    if (rt->n >= 2 && seg_is(rt, 0, "api") && rq->v->ext_prefix && seg_is(rt, 1, rq->v->ext_prefix) &&
        rq->v->ext_handler) {
        if (!view_consistent(rq->v)) {
            reply_error(r, 503, "configuration is being replaced; try again");
            return;
        }
        rq->v->ext_handler(rq->v->ext_arg, rq->method, (const char *const *)rt->seg + 2, rt->n - 2, rq->body,
                           rq->body_len, r);
        return;
    }
    if (rt->n >= 2 && seg_is(rt, 0, "api") && seg_is(rt, 1, "pools")) {
        if (!view_consistent(rq->v)) {
            reply_error(r, 503, "configuration is being replaced; try again");
            return;
        }
        handle_pools(rq, rt, r);
        return;
    }
    reply_error(r, 404, "no such path");
}

void admin_handle(struct admin_view *view, const char *method, size_t method_len, const char *target,
                  size_t target_len, const char *body, size_t body_len, struct admin_reply *reply)
{
    memset(reply, 0, sizeof *reply);
    char m[16];
    if (method_len == 0 || method_len >= sizeof m) {
        reply_error(reply, 501, "method not implemented");
        return;
    }
    memcpy(m, method, method_len);
    m[method_len] = '\0';
    struct request rq = {view, m, body, body_len, ev_clock_ms()};
    struct route rt;
    int rc = route_split(target, target_len, &rt);
    if (rc < 0)
        reply_error(reply, 400, "malformed percent-encoding in the path");
    else if (rc > 0)
        reply_error(reply, 404, "no such path");
    else
        route_request(&rq, &rt, reply);
    free(rt.buf);
}

/* ------------------------------------------------------------------ */
/* The server */

struct admin_conn {
    struct admin_server *srv;
    struct admin_conn *prev, *next;
    struct ev_io io;
    struct ev_timer timer;       /* idle / slow client */
    char *in;
    size_t in_len, in_cap;
    size_t scanned;              /* in_len at the last unfinished head parse */
    size_t need;                 /* head+body size while a body is arriving, else 0 */
    char *out;
    size_t out_len, out_off;
    bool closing;                /* close once out is flushed */
    bool lingering;              /* answered and shut down: discarding input until EOF */
    size_t discarded;
    bool peer_eof;
    bool continue_sent;
};

struct admin_server {
    struct ev_loop *loop;
    struct admin_view *view;
    struct ev_io io;
    struct ev_timer pause;       /* accept paused after EMFILE and friends */
    struct admin_conn *conns;
    uint32_t n_conns;
    uint16_t port;
    struct http1_limits lim;
    struct http1_message msg;    /* parse target, one is enough: parsing never yields */
};

static const char *status_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

static void conn_free(void *p)
{
    struct admin_conn *c = p;
    free(c->in);
    free(c->out);
    free(c);
}

static void conn_close(struct admin_conn *c)
{
    struct admin_server *srv = c->srv;
    ev_io_stop(srv->loop, &c->io);
    ev_timer_stop(srv->loop, &c->timer);
    close(c->io.fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->n_conns--;
    /* Events for this connection may still be queued in the current batch. */
    ev_defer_free(srv->loop, c, conn_free);
}

static bool out_pending(const struct admin_conn *c) { return c->out_off < c->out_len; }

/* Append raw bytes to the output. */
static int conn_queue(struct admin_conn *c, const char *p, size_t n)
{
    if (!out_pending(c)) {
        c->out_len = c->out_off = 0;
    }
    char *o = realloc(c->out, c->out_len + n);
    if (!o && c->out_len + n)
        return -1;
    c->out = o;
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    return 0;
}

/* head_only for HEAD requests; keep_alive_10 when an HTTP/1.0 client asked
 * for keep-alive, which it only gets if the answer says so. */
static int conn_queue_reply(struct admin_conn *c, const struct admin_reply *r, bool head_only, bool keep_alive_10)
{
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n"
                     "%s%s%s%s\r\n",
                     r->status, status_reason(r->status), r->content_type ? r->content_type : CT_JSON, r->body_len,
                     r->allow ? "Allow: " : "", r->allow ? r->allow : "", r->allow ? "\r\n" : "",
                     c->closing ? "Connection: close\r\n" : keep_alive_10 ? "Connection: keep-alive\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof head)
        return -1;
    if (conn_queue(c, head, (size_t)n) < 0)
        return -1;
    if (!head_only && r->body_len && conn_queue(c, r->body, r->body_len) < 0)
        return -1;
    return 0;
}

/* An error produced by the HTTP layer itself: answer and hang up. */
static int conn_fail(struct admin_conn *c, int status, const char *reason)
{
    struct admin_reply r = {0};
    reply_error(&r, status, "%s", reason);
    c->closing = true;
    int rc = conn_queue_reply(c, &r, false, false);
    free(r.body);
    return rc;
}

/* Returns -1 on a fatal socket error, 0 otherwise. */
static int conn_flush(struct admin_conn *c)
{
    while (out_pending(c)) {
        ssize_t n = send(c->io.fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            ev_timer_start(c->srv->loop, &c->timer, ADMIN_IDLE_MS); /* progress: not idle */
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        return -1;
    }
    /* Keep the buffer small between requests. */
    if (c->out_len > 65536) {
        free(c->out);
        c->out = NULL;
    }
    c->out_len = c->out_off = 0;
    return 0;
}

/* Returns -1 on a socket error, 0 otherwise (peer_eof set on EOF). */
static int conn_read(struct admin_conn *c)
{
    for (int rounds = 0; rounds < 16 && !c->peer_eof; rounds++) {
        if (c->in_len == c->in_cap) {
            if (c->in_cap >= IN_MAX)
                return 0;       /* full: the parser will decide */
            size_t cap = c->in_cap ? c->in_cap * 2 : IN_INITIAL;
            if (cap > IN_MAX)
                cap = IN_MAX;
            char *p = realloc(c->in, cap);
            if (!p)
                return -1;
            c->in = p;
            c->in_cap = cap;
        }
        ssize_t n = recv(c->io.fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (n > 0) {
            c->in_len += (size_t)n;
            continue;
        }
        if (n == 0) {
            c->peer_eof = true;
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        return -1;
    }
    return 0;
}

static void conn_consume(struct admin_conn *c, size_t n)
{
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
    c->scanned = 0;
    c->need = 0;
    c->continue_sent = false;
}

/* Answer one complete request whose head is parsed in srv->msg. */
static int conn_answer(struct admin_conn *c, size_t total)
{
    struct admin_server *srv = c->srv;
    const struct http1_message *m = &srv->msg;
    struct admin_reply r;
    admin_handle(srv->view, m->method_str.p, m->method_str.len, m->target.p, m->target.len, c->in + m->head_len,
                 total - m->head_len, &r);
    if (!m->keep_alive)
        c->closing = true;
    int rc = conn_queue_reply(c, &r, m->method == HTTP1_M_HEAD, m->version_minor == 0 && m->keep_alive);
    free(r.body);
    conn_consume(c, total);
    return rc;
}

/* Try to take one request off the input. Returns 1 when something was
 * queued for output, 0 when more input is needed, -1 to drop the client. */
static int conn_next_request(struct admin_conn *c)
{
    struct admin_server *srv = c->srv;
    if (c->in_len == 0 || (c->need && c->in_len < c->need))
        return 0;
    /* Re-parsing is only worth it when the new bytes could finish a head. */
    if (!c->need && c->scanned && !http1_head_ready(c->in, c->in_len, c->scanned, &srv->lim)) {
        c->scanned = c->in_len;
        return 0;
    }
    struct http1_message *m = &srv->msg;
    enum http1_result res = http1_parse_request(c->in, c->in_len, &srv->lim, m);
    if (res == HTTP1_INCOMPLETE) {
        c->scanned = c->in_len;
        if (c->in_len >= ADMIN_MAX_HEAD)  /* the parser should have said 431 already */
            return conn_fail(c, 431, "request head too large") < 0 ? -1 : 1;
        return 0;
    }
    if (res == HTTP1_ERROR) {
        int st = m->error_status >= 400 && m->error_status <= 599 ? m->error_status : 400;
        return conn_fail(c, st, m->error_reason ? m->error_reason : "malformed request") < 0 ? -1 : 1;
    }
    if (m->body == HTTP1_BODY_CHUNKED)
        return conn_fail(c, 411, "chunked request bodies are not accepted; send Content-Length") < 0 ? -1 : 1;
    uint64_t body = m->body == HTTP1_BODY_LENGTH ? m->content_length : 0;
    if (body > ADMIN_MAX_BODY)
        return conn_fail(c, 413, "request body larger than 64 KiB") < 0 ? -1 : 1;
    size_t total = m->head_len + (size_t)body;
    if (c->in_len < total) {
        c->need = total;
        if (m->expect_continue && !c->continue_sent) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            c->continue_sent = true;
            return conn_queue(c, cont, sizeof cont - 1) < 0 ? -1 : 1;
        }
        return 0;
    }
    return conn_answer(c, total) < 0 ? -1 : 1;
}

/* Closing right after an error answer while the client is still sending
 * (a 413 for a big body, say) would make the kernel reset the connection,
 * and the reset can destroy the answer before the client reads it. So shut
 * down our side and read and drop whatever still comes, for a short while. */
static void conn_linger(struct admin_conn *c)
{
    if (c->peer_eof || shutdown(c->io.fd, SHUT_WR) < 0) {
        conn_close(c);
        return;
    }
    c->lingering = true;
    free(c->in);
    c->in = NULL;
    c->in_len = c->in_cap = 0;
    ev_timer_start(c->srv->loop, &c->timer, LINGER_MS);
    ev_io_set(c->srv->loop, &c->io, EPOLLIN);
}

static void linger_read(struct admin_conn *c)
{
    char scratch[4096];
    for (;;) {
        ssize_t n = recv(c->io.fd, scratch, sizeof scratch, 0);
        if (n > 0) {
            c->discarded += (size_t)n;
            if (c->discarded > LINGER_MAX_BYTES)
                break;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        break;           /* EOF or error */
    }
    conn_close(c);
}

/* Answer what can be answered, write, and decide what to wait for. */
static void conn_step(struct admin_conn *c)
{
    for (;;) {
        if (out_pending(c)) {
            if (conn_flush(c) < 0) {
                conn_close(c);
                return;
            }
            if (out_pending(c)) {
                ev_io_set(c->srv->loop, &c->io, EPOLLOUT);
                return;
            }
        }
        if (c->closing) {
            conn_linger(c);
            return;
        }
        int r = conn_next_request(c);
        if (r < 0) {
            conn_close(c);
            return;
        }
        if (r == 0)
            break;
    }
    if (c->peer_eof || (c->in_len == IN_MAX && !c->need)) {
        /* Nothing more can arrive, or a full buffer that is not a request. */
        conn_close(c);
        return;
    }
    ev_io_set(c->srv->loop, &c->io, EPOLLIN);
}

static void conn_cb(struct ev_loop *loop, struct ev_io *io, uint32_t revents)
{
    struct admin_conn *c = io->data;
    if (c->lingering) {
        linger_read(c);
        return;
    }
    if (!out_pending(c) && !c->closing && (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
        if (conn_read(c) < 0) {
            conn_close(c);
            return;
        }
    }
    conn_step(c);
}

static void conn_timeout(struct ev_loop *loop, struct ev_timer *t)
{
    conn_close(t->data);
}

static void conn_new(struct admin_server *srv, int fd)
{
    struct admin_conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->srv = srv;
    ev_io_init(&c->io, fd, conn_cb, c);
    ev_timer_init(&c->timer, conn_timeout, c);
    ev_timer_start(srv->loop, &c->timer, ADMIN_IDLE_MS);
    ev_io_set(srv->loop, &c->io, EPOLLIN);
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->n_conns++;
}

static void refuse(int fd)
{
    static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                               "Content-Length: 39\r\nConnection: close\r\n\r\n"
                               "{\"error\":\"too many admin connections\"}\n";
    ssize_t n = send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)n;
    close(fd);
}

static void resume_accept(struct ev_loop *loop, struct ev_timer *t)
{
    struct admin_server *srv = t->data;
    ev_io_set(loop, &srv->io, EPOLLIN);
}

static void accept_cb(struct ev_loop *loop, struct ev_io *io, uint32_t revents)
{
    struct admin_server *srv = io->data;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                log_warn("admin: accept: %s; pausing for %d ms", strerror(errno), ACCEPT_PAUSE_MS);
                ev_io_set(loop, io, 0);
                ev_timer_start(loop, &srv->pause, ACCEPT_PAUSE_MS);
            }
            return;
        }
        if (srv->n_conns >= ADMIN_MAX_CONNS)
            refuse(fd);
        else
            conn_new(srv, fd);
    }
}

static int listen_on(const struct sl_addr *addr, uint16_t *port, char *err, size_t errlen)
{
    int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "admin listener %s: socket: %s", addr->text, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0 || listen(fd, 128) < 0) {
        snprintf(err, errlen, "admin listener %s: %s", addr->text, strerror(errno));
        close(fd);
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    struct sl_addr bound;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        addr_from_sockaddr(&bound, (struct sockaddr *)&ss, sl);
        *port = addr_port(&bound);
    } else {
        *port = addr_port(addr);
    }
    return fd;
}

struct admin_server *admin_start(struct ev_loop *loop, const struct sl_addr *addr, struct admin_view *view,
                                 char *err, size_t errlen)
{
    struct admin_server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        snprintf(err, errlen, "admin listener: out of memory");
        return NULL;
    }
    int fd = listen_on(addr, &srv->port, err, errlen);
    if (fd < 0) {
        free(srv);
        return NULL;
    }
    srv->loop = loop;
    srv->view = view;
    srv->lim = (struct http1_limits){.max_request_line = 8192, .max_head = ADMIN_MAX_HEAD, .max_headers = 64};
    ev_io_init(&srv->io, fd, accept_cb, srv);
    ev_timer_init(&srv->pause, resume_accept, srv);
    ev_io_set(loop, &srv->io, EPOLLIN);
    /* The caller logs the configured address; only it cannot know a
     * kernel-chosen port. */
    if (addr_port(addr) == 0)
        log_info("admin API listening on %s (port %u)", addr->text, srv->port);
    return srv;
}

uint16_t admin_port(const struct admin_server *srv) { return srv ? srv->port : 0; }

void admin_stop(struct admin_server *srv)
{
    if (!srv)
        return;
    while (srv->conns)
        conn_close(srv->conns);
    ev_io_stop(srv->loop, &srv->io);
    ev_timer_stop(srv->loop, &srv->pause);
    close(srv->io.fd);
    ev_defer_free(srv->loop, srv, free);
}
