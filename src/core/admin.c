/* See admin.h. The routing, the answers the core gives itself (/metrics,
 * /api/status) and the HTTP server; what tiers serve is in their mounts. */
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
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/log_sink.h"
#include "core/process_metrics.h"
#include "lib/http1.h"
#include "lib/strbuf.h"

#define CT_JSON "application/json"
#define CT_METRICS "text/plain; version=0.0.4"
#define ACCEPT_BATCH 64
#define ACCEPT_PAUSE_MS 100     /* back-off after EMFILE, so the loop does not spin */
#define IN_INITIAL 4096
#define IN_MAX (ADMIN_MAX_HEAD + ADMIN_MAX_BODY)
#define LINGER_MS 2000
#define LINGER_MAX_BYTES (1u << 20)

/* ------------------------------------------------------------------ */
/* The daemon itself: process families and /api/status */

static uint64_t uptime_ms(const struct admin_status *st)
{
    uint64_t now = ev_clock_ms();
    return now > st->started_ms ? now - st->started_ms : 0;
}

/* Named as Prometheus names its own (prometheus_config_*): what
 * alerting rules for "the last reload failed" already look for. */
static void emit_reloads(struct strbuf *s, const struct admin_status *st)
{
    metrics_family(s, "sluice_config_reloads_total", "counter", "Configuration reloads, by outcome.");
    metrics_sample(s, "sluice_config_reloads_total", &(struct metric_label){ "result", "success" }, 1, st->reloads);
    metrics_sample(s, "sluice_config_reloads_total", &(struct metric_label){ "result", "failure" }, 1,
                   st->reload_failures);
    metrics_single(s, "sluice_config_last_reload_successful", "gauge",
                   "Whether the last configuration reload succeeded (1) or not (0).", !st->last_reload_failed);
    char at[32];
    uint64_t ms = st->last_reload_success_unix_ms;
    snprintf(at, sizeof at, "%" PRIu64 ".%03u", ms / 1000, (unsigned)(ms % 1000));
    metrics_family(s, "sluice_config_last_reload_success_timestamp_seconds", "gauge",
                   "Unix time of the last successful configuration load (the start, until a reload succeeds).");
    metrics_sample_text(s, "sluice_config_last_reload_success_timestamp_seconds", NULL, 0, at);
}

/* process_*: this process and its workers (core/process_metrics.h). */
static void emit_process_families(struct strbuf *s, const struct admin_status *st)
{
    pid_t pids[1 + PROCESS_METRICS_MAX_WORKERS];
    size_t n = 0;
    pids[n++] = getpid();
    for (uint32_t i = 0; st->worker_pids && i < st->n_workers && n < sizeof pids / sizeof *pids; i++)
        if (st->worker_pids[i] > 0)
            pids[n++] = st->worker_pids[i];
    process_metrics_emit(s, pids, n);
}

static void emit_process(struct strbuf *s, const struct admin_status *st)
{
    char up[32];
    uint64_t ms = uptime_ms(st);
    metrics_family(s, "sluice_info", "gauge", "Sluice version; always 1.");
    metrics_sample(s, "sluice_info", &(struct metric_label){ "version", st->version ? st->version : "unknown" }, 1,
                   1);
    metrics_family(s, "sluice_workers", "gauge", "Worker processes.");
    metrics_sample(s, "sluice_workers", NULL, 0, st->n_workers);
    metrics_family(s, "sluice_worker_restarts_total", "counter", "Worker processes restarted after they died.");
    metrics_sample(s, "sluice_worker_restarts_total", NULL, 0, st->worker_restarts);
    metrics_family(s, "sluice_reloads_total", "counter", "Configuration reloads applied.");
    metrics_sample(s, "sluice_reloads_total", NULL, 0, st->reloads);
    metrics_family(s, "sluice_uptime_seconds", "gauge", "Seconds since the master process started.");
    snprintf(up, sizeof up, "%" PRIu64 ".%03u", ms / 1000, (unsigned)(ms % 1000));
    metrics_sample_text(s, "sluice_uptime_seconds", NULL, 0, up);
    if (st->reloadable)
        emit_reloads(s, st);
    emit_process_families(s, st);
}

char *admin_render_metrics(const struct admin_site *site, size_t *len)
{
    struct strbuf s = { 0 };
    emit_process(&s, &site->status);
    log_sink_metrics(&s);
    metrics_collect(&site->metrics, &s);
    return strbuf_finish(&s, len);
}

