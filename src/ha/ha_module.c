/* The HA tier's module record (core/module.h): the ha: section, the
 * `sluice ha` verb (ha_cmd.c) and its part of `sluice check`'s summary.
 * The companion that announces from inside `sluice l4` and `sluice proxy`
 * attaches through this record too. */
#include "ha/ha_module.h"

#include "ha/ha_cmd.h"
#include "ha/ha_conf.h"
#include "ha/ha_daemon.h"

/* "HA node in zone a (priority 1), AS 65010, 2 BGP neighbors, BIRD managed". */
static void ha_check_summary(const struct sl_config *cfg, struct strbuf *out)
{
    const struct cfg_ha *h = ha_conf(cfg);
    if (!h->present)
        return;
    strbuf_printf(out, "HA in zone %s (priority %u), AS %u, %zu BGP neighbor%s, BIRD %s", h->zone, h->priority,
                  h->asn, h->n_neighbors, h->n_neighbors == 1 ? "" : "s",
                  h->bird.mode == HA_BIRD_MANAGED ? "managed" : "external");
}

static const struct config_section *const ha_sections[] = { &ha_conf_section, NULL };

static const struct sl_verb ha_verbs[] = {
    { "ha", ha_main, ha_usage },
    { NULL, NULL, NULL },
};

const struct sl_module ha_module = {
    .name = "ha",
    .sections = ha_sections,
    .verbs = ha_verbs,
    .check_summary = ha_check_summary,
    .attach = ha_attach,   /* the companion in sluice l4 and sluice proxy (ha_daemon.h) */
};
