"""A bare HTTP/2 client for tests/integration/doh.sh: frames written by hand over Python's ssl
module (ALPN h2), header blocks as HPACK literals without Huffman coding, so that a test sends
exactly what a hostile client would (more streams than allowed, resets, endless CONTINUATION
frames, a window that never opens), with no client library to stop it. No dependency but
Python's standard library."""

import socket
import ssl
import struct

DATA, HEADERS, RST_STREAM, SETTINGS, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 7, 8, 9
END_STREAM, END_HEADERS = 1, 4
INITIAL_WINDOW_SIZE = 4
REFUSED_STREAM, CANCEL = 7, 8
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind, flags, stream, payload=b""):
    head = struct.pack(">I", len(payload))[1:] + bytes([kind, flags])
    return head + struct.pack(">I", stream) + payload


def settings(**values):
    """A SETTINGS frame, e.g. settings(window=0) for SETTINGS_INITIAL_WINDOW_SIZE 0."""
    payload = b""
    if "window" in values:
        payload += struct.pack(">HI", INITIAL_WINDOW_SIZE, values["window"])
    return frame(SETTINGS, 0, 0, payload)


def _int(n, prefix, first=0):
    top = (1 << prefix) - 1
    if n < top:
        return bytes([first | n])
    out = [first | top]
    n -= top
    while n >= 128:
        out.append(n % 128 + 128)
        n //= 128
    out.append(n)
    return bytes(out)


def literal(name, value):
    """A header field, literal without indexing, new name, no Huffman (RFC 7541 6.2.2)."""
    return b"\x00" + _int(len(name), 7) + name + _int(len(value), 7) + value


def request(path, method=b"GET", extra=()):
    block = literal(b":method", method) + literal(b":scheme", b"https")
    block += literal(b":authority", b"dns.test") + literal(b":path", path)
    for name, value in extra:
        block += literal(name, value)
    return block


def get(stream, path):
    """A whole GET request on stream."""
    return frame(HEADERS, END_HEADERS | END_STREAM, stream, request(path))


def connect(port, ca, host="127.0.0.1", source=None, first=None, timeout=5):
    """A TLS connection with ALPN h2 and the client preface sent (first: SETTINGS to send
    instead of an empty one)."""
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection((host, port), timeout=timeout, source_address=source)
    s = ctx.wrap_socket(raw, server_hostname="dns.test")
    if s.selected_alpn_protocol() != "h2":
        raise RuntimeError(f"ALPN: {s.selected_alpn_protocol()}")
    s.sendall(PREFACE + (first if first is not None else settings()))
    return s


def _exactly(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            return None
        out += chunk
    return out


def frames(s):
    """The frames the server sends, as (kind, flags, stream, payload), until it closes (then
    None is yielded once) or a read times out (socket.timeout is raised)."""
    while True:
        try:
            head = _exactly(s, 9)
        except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
            head = None
        if head is None:
            yield None
            return
        length = int.from_bytes(head[:3], "big")
        payload = _exactly(s, length) if length else b""
        if payload is None:
            yield None
            return
        yield head[3], head[4], int.from_bytes(head[5:9], "big") & 0x7FFFFFFF, payload


def is_200(payload):
    """Does a response header block start with :status 200 (static table entry 8)?"""
    return payload[:1] == b"\x88"
