"""Active health checks, passive ejection, slow start and the all-down 503,
observed through real traffic and GET /api/pools."""
import collections
import time

from backends import HttpBackend
from helpers import admin_json, free_port, fresh_get, pool_backends, wait_for


def pool_yaml(name, addresses, extra=""):
    out = "  - name: %s\n" % name
    for l in extra.strip("\n").split("\n") if extra else []:
        out += "    %s\n" % l
    out += "    backends:\n"
    for a in addresses:
        if isinstance(a, tuple):
            out += "      - address: %s\n        weight: %d\n" % a
        else:
            out += "      - %s\n" % a
    return out


def make_config(admin_port, pools, listeners):
    """pools: yaml of the pool list; listeners: [(name, port, pool)]."""
    text = "workers: 1\nadmin: { listen: 127.0.0.1:%d }\npools:\n%slisteners:\n" % (admin_port, pools)
    for name, port, pool in listeners:
        text += "  - name: %s\n    listen: 127.0.0.1:%d\n    pool: %s\n" % (name, port, pool)
    return text


def state_of(aport, pool, address):
    return pool_backends(aport, pool)[address]


# Workers pick up control changes on their 100 ms tick.
TICK = 0.1


def wait_state(aport, pool, address, state, timeout, settle=True):
    """Seconds it took for the backend to reach `state` in the API (fails
    after timeout). With settle, also wait until every worker has seen it."""
    t0 = time.time()
    ok = wait_for(lambda: state_of(aport, pool, address)["state"] == state, timeout=timeout, interval=0.02)
    assert ok, "backend %s never became %s: %s" % (address, state, state_of(aport, pool, address))
    took = time.time() - t0
    if settle:
        time.sleep(3 * TICK)
    return took


def restart(b):
    """Start a stopped backend again on the same port."""
    again = HttpBackend(name=b.name, port=b.port)
    again.start()
    return again


def test_tcp_check_down_and_up(sluice, backends):
    bs = backends(2)
    port, aport = free_port(), free_port()
    hc = "health_check: { type: tcp, interval: 200ms, timeout: 100ms, rise: 2, fall: 3 }"
    s = sluice(make_config(aport, pool_yaml("app", [b.address for b in bs], hc), [("web", port, "app")]),
               wait_ports=[port, aport])
    wait_for(lambda: state_of(aport, "app", bs[1].address)["health"]["checks_ok"] >= 2, timeout=3)
    assert state_of(aport, "app", bs[1].address)["state"] == "up"

    bs[1].stop()
    # fall x interval = 600 ms, plus at most one interval of phase; the wait
    # is a bound, not a speed check.
    wait_state(aport, "app", bs[1].address, "down", timeout=8)
    info = state_of(aport, "app", bs[1].address)
    assert info["health"]["status"] == "down" and info["effective_weight"] == 0
    assert "refused" in info["health"]["last_check"], info
    before = pool_backends(aport, "app")[bs[1].address]["counters"]["connect_failures"]
    seen = collections.Counter(fresh_get(port)[1]["x-backend"] for _ in range(10))
    assert seen == {"b1": 10}, seen
    # No traffic was even tried on it.
    assert pool_backends(aport, "app")[bs[1].address]["counters"]["connect_failures"] == before

    back = restart(bs[1])
    try:
        wait_state(aport, "app", bs[1].address, "up", timeout=8)   # rise x interval = 400 ms
        seen = collections.Counter(fresh_get(port)[1]["x-backend"] for _ in range(10))
        assert seen == {"b1": 5, "b2": 5}, seen
    finally:
        back.stop()
    assert "backend %s in pool app is DOWN" % bs[1].address in s.read_log()
    assert "backend %s in pool app is UP" % bs[1].address in s.read_log()


def test_http_check_expect_status_and_all_down_503(sluice, backends):
    bs = backends(2)
    port_ok, port_bad, aport = free_port(), free_port(), free_port()
    good = ("health_check: { type: http, path: /status/200, expect_status: 200, interval: 100ms,"
            " timeout: 100ms, rise: 1, fall: 2 }")
    bad = ("health_check: { type: http, path: /status/500, expect_status: 200-299, interval: 100ms,"
           " timeout: 100ms, rise: 1, fall: 2 }")
    pools = pool_yaml("good", [b.address for b in bs], good) + pool_yaml("bad", [b.address for b in bs], bad)
    s = sluice(make_config(aport, pools, [("ok", port_ok, "good"), ("broken", port_bad, "bad")]),
               wait_ports=[port_ok, port_bad, aport])
    for b in bs:
        wait_state(aport, "bad", b.address, "down", timeout=3)
    info = state_of(aport, "bad", bs[0].address)
    assert "500" in info["health"]["last_check"], info
    assert state_of(aport, "good", bs[0].address)["state"] == "up"
    checks = [r for r in bs[0].requests if r["path"] == "/status/500"]
    assert checks and checks[0]["headers"].get("User-Agent", "").startswith("sluice-health")

    # The whole pool is down: an immediate 503, no hang.
    for _ in range(3):
        t0 = time.time()
        status, _, body = fresh_get(port_bad, "/x", timeout=5)
        assert status == 503, body
        assert time.time() - t0 < 2.0
    assert fresh_get(port_ok)[0] == 200
    real = [r for b in bs for r in b.requests if r["path"] == "/x"]
    assert real == []


