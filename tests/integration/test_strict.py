"""Strict HTTP/1.1 parsing at the proxy, end to end: a request (or response)
that two implementations could frame differently is refused, never
forwarded. Every case here must get its 4xx/5xx and a closed connection, and
the backend must receive nothing it should not.

One proxy serves the whole module (these are many small cases):
  default pool  -> `never`   : a recorder that must never see one byte
  /chunked...   -> `chunked` : a recorder for bodies that turn invalid midway
  /resp/NAME    -> `resp`    : answers with the (malformed) response NAME
  /sanity       -> `sane`    : answers 200, proves the path works
"""
import socket
import time

import pytest

import conftest
from helpers import free_port, wait_for
from raw_servers import RawServer, http_config, recorder_handler, recv_until_close, scripted_handler


class Env:
    pass


RESPONSES = {
    # head errors: the client gets a 502
    "bare_lf_status": b"HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\nok",
    "bare_lf_header": b"HTTP/1.1 200 OK\r\nContent-Length: 2\nX-A: 1\r\n\r\nok",
    "bare_lf_blank": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\nok",
    "bare_cr_header": b"HTTP/1.1 200 OK\r\nX-A: 1\rX-B: 2\r\nContent-Length: 2\r\n\r\nok",
    "te_and_cl": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "two_cls": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!",
    "te_not_chunked_last": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nxx",
    "status_two_digits": b"HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nok",
    "status_four_digits": b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok",
    "status_out_of_range": b"HTTP/1.1 999 Nope\r\nContent-Length: 2\r\n\r\nok",
    "status_line_garbage": b"HTTX/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "status_http2": b"HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "not_http": b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
    "obs_fold": b"HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\nContent-Length: 2\r\n\r\nok",
    "nul_in_header": b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok",
    "ctl_in_header": b"HTTP/1.1 200 OK\r\nX-A: a\x1bb\r\nContent-Length: 2\r\n\r\nok",
    "space_in_header_name": b"HTTP/1.1 200 OK\r\nBad Header: 1\r\nContent-Length: 2\r\n\r\nok",
    "bad_content_length": b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok",
    # body errors: a 502 if the head has not left yet, else a cut connection
    "bad_chunk_size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\nzz\r\nEVIL\r\n0\r\n\r\n",
    "bad_chunk_ext": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;=x\r\nEVIL\r\n0\r\n\r\n",
    "chunk_data_overrun": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokEVIL\r\n0\r\n\r\n",
}
BODY_ERRORS = {"bad_chunk_size", "bad_chunk_ext", "chunk_data_overrun"}


def pick_response(head):
    path = head.split(b" ")[1].decode()
    name = path.rsplit("/", 1)[1]
    if name == "ok":
        return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    return RESPONSES[name]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = Env()
    e.never = RawServer(recorder_handler, name="never")
    e.chunked = RawServer(recorder_handler, name="chunked")
    e.resp = RawServer(scripted_handler([pick_response]), name="resp")
    e.sane = RawServer(recorder_handler, name="sane")
    e.port = free_port()
    pools = {"never": [e.never.addr], "chunked": [e.chunked.addr], "resp": [e.resp.addr], "sane": [e.sane.addr]}
    routes = [(None, "/chunked", "chunked"), (None, "/resp/", "resp"), (None, "/sanity", "sane")]
    cfg = http_config(e.port, pools, routes=routes, default_pool="never",
                      timeouts={"client_header": "3s", "upstream_response": "5s"})
    e.proxy = conftest.Sluice(tmp_path_factory.mktemp("strict"), cfg)
    try:
        e.proxy.start(wait_ports=[e.port])
        yield e
    finally:
        e.proxy.stop()
        for s in (e.never, e.chunked, e.resp, e.sane):
            s.stop()
        e.proxy.assert_clean()


