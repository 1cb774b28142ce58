"""Whether a gRPC server listens at an address, asked within a time limit: what ``--address`` is checked with before
``ray.init``, which retries for many minutes at a port that accepts connections but is not a Ray head (a web
server; an HTTP/2 server that is not gRPC kept it waiting over 200 s, printing Ray's log lines).

Hand-written because no library Ray installs speaks HTTP/2 (grpcio comes only with ``ray[client]``, h2 not at
all). The request is the least HTTP/2 that gets an answer (RFC 9113, HPACK RFC 7541): the connection preface, an
empty SETTINGS frame and one HEADERS frame with END_STREAM, a POST of the gRPC health check with no message. A gRPC
server answers any such request, for a method it has or not, with its authentication or not, with one HEADERS
frame that ends the stream ("trailers-only": no message, the call's failure in ``grpc-status``), HTTP status 200
first; a web server answers 404 or 405, or a 200 with a body, or nothing. One that answers every request with an
empty 200 passes (then ``ray.init`` retries, as before this check). Header blocks that begin otherwise than with
the indexed ``:status: 200`` (a table size update, CONTINUATION frames, a literal status) are valid HTTP/2 that no
gRPC server checked (grpc-core, as a Ray head runs it) sends here: they are refused.
"""

from __future__ import annotations

import socket
import time

#: the client's connection preface (RFC 9113, section 3.4)
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: frame types (RFC 9113, section 6)
DATA, HEADERS, RST_STREAM, SETTINGS, GOAWAY = 0, 1, 3, 4, 7
#: a method a Ray head's GCS serves (src/ray/protobuf/gcs_service.proto), whose request message is empty: it answers
#: with a message; another gRPC server (a raylet's port), or a GCS that wants a token, answers with trailers only
GCS_METHOD = "/ray.rpc.NodeInfoGcsService/GetClusterId"
#: HEADERS flags
END_STREAM, END_HEADERS, PADDED, PRIORITY = 0x1, 0x4, 0x8, 0x20
#: HPACK's static table entry 8, ``:status: 200``, as an indexed header field (RFC 7541, section 6.1 and appendix A)
STATUS_200 = 0x88
#: an answer frame longer than this is no gRPC server's answer to a request without a message
MAX_FRAME = 1 << 16


def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    """One HTTP/2 frame: 3 bytes of length, type, flags, 4 bytes of stream id, the payload."""
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def _integer(value: int, prefix_bits: int) -> bytes:
    """An HPACK integer with an N-bit prefix (RFC 7541, section 5.1), the bits above the prefix zero."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([value])
    out, value = [limit], value - limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    return bytes([*out, value])


def _string(text: str) -> bytes:
    """An HPACK string literal without Huffman coding (section 5.2)."""
    data = text.encode()
    return _integer(len(data), 7) + data


def call_request(authority: str, path: str, message: bytes | None = None) -> bytes:
    """The preface, an empty SETTINGS frame and, on stream 1, the headers of a gRPC call of method ``path``, then
    its one ``message`` in a DATA frame (gRPC's length-prefixed framing: a byte saying "not compressed", 4 bytes of
    length), or no body at all (None). Header fields: ``:method POST`` and ``:scheme http`` indexed (static entries
    3 and 6, high bit set); ``:path``, ``:authority`` and ``content-type`` literal without indexing, their names
    indexed (entries 4, 1 and 31, a 4-bit prefix); ``te: trailers`` literal with a literal name."""
    fields = [b"\x83", b"\x86"]
    for index, value in ((4, path), (1, authority), (31, "application/grpc")):
        fields.append(_integer(index, 4) + _string(value))
    fields.append(b"\x00" + _string("te") + _string("trailers"))
    if message is None:
        return PREFACE + frame(SETTINGS, 0, 0, b"") + frame(HEADERS, END_STREAM | END_HEADERS, 1, b"".join(fields))
    body = b"\x00" + len(message).to_bytes(4, "big") + message
    return (PREFACE + frame(SETTINGS, 0, 0, b"") + frame(HEADERS, END_HEADERS, 1, b"".join(fields))
            + frame(DATA, END_STREAM, 1, body))


def health_check_request(authority: str) -> bytes:
    """A gRPC health check with no body (:func:`call_request`): any gRPC server answers it, trailers only."""
    return call_request(authority, "/grpc.health.v1.Health/Check")


def speaks_grpc(host: str, port: int, timeout: float) -> bool:
    """True when the server at ``host:port`` answers :func:`health_check_request` as a gRPC server does (its first
    frame SETTINGS, then on stream 1 headers that end the stream, whose first field is ``:status: 200``) within
    ``timeout`` seconds in all; False when it answers otherwise, closes, or says nothing in time. OSError when
    nothing accepts."""
    return _answer(host, port, timeout, health_check_request(f"{host}:{port}")) == "trailers only"


def serves_gcs(host: str, port: int, timeout: float) -> bool:
    """True when the gRPC server at ``host:port`` answers a call of :data:`GCS_METHOD` (with its empty request) with a
    message, as a Ray head's GCS does; False for an answer of trailers only (the method unknown there, or refused
    for want of a token) or anything else. OSError when nothing accepts."""
    return _answer(host, port, timeout, call_request(f"{host}:{port}", GCS_METHOD, b"")) == "message"


def _answer(host: str, port: int, timeout: float, request: bytes) -> str:
    """How the server at ``host:port`` answers ``request`` on stream 1 within ``timeout`` seconds in all:
    ``"trailers only"`` (headers that end the stream, ``:status: 200`` first), ``"message"`` (``:status: 200``
    headers, then a DATA frame), or ``"other"`` (not HTTP/2, another status, a refusal, a close, silence)."""
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(request)
        received = b""
        first = True
        answered = False  # stream 1's headers came, with :status: 200, without ending it
        while True:
            while len(received) < 9 or len(received) < 9 + int.from_bytes(received[:3], "big"):
                if len(received) >= 9 and int.from_bytes(received[:3], "big") > MAX_FRAME:
                    return "other"
                conn.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    return "other"
                if not chunk:
                    return "other"
                received += chunk
            length, kind, flags = int.from_bytes(received[:3], "big"), received[3], received[4]
            stream = int.from_bytes(received[5:9], "big") & 0x7FFFFFFF
            payload, received = received[9:9 + length], received[9 + length:]
            if first and kind != SETTINGS:  # not HTTP/2 (an HTTP/1 server's "HTTP/1.1 400" reads as a frame)
                return "other"
            first = False
            if kind == GOAWAY or (kind == RST_STREAM and stream == 1):
                return "other"
            if kind == DATA and stream == 1:
                return "message" if answered else "other"
            if kind == HEADERS and stream == 1:
                if answered:  # trailers after headers, no message between
                    return "other"
                skip = (1 if flags & PADDED else 0) + (5 if flags & PRIORITY else 0)
                if not (len(payload) > skip and payload[skip] == STATUS_200):
                    return "other"
                if flags & END_STREAM:
                    return "trailers only"
                answered = True
