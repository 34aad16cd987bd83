"""Process hygiene of `sluice proxy` (issue 13 item 2): `user`/`group`
(workers drop root, the master keeps it), SIGUSR1 reopens the logs, the
reload and process_* metrics, /ready, `sluice reload` and `sluice version`,
and a second instance refused on an address a running Sluice serves."""
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from conftest import SLUICE_BIN, Sluice
from helpers import admin, admin_json, free_port, fresh_get, metric, new_log_lines, wait_for, wait_port
from test_lifecycle import children


def config(port, aport, backend, top="", listener=""):
    text = "admin: { listen: 127.0.0.1:%d }\n%s" % (aport, top)
    text += "pools:\n  - name: app\n    backends: [%s]\n" % backend
    text += "listeners:\n  - name: web\n    listen: 127.0.0.1:%d\n    pool: app\n" % port
    text += listener
    return text


def run_cli(*args, timeout=30):
    return subprocess.run([SLUICE_BIN] + list(args), capture_output=True, text=True, timeout=timeout)


def uids(pid):
    """The real, effective, saved and fs uids of pid (/proc/PID/status)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Uid:"):
                return [int(x) for x in line.split()[1:]]
    raise AssertionError("no Uid line for %d" % pid)


def gids(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Gid:"):
                return [int(x) for x in line.split()[1:]]
    raise AssertionError("no Gid line for %d" % pid)


def workers(aport):
    st, doc = admin_json(aport, "GET", "/api/status")
    assert st == 200, (st, doc)
    return sorted(w["pid"] for w in doc["workers"] if w["pid"])


def reopened(log, pids):
    """Whether every worker in pids logged that it reopened its files."""
    return all(" %d] worker " % pid in line
               for pid in pids
               for line in [next((l for l in log.splitlines() if " %d] " % pid in l and "log files reopened" in l), "")])


@pytest.fixture
def open_dir():
    """A directory other users may enter (pytest's tmp_path is 0700: a
    worker running as nobody could not reach files in it)."""
    d = tempfile.mkdtemp(prefix="sluice-process-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def free_low_port():
    """A free TCP port below 1024 on 127.0.0.1 (binding it needs root)."""
    for p in range(950, 1020):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
            return p
        except OSError:
            continue
        finally:
            s.close()
    pytest.skip("no free port below 1024")


# ---------------------------------------------------------------- user

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


@needs_root
def test_user_workers_drop_root_master_keeps_it(sluice, backends, open_dir):
    """Run as root with user: nobody: the workers' uids (all four) are
    nobody's, the master stays root; requests work; a reload works and even
    binds a new port below 1024 (the master is root), its workers are
    nobody too; SIGUSR1 reopens files the workers can write."""
    nobody = pwd.getpwnam("nobody")
    b = backends(1)[0]
    port, aport = free_port(), free_port()
    alog = os.path.join(open_dir, "access.log")
    listener = "    access_log: %s\n" % alog
    s = sluice(config(port, aport, b.address, top="user: nobody\n", listener=listener),
               wait_ports=[port, aport], workers=2)
    assert wait_for(lambda: len(workers(aport)) == 2)
    first = workers(aport)
    for pid in first:
        assert uids(pid) == [nobody.pw_uid] * 4, (pid, uids(pid))
        assert gids(pid) == [nobody.pw_gid] * 4, (pid, gids(pid))
    assert uids(s.proc.pid) == [0, 0, 0, 0]
    assert fresh_get(port)[0] == 200

    low = free_low_port()
    s.reload(config(port, aport, b.address, top="user: nobody\n", listener=listener)
             + "  - name: low\n    listen: 127.0.0.1:%d\n    pool: app\n" % low)
    assert wait_for(lambda: metric(aport, "sluice_config_reloads_total", result="success") == 1), s.read_log()[-2000:]
    assert wait_for(lambda: len(workers(aport)) == 2 and not set(workers(aport)) & set(first))
    for pid in workers(aport):
        assert uids(pid) == [nobody.pw_uid] * 4
    assert wait_port(low, timeout=5)
    assert fresh_get(low)[0] == 200 and fresh_get(port)[0] == 200

    # logrotate: the file is moved away; the master creates the new one
    # and hands it to nobody, the workers reopen it.
    os.rename(alog, alog + ".1")
    s.proc.send_signal(signal.SIGUSR1)
    assert wait_for(lambda: reopened(s.read_log(), workers(aport)), timeout=5), s.read_log()[-2000:]
    assert os.stat(alog).st_uid == nobody.pw_uid
    for _ in range(4):
        assert fresh_get(port, "/after-rotate")[0] == 200
    lines = new_log_lines(Path(alog), 0, 4)
    assert all(b"/after-rotate" in l for l in lines), lines
    old = open(alog + ".1", "rb").read()
    assert b"GET / " in old and b"/after-rotate" not in old
    assert "cannot reopen" not in s.read_log()


@needs_root
def test_user_and_group_numbers(sluice, backends):
    """user and group as numbers; the workers take both."""
    b = backends(1)[0]
    port, aport = free_port(), free_port()
    s = sluice(config(port, aport, b.address, top="user: 65534\ngroup: 4242\n"), wait_ports=[port, aport])
    assert wait_for(lambda: len(workers(aport)) == 1)
    pid = workers(aport)[0]
    assert uids(pid) == [65534] * 4 and gids(pid) == [4242] * 4
    assert fresh_get(port)[0] == 200


def test_check_names_unknown_user_and_group(tmp_path):
    cfg = tmp_path / "s.yaml"
    cfg.write_text("user: no-such-user-here\npools: []\n")
    r = run_cli("check", "-c", str(cfg))
    assert r.returncode == 1
    assert '%s:1: user: no such user "no-such-user-here"' % cfg in r.stderr, r.stderr
    cfg.write_text("pools: []\nuser: nobody\ngroup: no-such-group-here\n")
    r = run_cli("check", "-c", str(cfg))
    assert r.returncode == 1
    assert '%s:3: group: no such group "no-such-group-here"' % cfg in r.stderr, r.stderr
    cfg.write_text("pools: []\ngroup: nogroup\n")
    r = run_cli("check", "-c", str(cfg))
    assert r.returncode == 1 and "%s:2: group: needs `user`" % cfg in r.stderr, r.stderr
    cfg.write_text("pools: []\nuser: [a, b]\n")
    r = run_cli("check", "-c", str(cfg))
    assert r.returncode == 1 and "%s:2: user:" % cfg in r.stderr, r.stderr


# ---------------------------------------------------------------- SIGUSR1

def test_usr1_reopens_daemon_and_access_logs(sluice, backends, tmp_path):
    """Rename both logs as logrotate does, send SIGUSR1: the next request's
    line and the next log lines go to new files, none to the renamed ones."""
    b = backends(1)[0]
    port, aport = free_port(), free_port()
    alog, dlog = tmp_path / "access.log", tmp_path / "daemon.log"
    top = "log: { file: %s }\n" % dlog
    s = sluice(config(port, aport, b.address, top=top, listener="    access_log: %s\n" % alog),
               wait_ports=[port, aport], workers=2)
    assert fresh_get(port)[0] == 200
    new_log_lines(alog, 0, 1)
    os.rename(alog, str(alog) + ".1")
    os.rename(dlog, str(dlog) + ".1")
    old_access = (tmp_path / "access.log.1").read_bytes()
    s.proc.send_signal(signal.SIGUSR1)
    assert wait_for(lambda: dlog.exists() and reopened(dlog.read_text(), workers(aport)), timeout=5)
    assert "reopening log files" in (tmp_path / "daemon.log.1").read_text()
    # Both workers have their new access log open: requests land in it.
    assert alog.exists()
    for _ in range(6):
        assert fresh_get(port, "/after")[0] == 200
    lines = new_log_lines(alog, 0, 6)
    assert all(b"/after" in l for l in lines), lines
    assert (tmp_path / "access.log.1").read_bytes() == old_access
    # The daemon log goes on in the new file: a reload is logged there.
    s.reload()
    assert wait_for(lambda: "reload done" in dlog.read_text(), timeout=10), dlog.read_text()
    assert "reload done" not in (tmp_path / "daemon.log.1").read_text()


# ---------------------------------------------------------------- metrics

def test_reload_metrics_and_reload_verb(sluice, backends):
    b = backends(1)[0]
    port, aport = free_port(), free_port()
    good = config(port, aport, b.address)
    s = sluice(good, wait_ports=[port, aport])
    cfg = str(s.config_path)
    assert metric(aport, "sluice_config_reloads_total", result="success") == 0
    assert metric(aport, "sluice_config_reloads_total", result="failure") == 0
    assert metric(aport, "sluice_config_last_reload_successful") == 1
    started = metric(aport, "sluice_config_last_reload_success_timestamp_seconds")
    assert abs(started - os.stat("/proc/%d" % s.proc.pid).st_mtime) < 3600 and started > 1e9

    s.config_path.write_text(good.replace("pools:", "pools: [\n"))   # a syntax error
    r = run_cli("reload", "-c", str(tmp_good(s, good)))
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "reload aborted" in r.stderr and "%s:" % cfg in r.stderr, r.stderr
    assert metric(aport, "sluice_config_reloads_total", result="failure") == 1
    assert metric(aport, "sluice_config_last_reload_successful") == 0
    assert metric(aport, "sluice_config_last_reload_success_timestamp_seconds") == started

    s.config_path.write_text(good)
    r = run_cli("reload", "-c", cfg)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("reloaded: 1 workers"), r.stdout
    assert metric(aport, "sluice_config_reloads_total", result="success") == 1
    assert metric(aport, "sluice_config_last_reload_successful") == 1
    assert metric(aport, "sluice_config_last_reload_success_timestamp_seconds") >= started

    # SIGHUP counts the same way.
    s.config_path.write_text("workers: lots\n")
    s.reload()
    assert wait_for(lambda: metric(aport, "sluice_config_reloads_total", result="failure") == 2)
    assert metric(aport, "sluice_config_last_reload_successful") == 0
    # Nothing listens there: a clear error, exit 1.
    r = run_cli("reload", "--admin", "127.0.0.1:%d" % free_port())
    assert r.returncode == 1 and "cannot reach the admin API" in r.stderr, r.stderr
    r = run_cli("help", "reload")
    assert r.returncode == 0 and "POST /api/reload" in r.stdout
    assert "reload [-c FILE]" in run_cli("--help").stdout
    assert run_cli("reload", "extra").returncode == 2


def tmp_good(s, good):
    """A copy of the good configuration (for its admin address): the
    running proxy's own file holds a syntax error at this point."""
    p = s.tmp_path / "good.yaml"
    p.write_text(good)
    return p


