/* Configuration loader: YAML text -> struct sl_config.
 *
 * Two stages. yaml_tree turns the text into a tree of nodes that remember
 * their line (syntax errors stop here). Then the root mapping is walked in
 * document order: the core reads its own keys (log:, admin:) and hands
 * every other key to the section that registered it (config.h). Once the
 * whole root is read, each section checks what needs several keys (the
 * proxy's listeners name its pools; they also must not take the admin
 * API's address). The walker itself is in config_walk.c.
 */
#include "core/config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/admin_auth.h"
#include "core/config_walk.h"
#include "core/log_sink.h"

#define CONFIG_MAX_BYTES (16u << 20)

/* ------------------------------------------------------------------------
 * The section table.
 */

static const char *const core_keys[] = { "log", "admin", "user", "group", NULL };
enum { CORE_LOG, CORE_ADMIN, CORE_USER, CORE_GROUP };

static const struct config_section *registered[CONFIG_MAX_SECTIONS];
static size_t n_registered;

static bool key_owned(const char *key)
{
    for (size_t i = 0; core_keys[i]; i++)
        if (strcmp(core_keys[i], key) == 0)
            return true;
    for (size_t s = 0; s < n_registered; s++)
        for (size_t i = 0; registered[s]->keys[i]; i++)
            if (strcmp(registered[s]->keys[i], key) == 0)
                return true;
    return false;
}

int config_register_section(const struct config_section *section)
{
    size_t n_keys = sizeof core_keys / sizeof *core_keys - 1;
    for (size_t s = 0; s < n_registered; s++) {
        if (registered[s] == section)
            return 0;
        for (size_t i = 0; registered[s]->keys[i]; i++)
            n_keys++;
    }
    if (n_registered == CONFIG_MAX_SECTIONS || !section->keys || !section->create || !section->parse ||
        !section->free)
        return -1;
    for (size_t i = 0; section->keys[i]; i++, n_keys++)
        if (key_owned(section->keys[i]) || n_keys >= CONFIG_MAX_KEYS)
            return -1;
    registered[n_registered++] = section;
    return 0;
}

void *config_section_data(const struct sl_config *cfg, const struct config_section *section)
{
    for (size_t s = 0; cfg && s < cfg->n_sections; s++)
        if (cfg->sections[s].section == section)
            return cfg->sections[s].data;
    return NULL;
}

/* ------------------------------------------------------------------------
 * The core's root keys: log:, admin:
 */

static struct sl_config *config_new(const char *path)
{
    struct sl_config *cfg = config_xcalloc(1, sizeof *cfg);
    const char *why;
    cfg->path = config_xstrdup(path);
    cfg->log_level = LOG_LEVEL_INFO;
    cfg->admin_enabled = true;
    addr_parse("127.0.0.1:9900", &cfg->admin_addr, &why);
    for (size_t s = 0; s < n_registered; s++) {
        void *data = registered[s]->create();
        if (!data)
            config_oom();
        cfg->sections[cfg->n_sections].section = registered[s];
        cfg->sections[cfg->n_sections].data = data;
        cfg->n_sections++;
    }
    return cfg;
}

enum { LOGK_LEVEL, LOGK_FILE };
static const char *const log_keys[] = { "level", "file", NULL };

static void log_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct sl_config *cfg = obj;
    int level;
    switch (key) {
    case LOGK_LEVEL:
        if (config_get_enum(c, v, log_level_names, &level))
            cfg->log_level = (enum log_level)level;
        break;
    case LOGK_FILE:
        if (config_get_text(c, v, "a file path, \"stderr\", \"syslog\" or \"journald\"", &cfg->log_file) &&
            strcmp(cfg->log_file, "stderr") == 0)
            config_set_str(&cfg->log_file, NULL);
        if (cfg->log_file && log_sink_is_spec(cfg->log_file)) {
            struct log_sink_spec sp;
            char err[256];
            if (log_sink_parse(cfg->log_file, LOG_SINK_DAEMON, &sp, err, sizeof err) < 0)
                config_err_at(c, v->line, "%s", err);
        }
        cfg->log_file_line = v->line;
        break;
    }
}

