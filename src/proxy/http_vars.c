/* Request variables: see http_vars.h. */
#include "proxy/http_vars.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "core/config_walk.h"
#include "proxy/http_route.h"

#define HV_NAME_MAX 128    /* longest variable name, header suffix included */
#define HV_FORMAT_MAX 4096 /* longest format string */

const char *const http_var_names[HV_COUNT + 1] = {
    [HV_REMOTE_ADDR] = "remote_addr",
    [HV_REMOTE_PORT] = "remote_port",
    [HV_HOST] = "host",
    [HV_REQUEST] = "request",
    [HV_REQUEST_METHOD] = "request_method",
    [HV_REQUEST_URI] = "request_uri",
    [HV_URI] = "uri",
    [HV_ARGS] = "args",
    [HV_QUERY_STRING] = "query_string",
    [HV_SCHEME] = "scheme",
    [HV_SERVER_PROTOCOL] = "server_protocol",
    [HV_STATUS] = "status",
    [HV_BODY_BYTES_SENT] = "body_bytes_sent",
    [HV_BYTES_SENT] = "bytes_sent",
    [HV_REQUEST_LENGTH] = "request_length",
    [HV_UPSTREAM_ADDR] = "upstream_addr",
    [HV_UPSTREAM_CONNECT_TIME] = "upstream_connect_time",
    [HV_UPSTREAM_HEADER_TIME] = "upstream_header_time",
    [HV_UPSTREAM_RESPONSE_TIME] = "upstream_response_time",
    [HV_UPSTREAM_TRIES] = "upstream_tries",
    [HV_REQUEST_TIME] = "request_time",
    [HV_LISTENER] = "listener",
    [HV_ROUTE] = "route",
    [HV_POOL] = "pool",
    [HV_TIME_ISO8601] = "time_iso8601",
    [HV_TIME_LOCAL] = "time_local",
    [HV_MSEC] = "msec",
    [HV_REQUEST_ID] = "request_id",
    [HV_SSL_PROTOCOL] = "ssl_protocol",
    [HV_SSL_CIPHER] = "ssl_cipher",
    [HV_SSL_SERVER_NAME] = "ssl_server_name",
    [HV_SSL_SESSION_REUSED] = "ssl_session_reused",
    [HV_SSL_CLIENT_S_DN] = "ssl_client_s_dn",
    [HV_REASON] = "sluice_reason",
    [HV_COUNT] = NULL,
};

/* ---------- compiling ---------- */

static bool is_var_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_';
}

/* The parts and text grow in arrays sized for the worst case up front
 * (every byte its own part), so compiling never reallocates. */
struct compiler {
    struct http_fmt *f;
    size_t text_len;
};

static void add_literal(struct compiler *cc, const char *p, size_t n)
{
    struct http_fmt *f = cc->f;
    if (!n)
        return;
    struct http_fmt_part *last = f->n_parts ? &f->parts[f->n_parts - 1] : NULL;
    if (last && last->literal && last->off + last->len == cc->text_len) {
        last->len += (uint32_t)n; /* "$$" splits a literal: glue it back */
    } else {
        f->parts[f->n_parts++] = (struct http_fmt_part){.literal = true, .off = (uint32_t)cc->text_len,
                                                        .len = (uint32_t)n};
    }
    memcpy(f->text + cc->text_len, p, n);
    cc->text_len += n;
}

/* A header-field family variable: its suffix as a field name, lowercase
 * with '-' for '_', into the text. */
static int add_header_var(struct compiler *cc, enum http_var kind, const char *name, size_t n, char *err,
                          size_t errlen)
{
    if (!n) {
        snprintf(err, errlen, "variable \"$%s\" needs a header name after the prefix",
                 kind == HV_HTTP_HEADER ? "http_" : "sent_http_");
        return -1;
    }
    struct http_fmt *f = cc->f;
    char *dst = f->text + cc->text_len;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        dst[i] = ch == '_' ? '-' : (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
    }
    f->parts[f->n_parts++] = (struct http_fmt_part){.var = (uint16_t)kind, .off = (uint32_t)cc->text_len,
                                                    .len = (uint32_t)n};
    cc->text_len += n;
    if (kind == HV_HTTP_HEADER)
        f->uses_request_headers = true;
    else
        f->uses_response_headers = true;
    return 0;
}

