#!/usr/bin/env bash
# `make demo-registry`: a registry node from examples/registry.yaml (API on
# 127.0.0.1:9950, DNS on 127.0.0.1:5353 for the zone sluice.test.; its data
# in a temporary directory), six instances of the service `shop` in three
# datacenters of two regions
# registered with the CLI, `dig` showing the locality order and the weights,
# then instances failing until the protect threshold fails open.
#
# Part two: callers that balance by themselves. Three provider programs
# (examples/provider.c, on libsluice) register the service `api` and
# heartbeat; a consumer program (examples/consumer.c) picks an instance per
# request in its own process; `sluice agent` answers api.sluice.test from its
# own copy on 127.0.0.1:5300; `sluice proxy` balances a pool discovered from
# `api` on 127.0.0.1:8088. A provider joins and one leaves (the proxy follows
# within a second, no reload), then the registry is killed (kill -9) and
# restarted: the consumer, the agent and the proxy keep working from their
# last copies, and the consumer's summary shows zero failed picks.
#
# Everything it started is stopped at the end. No root needed.
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

for b in "$SLUICE" build/examples/provider build/examples/consumer; do
  [ -x "$b" ] || { echo "demo-registry: $b is missing (make build/sluice examples)" >&2; exit 1; }
done
command -v dig >/dev/null || { echo "demo-registry: dig not found (scripts/deps.sh installs bind9-dnsutils)" >&2; exit 1; }
for port in 9950 5353 5300 9953 8088 9951; do
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

# ---- part two: libsluice, the agent, a discovered pool -----------------

start_registry() {
  "$SLUICE" registry -c "$WORKDIR/registry.yaml" >>"$WORKDIR/registry.log" 2>&1 &
  REG_PID=$!
  PIDS+=($REG_PID)
  for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:9950/api/status && return 0; sleep 0.1; done
  echo "demo-registry: the registry did not start" >&2
  exit 1
}

PROVIDERS=()
provider() { # ID ADDRESS DATACENTER
  build/examples/provider --registries 127.0.0.1:9950 --token s3cret --service api --id "$1" \
    --address "$2" --port 8081 --datacenter "$3" --region r1 >"$WORKDIR/provider-$1.log" 2>&1 &
  PROVIDERS+=($!)
  PIDS+=($!)
}

# Which instances answered N requests through the proxy (the provider
# answers with its id first).
through_proxy() { # N
  for _ in $(seq "$1"); do curl -s --max-time 2 http://127.0.0.1:8088/ | awk '{ print $1; exit }'; done \
    | sort | uniq -c | awk '{ printf "   %-8s %3d requests\n", $2, $1 }'
}

# Until the proxy's pool has N members in use (bounded).
wait_members() { # N
  for _ in $(seq 100); do
    curl -s http://127.0.0.1:9951/api/pools | "$PY" -c '
import json, sys
doc = json.load(sys.stdin)
pool = next(p for p in doc if p["name"] == "api")
up = [b for b in pool["backends"] if b.get("state") == "up"]
sys.exit(0 if len(up) == int(sys.argv[1]) else 1)' "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "demo-registry: the proxy's pool did not reach $1 members" >&2
  exit 1
}

say "part two: callers that balance by themselves"
say "three providers (examples/provider.c on libsluice) register api and heartbeat"
provider api-1 127.0.2.1 dc1
provider api-2 127.0.2.2 dc1
provider api-3 127.0.2.3 dc2
for _ in $(seq 100); do
  [ "$(curl -s http://127.0.0.1:9950/api/registry/services/api | "$PY" -c 'import json,sys; print(json.load(sys.stdin).get("healthy", 0))' 2>/dev/null)" = 3 ] && break
  sleep 0.1
done
run reg show api

say "sluice agent on 127.0.0.1:5300 (its host is in dc1): api.sluice.test from its own copy"
cat >"$WORKDIR/agent.yaml" <<EOF
admin:
  listen: 127.0.0.1:9953
