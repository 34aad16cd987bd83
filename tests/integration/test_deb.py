"""The Debian package, end to end: `make deb` builds it (lintian must find
no error), it installs with apt in a throwaway Debian 12 root made by
debootstrap from this machine's mirror, its postinst creates the user
sluice and enables sluice-proxy, `sluice check` accepts the shipped
/etc/sluice/sluice.yaml, and the proxy started as its unit starts it
(ExecStart, User=, NOTIFY_SOCKET) says READY=1 and answers curl from the
host. Everything lives under build/deb-test and is removed afterwards
(the root's mounts live in a private mount namespace and die with it).

It takes about 3 minutes on a quiet 2-core machine (package build 85 s,
debootstrap 70 s, apt 10 s; measured 163 s) and 7 when other builds share
it (414 s, 420 s), so `make test` skips it: `make test-deb` runs it
(SLUICE_TEST_DEB=1). It needs the network to the Debian mirror."""
import glob
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from conftest import ROOT
from helpers import free_port
from notify_socket import NotifySocket

WORK = os.path.join(ROOT, "build", "deb-test")
TOOLS = ("debootstrap", "dpkg-buildpackage", "lintian", "unshare", "chroot")

pytestmark = [
    pytest.mark.skipif(os.environ.get("SLUICE_TEST_DEB") != "1", reason="minutes long: run by make test-deb"),
    pytest.mark.skipif(os.geteuid() != 0 or not all(shutil.which(t) for t in TOOLS),
                       reason="needs root and " + ", ".join(TOOLS)),
]


