#!/usr/bin/env bash
# bench/l7.sh: Sluice vs nginx vs HAProxy as HTTP/1.1 reverse proxies, one
# worker each, in front of the same nginx backend. `make bench-l7` runs it.
#
#   bash bench/l7.sh             measure (rounds of wrk against each proxy)
#   bash bench/l7.sh --profile   profile Sluice's worker under load
#
# Everything listens on 127.0.0.1 and runs from a mktemp -d directory under
# /tmp; everything the script starts is stopped on exit. Root is not needed.
#
# Environment (defaults in brackets):
#   DURATION [10]      seconds per wrk run
#   CONNECTIONS [64]   wrk connections (-c)
#   THREADS [1]        wrk threads (-t)
#   ROUNDS [3]         rounds; each round runs sluice, nginx, haproxy in turn
#   WARMUP [2]         seconds of unrecorded load per proxy before round 1
#   TASKSET []         CPU list to pin the proxies to (taskset -c), e.g. 0
#   BACKEND_TASKSET [] CPU list for the backend nginx
#   WRK_TASKSET []     CPU list for wrk
#   BASE_PORT [18080]  sluice BASE, backend BASE+1, nginx BASE+2, haproxy BASE+3
#   ADMIN_PORT [19900] Sluice admin API
#   PROXIES [sluice nginx haproxy]  which proxies to run, in round order
#   SLUICE [build/sluice]
#   SLUICE_BASE []     a second Sluice build (e.g. of an older commit) run as
#                      proxy "sluice-base" in the same rounds; set, it joins
#                      PROXIES' default and the ratios compare the two builds
#                      (a regression check for a change to Sluice)
#   PROFILER []        --profile only: perf or callgrind (default: perf when
#                      `perf stat -e instructions` counts, else callgrind)
#   PROFILE_DURATION [10 for perf, 5 for callgrind]
#   PROFILE_TOP [25]   how many functions to print
#   KEEP_TMP [0]       1 keeps the temp dir (configs, logs, raw wrk output)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
BENCH_SCRIPT=l7.sh
# shellcheck source=bench/common.sh
. bench/common.sh

MODE=measure
case "${1:-}" in
  "") ;;
  --profile) MODE=profile ;;
  -h|--help) bench_help; exit 0 ;;
  *) bench_bad_arg "$1" ;;
esac

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-2}
TASKSET=${TASKSET:-}
BACKEND_TASKSET=${BACKEND_TASKSET:-}
WRK_TASKSET=${WRK_TASKSET:-}
BASE_PORT=${BASE_PORT:-18080}
ADMIN_PORT=${ADMIN_PORT:-19900}
SLUICE=${SLUICE:-build/sluice}
SLUICE_BASE=${SLUICE_BASE:-}
if [ -n "$SLUICE_BASE" ]; then
  PROXIES=${PROXIES:-sluice sluice-base nginx haproxy}
else
  PROXIES=${PROXIES:-sluice nginx haproxy}
fi
PROFILE_TOP=${PROFILE_TOP:-25}
KEEP_TMP=${KEEP_TMP:-0}

SLUICE_PORT=$BASE_PORT
BACKEND_PORT=$((BASE_PORT + 1))
NGINX_PORT=$((BASE_PORT + 2))
HAPROXY_PORT=$((BASE_PORT + 3))
SLUICE_BASE_PORT=$((BASE_PORT + 4))
SLUICE_BASE_ADMIN_PORT=$((ADMIN_PORT + 1))
HZ=$(getconf CLK_TCK)

for tool in wrk curl nginx haproxy taskset; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || die "$tool not found"
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
[ -x "$SLUICE" ] || die "$SLUICE not found; run 'make' first (or 'make bench-l7')"
SLUICE=$(realpath "$SLUICE")
if [ -n "$SLUICE_BASE" ]; then
  [ -x "$SLUICE_BASE" ] || die "SLUICE_BASE=$SLUICE_BASE is not an executable"
  SLUICE_BASE=$(realpath "$SLUICE_BASE")
fi

ports_free "$SLUICE_PORT" "$BACKEND_PORT" "$NGINX_PORT" "$HAPROXY_PORT" "$ADMIN_PORT" \
  ${SLUICE_BASE:+"$SLUICE_BASE_PORT" "$SLUICE_BASE_ADMIN_PORT"}

bench_tmpdir l7

