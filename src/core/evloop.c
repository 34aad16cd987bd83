#include "core/evloop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EV_BATCH 256

struct deferred {
    void *ptr;
    void (*fn)(void *);
};

struct ev_loop {
    int epfd;
    bool stop;
    uint64_t now;
    struct ev_io *dirty;          /* singly linked pending interest changes */
    struct ev_timer **heap;       /* 1-based min-heap, heap[0] unused */
    size_t heap_len, heap_cap;
    struct deferred *deferred;
    size_t n_deferred, cap_deferred;
    struct ev_slow *slow_head, *slow_tail; /* costly work, FIFO */
    size_t n_slow;
};

uint64_t ev_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

struct ev_loop *ev_loop_new(void)
{
    struct ev_loop *loop = calloc(1, sizeof *loop);
    if (!loop)
        return NULL;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        free(loop);
        return NULL;
    }
    loop->heap_cap = 64;
    loop->heap = calloc(loop->heap_cap + 1, sizeof *loop->heap);
    if (!loop->heap) {
        close(loop->epfd);
        free(loop);
        return NULL;
    }
    loop->now = ev_clock_ms();
    return loop;
}

static void run_deferred(struct ev_loop *loop)
{
    /* A deferred free may defer more; loop until the list is empty. */
    while (loop->n_deferred) {
        struct deferred d = loop->deferred[--loop->n_deferred];
        d.fn(d.ptr);
    }
}

void ev_loop_free(struct ev_loop *loop)
{
    if (!loop)
        return;
    run_deferred(loop);
    close(loop->epfd);
    free(loop->heap);
    free(loop->deferred);
    free(loop);
}

void ev_break(struct ev_loop *loop) { loop->stop = true; }
uint64_t ev_now(const struct ev_loop *loop) { return loop->now; }
void ev_now_update(struct ev_loop *loop) { loop->now = ev_clock_ms(); }

void ev_io_init(struct ev_io *io, int fd, ev_io_cb cb, void *data)
{
    memset(io, 0, sizeof *io);
    io->fd = fd;
    io->cb = cb;
    io->data = data;
}

void ev_io_set(struct ev_loop *loop, struct ev_io *io, uint32_t events)
{
    io->want = events;
    if (!io->dirty && (events != io->registered || !io->added)) {
        io->dirty = true;
        io->next_dirty = loop->dirty;
        loop->dirty = io;
    }
}

static void unlink_dirty(struct ev_loop *loop, struct ev_io *io)
{
    if (!io->dirty)
        return;
    for (struct ev_io **pp = &loop->dirty; *pp; pp = &(*pp)->next_dirty) {
        if (*pp == io) {
            *pp = io->next_dirty;
            break;
        }
    }
    io->dirty = false;
}

void ev_io_stop(struct ev_loop *loop, struct ev_io *io)
{
    unlink_dirty(loop, io);
    if (io->added) {
        epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
        io->added = false;
    }
    io->registered = 0;
    io->want = 0;
}

static void apply_changes(struct ev_loop *loop)
{
    struct ev_io *io = loop->dirty;
    loop->dirty = NULL;
    while (io) {
        struct ev_io *next = io->next_dirty;
        io->dirty = false;
        io->next_dirty = NULL;
        if (!io->added || io->want != io->registered) {
            struct epoll_event ev = {.events = io->want, .data.ptr = io};
            int op = io->added ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
            if (epoll_ctl(loop->epfd, op, io->fd, &ev) == 0) {
                io->added = true;
                io->registered = io->want;
            }
        }
        io = next;
    }
}

/* ---- timers: binary min-heap ---- */

static void heap_place(struct ev_loop *loop, size_t i, struct ev_timer *t)
{
    loop->heap[i] = t;
    t->heap_index = i;
}

static void heap_up(struct ev_loop *loop, size_t i)
{
    struct ev_timer *t = loop->heap[i];
    while (i > 1 && loop->heap[i / 2]->at > t->at) {
        heap_place(loop, i, loop->heap[i / 2]);
        i /= 2;
    }
    heap_place(loop, i, t);
}

static void heap_down(struct ev_loop *loop, size_t i)
{
    struct ev_timer *t = loop->heap[i];
    for (;;) {
        size_t c = i * 2;
        if (c > loop->heap_len)
            break;
        if (c + 1 <= loop->heap_len && loop->heap[c + 1]->at < loop->heap[c]->at)
            c++;
        if (loop->heap[c]->at >= t->at)
            break;
        heap_place(loop, i, loop->heap[c]);
        i = c;
    }
    heap_place(loop, i, t);
}

void ev_timer_init(struct ev_timer *t, ev_timer_cb cb, void *data)
{
    memset(t, 0, sizeof *t);
    t->cb = cb;
    t->data = data;
}

