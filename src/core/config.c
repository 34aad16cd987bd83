/* Configuration loader: YAML text -> struct sl_config.
 *
 * Two stages. yaml_tree turns the text into a tree of nodes that remember
 * their line (syntax errors stop here). Then a schema walk fills the
 * structs: each mapping is checked against a fixed key list by walk_map(),
 * which reports unknown and duplicate keys and hands every known key to a
 * per-section handler. Handlers never stop at a bad value: they report it
 * and keep the default, so one run shows every problem.
 *
 * While walking, ctx.path holds the key path of the node being looked at
 * ("pools[1].backends[0].address"), so reporting an error only needs a line.
 */
#include "core/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/yaml_tree.h"
#include "l4/bpf/forwarder_abi.h" /* the data plane's defaults: flow seed, GUE port */

#define CONFIG_MAX_BYTES (16u << 20)
#define MAX_ERRORS 100   /* past this the rest is noise; also bounds the work */
#define PATH_CAP 512
#define SHOWN_CAP 96     /* longest quoted value echoed in a message */
#define NAME_MAX_LEN 64
#define TOKEN_MAX_LEN 256

#define SECOND 1000u
#define MINUTE (60u * SECOND)
#define HOUR (60u * MINUTE)
#define KIB 1024u
#define MIB (1024u * KIB)

/* ------------------------------------------------------------------------
 * Memory: a config is small, so running out of memory here is fatal.
 */

static void oom(void)
{
    fputs("sluice: out of memory\n", stderr);
    abort();
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        oom();
    return p;
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        oom();
    return p;
}

/* Replace an owned string (defaults like "/" are owned too). */
static void set_str(char **dst, const char *s)
{
    free(*dst);
    *dst = s ? xstrdup(s) : NULL;
}

/* ------------------------------------------------------------------------
 * Value parsers (public: the admin API uses them too).
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

int parse_duration_ms(const char *s, uint32_t *out)
{
    static const struct unit units[] = {
        { "", 1 }, { "ms", 1 }, { "s", SECOND }, { "m", MINUTE }, { "h", HOUR },
    };
    return parse_with_units(s, units, sizeof units / sizeof units[0], out);
}

int parse_size(const char *s, uint32_t *out)
{
    static const struct unit units[] = {
        { "", 1 },      { "k", KIB }, { "K", KIB },         { "m", MIB },
        { "M", MIB },   { "g", 1024u * MIB }, { "G", 1024u * MIB },
    };
    return parse_with_units(s, units, sizeof units / sizeof units[0], out);
}

static int parse_u32(const char *s, uint32_t *out)
{
    uint64_t n;
    const char *end;
    if (parse_digits(s, &n, &end) < 0 || *end)
        return -1;
    *out = (uint32_t)n;
    return 0;
}

/* Inverse of the parsers, for range messages: 86400000 -> "24h". */
static const char *fmt_ms(char *buf, size_t cap, uint32_t ms)
{
    if (ms && ms % HOUR == 0)
        snprintf(buf, cap, "%" PRIu32 "h", ms / HOUR);
    else if (ms && ms % MINUTE == 0)
        snprintf(buf, cap, "%" PRIu32 "m", ms / MINUTE);
    else if (ms && ms % SECOND == 0)
        snprintf(buf, cap, "%" PRIu32 "s", ms / SECOND);
    else
        snprintf(buf, cap, "%" PRIu32 "ms", ms);
    return buf;
}

static const char *fmt_size(char *buf, size_t cap, uint32_t n)
{
    if (n && n % (1024u * MIB) == 0)
        snprintf(buf, cap, "%" PRIu32 "g", n / (1024u * MIB));
    else if (n && n % MIB == 0)
        snprintf(buf, cap, "%" PRIu32 "m", n / MIB);
    else if (n && n % KIB == 0)
        snprintf(buf, cap, "%" PRIu32 "k", n / KIB);
    else
        snprintf(buf, cap, "%" PRIu32, n);
    return buf;
}

/* ------------------------------------------------------------------------
 * Walk context, key paths and error reporting.
 */

struct name_ref {
    const char *name;
    size_t idx;
};

struct ctx {
    const char *file;
    struct config_errors *errs;
    struct sl_config *cfg;
    char path[PATH_CAP];
    size_t path_len;
    char shown[4][SHOWN_CAP]; /* ring: a message may quote several values */
    unsigned shown_next;
    struct name_ref *pool_refs; /* pools sorted by name, to resolve "pool:" */
    size_t n_pool_refs;
    int key_line;               /* line of the key whose handler is running */
};

/* Quote-safe, single-line, length-capped copy of a value for a message.
 * Control characters would break the one-error-per-line contract. */
static const char *shown(struct ctx *c, const char *s, size_t len)
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

static const char *shown_str(struct ctx *c, const char *s)
{
    return shown(c, s, strlen(s));
}

__attribute__((format(printf, 2, 3)))
static size_t path_push(struct ctx *c, const char *fmt, ...)
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

static size_t path_push_key(struct ctx *c, const char *key, size_t len)
{
    return path_push(c, c->path_len ? ".%s" : "%s", shown(c, key, len));
}

static void path_pop(struct ctx *c, size_t mark)
{
    c->path_len = mark;
    c->path[mark] = '\0';
}

static void add_line(struct config_errors *errs, char *line)
{
    char **lines = realloc(errs->lines, (errs->n + 1) * sizeof *lines);
    if (!lines)
        oom();
    errs->lines = lines;
    errs->lines[errs->n++] = line;
}

static bool errors_full(const struct ctx *c)
{
    return c->errs->n >= MAX_ERRORS;
}

static void verr_at(struct ctx *c, int line, const char *fmt, va_list ap)
{
    char *reason = NULL, *text = NULL;
    if (c->errs->n > MAX_ERRORS)
        return;
    if (c->errs->n == MAX_ERRORS) {
        if (asprintf(&text, "%s:%d: (root): too many errors, stopping after %d", c->file, line,
                     MAX_ERRORS) < 0)
            oom();
        add_line(c->errs, text);
        return;
    }
    if (vasprintf(&reason, fmt, ap) < 0)
        oom();
    if (asprintf(&text, "%s:%d: %s: %s", c->file, line, c->path_len ? c->path : "(root)", reason) < 0)
        oom();
    free(reason);
    add_line(c->errs, text);
}

/* Report at the current path. */
__attribute__((format(printf, 3, 4)))
static void err_at(struct ctx *c, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verr_at(c, line, fmt, ap);
    va_end(ap);
}

/* Report at the current path plus ".sub", for checks made after a
 * mapping was walked (cross-field rules, missing keys). */
__attribute__((format(printf, 4, 5)))
static void err_in(struct ctx *c, int line, const char *sub, const char *fmt, ...)
{
    size_t mark = path_push(c, c->path_len ? ".%s" : "%s", sub);
    va_list ap;
    va_start(ap, fmt);
    verr_at(c, line, fmt, ap);
    va_end(ap);
    path_pop(c, mark);
}

static void missing_key(struct ctx *c, const struct ynode *map, const char *key)
{
    err_at(c, map->line, "missing required key \"%s\"", key);
}

/* ------------------------------------------------------------------------
 * "Did you mean" suggestions.
 */

