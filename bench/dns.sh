#!/usr/bin/env bash
# The registry's DNS server against NSD and Knot DNS, with dnsperf.
#
#   make bench-dns          (or: bash bench/dns.sh after make build/bench/reg_dns_serve)
#
# Environment: DURATION (s per measurement, default 10), ROUNDS (default 3),
# SERVICES (default 100), INSTANCES (default 3), P99_QPS (default 20000),
# CLIENTS (dnsperf sockets, default 4), OUTSTANDING (default 200),
# REGISTRY=daemon to measure `build/sluice registry` (the real daemon, its
# services given in its config file, API off) instead of the driver.
#
# Three servers answer the same names with the same records:
#   - the registry: build/bench/reg_dns_serve (src/registry/reg_dns.c on a
#     model of SERVICES services of INSTANCES instances, one thread);
#   - NSD (server-count 1, response rate limiting off: Debian's build has it
#     on at 200 q/s per client subnet) and Knot (one UDP worker) serving the
#     static zone `reg_dns_serve zone` prints: the same A records per
#     service, the same SRV records with the targets' A records. (NSD also
#     puts the apex NS record in the authority section of positive answers,
#     one record more than the registry and Knot send.)
# The query mix: for each service, 4 x "svcN.bench.test A" and 1 x
# "_svcN._tcp.bench.test SRV" (dnsperf -e: with EDNS, as resolvers send).
#
# Each server is pinned to CPU 1 and dnsperf to CPU 0; the servers run for
# the whole run and are measured in turn, ROUNDS times (alternated, so a
# noisy neighbour hurts each alike). Per measurement:
#   - queries/s: dnsperf at full speed (OUTSTANDING queries in flight);
#   - CPU us per query: the server's CPU time (utime + stime of the
#     process and its children, /proc/PID/stat) over that run, divided by
#     the queries answered;
#   - p99 latency: a second dnsperf run at a fixed P99_QPS (a load every
#     server carries, so it is the answer time, not queueing in dnsperf),
#     from dnsperf -v's per-query latencies (p50 too: on a shared machine
#     the p99 is mostly the scheduler's).
# The medians over rounds are printed, then the registry's ratios to NSD
# and Knot.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
SERVICES=${SERVICES:-100}
INSTANCES=${INSTANCES:-3}
P99_QPS=${P99_QPS:-20000}
CLIENTS=${CLIENTS:-4}
OUTSTANDING=${OUTSTANDING:-200}
SERVE=build/bench/reg_dns_serve

# shellcheck source=bench/dns_common.sh
. bench/dns_common.sh
dns_bench_need bench/dns.sh "nsd knot" dnsperf:dnsperf nsd:nsd knotd:knot
PATH=$PATH:/usr/sbin
[ -x "$SERVE" ] || { echo "bench/dns.sh: $SERVE not built (make build/bench/reg_dns_serve)" >&2; exit 1; }

dns_bench_workdir dns

# ---- the zone and the queries ----
"$SERVE" zone "$SERVICES" "$INSTANCES" >"$WORK/bench.test.zone"
for ((s = 0; s < SERVICES; s++)); do
  for _ in 1 2 3 4; do echo "svc$s.bench.test A"; done
  echo "_svc$s._tcp.bench.test SRV"
done >"$WORK/queries"

# ---- the servers ----
REG_PORT=$(free_port)
if [ "${REGISTRY:-driver}" = daemon ]; then
  [ -x build/sluice ] || { echo "bench/dns.sh: build/sluice not built" >&2; exit 1; }
  "$SERVE" config "127.0.0.1:$REG_PORT" "$WORK/reg-data" "$SERVICES" "$INSTANCES" >"$WORK/registry.yaml"
  taskset -c 1 build/sluice registry -c "$WORK/registry.yaml" >"$WORK/reg.out" 2>&1 &
else
  taskset -c 1 "$SERVE" serve "127.0.0.1:$REG_PORT" "$SERVICES" "$INSTANCES" >"$WORK/reg.out" 2>&1 &
fi
REG_PID=$!
PIDS+=("$REG_PID")

NSD_PORT=$(free_port)
mkdir -p "$WORK/nsd"
cat >"$WORK/nsd/nsd.conf" <<EOF
server:
    ip-address: 127.0.0.1@$NSD_PORT
    server-count: 1
    do-ip6: no
    reuseport: no
    username: ""
    chroot: ""
    database: ""
    zonelistfile: "$WORK/nsd/zone.list"
    xfrdfile: "$WORK/nsd/xfrd.state"
    xfrdir: "$WORK/nsd"
    pidfile: "$WORK/nsd/nsd.pid"
    logfile: "$WORK/nsd/nsd.log"
    verbosity: 0
    hide-version: yes
    rrl-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: bench.test
    zonefile: "$WORK/bench.test.zone"
EOF
taskset -c 1 nsd -d -c "$WORK/nsd/nsd.conf" >"$WORK/nsd/out" 2>&1 &
NSD_PID=$!
PIDS+=("$NSD_PID")

KNOT_PORT=$(free_port)
mkdir -p "$WORK/knot"
cat >"$WORK/knot/knot.conf" <<EOF
server:
    rundir: "$WORK/knot"
    listen: 127.0.0.1@$KNOT_PORT
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$WORK/knot/db"
log:
  - target: stderr
    any: warning
zone:
  - domain: bench.test
    file: "$WORK/bench.test.zone"
    journal-content: none
    zonefile-sync: -1
