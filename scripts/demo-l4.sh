#!/usr/bin/env bash
# `make demo-l4` (root): sluice l4, the XDP L4 forwarder, forwarding real
# HTTP in each of its modes between network namespaces: a client, the LB
# and three real servers on one bridge (the topology of
# tests/integration/test_l4_netns.py, whose classes scripts/demo_l4/demo.py
# imports). In turn:
#   DR       the spread, the client address the reals see, `sluice l4 list`,
#            a real failing its health check, a drain through the admin API,
#            and a restart that keeps an established connection;
#   TUN      IP-in-IP to the reals, stripped there by `sluice l4 decap`
#            (this kernel has no ipip module), with the decap counters;
#   NAT      VIP:80 -> real:8080 with the replies routed back through the LB;
#   FullNAT  the reals see the LB's local address; then TOA on the reals and
#            `sluice proxy` (client_address: toa) give the client's address
#            back in X-Forwarded-For and the access log.
# Under a minute. Removes everything it created (namespaces, processes, its
# bpffs mount and the pins on it), also on failure, Ctrl-C or SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "demo-l4: needs root (network namespaces, XDP)" >&2
  exit 1
fi
# The TOA reader the FullNAT part loads on the reals (build/sluice does not
# need it, so `make build/sluice` may not have built it).
[ -f build/l4/toa.bpf.o ] || make -s build/l4/toa.bpf.o
exec /usr/bin/python3 scripts/demo_l4/demo.py
