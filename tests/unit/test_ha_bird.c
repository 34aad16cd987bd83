/* Unit tests for the BIRD side of the HA tier (src/ha): the configuration
 * writer (bird_conf.c) against expected text and, above all, against the
 * real BIRD's parser (`bird -p -c FILE`, both modes: a whole file, and the
 * fragment included from an operator's file); the control-socket reply
 * reader and parsers (birdc.c) on BIRD 2.0.12 output captured from its
 * socket (tests/fuzz/corpus/birdc); and bird_proc.c driving a real BIRD:
 * started on the written file with no descriptor of ours leaked into it,
 * found again by its socket and reconfigured, protocols listed, disabled
 * and enabled, a refused file and a missing binary reported with reasons. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/config.h"
#include "ha/bird_conf.h"
#include "ha/bird_proc.h"
#include "ha/birdc.h"
#include "ha/ha_conf.h"

#include "config_expect.h"

/* config_expect.h brings helpers this file does not need. */
static void (*const unused_expect_error)(const char *, const char *) __attribute__((unused)) = expect_error;

#define BIRD "/usr/sbin/bird"
#define CORPUS "tests/fuzz/corpus/birdc/"

static char *render(const char *yaml, struct sl_config **cfg_out)
{
    struct sl_config *cfg = load_ok(yaml);
    struct strbuf out = { 0 };
    struct in_addr rid = { .s_addr = htonl(0x0a000015) };   /* 10.0.0.21 */
    bird_conf_write(ha_conf(cfg), rid, "lb.yaml", &out);
    char *text = strbuf_finish(&out, NULL);
    assert_non_null(text);
    if (cfg_out)
        *cfg_out = cfg;
    else
        config_free(cfg);
    return text;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* `bird -p -c FILE`: 0 when BIRD's own parser takes the file. */
static int bird_parse(const char *path)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, BIRD " -p -c %s", path);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static const char managed_yaml[] =
    "ha:\n"
    "  priority: 2\n"
    "  asn: 65010\n"
    "  neighbors:\n"
    "    - { address: 10.0.0.1, asn: 65000, password: \"s3 cret\", hold_time: 9s }\n"
    "    - { address: \"2001:db8::1\", asn: 65001, source: \"2001:db8::21\", multihop: 2, port: 1179 }\n"
    "  announce: [192.0.2.10, \"2001:db8:10::1\"]\n"
    "  bfd: { interval: 200ms, multiplier: 4 }\n";

static void test_managed_text(void **state)
{
    char *text = render(managed_yaml, NULL);
    static const char *const want[] = {
        "router id 10.0.0.21;\n",
        "log syslog all;\n",
        "protocol device sluice_device {\n",
        "protocol direct sluice_vips {\n  ipv4;\n  ipv6;\n  interface \"sluice-ha\";\n}\n",
        "protocol direct sluice_standin {\n  ipv4;\n  ipv6;\n  interface \"sluice-ha-s\";\n}\n",
        "protocol bfd sluice_bfd {\n  interface \"*\" {\n    interval 200 ms;\n    multiplier 4;\n  };\n",
        "  if proto = \"sluice_vips\" then {\n"
        "    if net.type = NET_IP4 && net !~ [ 192.0.2.10/32 ] then reject;   # ha.announce\n"
        "    if net.type = NET_IP6 && net !~ [ 2001:db8:10::1/128 ] then reject;   # ha.announce\n"
        "    bgp_path.prepend(65010);\n    bgp_path.prepend(65010);\n"
        "    bgp_community.add((65010, 1002));\n    accept;\n  }\n",
        "    bgp_community.add((65010, 2002));\n",
        "protocol bgp sluice_bgp_10_0_0_1 {\n"
        "  description \"Sluice ha.neighbors: 10.0.0.1\";\n"
        "  local as 65010;\n"
        "  neighbor 10.0.0.1 port 179 as 65000;\n"
        "  password \"s3 cret\";\n"
        "  hold time 9;\n"
        "  connect delay time 1;\n"
        "  connect retry time 3;\n"
        "  error wait time 1, 10;\n"
        "  error forget time 60;\n"
        "  bfd on;\n"
        "  ipv4 {\n    import none;\n    export filter sluice_export;\n  };\n}\n",
        "protocol bgp sluice_bgp_2001_db8__1 {\n",
        "  local 2001:db8::21 as 65010;\n  neighbor 2001:db8::1 port 1179 as 65001;\n  multihop 2;\n",
        "  bfd on;\n  ipv6 {\n    import none;\n    export filter sluice_export;\n  };\n}\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        if (!strstr(text, want[i]))
            print_message("missing:\n%s\nin:\n%s\n", want[i], text);
        assert_non_null(strstr(text, want[i]));
    }
    /* Stand-ins: priority + 16 prepends, always worse than any own route. */
    const char *standin = strstr(text, "if proto = \"sluice_standin\"");
    assert_non_null(standin);
    size_t prepends = 0;
    for (const char *p = standin; (p = strstr(p, "bgp_path.prepend(65010)")) != NULL; p++)
        prepends++;
    assert_int_equal(prepends, 2 + BIRD_STANDIN_PREPENDS);
    assert_null(strstr(text, "include"));
    free(text);
}

