/* Log outputs beside files: syslog and journald, for the daemon's log
 * (log.file) and the access logs (listeners[].access_log).
 *
 * An output is named by a string, as nginx names its syslog outputs:
 *
 *   syslog                          RFC 3164 to /dev/log
 *   syslog:OPT=VAL,OPT=VAL...       server=IP[:PORT] (UDP, port 514) or
 *                                   server=unix:PATH, facility=, tag=,
 *                                   severity= (access logs), format=rfc3164|rfc5424
 *   journald                        the journal's native protocol to
 *   journald:OPT=VAL,...            /run/systemd/journal/socket: facility=,
 *                                   tag=, severity= (access logs)
 *
 * Every record is one datagram sent with MSG_DONTWAIT: a syslog daemon or
 * journald that does not keep up costs the record, never a stalled
 * worker. Lost records are counted per log and output in
 * sluice_log_dropped_total, in a mapping shared by the master and its
 * workers (log_sink_share_counters before they are forked).
 *
 * journald is spoken directly (the documented native protocol: KEY=VALUE
 * lines in one datagram) rather than through libsystemd's
 * sd_journal_send, which writes on a blocking socket of its own that no
 * caller can make non-blocking: a journald that stalls would stall every
 * worker with it. */
#ifndef SLUICE_CORE_LOG_SINK_H
#define SLUICE_CORE_LOG_SINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

#include "lib/strbuf.h"

#define LOG_SINK_TAG_MAX 32
#define LOG_SINK_RECORD_MAX (24 * 1024)   /* one datagram: header, message, fields */
#define LOG_SINK_SYSLOG_PATH "/dev/log"
#define LOG_SINK_JOURNAL_PATH "/run/systemd/journal/socket"
#define LOG_SINK_SYSLOG_PORT 514

enum log_sink_kind { LOG_SINK_SYSLOG, LOG_SINK_JOURNALD, LOG_SINK_KINDS };
/* Which log an output serves: its defaults (facility, tag) and the label
 * of its drops. */
enum log_sink_use { LOG_SINK_DAEMON, LOG_SINK_ACCESS, LOG_SINK_USES };
enum log_sink_format { LOG_SINK_RFC3164, LOG_SINK_RFC5424 };

/* Syslog severities (RFC 5424 6.2.1). */
enum { LOG_SINK_EMERG, LOG_SINK_ALERT, LOG_SINK_CRIT, LOG_SINK_ERR, LOG_SINK_WARNING, LOG_SINK_NOTICE,
       LOG_SINK_INFO, LOG_SINK_DEBUG };

struct log_sink_spec {
    enum log_sink_kind kind;
    enum log_sink_use use;
    enum log_sink_format format;   /* syslog only */
    int facility;                  /* 0..23; default daemon (daemon log), local7 (access logs) */
    int severity;                  /* access logs: of every line, default info; daemon log: -1 */
    char tag[LOG_SINK_TAG_MAX + 1];/* default "sluice" (daemon log), "sluice-access" (access logs) */
    bool udp;                      /* server=IP:PORT */
    struct sockaddr_storage addr;  /* where the datagrams go */
    socklen_t addr_len;
    char where[128];               /* for messages: "/dev/log", "udp 10.0.0.1:514" */
};

/* One field of a journald record beside MESSAGE (NAME: A-Z, 0-9, '_').
 * Syslog records carry the message alone. */
struct log_field {
    const char *name;
    const char *value;
};

/* Whether s names an output of this module: "syslog", "journald", or
 * either followed by ':'. A file of that name is "./syslog". */
bool log_sink_is_spec(const char *s);

/* Parse such a string for a log of kind use. 0, or -1 with err filled
 * ("syslog: unknown facility \"local9\" ..."). No name lookups: server is
 * an IP address. */
int log_sink_parse(const char *s, enum log_sink_use use, struct log_sink_spec *out, char *err, size_t errlen);

/* Syslog priority from the log's level names (debug, info, warn, error). */
int log_sink_severity_of_level(int level);

struct log_sink;

/* A non-blocking datagram socket for spec. NULL only when out of memory
 * or descriptors; a receiver that is not there yet is tried again on the
 * next record (at most once a second). */
struct log_sink *log_sink_open(const struct log_sink_spec *spec);
void log_sink_close(struct log_sink *s);
/* Its socket (kept open in forked workers). */
int log_sink_fd(const struct log_sink *s);
const struct log_sink_spec *log_sink_spec_of(const struct log_sink *s);

/* Send one record: severity, for access logs spec.severity, else the
 * message's; msg without its trailing newline (one is dropped if there).
 * 0, or -1 when the record was dropped (counted). */
int log_sink_send(struct log_sink *s, int severity, const char *msg, size_t len, const struct log_field *fields,
                  size_t n_fields);

/* The datagram log_sink_send would send, into out (cap at least
 * LOG_SINK_RECORD_MAX); returns its length. Exposed for tests. host may
 * be NULL (RFC 3164 to a local socket leaves it out). */
size_t log_sink_render(const struct log_sink_spec *spec, const char *host, pid_t pid, const struct timespec *now,
                       int severity, const char *msg, size_t len, const struct log_field *fields, size_t n_fields,
                       char *out, size_t cap);

/* Put the drop counters in a mapping shared with processes forked later
 * (the daemon calls it once, before its workers). */
void log_sink_share_counters(void);
uint64_t log_sink_dropped(enum log_sink_use use, enum log_sink_kind kind);
/* sluice_log_dropped_total{log, output}. */
void log_sink_metrics(struct strbuf *out);

#endif
