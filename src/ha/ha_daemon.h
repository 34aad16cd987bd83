/* The HA companion: the HA tier's work inside `sluice l4` and `sluice
 * proxy` (core/module.h, attach), when their file has an ha: section.
 *
 *   attach     open the announce devices (announce.h: ha.interface for
 *              this node's addresses, ha.interface + "-s" for stand-ins),
 *              write BIRD's configuration and start BIRD or adopt the
 *              one an earlier daemon left (bird_proc.h), subscribe to the
 *              daemon's VIP board, mount /api/ha and the sluice_ha_*
 *              families;
 *   board      after every change, the announced set is made equal to the
 *              board's announce set (vip_board_verdicts with ha.min_healthy),
 *              minus what ha.announce does not list, minus what a drain
 *              takes out (service VIPs and stand-ins; this node's own
 *              FullNAT local addresses stay, so the replies of the flows
 *              it still holds come back to it);
 *   stopping   before the tier begins to stop: both devices closed, every
 *              route withdrawn at once, logged;
 *   reload     BIRD's configuration written again and BIRD reconfigured
 *              when it changed; a new ha.interface opens new devices;
 *   poll       every second, BIRD's protocols and BFD sessions over its
 *              control socket (birdc.h), for the admin API and metrics;
 *              BGP and BFD session changes are logged; with ha.preempt
 *              false, what each router sends back (ha_preempt.c).
 *
 * The admin routes and metric families are in ha_admin.c.
 */
#ifndef SLUICE_HA_HA_DAEMON_H
#define SLUICE_HA_HA_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/daemon.h"
#include "core/vip_board.h"
#include "ha/announce.h"
#include "ha/bird_conf.h"
#include "ha/birdc.h"
#include "ha/ha_conf.h"
#include "ha/probe.h"
#include "lib/strbuf.h"

#include <jansson.h>

#define HA_POLL_MS 1000
#define BIRD_RESTART_GAP_MS 5000   /* between two tries to start a dead managed BIRD */

/* Why an address on the board is not announced (and the label of
 * sluice_ha_withdrawals_total). */
enum ha_withdraw_reason {
    HA_WD_DRAINED,
    HA_WD_NOT_SERVING,
    HA_WD_TOO_FEW_HEALTHY,
    HA_WD_NOT_LISTED,        /* ha.announce does not list it */
    HA_WD_STOPPING,
    HA_WD_PROBE,             /* probes through this node fail while its health checks pass (ha_probes.c) */
    HA_WD_COUNT
};

/* An address on one of the devices. */
struct ha_announced {
    struct vip_ip ip;
    bool standin;            /* on the stand-in device */
};

/* ha.preempt false: a VIP this node holds behind a worse zone toward one
 * neighbor (ha_preempt.c). */
struct ha_hold {
    struct vip_ip ip;
    uint32_t priority;       /* what it goes out with: one behind the carrier */
    uint32_t zone;           /* the zone priority of the route the router uses */
    uint32_t carrier;        /* the priority that route goes out with (its prepends) */
    unsigned clear;          /* polls in a row that saw no worse zone carry it */
};

/* One BGP neighbor as BIRD last said. */
struct ha_session {
    char neighbor[INET6_ADDRSTRLEN];
    char protocol[BIRD_NAME_MAX];
    char state[32];          /* BGP: "Established", "Active", ...; "unknown" while BIRD does not answer */
    char since[40];
    bool up;                 /* the BGP protocol is up (Established) */
    bool has_bfd;
    char bfd_state[16];      /* "Up", "Down", "Init", "AdminDown"; "" without a session */
    bool bfd_up;
    /* ha.preempt false (ha_preempt.c) */
    char up_since[40];       /* `since` of the Established session the polls below saw */
    unsigned polls_up;       /* polls in a row that saw it Established since up_since */
    bool settled;            /* its routes were read: VIPs go out with their own or held priority */
    struct ha_hold *holds;
    size_t n_holds, cap_holds;
    char preempt_error[256]; /* reading what the router sent failed */
};

struct ha_companion {
    struct daemon *d;
    const struct sl_config *cfg;   /* the tier's, as of its last reload */
    const struct cfg_ha *ha;
    char node[256];
    struct ha_announcer own, standin;
    struct ha_announced *ann;      /* what is on the devices now */
    size_t n_ann, cap_ann;
    bool drained;
    bool stopped;                  /* stopping() came: nothing is announced any more */
    uint64_t withdrawals[HA_WD_COUNT];
    char *bird_text;               /* BIRD's configuration as last applied */
    struct ev_timer poll;
    struct birdc bc;
    bool bc_open;
    bool bird_up;                  /* its control socket answered the last poll */
    char bird_version[64];
    char bird_error[256];          /* why the last poll failed */
    uint32_t bird_restarts;        /* managed BIRD found dead and started again */
    uint64_t bird_restart_tried_ms;/* ev clock of the last try (BIRD_RESTART_GAP_MS apart) */
    struct ha_session sessions[HA_MAX_NEIGHBORS];
    size_t n_sessions;
    /* ha.probe (ha_probes.c): one target per announced VIP and TCP port. */
    struct probe_engine *probe_engine;
    struct ha_probe_vip **probes;
    size_t n_probes;
    char probe_warning[256];       /* e.g. accept_local is 0 on a proxy's uplink */
    uint64_t preempt_forced_until; /* ha_preempt_force: no new hold before this (ev_clock_ms) */
};

/* The module's attach hook (ha_module.c). */
int ha_attach(struct daemon *d, const struct sl_config *cfg, char *err, size_t errlen);

/* Drain (true) or undrain: reconciles at once. */
void ha_set_drained(struct ha_companion *h, bool drained);

