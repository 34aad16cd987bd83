/* Active health checks over a set of targets, run on one event loop.
 *
 * A target is an address, the check to run against it (struct cfg_health,
 * core/health_conf.h: tcp or http, interval, timeout, rise, fall) and the names its log lines
 * use. Targets are added and removed one at a time while the others keep
 * their schedule, so a tier can follow a model that changes often (sluice
 * l4's reals as the API edits them, a registry's thousands of instances)
 * without restarting every check. The set knows no tier: it tells the
 * target's owner every result through a callback, and the owner decides
 * what it means (the proxy mirrors it into its shared region, sluice l4
 * takes a real in or out of its Maglev tables).
 *
 * Each target is checked every interval_ms (the first check at a random
 * point of the first interval, so a large set is not probed in lock-step),
 * each check bounded by timeout_ms. Nothing blocks: connects are
 * non-blocking and every socket is an ev_io of the loop.
 *
 *   tcp   the connect succeeds (with tls_new: and the TLS handshake)
 *   http  connect (and handshake), send "GET <path>" with Host and Connection: close, read
 *         the status line (at most 4 KiB), pass if the status is within
 *         [status_min, status_max]
 *   none  no checks: the target is up ("no active health check"), and one
 *         that was down (carried over from checks turned off since) comes
 *         up at once
 *
 * `rise` consecutive passes turn a DOWN target UP (up_since_ms = now, for
 * slow start), `fall` consecutive failures turn an UP target DOWN; both
 * transitions are logged as "backend ADDR in pool GROUP is UP/DOWN ..."
 * (or as the target's own subject says).
 */
#ifndef SLUICE_CORE_HEALTH_H
#define SLUICE_CORE_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/addr.h"
#include "core/health_conf.h"
#include "core/evloop.h"

#define HEALTH_READ_MAX 4096

/* What the checks of one target have found. */
struct hc_status {
    bool up;
    uint64_t up_since_ms;             /* ev_now() when it last came up */
    uint32_t rise, fall;              /* current streaks of passes and failures */
    uint64_t checks_ok, checks_failed;
    char last_check[96];              /* the last result in words */
};

/* Called after every result of the target (and once when a target without
 * checks comes up at hc_add): st is its new status; changed when it just
 * turned up or down. */
typedef void hc_result_fn(void *arg, const struct hc_status *st, bool changed);

struct hc_target_spec {
    struct sl_addr addr;
    const struct cfg_health *check;   /* copied: it need not outlive the call */
    const char *group;                /* the pool (service) in log lines; copied */
    /* What log lines call the target (copied), e.g. "instance a
     * (10.0.0.1:80) of service web"; NULL: "backend ADDR in pool GROUP". */
    const char *subject;
    struct hc_status initial;         /* a fresh one, or what an earlier target found */
    hc_result_fn *on_result;          /* may be NULL */
    void *arg;
    /* Optional: the check speaks TLS (a tier's backends behind TLS). Each
     * check asks tls_new for a fresh client SSL for the address (SNI,
     * verification and session are the tier's business) and runs the
     * handshake before the HTTP request; a tcp check passes when the
     * handshake completes. The tier's tls_arg must outlive the target. */
    struct ssl_st *(*tls_new)(void *tls_arg, const struct sl_addr *addr);
    void *tls_arg;
    /* Optional: bytes written as they are the moment the connect succeeds,
     * before TLS and the request (copied, at most HEALTH_PREAMBLE_MAX): a
     * PROXY protocol header for a backend that requires one. */
    const void *preamble;
    size_t preamble_len;
};
#define HEALTH_PREAMBLE_MAX 64

struct hc_set;
struct hc_target;

/* An empty set on loop. NULL on out of memory. */
struct hc_set *hc_set_new(struct ev_loop *loop);
/* Cancel every check, close their sockets and free the set and its
 * targets. Safe from any callback of the same loop; the memory goes once
 * the current batch of events is done (or with ev_loop_free). */
void hc_set_free(struct hc_set *set);

/* Start checking a target (its first check within one interval). NULL on
 * out of memory. */
struct hc_target *hc_add(struct hc_set *set, const struct hc_target_spec *spec);
/* Stop checking it: an in-flight check is cancelled, its socket closed,
 * its callback never called again. Safe from any callback of the loop. */
void hc_remove(struct hc_set *set, struct hc_target *t);

const struct hc_status *hc_target_status(const struct hc_target *t);
size_t hc_set_size(const struct hc_set *set);

/* A status for a target nobody checked yet: up, "not checked yet", up
 * since long enough ago that a fresh start is no recovery (no slow start). */
void hc_status_fresh(struct hc_status *st, uint64_t now_ms);

#endif
