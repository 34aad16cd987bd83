/* Proactive VIP probing: this node checks the VIPs it announces end to
 * end, through the routers, as a client would, and tells its owner (the
 * HA companion) to withdraw a VIP whose probes fail while the node's own
 * health checks say the service is fine. docs/ha.md ("Probing VIPs") is the user's
 * side of this file.
 *
 * Why packets. On an LB node the VIP is a local address (on the HA tun
 * device, on lo for DR), so a connect() to it never leaves the node. A
 * probe is therefore sent at the packet level: a TCP SYN from the probe
 * source address to VIP:port, handed to an AF_PACKET socket with the MAC
 * of the next hop the node's main routing table has for the VIP (the
 * route a client-bound packet would take if the VIP were not local). The
 * answer (SYN-ACK or RST from VIP:port) comes back through the routers;
 * an AF_PACKET socket with a socket filter sees it before the IP layer
 * drops it as a martian (its source, the VIP, is local). A SYN-ACK is
 * answered by a RST, so the server keeps no half-open connection.
 *
 * Three layers, usable alone:
 *
 *  1. struct probe_fsm: the decision rule, pure (no I/O, time passed in).
 *  2. struct probe_engine + probe_start(): one probe, asynchronous, driven
 *     by the daemon's event loop; its callback gets ok / refused / timeout
 *     (or an error), the RTT, and whether the flow went through this node.
 *  3. struct probe_target: one VIP with its ports, probed every interval,
 *     with source-port learning, counters and the state machine; its
 *     callback says "withdraw", "re-announce", "restored".
 *
 * Attribution. The routers spread probe flows over the LB nodes by ECMP;
 * only a probe that went through THIS node says something about it. The
 * owner supplies a predicate, "did this node forward flow F?" (the l4
 * tier answers from its connection table, the proxy from sock_diag: see
 * core/sock_diag.h). The predicate is asked when the probe ends, before
 * the RST is sent (the proxy's half-open socket is still there). A flow's
 * 4-tuple is reused while its source port keeps landing here, so an
 * answer must come from state refreshed since `flow->sent_ms` (the l4
 * entry's last-seen time), not from an older probe's entry.
 *
 * Besides, the engine sees its own SYN arrive on one of this node's
 * interfaces when the routers sent the probe back here: that probe is
 * "us" without asking (a socket tier; an XDP forwarder takes its packets
 * before packet sockets see them). Over IPv4 such a SYN is a martian to
 * the node's kernel (its source is local) unless accept_local is set on
 * the interface: the timeout that follows is then reported with path
 * "unknown" and a detail naming the sysctl, not held against the node.
 *
 * Callbacks run from the loop, never from inside probe_start(); they must
 * not free the engine. A target's verdict callback may free its target.
 */
#ifndef SLUICE_HA_PROBE_H
#define SLUICE_HA_PROBE_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/evloop.h"
#include "ha/probe_packet.h"

/* ---- configuration -------------------------------------------------- */

#define PROBE_LEARN_MAX 16 /* learn_ports at most */

/* The probing keys (the `ha.probe` block; defaults in brackets). */
struct probe_conf {
    uint32_t interval_ms; /* [1000] between two rounds of a VIP's probes */
    uint32_t timeout_ms;  /* [500] a probe without an answer is a timeout */
    uint32_t fall;        /* [3] failures through us in a row => withdraw */
    uint32_t rise;        /* [2] successes through us after re-announcing => restored */
    uint32_t hold_ms;     /* [30000] withdrawn this long, then re-announced to try again */
    uint32_t learn_ports; /* [4] source ports remembered per VIP because they land here */
    uint16_t port_lo;     /* [61000] probe source ports: outside Linux's */
    uint16_t port_hi;     /* [61999]   ephemeral range (32768-60999) */
    /* Probe source address per family; unset (family 0) = the preferred
     * source of the route to the VIP, else the first global address of
     * the uplink interface. */
    struct sockaddr_storage source4, source6;
    /* Next hop override per family (family 0 = from the main routing
     * table): needed when the VIP's best main-table route is on-link. */
    struct sockaddr_storage gateway4, gateway6;
};

