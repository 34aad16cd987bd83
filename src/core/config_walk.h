/* The configuration walker: what a section parser (core/config.h) uses to
 * read its part of the YAML tree and report problems.
 *
 * Every problem becomes one line "FILE:LINE: key.path: reason". The walk
 * keeps the key path of the node being looked at (config_path_push/pop),
 * so reporting needs only a line. A parser never stops at a bad value: it
 * reports it, keeps the default and goes on, so one run shows every
 * problem. The typed getters below report their own errors and return
 * false (or NULL), leaving the destination untouched.
 *
 * A config is small, so running out of memory while loading one is fatal
 * (config_xcalloc and friends abort with a message).
 */
#ifndef SLUICE_CORE_CONFIG_WALK_H
#define SLUICE_CORE_CONFIG_WALK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/addr.h"
#include "core/yaml_tree.h"

struct sl_config;
struct config_errors;

#define CONFIG_SECOND 1000u
#define CONFIG_MINUTE (60u * CONFIG_SECOND)
#define CONFIG_HOUR (60u * CONFIG_MINUTE)
#define CONFIG_KIB 1024u
#define CONFIG_MIB (1024u * CONFIG_KIB)
#define CONFIG_NAME_MAX 64   /* config_get_name() */
#define CONFIG_MAX_KEYS 32   /* keys of one mapping walked by config_walk_map() */

struct config_ctx;

/* A walk of its own, for text that is not a configuration file (a request
 * body of the admin API, say): errors go to errs as "file:LINE: path:
 * reason", starting from an empty path. cfg may be NULL. Free with
 * config_ctx_free. NULL on out of memory. */
struct config_ctx *config_ctx_new(const char *file, struct config_errors *errs, const struct sl_config *cfg);
void config_ctx_free(struct config_ctx *c);

/* The configuration being loaded: its root keys (log, admin) are read
 * before any section's check runs. NULL for a walk of its own. */
const struct sl_config *config_ctx_config(const struct config_ctx *c);
/* Errors reported so far. */
size_t config_error_count(const struct config_ctx *c);
/* Line of the key whose value is being parsed (config_walk_map). */
int config_key_line(const struct config_ctx *c);

/* ---- key paths and errors ---- */

