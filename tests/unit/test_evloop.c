/* Event loop: timer order, re-arming, stopping, io readiness, deferred frees. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/buffer.h"
#include "core/evloop.h"

static int fired[16];
static int n_fired;

static void record(struct ev_loop *loop, struct ev_timer *t)
{
    fired[n_fired++] = (int)(intptr_t)t->data;
    if (n_fired == 4)
        ev_break(loop);
}

static void test_timers_fire_in_deadline_order(void **state)
{
    struct ev_loop *loop = ev_loop_new();
    struct ev_timer t[5];
    int after[5] = {30, 10, 20, 5, 1000};
    for (int i = 0; i < 5; i++) {
        ev_timer_init(&t[i], record, (void *)(intptr_t)i);
        ev_timer_start(loop, &t[i], (uint64_t)after[i]);
    }
    ev_timer_stop(loop, &t[4]);
    assert_false(ev_timer_active(&t[4]));
    n_fired = 0;
    ev_run(loop);
    assert_int_equal(n_fired, 4);
    assert_int_equal(fired[0], 3);
    assert_int_equal(fired[1], 1);
    assert_int_equal(fired[2], 2);
    assert_int_equal(fired[3], 0);
    ev_loop_free(loop);
}

static void test_rearm_moves_timer(void **state)
{
    struct ev_loop *loop = ev_loop_new();
    struct ev_timer a, b, c, d;
    ev_timer_init(&a, record, (void *)(intptr_t)1);
    ev_timer_init(&b, record, (void *)(intptr_t)2);
    ev_timer_init(&c, record, (void *)(intptr_t)3);
    ev_timer_init(&d, record, (void *)(intptr_t)4);
    ev_timer_start(loop, &a, 5);
    ev_timer_start(loop, &b, 10);
    ev_timer_start(loop, &c, 15);
    ev_timer_start(loop, &d, 20);
    ev_timer_start(loop, &a, 25); /* pushed back: now last */
    ev_timer_start(loop, &d, 1);  /* pulled forward: now first */
    n_fired = 0;
    ev_run(loop);
    assert_int_equal(fired[0], 4);
    assert_int_equal(fired[1], 2);
    assert_int_equal(fired[2], 3);
    assert_int_equal(fired[3], 1);
    ev_loop_free(loop);
}

static int io_calls;
static void on_readable(struct ev_loop *loop, struct ev_io *io, uint32_t ev)
{
    char b[16];
    assert_true(ev & EPOLLIN);
    assert_int_equal(read(io->fd, b, sizeof b), 5);
    io_calls++;
    ev_io_stop(loop, io);
    ev_break(loop);
}

static void test_io_readiness(void **state)
{
    struct ev_loop *loop = ev_loop_new();
    int p[2];
    assert_int_equal(pipe(p), 0);
    struct ev_io io;
    ev_io_init(&io, p[0], on_readable, NULL);
    ev_io_set(loop, &io, EPOLLIN);
    assert_int_equal(write(p[1], "hello", 5), 5);
    io_calls = 0;
    ev_run(loop);
    assert_int_equal(io_calls, 1);
    close(p[0]);
    close(p[1]);
    ev_loop_free(loop);
}

static int freed;
static void count_free(void *p)
{
    free(p);
    freed++;
}

static void test_deferred_free_runs_after_batch(void **state)
{
    struct ev_loop *loop = ev_loop_new();
    freed = 0;
    ev_defer_free(loop, malloc(8), count_free);
    ev_defer_free(loop, malloc(8), count_free);
    assert_int_equal(freed, 0);
    ev_loop_free(loop);
    assert_int_equal(freed, 2);
}

/* Costly work waits for the sockets: with slow items A, B, C queued and
 * a pipe that becomes readable while A runs, the pipe's event comes
 * before B. */
static char trace[16];
static size_t n_trace;
static int wake_fd = -1;
static struct ev_slow slow[3];
static struct ev_io slow_io;

static void slow_cb(struct ev_loop *loop, struct ev_slow *s)
{
    trace[n_trace++] = (char)('A' + (s - slow));
    if (s == &slow[0])
        assert_int_equal(write(wake_fd, "x", 1), 1); /* a request arrives meanwhile */
    if (s == &slow[2])
        ev_break(loop);
}

static void slow_io_cb(struct ev_loop *loop, struct ev_io *io, uint32_t ev)
{
    char c;
    assert_int_equal(read(io->fd, &c, 1), 1);
    trace[n_trace++] = 'i';
}

static void test_slow_work_yields_to_ready_sockets(void **state)
{
    struct ev_loop *loop = ev_loop_new();
    int p[2];
    assert_int_equal(pipe(p), 0);
    wake_fd = p[1];
    ev_io_init(&slow_io, p[0], slow_io_cb, NULL);
    ev_io_set(loop, &slow_io, EPOLLIN);
    n_trace = 0;
    for (int i = 0; i < 3; i++) {
        ev_slow_init(&slow[i], slow_cb, NULL);
        ev_slow_start(loop, &slow[i]);
    }
    ev_slow_start(loop, &slow[1]); /* queued already: no second entry */
    assert_int_equal(ev_slow_pending(loop), 3);
    ev_run(loop);
    assert_int_equal(n_trace, 4);
    assert_memory_equal(trace, "AiBC", 4);
    assert_int_equal(ev_slow_pending(loop), 0);

    /* A stopped item never runs, wherever it was in the queue. */
    n_trace = 0;
    ev_slow_start(loop, &slow[1]);
    ev_slow_start(loop, &slow[0]);
    ev_slow_start(loop, &slow[2]);
    ev_slow_stop(loop, &slow[0]);
    assert_false(ev_slow_queued(&slow[0]));
    ev_run(loop);
    assert_memory_equal(trace, "BC", 2);
    assert_int_equal(n_trace, 2);
    ev_io_stop(loop, &slow_io);
    close(p[0]);
    close(p[1]);
    ev_loop_free(loop);
}

static void test_buffer_bounds(void **state)
{
    struct buf b = {0};
    assert_int_equal(buf_alloc(&b, 8), 0);
    assert_int_equal(buf_append(&b, "abcdef", 6), 0);
    assert_int_equal(buf_append(&b, "ghi", 3), -1); /* never grows */
    buf_consume(&b, 4);
    assert_int_equal(buf_append(&b, "ghij", 4), 0); /* compacts */
    assert_int_equal(buf_len(&b), 6);
    assert_memory_equal(buf_head(&b), "efghij", 6);
    assert_true(buf_room(&b) == 2);
    buf_release(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timers_fire_in_deadline_order),
        cmocka_unit_test(test_rearm_moves_timer),
        cmocka_unit_test(test_io_readiness),
        cmocka_unit_test(test_deferred_free_runs_after_batch),
        cmocka_unit_test(test_buffer_bounds),
        cmocka_unit_test(test_slow_work_yields_to_ready_sockets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