def test_process_metrics_sum_master_and_workers(sluice, backends):
    b = backends(1)[0]
    port, aport = free_port(), free_port()
    s = sluice(config(port, aport, b.address), wait_ports=[port, aport], workers=2)
    assert wait_for(lambda: len(workers(aport)) == 2)
    status, raw = admin(aport, "GET", "/metrics")
    text = raw.decode()
    for fam, typ in (("process_cpu_seconds_total", "counter"), ("process_resident_memory_bytes", "gauge"),
                     ("process_virtual_memory_bytes", "gauge"), ("process_open_fds", "gauge"),
                     ("process_max_fds", "gauge"), ("process_start_time_seconds", "gauge")):
        assert "# TYPE %s %s\n" % (fam, typ) in text, fam

    def rss(pid):
        with open("/proc/%d/status" % pid) as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))

    def nfds(pid):
        return len(os.listdir("/proc/%d/fd" % pid))

    pids = [s.proc.pid] + workers(aport)
    # More than the master alone: the workers are counted too.
    assert metric(aport, "process_resident_memory_bytes") > rss(s.proc.pid)
    assert metric(aport, "process_open_fds") > nfds(s.proc.pid)
    assert metric(aport, "process_open_fds") >= sum(nfds(p) for p in pids) - 8
    with open("/proc/%d/limits" % s.proc.pid) as f:
        soft = next(int(l.split()[3]) for l in f if l.startswith("Max open files"))
    assert metric(aport, "process_max_fds") == soft
    # The master's start: /proc/stat btime + starttime / CLK_TCK.
    with open("/proc/stat") as f:
        btime = next(int(l.split()[1]) for l in f if l.startswith("btime"))
    with open("/proc/%d/stat" % s.proc.pid) as f:
        start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    expect = btime + start_ticks / os.sysconf("SC_CLK_TCK")
    assert abs(metric(aport, "process_start_time_seconds") - expect) < 0.01
    cpu = metric(aport, "process_cpu_seconds_total")
    assert cpu > 0
    for _ in range(50):
        fresh_get(port)
    assert metric(aport, "process_cpu_seconds_total") >= cpu


