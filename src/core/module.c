/* See module.h: the list of the executable's modules, for the core. */
#include "core/module.h"

static const struct sl_module *const no_modules[] = { NULL };
static const struct sl_module *const *modules = no_modules;

void module_list_set(const struct sl_module *const *list)
{
    modules = list ? list : no_modules;
}

const struct sl_module *const *module_list(void)
{
    return modules;
}
