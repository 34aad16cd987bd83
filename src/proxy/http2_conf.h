/* The "http2:" block of an http listener (struct cfg_http2 in
 * proxy_conf.h): its defaults and its parser. See docs/http2.md. */
#ifndef SLUICE_PROXY_HTTP2_CONF_H
#define SLUICE_PROXY_HTTP2_CONF_H

#include "core/config_walk.h"
#include "proxy/proxy_conf.h"

void http2_conf_defaults(struct cfg_http2 *h);
/* Walk the block into h; problems are reported as listeners[i].http2.KEY. */
void parse_http2(struct config_ctx *c, const struct ynode *v, struct cfg_http2 *h);

#endif
