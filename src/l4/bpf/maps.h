/* The forwarder's load-time settings (.rodata) and maps: the state it
 * shares with the control plane (keys and values in forwarder_abi.h), its
 * counters, and per-CPU scratch space.
 *
 * Assumes vmlinux.h, bpf_helpers.h and forwarder_abi.h. Defines the maps,
 * so only forwarder.bpf.c includes it, once.
 */
#ifndef SLUICE_L4_BPF_MAPS_H
#define SLUICE_L4_BPF_MAPS_H

/* ---- load-time settings (.rodata: fixed once loaded, so the verifier and
 * the JIT see them as constants) ---- */

const volatile __u32 maglev_m = L4_MAGLEV_DEFAULT_M;            /* prime */
const volatile __u32 maglev_tables = L4_MAGLEV_DEFAULT_TABLES;
const volatile __u32 flow_seed = L4_DEFAULT_FLOW_SEED;
/* Possible CPUs, for spreading the rr cursors' starting points. */
const volatile __u32 nr_cpus = 1;

/* ---- maps (struct layouts in forwarder_abi.h) ---- */

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, L4_MAX_VIPS);
    __type(key, struct l4_vip_key);
    __type(value, struct l4_vip_meta);
} vips SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, L4_MAX_REALS);
    __type(key, __u32);
    __type(value, struct l4_real);
} reals SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, L4_MAGLEV_DEFAULT_TABLES * L4_MAGLEV_DEFAULT_M);
    __type(key, __u32);
    __type(value, __u32);
} maglev SEC(".maps");

/* Per-CPU LRU with per-CPU LRU lists: no lock shared between CPUs on the
 * insert path. DR and TUN flows stay on the CPU RSS chose for them. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
    __uint(map_flags, BPF_F_NO_COMMON_LRU);
    __uint(max_entries, L4_CONN_ENTRIES);
    __type(key, struct l4_flow_key);
    __type(value, struct l4_conn);
} conn SEC(".maps");

/* The same flows in one table shared by every CPU, consulted only when the
 * per-CPU table misses. A flow does not always stay on one CPU: RSS can be
 * re-programmed, and on veth XDP runs on the sending task's CPU, which the
 * scheduler moves. Without this, such a packet would fall back to Maglev,
 * and after a table change (a real removed, a weight changed) Maglev may
 * name another real for an established flow. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, L4_CONN_ENTRIES);
    __type(key, struct l4_flow_key);
    __type(value, struct l4_conn);
} conn_shared SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct l4_cfg);
} l4_config SEC(".maps");

/* NAT state: a common (not per-CPU) LRU, because a flow's replies come in
 * on whatever CPU the NIC's RSS picks for the real's 5-tuple, which is not
 * the client's. Both directions live here (l4_nat_key.dir). */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, L4_NAT_ENTRIES);
    __type(key, struct l4_nat_key);
    __type(value, struct l4_nat);
} nat SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, L4_MAX_SERVICES);
    __type(key, __u32);
    __type(value, struct l4_nat_pool);
} nat_pools SEC(".maps");

/* l4.sync: new NAT/FullNAT flows for user space (forwarder_abi.h). */
struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, L4_SYNC_RING_BYTES);
} sync_events SEC(".maps");

/* Scratch space for NAT: two entries, two keys and the headers the TOA
 * insert moves do not fit on the 512-byte BPF stack beside the rest.
 * Per-CPU, and an XDP program runs to completion on its CPU, so nothing
 * else uses it meanwhile. */
#define TOA_HDR_MAX (18 + 40 + 60)
struct nat_scratch {
    struct l4_nat in, out;       /* the values being built */
    struct l4_nat_key ik, ok;    /* IN and OUT keys */
    __u8 buf[TOA_HDR_MAX + 2];   /* headers moved by the TOA insert */
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct nat_scratch);
} scratch SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct l4_flood);
} flood SEC(".maps");


/* rr and wrr: per-CPU, so taking the next slot needs no atomic and no
 * shared cache line; each CPU walks the table on its own. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, L4_MAX_SERVICES);
    __type(key, __u32);
    __type(value, struct l4_rr_cursor);
} rr_cursor SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, L4_MAX_SERVICES);
    __type(key, __u32);
    __type(value, struct l4_counter);
} vip_stats SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, L4_MAX_REALS);
    __type(key, __u32);
    __type(value, struct l4_counter);
} real_stats SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, L4_R__COUNT);
    __type(key, __u32);
    __type(value, struct l4_counter);
} reasons SEC(".maps");

#endif
