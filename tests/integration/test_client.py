"""libsluice against real registry nodes, through the example programs of
examples/ (build/examples/provider and consumer: what a user compiles with
pkg-config): a provider's lifecycle (registration, heartbeats, registering
again with an operator's weight and enabled flag, failing over to another
node, deregistration), a consumer riding through the loss of every registry
node, and the disaster layers (cache directory, failover directory, empty
updates)."""
import json
import os
import re
import shutil
import signal
import subprocess
import time

from backends import HttpBackend
from examples_proc import examples  # noqa: F401 (a fixture)
from helpers import free_port
from registry_node import reg, SVC, TOKEN, ROOT, wait_until  # noqa: F401 (reg is a fixture)

# The programs: the provider and most consumers with libsluice under
# ASan+UBSan; the outage test's consumer as a user builds it (pkg-config,
# shared library), the cache test's linked with libsluice.a.
PROVIDER = "asan/provider"
CONSUMER = "asan/consumer"

# Heartbeats fast enough for a test, a timeout with room for a loaded host.
FAST_HEARTBEAT = {"heartbeat": {"interval": "300ms", "timeout": "3s", "expire_after": "6s"}}


def addr(r):
    return "127.0.0.1:%d" % r.port


def start_provider(examples, regs, iid, port=None, extra=(), tag=None):
    port = port or free_port()
    p = examples(PROVIDER, ["--registries", ",".join(addr(r) for r in regs), "--token", TOKEN,
                              "--service", "web", "--id", iid, "--address", "127.0.0.1", "--port", port,
                              "--datacenter", "dc1", "--region", "r1"] + list(extra), tag=tag or iid)
    p.wait_line(lambda f: f["what"] == "registered", what="the registration")
    p.port = port
    return p


def provider_status(p, pred, what):
    """Asks the provider for its status (SIGUSR1) until pred(fields) holds."""
    def ask():
        start = p.line_count()
        p.signal(signal.SIGUSR1)
        try:
            f = p.wait_line(lambda f: f["what"] == "status", start=start, timeout=2, what="a status line")
        except AssertionError:
            return None
        return f if pred(f) else None
    return wait_until(ask, timeout=30, interval=0.2, what=what)


def find_instance(r, iid):
    """The instance of web, or None (also while the node knows no web)."""
    status, doc = r.get(SVC + "/web")
    if status == 404:
        return None
    assert status == 200, (status, doc)
    return next((i for i in doc["instances"] if i["id"] == iid), None)


def instance_up(r, iid):
    inst = find_instance(r, iid)
    return inst if inst and inst["health"] == "up" else None


# ---- the provider ---------------------------------------------------------------


def test_provider_keeps_operator_settings_across_registry_loss(reg, examples):
    r = reg()
    r.ok("PUT", SVC + "/web", FAST_HEARTBEAT)
    p = start_provider(examples, [r], "p1", extra=["--weight", "50", "--label", "v=2"])
    inst = r.instance("web", "p1")
    assert inst["ephemeral"] is True and inst["weight"] == 50 and inst["enabled"] is True, inst
    assert inst["address"] == "127.0.0.1" and inst["port"] == p.port, inst
    assert inst["datacenter"] == "dc1" and inst["region"] == "r1" and inst["labels"] == {"v": "2"}, inst
    # Heartbeats keep it UP for longer than its timeout (3 s), many times over.
    first = r.metrics()
    deadline = time.time() + 4
    while time.time() < deadline:
        assert instance_up(r, "p1"), r.instance("web", "p1")
        time.sleep(0.2)
    assert r.instance("web", "p1")["last_heartbeat_ms_ago"] < 3000
    assert first != r.metrics()
    # An operator sets the weight and disables it; the provider learns it
    # from its heartbeats.
    r.ok("PATCH", SVC + "/web/instances/p1", {"weight": 7, "enabled": False})
    provider_status(p, lambda f: f["weight"] == 7 and f["enabled"] == 0 and f["registrations"] == 1,
                    "the provider to learn weight 7, disabled")
    # The registry dies and comes back blank: the provider registers again
    # with the operator's settings, not its own first ones.
    r.kill9()
    shutil.rmtree(r.data_dir)
    r.start()
    inst = wait_until(lambda: find_instance(r, "p1"), what="the registration again")
    assert inst["weight"] == 7 and inst["enabled"] is False and inst["ephemeral"] is True, inst
    assert inst["labels"] == {"v": "2"} and inst["port"] == p.port, inst
    provider_status(p, lambda f: f["registrations"] == 2 and f["registered"] == 1, "registrations=2")
    # An instance deleted by hand comes back the same way.
    r.ok("DELETE", SVC + "/web/instances/p1")
    inst = wait_until(lambda: r.instance("web", "p1"), what="the registration after a delete")
    assert inst["weight"] == 7 and inst["enabled"] is False, inst
    provider_status(p, lambda f: f["registrations"] == 3, "registrations=3")
    # An operator's change while it is registered is kept too.
    r.ok("PATCH", SVC + "/web/instances/p1", {"enabled": True})
    provider_status(p, lambda f: f["enabled"] == 1 and f["weight"] == 7, "enabled again")
    # SIGTERM: the provider deregisters and exits 0.
    assert p.stop() == 0, p.describe()
    p.wait_line(lambda f: f["what"] == "deregistered", what="deregistered")
    assert r.instance("web", "p1") is None