static json_t *status_json(const struct admin_site *site)
{
    const struct admin_status *st = &site->status;
    json_t *workers = json_array();
    for (uint32_t i = 0; workers && i < st->n_workers; i++)
        json_array_append_new(workers, json_pack("{s:I, s:I}", "id", (json_int_t)i, "pid",
                                                 (json_int_t)(st->worker_pids ? st->worker_pids[i] : 0)));
    json_t *doc = json_pack("{s:s, s:I, s:I, s:o*, s:I, s:I, s:s?}", "version", st->version ? st->version : "unknown",
                            "pid", (json_int_t)getpid(), "uptime_s", (json_int_t)(uptime_ms(st) / 1000), "workers",
                            workers, "reloads", (json_int_t)st->reloads, "worker_restarts",
                            (json_int_t)st->worker_restarts, "config", st->config_path);
    for (size_t i = 0; doc && i < site->n_status_parts; i++)
        site->status_parts[i].fn(site->status_parts[i].arg, doc);
    return doc;
}

int admin_status_part(struct admin_site *site, admin_status_fn *fn, void *arg)
{
    if (site->n_status_parts == ADMIN_MAX_STATUS_PARTS)
        return -1;
    site->status_parts[site->n_status_parts].fn = fn;
    site->status_parts[site->n_status_parts].arg = arg;
    site->n_status_parts++;
    return 0;
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

/* Takes the reference to doc. Reals with 15 significant digits, the most
 * a double carries for every decimal: a ratio set as 0.3 reads back 0.3,
 * not 0.29999999999999999. */
void admin_reply_json(struct admin_reply *r, int status, json_t *doc)
{
    char *text = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_REAL_PRECISION(15)) : NULL;
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
void admin_reply_error(struct admin_reply *r, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
    admin_reply_json(r, status, json_pack("{s:s}", "error", msg));
}

void admin_reply_text(struct admin_reply *r, int status, char *text, size_t len)
{
    reply_set(r, status, "text/plain; charset=utf-8", text, len);
}

void admin_reply_metrics(struct admin_reply *r, char *text, size_t len)
{
    reply_set(r, 200, CT_METRICS, text, len);
}

void admin_reply_method_not_allowed(struct admin_reply *r, const char *allow)
{
    admin_reply_error(r, 405, "method not allowed (allowed: %s)", allow);
    r->allow = allow;
}

int admin_is_get(const struct admin_request *rq)
{
    return !strcmp(rq->method, "GET") || !strcmp(rq->method, "HEAD");
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
 * an ordinary C string. In a query (form encoding) '+' stands for a space. */
static int percent_decode(char *s, bool plus_is_space)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (*r != '%') {
            *w++ = plus_is_space && *r == '+' ? ' ' : *r;
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
        if (percent_decode(p, false) < 0)
            return -1;
        rt->seg[rt->n++] = p;
        if (!slash)
            return 0;
        p = slash + 1;
    }
}

/* The query of a target, "?a=1&b=x%20y", as decoded (key, value) pairs in
 * the order sent. */
struct query {
    char *buf;                   /* decoded pairs, NUL-terminated in place */
    struct admin_query_param param[ADMIN_MAX_QUERY];
    size_t n;
};

enum query_result { QUERY_OK, QUERY_MALFORMED, QUERY_TOO_MANY, QUERY_NO_MEMORY };

/* Split and decode the query of target (after '?', up to a '#'). Empty
 * pieces ("a=1&&b=2", a trailing '&') are skipped; a piece without '='
 * is a key with an empty value. */
static enum query_result query_split(const char *target, size_t len, struct query *q)
{
    memset(q, 0, sizeof *q);
    size_t mark = 0;
    while (mark < len && target[mark] != '?' && target[mark] != '#')
        mark++;
    if (mark == len || target[mark] == '#')
        return QUERY_OK;
    size_t start = mark + 1, end = start;
    while (end < len && target[end] != '#')
        end++;
    if (end == start)
        return QUERY_OK;
    if (memchr(target + start, '\0', end - start))
        return QUERY_MALFORMED;
    q->buf = malloc(end - start + 1);
    if (!q->buf)
        return QUERY_NO_MEMORY;
    memcpy(q->buf, target + start, end - start);
    q->buf[end - start] = '\0';
    for (char *p = q->buf; p;) {
        char *amp = strchr(p, '&');
        if (amp)
            *amp = '\0';
        if (*p) {
            if (q->n == ADMIN_MAX_QUERY)
                return QUERY_TOO_MANY;
            char *eq = strchr(p, '=');
            if (eq)
                *eq = '\0';
            char *value = eq ? eq + 1 : p + strlen(p);
            if (percent_decode(p, true) < 0 || percent_decode(value, true) < 0)
                return QUERY_MALFORMED;
            q->param[q->n++] = (struct admin_query_param){.key = p, .value = value};
        }
        p = amp ? amp + 1 : NULL;
    }
    return QUERY_OK;
}

const char *admin_query_next(const struct admin_request *rq, const char *key, size_t *pos)
{
    for (size_t i = *pos; i < rq->n_query; i++) {
        if (strcmp(rq->query[i].key, key) == 0) {
            *pos = i + 1;
            return rq->query[i].value;
        }
    }
    *pos = rq->n_query;
    return NULL;
}

const char *admin_header(const struct admin_request *rq, const char *name, size_t *len)
{
    const struct http1_header *h = rq->head ? http1_find_header(rq->head, name) : NULL;
    if (!h)
        return NULL;
    if (len)
        *len = h->value.len;
    return h->value.p;
}

/* Equal bytes, in a time that depends on the lengths only: a client timing
 * answers learns nothing about how much of its guess was right. */
static bool equal_constant_time(const char *a, size_t alen, const char *b, size_t blen)
{
    unsigned char diff = alen != blen;
    for (size_t i = 0; i < blen; i++)
        diff |= (unsigned char)(b[i] ^ (i < alen ? a[i] : 0));
    return diff == 0;
}

bool admin_x_token_matches(const struct admin_request *rq, const char *token)
{
    size_t len = 0;
    const char *v = admin_header(rq, "X-Sluice-Token", &len);
    return v && equal_constant_time(v, len, token, strlen(token));
}

bool admin_bearer_matches(const struct admin_request *rq, const char *token)
{
    size_t len = 0;
    const char *v = admin_header(rq, "Authorization", &len);
    if (!v || len < 7 || strncasecmp(v, "Bearer ", 7) != 0)
        return false;
    v += 7;
    len -= 7;
    while (len && *v == ' ') {
        v++;
        len--;
    }
    return equal_constant_time(v, len, token, strlen(token));
}

bool admin_token_ok(const struct admin_request *rq, const char *token)
{
    size_t len = 0;
    if (admin_header(rq, "X-Sluice-Token", &len))
        return admin_x_token_matches(rq, token);
    return admin_bearer_matches(rq, token);
}

const char *admin_query_get(const struct admin_request *rq, const char *key)
{
    size_t pos = 0;
    return admin_query_next(rq, key, &pos);
}

static bool seg_is(const struct route *rt, size_t i, const char *s)
{
    return i < rt->n && strcmp(rt->seg[i], s) == 0;
}

int admin_mount(struct admin_site *site, const char *method, const char *prefix, admin_handler_fn *fn, void *arg)
{
    if (site->n_mounts == ADMIN_MAX_MOUNTS || !prefix || prefix[0] != '/' || !fn)
        return -1;
    struct admin_mount m = { .method = method, .prefix = prefix, .fn = fn, .arg = arg };
    /* The prefix's segments, as spans of prefix, are compared with the
     * request's decoded segments. */
    const char *p = prefix + 1;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 0 || m.n_segs == ADMIN_MAX_PREFIX_SEGS)
            return -1;
        m.seg_off[m.n_segs] = (size_t)(p - prefix);
        m.seg_len[m.n_segs] = n;
        m.n_segs++;
        p += n + (slash ? 1 : 0);
    }
    if (m.n_segs == 0)
        return -1;
    site->mounts[site->n_mounts++] = m;
    return 0;
}

