/* A string-keyed hash index for the registry: service names, instance ids
 * and location names map to the caller's items in O(1) on average.
 *
 * Open addressing with linear probing and backward-shift deletion, so
 * there are no tombstones and a table that churns (instances registering
 * and expiring all day) keeps short probe sequences. The table stores a
 * pointer to each key, not a copy: the key must stay valid and unchanged
 * while its entry is in the table (keep it inside the item). Keys are
 * compared byte for byte; a caller that wants case-insensitive names folds
 * them before it calls (reg_model.c lower-cases service names).
 *
 * Hashing is sl_hash64() with the table's seed: a secret seed keeps keys
 * chosen by API callers from colliding on purpose.
 */
#ifndef SLUICE_REGISTRY_REG_TABLE_H
#define SLUICE_REGISTRY_REG_TABLE_H

#include <stddef.h>
#include <stdint.h>

struct reg_table_entry {
    uint64_t hash;
    const char *key;   /* NULL: empty slot */
    uint32_t key_len;
    void *item;
};

struct reg_table {
    struct reg_table_entry *slots;
    uint32_t cap;      /* a power of two, or 0 before the first put */
    uint32_t count;
    uint64_t seed;
};

/* An empty table (no memory until the first put). */
void reg_table_init(struct reg_table *t, uint64_t seed);
void reg_table_free(struct reg_table *t);

/* The item stored under key, or NULL. */
void *reg_table_get(const struct reg_table *t, const char *key, size_t len);

/* Store item under key (len bytes, at most UINT32_MAX). Returns 0,
 * -EEXIST when the key is already there (nothing changed), or -ENOMEM. */
int reg_table_put(struct reg_table *t, const char *key, size_t len, void *item);

/* Remove key; returns its item, or NULL when it was not there. */
void *reg_table_del(struct reg_table *t, const char *key, size_t len);

#endif
