"""Runtime changes through the admin API, with two workers: every worker must
apply a change within a second. Requests go over new connections, so
SO_REUSEPORT spreads them over both workers."""
import collections
import threading
import time

import pytest

from helpers import admin, admin_json, free_port, fresh_get, pool_backends, wait_for

APPLY_S = 1.0  # a change must be live in every worker within this


def make_config(port, aport, addresses, extra_pool=""):
    text = ("workers: 2\nadmin: { listen: 127.0.0.1:%d }\npools:\n  - name: app\n" % aport)
    if extra_pool:
        text += "    %s\n" % extra_pool
    text += "    backends:\n"
    text += "".join("      - %s\n" % a for a in addresses)
    text += "  - name: other\n    backends: [%s]\n" % addresses[0]
    text += "listeners:\n  - name: web\n    listen: 127.0.0.1:%d\n    pool: app\n" % port
    return text


@pytest.fixture
def env(sluice, backends):
    class Env:
        pass
    e = Env()
    e.bs = backends(3)
    e.port, e.aport = free_port(), free_port()
    e.s = sluice(make_config(e.port, e.aport, [b.address for b in e.bs]), wait_ports=[e.port, e.aport],
                 workers=2)
    e.addr = {b.name: b.address for b in e.bs}
    return e


def spread(port, n=60):
    seen = collections.Counter()
    for _ in range(n):
        status, headers, body = fresh_get(port)
        assert status == 200, (status, body)
        seen[headers["x-backend"]] += 1
    return seen


def backend_path(e, name, suffix=""):
    return "/api/pools/app/backends/%s%s" % (e.addr[name], suffix)


def test_list_pools_backends_state_counters(env):
    seen = spread(env.port, 30)
    assert set(seen) == {"b1", "b2", "b3"}
    st, pools = admin_json(env.aport, "GET", "/api/pools")
    assert st == 200
    assert [p["name"] for p in pools] == ["app", "other"]
    app = pools[0]
    assert app["algorithm"] == "round_robin"
    assert [b["address"] for b in app["backends"]] == [b.address for b in env.bs]
    total = 0
    for b in app["backends"]:
        assert b["state"] == "up" and b["admin"] == "enabled" and b["weight"] == 1
        assert b["effective_weight"] == 1
        total += b["counters"]["requests"]
        assert b["counters"]["responses"]["2xx"] == b["counters"]["requests"]
    assert total == 30
    # Single pool and single backend views; the backend by any spelling.
    st, one = admin_json(env.aport, "GET", "/api/pools/app")
    assert st == 200 and one["name"] == "app" and len(one["backends"]) == 3
    st, lst = admin_json(env.aport, "GET", "/api/pools/app/backends")
    assert st == 200 and len(lst) == 3
    st, b = admin_json(env.aport, "GET", backend_path(env, "b2"))
    assert st == 200 and b["address"] == env.addr["b2"]
    st, status = admin_json(env.aport, "GET", "/api/status")
    assert st == 200 and len(status["workers"]) == 2
    assert all(w["pid"] > 0 for w in status["workers"])


def test_patch_weight_applies_in_every_worker(env):
    st, b = admin_json(env.aport, "PATCH", backend_path(env, "b1"), {"weight": 4})
    assert st == 200 and b["weight"] == 4 and b["effective_weight"] == 4
    time.sleep(APPLY_S)
    seen = spread(env.port, 60)
    # 4:1:1 -> b1 gets two thirds; each worker runs its own exact cycle.
    assert 34 <= seen["b1"] <= 46 and seen["b2"] >= 5 and seen["b3"] >= 5, seen

    st, b = admin_json(env.aport, "PATCH", backend_path(env, "b1"), {"weight": 0})
    assert st == 200 and b["weight"] == 0 and b["effective_weight"] == 0
    time.sleep(APPLY_S)
    seen = spread(env.port, 40)
    assert seen["b1"] == 0, seen

    # PUT .../weight is the same thing.
    st, b = admin_json(env.aport, "PUT", backend_path(env, "b1", "/weight"), {"weight": 1})
    assert st == 200 and b["weight"] == 1
    time.sleep(APPLY_S)
    assert spread(env.port, 30)["b1"] >= 5


def test_disable_enable_in_every_worker(env):
    st, b = admin_json(env.aport, "POST", backend_path(env, "b2", "/disable"))
    assert st == 200 and b["admin"] == "disabled" and b["state"] == "disabled"
    time.sleep(APPLY_S)
    seen = spread(env.port, 60)
    assert seen["b2"] == 0 and seen["b1"] >= 20 and seen["b3"] >= 20, seen

    st, b = admin_json(env.aport, "PATCH", backend_path(env, "b2"), {"admin": "enabled"})
    assert st == 200 and b["admin"] == "enabled" and b["state"] == "up"
    time.sleep(APPLY_S)
    seen = spread(env.port, 60)
    assert seen["b2"] >= 15, seen

    # Disabling through PATCH, and enabling through POST .../enable.
    st, b = admin_json(env.aport, "PATCH", backend_path(env, "b3"), {"admin": "disabled", "weight": 2})
    assert st == 200 and b["admin"] == "disabled" and b["weight"] == 2
    time.sleep(APPLY_S)
    assert spread(env.port, 40)["b3"] == 0
    st, b = admin_json(env.aport, "POST", backend_path(env, "b3", "/enable"))
    assert st == 200 and b["state"] == "up" and b["effective_weight"] == 2
    time.sleep(APPLY_S)
    assert spread(env.port, 40)["b3"] >= 10


