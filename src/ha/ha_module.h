/* The HA tier as a module of the `sluice` executable (core/module.h). */
#ifndef SLUICE_HA_HA_MODULE_H
#define SLUICE_HA_HA_MODULE_H

#include "core/module.h"

extern const struct sl_module ha_module;

#endif
