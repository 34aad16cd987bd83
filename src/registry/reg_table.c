/* See reg_table.h. */
#include "registry/reg_table.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/hash.h"

#define REG_TABLE_MIN_CAP 8u

void reg_table_init(struct reg_table *t, uint64_t seed)
{
    *t = (struct reg_table){.seed = seed};
}

void reg_table_free(struct reg_table *t)
{
    free(t->slots);
    t->slots = NULL;
    t->cap = t->count = 0;
}

static uint64_t key_hash(const struct reg_table *t, const char *key, size_t len)
{
    return sl_hash64(key, len, t->seed);
}

static int find_slot(const struct reg_table *t, uint64_t h, const char *key, size_t len)
{
    if (!t->cap)
        return -1;
    uint32_t mask = t->cap - 1;
    for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
        const struct reg_table_entry *e = &t->slots[i];
        if (!e->key)
            return -1;
        if (e->hash == h && e->key_len == len && memcmp(e->key, key, len) == 0)
            return (int)i;
    }
}

void *reg_table_get(const struct reg_table *t, const char *key, size_t len)
{
    int i = find_slot(t, key_hash(t, key, len), key, len);
    return i < 0 ? NULL : t->slots[i].item;
}

/* Place an entry known to be absent (no comparison of keys). */
static void place(struct reg_table_entry *slots, uint32_t cap, const struct reg_table_entry *e)
{
    uint32_t mask = cap - 1;
    uint32_t i = (uint32_t)e->hash & mask;
    while (slots[i].key)
        i = (i + 1) & mask;
    slots[i] = *e;
}

static int grow(struct reg_table *t)
{
    uint32_t cap = t->cap ? t->cap * 2 : REG_TABLE_MIN_CAP;
    if (cap < t->cap) /* 2^32 slots: give up rather than wrap */
        return -ENOMEM;
    struct reg_table_entry *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return -ENOMEM;
    for (uint32_t i = 0; i < t->cap; i++)
        if (t->slots[i].key)
            place(slots, cap, &t->slots[i]);
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
    return 0;
}

int reg_table_put(struct reg_table *t, const char *key, size_t len, void *item)
{
    if (len > UINT32_MAX)
        return -ENOMEM;
    uint64_t h = key_hash(t, key, len);
    if (find_slot(t, h, key, len) >= 0)
        return -EEXIST;
    /* Keep the load at or under 3/4 so probe sequences stay short. */
    if ((uint64_t)(t->count + 1) * 4 > (uint64_t)t->cap * 3) {
        int rc = grow(t);
        if (rc < 0)
            return rc;
    }
    struct reg_table_entry e = {.hash = h, .key = key, .key_len = (uint32_t)len, .item = item};
    place(t->slots, t->cap, &e);
    t->count++;
    return 0;
}

void *reg_table_del(struct reg_table *t, const char *key, size_t len)
{
    int found = find_slot(t, key_hash(t, key, len), key, len);
    if (found < 0)
        return NULL;
    uint32_t mask = t->cap - 1;
    uint32_t hole = (uint32_t)found;
    void *item = t->slots[hole].item;
    /* Backward shift: move each later entry of the run into the hole when
     * its home slot does not lie cyclically between the hole and itself. */
    for (uint32_t j = (hole + 1) & mask; t->slots[j].key; j = (j + 1) & mask) {
        uint32_t home = (uint32_t)t->slots[j].hash & mask;
        uint32_t dist_home = (j - home) & mask;
        uint32_t dist_hole = (j - hole) & mask;
        if (dist_home >= dist_hole) {
            t->slots[hole] = t->slots[j];
            hole = j;
        }
    }
    t->slots[hole] = (struct reg_table_entry){0};
    t->count--;
    return item;
}
