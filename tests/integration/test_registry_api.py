"""sluice registry's HTTP API: register, deregister, enable, disable and
weight changes; the token; 400s that name the field; 404s; blocking
watches woken by a change or by their wait, many at once; services and
instances listed in the config file, and its reload."""
import json
import socket
import threading

import pytest

from metrics_doc import documented_families, families
from registry_node import reg, Registry, SVC, TOKEN, wait_until  # noqa: F401 (reg is a fixture)


def test_register_change_deregister(reg):
    r = reg()
    doc = r.ok("PUT", SVC + "/web/instances/web-1",
               {"address": "10.1.0.10", "port": 8080, "weight": 300, "datacenter": "dc1", "region": "r1",
                "labels": {"v": "2"}})
    assert doc["id"] == "web-1" and doc["index"] > 1
    inst = r.instance("web", "web-1")
    assert inst["address"] == "10.1.0.10" and inst["port"] == 8080 and inst["weight"] == 300
    assert inst["labels"] == {"v": "2"} and inst["ephemeral"] is False and inst["enabled"] is True
    # No id in the path ("-"): the address names it.
    assert r.ok("PUT", SVC + "/web/instances/-", {"address": "10.1.0.11", "port": 80})["id"] == "10.1.0.11:80"
    r.ok("PATCH", SVC + "/web/instances/web-1", {"weight": 7})
    assert r.instance("web", "web-1")["weight"] == 7
    r.ok("PATCH", SVC + "/web/instances/web-1", {"enabled": False})
    assert r.instance("web", "web-1")["enabled"] is False
    # A disabled instance is never answered.
    for _ in range(10):
        recs = r.ok("GET", SVC + "/web/answer?family=a")["records"]
        assert [x["id"] for x in recs] == ["10.1.0.11:80"]
    r.ok("PATCH", SVC + "/web/instances/web-1", {"enabled": True, "weight": 9})
    inst = r.instance("web", "web-1")
    assert inst["enabled"] is True and inst["weight"] == 9
    r.ok("DELETE", SVC + "/web/instances/web-1")
    assert r.instance("web", "web-1") is None
    status, doc = r.get(SVC + "/web/instances/web-1")
    assert status == 404 and "web-1" in doc["error"]
    # The service and its settings stay when its instances go; deleting it removes it.
    r.ok("DELETE", SVC + "/web/instances/10.1.0.11:80")
    assert r.service("web")["instances"] == []
    r.ok("DELETE", SVC + "/web")
    assert r.get(SVC + "/web")[0] == 404
    m = r.metrics()
    assert "sluice_registry_registrations_total 2" in m
    assert "sluice_registry_deregistrations_total 2" in m


def test_service_settings_roundtrip(reg):
    r = reg()
    r.ok("PUT", SVC + "/api", {"protect_threshold": 0.5, "dns_ttl": 30, "answer_count": 3,
                              "locality": {"min_healthy": 2, "min_healthy_ratio": 0.25},
                              "heartbeat": {"interval": "2s", "timeout": 6000, "expire_after": "1m"},
                              "health": {"type": "http", "path": "/ready", "interval": "3s", "timeout": "1s",
                                         "rise": 3, "fall": 4}})
    s = r.service("api")["settings"]
    assert s["protect_threshold"] == 0.5 and s["dns_ttl"] == 30 and s["answer_count"] == 3
    assert s["locality"] == {"min_healthy": 2, "min_healthy_ratio": 0.25}
    assert s["heartbeat"] == {"interval": "2s", "timeout": "6s", "expire_after": "1m"}
    assert s["health"]["type"] == "http" and s["health"]["path"] == "/ready" and s["health"]["fall"] == 4
    # What GET says can be PUT back as it is.
    r.ok("PUT", SVC + "/api", s)
    assert r.service("api")["settings"] == s


