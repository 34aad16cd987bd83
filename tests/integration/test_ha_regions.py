"""Regions failed over by DNS (issue 12, item 5): two HA labs as two
regions, each with its VIP, and `sluice registry` answering the GSLB name
global.sluice.test with the caller's region VIP (see ha_regions.py for the
topology and the poller).

What is checked: the client (placed in r1 by its subnet) gets VIP1 with
the service's TTL and is served through region 1's routers and LB nodes;
a caller of r2 (EDNS Client Subnet) gets VIP2. Region 1 is lost (its four
LB nodes crash): the registry's HTTP check marks VIP1 down, the registry
answers VIP2 from then on, a client that honours the TTL moves to VIP2 and
is served there. Region 1 restored: VIP1 passes `rise` checks and the
client comes back. The times (registry's answer, the TTL-honouring client)
are printed against fall x interval + TTL, never asserted (a shared
2-core machine); run with -s to read them.

Needs root, BIRD, native XDP on veth, dig; skips otherwise.
"""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ha_regions  # noqa: E402
from ha_regions import REGION2_CALLERS, VIP1, VIP2  # noqa: E402


@pytest.fixture(scope="module")
def world():
    why = ha_regions.have_tools()
    if why:
        pytest.skip(why)
    with ha_regions.Regions(prefix="s12r") as world:
        try:
            world.build()
        except Exception as e:
            pytest.fail("cannot build the two regions: %s\n%s" % (e, world.logs_tail()))
        yield world
        text = world.read_registry_log()
        for bad in ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer"):
            assert bad not in text, "sanitizer report in the registry's log:\n" + text[-4000:]


@pytest.fixture
def logs_on_failure(world, request):
    failed = request.session.testsfailed
    yield world
    if request.session.testsfailed > failed:
        print(world.logs_tail())


def test_each_region_gets_its_own_vip(logs_on_failure):
    world = logs_on_failure
    # The client's subnet is r1: VIP1, with the service's TTL.
    assert world.dig(ttl=True) == [(world.ttl, VIP1)]
    # A caller in r2 (by EDNS Client Subnet): VIP2.
    assert world.dig(subnet=REGION2_CALLERS) == [VIP2]
    # Both VIPs serve the client, each from its own region's reals.
    for vip in (VIP1, VIP2):
        body = world.http(vip)
        assert body and body.split()[1] == ha_regions.CLIENT_ADDR, (vip, body)
    # The registry checks each VIP through the WAN and the region's routers.
    inst = world.instances()
    assert inst["r1"]["health"] == "up" and inst["r2"]["health"] == "up", inst
    # A region's VIP is its own: the WAN does not route VIP2 into region 1,
    # so losing region 1 cannot be hidden by region 1 serving VIP2.
    route = ha_regions.nsexec(world.ns("wan"), "ip", "-j", "route", "get", VIP2).stdout
    assert json.loads(route)[0]["gateway"] == ha_regions.EDGE[2][1], route


@pytest.mark.parametrize("event", ["crash", "cut"])
def test_region_lost_fails_over_by_dns_and_comes_back(logs_on_failure, event):
    """crash: the region's four LB nodes crash, its routers withdraw VIP1
    and answer "unreachable"; cut: the region's link to the WAN goes down,
    what is sent to it is lost and the checks time out."""
    world = logs_on_failure
    fig = ha_regions.run_failover(world, event)
    print("\n[regions] " + ha_regions.summary(fig))
    print("[regions] " + json.dumps(fig))
    before, loss, restore = fig["before"], fig["loss"], fig["restore"]
    assert before["answer"] == [[world.ttl, VIP1]], before
    assert before["served_by"].split()[1] == ha_regions.CLIENT_ADDR, before
    assert before["region2_callers"] == [VIP2], before
    # Region 1 was really lost: the client's probe of VIP1 failed...
    assert loss["vip1_first_failure_ms"] is not None, loss
    # ... the registry's check marked it down, and its answers moved to VIP2
    # for good (none went back to VIP1 while region 1 was down).
    assert loss["registry_down_ms"] is not None, loss
    assert loss["answer_vip2_ms"] is not None, loss
    assert loss["vip1_answers_after_switch"] == 0, loss
    # The TTL-honouring client moved to VIP2 and every request there was served.
    assert loss["ttl_client_vip2_ms"] is not None, loss
    assert loss["vip2_requests_after_switch"] > 0 and loss["vip2_requests_failed_after_switch"] == 0, loss
    # Region 2's own callers were never moved.
    assert loss["region2_callers"] == [VIP2], loss
    # Restored: VIP1 serves again and the client is answered VIP1 again.
    assert restore["client_probe_ok_ms"] is not None, restore
    assert restore["answer_vip1_ms"] is not None and restore["ttl_client_vip1_ms"] is not None, restore
    assert world.dig() == [VIP1]
    assert world.http(VIP1)
