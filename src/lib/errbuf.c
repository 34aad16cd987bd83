#include "lib/errbuf.h"

#include <stdarg.h>
#include <stdio.h>

int errbuf_fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int errbuf_fail_name_char(char *err, size_t errlen, const char *what, const char *name, size_t bad)
{
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            return errbuf_fail(err, errlen, "%s: may hold only letters, digits, '-', '_' and '.' (byte %zu is 0x%02x)",
                               what, bad + 1, (unsigned)(unsigned char)name[bad]);
    return errbuf_fail(err, errlen, "%s: \"%s\" may hold only letters, digits, '-', '_' and '.'", what, name);
}