read -r -a PROXY_PIN <<<"$(pin "$TASKSET")"
read -r -a BACKEND_PIN <<<"$(pin "$BACKEND_TASKSET")"
read -r -a WRK_PIN <<<"$(pin "$WRK_TASKSET")"

USER_LINE=""
[ "$(id -u)" = 0 ] && USER_LINE="user root;"   # workers need the 0700 temp dir

render() {  # render TEMPLATE OUT PORT [ADMIN_PORT]; TEMPLATE relative to bench/
  sed -e "s|@DIR@|$DIR|g" -e "s|@USER_LINE@|$USER_LINE|g" \
      -e "s|@BACKEND_PORT@|$BACKEND_PORT|g" -e "s|@ADMIN_PORT@|${4:-$ADMIN_PORT}|g" \
      -e "s|@PORT@|$3|g" "$REPO/bench/$1" >"$DIR/$2"
}

say_200() {  # say_200 NAME PORT: what answered wait_200
  log "$1 on 127.0.0.1:$2 answers 200: $(tr -d '\n' <"$DIR/$1.curl")"
}

declare -A PID PORT
PORT[sluice]=$SLUICE_PORT
PORT[nginx]=$NGINX_PORT
PORT[haproxy]=$HAPROXY_PORT
PORT[sluice-base]=$SLUICE_BASE_PORT

start_proxy() {  # start_proxy NAME [wrapper...]
  local name=$1; shift
  case $name in
    sluice)
      render l7/sluice.yaml.in sluice.yaml "$SLUICE_PORT"
      "$SLUICE" check -c "$DIR/sluice.yaml" >"$DIR/sluice-check.log" 2>&1 ||
        die "sluice check rejects the bench config: $(cat "$DIR/sluice-check.log")"
      "${PROXY_PIN[@]}" "$@" "$SLUICE" proxy -c "$DIR/sluice.yaml" --workers 1 >"$DIR/sluice.log" 2>&1 &
      ;;
    sluice-base)
      [ -n "$SLUICE_BASE" ] || die "proxy sluice-base needs SLUICE_BASE (a second Sluice build)"
      render l7/sluice.yaml.in sluice-base.yaml "$SLUICE_BASE_PORT" "$SLUICE_BASE_ADMIN_PORT"
      "${PROXY_PIN[@]}" "$@" "$SLUICE_BASE" proxy -c "$DIR/sluice-base.yaml" --workers 1 >"$DIR/sluice-base.log" 2>&1 &
      ;;
    nginx)
      mkdir -p "$DIR/proxy-tmp"
      render l7/proxy-nginx.conf.in proxy-nginx.conf "$NGINX_PORT"
      "${PROXY_PIN[@]}" "$NGINX" -p "$DIR" -e "$DIR/proxy-nginx.error.log" \
        -c "$DIR/proxy-nginx.conf" -g 'daemon off;' >"$DIR/nginx.log" 2>&1 &
      ;;
    haproxy)
      render l7/haproxy.cfg.in haproxy.cfg "$HAPROXY_PORT"
      "$HAPROXY" -c -q -f "$DIR/haproxy.cfg" >"$DIR/haproxy-check.log" 2>&1 ||
        die "haproxy rejects the bench config: $(cat "$DIR/haproxy-check.log")"
      "${PROXY_PIN[@]}" "$HAPROXY" -db -f "$DIR/haproxy.cfg" >"$DIR/haproxy.log" 2>&1 &
      ;;
    *) die "unknown proxy '$name' (PROXIES may hold sluice, sluice-base, nginx, haproxy)" ;;
  esac
  PID[$name]=$!
  STARTED+=("${PID[$name]}")
  wait_200 "$name" "http://127.0.0.1:${PORT[$name]}/"
  say_200 "$name" "${PORT[$name]}"
}

# upstream_conns PID...: established connections from these pids to the backend.
upstream_conns() {
  local re
  re=$(printf 'pid=%s,|' "$@"); re=${re%|}
  ss -Htnp state established "( dport = :$BACKEND_PORT )" 2>/dev/null | grep -cE "$re" || true
}

to_ms() {  # wrk latency ("812.00us", "1.23ms", "1.01s", "2.00m") -> ms
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
    printf "%.3f", n }'
}

run_wrk() {  # run_wrk PORT SECONDS CONNS OUTFILE
  "${WRK_PIN[@]}" wrk -t"$THREADS" -c"$3" -d"$2"s --latency "http://127.0.0.1:$1/" >"$4" 2>&1
}

