/* See daemon.h. */
#include "core/daemon.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "core/log.h"

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

int daemon_init(struct daemon *d, const struct daemon_spec *spec, const struct sl_config *cfg, char *err,
                size_t errlen)
{
    memset(d, 0, sizeof *d);
    d->spec = *spec;
    d->sig_fd = -1;
    log_setup(cfg->log_level, cfg->log_file, spec->role);
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

static void on_signal(struct ev_loop *loop, struct ev_io *io, uint32_t revents)
{
    struct daemon *d = io->data;
    const struct daemon_ops *ops = d->spec.ops;
    struct signalfd_siginfo si;
    while (read(d->sig_fd, &si, sizeof si) == (ssize_t)sizeof si) {
        int sig = (int)si.ssi_signo;
        if (sig == SIGHUP) {
            if (ops && ops->reload)
                ops->reload(d->spec.arg);
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
