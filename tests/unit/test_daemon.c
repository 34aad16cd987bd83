/* Unit tests for core/daemon, the skeleton every daemon shares: signals
 * read on the loop and handed to the tier's reload and stop, the admin
 * API started and moved with admin.listen, the pid file written and
 * removed. Real signals (raise), real sockets on 127.0.0.1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/daemon.h"
#include "core/log.h"

struct tier {
    struct daemon d;
    int reloads, stops, others, last_sig;
    bool stop_now;               /* the stop hook calls daemon_stopped itself */
};

static void on_reload(void *arg)
{
    struct tier *t = arg;
    t->reloads++;
    daemon_stopped(&t->d);       /* let the test look */
}

static void on_stop(void *arg, int sig)
{
    struct tier *t = arg;
    t->stops++;
    t->last_sig = sig;
    if (t->stop_now)
        daemon_stopped(&t->d);
}

static void on_other(void *arg, int sig)
{
    struct tier *t = arg;
    t->others++;
    t->last_sig = sig;
    daemon_stopped(&t->d);
}

static const struct daemon_ops ops = { .reload = on_reload, .stop = on_stop, .signal = on_other };
static const int stops[] = { SIGQUIT, 0 }, others[] = { SIGUSR2, 0 };

static struct sl_config *config(const char *yaml)
{
    struct config_errors errs = { 0 };
    struct sl_config *cfg = config_load_string("d.yaml", yaml, strlen(yaml), &errs);
    if (!cfg)
        fail_msg("config: %s", errs.n ? errs.lines[0] : "?");
    return cfg;
}

/* Run the loop until a hook breaks it; a timer bounds the wait. */
static void give_up(struct ev_loop *loop, struct ev_timer *t) { ev_break(loop); }
static void run_once(struct tier *t)
{
    struct ev_timer guard;
    ev_timer_init(&guard, give_up, NULL);
    ev_now_update(t->d.loop);
    ev_timer_start(t->d.loop, &guard, 5000);
    assert_int_equal(daemon_run(&t->d), 0);
    ev_timer_stop(t->d.loop, &guard);
}

static void test_signals_reach_the_tier(void **state)
{
    struct sl_config *cfg = config("log: {level: error}\nadmin: {listen: off}\n");
    struct tier t = { .stop_now = true };
    const struct daemon_spec spec = { .role = "test", .stop_signals = stops, .other_signals = others, .ops = &ops,
                                      .arg = &t };
    char err[256];
    assert_int_equal(daemon_init(&t.d, &spec, cfg, err, sizeof err), 0);
    assert_int_equal(log_get_level(), LOG_LEVEL_ERROR);
    assert_int_equal(daemon_catch_signals(&t.d, err, sizeof err), 0);

    raise(SIGHUP);
    run_once(&t);
    assert_int_equal(t.reloads, 1);
    raise(SIGTERM);
    run_once(&t);
    assert_int_equal(t.stops, 1);
    assert_int_equal(t.last_sig, SIGTERM);
    raise(SIGQUIT);              /* a stop signal of this tier's */
    run_once(&t);
    assert_int_equal(t.stops, 2);
    assert_int_equal(t.last_sig, SIGQUIT);
    raise(SIGUSR2);              /* one it handles itself */
    run_once(&t);
    assert_int_equal(t.others, 1);
    assert_int_equal(t.last_sig, SIGUSR2);
    assert_int_equal(t.reloads, 1);
    assert_null(t.d.admin);      /* admin.listen: off */
    daemon_fini(&t.d);
    config_free(cfg);
}

/* Without a stop hook, a stop signal ends the loop at once. */
static void test_stop_without_hook(void **state)
{
    struct sl_config *cfg = config("admin: {listen: off}\n");
    static const struct daemon_ops bare = { 0 };
    struct daemon d;
    const struct daemon_spec spec = { .role = "test", .ops = &bare };
    char err[256];
    assert_int_equal(daemon_init(&d, &spec, cfg, err, sizeof err), 0);
    assert_int_equal(daemon_catch_signals(&d, err, sizeof err), 0);
    raise(SIGHUP);               /* no reload hook: ignored */
    raise(SIGINT);
    assert_int_equal(daemon_run(&d), 0);
    daemon_fini(&d);
    config_free(cfg);
}

static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sin;
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    close(fd);
    return ntohs(sin.sin_port);
}

static bool accepts(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    bool ok = connect(fd, (struct sockaddr *)&sin, sizeof sin) == 0;
    close(fd);
    return ok;
}

static struct sl_config *admin_on(uint16_t port)
{
    char yaml[64];
    snprintf(yaml, sizeof yaml, "admin: {listen: 127.0.0.1:%u}\n", port);
    return config(yaml);
}

