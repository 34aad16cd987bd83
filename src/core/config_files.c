/* See config.h: config_check_files(). The YAML can only say that a path
 * is a string; whether the daemon can write there is known only by trying,
 * and the daemon must know before it starts (or reloads), not when a
 * worker finds out and quietly runs without its access log. */
#include "core/config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log_sink.h"

/* The flags of every open below: the daemon's own (log_setup(),
 * access_log_open()) less O_CREAT, which is added only when needed.
 * O_NONBLOCK so that a FIFO without a reader answers ENXIO instead of
 * blocking `check`. */
#define PROBE_FLAGS (O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)

/* 0 when path can be opened for appending, else an errno. An existing
 * file is opened, not created or truncated; a missing one is created
 * (O_EXCL: only ever one this call made) and removed again. */
int config_probe_append(const char *path)
{
    int fd = open(path, PROBE_FLAGS);
    if (fd < 0 && errno == ENOENT) {
        fd = open(path, PROBE_FLAGS | O_CREAT | O_EXCL, 0644);
        if (fd >= 0) {
            close(fd);
            unlink(path);
            return 0;
        }
        if (errno == EEXIST) /* someone else created it meanwhile: that one counts */
            fd = open(path, PROBE_FLAGS);
    }
    if (fd < 0)
        /* A FIFO nobody reads yet: the daemon's blocking open waits for
         * its reader, as it always did. Not a reason to refuse. */
        return errno == ENXIO ? 0 : errno;
    close(fd);
    return 0;
}

void config_file_error(struct config_errors *errs, const struct sl_config *cfg, int line, const char *key,
                       const char *path, int err)
{
    char *text = NULL;
    if (asprintf(&text, "%s:%d: %s: cannot open %s: %s", cfg->path ? cfg->path : "(config)", line, key, path,
                 strerror(err)) < 0)
        return;
    char **lines = realloc(errs->lines, (errs->n + 1) * sizeof *lines);
    if (!lines) {
        free(text);
        return;
    }
    errs->lines = lines;
    errs->lines[errs->n++] = text;
}

size_t config_check_files(const struct sl_config *cfg, unsigned which, struct config_errors *errs)
{
    size_t before = errs->n;
    if ((which & CONFIG_FILES_LOG) && cfg->log_file && !log_sink_is_spec(cfg->log_file)) {
        int err = config_probe_append(cfg->log_file);
        if (err)
            config_file_error(errs, cfg, cfg->log_file_line, "log.file", cfg->log_file, err);
    }
    for (size_t s = 0; (which & CONFIG_FILES_SECTIONS) && s < cfg->n_sections; s++)
        if (cfg->sections[s].section->check_files)
            cfg->sections[s].section->check_files(cfg, cfg->sections[s].data, errs);
    return errs->n - before;
}
