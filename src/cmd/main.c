/* sluice: one executable, several subcommands.
 *
 * The tiers are modules (core/module.h), listed here by hand: each brings
 * its config sections (registered before any file is read), its verbs
 * (`sluice proxy`, `sluice l4`) and its part of `sluice check`'s summary.
 * The verbs of the executable itself are check, version, help and the
 * admin API clients status, pools and backend (cmd/ctl.c), which speak to
 * whichever daemon answers.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent_module.h"
#include "cmd/ctl.h"
#include "core/config.h"
#include "core/module.h"
#include "core/version.h"
#include "ha/ha_module.h"
#include "l4/l4_module.h"
#include "lib/strbuf.h"
#include "proxy/proxy_module.h"
#include "registry/registry_module.h"

static const struct sl_module *const modules[] = {
    &proxy_module,
    &l4_module,
    &registry_module,
    &agent_module,
    &ha_module,
    NULL,
};

static const char *usage_main =
    "Usage: sluice COMMAND [OPTIONS]\n"
    "\n"
    "Sluice is a load-balancing suite: an L7 HTTP/TCP/UDP proxy with health\n"
    "checks, runtime changes and Prometheus metrics, and an XDP L4 forwarder.\n"
    "\n"
    "Commands:\n"
    "  proxy -c FILE    run the L7 proxy (HTTP/1.1, TCP and UDP) described by FILE\n"
    "  check -c FILE    validate a configuration file and print every error\n"
    "  status           show a running proxy's master, workers and reloads\n"
    "  pools [POOL]     show pools and backends: state, weights, counters\n"
    "  backend POOL ADDRESS weight N|drain|disable|enable|add [WEIGHT]|remove\n"
    "                   change, add or remove a backend at run time through the admin API\n"
    "  l4 -c FILE       run the L4 forwarder (XDP: DR, TUN, NAT, FullNAT) described\n"
    "                   by FILE's l4: section; it stays attached when this exits\n"
    "  l4 detach        take the L4 forwarder off its interfaces (--remove-maps: and\n"
    "                   its pinned maps)\n"
    "  l4 list          show L4 services and reals: state, weight, connections, packets\n"
    "  l4 add-service | remove-service | add-real | remove-real\n"
    "                   change a running L4 forwarder's services and reals\n"
    "  l4 decap --interface IF [--gue-port N]\n"
    "                   on a real server: decapsulate Sluice's TUN (IPIP, GUE) packets\n"
    "  registry -c FILE run a registry node (services, instances, health checks, an\n"
    "                   HTTP API and DNS) described by FILE's registry: section\n"
    "  ha config|status|drain|undrain|preempt\n"
    "                   HA (the ha: section): the BIRD configuration Sluice writes; a\n"
    "                   running node's BGP/BFD sessions and announced VIPs; drain it\n"
    "  agent -c FILE    run the local DNS agent: the registry's names answered on this\n"
    "                   host from libsluice's lists, the rest forwarded (agent: section)\n"
    "  version          print the version\n"
    "  help [COMMAND]   show help for a command\n"
    "\n"
    "Run 'sluice COMMAND --help' for a command's options.\n"
    "Docs: README.md, docs/configuration.md, docs/admin-api.md, docs/l4.md, docs/ha.md\n";

static const char *usage_check =
    "Usage: sluice check -c FILE\n"
    "\n"
    "Validate a configuration file, like 'nginx -t'. Prints every error as\n"
    "FILE:LINE: key.path: reason and exits 1, or prints a summary and exits 0.\n"
    "log.file and access logs are opened as the daemon would open them (a file\n"
    "that did not exist is removed again; nothing is truncated).\n"
    "\n"
    "Options:\n"
    "  -c, --config FILE   configuration file (YAML), required\n"
    "  -q, --quiet         print nothing when the file is valid\n"
    "  -h, --help          show this help\n";

static int cmd_check(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    const char *path = NULL;
    int quiet = 0, c;
    while ((c = getopt_long(argc, argv, "c:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'q': quiet = 1; break;
        case 'h': fputs(usage_check, stdout); return 0;
        default: fputs(usage_check, stderr); return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "sluice check: -c FILE is required\n\n%s", usage_check);
        return 2;
    }
    struct config_errors errs = {0};
    struct sl_config *cfg = config_load(path, &errs);
    /* A valid file must also name files the daemon can open; check opens
     * them as the daemon would and leaves nothing behind. */
    if (cfg && config_check_files(cfg, CONFIG_FILES_ALL, &errs)) {
        config_free(cfg);
        cfg = NULL;
    }
    if (!cfg) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.lines[i]);
        fprintf(stderr, "%s: %zu error%s\n", path, errs.n, errs.n == 1 ? "" : "s");
        config_errors_free(&errs);
        return 1;
    }
    if (!quiet) {
        /* "FILE: ok (2 listeners, 1 pool, 3 backends, 1 L4 service)": each
         * module's part, those with something to say. */
        struct strbuf parts = { 0 };
        for (size_t m = 0; modules[m]; m++) {
            if (!modules[m]->check_summary)
                continue;
            struct strbuf one = { 0 };
            modules[m]->check_summary(cfg, &one);
            if (one.len)
                strbuf_printf(&parts, "%s%s", parts.len ? ", " : "", one.p);
            strbuf_free(&one);
        }
        char *summary = strbuf_finish(&parts, NULL);
        if (summary && *summary)
            printf("%s: ok (%s)\n", path, summary);
        else
            printf("%s: ok\n", path);
        free(summary);
    }
    config_free(cfg);
    return 0;
}

/* The module verb called `name`, or NULL. */
static const struct sl_verb *find_verb(const char *name)
{
    for (size_t m = 0; modules[m]; m++)
        for (const struct sl_verb *v = modules[m]->verbs; v && v->name; v++)
            if (strcmp(v->name, name) == 0)
                return v;
    return NULL;
}

static bool is_ctl_verb(const char *name)
{
    return !strcmp(name, "status") || !strcmp(name, "pools") || !strcmp(name, "backend");
}

/* Every module's config sections, before any file is read. */
static void register_sections(void)
{
    for (size_t m = 0; modules[m]; m++) {
        for (size_t i = 0; modules[m]->sections && modules[m]->sections[i]; i++) {
            if (config_register_section(modules[m]->sections[i]) < 0) {
                fprintf(stderr, "sluice: module %s: config section %s clashes with another\n", modules[m]->name,
                        modules[m]->sections[i]->name);
                exit(70);
            }
        }
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_main, stderr);
        return 2;
    }
    register_sections();
    /* The core walks the list for companions (core/module.h: attach). */
    module_list_set(modules);
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
        fputs(usage_main, stdout);
        return 0;
    }
    if (!strcmp(cmd, "help")) {
        const struct sl_verb *v = argc > 2 ? find_verb(argv[2]) : NULL;
        if (v)
            v->usage(stdout);
        else if (argc > 2 && !strcmp(argv[2], "check"))
            fputs(usage_check, stdout);
        else if (argc > 2 && is_ctl_verb(argv[2]))
            ctl_usage(stdout);
        else
            fputs(usage_main, stdout);
        return 0;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
        printf("sluice %s\n", SLUICE_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "check"))
        return cmd_check(argc - 1, argv + 1);
    if (is_ctl_verb(cmd))
        return ctl_main(cmd, argc - 1, argv + 1);
    const struct sl_verb *v = find_verb(cmd);
    if (v)
        return v->run(argc - 1, argv + 1);
    fprintf(stderr, "sluice: unknown command \"%s\"\n\n%s", cmd, usage_main);
    return 2;
}