static int add_var(struct compiler *cc, const char *name, size_t n, char *err, size_t errlen)
{
    char word[HV_NAME_MAX + 1];
    if (n > HV_NAME_MAX) {
        snprintf(err, errlen, "variable name longer than %d characters", HV_NAME_MAX);
        return -1;
    }
    memcpy(word, name, n);
    word[n] = '\0';
    for (int i = 0; i < HV_COUNT; i++) {
        if (strcmp(word, http_var_names[i]) == 0) {
            cc->f->parts[cc->f->n_parts++] = (struct http_fmt_part){.var = (uint16_t)i};
            cc->f->uses |= 1ull << i;
            return 0;
        }
    }
    if (strncmp(word, "http_", 5) == 0)
        return add_header_var(cc, HV_HTTP_HEADER, name + 5, n - 5, err, errlen);
    if (strncmp(word, "sent_http_", 10) == 0)
        return add_header_var(cc, HV_SENT_HTTP_HEADER, name + 10, n - 10, err, errlen);
    const char *guess = config_closest(word, http_var_names);
    if (guess)
        snprintf(err, errlen, "unknown variable \"$%s\" (did you mean \"$%s\"?)", word, guess);
    else
        snprintf(err, errlen, "unknown variable \"$%s\"", word);
    return -1;
}

/* One "$..." at s (s[0] == '$'): returns the bytes it took, or -1. */
static long compile_dollar(struct compiler *cc, const char *s, char *err, size_t errlen)
{
    if (s[1] == '$') {
        add_literal(cc, "$", 1);
        return 2;
    }
    if (s[1] == '{') {
        const char *close = strchr(s + 2, '}');
        size_t n = close ? (size_t)(close - (s + 2)) : 0;
        for (size_t i = 0; close && i < n; i++)
            if (!is_var_char(s[2 + i]))
                close = NULL;
        if (!close || !n) {
            snprintf(err, errlen, "\"${\" must be followed by a variable name and \"}\"");
            return -1;
        }
        return add_var(cc, s + 2, n, err, errlen) < 0 ? -1 : (long)n + 3;
    }
    size_t n = 0;
    while (is_var_char(s[1 + n]))
        n++;
    if (!n) {
        snprintf(err, errlen, "\"$\" must be followed by a variable name (write \"$$\" for a dollar sign)");
        return -1;
    }
    return add_var(cc, s + 1, n, err, errlen) < 0 ? -1 : (long)n + 1;
}

int http_fmt_compile(const char *src, struct http_fmt *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    size_t len = strlen(src);
    if (len > HV_FORMAT_MAX) {
        snprintf(err, errlen, "longer than %d bytes", HV_FORMAT_MAX);
        return -1;
    }
    out->text = malloc(len + 1);
    out->parts = calloc(len + 1, sizeof *out->parts);
    if (!out->text || !out->parts) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    struct compiler cc = {.f = out};
    const char *s = src;
    while (*s) {
        const char *dollar = strchr(s, '$');
        size_t lit = dollar ? (size_t)(dollar - s) : strlen(s);
        add_literal(&cc, s, lit);
        s += lit;
        if (!dollar)
            break;
        long took = compile_dollar(&cc, s, err, errlen);
        if (took < 0)
            return -1;
        s += took;
    }
    out->text[cc.text_len] = '\0';
    return 0;
}

void http_fmt_free(struct http_fmt *f)
{
    free(f->text);
    free(f->parts);
    memset(f, 0, sizeof *f);
}

int http_fmt_copy(struct http_fmt *dst, const struct http_fmt *src)
{
    *dst = *src;
    size_t text_len = 0;
    for (size_t i = 0; i < src->n_parts; i++)
        if (src->parts[i].off + src->parts[i].len > text_len)
            text_len = src->parts[i].off + src->parts[i].len;
    dst->text = malloc(text_len + 1);
    dst->parts = malloc((src->n_parts ? src->n_parts : 1) * sizeof *dst->parts);
    if (!dst->text || !dst->parts) {
        free(dst->text);
        free(dst->parts);
        memset(dst, 0, sizeof *dst);
        return -1;
    }
    memcpy(dst->text, src->text, text_len);
    dst->text[text_len] = '\0';
    memcpy(dst->parts, src->parts, src->n_parts * sizeof *dst->parts);
    return 0;
}

