/* `sluice l4` argument parsing and `sluice l4 list`. */
#include "l4/l4.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "l4/daemon.h"
#include "l4/decap.h"
#include "l4/loader.h"
#include "l4/stats.h"

void l4_usage(FILE *out)
{
    fputs("Usage: sluice l4 -c FILE [--pin-dir DIR]\n"
          "       sluice l4 list [-c FILE] [--pin-dir DIR]\n"
          "       sluice l4 decap --interface IF [--detach]   (real servers: TUN decap; see --help)\n"
          "\n"
          "Run the L4 forwarder (XDP) described by the l4: section of FILE: load it,\n"
          "attach it in native XDP mode to l4.interfaces, keep its maps pinned in DIR\n"
          "(default " L4_PIN_DIR ") so that a restart keeps established flows,\n"
          "health-check the reals and serve the admin API. Needs root.\n"
          "\n"
          "'list' prints the services and reals with state, weight, share of the\n"
          "Maglev table, packets and bytes (like 'ipvsadm -Ln --stats'), read from the\n"
          "pinned maps. With -c the reals are named and numbered as FILE says.\n"
          "\n"
          "Options:\n"
          "  -c, --config FILE   configuration file (YAML)\n"
          "  -P, --pin-dir DIR   bpffs directory of the pinned maps\n"
          "  -h, --help          show this help\n"
          "\n"
          "Signals: SIGTERM, SIGINT detach and exit (maps stay pinned).\n"
          "Docs: docs/l4.md\n",
          out);
}

static int cmd_list(const char *config_path, const char *pin_dir)
{
    struct sl_config *cfg = NULL;
    if (config_path) {
        struct config_errors errs = { 0 };
        cfg = config_load(config_path, &errs);
        if (!cfg) {
            for (size_t i = 0; i < errs.n; i++)
                fprintf(stderr, "%s\n", errs.lines[i]);
            config_errors_free(&errs);
            return 1;
        }
        if (!cfg->l4.present) {
            fprintf(stderr, "sluice l4 list: %s has no l4: section\n", config_path);
            config_free(cfg);
            return 1;
        }
    }
    static const char *const names[] = { "vips", "reals", "maglev", "vip_stats", "real_stats", "reasons" };
    int fd[6];
    int rc = 1;
    for (size_t i = 0; i < 6; i++)
        fd[i] = -1;
    for (size_t i = 0; i < 6; i++) {
        fd[i] = l4_open_pinned(pin_dir, names[i]);
        if (fd[i] < 0) {
            fprintf(stderr, "sluice l4 list: cannot open %s/%s: %s (has 'sluice l4' run on this host?)\n", pin_dir,
                    names[i], strerror(errno));
            goto out;
        }
    }
    struct l4_fds fds = { fd[0], fd[1], fd[2], fd[3], fd[4], fd[5] };
    struct l4_snapshot snap;
    char err[160];
    if (l4_snapshot_build(&snap, cfg ? &cfg->l4 : NULL, &fds, 0, err, sizeof err) < 0) {
        fprintf(stderr, "sluice l4 list: %s\n", err);
        goto out;
    }
    char *text = l4_snapshot_render_list(&snap, pin_dir);
    if (text)
        fputs(text, stdout);
    free(text);
    l4_snapshot_free(&snap);
    rc = text ? 0 : 1;
out:
    for (size_t i = 0; i < 6; i++)
        if (fd[i] >= 0)
            close(fd[i]);
    config_free(cfg);
    return rc;
}

int l4_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"pin-dir", required_argument, NULL, 'P'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    if (argc > 1 && strcmp(argv[1], "decap") == 0) return l4_decap_main(argc - 1, argv + 1); /* l4/decap.h */
    bool list = argc > 1 && strcmp(argv[1], "list") == 0;
    if (list) {
        argc--;
        argv++;
    }
    const char *path = NULL, *pin_dir = L4_PIN_DIR;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:P:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'P': pin_dir = optarg; break;
        case 'h': l4_usage(stdout); return 0;
        default: l4_usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sluice l4: unexpected argument \"%s\"\n\n", argv[optind]);
        l4_usage(stderr);
        return 2;
    }
    if (list)
        return cmd_list(path, pin_dir);
    if (!path) {
        fprintf(stderr, "sluice l4: -c FILE is required\n\n");
        l4_usage(stderr);
        return 2;
    }
    struct l4_run_options o = { .config_path = path, .pin_dir = pin_dir };
    return l4_daemon_run(&o);
}
