/* A module: what a tier brings to the `sluice` executable.
 *
 * Each tier exports one struct sl_module (proxy_module in src/proxy/,
 * l4_module in src/l4/); src/cmd/main.c lists them by hand, as nginx
 * lists its modules, and the core never names one. The record says what
 * the tier registers and where:
 *
 *   sections       its parts of the configuration file, registered with
 *                  the core's section table before any file is loaded
 *   verbs          `sluice VERB ...` commands it runs (its daemon, its
 *                  own tools), dispatched by main
 *   check_summary  its part of `sluice check`'s "ok (...)" line
 *   admin          when its daemon runs: the routes it mounts and the
 *                  metric families it registers on the daemon's admin
 *                  site (called by core/daemon.c's daemon_init)
 *
 * See docs/architecture.md, "How to add a tier".
 */
#ifndef SLUICE_CORE_MODULE_H
#define SLUICE_CORE_MODULE_H

#include <stdio.h>

#include "lib/strbuf.h"
#include "core/config.h"

struct admin_site;

struct sl_verb {
    const char *name;                 /* "proxy": `sluice proxy ...` */
    /* argv[0] is the verb; returns the process exit code. */
    int (*run)(int argc, char **argv);
    /* Its --help text (also `sluice help VERB`). */
    void (*usage)(FILE *out);
};

struct sl_module {
    const char *name;                                 /* "proxy", "l4" */
    const struct config_section *const *sections;     /* NULL-terminated; may be NULL */
    const struct sl_verb *verbs;                      /* ends with { NULL } */
    /* Append its part of the summary ("2 listeners, 1 pool, 3 backends")
     * for a valid cfg; nothing when it has nothing to say. May be NULL. */
    void (*check_summary)(const struct sl_config *cfg, struct strbuf *out);
    /* Mount its routes and register its metric families on the site of
     * its running daemon (arg: the daemon's state). Returns 0 or -1.
     * May be NULL. */
    int (*admin)(struct admin_site *site, void *arg);
};

#endif
