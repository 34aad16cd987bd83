/* The agent's module record (core/module.h): the agent: section, the
 * `sluice agent` verb (agent_daemon.c), its part of `sluice check`'s
 * summary, and the metric families of its daemon. */
#include "agent/agent_module.h"

#include <string.h>

#include "agent/agent_conf.h"
#include "agent/agent_daemon.h"

/* "DNS agent for sluice.test. on 127.0.0.1:53, 2 services" when the file has an agent: section. */
static void agent_check_summary(const struct sl_config *cfg, struct strbuf *out)
{
    const struct cfg_agent *a = agent_conf(cfg);
    if (!a->present)
        return;
    strbuf_printf(out, "DNS agent for %s on %s", a->zone, a->n_listen ? a->listen[0].text : "?");
    if (a->n_listen > 1)
        strbuf_printf(out, " (+%zu)", a->n_listen - 1);
    strbuf_printf(out, ", %zu registr%s, %zu service%s at start", a->n_registries,
                  a->n_registries == 1 ? "y" : "ies", a->n_services, a->n_services == 1 ? "" : "s");
}

static const struct config_section *const agent_sections[] = { &agent_conf_section, NULL };

static int agent_verb(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            agent_usage(stdout);
            return 0;
        }
    }
    return agent_main(argc, argv);
}

static const struct sl_verb agent_verbs[] = {
    { "agent", agent_verb, agent_usage },
    { NULL, NULL, NULL },
};

const struct sl_module agent_module = {
    .name = "agent",
    .sections = agent_sections,
    .verbs = agent_verbs,
    .check_summary = agent_check_summary,
    .admin = agent_daemon_admin,
};
