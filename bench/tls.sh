#!/usr/bin/env bash
# bench/tls.sh: Sluice vs nginx vs HAProxy terminating TLS, one worker each,
# in front of the same nginx backend as bench/l7.sh. `make bench-tls` runs it.
#
# Rows (each server, alternated within every round; medians over rounds):
#   full-ecdsa     full TLS 1.3 handshakes/s, the server's ECDSA P-256 cert
#   full-rsa       the same with its RSA-2048 cert (the client's signature
#                  algorithms choose: both certs are loaded for one name)
#   resume-tls13   TLS 1.3 resumptions/s by ticket
#   resume-tls12   TLS 1.2 resumptions/s by session ID (the session cache)
#   keepalive      HTTPS/1.1 keep-alive requests/s, CPU µs per request
#   h2             HTTP/2 requests/s with h2load (-c H2_CLIENTS -m H2_STREAMS)
#   isolation      issue 11 item 5: p50/p99 of a light keep-alive probe while
#                  a flood of full RSA-2048 handshakes (the costly kind for a
#                  server, cheap for the client) hits the same worker, and
#                  the same probe with no flood
# The client is bench/tls_load.c (build/bench/tls_load) except for h2
# (h2load). Server CPU is utime+stime of the server's processes from
# /proc/PID/stat, read before and after each run. Certificates (ECDSA and
# RSA for bench.test, with an intermediate) are made at run time.
#
# Sluice's rows need a build whose `sluice check` accepts a listener's
# `tls:` block; with an older build they are skipped with a message, and
# its h2 row is skipped when it does not negotiate h2.
#
# Everything listens on 127.0.0.1 and runs from a mktemp -d directory under
# /tmp; everything the script starts is stopped on exit. Root is not needed.
#
# Environment (defaults in brackets):
#   DURATION [4]         seconds per measured run
#   ROUNDS [3]           rounds; each runs every row against every server
#   WARMUP [1]           seconds of unrecorded load per server before round 1
#   SERVERS [sluice nginx haproxy]  which servers, in round order
#   ROWS [full-ecdsa full-rsa resume-tls13 resume-tls12 keepalive h2 isolation]
#   HS_CONNS [16]        connections of a handshake flood (tls_load -c)
#   KA_CONNS [64]        keep-alive connections
#   H2_CLIENTS [16]      h2load connections      H2_STREAMS [10] streams each
#   FLOOD_CONNS [32]     connections of the isolation row's flood
#   PROBE_CONNS [4]      isolation probe connections, one request in flight
#   PROBE_INTERVAL_MS [10]  pause between a probe's answer and its next request
#   SERVER_CPU [1]       CPU the servers are pinned to ("" for none)
#   LOAD_CPU [0]         CPU for the clients and the backend ("" for none)
#   BASE_PORT [18640]    sluice BASE, backend BASE+1, nginx BASE+2, haproxy BASE+3
#   ADMIN_PORT [19940]   Sluice admin API
#   SLUICE [build/sluice]   TLS_LOAD [build/bench/tls_load]
#   KEEP_TMP [0]         1 keeps the temp dir (configs, logs, raw outputs)
#
# Whole run: about ROUNDS x servers x 50 seconds with the defaults: 7 to 8
# minutes with three servers, 5 with two (measured on two busy CPUs).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

case "${1:-}" in
  "") ;;
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "tls.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
esac

DURATION=${DURATION:-4}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}
SERVERS=${SERVERS:-sluice nginx haproxy}
ROWS=${ROWS:-full-ecdsa full-rsa resume-tls13 resume-tls12 keepalive h2 isolation}
HS_CONNS=${HS_CONNS:-16}
FLOOD_CONNS=${FLOOD_CONNS:-32}
KA_CONNS=${KA_CONNS:-64}
H2_CLIENTS=${H2_CLIENTS:-16}
H2_STREAMS=${H2_STREAMS:-10}
PROBE_CONNS=${PROBE_CONNS:-4}
PROBE_INTERVAL_MS=${PROBE_INTERVAL_MS:-10}
SERVER_CPU=${SERVER_CPU-1}
LOAD_CPU=${LOAD_CPU-0}
BASE_PORT=${BASE_PORT:-18640}
ADMIN_PORT=${ADMIN_PORT:-19940}
SLUICE=${SLUICE:-build/sluice}
TLS_LOAD=${TLS_LOAD:-build/bench/tls_load}
KEEP_TMP=${KEEP_TMP:-0}