EOF
taskset -c 1 knotd -c "$WORK/knot/knot.conf" >"$WORK/knot/out" 2>&1 &
KNOT_PID=$!
PIDS+=("$KNOT_PID")

# Every server answers svc0 with INSTANCES A records before we start.
ready() {
  local port=$1 name=$2 i n
  for ((i = 0; i < 100; i++)); do
    n=$(dig @127.0.0.1 -p "$port" +short +time=1 +tries=1 svc0.bench.test A 2>/dev/null | grep -c '^10\.' || true)
    [ "$n" = "$INSTANCES" ] && return 0
    sleep 0.1
  done
  echo "bench/dns.sh: $name did not answer on port $port" >&2
  cat "$WORK"/*.out "$WORK"/*/out 2>/dev/null | tail -20 >&2
  [ "$name" = registry ] && [ "${REGISTRY:-driver}" = daemon ] &&
    echo "bench/dns.sh: (does this build's sluice registry start its DNS server? the log is above)" >&2
  exit 1
}
ready "$REG_PORT" registry
ready "$NSD_PORT" NSD
ready "$KNOT_PORT" Knot

# Pin every thread of every server (and NSD's children) to CPU 1 again:
# Knot's UDP workers set their own affinity (worker i on CPU i), which would
# put its worker on dnsperf's CPU, where a reply wakes dnsperf without an
# inter-processor interrupt and the other CPU's noise does not reach it.
pin_tree() {
  local c
  taskset -a -p -c 1 "$1" >/dev/null
  for c in $(pgrep -P "$1" || true); do pin_tree "$c"; done
}
for p in "$REG_PID" "$NSD_PID" "$KNOT_PID"; do pin_tree "$p"; done

# Same answers: the record counts of one A and one SRV query.
for port in "$REG_PORT" "$NSD_PORT" "$KNOT_PORT"; do
  dig @127.0.0.1 -p "$port" +noall +comments svc1.bench.test A | grep -o 'ANSWER: [0-9]*'
  dig @127.0.0.1 -p "$port" +noall +comments _svc1._tcp.bench.test SRV | grep -o 'ANSWER: [0-9]*, AUTHORITY: [0-9]*, ADDITIONAL: [0-9]*'
done | paste -sd' ' | awk '{ print "answers (registry, NSD, Knot): " $0 }'

HZ=$(getconf CLK_TCK)

# measure NAME PORT PID: appends "qps cpu_us p99_us" to $WORK/NAME.results
measure() {
  local name=$1 port=$2 pid=$3 t0 t1 out qps done cpu p99
  t0=$(cpu_ticks "$pid")
  out=$(taskset -c 0 dnsperf -s 127.0.0.1 -p "$port" -d "$WORK/queries" -e -l "$DURATION" \
        -c "$CLIENTS" -q "$OUTSTANDING" -T 1 2>&1)
  t1=$(cpu_ticks "$pid")
  qps=$(echo "$out" | awk '/Queries per second/ {print $4}')
  done=$(echo "$out" | awk '/Queries completed/ {print $3}')
  cpu=$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v n="$done" 'BEGIN { printf "%.2f", n ? d * 1e6 / hz / n : 0 }')
  read -r p50 p99 < <(taskset -c 0 dnsperf -s 127.0.0.1 -p "$port" -d "$WORK/queries" -e -l 5 -Q "$P99_QPS" \
        -c "$CLIENTS" -v 2>/dev/null | awk '/^> / {print $NF}' | sort -g |
        awk '{ v[NR] = $1 } END { a = int(NR * 0.5); b = int(NR * 0.99); if (a < 1) a = 1; if (b < 1) b = 1;
                                  printf "%.0f %.0f\n", v[a] * 1e6, v[b] * 1e6 }')
  echo "$qps $cpu $p99 $p50" >>"$WORK/$name.results"
  printf '  %-9s %10.0f q/s  %6s us CPU/query  p50 %4s us, p99 %5s us at %s q/s\n' "$name" "$qps" "$cpu" "$p50" "$p99" "$P99_QPS"
}

echo "registry: ${REGISTRY:-driver} ($([ "${REGISTRY:-driver}" = daemon ] && echo "build/sluice registry" || echo "$SERVE"))"
echo "dnsperf: ${DURATION}s per run, $CLIENTS sockets, $OUTSTANDING outstanding; $SERVICES services x $INSTANCES instances; queries 4 A : 1 SRV"
for ((r = 1; r <= ROUNDS; r++)); do
  echo "round $r"
  measure registry "$REG_PORT" "$REG_PID"
  measure nsd "$NSD_PORT" "$NSD_PID"
  measure knot "$KNOT_PORT" "$KNOT_PID"
done

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
col() { awk -v c="$2" '{ print $c }' "$WORK/$1.results" | median; }

echo
echo "medians of $ROUNDS rounds:"
printf '  %-9s %12s %14s %10s %10s\n' server "queries/s" "CPU us/query" "p50 us" "p99 us"
for s in registry nsd knot; do
  printf '  %-9s %12.0f %14s %10s %10s\n' "$s" "$(col "$s" 1)" "$(col "$s" 2)" "$(col "$s" 4)" "$(col "$s" 3)"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
for other in nsd knot; do
  echo "registry / $other: queries/s x$(ratio "$(col registry 1)" "$(col $other 1)"), CPU per query x$(ratio "$(col registry 2)" "$(col $other 2)") (queries per CPU second x$(ratio "$(col $other 2)" "$(col registry 2)")), p99 x$(ratio "$(col registry 3)" "$(col $other 3)")"
done
