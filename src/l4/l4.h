/* `sluice l4`: the control plane of the XDP forwarder.
 *
 *   sluice l4 -c FILE          load, fill the maps, attach (pinned links),
 *                              health-check the reals, serve the admin API;
 *                              exit on SIGTERM with the forwarder attached
 *   sluice l4 detach           take the pinned links (and maps) off
 *   sluice l4 list [-c FILE]   services and reals with counters, from the
 *                              pinned maps
 */
#ifndef SLUICE_L4_L4_H
#define SLUICE_L4_L4_H

#include <stdio.h>

/* argv[0] is "l4". Returns the process exit code. */
int l4_main(int argc, char **argv);
void l4_usage(FILE *out);

#endif