static bool mount_matches(const struct admin_mount *m, const struct route *rt)
{
    if (rt->n < m->n_segs)
        return false;
    for (size_t i = 0; i < m->n_segs; i++)
        if (strlen(rt->seg[i]) != m->seg_len[i] || memcmp(rt->seg[i], m->prefix + m->seg_off[i], m->seg_len[i]) != 0)
            return false;
    return true;
}

/* The methods of every mount of this path, "GET, POST", for a 405. */
static const char *allowed_methods(struct admin_site *site, const struct route *rt)
{
    size_t o = 0;
    site->allow[0] = '\0';
    for (size_t i = 0; i < site->n_mounts; i++) {
        const struct admin_mount *m = &site->mounts[i];
        if (!m->method || !mount_matches(m, rt))
            continue;
        int n = snprintf(site->allow + o, sizeof site->allow - o, "%s%s", o ? ", " : "", m->method);
        if (n < 0 || (size_t)n >= sizeof site->allow - o)
            break;
        o += (size_t)n;
    }
    return site->allow;
}

/* GET /ready: for load balancers and orchestrators (Kubernetes'
 * readinessProbe); 503 sends them elsewhere while the daemon starts or
 * drains. */
static void reply_ready(const struct admin_site *site, struct admin_reply *r)
{
    char why[160] = "";
    if (!site->ready || site->ready(site->ready_arg, why, sizeof why))
        admin_reply_json(r, 200, json_pack("{s:b}", "ready", 1));
    else
        admin_reply_json(r, 503, json_pack("{s:b, s:s}", "ready", 0, "reason", why[0] ? why : "not ready"));
}

