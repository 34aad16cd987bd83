"""`make demo` (scripts/demo.sh) runs to its end and shows what it says it
shows: round robin over three backends; HTTPS on :8443 with a CA and an
ECDSA and an RSA certificate made at demo time (curl -v, the spread over
HTTPS, X-Forwarded-Proto as the backend saw it, openssl s_client picking the
certificate, the access log's TLS fields); HTTP/2 over TLS (ALPN) and
h2c, and h2load's streams of one connection spread over the backends; then a backend failing without a
failed request. About 10 seconds."""
import os
import re
import socket
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO_PORTS = (8080, 8443, 9900, 9001, 9002, 9003)


def port_busy(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_demo_runs_and_shows_https():
    # The demo's ports are fixed (the README shows them); wait a bounded time
    # for anything else on this host to let go of them.
    deadline = time.time() + 30
    while any(port_busy(p) for p in DEMO_PORTS) and time.time() < deadline:
        time.sleep(0.5)
    env = dict(os.environ, SLUICE=os.path.join("build", "sluice-asan"), ASAN_OPTIONS="detect_leaks=1")
    p = subprocess.run(["bash", "scripts/demo.sh"], cwd=ROOT, capture_output=True, text=True, timeout=180, env=env)
    out = re.sub(r"\x1b\[[0-9;]*m", "", p.stdout)
    assert p.returncode == 0, out[-3000:] + p.stderr[-3000:]
    assert "demo done: everything it started is stopped" in out
    assert "Sanitizer" not in out + p.stderr and "runtime error" not in out + p.stderr

    def section(title):
        start = out.index("== " + title)
        end = out.find("\n== ", start + 1)
        return out[start:end if end > 0 else len(out)]

    def spread(title):
        text = section(title)
        counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^\s+(backend-\d)\s+(\d+) requests", text, re.M)}
        errors = int(re.search(r"^\s+errors\s+(\d+)$", text, re.M).group(1))
        return counts, errors

    assert spread("300 requests through 127.0.0.1:8080") == ({"backend-1": 100, "backend-2": 100, "backend-3": 100}, 0)

    # HTTPS: curl -v shows the handshake and the ECDSA certificate by default.
    curl = section("HTTPS: curl -v")
    assert re.search(r"SSL connection using TLSv1\.3 / TLS_\w+", curl), curl
    assert "ALPN: server accepted http/1.1" in curl, curl
    assert "subject: O=Sluice demo; OU=ECDSA P-256; CN=localhost" in curl, curl
    assert "SSL certificate verify ok." in curl and "< HTTP/1.1 200 OK" in curl, curl
    assert spread("300 requests through https://localhost:8443") == (
        {"backend-1": 100, "backend-2": 100, "backend-3": 100}, 0)

    seen = section("what the backend saw")
    via_https, via_http = seen.split("via http://127.0.0.1:8080:")
    assert "X-Forwarded-Proto: https" in via_https and "X-Forwarded-Proto: http\n" not in via_https, seen
    assert re.search(r"X-Forwarded-Proto: http$", via_http, re.M), seen

    ecdsa = section("openssl s_client -servername localhost")
    assert "OU = ECDSA P-256" in ecdsa and "Server public key is 256 bit" in ecdsa, ecdsa
    assert "Verify return code: 0 (ok)" in ecdsa, ecdsa
    for title in ("the same name for a client that only takes RSA signatures", "TLS 1.2 with an RSA cipher"):
        rsa = section(title)
        assert "OU = RSA 2048" in rsa and "Server public key is 2048 bit" in rsa, rsa
    assert "New, TLSv1.2, Cipher is ECDHE-RSA-AES128-GCM-SHA256" in section("TLS 1.2 with an RSA cipher")

    log = section("the HTTPS listener's access log")
    assert re.search(r'"GET /headers HTTP/1\.1" 200 \d+ "-" "curl/[^"]+" tls=TLSv1\.3 cipher=TLS_\w+ '
                     r'sni="localhost" resumed=no$', log, re.M), log

    # HTTP/2: ALPN h2 over TLS, h2c on the plain port, and h2load's 300
    # requests as 30 streams of one connection, spread over the backends.
    h2 = section("HTTP/2 over TLS")
    assert "ALPN: server accepted h2" in h2 and "< HTTP/2 200" in h2, h2
    assert "< HTTP/2 200" in section("h2c with prior knowledge"), out
    load = section("h2load")
    assert "Application protocol: h2" in load and "status codes: 300 2xx" in load, load
    streams = [int(n) for n in re.findall(r"^\s+127\.0\.0\.1:900\d\s+(\d+) of the streams", load, re.M)]
    assert sorted(streams) == [100, 100, 100], load

    # The failure part, unchanged: no failed request while backend-3 goes away.
    counts, errors = spread("300 more requests right away")
    assert errors == 0 and set(counts) == {"backend-1", "backend-2"}, (counts, errors)
    assert re.search(r"127\.0\.0\.1:9003\s+state=down", section("a moment later the active health check")), out
    assert spread("300 more requests: the two healthy backends") == ({"backend-1": 150, "backend-2": 150}, 0)