agent:
  listen: [127.0.0.1:5300]
  zone: sluice.test.
  registries: [127.0.0.1:9950]
  datacenter: dc1
  region: r1
  cache_dir: $WORKDIR/agent-cache
  services: [api]
  upstreams: [127.0.0.1:5353]
EOF
"$SLUICE" agent -c "$WORKDIR/agent.yaml" >"$WORKDIR/agent.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do dig @127.0.0.1 -p 5300 api.sluice.test A +short +time=1 +tries=1 | grep -q . && break; sleep 0.1; done
run dig @127.0.0.1 -p 5300 api.sluice.test A +noall +answer
for _ in $(seq 200); do dig @127.0.0.1 -p 5300 api.sluice.test A +short; done | sort | uniq -c \
  | awk '{ printf "   %-12s %4d of 200 answers (dc1 only: the host is in dc1)\n", $2, $1 }'

say "sluice proxy on 127.0.0.1:8088: its pool api is discovered from the registry"
cat >"$WORKDIR/proxy.yaml" <<EOF
workers: 2
admin:
  listen: 127.0.0.1:9951
pools:
  - name: api
    algorithm: round_robin
    discovery:
      service: api
      registries: [127.0.0.1:9950]
      region: r1
      cache_dir: $WORKDIR/proxy-cache
listeners:
  - name: web
    listen: 127.0.0.1:8088
    protocol: http
    pool: api
    access_log: off
EOF
"$SLUICE" proxy -c "$WORKDIR/proxy.yaml" >"$WORKDIR/proxy.log" 2>&1 &
PIDS+=($!)
wait_members 3
through_proxy 30

say "a consumer (examples/consumer.c, in dc1) picks an instance per request in its own process"
build/examples/consumer --registries 127.0.0.1:9950 --service api --datacenter dc1 --region r1 \
  --cache-dir "$WORKDIR/consumer-cache" --interval-ms 10 --report-ms 1000 >"$WORKDIR/consumer.log" 2>&1 &
CONSUMER_PID=$!
PIDS+=($CONSUMER_PID)
sleep 2
tail -1 "$WORKDIR/consumer.log" | sed 's/^/   /'

say "api-4 joins in dc2: the proxy's pool follows within a second, no reload"
provider api-4 127.0.2.4 dc2
wait_members 4
through_proxy 40
say "api-1 stops (SIGTERM: it deregisters): gone from the pool, the agent and the consumer"
kill -TERM "${PROVIDERS[0]}"
wait "${PROVIDERS[0]}" 2>/dev/null || true
wait_members 3
through_proxy 30
sleep 1
run dig @127.0.0.1 -p 5300 api.sluice.test A +noall +answer

say "the registry dies (kill -9): every caller goes on from its last copy"
kill -KILL "$REG_PID"
wait "$REG_PID" 2>/dev/null || true
sleep 2
run dig @127.0.0.1 -p 5300 api.sluice.test A +noall +answer
through_proxy 20
tail -2 "$WORKDIR/consumer.log" | sed 's/^/   /'

say "the registry restarts from its data; the providers heartbeat into it again"
start_registry
sleep 6
run reg list
kill -TERM "$CONSUMER_PID"
wait "$CONSUMER_PID" 2>/dev/null || true
say "the consumer's summary: zero failed picks across the outage"
grep '^summary' "$WORKDIR/consumer.log" | tr ' ' '\n' | grep -E '^(requests|ok|failed_picks|failed_requests|instances|source)=' | sed 's/^/   /'

say "stopping everything"
kill -TERM "${PIDS[@]}" 2>/dev/null || true
kill -TERM "$REG_PID"
wait "$REG_PID" 2>/dev/null || true
tail -2 "$WORKDIR/registry.log" | sed 's/^/   /'
echo
echo "demo done: everything it started is stopped"