static void route_request(struct admin_site *site, struct admin_conn *conn, const struct http1_message *head,
                          const char *method, const struct route *rt, const struct query *q, const char *body,
                          size_t body_len, struct admin_reply *r)
{
    struct admin_request rq = { .method = method, .body = body, .body_len = body_len, .now_ms = ev_clock_ms(),
                                .query = q->param, .n_query = q->n, .conn = conn, .head = head };
    rq.seg = (const char *const *)rt->seg;
    rq.n_seg = rt->n;
    if (!admin_auth_allows(&site->auth, &rq, r))
        return;
    if (rt->n == 1 && seg_is(rt, 0, "metrics")) {
        if (!admin_is_get(&rq)) {
            admin_reply_method_not_allowed(r, "GET, HEAD");
            return;
        }
        size_t len = 0;
        char *text = admin_render_metrics(site, &len);
        if (text)
            admin_reply_metrics(r, text, len);
        else
            admin_reply_error(r, 500, "out of memory");
        return;
    }
    if (rt->n == 1 && seg_is(rt, 0, "ready")) {
        if (!admin_is_get(&rq))
            admin_reply_method_not_allowed(r, "GET, HEAD");
        else
            reply_ready(site, r);
        return;
    }
    if (rt->n == 2 && seg_is(rt, 0, "api") && seg_is(rt, 1, "status")) {
        if (!admin_is_get(&rq))
            admin_reply_method_not_allowed(r, "GET, HEAD");
        else
            admin_reply_json(r, 200, status_json(site));
        return;
    }
    bool path_known = false;
    for (size_t i = 0; i < site->n_mounts; i++) {
        const struct admin_mount *m = &site->mounts[i];
        if (!mount_matches(m, rt))
            continue;
        path_known = true;
        if (m->method && strcmp(m->method, method) != 0 &&
            !(strcmp(m->method, "GET") == 0 && strcmp(method, "HEAD") == 0))
            continue;
        rq.seg = (const char *const *)rt->seg + m->n_segs;
        rq.n_seg = rt->n - m->n_segs;
        m->fn(m->arg, &rq, r);
        return;
    }
    if (path_known)
        admin_reply_method_not_allowed(r, allowed_methods(site, rt));
    else
        admin_reply_error(r, 404, "no such path");
}

/* admin_handle for a request of conn (NULL: none, the request cannot be
 * deferred). */
static void handle_request(struct admin_site *site, struct admin_conn *conn, const struct http1_message *head,
                           const char *method, size_t method_len,
                           const char *target, size_t target_len, const char *body, size_t body_len,
                           struct admin_reply *reply)
{
    memset(reply, 0, sizeof *reply);
    char m[16];
    if (method_len == 0 || method_len >= sizeof m) {
        admin_reply_error(reply, 501, "method not implemented");
        return;
    }
    memcpy(m, method, method_len);
    m[method_len] = '\0';
    struct route rt;
    struct query q = {0};
    int rc = route_split(target, target_len, &rt);
    enum query_result qr = rc == 0 ? query_split(target, target_len, &q) : QUERY_OK;
    if (rc < 0)
        admin_reply_error(reply, 400, "malformed percent-encoding in the path");
    else if (rc > 0)
        admin_reply_error(reply, 404, "no such path");
    else if (qr == QUERY_MALFORMED)
        admin_reply_error(reply, 400, "malformed percent-encoding in the query");
    else if (qr == QUERY_TOO_MANY)
        admin_reply_error(reply, 400, "too many query parameters (at most %d)", ADMIN_MAX_QUERY);
    else if (qr == QUERY_NO_MEMORY)
        admin_reply_error(reply, 500, "out of memory");
    else
        route_request(site, conn, head, m, &rt, &q, body, body_len, reply);
    free(rt.buf);
    free(q.buf);
}

