"""Cluster mode: three `sluice registry` nodes (store: etcd) over a real
3-member etcd cluster started by the test (Debian's etcd-server).

- a write on one node is answered by the others;
- each persistent instance is health-checked by exactly one live node, and
  when a node dies (kill -9) its share moves to the others;
- a dead node's ephemeral instances stay answered while their clients
  register again elsewhere (a heartbeat to another node says 404, which is
  the client's cue), and those never registered again go after the grace;
- one etcd member down changes nothing; all of etcd down makes every node
  stale (API and metrics), reads answer from the last copy and writes get
  503 with the reason; etcd back: fresh again, writes work.
"""
import os

import pytest

from metrics_doc import documented_families, families

from etcd_cluster import EtcdCluster
from registry_node import Registry, tcp_listener, wait_until

LEASE_TTL = "2s"
GRACE_S = 8


class ClusterNode(Registry):
    def __init__(self, tmp_path, node, endpoints, prefix):
        self.node = node
        self.extra = ("  store: etcd\n  etcd: { endpoints: [%s], prefix: %s, lease_ttl: %s }\n"
                      "  expiry: { grace: %ds }\n" % (", ".join(endpoints), prefix, LEASE_TTL, GRACE_S))
        super().__init__(tmp_path, extra=self.extra, name=node)

    def write_config(self, extra="", services=""):
        super().write_config(extra, services)
        text = self.config_path.read_text().replace("node: test1", "node: " + self.node)
        self.config_path.write_text(text)

    def status(self):
        return self.ok("GET", "/api/status")["registry"]

    def metric(self, name):
        for line in self.metrics().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None


@pytest.fixture
def cluster(tmp_path):
    if not os.path.exists("/usr/bin/etcd"):
        pytest.skip("etcd-server is not installed (scripts/deps.sh installs it)")
    etcd = EtcdCluster(tmp_path).start()
    prefix = "/sluice-it-%d/" % os.getpid()
    nodes = [ClusterNode(tmp_path, "reg%d" % (i + 1), etcd.endpoints, prefix) for i in range(3)]
    try:
        for n in nodes:
            n.start()
        for n in nodes:
            wait_until(lambda: not n.status()["stale"], timeout=20, what="%s in step with etcd" % n.node)
        yield etcd, nodes
    finally:
        for n in nodes:
            n.stop()
        etcd.kill_all()
    for n in nodes:
        n.assert_clean()


def instance_of(node, service, iid):
    status, doc = node.call("GET", "/api/registry/services/" + service)
    if status != 200:
        return None
    for inst in doc["instances"]:
        if inst["id"] == iid:
            return inst
    return None


def test_cluster_writes_duty_and_node_death(cluster):
    etcd, (n1, n2, n3) = cluster
    backend = tcp_listener()
    port = backend.getsockname()[1]
    try:
        # A write on node 1 is answered by nodes 2 and 3.
        n1.ok("PUT", "/api/registry/services/web",
              {"health": {"type": "tcp", "interval": "200ms", "timeout": "200ms", "rise": 1, "fall": 1}})
        total = 30
        for i in range(total):
            n1.ok("PUT", "/api/registry/services/web/instances/w%d" % i, {"address": "127.0.0.1", "port": port})
        for n in (n2, n3):
            wait_until(lambda: len(n.service("web")["instances"]) == total, what="%s sees web" % n.node)
            assert n.service("web")["settings"]["health"]["type"] == "tcp"

        # A cluster node serves every documented registry family, the
        # cluster's included (the DNS server's have their own check).
        served = {f: t for f, (t, _) in families(n1.metrics()).items()
                  if f.startswith("sluice_registry_") and not f.startswith("sluice_registry_dns_")}
        documented = {f: t for f, t in documented_families().items()
                      if f.startswith("sluice_registry_") and not f.startswith("sluice_registry_dns_")}
        assert served == documented, {"served, not documented": sorted(set(served) - set(documented)),
                                      "documented, not served": sorted(set(documented) - set(served))}

        # Duty: every persistent instance is checked by exactly one node.
        def checks():
            return [n.status()["health_checks"] for n in (n1, n2, n3)]
        wait_until(lambda: sum(checks()) == total, what="one check per instance: %r" % (checks(),))
        before = checks()
        assert before[2] > 0, before

        # Ephemeral instances registered on node 3.
        for iid in ("e1", "e2"):
            n3.ok("PUT", "/api/registry/services/eph/instances/" + iid,
                  {"address": "127.0.0.1", "port": port, "ephemeral": True})
        wait_until(lambda: instance_of(n1, "eph", "e2"), what="node 1 sees node 3's instances")
        assert instance_of(n1, "eph", "e1")["owner"] == "reg3"
        # A heartbeat to a node that does not hold the instance: 404.
        status, doc = n1.call("POST", "/api/registry/services/eph/instances/e1/heartbeat")
        assert status == 404 and "reg3" in doc["error"], (status, doc)

        # Node 3 dies: its lease expires, its share of the checks moves.
        n3.kill9()
        wait_until(lambda: n1.metric("sluice_registry_cluster_members") == 2, timeout=15,
                   what="node 3's member key gone")
        wait_until(lambda: n1.status()["health_checks"] + n2.status()["health_checks"] == total,
                   what="node 3's checks taken over")
        after = [n1.status()["health_checks"], n2.status()["health_checks"]]
        assert after[0] >= before[0] and after[1] >= before[1], (before, after)

        # Its ephemeral instances are still answered (held) ...
        for n in (n1, n2):
            for iid in ("e1", "e2"):
                inst = instance_of(n, "eph", iid)
                assert inst is not None and inst["health"] == "up", (n.node, iid, inst)
        assert n1.metric("sluice_registry_cluster_held") == 2
        answer = n1.ok("GET", "/api/registry/services/eph/answer?family=a")
        assert len(answer["records"]) >= 1, answer
        # ... the client of e1 moves to node 1 and registers again ...
        n1.ok("PUT", "/api/registry/services/eph/instances/e1",
              {"address": "127.0.0.1", "port": port, "ephemeral": True})
        wait_until(lambda: (instance_of(n2, "eph", "e1") or {}).get("owner") == "reg1", what="e1 moved to reg1")
        n1.ok("POST", "/api/registry/services/eph/instances/e1/heartbeat")
        # ... and e2, never registered again, goes after the grace.
        for n in (n1, n2):
            wait_until(lambda: instance_of(n, "eph", "e2") is None, timeout=GRACE_S + 6,
                       what="%s drops e2 after the grace" % n.node)
        assert instance_of(n2, "eph", "e1") is not None
    finally:
        backend.close()