def test_heartbeats_do_not_wait_for_the_watch(reg, examples):
    """A provider that also consumes (it subscribes to a service, so the
    client's watcher holds a 30 s blocking query open at the node) keeps
    heartbeating at its interval: the instance never misses its 1.5 s
    timeout."""
    r = reg()
    r.ok("PUT", SVC + "/web", {"heartbeat": {"interval": "300ms", "timeout": "1500ms", "expire_after": "10s"}})
    p = start_provider(examples, [r], "p1", extra=["--subscribe", "web"])
    first = provider_status(p, lambda f: f.get("subscribed_members") == 1, "the provider's own list")
    # Nothing changes at the node now: the watch blocks for its 30 s.
    wait_until(lambda: "sluice_registry_watchers 1\n" in r.metrics(), what="the provider's watch at the node")
    deadline = time.time() + 5
    while time.time() < deadline:
        inst = find_instance(r, "p1")
        assert inst and inst["health"] == "up", inst
        time.sleep(0.2)
    assert "sluice_registry_watchers 1\n" in r.metrics()
    last = provider_status(p, lambda f: f["heartbeats_ok"] >= first["heartbeats_ok"] + 5,
                           "heartbeats going on")
    assert last["heartbeats_failed"] == 0 and last["registrations"] == 1, last
    assert p.stop() == 0


def test_provider_fails_over_to_the_other_node(reg, examples):
    r1, r2 = reg(name="reg1"), reg(name="reg2")
    for r in (r1, r2):
        r.ok("PUT", SVC + "/web", FAST_HEARTBEAT)
    p = start_provider(examples, [r1, r2], "p1")
    # Each client starts at a node of its own choice: find the one it chose.
    holder = wait_until(lambda: next((r for r in (r1, r2) if find_instance(r, "p1")), None),
                        what="a node holding p1")
    other = r2 if holder is r1 else r1
    assert find_instance(other, "p1") is None
    r1_port = holder.port
    holder.kill9()
    wait_until(lambda: instance_up(other, "p1"), what="p1 registered on the other node")
    f = provider_status(p, lambda f: f["registrations"] == 2 and f["node"].endswith(":%d" % other.port),
                        "the provider on the other node")
    assert str(r1_port) not in f["node"]
    # It stays there, heartbeating.
    time.sleep(1)
    assert instance_up(other, "p1")
    assert p.stop() == 0, p.describe()
    assert other.instance("web", "p1") is None