def debian_mirror():
    """The first Debian mirror of this machine's apt sources (deb822 or one-line)."""
    paths = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*"))
    for path in paths:
        try:
            text = open(path).read()
        except OSError:
            continue
        for uri in re.findall(r"^URIs:\s*(\S+)", text, re.M) + re.findall(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", text, re.M):
            if uri.rstrip("/").endswith("/debian"):
                return uri
    return "http://deb.debian.org/debian"


def in_root(root, *cmd, user=None, **kw):
    """cmd inside the Debian root: a private mount namespace with its own
    /proc mounted (gone when the command ends), chroot, optionally as user."""
    chroot = ["chroot"] + (["--userspec=%s" % user] if user else []) + [root]
    script = 'mount -t proc proc "$1/proc" && shift && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", root] + chroot + list(cmd)


def run(cmd, timeout=600, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    assert r.returncode == 0, "%s\n%s\n%s" % (" ".join(cmd), r.stdout[-3000:], r.stderr[-3000:])
    return r.stdout


def remove_root(path):
    # Nothing should be mounted there (every mount was in a private
    # namespace), but never remove through a mount.
    with open("/proc/mounts") as f:
        mounts = [line.split()[1] for line in f if line.split()[1].startswith(path + "/")]
    for m in sorted(mounts, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)
    subprocess.run(["rm", "-rf", "--one-file-system", path], capture_output=True)


@pytest.fixture
def debian_root():
    remove_root(WORK)
    os.makedirs(WORK)
    root = os.path.join(WORK, "root")
    yield root
    remove_root(WORK)


def test_package_installs_on_debian_12_and_the_proxy_starts_as_its_unit(debian_root, backends, tmp_path):
    phases, started = [], time.monotonic()
    last = [started]

    def phase(name):
        now = time.monotonic()
        phases.append("%s %.1f s" % (name, now - last[0]))
        last[0] = now
    # 1. The package (make deb fails when lintian finds an error).
    run(["make", "-s", "deb"], cwd=ROOT, timeout=1200)
    debs = sorted(glob.glob(os.path.join(ROOT, "build", "deb", "sluice_*_amd64.deb")))
    assert len(debs) == 1, debs
    phase("make deb")

    # 2. A fresh Debian 12, and the package installed in it by apt.
    root = debian_root
    run(["unshare", "--mount", "--propagation", "private", "debootstrap", "--variant=minbase", "bookworm", root,
         debian_mirror()], timeout=900)
    phase("debootstrap")
    shutil.copy("/etc/resolv.conf", os.path.join(root, "etc", "resolv.conf"))
    shutil.copy(debs[0], os.path.join(root, "tmp", "sluice.deb"))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C")
    run(in_root(root, "apt-get", "update", "-q"), env=env)
    run(in_root(root, "apt-get", "install", "-y", "-q", "--no-install-recommends", "/tmp/sluice.deb"), env=env)
    phase("apt")

    # 3. What the postinst and dh_installsystemd did.
    passwd = open(os.path.join(root, "etc", "passwd")).read()
    m = re.search(r"^sluice:x:(\d+):(\d+):[^:]*:[^:]*:(\S+)$", passwd, re.M)
    assert m and int(m.group(1)) < 1000 and m.group(3) == "/usr/sbin/nologin", passwd
    uid, gid = m.group(1), m.group(2)
    conffiles = run(in_root(root, "dpkg-query", "-W", "-f=${Conffiles}", "sluice"))
    assert "/etc/sluice/sluice.yaml" in conffiles
    wants = os.path.join(root, "etc", "systemd", "system", "multi-user.target.wants")
    assert os.path.lexists(os.path.join(wants, "sluice-proxy.service"))
    assert not os.path.lexists(os.path.join(wants, "sluice-l4.service"))
    assert "sluice.yaml(5)" in run(in_root(root, "sh", "-c", "ls /usr/share/man/man5 /usr/share/man/man8")
                                   ).replace("sluice.yaml.5.gz", "sluice.yaml(5)")
    check = run(in_root(root, "/usr/sbin/sluice", "check", "-c", "/etc/sluice/sluice.yaml"))
    assert check == "/etc/sluice/sluice.yaml: ok (1 listener, 1 pool, 1 backend)\n"

    # 4. The proxy as its unit runs it: ExecStart with SLUICE_CONFIG, as
    # User=sluice, NOTIFY_SOCKET set. The shipped file, with free ports and
    # a backend of this test (the root shares the host's network).
    unit = open(os.path.join(root, "lib", "systemd", "system", "sluice-proxy.service")).read()
    assert re.search(r"^Type=notify$", unit, re.M) and re.search(r"^User=sluice$", unit, re.M)
    exec_start = re.search(r"^ExecStart=(.*)$", unit, re.M).group(1)
    (b1,) = backends(1)
    port, aport = free_port(), free_port()
    conf = open(os.path.join(root, "etc", "sluice", "sluice.yaml")).read()
    conf = (conf.replace("0.0.0.0:8080", "127.0.0.1:%d" % port).replace("127.0.0.1:9900", "127.0.0.1:%d" % aport)
            .replace("127.0.0.1:8000", b1.address))
    with open(os.path.join(root, "etc", "sluice", "test.yaml"), "w") as f:
        f.write(conf)
    argv = exec_start.replace("${SLUICE_CONFIG}", "/etc/sluice/test.yaml").split()
    notify = NotifySocket(os.path.join(root, "run", "notify.sock"))
    os.chmod(notify.path, 0o666)
    log = open(tmp_path / "proxy.log", "wb")
    proc = subprocess.Popen(in_root(root, *argv, user="%s:%s" % (uid, gid)), stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, NOTIFY_SOCKET="/run/notify.sock"))
    try:
        pid, ready = notify.wait_for("READY", timeout=30)[-1]
        assert ready["READY"] == "1" and pid == proc.pid
        curl = run(["curl", "-sS", "--max-time", "5", "http://127.0.0.1:%d/" % port])
        assert curl.startswith("b1"), curl
        status = run(["curl", "-sS", "--max-time", "5", "http://127.0.0.1:%d/api/status" % aport])
        assert '"version"' in status
        proc.send_signal(signal.SIGTERM)
        assert "STOPPING" in notify.wait_for("STOPPING")[-1][1]
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        notify.close()
        log.close()
    phase("checks and proxy")
    print("test_deb: %.0f s (%s)" % (time.monotonic() - started, ", ".join(phases)))
