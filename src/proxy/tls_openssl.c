/* The `openssl:` block: see tls_openssl.h. */
#include "proxy/tls_openssl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/provider.h>
#include <openssl/ssl.h>

#include "core/config_walk.h"

enum { OK_PROVIDERS, OK_PROVIDER_PATH, OK_CONFIG, OK_ASYNC };
static const char *const openssl_keys[] = { "providers", "provider_path", "config", "async", NULL };

/* OpenSSL's error queue as one line ("reason (detail)" of the first
 * error, which names the cause; the rest only repeat it), and the queue
 * cleared. */
const char *tls_openssl_error(char *buf, size_t cap)
{
    OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CRYPTO_STRINGS, NULL);
    const char *data = NULL;
    int flags = 0;
    unsigned long e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags);
    if (!e) {
        snprintf(buf, cap, "unknown error");
    } else {
        /* A system call's failure carries errno as its reason. */
        const char *reason = ERR_SYSTEM_ERROR(e) ? strerror(ERR_GET_REASON(e)) : ERR_reason_error_string(e);
        bool has_data = data && *data && (flags & ERR_TXT_STRING);
        snprintf(buf, cap, "%s%s%s%s", reason ? reason : "error", has_data ? " (" : "", has_data ? data : "",
                 has_data ? ")" : "");
    }
    ERR_clear_error();
    return buf;
}

static void provider_item(struct config_ctx *c, const struct ynode *item, void *obj)
{
    struct cfg_openssl *o = obj;
    char *name = NULL;
    if (!config_get_text(c, item, "a provider name", &name))
        return;
    for (size_t i = 0; i < o->n_providers; i++)
        if (strcmp(o->providers[i], name) == 0) {
            config_err_at(c, item->line, "provider \"%s\" is listed twice", config_shown_str(c, name));
            free(name);
            return;
        }
    o->provider_lines[o->n_providers] = item->line;
    o->providers[o->n_providers++] = name;
}

static void openssl_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct cfg_openssl *o = obj;
    switch (key) {
    case OK_PROVIDERS:
        config_each_item(c, v, TLS_OPENSSL_MAX_PROVIDERS, "providers", provider_item, o);
        break;
    case OK_PROVIDER_PATH:
        o->provider_path_line = v->line;
        config_get_text(c, v, "a directory", &o->provider_path);
        break;
    case OK_CONFIG:
        o->config_file_line = v->line;
        config_get_text(c, v, "an OpenSSL configuration file", &o->config_file);
        break;
    case OK_ASYNC:
        config_get_bool(c, v, &o->async);
        break;
    }
}

/* Load everything the block names into a library context of its own,
 * which is then thrown away: the running process is untouched. */
static void check_loadable(struct config_ctx *c, struct cfg_openssl *o)
{
    char why[256];
    OSSL_LIB_CTX *lib = OSSL_LIB_CTX_new();
    if (!lib)
        config_oom();
    if (o->config_file && !OSSL_LIB_CTX_load_config(lib, o->config_file))
        config_err_in(c, o->config_file_line, "config", "cannot load OpenSSL configuration %s: %s",
                      config_shown_str(c, o->config_file), tls_openssl_error(why, sizeof why));
    if (o->provider_path && !OSSL_PROVIDER_set_default_search_path(lib, o->provider_path))
        config_err_in(c, o->provider_path_line, "provider_path", "cannot use %s: %s", config_shown_str(c, o->provider_path),
                      tls_openssl_error(why, sizeof why));
    for (size_t i = 0; i < o->n_providers; i++) {
        OSSL_PROVIDER *p = OSSL_PROVIDER_load(lib, o->providers[i]);
        if (p) {
            OSSL_PROVIDER_unload(p);
            continue;
        }
        char sub[32];
        snprintf(sub, sizeof sub, "providers[%zu]", i);
        config_err_in(c, o->provider_lines[i], sub, "cannot load provider %s: %s", config_shown_str(c, o->providers[i]),
                      tls_openssl_error(why, sizeof why));
    }
    OSSL_LIB_CTX_free(lib);
}

void tls_openssl_parse(struct config_ctx *c, const struct ynode *v, struct cfg_openssl *out)
{
    out->present = true;
    out->line = v->line;
    size_t errors_before = config_error_count(c);
    if (!config_walk_map(c, v, openssl_keys, openssl_field, out))
        return;
    if (config_error_count(c) == errors_before)
        check_loadable(c, out);
}

void tls_openssl_free(struct cfg_openssl *o)
{
    for (size_t i = 0; i < o->n_providers; i++)
        free(o->providers[i]);
    free(o->provider_path);
    free(o->config_file);
    memset(o, 0, sizeof *o);
}

static bool same_str(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

bool tls_openssl_same(const struct cfg_openssl *a, const struct cfg_openssl *b)
{
    if (a->n_providers != b->n_providers || a->async != b->async)
        return false;
    for (size_t i = 0; i < a->n_providers; i++)
        if (strcmp(a->providers[i], b->providers[i]) != 0)
            return false;
    return same_str(a->provider_path, b->provider_path) && same_str(a->config_file, b->config_file);
}

/* What tls_openssl_apply() loaded, for tls_openssl_unload(). */
static OSSL_PROVIDER *loaded[TLS_OPENSSL_MAX_PROVIDERS];
static size_t n_loaded;
static bool async_mode; /* inherited by the workers forked after apply */

int tls_openssl_apply(const struct cfg_openssl *o, char *err, size_t errlen)
{
    char why[256];
    if (o->config_file && !OSSL_LIB_CTX_load_config(NULL, o->config_file)) {
        snprintf(err, errlen, "openssl.config: cannot load %s: %s", o->config_file, tls_openssl_error(why, sizeof why));
        return -1;
    }
    if (o->provider_path && !OSSL_PROVIDER_set_default_search_path(NULL, o->provider_path)) {
        snprintf(err, errlen, "openssl.provider_path: cannot use %s: %s", o->provider_path,
                 tls_openssl_error(why, sizeof why));
        return -1;
    }
    /* Loaded for the life of the process: contexts built later (and every
     * worker forked after this) use them. Naming any provider turns off
     * OpenSSL's implicit "default", which is why docs/tls.md tells users
     * to list it after a hardware provider as the fallback. */
    for (size_t i = 0; i < o->n_providers && n_loaded < TLS_OPENSSL_MAX_PROVIDERS; i++) {
        OSSL_PROVIDER *p = OSSL_PROVIDER_load(NULL, o->providers[i]);
        if (!p) {
            snprintf(err, errlen, "openssl.providers[%zu]: cannot load %s: %s", i, o->providers[i],
                     tls_openssl_error(why, sizeof why));
            return -1;
        }
        loaded[n_loaded++] = p;
    }
    async_mode = o->async;
    return 0;
}

void tls_openssl_set_async(SSL_CTX *ctx)
{
    if (async_mode)
        SSL_CTX_set_mode(ctx, SSL_MODE_ASYNC);
}

void tls_openssl_unload(void)
{
    while (n_loaded > 0)
        OSSL_PROVIDER_unload(loaded[--n_loaded]);
}
