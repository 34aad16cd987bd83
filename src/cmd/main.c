/* sluice: one executable, several subcommands. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/ctl.h"
#include "proxy/master.h"
#include "core/version.h"
#include "core/config.h"
#include "l4/l4.h"
#include "l4/l4_conf.h"
#include "proxy/proxy_conf.h"

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
    "  backend POOL ADDRESS weight N|drain|disable|enable\n"
    "                   change a backend at run time through the admin API\n"
    "  l4 -c FILE       run the L4 forwarder (XDP: DR, TUN, NAT, FullNAT) described\n"
    "                   by FILE's l4: section; it stays attached when this exits\n"
    "  l4 detach        take the L4 forwarder off its interfaces (--remove-maps: and\n"
    "                   its pinned maps)\n"
    "  l4 list          show L4 services and reals: state, weight, connections, packets\n"
    "  l4 add-service | remove-service | add-real | remove-real\n"
    "                   change a running L4 forwarder's services and reals\n"
    "  l4 decap --interface IF [--gue-port N]\n"
    "                   on a real server: decapsulate Sluice's TUN (IPIP, GUE) packets\n"
    "  version          print the version\n"
    "  help [COMMAND]   show help for a command\n"
    "\n"
    "Run 'sluice COMMAND --help' for a command's options.\n"
    "Docs: README.md, docs/configuration.md, docs/admin-api.md, docs/l4.md\n";

static const char *usage_proxy =
    "Usage: sluice proxy -c FILE [--workers N] [--pid-file PATH]\n"
    "\n"
    "Run the L7 proxy: a master process that supervises N worker processes\n"
    "(default: one per core, or 'workers' in FILE). Each worker accepts on its\n"
    "own SO_REUSEPORT socket. The admin API (default 127.0.0.1:9900) serves\n"
    "/metrics and /api/.\n"
    "\n"
    "Options:\n"
    "  -c, --config FILE   configuration file (YAML), required\n"
    "  -w, --workers N     number of worker processes, overrides the file\n"
    "  -p, --pid-file PATH write the master's pid to PATH (not started if it cannot)\n"
    "  -h, --help          show this help\n"
    "\n"
    "Signals to the master:\n"
    "  SIGHUP            reload FILE; on error keep running the old configuration\n"
    "  SIGTERM, SIGINT   stop accepting, finish in-flight requests, exit\n"
    "  SIGQUIT           exit now\n";

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
        const struct proxy_conf *pc = proxy_conf(cfg);
        const struct cfg_l4 *l4 = l4_conf(cfg);
        size_t backends = 0;
        for (size_t i = 0; i < pc->n_pools; i++)
            backends += pc->pools[i].n_backends;
        printf("%s: ok (%zu listener%s, %zu pool%s, %zu backend%s", path, pc->n_listeners,
               pc->n_listeners == 1 ? "" : "s", pc->n_pools, pc->n_pools == 1 ? "" : "s", backends,
               backends == 1 ? "" : "s");
        if (l4->present)
            printf(", %zu L4 service%s", l4->n_services, l4->n_services == 1 ? "" : "s");
        printf(")\n");
    }
    config_free(cfg);
    return 0;
}

static int cmd_proxy(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"workers", required_argument, NULL, 'w'},
        {"pid-file", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    struct master_options mo = {0};
    int c;
    while ((c = getopt_long(argc, argv, "c:w:p:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': mo.config_path = optarg; break;
        case 'w': {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*end || n < 1 || n > 256) {
                fprintf(stderr, "sluice proxy: --workers must be an integer from 1 to 256, got \"%s\"\n", optarg);
                return 2;
            }
            mo.workers = (uint32_t)n;
            break;
        }
        case 'p': mo.pid_file = optarg; break;
        case 'h': fputs(usage_proxy, stdout); return 0;
        default: fputs(usage_proxy, stderr); return 2;
        }
    }
    if (!mo.config_path) {
        fprintf(stderr, "sluice proxy: -c FILE is required\n\n%s", usage_proxy);
        return 2;
    }
    return master_run(&mo);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_main, stderr);
        return 2;
    }
    config_register_section(&proxy_conf_section);
    config_register_section(&l4_conf_section);
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
        fputs(usage_main, stdout);
        return 0;
    }
    if (!strcmp(cmd, "help")) {
        if (argc > 2 && !strcmp(argv[2], "proxy"))
            fputs(usage_proxy, stdout);
        else if (argc > 2 && !strcmp(argv[2], "check"))
            fputs(usage_check, stdout);
        else if (argc > 2 && !strcmp(argv[2], "l4"))
            l4_usage(stdout);
        else if (argc > 2 && (!strcmp(argv[2], "status") || !strcmp(argv[2], "pools") || !strcmp(argv[2], "backend")))
            ctl_usage(stdout);
        else
            fputs(usage_main, stdout);
        return 0;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
        printf("sluice %s\n", SLUICE_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "proxy"))
        return cmd_proxy(argc - 1, argv + 1);
    if (!strcmp(cmd, "check"))
        return cmd_check(argc - 1, argv + 1);
    if (!strcmp(cmd, "l4"))
        return l4_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "status") || !strcmp(cmd, "pools") || !strcmp(cmd, "backend"))
        return ctl_main(cmd, argc - 1, argv + 1);
    fprintf(stderr, "sluice: unknown command \"%s\"\n\n%s", cmd, usage_main);
    return 2;
}
