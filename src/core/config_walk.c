/* The configuration walker: see config_walk.h. Moved out of config.c so
 * that every section parser (the proxy's, sluice l4's, the health check's)
 * reads its part of the tree the same way. */
#include "core/config_walk.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"

#define MAX_ERRORS 100   /* past this the rest is noise; also bounds the work */
#define PATH_CAP 512
#define SHOWN_CAP 96     /* longest quoted value echoed in a message */

/* ------------------------------------------------------------------------
 * Memory: a config is small, so running out of memory here is fatal.
 */

void config_oom(void)
{
    fputs("sluice: out of memory\n", stderr);
    abort();
}

void *config_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        config_oom();
    return p;
}

char *config_xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        config_oom();
    return p;
}

/* Replace an owned string (defaults like "/" are owned too). */
void config_set_str(char **dst, const char *s)
{
    free(*dst);
    *dst = s ? config_xstrdup(s) : NULL;
}
/* ------------------------------------------------------------------------
 * Value parsers.
 */

/* Leading decimal digits of s, refusing anything past UINT32_MAX. */
static int parse_digits(const char *s, uint64_t *out, const char **end)
{
    const char *p = s;
    uint64_t v = 0;
    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > UINT32_MAX)
            return -1;
    }
    *out = v;
    *end = p;
    return 0;
}

struct unit {
    const char *suffix;
    uint32_t scale;
};

static int parse_with_units(const char *s, const struct unit *units, size_t n_units, uint32_t *out)
{
    uint64_t n;
    const char *end;
    if (!s || parse_digits(s, &n, &end) < 0)
        return -1;
    for (size_t i = 0; i < n_units; i++) {
        if (strcmp(end, units[i].suffix) != 0)
            continue;
        if (n > UINT32_MAX / units[i].scale)
            return -1;
        *out = (uint32_t)(n * units[i].scale);
        return 0;
    }
    return -1;
}

int config_parse_duration_ms(const char *s, uint32_t *out)
{
    static const struct unit units[] = {
        { "", 1 }, { "ms", 1 }, { "s", CONFIG_SECOND }, { "m", CONFIG_MINUTE }, { "h", CONFIG_HOUR },
    };
    return parse_with_units(s, units, sizeof units / sizeof units[0], out);
}

int config_parse_size(const char *s, uint32_t *out)
{
    static const struct unit units[] = {
        { "", 1 },      { "k", CONFIG_KIB }, { "K", CONFIG_KIB },         { "m", CONFIG_MIB },
        { "M", CONFIG_MIB },   { "g", 1024u * CONFIG_MIB }, { "G", 1024u * CONFIG_MIB },
    };
    return parse_with_units(s, units, sizeof units / sizeof units[0], out);
}

int config_parse_u32(const char *s, uint32_t *out)
{
    uint64_t n;
    const char *end;
    if (parse_digits(s, &n, &end) < 0 || *end)
        return -1;
    *out = (uint32_t)n;
    return 0;
}

/* Inverse of the parsers, for range messages: 86400000 -> "24h". */
const char *config_fmt_ms(char *buf, size_t cap, uint32_t ms)
{
    if (ms && ms % CONFIG_HOUR == 0)
        snprintf(buf, cap, "%" PRIu32 "h", ms / CONFIG_HOUR);
    else if (ms && ms % CONFIG_MINUTE == 0)
        snprintf(buf, cap, "%" PRIu32 "m", ms / CONFIG_MINUTE);
    else if (ms && ms % CONFIG_SECOND == 0)
        snprintf(buf, cap, "%" PRIu32 "s", ms / CONFIG_SECOND);
    else
        snprintf(buf, cap, "%" PRIu32 "ms", ms);
    return buf;
}

