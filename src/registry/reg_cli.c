/* `sluice registry list|show|register|deregister|set|watch|answer`: the
 * registry's client verbs, thin clients of its HTTP API (docs/registry.md),
 * in the manner of `consul services` and the nacos CLIs. */
#include "registry/reg_cli.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "core/admin_client.h"
#include "core/config.h"
#include "core/config_walk.h"
#include "lib/addr.h"
#include "lib/strbuf.h"
#include "registry/reg_conf.h"

#define DEFAULT_API "127.0.0.1:9950"

/* What every verb needs: where the API is, the token, how to print. */
struct cli {
    const char *verb;
    struct sl_addr api;
    char token[256];
    bool json;
    int answer_wait_ms;            /* 0: the client's default */
};

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static const char *const verbs[] = { "list", "show", "register", "deregister", "set", "watch", "answer", NULL };

bool reg_cli_is_verb(const char *name)
{
    for (size_t i = 0; verbs[i]; i++)
        if (!strcmp(name, verbs[i]))
            return true;
    return false;
}

void reg_cli_usage(FILE *out)
{
    fputs("       sluice registry list [API] [--json]\n"
          "       sluice registry show [API] [--json] SERVICE\n"
          "       sluice registry register [API] SERVICE ADDRESS:PORT [--id ID] [--weight N]\n"
          "                 [--datacenter DC] [--region R] [--label KEY=VALUE]... [--disabled]\n"
          "                 [--ephemeral [--keepalive]]\n"
          "       sluice registry deregister [API] SERVICE ID\n"
          "       sluice registry set [API] SERVICE ID [--weight N] [--enable | --disable]\n"
          "       sluice registry set [API] SERVICE --settings JSON\n"
          "       sluice registry watch [API] [SERVICE] [--once] [--wait DURATION]\n"
          "       sluice registry answer [API] SERVICE [--client IP | --datacenter DC [--region R]]\n"
          "                 [--family a|aaaa|srv]\n"
          "\n"
          "  API is -c FILE (the API address is FILE's admin.listen, the token its\n"
          "  registry.token) or --api ADDR (default " DEFAULT_API ") with --token T\n"
          "  (default: $SLUICE_TOKEN). Writes need the token when the registry has one.\n"
          "\n"
          "  list        every service: healthy/total instances, protection flags\n"
          "              (fail-open, eviction-capped), spread over datacenters\n"
          "  show        one service: its settings and every instance with its health\n"
          "              and the reason of its last change\n"
          "  register    a persistent instance (health-checked by the registry), or\n"
          "              with --ephemeral one that must heartbeat; --keepalive stays in\n"
          "              the foreground heartbeating it until interrupted, then\n"
          "              deregisters it. ID defaults to ADDRESS:PORT.\n"
          "  deregister  remove an instance\n"
          "  set         change an instance's weight (0-10000) or enabled flag, or\n"
          "              replace a service's settings (JSON as in registry.services)\n"
          "  watch       print each change of SERVICE (or of the service list) as it\n"
          "              happens, until interrupted (--once: the first change only)\n"
          "  answer      what the registry's DNS answers a caller at a place, and why\n",
          out);
}

static int fail(const struct cli *cli, const char *fmt, const char *arg)
{
    fprintf(stderr, "sluice registry %s: ", cli->verb);
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    return 1;
}

/* Percent-encode one path segment (an instance id may hold anything). */
static void path_escape(const char *in, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && o + 4 < cap; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("-._~:", *p)) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = 0;
}

/* One API call. Returns the decoded JSON body (NULL when none or not
 * JSON) and the status in *status; -1 in *status when the API could not
 * be reached (the reason already printed). */
static json_t *api_call(const struct cli *cli, const char *method, const char *path, json_t *body, int *status)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    struct admin_reply r = { 0 };
    char err[512];
    /* A blocking watch waits up to its ?wait= on the server: give it
     * longer than the longest the API allows (registry.api.max_wait). */
    struct admin_client_opts opts = { .token = cli->token[0] ? cli->token : NULL,
                                      .answer_wait_ms = cli->answer_wait_ms };
    int rc = admin_client_request_with(&cli->api, method, path, text, &opts, &r, err, sizeof err);
    free(text);
    if (rc < 0) {
        fprintf(stderr, "sluice registry %s: %s\n", cli->verb, err);
        *status = -1;
        return NULL;
    }
    *status = r.status;
    json_t *j = json_loadb(r.body ? r.body : "", r.len, 0, NULL);
    free(r.body);
    return j;
}

