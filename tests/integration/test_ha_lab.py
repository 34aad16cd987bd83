"""The HA lab's first proofs (issue 12, item 4), with what exists today:
`sluice l4` on four LB nodes and the lab's own BIRD on each announcing the
VIPs (announce="lab"; the HA tier will take that over). See ha_lab.py for
the topology.

What is checked: the routers route each VIP over the two zone-a nodes by
ECMP (zone b's routes are there, one AS-path prepend longer, unused); DR
and TUN long-lived connections survive an LB node's crash, a cut link, a
drain, and the loss of a whole zone and its return, with 0 broken
connections (another node takes the flows and sends them to the same
real through the same Maglev table); keepalived VRRP moves its VIP when
the master crashes. The gaps (ms) are printed, never asserted (a shared
2-core machine); run with -s to read them.

Needs root, BIRD, native XDP on veth; skips otherwise. One lab for the
module; every test leaves it healed for the next; teardown removes it.
"""
import os
import re
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ha_lab  # noqa: E402
from ha_lab import BGP_VIPS, ECHO_PORT, VIP_DR, VIP_TUN, VIP_VRRP  # noqa: E402
from ha_traffic import summary  # noqa: E402


@pytest.fixture(scope="module")
def lab():
    why = ha_lab.have_tools()
    if why:
        pytest.skip(why)
    with ha_lab.Lab(prefix="s12l-") as lab:
        try:
            lab.build()
        except Exception as e:
            pytest.fail("cannot build the HA lab: %s\n%s" % (e, lab.logs_tail()))
        yield lab


@pytest.fixture
def healed(lab, request):
    """The lab as built, before and after the test; its logs when the test
    failed (the lab's directory goes with the lab)."""
    lab.heal()
    failed = request.session.testsfailed
    yield lab
    if request.session.testsfailed > failed:
        print(lab.logs_tail())
    lab.heal()


def vip_packets(lab, node, vip, port=ECHO_PORT):
    """Packets node's forwarder counted for VIP:PORT (from /metrics)."""
    out = ha_lab.nsexec(lab.ns(node), sys.executable, "-c",
                        "import urllib.request;print(urllib.request.urlopen("
                        "'http://127.0.0.1:%d/metrics', timeout=5).read().decode())" % ha_lab.NODES[node][4]).stdout
    m = re.search(r'sluice_l4_vip_packets_total\{vip="%s:%d",proto="tcp",mode="\w+"\} (\d+)'
                  % (re.escape(vip), port), out)
    return int(m.group(1)) if m else 0


def report(name, figures):
    """The figures, for the log (pytest -s)."""
    extra = " ".join("%s=%s" % (k, figures[k]) for k in ("routes_ms", "session_down_ms", "takeover_ms")
                     if k in figures)
    print("\n[ha] %s: %s; %s" % (name, summary(figures["traffic"]), extra))
    if figures["traffic"]["long"]["failures"]:
        print("[ha] %s: failures %s" % (name, figures["traffic"]["long"]["failures"]))


def assert_unbroken(result):
    lg = result["long"]
    assert lg["broken"] == 0, lg["failures"]
    # Every connection went on exchanging after the event (not just "no
    # error": the run is long enough for dozens of exchanges each).
    assert lg["exchanges"] > lg["connections"] * 20, lg
    assert result["probes"]["ok"] > 0, result["probes"]


def carried_flows(lab, node, vip):
    """A check for run_event: node forwarded some of the traffic before the
    event (else losing it would prove nothing)."""
    before = vip_packets(lab, node, vip)

    def check():
        assert vip_packets(lab, node, vip) > before, "%s carried none of the flows" % node
    return check


def mode(vip):
    return "DR" if vip == VIP_DR else "TUN"


