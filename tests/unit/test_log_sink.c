/* Unit tests for the syslog and journald outputs (src/core/log_sink.c):
 * the option strings, the records as they go on the wire (RFC 3164,
 * RFC 5424, the journal's native protocol), and sending: to a socket of
 * the test's own, and to one that does not read, where records are
 * dropped and counted instead of blocking. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/log.h"
#include "core/log_sink.h"
#include "lib/strbuf.h"
#include "proxy/access_log.h"
#include "proxy/access_log_sink.h"

static struct log_sink_spec parse_ok(const char *s, enum log_sink_use use)
{
    struct log_sink_spec sp;
    char err[256] = "";
    if (log_sink_parse(s, use, &sp, err, sizeof err) < 0)
        print_message("%s: %s\n", s, err);
    assert_int_equal(log_sink_parse(s, use, &sp, err, sizeof err), 0);
    return sp;
}

static void expect_parse_error(const char *s, enum log_sink_use use, const char *want)
{
    struct log_sink_spec sp;
    char err[256] = "";
    assert_int_equal(log_sink_parse(s, use, &sp, err, sizeof err), -1);
    assert_string_equal(err, want);
}

static void test_is_spec(void **state)
{
    (void)state;
    assert_true(log_sink_is_spec("syslog"));
    assert_true(log_sink_is_spec("syslog:tag=x"));
    assert_true(log_sink_is_spec("journald"));
    assert_true(log_sink_is_spec("journald:"));
    assert_false(log_sink_is_spec("syslogs"));
    assert_false(log_sink_is_spec("./syslog"));
    assert_false(log_sink_is_spec("/var/log/syslog"));
    assert_false(log_sink_is_spec("stderr"));
}

static void test_defaults(void **state)
{
    (void)state;
    struct log_sink_spec sp = parse_ok("syslog", LOG_SINK_DAEMON);
    assert_int_equal(sp.kind, LOG_SINK_SYSLOG);
    assert_int_equal(sp.format, LOG_SINK_RFC3164);
    assert_int_equal(sp.facility, 3);
    assert_int_equal(sp.severity, -1);
    assert_string_equal(sp.tag, "sluice");
    assert_false(sp.udp);
    assert_string_equal(((struct sockaddr_un *)&sp.addr)->sun_path, "/dev/log");
    sp = parse_ok("syslog", LOG_SINK_ACCESS);
    assert_int_equal(sp.facility, 23);
    assert_int_equal(sp.severity, LOG_SINK_INFO);
    assert_string_equal(sp.tag, "sluice-access");
    sp = parse_ok("journald", LOG_SINK_DAEMON);
    assert_int_equal(sp.kind, LOG_SINK_JOURNALD);
    assert_string_equal(((struct sockaddr_un *)&sp.addr)->sun_path, "/run/systemd/journal/socket");
}

static void test_options(void **state)
{
    (void)state;
    struct log_sink_spec sp =
        parse_ok("syslog:server=10.1.2.3,facility=local3,tag=edge-1,severity=notice,format=rfc5424", LOG_SINK_ACCESS);
    assert_true(sp.udp);
    assert_string_equal(sp.where, "udp 10.1.2.3:514");
    struct sockaddr_in *in = (struct sockaddr_in *)&sp.addr;
    assert_int_equal(ntohs(in->sin_port), 514);
    assert_int_equal(sp.facility, 19);
    assert_string_equal(sp.tag, "edge-1");
    assert_int_equal(sp.severity, LOG_SINK_NOTICE);
    assert_int_equal(sp.format, LOG_SINK_RFC5424);
    sp = parse_ok("syslog:server=[::1]:5514", LOG_SINK_DAEMON);
    assert_string_equal(sp.where, "udp [::1]:5514");
    sp = parse_ok("syslog:server=[::1]", LOG_SINK_DAEMON);
    assert_string_equal(sp.where, "udp [::1]:514");
    sp = parse_ok("syslog:server=127.0.0.1:1514", LOG_SINK_DAEMON);
    assert_string_equal(sp.where, "udp 127.0.0.1:1514");
    sp = parse_ok("syslog:server=unix:/run/x.sock", LOG_SINK_DAEMON);
    assert_false(sp.udp);
    assert_string_equal(sp.where, "/run/x.sock");
    sp = parse_ok("journald:tag=lb,facility=local0,severity=warn", LOG_SINK_ACCESS);
    assert_string_equal(sp.tag, "lb");
    assert_int_equal(sp.facility, 16);
    assert_int_equal(sp.severity, LOG_SINK_WARNING);
}

static void test_option_errors(void **state)
{
    (void)state;
    expect_parse_error("syslog:facility=local9", LOG_SINK_DAEMON,
                       "syslog: unknown facility \"local9\" (kern, user, mail, daemon, auth, syslog, lpr, news, uucp, "
                       "cron, authpriv, ftp, local0 .. local7)");
    expect_parse_error("syslog:severity=info", LOG_SINK_DAEMON,
                       "syslog: severity is for access logs; the daemon log's follows each message's level");
    expect_parse_error("syslog:severity=loud", LOG_SINK_ACCESS,
                       "syslog: unknown severity \"loud\" (emerg, alert, crit, err, warning, notice, info, debug)");
    expect_parse_error("syslog:tag=a b", LOG_SINK_DAEMON, "syslog: tag must be 1 to 32 of A-Z a-z 0-9 _ . -, got \"a b\"");
    expect_parse_error("syslog:tag=", LOG_SINK_DAEMON, "syslog: expected OPTION=VALUE, got \"tag=\"");
    expect_parse_error("syslog:server=example.com:514", LOG_SINK_DAEMON,
                       "syslog: server: not a numeric IPv4 or IPv6 address (an IP address with an optional port, or unix:PATH)");
    expect_parse_error("syslog:server=::1", LOG_SINK_DAEMON, "syslog: server: an IPv6 address is written [ADDR]:PORT");
    expect_parse_error("syslog:server=unix:rel.sock", LOG_SINK_DAEMON,
                       "syslog: server=unix:PATH needs an absolute path shorter than 108 bytes");
    expect_parse_error("syslog:format=json", LOG_SINK_DAEMON, "syslog: unknown format \"json\" (rfc3164, rfc5424)");
    expect_parse_error("journald:server=127.0.0.1", LOG_SINK_DAEMON,
                       "journald: unknown option \"server\" (facility, tag, severity)");
    expect_parse_error("syslog:,", LOG_SINK_DAEMON, "syslog: expected OPTION=VALUE after ':'");
    expect_parse_error("syslog:bogus", LOG_SINK_DAEMON, "syslog: expected OPTION=VALUE, got \"bogus\"");
}

static const struct timespec when = { 1796598790, 226319000 }; /* 2026-12-06T23:13:10.226319Z */

