/* Unit tests for a dynamic pool's members (src/proxy/pool_dyn.c), without
 * DNS: the file's addresses, the API's adds and removes (duplicates, a full
 * pool, a fixed pool, one removed from the file coming back), and what a
 * reload keeps of them: everything while the pool's backends stay as they
 * were in the file, nothing once the file changed them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/evloop.h"
#include "proxy/pool_dyn.h"

static struct sl_config *load(const char *backends, const char *max)
{
    char yaml[512];
    snprintf(yaml, sizeof yaml,
             "pools:\n  - name: app\n    max_backends: %s\n    backends: [%s]\n"
             "  - name: fixed\n    backends: [10.0.0.9:80]\n"
             "listeners:\n  - name: web\n    listen: 127.0.0.1:1\n    pool: app\n",
             max, backends);
    struct config_errors errs = { 0 };
    config_register_section(&proxy_conf_section);
    struct sl_config *cfg = config_load_string("t.yaml", yaml, strlen(yaml), &errs);
    for (size_t i = 0; i < errs.n; i++)
        print_message("%s\n", errs.lines[i]);
    assert_non_null(cfg);
    config_errors_free(&errs);
    return cfg;
}

static struct sl_addr addr(const char *text)
{
    struct sl_addr a;
    const char *why;
    assert_int_equal(addr_parse(text, &a, &why), 0);
    return a;
}

/* The members as "a,b,c" in order. */
static const char *members(struct pool_dyn *d, const struct cfg_pool *cp)
{
    static char out[512];
    struct slot_member m[16];
    size_t n = pool_dyn_members(d, cp, m, 16);
    out[0] = '\0';
    for (size_t i = 0; i < n && i < 16; i++)
        snprintf(out + strlen(out), sizeof out - strlen(out), "%s%s/%u", i ? "," : "", m[i].addr.text,
                 m[i].weight);
    return out;
}

static void test_adds_and_removes(void **state)
{
    struct ev_loop *loop = ev_loop_new();
    struct pool_dyn *d = pool_dyn_new(loop);
    struct sl_config *cfg = load("10.0.0.1:80, 10.0.0.2:80", "3");
    const struct proxy_conf *pc = proxy_conf(cfg);
    const struct cfg_pool *app = &pc->pools[0], *fixed = &pc->pools[1];
    pool_dyn_configure(d, pc);
    char err[256];
    uint64_t v0 = pool_dyn_version(d);
    assert_string_equal(members(d, app), "10.0.0.1:80/1,10.0.0.2:80/1");

    struct sl_addr a3 = addr("10.0.0.3:80"), a4 = addr("10.0.0.4:80"), a1 = addr("10.0.0.1:80");
    assert_int_equal(pool_dyn_add(d, app, &a3, 5, err, sizeof err), 0);
    assert_true(pool_dyn_version(d) > v0);
    assert_string_equal(members(d, app), "10.0.0.1:80/1,10.0.0.2:80/1,10.0.0.3:80/5");
    assert_int_equal(pool_dyn_add(d, app, &a3, 1, err, sizeof err), 409);    /* already */
    assert_non_null(strstr(err, "already"));
    assert_int_equal(pool_dyn_add(d, app, &a4, 1, err, sizeof err), 409);    /* full: 3 */
    assert_non_null(strstr(err, "full"));
    assert_int_equal(pool_dyn_add(d, fixed, &a4, 1, err, sizeof err), 409);  /* a fixed list */
    assert_non_null(strstr(err, "max_backends"));

    /* One from the file leaves, and may come back. */
    assert_int_equal(pool_dyn_remove(d, app, &a1, err, sizeof err), 0);
    assert_string_equal(members(d, app), "10.0.0.2:80/1,10.0.0.3:80/5");
    assert_int_equal(pool_dyn_remove(d, app, &a1, err, sizeof err), 404);
    assert_int_equal(pool_dyn_add(d, app, &a4, 2, err, sizeof err), 0);
    assert_int_equal(pool_dyn_add(d, app, &a1, 1, err, sizeof err), 409);    /* full again */
    assert_int_equal(pool_dyn_remove(d, app, &a4, err, sizeof err), 0);
    assert_int_equal(pool_dyn_add(d, app, &a1, 1, err, sizeof err), 0);
    assert_string_equal(members(d, app), "10.0.0.1:80/1,10.0.0.2:80/1,10.0.0.3:80/5");

    /* A reload with the same pool keeps the API's changes ... */
    struct sl_config *same = load("10.0.0.1:80, 10.0.0.2:80", "3");
    pool_dyn_configure(d, proxy_conf(same));
    pool_dyn_retain(d, proxy_conf(same));
    assert_string_equal(members(d, &proxy_conf(same)->pools[0]), "10.0.0.1:80/1,10.0.0.2:80/1,10.0.0.3:80/5");
    /* ... one that changed it drops them. */
    struct sl_config *changed = load("10.0.0.1:80", "3");
    pool_dyn_configure(d, proxy_conf(changed));
    pool_dyn_retain(d, proxy_conf(changed));
    assert_string_equal(members(d, &proxy_conf(changed)->pools[0]), "10.0.0.1:80/1");

    pool_dyn_free(d);
    config_free(cfg);
    config_free(same);
    config_free(changed);
    ev_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adds_and_removes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
