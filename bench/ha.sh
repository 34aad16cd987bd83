#!/usr/bin/env bash
# bench/ha.sh: failover of a VIP in the HA lab (issue 12, item 8): Sluice's
# BGP + BFD announcing against keepalived VRRP moving a VIP between the same
# LB nodes. `make bench-ha` runs it. Root (network namespaces, XDP, BIRD).
#
# The lab is tests/integration/ha_lab.py: a client, two routers running BIRD
# (ECMP, BFD), four LB nodes running `sluice l4` (zone a: a1, a2; zone b:
# b1, b2) and three reals, in network namespaces. bench/ha/run.py drives it,
# bench/ha/report.py makes the table and the plot. While each failover
# happens, tests/integration/ha_traffic.py runs 16 long-lived TCP
# connections (one exchange every 10-20 ms each) and a new probe connection
# every 3 ms, from the client to the VIP; it measures for each failover:
#   outage  how long new connections failed (first to last failed probe)
#   stall   the longest an established connection waited for an answer
#   broken  established connections lost; failed: probe connections lost
#   detect  when the routers dropped the node (Sluice) or the backup took
#           the VIP (keepalived)
# Series (each repeated REPEAT times, in rounds: every series once a round):
#   Sluice, BFD at each of BFD (a lab per setting): the node a1 killed
#   (`crash`: kill -9 of sluice l4; its tun device and the addresses on it
#   vanish with it, BIRD withdraws, the routers know at once), a power loss (`power-loss`: a1's
#   link goes down first, then everything dies: only BFD can tell), a
#   graceful drain (`drain`: withdraw, wait for the routers, stop);
#   `cut` (the link alone) may be added to EVENTS.
#   keepalived, advert_int each of VRRP (in the first lab, on its own VIP
#   10.12.100.3, a1 master, a2 backup): the master's power loss (`crash`: a
#   killed keepalived would leave the VIP where it is; a power loss is what
#   VRRP's timer must detect) and a graceful stop (`drain`: SIGTERM,
#   priority-0 advert, then a1's forwarder stops).
# The figures per series: p50, p99 and max; the ratios keepalived / Sluice
# of the medians; an SVG strip plot of every failover (PLOT).
#
# Environment (defaults in brackets):
#   REPEAT [20]            failovers per series; QUICK=1 sets 3 (a check)
#   BFD ["100x3 50x3"]     Sluice's BFD settings, interval ms x multiplier
#   EVENTS ["crash power-loss drain"]   Sluice's events (also: cut)
#   VRRP ["1 0.1"]         keepalived advert_int values (0.1 s: its fastest
#                          stable one in this lab on a busy machine)
#   VRRP_EVENTS ["crash drain"]
#   PREFIX [s12h-]         the lab's namespace prefix
#   MAX_MINUTES [75]       the whole run is stopped (lab removed) after this
#   PLOT [build/bench/ha-failover.svg]  where the plot goes
#   SLUICE [build/sluice]  KEEP_TMP [0] 1 keeps the JSON lines and logs
#
# Whole run with the defaults: about 25 minutes on two busy CPUs (a round
# of the first lab takes about 55 s: a Sluice failover with the heal after
# it 5 to 8 s, keepalived's power loss 15 s, as it waits 8 s for TCP's
# backoff; a round of the second lab about 20 s); QUICK=1 about 4 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
BENCH_SCRIPT=ha.sh
# shellcheck source=bench/common.sh
. bench/common.sh

case "${1:-}" in
  "") ;;
  -h|--help) bench_help; exit 0 ;;
  *) bench_bad_arg "$1" ;;
esac

if [ "${QUICK:-0}" = 1 ]; then REPEAT=${REPEAT:-3}; fi
REPEAT=${REPEAT:-20}
BFD=${BFD-100x3 50x3}
EVENTS=${EVENTS-crash power-loss drain}
VRRP=${VRRP-1 0.1}
VRRP_EVENTS=${VRRP_EVENTS-crash drain}
PREFIX=${PREFIX:-s12h-}
MAX_MINUTES=${MAX_MINUTES:-75}
SLUICE=${SLUICE:-build/sluice}
KEEP_TMP=${KEEP_TMP:-0}

[ "$(id -u)" = 0 ] || die "needs root (network namespaces, XDP, BIRD)"
PYTHON=${PYTHON:-/usr/bin/python3}
for tool in ip bird birdc bpftool keepalived timeout "$PYTHON"; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || die "$tool not found (make deps installs it)"
done
[ -x "$SLUICE" ] || die "$SLUICE not found; run 'make build/sluice'"
export SLUICE_L4_BIN
SLUICE_L4_BIN=$(realpath "$SLUICE")
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "REPEAT must be a positive number, not '$REPEAT'"
[[ $MAX_MINUTES =~ ^[1-9][0-9]*$ ]] || die "MAX_MINUTES must be a positive number of minutes, not '$MAX_MINUTES'"
read -r -a BFD_LIST <<<"$BFD"
for b in "${BFD_LIST[@]}"; do
  [[ $b =~ ^[1-9][0-9]*x[1-9][0-9]*$ ]] || die "BFD setting '$b' is not INTERVALxMULTIPLIER (e.g. 100x3)"