static void test_render_syslog(void **state)
{
    (void)state;
    setenv("TZ", "UTC", 1);
    tzset();
    char out[LOG_SINK_RECORD_MAX];
    struct log_sink_spec sp = parse_ok("syslog", LOG_SINK_DAEMON);
    size_t n = log_sink_render(&sp, NULL, 42, &when, LOG_SINK_WARNING, "[master] hello\n", 15, NULL, 0, out, sizeof out);
    /* daemon (3) * 8 + warning (4) = 28; no host name to a local daemon; the newline goes */
    assert_memory_equal(out, "<28>Dec  6 23:13:10 sluice[42]: [master] hello", n);
    assert_int_equal(n, strlen("<28>Dec  6 23:13:10 sluice[42]: [master] hello"));
    n = log_sink_render(&sp, "lb1", 42, &when, LOG_SINK_ERR, "x", 1, NULL, 0, out, sizeof out);
    assert_memory_equal(out, "<27>Dec  6 23:13:10 lb1 sluice[42]: x", n);
    sp = parse_ok("syslog:format=rfc5424,facility=local7,tag=web", LOG_SINK_ACCESS);
    n = log_sink_render(&sp, "lb1", 7, &when, sp.severity, "GET / 200", 9, NULL, 0, out, sizeof out);
    const char *want = "<190>1 2026-12-06T23:13:10.226319Z lb1 web 7 - - GET / 200";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
}

static void test_render_journal(void **state)
{
    (void)state;
    char out[LOG_SINK_RECORD_MAX];
    struct log_sink_spec sp = parse_ok("journald:tag=lb", LOG_SINK_ACCESS);
    struct log_field f[] = { { "SLUICE_STATUS", "503" }, { "SLUICE_UPSTREAM", NULL }, { "SLUICE_REASON", "a\nb" } };
    size_t n = log_sink_render(&sp, NULL, 1, &when, LOG_SINK_INFO, "line\n", 5, f, 3, out, sizeof out);
    static const char want[] = "MESSAGE=line\nPRIORITY=6\nSYSLOG_FACILITY=23\nSYSLOG_IDENTIFIER=lb\nSLUICE_STATUS=503\n"
                               "SLUICE_REASON\n\x03\0\0\0\0\0\0\0a\nb\n";
    assert_int_equal(n, sizeof want - 1);
    assert_memory_equal(out, want, n);
    /* Room is never overrun: a record is cut at cap. */
    n = log_sink_render(&sp, NULL, 1, &when, LOG_SINK_INFO, "line", 4, f, 3, out, 10);
    assert_int_equal(n, 10);
}

static void test_levels(void **state)
{
    (void)state;
    assert_int_equal(log_sink_severity_of_level(LOG_LEVEL_DEBUG), 7);
    assert_int_equal(log_sink_severity_of_level(LOG_LEVEL_INFO), 6);
    assert_int_equal(log_sink_severity_of_level(LOG_LEVEL_WARN), 4);
    assert_int_equal(log_sink_severity_of_level(LOG_LEVEL_ERROR), 3);
}

