/* The skeleton every Sluice daemon shares (`sluice proxy`'s master,
 * `sluice l4`, the tiers to come): logging as the file says, an event
 * loop, signals read from a signalfd on that loop, the admin API server,
 * the pid file, and what happens on SIGHUP (reload) and SIGTERM/SIGINT
 * (stop). Written once here; a tier supplies what is its own through
 * struct daemon_ops and calls the steps in the order it needs (sluice l4,
 * say, catches signals only once its maps are filled).
 *
 *   daemon_load_config   load and validate, the named files opened as the
 *                        daemon will (nothing started yet)
 *   daemon_init          log.level/log.file for `role`, raise the
 *                        descriptor limit, create the loop
 *   daemon_catch_signals block SIGHUP, SIGTERM, SIGINT, SIGUSR1 and the
 *                        tier's own, read them on the loop; SIGPIPE ignored
 *                        (SIGUSR1: log.file reopened, then ops->reopen)
 *   daemon_admin_start   serve d->site on admin.listen (unless "off")
 *   daemon_admin_follow  on reload: move the API to the new admin.listen
 *   daemon_write_pid_file
 *   daemon_run           the loop, until daemon_stopped()
 *   daemon_fini          stop the API, remove the pid file, free the loop
 *
 * The admin site is the daemon's: the module's admin hook mounts the
 * tier's routes and metric families on d->site, and the tier keeps
 * d->site.status current.
 *
 * Companions: daemon_init also calls the `attach` hook of every other
 * module (core/module.h). A module with work to do in this daemon (the HA
 * tier announcing its VIPs) registers a companion with
 * daemon_add_companion(): it hears of reloads (the tier calls
 * daemon_reloaded() once it applied one), of a stop before the tier does
 * (so it can withdraw what it announces before a graceful stop or drain
 * begins) and is finished by daemon_fini(). The tier tells companions
 * what it serves through d->vips (core/vip_board.h).
 */
#ifndef SLUICE_CORE_DAEMON_H
#define SLUICE_CORE_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "lib/addr.h"
#include "core/admin.h"
#include "core/config.h"
#include "core/evloop.h"
#include "core/module.h"
#include "core/vip_board.h"

#define DAEMON_MAX_SIGNALS 8
#define DAEMON_MAX_COMPANIONS 4

struct daemon_ops {
    /* SIGHUP: read the file again and apply it. NULL: ignored. */
    void (*reload)(void *arg);
    /* SIGTERM, SIGINT or one of spec->stop_signals: begin to stop, and
     * call daemon_stopped() once done (at once, or when the last worker
     * has gone). NULL: log "signal SIGTERM: stopping" and
     * daemon_stopped() at once. */
    void (*stop)(void *arg, int sig);
    /* One of spec->other_signals (SIGCHLD for a master). */
    void (*signal)(void *arg, int sig);
    /* SIGUSR1, after the core reopened log.file: reopen the tier's own
     * files (the proxy: access logs, and its workers'). May be NULL. */
    void (*reopen)(void *arg);
    /* GET /ready: whether the tier serves (why not in why). NULL: ready
     * once started. Either way not ready once a stop signal arrived. */
    bool (*ready)(void *arg, char *why, size_t whylen);
};

struct daemon_spec {
    const char *role;                 /* in every log line: "master", "l4" */
    const struct sl_module *module;   /* its admin routes and families are mounted by daemon_init; may be NULL */
    const int *stop_signals;          /* besides SIGTERM and SIGINT, 0-terminated; may be NULL */
    const int *other_signals;         /* handled by ops->signal, 0-terminated; may be NULL */
    const struct daemon_ops *ops;
    void *arg;
    bool honours_user;                /* the tier applies `user`/`group` (the proxy's workers);
                                         otherwise daemon_init warns that it is ignored */
};

/* What a companion (another module's work inside this daemon) hears. */
struct daemon_companion_ops {
    const char *name;                 /* "ha": in log lines */
    /* The tier applied a reload; cfg is the configuration it runs now.
     * May be NULL. */
    void (*reloaded)(void *arg, const struct sl_config *cfg);
    /* A stop signal arrived: called once, before the tier's stop hook. May
     * be NULL. */
    void (*stopping)(void *arg);
    /* Release everything (daemon_fini, while the loop still exists). May
     * be NULL. */
    void (*fini)(void *arg);
};

struct daemon_companion {
    const struct daemon_companion_ops *ops;
    void *arg;
};

