/* Active health checks of a registry's persistent instances.
 *
 * Each persistent instance of a service whose settings have a check
 * (health: tcp or http, interval, timeout, rise, fall) is a target of one
 * core/health.h set; a service without one ("type: none") gets targets
 * too, which keep its instances UP (an instance left DOWN by checks that
 * were turned off since comes back). Ephemeral instances are judged by
 * their heartbeats, not here.
 *
 * The daemon calls reg_health_sync(service) for every service a merge
 * window saw change: its targets are brought in line with its instances
 * (new ones added, gone ones removed, one whose address or check changed
 * restarted from its current health). A result is applied to the model
 * (reg_instance_set_health, with the reason: "http check failed: ...")
 * when it differs from the instance's health; results are matched to
 * instances by service name, id and address, never by pointer, so a
 * result that arrives after its instance went is dropped.
 */
#ifndef SLUICE_REGISTRY_REG_HEALTH_H
#define SLUICE_REGISTRY_REG_HEALTH_H

#include <stdbool.h>
#include <stddef.h>

#include "core/evloop.h"
#include "registry/reg_model.h"

struct reg_checker;

/* Told after a health change it made (the daemon writes it to the store). */
typedef void reg_health_changed_fn(void *arg, struct reg_instance *inst);

struct reg_checker *reg_health_new(struct ev_loop *loop, struct reg_model *m, reg_health_changed_fn *changed,
                                  void *arg);
void reg_health_free(struct reg_checker *h);

/* Bring the targets of service `name` in line with the model (a service
 * that no longer exists loses them all). */
void reg_health_sync(struct reg_checker *h, const char *name);

/* Cluster mode: only instances duty(arg, service, id) says are this
 * node's are checked (reg_cluster_has_duty); the others are left to the
 * node that has them. NULL (the default): every persistent instance.
 * After the duty moves, sync every service. */
typedef bool reg_health_duty_fn(void *arg, const char *service, const char *id);
void reg_health_set_duty(struct reg_checker *h, reg_health_duty_fn *duty, void *arg);

/* Targets checked now. */
size_t reg_health_targets(const struct reg_checker *h);

#endif
