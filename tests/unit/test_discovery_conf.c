/* Unit tests for the discovery: block (src/core/discovery_conf.c): a
 * made-up section "discovery" stands for a tier that puts the block at its
 * root, so errors come out exactly as the file's loader writes them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/config_walk.h"
#include "core/discovery_conf.h"

#include "config_expect.h"

static void *sec_create(void)
{
    struct cfg_discovery *d = calloc(1, sizeof *d);
    if (d)
        discovery_conf_defaults(d);
    return d;
}

static void sec_parse(struct config_ctx *c, void *data, int key, const struct ynode *v)
{
    discovery_conf_parse(c, v, data);
}

static void sec_free(void *data)
{
    if (data)
        discovery_conf_free(data);
    free(data);
}

static const char *const sec_keys[] = { "discovery", NULL };
static const struct config_section sec = {
    .name = "test", .keys = sec_keys, .create = sec_create, .parse = sec_parse, .free = sec_free,
};

static const struct cfg_discovery *disc(const struct sl_config *cfg)
{
    return config_section_data(cfg, &sec);
}

static void test_full_block(void **state)
{
    struct sl_config *cfg = load_ok("discovery:\n"
                                    "  service: web\n"
                                    "  registries: [127.0.0.1:9950, 'http://[::1]:9951', reg.example:9952]\n"
                                    "  datacenter: dc1\n"
                                    "  region: r1\n"
                                    "  cache_dir: /var/lib/sluice/discovery\n"
                                    "  failover_dir: /etc/sluice/failover\n"
                                    "  max_members: 128\n");
    const struct cfg_discovery *d = disc(cfg);
    assert_string_equal(d->service, "web");
    assert_string_equal(d->registries, "127.0.0.1:9950,http://[::1]:9951,reg.example:9952");
    assert_int_equal(d->n_registries, 3);
    assert_string_equal(d->datacenter, "dc1");
    assert_string_equal(d->region, "r1");
    assert_string_equal(d->cache_dir, "/var/lib/sluice/discovery");
    assert_string_equal(d->failover_dir, "/etc/sluice/failover");
    assert_int_equal(d->max_members, 128);
    assert_int_equal(d->line, 2);

    struct cfg_discovery copy;
    assert_int_equal(discovery_conf_copy(&copy, d), 0);
    assert_true(discovery_conf_equal(&copy, d));
    config_set_str(&copy.service, "api");
    assert_false(discovery_conf_equal(&copy, d));
    assert_true(discovery_conf_same_client(&copy, d));
    config_set_str(&copy.region, "r2");
    assert_false(discovery_conf_same_client(&copy, d));
    discovery_conf_free(&copy);
    config_free(cfg);
}

static void test_defaults_and_single_registry(void **state)
{
    struct sl_config *cfg = load_ok("discovery:\n  service: web\n  registries: 10.0.0.1:9950\n");
    const struct cfg_discovery *d = disc(cfg);
    assert_string_equal(d->registries, "10.0.0.1:9950");
    assert_int_equal(d->n_registries, 1);
    assert_null(d->datacenter);
    assert_null(d->cache_dir);
    assert_int_equal(d->max_members, DISCOVERY_MAX_MEMBERS_DEFAULT);
    config_free(cfg);

    /* A failover directory alone may feed the list. */
    cfg = load_ok("discovery:\n  service: web\n  failover_dir: /etc/sluice/failover\n");
    assert_null(disc(cfg)->registries);
    config_free(cfg);
}

static void test_errors(void **state)
{
    expect_error("discovery:\n  registries: [127.0.0.1:9950]\n",
                 "t.yaml:2: discovery: missing required key \"service\"");
    expect_error("discovery:\n  service: web\n",
                 "t.yaml:2: discovery: missing required key \"registries\" (or a failover_dir to take the list from)");
    expect_error("discovery:\n  service: web\n  registries: [127.0.0.1:9950, 'nope']\n",
                 "t.yaml:3: discovery.registries[1]: expected a registry address HOST:PORT or http://HOST:PORT, "
                 "got \"nope\"");
    expect_error("discovery:\n  service: web\n  registries: [127.0.0.1:0]\n",
                 "t.yaml:3: discovery.registries[0]: expected a registry address HOST:PORT or http://HOST:PORT, "
                 "got \"127.0.0.1:0\"");
    expect_error("discovery:\n  service: web\n  registries: []\n",
                 "t.yaml:3: discovery.registries: at least one registry address is required");
    expect_error("discovery:\n  service: 'w b'\n  registries: 127.0.0.1:9950\n",
                 "t.yaml:2: discovery.service: expected a name of 1 to 64 characters from A-Z a-z 0-9 _ . -, "
                 "got \"w b\"");
    expect_error("discovery:\n  service: web\n  registries: 127.0.0.1:9950\n  max_members: 0\n",
                 "t.yaml:4: discovery.max_members: expected an integer from 1 to 4096, got \"0\"");
    expect_error("discovery:\n  service: web\n  registries: 127.0.0.1:9950\n  cache_dir: ''\n",
                 "t.yaml:4: discovery.cache_dir: expected a directory path, got \"\"");
    static const char *const misspelt[] = {
        "t.yaml:3: discovery.registry: unknown key",
        "t.yaml:2: discovery: missing required key \"registries\" (or a failover_dir to take the list from)",
    };
    expect_errors("discovery:\n  service: web\n  registry: 127.0.0.1:9950\n", misspelt, 2);
}

int main(void)
{
    config_register_section(&sec);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_block),
        cmocka_unit_test(test_defaults_and_single_registry),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