/* ---------- rendering ---------- */

/* The output: a bounded buffer that escapes what goes through put(). */
struct out {
    char *p;
    size_t cap, len;  /* cap includes the NUL */
    enum http_escape esc;
    bool refused;     /* HTTP_ESC_HEADER: a control byte came */
    bool full;        /* an escape did not fit: nothing more goes in */
};

static void put_raw(struct out *o, const char *s, size_t n)
{
    if (o->full)
        return;
    size_t room = o->cap - 1 - o->len;
    if (n > room)
        n = room;
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static const char hex_digits[] = "0123456789ABCDEF";

/* One byte of a variable's value, escaped for where it goes. */
static void put_byte(struct out *o, unsigned char ch)
{
    char e[6];
    size_t n = 0;
    switch (o->esc) {
    case HTTP_ESC_LOG:
        if (ch == '"' || ch == '\\' || ch < 0x20 || ch >= 0x7f) {
            e[0] = '\\', e[1] = 'x', e[2] = hex_digits[ch >> 4], e[3] = hex_digits[ch & 15];
            n = 4;
        }
        break;
    case HTTP_ESC_JSON:
        if (ch == '"' || ch == '\\') {
            e[0] = '\\', e[1] = (char)ch;
            n = 2;
        } else if (ch == '\n' || ch == '\r' || ch == '\t' || ch == '\b' || ch == '\f') {
            e[0] = '\\', e[1] = ch == '\n' ? 'n' : ch == '\r' ? 'r' : ch == '\t' ? 't' : ch == '\b' ? 'b' : 'f';
            n = 2;
        } else if (ch < 0x20 || ch == 0x7f) {
            memcpy(e, "\\u00", 4);
            e[4] = hex_digits[ch >> 4], e[5] = hex_digits[ch & 15];
            n = 6;
        }
        break;
    case HTTP_ESC_HEADER:
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
            o->refused = true;
            return;
        }
        break;
    case HTTP_ESC_NONE:
        break;
    }
    if (n) {
        /* An escape is written whole or not at all: a cut "\x0" would
         * be read as something else. */
        if (o->cap - 1 - o->len >= n)
            put_raw(o, e, n);
        else
            o->full = true;
        return;
    }
    char c = (char)ch;
    put_raw(o, &c, 1);
}

/* How many bytes of the well-formed UTF-8 sequence at s[0..n) (RFC 3629:
 * no overlong forms, no surrogates, nothing past U+10FFFF); 0 if none
 * starts there. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xbf;
    size_t need;
    if (c >= 0xc2 && c <= 0xdf) {
        need = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 3;
        lo = c == 0xe0 ? 0xa0 : 0x80;
        hi = c == 0xed ? 0x9f : 0xbf;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4;
        lo = c == 0xf0 ? 0x90 : 0x80;
        hi = c == 0xf4 ? 0x8f : 0xbf;
    } else {
        return 0;
    }
    if (n < need)
        return 0;
    for (size_t i = 1; i < need; i++)
        if (s[i] < (i == 1 ? lo : 0x80) || s[i] > (i == 1 ? hi : 0xbf))
            return 0;
    return need;
}

/* escape=json: UTF-8 text passes as it is, a byte that starts no
 * well-formed sequence becomes U+FFFD, so the line is always valid JSON
 * (nginx would copy such bytes and leave an unparseable line). */
static void put_json(struct out *o, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n && o->len + 1 < o->cap && !o->full;) {
        if (p[i] < 0x80) {
            put_byte(o, p[i++]);
            continue;
        }
        size_t k = utf8_len(p + i, n - i);
        const char *text = k ? s + i : "\\ufffd";
        size_t len = k ? k : 6;
        if (o->cap - 1 - o->len < len) {
            o->full = true; /* a character is written whole or not at all */
            return;
        }
        put_raw(o, text, len);
        i += k ? k : 1;
    }
}

static void put(struct out *o, const char *s, size_t n)
{
    if (o->esc == HTTP_ESC_JSON) {
        put_json(o, s, n);
        return;
    }
    for (size_t i = 0; i < n && o->len + 1 < o->cap && !o->full; i++)
        put_byte(o, (unsigned char)s[i]);
}

