#include "proxy/http_route.h"

#include <string.h>
#include <strings.h>

#include "lib/hash.h"

static bool name_is(struct http1_slice n, const char *lit)
{
    return n.len == strlen(lit) && strncasecmp(n.p, lit, n.len) == 0;
}

struct http1_slice http_request_host(const struct http1_message *m)
{
    return m->authority.len && m->method != HTTP1_M_CONNECT ? m->authority : m->host;
}

struct http1_slice http_request_path(const struct http1_message *m)
{
    struct http1_slice t = m->target;
    if (!m->authority.len || m->method == HTTP1_M_CONNECT)
        return t;
    size_t skip = (size_t)(m->authority.p + m->authority.len - t.p);
    return (struct http1_slice){t.p + skip, t.len - skip};
}

bool http_host_matches(const char *pattern, struct http1_slice host)
{
    /* Compare without the port. */
    size_t len = host.len;
    if (len && host.p[0] != '[') {
        const char *colon = memchr(host.p, ':', host.len);
        if (colon)
            len = (size_t)(colon - host.p);
    }
    if (pattern[0] == '*' && pattern[1] == '.') {
        size_t sl = strlen(pattern + 1); /* ".example.com" */
        return len > sl && strncasecmp(host.p + len - sl, pattern + 1, sl) == 0;
    }
    return strlen(pattern) == len && strncasecmp(pattern, host.p, len) == 0;
}

/* Most specific host first (exact, then wildcard, then any), then the
 * longest path prefix; config order breaks ties. */
int http_route_index(const struct cfg_listener *l, const struct http1_message *m)
{
    int best = -1, best_host = -1;
    size_t best_len = 0;
    struct http1_slice host = http_request_host(m), path = http_request_path(m);
    for (size_t i = 0; i < l->n_routes; i++) {
        const struct cfg_route *r = &l->routes[i];
        int host_score = 0;
        if (r->host) {
            if (!http_host_matches(r->host, host))
                continue;
            host_score = r->host[0] == '*' ? 1 : 2;
        }
        size_t pl = strlen(r->path_prefix);
        /* An absolute-form target without a path ("http://h" or
         * "http://h?q") has the path "/" (RFC 9112 §3.2.2). */
        bool root = pl == 1 && path.p != m->target.p && (!path.len || path.p[0] != '/');
        if (!root && (path.len < pl || memcmp(path.p, r->path_prefix, pl) != 0))
            continue;
        if (host_score > best_host || (host_score == best_host && pl > best_len)) {
            best = (int)i;
            best_host = host_score;
            best_len = pl;
        }
    }
    return best;
}

int http_route(const struct cfg_listener *l, const struct http1_message *m)
{
    int r = http_route_index(l, m);
    if (r >= 0)
        return l->routes[r].answer.action == ROUTE_TO_POOL ? (int)l->routes[r].pool : -1;
    return l->has_default_pool ? (int)l->default_pool : -1;
}

bool http_find_cookie(const struct http1_message *m, const char *name, struct http1_slice *out)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < m->n_headers; i++) {
        if (!name_is(m->headers[i].name, "Cookie"))
            continue;
        const char *p = m->headers[i].value.p, *end = p + m->headers[i].value.len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == ';'))
                p++;
            const char *eq = memchr(p, '=', (size_t)(end - p));
            if (!eq)
                break;
            const char *semi = memchr(eq, ';', (size_t)(end - eq));
            if (!semi)
                semi = end;
            if ((size_t)(eq - p) == nl && memcmp(p, name, nl) == 0) {
                *out = (struct http1_slice){eq + 1, (size_t)(semi - eq - 1)};
                return true;
            }
            p = semi;
        }
    }
    return false;
}

uint64_t http_key_hash(const struct cfg_pool *pc, const struct http1_message *m, const char *client_ip)
{
    struct http1_slice key = {client_ip, strlen(client_ip)};
    const struct http1_header *h;
    struct http1_slice v;
    switch (pc->hash_key) {
    case HASH_KEY_URI:
        key = m->target;
        break;
    case HASH_KEY_HEADER:
        if ((h = http1_find_header(m, pc->hash_key_name)))
            key = h->value;
        break;
    case HASH_KEY_COOKIE:
        if (http_find_cookie(m, pc->hash_key_name, &v))
            key = v;
        break;
    case HASH_KEY_CLIENT_IP:
        break;
    }
    return sl_hash64(key.p, key.len, 0);
}
