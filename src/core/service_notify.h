/* The service manager's readiness protocol (systemd's sd_notify): what a
 * unit with Type=notify waits for.
 *
 *   READY=1                    the daemon serves (sent by daemon_run, once
 *                              everything the tier set up is in place)
 *   RELOADING=1 MONOTONIC_USEC a SIGHUP reload begins ...
 *   READY=1                    ... and is over (applied or refused)
 *   STOPPING=1                 a stop signal arrived
 *   STATUS=...                 a line for `systemctl status`
 *
 * Every call is a no-op when NOTIFY_SOCKET is unset (not under systemd,
 * or a unit of another Type), and in any process but the one that called
 * service_notify_init(): the proxy's workers are forked from the master
 * and inherit NOTIFY_SOCKET, but the master alone speaks for the service
 * (systemd's NotifyAccess=main would drop the workers' messages anyway).
 */
#ifndef SLUICE_CORE_SERVICE_NOTIFY_H
#define SLUICE_CORE_SERVICE_NOTIFY_H

/* The calling process is the service's main process (daemon_init). */
void service_notify_init(void);

/* READY=1, with STATUS=status when status is not NULL. */
void service_notify_ready(const char *status);

/* RELOADING=1 and MONOTONIC_USEC=now (CLOCK_MONOTONIC, as systemd wants
 * it to tell this reload from an earlier one). */
void service_notify_reloading(void);

/* STOPPING=1. */
void service_notify_stopping(void);

/* STATUS=..., printf-style; one line (newlines become spaces). */
void service_notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
