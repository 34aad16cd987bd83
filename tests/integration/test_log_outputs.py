"""Log outputs beside files: syslog and journald (log.file, listeners[].access_log;
src/core/log_sink.c, src/proxy/access_log_sink.c).

Syslog goes to a unix datagram socket the test binds itself (server=unix:PATH,
as /dev/log would be) and to a UDP listener; every record is read back and its
priority (facility * 8 + severity), tag, pid and message checked. journald is
the real systemd-journald, run for the test in a private mount namespace
(tmpfs on /run/systemd, /run/log and /var/log/journal, a journald.conf of its
own): Sluice writes to /run/systemd/journal/socket there, and journalctl reads
the entries back with their fields. The host's /run and journal are untouched;
the namespace, its mounts and its journald end with the test.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from helpers import free_port, metric, wait_for
from raw_servers import http_config

import conftest

pytestmark = pytest.mark.skipif(not shutil.which("curl"), reason="needs curl")

JOURNALD = next((p for p in ("/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald")
                 if os.path.exists(p)), None)


class DgramReceiver:
    """A unix or UDP datagram socket the test reads records from."""

    def __init__(self, path=None):
        if path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.sock.bind(path)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(("127.0.0.1", 0))
            self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.2)
        self.records = []

    def drain(self):
        while True:
            try:
                self.records.append(self.sock.recv(65536).decode())
            except (socket.timeout, BlockingIOError):
                return self.records

    def wait(self, pattern, timeout=10):
        rx = re.compile(pattern)
        found = []

        def seen():
            self.drain()
            found[:] = [r for r in self.records if rx.search(r)]
            return bool(found)
        assert wait_for(seen, timeout=timeout), "no record matches %r in:\n%s" % (pattern, "\n".join(self.records))
        return found[0]

    def close(self):
        self.sock.close()


def config(port, aport, backend, log_file, access_log, log_level="info"):
    y = http_config(port, {"app": [backend]}, default_pool="app", admin_port=aport, log_level=log_level,
                    listener_extra={"access_log": '"%s"' % access_log})
    return y.replace("log: { level: %s }" % log_level, 'log: { level: %s, file: "%s" }' % (log_level, log_file))


def curl(port, path):
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:%d%s" % (port, path)],
                         capture_output=True, text=True, timeout=20)
    return int(out.stdout or 0)


def test_syslog_to_a_unix_socket(tmp_path, backends):
    (b,) = backends(1)
    path = str(tmp_path / "log.sock")
    rx = DgramReceiver(path)
    port, aport = free_port(), free_port()
    s = conftest.Sluice(tmp_path, config(port, aport, b.address, "syslog:server=unix:%s,tag=edge" % path,
                                         "syslog:server=unix:%s,facility=local3,severity=notice,tag=web" % path))
    try:
        s.start(wait_ports=[port, aport])
        pid = s.proc.pid
        # The master's info records: facility daemon (3) * 8 + info (6) = 30, BSD format.
        rec = rx.wait(r"\[master\] sluice .* started")
        assert re.match(r"^<30>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d edge\[%d\]: \[master\] sluice " % pid, rec), rec
        assert curl(port, "/hello?x=1") == 200
        # An access line: local3 (19) * 8 + notice (5) = 157, from the worker's pid.
        rec = rx.wait(r'"GET /hello\?x=1 HTTP/1.1" 200')
        m = re.match(r"^<157>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d web\[(\d+)\]: 127\.0\.0\.1 - - \[", rec)
        assert m and int(m.group(1)) != pid, rec
        assert not rec.endswith("\n")
        # An error of the master: a reload refused. daemon * 8 + err (3) = 27.
        good = s.config_path.read_text()
        s.reload(good.replace("pools:", "pools: 7\nbogus:"))
        rec = rx.wait(r"reload aborted")
        assert rec.startswith("<27>") and "edge[%d]: [master] reload aborted" % pid in rec, rec
        # Nothing went to the log file (stderr) but the sanitizers' silence.
        assert "started with" not in s.read_log()
        assert metric(aport, "sluice_log_dropped_total", log="access", output="syslog") == 0
    finally:
        s.stop()
        rx.close()
        s.assert_clean()


def test_syslog_rfc5424_over_udp(tmp_path, backends):
    (b,) = backends(1)
    rx = DgramReceiver()
    port, aport = free_port(), free_port()
    s = conftest.Sluice(tmp_path, config(port, aport, b.address, "syslog:server=127.0.0.1:%d,format=rfc5424" % rx.port,
                                         "syslog:server=127.0.0.1:%d,format=rfc5424" % rx.port))
    try:
        s.start(wait_ports=[port, aport])
        host = socket.gethostname()
        rec = rx.wait(r"\[master\] listening on")
        assert re.match(r"^<30>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z %s sluice %d - - \[master\] listening on "
                        % (re.escape(host), s.proc.pid), rec), rec
        assert curl(port, "/udp") == 200
        # Access lines default to local7 (23) * 8 + info (6) = 190, tag sluice-access.
        rec = rx.wait(r'"GET /udp HTTP/1.1" 200')
        assert re.match(r"^<190>1 \S+ %s sluice-access \d+ - - 127\.0\.0\.1 " % re.escape(host), rec), rec
    finally:
        s.stop()
        rx.close()
        s.assert_clean()


def test_reload_moves_the_logs_to_syslog(tmp_path, backends):
    """SIGHUP: log.file and access_log change from files to syslog (the new
    workers send their lines there), and back."""
    (b,) = backends(1)
    path = str(tmp_path / "log.sock")
    rx = DgramReceiver(path)
    port, aport = free_port(), free_port()
    access_file = tmp_path / "access.log"
    as_files = config(port, aport, b.address, "stderr", str(access_file))
    s = conftest.Sluice(tmp_path, as_files)
    try:
        s.start(wait_ports=[port, aport])
        assert curl(port, "/before") == 200
        assert wait_for(lambda: access_file.exists() and "/before" in access_file.read_text())
        s.reload(config(port, aport, b.address, "syslog:server=unix:%s" % path, "syslog:server=unix:%s" % path))
        rx.wait(r"\[master\] reload done")
        assert wait_for(lambda: curl(port, "/after") == 200 and any("/after" in r for r in rx.drain()))
        s.reload(as_files)
        assert wait_for(lambda: curl(port, "/back") == 200 and "/back" in access_file.read_text())
        assert not any("/back" in r for r in rx.drain())
    finally:
        s.stop()
        rx.close()
        s.assert_clean()


def test_unreachable_output_counts_drops(tmp_path, backends):
    """Nobody listens at the path: every record is dropped at once, counted,
    and the proxy serves on (one notice on stderr per output)."""
    (b,) = backends(1)
    missing = str(tmp_path / "nobody.sock")
    port, aport = free_port(), free_port()
    s = conftest.Sluice(tmp_path, config(port, aport, b.address, "syslog:server=unix:%s" % missing,
                                         "syslog:server=unix:%s" % missing))
    try:
        s.start(wait_ports=[port, aport])
        for _ in range(5):
            assert curl(port, "/x") == 200
        assert wait_for(lambda: metric(aport, "sluice_log_dropped_total", log="access", output="syslog") == 5)
        assert metric(aport, "sluice_log_dropped_total", log="daemon", output="syslog") >= 3
        log = s.read_log()
        assert log.count("access log to syslog %s: No such file or directory" % missing) == 1, log
        assert "daemon log to syslog %s" % missing in log
    finally:
        s.stop()
        s.assert_clean()


def test_check_reports_bad_outputs(tmp_path):
    cfg = config(8080, None, "127.0.0.1:9", "syslog:facility=local9", "journald:server=10.0.0.1")
    path = tmp_path / "bad.yaml"
    path.write_text(cfg)
    out = subprocess.run([conftest.SLUICE_BIN, "check", "-c", str(path)], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    lines = cfg.split("\n")
    log_line = next(i + 1 for i, t in enumerate(lines) if "file:" in t)
    al_line = next(i + 1 for i, t in enumerate(lines) if "access_log" in t)
    assert ('%s:%d: log.file: syslog: unknown facility "local9" (kern, user, mail, daemon, auth, syslog, lpr, news, '
            'uucp, cron, authpriv, ftp, local0 .. local7)' % (path, log_line)) in out.stderr, out.stderr
    assert ('%s:%d: listeners[0].access_log: journald: unknown option "server" (facility, tag, severity)'
            % (path, al_line)) in out.stderr, out.stderr


JOURNAL_SCRIPT = r"""
set -eu
mount --make-rprivate /
mount -t tmpfs tmpfs /run/systemd
mkdir -p /run/systemd/journal /run/log
mount -t tmpfs tmpfs /run/log
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
# Our own journald.conf: nothing read from or forwarded to the kernel log,
# the console or wall; entries in the namespace's /run/log only.
mount --bind "$WORK/journald.conf" /etc/systemd/journald.conf
# Its own messages to its stderr, not to the host's kernel log.
SYSTEMD_LOG_TARGET=console "$JOURNALD" > "$WORK/journald.out" 2>&1 &
JPID=$!
SPID=
cleanup() { [ -n "$SPID" ] && kill "$SPID" 2>/dev/null; kill "$JPID" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT
for i in $(seq 100); do [ -S /run/systemd/journal/socket ] && break; sleep 0.05; done
"$SLUICE" proxy -c "$WORK/sluice.yaml" --workers 1 > "$WORK/sluice.out" 2>&1 &
SPID=$!
for i in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.05; done
curl -s -o /dev/null "http://127.0.0.1:$PORT/journal?q=1"
curl -s -o /dev/null "http://127.0.0.1:$PORT/status/503"
cp "$WORK/broken.yaml" "$WORK/sluice.yaml"
kill -HUP "$SPID"
for i in $(seq 200); do grep -q "reload aborted" "$WORK/sluice.out" 2>/dev/null && break
  journalctl -D /run/log/journal -t sluice --no-pager -q 2>/dev/null | grep -q "reload aborted" && break; sleep 0.05; done
kill -TERM "$SPID"; wait "$SPID" || true; SPID=
journalctl -D /run/log/journal -o json --no-pager > "$WORK/journal.json"
"""

JOURNALD_CONF = """[Journal]
Storage=volatile
ReadKMsg=no
ForwardToSyslog=no
ForwardToKMsg=no
ForwardToConsole=no
ForwardToWall=no
RateLimitBurst=0
"""


@pytest.mark.skipif(not JOURNALD or not shutil.which("unshare") or os.geteuid() != 0,
                    reason="needs systemd-journald, unshare and root")
def test_journald_in_a_private_namespace(tmp_path, backends):
    (b,) = backends(1)
    port = free_port()
    cfg = config(port, None, b.address, "journald:tag=lb", "journald:severity=warning")
    (tmp_path / "sluice.yaml").write_text(cfg)
    (tmp_path / "broken.yaml").write_text(cfg.replace("pools:", "pools: 7\nbogus:"))
    (tmp_path / "journald.conf").write_text(JOURNALD_CONF)
    env = dict(os.environ, WORK=str(tmp_path), JOURNALD=JOURNALD, SLUICE=conftest.SLUICE_BIN, PORT=str(port))
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    out = subprocess.run(["unshare", "-m", "--propagation", "private", "bash", "-c", JOURNAL_SCRIPT], env=env,
                         capture_output=True, text=True, timeout=120)
    sluice_out = (tmp_path / "sluice.out").read_text(errors="replace") if (tmp_path / "sluice.out").exists() else ""
    assert out.returncode == 0, out.stderr + sluice_out
    for bad in ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer"):
        assert bad not in sluice_out, sluice_out
    entries = [json.loads(line) for line in (tmp_path / "journal.json").read_text().splitlines() if line.strip()]
    ours = [e for e in entries if e.get("SYSLOG_IDENTIFIER") in ("lb", "sluice-access")]
    assert ours, entries[-5:]
    started = [e for e in ours if e["SYSLOG_IDENTIFIER"] == "lb" and "started with 1 workers" in e["MESSAGE"]]
    assert started and started[0]["PRIORITY"] == "6" and started[0]["SYSLOG_FACILITY"] == "3"
    assert started[0]["SLUICE_ROLE"] == "master" and started[0]["MESSAGE"].startswith("[master] ")
    assert started[0]["_TRANSPORT"] == "journal"
    aborted = [e for e in ours if e["SYSLOG_IDENTIFIER"] == "lb" and "reload aborted" in e["MESSAGE"]]
    assert aborted and aborted[0]["PRIORITY"] == "3", ours
    access = [e for e in ours if e["SYSLOG_IDENTIFIER"] == "sluice-access" and
              e.get("SLUICE_REQUEST") == "GET /journal?q=1 HTTP/1.1"]
    assert access, [e for e in ours if e["SYSLOG_IDENTIFIER"] == "sluice-access"]
    a = access[0]
    assert a["PRIORITY"] == "4" and a["SYSLOG_FACILITY"] == "23"
    assert a["SLUICE_STATUS"] == "200" and a["SLUICE_UPSTREAM"] == b.address
    assert a["SLUICE_CLIENT"] == "127.0.0.1" and a["SLUICE_LISTENER"] == "web"
    assert int(a["SLUICE_DURATION_US"]) > 0 and int(a["SLUICE_BYTES_SENT"]) > 0
    assert '"GET /journal?q=1 HTTP/1.1" 200' in a["MESSAGE"] and not a["MESSAGE"].endswith("\n")
    backend_503 = [e for e in ours if e.get("SLUICE_REQUEST") == "GET /status/503 HTTP/1.1"]
    assert backend_503 and backend_503[0]["SLUICE_STATUS"] == "503"
    # journald spoke to its stderr only (not to the host's kernel log).
    assert "Received SIGTERM" in (tmp_path / "journald.out").read_text()
