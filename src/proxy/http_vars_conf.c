/* Config keys built on request variables: see http_vars_conf.h. */
#include "proxy/http_vars_conf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/config_walk.h"
#include "core/yaml_tree.h"
#include "lib/http1.h"

#define HEADER_NAME_MAX 256
#define HEADER_RULES_MAX 64     /* fields per set/add/remove */
#define RETURN_BODY_MAX 1024   /* fits the smallest head buffer (limits.max_header_size 1k + slack) */

/* Literal text of a format: no control byte but HTAB, so neither a log
 * line nor a header can be split by the configuration either. */
static bool literals_clean(const struct http_fmt *f, bool allow_tab)
{
    for (size_t i = 0; i < f->n_parts; i++) {
        const struct http_fmt_part *p = &f->parts[i];
        for (uint32_t k = 0; p->literal && k < p->len; k++) {
            unsigned char ch = (unsigned char)f->text[p->off + k];
            if ((ch < 0x20 && !(allow_tab && ch == '\t')) || ch == 0x7f)
                return false;
        }
    }
    return true;
}

/* Compile the scalar v as a format; false (reported) if it is not one. */
static bool compile_at(struct config_ctx *c, const struct ynode *v, const char *want, struct http_fmt *out)
{
    const char *s = config_scalar(c, v, want);
    if (!s)
        return false;
    char err[256];
    if (http_fmt_compile(s, out, err, sizeof err) < 0) {
        config_err_at(c, v->line, "%s", err);
        http_fmt_free(out);
        return false;
    }
    if (!literals_clean(out, true)) {
        config_err_at(c, v->line, "control characters (a line break, ...) are not allowed in %s", want);
        http_fmt_free(out);
        return false;
    }
    return true;
}

bool http_fmt_uses_request(const struct http_fmt *f)
{
    const uint64_t request_vars = 1ull << HV_HOST | 1ull << HV_REQUEST | 1ull << HV_REQUEST_METHOD |
                                  1ull << HV_REQUEST_URI | 1ull << HV_URI | 1ull << HV_ARGS |
                                  1ull << HV_QUERY_STRING | 1ull << HV_SERVER_PROTOCOL;
    return (f->uses & request_vars) || f->uses_request_headers;
}

/* ---------- log_formats ---------- */

enum { LF_FORMAT, LF_ESCAPE };
static const char *const log_format_keys[] = { "format", "escape", NULL };
static const char *const escape_names[] = { "default", "json", NULL };

static void log_format_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct cfg_log_format *lf = obj;
    int e;
    if (key == LF_FORMAT)
        compile_at(c, v, "a log format", &lf->fmt);
    else if (config_get_enum(c, v, escape_names, &e))
        lf->escape = e == 1 ? HTTP_ESC_JSON : HTTP_ESC_LOG;
}

void log_formats_parse(struct config_ctx *c, const struct ynode *v, struct cfg_log_format **out, size_t *n_out)
{
    if (!config_expect_map(c, v) || v->kind != YNODE_MAP)
        return;
    *out = config_xcalloc(v->n_pairs ? v->n_pairs : 1, sizeof **out);
    *n_out = v->n_pairs;
    for (size_t i = 0; i < v->n_pairs; i++) {
        const struct ynode *k = v->pairs[i].key, *val = v->pairs[i].value;
        struct cfg_log_format *lf = &(*out)[i];
        lf->line = k->line;
        lf->escape = HTTP_ESC_LOG;
        size_t mark = config_path_push(c, ".%s", config_shown(c, k->text, k->len));
        if (!k->text || !config_get_name(c, k, &lf->name)) {
            config_path_pop(c, mark);
            continue;
        }
        if (strcmp(lf->name, "combined") == 0 || strcmp(lf->name, "json") == 0)
            config_err_at(c, k->line, "\"%s\" is a built-in format; choose another name", lf->name);
        for (size_t j = 0; j < i; j++)
            if ((*out)[j].name && strcmp((*out)[j].name, lf->name) == 0)
                config_err_at(c, k->line, "duplicate log format name (first defined on line %d)", (*out)[j].line);
        if (val->kind == YNODE_MAP) {
            config_walk_map(c, val, log_format_keys, log_format_field, lf);
            if (!config_map_has_key(val, "format"))
                config_missing_key(c, val, "format");
        } else {
            compile_at(c, val, "a log format", &lf->fmt);
        }
        config_path_pop(c, mark);
    }
}

void log_formats_free(struct cfg_log_format *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(f[i].name);
        http_fmt_free(&f[i].fmt);
    }
    free(f);
}

const struct cfg_log_format *log_formats_find(const struct cfg_log_format *f, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (f[i].name && strcmp(f[i].name, name) == 0)
            return &f[i];
    return NULL;
}

/* ---------- header rules ---------- */

