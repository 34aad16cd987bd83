/* A small epoll event loop with timers.
 *
 * Level-triggered. Interest changes made with ev_io_set() are recorded and
 * applied in one pass just before epoll_wait(), so a connection that flips
 * its interest several times while handling one event costs at most one
 * epoll_ctl. Objects that may still have events pending in the current batch
 * are released through ev_defer_free(), which runs after the batch.
 * Timers live in a binary min-heap keyed by their deadline in milliseconds
 * of CLOCK_MONOTONIC; ev_now() is cached once per iteration.
 */
#ifndef SLUICE_CORE_EVLOOP_H
#define SLUICE_CORE_EVLOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>

struct ev_loop;
struct ev_io;
struct ev_timer;

typedef void (*ev_io_cb)(struct ev_loop *loop, struct ev_io *io, uint32_t revents);
typedef void (*ev_timer_cb)(struct ev_loop *loop, struct ev_timer *t);
struct ev_slow;
typedef void (*ev_slow_cb)(struct ev_loop *loop, struct ev_slow *s);

struct ev_io {
    int fd;
    uint32_t want;       /* interest the owner asked for (EPOLLIN/EPOLLOUT) */
    uint32_t registered; /* interest the kernel has */
    bool added;          /* fd is in the epoll set */
    bool dirty;          /* on the pending-change list */
    ev_io_cb cb;
    void *data;
    struct ev_io *next_dirty;
};

struct ev_timer {
    uint64_t at;         /* deadline, ms */
    size_t heap_index;   /* 1-based position in the heap, 0 = not armed */
    ev_timer_cb cb;
    void *data;
};

/* Costly work (a TLS handshake's private-key operation) queued to run
 * after the I/O events: see ev_slow_start(). */
struct ev_slow {
    struct ev_slow *prev, *next;
    bool queued;
    ev_slow_cb cb;
    void *data;
};

struct ev_loop *ev_loop_new(void);
void ev_loop_free(struct ev_loop *loop);

/* Run until ev_break(). Returns 0, or -1 if epoll_wait failed. */
int ev_run(struct ev_loop *loop);
void ev_break(struct ev_loop *loop);

/* Milliseconds of CLOCK_MONOTONIC as of this iteration. */
uint64_t ev_now(const struct ev_loop *loop);
void ev_now_update(struct ev_loop *loop);
/* Uncached monotonic milliseconds. */
uint64_t ev_clock_ms(void);

void ev_io_init(struct ev_io *io, int fd, ev_io_cb cb, void *data);
/* Set the interest (0 = none, fd stays registered). */
void ev_io_set(struct ev_loop *loop, struct ev_io *io, uint32_t events);
/* Remove from the epoll set now (call before close(fd)). */
void ev_io_stop(struct ev_loop *loop, struct ev_io *io);

void ev_timer_init(struct ev_timer *t, ev_timer_cb cb, void *data);
void ev_timer_start(struct ev_loop *loop, struct ev_timer *t, uint64_t after_ms);
void ev_timer_stop(struct ev_loop *loop, struct ev_timer *t);
static inline bool ev_timer_active(const struct ev_timer *t) { return t->heap_index != 0; }

/* Queue costly work (FIFO; queuing a queued item does nothing). After
 * each batch of I/O events the loop runs EV_SLOW_PER_TURN queued items,
 * then polls again without waiting while any are left: every socket
 * that became ready meanwhile is served before the next costly item, so
 * a flood of handshakes delays a keep-alive request by one handshake
 * step at most, not by a batch of them. The owner stops the socket's
 * interest while its item waits (or the level-triggered event would
 * come back each turn) and must ev_slow_stop() it before freeing it. */
#define EV_SLOW_PER_TURN 1
void ev_slow_init(struct ev_slow *s, ev_slow_cb cb, void *data);
void ev_slow_start(struct ev_loop *loop, struct ev_slow *s);
void ev_slow_stop(struct ev_loop *loop, struct ev_slow *s);
static inline bool ev_slow_queued(const struct ev_slow *s) { return s->queued; }
/* Items waiting (for tests and the metrics of whoever asks). */
size_t ev_slow_pending(const struct ev_loop *loop);

/* Free `ptr` with `fn` once the current batch of events is processed. */
void ev_defer_free(struct ev_loop *loop, void *ptr, void (*fn)(void *));

#endif
