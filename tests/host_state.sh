#!/usr/bin/env bash
# Prints the parts of the host's state that a Sluice test could change and
# must give back: mounts (bpffs, namespace files), network namespaces,
# interfaces and their XDP programs, BPF links and programs, routing
# sysctls, the nftables ruleset, and processes of ours. tests/run.sh takes
# one snapshot before the phases and one after; any difference is reported
# as a failure, so a test that leaks (or one that only passes because an
# earlier run left something behind) is caught on the machine where it
# happens, not on the next one.
#
# Only what our tests touch is listed, and nothing that moves by itself
# (counters, ids of unrelated programs, our own shell's pids).
set -u

echo "## mounts"
# /run/netns itself is made a mount point by the first `ip netns add` and
# stays one; iproute2 does that, not us, and it is harmless.
# Only the kinds of mount a test makes (other mounts belong to the machine
# and may come and go with it).
findmnt -rn -o TARGET,FSTYPE 2>/dev/null |
    awk '$1 != "/run/netns" && ($2 == "bpf" || $2 == "nsfs" || $1 ~ "^/(tmp|run/netns|sys/fs/bpf)/")' | sort

echo "## network namespaces"
ip netns list 2>/dev/null | awk '{print $1}' | sort

echo "## interfaces"
ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | sort

echo "## xdp and tc programs on interfaces"
ip -d -o link show 2>/dev/null | grep -o 'prog/xdp' | wc -l | sed 's/^/xdp attachments: /'

echo "## bpf links and programs"
if command -v bpftool >/dev/null 2>&1; then
    bpftool -j link show 2>/dev/null | grep -o '"type":"[a-z_]*"' | sort | uniq -c
    # Programs by name: ours are called sluice_*, xdp_* or toa_*.
    bpftool -j prog show 2>/dev/null | grep -oE '"name":"(sluice|xdp|toa|decap)[a-z0-9_]*"' | sort | uniq -c
fi

echo "## sysctls"
sysctl -n net.ipv4.ip_forward net.ipv6.conf.all.forwarding net.ipv4.conf.all.rp_filter \
    net.ipv4.conf.all.accept_local net.ipv4.ip_nonlocal_bind net.ipv6.ip_nonlocal_bind 2>/dev/null

echo "## nftables"
if command -v nft >/dev/null 2>&1; then
    nft list tables 2>/dev/null | sort
fi

echo "## processes"
# Sluice processes started from this checkout (other checkouts' test runs
# or benchmarks on the same machine are not ours to count).
repo=$(cd "$(dirname "$0")/.." && pwd -P)
for exe in /proc/[0-9]*/exe; do
    target=$(readlink "$exe" 2>/dev/null) || continue
    case "$target" in
        "$repo"/build/*) echo "${target#"$repo"/}" ;;
    esac
done | sort | uniq -c
