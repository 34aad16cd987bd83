"""`make install` (PREFIX, DESTDIR): what lands where, and that it is
usable: the units pass `systemd-analyze verify` and ask for what each role
needs, the man pages render without a groff warning, the completion knows
every verb of `sluice --help`, the installed binary checks every example,
and a second install keeps an edited /etc/sluice/sluice.yaml."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT

DAEMONS = ("proxy", "l4", "registry", "agent")


def make_install(dest, prefix, *extra):
    r = subprocess.run(["make", "-s", "install", "PREFIX=" + prefix, "DESTDIR=" + str(dest)] + list(extra),
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]


def files_under(root):
    out = set()
    for d, _, names in os.walk(root):
        for n in names:
            out.add(os.path.relpath(os.path.join(d, n), root))
    return out


def unit(path):
    """A unit file as {section: {key: [values]}} (keys may repeat)."""
    sections, cur = {}, None
    for line in open(path):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            cur = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        cur.setdefault(key, []).append(value)
    return sections


@pytest.fixture
def dest(tmp_path):
    yield tmp_path / "root"
    shutil.rmtree(tmp_path / "root", ignore_errors=True)


def test_install_under_usr_puts_every_part_in_place(dest):
    make_install(dest, "/usr")
    unitdir = subprocess.run(["pkg-config", "--variable=systemdsystemunitdir", "systemd"], capture_output=True,
                             text=True).stdout.strip() or "/lib/systemd/system"
    expected = {
        "usr/sbin/sluice", "etc/sluice/sluice.yaml",
        "usr/share/man/man8/sluice.8", "usr/share/man/man5/sluice.yaml.5",
        "usr/share/bash-completion/completions/sluice",
        "usr/include/sluice/sluice.h", "usr/lib/libsluice.a", "usr/lib/libsluice.so.0.1.0",
        "usr/lib/pkgconfig/sluice.pc",
    } | {"usr/share/doc/sluice/examples/%s.yaml" % n for n in ("sluice", "l4", "registry", "agent")} \
      | {"%s/sluice-%s.service" % (unitdir.lstrip("/"), d) for d in DAEMONS}
    got = files_under(dest)
    assert expected <= got, sorted(expected - got)
    assert os.access(dest / "usr/sbin/sluice", os.X_OK)
    proxy = unit(dest / unitdir.lstrip("/") / "sluice-proxy.service")["Service"]
    assert proxy["ExecStart"] == ["/usr/sbin/sluice proxy -c ${SLUICE_CONFIG}"]
    assert proxy["Environment"] == ["SLUICE_CONFIG=/etc/sluice/sluice.yaml"]

    # The installed binary runs, and accepts every example it ships.
    sluice = str(dest / "usr/sbin/sluice")
    assert subprocess.run([sluice, "version"], capture_output=True, text=True).stdout.startswith("sluice ")
    for example in sorted((dest / "usr/share/doc/sluice/examples").glob("*.yaml")):
        r = subprocess.run([sluice, "check", "-c", str(example)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


def test_install_under_usr_local_and_a_kept_configuration(dest):
    make_install(dest, "/usr/local")
    u = unit(dest / "usr/local/lib/systemd/system/sluice-l4.service")
    assert u["Service"]["ExecStart"] == ["/usr/local/sbin/sluice l4 -c ${SLUICE_CONFIG}"]
    assert u["Unit"]["ConditionPathExists"] == ["/usr/local/etc/sluice/l4.yaml"]
    conf = dest / "usr/local/etc/sluice/sluice.yaml"
    conf.write_text(conf.read_text() + "# edited by the operator\n")
    make_install(dest, "/usr/local")
    assert conf.read_text().endswith("# edited by the operator\n")


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="no systemd-analyze")
def test_units_verify_and_ask_for_what_each_role_needs(dest):
    # ExecStart must name an existing program for verify: this tree's binary.
    make_install(dest, "/usr", "SBINDIR=" + os.path.join(ROOT, "build"), "SYSTEMDUNITDIR=/units")
    paths = sorted(str(p) for p in (dest / "units").iterdir())
    assert [os.path.basename(p) for p in paths] == ["sluice-%s.service" % d for d in sorted(DAEMONS)]
    r = subprocess.run(["systemd-analyze", "verify", "--man=no"] + paths, capture_output=True, text=True)
    # verify exits 0 on an unknown key: its warnings are the finding.
    assert r.returncode == 0 and r.stderr == "", r.stderr

    # The drop-ins shipped for proxy.toa and ha: verified with the unit.
    dropins = sorted((dest / "usr/share/doc/sluice/examples/systemd").iterdir())
    assert [p.name for p in dropins] == ["proxy-ha.conf", "proxy-toa.conf"]
    for d in dropins:
        conf_dir = dest / "units" / "sluice-proxy.service.d"
        conf_dir.mkdir(exist_ok=True)
        shutil.copy(d, conf_dir / "local.conf")
        r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(dest / "units" / "sluice-proxy.service")],
                           capture_output=True, text=True)
        assert r.returncode == 0 and r.stderr == "", (d.name, r.stderr)
        shutil.rmtree(conf_dir)

    units = {d: unit(dest / "units" / ("sluice-%s.service" % d)) for d in DAEMONS}
    for d, u in units.items():
        s = u["Service"]
        assert s["Type"] == ["notify"], d
        assert s["NoNewPrivileges"] == ["yes"] and s["ProtectSystem"] == ["strict"], d
        assert s["ProtectHome"] == ["yes"] and s["PrivateTmp"] == ["yes"], d
        assert int(s["LimitNOFILE"][0]) >= 65536, d
        assert u["Install"]["WantedBy"] == ["multi-user.target"], d
        # Reload: check the file first (its errors fail `systemctl reload`), then SIGHUP.
        if d != "agent":
            assert s["ExecReload"] == ["%s/build/sluice check --quiet -c ${SLUICE_CONFIG}" % ROOT,
                                       "/bin/kill -HUP $MAINPID"], d
    agent = units["agent"]["Service"]
    assert "ExecReload" not in agent   # it reads its file only at start
    # The proxy binds low ports as an unprivileged user, and can do nothing else.
    proxy = units["proxy"]["Service"]
    assert proxy["User"] == ["sluice"]
    assert proxy["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert proxy["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    # The forwarder has what XDP needs and no more than the list says.
    l4 = units["l4"]["Service"]
    caps = set(l4["CapabilityBoundingSet"][0].split())
    assert {"CAP_BPF", "CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_PERFMON"} <= caps
    assert "CAP_SYS_PTRACE" not in caps and "CAP_DAC_OVERRIDE" not in caps
    assert l4["ReadWritePaths"] == ["/sys/fs/bpf"] and "ProtectKernelTunables" not in l4


@pytest.mark.skipif(not shutil.which("groff"), reason="no groff")
def test_man_pages_render_without_warnings(dest):
    make_install(dest, "/usr")
    for page, name in (("man8/sluice.8", "sluice -"), ("man5/sluice.yaml.5", "sluice.yaml -")):
        path = str(dest / "usr/share/man" / page)
        # tbl too (-t), all warnings, at 80 columns as lintian checks them.
        g = subprocess.run(["groff", "-t", "-man", "-Tutf8", "-ww", "-z", path], capture_output=True, text=True)
        assert g.returncode == 0 and g.stderr == "", g.stderr
        m = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", path], capture_output=True,
                           text=True, env=dict(os.environ, MANWIDTH="80"))
        assert m.returncode == 0 and m.stderr == "", m.stderr
        text = man_text(path)
        assert re.search(r"^NAME\n\s+" + re.escape(name), text, re.M), text[:500]
    # sluice.yaml(5) is the configuration reference: its sections are there.
    text = man_text(str(dest / "usr/share/man/man5/sluice.yaml.5"))
    for heading in re.findall(r"^## (.+)$", open(os.path.join(ROOT, "docs/configuration.md")).read(), re.M)[:5]:
        assert heading.replace("`", "") in text, heading


def man_text(path):
    """`man -l PATH` as plain text (man's overstrike bold and underline removed)."""
    out = subprocess.run(["man", "-l", path], capture_output=True, text=True,
                         env=dict(os.environ, MANWIDTH="100")).stdout
    return re.sub(".\x08", "", out)


def complete(script, *words):
    """What bash completion offers after `sluice WORDS...` (the last word is being typed)."""
    words_q = " ".join("'%s'" % w for w in ("sluice",) + words)
    r = subprocess.run(["bash", "-c", "shopt -s extglob; source %s; COMP_WORDS=(%s); "
                        "COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); _sluice; echo \"${COMPREPLY[*]}\"" %
                        (script, words_q)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_completion_knows_every_verb(dest):
    make_install(dest, "/usr")
    script = str(dest / "usr/share/bash-completion/completions/sluice")
    help_text = subprocess.run([os.path.join(ROOT, "build", "sluice"), "--help"], capture_output=True,
                               text=True).stdout
    commands = help_text.split("Commands:\n")[1].split("\n\n")[0]
    verbs = set(re.findall(r"^  ([a-z][a-z0-9-]*)", commands, re.M))
    assert {"proxy", "check", "l4", "registry", "agent", "ha", "version"} <= verbs
    offered = set(complete(script, ""))
    assert verbs <= offered, verbs - offered
    assert complete(script, "l4", "de") == ["detach", "decap"]
    assert complete(script, "ha", "") == ["config", "status", "drain", "undrain", "preempt"]
    assert complete(script, "proxy", "--w") == ["--workers"]
    assert complete(script, "backend", "app", "10.0.0.1:80", "dr") == ["drain"]
