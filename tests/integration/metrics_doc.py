"""/metrics as the tests read it, and the metric families docs/admin-api.md
lists, so that a test can hold the two against each other."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ADMIN_API_MD = os.path.join(ROOT, "docs", "admin-api.md")
L4_MD = os.path.join(ROOT, "docs", "l4.md")


def families(exposition):
    """{name: (type, help)} of every family in a Prometheus text exposition."""
    helps, types = {}, {}
    for line in exposition.splitlines():
        m = re.match(r"# (HELP|TYPE) (\S+) (.*)$", line)
        if m:
            (helps if m.group(1) == "HELP" else types)[m.group(2)] = m.group(3)
    assert set(helps) == set(types), "HELP and TYPE lines disagree: %s" % (set(helps) ^ set(types))
    return {name: (types[name], helps[name]) for name in types}


def samples(exposition):
    """{(name, frozenset of (label, value))): float} of every sample line."""
    out = {}
    for line in exposition.splitlines():
        if not line or line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        name, _, labels = series.partition("{")
        pairs = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels))
        out[(name, pairs)] = float(value)
    return out


def value(exposition, name, **labels):
    """The one sample of `name` whose labels include `labels`."""
    want = set(labels.items())
    found = [v for (n, pairs), v in samples(exposition).items() if n == name and want <= set(pairs)]
    assert len(found) == 1, "%d samples of %s%s" % (len(found), name, labels)
    return found[0]


def documented_families(path=ADMIN_API_MD, section="## Metrics"):
    """{name: type} from the tables of a document's metrics section: rows
    whose first cell is one `sluice_...` (or `process_...`) name (prose that mentions a name,
    e.g. a rename note, does not count)."""
    text = open(path, encoding="utf-8").read()
    start = text.index(section + "\n")
    rest = text[start + len(section) + 1:]
    end = re.search(r"^## ", rest, re.M)
    body = rest[:end.start()] if end else rest
    out = {}
    for line in body.splitlines():
        m = re.match(r"\|\s*`((?:sluice|process)_[a-z0-9_]+)`\s*\|\s*(counter|gauge|histogram)\s*\|", line)
        if m:
            assert m.group(1) not in out, "%s listed twice in %s" % (m.group(1), path)
            out[m.group(1)] = m.group(2)
    return out


def l4_md_families():
    """Every `sluice_l4_...` name in the metrics table of docs/l4.md."""
    text = open(L4_MD, encoding="utf-8").read()
    start = text.index("## Metrics\n")
    end = text.index("\n## ", start + 1)
    return set(re.findall(r"`(sluice_l4_[a-z0-9_]+)`", text[start:end]))
