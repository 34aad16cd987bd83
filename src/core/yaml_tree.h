/* A small tree of YAML nodes with line numbers, built from libyaml events.
 *
 * libyaml's document API loses nothing we need, but it expands nothing
 * either and gives no hook to bound depth; building our own tree from the
 * event stream lets the loader cap nesting and node count, keep aliases as
 * inert leaves (so they can be reported, never expanded), and remember the
 * 1-based line of every node for error messages.
 */
#ifndef SLUICE_CORE_YAML_TREE_H
#define SLUICE_CORE_YAML_TREE_H

#include <stdbool.h>
#include <stddef.h>

#define YTREE_MAX_DEPTH 64       /* nested mappings/sequences */
#define YTREE_MAX_NODES 1000000  /* far beyond any real config */

enum ynode_kind {
    YNODE_SCALAR,
    YNODE_SEQ,
    YNODE_MAP,
    YNODE_ALIAS, /* "*name": kept as a leaf so the caller can reject it */
};

struct ypair;

struct ynode {
    enum ynode_kind kind;
    int line;              /* 1-based line where the node starts */
    char *text;            /* scalar value or alias name; NUL-terminated */
    size_t len;            /* length of text (a quoted scalar may hold "\0") */
    bool plain;            /* unquoted scalar: only these can mean null */
    struct ynode **items;  /* YNODE_SEQ */
    size_t n_items;
    struct ypair *pairs;   /* YNODE_MAP, in document order */
    size_t n_pairs;
    size_t cap;            /* allocated items or pairs; builder bookkeeping */
};

struct ypair {
    struct ynode *key;
    struct ynode *value;   /* never NULL in a tree returned by ytree_parse */
};

struct ytree_error {
    int line;              /* 1-based */
    char msg[256];         /* e.g. "YAML syntax error: ..." */
};

/* Parse one YAML document. Returns 0 and sets *root (NULL for an empty
 * stream), or -1 with *err filled: syntax error, a second document, nesting
 * deeper than YTREE_MAX_DEPTH or more than YTREE_MAX_NODES nodes. */
int ytree_parse(const char *text, size_t len, struct ynode **root, struct ytree_error *err);

void ytree_free(struct ynode *n);

/* An unquoted "", "~", "null", "Null" or "NULL" scalar. */
bool ynode_is_null(const struct ynode *n);

#endif
