# shellcheck shell=bash
# What the two DNS benches (bench/dns.sh: the registry against NSD and
# Knot; bench/agent.sh: the agent against Unbound) share: installing the
# other servers, a work directory whose processes end with the script, a
# port free for both UDP and TCP, and a process tree's CPU time. Sourced,
# not run; the caller has `set -euo pipefail` and is in the repository.

# dns_bench_need SCRIPT "UNITS" COMMAND:PACKAGE...: install the packages
# whose command is missing (as root; else say which and exit), then stop
# the units Debian starts with them: the bench runs its own servers.
dns_bench_need() {
  local script=$1 units=$2 pair cmd missing=()
  shift 2
  for pair in "$@"; do
    cmd=${pair%%:*}
    command -v "$cmd" >/dev/null || [ -x "/usr/sbin/$cmd" ] || missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return
  if [ "$(id -u)" -ne 0 ]; then
    echo "$script: missing packages: ${missing[*]} (install them as root)" >&2
    exit 1
  fi
  echo "$script: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    # shellcheck disable=SC2086 # several units, one word each
    systemctl disable --now $units >/dev/null 2>&1 || true
  fi
}

# dns_bench_workdir NAME: WORK, a new directory, and PIDS, the processes
# to end; at exit they are ended and the directory removed.
dns_bench_workdir() {
  WORK=$(mktemp -d "/tmp/sluice-bench-$1.XXXXXX")
  PIDS=()
  trap dns_bench_cleanup EXIT
}

dns_bench_cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}

# A port of 127.0.0.1 free for both UDP and TCP (a DNS server takes both).
free_port() {
  /usr/bin/python3 -c 'import socket
for _ in range(50):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0)); p = u.getsockname()[1]
    t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        t.bind(("127.0.0.1", p)); print(p); break
    except OSError: pass
    finally: u.close(); t.close()'
}

# CPU ticks (utime + stime, every thread) of a process and its descendants
# (NSD forks its server).
cpu_ticks() {
  local pid=$1 total=0 t c
  # fields after "PID (COMM) ": COMM may hold spaces ("nsd: main")
  t=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}')
  t=${t:-0}
  total=$((total + t))
  for c in $(pgrep -P "$pid" || true); do
    total=$((total + $(cpu_ticks "$c")))
  done
  echo "$total"
}
