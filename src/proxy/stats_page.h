/* GET /stats on the admin port: the proxy's listeners, pools and
 * backends on one HTML page a person can read, in the manner of HAProxy's
 * stats page. One table per listener kind and one per pool, a row per
 * backend: state (coloured), weight, connections, requests, errors,
 * responses by class, retries, latency quantiles from the histograms
 * (proxy_latency.h), the last health check, bytes both ways.
 *
 * Plain HTML and inline CSS: no script, no external asset, every name
 * from the configuration or a check HTML-escaped. `?refresh=N` (1-3600
 * seconds) adds a meta refresh. The same numbers in JSON are /api/pools.
 */
#ifndef SLUICE_PROXY_STATS_PAGE_H
#define SLUICE_PROXY_STATS_PAGE_H

#include "core/admin.h"
#include "proxy/proxy_admin.h"

/* Mount GET /stats on site, reading pa (which must outlive the site's
 * use). Returns 0 or -1 (the site is full). */
int stats_page_mount(struct admin_site *site, struct proxy_admin *pa);

#endif
