/* Unit tests for issue 13's process hygiene in the core: the /proc/net
 * address matching of the listen guard, user/group resolution and the
 * `user`/`group` keys, and SIGUSR1 reopening log.file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "core/daemon.h"
#include "core/listen_guard.h"
#include "core/log.h"
#include "core/privs.h"
#include "core/process_metrics.h"

static struct sl_addr addr(const char *text)
{
    struct sl_addr a;
    const char *why;
    assert_int_equal(addr_parse(text, &a, &why), 0);
    return a;
}

static void test_guard_clashes_v4(void **state)
{
    (void)state;
    struct sl_addr lo = addr("127.0.0.1:8080"), any = addr("0.0.0.0:8080"), other = addr("127.0.0.2:8080");
    /* 127.0.0.1 as the kernel prints it on a little-endian host: the u32 in host order. */
    char lo_text[32];
    uint32_t raw;
    memcpy(&raw, &((const struct sockaddr_in *)&lo.ss)->sin_addr, 4);
    snprintf(lo_text, sizeof lo_text, "%08X:1F90", raw);
    assert_true(listen_guard_clashes(lo_text, &lo));
    assert_true(listen_guard_clashes(lo_text, &any));        /* we want the wildcard */
    assert_false(listen_guard_clashes(lo_text, &other));     /* another address */
    assert_true(listen_guard_clashes("00000000:1F90", &other)); /* they hold the wildcard */
    assert_false(listen_guard_clashes("00000000:1F91", &lo));   /* another port */
    assert_false(listen_guard_clashes("0000:1F90", &lo));       /* malformed */
    assert_false(listen_guard_clashes("garbage", &lo));
}

static void test_guard_clashes_v6(void **state)
{
    (void)state;
    struct sl_addr one = addr("[::1]:443"), any = addr("[::]:443");
    assert_true(listen_guard_clashes("00000000000000000000000001000000:01BB", &one));
    assert_true(listen_guard_clashes("00000000000000000000000000000000:01BB", &one));
    assert_true(listen_guard_clashes("00000000000000000000000001000000:01BB", &any));
    assert_false(listen_guard_clashes("00000000000000000000000002000000:01BB", &one));
    assert_false(listen_guard_clashes("0100007F:01BB", &one)); /* an IPv4 line */
}

static void test_resolve_users_and_groups(void **state)
{
    (void)state;
    struct passwd *nobody = getpwnam("nobody");
    if (!nobody)
        skip();
    struct sl_run_as ra = { 0 };
    char why[160];
    assert_int_equal(privs_resolve("nobody", NULL, &ra, why, sizeof why), 0);
    assert_true(ra.set);
    assert_int_equal(ra.uid, nobody->pw_uid);
    assert_int_equal(ra.gid, nobody->pw_gid);
    memset(&ra, 0, sizeof ra);
    assert_int_equal(privs_resolve("0", "4242", &ra, why, sizeof why), 0);
    assert_int_equal(ra.uid, 0);
    assert_int_equal(ra.gid, 4242);
    assert_int_equal(privs_resolve("no-such-user-x", NULL, &ra, why, sizeof why), PRIVS_BAD_USER);
    assert_string_equal(why, "no such user \"no-such-user-x\"");
    assert_int_equal(privs_resolve("nobody", "no-such-group-x", &ra, why, sizeof why), PRIVS_BAD_GROUP);
    assert_string_equal(why, "no such group \"no-such-group-x\"");
    /* A uid with no passwd entry has no primary group to take. */
    assert_int_equal(privs_resolve("4000000000", NULL, &ra, why, sizeof why), PRIVS_BAD_USER);
    assert_int_equal(privs_resolve("-1", NULL, &ra, why, sizeof why), PRIVS_BAD_USER);
}

static void test_config_user_keys(void **state)
{
    (void)state;
    struct config_errors errs = { 0 };
    struct sl_config *cfg = config_load_string("t.yaml", "user: root\n", 11, &errs);
    assert_non_null(cfg);
    assert_true(cfg->run_as.set);
    assert_int_equal(cfg->run_as.uid, 0);
    assert_int_equal(cfg->user_line, 1);
    config_free(cfg);
    const char *bad = "log: { level: info }\ngroup: root\n";
    cfg = config_load_string("t.yaml", bad, strlen(bad), &errs);
    assert_null(cfg);
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.lines[0], "t.yaml:2: group: needs `user` (the group the workers run as, with it)");
    config_errors_free(&errs);
    const char *nouser = "user: nosuchuser-here\n";
    cfg = config_load_string("t.yaml", nouser, strlen(nouser), &errs);
    assert_null(cfg);
    assert_string_equal(errs.lines[0], "t.yaml:1: user: no such user \"nosuchuser-here\"");
    config_errors_free(&errs);
}

static void stop_loop(struct ev_loop *loop, struct ev_timer *t)
{
    (void)loop;
    daemon_stopped(t->data);
}

static void test_usr1_reopens_log_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/sluice-unit-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], moved[256], yaml[512];
    snprintf(path, sizeof path, "%s/d.log", dir);
    snprintf(moved, sizeof moved, "%s/d.log.1", dir);
    snprintf(yaml, sizeof yaml, "admin: { listen: off }\nlog: { file: %s }\n", path);
    struct config_errors errs = { 0 };
    struct sl_config *cfg = config_load_string("t.yaml", yaml, strlen(yaml), &errs);
    assert_non_null(cfg);
    struct daemon d;
    const struct daemon_spec spec = { .role = "unit" };
    char err[256];
    assert_int_equal(daemon_init(&d, &spec, cfg, err, sizeof err), 0);
    assert_int_equal(daemon_catch_signals(&d, err, sizeof err), 0);
    log_info("before");
    assert_int_equal(rename(path, moved), 0);
    raise(SIGUSR1);
    struct ev_timer stop;
    ev_timer_init(&stop, stop_loop, &d);
    ev_timer_start(d.loop, &stop, 200);   /* the signal is read on the loop first */
    assert_int_equal(daemon_run(&d), 0);
    log_info("after");
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    FILE *f = fopen(path, "r");
    char line[512] = "";
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    assert_non_null(strstr(line, "after"));
    daemon_fini(&d);
    log_setup(LOG_LEVEL_INFO, NULL, "unit");
    config_free(cfg);
    unlink(path);
    unlink(moved);
    rmdir(dir);
}

static void test_process_sample_of_self(void **state)
{
    (void)state;
    struct process_sample s;
    assert_int_equal(process_sample_read(getpid(), &s), 0);
    assert_true(s.rss_bytes > 0 && s.vsize_bytes >= s.rss_bytes);
    assert_true(s.open_fds >= 3 && s.max_fds > 0);
    assert_true(s.start_unix > 1e9);
    assert_int_equal(process_sample_read(0x7ffffff0, &s), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_guard_clashes_v4),
        cmocka_unit_test(test_guard_clashes_v6),
        cmocka_unit_test(test_resolve_users_and_groups),
        cmocka_unit_test(test_config_user_keys),
        cmocka_unit_test(test_usr1_reopens_log_file),
        cmocka_unit_test(test_process_sample_of_self),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