NAME=bench.test
# Every server gets the same preferences; the client offers only the first
# suite of each list, so all three negotiate the same cipher.
CIPHERS12="ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
SUITES13="TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
CLIENT_CIPHERS12="ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"
CLIENT_SUITES13="TLS_AES_128_GCM_SHA256"
SIGALGS_EC="ecdsa_secp256r1_sha256"
SIGALGS_RSA="rsa_pss_rsae_sha256:rsa_pkcs1_sha256"

BACKEND_PORT=$((BASE_PORT + 1))
HZ=$(getconf CLK_TCK)

die() { echo "tls.sh: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

for tool in curl nginx haproxy h2load openssl taskset python3; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || die "$tool not found (make deps installs it)"
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
[ -x "$TLS_LOAD" ] || die "$TLS_LOAD not found; run 'make build/bench/tls_load' (or 'make bench-tls')"
TLS_LOAD=$(realpath "$TLS_LOAD")
read -r -a SERVER_LIST <<<"$SERVERS"
read -r -a ROW_LIST <<<"$ROWS"
for r in "${ROW_LIST[@]}"; do
  case $r in full-ecdsa|full-rsa|resume-tls13|resume-tls12|keepalive|h2|isolation) ;;
    *) die "unknown row '$r' (ROWS may hold full-ecdsa full-rsa resume-tls13 resume-tls12 keepalive h2 isolation)" ;;
  esac
done
if [ "$(nproc)" -lt 2 ] && { [ -n "$SERVER_CPU" ] || [ -n "$LOAD_CPU" ]; }; then
  echo "tls.sh: one CPU only: nothing is pinned" >&2
  SERVER_CPU="" LOAD_CPU=""
fi
if [ "$(cat /proc/sys/net/ipv4/tcp_tw_reuse 2>/dev/null || echo 2)" = 0 ]; then
  echo "tls.sh: net.ipv4.tcp_tw_reuse is 0: the handshake floods may run out of local ports (TIME_WAIT)" >&2
fi

declare -A PORT PID
PORT[sluice]=$BASE_PORT
PORT[nginx]=$((BASE_PORT + 2))
PORT[haproxy]=$((BASE_PORT + 3))
for s in "${SERVER_LIST[@]}"; do
  [ -n "${PORT[$s]:-}" ] || die "unknown server '$s' (SERVERS may hold sluice, nginx, haproxy)"
done
for port in "$BACKEND_PORT" "$ADMIN_PORT" "${PORT[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port is already in use on 127.0.0.1; stop it or set BASE_PORT/ADMIN_PORT"
  fi
done

DIR=$(mktemp -d /tmp/sluice-bench-tls.XXXXXX)
STARTED=()   # pids of everything we started (each is the top process of its tree)