/* A unix datagram socket of the test's own, and a spec pointing at it. */
static int bind_receiver(char *path, size_t cap, struct log_sink_spec *sp, const char *kind)
{
    snprintf(path, cap, "/tmp/sluice-log-sink-%d.sock", (int)getpid());
    unlink(path);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un un = { .sun_family = AF_UNIX };
    snprintf(un.sun_path, sizeof un.sun_path, "%s", path);
    assert_int_equal(bind(fd, (struct sockaddr *)&un, sizeof un), 0);
    char spec[256];
    snprintf(spec, sizeof spec, "%s:server=unix:%s", kind, path);
    *sp = parse_ok(spec, LOG_SINK_ACCESS);
    return fd;
}

static void test_send_and_drop(void **state)
{
    (void)state;
    char path[108];
    struct log_sink_spec sp;
    int rx = bind_receiver(path, sizeof path, &sp, "syslog");
    struct log_sink *s = log_sink_open(&sp);
    assert_non_null(s);
    uint64_t before = log_sink_dropped(LOG_SINK_ACCESS, LOG_SINK_SYSLOG);
    assert_int_equal(log_sink_send(s, LOG_SINK_ERR, "hello", 5, NULL, 0), 0);
    char buf[512];
    ssize_t n = recv(rx, buf, sizeof buf - 1, 0);
    assert_true(n > 0);
    buf[n] = '\0';
    /* local7 (23) * 8 + the output's severity (info, 6) = 190 */
    assert_true(strncmp(buf, "<190>", 5) == 0);
    assert_non_null(strstr(buf, " sluice-access["));
    assert_non_null(strstr(buf, "]: hello"));
    /* Nobody reads: the queue fills, and then records are dropped (and
     * counted) without blocking. A blocking send would hang here. */
    int sent = 0, dropped = 0;
    for (int i = 0; i < 5000; i++) {
        if (log_sink_send(s, LOG_SINK_INFO, "filler record", 13, NULL, 0) == 0)
            sent++;
        else
            dropped++;
    }
    assert_true(sent > 0);
    assert_true(dropped > 0);
    assert_int_equal(log_sink_dropped(LOG_SINK_ACCESS, LOG_SINK_SYSLOG) - before, (uint64_t)dropped);
    int queued = 0;
    while (recv(rx, buf, sizeof buf, MSG_DONTWAIT) > 0)
        queued++;
    assert_int_equal(queued, sent);
    /* The receiver goes away and comes back (a restarted syslog daemon):
     * records lost meanwhile are counted, then they flow again. */
    close(rx);
    unlink(path);
    assert_int_equal(log_sink_send(s, LOG_SINK_INFO, "lost", 4, NULL, 0), -1);
    log_sink_close(s);
    unlink(path);
}

static void test_metrics(void **state)
{
    (void)state;
    struct strbuf out = { 0 };
    log_sink_metrics(&out);
    size_t len;
    char *text = strbuf_finish(&out, &len);
    assert_non_null(strstr(text, "# TYPE sluice_log_dropped_total counter\n"));
    assert_non_null(strstr(text, "sluice_log_dropped_total{log=\"daemon\",output=\"journald\"} "));
    assert_non_null(strstr(text, "sluice_log_dropped_total{log=\"access\",output=\"syslog\"} "));
    free(text);
}

static void test_access_fields(void **state)
{
    (void)state;
    struct access_entry e = { .client_ip = "10.0.0.1", .request_line = "GET /x HTTP/1.1", .listener = "web",
                              .status = 502, .bytes_sent = 74, .duration_us = 1500, .reason = "every backend tried failed" };
    struct log_field f[ACCESS_LOG_SINK_FIELDS];
    char nums[3][24];
    size_t n = access_log_sink_fields(&e, f, nums);
    assert_true(n <= ACCESS_LOG_SINK_FIELDS);
    char out[LOG_SINK_RECORD_MAX];
    struct log_sink_spec sp = parse_ok("journald", LOG_SINK_ACCESS);
    size_t len = log_sink_render(&sp, NULL, 1, &when, LOG_SINK_INFO, "l", 1, f, n, out, sizeof out);
    out[len] = '\0';
    assert_non_null(strstr(out, "\nSLUICE_STATUS=502\n"));
    assert_non_null(strstr(out, "\nSLUICE_CLIENT=10.0.0.1\n"));
    assert_non_null(strstr(out, "\nSLUICE_BYTES_SENT=74\n"));
    assert_non_null(strstr(out, "\nSLUICE_DURATION_US=1500\n"));
    assert_non_null(strstr(out, "\nSLUICE_REASON=every backend tried failed\n"));
    assert_null(strstr(out, "SLUICE_UPSTREAM")); /* no backend: left out */
    assert_null(strstr(out, "SLUICE_TLS_VERSION"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_is_spec),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_option_errors),
        cmocka_unit_test(test_render_syslog),
        cmocka_unit_test(test_render_journal),
        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_send_and_drop),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_access_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