void probe_conf_defaults(struct probe_conf *c);
/* NULL if valid, else a static reason naming the key ("probe.fall: must be at least 1"). */
const char *probe_conf_check(const struct probe_conf *c);

/* ---- 1. the decision rule -------------------------------------------- */

enum probe_fsm_state {
    PROBE_SERVING,    /* announced; probes through us are watched */
    PROBE_WITHDRAWN,  /* withdrawn by the probe; waiting `hold` */
    PROBE_RECHECKING, /* re-announced after `hold`; needs `rise` successes */
};

enum probe_verdict {
    PROBE_VERDICT_NONE,
    PROBE_VERDICT_WITHDRAW,   /* remove the address from the announcement */
    PROBE_VERDICT_REANNOUNCE, /* put it back, on trial */
    PROBE_VERDICT_RESTORED,   /* the trial passed (nothing to change; report it) */
};

struct probe_fsm {
    enum probe_fsm_state state;
    uint32_t fails;     /* failures through us in a row */
    uint32_t oks;       /* successes through us in a row while rechecking */
    uint64_t since_ms;  /* when the current state began */
};

/* The rule:
 *  - only probes through us count; others change nothing;
 *  - SERVING: a failure (refused or timeout) through us while the node's
 *    own health says the service is fine adds one; a success, or a
 *    failure the node's health already explains (node_healthy false: the
 *    health path withdraws, not the probe), resets the count; `fall` in a
 *    row => WITHDRAWN, verdict WITHDRAW;
 *  - WITHDRAWN: results ignored (no traffic reaches us); probe_fsm_tick()
 *    after `hold` => RECHECKING, verdict REANNOUNCE;
 *  - RECHECKING: `rise` successes through us in a row => SERVING, verdict
 *    RESTORED; a failure through us with the node healthy => WITHDRAWN
 *    again (a new `hold`), verdict WITHDRAW. */
void probe_fsm_init(struct probe_fsm *f, uint64_t now_ms);
enum probe_verdict probe_fsm_result(struct probe_fsm *f, const struct probe_conf *c, bool ok, bool through_us,
                                    bool node_healthy, uint64_t now_ms);
enum probe_verdict probe_fsm_tick(struct probe_fsm *f, const struct probe_conf *c, uint64_t now_ms);
const char *probe_fsm_state_name(enum probe_fsm_state s);
const char *probe_verdict_name(enum probe_verdict v);

/* ---- 2. one probe ----------------------------------------------------- */

enum probe_outcome {
    PROBE_OK,      /* SYN-ACK */
    PROBE_REFUSED, /* RST */
    PROBE_TIMEOUT, /* nothing within timeout_ms */
    PROBE_ERROR,   /* not sent: no route, next hop not resolved yet, socket error */
};
const char *probe_outcome_name(enum probe_outcome o);

enum probe_path {
    PROBE_PATH_US,        /* the predicate says this node forwarded it */
    PROBE_PATH_ELSEWHERE, /* another node did (or nobody) */
    PROBE_PATH_UNKNOWN,   /* the predicate could not tell, or not sent */
};
const char *probe_path_name(enum probe_path p);

struct probe_flow {
    struct probe_tuple tuple; /* src = probe source, dst = VIP */
    uint64_t sent_ms;         /* ev_now() when the SYN left */
};

/* "Did this node forward this flow?": 1 yes, 0 no, -1 cannot tell. */
typedef int (*probe_through_fn)(void *ctx, const struct probe_flow *flow);

struct probe_result {
    uint64_t id; /* probe_start()'s */
    enum probe_outcome outcome;
    enum probe_path path;
    struct probe_flow flow;
    uint32_t rtt_us;  /* SYN to answer, for OK and REFUSED */
    char detail[128]; /* the reason of a PROBE_ERROR */
};

typedef void (*probe_done_fn)(void *arg, const struct probe_result *r);

struct probe_engine;