def exchange(port, data, timeout=5.0, pause_after=None):
    """Send data; return (everything received, closed by the proxy?)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        t0 = time.monotonic()
        got = recv_until_close(s, timeout=timeout)
        closed = time.monotonic() - t0 < timeout - 0.1
    return got, closed


def status_of(data):
    if not data.startswith(b"HTTP/1.1 "):
        return None
    return int(data[9:12])


# ------------------------------------------------------------------ request heads

LONG_LINE = b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n"
BIG_HEADERS = b"GET / HTTP/1.1\r\nHost: t\r\n" + b"".join(
    b"X-Pad-%03d: %s\r\n" % (i, b"p" * 500) for i in range(70)) + b"\r\n"
MANY_HEADERS = b"GET / HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(110)) + b"\r\n"

HEAD_CASES = [
    # framing
    ("te_and_cl", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
                  b"5\r\nhello\r\n0\r\n\r\n", 400),
    ("cl_and_te", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"5\r\nhello\r\n0\r\n\r\n", 400),
    ("two_content_lengths", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    ("content_length_list_differs", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 6\r\n\r\nhello!", 400),
    ("content_length_plus_sign", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\nhello", 400),
    ("content_length_hex", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0x5\r\n\r\nhello", 400),
    ("content_length_empty", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length:\r\n\r\n", 400),
    ("te_final_gzip", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400),
    ("te_only_gzip", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n", 400),
    ("te_chunked_twice", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400),
    ("te_chunked_with_param", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n", 400),
    ("te_lines_gzip_last", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                           b"Transfer-Encoding: gzip\r\n\r\n0\r\n\r\n", 400),
    # RFC 9112 §6.1: an unknown coding is "501 Not Implemented", the one 5xx here.
    ("te_unknown_coding", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n", 501),
    ("te_in_http10", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    # line and byte level
    ("obs_fold", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n continued\r\n\r\n", 400),
    ("obs_fold_tab", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n\tcontinued\r\n\r\n", 400),
    ("bare_cr_in_header", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: 1\rX-B: 2\r\n\r\n", 400),
    ("bare_cr_request_line", b"GET / HTTP/1.1\rHost: t\r\n\r\n", 400),
    ("bare_lf_request_line", b"GET / HTTP/1.1\nHost: t\r\n\r\n", 400),
    ("bare_lf_header", b"GET / HTTP/1.1\r\nHost: t\nX-A: 1\r\n\r\n", 400),
    ("bare_lf_blank_line", b"GET / HTTP/1.1\r\nHost: t\r\n\n", 400),
    ("nul_in_request_line", b"GET /a\x00b HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("nul_in_header_value", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n", 400),
    ("ctl_in_header_value", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x01b\r\n\r\n", 400),
    ("del_in_header_value", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x7fb\r\n\r\n", 400),
    ("ctl_in_header_name", b"GET / HTTP/1.1\r\nHost: t\r\nX\x0bA: 1\r\n\r\n", 400),
    ("invalid_method_token", b"G(T / HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("tab_after_method", b"GET\t/ HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("double_space_request_line", b"GET  / HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("leading_empty_line", b"\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("fragment_in_target", b"GET /a#b HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("header_name_with_space", b"GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n", 400),
    ("space_before_colon", b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    ("empty_header_name", b"GET / HTTP/1.1\r\nHost: t\r\n: x\r\n\r\n", 400),
    ("whitespace_before_first_header", b"GET / HTTP/1.1\r\n Host: t\r\n\r\n", 400),
    # limits
    ("request_line_too_long", LONG_LINE, 414),
    ("header_section_too_large", BIG_HEADERS, 431),
    ("too_many_header_fields", MANY_HEADERS, 431),
    # versions
    ("http09", b"GET /\r\n", 400),
    ("http12", b"GET / HTTP/1.2\r\nHost: t\r\n\r\n", 505),
    ("http20", b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
    ("http3", b"GET / HTTP/3\r\nHost: t\r\n\r\n", 400),
    ("version_lowercase", b"GET / http/1.1\r\nHost: t\r\n\r\n", 400),
    ("version_trailing_space", b"GET / HTTP/1.1 \r\nHost: t\r\n\r\n", 400),
    # Host
    ("missing_host", b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", 400),
    ("duplicate_host", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("duplicate_host_same_value", b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
    ("host_with_userinfo", b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", 400),
    ("host_with_space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
]


@pytest.mark.parametrize("name,raw,status", HEAD_CASES, ids=[c[0] for c in HEAD_CASES])
def test_invalid_request_head_refused(env, name, raw, status):
    assert 400 <= status < 600
    got, closed = exchange(env.port, raw)
    assert status_of(got) == status, got[:200]
    assert b"\r\nConnection: close\r\n" in got
    assert closed, "the proxy kept the connection open"
    # Nothing, not a byte, reached a backend.
    assert env.never.connections() == 0 and env.never.total_bytes() == 0


def test_sanity_valid_request_passes(env):
    got, _ = exchange(env.port, b"GET /sanity HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert status_of(got) == 200 and got.endswith(b"\r\n\r\nok\n")
    got, _ = exchange(env.port, b"GET /resp/ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert status_of(got) == 200 and got.endswith(b"\r\n\r\nok")


def test_pipelined_invalid_request_after_valid_one(env):
    """The valid request is answered; the invalid one behind it is refused and
    never reaches the backend (no smuggling through a good request)."""
    raw = (b"GET /sanity HTTP/1.1\r\nHost: t\r\n\r\n"
           b"GET /x HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    before = env.sane.total_bytes()
    got, closed = exchange(env.port, raw)
    assert status_of(got) == 200
    second = got[got.index(b"ok\n") + 3:]
    assert status_of(second) == 400 and closed
    assert b"/x" not in b"".join(env.sane.received())[before:]
    assert env.never.total_bytes() == 0


# ------------------------------------------------------------------ request bodies

# (name, valid prefix of the chunked body, the rest, offset of the first invalid byte in the rest)
CHUNK_CASES = [
    ("invalid_chunk_size", b"5\r\nhello\r\n", b"zz\r\nhello\r\n0\r\n\r\n", 0),
    ("chunk_size_0x_prefix", b"", b"0x5\r\nhello\r\n0\r\n\r\n", 1),
    ("chunk_size_negative", b"5\r\nhello\r\n", b"-5\r\nhello\r\n0\r\n\r\n", 0),
    ("chunk_size_too_long", b"", b"1" + b"0" * 16 + b"\r\n", 16),
    ("chunk_size_space_inside", b"", b"5 5\r\nhello\r\n0\r\n\r\n", 2),
    ("chunk_ext_without_name", b"", b"5;=x\r\nhello\r\n0\r\n\r\n", 2),
    ("chunk_ext_ctl_byte", b"3\r\nabc\r\n", b"5;a=\x01\r\nhello\r\n0\r\n\r\n", 4),
    ("chunk_ext_bad_quoted", b"", b"5;a=\"x\r\nhello\r\n0\r\n\r\n", 6),
    ("chunk_ext_too_long", b"", b"5;" + b"a" * 5000 + b"\r\nhello\r\n0\r\n\r\n", 4096),
    ("missing_crlf_after_data", b"5\r\nhello", b"XX0\r\n\r\n", 0),
    ("bare_lf_after_size", b"", b"5\nhello\r\n0\r\n\r\n", 1),
    ("bare_cr_in_size_line", b"2\r\nab\r\n", b"5\rhello\r\n0\r\n\r\n", 2),
    ("obs_fold_in_trailer", b"5\r\nhello\r\n0\r\n", b"X-T: 1\r\n folded\r\n\r\n", 8),
    ("bad_trailer_name", b"5\r\nhello\r\n0\r\n", b"Bad Trailer: 1\r\n\r\n", 3),
]


def chunked_forwarded(env, conns_before):
    """Bytes the chunked recorder received on connections opened since."""
    return b"".join(env.chunked.received()[conns_before:])


@pytest.mark.parametrize("split", [False, True], ids=["one_write", "after_forwarding"])
@pytest.mark.parametrize("name,good,bad,bad_at", CHUNK_CASES, ids=[c[0] for c in CHUNK_CASES])
def test_invalid_chunked_request_body(env, name, good, bad, bad_at, split):
    head = b"POST /chunked/%s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" % name.encode()
    conns_before = env.chunked.connections()
    with socket.create_connection(("127.0.0.1", env.port), timeout=5) as s:
        if split:
            # The head and the valid prefix go upstream first...
            s.sendall(head + good)
            assert wait_for(lambda: chunked_forwarded(env, conns_before).endswith(b"\r\n\r\n" + good), 3)
            s.sendall(bad)   # ...then the invalid bytes arrive.
        else:
            s.sendall(head + good + bad)
        got = recv_until_close(s, timeout=5)
    assert status_of(got) == 400, got[:200]
    assert b"Connection: close" in got
    time.sleep(0.05)
    fwd = chunked_forwarded(env, conns_before)
    if fwd:
        fhead, sep, body = fwd.partition(b"\r\n\r\n")
        assert sep and fhead.startswith(b"POST /chunked/%s HTTP/1.1\r\n" % name.encode())
        # What went upstream is a prefix of the body that stops before the
        # first invalid byte: the backend never sees it, nor a complete body.
        allowed = good + bad[:bad_at]
        assert allowed.startswith(body), (body, allowed)
    assert env.never.total_bytes() == 0


def test_valid_chunked_body_with_extensions_and_trailers_passes(env):
    body = b"5;a=b;c=\"q\\\"x\"\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"
    conns_before = env.chunked.connections()
    with socket.create_connection(("127.0.0.1", env.port), timeout=5) as s:
        s.sendall(b"POST /chunked/ok HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
        assert wait_for(lambda: chunked_forwarded(env, conns_before).endswith(body), 3)
        # The recorder never answers: reset, so the proxy drops the request now
        # rather than at its upstream_response timeout.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


# ------------------------------------------------------------------ responses

@pytest.mark.parametrize("name", sorted(RESPONSES))
def test_invalid_response_refused(env, name):
    got, closed = exchange(env.port, b"GET /resp/%s HTTP/1.1\r\nHost: t\r\n\r\n" % name.encode())
    assert closed
    assert b"EVIL" not in got   # the invalid part never reaches the client
    if name in BODY_ERRORS:
        # Either nothing had left yet (502), or the head had and the
        # connection is cut before the body could complete.
        assert status_of(got) in (502, 200), got[:200]
        if status_of(got) == 200:
            assert not got.endswith(b"0\r\n\r\n")
    else:
        assert status_of(got) == 502, got[:200]
        assert b"HTTP/1.1 200" not in got
    # The proxy is fine afterwards.
    got, _ = exchange(env.port, b"GET /resp/ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert status_of(got) == 200


def test_request_one_byte_at_a_time(env):
    """Every split point of a head and a chunked body: same result as one write."""
    body = b"3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n"
    raw = b"POST /chunked/bytewise HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    conns_before = env.chunked.connections()
    with socket.create_connection(("127.0.0.1", env.port), timeout=5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(raw)):
            s.sendall(raw[i:i + 1])
            time.sleep(0.002)
        assert wait_for(lambda: chunked_forwarded(env, conns_before).endswith(b"\r\n\r\n" + body), 3)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
