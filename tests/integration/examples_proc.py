"""The example programs of examples/ run as real clients of the registry: a
process with its stdout read line by line on a thread. `make examples`
builds them as a user does, with pkg-config against build/libsluice.so
("provider", "consumer", and "consumer-static" against libsluice.a), and
with libsluice's sources compiled in under ASan+UBSan ("asan/provider",
"asan/consumer"), whose reports fail the test."""
import os
import signal
import subprocess
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "build", "examples")


def example_path(name):
    path = os.path.join(EXAMPLES, name)
    if not os.access(path, os.X_OK):
        pytest.fail("%s is not built: run `make examples`" % path)
    return path


def parse_fields(line):
    """'what k=v k=v' -> {"what": what, k: v}; the instances= and failed=
    fields become {id: count}, numbers become ints."""
    words = line.split()
    out = {"what": words[0] if words else ""}
    for w in words[1:]:
        k, sep, v = w.partition("=")
        if not sep:
            continue
        if k in ("instances", "failed"):
            counts = {}
            for item in filter(None, v.split(",")):
                iid, _, n = item.rpartition(":")
                counts[iid] = int(n)
            out[k] = counts
        else:
            out[k] = int(v) if v.isdigit() else v
    return out


class Example:
    """One running example program. Its stdout lines are kept in .lines;
    its stderr goes to a log file next to the test's other logs."""

    def __init__(self, tmp_path, name, args, tag=None):
        self.name = name
        self.tag = (tag or name).replace("/", "-")
        self.log_path = tmp_path / (self.tag + ".stderr")
        self.lines = []
        self.cond = threading.Condition()
        self.err = open(self.log_path, "ab")
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        self.proc = subprocess.Popen([example_path(name)] + [str(a) for a in args], stdout=subprocess.PIPE,
                                     stderr=self.err, env=env, text=True, bufsize=1)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def stderr_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def describe(self):
        with self.cond:
            out = "\n".join(self.lines[-30:])
        return "%s stdout (last lines):\n%s\nstderr:\n%s" % (self.tag, out, self.stderr_text()[-3000:])

    def wait_line(self, pred, timeout=20.0, start=0, what="a line"):
        """The first line (from index start) for which pred(fields) holds,
        as parsed fields; waits up to timeout."""
        deadline = time.time() + timeout
        with self.cond:
            i = start
            while True:
                while i < len(self.lines):
                    f = parse_fields(self.lines[i])
                    f["index"] = i
                    i += 1
                    if pred(f):
                        return f
                left = deadline - time.time()
                if left <= 0 or (self.proc.poll() is not None and not self.reader.is_alive()):
                    raise AssertionError("timed out waiting for %s\n%s" % (what, self.describe()))
                self.cond.wait(min(left, 0.2))

    def line_count(self):
        with self.cond:
            return len(self.lines)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=30.0):
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            raise AssertionError("%s did not exit\n%s" % (self.tag, self.describe()))
        self.reader.join(timeout=5)
        self.err.close()
        return rc

    def stop(self, timeout=30.0):
        """SIGTERM and the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        return self.wait_exit(10)

    def assert_clean(self):
        text = self.stderr_text()
        for bad in ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer"):
            assert bad not in text, "sanitizer report from %s:\n%s" % (self.tag, text[-4000:])


@pytest.fixture
def examples(tmp_path):
    """A factory of running example programs; each still running at the end
    is killed, and every one's stderr is checked for sanitizer reports."""
    started = []

    def run(name, args, tag=None):
        e = Example(tmp_path, name, args, tag)
        started.append(e)
        return e
    yield run
    for e in started:
        if e.proc.poll() is None:
            e.kill()
    for e in started:
        e.assert_clean()