enum { ADMINK_LISTEN };
static const char *const admin_keys[] = { "listen", ADMIN_AUTH_KEYS, NULL };

static void admin_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct sl_config *cfg = obj;
    if (key != ADMINK_LISTEN) {
        admin_auth_field(c, key - 1, v, cfg);
        return;
    }
    if (v->kind == YNODE_SCALAR && strcmp(v->text, "off") == 0) {
        cfg->admin_enabled = false;
        return;
    }
    config_get_addr(c, v, &cfg->admin_addr);
}

/* ------------------------------------------------------------------------
 * The document root.
 */

/* Every root key, the core's first, then each section's in registration
 * order: one list for config_walk_map (unknown keys, duplicates, "did you
 * mean" across all of them), and who owns each. */
struct root {
    struct sl_config *cfg;
    const char *keys[CONFIG_MAX_KEYS + 1];
    int owner[CONFIG_MAX_KEYS];      /* -1 = the core, else the section's index in cfg */
    int owner_key[CONFIG_MAX_KEYS];  /* the key's index in its owner's list */
    int group_line;
};

static void root_keys(struct root *r)
{
    size_t n = 0;
    for (int i = 0; core_keys[i]; i++, n++) {
        r->keys[n] = core_keys[i];
        r->owner[n] = -1;
        r->owner_key[n] = i;
    }
    for (size_t s = 0; s < r->cfg->n_sections; s++) {
        const struct config_section *sec = r->cfg->sections[s].section;
        for (int i = 0; sec->keys[i] && n < CONFIG_MAX_KEYS; i++, n++) {
            r->keys[n] = sec->keys[i];
            r->owner[n] = (int)s;
            r->owner_key[n] = i;
        }
    }
    r->keys[n] = NULL;
}

static void root_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct root *r = obj;
    int owner = r->owner[key], k = r->owner_key[key];
    if (owner >= 0) {
        r->cfg->sections[owner].section->parse(c, r->cfg->sections[owner].data, k, v);
        return;
    }
    switch (k) {
    case CORE_LOG:
        config_walk_map(c, v, log_keys, log_field, r->cfg);
        break;
    case CORE_ADMIN:
        if (config_walk_map(c, v, admin_keys, admin_field, r->cfg))
            admin_auth_check(c, r->cfg, v->line);
        break;
    case CORE_USER:
        if (config_get_text(c, v, "a user name or uid", &r->cfg->run_as.user))
            r->cfg->user_line = v->line;
        break;
    case CORE_GROUP:
        if (config_get_text(c, v, "a group name or gid", &r->cfg->run_as.group))
            r->group_line = v->line;
        break;
    }
}

/* `user` and `group` name accounts of this host: resolved now, so that
 * `sluice check` says "no such user" rather than a worker failing. */
static void resolve_run_as(struct config_ctx *c, struct root *r)
{
    struct sl_run_as *ra = &r->cfg->run_as;
    if (!ra->user) {
        if (ra->group)
            config_err_in(c, r->group_line, "group", "needs `user` (the group the workers run as, with it)");
        return;
    }
    char why[160];
    struct sl_run_as got = *ra;
    int rc = privs_resolve(ra->user, ra->group, &got, why, sizeof why);
    if (rc == PRIVS_BAD_GROUP) {
        config_err_in(c, r->group_line, "group", "%s", why);
        return;
    }
    if (rc < 0) {
        config_err_in(c, r->cfg->user_line, "user", "%s", why);
        return;
    }
    *ra = got;
}

static void load_root(struct config_ctx *c, struct sl_config *cfg, const struct ynode *root)
{
    struct root r = { .cfg = cfg };
    if (!root || ynode_is_null(root) || (root->kind == YNODE_MAP && root->n_pairs == 0)) {
        config_err_at(c, root ? root->line : 1, "empty configuration");
        return;
    }
    if (root->kind != YNODE_MAP) {
        config_type_error(c, root, "a mapping of settings");
        return;
    }
    root_keys(&r);
    config_walk_map(c, root, r.keys, root_field, &r);
    resolve_run_as(c, &r);
    for (size_t s = 0; s < cfg->n_sections; s++)
        if (cfg->sections[s].section->check)
            cfg->sections[s].section->check(c, cfg->sections[s].data);
}