static void put_str(struct out *o, const char *s)
{
    if (s)
        put(o, s, strlen(s));
}

static void put_slice(struct out *o, struct http1_slice s) { put(o, s.p, s.len); }

/* A variable without a value: "-" in a log line, nothing in a header. */
static void put_none(struct out *o)
{
    if (o->esc != HTTP_ESC_HEADER)
        put_raw(o, "-", 1);
}

static void put_uint(struct out *o, uint64_t v)
{
    char digits[24];
    int n = snprintf(digits, sizeof digits, "%llu", (unsigned long long)v);
    put_raw(o, digits, (size_t)n);
}

/* Seconds with milliseconds ("0.012"), as nginx's times; "-" if unset. */
static void put_seconds(struct out *o, int64_t us)
{
    if (us < 0) {
        put_none(o);
        return;
    }
    char text[32];
    uint64_t ms = (uint64_t)us / 1000;
    int n = snprintf(text, sizeof text, "%llu.%03llu", (unsigned long long)(ms / 1000),
                     (unsigned long long)(ms % 1000));
    put_raw(o, text, (size_t)n);
}

static void put_text_or_none(struct out *o, const char *s)
{
    if (s && *s)
        put_str(o, s);
    else
        put_none(o);
}

/* The target in origin form, and its path and query parts. */
static struct http1_slice request_uri(const struct http1_message *m) { return http_request_path(m); }

static struct http1_slice uri_path(const struct http1_message *m)
{
    struct http1_slice t = request_uri(m);
    const char *q = memchr(t.p, '?', t.len);
    if (q)
        t.len = (size_t)(q - t.p);
    return t;
}

static bool uri_args(const struct http1_message *m, struct http1_slice *out)
{
    struct http1_slice t = request_uri(m);
    const char *q = memchr(t.p, '?', t.len);
    if (!q)
        return false;
    *out = (struct http1_slice){q + 1, (size_t)(t.p + t.len - q - 1)};
    return true;
}

/* The host without its port ("[::1]" keeps its brackets). */
static struct http1_slice host_of(const struct http1_message *m)
{
    struct http1_slice h = http_request_host(m);
    if (h.len && h.p[0] == '[') {
        const char *close = memchr(h.p, ']', h.len);
        if (close)
            h.len = (size_t)(close - h.p) + 1;
    } else {
        const char *colon = memchr(h.p, ':', h.len);
        if (colon)
            h.len = (size_t)(colon - h.p);
    }
    return h;
}

static const char *protocol_of(const struct http_vars *v)
{
    if (v->http2)
        return "HTTP/2.0";
    return v->req->version_minor == 0 ? "HTTP/1.0" : "HTTP/1.1";
}

/* Every field called `name` (lowercase, compiled) in m, joined by ", "
 * ("; " for Cookie, as RFC 9113 8.2.3 joins its crumbs). */
static void put_fields(struct out *o, const struct http1_message *m, const char *name, size_t len)
{
    bool any = false;
    bool cookie = len == 6 && memcmp(name, "cookie", 6) == 0;
    for (size_t i = 0; m && i < m->n_headers; i++) {
        const struct http1_header *h = &m->headers[i];
        if (h->name.len != len || strncasecmp(h->name.p, name, len) != 0)
            continue;
        if (any)
            put(o, cookie ? "; " : ", ", 2);
        put_slice(o, h->value);
        any = true;
    }
    if (!any)
        put_none(o);
}

static void put_time(struct out *o, const struct timespec *now, const char *fmt)
{
    struct tm tm;
    char text[64];
    if (!gmtime_r(&now->tv_sec, &tm)) {
        put_none(o);
        return;
    }
    size_t n = strftime(text, sizeof text, fmt, &tm);
    put_raw(o, text, n);
}

static void put_msec(struct out *o, const struct timespec *now)
{
    char text[40];
    int n = snprintf(text, sizeof text, "%lld.%03ld", (long long)now->tv_sec, now->tv_nsec / 1000000);
    put_raw(o, text, (size_t)n);
}