def test_register_errors_are_clear(reg, examples, tmp_path):
    r = reg()
    cases = [
        (["--id", "x", "--address", "127.0.0.1", "--port", "1"], "service"),
        (["--service", "web", "--address", "127.0.0.1", "--port", "1"], "id"),
        (["--service", "web", "--id", "x", "--port", "1", "--listen", "127.0.0.1"], "address"),
        (["--service", "web", "--id", "x", "--address", "not-an-ip", "--listen", "127.0.0.1", "--port", "1"],
         "address"),
        (["--service", "web", "--id", "x", "--address", "127.0.0.1", "--port", "0"], "port"),
        (["--service", "web", "--id", "x", "--address", "127.0.0.1", "--port", "1", "--weight", "10001"],
         "weight"),
        (["--service", "bad name!", "--id", "x", "--address", "127.0.0.1", "--port", "1"], "service"),
    ]
    for i, (args, word) in enumerate(cases):
        if "--port" in args and args[args.index("--port") + 1] == "1":
            args[args.index("--port") + 1] = str(free_port())
        e = examples(PROVIDER, ["--registries", addr(r), "--token", TOKEN] + args, tag="bad%d" % i)
        assert e.wait_exit() == 1, e.describe()
        err = e.stderr_text()
        assert word in err and "provider:" in err, (args, err)
    # A wrong token: the registry's reason comes back.
    e = examples(PROVIDER, ["--registries", addr(r), "--token", "wrong", "--service", "web", "--id", "x",
                              "--address", "127.0.0.1", "--port", free_port()], tag="badtoken")
    assert e.wait_exit() == 1
    assert "401" in e.stderr_text() or "token" in e.stderr_text(), e.stderr_text()
    # No node answers: NULL with the reason, no hang.
    dead = free_port()
    e = examples(PROVIDER, ["--registries", "127.0.0.1:%d" % dead, "--token", TOKEN, "--service", "web",
                              "--id", "x", "--address", "127.0.0.1", "--port", free_port(),
                              "--timeout-ms", "500"], tag="nonode")
    assert e.wait_exit() == 1
    assert "127.0.0.1:%d" % dead in e.stderr_text(), e.stderr_text()
    assert find_instance(r, "x") is None


# ---- the consumer through a registry outage (acceptance item 6) ----------------


def web_service_yaml(backends, check="tcp"):
    lines = ["    - name: web\n",
             "      protect_threshold: 0\n",
             "      health: { type: tcp, interval: 200ms, timeout: 200ms, rise: 1, fall: 2 }\n",
             "      instances:\n"]
    for b in backends:
        lines.append("        - { id: %s, address: 127.0.0.1, port: %d, datacenter: dc1, region: r1 }\n"
                     % (b.name, b.port))
    return "".join(lines)


def start_backends(names):
    out = []
    for n in names:
        b = HttpBackend(name=n)
        b.start()
        out.append(b)
    return out


def healthy_ids(r):
    return sorted(i["id"] for i in r.service("web")["instances"] if i["health"] == "up")


def test_consumer_rides_through_registry_outage(reg, examples):
    """Every registry node is killed while the consumer keeps sending
    requests: every pick still returns an instance. Meanwhile one backend
    stops and the operator's files change (one backend dropped, one added);
    once the nodes are back, requests land only on live instances, the new
    one included."""
    b1, b2, b3, b4 = start_backends(["b1", "b2", "b3", "b4"])
    try:
        nodes = [reg(name="reg%d" % i, services=web_service_yaml([b1, b2, b3])) for i in (1, 2)]
        for r in nodes:
            wait_until(lambda: healthy_ids(r) == ["b1", "b2", "b3"], what="three healthy backends")
        c = examples("consumer", ["--registries", ",".join(addr(r) for r in nodes), "--service", "web",
                                  "--datacenter", "dc1", "--region", "r1", "--interval-ms", "5",
                                  "--report-ms", "300", "--timeout-ms", "500", "--request-timeout-ms", "500",
                                  "--watch-wait-ms", "2000", "--pull-interval-ms", "1000"])
        first = c.wait_line(lambda f: f["what"] == "window" and len(f.get("instances", {})) == 3,
                            what="requests on all three backends")
        assert first["failed_picks"] == 0, first
        # Every node dies.
        for r in nodes:
            r.kill9()
        mark = c.line_count()
        # Meanwhile b3 stops, and the operator drops it from the files and adds b4.
        b3.stop()
        for r in nodes:
            r.write_config(services=web_service_yaml([b1, b2, b4]))
        # A few seconds with no registry: picks keep returning instances
        # (b1, b2 and, until avoided, the dead b3).
        outage = []
        deadline = time.time() + 4
        while time.time() < deadline:
            outage.append(c.wait_line(lambda f: f["what"] == "window", start=mark, what="a window"))
            mark = outage[-1]["index"] + 1
        assert sum(w["requests"] for w in outage) > 20, outage
        assert all(w["failed_picks"] == 0 for w in outage), outage
        assert sum(w.get("instances", {}).get("b1", 0) + w.get("instances", {}).get("b2", 0)
                   for w in outage) > 0, outage
        # The nodes come back (same data, the new files).
        for r in nodes:
            r.start()
        for r in nodes:
            wait_until(lambda: healthy_ids(r) == ["b1", "b2", "b4"], what="the new list on a node")
        # From some window on, requests land on b1, b2 and b4 only, none fails.
        settled = c.wait_line(lambda f: f["what"] == "window" and f["index"] >= mark and f["failed_requests"] == 0
                              and set(f.get("instances", {})) == {"b1", "b2", "b4"},
                              timeout=30, what="requests on the live instances only")
        for _ in range(3):
            w = c.wait_line(lambda f: f["what"] == "window", start=settled["index"] + 1, what="a window")
            assert w["failed_requests"] == 0 and w["failed_picks"] == 0, w
            assert set(w.get("instances", {})) <= {"b1", "b2", "b4"}, w
            settled = w
        assert c.stop() == 0
        s = c.wait_line(lambda f: f["what"] == "summary", what="the summary")
        assert s["failed_picks"] == 0, s
        assert s["requests"] > 100 and s["mismatched"] == 0, s
        assert "b3" not in s["instances"] or s["instances"]["b3"] < s["instances"]["b1"], s
    finally:
        for b in (b1, b2, b3, b4):
            b.stop()


