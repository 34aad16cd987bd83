/* `sluice status|pools|backend`: client verbs for the admin API. */
#ifndef SLUICE_CMD_CTL_H
#define SLUICE_CMD_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "lib/addr.h"

/* verb is "status", "pools" or "backend"; argv[0] is the verb. */
int ctl_main(const char *verb, int argc, char **argv);
void ctl_usage(FILE *out);

/* One request to an admin API (blocking, Connection: close). Returns 0
 * with the status and the malloc'd body (NUL-terminated), or -1 with a
 * message on stderr (quiet: none when nothing listens at admin). */
int ctl_request(const struct sl_addr *admin, const char *method, const char *path, const char *body, bool quiet,
                int *status, char **reply_body, size_t *reply_len);

#endif
