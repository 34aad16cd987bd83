/* The proxy's `openssl:` block: which OpenSSL providers do the
 * cryptography, an OpenSSL configuration file, and asynchronous mode.
 *
 * This is how hardware offload plugs in, as Tengine does with Intel QAT:
 * a provider (OpenSSL 3's replacement for engines; QAT's is
 * "qatprovider") is loaded into the process before any TLS context is
 * built, and with `async: true` a handshake whose private-key operation
 * the provider runs on the card pauses (SSL_ERROR_WANT_ASYNC) instead of
 * blocking the worker, which serves other connections meanwhile.
 *
 * Providers are process-wide and cannot be unloaded safely while
 * contexts use them, so the block is applied once, by the master before
 * it forks the first workers; a reload that changes it is accepted for
 * everything else and logs that the `openssl:` change waits for a
 * restart. `sluice check` loads each provider and the configuration file
 * into a throwaway library context, so a wrong name or path is a config
 * error with its line, not a failure at start.
 */
#ifndef SLUICE_PROXY_TLS_OPENSSL_H
#define SLUICE_PROXY_TLS_OPENSSL_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/types.h>

struct config_ctx;
struct ynode;

#define TLS_OPENSSL_MAX_PROVIDERS 8

struct cfg_openssl {
    bool present;              /* the block is in the file */
    char *providers[TLS_OPENSSL_MAX_PROVIDERS]; /* in load order; none = OpenSSL's default */
    size_t n_providers;
    char *provider_path;       /* where provider modules are looked up; NULL = OpenSSL's */
    char *config_file;         /* an openssl.cnf to load first; NULL = none */
    bool async;                /* SSL_MODE_ASYNC on every TLS context */
    int line;
    int provider_lines[TLS_OPENSSL_MAX_PROVIDERS], provider_path_line, config_file_line; /* for errors */
};

/* Parse the `openssl:` mapping into out (which starts zeroed), loading
 * what it names into a throwaway library context to prove it loads. */
void tls_openssl_parse(struct config_ctx *c, const struct ynode *v, struct cfg_openssl *out);

void tls_openssl_free(struct cfg_openssl *o);

/* Whether two blocks ask for the same thing (a reload compares them). */
bool tls_openssl_same(const struct cfg_openssl *a, const struct cfg_openssl *b);

/* Apply the block to the process: the configuration file, the search
 * path, then the providers in order. Once per process, before any TLS
 * context exists. Returns 0, or -1 with a reason in err. */
int tls_openssl_apply(const struct cfg_openssl *o, char *err, size_t errlen);

/* SSL_MODE_ASYNC on ctx if the applied block asked for it (every TLS
 * context the proxy builds, server and client side, goes through this).
 * The transports then see SSL_ERROR_WANT_ASYNC while a provider works
 * on a private-key operation and resume it on the next turn of the
 * loop. */
void tls_openssl_set_async(SSL_CTX *ctx);

/* OpenSSL's error queue as one line for a message: the first error's
 * reason, with its detail ("No such file or directory (calling
 * fopen(...))"), and the queue cleared. Returns buf. */
const char *tls_openssl_error(char *buf, size_t cap);

/* Unload what tls_openssl_apply() loaded, when no TLS context is left
 * (the master's exit). */
void tls_openssl_unload(void);

#endif
