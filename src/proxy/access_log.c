#include "proxy/access_log.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "proxy/access_log_sink.h"
#include "proxy/tls_session.h"

#define ACCESS_LOG_BUFFER (4 * ACCESS_LOG_LINE)

/* The most bytes of one text field a JSON line takes. With every byte
 * escaped to six characters ("\ufffd", "\u0001"), the text fields still
 * fit ACCESS_LOG_LINE: a request line, five header-sized fields (host,
 * referer, user agent, SNI, client subject) and nine short ones (time,
 * client, listener, upstream, reason, TLS version and cipher, route,
 * pool): (512 + 5 * 256 + 9 * 128) * 6 = 17.5 KiB, plus the numbers.
 * The proxy's own captures are shorter (see struct request_log). */
#define JSON_REQUEST_MAX 512
#define JSON_HEADER_MAX 256
#define JSON_SHORT_MAX 128

struct access_log {
    struct log_sink *sink;  /* syslog or journald (access_log_sink.h): no fd, no buffering */
    int fd;
    bool owns_fd;
    enum log_format format;
    size_t len;
    char buf[ACCESS_LOG_BUFFER];
};

struct access_log *access_log_open(const char *path, enum log_format format)
{
    struct access_log *al = calloc(1, sizeof *al);
    if (!al)
        return NULL;
    al->format = format;
    if (log_sink_is_spec(path)) {
        al->sink = access_log_sink_open(path);
        if (!al->sink) {
            free(al);
            return NULL;
        }
    } else if (strcmp(path, "stdout") == 0) {
        al->fd = 1;
    } else {
        al->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (al->fd < 0) {
            log_error("cannot open access log %s: %s", path, strerror(errno));
            free(al);
            return NULL;
        }
        al->owns_fd = true;
    }
    return al;
}

void access_log_flush(struct access_log *al)
{
    size_t off = 0;
    while (off < al->len) {
        ssize_t n = write(al->fd, al->buf + off, al->len - off);
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            break; /* a full disk must not stop the proxy; the lines are lost */
        }
        off += (size_t)n;
    }
    al->len = 0;
}

int access_log_reopen(struct access_log *al, const char *path)
{
    if (!al || !al->owns_fd)
        return 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        log_error("cannot reopen access log %s: %s; still writing to the old one", path, strerror(errno));
        return -1;
    }
    access_log_flush(al);   /* what was gathered belongs to the old file */
    close(al->fd);
    al->fd = fd;
    return 0;
}

void access_log_close(struct access_log *al)
{
    if (!al)
        return;
    access_log_flush(al);
    if (al->owns_fd)
        close(al->fd);
    log_sink_close(al->sink);
    free(al);
}

/* ---------- combined ---------- */

/* Quote for the combined format: escape '"', '\\' and non-printable bytes
 * the way nginx does (\xHH) so a hostile User-Agent cannot forge lines. */
static size_t put_escaped(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    if (!s || !*s) {
        if (cap > 1)
            out[n++] = '-';
        out[n] = '\0';
        return n;
    }
    for (; *s && n + 7 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            out[n++] = '\\';
            out[n++] = (char)ch;
        } else if (ch < 0x20 || ch >= 0x7f) {
            n += (size_t)snprintf(out + n, cap - n, "\\x%02X", ch);
        } else {
            out[n++] = (char)ch;
        }
    }
    out[n] = '\0';
    return n;
}

/* The labels of sluice_tls_session_handshakes_total{resumed}. */
static const char *resumption_name(int resumed)
{
    return resumed == TLS_RESUMED_TICKET ? "ticket" : resumed == TLS_RESUMED_CACHE ? "cache" : "no";
}

/* " tls=TLSv1.3 cipher=... sni=\"...\" resumed=no", then
 * " client=\"CN=...\"" when a client certificate was verified, or nothing
 * on a plain listener. The SNI is the client's text: escaped like the
 * others; so is the subject. */
static void format_tls_fields(const struct access_entry *e, char *out, size_t cap)
{
    out[0] = '\0';
    if (!e->tls_version)
        return;
    char sni[300];
    put_escaped(sni, sizeof sni, e->sni);
    int n = snprintf(out, cap, " tls=%s cipher=%s sni=\"%s\" resumed=%s", e->tls_version,
                     e->tls_cipher ? e->tls_cipher : "-", sni, resumption_name(e->tls_resumed));
    if (e->client_subject && n > 0 && (size_t)n < cap) {
        char subject[600];
        put_escaped(subject, sizeof subject, e->client_subject);
        snprintf(out + n, cap - (size_t)n, " client=\"%s\"", subject);
    }
}

