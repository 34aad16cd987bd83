/* Client verbs that talk to a running proxy's admin API:
 *
 *   sluice status                          the master, its workers, reloads
 *   sluice pools [POOL]                    pools and backends with state and counters
 *   sluice backend POOL ADDR ACTION        weight N | drain | disable | enable
 *
 * The admin address comes from --admin ADDR, else from -c FILE's
 * admin.listen, else 127.0.0.1:9900. A tiny blocking HTTP/1.1 client is
 * enough here: one request, Connection: close, bounded reply.
 */
#include "cmd/ctl.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/addr.h"
#include "core/admin_client.h"
#include "core/config.h"

/* The JSON answer, or NULL (said on stderr). */
static json_t *admin_json(const struct sl_addr *admin, const char *method, const char *path, const char *body)
{
    char err[512];
    json_t *j = admin_client_json(admin, method, path, body, NULL, err, sizeof err);
    if (!j)
        fprintf(stderr, "sluice: %s\n", err);
    return j;
}

static unsigned long long jnum(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (unsigned long long)json_integer_value(v) : 0;
}

static void print_pool(json_t *pool)
{
    printf("pool %s (%s)\n", json_string_value(json_object_get(pool, "name")),
           json_string_value(json_object_get(pool, "algorithm")));
    printf("  %-24s %-11s %6s %6s %10s %6s %10s %8s %8s\n", "backend", "state", "weight", "eff", "requests",
           "active", "5xx", "connfail", "retries");
    size_t i;
    json_t *b;
    json_array_foreach(json_object_get(pool, "backends"), i, b) {
        json_t *c = json_object_get(b, "counters");
        printf("  %-24s %-11s %6llu %6llu %10llu %6llu %10llu %8llu %8llu\n",
               json_string_value(json_object_get(b, "address")), json_string_value(json_object_get(b, "state")),
               jnum(b, "weight"), jnum(b, "effective_weight"), jnum(c, "requests"), jnum(c, "active"),
               jnum(json_object_get(c, "responses"), "5xx"), jnum(c, "connect_failures"), jnum(c, "retries"));
    }
}

static const char *usage_ctl =
    "Usage: sluice status  [--admin ADDR | -c FILE]\n"
    "       sluice pools   [--admin ADDR | -c FILE] [--json] [POOL]\n"
    "       sluice backend [--admin ADDR | -c FILE] POOL ADDRESS weight N|drain|disable|enable\n"
    "\n"
    "Talk to a running 'sluice proxy' through its admin API: show its state,\n"
    "and change a backend's weight or state at run time (every worker applies\n"
    "it within 100 ms; no reload).\n"
    "\n"
    "Options:\n"
    "  -a, --admin ADDR    admin API address (default: admin.listen of -c FILE, else 127.0.0.1:9900)\n"
    "  -c, --config FILE   read the admin address from this configuration\n"
    "  -j, --json          print the API's JSON as is\n"
    "  -h, --help          show this help\n";

void ctl_usage(FILE *out) { fputs(usage_ctl, out); }