/* Fields a rule may not touch: they frame the message or belong to the
 * connection (RFC 9110 7.6.1), so a rule could make it malformed or
 * smuggle a second message; the X-Forwarded-* fields are Sluice's own. */
static const char *const framing_fields[] = {
    "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive", "Proxy-Connection",
    "TE", "Trailer", "Upgrade", NULL,
};
static const char *const request_own_fields[] = { "X-Forwarded-For", "X-Forwarded-Proto", NULL };

static bool in_list(const char *name, const char *const *list)
{
    for (size_t i = 0; list[i]; i++)
        if (strcasecmp(name, list[i]) == 0)
            return true;
    return false;
}

struct rules_walk {
    struct cfg_header_rules *r;
    bool response;
};

/* A field name a rule of kind op may name; reports why not. */
static bool rule_name_ok(struct config_ctx *c, const struct ynode *k, const char *name, enum header_op op,
                         bool response)
{
    if (!http1_is_token(name, HEADER_NAME_MAX)) {
        config_err_at(c, k->line, "\"%s\" is not a valid header field name (RFC 9110 token characters)",
                      config_shown_str(c, name));
        return false;
    }
    if (in_list(name, framing_fields)) {
        config_err_at(c, k->line, "%s frames the message or belongs to the connection; it cannot be changed", name);
        return false;
    }
    if (!response && in_list(name, request_own_fields)) {
        config_err_at(c, k->line, "%s is written by Sluice itself; it cannot be changed by a rule", name);
        return false;
    }
    if (!response && strcasecmp(name, "Host") == 0 && op != HDR_SET) {
        config_err_at(c, k->line, "Host can only be set (a request has exactly one)");
        return false;
    }
    return true;
}

static void add_op(struct cfg_header_rules *r, enum header_op op, const char *name, struct http_fmt *value)
{
    r->ops = realloc(r->ops, (r->n + 1) * sizeof *r->ops);
    if (!r->ops)
        config_oom();
    r->ops[r->n] = (struct cfg_header_op){.op = op, .name = config_xstrdup(name)};
    if (value)
        r->ops[r->n].value = *value;
    r->n++;
}

static void parse_value_map(struct config_ctx *c, const struct ynode *v, enum header_op op, struct rules_walk *rw)
{
    if (!config_expect_map(c, v) || v->kind != YNODE_MAP)
        return;
    if (v->n_pairs > HEADER_RULES_MAX) {
        config_err_at(c, v->line, "at most %d fields", HEADER_RULES_MAX);
        return;
    }
    for (size_t i = 0; i < v->n_pairs; i++) {
        const struct ynode *k = v->pairs[i].key, *val = v->pairs[i].value;
        const char *name = config_scalar(c, k, "a header field name");
        if (!name)
            continue;
        size_t mark = config_path_push(c, ".%s", config_shown_str(c, name));
        if (rule_name_ok(c, k, name, op, rw->response)) {
            for (size_t j = 0; j < i; j++)
                if (v->pairs[j].key->text && strcasecmp(v->pairs[j].key->text, name) == 0)
                    config_err_at(c, k->line, "%s is named twice (field names are case-insensitive)", name);
            struct http_fmt f;
            if (compile_at(c, val, "a header value", &f))
                add_op(rw->r, op, name, &f);
        }
        config_path_pop(c, mark);
    }
}

static void remove_item(struct config_ctx *c, const struct ynode *item, void *obj)
{
    struct rules_walk *rw = obj;
    const char *name = config_scalar(c, item, "a header field name");
    if (name && rule_name_ok(c, item, name, HDR_REMOVE, rw->response))
        add_op(rw->r, HDR_REMOVE, name, NULL);
}

enum { HR_SET, HR_ADD, HR_REMOVE };
static const char *const rules_keys[] = { "set", "add", "remove", NULL };

static void rules_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct rules_walk *rw = obj;
    if (key == HR_SET)
        parse_value_map(c, v, HDR_SET, rw);
    else if (key == HR_ADD)
        parse_value_map(c, v, HDR_ADD, rw);
    else
        config_each_item(c, v, HEADER_RULES_MAX, "fields", remove_item, rw);
}

void header_rules_parse(struct config_ctx *c, const struct ynode *v, bool response, struct cfg_header_rules *out)
{
    struct rules_walk rw = {out, response};
    config_walk_map(c, v, rules_keys, rules_field, &rw);
}

void header_rules_free(struct cfg_header_rules *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->ops[i].name);
        http_fmt_free(&r->ops[i].value);
    }
    free(r->ops);
    r->ops = NULL;
    r->n = 0;
}

/* ---------- plans ---------- */