stop_pid() {  # stop_pid PID: TERM, wait up to 5s, then KILL the pid and its children
  local pid=$1 i kids
  kill -0 "$pid" 2>/dev/null || return 0
  kids=$(pgrep -P "$pid" 2>/dev/null || true)
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "tls.sh: pid $pid did not stop on SIGTERM, sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    for k in $kids; do kill -KILL "$k" 2>/dev/null || true; done
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$? i
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do stop_pid "${STARTED[i]}"; done
  if [ "$KEEP_TMP" = 1 ] || [ "$rc" != 0 ]; then
    echo "tls.sh: temp dir kept: $DIR" >&2
  else
    rm -rf "$DIR"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pin() { [ -n "$1" ] && printf 'taskset -c %s' "$1"; return 0; }
read -r -a SERVER_PIN <<<"$(pin "$SERVER_CPU")"
read -r -a LOAD_PIN <<<"$(pin "$LOAD_CPU")"

USER_LINE=""
[ "$(id -u)" = 0 ] && USER_LINE="user root;"   # workers need the 0700 temp dir

# ------------------------------------------------------------ certificates --
# tests/integration/tls_certs.py: a root, an intermediate, and leaves for
# bench.test with an ECDSA P-256 and an RSA-2048 key; chains are leaf first.
make_certs() {
  python3 - "$REPO/tests/integration" "$DIR/pki" "$NAME" <<'EOF' >"$DIR/certs.list"
import sys
sys.path.insert(0, sys.argv[1])
from tls_certs import CertAuthority
ca = CertAuthority(sys.argv[2], name="Sluice Bench")
for kind in ("ec", "rsa"):
    c = ca.issue([sys.argv[3]], key=kind)
    print(kind, c.chain, c.key)
EOF
  local kind chain key
  while read -r kind chain key; do
    cp "$chain" "$DIR/$kind.chain.pem"
    cp "$key" "$DIR/$kind.key"
    cat "$chain" "$key" >"$DIR/$kind.haproxy.pem"   # HAProxy: chain and key in one file
  done <"$DIR/certs.list"
  [ -s "$DIR/ec.haproxy.pem" ] && [ -s "$DIR/rsa.haproxy.pem" ] || die "certificates not made (see $DIR/pki)"
}

render() {  # render TEMPLATE OUT PORT
  sed -e "s|@DIR@|$DIR|g" -e "s|@USER_LINE@|$USER_LINE|g" -e "s|@NAME@|$NAME|g" \
      -e "s|@BACKEND_PORT@|$BACKEND_PORT|g" -e "s|@ADMIN_PORT@|$ADMIN_PORT|g" \
      -e "s|@CIPHERS@|$CIPHERS12|g" -e "s|@SUITES@|$SUITES13|g" \
      -e "s|@PORT@|$3|g" "$REPO/bench/$1" >"$DIR/$2"
}

# ----------------------------------------------------------------- servers --
# wait_200 NAME URL [curl args]: poll until 200 with the backend's body.
wait_200() {
  local name=$1 url=$2 i code=""
  shift 2
  for ((i = 0; i < 100; i++)); do
    code=$(curl -s -o "$DIR/$name.curl" -w '%{http_code}' --max-time 2 "$@" "$url" || true)
    [ "$code" = 200 ] && break
    sleep 0.1
  done
  [ "$code" = 200 ] || die "$name at $url does not answer 200 (last status '${code:-none}'); see $DIR/$name*.log"
  if [ "$name" != backend ] && ! cmp -s "$DIR/$name.curl" "$DIR/backend.curl"; then
    die "$name answered 200 but not with the backend's body: $(head -c 200 "$DIR/$name.curl")"
  fi
}

start_backend() {
  mkdir -p "$DIR/backend-tmp"
  render l7/backend-nginx.conf.in backend-nginx.conf "$BACKEND_PORT"
  "${LOAD_PIN[@]}" "$NGINX" -p "$DIR" -e "$DIR/backend-nginx.error.log" \
    -c "$DIR/backend-nginx.conf" -g 'daemon off;' >"$DIR/backend.log" 2>&1 &
  BACKEND_PID=$!
  STARTED+=("$BACKEND_PID")
  wait_200 backend "http://127.0.0.1:$BACKEND_PORT/"
}

# Sluice's config: with the `sessions:` block when this build knows it,
# else without (its defaults then decide resumption; SLUICE_NOTE says so),
# else Sluice is skipped: a build without TLS (SLUICE_SKIP says why).
SLUICE_NOTE=""
SLUICE_SKIP=""
sluice_config() {
  [ -x "$SLUICE" ] || { SLUICE_SKIP="$SLUICE not found (run 'make')"; return 1; }
  SLUICE=$(realpath "$SLUICE")
  render tls/sluice.yaml.in sluice.yaml.in.rendered "${PORT[sluice]}"
  sed 's/#SESSIONS#//' "$DIR/sluice.yaml.in.rendered" >"$DIR/sluice.yaml"
  if "$SLUICE" check -c "$DIR/sluice.yaml" >"$DIR/sluice-check.log" 2>&1; then return 0; fi
  grep -v '#SESSIONS#' "$DIR/sluice.yaml.in.rendered" >"$DIR/sluice.yaml"
  if "$SLUICE" check -c "$DIR/sluice.yaml" >"$DIR/sluice-check2.log" 2>&1; then
    SLUICE_NOTE="this build refuses tls.sessions ($(head -n1 "$DIR/sluice-check.log")): Sluice runs with its default session settings"
    return 0
  fi
  SLUICE_SKIP="$SLUICE check rejects a listener with tls: $(head -n1 "$DIR/sluice-check2.log")"
  return 1
}

start_server() {  # start_server NAME
  local name=$1
  case $name in
    sluice)
      "${SERVER_PIN[@]}" "$SLUICE" proxy -c "$DIR/sluice.yaml" --workers 1 >"$DIR/sluice.log" 2>&1 &
      ;;
    nginx)
      mkdir -p "$DIR/nginx-tmp"
      render tls/nginx.conf.in nginx.conf "${PORT[nginx]}"
      "${SERVER_PIN[@]}" "$NGINX" -p "$DIR" -e "$DIR/nginx.error.log" \
        -c "$DIR/nginx.conf" -g 'daemon off;' >"$DIR/nginx.log" 2>&1 &
      ;;
    haproxy)
      render tls/haproxy.cfg.in haproxy.cfg "${PORT[haproxy]}"
      "$HAPROXY" -c -q -f "$DIR/haproxy.cfg" >"$DIR/haproxy-check.log" 2>&1 ||
        die "haproxy rejects the bench config: $(cat "$DIR/haproxy-check.log")"
      "${SERVER_PIN[@]}" "$HAPROXY" -db -f "$DIR/haproxy.cfg" >"$DIR/haproxy.log" 2>&1 &
      ;;
  esac
  PID[$name]=$!
  STARTED+=("${PID[$name]}")
  wait_200 "$name" "https://$NAME:${PORT[$name]}/" -k --http1.1 --resolve "$NAME:${PORT[$name]}:127.0.0.1"
}

