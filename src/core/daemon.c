/* See daemon.h. */
#include "core/daemon.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/log_sink.h"
#include "core/privs.h"
#include "core/service_notify.h"

struct sl_config *daemon_load_config(const char *path, unsigned files, struct config_errors *errs)
{
    struct sl_config *cfg = config_load(path, errs);
    /* Files the configuration names must open now: later, log_setup()
     * would fall back to stderr and a worker would run without its
     * access log. */
    if (cfg && config_check_files(cfg, files, errs)) {
        config_free(cfg);
        cfg = NULL;
    }
    return cfg;
}

struct sl_config *daemon_load_config_or_say(const char *path, unsigned files)
{
    struct config_errors errs = { 0 };
    struct sl_config *cfg = daemon_load_config(path, files, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.lines[i]);
    config_errors_free(&errs);
    return cfg;
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Every module but the daemon's own may have work here (core/module.h). */
static int attach_companions(struct daemon *d, const struct sl_config *cfg, char *err, size_t errlen)
{
    for (const struct sl_module *const *m = module_list(); *m; m++) {
        if (*m == d->spec.module || !(*m)->attach)
            continue;
        char why[256] = "";
        if ((*m)->attach(d, cfg, why, sizeof why) < 0) {
            snprintf(err, errlen, "%s: %s", (*m)->name, why[0] ? why : "cannot start");
            return -1;
        }
    }
    return 0;
}

static uint64_t unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* GET /ready: starting (the loop has not run yet) and stopping are not. */
static bool daemon_ready(void *arg, char *why, size_t whylen)
{
    struct daemon *d = arg;
    if (d->stopping) {
        snprintf(why, whylen, "stopping");
        return false;
    }
    if (!d->serving) {
        snprintf(why, whylen, "starting");
        return false;
    }
    const struct daemon_ops *ops = d->spec.ops;
    return !ops || !ops->ready || ops->ready(d->spec.arg, why, whylen);
}

void daemon_reload_outcome(struct daemon *d, bool ok)
{
    struct admin_status *st = &d->site.status;
    st->last_reload_failed = !ok;
    if (ok)
        st->last_reload_success_unix_ms = unix_ms();
    else
        st->reload_failures++;
}

void daemon_reload_note(struct daemon *d, uint32_t reloads_before)
{
    bool ok = d->site.status.reloads != reloads_before;
    daemon_reload_outcome(d, ok);
}

int daemon_init(struct daemon *d, const struct daemon_spec *spec, const struct sl_config *cfg, char *err,
                size_t errlen)
{
    memset(d, 0, sizeof *d);
    d->spec = *spec;
    d->sig_fd = -1;
    /* Before any worker is forked: they count their lost records there too. */
    log_sink_share_counters();
    d->site.ready = daemon_ready;
    d->site.ready_arg = d;

    service_notify_init();
    log_setup(cfg->log_level, cfg->log_file, spec->role);
    if (cfg->run_as.set && !spec->honours_user)
        log_warn("%s:%d: user: ignored by this daemon (%s): only sluice proxy's workers drop to it; this one "
                 "runs as uid %u (use the service manager's User= to change that)",
                 cfg->path, cfg->user_line, spec->role, (unsigned)geteuid());
    raise_fd_limit();
    d->loop = ev_loop_new();
    if (!d->loop) {
        snprintf(err, errlen, "cannot create the event loop: %s", strerror(errno));
        return -1;
    }
    vip_board_init(&d->vips, d->loop);
    if (spec->module && spec->module->admin && spec->module->admin(&d->site, spec->arg) < 0) {
        snprintf(err, errlen, "%s: its admin routes do not fit the admin site", spec->module->name);
        return -1;
    }
    return attach_companions(d, cfg, err, errlen);
}

int daemon_add_companion(struct daemon *d, const struct daemon_companion_ops *ops, void *arg)
{
    if (d->n_companions == DAEMON_MAX_COMPANIONS)
        return -1;
    d->companions[d->n_companions++] = (struct daemon_companion){ ops, arg };
    return 0;
}

void daemon_reloaded(struct daemon *d, const struct sl_config *cfg)
{
    for (size_t i = 0; i < d->n_companions; i++)
        if (d->companions[i].ops->reloaded)
            d->companions[i].ops->reloaded(d->companions[i].arg, cfg);
}

void daemon_stopping(struct daemon *d)
{
    if (d->stopping)
        return;
    d->stopping = true;
    service_notify_stopping();
    for (size_t i = 0; i < d->n_companions; i++)
        if (d->companions[i].ops->stopping)
            d->companions[i].ops->stopping(d->companions[i].arg);
}

static void fini_companions(struct daemon *d)
{
    /* Last registered, first finished (as a stack of resources). */
    while (d->n_companions) {
        struct daemon_companion *c = &d->companions[--d->n_companions];
        if (c->ops->fini)
            c->ops->fini(c->arg);
    }
}

static bool listed(const int *sigs, int sig)
{
    for (size_t i = 0; sigs && sigs[i]; i++)
        if (sigs[i] == sig)
            return true;
    return false;
}

/* The daemon's name for STATUS= lines: its module's ("proxy"), or its role. */
static const char *service_name(const struct daemon *d)
{
    return d->spec.module ? d->spec.module->name : d->spec.role;
}

/* SIGHUP: the tier's reload between RELOADING=1 and READY=1, so that
 * `systemctl reload` returns once the reload is over, applied or not. A
 * tier counts the reloads it applied (site.status.reloads). */
static void reload_for_service_manager(struct daemon *d)
{
    uint32_t before = d->site.status.reloads;
    service_notify_reloading();
    d->spec.ops->reload(d->spec.arg);
    daemon_reload_note(d, before);
    if (d->stopping)
        return;
    char status[160];
    if (d->site.status.reloads != before)
        snprintf(status, sizeof status, "sluice %s serving; reload applied (%u since start)", service_name(d),
                 d->site.status.reloads);
    else
        snprintf(status, sizeof status, "sluice %s serving; the last reload was not applied (see the log)",
                 service_name(d));
    service_notify_ready(status);
}

static void on_signal(struct ev_loop *loop, struct ev_io *io, uint32_t revents)
{
    struct daemon *d = io->data;
    const struct daemon_ops *ops = d->spec.ops;
    struct signalfd_siginfo si;
    while (read(d->sig_fd, &si, sizeof si) == (ssize_t)sizeof si) {
        int sig = (int)si.ssi_signo;
        if (sig == SIGHUP) {
            if (ops && ops->reload)
                reload_for_service_manager(d);
        } else if (sig == SIGUSR1) {
            /* As nginx's USR1: logrotate moved the files away. Files for
             * processes that gave up root are handed to their user. */
            log_info("signal SIGUSR1: reopening log files");
            log_reopen(privs_file_owner());
            if (ops && ops->reopen)
                ops->reopen(d->spec.arg);
        } else if (sig == SIGTERM || sig == SIGINT || listed(d->spec.stop_signals, sig)) {
            /* Companions first: HA withdraws the VIPs before the tier
             * begins to drain (or stops at once). */
            daemon_stopping(d);
            if (ops && ops->stop) {
                ops->stop(d->spec.arg, sig);
            } else {
                log_info("signal SIG%s: stopping", sigabbrev_np(sig) ? sigabbrev_np(sig) : "?");
                daemon_stopped(d);
            }
        } else if (ops && ops->signal) {
            ops->signal(d->spec.arg, sig);
        }
    }
}

int daemon_catch_signals(struct daemon *d, char *err, size_t errlen)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    for (size_t i = 0; d->spec.stop_signals && d->spec.stop_signals[i]; i++)
        sigaddset(&set, d->spec.stop_signals[i]);
    for (size_t i = 0; d->spec.other_signals && d->spec.other_signals[i]; i++)
        sigaddset(&set, d->spec.other_signals[i]);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    d->sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (d->sig_fd < 0) {
        snprintf(err, errlen, "signalfd: %s", strerror(errno));
        return -1;
    }
    ev_io_init(&d->sig_io, d->sig_fd, on_signal, d);
    ev_io_set(d->loop, &d->sig_io, EPOLLIN);
    return 0;
}

