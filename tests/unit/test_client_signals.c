/* libsluice's threads leave the caller's signals to the caller: a program
 * that blocks SIGTERM in its own threads after sluice_open() and reads it
 * from a signalfd (as every Sluice daemon does) must get it there, not die
 * because the kernel handed it to a library thread that had it unblocked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sluice/sluice.h>

/* In a child: open a client (its watcher thread starts; the providers'
 * heartbeat thread is started by the same cl_thread_start()), then block
 * SIGTERM in this thread only, send it to the process and read it from a
 * signalfd. Exit 0 when it arrived there. */
static int child_main(void)
{
    struct sluice_config cfg;
    sluice_config_init(&cfg);
    cfg.registries = "127.0.0.1:1";   /* nothing listens: the watcher keeps trying */
    cfg.log = NULL;
    char err[256];
    sluice_client *c = sluice_open(&cfg, err, sizeof err);
    if (!c)
        return 2;
    sluice_service *s = sluice_subscribe(c, "web", err, sizeof err);
    if (!s)
        return 3;
    usleep(50 * 1000);                 /* the watcher is running */
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &term, NULL);
    int fd = signalfd(-1, &term, SFD_CLOEXEC);
    if (fd < 0)
        return 4;
    kill(getpid(), SIGTERM);
    struct signalfd_siginfo si;
    if (read(fd, &si, sizeof si) != (ssize_t)sizeof si || si.ssi_signo != SIGTERM)
        return 5;
    sluice_close(c);
    return 0;
}

static void test_library_threads_block_signals(void **state)
{
    (void)state;
    for (int round = 0; round < 20; round++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
            _exit(child_main());
        int st = 0;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        if (WIFSIGNALED(st))
            fail_msg("round %d: the process died of signal %d: a library thread took it", round, WTERMSIG(st));
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_library_threads_block_signals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
