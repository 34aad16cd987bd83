/* X-Forwarded-For, X-Real-IP, Forwarded: see forwarded_headers.h. */
#include "proxy/forwarded_headers.h"

#include <string.h>
#include <strings.h>

#include "proxy/proxy_protocol.h"
#include "proxy/tls.h"

static bool name_is(struct http1_slice n, const char *lit)
{
    return n.len == strlen(lit) && strncasecmp(n.p, lit, n.len) == 0;
}

bool forwarded_header_is_ours(const struct cfg_listener *cfg, struct http1_slice name)
{
    return name_is(name, "X-Forwarded-For") || (cfg->client_addr.x_real_ip && name_is(name, "X-Real-IP")) ||
           (cfg->client_addr.forwarded && name_is(name, "Forwarded"));
}

static int puts_(struct buf *f, const char *s) { return buf_append(f, s, strlen(s)); }

/* Every field called name, in order, joined by ", " and followed by one
 * (the proxy's own element goes after them). */
static int put_joined(struct buf *f, const struct http1_message *m, const char *name)
{
    int rc = 0;
    for (size_t i = 0; i < m->n_headers; i++) {
        const struct http1_header *h = &m->headers[i];
        if (name_is(h->name, name) && h->value.len) {
            rc |= buf_append(f, h->value.p, h->value.len);
            rc |= puts_(f, ", ");
        }
    }
    return rc;
}

/* RFC 7230 tchar: a host that is all of them goes unquoted. */
static bool is_tchar(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* host= of the Forwarded element: the Host the request named, quoted
 * when it is not a token (a port's ':'). Left out if it holds bytes a
 * quoted-string cannot (it never does after the parser; belt and braces). */
static int put_forwarded_host(struct buf *f, const struct http1_message *m)
{
    struct http1_slice host = m->authority;
    if (!host.len) {
        const struct http1_header *h = http1_find_header(m, "Host");
        if (h)
            host = h->value;
    }
    if (!host.len)
        return 0;
    bool token = true;
    for (size_t i = 0; i < host.len; i++) {
        unsigned char ch = (unsigned char)host.p[i];
        if (ch < 0x21 || ch > 0x7e || ch == '"' || ch == '\\')
            return 0;
        token = token && is_tchar((char)ch);
    }
    int rc = puts_(f, token ? ";host=" : ";host=\"");
    rc |= buf_append(f, host.p, host.len);
    if (!token)
        rc |= puts_(f, "\"");
    return rc;
}

int forwarded_headers_put(struct buf *f, const struct http_carrier *cr, const struct http1_message *m)
{
    const struct cfg_listener *cfg = cr->l->cfg;
    bool trusted = cr->origin && pp_client_trusted(cfg, cr->origin);
    bool tls = cr->tr && transport_is_tls(cr->tr);
    int rc = puts_(f, "X-Forwarded-For: ");
    if (trusted)
        rc |= put_joined(f, m, "X-Forwarded-For");
    rc |= puts_(f, cr->peer_ip);
    rc |= puts_(f, "\r\n");
    if (cfg->client_addr.x_real_ip) {
        rc |= puts_(f, "X-Real-IP: ");
        rc |= puts_(f, cr->peer_ip);
        rc |= puts_(f, "\r\n");
    }
    if (cfg->client_addr.forwarded) {
        rc |= puts_(f, "Forwarded: ");
        if (trusted)
            rc |= put_joined(f, m, "Forwarded");
        /* RFC 7239 6: an IPv6 node is bracketed, and then must be quoted. */
        bool v6 = strchr(cr->peer_ip, ':') != NULL;
        rc |= puts_(f, v6 ? "for=\"[" : "for=");
        rc |= puts_(f, cr->peer_ip);
        rc |= puts_(f, v6 ? "]\"" : "");
        rc |= puts_(f, tls ? ";proto=https" : ";proto=http");
        rc |= put_forwarded_host(f, m);
        rc |= puts_(f, "\r\n");
    }
    return rc ? -1 : 0;
}
