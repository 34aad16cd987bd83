/* Unit tests for libsluice's disaster layers (src/client/cache.c): the
 * cache directory (written atomically after each applied update, loaded at
 * subscribe so picks work before any registry answers, replaced by the
 * registry's answer), and the failover directory (its lists replace the
 * registry's while the switch file exists, and the registry's come back
 * when it goes). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>

#include "client_helpers.h"

static char *list_of(const char *prefix, int n, unsigned long long mi)
{
    char list[16384] = "";
    for (int i = 1; i <= n; i++) {
        char one[512], id[32], ip[32];
        snprintf(id, sizeof id, "%s-%d", prefix, i);
        snprintf(ip, sizeof ip, "10.0.%d.%d", prefix[0] == 'f' ? 9 : 1, i);
        ch_inst(one, sizeof one, id, ip, 8000 + i, 100, "dc1", "r1", true);
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i > 1 ? "," : "", one);
    }
    return ch_body("web", mi, list);
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.' || (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0);
    closedir(d);
    return n;
}

static void test_cache_round_trip(void **state)
{
    char dir[128], path[256];
    ch_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/web.json", dir);

    /* a first run: the registry's answer is cached */
    sluice_client *c = ch_open(dir, NULL, "dc1", "r1", NULL);
    sluice_service *s = sluice_subscribe(c, "web", NULL, 0);
    char *body = list_of("web", 3, 17);
    ch_apply(s, "10.0.0.1:9950", 200, body);
    free(body);
    struct sluice_stats st;
    sluice_stats(c, &st);
    assert_int_equal(st.cache_writes, 1);
    sluice_close(c);
    char *text = read_all(path);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"node\": \"10.0.0.1:9950\""));
    assert_int_equal(count_files(dir), 1); /* no temporary file left */

    /* a second run with no registry: the list is there at subscribe */
    c = ch_open(dir, NULL, "dc1", "r1", NULL);
    s = sluice_subscribe(c, "web", NULL, 0);
    assert_int_equal(sluice_wait_ready(s, 0), 0);
    struct sluice_service_info si = ch_info(s);
    assert_int_equal(si.source, SLUICE_SOURCE_CACHE);
    assert_int_equal(si.instances, 3);
    assert_int_equal(si.registry_index, 17);
    assert_int_equal(si.age_ms, 0);
    struct sluice_pick p;
    assert_int_equal(sluice_pick(s, 0, &p), 0);
    assert_true(strncmp(p.host, "10.0.1.", 7) == 0);
    sluice_done(s, &p, SLUICE_OK);
    sluice_stats(c, &st);
    assert_int_equal(st.cache_loads, 1);

    /* the cache's node said 3 instances at index 17: its empty list at a
     * later index is believed at once (the operator emptied it) */
    body = ch_body("web", 18, "");
    ch_apply(s, "10.0.0.1:9950", 200, body);
    free(body);
    si = ch_info(s);
    assert_int_equal(si.source, SLUICE_SOURCE_REGISTRY);
    assert_int_equal(si.instances, 0);
    sluice_close(c);
    ch_rmrf(dir);
}

static void test_cache_replaced_by_registry(void **state)
{
    char dir[128];
    ch_tmpdir(dir, sizeof dir);
    char *body = list_of("web", 2, 5);
    ch_write(dir, "web.json", body);
    free(body);
    sluice_client *c = ch_open(dir, NULL, NULL, NULL, NULL);
    sluice_service *s = sluice_subscribe(c, "web", NULL, 0);
    assert_int_equal(ch_info(s).source, SLUICE_SOURCE_CACHE);
    /* a blank registry node's empty answer does not wipe the cache's list */
    body = ch_body("web", 1, "");
    ch_apply(s, "10.9.9.9:9950", 200, body);
    free(body);
    assert_int_equal(ch_info(s).source, SLUICE_SOURCE_CACHE);
    assert_int_equal(ch_info(s).instances, 2);
    /* a real answer replaces it, and the file */
    body = list_of("new", 4, 30);
    ch_apply(s, "10.9.9.9:9950", 200, body);
    free(body);
    struct sluice_service_info si = ch_info(s);
    assert_int_equal(si.source, SLUICE_SOURCE_REGISTRY);
    assert_int_equal(si.instances, 4);
    char path[256];
    snprintf(path, sizeof path, "%s/web.json", dir);
    assert_non_null(strstr(read_all(path), "new-4"));
    sluice_close(c);
    ch_rmrf(dir);
}

/* The write is a rename: a reader that opened the old file reads all of it,
 * the path gives all of the new one, never a mix. */
