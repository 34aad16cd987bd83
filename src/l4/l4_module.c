/* sluice l4's module record (core/module.h): the l4: section, the `sluice
 * l4` verb (the daemon and its tools, l4.c), its part of `sluice check`'s
 * summary, and the admin routes and metric families of its daemon. */
#include "l4/l4_module.h"

#include "l4/daemon.h"
#include "l4/l4.h"
#include "l4/l4_conf.h"

/* ", 2 L4 services" only when the file has an l4: section. */
static void l4_check_summary(const struct sl_config *cfg, struct strbuf *out)
{
    const struct cfg_l4 *l4 = l4_conf(cfg);
    if (l4->present)
        strbuf_printf(out, "%zu L4 service%s", l4->n_services, l4->n_services == 1 ? "" : "s");
}

static const struct config_section *const l4_sections[] = { &l4_conf_section, NULL };

static const struct sl_verb l4_verbs[] = {
    { "l4", l4_main, l4_usage },
    { NULL, NULL, NULL },
};

const struct sl_module l4_module = {
    .name = "l4",
    .sections = l4_sections,
    .verbs = l4_verbs,
    .check_summary = l4_check_summary,
    .admin = l4_daemon_admin,
};
