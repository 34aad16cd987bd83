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
#     interface) and a forwarding floor (an XDP program that only rewrites
#     the MACs and sends XDP_TX to the sink) run in the same rounds. The
#     sink counts and drops what arrives (an XDP counter), so pps is what
#     got through. Because the
#     generator shares the machine's cores, each variant's cost is
#     whole-machine busy CPU time (/proc/stat) ÷ packets, and its marginal
#     cost is that minus the baseline's. Kernel time only (system, irq,
#     softirq) is printed too, and "other": user time that is neither
#     trafgen's nor sluice's. Medians over all rounds, and over the quiet
#     ones (other <= 0.05 CPU) when there are any.
#
# Topology (namespaces created here, removed on exit):
#
#   gen  10.0.0.2  --+
#   lb   10.0.0.5  --+-- br0 (in namespace "sw")      VIP 10.0.0.100 on lb's lo
#   sink 10.0.0.11 --+
#
# Needs root, iproute2, clang, bpftool, trafgen (netsniff-ng), nft (nftables),
# jq, pgrep (procps), python3, and native XDP on veth.
#
# Environment: ROUNDS (3), DURATION (5 s per measurement), WARMUP (1 s),
# FLOWS (256 source ports), TRAFGEN_CPUS (1), SKIP_FLOOR=1 to skip (a),
# SKIP_E2E=1 to skip (b).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
FLOWS=${FLOWS:-256}
TRAFGEN_CPUS=${TRAFGEN_CPUS:-1}
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

