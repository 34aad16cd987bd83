/* A libsluice consumer for the integration tests (tests/integration/
 * test_libsluice.py), built against the installed or the built library:
 *
 *   libsluice_probe REGISTRIES SERVICE SECONDS [CACHE_DIR]
 *
 * Subscribes to SERVICE and prints, every 50 ms, one line:
 *   source=N version=N members=N instances=N node=HOST:PORT ids=a,b,c pick=ID
 * then "done" after SECONDS. Exit 1 when sluice_open fails.
 * PROBE_PULL_MS in the environment sets the full pull's interval. */
#include <sluice/sluice.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s REGISTRIES SERVICE SECONDS [CACHE_DIR]\n", argv[0]);
        return 2;
    }
    struct sluice_config cfg;
    sluice_config_init(&cfg);
    cfg.registries = argv[1];
    cfg.cache_dir = argc > 4 ? argv[4] : NULL;
    cfg.watch_wait_ms = 5000;
    cfg.request_timeout_ms = 1000;
    if (getenv("PROBE_PULL_MS"))
        cfg.pull_interval_ms = (uint32_t)atoi(getenv("PROBE_PULL_MS"));
    char err[256];
    sluice_client *c = sluice_open(&cfg, err, sizeof err);
    if (!c) {
        printf("open failed: %s\n", err);
        return 1;
    }
    sluice_service *s = sluice_subscribe(c, argv[2], err, sizeof err);
    if (!s) {
        printf("subscribe failed: %s\n", err);
        sluice_close(c);
        return 1;
    }
    printf("version %s\n", sluice_version());
    int rounds = atoi(argv[3]) * 20;
    for (int r = 0; r < rounds; r++) {
        struct sluice_service_info si;
        struct sluice_stats st;
        struct sluice_member m[64];
        sluice_service_info(s, &si);
        sluice_stats(c, &st);
        int n = sluice_members(s, m, 64, NULL);
        char ids[2048] = "";
        for (int i = 0; i < n && i < 64; i++)
            snprintf(ids + strlen(ids), sizeof ids - strlen(ids), "%s%s", i ? "," : "", m[i].id);
        struct sluice_pick p;
        const char *pick = "-";
        if (sluice_pick(s, SLUICE_PICK_P2C, &p) == 0) {
            pick = p.id;
            sluice_done(s, &p, SLUICE_OK);
        }
        printf("source=%d version=%llu members=%u instances=%u ignored_empty=%llu not_found=%d pulls=%llu node=%s "
               "ids=%s pick=%s\n",
               (int)si.source, (unsigned long long)si.version, si.members, si.instances,
               (unsigned long long)si.updates_ignored_empty, (int)si.not_found, (unsigned long long)st.pulls, st.node,
               ids, pick);
        fflush(stdout);
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    sluice_close(c);
    printf("done\n");
    return 0;
}
