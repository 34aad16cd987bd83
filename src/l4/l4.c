/* `sluice l4` argument parsing and `sluice l4 list`. */
#include "l4/l4.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "core/admin_client.h"
#include "lib/addr.h"
#include "core/config.h"
#include "l4/l4_conf.h"
#include "l4/daemon.h"
#include "l4/decap.h"
#include "l4/loader.h"
#include "l4/stats.h"

void l4_usage(FILE *out)
{
    fputs("Usage: sluice l4 -c FILE [--pin-dir DIR] [--force]\n"
          "       sluice l4 detach [--pin-dir DIR] [--remove-maps]\n"
          "       sluice l4 list [-c FILE | --admin ADDR] [--pin-dir DIR]\n"
          "       sluice l4 add-service [-c FILE | --admin ADDR] JSON\n"
          "       sluice l4 remove-service [-c FILE | --admin ADDR] NAME\n"
          "       sluice l4 add-real [-c FILE | --admin ADDR] NAME ADDRESS [WEIGHT]\n"
          "       sluice l4 remove-real [-c FILE | --admin ADDR] NAME ADDRESS\n"
          "       sluice l4 decap --interface IF [--detach]   (real servers: TUN decap; see --help)\n"
          "\n"
          "Run the L4 forwarder (XDP) described by the l4: section of FILE: load it,\n"
          "fill its maps, pinned in DIR (default " L4_PIN_DIR "), attach it in native\n"
          "XDP mode to l4.interfaces through BPF links pinned in DIR/links,\n"
          "health-check the reals and serve the admin API. Needs root.\n"
          "\n"
          "The forwarder stays attached when sluice l4 exits: established flows go on\n"
          "from the pinned maps while no daemon runs (no health checks then), and the\n"
          "next run swaps its program into the same links, with no moment without a\n"
          "forwarder. Interfaces that left l4.interfaces are detached then. An\n"
          "interface with another XDP program is refused unless --force (which takes\n"
          "that program off first).\n"
          "\n"
          "'detach' takes the forwarder off every interface whose link is pinned in\n"
          "DIR/links and removes those pins (stop sluice l4 first; it refuses while one\n"
          "runs with DIR). The maps stay, so a later start still keeps the flows it\n"
          "can; --remove-maps also removes them (a fresh start).\n"
          "\n"
          "'list' prints the services and reals with state, weight, share of the\n"
          "Maglev table, active and inactive connections, packets and bytes (like\n"
          "'ipvsadm -Ln --stats'). With -c FILE or --admin it asks the running\n"
          "`sluice l4` through its admin API (weights and states as it sees them,\n"
          "API changes included); otherwise, or when nothing answers there, it reads\n"
          "the pinned maps (weights are then unknown).\n"
          "\n"
          "The other verbs change the running forwarder through its admin API: NAME\n"
          "is PROTO:VIP:PORT (tcp:10.0.0.100:80), JSON a service as in l4.services\n"
          "('{\"vip\": \"10.0.0.100:80\", \"mode\": \"dr\", \"reals\": [\"10.0.0.11\"]}').\n"
          "A service with discovery: takes its reals from a registry service and\n"
          "follows it (add-real and remove-real are refused there: change the registry).\n"
          "Weight and drain: sluice backend -c FILE NAME ADDRESS weight N | drain.\n"
          "\n"
          "Options:\n"
          "  -c, --config FILE   configuration file (YAML)\n"
          "  -a, --admin ADDR    admin API of the running sluice l4 (default: admin.listen\n"
          "                      of -c FILE)\n"
          "  -P, --pin-dir DIR   bpffs directory of the pinned maps and links\n"
          "  -f, --force         replace an XDP program on l4.interfaces that is not\n"
          "                      this forwarder (or one attached from another DIR)\n"
          "  -R, --remove-maps   detach: also remove the pinned maps\n"
          "  -h, --help          show this help\n"
          "\n"
          "Signals: SIGHUP reloads FILE (services and reals as the file says; flows on\n"
          "reals that stay keep their real); SIGTERM, SIGINT exit and leave the\n"
          "forwarder attached ('sluice l4 detach' takes it off).\n"
          "Docs: docs/l4.md\n",
          out);
}

