"""TLS from the proxy to its backends (a pool's `tls:` block, docs/tls.md
"TLS to backends"): verified against the pool's CA with the name it
sends as SNI, health checks speaking TLS as the traffic does, a
certificate the proxy would refuse making the backend DOWN with the
reason, and the block's files checked by `sluice check`.

Backends are HttpBackend with an ssl.SSLContext: real TLS servers
(Python's ssl module over OpenSSL)."""
import ssl
import subprocess

import pytest

from conftest import SLUICE_BIN
from helpers import free_port, pool_backends, wait_for
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