/* "drained", "not_serving", "too_few_healthy", "not_listed", "stopping". */
const char *ha_withdraw_reason_label(enum ha_withdraw_reason r);

/* Why the board's verdict v is not announced (HA_WD_COUNT: it is). */
enum ha_withdraw_reason ha_verdict_reason(const struct ha_companion *h, const struct vip_verdict *v);

/* Make the devices hold exactly what the board says may be announced
 * (and the probe targets follow). */
void ha_reconcile(struct ha_companion *h);

/* ha_admin.c: /api/ha routes and the sluice_ha_* families. */
int ha_admin_mount(struct ha_companion *h);

/* Write BIRD's configuration (with ha.preempt false's priorities) and
 * make BIRD run it when the text changed. 0, or -1 with err. */
int ha_apply_bird(struct ha_companion *h, char *err, size_t errlen);

/* ---- ha_preempt.c: ha.preempt false ----
 *
 * Each BGP channel keeps what its router sends in an import table
 * (bird_conf.h); every poll reads, per neighbor, the host routes with the
 * group's ASN in their path: the router's best path to each VIP of the
 * group that is not this node's own. Per neighbor and service VIP (this
 * node's FullNAT local addresses and stand-ins always go out as usual):
 *
 *   starting  the session is new (not yet seen Established by
 *             HA_PREEMPT_SETTLE_POLLS polls in a row, or `since` changed):
 *             BIRD_STARTING_PRIORITY, behind every node that announces;
 *   held      the router's route is a worse zone's (zone priority, from
 *             the (asn, 3000 + N) community, or the prepends without it,
 *             above this node's): one behind that route's priority, at
 *             most BIRD_HELD_PRIORITY_MAX. Entered at once; left after
 *             HA_PREEMPT_RELEASE_POLLS polls in a row without such a route
 *             (the router stops sending it when this node's route becomes
 *             its best: the worse zone withdrew);
 *   own       else: ha.priority.
 *
 * A change rewrites BIRD's configuration (the neighbor's export filter:
 * BIRD re-exports, the session stays up). */
#define HA_PREEMPT_SETTLE_POLLS 2
#define HA_PREEMPT_RELEASE_POLLS 2
#define HA_PREEMPT_FORCE_MS 5000

enum ha_preempt_state { HA_PRIO_OWN, HA_PRIO_STARTING, HA_PRIO_HELD, HA_PRIO_STANDIN };

/* The route r (from the import table) as a carrier of a group VIP: its
 * priority (prepends: occurrences of asn in its path, minus the one BGP
 * adds) and its zone priority (the (asn, 3000 + N) community, else the
 * same as its priority). False when asn is not in its path. Pure. */
bool ha_preempt_carrier(const struct birdc_route *r, uint32_t asn, uint32_t *priority, uint32_t *zone);

/* What the neighbor ni sent this poll: update its holds. now: ev_clock_ms.
 * Returns true when a hold came or went or changed priority. */
bool ha_preempt_observe(struct ha_companion *h, size_t ni, const struct birdc_route *r, size_t n, uint64_t now);

/* After update_bgp: settle sessions, read the import tables (bc open),
 * observe them; rewrite BIRD's configuration when something changed. */
void ha_preempt_poll(struct ha_companion *h);

/* The priority service VIP ip goes to neighbor ni with, and why. */
uint32_t ha_preempt_priority(const struct ha_companion *h, size_t ni, const struct vip_ip *ip,
                             enum ha_preempt_state *state, const struct ha_hold **hold);

/* The exceptions for bird_conf_write_export: a malloc'd array (NULL with
 * *n 0 when none, or with ha.preempt true). -1 out of memory. */
int ha_preempt_overrides(const struct ha_companion *h, struct bird_export_priority **out, size_t *n);

/* POST /api/ha/preempt: drop every hold, treat every established session
 * as settled, and enter no hold for HA_PREEMPT_FORCE_MS: this node
 * announces with its own priority now. */
void ha_preempt_force(struct ha_companion *h);

/* Free a session's holds. */
void ha_preempt_clear(struct ha_session *s);

/* ---- ha_probes.c: ha.probe, the companion's side of probe.h ----
 *
 * With ha.probe.enabled, every address this node announces as its own
 * with a TCP service on the board gets a probe target per port
 * (probe_target_new with that one port). The attribution predicate is the
 * board's (vip_board_forwarded: the serving tier's "did this node forward
 * flow F"), the node's own health the board's verdict. A target's
 * WITHDRAW takes the address off the device (reason "probe",
 * sluice_ha_withdrawals_total{reason="probe"}) until its REANNOUNCE,
 * `hold` later. Targets follow the announced set after every reconcile;
 * a reload restarts them all with the new settings. */
struct ha_probe_vip;
/* Start the engine (when enabled). Returns 0, or -1 out of memory. */
int ha_probes_start(struct ha_companion *h);
/* Free every target and the engine. */
void ha_probes_stop(struct ha_companion *h);
/* Create and free targets after a reconcile: v[0..n) are its verdicts. */
void ha_probes_sync(struct ha_companion *h, const struct vip_verdict *v, size_t n);
/* The probe holds ip withdrawn (a target of it is in state withdrawn). */
bool ha_probe_withdrawn(const struct ha_companion *h, const struct vip_ip *ip);
/* /api/ha's "probe" of address ip: an array per port (NULL: none). */
json_t *ha_probes_json(const struct ha_companion *h, const struct vip_ip *ip);
/* The sluice_ha_probe_* families (listed, without samples, when off). */
void ha_probes_metrics(const struct ha_companion *h, struct strbuf *out);

#endif
