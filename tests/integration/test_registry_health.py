"""sluice registry's judgement of instances: ephemeral ones by their
heartbeats (kept while they heartbeat, DOWN then expired when they stop,
and deleted from the store then), persistent ones by active TCP and HTTP
checks against real backends, with the reason of each change."""
import time

from backends import HttpBackend
from registry_node import reg, SVC, tcp_listener, wait_until  # noqa: F401 (reg is a fixture)

FAST_HEARTBEAT = {"heartbeat": {"interval": "200ms", "timeout": "600ms", "expire_after": "1200ms"}}


def test_ephemeral_instance_lives_by_its_heartbeats(reg):
    # A short eviction interval: the cap lets one expiry through per interval.
    r = reg(extra="  expiry: { eviction_interval: 500ms }\n")
    r.ok("PUT", SVC + "/eph", FAST_HEARTBEAT)
    r.ok("PUT", SVC + "/eph/instances/e1", {"address": "10.0.0.1", "port": 80, "ephemeral": True})
    r.ok("PUT", SVC + "/eph/instances/e2", {"address": "10.0.0.2", "port": 80, "ephemeral": True})
    # Heartbeats keep e1 up over many expiry periods; e2 stays silent, goes
    # DOWN with a reason, then expires.
    saw_e2_down = False
    for _ in range(40):  # about 4 s: more than three expire_after periods
        doc = r.ok("POST", SVC + "/eph/instances/e1/heartbeat")
        assert doc["health"] == "up"
        e2 = r.instance("eph", "e2")
        if e2 is not None and e2["health"] == "down":
            saw_e2_down = True
            assert "heartbeat" in e2["health_reason"], e2
        time.sleep(0.1)
    assert saw_e2_down
    assert r.instance("eph", "e2") is None, "the silent instance did not expire"
    e1 = r.instance("eph", "e1")
    assert e1 is not None and e1["health"] == "up" and e1["owner"] == "test1"
    # The heartbeat's answer carries the weight and enabled flag an operator
    # set, so a provider that registers again keeps them.
    assert doc["weight"] == 100 and doc["enabled"] is True, doc
    r.ok("PATCH", SVC + "/eph/instances/e1", {"weight": 7, "enabled": False})
    doc = r.ok("POST", SVC + "/eph/instances/e1/heartbeat")
    assert doc["weight"] == 7 and doc["enabled"] is False and doc["health"] == "up", doc
    # Its heartbeat after expiry is a 404: the client registers again.
    status, doc = r.call("POST", SVC + "/eph/instances/e2/heartbeat")
    assert status == 404
    m = r.metrics()
    assert "sluice_registry_expirations_total 1" in m
    # Silence turns e1 DOWN and then removes it too; a heartbeat while DOWN brings it back.
    wait_until(lambda: (r.instance("eph", "e1") or {}).get("health") == "down", what="e1 down")
    assert r.ok("POST", SVC + "/eph/instances/e1/heartbeat")["health"] == "up"
    wait_until(lambda: r.instance("eph", "e1") is None, what="e1 expired")


def test_expired_instance_is_deleted_from_the_store(reg, tmp_path):
    r = reg()
    r.ok("PUT", SVC + "/eph", FAST_HEARTBEAT)
    r.ok("PUT", SVC + "/eph/instances/e1", {"address": "10.0.0.1", "port": 80, "ephemeral": True})
    wait_until(lambda: r.instance("eph", "e1") is None, what="expiry")
    r.stop()
    r.start()
    assert r.service("eph")["instances"] == [], "an expired instance came back after a restart"


def test_persistent_instance_checked_by_tcp(reg):
    r = reg()
    lst = tcp_listener()
    port = lst.getsockname()[1]
    try:
        r.ok("PUT", SVC + "/db", {"health": {"type": "tcp", "interval": "100ms", "timeout": "100ms",
                                             "rise": 2, "fall": 2}})
        r.ok("PUT", SVC + "/db/instances/db1", {"address": "127.0.0.1", "port": port})
        wait_until(lambda: "sluice_registry_health_checks 1" in r.metrics(), what="the check to start")
        assert r.instance("db", "db1")["health"] == "up"
        lst.close()
        inst = wait_until(lambda: (lambda i: i if i["health"] == "down" else None)(r.instance("db", "db1")),
                          what="DOWN")
        assert inst["health_reason"].startswith("tcp check failed"), inst
        assert "2 in a row" in inst["health_reason"]
        lst = tcp_listener_on(port)
        inst = wait_until(lambda: (lambda i: i if i["health"] == "up" else None)(r.instance("db", "db1")),
                          what="UP")
        assert inst["health_reason"].startswith("tcp check ok") and "passed 2 in a row" in inst["health_reason"], inst
        assert "sluice_registry_health_changes_total 2" in r.metrics()
        # The log names the instance and its service, not a pool's backend.
        log = r.read_log()
        assert "instance db1 (127.0.0.1:%d) of service db is DOWN after 2 failed checks" % port in log, log
        assert "in pool" not in log
    finally:
        lst.close()


def tcp_listener_on(port):
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(64)
    return s


def test_persistent_instance_checked_by_http(reg):
    r = reg()
    b = HttpBackend("api").start()
    try:
        r.ok("PUT", SVC + "/api", {"health": {"type": "http", "path": "/health", "interval": "100ms",
                                              "timeout": "100ms", "rise": 1, "fall": 1}})
        r.ok("PUT", SVC + "/api/instances/a1", {"address": "127.0.0.1", "port": b.port})
        wait_until(lambda: any(q["path"] == "/health" for q in list(b.requests)), what="a check request")
        b.status = 503
        inst = wait_until(lambda: (lambda i: i if i["health"] == "down" else None)(r.instance("api", "a1")),
                          what="DOWN")
        assert "http check failed" in inst["health_reason"] and "503" in inst["health_reason"], inst
        # A DOWN instance is not answered while a healthy one is.
        r.ok("PUT", SVC + "/api/instances/other", {"address": "10.9.9.9", "port": 80})
        for _ in range(5):
            assert [x["id"] for x in r.ok("GET", SVC + "/api/answer")["records"]] == ["other"]
        b.status = 200
        inst = wait_until(lambda: (lambda i: i if i["health"] == "up" else None)(r.instance("api", "a1")),
                          what="UP")
        assert inst["health_reason"].startswith("http check ok") and "200" in inst["health_reason"], inst
    finally:
        b.stop()


def test_check_turned_off_brings_instances_up(reg):
    r = reg()
    r.ok("PUT", SVC + "/db", {"health": {"type": "tcp", "interval": "100ms", "timeout": "100ms",
                                         "rise": 1, "fall": 1}})
    lst = tcp_listener()
    port = lst.getsockname()[1]
    lst.close()
    r.ok("PUT", SVC + "/db/instances/db1", {"address": "127.0.0.1", "port": port})
    wait_until(lambda: r.instance("db", "db1")["health"] == "down", what="DOWN")
    r.ok("PUT", SVC + "/db", {"health": {"type": "none"}})
    inst = wait_until(lambda: (lambda i: i if i["health"] == "up" else None)(r.instance("db", "db1")), what="UP")
    assert "no active health check" in inst["health_reason"]
