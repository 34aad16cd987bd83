"""Traffic for the HA lab, and what it measures (issue 12, item 4).

Two streams to one VIP, from one process in the client namespace, both on
the reals' line protocol ("X\\n" -> "NAME X\\n", ha_lab.ECHO_PORT):

- **long-lived**: N TCP connections opened at the start (from the lab's
  client addresses in turn), each exchanging one small request/response
  every 10-20 ms (--interval-ms). Recorded: every exchange; the largest gap between two
  successful exchanges on one connection (and which connection, when);
  every failure: a reset, the peer closing, an answer from another real
  than the first one, or no answer within --timeout seconds (the
  connection then counts as broken and is not used again; nothing is
  reopened).
- **probes**: a new short connection every --probe-ms ms (connect, one
  exchange, close), each with --probe-timeout to complete. Recorded: the
  largest gap between the starts of two consecutive successful probes
  (the time when no new connection got through at all), the failures,
  and the window from the first failed probe's start to the last one's
  (when only some paths fail, e.g. one of two LB nodes, probes on the
  other paths succeed meanwhile: the gap stays small, the window shows
  how long the failing path lasted).

Always time-bounded (--duration), and it stops early on a line "stop" on
stdin. It prints "READY" once every long-lived connection has had its
first answer, then, at the end, one line of JSON:

    {"long": {"connections", "exchanges", "broken", "stalled_at_end", "failures": [...],
              "gap_ms", "gap_conn", "gap_at_s", "reals": {name: connections}},
     "probes": {"sent", "ok", "failed", "gap_ms", "gap_at_s", "fail_window_ms",
                "fail_first_at_s", "failures": [first 20]},
     "duration_s"}

Times (gap_at_s) are seconds since READY. A connection still waiting for
its answer at the end counts its open gap, and is counted in
stalled_at_end (waiting more than 0.2 s). No thresholds here: callers
print the figures (tests) or aggregate them (bench/ha.sh).

CLI (in the client namespace): `ip netns exec s12l-c python3
tests/integration/ha_traffic.py --vip 10.12.100.1 --duration 10`. From
Python: `Traffic(lab, vip).start()` ... `.stop()` -> the dict.
"""
import argparse
import errno
import json
import os
import random
import selectors
import socket
import subprocess
import sys
import time

CLIENTS = ["198.18.0.%d" % i for i in range(1, 9)]   # ha_lab.CLIENTS (kept importable without ha_lab)


class Long:
    """One long-lived connection."""

    def __init__(self, idx, sock, real):
        self.idx, self.sock, self.real = idx, sock, real
        self.client = None            # its address:port
        self.buf = b""
        self.seq = 0
        self.waiting_since = None     # when the request in flight was sent
        self.next_send = 0.0
        self.last_ok = None
        self.gap = 0.0
        self.gap_at = None
        self.exchanges = 0
        self.broken = None


class Probe:
    def __init__(self, sock, started):
        self.sock, self.started = sock, started
        self.sent = False
        self.buf = b""


