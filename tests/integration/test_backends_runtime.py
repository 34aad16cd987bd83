"""Backends by name and at run time (docs/configuration.md, "Backends by
name and at run time"; docs/admin-api.md): names resolved from the
master's event loop and followed by their TTL, backends added and removed
through the API and `sluice backend`, the admin token and read-only mode.

The names are served by dns_stub.DnsStub, whose records and failures the
test changes while the proxy runs; backends of one name share a port on
different loopback addresses (127.0.0.2, 127.0.0.3, ...).
"""
import json
import os
import subprocess
import threading

import pytest

from conftest import SLUICE_BIN
from dns_stub import DnsStub
from helpers import admin, admin_json, echo, echo_stream, free_port, fresh_get, metric, pool_backends, wait_for


@pytest.fixture
def dns():
    d = DnsStub().start()
    yield d
    d.stop()


def name_config(aport, port, dns, backend_port, extra_pool="", admin_extra=""):
    return ("admin:\n  listen: 127.0.0.1:%d\n%s"
            "pools:\n"
            "  - name: app\n"
            "    resolve: { resolvers: [%s], min_ttl: 1s, max_ttl: 1m, timeout: 500ms }\n"
            "    backends: [app.test:%d]\n%s"
            "listeners:\n"
            "  - name: web\n"
            "    listen: 127.0.0.1:%d\n"
            "    pool: app\n" % (aport, admin_extra, dns.address, backend_port, extra_pool, port))


def dyn_config(aport, port, backends, admin_extra="", pool_extra="    max_backends: 4\n"):
    return ("admin:\n  listen: 127.0.0.1:%d\n%s"
            "pools:\n"
            "  - name: app\n%s"
            "    backends: [%s]\n"
            "listeners:\n"
            "  - name: web\n"
            "    listen: 127.0.0.1:%d\n"
            "    pool: app\n" % (aport, admin_extra, pool_extra, ", ".join(backends), port))


def live(aport):
    """Addresses of pool app that take traffic (state other than removed)."""
    return {a for a, b in pool_backends(aport, "app").items() if b["state"] != "removed"}


def hits(port, n=12):
    return [fresh_get(port, "/")[2].split(b" ")[0].decode() for _ in range(n)]


def serves(port, names, n=12):
    """Traffic reaches exactly these backends: workers take a change the
    master made within their 100 ms tick, so this waits (bounded)."""
    return wait_for(lambda: set(hits(port, n)) == set(names))


def cli(*args, check=True):
    r = subprocess.run([SLUICE_BIN] + list(args), capture_output=True, text=True, timeout=20)
    if check:
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return r


# ---------------------------------------------------------------- names

def test_a_name_is_resolved_at_start_and_followed_by_its_ttl(sluice, backends, dns):
    (b2,) = backends(1, host="127.0.0.2")
    (b3,) = backends(1, host="127.0.0.3", port=b2.port)
    dns.set("app.test", ["127.0.0.2"], ttl=1)
    aport, port = free_port(), free_port()
    s = sluice(name_config(aport, port, dns, b2.port), wait_ports=[port, aport])
    assert wait_for(lambda: live(aport) == {b2.address}), pool_backends(aport, "app")
    assert serves(port, {"b1"}, 4)
    kept = b2.client_ports()   # the proxy's keep-alive connection(s) to 127.0.0.2
    # The name now has two addresses: both become backends, without a reload.
    dns.set("app.test", ["127.0.0.2", "127.0.0.3"], ttl=1)
    assert wait_for(lambda: live(aport) == {b2.address, b3.address}), pool_backends(aport, "app")
    assert serves(port, {"b1", "b2"})
    # The address that stayed kept its slot and its connections.
    assert b2.client_ports() == kept
    # 127.0.0.2 leaves: it drains and goes; 127.0.0.3 keeps its slot.
    dns.set("app.test", ["127.0.0.3"], ttl=1)
    assert wait_for(lambda: live(aport) == {b3.address})
    assert serves(port, {"b2"})
    assert wait_for(lambda: set(pool_backends(aport, "app")) == {b3.address})
    status, doc = admin_json(aport, "GET", "/api/status")
    (name,) = doc["backend_names"]
    assert name["pool"] == "app" and name["name"] == "app.test" and name["addresses"] == ["127.0.0.3"]
    assert name["ttl_ms"] == 1000 and name["resolutions_ok"] >= 3
    assert metric(aport, "sluice_backend_name_addresses", pool="app", host="app.test") == 1
    assert s.proc.poll() is None


