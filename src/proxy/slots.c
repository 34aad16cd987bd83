/* See slots.h. */
#include "proxy/slots.h"

#include <string.h>

static int find_addr(const struct slot *s, size_t n, const struct sl_addr *a)
{
    for (size_t i = 0; i < n; i++)
        if (s[i].state != SLOT_EMPTY && addr_equal(&s[i].addr, a))
            return (int)i;
    return -1;
}

static bool listed_before(const struct slot_member *m, size_t i)
{
    for (size_t k = 0; k < i; k++)
        if (addr_equal(&m[k].addr, &m[i].addr))
            return true;
    return false;
}

static void set_state(struct slot *s, enum slot_state st)
{
    if (s->state != st) {
        s->state = st;
        s->state_changed = true;
    }
}

static void set_weight(struct slot *s, uint32_t w)
{
    if (s->weight != w) {
        s->weight = w;
        s->weight_changed = true;
    }
}

void slots_apply(struct slot *s, size_t n, const struct slot_member *m, size_t n_m, uint64_t now_ms,
                 struct slots_result *res)
{
    memset(res, 0, sizeof *res);
    /* Which slots the new list keeps: first every member already seated
     * (so a free slot is never given away before we know it is free). */
    bool keep[n ? n : 1];
    memset(keep, 0, sizeof keep);
    for (size_t i = 0; i < n_m; i++) {
        if (listed_before(m, i))
            continue;
        int at = find_addr(s, n, &m[i].addr);
        if (at < 0)
            continue;
        keep[at] = true;
        set_weight(&s[at], m[i].weight);
        if (s[at].state == SLOT_DRAINING)
            res->added++; /* back before its slot was reclaimed */
        else
            res->kept++;
        set_state(&s[at], SLOT_ACTIVE);
    }
    /* Gone members drain. */
    for (size_t i = 0; i < n; i++) {
        if (s[i].state == SLOT_ACTIVE && !keep[i]) {
            set_state(&s[i], SLOT_DRAINING);
            s[i].drain_since_ms = now_ms;
            res->removed++;
        }
    }
    /* New members take empty slots. */
    size_t next_free = 0;
    for (size_t i = 0; i < n_m; i++) {
        if (listed_before(m, i) || find_addr(s, n, &m[i].addr) >= 0)
            continue;
        while (next_free < n && s[next_free].state != SLOT_EMPTY)
            next_free++;
        if (next_free == n) {
            res->waiting++;
            continue;
        }
        struct slot *f = &s[next_free];
        f->addr = m[i].addr;
        f->addr_changed = true;
        f->weight = m[i].weight;
        f->weight_changed = true;
        set_state(f, SLOT_ACTIVE);
        res->added++;
    }
}

size_t slots_reclaim(struct slot *s, size_t n, uint64_t now_ms, uint64_t min_drain_ms,
                     bool (*busy)(void *arg, size_t i), void *arg)
{
    size_t freed = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i].state != SLOT_DRAINING || now_ms - s[i].drain_since_ms < min_drain_ms)
            continue;
        if (busy && busy(arg, i))
            continue;
        set_state(&s[i], SLOT_EMPTY);
        memset(&s[i].addr, 0, sizeof s[i].addr);
        s[i].addr_changed = true;
        s[i].weight = 0;
        freed++;
    }
    return freed;
}

size_t slots_used(const struct slot *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += s[i].state != SLOT_EMPTY;
    return k;
}
