"""libsluice as a program uses it: the installed library, header and
pkg-config file (shared and static), its exported symbols (sluice_* only),
and a consumer against live registry nodes (updates from a watch, moving to
another node, a blank node's answer not believed)."""
import os
import re
import shutil
import subprocess
import threading
import time

import pytest

from registry_node import Registry, SVC, reg, wait_until  # noqa: F401

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, "build")
PROBE_SRC = os.path.join(ROOT, "tests", "integration", "libsluice_probe.c")


def make(*targets, **env):
    e = dict(os.environ)
    e.update(env)
    r = subprocess.run(["make", "-C", ROOT, "--no-print-directory"] + list(targets), capture_output=True, text=True,
                       env=e, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


@pytest.fixture(scope="module")
def built():
    make("build/libsluice.a", "build/libsluice.so", "build/sluice.pc")


def defined_symbols(args):
    out = subprocess.run(["nm"] + args, capture_output=True, text=True, check=True).stdout
    syms = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] not in ("U", "w", "v"):
            syms.append((parts[1], parts[2].split("@")[0]))
    return syms


CONSUMER_API = ["sluice_version", "sluice_config_init", "sluice_open", "sluice_close", "sluice_subscribe",
                "sluice_wait_ready", "sluice_pick", "sluice_done", "sluice_members", "sluice_instances",
                "sluice_service_info", "sluice_on_change", "sluice_stats"]


def test_shared_library_exports_only_the_api(built):
    syms = defined_symbols(["-D", "--defined-only", os.path.join(BUILD, "libsluice.so.0.1.0")])
    names = [n for kind, n in syms if kind != "A"]  # "A": the version node LIBSLUICE_0
    stray = [n for n in names if not n.startswith("sluice_")]
    assert not stray, "libsluice.so exports more than sluice_*: %s" % stray[:20]
    for fn in CONSUMER_API:
        assert fn in names, fn
    soname = subprocess.run(["objdump", "-p", os.path.join(BUILD, "libsluice.so.0.1.0")], capture_output=True,
                            text=True, check=True).stdout
    assert re.search(r"SONAME\s+libsluice\.so\.0\b", soname)


def test_static_library_exports_only_the_api(built):
    syms = defined_symbols(["-g", "--defined-only", os.path.join(BUILD, "libsluice.a")])
    names = [n for kind, n in syms]
    stray = [n for n in names if not n.startswith("sluice_")]
    assert not stray, "libsluice.a defines global symbols beyond sluice_*: %s" % stray[:20]
    for fn in CONSUMER_API:
        assert fn in names, fn


