/* `sluice ha SUBCOMMAND`: see ha_cmd.h. */
#include "ha/ha_cmd.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "ha/bird_proc.h"
#include "ha/ha_ctl.h"
#include "ha/ha_conf.h"

struct ha_subcommand {
    const char *name;
    int (*run)(int argc, char **argv);   /* argv[0] is the subcommand */
    void (*usage)(FILE *out);
    const char *summary;                 /* one line for `sluice ha --help` */
};

/* ---- sluice ha config ---------------------------------------------------- */

static void config_usage(FILE *out)
{
    fputs("Usage: sluice ha config -c FILE\n"
          "\n"
          "Print the BIRD configuration Sluice writes for FILE's ha: section: a whole\n"
          "bird.conf in mode managed, the fragment your bird.conf includes in mode\n"
          "external. When ha.router_id is not given (mode managed), it is the IPv4\n"
          "address this host would use toward the first IPv4 neighbor, as the daemon\n"
          "finds it.\n"
          "\n"
          "Options:\n"
          "  -c, --config FILE   configuration file (YAML), required\n"
          "  -h, --help          show this help\n"
          "\n"
          "Docs: docs/ha.md\n",
          out);
}

static int config_run(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "help", no_argument, NULL, 'h' },
        { 0, 0, 0, 0 },
    };
    const char *path = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'h': config_usage(stdout); return 0;
        default: config_usage(stderr); return 2;
        }
    }
    if (!path || optind < argc) {
        fprintf(stderr, "sluice ha config: %s\n\n", path ? "unexpected argument" : "-c FILE is required");
        config_usage(stderr);
        return 2;
    }
    struct config_errors errs = { 0 };
    struct sl_config *cfg = config_load(path, &errs);
    if (!cfg) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.lines[i]);
        fprintf(stderr, "%s: %zu error%s\n", path, errs.n, errs.n == 1 ? "" : "s");
        config_errors_free(&errs);
        return 1;
    }
    const struct cfg_ha *h = ha_conf(cfg);
    int rc = 0;
    if (!h->present) {
        fprintf(stderr, "sluice ha config: %s has no ha: section\n", path);
        rc = 1;
    } else {
        char err[512];
        char *text = bird_proc_render(h, path, err, sizeof err);
        if (text)
            fputs(text, stdout);
        else
            fprintf(stderr, "sluice ha config: %s: %s\n", path, err);
        rc = text ? 0 : 1;
        free(text);
    }
    config_free(cfg);
    return rc;
}

/* ---- sluice ha status|drain|undrain|preempt (ha_ctl.c) ---------------------------- */

static void status_usage(FILE *out) { ha_ctl_usage(out, "status"); }
static void drain_usage(FILE *out) { ha_ctl_usage(out, "drain"); }
static void undrain_usage(FILE *out) { ha_ctl_usage(out, "undrain"); }
static void preempt_usage(FILE *out) { ha_ctl_usage(out, "preempt"); }

/* ---- the table ------------------------------------------------------------ */

static const struct ha_subcommand subcommands[] = {
    { "config", config_run, config_usage, "print the BIRD configuration Sluice writes for FILE" },
    { "status", ha_ctl_run, status_usage, "a running node's BGP and BFD sessions, what it announces and why not" },
    { "drain", ha_ctl_run, drain_usage, "withdraw the node's VIPs from the routers (graceful: it keeps forwarding)" },
    { "undrain", ha_ctl_run, undrain_usage, "announce them again" },
    { "preempt", ha_ctl_run, preempt_usage, "ha.preempt false: take the VIPs back now from a worse zone that holds them" },
    { NULL, NULL, NULL, NULL },
};

void ha_usage(FILE *out)
{
    fputs("Usage: sluice ha SUBCOMMAND [OPTIONS]\n"
          "\n"
          "High availability: a node's VIPs announced to the routers over BGP through\n"
          "BIRD (with BFD), zone priorities as AS-path prepends. The announcing runs\n"
          "inside `sluice l4` and `sluice proxy` when their file has an ha: section.\n"
          "\n"
          "Subcommands:\n",
          out);
    for (const struct ha_subcommand *s = subcommands; s->name; s++)
        fprintf(out, "  %-10s %s\n", s->name, s->summary);
    fputs("\nRun 'sluice ha SUBCOMMAND --help' for its options.\n"
          "Docs: docs/ha.md, docs/configuration.md (ha)\n",
          out);
}

int ha_main(int argc, char **argv)
{
    if (argc < 2) {
        ha_usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        ha_usage(stdout);
        return 0;
    }
    for (const struct ha_subcommand *s = subcommands; s->name; s++)
        if (!strcmp(s->name, argv[1]))
            return s->run(argc - 1, argv + 1);
    fprintf(stderr, "sluice ha: unknown subcommand \"%s\"\n\n", argv[1]);
    ha_usage(stderr);
    return 2;
}
