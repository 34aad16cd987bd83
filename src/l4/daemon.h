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

#endif