const char *config_fmt_size(char *buf, size_t cap, uint32_t n)
{
    if (n && n % (1024u * CONFIG_MIB) == 0)
        snprintf(buf, cap, "%" PRIu32 "g", n / (1024u * CONFIG_MIB));
    else if (n && n % CONFIG_MIB == 0)
        snprintf(buf, cap, "%" PRIu32 "m", n / CONFIG_MIB);
    else if (n && n % CONFIG_KIB == 0)
        snprintf(buf, cap, "%" PRIu32 "k", n / CONFIG_KIB);
    else
        snprintf(buf, cap, "%" PRIu32, n);
    return buf;
}
/* ------------------------------------------------------------------------
 * Walk context, key paths and error reporting.
 */

struct config_ctx {
    const char *file;
    struct config_errors *errs;
    const struct sl_config *cfg;  /* NULL: a walk of its own */
    char path[PATH_CAP];
    size_t path_len;
    char shown[4][SHOWN_CAP]; /* ring: a message may quote several values */
    unsigned shown_next;
    int key_line;               /* line of the key whose handler is running */
};

struct config_ctx *config_ctx_new(const char *file, struct config_errors *errs, const struct sl_config *cfg)
{
    struct config_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->file = file ? file : "<string>";
    c->errs = errs;
    c->cfg = cfg;
    return c;
}

void config_ctx_free(struct config_ctx *c)
{
    free(c);
}

const struct sl_config *config_ctx_config(const struct config_ctx *c)
{
    return c->cfg;
}

size_t config_error_count(const struct config_ctx *c)
{
    return c->errs->n;
}

int config_key_line(const struct config_ctx *c)
{
    return c->key_line;
}

/* Quote-safe, single-line, length-capped copy of a value for a message.
 * Control characters would break the one-error-per-line contract. */
const char *config_shown(struct config_ctx *c, const char *s, size_t len)
{
    char *out = c->shown[c->shown_next++ % 4];
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        char piece[8];
        size_t plen = 1;
        if (ch == '"' || ch == '\\') {
            plen = (size_t)snprintf(piece, sizeof piece, "\\%c", ch);
        } else if (ch < 0x20 || ch == 0x7f) {
            plen = (size_t)snprintf(piece, sizeof piece, "\\x%02x", ch);
        } else if (ch >= 0xc0) {
            /* Keep a UTF-8 sequence whole so truncation can't split it. */
            plen = ch >= 0xf0 ? 4 : ch >= 0xe0 ? 3 : 2;
            if (plen > len - i)
                plen = len - i;
            memcpy(piece, s + i, plen);
        } else {
            piece[0] = (char)ch;
        }
        if (o + plen + sizeof "..." > SHOWN_CAP) {
            memcpy(out + o, "...", sizeof "...");
            return out;
        }
        memcpy(out + o, piece, plen);
        o += plen;
        i += (ch >= 0xc0) ? plen - 1 : 0;
    }
    out[o] = '\0';
    return out;
}

const char *config_shown_str(struct config_ctx *c, const char *s)
{
    return config_shown(c, s, strlen(s));
}

__attribute__((format(printf, 2, 3)))
size_t config_path_push(struct config_ctx *c, const char *fmt, ...)
{
    size_t mark = c->path_len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->path + mark, sizeof c->path - mark, fmt, ap);
    va_end(ap);
    if (n > 0)
        c->path_len = mark + (size_t)n < sizeof c->path ? mark + (size_t)n : sizeof c->path - 1;
    return mark;
}

static size_t path_push_key(struct config_ctx *c, const char *key, size_t len)
{
    return config_path_push(c, c->path_len ? ".%s" : "%s", config_shown(c, key, len));
}

void config_path_pop(struct config_ctx *c, size_t mark)
{
    c->path_len = mark;
    c->path[mark] = '\0';
}

static void add_line(struct config_errors *errs, char *line)
{
    char **lines = realloc(errs->lines, (errs->n + 1) * sizeof *lines);
    if (!lines)
        config_oom();
    errs->lines = lines;
    errs->lines[errs->n++] = line;
}

static bool errors_full(const struct config_ctx *c)
{
    return c->errs->n >= MAX_ERRORS;
}

