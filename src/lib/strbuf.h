/* A growing, always NUL-terminated string for text the daemon renders
 * (Prometheus expositions, `sluice l4 list`, JSON-less answers).
 *
 * Running out of memory is sticky: the first failed allocation sets `oom`,
 * every later append does nothing, and strbuf_finish() then returns NULL.
 * So a renderer appends without checking each call and looks once at the
 * end. The zero value { 0 } is an empty builder.
 */
#ifndef SLUICE_LIB_STRBUF_H
#define SLUICE_LIB_STRBUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

struct strbuf {
    char *p;        /* NULL until the first append */
    size_t len;     /* bytes, without the NUL */
    size_t cap;
    bool oom;
};

/* Room for `extra` more bytes (plus the NUL). False once out of memory. */
bool strbuf_reserve(struct strbuf *s, size_t extra);
void strbuf_put(struct strbuf *s, const void *p, size_t n);
void strbuf_puts(struct strbuf *s, const char *str);
void strbuf_printf(struct strbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void strbuf_vprintf(struct strbuf *s, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* Hand the text over: the malloc'd string (an empty one if nothing was
 * appended) with *len set when len is not NULL, or NULL after an
 * allocation failed. Either way the builder is empty again. */
char *strbuf_finish(struct strbuf *s, size_t *len);
/* Drop the text. */
void strbuf_free(struct strbuf *s);

#endif
