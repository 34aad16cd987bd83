"""The DNS server inside `sluice registry -c FILE` (registry.dns): dig asks
the daemon, not the server alone. Answers follow API writes (after the
merge window), the caller's subnet (the EDNS Client Subnet option), and a
reload's new subnet map; the sluice_registry_dns_* families are served."""
import subprocess

from helpers import free_port
from registry_node import Registry, wait_until

SVC = "/api/registry/services"


def dig(port, *args):
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+short", "+tries=1", "+time=2"] + list(args),
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stdout + out.stderr
    return sorted(line for line in out.stdout.splitlines() if line and not line.startswith(";"))


def dns_extra(port, subnets):
    text = ("  dns:\n    listen: [127.0.0.1:%d]\n    zone: sluice.test.\n  subnets:\n" % port)
    for cidr, dc, region in subnets:
        text += "    - { cidr: %s, datacenter: %s, region: %s }\n" % (cidr, dc, region)
    return text


def test_dns_answers_from_the_daemon(tmp_path):
    port = free_port()
    subnets = [("10.1.0.0/16", "dc1", "r1"), ("10.2.0.0/16", "dc2", "r1")]
    services = ("    - name: web\n      instances:\n"
                "        - { id: a, address: 10.1.0.10, port: 80, datacenter: dc1, region: r1 }\n"
                "        - { id: b, address: 10.2.0.10, port: 80, datacenter: dc2, region: r1 }\n")
    r = Registry(tmp_path, extra=dns_extra(port, subnets), services=services).start()
    try:
        assert "registry: DNS for sluice.test. on 127.0.0.1:%d" % port in r.read_log()
        assert dig(port, "web.sluice.test", "A", "+subnet=10.1.2.0/24") == ["10.1.0.10"]
        assert dig(port, "web.sluice.test", "A", "+subnet=10.2.2.0/24") == ["10.2.0.10"]
        assert dig(port, "+tcp", "web.sluice.test", "A", "+subnet=10.2.2.0/24") == ["10.2.0.10"]
        # A registration through the API is in the DNS answers once acknowledged and merged.
        r.ok("PUT", SVC + "/web/instances/c", {"address": "10.1.0.11", "port": 80, "datacenter": "dc1",
                                               "region": "r1"})
        wait_until(lambda: "10.1.0.11" in dig(port, "web.sluice.test", "A", "+subnet=10.1.2.0/24"),
                   what="the new instance in DNS")
        r.ok("PATCH", SVC + "/web/instances/a", {"enabled": False})
        wait_until(lambda: dig(port, "web.sluice.test", "A", "+subnet=10.1.2.0/24") == ["10.1.0.11"],
                   what="the disabled instance out of DNS")
        # A reload moves 10.1/16 to dc2: its callers now get dc2's instance.
        r.write_config(extra=dns_extra(port, [("10.1.0.0/16", "dc2", "r1")]), services=services)
        r.reload()
        wait_until(lambda: dig(port, "web.sluice.test", "A", "+subnet=10.1.2.0/24") == ["10.2.0.10"],
                   what="the new subnet map")
        m = r.metrics()
        assert "sluice_registry_dns_" in m
    finally:
        r.stop()
        r.assert_clean()


def test_dns_listener_in_use_is_a_clear_error(tmp_path):
    import socket
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    try:
        r = Registry(tmp_path, extra=dns_extra(port, []))
        try:
            r.start()
            raise AssertionError("the registry started on a busy DNS port")
        except RuntimeError:
            pass
        r.stop()
        assert "127.0.0.1:%d" % port in r.read_log() and "in use" in r.read_log(), r.read_log()
    finally:
        busy.close()
