/* Internet checksums (RFC 1071, RFC 1624) for the L4 BPF programs, one copy
 * for all of them: the forwarder (IPv4 headers it builds, incremental
 * updates when it rewrites addresses and ports, ICMP errors it writes, the
 * UDP checksum of GUE over IPv6) and the decap program (checking the outer
 * IPv4 header and a GUE datagram's UDP checksum).
 *
 * Sums are over native 16-bit (or 32-bit) words: the one's complement sum
 * does not depend on byte order as long as every word is read the same way,
 * so nothing here swaps bytes.
 *
 * Assumes vmlinux.h and bpf_helpers.h are included. Every object that
 * includes it gets its own scratch map (csum_scratch) and its own copy of
 * the global function l4_sum_bytes(): include it once per program.
 */
#ifndef SLUICE_L4_BPF_CSUM_H
#define SLUICE_L4_BPF_CSUM_H

#define CSUM_CHUNK 512  /* bpf_csum_diff() sums at most 512 bytes a call */

/* The last 1..511 bytes of a span are copied here to be summed. One word
 * more than 512 bytes: the verifier bounds "(len + 3) & ~3" for
 * len <= 511 by 514, not 512. */
struct csum_tail {
    __u32 w[CSUM_CHUNK / 4 + 1];
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct csum_tail);
} csum_scratch SEC(".maps");

/* 64-bit sum of 32-bit words -> 32 bits, end-around carries kept. */
static __always_inline __u32 fold64(__u64 s)
{
    s = (s & 0xffffffff) + (s >> 32);
    s = (s & 0xffffffff) + (s >> 32);
    return (__u32)s;
}

/* The one's complement sum of `len` bytes of the packet from offset `off`
 * (RFC 1071, native words), folded to 16 bits but not inverted; -1 if the
 * bytes are not all in the frame.
 *
 * Whole 512-byte chunks are summed in place by bpf_csum_diff() (which takes
 * at most 512 bytes and a multiple of 4); the rest (1..511 bytes) is copied
 * with bpf_xdp_load_bytes() into a zeroed word-padded buffer and summed
 * there, since a packet pointer cannot be handed over with a length the
 * verifier only knows to be "at most 511". A global function: the verifier
 * checks it once, not once per call site, and its loop (up to 127 chunks:
 * any IP packet) stays out of the callers' states. */
__noinline int l4_sum_bytes(struct xdp_md *ctx, __u64 off, __u64 len)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct csum_tail *t;
    __u32 zero = 0, i;
    __u64 sum = 0;

    /* An offset below 256 keeps the end of chunk 127 (at most
     * 255 + 127 * 512) within the 64 KiB the verifier lets a packet
     * pointer move; 127 chunks and a tail cover 65535 bytes. (The
     * arguments are 64-bit: clang checks a 32-bit one on a zero-extended
     * copy, which leaves the argument itself unbounded for the verifier.) */
    if (off > 255 || len > 0xffff)
        return -1;
    for (i = 0; i < 127; i++) {
        __be32 *p = data + off;

        if (len < CSUM_CHUNK)
            break;
        if ((void *)p + CSUM_CHUNK > data_end)
            return -1;
        sum += (__u32)bpf_csum_diff(NULL, 0, p, CSUM_CHUNK, 0);
        off += CSUM_CHUNK;
        len -= CSUM_CHUNK;
    }
    if (len >= CSUM_CHUNK)
        return -1; /* (cannot happen: see above) */
    if (len) {
        t = bpf_map_lookup_elem(&csum_scratch, &zero);
        if (!t)
            return -1;
        /* The bytes between len and the next multiple of 4 must add
         * nothing: zero the last word, then copy over its front. */
        t->w[(len - 1) / 4] = 0;
        if (bpf_xdp_load_bytes(ctx, off, t->w, len))
            return -1;
        sum += (__u32)bpf_csum_diff(NULL, 0, t->w, (len + 3) & ~3u, 0);
    }
    sum = fold64(sum);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return (int)sum;
}

/* ---- folding and whole-header sums ---- */

static __always_inline __u16 csum_fold(__u32 s)
{
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    return (__u16)~s;
}

/* The checksum field of an IPv4 header without options (IHL 5): computed
 * over a header whose check field is 0, it is the value to store; over a
 * header with its checksum in place, it is 0 when that checksum is right. */
static __always_inline __u16 ip4_hdr_csum(const struct iphdr *ip)
{
    const __u16 *w = (const __u16 *)ip;
    __u32 s = 0;

#pragma unroll
    for (int i = 0; i < (int)(sizeof(*ip) / 2); i++)
        s += w[i];
    return csum_fold(s);
}

/* ---- incremental updates ---- */

/* RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'). Never produces the 0x0000 vs
 * 0xffff ambiguity of eqn. 2. */
static __always_inline void csum_replace16(__u16 *sum, __u16 old, __u16 new)
{
    __u32 s = (__u16)~*sum;

    s += (__u16)~old;
    s += new;
    *sum = csum_fold(s);
}

/* One's complement arithmetic for incremental updates: `acc` collects
 * ~old + new for every 16-bit word that changes (RFC 1624 eqn. 3), and
 * csum_apply() folds it into a checksum field. A u32 holds the sum of the
 * at most 22 words a translation touches without overflow. */
static __always_inline __u32 csum_acc16(__u32 acc, __u16 old, __u16 new)
{
    return acc + (__u16)~old + new;
}

static __always_inline __u32 csum_acc32(__u32 acc, __u32 old, __u32 new)
{
    acc = csum_acc16(acc, (__u16)old, (__u16)new);
    return csum_acc16(acc, (__u16)(old >> 16), (__u16)(new >> 16));
}

static __always_inline void csum_apply(__u16 *sum, __u32 acc)
{
    *sum = csum_fold((__u16)~*sum + acc);
}

#endif
