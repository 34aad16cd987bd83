"""POST /api/reload: what SIGHUP does (docs/admin-api.md), answered with
the outcome, so a deploy script or an operator learns at once whether the
new file (new certificates, say) is in service or was refused and why."""
import json

from helpers import admin, free_port, fresh_get, wait_for


def config(aport, port, backend, extra=""):
    return ("admin: { listen: 127.0.0.1:%d }\n"
            "pools:\n"
            "  - name: app\n"
            "    backends: [%s]\n"
            "listeners:\n"
            "  - name: web\n"
            "    listen: 127.0.0.1:%d\n"
            "    pool: app\n%s" % (aport, backend, port, extra))


def post_reload(aport):
    status, body = admin(aport, "POST", "/api/reload")
    return status, json.loads(body)


def test_reload_applies_the_file_and_says_so(sluice, backends):
    b1, b2 = backends(2)
    aport, port = free_port(), free_port()
    s = sluice(config(aport, port, b1.address), wait_ports=[port, aport])
    assert fresh_get(port, "/")[2].startswith(b"b1")
    s.config_path.write_text(config(aport, port, b2.address))
    status, doc = post_reload(aport)
    assert status == 200, doc
    assert doc == {"reloaded": True, "reloads": 1, "workers": 1}
    assert wait_for(lambda: fresh_get(port, "/")[2].startswith(b"b2"))


def test_a_broken_file_is_refused_with_every_error_and_the_old_one_stays(sluice, backends):
    (b1,) = backends(1)
    aport, port = free_port(), free_port()
    s = sluice(config(aport, port, b1.address), wait_ports=[port, aport])
    s.config_path.write_text(config(aport, port, b1.address, "    retries: 3\n    bogus: 1\n"))
    status, doc = post_reload(aport)
    assert status == 400, doc
    assert doc["error"] == "reload aborted: the configuration has 2 error(s); still running the previous one"
    assert doc["errors"] == [
        "%s:9: listeners[0].retries: unknown key" % s.config_path,
        "%s:10: listeners[0].bogus: unknown key" % s.config_path,
    ]
    assert fresh_get(port, "/")[0] == 200
    assert "reload aborted" in s.read_log()


def test_only_post(sluice, backends):
    (b1,) = backends(1)
    aport, port = free_port(), free_port()
    sluice(config(aport, port, b1.address), wait_ports=[port, aport])
    status, _ = admin(aport, "GET", "/api/reload")
    assert status == 405