def test_passive_ejection_with_backoff(sluice, backends):
    bs = backends(1)
    dead = "127.0.0.1:%d" % free_port()
    port, aport = free_port(), free_port()
    passive = "passive: { max_fails: 2, eject_time: 1s, max_eject_time: 4s }"
    sluice(make_config(aport, pool_yaml("app", [dead, bs[0].address], passive), [("web", port, "app")]),
           wait_ports=[port, aport])

    def fail_until_ejected():
        for _ in range(10):
            assert fresh_get(port)[0] == 200   # retried on b1
            info = state_of(aport, "app", dead)
            if info["state"] == "ejected":
                return info
        raise AssertionError("never ejected: %s" % state_of(aport, "app", dead))

    first = fail_until_ejected()
    assert 0 < first["ejected_until_ms"] <= 1000 and first["effective_weight"] == 0
    # While ejected, it gets no traffic.
    fails = first["counters"]["connect_failures"]
    for _ in range(6):
        assert fresh_get(port)[0] == 200
    assert state_of(aport, "app", dead)["counters"]["connect_failures"] == fails

    # After the ejection, it is tried again, fails again: twice as long.
    wait_state(aport, "app", dead, "up", timeout=3)
    second = fail_until_ejected()
    assert 1000 < second["ejected_until_ms"] <= 2000, second
    wait_state(aport, "app", dead, "up", timeout=4)
    third = fail_until_ejected()
    assert 2000 < third["ejected_until_ms"] <= 4000, third


def test_passive_ejection_on_5xx(sluice, backends):
    bs = backends(2)
    bs[0].status = 500
    port, aport = free_port(), free_port()
    passive = "passive: { max_fails: 3, eject_time: 5s }"
    sluice(make_config(aport, pool_yaml("app", [b.address for b in bs], passive), [("web", port, "app")]),
           wait_ports=[port, aport])
    statuses = collections.Counter(fresh_get(port)[0] for _ in range(6))
    # 5xx answers are passed on (not retried) and count as failures.
    assert statuses == {500: 3, 200: 3}, statuses
    assert state_of(aport, "app", bs[0].address)["state"] == "ejected"
    statuses = collections.Counter(fresh_get(port)[0] for _ in range(6))
    assert statuses == {200: 6}, statuses


def test_slow_start_ramps_effective_weight(sluice, backends):
    bs = backends(2)
    port, aport = free_port(), free_port()
    extra = ("slow_start: 3s\n"
             "health_check: { type: tcp, interval: 100ms, timeout: 100ms, rise: 1, fall: 1 }")
    sluice(make_config(aport, pool_yaml("app", [(bs[0].address, 100), (bs[1].address, 100)], extra),
                       [("web", port, "app")]), wait_ports=[port, aport])
    # A fresh start is not a recovery: full weight at once.
    assert state_of(aport, "app", bs[1].address)["effective_weight"] == 100

    bs[1].stop()
    wait_state(aport, "app", bs[1].address, "down", timeout=3)
    back = restart(bs[1])
    try:
        wait_state(aport, "app", bs[1].address, "slow-start", timeout=3, settle=False)
        samples = []
        deadline = time.time() + 6
        while time.time() < deadline:
            info = state_of(aport, "app", bs[1].address)
            samples.append((info["state"], info["effective_weight"]))
            if info["effective_weight"] == 100:
                break
            time.sleep(0.25)
        weights = [w for _, w in samples]
        assert samples[0][0] == "slow-start" and weights[0] < 50, samples
        assert weights == sorted(weights) and weights[-1] == 100, samples
        assert len(set(weights)) >= 4, samples   # a ramp, not a step
        assert state_of(aport, "app", bs[1].address)["state"] == "up"
    finally:
        back.stop()


def test_slow_start_traffic_share(sluice, backends):
    """During the ramp the recovering backend gets a small share."""
    bs = backends(2)
    port, aport = free_port(), free_port()
    extra = ("slow_start: 20s\n"
             "health_check: { type: tcp, interval: 100ms, timeout: 100ms, rise: 1, fall: 1 }")
    sluice(make_config(aport, pool_yaml("app", [(bs[0].address, 100), (bs[1].address, 100)], extra),
                       [("web", port, "app")]), wait_ports=[port, aport])
    bs[1].stop()
    wait_state(aport, "app", bs[1].address, "down", timeout=3)
    back = restart(bs[1])
    try:
        wait_state(aport, "app", bs[1].address, "slow-start", timeout=3)
        seen = collections.Counter(fresh_get(port)[1]["x-backend"] for _ in range(40))
        assert seen["b1"] >= 30, seen
    finally:
        back.stop()
