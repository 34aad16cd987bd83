#!/usr/bin/env bash
# `make demo`: three demo backends on 127.0.0.1:9001-9003, Sluice on :8080
# (admin API on :9900) and, over HTTPS, on :8443 with an ECDSA and an RSA
# certificate made at demo time by a throwaway CA. Sends traffic, shows the
# spread, shows HTTPS (curl, openssl s_client, X-Forwarded-Proto, the access
# log), stops one backend, shows traffic carrying on while its health state
# changes, then stops everything it started. No root needed.
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

for port in 8080 8443 9900 9001 9002 9003; do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
    echo "demo: port $port is already in use; stop whatever listens there and retry" >&2
    exit 1
  fi
done

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# Count which backend answered N requests (X-Backend header), all on one
# keep-alive connection per batch, like a real client would. `spread N https`
# sends them to https://localhost:8443 instead, trusting the demo CA.
spread() {
  local n=$1 scheme=${2:-http}
  "$PY" - "$n" "$scheme" "$WORKDIR/pki/ca.pem" <<'PYEOF'
import http.client, ssl, sys, collections
n, scheme, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def connect():
    if scheme == "https":
        return http.client.HTTPSConnection("localhost", 8443, timeout=5,
                                           context=ssl.create_default_context(cafile=ca))
    return http.client.HTTPConnection("127.0.0.1", 8080, timeout=5)
seen = collections.Counter()
errors = 0
conn = connect()
for i in range(n):
    try:
        conn.request("GET", "/demo/%d" % i)
        r = conn.getresponse()
        r.read()
        seen[r.getheader("X-Backend") or "status %d" % r.status] += 1
    except Exception:
        errors += 1
        conn.close()
        conn = connect()
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

# A throwaway CA and two certificates for localhost signed by it: ECDSA
# P-256 and RSA 2048, the same name, told apart by their OU.
make_certs() {
  local d=$WORKDIR/pki
  mkdir -p "$d"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$d/ca.key" -days 1 -subj "/O=Sluice demo/CN=Sluice demo CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign -out "$d/ca.pem"
  printf 'basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost\n' \
    >"$d/leaf.ext"
  local kind ou
  for kind in ec rsa; do
    if [ "$kind" = ec ]; then
      ou="ECDSA P-256"
      openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/$kind.key" 2>/dev/null
    else
      ou="RSA 2048"
      openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$d/$kind.key" 2>/dev/null
    fi
    openssl req -new -key "$d/$kind.key" -subj "/O=Sluice demo/OU=$ou/CN=localhost" -out "$d/$kind.csr"
    openssl x509 -req -in "$d/$kind.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
      -CAserial "$d/ca.srl" -days 1 -extfile "$d/leaf.ext" -out "$d/$kind.pem" 2>/dev/null
  done
}

# The configuration: examples/demo.yaml plus an HTTPS listener in front of
# the same pool (demo.yaml keeps `listeners:` last for this).
make_config() {
  cp examples/demo.yaml "$WORKDIR/demo.yaml"
  cat >>"$WORKDIR/demo.yaml" <<EOF
  - name: web-tls
    listen: 127.0.0.1:8443
    protocol: http
    pool: demo
    access_log: $WORKDIR/https-access.log
    tls:
      certificates:
        - cert: $WORKDIR/pki/ec.pem     # the first is the default
          key: $WORKDIR/pki/ec.key
        - cert: $WORKDIR/pki/rsa.pem    # same name: the client's signature algorithms choose
          key: $WORKDIR/pki/rsa.key
EOF
}

# openssl s_client to :8443 for localhost: which certificate came back.
which_cert() {
  openssl s_client -connect 127.0.0.1:8443 -servername localhost -CAfile "$WORKDIR/pki/ca.pem" "$@" \
    </dev/null 2>&1 | grep -E '^(subject=|Peer signature type|Server public key|New, |Verify return code)' |
    sed 's/^/   /'
}

say "making a demo CA and two certificates for localhost (ECDSA P-256, RSA 2048) with openssl"
make_certs
make_config
ls "$WORKDIR/pki"/*.pem | sed 's/^/   /'

say "starting three demo backends on 127.0.0.1:9001-9003"
for i in 1 2 3; do
  "$PY" tests/integration/backends.py --port 900$i --name backend-$i &
  PIDS+=($!)
done
for i in 1 2 3; do
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/900$i) 2>/dev/null && break; sleep 0.05; done
done

say "starting: $SLUICE proxy -c demo.yaml (examples/demo.yaml plus this HTTPS listener)"
sed -n '/name: web-tls/,$p' "$WORKDIR/demo.yaml" | sed 's/^/   /'
"$SLUICE" proxy -c "$WORKDIR/demo.yaml" >"$WORKDIR/sluice.log" 2>&1 &
SLUICE_PID=$!
PIDS+=($SLUICE_PID)
for _ in $(seq 100); do
  curl -s -o /dev/null http://127.0.0.1:9900/api/status && curl -s -o /dev/null http://127.0.0.1:8080/ &&
    (exec 3<>/dev/tcp/127.0.0.1/8443) 2>/dev/null && break
  sleep 0.1
done
sed 's/^/   /' "$WORKDIR/sluice.log"

say "300 requests through 127.0.0.1:8080 (round robin over three backends)"
spread 300

sleep 0.6   # one health-check interval, so every backend has been checked
say "backend states from the admin API (GET /api/pools/demo)"
states

say "HTTPS: curl -v --cacert ca.pem https://localhost:8443/ (TLS version, cipher, ALPN, certificate)"
# HTTP/1.1 here; the HTTP/2 part below asks for h2 (the listener offers both).
CURL_TLS=(curl -sS --http1.1 --cacert "$WORKDIR/pki/ca.pem" --resolve localhost:8443:127.0.0.1)
"${CURL_TLS[@]}" -v -o /dev/null https://localhost:8443/ 2>&1 |
  grep -E '^\* (SSL connection|ALPN|Server certificate| +subject:| +issuer:| +SSL certificate verify)|^< (HTTP|X-Backend)' |
  sed 's/^/   /'

say "300 requests through https://localhost:8443 (one TLS connection, round robin over three backends)"
spread 300 https

say "what the backend saw (GET /headers echoes the request): X-Forwarded-Proto"
echo "   via https://localhost:8443:"
"${CURL_TLS[@]}" https://localhost:8443/headers | grep -i '^x-forwarded' | sed 's/^/     /'
echo "   via http://127.0.0.1:8080:"
curl -sS http://127.0.0.1:8080/headers | grep -i '^x-forwarded' | sed 's/^/     /'

say "openssl s_client -servername localhost: the ECDSA certificate by default"
which_cert
say "the same name for a client that only takes RSA signatures (-sigalgs): the RSA certificate"
which_cert -sigalgs rsa_pss_rsae_sha256:rsa_pkcs1_sha256
say "TLS 1.2 with an RSA cipher (-tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256): the RSA certificate"
which_cert -tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256

say "the HTTPS listener's access log: TLS version, cipher, SNI, resumed"
# (each worker writes its lines out once per event-loop turn: wait for them)
for _ in $(seq 50); do grep -q '"GET /headers' "$WORKDIR/https-access.log" 2>/dev/null && break; sleep 0.1; done
# (the /headers request's line, then the newest line if another: with two
# workers the order of lines is the order their loops flushed them)
{ grep '"GET /headers' "$WORKDIR/https-access.log" | tail -1; tail -1 "$WORKDIR/https-access.log"; } |
  awk '!seen[$0]++' | sed 's/^/   /'

say "HTTP/2 over TLS: ALPN chose h2 (curl --http2 -v https://localhost:8443/)"
"${CURL_TLS[@]}" --http2 -v -o /dev/null https://localhost:8443/ 2>&1 |
  grep -E '^\* ALPN|^< (HTTP|x-backend)' | sed 's/^/   /'

say "h2c with prior knowledge on the plain port (curl --http2-prior-knowledge http://127.0.0.1:8080/)"
curl -sS --http2-prior-knowledge -v -o /dev/null http://127.0.0.1:8080/ 2>&1 |
  grep -E '^< (HTTP|x-backend)' | sed 's/^/   /'

say "h2load: 300 requests as 30 concurrent streams on ONE TLS connection, each stream balanced on its own"
before=$(curl -s http://127.0.0.1:9900/api/pools/demo | "$PY" -c '
import json, sys
print(" ".join(str(b["counters"]["requests"]) for b in json.load(sys.stdin)["backends"]))')
h2load -n 300 -c 1 -m 30 https://localhost:8443/h2 2>&1 |
  grep -E '^(finished in|requests:|status codes:|Application protocol:)' | sed 's/^/   /'
curl -s http://127.0.0.1:9900/api/pools/demo | "$PY" -c '
import json, sys
before = [int(x) for x in sys.argv[1].split()]
for b, n in zip(json.load(sys.stdin)["backends"], before):
    print("   %-16s %4d of the streams" % (b["address"], b["counters"]["requests"] - n))' "$before"

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
