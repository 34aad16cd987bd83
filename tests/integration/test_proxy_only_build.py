"""A user who only wants the proxy builds it without the BPF toolchain:
`make proxy-only` (WITHOUT=l4) in a fresh copy of the tree, with a PATH
that has no clang, llvm or bpftool, gives a sluice without the l4 tier (no
libbpf linked, no `sluice l4`) whose proxy serves. The copy lives under
build/ and is removed afterwards."""
import os
import shutil
import subprocess

import pytest

from conftest import ROOT
from helpers import free_port, fresh_get, wait_port

TREE_PARTS = ("Makefile", "src", "include", "examples", "scripts", "packaging")
HIDDEN_TOOLS = ("clang", "llvm", "llc", "bpftool", "ld.lld")


def path_without_bpf_tools(bin_dir):
    """A directory of links to every program on the usual PATH but the BPF
    toolchain's, so the build cannot call clang or bpftool even by accident."""
    os.makedirs(bin_dir)
    for d in ("/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        for name in sorted(os.listdir(d)) if os.path.isdir(d) else ():
            link = os.path.join(bin_dir, name)
            if name.startswith(HIDDEN_TOOLS) or os.path.lexists(link):
                continue
            os.symlink(os.path.join(d, name), link)
    return bin_dir


@pytest.fixture
def tree():
    work = os.path.join(ROOT, "build", "proxy-only-test")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    for part in TREE_PARTS:
        src = os.path.join(ROOT, part)
        (shutil.copytree if os.path.isdir(src) else shutil.copy2)(src, os.path.join(work, part))
    yield work
    shutil.rmtree(work, ignore_errors=True)


def test_proxy_only_builds_without_the_bpf_toolchain_and_serves(tree, backends):
    bin_dir = path_without_bpf_tools(os.path.join(tree, "path"))
    env = dict(os.environ, PATH=bin_dir)
    assert subprocess.run(["which", "clang"], env=env, capture_output=True).returncode != 0
    build = subprocess.run(["make", "-j2", "proxy-only"], cwd=tree, env=env, capture_output=True, text=True,
                           timeout=900)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    for tool in ("clang", "bpftool", "-lbpf", "skel.h"):
        assert tool not in build.stdout, tool
    binary = os.path.join(tree, "build", "sluice")
    libs = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    assert "libbpf" not in libs and "libsystemd" in libs

    # The tiers built are the binary's verbs; l4 is not one of them.
    l4 = subprocess.run([binary, "l4", "-c", "/dev/null"], capture_output=True, text=True)
    assert l4.returncode == 2 and 'unknown command "l4"' in l4.stderr
    with open(os.path.join(tree, "build", "gen", "sluice_modules.h")) as f:
        assert '#define SLUICE_MODULE_NAMES "proxy registry agent ha"' in f.read()

    (b1,) = backends(1)
    port = free_port()
    config = os.path.join(tree, "sluice.yaml")
    with open(config, "w") as f:
        f.write("admin: { listen: off }\n"
                "pools: [{ name: app, backends: [%s] }]\n"
                "listeners: [{ name: web, listen: 127.0.0.1:%d, pool: app }]\n" % (b1.address, port))
    check = subprocess.run([binary, "check", "-c", config], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([binary, "proxy", "-c", config, "--workers", "1"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        assert wait_port(port, proc=proc)
        status, _, body = fresh_get(port, "/")
        assert status == 200 and body.startswith(b"b1")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