/* ------------------------------------------------------------------------
 * Entry points.
 */

struct sl_config *config_load_string(const char *name, const char *text, size_t len,
                                     struct config_errors *errs)
{
    struct config_errors local = { 0 };
    struct sl_config *cfg = NULL;
    struct ynode *root = NULL;
    struct ytree_error yerr;

    errs = errs ? errs : &local;
    errs->lines = NULL;
    errs->n = 0;
    name = name ? name : "<string>";
    struct config_ctx *c = config_ctx_new(name, errs, NULL);
    if (!c)
        config_oom();
    if (len > CONFIG_MAX_BYTES) {
        config_err_at(c, 0, "configuration is larger than 16 MiB");
    } else if (ytree_parse(text ? text : "", text ? len : 0, &root, &yerr) < 0) {
        /* Syntax errors stop here: past one, libyaml's view of the rest
         * of the document is guesswork. */
        config_err_at(c, yerr.line, "%s", yerr.msg);
    } else {
        cfg = config_new(name);
        config_ctx_free(c);
        c = config_ctx_new(name, errs, cfg);
        if (!c)
            config_oom();
        load_root(c, cfg, root);
    }
    config_ctx_free(c);
    ytree_free(root);
    if (errs->n > 0) {
        config_free(cfg);
        cfg = NULL;
    }
    config_errors_free(&local);
    return cfg;
}

/* Read at most CONFIG_MAX_BYTES + 1 bytes: enough to tell "too big". */
static int read_file(FILE *f, char **out, size_t *out_len)
{
    size_t cap = 64 * CONFIG_KIB, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        config_oom();
    for (;;) {
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0 || len > CONFIG_MAX_BYTES)
            break;
        if (len == cap) {
            cap *= 2;
            char *bigger = realloc(buf, cap);
            if (!bigger)
                config_oom();
            buf = bigger;
        }
    }
    if (ferror(f)) {
        free(buf);
        return -1;
    }
    *out = buf;
    *out_len = len;
    return 0;
}

struct sl_config *config_load(const char *path, struct config_errors *errs)
{
    struct config_errors local = { 0 };
    char *text = NULL;
    size_t len = 0;

    errs = errs ? errs : &local;
    errs->lines = NULL;
    errs->n = 0;
    struct config_ctx *c = config_ctx_new(path, errs, NULL);
    if (!c)
        config_oom();
    FILE *f = fopen(path, "rb");
    if (!f) {
        config_err_at(c, 0, "cannot open: %s", strerror(errno));
    } else if (read_file(f, &text, &len) < 0) {
        config_err_at(c, 0, "cannot read: %s", strerror(errno));
    }
    config_ctx_free(c);
    if (f)
        fclose(f);
    if (errs->n > 0) {
        config_errors_free(&local);
        return NULL;
    }
    struct sl_config *cfg = config_load_string(path, text, len, errs == &local ? NULL : errs);
    free(text);
    return cfg;
}

void config_errors_free(struct config_errors *errs)
{
    if (!errs)
        return;
    for (size_t i = 0; i < errs->n; i++)
        free(errs->lines[i]);
    free(errs->lines);
    errs->lines = NULL;
    errs->n = 0;
}

void config_free(struct sl_config *cfg)
{
    if (!cfg)
        return;
    for (size_t s = 0; s < cfg->n_sections; s++)
        cfg->sections[s].section->free(cfg->sections[s].data);
    free(cfg->log_file);
    free(cfg->run_as.user);
    free(cfg->run_as.group);
    if (cfg->admin_token)
        memset(cfg->admin_token, 0, strlen(cfg->admin_token));
    free(cfg->admin_token);
    free(cfg->path);
    free(cfg);
}
