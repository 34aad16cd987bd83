/* Unit tests for listeners[].error_pages (src/proxy/error_pages.c): the
 * files are read and checked when the configuration is loaded, each
 * problem is one "FILE:LINE: key.path: reason" line, and a loaded page
 * holds the file's bytes and its type. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "proxy/error_pages.h"
#include "proxy/proxy_conf.h"

#include "config_expect.h"

static char dir[] = "/tmp/sluice-error-pages-XXXXXX";
static char path_html[128], path_txt[128], path_big[128], path_noext[128];

static void write_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir))
        return -1;
    snprintf(path_html, sizeof path_html, "%s/503.html", dir);
    snprintf(path_txt, sizeof path_txt, "%s/404.TXT", dir);
    snprintf(path_big, sizeof path_big, "%s/big.html", dir);
    snprintf(path_noext, sizeof path_noext, "%s/page", dir);
    write_file(path_html, "<h1>down</h1>\n", 14);
    write_file(path_txt, "not\0here", 8); /* any bytes, NUL included */
    char *big = calloc(1, ERROR_PAGE_MAX_SIZE + 1);
    memset(big, 'x', ERROR_PAGE_MAX_SIZE + 1);
    write_file(path_big, big, ERROR_PAGE_MAX_SIZE + 1);
    free(big);
    write_file(path_noext, "{}", 2);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path_html);
    unlink(path_txt);
    unlink(path_big);
    unlink(path_noext);
    rmdir(dir);
    return 0;
}

/* MIN_POOLS and MIN_LISTENERS, then "    error_pages:" (line 8) and the
 * given lines (from line 9). */
static char *with_pages(const char *lines)
{
    char *y = NULL;
    assert_true(asprintf(&y, MIN_POOLS MIN_LISTENERS "    error_pages:\n%s", lines) > 0);
    return y;
}

static void test_pages_load(void **state)
{
    (void)state;
    char lines[512];
    snprintf(lines, sizeof lines, "      503: %s\n      404: %s\n      502: { file: %s, content_type: application/json }\n",
             path_html, path_txt, path_noext);
    char *y = with_pages(lines);
    struct sl_config *cfg = load_ok(y);
    const struct cfg_listener *l = &proxy_conf(cfg)->listeners[0];
    assert_non_null(l->error_pages);
    assert_int_equal(l->error_pages->n, 3);
    const struct error_page *p = error_page_find(l->error_pages, 503);
    assert_non_null(p);
    assert_int_equal(p->len, 14);
    assert_memory_equal(p->body, "<h1>down</h1>\n", 14);
    assert_string_equal(p->content_type, "text/html; charset=utf-8");
    p = error_page_find(l->error_pages, 404);
    assert_int_equal(p->len, 8);
    assert_memory_equal(p->body, "not\0here", 8);
    assert_string_equal(p->content_type, "text/plain; charset=utf-8");
    assert_string_equal(error_page_find(l->error_pages, 502)->content_type, "application/json");
    assert_null(error_page_find(l->error_pages, 504));
    assert_null(error_page_find(NULL, 503));
    config_free(cfg);
    free(y);
}

static void test_no_pages(void **state)
{
    (void)state;
    struct sl_config *cfg = load_ok(MIN_POOLS MIN_LISTENERS "    error_pages: {}\n");
    assert_null(proxy_conf(cfg)->listeners[0].error_pages);
    config_free(cfg);
}