struct daemon {
    struct daemon_spec spec;
    struct ev_loop *loop;
    struct admin_site site;           /* what the admin API serves */
    struct admin_server *admin;       /* NULL while admin.listen is off */
    struct sl_addr admin_addr;        /* where it listens */
    struct admin_options admin_opts;  /* set by the tier between daemon_init and daemon_admin_start
                                         (zero: the defaults); daemon_admin_follow applies it again */
    const char *pid_file;             /* written by us: removed by daemon_fini */
    int sig_fd;
    struct ev_io sig_io;
    struct vip_board vips;            /* what this daemon serves, for its companions */
    struct daemon_companion companions[DAEMON_MAX_COMPANIONS];
    size_t n_companions;
    bool stopping;                    /* a stop signal arrived (companions told) */
    bool serving;                     /* daemon_run began */
};

/* config_load() and config_check_files(cfg, files): NULL with every
 * problem in errs. */
struct sl_config *daemon_load_config(const char *path, unsigned files, struct config_errors *errs);

/* daemon_load_config at start, before logging is set up: the problems go
 * to stderr, one a line ("FILE:LINE: key.path: reason"). */
struct sl_config *daemon_load_config_or_say(const char *path, unsigned files);

/* Logging as cfg says, for `role`; the descriptor limit raised to its
 * hard limit (many clients, many backends); the event loop; the VIP
 * board; the module's admin routes and metric families mounted on d->site
 * (spec->arg is handed to module->admin); then every other module's
 * attach hook (companions). Returns 0, or -1 with a reason in err (call
 * daemon_fini then, as after any failed start). */
int daemon_init(struct daemon *d, const struct daemon_spec *spec, const struct sl_config *cfg, char *err,
                size_t errlen);

/* From now on the signals are read on the loop. Returns 0 or -1 (err). */
int daemon_catch_signals(struct daemon *d, char *err, size_t errlen);

/* Serve d->site on cfg's admin.listen; nothing when it is "off". Returns
 * 0, or -1 with the reason in err. */
int daemon_admin_start(struct daemon *d, const struct sl_config *cfg, char *err, size_t errlen);

/* On reload: when admin.listen changed, bind the new address before
 * letting go of the old one, so a bad address leaves the API where it was
 * (logged); otherwise d->admin_opts is applied to the running server. */
void daemon_admin_follow(struct daemon *d, const struct sl_config *cfg);

/* Write our pid to path (removed again by daemon_fini). Returns 0, or -1
 * with errno. */
int daemon_write_pid_file(struct daemon *d, const char *path);

/* Register a companion (from a module's attach hook). Returns 0, or -1
 * when DAEMON_MAX_COMPANIONS are registered. */
int daemon_add_companion(struct daemon *d, const struct daemon_companion_ops *ops, void *arg);

/* The tier applied a reload of cfg: tell the companions. */
void daemon_reloaded(struct daemon *d, const struct sl_config *cfg);

/* Tell the companions the daemon stops (once; later calls do nothing).
 * The signal path calls it before the tier's stop hook; a tier that stops
 * for reasons of its own calls it too. */
void daemon_stopping(struct daemon *d);

/* How a reload went, for the sluice_config_* families: a success counts
 * in site.status.reloads and stamps the time, a failure counts in
 * reload_failures. Called by daemon_reload_note; a tier whose reloads do
 * not come through SIGHUP (an API) calls it too. */
void daemon_reload_outcome(struct daemon *d, bool ok);
/* ops->reload returned: it succeeded if it counted a reload
 * (site.status.reloads grew past reloads_before). */
void daemon_reload_note(struct daemon *d, uint32_t reloads_before);

/* Run the loop until daemon_stopped(). Returns 0, or -1 if the loop failed. */
int daemon_run(struct daemon *d);
void daemon_stopped(struct daemon *d);

/* Finish the companions, stop the admin API, remove the pid file, close
 * the signalfd, free the loop. Safe after a failed or partial start. */
void daemon_fini(struct daemon *d);

/* The command line of a daemon that takes a file and nothing else:
 * `NAME -c FILE [--pid-file PATH] [-h]` (name: "sluice agent"). Returns
 * -1 to go on with *path (and *pid_file, NULL when not given), else the
 * exit status: 0 after --help (usage on stdout), 2 after a mistake (said
 * on stderr, then the usage). */
int daemon_parse_args(const char *name, int argc, char **argv, void (*usage)(FILE *out), const char **path,
                      const char **pid_file);

/* The options daemon_parse_args takes, for the tier's usage text (a
 * string literal: it joins the text around it). */
#define DAEMON_USAGE_OPTIONS                                                     \
    "Options:\n"                                                                \
    "  -c, --config FILE   configuration file (YAML), required\n"               \
    "      --pid-file PATH write the process id there (removed at exit)\n"      \
    "  -h, --help          show this help\n"

#endif
