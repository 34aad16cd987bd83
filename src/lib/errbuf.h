/* One way to fill a caller's reason buffer: the convention of every
 * function that returns -1 with a reason in (err, errlen). */
#ifndef SLUICE_LIB_ERRBUF_H
#define SLUICE_LIB_ERRBUF_H

#include <stddef.h>

/* Format the reason into err (when err and errlen are set) and return -1,
 * so a failing path reads `return errbuf_fail(err, errlen, "...", ...);`. */
int errbuf_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The reason for a name (datacenter, region, node...) whose byte at `bad`
 * is not one of [A-Za-z0-9._-]: the name quoted when it is printable
 * ASCII, else only the offending byte, so a reason is always one line of
 * text (it goes into logs, config errors and JSON). Returns -1. */
int errbuf_fail_name_char(char *err, size_t errlen, const char *what, const char *name, size_t bad);

#endif
