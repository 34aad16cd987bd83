/* Test driver of the HA probe engine (src/ha/probe.h), for
 * tests/integration/test_ha_probe.py. Runs the real engine on a real
 * event loop in whatever network namespace it is started in, and prints
 * one JSON object on stdout.
 *
 *   ha_probe_driver probe VIP PORT [options]
 *       one probe_start(); prints {"outcome","path","rtt_us","src","sport","detail"}
 *   ha_probe_driver target VIP PORT[,PORT...] ROUNDS [options]
 *       a probe_target for ROUNDS intervals; prints its stats, its state,
 *       the learned source ports and the verdicts in order
 *   ha_probe_driver sockdiag LOCAL_ADDR LOCAL_PORT REMOTE_ADDR REMOTE_PORT
 *       core/sock_diag.h: prints {"found":bool,"state":N}
 *
 * Options:
 *   --through always|never|sockdiag|ports:A,B,...  the attribution predicate
 *        (default: none, paths are "unknown"); ports: the flow went
 *        through us when its source port is one of the list;
 *   --sport N           the source port of `probe` (default: random)
 *   --timeout MS --interval MS --fall N --rise N --hold MS --learn N
 *   --ports LO-HI       the probe source port range
 *   --source ADDR --gateway ADDR
 *   --unhealthy         the node's own health says the service is down
 *   --live              `target`: also print each verdict as it comes,
 *                       {"verdict": NAME}, one line each, before the summary
 *   --linger MS         `probe`: print the result at once, then keep the
 *                       loop running MS more (late answers still handled)
 *
 * Exit status 0 when the JSON was printed, 2 on bad usage.
 */
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/evloop.h"
#include "core/sock_diag.h"
#include "ha/probe.h"

enum through_mode { THROUGH_NONE, THROUGH_ALWAYS, THROUGH_NEVER, THROUGH_SOCKDIAG, THROUGH_PORTS };

static enum through_mode through_mode;
static uint16_t through_ports[64];
static size_t n_through_ports;
static bool unhealthy;
static uint32_t linger_ms;
static bool live_verdicts;

static int usage(void)
{
    fprintf(stderr, "usage: ha_probe_driver probe VIP PORT [options] | target VIP PORTS ROUNDS [options] |\n"
                    "       sockdiag LOCAL_ADDR LOCAL_PORT REMOTE_ADDR REMOTE_PORT\n");
    return 2;
}

static int parse_addr(const char *text, uint16_t port, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof *out);
    struct sockaddr_in *sin = (struct sockaddr_in *)out;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, text, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        return 0;
    }
    if (inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        return 0;
    }
    return -1;
}

static int sockaddr_of_tuple(const struct probe_tuple *t, bool vip_side, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof *out);
    const uint8_t *addr = vip_side ? t->dst : t->src;
    uint16_t port = vip_side ? t->dport : t->sport;
    if (t->family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)out;
        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, addr, 4);
        sin->sin_port = htons(port);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, addr, 16);
        sin6->sin6_port = htons(port);
    }
    return 0;
}

/* The predicate the engine asks. */
static int through(void *ctx, const struct probe_flow *flow)
{
    switch (through_mode) {
    case THROUGH_ALWAYS:
        return 1;
    case THROUGH_NEVER:
        return 0;
    case THROUGH_PORTS:
        for (size_t i = 0; i < n_through_ports; i++)
            if (through_ports[i] == flow->tuple.sport)
                return 1;
        return 0;
    case THROUGH_SOCKDIAG: {
        struct sockaddr_storage local, remote;
        sockaddr_of_tuple(&flow->tuple, true, &local);
        sockaddr_of_tuple(&flow->tuple, false, &remote);
        char err[128];
        return sock_diag_tcp_find((struct sockaddr *)&local, (struct sockaddr *)&remote, NULL, err, sizeof err);
    }
    case THROUGH_NONE:
        break;
    }
    return -1;
}

static bool node_healthy(void *arg)
{
    return !unhealthy;
}

static int parse_through(const char *v)
{
    if (strcmp(v, "always") == 0)
        through_mode = THROUGH_ALWAYS;
    else if (strcmp(v, "never") == 0)
        through_mode = THROUGH_NEVER;
    else if (strcmp(v, "sockdiag") == 0)
        through_mode = THROUGH_SOCKDIAG;
    else if (strncmp(v, "ports:", 6) == 0) {
        through_mode = THROUGH_PORTS;
        char *copy = strdup(v + 6), *save = NULL;
        for (char *tok = strtok_r(copy, ",", &save); tok && n_through_ports < 64; tok = strtok_r(NULL, ",", &save))
            through_ports[n_through_ports++] = (uint16_t)atoi(tok);
        free(copy);
    } else
        return -1;
    return 0;
}

