/* HTTP/1 response heads and chunked bodies made HTTP/2: see h2_response.h. */
#include "proxy/h2_response.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool name_is(struct http1_slice n, const char *lit)
{
    return n.len == strlen(lit) && strncasecmp(n.p, lit, n.len) == 0;
}

static bool connection_specific(struct http1_slice n)
{
    return name_is(n, "connection") || name_is(n, "keep-alive") || name_is(n, "proxy-connection") ||
           name_is(n, "transfer-encoding") || name_is(n, "upgrade") || name_is(n, "te");
}

ssize_t h2_head_from_http1(const char *p, size_t len, struct h2_head *h)
{
    static struct http1_message m; /* large; a worker runs one call at a time */
    memset(h, 0, sizeof *h);
    /* These heads are ours, already checked against the listener's limits
     * when they came from the backend: parse them with room to spare. */
    struct http1_limits lim = {.max_request_line = len + 1, .max_head = len + 1,
                               .max_headers = HTTP1_MAX_HEADERS_CAP};
    enum http1_result r = http1_parse_response(p, len, &lim, HTTP1_M_GET, &m);
    if (r == HTTP1_INCOMPLETE)
        return 0;
    if (r == HTTP1_ERROR)
        return -1;
    size_t text_len = 0;
    for (size_t i = 0; i < m.n_headers; i++)
        text_len += m.headers[i].name.len + 1;
    h->text = malloc(text_len + 1);
    if (!h->text)
        return -1;
    h->status = m.status;
    h->status_text[0] = (char)('0' + m.status / 100 % 10);
    h->status_text[1] = (char)('0' + m.status / 10 % 10);
    h->status_text[2] = (char)('0' + m.status % 10);
    h->nv[h->n++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)h->status_text, 7, 3, NGHTTP2_NV_FLAG_NONE};
    char *t = h->text;
    for (size_t i = 0; i < m.n_headers; i++) {
        const struct http1_header *f = &m.headers[i];
        if (connection_specific(f->name))
            continue;
        for (size_t k = 0; k < f->name.len; k++)
            t[k] = (char)tolower((unsigned char)f->name.p[k]);
        /* nghttp2 copies names and values when the frame is submitted. */
        h->nv[h->n++] = (nghttp2_nv){(uint8_t *)t, (uint8_t *)f->value.p, f->name.len, f->value.len,
                                     NGHTTP2_NV_FLAG_NONE};
        t += f->name.len;
    }
    return (ssize_t)m.head_len;
}

void h2_head_free(struct h2_head *h)
{
    free(h->text);
    h->text = NULL;
}

enum { DC_SIZE, DC_EXT, DC_SIZE_LF, DC_DATA, DC_DATA_CR, DC_DATA_LF, DC_TRAILER, DC_TRAILER_LF, DC_LINE,
       DC_FINAL_LF };

void h2_dechunk_init(struct h2_dechunk *d)
{
    memset(d, 0, sizeof *d);
    d->state = DC_SIZE;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

ssize_t h2_dechunk_feed(struct h2_dechunk *d, const char *in, size_t inlen, char *out, size_t outcap, size_t *outn)
{
    size_t i = 0, o = 0;
    while (i < inlen && !d->done) {
        char c = in[i];
        switch (d->state) {
        case DC_SIZE: {
            int v = hexval(c);
            if (v >= 0) {
                if (d->left >> 60)
                    return -1;
                d->left = d->left * 16 + (uint64_t)v;
                i++;
                break;
            }
            d->state = c == '\r' ? DC_SIZE_LF : DC_EXT;
            i++;
            break;
        }
        case DC_EXT: /* chunk extensions (and white space before them): skipped */
            if (c == '\r')
                d->state = DC_SIZE_LF;
            i++;
            break;
        case DC_SIZE_LF:
            if (c != '\n')
                return -1;
            i++;
            d->state = d->left ? DC_DATA : DC_TRAILER;
            break;
        case DC_DATA: {
            size_t n = inlen - i;
            if (n > d->left)
                n = (size_t)d->left;
            if (n > outcap - o)
                n = outcap - o;
            if (!n)
                goto out; /* no room for payload */
            memcpy(out + o, in + i, n);
            o += n;
            i += n;
            d->left -= n;
            if (!d->left)
                d->state = DC_DATA_CR;
            break;
        }
        case DC_DATA_CR:
            if (c != '\r')
                return -1;
            d->state = DC_DATA_LF;
            i++;
            break;
        case DC_DATA_LF:
            if (c != '\n')
                return -1;
            d->state = DC_SIZE;
            i++;
            break;
        case DC_TRAILER: /* at the start of a trailer line: CR ends the message */
            d->state = c == '\r' ? DC_FINAL_LF : DC_LINE;
            i++;
            break;
        case DC_LINE: /* trailer fields are not forwarded (docs/http2.md) */
            if (c == '\r')
                d->state = DC_TRAILER_LF;
            i++;
            break;
        case DC_TRAILER_LF:
            if (c != '\n')
                return -1;
            d->state = DC_TRAILER;
            i++;
            break;
        case DC_FINAL_LF:
            if (c != '\n')
                return -1;
            d->done = true;
            i++;
            break;
        }
    }
out:
    *outn = o;
    return (ssize_t)i;
}
