/* A service's list as JSON, and the rules for believing an update.
 *
 * One format serves three sources: the registry's answer to
 * GET /api/registry/services/NAME, the cache files libsluice writes, and
 * the failover files an operator writes (see the top of cache.c). Parsing
 * and judging are pure (no I/O, no clock, no globals), so the unit tests
 * and the fuzz target drive them with bodies directly.
 *
 * Believing an update (cl_judge), for one service:
 *   - a body that does not parse, names another service, or has an
 *     instance with a bad id, address, port or weight: ignored (INVALID),
 *     whatever the list held; any status but 200 and 404 likewise;
 *   - 404 (no such service) while we hold instances: ignored (EMPTY): a
 *     blank or restarted node does not know the service yet; while we
 *     hold none, nothing to do (NOT_FOUND);
 *   - a well-formed list with instances: applied;
 *   - a well-formed EMPTY list (200) is applied only when one of these
 *     holds, else ignored (EMPTY) and remembered as pending:
 *       a. we hold no instances (nothing to lose);
 *       b. it comes from the node whose last applied non-empty list it
 *          follows, with a modify_index above that list's: the same node
 *          saw the instances go (an operator, or their expiry), so it is
 *          believed at once; a lower or equal index means that node
 *          restarted blank, and is not believed;
 *       c. it confirms a pending empty answer: it comes from another node
 *          than the pending one (a second node agrees), or at least
 *          pull_interval_ms after the pending one was first seen (a later
 *          pull agrees).
 *     A list with instances clears the pending answer. */
#ifndef SLUICE_CLIENT_DOC_H
#define SLUICE_CLIENT_DOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define CL_ID_MAX 128
#define CL_LOC_MAX 63

struct cl_doc_inst {
    char id[CL_ID_MAX + 1];
    char host[46];                  /* the address as text, canonical */
    uint16_t port;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    uint32_t weight;                /* 0..10000 */
    bool enabled;
    bool healthy;                   /* health "up" */
    char datacenter[CL_LOC_MAX + 1];
    char region[CL_LOC_MAX + 1];
};

struct cl_doc {
    char name[64];
    uint64_t modify_index;          /* 0 when the file has none */
    char node[128];                 /* cache files: the node the list came from ("" if unknown) */
    double protect_threshold;
    uint32_t min_healthy;
    double min_healthy_ratio;
    uint32_t dns_ttl, answer_count;
    size_t n;
    struct cl_doc_inst *inst;
};

/* Parse a body (not terminated; len bytes). Returns a new doc, or NULL
 * with the reason in err. */
struct cl_doc *cl_doc_parse(const char *buf, size_t len, char *err, size_t errlen);
void cl_doc_free(struct cl_doc *d);

/* The doc as JSON (the cache file's format), with node recorded; a new
 * string (free()), or NULL on allocation failure. */
char *cl_doc_format(const struct cl_doc *d, const char *node);

/* Same instances (in order) and settings. */
bool cl_doc_equal(const struct cl_doc *a, const struct cl_doc *b);

/* Whether name is a registry service name (one DNS label). */
bool cl_service_name_ok(const char *name);

/* ---- believing updates -------------------------------------------------- */

struct cl_trust {
    bool have;                      /* a non-empty list from `node` was applied */
    char node[128];
    uint64_t modify_index;
    bool pending;                   /* an empty answer seen and not believed yet */
    char pending_node[128];
    uint64_t pending_since_ms;
};

enum cl_verdict {
    CL_APPLY,             /* apply the doc */
    CL_IGNORE_EMPTY,      /* an empty list or 404 not believed: keep ours */
    CL_IGNORE_INVALID,    /* bad status or body: keep ours */
    CL_NOT_FOUND,         /* 404 while we hold nothing: nothing to do */
};

/* Judge one answer of node (status, doc: NULL when the body did not parse
 * or was not checked) for the service `name`, given whether the list in
 * use holds instances. Updates t. Pure. */
enum cl_verdict cl_judge(struct cl_trust *t, const char *name, const char *node, long status, const struct cl_doc *doc,
                         bool have_instances, uint64_t now_ms, uint32_t pull_interval_ms);

const char *cl_verdict_name(enum cl_verdict v);

#endif