static void verr_at(struct config_ctx *c, int line, const char *fmt, va_list ap)
{
    char *reason = NULL, *text = NULL;
    if (c->errs->n > MAX_ERRORS)
        return;
    if (c->errs->n == MAX_ERRORS) {
        if (asprintf(&text, "%s:%d: (root): too many errors, stopping after %d", c->file, line,
                     MAX_ERRORS) < 0)
            config_oom();
        add_line(c->errs, text);
        return;
    }
    if (vasprintf(&reason, fmt, ap) < 0)
        config_oom();
    if (asprintf(&text, "%s:%d: %s: %s", c->file, line, c->path_len ? c->path : "(root)", reason) < 0)
        config_oom();
    free(reason);
    add_line(c->errs, text);
}

/* Report at the current path. */
__attribute__((format(printf, 3, 4)))
void config_err_at(struct config_ctx *c, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verr_at(c, line, fmt, ap);
    va_end(ap);
}

/* Report at the current path plus ".sub", for checks made after a
 * mapping was walked (cross-field rules, missing keys). */
__attribute__((format(printf, 4, 5)))
void config_err_in(struct config_ctx *c, int line, const char *sub, const char *fmt, ...)
{
    size_t mark = config_path_push(c, c->path_len ? ".%s" : "%s", sub);
    va_list ap;
    va_start(ap, fmt);
    verr_at(c, line, fmt, ap);
    va_end(ap);
    config_path_pop(c, mark);
}

void config_missing_key(struct config_ctx *c, const struct ynode *map, const char *key)
{
    config_err_at(c, map->line, "missing required key \"%s\"", key);
}
/* ------------------------------------------------------------------------
 * "Did you mean" suggestions.
 */

static size_t edit_distance(const char *a, const char *b)
{
    size_t lb = strlen(b);
    size_t row[CONFIG_NAME_MAX + 1];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; a[i - 1]; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* The known word closest to `word`, if it is plausibly a typo of it. */
static const char *closest(const char *word, const char *const *names)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    if (strlen(word) > CONFIG_NAME_MAX)
        return NULL;
    for (size_t i = 0; names[i]; i++) {
        size_t limit = strlen(names[i]) <= 4 ? 1 : 2;
        size_t d = edit_distance(word, names[i]);
        if (d <= limit && d < best_d) {
            best = names[i];
            best_d = d;
        }
    }
    return best;
}

const char *config_closest(const char *word, const char *const *names)
{
    return closest(word, names);
}
/* ------------------------------------------------------------------------
 * Typed access to nodes. Each getter reports its own error and returns
 * false (or NULL), leaving the destination untouched.
 */

void config_type_error(struct config_ctx *c, const struct ynode *n, const char *want)
{
    if (n->kind == YNODE_ALIAS)
        config_err_at(c, n->line, "YAML aliases are not supported (found *%s)", config_shown(c, n->text, n->len));
    else if (n->kind == YNODE_MAP)
        config_err_at(c, n->line, "expected %s, got a mapping", want);
    else if (n->kind == YNODE_SEQ)
        config_err_at(c, n->line, "expected %s, got a list", want);
    else if (ynode_is_null(n))
        config_err_at(c, n->line, "expected %s, got nothing", want);
    else
        config_err_at(c, n->line, "expected %s, got \"%s\"", want, config_shown(c, n->text, n->len));
}

/* An empty value ("key:" with nothing after it) reads as an empty mapping
 * or list, so a section can be present but left at its defaults. */
bool config_expect_map(struct config_ctx *c, const struct ynode *n)
{
    if (n->kind == YNODE_MAP || ynode_is_null(n))
        return true;
    config_type_error(c, n, "a mapping");
    return false;
}

bool config_expect_seq(struct config_ctx *c, const struct ynode *n)
{
    if (n->kind == YNODE_SEQ || ynode_is_null(n))
        return true;
    config_type_error(c, n, "a list");
    return false;
}

