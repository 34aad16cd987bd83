#!/bin/bash
# bench/l4.sh: the L4 forwarder's benchmark (issue 3, item 16).
#
# (a) ns/packet through BPF_PROG_TEST_RUN (build/l4/l4_bench, `make
#     bench-l4-floor`) for a connection-table hit and a miss per mode, beside
#     the MAC-swap XDP_TX floor, with ratios.
# (b) End to end on veth: trafgen (Debian's netsniff-ng) sends 64-byte UDP
#     frames to a VIP; the LB namespace forwards them to a sink namespace
#     either with `sluice l4 -c` (XDP, DR mode) or with the kernel and an
#     nftables DNAT rule; a drop-only baseline (XDP_DROP on the LB's
#     receiving interface) and a forwarding floor (an XDP program that only
#     rewrites the MACs and sends the frame on the way Sluice does) run in
#     the same rounds. The sink counts and drops what arrives (an XDP
#     counter), so pps is what got through. Because the generator shares
#     the machine's cores, each variant's cost is whole-machine busy CPU
#     time (/proc/stat) / packets, and its marginal cost is that minus the
#     baseline's (same topology, same round). Kernel time only (system,
#     irq, softirq) is printed too; so is the busy time of trafgen's own
#     CPU only (its workers are pinned; on veth the receivers' XDP and
#     NAPI run on the sender's CPU, so that is where the whole path runs,
#     and work on the other CPU stays out of it); and "other": user time
#     that is neither trafgen's nor sluice's. Medians over all rounds, and over the quiet
#     ones (in all four measurements of the topology, other <= 0.05 CPU
#     and busy <= trafgen's CPUs + 0.1: everything runs on trafgen's CPU,
#     so more is someone else's work; trafgen's CPU >= 90 % busy, i.e. the
#     generator did not stall) when there are any; then one summary line per topology with the
#     Sluice / nft ratio of marginal costs against the 1/3 aim.
#
# Topologies (namespaces created here, removed on exit), TOPOLOGY=
#
#   two-arm: gen 10.0.1.2 eth0 <-veth-> eth0 10.0.1.5  lb  eth1 10.0.2.5 <-veth-> eth0 10.0.2.11 sink
#     No bridge. `sluice l4` is attached to eth0 and eth1 with
#     l4.tx_interface eth1: forwarded frames leave by bpf_redirect to eth1
#     (its MAC as source) and reach the sink as XDP frames (veth
#     ndo_xdp_xmit; the sink's XDP program gives its veth the NAPI that
#     needs). nftables: DNAT in lb, ip_forward=1, out eth1 by the connected
#     route. The floor: MAC rewrite + bpf_redirect to eth1. Static
#     neighbour entries on both sides of lb (no ARP in any variant).
#
#   bridge (one-arm, the integration tests' DR topology):
#     gen  10.0.0.2  --+
#     lb   10.0.0.5  --+-- br0 (in namespace "sw")
#     sink 10.0.0.11 --+
#     Forwarded frames go back out of lb0 (XDP_TX; the floor too), through
#     the bridge to the sink; the LB's bridge port runs a pass-all XDP
#     program so that veth delivers XDP_TX frames.
#
#   both (default): the two, built side by side, each round running
#     sluice, nft, drop, fwd on two-arm, then on bridge, then an idle
#     sample (no traffic: the machine's background). About 70 s a round
#     with the defaults.
#
#   VIP 10.0.0.100/32 on lb's lo in both (DR: the sink never answers, it
#   drops in XDP, so it does not need the VIP).
#
# Needs root, iproute2, clang, bpftool, trafgen (netsniff-ng), nft (nftables),
# jq, pgrep (procps), python3, and native XDP on veth.
#
# Environment: TOPOLOGY (both | two-arm | bridge), ROUNDS (3), DURATION (5 s
# per measurement), WARMUP (1 s), FLOWS (256 source ports), TRAFGEN_CPUS
# (1), SKIP_FLOOR=1 to skip (a), SKIP_E2E=1 to skip (b).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
FLOWS=${FLOWS:-256}
TRAFGEN_CPUS=${TRAFGEN_CPUS:-1}
TOPOLOGY=${TOPOLOGY:-both}
SLUICE=${SLUICE:-$ROOT/build/sluice}

