/* The health_check: section: what an active check of a backend is, read
 * from YAML by any tier that has backends (the proxy's pools, sluice l4's
 * services) with the same keys, defaults and errors:
 *
 *   health_check:
 *     type: http            # none (default), tcp, http
 *     interval: 2s          # 10ms .. 24h
 *     timeout: 1s           # 1ms .. 24h, not longer than interval
 *     rise: 2               # passes to come up, 1..100
 *     fall: 3               # failures to go down, 1..100
 *     path: /healthz        # http only, default "/"
 *     host: example.com     # http only, default: the backend's address
 *     expect_status: 200-399
 *
 * core/health.h runs the checks.
 */
#ifndef SLUICE_CORE_HEALTH_CONF_H
#define SLUICE_CORE_HEALTH_CONF_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config_walk.h"

enum health_type { HEALTH_NONE, HEALTH_TCP, HEALTH_HTTP };

struct cfg_health {
    enum health_type type; /* "type: tcp|http|none", default none */
    uint32_t interval_ms;  /* default 2000 */
    uint32_t timeout_ms;   /* default 1000 */
    uint32_t rise;         /* default 2 */
    uint32_t fall;         /* default 3 */
    char *http_path;       /* "path", default "/" */
    char *http_host;       /* "host", default: backend address */
    uint16_t status_min;   /* "expect_status: 200-399" (default) or "200" */
    uint16_t status_max;
};

/* "none", "tcp", "http", indexed by the enum, NULL-terminated. */
extern const char *const hc_type_names[];

/* The defaults above (http_path is allocated). */
void hc_conf_defaults(struct cfg_health *h);
/* Read a health_check: mapping into h (which holds the defaults or what
 * was read before); errors at the walker's current path. */
void hc_conf_parse(struct config_ctx *c, const struct ynode *v, struct cfg_health *h);
void hc_conf_free(struct cfg_health *h);
/* Deep copy; 0, or -1 when out of memory (dst left empty). */
int hc_conf_copy(struct cfg_health *dst, const struct cfg_health *src);
/* Same check settings (a target keeps running only if they are). */
bool hc_conf_equal(const struct cfg_health *a, const struct cfg_health *b);

#endif