def test_cluster_etcd_outage(cluster):
    etcd, (n1, n2, n3) = cluster
    n1.ok("PUT", "/api/registry/services/db/instances/d1", {"address": "10.5.0.1", "port": 5432})
    wait_until(lambda: instance_of(n2, "db", "d1"), what="node 2 sees d1")

    # One etcd member down: writes still work everywhere.
    etcd.kill(0)
    n2.ok("PUT", "/api/registry/services/db/instances/d2", {"address": "10.5.0.2", "port": 5432})
    wait_until(lambda: instance_of(n3, "db", "d2"), what="node 3 sees d2")

    # All of etcd down: stale, reads answer, writes refused with the reason.
    etcd.kill_all()
    for n in (n1, n2, n3):
        wait_until(lambda: n.status()["stale"], timeout=15, what="%s stale" % n.node)
        assert n.ok("GET", "/api/registry/services")["stale"] is True
        assert n.metric("sluice_registry_stale") == 1
        assert instance_of(n, "db", "d1") and instance_of(n, "db", "d2")
    status, doc = n1.call("PUT", "/api/registry/services/db/instances/d3", {"address": "10.5.0.3", "port": 5432})
    assert status == 503, (status, doc)
    assert "etcd unreachable" in doc["error"], doc

    # etcd back: fresh again, the watch resumes, writes work and spread.
    etcd.restart_all()
    for n in (n1, n2, n3):
        wait_until(lambda: not n.status()["stale"], timeout=20, what="%s fresh again" % n.node)
    n1.ok("PUT", "/api/registry/services/db/instances/d3", {"address": "10.5.0.3", "port": 5432})
    for n in (n2, n3):
        wait_until(lambda: instance_of(n, "db", "d3"), what="%s sees d3" % n.node)
    assert n2.metric("sluice_registry_stale") == 0


def test_cluster_ephemeral_health_spreads(cluster):
    """The owner judges its ephemeral instance by heartbeats; the others
    follow what it writes: silence turns it DOWN everywhere, a heartbeat
    brings it back everywhere."""
    etcd, (n1, n2, n3) = cluster
    n1.ok("PUT", "/api/registry/services/hb",
          {"heartbeat": {"interval": "200ms", "timeout": "600ms", "expire_after": "60s"}})
    n1.ok("PUT", "/api/registry/services/hb/instances/e1",
          {"address": "10.7.0.1", "port": 80, "ephemeral": True})
    for n in (n2, n3):
        wait_until(lambda: (instance_of(n, "hb", "e1") or {}).get("health") == "down", timeout=10,
                   what="%s sees e1 down after its silence" % n.node)
    assert instance_of(n1, "hb", "e1")["health"] == "down"
    assert n1.ok("POST", "/api/registry/services/hb/instances/e1/heartbeat")["health"] == "up"
    for n in (n2, n3):
        wait_until(lambda: (instance_of(n, "hb", "e1") or {}).get("health") == "up", timeout=10,
                   what="%s sees e1 up again" % n.node)