sluice_identity() {
  echo "sluice: $SLUICE, sha1 $(sha1sum "$SLUICE" | cut -c1-12), built $(date -u -r "$SLUICE" '+%F %T UTC'), tree $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)"
  if [ -n "$SLUICE_BASE" ]; then
    echo "sluice-base: $SLUICE_BASE, sha1 $(sha1sum "$SLUICE_BASE" | cut -c1-12), built $(date -u -r "$SLUICE_BASE" '+%F %T UTC'), tree $(git -C "$(dirname "$SLUICE_BASE")/.." describe --always --dirty 2>/dev/null || echo unknown)"
  fi
}

# --------------------------------------------------------------- profile ---
if [ "$MODE" = profile ]; then
  PROFILER=${PROFILER:-}
  if [ -z "$PROFILER" ]; then
    # `perf stat` exits 0 even when the counter is "<not supported>" (common
    # in VMs), so look at the value it printed.
    if command -v perf >/dev/null 2>&1 &&
       perf stat -x, -e instructions true 2>&1 >/dev/null | grep -Eq '^[0-9]+,'; then
      PROFILER=perf
    else
      PROFILER=callgrind
    fi
  fi
  case $PROFILER in
    perf) PROFILE_DURATION=${PROFILE_DURATION:-$DURATION} ;;
    callgrind)
      command -v valgrind >/dev/null 2>&1 || die "valgrind not found"
      PROFILE_DURATION=${PROFILE_DURATION:-5} ;;
    *) die "PROFILER must be perf or callgrind, not '$PROFILER'" ;;
  esac
  log "profiling Sluice with $PROFILER, wrk -t$THREADS -c$CONNECTIONS -d${PROFILE_DURATION}s"
  sluice_identity
  start_backend "${BACKEND_PIN[@]}"
  say_200 backend "$BACKEND_PORT"
  if [ "$PROFILER" = callgrind ]; then
    # valgrind follows fork(), so the worker is traced too: one file per pid.
    start_proxy sluice valgrind --tool=callgrind --quiet \
      --callgrind-out-file="$DIR/callgrind.out.%p" --log-file="$DIR/valgrind.%p.log"
  else
    start_proxy sluice
  fi
  master=${PID[sluice]}
  worker=$(pgrep -P "$master" | head -n1 || true)
  [ -n "$worker" ] || die "no Sluice worker under master $master"
  log "Sluice master $master, worker $worker"
  run_wrk "$SLUICE_PORT" 2 "$CONNECTIONS" "$DIR/profile-warmup.wrk" || true
  if [ "$PROFILER" = perf ]; then
    perf record -g -o "$DIR/perf.data" -p "$worker" -- sleep "$((PROFILE_DURATION + 1))" \
      >"$DIR/perf-record.log" 2>&1 &
    perf_pid=$!
    STARTED+=("$perf_pid")
    sleep 0.5
  fi
  wrk_rc=0
  run_wrk "$SLUICE_PORT" "$PROFILE_DURATION" "$CONNECTIONS" "$DIR/profile.wrk" || wrk_rc=$?
  kill -0 "$master" 2>/dev/null || die "Sluice master exited during the profile run; see $DIR/sluice.log"
  kill -0 "$worker" 2>/dev/null || die "Sluice worker $worker died during the profile run; see $DIR/sluice.log"
  echo
  echo "wrk (under $PROFILER):"
  sed 's/^/  /' "$DIR/profile.wrk"
  [ "$wrk_rc" = 0 ] || die "wrk failed (exit $wrk_rc)"
  echo
  if [ "$PROFILER" = perf ]; then
    wait "$perf_pid" || true
    echo "perf record: $(grep -m1 -E 'samples|Captured' "$DIR/perf-record.log" || true)"
    event=$(perf evlist -i "$DIR/perf.data" 2>/dev/null | head -n1 || true)
    echo "event: ${event:-?} (without hardware counters perf samples cpu-clock; kernel time is included)"
    pr() { perf report -i "$DIR/perf.data" --stdio -g none "$@" 2>/dev/null |
             grep -E '^ +[0-9]' | sed -E 's/[[:space:]]+-[[:space:]]+-[[:space:]]*$//' || true; }
    echo
    echo "Share of samples by object (kernel vs Sluice vs libc):"
    pr --no-children --sort dso | head -n 6
    echo
    echo "Top $PROFILE_TOP functions of the Sluice worker by self time (perf report --no-children):"
    pr --no-children --sort dso,symbol --percent-limit 0.3 | head -n "$PROFILE_TOP"
    echo
    echo "Top $PROFILE_TOP by inclusive time (perf report --children):"
    pr --children --sort symbol --percent-limit 1 | head -n "$PROFILE_TOP"
  else
    stop_pid "$master"   # SIGTERM: the worker drains and exits, callgrind writes its file
    out="$DIR/callgrind.out.$worker"
    [ -s "$out" ] || die "no callgrind output for worker $worker (files: $(ls "$DIR" | tr '\n' ' '))"
    echo "callgrind counts user-space instructions only (Ir); time spent in the kernel"
    echo "(socket syscalls) does not appear here. The split of real CPU time between"
    echo "user and kernel is in the usr/sys columns of the normal run."
    echo
    nreq=$(awk '/requests in/ {n += $1} END {print n + 0}' "$DIR/profile-warmup.wrk" "$DIR/profile.wrk")
    total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}' || true)
    echo "Worker total: $total instructions for $nreq requests (warm-up included)," \
      "about $(awk -v t="$total" -v n="$nreq" 'BEGIN {if (n) printf "%.0f", t / n; else print "?"}') per request."
    # Function lines only, without the long file paths of libc.
    cg_top() {
      callgrind_annotate --inclusive="$1" "$out" 2>/dev/null |
        awk '/file:function/ {on = 1; next} on && /^ *[0-9,]+ \(/' |
        grep -vE '%\)  (/|\?\?\?|libc-start|libc_start_call_main)' |
        sed -E 's| \[/usr/lib/[^]]*/([^]/]+)\]$| [\1]| ; s| \[[^]]*/build/sluice\]$||; s|\./[^ :]*/||' |
        head -n "$PROFILE_TOP" || true
    }
    echo
    echo "Top $PROFILE_TOP functions of the Sluice worker by self instructions (Ir):"
    cg_top no
    echo
    echo "Top $PROFILE_TOP by inclusive instructions:"
    cg_top yes
  fi
  exit 0
