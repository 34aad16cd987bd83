/* Requests to the registry nodes, over libcurl.
 *
 * A struct cl_http is one thread's: a curl easy handle (its connection
 * kept alive between requests) driven by a multi handle, so a long request
 * (a blocking query) can be woken from another thread (cl_http_wake) and
 * checked on about every 100 ms by the caller's `check` callback. Every
 * thread that talks to nodes has its own (the watcher, the heartbeat
 * thread, or a caller's thread for one call).
 *
 * Nodes: a request goes to the client's node in use first; on a failure to
 * connect, a timeout or a 5xx it goes to the next node (at most every node
 * once per request), backing the failed one off (250 ms doubling to 10 s);
 * the node that answered becomes the one in use. Nodes backed off are
 * skipped while another is not. */
#ifndef SLUICE_CLIENT_HTTP_H
#define SLUICE_CLIENT_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client/client_priv.h"

struct cl_http;

struct cl_http *cl_http_new(sluice_client *c);
void cl_http_free(struct cl_http *h);

/* Interrupt the request in progress (from any thread): its check callback
 * runs at once. */
void cl_http_wake(struct cl_http *h);

struct cl_resp {
    long status;                 /* the HTTP status; 0 when no node answered */
    char *body;                  /* terminated; NULL when none */
    size_t len;
    size_t node;                 /* index in c->nodes of the node that answered */
    char node_name[CL_NODE_NAME];
};
void cl_resp_free(struct cl_resp *r);

enum cl_http_rc {
    CL_HTTP_OK = 0,              /* a node answered with a status below 500 */
    CL_HTTP_FAILED = -1,         /* none did (out holds the last 5xx answer, if any) */
    CL_HTTP_ABORTED = -2,        /* check() returned true */
};

/* method "GET", "PUT", "POST" or "DELETE"; path from "/api/..."; body a
 * JSON text or NULL; timeout_ms for the whole request (0: the client's
 * request_timeout_ms). check (may be NULL) is called about every 100 ms
 * and after cl_http_wake(); returning true abandons the request. */
int cl_http_request(struct cl_http *h, const char *method, const char *path, const char *body, uint32_t timeout_ms,
                    bool (*check)(void *arg), void *arg, struct cl_resp *out);

/* Parse "host:port", "http://host:port" lists into c->nodes. 0, or -1 with
 * the reason. */
int cl_nodes_parse(sluice_client *c, const char *list, char *err, size_t errlen);

#endif
