# shellcheck shell=bash
# What the proxy and registry benches (bench/l7.sh, bench/tls.sh,
# bench/registry.sh) share: messages prefixed with the script's name,
# --help from the script's header, a check that the ports are free, a temp
# directory whose processes are stopped on exit, CPU pinning, and CPU time
# from /proc. Sourced, not run; the caller has `set -euo pipefail`, is in
# the repository, and sets BENCH_SCRIPT (its name, e.g. "tls.sh") first.

die() { echo "$BENCH_SCRIPT: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

# bench_help: print the script's header comment (line 2 up to `set -euo`).
bench_help() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

# bench_bad_arg ARG: the message and exit status for an unknown argument.
bench_bad_arg() { echo "$BENCH_SCRIPT: unknown argument '$1' (try --help)" >&2; exit 2; }

# ports_free PORT...: die when anything already listens on one of them.
ports_free() {
  local port
  for port in "$@"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      die "port $port is already in use on 127.0.0.1; stop it or set BASE_PORT/ADMIN_PORT"
    fi
  done
}

# bench_tmpdir NAME: DIR, a new /tmp/sluice-bench-NAME.XXXXXX, and STARTED,
# the pids the script starts (each the top process of its tree). On exit
# they are stopped, newest first, and DIR is removed unless KEEP_TMP=1 or
# the script failed.
bench_tmpdir() {
  DIR=$(mktemp -d "/tmp/sluice-bench-$1.XXXXXX")
  STARTED=()
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

stop_pid() {  # stop_pid PID: TERM, wait up to 5s, then KILL the pid and its children
  local pid=$1 i k kids
  kill -0 "$pid" 2>/dev/null || return 0
  kids=$(pgrep -P "$pid" 2>/dev/null || true)
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    # A master that ignores SIGTERM: kill it and the workers it had.
    echo "$BENCH_SCRIPT: pid $pid did not stop on SIGTERM, sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    for k in $kids; do kill -KILL "$k" 2>/dev/null || true; done
  fi
  wait "$pid" 2>/dev/null || true
}

bench_cleanup() {
  local rc=$? i
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do stop_pid "${STARTED[i]}"; done
  if [ "${KEEP_TMP:-0}" = 1 ] || [ "$rc" != 0 ]; then
    echo "$BENCH_SCRIPT: temp dir kept: $DIR" >&2
  else
    rm -rf "$DIR"
  fi
  exit "$rc"
}

pin() {  # pin CPUS: print the command prefix (as an array literal) for taskset
  [ -n "$1" ] && printf 'taskset -c %s' "$1"
  return 0
}

# The processes whose CPU counts for a server: its top process and its
# children (Sluice and nginx: master + one worker; HAProxy: one process).
# shellcheck disable=SC2046  # word splitting of pid lists is intended here
proc_tree() { echo "$1" $(pgrep -P "$1" 2>/dev/null || true); }

# cpu_usr_sys PID...: "USER SYSTEM" ticks summed over the pids. Fields 14
# and 15 of /proc/PID/stat; comm (field 2) may hold spaces, so cut after
# its closing parenthesis first: field 3 (state) is then $1.
cpu_usr_sys() {
  local p s u y usr=0 sys=0
  for p in "$@"; do
    s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    s=${s##*) }
    read -r u y <<<"$(awk '{print $12, $13}' <<<"$s")"
    usr=$((usr + u)); sys=$((sys + y))
  done
  echo "$usr $sys"
}

# Machine-wide busy ticks (user+nice+system+irq+softirq of /proc/stat) and
# the ticks of this shell's reaped children (the load clients): with the
# server's and the backend's own ticks, what is left is CPU used by
# something else -- other work on the machine, plus kernel time charged to
# no process (softirq).
machine_busy() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8; exit}' /proc/stat; }
children_ticks() { local s; s=$(cat "/proc/$$/stat"); s=${s##*) }; awk '{print $14 + $15}' <<<"$s"; }

# wait_200 NAME URL [curl args]: poll (100 tries, 0.1 s apart) until URL
# answers 200 and, unless NAME is the backend, with the backend's body.
# Its answer stays in $DIR/NAME.curl.
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

# start_backend [PREFIX...]: the nginx backend behind every server of the
# proxy benches (bench/l7/backend-nginx.conf.in on BACKEND_PORT), run under
# PREFIX (e.g. taskset -c 0); sets BACKEND_PID. The caller defines NGINX
# and render TEMPLATE OUT PORT (TEMPLATE relative to bench/).
start_backend() {
  mkdir -p "$DIR/backend-tmp"
  render l7/backend-nginx.conf.in backend-nginx.conf "$BACKEND_PORT"
  "$@" "$NGINX" -p "$DIR" -e "$DIR/backend-nginx.error.log" \
    -c "$DIR/backend-nginx.conf" -g 'daemon off;' >"$DIR/backend.log" 2>&1 &
  BACKEND_PID=$!
  STARTED+=("$BACKEND_PID")
  wait_200 backend "http://127.0.0.1:$BACKEND_PORT/"
}