/* Print an error reply; returns the exit code. */
static int report_error(const struct cli *cli, int status, json_t *j)
{
    if (status < 0)
        return 1;
    const char *e = j ? json_string_value(json_object_get(j, "error")) : NULL;
    fprintf(stderr, "sluice registry %s: %d %s\n", cli->verb, status, e ? e : "(no reason given)");
    return 1;
}

static void print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
    if (s)
        puts(s);
    free(s);
}

static const char *jstr(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static long long jint(json_t *o, const char *key)
{
    return (long long)json_integer_value(json_object_get(o, key));
}

/* "fail-open,eviction-capped" or "-". */
static void flags_text(json_t *svc, char *out, size_t cap)
{
    out[0] = 0;
    if (json_is_true(json_object_get(svc, "fail_open")))
        snprintf(out + strlen(out), cap - strlen(out), "%sfail-open", out[0] ? "," : "");
    if (json_is_true(json_object_get(svc, "eviction_capped")))
        snprintf(out + strlen(out), cap - strlen(out), "%seviction-capped", out[0] ? "," : "");
    if (!out[0])
        snprintf(out, cap, "-");
}

/* "dc1/r1 2/3, dc2/r1 1/1" */
static void spread_text(json_t *svc, char *out, size_t cap)
{
    json_t *spread = json_object_get(svc, "spread");
    size_t i;
    json_t *s;
    out[0] = 0;
    json_array_foreach(spread, i, s)
    {
        const char *dc = jstr(s, "datacenter"), *region = jstr(s, "region");
        snprintf(out + strlen(out), cap - strlen(out), "%s%s/%s %lld/%lld", i ? ", " : "", dc[0] ? dc : "?",
                 region[0] ? region : "?", jint(s, "healthy"), jint(s, "total"));
    }
    if (!out[0])
        snprintf(out, cap, "-");
}

static void print_list(json_t *j)
{
    json_t *services = json_object_get(j, "services");
    size_t i;
    json_t *svc;
    printf("%-24s %-9s %-8s %-26s %s\n", "SERVICE", "HEALTHY", "ENABLED", "PROTECTION", "SPREAD (dc/region healthy/total)");
    json_array_foreach(services, i, svc)
    {
        char health[32], flags[64], spread[1024];
        snprintf(health, sizeof health, "%lld/%lld", jint(svc, "healthy"), jint(svc, "instances"));
        flags_text(svc, flags, sizeof flags);
        spread_text(svc, spread, sizeof spread);
        printf("%-24s %-9s %-8lld %-26s %s\n", jstr(svc, "name"), health, jint(svc, "enabled"), flags, spread);
    }
    if (!json_array_size(services))
        printf("(no services)\n");
    printf("node: self-preservation %s%s\n", json_is_true(json_object_get(j, "self_preservation")) ? "ON (expiry paused)" : "off",
           json_is_true(json_object_get(j, "stale")) ? ", store unreachable: answers are a stale copy" : "");
}

static void print_service(json_t *j)
{
    json_t *st = json_object_get(j, "settings");
    char flags[64];
    flags_text(j, flags, sizeof flags);
    printf("service %s (index %lld)  protection: %s\n", jstr(j, "name"), jint(j, "index"), flags);
    if (st) {
        char *s = json_dumps(st, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
        printf("settings: %s\n", s ? s : "?");
        free(s);
    }
    json_t *insts = json_object_get(j, "instances");
    printf("%-28s %-24s %-6s %-10s %-10s %-8s %-10s %-5s %s\n", "ID", "ADDRESS", "WEIGHT", "DATACENTER", "REGION",
           "ENABLED", "KIND", "STATE", "REASON");
    size_t i;
    json_t *in;
    json_array_foreach(insts, i, in)
    {
        char addr[96];
        const char *a = jstr(in, "address");
        snprintf(addr, sizeof addr, strchr(a, ':') ? "[%s]:%lld" : "%s:%lld", a, jint(in, "port"));
        printf("%-28s %-24s %-6lld %-10s %-10s %-8s %-10s %-5s %s\n", jstr(in, "id"), addr, jint(in, "weight"),
               jstr(in, "datacenter")[0] ? jstr(in, "datacenter") : "-", jstr(in, "region")[0] ? jstr(in, "region") : "-",
               json_is_true(json_object_get(in, "enabled")) ? "yes" : "no",
               json_is_true(json_object_get(in, "ephemeral")) ? "ephemeral" : "persistent", jstr(in, "health"),
               jstr(in, "health_reason"));
    }
    if (!json_array_size(insts))
        printf("(no instances)\n");
}

static int cmd_list(const struct cli *cli, int argc, char **argv)
{
    argc--; /* the verb */
    argv++;
    if (argc != 0)
        return fail(cli, "takes no arguments (got \"%s\")", argv[0]);
    int status;
    json_t *j = api_call(cli, "GET", "/api/registry/services", NULL, &status);
    int rc = 0;
    if (status != 200)
        rc = report_error(cli, status, j);
    else if (cli->json)
        print_json(j);
    else
        print_list(j);
    json_decref(j);
    return rc;
}

static int cmd_show(const struct cli *cli, int argc, char **argv)
{
    argc--; /* the verb */
    argv++;
    if (argc != 1)
        return fail(cli, "%s", "needs exactly one SERVICE");
    char path[512];
    snprintf(path, sizeof path, "/api/registry/services/%s", argv[0]);
    int status;
    json_t *j = api_call(cli, "GET", path, NULL, &status);
    int rc = 0;
    if (status != 200)
        rc = report_error(cli, status, j);
    else if (cli->json)
        print_json(j);
    else
        print_service(j);
    json_decref(j);
    return rc;
}

static bool parse_u32(const char *s, uint32_t max, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v > max)
        return false;
    *out = (uint32_t)v;
    return true;
}

/* Split "ADDRESS:PORT" ("[v6]:PORT" too) into the body's address and port. */
static int put_address(const struct cli *cli, const char *text, json_t *body)
{
    struct sl_addr a;
    const char *why;
    if (addr_parse(text, &a, &why) < 0)
        return fail(cli, "ADDRESS:PORT: %s", why);
    char host[64];
    addr_ip_string((const struct sockaddr *)&a.ss, host, sizeof host);
    json_object_set_new(body, "address", json_string(host));
    json_object_set_new(body, "port", json_integer(addr_port(&a)));
    return 0;
}

static int heartbeat_loop(const struct cli *cli, const char *service, const char *id, json_t *spec);

static int cmd_register(const struct cli *cli, int argc, char **argv)
{
    static const struct option lo[] = {
        { "id", 1, 0, 'i' },        { "weight", 1, 0, 'w' }, { "datacenter", 1, 0, 'd' }, { "region", 1, 0, 'r' },
        { "label", 1, 0, 'l' },     { "disabled", 0, 0, 'D' }, { "ephemeral", 0, 0, 'e' }, { "keepalive", 0, 0, 'k' },
        { 0, 0, 0, 0 },
    };
    json_t *body = json_object(), *labels = json_object();
    const char *id = NULL;
    bool ephemeral = false, keepalive = false;
    int c, rc = 1;
    optind = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        uint32_t w;
        switch (c) {
        case 'i': id = optarg; break;
        case 'w':
            if (!parse_u32(optarg, 10000, &w)) {
                fail(cli, "--weight must be an integer from 0 to 10000, got \"%s\"", optarg);
                goto out;
            }
            json_object_set_new(body, "weight", json_integer(w));
            break;
        case 'd': json_object_set_new(body, "datacenter", json_string(optarg)); break;
        case 'r': json_object_set_new(body, "region", json_string(optarg)); break;
        case 'l': {
            const char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg) {
                fail(cli, "--label takes KEY=VALUE, got \"%s\"", optarg);
                goto out;
            }
            json_object_setn_new(labels, optarg, (size_t)(eq - optarg), json_string(eq + 1));
            break;
        }
        case 'D': json_object_set_new(body, "enabled", json_false()); break;
        case 'e': ephemeral = true; break;
        case 'k': keepalive = true; break;
        default: goto out;
        }
    }
    if (argc - optind != 2) {
        fail(cli, "%s", "needs SERVICE and ADDRESS:PORT");
        goto out;
    }
    if (keepalive && !ephemeral) {
        fail(cli, "%s", "--keepalive is for --ephemeral instances (a persistent one is health-checked instead)");
        goto out;
    }
    const char *service = argv[optind];
    if (put_address(cli, argv[optind + 1], body) < 0)
        goto out;
    if (json_object_size(labels))
        json_object_set(body, "labels", labels);
    json_object_set_new(body, "ephemeral", json_boolean(ephemeral));
    char idbuf[128];
    if (!id) {
        snprintf(idbuf, sizeof idbuf, "%s", argv[optind + 1]);
        id = idbuf;
    }
    char path[768], eid[400];
    path_escape(id, eid, sizeof eid);
    snprintf(path, sizeof path, "/api/registry/services/%s/instances/%s", service, eid);
    int status;
    json_t *j = api_call(cli, "PUT", path, body, &status);
    if (status != 200) {
        rc = report_error(cli, status, j);
        json_decref(j);
        goto out;
    }
    printf("registered %s in %s (%s, index %lld)\n", id, service, ephemeral ? "ephemeral" : "persistent",
           jint(j, "index"));
    fflush(stdout);
    json_decref(j);
    rc = keepalive ? heartbeat_loop(cli, service, id, body) : 0;
