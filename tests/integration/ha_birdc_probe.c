/* A small program for tests/integration/test_ha_bird.py: it drives BIRD
 * through Sluice's own HA code (src/ha: bird_proc.c, birdc.c), the way the
 * HA companion of a daemon will, without the companion:
 *
 *   ha_birdc_probe apply FILE           load FILE (its ha: section) and
 *                                       bird_proc_apply: write the BIRD file,
 *                                       reuse/reconfigure or start BIRD
 *   ha_birdc_probe protocols SOCKET     one line per protocol: name proto state info
 *   ha_birdc_probe bfd SOCKET           one line per session: peer ifname state interval_ms timeout_ms
 *   ha_birdc_probe exported SOCKET P    "count N" then one prefix per line
 *   ha_birdc_probe disable|enable SOCKET P
 *
 * Fields are separated by tabs. Exit 0, or 1 with the error on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "ha/bird_proc.h"
#include "ha/birdc.h"
#include "ha/ha_conf.h"

static int apply(const char *path)
{
    struct config_errors errs = { 0 };
    struct sl_config *cfg = config_load(path, &errs);
    if (!cfg) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.lines[i]);
        config_errors_free(&errs);
        return 1;
    }
    char err[1024];
    int rc = bird_proc_apply(ha_conf(cfg), path, err, sizeof err);
    if (rc < 0)
        fprintf(stderr, "apply: %s\n", err);
    else
        printf("applied\n");
    config_free(cfg);
    return rc < 0;
}

static int query(const char *what, const char *sock, const char *proto)
{
    struct birdc b;
    char err[1024];
    if (birdc_open(&b, sock, 2000, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    int rc = -1;
    size_t n = 0;
    if (!strcmp(what, "protocols")) {
        struct birdc_protocol *p;
        if ((rc = birdc_show_protocols(&b, &p, &n, err, sizeof err)) == 0)
            for (size_t i = 0; i < n; i++)
                printf("%s\t%s\t%s\t%s\n", p[i].name, p[i].proto, p[i].state, p[i].info);
        free(p);
    } else if (!strcmp(what, "bfd")) {
        struct birdc_bfd_session *s;
        if ((rc = birdc_show_bfd_sessions(&b, &s, &n, err, sizeof err)) == 0)
            for (size_t i = 0; i < n; i++)
                printf("%s\t%s\t%s\t%u\t%u\n", s[i].peer, s[i].ifname, s[i].state, s[i].interval_ms,
                       s[i].timeout_ms);
        free(s);
    } else if (!strcmp(what, "exported") && proto) {
        uint32_t count;
        struct birdc_prefix *px;
        if ((rc = birdc_exported_count(&b, proto, &count, err, sizeof err)) == 0) {
            printf("count\t%u\n", count);
            if ((rc = birdc_show_exported(&b, proto, &px, &n, err, sizeof err)) == 0)
                for (size_t i = 0; i < n; i++)
                    printf("%s\n", px[i].text);
            free(px);
        }
    } else if (!strcmp(what, "disable") && proto) {
        rc = birdc_disable(&b, proto, err, sizeof err);
    } else if (!strcmp(what, "enable") && proto) {
        rc = birdc_enable(&b, proto, err, sizeof err);
    } else {
        snprintf(err, sizeof err, "unknown query %s", what);
    }
    if (rc < 0)
        fprintf(stderr, "%s\n", err);
    birdc_close(&b);
    return rc < 0;
}

int main(int argc, char **argv)
{
    if (config_register_section(&ha_conf_section) < 0)
        return 1;
    if (argc == 3 && !strcmp(argv[1], "apply"))
        return apply(argv[2]);
    if (argc >= 3)
        return query(argv[1], argv[2], argc > 3 ? argv[3] : NULL);
    fprintf(stderr, "usage: ha_birdc_probe apply FILE | protocols|bfd SOCKET | exported|disable|enable SOCKET PROTO\n");
    return 2;
}