def test_consumer_and_providers_ride_through_registry_outage(reg, examples):
    """The same with providers (the example program) as the backends, all
    three programs on libsluice: the registry node is killed, a provider
    stops meanwhile (its deregistration cannot reach anyone), and once the
    node is back the stopped one goes DOWN, a new provider registers, the
    others' heartbeats resume, and requests land only on live providers."""
    # A short grace after the restart, so the silent instance goes DOWN soon.
    r = reg(extra="  expiry: { grace: 500ms }\n")
    r.ok("PUT", SVC + "/web", FAST_HEARTBEAT)
    providers = {iid: start_provider(examples, [r], iid) for iid in ("p1", "p2", "p3")}
    c = examples(CONSUMER, ["--registries", addr(r), "--service", "web", "--datacenter", "dc1", "--region", "r1",
                              "--interval-ms", "5", "--report-ms", "300", "--timeout-ms", "500",
                              "--request-timeout-ms", "500", "--pull-interval-ms", "1000"])
    c.wait_line(lambda f: f["what"] == "window" and len(f.get("instances", {})) == 3,
                what="requests on all three providers")
    r.kill9()
    mark = c.line_count()
    # p3 stops while no node answers: it cannot deregister (exit status 2).
    assert providers["p3"].stop() == 2, providers["p3"].describe()
    deadline = time.time() + 3
    outage = []
    while time.time() < deadline:
        outage.append(c.wait_line(lambda f: f["what"] == "window", start=mark, what="a window"))
        mark = outage[-1]["index"] + 1
    assert all(w["failed_picks"] == 0 for w in outage), outage
    assert sum(w["ok"] for w in outage) > 20, outage
    r.start()
    providers["p4"] = start_provider(examples, [r], "p4")
    wait_until(lambda: instance_up(r, "p1") and instance_up(r, "p2") and instance_up(r, "p4")
               and not instance_up(r, "p3"), what="p1, p2, p4 up and p3 not")
    settled = c.wait_line(lambda f: f["what"] == "window" and f["index"] >= mark and f["failed_requests"] == 0
                          and set(f.get("instances", {})) == {"p1", "p2", "p4"},
                          timeout=30, what="requests on the live providers only")
    for _ in range(3):
        w = c.wait_line(lambda f: f["what"] == "window", start=settled["index"] + 1, what="a window")
        assert w["failed_requests"] == 0 and w["failed_picks"] == 0, w
        assert set(w.get("instances", {})) <= {"p1", "p2", "p4"}, w
        settled = w
    assert c.stop() == 0
    s = c.wait_line(lambda f: f["what"] == "summary", what="the summary")
    assert s["failed_picks"] == 0 and s["mismatched"] == 0, s
    # The providers that lived through it kept heartbeating and deregister cleanly.
    for iid in ("p1", "p2", "p4"):
        provider_status(providers[iid], lambda f: f["registered"] == 1 and f["heartbeats_ok"] > 0,
                        iid + " registered")
        assert providers[iid].stop() == 0, providers[iid].describe()
    assert [i["id"] for i in r.service("web")["instances"]] == ["p3"] or not r.service("web")["instances"]


