/* The wire format of l4.sync: see sync_wire.h. */
#include "l4/sync_wire.h"

#include "lib/be_bytes.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

static const char *const reject_names[L4_SYNC_R__COUNT] = {
    [L4_SYNC_OK] = "ok",
    [L4_SYNC_R_SHORT] = "short",
    [L4_SYNC_R_MAGIC] = "magic",
    [L4_SYNC_R_VERSION] = "version",
    [L4_SYNC_R_BAD_MAC] = "bad_mac",
    [L4_SYNC_R_MALFORMED] = "malformed",
    [L4_SYNC_R_REPLAY] = "replay",
    [L4_SYNC_R_UNKNOWN_PEER] = "unknown_peer",
};

const char *l4_sync_reject_name(enum l4_sync_reject r)
{
    return (unsigned)r < L4_SYNC_R__COUNT ? reject_names[r] : "unknown";
}

/* Ports travel as they are in the maps (network order), as two bytes. */
static void put_port(uint8_t *p, uint16_t be)
{
    memcpy(p, &be, 2);
}

static uint16_t get_port(const uint8_t *p)
{
    uint16_t be;
    memcpy(&be, p, 2);
    return be;
}

/* ---- writing ---- */

void l4_sync_begin(struct l4_sync_writer *w, enum l4_sync_type type)
{
    w->len = L4_SYNC_HDR_LEN;
    w->count = 0;
    w->type = (uint8_t)type;
}

static bool room(const struct l4_sync_writer *w, size_t n)
{
    return w->len + n + L4_SYNC_MAC_LEN <= sizeof w->buf;
}

bool l4_sync_add_entry(struct l4_sync_writer *w, const struct l4_sync_entry *e)
{
    if (w->type != L4_SYNC_T_ENTRIES || !room(w, L4_SYNC_ENTRY_LEN))
        return false;
    uint8_t *p = w->buf + w->len;
    memcpy(p, e->client, 16);
    put_port(p + 16, e->cport);
    memcpy(p + 18, e->vip, 16);
    put_port(p + 34, e->vport);
    p[36] = e->proto;
    p[37] = e->mode;
    p[38] = e->state;
    p[39] = e->flags;
    memcpy(p + 40, e->real, 16);
    put_port(p + 56, e->rport);
    memcpy(p + 58, e->local, 16);
    put_port(p + 74, e->lport);
    be_put32(p + 76, e->age);
    w->len += L4_SYNC_ENTRY_LEN;
    w->count++;
    return true;
}

bool l4_sync_add_local(struct l4_sync_writer *w, const uint8_t addr[16])
{
    if (w->type != L4_SYNC_T_HELLO || !room(w, 16))
        return false;
    memcpy(w->buf + w->len, addr, 16);
    w->len += 16;
    w->count++;
    return true;
}

static void mac_of(const uint8_t *buf, size_t len, const uint8_t *key, size_t keylen, uint8_t out[L4_SYNC_MAC_LEN])
{
    unsigned int n = L4_SYNC_MAC_LEN;
    if (!HMAC(EVP_sha256(), key, (int)keylen, buf, len, out, &n))
        memset(out, 0, L4_SYNC_MAC_LEN); /* cannot happen with SHA-256; never matches a real MAC by chance */
}

size_t l4_sync_finish(struct l4_sync_writer *w, uint32_t node_id, uint64_t epoch, uint64_t seq, const uint8_t *key,
                      size_t keylen)
{
    uint8_t *p = w->buf;
    memcpy(p, L4_SYNC_MAGIC, 4);
    p[4] = L4_SYNC_VERSION;
    p[5] = w->type;
    be_put16(p + 6, w->count);
    be_put32(p + 8, node_id);
    be_put64(p + 12, epoch);
    be_put64(p + 20, seq);
    mac_of(w->buf, w->len, key, keylen, w->buf + w->len);
    return w->len + L4_SYNC_MAC_LEN;
}

/* ---- reading ---- */

enum l4_sync_reject l4_sync_open(const uint8_t *buf, size_t len, const uint8_t *key, size_t keylen,
                                 struct l4_sync_hdr *h)
{
    if (len < L4_SYNC_HDR_LEN + L4_SYNC_MAC_LEN || len > L4_SYNC_MAX_DGRAM)
        return L4_SYNC_R_SHORT;
    if (memcmp(buf, L4_SYNC_MAGIC, 4) != 0)
        return L4_SYNC_R_MAGIC;
    if (buf[4] != L4_SYNC_VERSION)
        return L4_SYNC_R_VERSION;
    /* Nothing past the header is trusted before the MAC is checked. */
    uint8_t mac[L4_SYNC_MAC_LEN];
    size_t body_end = len - L4_SYNC_MAC_LEN;
    mac_of(buf, body_end, key, keylen, mac);
    if (CRYPTO_memcmp(mac, buf + body_end, L4_SYNC_MAC_LEN) != 0)
        return L4_SYNC_R_BAD_MAC;
    h->type = buf[5];
    h->count = be_get16(buf + 6);
    h->node_id = be_get32(buf + 8);
    h->epoch = be_get64(buf + 12);
    h->seq = be_get64(buf + 20);
    size_t item = h->type == L4_SYNC_T_ENTRIES ? L4_SYNC_ENTRY_LEN : h->type == L4_SYNC_T_HELLO ? 16 : 0;
    if (!item || body_end - L4_SYNC_HDR_LEN != (size_t)h->count * item || h->epoch == 0 || h->seq == 0)
        return L4_SYNC_R_MALFORMED;
    return L4_SYNC_OK;
}

void l4_sync_entry_at(const uint8_t *buf, size_t i, struct l4_sync_entry *e)
{
    const uint8_t *p = buf + L4_SYNC_HDR_LEN + i * L4_SYNC_ENTRY_LEN;
    memcpy(e->client, p, 16);
    e->cport = get_port(p + 16);
    memcpy(e->vip, p + 18, 16);
    e->vport = get_port(p + 34);
    e->proto = p[36];
    e->mode = p[37];
    e->state = p[38];
    e->flags = p[39];
    memcpy(e->real, p + 40, 16);
    e->rport = get_port(p + 56);
    memcpy(e->local, p + 58, 16);
    e->lport = get_port(p + 74);
    e->age = be_get32(p + 76);
}

void l4_sync_local_at(const uint8_t *buf, size_t i, uint8_t addr[16])
{
    memcpy(addr, buf + L4_SYNC_HDR_LEN + i * 16, 16);
}

enum l4_sync_reject l4_sync_seq_check(struct l4_sync_seq *s, uint64_t epoch, uint64_t seq)
{
    if (s->epoch == 0) {
        /* The first datagram heard: what came before is not ours to count. */
        s->epoch = epoch;
        s->last = seq;
        return L4_SYNC_OK;
    }
    if (epoch > s->epoch) {
        /* The peer restarted: its datagrams of the new epoch before this
         * one were lost. */
        s->restarts++;
        s->missed += seq - 1;
        s->epoch = epoch;
        s->last = seq;
        return L4_SYNC_OK;
    }
    if (epoch < s->epoch || seq <= s->last)
        return L4_SYNC_R_REPLAY;
    s->missed += seq - s->last - 1;
    s->last = seq;
    return L4_SYNC_OK;
}
