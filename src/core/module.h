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
 *   attach         when ANOTHER tier's daemon runs: the work it does
 *                  there as a companion (the HA tier announces the VIPs
 *                  of `sluice l4` and `sluice proxy`). daemon_init calls
 *                  it for every module of module_list() but the daemon's
 *                  own; a module with nothing to do for that
 *                  configuration returns 0 and registers nothing. One that
 *                  has work calls daemon_add_companion() (core/daemon.h)
 *                  for its reload, stopping and fini calls, and may mount
 *                  routes on d->site like an admin hook.
 *
 * See docs/architecture.md, "How to add a tier".
 */
#ifndef SLUICE_CORE_MODULE_H
#define SLUICE_CORE_MODULE_H

#include <stddef.h>
#include <stdio.h>

#include "lib/strbuf.h"
#include "core/config.h"

struct admin_site;
struct daemon;

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
    /* Companion work inside another tier's daemon d (its loop, admin site
     * and vip_board are ready; cfg is the daemon's configuration). Returns
     * 0 (also when there is nothing to do), or -1 with a reason in err:
     * the daemon does not start. May be NULL. */
    int (*attach)(struct daemon *d, const struct sl_config *cfg, char *err, size_t errlen);
};

/* The executable's modules (src/cmd/main.c hands them over before any
 * daemon starts; NULL-terminated, not copied). The core never names a
 * module: it only walks this list, for the companions. */
void module_list_set(const struct sl_module *const *list);
/* The list set last; an empty list before module_list_set(). */
const struct sl_module *const *module_list(void);

#endif
