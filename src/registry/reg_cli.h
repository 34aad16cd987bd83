/* `sluice registry list|show|register|deregister|set|watch|answer`: the
 * client verbs of the registry, over its HTTP API. */
#ifndef SLUICE_REGISTRY_REG_CLI_H
#define SLUICE_REGISTRY_REG_CLI_H

#include <stdbool.h>
#include <stdio.h>

/* Is `name` one of the client verbs (the word after `sluice registry`)? */
bool reg_cli_is_verb(const char *name);
/* argv[0] is the verb; returns the exit code (0, 1 failed, 2 usage). */
int reg_cli_main(int argc, char **argv);
/* The verbs' lines of `sluice registry --help`. */
void reg_cli_usage(FILE *out);

#endif
