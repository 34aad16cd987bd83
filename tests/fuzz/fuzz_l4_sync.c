/* libFuzzer target for the l4.sync wire decoder (src/l4/sync_wire.c).
 *
 * Input: a datagram. If the input's first byte is odd, the rest is
 * re-signed first (an HMAC-SHA256 with the target's key appended), so the
 * fuzzer gets past authentication and exercises the header and body
 * checks; otherwise the input is checked as it is, and must be refused
 * (a forged MAC never passes). What is accepted must be consistent: the
 * body is exactly count items of the type's size, every item decodes, and
 * re-encoding the entries gives the same bytes. The sequence check runs
 * on every accepted header and keeps its invariants (last only grows
 * within an epoch; the epoch never goes back). */
#include "l4/sync_wire.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(x)                                                                             \
    do {                                                                                     \
        if (!(x)) {                                                                          \
            fprintf(stderr, "fuzz_l4_sync: invariant failed at line %d: %s\n", __LINE__, #x); \
            abort();                                                                         \
        }                                                                                    \
    } while (0)

static const uint8_t KEY[32] = "fuzz-key-fuzz-key-fuzz-key-fuzz";
static struct l4_sync_seq seq;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t buf[L4_SYNC_MAX_DGRAM + 64];
    struct l4_sync_hdr h;
    size_t len;
    bool signed_here = size > 0 && (data[0] & 1);

    if (size == 0)
        return 0;
    if (signed_here) {
        size_t body = size - 1;
        unsigned int n = L4_SYNC_MAC_LEN;
        if (body + L4_SYNC_MAC_LEN > sizeof buf)
            body = sizeof buf - L4_SYNC_MAC_LEN;
        memcpy(buf, data + 1, body);
        HMAC(EVP_sha256(), KEY, sizeof KEY, buf, body, buf + body, &n);
        len = body + L4_SYNC_MAC_LEN;
    } else {
        len = size > sizeof buf ? sizeof buf : size;
        memcpy(buf, data, len);
    }

    enum l4_sync_reject r = l4_sync_open(buf, len, KEY, sizeof KEY, &h);
    CHECK(r < L4_SYNC_R__COUNT);
    CHECK(strcmp(l4_sync_reject_name(r), "unknown") != 0);
    if (r != L4_SYNC_OK)
        return 0;
    /* Without our MAC nothing passes: the fuzzer cannot guess a
     * 256-bit tag. */
    CHECK(signed_here);
    CHECK(len <= L4_SYNC_MAX_DGRAM);
    CHECK(h.type == L4_SYNC_T_ENTRIES || h.type == L4_SYNC_T_HELLO);
    size_t item = h.type == L4_SYNC_T_ENTRIES ? L4_SYNC_ENTRY_LEN : 16;
    CHECK(L4_SYNC_HDR_LEN + (size_t)h.count * item + L4_SYNC_MAC_LEN == len);

    if (h.type == L4_SYNC_T_ENTRIES) {
        struct l4_sync_writer w;
        l4_sync_begin(&w, L4_SYNC_T_ENTRIES);
        for (size_t i = 0; i < h.count; i++) {
            struct l4_sync_entry e;
            l4_sync_entry_at(buf, i, &e);
            CHECK(l4_sync_add_entry(&w, &e));
        }
        size_t wlen = l4_sync_finish(&w, h.node_id, h.epoch, h.seq, KEY, sizeof KEY);
        CHECK(wlen == len);
        CHECK(memcmp(w.buf + 5, buf + 5, len - 5) == 0);
    } else {
        for (size_t i = 0; i < h.count; i++) {
            uint8_t a[16];
            l4_sync_local_at(buf, i, a);
            CHECK(memcmp(a, buf + L4_SYNC_HDR_LEN + i * 16, 16) == 0);
        }
    }

    struct l4_sync_seq before = seq;
    r = l4_sync_seq_check(&seq, h.epoch, h.seq);
    CHECK(r == L4_SYNC_OK || r == L4_SYNC_R_REPLAY);
    CHECK(seq.epoch >= before.epoch);
    if (r == L4_SYNC_R_REPLAY)
        CHECK(memcmp(&seq, &before, sizeof seq) == 0);
    else
        CHECK(seq.epoch == h.epoch && seq.last == h.seq);
    return 0;
}