def pkg_config(dest, *args):
    env = dict(os.environ)
    env["PKG_CONFIG_PATH"] = os.path.join(dest, "usr", "local", "lib", "pkgconfig")
    env["PKG_CONFIG_SYSROOT_DIR"] = dest
    env.pop("PKG_CONFIG_LIBDIR", None)
    r = subprocess.run(["pkg-config"] + list(args) + ["sluice"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def has_link_name(name):
    for ext in (".so", ".a"):
        path = subprocess.run(["cc", "-print-file-name=lib%s%s" % (name, ext)], capture_output=True,
                              text=True).stdout.strip()
        if os.path.isabs(path) and os.path.exists(path):
            return True
    return False


def probe_lines(proc):
    """Lines of the probe as they come, in a list a thread fills."""
    lines = []

    def pump():
        for line in proc.stdout:
            lines.append(line.strip())
    threading.Thread(target=pump, daemon=True).start()
    return lines


def last_state(lines):
    for line in reversed(lines):
        if line.startswith("source="):
            return dict(kv.split("=", 1) for kv in line.split())
    return {}


def run_probe(binary, registries, service, seconds, env=None, cache_dir=None):
    args = [binary, registries, service, str(seconds)] + ([cache_dir] if cache_dir else [])
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def add(r, service, iid, ip, port=80, **extra):
    body = {"address": ip, "port": port}
    body.update(extra)
    r.ok("PUT", "%s/%s/instances/%s" % (SVC, service, iid), body)


def test_install_then_build_with_pkg_config(built, tmp_path, reg):
    dest = str(tmp_path / "root")
    make("install", "PREFIX=/usr/local", "DESTDIR=" + dest)
    lib = os.path.join(dest, "usr", "local", "lib")
    for f in ("libsluice.a", "libsluice.so", "libsluice.so.0", "libsluice.so.0.1.0", "pkgconfig/sluice.pc"):
        assert os.path.exists(os.path.join(lib, f)), f
    assert os.readlink(os.path.join(lib, "libsluice.so.0")) == "libsluice.so.0.1.0"
    assert os.path.exists(os.path.join(dest, "usr", "local", "include", "sluice", "sluice.h"))
    pc = open(os.path.join(lib, "pkgconfig", "sluice.pc")).read()
    assert "prefix=/usr/local" in pc and "Version: 0.1.0" in pc

    cflags = pkg_config(dest, "--cflags")
    shared_bin = str(tmp_path / "probe-shared")
    static_bin = str(tmp_path / "probe-static")
    subprocess.run(["cc", "-o", shared_bin, PROBE_SRC] + cflags + pkg_config(dest, "--libs"), check=True)
    # --static: the archive, with libcurl's and jansson's flags from Requires.private
    libs = ["-l:libsluice.a" if x == "-lsluice" else x for x in pkg_config(dest, "--libs", "--static")]
    for need in ("-lpthread", "-lcurl", "-ljansson", "-l:libsluice.a"):
        assert need in libs, (need, libs)
    # libcurl's own private libraries (nghttp2, ssh2, ...) are on this host
    # only as runtime libraries without a link name; a fully static link
    # would need their -dev packages, which is libcurl's business: link
    # those dynamically here.
    libs = [x for x in libs if not x.startswith("-l") or x.startswith("-l:") or has_link_name(x[2:])]
    subprocess.run(["cc", "-o", static_bin, PROBE_SRC] + cflags + libs, check=True)
    ldd = subprocess.run(["ldd", static_bin], capture_output=True, text=True).stdout
    assert "libsluice" not in ldd
    ldd = subprocess.run(["ldd", shared_bin], capture_output=True, text=True,
                         env=dict(os.environ, LD_LIBRARY_PATH=lib)).stdout
    assert os.path.join(lib, "libsluice.so.0") in ldd

    r = reg()
    add(r, "web", "web-1", "10.1.0.1")
    add(r, "web", "web-2", "10.1.0.2")
    for binary, env in ((shared_bin, dict(os.environ, LD_LIBRARY_PATH=lib)), (static_bin, None)):
        out = subprocess.run([binary, "127.0.0.1:%d" % r.port, "web", "1"], capture_output=True, text=True,
                             env=env, timeout=30).stdout
        assert "version 0.1.0" in out
        state = last_state(out.splitlines())
        assert state["source"] == "1" and state["ids"] == "web-1,web-2", out[-2000:]
        assert state["pick"] in ("web-1", "web-2")


@pytest.fixture(scope="module")
def probe(built, tmp_path_factory):
    """The probe linked to build/libsluice.so (with its rpath)."""
    out = str(tmp_path_factory.mktemp("probe") / "probe")
    subprocess.run(["cc", "-o", out, PROBE_SRC, "-I" + os.path.join(ROOT, "include"), "-L" + BUILD, "-lsluice",
                    "-Wl,-rpath," + BUILD], check=True)
    return out


def test_watch_updates_and_node_switch(probe, reg, tmp_path):
    a = reg(name="a")
    b = reg(name="b")
    for r in (a, b):
        add(r, "web", "web-1", "10.1.0.1")
    # the first node listed is dead: the client finds the live ones
    dead = "127.0.0.1:1"
    p = run_probe(probe, "%s,127.0.0.1:%d,127.0.0.1:%d" % (dead, a.port, b.port), "web", 60)
    lines = probe_lines(p)
    try:
        wait_until(lambda: last_state(lines).get("ids") == "web-1", timeout=20, what="the first list")
        node = last_state(lines)["node"]
        live, other = (a, b) if node == "127.0.0.1:%d" % a.port else (b, a)
        # a change reaches the client through the watch (the pull is 30 s away)
        add(live, "web", "web-2", "10.1.0.2")
        wait_until(lambda: last_state(lines).get("ids") == "web-1,web-2", timeout=10, what="the watched change")
        # the node in use goes: the client moves to the other, whose list it takes
        add(other, "web", "web-3", "10.1.0.3")
        live.stop()
        wait_until(lambda: last_state(lines).get("node") == "127.0.0.1:%d" % other.port, timeout=20,
                   what="the move to the other node")
        wait_until(lambda: last_state(lines).get("ids") == "web-1,web-3", timeout=20, what="the other node's list")
    finally:
        p.kill()
        p.wait()


def test_a_service_that_does_not_exist_is_not_pulled_again(probe, reg):
    """A name the registry answered 404 for costs it nothing more (a DNS
    agent follows whatever its clients ask): the watched services list shows
    it when it appears, and then it is fetched."""
    r = reg()
    add(r, "web", "web-1", "10.1.0.1")
    env = dict(os.environ, PROBE_PULL_MS="100")
    p = run_probe(probe, "127.0.0.1:%d" % r.port, "ghost", 60, env=env)
    lines = probe_lines(p)
    try:
        wait_until(lambda: last_state(lines).get("not_found") == "1", timeout=20, what="the 404")
        pulls = int(last_state(lines)["pulls"])
        time.sleep(1.5)                                # 15 pull intervals
        assert int(last_state(lines)["pulls"]) <= pulls + 1, last_state(lines)
        add(r, "ghost", "ghost-1", "10.1.0.9")         # it appears: the watch brings it
        wait_until(lambda: last_state(lines).get("ids") == "ghost-1", timeout=10, what="the new service")
        assert last_state(lines)["not_found"] == "0"
    finally:
        p.kill()
        p.wait()


def test_blank_node_does_not_wipe_the_list(probe, reg, tmp_path):
    r = reg()
    add(r, "web", "web-1", "10.1.0.1")
    add(r, "web", "web-2", "10.1.0.2")
    cache = str(tmp_path / "cache")
    p = run_probe(probe, "127.0.0.1:%d" % r.port, "web", 60, cache_dir=cache)
    lines = probe_lines(p)
    try:
        wait_until(lambda: last_state(lines).get("ids") == "web-1,web-2", timeout=20, what="the first list")
        assert os.path.exists(os.path.join(cache, "web.json"))
        # the node comes back blank (its store gone): the service unknown, then empty
        r.stop()
        shutil.rmtree(r.data_dir)
        r.start()
        r.ok("PUT", SVC + "/web", {})
        wait_until(lambda: int(last_state(lines).get("ignored_empty", 0)) > 0, timeout=30,
                   what="the blank node's answer ignored")
        assert last_state(lines)["ids"] == "web-1,web-2"
        assert last_state(lines)["pick"] in ("web-1", "web-2")
    finally:
        p.kill()
        p.wait()