static void test_page_errors(void **state)
{
    (void)state;
    char lines[2048];
    snprintf(lines, sizeof lines,
             "      200: %s\n"                                   /* 9 */
             "      5xx: %s\n"                                   /* 10 */
             "      503: %s/missing.html\n"                      /* 11 */
             "      504: %s\n"                                   /* 12 */
             "      502: %s\n"                                   /* 13 */
             "      404: { file: %s, content_type: \"text/html\\r\\nX: y\" }\n" /* 14 */
             "      408: { content_type: text/html }\n"          /* 15 */
             "      400: %s\n"                                   /* 16 */
             "      400: %s\n",                                  /* 17 */
             path_html, path_html, dir, path_big, path_noext, path_html, path_html, path_html);
    char *y = with_pages(lines);
    char want[9][1024];
    snprintf(want[0], 1024, "t.yaml:9: listeners[0].error_pages.200: not a status Sluice answers with itself (400, 404, "
             "408, 413, 414, 429, 431, 501, 502, 503, 504, 505); a backend's own responses are passed on as they are");
    snprintf(want[1], 1024, "t.yaml:10: listeners[0].error_pages.5xx: not a status Sluice answers with itself (400, 404, "
             "408, 413, 414, 429, 431, 501, 502, 503, 504, 505); a backend's own responses are passed on as they are");
    snprintf(want[2], 1024, "t.yaml:11: listeners[0].error_pages.503: cannot open %s/missing.html: No such file or "
             "directory", dir);
    snprintf(want[3], 1024, "t.yaml:12: listeners[0].error_pages.504: %s has %u bytes, more than the %u a page may have",
             path_big, ERROR_PAGE_MAX_SIZE + 1, ERROR_PAGE_MAX_SIZE);
    snprintf(want[4], 1024, "t.yaml:13: listeners[0].error_pages.502: cannot tell the content type of %s from its "
             "extension (.html, .htm, .txt, .json, .xml): give {file: ..., content_type: ...}", path_noext);
    snprintf(want[5], 1024, "t.yaml:14: listeners[0].error_pages.404.content_type: text/html\\x0d\\x0aX: y is not a valid "
             "Content-Type value (visible ASCII with a '/', at most 127 characters)");
    snprintf(want[6], 1024, "t.yaml:15: listeners[0].error_pages.408: missing required key \"file\"");
    snprintf(want[7], 1024, "t.yaml:17: listeners[0].error_pages.400: a second page for 400");
    const char *w[8];
    for (int i = 0; i < 8; i++)
        w[i] = want[i];
    expect_errors(y, w, 8);
    free(y);
}

static void test_only_http(void **state)
{
    (void)state;
    char *y = NULL;
    assert_true(asprintf(&y, MIN_POOLS MIN_LISTENERS "    protocol: tcp\n    error_pages: { 503: %s }\n", path_html) > 0);
    expect_error(y, "t.yaml:9: listeners[0].error_pages: error_pages are only for http listeners (protocol is tcp)");
    free(y);
}

/* A device or a FIFO is refused without being opened (opening some
 * devices does something). */
static void test_not_a_regular_file(void **state)
{
    (void)state;
    char *y = with_pages("      502: { file: /dev/null, content_type: text/plain }\n");
    expect_error(y, "t.yaml:9: listeners[0].error_pages.502: /dev/null is not a regular file");
    free(y);
}

static void test_helpers(void **state)
{
    (void)state;
    assert_string_equal(error_page_type_of("/a/b.HTM"), "text/html; charset=utf-8");
    assert_string_equal(error_page_type_of("x.json"), "application/json");
    assert_null(error_page_type_of("/a.b/page"));
    assert_null(error_page_type_of("page.gif"));
    assert_true(error_page_type_valid("text/html; charset=utf-8"));
    assert_false(error_page_type_valid("text/html\n"));
    assert_false(error_page_type_valid("texthtml"));
    assert_false(error_page_type_valid(" text/html"));
    assert_false(error_page_type_valid("text/h\xc3\xa9"));
    assert_true(error_page_status_allowed(503));
    assert_false(error_page_status_allowed(200));
    assert_false(error_page_status_allowed(302));
}

int main(void)
{
    config_register_section(&proxy_conf_section);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pages_load),
        cmocka_unit_test(test_no_pages),
        cmocka_unit_test(test_page_errors),
        cmocka_unit_test(test_only_http),
        cmocka_unit_test(test_not_a_regular_file),
        cmocka_unit_test(test_helpers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