int daemon_admin_start(struct daemon *d, const struct sl_config *cfg, char *err, size_t errlen)
{
    admin_auth_set(&d->site.auth, cfg);
    if (!cfg->admin_enabled)
        return 0;
    d->admin = admin_start_with(d->loop, &cfg->admin_addr, &d->site, &d->admin_opts, err, errlen);
    if (!d->admin)
        return -1;
    d->admin_addr = cfg->admin_addr;
    return 0;
}

void daemon_admin_follow(struct daemon *d, const struct sl_config *cfg)
{
    bool on = d->admin != NULL;
    admin_auth_set(&d->site.auth, cfg);
    if (cfg->admin_enabled == on && (!on || addr_equal(&cfg->admin_addr, &d->admin_addr))) {
        if (on)
            admin_set_options(d->admin, &d->admin_opts);
        return;
    }
    char err[256];
    struct admin_server *next = NULL;
    if (cfg->admin_enabled)
        next = admin_start_with(d->loop, &cfg->admin_addr, &d->site, &d->admin_opts, err, sizeof err);
    if (cfg->admin_enabled && !next) {
        log_error("%s: admin.listen %s: %s; the admin API stays %s%s", cfg->path, cfg->admin_addr.text, err,
                  on ? "on " : "off", on ? d->admin_addr.text : "");
        return;
    }
    admin_stop(d->admin);
    d->admin = next;
    if (next) {
        d->admin_addr = cfg->admin_addr;
        log_info("admin API moved to %s", cfg->admin_addr.text);
    } else {
        log_info("admin API off (admin.listen: off)");
    }
}

