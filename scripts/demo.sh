#!/usr/bin/env bash
# `make demo`: three demo backends on 127.0.0.1:9001-9003, Sluice on :8080
# (admin API on :9900). Sends traffic, shows the spread, stops one backend,
# shows traffic carrying on while its health state changes, then stops
# everything it started. No root needed.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=/usr/bin/python3
SLUICE=${SLUICE:-build/sluice}
WORKDIR=$(mktemp -d /tmp/sluice-demo.XXXXXX)
PIDS=()

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORKDIR"
}
trap cleanup EXIT

for port in 8080 9900 9001 9002 9003; do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
    echo "demo: port $port is already in use; stop whatever listens there and retry" >&2
    exit 1
  fi
done

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# Count which backend answered N requests (X-Backend header), all on one
# keep-alive connection per batch, like a real client would.
spread() {
  local n=$1
  "$PY" - "$n" <<'PYEOF'
import http.client, sys, collections
n = int(sys.argv[1])
seen = collections.Counter()
errors = 0
conn = http.client.HTTPConnection("127.0.0.1", 8080, timeout=5)
for i in range(n):
    try:
        conn.request("GET", "/demo/%d" % i)
        r = conn.getresponse()
        r.read()
        seen[r.getheader("X-Backend") or "status %d" % r.status] += 1
    except Exception:
        errors += 1
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", 8080, timeout=5)
for name in sorted(seen):
    print("   %-10s %5d requests  %s" % (name, seen[name], "#" * (seen[name] * 40 // n)))
print("   errors     %5d" % errors)
PYEOF
}

states() {
  curl -s http://127.0.0.1:9900/api/pools/demo | "$PY" -c '
import json, sys
p = json.load(sys.stdin)
for b in p["backends"]:
    print("   %-16s state=%-9s weight=%s requests=%s last_check=%s" % (
        b["address"], b["state"], b["effective_weight"], b["counters"]["requests"],
        b.get("health", {}).get("last_check", "")))'
}

say "starting three demo backends on 127.0.0.1:9001-9003"
for i in 1 2 3; do
  "$PY" tests/integration/backends.py --port 900$i --name backend-$i &
  PIDS+=($!)
done
for i in 1 2 3; do
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/900$i) 2>/dev/null && break; sleep 0.05; done
done

say "starting: $SLUICE proxy -c examples/demo.yaml"
"$SLUICE" proxy -c examples/demo.yaml >"$WORKDIR/sluice.log" 2>&1 &
SLUICE_PID=$!
PIDS+=($SLUICE_PID)
for _ in $(seq 100); do
  curl -s -o /dev/null http://127.0.0.1:9900/api/status && curl -s -o /dev/null http://127.0.0.1:8080/ && break
  sleep 0.1
done
sed 's/^/   /' "$WORKDIR/sluice.log"

say "300 requests through 127.0.0.1:8080 (round robin over three backends)"
spread 300

sleep 0.6   # one health-check interval, so every backend has been checked
say "backend states from the admin API (GET /api/pools/demo)"
states

say "stopping backend-3 (127.0.0.1:9003)"
kill "${PIDS[2]}"
wait "${PIDS[2]}" 2>/dev/null || true

say "300 more requests right away: retries and passive ejection keep them whole"
spread 300

sleep 1.5
say "a moment later the active health check has marked it down"
states

say "300 more requests: the two healthy backends share the load"
spread 300

say "metrics excerpt (GET /metrics)"
curl -s http://127.0.0.1:9900/metrics | grep -E '^sluice_backend_(up|requests_total)\{' | sed 's/^/   /'

say "stopping Sluice (SIGTERM drains in-flight requests) and the backends"
kill -TERM "$SLUICE_PID"
wait "$SLUICE_PID" 2>/dev/null || true
tail -3 "$WORKDIR/sluice.log" | sed 's/^/   /'
echo
echo "demo done: everything it started is stopped"