void admin_handle(struct admin_site *site, const char *method, size_t method_len, const char *target,
                  size_t target_len, const char *body, size_t body_len, struct admin_reply *reply)
{
    handle_request(site, NULL, NULL, method, method_len, target, target_len, body, body_len, reply);
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
    bool failed;                 /* out of memory queueing an answer: drop the client */
    /* How the request being answered wants its answer (set before its
     * handler runs, used when the answer is queued, now or later). */
    bool head_only;              /* HEAD: no body */
    bool keep_alive_10;          /* HTTP/1.0 with keep-alive: say so */
    bool dispatching;            /* its handler is running: admin_defer may be called */
    bool deferred;               /* its handler called admin_defer: its own reply is not the answer */
    bool awaiting;               /* a deferred answer is to come: later requests wait for it */
    uint32_t slot;               /* while awaiting: its slot in the site's table */
};

struct admin_server {
    struct ev_loop *loop;
    struct admin_site *site;
    struct ev_io io;
    struct ev_timer pause;       /* accept paused after EMFILE and friends */
    struct admin_conn *conns;
    uint32_t n_conns;
    uint32_t max_conns;          /* admin_options */
    uint32_t idle_ms;
    uint16_t port;
    bool stopped;                /* admin_stop ran (a cancel callback may call it again) */
    struct http1_limits lim;
    struct http1_message msg;    /* parse target, one is enough: parsing never yields */
};

/* ------------------------------------------------------------------ */
/* Deferred answers. Handles name a slot of the site's table and the
 * generation it had when handed out; a slot's generation changes (to 0,
 * then to a fresh one) whenever it is ended, so a stale handle matches
 * nothing, whether its connection closed, its answer was sent, or the
 * table was freed and made anew. The table lives in the site because
 * handles outlive servers (a store write in flight while admin.listen
 * moves); it is freed when its last slot ends. */

struct defer_slot {
    uint64_t gen;                /* 0: free */
    struct admin_conn *conn;
    admin_cancel_fn *cancel;
    void *arg;
    uint32_t next_free;          /* index + 1 of the next free slot, 0: none */
};

struct admin_defer_table {
    struct defer_slot *slots;
    uint32_t used, cap;          /* slots handed out at least once; allocated */
    uint32_t free_head;          /* index + 1, 0: none */
    uint32_t live;
};

static struct defer_slot *slot_take(struct admin_site *site, uint32_t *index)
{
    struct admin_defer_table *t = site->deferred;
    if (!t) {
        t = calloc(1, sizeof *t);
        if (!t)
            return NULL;
        site->deferred = t;
    }
    uint32_t i;
    if (t->free_head) {
        i = t->free_head - 1;
        t->free_head = t->slots[i].next_free;
    } else {
        if (t->used == t->cap) {
            uint32_t cap = t->cap ? t->cap * 2 : 16;
            struct defer_slot *grown = realloc(t->slots, cap * sizeof *grown);
            if (!grown) {
                if (!t->live) {
                    free(t->slots);
                    free(t);
                    site->deferred = NULL;
                }
                return NULL;
            }
            t->slots = grown;
            t->cap = cap;
        }
        i = t->used++;
    }
    t->live++;
    struct defer_slot *slot = &t->slots[i];
    *slot = (struct defer_slot){.gen = ++site->defer_gen};
    *index = i;
    return slot;
}

static struct defer_slot *slot_find(struct admin_deferred d)
{
    struct admin_defer_table *t = d.site ? d.site->deferred : NULL;
    if (!t || d.slot >= t->used || d.gen == 0 || t->slots[d.slot].gen != d.gen)
        return NULL;
    return &t->slots[d.slot];
}