static void test_bird_parses_managed(void **state)
{
    if (access(BIRD, X_OK) < 0)
        skip();
    char dir[] = "/tmp/test_ha_bird_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/bird.conf", dir);
    char *text = render(managed_yaml, NULL);
    write_text(path, text);
    free(text);
    assert_int_equal(bird_parse(path), 0);
    /* No BFD, priority 0, a log file, no announce list. */
    text = render("ha:\n  asn: 4200000000\n  neighbors: [{ address: 10.0.0.1, asn: 65000 }]\n  bfd: false\n"
                  "  interface: lb0\n  bird: { log_file: /tmp/sluice-bird-test.log }\n", NULL);
    assert_null(strstr(text, "bfd"));
    /* Priority 0: no prepend; a 4-byte ASN: a large community. */
    assert_non_null(strstr(text, "  if proto = \"sluice_vips\" then {\n"
                                 "    bgp_large_community.add((4200000000, 1000, 0));\n    accept;"));
    assert_non_null(strstr(text, "interface \"lb0-s\";"));
    write_text(path, text);
    free(text);
    assert_int_equal(bird_parse(path), 0);
    /* The check can fail: a broken file is refused. */
    write_text(path, "protocol bgp {\n");
    assert_int_not_equal(bird_parse(path), 0);
    unlink(path);
    rmdir(dir);
}

static void test_bird_parses_external(void **state)
{
    if (access(BIRD, X_OK) < 0)
        skip();
    char dir[] = "/tmp/test_ha_bird_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char frag[256], main_conf[256], yaml[512], text_main[512];
    snprintf(frag, sizeof frag, "%s/sluice.conf", dir);
    snprintf(main_conf, sizeof main_conf, "%s/bird.conf", dir);
    snprintf(yaml, sizeof yaml,
             "ha:\n  asn: 65010\n  priority: 1\n  neighbors: [{ address: 10.0.0.1, asn: 65000 }]\n"
             "  bird: { mode: external, control_socket: /run/bird/bird.ctl, config_file: %s }\n", frag);
    char *text = render(yaml, NULL);
    /* The operator's file keeps router id, log and device to itself. */
    assert_null(strstr(text, "router id"));
    assert_null(strstr(text, "log "));
    assert_null(strstr(text, "protocol device"));
    char inc[300];
    snprintf(inc, sizeof inc, "include \"%s\";", frag);
    assert_non_null(strstr(text, inc));
    write_text(frag, text);
    free(text);
    /* An operator's bird.conf with its own device and BFD protocols. */
    snprintf(text_main, sizeof text_main,
             "router id 192.0.2.1;\nprotocol device {}\nprotocol bfd {}\n"
             "protocol static { ipv4; route 198.51.100.0/24 blackhole; }\ninclude \"%s\";\n", frag);
    write_text(main_conf, text_main);
    assert_int_equal(bird_parse(main_conf), 0);
    unlink(frag);
    unlink(main_conf);
    rmdir(dir);
}

/* ha.preempt false: a filter per neighbor with the priorities the
 * companion gives some VIPs, the zone community, an import table and
 * `allow local as`; BIRD's parser takes it. */
