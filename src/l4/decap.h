/* `sluice l4 decap`: the real-server side of TUN mode, for kernels without
 * the ipip / ip6_tunnel modules (docs/l4.md, "TUN mode and sluice l4
 * decap").
 *
 * The contract with the XDP program (src/l4/bpf/decap.bpf.c), its maps
 * and counters, is src/l4/bpf/decap_abi.h.
 */
#ifndef SLUICE_L4_DECAP_H
#define SLUICE_L4_DECAP_H

#include <stdio.h>

#include "l4/bpf/decap_abi.h"

/* argv[0] is "decap". Returns the process exit code. */
int l4_decap_main(int argc, char **argv);
void l4_decap_usage(FILE *out);

#endif
