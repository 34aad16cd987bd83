/* `sluice ha SUBCOMMAND`: the HA tier's verb. Subcommands are rows of a
 * table in ha_cmd.c (config here; status, drain and undrain speak to a
 * running daemon's admin API and join the table with the companion). */
#ifndef SLUICE_HA_HA_CMD_H
#define SLUICE_HA_HA_CMD_H

#include <stdio.h>

int ha_main(int argc, char **argv);
void ha_usage(FILE *out);

#endif
