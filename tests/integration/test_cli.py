"""The client verbs: sluice status, pools, backend (through the admin API)."""
import json
import subprocess

from conftest import SLUICE_BIN
from helpers import free_port, admin


def run(*args):
    p = subprocess.run([SLUICE_BIN] + list(args), capture_output=True, text=True, timeout=20)
    return p.returncode, p.stdout, p.stderr


def config(aport, lport, b1, b2):
    return f"""
workers: 2
admin: {{ listen: 127.0.0.1:{aport} }}
pools:
  - name: app
    backends: [{b1.address}, {{address: {b2.address}, weight: 3}}]
listeners:
  - name: web
    listen: 127.0.0.1:{lport}
    pool: app
"""


def test_status_pools_and_backend_changes(sluice, backends, tmp_path):
    b1, b2 = backends(2)
    aport, lport = free_port(), free_port()
    s = sluice(config(aport, lport, b1, b2), wait_ports=[lport, aport])
    a = "127.0.0.1:%d" % aport

    rc, out, err = run("status", "--admin", a)
    assert rc == 0, err
    assert "master pid %d" % s.proc.pid in out
    assert out.count("worker ") == 2

    # -c FILE finds the admin address in the configuration.
    rc, out, err = run("pools", "-c", str(s.config_path))
    assert rc == 0, err
    assert b1.address in out and b2.address in out and "round_robin" in out

    rc, out, err = run("backend", "--admin", a, "app", b2.address, "weight", "7")
    assert rc == 0, err
    assert "weight 7" in out
    rc, out, err = run("backend", "--admin", a, "app", b2.address, "drain")
    assert rc == 0 and "draining" in out, err
    st, body = admin(aport, "GET", "/api/pools/app")
    b = [x for x in json.loads(body)["backends"] if x["address"] == b2.address][0]
    assert b["weight"] == 7 and b["admin"] == "draining" and b["effective_weight"] == 0

    rc, out, err = run("pools", "--admin", a, "--json", "app")
    assert rc == 0 and json.loads(out)["name"] == "app"


def test_errors_are_clear(sluice, backends):
    b1, b2 = backends(2)
    aport, lport = free_port(), free_port()
    sluice(config(aport, lport, b1, b2), wait_ports=[lport, aport])
    a = "127.0.0.1:%d" % aport
    rc, out, err = run("backend", "--admin", a, "app", "127.0.0.1:1", "drain")
    assert rc == 1 and "no backend" in err and "404" in err
    rc, out, err = run("backend", "--admin", a, "app", b1.address, "weight", "-3")
    assert rc == 2 and "weight must be an integer" in err
    rc, out, err = run("backend", "--admin", a, "app", b1.address, "explode")
    assert rc == 2 and "unknown action" in err
    rc, out, err = run("pools", "--admin", "127.0.0.1:%d" % free_port())
    assert rc == 1 and "cannot reach the admin API" in err
    rc, out, err = run("pools", "--help")
    assert rc == 0 and "sluice backend" in out


def test_l4_detach_and_force_arguments(tmp_path):
    """`sluice l4 detach` and `--force` / `--remove-maps`: wrong
    combinations are refused with a reason (exit 2); a pin directory with
    nothing in it is said so (exit 1)."""
    conf = tmp_path / "l4.yaml"
    conf.write_text("l4:\n  interfaces: [lo]\n  services: []\n")
    for args, why in (
            (["l4", "detach", "-c", str(conf)], "takes --pin-dir DIR"),
            (["l4", "detach", "--admin", "127.0.0.1:1"], "takes --pin-dir DIR"),
            (["l4", "list", "--force"], "--force is for starting the forwarder"),
            (["l4", "detach", "--force"], "--force is for starting the forwarder"),
            (["l4", "-c", str(conf), "--remove-maps"], "--remove-maps goes with detach"),
            (["l4", "detach", "extra"], "unexpected argument \"extra\"")):
        rc, out, err = run(*args)
        assert rc == 2 and why in err, (args, rc, out, err)
    rc, out, err = run("l4", "detach", "--pin-dir", str(tmp_path / "none"))
    assert rc == 1 and "nothing pinned in %s" % (tmp_path / "none") in err, (rc, out, err)
    rc, out, err = run("l4", "--help")
    assert rc == 0 and "sluice l4 detach [--pin-dir DIR] [--remove-maps]" in out and "--force" in out, out
