/* The long-running part of `sluice l4 -c FILE`. */
#ifndef SLUICE_L4_DAEMON_H
#define SLUICE_L4_DAEMON_H

struct l4_run_options {
    const char *config_path;
    const char *pin_dir;
};

/* Runs until SIGTERM or SIGINT. Returns the exit code. */
int l4_daemon_run(const struct l4_run_options *o);

#endif
