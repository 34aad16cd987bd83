/* libFuzzer target: the admin API's routing and query parsing
 * (core/admin.c's hand-written path splitter, percent-decoder and query
 * splitter) through admin_handle, on any method and target. The input is
 * "METHOD TARGET\nBODY"; the mounts check what a handler is given. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/admin.h"

static void check_request(void *arg, const struct admin_request *rq, struct admin_reply *r)
{
    if (rq->n_query > ADMIN_MAX_QUERY || (rq->n_query && !rq->query))
        __builtin_trap();
    for (size_t i = 0; i < rq->n_query; i++) {
        const char *k = rq->query[i].key, *v = rq->query[i].value;
        if (!k || !v)
            __builtin_trap();
        /* the first of a key is what admin_query_get finds */
        const char *first = admin_query_get(rq, k);
        size_t pos = 0;
        if (!first || first != admin_query_next(rq, k, &pos) || pos > i + 1)
            __builtin_trap();
        (void)strlen(v);
    }
    for (size_t i = 0; i < rq->n_seg; i++)
        if (!rq->seg[i][0])
            __builtin_trap();     /* empty segments never route */
    if (rq->body_len && !rq->body)
        __builtin_trap();
    /* without a server nothing can wait */
    if (!admin_deferred_is_null(admin_defer(rq, NULL, NULL)))
        __builtin_trap();
    admin_reply_error(r, 200 + (int)rq->n_query, "%zu segments", rq->n_seg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct admin_site site;
    if (!site.n_mounts) {
        admin_mount(&site, "GET", "/api/things", check_request, NULL);
        admin_mount(&site, NULL, "/a/b", check_request, NULL);
        admin_mount(&site, "POST", "/x", check_request, NULL);
    }
    const char *p = (const char *)data, *end = p + size;
    const char *sp = memchr(p, ' ', size);
    if (!sp)
        return 0;
    const char *nl = memchr(sp + 1, '\n', (size_t)(end - sp - 1));
    const char *target = sp + 1, *body = nl ? nl + 1 : end;
    size_t target_len = (size_t)((nl ? nl : end) - target);
    struct admin_reply r;
    admin_handle(&site, p, (size_t)(sp - p), target, target_len, body, (size_t)(end - body), &r);
    if (r.status < 200 || r.status > 599 || !r.body || !r.content_type)
        __builtin_trap();
    free(r.body);
    return 0;
}