out:
    json_decref(labels);
    json_decref(body);
    return rc;
}

/* The service's heartbeat interval in ms (its settings), 5 s when unknown. */
static uint32_t heartbeat_interval_ms(const struct cli *cli, const char *service)
{
    char path[512];
    snprintf(path, sizeof path, "/api/registry/services/%s", service);
    int status;
    json_t *j = api_call(cli, "GET", path, NULL, &status);
    json_t *hb = json_object_get(json_object_get(json_object_get(j, "settings"), "heartbeat"), "interval");
    uint32_t ms = 5000, v;
    /* The API writes durations as the config does ("5s"). */
    if (json_is_string(hb) && config_parse_duration_ms(json_string_value(hb), &v) == 0 && v > 0)
        ms = v;
    json_decref(j);
    return ms;
}

static void sleep_ms(uint32_t ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (!stop_requested && nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* The weight and enabled flag a heartbeat's answer reports (an operator
 * may have changed them) into the registration's body, so registering
 * again keeps them. */
static void keep_operator_settings(json_t *spec, json_t *reply)
{
    json_t *w = json_object_get(reply, "weight"), *e = json_object_get(reply, "enabled");
    if (json_is_integer(w))
        json_object_set(spec, "weight", w);
    if (json_is_boolean(e))
        json_object_set(spec, "enabled", e);
}

/* --keepalive: heartbeat until SIGINT/SIGTERM, re-register when the
 * registry has forgotten the instance (a restart past its grace, another
 * node) with the weight and enabled flag it last reported, deregister at
 * the end. */
static int heartbeat_loop(const struct cli *cli, const char *service, const char *id, json_t *spec)
{
    struct sigaction sa = { .sa_handler = on_stop_signal };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    char path[768], eid[400], hb[800];
    path_escape(id, eid, sizeof eid);
    snprintf(path, sizeof path, "/api/registry/services/%s/instances/%s", service, eid);
    snprintf(hb, sizeof hb, "%s/heartbeat", path);
    uint32_t interval = heartbeat_interval_ms(cli, service);
    printf("heartbeating every %u ms; Ctrl-C deregisters\n", interval);
    fflush(stdout);
    while (!stop_requested) {
        sleep_ms(interval);
        if (stop_requested)
            break;
        int status;
        json_t *j = api_call(cli, "POST", hb, NULL, &status);
        if (status == 200)
            keep_operator_settings(spec, j);
        json_decref(j);
        if (status == 404) {
            j = api_call(cli, "PUT", path, spec, &status);
            json_decref(j);
            if (status == 200)
                printf("re-registered %s in %s (the registry had forgotten it)\n", id, service);
            fflush(stdout);
        }
        /* Unreachable or refusing: keep trying; the instance is only
         * expired after the service's expire_after. */
    }
    int status;
    json_t *j = api_call(cli, "DELETE", path, NULL, &status);
    json_decref(j);
    printf("deregistered %s from %s\n", id, service);
    return status == 200 || status == 404 ? 0 : 1;
}

static int cmd_deregister(const struct cli *cli, int argc, char **argv)
{
    argc--; /* the verb */
    argv++;
    if (argc != 2)
        return fail(cli, "%s", "needs SERVICE and ID");
    char path[768], eid[400];
    path_escape(argv[1], eid, sizeof eid);
    snprintf(path, sizeof path, "/api/registry/services/%s/instances/%s", argv[0], eid);
    int status;
    json_t *j = api_call(cli, "DELETE", path, NULL, &status);
    int rc = 0;
    if (status != 200)
        rc = report_error(cli, status, j);
    else
        printf("deregistered %s from %s\n", argv[1], argv[0]);
    json_decref(j);
    return rc;
}

static int cmd_set(const struct cli *cli, int argc, char **argv)
{
    static const struct option lo[] = {
        { "weight", 1, 0, 'w' }, { "enable", 0, 0, 'E' }, { "disable", 0, 0, 'D' }, { "settings", 1, 0, 's' },
        { 0, 0, 0, 0 },
    };
    json_t *body = json_object(), *settings = NULL;
    int c, rc = 1;
    optind = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        uint32_t w;
        json_error_t jerr;
        switch (c) {
        case 'w':
            if (!parse_u32(optarg, 10000, &w)) {
                fail(cli, "--weight must be an integer from 0 to 10000, got \"%s\"", optarg);
                goto out;
            }
            json_object_set_new(body, "weight", json_integer(w));
            break;
        case 'E': json_object_set_new(body, "enabled", json_true()); break;
        case 'D': json_object_set_new(body, "enabled", json_false()); break;
        case 's':
            json_decref(settings);
            settings = json_loads(optarg, 0, &jerr);
            if (!json_is_object(settings)) {
                fail(cli, "--settings: not a JSON object: %s", settings ? "(another JSON type)" : jerr.text);
                goto out;
            }
            break;
        default: goto out;
        }
    }
    argc -= optind;
    argv += optind;
    char path[768];
    const char *method;
    json_t *send;
    if (settings) {
        if (argc != 1 || json_object_size(body)) {
            fail(cli, "%s", "--settings takes SERVICE only (no ID, --weight or --enable/--disable)");
            goto out;
        }
        snprintf(path, sizeof path, "/api/registry/services/%s", argv[0]);
        method = "PUT";
        send = settings;
    } else {
        if (argc != 2 || !json_object_size(body)) {
            fail(cli, "%s", "needs SERVICE ID and --weight N, --enable or --disable (or SERVICE --settings JSON)");
            goto out;
        }
        char eid[400];
        path_escape(argv[1], eid, sizeof eid);
        snprintf(path, sizeof path, "/api/registry/services/%s/instances/%s", argv[0], eid);
        method = "PATCH";
        send = body;
    }
    int status;
    json_t *j = api_call(cli, method, path, send, &status);
    if (status != 200) {
        rc = report_error(cli, status, j);
    } else {
        printf("%s %s%s%s (index %lld)\n", settings ? "settings of" : "changed", argv[0], settings ? "" : " ",
               settings ? "" : argv[1], jint(j, "index"));
        rc = 0;
    }
    json_decref(j);
out:
    json_decref(settings);
    json_decref(body);
    return rc;
}

