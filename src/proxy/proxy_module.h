/* The L7 proxy tier as a module of the `sluice` executable (core/module.h). */
#ifndef SLUICE_PROXY_PROXY_MODULE_H
#define SLUICE_PROXY_PROXY_MODULE_H

#include "core/module.h"

extern const struct sl_module proxy_module;

#endif
