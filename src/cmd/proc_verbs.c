/* `sluice reload`: POST /api/reload to a running proxy and say how it
 * went (what `nginx -s reload` and `systemctl reload` users expect, with
 * the configuration's errors shown when it is refused).
 *
 * `sluice version`: the version, the git commit it was built from
 * (SLUICE_GIT_COMMIT, set by the Makefile from `git describe --always
 * --dirty`; "unknown" outside a git checkout), the compiler, and what is
 * built in: the tiers and the libraries with their versions.
 */
#include "cmd/proc_verbs.h"

#include <getopt.h>
#include <jansson.h>
#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <openssl/crypto.h>
#include <openssl/opensslv.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "cmd/ctl.h"
#include "core/admin_client.h"
#include "core/version.h"
#include "lib/addr.h"

#ifndef SLUICE_GIT_COMMIT
#define SLUICE_GIT_COMMIT "unknown"
#endif

#if defined(__clang__)
#define SLUICE_COMPILER "clang " __clang_version__
#elif defined(__GNUC__)
#define SLUICE_COMPILER "gcc " __VERSION__
#else
#define SLUICE_COMPILER "unknown"
#endif

static const char *usage_reload =
    "Usage: sluice reload [--admin ADDR | -c FILE]\n"
    "\n"
    "Ask a running 'sluice proxy' to read its configuration file again\n"
    "(POST /api/reload; the same as SIGHUP to the master) and print the\n"
    "outcome. A file with errors is refused: the errors are printed, the\n"
    "proxy keeps running the previous configuration, and the exit status is 1.\n"
    "\n"
    "Options:\n"
    "  -a, --admin ADDR    admin API address (default: admin.listen of -c FILE, else 127.0.0.1:9900)\n"
    "  -c, --config FILE   read the admin address from this configuration\n"
    "  -h, --help          show this help\n"
    "\n"
    "Exit status: 0 reloaded, 1 refused or unreachable, 2 usage.\n";

void reload_usage(FILE *out) { fputs(usage_reload, out); }

/* The proxy's answer: {"reloaded": true, "reloads": N, "workers": N} or
 * {"error": "...", "errors": ["FILE:LINE: ...", ...]}. */
static int say_reload(int status, const char *body)
{
    json_t *j = json_loads(body, 0, NULL);
    int rc = 1;
    if (status == 200 && json_is_true(json_object_get(j, "reloaded"))) {
        printf("reloaded: %lld workers on the new configuration (%lld reloads so far)\n",
               (long long)json_integer_value(json_object_get(j, "workers")),
               (long long)json_integer_value(json_object_get(j, "reloads")));
        rc = 0;
    } else if (json_is_string(json_object_get(j, "error"))) {
        fprintf(stderr, "sluice reload: %s (HTTP %d)\n", json_string_value(json_object_get(j, "error")), status);
        size_t i;
        json_t *line;
        json_array_foreach(json_object_get(j, "errors"), i, line)
            if (json_is_string(line))
                fprintf(stderr, "%s\n", json_string_value(line));
        if (status == 404)
            fprintf(stderr, "sluice reload: this daemon has no /api/reload; send it SIGHUP instead\n");
    } else {
        fprintf(stderr, "sluice reload: unexpected answer (HTTP %d)\n", status);
    }
    json_decref(j);
    return rc;
}

int cmd_reload(int argc, char **argv)
{
    static const struct option opts[] = {
        {"admin", required_argument, NULL, 'a'},
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    const char *admin_text = NULL, *config = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "+a:c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'a': admin_text = optarg; break;
        case 'c': config = optarg; break;
        case 'h': reload_usage(stdout); return 0;
        default: reload_usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sluice reload: unexpected argument \"%s\"\n\n", argv[optind]);
        reload_usage(stderr);
        return 2;
    }
    struct sl_addr admin;
    int rc = ctl_admin_addr("reload", admin_text, config, &admin);
    if (rc >= 0)
        return rc;
    struct admin_reply r = {0};
    char err[512];
    if (admin_client_request(&admin, "POST", "/api/reload", NULL, &r, err, sizeof err) < 0) {
        fprintf(stderr, "sluice reload: %s\n", err);
        return 1;
    }
    rc = say_reload(r.status, r.body ? r.body : "");
    free(r.body);
    return rc;
}

static const char *usage_version =
    "Usage: sluice version [--json]\n"
    "\n"
    "Print the version, the git commit it was built from, the compiler and\n"
    "what is built in (tiers, libraries and their versions).\n"
    "\n"
    "Options:\n"
    "  -j, --json          as one JSON object\n"
    "  -h, --help          show this help\n";

void version_usage(FILE *out) { fputs(usage_version, out); }

static json_t *version_doc(const struct sl_module *const *modules)
{
    json_t *tiers = json_array();
    for (size_t i = 0; modules && modules[i]; i++)
        json_array_append_new(tiers, json_string(modules[i]->name));
    char yaml[32];
    snprintf(yaml, sizeof yaml, "%s", yaml_get_version_string());
    const nghttp2_info *h2 = nghttp2_version(0);
    json_t *features = json_pack("{s:s, s:s, s:b, s:s, s:b}", "openssl", OpenSSL_version(OPENSSL_VERSION),
                                 "openssl_built_with", OPENSSL_VERSION_TEXT, "http2", 1, "nghttp2",
                                 h2 ? h2->version_str : "unknown", "io_uring", 0);
    json_t *libs = json_pack("{s:s, s:s, s:s}", "jansson", jansson_version_str(), "libyaml", yaml, "sqlite",
                             sqlite3_libversion());
    return json_pack("{s:s, s:s, s:s, s:o, s:o, s:o}", "version", SLUICE_VERSION, "commit", SLUICE_GIT_COMMIT,
                     "compiler", SLUICE_COMPILER, "tiers", tiers, "features", features, "libraries", libs);
}

int cmd_version(int argc, char **argv, const struct sl_module *const *modules)
{
    bool as_json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json") || !strcmp(argv[i], "-j")) {
            as_json = true;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            version_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "sluice version: unexpected argument \"%s\"\n\n", argv[i]);
            version_usage(stderr);
            return 2;
        }
    }
    json_t *doc = version_doc(modules);
    if (!doc) {
        fprintf(stderr, "sluice version: out of memory\n");
        return 1;
    }
    if (as_json) {
        char *s = json_dumps(doc, JSON_INDENT(2));
        if (s)
            puts(s);
        free(s);
        json_decref(doc);
        return 0;
    }
    printf("sluice %s (commit %s)\n", SLUICE_VERSION, SLUICE_GIT_COMMIT);
    printf("compiler: %s\n", SLUICE_COMPILER);
    printf("tiers:");
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(doc, "tiers"), i, t) printf(" %s", json_string_value(t));
    json_t *f = json_object_get(doc, "features"), *l = json_object_get(doc, "libraries");
    printf("\nopenssl: %s (built with %s)\n", json_string_value(json_object_get(f, "openssl")),
           json_string_value(json_object_get(f, "openssl_built_with")));
    printf("http2: yes (nghttp2 %s)\n", json_string_value(json_object_get(f, "nghttp2")));
    printf("io_uring: no (epoll)\n");
    printf("libraries: jansson %s, libyaml %s, sqlite %s\n", json_string_value(json_object_get(l, "jansson")),
           json_string_value(json_object_get(l, "libyaml")), json_string_value(json_object_get(l, "sqlite")));
    json_decref(doc);
    return 0;
}