static int format_combined(const struct access_entry *e, const struct tm *tm, char *out, size_t cap)
{
    char req[1024], ref[512], ua[512], ts[64], tls[1200];
    put_escaped(req, sizeof req, e->request_line);
    put_escaped(ref, sizeof ref, e->referer);
    put_escaped(ua, sizeof ua, e->user_agent);
    format_tls_fields(e, tls, sizeof tls);
    strftime(ts, sizeof ts, "%d/%b/%Y:%H:%M:%S +0000", tm);
    return snprintf(out, cap, "%s - - [%s] \"%s\" %d %llu \"%s\" \"%s\"%s\n", e->client_ip, ts, req, e->status,
                    (unsigned long long)e->bytes_sent, ref, ua, tls);
}

/* ---------- JSON ---------- */

/* The well-formed UTF-8 sequences (Unicode Table 3-7): how many bytes the
 * one starting at s[0] needs (*need), and how many of s[0..n) match it.
 * A lead byte that starts no sequence needs 1 and matches 0. */
static size_t utf8_match(const unsigned char *s, size_t n, size_t *need)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xbf;
    if (c < 0x80) {
        *need = 1;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        *need = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        *need = 3;
        lo = c == 0xe0 ? 0xa0 : 0x80;   /* no overlong forms */
        hi = c == 0xed ? 0x9f : 0xbf;   /* no surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        *need = 4;
        lo = c == 0xf0 ? 0x90 : 0x80;   /* no overlong forms */
        hi = c == 0xf4 ? 0x8f : 0xbf;   /* nothing past U+10FFFF */
    } else {
        *need = 1;
        return 0;
    }
    size_t i = 1;
    for (; i < *need && i < n; i++) {
        unsigned char x = s[i];
        if (x < (i == 1 ? lo : 0x80) || x > (i == 1 ? hi : 0xbf))
            break;
    }
    return i;
}

/* Copy at most max bytes of s into out (room for 3 * max bytes) as valid
 * UTF-8: each maximal ill-formed subsequence becomes U+FFFD. A character
 * that the limit cuts is left out rather than replaced. Returns the length. */
static size_t utf8_sanitize(const char *s, size_t max, char *out)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strnlen(s, max + 1), truncated = len > max, o = 0;
    if (truncated)
        len = max;
    for (size_t i = 0; i < len;) {
        size_t need, ok = utf8_match(p + i, len - i, &need);
        if (ok == need) {
            memcpy(out + o, p + i, need);
            o += need;
            i += need;
        } else if (truncated && i + ok == len) {
            break;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i += ok ? ok : 1;
        }
    }
    return o;
}

static void set_text(json_t *obj, const char *key, const char *s, size_t max)
{
    char buf[3 * JSON_REQUEST_MAX];
    size_t n = s ? utf8_sanitize(s, max < JSON_REQUEST_MAX ? max : JSON_REQUEST_MAX, buf) : 0;
    json_t *v = json_stringn(buf, n);
    json_object_set_new(obj, key, v ? v : json_string(""));
}

static void set_uint(json_t *obj, const char *key, uint64_t v)
{
    json_object_set_new(obj, key, json_integer(v > INT64_MAX ? INT64_MAX : (json_int_t)v));
}

static void set_us_or_null(json_t *obj, const char *key, int64_t us)
{
    json_object_set_new(obj, key, us < 0 ? json_null() : json_integer(us));
}

/* With `wire` false, the fields a client controls are left empty: the
 * fallback should a line not fit. */