def test_token_required_for_writes(reg):
    r = reg()
    body = {"address": "10.0.0.1", "port": 80}
    for tok, hdrs in ((None, {}), ("wrong", {}), ("", {"Authorization": "Bearer nope"}),
                      ("", {"Authorization": "Basic " + TOKEN})):
        status, doc = r.call("PUT", SVC + "/web/instances/a", body, token=tok, headers=hdrs)
        assert status == 401 and "token" in doc["error"], (tok, hdrs, status, doc)
        status, doc = r.call("DELETE", SVC + "/web", token=tok, headers=hdrs)
        assert status == 401
        status, doc = r.call("POST", SVC + "/web/instances/a/heartbeat", token=tok, headers=hdrs)
        assert status == 401
    # Bearer works as well as X-Sluice-Token; reads need nothing.
    assert r.call("PUT", SVC + "/web/instances/a", body, token=None,
                  headers={"Authorization": "Bearer " + TOKEN})[0] == 200
    assert r.get(SVC, token=None)[0] == 200
    assert r.get(SVC + "/web", token=None)[0] == 200
    assert "sluice_registry_api_unauthorized_total 12" in r.metrics()


def test_no_token_means_open_writes(reg):
    r = reg(token=None)
    assert r.call("PUT", SVC + "/web/instances/a", {"address": "10.0.0.1", "port": 80}, token=None)[0] == 200


@pytest.mark.parametrize("path,body,field", [
    ("/web/instances/a", b"{not json", "not valid JSON"),
    ("/web/instances/a", b"", "empty"),
    ("/web/instances/a", b"[1,2]", "JSON object"),
    ("/web/instances/a", {"port": 80}, "address"),
    ("/web/instances/a", {"address": "10.0.0.1"}, "port"),
    ("/web/instances/a", {"address": "10.0.0.1:80", "port": 80}, "address"),
    ("/web/instances/a", {"address": "10.0.0.1", "port": 70000}, "port"),
    ("/web/instances/a", {"address": "10.0.0.1", "port": 80, "weight": 10001}, "weight"),
    ("/web/instances/a", {"address": "10.0.0.1", "port": 80, "wieght": 1}, "wieght"),
    ("/web/instances/a", {"address": "10.0.0.1", "port": 80, "enabled": "maybe"}, "enabled"),
    ("/web/instances/a", {"address": "10.0.0.1", "port": 80, "datacenter": "d c"}, "datacenter"),
    ("/web/instances/a", {"address": "10.0.0.1", "port": 80, "labels": {"k": [1]}}, "labels.k"),
    ("/web/instances/a", {"id": "b", "address": "10.0.0.1", "port": 80}, "id"),
    ("/bad_name/instances/a", {"address": "10.0.0.1", "port": 80}, "service name"),
    ("/web", {"protect_threshold": 2}, "protect_threshold"),
    ("/web", {"heartbeat": {"interval": "soon"}}, "heartbeat.interval"),
    ("/web", {"heartbeat": {"interval": "10s", "timeout": "1s"}}, "heartbeat_timeout"),
    ("/web", {"health": {"type": "icmp"}}, "health.type"),
    ("/web", {"answer_count": 0}, "answer_count"),
    ("/web", {"instances": []}, "instances"),
])
def test_bad_bodies_are_400_naming_the_field(reg, path, body, field):
    r = reg()
    status, doc = r.call("PUT", SVC + path, body)
    assert status == 400, doc
    assert field in doc["error"], doc
    assert r.proc.poll() is None


def test_bad_patch_and_queries_are_400(reg):
    r = reg()
    r.ok("PUT", SVC + "/web/instances/a", {"address": "10.0.0.1", "port": 80})
    for body, field in (({}, "weight, enabled"), ({"weight": -1}, "weight"), ({"address": "1.2.3.4"}, "address")):
        status, doc = r.call("PATCH", SVC + "/web/instances/a", body)
        assert status == 400 and field in doc["error"], doc
    for q, field in (("?index=x", "index"), ("?index=1&wait=forever", "wait"), ("?wait=1s", "wait")):
        status, doc = r.get(SVC + q)
        assert status == 400 and field in doc["error"], doc
    for q, field in (("?family=mx", "family"), ("?client=nowhere", "client")):
        status, doc = r.get(SVC + "/web/answer" + q)
        assert status == 400 and field in doc["error"], doc