# h2 negotiated? Sluice's HTTP/2 comes in its own branch: no h2, no h2 row.
declare -A H2_SKIP
check_h2() {  # check_h2 NAME
  local name=$1
  h2load -n 1 -c 1 --connect-to="127.0.0.1:${PORT[$name]}" "https://$NAME:${PORT[$name]}/" \
    >"$DIR/h2check-$name.out" 2>&1 || true
  if ! grep -q '^Application protocol: h2' "$DIR/h2check-$name.out" ||
     ! grep -q '1 succeeded' "$DIR/h2check-$name.out"; then
    H2_SKIP[$name]="it does not negotiate h2 over TLS (h2load: $(grep -m1 -iE 'application protocol|no protocol|fail|error' "$DIR/h2check-$name.out" || echo "see $DIR/h2check-$name.out"))"
  fi
}

# ------------------------------------------------------------- measuring --
# The processes whose CPU counts for a server: its top process and its
# children (Sluice and nginx: master + one worker; HAProxy: one process).
# shellcheck disable=SC2046
proc_tree() { echo "$1" $(pgrep -P "$1" 2>/dev/null || true); }

cpu_ticks() {  # cpu_ticks PID...: utime+stime summed, in clock ticks
  local p s total=0
  for p in "$@"; do
    s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    s=${s##*) }   # comm may hold spaces: cut after its closing parenthesis
    total=$((total + $(awk '{print $12 + $13}' <<<"$s")))
  done
  echo "$total"
}

# Machine-wide busy ticks (user+nice+system+irq+softirq of /proc/stat) and
# the ticks of this shell's reaped children (the clients): with the server's
# and the backend's own ticks, what is left is CPU used by something else --
# other work on the machine, plus kernel time charged to no process.
machine_busy() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8; exit}' /proc/stat; }
children_ticks() { local s; s=$(cat "/proc/$$/stat"); s=${s##*) }; awk '{print $14 + $15}' <<<"$s"; }

# sample_begin PID...: start a measuring window for these server processes;
# sample_end: SERVER_TICKS, WINDOW_NS and OTHER_PCT (share of one CPU used by
# neither the server, the backend nor the clients) for the window.
sample_begin() {
  SAMPLE_PROCS=("$@")
  read -r -a SAMPLE_BACKEND <<<"$(proc_tree "$BACKEND_PID")"
  S_M0=$(machine_busy); S_CH0=$(children_ticks); S_B0=$(cpu_ticks "${SAMPLE_BACKEND[@]}")
  S_S0=$(cpu_ticks "${SAMPLE_PROCS[@]}"); S_T0=$(date +%s%N)
}
sample_end() {
  local s1 t1 m1 ch1 b1
  s1=$(cpu_ticks "${SAMPLE_PROCS[@]}"); t1=$(date +%s%N)
  m1=$(machine_busy); ch1=$(children_ticks); b1=$(cpu_ticks "${SAMPLE_BACKEND[@]}")
  SERVER_TICKS=$((s1 - S_S0)); WINDOW_NS=$((t1 - S_T0))
  OTHER_PCT=$(awk -v m=$((m1 - S_M0)) -v s="$SERVER_TICKS" -v b=$((b1 - S_B0)) -v c=$((ch1 - S_CH0)) \
    -v ns="$WINDOW_NS" -v hz="$HZ" 'BEGIN {o = m - s - b - c; if (o < 0) o = 0; printf "%.0f", 100 * o / hz / (ns / 1e9)}')
}

CLIENT_TLS=(-S "$NAME" -C "$CLIENT_CIPHERS12" -X "$CLIENT_SUITES13")

# load_cmd ROW PORT SECONDS: the client command of a row (isolation: its
# flood). Its words hold no spaces: the caller splits them with read -a.
load_cmd() {
  local row=$1 port=$2 secs=$3 target="127.0.0.1:$2"
  case $row in
    full-ecdsa)   echo "$TLS_LOAD" full -t 1.3 -s "$SIGALGS_EC" -c "$HS_CONNS" -d "$secs" "${CLIENT_TLS[@]}" "$target" ;;
    full-rsa)     echo "$TLS_LOAD" full -t 1.3 -s "$SIGALGS_RSA" -c "$HS_CONNS" -d "$secs" "${CLIENT_TLS[@]}" "$target" ;;
    resume-tls13) echo "$TLS_LOAD" resume -t 1.3 -s "$SIGALGS_EC" -c "$HS_CONNS" -d "$secs" "${CLIENT_TLS[@]}" "$target" ;;
    resume-tls12) echo "$TLS_LOAD" resume -t 1.2 -T id -s "$SIGALGS_EC" -c "$HS_CONNS" -d "$secs" "${CLIENT_TLS[@]}" "$target" ;;
    keepalive)    echo "$TLS_LOAD" keepalive -t 1.3 -s "$SIGALGS_EC" -c "$KA_CONNS" -d "$secs" "${CLIENT_TLS[@]}" "$target" ;;
    h2)           echo h2load -c "$H2_CLIENTS" -m "$H2_STREAMS" -D "$secs" --tls13-ciphers="$CLIENT_SUITES13" \
                    --connect-to="127.0.0.1:$port" "https://$NAME:$port/" ;;
    isolation)    echo "$TLS_LOAD" full -t 1.3 -s "$SIGALGS_RSA" -c "$FLOOD_CONNS" -d "$secs" "${CLIENT_TLS[@]}" "$target" ;;
  esac
}
probe_cmd() {  # probe_cmd PORT SECONDS
  echo "$TLS_LOAD" probe -t 1.3 -s "$SIGALGS_EC" -c "$PROBE_CONNS" -i "$PROBE_INTERVAL_MS" -d "$2" \
    "${CLIENT_TLS[@]}" "127.0.0.1:$1"
}