TAG=sl4b$(( $$ % 10000 ))
NS_SW=${TAG}sw NS_GEN=${TAG}gen NS_LB=${TAG}lb NS_SINK=${TAG}sink
GEN_IP=10.0.0.2 LB_IP=10.0.0.5 SINK_IP=10.0.0.11 VIP=10.0.0.100
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
    for (( i=${#NAMESPACES[@]}-1; i>=0; i-- )); do ip netns del "${NAMESPACES[i]}" 2>/dev/null; done
    [ "$MOUNTED" = 1 ] && umount "$BPFFS" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
add_ns() { ip netns add "$1"; NAMESPACES+=("$1"); nsx "$1" ip link set lo up; }
add_port() {   # ns ifname addr: a 2-queue veth from ns into br0
    local ns=$1 ifname=$2 addr=$3 peer=${TAG}${1#"$TAG"}p
    peer=${peer:0:15}
    ip link add "$ifname" netns "$ns" numtxqueues 2 numrxqueues 2 type veth \
        peer name "$peer" netns "$NS_SW" numtxqueues 2 numrxqueues 2
    nsx "$NS_SW" ip link set "$peer" master br0 up
    nsx "$ns" ip addr add "$addr/24" dev "$ifname"
    nsx "$ns" ip link set "$ifname" up
    echo "$peer"
}
mac_of() { nsx "$1" cat "/sys/class/net/$2/address"; }

echo
echo "== (b) end to end on veth: trafgen -> LB -> sink"
# BPF helpers
ARCH_INC=/usr/include/$(uname -m)-linux-gnu
for f in count_drop pass; do
    clang -O2 -g -target bpf -I"$ARCH_INC" -Wall -c "$ROOT/bench/l4/$f.bpf.c" -o "$WORK/$f.o"
done
mkdir -p "$BPFFS"
mount -t bpf bpf "$BPFFS"; MOUNTED=1

add_ns "$NS_SW"
nsx "$NS_SW" ip link add br0 type bridge
nsx "$NS_SW" ip link set br0 up
add_ns "$NS_GEN";  add_port "$NS_GEN" eth0 "$GEN_IP" >/dev/null
add_ns "$NS_LB";   LB_PEER=$(add_port "$NS_LB" lb0 "$LB_IP")
add_ns "$NS_SINK"; add_port "$NS_SINK" eth0 "$SINK_IP" >/dev/null
nsx "$NS_LB" ip addr add "$VIP/32" dev lo
for k in all.send_redirects lb0.send_redirects; do nsx "$NS_LB" sysctl -q -w "net.ipv4.conf.$k=0"; done
# veth passes XDP_TX frames to its peer only if the peer runs NAPI (an XDP
# program): a pass-all one on the LB's bridge port, in every variant.
nsx "$NS_SW" ip link set dev "$LB_PEER" xdpdrv obj "$WORK/pass.o" sec xdp
LB_MAC=$(mac_of "$NS_LB" lb0)
GEN_MAC=$(mac_of "$NS_GEN" eth0)
SINK_MAC=$(mac_of "$NS_SINK" eth0)
cbytes() { echo "0x${1//:/,0x}"; }
clang -O2 -g -target bpf -I"$ARCH_INC" -Wall -DSINK_MAC="$(cbytes "$SINK_MAC")" -DLB_MAC="$(cbytes "$LB_MAC")" \
    -c "$ROOT/bench/l4/fwd_floor.bpf.c" -o "$WORK/fwd_floor.o"
# The sink's counter (stays attached throughout); the baseline's and the
# forwarding floor (loaded now, attached to lb0 only during their runs).
mkdir -p "$BPFFS/sink_maps" "$BPFFS/drop_maps"
bpftool prog load "$WORK/count_drop.o" "$BPFFS/sink" type xdp pinmaps "$BPFFS/sink_maps"
bpftool prog load "$WORK/count_drop.o" "$BPFFS/drop" type xdp pinmaps "$BPFFS/drop_maps"
bpftool prog load "$WORK/fwd_floor.o" "$BPFFS/fwd" type xdp
nsx "$NS_SINK" ip link set dev eth0 xdpdrv pinned "$BPFFS/sink"
# The LB's neighbour entry for the sink, fixed, so that no variant waits for
# ARP (the generator's frames carry the LB's MAC already).
nsx "$NS_LB" ip neigh replace "$SINK_IP" lladdr "$SINK_MAC" dev lb0 nud permanent
SPORT_LO=1024 SPORT_HI=$((1024 + FLOWS - 1))
subst() {
    sed -e "s/@LB_MAC@/$LB_MAC/g; s/@GEN_MAC@/$GEN_MAC/g; s/@GEN_IP@/$GEN_IP/g; s/@VIP@/$VIP/g" \
        -e "s/@SINK_IP@/$SINK_IP/g; s/@SPORT_LO@/$SPORT_LO/g; s/@SPORT_HI@/$SPORT_HI/g; s/@ADMIN_PORT@/$ADMIN_PORT/g" "$1"
}
subst "$ROOT/bench/l4/gen.trafgen.in" > "$WORK/gen.cfg"
subst "$ROOT/bench/l4/sluice.yaml.in" > "$WORK/l4.yaml"
subst "$ROOT/bench/l4/nft.conf.in" > "$WORK/nft.conf"
"$SLUICE" check -c "$WORK/l4.yaml" >&2

counter() {   # pinned per-CPU counter -> sum
    bpftool map lookup pinned "$1" key 0 0 0 0 -j |
        jq '[.formatted.values[].value] | add'
}
busy_ticks() {   # whole machine, jiffies: busy (user nice system irq softirq;
                 # not idle, iowait or steal), kernel (system irq softirq)
    awk '/^cpu /{print $2+$3+$4+$7+$8, $4+$7+$8, $2+$3}' /proc/stat
}
utime() {   # user jiffies of processes (gone ones count 0)
    local p t=0 u
    for p in "$@"; do
        u=$(awk '{print $14}' "/proc/$p/stat" 2>/dev/null) && t=$((t + ${u:-0}))
    done
    echo "$t"
}

SLUICE_PID=""
start_sluice() {
    local log=$WORK/sluice.log
    : > "$log"
    ip netns exec "$NS_LB" "$SLUICE" l4 -c "$WORK/l4.yaml" --pin-dir "$BPFFS/sluice" >"$log" 2>&1 &
    SLUICE_PID=$!
    for _ in $(seq 100); do
        kill -0 "$SLUICE_PID" 2>/dev/null || { cat "$log" >&2; die "sluice l4 exited"; }
        grep -q "weights .*=1" "$log" && return 0
        sleep 0.1
    done
    cat "$log" >&2; die "sluice l4 did not become ready in 10 s"
}
stop_sluice() {
    kill -TERM "$SLUICE_PID"
    for _ in $(seq 50); do kill -0 "$SLUICE_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SLUICE_PID" 2>/dev/null || true
    wait "$SLUICE_PID" 2>/dev/null || true
    SLUICE_PID=""
}

# One measurement: trafgen runs WARMUP + DURATION (+ slack, bounded by
# timeout); counter and /proc/stat are sampled over the DURATION window.
# Also: "other", user time of the machine not spent by trafgen or sluice l4
# (a busy loop, a compiler, tests): the disturbance indicator.
measure() {   # variant counter-pin -> prints "variant packets seconds busy_s kernel_s other_s"
    local variant=$1 pin=$2
    timeout -s INT $((WARMUP + DURATION + 3)) ip netns exec "$NS_GEN" \
        trafgen --dev eth0 --conf "$WORK/gen.cfg" --cpus "$TRAFGEN_CPUS" >"$WORK/trafgen.log" 2>&1 &
    TG_PID=$!
    sleep "$WARMUP"
    local c0 c1 b0 k0 u0 b1 k1 u1 s0 s1 tp tu0 tu1 su0 su1
    tp=$(pgrep -P "$TG_PID" | head -1 || true)           # trafgen (timeout's child)
    [ -n "$tp" ] && tp="$tp $(pgrep -P "$tp" | tr '\n' ' ' || true)"   # and its workers
    # counter first, then the clock and /proc/stat, at both ends: the two
    # windows have the same length, and only one counter read (bpftool, a
    # few ms of CPU) falls inside the CPU window
    c0=$(counter "$pin"); tu0=$(utime $tp); su0=$(utime $SLUICE_PID); read -r b0 k0 u0 < <(busy_ticks); s0=$(date +%s.%N)
    sleep "$DURATION"
    c1=$(counter "$pin"); tu1=$(utime $tp); su1=$(utime $SLUICE_PID); read -r b1 k1 u1 < <(busy_ticks); s1=$(date +%s.%N)
    kill -INT "$TG_PID" 2>/dev/null || true
    wait "$TG_PID" 2>/dev/null || true
    TG_PID=""
    [ $((c1 - c0)) -gt 0 ] || { say "l4.sh: no packets counted ($variant); trafgen said:"; tail -5 "$WORK/trafgen.log" >&2; }
    local hz; hz=$(getconf CLK_TCK)
    echo "$variant $((c1 - c0)) $(python3 -c "print($s1-$s0)") $(python3 -c "print(($b1-$b0)/$hz)") $(python3 -c "print(($k1-$k0)/$hz)") $(python3 -c "print(max(0, ($u1-$u0)-($tu1-$tu0)-($su1-$su0))/$hz)")"
}
idle_sample() {   # background load, no traffic
    local b0 k0 u0 b1 k1 u1 hz; hz=$(getconf CLK_TCK)
    read -r b0 k0 u0 < <(busy_ticks); sleep "$DURATION"; read -r b1 k1 u1 < <(busy_ticks)
    echo "idle 0 $DURATION $(python3 -c "print(($b1-$b0)/$hz)") $(python3 -c "print(($k1-$k0)/$hz)") $(python3 -c "print(($u1-$u0)/$hz)")"
}

run_sluice() {
    start_sluice
    measure sluice "$BPFFS/sink_maps/pkts"
    stop_sluice
}
run_nft() {
    nsx "$NS_LB" sysctl -q -w net.ipv4.ip_forward=1
    nsx "$NS_LB" nft -f "$WORK/nft.conf"
    measure nft "$BPFFS/sink_maps/pkts"
    nsx "$NS_LB" nft delete table ip sl4bench
    nsx "$NS_LB" sysctl -q -w net.ipv4.ip_forward=0
}
run_fwd() {
    nsx "$NS_LB" ip link set dev lb0 xdpdrv pinned "$BPFFS/fwd"
    measure fwd "$BPFFS/sink_maps/pkts"
    nsx "$NS_LB" ip link set dev lb0 xdpdrv off
}
run_drop() {
    nsx "$NS_LB" ip link set dev lb0 xdpdrv pinned "$BPFFS/drop"
    measure drop "$BPFFS/drop_maps/pkts"
    nsx "$NS_LB" ip link set dev lb0 xdpdrv off
}

RESULTS=$WORK/results
: > "$RESULTS"
say "per measurement: round variant packets seconds busy-CPU-s kernel-CPU-s other-user-CPU-s"
say "rounds: $ROUNDS x (sluice, nft, drop, fwd, idle), $DURATION s each, trafgen on $TRAFGEN_CPUS CPU, $FLOWS flows"
for r in $(seq "$ROUNDS"); do
    for v in sluice nft drop fwd idle; do
        # (no command substitution: it would run in a subshell, and the
        # cleanup trap would not know the processes started there)
        case $v in
            sluice) run_sluice  > "$WORK/line" ;;
            nft)    run_nft     > "$WORK/line" ;;
            drop)   run_drop    > "$WORK/line" ;;
            fwd)    run_fwd     > "$WORK/line" ;;
            idle)   idle_sample > "$WORK/line" ;;
        esac
        line=$(cat "$WORK/line")
        echo "$r $line" >> "$RESULTS"
        say "  round $r: $line"
    done