def test_unknown_service_or_instance_is_404(reg):
    r = reg()
    r.ok("PUT", SVC + "/web/instances/a", {"address": "10.0.0.1", "port": 80})
    for method, path in (("GET", "/nope"), ("DELETE", "/nope"), ("GET", "/nope/answer"),
                         ("GET", "/web/instances/b"), ("DELETE", "/web/instances/b"),
                         ("POST", "/web/instances/b/heartbeat"), ("POST", "/nope/instances/a/heartbeat")):
        body = {"weight": 1} if method == "PATCH" else None
        status, doc = r.call(method, SVC + path, body)
        assert status == 404 and doc["error"], (method, path, status, doc)
    status, doc = r.call("PATCH", SVC + "/web/instances/b", {"weight": 1})
    assert status == 404
    status, doc = r.get("/api/registry/elsewhere")
    assert status == 404
    status, doc = r.call("POST", SVC + "/web")
    assert status == 405


def _blocking_get(r, path, out):
    try:
        out.append(r.get(path, timeout=60))
    except Exception as e:  # noqa: BLE001 - reported by the test
        out.append(("error", repr(e)))


def test_watch_woken_by_a_change_and_by_its_wait(reg):
    r = reg()
    r.ok("PUT", SVC + "/web/instances/a", {"address": "10.0.0.1", "port": 80})
    idx = r.service("web")["modify_index"]
    list_idx = r.get(SVC)[1]["index"]
    # Watch the service and the list; a change of another service wakes the list only.
    one, lst = [], []
    t1 = threading.Thread(target=_blocking_get, args=(r, SVC + "/web?index=%d&wait=60s" % idx, one))
    t2 = threading.Thread(target=_blocking_get, args=(r, SVC + "?index=%d&wait=60s" % list_idx, lst))
    t1.start()
    t2.start()
    wait_until(lambda: "sluice_registry_watchers 2" in r.metrics(), what="two watchers")
    r.ok("PUT", SVC + "/other/instances/x", {"address": "10.0.0.9", "port": 80})
    t2.join(30)
    assert lst and lst[0][0] == 200 and lst[0][1]["index"] > list_idx
    assert "other" in [s["name"] for s in lst[0][1]["services"]]
    assert not one, "the service's watcher woke for another service"
    r.ok("PATCH", SVC + "/web/instances/a", {"weight": 42})
    t1.join(30)
    assert one and one[0][0] == 200
    assert one[0][1]["modify_index"] > idx and one[0][1]["instances"][0]["weight"] == 42
    # An index already passed answers at once; a wait that ends answers with the same index.
    assert r.get(SVC + "/web?index=1&wait=60s")[0] == 200
    cur = r.service("web")["modify_index"]
    status, doc = r.get(SVC + "/web?index=%d&wait=300ms" % cur)
    assert status == 200 and doc["modify_index"] == cur
    m = r.metrics()
    assert "sluice_registry_watch_timeouts_total 1" in m
    assert "sluice_registry_watch_wakeups_total 2" in m
    # A watched service that is deleted answers its watcher 404.
    gone = []
    t3 = threading.Thread(target=_blocking_get, args=(r, SVC + "/other?index=%d&wait=60s" % r.service("other")
                                                      ["modify_index"], gone))
    t3.start()
    wait_until(lambda: "sluice_registry_watchers 1" in r.metrics(), what="a watcher")
    r.ok("DELETE", SVC + "/other")
    t3.join(30)
    assert gone and gone[0][0] == 404


