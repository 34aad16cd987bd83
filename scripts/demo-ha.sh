#!/usr/bin/env bash
# `make demo-ha` (root): the HA lab (tests/integration/ha_lab.py) built in
# network namespaces: a client, two routers running BIRD with BGP, BFD and
# ECMP, four LB nodes running `sluice l4` in two zones, three reals. Shows
# the routes at a router (ECMP over zone a; zone b with an AS-path prepend),
# `sluice ha status` on a node, then, under traffic (long-lived connections
# and new ones every 3 ms), each failure with its figures: a crash (kill
# -9), a link cut (BFD), a drain, a whole zone lost and restored.
# About two minutes. Removes everything it created (namespaces, processes,
# its bpffs mount), also on failure, Ctrl-C or SIGTERM.
#   BFD=100x3            BFD interval (ms) x multiplier
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "demo-ha: needs root (network namespaces, XDP, BIRD)" >&2
  exit 1
fi
SLUICE_L4_BIN=$(realpath "${SLUICE:-build/sluice}")
export SLUICE_L4_BIN
exec /usr/bin/python3 scripts/demo_ha/demo.py
