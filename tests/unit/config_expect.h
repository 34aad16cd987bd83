/* What the configuration tests share: loading a YAML text and holding the
 * result against exact error lines. Included by test_config.c and
 * test_l4_conf.c (each registers the sections it tests first). */
#ifndef SLUICE_TESTS_CONFIG_EXPECT_H
#define SLUICE_TESTS_CONFIG_EXPECT_H

#include <stdbool.h>
#include <string.h>

#include "core/config.h"

static struct sl_config *load(const char *yaml, struct config_errors *errs)
{
    return config_load_string("t.yaml", yaml, strlen(yaml), errs);
}

static void dump_errors(const struct config_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        print_message("  error: %s\n", errs->lines[i]);
}

/* Loading must succeed with no errors. Caller frees. */
static struct sl_config *load_ok(const char *yaml)
{
    struct config_errors errs = { 0 };
    struct sl_config *cfg = load(yaml, &errs);
    if (!cfg || errs.n)
        dump_errors(&errs);
    assert_non_null(cfg);
    assert_int_equal(errs.n, 0);
    config_errors_free(&errs);
    return cfg;
}

/* Loading must fail with exactly the given error lines, in order. */
static void expect_errors(const char *yaml, const char *const *want, size_t n_want)
{
    struct config_errors errs = { 0 };
    struct sl_config *cfg = load(yaml, &errs);
    bool same = errs.n == n_want;
    for (size_t i = 0; same && i < n_want; i++)
        same = strcmp(errs.lines[i], want[i]) == 0;
    if (!same) {
        print_message("for YAML:\n%s\n", yaml);
        dump_errors(&errs);
    }
    assert_null(cfg);
    assert_int_equal(errs.n, n_want);
    for (size_t i = 0; i < n_want; i++)
        assert_string_equal(errs.lines[i], want[i]);
    config_errors_free(&errs);
}

static void expect_error(const char *yaml, const char *want)
{
    expect_errors(yaml, &want, 1);
}

/* A small valid config; tests append to it or edit copies of it. */
#define MIN_POOLS                                                                                    \
    "pools:\n"                        /* 1 */                                                        \
    "  - name: app\n"                 /* 2 */                                                        \
    "    backends: [127.0.0.1:9001]\n" /* 3 */
#define MIN_LISTENERS                                                                                \
    "listeners:\n"                    /* 4 */                                                        \
    "  - name: web\n"                 /* 5 */                                                        \
    "    listen: 127.0.0.1:8080\n"    /* 6 */                                                        \
    "    pool: app\n"                 /* 7 */

#endif
