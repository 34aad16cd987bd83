/* See html.h. */
#include "lib/html.h"

#include <string.h>

void html_escape(struct strbuf *out, const char *s)
{
    while (s && *s) {
        size_t plain = strcspn(s, "&<>\"'");
        strbuf_put(out, s, plain);
        s += plain;
        switch (*s) {
        case '&': strbuf_puts(out, "&amp;"); break;
        case '<': strbuf_puts(out, "&lt;"); break;
        case '>': strbuf_puts(out, "&gt;"); break;
        case '"': strbuf_puts(out, "&quot;"); break;
        case '\'': strbuf_puts(out, "&#39;"); break;
        default: return; /* the end */
        }
        s++;
    }
}
