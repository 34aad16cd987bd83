/* `error_pages:` of an http listener: see error_pages.h. */
#include "proxy/error_pages.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* The statuses Sluice answers with itself (http_conn.c, h2_stream.c,
 * http_txn.c), and 429 for rate limits. A page for any other status would
 * never be served: refused rather than silently ignored. */
static const int own_statuses[] = { 400, 404, 408, 413, 414, 429, 431, 501, 502, 503, 504, 505 };

bool error_page_status_allowed(int status)
{
    for (size_t i = 0; i < sizeof own_statuses / sizeof own_statuses[0]; i++)
        if (own_statuses[i] == status)
            return true;
    return false;
}

static const struct {
    const char *ext;
    const char *type;
} ext_types[] = {
    { ".html", "text/html; charset=utf-8" },
    { ".htm", "text/html; charset=utf-8" },
    { ".txt", "text/plain; charset=utf-8" },
    { ".json", "application/json" },
    { ".xml", "application/xml" },
};

const char *error_page_type_of(const char *path)
{
    const char *base = strrchr(path, '/');
    const char *dot = strrchr(base ? base : path, '.');
    if (!dot)
        return NULL;
    for (size_t i = 0; i < sizeof ext_types / sizeof ext_types[0]; i++)
        if (strcasecmp(dot, ext_types[i].ext) == 0)
            return ext_types[i].type;
    return NULL;
}

bool error_page_type_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > ERROR_PAGE_TYPE_MAX || s[0] == ' ' || s[n - 1] == ' ' || !strchr(s, '/'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] > 0x7e) /* no CR, LF, tab, NUL or bytes beyond ASCII */
            return false;
    return true;
}

const struct error_page *error_page_find(const struct cfg_error_pages *pages, int status)
{
    for (size_t i = 0; pages && i < pages->n; i++)
        if (pages->pages[i].status == status)
            return &pages->pages[i];
    return NULL;
}