const char *config_scalar(struct config_ctx *c, const struct ynode *n, const char *want)
{
    if (n->kind != YNODE_SCALAR || ynode_is_null(n)) {
        config_type_error(c, n, want);
        return NULL;
    }
    if (strlen(n->text) != n->len) {
        config_err_at(c, n->line, "expected %s, got a string containing a NUL byte", want);
        return NULL;
    }
    return n->text;
}

bool config_get_uint(struct config_ctx *c, const struct ynode *v, uint32_t min, uint32_t max, uint32_t *out)
{
    char want[64];
    snprintf(want, sizeof want, "an integer from %" PRIu32 " to %" PRIu32, min, max);
    const char *s = config_scalar(c, v, want);
    uint32_t n;
    if (!s)
        return false;
    if (config_parse_u32(s, &n) < 0 || n < min || n > max) {
        config_err_at(c, v->line, "expected %s, got \"%s\"", want, config_shown_str(c, s));
        return false;
    }
    *out = n;
    return true;
}

bool config_get_duration(struct config_ctx *c, const struct ynode *v, uint32_t min, uint32_t max, uint32_t *out)
{
    const char *s = config_scalar(c, v, "a duration");
    char lo[16], hi[16];
    uint32_t ms;
    if (!s)
        return false;
    if (config_parse_duration_ms(s, &ms) < 0) {
        config_err_at(c, v->line, "expected a duration like \"500ms\", \"10s\", \"2m\" or \"1h\", got \"%s\"",
                      config_shown_str(c, s));
        return false;
    }
    if (ms < min || ms > max) {
        config_err_at(c, v->line, "must be from %s to %s, got \"%s\"", config_fmt_ms(lo, sizeof lo, min),
                      config_fmt_ms(hi, sizeof hi, max), config_shown_str(c, s));
        return false;
    }
    *out = ms;
    return true;
}

bool config_get_size(struct config_ctx *c, const struct ynode *v, uint32_t min, uint32_t max, uint32_t *out)
{
    const char *s = config_scalar(c, v, "a size");
    char lo[16], hi[16];
    uint32_t n;
    if (!s)
        return false;
    if (config_parse_size(s, &n) < 0) {
        config_err_at(c, v->line, "expected a size like \"512\", \"16k\" or \"1m\", got \"%s\"",
                      config_shown_str(c, s));
        return false;
    }
    if (n < min || n > max) {
        config_err_at(c, v->line, "must be from %s to %s, got \"%s\"", config_fmt_size(lo, sizeof lo, min),
                      config_fmt_size(hi, sizeof hi, max), config_shown_str(c, s));
        return false;
    }
    *out = n;
    return true;
}

bool config_get_bool(struct config_ctx *c, const struct ynode *v, bool *out)
{
    static const char *const yes[] = { "true", "True", "TRUE", NULL };
    static const char *const no[] = { "false", "False", "FALSE", NULL };
    const char *s = config_scalar(c, v, "true or false");
    if (!s)
        return false;
    for (size_t i = 0; yes[i]; i++) {
        if (strcmp(s, yes[i]) == 0 || strcmp(s, no[i]) == 0) {
            *out = strcmp(s, yes[i]) == 0;
            return true;
        }
    }
    config_err_at(c, v->line, "expected true or false, got \"%s\"", config_shown_str(c, s));
    return false;
}

/* "a, b, c or d" */
static void list_words(const char *const *names, char *buf, size_t cap)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; names[i] && o < cap; i++) {
        const char *sep = i == 0 ? "" : names[i + 1] ? ", " : " or ";
        int n = snprintf(buf + o, cap - o, "%s%s", sep, names[i]);
        if (n < 0)
            break;
        o += (size_t)n;
    }
}

bool config_get_enum(struct config_ctx *c, const struct ynode *v, const char *const *names, int *out)
{
    char want[160];
    list_words(names, want, sizeof want);
    const char *s = config_scalar(c, v, want);
    if (!s)
        return false;
    for (int i = 0; names[i]; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return true;
        }
    }
    const char *guess = closest(s, names);
    if (guess)
        config_err_at(c, v->line, "expected %s, got \"%s\" (did you mean \"%s\"?)", want, config_shown_str(c, s),
                      guess);
    else
        config_err_at(c, v->line, "expected %s, got \"%s\"", want, config_shown_str(c, s));
    return false;
}

