"""Access log lines: JSON that always parses and round-trips, and requests
refused before routing (400, 414, 431, 408) logged with what was refused,
why, and how long it took.

One proxy, two listeners on the same backend: `json` (access_log_format:
json) and `text` (combined), with the daemon log at debug level.
"""
import json
import socket
import time

import pytest

import conftest
from helpers import count_lines, free_port, new_log_lines, wait_for
from raw_servers import RawServer, recv_until_close, scripted_handler

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"


class Env:
    pass


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = Env()
    tmp = tmp_path_factory.mktemp("alog")
    e.backend = RawServer(scripted_handler([OK]), name="ok")
    e.json_port, e.text_port = free_port(), free_port()
    e.json_log, e.text_log = tmp / "access.json", tmp / "access.log"
    listener = ("  - name: %s\n    listen: 127.0.0.1:%d\n    pool: app\n    access_log: %s\n"
                "    access_log_format: %s\n    timeouts: { client_header: 1s }\n"
                "    limits: { max_request_line: 1k, max_header_size: 4k, max_headers: 20 }\n")
    cfg = ("workers: 1\nadmin: { listen: off }\nlog: { level: debug }\n"
           "pools:\n  - name: app\n    backends: [%s]\nlisteners:\n" % e.backend.addr
           + listener % ("json", e.json_port, e.json_log, "json")
           + listener % ("text", e.text_port, e.text_log, "combined"))
    e.proxy = conftest.Sluice(tmp, cfg)
    try:
        e.proxy.start(wait_ports=[e.json_port, e.text_port])
        yield e
    finally:
        e.proxy.stop()
        e.backend.stop()
        e.proxy.assert_clean()


