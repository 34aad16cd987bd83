/* See strbuf.h. */
#include "lib/strbuf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STRBUF_FIRST_CAP 1024

bool strbuf_reserve(struct strbuf *s, size_t extra)
{
    if (s->oom)
        return false;
    if (extra > SIZE_MAX - s->len - 1) {
        s->oom = true;
        return false;
    }
    if (s->len + extra + 1 <= s->cap)
        return true;
    size_t cap = s->cap ? s->cap : STRBUF_FIRST_CAP;
    while (cap < s->len + extra + 1) {
        if (cap > SIZE_MAX / 2) {
            s->oom = true;
            return false;
        }
        cap *= 2;
    }
    char *p = realloc(s->p, cap);
    if (!p) {
        s->oom = true;
        return false;
    }
    s->p = p;
    s->cap = cap;
    return true;
}

void strbuf_put(struct strbuf *s, const void *p, size_t n)
{
    if (!strbuf_reserve(s, n))
        return;
    memcpy(s->p + s->len, p, n);
    s->len += n;
    s->p[s->len] = '\0';
}

void strbuf_puts(struct strbuf *s, const char *str)
{
    strbuf_put(s, str, strlen(str));
}

void strbuf_vprintf(struct strbuf *s, const char *fmt, va_list ap)
{
    /* Most pieces are short: format into a small buffer first and grow
     * only for the long ones (a second pass with the exact size). */
    char small[256];
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    if (n < 0) {
        va_end(again);
        return;
    }
    if ((size_t)n < sizeof small) {
        strbuf_put(s, small, (size_t)n);
    } else if (strbuf_reserve(s, (size_t)n)) {
        vsnprintf(s->p + s->len, (size_t)n + 1, fmt, again);
        s->len += (size_t)n;
    }
    va_end(again);
}

void strbuf_printf(struct strbuf *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    strbuf_vprintf(s, fmt, ap);
    va_end(ap);
}

char *strbuf_finish(struct strbuf *s, size_t *len)
{
    if (!s->oom && !s->p)
        strbuf_reserve(s, 0);
    if (s->oom) {
        strbuf_free(s);
        return NULL;
    }
    s->p[s->len] = '\0';
    char *text = s->p;
    if (len)
        *len = s->len;
    *s = (struct strbuf){ 0 };
    return text;
}

void strbuf_free(struct strbuf *s)
{
    free(s->p);
    *s = (struct strbuf){ 0 };
}