static size_t edit_distance(const char *a, const char *b)
{
    size_t lb = strlen(b);
    size_t row[NAME_MAX_LEN + 1];
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
    if (strlen(word) > NAME_MAX_LEN)
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

/* ------------------------------------------------------------------------
 * Typed access to nodes. Each getter reports its own error and returns
 * false (or NULL), leaving the destination untouched.
 */

static void type_error(struct ctx *c, const struct ynode *n, const char *want)
{
    if (n->kind == YNODE_ALIAS)
        err_at(c, n->line, "YAML aliases are not supported (found *%s)", shown(c, n->text, n->len));
    else if (n->kind == YNODE_MAP)
        err_at(c, n->line, "expected %s, got a mapping", want);
    else if (n->kind == YNODE_SEQ)
        err_at(c, n->line, "expected %s, got a list", want);
    else if (ynode_is_null(n))
        err_at(c, n->line, "expected %s, got nothing", want);
    else
        err_at(c, n->line, "expected %s, got \"%s\"", want, shown(c, n->text, n->len));
}

/* An empty value ("key:" with nothing after it) reads as an empty mapping
 * or list, so a section can be present but left at its defaults. */
static bool expect_map(struct ctx *c, const struct ynode *n)
{
    if (n->kind == YNODE_MAP || ynode_is_null(n))
        return true;
    type_error(c, n, "a mapping");
    return false;
}

static bool expect_seq(struct ctx *c, const struct ynode *n)
{
    if (n->kind == YNODE_SEQ || ynode_is_null(n))
        return true;
    type_error(c, n, "a list");
    return false;
}

static const char *scalar(struct ctx *c, const struct ynode *n, const char *want)
{
    if (n->kind != YNODE_SCALAR || ynode_is_null(n)) {
        type_error(c, n, want);
        return NULL;
    }
    if (strlen(n->text) != n->len) {
        err_at(c, n->line, "expected %s, got a string containing a NUL byte", want);
        return NULL;
    }
    return n->text;
}

static bool get_uint(struct ctx *c, const struct ynode *v, uint32_t min, uint32_t max, uint32_t *out)
{
    char want[64];
    snprintf(want, sizeof want, "an integer from %" PRIu32 " to %" PRIu32, min, max);
    const char *s = scalar(c, v, want);
    uint32_t n;
    if (!s)
        return false;
    if (parse_u32(s, &n) < 0 || n < min || n > max) {
        err_at(c, v->line, "expected %s, got \"%s\"", want, shown_str(c, s));
        return false;
    }
    *out = n;
    return true;
}

static bool get_duration(struct ctx *c, const struct ynode *v, uint32_t min, uint32_t max, uint32_t *out)
{
    const char *s = scalar(c, v, "a duration");
    char lo[16], hi[16];
    uint32_t ms;
    if (!s)
        return false;
    if (parse_duration_ms(s, &ms) < 0) {
        err_at(c, v->line, "expected a duration like \"500ms\", \"10s\", \"2m\" or \"1h\", got \"%s\"",
               shown_str(c, s));
        return false;
    }
    if (ms < min || ms > max) {
        err_at(c, v->line, "must be from %s to %s, got \"%s\"", fmt_ms(lo, sizeof lo, min),
               fmt_ms(hi, sizeof hi, max), shown_str(c, s));
        return false;
    }
    *out = ms;
    return true;
}

static bool get_size(struct ctx *c, const struct ynode *v, uint32_t min, uint32_t max, uint32_t *out)
{
    const char *s = scalar(c, v, "a size");
    char lo[16], hi[16];
    uint32_t n;
    if (!s)
        return false;
    if (parse_size(s, &n) < 0) {
        err_at(c, v->line, "expected a size like \"512\", \"16k\" or \"1m\", got \"%s\"", shown_str(c, s));
        return false;
    }
    if (n < min || n > max) {
        err_at(c, v->line, "must be from %s to %s, got \"%s\"", fmt_size(lo, sizeof lo, min),
               fmt_size(hi, sizeof hi, max), shown_str(c, s));
        return false;
    }
    *out = n;
    return true;
}

static bool get_bool(struct ctx *c, const struct ynode *v, bool *out)
{
    static const char *const yes[] = { "true", "True", "TRUE", NULL };
    static const char *const no[] = { "false", "False", "FALSE", NULL };
    const char *s = scalar(c, v, "true or false");
    if (!s)
        return false;
    for (size_t i = 0; yes[i]; i++) {
        if (strcmp(s, yes[i]) == 0 || strcmp(s, no[i]) == 0) {
            *out = strcmp(s, yes[i]) == 0;
            return true;
        }
    }
    err_at(c, v->line, "expected true or false, got \"%s\"", shown_str(c, s));
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

static bool get_enum(struct ctx *c, const struct ynode *v, const char *const *names, int *out)
{
    char want[160];
    list_words(names, want, sizeof want);
    const char *s = scalar(c, v, want);
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
        err_at(c, v->line, "expected %s, got \"%s\" (did you mean \"%s\"?)", want, shown_str(c, s), guess);
    else
        err_at(c, v->line, "expected %s, got \"%s\"", want, shown_str(c, s));
    return false;
}

/* A non-empty string, no further rules (file paths). */
static bool get_text(struct ctx *c, const struct ynode *v, const char *want, char **dst)
{
    const char *s = scalar(c, v, want);
    if (!s)
        return false;
    if (!*s) {
        err_at(c, v->line, "expected %s, got \"\"", want);
        return false;
    }
    set_str(dst, s);
    return true;
}

static bool is_name_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '.' || ch == '-';
}

/* Pool and listener names: [A-Za-z0-9_.-]{1,64}, safe in logs and URLs. */
static bool get_name(struct ctx *c, const struct ynode *v, char **dst)
{
    const char *want = "a name of 1 to 64 characters from A-Z a-z 0-9 _ . -";
    const char *s = scalar(c, v, want);
    if (!s)
        return false;
    size_t len = strlen(s);
    bool ok = len >= 1 && len <= NAME_MAX_LEN;
    for (size_t i = 0; ok && i < len; i++)
        ok = is_name_char(s[i]);
    if (!ok) {
        err_at(c, v->line, "expected %s, got \"%s\"", want, shown_str(c, s));
        return false;
    }
    set_str(dst, s);
    return true;
}

/* RFC 9110 token characters: header and cookie names. */
static bool is_token(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > TOKEN_MAX_LEN)
        return false;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch <= 0x20 || ch >= 0x7f || strchr("\"(),/:;<=>?@[\\]{}", ch))
            return false;
    }
    return true;
}

/* Printable ASCII without spaces: URL paths and Host header values. */
static bool is_visible(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return false;
    return true;
}

static bool get_addr(struct ctx *c, const struct ynode *v, struct sl_addr *out)
{
    const char *s = scalar(c, v, "an address like 127.0.0.1:8080");
    const char *why = NULL;
    struct sl_addr a;
    if (!s)
        return false;
    if (addr_parse(s, &a, &why) < 0) {
        err_at(c, v->line, "%s", why ? why : "invalid address");
        return false;
    }
    *out = a;
    return true;
}

/* ------------------------------------------------------------------------
 * Mapping walker.
 */

#define MAX_KEYS 32

typedef void field_fn(struct ctx *c, int key, const struct ynode *value, void *obj);

static void unknown_key(struct ctx *c, const struct ynode *k, const char *const *keys)
{
    /* Suggestions cost an edit distance per known key: skip once the
     * error list is full so a huge junk mapping stays cheap. */
    const char *guess = errors_full(c) || strlen(k->text) != k->len ? NULL : closest(k->text, keys);
    if (guess)
        err_at(c, k->line, "unknown key (did you mean \"%s\"?)", guess);
    else
        err_at(c, k->line, "unknown key");
}

/* Check `map` against the NULL-terminated `keys` and call fn(index of key)
 * for each known key, with the path extended by the key. Returns false if
 * `map` is not a mapping (already reported). */
static bool walk_map(struct ctx *c, const struct ynode *map, const char *const *keys, field_fn *fn,
                     void *obj)
{
    int first_line[MAX_KEYS] = { 0 };
    if (!expect_map(c, map))
        return false;
    for (size_t i = 0; i < map->n_pairs; i++) {
        const struct ynode *k = map->pairs[i].key;
        if (k->kind != YNODE_SCALAR) {
            type_error(c, k, "a key name");
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
            err_at(c, k->line, "duplicate key (first set on line %d)", first_line[idx]);
        } else {
            first_line[idx] = k->line;
            c->key_line = k->line;
            fn(c, idx, map->pairs[i].value, obj);
        }
        path_pop(c, mark);
    }
    return true;
}

/* Whether a mapping (or an empty value) has `key`, valid or not: "missing
 * key" is only reported when the key is really absent. */
static bool map_has_key(const struct ynode *map, const char *key)
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
    const struct name_ref *a = pa, *b = pb;
    int r = strcmp(a->name, b->name);
    if (r)
        return r;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* Sorted (key, index) pairs for the non-NULL keys. */
static struct name_ref *sort_keys(const char *const *keys, size_t n, size_t *n_out)
{
    struct name_ref *refs = xcalloc(n, sizeof *refs);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (keys[i])
            refs[m++] = (struct name_ref){ keys[i], i };
    qsort(refs, m, sizeof *refs, cmp_name_ref);
    *n_out = m;
    return refs;
}

/* first[i] = the lowest index whose key equals keys[i] (i itself if none
 * earlier). Lets callers report duplicates in document order. */
static size_t *first_same(const char *const *keys, size_t n)
{
    size_t m;
    struct name_ref *refs = sort_keys(keys, n, &m);
    size_t *first = xcalloc(n, sizeof *first);
    for (size_t i = 0; i < n; i++)
        first[i] = i;
    for (size_t k = 1; k < m; k++)
        if (strcmp(refs[k].name, refs[k - 1].name) == 0)
            first[refs[k].idx] = first[refs[k - 1].idx];
    free(refs);
    return first;
}

/* Index of the first pool called `name`, or -1. */
static int lookup_pool(const struct ctx *c, const char *name)
{
    size_t lo = 0, hi = c->n_pool_refs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(c->pool_refs[mid].name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < c->n_pool_refs && strcmp(c->pool_refs[lo].name, name) == 0)
        return (int)c->pool_refs[lo].idx;
    return -1;
}

static bool resolve_pool(struct ctx *c, const struct ynode *v, size_t *out)
{
    const char *s = scalar(c, v, "a pool name");
    if (!s)
        return false;
    int idx = lookup_pool(c, s);
    if (idx < 0) {
        err_at(c, v->line, "no pool named \"%s\"", shown_str(c, s));
        return false;
    }
    *out = (size_t)idx;
    return true;
}

/* ------------------------------------------------------------------------
 * Enum spellings, indexed by the enum values.
 */

static const char *const level_names[] = {
    [LOG_DEBUG] = "debug", [LOG_INFO] = "info", [LOG_WARN] = "warn", [LOG_ERROR] = "error", NULL,
};
static const char *const health_names[] = {
    [HEALTH_NONE] = "none", [HEALTH_TCP] = "tcp", [HEALTH_HTTP] = "http", NULL,
};
static const char *const proto_names[] = {
    [PROTO_HTTP] = "http", [PROTO_TCP] = "tcp", [PROTO_UDP] = "udp", NULL,
};
static const char *const format_names[] = {
    [ACCESS_LOG_COMBINED] = "combined", [ACCESS_LOG_JSON] = "json", NULL,
};

const char *log_level_name(enum log_level l)
{
    return (unsigned)l <= LOG_ERROR ? level_names[l] : "unknown";
}

/* ------------------------------------------------------------------------
 * Defaults.
 */

static void pool_defaults(struct cfg_pool *p)
{
    p->algorithm = LB_ROUND_ROBIN;
    p->hash_key = HASH_KEY_CLIENT_IP;
    p->retries = 2;
    p->keepalive = 32;
    p->slow_start_ms = 0;
    p->health = (struct cfg_health){
        .type = HEALTH_NONE,
        .interval_ms = 2 * SECOND,
        .timeout_ms = 1 * SECOND,
        .rise = 2,
        .fall = 3,
        .http_path = xstrdup("/"),
        .status_min = 200,
        .status_max = 399,
    };
    p->passive = (struct cfg_passive){ .max_fails = 3, .eject_ms = 10 * SECOND, .max_eject_ms = 300 * SECOND };
}

static void listener_defaults(struct cfg_listener *l)
{
    l->proto = PROTO_HTTP;
    l->timeouts = (struct cfg_timeouts){
        .connect_ms = 3 * SECOND,
        .client_header_ms = 10 * SECOND,
        .idle_ms = 60 * SECOND,
        .upstream_response_ms = 30 * SECOND,
        .udp_session_ms = 30 * SECOND,
        .client_body_ms = 60 * SECOND,
    };
    l->limits = (struct cfg_limits){
        .max_request_line = 8 * KIB,
        .max_header_size = 32 * KIB,
        .max_headers = 100,
        .buffer_size = 16 * KIB,
        .max_connections = 10000,
        .min_body_rate = 1 * KIB,
    };
    l->access_log = NULL;
    l->access_log_format = ACCESS_LOG_COMBINED;
    l->splice = true;
}

