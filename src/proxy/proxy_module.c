/* The proxy's module record (core/module.h): its config section, the
 * `sluice proxy` verb, its part of `sluice check`'s summary, and the admin
 * routes and metric families its master mounts. */
#include "proxy/proxy_module.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "proxy/master.h"
#include "proxy/proxy_conf.h"

static const char *usage_proxy =
    "Usage: sluice proxy -c FILE [--workers N] [--pid-file PATH] [--allow-shared-listen]\n"
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
    "      --allow-shared-listen\n"
    "                      start even when another process (a running Sluice) serves\n"
    "                      a listener's address; by default that is refused, since\n"
    "                      SO_REUSEPORT would silently split the traffic between them\n"
    "  -h, --help          show this help\n"
    "\n"
    "Signals to the master:\n"
    "  SIGHUP            reload FILE; on error keep running the old configuration\n"
    "  SIGTERM, SIGINT   stop accepting, finish in-flight requests, exit\n"
    "  SIGQUIT           exit now\n"
    "  SIGUSR1           reopen log.file and the access logs (after logrotate)\n"
    "\n"
    "With 'user' in FILE the master stays root (to bind ports on reload and\n"
    "reopen logs) and the workers run as that user.\n";

static void proxy_usage(FILE *out)
{
    fputs(usage_proxy, out);
}

/* sluice proxy -c FILE [--workers N] [--pid-file PATH] */
static int proxy_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"workers", required_argument, NULL, 'w'},
        {"pid-file", required_argument, NULL, 'p'},
        {"allow-shared-listen", no_argument, NULL, 'S'},
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
        case 'S': mo.allow_shared_listen = true; break;
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

/* "2 listeners, 1 pool, 3 backends"; nothing for a file with no proxy part
 * (an agent's or a registry's file), so its line names only what it has. */
static void proxy_check_summary(const struct sl_config *cfg, struct strbuf *out)
{
    const struct proxy_conf *pc = proxy_conf(cfg);
    if (pc->n_listeners == 0 && pc->n_pools == 0)
        return;
    size_t backends = 0, discovered = 0;
    for (size_t i = 0; i < pc->n_pools; i++) {
        backends += pc->pools[i].n_backends;
        discovered += pc->pools[i].discovery != NULL;
    }
    strbuf_printf(out, "%zu listener%s, %zu pool%s, %zu backend%s", pc->n_listeners, pc->n_listeners == 1 ? "" : "s",
                  pc->n_pools, pc->n_pools == 1 ? "" : "s", backends, backends == 1 ? "" : "s");
    if (discovered)
        strbuf_printf(out, " (%zu pool%s from discovery)", discovered, discovered == 1 ? "" : "s");
}

static const struct config_section *const proxy_sections[] = { &proxy_conf_section, NULL };

static const struct sl_verb proxy_verbs[] = {
    { "proxy", proxy_run, proxy_usage },
    { NULL, NULL, NULL },
};

const struct sl_module proxy_module = {
    .name = "proxy",
    .sections = proxy_sections,
    .verbs = proxy_verbs,
    .check_summary = proxy_check_summary,
    .admin = master_admin,
};