# summarize_json FILE ROW: the numbers of a tls_load run and what must
# hold for it to count, as "ops_per_s ops p50_us p99_us p999_us extra|problems"
# (problems empty when none): no errors, the expected version and server
# key, full handshakes never resumed, resumptions really resumed.
summarize_json() {
  python3 - "$1" "$2" <<'EOF'
import json, sys
path, row = sys.argv[1], sys.argv[2]
try:
    lines = [l for l in open(path) if l.startswith("{")]
    d = json.loads(lines[-1])
except (OSError, IndexError, ValueError):
    print("0 0 0 0 0 0|no-result"); sys.exit()
bad = []
e = d["errors"]
if e["connect"] or e["tls"] or e["http"]:
    bad.append("errors(c=%d,t=%d,h=%d:%s)" % (e["connect"], e["tls"], e["http"], d["first_error"].replace(" ", "_")[:60]))
if d["non_2xx"]: bad.append("non-2xx=%d" % d["non_2xx"])
if d["server_closed"]:  # keep-alive rows: a closing server turns them into handshake rows
    bad.append("server-closed-keepalive=%d" % d["server_closed"])
if d["version"] and d["version"] != ("TLSv1.2" if row == "resume-tls12" else "TLSv1.3"):
    bad.append("version=" + d["version"])
want_key = "RSA-2048" if row == "full-rsa" else "EC-256"
if d["server_key"] and d["server_key"] != want_key: bad.append("server-key=" + d["server_key"])
hs, res = d["handshakes"], d["resumed"]
extra = 0
if row.startswith("resume"):
    extra = 100.0 * res / hs if hs else 0
    if hs == 0 or res < 0.99 * hs: bad.append("resumed-only-%d/%d" % (res, hs))
elif res: bad.append("resumed=%d" % res)
if d["mode"] in ("keepalive", "probe"):
    ops, rate, lat = d["requests"], d["requests_per_s"], d["request_us"]
else:
    ops, rate, lat = hs, d["handshakes_per_s"], d["handshake_us"]
if ops == 0: bad.append("nothing-completed")
print("%.1f %d %.1f %.1f %.1f %.1f|%s" % (rate, ops, lat["p50"], lat["p99"], lat["p999"], extra, " ".join(bad)))
EOF
}

summarize_h2load() {  # summarize_h2load FILE -> same format
  awk '
    /^finished in/ { for (i = 1; i <= NF; i++) if ($(i + 1) ~ /^req\/s/) rate = $i }
    /^requests:/   { ok = $8; failed = $10; errored = $12; timeout = $14 }
    /^Application protocol:/ { proto = $3 }
    /^time for request:/ { mean = $6 }
    END {
      bad = ""
      if (proto != "h2") bad = bad " protocol=" (proto == "" ? "none" : proto)
      if (failed + 0 || errored + 0 || timeout + 0) bad = bad " failed=" failed "/errored=" errored "/timeout=" timeout
      if (ok + 0 == 0) bad = bad " nothing-completed"
      sub(/^ /, "", bad)
      printf "%.1f %d 0 0 0 0|%s\n", rate, ok, bad
    }' "$1"
}

RESULTS=$DIR/results.tsv
printf 'round\trow\tserver\tops_per_s\tops\tcpu_us_op\tserver_cpu_pct\tp50_us\tp99_us\tp999_us\textra\tother_cpu_pct\tproblems\n' >"$RESULTS"
failed=0

