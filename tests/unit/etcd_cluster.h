/* A real 3-member etcd cluster for the registry's unit tests (Debian's
 * etcd-server): started on loopback ports in a temporary directory, each
 * member killable and restartable, everything killed and removed at the
 * end. Header-only; include after <cmocka.h>.
 *
 * Fast elections (heartbeat 50 ms, election timeout 500 ms) keep a
 * member's death short. Ports are taken from the kernel (bind to port 0)
 * and released just before etcd binds them. */
#ifndef SLUICE_TESTS_ETCD_CLUSTER_H
#define SLUICE_TESTS_ETCD_CLUSTER_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/evloop.h"

#define EC_MEMBERS 3
#define EC_ETCD "/usr/bin/etcd"

struct etcd_cluster {
    char dir[64];
    int client_port[EC_MEMBERS], peer_port[EC_MEMBERS];
    pid_t pid[EC_MEMBERS];
    char endpoint[EC_MEMBERS][64];
    char initial[512];
};

/* n distinct free ports: every socket stays bound until all are taken,
 * or the kernel may hand out the same port twice. */
static inline int ec_free_ports(int *ports, int n)
{
    int fds[2 * EC_MEMBERS], rc = 0;
    for (int i = 0; i < n; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof a;
        if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&a, sizeof a) < 0 ||
            getsockname(fds[i], (struct sockaddr *)&a, &len) < 0)
            rc = -1;
        ports[i] = ntohs(a.sin_port);
    }
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return rc;
}

static inline void ec_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static inline int ec_start_member(struct etcd_cluster *c, int i)
{
    char name[16], data[128], log[128], client[64], peer[64];
    snprintf(name, sizeof name, "m%d", i);
    snprintf(data, sizeof data, "%s/%s", c->dir, name);
    snprintf(log, sizeof log, "%s/%s.log", c->dir, name);
    snprintf(client, sizeof client, "http://127.0.0.1:%d", c->client_port[i]);
    snprintf(peer, sizeof peer, "http://127.0.0.1:%d", c->peer_port[i]);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        FILE *f = freopen(log, "a", stdout);
        (void)f;
        dup2(1, 2);
        setpgid(0, 0);
        execl(EC_ETCD, EC_ETCD, "--name", name, "--data-dir", data, "--listen-client-urls", client,
              "--advertise-client-urls", client, "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
              "--initial-cluster", c->initial, "--initial-cluster-state", "new", "--initial-cluster-token",
              c->dir + 5, "--heartbeat-interval", "50", "--election-timeout", "500", "--log-level", "warn",
              (char *)NULL);
        _exit(127);
    }
    c->pid[i] = pid;
    return 0;
}

static inline void ec_kill_member(struct etcd_cluster *c, int i)
{
    if (c->pid[i] > 0) {
        kill(c->pid[i], SIGKILL);
        waitpid(c->pid[i], NULL, 0);
        c->pid[i] = 0;
    }
}

/* A member answers a range once it is part of a cluster with a leader.
 * Checked with curl(1), so the test's own client is not what it relies
 * on. */
static inline bool ec_member_ready(struct etcd_cluster *c, int i)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd,
             "curl -sf -m 1 -H 'Grpc-Metadata-hasleader: true' -XPOST %s/v3/kv/range -d '{\"key\":\"AA==\"}' "
             ">/dev/null 2>&1",
             c->endpoint[i]);
    return system(cmd) == 0;
}

static inline int ec_wait_ready(struct etcd_cluster *c, int i, unsigned timeout_ms)
{
    for (unsigned waited = 0; waited < timeout_ms; waited += 100) {
        if (ec_member_ready(c, i))
            return 0;
        ec_sleep_ms(100);
    }
    return -1;
}

static inline void ec_stop(struct etcd_cluster *c)
{
    for (int i = 0; i < EC_MEMBERS; i++)
        ec_kill_member(c, i);
    if (c->dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", c->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "etcd_cluster: cannot remove %s\n", c->dir);
        c->dir[0] = '\0';
    }
}

/* Start all members and wait until each answers; -1 (and nothing left
 * behind) when the cluster does not come up in 20 s. */
static inline int ec_start(struct etcd_cluster *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->dir, sizeof c->dir, "/tmp/sluice-etcd-XXXXXX");
    if (!mkdtemp(c->dir))
        return -1;
    size_t off = 0;
    int ports[2 * EC_MEMBERS];
    if (ec_free_ports(ports, 2 * EC_MEMBERS) < 0) {
        ec_stop(c);
        return -1;
    }
    for (int i = 0; i < EC_MEMBERS; i++) {
        c->client_port[i] = ports[2 * i];
        c->peer_port[i] = ports[2 * i + 1];
        snprintf(c->endpoint[i], sizeof c->endpoint[i], "http://127.0.0.1:%d", c->client_port[i]);
        off += (size_t)snprintf(c->initial + off, sizeof c->initial - off, "%sm%d=http://127.0.0.1:%d",
                                i ? "," : "", i, c->peer_port[i]);
    }
    for (int i = 0; i < EC_MEMBERS; i++)
        if (ec_start_member(c, i) < 0) {
            ec_stop(c);
            return -1;
        }
    for (int i = 0; i < EC_MEMBERS; i++)
        if (ec_wait_ready(c, i, 20000) < 0) {
            char cmd[160];
            fprintf(stderr, "etcd_cluster: member %d did not come up; the end of its log:\n", i);
            snprintf(cmd, sizeof cmd, "tail -5 '%s/m%d.log' >&2", c->dir, i);
            if (system(cmd) != 0)
                fprintf(stderr, "(no log)\n");
            ec_stop(c);
            return -1;
        }
    return 0;
}

/* Restart a killed member (its data directory is kept). */
static inline int ec_restart_member(struct etcd_cluster *c, int i)
{
    return ec_start_member(c, i);
}

/* The member whose client URL is endpoint, or -1. */
static inline int ec_member_of(const struct etcd_cluster *c, const char *endpoint)
{
    for (int i = 0; i < EC_MEMBERS; i++)
        if (strcmp(c->endpoint[i], endpoint) == 0)
            return i;
    return -1;
}

/* Run the loop until done(arg) says so or timeout_ms pass; returns
 * whether done. */
struct ec_wait {
    bool (*done)(void *arg);
    void *arg;
    bool ok;
    uint64_t until;
    struct ev_timer t;
};

static inline void ec_wait_tick(struct ev_loop *loop, struct ev_timer *t)
{
    struct ec_wait *w = t->data;
    if (w->done(w->arg)) {
        w->ok = true;
        ev_break(loop);
    } else if (ev_now(loop) >= w->until) {
        ev_break(loop);
    } else {
        ev_timer_start(loop, t, 10);
    }
}

static inline bool ec_run_until(struct ev_loop *loop, bool (*done)(void *), void *arg, unsigned timeout_ms)
{
    struct ec_wait w = {.done = done, .arg = arg};
    ev_now_update(loop);
    w.until = ev_now(loop) + timeout_ms;
    if (done(arg))
        return true;
    ev_timer_init(&w.t, ec_wait_tick, &w);
    ev_timer_start(loop, &w.t, 10);
    ev_run(loop);
    ev_timer_stop(loop, &w.t);
    return w.ok;
}

#endif
