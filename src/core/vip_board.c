/* See vip_board.h. The board is small (a few entries per service), so it
 * is a plain array searched linearly. */
#include "core/vip_board.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void notify_now(struct vip_board *b)
{
    for (size_t i = 0; i < VIP_MAX_SUBSCRIBERS; i++)
        if (b->subs[i].cb)
            b->subs[i].cb(b, b->subs[i].arg);
}

static void on_notify(struct ev_loop *loop, struct ev_timer *t)
{
    notify_now(t->data);
}

void vip_board_init(struct vip_board *b, struct ev_loop *loop)
{
    memset(b, 0, sizeof *b);
    b->loop = loop;
    ev_timer_init(&b->notify, on_notify, b);
}

void vip_board_fini(struct vip_board *b)
{
    if (b->loop)
        ev_timer_stop(b->loop, &b->notify);
    free(b->entries);
    b->entries = NULL;
    b->n = b->cap = 0;
}

/* Something changed: tell the subscribers once this loop turn is over
 * (a zero timer runs after the current batch of events). */
static void changed(struct vip_board *b)
{
    b->version++;
    if (!b->loop) {
        notify_now(b);
        return;
    }
    if (!ev_timer_active(&b->notify))
        ev_timer_start(b->loop, &b->notify, 0);
}

bool vip_ip_equal(const struct vip_ip *a, const struct vip_ip *b)
{
    if (a->family != b->family)
        return false;
    if (a->family == AF_INET)
        return a->v4.s_addr == b->v4.s_addr;
    return memcmp(&a->v6, &b->v6, sizeof a->v6) == 0;
}

bool vip_ip_is_any(const struct vip_ip *ip)
{
    if (ip->family == AF_INET)
        return ip->v4.s_addr == htonl(INADDR_ANY);
    return IN6_IS_ADDR_UNSPECIFIED(&ip->v6);
}

const char *vip_ip_string(const struct vip_ip *ip, char *buf, size_t cap)
{
    if (!inet_ntop(ip->family, ip->family == AF_INET ? (const void *)&ip->v4 : (const void *)&ip->v6, buf,
                   (socklen_t)cap))
        snprintf(buf, cap, "?");
    return buf;
}

int vip_ip_parse(const char *s, struct vip_ip *out)
{
    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, s, &out->v4) == 1) {
        out->family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, s, &out->v6) == 1) {
        out->family = AF_INET6;
        return 0;
    }
    return -1;
}

int vip_ip_from_sockaddr(const struct sockaddr *sa, struct vip_ip *out)
{
    memset(out, 0, sizeof *out);
    if (sa->sa_family == AF_INET) {
        out->family = AF_INET;
        out->v4 = ((const struct sockaddr_in *)sa)->sin_addr;
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        out->family = AF_INET6;
        out->v6 = ((const struct sockaddr_in6 *)sa)->sin6_addr;
        return 0;
    }
    return -1;
}

const char *vip_kind_name(enum vip_kind k)
{
    switch (k) {
    case VIP_SERVICE: return "service";
    case VIP_LOCAL: return "local";
    case VIP_STANDIN: return "standin";
    }
    return "?";
}

static bool same_entry(const struct vip_entry *a, const struct vip_entry *b)
{
    return !strcmp(a->source, b->source) && !strcmp(a->owner, b->owner) && vip_ip_equal(&a->addr, &b->addr) &&
           a->kind == b->kind && a->healthy == b->healthy && a->total == b->total && a->serving == b->serving;
}

static struct vip_entry *find(struct vip_board *b, const char *owner, const struct vip_ip *addr)
{
    for (size_t i = 0; i < b->n; i++)
        if (!strcmp(b->entries[i].owner, owner) && vip_ip_equal(&b->entries[i].addr, addr))
            return &b->entries[i];
    return NULL;
}

