"""The proxy's `openssl:` block (docs/tls.md, "Hardware offload"): OpenSSL
providers loaded by the master before it forks, an OpenSSL configuration
file, async mode; `sluice check` proves every name and path loads; a
reload that changes the block keeps the loaded providers and says so.

Debian ships one provider besides the built-in ones, "legacy", which is
what these tests load: that it is really in the process is read from
/proc/PID/maps of the master and of a worker, not taken on trust."""
import subprocess

from conftest import SLUICE_BIN
from helpers import free_port, fresh_get, wait_for

LEGACY = "ossl-modules/legacy.so"


def run_check(path):
    return subprocess.run([SLUICE_BIN, "check", "-c", str(path)], capture_output=True, text=True, timeout=30)


def config(port, backend, openssl_block):
    # The admin API on a port of its own (line 1 of the pools block moves
    # nothing: it is appended after the openssl block).
    return (
        "pools:\n"                                  # 1
        "  - name: app\n"                           # 2
        "    backends: [%s]\n"                      # 3
        "listeners:\n"                              # 4
        "  - name: web\n"                           # 5
        "    listen: 127.0.0.1:%d\n"                # 6
        "    pool: app\n"                           # 7
        "openssl:\n"                                # 8
        "%s"                                        # 9...
        "admin: { listen: 127.0.0.1:%d }\n" % (backend, port, openssl_block, free_port()))


def mapped(pid, needle):
    try:
        with open("/proc/%d/maps" % pid) as f:
            return needle in f.read()
    except FileNotFoundError:
        return False


def worker_pids(master_pid):
    out = subprocess.run(["pgrep", "-P", str(master_pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_check_names_each_provider_and_file_that_does_not_load(tmp_path):
    bad_cnf = tmp_path / "bad.cnf"
    bad_cnf.write_text("openssl_conf = x\n[x]\nno equal sign here\n")
    cfg = tmp_path / "sluice.yaml"
    cfg.write_text(config(free_port(), "127.0.0.1:9", (
        "  providers: [default, no_such_provider]\n"    # 9
        "  config: %s\n"                                # 10
        "  provider_path: %s\n" % (bad_cnf, tmp_path / "nowhere"))))  # 11
    r = run_check(cfg)
    assert r.returncode == 1, r.stdout
    lines = r.stderr.splitlines()
    assert any(line.startswith("%s:10: openssl.config: cannot load OpenSSL configuration %s:" % (cfg, bad_cnf))
               for line in lines), r.stderr
    assert any(line.startswith("%s:9: openssl.providers[1]: cannot load provider no_such_provider:" % cfg)
               and "no_such_provider.so" in line for line in lines), r.stderr
    assert lines[-1] == "%s: 2 errors" % cfg, r.stderr


def test_check_rejects_bad_values(tmp_path):
    cfg = tmp_path / "sluice.yaml"
    cfg.write_text(config(free_port(), "127.0.0.1:9", (
        "  providers: [default, default]\n"      # 9
        "  async: maybe\n"                       # 10
        "  engine: qat\n")))                     # 11
    r = run_check(cfg)
    assert r.returncode == 1, r.stdout
    assert r.stderr.splitlines() == [
        "%s:9: openssl.providers[1]: provider \"default\" is listed twice" % cfg,
        "%s:10: openssl.async: expected true or false, got \"maybe\"" % cfg,
        "%s:11: openssl.engine: unknown key" % cfg,
        "%s: 3 errors" % cfg,
    ], r.stderr


def test_providers_are_loaded_in_master_and_workers_and_kept_across_reload(tmp_path, sluice, backends):
    (b,) = backends(1)
    port = free_port()
    text = config(port, "127.0.0.1:%d" % b.port, "  providers: [legacy, default]\n  async: true\n")
    assert run_check_text(tmp_path, text).returncode == 0
    s = sluice(text, wait_ports=[port], workers=2)
    assert fresh_get(port, "/")[0] == 200
    assert mapped(s.proc.pid, LEGACY)
    assert wait_for(lambda: len(worker_pids(s.proc.pid)) == 2)
    for pid in worker_pids(s.proc.pid):
        assert mapped(pid, LEGACY), "worker %d does not have the legacy provider" % pid

    # Dropping the block on a reload cannot unload a provider a running
    # context may use: the reload goes through, and the log says the
    # openssl change waits for a restart.
    s.reload(config(port, "127.0.0.1:%d" % b.port, "  providers: [default]\n"))
    assert wait_for(lambda: "openssl block changed" in s.read_log()), s.read_log()
    assert wait_for(lambda: "reload done" in s.read_log())
    assert fresh_get(port, "/")[0] == 200
    assert wait_for(lambda: all(mapped(p, LEGACY) for p in worker_pids(s.proc.pid)))


def test_without_the_block_no_extra_provider_is_loaded(tmp_path, sluice, backends):
    (b,) = backends(1)
    port = free_port()
    text = config(port, "127.0.0.1:%d" % b.port, "  async: false\n")
    s = sluice(text, wait_ports=[port])
    assert fresh_get(port, "/")[0] == 200
    assert not mapped(s.proc.pid, LEGACY)


def run_check_text(tmp_path, text):
    p = tmp_path / "check.yaml"
    p.write_text(text)
    return run_check(p)


def test_async_mode_serves_tls_both_ways(tmp_path, sluice):
    """async: true sets SSL_MODE_ASYNC on every context (listener and
    pool). With the default provider no operation ever pauses, so this
    proves the mode breaks nothing: TLS in, TLS out, TLS health checks.
    (Pausing jobs need a hardware provider: docs/tls.md.)"""
    import ssl
    from backends import HttpBackend
    from helpers import pool_backends
    from tls_certs import CertAuthority
    ca = CertAuthority(tmp_path / "pki")
    front, back = ca.issue(["example.test"]), ca.issue(["backend.test"])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(back.chain, back.key)
    b = HttpBackend("b1", tls=ctx).start()
    try:
        port, aport = free_port(), free_port()
        text = ("admin: { listen: 127.0.0.1:%d }\n"
                "openssl: { providers: [default], async: true }\n"
                "pools:\n  - name: app\n    backends: [%s]\n"
                "    health_check: { type: http, interval: 200ms, timeout: 200ms, rise: 1, fall: 1 }\n"
                "    tls: { ca: %s, sni: backend.test }\n"
                "listeners:\n  - name: web\n    listen: 127.0.0.1:%d\n    pool: app\n"
                "    tls:\n      certificates:\n        - { cert: %s, key: %s }\n"
                % (aport, b.address, ca.cert, port, front.chain, front.key))
        sluice(text, wait_ports=[port, aport])
        assert wait_for(lambda: pool_backends(aport, "app")[b.address]["state"] == "up")
        for version in ("--http1.1", "--http2"):
            r = subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert", ca.cert, version, "--resolve",
                                "example.test:%d:127.0.0.1" % port, "https://example.test:%d/async" % port],
                               capture_output=True, timeout=30)
            assert r.returncode == 0 and r.stdout.startswith(b"b1 GET /async"), r
        assert all(req["tls"]["version"] == "TLSv1.3" for req in b.requests)
    finally:
        b.stop()
