/* Unit tests for l4.sync: the l4.sync config keys and key file
 * (src/l4/l4_conf.c), and the wire format (src/l4/sync_wire.c): encoding
 * and decoding, authentication, and the per-peer sequence check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "l4/l4_conf.h"
#include "l4/sync_wire.h"

#include "config_expect.h"

/* ---- config ---- */

#define SYNC_HEAD "l4:\n  interfaces: [lb0]\n  sync:\n" /* lines 1-3 */

static void test_sync_conf(void **state)
{
    (void)state;
    struct sl_config *cfg = load_ok(SYNC_HEAD
                                    "    listen: 10.0.0.1:7400\n"
                                    "    peers: [10.0.0.2:7400, \"[fd00::3]:7400\"]\n"
                                    "    key_file: /etc/sluice/sync.key\n");
    const struct cfg_l4_sync *y = &l4_conf(cfg)->sync;
    assert_true(y->enabled);
    assert_int_equal(y->n_peers, 2);
    assert_string_equal(y->peers[1].text, "[fd00::3]:7400");
    assert_string_equal(y->key_file, "/etc/sluice/sync.key");
    assert_int_equal(y->key_file_line, 6);
    assert_int_equal(y->interval_ms, 50);
    assert_int_equal(y->refresh_ms, 10000);
    assert_int_equal(y->node_id, 0x0a000001); /* from the listen address */
    config_free(cfg);

    cfg = load_ok(SYNC_HEAD
                  "    listen: 10.0.0.1:7400\n"
                  "    peers: 10.0.0.2:7400\n"
                  "    key_file: k\n"
                  "    interval: 20ms\n"
                  "    refresh: 30s\n"
                  "    node_id: 7\n");
    y = &l4_conf(cfg)->sync;
    assert_int_equal(y->n_peers, 1);
    assert_int_equal(y->interval_ms, 20);
    assert_int_equal(y->refresh_ms, 30000);
    assert_int_equal(y->node_id, 7);
    config_free(cfg);

    cfg = load_ok("l4:\n  interfaces: [lb0]\n");
    assert_false(l4_conf(cfg)->sync.enabled);
    config_free(cfg);
}

static void test_sync_conf_errors(void **state)
{
    (void)state;
    expect_error(SYNC_HEAD "    listen: 10.0.0.1:7400\n    peers: [10.0.0.2:7400]\n",
                 "t.yaml:4: l4.sync: missing required key \"key_file\"");
    expect_error(SYNC_HEAD "    listen: 10.0.0.1:7400\n    peers: [10.0.0.2:0]\n    key_file: k\n",
                 "t.yaml:5: l4.sync.peers[0]: a peer needs a port (address:port), got \"10.0.0.2:0\"");
    expect_error(SYNC_HEAD "    listen: 10.0.0.1:7400\n    peers: [10.0.0.2:1, 10.0.0.2:1]\n    key_file: k\n",
                 "t.yaml:5: l4.sync.peers[1]: duplicate peer 10.0.0.2:1");
    expect_error(SYNC_HEAD "    listen: 10.0.0.1:7400\n    peers: [10.0.0.1:7400]\n    key_file: k\n",
                 "t.yaml:4: l4.sync.peers[0]: 10.0.0.1:7400 is this node's own listen address");
    expect_error(SYNC_HEAD "    listen: 10.0.0.1:0\n    peers: [10.0.0.2:1]\n    key_file: k\n",
                 "t.yaml:4: l4.sync.listen: port must be a number from 1 to 65535");
    expect_error(SYNC_HEAD "    listen: 10.0.0.1:1\n    peers: [10.0.0.2:1]\n    key_file: k\n"
                 "    refresh: 10ms\n",
                 "t.yaml:7: l4.sync.refresh: must be from 1s to 1h, got \"10ms\"");
    expect_error(SYNC_HEAD "    listen: 10.0.0.1:1\n    peers: [10.0.0.2:1]\n    key_file: k\n    port: 3\n",
                 "t.yaml:7: l4.sync.port: unknown key");
}

/* ---- the key file ---- */

