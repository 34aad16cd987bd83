/* Access logs to syslog or journald: see access_log_sink.h. */
#include "proxy/access_log_sink.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "proxy/access_log.h"

struct log_sink *access_log_sink_open(const char *spec)
{
    struct log_sink_spec sp;
    char err[256];
    if (log_sink_parse(spec, LOG_SINK_ACCESS, &sp, err, sizeof err) < 0) {
        /* The configuration's check refused such a value before. */
        log_error("access log %s: %s", spec, err);
        return NULL;
    }
    struct log_sink *s = log_sink_open(&sp);
    if (!s)
        log_error("access log %s: cannot make a socket: %s", spec, strerror(errno));
    return s;
}

size_t access_log_sink_fields(const struct access_entry *e, struct log_field *f, char nums[3][24])
{
    size_t n = 0;
    snprintf(nums[0], sizeof nums[0], "%d", e->status);
    snprintf(nums[1], sizeof nums[1], "%" PRIu64, e->bytes_sent);
    snprintf(nums[2], sizeof nums[2], "%" PRIu64, e->duration_us);
    f[n++] = (struct log_field){ "SLUICE_LISTENER", e->listener };
    f[n++] = (struct log_field){ "SLUICE_CLIENT", e->client_ip };
    f[n++] = (struct log_field){ "SLUICE_STATUS", nums[0] };
    f[n++] = (struct log_field){ "SLUICE_REQUEST", e->request_line };
    f[n++] = (struct log_field){ "SLUICE_HOST", e->host };
    f[n++] = (struct log_field){ "SLUICE_UPSTREAM", e->upstream };
    f[n++] = (struct log_field){ "SLUICE_BYTES_SENT", nums[1] };
    f[n++] = (struct log_field){ "SLUICE_DURATION_US", nums[2] };
    f[n++] = (struct log_field){ "SLUICE_REASON", e->reason };
    f[n++] = (struct log_field){ "SLUICE_TLS_VERSION", e->tls_version };
    f[n++] = (struct log_field){ "SLUICE_SNI", e->tls_version ? e->sni : NULL };
    return n; /* a NULL value is left out of the record */
}

void access_log_sink_send(struct log_sink *s, const struct access_entry *e, const char *line, size_t len)
{
    struct log_field fields[ACCESS_LOG_SINK_FIELDS];
    char nums[3][24];
    size_t n = log_sink_spec_of(s)->kind == LOG_SINK_JOURNALD ? access_log_sink_fields(e, fields, nums) : 0;
    /* The severity is the output's (severity=, default info). */
    log_sink_send(s, LOG_SINK_INFO, line, len, fields, n);
}