/* Append to the path ("[3]", ".address"); returns the mark to pop back to. */
size_t config_path_push(struct config_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void config_path_pop(struct config_ctx *c, size_t mark);

/* Report at the current path. */
void config_err_at(struct config_ctx *c, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Report at the current path plus ".sub", for checks made after a
 * mapping was walked (cross-field rules, missing keys). */
void config_err_in(struct config_ctx *c, int line, const char *sub, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* "missing required key \"key\"" at the mapping's line. */
void config_missing_key(struct config_ctx *c, const struct ynode *map, const char *key);
/* "expected WANT, got ..." for a node of the wrong kind. */
void config_type_error(struct config_ctx *c, const struct ynode *n, const char *want);

/* A value quoted in a message: single-line, escaped, length-capped. The
 * result lives until a few more calls (a small ring of buffers). */
const char *config_shown(struct config_ctx *c, const char *s, size_t len);
const char *config_shown_str(struct config_ctx *c, const char *s);

/* ---- typed access to nodes ---- */

/* An empty value ("key:" with nothing after it) reads as an empty mapping
 * or list, so a section can be present but left at its defaults. */
bool config_expect_map(struct config_ctx *c, const struct ynode *n);
bool config_expect_seq(struct config_ctx *c, const struct ynode *n);
/* A non-null scalar without NUL bytes, or NULL (reported, with `want`). */
const char *config_scalar(struct config_ctx *c, const struct ynode *n, const char *want);
bool config_get_uint(struct config_ctx *c, const struct ynode *v, uint32_t min, uint32_t max, uint32_t *out);
/* "500ms", "10s", "2m", "1h" or bare milliseconds, within [min, max] ms. */
bool config_get_duration(struct config_ctx *c, const struct ynode *v, uint32_t min, uint32_t max, uint32_t *out);
/* "512", "16k", "1m", "1g", within [min, max] bytes. */
bool config_get_size(struct config_ctx *c, const struct ynode *v, uint32_t min, uint32_t max, uint32_t *out);
bool config_get_bool(struct config_ctx *c, const struct ynode *v, bool *out);
/* One of the NULL-terminated names; *out is its index. A near miss gets
 * a "did you mean" suggestion. */
bool config_get_enum(struct config_ctx *c, const struct ynode *v, const char *const *names, int *out);
/* A non-empty string (file paths), copied into *dst. */
bool config_get_text(struct config_ctx *c, const struct ynode *v, const char *want, char **dst);
/* [A-Za-z0-9_.-]{1,64}: names safe in logs and URLs, copied into *dst. */
bool config_get_name(struct config_ctx *c, const struct ynode *v, char **dst);
/* HOST:PORT (addr_parse). */
bool config_get_addr(struct config_ctx *c, const struct ynode *v, struct sl_addr *out);

/* A scalar, or a list of at most max scalars ("at most MAX WHAT" past
 * that), each handed to one() with the path extended by "[i]": a key that
 * takes one value or several (listen: 127.0.0.1:53, or a list). */
typedef void config_item_fn(struct config_ctx *c, const struct ynode *item, void *obj);
void config_each_item(struct config_ctx *c, const struct ynode *v, size_t max, const char *what, config_item_fn *one,
                      void *obj);

/* ---- mappings ---- */

/* Called for each known key of a mapping, with the path extended by it;
 * key is the index into the key list. */
typedef void config_field_fn(struct config_ctx *c, int key, const struct ynode *value, void *obj);

/* Check `map` against the NULL-terminated `keys` (at most CONFIG_MAX_KEYS):
 * unknown keys (with a "did you mean" suggestion) and duplicate keys are
 * reported, each known key goes to fn. Returns false if `map` is not a
 * mapping (already reported). */
bool config_walk_map(struct config_ctx *c, const struct ynode *map, const char *const *keys, config_field_fn *fn,
                     void *obj);

/* Whether a mapping (or an empty value) has `key`, valid or not: "missing
 * key" is only reported when the key is really absent. */
bool config_map_has_key(const struct ynode *map, const char *key);

/* ---- duplicates and lookups, O(n log n) ---- */

struct config_name_ref {
    const char *name;
    size_t idx;
};

/* Sorted (name, index) pairs of the non-NULL names; *n_out of them. */
struct config_name_ref *config_sort_names(const char *const *names, size_t n, size_t *n_out);
/* first[i] = the lowest index whose name equals names[i] (i itself if none
 * earlier), so duplicates can be reported in document order. Free it. */
size_t *config_first_same(const char *const *names, size_t n);

/* ---- admin API bodies ---- */

/* A body of the admin API (JSON, which the YAML reader takes), walked as
 * the file's sections are, so the API accepts exactly what the file would:
 * fn gets a context named "api" and the body's root, and reports through
 * it. Returns 0, or -1 with the first problem in err as "path: reason"
 * ("reals[0].weight: ...", the reason alone for the body itself), or
 * "the body is not valid JSON: ..." / "the body is empty". */
typedef void config_body_fn(struct config_ctx *c, const struct ynode *root, void *arg);
int config_walk_body(const char *text, size_t len, config_body_fn *fn, void *arg, char *err, size_t errlen);

/* ---- values ---- */

/* Whole decimal number up to UINT32_MAX. Returns 0 or -1. */
int config_parse_u32(const char *s, uint32_t *out);
/* "10s", "500ms", "2m", "1h" or a bare number of milliseconds; "16k",
 * "1m", "512" bytes (shared with the admin API). Return 0 or -1. */
int config_parse_duration_ms(const char *s, uint32_t *out);
int config_parse_size(const char *s, uint32_t *out);
/* The inverse, for range messages: 86400000 -> "24h", 1048576 -> "1m". */
const char *config_fmt_ms(char *buf, size_t cap, uint32_t ms);
const char *config_fmt_size(char *buf, size_t cap, uint32_t n);
/* Printable ASCII without spaces (URL paths, host names). */
bool config_is_visible(const char *s);
/* The word of the NULL-terminated names closest to `word` if it is
 * plausibly a typo of it (the "did you mean" of unknown keys), or NULL. */
const char *config_closest(const char *word, const char *const *names);
/* A character of a name: A-Z a-z 0-9 _ . - */
bool config_is_name_char(char ch);

/* ---- memory (fatal when out) ---- */

void *config_xcalloc(size_t n, size_t size);
char *config_xstrdup(const char *s);
/* Replace an owned string (defaults like "/" are owned too). */
void config_set_str(char **dst, const char *s);
__attribute__((noreturn)) void config_oom(void);

#endif
