"""`make demo-ha` (scripts/demo-ha.sh) runs to its end, shows what it says
it shows, and leaves nothing behind: the lab's routes at a router (ECMP
over a1 and a2, zone b one AS-path prepend longer and unused), `sluice ha
status` on a1, then each failure with its figures
and the routes after it: a1 crashed and a2's link cut (the routers route
over the one node left), a1 drained, zone a lost (zone b takes over) and
restored (zone a again); no long-lived connection broken in any of them
(DR: another node sends a flow to the same real). The figures (ms) are
printed by the demo, never asserted here. Root, BIRD and native XDP on
veth; skips otherwise. About two to three minutes."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ha_lab  # noqa: E402

FABRIC = {node: v[2] for node, v in ha_lab.NODES.items()}   # a1 -> 10.12.0.11 ...


def nexthops(text):
    """The LB nodes of the first `ip route show VIP/32` in text."""
    by_addr = {a: n for n, a in FABRIC.items()}
    m = re.search(r"ip route show %s/32\n((?:    .*\n)+)" % re.escape(ha_lab.VIP_DR), text)
    assert m, text
    return sorted(by_addr.get(a, a) for a in re.findall(r"via (\S+)", m.group(1)))


def test_demo_ha_runs_and_shows_each_failure():
    why = ha_lab.have_tools()
    if why:
        pytest.skip(why)
    p = subprocess.run(["bash", "scripts/demo-ha.sh"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    out = re.sub(r"\x1b\[[0-9;]*m", "", p.stdout)
    assert p.returncode == 0, out[-4000:] + p.stderr[-4000:]
    assert "demo done: everything it started is stopped" in out, out[-2000:]
    assert not [n for n in ha_lab.sh("ip", "netns", "list").stdout.split() if n.startswith("s12x-")]
    assert not [ln for ln in open("/proc/mounts") if " /tmp/s12x-" in ln]

    def section(title):
        """From the line holding title to the next heading: "== ..." or a
        part's " title " line (content lines start with two spaces)."""
        start = out.index(title)
        line_end = out.index("\n", start)
        nxt = re.search(r"^(== | \S)", out[line_end + 1:], re.M)
        return out[start:line_end + 1 + nxt.start()] if nxt else out[start:]

    # The routes as built: ECMP over zone a; BIRD has zone b's routes too,
    # one prepend longer, unused.
    routes = section("== routes at a router")
    assert nexthops(routes) == ["a1", "a2"], routes
    for node in ("a1", "a2"):
        assert re.search(r"from %s\s+zone a\s+AS path 65101\s+shortest: in the ECMP route" % node, routes), routes
    for node in ("b1", "b2"):
        assert re.search(r"from %s\s+zone b\s+AS path 65101 65101\s+not used: 1 prepend more" % node, routes), routes

    status = section("== sluice ha status on a1")
    assert "node a1, zone a, priority 0" in status, status
    assert status.count("Established") == 2, status
    assert ha_lab.VIP_DR in status.split("announced:")[1], status

    # Each failure, the routes after it, and no broken connection in any
    # mode the demo drives traffic to (every mode when the lab has them).
    modes = sorted(getattr(ha_lab, "MODES", {"dr": ha_lab.VIP_DR}))
    after = {"crash of a1": ["a2"], "link cut at a2": ["a1"], "drain of a1": ["a2"],
             "zone a lost": ["b1", "b2"], "zone a restored": ["a1", "a2"]}
    for title, nodes in after.items():
        text = section(" %s " % title)
        assert nexthops(text) == nodes, text
        assert re.search(r"both routers' kernels routed every address as expected \d+ ms after the event", text), text
        lines = {m.group(1).lower(): m.group(2)
                 for m in re.finditer(r"^    (\w+)\s+\S+\s+long-lived: (.*)$", text, re.M)}
        assert sorted(lines) == modes, text
        for mode, line in lines.items():
            assert re.match(r"broken 0 of \d+, longest wait\s+\d+ ms; new: \d+ failed of \d+", line), (mode, text)
    lost = section(" zone a lost ")
    for node in ("b1", "b2"):
        assert re.search(r"from %s\s+zone b\s+AS path 65101 65101\s+shortest: in the ECMP route" % node, lost), lost
    # Only BFD tells the routers about a cut link.
    assert re.search(r"BGP session to a2 down after r[12] -?\d+ ms", section(" link cut at a2 ")), out

    summary = section("== the figures")
    for title in after:
        assert re.search(r"^  %s\s+(-?\d+ ms|-)\s+\d+ ms\s+\d+ ms\s+\d+ / \d+\s+0$" % re.escape(title), summary,
                         re.M), summary