fi

# --------------------------------------------------------------- measure ---
read -r -a PROXY_LIST <<<"$PROXIES"
echo "l7 bench: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency, $ROUNDS rounds of: ${PROXY_LIST[*]}"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), kernel $(uname -r)"
sluice_identity
echo "versions: $("$NGINX" -v 2>&1 | sed 's/.*version: //'), HAProxy $("$HAPROXY" -v | awk 'NR == 1 {print $3}'), $(wrk -v 2>&1 | awk 'NR == 1 {print "wrk", $2}')"
echo "pinning: proxies=${TASKSET:-none} backend=${BACKEND_TASKSET:-none} wrk=${WRK_TASKSET:-none}"
echo "temp dir: $DIR"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

start_backend "${BACKEND_PIN[@]}"
say_200 backend "$BACKEND_PORT"
for p in "${PROXY_LIST[@]}"; do start_proxy "$p"; done

if [ "$WARMUP" -gt 0 ]; then
  for p in "${PROXY_LIST[@]}"; do
    log "warm-up: $p ${WARMUP}s"
    run_wrk "${PORT[$p]}" "$WARMUP" "$CONNECTIONS" "$DIR/warmup-$p.wrk" || die "wrk warm-up against $p failed: $(cat "$DIR/warmup-$p.wrk")"
  done
fi

RESULTS=$DIR/results.tsv
printf 'round\tproxy\treq_s\tp50_ms\tp99_ms\tcpu_us_req\tusr_us_req\tsys_us_req\tbackend_us_req\tupstream_conns\twrk_cpu_pct\tother_cpu_pct\terrors\n' >"$RESULTS"

echo
printf '%-5s %-11s %10s %9s %9s %11s %8s %8s %11s %7s %6s %6s  %s\n' \
  round proxy 'req/s' 'p50 ms' 'p99 ms' 'CPU us/req' 'usr' 'sys' 'backend us' 'upconns' 'wrk' 'other' errors