def test_many_watchers_all_woken_by_one_change(reg):
    """More watchers than the admin server's default limit of 256 clients:
    all wait, one change answers every one of them."""
    r = reg()
    r.ok("PUT", SVC + "/web/instances/a", {"address": "10.0.0.1", "port": 80})
    idx = r.get(SVC)[1]["index"]
    n = 400
    socks = []
    req = ("GET %s?index=%d&wait=60s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % (SVC, idx)).encode()
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", r.port), timeout=30)
            s.sendall(req)
            socks.append(s)
        wait_until(lambda: "sluice_registry_watchers %d" % n in r.metrics(), what="%d watchers" % n)
        r.ok("PATCH", SVC + "/web/instances/a", {"weight": 5})
        indexes = set()
        for s in socks:
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            indexes.add(json.loads(body)["index"])
        assert len(indexes) == 1 and indexes.pop() > idx
    finally:
        for s in socks:
            s.close()
    assert "sluice_registry_watchers 0" in r.metrics()


def test_config_listed_services_and_reload(reg, tmp_path):
    services = ("    - name: web\n      dns_ttl: 7\n      instances:\n"
                "        - { id: w1, address: 10.1.0.10, port: 80, weight: 50, datacenter: dc1, region: r1 }\n"
                "        - { address: 10.1.0.11, port: 80 }\n")
    r = reg(services=services)
    svc = r.service("web")
    assert svc["settings"]["dns_ttl"] == 7
    assert sorted(i["id"] for i in svc["instances"]) == ["10.1.0.11:80", "w1"]
    assert all(i["ephemeral"] is False for i in svc["instances"])
    r.ok("PUT", SVC + "/web/instances/api-made", {"address": "10.1.0.12", "port": 80})
    # The new file drops one listed instance, changes another and the TTL:
    # the API's registration stays.
    r.write_config(services="    - name: web\n      dns_ttl: 9\n      instances:\n"
                            "        - { id: w1, address: 10.1.0.10, port: 80, weight: 60 }\n")
    r.reload()
    wait_until(lambda: r.service("web")["settings"]["dns_ttl"] == 9, what="the reload")
    svc = r.service("web")
    assert sorted(i["id"] for i in svc["instances"]) == ["api-made", "w1"]
    assert r.instance("web", "w1")["weight"] == 60
    # A bad file is refused and the running one stays.
    r.config_path.write_text(r.config_path.read_text().replace("dns_ttl: 9", "dns_ttl: nine"))
    r.reload()
    wait_until(lambda: "still running the previous configuration" in r.read_log(), what="the refusal")
    assert "registry.services[0].dns_ttl" in r.read_log()
    assert r.service("web")["settings"]["dns_ttl"] == 9


def test_metrics_are_documented_and_status_has_a_registry_part(reg):
    r = reg()
    r.ok("PUT", SVC + "/web/instances/a", {"address": "10.0.0.1", "port": 80})
    fams = {n: t for n, (t, _) in families(r.metrics()).items()
            if n.startswith("sluice_registry_") and not n.startswith("sluice_registry_dns_")}
    doc = documented_families()
    # The DNS server's families have their own check; the cluster's
    # (store: etcd only) are served by cluster nodes, test_registry_cluster.py.
    doc = {n: t for n, t in doc.items()
           if n.startswith("sluice_registry_") and not n.startswith("sluice_registry_dns_")
           and not n.startswith("sluice_registry_cluster_") and n != "sluice_registry_stale"}
    assert fams == doc, {"served, not documented": sorted(set(fams) - set(doc)),
                         "documented, not served": sorted(set(doc) - set(fams)),
                         "types": sorted(n for n in fams if n in doc and fams[n] != doc[n])}
    status, st = r.get("/api/status")
    reg_part = st["registry"]
    assert reg_part["node"] == "test1" and reg_part["store"] == "embedded" and reg_part["store_state"] == "ok"
    assert reg_part["services"] == 1 and reg_part["instances"] == 1 and reg_part["stale"] is False


def test_sluice_check_and_bad_files(tmp_path):
    import subprocess
    from registry_node import SLUICE_BIN, config_text
    good = tmp_path / "good.yaml"
    good.write_text(config_text(9950, str(tmp_path / "d"), services=(
        "    - name: web\n      instances:\n        - { address: 10.0.0.1, port: 80 }\n"
        "        - { address: 10.0.0.2, port: 80 }\n")))
    out = subprocess.run([SLUICE_BIN, "check", "-c", str(good)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "registry node test1: 1 service, 2 instances listed, embedded store" in out.stdout
    assert "listener" not in out.stdout, out.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(config_text(9950, str(tmp_path / "d"), extra="  api: { max_wait: forever }\n"))
    out = subprocess.run([SLUICE_BIN, "check", "-c", str(bad)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert "bad.yaml:" in out.stderr and "registry.api" in out.stderr
    # The daemon refuses it the same way, and a file without a registry: section.
    out = subprocess.run([SLUICE_BIN, "registry", "-c", str(bad)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and "registry.api" in out.stderr
    none = tmp_path / "none.yaml"
    none.write_text("admin:\n  listen: 127.0.0.1:9950\n")
    out = subprocess.run([SLUICE_BIN, "registry", "-c", str(none)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and "no registry: section" in out.stderr


def test_store_in_use_is_refused(reg, tmp_path):
    """A second node on the same data_dir is refused with a reason."""
    r = reg()
    other = Registry(tmp_path, name="second")
    other.data_dir = r.data_dir
    other.write_config()
    with pytest.raises(RuntimeError):
        other.start()
    other.stop()
    assert "in use" in other.read_log() or "lock" in other.read_log(), other.read_log()


def test_token_change_applies_at_reload(reg):
    r = reg()
    r.ok("PUT", SVC + "/web/instances/a", {"address": "10.0.0.1", "port": 80})
    r.token = "n3w-token"
    r.write_config()
    r.reload()
    wait_until(lambda: r.call("PUT", SVC + "/web/instances/a", {"address": "10.0.0.1", "port": 80},
                              token=TOKEN)[0] == 401, what="the old token refused")
    assert r.call("PUT", SVC + "/web/instances/a", {"address": "10.0.0.1", "port": 80})[0] == 200


def test_instances_that_left_the_config_while_stopped_are_deregistered(reg):
    services = ("    - name: web\n      instances:\n"
                "        - { id: w1, address: 10.1.0.10, port: 80 }\n"
                "        - { id: w2, address: 10.1.0.11, port: 80 }\n"
                "        - { id: w3, address: 10.1.0.12, port: 80 }\n")
    r = reg(services=services)
    assert all(i["owner"] == "config" for i in r.service("web")["instances"])
    # w3 registered again through the API: no longer the file's.
    r.ok("PUT", SVC + "/web/instances/w3", {"address": "10.1.0.12", "port": 80})
    assert r.instance("web", "w3")["owner"] == ""
    r.stop()
    r.write_config(services="    - name: web\n      instances:\n        - { id: w1, address: 10.1.0.10, port: 80 }\n")
    r.start()
    assert sorted(i["id"] for i in r.service("web")["instances"]) == ["w1", "w3"]
    assert "instance w2 of service web left the config" in r.read_log()
    r.stop()
    r.start()
    assert sorted(i["id"] for i in r.service("web")["instances"]) == ["w1", "w3"]


def test_watchers_past_max_watchers_are_503(tmp_path):
    r = Registry(tmp_path)
    r.config_path.write_text(r.config_path.read_text().replace("max_watchers: 2000", "max_watchers: 2"))
    r.start()
    try:
        idx = r.get(SVC)[1]["index"]
        waiting = []
        threads = [threading.Thread(target=_blocking_get, args=(r, SVC + "?index=%d&wait=60s" % idx, waiting))
                   for _ in range(2)]
        for t in threads:
            t.start()
        wait_until(lambda: "sluice_registry_watchers 2" in r.metrics(), what="two watchers")
        status, doc = r.get(SVC + "?index=%d&wait=60s" % idx)
        assert status == 503 and "max_watchers" in doc["error"], doc
        assert "sluice_registry_watch_refused_total 1" in r.metrics()
        # Reads that do not wait are still served.
        assert r.get(SVC)[0] == 200
        r.ok("PUT", SVC + "/web/instances/a", {"address": "10.0.0.1", "port": 80})
        for t in threads:
            t.join(30)
        assert [w[0] for w in waiting] == [200, 200]
    finally:
        r.stop()
        r.assert_clean()