static struct sl_config *config_new(const char *path)
{
    struct sl_config *cfg = xcalloc(1, sizeof *cfg);
    const char *why;
    cfg->path = xstrdup(path);
    cfg->workers = 0;
    cfg->log_level = LOG_INFO;
    cfg->admin_enabled = true;
    cfg->drain_timeout_ms = 30000;
    addr_parse("127.0.0.1:9900", &cfg->admin_addr, &why);
    return cfg;
}

/* ------------------------------------------------------------------------
 * log:, admin:, workers:
 */

enum { LOGK_LEVEL, LOGK_FILE };
static const char *const log_keys[] = { "level", "file", NULL };

static void log_field(struct ctx *c, int key, const struct ynode *v, void *obj)
{
    struct sl_config *cfg = obj;
    int level;
    switch (key) {
    case LOGK_LEVEL:
        if (get_enum(c, v, level_names, &level))
            cfg->log_level = (enum log_level)level;
        break;
    case LOGK_FILE:
        if (get_text(c, v, "a file path or \"stderr\"", &cfg->log_file) && strcmp(cfg->log_file, "stderr") == 0)
            set_str(&cfg->log_file, NULL);
        cfg->log_file_line = v->line;
        break;
    }
}

struct root_state {
    struct sl_config *cfg;
    const struct ynode *listeners; /* walked last: it refers to pools */
    int listeners_line;
};

enum { ADMINK_LISTEN };
static const char *const admin_keys[] = { "listen", NULL };

static void admin_field(struct ctx *c, int key, const struct ynode *v, void *obj)
{
    struct root_state *st = obj;
    if (key != ADMINK_LISTEN)
        return;
    if (v->kind == YNODE_SCALAR && strcmp(v->text, "off") == 0) {
        st->cfg->admin_enabled = false;
        return;
    }
    get_addr(c, v, &st->cfg->admin_addr);
}

static void parse_workers(struct ctx *c, const struct ynode *v)
{
    const char *want = "\"auto\" or an integer from 1 to 256";
    const char *s = scalar(c, v, want);
    uint32_t n;
    if (!s)
        return;
    if (strcmp(s, "auto") == 0) {
        c->cfg->workers = 0;
        return;
    }
    if (parse_u32(s, &n) < 0 || n < 1 || n > 256) {
        err_at(c, v->line, "expected %s, got \"%s\"", want, shown_str(c, s));
        return;
    }
    c->cfg->workers = n;
}

/* ------------------------------------------------------------------------
 * pools[].health_check and pools[].passive
 */

struct health_state {
    struct cfg_health *h;
    int interval_line, timeout_line;
    int http_only_line; /* first of path/host/expect_status */
    const char *http_only_key;
};

enum { HK_TYPE, HK_INTERVAL, HK_TIMEOUT, HK_RISE, HK_FALL, HK_PATH, HK_HOST, HK_EXPECT_STATUS };
static const char *const health_keys[] = {
    "type", "interval", "timeout", "rise", "fall", "path", "host", "expect_status", NULL,
};

/* "200" or "200-399", codes 100..599. */
static bool get_status_range(struct ctx *c, const struct ynode *v, uint16_t *lo, uint16_t *hi)
{
    const char *want = "a status code or range like \"200\" or \"200-399\" (codes 100 to 599)";
    const char *s = scalar(c, v, want);
    uint32_t a, b;
    if (!s)
        return false;
    const char *dash = strchr(s, '-');
    char first[16];
    size_t flen = dash ? (size_t)(dash - s) : strlen(s);
    bool ok = flen < sizeof first;
    if (ok) {
        memcpy(first, s, flen);
        first[flen] = '\0';
        ok = parse_u32(first, &a) == 0 && (dash ? parse_u32(dash + 1, &b) == 0 : (b = a, true));
    }
    if (!ok || a < 100 || a > 599 || b < 100 || b > 599) {
        err_at(c, v->line, "expected %s, got \"%s\"", want, shown_str(c, s));
        return false;
    }
    if (a > b) {
        err_at(c, v->line, "range start %" PRIu32 " is greater than its end %" PRIu32, a, b);
        return false;
    }
    *lo = (uint16_t)a;
    *hi = (uint16_t)b;
    return true;
}

static void note_http_only(struct health_state *st, int key, const struct ynode *v)
{
    if (!st->http_only_line) {
        st->http_only_line = v->line;
        st->http_only_key = health_keys[key];
    }
}

static void health_field(struct ctx *c, int key, const struct ynode *v, void *obj)
{
    struct health_state *st = obj;
    struct cfg_health *h = st->h;
    int type;
    switch (key) {
    case HK_TYPE:
        if (get_enum(c, v, health_names, &type))
            h->type = (enum health_type)type;
        break;
    case HK_INTERVAL:
        if (get_duration(c, v, 10, 24 * HOUR, &h->interval_ms))
            st->interval_line = v->line;
        break;
    case HK_TIMEOUT:
        if (get_duration(c, v, 1, 24 * HOUR, &h->timeout_ms))
            st->timeout_line = v->line;
        break;
    case HK_RISE:
        get_uint(c, v, 1, 100, &h->rise);
        break;
    case HK_FALL:
        get_uint(c, v, 1, 100, &h->fall);
        break;
    case HK_PATH: {
        const char *s = scalar(c, v, "a URL path starting with \"/\"");
        note_http_only(st, key, v);
        if (s && (s[0] != '/' || !is_visible(s)))
            err_at(c, v->line, "expected a URL path starting with \"/\" and without spaces, got \"%s\"",
                   shown_str(c, s));
        else if (s)
            set_str(&h->http_path, s);
        break;
    }
    case HK_HOST: {
        const char *s = scalar(c, v, "a host name");
        note_http_only(st, key, v);
        if (s && (!*s || !is_visible(s)))
            err_at(c, v->line, "expected a host name without spaces, got \"%s\"", shown_str(c, s));
        else if (s)
            set_str(&h->http_host, s);
        break;
    }
    case HK_EXPECT_STATUS:
        note_http_only(st, key, v);
        get_status_range(c, v, &h->status_min, &h->status_max);
        break;
    }
}

static void parse_health(struct ctx *c, const struct ynode *v, struct cfg_health *h)
{
    struct health_state st = { .h = h };
    char a[16], b[16];
    if (!walk_map(c, v, health_keys, health_field, &st))
        return;
    /* Settings for HTTP checks under another type would be silently
     * ignored; most likely "type: http" was forgotten. */
    if (h->type != HEALTH_HTTP && st.http_only_line)
        err_in(c, st.http_only_line, st.http_only_key, "only used with type: http (type is %s)",
               health_names[h->type]);
    if (h->timeout_ms > h->interval_ms) {
        if (st.timeout_line)
            err_in(c, st.timeout_line, "timeout", "must not be longer than interval (%s)",
                   fmt_ms(a, sizeof a, h->interval_ms));
        else
            err_in(c, st.interval_line, "interval", "must not be shorter than timeout (%s)",
                   fmt_ms(b, sizeof b, h->timeout_ms));
    }
}

struct passive_state {
    struct cfg_passive *p;
    int eject_line, max_eject_line;
};

enum { PK_MAX_FAILS, PK_EJECT_TIME, PK_MAX_EJECT_TIME };
static const char *const passive_keys[] = { "max_fails", "eject_time", "max_eject_time", NULL };

static void passive_field(struct ctx *c, int key, const struct ynode *v, void *obj)
{
    struct passive_state *st = obj;
    switch (key) {
    case PK_MAX_FAILS:
        get_uint(c, v, 0, 1000, &st->p->max_fails);
        break;
    case PK_EJECT_TIME:
        if (get_duration(c, v, 1, 24 * HOUR, &st->p->eject_ms))
            st->eject_line = v->line;
        break;
    case PK_MAX_EJECT_TIME:
        if (get_duration(c, v, 1, 24 * HOUR, &st->p->max_eject_ms))
            st->max_eject_line = v->line;
        break;
    }
}

static void parse_passive(struct ctx *c, const struct ynode *v, struct cfg_passive *p)
{
    struct passive_state st = { .p = p };
    char buf[16];
    if (!walk_map(c, v, passive_keys, passive_field, &st))
        return;
    if (p->max_eject_ms >= p->eject_ms)
        return;
    if (st.max_eject_line)
        err_in(c, st.max_eject_line, "max_eject_time", "must not be shorter than eject_time (%s)",
               fmt_ms(buf, sizeof buf, p->eject_ms));
    else
        err_in(c, st.eject_line, "eject_time", "must not be longer than max_eject_time (%s)",
               fmt_ms(buf, sizeof buf, p->max_eject_ms));
}

/* ------------------------------------------------------------------------
 * pools[].backends
 */

enum { BK_ADDRESS, BK_WEIGHT };
static const char *const backend_keys[] = { "address", "weight", NULL };

static void backend_address(struct ctx *c, const struct ynode *v, struct cfg_backend *b)
{
    struct sl_addr a;
    if (!get_addr(c, v, &a))
        return;
    if (addr_port(&a) == 0) {
        err_at(c, v->line, "port must be a number from 1 to 65535 for a backend");
        return;
    }
    b->addr = a;
}

static void backend_field(struct ctx *c, int key, const struct ynode *v, void *obj)
{
    struct cfg_backend *b = obj;
    switch (key) {
    case BK_ADDRESS:
        backend_address(c, v, b);
        break;
    case BK_WEIGHT:
        get_uint(c, v, 0, 1000000, &b->weight);
        break;
    }
}

static void parse_backend(struct ctx *c, const struct ynode *v, struct cfg_backend *b)
{
    b->weight = 1;
    b->line = v->line;
    if (v->kind == YNODE_SCALAR && !ynode_is_null(v)) {
        /* Shorthand "- 127.0.0.1:9001": errors still name the address. */
        size_t mark = path_push(c, ".address");
        backend_address(c, v, b);
        path_pop(c, mark);
        return;
    }
    if (v->kind != YNODE_MAP) {
        type_error(c, v, "an address or a mapping with \"address\"");
        return;
    }
    walk_map(c, v, backend_keys, backend_field, b);
    if (!map_has_key(v, "address"))
        missing_key(c, v, "address");
}