def test_drain_keeps_in_flight_request(env):
    # Only b1 takes traffic; hold a slow request on it.
    for name in ("b2", "b3"):
        assert admin_json(env.aport, "POST", backend_path(env, name, "/disable"))[0] == 200
    time.sleep(APPLY_S)
    env.bs[0].delay = 2.0
    result = []
    t = threading.Thread(target=lambda: result.append(fresh_get(env.port, "/slow", timeout=10)))
    t.start()
    assert wait_for(lambda: env.bs[0].count() >= 1, timeout=3)
    st, b = admin_json(env.aport, "POST", backend_path(env, "b1", "/drain"))
    assert st == 200 and b["admin"] == "draining" and b["state"] == "draining"
    assert b["counters"]["active"] == 1
    for name in ("b2", "b3"):
        assert admin_json(env.aport, "POST", backend_path(env, name, "/enable"))[0] == 200
    time.sleep(APPLY_S)
    env.bs[0].delay = 0
    t0 = time.time()
    seen = spread(env.port, 40)
    assert seen["b1"] == 0 and seen["b2"] + seen["b3"] == 40, seen
    t.join(10)
    assert result and result[0][0] == 200 and result[0][1]["x-backend"] == "b1", result
    assert time.time() - t0 < 3   # the new requests did not wait behind it
    info = pool_backends(env.aport, "app")[env.addr["b1"]]
    assert info["counters"]["active"] == 0 and info["admin"] == "draining"


def expect_error(resp, status):
    st, raw = resp
    assert st == status, (st, raw)
    import json
    doc = json.loads(raw)
    assert isinstance(doc, dict) and isinstance(doc.get("error"), str) and doc["error"], doc
    return doc["error"]


@pytest.mark.parametrize("body", [
    b"not json", b"{\"weight\": ", b"[1, 2]", b"{}", b"{\"weight\": -1}", b"{\"weight\": 1.5}",
    b"{\"weight\": \"3\"}", b"{\"weight\": 2000000}", b"{\"admin\": \"sleeping\"}", b"{\"admin\": 1}",
    b"{\"colour\": \"blue\"}", b"{\"weight\": 1, \"weight\": 2}", b"",
])
def test_bad_patch_bodies_are_400_and_change_nothing(env, body):
    path = backend_path(env, "b1")
    before = admin_json(env.aport, "GET", path)[1]
    expect_error(admin(env.aport, "PATCH", path, body), 400)
    after = admin_json(env.aport, "GET", path)[1]
    assert (after["weight"], after["admin"]) == (before["weight"], before["admin"])


def test_partly_bad_body_changes_nothing(env):
    path = backend_path(env, "b1")
    expect_error(admin(env.aport, "PATCH", path, {"weight": 5, "admin": "nope"}), 400)
    b = admin_json(env.aport, "GET", path)[1]
    assert b["weight"] == 1 and b["admin"] == "enabled"


def test_unknown_pool_or_backend_is_404(env):
    msg = expect_error(admin(env.aport, "GET", "/api/pools/nope"), 404)
    assert "nope" in msg
    expect_error(admin(env.aport, "PATCH", "/api/pools/nope/backends/%s" % env.addr["b1"], {"weight": 1}), 404)
    msg = expect_error(admin(env.aport, "PATCH", "/api/pools/app/backends/127.0.0.1:1", {"weight": 1}), 404)
    assert "127.0.0.1:1" in msg
    expect_error(admin(env.aport, "POST", "/api/pools/app/backends/10.9.9.9:80/drain"), 404)
    expect_error(admin(env.aport, "GET", "/api/pools/app/backends/not-an-address"), 404)
    expect_error(admin(env.aport, "GET", "/api/nothing"), 404)
    expect_error(admin(env.aport, "POST", "/api/pools/app/backends/%s/reboot" % env.addr["b1"]), 404)
    # Wrong method on a real path.
    expect_error(admin(env.aport, "PUT", backend_path(env, "b1")), 405)
    # A fixed pool's backends are not removed at run time (a dynamic pool's are).
    assert "max_backends" in expect_error(admin(env.aport, "DELETE", backend_path(env, "b1")), 409)
    expect_error(admin(env.aport, "GET", backend_path(env, "b1", "/drain")), 405)
    # Traffic was never disturbed.
    assert sum(spread(env.port, 9).values()) == 9


def test_change_in_one_pool_leaves_the_other(env):
    # "other" has b1 too; disabling it in "app" does not touch "other".
    assert admin_json(env.aport, "POST", backend_path(env, "b1", "/disable"))[0] == 200
    other = pool_backends(env.aport, "other")[env.addr["b1"]]
    assert other["admin"] == "enabled" and other["state"] == "up"