say() { printf '%s\n' "$*" >&2; }
die() { say "l4.sh: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (network namespaces, XDP)"

# ---------------------------------------------------------------- (a) floor
FLOOR_OUT=""
if [ "${SKIP_FLOOR:-0}" != 1 ]; then
    echo "== (a) BPF_PROG_TEST_RUN: ns/packet beside the MAC-swap floor"
    make -C "$ROOT" -s build/l4/l4_bench >&2
    FLOOR_OUT=$(timeout 600 "$ROOT/build/l4/l4_bench")
    echo "$FLOOR_OUT"
    python3 - "$FLOOR_OUT" <<'EOF'
import re, sys
text = sys.argv[1]
rep = text.split("single runs")[0]
def ns(section, label):
    m = re.search(re.escape(label) + r"[^\n]*?\s([\d.]+) ns/packet", section)
    return float(m.group(1)) if m else None
floor = ns(rep, "floor: MAC swap")
hit = ns(rep, "DR, conn-table hit")
miss = ns(rep, "DR, miss")
print()
print("summary (repeat mode): floor %.1f ns, DR hit %.1f ns (%.1fx floor), DR miss %.1f ns (%.1fx floor)"
      % (floor, hit, hit / floor, miss, miss / floor))
print("aim: table hit within 8x the floor: %s (%.1fx; %.1f ns of headroom below 8x)"
      % ("MET" if hit <= 8 * floor else "NOT MET", hit / floor, 8 * floor - hit))
EOF
fi
[ "${SKIP_E2E:-0}" = 1 ] && exit 0

# ---------------------------------------------------------------- (b) veth
for t in ip clang bpftool trafgen nft jq pgrep python3; do
    command -v "$t" >/dev/null || die "needs $t (apt-get install iproute2 clang bpftool netsniff-ng nftables jq procps python3)"
done
[ -x "$SLUICE" ] || make -C "$ROOT" -s build/sluice >&2

case $TOPOLOGY in
    both) TOPOS="twoarm bridge" ;;
    two-arm|twoarm) TOPOS=twoarm ;;
    bridge) TOPOS=bridge ;;
    *) die "TOPOLOGY must be bridge, two-arm or both, not '$TOPOLOGY'" ;;
esac

TAG=sl4b$(( $$ % 10000 ))
VIP=10.0.0.100
ADMIN_PORT=9941
WORK=$(mktemp -d /tmp/sl4bench-XXXXXX)   # no dot: libbpf turns dots in pin paths into underscores
BPFFS=$WORK/bpffs
NAMESPACES=()
SLUICE_PID="" TG_PID=""   # only while running: the trap ends these, nothing else
MOUNTED=0

