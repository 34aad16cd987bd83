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
 *              BGP and BFD session changes are logged.
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