def exchange(port, data, pause=None):
    """Send data (then, with pause, wait that long before reading); returns
    (everything received until close, seconds from connect to close)."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        got = recv_until_close(s, timeout=10)
    return got, time.monotonic() - t0


def json_entry(env, data):
    """Send a request on the json listener; returns (its parsed line, the raw
    line, the exchange's wall time)."""
    before = count_lines(env.json_log)
    got, took = exchange(env.json_port, data)
    raw = new_log_lines(env.json_log, before)[-1]
    raw.decode("ascii")   # JSON_ENSURE_ASCII: the line itself is plain ASCII
    return json.loads(raw), raw, took, got


def test_utf8_user_agent_round_trips(env):
    ua = "caf\u00e9 \u2603 \U0001f600 \"q\" \\ end"
    doc, raw, _, got = json_entry(env, b"GET /utf8 HTTP/1.1\r\nHost: t\r\nUser-Agent: " + ua.encode()
                                  + b"\r\nReferer: /r\xc3\xa9f\r\nConnection: close\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 200 ")
    assert doc["user_agent"] == ua, raw
    assert doc["referer"] == "/r\u00e9f", raw
    assert doc["status"] == 200 and doc["request"] == "GET /utf8 HTTP/1.1" and doc["reason"] == ""
    assert b"\\u00e9" in raw.lower() and b"\\u00c3" not in raw.lower()


def test_invalid_utf8_still_parses(env):
    # A lone continuation byte, a truncated 3-byte sequence, an overlong '/',
    # a UTF-16 surrogate and bytes that start nothing: each maximal bad
    # subsequence becomes one U+FFFD, what is valid around them stays.
    bad = b"a\x80b\xe2\x82c\xc0\xafd\xed\xa0\x80e\xff\xfef"
    doc, raw, _, _ = json_entry(env, b"GET /bad HTTP/1.1\r\nHost: t\r\nUser-Agent: " + bad
                                + b"\r\nConnection: close\r\n\r\n")
    r = "\ufffd"
    assert doc["user_agent"] == "a" + r + "b" + r + "c" + r * 2 + "d" + r * 3 + "e" + r * 2 + "f", raw
    assert doc["status"] == 200


REJECTED = [
    ("bad_request", b"GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n", 400, "GET / HTTP/1.1"),
    ("line_too_long", b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "GET /aaaa"),
    ("too_many_fields", b"GET /many HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(30))
     + b"\r\n", 431, "GET /many HTTP/1.1"),
    ("garbage_bytes", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, "\u0016\u0003\u0001\u0002"),
]


@pytest.mark.parametrize("name,raw,status,line", REJECTED, ids=[r[0] for r in REJECTED])
def test_rejected_request_logged_with_reason_and_duration(env, name, raw, status, line):
    doc, text, took, got = json_entry(env, raw)
    assert got.startswith(b"HTTP/1.1 %d " % status), got[:100]
    assert doc["status"] == status, text
    assert doc["request"].startswith(line), text
    assert doc["reason"], text
    # Its own time, not the time since the machine booted: at most the exchange.
    assert 0 <= doc["duration_us"] <= took * 1e6, (doc["duration_us"], took)
    assert doc["upstream"] == "" and doc["listener"] == "json"
    # ...and the daemon log says why at debug level.
    assert wait_for(lambda: ("%d " % status) in env.proxy.read_log() and doc["reason"] in env.proxy.read_log(), 3)


def test_refused_after_parsing_keeps_the_request_fields(env):
    """501 for CONNECT comes after the head was parsed: the line keeps the
    request's own fields, with the reason."""
    doc, text, _, got = json_entry(env, b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n"
                                        b"User-Agent: tunnel/1\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 501 ")
    assert doc["request"] == "CONNECT a.example:443 HTTP/1.1" and doc["user_agent"] == "tunnel/1", text
    assert doc["host"] == "a.example:443" and doc["reason"] == "CONNECT is not supported", text


def test_head_timeout_logged_with_its_duration(env):
    doc, text, took, got = json_entry(env, b"GET /slow HTTP/1.1\r\nHost: t\r\n")
    assert got.startswith(b"HTTP/1.1 408 ")
    assert doc["status"] == 408 and doc["request"] == "GET /slow HTTP/1.1" and doc["reason"], text
    # From the first byte to the timeout: client_header (1s), and within the exchange.
    # (The timer runs from the accept, the duration from the first byte: a
    # little less.)
    assert 0.9e6 <= doc["duration_us"] <= took * 1e6, (doc["duration_us"], took)


def test_rejected_request_does_not_reuse_the_previous_ones_fields(env):
    """A keep-alive connection: a good request, then a bad one. The bad one is
    logged as itself, not with the line and User-Agent of the one before."""
    before = count_lines(env.json_log)
    got, _ = exchange(env.json_port, b"GET /first HTTP/1.1\r\nHost: t\r\nUser-Agent: first-agent\r\n\r\n"
                      b"GET /second HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 200 ") and b"HTTP/1.1 400 " in got
    first, second = [json.loads(l) for l in new_log_lines(env.json_log, before, 2)]
    assert first["request"] == "GET /first HTTP/1.1" and first["user_agent"] == "first-agent"
    assert second["status"] == 400 and second["request"] == "GET /second HTTP/1.1"
    assert second["user_agent"] == "" and second["reason"]


def test_text_format_rejected_request_line(env):
    """Combined format: a refused request shows what was refused, escaped, and
    never the previous request's line."""
    before = count_lines(env.text_log)
    got, _ = exchange(env.text_port, b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n"
                      b"GET /b\xc3\xa9 HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n")
    assert b"HTTP/1.1 400 " in got
    first, second = new_log_lines(env.text_log, before, 2)
    assert b'"GET /ok HTTP/1.1" 200 3 "-" "-"' in first, first
    assert b'"GET /b\\xC3\\xA9 HTTP/1.1" 400 ' in second, second
    before = count_lines(env.text_log)
    exchange(env.text_port, b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    line, = new_log_lines(env.text_log, before)
    assert b'"GET /aaaa' in line and b'" 414 ' in line, line
