"""`sluice registry list|show|register|deregister|set|watch|answer`: the
client verbs against a running registry node, checked through the API."""
import os
import signal
import subprocess
import time

import pytest

from registry_node import Registry, SLUICE_BIN, TOKEN, wait_until


@pytest.fixture
def reg(tmp_path):
    r = Registry(tmp_path, extra="  subnets:\n    - { cidr: 10.2.0.0/16, datacenter: dc2, region: r1 }\n").start()
    yield r
    r.stop()
    r.assert_clean()


def cli(reg, *args, token=TOKEN, use_config=False, timeout=30):
    """Run a client verb; (exit code, stdout, stderr)."""
    where = ["-c", str(reg.config_path)] if use_config else ["--api", "127.0.0.1:%d" % reg.port]
    if token and not use_config:
        where += ["--token", token]
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1")
    env.pop("SLUICE_TOKEN", None)
    p = subprocess.run([SLUICE_BIN, "registry", args[0]] + where + list(args[1:]), capture_output=True, text=True,
                       timeout=timeout, env=env)
    assert "Sanitizer" not in p.stderr and "runtime error" not in p.stderr, p.stderr
    return p.returncode, p.stdout, p.stderr


def test_register_show_set_deregister(reg):
    rc, out, err = cli(reg, "register", "web", "10.2.0.5:80", "--datacenter", "dc2", "--region", "r1", "--weight",
                       "300", "--label", "v=3", "--label", "tier=gold")
    assert rc == 0, err
    assert "registered 10.2.0.5:80 in web (persistent" in out
    inst = reg.instance("web", "10.2.0.5:80")
    assert inst["weight"] == 300 and inst["datacenter"] == "dc2" and inst["region"] == "r1"
    assert inst["labels"] == {"v": "3", "tier": "gold"} and inst["ephemeral"] is False and inst["enabled"] is True

    rc, out, err = cli(reg, "register", "web", "[fd00::7]:8080", "--id", "v6-a@b", "--ephemeral", "--disabled")
    assert rc == 0, err
    inst = reg.instance("web", "v6-a@b")          # the id went through the path percent-encoded (@ as %40)
    assert inst["address"] == "fd00::7" and inst["port"] == 8080
    assert inst["ephemeral"] is True and inst["enabled"] is False

    rc, out, err = cli(reg, "show", "web")
    assert rc == 0, err
    assert "service web" in out
    lines = [l for l in out.splitlines() if l.startswith("10.2.0.5:80")]
    assert len(lines) == 1 and "300" in lines[0] and "dc2" in lines[0] and "persistent" in lines[0]
    assert any(l.startswith("v6-a@b") and "[fd00::7]:8080" in l and "ephemeral" in l for l in out.splitlines())

    rc, out, err = cli(reg, "set", "web", "10.2.0.5:80", "--weight", "50", "--disable")
    assert rc == 0, err
    inst = reg.instance("web", "10.2.0.5:80")
    assert inst["weight"] == 50 and inst["enabled"] is False
    rc, _, err = cli(reg, "set", "web", "10.2.0.5:80", "--enable")
    assert rc == 0, err
    assert reg.instance("web", "10.2.0.5:80")["enabled"] is True

    rc, out, err = cli(reg, "deregister", "web", "10.2.0.5:80")
    assert rc == 0 and "deregistered 10.2.0.5:80 from web" in out, err
    assert reg.instance("web", "10.2.0.5:80") is None


def test_service_settings_and_list(reg):
    rc, out, err = cli(reg, "set", "api", "--settings", '{"protect_threshold": 0.9, "answer_count": 3, "dns_ttl": 7}')
    assert rc == 0, err
    settings = reg.service("api")["settings"]
    assert settings["protect_threshold"] == 0.9 and settings["answer_count"] == 3 and settings["dns_ttl"] == 7
    rc, out, _ = cli(reg, "show", "api")      # the ratio reads back as it was set, not 0.90000000000000002
    assert rc == 0 and '"protect_threshold":0.9}' in out, out
    for i, dc in ((1, "dc1"), (2, "dc2"), (3, "dc2")):
        assert cli(reg, "register", "api", "10.0.0.%d:80" % i, "--datacenter", dc, "--region", "r1")[0] == 0
    rc, out, err = cli(reg, "list")
    assert rc == 0, err
    row = [l for l in out.splitlines() if l.startswith("api ")]
    assert len(row) == 1
    assert "3/3" in row[0] and "dc1/r1 1/1" in row[0] and "dc2/r1 2/2" in row[0]
    assert "self-preservation off" in out
    rc, out, _ = cli(reg, "list", "--json")
    assert rc == 0 and '"services"' in out