/* "503" -> 503; -1 for anything but three digits. */
static int parse_status(const char *s, size_t len)
{
    if (len != 3)
        return -1;
    int v = 0;
    for (size_t i = 0; i < 3; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* Read the whole of p->file into p->body: a regular file of at most
 * ERROR_PAGE_MAX_SIZE bytes. 0, or -1 with why filled. */
static int read_page(struct error_page *p, char *why, size_t whylen)
{
    /* Only a regular file is opened at all: opening a device can have
     * effects of its own (a watchdog starts counting), and a FIFO would
     * hang `sluice check`. fstat below checks what was opened. */
    struct stat sb;
    if (stat(p->file, &sb) < 0) {
        snprintf(why, whylen, "cannot open %s: %s", p->file, strerror(errno));
        return -1;
    }
    if (!S_ISREG(sb.st_mode)) {
        snprintf(why, whylen, "%s is not a regular file", p->file);
        return -1;
    }
    int fd = open(p->file, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        snprintf(why, whylen, "cannot open %s: %s", p->file, strerror(errno));
        return -1;
    }
    int rc = -1;
    if (fstat(fd, &sb) < 0) {
        snprintf(why, whylen, "cannot stat %s: %s", p->file, strerror(errno));
    } else if (!S_ISREG(sb.st_mode)) {
        snprintf(why, whylen, "%s is not a regular file", p->file);
    } else if ((uint64_t)sb.st_size > ERROR_PAGE_MAX_SIZE) {
        snprintf(why, whylen, "%s has %lld bytes, more than the %u a page may have", p->file,
                 (long long)sb.st_size, ERROR_PAGE_MAX_SIZE);
    } else {
        /* One byte more than allowed: a file that grew since fstat is seen. */
        p->body = config_xcalloc(1, ERROR_PAGE_MAX_SIZE + 1);
        size_t got = 0;
        ssize_t n = 0;
        while (got <= ERROR_PAGE_MAX_SIZE &&
               ((n = read(fd, p->body + got, ERROR_PAGE_MAX_SIZE + 1 - got)) > 0 || (n < 0 && errno == EINTR)))
            if (n > 0)
                got += (size_t)n;
        if (n < 0)
            snprintf(why, whylen, "cannot read %s: %s", p->file, strerror(errno));
        else if (got > ERROR_PAGE_MAX_SIZE)
            snprintf(why, whylen, "%s has more than the %u bytes a page may have", p->file, ERROR_PAGE_MAX_SIZE);
        else {
            p->len = got;
            rc = 0;
        }
    }
    close(fd);
    return rc;
}

enum { PK_FILE, PK_CONTENT_TYPE };
static const char *const page_keys[] = { "file", "content_type", NULL };

static void page_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct error_page *p = obj;
    switch (key) {
    case PK_FILE:
        config_get_text(c, v, "the path of the page's file", &p->file);
        break;
    case PK_CONTENT_TYPE:
        if (config_get_text(c, v, "a media type (text/html; charset=utf-8)", &p->content_type) &&
            !error_page_type_valid(p->content_type)) {
            config_err_at(c, v->line, "%s is not a valid Content-Type value (visible ASCII with a '/', at most %d "
                          "characters)", config_shown_str(c, p->content_type), ERROR_PAGE_TYPE_MAX);
            config_set_str(&p->content_type, NULL);
        }
        break;
    }
}

/* One `STATUS: PATH` or `STATUS: {file, content_type}`, into p. False
 * when it is unusable (reported). */
static bool parse_page(struct config_ctx *c, const struct ynode *v, struct error_page *p)
{
    size_t before = config_error_count(c);
    if (v->kind == YNODE_MAP) {
        config_walk_map(c, v, page_keys, page_field, p);
        if (!config_map_has_key(v, "file"))
            config_missing_key(c, v, "file");
    } else {
        config_get_text(c, v, "a file path, or a mapping with file and content_type", &p->file);
    }
    if (config_error_count(c) != before || !p->file)
        return false;
    if (!p->content_type) {
        const char *t = error_page_type_of(p->file);
        if (!t) {
            config_err_at(c, v->line, "cannot tell the content type of %s from its extension (.html, .htm, .txt, "
                          ".json, .xml): give {file: ..., content_type: ...}", config_shown_str(c, p->file));
            return false;
        }
        p->content_type = config_xstrdup(t);
    }
    char why[512];
    if (read_page(p, why, sizeof why) < 0) {
        config_err_at(c, v->line, "%s", why);
        return false;
    }
    return true;
}

static void free_page(struct error_page *p)
{
    free(p->file);
    free(p->content_type);
    free(p->body);
    memset(p, 0, sizeof *p);
}

void error_pages_parse(struct config_ctx *c, const struct ynode *v, struct cfg_error_pages **out)
{
    *out = NULL;
    if (!config_expect_map(c, v) || v->kind != YNODE_MAP || v->n_pairs == 0)
        return;
    struct cfg_error_pages *ep = config_xcalloc(1, sizeof *ep);
    ep->pages = config_xcalloc(v->n_pairs, sizeof *ep->pages);
    for (size_t i = 0; i < v->n_pairs; i++) {
        const struct ynode *k = v->pairs[i].key;
        if (k->kind != YNODE_SCALAR) {
            config_type_error(c, k, "an HTTP status");
            continue;
        }
        size_t mark = config_path_push(c, ".%s", config_shown(c, k->text, k->len));
        int status = parse_status(k->text, k->len);
        if (status < 0 || !error_page_status_allowed(status)) {
            config_err_at(c, k->line, "not a status Sluice answers with itself (400, 404, 408, 413, 414, 429, 431, "
                          "501, 502, 503, 504, 505); a backend's own responses are passed on as they are");
        } else if (error_page_find(ep, status)) {
            config_err_at(c, k->line, "a second page for %d", status);
        } else {
            struct error_page *p = &ep->pages[ep->n];
            p->status = status;
            p->line = k->line;
            if (parse_page(c, v->pairs[i].value, p)) {
                ep->n++;
            } else {
                free_page(p);
            }
        }
        config_path_pop(c, mark);
    }
    if (ep->n == 0) {
        error_pages_free(ep);
        return;
    }
    *out = ep;
}

void error_pages_free(struct cfg_error_pages *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        free_page(&p->pages[i]);
    free(p->pages);
    free(p);
}