def test_each_address_of_a_name_gets_the_entrys_weight_and_port(sluice, backends, dns):
    (b2,) = backends(1, host="127.0.0.2")
    (b3,) = backends(1, host="127.0.0.3", port=b2.port)
    (b4,) = backends(1)
    dns.set("app.test", ["127.0.0.2", "127.0.0.3"], ttl=60)
    aport, port = free_port(), free_port()
    text = name_config(aport, port, dns, b2.port).replace(
        "    backends: [app.test:%d]\n" % b2.port,
        "    backends:\n      - address: app.test:%d\n        weight: 3\n      - %s\n" % (b2.port, b4.address))
    sluice(text, wait_ports=[port, aport])
    assert wait_for(lambda: live(aport) == {b2.address, b3.address, b4.address})
    weights = {a: b["weight"] for a, b in pool_backends(aport, "app").items()}
    assert weights == {b2.address: 3, b3.address: 3, b4.address: 1}
    assert serves(port, {"b1", "b2", "b3"}, 14)


def test_the_ttl_is_bounded_by_min_ttl(sluice, backends, dns):
    (b2,) = backends(1, host="127.0.0.2")
    dns.set("app.test", ["127.0.0.2"], ttl=0)
    aport, port = free_port(), free_port()
    sluice(name_config(aport, port, dns, b2.port), wait_ports=[port, aport])
    assert wait_for(lambda: live(aport) == {b2.address})
    _, doc = admin_json(aport, "GET", "/api/status")
    assert doc["backend_names"][0]["ttl_ms"] == 1000  # min_ttl, not 0


@pytest.mark.parametrize("failure", ["servfail", "nxdomain", "drop"])
def test_a_failed_resolution_keeps_the_last_addresses(sluice, backends, dns, failure):
    (b2,) = backends(1, host="127.0.0.2")
    (b3,) = backends(1, host="127.0.0.3", port=b2.port)
    dns.set("app.test", ["127.0.0.2", "127.0.0.3"], ttl=1)
    aport, port = free_port(), free_port()
    s = sluice(name_config(aport, port, dns, b2.port), wait_ports=[port, aport])
    assert wait_for(lambda: live(aport) == {b2.address, b3.address})
    dns.mode = failure
    assert wait_for(lambda: metric(aport, "sluice_backend_name_resolutions_total", pool="app", host="app.test",
                                   result="failed") >= 2, timeout=15)
    assert live(aport) == {b2.address, b3.address}
    assert serves(port, {"b1", "b2"})
    _, doc = admin_json(aport, "GET", "/api/status")
    assert doc["backend_names"][0]["failing"] is True and doc["backend_names"][0]["last_error"]
    assert "app.test: resolution failed" in s.read_log()
    # Back to normal: the new answer applies.
    dns.mode = "ok"
    dns.set("app.test", ["127.0.0.3"], ttl=1)
    assert wait_for(lambda: live(aport) == {b3.address}, timeout=15)
    assert "resolves again" in s.read_log()


def test_a_name_that_never_resolved_leaves_the_pool_empty_until_it_does(sluice, backends, dns):
    (b2,) = backends(1, host="127.0.0.2")
    dns.mode = "servfail"
    aport, port = free_port(), free_port()
    sluice(name_config(aport, port, dns, b2.port), wait_ports=[port, aport])
    assert wait_for(lambda: metric(aport, "sluice_backend_name_resolutions_total", pool="app", host="app.test",
                                   result="failed") >= 1)
    assert fresh_get(port, "/")[0] == 503
    dns.set("app.test", ["127.0.0.2"], ttl=1)
    dns.mode = "ok"
    assert wait_for(lambda: fresh_get(port, "/")[0] == 200, timeout=15)


