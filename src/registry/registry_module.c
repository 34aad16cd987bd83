/* The registry's module record (core/module.h): the registry: section,
 * the `sluice registry` verb (the daemon, reg_daemon.c), its part of
 * `sluice check`'s summary, and the admin routes and metric families of
 * its daemon. */
#include "registry/registry_module.h"

#include <string.h>

#include "registry/reg_cli.h"
#include "registry/reg_conf.h"
#include "registry/reg_daemon.h"

/* "registry node reg1: 2 services, 3 instances listed" only when the file has a registry: section. */
static void reg_check_summary(const struct sl_config *cfg, struct strbuf *out)
{
    const struct cfg_registry *rc = reg_conf(cfg);
    if (!rc->present)
        return;
    size_t instances = 0;
    for (size_t i = 0; i < rc->n_services; i++)
        instances += rc->services[i].n_instances;
    strbuf_printf(out, "registry node %s: %zu service%s, %zu instance%s listed, %s store", rc->node,
                  rc->n_services, rc->n_services == 1 ? "" : "s", instances, instances == 1 ? "" : "s",
                  reg_store_kind_name(rc->store));
    if (rc->dns.present)
        strbuf_printf(out, ", DNS zone %s", rc->dns.zone);
}

static const struct config_section *const reg_sections[] = { &reg_conf_section, NULL };

/* `sluice registry -c FILE` runs a node; `sluice registry VERB ...` is a
 * client of one (reg_cli.c). */
static void registry_usage(FILE *out)
{
    reg_usage(out);
    fputs("\nClient verbs (a running node's API):\n", out);
    reg_cli_usage(out);
}

static int registry_verb(int argc, char **argv)
{
    if (argc > 1 && reg_cli_is_verb(argv[1]))
        return reg_cli_main(argc - 1, argv + 1);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            registry_usage(stdout);
            return 0;
        }
    }
    return reg_main(argc, argv);
}

static const struct sl_verb reg_verbs[] = {
    { "registry", registry_verb, registry_usage },
    { NULL, NULL, NULL },
};

const struct sl_module registry_module = {
    .name = "registry",
    .sections = reg_sections,
    .verbs = reg_verbs,
    .check_summary = reg_check_summary,
    .admin = reg_daemon_admin,
};
