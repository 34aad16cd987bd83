/* An HTTP transaction: see http_txn.h. */
#include "proxy/http_txn.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>

#include "core/log.h"
#include "lib/balance.h"
#include "proxy/access_log.h"
#include "proxy/error_pages.h"
#include "proxy/forwarded_headers.h"
#include "proxy/http_carrier.h"
#include "proxy/http_route.h"
#include "proxy/http_vars.h"
#include "proxy/pool.h"
#include "proxy/proxy_protocol.h"
#include "proxy/ratelimit_http.h"
#include "proxy/tls.h"

static void body_clock_start(struct http_txn *t);
static void body_timeout(struct ev_loop *loop, struct ev_timer *timer);
static void request_start_upstream(struct http_txn *t);
static void fail_after_tries(struct http_txn *t);
static void upstream_event(struct ev_loop *loop, struct ev_io *io, uint32_t ev);
static void request_finish(struct http_txn *t);

/* upstream_failed() reason of a connect timeout, recognised by address:
 * if it is the last failure, the client gets 504 rather than 502. */
static const char connect_timeout_reason[] = "connect timed out";

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---------- variables (http_vars.h) ---------- */

#define HEADER_VALUE_MAX 4096 /* a rendered header value; longer is cut */

static const char *request_id_of(struct http_txn *t)
{
    if (!t->request_id[0])
        http_vars_new_request_id(t->request_id);
    return t->request_id;
}

/* The client's port: asked of the socket only when a format uses it. */
const struct error_page *http_txn_error_page(const struct http_txn *t, int status)
{
    const struct error_page *page = t->route ? error_page_find(t->route->error_pages, status) : NULL;
    return page ? page : error_page_find(t->cr->l->cfg->error_pages, status);
}

/* The client's port, as the PROXY header, TOA or the socket gave it: every
 * carrier records the client in cr->origin at accept. */