/* Opens nothing yet: the packet socket of a family is opened at its first
 * probe (needs CAP_NET_RAW). `through` may be NULL (every flow is then
 * PROBE_PATH_UNKNOWN). The conf is copied. */
struct probe_engine *probe_engine_new(struct ev_loop *loop, const struct probe_conf *conf, probe_through_fn through,
                                      void *through_ctx);
/* In-flight probes are dropped without their callbacks (each sent one
 * gets its RST, see probe_cancel()). Not from inside a callback. */
void probe_engine_free(struct probe_engine *e);

/* Probe vip (sockaddr_in/in6 with the port) once, from source port
 * `sport` (0 = a random free port of the range). The callback runs later,
 * from the loop, exactly once (for errors too), unless the engine is freed
 * first or probe_cancel() is called. Returns a probe id > 0, or 0 if it
 * could not even be queued (bad arguments; out of memory). */
uint64_t probe_start(struct probe_engine *e, const struct sockaddr *vip, uint16_t sport, probe_done_fn cb, void *arg);
/* Drop a probe without its callback. If its SYN left, a RST follows it
 * (sequence number ISN + 1), so the server keeps no half-open connection
 * whether or not its SYN-ACK is still on the way; a timed-out probe gets
 * the same RST. */
void probe_cancel(struct probe_engine *e, uint64_t id);

/* ---- 3. a VIP probed every interval ---------------------------------- */

#define PROBE_OUTCOMES 4 /* enum probe_outcome's values */
#define PROBE_PATHS 3    /* enum probe_path's values */

/* A target's counters; ended[][] is sluice_ha_probe_total{result,path}
 * (docs/ha.md, "Probing VIPs"). An error is always of path "unknown". */
struct probe_stats {
    uint64_t sent;                               /* probes started */
    uint64_t ended[PROBE_OUTCOMES][PROBE_PATHS]; /* by outcome, then path */
    uint64_t withdrawals;                        /* WITHDRAW verdicts */
    uint32_t last_rtt_us;                        /* of the last OK through us */
    enum probe_outcome last_outcome;
    enum probe_path last_path;
};

typedef void (*probe_verdict_fn)(void *arg, enum probe_verdict v);
/* The node's own view of the service (the vip_board's healthy reals,
 * the data path up): true when it looks fine. */
typedef bool (*probe_healthy_fn)(void *arg);

struct probe_target;

/* Probe `vip` (no port; sockaddr_in/in6) on each of ports[0..n_ports)
 * every interval, starting now. Each round sends one probe per port: from
 * a remembered source port that landed here last time if there is one
 * (rotating among them), else from a fresh random port; while fewer than
 * `learn_ports` are known, one more probe from a fresh port explores. A
 * remembered port that lands elsewhere is forgotten (the routers'
 * next-hop set changed). No probes while WITHDRAWN. */
struct probe_target *probe_target_new(struct probe_engine *e, const struct sockaddr *vip, const uint16_t *ports,
                                      size_t n_ports, probe_healthy_fn healthy, probe_verdict_fn verdict, void *arg);
void probe_target_free(struct probe_target *t);
/* Stop starting rounds (probes out end as usual and are counted); a
 * stopped target stays stopped. For a VIP this node no longer serves, and
 * for tests that need every probe counted. */
void probe_target_stop(struct probe_target *t);
/* Probes started and not ended yet. */
size_t probe_target_inflight(const struct probe_target *t);
const struct probe_stats *probe_target_stats(const struct probe_target *t);
enum probe_fsm_state probe_target_state(const struct probe_target *t);
/* The remembered source ports (up to learn_ports); returns their number. */
size_t probe_target_learned(const struct probe_target *t, uint16_t *out, size_t cap);

/* net.ipv4.conf.{all,IF}.accept_local for the interface ifindex (its
 * name into ifname): whether the kernel accepts a packet whose source is
 * one of its own addresses arriving there (the kernel ORs the two).
 * 1 or 0; -1 if it cannot be read. */
int probe_accept_local(int ifindex, char ifname[IF_NAMESIZE]);

#endif