done
echo
python3 - "$RESULTS" <<'EOF'
import statistics as st, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
by = {}
for r, v, pk, sec, busy, kern, other in rows:
    by.setdefault(v, []).append((int(r), int(pk), float(sec), float(busy), float(kern), float(other)))
def per_round(v):
    out = {}
    for r, pk, sec, busy, kern, other in by[v]:
        out[r] = dict(pps=pk / sec, ns=busy * 1e9 / pk, kns=kern * 1e9 / pk, cpu=busy / sec, other=other / sec)
    return out
V = ("sluice", "nft", "fwd", "drop")
res = {v: per_round(v) for v in V}
# a round is quiet when no measurement in it had more than 5 % of a CPU of
# other user time (the idle sample included)
quiet = sorted(r for r in res["drop"] if all(res[v][r]["other"] <= 0.05 for v in V) and
               all(o / sec <= 0.05 for rr, _, sec, _, _, o in by["idle"] if rr == r))
print("other user time (CPUs) per round: " + "; ".join(
    "%d: %s" % (r, " ".join("%s %.2f" % (v, res[v][r]["other"]) for v in V)) for r in sorted(res["drop"])))
print("quiet rounds (other <= 0.05 CPU throughout): %s" % (", ".join(map(str, quiet)) or "none"))
for v in V:
    for r, d in res[v].items():          # above the same round's baseline
        d["marg"] = d["ns"] - res["drop"][r]["ns"]
        d["kmarg"] = d["kns"] - res["drop"][r]["kns"]
        d["fmarg"] = d["kns"] - res["fwd"][r]["kns"]    # kernel time above the forwarding floor
