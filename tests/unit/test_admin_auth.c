/* Unit tests for the admin API's gate (src/core/admin_auth.c): the keys
 * admin.token_file, token_reads and read_only, the rule that an API beyond
 * loopback needs a token, and what the gate lets through for a request
 * without headers (admin_handle's). The headers themselves are checked by
 * tests/integration/test_backends_runtime.py with curl. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/admin.h"
#include "core/admin_auth.h"
#include "config_expect.h"

static char token_path[64];

static int setup(void **state)
{
    snprintf(token_path, sizeof token_path, "/tmp/sluice-token-XXXXXX");
    int fd = mkstemp(token_path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "t0ken  \nsecond line\n", 20), 20);
    close(fd);
    return 0;
}

static int teardown(void **state)
{
    unlink(token_path);
    return 0;
}

static void test_token_file_is_its_first_line(void **state)
{
    char yaml[256];
    snprintf(yaml, sizeof yaml, "admin:\n  listen: 0.0.0.0:9900\n  token_file: %s\n  token_reads: true\n",
             token_path);
    struct sl_config *cfg = load_ok(yaml);
    assert_string_equal(cfg->admin_token, "t0ken");
    assert_true(cfg->admin_token_reads);
    assert_false(cfg->admin_read_only);
    config_free(cfg);
}

static void test_beyond_loopback_needs_a_token(void **state)
{
    expect_error("admin:\n  listen: 0.0.0.0:9900\n",
                 "t.yaml:2: admin.listen: 0.0.0.0:9900 is reachable from other hosts: set admin.token_file (a file "
                 "holding the API token), or listen on a loopback address");
    expect_error("admin:\n  listen: \"[::]:9900\"\n",
                 "t.yaml:2: admin.listen: [::]:9900 is reachable from other hosts: set admin.token_file (a file "
                 "holding the API token), or listen on a loopback address");
    config_free(load_ok("admin:\n  listen: 127.0.0.5:9900\n"));
    config_free(load_ok("admin:\n  listen: \"[::1]:9900\"\n"));
    config_free(load_ok("admin:\n  listen: off\n"));
    expect_error("admin:\n  token_file: /nonexistent/sluice.token\n",
                 "t.yaml:2: admin.token_file: cannot open /nonexistent/sluice.token: No such file or directory");
    expect_error("admin:\n  read_only: maybe\n", "t.yaml:2: admin.read_only: expected true or false, got \"maybe\"");
}

static struct admin_reply handle(struct admin_site *site, const char *method, const char *path)
{
    struct admin_reply r;
    admin_handle(site, method, strlen(method), path, strlen(path), NULL, 0, &r);
    return r;
}

static void test_the_gate(void **state)
{
    static struct admin_site site;
    memset(&site, 0, sizeof site);
    struct admin_reply r = handle(&site, "POST", "/api/status");
    assert_int_equal(r.status, 405); /* no gate: routed */
    free(r.body);

    site.auth.token = strdup("t0ken");
    r = handle(&site, "POST", "/api/status");
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(r.body, "Authorization: Bearer TOKEN"));
    free(r.body);
    r = handle(&site, "GET", "/api/status");
    assert_int_equal(r.status, 200);
    free(r.body);
    site.auth.token_reads = true;
    r = handle(&site, "GET", "/metrics");
    assert_int_equal(r.status, 401);
    free(r.body);

    admin_auth_clear(&site.auth);
    site.auth.read_only = true;
    r = handle(&site, "DELETE", "/api/pools/app/backends/127.0.0.1:1");
    assert_int_equal(r.status, 403);
    assert_non_null(strstr(r.body, "read-only"));
    free(r.body);
    r = handle(&site, "GET", "/api/status");
    assert_int_equal(r.status, 200);
    free(r.body);
    admin_auth_clear(&site.auth);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_file_is_its_first_line),
        cmocka_unit_test(test_beyond_loopback_needs_a_token),
        cmocka_unit_test(test_the_gate),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
