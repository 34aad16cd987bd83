/* libFuzzer target for the BIRD control-socket client's reader
 * (src/ha/birdc.c): the bytes are a stream from BIRD's control socket,
 * cut at '\n' and fed line by line to birdc_reply_add_line, as
 * birdc_command reads them; each complete reply is given to every reply
 * parser (protocols, BFD sessions, route count, prefixes, routes with
 * their attributes). The seed
 * corpus (tests/fuzz/corpus/birdc) is real BIRD 2.0.12 output captured
 * from its control socket.
 *
 * Beyond "no crash, no leak": a reply that ends has a code from 0 to
 * 9999 equal to its last line's, every line's code is in range, a parser
 * that succeeds returns no more rows than the reply has lines and rows
 * whose strings are NUL-terminated within their fields; a parser that
 * fails says why. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ha/birdc.h"

static void check_str(const char *s, size_t cap)
{
    if (!memchr(s, '\0', cap))
        abort();
}

static void check_reply(const struct birdc_reply *r)
{
    if (r->code < 0 || r->code > 9999 || r->n == 0 || r->lines[r->n - 1].code != r->code)
        abort();
    for (size_t i = 0; i < r->n; i++)
        if (r->lines[i].code < 0 || r->lines[i].code > 9999)
            abort();
    char err[256];
    size_t n;
    struct birdc_protocol *p;
    err[0] = '\0';
    if (birdc_parse_protocols(r, &p, &n, err, sizeof err) == 0) {
        if (n > r->n)
            abort();
        for (size_t i = 0; i < n; i++) {
            check_str(p[i].name, sizeof p[i].name);
            check_str(p[i].info, sizeof p[i].info);
            if (!p[i].name[0] || !p[i].since[0])
                abort();
        }
        free(p);
    } else if (!err[0]) {
        abort();
    }
    struct birdc_bfd_session *b;
    err[0] = '\0';
    if (birdc_parse_bfd_sessions(r, &b, &n, err, sizeof err) == 0) {
        if (n > r->n)
            abort();
        for (size_t i = 0; i < n; i++)
            check_str(b[i].since, sizeof b[i].since);
        free(b);
    } else if (!err[0]) {
        abort();
    }
    uint32_t count;
    err[0] = '\0';
    if (birdc_parse_route_count(r, &count, err, sizeof err) < 0 && !err[0])
        abort();
    struct birdc_prefix *px;
    err[0] = '\0';
    if (birdc_parse_prefixes(r, &px, &n, err, sizeof err) == 0) {
        if (n > r->n)
            abort();
        for (size_t i = 0; i < n; i++)
            if (!strchr(px[i].text, '/'))
                abort();
        free(px);
    } else if (!err[0]) {
        abort();
    }
    struct birdc_route *rt;
    err[0] = '\0';
    if (birdc_parse_routes(r, &rt, &n, err, sizeof err) == 0) {
        if (n > r->n)
            abort();
        for (size_t i = 0; i < n; i++) {
            check_str(rt[i].prefix, sizeof rt[i].prefix);
            check_str(rt[i].proto, sizeof rt[i].proto);
            if (!strchr(rt[i].prefix, '/') || !rt[i].proto[0] || rt[i].as_path_len > BIRDC_MAX_AS_PATH ||
                rt[i].n_community > BIRDC_MAX_COMMUNITIES || rt[i].n_large_community > BIRDC_MAX_COMMUNITIES)
                abort();
        }
        free(rt);
    } else if (!err[0]) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct birdc_reply r = { 0 };
    const char *p = (const char *)data, *end = p + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            break;   /* an unfinished line waits for more bytes */
        char err[256] = "";
        int rc = birdc_reply_add_line(&r, p, (size_t)(nl - p), err, sizeof err);
        p = nl + 1;
        if (rc < 0) {
            if (!err[0])
                abort();
            break;
        }
        if (rc == 1) {
            if (!r.done)
                abort();
            check_reply(&r);
            birdc_reply_free(&r);
        }
    }
    birdc_reply_free(&r);
    return 0;
}
