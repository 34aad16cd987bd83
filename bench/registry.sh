#!/usr/bin/env bash
# bench/registry.sh: the registry's write path and watches, measured.
# `make bench-registry` runs it.
#
#   embedded   one `sluice registry` on the embedded SQLite store:
#              registrations/s (persistent, each durable before its 200),
#              heartbeats/s (ephemeral instances; a heartbeat writes nothing)
#   etcd       a 3-member etcd cluster (Debian's etcd-server) on loopback:
#              etcd's own put rate through its JSON gateway (the floor under
#              every write of the cluster mode), then registrations/s and
#              heartbeats/s through a `sluice registry` node on that cluster
#   watch      change-to-watcher latency p50/p99 with WATCHERS blocking
#              queries on one service, on the embedded node
#
# Every load comes from bench/reg_load.c (one thread, epoll, keep-alive, one
# request in flight per connection), the same client for Sluice and etcd.
# Everything listens on 127.0.0.1, lives in a mktemp -d directory (under
# DATA_ROOT) and is stopped on exit. Root is not needed.
#
# Environment (defaults in brackets):
#   DURATION [5]        seconds per load run
#   CONNS [16]          client connections for writes and heartbeats
#   INSTANCES [1000]    ephemeral instances the heartbeat run beats
#   WATCHERS [1000]     blocking queries for the watch run
#   CHANGES [50]        changes the watch run makes
#   MERGE_WINDOWS [50ms 0ms]  registry.api.merge_window values the watch run
#                       compares (50ms is the default: changes within it
#                       wake watchers once)
#   ROUNDS [3]          rounds of each measurement (the table shows each)
#   PARTS [embedded watch etcd]
#   DATA_ROOT [/var/tmp] where data directories go (a disk, not tmpfs, so
#                       fsync costs what it costs in production)
#   BASE_PORT [29950]   registry API BASE, DNS BASE+1, nodes BASE+10..;
#                       etcd clients BASE+100.., peers BASE+200..
#   SLUICE [build/sluice]
#   KEEP_TMP [0]        1 keeps the temp dir (configs, logs)
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_SCRIPT=registry.sh
# shellcheck source=bench/common.sh
. bench/common.sh

case "${1:-}" in
  "") ;;
  -h|--help) bench_help; exit 0 ;;
  *) bench_bad_arg "$1" ;;
esac

DURATION=${DURATION:-5}
CONNS=${CONNS:-16}
INSTANCES=${INSTANCES:-1000}
WATCHERS=${WATCHERS:-1000}
CHANGES=${CHANGES:-50}
MERGE_WINDOWS=${MERGE_WINDOWS:-50ms 0ms}
MERGE_WINDOW=50ms
ROUNDS=${ROUNDS:-3}
PARTS=${PARTS:-embedded watch etcd}
DATA_ROOT=${DATA_ROOT:-/var/tmp}
BASE_PORT=${BASE_PORT:-29950}
SLUICE=${SLUICE:-build/sluice}
LOAD=${LOAD:-build/bench/reg_load}
KEEP_TMP=${KEEP_TMP:-0}

[ -x "$SLUICE" ] || die "$SLUICE not built (make build/sluice)"
[ -x "$LOAD" ] || die "$LOAD not built (make build/bench/reg_load)"
for tool in curl etcd; do command -v "$tool" >/dev/null || die "$tool not found (scripts/deps.sh)"; done

TMP=$(mktemp -d "$DATA_ROOT/sluice-bench-registry.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$KEEP_TMP" = 1 ]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