cleanup() {
    set +e
    for p in $SLUICE_PID $TG_PID; do
        kill "$p" 2>/dev/null && { for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done; kill -9 "$p" 2>/dev/null; }
    done
    wait 2>/dev/null
    # the forwarder a stopped sluice l4 left attached (deleting the
    # namespace would take it off too, with its interface)
    [ -z "$SLUICE_T" ] || nsx "${NSL[$SLUICE_T]}" "$SLUICE" l4 detach --pin-dir "$BPFFS/$SLUICE_T/sluice" >/dev/null
    for (( i=${#NAMESPACES[@]}-1; i>=0; i-- )); do ip netns del "${NAMESPACES[i]}" 2>/dev/null; done
    [ "$MOUNTED" = 1 ] && umount "$BPFFS" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
add_ns() { ip netns add "$1"; NAMESPACES+=("$1"); nsx "$1" ip link set lo up; }
veth_pair() {   # ns1 if1 ns2 if2: a 2-queue veth pair between two namespaces
    ip link add "$2" netns "$1" numtxqueues 2 numrxqueues 2 type veth \
        peer name "$4" netns "$3" numtxqueues 2 numrxqueues 2
}
if_up() {   # ns ifname [addr/len]
    [ -z "${3:-}" ] || nsx "$1" ip addr add "$3" dev "$2"
    nsx "$1" ip link set "$2" up
}
mac_of() { nsx "$1" cat "/sys/class/net/$2/address"; }
cbytes() { echo "0x${1//:/,0x}"; }

echo
echo "== (b) end to end on veth: trafgen -> LB -> sink (topologies: $TOPOS)"
ARCH_INC=/usr/include/$(uname -m)-linux-gnu
bpfcc() { clang -O2 -g -target bpf -I"$ARCH_INC" -Wall "$@"; }
for f in count_drop pass; do
    bpfcc -c "$ROOT/bench/l4/$f.bpf.c" -o "$WORK/$f.o"
done
mkdir -p "$BPFFS"
mount -t bpf bpf "$BPFFS"; MOUNTED=1

# Per topology T: namespaces NSG[T] (generator), NSL[T] (LB), NSS[T]
# (sink); LBIN[T], the LB's interface the generator's frames arrive on
# (where the baseline and the floor attach); files under $WORK/T and pins
# under $BPFFS/T.
declare -A NSG NSL NSS LBIN SINKIP GENIP
SPORT_LO=1024 SPORT_HI=$((1024 + FLOWS - 1))

topo_files() {   # T lb-in-mac gen-mac lb-ifaces tx-line fwd-defines...: templates, programs, pins
    local t=$1 lbmac=$2 genmac=$3 ifaces=$4 txline=$5; shift 5
    local d=$WORK/$t p=$BPFFS/$t
    mkdir -p "$d" "$p/sink_maps" "$p/drop_maps"
    for f in gen.trafgen sluice.yaml nft.conf; do
        sed -e "s/@LB_MAC@/$lbmac/g; s/@GEN_MAC@/$genmac/g; s/@GEN_IP@/${GENIP[$t]}/g; s/@VIP@/$VIP/g" \
            -e "s/@SINK_IP@/${SINKIP[$t]}/g; s/@SPORT_LO@/$SPORT_LO/g; s/@SPORT_HI@/$SPORT_HI/g" \
            -e "s/@ADMIN_PORT@/$ADMIN_PORT/g; s/@LB_IFACES@/$ifaces/g; s/^@TX_INTERFACE_LINE@\$/$txline/" \
            "$ROOT/bench/l4/$f.in" > "$d/$f"
    done
    mv "$d/gen.trafgen" "$d/gen.cfg"
    "$SLUICE" check -c "$d/sluice.yaml" >&2
    bpfcc "$@" -c "$ROOT/bench/l4/fwd_floor.bpf.c" -o "$d/fwd_floor.o"
    # The sink's counter (stays attached throughout); the baseline's and the
    # forwarding floor (loaded now, attached to LBIN only during their runs).
    bpftool prog load "$WORK/count_drop.o" "$p/sink" type xdp pinmaps "$p/sink_maps"
    bpftool prog load "$WORK/count_drop.o" "$p/drop" type xdp pinmaps "$p/drop_maps"
    bpftool prog load "$d/fwd_floor.o" "$p/fwd" type xdp
    nsx "${NSS[$t]}" ip link set dev eth0 xdpdrv pinned "$p/sink"
}

# One-arm: gen 10.0.0.2, lb 10.0.0.5 (lb0), sink 10.0.0.11, each on a veth
# into br0 in namespace "sw"; forwarded frames go back out of lb0.
setup_bridge() {
    local t=bridge sw=${TAG}sw
    NSG[$t]=${TAG}gen NSL[$t]=${TAG}lb NSS[$t]=${TAG}sink LBIN[$t]=lb0
    GENIP[$t]=10.0.0.2 SINKIP[$t]=10.0.0.11
    add_ns "$sw"
    nsx "$sw" ip link add br0 type bridge
    nsx "$sw" ip link set br0 up
    add_ns "${NSG[$t]}"; add_ns "${NSL[$t]}"; add_ns "${NSS[$t]}"
    veth_pair "${NSG[$t]}" eth0 "$sw" "${TAG}genp"
    veth_pair "${NSL[$t]}" lb0 "$sw" "${TAG}lbp"
    veth_pair "${NSS[$t]}" eth0 "$sw" "${TAG}sinkp"
    for p in "${TAG}genp" "${TAG}lbp" "${TAG}sinkp"; do nsx "$sw" ip link set "$p" master br0 up; done
    if_up "${NSG[$t]}" eth0 10.0.0.2/24
    if_up "${NSL[$t]}" lb0 10.0.0.5/24
    if_up "${NSS[$t]}" eth0 10.0.0.11/24
    nsx "${NSL[$t]}" ip addr add "$VIP/32" dev lo
    for k in all.send_redirects lb0.send_redirects; do nsx "${NSL[$t]}" sysctl -q -w "net.ipv4.conf.$k=0"; done
    # veth passes XDP_TX frames to its peer only if the peer runs NAPI (an
    # XDP program): a pass-all one on the LB's bridge port, in every variant.
    nsx "$sw" ip link set dev "${TAG}lbp" xdpdrv obj "$WORK/pass.o" sec xdp
    local lbmac genmac sinkmac
    lbmac=$(mac_of "${NSL[$t]}" lb0); genmac=$(mac_of "${NSG[$t]}" eth0); sinkmac=$(mac_of "${NSS[$t]}" eth0)
    # The LB's neighbour entry for the sink, fixed, so that no variant waits
    # for ARP (the generator's frames carry the LB's MAC already).
    nsx "${NSL[$t]}" ip neigh replace "${SINKIP[$t]}" lladdr "$sinkmac" dev lb0 nud permanent
    topo_files "$t" "$lbmac" "$genmac" lb0 "  # one-arm: no tx_interface, forwarded frames leave by XDP_TX" \
        -DSINK_MAC="$(cbytes "$sinkmac")" -DLB_MAC="$(cbytes "$lbmac")"
}

# Two-arm: gen eth0 10.0.1.2 <-veth-> lb eth0 10.0.1.5; lb eth1 10.0.2.5
# <-veth-> sink eth0 10.0.2.11; no bridge. Forwarded frames leave by eth1
# (bpf_redirect for XDP, routing for the kernel).
setup_twoarm() {
    local t=twoarm
    NSG[$t]=${TAG}2gen NSL[$t]=${TAG}2lb NSS[$t]=${TAG}2sink LBIN[$t]=eth0
    GENIP[$t]=10.0.1.2 SINKIP[$t]=10.0.2.11
    add_ns "${NSG[$t]}"; add_ns "${NSL[$t]}"; add_ns "${NSS[$t]}"
    veth_pair "${NSG[$t]}" eth0 "${NSL[$t]}" eth0
    veth_pair "${NSL[$t]}" eth1 "${NSS[$t]}" eth0
    if_up "${NSG[$t]}" eth0 10.0.1.2/24
    if_up "${NSL[$t]}" eth0 10.0.1.5/24
    if_up "${NSL[$t]}" eth1 10.0.2.5/24
    if_up "${NSS[$t]}" eth0 10.0.2.11/24
    nsx "${NSL[$t]}" ip addr add "$VIP/32" dev lo
    for k in all.send_redirects eth0.send_redirects eth1.send_redirects; do
        nsx "${NSL[$t]}" sysctl -q -w "net.ipv4.conf.$k=0"
    done
    local inmac outmac genmac sinkmac txidx
    inmac=$(mac_of "${NSL[$t]}" eth0); outmac=$(mac_of "${NSL[$t]}" eth1)
    genmac=$(mac_of "${NSG[$t]}" eth0); sinkmac=$(mac_of "${NSS[$t]}" eth0)
    txidx=$(nsx "${NSL[$t]}" cat /sys/class/net/eth1/ifindex)
    # Fixed neighbour entries on both sides of the LB: no ARP in any variant.
    nsx "${NSL[$t]}" ip neigh replace "${SINKIP[$t]}" lladdr "$sinkmac" dev eth1 nud permanent
    nsx "${NSL[$t]}" ip neigh replace "${GENIP[$t]}" lladdr "$genmac" dev eth0 nud permanent
    # The sink's XDP program (topo_files) is also what lets veth eth1 send
    # the XDP frames redirected to it (ndo_xdp_xmit needs NAPI on the peer).
    topo_files "$t" "$inmac" "$genmac" "eth0, eth1" "  tx_interface: eth1" \
        -DSINK_MAC="$(cbytes "$sinkmac")" -DLB_MAC="$(cbytes "$outmac")" -DTX_IFINDEX="$txidx"
}

for t in $TOPOS; do "setup_$t"; done

counter() {   # pinned per-CPU counter -> sum
    bpftool map lookup pinned "$1" key 0 0 0 0 -j |
        jq '[.formatted.values[].value] | add'
}
busy_ticks() {   # whole machine, jiffies: busy (user nice system irq softirq;
                 # not idle, iowait or steal), kernel (system irq softirq)
    awk '/^cpu /{print $2+$3+$4+$7+$8, $4+$7+$8, $2+$3}' /proc/stat
}
cpu_ticks() {   # "N M ...": busy jiffies (as busy_ticks) of those CPUs together
    awk -v want=" $* " '/^cpu[0-9]/{n=substr($1,4); if (index(want, " " n " ")) b+=$2+$3+$4+$7+$8} END{print b+0}' /proc/stat
}
utime() {   # user jiffies of processes (gone ones count 0)
    local p t=0 u
    for p in "$@"; do
        u=$(awk '{print $14}' "/proc/$p/stat" 2>/dev/null) && t=$((t + ${u:-0}))
    done
    echo "$t"
}

SLUICE_PID="" SLUICE_T=""
start_sluice() {   # T
    local log=$WORK/$1/sluice.log
    : > "$log"
    SLUICE_T=$1
    ip netns exec "${NSL[$1]}" "$SLUICE" l4 -c "$WORK/$1/sluice.yaml" --pin-dir "$BPFFS/$1/sluice" >"$log" 2>&1 &
    SLUICE_PID=$!
    for _ in $(seq 100); do
        kill -0 "$SLUICE_PID" 2>/dev/null || { cat "$log" >&2; die "sluice l4 exited ($1)"; }
        # the tables filled, then attached ("running" comes last)
        if grep -q "weights .*=1" "$log" && grep -q "sluice l4 running" "$log"; then
            # a real whose next hop is not where the frames are sent is a
            # setup error here, not a figure
            ! grep -qi "warn" "$log" || { cat "$log" >&2; die "sluice l4 warned ($1)"; }
            [ "$1" != twoarm ] || grep -q "leave through eth1" "$log" ||
                { cat "$log" >&2; die "sluice l4 did not take l4.tx_interface eth1"; }
            return 0
        fi
        sleep 0.1
    done
    cat "$log" >&2; die "sluice l4 did not become ready in 10 s ($1)"
}
# sluice l4 leaves the forwarder attached when it exits (a pinned link, so
# that restarts keep flows); the other variants attach their own programs
# to the same interface, so take it off. The maps stay pinned for the next
# round.
stop_sluice() {
    kill -TERM "$SLUICE_PID"
    for _ in $(seq 50); do kill -0 "$SLUICE_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SLUICE_PID" 2>/dev/null || true
    wait "$SLUICE_PID" 2>/dev/null || true
    SLUICE_PID=""
    nsx "${NSL[$SLUICE_T]}" "$SLUICE" l4 detach --pin-dir "$BPFFS/$SLUICE_T/sluice" >/dev/null ||
        die "sluice l4 detach failed ($SLUICE_T)"
    SLUICE_T=""
}

# One measurement: trafgen runs WARMUP + DURATION (+ slack, bounded by
# timeout); counter and /proc/stat are sampled over the DURATION window.
# Also: "other", user time of the machine not spent by trafgen or sluice l4
# (a busy loop, a compiler, tests): the disturbance indicator.
measure() {   # T variant counter-pin -> prints "T variant packets seconds busy_s kernel_s other_s gencpu_s"
    local t=$1 variant=$2 pin=$3
    timeout -s INT $((WARMUP + DURATION + 3)) ip netns exec "${NSG[$t]}" \
        trafgen --dev eth0 --conf "$WORK/$t/gen.cfg" --cpus "$TRAFGEN_CPUS" >"$WORK/trafgen.log" 2>&1 &
    TG_PID=$!
    sleep "$WARMUP"
    local c0 c1 b0 k0 u0 b1 k1 u1 s0 s1 tp tu0 tu1 su0 su1 g0 g1 w wk gcpus=""
    tp=$(pgrep -P "$TG_PID" | head -1 || true)           # trafgen (timeout's child)
    if [ -n "$tp" ]; then
        wk=$(pgrep -P "$tp" | tr '\n' ' ' || true)      # its workers, each pinned to a CPU
        for w in $wk; do
            gcpus="$gcpus $(awk '/^Cpus_allowed_list:/{print $2}' "/proc/$w/status" 2>/dev/null || true)"
        done
        tp="$tp $wk"
    fi
    # trafgen's CPUs (workers pinned to single CPUs), else all of them
    [[ "$gcpus" =~ [0-9] && ! "$gcpus" =~ [^0-9\ ] ]] || gcpus=$(seq 0 $(( $(nproc) - 1 )) | tr '\n' ' ')
    # counter first, then the clock and /proc/stat, at both ends: the two
    # windows have the same length, and only one counter read (bpftool, a
    # few ms of CPU) falls inside the CPU window
    c0=$(counter "$pin"); tu0=$(utime $tp); su0=$(utime $SLUICE_PID); g0=$(cpu_ticks $gcpus); read -r b0 k0 u0 < <(busy_ticks); s0=$(date +%s.%N)
    sleep "$DURATION"
    c1=$(counter "$pin"); tu1=$(utime $tp); su1=$(utime $SLUICE_PID); g1=$(cpu_ticks $gcpus); read -r b1 k1 u1 < <(busy_ticks); s1=$(date +%s.%N)
    kill -INT "$TG_PID" 2>/dev/null || true
    wait "$TG_PID" 2>/dev/null || true
    TG_PID=""
    if [ $((c1 - c0)) -le 0 ]; then
        say "l4.sh: no packets counted ($t, $variant); trafgen said:"; tail -5 "$WORK/trafgen.log" >&2
        [ -z "$SLUICE_PID" ] || { say "sluice l4 said:"; cat "$WORK/$t/sluice.log" >&2; }
        die "no packets: the $t topology does not forward in variant $variant"
    fi
    local hz; hz=$(getconf CLK_TCK)
    echo "$t $variant $((c1 - c0)) $(python3 -c "print($s1-$s0)") $(python3 -c "print(($b1-$b0)/$hz)") $(python3 -c "print(($k1-$k0)/$hz)") $(python3 -c "print(max(0, ($u1-$u0)-($tu1-$tu0)-($su1-$su0))/$hz)") $(python3 -c "print(($g1-$g0)/$hz)")"
}
idle_sample() {   # background load, no traffic
    local b0 k0 u0 b1 k1 u1 hz; hz=$(getconf CLK_TCK)
    read -r b0 k0 u0 < <(busy_ticks); sleep "$DURATION"; read -r b1 k1 u1 < <(busy_ticks)
    echo "- idle 0 $DURATION $(python3 -c "print(($b1-$b0)/$hz)") $(python3 -c "print(($k1-$k0)/$hz)") $(python3 -c "print(($u1-$u0)/$hz)") 0"
}

run_sluice() {   # T
    start_sluice "$1"
    measure "$1" sluice "$BPFFS/$1/sink_maps/pkts"
    stop_sluice
}
run_nft() {   # T
    nsx "${NSL[$1]}" sysctl -q -w net.ipv4.ip_forward=1
    nsx "${NSL[$1]}" nft -f "$WORK/$1/nft.conf"
    measure "$1" nft "$BPFFS/$1/sink_maps/pkts"
    nsx "${NSL[$1]}" nft delete table ip sl4bench
    nsx "${NSL[$1]}" sysctl -q -w net.ipv4.ip_forward=0
}
run_fwd() {   # T
    nsx "${NSL[$1]}" ip link set dev "${LBIN[$1]}" xdpdrv pinned "$BPFFS/$1/fwd"
    measure "$1" fwd "$BPFFS/$1/sink_maps/pkts"
    nsx "${NSL[$1]}" ip link set dev "${LBIN[$1]}" xdpdrv off
}
run_drop() {   # T
    nsx "${NSL[$1]}" ip link set dev "${LBIN[$1]}" xdpdrv pinned "$BPFFS/$1/drop"
    measure "$1" drop "$BPFFS/$1/drop_maps/pkts"
    nsx "${NSL[$1]}" ip link set dev "${LBIN[$1]}" xdpdrv off
}

# (c) The XDP program's own time on the real path: with
# kernel.bpf_stats_enabled the kernel times every run of the program at the
# LB's input interface (run_time_ns / run_cnt). Unlike the whole-machine
# figures of (b) this does not move with background work; it includes the
# stats' own clock reads (the same for each program; the drop program,
# which does almost nothing, shows their size). PROG_STATS=0 skips it.
prog_run_ns() {   # T variant: one DURATION of traffic; prints "T variant ns/run runs"
    local t=$1 variant=$2 id a0 a1 n0 n1
    id=$(nsx "${NSL[$t]}" ip -j link show dev "${LBIN[$t]}" | jq -r '.[0].xdp.prog.id // empty')
    [ -n "$id" ] || die "no XDP program on ${LBIN[$t]} ($t, $variant)"
    timeout -s INT $((WARMUP + DURATION + 3)) ip netns exec "${NSG[$t]}" \
        trafgen --dev eth0 --conf "$WORK/$t/gen.cfg" --cpus "$TRAFGEN_CPUS" >"$WORK/trafgen.log" 2>&1 &
    TG_PID=$!
    sleep "$WARMUP"
    read -r a0 n0 < <(bpftool prog show id "$id" -j | jq -r '"\(.run_time_ns // 0) \(.run_cnt // 0)"')
    sleep "$DURATION"
    read -r a1 n1 < <(bpftool prog show id "$id" -j | jq -r '"\(.run_time_ns // 0) \(.run_cnt // 0)"')
    kill -INT "$TG_PID" 2>/dev/null || true
    wait "$TG_PID" 2>/dev/null || true
    TG_PID=""
    [ $((n1 - n0)) -gt 0 ] || die "no runs of the program ($t, $variant)"
    echo "$t $variant $(python3 -c "print('%.1f' % (($a1-$a0)/($n1-$n0)))") $((n1 - n0))"
}
prog_stats() {
    local t v was
    was=$(sysctl -n kernel.bpf_stats_enabled)
    sysctl -q -w kernel.bpf_stats_enabled=1
    say "(c) the program's own ns per run at the LB's input (kernel.bpf_stats_enabled), $DURATION s each"
    for t in $TOPOS; do
        start_sluice "$t"; prog_run_ns "$t" sluice >> "$WORK/progstats"; stop_sluice
        nsx "${NSL[$t]}" ip link set dev "${LBIN[$t]}" xdpdrv pinned "$BPFFS/$t/fwd"
        prog_run_ns "$t" floor >> "$WORK/progstats"
        nsx "${NSL[$t]}" ip link set dev "${LBIN[$t]}" xdpdrv pinned "$BPFFS/$t/drop" 2>/dev/null ||
            { nsx "${NSL[$t]}" ip link set dev "${LBIN[$t]}" xdpdrv off;
              nsx "${NSL[$t]}" ip link set dev "${LBIN[$t]}" xdpdrv pinned "$BPFFS/$t/drop"; }
        prog_run_ns "$t" drop >> "$WORK/progstats"
        nsx "${NSL[$t]}" ip link set dev "${LBIN[$t]}" xdpdrv off
    done
    sysctl -q -w kernel.bpf_stats_enabled="$was"
}

RESULTS=$WORK/results
: > "$RESULTS"
: > "$WORK/progstats"
T0=$(date +%s)
say "per measurement: round topology variant packets seconds busy-CPU-s kernel-CPU-s other-user-CPU-s trafgen's-CPU-busy-s"
say "rounds: $ROUNDS x (per topology [$TOPOS]: sluice, nft, drop, fwd; then idle), $DURATION s each, trafgen on $TRAFGEN_CPUS CPU, $FLOWS flows"
for r in $(seq "$ROUNDS"); do
    for t in $TOPOS; do
        for v in sluice nft drop fwd; do
            # (no command substitution: it would run in a subshell, and the
            # cleanup trap would not know the processes started there)
            "run_$v" "$t" > "$WORK/line"
            line=$(cat "$WORK/line")
            echo "$r $line" >> "$RESULTS"
            say "  round $r: $line"
        done
    done
    idle_sample > "$WORK/line"
    line=$(cat "$WORK/line")
    echo "$r $line" >> "$RESULTS"
    say "  round $r: $line"
done
say "(b) took $(( $(date +%s) - T0 )) s"
[ "${PROG_STATS:-1}" = 0 ] || prog_stats
echo
python3 - "$RESULTS" "$TOPOS" "$TRAFGEN_CPUS" <<'EOF'
import statistics as st, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
topos = sys.argv[2].split()
ncpu = int(sys.argv[3])         # trafgen's CPUs
by = {}
for r, t, v, pk, sec, busy, kern, other, gen in rows:
    by.setdefault((t, v), []).append((int(r), int(pk), float(sec), float(busy), float(kern), float(other), float(gen)))
idle = {r: (busy / sec, o / sec) for r, _, sec, busy, _, o, _ in by[("-", "idle")]}
V = ("sluice", "nft", "fwd", "drop")
TITLE = {"twoarm": "two-arm (gen -> lb eth0, lb eth1 -> sink; no bridge)",
         "bridge": "one-arm bridge (gen, lb, sink on br0)"}
NAMES = {
    "twoarm": {"sluice": "Sluice XDP DR, redirect eth1", "nft": "kernel fwd + nft DNAT",
               "fwd": "XDP MAC + redirect (floor)", "drop": "XDP_DROP at LB (baseline)"},
    "bridge": {"sluice": "Sluice XDP DR, XDP_TX", "nft": "kernel fwd + nft DNAT",
               "fwd": "XDP MAC + XDP_TX (floor)", "drop": "XDP_DROP at LB (baseline)"},
}
print("background without traffic: %.2f busy CPUs (median; per round %s; other user time %s)" % (
    st.median(b for b, _ in idle.values()), ", ".join("%.2f" % idle[r][0] for r in sorted(idle)),
    ", ".join("%.2f" % idle[r][1] for r in sorted(idle))))
summary = []
for t in topos:
    res = {}
    for v in V:
        res[v] = {r: dict(pps=pk / sec, ns=busy * 1e9 / pk, kns=kern * 1e9 / pk, gns=gen * 1e9 / pk, cpu=busy / sec,
                          other=other / sec, gcpu=gen / sec)
                  for r, pk, sec, busy, kern, other, gen in by[(t, v)]}
    for v in V:
        for r, d in res[v].items():          # above the same round's baseline
            d["marg"] = d["ns"] - res["drop"][r]["ns"]
            d["kmarg"] = d["kns"] - res["drop"][r]["kns"]
            d["gmarg"] = d["gns"] - res["drop"][r]["gns"]
            d["fmarg"] = d["kns"] - res["fwd"][r]["kns"]    # kernel time above the forwarding floor
    # a round is quiet (for this topology) when none of its four
    # measurements had more than 5 % of a CPU of other user time, nor more
    # than 0.1 CPU busy beyond trafgen's CPUs: the whole path runs on the
    # generator's CPU (veth runs the receiver's XDP and NAPI where the
    # sender is), so more busy CPU than that is someone else's work, in
    # the kernel too (a verifier run, other namespaces' traffic), which
    # "other" does not see. The idle sample enters no figure; it is printed.
    allr = sorted(res["drop"])
    # (and trafgen kept its CPUs busy, >= 90 %: a generator that stalled,
    # as seen once on veth, makes a round unusable too)
    quiet = [r for r in allr if all(res[v][r]["other"] <= 0.05 and res[v][r]["cpu"] <= ncpu + 0.1 and
                                    res[v][r]["gcpu"] >= 0.9 * ncpu for v in V)]
    print()
    print("######## topology: %s" % TITLE[t])
    print("other user time (CPUs) per round: " + "; ".join(
        "%d: %s" % (r, " ".join("%s %.2f" % (v, res[v][r]["other"]) for v in V)) for r in allr))
    print("busy CPUs per round: " + "; ".join(
        "%d: %s" % (r, " ".join("%s %.2f" % (v, res[v][r]["cpu"]) for v in V)) for r in allr))
    print("trafgen's CPUs busy per round: " + "; ".join(
        "%d: %s" % (r, " ".join("%s %.2f" % (v, res[v][r]["gcpu"]) for v in V)) for r in allr))
    print("quiet rounds (other <= 0.05 CPU, busy <= %.1f CPUs, trafgen's CPUs >= %.1f busy, throughout): %s"
          % (ncpu + 0.1, 0.9 * ncpu, ", ".join(map(str, quiet)) or "none"))
    print("per round (pps / ns/pkt / marginal):")
    for v in V:
        print("  %-8s %s" % (v, "; ".join("%.0f / %.0f / %.0f" % (d["pps"], d["ns"], d["marg"])
                                          for _, d in sorted(res[v].items()))))

    def report(rounds, title):
        med = lambda v, k: st.median(res[v][r][k] for r in rounds)
        print()
        print("== %s, %s: medians of %d round(s) [%s]; ns = busy CPU time of the whole machine / packets counted"
              % (t, title, len(rounds), ",".join(map(str, rounds))))
        print("%-29s %9s %8s %9s %10s %11s %6s" % ("", "pps", "ns/pkt", "marginal", "kernel ns", "kern. marg.", "CPUs"))
        for v in V:
            print("%-29s %9.0f %8.0f %9.0f %10.0f %11.0f %6.2f" % (NAMES[t][v], med(v, "pps"), med(v, "ns"), med(v, "marg"),
                                                               med(v, "kns"), med(v, "kmarg"), med(v, "cpu")))
        print("pps, Sluice / nft DNAT: %.2fx" % (med("sluice", "pps") / med("nft", "pps")))
        for key, what in (("marg", "whole machine"), ("kmarg", "kernel time only (sys+irq+softirq)"),
                          ("gmarg", "busy time of trafgen's CPU only"),
                          ("fmarg", "kernel time above the XDP forwarding floor (the LB's own work)")):
            ms, mn = med("sluice", key), med("nft", key)
            per = ["%.2f" % (res["sluice"][r][key] / res["nft"][r][key]) if res["nft"][r][key] > 0 else "n/a"
                   for r in rounds]
            print("marginal, Sluice / nft DNAT, %s: %.2f (%.0f / %.0f ns; per round %s)"
                  % (what, ms / mn if mn > 0 else float("nan"), ms, mn, ", ".join(per)))
            if key in ("marg", "kmarg", "gmarg"):
                aim = mn / 3
                print("  aim <= 1/3 (<= %.0f ns): %s, %.0f ns %s the mark"
                      % (aim, "MET" if ms <= aim else "NOT MET", abs(ms - aim), "under" if ms <= aim else "over"))
        return dict(rounds=title, n=len(rounds), s=med("sluice", "marg"), n_=med("nft", "marg"), f=med("fwd", "marg"),
                    sk=med("sluice", "kmarg"), nk=med("nft", "kmarg"), sg=med("sluice", "gmarg"), ng=med("nft", "gmarg"),
                    pps=med("sluice", "pps") / med("nft", "pps"))

    last = report(allr, "all rounds")
    if quiet:
        last = report(quiet, "quiet rounds only")
    else:
        print("\nno quiet round: every round had other work running; the whole-machine figures carry it")
    summary.append((t, last))

print()
print("== summary: marginal ns/packet above the XDP_DROP baseline (medians; quiet rounds when there are any)")
print("%-9s %-10s %7s %7s %7s %11s %12s %13s %9s  %s" % ("topology", "rounds", "Sluice", "nft", "floor", "Sluice/nft",
                                                        "kernel only", "trafgen's CPU", "pps ratio", "aim <= 1/3 of nft"))
for t, d in summary:
    ratio = d["s"] / d["n_"] if d["n_"] > 0 else float("nan")
    kratio = d["sk"] / d["nk"] if d["nk"] > 0 else float("nan")
    gratio = d["sg"] / d["ng"] if d["ng"] > 0 else float("nan")
    print("%-9s %-10s %7.0f %7.0f %7.0f %11.2f %12.2f %13.2f %8.2fx  %s" % (
        t, "%s (%d)" % ("quiet" if d["rounds"].startswith("quiet") else "all", d["n"]), d["s"], d["n_"], d["f"],
        ratio, kratio, gratio, d["pps"], "MET" if ratio <= 1 / 3 else "NOT MET"))
print("(Sluice, nft, floor: whole-machine marginal ns/packet; the three ratios: whole machine, kernel time only,\n"
      " trafgen's CPU only; MET/NOT MET is judged on the whole-machine ratio)")
EOF
if [ -s "$WORK/progstats" ]; then
    echo
    echo "== (c) the XDP program's own time per packet at the LB's input, on the real path (bpf_stats; each figure"
    echo "   includes the stats' clock reads, which the drop program's figure shows)"
    printf '%-9s %-8s %10s %10s\n' topology program "ns/run" runs
    while read -r t v ns n; do printf '%-9s %-8s %10s %10s\n' "$t" "$v" "$ns" "$n"; done < "$WORK/progstats"
fi