/* Options after the positional arguments. */
static int parse_options(int argc, char **argv, struct probe_conf *c, uint16_t *sport)
{
    for (int i = 0; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(o, "--unhealthy") == 0 || strcmp(o, "--live") == 0) {
            *(o[2] == 'u' ? &unhealthy : &live_verdicts) = true;
            continue;
        }
        if (!v)
            return -1;
        i++;
        if (strcmp(o, "--through") == 0) {
            if (parse_through(v) < 0)
                return -1;
        } else if (strcmp(o, "--sport") == 0)
            *sport = (uint16_t)atoi(v);
        else if (strcmp(o, "--linger") == 0)
            linger_ms = (uint32_t)atoi(v);
        else if (strcmp(o, "--timeout") == 0)
            c->timeout_ms = (uint32_t)atoi(v);
        else if (strcmp(o, "--interval") == 0)
            c->interval_ms = (uint32_t)atoi(v);
        else if (strcmp(o, "--fall") == 0)
            c->fall = (uint32_t)atoi(v);
        else if (strcmp(o, "--rise") == 0)
            c->rise = (uint32_t)atoi(v);
        else if (strcmp(o, "--hold") == 0)
            c->hold_ms = (uint32_t)atoi(v);
        else if (strcmp(o, "--learn") == 0)
            c->learn_ports = (uint32_t)atoi(v);
        else if (strcmp(o, "--ports") == 0) {
            unsigned lo, hi;
            if (sscanf(v, "%u-%u", &lo, &hi) != 2)
                return -1;
            c->port_lo = (uint16_t)lo;
            c->port_hi = (uint16_t)hi;
        } else if (strcmp(o, "--source") == 0 || strcmp(o, "--gateway") == 0) {
            struct sockaddr_storage ss;
            if (parse_addr(v, 0, &ss) < 0)
                return -1;
            bool src = strcmp(o, "--source") == 0;
            if (ss.ss_family == AF_INET)
                *(src ? &c->source4 : &c->gateway4) = ss;
            else
                *(src ? &c->source6 : &c->gateway6) = ss;
        } else
            return -1;
    }
    const char *why = probe_conf_check(c);
    if (why)
        fprintf(stderr, "%s\n", why);
    return why ? -1 : 0;
}

/* ---- probe ---- */

static void stop_loop(struct ev_loop *loop, struct ev_timer *t)
{
    ev_break(loop);
}


static struct probe_result one_result;

static void one_done(void *arg, const struct probe_result *r)
{
    one_result = *r;
    ev_break(arg);
}

static int run_probe(struct probe_engine *e, struct ev_loop *loop, const struct sockaddr *vip, uint16_t sport)
{
    if (!probe_start(e, vip, sport, one_done, loop))
        return usage();
    ev_run(loop);
    char src[INET6_ADDRSTRLEN] = "";
    inet_ntop(one_result.flow.tuple.family, one_result.flow.tuple.src, src, sizeof src);
    json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:i, s:s}", "outcome", probe_outcome_name(one_result.outcome), "path",
                          probe_path_name(one_result.path), "rtt_us", (json_int_t)one_result.rtt_us, "src", src,
                          "sport", one_result.flow.tuple.sport, "detail", one_result.detail);
    json_dumpf(o, stdout, JSON_COMPACT);
    putchar('\n');
    fflush(stdout);
    json_decref(o);
    if (linger_ms) {
        struct ev_timer stop;
        ev_timer_init(&stop, stop_loop, NULL);
        ev_timer_start(loop, &stop, linger_ms);
        ev_run(loop);
    }
    return 0;
}

/* ---- target ---- */

struct target_run {
    struct ev_loop *loop;
    json_t *verdicts;
};

static void on_verdict(void *arg, enum probe_verdict v)
{
    struct target_run *run = arg;
    json_array_append_new(run->verdicts, json_string(probe_verdict_name(v)));
    if (live_verdicts) {
        printf("{\"verdict\":\"%s\"}\n", probe_verdict_name(v));
        fflush(stdout);
    }
}

/* After the last round: stop the target, then wait for its probes out. */
static void stop_when_done(struct ev_loop *loop, struct ev_timer *timer)
{
    struct probe_target *t = timer->data;
    probe_target_stop(t);
    if (probe_target_inflight(t) == 0)
        ev_break(loop);
    else
        ev_timer_start(loop, timer, 10);
}

