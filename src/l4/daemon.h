/* The long-running part of `sluice l4 -c FILE`. */
#ifndef SLUICE_L4_DAEMON_H
#define SLUICE_L4_DAEMON_H

#include <stdbool.h>

struct l4_run_options {
    const char *config_path;
    const char *pin_dir;
    bool force;     /* --force: replace another XDP program on l4.interfaces */
};

/* Runs until SIGTERM or SIGINT, and leaves the forwarder attached
 * (links.h). Returns the exit code. */
int l4_daemon_run(const struct l4_run_options *o);

struct admin_site;
/* The l4 module's admin hook (core/module.h): the services as pools
 * (/api/pools, sluice_backend_*), the sluice_l4_* families and /api/l4
 * for the running daemon `arg`. */
int l4_daemon_admin(struct admin_site *site, void *arg);

#endif