/* The API follows admin.listen across reloads, and stays where it was
 * when the new address cannot be had. */
static void test_admin_follows_the_file(void **state)
{
    uint16_t p1 = free_port(), p2 = free_port();
    struct sl_config *c1 = admin_on(p1), *c2 = admin_on(p2), *off = config("admin: {listen: off}\n");
    struct daemon d;
    const struct daemon_spec spec = { .role = "test", .ops = &ops };
    char err[256];
    assert_int_equal(daemon_init(&d, &spec, c1, err, sizeof err), 0);
    assert_int_equal(daemon_admin_start(&d, c1, err, sizeof err), 0);
    assert_non_null(d.admin);
    assert_true(accepts(p1));

    daemon_admin_follow(&d, c1);             /* unchanged: nothing happens */
    assert_true(accepts(p1));
    daemon_admin_follow(&d, c2);             /* moved */
    assert_true(accepts(p2));
    /* a taken address: the API stays on p2 */
    int blocker = socket(AF_INET, SOCK_STREAM, 0);
    uint16_t p3 = free_port();
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(p3),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    assert_int_equal(bind(blocker, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(listen(blocker, 1), 0);
    struct sl_config *c3 = admin_on(p3);
    struct admin_server *before = d.admin;
    daemon_admin_follow(&d, c3);
    assert_ptr_equal(d.admin, before);
    assert_int_equal(admin_port(d.admin), p2);
    close(blocker);
    daemon_admin_follow(&d, off);            /* off */
    assert_null(d.admin);
    daemon_admin_follow(&d, c1);             /* on again */
    assert_non_null(d.admin);
    assert_int_equal(admin_port(d.admin), p1);
    daemon_fini(&d);
    config_free(c1);
    config_free(c2);
    config_free(c3);
    config_free(off);
}

static int connect_to(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    return fd;
}

static void break_on_input(struct ev_loop *loop, struct ev_io *io, uint32_t revents) { ev_break(loop); }

/* Run the daemon's loop until fd has something to read (5 s at most),
 * then return the first line read. */
static void first_line(struct daemon *d, int fd, char *line, size_t size)
{
    struct ev_io io;
    struct ev_timer guard;
    ev_io_init(&io, fd, break_on_input, NULL);
    ev_io_set(d->loop, &io, EPOLLIN);
    ev_timer_init(&guard, give_up, NULL);
    ev_now_update(d->loop);
    ev_timer_start(d->loop, &guard, 5000);
    assert_int_equal(daemon_run(d), 0);
    ev_timer_stop(d->loop, &guard);
    ev_io_stop(d->loop, &io);
    ssize_t n = recv(fd, line, size - 1, MSG_DONTWAIT);
    assert_true(n > 0);
    line[n] = '\0';
    char *eol = strstr(line, "\r\n");
    if (eol)
        *eol = '\0';
}

/* The tier's admin options reach the server, at start and on reload. */
static void test_admin_options_from_the_tier(void **state)
{
    uint16_t port = free_port();
    struct sl_config *cfg = admin_on(port);
    struct daemon d;
    const struct daemon_spec spec = { .role = "test", .ops = &ops };
    char err[256], line[256];
    assert_int_equal(daemon_init(&d, &spec, cfg, err, sizeof err), 0);
    d.admin_opts.max_conns = 1;
    assert_int_equal(daemon_admin_start(&d, cfg, err, sizeof err), 0);
    static const char get[] = "GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n";
    int first = connect_to(port);
    assert_int_equal(send(first, get, sizeof get - 1, 0), (ssize_t)(sizeof get - 1));
    first_line(&d, first, line, sizeof line);
    assert_string_equal(line, "HTTP/1.1 200 OK");
    int second = connect_to(port);
    first_line(&d, second, line, sizeof line);
    assert_string_equal(line, "HTTP/1.1 503 Service Unavailable");
    close(second);
    /* a reload that keeps admin.listen applies the tier's options again */
    d.admin_opts.max_conns = 2;
    daemon_admin_follow(&d, cfg);
    int third = connect_to(port);
    assert_int_equal(send(third, get, sizeof get - 1, 0), (ssize_t)(sizeof get - 1));
    first_line(&d, third, line, sizeof line);
    assert_string_equal(line, "HTTP/1.1 200 OK");
    close(first);
    close(third);
    daemon_fini(&d);
    config_free(cfg);
}

static void test_pid_file(void **state)
{
    struct sl_config *cfg = config("admin: {listen: off}\n");
    char dir[] = "/tmp/sluice_test_daemon_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64], bad[80];
    snprintf(path, sizeof path, "%s/pid", dir);
    snprintf(bad, sizeof bad, "%s/missing/pid", dir);
    struct daemon d;
    const struct daemon_spec spec = { .role = "test", .ops = &ops };
    char err[256];
    assert_int_equal(daemon_init(&d, &spec, cfg, err, sizeof err), 0);
    assert_int_equal(daemon_write_pid_file(&d, bad), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(daemon_write_pid_file(&d, path), 0);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    int pid = 0;
    assert_int_equal(fscanf(f, "%d", &pid), 1);
    fclose(f);
    assert_int_equal(pid, getpid());
    daemon_fini(&d);
    struct stat st;
    assert_int_equal(stat(path, &st), -1);   /* removed at the end */
    rmdir(dir);
    config_free(cfg);
}

/* ---- the command line ---- */

static FILE *usage_to;   /* where the last usage went */
static int usage_calls;

static void record_usage(FILE *out)
{
    usage_to = out;
    usage_calls++;
}

static int parse_args(const char **path, const char **pid, int argc, ...)
{
    char *argv[8];
    va_list ap;
    va_start(ap, argc);
    for (int i = 0; i < argc; i++)
        argv[i] = va_arg(ap, char *);
    va_end(ap);
    argv[argc] = NULL;
    usage_to = NULL;
    usage_calls = 0;
    return daemon_parse_args("sluice test", argc, argv, record_usage, path, pid);
}

static void test_parse_args(void **state)
{
    (void)state;
    const char *path, *pid;
    assert_int_equal(parse_args(&path, &pid, 3, "test", "-c", "a.yaml"), -1);
    assert_string_equal(path, "a.yaml");
    assert_null(pid);
    assert_int_equal(usage_calls, 0);
    assert_int_equal(parse_args(&path, &pid, 4, "test", "--pid-file", "/run/x.pid", "--config=b.yaml"), -1);
    assert_string_equal(path, "b.yaml");
    assert_string_equal(pid, "/run/x.pid");
    assert_int_equal(parse_args(&path, &pid, 2, "test", "--help"), 0);
    assert_ptr_equal(usage_to, stdout);
    /* mistakes: usage on stderr, status 2 */
    assert_int_equal(parse_args(&path, &pid, 1, "test"), 2);                       /* no -c */
    assert_ptr_equal(usage_to, stderr);
    assert_int_equal(parse_args(&path, &pid, 4, "test", "-c", "a.yaml", "extra"), 2);
    assert_ptr_equal(usage_to, stderr);
    assert_int_equal(parse_args(&path, &pid, 2, "test", "--bogus"), 2);
    assert_int_equal(usage_calls, 1);
}

/* A file with mistakes: NULL, and each said on stderr as FILE:LINE: ... */
static void test_load_config_or_say(void **state)
{
    (void)state;
    char path[] = "/tmp/sluice-test-daemon-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char yaml[] = "log:\n  levle: info\n";
    assert_int_equal(write(fd, yaml, sizeof yaml - 1), sizeof yaml - 1);
    close(fd);
    char errpath[] = "/tmp/sluice-test-daemon-err-XXXXXX";
    int efd = mkstemp(errpath);
    assert_true(efd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(efd, STDERR_FILENO);
    struct sl_config *cfg = daemon_load_config_or_say(path, 0);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    assert_null(cfg);
    char said[1024] = "";
    assert_true(pread(efd, said, sizeof said - 1, 0) > 0);
    close(efd);
    char want[256];
    snprintf(want, sizeof want, "%s:2: log.levle: unknown key", path);
    if (!strstr(said, want))
        fail_msg("stderr was: %s", said);
    unlink(errpath);
    unlink(path);
}

/* ---- companions: other modules' work inside this daemon ---- */

struct comp_log {
    char seen[256];              /* "attach:b reload stopping stop fini" */
};

static struct comp_log comp_events;

static void note_event(const char *what)
{
    size_t used = strlen(comp_events.seen);
    snprintf(comp_events.seen + used, sizeof comp_events.seen - used, "%s%s", used ? " " : "", what);
}

static void comp_reloaded(void *arg, const struct sl_config *cfg)
{
    note_event(cfg ? "reloaded" : "reloaded(null)");
}
static void comp_stopping(void *arg) { note_event("stopping"); }
static void comp_fini(void *arg) { note_event(arg); }

static const struct daemon_companion_ops comp_ops = {
    .name = "b", .reloaded = comp_reloaded, .stopping = comp_stopping, .fini = comp_fini,
};

static int attach_b(struct daemon *d, const struct sl_config *cfg, char *err, size_t errlen)
{
    note_event("attach:b");
    return daemon_add_companion(d, &comp_ops, "fini:b");
}

static int attach_own(struct daemon *d, const struct sl_config *cfg, char *err, size_t errlen)
{
    note_event("attach:own");    /* must never run: a daemon's own module is not its companion */
    return 0;
}

static int attach_idle(struct daemon *d, const struct sl_config *cfg, char *err, size_t errlen)
{
    return 0;                    /* nothing to do for this configuration */
}

static int attach_fails(struct daemon *d, const struct sl_config *cfg, char *err, size_t errlen)
{
    snprintf(err, errlen, "no tun device");
    return -1;
}

static const struct sl_module mod_own = { .name = "own", .attach = attach_own };
static const struct sl_module mod_b = { .name = "b", .attach = attach_b };
static const struct sl_module mod_idle = { .name = "idle", .attach = attach_idle };
static const struct sl_module mod_none = { .name = "none" };
static const struct sl_module mod_fails = { .name = "f", .attach = attach_fails };

static void comp_stop(void *arg, int sig)
{
    struct tier *t = arg;
    note_event("stop");
    t->stops++;
    daemon_stopped(&t->d);
}
static void comp_tier_reload(void *arg)
{
    struct tier *t = arg;
    note_event("reload");
    daemon_reloaded(&t->d, (const struct sl_config *)t->d.spec.role); /* any non-NULL cfg */
    daemon_stopped(&t->d);
}
static const struct daemon_ops comp_tier_ops = { .reload = comp_tier_reload, .stop = comp_stop };

/* attach runs for every other module; the companion hears the reload
 * the tier applied, then "stopping" BEFORE the tier's stop hook, and is
 * finished by daemon_fini. */
static void test_companions(void **state)
{
    static const struct sl_module *const list[] = { &mod_own, &mod_none, &mod_idle, &mod_b, NULL };
    module_list_set(list);
    memset(&comp_events, 0, sizeof comp_events);
    struct sl_config *cfg = config("admin: {listen: off}\n");
    struct tier t = { 0 };
    const struct daemon_spec spec = { .role = "test", .module = &mod_own, .ops = &comp_tier_ops, .arg = &t };
    char err[256];
    assert_int_equal(daemon_init(&t.d, &spec, cfg, err, sizeof err), 0);
    assert_int_equal(t.d.n_companions, 1);
    assert_int_equal(daemon_catch_signals(&t.d, err, sizeof err), 0);
    raise(SIGHUP);
    run_once(&t);
    raise(SIGTERM);
    run_once(&t);
    raise(SIGINT);               /* a second stop: the companion heard it once */
    run_once(&t);
    assert_int_equal(t.stops, 2);
    daemon_fini(&t.d);
    assert_string_equal(comp_events.seen, "attach:b reload reloaded stopping stop stop fini:b");
    assert_int_equal(t.d.n_companions, 0);
    daemon_fini(&t.d);           /* twice: nothing more */
    assert_string_equal(comp_events.seen, "attach:b reload reloaded stopping stop stop fini:b");
    module_list_set(NULL);
    config_free(cfg);
}

/* A companion that cannot start stops the daemon's start, saying who. */
static void test_companion_attach_fails(void **state)
{
    static const struct sl_module *const list[] = { &mod_b, &mod_fails, NULL };
    module_list_set(list);
    memset(&comp_events, 0, sizeof comp_events);
    struct sl_config *cfg = config("admin: {listen: off}\n");
    struct tier t = { 0 };
    const struct daemon_spec spec = { .role = "test", .ops = &comp_tier_ops, .arg = &t };
    char err[256];
    assert_int_equal(daemon_init(&t.d, &spec, cfg, err, sizeof err), -1);
    assert_string_equal(err, "f: no tun device");
    daemon_fini(&t.d);           /* the one attached before is finished */
    assert_string_equal(comp_events.seen, "attach:b fini:b");
    module_list_set(NULL);
    config_free(cfg);
}

/* Too many companions: daemon_add_companion says no. */
static void test_companion_slots(void **state)
{
    struct daemon d;
    memset(&d, 0, sizeof d);
    for (int i = 0; i < DAEMON_MAX_COMPANIONS; i++)
        assert_int_equal(daemon_add_companion(&d, &comp_ops, NULL), 0);
    assert_int_equal(daemon_add_companion(&d, &comp_ops, NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_args),
        cmocka_unit_test(test_load_config_or_say),
        cmocka_unit_test(test_signals_reach_the_tier),
        cmocka_unit_test(test_stop_without_hook),
        cmocka_unit_test(test_admin_follows_the_file),
        cmocka_unit_test(test_admin_options_from_the_tier),
        cmocka_unit_test(test_pid_file),
        cmocka_unit_test(test_companions),
        cmocka_unit_test(test_companion_attach_fails),
        cmocka_unit_test(test_companion_slots),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