static int peer_port(const struct http_carrier *cr)
{
    const struct sockaddr_storage *ss = cr->origin ? &cr->origin->client : NULL;
    if (ss && ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    if (ss && ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return 0;
}

static int64_t span_us(uint64_t from, uint64_t to)
{
    return from && to >= from ? (int64_t)(to - from) : -1;
}

/* The values of every variable as far as the transaction knows them now;
 * uses: the variables the formats to render read (http_fmt.uses). */
static void fill_vars(struct http_txn *t, struct http_vars *v, const struct http1_message *req,
                      const struct http1_message *resp, uint64_t uses)
{
    struct http_carrier *cr = t->cr;
    uint64_t now = now_us();
    *v = (struct http_vars){
        .req = req,
        .resp = resp,
        .http2 = cr->http2,
        .remote_addr = cr->peer_ip,
        .remote_port = uses & (1ull << HV_REMOTE_PORT) ? peer_port(cr) : 0,
        .scheme = cr->tr && transport_is_tls(cr->tr) ? "https" : "http",
        .listener = cr->l->cfg->name,
        .route = t->route ? t->route->name : NULL,
        .pool = t->pool ? t->pool->cfg->name : NULL,
        .upstream_addr = t->up ? t->up->b->cfg->addr.text : NULL,
        .status = t->status,
        .body_bytes_sent = t->resp_bytes,
        .bytes_sent = t->resp_bytes + t->resp_head_bytes,
        .request_length = t->req_head_bytes + t->req_body_bytes,
        .upstream_connect_us = span_us(t->upstream_connect_start_us, t->upstream_connected_us),
        .upstream_header_us = span_us(t->upstream_connect_start_us, t->upstream_first_byte_us),
        .upstream_response_us = span_us(t->upstream_connect_start_us, t->upstream_first_byte_us ? now : 0),
        .request_time_us = span_us(t->started_us, now),
        .upstream_tries = t->tries,
        .request_id = uses & (1ull << HV_REQUEST_ID) ? request_id_of(t) : NULL,
    };
    clock_gettime(CLOCK_REALTIME, &v->now);
    struct tls_info tls;
    if (cr->tr && transport_tls_info(cr->tr, &tls)) {
        v->ssl_protocol = tls.version;
        v->ssl_cipher = tls.cipher;
        v->ssl_server_name = tls.sni;
        v->ssl_session_reused = tls.resumed != 0;
        v->ssl_client_s_dn = tls.client_subject;
    }
}

/* The request head for variables read after http_txn_start: the copy. */
static const struct http1_message *request_snapshot(const struct http_txn *t)
{
    return t->req_copy && t->req_copy->m.head_len ? &t->req_copy->m : NULL;
}

static const struct http1_message *response_snapshot(const struct http_txn *t)
{
    return t->resp_copy && t->resp_copy->m.head_len ? &t->resp_copy->m : NULL;
}

/* Copy a message head for variables read after it left its buffer. A
 * copy that cannot be made leaves those variables without a value. */
static void keep_head(struct http_head_copy **c, const struct http1_message *m, const char *raw)
{
    if (!*c && !(*c = calloc(1, sizeof **c)))
        return;
    if (http_head_copy_take(*c, raw, m) < 0)
        (*c)->m.head_len = 0;
}

static uint64_t plan_uses(const struct header_plan *p)
{
    uint64_t uses = 0;
    for (size_t i = 0; i < p->n_add; i++)
        uses |= p->add[i].value.uses;
    return uses;
}

/* The fields a plan adds, rendered, as "Name: value" lines. A value that
 * would carry a control byte (from what the client sent) or that renders
 * empty is left out: a rule never makes a malformed message. */
static int put_plan_fields(struct buf *o, const struct header_plan *p, const struct http_vars *v,
                           const char *peer, bool *host_sent, const char *skip)
{
    int rc = 0;
    char value[HEADER_VALUE_MAX];
    for (size_t i = 0; i < p->n_add; i++) {
        if (skip && strcasecmp(p->add[i].name, skip) == 0)
            continue;
        bool refused;
        size_t n = http_fmt_render(&p->add[i].value, v, HTTP_ESC_HEADER, value, sizeof value, &refused);
        if (refused)
            log_debug("client %s: header field %s not sent: its value would hold a control character", peer,
                      p->add[i].name);
        if (!n)
            continue;
        rc |= buf_append(o, p->add[i].name, strlen(p->add[i].name));
        rc |= buf_append(o, ": ", 2);
        rc |= buf_append(o, value, n);
        rc |= buf_append(o, "\r\n", 2);
        if (host_sent && strcasecmp(p->add[i].name, "Host") == 0)
            *host_sent = true;
    }
    return rc;
}

static const struct header_plan *request_plan_of(const struct http_txn *t)
{
    return t->route ? &t->route->request_plan : &t->cr->l->cfg->request_plan;
}

static const struct header_plan *response_plan_of(const struct http_txn *t)
{
    return t->route ? &t->route->response_plan : &t->cr->l->cfg->response_plan;
}

/* ---------- the access-log record ---------- */

static void copy_slice(char *dst, size_t cap, struct http1_slice s)
{
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    memcpy(dst, s.p, n);
    dst[n] = '\0';
}

static void capture_log_fields(struct http_txn *t, const struct http1_message *m, const char *raw)
{
    struct http_carrier *cr = t->cr;
    if (!cr->l->alog)
        return;
    if (!t->log && !(t->log = malloc(sizeof *t->log)))
        return;
    const char *eol = memchr(raw, '\r', m->head_len);
    copy_slice(t->log->line, sizeof t->log->line,
               (struct http1_slice){raw, eol ? (size_t)(eol - raw) : 0});
    const struct http1_header *h = http1_find_header(m, "Referer");
    copy_slice(t->log->referer, sizeof t->log->referer, h ? h->value : (struct http1_slice){"", 0});
    h = http1_find_header(m, "User-Agent");
    copy_slice(t->log->user_agent, sizeof t->log->user_agent, h ? h->value : (struct http1_slice){"", 0});
    copy_slice(t->log->host, sizeof t->log->host, m->host);
}

/* A request refused before it was parsed (400, 414, 431, or 408 for a
 * head that did not arrive): log its first line as far as it came, so the
 * access log shows what was refused. */
static void capture_rejected_line(struct http_txn *t)
{
    struct http_carrier *cr = t->cr;
    if (!cr->l->alog)
        return;
    if (!t->log && !(t->log = calloc(1, sizeof *t->log)))
        return;
    const char *raw = buf_len(&cr->in) ? buf_head(&cr->in) : "";
    size_t n = 0, len = buf_len(&cr->in);
    while (n < len && raw[n] != '\r' && raw[n] != '\n')
        n++;
    copy_slice(t->log->line, sizeof t->log->line, (struct http1_slice){raw, n});
    t->log->referer[0] = t->log->user_agent[0] = t->log->host[0] = '\0';
}

/* reason: why Sluice answered itself (http_carrier_send_error), NULL for a
 * response from the backend. */
static void write_access_log(struct http_txn *t, const char *reason)
{
    struct http_carrier *cr = t->cr;
    if (!cr->l->alog)
        return;
    const struct cfg_log_format *lf = cr->l->cfg->log_format;
    if (cr->l->cfg->access_log_format == ACCESS_LOG_CUSTOM && lf) {
        struct http_vars v;
        fill_vars(t, &v, request_snapshot(t), response_snapshot(t), lf->fmt.uses);
        v.reason = reason;
        v.request_line = t->log ? t->log->line : NULL;
        access_log_write_fmt(cr->l->alog, &lf->fmt, lf->escape, &v);
        return;
    }
    uint64_t now = now_us();
    struct access_entry e = {
        .client_ip = cr->peer_ip,
        .request_line = t->log ? t->log->line : NULL,
        .referer = t->log ? t->log->referer : NULL,
        .user_agent = t->log ? t->log->user_agent : NULL,
        .host = t->log ? t->log->host : NULL,
        .upstream = t->up ? t->up->b->cfg->addr.text : NULL,
        .listener = cr->l->cfg->name,
        .reason = reason,
        .status = t->status,
        .bytes_sent = t->resp_bytes,
        .duration_us = t->started_us ? now - t->started_us : 0,
        .bytes_received = t->req_head_bytes + t->req_body_bytes,
        .upstream_connect_us = span_us(t->upstream_connect_start_us, t->upstream_connected_us),
        .upstream_header_us = span_us(t->upstream_connect_start_us, t->upstream_first_byte_us),
        .upstream_response_us = span_us(t->upstream_connect_start_us, t->upstream_first_byte_us ? now : 0),
        .upstream_tries = t->tries,
        .route = t->route ? t->route->name : NULL,
        .pool = t->pool ? t->pool->cfg->name : NULL,
    };
    struct tls_info tls;
    if (cr->tr && transport_tls_info(cr->tr, &tls)) {
        e.tls_version = tls.version;
        e.tls_cipher = tls.cipher;
        e.sni = tls.sni;
        e.tls_resumed = tls.resumed;
        e.client_subject = tls.client_subject;
    }
    access_log_write(cr->l->alog, &e);
}

/* ---------- building the upstream request head ---------- */

static int fwd_put(struct buf *b, const char *p, size_t n)
{
    return buf_append(b, p, n);
}

static int fwd_puts(struct buf *b, const char *s) { return fwd_put(b, s, strlen(s)); }

static bool name_is(struct http1_slice n, const char *lit)
{
    return n.len == strlen(lit) && strncasecmp(n.p, lit, n.len) == 0;
}

/* Decimal digits of v (the hot path has no use for printf's generality). */
static int put_uint(struct buf *o, uint64_t v)
{
    char digits[20];
    size_t n = 0;
    do {
        digits[sizeof digits - ++n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return buf_append(o, digits + sizeof digits - n, n);
}

static int build_request_head(struct http_txn *t, const struct http1_message *m)
{
    struct http_carrier *cr = t->cr;
    struct buf *f = &t->fwd;
    if (buf_alloc(f, cr->l->cfg->limits.max_header_size + HTTP_HEAD_SLACK) < 0)
        return -1;
    f->start = f->end = 0;
    int rc = 0;
    rc |= fwd_put(f, m->method_str.p, m->method_str.len);
    rc |= fwd_puts(f, " ");
    /* An absolute-form target goes upstream in origin form with its
     * authority as the Host, which is how it was routed. */
    bool absolute = m->authority.len && m->method != HTTP1_M_CONNECT;
    struct http1_slice path = http_request_path(m);
    if (absolute && (!path.len || path.p[0] != '/'))
        rc |= fwd_puts(f, "/");
    rc |= fwd_put(f, path.p, path.len);
    rc |= fwd_puts(f, t->http10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
    if (absolute && !header_plan_drops(request_plan_of(t), "Host", 4)) {
        rc |= fwd_puts(f, "Host: ");
        rc |= fwd_put(f, m->authority.p, m->authority.len);
        rc |= fwd_puts(f, "\r\n");
    }
    /* tls.client_certificates.subject_header: only ever ours. The
     * client's field of that name goes, whether or not it presented a
     * certificate, so a backend trusting it cannot be lied to. */
    const struct cfg_tls *tls_cfg = cr->l->cfg->tls;
    const char *subject_header = tls_cfg ? tls_cfg->clients.subject_header : NULL;
    uint8_t hop[HTTP1_MAX_HEADERS_CAP];
    http1_mark_hop_by_hop(m, hop);
    const struct header_plan *plan = request_plan_of(t);
    bool drop_underscores = !cr->l->cfg->allow_underscores;
    uint64_t dropped = 0;
    for (size_t i = 0; i < m->n_headers; i++) {
        const struct http1_header *h = &m->headers[i];
        if (drop_underscores && http1_name_has_underscore(h->name)) {
            /* What nginx does by default: "X_Forwarded_For" or
             * "Transfer_Encoding" would reach a CGI/WSGI/PHP application
             * as the field whose '-' it replaces, one we rewrote or framed
             * the request by (see http1_name_has_underscore). */
            dropped++;
            log_debug("client %s: dropped request header field \"%.*s\" (its name has '_')", cr->peer_ip,
                      (int)h->name.len, h->name.p);
            continue;
        }
        if (hop[i])
            continue;
        if (absolute && name_is(h->name, "Host"))
            continue; /* replaced by the target's authority above */
        if (name_is(h->name, "Content-Length"))
            continue; /* sent once, normalized, below */
        if (forwarded_header_is_ours(cr->l->cfg, h->name))
            continue; /* rebuilt below, by the trust rule of forwarded_headers.h */
        if (name_is(h->name, "X-Forwarded-Proto"))
            continue; /* ours, not the client's, is the truth */
        if (subject_header && name_is(h->name, subject_header))
            continue;
        if (header_plan_drops(plan, h->name.p, h->name.len))
            continue; /* request_headers: remove or set */
        rc |= fwd_put(f, h->name.p, h->name.len);
        rc |= fwd_puts(f, ": ");
        rc |= fwd_put(f, h->value.p, h->value.len);
        rc |= fwd_puts(f, "\r\n");
    }
    if (plan->n_add) {
        struct http_vars v;
        fill_vars(t, &v, m, NULL, plan_uses(plan));
        bool host_sent = false;
        rc |= put_plan_fields(f, plan, &v, cr->peer_ip, &host_sent, NULL);
        if (!host_sent && header_plan_drops(plan, "Host", 4)) {
            /* "set: {Host: ...}" rendered empty: the request keeps its own. */
            struct http1_slice host = http_request_host(m);
            rc |= fwd_puts(f, "Host: ");
            rc |= fwd_put(f, host.p, host.len);
            rc |= fwd_puts(f, "\r\n");
        }
    }
    rc |= forwarded_headers_put(f, cr, m);
    rc |= fwd_puts(f, cr->tr && transport_is_tls(cr->tr) ? "X-Forwarded-Proto: https\r\n"
                                                         : "X-Forwarded-Proto: http\r\n");
    struct tls_info tls;
    if (subject_header && cr->tr && transport_tls_info(cr->tr, &tls) && tls.client_subject) {
        rc |= fwd_puts(f, subject_header);
        rc |= fwd_puts(f, ": ");
        rc |= fwd_puts(f, tls.client_subject);
        rc |= fwd_puts(f, "\r\n");
    }
    /* The parser accepted "5, 5" or two equal Content-Length fields (RFC
     * 9110 §8.6); the backend gets exactly one plain value, so it cannot
     * frame the body differently. */
    if (m->body == HTTP1_BODY_LENGTH) {
        rc |= fwd_puts(f, "Content-Length: ");
        rc |= put_uint(f, m->content_length);
        rc |= fwd_puts(f, "\r\n");
    }
    if (m->body == HTTP1_BODY_CHUNKED)
        rc |= fwd_puts(f, "Transfer-Encoding: chunked\r\n");
    if (t->want_upgrade) {
        const struct http1_header *up = http1_find_header(m, "Upgrade");
        rc |= fwd_puts(f, "Connection: upgrade\r\nUpgrade: ");
        rc |= fwd_put(f, up->value.p, up->value.len);
        rc |= fwd_puts(f, "\r\n");
    } else if (t->http10) {
        rc |= fwd_puts(f, "Connection: keep-alive\r\n");
    }
    rc |= fwd_puts(f, "\r\n");
    if (dropped)
        atomic_fetch_add_explicit(&cr->l->ctr->underscore_dropped[0], dropped, memory_order_relaxed);
    return rc ? -1 : 0;
}

/* A sticky cookie naming a backend that can still take the session. */
static int sticky_backend(struct worker *w, struct pool_rt *p, const struct http1_message *m)
{
    struct http1_slice v;
    if (!http_find_cookie(m, p->cfg->sticky_cookie, &v) || v.len != 16)
        return -1;
    for (size_t i = 0; i < p->n; i++) {
        if (memcmp(p->b[i].sticky_token, v.p, 16) != 0)
            continue;
        /* Draining keeps its sessions; down, disabled or ejected does not. */
        struct shared_backend *sb = p->b[i].sh;
        if (p->weights[i] ||
            (atomic_load(&sb->admin) == BACKEND_DRAINING && atomic_load(&sb->health) == HEALTH_UP &&
             atomic_load(&sb->ejected_until_ms) <= ev_now(w->loop)))
            return (int)i;
        return -1;
    }
    return -1;
}

/* ---------- the transaction ---------- */

void http_txn_reset(struct http_txn *t)
{
    t->head_len = t->pos = t->req_ready = 0;
    t->req_left = 0;
    t->req_done = false;
    t->req_abandoned = false;
    t->replayable = true;
    t->req_sent_any = false;
    t->tries = 0;
    t->retry_from = NULL;
    t->pool = NULL;
    t->set_sticky = false;
    t->resp_started = t->resp_head_done = t->resp_done = false;
    t->resp_sent = false;
    t->connect_timed_out = false;
    t->last_failure[0] = '\0';
    t->req_length = 0;
    t->resp_ready = 0;
    t->resp_left = 0;
    t->status = 0;
    t->resp_bytes = 0;
    t->want_upgrade = false;
    t->tunnel = false;
    t->fwd_sent = 0;
    t->started_us = 0;
    t->retry_after_s = 0;
    t->upstream_connect_start_us = t->upstream_connected_us = t->upstream_first_byte_us = 0;
    t->route = NULL;
    t->request_id[0] = '\0';
    t->req_head_bytes = t->req_body_bytes = t->resp_head_bytes = 0;
    if (t->req_copy)
        t->req_copy->m.head_len = 0;
    if (t->resp_copy)
        t->resp_copy->m.head_len = 0;
    t->local_answer = false;
    t->local_len = t->local_off = 0;
    http_txn_body_clock_stop(t);
    /* A request refused before parsing must not be logged with the fields
     * of the one before it on this connection. */
    if (t->log)
        t->log->line[0] = t->log->referer[0] = t->log->user_agent[0] = t->log->host[0] = '\0';
}

static const char *answer_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 410: return "Gone";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Status";
    }
}

/* The head and body of a route's redirect: or return: answer into
 * cr->out (the body, over HTTP/2, into t->local_body). A Location that
 * would carry a control byte from the request is not sent: the answer
 * becomes a 500, since a redirect without one leads nowhere. */
static int local_answer_build(struct http_txn *t, const struct http1_message *m)
{
    struct http_carrier *cr = t->cr;
    const struct cfg_route_answer *a = &t->route->answer;
    char location[HEADER_VALUE_MAX], body[64];
    const char *text = a->body ? a->body : "";
    size_t text_len = strlen(text), loc_len = 0;
    int status = a->status;
    if (a->action == ROUTE_REDIRECT) {
        struct http_vars v;
        bool refused;
        fill_vars(t, &v, m, NULL, a->location.uses);
        loc_len = http_fmt_render(&a->location, &v, HTTP_ESC_HEADER, location, sizeof location, &refused);
        if (!loc_len) {
            log_debug("client %s: redirect of route %s has no valid Location", cr->peer_ip, t->route->name);
            status = 500;
            text = "500 Internal Server Error: the redirect's target could not be made\n";
        } else {
            /* The body does not repeat the Location: both must fit the
             * head buffer, and a long $request_uri would not twice. */
            int n = snprintf(body, sizeof body, "%d %s\n", status, answer_reason(status));
            text = body;
            text_len = (size_t)n;
        }
        if (status == 500)
            text_len = strlen(text);
    }
    bool no_body = status == 204 || status == 304 || t->method == HTTP1_M_HEAD;
    if (buf_alloc(&cr->out, cr->l->cfg->limits.max_header_size + HTTP_HEAD_SLACK) < 0)
        return -1;
    char head[256];
    int hl = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\n", status, answer_reason(status));
    int rc = buf_append(&cr->out, head, (size_t)hl);
    /* response_headers apply to the answer too (an HSTS field on a
     * redirect to https is the usual case); Location and the framing
     * fields are ours, and rules cannot name the latter. */
    const struct header_plan *plan = response_plan_of(t);
    if (!header_plan_drops(plan, "Server", 6))
        rc |= buf_append(&cr->out, "Server: sluice\r\n", 16);
    if (status != 500 && loc_len) {
        rc |= buf_append(&cr->out, "Location: ", 10);
        rc |= buf_append(&cr->out, location, loc_len);
        rc |= buf_append(&cr->out, "\r\n", 2);
    }
    if (plan->n_add) {
        struct http_vars v;
        fill_vars(t, &v, m, NULL, plan_uses(plan));
        v.status = status;
        /* a redirect's Location is the route's own */
        rc |= put_plan_fields(&cr->out, plan, &v, cr->peer_ip, NULL, loc_len ? "Location" : NULL);
    }
    if (status != 204 && status != 304) {
        hl = snprintf(head, sizeof head, "Content-Type: text/plain\r\nContent-Length: %zu\r\n", text_len);
        rc |= buf_append(&cr->out, head, (size_t)hl);
    }
    if (cr->close_after)
        rc |= buf_append(&cr->out, "Connection: close\r\n", 19);
    else if (t->http10)
        rc |= buf_append(&cr->out, "Connection: keep-alive\r\n", 24);
    rc |= buf_append(&cr->out, "\r\n", 2);
    if (rc)
        return -1;
    t->resp_head_bytes = buf_len(&cr->out);
    t->status = status;
    if (no_body)
        return 0;
    if (cr->http2) {
        /* HTTP/2 turns the head in `out` into HEADERS; the body goes
         * through the stream's data provider (h2_stream.c). */
        char *copy = realloc(t->local_body, text_len ? text_len : 1);
        if (!copy)
            return -1;
        memcpy(copy, text, text_len);
        t->local_body = copy;
        t->local_len = text_len;
        t->local_off = 0;
    } else if (buf_append(&cr->out, text, text_len) < 0) {
        return -1;
    }
    t->resp_bytes = text_len;
    return 0;
}

/* A step of a local answer: write it, then finish as a proxied one does. */
static void local_answer_step(struct http_txn *t)
{
    struct http_carrier *cr = t->cr;
    if (http_carrier_send(cr) < 0) {
        http_carrier_abort(cr);
        return;
    }
    if (!buf_len(&cr->out))
        request_finish(t);
}

static void local_answer_start(struct http_txn *t, const struct http1_message *m)
{
    struct http_carrier *cr = t->cr;
    /* The body the client may still send is not read: close after. */
    if (!t->req_done)
        cr->close_after = true;
    if (local_answer_build(t, m) < 0) {
        cr->out.start = cr->out.end = 0;
        http_carrier_send_error(cr, 500, "the route's answer does not fit");
        return;
    }
    t->local_answer = true;
    t->resp_head_done = true;
    t->resp_done = true;
    t->resp_body = HTTP1_BODY_LENGTH;
    http_count_response(cr->l, t->status);
    /* An HTTP/1 connection takes the step itself, right after this call
     * (it is forwarding now); finishing here, inside its parse, would let
     * it miss a pipelined request already in its buffer. An HTTP/2
     * stream has no such loop: write the answer now. */
    if (cr->http2)
        local_answer_step(t);
}

/* See http_txn.h. The carrier counted the request and decided on
 * keep-alive (cr->close_after) before this. */
void http_txn_start(struct http_txn *t, struct http1_message *m)
{
    struct http_carrier *cr = t->cr;
    struct worker *w = cr->w;
    t->method = m->method;
    t->http10 = m->version_minor == 0;
    t->head_len = m->head_len;
    t->pos = m->head_len;
    t->req_body = m->body;
    t->req_left = m->body == HTTP1_BODY_LENGTH ? m->content_length : 0;
    t->req_length = t->req_left;
    if (m->body == HTTP1_BODY_CHUNKED)
        http1_chunked_init(&t->req_chunk);
    t->req_done = m->body == HTTP1_BODY_NONE || (m->body == HTTP1_BODY_LENGTH && m->content_length == 0);
    /* Not h2c: a cleartext HTTP/2 connection to the backend would carry
     * requests this proxy never sees or routes. Without want_upgrade the
     * Upgrade header (hop-by-hop) is dropped and the request is plain. */
    const struct http1_header *upg = http1_find_header(m, "Upgrade");
    t->want_upgrade = m->upgrade && upg && !http1_has_token(upg->value, "h2c");
    capture_log_fields(t, m, buf_head(&cr->in));
    t->req_head_bytes = m->head_len;
    if (cr->l->cfg->keep_request_head)
        keep_head(&t->req_copy, m, buf_head(&cr->in));
    if (ratelimit_refuse_request(t, m))
        return;

    if (m->method == HTTP1_M_CONNECT) {
        http_carrier_send_error(cr, 501, "CONNECT is not supported");
        return;
    }
    int route = http_route_index(cr->l->cfg, m);
    t->route = route >= 0 ? &cr->l->cfg->routes[route] : NULL;
    if (t->route && t->route->answer.action != ROUTE_TO_POOL) {
        local_answer_start(t, m);
        return;
    }
    int pool = http_route(cr->l->cfg, m);
    if (pool < 0) {
        http_carrier_send_error(cr, 404, "no route for this host and path");
        return;
    }
    struct pool_rt *p = &w->pools[pool];
    t->pool = p;
    if (build_request_head(t, m) < 0) {
        http_carrier_send_error(cr, 431, "request head too large after rewriting");
        return;
    }
    t->key_hash = p->cfg->algorithm == LB_HASH ? http_key_hash(p->cfg, m, cr->peer_ip) : 0;
    free(t->tried);
    t->tried = calloc(p->n, 1);
    if (!t->tried) {
        http_carrier_send_error(cr, 503, "out of memory");
        return;
    }
    t->sticky_idx = p->cfg->sticky_cookie ? sticky_backend(w, p, m) : -1;
    if (!t->req_done)
        body_clock_start(t);
    request_start_upstream(t);
}

/* Pick a backend that has not been tried for this request: the sticky
 * one first if the client has a valid cookie. */
static int request_pick(struct http_txn *t)
{
    struct http_carrier *cr = t->cr;
    if (t->tries == 0 && t->sticky_idx >= 0)
        return t->sticky_idx;
    return pool_pick(cr->w, t->pool, t->key_hash, t->tried);
}

static void request_fail(struct http_txn *t, int status, const char *why)
{
    struct http_carrier *cr = t->cr;
    if (status == 503)
        atomic_fetch_add_explicit(&cr->l->ctr->no_backend, 1, memory_order_relaxed);
    http_carrier_send_error(cr, status, why);
}

/* A try begins on t->up: a new connection starts its clock at the
 * connect; a pooled one is connected already. */
static void upstream_timing_start(struct http_txn *t)
{
    uint64_t now = now_us();
    t->upstream_connect_start_us = now;
    t->upstream_connected_us = t->up->connecting ? 0 : now;
    t->upstream_first_byte_us = 0;
}

/* The backend's histograms (shared.h): connect of a new connection, and
 * the first response byte counted from the start of the try. */
static void upstream_timing_connected(struct http_txn *t)
{
    t->upstream_connected_us = now_us();
    latency_observe(&t->up->b->ctr->connect_time, t->upstream_connected_us - t->upstream_connect_start_us);
}

static void upstream_timing_first_byte(struct http_txn *t)
{
    t->upstream_first_byte_us = now_us();
    latency_observe(&t->up->b->ctr->header_time, t->upstream_first_byte_us - t->upstream_connect_start_us);
}

/* The listener's request histogram: from the first byte of the request
 * to its answer (the last byte handed to the client's side, or our own
 * error response). */
static void observe_request_time(struct http_txn *t)
{
    if (t->started_us)
        latency_observe(&t->cr->l->ctr->request_time, now_us() - t->started_us);
}

static void request_start_upstream(struct http_txn *t)
{
    struct http_carrier *cr = t->cr;
    struct pool_rt *p = t->pool;
    for (;;) {
        if (t->tries > p->cfg->retries) {
            if (t->connect_timed_out)
                request_fail(t, 504, "no backend accepted the connection in time");
            else
                fail_after_tries(t);
            return;
        }
        int idx = request_pick(t);
        if (idx < 0) {
            if (t->connect_timed_out)
                request_fail(t, 504, "no backend accepted the connection in time");
            else if (!t->tries)
                request_fail(t, 503, "no backend is available");
            else
                fail_after_tries(t);
            return;
        }
        struct backend_rt *b = &p->b[idx];
        t->tried[idx] = 1;
        t->tries++;
        if (t->retry_from) /* counted on the backend that failed, as the help text says */
            atomic_fetch_add_explicit(&t->retry_from->ctr->retries, 1, memory_order_relaxed);
        t->retry_from = NULL;
        t->set_sticky = p->cfg->sticky_cookie && idx != t->sticky_idx;
        struct upstream_conn *u = upstream_get_for(cr->w, p, b, upstream_event, t, cr->origin);
        if (!u) {
            t->connect_timed_out = false;
            atomic_fetch_add_explicit(&b->ctr->connect_failures, 1, memory_order_relaxed);
            backend_report(cr->w, p, b, false);
            t->retry_from = b;
            continue;
        }
        t->up = u;
        upstream_timing_start(t);
        p->outstanding[idx]++;
        p->active[idx]++;
        t->fwd_sent = 0;
        http_carrier_set_timer(cr, u->connecting ? cr->l->cfg->timeouts.connect_ms
                                                 : cr->l->cfg->timeouts.upstream_response_ms);
        return;
    }
}

void http_txn_detach_upstream(struct http_txn *t, bool reusable)
{
    struct upstream_conn *u = t->up;
    if (!u)
        return;
    struct pool_rt *p = t->pool;
    size_t idx = u->b->index;
    if (p->outstanding[idx])
        p->outstanding[idx]--;
    if (p->active[idx])
        p->active[idx]--;
    t->up = NULL;
    if (reusable)
        upstream_release(u);
    else
        upstream_close(u);
}

/* The upstream failed before any response byte: retry or give up. */
static void upstream_failed(struct http_txn *t, bool connect_failure, const char *why)
{
    struct http_carrier *cr = t->cr;
    /* The latest failure decides between 502 and 504 if nothing is left to try. */
    t->connect_timed_out = why == connect_timeout_reason;
    snprintf(t->last_failure, sizeof t->last_failure, "%s", why);
    struct upstream_conn *u = t->up;
    struct backend_rt *b = u->b;
    bool was_reused = u->reused;
    if (connect_failure)
        atomic_fetch_add_explicit(&b->ctr->connect_failures, 1, memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&b->ctr->upstream_errors, 1, memory_order_relaxed);
    /* A pooled connection the server had already closed says nothing
     * about the backend's health. */
    if (!was_reused)
        backend_report(cr->w, t->pool, b, false);
    http_txn_detach_upstream(t, false);
    bool never_sent = connect_failure || !t->req_sent_any;
    bool may_retry = t->replayable && !t->resp_started &&
                     (never_sent || http1_method_idempotent(t->method));
    if (!may_retry) {
        log_debug("upstream %s failed (%s), request not retryable", b->cfg->addr.text, why);
        request_fail(t, 502, why);
        return;
    }
    if (was_reused) {
        t->tries--; /* a stale pooled connection does not use up a try... */
        t->tried[b->index] = 0; /* ...nor rule out its backend */
    } else {
        t->retry_from = b;
    }
    /* Replay from the start of the body. */
    t->req_body_bytes = 0;
    t->pos = t->head_len;
    t->req_ready = 0;
    t->req_sent_any = false;
    t->req_done = t->req_body == HTTP1_BODY_NONE;
    if (t->req_body == HTTP1_BODY_LENGTH) {
        /* Still replayable, so every body byte is in the buffer again:
         * none of it has been validated for this attempt. (The raw head
         * may be gone, see http_txn_compact(), so not re-parsed.) */
        t->req_left = t->req_length;
        t->req_done = t->req_left == 0;
    } else if (t->req_body == HTTP1_BODY_CHUNKED) {
        http1_chunked_init(&t->req_chunk);
    }
    request_start_upstream(t);
}

/* Every try failed: 502, saying why the last one did, since that is
 * what the operator acts on (a refused certificate, a reset). */
static void fail_after_tries(struct http_txn *t)
{
    char reason[160];
    if (!t->last_failure[0]) {
        request_fail(t, 502, "every backend tried failed");
        return;
    }
    snprintf(reason, sizeof reason, "every backend tried failed; the last: %s", t->last_failure);
    request_fail(t, 502, reason);
}

/* An upstream I/O error before the response: a TLS handshake with the
 * backend that failed is a connect failure, with OpenSSL's reason;
 * anything else is an upstream error. */
static void upstream_io_failed(struct http_txn *t, const char *why)
{
    const char *tls = transport_tls_handshake_error(&t->up->tr);
    if (!tls) {
        upstream_failed(t, false, why);
        return;
    }
    char reason[160];
    snprintf(reason, sizeof reason, "TLS handshake with the backend failed: %s", tls);
    upstream_failed(t, true, reason);
}

/* ---------- moving the request ---------- */

/* Validate newly arrived request body bytes so they may be sent. */
static int request_body_validate(struct http_txn *t)
{
    struct http_carrier *cr = t->cr;
    size_t avail = buf_len(&cr->in) - t->pos - t->req_ready;
    if (!avail || t->req_done || t->req_abandoned)
        return 0;
    const char *p = buf_head(&cr->in) + t->pos + t->req_ready;
    if (t->req_body == HTTP1_BODY_LENGTH) {
        size_t take = avail < t->req_left ? avail : (size_t)t->req_left;
        t->req_ready += take;
        t->req_left -= take;
        t->req_body_bytes += take;
    } else if (t->req_body == HTTP1_BODY_CHUNKED && !t->req_chunk.done) {
        ssize_t n = http1_chunked_feed(&t->req_chunk, p, avail);
        if (n < 0)
            return -1;
        t->req_ready += (size_t)n;
        t->req_body_bytes += (uint64_t)n;
    }
    return 0;
}

static bool request_body_complete(const struct http_txn *t)
{
    if (t->req_body == HTTP1_BODY_NONE)
        return true;
    if (t->req_ready)
        return false;
    if (t->req_body == HTTP1_BODY_LENGTH)
        return t->req_left == 0;
    return t->req_chunk.done;
}

/* The client closed its side before the body was complete, and every body
 * byte it did send has gone upstream: the request can never complete. */
static bool request_body_truncated(const struct http_txn *t)
{
    const struct http_carrier *cr = t->cr;
    return cr->client_eof && !t->req_done && !t->req_abandoned && !t->resp_started && !t->req_ready &&
           t->pos == buf_len(&cr->in) && !request_body_complete(t);
}

/* Send the rewritten head, then body bytes, to the upstream. */
static int upstream_send(struct http_txn *t)
{
    struct http_carrier *cr = t->cr;
    struct upstream_conn *u = t->up;
    if (!u || u->connecting || t->req_abandoned)
        return 0;
    if (t->fwd_sent < buf_len(&t->fwd)) {
        /* Head and the first body bytes in one system call. */
        struct iovec iov[2] = {
            {buf_head(&t->fwd) + t->fwd_sent, buf_len(&t->fwd) - t->fwd_sent},
            {buf_head(&cr->in) + t->pos, t->req_ready},
        };
        ssize_t n = transport_send(&u->tr, iov, t->req_ready ? 2 : 1);
        if (n < 0)
            return errno == EAGAIN ? 0 : -1;
        if (!t->req_sent_any)
            atomic_fetch_add_explicit(&u->b->ctr->requests, 1, memory_order_relaxed);
        t->req_sent_any = true;
        atomic_fetch_add_explicit(&u->b->ctr->bytes_sent, (uint64_t)n, memory_order_relaxed);
        size_t head_left = buf_len(&t->fwd) - t->fwd_sent;
        if ((size_t)n <= head_left) {
            t->fwd_sent += (size_t)n;
            return 0;
        }
        t->fwd_sent += head_left;
        t->pos += (size_t)n - head_left;
        t->req_ready -= (size_t)n - head_left;
    }
    while (t->req_ready) {
        ssize_t n = http_send_some(&u->tr, buf_head(&cr->in) + t->pos, t->req_ready);
        if (n <= 0)
            return (int)n;
        atomic_fetch_add_explicit(&u->b->ctr->bytes_sent, (uint64_t)n, memory_order_relaxed);
        t->pos += (size_t)n;
        t->req_ready -= (size_t)n;
    }
    if (!t->req_done && request_body_complete(t))
        t->req_done = true;
    return 0;
}

void http_txn_compact(struct http_txn *t)
{
    if (buf_full(&t->cr->in))
        http_txn_compact_now(t);
}

void http_txn_compact_now(struct http_txn *t)
{
    struct http_carrier *cr = t->cr;
    if (t->pos == 0)
        return;
    /* Dropping the raw head costs nothing (the rewritten one is in fwd);
     * dropping body bytes means a retry could not send them again. */
    if (t->pos > t->head_len)
        t->replayable = false;
    buf_consume(&cr->in, t->pos);
    t->pos = 0;
    t->head_len = 0;
}

/* ---------- the response ---------- */

static int put_head_line(struct buf *o, struct http1_slice name, struct http1_slice value)
{
    int rc = buf_append(o, name.p, name.len);
    rc |= buf_append(o, ": ", 2);
    rc |= buf_append(o, value.p, value.len);
    rc |= buf_append(o, "\r\n", 2);
    return rc;
}

/* Status line and end-to-end header fields of a response, without the
 * final empty line. */
static int put_status_and_headers(struct buf *o, const struct http1_message *m, struct listener_rt *l,
                                  const struct header_plan *plan)
{
    char line[16] = "HTTP/1.1 000 ";
    line[9] = (char)('0' + m->status / 100);
    line[10] = (char)('0' + m->status / 10 % 10);
    line[11] = (char)('0' + m->status % 10);
    int rc = buf_append(o, line, 13);
    rc |= buf_append(o, m->reason.p, m->reason.len);
    rc |= buf_append(o, "\r\n", 2);
    bool has_cl = false;
    uint8_t hop[HTTP1_MAX_HEADERS_CAP];
    http1_mark_hop_by_hop(m, hop);
    for (size_t i = 0; i < m->n_headers; i++) {
        const struct http1_header *h = &m->headers[i];
        if (hop[i])
            continue;
        if (http1_is_framing_lookalike(h->name)) {
            /* "Transfer_Encoding: chunked" beside the Content-Length we
             * set: harmless to a client that reads names as they are,
             * a second framing to one that folds '_' into '-'. It has no
             * legitimate use, so it goes whatever the listener allows in
             * requests; other '_' names in responses pass. */
            atomic_fetch_add_explicit(&l->ctr->underscore_dropped[1], 1, memory_order_relaxed);
            continue;
        }
        if (name_is(h->name, "Content-Length")) {
            has_cl = true; /* sent once, normalized, below */
            continue;
        }
        if (plan && header_plan_drops(plan, h->name.p, h->name.len))
            continue; /* response_headers: remove or set */
        rc |= put_head_line(o, h->name, h->value);
    }
    /* One plain value even if the backend sent "5, 5" or the field twice,
     * so the client cannot frame the body differently than we did. (Kept
     * on bodiless responses too: there it describes the selected resource.) */
    if (has_cl) {
        rc |= buf_append(o, "Content-Length: ", 16);
        rc |= put_uint(o, m->content_length);
        rc |= buf_append(o, "\r\n", 2);
    }
    return rc;
}

static int build_response_head(struct http_txn *t, const struct http1_message *m)
{
    struct http_carrier *cr = t->cr;
    struct buf *o = &cr->out;
    if (buf_alloc(o, cr->l->cfg->limits.max_header_size + HTTP_HEAD_SLACK) < 0)
        return -1;
    size_t had = buf_len(o);
    const struct header_plan *plan = response_plan_of(t);
    int rc = put_status_and_headers(o, m, cr->l, plan);
    if (plan->n_add) {
        struct http_vars v;
        fill_vars(t, &v, request_snapshot(t), m, plan_uses(plan));
        rc |= put_plan_fields(o, plan, &v, cr->peer_ip, NULL, NULL);
    }
    if (m->status == 101) {
        const struct http1_header *up = http1_find_header(m, "Upgrade");
        rc |= buf_append(o, "Connection: upgrade\r\n", 21);
        if (up)
            rc |= put_head_line(o, (struct http1_slice){"Upgrade", 7}, up->value);
    } else if (m->status >= 200) {
        if (m->body == HTTP1_BODY_CHUNKED)
            rc |= buf_append(o, "Transfer-Encoding: chunked\r\n", 28);
        if (cr->close_after)
            rc |= buf_append(o, "Connection: close\r\n", 19);
        else if (t->http10)
            rc |= buf_append(o, "Connection: keep-alive\r\n", 24);
        if (t->set_sticky && t->up) {
            char cookie[160];
            int cn = snprintf(cookie, sizeof cookie, "Set-Cookie: %s=%s; Path=/; HttpOnly\r\n",
                              t->pool->cfg->sticky_cookie, t->up->b->sticky_token);
            rc |= buf_append(o, cookie, (size_t)cn);
        }
    }
    rc |= buf_append(o, "\r\n", 2);
    t->resp_head_bytes = buf_len(o) - had;
    return rc ? -1 : 0;
}

/* Parse the response head in up->in. Returns 0 (parsed, or need more bytes
 * or more room), -1 on a bad response. An interim (1xx) response is relayed
 * and consumed, leaving resp_head_done false: call again while that makes
 * progress, since the final head may already be in the buffer behind it. */
static int response_parse_head(struct http_txn *t)
{
    struct http_carrier *cr = t->cr;
    struct upstream_conn *u = t->up;
    struct cfg_listener const *lc = cr->l->cfg;
    struct http1_limits lim = http_limits_of(lc);
    struct http1_message *m = cr->scratch;
    enum http1_result r = http1_parse_response(buf_head(&u->in), buf_len(&u->in), &lim, t->method, m);
    if (r == HTTP1_INCOMPLETE)
        return buf_full(&u->in) ? -1 : 0;
    if (r == HTTP1_ERROR) {
        log_warn("bad response from %s: %s", u->b->cfg->addr.text, m->error_reason);
        return -1;
    }
    if (m->status == 101 && !t->want_upgrade)
        return -1;
    if (m->body == HTTP1_BODY_CHUNKED && t->http10)
        return -1; /* an HTTP/1.0 client cannot read chunked framing */
    if (m->status >= 100 && m->status < 200 && m->status != 101) {
        /* Interim response (100 Continue, 103 Early Hints): pass it on with
         * its end-to-end fields (RFC 9110 §15.2), wait for the final one.
         * HTTP/1.0 clients do not expect 1xx: drop it. */
        if (buf_alloc(&cr->out, lc->limits.max_header_size + HTTP_HEAD_SLACK) < 0)
            return -1;
        if (!t->http10) {
            /* A backend streaming 1xx faster than the client reads waits
             * for room (no progress now; the client's EPOLLOUT resumes). */
            if (buf_room(&cr->out) < m->head_len + m->n_headers + 64)
                return 0;
            /* The rewrite adds at most one byte per field (": " after a bare
             * ':'), so with the room checked above this cannot fail half-way. */
            if (put_status_and_headers(&cr->out, m, cr->l, NULL) || buf_append(&cr->out, "\r\n", 2))
                return -1;
        }
        buf_consume(&u->in, m->head_len);
        return 0;
    }
    t->status = m->status;
    if (m->body == HTTP1_BODY_UNTIL_CLOSE || !t->req_done)
        cr->close_after = true;
    t->resp_keep_upstream = m->keep_alive && m->body != HTTP1_BODY_UNTIL_CLOSE && m->status != 101;
    if (build_response_head(t, m) < 0)
        return -1;
    if (lc->keep_response_head)
        keep_head(&t->resp_copy, m, buf_head(&u->in));
    buf_consume(&u->in, m->head_len);
    t->resp_head_done = true;
    t->resp_body = m->body;
    t->resp_left = m->body == HTTP1_BODY_LENGTH ? m->content_length : 0;
    if (m->body == HTTP1_BODY_CHUNKED)
        http1_chunked_init(&t->resp_chunk);
    t->resp_done = m->body == HTTP1_BODY_NONE || (m->body == HTTP1_BODY_LENGTH && m->content_length == 0);
    http_count_response(cr->l, m->status);
    int cls = m->status / 100;
    atomic_fetch_add_explicit(&u->b->ctr->responses[cls >= 1 && cls <= 5 ? cls : 0], 1, memory_order_relaxed);
    backend_report(cr->w, t->pool, u->b, m->status < 500);
    if (m->status == 101) {
        t->tunnel = true;
        http_carrier_tunnel(cr);
        t->resp_done = true;
        http_carrier_set_timer(cr, lc->timeouts.idle_ms);
    }
    return 0;
}

/* Parse response heads while that makes progress: interim responses and
 * the final head may arrive in one read. Returns -1 on a bad response. */
static int response_read_heads(struct http_txn *t)
{
    struct upstream_conn *u = t->up;
    while (!t->resp_head_done && buf_len(&u->in)) {
        size_t had = buf_len(&u->in);
        if (response_parse_head(t) < 0)
            return -1;
        if (buf_len(&u->in) == had)
            break; /* incomplete, or waiting for room in cr->out */
    }
    return 0;
}

static int response_body_validate(struct http_txn *t)
{
    struct upstream_conn *u = t->up;
    size_t avail = buf_len(&u->in) - t->resp_ready;
    if (!avail || t->resp_done)
        return 0;
    const char *p = buf_head(&u->in) + t->resp_ready;
    switch (t->resp_body) {
    case HTTP1_BODY_LENGTH: {
        size_t take = avail < t->resp_left ? avail : (size_t)t->resp_left;
        t->resp_ready += take;
        t->resp_left -= take;
        if (!t->resp_left)
            t->resp_done = true;
        break;
    }
    case HTTP1_BODY_CHUNKED: {
        ssize_t n = http1_chunked_feed(&t->resp_chunk, p, avail);
        if (n < 0)
            return -1;
        t->resp_ready += (size_t)n;
        if (t->resp_chunk.done)
            t->resp_done = true;
        break;
    }
    case HTTP1_BODY_UNTIL_CLOSE:
        t->resp_ready += avail;
        break;
    case HTTP1_BODY_NONE:
        break;
    }
    return 0;
}

/* ---------- the end of the exchange ---------- */

/* The response is fully written: log, release, and go on with the next request. */
static void request_finish(struct http_txn *t)
{
    struct http_carrier *cr = t->cr;
    observe_request_time(t);
    write_access_log(t, NULL);
    bool reusable = t->resp_keep_upstream && t->req_done && t->up && !t->up->eof &&
                    buf_len(&t->up->in) == 0;
    http_txn_detach_upstream(t, reusable);
    http_carrier_request_done(cr);
}

/* An event on the upstream's socket (lent to this transaction: see pool.h). */
static void upstream_event(struct ev_loop *loop, struct ev_io *io, uint32_t ev)
{
    struct upstream_conn *u = io->data;
    struct http_txn *t = u->owner;
    struct http_carrier *cr = t->cr;
    if (u->connecting) {
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(u->tr.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err || (ev & EPOLLERR)) {
            upstream_failed(t, true, err ? strerror(err) : "connect failed");
            http_carrier_progress(cr);
            return;
        }
        u->connecting = false;
        upstream_timing_connected(t);
        /* v2 carries the request's id (PP2_TYPE_UNIQUE_ID): the same as
         * $request_id in the access log, so the two can be matched. */
        struct pp_client_info ci = {.origin = cr->origin, .client_tr = cr->tr,
                                    .unique_id = u->pool->cfg->send_proxy == SEND_PROXY_V2 ? request_id_of(t) : NULL};
        if (cr->origin && pp_send_to_backend(u->pool->cfg->send_proxy, u->tr.fd, &ci) < 0) {
            upstream_failed(t, true, "cannot send the PROXY header");
            http_carrier_progress(cr);
            return;
        }
        http_carrier_set_timer(cr, cr->l->cfg->timeouts.upstream_response_ms);
    }
    ev = transport_ready(&u->tr, ev);
    if ((ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !u->eof) {
        if (buf_alloc(&u->in, http_in_cap(cr->l->cfg)) < 0) {
            http_carrier_abort(cr);
            return;
        }
        ssize_t n = http_read_into(&u->tr, &u->in);
        if (n > 0) {
            atomic_fetch_add_explicit(&u->b->ctr->bytes_received, (uint64_t)n, memory_order_relaxed);
            if (!t->resp_started && !t->tunnel)
                upstream_timing_first_byte(t);
            t->resp_started = true;
            if (!t->tunnel)
                http_carrier_set_timer(cr, cr->l->cfg->timeouts.upstream_response_ms);
            else
                http_carrier_set_timer(cr, cr->l->cfg->timeouts.idle_ms);
        } else if (n == 0) {
            u->eof = true;
        } else if (n == -1 && errno != EAGAIN) {
            u->eof = true;
            if (!t->resp_started && !t->tunnel) {
                upstream_io_failed(t, strerror(errno));
                http_carrier_progress(cr);
                return;
            }
        }
    }
    http_carrier_progress(cr);
}

/* ---------- the request body deadline ---------- */

/* The body must be in within timeouts.client_body of the end of the head,
 * plus 1/limits.min_body_rate s for every byte received (a big body on a
 * slow link goes on as long as it keeps that average), plus the time the
 * client could not send because our buffer was full: the backend not
 * taking the body is no fault of the client's. Unlike the connection's
 * timer, which every byte pushes back, nothing resets this one, so a
 * client dripping a body holds its connection and a backend connection
 * for a bounded time. */
static uint64_t body_deadline(const struct http_txn *t, uint64_t now)
{
    const struct http_carrier *cr = t->cr;
    const struct cfg_listener *cfg = cr->l->cfg;
    uint64_t due = t->body_since + cfg->timeouts.client_body_ms + t->body_paused_ms;
    if (t->body_paused)
        due += now - t->body_paused_at;
    if (cfg->limits.min_body_rate)
        due += t->body_rcvd * 1000 / cfg->limits.min_body_rate;
    return due;
}

static void body_clock_start(struct http_txn *t)
{
    struct http_carrier *cr = t->cr;
    t->body_clock = true;
    t->body_paused = false;
    t->body_paused_ms = 0;
    t->body_since = ev_now(cr->w->loop);
    /* Body bytes that came with the head count as received. */
    t->body_rcvd = buf_len(&cr->in) - t->head_len;
    ev_timer_start(cr->w->loop, &t->body_timer, cr->l->cfg->timeouts.client_body_ms);
}

void http_txn_body_clock_stop(struct http_txn *t)
{
    struct http_carrier *cr = t->cr;
    t->body_clock = false;
    ev_timer_stop(cr->w->loop, &t->body_timer);
}

/* Every byte of the body is in (validated), or no longer wanted. */
static bool request_body_received(const struct http_txn *t)
{
    switch (t->req_body) {
    case HTTP1_BODY_LENGTH:
        return t->req_left == 0;
    case HTTP1_BODY_CHUNKED:
        return t->req_chunk.done;
    default:
        return true;
    }
}

/* After every step of a connection: stop the clock once the body is in,
 * and keep track of the time the client was held up by our full buffer. */
void http_txn_body_clock_update(struct http_txn *t)
{
    struct http_carrier *cr = t->cr;
    if (t->tunnel || t->req_abandoned || t->req_done || request_body_received(t)) {
        http_txn_body_clock_stop(t);
        return;
    }
    bool held_up = buf_full(&cr->in);
    uint64_t now = ev_now(cr->w->loop);
    if (held_up && !t->body_paused) {
        t->body_paused = true;
        t->body_paused_at = now;
    } else if (!held_up && t->body_paused) {
        t->body_paused = false;
        t->body_paused_ms += now - t->body_paused_at;
    }
}

static void body_timeout(struct ev_loop *loop, struct ev_timer *timer)
{
    struct http_txn *t = timer->data;
    struct http_carrier *cr = t->cr;
    if (!t->body_clock)
        return;
    uint64_t now = ev_now(loop), due = body_deadline(t, now);
    if (now < due) {
        /* Bytes arrived, or the client was held up, since it was set. */
        ev_timer_start(loop, timer, due - now);
        return;
    }
    http_txn_body_clock_stop(t);
    struct listener_counters *lc = cr->l->ctr;
    atomic_fetch_add_explicit(&lc->timeouts, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&lc->body_timeouts, 1, memory_order_relaxed);
    /* The backend has half a request it will never see the end of: close
     * that connection rather than pool it. */
    http_txn_detach_upstream(t, false);
    /* 408 if no response has started, else the carrier aborts. */
    http_carrier_send_error(cr, 408, "the request body did not arrive in time (timeouts.client_body)");
    http_carrier_set_interest(cr);
}

/* ---------- what the carrier calls ---------- */

void http_txn_init(struct http_txn *t, struct http_carrier *cr)
{
    t->cr = cr;
    ev_timer_init(&t->body_timer, body_timeout, t);
    http_txn_reset(t);
}

void http_txn_free(struct http_txn *t)
{
    buf_release(&t->fwd);
    free(t->tried);
    free(t->log);
    if (t->req_copy)
        free(t->req_copy->raw);
    free(t->req_copy);
    if (t->resp_copy)
        free(t->resp_copy->raw);
    free(t->resp_copy);
    free(t->local_body);
}

void http_txn_begin(struct http_txn *t)
{
    if (!t->started_us)
        t->started_us = now_us();
}

void http_txn_log_refused(struct http_txn *t, const char *reason)
{
    if (!t->log || !t->log->line[0])
        capture_rejected_line(t); /* refused before http_txn_start() took its fields */
    observe_request_time(t);
    write_access_log(t, reason);
}

/* One step of the exchange; see http_txn.h. */
void http_txn_progress(struct http_txn *t)
{
    struct http_carrier *cr = t->cr;
    if (t->local_answer) {
        local_answer_step(t);
        return;
    }
    if (request_body_validate(t) < 0) {
        log_debug("client %s: invalid chunked body: %s", cr->peer_ip, t->req_chunk.error_reason);
        /* The invalid bytes never reach the backend. The client gets
         * a 400 unless a response is already under way (then
         * the carrier aborts instead). */
        http_txn_detach_upstream(t, false);
        http_carrier_send_error(cr, 400,
                                t->req_chunk.error_reason ? t->req_chunk.error_reason : "invalid chunked body");
        return;
    }
    if (upstream_send(t) < 0) {
        if (!t->resp_started) {
            upstream_io_failed(t, "upstream closed while the request was sent");
            return;
        }
        /* The backend answered and stopped reading (e.g. 413): send
         * no more body, deliver the response, then close, since the
         * rest of the body is still on its way to us. */
        t->req_abandoned = true;
        t->req_ready = 0;
        cr->close_after = true;
    }
    http_txn_compact(t);
    struct upstream_conn *u = t->up;
    if (!u)
        return;
    if (request_body_truncated(t)) {
        /* The client half-closed in the middle of the body: the
         * request can never be completed, so do not wait for the
         * backend's timeout. */
        http_txn_detach_upstream(t, false);
        http_carrier_send_error(cr, 400, "request body ended early");
        return;
    }
    if (response_read_heads(t) < 0) {
        atomic_fetch_add_explicit(&u->b->ctr->upstream_errors, 1, memory_order_relaxed);
        backend_report(cr->w, t->pool, u->b, false);
        http_txn_detach_upstream(t, false);
        request_fail(t, 502, "invalid response from the backend");
        return;
    }
    if (t->tunnel)
        return;
    if (t->resp_head_done && response_body_validate(t) < 0) {
        log_warn("bad chunked response body from %s: %s", u->b->cfg->addr.text, t->resp_chunk.error_reason);
        atomic_fetch_add_explicit(&u->b->ctr->upstream_errors, 1, memory_order_relaxed);
        backend_report(cr->w, t->pool, u->b, false);
        http_txn_detach_upstream(t, false);
        /* A 502 if the head has not left yet, else a cut connection:
         * the invalid bytes are never forwarded either way. */
        request_fail(t, 502, "invalid response body from the backend");
        return;
    }
    if (http_carrier_send(cr) < 0) {
        http_carrier_abort(cr);
        return;
    }
    if (u->eof && t->resp_head_done && t->resp_body == HTTP1_BODY_UNTIL_CLOSE && !buf_len(&u->in))
        t->resp_done = true;
    if (u->eof && !t->resp_done && !buf_len(&u->in) && t->resp_head_done) {
        atomic_fetch_add_explicit(&u->b->ctr->upstream_errors, 1, memory_order_relaxed);
        http_txn_detach_upstream(t, false);
        request_fail(t, 502, "the backend closed the connection in the middle of the response");
        return;
    }
    if (u->eof && !t->resp_head_done) {
        if (!t->resp_started) {
            upstream_failed(t, false, "upstream closed the connection before answering");
        } else {
            http_txn_detach_upstream(t, false);
            request_fail(t, 502, "upstream closed in the middle of the response head");
        }
        return;
    }
    if (t->resp_done && t->resp_head_done && !t->resp_ready && !buf_len(&cr->out)) {
        if (!t->req_done) {
            /* The backend answered before the body was all in
             * (e.g. 413): the rest of the body is not worth reading. */
            cr->close_after = true;
        }
        request_finish(t);
    }
}

void http_txn_timeout(struct http_txn *t)
{
    struct http_carrier *cr = t->cr;
    struct listener_counters *lc = cr->l->ctr;
    atomic_fetch_add_explicit(&lc->timeouts, 1, memory_order_relaxed);
    if (t->up && t->up->connecting) {
        upstream_failed(t, true, connect_timeout_reason);
        http_carrier_progress(cr);
        return;
    }
    if (t->up && !t->resp_started && !t->req_done && !t->req_ready) {
        /* Everything the client sent is upstream and the backend waits
         * for the rest of the body: the client is the slow one. */
        http_txn_detach_upstream(t, false);
        http_carrier_send_error(cr, 408, "the request body did not arrive in time");
        http_carrier_set_interest(cr);
        return;
    }
    if (t->up) {
        atomic_fetch_add_explicit(&t->up->b->ctr->upstream_errors, 1, memory_order_relaxed);
        backend_report(cr->w, t->pool, t->up->b, false);
        http_txn_detach_upstream(t, false);
        /* A 504 unless part of the response already reached the client
         * (the head, then a stalled body): then the carrier aborts. */
        request_fail(t, 504, "the backend did not answer in time");
        http_carrier_set_interest(cr);
        return;
    }
    http_carrier_abort(cr);
}
