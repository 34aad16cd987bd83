"""Files the configuration names (log.file, listeners[].access_log) and
--pid-file: `sluice check` opens them as the daemon will, and the daemon
refuses to start, or to reload, when it cannot open one, with
FILE:LINE: key.path: reason. `check` creates and truncates nothing."""
import errno
import os
import subprocess

from conftest import SLUICE_BIN
from helpers import admin_json, free_port, fresh_get, wait_for

ENOENT = os.strerror(errno.ENOENT)
EISDIR = os.strerror(errno.EISDIR)


def run_cli(*args):
    """Every command here ends on its own at once; the bound only matters
    if one wrongly starts serving (its workers die with it)."""
    return subprocess.run([SLUICE_BIN] + list(args), capture_output=True, text=True, timeout=15)


def config(port, aport, backend, log_file=None, access_logs=("off", "off")):
    """Two listeners on one pool. Line numbers (for the assertions):
    log.file is line 3, listeners[0].access_log line 11, listeners[1]'s 15."""
    return (
        "admin: { listen: 127.0.0.1:%d }\n"         # 1
        "log:\n"                                    # 2
        "  file: %s\n"                              # 3
        "pools:\n"                                  # 4
        "  - name: app\n"                           # 5
        "    backends: [%s]\n"                      # 6
        "listeners:\n"                              # 7
        "  - name: web\n"                           # 8
        "    listen: 127.0.0.1:%d\n"                # 9
        "    pool: app\n"                           # 10
        "    access_log: %s\n"                      # 11
        "  - name: other\n"                         # 12
        "    listen: 127.0.0.1:%d\n"                # 13
        "    pool: app\n"                           # 14
        "    access_log: %s\n"                      # 15
        % (aport, log_file or "stderr", backend, port, access_logs[0], free_port(), access_logs[1]))


def test_check_fails_on_paths_the_daemon_cannot_open(tmp_path):
    missing = tmp_path / "nope"
    cfg = tmp_path / "sluice.yaml"
    cfg.write_text(config(free_port(), free_port(), "127.0.0.1:9001", log_file=missing / "sluice.log",
                          access_logs=(missing / "access.log", tmp_path)))
    r = run_cli("check", "-c", str(cfg))
    assert r.returncode == 1, r.stdout
    assert r.stderr.splitlines() == [
        "%s:3: log.file: cannot open %s: %s" % (cfg, missing / "sluice.log", ENOENT),
        "%s:11: listeners[0].access_log: cannot open %s: %s" % (cfg, missing / "access.log", ENOENT),
        "%s:15: listeners[1].access_log: cannot open %s: %s" % (cfg, tmp_path, EISDIR),
        "%s: 3 errors" % cfg,
    ], r.stderr
    assert not missing.exists()