class Measure:
    def __init__(self, vip, port, conns, probe_ms, timeout, probe_timeout, interval_ms=(10, 20)):
        self.vip, self.port = vip, port
        self.n, self.probe_s = conns, probe_ms / 1000.0
        self.timeout, self.probe_timeout = timeout, probe_timeout
        self.interval = (interval_ms[0] / 1000.0, interval_ms[1] / 1000.0)
        self.sel = selectors.DefaultSelector()
        self.longs = []
        self.failures = []
        self.probes = set()
        self.probe_stats = {"sent": 0, "ok": 0, "failed": 0}
        self.probe_failures = []
        self.last_probe_ok = None
        self.probe_gap, self.probe_gap_at = 0.0, None
        self.fail_first = self.fail_last = None
        self.t0 = None
        self.src = 0

    def next_src(self):
        self.src += 1
        return CLIENTS[self.src % len(CLIENTS)]

    def rel(self, t):
        return round(t - self.t0, 3) if self.t0 is not None and t is not None else None

    # ------------------------------------------------------------ long-lived
    def open_longs(self, setup_timeout=10):
        for i in range(self.n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((self.next_src(), 0))
            s.settimeout(setup_timeout)
            s.connect((self.vip, self.port))
            s.sendall(b"hello\n")
            buf = b""
            while b"\n" not in buf:
                chunk = s.recv(256)
                if not chunk:
                    raise ConnectionError("connection %d closed at setup" % i)
                buf += chunk
            real = buf.split(b" ", 1)[0].decode()
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c = Long(i, s, real)
            c.client = "%s:%d" % s.getsockname()[:2]
            self.sel.register(s, selectors.EVENT_READ, ("long", c))
            self.longs.append(c)

    def break_long(self, c, now, why):
        c.broken = why
        self.failures.append({"conn": c.idx, "client": c.client, "real": c.real, "at_s": self.rel(now),
                              "error": why})
        self.sel.unregister(c.sock)
        c.sock.close()

    def send_long(self, c, now):
        c.seq += 1
        try:
            c.sock.send(b"%d\n" % c.seq)
        except OSError as e:
            self.break_long(c, now, "send: %s" % errno.errorcode.get(e.errno, e))
            return
        c.waiting_since = now

    def read_long(self, c, now):
        try:
            chunk = c.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError as e:
            self.break_long(c, now, "recv: %s" % errno.errorcode.get(e.errno, e))
            return
        if not chunk:
            self.break_long(c, now, "closed by the peer")
            return
        c.buf += chunk
        while b"\n" in c.buf:
            line, _, c.buf = c.buf.partition(b"\n")
            name, _, seq = line.decode(errors="replace").partition(" ")
            if name != c.real:
                self.break_long(c, now, "answered by %s, first by %s" % (name, c.real))
                return
            if seq != str(c.seq):
                continue
            if c.last_ok is not None and now - c.last_ok > c.gap:
                c.gap, c.gap_at = now - c.last_ok, c.last_ok
            c.last_ok = now
            c.exchanges += 1
            c.waiting_since = None
            c.next_send = now + random.uniform(*self.interval)

    # ---------------------------------------------------------------- probes
    def start_probe(self, now):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.bind((self.next_src(), 0))
            s.connect_ex((self.vip, self.port))
        except OSError as e:
            s.close()
            self.fail_probe(None, now, "connect: %s" % e)
            return
        p = Probe(s, now)
        self.probes.add(p)
        self.probe_stats["sent"] += 1
        self.sel.register(s, selectors.EVENT_WRITE, ("probe", p))

    def end_probe(self, p):
        self.probes.discard(p)
        try:
            self.sel.unregister(p.sock)
        except (KeyError, ValueError):
            pass
        p.sock.close()

    def fail_probe(self, p, now, why):
        self.probe_stats["failed"] += 1
        started = p.started if p else now
        self.fail_first = started if self.fail_first is None else self.fail_first
        self.fail_last = started
        if len(self.probe_failures) < 20:
            self.probe_failures.append({"at_s": self.rel(p.started if p else now), "error": why})
        if p:
            self.end_probe(p)

    def probe_event(self, p, now):
        if not p.sent:
            err = p.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.fail_probe(p, now, "connect: %s" % errno.errorcode.get(err, err))
                return
            try:
                p.sock.send(b"p\n")
            except OSError as e:
                self.fail_probe(p, now, "send: %s" % e)
                return
            p.sent = True
            self.sel.modify(p.sock, selectors.EVENT_READ, ("probe", p))
            return
        try:
            chunk = p.sock.recv(256)
        except BlockingIOError:
            return
        except OSError as e:
            self.fail_probe(p, now, "recv: %s" % errno.errorcode.get(e.errno, e))
            return
        if not chunk:
            self.fail_probe(p, now, "closed by the peer")
            return
        p.buf += chunk
        if b"\n" in p.buf:
            self.probe_stats["ok"] += 1
            if self.last_probe_ok is not None and p.started - self.last_probe_ok > self.probe_gap:
                self.probe_gap, self.probe_gap_at = p.started - self.last_probe_ok, self.last_probe_ok
            # Starts of successful probes, in start order: a slow success
            # does not move the mark backwards.
            self.last_probe_ok = max(self.last_probe_ok or 0, p.started)
            self.end_probe(p)

    # ------------------------------------------------------------------ loop
    def run(self, duration, control=None):
        self.open_longs()
        self.t0 = now = time.monotonic()
        for c in self.longs:
            c.last_ok = now
            c.next_send = now + random.uniform(*self.interval)
        print("READY", flush=True)
        if control is not None:
            self.sel.register(control, selectors.EVENT_READ, ("control", None))
        end = now + duration
        next_probe = now
        stop = False
        while not stop and now < end:
            wake = min([next_probe, end] + [c.next_send for c in self.longs
                                            if c.broken is None and c.waiting_since is None])
            for key, _ in self.sel.select(max(0.0, min(wake - time.monotonic(), 0.005))):
                kind, obj = key.data
                now = time.monotonic()
                if kind == "long" and obj.broken is None:
                    self.read_long(obj, now)
                elif kind == "probe" and obj in self.probes:
                    self.probe_event(obj, now)
                elif kind == "control":
                    line = os.read(control.fileno(), 256)
                    if not line or b"stop" in line:
                        stop = stop or b"stop" in line
                        self.sel.unregister(control)
            now = time.monotonic()
            for c in self.longs:
                if c.broken is not None:
                    continue
                if c.waiting_since is None and now >= c.next_send:
                    self.send_long(c, now)
                elif c.waiting_since is not None and now - c.waiting_since > self.timeout:
                    self.break_long(c, now, "no answer in %.1f s" % self.timeout)
            for p in list(self.probes):
                if now - p.started > self.probe_timeout:
                    self.fail_probe(p, now, "no answer in %.2f s" % self.probe_timeout)
            while next_probe <= now:
                self.start_probe(now)
                next_probe += self.probe_s
        return self.report(now)

    def report(self, now):
        # A connection still waiting at the end has an open gap: it counts.
        stalled = 0
        for c in self.longs:
            if c.broken is None and c.waiting_since is not None and now - c.last_ok > c.gap:
                c.gap, c.gap_at = now - c.last_ok, c.last_ok
            if c.broken is None and c.waiting_since is not None and now - c.waiting_since > 0.2:
                stalled += 1
        worst = max(self.longs, key=lambda c: c.gap) if self.longs else None
        reals = {}
        for c in self.longs:
            reals[c.real] = reals.get(c.real, 0) + 1
        return {
            "duration_s": round(now - self.t0, 3),
            "long": {
                "connections": len(self.longs),
                "exchanges": sum(c.exchanges for c in self.longs),
                "broken": sum(1 for c in self.longs if c.broken is not None),
                "stalled_at_end": stalled,
                "failures": self.failures,
                "gap_ms": round(worst.gap * 1000, 1) if worst else None,
                "gap_conn": worst.idx if worst else None,
                "gap_at_s": self.rel(worst.gap_at) if worst else None,
                "reals": reals,
            },
            "probes": dict(self.probe_stats, gap_ms=round(self.probe_gap * 1000, 1),
                           gap_at_s=self.rel(self.probe_gap_at), failures=self.probe_failures,
                           fail_window_ms=round((self.fail_last - self.fail_first) * 1000, 1)
                           if self.fail_first is not None else 0.0,
                           fail_first_at_s=self.rel(self.fail_first)),
        }


def summary(result):
    """One line for a log: the figures a reader wants."""
    lg, pr = result["long"], result["probes"]
    return ("long-lived: %d connections, %d exchanges, broken %d, max gap %.0f ms (connection %s at %ss); "
            "probes: %d sent, %d failed (from the first to the last failed: %.0f ms), max gap %.0f ms (at %ss)"
            % (lg["connections"], lg["exchanges"], lg["broken"], lg["gap_ms"] or 0, lg["gap_conn"], lg["gap_at_s"],
               pr["sent"], pr["failed"], pr["fail_window_ms"], pr["gap_ms"], pr["gap_at_s"]))


class Traffic:
    """This module run in the lab's client namespace, from Python."""

    def __init__(self, lab, vip, port=7000, conns=16, probe_ms=3, duration=60, timeout=5.0, probe_timeout=0.5,
                 interval_ms=(10, 20)):
        self.args = ["--vip", vip, "--port", str(port), "--conns", str(conns), "--probe-ms", str(probe_ms),
                     "--duration", str(duration), "--timeout", str(timeout), "--probe-timeout", str(probe_timeout),
                     "--interval-ms", "%g,%g" % tuple(interval_ms)]
        self.lab, self.duration = lab, duration
        self.p = None

    def start(self, ready_timeout=20):
        self.p = subprocess.Popen(["ip", "netns", "exec", self.lab.ns("c"), sys.executable,
                                   os.path.abspath(__file__)] + self.args,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + ready_timeout
        line = b""
        while time.time() < deadline and not line.startswith(b"READY"):
            line = self.p.stdout.readline()
            if not line and self.p.poll() is not None:
                break
        if not line.startswith(b"READY"):
            self.p.kill()
            out, err = self.p.communicate(timeout=10)
            raise RuntimeError("ha_traffic did not get ready: %s %s" % (out.decode(), err.decode()))
        return self

    def stop(self):
        """Stop now; the measurements (dict)."""
        try:
            out, err = self.p.communicate(b"stop\n", timeout=self.duration + 30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            out, err = self.p.communicate(timeout=10)
        lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
        if not lines:
            raise RuntimeError("ha_traffic gave no result (rc %s): %s" % (self.p.returncode, err.decode()[-2000:]))
        return json.loads(lines[-1])

    def kill(self):
        if self.p and self.p.poll() is None:
            self.p.kill()
            self.p.wait(timeout=5)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Long-lived connections and probes to a VIP; JSON figures.")
    ap.add_argument("--vip", required=True)
    ap.add_argument("--port", type=int, default=7000)
    ap.add_argument("--conns", type=int, default=16, help="long-lived connections (default 16)")
    ap.add_argument("--probe-ms", type=float, default=3, help="a new probe connection every N ms (default 3)")
    ap.add_argument("--duration", type=float, default=30, help="seconds at most (default 30)")
    ap.add_argument("--timeout", type=float, default=5.0, help="a long-lived connection without an answer "
                    "this long is broken (default 5 s)")
    ap.add_argument("--probe-timeout", type=float, default=0.5, help="a probe must finish within this (0.5 s)")
    ap.add_argument("--interval-ms", default="10,20", help="MIN,MAX: a long-lived connection's next request "
                    "goes a random time in [MIN, MAX] ms after its last answer (default 10,20)")
    args = ap.parse_args(argv)
    try:
        interval = tuple(float(x) for x in args.interval_ms.split(","))
        if len(interval) != 2 or not 0 <= interval[0] <= interval[1]:
            raise ValueError
    except ValueError:
        ap.error("--interval-ms: expected MIN,MAX in ms with MIN <= MAX, got %r" % args.interval_ms)
    m = Measure(args.vip, args.port, args.conns, args.probe_ms, args.timeout, args.probe_timeout, interval)
    control = sys.stdin if not sys.stdin.isatty() else None
    result = m.run(args.duration, control)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
