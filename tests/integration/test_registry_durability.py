"""sluice registry's embedded store: a write is durable before its 200.
After kill -9 and a restart, every acknowledged persistent instance and
service setting is back (health included), and ephemeral instances get a
grace period to heartbeat again before they expire."""
import time

import pytest

from registry_node import Registry, tcp_listener, wait_until

SVC = "/api/registry/services"


@pytest.fixture
def node(tmp_path):
    r = Registry(tmp_path, extra="  expiry: { grace: 3s, eviction_interval: 500ms }\n")
    yield r
    r.stop()
    r.assert_clean()


def test_kill_9_after_the_200_loses_nothing(node):
    r = node.start()
    settings = {"protect_threshold": 0.3, "dns_ttl": 11, "answer_count": 2,
                "heartbeat": {"interval": "200ms", "timeout": "600ms", "expire_after": "1200ms"}}
    r.ok("PUT", SVC + "/web", settings)
    r.ok("PUT", SVC + "/web/instances/p1", {"address": "10.0.0.1", "port": 80, "weight": 321,
                                            "datacenter": "dc1", "region": "r1", "labels": {"v": "2"}})
    r.ok("PUT", SVC + "/web/instances/e1", {"address": "10.0.0.2", "port": 80, "ephemeral": True})
    r.ok("PATCH", SVC + "/web/instances/p1", {"enabled": False})
    before = r.service("web")
    r.kill9()   # right after the last 200: nothing had time to be written later
    # Longer than expire_after: without the grace period e1 would expire at once.
    time.sleep(1.5)
    r.start()
    after = r.service("web")
    assert after["settings"] == before["settings"]
    p1 = r.instance("web", "p1")
    assert p1["weight"] == 321 and p1["enabled"] is False and p1["labels"] == {"v": "2"}
    assert p1["datacenter"] == "dc1" and p1["region"] == "r1" and p1["ephemeral"] is False
    e1 = r.instance("web", "e1")
    assert e1 is not None and e1["ephemeral"] is True and e1["health"] == "up", e1
    # Heartbeats within the grace keep it; once they stop it goes, after the grace.
    for _ in range(10):
        assert r.ok("POST", SVC + "/web/instances/e1/heartbeat")["health"] == "up"
        time.sleep(0.2)
    wait_until(lambda: r.instance("web", "e1") is None, what="e1 to expire after it stopped heartbeating")
    assert r.instance("web", "p1") is not None


def test_ephemeral_instance_expires_after_the_grace_without_heartbeats(node):
    r = node.start()
    r.ok("PUT", SVC + "/eph", {"heartbeat": {"interval": "200ms", "timeout": "600ms", "expire_after": "1200ms"}})
    r.ok("PUT", SVC + "/eph/instances/e1", {"address": "10.0.0.2", "port": 80, "ephemeral": True})
    r.kill9()
    time.sleep(1.5)
    r.start()
    assert r.instance("eph", "e1")["health"] == "up"
    wait_until(lambda: r.instance("eph", "e1") is None, what="expiry after the grace")
    r.stop()
    r.start()
    assert r.service("eph")["instances"] == []


def test_health_of_persistent_instances_survives_a_restart(node):
    """A persistent instance that failed its checks comes back DOWN, with
    its reason, instead of being answered until its checks judge it again."""
    r = node.start()
    lst = tcp_listener()
    port = lst.getsockname()[1]
    lst.close()
    r.ok("PUT", SVC + "/db", {"health": {"type": "tcp", "interval": "100ms", "timeout": "100ms", "fall": 1}})
    r.ok("PUT", SVC + "/db/instances/db1", {"address": "127.0.0.1", "port": port})
    down = wait_until(lambda: (lambda i: i if i["health"] == "down" else None)(r.instance("db", "db1")),
                      what="DOWN")
    # Checks from now on run once an hour: after the restart, nothing but
    # the store can say it is down.
    r.ok("PUT", SVC + "/db", {"health": {"type": "tcp", "interval": "1h", "timeout": "1s", "fall": 1}})
    wait_until(lambda: "sluice_registry_store_pending 0" in r.metrics(), what="the health change written")
    r.kill9()
    r.start()
    db1 = r.instance("db", "db1")
    assert db1["health"] == "down" and db1["health_reason"] == down["health_reason"], db1


def test_a_write_the_store_cannot_make_is_a_503(tmp_path):
    """The data directory's file system fills up: writes are answered 503
    with the store's reason and change nothing; reads go on; once there is
    room again, writes work again."""
    import os
    import subprocess
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    r = None
    try:
        r = Registry(tmp_path)
        r.data_dir = str(mnt / "data")
        r.write_config()
        r.start()
        r.ok("PUT", SVC + "/web/instances/a", {"address": "10.0.0.1", "port": 80})
        filler = mnt / "filler"
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        labels = {"k%d" % i: "v" * 200 for i in range(30)}   # rows larger than what is left
        status, doc = None, None
        for i in range(20):
            status, doc = r.call("PUT", SVC + "/web/instances/b%d" % i,
                                 {"address": "10.0.0.2", "port": 80 + i, "labels": labels})
            if status != 200:
                break
        assert status == 503, doc
        assert "store" in doc["error"], doc
        assert r.instance("web", "b%d" % i) is None        # not applied: not durable
        assert r.service("web")["instances"][0]["id"] == "a"  # reads go on
        m = r.metrics()
        assert "sluice_registry_store_write_failures_total 0" not in m
        filler.unlink()
        wait_until(lambda: r.call("PUT", SVC + "/web/instances/c", {"address": "10.0.0.3", "port": 80})[0] == 200,
                   what="writes to work again")
    finally:
        if r is not None:
            r.stop()
        subprocess.run(["umount", str(mnt)], check=False)
    r.assert_clean()
