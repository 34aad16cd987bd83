"""A two-arm LB: clients on one interface, reals on another, forwarded
packets leaving through `l4.tx_interface` (bpf_redirect) rather than back
out of the interface they came in on.

    client 10.8.0.2 (c1) ---- (lb1) 10.8.0.5  LB  10.0.0.5 (lb0) --+-- bridge -- r1..r3
                                                                    |
    (the client's other port, 10.0.0.2, stays on the bridge, unused)

DR: the reals see the client's own address; their replies go back through
the LB's kernel (a route to 10.8.0.0/24 via 10.0.0.5, ip_forward on, the
VIP not held by the LB), which the forwarder passes since they are not to
a VIP: the LB doubles as the client side's router.
"""
import re

from test_l4_netns import (NS_C, NS_LB, REALS, TAG, L4, ethtool_set, ETHTOOL_STXCSUM, get, nsexec, real_of, sh,
                           topo)  # noqa: F401 (topo is a fixture)

CLIENT2, LB2 = "10.8.0.2", "10.8.0.5"


def second_arm(topo):
    sh("ip", "link", "add", "c1", "netns", NS_C, "type", "veth", "peer", "name", "lb1", "netns", NS_LB)
    nsexec(NS_C, "ip", "addr", "add", CLIENT2 + "/24", "dev", "c1")
    nsexec(NS_LB, "ip", "addr", "add", LB2 + "/24", "dev", "lb1")
    nsexec(NS_C, "ip", "link", "set", "c1", "up")
    nsexec(NS_LB, "ip", "link", "set", "lb1", "up")
    # The client reaches the VIP through the new arm; XDP forwards its
    # frames, so it must checksum them itself (see test_l4_netns.py).
    nsexec(NS_C, "ip", "route", "add", "10.0.0.100/32", "via", LB2, "dev", "c1", "src", CLIENT2)
    ethtool_set(NS_C, "c1", ETHTOOL_STXCSUM, 0)
    nsexec(NS_LB, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
    # The replies (from the VIP) cross the LB's kernel here: it must not
    # hold the VIP itself, or it drops them as martians. Clients reach the
    # VIP by a route through the LB, so no ARP answer is needed for it; XDP
    # takes the packets before the stack looks at their address.
    nsexec(NS_LB, "ip", "addr", "del", "10.0.0.100/32", "dev", "lo")
    for name, _ in REALS:
        nsexec(TAG + name, "ip", "route", "add", "10.8.0.0/24", "via", "10.0.0.5")


def test_l4_two_arm_dr(topo):
    second_arm(topo)
    l4 = L4(topo)
    l4.conf.write_text(l4.conf.read_text().replace("interfaces: [lb0]", "interfaces: [lb1, lb0]\n  tx_interface: lb0"))
    l4.start()
    log = l4.read_log()
    assert "forwarded packets leave through lb0 (l4.tx_interface)" in log, log
    assert "attached to lb1" in log and "attached to lb0" in log, log
    assert "not l4.tx_interface" not in log, log
    bodies = get(30)
    assert len(bodies) == 30 and not any(b.startswith("ERR") for b in bodies), bodies
    assert {real_of(b) for b in bodies} == {"r1", "r2", "r3"}, bodies
    assert all(b.split()[1] == CLIENT2 for b in bodies), bodies
    listing = l4.list()
    m = re.search(r"fwd_dr +(\d+) pkts", listing)
    assert m and int(m.group(1)) >= 30 * 3, listing
    assert l4.stop() == 0

    # A run with lb1 gone from l4.interfaces detaches it and swaps the
    # program of lb0's link in place.
    lb0 = l4.link_info("lb0")
    assert l4.link_info("lb1") and l4.xdp_prog_id("lb1")
    l4.conf.write_text(l4.conf.read_text().replace("interfaces: [lb1, lb0]\n  tx_interface: lb0", "interfaces: [lb0]"))
    l4.start()
    assert "detached from lb1: it is no longer in l4.interfaces" in l4.new_log(), l4.new_log()
    assert l4.link_info("lb1") is None and l4.xdp_prog_id("lb1") is None
    assert l4.link_info("lb0")["id"] == lb0["id"] and l4.xdp_prog_id("lb0") != lb0["prog_id"]
    assert l4.stop() == 0