wait_http() { # URL: until it answers at all (bounded); 1 if it never does
  for _ in $(seq 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "registry.sh: nothing answers at $1" >&2
  return 1
}

# A registry node: NAME API_PORT DNS_PORT STORE [ETCD_ENDPOINTS]
start_registry() {
  local name=$1 api=$2 dns=$3 store=$4 endpoints=${5:-}
  mkdir -p "$TMP/$name"
  {
    echo "admin:"
    echo "  listen: 127.0.0.1:$api"
    echo "registry:"
    echo "  node: $name"
    echo "  datacenter: dc1"
    echo "  region: r1"
    echo "  data_dir: $TMP/$name/data"
    echo "  store: $store"
    if [ "$store" = etcd ]; then
      echo "  etcd:"
      echo "    endpoints: [$endpoints]"
      echo "    prefix: /bench/$name-$$/"
    fi
    echo "  api: { max_watchers: $((WATCHERS + 100)), merge_window: $MERGE_WINDOW }"
    echo "  dns:"
    echo "    listen: [127.0.0.1:$dns]"
    echo "    zone: bench.test."
  } > "$TMP/$name/registry.yaml"
  "$SLUICE" registry -c "$TMP/$name/registry.yaml" > "$TMP/$name/log" 2>&1 &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$api/api/status"
}


stop_last() { local p=${PIDS[-1]}; kill "$p"; wait "$p" 2>/dev/null || true; unset 'PIDS[-1]'; }

# The process's CPU seconds (user + system) so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }

# One load run against PORT; prints reg_load's line with the server's CPU
# µs per request appended.
load() { # PID PORT MODE ARGS...
  local pid=$1 port=$2 mode=$3; shift 3
  local c0 c1 line ok
  c0=$(cpu_s "$pid")
  line=$("$LOAD" --target "127.0.0.1:$port" --mode "$mode" --duration "$DURATION" --conns "$CONNS" "$@")
  c1=$(cpu_s "$pid")
  ok=$(sed -n 's/.*ok=\([0-9]*\).*/\1/p' <<<"$line")
  awk -v l="$line" -v a="$c0" -v b="$c1" -v n="${ok:-0}" \
    'BEGIN { printf "%s cpu_us_per_req=%.1f\n", l, n ? (b - a) * 1e6 / n : 0 }'
}

field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }

RESULTS=()
record() { RESULTS+=("$(printf '%-34s %s' "$1" "$2")"); echo "$1: $2" >&2; }

run_embedded() {
  local port=$BASE_PORT
  start_registry emb "$port" $((BASE_PORT + 1)) embedded || die "the registry did not start: $(tail -3 "$TMP/emb/log")"
  local pid=${PIDS[-1]}
  for r in $(seq "$ROUNDS"); do
    local l
    l=$(load "$pid" "$port" register); record "embedded register (round $r)" "$l"
  done
  "$LOAD" --target "127.0.0.1:$port" --mode heartbeat --instances "$INSTANCES" --duration 0.1 --conns 1 >/dev/null
  for r in $(seq "$ROUNDS"); do
    local l
    l=$(load "$pid" "$port" heartbeat --instances "$INSTANCES"); record "embedded heartbeat (round $r)" "$l"
  done
  stop_last
}

run_watch() {
  local port=$((BASE_PORT + 2)) mw
  for mw in $MERGE_WINDOWS; do
    MERGE_WINDOW=$mw
    start_registry "watch-$mw" "$port" $((BASE_PORT + 3)) embedded \
      || die "the registry did not start: $(tail -3 "$TMP/watch-$mw/log")"
    for r in $(seq "$ROUNDS"); do
      local l
      l=$("$LOAD" --target "127.0.0.1:$port" --mode watch --watchers "$WATCHERS" --changes "$CHANGES" \
            --duration 120 --service "w$r")
      record "watch merge_window=$mw, $WATCHERS watchers (round $r)" "$l"
    done
    stop_last
  done
  MERGE_WINDOW=50ms
}

