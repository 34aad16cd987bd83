/* `sluice reload` and `sluice version`. */
#ifndef SLUICE_CMD_PROC_VERBS_H
#define SLUICE_CMD_PROC_VERBS_H

#include <stdio.h>

#include "core/module.h"

/* argv[0] is the verb. */
int cmd_reload(int argc, char **argv);
void reload_usage(FILE *out);
/* modules: what this binary was built with (NULL-terminated). */
int cmd_version(int argc, char **argv, const struct sl_module *const *modules);
void version_usage(FILE *out);

#endif
