/* The BIRD process behind the HA tier: its configuration file written,
 * and BIRD started (mode managed) or told to reload it.
 *
 * Mode managed: Sluice writes the whole bird.conf (ha.bird.config_file).
 * If a BIRD answers on ha.bird.control_socket (left running by an earlier
 * daemon: BIRD outlives the daemon, as the pinned XDP forwarder does, so a
 * restart does not flap BGP or BFD), Sluice reconfigures it with the new
 * file; else it starts `bird -c FILE -s SOCKET -P PIDFILE` and waits for
 * the socket to answer.
 *
 * BIRD is left to daemonize itself (no -f and double fork of ours): BIRD
 * reads and checks the whole file before it forks, so a bad file is the
 * exit status of the process we started, with BIRD's own message on its
 * stderr, which we read from a pipe and report; the daemon it leaves is
 * reparented to init and is not our child, so the Sluice daemon has no
 * child to reap and nothing ties BIRD's life to ours. The child closes
 * every descriptor but 0-2 before exec: the tun device's descriptor must
 * never leak into BIRD, or the announced addresses would outlive the
 * daemon.
 *
 * Mode external: Sluice writes the include file and runs `configure` (of
 * the operator's own bird.conf, which includes it) on the operator's
 * control socket; it never starts BIRD.
 *
 * Files are written atomically (a temporary file in the same directory,
 * fsync, rename), so BIRD never reads half a file.
 */
#ifndef SLUICE_HA_BIRD_PROC_H
#define SLUICE_HA_BIRD_PROC_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ha/bird_conf.h"
#include "ha/ha_conf.h"

#define BIRD_PROC_START_TIMEOUT_MS 10000
#define BIRD_PROC_DEBIAN_PACKAGE "bird2"

/* ha.router_id, or the IPv4 address this host would send from toward the
 * first IPv4 neighbor (a connected UDP socket's local address; nothing is
 * sent). Returns 0, or -1 with err when there is none (say: set
 * ha.router_id). */
int bird_proc_router_id(const struct cfg_ha *h, struct in_addr *out, char *err, size_t errlen);

/* The BIRD configuration text for h as bird_proc_apply would write it
 * (router id computed when not given). Returns a malloc'd string, or NULL
 * with err. */
char *bird_proc_render(const struct cfg_ha *h, const char *source, char *err, size_t errlen);

/* The same with ha.preempt false's priorities per neighbor and VIP
 * (bird_conf_write_export). */
char *bird_proc_render_export(const struct cfg_ha *h, const char *source, const struct bird_export_priority *ov,
                              size_t n_ov, char *err, size_t errlen);

/* Write len bytes to path atomically (mode 0644); the directory is
 * created (0755) when only its last level is missing. 0, or -1 with err. */
int bird_proc_write_file(const char *path, const char *text, size_t len, char *err, size_t errlen);

/* Render and write the file, then make BIRD run it: see the top of this
 * file. 0, or -1 with err. */
int bird_proc_apply(const struct cfg_ha *h, const char *source, char *err, size_t errlen);

/* The same for a text rendered already (bird_proc_render_export). */
int bird_proc_apply_text(const struct cfg_ha *h, const char *text, char *err, size_t errlen);

/* Mode managed: is the BIRD of h's pid file alive? (false when the file
 * is missing, unreadable, or names no live process.) A BIRD that is alive
 * but slow to answer its control socket must not be started again: the
 * second one would refuse the socket, or worse, take it. */
bool bird_proc_alive(const struct cfg_ha *h);

/* Mode managed: start BIRD on the written file and wait (at most
 * timeout_ms) for its control socket to answer. 0, or -1 with err (the
 * binary missing, with the Debian package to install; BIRD's own message
 * when it refused the file). */
int bird_proc_start(const struct cfg_ha *h, uint32_t timeout_ms, char *err, size_t errlen);

#endif