static void slot_end(struct admin_site *site, uint32_t i)
{
    struct admin_defer_table *t = site->deferred;
    t->slots[i] = (struct defer_slot){.next_free = t->free_head};
    t->free_head = i + 1;
    if (--t->live == 0) {
        free(t->slots);
        free(t);
        site->deferred = NULL;
    }
}

static const char *status_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
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
    admin_cancel_fn *cancel = NULL;
    void *cancel_arg = NULL;
    if (c->awaiting) {
        /* The handle dies before the handler hears of it, so whatever
         * its cancel does with the handle (complete it) is harmless. */
        struct defer_slot *slot = &srv->site->deferred->slots[c->slot];
        cancel = slot->cancel;
        cancel_arg = slot->arg;
        slot_end(srv->site, c->slot);
        c->awaiting = false;
    }
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
    if (cancel)
        cancel(cancel_arg);
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
    admin_reply_error(&r, status, "%s", reason);
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
            ev_timer_start(c->srv->loop, &c->timer, c->srv->idle_ms); /* progress: not idle */
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
    if (!m->keep_alive)
        c->closing = true;
    c->head_only = m->method == HTTP1_M_HEAD;
    c->keep_alive_10 = m->version_minor == 0 && m->keep_alive;
    c->dispatching = true;
    c->deferred = false;
    handle_request(srv->site, c, m, m->method_str.p, m->method_str.len, m->target.p, m->target.len,
                   c->in + m->head_len, total - m->head_len, &r);
    c->dispatching = false;
    /* A deferred request's answer is queued by admin_complete (which may
     * already have run, inside the handler). */
    int rc = c->deferred ? 0 : conn_queue_reply(c, &r, c->head_only, c->keep_alive_10);
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

/* Everything before the deferred request is answered and written; its
 * answer is up to its handler. The idle timer stops (the handler owns the
 * deadline, a blocking query may wait minutes), but a client that goes
 * away must be noticed so the handler can forget the request: keep
 * reading (pipelined requests wait in the buffer, which is bounded) and
 * watch for the peer's FIN. Hanging up, even half-way, while an answer is
 * awaited counts as going away. */