# ---------------------------------------------------------------- /ready

def test_ready_while_serving_and_503_while_draining(sluice, backends):
    slow = backends(1, delay=4.0)[0]
    port, aport = free_port(), free_port()
    s = sluice(config(port, aport, slow.address, top="drain_timeout: 20s\n"), wait_ports=[port, aport])
    st, doc = admin_json(aport, "GET", "/ready")
    assert (st, doc) == (200, {"ready": True})
    assert admin(aport, "POST", "/ready")[0] == 405
    # A request in flight keeps the worker (and the master) draining.
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", fresh_get(port, timeout=20)))
    t.start()
    assert wait_for(lambda: slow.count() == 1, timeout=5)
    s.proc.send_signal(signal.SIGTERM)
    assert wait_for(lambda: admin_json(aport, "GET", "/ready")[0] == 503, timeout=5)
    st, doc = admin_json(aport, "GET", "/ready")
    assert st == 503 and doc == {"ready": False, "reason": "stopping"}, doc
    t.join(timeout=20)
    assert result["r"][0] == 200


def test_ready_503_while_a_worker_is_missing(sluice, backends):
    """A worker that keeps dying at once is restarted after a back-off
    (three deaths within 2 s of their start); meanwhile /ready is 503 and
    says how many run, and 200 again once it is back."""
    b = backends(1)[0]
    port, aport = free_port(), free_port()
    s = sluice(config(port, aport, b.address), wait_ports=[port, aport])
    assert wait_for(lambda: len(workers(aport)) == 1)
    assert admin(aport, "GET", "/ready")[0] == 200
    seen = None
    for _ in range(6):
        pids = wait_for(lambda: workers(aport), timeout=5)
        if not pids:
            break
        os.kill(pids[0], signal.SIGKILL)
        seen = wait_for(lambda: admin_json(aport, "GET", "/ready")[0] == 503, timeout=0.5)
        if seen:
            break
    assert seen, s.read_log()[-2000:]
    assert admin_json(aport, "GET", "/ready")[1] == {"ready": False, "reason": "0 of 1 workers running"}
    assert wait_for(lambda: admin(aport, "GET", "/ready")[0] == 200, timeout=10)
    assert fresh_get(port)[0] == 200