def test_fail_open_shows_in_list(reg):
    # Three persistent instances, two of them disabled-by-health: a TCP check
    # against ports nothing listens on, with a threshold that the one left
    # cannot meet.
    assert cli(reg, "set", "db", "--settings",
               '{"protect_threshold": 0.6, "health": {"type": "tcp", "interval": "200ms", "timeout": "100ms",'
               ' "rise": 1, "fall": 1}}')[0] == 0
    for port in (1, 2, 3):
        assert cli(reg, "register", "db", "127.0.0.1:%d" % port)[0] == 0
    wait_until(lambda: all(i["health"] == "down" for i in reg.service("db")["instances"]), what="all down")
    rc, out, err = cli(reg, "list")
    row = [l for l in out.splitlines() if l.startswith("db ")]
    assert rc == 0 and "0/3" in row[0] and "fail-open" in row[0], out


def test_answer_explains(reg):
    for ip, dc in (("10.1.0.1", "dc1"), ("10.2.0.1", "dc2")):
        assert cli(reg, "register", "web", ip + ":80", "--datacenter", dc, "--region", "r1")[0] == 0
    rc, out, err = cli(reg, "answer", "web", "--client", "10.2.3.4")
    assert rc == 0, err
    assert out.startswith("tier datacenter")
    assert "10.2.0.1:80" in out and "10.1.0.1:80" not in out
    rc, out, err = cli(reg, "answer", "web", "--datacenter", "dc9", "--region", "r1", "--family", "srv")
    assert rc == 0, err
    assert out.startswith("tier region") and "priority 1" in out


def test_watch_once_prints_the_change(reg):
    assert cli(reg, "register", "web", "10.1.0.1:80")[0] == 0
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1")
    w = subprocess.Popen([SLUICE_BIN, "registry", "watch", "--api", "127.0.0.1:%d" % reg.port, "web", "--once",
                          "--wait", "30s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(0.5)          # the watcher parks on the current index
    assert cli(reg, "register", "web", "10.1.0.2:80")[0] == 0
    out, err = w.communicate(timeout=30)
    assert w.returncode == 0, err
    assert "web healthy 2/2" in out


def test_keepalive_heartbeats_then_deregisters(reg):
    reg.ok("PUT", "/api/registry/services/eph",
           {"heartbeat": {"interval": "200ms", "timeout": "600ms", "expire_after": "5s"}})
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1", SLUICE_TOKEN=TOKEN)
    p = subprocess.Popen([SLUICE_BIN, "registry", "register", "--api", "127.0.0.1:%d" % reg.port, "eph",
                          "10.5.0.1:80", "--ephemeral", "--keepalive"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    wait_until(lambda: reg.instance("eph", "10.5.0.1:80") is not None, what="registered")
    time.sleep(1.5)          # well past the 600 ms timeout: only heartbeats keep it up
    assert reg.instance("eph", "10.5.0.1:80")["health"] == "up"
    # An operator's weight and disable, learnt from the heartbeats' answers...
    patched = time.time()
    reg.ok("PATCH", "/api/registry/services/eph/instances/10.5.0.1:80", {"weight": 7, "enabled": False})
    wait_until(lambda: reg.instance("eph", "10.5.0.1:80")["last_heartbeat_ms_ago"]
               < (time.time() - patched) * 1000 - 100, what="a heartbeat since the change")
    # ...survive when the registry forgets it (deregistered behind its back):
    # it registers again, with them.
    reg.ok("DELETE", "/api/registry/services/eph/instances/10.5.0.1:80")
    inst = wait_until(lambda: reg.instance("eph", "10.5.0.1:80"), what="registered again")
    assert inst["weight"] == 7 and inst["enabled"] is False, inst
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=15)
    assert p.returncode == 0, err
    assert "re-registered" in out and "deregistered 10.5.0.1:80 from eph" in out
    assert reg.instance("eph", "10.5.0.1:80") is None


def test_token_from_config_and_errors(reg):
    rc, out, err = cli(reg, "register", "web", "10.1.0.1:80", token=None)
    assert rc == 1 and "401" in err
    rc, out, err = cli(reg, "register", "web", "10.1.0.1:80", token=None, use_config=True)
    assert rc == 0, err
    rc, _, err = cli(reg, "show", "nope")
    assert rc == 1 and "404" in err and "nope" in err
    rc, _, err = cli(reg, "register", "web", "10.1.0.1")
    assert rc == 1 and "ADDRESS:PORT" in err
    rc, _, err = cli(reg, "register", "web", "10.1.0.1:80", "--weight", "10001")
    assert rc == 1 and "0 to 10000" in err
    rc, _, err = cli(reg, "set", "web", "10.1.0.1:80")
    assert rc == 1 and "--weight" in err
    rc, _, err = cli(reg, "set", "web", "--settings", '{"protect_threshold": 2}')
    assert rc == 1 and "400" in err and "protect_threshold" in err
    rc, _, err = cli(reg, "watch", "web", "--wait", "soon")
    assert rc == 1 and "--wait" in err
    p = subprocess.run([SLUICE_BIN, "registry", "list", "--api", "127.0.0.1:1"], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 1 and "cannot reach" in p.stderr
