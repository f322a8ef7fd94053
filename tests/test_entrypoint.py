"""The ``darkroom`` command: the NiceGUI app with the API, as a real process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.sync.client import connect

from tests.helpers import free_port, make_jpeg


@pytest.fixture(scope="module")
def darkroom_process(tmp_path_factory):
    port = free_port()
    workdir = tmp_path_factory.mktemp("run")
    # NiceGUI switches to its test mode when it sees pytest's variables: run it as a user would.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "NICEGUI"))}
    env.update({"PORT": str(port), "DARKROOM_LEGACY_DIR": str(workdir / "legacy")})
    process = subprocess.Popen(
        [sys.executable, "-m", "ui.main"],
        cwd=os.path.dirname(os.path.dirname(__file__)),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"darkroom did not start: {process.stdout.read() if process.stdout else ''}")
        time.sleep(0.2)
    yield process, url, port
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)


def test_darkroom_serves_page_and_api_on_port_from_env(darkroom_process):
    _, url, _ = darkroom_process
    assert "Darkroom" in httpx.get(url + "/").text
    session = httpx.post(url + "/api/sessions").json()["session_id"]
    response = httpx.post(
        url + "/api/images", params={"session_id": session}, files=[("files", ("a.jpg", make_jpeg()))]
    )
    assert response.status_code == 200
    assert httpx.get(url + "/openapi.json").status_code == 200


def test_darkroom_websocket_has_no_compression(darkroom_process):
    _, url, port = darkroom_process
    session = httpx.post(url + "/api/sessions").json()["session_id"]
    with connect(
        f"ws://127.0.0.1:{port}/api/ws/upload?session_id={session}", extensions=[ClientPerMessageDeflateFactory()]
    ) as ws:
        assert "permessage-deflate" not in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")


def test_darkroom_refuses_a_request_head_over_its_limit_and_keeps_serving(darkroom_process):
    _, url, port = darkroom_process
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1024 * 1024) + b"\r\n\r\n")
            answer = sock.recv(64)
        except (BrokenPipeError, ConnectionResetError):
            answer = b""  # closed while the client was still sending: refused too
    assert answer.startswith(b"HTTP/1.1 431 ") or answer == b""
    assert httpx.get(url + "/api/health", timeout=5).status_code == 200


def test_darkroom_output_never_shows_a_session_id(darkroom_process):
    process, url, _ = darkroom_process
    session = httpx.post(url + "/api/sessions").json()["session_id"]
    httpx.get(url + "/api/images", params={"session_id": session})
    httpx.get(url + "/api/images", params={"session_id": session + "x"})
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=20)
    assert session not in output