/* The variables that need the request head. */
static void put_request_var(struct out *o, enum http_var var, const struct http_vars *v)
{
    const struct http1_message *m = v->req;
    struct http1_slice s;
    if (!m) {
        if (var == HV_REQUEST && v->request_line && *v->request_line)
            put_str(o, v->request_line);
        else
            put_none(o);
        return;
    }
    switch (var) {
    case HV_HOST:
        s = host_of(m);
        if (s.len)
            put_slice(o, s);
        else
            put_none(o);
        break;
    case HV_REQUEST:
        put_slice(o, m->method_str);
        put(o, " ", 1);
        put_slice(o, m->target);
        put(o, " ", 1);
        put_str(o, protocol_of(v));
        break;
    case HV_REQUEST_METHOD:
        put_slice(o, m->method_str);
        break;
    case HV_REQUEST_URI:
        s = request_uri(m);
        if (s.len)
            put_slice(o, s);
        else
            put(o, "/", 1);
        break;
    case HV_URI:
        s = uri_path(m);
        if (s.len)
            put_slice(o, s);
        else
            put(o, "/", 1);
        break;
    case HV_ARGS:
    case HV_QUERY_STRING:
        if (uri_args(m, &s) && s.len)
            put_slice(o, s);
        else
            put_none(o);
        break;
    case HV_SERVER_PROTOCOL:
        put_str(o, protocol_of(v));
        break;
    default:
        put_none(o);
        break;
    }
}

static void put_var(struct out *o, const struct http_fmt *f, const struct http_fmt_part *part,
                    const struct http_vars *v)
{
    enum http_var var = (enum http_var)part->var;
    switch (var) {
    case HV_REMOTE_ADDR: put_text_or_none(o, v->remote_addr); break;
    case HV_REMOTE_PORT:
        if (v->remote_port > 0)
            put_uint(o, (uint64_t)v->remote_port);
        else
            put_none(o);
        break;
    case HV_HOST:
    case HV_REQUEST:
    case HV_REQUEST_METHOD:
    case HV_REQUEST_URI:
    case HV_URI:
    case HV_ARGS:
    case HV_QUERY_STRING:
    case HV_SERVER_PROTOCOL:
        put_request_var(o, var, v);
        break;
    case HV_SCHEME: put_text_or_none(o, v->scheme); break;
    case HV_STATUS:
        if (v->status > 0)
            put_uint(o, (uint64_t)v->status);
        else
            put_none(o);
        break;
    case HV_BODY_BYTES_SENT: put_uint(o, v->body_bytes_sent); break;
    case HV_BYTES_SENT: put_uint(o, v->bytes_sent); break;
    case HV_REQUEST_LENGTH: put_uint(o, v->request_length); break;
    case HV_UPSTREAM_ADDR: put_text_or_none(o, v->upstream_addr); break;
    case HV_UPSTREAM_CONNECT_TIME: put_seconds(o, v->upstream_connect_us); break;
    case HV_UPSTREAM_HEADER_TIME: put_seconds(o, v->upstream_header_us); break;
    case HV_UPSTREAM_RESPONSE_TIME: put_seconds(o, v->upstream_response_us); break;
    case HV_UPSTREAM_TRIES: put_uint(o, v->upstream_tries); break;
    case HV_REQUEST_TIME: put_seconds(o, v->request_time_us); break;
    case HV_LISTENER: put_text_or_none(o, v->listener); break;
    case HV_ROUTE: put_text_or_none(o, v->route); break;
    case HV_POOL: put_text_or_none(o, v->pool); break;
    case HV_TIME_ISO8601: put_time(o, &v->now, "%Y-%m-%dT%H:%M:%S+00:00"); break;
    case HV_TIME_LOCAL: put_time(o, &v->now, "%d/%b/%Y:%H:%M:%S +0000"); break;
    case HV_MSEC: put_msec(o, &v->now); break;
    case HV_REQUEST_ID: put_text_or_none(o, v->request_id); break;
    case HV_SSL_PROTOCOL: put_text_or_none(o, v->ssl_protocol); break;
    case HV_SSL_CIPHER: put_text_or_none(o, v->ssl_protocol ? v->ssl_cipher : NULL); break;
    case HV_SSL_SERVER_NAME: put_text_or_none(o, v->ssl_protocol ? v->ssl_server_name : NULL); break;
    case HV_SSL_SESSION_REUSED:
        if (v->ssl_protocol)
            put_raw(o, v->ssl_session_reused ? "r" : ".", 1); /* nginx's spelling */
        else
            put_none(o);
        break;
    case HV_SSL_CLIENT_S_DN: put_text_or_none(o, v->ssl_protocol ? v->ssl_client_s_dn : NULL); break;
    case HV_REASON: put_text_or_none(o, v->reason); break;
    case HV_HTTP_HEADER: put_fields(o, v->req, f->text + part->off, part->len); break;
    case HV_SENT_HTTP_HEADER: put_fields(o, v->resp, f->text + part->off, part->len); break;
    default: put_none(o); break;
    }
}