int ctl_main(const char *verb, int argc, char **argv)
{
    static const struct option opts[] = {
        {"admin", required_argument, NULL, 'a'},
        {"config", required_argument, NULL, 'c'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    const char *admin_text = NULL, *config = NULL;
    int as_json = 0, c;
    while ((c = getopt_long(argc, argv, "+a:c:jh", opts, NULL)) != -1) {
        switch (c) {
        case 'a': admin_text = optarg; break;
        case 'c': config = optarg; break;
        case 'j': as_json = 1; break;
        case 'h': ctl_usage(stdout); return 0;
        default: ctl_usage(stderr); return 2;
        }
    }
    struct sl_addr admin;
    const char *why;
    if (admin_text) {
        if (addr_parse(admin_text, &admin, &why) < 0) {
            fprintf(stderr, "sluice %s: --admin %s: %s\n", verb, admin_text, why);
            return 2;
        }
    } else if (config) {
        struct config_errors errs = {0};
        struct sl_config *cfg = config_load(config, &errs);
        if (!cfg) {
            for (size_t i = 0; i < errs.n; i++)
                fprintf(stderr, "%s\n", errs.lines[i]);
            config_errors_free(&errs);
            return 1;
        }
        admin = cfg->admin_addr;
        admin_client_use_config(cfg); /* its admin.token_file, if any */
        config_free(cfg);
    } else {
        addr_parse("127.0.0.1:9900", &admin, &why);
    }
    int rest = argc - optind;
    char **args = argv + optind;
    json_t *j = NULL;
    char path[512];
    if (!strcmp(verb, "status")) {
        j = admin_json(&admin, "GET", "/api/status", NULL);
        if (j && !as_json) {
            printf("sluice %s, master pid %llu, up %llus, %llu reloads, %llu worker restarts\nconfig %s\n",
                   json_string_value(json_object_get(j, "version")), jnum(j, "pid"), jnum(j, "uptime_s"),
                   jnum(j, "reloads"), jnum(j, "worker_restarts"),
                   json_string_value(json_object_get(j, "config")));
            size_t i;
            json_t *w;
            json_array_foreach(json_object_get(j, "workers"), i, w)
                printf("worker %llu pid %llu\n", jnum(w, "id"), jnum(w, "pid"));
        }
    } else if (!strcmp(verb, "pools")) {
        if (rest > 1) {
            ctl_usage(stderr);
            return 2;
        }
        snprintf(path, sizeof path, rest ? "/api/pools/%s" : "/api/pools", rest ? args[0] : "");
        j = admin_json(&admin, "GET", path, NULL);
        if (j && !as_json) {
            if (json_is_array(j)) {
                size_t i;
                json_t *p;
                json_array_foreach(j, i, p) print_pool(p);
            } else {
                json_t *list = json_object_get(j, "pools");
                if (json_is_array(list)) {
                    size_t i;
                    json_t *p;
                    json_array_foreach(list, i, p) print_pool(p);
                } else {
                    print_pool(j);
                }
            }
        }
    } else { /* backend */
        if (rest < 3 || (!strcmp(args[2], "weight") && rest != 4) || (strcmp(args[2], "weight") && rest != 3)) {
            ctl_usage(stderr);
            return 2;
        }
        const char *action = args[2];
        if (!strcmp(action, "weight")) {
            char *end;
            long wv = strtol(args[3], &end, 10);
            if (*end || wv < 0 || wv > 1000000) {
                fprintf(stderr, "sluice backend: weight must be an integer from 0 to 1000000, got \"%s\"\n", args[3]);
                return 2;
            }
            char body[64];
            snprintf(body, sizeof body, "{\"weight\": %ld}", wv);
            snprintf(path, sizeof path, "/api/pools/%s/backends/%s", args[0], args[1]);
            j = admin_json(&admin, "PATCH", path, body);
        } else if (!strcmp(action, "drain") || !strcmp(action, "disable") || !strcmp(action, "enable")) {
            snprintf(path, sizeof path, "/api/pools/%s/backends/%s/%s", args[0], args[1], action);
            j = admin_json(&admin, "POST", path, NULL);
        } else {
            fprintf(stderr, "sluice backend: unknown action \"%s\" (weight N, drain, disable, enable)\n", action);
            return 2;
        }
        if (j && !as_json)
            printf("%s in pool %s: state %s, weight %llu, effective weight %llu\n",
                   json_string_value(json_object_get(j, "address")), args[0],
                   json_string_value(json_object_get(j, "state")), jnum(j, "weight"), jnum(j, "effective_weight"));
    }
    if (!j)
        return 1;
    if (as_json) {
        char *s = json_dumps(j, JSON_INDENT(2));
        puts(s);
        free(s);
    }
    json_decref(j);
    return 0;
}