def test_check_creates_and_truncates_nothing(tmp_path):
    existing = tmp_path / "access.log"
    existing.write_bytes(b"an earlier line\n")
    mtime = existing.stat().st_mtime_ns
    new_log, new_access = tmp_path / "new.log", tmp_path / "new-access.log"
    cfg = tmp_path / "sluice.yaml"
    cfg.write_text(config(free_port(), free_port(), "127.0.0.1:9001", log_file=new_log,
                          access_logs=(existing, new_access)))
    r = run_cli("check", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    assert existing.read_bytes() == b"an earlier line\n" and existing.stat().st_mtime_ns == mtime
    # It could create them, and did not leave them behind.
    assert not new_log.exists() and not new_access.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["access.log", "sluice.yaml"]


def test_check_does_not_open_a_fifo_that_has_no_reader(tmp_path):
    """A named pipe (e.g. to a log shipper) is fine, and check does not hang on it."""
    fifo = tmp_path / "access.fifo"
    os.mkfifo(fifo)
    cfg = tmp_path / "sluice.yaml"
    cfg.write_text(config(free_port(), free_port(), "127.0.0.1:9001", access_logs=(fifo, "stdout")))
    r = run_cli("check", "-c", str(cfg))
    assert r.returncode == 0, r.stderr


def test_proxy_refuses_to_start_with_a_bad_log_or_access_log(tmp_path):
    missing = tmp_path / "nope"
    cfg = tmp_path / "sluice.yaml"
    port = free_port()
    for log_file, access_logs, want in (
            (missing / "sluice.log", ("off", "off"),
             "%s:3: log.file: cannot open %s: %s" % (cfg, missing / "sluice.log", ENOENT)),
            (None, ("off", missing / "access.log"),
             "%s:15: listeners[1].access_log: cannot open %s: %s" % (cfg, missing / "access.log", ENOENT))):
        cfg.write_text(config(port, free_port(), "127.0.0.1:9001", log_file=log_file, access_logs=access_logs))
        r = run_cli("proxy", "-c", str(cfg))
        assert r.returncode == 1, r.stderr
        assert r.stderr.splitlines()[0] == want, r.stderr
        assert "not started" in r.stderr


def test_proxy_refuses_to_start_without_its_pid_file(tmp_path, backends):
    b, = backends(1)
    cfg = tmp_path / "sluice.yaml"
    port = free_port()
    cfg.write_text(config(port, free_port(), b.address))
    pid_file = tmp_path / "nope" / "sluice.pid"
    r = run_cli("proxy", "-c", str(cfg), "--pid-file", str(pid_file))
    assert r.returncode == 1
    assert "--pid-file %s: cannot write: %s; not started" % (pid_file, ENOENT) in r.stderr, r.stderr


def test_l4_refuses_to_start_with_a_bad_log_file(tmp_path):
    """Before it loads or attaches anything. (No such interface, and pins
    outside a bpffs: should the check ever be lost, the start fails anyway
    and nothing is attached to this host.)"""
    missing = tmp_path / "nope" / "l4.log"
    cfg = tmp_path / "l4.yaml"
    cfg.write_text("admin: { listen: off }\n"
                   "log: { file: %s }\n"
                   "l4:\n  interfaces: [sl-no-such0]\n  services:\n"
                   "    - { vip: 10.255.255.1:80, reals: [10.255.255.2] }\n" % missing)
    r = run_cli("l4", "-c", str(cfg), "--pin-dir", str(tmp_path / "pins"))
    assert r.returncode == 1, r.stderr
    assert r.stderr.splitlines()[0] == "%s:2: log.file: cannot open %s: %s" % (cfg, missing, ENOENT), r.stderr
    assert not (tmp_path / "pins").exists()


def test_reload_with_a_bad_path_is_refused_and_the_old_config_runs_on(sluice, backends, tmp_path):
    b, = backends(1)
    port, aport = free_port(), free_port()
    access = tmp_path / "access.log"
    good = config(port, aport, b.address, access_logs=(access, "off"))
    s = sluice(good, wait_ports=[port, aport])
    st, before = admin_json(aport, "GET", "/api/status")
    assert st == 200

    missing = tmp_path / "nope"
    s.reload(config(port, aport, b.address, log_file=missing / "sluice.log",
                    access_logs=(missing / "access.log", "off")))
    path = str(s.config_path)
    assert wait_for(lambda: "reload aborted" in s.read_log(), timeout=10), s.read_log()
    log = s.read_log()
    assert "%s:3: log.file: cannot open %s: %s" % (path, missing / "sluice.log", ENOENT) in log, log
    assert "%s:11: listeners[0].access_log: cannot open %s: %s" % (path, missing / "access.log", ENOENT) in log, log
    assert not missing.exists()

    # The old configuration runs on: same workers, no reload counted, the
    # access log still written where it was, the log still where it was.
    st, after = admin_json(aport, "GET", "/api/status")
    assert after["reloads"] == 0 and after["workers"] == before["workers"]
    assert fresh_get(port, "/after-refused-reload")[0] == 200
    assert wait_for(lambda: access.exists() and "/after-refused-reload" in access.read_text(), timeout=5)
    # A good file afterwards is taken.
    s.reload(good)
    assert wait_for(lambda: admin_json(aport, "GET", "/api/status")[1]["reloads"] == 1, timeout=10), s.read_log()