static void check_duplicate_backends(struct ctx *c, const struct cfg_pool *p)
{
    const char **keys = xcalloc(p->n_backends, sizeof *keys);
    for (size_t i = 0; i < p->n_backends; i++)
        keys[i] = p->backends[i].addr.len ? p->backends[i].addr.text : NULL;
    size_t *first = first_same(keys, p->n_backends);
    for (size_t i = 0; i < p->n_backends; i++) {
        if (first[i] == i)
            continue;
        size_t mark = path_push(c, "[%zu]", i);
        err_at(c, p->backends[i].line, "duplicate backend %s (first listed on line %d)", keys[i],
               p->backends[first[i]].line);
        path_pop(c, mark);
    }
    free(first);
    free(keys);
}

static void parse_backends(struct ctx *c, const struct ynode *v, struct cfg_pool *p)
{
    if (!expect_seq(c, v))
        return;
    if (v->n_items == 0) {
        err_at(c, v->line, "at least one backend is required");
        return;
    }
    p->backends = xcalloc(v->n_items, sizeof *p->backends);
    p->n_backends = v->n_items;
    for (size_t i = 0; i < v->n_items; i++) {
        size_t mark = path_push(c, "[%zu]", i);
        parse_backend(c, v->items[i], &p->backends[i]);
        path_pop(c, mark);
    }
    check_duplicate_backends(c, p);
}

/* ------------------------------------------------------------------------
 * pools[]
 */

struct pool_state {
    struct cfg_pool *p;
    int name_line;
};

enum {
    POK_NAME, POK_ALGORITHM, POK_HASH_KEY, POK_STICKY_COOKIE, POK_RETRIES, POK_KEEPALIVE,
    POK_SLOW_START, POK_HEALTH_CHECK, POK_PASSIVE, POK_BACKENDS,
};
static const char *const pool_keys[] = {
    "name",      "algorithm",  "hash_key",     "sticky_cookie", "retries", "keepalive",
    "slow_start", "health_check", "passive",    "backends",      NULL,
};

/* "client_ip" | "uri" | "header:NAME" | "cookie:NAME" */
static void parse_hash_key(struct ctx *c, const struct ynode *v, struct cfg_pool *p)
{
    const char *want = "client_ip, uri, header:NAME or cookie:NAME";
    const char *s = scalar(c, v, want);
    if (!s)
        return;
    if (strcmp(s, "client_ip") == 0) {
        p->hash_key = HASH_KEY_CLIENT_IP;
    } else if (strcmp(s, "uri") == 0) {
        p->hash_key = HASH_KEY_URI;
    } else if (strncmp(s, "header:", 7) == 0 && is_token(s + 7)) {
        p->hash_key = HASH_KEY_HEADER;
        set_str(&p->hash_key_name, s + 7);
    } else if (strncmp(s, "cookie:", 7) == 0 && is_token(s + 7)) {
        p->hash_key = HASH_KEY_COOKIE;
        set_str(&p->hash_key_name, s + 7);
    } else {
        err_at(c, v->line, "expected %s, got \"%s\"", want, shown_str(c, s));
    }
}

static void pool_field(struct ctx *c, int key, const struct ynode *v, void *obj)
{
    struct pool_state *st = obj;
    struct cfg_pool *p = st->p;
    int alg;
    switch (key) {
    case POK_NAME:
        if (get_name(c, v, &p->name))
            st->name_line = v->line;
        break;
    case POK_ALGORITHM:
        if (get_enum(c, v, lb_algorithm_names, &alg))
            p->algorithm = (enum lb_algorithm)alg;
        break;
    case POK_HASH_KEY:
        parse_hash_key(c, v, p);
        break;
    case POK_STICKY_COOKIE: {
        const char *s = scalar(c, v, "a cookie name");
        if (s && !is_token(s))
            err_at(c, v->line, "expected a cookie name, got \"%s\"", shown_str(c, s));
        else if (s)
            set_str(&p->sticky_cookie, s);
        break;
    }
    case POK_RETRIES:
        get_uint(c, v, 0, 10, &p->retries);
        break;
    case POK_KEEPALIVE:
        get_uint(c, v, 0, 10000, &p->keepalive);
        break;
    case POK_SLOW_START:
        get_duration(c, v, 0, 24 * HOUR, &p->slow_start_ms);
        break;
    case POK_HEALTH_CHECK:
        parse_health(c, v, &p->health);
        break;
    case POK_PASSIVE:
        parse_passive(c, v, &p->passive);
        break;
    case POK_BACKENDS:
        parse_backends(c, v, p);
        break;
    }
}

/* Returns the line of the pool's name (0 if it has none). */
static int parse_pool(struct ctx *c, const struct ynode *v, struct cfg_pool *p)
{
    struct pool_state st = { .p = p };
    p->line = v->line;
    if (!walk_map(c, v, pool_keys, pool_field, &st))
        return 0;
    if (!map_has_key(v, "name"))
        missing_key(c, v, "name");
    if (!map_has_key(v, "backends"))
        missing_key(c, v, "backends");
    return st.name_line;
}

static void check_duplicate_pools(struct ctx *c, const int *name_lines)
{
    const struct sl_config *cfg = c->cfg;
    const char **keys = xcalloc(cfg->n_pools, sizeof *keys);
    for (size_t i = 0; i < cfg->n_pools; i++)
        keys[i] = cfg->pools[i].name;
    size_t *first = first_same(keys, cfg->n_pools);
    for (size_t i = 0; i < cfg->n_pools; i++) {
        if (first[i] == i)
            continue;
        size_t mark = path_push(c, "[%zu].name", i);
        err_at(c, name_lines[i], "duplicate pool name \"%s\" (first defined on line %d)", keys[i],
               cfg->pools[first[i]].line);
        path_pop(c, mark);
    }
    free(first);
    free(keys);
}

static void parse_pools(struct ctx *c, const struct ynode *v)
{
    struct sl_config *cfg = c->cfg;
    if (!expect_seq(c, v))
        return;
    cfg->pools = xcalloc(v->n_items, sizeof *cfg->pools);
    cfg->n_pools = v->n_items;
    int *name_lines = xcalloc(v->n_items, sizeof *name_lines);
    for (size_t i = 0; i < v->n_items; i++) {
        pool_defaults(&cfg->pools[i]);
        size_t mark = path_push(c, "[%zu]", i);
        name_lines[i] = parse_pool(c, v->items[i], &cfg->pools[i]);
        path_pop(c, mark);
    }
    check_duplicate_pools(c, name_lines);
    free(name_lines);
}

/* ------------------------------------------------------------------------
 * listeners[].routes
 */

enum { RTK_HOST, RTK_PATH_PREFIX, RTK_POOL };
static const char *const route_keys[] = { "host", "path_prefix", "pool", NULL };

/* "api.example.com" or "*.example.com": DNS labels, no port. */
static bool valid_host_pattern(const char *s)
{
    bool label_start = true;
    if (strncmp(s, "*.", 2) == 0)
        s += 2;
    if (!*s || strlen(s) > 253)
        return false;
    for (; *s; s++) {
        char ch = *s;
        if (ch == '.') {
            if (label_start)
                return false;
            label_start = true;
            continue;
        }
        if (!is_name_char(ch))
            return false;
        label_start = false;
    }
    return !label_start;
}