def test_routes_prefer_zone_a_over_ecmp(healed):
    lab = healed
    assert ha_lab.wait_for(lab.sessions_established, 20), {r: lab.bgp_states(r) for r in ha_lab.ROUTERS}
    for r in ha_lab.ROUTERS:
        for vip in BGP_VIPS:
            assert lab.kernel_nexthops(r, vip) == ["a1", "a2"], (r, vip)
            routes = ha_lab.wait_for(lambda: len(lab.bird_routes(r, vip)) == 4 and lab.bird_routes(r, vip), 10)
            assert routes, lab.birdc(r, "show", "route", "for", vip, "all").stdout
            by_node = {node: (len(path), best) for node, path, best in routes}
            # zone a: one AS in the path; zone b: prepended once, never best.
            assert by_node["a1"][0] == by_node["a2"][0] == 1, routes
            assert by_node["b1"] == by_node["b2"] == (2, False), routes
        # NAT replies (from the reals' subnet) go by table 112 to the LB nodes.
        out = ha_lab.nsexec(lab.ns(r), "ip", "route", "show", "table", str(ha_lab.NATRET_TABLE)).stdout
        assert ha_lab.CLIENT_NET in out and "10.12.0.11" in out and "10.12.0.12" in out, out


@pytest.mark.parametrize("vip,event", [(VIP_DR, "crash"), (VIP_TUN, "crash"), (VIP_DR, "power-loss")],
                         ids=["dr", "tun", "dr-power-loss"])
def test_node_crash_keeps_flows(healed, vip, event):
    """kill -9 of a1's sluice l4 and BIRD, its forwarder taken off: the
    routers move a1's flows to a2, which sends them to the same reals.
    The kernel closes the dead BIRD's BGP sessions, so the routers know at
    once; in a power loss (the link goes first) only BFD can tell them."""
    lab = healed
    figures = ha_lab.run_event(lab, event, "a1", vip, check=carried_flows(lab, "a1", vip), heal=False)
    report("%s %s a1" % (mode(vip), event), figures)
    assert_unbroken(figures["traffic"])
    out = lab.detach("a1")
    assert "not attached" in out.stdout, (out.stdout, out.stderr)


@pytest.mark.parametrize("vip", [VIP_DR, VIP_TUN], ids=["dr", "tun"])
def test_link_cut_keeps_flows(healed, vip):
    """a2's fabric link goes down: only BFD can tell the routers."""
    lab = healed
    figures = ha_lab.run_event(lab, "cut", "a2", vip, check=carried_flows(lab, "a2", vip))
    report("%s link cut a2 (BFD %d ms x %d)" % (mode(vip), lab.bfd_interval_ms, lab.bfd_multiplier), figures)
    assert_unbroken(figures["traffic"])


def test_drain_keeps_flows(healed):
    """Graceful: a1 withdraws, the routers move its flows, then it stops."""
    lab = healed
    figures = ha_lab.run_event(lab, "drain", "a1", VIP_DR, check=carried_flows(lab, "a1", VIP_DR), heal=False)
    report("DR drain a1", figures)
    assert_unbroken(figures["traffic"])
    assert lab.routes_are({v: ["a2"] for v in BGP_VIPS})


def test_zone_lost_and_restored(healed):
    """Zone a dies: the routers switch to zone b (ECMP over b1, b2); zone a
    comes back: traffic returns. No connection breaks either way."""
    lab = healed
    figures = ha_lab.run_event(lab, "zone", "a1", VIP_DR, heal=False)
    report("DR zone a lost", figures)
    assert_unbroken(figures["traffic"])
    carried_by_b = vip_packets(lab, "b1", VIP_DR) + vip_packets(lab, "b2", VIP_DR)
    assert carried_by_b > 0
    figures = ha_lab.run_event(lab, "zone-restore", "a1", VIP_DR, check=carried_flows(lab, "b1", VIP_DR))
    report("DR zone a restored", figures)
    assert_unbroken(figures["traffic"])
    assert vip_packets(lab, "a1", VIP_DR) + vip_packets(lab, "a2", VIP_DR) > 0


@pytest.mark.skipif(not shutil.which("keepalived"), reason="needs keepalived")
@pytest.mark.parametrize("advert", ["1", "0.1"], ids=["advert-1s", "advert-100ms"])
def test_keepalived_master_crash_moves_vip(healed, advert):
    """The comparison point: keepalived VRRP on a1 (master) and a2 moves
    VIP_VRRP when a1 crashes (both nodes run the same sluice l4, so DR
    flows continue on a2, after TCP's retransmission backoff)."""
    lab = healed
    figures = ha_lab.run_vrrp_crash(lab, advert, check=carried_flows(lab, "a1", VIP_VRRP))
    report("keepalived advert_int %s: master a1 crashed" % advert, figures)
    assert figures["master_after"] == "a2"
    assert figures["traffic"]["long"]["exchanges"] > figures["traffic"]["long"]["connections"] * 20