/* The admin address: --admin, else -c FILE's admin.listen (if on). */
static int admin_of(const char *admin_text, const char *config_path, struct sl_addr *out, bool *have)
{
    const char *why;
    *have = false;
    if (admin_text) {
        if (addr_parse(admin_text, out, &why) < 0) {
            fprintf(stderr, "sluice l4: --admin %s: %s\n", admin_text, why);
            return -1;
        }
        *have = true;
        return 0;
    }
    if (!config_path)
        return 0;
    struct sl_config *cfg = admin_client_load_config(config_path);
    if (!cfg) {
        return -1;
    }
    if (!l4_conf(cfg)->present) {
        fprintf(stderr, "sluice l4: %s has no l4: section\n", config_path);
        config_free(cfg);
        return -1;
    }
    *out = cfg->admin_addr;
    *have = cfg->admin_enabled;
    config_free(cfg);
    return 0;
}

static int list_from_maps(const char *pin_dir)
{
    static const char *const names[] = { "vips", "reals", "maglev", "vip_stats", "real_stats", "reasons",
                                         "l4_config", "conn", "conn_shared", "nat" };
    enum { N_REQUIRED = 6, N = 10 };
    int fd[N];
    int rc = 1;
    for (size_t i = 0; i < N; i++)
        fd[i] = -1;
    for (size_t i = 0; i < N; i++) {
        fd[i] = l4_open_pinned(pin_dir, names[i]);
        if (fd[i] < 0 && i < N_REQUIRED) {
            fprintf(stderr, "sluice l4 list: cannot open %s/%s: %s (has 'sluice l4' run on this host?)\n", pin_dir,
                    names[i], strerror(errno));
            goto out;
        }
    }
    struct l4_fds fds = { fd[0], fd[1], fd[2], fd[3], fd[4], fd[5], fd[6], fd[7], fd[8], fd[9] };
    struct l4_snapshot snap;
    char err[160];
    if (l4_snapshot_build(&snap, NULL, 0, &fds, 0, err, sizeof err) < 0) {
        fprintf(stderr, "sluice l4 list: %s\n", err);
        goto out;
    }
    char *text = l4_snapshot_render_list(&snap, pin_dir);
    if (text)
        fputs(text, stdout);
    free(text);
    char links[1024];
    l4_links_describe(pin_dir, links, sizeof links);
    if (links[0])
        printf("\nAttached to %s (links pinned in %s/" L4_LINKS_SUBDIR ")\n", links, pin_dir);
    else
        printf("\nNot attached: no links pinned in %s/" L4_LINKS_SUBDIR "\n", pin_dir);
    l4_snapshot_free(&snap);
    rc = text ? 0 : 1;
out:
    for (size_t i = 0; i < N; i++)
        if (fd[i] >= 0)
            close(fd[i]);
    return rc;
}

static int cmd_list(const char *admin_text, const char *config_path, const char *pin_dir)
{
    struct sl_addr admin;
    bool have = false;
    if (admin_of(admin_text, config_path, &admin, &have) < 0)
        return 1;
    if (have) {
        struct admin_reply r = {0};
        char err[512];
        if (admin_client_request(&admin, "GET", "/api/l4/list", NULL, &r, err, sizeof err) == 0 && r.status == 200) {
            fwrite(r.body, 1, r.len, stdout);
            free(r.body);
            return 0;
        }
        free(r.body);
        fprintf(stderr, "sluice l4 list: no sluice l4 answers at %s; reading the pinned maps in %s\n", admin.text,
                pin_dir);
    }
    return list_from_maps(pin_dir);
}

static void say_line(const char *line)
{
    printf("sluice l4 detach: %s\n", line);
}

/* `sluice l4 detach`: the links off (and their pins), the maps too if
 * asked. Refused while a sluice l4 runs with the same pin directory. */