# record ROUND ROW SERVER SUMMARY TICKS NS OTHER_PCT: one line of results, one of output
record() {
  local round=$1 row=$2 server=$3 summary=$4 ticks=$5 ns=$6 other=$7 nums problems
  nums=${summary%%|*}; problems=${summary#*|}
  read -r rate ops p50 p99 p999 extra <<<"$nums"
  read -r cpu_op cpu_pct < <(awk -v t="$ticks" -v hz="$HZ" -v n="$ops" -v ns="$ns" 'BEGIN {
    printf "%.1f %.0f\n", (n > 0 ? t * 1e6 / hz / n : 0), 100 * t / hz / (ns / 1e9) }')
  [ -z "$problems" ] || failed=1
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$row" "$server" "$rate" "$ops" \
    "$cpu_op" "$cpu_pct" "$p50" "$p99" "$p999" "$extra" "$other" "${problems:-none}" >>"$RESULTS"
  printf '%-5s %-13s %-8s %11.0f %9s %6s%% %10s %10s %5s%%  %s\n' "$round" "$row" "$server" "$rate" "$cpu_op" \
    "$cpu_pct" "$p50" "$p99" "$other" "$problems"
}

# run_row ROUND ROW SERVER: one measured run (isolation: two, idle and flood)
run_row() {
  local round=$1 row=$2 s=$3 port=${PORT[$3]} out procs flood_pid cmd flood
  out="$DIR/r$round-$row-$s"
  kill -0 "${PID[$s]}" 2>/dev/null || die "$s (pid ${PID[$s]}) is no longer running; see $DIR/$s.log"
  read -r -a procs <<<"$(proc_tree "${PID[$s]}")"
  if [ "$row" = h2 ] && [ -n "${H2_SKIP[$s]:-}" ]; then
    return
  fi
  if [ "$row" = isolation ]; then
    # The probe alone, then the probe during a flood. The flood runs at
    # nice 10 on the clients' CPU so that it does not delay the probe
    # there: what the probe sees is the server. RSA: the server signs (about
    # 1 ms of its CPU), the client only verifies, so one client CPU can
    # keep the server's CPU busy.
    read -r -a cmd <<<"$(probe_cmd "$port" "$DURATION")"
    sample_begin "${procs[@]}"
    timeout $((DURATION + 30)) "${LOAD_PIN[@]}" "${cmd[@]}" >"$out.idle.json" 2>"$out.idle.err" || true
    sample_end
    record "$round" iso-idle "$s" "$(summarize_json "$out.idle.json" iso-idle)" "$SERVER_TICKS" "$WINDOW_NS" "$OTHER_PCT"
    # Two windows: the server's CPU % over the probe's run; the CPU of
    # others over the whole flood (its client's ticks are counted once it
    # is reaped).
    read -r -a flood <<<"$(load_cmd isolation "$port" $((DURATION + 2)))"
    sample_begin "${procs[@]}"
    local flood_m0=$S_M0 flood_ch0=$S_CH0 flood_b0=$S_B0 flood_s0=$S_S0 flood_t0=$S_T0
    timeout $((DURATION + 40)) "${LOAD_PIN[@]}" nice -n 10 "${flood[@]}" >"$out.flood.json" 2>"$out.flood.err" &
    flood_pid=$!
    sleep 1
    sample_begin "${procs[@]}"
    timeout $((DURATION + 30)) "${LOAD_PIN[@]}" "${cmd[@]}" >"$out.json" 2>"$out.err" || true
    sample_end
    local probe_ticks=$SERVER_TICKS probe_ns=$WINDOW_NS
    wait "$flood_pid" || true
    S_M0=$flood_m0 S_CH0=$flood_ch0 S_B0=$flood_b0 S_S0=$flood_s0 S_T0=$flood_t0
    sample_end
    local fsum fprob summary
    fsum=$(summarize_json "$out.flood.json" full-rsa)
    fprob=${fsum#*|}
    summary=$(summarize_json "$out.json" iso-flood)
    # extra column: the flood's handshakes/s; its problems join the probe's
    summary="$(awk -v f="${fsum%% *}" '{ $6 = f; print }' <<<"${summary%%|*}")|${summary#*|}${fprob:+ flood:$fprob}"
    record "$round" iso-flood "$s" "$summary" "$probe_ticks" "$probe_ns" "$OTHER_PCT"
    return
  fi
  read -r -a cmd <<<"$(load_cmd "$row" "$port" "$DURATION")"
  sample_begin "${procs[@]}"
  timeout $((DURATION + 30)) "${LOAD_PIN[@]}" "${cmd[@]}" >"$out.out" 2>"$out.err" || true
  sample_end
  if [ "$row" = h2 ]; then
    record "$round" "$row" "$s" "$(summarize_h2load "$out.out")" "$SERVER_TICKS" "$WINDOW_NS" "$OTHER_PCT"
  else
    record "$round" "$row" "$s" "$(summarize_json "$out.out" "$row")" "$SERVER_TICKS" "$WINDOW_NS" "$OTHER_PCT"
  fi
  kill -0 "${PID[$s]}" 2>/dev/null || die "$s exited during $row (round $round); see $DIR/$s.log"
}

# ------------------------------------------------------------------- run --
echo "tls bench: $ROUNDS rounds x rows [${ROW_LIST[*]}] x servers [${SERVER_LIST[*]}], ${DURATION}s per run"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), kernel $(uname -r)"
echo "versions: $("$NGINX" -v 2>&1 | sed 's/.*version: //'), HAProxy $("$HAPROXY" -v | awk 'NR == 1 {print $3}'), $(openssl version), h2load $(h2load --version | awk '{print $2}')"
echo "pinning: servers=${SERVER_CPU:-none} clients+backend=${LOAD_CPU:-none}"
echo "clients: handshake floods -c $HS_CONNS (isolation flood: RSA, -c $FLOOD_CONNS), keep-alive -c $KA_CONNS, h2load -c $H2_CLIENTS -m $H2_STREAMS, probe -c $PROBE_CONNS every ${PROBE_INTERVAL_MS} ms"
echo "temp dir: $DIR"
echo "started: $(date -u '+%F %T UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"

make_certs
if [[ " ${SERVER_LIST[*]} " == *" sluice "* ]]; then
  if sluice_config; then
    echo "sluice: $SLUICE, sha1 $(sha1sum "$SLUICE" | cut -c1-12), tree $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)"
    [ -z "$SLUICE_NOTE" ] || echo "sluice: $SLUICE_NOTE"
  else
    echo
    echo "SKIPPED: Sluice's rows. $SLUICE_SKIP"
    echo "(a build with TLS termination is needed: the listener's tls: block of docs/tls.md)"
    echo
    others=()
    for s in "${SERVER_LIST[@]}"; do [ "$s" = sluice ] || others+=("$s"); done
    SERVER_LIST=("${others[@]}")
  fi
fi
[ ${#SERVER_LIST[@]} -gt 0 ] || die "no server left to measure"

start_backend
for s in "${SERVER_LIST[@]}"; do
  start_server "$s"
  check_h2 "$s"
  [ -z "${H2_SKIP[$s]:-}" ] || echo "SKIPPED: the h2 row of $s: ${H2_SKIP[$s]}"
  log "$s on 127.0.0.1:${PORT[$s]} answers 200 over TLS"
done

if [ "$WARMUP" -gt 0 ]; then
  for s in "${SERVER_LIST[@]}"; do
    log "warm-up: $s ${WARMUP}s"
    read -r -a cmd <<<"$(load_cmd keepalive "${PORT[$s]}" "$WARMUP")"
    "${LOAD_PIN[@]}" "${cmd[@]}" >"$DIR/warmup-$s.json" 2>&1 || die "warm-up against $s failed: $(cat "$DIR/warmup-$s.json")"
  done
fi

echo
printf '%-5s %-13s %-8s %11s %9s %7s %10s %10s %6s  %s\n' round row server 'ops/s' 'CPU us/op' 'CPU' 'p50 us' 'p99 us' 'other' problems
for ((r = 1; r <= ROUNDS; r++)); do
  for row in "${ROW_LIST[@]}"; do
    for s in "${SERVER_LIST[@]}"; do
      run_row "$r" "$row" "$s"
    done
  done
done

# ---------------------------------------------------------------- report --
median() {  # median ROW SERVER COLUMN (over rounds)
  awk -F'\t' -v r="$1" -v s="$2" -v c="$3" 'NR > 1 && $2 == r && $3 == s {print $c}' "$RESULTS" | sort -g |
    awk '{v[NR] = $1} END {if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2];
         else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "" || b == "" || b == 0) print "-"; else printf "%.2f", a / b}'; }

ROW_NAMES=()
for row in "${ROW_LIST[@]}"; do
  if [ "$row" = isolation ]; then ROW_NAMES+=(iso-idle iso-flood); else ROW_NAMES+=("$row"); fi
done
declare -A UNIT=([full-ecdsa]="handshakes/s" [full-rsa]="handshakes/s" [resume-tls13]="resumptions/s"
  [resume-tls12]="resumptions/s" [keepalive]="req/s" [h2]="req/s" [iso-idle]="probe req/s" [iso-flood]="probe req/s")

echo
echo "Medians over $ROUNDS rounds (CPU = utime+stime of the server's processes per handshake or request;"
echo "server CPU % = share of one CPU the server used during the run):"
echo
echo "| row | server | rate | unit | CPU µs/op | server CPU % | p50 ms | p99 ms | other CPU % | note |"
echo "|---|---|---:|---|---:|---:|---:|---:|---:|---|"
declare -A M
for row in "${ROW_NAMES[@]}"; do
  for s in "${SERVER_LIST[@]}"; do
    for c in 4 6 7 8 9 11 12; do M[$row,$s,$c]=$(median "$row" "$s" "$c"); done
    [ -n "${M[$row,$s,4]}" ] || continue
    note=""
    case $row in
      resume-*) note="resumed ${M[$row,$s,11]}%" ;;
      iso-flood) note="flood $(printf '%.0f' "${M[$row,$s,11]}") RSA handshakes/s" ;;
    esac
    case $row in
      full-*|resume-*|keepalive|h2)
        if awk -v p="${M[$row,$s,7]}" 'BEGIN {exit !(p < 85)}'; then note+="${note:+; }server not saturated: client-bound"; fi ;;
    esac
    lat50="-" lat99="-"
    case $row in keepalive|iso-*)
      lat50=$(awk -v v="${M[$row,$s,8]}" 'BEGIN {printf "%.3f", v / 1000}')
      lat99=$(awk -v v="${M[$row,$s,9]}" 'BEGIN {printf "%.3f", v / 1000}') ;;
    esac
    cpu_op=$(printf '%.1f' "${M[$row,$s,6]}")
    case $row in iso-*) cpu_op="-" ;; esac   # the probe's few requests are not what the server spent CPU on
    printf '| %s | %s | %.0f | %s | %s | %.0f | %s | %s | %.0f | %s |\n' "$row" "$s" "${M[$row,$s,4]}" "${UNIT[$row]}" \
      "$cpu_op" "${M[$row,$s,7]}" "$lat50" "$lat99" "${M[$row,$s,12]}" "$note"
  done