static void test_preempt_text(void **state)
{
    struct sl_config *cfg = load_ok("ha:\n  asn: 65010\n  priority: 1\n  preempt: false\n"
                                    "  neighbors:\n    - { address: 10.0.0.1, asn: 65000 }\n"
                                    "    - { address: \"2001:db8::1\", asn: 65000 }\n");
    const struct cfg_ha *h = ha_conf(cfg);
    struct bird_export_priority ov[5];
    memset(ov, 0, sizeof ov);
    /* the last one: an IPv4 address listed for the IPv6 neighbor is skipped */
    const char *ips[] = { "10.9.0.1", "10.9.0.2", "10.9.0.3", "2001:db8:9::1", "10.9.0.7" };
    const size_t nb[] = { 0, 0, 0, 1, 1 };
    const uint32_t prio[] = { BIRD_STARTING_PRIORITY, 3, 3, 2, 2 };
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(ha_ip_parse(ips[i], &ov[i].ip), 0);
        ov[i].neighbor = nb[i];
        ov[i].priority = prio[i];
    }
    struct strbuf out = { 0 };
    struct in_addr rid = { .s_addr = htonl(0x0a000015) };
    bird_conf_write_export(h, rid, "lb.yaml", ov, 5, &out);
    char *text = strbuf_finish(&out, NULL);
    assert_non_null(text);
    assert_null(strstr(text, "filter sluice_export {"));
    /* Neighbor 10.0.0.1: the starting VIP (once), then the held ones, then
     * the node's own priority; the zone community always. */
    const char *f4 = strstr(text, "filter sluice_export_10_0_0_1 {");
    const char *f6 = strstr(text, "filter sluice_export_2001_db8__1 {");
    assert_non_null(f4);
    assert_non_null(f6);
    assert_non_null(strstr(f4, "    if net ~ [ 10.9.0.1/32 ] then {   # the session is new\n"));
    assert_null(strstr(text, "10.9.0.7"));
    assert_non_null(strstr(f4, "      bgp_community.add((65010, 1017));\n"
                               "    } else if net ~ [ 10.9.0.2/32, 10.9.0.3/32 ] then {   # held behind a worse zone\n"
                               "      bgp_path.prepend(65010);\n      bgp_path.prepend(65010);\n"
                               "      bgp_path.prepend(65010);\n      bgp_community.add((65010, 1003));\n"
                               "    } else {\n      bgp_path.prepend(65010);\n      bgp_community.add((65010, 1001));\n"
                               "    }\n    bgp_community.add((65010, 3001));\n    accept;\n"));
    assert_true(strstr(f4, "2001:db8:9::1") == NULL || strstr(f4, "2001:db8:9::1") > f6);   /* family of its own */
    assert_non_null(strstr(f6, "    if net ~ [ 2001:db8:9::1/128 ] then {   # held behind a worse zone\n"));
    assert_true(strstr(f6, "10.9.0.") == NULL);
    assert_non_null(strstr(text, "  allow local as;\n  ipv4 {\n    import table on;\n    import none;\n"
                                 "    export filter sluice_export_10_0_0_1;\n  };\n"));
    assert_non_null(strstr(text, "    export filter sluice_export_2001_db8__1;\n"));
    if (access(BIRD, X_OK) == 0) {
        char dir[] = "/tmp/test_ha_bird_XXXXXX";
        assert_non_null(mkdtemp(dir));
        char path[256];
        snprintf(path, sizeof path, "%s/bird.conf", dir);
        write_text(path, text);
        assert_int_equal(bird_parse(path), 0);
        unlink(path);
        rmdir(dir);
    }
    free(text);
    /* ha.preempt true: one shared filter, the exceptions ignored. */
    config_free(cfg);
    cfg = load_ok("ha:\n  asn: 65010\n  priority: 1\n  neighbors: [{ address: 10.0.0.1, asn: 65000 }]\n");
    bird_conf_write_export(ha_conf(cfg), rid, "lb.yaml", ov, 5, &out);
    text = strbuf_finish(&out, NULL);
    assert_non_null(strstr(text, "filter sluice_export {"));
    assert_null(strstr(text, "10.9.0.1"));
    assert_null(strstr(text, "import table"));
    assert_null(strstr(text, "allow local as"));
    assert_null(strstr(text, "3001"));
    free(text);
    config_free(cfg);
}

/* ---- the reply reader on captured BIRD output ---- */

/* A captured stream: greeting, then replies; returns the n-th reply
 * (0 = the greeting). */
static void read_reply_n(const char *name, size_t nth, struct birdc_reply *r)
{
    char path[256];
    snprintf(path, sizeof path, CORPUS "%s", name);
    FILE *f = fopen(path, "r");
    if (!f)
        print_message("cannot open %s (run from the repository root)\n", path);
    assert_non_null(f);
    char line[8192];
    size_t k = 0;
    memset(r, 0, sizeof *r);
    while (fgets(line, sizeof line, f)) {
        size_t len = strcspn(line, "\n");
        char err[256] = "";
        int rc = birdc_reply_add_line(r, line, len, err, sizeof err);
        if (rc < 0)
            print_message("%s: %s\n", name, err);
        assert_true(rc >= 0);
        if (rc == 1) {
            if (k++ == nth)
                break;
            birdc_reply_free(r);
        }
    }
    fclose(f);
    assert_true(r->done);
}

