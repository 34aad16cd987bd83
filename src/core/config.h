/* Sluice configuration: the parsed, validated form of the YAML file.
 *
 * The core owns the root keys every daemon reads (log:, admin:, user:,
 * group:); every
 * other root key belongs to a section that a tier registers
 * (config_register_section): the proxy's pools:, listeners:, workers: and
 * drain_timeout:, sluice l4's l4:. config_load() reads the file with
 * libyaml, walks the root mapping in document order handing each key to
 * its owner, then lets each section cross-check what it read. A key no
 * registered section owns is an unknown key, with a "did you mean" from
 * all of them.
 *
 * Every problem is reported as "FILE:LINE: key.path: reason", and all
 * problems are collected, not just the first, so `sluice check` can show
 * them in one go. A section's parsed data hangs off struct sl_config; the
 * tier reaches its own through a typed accessor (proxy_conf(cfg),
 * l4_conf(cfg)) built on config_section_data().
 */
#ifndef SLUICE_CORE_CONFIG_H
#define SLUICE_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/addr.h"
#include "core/log.h"
#include "core/privs.h"
#include "core/yaml_tree.h"

#define CONFIG_MAX_SECTIONS 8

struct config_ctx;
struct config_section;

struct sl_config {
    char *path;
    enum log_level log_level;    /* default info */
    char *log_file;              /* NULL = stderr */
    int log_file_line;
    struct sl_addr admin_addr;   /* default 127.0.0.1:9900 */
    bool admin_enabled;
    /* `user` and `group`: what the processes serving clients run as
     * (core/privs.h); run_as.set false when `user` is not given. */
    struct sl_run_as run_as;
    int user_line;
    char *admin_token;           /* admin.token_file's token; NULL: none (core/admin_auth.h) */
    bool admin_token_reads;      /* admin.token_reads */
    bool admin_read_only;        /* admin.read_only */
    /* Each registered section's data, in registration order. */
    struct {
        const struct config_section *section;
        void *data;
    } sections[CONFIG_MAX_SECTIONS];
    size_t n_sections;
};

/* One error line, "FILE:LINE: key.path: reason". */
struct config_errors {
    char **lines;
    size_t n;
};

/* A part of the configuration a tier owns: some root keys and what they
 * hold (see config_walk.h for the walker its functions use). */
struct config_section {
    const char *name;                /* "proxy", "l4" */
    const char *const *keys;         /* the root keys it owns, NULL-terminated */
    /* Its data at its defaults; called for every load. NULL on out of memory. */
    void *(*create)(void);
    /* Root key keys[key] as found in the file, in document order, with the
     * path set to the key. */
    void (*parse)(struct config_ctx *c, void *data, int key, const struct ynode *value);
    /* Once every root key is read (the core's too): rules across keys, and
     * whatever had to wait for other keys. Optional. */
    void (*check)(struct config_ctx *c, void *data);
    void (*free)(void *data);
    /* Optional: open the files its data names the way its daemon will
     * (config_check_files), appending an error for each that cannot be. */
    void (*check_files)(const struct sl_config *cfg, const void *data, struct config_errors *errs);
};

/* Make a section part of every configuration loaded from now on. The same
 * section again is a no-op. Returns 0, or -1 if a root key is owned
 * already (by the core or another section) or the table is full. */
int config_register_section(const struct config_section *section);

/* The data of `section` in cfg, or NULL when it was not registered. */
void *config_section_data(const struct sl_config *cfg, const struct config_section *section);

/* Load and validate. Returns NULL and fills errs (at least one line) on
 * failure. On success errs is empty. */
struct sl_config *config_load(const char *path, struct config_errors *errs);

/* Same, from a string in memory; `name` is used as FILE in errors. */
struct sl_config *config_load_string(const char *name, const char *text, size_t len,
                                     struct config_errors *errs);

void config_free(struct sl_config *cfg);
void config_errors_free(struct config_errors *errs);

/* The files a valid configuration makes the daemon write. */
enum config_files {
    CONFIG_FILES_LOG = 1,            /* log.file: every daemon */
    CONFIG_FILES_SECTIONS = 2,       /* what sections name (the proxy's access logs) */
    CONFIG_FILES_ALL = CONFIG_FILES_LOG | CONFIG_FILES_SECTIONS,
};

/* Open each of those files the way the daemon will (write, append, create
 * if missing; never truncate), so that one it could not open is an error
 * "FILE:LINE: key.path: cannot open PATH: reason" appended to errs, found
 * before anything starts. A file this had to create is removed again:
 * `sluice check` leaves nothing behind, and neither does a start or reload
 * that is refused for another file (the daemon creates its files itself
 * once it goes ahead). Returns the number of errors added.
 * src/core/config_files.c */
size_t config_check_files(const struct sl_config *cfg, unsigned which, struct config_errors *errs);

/* For a section's check_files: 0 when path can be opened for appending,
 * else an errno; and the error line for one that cannot. */
int config_probe_append(const char *path);
void config_file_error(struct config_errors *errs, const struct sl_config *cfg, int line, const char *key,
                       const char *path, int err);

#endif