static void print_change(const struct cli *cli, const char *service, json_t *j)
{
    if (cli->json) {
        char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
        if (s)
            puts(s);
        free(s);
    } else if (service) {
        json_t *insts = json_object_get(j, "instances");
        size_t i, up = 0;
        json_t *in;
        json_array_foreach(insts, i, in) up += !strcmp(jstr(in, "health"), "up") &&
                                               json_is_true(json_object_get(in, "enabled"));
        char flags[64];
        flags_text(j, flags, sizeof flags);
        printf("index %lld: %s healthy %zu/%zu, protection %s\n", jint(j, "index"), service, up,
               json_array_size(insts), flags);
    } else {
        printf("index %lld:\n", jint(j, "index"));
        print_list(j);
    }
    fflush(stdout);
}

static int cmd_watch(const struct cli *cli_in, int argc, char **argv)
{
    struct cli watch_cli = *cli_in, *cli = &watch_cli;
    static const struct option lo[] = { { "once", 0, 0, 'o' }, { "wait", 1, 0, 'w' }, { 0, 0, 0, 0 } };
    bool once = false;
    const char *wait = "5m";
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'o': once = true; break;
        case 'w': wait = optarg; break;
        default: return 2;
        }
    }
    argc -= optind;
    argv += optind;
    if (argc > 1)
        return fail(cli, "%s", "takes at most one SERVICE");
    uint32_t wait_ms;
    if (config_parse_duration_ms(wait, &wait_ms) < 0 || wait_ms == 0)
        return fail(cli, "--wait: expected a duration such as 30s or 5m, got \"%s\"", wait);
    /* The server answers by then (or sooner, when it caps the wait at its
     * registry.api.max_wait); a little more covers the trip. */
    cli->answer_wait_ms = (int)(wait_ms > INT32_MAX - 10000 ? INT32_MAX : wait_ms + 10000);
    const char *service = argc ? argv[0] : NULL;
    struct sigaction sa = { .sa_handler = on_stop_signal };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    char base[512], path[700];
    if (service)
        snprintf(base, sizeof base, "/api/registry/services/%s", service);
    else
        snprintf(base, sizeof base, "/api/registry/services");
    int status;
    json_t *j = api_call(cli, "GET", base, NULL, &status);
    if (status != 200) {
        int rc = report_error(cli, status, j);
        json_decref(j);
        return rc;
    }
    long long index = jint(j, "index");
    if (!once)
        print_change(cli, service, j);
    json_decref(j);
    while (!stop_requested) {
        snprintf(path, sizeof path, "%s?index=%lld&wait=%s", base, index, wait);
        j = api_call(cli, "GET", path, NULL, &status);
        if (status != 200) {
            int rc = report_error(cli, status, j);
            json_decref(j);
            return rc;
        }
        long long now = jint(j, "index");
        if (now != index) {
            index = now;
            print_change(cli, service, j);
            if (once) {
                json_decref(j);
                return 0;
            }
        }
        json_decref(j);
    }
    return 0;
}

