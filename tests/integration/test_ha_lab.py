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
from ha_traffic import Traffic, summary  # noqa: E402


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
def healed(lab):
    """The lab as built, before and after the test; its logs on failure."""
    lab.heal()
    try:
        yield lab
    except Exception:
        print(lab.logs_tail())
        raise
    finally:
        lab.heal()


def vip_packets(lab, node, vip, port=ECHO_PORT):
    """Packets node's forwarder counted for VIP:PORT (from /metrics)."""
    out = ha_lab.nsexec(lab.ns(node), sys.executable, "-c",
                        "import urllib.request;print(urllib.request.urlopen("
                        "'http://127.0.0.1:%d/metrics', timeout=5).read().decode())" % ha_lab.NODES[node][4]).stdout
    m = re.search(r'sluice_l4_vip_packets_total\{vip="%s:%d",proto="tcp",mode="\w+"\} (\d+)'
                  % (re.escape(vip), port), out)
    return int(m.group(1)) if m else 0


def run_event(lab, vip, event, settle=1.0, after=1.5, **kw):
    """Traffic to vip; event() once it flows; the figures once the routes
    settled and `after` seconds more passed."""
    t = Traffic(lab, vip, duration=60, **kw).start()
    try:
        ha_lab.time.sleep(settle)
        event()
        ha_lab.time.sleep(after)
    finally:
        result = t.stop()
    return result


def report(name, result):
    print("\n[ha] %s: %s" % (name, summary(result)))
    if result["long"]["failures"]:
        print("[ha] %s: failures %s" % (name, result["long"]["failures"]))


def assert_unbroken(result):
    lg = result["long"]
    assert lg["broken"] == 0, lg["failures"]
    # Every connection went on exchanging after the event (not just "no
    # error": the run is long enough for dozens of exchanges each).
    assert lg["exchanges"] > lg["connections"] * 20, lg
    assert result["probes"]["ok"] > 0, result["probes"]


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


@pytest.mark.parametrize("vip,silent", [(VIP_DR, False), (VIP_TUN, False), (VIP_DR, True)],
                         ids=["dr", "tun", "dr-power-loss"])
def test_node_crash_keeps_flows(healed, vip, silent):
    """kill -9 of a1's sluice l4 and BIRD, its forwarder taken off: the
    routers move a1's flows to a2, which sends them to the same reals.
    The kernel closes the dead BIRD's BGP sessions, so the routers know at
    once; with silent=True (a power loss: the link goes first) only BFD
    can tell them."""
    lab = healed
    before = vip_packets(lab, "a1", vip)

    def crash():
        assert vip_packets(lab, "a1", vip) > before, "a1 carried none of the flows: the test would prove nothing"
        lab.crash_node("a1", silent=silent)
        took = lab.wait_routes({v: ["a2"] for v in BGP_VIPS})
        print("\n[ha] routes moved off a1 in %.0f ms" % (took * 1000))

    result = run_event(lab, vip, crash)
    report("%s %s a1" % ("DR" if vip == VIP_DR else "TUN", "power loss" if silent else "crash"), result)
    assert_unbroken(result)
    assert lab.detach("a1").stdout.find("not attached") >= 0


@pytest.mark.parametrize("vip", [VIP_DR, VIP_TUN], ids=["dr", "tun"])
def test_link_cut_keeps_flows(healed, vip):
    """a2's fabric link goes down: only BFD can tell the routers."""
    lab = healed
    before = vip_packets(lab, "a2", vip)

    def cut():
        assert vip_packets(lab, "a2", vip) > before, "a2 carried none of the flows"
        lab.cut_link("a2")
        took = lab.wait_routes({v: ["a1"] for v in BGP_VIPS})
        print("\n[ha] routes moved off a2 in %.0f ms (BFD %d ms x %d)"
              % (took * 1000, lab.bfd_interval_ms, lab.bfd_multiplier))

    result = run_event(lab, vip, cut)
    report("%s link cut a2" % ("DR" if vip == VIP_DR else "TUN"), result)
    assert_unbroken(result)


def test_drain_keeps_flows(healed):
    """Graceful: a1 withdraws, the routers move its flows, then it stops."""
    lab = healed
    result = run_event(lab, VIP_DR, lambda: lab.drain("a1"))
    report("DR drain a1", result)
    assert_unbroken(result)
    assert lab.routes_are({v: ["a2"] for v in BGP_VIPS})


def test_zone_lost_and_restored(healed):
    """Zone a dies: the routers switch to zone b (ECMP over b1, b2); zone a
    comes back: traffic returns. No connection breaks either way."""
    lab = healed

    def lose():
        lab.lose_zone("a")
        took = lab.wait_routes({v: ["b1", "b2"] for v in BGP_VIPS})
        print("\n[ha] routes on zone b in %.0f ms" % (took * 1000))

    result = run_event(lab, VIP_DR, lose)
    report("DR zone a lost", result)
    assert_unbroken(result)
    assert vip_packets(lab, "b1", VIP_DR) + vip_packets(lab, "b2", VIP_DR) > 0

    def restore():
        lab.restore_zone("a")
        took = lab.wait_routes({v: ["a1", "a2"] for v in BGP_VIPS})
        print("\n[ha] routes back on zone a %.0f ms after both nodes were ready" % (took * 1000))

    result = run_event(lab, VIP_DR, restore)
    report("DR zone a restored", result)
    assert_unbroken(result)


@pytest.mark.skipif(not shutil.which("keepalived"), reason="needs keepalived")
@pytest.mark.parametrize("advert", ["1", "0.1"], ids=["advert-1s", "advert-100ms"])
def test_keepalived_master_crash_moves_vip(healed, advert):
    """The comparison point: keepalived VRRP on a1 (master) and a2 moves
    VIP_VRRP when a1 crashes (both nodes run the same sluice l4, so DR
    flows continue on a2)."""
    lab = healed
    lab.start_keepalived(("a1", "a2"), advert_int=advert)
    assert ha_lab.wait_for(lambda: lab.vrrp_master() == "a1", 15), lab.logs_tail()

    def crash():
        lab.crash_node("a1")
        assert ha_lab.wait_for(lambda: lab.vrrp_master() == "a2", 15), lab.logs_tail()

    # advert 1 s: about 3.6 s without a master, and TCP's retransmission
    # backoff after it: a connection may wait ~6 s for its next try.
    result = run_event(lab, VIP_VRRP, crash, after=8.0, timeout=20)
    report("keepalived advert_int %s: master a1 crashed" % advert, result)
    assert lab.vrrp_master() == "a2"
    assert result["long"]["exchanges"] > result["long"]["connections"] * 20
