"""The server's processes: SIGTERM stops the server and every decode worker with it; a worker
killed by the kernel (the OOM killer's SIGKILL) is replaced and the server keeps serving."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import free_port, make_jpeg
from tests.server_process import ServerProcess, descendants


def decode_workers(pid: int) -> set[int]:
    """The server's decode workers (not multiprocessing's resource tracker)."""
    return {child for child in descendants(pid) if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()}


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait_until(condition, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def upload_photo(server: ServerProcess, session: str, seed: int) -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/images",
        params={"session_id": session},
        files={"files": (f"p{seed}.jpg", make_jpeg(320, 240, seed=seed), "image/jpeg")},
        timeout=60,
    )


def new_session(server: ServerProcess) -> str:
    return httpx.post(f"{server.url}/api/sessions", timeout=10).json()["session_id"]


def test_sigterm_stops_the_server_and_every_worker():
    server = ServerProcess(free_port(), {"DARKROOM_DECODE_WORKERS": "2"})
    try:
        assert upload_photo(server, new_session(server), 1).status_code == 200
        workers = descendants(server.process.pid)
        assert len(workers) >= 2, server.output()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=30)
        assert wait_until(lambda: not any(alive(pid) for pid in workers)), [p for p in workers if alive(p)]
    finally:
        server.stop()


@pytest.mark.slow
def test_a_worker_killed_by_the_kernel_is_replaced_and_the_server_serves_on():
    server = ServerProcess(free_port(), {"DARKROOM_DECODE_WORKERS": "1"})
    try:
        session = new_session(server)
        assert upload_photo(server, session, 1).status_code == 200
        for pid in decode_workers(server.process.pid):
            os.kill(pid, signal.SIGKILL)  # what the OOM killer does, here to an idle worker
        assert upload_photo(server, session, 2).status_code == 200, server.output()
        assert server.process.poll() is None
        listed = httpx.get(f"{server.url}/api/images", params={"session_id": session}, timeout=10).json()
        assert [image["filename"] for image in listed] == ["p1.jpg", "p2.jpg"]
    finally:
        server.stop()
