/* Client verbs that talk to a running proxy's admin API:
 *
 *   sluice status                          the master, its workers, reloads
 *   sluice pools [POOL]                    pools and backends with state and counters
 *   sluice backend POOL ADDR ACTION        weight N | drain | disable | enable |
 *                                          add [WEIGHT] | remove (dynamic pools)
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

/* Print the answer's JSON as is (--json). */
static void print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2));
    if (s)
        puts(s);
    free(s);
}

/* sluice backend POOL ADDRESS add [WEIGHT] | remove */
static int backend_add_remove(const struct sl_addr *admin, const char *pool, const char *address, const char *action,
                              const char *weight_text, int as_json)
{
    char path[512];
    json_t *j;
    if (!strcmp(action, "add")) {
        long wv = 1;
        char *end = NULL;
        if (weight_text && ((wv = strtol(weight_text, &end, 10)), *end || wv < 0 || wv > 1000000)) {
            fprintf(stderr, "sluice backend: weight must be an integer from 0 to 1000000, got \"%s\"\n", weight_text);
            return 2;
        }
        json_t *body = json_pack("{s:s, s:I}", "address", address, "weight", (json_int_t)wv);
        char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
        json_decref(body);
        if (!text) {
            fprintf(stderr, "sluice backend: out of memory\n");
            return 1;
        }
        snprintf(path, sizeof path, "/api/pools/%s/backends", pool);
        j = admin_json(admin, "POST", path, text);
        free(text);
    } else {
        snprintf(path, sizeof path, "/api/pools/%s/backends/%s", pool, address);
        j = admin_json(admin, "DELETE", path, NULL);
    }
    if (!j)
        return 1;
    if (as_json)
        print_json(j);
    else if (!strcmp(action, "add"))
        printf("%s added to pool %s: state %s, weight %llu\n", json_string_value(json_object_get(j, "address")), pool,
               json_string_value(json_object_get(j, "state")), jnum(j, "weight"));
    else
        printf("%s removed from pool %s: it drains (requests in flight finish)\n",
               json_string_value(json_object_get(j, "address")), pool);
    json_decref(j);
    return 0;
}

static const char *usage_ctl =
    "Usage: sluice status  [--admin ADDR | -c FILE]\n"
    "       sluice pools   [--admin ADDR | -c FILE] [--json] [POOL]\n"
    "       sluice backend [--admin ADDR | -c FILE] POOL ADDRESS weight N|drain|disable|enable\n"
    "       sluice backend [--admin ADDR | -c FILE] POOL ADDRESS add [WEIGHT]|remove\n"
    "\n"
    "Talk to a running 'sluice proxy' through its admin API: show its state,\n"
    "and change a backend's weight or state at run time (every worker applies\n"
    "it within 100 ms; no reload). 'add' and 'remove' put a backend (IP:PORT)\n"
    "into or out of a dynamic pool (one with max_backends, or backends by\n"
    "name); a removed backend drains: requests in flight finish.\n"
    "\n"
    "Options:\n"
    "  -a, --admin ADDR    admin API address (default: admin.listen of -c FILE, else 127.0.0.1:9900)\n"
    "  -c, --config FILE   read the admin address (and admin.token_file) from this configuration\n"
    "  -t, --token-file F  send the token in F (its first line) as the admin API's bearer token\n"
    "  -j, --json          print the API's JSON as is\n"
    "  -h, --help          show this help\n";

void ctl_usage(FILE *out) { fputs(usage_ctl, out); }

int ctl_admin_addr(const char *verb, const char *admin_text, const char *config, struct sl_addr *admin)
{
    const char *why;
    if (admin_text) {
        if (addr_parse(admin_text, admin, &why) < 0) {
            fprintf(stderr, "sluice %s: --admin %s: %s\n", verb, admin_text, why);
            return 2;
        }
    } else if (config) {
        struct sl_config *cfg = admin_client_load_config(config);
        if (!cfg) {
            return 1;
        }
        *admin = cfg->admin_addr;
        config_free(cfg);
    } else {
        addr_parse("127.0.0.1:9900", admin, &why);
    }
    return -1;
}

int ctl_main(const char *verb, int argc, char **argv)
{
    static const struct option opts[] = {
        {"admin", required_argument, NULL, 'a'},
        {"config", required_argument, NULL, 'c'},
        {"token-file", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    const char *admin_text = NULL, *config = NULL, *token_file = NULL;
    int as_json = 0, c;
    while ((c = getopt_long(argc, argv, "+a:c:t:jh", opts, NULL)) != -1) {
        switch (c) {
        case 'a': admin_text = optarg; break;
        case 'c': config = optarg; break;
        case 't': token_file = optarg; break;
        case 'j': as_json = 1; break;
        case 'h': ctl_usage(stdout); return 0;
        default: ctl_usage(stderr); return 2;
        }
    }
    struct sl_addr admin;
    int rc = ctl_admin_addr(verb, admin_text, config, &admin);
    if (rc >= 0)
        return rc;
    if (token_file) {
        char err[512];
        if (admin_client_token_file(token_file, err, sizeof err) < 0) {
            fprintf(stderr, "sluice %s: --token-file %s\n", verb, err);
            return 2;
        }
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
        bool takes_arg = rest >= 3 && !strcmp(args[2], "weight"), may_take = rest >= 3 && !strcmp(args[2], "add");
        if (rest < 3 || (takes_arg && rest != 4) || (may_take && rest > 4) || (!takes_arg && !may_take && rest != 3)) {
            ctl_usage(stderr);
            return 2;
        }
        const char *action = args[2];
        if (!strcmp(action, "add") || !strcmp(action, "remove"))
            return backend_add_remove(&admin, args[0], args[1], action, rest == 4 ? args[3] : NULL, as_json);
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
            fprintf(stderr,
                    "sluice backend: unknown action \"%s\" (weight N, drain, disable, enable, add [WEIGHT], remove)\n",
                    action);
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
