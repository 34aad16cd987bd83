/* `sluice status|pools|backend`: client verbs for the admin API. */
#ifndef SLUICE_CMD_CTL_H
#define SLUICE_CMD_CTL_H

#include <stdio.h>

/* verb is "status", "pools" or "backend"; argv[0] is the verb. */
int ctl_main(const char *verb, int argc, char **argv);
void ctl_usage(FILE *out);

#endif
