#!/usr/bin/env bash
# The DNS agent (`sluice agent`) answering registered names from
# libsluice's lists, against Unbound answering the same names from a local
# zone, with dnsperf, in one run.
#
#   make bench-agent          (or: bash bench/agent.sh after make build/sluice)
#
# Environment: DURATION (s per measurement, default 10), SERVICES (default
# 100), INSTANCES (default 3), CLIENTS (dnsperf sockets, default 4),
# OUTSTANDING (default 200).
#
# A registry (build/sluice registry) lists SERVICES services of INSTANCES
# instances each, all in dc1, answer_count INSTANCES; the agent (dc1, the
# services subscribed at start) answers "svcN.bench.test A" with the
# INSTANCES A records. Unbound (one thread) serves the same records as
# local-data of a static local zone bench.test. Both are pinned to CPU 1,
# dnsperf to CPU 0 (dnsperf -e: EDNS, as resolvers send). Per server:
#   - queries/s: dnsperf at full speed (OUTSTANDING queries in flight);
#   - CPU us per query: the server's CPU time over the run (utime + stime of
#     the process, every thread: for the agent, libsluice's threads too),
#     divided by the queries answered.
# Then the agent's ratios to Unbound.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
SERVICES=${SERVICES:-100}
INSTANCES=${INSTANCES:-3}
CLIENTS=${CLIENTS:-4}
OUTSTANDING=${OUTSTANDING:-200}

# shellcheck source=bench/dns_common.sh
. bench/dns_common.sh
dns_bench_need bench/agent.sh unbound dnsperf:dnsperf unbound:unbound dig:bind9-dnsutils
PATH=$PATH:/usr/sbin
[ -x build/sluice ] || { echo "bench/agent.sh: build/sluice not built (make build/sluice)" >&2; exit 1; }

dns_bench_workdir agent

addr() { echo "10.$((($1 >> 8) & 255)).$(($1 & 255)).$(($2 + 1))"; }

# ---- the names, the registry's services and Unbound's zone ----
REG_API=$(free_port)
AGENT_PORT=$(free_port)
UNBOUND_PORT=$(free_port)
{
  echo "log: { level: warn }"
  echo "admin: { listen: 127.0.0.1:$REG_API }"
  echo "registry:"
  echo "  node: bench"
  echo "  datacenter: dc1"
  echo "  region: r1"
  echo "  data_dir: $WORK/reg-data"
  echo "  services:"
  for ((s = 0; s < SERVICES; s++)); do
    echo "    - name: svc$s"
    echo "      dns_ttl: 5"
    echo "      answer_count: $INSTANCES"
    echo "      instances:"
    for ((i = 0; i < INSTANCES; i++)); do
      echo "        - { address: $(addr "$s" "$i"), port: 80, datacenter: dc1, region: r1 }"
    done
  done
} >"$WORK/registry.yaml"
{
  echo "log: { level: warn }"
  echo "admin: { listen: \"off\" }"
  echo "agent:"
  echo "  listen: [127.0.0.1:$AGENT_PORT]"
  echo "  zone: bench.test."
  echo "  registries: [127.0.0.1:$REG_API]"
  echo "  datacenter: dc1"
  echo "  region: r1"
  echo "  upstreams: [127.0.0.1:$UNBOUND_PORT]"
  echo "  services:"
  for ((s = 0; s < SERVICES; s++)); do echo "    - svc$s"; done
} >"$WORK/agent.yaml"
{
  echo "server:"
  echo "    interface: 127.0.0.1@$UNBOUND_PORT"
  echo "    port: $UNBOUND_PORT"
  echo "    num-threads: 1"
  echo "    do-daemonize: no"
  echo "    username: \"\""
  echo "    chroot: \"\""
  echo "    directory: \"$WORK\""
  echo "    pidfile: \"$WORK/unbound.pid\""
  echo "    use-syslog: no"
  echo "    logfile: \"$WORK/unbound.log\""
  echo "    verbosity: 0"
  echo "    do-ip6: no"
  echo "    so-reuseport: no"
  echo "    access-control: 127.0.0.0/8 allow"
  echo "    local-zone: \"bench.test.\" static"
  for ((s = 0; s < SERVICES; s++)); do
    for ((i = 0; i < INSTANCES; i++)); do
      echo "    local-data: \"svc$s.bench.test. 5 IN A $(addr "$s" "$i")\""
    done
  done
  echo "remote-control:"
  echo "    control-enable: no"
} >"$WORK/unbound.conf"
for ((s = 0; s < SERVICES; s++)); do echo "svc$s.bench.test A"; done >"$WORK/queries"