static void plan_remove_adds(struct header_plan *p, const char *name)
{
    size_t k = 0;
    for (size_t i = 0; i < p->n_add; i++) {
        if (strcasecmp(p->add[i].name, name) == 0) {
            free(p->add[i].name);
            http_fmt_free(&p->add[i].value);
        } else {
            p->add[k++] = p->add[i];
        }
    }
    p->n_add = k;
}

static void plan_drop(struct header_plan *p, const char *name)
{
    for (size_t i = 0; i < p->n_drop; i++)
        if (strcasecmp(p->drop[i], name) == 0)
            return;
    p->drop = realloc(p->drop, (p->n_drop + 1) * sizeof *p->drop);
    if (!p->drop)
        config_oom();
    p->drop[p->n_drop++] = config_xstrdup(name);
}

static void plan_apply(struct header_plan *p, const struct cfg_header_rules *r)
{
    for (size_t i = 0; r && i < r->n; i++) {
        const struct cfg_header_op *op = &r->ops[i];
        if (op->op != HDR_ADD) {
            plan_drop(p, op->name);
            plan_remove_adds(p, op->name);
        }
        if (op->op == HDR_REMOVE)
            continue;
        p->add = realloc(p->add, (p->n_add + 1) * sizeof *p->add);
        if (!p->add)
            config_oom();
        struct header_add *a = &p->add[p->n_add++];
        a->name = config_xstrdup(op->name);
        if (http_fmt_copy(&a->value, &op->value) < 0)
            config_oom();
    }
}

void header_plan_build(const struct cfg_header_rules *listener, const struct cfg_header_rules *route,
                       struct header_plan *out)
{
    memset(out, 0, sizeof *out);
    plan_apply(out, listener);
    plan_apply(out, route);
}

void header_plan_free(struct header_plan *p)
{
    for (size_t i = 0; i < p->n_drop; i++)
        free(p->drop[i]);
    for (size_t i = 0; i < p->n_add; i++) {
        free(p->add[i].name);
        http_fmt_free(&p->add[i].value);
    }
    free(p->drop);
    free(p->add);
    memset(p, 0, sizeof *p);
}

bool header_plan_drops(const struct header_plan *p, const char *name, size_t len)
{
    for (size_t i = 0; i < p->n_drop; i++)
        if (strlen(p->drop[i]) == len && strncasecmp(p->drop[i], name, len) == 0)
            return true;
    return false;
}

bool header_plan_uses_request(const struct header_plan *p)
{
    for (size_t i = 0; i < p->n_add; i++)
        if (http_fmt_uses_request(&p->add[i].value))
            return true;
    return false;
}

/* ---------- redirect and return ---------- */

struct answer_walk {
    struct cfg_route_answer *a;
    int status_line;
};

enum { RD_TO, RD_STATUS };
static const char *const redirect_keys[] = { "to", "status", NULL };

static void redirect_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct answer_walk *aw = obj;
    if (key == RD_TO) {
        compile_at(c, v, "a URL", &aw->a->location);
        return;
    }
    uint32_t status;
    if (!config_get_uint(c, v, 300, 399, &status))
        return;
    if (status != 301 && status != 302 && status != 303 && status != 307 && status != 308) {
        config_err_at(c, v->line, "expected 301, 302, 303, 307 or 308, got %u", status);
        return;
    }
    aw->a->status = (int)status;
}

void route_redirect_parse(struct config_ctx *c, const struct ynode *v, struct cfg_route_answer *out)
{
    struct answer_walk aw = {out, 0};
    out->action = ROUTE_REDIRECT;
    out->status = 302;
    if (config_walk_map(c, v, redirect_keys, redirect_field, &aw) && !config_map_has_key(v, "to"))
        config_missing_key(c, v, "to");
}

enum { RT_STATUS, RT_BODY };
static const char *const return_keys[] = { "status", "body", NULL };

static void return_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct answer_walk *aw = obj;
    if (key == RT_STATUS) {
        uint32_t status;
        if (config_get_uint(c, v, 200, 599, &status))
            aw->a->status = (int)status;
        return;
    }
    const char *s = config_scalar(c, v, "the text of the body");
    if (!s)
        return;
    if (strlen(s) > RETURN_BODY_MAX) {
        config_err_at(c, v->line, "a body of at most %d bytes", RETURN_BODY_MAX);
        return;
    }
    config_set_str(&aw->a->body, s);
}

void route_return_parse(struct config_ctx *c, const struct ynode *v, struct cfg_route_answer *out)
{
    struct answer_walk aw = {out, 0};
    out->action = ROUTE_RETURN;
    out->status = 200;
    if (config_walk_map(c, v, return_keys, return_field, &aw) && !config_map_has_key(v, "status"))
        config_missing_key(c, v, "status");
}

void route_answer_free(struct cfg_route_answer *a)
{
    http_fmt_free(&a->location);
    free(a->body);
}
