/* The master process of `sluice proxy`: supervision, reload, admin API. */
#ifndef SLUICE_PROXY_MASTER_H
#define SLUICE_PROXY_MASTER_H

#include <stdbool.h>
#include <stdint.h>


struct master_options {
    const char *config_path;
    uint32_t workers;     /* 0 = from the config */
    const char *pid_file; /* NULL = none */
    bool allow_shared_listen; /* --allow-shared-listen: bind even where another process serves */
};

/* Runs until SIGTERM/SIGINT/SIGQUIT; returns the process exit code. */
int master_run(const struct master_options *opt);

struct admin_site;
/* The proxy module's admin hook (core/module.h): mounts /api/pools with
 * the listener and backend families for the master `arg`'s current
 * generation. */
int master_admin(struct admin_site *site, void *arg);

#endif