done

have() { [[ " ${SERVER_LIST[*]} " == *" $1 "* ]]; }
if have sluice && { have nginx || have haproxy; }; then
  echo
  echo "Ratios of the medians: rate (> 1: Sluice does more), CPU/op (< 1: Sluice spends less),"
  echo "isolation p99 under flood (< 1: Sluice's probe waits less):"
  echo
  echo "| row | rate Sluice/nginx | rate Sluice/HAProxy | CPU/op Sluice/nginx | CPU/op Sluice/HAProxy | p99 Sluice/nginx | p99 Sluice/HAProxy |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  for row in "${ROW_NAMES[@]}"; do
    [ -n "${M[$row,sluice,4]:-}" ] || { echo "| $row | skipped for Sluice | | | | | |"; continue; }
    p99n="-" p99h="-"
    case $row in keepalive|iso-*)
      p99n=$(ratio "${M[$row,sluice,9]}" "${M[$row,nginx,9]:-}"); p99h=$(ratio "${M[$row,sluice,9]}" "${M[$row,haproxy,9]:-}") ;;
    esac
    if [[ $row == iso-* ]]; then   # the probe's rate is its pacing, its CPU/op means nothing
      echo "| $row | - | - | - | - | $p99n | $p99h |"
      continue
    fi
    echo "| $row | $(ratio "${M[$row,sluice,4]}" "${M[$row,nginx,4]:-}") | $(ratio "${M[$row,sluice,4]}" "${M[$row,haproxy,4]:-}") |" \
      "$(ratio "${M[$row,sluice,6]}" "${M[$row,nginx,6]:-}") | $(ratio "${M[$row,sluice,6]}" "${M[$row,haproxy,6]:-}") | $p99n | $p99h |"
  done
fi
noisy=$(awk -F'\t' 'NR > 1 && $12 > 10' "$RESULTS" | wc -l)
if [ "$noisy" -gt 0 ]; then
  echo
  echo "Note: in $noisy of $(($(wc -l <"$RESULTS") - 1)) runs more than 10% of a CPU went to something other than the"
  echo "clients, the servers and the backend (column 'other'): the machine was not idle, those runs are disturbed."
fi
echo
echo "ended: $(date -u '+%F %T UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "Raw results: $RESULTS$([ "$KEEP_TMP" = 1 ] || echo ' (removed on exit; KEEP_TMP=1 keeps it)')"
if [ "$failed" = 1 ]; then
  echo "tls.sh: some runs had problems (see the problems column)" >&2
  KEEP_TMP=1
  exit 1
fi