static char *key_file(const char *content, size_t len, mode_t mode)
{
    char *path = strdup("/tmp/sluice-sync-key-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
    return path;
}

static void test_sync_key(void **state)
{
    (void)state;
    uint8_t key[L4_SYNC_KEY_MAX];
    char err[256];
    const char *hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
    char *p = key_file(hex, strlen(hex), 0600);
    assert_int_equal(l4_sync_read_key(p, key, sizeof key, err, sizeof err), 64); /* newline dropped */
    assert_memory_equal(key, hex, 64);
    chmod(p, 0640);
    assert_int_equal(l4_sync_read_key(p, key, sizeof key, err, sizeof err), -1);
    assert_non_null(strstr(err, "accessible by group or others (mode 640): chmod 600 it"));
    unlink(p);
    free(p);

    p = key_file("short\n", 6, 0600);
    assert_int_equal(l4_sync_read_key(p, key, sizeof key, err, sizeof err), -1);
    assert_non_null(strstr(err, "holds 5 bytes: the key needs at least 32"));
    unlink(p);
    free(p);

    assert_int_equal(l4_sync_read_key("/nonexistent/k", key, sizeof key, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot open /nonexistent/k"));
}

/* ---- the wire ---- */

static const uint8_t KEY[] = "0123456789abcdef0123456789abcdef";

static void sample_entry(struct l4_sync_entry *e, int i)
{
    memset(e, 0, sizeof *e);
    e->client[10] = e->client[11] = 0xff;
    e->client[12] = 192;
    e->client[15] = (uint8_t)i;
    e->cport = (uint16_t)(1000 + i);
    e->vip[10] = e->vip[11] = 0xff;
    e->vip[12] = 10;
    e->vip[15] = 100;
    e->vport = 80;
    e->proto = 6;
    e->mode = 3;
    e->state = (uint8_t)(i & 1);
    e->real[0] = 0xfd;
    e->real[15] = 11;
    e->rport = 8080;
    e->local[0] = 0xfd;
    e->local[15] = 77;
    e->lport = (uint16_t)(2000 + i);
    e->age = (uint32_t)i * 3;
}

static size_t full_datagram(struct l4_sync_writer *w, uint64_t seq)
{
    struct l4_sync_entry e;
    l4_sync_begin(w, L4_SYNC_T_ENTRIES);
    for (int i = 0; i < L4_SYNC_MAX_ENTRIES; i++) {
        sample_entry(&e, i);
        assert_true(l4_sync_add_entry(w, &e));
    }
    sample_entry(&e, 99);
    assert_false(l4_sync_add_entry(w, &e)); /* full */
    return l4_sync_finish(w, 0x0a000001, 1765000000000000ull, seq, KEY, 32);
}

static void test_wire_roundtrip(void **state)
{
    (void)state;
    struct l4_sync_writer w;
    struct l4_sync_hdr h;
    size_t len = full_datagram(&w, 5);
    assert_int_equal(L4_SYNC_MAX_ENTRIES, 16);
    assert_int_equal(len, 28 + 16 * 80 + 32);
    assert_true(len <= L4_SYNC_MAX_DGRAM);
    assert_int_equal(l4_sync_open(w.buf, len, KEY, 32, &h), L4_SYNC_OK);
    assert_int_equal(h.type, L4_SYNC_T_ENTRIES);
    assert_int_equal(h.count, 16);
    assert_int_equal(h.node_id, 0x0a000001);
    assert_int_equal(h.epoch, 1765000000000000ull);
    assert_int_equal(h.seq, 5);
    for (int i = 0; i < 16; i++) {
        struct l4_sync_entry got, want;
        l4_sync_entry_at(w.buf, (size_t)i, &got);
        sample_entry(&want, i);
        assert_memory_equal(&got, &want, sizeof got);
    }

    /* A hello: the local addresses. */
    uint8_t a[16] = { 0xfd, [15] = 9 }, b[16];
    l4_sync_begin(&w, L4_SYNC_T_HELLO);
    struct l4_sync_entry e;
    sample_entry(&e, 1);
    assert_false(l4_sync_add_entry(&w, &e)); /* not in a hello */
    assert_true(l4_sync_add_local(&w, a));
    len = l4_sync_finish(&w, 3, 9, 1, KEY, 32);
    assert_int_equal(l4_sync_open(w.buf, len, KEY, 32, &h), L4_SYNC_OK);
    assert_int_equal(h.type, L4_SYNC_T_HELLO);
    assert_int_equal(h.count, 1);
    l4_sync_local_at(w.buf, 0, b);
    assert_memory_equal(a, b, 16);
}

static void test_wire_auth(void **state)
{
    (void)state;
    struct l4_sync_writer w;
    struct l4_sync_hdr h;
    size_t len = full_datagram(&w, 1);
    uint8_t bad[L4_SYNC_MAX_DGRAM + 1];

    assert_int_equal(l4_sync_open(w.buf, len, (const uint8_t *)"another key of thirty-two bytes!", 32, &h),
                     L4_SYNC_R_BAD_MAC);
    /* Any byte changed past the magic and version: the MAC fails. */
    for (size_t i = 5; i < len; i += 7) {
        memcpy(bad, w.buf, len);
        bad[i] ^= 0x20;
        assert_int_equal(l4_sync_open(bad, len, KEY, 32, &h), L4_SYNC_R_BAD_MAC);
    }
    memcpy(bad, w.buf, len);
    bad[0] = 'X';
    assert_int_equal(l4_sync_open(bad, len, KEY, 32, &h), L4_SYNC_R_MAGIC);
    bad[0] = 'S';
    bad[4] = 2;
    assert_int_equal(l4_sync_open(bad, len, KEY, 32, &h), L4_SYNC_R_VERSION);
    assert_int_equal(l4_sync_open(w.buf, len - 80, KEY, 32, &h), L4_SYNC_R_BAD_MAC); /* cut */
    assert_int_equal(l4_sync_open(w.buf, 59, KEY, 32, &h), L4_SYNC_R_SHORT);
    assert_int_equal(l4_sync_open(w.buf, L4_SYNC_MAX_DGRAM + 1, KEY, 32, &h), L4_SYNC_R_SHORT);

    /* Authentic but inconsistent: a count that does not match the body,
     * an unknown type, sequence 0. */
    struct l4_sync_writer x;
    struct l4_sync_entry e;
    sample_entry(&e, 1);
    l4_sync_begin(&x, L4_SYNC_T_ENTRIES);
    l4_sync_add_entry(&x, &e);
    x.count = 2;
    len = l4_sync_finish(&x, 1, 1, 1, KEY, 32);
    assert_int_equal(l4_sync_open(x.buf, len, KEY, 32, &h), L4_SYNC_R_MALFORMED);
    l4_sync_begin(&x, L4_SYNC_T_ENTRIES);
    x.type = 9;
    len = l4_sync_finish(&x, 1, 1, 1, KEY, 32);
    assert_int_equal(l4_sync_open(x.buf, len, KEY, 32, &h), L4_SYNC_R_MALFORMED);
    l4_sync_begin(&x, L4_SYNC_T_ENTRIES);
    len = l4_sync_finish(&x, 1, 1, 0, KEY, 32);
    assert_int_equal(l4_sync_open(x.buf, len, KEY, 32, &h), L4_SYNC_R_MALFORMED);
}

static void test_wire_sequence(void **state)
{
    (void)state;
    struct l4_sync_seq s = { 0 };
    assert_int_equal(l4_sync_seq_check(&s, 100, 40), L4_SYNC_OK); /* first heard: no gap counted */
    assert_int_equal(s.missed, 0);
    assert_int_equal(l4_sync_seq_check(&s, 100, 41), L4_SYNC_OK);
    assert_int_equal(l4_sync_seq_check(&s, 100, 45), L4_SYNC_OK); /* 42..44 lost */
    assert_int_equal(s.missed, 3);
    assert_int_equal(l4_sync_seq_check(&s, 100, 45), L4_SYNC_R_REPLAY);
    assert_int_equal(l4_sync_seq_check(&s, 100, 43), L4_SYNC_R_REPLAY);
    assert_int_equal(l4_sync_seq_check(&s, 99, 1000), L4_SYNC_R_REPLAY); /* an older epoch */
    assert_int_equal(s.last, 45);
    /* The peer restarted: a new epoch, its sequence from 1 (2 lost). */
    assert_int_equal(l4_sync_seq_check(&s, 200, 3), L4_SYNC_OK);
    assert_int_equal(s.restarts, 1);
    assert_int_equal(s.missed, 5);
    assert_int_equal(l4_sync_seq_check(&s, 100, 46), L4_SYNC_R_REPLAY);
    assert_string_equal(l4_sync_reject_name(L4_SYNC_R_BAD_MAC), "bad_mac");
}

int main(void)
{
    config_register_section(&l4_conf_section);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sync_conf),
        cmocka_unit_test(test_sync_conf_errors),
        cmocka_unit_test(test_sync_key),
        cmocka_unit_test(test_wire_roundtrip),
        cmocka_unit_test(test_wire_auth),
        cmocka_unit_test(test_wire_sequence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
