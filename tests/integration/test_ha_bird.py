"""The BIRD side of HA end to end: a BIRD configured and started by Sluice's
own code (src/ha) speaks BGP with BFD to a router, and an address put on the
announce interface becomes a host route at the router.

Topology (network namespaces this test creates and removes, prefixed s12b-):

    router  10.121.0.1/24 --veth-- 10.121.0.2/24  lb
    BIRD (the test's config:                       BIRD started by Sluice's
    passive BGP, AS 65000, BFD,                    bird_proc_apply from the
    kernel export)                                 ha: section (AS 65010)

The LB side runs tests/integration/ha_birdc_probe.c, compiled here against
the sanitizer build's archives: `apply` loads the file's ha: section and runs
bird_proc_apply (write the BIRD file atomically, reuse a BIRD that answers
on the control socket or start one); the other commands read BIRD's state
through birdc.c. `sluice ha config -c FILE` must print the very file that
apply writes.

The announce device is a persistent tun device made by `ip tuntap` here (the
daemon's is a tun device whose descriptor it holds; BIRD's direct protocol
sees both alike). They live in the LB namespace and go with it.

Needs root, `ip`, bird2 and cc; skips otherwise. Every wait is bounded;
both BIRDs are stopped and the namespaces removed at teardown.
"""
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLUICE_BIN = os.environ.get("SLUICE_BIN", os.path.join(ROOT, "build", "sluice-asan"))
BIRD = "/usr/sbin/bird"
PROBE_SRC = os.path.join(ROOT, "tests", "integration", "ha_birdc_probe.c")
LIBS = ["-lyaml", "-ljansson", "-lsqlite3", "-lcurl", "-lssl", "-lcrypto", "-lnghttp2", "-lm", "-lpthread"]

TAG = "s12b-%d" % (os.getpid() % 10000)
NS_R, NS_LB = TAG + "r", TAG + "lb"
VETH_R, VETH_LB = "s12bv%dr" % (os.getpid() % 10000), "s12bv%dl" % (os.getpid() % 10000)
ROUTER_IP, LB_IP = "10.121.0.1", "10.121.0.2"
VIP, STANDIN = "10.99.0.5", "10.99.0.50"
LB_ASN, ROUTER_ASN = 65010, 65000
BGP_PROTO = "sluice_bgp_10_121_0_1"
WAIT = 30.0

needs_lab = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip") or not os.access(BIRD, os.X_OK) or not shutil.which("cc"),
    reason="needs root, ip, bird2 and cc")


def sh(*args, check=True):
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=30)


def in_ns(ns, *args, check=True):
    return sh("ip", "netns", "exec", ns, *args, check=check)


def wait_for(what, fn, timeout=WAIT):
    """Poll fn() until it returns something true; fail with its last value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.1)
    pytest.fail("timed out after %.0fs waiting for %s (last: %r)" % (timeout, what, last))


def stop_pidfile(path):
    try:
        pid = int(open(path).read().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


ROUTER_CONF = """\
router id {router_ip};
log "{dir}/router.log" all;
protocol device {{}}
protocol bfd {{ interface "*" {{ interval 100 ms; multiplier 3; }}; }}
protocol kernel {{ ipv4 {{ import none; export all; }}; }}
protocol bgp lb1 {{
  local {router_ip} as {router_asn};
  neighbor {lb_ip} as {lb_asn};
  passive;
  bfd on;
  ipv4 {{ import all; export none; }};
  ipv6 {{ import all; export none; }};
}}
"""

LB_YAML = """\
ha:
  node: lb1
  zone: b
  priority: {priority}
  asn: {lb_asn}
  router_id: {lb_ip}
  neighbors:
    - address: {router_ip}
      asn: {router_asn}
  bfd: {{ interval: 100ms, multiplier: 3 }}
  bird:
    control_socket: {dir}/lb/bird.ctl
    config_file: {dir}/lb/bird.conf
    pid_file: {dir}/lb/bird.pid
    log_file: {dir}/lb-bird.log