static int cmd_detach(const char *pin_dir, bool remove_maps)
{
    char err[600];
    int mounted = l4_ensure_bpffs(pin_dir);
    if (mounted < 0) {
        fprintf(stderr, "sluice l4 detach: no bpffs on /sys/fs/bpf and cannot mount one: %s\n", strerror(errno));
        return 1;
    }
    if (mounted == 1 || access(pin_dir, F_OK) < 0) {
        fprintf(stderr, "sluice l4 detach: nothing pinned in %s (has sluice l4 run with this --pin-dir?)\n", pin_dir);
        return 1;
    }
    int lock = l4_pin_dir_lock(pin_dir, 0, err, sizeof err);
    if (lock < 0) {
        fprintf(stderr, "sluice l4 detach: %s; stop it first (SIGTERM), then detach\n", err);
        return 1;
    }
    libbpf_set_print(l4_libbpf_print);
    int rc = 0;
    int n = l4_links_detach_all(pin_dir, say_line, err, sizeof err);
    if (n < 0) {
        fprintf(stderr, "sluice l4 detach: %s\n", err);
        rc = 1;
    } else if (n == 0) {
        printf("sluice l4 detach: not attached (no links pinned in %s/" L4_LINKS_SUBDIR ")\n", pin_dir);
    }
    if (rc == 0 && remove_maps && l4_remove_pinned_maps(pin_dir, say_line, err, sizeof err) < 0) {
        fprintf(stderr, "sluice l4 detach: %s\n", err);
        rc = 1;
    } else if (rc == 0 && !remove_maps) {
        printf("sluice l4 detach: the maps stay pinned in %s (--remove-maps removes them)\n", pin_dir);
    }
    close(lock);
    return rc;
}

/* add-service, remove-service, add-real, remove-real. */
static int cmd_change(const char *verb, const char *admin_text, const char *config_path, int argc, char **argv)
{
    struct sl_addr admin;
    bool have = false;
    if (admin_of(admin_text, config_path, &admin, &have) < 0)
        return 1;
    if (!have) {
        if (config_path) {
            fprintf(stderr, "sluice l4 %s: %s has the admin API off (admin.listen: off)\n", verb, config_path);
            return 1;
        }
        const char *why;
        addr_parse("127.0.0.1:9900", &admin, &why);
    }
    char path[512];
    const char *method, *send = NULL;
    char *json_body = NULL;
    bool ok_args;
    if (!strcmp(verb, "add-service")) {
        ok_args = argc == 1;
        method = "POST";
        snprintf(path, sizeof path, "/api/l4/services");
        send = ok_args ? argv[0] : NULL;
    } else if (!strcmp(verb, "remove-service")) {
        ok_args = argc == 1;
        method = "DELETE";
        snprintf(path, sizeof path, "/api/l4/services/%s", ok_args ? argv[0] : "");
    } else if (!strcmp(verb, "add-real")) {
        ok_args = argc == 2 || argc == 3;
        method = "POST";
        snprintf(path, sizeof path, "/api/l4/services/%s/reals", ok_args ? argv[0] : "");
        if (ok_args) {
            json_t *j = json_pack("{s:s}", "address", argv[1]);
            if (argc == 3) {
                char *end;
                long w = strtol(argv[2], &end, 10);
                if (*end || w < 0 || w > 1000000) {
                    fprintf(stderr, "sluice l4 add-real: weight must be an integer from 0 to 1000000, got \"%s\"\n",
                            argv[2]);
                    json_decref(j);
                    return 2;
                }
                json_object_set_new(j, "weight", json_integer(w));
            }
            json_body = j ? json_dumps(j, JSON_COMPACT) : NULL;
            json_decref(j);
            send = json_body;
        }
    } else {
        ok_args = argc == 2;
        method = "DELETE";
        snprintf(path, sizeof path, "/api/l4/services/%s/reals/%s", ok_args ? argv[0] : "", ok_args ? argv[1] : "");
    }
    if (!ok_args) {
        fprintf(stderr, "sluice l4 %s: wrong arguments\n\n", verb);
        l4_usage(stderr);
        return 2;
    }
    struct admin_reply r = {0};
    char err[512];
    int rc = admin_client_request(&admin, method, path, send, &r, err, sizeof err);
    free(json_body);
    if (rc < 0) {
        fprintf(stderr, "sluice l4 %s: %s\n", verb, err);
        return 1;
    }
    json_error_t jerr;
    json_t *j = json_loadb(r.body, r.len, 0, &jerr);
    free(r.body);
    int status = r.status;
    if (status >= 300) {
        const char *e = j ? json_string_value(json_object_get(j, "error")) : NULL;
        fprintf(stderr, "sluice l4 %s: %d %s\n", verb, status, e ? e : "(no reason given)");
        json_decref(j);
        return 1;
    }
    if (!strcmp(verb, "add-service") || !strcmp(verb, "add-real"))
        printf("service %s: %s, %s, %zu real%s\n", json_string_value(json_object_get(j, "name")),
               json_string_value(json_object_get(j, "mode")), json_string_value(json_object_get(j, "scheduler")),
               json_array_size(json_object_get(j, "reals")), json_array_size(json_object_get(j, "reals")) == 1 ? "" : "s");
    else
        printf("removed %s\n", json_string_value(json_object_get(j, "removed")));
    json_decref(j);
    return 0;
}