/* A header value may not begin or end with blanks (RFC 9110 5.5). */
static size_t trim_blanks(char *s, size_t n)
{
    size_t start = 0;
    while (start < n && (s[start] == ' ' || s[start] == '\t'))
        start++;
    while (n > start && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    memmove(s, s + start, n - start);
    s[n - start] = '\0';
    return n - start;
}

size_t http_fmt_render(const struct http_fmt *f, const struct http_vars *v, enum http_escape esc, char *out,
                       size_t cap, bool *refused)
{
    if (refused)
        *refused = false;
    if (!cap)
        return 0;
    struct out o = {.p = out, .cap = cap, .esc = esc};
    for (size_t i = 0; i < f->n_parts && o.len + 1 < o.cap && !o.full; i++) {
        const struct http_fmt_part *part = &f->parts[i];
        if (part->literal)
            put_raw(&o, f->text + part->off, part->len);
        else
            put_var(&o, f, part, v);
    }
    out[o.len] = '\0';
    if (esc != HTTP_ESC_HEADER)
        return o.len;
    if (o.refused) {
        if (refused)
            *refused = true;
        out[0] = '\0';
        return 0;
    }
    return trim_blanks(out, o.len);
}

/* ---------- head copies ---------- */

static struct http1_slice rebase(struct http1_slice s, const char *from, size_t len, const char *to)
{
    if (s.p && s.p >= from && s.p + s.len <= from + len)
        s.p = to + (s.p - from);
    return s;
}

int http_head_copy_take(struct http_head_copy *c, const char *raw, const struct http1_message *m)
{
    size_t len = m->head_len;
    if (len > c->cap) {
        char *p = realloc(c->raw, len);
        if (!p)
            return -1;
        c->raw = p;
        c->cap = len;
    }
    memcpy(c->raw, raw, len);
    c->m = *m;
    struct http1_message *d = &c->m;
    d->method_str = rebase(m->method_str, raw, len, c->raw);
    d->target = rebase(m->target, raw, len, c->raw);
    d->authority = rebase(m->authority, raw, len, c->raw);
    d->reason = rebase(m->reason, raw, len, c->raw);
    d->host = rebase(m->host, raw, len, c->raw);
    for (size_t i = 0; i < m->n_headers; i++) {
        d->headers[i].name = rebase(m->headers[i].name, raw, len, c->raw);
        d->headers[i].value = rebase(m->headers[i].value, raw, len, c->raw);
    }
    return 0;
}

/* ---------- request ids ---------- */

/* xoshiro-style state per thread, seeded from getrandom(): request ids
 * must be unique, not secret, and cost no system call each. */
static __thread uint64_t id_state[2];

static uint64_t id_next(void)
{
    if (!id_state[0] && !id_state[1]) {
        if (getrandom(id_state, sizeof id_state, 0) != sizeof id_state || (!id_state[0] && !id_state[1])) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            id_state[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)ts.tv_sec;
            id_state[1] = (uint64_t)(uintptr_t)&ts | 1;
        }
    }
    /* xorshift128+ */
    uint64_t s1 = id_state[0];
    const uint64_t s0 = id_state[1];
    id_state[0] = s0;
    s1 ^= s1 << 23;
    id_state[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return id_state[1] + s0;
}

void http_vars_new_request_id(char out[33])
{
    static const char lower[] = "0123456789abcdef";
    for (int half = 0; half < 2; half++) {
        uint64_t r = id_next();
        for (int i = 0; i < 16; i++)
            out[half * 16 + i] = lower[(r >> (60 - 4 * i)) & 15];
    }
    out[32] = '\0';
}
