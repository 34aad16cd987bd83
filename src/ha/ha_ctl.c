/* `sluice ha status|drain|undrain|preempt`: the running daemon's HA
 * companion through its admin API (GET /api/ha, POST
 * /api/ha/drain|undrain|preempt). The
 * admin address comes from --admin ADDR, else -c FILE's admin.listen,
 * else 127.0.0.1:9900, as for `sluice status`. */
#include "ha/ha_ctl.h"

#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/admin_client.h"
#include "core/config.h"

void ha_ctl_usage(FILE *out, const char *sub)
{
    fprintf(out,
            "Usage: sluice ha %s [--admin ADDR | -c FILE]%s\n"
            "\n"
            "%s\n"
            "\n"
            "Options:\n"
            "  -a, --admin ADDR    admin API of the running sluice l4 or sluice proxy\n"
            "                      (default: admin.listen of -c FILE, else 127.0.0.1:9900)\n"
            "  -c, --config FILE   read the admin address from this configuration\n"
            "%s"
            "  -h, --help          show this help\n"
            "\n"
            "Docs: docs/ha.md\n",
            sub, !strcmp(sub, "status") ? " [--json]" : "",
            !strcmp(sub, "status")    ? "Show the node's HA state: BGP and BFD sessions, the addresses announced\n"
                                        "(with their AS-path prepends) and those withdrawn, with the reason."
            : !strcmp(sub, "drain")   ? "Withdraw this node's VIPs and stand-in addresses from the routers (its\n"
                                        "own FullNAT local addresses stay, for the flows it still holds). The\n"
                                        "daemon keeps forwarding what still reaches it. Lasts until undrain or\n"
                                        "a restart."
            : !strcmp(sub, "preempt") ? "With ha.preempt false: stop holding VIPs behind a worse zone and\n"
                                        "announce them with this node's own priority now, so the routers\n"
                                        "move their traffic back here (no new hold for 5 s)."
                                      : "Announce this node's VIPs again after a drain.",
            !strcmp(sub, "status") ? "  -j, --json          print the API's JSON as is\n" : "");
}

/* The admin address from the options. Returns 0, or the exit status. */
static int admin_address(const char *sub, const char *admin_text, const char *config, struct sl_addr *out)
{
    const char *why;
    if (admin_text) {
        if (addr_parse(admin_text, out, &why) < 0) {
            fprintf(stderr, "sluice ha %s: --admin %s: %s\n", sub, admin_text, why);
            return 2;
        }
        return 0;
    }
    if (config) {
        struct sl_config *cfg = admin_client_load_config(config);
        if (!cfg) {
            return 1;
        }
        bool on = cfg->admin_enabled;
        *out = cfg->admin_addr;
        config_free(cfg);
        if (!on) {
            fprintf(stderr, "sluice ha %s: %s has admin.listen: off; give --admin ADDR\n", sub, config);
            return 2;
        }
        return 0;
    }
    addr_parse("127.0.0.1:9900", out, &why);
    return 0;
}

/* The JSON answer, or NULL (said on stderr). */
static json_t *call(const struct sl_addr *admin, const char *method, const char *path)
{
    char err[512];
    int status;
    json_t *j = admin_client_json(admin, method, path, NULL, &status, err, sizeof err);
    if (!j && status == 404 && !strcmp(path, "/api/ha"))
        fprintf(stderr, "sluice ha: the daemon at %s runs no HA (its file has no ha: section)\n", admin->text);
    else if (!j)
        fprintf(stderr, "sluice ha: %s\n", err);
    return j;
}

static const char *str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static void print_owners(json_t *owners)
{
    size_t i;
    json_t *o;
    json_array_foreach(owners, i, o) printf("%s%s", i ? ", " : "", str(o, "owner"));
}

/* One line per probed port: "probe :80 serving, last ok (us), through us 12 ok, 0 failed". */
static void print_probe(json_t *probe)
{
    size_t i;
    json_t *p;
    json_array_foreach(probe, i, p) {
        json_t *through = json_object_get(p, "through_us");
        const char *last = str(p, "last_result");
        printf("      probe :%lld %s, last %s%s%s%s, through this node %lld ok, %lld failed\n",
               (long long)json_integer_value(json_object_get(p, "port")), str(p, "state"), last[0] ? last : "-",
               last[0] ? " (" : "", last[0] ? str(p, "last_path") : "", last[0] ? ")" : "",
               (long long)json_integer_value(json_object_get(through, "ok")),
               (long long)json_integer_value(json_object_get(through, "failed")));
    }
}

static long long num(json_t *o, const char *key)
{
    return (long long)json_integer_value(json_object_get(o, key));
}

/* The sync peers of the same daemon (`sluice l4` with l4.sync: its
 * /api/l4/sync), which keep the NAT and FullNAT flows a failover moves:
 * part of the group's state an operator checks with the sessions. Nothing
 * when the daemon has none (a proxy, no l4.sync). */
