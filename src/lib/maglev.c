/* See maglev.h for the algorithm and its guarantees. */
#include "lib/maglev.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lib/hash.h"

#define MAGLEV_MIN_SIZE 65537u
#define MAGLEV_SLOTS_PER_BACKEND 100u
/* Tweak that makes a backend's skip hash independent of its offset hash. */
#define MAGLEV_SKIP_TWEAK 0x9e3779b97f4a7c15ULL

/* Per-backend build state. */
struct mg_node {
    const char *key;
    int32_t index;   /* position in the caller's arrays */
    uint32_t weight;
    uint32_t pos;    /* next slot in this backend's permutation */
    uint32_t skip;   /* permutation step, 1..m-1 */
};

static bool is_prime(uint32_t x)
{
    if (x < 2)
        return false;
    if (x % 2 == 0)
        return x == 2;
    for (uint32_t d = 3; (uint64_t)d * d <= x; d += 2)
        if (x % d == 0)
            return false;
    return true;
}

uint32_t maglev_table_size(size_t n_backends)
{
    uint64_t want = (uint64_t)n_backends * MAGLEV_SLOTS_PER_BACKEND;
    if (want <= MAGLEV_MIN_SIZE)
        return MAGLEV_MIN_SIZE;
    if (want > UINT32_MAX - 1000) /* absurd pool sizes: clamp, tables stay 32-bit */
        want = UINT32_MAX - 1000;
    uint32_t m = (uint32_t)want;
    while (!is_prime(m))
        m++;
    return m;
}

/* Canonical order: by key, so that the table does not depend on the order
 * the caller lists its backends in. Index only breaks ties between equal
 * (misconfigured) keys. */
static int node_cmp(const void *pa, const void *pb)
{
    const struct mg_node *a = pa, *b = pb;
    int c = strcmp(a->key, b->key);
    if (c != 0)
        return c;
    return (a->index > b->index) - (a->index < b->index);
}

/* A turn-queue entry: everything the ordering needs, inline, so heap
 * comparisons touch only the (small, cache-resident) heap array. */
struct mg_turn {
    uint32_t next;   /* number of the node's next turn: turns + 1 */
    uint32_t weight;
    uint32_t node;   /* index into nodes[], which is in key order */
};

/* Stride scheduling order: the entry whose next turn, next / weight, comes
 * first. Cross-multiplied: next < 2^32 and weight < 2^32, so the products
 * fit in 64 bits. Ties go to the earlier node in key order, which for equal
 * weights gives the classic Maglev round-robin. */
static inline bool turn_before(const struct mg_turn *a, const struct mg_turn *b)
{
    uint64_t ta = (uint64_t)a->next * b->weight;
    uint64_t tb = (uint64_t)b->next * a->weight;
    if (ta != tb)
        return ta < tb;
    return a->node < b->node;
}

static void heap_sift_up(struct mg_turn *heap, size_t i)
{
    struct mg_turn x = heap[i];
    while (i > 0 && turn_before(&x, &heap[(i - 1) / 2])) {
        heap[i] = heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    heap[i] = x;
}

/* Re-place the top entry after its turn number grew. The node that just
 * had its turn almost always belongs near the bottom again, so move the hole
 * down to a leaf along the earlier children (one comparison per level) and
 * then sift up from there (Floyd's trick): about half the comparisons of the
 * textbook sift-down, which dominated the build time. */
static void heap_replace_top(struct mg_turn *heap, size_t len)
{
    struct mg_turn x = heap[0];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= len)
            break;
        if (c + 1 < len && turn_before(&heap[c + 1], &heap[c]))
            c++;
        heap[i] = heap[c];
        i = c;
    }
    heap[i] = x;
    heap_sift_up(heap, i);
}

static void init_permutation(struct mg_node *node, uint32_t m, uint64_t seed)
{
    size_t len = strlen(node->key);
    uint64_t h_offset = sl_hash64(node->key, len, seed);
    uint64_t h_skip = sl_hash64(node->key, len, seed ^ MAGLEV_SKIP_TWEAK);
    node->pos = (uint32_t)(h_offset % m);
    /* Any skip in 1..m-1 visits every slot because m is prime. */
    node->skip = (uint32_t)(h_skip % (m - 1)) + 1;
}

/* Claim the node's next free slot. The permutation is walked incrementally
 * ((pos + skip) mod m) rather than precomputed: precomputing n*m entries
 * would dominate the build time and memory. */
static void claim_slot(int32_t *table, uint32_t m, struct mg_node *node)
{
    while (table[node->pos] >= 0) {
        node->pos += node->skip;
        if (node->pos >= m)
            node->pos -= m;
    }
    table[node->pos] = node->index;
}

/* Equal weights: stride order is plain round-robin in key order, so the
 * turn queue is not needed. Same table as the general path, much cheaper,
 * and by far the most common configuration. */
static void populate_equal(int32_t *table, uint32_t m, struct mg_node *nodes, size_t count)
{
    uint32_t filled = 0;
    for (;;) {
        for (size_t i = 0; i < count; i++) {
            claim_slot(table, m, &nodes[i]);
            if (++filled == m)
                return;
        }
    }
}

static void populate_weighted(int32_t *table, uint32_t m, struct mg_node *nodes,
                              struct mg_turn *heap, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        heap[i] = (struct mg_turn){.next = 1, .weight = nodes[i].weight, .node = (uint32_t)i};
        heap_sift_up(heap, i);
    }
    for (uint32_t filled = 0; filled < m; filled++) {
        claim_slot(table, m, &nodes[heap[0].node]);
        heap[0].next++;
        heap_replace_top(heap, count);
    }
}

static bool all_equal_weights(const struct mg_node *nodes, size_t count)
{
    for (size_t i = 1; i < count; i++)
        if (nodes[i].weight != nodes[0].weight)
            return false;
    return true;
}

int maglev_build(int32_t *table, uint32_t m, const char *const *keys, const uint32_t *weights,
                 size_t n, uint64_t seed)
{
    if (!is_prime(m) || n > INT32_MAX) {
        errno = EINVAL;
        return -1;
    }
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        count += weights[i] > 0;
    if (count == 0) {
        for (uint32_t s = 0; s < m; s++)
            table[s] = -1;
        errno = ENOENT;
        return -1;
    }

    struct mg_node *nodes = calloc(count, sizeof *nodes);
    struct mg_turn *heap = calloc(count, sizeof *heap);
    if (!nodes || !heap) {
        free(nodes);
        free(heap);
        errno = ENOMEM;
        return -1;
    }

    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (weights[i] == 0)
            continue;
        nodes[k].key = keys[i];
        nodes[k].index = (int32_t)i;
        nodes[k].weight = weights[i];
        k++;
    }
    qsort(nodes, count, sizeof *nodes, node_cmp);
    for (size_t i = 0; i < count; i++)
        init_permutation(&nodes[i], m, seed);

    for (uint32_t s = 0; s < m; s++)
        table[s] = -1;
    if (all_equal_weights(nodes, count))
        populate_equal(table, m, nodes, count);
    else
        populate_weighted(table, m, nodes, heap, count);

    free(nodes);
    free(heap);
    return 0;
}