failed=0
for ((r = 1; r <= ROUNDS; r++)); do
  for p in "${PROXY_LIST[@]}"; do
    top=${PID[$p]}
    kill -0 "$top" 2>/dev/null || die "$p (pid $top) is no longer running before round $r; see $DIR/$p.log"
    read -r -a procs <<<"$(proc_tree "$top")"
    m0=$(machine_busy); c0=$(children_ticks); t0=$(date +%s%N)
    read -r u0 s0 <<<"$(cpu_usr_sys "${procs[@]}")"
    read -r -a bprocs <<<"$(proc_tree "$BACKEND_PID")"
    read -r bu0 bs0 <<<"$(cpu_usr_sys "${bprocs[@]}")"
    out="$DIR/r$r-$p.wrk"
    run_wrk "${PORT[$p]}" "$DURATION" "$CONNECTIONS" "$out" &
    wrk_pid=$!
    # Mid-run: how many connections does the proxy hold to the backend
    # (upstream reuse check: should stay near CONNECTIONS, not churn)?
    sleep "$(awk -v d="$DURATION" 'BEGIN {print d / 2}')"
    upconn=$(upstream_conns "${procs[@]}")
    wrk_rc=0
    wait "$wrk_pid" || wrk_rc=$?
    read -r u1 s1 <<<"$(cpu_usr_sys "${procs[@]}")"
    m1=$(machine_busy); c1=$(children_ticks); t1=$(date +%s%N)
    read -r bu1 bs1 <<<"$(cpu_usr_sys "${bprocs[@]}")"
    errors=""
    [ "$wrk_rc" = 0 ] || errors+="wrk-exit-$wrk_rc "
    if ! kill -0 "$top" 2>/dev/null; then errors+="PROXY-EXITED "; fi
    read -r -a procs_after <<<"$(proc_tree "$top")"
    [ "${procs[*]}" = "${procs_after[*]}" ] || errors+="PROCS-CHANGED(${procs[*]}->${procs_after[*]}) "
    reqs=$(awk '/requests in/ {print $1; exit}' "$out")
    rps=$(awk '/^Requests\/sec:/ {print $2; exit}' "$out")
    p50=$(awk '$1 == "50%" {print $2; exit}' "$out")
    p99=$(awk '$1 == "99%" {print $2; exit}' "$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
    sockerr=$(sed -n 's/^ *Socket errors: *//p' "$out")
    [ -z "$non2xx" ] || errors+="non-2xx=$non2xx "
    [ -z "$sockerr" ] || errors+="socket-errors($sockerr) "
    if [ -z "$reqs" ] || [ -z "$rps" ] || [ -z "$p50" ] || [ "$reqs" = 0 ]; then
      echo "l7.sh: wrk produced no result against $p in round $r:" >&2
      sed 's/^/  /' "$out" >&2
      errors+="no-result "
      reqs=0 rps=0 p50=0 p99=0
    fi
    [ -z "$errors" ] || failed=1
    p50=$(to_ms "$p50"); p99=$(to_ms "$p99")
    read -r cpu usr sys bcpu wrkpct otherpct < <(awk -v u="$((u1 - u0))" -v s="$((s1 - s0))" -v hz="$HZ" \
      -v n="$reqs" -v b="$((bu1 - bu0 + bs1 - bs0))" -v w="$((c1 - c0))" -v m="$((m1 - m0))" \
      -v ns="$((t1 - t0))" 'BEGIN {
        wall = ns / 1e9 * hz                      # ticks of one CPU over the run
        o = m - (u + s) - b - w; if (o < 0) o = 0
        if (n == 0) { printf "0 0 0 0 %.0f %.0f\n", 100 * w / wall, 100 * o / wall; exit }
        k = 1e6 / hz / n
        printf "%.2f %.2f %.2f %.2f %.0f %.0f\n", (u + s) * k, u * k, s * k, b * k, 100 * w / wall, 100 * o / wall }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$p" "$rps" "$p50" "$p99" \
      "$cpu" "$usr" "$sys" "$bcpu" "$upconn" "$wrkpct" "$otherpct" "${errors:-none}" >>"$RESULTS"
    printf '%-5s %-11s %10.0f %9.3f %9.3f %11.2f %8.2f %8.2f %11.2f %7s %5s%% %5s%%  %s\n' \
      "$r" "$p" "$rps" "$p50" "$p99" "$cpu" "$usr" "$sys" "$bcpu" "$upconn" "$wrkpct" "$otherpct" "${errors:-}"
    if [[ $errors == *PROXY-EXITED* ]]; then
      echo "l7.sh: $p exited during round $r. Last lines of its log:" >&2
      tail -n 20 "$DIR/$p.log" >&2
      die "$p crashed under load (wrk output: $out)"
    fi
  done
done

# Medians per proxy over the rounds.
median() {  # median PROXY COLUMN
  awk -F'\t' -v p="$1" -v c="$2" 'NR > 1 && $2 == p {print $c}' "$RESULTS" | sort -g |
    awk '{v[NR] = $1} END {if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2];
         else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
declare -A M
for p in "${PROXY_LIST[@]}"; do
  for c in 3 4 5 6 7 8 9 12; do M[$p,$c]=$(median "$p" "$c"); done
done

echo
echo "Median over $ROUNDS rounds (wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s; CPU = utime+stime of the proxy's processes):"
echo
echo "| proxy | req/s | p50 ms | p99 ms | CPU µs/req | usr µs/req | sys µs/req | backend CPU µs/req | other CPU % |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for p in "${PROXY_LIST[@]}"; do
  printf '| %s | %.0f | %.3f | %.3f | %.2f | %.2f | %.2f | %.2f | %.0f |\n' "$p" \
    "${M[$p,3]}" "${M[$p,4]}" "${M[$p,5]}" "${M[$p,6]}" "${M[$p,7]}" "${M[$p,8]}" "${M[$p,9]}" "${M[$p,12]}"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b == 0) print "n/a"; else printf "%.3f", a / b}'; }