static json_t *entry_json(const struct access_entry *e, const char *ts, bool wire)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    set_text(o, "time", ts, JSON_SHORT_MAX);
    set_text(o, "client", e->client_ip, JSON_SHORT_MAX);
    set_text(o, "listener", e->listener, JSON_SHORT_MAX);
    set_text(o, "host", wire ? e->host : NULL, JSON_HEADER_MAX);
    set_text(o, "request", wire ? e->request_line : NULL, JSON_REQUEST_MAX);
    json_object_set_new(o, "status", json_integer(e->status));
    set_uint(o, "bytes_sent", e->bytes_sent);
    set_text(o, "referer", wire ? e->referer : NULL, JSON_HEADER_MAX);
    set_text(o, "user_agent", wire ? e->user_agent : NULL, JSON_HEADER_MAX);
    set_text(o, "upstream", e->upstream, JSON_SHORT_MAX);
    set_uint(o, "duration_us", e->duration_us);
    set_text(o, "reason", e->reason, JSON_SHORT_MAX);
    set_uint(o, "bytes_received", e->bytes_received);
    set_us_or_null(o, "upstream_connect_us", e->upstream_connect_us);
    set_us_or_null(o, "upstream_header_us", e->upstream_header_us);
    set_us_or_null(o, "upstream_response_us", e->upstream_response_us);
    json_object_set_new(o, "upstream_tries", json_integer(e->upstream_tries));
    if (e->route)
        set_text(o, "route", e->route, JSON_SHORT_MAX);
    else
        json_object_set_new(o, "route", json_null());
    if (e->pool)
        set_text(o, "pool", e->pool, JSON_SHORT_MAX);
    else
        json_object_set_new(o, "pool", json_null());
    if (e->tls_version) {
        set_text(o, "tls_version", e->tls_version, JSON_SHORT_MAX);
        set_text(o, "tls_cipher", e->tls_cipher, JSON_SHORT_MAX);
        set_text(o, "sni", wire ? e->sni : NULL, JSON_HEADER_MAX);
        json_object_set_new(o, "tls_resumed", json_boolean(e->tls_resumed != TLS_RESUMED_NO));
        json_object_set_new(o, "tls_resumption", json_string(resumption_name(e->tls_resumed)));
        if (e->client_subject)
            set_text(o, "tls_client_subject", e->client_subject, JSON_HEADER_MAX);
    }
    return o;
}

/* Dump o and a newline into out; 0 if it does not fit (or o is NULL). */
static size_t dump_line(json_t *o, char *out, size_t cap)
{
    size_t n = o ? json_dumpb(o, out, cap, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER) : 0;
    json_decref(o);
    if (n == 0 || n + 2 > cap)
        return 0;
    out[n] = '\n';
    out[n + 1] = '\0';
    return n + 1;
}

static size_t format_json(const struct access_entry *e, const struct tm *tm, char *out, size_t cap)
{
    char ts[64];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", tm);
    size_t n = dump_line(entry_json(e, ts, true), out, cap);
    if (!n)
        n = dump_line(entry_json(e, ts, false), out, cap);
    if (!n)
        n = (size_t)snprintf(out, cap, "{\"time\":\"%s\",\"status\":%d}\n", ts, e->status); /* out of memory */
    return n;
}

size_t access_log_format(enum log_format format, const struct access_entry *e, time_t now,
                         char *out, size_t cap)
{
    struct tm tm;
    gmtime_r(&now, &tm);
    if (format == ACCESS_LOG_JSON)
        return format_json(e, &tm, out, cap);
    int n = format_combined(e, &tm, out, cap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= cap) {
        n = (int)cap - 1;
        out[n - 1] = '\n';
    }
    return (size_t)n;
}

void access_log_write(struct access_log *al, const struct access_entry *e)
{
    if (al->sink) {
        /* One datagram per line, sent now (non-blocking): the buffer is scratch. */
        size_t n = access_log_format(al->format, e, time(NULL), al->buf, ACCESS_LOG_LINE);
        access_log_sink_send(al->sink, e, al->buf, n);
        return;
    }
    if (ACCESS_LOG_BUFFER - al->len < ACCESS_LOG_LINE)
        access_log_flush(al);
    al->len += access_log_format(al->format, e, time(NULL), al->buf + al->len, ACCESS_LOG_LINE);
}

void access_log_write_fmt(struct access_log *al, const struct http_fmt *f, enum http_escape esc,
                          const struct http_vars *v)
{
    if (ACCESS_LOG_BUFFER - al->len < ACCESS_LOG_LINE)
        access_log_flush(al);
    /* One byte is kept for the newline: the line ends there whatever the
     * values held (they are escaped, so none of them can end it early). */
    char *line = al->buf + al->len;
    size_t n = http_fmt_render(f, v, esc, line, ACCESS_LOG_LINE - 1, NULL);
    line[n++] = '\n';
    al->len += n;
}
