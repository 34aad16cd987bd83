/* A bounded byte buffer: data lives in [start, end) of a fixed block.
 * Reads append at end; consumers advance start; compaction moves the data
 * to the front only when the tail has no room, so steady streaming copies
 * nothing. The capacity never grows: a full buffer is backpressure. */
#ifndef SLUICE_LIB_BUFFER_H
#define SLUICE_LIB_BUFFER_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

struct buf {
    char *data;
    size_t cap, start, end;
};

static inline size_t buf_len(const struct buf *b) { return b->end - b->start; }
static inline char *buf_head(const struct buf *b) { return b->data + b->start; }
static inline size_t buf_room(const struct buf *b) { return b->cap - buf_len(b); }
static inline int buf_full(const struct buf *b) { return buf_len(b) == b->cap; }

static inline int buf_alloc(struct buf *b, size_t cap)
{
    if (b->data)
        return 0;
    b->data = malloc(cap);
    if (!b->data)
        return -1;
    b->cap = cap;
    b->start = b->end = 0;
    return 0;
}

static inline void buf_release(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->cap = b->start = b->end = 0;
}

/* Contiguous room at the tail, compacting first if needed. */
static inline char *buf_tail(struct buf *b, size_t *room)
{
    if (b->start == b->end)
        b->start = b->end = 0;
    if (b->end == b->cap && b->start > 0) {
        memmove(b->data, b->data + b->start, b->end - b->start);
        b->end -= b->start;
        b->start = 0;
    }
    *room = b->cap - b->end;
    return b->data + b->end;
}

static inline void buf_consume(struct buf *b, size_t n)
{
    b->start += n;
    if (b->start == b->end)
        b->start = b->end = 0;
}

/* Append bytes; returns 0, or -1 if they do not fit (nothing written). */
static inline int buf_append(struct buf *b, const void *p, size_t n)
{
    if (buf_room(b) < n)
        return -1;
    if (b->cap - b->end < n) {
        memmove(b->data, b->data + b->start, b->end - b->start);
        b->end -= b->start;
        b->start = 0;
    }
    memcpy(b->data + b->end, p, n);
    b->end += n;
    return 0;
}

#endif
