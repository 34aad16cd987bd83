"""`make demo-registry` runs to its end and shows what it says it shows:
locality order, weights, the tiers taking over, fail-open."""
import os
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_demo_registry_runs_and_shows_fail_open():
    env = dict(os.environ, SLUICE=os.path.join("build", "sluice-asan"), ASAN_OPTIONS="detect_leaks=1")
    p = subprocess.run(["bash", "scripts/demo-registry.sh"], cwd=ROOT, capture_output=True, text=True, timeout=240,
                       env=env)
    out = re.sub(r"\x1b\[[0-9;]*m", "", p.stdout)
    assert p.returncode == 0, out[-3000:] + p.stderr[-3000:]
    assert "demo done: everything it started is stopped" in out
    assert "Sanitizer" not in out + p.stderr and "runtime error" not in out + p.stderr

    def section(title):
        start = out.index(title)
        end = out.find("\n== ", start + 1)
        return out[start:end if end > 0 else len(out)]

    def counts(title):
        return {m.group(1): int(m.group(2)) for m in re.finditer(r"^\s+(127\.0\.1\.\d)\s+(\d+) answers",
                                                                 section(title), re.M)}
    dc1 = counts("== a caller in dc1 (10.1.0.0/24)")
    assert set(dc1) == {"127.0.1.1", "127.0.1.2"} and dc1["127.0.1.2"] > dc1["127.0.1.1"], dc1   # 300 vs 100
    assert set(counts("== a caller in dc9")) == {"127.0.1.1", "127.0.1.2", "127.0.1.3", "127.0.1.6"}
    assert set(counts("== a caller in dc3")) == {"127.0.1.4", "127.0.1.5"}
    assert set(counts("== a caller in dc1 now gets the rest of region r1")) == {"127.0.1.3", "127.0.1.6"}
    assert set(counts("== dc2 fails too")) == {"127.0.1.4", "127.0.1.5"}
    assert re.search(r"^\s+shop\s+1/6\s+6\s+fail-open", out, re.M), out
    last = section("== six records per answer now")
    answers = re.findall(r"IN\s+A\s+(127\.0\.1\.\d)", last)
    assert len(answers) == 6 and answers[0] == "127.0.1.5", answers      # the one healthy instance first
