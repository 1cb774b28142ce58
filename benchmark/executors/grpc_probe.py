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
HEADERS, RST_STREAM, SETTINGS, GOAWAY = 1, 3, 4, 7
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


def health_check_request(authority: str) -> bytes:
    """The preface, an empty SETTINGS frame and, on stream 1, the headers of a gRPC health check with no body.
    Header fields: ``:method POST`` and ``:scheme http`` indexed (static entries 3 and 6, high bit set); ``:path``,
    ``:authority`` and ``content-type`` literal without indexing, their names indexed (entries 4, 1 and 31, a
    4-bit prefix); ``te: trailers`` literal with a literal name."""
    fields = [b"\x83", b"\x86"]
    for index, value in ((4, "/grpc.health.v1.Health/Check"), (1, authority), (31, "application/grpc")):
        fields.append(_integer(index, 4) + _string(value))
    fields.append(b"\x00" + _string("te") + _string("trailers"))
    return PREFACE + frame(SETTINGS, 0, 0, b"") + frame(HEADERS, END_STREAM | END_HEADERS, 1, b"".join(fields))


def speaks_grpc(host: str, port: int, timeout: float) -> bool:
    """True when the server at ``host:port`` answers :func:`health_check_request` as a gRPC server does (its first
    frame SETTINGS, then on stream 1 headers that end the stream, whose first field is ``:status: 200``) within
    ``timeout`` seconds in all; False when it answers otherwise, closes, or says nothing in time. OSError when
    nothing accepts."""
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(health_check_request(f"{host}:{port}"))
        received = b""
        first = True
        while True:
            while len(received) < 9 or len(received) < 9 + int.from_bytes(received[:3], "big"):
                if len(received) >= 9 and int.from_bytes(received[:3], "big") > MAX_FRAME:
                    return False
                conn.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    return False
                if not chunk:
                    return False
                received += chunk
            length, kind, flags = int.from_bytes(received[:3], "big"), received[3], received[4]
            stream = int.from_bytes(received[5:9], "big") & 0x7FFFFFFF
            payload, received = received[9:9 + length], received[9 + length:]
            if first and kind != SETTINGS:  # not HTTP/2 (an HTTP/1 server's "HTTP/1.1 400" reads as a frame)
                return False
            first = False
            if kind == GOAWAY or (kind == RST_STREAM and stream == 1):
                return False
            if kind == HEADERS and stream == 1:
                skip = (1 if flags & PADDED else 0) + (5 if flags & PRIORITY else 0)
                return bool(flags & END_STREAM) and len(payload) > skip and payload[skip] == STATUS_200