have() { [[ " ${PROXY_LIST[*]} " == *" $1 "* ]]; }
if have sluice; then
  echo
  echo "Ratios (medians):"
  for o in sluice-base nginx haproxy; do
    have "$o" || continue
    printf '  Sluice req/s   / %-11s req/s   = %s   (> 1: Sluice serves more)\n' "$o" "$(ratio "${M[sluice,3]}" "${M[$o,3]}")"
  done
  for o in sluice-base nginx haproxy; do
    have "$o" || continue
    printf '  Sluice CPU/req / %-11s CPU/req = %s   (< 1: Sluice uses less CPU per request)\n' "$o" "$(ratio "${M[sluice,6]}" "${M[$o,6]}")"
  done
  # The same ratios taken within each round (the proxies of a round run one
  # after the other, so they share its conditions), then the median: on a
  # noisy machine this is steadier than the ratio of medians.
  paired() {  # paired OTHER COLUMN -> median over rounds of sluice/OTHER
    awk -F'\t' -v o="$1" -v c="$2" 'NR > 1 && $2 == "sluice" {a[$1] = $c} NR > 1 && $2 == o {b[$1] = $c}
      END {for (r in a) if ((r in b) && b[r] > 0) print a[r] / b[r]}' "$RESULTS" | sort -g |
      awk '{v[NR] = $1} END {if (NR == 0) print "n/a"; else if (NR % 2) printf "%.3f", v[(NR + 1) / 2];
           else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2}'
  }
  echo "Ratios within each round (median over rounds):"
  for o in sluice-base nginx haproxy; do
    have "$o" || continue
    printf '  Sluice / %-11s req/s = %s, CPU/req = %s\n' "$o" "$(paired "$o" 3)" "$(paired "$o" 6)"
  done
fi
noisy=$(awk -F'\t' 'NR > 1 && $12 > 10' "$RESULTS" | wc -l)
if [ "$noisy" -gt 0 ]; then
  echo
  echo "Note: in $noisy of $((ROUNDS * ${#PROXY_LIST[@]})) runs more than 10% of a CPU went to something other than"
  echo "wrk, the proxy and the backend (column 'other'): the machine was not idle, so those runs are disturbed."
  echo "Medians over the undisturbed runs only (other <= 10%):"
  echo
  echo "| proxy | quiet runs | req/s | p50 ms | p99 ms | CPU µs/req |"
  echo "|---|---:|---:|---:|---:|---:|"
  for p in "${PROXY_LIST[@]}"; do
    awk -F'\t' -v p="$p" 'NR > 1 && $2 == p && $12 <= 10' "$RESULTS" >"$DIR/quiet.tsv"
    n=$(wc -l <"$DIR/quiet.tsv")
    if [ "$n" = 0 ]; then echo "| $p | 0 | - | - | - | - |"; continue; fi
    row="| $p | $n"
    for c in 3 4 5 6; do
      row+=" | $(cut -f"$c" "$DIR/quiet.tsv" | sort -g | awk '{v[NR] = $1} END {
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf (m >= 1000 ? "%.0f" : (m >= 10 ? "%.2f" : "%.3f")), m }')"
    done
    echo "$row |"
  done
fi
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "Raw results: $RESULTS$([ "$KEEP_TMP" = 1 ] || echo ' (removed on exit; KEEP_TMP=1 keeps it)')"
if [ "$failed" = 1 ]; then
  echo "l7.sh: some runs had errors (see the errors column)" >&2
  KEEP_TMP=1
  exit 1
fi