static void conn_await(struct admin_conn *c)
{
    struct ev_loop *loop = c->srv->loop;
    if (c->peer_eof) {
        conn_close(c);
        return;
    }
    ev_timer_stop(loop, &c->timer);
    if (c->in_len == 0 && c->in) {
        /* Many watchers, each waiting long: do not keep a buffer each. */
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
    ev_io_set(loop, &c->io, (c->in_len < IN_MAX ? EPOLLIN : 0) | EPOLLRDHUP);
}

/* Answer what can be answered, write, and decide what to wait for. */
static void conn_step(struct admin_conn *c)
{
    for (;;) {
        if (c->failed) {
            conn_close(c);
            return;
        }
        if (out_pending(c)) {
            if (conn_flush(c) < 0) {
                conn_close(c);
                return;
            }
            if (out_pending(c)) {
                /* While a deferred answer is awaited, a hang-up still counts. */
                ev_io_set(c->srv->loop, &c->io, EPOLLOUT | (c->awaiting ? EPOLLRDHUP : 0));
                return;
            }
        }
        if (c->awaiting) {
            conn_await(c);
            return;
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
    if (c->awaiting && (revents & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
        conn_close(c);
        return;
    }
    if (!out_pending(c) && (!c->closing || c->awaiting) && (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
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
    ev_timer_start(srv->loop, &c->timer, srv->idle_ms);
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
        if (srv->n_conns >= srv->max_conns)
            refuse(fd);
        else
            conn_new(srv, fd);
    }
}

static int listen_on(const struct sl_addr *addr, int backlog, uint16_t *port, char *err, size_t errlen)
{
    int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "admin listener %s: socket: %s", addr->text, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0 || listen(fd, backlog) < 0) {
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

/* The options with their defaults filled in. */
static struct admin_options options_or_defaults(const struct admin_options *opts)
{
    struct admin_options o = opts ? *opts : (struct admin_options){0};
    if (!o.max_conns)
        o.max_conns = ADMIN_MAX_CONNS;
    if (!o.idle_ms)
        o.idle_ms = ADMIN_IDLE_MS;
    return o;
}

/* Each client is a descriptor: past the open-file limit accept fails
 * (and pauses, see accept_cb) before the server's own limit is reached. */
static void warn_if_over_fd_limit(const struct sl_addr *addr, uint32_t max_conns)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && max_conns >= rl.rlim_cur)
        log_warn("admin listener %s: up to %" PRIu32 " connections, but the open-file limit is %llu; "
                 "accepting pauses when descriptors run out",
                 addr->text, max_conns, (unsigned long long)rl.rlim_cur);
}

void admin_set_options(struct admin_server *srv, const struct admin_options *opts)
{
    struct admin_options o = options_or_defaults(opts);
    srv->max_conns = o.max_conns;
    srv->idle_ms = o.idle_ms;
}

struct admin_server *admin_start_with(struct ev_loop *loop, const struct sl_addr *addr, struct admin_site *site,
                                      const struct admin_options *opts, char *err, size_t errlen)
{
    struct admin_server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        snprintf(err, errlen, "admin listener: out of memory");
        return NULL;
    }
    admin_set_options(srv, opts);
    /* A server for many clients (watchers reconnecting at once after a
     * restart) lets a burst of them wait in the backlog rather than be
     * dropped; the kernel caps it at net.core.somaxconn. */
    int backlog = srv->max_conns <= ADMIN_MAX_CONNS ? 128 : srv->max_conns > 4096 ? 4096 : (int)srv->max_conns;
    int fd = listen_on(addr, backlog, &srv->port, err, errlen);
    if (fd < 0) {
        free(srv);
        return NULL;
    }
    warn_if_over_fd_limit(addr, srv->max_conns);
    srv->loop = loop;
    srv->site = site;
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

struct admin_server *admin_start(struct ev_loop *loop, const struct sl_addr *addr, struct admin_site *site,
                                 char *err, size_t errlen)
{
    return admin_start_with(loop, addr, site, NULL, err, errlen);
}

uint16_t admin_port(const struct admin_server *srv) { return srv ? srv->port : 0; }

uint32_t admin_connections(const struct admin_server *srv) { return srv ? srv->n_conns : 0; }

void admin_stop(struct admin_server *srv)
{
    if (!srv || srv->stopped)
        return;
    srv->stopped = true;
    while (srv->conns)
        conn_close(srv->conns);
    ev_io_stop(srv->loop, &srv->io);
    ev_timer_stop(srv->loop, &srv->pause);
    close(srv->io.fd);
    ev_defer_free(srv->loop, srv, free);
}

/* ------------------------------------------------------------------ */
/* Deferred answers: the handler's side */

struct admin_deferred admin_defer(const struct admin_request *rq, admin_cancel_fn *cancel, void *arg)
{
    struct admin_conn *c = rq->conn;
    if (!c || !c->dispatching || c->deferred)
        return (struct admin_deferred){0};
    struct admin_site *site = c->srv->site;
    uint32_t i;
    struct defer_slot *slot = slot_take(site, &i);
    if (!slot)
        return (struct admin_deferred){0};
    slot->conn = c;
    slot->cancel = cancel;
    slot->arg = arg;
    c->deferred = true;
    c->awaiting = true;
    c->slot = i;
    return (struct admin_deferred){.site = site, .slot = i, .gen = slot->gen};
}

bool admin_deferred_alive(struct admin_deferred d)
{
    return slot_find(d) != NULL;
}

void admin_complete(struct admin_deferred d, struct admin_reply *reply)
{
    struct defer_slot *slot = slot_find(d);
    if (!slot) {
        if (reply) {
            free(reply->body);
            reply->body = NULL;
            reply->body_len = 0;
        }
        return;
    }
    struct admin_conn *c = slot->conn;
    slot_end(d.site, d.slot);
    c->awaiting = false;
    struct admin_reply none = {0};
    if (!reply) {
        admin_reply_error(&none, 500, "the handler gave no answer");
        reply = &none;
    }
    if (conn_queue_reply(c, reply, c->head_only, c->keep_alive_10) < 0)
        c->failed = true;
    free(reply->body);
    reply->body = NULL;
    reply->body_len = 0;
    if (c->dispatching)
        return;         /* completed inside its handler: conn_step goes on from there */
    /* Not from here: this may run inside another client's handler (a
     * write that wakes watchers), and answering the pipelined requests
     * behind this one would run handlers inside a handler. The loop
     * writes the answer and carries on when the socket is writable. */
    struct admin_server *srv = c->srv;
    ev_timer_start(srv->loop, &c->timer, srv->idle_ms);
    ev_io_set(srv->loop, &c->io, EPOLLOUT);
}
