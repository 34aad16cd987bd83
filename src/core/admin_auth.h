/* Who may change a daemon through its admin API: the keys admin.token_file,
 * admin.token_reads and admin.read_only, and the gate every request of
 * every daemon's admin API passes before it is routed.
 *
 *   - With a token (admin.token_file), every request that changes
 *     something (POST, PUT, PATCH, DELETE) carries it as
 *     "Authorization: Bearer TOKEN" (or "X-Sluice-Token: TOKEN", the
 *     registry's older header), else 401. Reads (GET, HEAD) stay open
 *     unless admin.token_reads is true; /metrics follows the same rule.
 *   - admin.read_only refuses every changing request with 403 (the token
 *     does not lift it: read-only is for an instance nobody should change
 *     by hand, e.g. one driven by a configuration manager).
 *   - An admin.listen that is not a loopback address needs a token: a
 *     configuration without one is refused (an API that can drain every
 *     backend must not be open to the network by accident).
 *
 * The token is read from its file when the configuration is loaded (start,
 * `sluice check`, every reload) and sent by the CLI verbs from the same
 * file (core/admin_client.h admin_client_use_config).
 */
#ifndef SLUICE_CORE_ADMIN_AUTH_H
#define SLUICE_CORE_ADMIN_AUTH_H

#include <stdbool.h>

struct admin_request;
struct admin_reply;
struct config_ctx;
struct sl_config;
struct ynode;

#define ADMIN_TOKEN_MAX 4096

struct admin_auth {
    char *token;        /* malloc'd; NULL: no token */
    bool token_reads;   /* reads need the token too */
    bool read_only;     /* every changing request is refused */
};

/* The admin: keys besides listen (token_file, token_reads, read_only):
 * key is the index in ADMIN_AUTH_KEYS. */
#define ADMIN_AUTH_KEYS "token_file", "token_reads", "read_only"
void admin_auth_field(struct config_ctx *c, int key, const struct ynode *v, struct sl_config *cfg);
/* Once admin: is read: a listen address beyond loopback needs a token. */
void admin_auth_check(struct config_ctx *c, const struct sl_config *cfg, int admin_line);

/* Whether the address (an sl_addr's sockaddr) is a loopback one: 127/8, ::1. */
bool admin_addr_is_loopback(const struct sl_config *cfg);

/* Copy cfg's settings into auth (freeing what it held). */
void admin_auth_set(struct admin_auth *auth, const struct sl_config *cfg);
void admin_auth_clear(struct admin_auth *auth);

/* The gate: true when the request may go on; false with *reply filled
 * (401 with a JSON reason, or 403 for read-only). */
bool admin_auth_allows(const struct admin_auth *auth, const struct admin_request *rq, struct admin_reply *reply);

/* POST, PUT, PATCH, DELETE (and anything not a read). */
bool admin_method_changes(const char *method);

#endif
