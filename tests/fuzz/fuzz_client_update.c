/* libFuzzer target for libsluice's updates (src/client/doc.c and the apply
 * path of consumer.c): the parser of a service's list (registry answers,
 * cache and failover files), its formatter, the rules for believing an
 * update, and the snapshot and picks built from what is applied.
 *
 * Input: answers separated by a line "---"; each answer's first byte picks
 * the node it comes from (low 2 bits) and its status (200, 404, 500, 200),
 * the rest is the body. Each is fed to a fresh client's service "web"
 * through cl_service_apply(), as the watcher does.
 *
 * Beyond "no crash": a body the parser accepts formats to text that parses
 * back to an equal list (the cache file round trip); after an answer with
 * instances for "web" is applied, the service lists exactly those; members
 * never outnumber instances; every pick is a member, and sluice_done()
 * takes it back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/client_priv.h"
#include "client/doc.h"

#define CHECK(x)                                                                                  \
    do {                                                                                          \
        if (!(x)) {                                                                               \
            fprintf(stderr, "fuzz_client_update: invariant failed at line %d: %s\n", __LINE__, #x); \
            abort();                                                                              \
        }                                                                                         \
    } while (0)

static char failover_dir[64];

static void quiet(void *arg, enum sluice_log_level lvl, const char *msg)
{
    (void)arg, (void)lvl, (void)msg;
}

static void remove_dir(void)
{
    rmdir(failover_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    snprintf(failover_dir, sizeof failover_dir, "/tmp/fuzz-client-XXXXXX");
    if (!mkdtemp(failover_dir))
        abort();
    atexit(remove_dir);
    return 0;
}

static void check_round_trip(const char *body, size_t len)
{
    struct cl_doc *d = cl_doc_parse(body, len, NULL, 0);
    if (!d)
        return;
    char *text = cl_doc_format(d, "node");
    CHECK(text != NULL);
    struct cl_doc *e = cl_doc_parse(text, strlen(text), NULL, 0);
    CHECK(e != NULL);
    CHECK(cl_doc_equal(d, e));
    free(text);
    cl_doc_free(e);
    cl_doc_free(d);
}

static void check_service(sluice_service *s, const char *body, size_t len, long status)
{
    struct sluice_service_info si;
    CHECK(sluice_service_info(s, &si) == 0);
    CHECK(si.members <= si.instances);
    struct cl_doc *d = status == 200 ? cl_doc_parse(body, len, NULL, 0) : NULL;
    if (d && d->n > 0 && strcmp(d->name, "web") == 0)
        CHECK(si.instances == d->n && si.source == SLUICE_SOURCE_REGISTRY);
    cl_doc_free(d);
    struct sluice_member m[16];
    int n = sluice_members(s, m, 16, NULL);
    CHECK(n >= 0 && (uint32_t)n == si.members);
    for (int k = 0; k < 4; k++) {
        struct sluice_pick p;
        if (sluice_pick(s, k % 2 ? SLUICE_PICK_P2C : 0, &p) < 0) {
            CHECK(si.members == 0);
            break;
        }
        bool found = false;
        for (int i = 0; i < n && i < 16; i++)
            found |= strcmp(m[i].id, p.id) == 0;
        CHECK(found || n > 16);
        sluice_done(s, &p, k == 3 ? SLUICE_FAILED : SLUICE_OK);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sluice_config cfg;
    sluice_config_init(&cfg);
    cfg.failover_dir = failover_dir;
    cfg.log = quiet;
    cfg.pull_interval_ms = 100;
    sluice_client *c = sluice_open(&cfg, NULL, 0);
    CHECK(c != NULL);
    sluice_service *s = sluice_subscribe(c, "web", NULL, 0);
    CHECK(s != NULL);
    static const long statuses[4] = {200, 404, 500, 200};
    static const char *const nodes[4] = {"a:1", "b:1", "c:1", "a:1"};
    const char *p = (const char *)data, *end = p + size;
    while (p < end) {
        const char *sep = memmem(p, (size_t)(end - p), "\n---\n", 5);
        const char *stop = sep ? sep : end;
        if (stop > p) {
            unsigned sel = (unsigned char)*p;
            const char *body = p + 1;
            size_t len = (size_t)(stop - body);
            check_round_trip(body, len);
            cl_service_apply(s, nodes[sel & 3], statuses[(sel >> 2) & 3], body, len);
            check_service(s, body, len, statuses[(sel >> 2) & 3]);
        }
        p = sep ? sep + 5 : end;
    }
    sluice_close(c);
    return 0;
}
