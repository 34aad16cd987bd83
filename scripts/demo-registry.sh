#!/usr/bin/env bash
# `make demo-registry`: a registry node from examples/registry.yaml (API on
# 127.0.0.1:9950, DNS on 127.0.0.1:5353 for the zone sluice.test.; its data
# in a temporary directory), six instances of the service `shop` in three
# datacenters of two regions
# registered with the CLI, `dig` showing the locality order and the weights,
# then instances failing until the protect threshold fails open. Everything
# it started is stopped at the end. No root needed.
#
# The instances are small TCP listeners on 127.0.1.1-127.0.1.6 port 8080
# (all of 127.0.0.0/8 is this host), so the registry's own health checks
# see them come and go. Callers are told apart by the EDNS Client Subnet
# option (dig +subnet=), which the registry maps to a place with
# registry.subnets of the example:
#   10.1.0.0/16 dc1 (region r1)   10.2.0.0/16 dc2 (r1)
#   10.3.0.0/16 dc3 (r2)          10.9.0.0/16 dc9 (r1, no instances)
set -euo pipefail
cd "$(dirname "$0")/.."

PY=/usr/bin/python3
SLUICE=${SLUICE:-build/sluice}
WORKDIR=$(mktemp -d /tmp/sluice-demo-registry.XXXXXX)
PIDS=()
LISTENERS=()

cleanup() {
  for p in "${LISTENERS[@]}" "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORKDIR"
}
trap cleanup EXIT

command -v dig >/dev/null || { echo "demo-registry: dig not found (scripts/deps.sh installs bind9-dnsutils)" >&2; exit 1; }
for port in 9950 5353; do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
    echo "demo-registry: port $port is already in use; stop whatever listens there and retry" >&2
    exit 1
  fi
done

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '   $ %s\n' "$*"; "$@" 2>&1 | sed 's/^/   /'; }
reg() { local verb=$1; shift; "$SLUICE" registry "$verb" -c "$WORKDIR/registry.yaml" "$@"; }

# Count the addresses of N answers for a caller in SUBNET.
spread() { # SUBNET N
  local subnet=$1 n=$2
  for _ in $(seq "$n"); do
    dig @127.0.0.1 -p 5353 shop.sluice.test A +short +subnet="$subnet"
  done | sort | uniq -c | awk -v n="$n" '{ printf "   %-12s %4d answers  ", $2, $1; for (i = 0; i < $1 * 40 / n; i++) printf "#"; print "" }'
}

# Until the registry's own checks see instance ID in STATE (bounded).
wait_health() { # ID STATE
  for _ in $(seq 100); do
    curl -s "http://127.0.0.1:9950/api/registry/services/shop" | "$PY" -c '
import json, sys
doc = json.load(sys.stdin)
sys.exit(0 if any(i["id"] == sys.argv[1] and i["health"] == sys.argv[2] for i in doc["instances"]) else 1)' "$1" "$2" \
      && return 0
    sleep 0.1
  done
  echo "demo-registry: $1 did not turn $2" >&2
  exit 1
}

listener() { # ADDRESS: accept and close, so TCP health checks pass
  "$PY" -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 8080)); s.listen(64)
while True:
    c, _ = s.accept(); c.close()' "$1" &
  LISTENERS+=($!)
}

say "starting: $SLUICE registry -c examples/registry.yaml (its data_dir moved to $WORKDIR/data)"
sed "s#^\(  data_dir:\) [^ ]*#\1 $WORKDIR/data#" examples/registry.yaml >"$WORKDIR/registry.yaml"
"$SLUICE" registry -c "$WORKDIR/registry.yaml" >"$WORKDIR/registry.log" 2>&1 &
REG_PID=$!
PIDS+=($REG_PID)
for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:9950/api/status && break; sleep 0.1; done
sed 's/^/   /' "$WORKDIR/registry.log"

say "six instances listening on 127.0.1.1-6:8080"
for i in 1 2 3 4 5 6; do listener 127.0.1.$i; done
sleep 0.3