static void test_reply_reader(void **state)
{
    struct birdc_reply r;
    read_reply_n("show_protocols", 0, &r);
    assert_int_equal(r.code, BIRDC_HELLO);
    assert_string_equal(birdc_reply_message(&r), "BIRD 2.0.12 ready.");
    birdc_reply_free(&r);

    read_reply_n("show_protocols", 1, &r);
    assert_int_equal(r.code, BIRDC_OK);
    assert_false(birdc_reply_is_error(&r));
    assert_int_equal(r.lines[0].code, 2002);      /* the heading */
    assert_int_equal(r.lines[1].code, 1002);
    assert_int_equal(r.lines[2].code, 1002);      /* a continuation: the code before */
    struct birdc_protocol *p;
    size_t n;
    char err[256];
    assert_int_equal(birdc_parse_protocols(&r, &p, &n, err, sizeof err), 0);
    assert_int_equal(n, 5);
    assert_string_equal(p[0].name, "sluice_device");
    assert_string_equal(p[0].proto, "Device");
    assert_string_equal(p[0].state, "up");
    assert_string_equal(p[0].info, "");
    assert_string_equal(p[4].name, "sluice_n1");
    assert_string_equal(p[4].proto, "BGP");
    assert_string_equal(p[4].table, "---");
    assert_string_equal(p[4].state, "up");
    assert_int_equal(strlen(p[4].since), 12);     /* "16:21:44.123" */
    assert_string_equal(p[4].info, "Established");
    assert_string_equal(p[4].info_state, "Established");
    assert_string_equal(p[4].info_reason, "");
    free(p);
    birdc_reply_free(&r);

    /* The router went away: the BGP state and BIRD's last error. */
    read_reply_n("router_gone", 1, &r);
    assert_int_equal(birdc_parse_protocols(&r, &p, &n, err, sizeof err), 0);
    assert_int_equal(n, 5);
    assert_string_equal(p[4].name, "sluice_bgp_10_120_0_1");
    assert_string_equal(p[4].state, "start");
    assert_string_equal(p[4].info_state, "Active");
    assert_string_equal(p[4].info_reason, "Received: Administrative shutdown");
    free(p);
    birdc_reply_free(&r);
    read_reply_n("router_gone_later", 1, &r);
    assert_int_equal(birdc_parse_protocols(&r, &p, &n, err, sizeof err), 0);
    assert_string_equal(p[4].info_reason, "Socket: Connection refused");
    free(p);
    birdc_reply_free(&r);
    read_reply_n("router_gone", 2, &r);
    struct birdc_bfd_session *down;
    assert_int_equal(birdc_parse_bfd_sessions(&r, &down, &n, err, sizeof err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(down[0].state, "Down");
    assert_int_equal(down[0].interval_ms, 1000);
    assert_int_equal(down[0].timeout_ms, 0);
    free(down);
    birdc_reply_free(&r);

    read_reply_n("show_bfd_sessions", 1, &r);
    struct birdc_bfd_session *b;
    assert_int_equal(birdc_parse_bfd_sessions(&r, &b, &n, err, sizeof err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(b[0].proto, "sluice_bfd");
    assert_string_equal(b[0].peer, "10.120.0.1");
    assert_string_equal(b[0].ifname, "s12b-v1");
    assert_string_equal(b[0].state, "Up");
    assert_int_equal(b[0].interval_ms, 100);
    assert_int_equal(b[0].timeout_ms, 300);
    free(b);
    birdc_reply_free(&r);

    read_reply_n("route_count", 1, &r);
    uint32_t count = 99;
    assert_int_equal(r.code, BIRDC_ROUTE_COUNT);
    assert_int_equal(birdc_parse_route_count(&r, &count, err, sizeof err), 0);
    assert_int_equal(count, 1);
    birdc_reply_free(&r);

    /* One table (a session of one family): no "Total:" line, the row. */
    read_reply_n("route_count_one_table", 1, &r);
    assert_int_equal(r.code, BIRDC_OK);
    count = 99;
    assert_int_equal(birdc_parse_route_count(&r, &count, err, sizeof err), 0);
    assert_int_equal(count, 2);
    birdc_reply_free(&r);
    read_reply_n("route_export_two", 1, &r);
    struct birdc_prefix *two;
    assert_int_equal(birdc_parse_prefixes(&r, &two, &n, err, sizeof err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(two[0].text, "10.99.0.6/32");
    assert_string_equal(two[1].text, "10.99.0.5/32");
    free(two);
    birdc_reply_free(&r);

    read_reply_n("route_export_all", 1, &r);
    struct birdc_prefix *px;
    assert_int_equal(birdc_parse_prefixes(&r, &px, &n, err, sizeof err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(px[0].text, "10.99.0.5/32");
    free(px);
    birdc_reply_free(&r);

    read_reply_n("configure_error", 1, &r);
    assert_int_equal(r.code, BIRDC_ERR_CONFIG);
    assert_true(birdc_reply_is_error(&r));
    assert_non_null(strstr(birdc_reply_message(&r), "bad.conf:52:10 syntax error"));
    assert_int_equal(birdc_parse_protocols(&r, &p, &n, err, sizeof err), -1);
    assert_non_null(strstr(err, "(8002)"));
    birdc_reply_free(&r);

    read_reply_n("status_syntax_error", 2, &r);
    assert_int_equal(r.code, 9001);
    birdc_reply_free(&r);
}

static void test_reply_reader_rejects(void **state)
{
    struct birdc_reply r = { 0 };
    char err[256];
    /* A continuation with nothing before it. */
    assert_int_equal(birdc_reply_add_line(&r, " text", 5, err, sizeof err), -1);
    assert_string_equal(err, "BIRD's reply begins with a continuation line");
    birdc_reply_free(&r);
    /* Not the protocol. */
    assert_int_equal(birdc_reply_add_line(&r, "HTTP/1.1 200 OK", 15, err, sizeof err), -1);
    birdc_reply_free(&r);
    assert_int_equal(birdc_reply_add_line(&r, "0000", 4, err, sizeof err), -1);
    birdc_reply_free(&r);
    assert_int_equal(birdc_reply_add_line(&r, "12a4 x", 6, err, sizeof err), -1);
    birdc_reply_free(&r);
    /* A spontaneous line is not part of the reply. */
    assert_int_equal(birdc_reply_add_line(&r, "+hello", 6, err, sizeof err), 0);
    assert_int_equal(r.n, 0);
    assert_int_equal(birdc_reply_add_line(&r, "0000 ", 5, err, sizeof err), 1);
    assert_int_equal(r.code, 0);
    /* Nothing after the end. */
    assert_int_equal(birdc_reply_add_line(&r, "0000 ", 5, err, sizeof err), -1);
    birdc_reply_free(&r);
    /* A row that is not a protocol row. */
    assert_int_equal(birdc_reply_add_line(&r, "1002-onlyname", 13, err, sizeof err), 0);
    assert_int_equal(birdc_reply_add_line(&r, "0000 ", 5, err, sizeof err), 1);
    struct birdc_protocol *p;
    size_t n;
    assert_int_equal(birdc_parse_protocols(&r, &p, &n, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot read a row of BIRD's protocol list"));
    birdc_reply_free(&r);
    /* The since column with a date and a time (timeformat iso long). */
    const char *row = "1002-bgp1       BGP        ---        up     2026-12-06 16:15:38  Established   ";
    assert_int_equal(birdc_reply_add_line(&r, row, strlen(row), err, sizeof err), 0);
    assert_int_equal(birdc_reply_add_line(&r, "0000 ", 5, err, sizeof err), 1);
    assert_int_equal(birdc_parse_protocols(&r, &p, &n, err, sizeof err), 0);
    assert_string_equal(p[0].since, "2026-12-06 16:15:38");
    assert_string_equal(p[0].info, "Established");
    free(p);
    birdc_reply_free(&r);
    assert_true(birdc_name_ok("sluice_bgp_10_0_0_1"));
    assert_false(birdc_name_ok("x; shutdown"));
    assert_false(birdc_name_ok("1abc"));
}

/* ---- a real BIRD ---- */

static pid_t read_pid(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long pid = -1;
    if (fscanf(f, "%ld", &pid) != 1)
        pid = -1;
    fclose(f);
    return (pid_t)pid;
}

static void stop_bird(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    for (int i = 0; i < 500 && kill(pid, 0) == 0; i++) {
        struct timespec ts = { 0, 10 * 1000000 };
        nanosleep(&ts, NULL);
    }
    if (kill(pid, 0) == 0)
        kill(pid, SIGKILL);
}

/* Whether process pid holds a descriptor on path. */
static bool holds_file(pid_t pid, const char *path)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    assert_non_null(d);
    bool found = false;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char link[400], target[512];
        snprintf(link, sizeof link, "%s/%s", dir, e->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n > 0) {
            target[n] = '\0';
            found |= strcmp(target, path) == 0;
        }
    }
    closedir(d);
    return found;
}

static const struct birdc_protocol *find_proto(const struct birdc_protocol *p, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(p[i].name, name))
            return &p[i];
    return NULL;
}

/* The real BIRD's directory: its teardown stops it and removes the
 * directory, whatever the test did. */
static char real_dir[64];

static int teardown_real_bird(void **state)
{
    if (!real_dir[0])
        return 0;
    char pidf[128], cmd[128];
    snprintf(pidf, sizeof pidf, "%s/run/bird.pid", real_dir);
    stop_bird(read_pid(pidf));
    snprintf(cmd, sizeof cmd, "rm -rf %s", real_dir);
    int rc = system(cmd);
    real_dir[0] = '\0';
    return rc == 0 ? 0 : -1;
}

static void test_real_bird(void **state)
{
    if (access(BIRD, X_OK) < 0 || geteuid() != 0)
        skip();
    char dir[] = "/tmp/test_ha_bird_XXXXXX";
    assert_non_null(mkdtemp(dir));
    snprintf(real_dir, sizeof real_dir, "%s", dir);
    char yaml[1024], sock[256], conf[256], pidf[256], marker[256];
    snprintf(sock, sizeof sock, "%s/run/bird.ctl", dir);
    snprintf(conf, sizeof conf, "%s/run/bird.conf", dir);
    snprintf(pidf, sizeof pidf, "%s/run/bird.pid", dir);
    snprintf(yaml, sizeof yaml,
             "ha:\n  asn: 65010\n  router_id: 10.0.0.21\n  interface: s12bu-ha\n"
             "  neighbors: [{ address: 127.0.0.2, asn: 65000, multihop: 2, source: 127.0.0.1 }]\n"
             "  bird: { control_socket: %s, config_file: %s, pid_file: %s, log_file: %s/bird.log }\n",
             sock, conf, pidf, dir);
    struct sl_config *cfg = load_ok(yaml);
    struct cfg_ha *h = ha_conf(cfg);

    /* A descriptor of ours that BIRD must not inherit (as the tun device's). */
    snprintf(marker, sizeof marker, "%s/marker", dir);
    int fd = open(marker, O_CREAT | O_RDWR, 0600);   /* no O_CLOEXEC on purpose */
    assert_true(fd >= 0);

    char err[512] = "";
    int rc = bird_proc_apply(h, "unit.yaml", err, sizeof err);
    if (rc < 0)
        print_message("apply: %s\n", err);
    assert_int_equal(rc, 0);
    pid_t pid = read_pid(pidf);
    assert_true(pid > 0);
    assert_false(holds_file(pid, marker));
    close(fd);

    struct birdc b;
    assert_int_equal(birdc_open(&b, sock, 2000, err, sizeof err), 0);
    assert_non_null(strstr(b.version, "BIRD 2."));
    struct birdc_protocol *p;
    size_t n;
    assert_int_equal(birdc_show_protocols(&b, &p, &n, err, sizeof err), 0);
    const struct birdc_protocol *bgp = find_proto(p, n, "sluice_bgp_127_0_0_2");
    assert_non_null(bgp);
    assert_string_equal(bgp->proto, "BGP");
    assert_non_null(find_proto(p, n, "sluice_vips"));
    assert_non_null(find_proto(p, n, "sluice_standin"));
    assert_non_null(find_proto(p, n, "sluice_bfd"));
    free(p);
    struct birdc_bfd_session *s;
    assert_int_equal(birdc_show_bfd_sessions(&b, &s, &n, err, sizeof err), 0);
    free(s);
    uint32_t count = 99;
    assert_int_equal(birdc_exported_count(&b, "sluice_bgp_127_0_0_2", &count, err, sizeof err), 0);
    assert_int_equal(count, 0);
    struct birdc_prefix *px;
    assert_int_equal(birdc_show_exported(&b, "sluice_bgp_127_0_0_2", &px, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    free(px);

    /* disable / enable, twice each ("already ..." is fine). */
    assert_int_equal(birdc_disable(&b, "sluice_bgp_127_0_0_2", err, sizeof err), 0);
    assert_int_equal(birdc_disable(&b, "sluice_bgp_127_0_0_2", err, sizeof err), 0);
    assert_int_equal(birdc_show_protocols(&b, &p, &n, err, sizeof err), 0);
    assert_string_equal(find_proto(p, n, "sluice_bgp_127_0_0_2")->state, "down");
    free(p);
    assert_int_equal(birdc_enable(&b, "sluice_bgp_127_0_0_2", err, sizeof err), 0);
    assert_int_equal(birdc_enable(&b, "sluice_bgp_127_0_0_2", err, sizeof err), 0);
    assert_int_equal(birdc_disable(&b, "nosuch", err, sizeof err), -1);
    assert_non_null(strstr(err, "disable nosuch: BIRD: syntax error"));
    /* A refused file: BIRD keeps its configuration and says where. */
    char bad[512];
    snprintf(bad, sizeof bad, "%s/bad.conf", dir);
    write_text(bad, "protocol bgp {\n");
    assert_int_equal(birdc_configure_check(&b, bad, err, sizeof err), -1);
    assert_non_null(strstr(err, "bad.conf:"));
    assert_int_equal(birdc_configure(&b, bad, err, sizeof err), -1);
    assert_non_null(strstr(err, "(8002)"));
    assert_int_equal(birdc_configure_check(&b, conf, err, sizeof err), 0);
    birdc_close(&b);

    /* A second apply finds the running BIRD by its socket and
     * reconfigures it: the same process, the new priority. */
    h->priority = 3;
    assert_int_equal(bird_proc_apply(h, "unit.yaml", err, sizeof err), 0);
    assert_int_equal(read_pid(pidf), pid);
    assert_int_equal(birdc_open(&b, sock, 2000, err, sizeof err), 0);
    struct birdc_reply r;
    assert_int_equal(birdc_command(&b, "show protocols all sluice_bgp_127_0_0_2", &r, err, sizeof err), 0);
    assert_false(birdc_reply_is_error(&r));
    birdc_reply_free(&r);
    birdc_close(&b);
    FILE *f = fopen(conf, "r");
    assert_non_null(f);
    char text[16384];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = '\0';
    assert_non_null(strstr(text, "bgp_community.add((65010, 1003));"));
    stop_bird(pid);

    /* Starting on a file BIRD refuses: its own message comes back. */
    write_text(conf, "protocol bgp {\n");
    assert_int_equal(bird_proc_start(h, 5000, err, sizeof err), -1);
    assert_non_null(strstr(err, "BIRD refused to start"));
    assert_non_null(strstr(err, "syntax error"));
    /* No such binary: say which package. */
    free(h->bird.binary);
    h->bird.binary = strdup("/nonexistent/bird");
    assert_int_equal(bird_proc_apply(h, "unit.yaml", err, sizeof err), -1);
    assert_non_null(strstr(err, "install the Debian package bird2"));
    config_free(cfg);
}

static void test_write_file_atomic(void **state)
{
    char dir[] = "/tmp/test_ha_bird_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], err[256];
    /* The last level of the directory is created. */
    snprintf(path, sizeof path, "%s/sub/bird.conf", dir);
    assert_int_equal(bird_proc_write_file(path, "one\n", 4, err, sizeof err), 0);
    assert_int_equal(bird_proc_write_file(path, "two\n", 4, err, sizeof err), 0);
    FILE *f = fopen(path, "r");
    char buf[16] = "";
    assert_non_null(fgets(buf, sizeof buf, f));
    fclose(f);
    assert_string_equal(buf, "two\n");
    /* Nothing left beside it. */
    char sub[256];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    DIR *d = opendir(sub);
    int entries = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        entries += e->d_name[0] != '.';
    closedir(d);
    assert_int_equal(entries, 1);
    /* Two levels missing: an error with the reason. */
    snprintf(path, sizeof path, "%s/a/b/bird.conf", dir);
    assert_int_equal(bird_proc_write_file(path, "x", 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "No such file or directory"));
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* `show route ... all`: routes with their AS path and communities, on
 * captured BIRD 2.0.12 output (an import table; a table with two routes
 * for one network, the second without its network). */
static void test_route_parser(void **state)
{
    struct birdc_reply r;
    struct birdc_route *rt;
    size_t n;
    char err[256];
    read_reply_n("route_import", 1, &r);
    assert_int_equal(birdc_parse_routes(&r, &rt, &n, err, sizeof err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(rt[0].prefix, "10.99.100.3/32");
    assert_string_equal(rt[0].proto, "r");
    assert_int_equal(rt[0].as_path_len, 2);
    assert_int_equal(rt[0].as_path[0], 65000);
    assert_int_equal(rt[0].as_path[1], 65010);
    assert_int_equal(rt[0].n_community, 2);
    assert_int_equal(rt[0].community[1][0], 65010);
    assert_int_equal(rt[0].community[1][1], 3000);
    assert_int_equal(rt[0].n_large_community, 1);
    assert_int_equal(rt[0].large_community[0][0], 4200000000u);
    assert_int_equal(rt[0].large_community[0][1], 3001);
    assert_int_equal(rt[0].large_community[0][2], 0);
    assert_string_equal(rt[1].prefix, "10.99.100.1/32");
    free(rt);
    birdc_reply_free(&r);

    read_reply_n("route_all_two", 1, &r);
    assert_int_equal(birdc_parse_routes(&r, &rt, &n, err, sizeof err), 0);
    assert_int_equal(n, 4);
    assert_string_equal(rt[3].prefix, "10.99.100.1/32");   /* the network of the row before */
    assert_string_equal(rt[3].proto, "b");
    assert_int_equal(rt[3].as_path_len, 3);
    assert_int_equal(rt[3].n_community, 1);
    assert_int_equal(rt[3].n_large_community, 0);
    assert_string_equal(rt[2].proto, "a");
    assert_int_equal(rt[2].as_path_len, 1);
    free(rt);
    birdc_reply_free(&r);

    /* The channel's import table is gone (session down): an error reply. */
    read_reply_n("route_import_down", 1, &r);
    assert_int_equal(r.code, 9001);
    assert_int_equal(birdc_parse_routes(&r, &rt, &n, err, sizeof err), -1);
    assert_non_null(strstr(err, "No import table"));
    birdc_reply_free(&r);

    /* Built by hand: an AS set, a path longer than kept, and lines that
     * are not BIRD's route list. */
    static const char *set[] = { "1007-Table t:", " 10.0.0.1/32  unicast [p 1.2.3] * (100)",
                                 "1012-\tBGP.as_path: 65000 {65010 65011} 65010", "0000 " };
    memset(&r, 0, sizeof r);
    for (size_t i = 0; i < 4; i++)
        birdc_reply_add_line(&r, set[i], strlen(set[i]), err, sizeof err);
    assert_int_equal(birdc_parse_routes(&r, &rt, &n, err, sizeof err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(rt[0].as_path_len, 4);
    assert_int_equal(rt[0].as_path[3], 65010);
    free(rt);
    birdc_reply_free(&r);
    char longpath[1024] = "1012-\tBGP.as_path:";
    for (int i = 0; i < BIRDC_MAX_AS_PATH + 3; i++)
        strcat(longpath, " 65010");
    const char *bad[][4] = {
        { "1007-Table t:", " 10.0.0.1/32  unicast [p 1.2.3] * (100)", "1012-\tBGP.as_path: 65000 x", "0000 " },
        { "1007-Table t:", " 10.0.0.1/32  unicast [p 1.2.3] * (100)", "1012-\tBGP.community: (65010,1000", "0000 " },
        { "1007-Table t:", " 10.0.0.1/32  unicast [p 1.2.3] * (100)", "1012-\tBGP.as_path: 99999999999", "0000 " },
        { "1007-Table t:", " 10.0.0.1/32  unicast no bracket", "1012-\tBGP.origin: IGP", "0000 " },
        { "1007-Table t:", "    unicast [p 1.2.3] (the network of no row before)", "1012-\tBGP.origin: IGP", "0000 " },
        { "1007-Table t:", " 10.0.0.1/32  unicast [p 1.2.3] * (100)", longpath, "0000 " },
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        memset(&r, 0, sizeof r);
        for (size_t i = 0; i < 4; i++)
            birdc_reply_add_line(&r, bad[k][i], strlen(bad[k][i]), err, sizeof err);
        err[0] = '\0';
        int rc = birdc_parse_routes(&r, &rt, &n, err, sizeof err);
        if (k == 5) {   /* too long a path: the first ones kept, marked cut */
            assert_int_equal(rc, 0);
            assert_int_equal(rt[0].as_path_len, BIRDC_MAX_AS_PATH);
            assert_true(rt[0].as_path_cut);
            free(rt);
        } else {
            assert_int_equal(rc, -1);
            assert_non_null(strstr(err, "cannot read a line of BIRD's route list"));
        }
        birdc_reply_free(&r);
    }
}

int main(void)
{
    config_register_section(&ha_conf_section);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_managed_text),
        cmocka_unit_test(test_bird_parses_managed),
        cmocka_unit_test(test_bird_parses_external),
        cmocka_unit_test(test_reply_reader),
        cmocka_unit_test(test_reply_reader_rejects),
        cmocka_unit_test(test_preempt_text),
        cmocka_unit_test(test_route_parser),
        cmocka_unit_test_teardown(test_real_bird, teardown_real_bird),
        cmocka_unit_test(test_write_file_atomic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
