/* `sluice status|pools|backend`: client verbs for the admin API. */
#ifndef SLUICE_CMD_CTL_H
#define SLUICE_CMD_CTL_H

#include <stdio.h>

/* verb is "status", "pools" or "backend"; argv[0] is the verb. */
int ctl_main(const char *verb, int argc, char **argv);
void ctl_usage(FILE *out);

struct sl_addr;
/* The admin API address: --admin TEXT, else FILE's admin.listen, else
 * 127.0.0.1:9900. Returns -1 to go on, else the exit status (said on
 * stderr). */
int ctl_admin_addr(const char *verb, const char *admin_text, const char *config, struct sl_addr *admin);

#endif
