"""HTTP/2 frames built by hand (hyperframe + hpack, from python3-h2), for
the raw-frame client of test_http2.py and the fuzz seeds of
tests/fuzz/gen_h2_corpus.py: one way to build a request's frames."""
from hyperframe.frame import DataFrame, HeadersFrame


def headers_frame(enc, sid, fields, end_stream=True, end_headers=True):
    """A HEADERS frame of stream sid: fields encoded by the hpack.Encoder enc."""
    f = HeadersFrame(sid)
    f.data = enc.encode(fields)
    if end_stream:
        f.flags.add("END_STREAM")
    if end_headers:
        f.flags.add("END_HEADERS")
    return f


def data_frame(sid, payload, end_stream=False):
    f = DataFrame(sid)
    f.data = payload
    if end_stream:
        f.flags.add("END_STREAM")
    return f


def req(path="/", method="GET", extra=()):
    """A request's header list (authority "t", scheme http) plus extra fields."""
    return [(":method", method), (":scheme", "http"), (":path", path), (":authority", "t")] + list(extra)
