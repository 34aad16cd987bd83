/* Summing a span of the packet for a checksum, shared by the forwarder
 * (the UDP checksum of GUE over IPv6) and the decap program (checking it).
 * Each BPF object that includes this gets its own scratch map and its own
 * copy of the function; include it once, after vmlinux.h and
 * bpf_helpers.h. */
#ifndef SLUICE_L4_CSUM_H
#define SLUICE_L4_CSUM_H

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

#endif