/* A non-empty string, no further rules (file paths). */
bool config_get_text(struct config_ctx *c, const struct ynode *v, const char *want, char **dst)
{
    const char *s = config_scalar(c, v, want);
    if (!s)
        return false;
    if (!*s) {
        config_err_at(c, v->line, "expected %s, got \"\"", want);
        return false;
    }
    config_set_str(dst, s);
    return true;
}

bool config_is_name_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '.' || ch == '-';
}

/* Pool and listener names: [A-Za-z0-9_.-]{1,64}, safe in logs and URLs. */
bool config_get_name(struct config_ctx *c, const struct ynode *v, char **dst)
{
    const char *want = "a name of 1 to 64 characters from A-Z a-z 0-9 _ . -";
    const char *s = config_scalar(c, v, want);
    if (!s)
        return false;
    size_t len = strlen(s);
    bool ok = len >= 1 && len <= CONFIG_NAME_MAX;
    for (size_t i = 0; ok && i < len; i++)
        ok = config_is_name_char(s[i]);
    if (!ok) {
        config_err_at(c, v->line, "expected %s, got \"%s\"", want, config_shown_str(c, s));
        return false;
    }
    config_set_str(dst, s);
    return true;
}

/* Printable ASCII without spaces: URL paths and Host header values. */
bool config_is_visible(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return false;
    return true;
}

bool config_get_addr(struct config_ctx *c, const struct ynode *v, struct sl_addr *out)
{
    const char *s = config_scalar(c, v, "an address like 127.0.0.1:8080");
    const char *why = NULL;
    struct sl_addr a;
    if (!s)
        return false;
    if (addr_parse(s, &a, &why) < 0) {
        config_err_at(c, v->line, "%s", why ? why : "invalid address");
        return false;
    }
    *out = a;
    return true;
}

void config_each_item(struct config_ctx *c, const struct ynode *v, size_t max, const char *what, config_item_fn *one,
                      void *obj)
{
    if (v->kind == YNODE_SCALAR && !ynode_is_null(v)) {
        one(c, v, obj);
        return;
    }
    if (!config_expect_seq(c, v) || v->kind != YNODE_SEQ)
        return;
    if (v->n_items > max) {
        config_err_at(c, v->line, "at most %zu %s", max, what);
        return;
    }
    for (size_t i = 0; i < v->n_items; i++) {
        size_t mark = config_path_push(c, "[%zu]", i);
        one(c, v->items[i], obj);
        config_path_pop(c, mark);
    }
}

/* ------------------------------------------------------------------------
 * Mapping walker.
 */

static void unknown_key(struct config_ctx *c, const struct ynode *k, const char *const *keys)
{
    /* Suggestions cost an edit distance per known key: skip once the
     * error list is full so a huge junk mapping stays cheap. */
    const char *guess = errors_full(c) || strlen(k->text) != k->len ? NULL : closest(k->text, keys);
    if (guess)
        config_err_at(c, k->line, "unknown key (did you mean \"%s\"?)", guess);
    else
        config_err_at(c, k->line, "unknown key");
}

/* Check `map` against the NULL-terminated `keys` and call fn(index of key)
 * for each known key, with the path extended by the key. Returns false if
 * `map` is not a mapping (already reported). */