int daemon_write_pid_file(struct daemon *d, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "%d\n", (int)getpid());
    if (fclose(f) != 0) {
        int err = errno;
        unlink(path);
        errno = err;
        return -1;
    }
    d->pid_file = path;
    return 0;
}

int daemon_run(struct daemon *d)
{
    /* Here, not in daemon_init: tiers fill site.status (anew) in between. */
    struct admin_status *st = &d->site.status;
    st->reloadable = d->spec.ops && d->spec.ops->reload;
    if (!st->last_reload_success_unix_ms)
        st->last_reload_success_unix_ms = unix_ms();
    d->serving = true;
    /* Everything the tier set up before its loop is in place (the proxy's
     * listeners are bound and its workers forked): the service is up. */
    char status[160];
    snprintf(status, sizeof status, "sluice %s serving", service_name(d));
    service_notify_ready(status);
    return ev_run(d->loop);
}

void daemon_stopped(struct daemon *d)
{
    ev_break(d->loop);
}

void daemon_fini(struct daemon *d)
{
    fini_companions(d);
    admin_stop(d->admin);
    admin_auth_clear(&d->site.auth);
    d->admin = NULL;
    if (d->loop) {
        vip_board_fini(&d->vips);
        if (d->sig_fd >= 0)
            ev_io_stop(d->loop, &d->sig_io);
        ev_loop_free(d->loop);
        d->loop = NULL;
    }
    if (d->sig_fd >= 0)
        close(d->sig_fd);
    d->sig_fd = -1;
    if (d->pid_file)
        unlink(d->pid_file);
    d->pid_file = NULL;
}

int daemon_parse_args(const char *name, int argc, char **argv, void (*usage)(FILE *out), const char **path,
                      const char **pid_file)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "pid-file", required_argument, NULL, 'p' },
        { "help", no_argument, NULL, 'h' },
        { 0, 0, 0, 0 },
    };
    int c;
    *path = *pid_file = NULL;
    optind = 1;   /* argv may be a second command line in one process (tests) */
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': *path = optarg; break;
        case 'p': *pid_file = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument \"%s\"\n\n", name, argv[optind]);
        usage(stderr);
        return 2;
    }
    if (!*path) {
        fprintf(stderr, "%s: -c FILE is required\n\n", name);
        usage(stderr);
        return 2;
    }
    return -1;
}
