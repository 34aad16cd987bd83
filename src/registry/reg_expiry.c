/* reg_model_tick(): the clock of the model (see reg_model.h, "Expiry").
 *
 * Self-preservation compares the heartbeats received over the last rate
 * window with the heartbeats the registered ephemeral instances should
 * have sent in it: each one is expected every heartbeat_interval of its
 * service, from the time it was registered (or loaded) on. The window is
 * made of the last REG_RATE_BUCKETS complete buckets, so a bucket still
 * filling never makes the rate look low. With nothing expected (no
 * ephemeral instance old enough to have sent one), or fewer ephemeral
 * instances than self_preservation_min, there is nothing to judge and
 * self-preservation is off.
 *
 * Eviction cap: a service's eviction interval starts with the first expiry
 * it needs; its budget is the cap's share of the service's ephemeral
 * instances at that moment (at least one). Due instances beyond the budget
 * wait, the longest silent expiring first when budget comes back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry/reg_model.h"
#include "registry/reg_model_priv.h"

static uint64_t bucket_ms(const struct reg_model *m)
{
    return m->conf.rate_window_ms / REG_RATE_BUCKETS;
}

/* Heartbeats counted in buckets [first, last). */
static uint64_t heartbeats_between(const struct reg_model *m, uint64_t first, uint64_t last)
{
    uint64_t sum = 0;
    for (unsigned i = 0; i < REG_RATE_BUCKETS; i++)
        if (m->hb_bucket_no[i] >= first && m->hb_bucket_no[i] < last)
            sum += m->hb_count[i];
    return sum;
}

/* Heartbeats the ephemeral instances should have sent in [from, to). */
static double heartbeats_expected(const struct reg_model *m, uint64_t from, uint64_t to)
{
    double expected = 0;
    for (uint32_t s = 0; s < m->n_services; s++) {
        const struct reg_service *svc = m->services[s];
        if (!svc->n_ephemeral)
            continue;
        double per_ms = 1.0 / svc->settings.heartbeat_interval_ms;
        for (uint32_t i = 0; i < svc->n_instances; i++) {
            const struct reg_instance *inst = svc->instances[i];
            if (!inst->ephemeral || inst->remote)
                continue;
            uint64_t since = inst->registered_ms > from ? inst->registered_ms : from;
            if (since < to)
                expected += (double)(to - since) * per_ms;
        }
    }
    return expected;
}

/* The ephemeral instances this node judges (not other nodes' in a
 * cluster). */
static uint32_t ephemeral_count(const struct reg_model *m)
{
    uint32_t n = 0;
    for (uint32_t s = 0; s < m->n_services; s++) {
        const struct reg_service *svc = m->services[s];
        if (!m->node[0]) {
            n += svc->n_ephemeral;
            continue;
        }
        for (uint32_t i = 0; i < svc->n_instances; i++)
            n += svc->instances[i]->ephemeral && !svc->instances[i]->remote;
    }
    return n;
}

static bool judge_self_preservation(struct reg_model *m, uint64_t now_ms)
{
    if (m->conf.self_preservation <= 0 || ephemeral_count(m) < m->conf.self_preservation_min)
        return false;
    uint64_t current = now_ms / bucket_ms(m);
    uint64_t first = current >= REG_RATE_BUCKETS ? current - REG_RATE_BUCKETS : 0;
    uint64_t received = heartbeats_between(m, first, current);
    double expected = heartbeats_expected(m, first * bucket_ms(m), current * bucket_ms(m));
    m->st.heartbeats_in_window = received;
    m->st.heartbeats_expected = expected;
    if (expected < 1)
        return false;
    return (double)received < m->conf.self_preservation * expected;
}

static void update_self_preservation(struct reg_model *m, uint64_t now_ms, struct reg_tick_result *r)
{
    bool on = judge_self_preservation(m, now_ms);
    if (on == m->st.self_preservation)
        return;
    m->st.self_preservation = on;
    r->self_preservation_changed = true;
    if (on) {
        m->st.self_preservation_since_ms = now_ms;
        m->st.self_preservation_episodes++;
    }
}

static int reserve_scratch(struct reg_model *m, uint32_t need)
{
    if (need <= m->scratch_cap)
        return 0;
    uint32_t cap = m->scratch_cap ? m->scratch_cap : 64;
    while (cap < need)
        cap *= 2;
    struct reg_instance **p = realloc(m->scratch, (size_t)cap * sizeof *p);
    if (!p)
        return -1;
    m->scratch = p;
    m->scratch_cap = cap;
    return 0;
}