void ev_timer_stop(struct ev_loop *loop, struct ev_timer *t)
{
    size_t i = t->heap_index;
    if (!i)
        return;
    struct ev_timer *last = loop->heap[loop->heap_len--];
    t->heap_index = 0;
    if (last == t)
        return;
    heap_place(loop, i, last);
    if (i > 1 && loop->heap[i / 2]->at > last->at)
        heap_up(loop, i);
    else
        heap_down(loop, i);
}

void ev_timer_start(struct ev_loop *loop, struct ev_timer *t, uint64_t after_ms)
{
    uint64_t at = loop->now + after_ms;
    if (t->heap_index) {
        /* Re-arming is the common case (idle timers pushed forward on
         * every read): adjust in place. */
        uint64_t old = t->at;
        t->at = at;
        if (at < old)
            heap_up(loop, t->heap_index);
        else if (at > old)
            heap_down(loop, t->heap_index);
        return;
    }
    if (loop->heap_len == loop->heap_cap) {
        size_t cap = loop->heap_cap * 2;
        struct ev_timer **h = realloc(loop->heap, (cap + 1) * sizeof *h);
        if (!h)
            abort(); /* out of memory for a timer: nothing sane to do */
        loop->heap = h;
        loop->heap_cap = cap;
    }
    t->at = at;
    loop->heap_len++;
    heap_place(loop, loop->heap_len, t);
    heap_up(loop, loop->heap_len);
}

static void run_timers(struct ev_loop *loop)
{
    while (loop->heap_len && loop->heap[1]->at <= loop->now) {
        struct ev_timer *t = loop->heap[1];
        ev_timer_stop(loop, t);
        t->cb(loop, t);
    }
}

void ev_slow_init(struct ev_slow *s, ev_slow_cb cb, void *data)
{
    s->prev = s->next = NULL;
    s->queued = false;
    s->cb = cb;
    s->data = data;
}

void ev_slow_start(struct ev_loop *loop, struct ev_slow *s)
{
    if (s->queued)
        return;
    s->queued = true;
    s->next = NULL;
    s->prev = loop->slow_tail;
    if (loop->slow_tail)
        loop->slow_tail->next = s;
    else
        loop->slow_head = s;
    loop->slow_tail = s;
    loop->n_slow++;
}

void ev_slow_stop(struct ev_loop *loop, struct ev_slow *s)
{
    if (!s->queued)
        return;
    if (s->prev)
        s->prev->next = s->next;
    else
        loop->slow_head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        loop->slow_tail = s->prev;
    s->prev = s->next = NULL;
    s->queued = false;
    loop->n_slow--;
}

size_t ev_slow_pending(const struct ev_loop *loop)
{
    return loop->n_slow;
}

static void run_slow(struct ev_loop *loop)
{
    for (int i = 0; i < EV_SLOW_PER_TURN && loop->slow_head; i++) {
        struct ev_slow *s = loop->slow_head;
        ev_slow_stop(loop, s);
        s->cb(loop, s);
    }
}

void ev_defer_free(struct ev_loop *loop, void *ptr, void (*fn)(void *))
{
    if (loop->n_deferred == loop->cap_deferred) {
        size_t cap = loop->cap_deferred ? loop->cap_deferred * 2 : 64;
        struct deferred *d = realloc(loop->deferred, cap * sizeof *d);
        if (!d)
            abort();
        loop->deferred = d;
        loop->cap_deferred = cap;
    }
    loop->deferred[loop->n_deferred++] = (struct deferred){ptr, fn};
}

int ev_run(struct ev_loop *loop)
{
    struct epoll_event events[EV_BATCH];
    loop->stop = false;
    while (!loop->stop) {
        apply_changes(loop);
        int timeout = -1;
        if (loop->heap_len) {
            uint64_t at = loop->heap[1]->at;
            ev_now_update(loop);
            timeout = at <= loop->now ? 0 : (int)(at - loop->now > 60000 ? 60000 : at - loop->now);
        }
        if (loop->slow_head)
            timeout = 0; /* queued work: look for ready sockets, do not wait */
        int n = epoll_wait(loop->epfd, events, EV_BATCH, timeout);
        if (n < 0 && errno != EINTR)
            return -1;
        ev_now_update(loop);
        for (int i = 0; i < n; i++) {
            struct ev_io *io = events[i].data.ptr;
            /* The owner may have stopped this io while handling an earlier
             * event of the batch; its memory is still valid (deferred free). */
            if (!io->added)
                continue;
            io->cb(loop, io, events[i].events);
        }
        run_deferred(loop);
        run_slow(loop);
        run_deferred(loop);
        run_timers(loop);
        run_deferred(loop);
    }
    return 0;
}
