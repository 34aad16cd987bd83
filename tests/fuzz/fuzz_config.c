/* libFuzzer target: config_load_string() on arbitrary bytes, with every
 * tier's section registered (the proxy's, sluice l4's, the registry's,
 * the DNS agent's and HA's), as `sluice` loads files; and the same bytes as an admin API
 * body for sluice l4's service and real parsers and the registry's
 * settings, instance and patch parsers.
 *
 * Beyond "no crash, no leak" (ASan), check the loader's contract: it
 * returns a config with no errors, or NULL with at least one error, and
 * every error is a single "fuzz.yaml:LINE: path: reason" line. The body
 * parsers return 0, or -1 with a one-line reason. The value parsers get
 * the same bytes as a C string, and so does the agent's resolv.conf
 * reader (every upstream it returns is a port-53 address, none of them the
 * agent's own).
 */
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "agent/agent_conf.h"
#include "core/config_walk.h"
#include "ha/ha_conf.h"
#include "l4/l4_conf.h"
#include "proxy/proxy_conf.h"
#include "proxy/ratelimit_conf.h"
#include "registry/reg_conf.h"

static void check_error_line(const char *line)
{
    static const char prefix[] = "fuzz.yaml:";
    if (strncmp(line, prefix, sizeof prefix - 1) != 0)
        abort();
    const char *p = line + sizeof prefix - 1;
    if (*p < '0' || *p > '9')
        abort();
    while (*p >= '0' && *p <= '9')
        p++;
    if (p[0] != ':' || p[1] != ' ' || !strstr(p + 2, ": "))
        abort();
    if (strchr(line, '\n') || strchr(line, '\r'))
        abort();
}

/* A rate (rate_limits[].rate): accepted only as N "r/s" or "r/m" with N
 * from 1 to 1000000, written back the same. */
static void check_rate(const char *s)
{
    uint32_t rate;
    bool per_minute;
    const char *why;
    if (ratelimit_parse_rate(s, &rate, &per_minute, &why) < 0)
        return;
    char back[32];
    snprintf(back, sizeof back, "%ur/%c", rate, per_minute ? 'm' : 's');
    if (rate < 1 || rate > 1000000 || strcmp(back, s) != 0)
        abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    if (config_register_section(&proxy_conf_section) < 0 || config_register_section(&l4_conf_section) < 0 ||
        config_register_section(&reg_conf_section) < 0 || config_register_section(&agent_conf_section) < 0 ||
        config_register_section(&ha_conf_section) < 0)
        abort();
    return 0;
}

/* The bytes as a resolv.conf, read with the agent listening on
 * 127.0.0.1:53 and [::]:53. */
static void check_resolv(const char *text)
{
    struct sl_addr listen[2], out[AGENT_MAX_UPSTREAMS];
    const char *why;
    if (addr_parse("127.0.0.1:53", &listen[0], &why) < 0 || addr_parse("[::]:53", &listen[1], &why) < 0)
        abort();
    size_t n = agent_conf_parse_resolv(text, listen, 2, out, AGENT_MAX_UPSTREAMS);
    if (n > AGENT_MAX_UPSTREAMS)
        abort();
    for (size_t i = 0; i < n; i++) {
        if (addr_port(&out[i]) != 53 || addr_equal(&out[i], &listen[0]))
            abort();
        if (out[i].ss.ss_family == AF_INET6 &&
            IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)&out[i].ss)->sin6_addr))
            abort();
    }
}

/* A service and a real as the l4 admin API reads them. */
static void check_bodies(const uint8_t *data, size_t size)
{
    static const char yaml[] = "l4:\n  interfaces: [lb0]\n  tun_source_prefix: 10.99.0.0/24\n"
                               "  services: [{vip: 10.0.0.1:80, mode: tun, reals: [10.0.0.2]}]\n";
    struct sl_config *running = config_load_string("running.yaml", yaml, sizeof yaml - 1, NULL);
    if (!running)
        abort();
    const struct cfg_l4 *l4 = l4_conf(running);
    char err[512];
    struct cfg_l4_service svc;
    struct cfg_l4_real real;
    err[0] = '\0';
    if (l4_conf_parse_service(l4, (const char *)data, size, &svc, err, sizeof err) == 0)
        l4_conf_service_free(&svc);
    else if (!err[0] || strchr(err, '\n'))
        abort();
    err[0] = '\0';
    if (l4_conf_parse_real(l4, &l4->services[0], (const char *)data, size, &real, err, sizeof err) < 0 &&
        (!err[0] || strchr(err, '\n')))
        abort();
    config_free(running);
}

/* A service's settings, an instance and a patch as the registry's API
 * reads them: 0, or -1 with a one-line reason. */
static void check_registry_bodies(const uint8_t *data, size_t size)
{
    char err[512];
    struct reg_service_settings s;
    struct cfg_reg_instance inst;
    bool hw, he, en;
    uint32_t w;
    err[0] = '\0';
    if (reg_conf_parse_settings_body((const char *)data, size, &s, err, sizeof err) == 0) {
        if (reg_service_settings_check(&s, err, sizeof err) < 0)
            abort();   /* the parser must refuse what the model would */
        reg_service_settings_free(&s);
    } else if (!err[0] || strchr(err, '\n')) {
        abort();
    }
    err[0] = '\0';
    if (reg_conf_parse_instance_body((const char *)data, size, &inst, err, sizeof err) == 0) {
        struct reg_instance_spec spec;
        reg_conf_instance_spec(&inst, &spec);
        if (reg_instance_spec_check(&spec, err, sizeof err) < 0)
            abort();
        reg_conf_instance_free(&inst);
    } else if (!err[0] || strchr(err, '\n')) {
        abort();
    }
    err[0] = '\0';
    if (reg_conf_parse_patch_body((const char *)data, size, &hw, &w, &he, &en, err, sizeof err) == 0) {
        if (!hw && !he)
            abort();
    } else if (!err[0] || strchr(err, '\n')) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_bodies(data, size);
    check_registry_bodies(data, size);
    struct config_errors errs = { 0 };
    struct sl_config *cfg = config_load_string("fuzz.yaml", (const char *)data, size, &errs);
    if (cfg ? errs.n != 0 : errs.n == 0)
        abort();
    for (size_t i = 0; i < errs.n; i++)
        check_error_line(errs.lines[i]);
    config_free(cfg);
    config_errors_free(&errs);

    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    uint32_t v;
    config_parse_duration_ms(s, &v);
    config_parse_size(s, &v);
    check_rate(s);
    check_resolv(s);
    free(s);
    return 0;
}