idle = [busy / sec for _, _, sec, busy, _, _ in by["idle"]]
names = {"sluice": "Sluice XDP DR (sluice l4)", "nft": "kernel fwd + nft DNAT", "drop": "XDP_DROP at LB (baseline)",
         "fwd": "XDP_TX MAC rewrite (floor)"}
print("per round (pps / ns/pkt / marginal):")
for v in V:
    print("  %-8s %s" % (v, "; ".join("%.0f / %.0f / %.0f" % (d["pps"], d["ns"], d["marg"]) for _, d in sorted(res[v].items()))))
print("background without traffic: %.2f busy CPUs (median; per round %s)" % (
    st.median(idle), ", ".join("%.2f" % x for x in idle)))

def report(rounds, title):
    med = lambda v, k: st.median(res[v][r][k] for r in rounds)
    print()
    print("== %s: medians of %d round(s) [%s]; ns = busy CPU time of the whole machine / packets counted"
          % (title, len(rounds), ",".join(map(str, rounds))))
    print("%-27s %9s %8s %9s %10s %11s %6s" % ("", "pps", "ns/pkt", "marginal", "kernel ns", "kern. marg.", "CPUs"))
    for v in V:
        print("%-27s %9.0f %8.0f %9.0f %10.0f %11.0f %6.2f" % (names[v], med(v, "pps"), med(v, "ns"), med(v, "marg"),
                                                           med(v, "kns"), med(v, "kmarg"), med(v, "cpu")))
    print("pps, Sluice / nft DNAT: %.2fx" % (med("sluice", "pps") / med("nft", "pps")))
    for key, what in (("marg", "whole machine"), ("kmarg", "kernel time only (sys+irq+softirq)"),
                      ("fmarg", "kernel time above the XDP_TX forwarding floor (the LB's own work)")):
        ms, mn = med("sluice", key), med("nft", key)
        per = ["%.2f" % (res["sluice"][r][key] / res["nft"][r][key]) if res["nft"][r][key] > 0 else "n/a"
               for r in rounds]
        print("marginal, Sluice / nft DNAT, %s: %.2f (%.0f / %.0f ns; per round %s)"
              % (what, ms / mn if mn > 0 else float("nan"), ms, mn, ", ".join(per)))
        if key in ("marg", "kmarg"):
            aim = mn / 3
            print("  aim <= 1/3 (<= %.0f ns): %s, %.0f ns %s the mark"
                  % (aim, "MET" if ms <= aim else "NOT MET", abs(ms - aim), "under" if ms <= aim else "over"))

report(sorted(res["drop"]), "all rounds")
if quiet:
    report(quiet, "quiet rounds only")
else:
    print("\nno quiet round: every round had other work running; the whole-machine figures carry it")
EOF
