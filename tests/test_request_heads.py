"""Bounded request heads (``core.api.heads``): a head over ``max_head_bytes`` gets 431 and its
connection closes, after reading no more than one read past the limit; a head that never finishes
is closed after ``head_timeout_seconds``; ordinary, keep-alive and WebSocket requests are served."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import select
import socket
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from uvicorn.server import ServerState
from websockets.sync.client import connect

from core.api.heads import HEAD_TOO_LARGE_STATUS, HeadLimitedProtocol
from core.config import Settings
from tests.helpers import LiveServer, new_session

HEAD_TIMEOUT_SECONDS = 0.5  # small, so the test of an unfinished head ends soon
MAX_HEAD_BYTES = Settings.max_head_bytes
MiB = 1024 * 1024
CLIENT_WAIT_SECONDS = 30  # how long the client waits for any answer: far more than the server needs


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    live = LiveServer(settings=Settings(head_timeout_seconds=HEAD_TIMEOUT_SECONDS), ws="wsproto")
    live.start()
    yield live
    live.stop()


def open_socket(server: LiveServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=CLIENT_WAIT_SECONDS)


def request_head(path: str = "/api/health", headers: dict[str, str] | None = None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def status_or_closed(sock: socket.socket, data: bytes) -> int | None:
    """Send ``data`` and read the answer's status; None when the server closed the connection
    without one (it may close while the client is still sending)."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(data)
    response = http.client.HTTPResponse(sock)
    try:
        response.begin()
    except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
        return None
    response.read()
    return response.status


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed ``sock`` (waits up to CLIENT_WAIT_SECONDS for it)."""
    readable, _, _ = select.select([sock], [], [], CLIENT_WAIT_SECONDS)
    if not readable:
        return False
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_a_1_mib_header_is_refused_with_431_and_health_still_answers(server):
    with open_socket(server) as sock:
        status = status_or_closed(sock, request_head(headers={"X-Big": "a" * MiB}))
        assert status in {HEAD_TOO_LARGE_STATUS, None}
        assert closed_by_server(sock)
    assert httpx.get(f"{server.url}/api/health", timeout=5).status_code == 200


def test_a_head_just_over_the_limit_gets_431_with_a_plain_detail(server):
    with open_socket(server) as sock:
        sock.sendall(request_head(headers={"X-Big": "a" * MAX_HEAD_BYTES}))
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == HEAD_TOO_LARGE_STATUS
        assert "larger than 64 KiB" in json.loads(response.read())["detail"]
        assert closed_by_server(sock)


def test_many_small_headers_under_the_limit_are_served(server):
    headers = {f"X-Note-{n}": "v" * 100 for n in range(300)}  # about 33 KiB of headers
    assert sum(len(k) + len(v) for k, v in headers.items()) < MAX_HEAD_BYTES
    response = httpx.get(f"{server.url}/api/health", headers=headers, timeout=10)
    assert response.status_code == 200


def test_each_keep_alive_request_gets_its_own_head_budget(server):
    # Two heads of 40 KiB on one connection: together over the limit, each under it.
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=CLIENT_WAIT_SECONDS)
    answers = []
    for _ in range(2):
        connection.request("GET", "/api/health", headers={"X-Big": "a" * (40 * 1024)})
        response = connection.getresponse()
        response.read()
        answers.append((response.status, connection.sock))
    connection.close()
    assert [status for status, _ in answers] == [200, 200]
    assert answers[0][1] is answers[1][1]  # the same socket: kept alive, not reconnected


def test_a_head_sent_byte_by_byte_that_never_finishes_is_closed_after_the_timeout(server):
    with open_socket(server) as sock:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        sent = 0
        closed = False
        # One byte per wait of 1/10 of the timeout: the connection is never idle, the head never ends.
        for _ in range(int(CLIENT_WAIT_SECONDS / (HEAD_TIMEOUT_SECONDS / 10))):
            readable, _, _ = select.select([sock], [], [], HEAD_TIMEOUT_SECONDS / 10)
            if readable:
                try:
                    closed = sock.recv(1) == b""
                except ConnectionResetError:
                    closed = True
                break
            try:
                sock.sendall(b"a")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            sent += 1
        assert closed
        assert sent < MAX_HEAD_BYTES  # closed for its time, not its size
    assert httpx.get(f"{server.url}/api/health", timeout=5).status_code == 200


def test_a_connection_that_never_sends_a_head_is_closed_after_the_timeout(server):
    with open_socket(server) as sock:
        assert closed_by_server(sock)


def test_a_websocket_upgrade_is_served(server, configure):
    with httpx.Client(base_url=server.url, timeout=10) as client:
        session = new_session(client)
    with connect(f"{server.ws_url}/api/ws/events?session_id={session}", compression=None) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "hello"


# The protocol itself, fed reads of chosen sizes: what it parses before refusing, and the path of a
# complete head over the limit in a single read (a real socket cannot choose its reads).


class RecordingTransport(asyncio.Transport):
    """What the protocol writes, and whether it closed the connection."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _answer_ok(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def protocol_on(transport: RecordingTransport) -> HeadLimitedProtocol:
    config = uvicorn.Config(_answer_ok, log_level="warning")
    config.load()
    protocol = HeadLimitedProtocol.with_limits(MAX_HEAD_BYTES, HEAD_TIMEOUT_SECONDS)(
        config=config, server_state=ServerState(), app_state={}
    )
    protocol.connection_made(transport)
    return protocol


def test_a_huge_header_is_refused_within_one_read_past_the_limit():
    async def feed() -> int:
        transport = RecordingTransport()
        protocol = protocol_on(transport)
        head = request_head(headers={"X-Big": "a" * (16 * MiB)})
        read = 1024
        fed = 0
        while not transport.closed and fed < len(head):
            protocol.data_received(head[fed : fed + read])
            fed += read
        assert transport.written.startswith(b"HTTP/1.1 431 ")
        protocol.connection_lost(None)
        return fed

    assert asyncio.run(feed()) <= MAX_HEAD_BYTES + 1024


def test_a_complete_head_over_the_limit_in_one_read_gets_431_and_a_head_under_it_200():
    async def answer(head: bytes) -> bytes:
        transport = RecordingTransport()
        protocol = protocol_on(transport)
        protocol.data_received(head)
        for _ in range(10):  # let the request's task run
            await asyncio.sleep(0)
        protocol.connection_lost(None)
        return bytes(transport.written)

    over = asyncio.run(answer(request_head(headers={"X-Big": "a" * (MAX_HEAD_BYTES + 1)})))
    assert over.startswith(b"HTTP/1.1 431 ")
    assert b"connection: close" in over
    under = asyncio.run(answer(request_head(headers={"X-Big": "a" * (MAX_HEAD_BYTES - 200)})))
    assert under.startswith(b"HTTP/1.1 200 ")
