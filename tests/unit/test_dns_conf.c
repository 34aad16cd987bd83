/* Unit tests for core/dns_conf (the listen addresses and tcp: block that
 * registry.dns and agent both take) and config_each_item, through
 * config_walk_body so the errors read as the API's do ("path: reason"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "core/dns_conf.h"

#define MAX_LISTEN 3

struct listener {
    struct sl_addr listen[MAX_LISTEN];
    size_t n_listen;
    uint32_t max_conns, idle_ms;
};

enum { K_LISTEN, K_TCP };
static const char *const keys[] = { "listen", "tcp", NULL };

static void field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct listener *l = obj;
    if (key == K_LISTEN)
        dns_conf_listen(c, v, l->listen, MAX_LISTEN, &l->n_listen);
    else
        dns_conf_tcp(c, v, &l->max_conns, &l->idle_ms);
}

static void walk(struct config_ctx *c, const struct ynode *root, void *arg)
{
    config_walk_map(c, root, keys, field, arg);
}

/* 0 with l filled, or -1 with the first error in err. */
static int parse(const char *json, struct listener *l, char *err, size_t errlen)
{
    *l = (struct listener){ .n_listen = 1, .max_conns = DNS_CONF_TCP_MAX_CONNS, .idle_ms = DNS_CONF_TCP_IDLE_MS };
    err[0] = '\0';
    return config_walk_body(json, strlen(json), walk, l, err, errlen);
}

static void test_listen_scalar_and_list(void **state)
{
    (void)state;
    struct listener l;
    char err[256];
    assert_int_equal(parse("{\"listen\": \"127.0.0.1:5353\"}", &l, err, sizeof err), 0);
    assert_int_equal(l.n_listen, 1);
    assert_int_equal(addr_port(&l.listen[0]), 5353);
    assert_int_equal(parse("{\"listen\": [\"127.0.0.1:53\", \"[::1]:54\"]}", &l, err, sizeof err), 0);
    assert_int_equal(l.n_listen, 2);
    assert_int_equal(addr_port(&l.listen[1]), 54);
    assert_int_equal(parse("{\"listen\": []}", &l, err, sizeof err), 0);
    assert_int_equal(l.n_listen, 0);   /* replaced, not added to */
}

static void test_listen_errors(void **state)
{
    (void)state;
    struct listener l;
    char err[256];
    assert_int_equal(parse("{\"listen\": [\"127.0.0.1:53\", \"127.0.0.1:0\"]}", &l, err, sizeof err), -1);
    assert_string_equal(err, "listen[1]: port must be a number from 1 to 65535");
    assert_int_equal(parse("{\"listen\": [\"a:1\", \"b:2\", \"c:3\", \"d:4\"]}", &l, err, sizeof err), -1);
    assert_string_equal(err, "listen: at most 3 listen addresses");
    assert_int_equal(parse("{\"listen\": {\"x\": 1}}", &l, err, sizeof err), -1);
    assert_non_null(strstr(err, "listen: expected a list"));
}

static void test_tcp_block(void **state)
{
    (void)state;
    struct listener l;
    char err[256];
    assert_int_equal(parse("{\"tcp\": {\"max_conns\": 7, \"idle\": \"2s\"}}", &l, err, sizeof err), 0);
    assert_int_equal(l.max_conns, 7);
    assert_int_equal(l.idle_ms, 2000);
    assert_int_equal(parse("{\"tcp\": {}}", &l, err, sizeof err), 0);
    assert_int_equal(l.max_conns, DNS_CONF_TCP_MAX_CONNS);   /* defaults kept */
    assert_int_equal(l.idle_ms, DNS_CONF_TCP_IDLE_MS);
    assert_int_equal(parse("{\"tcp\": {\"max_conns\": 0}}", &l, err, sizeof err), -1);
    assert_non_null(strstr(err, "tcp.max_conns: "));
    assert_int_equal(parse("{\"tcp\": {\"idle\": \"10ms\"}}", &l, err, sizeof err), -1);
    assert_non_null(strstr(err, "tcp.idle: "));
    assert_int_equal(parse("{\"tcp\": {\"idel\": \"1s\"}}", &l, err, sizeof err), -1);
    assert_string_equal(err, "tcp.idel: unknown key");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listen_scalar_and_list),
        cmocka_unit_test(test_listen_errors),
        cmocka_unit_test(test_tcp_block),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