def test_names_and_their_addresses_survive_a_reload(sluice, backends, dns):
    (b2,) = backends(1, host="127.0.0.2")
    dns.set("app.test", ["127.0.0.2"], ttl=60)
    aport, port = free_port(), free_port()
    s = sluice(name_config(aport, port, dns, b2.port), wait_ports=[port, aport])
    assert wait_for(lambda: live(aport) == {b2.address})
    dns.mode = "drop"   # the reloaded configuration must not need to ask again
    status, doc = admin_json(aport, "POST", "/api/reload")
    assert status == 200, doc
    assert live(aport) == {b2.address}
    assert fresh_get(port, "/")[0] == 200
    assert s.proc.poll() is None


def test_name_config_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("pools:\n  - name: app\n    max_backends: 1\n    backends: [a.test:80, 10.0.0.1:80]\n"
                   "  - name: b\n    backends: [bad_na^me.test:80]\n"
                   "  - name: c\n    resolve: { min_ttl: 1m, max_ttl: 1s }\n    backends: [c.test:0]\n"
                   "listeners:\n  - name: web\n    listen: 127.0.0.1:1\n    pool: app\n")
    r = cli("check", "-c", str(bad), check=False)
    assert r.returncode != 0
    err = r.stderr
    assert "%s:2: pools[0].max_backends: 2 backends are listed, more than max_backends (1)" % bad in err, err
    assert "pools[1].backends[0].address: \"bad_na^me.test\" is neither an IP address nor a host name" in err, err
    assert "pools[2].resolve.min_ttl: min_ttl is above max_ttl" in err, err
    assert "pools[2].backends[0].address: port must be a number from 1 to 65535 for a backend" in err, err


# ---------------------------------------------------------------- the API

def test_backends_added_and_removed_with_curl(sluice, backends):
    b1, b2 = backends(2)
    aport, port = free_port(), free_port()
    sluice(dyn_config(aport, port, [b1.address]), wait_ports=[port, aport])
    assert serves(port, {"b1"}, 4)
    out = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", "-X", "POST", "--data",
                          json.dumps({"address": b2.address, "weight": 3}),
                          "http://127.0.0.1:%d/api/pools/app/backends" % aport],
                         capture_output=True, text=True, timeout=10).stdout
    body, code = out.rsplit("\n", 1)
    assert code == "201", out
    doc = json.loads(body)
    assert doc["address"] == b2.address and doc["weight"] == 3 and doc["state"] == "up"
    assert serves(port, {"b1", "b2"})
    out = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", "-X", "DELETE",
                          "http://127.0.0.1:%d/api/pools/app/backends/%s" % (aport, b1.address)],
                         capture_output=True, text=True, timeout=10).stdout
    body, code = out.rsplit("\n", 1)
    assert code == "200", out
    assert json.loads(body)["state"] == "removed"
    assert serves(port, {"b2"}, 6)
    assert wait_for(lambda: set(pool_backends(aport, "app")) == {b2.address})


def test_a_removed_backend_drains_its_requests_in_flight(sluice, backends):
    (slow,) = backends(1, delay=1.5)
    (fast,) = backends(1)
    aport, port = free_port(), free_port()
    sluice(dyn_config(aport, port, [slow.address]), wait_ports=[port, aport])
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", fresh_get(port, "/slow", timeout=10)))
    t.start()
    assert wait_for(lambda: slow.count() == 1)
    assert admin_json(aport, "POST", "/api/pools/app/backends", {"address": fast.address})[0] == 201
    status, doc = admin_json(aport, "DELETE", "/api/pools/app/backends/" + slow.address)
    assert status == 200 and doc["state"] == "removed", doc
    assert serves(port, {"b2"}, 4)           # new requests: the remaining backend only
    t.join(timeout=10)
    assert result["r"][0] == 200 and result["r"][2].startswith(b"b1")   # the one in flight finished


