/* Custom error pages: `error_pages:` of an http listener (nginx
 * error_page, HAProxy errorfile). A page replaces the body (and the
 * Content-Type) of an answer Sluice makes itself with that status: 404
 * when no route matches, 502/503/504 when no backend answers, 400, 408,
 * 413, 414, 431, ... A backend's own response is never replaced, whatever
 * its status (nginx with proxy_intercept_errors off).
 *
 * The files are read and checked while the configuration is loaded (so
 * `sluice check` and a reload refuse a missing or oversized file with its
 * line), and their bytes stay in the configuration: a worker serves
 * exactly what was checked, and a reload (SIGHUP) reads them again.
 *
 * The status line, Content-Length and Connection are Sluice's own, as for
 * its answers without a page: a page only brings a body and its type, so
 * nothing configured can make the message malformed. */
#ifndef SLUICE_PROXY_ERROR_PAGES_H
#define SLUICE_PROXY_ERROR_PAGES_H

#include <stdbool.h>
#include <stddef.h>

#include "core/config_walk.h"

#define ERROR_PAGE_MAX_SIZE (64u * 1024u)  /* bytes of one page file */
#define ERROR_PAGE_TYPE_MAX 127            /* characters of content_type */

struct error_page {
    int status;
    char *file;
    char *content_type;   /* from `content_type:` or the file's extension */
    char *body;           /* the file's bytes (not NUL-terminated data; len counts) */
    size_t len;
    int line;
};

struct cfg_error_pages {
    struct error_page *pages;
    size_t n;
};

/* Parse listeners[i].error_pages (v): a mapping of status to a file path,
 * or to {file: PATH, content_type: TYPE}. Reads every file. *out is set
 * (to NULL for an empty mapping); errors are reported through c. */
void error_pages_parse(struct config_ctx *c, const struct ynode *v, struct cfg_error_pages **out);
void error_pages_free(struct cfg_error_pages *p);

/* The page for status, or NULL (also when pages is NULL). */
const struct error_page *error_page_find(const struct cfg_error_pages *pages, int status);

/* Whether Sluice itself answers with this status (the ones a page may be
 * given for). */
bool error_page_status_allowed(int status);

/* The Content-Type for a file name's extension (.html, .htm, .txt, .json,
 * .xml), or NULL when the extension says nothing. */
const char *error_page_type_of(const char *path);

/* Whether s may be a Content-Type value: visible ASCII and inner spaces,
 * a '/', at most ERROR_PAGE_TYPE_MAX characters. */
bool error_page_type_valid(const char *s);

#endif
