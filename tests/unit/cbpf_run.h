/* A classic-BPF interpreter with just what the HA probe's socket filter
 * uses (src/ha/probe_packet.c): the unit test and the fuzz target run the
 * filter with it on packets, to check what it lets through. */
#ifndef SLUICE_TESTS_CBPF_RUN_H
#define SLUICE_TESTS_CBPF_RUN_H

#include <linux/filter.h>
#include <stddef.h>
#include <stdint.h>

/* Enough of classic BPF for the probe's filter; -1 for anything else or
 * a read past the packet (the kernel returns 0 then: drop). */
static inline int64_t run_filter(const struct sock_filter *prog, size_t n, const uint8_t *pkt, size_t len)
{
    uint32_t a = 0, x = 0;
    for (size_t pc = 0; pc < n; pc++) {
        const struct sock_filter *f = &prog[pc];
        uint32_t off = f->k;
        switch (f->code) {
        case BPF_LD | BPF_B | BPF_IND:
        case BPF_LD | BPF_H | BPF_IND:
            off += x;
            /* fall through */
        case BPF_LD | BPF_B | BPF_ABS:
        case BPF_LD | BPF_H | BPF_ABS:
        case BPF_LD | BPF_W | BPF_ABS: {
            size_t size = BPF_SIZE(f->code) == BPF_B ? 1 : BPF_SIZE(f->code) == BPF_H ? 2 : 4;
            if (off + size > len)
                return 0;
            a = 0;
            for (size_t i = 0; i < size; i++)
                a = a << 8 | pkt[off + i];
            break;
        }
        case BPF_LDX | BPF_B | BPF_MSH:
            if (off >= len)
                return 0;
            x = 4u * (pkt[off] & 0x0f);
            break;
        case BPF_LDX | BPF_W | BPF_IMM:
            x = f->k;
            break;
        case BPF_ALU | BPF_AND | BPF_K:
            a &= f->k;
            break;
        case BPF_JMP | BPF_JEQ | BPF_K:
            pc += a == f->k ? f->jt : f->jf;
            break;
        case BPF_JMP | BPF_JGE | BPF_K:
            pc += a >= f->k ? f->jt : f->jf;
            break;
        case BPF_JMP | BPF_JGT | BPF_K:
            pc += a > f->k ? f->jt : f->jf;
            break;
        case BPF_JMP | BPF_JSET | BPF_K:
            pc += (a & f->k) ? f->jt : f->jf;
            break;
        case BPF_RET | BPF_K:
            return f->k;
        default:
            return -1;
        }
    }
    return -1; /* fell off the end: the kernel would refuse the program */
}

#endif