"""


@pytest.fixture
def lab(tmp_path):
    d = str(tmp_path)
    probe = os.path.join(d, "ha_birdc_probe")
    asan = os.path.join(ROOT, "build", "asan")
    archives = [os.path.join(asan, "libsluice-%s.a" % l) for l in ("ha", "core", "client", "lib")]
    missing = [a for a in archives if not os.path.exists(a)]
    if missing:
        pytest.skip("build the sanitizer archives first (make build/sluice-asan): missing %s" % missing)
    sh("cc", "-std=gnu11", "-D_GNU_SOURCE", "-I" + os.path.join(ROOT, "src"), "-I" + os.path.join(ROOT, "include"),
       "-fsanitize=address,undefined", "-g", "-o", probe, PROBE_SRC, *archives, *LIBS)
    made = []
    try:
        for ns in (NS_R, NS_LB):
            sh("ip", "netns", "add", ns)
            made.append(ns)
            in_ns(ns, "ip", "link", "set", "lo", "up")
        sh("ip", "link", "add", VETH_R, "netns", NS_R, "type", "veth", "peer", "name", VETH_LB, "netns", NS_LB)
        in_ns(NS_R, "ip", "addr", "add", ROUTER_IP + "/24", "dev", VETH_R)
        in_ns(NS_LB, "ip", "addr", "add", LB_IP + "/24", "dev", VETH_LB)
        in_ns(NS_R, "ip", "link", "set", VETH_R, "up")
        in_ns(NS_LB, "ip", "link", "set", VETH_LB, "up")
        fmt = dict(dir=d, router_ip=ROUTER_IP, lb_ip=LB_IP, router_asn=ROUTER_ASN, lb_asn=LB_ASN)
        with open(os.path.join(d, "router.conf"), "w") as f:
            f.write(ROUTER_CONF.format(**fmt))
        in_ns(NS_R, BIRD, "-c", os.path.join(d, "router.conf"), "-s", os.path.join(d, "router.ctl"),
              "-P", os.path.join(d, "router.pid"))
        yield dict(dir=d, probe=probe, fmt=fmt)
    finally:
        for pidfile in ("router.pid", "lb/bird.pid"):
            stop_pidfile(os.path.join(d, pidfile))
        for ns in made:
            sh("ip", "netns", "del", ns, check=False)


def write_lb_yaml(lab, priority):
    path = os.path.join(lab["dir"], "lb.yaml")
    with open(path, "w") as f:
        f.write(LB_YAML.format(priority=priority, **lab["fmt"]))
    return path


def probe(lab, *args, check=True):
    out = in_ns(NS_LB, lab["probe"], *args, check=False)
    assert not check or out.returncode == 0, "probe %s: %s" % (" ".join(args), out.stderr)
    return out


def lb_rows(lab, what, *args):
    out = probe(lab, what, os.path.join(lab["dir"], "lb", "bird.ctl"), *args).stdout
    return [line.split("\t") for line in out.splitlines()]


def established(lab):
    return [r for r in lb_rows(lab, "protocols") if r[0] == BGP_PROTO and r[3].startswith("Established")]


def bfd_up(lab):
    return [r for r in lb_rows(lab, "bfd") if r[0] == ROUTER_IP and r[2] == "Up"]


def router_route(lab, ip):
    """The router's `show route for IP all` (BIRD's CLI), or "" without one."""
    out = in_ns(NS_R, "birdc", "-s", os.path.join(lab["dir"], "router.ctl"), "show", "route", "for", ip, "all",
                check=False).stdout
    return out if "BGP.as_path" in out else ""


def as_path(route_text):
    m = re.search(r"BGP\.as_path: ([0-9 ]+)", route_text)
    return m.group(1).split() if m else None


def kernel_route(ip):
    out = in_ns(NS_R, "ip", "-4", "route", "show", ip + "/32").stdout
    return out if ("via " + LB_IP) in out else ""


@needs_lab
def test_bird_announces_with_bfd_and_prepends(lab):
    yaml_path = write_lb_yaml(lab, priority=2)
    out = probe(lab, "apply", yaml_path)
    assert out.stdout.strip() == "applied", out.stderr
    pid = int(open(os.path.join(lab["dir"], "lb", "bird.pid")).read())

    # What `sluice ha config` prints is the file apply wrote.
    printed = sh(SLUICE_BIN, "ha", "config", "-c", yaml_path).stdout
    assert printed == open(os.path.join(lab["dir"], "lb", "bird.conf")).read()

    # BGP up, BFD up.
    wait_for("the BGP session to be Established", lambda: established(lab))
    session = wait_for("the BFD session to be Up", lambda: bfd_up(lab))[0]
    assert session[3:] == ["100", "300"], session

    # Nothing announced yet.
    assert lb_rows(lab, "exported", BGP_PROTO)[0] == ["count", "0"]

    # An address on the announce interface: a /32 at the router, AS path
    # = our ASN + 2 prepends (priority 2), community (65010, 1002).
    in_ns(NS_LB, "ip", "tuntap", "add", "dev", "sluice-ha", "mode", "tun")
    in_ns(NS_LB, "ip", "link", "set", "sluice-ha", "up")
    in_ns(NS_LB, "ip", "addr", "add", VIP + "/32", "dev", "sluice-ha")
    route = wait_for("the VIP's route at the router", lambda: router_route(lab, VIP))
    assert as_path(route) == [str(LB_ASN)] * 3, route
    assert "(65010,1002)" in route, route
    wait_for("the VIP in the router's kernel table", lambda: kernel_route(VIP))
    exported = wait_for("the LB's export count", lambda: (lambda r: r if r[0] == ["count", "1"] else None)(
        lb_rows(lab, "exported", BGP_PROTO)))
    assert exported[1:] == [[VIP + "/32"]]

    # A stand-in address: the same /32 kind on "sluice-ha-s", with 16 more
    # prepends: 1 + 2 + 16 ASNs in the path, community (65010, 2002).
    in_ns(NS_LB, "ip", "tuntap", "add", "dev", "sluice-ha-s", "mode", "tun")
    in_ns(NS_LB, "ip", "link", "set", "sluice-ha-s", "up")
    in_ns(NS_LB, "ip", "addr", "add", STANDIN + "/32", "dev", "sluice-ha-s")
    route = wait_for("the stand-in's route at the router", lambda: router_route(lab, STANDIN))
    assert as_path(route) == [str(LB_ASN)] * 19, route
    assert "(65010,2002)" in route, route

    # Another address on the device, not a host route: never exported.
    in_ns(NS_LB, "ip", "addr", "add", "10.98.0.1/24", "dev", "sluice-ha")

    # A second apply reuses the running BIRD (same process) and
    # reconfigures it: priority 0 = no prepend.
    out = probe(lab, "apply", write_lb_yaml(lab, priority=0))
    assert out.stdout.strip() == "applied", out.stderr
    assert int(open(os.path.join(lab["dir"], "lb", "bird.pid")).read()) == pid
    wait_for("the VIP's path without prepends",
             lambda: as_path(router_route(lab, VIP)) == [str(LB_ASN)])
    assert "(65010,1000)" in router_route(lab, VIP)
    assert router_route(lab, "10.98.0.1") == ""
    assert not kernel_route("10.98.0.0")

    # The announce interface goes away (the daemon's tun device closes):
    # the route is withdrawn.
    in_ns(NS_LB, "ip", "link", "del", "sluice-ha")
    wait_for("the VIP's route to be withdrawn", lambda: router_route(lab, VIP) == "" and not kernel_route(VIP))
    assert router_route(lab, STANDIN)   # the stand-in stays

    # Disabling the BGP protocol through the control client takes the
    # session down (the router loses every route); enabling restores it.
    probe(lab, "disable", os.path.join(lab["dir"], "lb", "bird.ctl"), BGP_PROTO)
    wait_for("the stand-in's route to be withdrawn", lambda: router_route(lab, STANDIN) == "")
    probe(lab, "enable", os.path.join(lab["dir"], "lb", "bird.ctl"), BGP_PROTO)
    wait_for("the BGP session to be Established again", lambda: established(lab))
    wait_for("the stand-in's route again", lambda: router_route(lab, STANDIN))


@needs_lab
def test_bird_refuses_and_reports(lab):
    """A file BIRD refuses: the reason comes back (and nothing keeps running)."""
    yaml_path = write_lb_yaml(lab, priority=1)
    with open(yaml_path, "a") as f:
        f.write("    binary: /nonexistent/bird\n")
    out = probe(lab, "apply", yaml_path, check=False)
    assert out.returncode == 1
    assert "install the Debian package bird2" in out.stderr, out.stderr
    assert not os.path.exists(os.path.join(lab["dir"], "lb", "bird.pid"))


def test_ha_config_verb(tmp_path):
    """`sluice ha config`: the fragment of mode external, and its errors."""
    ext = tmp_path / "ext.yaml"
    ext.write_text("ha:\n  asn: 65010\n  priority: 1\n  neighbors: [{ address: 192.0.2.1, asn: 65000 }]\n"
                   "  bird: { mode: external, control_socket: /run/bird/bird.ctl, config_file: /etc/bird/sluice.conf }\n")
    out = sh(SLUICE_BIN, "ha", "config", "-c", str(ext))
    assert 'include "/etc/bird/sluice.conf";' in out.stdout
    assert "router id" not in out.stdout and "protocol device" not in out.stdout
    assert "protocol bgp sluice_bgp_192_0_2_1 {" in out.stdout
    assert "bgp_community.add((65010, 1001));" in out.stdout

    none = tmp_path / "none.yaml"
    none.write_text("log: { level: info }\n")
    out = sh(SLUICE_BIN, "ha", "config", "-c", str(none), check=False)
    assert out.returncode == 1 and "has no ha: section" in out.stderr, out

    bad = tmp_path / "bad.yaml"
    bad.write_text("ha:\n  asn: 65010\n  priority: 99\n  neighbors: [{ address: 192.0.2.1, asn: 65000 }]\n")
    out = sh(SLUICE_BIN, "ha", "config", "-c", str(bad), check=False)
    assert out.returncode == 1
    assert "%s:3: ha.priority: expected an integer from 0 to 15, got \"99\"" % bad in out.stderr, out.stderr

    # No router_id and no IPv4 neighbor: it cannot be found, say so.
    v6 = tmp_path / "v6.yaml"
    v6.write_text("ha:\n  asn: 65010\n  neighbors: [{ address: \"2001:db8::1\", asn: 65000 }]\n")
    out = sh(SLUICE_BIN, "ha", "config", "-c", str(v6), check=False)
    assert out.returncode == 1 and "set ha.router_id" in out.stderr, out.stderr

    out = sh(SLUICE_BIN, "ha", "--help")
    assert "config" in out.stdout and "docs/ha.md" in out.stdout
    out = sh(SLUICE_BIN, "ha", "config", "--help")
    assert out.stdout.startswith("Usage: sluice ha config -c FILE")
    out = sh(SLUICE_BIN, "ha", "nosuch", check=False)
    assert out.returncode == 2 and 'unknown subcommand "nosuch"' in out.stderr
    out = sh(SLUICE_BIN, "check", "-c", str(ext))
    assert "HA in zone default (priority 1), AS 65010, 1 BGP neighbor, BIRD external" in out.stdout