ETCD_CLIENTS=""
start_etcd_cluster() {
  local cluster="" i
  for i in 0 1 2; do
    cluster+="${cluster:+,}e$i=http://127.0.0.1:$((BASE_PORT + 200 + i))"
  done
  for i in 0 1 2; do
    local cport=$((BASE_PORT + 100 + i)) pport=$((BASE_PORT + 200 + i))
    etcd --name "e$i" --data-dir "$TMP/etcd$i" \
      --listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
      --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
      --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "bench-$$" \
      > "$TMP/etcd$i.log" 2>&1 &
    PIDS+=($!)
    ETCD_CLIENTS+="${ETCD_CLIENTS:+,}http://127.0.0.1:$cport"
  done
  for i in 0 1 2; do
    for _ in $(seq 100); do
      curl -s -m 1 -X POST -d '{"key":"AA=="}' "http://127.0.0.1:$((BASE_PORT + 100 + i))/v3/kv/range" \
        | grep -q header && break
      sleep 0.2
    done
  done
}

run_etcd() {
  start_etcd_cluster
  local leader_pid=${PIDS[-3]}
  for r in $(seq "$ROUNDS"); do
    local l
    l=$(load "$leader_pid" $((BASE_PORT + 100)) etcd-put); record "etcd put, 3 members (round $r)" "$l"
  done
  local port=$((BASE_PORT + 10))
  if ! start_registry node1 "$port" $((BASE_PORT + 11)) etcd "$ETCD_CLIENTS"; then
    record "registry on etcd" "not run: $(tail -1 "$TMP/node1/log")"
    return
  fi
  local pid=${PIDS[-1]}
  for r in $(seq "$ROUNDS"); do
    local l
    l=$(load "$pid" "$port" register); record "etcd-backed register (round $r)" "$l"
  done
  "$LOAD" --target "127.0.0.1:$port" --mode heartbeat --instances "$INSTANCES" --duration 0.1 --conns 1 >/dev/null
  for r in $(seq "$ROUNDS"); do
    local l
    l=$(load "$pid" "$port" heartbeat --instances "$INSTANCES"); record "etcd-backed heartbeat (round $r)" "$l"
  done
}

log "registry bench: DURATION=$DURATION CONNS=$CONNS INSTANCES=$INSTANCES WATCHERS=$WATCHERS ROUNDS=$ROUNDS, data in $TMP"
for part in $PARTS; do
  case $part in
    embedded) run_embedded ;;
    watch) run_watch ;;
    etcd) run_etcd ;;
    *) die "unknown part '$part' (embedded, watch, etcd)" ;;
  esac
done

# The median of a field over the rounds of one measurement (RESULTS lines
# whose label starts with PREFIX).
median() { # PREFIX FIELD
  printf '%s\n' "${RESULTS[@]}" | grep "^$1" | sed -n "s/.* $2=\([0-9.]*\).*/\1/p" | sort -n \
    | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print 0 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

echo
echo "Results ($(date -u +%F), $(nproc) CPUs, data on $(df --output=fstype "$TMP" | tail -1) under $DATA_ROOT):"
printf '%s\n' "${RESULTS[@]}"
echo
echo "Medians and ratios:"
for part in $PARTS; do
  case $part in
    embedded)
      echo "  embedded: $(median "embedded register" rate) registrations/s," \
           "$(median "embedded heartbeat" rate) heartbeats/s" \
           "(heartbeat/registration $(ratio "$(median "embedded heartbeat" rate)" "$(median "embedded register" rate)"))" ;;
    watch)
      for mw in $MERGE_WINDOWS; do
        echo "  watch, merge_window $mw: p50 $(median "watch merge_window=$mw" p50_ms) ms," \
             "p99 $(median "watch merge_window=$mw" p99_ms) ms with $WATCHERS watchers"
      done ;;
    etcd)
      echo "  etcd: put floor $(median "etcd put" rate)/s; through sluice registry" \
           "$(median "etcd-backed register" rate) registrations/s" \
           "(registry/etcd $(ratio "$(median "etcd-backed register" rate)" "$(median "etcd put" rate)"))," \
           "$(median "etcd-backed heartbeat" rate) heartbeats/s" ;;
  esac
done
