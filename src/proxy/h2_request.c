/* An HTTP/2 request head rendered as HTTP/1.1: see h2_request.h. */
#include "proxy/h2_request.h"

#include <string.h>
#include <strings.h>

#define H2_FIELD_OVERHEAD 32  /* RFC 7541 4.1, as SETTINGS_MAX_HEADER_LIST_SIZE counts */
#define RENDER_SLACK 64       /* request line words, "host: ", chunked, CRLFs */

void h2_req_init(struct h2_req *r, size_t max_header_list_size)
{
    memset(r, 0, sizeof *r);
    r->max_list = max_header_list_size;
}

void h2_req_free(struct h2_req *r)
{
    buf_release(&r->text);
    buf_release(&r->cookie);
}

static bool is(const uint8_t *name, size_t nlen, const char *lit)
{
    return nlen == strlen(lit) && memcmp(name, lit, nlen) == 0;
}

/* Both buffers hold at most max_list bytes: every field costs more than
 * its text. Allocated on the first field, freed with the request. */
static int keep(struct h2_req *r, struct buf *b, const void *p, size_t n)
{
    if (buf_alloc(b, r->max_list) < 0) {
        r->failed = true;
        return -1;
    }
    return buf_append(b, p, n);
}

static int keep_pseudo(struct h2_req *r, struct h2_slot *slot, const uint8_t *value, size_t vlen)
{
    /* nghttp2 refuses a repeated pseudo-header field; keep the first anyway. */
    if (slot->set)
        return 0;
    slot->off = buf_len(&r->text);
    slot->len = vlen;
    if (keep(r, &r->text, value, vlen) < 0)
        return r->failed ? -1 : 0;
    slot->set = true;
    return 0;
}

int h2_req_add(struct h2_req *r, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen)
{
    r->list_size += nlen + vlen + H2_FIELD_OVERHEAD;
    if (r->list_size > r->max_list)
        r->too_large = true;
    if (r->too_large || r->failed)
        return r->failed ? -1 : 0;
    if (nlen && name[0] == ':') {
        struct h2_slot *slot = is(name, nlen, ":method")      ? &r->method
                               : is(name, nlen, ":path")      ? &r->path
                               : is(name, nlen, ":authority") ? &r->authority
                               : is(name, nlen, ":scheme")    ? &r->scheme
                                                              : NULL;
        /* Unknown or late pseudo-header fields never get here (nghttp2). */
        if (!slot || r->regular_seen)
            return 0;
        return keep_pseudo(r, slot, value, vlen);
    }
    if (!r->regular_seen) {
        r->regular_seen = true;
        r->fields_off = buf_len(&r->text);
    }
    if (is(name, nlen, "cookie")) {
        /* RFC 9113 8.2.3: crumbs go back together for HTTP/1.1. */
        if (buf_len(&r->cookie) && keep(r, &r->cookie, "; ", 2) < 0)
            return -1;
        return keep(r, &r->cookie, value, vlen) < 0 && r->failed ? -1 : 0;
    }
    if (is(name, nlen, "host")) {
        /* Kept aside: with :authority it is only compared (render). */
        if (r->host.set)
            return 0;
        r->host.off = buf_len(&r->text);
        r->host.len = vlen;
        r->host.set = keep(r, &r->text, value, vlen) == 0;
        return r->failed ? -1 : 0;
    }
    if (is(name, nlen, "content-length"))
        r->has_content_length = true;
    if (keep(r, &r->text, name, nlen) < 0 || keep(r, &r->text, ": ", 2) < 0 || keep(r, &r->text, value, vlen) < 0 ||
        keep(r, &r->text, "\r\n", 2) < 0)
        return r->failed ? -1 : 0;
    return 0;
}

size_t h2_req_rendered_size(const struct h2_req *r)
{
    return buf_len(&r->text) + buf_len(&r->cookie) + r->authority.len + r->path.len + RENDER_SLACK;
}

static const char *at(const struct h2_req *r, const struct h2_slot *s) { return buf_head(&r->text) + s->off; }

int h2_req_render(const struct h2_req *r, bool chunked, struct buf *dst, const char **reason)
{
    if (r->too_large) {
        *reason = "request header list too large (http2.max_header_list_size)";
        return 431;
    }
    if (r->failed || !r->method.set) {
        *reason = r->failed ? "out of memory" : "request without :method";
        return r->failed ? 503 : 400;
    }
    bool connect = r->method.len == 7 && memcmp(at(r, &r->method), "CONNECT", 7) == 0;
    const struct h2_slot *target = connect ? &r->authority : &r->path;
    if (!target->set || !target->len) {
        *reason = connect ? "CONNECT without :authority" : "request without :path";
        return 400;
    }
    /* RFC 9113 8.3.1: a host that names another entity than :authority
     * makes the request malformed; which one would the backend believe? */
    if (r->authority.set && r->host.set &&
        (r->authority.len != r->host.len || strncasecmp(at(r, &r->authority), at(r, &r->host), r->host.len) != 0)) {
        *reason = "host and :authority differ";
        return 400;
    }
    int rc = buf_append(dst, at(r, &r->method), r->method.len);
    rc |= buf_append(dst, " ", 1);
    rc |= buf_append(dst, at(r, target), target->len);
    rc |= buf_append(dst, " HTTP/1.1\r\n", 11);
    const struct h2_slot *host = r->authority.set ? &r->authority : r->host.set ? &r->host : NULL;
    if (host) {
        rc |= buf_append(dst, "host: ", 6);
        rc |= buf_append(dst, at(r, host), host->len);
        rc |= buf_append(dst, "\r\n", 2);
    }
    if (r->regular_seen) {
        /* The field lines, minus the host value kept among them. */
        size_t from = r->fields_off, end = buf_len(&r->text);
        if (r->host.set && r->host.off >= from) {
            rc |= buf_append(dst, buf_head(&r->text) + from, r->host.off - from);
            from = r->host.off + r->host.len;
        }
        rc |= buf_append(dst, buf_head(&r->text) + from, end - from);
    }
    if (buf_len(&r->cookie)) {
        rc |= buf_append(dst, "cookie: ", 8);
        rc |= buf_append(dst, buf_head(&r->cookie), buf_len(&r->cookie));
        rc |= buf_append(dst, "\r\n", 2);
    }
    if (chunked && !r->has_content_length)
        rc |= buf_append(dst, "transfer-encoding: chunked\r\n", 28);
    rc |= buf_append(dst, "\r\n", 2);
    if (rc) {
        *reason = "request head too large";
        return 431;
    }
    return 0;
}
