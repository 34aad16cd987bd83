/* The registry's HTTP API on the admin site, under /api/registry (see
 * docs/admin-api.md, "Registry"): services and instances, writes
 * acknowledged once the store has them, blocking watches (?index=&wait=),
 * heartbeats and what DNS would answer a caller (/answer).
 *
 * Reads are open; writes (PUT, PATCH, POST, DELETE) need the token when
 * registry.token is set. Errors are {"error": "reason"}: 400 naming the
 * field, 401, 404 for an unknown service or instance, 503 when the store
 * refuses or too many watchers wait.
 */
#ifndef SLUICE_REGISTRY_REG_API_H
#define SLUICE_REGISTRY_REG_API_H

#include <jansson.h>

#include "core/admin.h"
#include "registry/reg_daemon.h"

/* The mount's handler (arg: the struct reg_daemon). */
void reg_api_handle(void *arg, const struct admin_request *rq, struct admin_reply *reply);

/* After a merge window: answer every watcher whose index has passed. */
void reg_api_wake(struct reg_daemon *d);

/* Forget every watcher (their connections are gone or going: call after
 * the admin server stopped). */
void reg_api_drop_watchers(struct reg_daemon *d);

/* The "registry" part of /api/status. */
void reg_api_status(void *arg, json_t *status);

#endif