static int by_silence(const void *a, const void *b)
{
    const struct reg_instance *x = *(struct reg_instance *const *)a;
    const struct reg_instance *y = *(struct reg_instance *const *)b;
    if (x->last_heartbeat_ms != y->last_heartbeat_ms)
        return x->last_heartbeat_ms < y->last_heartbeat_ms ? -1 : 1;
    return strcmp(x->id, y->id);
}

static void mark_silent_down(struct reg_model *m, struct reg_instance *inst, uint64_t silence_ms, uint64_t now_ms)
{
    char reason[64];
    snprintf(reason, sizeof reason, "no heartbeat for %.1fs", (double)silence_ms / 1000.0);
    reg_model_apply_health(inst, REG_HEALTH_DOWN, reason, now_ms);
    inst->down_by_silence = true;
    m->st.marked_down_by_silence++;
    reg_model_changed(m, inst->service, inst, REG_EV_INSTANCE_CHANGE);
}

/* Mark the service's silent instances DOWN; the ones due to expire go to
 * the scratch list. Returns how many are due. */
static uint32_t scan_service(struct reg_model *m, struct reg_service *svc, uint64_t now_ms,
                             struct reg_tick_result *r)
{
    uint32_t due = 0;
    for (uint32_t i = 0; i < svc->n_instances; i++) {
        struct reg_instance *inst = svc->instances[i];
        if (!inst->ephemeral || inst->remote || now_ms < inst->grace_until_ms)
            continue;
        uint64_t silence = now_ms > inst->last_heartbeat_ms ? now_ms - inst->last_heartbeat_ms : 0;
        if (silence > svc->settings.heartbeat_timeout_ms && inst->health == REG_HEALTH_UP) {
            mark_silent_down(m, inst, silence, now_ms);
            r->marked_down++;
        }
        if (silence > svc->settings.expire_after_ms)
            m->scratch[due++] = inst;
    }
    return due;
}

/* How many of the due may expire now under the cap. */
static uint32_t eviction_allowance(struct reg_model *m, struct reg_service *svc, uint64_t now_ms)
{
    if (!svc->evict_budget || now_ms - svc->evict_window_start_ms >= m->conf.eviction_interval_ms) {
        svc->evict_window_start_ms = now_ms;
        svc->evicted_in_window = 0;
        uint32_t budget = (uint32_t)(m->conf.eviction_cap * svc->n_ephemeral);
        svc->evict_budget = budget ? budget : 1;
    }
    return svc->evict_budget - svc->evicted_in_window;
}

static void expire_service(struct reg_model *m, struct reg_service *svc, uint64_t now_ms, struct reg_tick_result *r)
{
    if (reserve_scratch(m, svc->n_instances) < 0)
        return; /* out of memory: try again next tick */
    uint32_t due = scan_service(m, svc, now_ms, r);
    svc->expiry_waiting = due;
    if (!due) {
        svc->eviction_capped = false;
        return;
    }
    if (m->st.self_preservation) {
        r->held_by_preservation += due;
        m->st.expiry_held_by_preservation += due;
        return;
    }
    uint32_t allowed = eviction_allowance(m, svc, now_ms);
    uint32_t n = due;
    svc->eviction_capped = due > allowed;
    if (svc->eviction_capped) {
        qsort(m->scratch, due, sizeof *m->scratch, by_silence);
        n = allowed;
        r->deferred_by_cap += due - allowed;
        m->st.expiry_deferred_by_cap += due - allowed;
    }
    for (uint32_t i = 0; i < n; i++)
        reg_model_remove_instance(m, m->scratch[i], REG_EV_INSTANCE_EXPIRE);
    svc->evicted_in_window += n;
    svc->expiry_waiting = due - n;
    r->expired += n;
    m->st.expirations += n;
}

void reg_model_tick(struct reg_model *m, uint64_t now_ms, struct reg_tick_result *out)
{
    struct reg_tick_result r = {0};
    update_self_preservation(m, now_ms, &r);
    for (uint32_t s = 0; s < m->n_services; s++)
        if (m->services[s]->n_ephemeral)
            expire_service(m, m->services[s], now_ms, &r);
    if (out)
        *out = r;
}
