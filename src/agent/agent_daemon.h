/* `sluice agent -c FILE`: the local DNS agent's daemon (see agent_dns.h
 * for what it answers, docs/agent.md for how to run it). */
#ifndef SLUICE_AGENT_AGENT_DAEMON_H
#define SLUICE_AGENT_AGENT_DAEMON_H

#include <stdio.h>

struct admin_site;

int agent_main(int argc, char **argv);
void agent_usage(FILE *out);

/* The module's admin hook: libsluice's counters on the daemon's metrics
 * (the DNS server's families are registered when it starts). */
int agent_daemon_admin(struct admin_site *site, void *arg);

#endif