bool config_walk_map(struct config_ctx *c, const struct ynode *map, const char *const *keys, config_field_fn *fn,
                     void *obj)
{
    int first_line[CONFIG_MAX_KEYS] = { 0 };
    if (!config_expect_map(c, map))
        return false;
    for (size_t i = 0; i < map->n_pairs; i++) {
        const struct ynode *k = map->pairs[i].key;
        if (k->kind != YNODE_SCALAR) {
            config_type_error(c, k, "a key name");
            continue;
        }
        size_t mark = path_push_key(c, k->text, k->len);
        int idx = -1;
        for (int j = 0; keys[j] && idx < 0; j++)
            if (k->len == strlen(keys[j]) && strcmp(k->text, keys[j]) == 0)
                idx = j;
        if (idx < 0) {
            unknown_key(c, k, keys);
        } else if (first_line[idx]) {
            config_err_at(c, k->line, "duplicate key (first set on line %d)", first_line[idx]);
        } else {
            first_line[idx] = k->line;
            c->key_line = k->line;
            fn(c, idx, map->pairs[i].value, obj);
        }
        config_path_pop(c, mark);
    }
    return true;
}

/* Whether a mapping (or an empty value) has `key`, valid or not: "missing
 * key" is only reported when the key is really absent. */
bool config_map_has_key(const struct ynode *map, const char *key)
{
    for (size_t i = 0; i < map->n_pairs; i++) {
        const struct ynode *k = map->pairs[i].key;
        if (k->kind == YNODE_SCALAR && strcmp(k->text, key) == 0)
            return true;
    }
    return false;
}
/* ------------------------------------------------------------------------
 * Duplicate detection and name lookup, O(n log n) so a large generated
 * config (thousands of backends) stays fast.
 */

static int cmp_name_ref(const void *pa, const void *pb)
{
    const struct config_name_ref *a = pa, *b = pb;
    int r = strcmp(a->name, b->name);
    if (r)
        return r;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* Sorted (key, index) pairs for the non-NULL keys. */
struct config_name_ref *config_sort_names(const char *const *keys, size_t n, size_t *n_out)
{
    struct config_name_ref *refs = config_xcalloc(n, sizeof *refs);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (keys[i])
            refs[m++] = (struct config_name_ref){ keys[i], i };
    qsort(refs, m, sizeof *refs, cmp_name_ref);
    *n_out = m;
    return refs;
}

/* first[i] = the lowest index whose key equals keys[i] (i itself if none
 * earlier). Lets callers report duplicates in document order. */
size_t *config_first_same(const char *const *keys, size_t n)
{
    size_t m;
    struct config_name_ref *refs = config_sort_names(keys, n, &m);
    size_t *first = config_xcalloc(n, sizeof *first);
    for (size_t i = 0; i < n; i++)
        first[i] = i;
    for (size_t k = 1; k < m; k++)
        if (strcmp(refs[k].name, refs[k - 1].name) == 0)
            first[refs[k].idx] = first[refs[k - 1].idx];
    free(refs);
    return first;
}

/* ---- admin API bodies ---- */

/* "api:1: heartbeat.interval: reason" -> "heartbeat.interval: reason": the
 * path inside the body; at the body itself, only the reason. */
static void first_body_error(const struct config_errors *errs, char *err, size_t errlen)
{
    const char *p = errs->n ? errs->lines[0] : "invalid body";
    const char *colon = strstr(p, ": ");
    p = colon ? colon + 2 : p;
    if (strncmp(p, "(root): ", 8) == 0)
        p += 8;
    else if (*p == '.')
        p++;
    snprintf(err, errlen, "%s", p);
}

int config_walk_body(const char *text, size_t len, config_body_fn *fn, void *arg, char *err, size_t errlen)
{
    struct ynode *root = NULL;
    struct ytree_error yerr;
    if (ytree_parse(text, len, &root, &yerr) < 0) {
        snprintf(err, errlen, "the body is not valid JSON: %s", yerr.msg);
        return -1;
    }
    if (!root) {
        snprintf(err, errlen, "the body is empty");
        return -1;
    }
    struct config_errors errs = { 0 };
    struct config_ctx *c = config_ctx_new("api", &errs, NULL);
    if (!c)
        config_oom();
    fn(c, root, arg);
    config_ctx_free(c);
    ytree_free(root);
    if (errs.n) {
        first_body_error(&errs, err, errlen);
        config_errors_free(&errs);
        return -1;
    }
    return 0;
}