# ---- disaster layers ------------------------------------------------------------


def register(r, backends):
    for b in backends:
        r.ok("PUT", SVC + "/web/instances/" + b.name, {"address": "127.0.0.1", "port": b.port,
                                                        "datacenter": "dc1", "region": "r1"})


def run_consumer(examples, args, tag, program=CONSUMER):
    c = examples(program, ["--service", "web", "--interval-ms", "2", "--report-ms", "0"] + list(args), tag=tag)
    assert c.wait_exit(60) == 0, c.describe()
    return (c.wait_line(lambda f: f["what"] == "start", what="the ready line"),
            c.wait_line(lambda f: f["what"] == "summary", what="the summary"))


def test_cache_feeds_a_consumer_started_while_no_registry_answers(reg, examples, tmp_path):
    b1, b2 = start_backends(["b1", "b2"])
    cache = tmp_path / "cache"
    try:
        r = reg()
        register(r, [b1, b2])
        ready, s = run_consumer(examples, ["--registries", addr(r), "--cache-dir", cache, "--requests", "40"],
                                "run1")
        assert ready["source"] == "registry" and s["failed_picks"] == 0, s
        cached = json.loads((cache / "web.json").read_text())
        assert sorted(i["id"] for i in cached["instances"]) == ["b1", "b2"], cached
        assert not [f for f in os.listdir(cache) if f != "web.json"], os.listdir(cache)
        # No registry at all now: the second run picks from the cache at once.
        r.kill9()
        ready, s = run_consumer(examples, ["--registries", addr(r), "--cache-dir", cache, "--requests", "40",
                                           "--ready-ms", "0"], "run2", program="consumer-static")
        assert ready["ready"] == 1 and ready["source"] == "cache" and ready["members"] == 2, ready
        assert s["failed_picks"] == 0 and s["ok"] == 40, s
        assert set(s["instances"]) == {"b1", "b2"}, s
        # Without the cache, the same start has nothing to pick from.
        ready, s = run_consumer(examples, ["--registries", addr(r), "--requests", "5", "--ready-ms", "0"],
                                "nocache")
        assert ready["ready"] == 0 and s["failed_picks"] == 5, s
        # A corrupt cache file is not believed (and does not crash).
        (cache / "web.json").write_text('{"name": "web", "instances": [{"id": ')
        ready, s = run_consumer(examples, ["--registries", addr(r), "--cache-dir", cache, "--requests", "5",
                                           "--ready-ms", "0"], "corrupt")
        assert ready["ready"] == 0 and s["failed_picks"] == 5, s
    finally:
        b1.stop()
        b2.stop()


