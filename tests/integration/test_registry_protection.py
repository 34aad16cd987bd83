"""sluice registry's protections, each visible as a flag in the API and in
/metrics: the protect threshold (fail-open), the eviction cap, and
self-preservation."""
import time

from metrics_doc import value
from registry_node import reg, SVC, tcp_listener, wait_until  # noqa: F401 (reg is a fixture)


def closed_port():
    s = tcp_listener()
    port = s.getsockname()[1]
    s.close()
    return port


def test_protect_threshold_fails_open(reg):
    r = reg()
    live = tcp_listener()
    try:
        r.ok("PUT", SVC + "/web", {"protect_threshold": 0.5, "answer_count": 3,
                                   "health": {"type": "tcp", "interval": "100ms", "timeout": "100ms", "fall": 1}})
        r.ok("PUT", SVC + "/web/instances/up", {"address": "127.0.0.1", "port": live.getsockname()[1]})
        r.ok("PUT", SVC + "/web/instances/dead1", {"address": "127.0.0.1", "port": closed_port()})
        r.ok("PUT", SVC + "/web/instances/dead2", {"address": "127.0.0.1", "port": closed_port()})
        wait_until(lambda: r.service("web")["healthy"] == 1, what="two instances down")
        # 1 of 3 healthy is below 0.5: every enabled instance is answered, healthy first.
        doc = r.ok("GET", SVC + "/web/answer")
        assert doc["fail_open"] is True
        assert [x["id"] for x in doc["records"]][0] == "up"
        assert sorted(x["id"] for x in doc["records"]) == ["dead1", "dead2", "up"]
        assert r.service("web")["fail_open"] is True
        assert [s["fail_open"] for s in r.ok("GET", SVC)["services"]] == [True]
        assert value(r.metrics(), "sluice_registry_service_fail_open", service="web") == 1
        # Disabled instances are never answered, not even failing open.
        r.ok("PATCH", SVC + "/web/instances/dead2", {"enabled": False})
        for _ in range(5):
            ids = [x["id"] for x in r.ok("GET", SVC + "/web/answer")["records"]]
            assert "dead2" not in ids
        # Below the threshold no more: answers hold only the healthy.
        r.ok("DELETE", SVC + "/web/instances/dead1")
        doc = r.ok("GET", SVC + "/web/answer")
        assert doc["fail_open"] is False and [x["id"] for x in doc["records"]] == ["up"]
        assert value(r.metrics(), "sluice_registry_service_fail_open", service="web") == 0
    finally:
        live.close()


def test_eviction_cap_lets_a_share_expire_per_interval(reg):
    r = reg(extra="  expiry: { eviction_cap: 0.25, eviction_interval: 1h }\n")
    r.ok("PUT", SVC + "/eph", {"heartbeat": {"interval": "100ms", "timeout": "300ms", "expire_after": "500ms"}})
    for i in range(4):
        r.ok("PUT", SVC + "/eph/instances/e%d" % i, {"address": "10.0.0.%d" % (i + 1), "port": 80,
                                                     "ephemeral": True})
    # All go silent: one (a quarter of four) expires, the rest wait for the next interval.
    doc = wait_until(lambda: (lambda s: s if s["eviction_capped"] else None)(r.service("eph")),
                     what="the eviction cap")
    assert len(doc["instances"]) == 3 and all(i["health"] == "down" for i in doc["instances"])
    assert [s["eviction_capped"] for s in r.ok("GET", SVC)["services"]] == [True]
    m = r.metrics()
    assert value(m, "sluice_registry_service_eviction_capped", service="eph") == 1
    assert value(m, "sluice_registry_expirations_total") == 1
    assert value(m, "sluice_registry_expiry_deferred_by_cap_total") >= 1


def test_self_preservation_holds_expiry_when_heartbeats_stop(reg):
    r = reg(extra="  expiry: { self_preservation: 0.85, rate_window: 1s, eviction_cap: 1 }\n")
    r.ok("PUT", SVC + "/eph", {"heartbeat": {"interval": "200ms", "timeout": "400ms", "expire_after": "800ms"}})
    n = 12   # self-preservation judges with at least 10 ephemeral instances
    for i in range(n):
        r.ok("PUT", SVC + "/eph/instances/e%d" % i, {"address": "10.0.1.%d" % (i + 1), "port": 80,
                                                     "ephemeral": True})
    # Heartbeat for a while, so the node has a rate to judge by ...
    end = time.time() + 1.5
    while time.time() < end:
        for i in range(n):
            r.ok("POST", SVC + "/eph/instances/e%d/heartbeat" % i)
        time.sleep(0.1)
    # ... then all stop at once, as when this node is cut off from its clients.
    wait_until(lambda: value(r.metrics(), "sluice_registry_self_preservation") == 1, what="self-preservation")
    status, st = r.get("/api/status")
    assert st["registry"]["self_preservation"] is True
    assert r.ok("GET", SVC)["self_preservation"] is True
    # Instances go DOWN (answers stay right) but none is removed.
    wait_until(lambda: r.service("eph")["healthy"] == 0, what="all DOWN")
    time.sleep(1.0)   # more than expire_after: without self-preservation they would be gone
    assert len(r.service("eph")["instances"]) == n
    assert value(r.metrics(), "sluice_registry_expiry_held_by_preservation_total") >= 1
    # Heartbeats come back: self-preservation ends.
    def beat_and_check():
        for i in range(n):
            r.ok("POST", SVC + "/eph/instances/e%d/heartbeat" % i)
        return value(r.metrics(), "sluice_registry_self_preservation") == 0
    wait_until(beat_and_check, interval=0.1, what="self-preservation to end")