static int run_target(struct probe_engine *e, struct ev_loop *loop, const struct sockaddr *vip, const char *ports_text,
                      int rounds, const struct probe_conf *c)
{
    uint16_t ports[16];
    size_t n = 0;
    char *copy = strdup(ports_text), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok && n < 16; tok = strtok_r(NULL, ",", &save))
        ports[n++] = (uint16_t)atoi(tok);
    free(copy);
    struct target_run run = { .loop = loop, .verdicts = json_array() };
    struct probe_target *t = probe_target_new(e, vip, ports, n, node_healthy, on_verdict, &run);
    if (!t)
        return usage();
    /* ROUNDS rounds, then every probe out ends (answer or timeout), so
     * the counts add up to `sent`. */
    struct ev_timer stop;
    ev_timer_init(&stop, stop_when_done, t);
    ev_timer_start(loop, &stop, (uint64_t)(rounds - 1) * c->interval_ms + 1);
    ev_run(loop);
    const struct probe_stats *s = probe_target_stats(t);
    uint16_t learned[16];
    size_t n_learned = probe_target_learned(t, learned, 16);
    json_t *lp = json_array();
    for (size_t i = 0; i < n_learned; i++)
        json_array_append_new(lp, json_integer(learned[i]));
    /* "ended": {"ok": {"us": N, ...}, ...}, as sluice_ha_probe_total's
     * labels; and the sums the tests read most. */
    json_t *ended = json_object();
    uint64_t sum_ok[PROBE_PATHS] = { 0 }, sum_failed[PROBE_PATHS] = { 0 }, unknown = 0;
    for (int o = 0; o < PROBE_OUTCOMES; o++) {
        json_t *by_path = json_object();
        for (int p = 0; p < PROBE_PATHS; p++) {
            uint64_t count = s->ended[o][p];
            json_object_set_new(by_path, probe_path_name((enum probe_path)p), json_integer((json_int_t)count));
            if (o == PROBE_ERROR || p == PROBE_PATH_UNKNOWN)
                unknown += count;
            else if (o == PROBE_OK)
                sum_ok[p] += count;
            else
                sum_failed[p] += count;
        }
        json_object_set_new(ended, probe_outcome_name((enum probe_outcome)o), by_path);
    }
    json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s, s:o, s:o, s:o}", "sent", (json_int_t)s->sent,
                          "ok_us", (json_int_t)sum_ok[PROBE_PATH_US], "failed_us", (json_int_t)sum_failed[PROBE_PATH_US],
                          "ok_elsewhere", (json_int_t)sum_ok[PROBE_PATH_ELSEWHERE], "failed_elsewhere",
                          (json_int_t)sum_failed[PROBE_PATH_ELSEWHERE], "unknown", (json_int_t)unknown, "withdrawals",
                          (json_int_t)s->withdrawals, "state", probe_fsm_state_name(probe_target_state(t)), "learned",
                          lp, "verdicts", run.verdicts, "ended", ended);
    json_dumpf(o, stdout, JSON_COMPACT);
    putchar('\n');
    json_decref(o);
    probe_target_free(t);
    return 0;
}

static int run_sockdiag(char **argv)
{
    struct sockaddr_storage local, remote;
    if (parse_addr(argv[0], (uint16_t)atoi(argv[1]), &local) < 0 ||
        parse_addr(argv[2], (uint16_t)atoi(argv[3]), &remote) < 0)
        return usage();
    char err[128] = "";
    int state = 0;
    int rc = sock_diag_tcp_find((struct sockaddr *)&local, (struct sockaddr *)&remote, &state, err, sizeof err);
    json_t *o = json_pack("{s:b, s:i, s:s}", "found", rc == 1, "state", state, "error", rc < 0 ? err : "");
    json_dumpf(o, stdout, JSON_COMPACT);
    putchar('\n');
    json_decref(o);
    return rc < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc >= 6 && strcmp(argv[1], "sockdiag") == 0)
        return run_sockdiag(argv + 2);
    bool target = argc >= 5 && strcmp(argv[1], "target") == 0;
    if (!target && !(argc >= 4 && strcmp(argv[1], "probe") == 0))
        return usage();
    struct probe_conf c;
    probe_conf_defaults(&c);
    uint16_t sport = 0;
    int first_option = target ? 5 : 4;
    if (parse_options(argc - first_option, argv + first_option, &c, &sport) < 0)
        return usage();
    struct sockaddr_storage vip;
    if (parse_addr(argv[2], target ? 0 : (uint16_t)atoi(argv[3]), &vip) < 0)
        return usage();
    struct ev_loop *loop = ev_loop_new();
    struct probe_engine *e = probe_engine_new(loop, &c, through_mode == THROUGH_NONE ? NULL : through, NULL);
    int rc = target ? run_target(e, loop, (struct sockaddr *)&vip, argv[3], atoi(argv[4]), &c)
                    : run_probe(e, loop, (struct sockaddr *)&vip, sport);
    probe_engine_free(e);
    ev_loop_free(loop);
    return rc;
}
