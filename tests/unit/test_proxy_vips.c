/* Unit tests for proxy/proxy_vips: the proxy master's listeners on the
 * VIP board. Healthy and total come from the shared region (active
 * health, admin state) over every pool a listener sends to; serving needs
 * an open socket held by a running worker; wildcard listeners are left
 * out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "proxy/proxy_vips.h"
#include "proxy/shared.h"

static const char yaml[] = "pools:\n"
                           "  - name: api\n"
                           "    backends: [127.0.0.1:7001, 127.0.0.1:7002]\n"
                           "  - name: static\n"
                           "    backends: [127.0.0.1:7003]\n"
                           "listeners:\n"
                           "  - name: web\n"
                           "    listen: 10.0.0.10:80\n"
                           "    pool: api\n"
                           "    routes:\n"
                           "      - {path_prefix: /s/, pool: static}\n"
                           "      - {path_prefix: /a/, pool: api}\n"
                           "  - {name: any, listen: 0.0.0.0:81, pool: api, protocol: tcp}\n"
                           "  - {name: v6, listen: \"[2001:db8::10]:53\", pool: static, protocol: udp}\n";

static const struct vip_entry *find(const struct vip_board *b, const char *owner)
{
    for (size_t i = 0; i < b->n; i++)
        if (!strcmp(b->entries[i].owner, owner))
            return &b->entries[i];
    return NULL;
}

static void test_listeners_on_the_board(void **state)
{
    struct config_errors errs = { 0 };
    config_register_section(&proxy_conf_section);
    struct sl_config *cfg = config_load_string("inline.yaml", yaml, sizeof yaml - 1, &errs);
    if (!cfg)
        fail_msg("config: %s", errs.n ? errs.lines[0] : "?");
    const struct proxy_conf *pc = proxy_conf(cfg);
    struct shared_state *sh = shared_create(pc, 2);
    assert_non_null(sh);
    /* three listeners, two worker slots each; worker 1 runs */
    int fds[6] = { 5, 6, 7, 8, 9, 10 };
    pid_t pids[2] = { 0, 1234 };
    struct proxy_vips_view v = { .pc = pc, .sh = sh, .fds = fds, .pids = pids, .n_workers = 2 };
    struct vip_board b;
    vip_board_init(&b, NULL);
    proxy_publish_listeners(&b, &v);
    assert_int_equal(b.n, 2);                      /* 0.0.0.0:81 is not announceable */
    assert_null(find(&b, "listener any"));
    const struct vip_entry *web = find(&b, "listener web"), *v6 = find(&b, "listener v6");
    assert_non_null(web);
    assert_non_null(v6);
    char buf[64];
    assert_string_equal(vip_ip_string(&web->addr, buf, sizeof buf), "10.0.0.10");
    assert_string_equal(vip_ip_string(&v6->addr, buf, sizeof buf), "2001:db8::10");
    assert_string_equal(web->source, "proxy");
    assert_int_equal(web->total, 3);               /* api (2) and static (1), api once */
    assert_int_equal(web->healthy, 3);
    assert_true(web->serving);
    assert_int_equal(v6->total, 1);

    /* a backend down, another disabled */
    atomic_store(&sh->backends[0].health, HEALTH_DOWN);
    atomic_store(&sh->backends[2].admin, BACKEND_DISABLED);
    proxy_publish_listeners(&b, &v);
    web = find(&b, "listener web");
    v6 = find(&b, "listener v6");
    assert_int_equal(web->healthy, 1);
    assert_int_equal(web->total, 3);
    assert_int_equal(v6->healthy, 0);

    /* the running worker's socket of v6 closed: v6 not served */
    fds[2 * 2 + 1] = -1;
    proxy_publish_listeners(&b, &v);
    assert_false(find(&b, "listener v6")->serving);
    assert_true(find(&b, "listener web")->serving);
    /* no worker runs: nothing served */
    pids[1] = 0;
    proxy_publish_listeners(&b, &v);
    assert_false(find(&b, "listener web")->serving);
    /* stopping: nothing served, whatever the sockets */
    pids[1] = 1234;
    v.stopping = true;
    proxy_publish_listeners(&b, &v);
    assert_false(find(&b, "listener web")->serving);
    vip_board_fini(&b);
    shared_destroy(sh);
    config_free(cfg);
    config_errors_free(&errs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listeners_on_the_board),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