say "the service's settings: TCP checks every second; a tier needs half its instances"
say "healthy to answer; below 30% healthy the answer fails open"
run reg set shop --settings '{"protect_threshold": 0.3, "dns_ttl": 5, "answer_count": 1,
  "locality": {"min_healthy": 1, "min_healthy_ratio": 0.5},
  "health": {"type": "tcp", "interval": "1s", "timeout": "500ms", "rise": 1, "fall": 1}}'

say "registering them with the CLI: dc1 and dc2 in region r1, dc3 in region r2"
run reg register shop 127.0.1.1:8080 --datacenter dc1 --region r1 --weight 100
run reg register shop 127.0.1.2:8080 --datacenter dc1 --region r1 --weight 300
run reg register shop 127.0.1.3:8080 --datacenter dc2 --region r1 --weight 100
run reg register shop 127.0.1.6:8080 --datacenter dc2 --region r1 --weight 100
run reg register shop 127.0.1.4:8080 --datacenter dc3 --region r2 --weight 100
run reg register shop 127.0.1.5:8080 --datacenter dc3 --region r2 --weight 100
for i in 1 2 3 4 5 6; do wait_health 127.0.1.$i:8080 up; done
run reg list

say "a caller in dc1 (10.1.0.0/24): its own datacenter, weighted 100:300"
run dig @127.0.0.1 -p 5353 shop.sluice.test A +subnet=10.1.0.0/24 +noall +answer
spread 10.1.0.0/24 200

say "a caller in dc9 (region r1, no instances there): the rest of its region"
spread 10.9.0.0/24 200

say "a caller in dc3 (region r2)"
spread 10.3.0.0/24 200

say "SRV: every instance, priority by locality tier, for a caller in dc1"
run dig @127.0.0.1 -p 5353 _shop._tcp.sluice.test SRV +subnet=10.1.0.0/24 +noall +answer

say "the API explains an answer: sluice registry answer shop --datacenter dc9 --region r1"
run reg answer shop --datacenter dc9 --region r1

say "dc1 fails (127.0.1.1 and 127.0.1.2 stop listening)"
kill "${LISTENERS[0]}" "${LISTENERS[1]}"
wait_health 127.0.1.1:8080 down
wait_health 127.0.1.2:8080 down
run reg show shop
say "a caller in dc1 now gets the rest of region r1 (2 of its 4 healthy: enough)"
spread 10.1.0.0/24 100

say "dc2 fails too: region r1 is down, so its callers get r2"
kill "${LISTENERS[2]}" "${LISTENERS[5]}"
wait_health 127.0.1.3:8080 down
wait_health 127.0.1.6:8080 down
spread 10.1.0.0/24 100

say "one of r2's two fails: 1 of 6 healthy is below the protect threshold (0.3),"
say "so the registry fails open: answers are drawn from every enabled instance, healthy first"
kill "${LISTENERS[3]}"
wait_health 127.0.1.4:8080 down
run reg list
run reg answer shop --client 10.1.2.3
say "six records per answer now, to see the order (healthy first)"
run reg set shop --settings '{"protect_threshold": 0.3, "dns_ttl": 5, "answer_count": 6,
  "locality": {"min_healthy": 1, "min_healthy_ratio": 0.5},
  "health": {"type": "tcp", "interval": "1s", "timeout": "500ms", "rise": 1, "fall": 1}}'
sleep 0.3
run dig @127.0.0.1 -p 5353 shop.sluice.test A +subnet=10.1.0.0/24 +noall +answer
say "protection as metrics (GET /metrics)"
curl -s http://127.0.0.1:9950/metrics | grep -E '^sluice_registry_(service_fail_open|instances|dns_queries_total)' \
  | head -12 | sed 's/^/   /'

say "stopping the registry and the instances"
kill -TERM "$REG_PID"
wait "$REG_PID" 2>/dev/null || true
tail -2 "$WORKDIR/registry.log" | sed 's/^/   /'
echo
echo "demo done: everything it started is stopped"
