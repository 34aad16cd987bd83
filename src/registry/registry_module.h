/* The registry as a module of the `sluice` executable (core/module.h). */
#ifndef SLUICE_REGISTRY_REGISTRY_MODULE_H
#define SLUICE_REGISTRY_REGISTRY_MODULE_H

#include "core/module.h"

extern const struct sl_module registry_module;

#endif