def test_backends_added_and_removed_with_the_cli(sluice, backends):
    b1, b2 = backends(2)
    aport, port = free_port(), free_port()
    s = sluice(dyn_config(aport, port, [b1.address]), wait_ports=[port, aport])
    r = cli("backend", "-c", str(s.config_path), "app", b2.address, "add", "2")
    assert r.stdout == "%s added to pool app: state up, weight 2\n" % b2.address
    r = cli("pools", "-c", str(s.config_path), "app")
    assert b2.address in r.stdout and b1.address in r.stdout
    r = cli("backend", "-c", str(s.config_path), "app", b1.address, "remove")
    assert r.stdout == "%s removed from pool app: it drains (requests in flight finish)\n" % b1.address
    assert serves(port, {"b2"}, 6)
    r = cli("backend", "-c", str(s.config_path), "app", b1.address, "remove", check=False)
    assert r.returncode == 1 and ("not a backend of pool" in r.stderr or "has no backend" in r.stderr), r.stderr


def test_api_refusals(sluice, backends):
    b1, b2, b3 = backends(3)
    aport, port = free_port(), free_port()
    text = dyn_config(aport, port, [b1.address], pool_extra="    max_backends: 2\n")
    text = text.replace("listeners:\n", "  - name: fixed\n    backends: [%s]\nlisteners:\n" % b1.address)
    sluice(text, wait_ports=[port, aport])
    post = lambda pool, body: admin_json(aport, "POST", "/api/pools/%s/backends" % pool, body)
    status, doc = post("fixed", {"address": b2.address})
    assert status == 409 and "fixed list" in doc["error"] and "max_backends" in doc["error"], doc
    assert post("app", {"address": b1.address}) [0] == 409          # a backend already
    assert post("app", {"address": "app.test:80"})[0] == 400       # names go in the file
    assert post("app", {"address": b2.address, "bogus": 1})[0] == 400
    assert post("app", {"address": b2.address, "weight": -1})[0] == 400
    assert post("app", {"weight": 1})[0] == 400
    assert admin(aport, "POST", "/api/pools/app/backends", b"{nope")[0] == 400
    assert post("nope", {"address": b2.address})[0] == 404
    assert post("app", {"address": b2.address})[0] == 201
    status, doc = post("app", {"address": b3.address})
    assert status == 409 and "full" in doc["error"], doc
    assert admin(aport, "DELETE", "/api/pools/app/backends/127.0.0.1:1")[0] == 404
    assert admin(aport, "DELETE", "/api/pools/fixed/backends/" + b1.address)[0] == 409


def test_runtime_changes_survive_a_reload_unless_the_pool_changed(sluice, backends):
    b1, b2, b3 = backends(3)
    aport, port = free_port(), free_port()
    s = sluice(dyn_config(aport, port, [b1.address]), wait_ports=[port, aport])
    assert admin_json(aport, "POST", "/api/pools/app/backends", {"address": b2.address})[0] == 201
    assert admin_json(aport, "POST", "/api/reload")[0] == 200
    assert live(aport) == {b1.address, b2.address}
    # The file changes the pool: the API's additions are dropped, with a warning.
    s.config_path.write_text(dyn_config(aport, port, [b1.address, b3.address]))
    assert admin_json(aport, "POST", "/api/reload")[0] == 200
    assert wait_for(lambda: live(aport) == {b1.address, b3.address})
    assert "its backends changed in the file" in s.read_log()


# ---------------------------------------------------------------- token, read-only

def token_file(tmp_path, token="s3cret-t0ken"):
    p = tmp_path / "admin.token"
    p.write_text(token + "\n")
    os.chmod(p, 0o600)
    return p