# ---- the servers ----
build/sluice registry -c "$WORK/registry.yaml" >"$WORK/registry.out" 2>&1 &
PIDS+=("$!")
taskset -c 1 build/sluice agent -c "$WORK/agent.yaml" >"$WORK/agent.out" 2>&1 &
AGENT_PID=$!
PIDS+=("$AGENT_PID")
taskset -c 1 unbound -d -c "$WORK/unbound.conf" >"$WORK/unbound.out" 2>&1 &
UNBOUND_PID=$!
PIDS+=("$UNBOUND_PID")

# Both answer the last service with INSTANCES A records before we start.
ready() {
  local port=$1 name=$2 i n
  for ((i = 0; i < 200; i++)); do
    n=$(dig @127.0.0.1 -p "$port" +short +time=1 +tries=1 "svc$((SERVICES - 1)).bench.test" A 2>/dev/null |
        grep -c '^10\.' || true)
    [ "$n" = "$INSTANCES" ] && return 0
    sleep 0.1
  done
  echo "bench/agent.sh: $name did not answer on port $port" >&2
  tail -20 "$WORK"/*.out "$WORK/unbound.log" 2>/dev/null >&2
  exit 1
}
ready "$AGENT_PORT" agent
ready "$UNBOUND_PORT" unbound
taskset -a -p -c 1 "$AGENT_PID" >/dev/null   # libsluice's threads too
for port in "$AGENT_PORT" "$UNBOUND_PORT"; do
  dig @127.0.0.1 -p "$port" +noall +comments svc1.bench.test A | grep -o 'ANSWER: [0-9]*'
done | paste -sd' ' | awk '{ print "answers (agent, unbound): " $0 }'

HZ=$(getconf CLK_TCK)

# measure NAME PORT PID: prints and keeps "qps cpu_us"
measure() {
  local name=$1 port=$2 pid=$3 t0 t1 out qps done cpu
  t0=$(cpu_ticks "$pid")
  out=$(taskset -c 0 dnsperf -s 127.0.0.1 -p "$port" -d "$WORK/queries" -e -l "$DURATION" \
        -c "$CLIENTS" -q "$OUTSTANDING" -T 1 2>&1)
  t1=$(cpu_ticks "$pid")
  qps=$(echo "$out" | awk '/Queries per second/ { print $4 }')
  done=$(echo "$out" | awk '/Queries completed/ { print $3 }')
  lost=$(echo "$out" | awk '/Queries lost/ { print $3 }')
  cpu=$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v n="$done" 'BEGIN { printf "%.2f", n ? d * 1e6 / hz / n : 0 }')
  echo "$qps $cpu" >"$WORK/$name.result"
  printf '  %-8s %10.0f q/s  %6s us CPU/query  (%s completed, %s lost)\n' "$name" "$qps" "$cpu" "$done" "$lost"
}

echo "dnsperf: ${DURATION}s per server, $CLIENTS sockets, $OUTSTANDING outstanding; $SERVICES names x $INSTANCES A records"
measure agent "$AGENT_PORT" "$AGENT_PID"
measure unbound "$UNBOUND_PORT" "$UNBOUND_PID"
read -r aq ac <"$WORK/agent.result"
read -r uq uc <"$WORK/unbound.result"
awk -v aq="$aq" -v ac="$ac" -v uq="$uq" -v uc="$uc" 'BEGIN {
  printf "agent / unbound: queries/s x%.2f, CPU per query x%.2f (queries per CPU second x%.2f)\n",
         aq / uq, ac / uc, uc / ac }'