static void route_host(struct ctx *c, const struct ynode *v, struct cfg_route *r)
{
    const char *s = scalar(c, v, "a host name");
    if (!s)
        return;
    if (!valid_host_pattern(s)) {
        err_at(c, v->line, "expected a host name like \"api.example.com\" or \"*.example.com\", got \"%s\"",
               shown_str(c, s));
        return;
    }
    /* Host names are case-insensitive; store them lowercase so the
     * router can compare bytes. */
    set_str(&r->host, s);
    for (char *p = r->host; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
}

static void route_field(struct ctx *c, int key, const struct ynode *v, void *obj)
{
    struct cfg_route *r = obj;
    switch (key) {
    case RTK_HOST:
        route_host(c, v, r);
        break;
    case RTK_PATH_PREFIX: {
        const char *s = scalar(c, v, "a path starting with \"/\"");
        if (s && (s[0] != '/' || !is_visible(s)))
            err_at(c, v->line, "expected a path starting with \"/\" and without spaces, got \"%s\"",
                   shown_str(c, s));
        else if (s)
            set_str(&r->path_prefix, s);
        break;
    }
    case RTK_POOL:
        resolve_pool(c, v, &r->pool);
        break;
    }
}

/* Two routes with the same host and prefix: the second could never match. */
static void check_duplicate_routes(struct ctx *c, const struct cfg_listener *l, const bool *valid)
{
    char **keys = xcalloc(l->n_routes, sizeof *keys);
    for (size_t i = 0; i < l->n_routes; i++) {
        const struct cfg_route *r = &l->routes[i];
        if (valid[i] && asprintf(&keys[i], "%s\n%s", r->host ? r->host : "", r->path_prefix) < 0)
            oom();
    }
    size_t *first = first_same((const char *const *)keys, l->n_routes);
    for (size_t i = 0; i < l->n_routes; i++) {
        if (first[i] == i)
            continue;
        size_t mark = path_push(c, "[%zu]", i);
        err_at(c, l->routes[i].line, "duplicate route: same host and path_prefix as routes[%zu] (line %d)",
               first[i], l->routes[first[i]].line);
        path_pop(c, mark);
    }
    for (size_t i = 0; i < l->n_routes; i++)
        free(keys[i]);
    free(keys);
    free(first);
}

static void parse_routes(struct ctx *c, const struct ynode *v, struct cfg_listener *l)
{
    if (!expect_seq(c, v))
        return;
    l->routes = xcalloc(v->n_items, sizeof *l->routes);
    l->n_routes = v->n_items;
    /* A route with a bad value holds defaults in its place; comparing it
     * with the others would only add confusing duplicate errors. */
    bool *valid = xcalloc(v->n_items, sizeof *valid);
    for (size_t i = 0; i < v->n_items; i++) {
        const struct ynode *item = v->items[i];
        struct cfg_route *r = &l->routes[i];
        size_t mark = path_push(c, "[%zu]", i);
        size_t errors_before = c->errs->n;
        r->line = item->line;
        r->path_prefix = xstrdup("/");
        if (walk_map(c, item, route_keys, route_field, r) && !map_has_key(item, "pool"))
            missing_key(c, item, "pool");
        valid[i] = c->errs->n == errors_before;
        path_pop(c, mark);
    }
    check_duplicate_routes(c, l, valid);
    free(valid);
}

/* ------------------------------------------------------------------------
 * listeners[].timeouts and listeners[].limits
 */

static const char *const timeout_keys[] = {
    "connect", "client_header", "idle", "upstream_response", "udp_session", "client_body", NULL,
};

static void timeout_field(struct ctx *c, int key, const struct ynode *v, void *obj)
{
    struct cfg_timeouts *t = obj;
    uint32_t *fields[] = {
        &t->connect_ms, &t->client_header_ms, &t->idle_ms, &t->upstream_response_ms, &t->udp_session_ms,
        &t->client_body_ms,
    };
    get_duration(c, v, 1, 24 * HOUR, fields[key]);
}

struct limits_state {
    struct cfg_limits *lim;
    int request_line_line, header_size_line;
};

enum {
    LIM_MAX_REQUEST_LINE, LIM_MAX_HEADER_SIZE, LIM_MAX_HEADERS, LIM_BUFFER_SIZE, LIM_MAX_CONNECTIONS,
    LIM_MIN_BODY_RATE,
};
static const char *const limit_keys[] = {
    "max_request_line", "max_header_size", "max_headers", "buffer_size", "max_connections", "min_body_rate", NULL,
};

static void limit_field(struct ctx *c, int key, const struct ynode *v, void *obj)
{
    struct limits_state *st = obj;
    struct cfg_limits *lim = st->lim;
    switch (key) {
    case LIM_MAX_REQUEST_LINE:
        if (get_size(c, v, 256, 1 * MIB, &lim->max_request_line))
            st->request_line_line = v->line;
        break;
    case LIM_MAX_HEADER_SIZE:
        if (get_size(c, v, 1 * KIB, 16 * MIB, &lim->max_header_size))
            st->header_size_line = v->line;
        break;
    case LIM_MAX_HEADERS:
        get_uint(c, v, 1, 128, &lim->max_headers);
        break;
    case LIM_BUFFER_SIZE:
        get_size(c, v, 1 * KIB, 16 * MIB, &lim->buffer_size);
        break;
    case LIM_MAX_CONNECTIONS:
        get_uint(c, v, 1, 1000000, &lim->max_connections);
        break;
    case LIM_MIN_BODY_RATE:
        get_size(c, v, 0, 1024u * MIB, &lim->min_body_rate);
        break;
    }
}

static void parse_limits(struct ctx *c, const struct ynode *v, struct cfg_limits *lim)
{
    struct limits_state st = { .lim = lim };
    char buf[16];
    if (!walk_map(c, v, limit_keys, limit_field, &st) || lim->max_header_size >= lim->max_request_line)
        return;
    /* The request line is part of the head, so it can't be the bigger one. */
    if (st.header_size_line)
        err_in(c, st.header_size_line, "max_header_size", "must be at least max_request_line (%s)",
               fmt_size(buf, sizeof buf, lim->max_request_line));
    else
        err_in(c, st.request_line_line, "max_request_line", "must not be larger than max_header_size (%s)",
               fmt_size(buf, sizeof buf, lim->max_header_size));
}

/* ------------------------------------------------------------------------
 * listeners[]
 */

struct listener_state {
    struct cfg_listener *l;
    int name_line, listen_line, routes_line, underscores_line;
    const struct ynode *routes; /* parsed once the protocol is known */
};

enum {
    LK_NAME, LK_LISTEN, LK_PROTOCOL, LK_POOL, LK_ROUTES, LK_TIMEOUTS, LK_LIMITS, LK_ACCESS_LOG,
    LK_ACCESS_LOG_FORMAT, LK_SPLICE, LK_CLIENT_ADDRESS, LK_TOA_MAP, LK_ALLOW_UNDERSCORES, LK_COUNT,
};
static const char *const client_address_names[] = { "peer", "toa", NULL };
static const char *const listener_keys[LK_COUNT + 1] = {
    [LK_NAME] = "name",
    [LK_LISTEN] = "listen",
    [LK_PROTOCOL] = "protocol",
    [LK_POOL] = "pool",
    [LK_ROUTES] = "routes",
    [LK_TIMEOUTS] = "timeouts",
    [LK_LIMITS] = "limits",
    [LK_ACCESS_LOG] = "access_log",
    [LK_ACCESS_LOG_FORMAT] = "access_log_format",
    [LK_SPLICE] = "splice",
    [LK_CLIENT_ADDRESS] = "client_address",
    [LK_TOA_MAP] = "toa_map",
    [LK_ALLOW_UNDERSCORES] = "allow_underscores_in_headers",
};

static void listener_field(struct ctx *c, int key, const struct ynode *v, void *obj)
{
    struct listener_state *st = obj;
    struct cfg_listener *l = st->l;
    int e;
    switch (key) {
    case LK_NAME:
        if (get_name(c, v, &l->name))
            st->name_line = v->line;
        break;
    case LK_LISTEN:
        if (get_addr(c, v, &l->addr))
            st->listen_line = v->line;
        break;
    case LK_PROTOCOL:
        if (get_enum(c, v, proto_names, &e))
            l->proto = (enum listener_proto)e;
        break;
    case LK_POOL:
        l->has_default_pool = resolve_pool(c, v, &l->default_pool);
        break;
    case LK_ROUTES:
        st->routes = v;
        st->routes_line = c->key_line;
        break;
    case LK_TIMEOUTS:
        walk_map(c, v, timeout_keys, timeout_field, &l->timeouts);
        break;
    case LK_LIMITS:
        parse_limits(c, v, &l->limits);
        break;
    case LK_ACCESS_LOG:
        if (get_text(c, v, "a file path, \"stdout\" or \"off\"", &l->access_log) &&
            strcmp(l->access_log, "off") == 0)
            set_str(&l->access_log, NULL);
        l->access_log_line = v->line;
        break;
    case LK_ACCESS_LOG_FORMAT:
        if (get_enum(c, v, format_names, &e))
            l->access_log_format = (enum log_format)e;
        break;
    case LK_SPLICE:
        get_bool(c, v, &l->splice);
        break;
    case LK_CLIENT_ADDRESS:
        if (get_enum(c, v, client_address_names, &e))
            l->client_toa = e == 1;
        break;
    case LK_TOA_MAP:
        get_text(c, v, "the path of the pinned TOA map", &l->toa_map);
        break;
    case LK_ALLOW_UNDERSCORES:
        if (get_bool(c, v, &l->allow_underscores))
            st->underscores_line = c->key_line;
        break;
    }
}

/* Rules that involve several keys of one listener. */
static void check_listener(struct ctx *c, const struct ynode *v, struct listener_state *st)
{
    struct cfg_listener *l = st->l;
    const struct sl_config *cfg = c->cfg;
    if (!map_has_key(v, "name"))
        missing_key(c, v, "name");
    if (!map_has_key(v, "listen"))
        missing_key(c, v, "listen");
    if (st->routes && l->proto != PROTO_HTTP) {
        err_in(c, st->routes_line, "routes", "routes are only allowed on http listeners (protocol is %s)",
               proto_names[l->proto]);
    } else if (st->routes) {
        size_t mark = path_push(c, ".routes");
        parse_routes(c, st->routes, l);
        path_pop(c, mark);
    }
    if (l->proto != PROTO_HTTP && !map_has_key(v, "pool"))
        err_at(c, v->line, "missing required key \"pool\" (a %s listener forwards to one pool)",
               proto_names[l->proto]);
    if (l->proto == PROTO_HTTP && !map_has_key(v, "pool") && l->n_routes == 0)
        err_at(c, v->line, "an http listener needs a pool or at least one route");
    if (l->client_toa && l->proto != PROTO_HTTP)
        err_at(c, v->line, "client_address: toa is only for http listeners (protocol is %s)",
               proto_names[l->proto]);
    if (st->underscores_line && l->proto != PROTO_HTTP)
        err_in(c, st->underscores_line, "allow_underscores_in_headers",
               "only for http listeners (protocol is %s)", proto_names[l->proto]);
    if (st->listen_line && cfg->admin_enabled && l->proto != PROTO_UDP && addr_equal(&l->addr, &cfg->admin_addr))
        err_in(c, st->listen_line, "listen", "address %s is already used by the admin API (admin.listen)",
               l->addr.text);
}

static void parse_listener(struct ctx *c, const struct ynode *v, struct listener_state *st)
{
    struct cfg_listener *l = st->l;
    listener_defaults(l);
    l->line = v->line;
    if (walk_map(c, v, listener_keys, listener_field, st))
        check_listener(c, v, st);
}

/* Names must be unique; so must addresses among listeners that open the
 * same kind of socket (http and tcp both take a TCP port, udp does not). */
static void check_duplicate_listeners(struct ctx *c, const struct listener_state *states)
{
    const struct sl_config *cfg = c->cfg;
    size_t n = cfg->n_listeners;
    const char **names = xcalloc(n, sizeof *names);
    char **addrs = xcalloc(n, sizeof *addrs);
    for (size_t i = 0; i < n; i++) {
        const struct cfg_listener *l = &cfg->listeners[i];
        names[i] = l->name;
        if (states[i].listen_line &&
            asprintf(&addrs[i], "%s %s", l->proto == PROTO_UDP ? "udp" : "tcp", l->addr.text) < 0)
            oom();
    }
    size_t *first_name = first_same(names, n);
    size_t *first_addr = first_same((const char *const *)addrs, n);
    for (size_t i = 0; i < n; i++) {
        const struct cfg_listener *l = &cfg->listeners[i], *f = &cfg->listeners[first_name[i]];
        if (first_name[i] != i) {
            size_t mark = path_push(c, "[%zu].name", i);
            err_at(c, states[i].name_line, "duplicate listener name \"%s\" (first defined on line %d)", l->name,
                   f->line);
            path_pop(c, mark);
        }
        f = &cfg->listeners[first_addr[i]];
        if (first_addr[i] != i) {
            size_t mark = path_push(c, "[%zu].listen", i);
            err_at(c, states[i].listen_line, "address %s is already used by listener \"%s\" (line %d)",
                   l->addr.text, f->name ? f->name : "?", f->line);
            path_pop(c, mark);
        }
    }
    for (size_t i = 0; i < n; i++)
        free(addrs[i]);
    free(addrs);
    free(names);
    free(first_name);
    free(first_addr);
}

static void parse_listeners(struct ctx *c, const struct ynode *v)
{
    struct sl_config *cfg = c->cfg;
    if (!expect_seq(c, v))
        return;
    cfg->listeners = xcalloc(v->n_items, sizeof *cfg->listeners);
    cfg->n_listeners = v->n_items;
    struct listener_state *states = xcalloc(v->n_items, sizeof *states);
    for (size_t i = 0; i < v->n_items; i++) {
        size_t mark = path_push(c, "[%zu]", i);
        states[i].l = &cfg->listeners[i];
        parse_listener(c, v->items[i], &states[i]);
        path_pop(c, mark);
    }
    check_duplicate_listeners(c, states);
    free(states);
}

/* ------------------------------------------------------------------------
 * l4: the XDP forwarder (sluice l4)
 */

static const char *const l4_mode_names[] = { "dr", "tun", "nat", "fullnat", NULL };
static const char *const l4_sched_names[] = { "maglev", "source-hash", "wrr", "rr", NULL };
static const char *const xdp_mode_names[] = { "native", "generic", NULL };
static const char *const l4_proto_names[] = { "tcp", "udp", NULL };

const char *l4_fwd_mode_name(enum l4_fwd_mode m)
{
    return (unsigned)m <= L4_FWD_FULLNAT ? l4_mode_names[m] : "unknown";
}

const char *l4_scheduler_name(enum l4_scheduler s)
{
    return (unsigned)s <= L4_SCHED_RR ? l4_sched_names[s] : "unknown";
}

/* A bare IP (no port), IPv4 or IPv6, into an sl_addr with port 0. */
static bool get_ip(struct ctx *c, const struct ynode *v, struct sl_addr *out)
{
    const char *s = scalar(c, v, "an IP address");
    if (!s)
        return false;
    struct sl_addr a = { 0 };
    struct sockaddr_in *v4 = (struct sockaddr_in *)&a.ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&a.ss;
    if (inet_pton(AF_INET, s, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        a.len = sizeof *v4;
        snprintf(a.text, sizeof a.text, "%s", s);
    } else if (inet_pton(AF_INET6, s, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        a.len = sizeof *v6;
        addr_ip_string((const struct sockaddr *)&a.ss, a.text, sizeof a.text);
    } else {
        err_at(c, v->line, "expected an IPv4 or IPv6 address without a port, got \"%s\"", shown_str(c, s));
        return false;
    }
    *out = a;
    return true;
}

/* "10.99.0.0/24" (family 4) or "fd00:99::/96" (family 6). */
static bool get_prefix(struct ctx *c, const struct ynode *v, int family, struct cfg_prefix *out)
{
    const char *want = family == AF_INET ? "an IPv4 prefix like 10.99.0.0/24" : "an IPv6 prefix like fd00:99::/96";
    const char *s = scalar(c, v, want);
    if (!s)
        return false;
    const char *slash = strchr(s, '/');
    char host[INET6_ADDRSTRLEN + 1];
    uint32_t plen;
    unsigned max = family == AF_INET ? 32 : 128;
    size_t hlen = slash ? (size_t)(slash - s) : 0;
    struct cfg_prefix p = { .family = family };
    if (!slash || hlen == 0 || hlen >= sizeof host || parse_u32(slash + 1, &plen) < 0 || plen > max) {
        err_at(c, v->line, "expected %s (length 0 to %u), got \"%s\"", want, max, shown_str(c, s));
        return false;
    }
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    if (inet_pton(family, host, p.addr) != 1) {
        err_at(c, v->line, "expected %s, got \"%s\"", want, shown_str(c, s));
        return false;
    }
    p.plen = (uint8_t)plen;
    *out = p;
    return true;
}

static int sl_family(const struct sl_addr *a)
{
    return a->ss.ss_family;
}

/* l4.services[].reals[] */

enum { RK_ADDRESS, RK_WEIGHT };
static const char *const l4_real_keys[] = { "address", "weight", NULL };

static void l4_real_address(struct ctx *c, const struct ynode *v, struct cfg_l4_real *r)
{
    /* "10.0.0.11:80", "[2001:db8::11]:80", or a bare IP (port = VIP's,
     * filled in by the service once its VIP is known). */
    const char *s = scalar(c, v, "an address like 10.0.0.11:80");
    const char *why = NULL;
    if (!s)
        return;
    struct sl_addr a;
    if (addr_parse(s, &a, &why) == 0) {
        r->addr = a;
        return;
    }
    struct in6_addr tmp;
    if (inet_pton(AF_INET, s, &tmp) == 1 || inet_pton(AF_INET6, s, &tmp) == 1) {
        get_ip(c, v, &r->addr);
        return;
    }
    err_at(c, v->line, "%s", why ? why : "invalid address");
}

static void l4_real_field(struct ctx *c, int key, const struct ynode *v, void *obj)
{
    struct cfg_l4_real *r = obj;
    switch (key) {
    case RK_ADDRESS:
        l4_real_address(c, v, r);
        break;
    case RK_WEIGHT:
        get_uint(c, v, 0, 1000000, &r->weight);
        break;
    }
}

static void parse_l4_real(struct ctx *c, const struct ynode *v, struct cfg_l4_real *r)
{
    r->weight = 1;
    r->line = v->line;
    if (v->kind == YNODE_SCALAR && !ynode_is_null(v)) {
        size_t mark = path_push(c, ".address");
        l4_real_address(c, v, r);
        path_pop(c, mark);
        return;
    }
    if (v->kind != YNODE_MAP) {
        type_error(c, v, "an address or a mapping with \"address\"");
        return;
    }
    walk_map(c, v, l4_real_keys, l4_real_field, r);
    if (!map_has_key(v, "address"))
        missing_key(c, v, "address");
}

/* l4.services[] */

struct l4_service_state {
    struct cfg_l4_service *s;
    int mode_line, local_line, reals_line, encap_line;
    size_t local_items;  /* as written, valid or not */
};

enum { SK_VIP, SK_PROTOCOL, SK_MODE, SK_SCHEDULER, SK_HEALTH_CHECK, SK_LOCAL_ADDRESSES, SK_REALS, SK_ENCAP };
static const char *const l4_service_keys[] = {
    "vip", "protocol", "mode", "scheduler", "health_check", "local_addresses", "reals", "encapsulation", NULL,
};
static const char *const l4_encap_names[] = { "ipip", "gue", NULL };

static void parse_l4_local_addrs(struct ctx *c, const struct ynode *v, struct cfg_l4_service *s)
{
    if (!expect_seq(c, v))
        return;
    s->local_addrs = xcalloc(v->n_items ? v->n_items : 1, sizeof *s->local_addrs);
    for (size_t i = 0; i < v->n_items; i++) {
        size_t mark = path_push(c, "[%zu]", i);
        if (get_ip(c, v->items[i], &s->local_addrs[s->n_local_addrs]))
            s->n_local_addrs++;
        path_pop(c, mark);
    }
}

static void parse_l4_reals(struct ctx *c, const struct ynode *v, struct cfg_l4_service *s)
{
    if (!expect_seq(c, v))
        return;
    if (v->n_items == 0) {
        err_at(c, v->line, "at least one real server is required");
        return;
    }
    s->reals = xcalloc(v->n_items, sizeof *s->reals);
    s->n_reals = v->n_items;
    for (size_t i = 0; i < v->n_items; i++) {
        size_t mark = path_push(c, "[%zu]", i);
        parse_l4_real(c, v->items[i], &s->reals[i]);
        path_pop(c, mark);
    }
}

static void l4_service_field(struct ctx *c, int key, const struct ynode *v, void *obj)
{
    struct l4_service_state *st = obj;
    struct cfg_l4_service *s = st->s;
    int e;
    switch (key) {
    case SK_VIP:
        if (get_addr(c, v, &s->vip) && addr_port(&s->vip) == 0) {
            err_at(c, v->line, "port must be a number from 1 to 65535 for a VIP");
            s->vip.len = 0;
        }
        break;
    case SK_PROTOCOL:
        if (get_enum(c, v, l4_proto_names, &e))
            s->proto = e == 0 ? PROTO_TCP : PROTO_UDP;
        break;
    case SK_MODE:
        if (get_enum(c, v, l4_mode_names, &e))
            s->mode = (enum l4_fwd_mode)e;
        st->mode_line = v->line;
        break;
    case SK_SCHEDULER:
        if (get_enum(c, v, l4_sched_names, &e))
            s->scheduler = (enum l4_scheduler)e;
        break;
    case SK_HEALTH_CHECK:
        parse_health(c, v, &s->health);
        break;
    case SK_LOCAL_ADDRESSES:
        st->local_line = c->key_line;
        st->local_items = v->kind == YNODE_SEQ ? v->n_items : 1;
        parse_l4_local_addrs(c, v, s);
        break;
    case SK_REALS:
        st->reals_line = c->key_line;
        parse_l4_reals(c, v, s);
        break;
    case SK_ENCAP:
        if (get_enum(c, v, l4_encap_names, &e))
            s->gue = e == 1;
        st->encap_line = c->key_line;
        break;
    }
}

/* Cross-field rules once a service's keys are all read. */
static void check_l4_service(struct ctx *c, const struct l4_service_state *st)
{
    const struct cfg_l4_service *s = st->s;
    bool have_vip = s->vip.len != 0;
    if (s->mode == L4_FWD_FULLNAT && s->n_local_addrs == 0 && !st->local_line)
        err_at(c, st->mode_line, "mode fullnat needs local_addresses (the SNAT pool)");
    if (s->mode != L4_FWD_FULLNAT && st->local_line)
        err_in(c, st->local_line, "local_addresses", "only used with mode: fullnat (mode is %s)",
               l4_mode_names[s->mode]);
    if (st->encap_line && s->mode != L4_FWD_TUN)
        err_in(c, st->encap_line, "encapsulation", "only used with mode: tun (mode is %s)", l4_mode_names[s->mode]);
    if (st->local_line && s->mode == L4_FWD_FULLNAT && st->local_items == 0)
        err_in(c, st->local_line, "local_addresses", "at least one address is required");
    for (size_t i = 0; i < s->n_reals; i++) {
        const struct cfg_l4_real *r = &s->reals[i];
        if (!r->addr.len || !have_vip)
            continue;
        size_t mark = path_push(c, ".reals[%zu].address", i);
        /* DR only rewrites the MAC and TUN only wraps the packet: the
         * real receives the VIP's own port and, in DR, its family. */
        if ((s->mode == L4_FWD_DR || s->mode == L4_FWD_TUN) && addr_port(&r->addr) &&
            addr_port(&r->addr) != addr_port(&s->vip))
            err_at(c, r->line, "mode %s cannot change the port: use the VIP's port %u or none",
                   l4_mode_names[s->mode], addr_port(&s->vip));
        else if (s->mode != L4_FWD_TUN && sl_family(&r->addr) != sl_family(&s->vip))
            err_at(c, r->line, "mode %s needs a real of the VIP's address family (%s)", l4_mode_names[s->mode],
                   sl_family(&s->vip) == AF_INET ? "IPv4" : "IPv6");
        path_pop(c, mark);
    }
    for (size_t i = 0; i < s->n_local_addrs; i++) {
        if (have_vip && sl_family(&s->local_addrs[i]) != sl_family(&s->vip)) {
            size_t mark = path_push(c, ".local_addresses[%zu]", i);
            err_at(c, st->local_line, "a local address must be of the VIP's address family");
            path_pop(c, mark);
        }
    }
}

/* A real given without a port, or with port 0, takes the VIP's; the real's
 * text then names the full address, as everywhere else. */
static void fill_real_ports(struct cfg_l4_service *s)
{
    for (size_t i = 0; i < s->n_reals; i++) {
        struct sl_addr *a = &s->reals[i].addr;
        if (!a->len || addr_port(a) || !s->vip.len)
            continue;
        char ip[INET6_ADDRSTRLEN];
        uint16_t port = addr_port(&s->vip);
        if (a->ss.ss_family == AF_INET)
            ((struct sockaddr_in *)&a->ss)->sin_port = htons(port);
        else
            ((struct sockaddr_in6 *)&a->ss)->sin6_port = htons(port);
        addr_ip_string((const struct sockaddr *)&a->ss, ip, sizeof ip);
        if (a->ss.ss_family == AF_INET6)
            snprintf(a->text, sizeof a->text, "[%s]:%u", ip, port);
        else
            snprintf(a->text, sizeof a->text, "%s:%u", ip, port);
    }
}

static void check_duplicate_reals(struct ctx *c, const struct cfg_l4_service *s)
{
    const char **keys = xcalloc(s->n_reals ? s->n_reals : 1, sizeof *keys);
    for (size_t i = 0; i < s->n_reals; i++)
        keys[i] = s->reals[i].addr.len ? s->reals[i].addr.text : NULL;
    size_t *first = first_same(keys, s->n_reals);
    for (size_t i = 0; i < s->n_reals; i++) {
        if (first[i] == i)
            continue;
        size_t mark = path_push(c, ".reals[%zu]", i);
        err_at(c, s->reals[i].line, "duplicate real %s (first listed on line %d)", keys[i],
               s->reals[first[i]].line);
        path_pop(c, mark);
    }
    free(first);
    free(keys);
}

static void parse_l4_service(struct ctx *c, const struct ynode *v, struct cfg_l4_service *s)
{
    struct l4_service_state st = { .s = s };
    struct cfg_pool defaults;
    pool_defaults(&defaults);
    s->health = defaults.health;
    s->proto = PROTO_TCP;
    s->mode = L4_FWD_DR;
    s->scheduler = L4_SCHED_MAGLEV;
    s->line = v->line;
    st.mode_line = v->line;
    if (!walk_map(c, v, l4_service_keys, l4_service_field, &st))
        return;
    if (!map_has_key(v, "vip"))
        missing_key(c, v, "vip");
    if (!map_has_key(v, "reals"))
        missing_key(c, v, "reals");
    fill_real_ports(s);
    check_l4_service(c, &st);
    check_duplicate_reals(c, s);
}

/* Two services on the same {VIP, port, protocol} would fight over one
 * vips map entry. */
static void check_duplicate_services(struct ctx *c, const struct cfg_l4 *l4)
{
    const char **keys = xcalloc(l4->n_services ? l4->n_services : 1, sizeof *keys);
    char (*text)[80] = xcalloc(l4->n_services ? l4->n_services : 1, sizeof *text);
    for (size_t i = 0; i < l4->n_services; i++) {
        const struct cfg_l4_service *s = &l4->services[i];
        if (!s->vip.len)
            continue;
        snprintf(text[i], sizeof text[i], "%s/%s", s->vip.text, s->proto == PROTO_UDP ? "udp" : "tcp");
        keys[i] = text[i];
    }
    size_t *first = first_same(keys, l4->n_services);
    for (size_t i = 0; i < l4->n_services; i++) {
        if (first[i] == i)
            continue;
        size_t mark = path_push(c, "[%zu]", i);
        err_at(c, l4->services[i].line, "duplicate service %s (first listed on line %d)", keys[i],
               l4->services[first[i]].line);
        path_pop(c, mark);
    }
    free(first);
    free(text);
    free(keys);
}

static void parse_l4_services(struct ctx *c, const struct ynode *v, struct cfg_l4 *l4)
{
    if (!expect_seq(c, v))
        return;
    l4->services = xcalloc(v->n_items ? v->n_items : 1, sizeof *l4->services);
    l4->n_services = v->n_items;
    for (size_t i = 0; i < v->n_items; i++) {
        size_t mark = path_push(c, "[%zu]", i);
        parse_l4_service(c, v->items[i], &l4->services[i]);
        path_pop(c, mark);
    }
    check_duplicate_services(c, l4);
}

/* A Linux interface name: 1..15 bytes, no '/', no whitespace. */
static void parse_l4_interfaces(struct ctx *c, const struct ynode *v, struct cfg_l4 *l4)
{
    if (!expect_seq(c, v))
        return;
    if (v->n_items == 0) {
        err_at(c, v->line, "at least one interface is required");
        return;
    }
    l4->interfaces = xcalloc(v->n_items, sizeof *l4->interfaces);
    for (size_t i = 0; i < v->n_items; i++) {
        size_t mark = path_push(c, "[%zu]", i);
        const char *s = scalar(c, v->items[i], "an interface name");
        bool ok = s && *s && strlen(s) < 16 && is_visible(s) && !strchr(s, '/');
        if (s && !ok)
            err_at(c, v->items[i]->line, "expected an interface name (1 to 15 characters, no \"/\" or spaces), got \"%s\"",
                   shown_str(c, s));
        for (size_t j = 0; ok && j < l4->n_interfaces; j++) {
            if (strcmp(l4->interfaces[j], s) == 0) {
                err_at(c, v->items[i]->line, "duplicate interface \"%s\"", shown_str(c, s));
                ok = false;
            }
        }
        if (ok)
            l4->interfaces[l4->n_interfaces++] = xstrdup(s);
        path_pop(c, mark);
    }
}

/* "0x5eed1a4b" or a decimal number, 32 bits. */
static void parse_l4_seed(struct ctx *c, const struct ynode *v, uint32_t *out)
{
    const char *want = "a 32-bit number like 0x5eed1a4b";
    const char *s = scalar(c, v, want);
    if (!s)
        return;
    char *end = NULL;
    errno = 0;
    unsigned long long n = 0;
    bool ok = *s && *s != '-' && *s != '+' && *s != ' ';
    if (ok) {
        n = strtoull(s, &end, 0);
        ok = errno == 0 && end && *end == '\0' && n <= UINT32_MAX;
    }
    if (!ok) {
        err_at(c, v->line, "expected %s, got \"%s\"", want, shown_str(c, s));
        return;
    }
    *out = (uint32_t)n;
}

enum { L4K_INTERFACES, L4K_XDP_MODE, L4K_SEED, L4K_SYN_CAP, L4K_TUN_SRC4, L4K_TUN_SRC6, L4K_TUN_MTU,
       L4K_MAX_SERVICES, L4K_TX_INTERFACE, L4K_GUE_PORT, L4K_SERVICES };
static const char *const l4_keys[] = {
    "interfaces", "xdp_mode", "seed", "syn_cap", "tun_source_prefix", "tun_source_prefix6", "tun_mtu",
    "max_services", "tx_interface", "gue_port", "services", NULL,
};

static void l4_field(struct ctx *c, int key, const struct ynode *v, void *obj)
{
    struct cfg_l4 *l4 = obj;
    int e;
    switch (key) {
    case L4K_INTERFACES:
        parse_l4_interfaces(c, v, l4);
        break;
    case L4K_XDP_MODE:
        if (get_enum(c, v, xdp_mode_names, &e))
            l4->xdp_generic = e == 1;
        break;
    case L4K_SEED:
        parse_l4_seed(c, v, &l4->seed);
        break;
    case L4K_SYN_CAP:
        get_uint(c, v, 0, 100000000, &l4->syn_cap);
        break;
    case L4K_TUN_SRC4:
        get_prefix(c, v, AF_INET, &l4->tun_src4);
        break;
    case L4K_TUN_SRC6:
        get_prefix(c, v, AF_INET6, &l4->tun_src6);
        break;
    case L4K_TUN_MTU:
        /* 0 = no check; otherwise at least IPv6's minimum link MTU. */
        get_uint(c, v, 0, 65535, &l4->tun_mtu);
        if (l4->tun_mtu && l4->tun_mtu < 1280)
            err_at(c, v->line, "must be 0 (no check) or 1280..65535, got %u", l4->tun_mtu);
        break;
    case L4K_MAX_SERVICES:
        get_uint(c, v, 1, 1024, &l4->max_services);
        break;
    case L4K_GUE_PORT:
        get_uint(c, v, 1, 65535, &l4->gue_port);
        break;
    case L4K_TX_INTERFACE: {
        const char *s = scalar(c, v, "an interface name");
        if (s) {
            set_str(&l4->tx_interface, s);
            l4->tx_interface_line = v->line;
        }
        break;
    }
    case L4K_SERVICES:
        parse_l4_services(c, v, l4);
        break;
    }
}

static void parse_l4(struct ctx *c, const struct ynode *v)
{
    struct cfg_l4 *l4 = &c->cfg->l4;
    l4->present = true;
    l4->line = c->key_line;
    l4->seed = L4_DEFAULT_FLOW_SEED;
    l4->syn_cap = 100000;
    l4->max_services = 16;
    l4->gue_port = L4_GUE_DEFAULT_PORT;
    if (!walk_map(c, v, l4_keys, l4_field, l4))
        return;
    if (!map_has_key(v, "interfaces"))
        missing_key(c, v, "interfaces");
    if (l4->max_services < l4->n_services)
        l4->max_services = (uint32_t)l4->n_services;
    if (l4->tx_interface) {
        bool listed = false;
        for (size_t i = 0; i < l4->n_interfaces; i++)
            listed |= strcmp(l4->interfaces[i], l4->tx_interface) == 0;
        /* Drivers transmit XDP frames only on a device that has an XDP
         * program of its own (they set up their XDP send rings then). */
        if (!listed) {
            size_t mark = path_push(c, ".tx_interface");
            err_at(c, l4->tx_interface_line, "\"%s\" must be one of l4.interfaces (the forwarder must be attached "
                   "to the interface it sends on)", shown_str(c, l4->tx_interface));
            path_pop(c, mark);
        }
    }
    bool tun4 = false, tun6 = false;
    for (size_t i = 0; i < l4->n_services; i++) {
        const struct cfg_l4_service *s = &l4->services[i];
        for (size_t j = 0; s->mode == L4_FWD_TUN && j < s->n_reals; j++) {
            tun4 |= s->reals[j].addr.len && s->reals[j].addr.ss.ss_family == AF_INET;
            tun6 |= s->reals[j].addr.len && s->reals[j].addr.ss.ss_family == AF_INET6;
        }
    }
    /* TUN's outer source comes from these prefixes; without one the
     * forwarder would send from 0.0.0.0. */
    if (tun4 && !l4->tun_src4.family)
        err_at(c, l4->line, "a tun service with IPv4 reals needs l4.tun_source_prefix");
    if (tun6 && !l4->tun_src6.family)
        err_at(c, l4->line, "a tun service with IPv6 reals needs l4.tun_source_prefix6");
}

/* ------------------------------------------------------------------------
 * The document root.
 */

enum { ROOT_WORKERS, ROOT_LOG, ROOT_ADMIN, ROOT_POOLS, ROOT_LISTENERS, ROOT_L4, ROOT_DRAIN_TIMEOUT };
static const char *const root_keys[] = { "workers", "log", "admin", "pools", "listeners", "l4", "drain_timeout",
                                         NULL };

static void root_field(struct ctx *c, int key, const struct ynode *v, void *obj)
{
    struct root_state *st = obj;
    switch (key) {
    case ROOT_WORKERS:
        parse_workers(c, v);
        break;
    case ROOT_LOG:
        walk_map(c, v, log_keys, log_field, st->cfg);
        break;
    case ROOT_ADMIN:
        walk_map(c, v, admin_keys, admin_field, st);
        break;
    case ROOT_POOLS:
        parse_pools(c, v);
        break;
    case ROOT_LISTENERS:
        st->listeners = v;
        st->listeners_line = c->key_line;
        break;
    case ROOT_L4:
        parse_l4(c, v);
        break;
    case ROOT_DRAIN_TIMEOUT:
        get_duration(c, v, 0, 24 * HOUR, &c->cfg->drain_timeout_ms);
        break;
    }
}

static void build_pool_index(struct ctx *c)
{
    const struct sl_config *cfg = c->cfg;
    const char **names = xcalloc(cfg->n_pools, sizeof *names);
    for (size_t i = 0; i < cfg->n_pools; i++)
        names[i] = cfg->pools[i].name;
    c->pool_refs = sort_keys(names, cfg->n_pools, &c->n_pool_refs);
    free(names);
}

static void load_root(struct ctx *c, const struct ynode *root)
{
    struct root_state st = { .cfg = c->cfg };
    if (!root || ynode_is_null(root) || (root->kind == YNODE_MAP && root->n_pairs == 0)) {
        err_at(c, root ? root->line : 1, "empty configuration");
        return;
    }
    if (root->kind != YNODE_MAP) {
        type_error(c, root, "a mapping of settings");
        return;
    }
    walk_map(c, root, root_keys, root_field, &st);
    if (!st.listeners)
        return;
    /* Listeners last, whatever the key order: their routes name pools. */
    build_pool_index(c);
    size_t mark = path_push(c, "listeners");
    parse_listeners(c, st.listeners);
    path_pop(c, mark);
    if (c->cfg->n_listeners > 0 && c->cfg->n_pools == 0)
        err_in(c, st.listeners_line, "pools", "at least one pool is required when listeners are defined");
}

/* ------------------------------------------------------------------------
 * Entry points.
 */

struct sl_config *config_load_string(const char *name, const char *text, size_t len,
                                     struct config_errors *errs)
{
    struct config_errors local = { 0 };
    struct ctx c = { .file = name ? name : "<string>" };
    struct sl_config *cfg = NULL;
    struct ynode *root = NULL;
    struct ytree_error yerr;

    c.errs = errs ? errs : &local;
    c.errs->lines = NULL;
    c.errs->n = 0;
    if (len > CONFIG_MAX_BYTES) {
        err_at(&c, 0, "configuration is larger than 16 MiB");
    } else if (ytree_parse(text ? text : "", text ? len : 0, &root, &yerr) < 0) {
        /* Syntax errors stop here: past one, libyaml's view of the rest
         * of the document is guesswork. */
        err_at(&c, yerr.line, "%s", yerr.msg);
    } else {
        cfg = config_new(c.file);
        c.cfg = cfg;
        load_root(&c, root);
    }
    ytree_free(root);
    free(c.pool_refs);
    if (c.errs->n > 0) {
        config_free(cfg);
        cfg = NULL;
    }
    config_errors_free(&local);
    return cfg;
}

/* Read at most CONFIG_MAX_BYTES + 1 bytes: enough to tell "too big". */
static int read_file(FILE *f, char **out, size_t *out_len)
{
    size_t cap = 64 * KIB, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        oom();
    for (;;) {
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0 || len > CONFIG_MAX_BYTES)
            break;
        if (len == cap) {
            cap *= 2;
            char *bigger = realloc(buf, cap);
            if (!bigger)
                oom();
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
    struct ctx c = { .file = path, .errs = errs ? errs : &local };
    char *text = NULL;
    size_t len = 0;

    c.errs->lines = NULL;
    c.errs->n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        err_at(&c, 0, "cannot open: %s", strerror(errno));
    } else if (read_file(f, &text, &len) < 0) {
        err_at(&c, 0, "cannot read: %s", strerror(errno));
    }
    if (f)
        fclose(f);
    if (c.errs->n > 0) {
        config_errors_free(&local);
        return NULL;
    }
    struct sl_config *cfg = config_load_string(path, text, len, errs);
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

static void free_pool(struct cfg_pool *p)
{
    free(p->name);
    free(p->hash_key_name);
    free(p->sticky_cookie);
    free(p->health.http_path);
    free(p->health.http_host);
    free(p->backends);
}

static void free_listener(struct cfg_listener *l)
{
    free(l->name);
    for (size_t i = 0; i < l->n_routes; i++) {
        free(l->routes[i].host);
        free(l->routes[i].path_prefix);
    }
    free(l->routes);
    free(l->access_log);
    free(l->toa_map);
}

void config_l4_service_free(struct cfg_l4_service *s)
{
    free(s->health.http_path);
    free(s->health.http_host);
    free(s->local_addrs);
    free(s->reals);
    memset(s, 0, sizeof *s);
}

int config_l4_service_copy(struct cfg_l4_service *dst, const struct cfg_l4_service *src)
{
    *dst = *src;
    dst->health.http_path = src->health.http_path ? strdup(src->health.http_path) : NULL;
    dst->health.http_host = src->health.http_host ? strdup(src->health.http_host) : NULL;
    dst->local_addrs = malloc((src->n_local_addrs ? src->n_local_addrs : 1) * sizeof *dst->local_addrs);
    dst->reals = malloc((src->n_reals ? src->n_reals : 1) * sizeof *dst->reals);
    if ((src->health.http_path && !dst->health.http_path) || (src->health.http_host && !dst->health.http_host) ||
        !dst->local_addrs || !dst->reals) {
        config_l4_service_free(dst);
        return -1;
    }
    if (src->n_local_addrs)
        memcpy(dst->local_addrs, src->local_addrs, src->n_local_addrs * sizeof *dst->local_addrs);
    if (src->n_reals)
        memcpy(dst->reals, src->reals, src->n_reals * sizeof *dst->reals);
    return 0;
}

static void free_l4(struct cfg_l4 *l4)
{
    for (size_t i = 0; i < l4->n_interfaces; i++)
        free(l4->interfaces[i]);
    free(l4->interfaces);
    free(l4->tx_interface);
    for (size_t i = 0; i < l4->n_services; i++)
        config_l4_service_free(&l4->services[i]);
    free(l4->services);
}

void config_free(struct sl_config *cfg)
{
    if (!cfg)
        return;
    free_l4(&cfg->l4);
    for (size_t i = 0; i < cfg->n_pools; i++)
        free_pool(&cfg->pools[i]);
    for (size_t i = 0; i < cfg->n_listeners; i++)
        free_listener(&cfg->listeners[i]);
    free(cfg->pools);
    free(cfg->listeners);
    free(cfg->log_file);
    free(cfg->path);
    free(cfg);
}

int config_pool_index(const struct sl_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_pools; i++)
        if (cfg->pools[i].name && strcmp(cfg->pools[i].name, name) == 0)
            return (int)i;
    return -1;
}