def test_the_token_guards_changes(sluice, backends, tmp_path):
    b1, b2 = backends(2)
    aport, port = free_port(), free_port()
    tf = token_file(tmp_path)
    s = sluice(dyn_config(aport, port, [b1.address], admin_extra="  token_file: %s\n" % tf),
               wait_ports=[port, aport])
    url = "http://127.0.0.1:%d/api/pools/app/backends" % aport
    body = json.dumps({"address": b2.address})

    def curl(*extra):
        out = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", "-X", "POST", "--data", body] + list(extra)
                             + [url], capture_output=True, text=True, timeout=10).stdout
        text, code = out.rsplit("\n", 1)
        return int(code), json.loads(text)

    code, doc = curl()
    assert code == 401 and "token" in doc["error"], doc
    assert curl("-H", "Authorization: Bearer wrong")[0] == 401
    assert curl("-H", "Authorization: Bearer s3cret-t0ke")[0] == 401
    assert admin(aport, "POST", "/api/reload")[0] == 401
    assert admin(aport, "GET", "/api/pools")[0] == 200          # reads stay open
    assert admin(aport, "GET", "/metrics")[0] == 200
    code, doc = curl("-H", "Authorization: Bearer s3cret-t0ken")
    assert code == 201, doc
    # The CLI sends the token named by the file's admin.token_file ...
    r = cli("backend", "-c", str(s.config_path), "app", b2.address, "weight", "5")
    assert "weight 5" in r.stdout
    # ... or given with --token-file; without either it is refused.
    r = cli("backend", "--admin", "127.0.0.1:%d" % aport, "app", b2.address, "drain", check=False)
    assert r.returncode == 1 and "401" in r.stderr, r.stderr
    r = cli("backend", "--admin", "127.0.0.1:%d" % aport, "--token-file", str(tf), "app", b2.address, "drain")
    assert "state draining" in r.stdout
    # The registry's header carries it as well.
    path = "/api/pools/app/backends/%s/enable" % b2.address
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H",
                          "X-Sluice-Token: s3cret-t0ken", "http://127.0.0.1:%d%s" % (aport, path)],
                         capture_output=True, text=True, timeout=10).stdout
    assert out == "200"
    # A new token in the file applies at the reload.
    tf.write_text("n3w-t0ken\n")
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H",
                          "Authorization: Bearer s3cret-t0ken", "http://127.0.0.1:%d/api/reload" % aport],
                         capture_output=True, text=True, timeout=10).stdout
    assert out == "200"
    code, _ = curl("-H", "Authorization: Bearer s3cret-t0ken")
    assert code == 401
    r = cli("backend", "-c", str(s.config_path), "app", b2.address, "enable")
    assert "state up" in r.stdout


def test_token_reads(sluice, backends, tmp_path):
    (b1,) = backends(1)
    aport, port = free_port(), free_port()
    tf = token_file(tmp_path)
    s = sluice(dyn_config(aport, port, [b1.address], admin_extra="  token_file: %s\n  token_reads: true\n" % tf),
               wait_ports=[port, aport])
    assert admin(aport, "GET", "/api/pools")[0] == 401
    assert admin(aport, "GET", "/metrics")[0] == 401
    r = cli("pools", "-c", str(s.config_path))
    assert b1.address in r.stdout


def test_read_only_refuses_every_change(sluice, backends, tmp_path):
    b1, b2 = backends(2)
    aport, port = free_port(), free_port()
    tf = token_file(tmp_path)
    s = sluice(dyn_config(aport, port, [b1.address], admin_extra="  token_file: %s\n  read_only: true\n" % tf),
               wait_ports=[port, aport])
    for method, path, body in [("POST", "/api/pools/app/backends", {"address": b2.address}),
                               ("DELETE", "/api/pools/app/backends/" + b1.address, None),
                               ("PATCH", "/api/pools/app/backends/" + b1.address, {"weight": 2}),
                               ("POST", "/api/reload", None)]:
        out = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", "-X", method, "-H",
                              "Authorization: Bearer s3cret-t0ken"]
                             + (["--data", json.dumps(body)] if body else [])
                             + ["http://127.0.0.1:%d%s" % (aport, path)],
                             capture_output=True, text=True, timeout=10).stdout
        text, code = out.rsplit("\n", 1)
        assert code == "403", (method, path, out)
        assert "read-only" in json.loads(text)["error"]
    assert admin(aport, "GET", "/api/pools/app")[0] == 200
    assert live(aport) == {b1.address}
    r = cli("backend", "-c", str(s.config_path), "app", b1.address, "drain", check=False)
    assert r.returncode == 1 and "read-only" in r.stderr


