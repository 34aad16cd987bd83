"""`make demo-registry` runs to its end and shows what it says it shows:
locality order, weights, the tiers taking over, fail-open; then a consumer, the
DNS agent and a discovered proxy pool riding through a registry outage."""
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

    # Part two: callers that balance by themselves.
    def requests(title):
        return {m.group(1): int(m.group(2)) for m in re.finditer(r"^\s+(api-\d)\s+(\d+) requests",
                                                                 section(title), re.M)}
    agent = section("== sluice agent on 127.0.0.1:5300")
    assert set(re.findall(r"(127\.0\.2\.\d)\s+\d+ of 200 answers", agent)) == {"127.0.2.1", "127.0.2.2"}, agent
    assert set(requests("== sluice proxy on 127.0.0.1:8088")) == {"api-1", "api-2", "api-3"}
    assert set(requests("== api-4 joins in dc2")) == {"api-1", "api-2", "api-3", "api-4"}
    assert set(requests("== api-1 stops")) == {"api-2", "api-3", "api-4"}
    outage = section("== the registry dies (kill -9)")
    assert set(requests("== the registry dies (kill -9)")) == {"api-2", "api-3", "api-4"}, outage
    assert re.search(r"IN\s+A\s+127\.0\.2\.2", outage), outage          # the agent's last copy: dc1's one left
    assert "failed_picks=0" in outage, outage
    assert re.search(r"^\s+api\s+3/3\s", section("== the registry restarts"), re.M), out
    summary = section("== the consumer's summary")
    assert re.search(r"^\s+failed_picks=0$", summary, re.M), summary
    assert int(re.search(r"^\s+requests=(\d+)$", summary, re.M).group(1)) > 0, summary