static void print_sync(const struct sl_addr *admin)
{
    char err[256];
    int code = 0;
    json_t *j = admin_client_json(admin, "GET", "/api/l4/sync", NULL, &code, err, sizeof err);
    if (!j)
        return;
    printf("sync peers (l4.sync on %s):\n", str(j, "listen"));
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(j, "peers"), i, p) {
        long long rejected = 0;
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(p, "rejected_entries"), k, v)
            rejected += (long long)json_integer_value(v);
        json_t *heard = json_object_get(p, "last_heard_ms_ago");
        char ago[32];
        if (json_is_integer(heard))
            snprintf(ago, sizeof ago, "%lld ms ago", (long long)json_integer_value(heard));
        else
            snprintf(ago, sizeof ago, "never");
        printf("  %-40s heard %-12s entries sent %lld, received %lld, imported %lld, refused %lld, returned %lld; "
               "datagrams missed %lld\n",
               str(p, "address"), ago, num(p, "sent_entries"), num(p, "received_entries"), num(p, "imported_entries"),
               rejected, num(p, "returned_entries"), num(p, "missed_datagrams"));
    }
    json_decref(j);
}

static void print_status(json_t *j)
{
    json_t *bird = json_object_get(j, "bird");
    printf("node %s, zone %s, priority %lld%s%s\n", str(j, "node"), str(j, "zone"),
           (long long)json_integer_value(json_object_get(j, "priority")),
           json_is_false(json_object_get(j, "preempt")) ? ", preempt false" : "",
           json_is_true(json_object_get(j, "drained")) ? ", DRAINED" : "");
    long long restarts = (long long)json_integer_value(json_object_get(bird, "restarts"));
    printf("BIRD %s on %s: %s%s%s", str(bird, "mode"), str(bird, "socket"),
           json_is_true(json_object_get(bird, "up")) ? "up" : "not answering",
           json_is_true(json_object_get(bird, "up")) ? "" : ": ",
           json_is_true(json_object_get(bird, "up")) ? "" : str(bird, "error"));
    if (restarts)
        printf(" (found dead and started again %lld time%s)", restarts, restarts == 1 ? "" : "s");
    printf("\n");
    size_t i;
    json_t *s;
    printf("sessions:\n");
    json_array_foreach(json_object_get(j, "sessions"), i, s) {
        json_t *bfd = json_object_get(s, "bfd");
        printf("  %-40s BGP %-12s since %-20s BFD %s\n", str(s, "neighbor"), str(s, "state"), str(s, "since"),
               json_is_string(bfd) ? json_string_value(bfd) : "-");
    }
    printf("announced:\n");
    json_array_foreach(json_object_get(j, "announced"), i, s) {
        printf("  %-40s prepends %-3lld%s ", str(s, "address"),
               (long long)json_integer_value(json_object_get(s, "priority")),
               json_is_true(json_object_get(s, "standin")) ? " stand-in" : "");
        print_owners(json_object_get(s, "owners"));
        printf("\n");
        size_t k;
        json_t *rt;
        json_array_foreach(json_object_get(s, "routers"), k, rt)
            printf("      to %s: prepends %lld, %s\n", str(rt, "neighbor"),
                   (long long)json_integer_value(json_object_get(rt, "priority")), str(rt, "why"));
        print_probe(json_object_get(s, "probe"));
    }
    printf("withdrawn:\n");
    json_array_foreach(json_object_get(j, "withdrawn"), i, s) {
        printf("  %-40s %-28s ", str(s, "address"), str(s, "reason"));
        print_owners(json_object_get(s, "owners"));
        printf("\n");
        print_probe(json_object_get(s, "probe"));
    }
    json_t *probe = json_object_get(j, "probe");
    if (json_is_true(json_object_get(probe, "enabled")))
        printf("probing: on%s%s\n", json_is_string(json_object_get(probe, "warning")) ? "; WARNING: " : "",
               str(probe, "warning"));
}

int ha_ctl_run(int argc, char **argv)
{
    static const struct option opts[] = {
        { "admin", required_argument, NULL, 'a' },
        { "config", required_argument, NULL, 'c' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { 0, 0, 0, 0 },
    };
    const char *sub = argv[0], *admin_text = NULL, *config = NULL;
    bool status = !strcmp(sub, "status");
    int as_json = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, status ? "a:c:jh" : "a:c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'a': admin_text = optarg; break;
        case 'c': config = optarg; break;
        case 'j':
            if (!status) {
                ha_ctl_usage(stderr, sub);
                return 2;
            }
            as_json = 1;
            break;
        case 'h': ha_ctl_usage(stdout, sub); return 0;
        default: ha_ctl_usage(stderr, sub); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sluice ha %s: unexpected argument \"%s\"\n\n", sub, argv[optind]);
        ha_ctl_usage(stderr, sub);
        return 2;
    }
    struct sl_addr admin;
    int rc = admin_address(sub, admin_text, config, &admin);
    if (rc)
        return rc;
    char path[32];
    snprintf(path, sizeof path, status ? "/api/ha" : "/api/ha/%s", sub);
    json_t *j = call(&admin, status ? "GET" : "POST", path);
    if (!j)
        return 1;
    if (as_json) {
        char *text = json_dumps(j, JSON_INDENT(2));
        if (text)
            puts(text);
        free(text);
    } else if (status) {
        print_status(j);
        print_sync(&admin);
    } else if (!strcmp(sub, "preempt")) {
        printf("preempting: %lld hold%s dropped, announcing with priority %lld\n",
               (long long)json_integer_value(json_object_get(j, "released")),
               json_integer_value(json_object_get(j, "released")) == 1 ? "" : "s",
               (long long)json_integer_value(json_object_get(j, "priority")));
    } else {
        bool drained = json_is_true(json_object_get(j, "drained"));
        bool changed = json_is_true(json_object_get(j, "changed"));
        printf("%s%s\n", drained ? "drained" : "undrained", changed ? "" : " (it already was)");
    }
    json_decref(j);
    return 0;
}
