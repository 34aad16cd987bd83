/* The configuration keys built on request variables (proxy/http_vars.h):
 *
 *   log_formats:                          root: NAME -> format (nginx log_format)
 *   listeners[].access_log_format:        combined, json or a NAME of log_formats
 *   listeners[].request_headers:          { set: {N: V}, add: {N: V}, remove: [N] }
 *   listeners[].response_headers:         the same, for responses
 *   listeners[].routes[].request_headers, .response_headers: the same, per route
 *   listeners[].routes[].redirect:        { to: URL-with-variables, status: 301|302|303|307|308 }
 *   listeners[].routes[].return:          { status: N, body: TEXT }
 *
 * Header rules of a listener and of its route both apply: the listener's
 * first, then the route's, in the order written (set, add, remove within
 * one mapping). Each rule acts on what the rules before it left: `remove`
 * drops the client's (backend's) fields of that name and what earlier
 * rules added; `set` does the same, then adds its value; `add` adds a field
 * beside those already there. So a route's `set` overrides the listener's
 * value, its `remove` cancels the listener's `add`, and its `add` extends.
 * The result is worked out once, at load time (struct header_plan).
 *
 * See docs/configuration.md (log_formats, access_log_format,
 * request_headers / response_headers, redirect and return, Variables).
 */
#ifndef SLUICE_PROXY_HTTP_VARS_CONF_H
#define SLUICE_PROXY_HTTP_VARS_CONF_H

#include <stdbool.h>
#include <stddef.h>

#include "proxy/http_vars.h"

struct config_ctx;
struct ynode;

/* One entry of log_formats:. */
struct cfg_log_format {
    char *name;
    struct http_fmt fmt;
    enum http_escape escape;   /* "escape: default" (HTTP_ESC_LOG) or "json" */
    int line;
};

enum header_op { HDR_SET, HDR_ADD, HDR_REMOVE };

struct cfg_header_op {
    enum header_op op;
    char *name;
    struct http_fmt value;     /* set and add */
};

struct cfg_header_rules {
    struct cfg_header_op *ops;
    size_t n;
};

/* The rules of a listener and a route, resolved: the fields of the
 * message to leave out (by name, case-insensitively), then the fields to
 * add, in order. */
struct header_add {
    char *name;
    struct http_fmt value;
};

struct header_plan {
    char **drop;
    size_t n_drop;
    struct header_add *add;
    size_t n_add;
};

enum route_action { ROUTE_TO_POOL, ROUTE_REDIRECT, ROUTE_RETURN };

/* What a route with redirect: or return: answers, without a pool. */
struct cfg_route_answer {
    enum route_action action;
    int status;
    struct http_fmt location;  /* redirect.to */
    char *body;                /* return.body (NULL: none) */
};

/* log_formats: at the root. */
void log_formats_parse(struct config_ctx *c, const struct ynode *v, struct cfg_log_format **out, size_t *n_out);
void log_formats_free(struct cfg_log_format *f, size_t n);
const struct cfg_log_format *log_formats_find(const struct cfg_log_format *f, size_t n, const char *name);

/* request_headers: (response false) or response_headers: (true). */
void header_rules_parse(struct config_ctx *c, const struct ynode *v, bool response, struct cfg_header_rules *out);
void header_rules_free(struct cfg_header_rules *r);

/* The plan of the listener's rules followed by the route's (route may be NULL). */
void header_plan_build(const struct cfg_header_rules *listener, const struct cfg_header_rules *route,
                       struct header_plan *out);
void header_plan_free(struct header_plan *p);
/* Does the plan leave out fields of this name? */
bool header_plan_drops(const struct header_plan *p, const char *name, size_t len);
/* Does any value of the plan use a request variable (or any at all)? */
bool header_plan_uses_request(const struct header_plan *p);

/* redirect: and return: of a route. */
void route_redirect_parse(struct config_ctx *c, const struct ynode *v, struct cfg_route_answer *out);
void route_return_parse(struct config_ctx *c, const struct ynode *v, struct cfg_route_answer *out);
void route_answer_free(struct cfg_route_answer *a);

/* Does a format read the request head (so it must outlive the head in
 * the client's buffer, see http_txn.c)? */
bool http_fmt_uses_request(const struct http_fmt *f);

#endif