def test_failover_dir_overrides_while_the_switch_exists(reg, examples, tmp_path):
    b1, b2, b9 = start_backends(["b1", "b2", "b9"])
    fo = tmp_path / "failover"
    fo.mkdir()
    cache = tmp_path / "cache"
    try:
        r = reg()
        register(r, [b1, b2])
        # The operator's hand-written list, in the cache file's format: take
        # one the library wrote and change its instances.
        run_consumer(examples, ["--registries", addr(r), "--cache-dir", cache, "--requests", "5"], "seed")
        doc = json.loads((cache / "web.json").read_text())
        doc["instances"] = [dict(doc["instances"][0], id="b9", port=b9.port)]
        (fo / "web.json").write_text(json.dumps(doc))
        # Without the switch file, the registry's list.
        ready, s = run_consumer(examples, ["--registries", addr(r), "--failover-dir", fo, "--requests", "30"],
                                "noswitch")
        assert set(s["instances"]) == {"b1", "b2"} and s["failed_picks"] == 0, s
        # With it, the failover list only, though the registry answers.
        (fo / "switch").write_text("")
        ready, s = run_consumer(examples, ["--registries", addr(r), "--failover-dir", fo, "--requests", "30",
                                           "--ready-ms", "0"], "switch")
        assert ready["source"] == "failover" and ready["ready"] == 1, ready
        assert set(s["instances"]) == {"b9"} and s["ok"] == 30 and s["failed_picks"] == 0, s
        # Removing the switch while it runs gives the registry's list back.
        c = examples(CONSUMER, ["--registries", addr(r), "--service", "web", "--failover-dir", fo,
                                  "--interval-ms", "5", "--report-ms", "300"], tag="live")
        c.wait_line(lambda f: f["what"] == "window" and f["source"] == "failover", what="a failover window")
        (fo / "switch").unlink()
        w = c.wait_line(lambda f: f["what"] == "window" and f["source"] == "registry"
                        and set(f.get("instances", {})) == {"b1", "b2"}, timeout=30, what="the registry's list")
        assert w["failed_picks"] == 0
        assert c.stop() == 0
    finally:
        for b in (b1, b2, b9):
            b.stop()


def test_empty_updates_ignored_unless_an_operator_emptied_the_service(reg, examples, tmp_path):
    b1, b2 = start_backends(["b1", "b2"])
    try:
        r = reg()
        register(r, [b1, b2])
        c = examples(CONSUMER, ["--registries", addr(r), "--service", "web", "--interval-ms", "5",
                                  "--report-ms", "300", "--watch-wait-ms", "1000", "--pull-interval-ms", "1000",
                                  "--request-timeout-ms", "500"], tag="c")
        c.wait_line(lambda f: f["what"] == "window" and len(f.get("instances", {})) == 2, what="both backends")
        # The node restarts blank: it does not know the service (404). Not
        # a real emptying: the consumer keeps its list, across pulls.
        r.kill9()
        shutil.rmtree(r.data_dir)
        r.start()
        mark = c.line_count()
        deadline = time.time() + 4  # several pulls and watches
        while time.time() < deadline:
            w = c.wait_line(lambda f: f["what"] == "window", start=mark, what="a window")
            mark = w["index"] + 1
            assert w["failed_picks"] == 0 and w["members"] == 2, w
        assert w["ignored_empty"] > 0, w
        # Registered again, then emptied by an operator on the same node:
        # that one is applied.
        register(r, [b1, b2])
        w = c.wait_line(lambda f: f["what"] == "window" and f["index"] >= mark and f["registry_index"] > 0,
                        what="the list from the new node")
        mark = w["index"] + 1
        for b in (b1, b2):
            r.ok("DELETE", SVC + "/web/instances/" + b.name)
        w = c.wait_line(lambda f: f["what"] == "window" and f["index"] >= mark and f["members"] == 0,
                        timeout=20, what="the emptied list applied")
        w = c.wait_line(lambda f: f["what"] == "window" and f["index"] > w["index"], what="a window after")
        assert w["failed_picks"] == w["requests"] and w["requests"] > 0, w
        assert c.stop() == 0
    finally:
        b1.stop()
        b2.stop()


# ---- the library's symbols ---------------------------------------------------------


def test_exports_are_exactly_the_headers_functions():
    """libsluice.so exports the functions of include/sluice/sluice.h, every
    one of them, and nothing else."""
    so = os.path.join(ROOT, "build", "libsluice.so")
    assert os.path.exists(so), "build/libsluice.so is not built"
    out = subprocess.run(["nm", "-D", "--defined-only", so], capture_output=True, text=True, check=True).stdout
    names = {line.split()[-1].split("@")[0] for line in out.splitlines() if line.strip()}
    names.discard("LIBSLUICE_0")  # the version script's node
    header = open(os.path.join(ROOT, "include", "sluice", "sluice.h")).read()
    declared = set(re.findall(r"\b(sluice_[a-z_]+)\(", header))
    assert "sluice_register" in declared and "sluice_pick" in declared
    assert names == declared, ("exported, not declared: %s; declared, not exported: %s"
                               % (sorted(names - declared), sorted(declared - names)))
