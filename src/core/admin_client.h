/* A tiny blocking HTTP/1.1 client for the admin API of a running Sluice
 * (`sluice status`, `sluice pools`, `sluice l4 add-real`, ...): one request,
 * Connection: close, a bounded reply (8 MiB), 10 s without an answer is a
 * failure. Nothing here prints; failures come back as a reason.
 */
#ifndef SLUICE_CORE_ADMIN_CLIENT_H
#define SLUICE_CORE_ADMIN_CLIENT_H

#include <stddef.h>

#include "lib/addr.h"

typedef struct json_t json_t;

struct admin_reply {
    int status;   /* the HTTP status */
    char *body;   /* NUL-terminated, malloc'd: the caller frees it */
    size_t len;   /* body bytes, without the NUL */
};

enum admin_client_error {
    ADMIN_CLIENT_UNREACHABLE = -1, /* nothing accepted the connection */
    ADMIN_CLIENT_FAILED = -2,      /* it did, but the exchange failed */
};

/* Send METHOD PATH with an optional JSON body to the admin API at `admin`.
 * Returns 0 with *r filled, or one of admin_client_error with a reason in
 * err ("cannot reach the admin API at 127.0.0.1:9900: Connection refused"). */
int admin_client_request(const struct sl_addr *admin, const char *method, const char *path, const char *body,
                         struct admin_reply *r, char *err, size_t errlen);

/* What a request may add: the API token of a registry (sent as
 * X-Sluice-Token; NULL: none) and how long to wait for the answer (0: the
 * default 10 s; a blocking watch waits longer). */
struct admin_client_opts {
    const char *token;
    int answer_wait_ms;
};

/* admin_client_request with opts (NULL: none). A token holding a line
 * break is refused (ADMIN_CLIENT_FAILED) rather than sent. */
int admin_client_request_with(const struct sl_addr *admin, const char *method, const char *path, const char *body,
                              const struct admin_client_opts *opts, struct admin_reply *r, char *err, size_t errlen);

/* The admin API's token (admin.token_file, core/admin_auth.h), sent as
 * "Authorization: Bearer T" with every request this process makes from
 * now on (NULL: none). admin_client_use_config sets it from a loaded
 * configuration (nothing when it has none): the CLI verbs call it after
 * reading -c FILE, or the token file given with --token-file. */
#define ADMIN_CLIENT_TOKEN_MAX 4096
struct sl_config;
void admin_client_set_token(const char *token);
void admin_client_use_config(const struct sl_config *cfg);
/* admin_client_set_token from a file's first line (--token-file). 0, or
 * -1 with the reason in err. */
int admin_client_token_file(const char *path, char *err, size_t errlen);
/* A CLI verb's -c FILE: loaded, with its admin.token_file taken for the
 * requests (admin_client_use_config); NULL when the file has errors (they
 * are printed on stderr, one FILE:LINE: key: reason per line). The caller
 * config_free()s it. */
struct sl_config *admin_client_load_config(const char *path);

/* One request whose answer is a JSON document: the parsed answer of a
 * 2xx or 3xx reply (the caller json_decref()s it), or NULL with a reason
 * in err: the request failed, the answer was not JSON, or the API said
 * no ("no such pool (HTTP 404)", from its {"error": ...} body). *status
 * gets the HTTP status, 0 when there was no answer; may be NULL. */
json_t *admin_client_json(const struct sl_addr *admin, const char *method, const char *path, const char *body,
                          int *status, char *err, size_t errlen);

#endif
