/* See admin_auth.h. */
#include "core/admin_auth.h"

#include <ctype.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/admin.h"
#include "core/config.h"
#include "core/config_walk.h"
#include "core/secret_file.h"

enum { AUTHK_TOKEN_FILE, AUTHK_TOKEN_READS, AUTHK_READ_ONLY };

/* The file's first line, trailing spaces dropped: the token. */
static void read_token_file(struct config_ctx *c, const struct ynode *v, struct sl_config *cfg)
{
    const char *path = config_scalar(c, v, "a file path");
    if (!path)
        return;
    char buf[ADMIN_TOKEN_MAX + 1], why[512];
    long n = secret_file_read(path, buf, ADMIN_TOKEN_MAX, 0, why, sizeof why);
    if (n < 0) {
        config_err_at(c, v->line, "%s", n == SECRET_FILE_TOO_BIG ? "the token file is larger than 4 KiB" : why);
        return;
    }
    size_t len = secret_first_line(buf, (size_t)n);
    if (!len || !config_is_visible(buf)) {
        config_err_at(c, v->line, "%s holds no token (its first line must be printable ASCII without spaces)",
                      config_shown_str(c, path));
        memset(buf, 0, sizeof buf);
        return;
    }
    config_set_str(&cfg->admin_token, buf);
    memset(buf, 0, sizeof buf);
}

void admin_auth_field(struct config_ctx *c, int key, const struct ynode *v, struct sl_config *cfg)
{
    switch (key) {
    case AUTHK_TOKEN_FILE: read_token_file(c, v, cfg); break;
    case AUTHK_TOKEN_READS: config_get_bool(c, v, &cfg->admin_token_reads); break;
    case AUTHK_READ_ONLY: config_get_bool(c, v, &cfg->admin_read_only); break;
    }
}

bool admin_addr_is_loopback(const struct sl_config *cfg)
{
    const struct sockaddr_storage *ss = &cfg->admin_addr.ss;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        if (IN6_IS_ADDR_LOOPBACK(&a->sin6_addr))
            return true;
        /* ::ffff:127.x.y.z */
        return IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) && a->sin6_addr.s6_addr[12] == 127;
    }
    return false;
}

void admin_auth_check(struct config_ctx *c, const struct sl_config *cfg, int admin_line)
{
    if (!cfg->admin_enabled || cfg->admin_token || admin_addr_is_loopback(cfg))
        return;
    config_err_in(c, admin_line, "listen",
                  "%s is reachable from other hosts: set admin.token_file (a file holding the API token), "
                  "or listen on a loopback address",
                  cfg->admin_addr.text);
}

void admin_auth_clear(struct admin_auth *auth)
{
    if (auth->token) {
        memset(auth->token, 0, strlen(auth->token));
        free(auth->token);
    }
    *auth = (struct admin_auth){0};
}

void admin_auth_set(struct admin_auth *auth, const struct sl_config *cfg)
{
    admin_auth_clear(auth);
    auth->token = cfg->admin_token ? strdup(cfg->admin_token) : NULL;
    auth->token_reads = cfg->admin_token_reads;
    auth->read_only = cfg->admin_read_only;
}

bool admin_method_changes(const char *method)
{
    return strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 && strcmp(method, "OPTIONS") != 0;
}

/* Either header may carry it: a registry client sends X-Sluice-Token with
 * the registry's token and may add the admin token as a bearer. */
static bool carries_token(const struct admin_request *rq, const char *token)
{
    return admin_x_token_matches(rq, token) || admin_bearer_matches(rq, token);
}

bool admin_auth_allows(const struct admin_auth *auth, const struct admin_request *rq, struct admin_reply *reply)
{
    if (!auth)
        return true;
    bool changes = admin_method_changes(rq->method);
    if (auth->token && (changes || auth->token_reads) && !carries_token(rq, auth->token)) {
        admin_reply_error(reply, 401, "this admin API needs its token (Authorization: Bearer TOKEN, the first "
                                      "line of admin.token_file)%s",
                          changes ? " for changes" : "");
        return false;
    }
    if (auth->read_only && changes) {
        admin_reply_error(reply, 403, "the admin API is read-only (admin.read_only: true): %s is refused",
                          rq->method);
        return false;
    }
    return true;
}