static int cmd_answer(const struct cli *cli, int argc, char **argv)
{
    static const struct option lo[] = {
        { "client", 1, 0, 'c' }, { "datacenter", 1, 0, 'd' }, { "region", 1, 0, 'r' }, { "family", 1, 0, 'f' },
        { 0, 0, 0, 0 },
    };
    struct strbuf q = { 0 };
    const char *family = "a";
    int c;
    optind = 0;
    char esc[300];
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        const char *key = c == 'c' ? "client" : c == 'd' ? "datacenter" : c == 'r' ? "region" : NULL;
        if (c == 'f') {
            family = optarg;
            continue;
        }
        if (!key) {
            strbuf_free(&q);
            return 2;
        }
        path_escape(optarg, esc, sizeof esc);
        strbuf_printf(&q, "&%s=%s", key, esc);
    }
    if (argc - optind != 1) {
        strbuf_free(&q);
        return fail(cli, "%s", "needs exactly one SERVICE");
    }
    char path[1024];
    path_escape(family, esc, sizeof esc);
    snprintf(path, sizeof path, "/api/registry/services/%s/answer?family=%s%s", argv[optind], esc,
             q.len ? q.p : "");
    strbuf_free(&q);
    int status;
    json_t *j = api_call(cli, "GET", path, NULL, &status);
    int rc = 0;
    if (status != 200) {
        rc = report_error(cli, status, j);
    } else if (cli->json) {
        print_json(j);
    } else {
        printf("tier %s%s\n", jstr(j, "tier"), json_is_true(json_object_get(j, "fail_open")) ? ", fail-open" : "");
        json_t *recs = json_object_get(j, "records"), *r;
        size_t i;
        json_array_foreach(recs, i, r)
        {
            const char *a = jstr(r, "address");
            char addr[96], srv[48] = "";
            snprintf(addr, sizeof addr, strchr(a, ':') ? "[%s]:%lld" : "%s:%lld", a, jint(r, "port"));
            if (json_object_get(r, "priority"))
                snprintf(srv, sizeof srv, "  priority %lld srv-weight %lld", jint(r, "priority"),
                         jint(r, "srv_weight"));
            printf("  %-24s %s/%s weight %lld %s%s\n", addr, jstr(r, "datacenter")[0] ? jstr(r, "datacenter") : "?",
                   jstr(r, "region")[0] ? jstr(r, "region") : "?", jint(r, "weight"), jstr(r, "health"), srv);
        }
        if (json_string_value(json_object_get(j, "explain")))
            printf("%s\n", jstr(j, "explain"));
    }
    json_decref(j);
    return rc;
}