int l4_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"admin", required_argument, NULL, 'a'},
        {"pin-dir", required_argument, NULL, 'P'},
        {"force", no_argument, NULL, 'f'},
        {"remove-maps", no_argument, NULL, 'R'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    if (argc > 1 && strcmp(argv[1], "decap") == 0) return l4_decap_main(argc - 1, argv + 1); /* l4/decap.h */
    static const char *const verbs[] = { "list", "detach", "add-service", "remove-service", "add-real",
                                         "remove-real" };
    const char *verb = NULL;
    for (size_t i = 0; argc > 1 && i < sizeof verbs / sizeof *verbs; i++)
        if (!strcmp(argv[1], verbs[i]))
            verb = verbs[i];
    if (verb) {
        argc--;
        argv++;
    }
    const char *path = NULL, *pin_dir = L4_PIN_DIR, *admin = NULL;
    bool force = false, remove_maps = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:a:P:fRh", opts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'a': admin = optarg; break;
        case 'P': pin_dir = optarg; break;
        case 'f': force = true; break;
        case 'R': remove_maps = true; break;
        case 'h': l4_usage(stdout); return 0;
        default: l4_usage(stderr); return 2;
        }
    }
    bool detach = verb && !strcmp(verb, "detach");
    if (force && verb) {
        fprintf(stderr, "sluice l4 %s: --force is for starting the forwarder (sluice l4 -c FILE --force)\n", verb);
        return 2;
    }
    if (remove_maps && !detach) {
        fprintf(stderr, "sluice l4: --remove-maps goes with detach (sluice l4 detach --pin-dir DIR --remove-maps)\n");
        return 2;
    }
    if (detach && (path || admin)) {
        fprintf(stderr, "sluice l4 detach: takes --pin-dir DIR (the one sluice l4 ran with, default " L4_PIN_DIR
                        ") and --remove-maps, not -c or --admin\n");
        return 2;
    }
    if (verb && strcmp(verb, "list") != 0 && !detach)
        return cmd_change(verb, admin, path, argc - optind, argv + optind);
    if (optind < argc) {
        fprintf(stderr, "sluice l4: unexpected argument \"%s\"\n\n", argv[optind]);
        l4_usage(stderr);
        return 2;
    }
    if (detach)
        return cmd_detach(pin_dir, remove_maps);
    if (verb)
        return cmd_list(admin, path, pin_dir);
    if (!path) {
        fprintf(stderr, "sluice l4: -c FILE is required\n\n");
        l4_usage(stderr);
        return 2;
    }
    struct l4_run_options o = { .config_path = path, .pin_dir = pin_dir, .force = force };
    return l4_daemon_run(&o);
}