static void test_cache_write_atomic(void **state)
{
    char dir[128], path[256];
    ch_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/web.json", dir);
    sluice_client *c = ch_open(dir, NULL, NULL, NULL, NULL);
    sluice_service *s = sluice_subscribe(c, "web", NULL, 0);
    char *body = list_of("web", 2, 5);
    ch_apply(s, "n", 200, body);
    free(body);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    struct stat before;
    assert_int_equal(fstat(fd, &before), 0);
    body = list_of("web", 40, 6);
    ch_apply(s, "n", 200, body);
    free(body);
    struct stat after;
    assert_int_equal(stat(path, &after), 0);
    assert_int_not_equal(before.st_ino, after.st_ino);
    char old[65536];
    ssize_t n = read(fd, old, sizeof old - 1);
    close(fd);
    assert_true(n > 0);
    old[n] = '\0';
    assert_non_null(strstr(old, "web-2"));
    assert_null(strstr(old, "web-3"));
    struct cl_doc *d = cl_doc_parse(old, (size_t)n, NULL, 0);
    assert_non_null(d);
    cl_doc_free(d);
    assert_non_null(strstr(read_all(path), "web-40"));
    assert_int_equal(count_files(dir), 1);
    sluice_close(c);
    ch_rmrf(dir);
}

static void test_invalid_cache_not_used(void **state)
{
    char dir[128];
    ch_tmpdir(dir, sizeof dir);
    ch_write(dir, "web.json", "{\"name\":\"web\",\"instances\":[{\"id\":\"a\",\"address\":\"nope\",\"port\":1}]}");
    ch_write(dir, "api.json", "{\"name\":\"web\",\"instances\":[]}"); /* another service's */
    struct ch_log log = {0};
    sluice_client *c = ch_open(dir, NULL, NULL, NULL, &log);
    sluice_service *s = sluice_subscribe(c, "web", NULL, 0);
    assert_int_equal(ch_info(s).source, SLUICE_SOURCE_NONE);
    assert_non_null(strstr(log.last_warn, "not used"));
    sluice_service *a = sluice_subscribe(c, "api", NULL, 0);
    assert_int_equal(ch_info(a).source, SLUICE_SOURCE_NONE);
    assert_non_null(strstr(log.last_warn, "not this service"));
    sluice_close(c);
    ch_rmrf(dir);
}

/* Wait (bounded) until the service's source is want. */
static bool wait_source(sluice_service *s, enum sluice_source want)
{
    for (int i = 0; i < 100; i++) {
        if (ch_info(s).source == want)
            return true;
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return false;
}

static void test_failover_switch(void **state)
{
    char dir[128], cache[160];
    ch_tmpdir(dir, sizeof dir);
    snprintf(cache, sizeof cache, "%s/cache", dir);
    char *body = list_of("fo", 2, 0);
    ch_write(dir, "web.json", body);
    free(body);
    sluice_client *c = ch_open(cache, dir, "dc1", "r1", NULL);
    sluice_service *s = sluice_subscribe(c, "web", NULL, 0);
    body = list_of("web", 3, 10);
    ch_apply(s, "A", 200, body);
    free(body);
    assert_int_equal(ch_info(s).source, SLUICE_SOURCE_REGISTRY);

    /* the switch: the file's list, whatever the registry says */
    ch_write(dir, "switch", "");
    assert_true(wait_source(s, SLUICE_SOURCE_FAILOVER));
    struct sluice_pick p;
    for (int i = 0; i < 100; i++) {
        assert_int_equal(sluice_pick(s, 0, &p), 0);
        assert_true(strncmp(p.id, "fo-", 3) == 0);
        sluice_done(s, &p, SLUICE_OK);
    }
    body = list_of("web", 5, 11);
    ch_apply(s, "A", 200, body);
    free(body);
    struct sluice_service_info si = ch_info(s);
    assert_int_equal(si.source, SLUICE_SOURCE_FAILOVER);
    assert_int_equal(si.instances, 2);
    struct sluice_stats st;
    sluice_stats(c, &st);
    assert_true(st.failover_active);
    assert_int_equal(st.failover_loads, 1);

    /* a new subscription while the switch is on: the failover list at once */
    body = list_of("fo", 1, 0);
    body[9] = 'a', body[10] = 'p', body[11] = 'i'; /* "name":"web" -> "api" */
    ch_write(dir, "api.json", body);
    free(body);
    sluice_service *a = sluice_subscribe(c, "api", NULL, 0);
    assert_int_equal(ch_info(a).source, SLUICE_SOURCE_FAILOVER);

    /* the switch gone: the registry's latest list is back */
    char sw[256];
    snprintf(sw, sizeof sw, "%s/switch", dir);
    assert_int_equal(unlink(sw), 0);
    assert_true(wait_source(s, SLUICE_SOURCE_REGISTRY));
    assert_int_equal(ch_info(s).instances, 5);
    assert_int_equal(ch_info(a).source, SLUICE_SOURCE_NONE);
    sluice_stats(c, &st);
    assert_false(st.failover_active);
    sluice_close(c);
    ch_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache_round_trip),
        cmocka_unit_test(test_cache_replaced_by_registry),
        cmocka_unit_test(test_cache_write_atomic),
        cmocka_unit_test(test_invalid_cache_not_used),
        cmocka_unit_test(test_failover_switch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