done
[ ${#BFD_LIST[@]} -gt 0 ] || [ -n "$VRRP" ] || die "nothing to run: BFD and VRRP are both empty"
if [ ${#BFD_LIST[@]} -eq 0 ]; then BFD_LIST=(100x3) EVENTS=""; fi   # keepalived's series need a lab
if ip netns list | grep -q "^$PREFIX"; then
  echo "$BENCH_SCRIPT: namespaces named $PREFIX* exist (a run that could not clean up?); the lab removes them" >&2
fi

bench_tmpdir ha
# The driver removes its lab when it gets SIGTERM (the namespaces, the
# processes in them, the bpffs mount): that takes a few seconds, more than
# common.sh's stop_pid waits before SIGKILL; so it is stopped here first.
DRIVER=""
stop_driver() {
  local i
  [ -n "$DRIVER" ] && kill -0 "$DRIVER" 2>/dev/null || return 0
  kill -TERM "$DRIVER" 2>/dev/null || true
  for ((i = 0; i < 600; i++)); do kill -0 "$DRIVER" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$DRIVER" 2>/dev/null && kill -KILL "$DRIVER" 2>/dev/null
  wait "$DRIVER" 2>/dev/null || true
}
ha_cleanup() { local rc=$?; stop_driver; (exit "$rc"); bench_cleanup; }
trap ha_cleanup EXIT
RESULTS=$DIR/results.jsonl
mkdir -p build/bench
PLOT=${PLOT:-build/bench/ha-failover.svg}
: >"$RESULTS"

echo "ha bench: $REPEAT failovers per series; Sluice BFD [${BFD_LIST[*]}] x events [${EVENTS}];" \
  "keepalived advert_int [${VRRP}] x [${VRRP_EVENTS}]"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), kernel $(uname -r)"
echo "versions: $(bird --version 2>&1 | head -1), $(keepalived --version 2>&1 | head -1), python $("$PYTHON" -c 'import platform; print(platform.python_version())')"
echo "sluice: $SLUICE_L4_BIN, sha1 $(sha1sum "$SLUICE_L4_BIN" | cut -c1-12), tree $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)"
echo "temp dir: $DIR"
echo "started: $(date -u '+%F %T UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
awk '{ exit !($1 > 0.5) }' /proc/loadavg &&
  echo "note: the machine is not idle (1-minute load average above 0.5): BFD and keepalived timers and the gaps move with load"

T_START=$(date +%s)
DEADLINE=$((T_START + MAX_MINUTES * 60))
failed=0
first=1
for b in "${BFD_LIST[@]}"; do
  left=$((DEADLINE - $(date +%s)))
  [ "$left" -gt 30 ] || { echo "$BENCH_SCRIPT: MAX_MINUTES reached before BFD $b" >&2; failed=1; break; }
  vrrp_args=(--vrrp "")
  if [ "$first" = 1 ]; then vrrp_args=(--vrrp "${VRRP// /,}" --vrrp-events "${VRRP_EVENTS// /,}"); fi
  first=0
  log "lab with BFD $b (log: $DIR/run-$b.log)"
  timeout --signal=TERM --kill-after=60 "$left" "$PYTHON" "$REPO/bench/ha/run.py" --prefix "$PREFIX" \
    --bfd "$b" --events "${EVENTS// /,}" "${vrrp_args[@]}" --repeat "$REPEAT" \
    --out "$RESULTS" 2> >(tee "$DIR/run-$b.log" | grep --line-buffered -E '^# (sluice|vrrp|lab built)' >&2) &
  DRIVER=$!
  rc=0
  wait "$DRIVER" || rc=$?
  DRIVER=""
  if [ "$rc" != 0 ]; then
    echo "$BENCH_SCRIPT: the run with BFD $b ended with status $rc$([ "$rc" = 124 ] && echo ' (MAX_MINUTES)'); its log: $DIR/run-$b.log" >&2
    tail -5 "$DIR/run-$b.log" >&2
    failed=1
  fi
done

echo
echo "ended: $(date -u '+%F %T UTC') after $((($(date +%s) - T_START + 30) / 60)) min, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
if [ -s "$RESULTS" ]; then
  "$PYTHON" "$REPO/bench/ha/report.py" "$RESULTS" --svg "$PLOT" \
    --title "HA failover in the lab: $REPEAT per series, $(date -u '+%F')" || failed=1
  echo
  echo "plot: $PLOT"
fi
echo "raw results: $RESULTS$([ "$KEEP_TMP" = 1 ] || [ "$failed" = 1 ] || echo ' (removed on exit; KEEP_TMP=1 keeps it)')"
if [ "$failed" = 1 ]; then
  echo "$BENCH_SCRIPT: some failovers or runs failed (see above)" >&2
  exit 1
fi
