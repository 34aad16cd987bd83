"""TLS from the proxy to its backends (a pool's `tls:` block, docs/tls.md
"TLS to backends"): verified against the pool's CA with the name it
sends as SNI, health checks speaking TLS as the traffic does, a
certificate the proxy would refuse making the backend DOWN with the
reason, and the block's files checked by `sluice check`.

Backends are HttpBackend with an ssl.SSLContext: real TLS servers
(Python's ssl module over OpenSSL)."""
import json
import ssl
import subprocess

import pytest

from conftest import SLUICE_BIN
from helpers import free_port, fresh_get, pool_backends, wait_for
from tls_certs import CertAuthority


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = CertAuthority(d / "ca")
    other = CertAuthority(d / "other", name="Other")
    return {
        "ca": ca,
        "other": other,
        "backend": ca.issue(["backend.test"]),
        "client": ca.issue(["sluice-proxy"], client=True),
    }


def server_context(leaf, client_ca=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(leaf.chain, leaf.key)
    if client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(client_ca)
    return ctx


def config(aport, port, backend, tls_block, check="http"):
    return (
        "admin: { listen: 127.0.0.1:%d }\n"
        "pools:\n"
        "  - name: secure\n"
        "    health_check: { type: %s, interval: 200ms, timeout: 200ms, rise: 1, fall: 1 }\n"
        "    backends: [%s]\n"
        "    tls:\n%s"
        "listeners:\n"
        "  - name: web\n"
        "    listen: 127.0.0.1:%d\n"
        "    pool: secure\n" % (aport, check, backend, tls_block, port))


def backend_state(aport, address):
    return pool_backends(aport, "secure")[address]


def settle(aport, address, state):
    ok = wait_for(lambda: backend_state(aport, address)["state"] == state
                  and backend_state(aport, address)["health"]["checks_ok"]
                  + backend_state(aport, address)["health"]["checks_failed"] >= 2, timeout=10)
    assert ok, backend_state(aport, address)
    return backend_state(aport, address)["health"]["last_check"]


@pytest.mark.parametrize("check", ["http", "tcp"])
def test_health_checks_speak_tls_and_verify(pki, sluice, backends, check):
    (b,) = backends(1, tls=server_context(pki["backend"]))
    aport, port = free_port(), free_port()
    block = "      ca: %s\n      sni: backend.test\n" % pki["ca"].cert
    sluice(config(aport, port, b.address, block, check=check), wait_ports=[port, aport])
    last = settle(aport, b.address, "up")
    assert last.startswith("ok: HTTP 200" if check == "http" else "ok: TLS handshake"), last
    if check == "http":
        assert b.requests and b.requests[-1]["tls"]["sni"] == "backend.test"
        assert b.requests[-1]["path"] == "/"


@pytest.mark.parametrize("block, reason", [
    ("      ca: {other}\n      sni: backend.test\n", "unable to get local issuer certificate"),
    ("      ca: {ca}\n      sni: wrong.test\n", "hostname mismatch"),
    ("      ca: {ca}\n", "IP address mismatch"),   # no name: the backend's IP must be in the certificate
])
def test_a_certificate_the_proxy_refuses_makes_the_backend_down(pki, sluice, backends, block, reason):
    (b,) = backends(1, tls=server_context(pki["backend"]))
    aport, port = free_port(), free_port()
    block = block.format(other=pki["other"].cert, ca=pki["ca"].cert)
    sluice(config(aport, port, b.address, block), wait_ports=[port, aport])
    last = settle(aport, b.address, "down")
    assert last == "failed: TLS handshake failed: %s" % reason, last
    assert b.count() == 0  # not one request reached it


def test_verify_false_accepts_any_certificate(pki, sluice, backends):
    (b,) = backends(1, tls=server_context(pki["backend"]))
    aport, port = free_port(), free_port()
    sluice(config(aport, port, b.address, "      verify: false\n"), wait_ports=[port, aport])
    assert settle(aport, b.address, "up").startswith("ok: HTTP 200")


def test_a_plain_backend_is_down_for_a_tls_pool(pki, sluice, backends):
    (b,) = backends(1)
    aport, port = free_port(), free_port()
    block = "      ca: %s\n      sni: backend.test\n" % pki["ca"].cert
    sluice(config(aport, port, b.address, block), wait_ports=[port, aport])
    last = settle(aport, b.address, "down")
    assert last.startswith("failed: TLS handshake failed") or last.startswith("failed: connection closed during"), last


def test_client_certificate_to_a_backend_that_requires_one(pki, sluice, backends):
    (b,) = backends(1, tls=server_context(pki["backend"], client_ca=pki["ca"].cert))
    aport, port = free_port(), free_port()
    block = "      ca: %s\n      sni: backend.test\n      cert: %s\n      key: %s\n" % (
        pki["ca"].cert, pki["client"].chain, pki["client"].key)
    sluice(config(aport, port, b.address, block), wait_ports=[port, aport])
    assert settle(aport, b.address, "up").startswith("ok: HTTP 200")


def run_check(tmp_path, text):
    p = tmp_path / "check.yaml"
    p.write_text(text)
    return subprocess.run([SLUICE_BIN, "check", "-c", str(p)], capture_output=True, text=True, timeout=30), p


def test_check_reports_each_problem_of_the_block(pki, tmp_path):
    def lines(block):
        r, p = run_check(tmp_path, config(free_port(), free_port(), "127.0.0.1:9", block))
        assert r.returncode == 1, r.stdout
        return [line.replace(str(p), "F") for line in r.stderr.splitlines()]

    # The tls: block starts on line 6; its first key is line 7.
    assert lines("      sni: backend.test\n") == [
        "F:7: pools[0].tls: \"ca\" is required to verify backends (or say \"verify: false\")", "F: 1 error"]
    assert lines("      verify: false\n      ca: %s\n" % pki["ca"].cert) == [
        "F:7: pools[0].tls.verify: \"ca\" is given but \"verify\" is false", "F: 1 error"]
    assert lines("      ca: %s\n      cert: %s\n" % (pki["ca"].cert, pki["client"].chain)) == [
        "F:7: pools[0].tls: \"cert\" and \"key\" go together", "F: 1 error"]
    assert lines("      ca: %s\n      sni: not_a name\n" % pki["ca"].cert) == [
        "F:8: pools[0].tls.sni: expected a DNS name, got \"not_a name\"", "F: 1 error"]
    out = lines("      ca: %s\n" % (tmp_path / "missing.pem"))
    assert out[0].startswith("F:7: pools[0].tls.ca: cannot load CA certificates from %s:" % (tmp_path / "missing.pem"))
    out = lines("      ca: %s\n      cert: %s\n      key: %s\n" % (pki["ca"].cert, pki["client"].chain,
                                                                    pki["backend"].key))
    assert out[0] == "F:9: pools[0].tls.key: %s is not the key of the certificate in %s" % (
        pki["backend"].key, pki["client"].chain), out
    out = lines("      ca: %s\n      ciphers: NOTHING-AT-ALL\n" % pki["ca"].cert)
    assert out[0] == "F:8: pools[0].tls.ciphers: no cipher matches \"NOTHING-AT-ALL\"", out


# ---------------------------------------------------------------- traffic

def traffic_config(aport, port, backends_, tls_block, keepalive=None, proto="http", extra_pool=""):
    return (
        "admin: { listen: 127.0.0.1:%d }\n"
        "pools:\n"
        "  - name: secure\n"
        "%s%s"
        "    backends: [%s]\n"
        "    tls:\n%s"
        "listeners:\n"
        "  - name: web\n"
        "    listen: 127.0.0.1:%d\n"
        "    protocol: %s\n"
        "    pool: secure\n" % (aport, "    keepalive: %d\n" % keepalive if keepalive is not None else "",
                                extra_pool, ", ".join(backends_), tls_block, port, proto))


def good_block(pki):
    return "      ca: %s\n      sni: backend.test\n" % pki["ca"].cert


def test_requests_reach_a_tls_backend_and_reuse_its_connection(pki, sluice, backends):
    (b,) = backends(1, tls=server_context(pki["backend"]))
    aport, port = free_port(), free_port()
    sluice(traffic_config(aport, port, [b.address], good_block(pki)), wait_ports=[port, aport])
    for i in range(10):
        status, _, body = fresh_get(port, "/t/%d" % i)
        assert status == 200 and body.startswith(b"b1 GET /t/%d" % i), body
    tls = [r["tls"] for r in b.requests]
    assert all(t and t["sni"] == "backend.test" and t["version"] == "TLSv1.3" for t in tls), tls
    # Ten requests, one TLS connection: pooled like a plain one.
    assert len(b.client_ports()) == 1, b.client_ports()


def test_new_connections_resume_the_backends_session(pki, sluice, backends):
    (b,) = backends(1, tls=server_context(pki["backend"]))
    aport, port = free_port(), free_port()
    # keepalive 0: every request opens a new connection to the backend.
    sluice(traffic_config(aport, port, [b.address], good_block(pki), keepalive=0), wait_ports=[port, aport])
    for i in range(6):
        assert fresh_get(port, "/r/%d" % i)[0] == 200
    resumed = [r["tls"]["resumed"] for r in b.requests]
    assert len(b.client_ports()) == 6
    assert resumed[0] is False and all(resumed[1:]), resumed


def test_session_reuse_off_makes_full_handshakes(pki, sluice, backends):
    (b,) = backends(1, tls=server_context(pki["backend"]))
    aport, port = free_port(), free_port()
    sluice(traffic_config(aport, port, [b.address], good_block(pki) + "      session_reuse: false\n", keepalive=0),
           wait_ports=[port, aport])
    for i in range(3):
        assert fresh_get(port, "/n/%d" % i)[0] == 200
    assert [r["tls"]["resumed"] for r in b.requests] == [False, False, False]


def test_a_backend_whose_certificate_fails_is_retried_elsewhere(pki, sluice, backends):
    bad_leaf = pki["ca"].issue(["elsewhere.test"])
    bad, good = backends(2, tls=None)
    bad.stop()
    bad.tls, good.tls = server_context(bad_leaf), server_context(pki["backend"])
    bad.start(), good.stop(), good.start()
    aport, port = free_port(), free_port()
    s = sluice(traffic_config(aport, port, [bad.address, good.address], good_block(pki),
                              extra_pool="    algorithm: round_robin\n"), wait_ports=[port, aport])
    for i in range(6):
        status, _, body = fresh_get(port, "/x/%d" % i)
        assert status == 200 and body.startswith(b"b2"), body
    assert bad.count() == 0
    bk = pool_backends(aport, "secure")[bad.address]
    assert bk["counters"]["connect_failures"] >= 1, bk


def test_only_a_refusing_backend_answers_502_with_the_reason(pki, tmp_path, sluice, backends):
    (b,) = backends(1, tls=server_context(pki["ca"].issue(["elsewhere.test"])))
    aport, port = free_port(), free_port()
    s = sluice(traffic_config(aport, port, [b.address], good_block(pki)) + "    access_log: %s\n    access_log_format: json\n"
               % (tmp_path / "a.log"), wait_ports=[port, aport])
    status, _, _ = fresh_get(port, "/")
    assert status == 502
    assert b.count() == 0
    log = tmp_path / "a.log"
    assert wait_for(lambda: log.exists() and log.read_text().strip())
    doc = json.loads(log.read_text().splitlines()[-1])
    assert doc["status"] == 502
    assert doc["reason"] == ("every backend tried failed; the last: "
                             "TLS handshake with the backend failed: hostname mismatch"), doc


def test_tcp_listener_relays_to_a_tls_backend(pki, sluice):
    import socket
    from stream_helpers import TcpBackend
    echo = TcpBackend("echo", tls=server_context(pki["backend"]))
    try:
        aport, port = free_port(), free_port()
        sluice(traffic_config(aport, port, [echo.addr], good_block(pki), proto="tcp"), wait_ports=[port, aport])
        data = bytes(range(256)) * 4096  # 1 MiB
        with socket.create_connection(("127.0.0.1", port), timeout=20) as c:
            c.sendall(data)
            c.shutdown(socket.SHUT_WR)
            got = b""
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                got += chunk
        assert got == data
    finally:
        echo.stop()