static int reserve(struct vip_board *b, size_t want)
{
    if (want <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 8;
    while (cap < want)
        cap *= 2;
    struct vip_entry *e = realloc(b->entries, cap * sizeof *e);
    if (!e)
        return -1;
    b->entries = e;
    b->cap = cap;
    return 0;
}

int vip_board_publish(struct vip_board *b, const struct vip_entry *e)
{
    struct vip_entry *have = find(b, e->owner, &e->addr);
    if (have) {
        if (same_entry(have, e))
            return 0;
        *have = *e;
    } else {
        if (reserve(b, b->n + 1) < 0)
            return -1;
        b->entries[b->n++] = *e;
    }
    changed(b);
    return 0;
}

void vip_board_remove(struct vip_board *b, const char *owner)
{
    size_t kept = 0;
    for (size_t i = 0; i < b->n; i++)
        if (strcmp(b->entries[i].owner, owner) != 0)
            b->entries[kept++] = b->entries[i];
    if (kept != b->n) {
        b->n = kept;
        changed(b);
    }
}

int vip_board_replace(struct vip_board *b, const char *source, const struct vip_entry *entries, size_t n)
{
    /* Same entries in the same order: nothing to tell anyone. */
    size_t mine = 0;
    bool same = true;
    for (size_t i = 0; i < b->n; i++) {
        if (strcmp(b->entries[i].source, source) != 0)
            continue;
        if (mine >= n || strcmp(b->entries[i].owner, entries[mine].owner) != 0 ||
            !vip_ip_equal(&b->entries[i].addr, &entries[mine].addr) || b->entries[i].kind != entries[mine].kind ||
            b->entries[i].healthy != entries[mine].healthy || b->entries[i].total != entries[mine].total ||
            b->entries[i].serving != entries[mine].serving || b->entries[i].proto != entries[mine].proto ||
            b->entries[i].port != entries[mine].port)
            same = false;
        mine++;
    }
    if (same && mine == n)
        return 0;
    if (reserve(b, b->n - mine + n) < 0)
        return -1;
    size_t kept = 0;
    for (size_t i = 0; i < b->n; i++)
        if (strcmp(b->entries[i].source, source) != 0)
            b->entries[kept++] = b->entries[i];
    for (size_t i = 0; i < n; i++) {
        struct vip_entry *e = &b->entries[kept++];
        *e = entries[i];
        snprintf(e->source, sizeof e->source, "%s", source);
    }
    b->n = kept;
    changed(b);
    return 0;
}

int vip_board_subscribe(struct vip_board *b, vip_board_cb cb, void *arg)
{
    for (size_t i = 0; i < VIP_MAX_SUBSCRIBERS; i++) {
        if (!b->subs[i].cb) {
            b->subs[i].cb = cb;
            b->subs[i].arg = arg;
            return 0;
        }
    }
    return -1;
}

int vip_board_set_forwarded(struct vip_board *b, vip_forwarded_fn fn, void *arg)
{
    for (size_t i = 0; i < VIP_MAX_SUBSCRIBERS; i++) {
        if (b->forwarded[i].fn && b->forwarded[i].arg == arg) {
            b->forwarded[i].fn = fn;
            return 0;
        }
    }
    if (!fn)
        return 0;
    for (size_t i = 0; i < VIP_MAX_SUBSCRIBERS; i++) {
        if (!b->forwarded[i].fn) {
            b->forwarded[i].fn = fn;
            b->forwarded[i].arg = arg;
            return 0;
        }
    }
    return -1;
}

int vip_board_forwarded(const struct vip_board *b, const struct vip_flow *f, uint64_t since_ns)
{
    int answer = -1;
    for (size_t i = 0; i < VIP_MAX_SUBSCRIBERS; i++) {
        if (!b->forwarded[i].fn)
            continue;
        int r = b->forwarded[i].fn(b->forwarded[i].arg, f, since_ns);
        if (r > 0)
            return 1;
        if (r == 0)
            answer = 0;
    }
    return answer;
}

bool vip_board_has_forwarded(const struct vip_board *b)
{
    for (size_t i = 0; i < VIP_MAX_SUBSCRIBERS; i++)
        if (b->forwarded[i].fn)
            return true;
    return false;
}

void vip_board_unsubscribe(struct vip_board *b, vip_board_cb cb, void *arg)
{
    for (size_t i = 0; i < VIP_MAX_SUBSCRIBERS; i++)
        if (b->subs[i].cb == cb && b->subs[i].arg == arg)
            b->subs[i].cb = NULL;
}

static void add_owner(struct vip_verdict *v, const char *owner)
{
    size_t used = strlen(v->owners);
    if (strstr(v->owners, "..."))
        return;
    int w = snprintf(v->owners + used, sizeof v->owners - used, "%s%s", used ? ", " : "", owner);
    if (w < 0 || (size_t)w >= sizeof v->owners - used)
        snprintf(v->owners + (used < sizeof v->owners - 4 ? used : sizeof v->owners - 4), 4, "...");
}

/* What entry e says about its address. */
static bool entry_announces(const struct vip_entry *e, uint32_t min_healthy)
{
    if (!e->serving)
        return false;
    return e->kind != VIP_SERVICE || e->healthy >= min_healthy;
}

static void judge(struct vip_verdict *v, const struct vip_entry *e, uint32_t min_healthy, bool *any_serving,
                  bool *any_announcing_own, bool *any_announcing_service)
{
    add_owner(v, e->owner);
    if (e->serving)
        *any_serving = true;
    if (e->kind == VIP_SERVICE && e->serving && (e->healthy > v->healthy || !v->total)) {
        v->healthy = e->healthy;
        v->total = e->total;
    }
    if (entry_announces(e, min_healthy) && e->kind != VIP_STANDIN)
        *any_announcing_own = true;
    if (entry_announces(e, min_healthy) && e->kind == VIP_SERVICE)
        *any_announcing_service = true;
}

int vip_board_verdicts(const struct vip_board *b, uint32_t min_healthy, struct vip_verdict **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!b->n)
        return 0;
    struct vip_verdict *v = calloc(b->n, sizeof *v);
    if (!v)
        return -1;
    size_t nv = 0;
    for (size_t i = 0; i < b->n; i++) {
        const struct vip_ip *ip = &b->entries[i].addr;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = vip_ip_equal(&b->entries[j].addr, ip);
        if (seen)
            continue;
        struct vip_verdict *one = &v[nv++];
        one->addr = *ip;
        bool any_serving = false, own = false, service = false, standin = false, all_standin = true;
        for (size_t j = i; j < b->n; j++) {
            const struct vip_entry *e = &b->entries[j];
            if (!vip_ip_equal(&e->addr, ip))
                continue;
            judge(one, e, min_healthy, &any_serving, &own, &service);
            standin |= e->kind == VIP_STANDIN && entry_announces(e, min_healthy);
            all_standin &= e->kind == VIP_STANDIN;
        }
        if (own || standin) {
            one->reason = VIP_ANNOUNCE;
            one->standin = !own;
            one->local_only = own && !service;
        } else {
            one->reason = any_serving ? VIP_TOO_FEW_HEALTHY : VIP_NOT_SERVING;
            one->standin = all_standin;
        }
    }
    *out = v;
    *n = nv;
    return 0;
}