/* --api/--token/-c/--json, before or after the verb's own arguments. */
static int common_options(struct cli *cli, int *argc, char **argv)
{
    const char *api = NULL, *config_path = NULL, *token = getenv("SLUICE_TOKEN");
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i];
        const char **slot = !strcmp(a, "--api") ? &api : !strcmp(a, "-c") || !strcmp(a, "--config") ? &config_path
                            : !strcmp(a, "--token")                                             ? &token
                                                                                                : NULL;
        if (slot) {
            if (i + 1 >= *argc) {
                fprintf(stderr, "sluice registry %s: %s needs a value\n", cli->verb, a);
                return -1;
            }
            *slot = argv[++i];
        } else if (!strcmp(a, "--json")) {
            cli->json = true;
        } else {
            argv[out++] = argv[i];
        }
    }
    *argc = out;
    argv[out] = NULL;
    const char *why;
    if (config_path) {
        struct sl_config *cfg = admin_client_load_config(config_path);
        if (!cfg) {
            return -1;
        }
        if (!cfg->admin_enabled) {
            fprintf(stderr, "sluice registry %s: %s has the API off (admin.listen: off)\n", cli->verb, config_path);
            config_free(cfg);
            return -1;
        }
        if (!api)
            cli->api = cfg->admin_addr;
        const struct cfg_registry *rc = reg_conf(cfg);
        if (!token && rc && rc->token)
            snprintf(cli->token, sizeof cli->token, "%s", rc->token);
        config_free(cfg);
    }
    if (api && addr_parse(api, &cli->api, &why) < 0) {
        fprintf(stderr, "sluice registry %s: --api %s: %s\n", cli->verb, api, why);
        return -1;
    }
    if (!api && !config_path)
        addr_parse(DEFAULT_API, &cli->api, &why);
    if (token)
        snprintf(cli->token, sizeof cli->token, "%s", token);
    return 0;
}

int reg_cli_main(int argc, char **argv)
{
    struct cli cli = { .verb = argv[0] };
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs("Usage: sluice registry -c FILE   (run a registry node)\n", stdout);
            reg_cli_usage(stdout);
            return 0;
        }
    }
    if (common_options(&cli, &argc, argv) < 0)
        return 2;
    int (*const run[])(const struct cli *, int, char **) = { cmd_list, cmd_show, cmd_register, cmd_deregister,
                                                             cmd_set, cmd_watch, cmd_answer };
    for (size_t i = 0; verbs[i]; i++) {
        if (!strcmp(cli.verb, verbs[i]))
            return run[i](&cli, argc, argv); /* argv[0] is the verb, as getopt_long wants */
    }
    return fail(&cli, "%s", "unknown verb");
}