def test_admin_beyond_loopback_needs_a_token(tmp_path):
    aport = free_port()
    conf = tmp_path / "s.yaml"
    base = ("admin:\n  listen: 0.0.0.0:%d\n%%s"
            "pools:\n  - name: app\n    backends: [127.0.0.1:1]\n"
            "listeners:\n  - name: web\n    listen: 127.0.0.1:%d\n    pool: app\n" % (aport, free_port()))
    conf.write_text(base % "")
    r = cli("check", "-c", str(conf), check=False)
    assert r.returncode != 0
    assert ("%s:2: admin.listen: 0.0.0.0:%d is reachable from other hosts: set admin.token_file" % (conf, aport)
            in r.stderr), r.stderr
    r = subprocess.run([SLUICE_BIN, "proxy", "-c", str(conf)], capture_output=True, text=True, timeout=20)
    assert r.returncode != 0 and "admin.listen" in r.stderr + r.stdout
    conf.write_text(base % ("  token_file: %s\n" % token_file(tmp_path)))
    cli("check", "-c", str(conf))
    missing = tmp_path / "missing.token"
    conf.write_text(base % ("  token_file: %s\n" % missing))
    r = cli("check", "-c", str(conf), check=False)
    assert r.returncode != 0 and "admin.token_file" in r.stderr and str(missing) in r.stderr, r.stderr


# ---------------------------------------------------------------- TCP

def test_a_tcp_pool_changed_at_run_time_keeps_its_open_streams(sluice):
    from stream_helpers import TcpBackend
    e1, e2 = TcpBackend("echo"), TcpBackend("echo")
    try:
        aport, port = free_port(), free_port()
        text = dyn_config(aport, port, [e1.addr]).replace("    pool: app\n", "    protocol: tcp\n    pool: app\n")
        sluice(text, wait_ports=[port, aport])

        long = echo_stream(port)
        assert echo(long, b"hello\n") == b"hello\n"
        assert admin_json(aport, "POST", "/api/pools/app/backends", {"address": e2.addr})[0] == 201
        assert admin_json(aport, "DELETE", "/api/pools/app/backends/" + e1.addr)[0] == 200

        def new_streams_go_to_e2(n=4):
            c1, c2 = e1.count(), e2.count()
            for i in range(n):
                s = echo_stream(port)
                assert echo(s, b"n%d" % i) == b"n%d" % i
                s.close()
            return e1.count() == c1 and e2.count() == c2 + n
        assert wait_for(new_streams_go_to_e2)
        assert echo(long, b"still here\n") == b"still here\n"   # e1's stream drains, not cut
        assert pool_backends(aport, "app")[e1.addr]["state"] == "removed"
        long.close()
        assert wait_for(lambda: e1.addr not in pool_backends(aport, "app"))
    finally:
        e1.stop()
        e2.stop()


def test_every_daemon_takes_the_admin_token_the_registry_too(tmp_path):
    from registry_node import Registry, SVC
    tf = token_file(tmp_path, "adm1n-t0ken")
    r = Registry(tmp_path, token=None)
    listen = "admin:\n  listen: 127.0.0.1:%d\n" % r.port
    r.config_path.write_text(r.config_path.read_text().replace(listen, listen + "  token_file: %s\n" % tf))
    r.start()
    try:
        body = {"address": "10.0.0.1", "port": 80}
        status, doc = r.call("PUT", SVC + "/web/instances/a", body, token=None)
        assert status == 401 and "admin.token_file" in doc["error"], doc
        assert r.call("PUT", SVC + "/web/instances/a", body, token="adm1n-t0ken")[0] == 200   # X-Sluice-Token
        assert r.call("PUT", SVC + "/web/instances/b", body, token=None,
                      headers={"Authorization": "Bearer adm1n-t0ken"})[0] == 200
        assert r.get(SVC + "/web", token=None)[0] == 200
    finally:
        r.stop()
        r.assert_clean()
