#!/usr/bin/env bash
# Install the Debian packages Sluice needs to build, test, demo and benchmark.
# Idempotent: when everything is present it prints one line and does nothing.
set -euo pipefail

PKGS=(
  build-essential clang llvm libclang-rt-14-dev   # compilers, libFuzzer runtime
  libyaml-dev libjansson-dev libcmocka-dev         # config, JSON, unit tests
  libsqlite3-dev                                   # the registry's embedded store
  libcurl4-openssl-dev etcd-server etcd-client     # the registry's etcd store; its tests run a real cluster
  python3 python3-pytest python3-requests          # integration tests
  python3-pytest-xdist                             # integration tests on one worker per CPU (tests/run.sh)
  curl wrk netcat-openbsd iproute2 procps          # real clients and tools
  nginx-light haproxy                              # benchmark anchors
  libbpf-dev bpftool libelf-dev zlib1g-dev pkg-config   # the XDP forwarder
  netsniff-ng nftables jq                          # bench/l4.sh (trafgen, the DNAT anchor)
  bind9-dnsutils                                   # dig: test_dns_wire talks to the DNS codec with it
  python3-dnspython                                # test_reg_dns: the registry's DNS answers, counted
  knot-dnsutils nsd                                # kdig, and NSD as the upstream of test_agent
  libssl-dev libnghttp2-dev                        # the proxy's TLS (OpenSSL 3) and HTTP/2
  nghttp2-client python3-h2 testssl.sh             # h2load/nghttp, HTTP/2 edge cases, the TLS audit
  libsystemd-dev                                   # sd_notify: Type=notify units (READY, RELOADING, STOPPING)
  pandoc man-db debhelper lintian debootstrap      # make man (pages from docs/), make deb, make test-deb
  chromium python3-pil python3-matplotlib          # /stats screenshot test (headless), docs/grafana/render.py
  bird2 keepalived frr                             # HA: BGP/BFD on LB nodes and lab routers; keepalived VRRP and FRR as anchors
  systemd                                          # test_log_outputs runs a private systemd-journald (and journalctl)
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#PKGS[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "deps: missing packages: ${missing[*]}" >&2
    echo "deps: run as root (or install sudo) so they can be installed" >&2
    exit 1
  fi
else
  SUDO=
fi

echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# Debian starts nginx/haproxy services on install; Sluice's tests start their own.
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's bird2, keepalived and frr start system daemons where systemd
# runs; the HA tests start their own in namespaces and want none of them.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  for unit in bird keepalived frr; do
    $SUDO systemctl disable --now "$unit" >/dev/null 2>&1 || true
  done
fi
echo "deps: done"
