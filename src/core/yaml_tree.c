#include "core/yaml_tree.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* The builder attaches every node to its parent the moment it is created,
 * so on any error everything allocated so far is reachable from root and
 * one ytree_free() releases it. */
struct builder {
    struct ynode *root;
    struct ynode *stack[YTREE_MAX_DEPTH]; /* open mappings and sequences */
    int depth;
    size_t n_nodes;
    int n_documents;
    struct ytree_error *err;
};

static void *xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size);
    if (!q) {
        /* A config is tiny; failing here means the process is doomed anyway. */
        fputs("sluice: out of memory\n", stderr);
        abort();
    }
    return q;
}

static int mark_line(yaml_mark_t m)
{
    return m.line >= INT32_MAX ? INT32_MAX : (int)m.line + 1;
}

static int fail(struct builder *b, int line, const char *msg)
{
    b->err->line = line;
    snprintf(b->err->msg, sizeof b->err->msg, "%s", msg);
    return -1;
}

static struct ynode *new_node(struct builder *b, enum ynode_kind kind, int line)
{
    if (b->n_nodes >= YTREE_MAX_NODES) {
        fail(b, line, "too many YAML nodes (the limit is 1000000)");
        return NULL;
    }
    b->n_nodes++;
    struct ynode *n = xrealloc(NULL, sizeof *n);
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->line = line;
    return n;
}

static void set_text(struct ynode *n, const unsigned char *s, size_t len)
{
    n->text = xrealloc(NULL, len + 1);
    if (len)
        memcpy(n->text, s, len);
    n->text[len] = '\0';
    n->len = len;
}

/* Capacity for one more element in an array that holds `used` of `cap`. */
static void *grow(void *array, size_t used, size_t *cap, size_t elem_size)
{
    if (used < *cap)
        return array;
    *cap = *cap ? *cap * 2 : 4;
    return xrealloc(array, *cap * elem_size);
}

/* Hang n under the innermost open container: as the next sequence item,
 * or in a mapping as the next key or the value of the last key. */
static void attach(struct builder *b, struct ynode *n)
{
    if (b->depth == 0) {
        b->root = n;
        return;
    }
    struct ynode *top = b->stack[b->depth - 1];
    if (top->kind == YNODE_SEQ) {
        top->items = grow(top->items, top->n_items, &top->cap, sizeof *top->items);
        top->items[top->n_items++] = n;
    } else if (top->n_pairs > 0 && !top->pairs[top->n_pairs - 1].value) {
        top->pairs[top->n_pairs - 1].value = n;
    } else {
        top->pairs = grow(top->pairs, top->n_pairs, &top->cap, sizeof *top->pairs);
        top->pairs[top->n_pairs].key = n;
        top->pairs[top->n_pairs].value = NULL;
        top->n_pairs++;
    }
}

static int open_container(struct builder *b, enum ynode_kind kind, int line)
{
    if (b->depth >= YTREE_MAX_DEPTH)
        return fail(b, line, "nesting is deeper than 64 levels");
    struct ynode *n = new_node(b, kind, line);
    if (!n)
        return -1;
    attach(b, n);
    b->stack[b->depth++] = n;
    return 0;
}

static int add_leaf(struct builder *b, const yaml_event_t *ev)
{
    bool is_alias = ev->type == YAML_ALIAS_EVENT;
    struct ynode *n = new_node(b, is_alias ? YNODE_ALIAS : YNODE_SCALAR, mark_line(ev->start_mark));
    if (!n)
        return -1;
    if (is_alias) {
        const unsigned char *anchor = ev->data.alias.anchor;
        set_text(n, anchor, strlen((const char *)anchor));
    } else {
        set_text(n, ev->data.scalar.value, ev->data.scalar.length);
        n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    }
    attach(b, n);
    return 0;
}

static int handle_event(struct builder *b, const yaml_event_t *ev)
{
    int line = mark_line(ev->start_mark);
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (b->n_documents++ > 0)
            return fail(b, line, "multiple YAML documents are not supported");
        return 0;
    case YAML_SCALAR_EVENT:
    case YAML_ALIAS_EVENT:
        return add_leaf(b, ev);
    case YAML_SEQUENCE_START_EVENT:
        return open_container(b, YNODE_SEQ, line);
    case YAML_MAPPING_START_EVENT:
        return open_container(b, YNODE_MAP, line);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        if (b->depth > 0)
            b->depth--;
        return 0;
    default:
        return 0;
    }
}

/* Reader errors (bad UTF-8, control characters) carry only a byte offset. */
static int offset_line(const char *text, size_t len, size_t offset)
{
    int line = 1;
    for (size_t i = 0; i < offset && i < len; i++)
        if (text[i] == '\n' && line < INT32_MAX)
            line++;
    return line;
}

static void syntax_error(const yaml_parser_t *p, const char *text, size_t len, struct ytree_error *err)
{
    const char *problem = p->problem ? p->problem : "unknown error";
    if (p->error == YAML_MEMORY_ERROR)
        problem = "out of memory";
    err->line = p->error == YAML_READER_ERROR ? offset_line(text, len, p->problem_offset)
                                              : mark_line(p->problem_mark);
    if (p->context)
        snprintf(err->msg, sizeof err->msg, "YAML syntax error: %s (%s on line %d)", problem,
                 p->context, mark_line(p->context_mark));
    else
        snprintf(err->msg, sizeof err->msg, "YAML syntax error: %s", problem);
}

int ytree_parse(const char *text, size_t len, struct ynode **root, struct ytree_error *err)
{
    struct builder b = { .err = err };
    yaml_parser_t parser;
    int rc = 0;

    *root = NULL;
    err->line = 0;
    err->msg[0] = '\0';
    if (!yaml_parser_initialize(&parser)) {
        snprintf(err->msg, sizeof err->msg, "cannot initialise the YAML parser");
        return -1;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            syntax_error(&parser, text, len, err);
            rc = -1;
            break;
        }
        bool done = ev.type == YAML_STREAM_END_EVENT;
        rc = handle_event(&b, &ev);
        yaml_event_delete(&ev);
        if (rc < 0 || done)
            break;
    }
    yaml_parser_delete(&parser);
    if (rc < 0) {
        ytree_free(b.root);
        return -1;
    }
    *root = b.root;
    return 0;
}

void ytree_free(struct ynode *n)
{
    if (!n)
        return;
    /* Recursion is bounded by YTREE_MAX_DEPTH (keys may nest too, but each
     * nested key is itself an open container counted in the depth). */
    for (size_t i = 0; i < n->n_items; i++)
        ytree_free(n->items[i]);
    for (size_t i = 0; i < n->n_pairs; i++) {
        ytree_free(n->pairs[i].key);
        ytree_free(n->pairs[i].value);
    }
    free(n->items);
    free(n->pairs);
    free(n->text);
    free(n);
}

bool ynode_is_null(const struct ynode *n)
{
    if (n->kind != YNODE_SCALAR || !n->plain)
        return false;
    static const char *const nulls[] = { "", "~", "null", "Null", "NULL" };
    for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++)
        if (strcmp(n->text, nulls[i]) == 0)
            return true;
    return false;
}
