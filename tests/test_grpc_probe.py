"""``speaks_grpc``: what ``--address`` is checked with. Servers here are sockets that answer as each kind of server
does (a real Ray head's answer is checked by every cluster test of test_ray_executor.py, which joins one)."""

from __future__ import annotations

import http.server
import socket
import threading
import time

import pytest
from support import answering

from rbench.executors.grpc_probe import GOAWAY, HEADERS, SETTINGS, _integer, frame, health_check_request, speaks_grpc

SERVER_SETTINGS = frame(SETTINGS, 0, 0, bytes.fromhex("000300000064"))  # MAX_CONCURRENT_STREAMS 100
ACK = frame(SETTINGS, 1, 0, b"")
#: a gRPC server's trailers-only answer as a Ray head sent it: ``:status 200`` indexed, then literal fields
GRPC_ANSWER = frame(HEADERS, 5, 1, b"\x88\x40\x0ccontent-type\x10application/grpc")


def test_a_grpc_server_s_answer_is_recognized_whatever_frames_come_first():
    padded = frame(HEADERS, 5 | 0x8, 1, b"\x02" + b"\x88\x40" + b"\x00\x00")  # PADDED: a pad length, 2 bytes of pad
    for reply in (SERVER_SETTINGS + GRPC_ANSWER, SERVER_SETTINGS + ACK + frame(8, 0, 0, b"\0\0\0\1") + GRPC_ANSWER,
                  SERVER_SETTINGS + padded):
        with answering(lambda request, reply=reply: reply) as port:
            assert speaks_grpc("127.0.0.1", port, 5.0)


@pytest.mark.parametrize("reply, why", [
    (SERVER_SETTINGS + frame(HEADERS, 5, 1, b"\x8d"), "HTTP/2 that answers 404 (HPACK's :status 404)"),
    (SERVER_SETTINGS + frame(HEADERS, 4, 1, b"\x88") + frame(0, 1, 1, b"<html>"),
     "HTTP/2 that answers 200 with a body"),
    (SERVER_SETTINGS + frame(GOAWAY, 0, 0, bytes(8)), "HTTP/2 that refuses the request"),
    (SERVER_SETTINGS, "HTTP/2 that never answers the request (kept ray.init waiting for minutes)"),
    (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", "HTTP/1"),
    (None, "a server that accepts and says nothing"),
    (b"", "a server that closes at once")])
def test_other_servers_are_told_apart_within_the_time_limit(reply, why):
    with answering(lambda request: reply) as port:
        started = time.monotonic()
        assert not speaks_grpc("127.0.0.1", port, 1.0), why
        assert time.monotonic() - started < 2.5


def test_a_real_http1_server_and_a_closed_port():
    class Quiet(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert not speaks_grpc("127.0.0.1", server.server_address[1], 5.0)
    finally:
        server.shutdown()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        speaks_grpc("127.0.0.1", closed, 1.0)


def test_the_request_is_well_formed_hpack():
    assert _integer(10, 5) == bytes([10]) and _integer(1337, 5) == bytes([31, 154, 10])  # RFC 7541, C.1.1, C.1.2
    assert _integer(31, 4) == bytes([15, 16])
    request = health_check_request("h" * 300 + ":1")  # a long name: a multi-byte string length
    assert request.startswith(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    headers = request[24 + 9:]
    length = int.from_bytes(headers[:3], "big")
    assert headers[3] == HEADERS and len(headers) == 9 + length
    assert b"\x01\x7f\xaf\x01" + b"h" * 300 + b":1" in headers  # :authority, length 302 = 127 + 47 + 128 * 1


def test_a_gcs_is_told_from_another_grpc_server_by_its_answer_to_a_gcs_call():
    """A raylet's port (or a GCS that wants a token) speaks gRPC but answers a GCS call with trailers only: it passed
    the health check, and ray.init then retried for 23 s, printing 20 lines. A GCS answers with a message."""
    from rbench.executors.grpc_probe import DATA, GCS_METHOD, call_request, serves_gcs

    message = frame(HEADERS, 4, 1, b"\x88\x40\x0ccontent-type\x10application/grpc") + frame(DATA, 0, 1, bytes(7))
    seen = []

    def gcs(request: bytes) -> bytes:
        seen.append(request)
        return SERVER_SETTINGS + message

    with answering(gcs) as port:
        assert serves_gcs("127.0.0.1", port, 5.0)
    assert seen[0].startswith(call_request(f"127.0.0.1:{port}", GCS_METHOD, b""))
    assert seen[0].endswith(frame(DATA, 1, 1, bytes(5)))  # the empty request: not compressed, length 0, stream ended
    with answering(lambda request: SERVER_SETTINGS + GRPC_ANSWER) as port:
        assert speaks_grpc("127.0.0.1", port, 5.0) and not serves_gcs("127.0.0.1", port, 5.0)
