/* `sluice ha status|drain|undrain`: rows of ha_cmd.c's table that speak to
 * a running daemon's HA companion through its admin API (ha_admin.c). */
#ifndef SLUICE_HA_HA_CTL_H
#define SLUICE_HA_HA_CTL_H

#include <stdio.h>

/* argv[0] is the subcommand: "status", "drain" or "undrain". Returns the
 * exit status. */
int ha_ctl_run(int argc, char **argv);
/* The usage of subcommand sub. */
void ha_ctl_usage(FILE *out, const char *sub);

#endif
