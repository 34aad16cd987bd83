/* The L4 forwarder's control plane as a module of the `sluice` executable
 * (core/module.h). */
#ifndef SLUICE_L4_L4_MODULE_H
#define SLUICE_L4_L4_MODULE_H

#include "core/module.h"

extern const struct sl_module l4_module;

#endif
