/* The DNS agent as a module of the `sluice` executable (core/module.h). */
#ifndef SLUICE_AGENT_AGENT_MODULE_H
#define SLUICE_AGENT_AGENT_MODULE_H

#include "core/module.h"

extern const struct sl_module agent_module;

#endif