# ---------------------------------------------------------------- version

def test_version_text_and_json():
    r = run_cli("version")
    assert r.returncode == 0
    first = r.stdout.splitlines()[0]
    assert first.startswith("sluice ") and "(commit " in first
    assert "openssl: OpenSSL" in r.stdout and "http2: yes" in r.stdout and "tiers: proxy" in r.stdout
    r = run_cli("version", "--json")
    assert r.returncode == 0
    doc = json.loads(r.stdout)
    head = subprocess.run(["git", "-C", os.path.dirname(SLUICE_BIN), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True)
    assert doc["commit"] != "unknown" and len(doc["commit"]) >= 7
    if head.returncode == 0:
        # Built from this checkout (the build may be older than HEAD).
        assert subprocess.run(["git", "-C", os.path.dirname(SLUICE_BIN), "cat-file", "-e",
                               doc["commit"].split("-dirty")[0].rsplit("-g", 1)[-1]]).returncode == 0
    assert "proxy" in doc["tiers"] and doc["features"]["http2"] is True
    assert doc["features"]["openssl"].startswith("OpenSSL")
    assert run_cli("version", "--bogus").returncode == 2


# ---------------------------------------------------------------- second instance

def second(tmp_path, text, extra_args=()):
    d = tmp_path / "second"
    d.mkdir(exist_ok=True)
    return Sluice(d, text, extra_args=extra_args)


def test_second_instance_refused_unless_allowed(sluice, backends, tmp_path):
    b = backends(1)[0]
    port, aport, aport2 = free_port(), free_port(), free_port()
    first = sluice(config(port, aport, b.address), wait_ports=[port, aport])
    ours = [first.proc.pid] + children(first.proc.pid)
    s2 = second(tmp_path, config(port, aport2, b.address))
    s2.start()
    try:
        s2.proc.wait(timeout=20)
        log = s2.read_log()
        assert s2.proc.returncode == 1, log
        assert "listeners[0] (web): 127.0.0.1:%d is already served by pid " % port in log, log
        pid = int(log.split("already served by pid ")[1].split()[0])
        assert pid in ours, (pid, ours)
        assert "--allow-shared-listen" in log
        # Nothing of the second one is left listening.
        assert not wait_port(aport2, timeout=0.3)
    finally:
        s2.stop()
    s2.assert_clean()
    # Told to, it starts, and both share the port.
    s3 = second(tmp_path, config(port, aport2, b.address), extra_args=["--allow-shared-listen"])
    s3.start(wait_ports=[aport2])
    try:
        assert s3.proc.poll() is None
        assert fresh_get(port)[0] == 200
    finally:
        assert s3.stop() == 0
    s3.assert_clean()
    # The first one's own reloads are not refused: the same file, and a
    # listener moved away and back while the old workers still drain.
    first.reload()
    assert wait_for(lambda: metric(aport, "sluice_config_reloads_total", result="success") == 1)
    other = free_port()
    first.reload(config(other, aport, b.address))
    assert wait_for(lambda: metric(aport, "sluice_config_reloads_total", result="success") == 2)
    first.reload(config(port, aport, b.address))
    assert wait_for(lambda: metric(aport, "sluice_config_reloads_total", result="success") == 3), \
        first.read_log()[-2000:]
    assert metric(aport, "sluice_config_reloads_total", result="failure") == 0
    assert fresh_get(port)[0] == 200


def test_reload_refused_onto_an_address_another_process_serves(sluice, backends):
    """A foreign SO_REUSEPORT listener (same user) on the port a reload
    adds: the reload is refused, the running configuration stays."""
    b = backends(1)[0]
    port, aport, taken = free_port(), free_port(), free_port()
    s = sluice(config(port, aport, b.address), wait_ports=[port, aport])
    foreign = socket.socket()
    foreign.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    foreign.bind(("127.0.0.1", taken))
    foreign.listen(8)
    try:
        text = config(port, aport, b.address) + "  - name: more\n    listen: 127.0.0.1:%d\n    pool: app\n" % taken
        s.reload(text)
        assert wait_for(lambda: metric(aport, "sluice_config_reloads_total", result="failure") == 1), \
            s.read_log()[-2000:]
        log = s.read_log()
        assert "listeners[1] (more): 127.0.0.1:%d is already served by pid %d" % (taken, os.getpid()) in log, log
        assert fresh_get(port)[0] == 200
    finally:
        foreign.close()
    # Once it is free, the same reload goes through.
    s.reload()
    assert wait_for(lambda: metric(aport, "sluice_config_reloads_total", result="success") == 1)
    assert wait_port(taken, timeout=5)
    assert fresh_get(taken)[0] == 200


def test_udp_listener_refused_on_a_served_udp_port(tmp_path):
    port, aport = free_port(socket.SOCK_DGRAM), free_port()
    foreign = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    foreign.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    foreign.bind(("127.0.0.1", port))
    try:
        text = ("admin: { listen: 127.0.0.1:%d }\npools:\n  - name: dns\n    backends: [127.0.0.1:9]\n"
                "listeners:\n  - name: d\n    listen: 127.0.0.1:%d\n    protocol: udp\n    pool: dns\n"
                % (aport, port))
        s = Sluice(tmp_path, text)
        s.start()
        try:
            assert s.proc.wait(timeout=20) == 1
        finally:
            s.stop()
        assert "127.0.0.1:%d is already served by pid %d" % (port, os.getpid()) in s.read_log(), s.read_log()
        s.assert_clean()
    finally:
        foreign.close()


def test_other_address_on_the_same_port_is_not_a_clash(sluice, backends):
    """A foreign listener on 127.0.0.2:P does not share 127.0.0.1:P's
    traffic: the proxy starts."""
    b = backends(1)[0]
    port, aport = free_port(), free_port()
    foreign = socket.socket()
    foreign.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    foreign.bind(("127.0.0.2", port))
    foreign.listen(8)
    try:
        s = sluice(config(port, aport, b.address), wait_ports=[port, aport])
        assert fresh_get(port)[0] == 200
        assert "already served" not in s.read_log()
    finally:
        foreign.close()


@pytest.mark.skipif(not shutil.which("logrotate"), reason="logrotate is not installed")
def test_logrotate_example_rotates_a_running_proxy(sluice, backends, tmp_path):
    """packaging/logrotate/sluice as shipped, its paths moved into tmp_path
    (no systemd unit here: the pid file branch sends SIGUSR1)."""
    from conftest import ROOT
    b = backends(1)[0]
    port, aport = free_port(), free_port()
    logdir = tmp_path / "log"
    logdir.mkdir()
    alog, dlog, pidfile = logdir / "access.log", logdir / "sluice.log", tmp_path / "proxy.pid"
    s = sluice(config(port, aport, b.address, top="log: { file: %s }\n" % dlog,
                      listener="    access_log: %s\n" % alog),
               wait_ports=[port, aport], extra_args=["--pid-file", str(pidfile)])
    assert fresh_get(port, "/before")[0] == 200
    new_log_lines(alog, 0, 1)
    example = open(os.path.join(ROOT, "packaging", "logrotate", "sluice")).read()
    assert "/var/log/sluice/*.log" in example and "/run/sluice/proxy.pid" in example
    conf = tmp_path / "logrotate.conf"
    conf.write_text(example.replace("/var/log/sluice", str(logdir)).replace("/run/sluice/proxy.pid", str(pidfile))
                    .replace("systemctl kill", "false systemctl kill"))
    r = subprocess.run(["logrotate", "-f", "-s", str(tmp_path / "state"), str(conf)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert (logdir / "access.log.1").exists() and (logdir / "sluice.log.1").exists()
    assert wait_for(lambda: dlog.exists() and reopened(dlog.read_text(), workers(aport)), timeout=5)
    assert fresh_get(port, "/after")[0] == 200
    assert b"/after" in new_log_lines(alog, 0, 1)[0]
    assert b"/after" not in (logdir / "access.log.1").read_bytes()


def test_registry_daemon_ready_metrics_and_usr1(tmp_path):
    """The core's part for another daemon: /ready, process_* and the reload
    families, and SIGUSR1 reopens its log.file instead of killing it."""
    from registry_node import Registry
    r = Registry(tmp_path, extra="")
    dlog = tmp_path / "registry-daemon.log"
    r.config_path.write_text("user: nobody\n" + r.config_path.read_text().replace(
        "log:\n  level: debug\n", "log:\n  level: debug\n  file: %s\n" % dlog))
    r.start()
    assert wait_for(lambda: dlog.exists() and "user: ignored by this daemon (registry)" in dlog.read_text())
    try:
        st, doc = admin_json(r.port, "GET", "/ready")
        assert (st, doc) == (200, {"ready": True})
        assert metric(r.port, "process_resident_memory_bytes") > 0
        assert metric(r.port, "process_max_fds") > 0
        assert metric(r.port, "sluice_config_last_reload_successful") == 1
        good = r.config_path.read_text()
        r.config_path.write_text(good + "  bogus_key: 1\n")
        r.reload()
        assert wait_for(lambda: metric(r.port, "sluice_config_reloads_total", result="failure") == 1)
        assert metric(r.port, "sluice_config_last_reload_successful") == 0
        r.config_path.write_text(good)
        r.reload()
        assert wait_for(lambda: metric(r.port, "sluice_config_reloads_total", result="success") == 1)
        assert metric(r.port, "sluice_config_last_reload_successful") == 1
        os.rename(dlog, str(dlog) + ".1")
        r.proc.send_signal(signal.SIGUSR1)
        assert wait_for(lambda: dlog.exists(), timeout=5)
        r.reload()
        assert wait_for(lambda: "reloaded" in dlog.read_text(), timeout=5), dlog.read_text()
        assert r.proc.poll() is None
    finally:
        r.stop()
    r.assert_clean()
